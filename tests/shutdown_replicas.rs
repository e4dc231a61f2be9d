//! A master's shutdown waits for its lagging replicas (Redis 7.0's `shutdown-timeout`):
//! SHUTDOWN (and SIGTERM) pause writes and wait until every replica acknowledged the last
//! write, so nothing a client was told is written is missing from the replica that outlives
//! the master; SHUTDOWN ABORT ends the wait, the timeout ends it with Redis's log lines, and
//! NOW skips it. Real processes; the lagging replica is frozen with SIGSTOP.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

/// The tests of this file run one at a time: each freezes a replica and keeps a master
/// waiting; a replica left dialling a dead master's port must not attach to another test's.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

fn master(extra: &[&str]) -> Server {
    let mut args = vec!["--save", ""];
    args.extend_from_slice(extra);
    Server::start_logged(2, "true", &args)
}

fn replica_of(m: &Server) -> Server {
    let p = m.port.to_string();
    let r = Server::start_with(1, &["--save", "", "--replicaof", "127.0.0.1", &p]);
    let up = common::wait_for(Duration::from_secs(20), || {
        field(&r, "replication", "master_link_status") == "up"
            && field(m, "replication", "connected_slaves") == "1"
    });
    assert!(up, "the replica never came up");
    r
}

fn field(s: &Server, section: &str, name: &str) -> String {
    common::info(&mut s.client(), section)
        .get(name)
        .cloned()
        .unwrap_or_default()
}

/// A master with `extra` flags and a replica frozen (SIGSTOP) 2,000 writes behind it.
fn frozen_replica_behind(extra: &[&str]) -> (Server, Server) {
    let m = master(extra);
    let r = replica_of(&m);
    r.signal("STOP");
    fill(&mut m.client(), 2_000);
    (m, r)
}

/// Sends one request on a fresh connection and returns the connection.
fn send(s: &Server, req: &str) -> TcpStream {
    let mut c = s.raw();
    c.write_all(req.as_bytes()).unwrap();
    c
}

/// What arrives on `c` within `within`: the bytes, and whether the peer closed.
fn read_within(c: &mut TcpStream, within: Duration) -> (String, bool) {
    c.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 256];
    match c.read(&mut buf) {
        Ok(0) => (String::new(), true),
        Ok(n) => (String::from_utf8_lossy(&buf[..n]).into_owned(), false),
        Err(_) => (String::new(), false),
    }
}

/// Writes `n` keys of 1 KB in pipelines: far more than loopback's socket buffers hold, so
/// a frozen replica leaves most of it in the master's output buffer.
fn fill(c: &mut redis::Connection, n: usize) {
    let value = "x".repeat(1024);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let mut p = redis::pipe();
        for i in chunk {
            p.cmd("SET").arg(format!("bulk:{i}")).arg(&value).ignore();
        }
        let _: () = p.query(c).unwrap();
    }
}

/// SHUTDOWN and SIGTERM: with the replica frozen and ~32 MB of writes it has not taken,
/// the master stays up with writes paused (reads served, INFO shows the time left), and
/// exits once the resumed replica has everything: every acknowledged write is on it, the
/// write that was held is not.
#[test]
fn shutdown_waits_for_a_lagging_replica_and_loses_nothing() {
    let _one = serial();
    for how in ["SHUTDOWN", "SIGTERM"] {
        let mut m = master(&["--shutdown-timeout", "60"]);
        let r = replica_of(&m);
        let mut c = m.client();
        let _: () = redis::cmd("SET")
            .arg("before")
            .arg("1")
            .query(&mut c)
            .unwrap();
        r.signal("STOP");
        fill(&mut c, 32_000);
        let last: i64 = redis::cmd("INCR").arg("counter").query(&mut c).unwrap();
        let mut shut = None;
        if how == "SHUTDOWN" {
            shut = Some(send(&m, "SHUTDOWN\r\n"));
        } else {
            m.signal("TERM");
        }
        let waiting = common::wait_for(Duration::from_secs(5), || {
            !field(&m, "server", "shutdown_in_milliseconds").is_empty()
        });
        assert!(waiting, "{how}: no wait shown in INFO; log:\n{}", m.log());
        let left: u64 = field(&m, "server", "shutdown_in_milliseconds")
            .parse()
            .unwrap();
        assert!(left > 50_000 && left <= 60_000, "{how}: {left} ms left");
        // Writes wait, reads are served.
        let mut held = send(&m, "SET after 1\r\n");
        let got: i64 = redis::cmd("GET").arg("counter").query(&mut c).unwrap();
        assert_eq!(got, last);
        let (reply, _) = read_within(&mut held, Duration::from_millis(300));
        assert_eq!(reply, "", "{how}: a write ran during the wait");
        std::thread::sleep(Duration::from_millis(700));
        assert!(m.alive(), "{how}: exited before the replica caught up");
        if let Some(s) = shut.as_mut() {
            let (reply, closed) = read_within(s, Duration::from_millis(10));
            assert!(
                reply.is_empty() && !closed,
                "{how}: SHUTDOWN answered {reply:?}"
            );
        }
        r.signal("CONT");
        let code = m.wait_exit(Duration::from_secs(30));
        assert_eq!(code, Some(0), "{how}: log:\n{}", m.log());
        let log = m.log();
        assert!(
            log.contains("Waiting for replicas before shutting down."),
            "{how}: {log}"
        );
        assert!(
            log.contains("1 of 1 replicas are in sync when shutting down."),
            "{how}: {log}"
        );
        assert!(!log.contains("Lagging replica"), "{how}: {log}");
        // The replica holds every write the master acknowledged, and not the held one.
        let mut rc = r.client();
        let dbsize: i64 = redis::cmd("DBSIZE").query(&mut rc).unwrap();
        assert_eq!(dbsize, 32_000 + 2, "{how}");
        let counter: i64 = redis::cmd("GET").arg("counter").query(&mut rc).unwrap();
        assert_eq!(counter, last, "{how}");
        let after: Option<String> = redis::cmd("GET").arg("after").query(&mut rc).unwrap();
        assert_eq!(after, None, "{how}: the held write ran");
    }
}

/// SHUTDOWN ABORT ends the wait: writes resume, the waiting SHUTDOWN gets Redis's error,
/// and the server keeps serving; then a wait that times out exits with Redis's lines for
/// the lagging replica, and `shutdown-timeout` is a CONFIG SET setting.
#[test]
fn shutdown_abort_resumes_and_the_timeout_ends_the_wait() {
    let _one = serial();
    let mut m = master(&[]);
    let r = replica_of(&m);
    let mut c = m.client();
    let to_abort: Result<String, _> = redis::cmd("SHUTDOWN").arg("ABORT").query(&mut c);
    let e = to_abort.unwrap_err().to_string();
    assert!(e.contains("No shutdown in progress."), "{e}");
    for bad in [
        &["ABORT", "NOW"][..],
        &["SAVE", "NOSAVE"],
        &["NOW", "LATER"],
    ] {
        let e = redis::cmd("SHUTDOWN").arg(bad).query::<String>(&mut c);
        assert!(
            e.unwrap_err().to_string().contains("syntax error"),
            "SHUTDOWN {bad:?}"
        );
    }
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("shutdown-timeout")
        .query(&mut c)
        .unwrap();
    assert_eq!(got, ["shutdown-timeout", "10"]);
    r.signal("STOP");
    fill(&mut c, 2_000);

    // ABORT.
    let mut first = send(&m, "SHUTDOWN NOSAVE\r\n");
    assert!(common::wait_for(Duration::from_secs(5), || {
        !field(&m, "server", "shutdown_in_milliseconds").is_empty()
    }));
    let mut second = send(&m, "SHUTDOWN NOW\r\n");
    let mut held = send(&m, "SET after-abort 1\r\n");
    let (reply, _) = read_within(&mut held, Duration::from_millis(300));
    assert_eq!(reply, "", "a write ran during the wait");
    let ok: String = redis::cmd("SHUTDOWN").arg("abort").query(&mut c).unwrap();
    assert_eq!(ok, "OK");
    let err = "-ERR Errors trying to SHUTDOWN. Check logs.\r\n";
    for s in [&mut first, &mut second] {
        let (reply, _) = read_within(s, Duration::from_secs(5));
        assert_eq!(reply, err);
    }
    let (reply, _) = read_within(&mut held, Duration::from_secs(5));
    assert_eq!(reply, "+OK\r\n", "the held write did not resume");
    assert!(field(&m, "server", "shutdown_in_milliseconds").is_empty());
    assert!(m.log().contains("Shutdown manually aborted."));
    let _: () = redis::cmd("SET")
        .arg("later")
        .arg("1")
        .query(&mut c)
        .unwrap();

    // The timeout: the replica stays frozen.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("shutdown-timeout")
        .arg("2")
        .query(&mut c)
        .unwrap();
    let started = Instant::now();
    let _shut = send(&m, "SHUTDOWN\r\n");
    let code = m.wait_exit(Duration::from_secs(15));
    let took = started.elapsed();
    r.signal("CONT");
    assert_eq!(code, Some(0), "log:\n{}", m.log());
    assert!(took >= Duration::from_millis(1800), "exited after {took:?}");
    let log = m.log();
    let rport = r.port;
    assert!(
        log.contains(&format!(
            "Lagging replica 127.0.0.1:{rport} reported offset "
        )),
        "{log}"
    );
    assert!(
        log.contains("0 of 1 replicas are in sync when shutting down."),
        "{log}"
    );
}

/// SHUTDOWN NOW does not wait for the lagging replica (and says so in the log).
#[test]
fn shutdown_now_skips_the_wait() {
    let _one = serial();
    let (mut m, r) = frozen_replica_behind(&["--shutdown-timeout", "60"]);
    let started = Instant::now();
    let _shut = send(&m, "SHUTDOWN NOW\r\n");
    let code = m.wait_exit(Duration::from_secs(10));
    r.signal("CONT");
    assert_eq!(code, Some(0));
    assert!(started.elapsed() < Duration::from_secs(5));
    let log = m.log();
    assert!(!log.contains("Waiting for replicas"), "{log}");
    assert!(
        log.contains("0 of 1 replicas are in sync when shutting down."),
        "{log}"
    );
}

/// A lagging replica that goes away during the wait leaves none to wait for: the master
/// exits then, not at the timeout.
#[test]
fn a_replica_lost_during_the_wait_ends_it() {
    let _one = serial();
    let (mut m, r) = frozen_replica_behind(&["--shutdown-timeout", "60"]);
    let _shut = send(&m, "SHUTDOWN\r\n");
    assert!(common::wait_for(Duration::from_secs(5), || {
        !field(&m, "server", "shutdown_in_milliseconds").is_empty()
    }));
    let killed = Instant::now();
    drop(r); // SIGKILL
    let code = m.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(0), "log:\n{}", m.log());
    assert!(
        killed.elapsed() < Duration::from_secs(10),
        "{:?}",
        killed.elapsed()
    );
}

/// A replica relaying its master's stream to a replica of its own waits for that one too
/// (as Redis does): the chained replica ends with everything the middle one had.
#[test]
fn a_relaying_replica_waits_for_its_own_replica() {
    let _one = serial();
    let m = Server::start_with(1, &["--save", ""]);
    let p = m.port.to_string();
    let mut mid = Server::start_logged(1, "true", &["--save", "", "--replicaof", "127.0.0.1", &p]);
    let end = replica_of(&mid);
    let mut c = m.client();
    end.signal("STOP");
    fill(&mut c, 32_000);
    let caught_up = common::wait_for(Duration::from_secs(20), || {
        field(&mid, "replication", "slave_repl_offset")
            == field(&m, "replication", "master_repl_offset")
    });
    assert!(caught_up, "the middle replica never caught up");
    let _shut = send(&mid, "SHUTDOWN\r\n");
    assert!(
        common::wait_for(Duration::from_secs(5), || {
            !field(&mid, "server", "shutdown_in_milliseconds").is_empty()
        }),
        "log:\n{}",
        mid.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(mid.alive(), "exited before its replica caught up");
    end.signal("CONT");
    assert_eq!(
        mid.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        mid.log()
    );
    let mut ec = end.client();
    let dbsize: i64 = redis::cmd("DBSIZE").query(&mut ec).unwrap();
    assert_eq!(dbsize, 32_000);
}
