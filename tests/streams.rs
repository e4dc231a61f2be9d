//! Streams against the real binary (replies and errors are compared with redis-server line by
//! line in `tests/compat/script.txt`; this file covers what a script cannot): XREAD and
//! XREADGROUP blocking and woken by XADD from another connection, on keys of one shard and
//! of several; `$` meaning "after what is there now"; a group's new entries going to one
//! blocked consumer only; timeouts and CLIENT UNBLOCK; keyspace events; and the state a
//! replica (shardis, and a stock redis-server replica of shardis) and the append-only file
//! end up with after stream writes and group reads (DEBUG DIGEST, XINFO, XPENDING).

mod common;

use std::thread;
use std::time::Duration;

use common::Server;
use redis::{Connection, Value};
use shardis::shard::route::shard_of;

fn key_on(shard: usize, n: usize, prefix: &str) -> String {
    (0..100_000)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| shard_of(k.as_bytes(), n) == shard % n)
        .expect("some key maps to the shard")
}

fn blocked_clients(c: &mut Connection) -> usize {
    common::info(c, "clients")
        .get("blocked_clients")
        .and_then(|v| v.parse().ok())
        .expect("INFO has blocked_clients")
}

fn wait_blocked(c: &mut Connection, n: usize) {
    assert!(
        common::wait_for(Duration::from_secs(10), || blocked_clients(c) == n),
        "expected {n} blocked clients"
    );
}

/// The IDs of an XREAD/XREADGROUP reply's entries, per key: [(key, [id...])].
fn read_ids(v: &Value) -> Vec<(String, Vec<String>)> {
    let Value::Array(keys) = v else {
        return Vec::new();
    };
    keys.iter()
        .filter_map(|kv| {
            let Value::Array(pair) = kv else { return None };
            let key: String = redis::from_redis_value(pair.first()?).ok()?;
            let Value::Array(entries) = pair.get(1)? else {
                return None;
            };
            let ids = entries
                .iter()
                .filter_map(|e| match e {
                    Value::Array(x) => redis::from_redis_value(x.first()?).ok(),
                    _ => None,
                })
                .collect();
            Some((key, ids))
        })
        .collect()
}

fn xadd(c: &mut Connection, key: &str, id: &str) -> String {
    redis::cmd("XADD")
        .arg(key)
        .arg(id)
        .arg("f")
        .arg("v")
        .query(c)
        .unwrap()
}

#[test]
fn xread_block_is_woken_by_xadd_on_any_shard() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut admin = s.client();
        // One key on each shard (the reader's own and others), read in one XREAD.
        let keys: Vec<String> = (0..n.max(2))
            .map(|i| key_on(i, n, &format!("xs{i}-")))
            .collect();
        for k in &keys {
            xadd(&mut admin, k, "1-1");
        }
        for (i, k) in keys.iter().enumerate() {
            let mut reader = s.client();
            let ks = keys.clone();
            let h = thread::spawn(move || {
                let v: Value = redis::cmd("XREAD")
                    .arg("BLOCK")
                    .arg(10_000)
                    .arg("STREAMS")
                    .arg(&ks)
                    .arg(vec!["$"; ks.len()])
                    .query(&mut reader)
                    .unwrap();
                v
            });
            wait_blocked(&mut admin, 1);
            let id = format!("2-{i}");
            xadd(&mut admin, k, &id);
            let v = h.join().unwrap();
            assert_eq!(
                read_ids(&v),
                vec![(k.clone(), vec![id.clone()])],
                "shards={n}: `$` reads only what came after the wait began"
            );
        }
        // Non-blocking over every shard: every key with data answers, in command order.
        let v: Value = redis::cmd("XREAD")
            .arg("STREAMS")
            .arg(&keys)
            .arg(vec!["0"; keys.len()])
            .query(&mut admin)
            .unwrap();
        let got = read_ids(&v);
        assert_eq!(got.len(), keys.len(), "shards={n}: {got:?}");
        for (i, (k, ids)) in got.iter().enumerate() {
            assert_eq!(k, &keys[i]);
            assert_eq!(ids, &vec!["1-1".to_string(), format!("2-{i}")]);
        }
        wait_blocked(&mut admin, 0);
    }
}

#[test]
fn xread_block_times_out_and_unblocks() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let t = std::time::Instant::now();
        let v: Value = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(150)
            .arg("STREAMS")
            .arg("nothing")
            .arg("$")
            .query(&mut c)
            .unwrap();
        assert_eq!(v, Value::Nil, "shards={n}: a timeout is a null array");
        assert!(t.elapsed() >= Duration::from_millis(140));
        // CLIENT UNBLOCK ends an XREAD BLOCK 0.
        let mut reader = s.client();
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut reader).unwrap();
        let h = thread::spawn(move || {
            redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(0)
                .arg("STREAMS")
                .arg("nothing")
                .arg("$")
                .query::<Value>(&mut reader)
        });
        wait_blocked(&mut c, 1);
        let r: i64 = redis::cmd("CLIENT")
            .arg("UNBLOCK")
            .arg(id)
            .query(&mut c)
            .unwrap();
        assert_eq!(r, 1);
        assert_eq!(h.join().unwrap().unwrap(), Value::Nil);
        wait_blocked(&mut c, 0);
    }
}

#[test]
fn a_groups_new_entry_goes_to_one_blocked_consumer() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut admin = s.client();
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("jobs")
            .arg("workers")
            .arg("$")
            .arg("MKSTREAM")
            .query(&mut admin)
            .unwrap();
        let handles: Vec<_> = ["w1", "w2"]
            .into_iter()
            .map(|name| {
                let mut c = s.client();
                thread::spawn(move || {
                    redis::cmd("XREADGROUP")
                        .arg("GROUP")
                        .arg("workers")
                        .arg(name)
                        .arg("BLOCK")
                        .arg(1500)
                        .arg("STREAMS")
                        .arg("jobs")
                        .arg(">")
                        .query::<Value>(&mut c)
                        .unwrap()
                })
            })
            .collect();
        wait_blocked(&mut admin, 2);
        xadd(&mut admin, "jobs", "5-1");
        let replies: Vec<Value> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let served: Vec<_> = replies.iter().filter(|v| **v != Value::Nil).collect();
        assert_eq!(served.len(), 1, "shards={n}: {replies:?}");
        assert_eq!(
            read_ids(served[0]),
            vec![("jobs".to_string(), vec!["5-1".to_string()])]
        );
        // The delivery is pending for the consumer that got it; the group moved on.
        let pending: Value = redis::cmd("XPENDING")
            .arg("jobs")
            .arg("workers")
            .query(&mut admin)
            .unwrap();
        let Value::Array(p) = pending else {
            panic!("{pending:?}")
        };
        assert_eq!(p[0], Value::Int(1));
        let groups: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg("jobs")
            .query(&mut admin)
            .unwrap();
        let text = format!("{groups:?}");
        assert!(text.contains("5-1"), "last-delivered-id: {text}");
    }
}

#[test]
fn a_blocked_group_read_ends_when_its_group_or_stream_goes() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut admin = s.client();
        for (k, end, want) in [
            (
                "gone-group",
                "XGROUP",
                "NOGROUP the consumer group this client was blocked on no longer exists",
            ),
            (
                "gone-key",
                "DEL",
                "UNBLOCKED the stream key no longer exists",
            ),
        ] {
            let _: () = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(k)
                .arg("g")
                .arg("$")
                .arg("MKSTREAM")
                .query(&mut admin)
                .unwrap();
            let mut c = s.client();
            let key = k.to_string();
            let h = thread::spawn(move || {
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("g")
                    .arg("c")
                    .arg("BLOCK")
                    .arg(10_000)
                    .arg("STREAMS")
                    .arg(&key)
                    .arg(">")
                    .query::<Value>(&mut c)
            });
            wait_blocked(&mut admin, 1);
            let t = std::time::Instant::now();
            if end == "DEL" {
                let _: i64 = redis::cmd("DEL").arg(k).query(&mut admin).unwrap();
            } else {
                let _: i64 = redis::cmd("XGROUP")
                    .arg("DESTROY")
                    .arg(k)
                    .arg("g")
                    .query(&mut admin)
                    .unwrap();
            }
            let e = h.join().unwrap().unwrap_err();
            assert!(
                e.to_string().contains(want.split_once(' ').unwrap().1),
                "shards={n}: {e}"
            );
            assert!(t.elapsed() < Duration::from_secs(5));
            wait_blocked(&mut admin, 0);
        }
    }
}

#[test]
fn keyspace_events_for_stream_writes() {
    let s = Server::start(1);
    let mut c = s.client();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg("Et")
        .query(&mut c)
        .unwrap();
    let mut sub = s.client();
    let mut ps = sub.as_pubsub();
    ps.psubscribe("__keyevent@0__:*").unwrap();
    ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    xadd(&mut c, "ev", "1-1");
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("ev")
        .arg("g")
        .arg("0")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("XTRIM")
        .arg("ev")
        .arg("MAXLEN")
        .arg(0)
        .query(&mut c)
        .unwrap();
    let got: Vec<String> = (0..3)
        .map(|_| ps.get_message().unwrap().get_channel_name().to_string())
        .collect();
    assert_eq!(
        got,
        [
            "__keyevent@0__:xadd",
            "__keyevent@0__:xgroup-create",
            "__keyevent@0__:xtrim"
        ]
    );
}

/// Stream writes and group reads a replica must end up with: entries, trims, deletions,
/// groups, consumers and their pending entries (XCLAIM/XAUTOCLAIM included).
fn stream_workload(c: &mut Connection) {
    for i in 1..=300 {
        let _: String = redis::cmd("XADD")
            .arg("events")
            .arg("MAXLEN")
            .arg("~")
            .arg(150)
            .arg("*")
            .arg("n")
            .arg(i)
            .query(c)
            .unwrap();
    }
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("events")
        .arg("g")
        .arg("0")
        .query(c)
        .unwrap();
    for consumer in ["a", "b", "c"] {
        let _: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("g")
            .arg(consumer)
            .arg("COUNT")
            .arg(20)
            .arg("STREAMS")
            .arg("events")
            .arg(">")
            .query(c)
            .unwrap();
    }
    let _: Value = redis::cmd("XAUTOCLAIM")
        .arg("events")
        .arg("g")
        .arg("d")
        .arg(0)
        .arg("0")
        .arg("COUNT")
        .arg(5)
        .query(c)
        .unwrap();
    let first: Value = redis::cmd("XRANGE")
        .arg("events")
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(3)
        .query(c)
        .unwrap();
    let ids: Vec<String> = match first {
        Value::Array(v) => v
            .iter()
            .filter_map(|e| match e {
                Value::Array(x) => redis::from_redis_value(&x[0]).ok(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let _: i64 = redis::cmd("XACK")
        .arg("events")
        .arg("g")
        .arg(&ids[0])
        .query(c)
        .unwrap();
    let _: i64 = redis::cmd("XDEL")
        .arg("events")
        .arg(&ids[1])
        .query(c)
        .unwrap();
    let _: Value = redis::cmd("XCLAIM")
        .arg("events")
        .arg("g")
        .arg("e")
        .arg(0)
        .arg(&ids[2])
        .query(c)
        .unwrap();
    let _: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg("f")
        .arg("NOACK")
        .arg("COUNT")
        .arg(7)
        .arg("STREAMS")
        .arg("events")
        .arg(">")
        .query(c)
        .unwrap();
    let _: i64 = redis::cmd("XTRIM")
        .arg("events")
        .arg("MINID")
        .arg(&ids[2])
        .query(c)
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("other")
        .arg("g2")
        .arg("$")
        .arg("MKSTREAM")
        .query(c)
        .unwrap();
}

/// What a replica must agree on besides the digest (which covers entries only).
fn group_state(c: &mut Connection) -> String {
    // Errors (a replica that has not synced yet) are part of the state compared.
    let q = |c: &mut Connection, args: &[&str]| -> Value {
        redis::cmd(args[0])
            .arg(&args[1..])
            .query::<Value>(c)
            .unwrap_or_else(|e| Value::BulkString(e.to_string().into_bytes()))
    };
    let groups = q(c, &["XINFO", "GROUPS", "events"]);
    let pending = q(c, &["XPENDING", "events", "g", "-", "+", "1000"]);
    // Idle times differ between nodes: keep IDs, owners and delivery counts.
    let pel: Vec<String> = match pending {
        Value::Array(v) => v
            .iter()
            .map(|e| match e {
                Value::Array(x) => format!("{:?} {:?} {:?}", x[0], x[1], x[3]),
                _ => String::new(),
            })
            .collect(),
        other => vec![format!("{other:?}")],
    };
    let stream = q(c, &["XINFO", "STREAM", "events"]);
    // radix-tree-nodes is each server's own tree shape.
    let info = match stream {
        Value::Array(v) => v
            .chunks(2)
            .filter(|p| !format!("{:?}", p[0]).contains("radix-tree-nodes"))
            .map(|p| format!("{:?}={:?}", p[0], p[1]))
            .collect::<Vec<_>>()
            .join(" "),
        other => format!("{other:?}"),
    };
    format!("{groups:?}\n{pel:?}\n{info}")
}

/// Waits until `c` holds `want` (digest, group state), failing with both after 15 s.
fn converge(c: &mut Connection, want: &(String, String), what: &str) {
    let mut last = (String::new(), String::new());
    let ok = common::wait_for(Duration::from_secs(15), || {
        last = (digest(c), group_state(c));
        last == *want
    });
    assert!(ok, "{what}:\n{last:?}\nwanted:\n{want:?}");
}

fn digest(c: &mut Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

#[test]
fn replicas_end_with_the_masters_streams_and_groups() {
    let master = Server::start_with(4, &["--enable-debug-command", "yes"]);
    let port = master.port.to_string();
    let replica = Server::start_with(
        2,
        &[
            "--enable-debug-command",
            "yes",
            "--replicaof",
            "127.0.0.1",
            &port,
        ],
    );
    let stock = common::redis_server().map(|_| {
        common::resp::Redis::start_with(&[
            "--replicaof",
            "127.0.0.1",
            &port,
            "--enable-debug-command",
            "yes",
        ])
    });
    let mut m = master.client();
    assert!(common::wait_for(Duration::from_secs(10), || {
        common::info(&mut m, "replication")
            .get("connected_slaves")
            .is_some_and(|v| v == if stock.is_some() { "2" } else { "1" })
    }));
    stream_workload(&mut m);
    let want = (digest(&mut m), group_state(&mut m));
    assert_ne!(want.0, "0".repeat(40));
    let mut r = replica.client();
    converge(&mut r, &want, "shardis replica differs");
    if let Some(stock) = &stock {
        let mut sc = redis::Client::open(format!("redis://127.0.0.1:{}/", stock.port))
            .unwrap()
            .get_connection()
            .unwrap();
        converge(&mut sc, &want, "redis-server replica differs");
    }
    // The replica is read-only for stream writes and group reads, as Redis.
    let e = redis::cmd("XADD")
        .arg("events")
        .arg("*")
        .arg("a")
        .arg("b")
        .query::<String>(&mut r)
        .unwrap_err();
    assert!(e.to_string().contains("read only replica"), "{e}");
}

#[test]
fn the_append_only_file_replays_stream_writes() {
    let dir = std::env::temp_dir().join(format!("shardis-streams-aof-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap().to_string();
    let args = [
        "--enable-debug-command",
        "yes",
        "--appendonly",
        "yes",
        "--appendfsync",
        "always",
        "--dir",
        &d,
    ];
    let s = Server::start_with(2, &args);
    let mut c = s.client();
    stream_workload(&mut c);
    let want = (digest(&mut c), group_state(&mut c));
    drop(c);
    s.signal("KILL");
    drop(s);
    let s = Server::start_with(2, &args);
    let mut c = s.client();
    let got = (digest(&mut c), group_state(&mut c));
    assert_eq!(got, want, "after kill -9 and replay of the logs");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Streams written before a replica attaches travel in the full sync's RDB: to a shardis
/// replica, to a stock redis-server replica of shardis, and from a stock redis-server
/// master to a shardis replica (the migration path); DEBUG RELOAD and a restart from
/// `dump.rdb` keep them too.
#[test]
fn streams_travel_in_full_syncs_and_snapshots() {
    let dir = std::env::temp_dir().join(format!("shardis-streams-rdb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap().to_string();
    let master = Server::start_with(4, &["--enable-debug-command", "yes", "--dir", &d]);
    let mut m = master.client();
    stream_workload(&mut m);
    let want = (digest(&mut m), group_state(&mut m));
    let port = master.port.to_string();
    let replica = Server::start_with(
        2,
        &[
            "--enable-debug-command",
            "yes",
            "--replicaof",
            "127.0.0.1",
            &port,
        ],
    );
    let mut r = replica.client();
    converge(&mut r, &want, "shardis replica after a full sync");
    if common::redis_server().is_some() {
        let stock = common::resp::Redis::start_with(&[
            "--replicaof",
            "127.0.0.1",
            &port,
            "--enable-debug-command",
            "yes",
        ]);
        let mut sc = redis::Client::open(format!("redis://127.0.0.1:{}/", stock.port))
            .unwrap()
            .get_connection()
            .unwrap();
        converge(&mut sc, &want, "redis-server replica after a full sync");
        // The other way: a stock master with streams, a shardis replica of it.
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query(&mut sc)
            .unwrap();
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg("events")
            .arg("late")
            .arg("0")
            .query(&mut sc)
            .unwrap();
        let want_stock = (digest(&mut sc), group_state(&mut sc));
        let follower = Server::start_with(
            3,
            &[
                "--enable-debug-command",
                "yes",
                "--replicaof",
                "127.0.0.1",
                &stock.port.to_string(),
            ],
        );
        let mut f = follower.client();
        converge(&mut f, &want_stock, "shardis replica of redis-server");
    }
    // DEBUG RELOAD, then a restart from the dump.
    let _: () = redis::cmd("DEBUG").arg("RELOAD").query(&mut m).unwrap();
    assert_eq!(
        (digest(&mut m), group_state(&mut m)),
        want,
        "after DEBUG RELOAD"
    );
    let _: () = redis::cmd("SAVE").query(&mut m).unwrap();
    drop(m);
    drop(replica);
    drop(master);
    let again = Server::start_with(2, &["--enable-debug-command", "yes", "--dir", &d]);
    let mut c = again.client();
    assert_eq!(
        (digest(&mut c), group_state(&mut c)),
        want,
        "after a restart from dump.rdb"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
