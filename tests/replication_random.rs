//! Live replication under the journal replay test's random workload (every write family,
//! blocking pops woken by other clients, cross-shard moves and STORE forms, MULTI/EXEC over
//! several shards, scripts, SWAPDB, FLUSHDB, keys expiring during the run), from three
//! clients at once on a `--shards 4` master. Its replicas come in every shape: `--shards 1`,
//! `--shards 3`, a `--shards 2` replica of the 3-shard one (a chain), and a stock
//! redis-server. All of them must end with the master's `DEBUG DIGEST`: a write that missed
//! the stream, or was applied out of order, would show here.

mod common;
#[path = "common/workload.rs"]
mod workload;

use std::time::Duration;

use common::Server;

fn node(shards: usize, master: Option<u16>) -> Server {
    let port = master.map(|p| p.to_string());
    let mut args = vec!["--enable-debug-command", "yes", "--save", ""];
    if let Some(p) = port.as_deref() {
        args.extend_from_slice(&["--replicaof", "127.0.0.1", p]);
    }
    Server::start_with(shards, &args)
}

fn conn(port: u16) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn link_up(port: u16) -> bool {
    common::info(&mut conn(port), "replication")
        .get("master_link_status")
        .is_some_and(|s| s == "up")
}

fn digest(port: u16) -> String {
    redis::cmd("DEBUG")
        .arg("DIGEST")
        .query(&mut conn(port))
        .unwrap_or_default()
}

#[test]
fn replicas_of_every_shape_converge_under_a_random_workload() {
    let master = node(4, None);
    let one = node(1, Some(master.port));
    let three = node(3, Some(master.port));
    let chained = node(2, Some(three.port));
    let dir = common::fresh_dir("shardis-random-stock-replica", master.port);
    let stock = common::resp::Redis::start_with(&[
        "--replicaof",
        "127.0.0.1",
        &master.port.to_string(),
        "--enable-debug-command",
        "yes",
        "--dir",
        dir.to_str().unwrap(),
    ]);
    let replicas = [one.port, three.port, chained.port, stock.port];
    assert!(
        common::wait_for(Duration::from_secs(30), || replicas
            .iter()
            .all(|&p| link_up(p))),
        "every replica link up"
    );

    let port = master.port;
    let clients: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                workload::client_workload(port, 0x5EED_0000 + i * 7919, 1200)
            })
        })
        .collect();
    let mut c = master.client();
    std::thread::sleep(Duration::from_millis(50));
    for _ in 0..2 {
        let _: () = redis::cmd("SWAPDB").arg(0).arg(1).query(&mut c).unwrap();
    }
    for t in clients {
        t.join().unwrap();
    }
    let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
    let _: () = redis::cmd("FLUSHDB").query(&mut c).unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    workload::client_workload(port, 77, 400);

    let mut last = Vec::new();
    let same = common::wait_for(Duration::from_secs(40), || {
        let want = digest(master.port);
        last = replicas.iter().map(|&p| digest(p)).collect();
        last.iter().all(|d| *d == want) && want != "0".repeat(40)
    });
    assert!(
        same,
        "master {} vs replicas (1 shard, 3 shards, chained, redis-server) {last:?}",
        digest(master.port)
    );
    drop(stock);
    let _ = std::fs::remove_dir_all(&dir);
}
