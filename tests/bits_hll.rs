//! Bitmaps and HyperLogLog against the real binary, under `--shards 1` and `--shards 4`:
//! BITOP, PFCOUNT and PFMERGE with keys on every shard, and HLL values moved byte for byte
//! between a real redis-server and shardis (sparse and dense) in both directions, with the
//! same counts and the same bytes after the same PFADDs.

mod common;

use common::resp::Redis;
use common::Server;
use shardis::shard::route::shard_of;

/// Keys `prefix:<i>` that land on shards 0, 1, 2, 3 of a 4-shard server.
fn four_shard_keys(prefix: &str) -> Vec<String> {
    let mut out: Vec<Option<String>> = vec![None; 4];
    for i in 0.. {
        let k = format!("{prefix}:{i}");
        let s = shard_of(k.as_bytes(), 4);
        if out[s].is_none() {
            out[s] = Some(k);
        }
        if out.iter().all(|o| o.is_some()) {
            break;
        }
    }
    out.into_iter().flatten().collect()
}

fn cmd(c: &mut redis::Connection, args: &[&[u8]]) -> redis::Value {
    let mut q = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        q.arg(*a);
    }
    q.query(c).unwrap()
}

fn get(c: &mut redis::Connection, k: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(k).query(c).unwrap()
}

fn int(c: &mut redis::Connection, args: &[&str]) -> i64 {
    let mut q = redis::cmd(args[0]);
    for a in &args[1..] {
        q.arg(*a);
    }
    q.query(c).unwrap()
}

#[test]
fn bitop_across_shards() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let k = four_shard_keys("bo");
        let vals: [&[u8]; 3] = [b"\xff\x0f", b"\xf0", b"\x3c\x3c\x3c"];
        for (key, v) in k.iter().zip(vals) {
            cmd(&mut c, &[b"SET", key.as_bytes(), v]);
        }
        let (dst, a, b, cc) = (&k[3], &k[0], &k[1], &k[2]);
        assert_eq!(int(&mut c, &["BITOP", "AND", dst, a, b, cc]), 3);
        assert_eq!(get(&mut c, dst).unwrap(), b"\x30\x00\x00");
        assert_eq!(int(&mut c, &["BITOP", "OR", dst, a, b, cc]), 3);
        assert_eq!(get(&mut c, dst).unwrap(), b"\xff\x3f\x3c");
        assert_eq!(int(&mut c, &["BITOP", "XOR", dst, a, b]), 2);
        assert_eq!(get(&mut c, dst).unwrap(), b"\x0f\x0f");
        assert_eq!(int(&mut c, &["BITOP", "NOT", dst, cc]), 3);
        assert_eq!(get(&mut c, dst).unwrap(), b"\xc3\xc3\xc3");
        // Only missing sources: the destination goes.
        assert_eq!(int(&mut c, &["BITOP", "AND", dst, "no:1", "no:2"]), 0);
        assert_eq!(get(&mut c, dst), None);
        let _: i64 = redis::cmd("DEL").arg(b).query(&mut c).unwrap();
        let _: i64 = redis::cmd("LPUSH").arg(b).arg("x").query(&mut c).unwrap();
        let e = redis::cmd("BITOP")
            .arg("OR")
            .arg(dst)
            .arg(a)
            .arg(b)
            .query::<i64>(&mut c)
            .unwrap_err();
        assert_eq!(e.code(), Some("WRONGTYPE"), "{n} shards");
        assert_eq!(get(&mut c, dst), None, "a failed BITOP stores nothing");
    }
}

#[test]
fn pfcount_and_pfmerge_across_shards() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let k = four_shard_keys("hl");
        for (i, key) in k.iter().take(3).enumerate() {
            let mut q = redis::cmd("PFADD");
            q.arg(key);
            for e in 0..1000 {
                q.arg(format!("e{}", i * 500 + e));
            }
            let _: i64 = q.query(&mut c).unwrap();
        }
        let union = int(&mut c, &["PFCOUNT", &k[0], &k[1], &k[2]]);
        assert!((1950..=2050).contains(&union), "{union}");
        assert_eq!(
            int(&mut c, &["PFCOUNT", &k[0], &k[1], &k[2], "none"]),
            union
        );
        let _: () = redis::cmd("PFMERGE")
            .arg(&k[3])
            .arg(&k[0])
            .arg(&k[1])
            .arg(&k[2])
            .query(&mut c)
            .unwrap();
        assert_eq!(int(&mut c, &["PFCOUNT", &k[3]]), union);
        // The merge of the same registers on one shard gives the same bytes.
        let _: () = redis::cmd("PFMERGE")
            .arg("{hl:0}m")
            .arg(&k[0])
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("SET").arg("x").arg("y").query(&mut c).unwrap();
        let e = redis::cmd("PFCOUNT")
            .arg(&k[0])
            .arg("x")
            .query::<i64>(&mut c)
            .unwrap_err();
        assert_eq!(e.code(), Some("WRONGTYPE"));
        let e = redis::cmd("PFMERGE")
            .arg(&k[1])
            .arg("x")
            .query::<()>(&mut c)
            .unwrap_err();
        assert_eq!(e.code(), Some("WRONGTYPE"));
    }
}

/// PFADD batches of `n` elements to `key` on both servers.
fn pfadd_both(
    r: &mut redis::Connection,
    s: &mut redis::Connection,
    key: &str,
    from: usize,
    n: usize,
) {
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(200) {
        let mut q = redis::cmd("PFADD");
        q.arg(key);
        for e in chunk {
            q.arg(format!("member:{e}"));
        }
        let a: i64 = q.query(r).unwrap();
        let b: i64 = q.query(s).unwrap();
        assert_eq!(a, b, "PFADD reply");
    }
}

#[test]
fn hll_bytes_match_redis_both_ways() {
    let redis_server = Redis::start();
    let mut r = redis::Client::open(format!("redis://127.0.0.1:{}/", redis_server.port))
        .unwrap()
        .get_connection()
        .unwrap();
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let _: () = redis::cmd("FLUSHALL").query(&mut r).unwrap();
        // Sparse (a few elements), near the promotion, and dense.
        for (key, count) in [("small", 20), ("mid", 700), ("big", 5000)] {
            pfadd_both(&mut r, &mut c, key, 0, count);
            let theirs = get(&mut r, key).unwrap();
            assert_eq!(
                get(&mut c, key).unwrap(),
                theirs,
                "{key}: bytes after PFADD"
            );
            let rc = int(&mut r, &["PFCOUNT", key]);
            assert_eq!(int(&mut c, &["PFCOUNT", key]), rc, "{key}: count");
            // The cached count goes into the header on both.
            assert_eq!(
                get(&mut c, key),
                get(&mut r, key),
                "{key}: bytes after PFCOUNT"
            );

            // Redis's value into shardis, shardis's into Redis: same counts, then same
            // bytes after more PFADDs.
            let from_redis = get(&mut r, key).unwrap();
            let from_us = get(&mut c, key).unwrap();
            let _: () = redis::cmd("SET")
                .arg("moved")
                .arg(&from_redis)
                .query(&mut c)
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg("moved")
                .arg(&from_us)
                .query(&mut r)
                .unwrap();
            assert_eq!(int(&mut c, &["PFCOUNT", "moved"]), rc, "{key}: moved count");
            assert_eq!(int(&mut r, &["PFCOUNT", "moved"]), rc);
            pfadd_both(&mut r, &mut c, "moved", 10_000, 300);
            assert_eq!(
                get(&mut c, "moved"),
                get(&mut r, "moved"),
                "{key}: moved bytes"
            );
        }
        // PFMERGE into a new key with a dense source: same bytes.
        for cl in [&mut r, &mut c] {
            let _: () = redis::cmd("PFMERGE")
                .arg("merged")
                .arg("small")
                .arg("big")
                .query(cl)
                .unwrap();
        }
        assert_eq!(get(&mut c, "merged"), get(&mut r, "merged"), "merged bytes");
        assert_eq!(
            int(&mut c, &["PFCOUNT", "small", "mid", "big"]),
            int(&mut r, &["PFCOUNT", "small", "mid", "big"])
        );
    }
}

/// `hll-sparse-max-bytes` is a setting (CONFIG SET applies from the next write): at 0 the
/// first PFADD leaves a dense key, at the default a sparse one, as redis-server 7.0.15.
#[test]
fn hll_sparse_max_bytes_is_a_setting() {
    let s = common::Server::start(1);
    let mut c = s.client();
    let enc = |c: &mut redis::Connection, key: &str| -> String {
        redis::cmd("PFDEBUG")
            .arg("ENCODING")
            .arg(key)
            .query(c)
            .unwrap()
    };
    let set = |c: &mut redis::Connection, v: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("hll-sparse-max-bytes")
            .arg(v)
            .query(c)
            .unwrap();
    };
    set(&mut c, "0");
    let _: i64 = redis::cmd("PFADD").arg("h").arg("a").query(&mut c).unwrap();
    assert_eq!(enc(&mut c, "h"), "dense");
    set(&mut c, "3000");
    let _: i64 = redis::cmd("PFADD")
        .arg("h2")
        .arg("a")
        .query(&mut c)
        .unwrap();
    assert_eq!(enc(&mut c, "h2"), "sparse");
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("hll-sparse-max-bytes")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, ["hll-sparse-max-bytes", "3000"]);
}
