//! The write journal records every data change: a seeded random workload over every write
//! family on `--shards 4` (expiry, eviction, blocking pops, SPOP, cross-shard moves and
//! STORE forms, MULTI/EXEC over several shards, scripts, SWAPDB, FLUSHDB), then the four
//! shards' journals, merged respecting each shard's order and each transaction tag, are
//! replayed into a fresh `--shards 1` shardis and into a real redis-server. All three must
//! report the same `DEBUG DIGEST`: a write that bypassed the journal would show here.

mod common;
#[path = "common/workload.rs"]
mod workload;

use std::collections::HashMap;
use std::time::Duration;

use common::resp::{Client, Redis};
use common::Server;
use redis::Value;
use workload::client_workload;

/// A journal record as `DEBUG JOURNAL READ` returns it.
#[derive(Clone)]
struct Rec {
    offset: u64,
    tx: u64,
    parts: u64,
    db: u64,
    cmd: Vec<u8>,
}

fn int(v: &Value) -> u64 {
    match v {
        Value::Int(n) => *n as u64,
        other => panic!("not an integer: {other:?}"),
    }
}

fn read_journal(c: &mut redis::Connection, shard: usize) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut from = 1u64;
    loop {
        let v: Value = redis::cmd("DEBUG")
            .arg("JOURNAL")
            .arg("READ")
            .arg(shard)
            .arg(from)
            .arg(500)
            .query(c)
            .unwrap();
        let Value::Array(parts) = v else {
            panic!("bad reply {v:?}")
        };
        assert_eq!(
            int(&parts[0]),
            1,
            "the backlog must still hold the whole run"
        );
        let next = int(&parts[1]);
        let Value::Array(recs) = &parts[2] else {
            panic!("bad records")
        };
        for r in recs {
            let Value::Array(f) = r else {
                panic!("bad record")
            };
            let Value::BulkString(cmd) = &f[4] else {
                panic!("bad command")
            };
            from = int(&f[0]) + cmd.len() as u64;
            // A record is one command, or a run of untagged commands on one database.
            let mut at = int(&f[0]);
            for one in split_commands(cmd) {
                out.push(Rec {
                    offset: at,
                    tx: int(&f[1]),
                    parts: int(&f[2]),
                    db: int(&f[3]),
                    cmd: one.to_vec(),
                });
                at += one.len() as u64;
            }
        }
        if from >= next || recs.is_empty() {
            assert_eq!(from, next);
            return out;
        }
    }
}

/// The RESP commands (arrays of bulk strings) a record's bytes hold, in order.
fn split_commands(mut b: &[u8]) -> Vec<&[u8]> {
    fn line(b: &[u8], at: usize) -> (usize, usize) {
        let end = at + b[at..].windows(2).position(|w| w == b"\r\n").unwrap();
        let n = std::str::from_utf8(&b[at + 1..end])
            .unwrap()
            .parse()
            .unwrap();
        (n, end + 2)
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        assert_eq!(b[0], b'*', "a record holds RESP arrays");
        let (n, mut at) = line(b, 0);
        for _ in 0..n {
            let (len, body) = line(b, at);
            at = body + len + 2;
        }
        out.push(&b[..at]);
        b = &b[at..];
    }
    out
}

fn is_global(cmd: &[u8]) -> bool {
    let name = String::from_utf8_lossy(cmd)
        .split("\r\n")
        .nth(2)
        .unwrap_or("")
        .to_ascii_uppercase();
    matches!(name.as_str(), "FLUSHALL" | "FLUSHDB" | "SWAPDB")
}

/// Merges per-shard journals: each shard's order is kept, and a transaction's records (on
/// all of its `parts` shards) are applied together, once every part has reached its head.
fn merge(journals: Vec<Vec<Rec>>) -> (Vec<(u64, Vec<u8>)>, usize) {
    let mut heads = vec![0usize; journals.len()];
    let mut out = Vec::new();
    let mut txs = 0;
    loop {
        let mut progress = false;
        for s in 0..journals.len() {
            while let Some(r) = journals[s].get(heads[s]) {
                if r.tx != 0 {
                    break;
                }
                out.push((r.db, r.cmd.clone()));
                heads[s] += 1;
                progress = true;
            }
            let Some(r) = journals[s].get(heads[s]) else {
                continue;
            };
            let (tx, parts) = (r.tx, r.parts);
            let ready: Vec<usize> = (0..journals.len())
                .filter(|&o| journals[o].get(heads[o]).is_some_and(|h| h.tx == tx))
                .collect();
            if ready.len() as u64 == parts {
                // A server-wide command (FLUSHALL, FLUSHDB, SWAPDB) is recorded by every
                // shard for its own data; a merged stream applies it once.
                let mut global: Vec<(u64, Vec<u8>)> = Vec::new();
                for o in ready {
                    while let Some(h) = journals[o].get(heads[o]).filter(|h| h.tx == tx) {
                        let g = is_global(&h.cmd);
                        if !(g && global.contains(&(h.db, h.cmd.clone()))) {
                            if g {
                                global.push((h.db, h.cmd.clone()));
                            }
                            out.push((h.db, h.cmd.clone()));
                        }
                        heads[o] += 1;
                    }
                }
                txs += 1;
                progress = true;
            }
        }
        if (0..journals.len()).all(|s| heads[s] >= journals[s].len()) {
            return (out, txs);
        }
        if !progress {
            for s in 0..journals.len() {
                let h: Vec<String> = journals[s][heads[s]..]
                    .iter()
                    .take(6)
                    .map(|r| {
                        format!(
                            "{}/{} {}",
                            r.tx,
                            r.parts,
                            String::from_utf8_lossy(&r.cmd).replace("\r\n", " ")
                        )
                    })
                    .collect();
                eprintln!("shard {s}: {h:?}");
            }
        }
        assert!(progress, "the journals' transaction tags cannot be merged");
    }
}

fn replay(port: u16, records: &[(u64, Vec<u8>)]) {
    let mut c = Client::connect(port);
    let mut db = 0;
    for (rdb, cmd) in records {
        if *rdb != db {
            c.send(
                format!(
                    "*2\r\n$6\r\nSELECT\r\n${}\r\n{rdb}\r\n",
                    rdb.to_string().len()
                )
                .as_bytes(),
            )
            .unwrap();
            assert_eq!(c.read_reply().unwrap(), b"+OK\r\n");
            db = *rdb;
        }
        c.send(cmd).unwrap();
        let reply = c.read_reply().unwrap();
        assert!(
            !reply.starts_with(b"-"),
            "replaying {} failed: {}",
            String::from_utf8_lossy(cmd),
            String::from_utf8_lossy(&reply)
        );
    }
}

/// Deletes logically expired keys everywhere (a read of each key expires it), so the digests
/// compare live data only and the source's journal holds every expiry's `DEL`. KEYS lists
/// live keys only, so the short-TTL `x` keys are named outright: one that expired but was
/// not yet reclaimed would otherwise wait for active expiry, racing the journal read (its
/// replay, `SET ... PXAT` in the past then a verbatim `APPEND`, leaves a key without a TTL
/// that only the `DEL` removes).
fn expire_all(port: u16) {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    for db in 0..2 {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
        let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
        for n in 0..12 {
            keys.push(format!("x{n}").into_bytes());
            keys.push(format!("{{t}}x{n}").into_bytes());
        }
        for k in keys {
            let _: i64 = redis::cmd("EXISTS").arg(k).query(&mut c).unwrap();
        }
    }
}

fn digest(port: u16) -> String {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap()
}

/// A shardis of `shards` shards with its journals on (`backlog` bytes each), and a client.
fn journaled(shards: usize, backlog: usize) -> (Server, redis::Connection) {
    let src = Server::start_with(shards, &["--enable-debug-command", "yes"]);
    let mut c = src.client();
    let _: () = redis::cmd("DEBUG")
        .arg("JOURNAL")
        .arg("ON")
        .arg(backlog)
        .query(&mut c)
        .unwrap();
    (src, c)
}

#[test]
fn journals_replay_to_the_same_digest() {
    let (src, mut c) = journaled(4, 256 << 20);

    // Three clients at once (cross-shard commands interleave with each other's locks).
    let port = src.port;
    let workers: Vec<_> = (0..3)
        .map(|i| std::thread::spawn(move || client_workload(port, 0x9E37_79B9 + i * 7919, 1500)))
        .collect();
    // Meanwhile: a SWAPDB and a FLUSHDB of db 1 (every shard at once, under one lock).
    std::thread::sleep(Duration::from_millis(30));
    let _: () = redis::cmd("SWAPDB").arg(0).arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("SWAPDB").arg(0).arg(1).query(&mut c).unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    client_workload(port, 4242, 500);

    // Eviction: a small maxmemory and a burst of writes evict keys; each becomes a DEL.
    let used: u64 = common::info(&mut c, "memory")["used_memory"]
        .parse()
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory-policy")
        .arg("allkeys-random")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(used + (2 << 20))
        .query(&mut c)
        .unwrap();
    let big = "x".repeat(2000);
    let evicted = |c: &mut redis::Connection| -> u64 {
        common::info(c, "stats")["evicted_keys"].parse().unwrap()
    };
    for i in 0..20_000 {
        let _: redis::RedisResult<()> = redis::cmd("SET")
            .arg(format!("big{i}"))
            .arg(&big)
            .query(&mut c);
        if i >= 3000 && i % 500 == 0 && evicted(&mut c) > 0 {
            break;
        }
    }
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg(0)
        .query(&mut c)
        .unwrap();
    let evicted: u64 = common::info(&mut c, "stats")["evicted_keys"]
        .parse()
        .unwrap();
    assert!(evicted > 0, "the burst evicted keys");

    // Short TTLs run out; reading each key records the expiry as a DEL.
    std::thread::sleep(Duration::from_millis(100));
    expire_all(port);
    let expired: u64 = common::info(&mut c, "stats")["expired_keys"]
        .parse()
        .unwrap();
    assert!(expired > 0, "keys expired during the run");

    let journals: Vec<Vec<Rec>> = (0..4).map(|s| read_journal(&mut c, s)).collect();
    for (s, j) in journals.iter().enumerate() {
        assert!(j.len() > 50, "shard {s} journaled its writes ({})", j.len());
    }
    let kinds: HashMap<String, usize> = journals
        .iter()
        .flatten()
        .filter(|r| !r.cmd.is_empty())
        .fold(HashMap::new(), |mut m, r| {
            let name = String::from_utf8_lossy(&r.cmd)
                .split("\r\n")
                .nth(2)
                .unwrap_or("")
                .to_ascii_uppercase();
            *m.entry(name).or_default() += 1;
            m
        });
    for k in [
        "DEL",
        "SET",
        "RESTORE",
        "PEXPIREAT",
        "SREM",
        "HSET",
        "FLUSHDB",
        "SWAPDB",
    ] {
        assert!(kinds.contains_key(k), "no {k} record among {kinds:?}");
    }
    let (merged, txs) = merge(journals.iter().map(|j| j.to_vec()).collect());
    assert!(txs > 0, "the workload had multi-shard transactions");

    let one = Server::start_with(1, &["--enable-debug-command", "yes"]);
    replay(one.port, &merged);
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    replay(redis.port, &merged);
    expire_all(one.port);
    expire_all(redis.port);

    let want = digest(src.port);
    assert_ne!(want, "0".repeat(40), "the dataset is not empty");
    for (port, what) in [(one.port, "--shards 1"), (redis.port, "redis-server")] {
        if digest(port) != want {
            panic!(
                "replayed into {what}: digest differs\n{}",
                explain(src.port, port, &journals)
            );
        }
    }
}

/// Every key whose value, type or TTL differs between two servers, with each shard's
/// records (offset, transaction tag, db) that name it or change a whole database: what a
/// failing replay needs to be diagnosed from the log alone.
fn explain(a: u16, b: u16, journals: &[Vec<Rec>]) -> String {
    let conn = |port: u16| {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap()
    };
    let (mut ca, mut cb) = (conn(a), conn(b));
    let mut out = String::new();
    for db in 0..2u64 {
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for c in [&mut ca, &mut cb] {
            let _: () = redis::cmd("SELECT").arg(db).query(c).unwrap();
            let k: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(c).unwrap();
            keys.extend(k);
        }
        keys.sort();
        keys.dedup();
        for k in keys {
            let look = |c: &mut redis::Connection| -> (String, i64) {
                let d: Vec<String> = redis::cmd("DEBUG")
                    .arg("DIGEST-VALUE")
                    .arg(&k)
                    .query(c)
                    .unwrap_or_default();
                let t: i64 = redis::cmd("PTTL").arg(&k).query(c).unwrap_or(-3);
                (d.concat(), if t > 0 { 1 } else { t })
            };
            let (va, vb) = (look(&mut ca), look(&mut cb));
            if va == vb {
                continue;
            }
            let name = String::from_utf8_lossy(&k).to_string();
            out += &format!("db {db} key {name}: source {va:?}, replay {vb:?}\n");
            for (s, j) in journals.iter().enumerate() {
                for r in j {
                    let text = String::from_utf8_lossy(&r.cmd).replace("\r\n", " ");
                    if text.contains(&format!(" {name} ")) || is_global(&r.cmd) {
                        let text: String = text.chars().take(120).collect();
                        out += &format!(
                            "    shard {s} at {} tx {}/{} db {}: {text}\n",
                            r.offset, r.tx, r.parts, r.db
                        );
                    }
                }
            }
        }
    }
    out
}

/// A key of `prefix` owned by `shard` of `n`.
fn key_on(shard: usize, n: usize, prefix: &str) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| shardis::shard::route::shard_of(k.as_bytes(), n) == shard)
        .expect("some key maps to the shard")
}

/// Moving one element between shards into a long list (or a big set) records that one
/// element on each side (`LPOP`/`RPUSH`, `SREM`/`SADD`), not the destination's whole
/// value; the replayed journals still give the source's digest.
#[test]
fn cross_shard_moves_record_the_element_not_the_value() {
    let n = 4;
    let (src, mut c) = journaled(n, 64 << 20);
    let (from, to) = (key_on(0, n, "from"), key_on(1, n, "to"));
    let (sfrom, sto) = (key_on(2, n, "sfrom"), key_on(3, n, "sto"));
    let long: Vec<String> = (0..2000).map(|i| format!("element-{i}")).collect();
    let _: () = redis::cmd("RPUSH")
        .arg(&to)
        .arg(&long)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(&from)
        .arg(&["a", "b", "c"])
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg(&sto)
        .arg(&long)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SADD")
        .arg(&sfrom)
        .arg(&["x", "y"])
        .query(&mut c)
        .unwrap();
    let moved: String = redis::cmd("LMOVE")
        .arg(&from)
        .arg(&to)
        .arg("LEFT")
        .arg("RIGHT")
        .query(&mut c)
        .unwrap();
    assert_eq!(moved, "a");
    let moved: String = redis::cmd("RPOPLPUSH")
        .arg(&from)
        .arg(&to)
        .query(&mut c)
        .unwrap();
    assert_eq!(moved, "c");
    let n_moved: i64 = redis::cmd("SMOVE")
        .arg(&sfrom)
        .arg(&sto)
        .arg("x")
        .query(&mut c)
        .unwrap();
    assert_eq!(n_moved, 1);

    let last = |c: &mut redis::Connection, shard: usize, k: usize| -> Vec<String> {
        let recs = read_journal(c, shard);
        recs.iter()
            .rev()
            .take(k)
            .rev()
            .map(|r| String::from_utf8_lossy(&r.cmd).into_owned())
            .collect()
    };
    let resp = |args: &[&str]| -> String {
        let mut s = format!("*{}\r\n", args.len());
        for a in args {
            s.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s
    };
    assert_eq!(
        last(&mut c, 0, 2),
        vec![resp(&["LPOP", &from]), resp(&["RPOP", &from])]
    );
    assert_eq!(
        last(&mut c, 1, 2),
        vec![resp(&["RPUSH", &to, "a"]), resp(&["LPUSH", &to, "c"])]
    );
    assert_eq!(last(&mut c, 2, 1), vec![resp(&["SREM", &sfrom, "x"])]);
    assert_eq!(last(&mut c, 3, 1), vec![resp(&["SADD", &sto, "x"])]);

    // The journals, merged and replayed, rebuild the same dataset.
    let journals: Vec<Vec<Rec>> = (0..n).map(|s| read_journal(&mut c, s)).collect();
    let (records, _) = merge(journals);
    let one = Server::start_with(1, &["--enable-debug-command", "yes"]);
    replay(one.port, &records);
    assert_eq!(digest(one.port), digest(src.port));
}

/// Clients blocked on keys and woken by a later push take their data in a write of their
/// own: each pop is journaled after the push that fed it (Redis propagates a served BLPOP
/// as LPOP), so the replayed journals give the source's digest. Covers one key, keys on
/// two shards, a count (BLMPOP), a sorted set, and BLMOVE to this and to another shard.
#[test]
fn blocked_clients_served_later_record_their_pops() {
    let n = 2;
    let (src, mut c) = journaled(n, 64 << 20);
    let port = src.port;
    let (a, b) = (key_on(0, n, "a"), key_on(1, n, "b"));
    let (m, z) = (key_on(0, n, "m"), key_on(1, n, "z"));
    let (mv, here, there) = (
        key_on(0, n, "mv"),
        key_on(0, n, "here"),
        key_on(1, n, "there"),
    );
    let waits: Vec<Vec<String>> = vec![
        vec!["BLPOP".into(), a.clone(), "5".into()],
        vec!["BRPOP".into(), b.clone(), a.clone(), "5".into()],
        vec![
            "BLMPOP".into(),
            "5".into(),
            "1".into(),
            m.clone(),
            "LEFT".into(),
            "COUNT".into(),
            "2".into(),
        ],
        vec!["BZPOPMAX".into(), z.clone(), "5".into()],
        vec![
            "BLMOVE".into(),
            mv.clone(),
            here.clone(),
            "LEFT".into(),
            "RIGHT".into(),
            "5".into(),
        ],
        vec![
            "BLMOVE".into(),
            mv.clone(),
            there.clone(),
            "RIGHT".into(),
            "LEFT".into(),
            "5".into(),
        ],
    ];
    let clients: Vec<_> = waits
        .iter()
        .cloned()
        .map(|argv| {
            std::thread::spawn(move || {
                let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                let mut cmd = redis::cmd(&argv[0]);
                for x in &argv[1..] {
                    cmd.arg(x);
                }
                let v: Value = cmd.query(&mut c).unwrap();
                v
            })
        })
        .collect();
    let blocked = |c: &mut redis::Connection| -> usize {
        common::info(c, "clients")["blocked_clients"]
            .parse()
            .unwrap()
    };
    assert!(
        common::wait_for(Duration::from_secs(10), || blocked(&mut c) == waits.len()),
        "every client blocked"
    );
    for (k, vals) in [
        (&a, &["a1", "a2", "a3"][..]),
        (&m, &["m1", "m2", "m3"]),
        (&mv, &["v1", "v2", "v3"]),
    ] {
        let _: () = redis::cmd("RPUSH").arg(k).arg(vals).query(&mut c).unwrap();
    }
    let _: () = redis::cmd("ZADD")
        .arg(&z)
        .arg(&["1", "low", "2", "high", "3", "top"])
        .query(&mut c)
        .unwrap();
    for (t, argv) in clients.into_iter().zip(&waits) {
        let v = t.join().unwrap();
        assert_ne!(v, Value::Nil, "{argv:?} was served");
    }
    let _: () = redis::cmd("RPUSH").arg(&b).arg("b1").query(&mut c).unwrap();

    let journals: Vec<Vec<Rec>> = (0..n).map(|s| read_journal(&mut c, s)).collect();
    let text: Vec<String> = journals
        .iter()
        .flatten()
        .map(|r| String::from_utf8_lossy(&r.cmd).replace("\r\n", " "))
        .collect();
    for want in [
        format!("$4 LPOP ${} {a} ", a.len()),
        format!("$4 LPOP ${} {m} $1 2 ", m.len()),
        format!("$4 ZREM ${} {z} $3 top ", z.len()),
        format!("$4 RPOP ${} {mv} ", mv.len()),
    ] {
        assert!(
            text.iter().any(|t| t.contains(&want)),
            "no record {want:?} among {text:?}"
        );
    }
    let (records, _) = merge(journals);
    let one = Server::start_with(1, &["--enable-debug-command", "yes"]);
    replay(one.port, &records);
    let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
    replay(redis.port, &records);
    let want = digest(src.port);
    assert_eq!(digest(one.port), want, "replayed into --shards 1");
    assert_eq!(digest(redis.port), want, "replayed into redis-server");
}
