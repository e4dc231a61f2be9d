//! Commands whose keys live on different shards: merge order of multi-key replies, the
//! all-or-nothing and atomicity guarantees (no reader may ever see a torn MSET, a half-done
//! DEL, a RENAME in flight), two-key moves across shards, SCAN under concurrent churn,
//! whole-keyspace commands and database isolation. Every test runs with 1 and 4 shards.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use redis::Commands;
use shardis::shard::route::shard_of;

/// Keys `prefix:<i>` that land on shards 0, 1, 2, 3 (in that order) of a 4-shard server.
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

/// A key `prefix:<i>` on a different shard (of 4) than `other`.
fn key_on_other_shard(prefix: &str, other: &str) -> String {
    let s = shard_of(other.as_bytes(), 4);
    (0..)
        .map(|i| format!("{prefix}:{i}"))
        .find(|k| shard_of(k.as_bytes(), 4) != s)
        .unwrap()
}

#[test]
fn four_shard_keys_really_spread() {
    let k = four_shard_keys("x");
    let shards: HashSet<usize> = k.iter().map(|k| shard_of(k.as_bytes(), 4)).collect();
    assert_eq!(shards.len(), 4);
}

#[test]
fn multi_key_commands_merge_in_argument_order() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let k = four_shard_keys("m");
        // Reverse and interleave so the argument order differs from shard order.
        let order = [&k[3], &k[0], &k[2], &k[1]];
        let _: () = redis::cmd("MSET")
            .arg(order[0])
            .arg("v3")
            .arg(order[1])
            .arg("v0")
            .arg(order[2])
            .arg("v2")
            .arg(order[3])
            .arg("v1")
            .query(&mut c)
            .unwrap();
        let got: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&k[2])
            .arg("missing")
            .arg(&k[0])
            .arg(&k[3])
            .arg(&k[0])
            .arg(&k[1])
            .query(&mut c)
            .unwrap();
        let want = ["v2", "", "v0", "v3", "v0", "v1"]
            .iter()
            .map(|v| (!v.is_empty()).then(|| v.to_string()))
            .collect::<Vec<_>>();
        assert_eq!(got, want, "shards={n}");
        // Duplicate keys in MSET: the last one wins.
        let _: () = redis::cmd("MSET")
            .arg(&k[0])
            .arg("first")
            .arg(&k[1])
            .arg("x")
            .arg(&k[0])
            .arg("last")
            .query(&mut c)
            .unwrap();
        let v: String = c.get(&k[0]).unwrap();
        assert_eq!(v, "last");
        let ex: i64 = redis::cmd("EXISTS")
            .arg(&k[..])
            .arg("missing")
            .arg(&k[1])
            .query(&mut c)
            .unwrap();
        assert_eq!(ex, 5, "EXISTS counts repeats");
        let t: i64 = redis::cmd("TOUCH")
            .arg(&k[..])
            .arg("nope")
            .query(&mut c)
            .unwrap();
        assert_eq!(t, 4);
        let d: i64 = redis::cmd("DEL")
            .arg(&k[1])
            .arg(&k[1])
            .arg("nope")
            .arg(&k[3])
            .query(&mut c)
            .unwrap();
        assert_eq!(d, 2, "DEL counts each key once");
        let u: i64 = redis::cmd("UNLINK").arg(&k[..]).query(&mut c).unwrap();
        assert_eq!(u, 2);
        let ex: i64 = redis::cmd("EXISTS").arg(&k[..]).query(&mut c).unwrap();
        assert_eq!(ex, 0);
        // One key back: MGET sees exactly it, wherever it lives.
        let _: () = c.set(&k[0], "s").unwrap();
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(&k[..]).query(&mut c).unwrap();
        assert_eq!(got, vec![Some("s".into()), None, None, None]);
    }
}

#[test]
fn msetnx_is_all_or_nothing() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let k = four_shard_keys("nx");
        let _: () = c.set(&k[2], "taken").unwrap();
        let mut cmd = redis::cmd("MSETNX");
        for key in &k {
            cmd.arg(key).arg("new");
        }
        let r: i64 = cmd.query(&mut c).unwrap();
        assert_eq!(r, 0, "shards={n}");
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(&k[..]).query(&mut c).unwrap();
        assert_eq!(got, vec![None, None, Some("taken".into()), None]);
        let _: () = c.del(&k[2]).unwrap();
        let r: i64 = cmd.query(&mut c).unwrap();
        assert_eq!(r, 1);
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(&k[..]).query(&mut c).unwrap();
        assert_eq!(got, vec![Some("new".to_string()); 4]);

        // Racing MSETNX on fresh keys: exactly one wins each round, and wins whole.
        for round in 0..20 {
            let keys: Vec<String> = four_shard_keys(&format!("race{round}"));
            let wins = Arc::new(AtomicU64::new(0));
            let handles: Vec<_> = (0..4)
                .map(|t| {
                    let mut c = s.client();
                    let keys = keys.clone();
                    let wins = wins.clone();
                    std::thread::spawn(move || {
                        let mut cmd = redis::cmd("MSETNX");
                        for k in &keys {
                            cmd.arg(k).arg(format!("t{t}"));
                        }
                        let r: i64 = cmd.query(&mut c).unwrap();
                        if r == 1 {
                            wins.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap();
            }
            assert_eq!(wins.load(Ordering::SeqCst), 1, "shards={n} round {round}");
            let got: Vec<String> = redis::cmd("MGET").arg(&keys[..]).query(&mut c).unwrap();
            assert!(
                got.iter().all(|v| v == &got[0]),
                "shards={n}: MSETNX winners mixed: {got:?}"
            );
        }
    }
}

#[test]
fn rename_renamenx_copy_across_shards_keep_value_and_ttl() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let src = "mv:src".to_string();
        let dst = key_on_other_shard("mv:dst", &src);
        let _: () = redis::cmd("SET")
            .arg(&src)
            .arg("hello")
            .arg("PX")
            .arg(100_000)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("RENAME")
            .arg(&src)
            .arg(&dst)
            .query(&mut c)
            .unwrap();
        let v: Option<String> = c.get(&src).unwrap();
        assert_eq!(v, None, "shards={n}");
        let v: String = c.get(&dst).unwrap();
        assert_eq!(v, "hello");
        let ttl: i64 = c.pttl(&dst).unwrap();
        assert!((90_000..=100_000).contains(&ttl), "TTL lost: {ttl}");
        // RENAME over an existing key with a TTL: the destination takes the source's (none).
        let _: () = c.set(&src, "plain").unwrap();
        let _: () = redis::cmd("RENAME")
            .arg(&src)
            .arg(&dst)
            .query(&mut c)
            .unwrap();
        let ttl: i64 = c.pttl(&dst).unwrap();
        assert_eq!(ttl, -1);
        let v: String = c.get(&dst).unwrap();
        assert_eq!(v, "plain");
        // Missing source.
        let e = redis::cmd("RENAME")
            .arg(&src)
            .arg(&dst)
            .query::<()>(&mut c)
            .unwrap_err();
        assert_eq!(e.code(), Some("ERR"));
        assert!(e.to_string().contains("no such key"), "{e}");
        let e = redis::cmd("RENAMENX")
            .arg(&src)
            .arg(&dst)
            .query::<i64>(&mut c)
            .unwrap_err();
        assert!(e.to_string().contains("no such key"), "{e}");
        // RENAMENX: refused while the destination exists, done when it does not.
        let _: () = redis::cmd("SET")
            .arg(&src)
            .arg("nx")
            .arg("EX")
            .arg(500)
            .query(&mut c)
            .unwrap();
        let r: i64 = redis::cmd("RENAMENX")
            .arg(&src)
            .arg(&dst)
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 0);
        let v: (String, String) = (c.get(&src).unwrap(), c.get(&dst).unwrap());
        assert_eq!(v, ("nx".into(), "plain".into()));
        let _: () = c.del(&dst).unwrap();
        let r: i64 = redis::cmd("RENAMENX")
            .arg(&src)
            .arg(&dst)
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 1);
        let ttl: i64 = c.ttl(&dst).unwrap();
        assert!((495..=500).contains(&ttl), "RENAMENX TTL: {ttl}");
        let ex: i64 = c.exists(&src).unwrap();
        assert_eq!(ex, 0);
        // COPY keeps the source, copies the TTL, honours REPLACE and DB.
        let r: i64 = redis::cmd("COPY")
            .arg(&dst)
            .arg(&src)
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 1);
        let v: (String, String) = (c.get(&src).unwrap(), c.get(&dst).unwrap());
        assert_eq!(v, ("nx".into(), "nx".into()));
        let ttl: i64 = c.ttl(&src).unwrap();
        assert!((495..=500).contains(&ttl), "COPY TTL: {ttl}");
        let _: () = c.set(&dst, "changed").unwrap();
        let r: i64 = redis::cmd("COPY")
            .arg(&dst)
            .arg(&src)
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 0, "COPY without REPLACE onto an existing key");
        let r: i64 = redis::cmd("COPY")
            .arg(&dst)
            .arg(&src)
            .arg("REPLACE")
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 1);
        let v: String = c.get(&src).unwrap();
        assert_eq!(v, "changed");
        let ttl: i64 = c.ttl(&src).unwrap();
        assert_eq!(ttl, -1, "REPLACE takes the source's TTL (none)");
        let r: i64 = redis::cmd("COPY")
            .arg(&dst)
            .arg(&src)
            .arg("DB")
            .arg(3)
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 1);
        let r: i64 = redis::cmd("COPY")
            .arg("nope")
            .arg(&src)
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 0);
        let _: () = redis::cmd("SELECT").arg(3).query(&mut c).unwrap();
        let v: String = c.get(&src).unwrap();
        assert_eq!(v, "changed");
        let ex: i64 = c.exists(&dst).unwrap();
        assert_eq!(ex, 0, "COPY DB 3 wrote only the destination");
    }
}

#[test]
fn scan_sees_every_stable_key_while_others_churn() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let stable: BTreeSet<String> = (0..3000).map(|i| format!("stable:{i}")).collect();
        for chunk in stable.iter().collect::<Vec<_>>().chunks(500) {
            let mut cmd = redis::cmd("MSET");
            for k in chunk {
                cmd.arg(*k).arg(1);
            }
            let _: () = cmd.query(&mut c).unwrap();
        }
        let stop = Arc::new(AtomicBool::new(false));
        let churned = Arc::new(AtomicU64::new(0));
        // Churn: grow by thousands of keys, then delete them, so tables resize both ways.
        let churner = {
            let mut c = s.client();
            let stop = stop.clone();
            let churned = churned.clone();
            std::thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let keys: Vec<String> =
                        (0..4000).map(|i| format!("churn:{round}:{i}")).collect();
                    for chunk in keys.chunks(400) {
                        let mut p = redis::pipe();
                        for k in chunk {
                            p.cmd("SET").arg(k).arg(0).ignore();
                        }
                        let _: () = p.query(&mut c).unwrap();
                    }
                    for chunk in keys.chunks(400) {
                        let _: i64 = redis::cmd("DEL").arg(chunk).query(&mut c).unwrap();
                    }
                    round += 1;
                    churned.fetch_add(1, Ordering::Relaxed);
                }
            })
        };
        // Let the churn get going, then do several full scans.
        assert!(common::wait_for(Duration::from_secs(10), || churned
            .load(Ordering::Relaxed)
            >= 1));
        for pass in 0..3 {
            let mut seen = HashSet::new();
            let mut cursor = "0".to_string();
            let mut calls = 0;
            loop {
                let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
                    .arg(&cursor)
                    .arg("COUNT")
                    .arg(50)
                    .query(&mut c)
                    .unwrap();
                for k in keys {
                    assert!(
                        k.starts_with("stable:") || k.starts_with("churn:"),
                        "SCAN returned a key that never existed: {k}"
                    );
                    seen.insert(k);
                }
                calls += 1;
                assert!(calls < 100_000, "SCAN does not terminate");
                if next == "0" {
                    break;
                }
                cursor = next;
            }
            let missing: Vec<&String> = stable.iter().filter(|k| !seen.contains(*k)).collect();
            assert!(
                missing.is_empty(),
                "shards={n} pass {pass}: SCAN missed {} stable keys, e.g. {:?}",
                missing.len(),
                &missing[..missing.len().min(5)]
            );
            // With COUNT 50 a scan takes many calls (it really iterates).
            assert!(calls > 10, "only {calls} SCAN calls");
        }
        stop.store(true, Ordering::Relaxed);
        churner.join().unwrap();
        // MATCH and TYPE filters over every shard.
        let mut all = HashSet::new();
        let mut cursor = "0".to_string();
        loop {
            let (next, keys): (String, Vec<String>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg("stable:1*")
                .arg("COUNT")
                .arg(1000)
                .arg("TYPE")
                .arg("string")
                .query(&mut c)
                .unwrap();
            all.extend(keys);
            if next == "0" {
                break;
            }
            cursor = next;
        }
        let want: HashSet<String> = stable
            .iter()
            .filter(|k| k.starts_with("stable:1"))
            .cloned()
            .collect();
        assert_eq!(all, want, "shards={n}");
    }
}

#[test]
fn whole_keyspace_commands_cover_every_shard() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let r: Option<String> = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
        assert_eq!(r, None, "RANDOMKEY on an empty db");
        let keys: Vec<String> = (0..200).map(|i| format!("ks:{i}")).collect();
        let mut cmd = redis::cmd("MSET");
        for k in &keys {
            cmd.arg(k).arg("v");
        }
        let _: () = cmd.query(&mut c).unwrap();
        let _: () = c.set("other", "v").unwrap();
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, 201, "shards={n}");
        let mut got: Vec<String> = c.keys("ks:*").unwrap();
        got.sort();
        let mut want = keys.clone();
        want.sort();
        assert_eq!(got, want);
        let all: Vec<String> = c.keys("*").unwrap();
        assert_eq!(all.len(), 201);
        let q: Vec<String> = c.keys("ks:1?").unwrap();
        assert_eq!(q.len(), 10);
        // RANDOMKEY returns existing keys, from every shard.
        let mut shards_seen = HashSet::new();
        for _ in 0..300 {
            let k: String = redis::cmd("RANDOMKEY").query(&mut c).unwrap();
            assert!(k == "other" || keys.contains(&k), "RANDOMKEY invented {k}");
            shards_seen.insert(shard_of(k.as_bytes(), n));
        }
        assert_eq!(shards_seen.len(), n, "RANDOMKEY never picked some shard");
        // FLUSHDB empties only the selected database; FLUSHALL empties all.
        let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
        let _: () = redis::cmd("MSET")
            .arg("ks:1")
            .arg("db1")
            .arg("ks:2")
            .arg("db1")
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, 0);
        let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, 201, "FLUSHDB in db 1 touched db 0");
        let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, 0);
        let all: Vec<String> = c.keys("*").unwrap();
        assert!(all.is_empty());
        let _: () = c.set("a", 1).unwrap();
        let _: () = redis::cmd("SELECT").arg(5).query(&mut c).unwrap();
        let _: () = redis::cmd("MSET")
            .arg(&keys[0])
            .arg(1)
            .arg(&keys[1])
            .arg(1)
            .arg(&keys[2])
            .arg(1)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
        for db in [0, 5] {
            let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
            let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
            assert_eq!(size, 0, "FLUSHALL left keys in db {db}");
        }
    }
}

#[test]
fn databases_are_isolated_across_shards() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let k = four_shard_keys("db");
        let mut c0 = s.client();
        let mut c2 = s.client();
        let _: () = redis::cmd("SELECT").arg(2).query(&mut c2).unwrap();
        let mut m0 = redis::cmd("MSET");
        let mut m2 = redis::cmd("MSET");
        for key in &k {
            m0.arg(key).arg("zero");
            m2.arg(key).arg("two");
        }
        let _: () = m0.query(&mut c0).unwrap();
        let _: () = m2.query(&mut c2).unwrap();
        let g0: Vec<String> = redis::cmd("MGET").arg(&k[..]).query(&mut c0).unwrap();
        let g2: Vec<String> = redis::cmd("MGET").arg(&k[..]).query(&mut c2).unwrap();
        assert_eq!(g0, vec!["zero"; 4], "shards={n}");
        assert_eq!(g2, vec!["two"; 4]);
        let d: i64 = redis::cmd("DEL").arg(&k[..2]).query(&mut c2).unwrap();
        assert_eq!(d, 2);
        let _: () = redis::cmd("RENAME")
            .arg(&k[2])
            .arg(&k[0])
            .query(&mut c2)
            .unwrap();
        let e0: i64 = redis::cmd("EXISTS").arg(&k[..]).query(&mut c0).unwrap();
        let e2: i64 = redis::cmd("EXISTS").arg(&k[..]).query(&mut c2).unwrap();
        assert_eq!((e0, e2), (4, 2));
        let s0: i64 = redis::cmd("DBSIZE").query(&mut c0).unwrap();
        let s2: i64 = redis::cmd("DBSIZE").query(&mut c2).unwrap();
        assert_eq!((s0, s2), (4, 2));
        let keys2: Vec<String> = c2.keys("*").unwrap();
        let mut keys2 = keys2;
        keys2.sort();
        let mut want = vec![k[0].clone(), k[3].clone()];
        want.sort();
        assert_eq!(keys2, want);
        let e = redis::cmd("SELECT")
            .arg(16)
            .query::<()>(&mut c0)
            .unwrap_err();
        assert!(e.to_string().contains("DB index is out of range"), "{e}");
    }
}

/// Runs writer and reader threads for `dur`; readers call `check` on every MGET reply.
/// Returns the number of reads done.
fn hammer(
    s: &Server,
    dur: Duration,
    writers: usize,
    readers: usize,
    write: impl Fn(&mut redis::Connection, usize, u64) + Send + Sync + 'static,
    read: impl Fn(&mut redis::Connection) -> Result<(), String> + Send + Sync + 'static,
) -> u64 {
    let write = Arc::new(write);
    let read = Arc::new(read);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let writes = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    for w in 0..writers {
        let (mut c, stop, write, writes) =
            (s.client(), stop.clone(), write.clone(), writes.clone());
        handles.push(std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                write(&mut c, w, i);
                i += 1;
                writes.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), String>(())
        }));
    }
    for _ in 0..readers {
        let (mut c, stop, read, reads) = (s.client(), stop.clone(), read.clone(), reads.clone());
        handles.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = read(&mut c) {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        }));
    }
    let end = Instant::now() + dur;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = handles
        .into_iter()
        .filter_map(|h| h.join().unwrap().err())
        .collect();
    assert!(errors.is_empty(), "shards={}: {}", s.shards, errors[0]);
    assert!(
        writes.load(Ordering::Relaxed) > 100,
        "too few writes to mean anything"
    );
    reads.load(Ordering::Relaxed)
}

fn mget(c: &mut redis::Connection, keys: &[String]) -> Vec<Option<String>> {
    redis::cmd("MGET").arg(keys).query(c).unwrap()
}

#[test]
fn mset_is_never_torn_for_mget_readers() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let k = four_shard_keys("torn");
        let mut c = s.client();
        let mut init = redis::cmd("MSET");
        for key in &k {
            init.arg(key).arg("init");
        }
        let _: () = init.query(&mut c).unwrap();
        let (kw, kr) = (k.clone(), k.clone());
        let reads = hammer(
            &s,
            Duration::from_millis(if n > 1 { 3000 } else { 1000 }),
            3,
            3,
            move |c, w, i| {
                let v = format!("w{w}:{i}");
                let mut cmd = redis::cmd("MSET");
                for key in &kw {
                    cmd.arg(key).arg(&v);
                }
                let _: () = cmd.query(c).unwrap();
            },
            move |c| {
                let got = mget(c, &kr);
                if got.iter().all(|v| v.is_some() && v == &got[0]) {
                    Ok(())
                } else {
                    Err(format!("torn MSET seen by MGET: {got:?}"))
                }
            },
        );
        assert!(reads > 100, "too few reads: {reads}");
    }
}

#[test]
fn del_is_never_half_done_for_readers() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let k = four_shard_keys("half");
        let (kw, kr) = (k.clone(), k.clone());
        hammer(
            &s,
            Duration::from_millis(if n > 1 { 2000 } else { 500 }),
            2,
            3,
            move |c, w, i| {
                if (i + w as u64).is_multiple_of(2) {
                    let mut cmd = redis::cmd("MSET");
                    for key in &kw {
                        cmd.arg(key).arg(format!("w{w}:{i}"));
                    }
                    let _: () = cmd.query(c).unwrap();
                } else {
                    let _: i64 = redis::cmd("DEL").arg(&kw[..]).query(c).unwrap();
                }
            },
            move |c| {
                let got = mget(c, &kr);
                let all_none = got.iter().all(|v| v.is_none());
                let all_same = got.iter().all(|v| v.is_some() && v == &got[0]);
                if !(all_none || all_same) {
                    return Err(format!("half-done DEL/MSET seen by MGET: {got:?}"));
                }
                // EXISTS and TOUCH are single commands too: all four keys or none.
                for cmd in ["EXISTS", "TOUCH"] {
                    let n: i64 = redis::cmd(cmd).arg(&kr[..]).query(c).unwrap();
                    if n != 0 && n != 4 {
                        return Err(format!("half-done DEL/MSET seen by {cmd}: {n}"));
                    }
                }
                Ok(())
            },
        );
    }
}

#[test]
fn rename_ping_pong_shows_exactly_one_name() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let a = "pp:a".to_string();
        let b = key_on_other_shard("pp:b", &a);
        let mut c = s.client();
        let _: () = c.set(&a, "payload").unwrap();
        let (aw, bw) = (a.clone(), b.clone());
        let pair = vec![a.clone(), b.clone()];
        hammer(
            &s,
            Duration::from_millis(if n > 1 { 2000 } else { 500 }),
            1,
            3,
            move |c, _, i| {
                let (from, to) = if i % 2 == 0 { (&aw, &bw) } else { (&bw, &aw) };
                let _: () = redis::cmd("RENAME").arg(from).arg(to).query(c).unwrap();
            },
            move |c| {
                let got = mget(c, &pair);
                match (&got[0], &got[1]) {
                    (Some(v), None) | (None, Some(v)) if v == "payload" => Ok(()),
                    _ => Err(format!("RENAME in flight seen by MGET: {got:?}")),
                }
            },
        );
        let left: i64 = redis::cmd("EXISTS").arg(&a).arg(&b).query(&mut c).unwrap();
        assert_eq!(left, 1);
    }
}

/// Clients that send multi-shard commands and disconnect at once never leave a shard
/// locked or a transaction half-applied: afterwards every shard still answers, and each
/// MSET is either fully there or not at all.
#[test]
fn clients_vanishing_mid_transaction_leave_no_locks() {
    use std::io::Write;
    for n in common::shard_counts() {
        let s = Server::start(n);
        let k = four_shard_keys("gone");
        let mut req = Vec::new();
        for i in 0..400 {
            req.clear();
            req.extend(b"MSET");
            for key in &k {
                req.extend(format!(" {key} v{i}").as_bytes());
            }
            req.extend(format!("\r\nMGET {}\r\n", k.join(" ")).as_bytes());
            // (No RENAME pair here: a reset may cut a pipeline between its two halves.)
            req.extend(
                format!(
                    "COPY {} gone:copy REPLACE\r\nDEL {} gone:copy\r\n",
                    k[0], k[3]
                )
                .as_bytes(),
            );
            req.extend(b"DBSIZE\r\nKEYS gone:*\r\n");
            let mut raw = s.raw();
            raw.write_all(&req).unwrap();
            drop(raw);
        }
        // Everything the vanished clients started settles; nothing stays locked.
        let mut c = s.client();
        let mut last = Vec::new();
        let settled = common::wait_for(Duration::from_secs(10), || {
            let a: Vec<Option<String>> = redis::cmd("MGET").arg(&k[..]).query(&mut c).unwrap();
            let b: Vec<Option<String>> = redis::cmd("MGET").arg(&k[..]).query(&mut c).unwrap();
            let stable = a == b;
            last = a;
            // A pipeline cut after its DEL leaves the last key missing, never a mix of values.
            let present: Vec<&String> = last.iter().flatten().collect();
            stable && !present.is_empty() && present.iter().all(|v| *v == present[0])
        });
        assert!(settled, "shards={n}: keys after vanished clients: {last:?}");
        let mut m = redis::cmd("MSET");
        for key in &k {
            m.arg(key).arg("final");
        }
        let _: () = m.query(&mut c).unwrap();
        let got: Vec<String> = redis::cmd("MGET").arg(&k[..]).query(&mut c).unwrap();
        assert_eq!(got, vec!["final"; 4]);
    }
}

/// SMOVE between sets on four shards never loses or duplicates a member for SUNION readers
/// (both lock every shard involved), and SUNIONSTORE/SINTERSTORE/SDIFFSTORE into a key on
/// yet another shard store what the sources held.
#[test]
fn smove_is_never_torn_for_set_algebra_readers() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let sets = four_shard_keys("sm");
        let mut c = s.client();
        for m in 0..40 {
            let _: i64 = c.sadd(&sets[m % 4], format!("m{m}")).unwrap();
        }
        let (ws, rs) = (sets.clone(), sets.clone());
        hammer(
            &s,
            Duration::from_millis(if n > 1 { 1500 } else { 400 }),
            2,
            2,
            move |c, w, i| {
                let from = &ws[(w + i as usize) % 4];
                let to = &ws[(w + 1 + i as usize * 3) % 4];
                let m = format!("m{}", (i as usize * 7 + w) % 40);
                let _: i64 = redis::cmd("SMOVE")
                    .arg(from)
                    .arg(to)
                    .arg(m)
                    .query(c)
                    .unwrap();
            },
            move |c| {
                let all: Vec<String> = redis::cmd("SUNION").arg(&rs).query(c).unwrap();
                let card: i64 = redis::cmd("SINTERCARD")
                    .arg(2)
                    .arg(&rs[0])
                    .arg(&rs[1])
                    .query(c)
                    .unwrap();
                if all.len() != 40 || card != 0 {
                    return Err(format!(
                        "torn SMOVE: union {} members, overlap {card}",
                        all.len()
                    ));
                }
                Ok(())
            },
        );
        let dst = "smdst".to_string();
        let stored: i64 = redis::cmd("SUNIONSTORE")
            .arg(&dst)
            .arg(&sets)
            .query(&mut c)
            .unwrap();
        assert_eq!(stored, 40);
        let none: i64 = redis::cmd("SINTERSTORE")
            .arg(&dst)
            .arg(&sets[0])
            .arg(&sets[1])
            .query(&mut c)
            .unwrap();
        assert_eq!(none, 0);
        let exists: i64 = c.exists(&dst).unwrap();
        assert_eq!(exists, 0, "an empty STORE result deletes the destination");
        let rest: i64 = redis::cmd("SDIFFSTORE")
            .arg(&dst)
            .arg(&sets[2])
            .arg(&sets[3])
            .query(&mut c)
            .unwrap();
        let card2: i64 = c.scard(&sets[2]).unwrap();
        assert_eq!(rest, card2);
    }
}

/// LMOVE/RPOPLPUSH rotate elements through lists on four shards (also inside MULTI) without
/// losing or duplicating any; LMPOP and ZMPOP take from the first key in order that has
/// data, whichever shards the keys are on.
#[test]
fn list_moves_across_shards_and_mpop_across_shards() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let lists = four_shard_keys("lm");
        let mut c = s.client();
        let _: i64 = c.rpush(&lists[0], (0..20).collect::<Vec<i64>>()).unwrap();
        for i in 0..60usize {
            let (from, to) = (&lists[i % 4], &lists[(i + 1) % 4]);
            let _: Option<String> = if i % 2 == 0 {
                redis::cmd("LMOVE")
                    .arg(from)
                    .arg(to)
                    .arg("LEFT")
                    .arg("RIGHT")
                    .query(&mut c)
                    .unwrap()
            } else {
                redis::cmd("RPOPLPUSH")
                    .arg(from)
                    .arg(to)
                    .query(&mut c)
                    .unwrap()
            };
        }
        let (a, b): (Option<String>, Option<String>) = redis::pipe()
            .atomic()
            .cmd("LMOVE")
            .arg(&lists[0])
            .arg(&lists[3])
            .arg("RIGHT")
            .arg("LEFT")
            .cmd("RPOPLPUSH")
            .arg(&lists[1])
            .arg(&lists[2])
            .query(&mut c)
            .unwrap();
        let mut all: Vec<i64> = Vec::new();
        for l in &lists {
            let items: Vec<i64> = c.lrange(l, 0, -1).unwrap();
            all.extend(items);
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (0..20).collect::<Vec<i64>>(),
            "shards={n} a={a:?} b={b:?}"
        );
        // The first of the two keys with data is taken (lists[0] may be empty by now).
        let first = lists[..2]
            .iter()
            .find(|l| c.llen::<_, i64>(*l).unwrap() > 0)
            .cloned();
        let r: redis::RedisResult<redis::Value> = redis::cmd("LMPOP")
            .arg(2)
            .arg(&lists[0])
            .arg(&lists[1])
            .arg("LEFT")
            .query(&mut c);
        match (r, first) {
            (Ok(redis::Value::Array(v)), Some(k)) => {
                assert_eq!(
                    v.first(),
                    Some(&redis::Value::BulkString(k.into_bytes())),
                    "shards={n}"
                )
            }
            (r, first) => panic!("shards={n}: {r:?} (first with data: {first:?})"),
        }
        let mut all: Vec<i64> = Vec::new();
        for l in &lists {
            let items: Vec<i64> = c.lrange(l, 0, -1).unwrap();
            all.extend(items);
        }
        assert_eq!(all.len(), 19, "LMPOP took exactly one element, shards={n}");
        // Empty keys on other shards are skipped; nothing at all answers a null array.
        let zs = four_shard_keys("zm");
        let _: i64 = c.zadd(&zs[3], "m", 1).unwrap();
        let v: redis::Value = redis::cmd("ZMPOP")
            .arg(3)
            .arg(&zs[0])
            .arg(&zs[1])
            .arg(&zs[3])
            .arg("MAX")
            .query(&mut c)
            .unwrap();
        assert_eq!(
            v,
            redis::Value::Array(vec![
                redis::Value::BulkString(zs[3].clone().into_bytes()),
                redis::Value::Array(vec![redis::Value::Array(vec![
                    redis::Value::BulkString(b"m".to_vec()),
                    redis::Value::BulkString(b"1".to_vec())
                ])])
            ]),
            "shards={n}"
        );
        let v: redis::Value = redis::cmd("ZMPOP")
            .arg(2)
            .arg(&zs[0])
            .arg(&zs[3])
            .arg("MIN")
            .query(&mut c)
            .unwrap();
        assert_eq!(v, redis::Value::Nil, "shards={n}");
        let one: redis::Value = redis::cmd("LMPOP")
            .arg(1)
            .arg(&lists[2])
            .arg("RIGHT")
            .arg("COUNT")
            .arg(100)
            .query(&mut c)
            .unwrap();
        assert!(
            matches!(one, redis::Value::Array(ref v) if v.len() == 2)
                || matches!(one, redis::Value::Nil),
            "{one:?}"
        );
        let exists: i64 = c.exists(&lists[2]).unwrap();
        assert_eq!(exists, 0, "LMPOP COUNT 100 emptied and deleted the list");
    }
}
