//! Blocking pops (BLPOP, BRPOP, BLMOVE, BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP)
//! against the real binary, for every shard count in `common::shard_counts()`: wake-ups by
//! pushes from other connections with keys on other shards, fairness order, timeouts with
//! Redis's null shapes (raw bytes, RESP2 and RESP3), the non-blocking form inside MULTI,
//! CLIENT UNBLOCK, a disconnect while blocked (nothing lost), and a producer/consumer run
//! across shards where every element is delivered exactly once.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use redis::{Connection, Value};
use shardis::shard::route::shard_of;

fn bulk(s: &str) -> Value {
    Value::BulkString(s.as_bytes().to_vec())
}

/// A key named `{prefix}N` owned by `shard` (of `n`).
fn key_on(shard: usize, n: usize, prefix: &str) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| shard_of(k.as_bytes(), n) == shard % n)
        .expect("some key maps to the shard")
}

fn blocked_clients(c: &mut Connection) -> usize {
    let info: String = redis::cmd("INFO").arg("clients").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO has blocked_clients")
}

fn wait_blocked(c: &mut Connection, n: usize) {
    assert!(
        common::wait_for(Duration::from_secs(5), || blocked_clients(c) == n),
        "expected {n} blocked clients, INFO says {}",
        blocked_clients(c)
    );
}

/// Runs a command on a new connection in a thread; the handle yields its reply.
fn spawn_cmd(s: &common::Server, args: Vec<String>) -> thread::JoinHandle<Value> {
    let mut c = s.client();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    thread::spawn(move || {
        let mut cmd = redis::cmd(&args[0]);
        for a in &args[1..] {
            cmd.arg(a);
        }
        cmd.query(&mut c).unwrap()
    })
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn push_on_any_shard_wakes_a_blocked_client() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        // Keys on two different shards (when there are several).
        let (k1, k2) = (key_on(0, n, "q"), key_on(1, n, "r"));
        let h = spawn_cmd(&s, strs(&["BLPOP", &k1, &k2, "0"]));
        wait_blocked(&mut c, 1);
        let _: i64 = redis::cmd("RPUSH")
            .arg(&k2)
            .arg("hello")
            .query(&mut c)
            .unwrap();
        assert_eq!(
            h.join().unwrap(),
            Value::Array(vec![bulk(&k2), bulk("hello")]),
            "shards={n}"
        );
        wait_blocked(&mut c, 0);
        let e: i64 = redis::cmd("EXISTS").arg(&k2).query(&mut c).unwrap();
        assert_eq!(e, 0, "the served element was popped, shards={n}");

        // BRPOP, BZPOPMIN/MAX, BLMPOP and BZMPOP wake the same way.
        let cases: Vec<(Vec<String>, Vec<String>, Value)> = vec![
            (
                strs(&["BRPOP", &k1, "0"]),
                strs(&["RPUSH", &k1, "b"]),
                Value::Array(vec![bulk(&k1), bulk("b")]),
            ),
            (
                strs(&["BZPOPMAX", "zx", &k2, "0"]),
                strs(&["ZADD", &k2, "2", "m2"]),
                Value::Array(vec![bulk(&k2), bulk("m2"), bulk("2")]),
            ),
            (
                strs(&["BZPOPMIN", &k2, "0"]),
                strs(&["ZADD", &k2, "0.5", "m0"]),
                Value::Array(vec![bulk(&k2), bulk("m0"), bulk("0.5")]),
            ),
            (
                strs(&["BLMPOP", "0", "2", "nothing", &k1, "LEFT", "COUNT", "5"]),
                strs(&["RPUSH", &k1, "x", "y"]),
                Value::Array(vec![bulk(&k1), Value::Array(vec![bulk("x"), bulk("y")])]),
            ),
            (
                strs(&["BZMPOP", "0", "1", &k2, "MAX", "COUNT", "9"]),
                strs(&["ZADD", &k2, "7", "m7", "1", "m1"]),
                Value::Array(vec![
                    bulk(&k2),
                    Value::Array(vec![
                        Value::Array(vec![bulk("m7"), bulk("7")]),
                        Value::Array(vec![bulk("m1"), bulk("1")]),
                    ]),
                ]),
            ),
        ];
        for (block, push, want) in cases {
            let h = spawn_cmd(&s, block.clone());
            wait_blocked(&mut c, 1);
            let mut cmd = redis::cmd(&push[0]);
            cmd.arg(&push[1..]);
            let _: Value = cmd.query(&mut c).unwrap();
            assert_eq!(h.join().unwrap(), want, "{block:?} shards={n}");
        }
        wait_blocked(&mut c, 0);
    }
}

#[test]
fn waiters_are_served_in_the_order_they_blocked() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        let k = key_on(n - 1, n, "fair");
        let mut hs = Vec::new();
        for i in 0..3 {
            hs.push(spawn_cmd(&s, strs(&["BLPOP", &k, "0"])));
            wait_blocked(&mut c, i + 1);
        }
        // One push of three: the list is [c, b, a]; the oldest waiter takes the head.
        let _: i64 = redis::cmd("LPUSH")
            .arg(&k)
            .arg(&["a", "b", "c"])
            .query(&mut c)
            .unwrap();
        let got: Vec<Value> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let want: Vec<Value> = ["c", "b", "a"]
            .iter()
            .map(|e| Value::Array(vec![bulk(&k), bulk(e)]))
            .collect();
        assert_eq!(got, want, "shards={n}");
    }
}

#[test]
fn timeouts_answer_redis_null_shapes() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let (k1, k2) = (key_on(0, n, "t"), key_on(1, n, "u"));
        let mut raw = s.raw();
        let cases: Vec<(String, &[u8])> = vec![
            (format!("BLPOP {k1} {k2} 0.1\r\n"), b"*-1\r\n"),
            (format!("BRPOP {k1} 0.05\r\n"), b"*-1\r\n"),
            // A timed-out BLMOVE answers a null array too (as 7.0.15 does).
            (format!("BLMOVE {k1} {k2} LEFT RIGHT 0.05\r\n"), b"*-1\r\n"),
            (format!("BRPOPLPUSH {k1} {k2} 0.05\r\n"), b"*-1\r\n"),
            (format!("BLMPOP 0.05 2 {k1} {k2} LEFT\r\n"), b"*-1\r\n"),
            (format!("BZPOPMIN {k1} {k2} 0.05\r\n"), b"*-1\r\n"),
            (format!("BZMPOP 0.05 1 {k1} MIN\r\n"), b"*-1\r\n"),
        ];
        for (req, want) in &cases {
            let t0 = Instant::now();
            let got = common::roundtrip(&mut raw, req.as_bytes(), want.len());
            assert_eq!(got, want.to_vec(), "{req} shards={n}");
            assert!(t0.elapsed() >= Duration::from_millis(45), "{req} waited");
        }
        // RESP3: the null is `_`.
        let got = common::roundtrip(&mut raw, b"HELLO 3\r\n", 1);
        assert_eq!(got.first(), Some(&b'%'));
        if !got.ends_with(b"*0\r\n") {
            let mut rest = [0u8; 4096];
            std::thread::sleep(Duration::from_millis(100));
            let _ = raw.read(&mut rest);
        }
        for req in [
            format!("BLPOP {k1} 0.05\r\n"),
            format!("BLMOVE {k1} {k2} LEFT LEFT 0.05\r\n"),
        ] {
            let got = common::roundtrip(&mut raw, req.as_bytes(), 3);
            assert_eq!(got, b"_\r\n", "{req} shards={n}");
        }
        // The commands after a blocking one in the same pipeline run once it ends.
        let req = format!("BLPOP {k1} 0.05\r\nPING\r\n");
        let got = common::roundtrip(&mut raw, req.as_bytes(), 10);
        assert_eq!(got, b"_\r\n+PONG\r\n", "shards={n}");
    }
}

#[test]
fn errors_and_immediate_pops_match_redis() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        let (k1, k2) = (key_on(0, n, "e"), key_on(1, n, "f"));
        let err = |args: &[&str], c: &mut Connection| -> String {
            let mut cmd = redis::cmd(args[0]);
            cmd.arg(&args[1..]);
            match cmd.query::<Value>(c) {
                Err(e) => e.to_string(),
                Ok(v) => panic!("expected an error for {args:?}, got {v:?}"),
            }
        };
        assert!(err(&["BLPOP", &k1, "-1"], &mut c).contains("timeout is negative"));
        assert!(
            err(&["BLPOP", &k1, "abc"], &mut c).contains("timeout is not a float or out of range")
        );
        assert!(err(&["BLPOP", &k1, "inf"], &mut c).contains("timeout is negative"));
        assert!(err(&["BLMPOP", "0", "0", &k1, "LEFT"], &mut c)
            .contains("numkeys should be greater than 0"));
        assert!(err(&["BLMOVE", &k1, &k2, "LEFT", "UP", "0"], &mut c).contains("syntax error"));
        let _: () = redis::cmd("SET").arg(&[&k2, "str"]).query(&mut c).unwrap();
        // The first key is empty, the second holds a string: WRONGTYPE, in key order.
        assert!(err(&["BLPOP", &k1, &k2, "0"], &mut c).contains("WRONGTYPE"));
        let _: i64 = redis::cmd("RPUSH").arg(&k1).arg("v").query(&mut c).unwrap();
        // The first key has data: the string after it does not matter.
        let v: Value = redis::cmd("BLPOP")
            .arg(&[&k1, &k2, "0"])
            .query(&mut c)
            .unwrap();
        assert_eq!(v, Value::Array(vec![bulk(&k1), bulk("v")]), "shards={n}");
        // BLMOVE to a string: WRONGTYPE and the source keeps its element.
        let _: i64 = redis::cmd("RPUSH").arg(&k1).arg("w").query(&mut c).unwrap();
        assert!(err(&["BLMOVE", &k1, &k2, "LEFT", "LEFT", "0"], &mut c).contains("WRONGTYPE"));
        let l: Vec<String> = redis::cmd("LRANGE")
            .arg(&[&k1, "0", "-1"])
            .query(&mut c)
            .unwrap();
        assert_eq!(l, vec!["w"], "shards={n}");
        // Immediate BLMOVE across shards moves the element.
        let _: () = redis::cmd("DEL").arg(&k2).query(&mut c).unwrap();
        let v: String = redis::cmd("BLMOVE")
            .arg(&[&k1, &k2, "RIGHT", "LEFT", "0"])
            .query(&mut c)
            .unwrap();
        assert_eq!(v, "w");
        let l: Vec<String> = redis::cmd("LRANGE")
            .arg(&[&k2, "0", "-1"])
            .query(&mut c)
            .unwrap();
        assert_eq!(l, vec!["w"], "shards={n}");
        // Keys on several shards with data on both: the first in command order is taken.
        let _: i64 = redis::cmd("RPUSH")
            .arg(&k1)
            .arg("one")
            .query(&mut c)
            .unwrap();
        let v: Value = redis::cmd("BRPOP")
            .arg(&[&k2, &k1, "0"])
            .query(&mut c)
            .unwrap();
        assert_eq!(v, Value::Array(vec![bulk(&k2), bulk("w")]), "shards={n}");
        let v: Value = redis::cmd("BRPOP")
            .arg(&[&k2, &k1, "0"])
            .query(&mut c)
            .unwrap();
        assert_eq!(v, Value::Array(vec![bulk(&k1), bulk("one")]), "shards={n}");
        assert_eq!(blocked_clients(&mut c), 0);
    }
}

#[test]
fn blmove_across_shards_wakes_and_pushes_on_the_destination() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        let (src, dst) = (key_on(0, n, "src"), key_on(n - 1, n, "dst"));
        let _: i64 = redis::cmd("RPUSH")
            .arg(&dst)
            .arg("old")
            .query(&mut c)
            .unwrap();
        let h = spawn_cmd(&s, strs(&["BLMOVE", &src, &dst, "RIGHT", "LEFT", "0"]));
        wait_blocked(&mut c, 1);
        let h2 = spawn_cmd(&s, strs(&["BRPOPLPUSH", &src, &dst, "0"]));
        wait_blocked(&mut c, 2);
        let _: i64 = redis::cmd("RPUSH")
            .arg(&src)
            .arg(&["a", "b"])
            .query(&mut c)
            .unwrap();
        assert_eq!(h.join().unwrap(), bulk("b"), "shards={n}");
        assert_eq!(h2.join().unwrap(), bulk("a"), "shards={n}");
        let l: Vec<String> = redis::cmd("LRANGE")
            .arg(&[&dst, "0", "-1"])
            .query(&mut c)
            .unwrap();
        assert_eq!(l, vec!["a", "b", "old"], "shards={n}");
        let e: i64 = redis::cmd("EXISTS").arg(&src).query(&mut c).unwrap();
        assert_eq!(e, 0, "shards={n}");
        // A client blocked on the destination is woken by the move.
        let h3 = spawn_cmd(&s, strs(&["BLPOP", "nothing", &dst, "0"]));
        let _ = h3.join().unwrap();
        let h4 = spawn_cmd(&s, strs(&["BLPOP", &key_on(1, n, "chain"), "0"]));
        wait_blocked(&mut c, 1);
        let h5 = spawn_cmd(
            &s,
            strs(&["BLMOVE", &src, &key_on(1, n, "chain"), "LEFT", "LEFT", "0"]),
        );
        wait_blocked(&mut c, 2);
        let _: i64 = redis::cmd("RPUSH")
            .arg(&src)
            .arg("hop")
            .query(&mut c)
            .unwrap();
        assert_eq!(h5.join().unwrap(), bulk("hop"), "shards={n}");
        assert_eq!(
            h4.join().unwrap(),
            Value::Array(vec![bulk(&key_on(1, n, "chain")), bulk("hop")]),
            "shards={n}"
        );
    }
}

#[test]
fn multi_exec_does_not_block() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut raw = s.raw();
        let (k1, k2) = (key_on(0, n, "m"), key_on(1, n, "n"));
        let req = format!(
            "MULTI\r\nBLPOP {k1} 0\r\nBLPOP {k1} {k2} 0\r\nRPUSH {k2} x\r\nBRPOP {k1} {k2} 0\r\nEXEC\r\n"
        );
        let want = format!(
            "+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n*4\r\n*-1\r\n*-1\r\n:1\r\n*2\r\n${}\r\n{k2}\r\n$1\r\nx\r\n",
            k2.len()
        );
        let got = common::roundtrip(&mut raw, req.as_bytes(), want.len());
        assert_eq!(String::from_utf8_lossy(&got), want, "shards={n}");
    }
}

#[test]
fn client_unblock_and_disconnect_end_the_wait_without_losing_data() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        let k = key_on(n - 1, n, "u");
        // CLIENT UNBLOCK TIMEOUT / ERROR.
        for (how, want) in [("TIMEOUT", None), ("ERROR", Some("UNBLOCKED"))] {
            let mut b = s.client();
            let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut b).unwrap();
            let h = thread::spawn(move || {
                redis::cmd("BLPOP")
                    .arg(&["nokey", "0"])
                    .query::<Value>(&mut b)
            });
            wait_blocked(&mut c, 1);
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut c).unwrap();
            assert!(
                list.lines()
                    .any(|l| l.starts_with(&format!("id={id} ")) && l.contains("flags=b ")),
                "{list}"
            );
            let r: i64 = redis::cmd("CLIENT")
                .arg(&["UNBLOCK", &id.to_string(), how])
                .query(&mut c)
                .unwrap();
            assert_eq!(r, 1);
            match (h.join().unwrap(), want) {
                (Ok(v), None) => assert_eq!(v, Value::Nil),
                (Err(e), Some(code)) => assert!(e.to_string().contains(code), "{e}"),
                (r, _) => panic!("unexpected {r:?} for {how}"),
            }
            let r: i64 = redis::cmd("CLIENT")
                .arg(&["UNBLOCK", &id.to_string()])
                .query(&mut c)
                .unwrap();
            assert_eq!(r, 0, "not blocked any more");
        }
        // A client that disconnects while blocked is forgotten: a later push stays.
        let mut t = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        t.write_all(format!("BLPOP {k} 0\r\n").as_bytes()).unwrap();
        wait_blocked(&mut c, 1);
        drop(t);
        wait_blocked(&mut c, 0);
        let _: i64 = redis::cmd("RPUSH")
            .arg(&k)
            .arg("kept")
            .query(&mut c)
            .unwrap();
        let l: Vec<String> = redis::cmd("LRANGE")
            .arg(&[&k, "0", "-1"])
            .query(&mut c)
            .unwrap();
        assert_eq!(l, vec!["kept"], "shards={n}");
    }
}

/// Producers push numbered elements on lists spread over the shards while consumers pop
/// them with BLPOP/BRPOP/BLMPOP over several keys with short timeouts: every element
/// arrives exactly once.
#[test]
fn producers_and_consumers_across_shards_deliver_each_element_once() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let keys: Vec<String> = (0..4).map(|i| key_on(i, n, &format!("pc{i}_"))).collect();
        let per_producer = 400;
        let producers = 3;
        let total = per_producer * producers;
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut consumers = Vec::new();
        for ci in 0..4 {
            let mut c = s.client();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let keys = keys.clone();
            let seen = seen.clone();
            consumers.push(thread::spawn(move || loop {
                if seen.lock().unwrap().len() >= total || Instant::now() > deadline {
                    return;
                }
                let mut order = keys.clone();
                order.rotate_left(ci);
                let got: Vec<String> = match ci % 3 {
                    0 | 1 => {
                        let cmd_name = if ci % 3 == 0 { "BLPOP" } else { "BRPOP" };
                        let v: Option<(String, String)> = redis::cmd(cmd_name)
                            .arg(&order)
                            .arg("0.2")
                            .query(&mut c)
                            .unwrap();
                        v.map(|(_, e)| vec![e]).unwrap_or_default()
                    }
                    _ => {
                        let v: Option<(String, Vec<String>)> = redis::cmd("BLMPOP")
                            .arg("0.2")
                            .arg(order.len())
                            .arg(&order)
                            .arg(&["LEFT", "COUNT", "3"])
                            .query(&mut c)
                            .unwrap();
                        v.map(|(_, e)| e).unwrap_or_default()
                    }
                };
                seen.lock().unwrap().extend(got);
            }));
        }
        let mut prods = Vec::new();
        for p in 0..producers {
            let mut c = s.client();
            let keys = keys.clone();
            prods.push(thread::spawn(move || {
                for i in 0..per_producer {
                    let k = &keys[(i + p) % keys.len()];
                    let _: i64 = redis::cmd("RPUSH")
                        .arg(k)
                        .arg(format!("{p}:{i}"))
                        .query(&mut c)
                        .unwrap();
                }
            }));
        }
        for p in prods {
            p.join().unwrap();
        }
        for c in consumers {
            c.join().unwrap();
        }
        let mut got = seen.lock().unwrap().clone();
        let mut c = s.client();
        for k in &keys {
            let rest: Vec<String> = redis::cmd("LRANGE")
                .arg(&[k, "0", "-1"])
                .query(&mut c)
                .unwrap();
            got.extend(rest);
        }
        got.sort();
        let mut want: Vec<String> = (0..producers)
            .flat_map(|p| (0..per_producer).map(move |i| format!("{p}:{i}")))
            .collect();
        want.sort();
        assert_eq!(got.len(), want.len(), "shards={n}: count");
        assert_eq!(got, want, "shards={n}: every element exactly once");
        assert_eq!(blocked_clients(&mut c), 0);
    }
}

#[test]
fn redis_cli_blocks_and_times_out() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let t0 = Instant::now();
        let out = common::cli(s.port, &["BLPOP", "nothing", "0.3"]);
        assert!(t0.elapsed() >= Duration::from_millis(290), "waited");
        assert_eq!(
            out.trim(),
            "",
            "redis-cli prints nothing for a nil array, shards={n}"
        );
        let port = s.port;
        let h = thread::spawn(move || common::cli(port, &["BRPOP", "cliq", "5"]));
        let mut c = s.client();
        wait_blocked(&mut c, 1);
        let _: i64 = redis::cmd("RPUSH")
            .arg("cliq")
            .arg("v1")
            .query(&mut c)
            .unwrap();
        assert_eq!(h.join().unwrap(), "cliq\nv1\n", "shards={n}");
    }
}

/// Chaos, bounded (about 3 s): consumers block on random keys over every shard and hang up
/// at random moments (often while blocked, sometimes just as they are served) while
/// producers push unique elements and transactions move things around. The server must
/// stay up, forget every gone client (INFO blocked_clients back to 0), and never hand an
/// element out twice; what no live client received is either still in a list or was
/// answered to a client that hung up just then (as with Redis).
#[test]
fn clients_hanging_up_while_blocked_never_duplicate_elements() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let keys: Vec<String> = (0..6).map(|i| key_on(i, n, &format!("ch{i}_"))).collect();
        let stop = Instant::now() + Duration::from_millis(2500);
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let mut hs = Vec::new();
        for ci in 0..12u64 {
            let (keys, seen, port) = (keys.clone(), seen.clone(), s.port);
            hs.push(thread::spawn(move || {
                let mut rng = ci.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = move |m: u64| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng % m
                };
                while Instant::now() < stop {
                    let mut c = match redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                        .and_then(|c| c.get_connection())
                    {
                        Ok(c) => c,
                        Err(_) => continue,
                    };
                    c.set_read_timeout(Some(Duration::from_millis(20 + next(60))))
                        .unwrap();
                    for _ in 0..next(8) + 1 {
                        let k1 = &keys[next(6) as usize];
                        let k2 = &keys[next(6) as usize];
                        let r: redis::RedisResult<Option<(String, String)>> =
                            redis::cmd(if next(2) == 0 { "BLPOP" } else { "BRPOP" })
                                .arg(k1)
                                .arg(k2)
                                .arg("0")
                                .query(&mut c);
                        match r {
                            Ok(Some((_, e))) => seen.lock().unwrap().push(e),
                            Ok(None) => {}
                            // The read timed out: hang up while blocked.
                            Err(_) => break,
                        }
                    }
                }
            }));
        }
        let produced = Arc::new(Mutex::new(0usize));
        for p in 0..3usize {
            let (keys, produced) = (keys.clone(), produced.clone());
            let mut c = s.client();
            hs.push(thread::spawn(move || {
                let mut i = 0usize;
                while Instant::now() < stop {
                    let k = &keys[(i * 7 + p) % keys.len()];
                    let _: i64 = redis::cmd("RPUSH")
                        .arg(k)
                        .arg(format!("{p}:{i}"))
                        .query(&mut c)
                        .unwrap();
                    i += 1;
                    if i.is_multiple_of(50) {
                        thread::sleep(Duration::from_millis(5));
                    }
                }
                *produced.lock().unwrap() += i;
            }));
        }
        for h in hs {
            h.join().unwrap();
        }
        let mut c = s.client();
        wait_blocked(&mut c, 0);
        let mut got = seen.lock().unwrap().clone();
        let delivered = got.len();
        for k in &keys {
            let rest: Vec<String> = redis::cmd("LRANGE")
                .arg(&[k, "0", "-1"])
                .query(&mut c)
                .unwrap();
            got.extend(rest);
        }
        let total = got.len();
        got.sort();
        got.dedup();
        assert_eq!(
            got.len(),
            total,
            "shards={n}: an element was handed out twice"
        );
        let produced = *produced.lock().unwrap();
        assert!(
            total <= produced,
            "shards={n}: {total} > {produced} produced"
        );
        assert!(delivered > 0, "shards={n}: consumers received something");
        eprintln!(
            "shards={n}: produced {produced}, delivered {delivered}, left {}, answered to clients that hung up {}",
            total - delivered,
            produced - total
        );
        let pong: String = redis::cmd("PING").query(&mut c).unwrap();
        assert_eq!(pong, "PONG");
    }
}
