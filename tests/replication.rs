//! shardis as a replica of a stock redis-server 7.0 master: full sync (disk and diskless RDB
//! forms), the command stream, offsets and ACKs (WAIT), read-only replicas, expiry left to
//! the master, link loss and master restarts, partial resync, and promotion with
//! REPLICAOF NO ONE. Every test runs under each shard count of `shard_counts()`; each has
//! its own ports, deadlines instead of sleeps, and kills its processes on drop.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, redis_server, shard_counts, wait_for, Server};

const DEADLINE: Duration = Duration::from_secs(20);

/// A real redis-server master on a fixed loopback port (so it can be restarted on it).
struct Master {
    port: u16,
    extra: Vec<String>,
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Master {
    fn start(extra: &[&str]) -> Option<Master> {
        let Some(_) = redis_server() else {
            eprintln!("redis-server not installed: skipping (tools/test.sh installs it)");
            return None;
        };
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("shardis-repl-{}-{port}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let mut m = Master {
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            dir,
        };
        m.spawn();
        Some(m)
    }

    fn spawn(&mut self) {
        let bin = redis_server().expect("redis-server");
        let child = Command::new(bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--enable-debug-command", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start redis-server");
        self.child = Some(child);
        let port = self.port;
        assert!(
            wait_for(Duration::from_secs(10), || common::ping(port)),
            "redis-server did not start"
        );
    }

    /// Starts it again on the same port, empty: the dump its full syncs wrote is removed.
    fn restart(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        self.spawn();
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    fn conn(&self) -> redis::Connection {
        connect(self.port)
    }
}

impl Drop for Master {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn connect(port: u16) -> redis::Connection {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn q(c: &mut redis::Connection, args: &[&str]) -> redis::Value {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(c)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

fn q_err(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    match cmd.query::<redis::Value>(c) {
        Ok(v) => panic!("{args:?} succeeded: {v:?}"),
        Err(e) => format!("{} {}", e.code().unwrap_or(""), e.detail().unwrap_or("")),
    }
}

fn get(c: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(c)
        .unwrap_or_else(|e| panic!("GET {key} failed: {e}"))
}

fn s(c: &mut redis::Connection, args: &[&str]) -> String {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<String>(c)
        .unwrap_or_else(|e| panic!("{args:?} failed: {e}"))
}

/// One field of INFO replication.
fn info(port: u16, field: &str) -> String {
    let mut c = connect(port);
    let text = s(&mut c, &["INFO", "replication"]);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn start_replica(shards: usize, master: u16, extra: &[&str]) -> Server {
    let p = master.to_string();
    let mut args = vec![
        "--replicaof",
        "127.0.0.1",
        &p,
        "--enable-debug-command",
        "yes",
    ];
    args.extend_from_slice(extra);
    Server::start_with(shards, &args)
}

fn link_up(port: u16) -> bool {
    info(port, "master_link_status") == "up"
}

/// Waits until the replica has processed everything the master has written (offsets equal
/// and non-zero), then until both digests agree.
fn converge(master: u16, replica: u16) {
    let ok = wait_for(DEADLINE, || {
        let m = info(master, "master_repl_offset");
        link_up(replica) && !m.is_empty() && info(replica, "slave_repl_offset") == m
    });
    assert!(
        ok,
        "offsets never met: master {} replica {} (link {})",
        info(master, "master_repl_offset"),
        info(replica, "slave_repl_offset"),
        info(replica, "master_link_status")
    );
    let (mut m, mut r) = (connect(master), connect(replica));
    let mut last = (String::new(), String::new());
    let same = wait_for(Duration::from_secs(5), || {
        last = (
            s(&mut m, &["DEBUG", "DIGEST"]),
            s(&mut r, &["DEBUG", "DIGEST"]),
        );
        last.0 == last.1
    });
    assert!(same, "digests differ: master {} replica {}", last.0, last.1);
    assert_ne!(last.0, "0".repeat(40), "empty dataset");
}

/// Every type, expiries, several databases, a transaction; `tag` keeps rounds apart.
fn write_dataset(c: &mut redis::Connection, tag: &str) {
    for db in ["0", "3", "9"] {
        q(c, &["SELECT", db]);
        let k = |n: &str| format!("{tag}:{n}:{db}");
        q(c, &["SET", &k("str"), "hello"]);
        q(c, &["SET", &k("int"), "12345"]);
        q(c, &["INCRBY", &k("int"), "10"]);
        q(c, &["APPEND", &k("str"), " world"]);
        q(c, &["SET", &k("ttl"), "v", "EX", "1000"]);
        q(c, &["HSET", &k("hash"), "a", "1", "b", "2", "c", "3"]);
        q(c, &["HINCRBY", &k("hash"), "a", "5"]);
        q(c, &["RPUSH", &k("list"), "x", "y", "z", "w"]);
        q(c, &["LPOP", &k("list")]);
        q(c, &["SADD", &k("set"), "m1", "m2", "m3", "17"]);
        q(c, &["SREM", &k("set"), "m2"]);
        q(c, &["ZADD", &k("zset"), "1", "a", "2.5", "b", "-3", "c"]);
        q(c, &["ZINCRBY", &k("zset"), "4", "a"]);
        q(c, &["EXPIRE", &k("hash"), "5000"]);
        q(c, &["PEXPIREAT", &k("zset"), "4000000000000"]);
        for i in 0..40 {
            q(c, &["SET", &format!("{tag}:many:{db}:{i}"), &i.to_string()]);
        }
        q(c, &["DEL", &format!("{tag}:many:{db}:7")]);
    }
    q(c, &["SELECT", "0"]);
    let mut p = redis::pipe();
    p.atomic()
        .cmd("SET")
        .arg(format!("{tag}:tx:a"))
        .arg("1")
        .cmd("INCR")
        .arg(format!("{tag}:tx:b"))
        .cmd("RPUSH")
        .arg(format!("{tag}:tx:l"))
        .arg("q")
        .cmd("HSET")
        .arg(format!("{tag}:tx:h"))
        .arg("f")
        .arg("v");
    let _: redis::Value = p.query(c).unwrap();
    q(
        c,
        &["MSET", &format!("{tag}:m1"), "1", &format!("{tag}:m2"), "2"],
    );
}

#[test]
fn full_sync_then_stream_matches_the_master() {
    for shards in shard_counts() {
        let Some(master) = Master::start(&["--repl-diskless-sync", "no"]) else {
            return;
        };
        let mut mc = master.conn();
        write_dataset(&mut mc, "before");
        let replica = start_replica(shards, master.port, &[]);
        assert!(
            wait_for(DEADLINE, || link_up(replica.port)),
            "never connected"
        );
        write_dataset(&mut mc, "after");
        converge(master.port, replica.port);

        let mut rc = connect(replica.port);
        assert_eq!(get(&mut rc, "after:str:3"), None, "db 0 sees db 3's key");
        q(&mut rc, &["SELECT", "3"]);
        assert_eq!(get(&mut rc, "after:str:3").as_deref(), Some("hello world"));
        // ROLE's replica shape.
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut rc).unwrap();
        assert_eq!(role.len(), 5);
        assert_eq!(role[0], redis::Value::BulkString(b"slave".to_vec()));
        assert_eq!(role[2], redis::Value::Int(i64::from(master.port)));
        assert_eq!(role[3], redis::Value::BulkString(b"connected".to_vec()));
        assert_eq!(info(replica.port, "role"), "slave");
        assert_eq!(info(replica.port, "slave_read_only"), "1");
        assert_eq!(
            info(replica.port, "master_replid"),
            info(master.port, "master_replid")
        );
        // The master sees our ACKs: WAIT (which sends REPLCONF GETACK) counts us.
        q(&mut mc, &["SET", "acked", "1"]);
        let n: i64 = redis::cmd("WAIT").arg(1).arg(5000).query(&mut mc).unwrap();
        assert_eq!(n, 1, "WAIT did not see the replica's ACK");
        converge(master.port, replica.port);
    }
}

#[test]
fn diskless_master_uses_the_eof_form() {
    for shards in shard_counts() {
        let Some(master) = Master::start(&[
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
        ]) else {
            return;
        };
        let mut mc = master.conn();
        write_dataset(&mut mc, "before");
        let replica = start_replica(shards, master.port, &[]);
        assert!(
            wait_for(DEADLINE, || link_up(replica.port)),
            "never connected"
        );
        write_dataset(&mut mc, "after");
        converge(master.port, replica.port);
    }
}

#[test]
fn replicas_refuse_writes_from_clients() {
    for shards in shard_counts() {
        let Some(master) = Master::start(&["--repl-diskless-sync", "no"]) else {
            return;
        };
        let mut mc = master.conn();
        q(&mut mc, &["SET", "k", "v"]);
        let replica = start_replica(shards, master.port, &[]);
        assert!(wait_for(DEADLINE, || link_up(replica.port)));
        let mut rc = connect(replica.port);
        let ro = "READONLY You can't write against a read only replica.";
        assert_eq!(q_err(&mut rc, &["SET", "k", "x"]), ro);
        assert_eq!(q_err(&mut rc, &["DEL", "k"]), ro);
        assert_eq!(q_err(&mut rc, &["FLUSHALL"]), ro);
        // Inside MULTI the write is refused while queuing and EXEC aborts.
        q(&mut rc, &["MULTI"]);
        assert_eq!(q_err(&mut rc, &["INCR", "k"]), ro);
        let e = q_err(&mut rc, &["EXEC"]);
        assert!(e.starts_with("EXECABORT"), "{e}");
        // A script's writes too.
        let e = q_err(
            &mut rc,
            &["EVAL", "return redis.call('SET', KEYS[1], 'x')", "1", "k"],
        );
        assert!(e.starts_with(ro), "{e}");
        // FUNCTION's writing subcommands too (as Redis 7.0); its reads are served.
        let lib = "#!lua name=rolib\nredis.register_function('f', function() return 1 end)";
        assert_eq!(q_err(&mut rc, &["FUNCTION", "LOAD", lib]), ro);
        assert_eq!(q_err(&mut rc, &["FUNCTION", "FLUSH"]), ro);
        assert_eq!(q_err(&mut rc, &["FUNCTION", "DELETE", "rolib"]), ro);
        q(&mut rc, &["FUNCTION", "LIST"]);
        q(&mut rc, &["SCRIPT", "FLUSH"]);
        // Reads are served.
        assert_eq!(get(&mut rc, "k").as_deref(), Some("v"));
        // replica-read-only no: client writes apply locally.
        q(&mut rc, &["CONFIG", "SET", "replica-read-only", "no"]);
        q(&mut rc, &["SET", "local", "1"]);
        assert_eq!(info(replica.port, "slave_read_only"), "0");
        q(&mut rc, &["CONFIG", "SET", "replica-read-only", "yes"]);
        assert_eq!(q_err(&mut rc, &["SET", "local", "2"]), ro);
        // REPLICAOF's own replies.
        let p = master.port.to_string();
        assert_eq!(
            s(&mut rc, &["REPLICAOF", "127.0.0.1", &p]),
            "OK Already connected to specified master"
        );
        assert_eq!(
            q_err(&mut rc, &["REPLICAOF", "127.0.0.1", "70000"]),
            "ERR Invalid master port"
        );
        assert_eq!(
            q_err(&mut rc, &["SLAVEOF", "127.0.0.1", "port"]),
            "ERR Invalid master port"
        );
    }
}

#[test]
fn expired_keys_leave_only_by_the_masters_del() {
    for shards in shard_counts() {
        let Some(master) = Master::start(&["--repl-diskless-sync", "no"]) else {
            return;
        };
        let mut mc = master.conn();
        // The master expires only lazily, so it decides when the DEL goes out.
        q(&mut mc, &["DEBUG", "SET-ACTIVE-EXPIRE", "0"]);
        q(&mut mc, &["SET", "keep", "1"]);
        q(&mut mc, &["SET", "in-rdb", "1", "PX", "400"]);
        let replica = start_replica(shards, master.port, &[]);
        assert!(wait_for(DEADLINE, || link_up(replica.port)));
        q(&mut mc, &["SET", "streamed", "1", "PX", "400"]);
        q(&mut mc, &["HSET", "h", "f", "v"]);
        q(&mut mc, &["PEXPIRE", "h", "400"]);
        converge(master.port, replica.port);
        let mut rc = connect(replica.port);
        std::thread::sleep(Duration::from_millis(600));
        // Logically expired: hidden from reads, but still held (DBSIZE counts it).
        for k in ["in-rdb", "streamed"] {
            assert_eq!(get(&mut rc, k), None, "{k} still readable");
            assert_eq!(q(&mut rc, &["EXISTS", k]), redis::Value::Int(0));
        }
        assert_eq!(q(&mut rc, &["HGET", "h", "f"]), redis::Value::Nil);
        // Longer than a replica's active expiry cycle: still not deleted.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(q(&mut rc, &["DBSIZE"]), redis::Value::Int(4));
        // The master's lazy expiry sends the DELs.
        for k in ["in-rdb", "streamed", "h"] {
            q(&mut mc, &["EXISTS", k]);
        }
        let gone = wait_for(DEADLINE, || q(&mut rc, &["DBSIZE"]) == redis::Value::Int(1));
        assert!(gone, "the master's DELs did not remove the keys");
        assert_eq!(get(&mut rc, "keep").as_deref(), Some("1"));
    }
}

#[test]
fn link_loss_keeps_serving_and_reconverges_after_a_master_restart() {
    for shards in shard_counts() {
        let Some(mut master) = Master::start(&["--repl-diskless-sync", "no"]) else {
            return;
        };
        let mut mc = master.conn();
        write_dataset(&mut mc, "one");
        let replica = start_replica(shards, master.port, &["--repl-timeout", "5"]);
        converge(master.port, replica.port);
        master.kill();
        assert!(
            wait_for(DEADLINE, || info(replica.port, "master_link_status")
                == "down"),
            "link never reported down"
        );
        let mut rc = connect(replica.port);
        assert_eq!(get(&mut rc, "one:str:0").as_deref(), Some("hello world"));
        assert!(info(replica.port, "master_link_down_since_seconds")
            .parse::<i64>()
            .is_ok_and(|n| n >= 0));
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut rc).unwrap();
        assert!(matches!(&role[3], redis::Value::BulkString(b) if b != b"connected"));
        // replica-serve-stale-data no: MASTERDOWN for data commands, INFO still answers.
        q(
            &mut rc,
            &["CONFIG", "SET", "replica-serve-stale-data", "no"],
        );
        assert_eq!(
            q_err(&mut rc, &["GET", "one:str:0"]),
            "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."
        );
        // PING has no `stale` flag in Redis 7.0 either (Sentinel counts this reply as alive).
        assert!(q_err(&mut rc, &["PING"]).starts_with("MASTERDOWN"));
        assert_eq!(info(replica.port, "role"), "slave");
        q(
            &mut rc,
            &["CONFIG", "SET", "replica-serve-stale-data", "yes"],
        );
        assert_eq!(get(&mut rc, "one:str:0").as_deref(), Some("hello world"));
        // The master comes back empty (no persistence) with new data: full resync.
        master.restart();
        let mut mc = master.conn();
        write_dataset(&mut mc, "two");
        converge(master.port, replica.port);
        assert_eq!(get(&mut rc, "one:str:0"), None);
        assert_eq!(get(&mut rc, "two:str:0").as_deref(), Some("hello world"));
    }
}

#[test]
fn a_dropped_link_resumes_with_a_partial_resync() {
    for shards in shard_counts() {
        let Some(master) = Master::start(&["--repl-diskless-sync", "no"]) else {
            return;
        };
        let mut mc = master.conn();
        write_dataset(&mut mc, "one");
        let replica = start_replica(shards, master.port, &[]);
        converge(master.port, replica.port);
        let full = info_stat(master.port, "sync_full");
        q(&mut mc, &["CLIENT", "KILL", "TYPE", "replica"]);
        write_dataset(&mut mc, "two");
        converge(master.port, replica.port);
        assert_eq!(
            info_stat(master.port, "sync_full"),
            full,
            "resynced in full"
        );
        assert_eq!(info_stat(master.port, "sync_partial_ok"), "1");
    }
}

fn info_stat(port: u16, field: &str) -> String {
    let mut c = connect(port);
    let text = s(&mut c, &["INFO", "stats"]);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or("")
        .trim()
        .to_string()
}

#[test]
fn replicaof_no_one_promotes_and_keeps_the_data() {
    for shards in shard_counts() {
        let Some(master) = Master::start(&["--repl-diskless-sync", "no"]) else {
            return;
        };
        let mut mc = master.conn();
        write_dataset(&mut mc, "one");
        // Started as a master; REPLICAOF at run time.
        let replica = Server::start_with(shards, &["--enable-debug-command", "yes"]);
        let mut rc = connect(replica.port);
        q(&mut rc, &["SET", "mine", "1"]);
        assert_eq!(info(replica.port, "role"), "master");
        let p = master.port.to_string();
        assert_eq!(s(&mut rc, &["REPLICAOF", "127.0.0.1", &p]), "OK");
        converge(master.port, replica.port);
        assert_eq!(
            get(&mut rc, "mine"),
            None,
            "old data survived the full sync"
        );
        let old_id = info(master.port, "master_replid");
        let offset: i64 = info(replica.port, "slave_repl_offset").parse().unwrap();
        assert_eq!(s(&mut rc, &["REPLICAOF", "NO", "ONE"]), "OK");
        assert_eq!(info(replica.port, "role"), "master");
        assert_eq!(info(replica.port, "master_replid2"), old_id);
        assert_ne!(info(replica.port, "master_replid"), old_id);
        assert_eq!(
            info(replica.port, "second_repl_offset"),
            (offset + 1).to_string()
        );
        q(&mut rc, &["SET", "now-writable", "1"]);
        assert_eq!(get(&mut rc, "one:str:0").as_deref(), Some("hello world"));
        // Writes on the old master no longer arrive.
        q(&mut mc, &["SET", "late", "1"]);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(get(&mut rc, "late"), None);
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut rc).unwrap();
        assert_eq!(role[0], redis::Value::BulkString(b"master".to_vec()));
        assert_eq!(s(&mut rc, &["REPLICAOF", "NO", "ONE"]), "OK");
    }
}

// ----- a scripted master: exact bytes, bad input ---------------------------------------------

/// Accepts the replica's next connection (with a deadline).
fn accept_within(l: &std::net::TcpListener) -> std::net::TcpStream {
    l.set_nonblocking(true).unwrap();
    let end = std::time::Instant::now() + DEADLINE;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return s;
            }
            Err(_) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("the replica never (re)connected: {e}"),
        }
    }
}

/// Reads one RESP multibulk command.
fn read_cmd(r: &mut std::io::BufReader<std::net::TcpStream>) -> Vec<String> {
    use std::io::{BufRead, Read};
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let n: usize = line.trim().trim_start_matches('*').parse().unwrap();
    (0..n)
        .map(|_| {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            let len: usize = l.trim().trim_start_matches('$').parse().unwrap();
            let mut b = vec![0u8; len + 2];
            r.read_exact(&mut b).unwrap();
            String::from_utf8_lossy(&b[..len]).into_owned()
        })
        .collect()
}

/// Answers the handshake up to PSYNC and returns PSYNC's arguments.
fn handshake(s: &std::net::TcpStream) -> (std::io::BufReader<std::net::TcpStream>, Vec<String>) {
    use std::io::Write;
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let mut w = s.try_clone().unwrap();
    loop {
        let c = read_cmd(&mut r);
        match c[0].to_ascii_uppercase().as_str() {
            "PING" => w.write_all(b"+PONG\r\n").unwrap(),
            "PSYNC" => return (r, c),
            _ => w.write_all(b"+OK\r\n").unwrap(),
        }
    }
}

fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Reads commands until a `REPLCONF ACK <offset>` and returns the offset.
fn next_ack(r: &mut std::io::BufReader<std::net::TcpStream>) -> i64 {
    loop {
        let c = read_cmd(r);
        if c.len() == 3 && c[0].eq_ignore_ascii_case("replconf") && c[1].eq_ignore_ascii_case("ack")
        {
            return c[2].parse().unwrap();
        }
    }
}

#[test]
fn scripted_master_offsets_acks_and_bad_input() {
    use std::io::Write;
    // An empty RDB with the checksum disabled (CRC 0).
    let rdb: &[u8] = b"REDIS0010\xff\0\0\0\0\0\0\0\0";
    for shards in shard_counts() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let replica = start_replica(shards, port, &[]);

        // 1. A payload that is not an RDB: the attempt fails, the replica keeps serving.
        let mut s = accept_within(&l);
        let (_r, psync) = handshake(&s);
        assert_eq!(psync, ["PSYNC", "?", "-1"]);
        s.write_all(format!("+FULLRESYNC {} 0\r\n$9\r\nNOTANRDB!", "a".repeat(40)).as_bytes())
            .unwrap();
        drop(s);

        // 2. A good full sync (diskless form, keep-alive newlines first), then a stream.
        let mut s = accept_within(&l);
        let (mut r, psync) = handshake(&s);
        assert_eq!(psync, ["PSYNC", "?", "-1"]);
        let mark = "0123456789abcdefghij0123456789abcdefghij";
        let id = "b".repeat(40);
        let mut out = format!("+FULLRESYNC {id} 1000\r\n\n\n$EOF:{mark}\r\n").into_bytes();
        out.extend_from_slice(rdb);
        out.extend_from_slice(mark.as_bytes());
        s.write_all(&out).unwrap();
        assert_eq!(next_ack(&mut r), 1000, "first ACK after the load");
        let mut stream = resp(&["SELECT", "0"]);
        stream.extend(resp(&["PING"]));
        stream.extend(resp(&["SET", "k", "v"]));
        // Expires in 300 ms: then hidden from reads, but kept until the master's DEL.
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 300;
        stream.extend(resp(&["SET", "t", "v", "PXAT", &at.to_string()]));
        s.write_all(&stream).unwrap();
        let mut c = connect(replica.port);
        assert!(wait_for(DEADLINE, || get(&mut c, "k").as_deref() == Some("v")));
        let after_stream = 1000 + stream.len() as i64;
        s.write_all(&resp(&["REPLCONF", "GETACK", "*"])).unwrap();
        // GETACK's own bytes are not in the offset it answers with.
        let mut ack = next_ack(&mut r);
        while ack < after_stream {
            ack = next_ack(&mut r);
        }
        assert_eq!(ack, after_stream);
        assert!(wait_for(DEADLINE, || get(&mut c, "t").is_none()));
        std::thread::sleep(Duration::from_millis(300)); // an active expiry cycle or three
        assert_eq!(q(&mut c, &["DBSIZE"]), redis::Value::Int(2));
        let getack = resp(&["REPLCONF", "GETACK", "*"]).len() as i64;
        assert!(wait_for(DEADLINE, || info(
            replica.port,
            "slave_repl_offset"
        ) == (after_stream + getack)
            .to_string()));
        // 3. A protocol error in the stream closes the link; the replica asks to continue
        // from its offset and gets it.
        s.write_all(b"*1\r\n$abc\r\n").unwrap();
        let mut s = accept_within(&l);
        let (mut r, psync) = handshake(&s);
        let from = after_stream + getack + 1;
        assert_eq!(psync, ["PSYNC".to_string(), id.clone(), from.to_string()]);
        let mut out = b"+CONTINUE\r\n".to_vec();
        out.extend(resp(&["DEL", "k", "t"]));
        s.write_all(&out).unwrap();
        assert!(wait_for(DEADLINE, || q(&mut c, &["DBSIZE"]) == redis::Value::Int(0)));
        let done = from - 1 + resp(&["DEL", "k", "t"]).len() as i64;
        let mut ack = next_ack(&mut r);
        while ack < done {
            ack = next_ack(&mut r);
        }
        assert_eq!(ack, done);
        assert_eq!(info(replica.port, "master_link_status"), "up");
    }
}

#[test]
fn a_link_cut_during_the_transfer_keeps_the_data_served() {
    use std::io::Write;
    let rdb: &[u8] = b"REDIS0010\xff\0\0\0\0\0\0\0\0";
    for shards in shard_counts() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let replica = start_replica(shards, port, &[]);
        let id = "c".repeat(40);

        // A full sync and one write, then the link drops.
        let mut s = accept_within(&l);
        let (mut r, _) = handshake(&s);
        let mut out = format!("+FULLRESYNC {id} 0\r\n${}\r\n", rdb.len()).into_bytes();
        out.extend_from_slice(rdb);
        let set = resp(&["SET", "k", "v"]);
        out.extend_from_slice(&set);
        s.write_all(&out).unwrap();
        let mut c = connect(replica.port);
        assert!(wait_for(DEADLINE, || get(&mut c, "k").as_deref() == Some("v")));
        let _ = next_ack(&mut r);
        drop((s, r));

        // A new full sync cut in the middle of its RDB: nothing of it is applied.
        let mut s = accept_within(&l);
        let (r, psync) = handshake(&s);
        assert_eq!(
            psync,
            ["PSYNC".to_string(), id.clone(), (set.len() + 1).to_string()]
        );
        s.write_all(format!("+FULLRESYNC {} 0\r\n$1000\r\nREDIS0010", "d".repeat(40)).as_bytes())
            .unwrap();
        drop((s, r));
        assert_eq!(get(&mut c, "k").as_deref(), Some("v"));
        assert_eq!(info(replica.port, "master_link_status"), "down");

        // The next attempt still continues from the data it has.
        let mut s = accept_within(&l);
        let (_r, psync) = handshake(&s);
        assert_eq!(
            psync,
            ["PSYNC".to_string(), id.clone(), (set.len() + 1).to_string()]
        );
        let mut out = format!("+CONTINUE {id}\r\n").into_bytes();
        out.extend(resp(&["SET", "k", "w"]));
        s.write_all(&out).unwrap();
        assert!(wait_for(DEADLINE, || get(&mut c, "k").as_deref() == Some("w")));
        assert_eq!(info(replica.port, "master_replid"), id);
        assert!(wait_for(DEADLINE, || link_up(replica.port)));
    }
}

/// A link cut in the middle of a master's MULTI/EXEC (its writes span the replica's shards):
/// no reader of the replica ever sees part of it, the replica asks to continue from before
/// the MULTI, and once the master resends the whole transaction it is applied whole.
#[test]
fn a_link_cut_inside_a_transaction_applies_none_of_it() {
    use std::io::Write;
    let rdb: &[u8] = b"REDIS0010\xff\0\0\0\0\0\0\0\0";
    for shards in shard_counts() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let replica = start_replica(shards, port, &[]);
        let id = "e".repeat(40);
        let mut s = accept_within(&l);
        let (_r, _) = handshake(&s);
        let mut out = format!("+FULLRESYNC {id} 0\r\n${}\r\n", rdb.len()).into_bytes();
        out.extend_from_slice(rdb);
        let before = resp(&["SET", "k", "v"]);
        out.extend_from_slice(&before);
        // Keys on distinct shards of a 4-shard replica.
        let tx: Vec<Vec<u8>> = vec![
            resp(&["MULTI"]),
            resp(&["SET", "{a}x", "1"]),
            resp(&["SET", "{b}y", "1"]),
            resp(&["INCR", "{c}z"]),
        ];
        for part in &tx {
            out.extend_from_slice(part);
        }
        s.write_all(&out).unwrap();
        let mut c = connect(replica.port);
        assert!(wait_for(DEADLINE, || get(&mut c, "k").as_deref() == Some("v")));
        // The EXEC never comes: the link drops.
        std::thread::sleep(Duration::from_millis(200));
        for k in ["{a}x", "{b}y", "{c}z"] {
            assert_eq!(get(&mut c, k), None, "{k} applied without its EXEC");
        }
        drop((s, _r));
        assert!(wait_for(DEADLINE, || info(
            replica.port,
            "master_link_status"
        ) == "down"));
        for k in ["{a}x", "{b}y", "{c}z"] {
            assert_eq!(get(&mut c, k), None, "{k} applied after the cut");
        }
        // The replica continues from the end of what it applied: before the MULTI.
        let mut s = accept_within(&l);
        let (_r, psync) = handshake(&s);
        assert_eq!(
            psync,
            [
                "PSYNC".to_string(),
                id.clone(),
                (before.len() + 1).to_string()
            ]
        );
        let mut out = format!("+CONTINUE {id}\r\n").into_bytes();
        for part in &tx {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(&resp(&["EXEC"]));
        s.write_all(&out).unwrap();
        assert!(wait_for(DEADLINE, || get(&mut c, "{c}z").as_deref() == Some("1")));
        assert_eq!(get(&mut c, "{a}x").as_deref(), Some("1"));
        assert_eq!(get(&mut c, "{b}y").as_deref(), Some("1"));
    }
}

/// Commands of the master's stream that fail here (one shardis lacks, a wrong arity, a
/// wrong type) are what Redis calls unexpected error replies: counted in INFO stats, the
/// rest of the stream applied.
#[test]
fn errors_answering_the_master_are_counted() {
    use std::io::Write;
    let rdb: &[u8] = b"REDIS0010\xff\0\0\0\0\0\0\0\0";
    for shards in shard_counts() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let replica = start_replica(shards, port, &[]);
        let mut s = accept_within(&l);
        let (_r, _) = handshake(&s);
        let id = "f".repeat(40);
        let mut out = format!("+FULLRESYNC {id} 0\r\n${}\r\n", rdb.len()).into_bytes();
        out.extend_from_slice(rdb);
        for cmd in [
            &["SET", "k", "v"][..],
            &["JSON.SET", "doc", "$", "{}"],
            &["SET", "lonely"],
            &["LPUSH", "k", "x"],
            &["SET", "done", "1"],
        ] {
            out.extend_from_slice(&resp(cmd));
        }
        s.write_all(&out).unwrap();
        let mut c = connect(replica.port);
        assert!(wait_for(DEADLINE, || get(&mut c, "done").as_deref() == Some("1")));
        assert_eq!(get(&mut c, "k").as_deref(), Some("v"));
        let stats: String = redis::cmd("INFO").arg("stats").query(&mut c).unwrap();
        assert!(
            stats.contains("unexpected_error_replies:3\r\n"),
            "shards {shards}: {stats}"
        );
    }
}
