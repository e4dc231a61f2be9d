//! Unix domain sockets (`unixsocket`, `unixsocketperm`): shard 0 accepts on the socket and
//! hands the connections to the shards in turn, so every shard serves Unix clients.
//! redis-cli and redis-benchmark reach the server with `-s PATH`; CLIENT LIST shows
//! Redis's `addr=/path:0 laddr=/path:0 flags=U`; the file is replaced at startup and removed
//! at shutdown; Unix clients are local for protected mode and `enable-debug-command local`.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{redis_cli, shard_counts, Server};

fn sock_path(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("shardis-{tag}-{}.sock", std::process::id()))
}

fn connect(path: &PathBuf) -> UnixStream {
    let s = UnixStream::connect(path).expect("connect to the unix socket");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s
}

/// Reads one reply line, byte by byte (nothing read past it).
fn read_line(s: &mut UnixStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while !out.ends_with(b"\r\n") {
        s.read_exact(&mut b).expect("read");
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends one inline command and reads one line of reply (enough for simple replies).
fn line(s: &mut UnixStream, cmd: &str) -> String {
    s.write_all(format!("{cmd}\r\n").as_bytes()).expect("write");
    read_line(s)
}

/// A bulk reply's body (`$n\r\n...\r\n`).
fn bulk(s: &mut UnixStream, cmd: &str) -> String {
    s.write_all(format!("{cmd}\r\n").as_bytes()).expect("write");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        s.read_exact(&mut b).expect("read");
        head.push(b[0]);
    }
    let n: usize = String::from_utf8_lossy(&head[1..head.len() - 2])
        .parse()
        .expect("bulk length");
    let mut body = vec![0u8; n + 2];
    s.read_exact(&mut body).expect("read body");
    String::from_utf8_lossy(&body[..n]).into_owned()
}

#[test]
fn every_shard_serves_unix_clients() {
    for shards in shard_counts() {
        let path = sock_path(&format!("rr{shards}"));
        let p = path.to_string_lossy().to_string();
        let s = Server::start_with(
            shards,
            &[
                "--unixsocket",
                &p,
                "--unixsocketperm",
                "700",
                "--enable-debug-command",
                "local",
            ],
        );
        let meta = std::fs::metadata(&path).expect("socket file");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        // Connections are handed round: connection i lands on shard i % shards. A DEBUG SLEEP
        // on connection 0 (allowed: Unix clients are local) holds its shard only, so a
        // PING on connections 1..shards answers at once and connection `shards` (same shard
        // as 0) waits.
        let mut conns: Vec<UnixStream> = (0..=shards).map(|_| connect(&path)).collect();
        for (i, c) in conns.iter_mut().enumerate() {
            assert_eq!(line(c, &format!("SET k{i} v{i}")), "+OK\r\n");
        }
        for (i, c) in conns.iter_mut().enumerate() {
            // Keys on every shard, through every connection.
            let j = (i + 1) % (shards + 1);
            assert_eq!(bulk(c, &format!("GET k{j}")), format!("v{j}"));
        }
        if shards > 1 {
            conns[0].write_all(b"DEBUG SLEEP 2\r\n").expect("write");
            std::thread::sleep(Duration::from_millis(200));
            for c in conns.iter_mut().take(shards).skip(1) {
                let t = Instant::now();
                assert_eq!(line(c, "PING"), "+PONG\r\n");
                assert!(
                    t.elapsed() < Duration::from_millis(1500),
                    "a PING on another shard waited {:?}",
                    t.elapsed()
                );
            }
            let t = Instant::now();
            assert_eq!(line(&mut conns[shards], "PING"), "+PONG\r\n");
            assert!(
                t.elapsed() > Duration::from_millis(500),
                "connection {shards} shares shard 0 with connection 0 (round robin), yet its \
                 PING did not wait for the DEBUG SLEEP ({:?})",
                t.elapsed()
            );
            assert_eq!(read_line(&mut conns[0]), "+OK\r\n");
        }
        // CLIENT LIST as Redis shows a Unix client.
        let list = bulk(&mut conns[0], "CLIENT LIST");
        let mine: Vec<&str> = list.lines().collect();
        assert_eq!(mine.len(), shards + 1, "{list}");
        for l in &mine {
            assert!(l.contains(&format!(" addr={p}:0 laddr={p}:0 ")), "{l}");
            assert!(l.contains(" flags=U "), "{l}");
        }
        let info = bulk(&mut conns[0], "INFO clients");
        assert!(
            info.contains(&format!("connected_clients:{}\r\n", shards + 1)),
            "{info}"
        );
        drop(s);
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn config_get_and_set_as_redis() {
    let path = sock_path("cfg");
    let p = path.to_string_lossy().to_string();
    let s = Server::start_with(2, &["--unixsocket", &p, "--unixsocketperm", "0755"]);
    let mut c = s.client();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("unixsocket*")
        .query(&mut c)
        .unwrap();
    let mut pairs: Vec<(String, String)> = got
        .chunks(2)
        .map(|w| (w[0].clone(), w[1].clone()))
        .collect();
    pairs.sort();
    assert_eq!(
        pairs,
        vec![
            ("unixsocket".to_string(), p.clone()),
            ("unixsocketperm".to_string(), "755".to_string())
        ]
    );
    for name in ["unixsocket", "unixsocketperm"] {
        let e = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg("/tmp/elsewhere.sock")
            .query::<String>(&mut c)
            .unwrap_err();
        assert!(
            e.to_string().contains(&format!(
                "CONFIG SET failed (possibly related to argument '{name}') - can't set immutable config"
            )),
            "{e}"
        );
    }
    drop(s);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn redis_cli_and_benchmark_over_the_socket() {
    let Some(cli) = redis_cli() else {
        panic!("redis-cli is required");
    };
    for shards in shard_counts() {
        let path = sock_path(&format!("cli{shards}"));
        let p = path.to_string_lossy().to_string();
        let _s = Server::start_with(shards, &["--unixsocket", &p]);
        let run = |args: &[&str]| {
            let out = Command::new(cli)
                .args(["-s", &p])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(run(&["SET", "a", "1"]), "OK");
        assert_eq!(run(&["INCR", "a"]), "2");
        assert_eq!(run(&["GET", "a"]), "2");
        let bench = cli.replace("redis-cli", "redis-benchmark");
        let out = Command::new(&bench)
            .args([
                "-s",
                &p,
                "-n",
                "5000",
                "-c",
                "8",
                "-t",
                "set,get,lpush",
                "-q",
            ])
            .output()
            .expect("run redis-benchmark");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        for t in ["SET", "GET", "LPUSH"] {
            assert!(
                text.lines()
                    .any(|l| l.contains(&format!("{t}: ")) && l.contains("requests per second")),
                "{text}"
            );
        }
        assert_eq!(run(&["DBSIZE"]).parse::<u64>().unwrap_or(0), 3);
    }
}

#[test]
fn stale_file_replaced_and_socket_removed_at_shutdown() {
    let path = sock_path("stale");
    std::fs::write(&path, b"left over by a crash").unwrap();
    let p = path.to_string_lossy().to_string();
    let mut s = Server::start_with(2, &["--unixsocket", &p, "--save", ""]);
    assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    let mut c = connect(&path);
    assert_eq!(line(&mut c, "PING"), "+PONG\r\n");
    s.signal("TERM");
    assert_eq!(s.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(
        !path.exists(),
        "the socket file is removed at shutdown, as Redis does"
    );
}

#[test]
fn unix_clients_are_local_for_protected_mode() {
    // Listening everywhere with protected mode on and no password: TCP clients from
    // loopback and Unix clients are served.
    let path = sock_path("prot");
    let p = path.to_string_lossy().to_string();
    let s = Server::start_with(
        2,
        &[
            "--bind",
            "0.0.0.0",
            "--protected-mode",
            "yes",
            "--unixsocket",
            &p,
        ],
    );
    for _ in 0..4 {
        let mut c = connect(&path);
        assert_eq!(line(&mut c, "PING"), "+PONG\r\n");
    }
    drop(s);
    let _ = std::fs::remove_file(&path);
}
