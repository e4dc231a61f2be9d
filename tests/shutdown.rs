//! Stopping a server one of whose shards is busy (issue 9, item 6): SIGTERM, SIGINT and
//! SHUTDOWN reach every shard, and a shard stuck in `DEBUG SLEEP` does not keep the process
//! alive past the grace period (2 s); the log names it. For every shard count in
//! `common::shard_counts()`. The servers run with `--save ''`: with save rules, the save
//! before stopping waits for every shard, the busy one too (as Redis's does), and the grace
//! period starts after it (tests/persistence_faults.rs covers the save on SIGTERM).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

/// The process must be gone this long after the signal (grace 2 s plus slack).
const EXIT_DEADLINE: Duration = Duration::from_secs(5);

/// The shard whose thread sleeps in nanosleep (DEBUG SLEEP), from /proc/<pid>/task.
fn sleeping_shard(pid: u32) -> Option<usize> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for t in tasks.flatten() {
        let p = t.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let wchan = std::fs::read_to_string(p.join("wchan")).unwrap_or_default();
        if wchan.contains("nanosleep") {
            if let Some(i) = comm.trim().strip_prefix("shard-") {
                return i.parse().ok();
            }
        }
    }
    None
}

/// Starts a server, puts one shard to sleep for 1000 s and returns the connection that
/// asked (kept open) and the sleeping shard's number.
fn start_with_busy_shard(n: usize) -> (Server, TcpStream, usize) {
    let srv = Server::start_logged(n, "true", &["--enable-debug-command", "yes", "--save", ""]);
    let mut c = srv.raw();
    c.write_all(b"DEBUG SLEEP 1000\r\n").unwrap();
    let mut shard = None;
    let found = common::wait_for(Duration::from_secs(5), || {
        shard = sleeping_shard(srv.pid());
        shard.is_some()
    });
    assert!(found, "shards={n}: no shard thread is sleeping");
    (srv, c, shard.unwrap_or(0))
}

fn assert_exits(srv: &mut Server, n: usize, shard: usize, what: &str, since: Instant) {
    let code = srv.wait_exit(EXIT_DEADLINE);
    let took = since.elapsed();
    assert!(
        code.is_some(),
        "shards={n}: still running {took:?} after {what}; log:\n{}",
        srv.log()
    );
    let log = srv.log();
    assert!(
        log.contains(&format!("shard {shard} did not stop within 2 s")),
        "shards={n}: the log does not name shard {shard}:\n{log}"
    );
    assert_eq!(
        code,
        Some(1),
        "shards={n}: a forced exit is not a clean one"
    );
}

fn signal_stops_a_busy_server(sig: &str) {
    for n in common::shard_counts() {
        let (mut srv, _c, shard) = start_with_busy_shard(n);
        let t = Instant::now();
        srv.signal(sig);
        assert_exits(&mut srv, n, shard, &format!("SIG{sig}"), t);
        assert!(
            srv.log()
                .contains(&format!("Received SIG{sig}, scheduling shutdown...")),
            "shards={n}"
        );
    }
}

#[test]
fn sigterm_stops_a_server_with_a_busy_shard() {
    signal_stops_a_busy_server("TERM");
}

#[test]
fn sigint_stops_a_server_with_a_busy_shard() {
    signal_stops_a_busy_server("INT");
}

/// SHUTDOWN from a client on an idle shard while another shard sleeps.
#[test]
fn shutdown_command_stops_a_server_with_a_busy_shard() {
    for n in common::shard_counts().into_iter().filter(|&n| n > 1) {
        let (mut srv, _c, shard) = start_with_busy_shard(n);
        // A connection that answers PING is on an idle shard.
        let mut idle = None;
        for _ in 0..50 {
            let mut s = srv.raw();
            s.set_read_timeout(Some(Duration::from_millis(300))).ok();
            let mut buf = [0u8; 7];
            if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() {
                idle = Some(s);
                break;
            }
        }
        let mut s = idle.expect("no connection landed on an idle shard");
        let t = Instant::now();
        s.write_all(b"SHUTDOWN\r\n").unwrap();
        assert_exits(&mut srv, n, shard, "SHUTDOWN", t);
        assert!(
            srv.log().contains("User requested shutdown..."),
            "shards={n}"
        );
    }
}

/// Without a busy shard, SIGTERM is a clean stop (exit code 0, no shard named).
#[test]
fn sigterm_on_an_idle_server_exits_cleanly() {
    for n in common::shard_counts() {
        let mut srv = Server::start_logged(n, "true", &["--enable-debug-command", "yes"]);
        let _c = srv.raw();
        srv.signal("TERM");
        assert_eq!(srv.wait_exit(EXIT_DEADLINE), Some(0), "shards={n}");
        let log = srv.log();
        assert!(log.contains("ready to exit, bye bye"), "shards={n}: {log}");
        assert!(!log.contains("did not stop"), "shards={n}: {log}");
    }
}

/// The port is free the moment the process is gone, as with redis-server: a server (or
/// anything else) started right after a restart binds it. The rings used to keep the
/// listeners open for 5-10 ms after exit, and a redis-server started then failed to bind.
#[test]
fn the_port_is_free_as_soon_as_the_process_has_exited() {
    for n in common::shard_counts() {
        for how in ["SHUTDOWN NOSAVE", "SIGTERM"] {
            let mut srv = Server::start(n);
            let port = srv.port;
            let mut s = srv.raw();
            if how == "SIGTERM" {
                srv.signal("TERM");
            } else {
                s.write_all(b"SHUTDOWN NOSAVE\r\n").unwrap();
            }
            assert!(srv.wait_exit(EXIT_DEADLINE).is_some(), "shards={n} {how}");
            // std's listener sets SO_REUSEADDR, as redis-server's does.
            let bound = std::net::TcpListener::bind(("0.0.0.0", port));
            assert!(bound.is_ok(), "shards={n} {how}: {:?}", bound.err());
        }
    }
}
