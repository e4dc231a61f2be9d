//! Several `bind` addresses, as Redis 7: every address is listened on (by every shard,
//! SO_REUSEPORT), `-` marks an optional one that is skipped with a warning when the host
//! lacks it, a required one that cannot be bound stops startup, `*` and `::*` are every
//! IPv4 / IPv6 address.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{shard_counts, Server};

/// Whether this host has an IPv6 loopback (tests fall back to 127.0.0.2 without one).
fn have_ipv6() -> bool {
    std::net::TcpListener::bind("[::1]:0").is_ok()
}

fn roundtrip(addr: SocketAddr, req: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = vec![0u8; 256];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn every_address_is_served_by_every_shard() {
    let second = if have_ipv6() { "::1" } else { "127.0.0.2" };
    for shards in shard_counts() {
        let bind = format!("127.0.0.1 {second}");
        let s = Server::start_with(shards, &["--bind", &bind]);
        let a: SocketAddr = SocketAddr::new("127.0.0.1".parse().unwrap(), s.port);
        let b: SocketAddr = SocketAddr::new(second.parse().unwrap(), s.port);
        // Enough connections on each address that the kernel spreads them over the shards.
        for i in 0..(4 * shards) {
            assert_eq!(roundtrip(a, &format!("SET k{i} v{i}\r\n")), "+OK\r\n");
            let v = format!("v{i}");
            assert_eq!(
                roundtrip(b, &format!("GET k{i}\r\n")),
                format!("${}\r\n{v}\r\n", v.len())
            );
        }
        let mut c = s.client();
        let got: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("bind")
            .query(&mut c)
            .unwrap();
        assert_eq!(got, vec!["bind".to_string(), bind.clone()]);
        // CLIENT LIST shows the address each client came in on.
        let mut raw = TcpStream::connect(b).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(5))).ok();
        raw.write_all(b"CLIENT INFO\r\n").unwrap();
        let mut buf = vec![0u8; 1024];
        let n = raw.read(&mut buf).unwrap();
        let info = String::from_utf8_lossy(&buf[..n]);
        let want = SocketAddr::new(second.parse().unwrap(), s.port).to_string();
        assert!(info.contains(&format!(" laddr={want} ")), "{info}");
    }
}

#[test]
fn wildcards_and_optional_addresses() {
    // `* -::*` (Redis 7's default): every IPv4 address, and every IPv6 one if there is IPv6.
    let s = Server::start_with(2, &["--bind", "* -::*"]);
    let v4 = SocketAddr::new("127.0.0.1".parse().unwrap(), s.port);
    assert_eq!(roundtrip(v4, "PING\r\n"), "+PONG\r\n");
    if have_ipv6() {
        let v6 = SocketAddr::new("::1".parse().unwrap(), s.port);
        assert_eq!(roundtrip(v6, "PING\r\n"), "+PONG\r\n");
    }
    drop(s);
    // An optional address this host does not have: skipped with Redis's warning.
    let s = Server::start_logged(2, "true", &["--bind", "127.0.0.1 -10.255.255.1"]);
    let v4 = SocketAddr::new("127.0.0.1".parse().unwrap(), s.port);
    assert_eq!(roundtrip(v4, "PING\r\n"), "+PONG\r\n");
    let log = s.log();
    assert!(
        log.contains(&format!(
            "Warning: Could not create server TCP listening socket 10.255.255.1:{}: bind: \
             Cannot assign requested address",
            s.port
        )),
        "{log}"
    );
}

#[test]
fn a_required_address_that_cannot_be_bound_stops_startup() {
    let bin = env!("CARGO_BIN_EXE_shardis");
    let port = common::free_port().to_string();
    for bind in ["127.0.0.1 10.255.255.1", "10.255.255.1 -127.0.0.1", "bogus"] {
        let out = Command::new(bin)
            .args(["--port", &port, "--bind", bind, "--save", ""])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{bind}: {err}");
        if bind == "bogus" {
            assert!(err.contains("invalid bind address 'bogus'"), "{err}");
        } else {
            assert!(
                err.contains(&format!(
                    "Could not create server TCP listening socket 10.255.255.1:{port}: bind: \
                     Cannot assign requested address"
                )) && err.contains(&format!("Failed listening on port {port} (TCP), aborting.")),
                "{err}"
            );
        }
    }
    let many = vec!["127.0.0.1"; 17].join(" ");
    let out = Command::new(bin)
        .args(["--port", &port, "--bind", &many])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Too many bind addresses specified."));
}

#[test]
fn shard_counts_listen_on_each_address() {
    // Both addresses keep answering while many connections come and go (each shard's
    // listener on each address is armed).
    let second = if have_ipv6() { "::1" } else { "127.0.0.2" };
    for shards in shard_counts() {
        let s = Server::start_with(shards, &["--bind", &format!("{second} 127.0.0.1")]);
        for ip in ["127.0.0.1", second] {
            let a = SocketAddr::new(ip.parse().unwrap(), s.port);
            for _ in 0..(8 * shards) {
                assert_eq!(roundtrip(a, "PING\r\n"), "+PONG\r\n");
            }
        }
    }
}

/// The server side of a client connection's keepalive timer, as `ss -tno` shows it
/// (`timer:(keepalive,...)`), or `None` without `ss` or without a timer.
fn server_keepalive(port: u16, client: &TcpStream) -> Option<Option<String>> {
    let local = client.local_addr().ok()?.port();
    let out = Command::new("ss")
        .args(["-tnoH", "state", "established"])
        .arg(format!("( sport = :{port} and dport = :{local} )"))
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let timer = text
        .split_whitespace()
        .find(|w| w.starts_with("timer:(keepalive"))
        .map(str::to_string);
    Some(timer)
}

/// tcp-keepalive (Redis's default 300): accepted client sockets get keepalive probes, with
/// the idle time set; CONFIG SET changes it for connections accepted afterwards, 0 turns it
/// off.
#[test]
fn client_sockets_get_tcp_keepalive() {
    let s = Server::start_with(1, &["--tcp-keepalive", "77"]);
    let mut c = s.client();
    let addr: SocketAddr = format!("127.0.0.1:{}", s.port).parse().unwrap();
    let probe = |addr: SocketAddr| {
        let t = TcpStream::connect(addr).unwrap();
        // The connection is accepted (and set up) before the PING is answered.
        let mut t2 = t.try_clone().unwrap();
        t2.set_read_timeout(Some(Duration::from_secs(5))).ok();
        t2.write_all(b"PING\r\n").unwrap();
        let mut buf = [0u8; 16];
        let _ = t2.read(&mut buf);
        t
    };
    let t = probe(addr);
    let Some(timer) = server_keepalive(s.port, &t) else {
        eprintln!("ss not available: skipping");
        return;
    };
    let timer = timer.expect("a keepalive timer on the server's socket");
    // `timer:(keepalive,1min16sec,0)`: the idle time left is the configured 77 s, less
    // the moments since the connection was set up.
    let left = timer
        .split(',')
        .nth(1)
        .map(|t| {
            let (min, rest) = t.split_once("min").unwrap_or(("0", t));
            let sec = rest
                .trim_end_matches("sec")
                .split('.')
                .next()
                .unwrap_or("0");
            min.parse::<u64>().unwrap_or(0) * 60 + sec.parse::<u64>().unwrap_or(0)
        })
        .unwrap_or(0);
    assert!((60..=77).contains(&left), "{timer}: {left} s left");
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tcp-keepalive")
        .query(&mut c)
        .unwrap();
    assert_eq!(v, ["tcp-keepalive", "77"]);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tcp-keepalive")
        .arg(0)
        .query(&mut c)
        .unwrap();
    let t = probe(addr);
    assert_eq!(
        server_keepalive(s.port, &t),
        Some(None),
        "tcp-keepalive 0 is off"
    );
}
