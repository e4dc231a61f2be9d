//! Streams in RDB form against a stock redis-server 7.0 (shardis has no stream commands yet,
//! so the streams are built in redis-server and travel as DUMP payloads and RDB files):
//! DUMP / RESTORE both ways keeps every entry, counter, group, pending entry and consumer
//! (`XINFO STREAM key FULL` and `DEBUG DIGEST-VALUE` on redis-server agree, and shardis's
//! digest too); BGSAVE's file passes `redis-check-rdb` and loads in redis-server to the same
//! digest; a restart, DEBUG RELOAD and an AOF base bring the streams back; a shardis replica
//! of redis-server loads them in its full sync. Every test runs under each of
//! `common::shard_counts()`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::resp::Redis;
use common::{redis_server, shard_counts, Server};
use redis::Value;

fn connect(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        .expect("connect")
}

fn q<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&[u8]]) -> T {
    let mut cmd = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{:?} failed: {e}", String::from_utf8_lossy(args[0])))
}

fn qs(c: &mut redis::Connection, args: &[&str]) -> Value {
    let a: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    q(c, &a)
}

/// A DUMP payload of `body`: RDB version 10 and the CRC64.
fn signed(body: &[u8]) -> Vec<u8> {
    let mut p = body.to_vec();
    p.extend_from_slice(&10u16.to_le_bytes());
    let crc = shardis::persist::crc64::update(0, &p);
    p.extend_from_slice(&crc.to_le_bytes());
    p
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardis-streams-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The stream keys `build` makes.
const KEYS: [&str; 5] = [
    "s:big",
    "s:simple",
    "s:int",
    "s:groups-only",
    "s:all-deleted",
];

/// Builds the streams in redis-server: explicit IDs, enough entries for several nodes,
/// differing field sets, integer-looking fields and values, deletions (of pending entries
/// too), groups with pending entries, claims, acks and consumers; a stream with groups and
/// no entry (MKSTREAM) and one whose entries were all deleted.
fn build(c: &mut redis::Connection) {
    let mut p = redis::pipe();
    for i in 0..700u64 {
        let id = format!("{}-{}", 1_000 + i / 4, i % 4);
        let n = i.to_string();
        let long = "x".repeat(300 + i as usize);
        let fields: Vec<&str> = match i % 6 {
            0 | 1 => vec!["name", "ann", "n", &n],
            2 => vec!["n", &n, "name", "swapped"],
            3 => vec![
                "123",
                "-45",
                "big",
                "9223372036854775807",
                "neg",
                "-9000000000",
            ],
            4 => vec!["long", &long],
            _ => vec!["name", "bob", "n", &n, "extra", ""],
        };
        p.cmd("XADD").arg("s:big").arg(&id).arg(&fields);
    }
    for i in 0..50u64 {
        p.cmd("XADD")
            .arg("s:simple")
            .arg(format!("{}-0", 10 + i))
            .arg("f")
            .arg(format!("v{i}"));
    }
    for i in 0..120i64 {
        let v = (i * 7_919 - 400).to_string();
        p.cmd("XADD")
            .arg("s:int")
            .arg(format!("{}-{}", 5 + i, i * 3))
            .arg(&v)
            .arg(&v);
    }
    p.query::<()>(c).unwrap();
    for i in (0..700u64).step_by(11) {
        qs(
            c,
            &["XDEL", "s:big", &format!("{}-{}", 1_000 + i / 4, i % 4)],
        );
    }
    qs(c, &["XGROUP", "CREATE", "s:big", "g1", "0"]);
    qs(c, &["XGROUP", "CREATE", "s:big", "g2", "$"]);
    qs(c, &["XGROUP", "CREATE", "s:big", "g3", "1050-0"]);
    let read = |c: &mut redis::Connection, g: &str, who: &str, n: &str| {
        qs(
            c,
            &[
                "XREADGROUP",
                "GROUP",
                g,
                who,
                "COUNT",
                n,
                "STREAMS",
                "s:big",
                ">",
            ],
        );
    };
    read(c, "g1", "alice", "40");
    read(c, "g1", "bob", "25");
    read(c, "g3", "alice", "10");
    qs(
        c,
        &[
            "XACK", "s:big", "g1", "1000-1", "1000-2", "1001-3", "1003-0",
        ],
    );
    qs(
        c,
        &[
            "XAUTOCLAIM",
            "s:big",
            "g1",
            "carol",
            "0",
            "0-0",
            "COUNT",
            "3",
        ],
    );
    qs(c, &["XGROUP", "CREATECONSUMER", "s:big", "g1", "dave"]);
    // A pending entry deleted: it stays in the PELs.
    qs(c, &["XDEL", "s:big", "1012-0"]);
    for i in 0..5 {
        qs(c, &["XADD", "s:big", &format!("2000-{i}"), "late", "1"]);
    }
    qs(c, &["XGROUP", "CREATE", "s:simple", "g", "0"]);
    qs(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "5",
            "STREAMS",
            "s:simple",
            ">",
        ],
    );
    qs(c, &["XGROUP", "CREATE", "s:int", "7", "$"]);
    qs(
        c,
        &["XGROUP", "CREATE", "s:groups-only", "g", "0", "MKSTREAM"],
    );
    qs(c, &["XGROUP", "CREATE", "s:groups-only", "h", "$"]);
    qs(c, &["XGROUP", "CREATECONSUMER", "s:groups-only", "g", "c"]);
    for id in ["5-1", "5-2", "6-0"] {
        qs(c, &["XADD", "s:all-deleted", id, "f", "v"]);
    }
    qs(c, &["XGROUP", "CREATE", "s:all-deleted", "g", "0"]);
    qs(
        c,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "2",
            "STREAMS",
            "s:all-deleted",
            ">",
        ],
    );
    qs(c, &["XDEL", "s:all-deleted", "5-1", "5-2", "6-0"]);
}

/// `XINFO STREAM key FULL COUNT 0` without the radix tree's sizes: those follow the node
/// layout, which a reload may change (Redis also closes nodes by bytes; shardis writes
/// nodes of `stream-node-max-entries` and never keeps deleted entries).
fn xinfo(c: &mut redis::Connection, key: &str) -> Vec<Value> {
    let Value::Array(items) = qs(c, &["XINFO", "STREAM", key, "FULL", "COUNT", "0"]) else {
        panic!("XINFO of {key} not an array");
    };
    let mut out = Vec::new();
    for kv in items.chunks(2) {
        let skip = matches!(&kv[0], Value::BulkString(k) if k.starts_with(b"radix-tree-"));
        if !skip {
            out.extend(kv.iter().cloned());
        }
    }
    out
}

fn digest_value(c: &mut redis::Connection, key: &str) -> String {
    let v: Vec<String> = q(c, &[b"DEBUG", b"DIGEST-VALUE", key.as_bytes()]);
    v.into_iter().next().unwrap()
}

fn digest(c: &mut redis::Connection) -> String {
    q(c, &[b"DEBUG", b"DIGEST"])
}

fn dump(c: &mut redis::Connection, key: &str) -> Vec<u8> {
    q(c, &[b"DUMP", key.as_bytes()])
}

fn restore(c: &mut redis::Connection, key: &str, payload: &[u8], replace: bool) {
    let mut args: Vec<&[u8]> = vec![b"RESTORE", key.as_bytes(), b"0", payload];
    if replace {
        args.push(b"REPLACE");
    }
    let r: String = q(c, &args);
    assert_eq!(r, "OK", "RESTORE {key}");
}

/// A redis-server with the streams built.
fn redis_with_streams(extra: &[&str]) -> Redis {
    let mut args = vec!["--enable-debug-command", "yes"];
    args.extend_from_slice(extra);
    let r = Redis::start_with(&args);
    build(&mut connect(r.port));
    r
}

#[test]
fn dump_restore_roundtrips_through_redis_server() {
    if redis_server().is_none() {
        eprintln!("redis-server not installed: skipping");
        return;
    }
    let r = redis_with_streams(&[]);
    let mut rc = connect(r.port);
    // The data covers a group whose entries-read is unknown (-1 on disk).
    let groups: Value = qs(&mut rc, &["XINFO", "GROUPS", "s:big"]);
    fn has_nil(v: &Value) -> bool {
        match v {
            Value::Nil => true,
            Value::Array(a) => a.iter().any(has_nil),
            _ => false,
        }
    }
    assert!(has_nil(&groups), "{groups:?}");
    let originals: Vec<(Vec<u8>, Vec<Value>, String)> = KEYS
        .iter()
        .map(|k| {
            (
                dump(&mut rc, k),
                xinfo(&mut rc, k),
                digest_value(&mut rc, k),
            )
        })
        .collect();
    for n in shard_counts() {
        let s = Server::start_with(n, &["--enable-debug-command", "yes"]);
        let mut c = s.client();
        for (key, (payload, info, dig)) in KEYS.iter().zip(&originals) {
            restore(&mut c, key, payload, false);
            let t: String = q(&mut c, &[b"TYPE", key.as_bytes()]);
            assert_eq!(t, "stream", "{n} shards: TYPE {key}");
            assert_eq!(
                &digest_value(&mut c, key),
                dig,
                "{n} shards: digest of {key}"
            );
            let back = dump(&mut c, key);
            let copy = format!("{key}:copy");
            restore(&mut rc, &copy, &back, false);
            assert_eq!(&xinfo(&mut rc, &copy), info, "{n} shards: XINFO of {key}");
            assert_eq!(&digest_value(&mut rc, &copy), dig, "{n} shards: {key}");
            qs(&mut rc, &["DEL", &copy]);
            // RESTORE ... REPLACE over the original: the same stream.
            restore(&mut rc, key, &back, true);
            assert_eq!(&xinfo(&mut rc, key), info, "{n} shards: {key} replaced");
            // And shardis's DUMP of it restores in shardis again.
            restore(&mut c, &copy, &back, false);
            assert_eq!(&digest_value(&mut c, &copy), dig, "{n} shards: {copy}");
        }
        // Without LZF (whose matches differ from Redis's at times), streams without
        // deletions (whose nodes Redis keeps) come back as Redis's very bytes.
        qs(&mut rc, &["CONFIG", "SET", "rdbcompression", "no"]);
        qs(&mut c, &["CONFIG", "SET", "rdbcompression", "no"]);
        for key in ["s:simple", "s:int", "s:groups-only", "s:all-deleted"] {
            let raw = dump(&mut rc, key);
            let copy = format!("{key}:raw");
            restore(&mut c, &copy, &raw, false);
            assert_eq!(dump(&mut c, &copy), raw, "{n} shards: DUMP of {key}");
        }
        qs(&mut rc, &["CONFIG", "SET", "rdbcompression", "yes"]);
        // Corrupt payloads with a valid checksum: a truncated one is refused, a changed
        // byte anywhere is refused or loads (never a crash).
        let body = &originals[0].0[..originals[0].0.len() - 10];
        for cut in [1, body.len() / 2, body.len() - 1] {
            let e = redis::cmd("RESTORE")
                .arg("bad")
                .arg(0)
                .arg(signed(&body[..cut]))
                .query::<String>(&mut c)
                .unwrap_err();
            assert!(e.to_string().contains("Bad data format"), "{e}");
        }
        for i in (1..body.len()).step_by(body.len() / 300 + 1) {
            let mut b = body.to_vec();
            b[i] ^= 0x5A;
            let _ = redis::cmd("RESTORE")
                .arg("bad")
                .arg(0)
                .arg(signed(&b))
                .arg("REPLACE")
                .query::<String>(&mut c);
        }
        let pong: String = q(&mut c, &[b"PING"]);
        assert_eq!(pong, "PONG");
    }
}

fn check_rdb(file: &Path) {
    let Ok(out) = Command::new("redis-check-rdb").arg(file).output() else {
        eprintln!("redis-check-rdb not installed: skipping the check");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && text.contains("RDB looks OK"),
        "redis-check-rdb refused {}:\n{text}",
        file.display()
    );
}

fn persistence(c: &mut redis::Connection, field: &str) -> String {
    common::info(c, "persistence")
        .get(field)
        .cloned()
        .unwrap_or_default()
}

/// Starts shardis on `dir` with `extra` flags.
fn start_in(dir: &Path, n: usize, extra: &[&str]) -> Server {
    let d = dir.to_string_lossy().into_owned();
    let mut args = vec!["--dir", &d, "--enable-debug-command", "yes"];
    args.extend_from_slice(extra);
    Server::start_with(n, &args)
}

#[test]
fn saved_files_with_streams_load_everywhere() {
    if redis_server().is_none() {
        eprintln!("redis-server not installed: skipping");
        return;
    }
    let r = redis_with_streams(&[]);
    let mut rc = connect(r.port);
    let payloads: Vec<Vec<u8>> = KEYS.iter().map(|k| dump(&mut rc, k)).collect();
    let want = digest(&mut rc);
    let values: Vec<String> = KEYS.iter().map(|k| digest_value(&mut rc, k)).collect();
    for n in shard_counts() {
        let dir = tmpdir(&format!("save-{n}"));
        let s = start_in(&dir, n, &[]);
        let mut c = s.client();
        for (k, p) in KEYS.iter().zip(&payloads) {
            restore(&mut c, k, p, false);
        }
        assert_eq!(digest(&mut c), want, "{n} shards: digest after RESTORE");
        // BGSAVE: redis-check-rdb accepts the file, redis-server loads it to the digest.
        let r: String = q(&mut c, &[b"BGSAVE"]);
        assert_eq!(r, "Background saving started");
        assert!(common::wait_for(Duration::from_secs(30), || {
            persistence(&mut c, "rdb_bgsave_in_progress") == "0"
                && persistence(&mut c, "rdb_saves") == "1"
        }));
        assert_eq!(persistence(&mut c, "rdb_last_bgsave_status"), "ok");
        let file = dir.join("dump.rdb");
        check_rdb(&file);
        let d = dir.to_string_lossy().into_owned();
        let loaded = Redis::start_with(&[
            "--dir",
            &d,
            "--dbfilename",
            "dump.rdb",
            "--enable-debug-command",
            "yes",
        ]);
        let mut lc = connect(loaded.port);
        assert_eq!(
            digest(&mut lc),
            want,
            "{n} shards: redis-server on the file"
        );
        for (k, v) in KEYS.iter().zip(&values) {
            assert_eq!(
                &digest_value(&mut lc, k),
                v,
                "{n} shards: {k} in redis-server"
            );
        }
        drop(lc);
        drop(loaded);
        // DEBUG RELOAD, then SAVE and a restart on the file.
        let r: String = q(&mut c, &[b"DEBUG", b"RELOAD"]);
        assert_eq!(r, "OK");
        assert_eq!(digest(&mut c), want, "{n} shards: after DEBUG RELOAD");
        let r: String = q(&mut c, &[b"SAVE"]);
        assert_eq!(r, "OK");
        check_rdb(&file);
        drop(c);
        drop(s);
        let s = start_in(&dir, n, &[]);
        let mut c = s.client();
        assert_eq!(digest(&mut c), want, "{n} shards: after a restart");
        for (k, v) in KEYS.iter().zip(&values) {
            assert_eq!(
                &digest_value(&mut c, k),
                v,
                "{n} shards: {k} after a restart"
            );
        }
        // The AOF's base (an RDB preamble) carries them too.
        let r: String = q(&mut c, &[b"BGREWRITEAOF"]);
        assert_eq!(r, "Background append only file rewriting started");
        assert!(common::wait_for(Duration::from_secs(30), || {
            persistence(&mut c, "aof_rewrite_in_progress") == "0"
        }));
        assert_eq!(persistence(&mut c, "aof_last_bgrewrite_status"), "ok");
        drop(c);
        drop(s);
        std::fs::remove_file(&file).unwrap();
        let s = start_in(&dir, n, &["--appendonly", "yes"]);
        let mut c = s.client();
        assert_eq!(digest(&mut c), want, "{n} shards: from the AOF base");
        drop(c);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_replica_loads_redis_streams_in_its_full_sync() {
    if redis_server().is_none() {
        eprintln!("redis-server not installed: skipping");
        return;
    }
    // Small nodes in redis-server: more of them, partly deleted ones among them.
    let r = redis_with_streams(&["--stream-node-max-entries", "7"]);
    let mut rc = connect(r.port);
    let want = digest(&mut rc);
    let port = r.port.to_string();
    for n in shard_counts() {
        let s = Server::start_with(
            n,
            &[
                "--replicaof",
                "127.0.0.1",
                &port,
                "--enable-debug-command",
                "yes",
            ],
        );
        let mut c = s.client();
        let synced = common::wait_for(Duration::from_secs(20), || {
            common::info(&mut c, "replication")
                .get("master_link_status")
                .is_some_and(|v| v == "up")
                && digest(&mut c) == want
        });
        assert!(synced, "{n} shards: the replica never reached the digest");
        for k in KEYS {
            let t: String = q(&mut c, &[b"TYPE", k.as_bytes()]);
            assert_eq!(t, "stream", "{n} shards: TYPE {k}");
            assert_eq!(
                digest_value(&mut c, k),
                digest_value(&mut rc, k),
                "{n} shards: {k}"
            );
        }
    }
}
