//! MULTI/EXEC/DISCARD/WATCH/UNWATCH against the real binary, for every shard count in
//! `common::shard_counts()`: exact reply bytes (checked against redis-server 7.0.15), WATCH
//! aborts caused by other clients on other shards, by expiry and by flushes, commands that
//! coordinate several shards inside EXEC, and isolation: concurrent cross-shard transfers
//! never show a reader a half-done transfer.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Connection, Value};
use shardis::shard::route::shard_of;

// ----- raw RESP helpers ------------------------------------------------------------------------

struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn new(s: &common::Server) -> Raw {
        let t = s.raw();
        let w = t.try_clone().unwrap();
        Raw {
            r: BufReader::new(t),
            w,
        }
    }

    /// Sends one command, returns its whole reply's bytes.
    fn cmd(&mut self, args: &[&str]) -> String {
        self.send(args);
        self.reply()
    }

    fn send(&mut self, args: &[&str]) {
        self.w.write_all(&encode(args)).unwrap();
    }

    fn reply(&mut self) -> String {
        let mut out = Vec::new();
        read_one(&mut self.r, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{}\r\n", a.len(), a).as_bytes());
    }
    out
}

fn read_one(r: &mut BufReader<TcpStream>, out: &mut Vec<u8>) {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).unwrap();
    assert!(line.ends_with(b"\r\n"), "truncated reply: {line:?}");
    out.extend_from_slice(&line);
    let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match line[0] {
        b'$' | b'=' if n >= 0 => {
            let mut body = vec![0u8; n as usize + 2];
            r.read_exact(&mut body).unwrap();
            out.extend_from_slice(&body);
        }
        b'*' | b'~' => (0..n.max(0)).for_each(|_| read_one(r, out)),
        b'%' => (0..2 * n.max(0)).for_each(|_| read_one(r, out)),
        _ => {}
    }
}

/// A key whose owner is `shard` of `n` (any key when `n` is 1).
fn key_on(prefix: &str, shard: usize, n: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| shard_of(k.as_bytes(), n) == shard % n.max(1))
        .unwrap()
}

fn exec(c: &mut Connection) -> Value {
    redis::cmd("EXEC").query(c).unwrap()
}

fn get(c: &mut Connection, k: &str) -> Option<String> {
    redis::cmd("GET").arg(k).query(c).unwrap()
}

fn set(c: &mut Connection, k: &str, v: &str) {
    let _: () = redis::cmd("SET").arg(k).arg(v).query(c).unwrap();
}

// ----- replies -----------------------------------------------------------------------------

#[test]
fn queued_replies_and_exec_results() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut r = Raw::new(&s);
        // a, b, c, d sit on four different shards with --shards 4.
        assert_eq!(r.cmd(&["MULTI"]), "+OK\r\n");
        assert_eq!(r.cmd(&["SET", "a", "1"]), "+QUEUED\r\n");
        assert_eq!(r.cmd(&["INCR", "a"]), "+QUEUED\r\n");
        assert_eq!(
            r.cmd(&["MSET", "b", "x", "c", "y", "d", "z"]),
            "+QUEUED\r\n"
        );
        assert_eq!(r.cmd(&["MGET", "a", "b", "c", "d", "nokey"]), "+QUEUED\r\n");
        assert_eq!(r.cmd(&["PING"]), "+QUEUED\r\n");
        assert_eq!(r.cmd(&["DEL", "b", "c", "nokey"]), "+QUEUED\r\n");
        assert_eq!(r.cmd(&["EXISTS", "a", "b", "c", "d"]), "+QUEUED\r\n");
        assert_eq!(
            r.cmd(&["EXEC"]),
            "*7\r\n+OK\r\n:2\r\n+OK\r\n*5\r\n$1\r\n2\r\n$1\r\nx\r\n$1\r\ny\r\n$1\r\nz\r\n$-1\r\n\
             +PONG\r\n:2\r\n:2\r\n",
            "shards={n}"
        );
        assert_eq!(r.cmd(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
        assert_eq!(r.cmd(&["DISCARD"]), "-ERR DISCARD without MULTI\r\n");
        // Empty transaction.
        assert_eq!(r.cmd(&["MULTI"]), "+OK\r\n");
        assert_eq!(r.cmd(&["EXEC"]), "*0\r\n");
        // Runtime errors are per-command replies; the rest still runs.
        assert_eq!(r.cmd(&["MULTI"]), "+OK\r\n");
        r.cmd(&["SET", "s", "text"]);
        r.cmd(&["INCR", "s"]);
        r.cmd(&["RENAME", "nokey", "d"]);
        r.cmd(&["SET", "t", "after"]);
        assert_eq!(
            r.cmd(&["EXEC"]),
            "*4\r\n+OK\r\n-ERR value is not an integer or out of range\r\n-ERR no such key\r\n+OK\r\n"
        );
        assert_eq!(r.cmd(&["GET", "t"]), "$5\r\nafter\r\n");
    }
}

#[test]
fn queuing_errors_abort_and_nesting_errors_do_not() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut r = Raw::new(&s);
        assert_eq!(r.cmd(&["MULTI"]), "+OK\r\n");
        assert_eq!(r.cmd(&["MULTI"]), "-ERR MULTI calls can not be nested\r\n");
        assert_eq!(
            r.cmd(&["WATCH", "a"]),
            "-ERR WATCH inside MULTI is not allowed\r\n"
        );
        assert_eq!(r.cmd(&["SET", "a", "1"]), "+QUEUED\r\n");
        assert_eq!(
            r.cmd(&["EXEC"]),
            "*1\r\n+OK\r\n",
            "nesting errors keep it clean"
        );

        assert_eq!(r.cmd(&["MULTI"]), "+OK\r\n");
        assert_eq!(r.cmd(&["SET", "b", "1"]), "+QUEUED\r\n");
        assert_eq!(
            r.cmd(&["NOSUCH", "x", "y"]),
            "-ERR unknown command 'NOSUCH', with args beginning with: 'x' 'y' \r\n"
        );
        assert_eq!(
            r.cmd(&["EXEC"]),
            "-EXECABORT Transaction discarded because of previous errors.\r\n"
        );
        assert_eq!(r.cmd(&["GET", "b"]), "$-1\r\n", "nothing ran");

        assert_eq!(r.cmd(&["MULTI"]), "+OK\r\n");
        assert_eq!(
            r.cmd(&["GET"]),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(r.cmd(&["SET", "b", "1"]), "+QUEUED\r\n");
        assert_eq!(
            r.cmd(&["EXEC"]),
            "-EXECABORT Transaction discarded because of previous errors.\r\n"
        );
        assert_eq!(r.cmd(&["EXEC"]), "-ERR EXEC without MULTI\r\n");

        // EXEC itself rejected: the transaction ends with the reason.
        assert_eq!(r.cmd(&["MULTI"]), "+OK\r\n");
        r.cmd(&["SET", "b", "1"]);
        assert_eq!(
            r.cmd(&["EXEC", "now"]),
            "-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n"
        );
        assert_eq!(r.cmd(&["SET", "c", "1"]), "+OK\r\n", "not queued any more");
        assert_eq!(r.cmd(&["GET", "b"]), "$-1\r\n");

        // DISCARD with arguments is rejected (and flags), plain DISCARD drops the queue.
        assert_eq!(r.cmd(&["MULTI"]), "+OK\r\n");
        r.cmd(&["SET", "b", "1"]);
        assert_eq!(
            r.cmd(&["DISCARD", "x"]),
            "-ERR wrong number of arguments for 'discard' command\r\n"
        );
        assert_eq!(r.cmd(&["DISCARD"]), "+OK\r\n");
        assert_eq!(r.cmd(&["GET", "b"]), "$-1\r\n");
        assert_eq!(
            r.cmd(&["WATCH"]),
            "-ERR wrong number of arguments for 'watch' command\r\n"
        );
        assert_eq!(r.cmd(&["UNWATCH"]), "+OK\r\n");
        // CLIENT LIST shows the MULTI state.
        r.cmd(&["MULTI"]);
        r.cmd(&["PING"]);
        r.cmd(&["PING"]);
        r.cmd(&["DISCARD"]);
        r.cmd(&["MULTI"]);
        r.cmd(&["PING"]);
        let mut other = Raw::new(&s);
        let list = other.cmd(&["CLIENT", "LIST"]);
        assert!(
            list.contains(" flags=x db=0 ") && list.contains(" multi=1 "),
            "{list}"
        );
        assert_eq!(r.cmd(&["EXEC"]), "*1\r\n+PONG\r\n");
    }
}

#[test]
fn select_hello_and_reset_inside_multi() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut r = Raw::new(&s);
        r.cmd(&["MULTI"]);
        r.cmd(&["SELECT", "2"]);
        r.cmd(&["SET", "in2", "v"]);
        r.cmd(&["SELECT", "99"]);
        r.cmd(&["GET", "in2"]);
        assert_eq!(
            r.cmd(&["EXEC"]),
            "*4\r\n+OK\r\n+OK\r\n-ERR DB index is out of range\r\n$1\r\nv\r\n"
        );
        assert_eq!(
            r.cmd(&["GET", "in2"]),
            "$1\r\nv\r\n",
            "SELECT stays in effect"
        );
        r.cmd(&["SELECT", "0"]);
        assert_eq!(r.cmd(&["GET", "in2"]), "$-1\r\n");

        // Replies before a queued HELLO 3 keep RESP2, the ones after use RESP3.
        r.cmd(&["MULTI"]);
        r.cmd(&["GET", "nokey"]);
        r.cmd(&["HELLO", "3"]);
        r.cmd(&["GET", "nokey"]);
        let out = r.cmd(&["EXEC"]);
        assert!(out.starts_with("*3\r\n$-1\r\n%7\r\n"), "{out}");
        assert!(out.ends_with("*0\r\n_\r\n"), "{out}");
        r.cmd(&["HELLO", "2"]);

        r.cmd(&["MULTI"]);
        r.cmd(&["SET", "gone", "1"]);
        assert_eq!(r.cmd(&["RESET"]), "+RESET\r\n");
        assert_eq!(r.cmd(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
        assert_eq!(r.cmd(&["GET", "gone"]), "$-1\r\n");
    }
}

#[test]
fn server_and_connection_commands_inside_exec() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        let mut victim = s.client();
        let victim_id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut victim).unwrap();
        for k in ["a", "b", "c", "d"] {
            set(&mut c, k, k);
        }
        let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
        for q in [
            vec!["DBSIZE"],
            vec!["RENAME", "a", "moved"],
            vec!["MSETNX", "b", "1", "new", "2"],
            vec!["MSETNX", "n1", "1", "n2", "2", "n3", "3"],
            vec!["SWAPDB", "0", "1"],
            vec!["DBSIZE"],
            vec!["CLIENT", "KILL", "ID", &victim_id.to_string()],
            vec!["CLIENT", "SETNAME", "txclient"],
            vec!["CONFIG", "GET", "databases"],
            vec!["SELECT", "1"],
            vec!["DBSIZE"],
            vec!["FLUSHDB"],
            vec!["DBSIZE"],
        ] {
            let r: String = redis::cmd(q[0]).arg(&q[1..]).query(&mut c).unwrap();
            assert_eq!(r, "QUEUED");
        }
        let v = exec(&mut c);
        let expected = Value::Array(vec![
            Value::Int(4),
            Value::Okay,
            Value::Int(0),
            Value::Int(1),
            Value::Okay,
            Value::Int(0),
            Value::Int(1),
            Value::Okay,
            Value::Array(vec![
                Value::BulkString(b"databases".to_vec()),
                Value::BulkString(b"16".to_vec()),
            ]),
            Value::Okay,
            Value::Int(7),
            Value::Okay,
            Value::Int(0),
        ]);
        assert_eq!(v, expected, "shards={n}");
        let name: Option<String> = redis::cmd("CLIENT").arg("GETNAME").query(&mut c).unwrap();
        assert_eq!(name.as_deref(), Some("txclient"));
        assert!(
            redis::cmd("PING").query::<String>(&mut victim).is_err(),
            "CLIENT KILL inside EXEC closed the victim"
        );
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, 0, "still in db 1 (SELECT inside EXEC), flushed there");
        let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
        assert_eq!(
            get(&mut c, "moved"),
            None,
            "db 0 is the empty one swapped in"
        );
    }
}

// ----- WATCH -------------------------------------------------------------------------------

#[test]
fn watch_aborts_when_another_client_writes_on_any_shard() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        let mut other = s.client();
        for shard in 0..n {
            let k = key_on("w", shard, n);
            let guard = key_on("g", shard + 1, n);
            set(&mut c, &k, "0");
            let _: () = redis::cmd("WATCH").arg(&k).query(&mut c).unwrap();
            // Not modifications: reads, a failed SETNX, DEL/EXPIRE of missing keys.
            let _: Option<String> = redis::cmd("GET").arg(&k).query(&mut other).unwrap();
            let _: i64 = redis::cmd("SETNX")
                .arg(&k)
                .arg(1)
                .query(&mut other)
                .unwrap();
            let _: i64 = redis::cmd("DEL").arg("missing").query(&mut other).unwrap();
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("SET")
                .arg(&guard)
                .arg("ran")
                .query(&mut c)
                .unwrap();
            assert_eq!(
                exec(&mut c),
                Value::Array(vec![Value::Okay]),
                "shard {shard}"
            );

            let _: () = redis::cmd("WATCH").arg(&k).query(&mut c).unwrap();
            let _: i64 = redis::cmd("INCR").arg(&k).query(&mut other).unwrap();
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("SET")
                .arg(&guard)
                .arg("second")
                .query(&mut c)
                .unwrap();
            assert_eq!(exec(&mut c), Value::Nil, "shard {shard}");
            assert_eq!(get(&mut c, &guard).as_deref(), Some("ran"), "nothing ran");

            // Multi-key writes across shards touch watched keys too.
            let _: () = redis::cmd("WATCH").arg(&k).arg("x").query(&mut c).unwrap();
            let _: i64 = redis::cmd("DEL")
                .arg("a")
                .arg("b")
                .arg("c")
                .arg(&k)
                .query(&mut other)
                .unwrap();
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("PING").query(&mut c).unwrap();
            assert_eq!(exec(&mut c), Value::Nil);

            // UNWATCH forgets: a later write no longer aborts.
            let _: () = redis::cmd("WATCH").arg(&k).query(&mut c).unwrap();
            let _: () = redis::cmd("UNWATCH").query(&mut c).unwrap();
            set(&mut other, &k, "1");
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("PING").query(&mut c).unwrap();
            assert_ne!(exec(&mut c), Value::Nil);

            // DISCARD forgets too, and EXEC only checks once.
            let _: () = redis::cmd("WATCH").arg(&k).query(&mut c).unwrap();
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("DISCARD").query(&mut c).unwrap();
            set(&mut other, &k, "2");
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("PING").query(&mut c).unwrap();
            assert_ne!(exec(&mut c), Value::Nil);

            // Cross-shard RENAME onto a watched key, and MSET over it.
            let _: () = redis::cmd("WATCH").arg(&k).query(&mut c).unwrap();
            set(&mut other, "src", "v");
            let _: () = redis::cmd("RENAME")
                .arg("src")
                .arg(&k)
                .query(&mut other)
                .unwrap();
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("PING").query(&mut c).unwrap();
            assert_eq!(exec(&mut c), Value::Nil);
            let _: () = redis::cmd("WATCH").arg(&k).query(&mut c).unwrap();
            let _: () = redis::cmd("MSET")
                .arg("a")
                .arg(1)
                .arg(&k)
                .arg(2)
                .arg("d")
                .arg(3)
                .query(&mut other)
                .unwrap();
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("PING").query(&mut c).unwrap();
            assert_eq!(exec(&mut c), Value::Nil);
        }
    }
}

#[test]
fn watch_sees_the_clients_own_writes_and_resp3_null() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut r = Raw::new(&s);
        assert_eq!(r.cmd(&["WATCH", "a", "b", "c", "d"]), "+OK\r\n");
        assert_eq!(r.cmd(&["SET", "c", "mine"]), "+OK\r\n");
        r.cmd(&["MULTI"]);
        r.cmd(&["GET", "c"]);
        assert_eq!(r.cmd(&["EXEC"]), "*-1\r\n");
        r.cmd(&["HELLO", "3"]);
        r.cmd(&["WATCH", "d"]);
        r.cmd(&["SET", "d", "1"]);
        r.cmd(&["MULTI"]);
        assert_eq!(r.cmd(&["EXEC"]), "_\r\n");
        // Watching a key twice, then one write: still aborted.
        r.cmd(&["WATCH", "a"]);
        r.cmd(&["WATCH", "a"]);
        r.cmd(&["DEL", "c"]);
        r.cmd(&["SET", "a", "x"]);
        r.cmd(&["MULTI"]);
        assert_eq!(r.cmd(&["EXEC"]), "_\r\n");
    }
}

#[test]
fn watch_and_expiry() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        for shard in 0..n {
            let k = key_on("e", shard, n);
            // Live and volatile at WATCH, expired by EXEC: aborted.
            let _: () = redis::cmd("SET")
                .arg(&k)
                .arg("v")
                .arg("PX")
                .arg(150)
                .query(&mut c)
                .unwrap();
            let _: () = redis::cmd("WATCH").arg(&k).query(&mut c).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("PING").query(&mut c).unwrap();
            assert_eq!(exec(&mut c), Value::Nil, "shard {shard}");
            // Already expired when watched: its removal is no change.
            let _: () = redis::cmd("SET")
                .arg(&k)
                .arg("v")
                .arg("PX")
                .arg(50)
                .query(&mut c)
                .unwrap();
            std::thread::sleep(Duration::from_millis(150));
            let _: () = redis::cmd("WATCH").arg(&k).query(&mut c).unwrap();
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("PING").query(&mut c).unwrap();
            assert_eq!(
                exec(&mut c),
                Value::Array(vec![Value::SimpleString("PONG".into())])
            );
            // A TTL far away does not abort.
            let _: () = redis::cmd("SET")
                .arg(&k)
                .arg("v")
                .arg("EX")
                .arg(100)
                .query(&mut c)
                .unwrap();
            let _: () = redis::cmd("WATCH").arg(&k).query(&mut c).unwrap();
            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
            let _: () = redis::cmd("GET").arg(&k).query(&mut c).unwrap();
            assert_eq!(
                exec(&mut c),
                Value::Array(vec![Value::BulkString(b"v".to_vec())])
            );
        }
    }
}

#[test]
fn watch_and_flushes() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        let mut other = s.client();
        let run = |c: &mut Connection| {
            let _: () = redis::cmd("MULTI").query(c).unwrap();
            let _: () = redis::cmd("PING").query(c).unwrap();
            exec(c)
        };
        set(&mut c, "a", "1");
        let _: () = redis::cmd("WATCH").arg("a").query(&mut c).unwrap();
        let _: () = redis::cmd("FLUSHALL").query(&mut other).unwrap();
        assert_eq!(run(&mut c), Value::Nil, "FLUSHALL removed a watched key");

        let _: () = redis::cmd("WATCH").arg("nokey").query(&mut c).unwrap();
        let _: () = redis::cmd("FLUSHALL").query(&mut other).unwrap();
        assert_ne!(
            run(&mut c),
            Value::Nil,
            "flushing a missing key changes nothing"
        );

        set(&mut c, "b", "1");
        let _: () = redis::cmd("WATCH").arg("b").query(&mut c).unwrap();
        let _: () = redis::cmd("SELECT").arg(3).query(&mut other).unwrap();
        let _: () = redis::cmd("FLUSHDB").query(&mut other).unwrap();
        assert_ne!(run(&mut c), Value::Nil, "another database was flushed");
        let _: () = redis::cmd("WATCH").arg("b").query(&mut c).unwrap();
        let _: () = redis::cmd("SELECT").arg(0).query(&mut other).unwrap();
        let _: () = redis::cmd("FLUSHDB").query(&mut other).unwrap();
        assert_eq!(run(&mut c), Value::Nil);

        // SWAPDB: the watched key exists in the database swapped in.
        let _: () = redis::cmd("SELECT").arg(5).query(&mut other).unwrap();
        set(&mut other, "d", "in5");
        let _: () = redis::cmd("WATCH").arg("d").query(&mut c).unwrap();
        let _: () = redis::cmd("SWAPDB")
            .arg(0)
            .arg(5)
            .query(&mut other)
            .unwrap();
        assert_eq!(run(&mut c), Value::Nil);
        assert_eq!(get(&mut c, "d").as_deref(), Some("in5"));
        let _: () = redis::cmd("WATCH").arg("zz").query(&mut c).unwrap();
        let _: () = redis::cmd("SWAPDB")
            .arg(0)
            .arg(5)
            .query(&mut other)
            .unwrap();
        assert_ne!(run(&mut c), Value::Nil, "missing in both databases");
    }
}

/// Optimistic increments (WATCH, GET, MULTI, SET, EXEC, retry on abort) from many clients:
/// no increment is lost, so WATCH caught every concurrent write.
#[test]
fn watch_cas_loses_no_increment() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let url = s.url();
        let threads = 6;
        let per = 60;
        let aborted = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let url = url.clone();
                let aborted = aborted.clone();
                let key = key_on("counter", t % 2, n);
                std::thread::spawn(move || {
                    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                    for _ in 0..per {
                        loop {
                            let _: () = redis::cmd("WATCH").arg(&key).query(&mut c).unwrap();
                            let v: Option<i64> = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
                            let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
                            let _: () = redis::cmd("SET")
                                .arg(&key)
                                .arg(v.unwrap_or(0) + 1)
                                .query(&mut c)
                                .unwrap();
                            match redis::cmd("EXEC").query::<Value>(&mut c).unwrap() {
                                Value::Nil => {
                                    aborted.fetch_add(1, Ordering::Relaxed);
                                }
                                _ => break,
                            }
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut c = s.client();
        let a: i64 = redis::cmd("GET")
            .arg(key_on("counter", 0, n))
            .query(&mut c)
            .unwrap();
        let b: i64 = if n > 1 {
            redis::cmd("GET")
                .arg(key_on("counter", 1, n))
                .query(&mut c)
                .unwrap()
        } else {
            0
        };
        assert_eq!(a + b, (threads * per) as i64, "shards={n}");
        eprintln!(
            "shards={n}: {} aborted attempts",
            aborted.load(Ordering::Relaxed)
        );
    }
}

// ----- isolation -----------------------------------------------------------------------------

/// Transfers between keys on different shards (MULTI, DECRBY, INCRBY, EXEC) run while
/// readers take MGET snapshots and MULTI/GET/GET/EXEC snapshots: every snapshot sums to the
/// invariant total, so no reader ever sees a transfer half done.
#[test]
fn isolation_of_cross_shard_transfers() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let keys: Vec<String> = (0..4).map(|i| key_on(&format!("acct{i}_"), i, n)).collect();
        if n >= 4 {
            let owners: std::collections::HashSet<usize> =
                keys.iter().map(|k| shard_of(k.as_bytes(), 4)).collect();
            assert_eq!(owners.len(), 4, "one account per shard");
        }
        let total: i64 = 4 * 1000;
        let mut c = s.client();
        for k in &keys {
            set(&mut c, k, "1000");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let transfers = Arc::new(AtomicU64::new(0));
        let snapshots = Arc::new(AtomicU64::new(0));
        let url = s.url();
        let mut handles = Vec::new();
        for t in 0..3 {
            let (url, keys, stop, transfers) =
                (url.clone(), keys.clone(), stop.clone(), transfers.clone());
            handles.push(std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    let from = &keys[i % 4];
                    let to = &keys[(i * 7 + 1 + t) % 4];
                    i += 1;
                    if from == to {
                        continue;
                    }
                    let amount = (i % 13) as i64 + 1;
                    let (_, _): (i64, i64) = redis::pipe()
                        .atomic()
                        .cmd("DECRBY")
                        .arg(from)
                        .arg(amount)
                        .cmd("INCRBY")
                        .arg(to)
                        .arg(amount)
                        .query(&mut c)
                        .unwrap();
                    transfers.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        let mut readers = Vec::new();
        for r in 0..2 {
            let (url, keys, stop, snapshots) =
                (url.clone(), keys.clone(), stop.clone(), snapshots.clone());
            readers.push(std::thread::spawn(move || {
                let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut bad = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let vals: Vec<i64> = if r == 0 {
                        redis::cmd("MGET").arg(&keys).query(&mut c).unwrap()
                    } else {
                        let mut p = redis::pipe();
                        p.atomic();
                        for k in &keys {
                            p.cmd("GET").arg(k);
                        }
                        p.query(&mut c).unwrap()
                    };
                    if vals.iter().sum::<i64>() != total {
                        bad.push(vals);
                    }
                    snapshots.fetch_add(1, Ordering::Relaxed);
                }
                bad
            }));
        }
        std::thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        let mut bad = Vec::new();
        for h in readers {
            bad.extend(h.join().unwrap());
        }
        let vals: Vec<i64> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        assert_eq!(vals.iter().sum::<i64>(), total, "final state");
        let (t, r) = (
            transfers.load(Ordering::Relaxed),
            snapshots.load(Ordering::Relaxed),
        );
        assert!(
            t > 50 && r > 50,
            "too little work: {t} transfers, {r} snapshots"
        );
        assert!(bad.is_empty(), "shards={n}: torn snapshots {bad:?}");
    }
}

// ----- connections --------------------------------------------------------------------------

#[test]
fn closing_drops_queue_and_a_running_exec_completes() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        {
            let mut r = Raw::new(&s);
            r.cmd(&["WATCH", "a", "b"]);
            r.cmd(&["MULTI"]);
            assert_eq!(r.cmd(&["SET", "queued", "1"]), "+QUEUED\r\n");
        }
        // A transaction pipelined with its EXEC, the socket closed right after: EXEC
        // runs all of it (or, if the close won the race, none of it).
        let keys: Vec<String> = (0..40).map(|i| format!("pipe{i}")).collect();
        {
            let mut t = s.raw();
            let mut req = encode(&["MULTI"]);
            for k in &keys {
                req.extend(encode(&["SET", k, "v"]));
            }
            req.extend(encode(&["MSET", "x1", "1", "x2", "2", "x3", "3"]));
            req.extend(encode(&["EXEC"]));
            t.write_all(&req).unwrap();
            t.shutdown(std::net::Shutdown::Both).ok();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut count = 0;
        while Instant::now() < deadline {
            let set: i64 = redis::cmd("EXISTS").arg(&keys).query(&mut c).unwrap();
            count = set;
            if set == keys.len() as i64 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            count == 0 || count == keys.len() as i64,
            "partial transaction: {count}"
        );
        assert_eq!(
            get(&mut c, "queued"),
            None,
            "a closed client's queue never runs"
        );
        let pong: String = redis::cmd("PING").query(&mut c).unwrap();
        assert_eq!(pong, "PONG");
        // The closed client's watches are gone: writes and other transactions still work.
        set(&mut c, "a", "1");
        let _: () = redis::cmd("WATCH").arg("a").query(&mut c).unwrap();
        let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
        let _: () = redis::cmd("SET").arg("b").arg(2).query(&mut c).unwrap();
        assert_eq!(exec(&mut c), Value::Array(vec![Value::Okay]));
    }
}

/// Transactions that lock a few shards, transactions that lock all of them (DBSIZE, KEYS,
/// FLUSHDB inside), WATCH, and plain cross-shard atomic commands (MSET, MGET, RENAME), all at
/// once: nothing deadlocks, every client keeps getting answers, and the server stays up.
#[test]
fn mixed_load_never_deadlocks() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let (url, stop, ops) = (s.url(), stop.clone(), ops.clone());
                std::thread::spawn(move || {
                    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let k = |j: u64| format!("m{}", (i * 31 + j * 7 + t) % 24);
                        let r: redis::RedisResult<Value> = match (t + i) % 6 {
                            0 => redis::pipe()
                                .atomic()
                                .cmd("MSET")
                                .arg(k(1))
                                .arg(i)
                                .arg(k(2))
                                .arg(i)
                                .cmd("MGET")
                                .arg(k(3))
                                .arg(k(4))
                                .cmd("DEL")
                                .arg(k(5))
                                .arg(k(6))
                                .query(&mut c),
                            1 => redis::pipe()
                                .atomic()
                                .cmd("DBSIZE")
                                .cmd("KEYS")
                                .arg("m1*")
                                .cmd("INCR")
                                .arg(k(1))
                                .query(&mut c),
                            2 => redis::cmd("MSET")
                                .arg(k(1))
                                .arg(1)
                                .arg(k(2))
                                .arg(2)
                                .arg(k(3))
                                .arg(3)
                                .query(&mut c),
                            3 => redis::cmd("RENAME").arg(k(1)).arg(k(2)).query(&mut c),
                            4 => {
                                let _: () = redis::cmd("WATCH")
                                    .arg(k(1))
                                    .arg(k(2))
                                    .query(&mut c)
                                    .unwrap();
                                redis::pipe()
                                    .atomic()
                                    .cmd("SET")
                                    .arg(k(3))
                                    .arg(i)
                                    .cmd("GET")
                                    .arg(k(1))
                                    .query(&mut c)
                            }
                            _ if i.is_multiple_of(50) => redis::pipe()
                                .atomic()
                                .cmd("FLUSHDB")
                                .cmd("MGET")
                                .arg(k(1))
                                .arg(k(9))
                                .query(&mut c),
                            _ => redis::cmd("MGET")
                                .arg(k(1))
                                .arg(k(2))
                                .arg(k(3))
                                .query(&mut c),
                        };
                        match r {
                            Ok(_) => {}
                            // RENAME of a missing key.
                            Err(e) if e.code() == Some("ERR") => {}
                            Err(e) => panic!("client {t}: {e}"),
                        }
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        let mut c = s.client();
        let pong: String = redis::cmd("PING").query(&mut c).unwrap();
        assert_eq!(pong, "PONG");
        let done = ops.load(Ordering::Relaxed);
        assert!(done > 100, "shards={n}: only {done} operations");
    }
}

/// Celery's result backend: MULTI / SETEX / PUBLISH / EXEC for every task result. PUBLISH
/// inside EXEC froze a multi-shard server (EXEC never answered and every shard stayed
/// locked). The subscribers sit on every shard; every EXEC answers, every message arrives,
/// and the shards stay free.
#[test]
fn publish_inside_exec_answers_and_delivers() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut sub_conns: Vec<Connection> = (0..8).map(|_| s.client()).collect();
        let mut subs: Vec<_> = sub_conns.iter_mut().map(|c| c.as_pubsub()).collect();
        for ps in subs.iter_mut() {
            ps.subscribe("celery-task-meta").unwrap();
            ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let mut c = s.client();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        for i in 0..20 {
            let key = format!("celery-task-meta-{i}");
            let (ok, receivers): (String, i64) = redis::pipe()
                .atomic()
                .cmd("SETEX")
                .arg(&key)
                .arg(86400)
                .arg("{\"status\": \"SUCCESS\"}")
                .cmd("PUBLISH")
                .arg("celery-task-meta")
                .arg(&key)
                .query(&mut c)
                .unwrap_or_else(|e| panic!("shards={n}: EXEC {i}: {e}"));
            assert_eq!((ok.as_str(), receivers), ("OK", 8), "shards={n}");
            for ps in subs.iter_mut() {
                let m = ps.get_message().unwrap();
                assert_eq!(m.get_payload::<String>().unwrap(), key, "shards={n}");
            }
        }
        // The exact exchange from the report, on a fresh connection.
        let mut raw = Raw::new(&s);
        raw.send(&["MULTI"]);
        raw.send(&["PUBLISH", "ch", "m"]);
        raw.send(&["EXEC"]);
        assert_eq!(raw.reply(), "+OK\r\n");
        assert_eq!(raw.reply(), "+QUEUED\r\n");
        assert_eq!(raw.reply(), "*1\r\n:0\r\n");
        // Every shard still serves keyspace commands.
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, 20, "shards={n}");
    }
}

/// MOVE changes its key in both databases: a client WATCHing the key in the target
/// database sees its EXEC aborted, as one watching the source does.
#[test]
fn move_touches_watchers_in_both_databases() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        for (watch_db, mover_db) in [(1, 0), (0, 0)] {
            let mut w = s.client();
            let mut m = s.client();
            let _: () = redis::cmd("SELECT").arg(mover_db).query(&mut m).unwrap();
            let _: () = redis::cmd("SET").arg("mv").arg("x").query(&mut m).unwrap();
            let _: () = redis::cmd("SELECT").arg(watch_db).query(&mut w).unwrap();
            let _: () = redis::cmd("WATCH").arg("mv").query(&mut w).unwrap();
            let moved: i64 = redis::cmd("MOVE").arg("mv").arg(1).query(&mut m).unwrap();
            assert_eq!(moved, 1, "shards={n}");
            let r: Option<Vec<String>> = redis::pipe().atomic().cmd("PING").query(&mut w).unwrap();
            assert_eq!(r, None, "shards={n}: watching db {watch_db}: EXEC ran");
            let _: () = redis::cmd("SELECT").arg(1).query(&mut m).unwrap();
            let _: () = redis::cmd("DEL").arg("mv").query(&mut m).unwrap();
        }
    }
}

/// SORT reads its key and writes only its STORE destination: a WATCH on the sorted key
/// survives a plain SORT, a WATCH on the destination does not, also when the destination
/// is on another shard.
#[test]
fn sort_signals_only_its_destination() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut a = s.client();
        let mut b = s.client();
        let _: () = redis::cmd("RPUSH")
            .arg("{t}l")
            .arg(&[3, 1, 2])
            .query(&mut a)
            .unwrap();
        let _: () = redis::cmd("WATCH").arg("{t}l").query(&mut a).unwrap();
        let sorted: Vec<i64> = redis::cmd("SORT").arg("{t}l").query(&mut b).unwrap();
        assert_eq!(sorted, vec![1, 2, 3]);
        let r: Option<(String,)> = redis::pipe().atomic().cmd("PING").query(&mut a).unwrap();
        assert!(
            r.is_some(),
            "shards={n}: a plain SORT aborted a WATCH on its key"
        );
        let _: () = redis::cmd("WATCH").arg("{t}dst").query(&mut a).unwrap();
        let stored: i64 = redis::cmd("SORT")
            .arg("{t}l")
            .arg("DESC")
            .arg("STORE")
            .arg("{t}dst")
            .query(&mut b)
            .unwrap();
        assert_eq!(stored, 3);
        let r: Option<(String,)> = redis::pipe().atomic().cmd("PING").query(&mut a).unwrap();
        assert!(
            r.is_none(),
            "shards={n}: SORT STORE did not touch its destination"
        );
        let got: Vec<i64> = redis::cmd("LRANGE")
            .arg("{t}dst")
            .arg(0)
            .arg(-1)
            .query(&mut b)
            .unwrap();
        assert_eq!(got, vec![3, 2, 1]);
        if n > 1 {
            // Some key without the tag lands on another shard.
            let other = (0..64)
                .map(|i| format!("other{i}"))
                .find(|k| shard_of(k.as_bytes(), n) != shard_of(b"{t}l", n))
                .unwrap();
            // A destination on another shard is written there, and its watchers lose.
            let _: () = redis::cmd("WATCH").arg(&other).query(&mut a).unwrap();
            let stored: i64 = redis::cmd("SORT")
                .arg("{t}l")
                .arg("STORE")
                .arg(&other)
                .query(&mut b)
                .unwrap();
            assert_eq!(stored, 3);
            let r: Option<(String,)> = redis::pipe().atomic().cmd("PING").query(&mut a).unwrap();
            assert!(
                r.is_none(),
                "shards={n}: cross-shard STORE did not touch {other}"
            );
            let got: Vec<i64> = redis::cmd("LRANGE")
                .arg(&other)
                .arg(0)
                .arg(-1)
                .query(&mut b)
                .unwrap();
            assert_eq!(got, vec![1, 2, 3]);
        }
    }
}
