//! A stock redis-server as a replica of shardis (`--shards 4`): full sync of every type in
//! several databases with expiries, then the merged stream (MULTI/EXEC across shards,
//! cross-shard MSET, FLUSHDB, SWAPDB, keys expiring on the master), a SIGKILLed replica that
//! comes back and continues with PSYNC, WAIT, ROLE, INFO, CLIENT LIST, and
//! `redis-cli --rdb` producing a file `redis-check-rdb` accepts. Convergence is checked
//! with `DEBUG DIGEST` on both sides; every wait has a deadline.

mod common;

use std::process::Command;
use std::time::Duration;

use common::resp::Redis;
use common::Server;
use redis::Value;

const DEADLINE: Duration = Duration::from_secs(20);

fn conn(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap()
}

fn digest(c: &mut redis::Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

/// The replica's link is up, its offset is the master's, and the digests are equal.
fn converged(m: &mut redis::Connection, r: &mut redis::Connection) -> bool {
    let ri = common::info(r, "replication");
    if ri.get("master_link_status").map(String::as_str) != Some("up") {
        return false;
    }
    let mi = common::info(m, "replication");
    ri.get("slave_repl_offset") == mi.get("master_repl_offset") && digest(m) == digest(r)
}

fn wait_converged(m: &mut redis::Connection, rport: u16, what: &str) {
    let mut r = conn(rport);
    let ok = common::wait_for(DEADLINE, || converged(m, &mut r));
    if !ok {
        let mi = common::info(m, "replication");
        let ri = common::info(&mut r, "replication");
        panic!(
            "{what}: no convergence: master {:?} {} / replica {:?} {:?} {}",
            mi.get("master_repl_offset"),
            digest(m),
            ri.get("master_link_status"),
            ri.get("slave_repl_offset"),
            digest(&mut r)
        );
    }
}

fn q(c: &mut redis::Connection, args: &[&str]) -> Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// Every type, in databases 0, 1 and 2, some with long expiries, some expiring soon.
fn dataset(c: &mut redis::Connection) {
    for db in 0..3 {
        q(c, &["SELECT", &db.to_string()]);
        for i in 0..40 {
            let k = |t: &str| format!("{t}{i}");
            q(c, &["SET", &k("s"), &format!("v{i}-{db}")]);
            q(c, &["HSET", &k("h"), "f1", "a", "f2", &i.to_string()]);
            q(c, &["RPUSH", &k("l"), "x", "y", &i.to_string()]);
            q(c, &["SADD", &k("q"), "m1", "m2", &i.to_string()]);
            q(c, &["ZADD", &k("z"), "1", "a", &i.to_string(), "b"]);
            if i % 5 == 0 {
                q(c, &["EXPIRE", &k("h"), "1000"]);
                q(c, &["SET", &k("e"), "soon", "PX", "300"]);
            }
        }
        q(c, &["PFADD", "hll", "a", "b", "c"]);
        q(c, &["SETBIT", "bits", "77", "1"]);
    }
    q(c, &["SELECT", "0"]);
}

/// The stream's harder parts: cross-shard transactions and MSET, FLUSHDB, SWAPDB.
fn stream_writes(c: &mut redis::Connection, round: usize) {
    let r = round.to_string();
    q(c, &["MULTI"]);
    q(c, &["SET", "s1", &r]);
    q(c, &["HSET", "h2", "f9", &r]);
    q(c, &["LPUSH", "l3", &r]);
    q(c, &["ZINCRBY", "z4", "2.5", "a"]);
    q(c, &["SPOP", "q5"]);
    q(c, &["EXEC"]);
    q(
        c,
        &["MSET", "s6", &r, "s7", &r, "s8", &r, "s9", &r, "s10", &r],
    );
    q(c, &["INCRBYFLOAT", "float", "0.1"]);
    q(c, &["SET", "torename", &r]);
    q(c, &["RENAME", "torename", &format!("moved{r}")]);
    q(c, &["SET", &format!("tmp{r}"), "x", "PX", "200"]);
    q(c, &["SELECT", "2"]);
    q(c, &["FLUSHDB"]);
    q(c, &["SET", "after-flush", &r]);
    q(c, &["SELECT", "0"]);
    q(c, &["SWAPDB", "0", "1"]);
    q(c, &["SET", "after-swap", &r]);
    q(c, &["SWAPDB", "0", "1"]);
}

fn scratch_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("shardis-repl-master-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start_replica(master: u16, dir: &std::path::Path) -> Redis {
    let port = master.to_string();
    Redis::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &port,
        "--enable-debug-command",
        "yes",
        "--dir",
        &dir.to_string_lossy(),
        "--dbfilename",
        "replica.rdb",
    ])
}

/// `redis-cli -p PORT MODE FILE` (`--rdb`, `--functions-rdb`), which must succeed.
fn cli_to_file(port: u16, mode: &str, file: &std::path::Path) {
    let out = Command::new(common::redis_cli().unwrap())
        .args(["-p", &port.to_string(), mode])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stat(c: &mut redis::Connection, name: &str) -> u64 {
    common::info(c, "stats")
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn redis_replicates_from_shardis() {
    if common::redis_server().is_none() || common::redis_cli().is_none() {
        eprintln!("redis-server or redis-cli missing: skipped");
        return;
    }
    let master = Server::start_logged(4, "true", &["--enable-debug-command", "yes"]);
    let mut m = master.client();
    // Before any replica: no journal, nothing replicated, WAIT 0 answers at once.
    assert_eq!(q(&mut m, &["WAIT", "0", "0"]), Value::Int(0));
    // As Redis: not inside MULTI, not behind unsent replies.
    let mut raw = common::resp::Client::connect(master.port);
    raw.send(b"MULTI\r\nPSYNC ? -1\r\nDISCARD\r\nPING\r\nPSYNC ? -1\r\nPING\r\n")
        .unwrap();
    for want in [
        &b"+OK\r\n"[..],
        b"-ERR Command not allowed inside a transaction\r\n",
        b"+OK\r\n",
        b"+PONG\r\n",
        b"-ERR SYNC and PSYNC are invalid with pending output\r\n",
        b"+PONG\r\n",
    ] {
        assert_eq!(raw.read_reply().unwrap(), want);
    }
    drop(raw);
    dataset(&mut m);
    assert_ne!(digest(&mut m), "0".repeat(40));

    let dir = scratch_dir("replica");
    let replica = start_replica(master.port, &dir);
    wait_converged(&mut m, replica.port, "full sync");
    assert_eq!(stat(&mut m, "sync_full"), 1);

    // What tools read on the master.
    let mi = common::info(&mut m, "replication");
    assert_eq!(mi["role"], "master");
    assert_eq!(mi["connected_slaves"], "1");
    let line = &mi["slave0"];
    assert!(
        line.starts_with(&format!(
            "ip=127.0.0.1,port={},state=online,offset=",
            replica.port
        )),
        "{line}"
    );
    assert_eq!(mi["repl_backlog_active"], "1");
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut m).unwrap();
    assert!(
        list.lines().any(|l| l.contains("flags=S")),
        "a replica shows flags=S: {list}"
    );

    for round in 0..3 {
        stream_writes(&mut m, round);
    }
    // The short-lived keys expire on the master; their DELs reach the replica.
    std::thread::sleep(Duration::from_millis(400));
    wait_converged(&mut m, replica.port, "stream");

    // INFO memory counts the backlog INFO replication shows (they were 0 and missing).
    let histlen: u64 = common::info(&mut m, "replication")["repl_backlog_histlen"]
        .parse()
        .unwrap();
    let mem = common::info(&mut m, "memory");
    assert!(histlen > 0);
    assert_eq!(mem["mem_replication_backlog"], histlen.to_string());
    assert_eq!(mem["mem_total_replication_buffers"], histlen.to_string());

    // WAIT: the replica acknowledges this client's writes.
    q(&mut m, &["SET", "waited", "1"]);
    assert_eq!(q(&mut m, &["WAIT", "1", "5000"]), Value::Int(1));
    assert_eq!(q(&mut m, &["WAIT", "2", "200"]), Value::Int(1), "timeout");
    let Value::Array(role) = q(&mut m, &["ROLE"]) else {
        panic!("ROLE is an array")
    };
    assert_eq!(role[0], Value::BulkString(b"master".to_vec()));
    assert!(matches!(role[1], Value::Int(n) if n > 0));
    let Value::Array(reps) = &role[2] else {
        panic!("ROLE's replicas")
    };
    assert_eq!(reps.len(), 1);

    // SIGKILL the replica, write on, restart it on its own dump: it continues with PSYNC.
    drop(replica);
    for round in 3..5 {
        stream_writes(&mut m, round);
    }
    let replica = start_replica(master.port, &dir);
    wait_converged(&mut m, replica.port, "after the replica's restart");
    assert_eq!(stat(&mut m, "sync_partial_ok"), 1, "PSYNC continued");
    assert_eq!(stat(&mut m, "sync_full"), 1, "no second full sync");

    // redis-cli --rdb: a file redis-check-rdb accepts.
    let file = dir.join("cli.rdb");
    cli_to_file(master.port, "--rdb", &file);
    let check = Command::new("redis-check-rdb").arg(&file).output();
    if let Ok(check) = check {
        let text = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success() && text.contains("RDB looks OK"),
            "{text}"
        );
    }
    // redis-cli --functions-rdb (REPLCONF rdb-filter-only functions): the libraries and no
    // keys; a stock redis-server loads it to the same libraries and an empty keyspace.
    q(
        &mut m,
        &[
            "FUNCTION",
            "LOAD",
            "#!lua name=clilib\nredis.register_function('one', function() return 1 end)",
        ],
    );
    let ffile = dir.join("functions.rdb");
    let count = |what: &str| master.log().matches(what).count();
    let (cuts, synced) = ("Replication cut taken", "succeeded (");
    let before = (count(cuts), count(synced));
    assert!(before.0 > 0, "the log shows the cuts");
    cli_to_file(master.port, "--functions-rdb", &ffile);
    // No key is sent, so none is serialised: the shards are not cut for it. (The log is
    // read once it shows the sync, which is logged after any cut for it.)
    assert!(common::wait_for(DEADLINE, || count(synced) > before.1));
    assert_eq!(count(cuts), before.0, "a cut for a functions-only RDB");
    let (full, only) = (
        std::fs::metadata(&file).unwrap().len(),
        std::fs::metadata(&ffile).unwrap().len(),
    );
    assert!(
        only < 1024 && only * 10 < full,
        "{only} bytes against {full}"
    );
    let loaded = Redis::start_with(&[
        "--dbfilename",
        "functions.rdb",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let mut lc = conn(loaded.port);
    assert_eq!(q(&mut lc, &["DBSIZE"]), Value::Int(0));
    assert_eq!(q(&mut lc, &["FCALL", "one", "0"]), Value::Int(1));
    drop(loaded);
    let bad = common::cli(
        master.port,
        &["REPLCONF", "rdb-filter-only", "functions keys"],
    );
    assert_eq!(bad.trim(), "ERR Unsupported rdb-filter-only option: keys");
    // redis-cli --replica prints the stream: a cross-shard MSET arrives as one transaction.
    let mut tail = Command::new(common::redis_cli().unwrap())
        .args(["-p", &master.port.to_string(), "--replica"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(common::wait_for(DEADLINE, || common::info(
        &mut m,
        "replication"
    )["connected_slaves"]
        == "2"));
    q(
        &mut m,
        &["MSET", "ma", "1", "mb", "2", "mc", "3", "md", "4"],
    );
    q(&mut m, &["WAIT", "2", "300"]);
    std::thread::sleep(Duration::from_millis(200));
    let _ = tail.kill();
    let out = tail.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mset = text
        .find("\"MULTI\"")
        .zip(text.find("\"EXEC\""))
        .is_some_and(|(a, b)| {
            a < b && text[a..b].contains("\"ma\",\"1\"") && text[a..b].contains("\"md\",\"4\"")
        });
    assert!(
        mset,
        "the stream wraps the MSET's parts in MULTI/EXEC:\n{text}"
    );

    // The rdb-only client is not listed as a replica.
    assert!(common::wait_for(DEADLINE, || common::info(
        &mut m,
        "replication"
    )["connected_slaves"]
        == "1"));
    drop(replica);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Clients keep writing (cross-shard transactions and MSETs, expiring keys) while two
/// replicas take their full syncs one after the other: each cut must match its offset.
#[test]
fn full_sync_under_write_load() {
    if common::redis_server().is_none() {
        eprintln!("redis-server missing: skipped");
        return;
    }
    let master = Server::start_with(4, &["--enable-debug-command", "yes"]);
    let mut m = master.client();
    dataset(&mut m);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = master.port;
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut c = conn(port);
                let mut i = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let v = format!("{w}-{i}");
                    match i % 4 {
                        0 => {
                            q(&mut c, &["MULTI"]);
                            q(&mut c, &["INCR", &format!("n{}", i % 7)]);
                            q(&mut c, &["RPUSH", &format!("l{}", i % 5), &v]);
                            q(&mut c, &["HSET", &format!("h{}", i % 9), "f", &v]);
                            q(&mut c, &["EXEC"]);
                        }
                        1 => {
                            q(&mut c, &["MSET", "a", &v, "b", &v, "c", &v, "d", &v]);
                        }
                        2 => {
                            q(&mut c, &["SET", &format!("t{}", i % 11), &v, "PX", "30"]);
                        }
                        _ => {
                            q(
                                &mut c,
                                &["ZADD", &format!("z{}", i % 3), &i.to_string(), &v],
                            );
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let (d1, d2) = (scratch_dir("load1"), scratch_dir("load2"));
    let r1 = start_replica(master.port, &d1);
    std::thread::sleep(Duration::from_millis(300));
    let r2 = start_replica(master.port, &d2);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    // Let the short TTLs run out on the master (their DELs are part of the stream).
    std::thread::sleep(Duration::from_millis(200));
    wait_converged(&mut m, r1.port, "first replica");
    wait_converged(&mut m, r2.port, "second replica");
    assert_eq!(stat(&mut m, "sync_full"), 2);
    assert_eq!(common::info(&mut m, "replication")["connected_slaves"], "2");
    let _ = std::fs::remove_dir_all(&d1);
    let _ = std::fs::remove_dir_all(&d2);
}

/// A redis-server replica we can stop and continue (SIGSTOP/SIGCONT); killed on drop.
struct Stoppable {
    port: u16,
    child: std::process::Child,
}

impl Stoppable {
    fn start(master: u16, dir: &std::path::Path) -> Stoppable {
        let port = common::free_port();
        let child = Command::new(common::redis_server().unwrap())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--replicaof", "127.0.0.1", &master.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--enable-debug-command",
                "yes",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        assert!(common::wait_for(DEADLINE, || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }));
        Stoppable { port, child }
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }
}

impl Drop for Stoppable {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica that stops reading passes `client-output-buffer-limit replica` and is dropped
/// (the master's memory stays bounded); continued, it reconnects, resyncs and converges.
#[test]
fn stalled_replica_is_dropped_then_resyncs() {
    if common::redis_server().is_none() {
        eprintln!("redis-server missing: skipped");
        return;
    }
    let master = Server::start_with(4, &["--enable-debug-command", "yes"]);
    let mut m = master.client();
    dataset(&mut m);
    let dir = scratch_dir("stall");
    let replica = Stoppable::start(master.port, &dir);
    wait_converged(&mut m, replica.port, "first sync");
    q(
        &mut m,
        &[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "replica 2mb 1mb 1",
        ],
    );
    // The hub reads the limit once a second.
    std::thread::sleep(Duration::from_millis(1200));
    replica.signal("-STOP");
    let big = "x".repeat(16 * 1024);
    let dropped = common::wait_for(DEADLINE, || {
        for i in 0..200 {
            q(&mut m, &["SET", &format!("big{i}"), &big]);
        }
        common::info(&mut m, "replication")["connected_slaves"] == "0"
    });
    assert!(dropped, "the stalled replica was dropped");
    replica.signal("-CONT");
    wait_converged(&mut m, replica.port, "after the stall");
    drop(replica);
    let _ = std::fs::remove_dir_all(&dir);
}
