//! `syslog-enabled`, `syslog-ident`, `syslog-facility` as redis-server: the settings are
//! shown by CONFIG GET and cannot change at run time, a bad facility stops the startup with
//! Redis's text, and with syslog on every log line also goes to syslog(3). The last part
//! listens on /dev/log itself, when no syslog daemon owns that path (containers, CI).

mod common;

use std::os::unix::net::UnixDatagram;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, Server};

#[test]
fn syslog_settings() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args([
            "--port",
            &free_port().to_string(),
            "--syslog-facility",
            "kern",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("Invalid log facility. Must be one of USER or between LOCAL0-LOCAL7"));
    // Listen where syslog(3) sends, if nothing does yet.
    let path = std::path::Path::new("/dev/log");
    let sink = if path.exists() {
        None
    } else {
        UnixDatagram::bind(path).ok()
    };
    let srv = Server::start_with(
        1,
        &[
            "--syslog-enabled",
            "yes",
            "--syslog-ident",
            "shardis-test",
            "--syslog-facility",
            "LOCAL3",
        ],
    );
    let mut c = srv.client();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("syslog-*")
        .query(&mut c)
        .unwrap();
    let mut pairs: Vec<(String, String)> = got
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    pairs.sort();
    let want = [
        ("syslog-enabled", "yes"),
        ("syslog-facility", "local3"),
        ("syslog-ident", "shardis-test"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(pairs, want);
    let e = redis::cmd("CONFIG")
        .arg("SET")
        .arg("syslog-ident")
        .arg("x")
        .query::<String>(&mut c)
        .unwrap_err();
    assert!(e.to_string().contains("can't set immutable config"), "{e}");
    let Some(sink) = sink else {
        eprintln!("/dev/log belongs to a syslog daemon: message check skipped");
        return;
    };
    // The startup notice, at local3.notice (<157>), from shardis-test[pid].
    sink.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut seen = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    let tag = format!("shardis-test[{}]:", srv.pid());
    let found = loop {
        let mut buf = [0u8; 4096];
        if let Ok(n) = sink.recv(&mut buf) {
            let m = String::from_utf8_lossy(&buf[..n]).into_owned();
            if m.starts_with("<157>") && m.contains(&tag) && m.contains("started") {
                break true;
            }
            seen.push(m);
        }
        if Instant::now() > end {
            break false;
        }
    };
    let _ = std::fs::remove_file(path);
    assert!(found, "no startup line in syslog: {seen:?}");
}
