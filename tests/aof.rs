//! Append-only files (`appendonly yes`): every shard appends its write journal to its own log,
//! and a restart after `kill -9` has every acknowledged write back (`DEBUG DIGEST` equal),
//! across shards, MULTI/EXEC, SWAPDB/FLUSHDB, BGREWRITEAOF, a torn last record and a
//! multi-shard write that reached only some shards' logs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Server;

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardis-aof-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start(dir: &Path, shards: usize, extra: &[&str]) -> Server {
    let d = dir.to_string_lossy().into_owned();
    let mut args = vec![
        "--dir",
        &d,
        "--appendonly",
        "yes",
        "--enable-debug-command",
        "yes",
        "--save",
        "",
    ];
    args.extend_from_slice(extra);
    Server::start_with(shards, &args)
}

fn digest(c: &mut redis::Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

/// The manifest's text, which must name the base of sequence `seq`.
fn manifest_with_base(dir: &Path, seq: u64) -> String {
    let manifest =
        std::fs::read_to_string(dir.join("appendonlydir/appendonly.aof.manifest")).unwrap();
    let line = format!("appendonly.aof.{seq}.base.rdb seq {seq} type b");
    assert!(manifest.contains(&line), "{manifest}");
    manifest
}

/// BGREWRITEAOF, then INFO persistence once it has finished.
fn rewrite(c: &mut redis::Connection) -> std::collections::HashMap<String, String> {
    let r: String = redis::cmd("BGREWRITEAOF").query(c).unwrap();
    assert_eq!(r, "Background append only file rewriting started");
    assert!(common::wait_for(Duration::from_secs(20), || {
        common::info(c, "persistence")["aof_rewrite_in_progress"] == "0"
    }));
    common::info(c, "persistence")
}

/// Writes a round of the workload, kills the server with SIGKILL, restarts it (`shards`,
/// appendonly yes) and checks the digest came back.
fn survives_kill_9(s: Server, dir: &Path, shards: usize, what: &str) {
    let mut c = s.client();
    workload(&mut c, 2);
    let want = digest(&mut c);
    s.signal("KILL");
    drop(s);
    let s = start(dir, shards, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want, "{what}");
}

/// Writes of every family over every shard, in two databases, with a cross-shard
/// transaction, SWAPDB and FLUSHDB.
fn workload(c: &mut redis::Connection, round: usize) {
    for i in 0..200 {
        let k = format!("k{round}:{i}");
        let _: () = redis::cmd("SET").arg(&k).arg(i).query(c).unwrap();
        if i % 5 == 0 {
            let _: () = redis::cmd("EXPIRE").arg(&k).arg(1000).query(c).unwrap();
        }
        let _: i64 = redis::cmd("HSET")
            .arg(format!("h{}", i % 13))
            .arg(format!("f{round}:{i}"))
            .arg(i)
            .query(c)
            .unwrap();
        let _: i64 = redis::cmd("RPUSH")
            .arg(format!("l{}", i % 7))
            .arg(i)
            .query(c)
            .unwrap();
        let _: i64 = redis::cmd("ZADD")
            .arg(format!("z{}", i % 5))
            .arg(i)
            .arg(format!("m{i}"))
            .query(c)
            .unwrap();
        let _: i64 = redis::cmd("SADD")
            .arg(format!("s{}", i % 9))
            .arg(i)
            .query(c)
            .unwrap();
    }
    let _: redis::Value = redis::cmd("SPOP").arg("s1").arg(3).query(c).unwrap();
    let _: redis::Value = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("1.25")
        .query(c)
        .unwrap();
    let _: () = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("a")
        .arg(round)
        .cmd("SET")
        .arg("b")
        .arg(round)
        .cmd("LMOVE")
        .arg("l1")
        .arg("l2")
        .arg("LEFT")
        .arg("RIGHT")
        .query(c)
        .unwrap();
    let _: () = redis::cmd("MSET")
        .arg("c")
        .arg(round)
        .arg("d")
        .arg(round)
        .query(c)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(3).query(c).unwrap();
    let _: () = redis::cmd("SET").arg("in3").arg(round).query(c).unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(c).unwrap();
    let _: () = redis::cmd("SWAPDB").arg(3).arg(4).query(c).unwrap();
    let _: () = redis::cmd("SELECT").arg(5).query(c).unwrap();
    let _: () = redis::cmd("SET").arg("gone").arg(1).query(c).unwrap();
    let _: () = redis::cmd("FLUSHDB").query(c).unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(c).unwrap();
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let dir = tmpdir("kill");
    let want = {
        let s = start(&dir, 4, &[]);
        let mut c = s.client();
        workload(&mut c, 1);
        let d = digest(&mut c);
        s.signal("KILL");
        d
    };
    assert_ne!(want, "0".repeat(40));
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want, "after kill -9 and restart");
    let info = common::info(&mut c, "persistence");
    assert_eq!(info["aof_enabled"], "1");

    // `appendfsync always`, then another kill.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("always")
        .query(&mut c)
        .unwrap();
    workload(&mut c, 2);
    let want = digest(&mut c);
    s.signal("KILL");
    drop(s);
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want, "appendfsync always");
    drop(c);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bgrewriteaof_starts_new_logs_from_a_base() {
    let dir = tmpdir("rewrite");
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    // Enough data that every shard streams its base to the file in several pieces.
    let _: String = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(600_000)
        .arg("pop")
        .arg(64)
        .query(&mut c)
        .unwrap();
    workload(&mut c, 1);
    let info = rewrite(&mut c);
    assert_eq!(info["aof_rewrites"], "1");
    assert_eq!(info["aof_last_bgrewrite_status"], "ok");
    let manifest = manifest_with_base(&dir, 2);
    assert!(
        !manifest.contains(".1."),
        "old files are out of the manifest: {manifest}"
    );
    assert!(!dir
        .join("appendonlydir/appendonly.aof.1.s0.incr.aof")
        .exists());
    // The base is a real RDB file.
    if let Some(check) = which("redis-check-rdb") {
        let out = Command::new(check)
            .arg(dir.join("appendonlydir/appendonly.aof.2.base.rdb"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    drop(c);
    survives_kill_9(s, &dir, 4, "base + new logs after kill -9");
    let _ = std::fs::remove_dir_all(&dir);
}

/// As Redis 7: BGREWRITEAOF with `appendonly no` writes a base and a manifest (no logs
/// are opened), and a restart with `appendonly yes` loads them.
#[test]
fn bgrewriteaof_with_appendonly_off_writes_a_loadable_base() {
    let dir = tmpdir("rewrite-off");
    let d = dir.to_string_lossy().into_owned();
    let off = [
        "--dir",
        &d,
        "--appendonly",
        "no",
        "--save",
        "",
        "--enable-debug-command",
        "yes",
    ];
    let s = Server::start_with(2, &off);
    let mut c = s.client();
    workload(&mut c, 1);
    for round in 0..2 {
        let info = rewrite(&mut c);
        assert_eq!(info["aof_enabled"], "0");
        assert_eq!(info["aof_rewrites"], (round + 1).to_string());
        assert_eq!(info["aof_last_bgrewrite_status"], "ok");
    }
    let manifest = manifest_with_base(&dir, 2);
    assert!(
        manifest.contains("appendonly.aof.2.s1.incr.aof seq 2 type i shard 1"),
        "names the logs the first start with the files on appends to: {manifest}"
    );
    assert!(
        !dir.join("appendonlydir/appendonly.aof.1.base.rdb").exists(),
        "the first base goes"
    );
    assert!(
        !dir.join("appendonlydir/appendonly.aof.2.s0.incr.aof")
            .exists(),
        "no logs while off"
    );
    let want = digest(&mut c);
    drop(c);
    drop(s);
    // Started with the files on, it loads that base, then appends to its logs.
    let s = start(&dir, 2, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want, "the base loads");
    drop(c);
    survives_kill_9(s, &dir, 2, "base + logs after kill -9");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn torn_tail_and_half_written_transaction() {
    let dir = tmpdir("torn");
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    workload(&mut c, 1);
    let want = digest(&mut c);
    let keys: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    s.signal("KILL");
    drop(s);
    let log0 = dir.join("appendonlydir/appendonly.aof.1.s0.incr.aof");
    let log1 = dir.join("appendonlydir/appendonly.aof.1.s1.incr.aof");
    // A multi-shard write that reached shard 0's log only, then a record cut in the middle
    // on shard 1.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log0)
        .unwrap();
    use std::io::Write;
    f.write_all(b"#TX:999999:2\r\n*3\r\n$3\r\nSET\r\n$7\r\nhalftx0\r\n$1\r\n1\r\n")
        .unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log1)
        .unwrap();
    f.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\ntorn").unwrap();
    drop(f);

    // aof-load-truncated no refuses to start.
    let out = run_binary(&dir, 4, &["--aof-load-truncated", "no"]);
    assert!(
        !out.0,
        "a torn file must stop the server with aof-load-truncated no"
    );
    assert!(out.1.contains("Unexpected end of file"), "{}", out.1);

    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(
        digest(&mut c),
        want,
        "the torn record and the half transaction are dropped"
    );
    let now: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(now, keys);
    // Writing on continues a valid log.
    let _: () = redis::cmd("SET").arg("after").arg(1).query(&mut c).unwrap();
    let want = digest(&mut c);
    s.signal("KILL");
    drop(s);
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want);
    drop(c);
    drop(s);

    // Another shard count cannot replay per-shard logs: refused with the reason.
    let out = run_binary(&dir, 2, &[]);
    assert!(!out.0);
    assert!(out.1.contains("--shards 4"), "{}", out.1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn turning_aof_on_keeps_the_rdb_data() {
    let dir = tmpdir("fromrdb");
    let d = dir.to_string_lossy().into_owned();
    let want = {
        let s = Server::start_with(4, &["--dir", &d, "--enable-debug-command", "yes"]);
        let mut c = s.client();
        workload(&mut c, 1);
        let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
        digest(&mut c)
    };
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(
        digest(&mut c),
        want,
        "loaded from dump.rdb, now the AOF base"
    );
    let _: () = redis::cmd("SET").arg("new").arg(1).query(&mut c).unwrap();
    let want = digest(&mut c);
    s.signal("KILL");
    drop(s);
    std::fs::remove_file(dir.join("dump.rdb")).unwrap();
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want, "from the AOF alone");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the binary until it exits (it should fail to start): (success, log).
fn run_binary(dir: &Path, shards: usize, extra: &[&str]) -> (bool, String) {
    let port = common::free_port().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(["--port", &port, "--shards", &shards.to_string()])
        .arg("--dir")
        .arg(dir)
        .args(["--appendonly", "yes", "--save", ""])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = common::wait_for(Duration::from_secs(10), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (exited && out.status.success(), text)
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_string_lossy()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

/// A writer that counts its acknowledged writes, `kill -9` in the middle of its stream: after
/// the restart every acknowledged write is there (the pass's records reach the log before its
/// replies leave), and no multi-shard MSET is half applied.
#[test]
fn every_acknowledged_write_survives_kill_9_under_load() {
    for fsync in ["always", "everysec"] {
        let dir = tmpdir(&format!("load-{fsync}"));
        let s = start(&dir, 4, &["--appendfsync", fsync]);
        let port = s.port;
        let writer = std::thread::spawn(move || {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .unwrap()
                .get_connection()
                .unwrap();
            let mut acked = 0u64;
            loop {
                let i = acked;
                let r: redis::RedisResult<()> = redis::cmd("MSET")
                    .arg(format!("a{i}"))
                    .arg(i)
                    .arg(format!("b{i}"))
                    .arg(i)
                    .arg(format!("c{i}"))
                    .arg(i)
                    .query(&mut c);
                if r.is_err() {
                    return acked;
                }
                acked += 1;
            }
        });
        std::thread::sleep(Duration::from_millis(700));
        s.signal("KILL");
        let acked = writer.join().unwrap();
        drop(s);
        assert!(acked > 100, "the writer made progress ({acked})");
        let s = start(&dir, 4, &["--appendfsync", fsync]);
        let mut c = s.client();
        let keys: u64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        // Every acknowledged MSET is there whole; at most the one in flight is too.
        assert!(
            keys == acked * 3 || keys == (acked + 1) * 3,
            "{fsync}: {acked} MSETs acknowledged, {keys} keys after restart"
        );
        for i in [0, acked / 2, acked - 1] {
            let v: Vec<Option<u64>> = redis::cmd("MGET")
                .arg(format!("a{i}"))
                .arg(format!("b{i}"))
                .arg(format!("c{i}"))
                .query(&mut c)
                .unwrap();
            assert_eq!(v, vec![Some(i); 3], "{fsync}: MSET {i}");
        }
        eprintln!("appendfsync {fsync}: {acked} acknowledged MSETs, all back after kill -9");
        drop(c);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// CONFIG SET appendonly yes on a running server starts the logs with a first rewrite (as
/// Redis does); a restart with appendonly yes then has everything. `no` stops the logs.
#[test]
fn config_set_appendonly_at_runtime() {
    let dir = tmpdir("runtime");
    let d = dir.to_string_lossy().into_owned();
    let s = Server::start_with(
        4,
        &["--dir", &d, "--enable-debug-command", "yes", "--save", ""],
    );
    let mut c = s.client();
    workload(&mut c, 1);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("yes")
        .query(&mut c)
        .unwrap();
    assert!(common::wait_for(Duration::from_secs(20), || {
        let i = common::info(&mut c, "persistence");
        i["aof_enabled"] == "1" && i["aof_rewrite_in_progress"] == "0" && i["aof_rewrites"] == "1"
    }));
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut c)
        .unwrap();
    assert_eq!(cfg, ["appendonly", "yes"]);
    workload(&mut c, 2);
    let want = digest(&mut c);
    s.signal("KILL");
    drop(s);
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want, "base from the runtime switch + logs");

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendonly")
        .arg("no")
        .query(&mut c)
        .unwrap();
    assert!(common::wait_for(Duration::from_secs(5), || {
        common::info(&mut c, "persistence")["aof_enabled"] == "0"
    }));
    let size = |dir: &Path| -> u64 {
        std::fs::read_dir(dir.join("appendonlydir"))
            .unwrap()
            .flatten()
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum()
    };
    let before = size(&dir);
    workload(&mut c, 3);
    assert_eq!(
        size(&dir),
        before,
        "appendonly no: nothing more is appended"
    );
    drop(c);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The migration path with AOF: a redis-server 7.0 `appendonlydir` (RDB base + incremental
/// file) loads into shardis as is, to the same DEBUG DIGEST, and is converted to shardis's
/// layout so the next restart needs nothing of Redis's.
#[test]
fn loads_a_redis_server_append_only_directory() {
    let dir = tmpdir("fromredis");
    let d = dir.to_string_lossy().into_owned();
    let want = {
        let r = common::resp::Redis::start_with(&[
            "--dir",
            &d,
            "--appendonly",
            "yes",
            "--enable-debug-command",
            "yes",
        ]);
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", r.port))
            .unwrap()
            .get_connection()
            .unwrap();
        workload(&mut c, 1);
        let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
        assert!(common::wait_for(Duration::from_secs(20), || {
            common::info(&mut c, "persistence")["aof_rewrite_in_progress"] == "0"
        }));
        workload(&mut c, 2);
        let want = digest(&mut c);
        let _: redis::RedisResult<()> = redis::cmd("SHUTDOWN").query(&mut c);
        drop(r);
        want
    };
    let manifest =
        std::fs::read_to_string(dir.join("appendonlydir/appendonly.aof.manifest")).unwrap();
    assert!(manifest.contains("type i"), "{manifest}");
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want, "redis-server's AOF directory, loaded");
    let _: () = redis::cmd("SET").arg("more").arg(1).query(&mut c).unwrap();
    let want = digest(&mut c);
    s.signal("KILL");
    drop(s);
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want, "converted to shardis's layout");
    drop(c);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// auto-aof-rewrite-percentage / -min-size as Redis: once the AOF has grown by the
/// percentage since the last rewrite (or startup) and is over the minimum size, a rewrite
/// starts on its own; INFO shows aof_current_size and aof_base_size; the result restarts
/// to the same data. With the percentage at 0 nothing is rewritten.
#[test]
fn automatic_rewrite_on_growth() {
    let dir = tmpdir("auto");
    let s = start(
        &dir,
        2,
        &[
            "--auto-aof-rewrite-percentage",
            "0",
            "--auto-aof-rewrite-min-size",
            "200kb",
        ],
    );
    let mut c = s.client();
    let get = |c: &mut redis::Connection, k: &str| -> String {
        let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(k).query(c).unwrap();
        v.get(1).cloned().unwrap_or_default()
    };
    assert_eq!(get(&mut c, "auto-aof-rewrite-min-size"), "204800");
    assert_eq!(get(&mut c, "auto-aof-rewrite-percentage"), "0");
    let err = redis::cmd("CONFIG")
        .arg("SET")
        .arg("auto-aof-rewrite-percentage")
        .arg("-1")
        .query::<()>(&mut c)
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("argument must be between 0 and 2147483647 inclusive"),
        "{err}"
    );
    let write = |c: &mut redis::Connection, round: usize| {
        let mut p = redis::pipe();
        for i in 0..2000 {
            p.cmd("SET")
                .arg(format!("k{i}"))
                .arg(format!("{round}-{}", "x".repeat(100)))
                .ignore();
        }
        p.query::<()>(c).unwrap();
    };
    // Off (percentage 0): the log grows past the minimum without a rewrite.
    for round in 0..3 {
        write(&mut c, round);
    }
    let info = common::info(&mut c, "persistence");
    let size: u64 = info["aof_current_size"].parse().unwrap();
    assert!(size > 204_800, "aof_current_size {size}");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(common::info(&mut c, "persistence")["aof_rewrites"], "0");
    // On: the next second's check sees the growth since startup and rewrites.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("auto-aof-rewrite-percentage")
        .arg("100")
        .query(&mut c)
        .unwrap();
    assert!(
        common::wait_for(Duration::from_secs(20), || {
            let i = common::info(&mut c, "persistence");
            i["aof_rewrites"] == "1" && i["aof_rewrite_in_progress"] == "0"
        }),
        "no automatic rewrite: {:?}",
        common::info(&mut c, "persistence")
    );
    let info = common::info(&mut c, "persistence");
    let (cur, base): (u64, u64) = (
        info["aof_current_size"].parse().unwrap(),
        info["aof_base_size"].parse().unwrap(),
    );
    assert!(cur < size, "the rewrite shrank the AOF: {cur} vs {size}");
    assert!(base > 0 && base <= cur, "base {base}, current {cur}");
    write(&mut c, 9);
    let want = digest(&mut c);
    s.signal("KILL");
    drop(s);
    let s = start(&dir, 2, &[]);
    assert_eq!(digest(&mut s.client()), want, "after the automatic rewrite");
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `appendfsync everysec`: each shard fdatasyncs its own log through its ring once a second
/// after writes (no fsync thread), INFO counts them; nothing is synced while nothing is
/// written, nor under `appendfsync no`.
#[test]
fn everysec_fsyncs_run_on_the_shards_rings() {
    let dir = tmpdir("everysec");
    let s = start(&dir, 2, &[]);
    let mut c = s.client();
    let done = |c: &mut redis::Connection| -> u64 {
        common::info(c, "persistence")["aof_background_fsyncs"]
            .parse()
            .unwrap()
    };
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(done(&mut c), 0, "nothing written, nothing synced");
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    // Both shards wrote (200 keys spread over them): each syncs within about a second.
    assert!(
        common::wait_for(Duration::from_secs(10), || done(&mut c) >= 2),
        "{:?}",
        common::info(&mut c, "persistence")
    );
    let i = common::info(&mut c, "persistence");
    assert_eq!(i["aof_last_write_status"], "ok");
    assert!(i["aof_pending_bio_fsync"].parse::<u64>().unwrap() <= 2);
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", s.pid()))
        .unwrap()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .collect();
    assert!(!threads.iter().any(|t| t.starts_with("aof")), "{threads:?}");

    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg("no")
        .query(&mut c)
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    let before = done(&mut c);
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("n{i}"))
            .arg(i)
            .query(&mut c)
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(done(&mut c), before, "appendfsync no: the kernel decides");
    drop(c);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `appendfsync always` commits each loop pass's writes as one group on the shard's ring
/// (a write, then an fdatasync): a write's reply, and the reply of a read that sees it,
/// leave only once the group is synced, while the shard goes on taking commands, so many
/// clients' writes share one sync. `DEBUG AOF-FSYNC-DELAY` makes the disk slow enough to
/// see it.
#[test]
fn always_replies_wait_for_the_group_commit() {
    let dir = tmpdir("group");
    let s = start(&dir, 4, &["--appendfsync", "always"]);
    let mut c = s.client();
    let bad: redis::RedisResult<()> = redis::cmd("DEBUG")
        .arg("AOF-FSYNC-DELAY")
        .arg("-5")
        .query(&mut c);
    assert!(bad.is_err());
    let _: () = redis::cmd("DEBUG")
        .arg("AOF-FSYNC-DELAY")
        .arg("300")
        .query(&mut c)
        .unwrap();

    // A write's reply waits for its sync.
    let t = std::time::Instant::now();
    let _: () = redis::cmd("SET").arg("k1").arg("v1").query(&mut c).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(280),
        "{:?}",
        t.elapsed()
    );

    // A read that sees a write still being synced waits for the same sync.
    let port = s.port;
    let writer = std::thread::spawn(move || {
        let mut w = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap();
        let t = std::time::Instant::now();
        let _: () = redis::cmd("SET").arg("k2").arg("v2").query(&mut w).unwrap();
        (t, t.elapsed())
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (seen, seen_at) = loop {
        let v: Option<String> = redis::cmd("GET").arg("k2").query(&mut c).unwrap();
        if v.is_some() || std::time::Instant::now() > deadline {
            break (v, std::time::Instant::now());
        }
    };
    let (sent_at, wrote) = writer.join().unwrap();
    assert_eq!(seen.as_deref(), Some("v2"));
    assert!(wrote >= Duration::from_millis(280), "SET took {wrote:?}");
    // No GET shows the value before its sync ends (a GET that ran just before the SET
    // may itself be held for that sync and return nil: the next one then sees it).
    let waited = seen_at.saturating_duration_since(sent_at);
    assert!(
        waited >= Duration::from_millis(250),
        "a GET saw the write {waited:?} after it was sent, before its sync ended"
    );

    // 20 clients, 5 sequential writes each: groups of many clients' writes, not one
    // 300 ms sync per write (100 of them would take 30 s).
    let t = std::time::Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            std::thread::spawn(move || {
                let mut w = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .unwrap()
                    .get_connection()
                    .unwrap();
                for j in 0..5 {
                    let _: () = redis::cmd("SET")
                        .arg(format!("g:{i}:{j}"))
                        .arg(j)
                        .query(&mut w)
                        .unwrap();
                }
            })
        })
        .collect();
    for h in clients {
        h.join().unwrap();
    }
    let took = t.elapsed();
    eprintln!("GET waited {waited:?}; 100 writes by 20 clients took {took:?}");
    assert!(took < Duration::from_secs(12), "100 writes took {took:?}");
    let _: () = redis::cmd("DEBUG")
        .arg("AOF-FSYNC-DELAY")
        .arg("0")
        .query(&mut c)
        .unwrap();
    let info = common::info(&mut c, "persistence");
    assert_eq!(info["aof_last_write_status"], "ok");

    // Everything acknowledged is in the logs.
    let want = digest(&mut c);
    s.signal("KILL");
    drop(s);
    let s = start(&dir, 4, &[]);
    let mut c = s.client();
    assert_eq!(digest(&mut c), want);
    let n: usize = redis::cmd("DBSIZE").query(&mut c).unwrap();
    assert_eq!(n, 102);
    drop(c);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}

/// FUNCTION LOAD / DELETE reach the shards' logs and replay after `kill -9`; a rewrite's
/// base carries the libraries (as Redis's RDB-preamble base does).
#[test]
fn function_libraries_survive_kill_9_and_a_rewrite() {
    let dir = tmpdir("functions");
    let lib = |n: &str| {
        format!("#!lua name={n}\nredis.register_function('{n}_f', function() return 7 end)")
    };
    let fcall = |c: &mut redis::Connection, f: &str| -> redis::RedisResult<i64> {
        redis::cmd("FCALL").arg(f).arg(0).query(c)
    };
    {
        let s = start(&dir, 2, &[]);
        let mut c = s.client();
        for n in ["a", "b"] {
            let _: String = redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg(lib(n))
                .query(&mut c)
                .unwrap();
        }
        let _: () = redis::cmd("FUNCTION")
            .arg("DELETE")
            .arg("b")
            .query(&mut c)
            .unwrap();
        s.signal("KILL");
    }
    {
        let s = start(&dir, 2, &[]);
        let mut c = s.client();
        assert_eq!(fcall(&mut c, "a_f").unwrap(), 7, "replayed from the log");
        assert!(fcall(&mut c, "b_f").is_err());
        let _: String = redis::cmd("BGREWRITEAOF").query(&mut c).unwrap();
        assert!(common::wait_for(Duration::from_secs(20), || {
            common::info(&mut c, "persistence")["aof_rewrite_in_progress"] == "0"
        }));
        s.signal("KILL");
    }
    let s = start(&dir, 2, &[]);
    let mut c = s.client();
    assert_eq!(
        fcall(&mut c, "a_f").unwrap(),
        7,
        "loaded from the rewrite's base"
    );
    drop(c);
    drop(s);
    let _ = std::fs::remove_dir_all(&dir);
}
