//! FAILOVER (Redis 6.2+), with real processes: a shardis master hands over to a shardis
//! replica (different shard counts) and to a stock redis-server replica, and a stock Redis
//! master hands over to shardis. Writes that got a reply before or during the failover are
//! all on the new master; the old master follows the new one; the timeout aborts; a target
//! that never answers makes the old master a master again; the errors are Redis's.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;

fn node(shards: usize, extra: &[&str]) -> Server {
    let mut args = vec!["--enable-debug-command", "yes", "--save", ""];
    args.extend_from_slice(extra);
    Server::start_with(shards, &args)
}

fn conn(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn info(port: u16, field: &str) -> String {
    let text: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut conn(port))
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn role(port: u16) -> String {
    let v: Vec<redis::Value> = redis::cmd("ROLE").query(&mut conn(port)).unwrap();
    match v.first() {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    }
}

fn failover(port: u16, args: &[&str]) -> redis::RedisResult<String> {
    redis::cmd("FAILOVER").arg(args).query(&mut conn(port))
}

fn err_text(r: redis::RedisResult<String>) -> String {
    match r {
        Ok(v) => format!("OK:{v}"),
        Err(e) => e.to_string(),
    }
}

fn digest(port: u16) -> String {
    redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut conn(port))
        .unwrap_or_else(|e| format!("error: {e}"))
}

fn synced(master: u16, replicas: usize) -> bool {
    common::wait_for(Duration::from_secs(20), || {
        info(master, "connected_slaves") == replicas.to_string()
            && (0..replicas).all(|i| info(master, &format!("slave{i}")).contains("state=online"))
    })
}

/// A writer that INCRs one counter until stopped; returns how many INCRs got an integer
/// reply (an error, such as READONLY once its server is a replica, is not counted).
fn writer(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    std::thread::spawn(move || {
        let mut c = conn(port);
        let (mut ok, mut err) = (0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            match redis::cmd("INCR").arg("{w}counter").query::<i64>(&mut c) {
                Ok(_) => ok += 1,
                Err(_) => {
                    err += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        (ok, err)
    })
}

/// A 2-shard master with a 4-shard shardis replica and a stock Redis replica, under a
/// stream of INCRs from four clients (spread over the master's shards), fails over to the
/// shardis replica: every INCR that got a reply is on the new master, the old master follows
/// it, the stock replica (still on the old master) gets the new master's writes through
/// it, and all three end with one digest.
#[test]
fn failover_to_a_shardis_replica_loses_no_acknowledged_write() {
    let master = node(2, &[]);
    let mport = master.port.to_string();
    let replica = node(4, &["--replicaof", "127.0.0.1", &mport]);
    let stock = common::resp::Redis::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &mport,
        "--enable-debug-command",
        "yes",
    ]);
    assert!(synced(master.port, 2));
    let mut mc = master.client();
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut mc)
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4).map(|_| writer(master.port, stop.clone())).collect();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert_eq!(
        failover(master.port, &["TO", "127.0.0.1", &replica.port.to_string()]).unwrap(),
        "OK"
    );
    assert!(
        common::wait_for(Duration::from_secs(10), || role(replica.port) == "master"
            && role(master.port) == "slave"
            && info(master.port, "master_link_status") == "up"
            && info(master.port, "master_failover_state") == "no-failover"),
        "roles did not swap: replica {} / master {} ({})",
        role(replica.port),
        role(master.port),
        info(master.port, "master_failover_state"),
    );
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut refused) = (0, 0);
    for w in writers {
        let (o, e) = w.join().unwrap();
        ok += o;
        refused += e;
    }
    // Every INCR that got a reply from the old master happened before the hand-over: the
    // new master has them all, and none of the refused ones.
    let counter: i64 = redis::cmd("GET")
        .arg("{w}counter")
        .query(&mut conn(replica.port))
        .unwrap();
    assert_eq!(
        counter as u64, ok,
        "acknowledged INCRs vs the new master's counter"
    );
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    assert!(took < Duration::from_secs(5), "failover took {took:?}");
    // The new master takes writes; the old master and the stock replica behind it follow.
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut conn(replica.port))
        .unwrap();
    let want = digest(replica.port);
    assert!(
        common::wait_for(Duration::from_secs(20), || digest(master.port) == want
            && digest(stock.port) == want),
        "digests differ after the failover"
    );
    assert_eq!(info(replica.port, "master_failover_state"), "no-failover");
    assert!(err_text(failover(master.port, &[]))
        .contains("FAILOVER is not valid when server is a replica."));
}

/// Handing over to a stock redis-server replica (it understands `PSYNC ... FAILOVER`), and a
/// stock Redis master handing over to shardis (shardis understands it as the target).
#[test]
fn failover_between_shardis_and_stock_redis_both_ways() {
    let master = node(2, &[]);
    let stock = common::resp::Redis::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &master.port.to_string(),
        "--enable-debug-command",
        "yes",
    ]);
    assert!(synced(master.port, 1));
    let mut mc = master.client();
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("a{i}"))
            .arg(i)
            .query(&mut mc)
            .unwrap();
    }
    assert_eq!(
        failover(
            master.port,
            &[
                "TO",
                "127.0.0.1",
                &stock.port.to_string(),
                "TIMEOUT",
                "5000"
            ]
        )
        .unwrap(),
        "OK"
    );
    assert!(common::wait_for(Duration::from_secs(10), || role(
        stock.port
    ) == "master"
        && info(master.port, "master_link_status") == "up"
        && info(master.port, "master_failover_state") == "no-failover"));
    // A partial resync: the stock master accepted our offset.
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut conn(stock.port))
        .unwrap();
    assert!(stats.contains("sync_partial_ok:1"), "{stats}");
    let _: () = redis::cmd("SET")
        .arg("b")
        .arg("1")
        .query(&mut conn(stock.port))
        .unwrap();
    let want = digest(stock.port);
    assert!(
        common::wait_for(Duration::from_secs(20), || digest(master.port) == want),
        "old master {} vs new {want}: {:?} / {:?}",
        digest(master.port),
        redis::cmd("DBSIZE").query::<i64>(&mut conn(master.port)),
        redis::cmd("DBSIZE").query::<i64>(&mut conn(stock.port)),
    );
    drop(master);

    // The other way: stock Redis master, shardis replica taking over.
    let rmaster = common::resp::Redis::start_with(&[
        "--repl-diskless-sync-delay",
        "0",
        "--enable-debug-command",
        "yes",
    ]);
    let target = node(2, &["--replicaof", "127.0.0.1", &rmaster.port.to_string()]);
    assert!(synced(rmaster.port, 1));
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("c{i}"))
            .arg(i)
            .query(&mut conn(rmaster.port))
            .unwrap();
    }
    assert_eq!(
        failover(rmaster.port, &["TO", "127.0.0.1", &target.port.to_string()]).unwrap(),
        "OK"
    );
    assert!(common::wait_for(Duration::from_secs(10), || role(
        target.port
    ) == "master"
        && role(rmaster.port) == "slave"
        && info(rmaster.port, "master_link_status") == "up"));
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut conn(target.port))
        .unwrap();
    assert!(
        stats.contains("sync_partial_ok:1"),
        "shardis target: {stats}"
    );
    let _: () = redis::cmd("SET")
        .arg("d")
        .arg("1")
        .query(&mut conn(target.port))
        .unwrap();
    let want = digest(target.port);
    assert!(common::wait_for(Duration::from_secs(20), || digest(
        rmaster.port
    ) == want));
}

/// No replica catching up: the wait times out and the failover aborts (writes resume); with
/// FORCE the master follows the target anyway, and a target that never answers (SIGSTOP,
/// `repl-timeout 1`) makes it a master again. Redis's errors along the way.
#[test]
fn failover_times_out_aborts_and_reports_redis_errors() {
    let master = node(2, &["--repl-timeout", "1"]);
    let mport = master.port.to_string();
    let replica = node(1, &["--replicaof", "127.0.0.1", &mport]);
    assert!(synced(master.port, 1));
    let rport = replica.port.to_string();
    let e = |args: &[&str]| err_text(failover(master.port, args));
    assert!(e(&["ABORT"]).contains("No failover in progress."));
    assert!(
        e(&["TO", "127.0.0.1", "1"]).contains("FAILOVER target HOST and PORT is not a replica.")
    );
    assert!(e(&["TO", "127.0.0.1", &rport, "FORCE"])
        .contains("FAILOVER with force option requires both a timeout and target HOST and IP."));
    assert!(e(&["TIMEOUT", "0"]).contains("FAILOVER timeout must be greater than 0"));
    assert!(e(&["TO", "127.0.0.1"]).contains("syntax error"));
    assert!(err_text(failover(replica.port, &[]))
        .contains("FAILOVER is not valid when server is a replica."));

    // The replica stops acknowledging: the wait times out.
    replica.signal("STOP");
    std::thread::sleep(Duration::from_millis(100));
    let _: () = redis::cmd("SET")
        .arg("x")
        .arg("1")
        .query(&mut master.client())
        .unwrap();
    assert_eq!(failover(master.port, &["TIMEOUT", "400"]).unwrap(), "OK");
    assert_eq!(
        info(master.port, "master_failover_state"),
        "waiting-for-sync"
    );
    assert!(e(&[]).contains("FAILOVER already in progress."));
    // A write waits for the failover's outcome, then runs here.
    let t = Instant::now();
    let _: () = redis::cmd("SET")
        .arg("y")
        .arg("1")
        .query(&mut master.client())
        .unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(info(master.port, "master_failover_state"), "no-failover");
    assert_eq!(role(master.port), "master");

    // ABORT while waiting.
    assert_eq!(failover(master.port, &[]).unwrap(), "OK");
    assert_eq!(failover(master.port, &["ABORT"]).unwrap(), "OK");
    assert_eq!(info(master.port, "master_failover_state"), "no-failover");
    let _: () = redis::cmd("SET")
        .arg("z")
        .arg("1")
        .query(&mut master.client())
        .unwrap();

    // FORCE after the timeout: the master follows the stopped target, which never answers
    // its PSYNC; past repl-timeout it is a master again and takes writes.
    assert_eq!(
        failover(
            master.port,
            &["TO", "127.0.0.1", &rport, "TIMEOUT", "200", "FORCE"]
        )
        .unwrap(),
        "OK"
    );
    // Following the target meanwhile (read together: the abort comes about a second on).
    assert!(common::wait_for(Duration::from_secs(2), || {
        info(master.port, "master_failover_state") == "failover-in-progress"
            && role(master.port) == "slave"
    }));
    assert!(
        common::wait_for(Duration::from_secs(10), || role(master.port) == "master"
            && info(master.port, "master_failover_state") == "no-failover"),
        "the aborted failover did not make it a master again"
    );
    let _: () = redis::cmd("SET")
        .arg("w")
        .arg("1")
        .query(&mut master.client())
        .unwrap();
    replica.signal("CONT");
    // The replica resyncs from it and converges.
    let want = digest(master.port);
    assert!(common::wait_for(Duration::from_secs(20), || digest(
        replica.port
    ) == want));
}
