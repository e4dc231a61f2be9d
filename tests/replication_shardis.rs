//! shardis replicating shardis: a `--shards 4` master, a `--shards 2` replica of it and a
//! `--shards 1` replica of that replica (a chain, different shard counts at each hop). Writes
//! of every family (cross-shard MULTI/EXEC and MSET, SWAPDB, FLUSHDB, expiring keys) reach
//! every node with the same `DEBUG DIGEST`; then the master is killed with SIGKILL, the
//! first replica is promoted with `REPLICAOF NO ONE`, takes writes, and the chained replica
//! follows it; a replica killed and restarted resyncs and converges.

mod common;

use std::time::Duration;

use common::Server;

/// The tests of this file run one at a time: a replica whose master a test killed keeps
/// dialling that port, and a master another test starts on it would gain a foreign
/// replica (its acknowledgements would count for `min-replicas-ack`).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn node(shards: usize, extra: &[&str]) -> Server {
    let mut args = vec!["--enable-debug-command", "yes", "--save", ""];
    args.extend_from_slice(extra);
    Server::start_with(shards, &args)
}

fn digest(c: &mut redis::Connection) -> String {
    redis::cmd("DEBUG").arg("DIGEST").query(c).unwrap()
}

fn info(s: &Server, field: &str) -> String {
    let mut c = s.client();
    common::info(&mut c, "replication")
        .get(field)
        .cloned()
        .unwrap_or_default()
}

/// Waits until every node reports the digest of the first.
fn converge(nodes: &[&Server], what: &str) {
    let mut last = Vec::new();
    let ok = common::wait_for(Duration::from_secs(20), || {
        last = nodes
            .iter()
            .map(|s| digest(&mut s.client()))
            .collect::<Vec<_>>();
        last.iter().all(|d| *d == last[0])
    });
    assert!(ok, "{what}: digests differ: {last:?}");
    assert_ne!(last[0], "0".repeat(40), "{what}: empty data set");
}

/// A stock redis-server replica of `port`, in a directory of its own: a Redis replica
/// writes the RDB it receives to `dir/dump.rdb`, and other tests start redis-server in the
/// shared temp dir (they would load it). The directory goes with it.
struct StockReplica {
    port: u16,
    redis: Option<common::resp::Redis>,
    dir: std::path::PathBuf,
}

impl StockReplica {
    fn of(port: u16, tag: &str) -> StockReplica {
        let dir =
            std::env::temp_dir().join(format!("shardis-{tag}-replica-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let redis = common::resp::Redis::start_with(&[
            "--replicaof",
            "127.0.0.1",
            &port.to_string(),
            "--enable-debug-command",
            "yes",
            "--dir",
            dir.to_str().unwrap(),
        ]);
        StockReplica {
            port: redis.port,
            redis: Some(redis),
            dir,
        }
    }

    /// Waits (20 s at most) until its `DEBUG DIGEST` is `want`.
    fn converges_to(&self, want: &str) {
        let mut sc = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))
            .unwrap()
            .get_connection()
            .unwrap();
        let ok = common::wait_for(Duration::from_secs(20), || {
            redis::cmd("DEBUG")
                .arg("DIGEST")
                .query::<String>(&mut sc)
                .is_ok_and(|d| d == want)
        });
        assert!(ok, "stock redis-server replica differs from the master");
    }
}

impl Drop for StockReplica {
    fn drop(&mut self) {
        // The server first, then the directory it writes into.
        drop(self.redis.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn workload(c: &mut redis::Connection, round: u32) {
    for i in 0..300 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(format!("{round}-{i}"))
            .query(c)
            .unwrap();
        let _: i64 = redis::cmd("HSET")
            .arg(format!("h{}", i % 11))
            .arg(format!("f{i}"))
            .arg(round)
            .query(c)
            .unwrap();
        let _: i64 = redis::cmd("RPUSH")
            .arg(format!("l{}", i % 5))
            .arg(i)
            .query(c)
            .unwrap();
        let _: i64 = redis::cmd("ZINCRBY")
            .arg(format!("z{}", i % 3))
            .arg(1)
            .arg(format!("m{}", i % 17))
            .query(c)
            .map(|_: String| 0)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("ttl")
        .arg(1)
        .arg("EX")
        .arg(500)
        .query(c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("short")
        .arg(1)
        .arg("PX")
        .arg(50)
        .query(c)
        .unwrap();
    let _: redis::Value = redis::cmd("SPOP").arg("nosuch").query(c).unwrap();
    let _: () = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("a")
        .arg(round)
        .cmd("INCR")
        .arg("b")
        .cmd("SMOVE")
        .arg("s1")
        .arg("s2")
        .arg("x")
        .query(c)
        .unwrap();
    let _: () = redis::cmd("MSET")
        .arg("c")
        .arg(round)
        .arg("d")
        .arg(round)
        .query(c)
        .unwrap();
    let _: () = redis::cmd("SELECT").arg(2).query(c).unwrap();
    let _: () = redis::cmd("SET").arg("in2").arg(round).query(c).unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(c).unwrap();
    let _: () = redis::cmd("SWAPDB").arg(2).arg(3).query(c).unwrap();
    let _: () = redis::cmd("SELECT").arg(4).query(c).unwrap();
    let _: () = redis::cmd("SET").arg("gone").arg(1).query(c).unwrap();
    let _: () = redis::cmd("FLUSHDB").query(c).unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(c).unwrap();
}

#[test]
fn a_chain_of_shardis_replicas_converges_and_survives_a_failover() {
    let _one_at_a_time = serial();
    let master = node(4, &[]);
    let mut mc = master.client();
    let _: i64 = redis::cmd("SADD")
        .arg("s1")
        .arg("x")
        .query(&mut mc)
        .unwrap();
    workload(&mut mc, 1);

    let mport = master.port.to_string();
    let a = node(2, &["--replicaof", "127.0.0.1", &mport]);
    let aport = a.port.to_string();
    let b = node(1, &["--replicaof", "127.0.0.1", &aport]);
    assert!(common::wait_for(Duration::from_secs(20), || {
        info(&a, "master_link_status") == "up" && info(&b, "master_link_status") == "up"
    }));
    converge(&[&master, &a, &b], "after the full syncs");

    // The live stream, through both hops.
    workload(&mut mc, 2);
    converge(&[&master, &a, &b], "after streaming");
    assert!(common::wait_for(Duration::from_secs(10), || {
        info(&master, "master_repl_offset") == info(&a, "slave_repl_offset")
    }));
    assert_eq!(info(&master, "connected_slaves"), "1");
    let err = redis::cmd("SET")
        .arg("x")
        .arg(1)
        .query::<()>(&mut a.client())
        .unwrap_err();
    assert!(err.to_string().contains("read only replica"), "{err}");

    // A replica killed and restarted comes back to the same data.
    b.signal("KILL");
    drop(b);
    workload(&mut mc, 3);
    let b = node(1, &["--replicaof", "127.0.0.1", &aport]);
    converge(&[&master, &a, &b], "after the chained replica's restart");

    // The master dies; its replica keeps serving, is promoted, and the chain follows it.
    master.signal("KILL");
    assert!(common::wait_for(Duration::from_secs(20), || {
        info(&a, "master_link_status") == "down"
    }));
    let v: String = redis::cmd("GET").arg("a").query(&mut a.client()).unwrap();
    assert_eq!(v, "3", "reads are served while the master is gone");
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut a.client())
        .unwrap();
    assert_eq!(info(&a, "role"), "master");
    assert_ne!(info(&a, "master_replid2"), "0".repeat(40));
    let mut ac = a.client();
    workload(&mut ac, 4);
    converge(&[&a, &b], "after the promotion");
    assert_eq!(info(&b, "master_link_status"), "up");
}

#[test]
fn min_replicas_to_write_refuses_writes_without_a_good_replica() {
    let _one_at_a_time = serial();
    let master = node(
        2,
        &[
            "--min-replicas-to-write",
            "1",
            "--min-replicas-max-lag",
            "2",
        ],
    );
    let mut mc = master.client();
    let refused = |c: &mut redis::Connection| {
        redis::cmd("SET")
            .arg("k")
            .arg(1)
            .query::<()>(c)
            .err()
            .is_some_and(|e| e.to_string().contains("Not enough good replicas"))
    };
    assert!(refused(&mut mc), "no replica: NOREPLICAS");
    let v: Option<String> = redis::cmd("GET").arg("k").query(&mut mc).unwrap();
    assert_eq!(v, None, "reads still work");
    let mport = master.port.to_string();
    let r = node(1, &["--replicaof", "127.0.0.1", &mport]);
    assert!(
        common::wait_for(Duration::from_secs(10), || !refused(&mut mc)),
        "a replica that acknowledges lets writes through"
    );
    // A replica that stops acknowledging (SIGSTOP) is no longer good after the max lag.
    r.signal("STOP");
    assert!(common::wait_for(Duration::from_secs(10), || refused(
        &mut mc
    )));
    r.signal("CONT");
    assert!(common::wait_for(Duration::from_secs(10), || !refused(
        &mut mc
    )));
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("min-replicas-to-write")
        .arg(3)
        .query(&mut mc)
        .unwrap();
    assert!(common::wait_for(Duration::from_secs(5), || refused(
        &mut mc
    )));
}

/// Fencing: a master frozen (SIGSTOP) while its replica was promoted elsewhere refuses every
/// write from the moment it runs again (`min-replicas-to-write` checks the good replicas'
/// deadline per write, not a count refreshed later): no write is acknowledged and lost.
#[test]
fn a_frozen_master_acknowledges_no_write_after_it_resumes() {
    let _one_at_a_time = serial();
    let master = node(
        1,
        &[
            "--min-replicas-to-write",
            "1",
            "--min-replicas-max-lag",
            "1",
        ],
    );
    let mport = master.port.to_string();
    let r = node(1, &["--replicaof", "127.0.0.1", &mport]);
    let mut mc = master.client();
    assert!(common::wait_for(Duration::from_secs(10), || {
        redis::cmd("SET")
            .arg("k")
            .arg(1)
            .query::<()>(&mut mc)
            .is_ok()
    }));
    master.signal("STOP");
    // Meanwhile the replica is promoted (what a sentinel does) and stops acknowledging.
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut r.client())
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // A client's write is already waiting in the socket when the old master resumes: it is
    // handled in the first loop pass, before any timer recounts the replicas.
    let writer = std::thread::spawn(move || {
        let mut c = mc;
        let mut acked = 0;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(1500) {
            if redis::cmd("INCR").arg("n").query::<i64>(&mut c).is_ok() {
                acked += 1;
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(300));
    master.signal("CONT");
    let acked = writer.join().unwrap();
    assert_eq!(acked, 0, "writes acknowledged by the fenced old master");
}

/// A full sync while the master takes writes: the cut is only a moment under the lock,
/// the master's shards serialise the RDB while serving, and the writes made meanwhile
/// (overwrites, deletions and new keys, on every shard) reach the replica behind its RDB.
/// A stock redis-server replica gets the same stream. Both end with the master's digest.
#[test]
fn full_sync_under_writes_while_the_master_serialises() {
    let _one_at_a_time = serial();
    let master = node(4, &[]);
    let mut c = master.client();
    for chunk in (0..100_000).collect::<Vec<u32>>().chunks(10_000) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("SET").arg(format!("k{i}")).arg("v0").ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
    let port = master.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let writer = std::thread::spawn(move || {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut w = client.get_connection().unwrap();
        let mut round = 0u32;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) && round < 400 {
            let mut p = redis::pipe();
            for j in 0..500u32 {
                let i = (round * 997 + j * 131) % 100_000;
                match j % 3 {
                    0 => p
                        .cmd("SET")
                        .arg(format!("k{i}"))
                        .arg(format!("r{round}"))
                        .ignore(),
                    1 => p.cmd("DEL").arg(format!("k{i}")).ignore(),
                    _ => p.cmd("SET").arg(format!("n{round}:{j}")).arg("x").ignore(),
                };
            }
            p.query::<()>(&mut w).unwrap();
            round += 1;
        }
        round
    });
    let replica = node(2, &["--replicaof", "127.0.0.1", &port.to_string()]);
    let stock = StockReplica::of(port, "stock");
    assert!(
        common::wait_for(Duration::from_secs(30), || {
            info(&replica, "master_link_status") == "up"
        }),
        "replica link never came up"
    );
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(rounds > 0);
    converge(
        &[&master, &replica],
        "shardis replica after a full sync under writes",
    );
    stock.converges_to(&digest(&mut c));
}

fn stat(s: &Server, field: &str) -> String {
    common::info(&mut s.client(), "stats")
        .get(field)
        .cloned()
        .unwrap_or_default()
}

/// PSYNC2 after a promotion: two replicas of one master; the first is promoted with
/// `REPLICAOF NO ONE` and written to, the second is pointed at it and continues with
/// `+CONTINUE` from the promoted node's backlog (the old master's stream, then its own):
/// no full sync (`sync_full:0`, `sync_partial_ok:1`) and equal digests.
#[test]
fn the_other_replica_continues_partially_from_a_promoted_one() {
    let _one_at_a_time = serial();
    for shards in common::shard_counts() {
        let m = node(shards, &[]);
        let port = m.port.to_string();
        let r1 = node(2, &["--replicaof", "127.0.0.1", &port]);
        let r2 = node(1, &["--replicaof", "127.0.0.1", &port]);
        let mut mc = m.client();
        for s in [&r1, &r2] {
            assert!(common::wait_for(Duration::from_secs(10), || info(
                s,
                "master_link_status"
            ) == "up"));
        }
        workload(&mut mc, 1);
        converge(&[&m, &r1, &r2], "before the promotion");
        // Freeze the master, then let both replicas take in everything it sent (an expiry's
        // DEL or a PING may still be on its way to one of them): PSYNC2 continues only a
        // replica that is not ahead of the promoted one, as in Redis.
        m.signal("STOP");
        assert!(common::wait_for(Duration::from_secs(10), || {
            let o1 = info(&r1, "slave_repl_offset");
            !o1.is_empty() && o1 == info(&r2, "slave_repl_offset")
        }));
        drop(m);

        let mut c1 = r1.client();
        let _: () = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query(&mut c1)
            .unwrap();
        // Writable at once: the OK comes once the node ships its journal.
        let _: () = redis::cmd("SET")
            .arg("first")
            .arg(1)
            .query(&mut c1)
            .unwrap();
        assert_eq!(info(&r1, "role"), "master");
        let promoted_at: i64 = info(&r1, "second_repl_offset").parse().unwrap();
        assert!(promoted_at > 1, "second_repl_offset {promoted_at}");

        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(r1.port)
            .query(&mut r2.client())
            .unwrap();
        assert!(common::wait_for(Duration::from_secs(10), || info(
            &r2,
            "master_link_status"
        ) == "up"));
        // Held writes on every shard of the promoted node are acknowledged (each shard's
        // stream starts where it began shipping).
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-ack")
            .arg(1)
            .query(&mut c1)
            .unwrap();
        workload(&mut c1, 2);
        converge(&[&r1, &r2], "after the promotion");
        // Partial, never full (a link that dropped under load may continue partially again).
        let partial: u64 = stat(&r1, "sync_partial_ok").parse().unwrap_or(0);
        assert!(partial >= 1, "shards {shards}: sync_partial_ok {partial}");
        assert_eq!(stat(&r1, "sync_full"), "0", "shards {shards}");
        // The stream goes on from there.
        workload(&mut c1, 3);
        converge(&[&r1, &r2], "after more writes");
    }
}

/// `min-replicas-ack`: a write's reply comes once a replica holds it; without enough
/// replicas writes are refused before they run, and a replica that stops acknowledging
/// (SIGSTOP) turns the held reply into `-NOREPLICAS` after the timeout, while other
/// clients of the master are served meanwhile. Pipelined writes keep their order.
#[test]
fn min_replicas_ack_holds_replies_until_a_replica_has_the_write() {
    let _one_at_a_time = serial();
    for shards in common::shard_counts() {
        let m = node(
            shards,
            &[
                "--min-replicas-ack",
                "1",
                "--min-replicas-ack-timeout",
                "800",
            ],
        );
        let mut c = m.client();
        let e = redis::cmd("SET")
            .arg("k")
            .arg(1)
            .query::<()>(&mut c)
            .unwrap_err();
        assert_eq!(e.code(), Some("NOREPLICAS"), "{e:?}");
        let get: Option<String> = redis::cmd("GET").arg("k").query(&mut c).unwrap();
        assert_eq!(get, None, "a refused write must not run");

        let port = m.port.to_string();
        let r = node(1, &["--replicaof", "127.0.0.1", &port]);
        assert!(common::wait_for(Duration::from_secs(10), || {
            redis::cmd("SET")
                .arg("k")
                .arg(1)
                .query::<()>(&mut c)
                .is_ok()
        }));
        // Every acknowledged write is on the replica when its reply arrives.
        let mut rc = r.client();
        for i in 0..50 {
            let _: () = redis::cmd("SET")
                .arg(format!("a{i}"))
                .arg(i)
                .query(&mut c)
                .unwrap();
            let _: i64 = redis::cmd("INCR").arg("n").query(&mut c).unwrap();
            let v: Option<i64> = redis::cmd("GET").arg("n").query(&mut rc).unwrap();
            // The replica applied the INCR (it acknowledged it) before the reply came.
            assert_eq!(v, Some(i + 1), "shards {shards}");
        }
        // A pipeline across shards: replies in order, each after its acknowledgement.
        let mut p = redis::pipe();
        for i in 0..20 {
            p.cmd("SET").arg(format!("p{i}")).arg(i);
            p.cmd("GET").arg(format!("p{i}"));
        }
        p.cmd("MSET").arg("x{1}").arg(1).arg("y{2}").arg(2);
        let out: Vec<redis::Value> = p.query(&mut c).unwrap();
        assert_eq!(out.len(), 41);
        assert_eq!(out[1], redis::Value::BulkString(b"0".to_vec()));
        assert_eq!(out[39], redis::Value::BulkString(b"19".to_vec()));

        // The replica stops acknowledging: the write runs, its reply is the error.
        assert_eq!(
            info(&m, "connected_slaves"),
            "1",
            "shards {shards}: one replica only"
        );
        r.signal("STOP");
        let t0 = std::time::Instant::now();
        let held = std::thread::spawn(move || {
            let e = redis::cmd("SET")
                .arg("late")
                .arg(1)
                .query::<()>(&mut c)
                .unwrap_err();
            (e, t0.elapsed(), c)
        });
        // Meanwhile the shards serve other clients at once.
        std::thread::sleep(Duration::from_millis(100));
        let mut other = m.client();
        let t1 = std::time::Instant::now();
        let _: Option<String> = redis::cmd("GET").arg("a1").query(&mut other).unwrap();
        assert!(
            t1.elapsed() < Duration::from_millis(500),
            "{:?}",
            t1.elapsed()
        );
        let (e, took, mut c) = held.join().unwrap();
        assert_eq!(e.code(), Some("NOREPLICAS"), "{e:?}");
        assert!(took >= Duration::from_millis(700), "{took:?}");
        // The write itself ran here; the next command of this client is answered.
        let get: Option<String> = redis::cmd("GET").arg("late").query(&mut c).unwrap();
        assert_eq!(get.as_deref(), Some("1"));
        r.signal("CONT");
    }
}

/// Transactions under `min-replicas-to-write` and `min-replicas-ack`, as Redis's
/// processCommand treats them: EXEC counts as a write only if a write is queued (a read-only
/// transaction runs without replicas), a write refused while queuing aborts EXEC, and an EXEC
/// refused because the replicas went away discards the transaction (EXECABORT ... because
/// of: NOREPLICAS), leaving the client out of MULTI. Byte for byte against redis-server.
#[test]
fn transactions_under_the_replica_gates() {
    let _one_at_a_time = serial();
    use common::resp::{encode_command, Client, Redis};
    fn run(c: &mut Client, cmds: &[&[&str]]) -> Vec<Vec<u8>> {
        cmds.iter()
            .map(|a| {
                let args: Vec<Vec<u8>> = a.iter().map(|s| s.as_bytes().to_vec()).collect();
                c.send(&encode_command(&args)).unwrap();
                c.read_reply().unwrap()
            })
            .collect()
    }
    let script: &[&[&str]] = &[
        &["MULTI"],
        &["GET", "k"],
        &["EXISTS", "k"],
        &["EXEC"],
        &["MULTI"],
        &["GET", "k"],
        &["SET", "k", "1"],
        &["EXEC"],
        &["PING"],
    ];
    let redis = Redis::start_with(&["--min-replicas-to-write", "1"]);
    let want = run(&mut Client::connect(redis.port), script);
    assert_eq!(
        want[3], b"*2\r\n$-1\r\n:0\r\n",
        "redis: a read-only EXEC runs"
    );
    for flags in [
        &["--min-replicas-to-write", "1"][..],
        &["--min-replicas-ack", "1"][..],
    ] {
        let s = node(2, flags);
        let got = run(&mut Client::connect(s.port), script);
        let show = |v: &Vec<Vec<u8>>| {
            v.iter()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(show(&got), show(&want), "{flags:?}");
    }

    // The replica goes away between queuing and EXEC: the EXEC is refused and discards.
    let master = node(
        2,
        &[
            "--min-replicas-to-write",
            "1",
            "--min-replicas-max-lag",
            "1",
        ],
    );
    let r = node(1, &["--replicaof", "127.0.0.1", &master.port.to_string()]);
    let mut other = master.client();
    let writes = |c: &mut redis::Connection| redis::cmd("SET").arg("w").arg(1).query::<()>(c);
    assert!(common::wait_for(Duration::from_secs(10), || writes(
        &mut other
    )
    .is_ok()));
    let mut c = Client::connect(master.port);
    let queued = run(&mut c, &[&["MULTI"], &["SET", "k", "1"], &["INCR", "n"]]);
    assert_eq!(queued[2], b"+QUEUED\r\n");
    r.signal("STOP");
    assert!(common::wait_for(Duration::from_secs(10), || writes(
        &mut other
    )
    .is_err()));
    let after = run(&mut c, &[&["EXEC"], &["PING"], &["GET", "k"]]);
    r.signal("CONT");
    assert_eq!(
        String::from_utf8_lossy(&after[0]),
        "-EXECABORT Transaction discarded because of: NOREPLICAS Not enough good replicas \
         to write.\r\n"
    );
    assert_eq!(
        after[1], b"+PONG\r\n",
        "out of MULTI after the refused EXEC"
    );
    assert_eq!(after[2], b"$-1\r\n", "nothing of it ran");
}

fn replicaof(s: &Server, master: Option<&Server>) {
    let (h, p) = match master {
        Some(m) => ("127.0.0.1".to_string(), m.port.to_string()),
        None => ("NO".to_string(), "ONE".to_string()),
    };
    let _: () = redis::cmd("REPLICAOF")
        .arg(h)
        .arg(p)
        .query(&mut s.client())
        .unwrap();
}

fn link_up(s: &Server) -> bool {
    info(s, "master_link_status") == "up"
}

/// Every node reports the replication id and offset of the first.
fn same_stream(nodes: &[&Server], what: &str) {
    let mut last = Vec::new();
    let ok = common::wait_for(Duration::from_secs(10), || {
        last = nodes
            .iter()
            .map(|s| (info(s, "master_replid"), info(s, "master_repl_offset")))
            .collect::<Vec<_>>();
        last.iter().all(|x| *x == last[0])
    });
    assert!(ok, "{what}: replication ids and offsets differ: {last:?}");
}

/// A replica relays its master's stream to its own replicas byte for byte, as Redis
/// proxies it: every hop reports the master's replication id and offset (the middle
/// node sends no PINGs of its own), so the chained replica resyncs partially straight
/// from the master. When the middle node takes a full sync from another master, its
/// replica is sent to resync and follows the new data; once the middle node is promoted,
/// its replica continues partially and learns the new replication id.
#[test]
fn a_chained_replica_relays_the_masters_stream_and_offsets() {
    let _one_at_a_time = serial();
    let master = node(2, &[]);
    let mut mc = master.client();
    workload(&mut mc, 1);
    let mport = master.port.to_string();
    let a = node(
        2,
        &[
            "--replicaof",
            "127.0.0.1",
            &mport,
            "--repl-ping-replica-period",
            "1",
        ],
    );
    let aport = a.port.to_string();
    let b = node(1, &["--replicaof", "127.0.0.1", &aport]);
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&a) && link_up(&b)));
    workload(&mut mc, 2);
    converge(&[&master, &a, &b], "through the chain");
    // Pings of its own, once a second, would put the chained replica ahead of the master.
    std::thread::sleep(Duration::from_millis(2500));
    same_stream(&[&master, &a, &b], "through the chain");
    // WAIT on a replica is refused, in Redis's words.
    let err = redis::cmd("WAIT")
        .arg(0)
        .arg(10)
        .query::<i64>(&mut a.client())
        .unwrap_err();
    assert_eq!(
        err.detail(),
        Some(
            "WAIT cannot be used with replica instances. Please also note that since Redis \
             4.0 if a replica is configured to be writable (which is not the default) writes \
             to replicas are just local and are not propagated."
        ),
        "{err}"
    );

    // Straight from the master: a partial resync, at the same offset.
    let partial: u64 = stat(&master, "sync_partial_ok").parse().unwrap_or(0);
    replicaof(&b, Some(&master));
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&b)));
    assert_eq!(
        stat(&master, "sync_partial_ok"),
        (partial + 1).to_string(),
        "partial resync"
    );
    workload(&mut mc, 3);
    converge(&[&master, &a, &b], "the chained replica on the master");
    replicaof(&b, Some(&a));
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&b)));
    workload(&mut mc, 4);
    converge(&[&master, &a, &b], "back behind the middle node");

    // The middle node follows another master with other data: its replica follows too.
    let other = node(1, &[]);
    let mut oc = other.client();
    let _: () = redis::cmd("SET")
        .arg("only")
        .arg("other")
        .query(&mut oc)
        .unwrap();
    workload(&mut oc, 7);
    replicaof(&a, Some(&other));
    converge(&[&other, &a, &b], "after the middle node's full sync");
    same_stream(&[&other, &a, &b], "after the middle node's full sync");
    let v: String = redis::cmd("GET")
        .arg("only")
        .query(&mut b.client())
        .unwrap();
    assert_eq!(v, "other");

    // The middle node is promoted: its replica continues with it, under the new id.
    replicaof(&a, None);
    let mut ac = a.client();
    workload(&mut ac, 8);
    converge(&[&a, &b], "after the promotion");
    same_stream(&[&a, &b], "after the promotion");
    assert_eq!(info(&a, "role"), "master");
}

/// A job queue as BullMQ, Celery and RQ run it: workers blocked in BLMOVE, BRPOP and
/// BZPOPMIN are woken by the producer's pushes (a pop served later is a write of its own);
/// a shardis replica and a stock redis-server replica of the master end with its digest.
#[test]
fn replicas_follow_a_job_queue_of_blocked_workers() {
    let _one_at_a_time = serial();
    let master = node(2, &[]);
    let port = master.port;
    let replica = node(1, &["--replicaof", "127.0.0.1", &port.to_string()]);
    let stock = StockReplica::of(port, "queue");
    assert!(common::wait_for(Duration::from_secs(30), || link_up(
        &replica
    )));
    let conn = move || {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .unwrap()
            .get_connection()
            .unwrap()
    };
    // Workers: each waits up to a second for a job, then stops.
    let mut workers = Vec::new();
    for w in 0..3 {
        workers.push(std::thread::spawn(move || {
            let mut c = conn();
            let mut n = 0;
            loop {
                let (list, job): (String, String) = match w {
                    0 => {
                        let j: Option<String> = redis::cmd("BLMOVE")
                            .arg("wait")
                            .arg("active")
                            .arg("RIGHT")
                            .arg("LEFT")
                            .arg(1)
                            .query(&mut c)
                            .unwrap();
                        match j {
                            Some(j) => ("active".into(), j),
                            None => return n,
                        }
                    }
                    1 => {
                        let j: Option<(String, String)> = redis::cmd("BRPOP")
                            .arg("wait")
                            .arg("urgent")
                            .arg(1)
                            .query(&mut c)
                            .unwrap();
                        match j {
                            Some((_, j)) => (String::new(), j),
                            None => return n,
                        }
                    }
                    _ => {
                        let j: Option<(String, String, String)> = redis::cmd("BZPOPMIN")
                            .arg("delayed")
                            .arg(1)
                            .query(&mut c)
                            .unwrap();
                        match j {
                            Some((_, j, _)) => (String::new(), j),
                            None => return n,
                        }
                    }
                };
                if !list.is_empty() {
                    let _: i64 = redis::cmd("LREM")
                        .arg(&list)
                        .arg(1)
                        .arg(&job)
                        .query(&mut c)
                        .unwrap();
                }
                let _: i64 = redis::cmd("LPUSH")
                    .arg("done")
                    .arg(&job)
                    .query(&mut c)
                    .unwrap();
                n += 1;
            }
        }));
    }
    let mut c = master.client();
    for i in 0..1500 {
        let _: i64 = redis::cmd("LPUSH")
            .arg("wait")
            .arg(format!("job{i}"))
            .query(&mut c)
            .unwrap();
        if i % 4 == 0 {
            let _: i64 = redis::cmd("ZADD")
                .arg("delayed")
                .arg(i)
                .arg(format!("later{i}"))
                .query(&mut c)
                .unwrap();
        }
        if i % 200 == 0 {
            std::thread::sleep(Duration::from_millis(30));
        }
    }
    let served: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    let done: u64 = redis::cmd("LLEN").arg("done").query(&mut c).unwrap();
    assert_eq!(served, 1500 + 375, "every job served once");
    assert_eq!(done, served);
    converge(&[&master, &replica], "shardis replica of a job queue");
    stock.converges_to(&digest(&mut c));
}

/// `replica-announce-ip` / `-port` are what the master lists (INFO, ROLE: what Sentinel
/// dials), `replica-announced no` is what the replica's INFO says; CONFIG SET changes the
/// address for the next handshake.
#[test]
fn replicas_announce_the_address_they_are_told() {
    let _one_at_a_time = serial();
    let master = node(1, &[]);
    let mport = master.port.to_string();
    let r = node(
        1,
        &[
            "--replicaof",
            "127.0.0.1",
            &mport,
            "--replica-announce-ip",
            "10.1.2.3",
            "--replica-announce-port",
            "7777",
            "--replica-announced",
            "no",
        ],
    );
    assert!(common::wait_for(Duration::from_secs(20), || info(
        &master, "slave0"
    )
    .starts_with("ip=10.1.2.3,port=7777,state=online")));
    let role: redis::Value = redis::cmd("ROLE").query(&mut master.client()).unwrap();
    assert!(format!("{role:?}").contains("10.1.2.3"), "{role:?}");
    assert_eq!(info(&r, "replica_announced"), "0");
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slave-announce-port")
        .query(&mut r.client())
        .unwrap();
    assert_eq!(got, vec!["slave-announce-port", "7777"]);

    // A new address takes effect on the next handshake.
    let mut rc = r.client();
    for (k, v) in [("replica-announce-ip", ""), ("replica-announce-port", "0")] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(k)
            .arg(v)
            .query(&mut rc)
            .unwrap();
    }
    let err = redis::cmd("CONFIG")
        .arg("SET")
        .arg("replica-announce-port")
        .arg("70000")
        .query::<()>(&mut rc)
        .unwrap_err();
    assert!(err.to_string().contains("between 0 and 65535"), "{err}");
    replicaof(&r, None);
    replicaof(&r, Some(&master));
    let want = format!("ip=127.0.0.1,port={},state=online", r.port);
    assert!(common::wait_for(Duration::from_secs(20), || info(
        &master, "slave0"
    )
    .starts_with(&want)));
}

/// A sub-replica's full sync from a replica while the master takes non-idempotent writes
/// (INCR, RPUSH, cross-shard MSET in MULTI): the middle node holds its link at a command
/// boundary for the cut, so the RDB plus the relayed stream applies each write exactly
/// once; all three end with the master's digest, twice over.
#[test]
fn a_sub_replica_syncs_from_a_replica_under_writes() {
    let _one_at_a_time = serial();
    let master = node(2, &[]);
    let mport = master.port.to_string();
    let a = node(2, &["--replicaof", "127.0.0.1", &mport]);
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&a)));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = master.port;
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
                .unwrap()
                .get_connection()
                .unwrap();
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut p = redis::pipe();
                for i in 0..20 {
                    p.cmd("INCR").arg(format!("n{}", i % 7)).ignore();
                    p.cmd("RPUSH").arg(format!("l{}", i % 3)).arg(n).ignore();
                }
                p.atomic()
                    .cmd("MSET")
                    .arg("x")
                    .arg(n)
                    .arg("y")
                    .arg(n)
                    .ignore()
                    .cmd("INCRBY")
                    .arg("total")
                    .arg(2)
                    .ignore();
                p.query::<()>(&mut c).unwrap();
                n += 1;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let aport = a.port.to_string();
    let b = node(1, &["--replicaof", "127.0.0.1", &aport]);
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&b)));
    // A second sub-replica while the stream keeps flowing.
    std::thread::sleep(Duration::from_millis(200));
    let b2 = node(3, &["--replicaof", "127.0.0.1", &aport]);
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&b2)));
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    assert!(
        rounds > 10,
        "the writer ran during the syncs ({rounds} rounds)"
    );
    converge(&[&master, &a, &b, &b2], "sub-replicas synced under writes");
    same_stream(&[&master, &a, &b, &b2], "sub-replicas synced under writes");
}

/// INFO stats counts replication traffic apart, as Redis 7.0: the master's bytes to its
/// replica in total_net_repl_output_bytes, the replica's bytes from its master in
/// total_net_repl_input_bytes (client traffic stays in total_net_*_bytes), and the reads
/// and writes processed.
#[test]
fn info_counts_replication_traffic_apart() {
    let _one_at_a_time = serial();
    let master = node(1, &[]);
    let mport = master.port.to_string();
    let r = node(1, &["--replicaof", "127.0.0.1", &mport]);
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&r)));
    let mut c = master.client();
    let value = "v".repeat(1000);
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query(&mut c)
            .unwrap();
    }
    let num = |s: &Server, f: &str| stat(s, f).parse::<u64>().unwrap_or(0);
    // 100 writes of 1 KB went to the replica: at least that many bytes each way.
    assert!(common::wait_for(Duration::from_secs(20), || {
        num(&master, "total_net_repl_output_bytes") > 100_000
            && num(&r, "total_net_repl_input_bytes") > 100_000
    }));
    // The replica's clients sent little: the master's stream is not counted as theirs.
    assert!(num(&r, "total_net_input_bytes") < 10_000);
    assert!(num(&master, "total_reads_processed") >= 100);
    assert!(num(&master, "total_writes_processed") >= 100);
    assert_eq!(stat(&master, "io_threaded_reads_processed"), "0");
}

fn functions(s: &Server) -> Vec<String> {
    let v: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut s.client())
        .unwrap();
    let mut names = Vec::new();
    if let redis::Value::Array(libs) = v {
        for lib in libs {
            if let redis::Value::Array(fields) = lib {
                let mut it = fields.iter();
                while let Some(k) = it.next() {
                    let val = it.next();
                    if matches!(k, redis::Value::BulkString(b) if b == b"library_name") {
                        if let Some(redis::Value::BulkString(n)) = val {
                            names.push(String::from_utf8_lossy(n).into_owned());
                        }
                    }
                }
            }
        }
    }
    names.sort();
    names
}

/// Function libraries reach replicas as Redis's do: in the full sync's RDB, then FUNCTION
/// LOAD / DELETE / FLUSH in the stream; a replica refuses them from clients.
#[test]
fn function_libraries_reach_replicas() {
    let _one = serial();
    let master = node(2, &[]);
    let mut mc = master.client();
    let lib = |n: &str| {
        format!("#!lua name={n}\nredis.register_function('{n}_f', function() return 1 end)")
    };
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(lib("early"))
        .query(&mut mc)
        .unwrap();
    let replica = node(1, &[]);
    replicaof(&replica, Some(&master));
    assert!(common::wait_for(Duration::from_secs(20), || link_up(
        &replica
    )));
    assert_eq!(functions(&replica), ["early"], "through the full sync");
    let _: String = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(lib("late"))
        .query(&mut mc)
        .unwrap();
    let _: () = redis::cmd("FUNCTION")
        .arg("DELETE")
        .arg("early")
        .query(&mut mc)
        .unwrap();
    assert!(
        common::wait_for(Duration::from_secs(10), || functions(&replica) == ["late"]),
        "through the stream: {:?}",
        functions(&replica)
    );
    let e = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg(lib("local"))
        .query::<String>(&mut replica.client())
        .unwrap_err();
    assert!(e.to_string().contains("read only replica"), "{e}");
    let _: () = redis::cmd("FUNCTION").arg("FLUSH").query(&mut mc).unwrap();
    assert!(common::wait_for(Duration::from_secs(10), || functions(
        &replica
    )
    .is_empty()));
}

/// The master batches the stream for its replicas over a short window (one send per
/// window, not per loop pass); a lone write on an idle master must still leave when the
/// window ends, not with the next write or the next PING (10 s here). Twenty writes, each
/// alone, each seen on the replica (a stock Redis one and a shardis one) well within a
/// second; the median within 50 ms.
#[test]
fn a_lone_write_reaches_the_replicas_promptly() {
    let _one_at_a_time = serial();
    let master = node(2, &[]);
    let mport = master.port.to_string();
    let r = node(1, &["--replicaof", "127.0.0.1", &mport]);
    let stock = StockReplica::of(master.port, "lone");
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&r)));
    assert!(common::wait_for(Duration::from_secs(20), || {
        info(&master, "connected_slaves") == "2"
    }));
    let mut c = master.client();
    let mut rc = r.client();
    let mut sc = redis::Client::open(format!("redis://127.0.0.1:{}", stock.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut took = Vec::new();
    for i in 0..20 {
        let key = format!("lone{i}");
        let t = std::time::Instant::now();
        let _: () = redis::cmd("SET").arg(&key).arg(i).query(&mut c).unwrap();
        for conn in [&mut rc, &mut sc] {
            let seen = common::wait_for(Duration::from_secs(5), || {
                redis::cmd("EXISTS")
                    .arg(&key)
                    .query::<i64>(&mut *conn)
                    .unwrap_or(0)
                    == 1
            });
            assert!(seen, "{key} did not reach a replica within 5 s");
        }
        took.push(t.elapsed());
        // Idle between writes: nothing else would carry the stream out.
        std::thread::sleep(Duration::from_millis(20));
    }
    took.sort();
    assert!(took[19] < Duration::from_secs(1), "slowest: {:?}", took[19]);
    assert!(
        took[10] < Duration::from_millis(50),
        "median: {:?}",
        took[10]
    );
}

/// A master command that spans the replica's shards must see the keys the master saw. A
/// replica that falls behind (SIGSTOP) applies the master's writes after a key's TTL has
/// passed on its own clock; the master ran them while the key was live, and only the
/// master's `DEL` (which comes after them in the stream) removes it. Set algebra, RENAME
/// and MULTI/EXEC across the replica's four shards must use the key, or the replica keeps a
/// different `dst` for good.
#[test]
fn cross_shard_commands_from_the_master_see_keys_the_replica_clock_expired() {
    use shardis::shard::route::shard_of;
    let _one_at_a_time = serial();
    let master = node(1, &[]);
    let mport = master.port.to_string();
    let r = node(4, &["--replicaof", "127.0.0.1", &mport]);
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&r)));
    // Keys on distinct replica shards: src (expiring), other, and destinations.
    let pick = |shard: usize, tag: &str| {
        (0..)
            .map(|i| format!("{tag}{i}"))
            .find(|k| shard_of(k.as_bytes(), 4) == shard)
            .unwrap()
    };
    let (src, other, dst, moved, txdst) = (
        pick(0, "src"),
        pick(1, "other"),
        pick(2, "dst"),
        pick(3, "moved"),
        pick(3, "txdst"),
    );
    let mut c = master.client();
    let _: () = redis::cmd("SADD")
        .arg(&other)
        .arg("y")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("plain")
        .arg("1")
        .query(&mut c)
        .unwrap();
    converge(&[&master, &r], "before the pause");
    r.signal("STOP");
    let _: () = redis::cmd("SADD").arg(&src).arg("x").query(&mut c).unwrap();
    let _: () = redis::cmd("PEXPIRE")
        .arg(&src)
        .arg(400)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SUNIONSTORE")
        .arg(&dst)
        .arg(&src)
        .arg(&other)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("SMEMBERS").arg(&dst).query(&mut c).unwrap();
    // MULTI/EXEC across shards reading the expiring key.
    let _: () = redis::pipe()
        .atomic()
        .cmd("SINTERSTORE")
        .arg(&txdst)
        .arg(&src)
        .arg(&src)
        .ignore()
        .cmd("SET")
        .arg("plain")
        .arg("2")
        .ignore()
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("COPY")
        .arg(&src)
        .arg(&moved)
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("PERSIST").arg(&moved).query(&mut c).unwrap();
    // The replica wakes after the TTL: it applies all of the above on a clock past it.
    std::thread::sleep(Duration::from_millis(700));
    r.signal("CONT");
    converge(&[&master, &r], "after the replica resumed");
    let mut rc = r.client();
    let mut members: Vec<String> = redis::cmd("SMEMBERS").arg(&dst).query(&mut rc).unwrap();
    members.sort();
    assert_eq!(members, ["x", "y"]);
    let tx: Vec<String> = redis::cmd("SMEMBERS").arg(&txdst).query(&mut rc).unwrap();
    assert_eq!(tx, ["x"]);
    let copied: Vec<String> = redis::cmd("SMEMBERS").arg(&moved).query(&mut rc).unwrap();
    assert_eq!(copied, ["x"]);
}

/// `repl-timeout` on the master: a replica frozen (SIGSTOP) past it is dropped (Redis's
/// "Disconnecting timedout replica"), the master keeps taking writes, and once the replica
/// resumes it reconnects, continues with a partial resync and converges.
#[test]
fn a_frozen_replica_is_dropped_past_repl_timeout_and_resyncs() {
    let _one_at_a_time = serial();
    let master = node(2, &["--repl-timeout", "2"]);
    let mport = master.port.to_string();
    let r = node(1, &["--replicaof", "127.0.0.1", &mport]);
    assert!(common::wait_for(Duration::from_secs(20), || link_up(&r)));
    let mut c = master.client();
    workload(&mut c, 0);
    converge(&[&master, &r], "before the freeze");
    let partial = stat(&master, "sync_partial_ok").parse::<u64>().unwrap_or(0);
    r.signal("STOP");
    let frozen = std::time::Instant::now();
    let dropped = common::wait_for(Duration::from_secs(8), || {
        let _: () = redis::cmd("INCR").arg("during").query(&mut c).unwrap();
        info(&master, "connected_slaves") == "0"
    });
    assert!(dropped, "the frozen replica was never dropped");
    // Dropped past the timeout (2 s) since its last acknowledgement, which came up to a
    // second before the freeze (replicas acknowledge once a second): not at once.
    assert!(
        frozen.elapsed() >= Duration::from_secs(1),
        "{:?}",
        frozen.elapsed()
    );
    workload(&mut c, 1);
    r.signal("CONT");
    assert!(common::wait_for(Duration::from_secs(20), || {
        info(&master, "connected_slaves") == "1" && link_up(&r)
    }));
    converge(&[&master, &r], "after the replica resumed");
    assert_eq!(
        stat(&master, "sync_partial_ok").parse::<u64>().unwrap_or(0),
        partial + 1,
        "the replica should continue partially"
    );
}
