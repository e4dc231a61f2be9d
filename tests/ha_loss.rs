//! Acknowledged-then-lost writes across a failover (issue 14's "Faults to survive"): a
//! master, two replicas and three shardis sentinels on loopback; writer threads SET unique
//! keys through whatever master the sentinels name and remember every key that got `+OK`;
//! then the master is SIGKILLed, or SIGSTOPped until a replica is promoted and SIGCONTed.
//! Every acknowledged key is then looked up on the new master: a missing one is a write
//! the client was told is done and that the failover lost.
//!
//! The tests run the zero-loss configuration (`min-replicas-ack 1` plus the
//! `min-replicas-to-write` fence) and assert 0 lost; they also check that one SIGKILLed
//! sentinel does not stop the failover and that the old master rejoins as a replica.
//! `measure_acknowledged_write_loss` (ignored; `SHARDIS_HA_RUNS=5 cargo test --test
//! ha_loss -- --ignored --nocapture`, `SHARDIS_HA_MODES=zeroloss` for one mode) prints the
//! figures of every mode.

mod common;
#[path = "common/ha.rs"]
mod ha;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::wait_for;
use ha::*;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// Redis's default: asynchronous replication, no fence.
    Async,
    /// `min-replicas-to-write 1`, `min-replicas-max-lag 1`: a cut-off master stops.
    Fenced,
    /// The fence plus `min-replicas-ack 1`: a reply only once a replica holds the write.
    ZeroLoss,
}

impl Mode {
    fn flags(self) -> &'static [&'static str] {
        match self {
            Mode::Async => &[],
            Mode::Fenced => &[
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                "1",
            ],
            Mode::ZeroLoss => &[
                "--min-replicas-to-write",
                "1",
                "--min-replicas-max-lag",
                "1",
                "--min-replicas-ack",
                "1",
                "--min-replicas-ack-timeout",
                "1000",
            ],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Kill9,
    StopCont,
    /// SIGTERM: a graceful stop, which waits for the replicas (`shutdown-timeout`).
    Term,
}

/// Writer threads following the master the live sentinels name.
struct Writers {
    stop: Arc<AtomicBool>,
    /// Acknowledged keys, with the master that said OK and when.
    acked: Arc<Mutex<Vec<(u64, u16, Instant)>>>,
    errors: Arc<AtomicU64>,
    threads: Vec<JoinHandle<()>>,
}

const WRITERS: u64 = 2;

fn start_writers(sentinels: Vec<u16>) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let threads = (0..WRITERS)
        .map(|t| {
            let (stop, acked, errors) = (stop.clone(), acked.clone(), errors.clone());
            let sentinels = sentinels.clone();
            std::thread::spawn(move || {
                // Key numbers: writer t takes t, t + WRITERS, ...: each key is tried once.
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    let Some(port) = sentinels.iter().find_map(|&s| ask_master(s)) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    let Some(mut c) = RawConn::open(port) else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    while !stop.load(Ordering::Relaxed) {
                        let key = n;
                        n += WRITERS;
                        if c.set(key) {
                            acked.lock().unwrap().push((key, port, Instant::now()));
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        })
        .collect();
    Writers {
        stop,
        acked,
        errors,
        threads,
    }
}

impl Writers {
    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
    fn finish(mut self) -> (Vec<(u64, u16, Instant)>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let acked = std::mem::take(&mut *self.acked.lock().unwrap());
        (acked, self.errors.load(Ordering::Relaxed))
    }
}

/// A minimal RESP client with a timeout on every step (the redis crate's connection
/// setup can wait forever on a stopped server).
struct RawConn {
    r: BufReader<TcpStream>,
}

impl RawConn {
    fn open(port: u16) -> Option<RawConn> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
        s.set_nodelay(true).ok()?;
        Some(RawConn {
            r: BufReader::new(s),
        })
    }

    /// `SET w:<n> <n>`: true on `+OK`.
    fn set(&mut self, n: u64) -> bool {
        let (k, v) = (format!("w:{n}"), n.to_string());
        let req = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
            k.len(),
            v.len()
        );
        if self.r.get_mut().write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut line = String::new();
        matches!(self.r.read_line(&mut line), Ok(n) if n > 0) && line == "+OK\r\n"
    }
}

fn connect(port: u16) -> Option<redis::Connection> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let c = c
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    c.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    c.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    Some(c)
}

fn ask_master(sentinel: u16) -> Option<u16> {
    let c = redis::Client::open(format!("redis://127.0.0.1:{sentinel}/")).ok()?;
    let mut c = c
        .get_connection_with_timeout(Duration::from_millis(300))
        .ok()?;
    c.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    let r: Option<(String, String)> = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(NAME)
        .query(&mut c)
        .ok()?;
    r.and_then(|(_, p)| p.parse().ok())
}

/// Acknowledged keys missing on the node at `port`.
fn missing_on(port: u16, acked: &[(u64, u16, Instant)]) -> usize {
    let mut c = connect(port).expect("connect to the new master");
    let mut lost = 0;
    for chunk in acked.chunks(500) {
        let mut p = redis::pipe();
        for (k, _, _) in chunk {
            p.cmd("EXISTS").arg(format!("w:{k}"));
        }
        let got: Vec<i64> = p.query(&mut c).expect("EXISTS");
        lost += got.iter().filter(|&&x| x == 0).count();
    }
    lost
}

struct Outcome {
    acked: usize,
    lost: usize,
    /// Acknowledged by the old master after the fault began.
    old_after: usize,
    errors: u64,
    /// Fault to the first write acknowledged by the new master (seen by polling).
    failover: Duration,
}

/// One run: cluster, writers, the fault, the failover, the count.
/// `kill_sentinel`: SIGKILL one of the three sentinels first (a majority stays).
fn run(mode: Mode, fault: Fault, kill_sentinel: bool, check_rejoin: bool) -> Outcome {
    let mut c = cluster_with(&[Kind::Shardis; 3], mode.flags());
    let old = c.master.port;
    if kill_sentinel {
        c.sentinels[0].kill9();
    }
    let live: Vec<u16> = c.sentinels[usize::from(kill_sentinel)..]
        .iter()
        .map(|s| s.port)
        .collect();
    let w = start_writers(live.clone());
    assert!(
        wait_for(Duration::from_secs(20), || w.count() >= 300),
        "writers made no progress ({} acknowledged, {} errors)",
        w.count(),
        w.errors.load(Ordering::Relaxed)
    );
    let before_fault = w.count();
    let t0 = Instant::now();
    match fault {
        Fault::Kill9 => c.master.kill9(),
        Fault::StopCont => c.master.signal("STOP"),
        Fault::Term => {
            c.master.signal("TERM");
            let _ = c.master.child.wait();
        }
    }
    // The failover: a sentinel names a replica, and writes are acknowledged after it.
    let mut new_port = None;
    let switched = wait_for(Duration::from_secs(30), || {
        new_port = live
            .iter()
            .find_map(|&s| ask_master(s))
            .filter(|p| *p != old);
        new_port.is_some()
    });
    assert!(switched, "no failover within 30 s ({mode:?}, {fault:?})");
    let new_port = new_port.unwrap_or_default();
    let marks = w.count();
    if !wait_for(Duration::from_secs(30), || w.count() > marks + 50) {
        let probe = connect(new_port).map(|mut c| {
            let set = redis::cmd("SET")
                .arg("probe")
                .arg(1)
                .query::<String>(&mut c);
            let info = redis::cmd("INFO")
                .arg("replication")
                .query::<String>(&mut c);
            format!("{set:?} {info:?}")
        });
        panic!("no writes acknowledged after the failover to {new_port}: {probe:?}");
    }
    let failover = t0.elapsed();
    if fault == Fault::StopCont {
        // The old master wakes up believing it is still the master.
        c.master.signal("CONT");
    }
    // Keep writing while the sentinels deal with the old master.
    std::thread::sleep(Duration::from_secs(2));
    let (acked, errors) = w.finish();
    assert!(acked.len() > before_fault);
    let old_after = acked
        .iter()
        .filter(|(_, p, at)| *p == old && *at > t0)
        .count();
    let lost = missing_on(new_port, &acked);
    if check_rejoin {
        let back;
        let node = match fault {
            Fault::Kill9 | Fault::Term => {
                back = node_with(old, 2, None, mode.flags());
                &back
            }
            Fault::StopCont => &c.master,
        };
        assert!(
            wait_for(Duration::from_secs(40), || info_field(node, "role")
                == "slave"
                && info_field(node, "master_port") == new_port.to_string()
                && info_field(node, "master_link_status") == "up"),
            "the old master did not rejoin as a replica of {new_port}"
        );
    }
    Outcome {
        acked: acked.len(),
        lost,
        old_after,
        errors,
        failover,
    }
}

fn report(mode: Mode, fault: Fault, o: &Outcome) {
    println!(
        "mode={mode:?} fault={fault:?} acknowledged={} lost={} failover_ms={} errors={} \
         old_master_acks_after_fault={}",
        o.acked,
        o.lost,
        o.failover.as_millis(),
        o.errors,
        o.old_after
    );
}

/// kill -9 of a sentinel, then of the master, under write load with zero-loss mode: the
/// two sentinels left fail over, no acknowledged write is missing on the new master, and
/// the old master, restarted, rejoins as its replica.
#[test]
fn zero_loss_kill9_with_a_sentinel_down() {
    let o = run(Mode::ZeroLoss, Fault::Kill9, true, true);
    report(Mode::ZeroLoss, Fault::Kill9, &o);
    assert_eq!(o.lost, 0, "acknowledged writes lost");
}

/// SIGSTOP of the master until a replica is promoted, then SIGCONT: the old master
/// acknowledges nothing that the new one lacks, and is turned into its replica.
#[test]
fn zero_loss_sigstop_then_sigcont() {
    let o = run(Mode::ZeroLoss, Fault::StopCont, false, true);
    report(Mode::ZeroLoss, Fault::StopCont, &o);
    assert_eq!(o.lost, 0, "acknowledged writes lost");
}

/// A graceful stop of the master (SIGTERM) with Redis's default asynchronous replication:
/// the master pauses writes and waits for its replicas before it exits (`shutdown-timeout`),
/// so the replica the sentinels promote has every write the old master acknowledged, and
/// the old master, restarted, rejoins as its replica. With `shutdown-timeout 0` the same
/// run lost 3 acknowledged writes in 1 of 3 tries (the stream's last 300 us window).
#[test]
fn async_sigterm_of_the_master_loses_nothing() {
    let o = run(Mode::Async, Fault::Term, false, true);
    report(Mode::Async, Fault::Term, &o);
    assert_eq!(o.lost, 0, "acknowledged writes lost");
}

/// The figures for the README and bench-results: every mode and fault, `SHARDIS_HA_RUNS`
/// times (default 1).
#[test]
#[ignore]
fn measure_acknowledged_write_loss() {
    let runs: usize = std::env::var("SHARDIS_HA_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // SHARDIS_HA_MODES=async,fenced,zeroloss picks modes (default all three).
    let pick = std::env::var("SHARDIS_HA_MODES")
        .unwrap_or_default()
        .to_lowercase();
    let modes = [Mode::Async, Mode::Fenced, Mode::ZeroLoss]
        .into_iter()
        .filter(|m| pick.is_empty() || pick.contains(&format!("{m:?}").to_lowercase()));
    for mode in modes {
        for fault in [Fault::Kill9, Fault::StopCont, Fault::Term] {
            for _ in 0..runs {
                let o = run(mode, fault, false, false);
                report(mode, fault, &o);
            }
        }
    }
}
