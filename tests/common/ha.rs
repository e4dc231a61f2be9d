//! Multi-process high-availability fixtures shared by the sentinel and failover tests:
//! data nodes and sentinels as child processes on loopback ports (killed on drop, scratch
//! directories removed), and the queries the tests poll. Include with
//! `#[path = "common/ha.rs"] mod ha;` next to `mod common;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::common::{self, free_port, wait_for};

pub const NAME: &str = "mymaster";

/// A child process killed on drop, with its scratch directory removed.
pub struct Proc {
    pub port: u16,
    pub child: Child,
    pub dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("connect")
    }
    /// Sends a signal by name (`STOP`, `CONT`) with kill(1).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status();
    }
    pub fn try_conn(&self) -> Option<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
            .ok()
    }
}

pub fn scratch(tag: &str, port: u16) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "shardis-sentinel-test-{}-{tag}-{port}",
        std::process::id()
    ));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Starts the shardis binary (`SHARDIS_BIN` overrides the one cargo built, so long
/// measurements can run a fixed copy while the tree is rebuilt).
pub fn spawn(args: &[String], port: u16, dir: PathBuf) -> Proc {
    let bin = common::bin();
    spawn_prog(&bin.to_string_lossy(), args, port, dir)
}

pub fn spawn_prog(prog: &str, args: &[String], port: u16, dir: PathBuf) -> Proc {
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    if std::env::var_os("SHARDIS_TEST_LOG").is_none() {
        cmd.stderr(Stdio::null());
    }
    let child = cmd.spawn().expect("start shardis");
    let p = Proc { port, child, dir };
    assert!(
        wait_for(Duration::from_secs(10), || common::ping(port)),
        "process on port {port} did not answer PING"
    );
    p
}

/// A data node on `port`, optionally a replica of `master`.
pub fn node(port: u16, shards: usize, master: Option<u16>) -> Proc {
    node_with(port, shards, master, &[])
}

/// A data node with extra flags.
pub fn node_with(port: u16, shards: usize, master: Option<u16>, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = ["--port", &port.to_string(), "--shards", &shards.to_string()]
        .map(str::to_string)
        .to_vec();
    args.extend(["--save".into(), String::new()]);
    if let Some(m) = master {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    spawn(&args, port, scratch("node", port))
}

/// A stock redis-server 7.0 data node on `port` (Debian's package), optionally a replica
/// of `master`, in its own scratch directory.
pub fn stock_node(port: u16, master: Option<u16>) -> Proc {
    let mut args: Vec<String> = ["--port", &port.to_string(), "--bind", "127.0.0.1"]
        .map(str::to_string)
        .to_vec();
    args.extend([
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
    ]);
    if let Some(m) = master {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
    }
    spawn_prog("redis-server", &args, port, scratch("stock-node", port))
}

/// A master and two replicas of stock redis-server, watched by shardis sentinels (the
/// other direction of `cluster_of(&[Kind::Stock; 3])`), after discovery.
pub fn stock_nodes_cluster() -> Cluster {
    let master = stock_node(free_port(), None);
    let replicas = vec![
        stock_node(free_port(), Some(master.port)),
        stock_node(free_port(), Some(master.port)),
    ];
    finish_cluster(master, replicas, &[Kind::Shardis; 3])
}

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Shardis,
    /// Debian's redis-server 7.0 in sentinel mode.
    Stock,
}

pub fn have_stock() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("redis-server not installed: skipping the stock redis-sentinel part");
    }
    ok
}

/// A shardis sentinel monitoring `master` with quorum 2 and down-after 1000 ms.
pub fn sentinel(port: u16, master: u16, dir: Option<PathBuf>) -> Proc {
    sentinel_of(Kind::Shardis, port, master, dir)
}

pub fn sentinel_of(kind: Kind, port: u16, master: u16, dir: Option<PathBuf>) -> Proc {
    let dir = dir.unwrap_or_else(|| scratch("sentinel", port));
    let conf = dir.join("sentinel.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {NAME} 127.0.0.1 {master} 2\n\
                 sentinel down-after-milliseconds {NAME} 1000\n\
                 sentinel failover-timeout {NAME} 10000\n"
            ),
        )
        .unwrap();
    }
    let mut args: Vec<String> = vec![
        "--sentinel".into(),
        conf.display().to_string(),
        "--port".into(),
        port.to_string(),
    ];
    if kind == Kind::Stock {
        args.swap(0, 1);
        return spawn_prog("redis-server", &args, port, dir);
    }
    spawn(&args, port, dir)
}

pub fn master_addr(s: &Proc) -> Option<u16> {
    master_addr_at(s.port)
}

/// The master port the sentinel on `port` names (None when it does not answer).
pub fn master_addr_at(port: u16) -> Option<u16> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
        .ok()?;
    c.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let r: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(NAME)
        .query(&mut c)
        .ok()?;
    r.and_then(|(_, p)| p.parse().ok())
}

pub fn listing(s: &Proc, what: &str) -> Vec<Vec<String>> {
    listing_at(s.port, what)
}

/// `SENTINEL replicas|sentinels mymaster` from the sentinel on `port` (empty on error).
pub fn listing_at(port: u16, what: &str) -> Vec<Vec<String>> {
    redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(500)))
        .and_then(|mut c| redis::cmd("SENTINEL").arg(what).arg(NAME).query(&mut c))
        .unwrap_or_default()
}

/// One field of the node's INFO replication ("" when it does not answer: polled while
/// sentinels reconfigure the node, which kills its clients with CLIENT KILL).
pub fn info_field(p: &Proc, field: &str) -> String {
    let text: String = p
        .try_conn()
        .and_then(|mut c| redis::cmd("INFO").arg("replication").query(&mut c).ok())
        .unwrap_or_default();
    text.split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| *k == field)
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// A raw SUBSCRIBE +switch-master client on a sentinel, forwarding payloads.
pub fn subscribe_switch(s: &Proc) -> mpsc::Receiver<String> {
    subscribe_to(s.port, "+switch-master")
}

/// A raw SUBSCRIBE client of `channel` on the sentinel at `port`, forwarding payloads.
pub fn subscribe_to(port: u16, channel: &str) -> mpsc::Receiver<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(
            format!(
                "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
                channel.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stream);
        let mut lines = Vec::new();
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            lines.push(line.trim_end().to_string());
            line.clear();
            // *3 $7 message $len channel $len payload
            if lines.len() >= 7
                && lines[lines.len() - 7] == "*3"
                && lines[lines.len() - 5] == "message"
            {
                let _ = tx.send(lines[lines.len() - 1].clone());
            }
        }
    });
    rx
}

pub struct Cluster {
    pub master: Proc,
    pub replicas: Vec<Proc>,
    pub sentinels: Vec<Proc>,
}

pub fn cluster() -> Cluster {
    cluster_of(&[Kind::Shardis; 3])
}

pub fn cluster_of(kinds: &[Kind]) -> Cluster {
    cluster_with(kinds, &[])
}

/// Three data nodes (2, 1 and 2 shards) started with `extra` flags, and sentinels of
/// `kinds`, after every sentinel discovered the whole set.
pub fn cluster_with(kinds: &[Kind], extra: &[&str]) -> Cluster {
    let master = node_with(free_port(), 2, None, extra);
    let replicas = vec![
        node_with(free_port(), 1, Some(master.port), extra),
        node_with(free_port(), 2, Some(master.port), extra),
    ];
    finish_cluster(master, replicas, kinds)
}

/// Waits for the replicas' links, starts sentinels of `kinds` and waits for discovery.
fn finish_cluster(master: Proc, replicas: Vec<Proc>, kinds: &[Kind]) -> Cluster {
    for r in &replicas {
        assert!(wait_for(Duration::from_secs(10), || info_field(
            r,
            "master_link_status"
        ) == "up"));
    }
    let sentinels: Vec<Proc> = kinds
        .iter()
        .map(|k| sentinel_of(*k, free_port(), master.port, None))
        .collect();
    // Discovery: every sentinel knows the master, both replicas and the two other sentinels.
    for s in &sentinels {
        let ok = wait_for(Duration::from_secs(20), || {
            master_addr(s) == Some(master.port)
                && listing(s, "replicas").len() == 2
                && listing(s, "sentinels").len() == 2
        });
        assert!(
            ok,
            "sentinel {} did not discover the set: replicas {:?} sentinels {:?}",
            s.port,
            listing(s, "replicas"),
            listing(s, "sentinels")
        );
    }
    Cluster {
        master,
        replicas,
        sentinels,
    }
}
