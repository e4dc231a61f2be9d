//! Persistence under faults, against the real binary: save rules snapshot on their own;
//! SIGTERM saves when rules exist; `kill -9` in the middle of a BGSAVE leaves the previous
//! dump intact and loadable; a full disk (a 1 MB tmpfs) or a file-size limit fails the
//! BGSAVE, INFO says `err`, writes (and PING) get Redis's MISCONF until a save succeeds;
//! nothing crashes. (Corrupt, truncated, wrong-checksum and newer-version files are in
//! tests/persistence.rs, `bad_files_stop_the_server`.)

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{shard_counts, Server};

const MISCONF: &str = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.";

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shardis-faults-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn field(c: &mut redis::Connection, name: &str) -> String {
    common::info(c, "persistence")
        .get(name)
        .cloned()
        .unwrap_or_default()
}

/// A command's reply as text: the value, or the error's full text.
fn reply(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<redis::Value>(c) {
        Ok(redis::Value::Okay) => "OK".into(),
        Ok(redis::Value::SimpleString(s)) => s,
        Ok(redis::Value::BulkString(d)) => String::from_utf8_lossy(&d).into_owned(),
        Ok(v) => format!("{v:?}"),
        Err(e) => match (e.code(), e.detail()) {
            (Some(code), Some(d)) => format!("{code} {d}"),
            _ => e.to_string(),
        },
    }
}

/// Waits until the running BGSAVE (if any) is over; returns rdb_last_bgsave_status.
fn bgsave_done(c: &mut redis::Connection) -> String {
    assert!(common::wait_for(Duration::from_secs(30), || field(
        c,
        "rdb_bgsave_in_progress"
    ) == "0"));
    field(c, "rdb_last_bgsave_status")
}

/// `n` keys of `size` bytes of incompressible data, pipelined.
fn fill(c: &mut redis::Connection, n: usize, size: usize, prefix: &str) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let mut p = redis::pipe();
        for i in chunk {
            let v: Vec<u8> = (0..size)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            p.cmd("SET").arg(format!("{prefix}:{i}")).arg(v).ignore();
        }
        p.query::<()>(c).unwrap();
    }
}

#[test]
fn a_save_rule_snapshots_on_its_own() {
    for n in shard_counts() {
        let d = tmpdir(&format!("rule-{n}"));
        let s = Server::start_with(n, &["--dir", d.to_str().unwrap(), "--save", "1 1"]);
        let mut c = s.client();
        let got: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("save")
            .query(&mut c)
            .unwrap();
        assert_eq!(got, ["save", "1 1"]);
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
        let t = Instant::now();
        // The rule needs more than 1 s since the last save (startup) and one change; the
        // check runs once a second.
        assert!(
            common::wait_for(Duration::from_secs(5), || d.join("dump.rdb").exists()
                && field(&mut c, "rdb_saves") == "1"),
            "{n} shards: no automatic save"
        );
        eprintln!("{n} shards: automatic save after {:?}", t.elapsed());
        assert_eq!(field(&mut c, "rdb_changes_since_last_save"), "0");
        drop(s);
        let s = Server::start_with(n, &["--dir", d.to_str().unwrap(), "--save", ""]);
        let v: Option<String> = redis::cmd("GET").arg("k").query(&mut s.client()).unwrap();
        assert_eq!(v.as_deref(), Some("v"));
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn sigterm_saves_when_rules_exist() {
    for n in shard_counts() {
        for (flags, saves) in [
            (&[][..], true),
            (&["--save", ""][..], false),
            // shutdown-on-sigterm: `save` saves without rules, `nosave` skips them.
            (
                &["--save", "", "--shutdown-on-sigterm", "save now"][..],
                true,
            ),
            (&["--shutdown-on-sigterm", "nosave"][..], false),
        ] {
            let d = tmpdir(&format!("sigterm-{n}-{saves}"));
            let mut args = vec!["--dir", d.to_str().unwrap()];
            args.extend_from_slice(flags);
            let mut s = Server::start_with(n, &args);
            let mut c = s.client();
            for i in 0..50 {
                let _: () = redis::cmd("SET").arg(i).arg(i).query(&mut c).unwrap();
            }
            s.signal("TERM");
            assert_eq!(
                s.wait_exit(Duration::from_secs(10)),
                Some(0),
                "{n} {flags:?}"
            );
            assert_eq!(d.join("dump.rdb").exists(), saves, "{n} {flags:?}");
            if saves {
                let s = Server::start_with(n, &args);
                let size: i64 = redis::cmd("DBSIZE").query(&mut s.client()).unwrap();
                assert_eq!(size, 50, "{n} shards: keys after SIGTERM and restart");
            }
            let _ = std::fs::remove_dir_all(&d);
        }
    }
}

/// The first temp file in `d` with data in it.
fn partial_temp(d: &Path) -> Option<u64> {
    std::fs::read_dir(d).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        let len = e.metadata().ok()?.len();
        (name.starts_with("temp-") && len > 0).then_some(len)
    })
}

#[test]
fn kill_9_during_bgsave_keeps_the_previous_dump() {
    let n = *shard_counts().last().unwrap_or(&1);
    let d = tmpdir("kill9");
    let args = ["--dir", d.to_str().unwrap(), "--save", ""];
    let mut s = Server::start_with(n, &args);
    let mut c = s.client();
    fill(&mut c, 100, 1000, "old");
    let _: () = redis::cmd("SAVE").query(&mut c).unwrap();
    let before = std::fs::read(d.join("dump.rdb")).unwrap();
    // About 160 MB of incompressible values: the write takes long enough to be cut.
    fill(&mut c, 2500, 64 * 1024, "new");
    let r: String = redis::cmd("BGSAVE").query(&mut c).unwrap();
    assert_eq!(r, "Background saving started");
    let mut seen = None;
    let cut = common::wait_for(Duration::from_secs(20), || {
        seen = partial_temp(&d);
        seen.is_some()
    });
    let pid = s.pid().to_string();
    Command::new("kill").args(["-9", &pid]).status().unwrap();
    assert!(s.wait_exit(Duration::from_secs(5)).is_none_or(|c| c != 0));
    assert!(cut, "the BGSAVE finished before it could be killed");
    eprintln!(
        "killed with {} bytes of the temp file written",
        seen.unwrap_or(0)
    );
    let after = std::fs::read(d.join("dump.rdb")).unwrap();
    assert!(after == before, "the dump changed under a killed BGSAVE");
    let s = Server::start_with(n, &args);
    let size: i64 = redis::cmd("DBSIZE").query(&mut s.client()).unwrap();
    assert_eq!(size, 100, "the previous dump loads");
    drop(s);
    let _ = std::fs::remove_dir_all(&d);
}

/// What every fault below must lead to: the BGSAVE fails, INFO says err, writes and PING get
/// MISCONF (inside MULTI and scripts too), reads still work.
fn assert_misconf(c: &mut redis::Connection) {
    assert_eq!(reply(c, &["BGSAVE"]), "Background saving started");
    assert_eq!(bgsave_done(c), "err");
    assert_eq!(reply(c, &["SET", "x", "1"]), MISCONF);
    assert_eq!(reply(c, &["PING"]), MISCONF);
    assert_eq!(
        reply(c, &["EVAL", "return redis.call('set','x','1')", "0"])
            .split(" script:")
            .next(),
        Some(MISCONF)
    );
    let v: Option<Vec<u8>> = redis::cmd("GET").arg("big:1").query(c).unwrap();
    assert!(v.is_some(), "reads still work");
    let _: () = redis::cmd("MULTI").query(c).unwrap();
    assert_eq!(reply(c, &["SET", "x", "1"]), MISCONF);
    assert!(reply(c, &["EXEC"]).starts_with("EXECABORT"));
}

/// A fresh directory with a 1 MB tmpfs mounted on it; `None` (and a note naming what covers
/// the case instead) where mounting is not allowed.
fn small_tmpfs(name: &str, instead: &str) -> Option<PathBuf> {
    let d = tmpdir(name);
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&d)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("cannot mount a tmpfs here (not root?): skipped; {instead}");
        return None;
    }
    Some(d)
}

/// A 1 MB tmpfs as `dir`, filled by another file: BGSAVE fails with ENOSPC; once the filler
/// is removed, a BGSAVE succeeds and writes work again.
#[test]
fn disk_full_refuses_writes_until_a_save_succeeds() {
    let Some(d) = small_tmpfs("tmpfs", "the RLIMIT_FSIZE test covers it") else {
        return;
    };
    let n = *shard_counts().last().unwrap_or(&1);
    {
        let s = Server::start_with(n, &["--dir", d.to_str().unwrap()]);
        let mut c = s.client();
        fill(&mut c, 10, 1000, "big");
        // Leave ~24 KB free: the ~210 KB dump fits once the filler goes, not before.
        std::fs::write(d.join("filler"), vec![1u8; 1000 * 1024]).ok();
        fill(&mut c, 200, 1000, "more");
        assert_misconf(&mut c);
        std::fs::remove_file(d.join("filler")).unwrap();
        assert_eq!(reply(&mut c, &["BGSAVE"]), "Background saving started");
        assert_eq!(bgsave_done(&mut c), "ok");
        assert_eq!(reply(&mut c, &["SET", "x", "1"]), "OK");
        assert_eq!(reply(&mut c, &["PING"]), "PONG");
        assert!(d.join("dump.rdb").exists());
    }
    let _ = Command::new("umount").arg(&d).status();
    let _ = std::fs::remove_dir_all(&d);
}

/// RLIMIT_FSIZE: the writer thread's write fails with EFBIG (SIGXFSZ must not kill the
/// process); `CONFIG SET save ""` lifts MISCONF (Redis needs a save rule for it), and a
/// BGSAVE that fits clears the error.
#[test]
fn file_size_limit_fails_bgsave_without_killing_the_server() {
    let n = *shard_counts().last().unwrap_or(&1);
    let d = tmpdir("fsize");
    // dash counts 512-byte blocks: 512 KiB.
    let mut s = Server::start_logged(n, "ulimit -f 1024", &["--dir", d.to_str().unwrap()]);
    let mut c = s.client();
    fill(&mut c, 10, 1000, "big");
    fill(&mut c, 1000, 1000, "more");
    assert_misconf(&mut c);
    assert!(s.alive(), "SIGXFSZ killed the server");
    assert!(s.log().contains("Background saving error"), "{}", s.log());
    assert_eq!(reply(&mut c, &["CONFIG", "SET", "save", ""]), "OK");
    assert_eq!(
        reply(&mut c, &["SET", "x", "1"]),
        "OK",
        "no rules: no MISCONF"
    );
    assert_eq!(reply(&mut c, &["CONFIG", "SET", "save", "3600 1"]), "OK");
    assert_eq!(reply(&mut c, &["SET", "x", "1"]), MISCONF);
    assert_eq!(
        reply(
            &mut c,
            &["CONFIG", "SET", "stop-writes-on-bgsave-error", "no"]
        ),
        "OK"
    );
    let _: i64 = redis::cmd("DEL").arg("x").query(&mut c).unwrap();
    for i in 0..1000 {
        let _: i64 = redis::cmd("DEL")
            .arg(format!("more:{i}"))
            .query(&mut c)
            .unwrap();
    }
    assert_eq!(
        reply(
            &mut c,
            &["CONFIG", "SET", "stop-writes-on-bgsave-error", "yes"]
        ),
        "OK"
    );
    assert_eq!(
        reply(&mut c, &["SET", "x", "1"]),
        MISCONF,
        "still err until a save works"
    );
    assert_eq!(reply(&mut c, &["BGSAVE"]), "Background saving started");
    assert_eq!(bgsave_done(&mut c), "ok");
    assert_eq!(reply(&mut c, &["SET", "x", "1"]), "OK");
    let _ = std::fs::remove_dir_all(&d);
}

/// shutdown-on-sigint / shutdown-on-sigterm as settings: CONFIG GET shows Redis's text,
/// CONFIG SET changes what the next signal does and refuses what Redis refuses.
#[test]
fn shutdown_on_signal_settings() {
    let d = tmpdir("sigint-setting");
    let mut s = Server::start_with(1, &["--dir", d.to_str().unwrap(), "--save", ""]);
    let mut c = s.client();
    let get = |c: &mut redis::Connection, name: &str| -> String {
        let v: Vec<String> = redis::cmd("CONFIG").arg("GET").arg(name).query(c).unwrap();
        v.get(1).cloned().unwrap_or_default()
    };
    assert_eq!(get(&mut c, "shutdown-on-sigint"), "default");
    // Redis 7.0.15's texts.
    assert_eq!(
        reply(
            &mut c,
            &["CONFIG", "SET", "shutdown-on-sigterm", "save nosave"]
        ),
        "ERR CONFIG SET failed (possibly related to argument 'shutdown-on-sigterm') - \
         shutdown options SAVE and NOSAVE can't be used simultaneously"
    );
    for bad in ["later", ""] {
        assert_eq!(
            reply(&mut c, &["CONFIG", "SET", "shutdown-on-sigint", bad]),
            "ERR CONFIG SET failed (possibly related to argument 'shutdown-on-sigint') - \
             argument(s) must be one of the following: default, save, nosave, now, force"
        );
    }
    assert_eq!(
        reply(
            &mut c,
            &["CONFIG", "SET", "shutdown-on-sigint", "force save"]
        ),
        "OK"
    );
    assert_eq!(get(&mut c, "shutdown-on-sigint"), "save force");
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    s.signal("INT");
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        d.join("dump.rdb").exists(),
        "SIGINT saved without save rules"
    );
    let _ = std::fs::remove_dir_all(&d);
}

/// The append-only file on a full disk (a 1 MB tmpfs), `appendfsync everysec`: the write
/// that does not fit is refused from then on with Redis's `MISCONF Errors writing to the
/// AOF file: No space left on device` (PING too), INFO says `err`, nothing crashes; once
/// space is back the pending records are written without a torn record in between, writes
/// work again, and after `kill -9` the server restarts with every acknowledged write.
#[test]
fn aof_on_a_full_disk_refuses_writes_until_space_returns() {
    let Some(d) = small_tmpfs("aof-tmpfs", "the always test covers it") else {
        return;
    };
    let n = *shard_counts().last().unwrap_or(&1);
    let args = [
        "--dir",
        d.to_str().unwrap_or_default(),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--enable-debug-command",
        "yes",
    ];
    let want = {
        let s = Server::start_with(n, &args);
        let mut c = s.client();
        fill(&mut c, 10, 1000, "small");
        // Leave a few KB: the next big values cannot all fit.
        let free = 1024 * 1024 - dir_bytes(&d);
        std::fs::write(
            d.join("filler"),
            vec![1u8; free.saturating_sub(6000) as usize],
        )
        .ok();
        let mut refused = String::new();
        for i in 0..200 {
            let v = format!("{i:04}").repeat(500);
            let r = reply(&mut c, &["SET", &format!("big:{i}"), &v]);
            if r != "OK" {
                refused = r;
                break;
            }
        }
        assert_eq!(
            refused,
            "MISCONF Errors writing to the AOF file: No space left on device"
        );
        assert_eq!(field(&mut c, "aof_last_write_status"), "err");
        assert_eq!(
            reply(&mut c, &["PING"]),
            "MISCONF Errors writing to the AOF file: No space left on device"
        );
        let v: Option<Vec<u8>> = redis::cmd("GET").arg("small:1").query(&mut c).unwrap();
        assert!(v.is_some(), "reads still work");
        std::fs::remove_file(d.join("filler")).unwrap();
        assert!(
            common::wait_for(Duration::from_secs(10), || reply(&mut c, &["PING"])
                == "PONG"),
            "writes resume once the records fit"
        );
        assert_eq!(reply(&mut c, &["SET", "after", "1"]), "OK");
        assert_eq!(field(&mut c, "aof_last_write_status"), "ok");
        let want: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
        s.signal("KILL");
        want
    };
    {
        let s = Server::start_with(n, &args);
        let mut c = s.client();
        let got: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
        assert_eq!(
            got, want,
            "every acknowledged write is in the log, none torn"
        );
    }
    let _ = Command::new("umount").arg(&d).status();
    let _ = std::fs::remove_dir_all(&d);
}

/// Bytes of the files under `d`.
fn dir_bytes(d: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// `appendfsync always` on a file-size limit: a write that cannot reach the log stops the
/// server before its reply leaves (Redis exits too: the write would be acknowledged and
/// lost), with Redis's log line; a restart without the limit has every acknowledged write.
#[test]
fn aof_always_write_error_stops_the_server_before_the_reply() {
    let n = *shard_counts().last().unwrap_or(&1);
    let d = tmpdir("aof-always");
    let dir = d.to_str().unwrap_or_default().to_string();
    let args = [
        "--dir",
        dir.as_str(),
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--save",
        "",
        "--enable-debug-command",
        "yes",
    ];
    // dash counts 512-byte blocks: 256 KiB per file.
    let mut s = Server::start_logged(n, "ulimit -f 512", &args);
    let mut c = s.client();
    let mut acked = Vec::new();
    let mut failed = false;
    for i in 0..2000 {
        let k = format!("k{i}");
        let v = format!("{i:04}").repeat(250);
        match redis::cmd("SET").arg(&k).arg(&v).query::<()>(&mut c) {
            Ok(()) => acked.push((k, v)),
            Err(_) => {
                failed = true;
                break;
            }
        }
    }
    assert!(failed, "the file-size limit was never reached");
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(1));
    assert!(
        s.log().contains(
            "Can't recover from AOF write error when the AOF fsync policy is 'always'. Exiting..."
        ),
        "{}",
        s.log()
    );
    drop(s);
    let s = Server::start_with(n, &args);
    let mut c = s.client();
    for (k, v) in &acked {
        let got: Option<String> = redis::cmd("GET").arg(k).query(&mut c).unwrap();
        assert_eq!(got.as_deref(), Some(v.as_str()), "{k} was acknowledged");
    }
    drop(c);
    drop(s);
    let _ = std::fs::remove_dir_all(&d);
}
