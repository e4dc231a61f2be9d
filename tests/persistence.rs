//! Persistence against the real binaries: shardis's SAVE passes `redis-check-rdb` and loads in
//! a stock redis-server to the same data; a dump written by redis-server (every encoding
//! forced) loads in shardis; SHUTDOWN SAVE and a restart bring every key back with its TTL;
//! corrupt, truncated and wrong-checksum files stop the server with a clear message. Every
//! test runs under each of `common::shard_counts()`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::resp::Redis;
use common::{redis_server, shard_counts, Server};

/// A fresh empty directory for one test's files.
fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardis-persist-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn connect(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

const DBS: [i64; 3] = [0, 2, 5];
const FAR: i64 = 4_000_000_000_000;

/// Every type in its small and big encodings, expiries, three databases.
fn write_dataset(c: &mut redis::Connection) {
    let q = |c: &mut redis::Connection, args: &[&str]| {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query::<redis::Value>(c).unwrap();
    };
    for (n, db) in DBS.iter().enumerate() {
        q(c, &["SELECT", &db.to_string()]);
        let p = format!("d{n}:");
        let k = |s: &str| format!("{p}{s}");
        for i in 0..40 {
            q(
                c,
                &[
                    "SET",
                    &k(&format!("int{i}")),
                    &(i * 1_000_003 - 7).to_string(),
                ],
            );
            q(c, &["SET", &k(&format!("str{i}")), &format!("value-{i}")]);
        }
        q(c, &["SET", &k("big-int"), "123456789012345678"]);
        q(c, &["SET", &k("lzf"), &"abcdefgh".repeat(400)]);
        q(c, &["SET", &k("bin"), "\u{1}\u{0}\u{ff}"]);
        q(c, &["SET", &k("empty"), ""]);
        q(c, &["SET", &k("ttl-str"), "x"]);
        q(c, &["PEXPIREAT", &k("ttl-str"), &FAR.to_string()]);
        q(c, &["RPUSH", &k("list-small"), "a", "1", "-5", "b"]);
        let items: Vec<String> = (0..3000).map(|i| format!("item-{i}")).collect();
        let mut cmd = vec!["RPUSH".to_string(), k("list-big")];
        cmd.extend(items);
        cmd.push("y".repeat(10_000));
        q(c, &cmd.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        q(c, &["HSET", &k("hash-small"), "f", "v", "n", "12"]);
        let mut cmd = vec!["HSET".to_string(), k("hash-big")];
        for i in 0..1500 {
            cmd.push(format!("field-{i}"));
            cmd.push(format!("{i}"));
        }
        q(c, &cmd.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        q(c, &["PEXPIREAT", &k("hash-big"), &(FAR + 1).to_string()]);
        q(
            c,
            &["SADD", &k("set-int"), "1", "2", "-300000", "4000000000"],
        );
        q(c, &["SADD", &k("set-str"), "a", "b", "c"]);
        let mut cmd = vec!["SADD".to_string(), k("set-bigint")];
        cmd.extend((0..600).map(|i| (i * 3).to_string()));
        q(c, &cmd.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        let mut cmd = vec!["SADD".to_string(), k("set-big")];
        cmd.extend((0..1500).map(|i| format!("member-{i}")));
        q(c, &cmd.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        q(
            c,
            &[
                "ZADD",
                &k("z-small"),
                "1",
                "a",
                "2.5",
                "b",
                "-inf",
                "c",
                "0.1",
                "d",
            ],
        );
        let mut cmd = vec!["ZADD".to_string(), k("z-big")];
        for i in 0..1300 {
            cmd.push(format!("{}", f64::from(i) / 7.0));
            cmd.push(format!("m{i}"));
        }
        q(c, &cmd.iter().map(|s| s.as_str()).collect::<Vec<_>>());
        q(c, &["PEXPIREAT", &k("z-big"), &(FAR + 2).to_string()]);
    }
    q(c, &["SELECT", "0"]);
}

/// Every key of every database used: type, value (sets and hashes sorted), absolute expiry.
fn dump(c: &mut redis::Connection) -> BTreeMap<(i64, Vec<u8>), String> {
    let mut out = BTreeMap::new();
    for db in 0..16 {
        redis::cmd("SELECT").arg(db).query::<()>(c).unwrap();
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(c).unwrap();
        for k in keys {
            let t: String = redis::cmd("TYPE").arg(&k).query(c).unwrap();
            let v: String = match t.as_str() {
                "string" => {
                    let v: Vec<u8> = redis::cmd("GET").arg(&k).query(c).unwrap();
                    format!("{v:?}")
                }
                "list" => {
                    let v: Vec<Vec<u8>> = redis::cmd("LRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .query(c)
                        .unwrap();
                    format!("{v:?}")
                }
                "hash" => {
                    let mut v: Vec<(Vec<u8>, Vec<u8>)> =
                        redis::cmd("HGETALL").arg(&k).query(c).unwrap();
                    v.sort();
                    format!("{v:?}")
                }
                "set" => {
                    let mut v: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&k).query(c).unwrap();
                    v.sort();
                    format!("{v:?}")
                }
                "zset" => {
                    let v: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                        .arg(&k)
                        .arg(0)
                        .arg(-1)
                        .arg("WITHSCORES")
                        .query(c)
                        .unwrap();
                    format!("{v:?}")
                }
                other => panic!("unexpected type {other}"),
            };
            let exp: i64 = redis::cmd("PEXPIRETIME").arg(&k).query(c).unwrap();
            out.insert((db, k), format!("{t} {exp} {v}"));
        }
    }
    redis::cmd("SELECT").arg(0).query::<()>(c).unwrap();
    out
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

fn info_field(c: &mut redis::Connection, name: &str) -> String {
    common::info(c, "persistence")
        .get(name)
        .cloned()
        .unwrap_or_default()
}

/// BGSAVE, then waits for the first save to end and checks it succeeded and that
/// redis-check-rdb accepts the file.
fn bgsave_once(c: &mut redis::Connection, dir: &Path) {
    let r: String = redis::cmd("BGSAVE").query(c).unwrap();
    assert_eq!(r, "Background saving started");
    assert!(common::wait_for(Duration::from_secs(60), || {
        info_field(c, "rdb_bgsave_in_progress") == "0" && info_field(c, "rdb_saves") == "1"
    }));
    assert_eq!(info_field(c, "rdb_last_bgsave_status"), "ok");
    check_rdb(&dir.join("dump.rdb"));
}

#[test]
fn shardis_dump_loads_in_redis_server() {
    if redis_server().is_none() {
        eprintln!("redis-server not installed: skipping");
        return;
    }
    for n in shard_counts() {
        let d = tmpdir(&format!("to-redis-{n}"));
        let dir = d.to_str().unwrap();
        let s = Server::start_with(n, &["--dir", dir]);
        let mut c = s.client();
        write_dataset(&mut c);
        let want = dump(&mut c);
        assert!(info_field(&mut c, "rdb_changes_since_last_save") != "0");
        let before: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
        let r: String = redis::cmd("SAVE").query(&mut c).unwrap();
        assert_eq!(r, "OK");
        assert_eq!(info_field(&mut c, "rdb_changes_since_last_save"), "0");
        assert_eq!(info_field(&mut c, "rdb_saves"), "1");
        assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
        let after: i64 = redis::cmd("LASTSAVE").query(&mut c).unwrap();
        assert!(after >= before);
        check_rdb(&d.join("dump.rdb"));
        let r = Redis::start_with(&["--dir", dir, "--dbfilename", "dump.rdb"]);
        let got = dump(&mut connect(r.port));
        assert_eq!(got.len(), want.len(), "{n} shards: key count");
        for (k, v) in &want {
            assert_eq!(got.get(k), Some(v), "{n} shards: key {k:?}");
        }
        // Redis 7.0's encodings came through (the file held them).
        let mut rc = connect(r.port);
        for (key, enc) in [
            ("d0:hash-small", "listpack"),
            ("d0:hash-big", "hashtable"),
            ("d0:set-int", "intset"),
            ("d0:z-small", "listpack"),
            ("d0:z-big", "skiplist"),
            ("d0:list-big", "quicklist"),
        ] {
            let e: String = redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg(key)
                .query(&mut rc)
                .unwrap();
            assert_eq!(e, enc, "{key}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn redis_server_dump_loads_in_shardis() {
    if redis_server().is_none() {
        eprintln!("redis-server not installed: skipping");
        return;
    }
    // Small thresholds: the small values of the dataset get the plain encodings too.
    for (name, extra) in [
        ("default", vec![]),
        (
            "small",
            vec![
                "--list-max-listpack-size",
                "4",
                "--hash-max-listpack-entries",
                "1",
                "--zset-max-listpack-entries",
                "1",
                "--set-max-intset-entries",
                "1",
                "--rdbcompression",
                "no",
            ],
        ),
    ] {
        let d = tmpdir(&format!("from-redis-{name}"));
        let dir = d.to_str().unwrap().to_string();
        let mut args = vec!["--dir", dir.as_str(), "--dbfilename", "dump.rdb"];
        args.extend(extra.iter());
        let r = Redis::start_with(&args);
        let mut rc = connect(r.port);
        write_dataset(&mut rc);
        let want = dump(&mut rc);
        let _: String = redis::cmd("SAVE").query(&mut rc).unwrap();
        drop(r);
        for n in shard_counts() {
            let s = Server::start_with(n, &["--dir", &dir]);
            let mut c = s.client();
            let got = dump(&mut c);
            assert_eq!(got.len(), want.len(), "{name}, {n} shards: key count");
            for (k, v) in &want {
                assert_eq!(got.get(k), Some(v), "{name}, {n} shards: key {k:?}");
            }
            assert_eq!(
                info_field(&mut c, "rdb_last_load_keys_loaded"),
                want.len().to_string()
            );
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn shutdown_save_and_restart_keep_every_key_and_ttl() {
    for n in shard_counts() {
        let d = tmpdir(&format!("restart-{n}"));
        let dir = d.to_str().unwrap();
        let mut s = Server::start_with(n, &["--dir", dir]);
        let mut c = s.client();
        write_dataset(&mut c);
        let want = dump(&mut c);
        let _ = redis::cmd("SHUTDOWN").arg("SAVE").query::<()>(&mut c);
        assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
        check_rdb(&d.join("dump.rdb"));
        let s = Server::start_with(n, &["--dir", dir, "--enable-debug-command", "yes"]);
        let mut c = s.client();
        assert_eq!(dump(&mut c), want, "{n} shards: after restart");
        // DEBUG RELOAD: save and load back, same data.
        let r: String = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
        assert_eq!(r, "OK");
        assert_eq!(dump(&mut c), want, "{n} shards: after DEBUG RELOAD");
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// SHUTDOWN saves when save rules exist (Redis 7's default rules when none are configured),
/// not with `save ''`; NOSAVE never does.
#[test]
fn shutdown_saves_only_with_rules() {
    let n = shard_counts()[0];
    let cases: [(&[&str], &[&str], bool); 3] = [
        (&["SHUTDOWN"], &["--save", ""], false),
        (&["SHUTDOWN", "NOSAVE"], &[], false),
        (&["SHUTDOWN"], &[], true),
    ];
    for (i, (how, flags, saves)) in cases.into_iter().enumerate() {
        let d = tmpdir(&format!("shutdown-{i}"));
        let mut args = vec!["--dir", d.to_str().unwrap()];
        args.extend_from_slice(flags);
        let mut s = Server::start_with(n, &args);
        let mut c = s.client();
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
        let mut cmd = redis::cmd(how[0]);
        for a in &how[1..] {
            cmd.arg(*a);
        }
        let _ = cmd.query::<()>(&mut c);
        assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
        assert_eq!(d.join("dump.rdb").exists(), saves, "{how:?} {flags:?}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// Starts shardis on `dir` expecting it to refuse: returns its log.
fn refuses_to_start(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(["--port", &common::free_port().to_string(), "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "shardis started on a bad file");
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn bad_files_stop_the_server() {
    let d = tmpdir("bad-src");
    let mut s = Server::start_with(shard_counts()[0], &["--dir", d.to_str().unwrap()]);
    let mut c = s.client();
    write_dataset(&mut c);
    let _ = redis::cmd("SHUTDOWN").arg("SAVE").query::<()>(&mut c);
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    let good = std::fs::read(d.join("dump.rdb")).unwrap();
    let case = |name: &str, data: &[u8]| -> String {
        let bd = tmpdir(&format!("bad-{name}"));
        std::fs::write(bd.join("dump.rdb"), data).unwrap();
        let log = refuses_to_start(&bd);
        let _ = std::fs::remove_dir_all(&bd);
        log
    };
    let log = case("truncated", &good[..good.len() / 2]);
    assert!(
        log.contains("Short read or OOM loading DB. Unrecoverable error, aborting now."),
        "{log}"
    );
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    let log = case("checksum", &bad);
    assert!(log.contains("Wrong RDB checksum expected: ("), "{log}");
    // A byte changed in a value: the checksum catches it (the reader may stop earlier).
    let mut bad = good.clone();
    bad[n / 2] ^= 0x01;
    let log = case("corrupt", &bad);
    assert!(log.contains("Fatal error loading the DB"), "{log}");
    let mut bad = good.clone();
    bad[5..9].copy_from_slice(b"0011");
    let log = case("version", &bad);
    assert!(log.contains("Can't handle RDB format version 11"), "{log}");
    let _ = std::fs::remove_dir_all(&d);

    // A stream in a Redis dump loads (tests/streams_rdb.rs has the rest); with its node's
    // live count made wrong (and the checksum made right), the server stops.
    if redis_server().is_some() {
        let d = tmpdir("stream");
        let r = Redis::start_with(&["--dir", d.to_str().unwrap(), "--rdbcompression", "no"]);
        let mut rc = connect(r.port);
        let _: String = redis::cmd("XADD")
            .arg("events")
            .arg("1-1")
            .arg("f")
            .arg("v")
            .query(&mut rc)
            .unwrap();
        let _: String = redis::cmd("SAVE").query(&mut rc).unwrap();
        drop(r);
        let s = Server::start_with(shard_counts()[0], &["--dir", d.to_str().unwrap()]);
        let t: String = redis::cmd("TYPE")
            .arg("events")
            .query(&mut s.client())
            .unwrap();
        assert_eq!(t, "stream");
        drop(s);
        let mut bad = std::fs::read(d.join("dump.rdb")).unwrap();
        // The node: its key (16 bytes: 1-1), then its listpack, whose first element (after
        // the length byte and the 6-byte header) is the live count, 1.
        let mut key = vec![16u8];
        key.extend_from_slice(&1u64.to_be_bytes());
        key.extend_from_slice(&1u64.to_be_bytes());
        let at = bad.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 1 + 6;
        assert_eq!(bad[at], 1);
        bad[at] = 2;
        let n = bad.len();
        let crc = shardis::persist::crc64::update(0, &bad[..n - 8]);
        bad[n - 8..].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(d.join("dump.rdb"), &bad).unwrap();
        let log = refuses_to_start(&d);
        assert!(log.contains("Fatal error loading the DB"), "{log}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn bgsave_writes_in_the_background() {
    for n in shard_counts() {
        let d = tmpdir(&format!("bgsave-{n}"));
        let s = Server::start_with(n, &["--dir", d.to_str().unwrap()]);
        let mut c = s.client();
        write_dataset(&mut c);
        let want = dump(&mut c);
        bgsave_once(&mut c, &d);
        drop(s);
        let s = Server::start_with(n, &["--dir", d.to_str().unwrap()]);
        assert_eq!(dump(&mut s.client()), want, "{n} shards: after BGSAVE");
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// BGSAVE is a point in time taken while serving: it answers at the moment, every shard
/// then serialises a slice per loop pass, and writes made after the reply (overwrites,
/// deletions, new keys of every kind) never reach the file, while the keys of the moment
/// all do. Other clients keep being answered meanwhile: the longest PING wait is printed
/// (the stepper's figure for the note) and bounded loosely (debug build, busy machine).
#[test]
fn bgsave_is_the_moment_while_shards_keep_serving() {
    const KEYS: usize = 200_000;
    for n in [1, 4] {
        let d = tmpdir(&format!("bgsave-moment-{n}"));
        let s = Server::start_with(n, &["--dir", d.to_str().unwrap(), "--save", ""]);
        let mut c = s.client();
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(10_000) {
            let mut p = redis::pipe();
            for i in chunk {
                p.cmd("SET").arg(format!("k:{i}")).arg("before").ignore();
            }
            p.cmd("HSET")
                .arg(format!("h:{}", chunk[0]))
                .arg("f")
                .arg("before")
                .ignore();
            p.query::<()>(&mut c).unwrap();
        }
        let r: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
        assert_eq!(r, "Background saving started");
        // After the reply: overwrite, delete, add; meanwhile another client pings.
        let port = s.port;
        let pinger = std::thread::spawn(move || {
            let mut p = connect(port);
            let mut worst = Duration::ZERO;
            let until = std::time::Instant::now() + Duration::from_millis(1500);
            while std::time::Instant::now() < until {
                let t = std::time::Instant::now();
                let _: String = redis::cmd("PING").query(&mut p).unwrap();
                worst = worst.max(t.elapsed());
            }
            worst
        });
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(10_000) {
            let mut p = redis::pipe();
            for i in chunk {
                match i % 4 {
                    0 => p.cmd("SET").arg(format!("k:{i}")).arg("after").ignore(),
                    1 => p.cmd("DEL").arg(format!("k:{i}")).ignore(),
                    2 => p.cmd("APPEND").arg(format!("k:{i}")).arg("+after").ignore(),
                    _ => p.cmd("SET").arg(format!("new:{i}")).arg("after").ignore(),
                };
            }
            p.cmd("HSET")
                .arg(format!("h:{}", chunk[0]))
                .arg("f")
                .arg("after")
                .ignore();
            p.query::<()>(&mut c).unwrap();
        }
        let worst = pinger.join().unwrap();
        println!("{n} shards: longest PING during BGSAVE of {KEYS} keys: {worst:?}");
        assert!(
            worst < Duration::from_secs(1),
            "{n} shards: PING waited {worst:?}"
        );
        assert!(common::wait_for(Duration::from_secs(60), || {
            info_field(&mut c, "rdb_bgsave_in_progress") == "0"
                && info_field(&mut c, "rdb_saves") == "1"
        }));
        assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
        check_rdb(&d.join("dump.rdb"));
        drop(s);
        let s = Server::start_with(n, &["--dir", d.to_str().unwrap(), "--save", ""]);
        let mut c = s.client();
        let size: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, KEYS + KEYS / 10_000, "{n} shards: keys of the moment");
        for chunk in (0..KEYS).collect::<Vec<_>>().chunks(10_000) {
            let keys: Vec<String> = chunk.iter().map(|i| format!("k:{i}")).collect();
            let vals: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
            assert!(
                vals.iter().all(|v| v.as_deref() == Some("before")),
                "{n} shards: a value from after the moment is in the file"
            );
            let h: Option<String> = redis::cmd("HGET")
                .arg(format!("h:{}", chunk[0]))
                .arg("f")
                .query(&mut c)
                .unwrap();
            assert_eq!(h.as_deref(), Some("before"));
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// A big collection is written a range of elements per loop pass, not in one step: while a
/// BGSAVE writes a 300 000-field hash, a 200 000-member sorted set and a 200 000-element
/// list, another client's PINGs keep being answered (the longest wait is printed; the bound
/// is loose for a debug build on a busy machine), and the file loads back to the same
/// `DEBUG DIGEST`.
#[test]
fn bgsave_of_big_collections_keeps_the_shard_serving() {
    let d = tmpdir("bgsave-big");
    let args = [
        "--dir",
        d.to_str().unwrap(),
        "--save",
        "",
        "--enable-debug-command",
        "yes",
    ];
    let s = Server::start_with(1, &args);
    let mut c = s.client();
    for base in (0..300_000).step_by(10_000) {
        let mut h = redis::cmd("HSET");
        h.arg("big:h");
        let mut z = redis::cmd("ZADD");
        z.arg("big:z");
        let mut l = redis::cmd("RPUSH");
        l.arg("big:l");
        for i in base..base + 10_000 {
            h.arg(format!("field-{i}")).arg(format!("value-{i}"));
            if i < 200_000 {
                z.arg(i % 1000).arg(format!("member-{i}"));
                l.arg(format!("element-{i}"));
            }
        }
        let mut p = redis::pipe();
        p.add_command(h).ignore();
        if base < 200_000 {
            p.add_command(z).ignore().add_command(l).ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
    let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pinger = {
        let (port, stop) = (s.port, stop.clone());
        std::thread::spawn(move || {
            let mut p = connect(port);
            let mut worst = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = std::time::Instant::now();
                let _: String = redis::cmd("PING").query(&mut p).unwrap();
                worst = worst.max(t.elapsed());
            }
            worst
        })
    };
    // The pinger is connected and pinging before the save starts.
    std::thread::sleep(Duration::from_millis(200));
    let r: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(r, "Background saving started");
    assert!(common::wait_for(Duration::from_secs(60), || {
        info_field(&mut c, "rdb_bgsave_in_progress") == "0"
    }));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let worst = pinger.join().unwrap();
    println!("longest PING during BGSAVE of big collections: {worst:?}");
    assert!(worst < Duration::from_secs(1), "PING waited {worst:?}");
    assert_eq!(info_field(&mut c, "rdb_last_bgsave_status"), "ok");
    check_rdb(&d.join("dump.rdb"));
    drop(s);
    let s = Server::start_with(1, &args);
    let got: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut s.client())
        .unwrap();
    assert_eq!(got, digest, "the file loads back to the same data");
    let _ = std::fs::remove_dir_all(&d);
}

/// Helper threads a shard starts (here the lazy-free thread, started by the first UNLINK of
/// a big value; the BGSAVE writer and the AOF threads are started the same way) run on the
/// CPUs the process started with, not pinned to the core of the shard that started them,
/// where they would take that core from its clients.
#[test]
fn helper_threads_are_not_pinned_to_their_shards_core() {
    let s = Server::start_with(1, &["--cores", "0"]);
    let mut c = s.client();
    let mut cmd = redis::cmd("SADD");
    cmd.arg("big");
    for i in 0..1000 {
        cmd.arg(format!("m{i}"));
    }
    let _: i64 = cmd.query(&mut c).unwrap();
    let _: i64 = redis::cmd("UNLINK").arg("big").query(&mut c).unwrap();
    let task = |name: &str| -> Option<String> {
        let dir = std::fs::read_dir(format!("/proc/{}/task", s.pid())).ok()?;
        dir.flatten().find_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            (comm.trim() == name).then(|| {
                let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
        })
    };
    let main = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    let main = main
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_string();
    // The thread has its name before its first instruction resets its CPUs (it starts
    // with its creator's): poll until it shows the process's set, within the deadline.
    let mut lazy = None;
    common::wait_for(Duration::from_secs(5), || {
        lazy = task("lazyfree");
        lazy.as_deref() == Some(main.as_str())
    });
    assert_eq!(task("shard-0").as_deref(), Some("0"), "the shard is pinned");
    assert_eq!(
        lazy.as_deref(),
        Some(main.as_str()),
        "the helper runs where the process may"
    );
}

/// A BGSAVE streams database 0 to its file as the shards serialise it (several 4 MB pieces
/// from each shard, interleaved), the other databases at the end: the file is valid for
/// redis-check-rdb, and both shardis and a stock redis-server load it to the same
/// `DEBUG DIGEST`.
#[test]
fn bgsave_streams_database_zero_and_loads_everywhere() {
    let d = tmpdir("bgsave-stream");
    let dir = d.to_str().unwrap();
    let args = ["--dir", dir, "--save", "", "--enable-debug-command", "yes"];
    let s = Server::start_with(2, &args);
    let mut c = s.client();
    let _: String = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(300_000)
        .arg("key")
        .arg(64)
        .query(&mut c)
        .unwrap();
    let mut h = redis::cmd("HSET");
    h.arg("big-hash");
    for i in 0..5000 {
        h.arg(format!("f{i}")).arg(format!("v{i}"));
    }
    let _: i64 = h.query(&mut c).unwrap();
    let _: () = redis::cmd("PEXPIREAT")
        .arg("key:7")
        .arg(4_000_000_000_000u64)
        .query(&mut c)
        .unwrap();
    for db in [1, 5] {
        let _: () = redis::cmd("SELECT").arg(db).query(&mut c).unwrap();
        let _: () = redis::cmd("SET")
            .arg(format!("in-db-{db}"))
            .arg("x")
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    bgsave_once(&mut c, &d);
    drop(s);
    let s = Server::start_with(2, &args);
    let got: String = redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut s.client())
        .unwrap();
    assert_eq!(got, digest, "shardis loads the streamed file");
    drop(s);
    if redis_server().is_some() {
        let r = Redis::start_with(&[
            "--dir",
            dir,
            "--dbfilename",
            "dump.rdb",
            "--enable-debug-command",
            "yes",
        ]);
        let got: String = redis::cmd("DEBUG")
            .arg("DIGEST")
            .query(&mut connect(r.port))
            .unwrap();
        assert_eq!(got, digest, "redis-server loads the streamed file");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// The snapshot is one moment across shards: while three writers move amounts between 64
/// accounts spread over 4 shards (MULTI/EXEC DECRBY + INCRBY, cross-shard), a BGSAVE taken
/// under that load holds a total equal to the start's (no transfer half in it). The file
/// passes redis-check-rdb and loads, into shardis with one shard and into a stock
/// redis-server, to the same total and the same `DEBUG DIGEST`.
#[test]
fn bgsave_under_cross_shard_transfers_keeps_the_sum() {
    const ACCOUNTS: usize = 64;
    const START: i64 = 1000;
    let d = tmpdir("transfers");
    let dir = d.to_str().unwrap().to_string();
    let s = Server::start_with(4, &["--dir", &dir, "--save", ""]);
    let mut c = s.client();
    let mut p = redis::pipe();
    for i in 0..ACCOUNTS {
        p.cmd("SET").arg(format!("acct:{i}")).arg(START).ignore();
    }
    p.query::<()>(&mut c).unwrap();
    let owners: std::collections::HashSet<usize> = (0..ACCOUNTS)
        .map(|i| shardis::shard::route::shard_of(format!("acct:{i}").as_bytes(), 4))
        .collect();
    assert_eq!(owners.len(), 4, "the accounts span every shard");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let (port, stop) = (s.port, stop.clone());
            std::thread::spawn(move || {
                let mut c = connect(port);
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (w << 32);
                let mut done = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let a = (x % ACCOUNTS as u64) as usize;
                    let b = (a + 1 + (x >> 20) as usize % (ACCOUNTS - 1)) % ACCOUNTS;
                    let amount = (x >> 40) % 50 + 1;
                    let _: () = redis::pipe()
                        .atomic()
                        .cmd("DECRBY")
                        .arg(format!("acct:{a}"))
                        .arg(amount)
                        .ignore()
                        .cmd("INCRBY")
                        .arg(format!("acct:{b}"))
                        .arg(amount)
                        .ignore()
                        .query(&mut c)
                        .unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    bgsave_once(&mut c, &d);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let moved: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(moved > 100, "only {moved} transfers ran");
    drop(s);

    let sum = |c: &mut redis::Connection| -> i64 {
        let keys: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct:{i}")).collect();
        let vals: Vec<i64> = redis::cmd("MGET").arg(&keys).query(c).unwrap();
        vals.iter().sum()
    };
    let s = Server::start_with(
        1,
        &["--dir", &dir, "--save", "", "--enable-debug-command", "yes"],
    );
    let mut c = s.client();
    assert_eq!(
        sum(&mut c),
        START * ACCOUNTS as i64,
        "a transfer is half in the file"
    );
    let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    drop(s);
    if redis_server().is_some() {
        let r = Redis::start_with(&[
            "--dir",
            &dir,
            "--dbfilename",
            "dump.rdb",
            "--enable-debug-command",
            "yes",
        ]);
        let mut rc = connect(r.port);
        assert_eq!(sum(&mut rc), START * ACCOUNTS as i64);
        let theirs: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut rc).unwrap();
        assert_eq!(theirs, digest, "redis-server loads the same data");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// BGSAVE and SAVE write through an io_uring ring (`persist::ringfile`): the log never says
/// the file fell back to plain writes, and both saves land.
#[test]
fn saves_write_through_the_ring() {
    let d = tmpdir("ring");
    let dir = d.to_str().unwrap().to_string();
    let s = Server::start_logged(2, "true", &["--dir", &dir, "--save", ""]);
    let mut c = s.client();
    let mut p = redis::pipe();
    for i in 0..20_000 {
        p.cmd("SET").arg(format!("k{i}")).arg(i).ignore();
    }
    p.query::<()>(&mut c).unwrap();
    bgsave_once(&mut c, &d);
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    check_rdb(&d.join("dump.rdb"));
    let log = s.log();
    assert_eq!(log.matches("DB saved on disk").count(), 2, "{log}");
    assert!(!log.contains("Saving without io_uring"), "{log}");
    let _ = std::fs::remove_dir_all(&d);
}

/// SHUTDOWN during a BGSAVE stops that BGSAVE instead of waiting for it, as Redis kills
/// its saving child: every shard drops its part, the temp file goes, the shutdown's own
/// save writes the file, and a restart has every key. The same shards then serve a
/// BGSAVE again in a server that did not stop (a failed shutdown save keeps it up).
#[test]
fn shutdown_stops_a_running_bgsave() {
    const KEYS: u64 = 1_500_000;
    let d = tmpdir("shutdown-bgsave");
    let dir = d.to_str().unwrap().to_string();
    let args = [
        "--dir",
        dir.as_str(),
        "--save",
        "",
        "--enable-debug-command",
        "yes",
    ];
    let mut s = Server::start_logged(2, "true", &args);
    let mut c = s.client();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(KEYS)
        .query(&mut c)
        .unwrap();
    let r: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(r, "Background saving started");
    // Right away: 1.5M keys take this debug build well over a second to serialise.
    assert_eq!(info_field(&mut c, "rdb_bgsave_in_progress"), "1");
    let _ = redis::cmd("SHUTDOWN").arg("SAVE").query::<()>(&mut c);
    assert_eq!(s.wait_exit(Duration::from_secs(60)), Some(0));
    let log = s.log();
    assert!(
        log.contains("A background save is running: stopping it for the shutdown."),
        "{log}"
    );
    assert!(
        log.contains("Background saving stopped for the shutdown"),
        "{log}"
    );
    assert!(
        !log.contains("Background saving terminated with success"),
        "{log}"
    );
    assert!(log.contains("DB saved on disk"), "{log}");
    let temps: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("temp-"))
        .collect();
    assert!(temps.is_empty(), "a temp file was left: {temps:?}");
    drop(s);
    check_rdb(&d.join("dump.rdb"));
    let s = Server::start_with(2, &args);
    let mut c = s.client();
    let n: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, KEYS);
    // The stopped walk left every entry consistent: the next BGSAVE has every key.
    let _ = std::fs::remove_file(d.join("dump.rdb"));
    bgsave_once(&mut c, &d);
    drop(s);
    let s = Server::start_with(2, &args);
    let mut c = s.client();
    let n: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, KEYS);
    let _ = std::fs::remove_dir_all(&d);
}

const LIB: &str = "#!lua name=plib\nredis.register_function('f', function() return 1 end)\n\
                   redis.register_function{function_name='g', callback=function() return 2 end, \
                   flags={'no-writes'}}";

fn fcall(c: &mut redis::Connection, name: &str) -> redis::RedisResult<i64> {
    redis::cmd("FCALL").arg(name).arg(0).query(c)
}

/// Function libraries are saved in the RDB file as Redis 7.0 saves them
/// (`RDB_OPCODE_FUNCTION2` after the AUX fields) and loaded back: a restart, DEBUG RELOAD,
/// redis-server loading shardis's dump and shardis loading redis-server's all keep them.
#[test]
fn function_libraries_live_in_the_rdb_file() {
    let d = tmpdir("functions");
    let dir = d.to_str().unwrap().to_string();
    {
        let s = Server::start_with(2, &["--dir", &dir, "--enable-debug-command", "yes"]);
        let mut c = s.client();
        let name: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg(LIB)
            .query(&mut c)
            .unwrap();
        assert_eq!(name, "plib");
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
        let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut c).unwrap();
        assert_eq!(fcall(&mut c, "g").unwrap(), 2, "after DEBUG RELOAD");
        let _ = redis::cmd("SHUTDOWN").arg("SAVE").query::<()>(&mut c);
    }
    check_rdb(&d.join("dump.rdb"));
    {
        let s = Server::start_with(2, &["--dir", &dir]);
        let mut c = s.client();
        assert_eq!(fcall(&mut c, "f").unwrap(), 1, "after a restart");
        assert_eq!(fcall(&mut c, "g").unwrap(), 2);
        // A file saved without libraries loads without any.
        let _: () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut c).unwrap();
        let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    }
    {
        let s = Server::start_with(1, &["--dir", &dir, "--enable-debug-command", "yes"]);
        let mut c = s.client();
        assert!(fcall(&mut c, "f").is_err());
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg(LIB)
            .query(&mut c)
            .unwrap();
        let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    }
    if redis_server().is_some() {
        // shardis's file in redis-server, then redis-server's file (its own LZF-compressed
        // library record) back in shardis.
        let r = Redis::start_with(&["--dir", &dir, "--dbfilename", "dump.rdb"]);
        let mut rc = connect(r.port);
        assert_eq!(
            fcall(&mut rc, "g").unwrap(),
            2,
            "redis-server loading shardis's file"
        );
        let _: () = redis::cmd("FUNCTION")
            .arg("DELETE")
            .arg("plib")
            .query(&mut rc)
            .unwrap();
        let lib = LIB
            .replace("plib", "rlib")
            .replace("'f'", "'rf'")
            .replace("'g'", "'rg'");
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg(&lib)
            .query(&mut rc)
            .unwrap();
        let _: () = redis::cmd("SAVE").query(&mut rc).unwrap();
        drop(r);
        let s = Server::start_with(2, &["--dir", &dir]);
        let mut c = s.client();
        assert_eq!(
            fcall(&mut c, "rg").unwrap(),
            2,
            "shardis loading redis-server's file"
        );
        assert!(fcall(&mut c, "g").is_err());
        let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
        assert_eq!(v, "v");
    }
    let _ = std::fs::remove_dir_all(&d);
}
