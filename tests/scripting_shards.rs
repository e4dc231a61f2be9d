//! Scripts across shards and long scripts (issue 11): declared keys on several shards run
//! under the multi-shard lock (atomic for readers, seen by WATCH), undeclared keys are
//! refused unless allowed, and a script past `busy-reply-threshold` makes the clients that
//! need its shard get `-BUSY` while SCRIPT KILL ends it (with 1 and 4 shards). Also the
//! token bucket with its two keys on different shards under 50 clients, and a BullMQ-style
//! job queue whose scripts touch undeclared keys on every shard.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::resp::{encode_command, Client};
use common::{shard_counts, wait_for, Server};
use shardis::shard::route::shard_of;

const N: usize = 4;

fn args(a: &[&str]) -> Vec<Vec<u8>> {
    a.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// `count` keys named `<prefix><i>`, each on a different shard of `N`.
fn spread_keys(prefix: &str, count: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut used = Vec::new();
    for i in 0.. {
        let k = format!("{prefix}{i}");
        let s = shard_of(k.as_bytes(), N);
        if !used.contains(&s) {
            used.push(s);
            out.push(k);
            if out.len() == count {
                break;
            }
        }
    }
    out
}

/// A key on shard `s` of `N`.
fn key_on(prefix: &str, s: usize) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| shard_of(k.as_bytes(), N) == s)
        .unwrap_or_default()
}

#[test]
fn declared_keys_on_several_shards_run_together() {
    let s = Server::start(N);
    let mut con = s.client();
    let k = spread_keys("k", 4);
    let v: Vec<Option<String>> = redis::cmd("EVAL")
        .arg(
            "for i = 1, 4 do redis.call('set', KEYS[i], ARGV[1] .. i) end \
             return redis.call('mget', KEYS[1], KEYS[2], KEYS[3], KEYS[4], 'nokey')",
        )
        .arg(5)
        .arg(&k[..])
        .arg("nokey")
        .arg("v")
        .query(&mut con)
        .expect("eval across shards");
    assert_eq!(
        v,
        vec![
            Some("v1".into()),
            Some("v2".into()),
            Some("v3".into()),
            Some("v4".into()),
            None
        ]
    );
    // Commands whose keys span shards inside the script: split ones, and the others
    // (RPOPLPUSH, SUNIONSTORE, RENAME) on copies written back to their owners.
    let r: Vec<redis::Value> = redis::cmd("EVAL")
        .arg(
            "redis.call('rpush', KEYS[1], 'a', 'b', 'c') \
             local moved = redis.call('rpoplpush', KEYS[1], KEYS[2]) \
             redis.call('sadd', KEYS[3], 'x', 'y') redis.call('sadd', KEYS[4], 'y', 'z') \
             local n = redis.call('sunionstore', KEYS[3], KEYS[3], KEYS[4]) \
             return {moved, n, redis.call('exists', KEYS[1], KEYS[2], KEYS[3], KEYS[4])}",
        )
        .arg(4)
        .arg(spread_keys("l", 4))
        .query(&mut con)
        .expect("multi-key calls across shards");
    assert_eq!(
        r,
        vec![
            redis::Value::BulkString(b"c".to_vec()),
            redis::Value::Int(3),
            redis::Value::Int(4)
        ]
    );
    let l = spread_keys("l", 4);
    let left: Vec<String> = redis::cmd("LRANGE")
        .arg(&l[0])
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .expect("lrange");
    let right: Vec<String> = redis::cmd("LRANGE")
        .arg(&l[1])
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .expect("lrange");
    assert_eq!(
        (left, right),
        (vec!["a".into(), "b".into()], vec!["c".into()])
    );
    let mut members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&l[2])
        .query(&mut con)
        .expect("smembers");
    members.sort();
    assert_eq!(members, vec!["x", "y", "z"]);
    // RENAME across shards inside a script, then DEL over every shard.
    let (a, b) = (key_on("ra", 0), key_on("rb", 1));
    let n: i64 = redis::cmd("EVAL")
        .arg("redis.call('set', KEYS[1], 'moved') redis.call('rename', KEYS[1], KEYS[2]) return redis.call('del', KEYS[1], KEYS[2], KEYS[3])")
        .arg(3)
        .arg(&a)
        .arg(&b)
        .arg(&k[0])
        .query(&mut con)
        .expect("rename and del");
    assert_eq!(n, 2);
    // A script that writes on two shards and then fails keeps both writes, as Redis.
    let err = redis::cmd("EVAL")
        .arg("redis.call('set', KEYS[1], 'kept') redis.call('set', KEYS[2], 'kept') error('late')")
        .arg(2)
        .arg(&k[1])
        .arg(&k[2])
        .query::<()>(&mut con)
        .expect_err("script error");
    assert!(err.to_string().contains("late"), "{err}");
    let kept: Vec<String> = redis::cmd("MGET")
        .arg(&k[1])
        .arg(&k[2])
        .query(&mut con)
        .expect("mget");
    assert_eq!(kept, vec!["kept", "kept"]);
    // FCALL routes the same way.
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=spread\nredis.register_function('both', function(keys, args) redis.call('set', keys[1], args[1]) redis.call('set', keys[2], args[1]) return redis.call('mget', keys[1], keys[2]) end)")
        .query(&mut con)
        .expect("function load");
    let v: Vec<String> = redis::cmd("FCALL")
        .arg("both")
        .arg(2)
        .arg(&k[2])
        .arg(&k[3])
        .arg("f")
        .query(&mut con)
        .expect("fcall across shards");
    assert_eq!(v, vec!["f", "f"]);
}

#[test]
fn undeclared_keys_are_refused_unless_allowed() {
    let s = Server::start(N);
    let mut con = s.client();
    let declared = key_on("d", 0);
    let other = key_on("u", 2);
    let err = redis::cmd("EVAL")
        .arg("return redis.call('set', ARGV[1], 1)")
        .arg(1)
        .arg(&declared)
        .arg(&other)
        .query::<()>(&mut con)
        .expect_err("undeclared key of another shard");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "Script attempted to access key '{other}' that is not declared"
        )) && text.contains("lua-allow-undeclared-keys"),
        "{text}"
    );
    // The shebang flag: the script holds every shard.
    let v: i64 = redis::cmd("EVAL")
        .arg("#!lua flags=allow-undeclared-keys\nredis.call('set', ARGV[1], 7) return tonumber(redis.call('get', ARGV[1]))")
        .arg(0)
        .arg(&other)
        .query(&mut con)
        .expect("flagged script");
    assert_eq!(v, 7);
    // EVALSHA of that script after SCRIPT LOAD (its flags come from the loaded body).
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("#!lua flags=allow-undeclared-keys\nreturn redis.call('incr', ARGV[1])")
        .query(&mut con)
        .expect("load");
    let v: i64 = redis::cmd("EVALSHA")
        .arg(&sha)
        .arg(1)
        .arg(&declared)
        .arg(&other)
        .query(&mut con)
        .expect("evalsha");
    assert_eq!(v, 8);
    // The setting, for every script.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("lua-allow-undeclared-keys")
        .arg("yes")
        .query(&mut con)
        .expect("config set");
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("lua-allow-undeclared-keys")
        .query(&mut con)
        .expect("config get");
    assert_eq!(got, vec!["lua-allow-undeclared-keys", "yes"]);
    let v: i64 = redis::cmd("EVAL")
        .arg("return redis.call('incr', ARGV[1]) + redis.call('incr', ARGV[2])")
        .arg(0)
        .arg(&other)
        .arg(&declared)
        .query(&mut con)
        .expect("undeclared allowed");
    assert_eq!(v, 9 + 1);
}

#[test]
fn readers_never_see_half_a_cross_shard_script() {
    let s = Server::start(N);
    let k = spread_keys("atom", 2);
    let port = s.port;
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (k, stop) = (k.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection())
                    .expect("connect");
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let v: Vec<Option<i64>> =
                        redis::cmd("MGET").arg(&k).query(&mut con).expect("mget");
                    assert_eq!(v[0], v[1], "a reader saw half of a script's writes");
                    let (a, b): (Option<i64>, Option<i64>) = redis::pipe()
                        .atomic()
                        .get(&k[0])
                        .get(&k[1])
                        .query(&mut con)
                        .expect("exec");
                    assert_eq!(a, b, "EXEC saw half of a script's writes");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let writers: Vec<_> = (0..2)
        .map(|_| {
            let k = k.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection())
                    .expect("connect");
                let script = redis::Script::new(
                    "redis.call('incr', KEYS[1]) return redis.call('incr', KEYS[2])",
                );
                for _ in 0..300 {
                    let _: i64 = script
                        .key(&k[0])
                        .key(&k[1])
                        .invoke(&mut con)
                        .expect("script");
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    stop.store(true, Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    assert!(reads > 0);
    let mut con = s.client();
    let v: Vec<i64> = redis::cmd("MGET").arg(&k).query(&mut con).expect("mget");
    assert_eq!(v, vec![600, 600]);
}

#[test]
fn watch_sees_a_cross_shard_script() {
    let s = Server::start(N);
    let k = spread_keys("w", 2);
    let mut con = s.client();
    let mut other = s.client();
    let _: () = redis::cmd("WATCH")
        .arg(&k[1])
        .query(&mut con)
        .expect("watch");
    let _: i64 = redis::cmd("EVAL")
        .arg("redis.call('set', KEYS[1], 1) return redis.call('incr', KEYS[2])")
        .arg(2)
        .arg(&k[0])
        .arg(&k[1])
        .query(&mut other)
        .expect("script");
    let r: Option<(String,)> = redis::pipe()
        .atomic()
        .set("afterwatch", 1)
        .query(&mut con)
        .expect("exec");
    assert_eq!(
        r, None,
        "EXEC must fail: a watched key was written by the script"
    );
    // And a script inside MULTI/EXEC spanning shards runs within the transaction.
    let (v,): (i64,) = redis::pipe()
        .atomic()
        .cmd("EVAL")
        .arg("return redis.call('incr', KEYS[1]) + redis.call('incr', KEYS[2])")
        .arg(2)
        .arg(&k[0])
        .arg(&k[1])
        .query(&mut con)
        .expect("exec with a cross-shard script");
    assert_eq!(v, 2 + 2);
}

/// A raw connection that waits up to 30 s for a reply (a busy script's caller waits long).
fn patient(port: u16) -> Client {
    let c = Client::connect(port);
    c.r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok();
    c
}

/// Sends one command on a raw connection and reads one reply.
fn ask(port: u16, cmd: &[&str]) -> String {
    let mut c = patient(port);
    c.send(&encode_command(&args(cmd))).expect("send");
    String::from_utf8_lossy(&c.read_reply().expect("reply")).into_owned()
}

#[test]
fn busy_script_gets_busy_replies_and_script_kill() {
    for n in shard_counts() {
        let s = Server::start(n);
        let port = s.port;
        let mut con = s.client();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("busy-reply-threshold")
            .arg(100)
            .query(&mut con)
            .expect("config");
        let busy_key = "loopkey";
        let looping = std::thread::spawn(move || {
            let mut c = patient(port);
            c.send(&encode_command(&args(&[
                "EVAL",
                "while true do end",
                "1",
                busy_key,
            ])))
            .expect("send");
            String::from_utf8_lossy(&c.read_reply().expect("reply")).into_owned()
        });
        // A command on the busy shard's key gets -BUSY once the threshold passed.
        let mut answer = String::new();
        assert!(
            wait_for(Duration::from_secs(10), || {
                answer = ask(port, &["SET", busy_key, "x"]);
                answer.starts_with("-BUSY")
            }),
            "--shards {n}: {answer}"
        );
        assert_eq!(
            answer,
            "-BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.\r\n"
        );
        // With several shards, clients that need other shards are still served: each new
        // connection lands on some shard; those not on the busy one answer at once.
        if n > 1 {
            let other = (0..)
                .map(|i| format!("o{i}"))
                .find(|k| shard_of(k.as_bytes(), n) != shard_of(busy_key.as_bytes(), n))
                .unwrap_or_default();
            let replies: Vec<String> = (0..12).map(|_| ask(port, &["SET", &other, "1"])).collect();
            assert!(
                replies
                    .iter()
                    .all(|r| r == "+OK\r\n" || r.starts_with("-BUSY")),
                "{replies:?}"
            );
            assert!(replies.iter().any(|r| r == "+OK\r\n"), "{replies:?}");
            // A multi-shard command that needs the busy shard is refused at once, from any
            // shard, rather than waiting for the script.
            for _ in 0..6 {
                let r = ask(port, &["MGET", &other, busy_key]);
                assert!(r.starts_with("-BUSY"), "--shards {n}: MGET {r}");
            }
        }
        // Pipelined commands on one connection: every reply in order.
        let mut c = Client::connect(port);
        let mut req = encode_command(&args(&["GET", busy_key]));
        req.extend(encode_command(&args(&["NOSUCHCMD"])));
        req.extend(encode_command(&args(&["GET", busy_key])));
        // QUIT is answered while busy and closes, as in Redis (it was -BUSY).
        req.extend(encode_command(&args(&["QUIT"])));
        req.extend(encode_command(&args(&["PING"])));
        c.send(&req).expect("send");
        let r1 = String::from_utf8_lossy(&c.read_reply().expect("r1")).into_owned();
        let r2 = String::from_utf8_lossy(&c.read_reply().expect("r2")).into_owned();
        let r3 = String::from_utf8_lossy(&c.read_reply().expect("r3")).into_owned();
        assert!(
            r1.starts_with("-BUSY") && r3.starts_with("-BUSY"),
            "{r1} {r3}"
        );
        assert!(r2.starts_with("-ERR unknown command 'NOSUCHCMD'"), "{r2}");
        let r4 = String::from_utf8_lossy(&c.read_reply().expect("r4")).into_owned();
        assert_eq!(r4, "+OK\r\n", "--shards {n}: QUIT while busy");
        // SCRIPT KILL from any connection (on the busy shard too, even the only one).
        assert_eq!(ask(port, &["SCRIPT", "KILL"]), "+OK\r\n", "--shards {n}");
        let reply = looping.join().expect("script thread");
        assert!(
            reply.starts_with("-ERR Script killed by user with SCRIPT KILL... script: "),
            "{reply}"
        );
        // The QUIT's connection is closed (by the end of the script at the latest), and
        // the PING after it was never answered.
        assert!(c.closed(), "--shards {n}: open after QUIT");
        // The server serves every shard afterwards, the busy one first.
        assert_eq!(ask(port, &["SET", busy_key, "after"]), "+OK\r\n");
        assert_eq!(ask(port, &["GET", busy_key]), "$5\r\nafter\r\n");
        assert_eq!(
            ask(port, &["SCRIPT", "KILL"]),
            "-NOTBUSY No scripts in execution right now.\r\n"
        );
        // A function that loops: FUNCTION KILL, and the function's -BUSY text.
        let _: String = redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("#!lua name=spin\nredis.register_function{function_name='spin', callback=function() while true do end end, flags={'no-writes'}}")
            .query(&mut con)
            .expect("load");
        let looping = std::thread::spawn(move || ask(port, &["FCALL", "spin", "1", busy_key]));
        assert!(
            wait_for(Duration::from_secs(10), || {
                answer = ask(port, &["GET", busy_key]);
                answer.starts_with("-BUSY")
            }),
            "{answer}"
        );
        assert_eq!(
            answer,
            "-BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.\r\n"
        );
        assert_eq!(ask(port, &["FUNCTION", "KILL"]), "+OK\r\n");
        let reply = looping.join().expect("fcall thread");
        assert!(reply.starts_with("-ERR Script killed by user"), "{reply}");
        assert_eq!(ask(port, &["PING"]), "+PONG\r\n");
    }
}

#[test]
fn busy_cross_shard_script_and_shutdown_nosave() {
    for n in shard_counts() {
        let mut s = Server::start(n);
        let port = s.port;
        let mut con = s.client();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("busy-reply-threshold")
            .arg(100)
            .query(&mut con)
            .expect("config");
        let k = if n > 1 {
            spread_keys("b", 2)
        } else {
            vec!["b0".into(), "b1".into()]
        };
        let k2 = k.clone();
        let looping = std::thread::spawn(move || {
            let mut c = patient(port);
            c.send(&encode_command(&args(&[
                "EVAL",
                "redis.call('set', KEYS[1], 1) redis.call('set', KEYS[2], 1) while true do end",
                "2",
                &k2[0],
                &k2[1],
            ])))
            .expect("send");
            c.read_reply().ok()
        });
        // Both held shards answer -BUSY; the script wrote, so it cannot be killed.
        for key in &k {
            let mut answer = String::new();
            assert!(
                wait_for(Duration::from_secs(10), || {
                    answer = ask(port, &["GET", key]);
                    answer.starts_with("-BUSY")
                }),
                "--shards {n} {key}: {answer}"
            );
        }
        assert!(ask(port, &["SCRIPT", "KILL"]).starts_with("-UNKILLABLE"));
        assert!(
            ask(port, &["SHUTDOWN"]).starts_with("-BUSY"),
            "SHUTDOWN without NOSAVE"
        );
        let mut c = Client::connect(port);
        c.send(&encode_command(&args(&["SHUTDOWN", "NOSAVE"])))
            .expect("send");
        assert!(
            s.wait_exit(Duration::from_secs(10)).is_some(),
            "server did not stop"
        );
        let _ = looping.join();
    }
}

#[test]
fn token_bucket_with_keys_on_different_shards_under_50_clients() {
    const SCRIPT: &str = r#"
local tokens = tonumber(redis.call('get', KEYS[1]) or ARGV[1])
if tokens < 0 then return redis.error_reply('negative bucket') end
if tokens >= 1 then
  redis.call('set', KEYS[1], tokens - 1)
  redis.call('incr', KEYS[2])
  return 1
end
redis.call('set', KEYS[1], tokens)
return 0
"#;
    const BUCKETS: usize = 4;
    const CAPACITY: i64 = 50;
    let s = Server::start(N);
    // Each bucket's two keys on different shards, so every call locks two shards.
    let pairs: Vec<(String, String)> = (0..BUCKETS)
        .map(|b| {
            let t = format!("tokens{b}");
            let ts = shard_of(t.as_bytes(), N);
            let g = (0..)
                .map(|i| format!("granted{b}_{i}"))
                .find(|g| shard_of(g.as_bytes(), N) != ts)
                .unwrap_or_default();
            (t, g)
        })
        .collect();
    let port = s.port;
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let pairs = pairs.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                    .and_then(|c| c.get_connection())
                    .expect("connect");
                let script = redis::Script::new(SCRIPT);
                let mut granted = 0i64;
                for round in 0..6 {
                    for (t, g) in &pairs {
                        let r: i64 = script
                            .key(t)
                            .key(g)
                            .arg(CAPACITY)
                            .invoke(&mut con)
                            .unwrap_or_else(|e| panic!("round {round}: {e}"));
                        granted += r;
                    }
                }
                granted
            })
        })
        .collect();
    let total: i64 = threads.into_iter().map(|t| t.join().expect("client")).sum();
    assert_eq!(total, CAPACITY * BUCKETS as i64);
    let mut con = s.client();
    for (t, g) in &pairs {
        let left: i64 = redis::cmd("GET").arg(t).query(&mut con).expect("tokens");
        let granted: i64 = redis::cmd("GET").arg(g).query(&mut con).expect("granted");
        assert_eq!((left, granted), (0, CAPACITY), "{t} {g}");
    }
}

/// A BullMQ-style job queue in Lua (BullMQ itself needs streams, which shardis lacks): keys
/// under `q:` without hash tags, so they spread over the shards; `take` computes the job's
/// key from its id (an undeclared key), as BullMQ's scripts do.
const ADD: &str = r#"
local id = redis.call('incr', KEYS[1])
redis.call('hset', KEYS[2] .. id, 'data', ARGV[1], 'state', 'waiting')
redis.call('lpush', KEYS[3], id)
return id
"#;
const TAKE: &str = r#"
local id = redis.call('rpoplpush', KEYS[1], KEYS[2])
if not id then return false end
redis.call('hset', KEYS[3] .. id, 'state', 'active', 'worker', ARGV[1])
return {id, redis.call('hget', KEYS[3] .. id, 'data')}
"#;
const DONE: &str = r#"
if redis.call('lrem', KEYS[1], 1, ARGV[1]) ~= 1 then return redis.error_reply('not active') end
if redis.call('hget', KEYS[3] .. ARGV[1], 'state') ~= 'active' then return redis.error_reply('bad state') end
redis.call('hset', KEYS[3] .. ARGV[1], 'state', 'completed', 'result', ARGV[2])
redis.call('zadd', KEYS[2], ARGV[1], ARGV[1])
return redis.call('zcard', KEYS[2])
"#;

#[test]
fn job_queue_scripts_with_undeclared_keys_on_four_shards() {
    const JOBS: i64 = 200;
    let s = Server::start_with(N, &["--lua-allow-undeclared-keys", "yes"]);
    let port = s.port;
    let url = format!("redis://127.0.0.1:{port}/");
    let producers: Vec<_> = (0..4)
        .map(|p| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url)
                    .and_then(|c| c.get_connection())
                    .expect("connect");
                let add = redis::Script::new(ADD);
                for j in 0..JOBS / 4 {
                    let _: i64 = add
                        .key("q:id")
                        .key("q:job:")
                        .key("q:wait")
                        .arg(format!("{}", p * 1000 + j))
                        .invoke(&mut con)
                        .expect("add");
                }
            })
        })
        .collect();
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url)
                    .and_then(|c| c.get_connection())
                    .expect("connect");
                let (take, done) = (redis::Script::new(TAKE), redis::Script::new(DONE));
                let mut mine = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    let job: Option<(i64, String)> = take
                        .key("q:wait")
                        .key("q:active")
                        .key("q:job:")
                        .arg(w)
                        .invoke(&mut con)
                        .expect("take");
                    let Some((id, data)) = job else {
                        let finished: i64 = redis::cmd("ZCARD")
                            .arg("q:completed")
                            .query(&mut con)
                            .expect("zcard");
                        if finished >= JOBS || Instant::now() > deadline {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    };
                    let _: i64 = done
                        .key("q:active")
                        .key("q:completed")
                        .key("q:job:")
                        .arg(id)
                        .arg(format!("{data}!"))
                        .invoke(&mut con)
                        .expect("done");
                    mine.push(id);
                }
                mine
            })
        })
        .collect();
    for p in producers {
        p.join().expect("producer");
    }
    let mut all: Vec<i64> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=JOBS).collect::<Vec<_>>(),
        "every job processed exactly once"
    );
    let mut con = s.client();
    let (wait, active): (i64, i64) = redis::pipe()
        .llen("q:wait")
        .llen("q:active")
        .query(&mut con)
        .expect("llen");
    assert_eq!((wait, active), (0, 0));
    for id in [1, JOBS / 2, JOBS] {
        let state: String = redis::cmd("HGET")
            .arg(format!("q:job:{id}"))
            .arg("state")
            .query(&mut con)
            .expect("hget");
        assert_eq!(state, "completed");
    }
    // The keys really are spread: the queue's keys live on more than one shard.
    let shards: std::collections::HashSet<usize> =
        ["q:id", "q:wait", "q:active", "q:completed", "q:job:1"]
            .iter()
            .map(|k| shard_of(k.as_bytes(), N))
            .collect();
    assert!(shards.len() > 1);
}

/// A connection accepted in the same batch of completions as the request that starts a
/// script: once the script is busy it is answered `-BUSY`, not left unaccepted until the
/// script ends. (`DEBUG SLEEP` holds the shard so that the script's request and the new
/// connection arrive together; before the fix the GET waited for the script, which spins
/// until SCRIPT KILL, and this test timed out.)
#[test]
fn a_connection_accepted_with_the_scripts_request_gets_busy() {
    let s = Server::start_with(1, &["--enable-debug-command", "yes"]);
    let port = s.port;
    let mut con = s.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("busy-reply-threshold")
        .arg(100)
        .query(&mut con)
        .expect("config");
    let mut sleeper = patient(port);
    let mut looper = patient(port);
    sleeper
        .send(&encode_command(&args(&["DEBUG", "SLEEP", "0.5"])))
        .expect("send");
    std::thread::sleep(Duration::from_millis(150));
    looper
        .send(&encode_command(&args(&["EVAL", "while true do end", "0"])))
        .expect("send");
    std::thread::sleep(Duration::from_millis(30));
    let mut late = Client::connect(port);
    late.r
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok();
    late.send(&encode_command(&args(&["GET", "k"])))
        .expect("send");
    let got = late
        .read_reply()
        .map(|r| String::from_utf8_lossy(&r).into_owned());
    // Whatever happened, stop the script so the server can stop.
    assert_eq!(ask(port, &["SCRIPT", "KILL"]), "+OK\r\n");
    let got = got.expect("the new connection was never answered while the script ran");
    assert!(got.starts_with("-BUSY"), "{got}");
    assert_eq!(
        String::from_utf8_lossy(&sleeper.read_reply().expect("sleep")),
        "+OK\r\n"
    );
    let killed = String::from_utf8_lossy(&looper.read_reply().expect("eval")).into_owned();
    assert!(killed.starts_with("-ERR Script killed"), "{killed}");
}
