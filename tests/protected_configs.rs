//! `enable-protected-configs` (no / yes / local) against redis-server 7.0: CONFIG SET of the
//! protected parameters (`dir`, `dbfilename`) is refused with Redis's text unless allowed,
//! and applied when it is (SAVE then writes the new file in the new directory).

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::resp::{encode_command, Client, Redis};
use common::{redis_server, Server};

fn cmd(c: &mut Client, args: &[&str]) -> String {
    let v: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    c.send(&encode_command(&v)).unwrap();
    String::from_utf8_lossy(&c.read_reply().unwrap()).into_owned()
}

fn connect(ip: &str, port: u16) -> Client {
    let s = TcpStream::connect((ip, port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let w = s.try_clone().unwrap();
    Client {
        r: std::io::BufReader::new(s),
        w,
    }
}

/// The script both servers run; `target` is a directory that exists.
fn script(target: &str) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        s(&["CONFIG", "GET", "enable-protected-configs"]),
        s(&["CONFIG", "SET", "dir", target]),
        s(&["CONFIG", "SET", "dbfilename", "moved.rdb"]),
        s(&["CONFIG", "SET", "dbfilename", "a/b.rdb"]),
        s(&["CONFIG", "SET", "dir", "/nonexistent/shardis-test"]),
        s(&["CONFIG", "SET", "enable-protected-configs", "yes"]),
        s(&["CONFIG", "SET", "logfile", "x.log"]),
        s(&["CONFIG", "SET", "appenddirname", "other"]),
        s(&["CONFIG", "SET", "dir", target, "dbfilename", "both.rdb"]),
        s(&["CONFIG", "GET", "dbfilename"]),
    ]
}

fn run(c: &mut Client, lines: &[Vec<String>]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            let args: Vec<&str> = l.iter().map(String::as_str).collect();
            cmd(c, &args)
        })
        .collect()
}

#[test]
fn protected_configs_as_redis() {
    if redis_server().is_none() {
        eprintln!("redis-server not installed: skipped");
        return;
    }
    let target = std::env::temp_dir().join(format!("shardis-protected-{}", std::process::id()));
    std::fs::create_dir_all(&target).unwrap();
    let t = target.display().to_string();
    for mode in ["no", "yes", "local"] {
        let flags = ["--enable-protected-configs", mode];
        let ours = Server::start_with(1, &flags);
        let theirs = Redis::start_with(&flags);
        let lines = script(&t);
        let a = run(&mut connect("127.0.0.1", ours.port), &lines);
        let b = run(&mut connect("127.0.0.1", theirs.port), &lines);
        for ((l, x), y) in lines.iter().zip(&a).zip(&b) {
            assert_eq!(x, y, "enable-protected-configs {mode}: {l:?}");
        }
        let mut c = connect("127.0.0.1", ours.port);
        let dir = cmd(&mut c, &["CONFIG", "GET", "dir"]);
        if mode == "no" {
            assert!(!dir.contains(&t), "{dir}");
            continue;
        }
        // Applied: the next SAVE writes both.rdb into the new directory.
        assert!(dir.contains(&t), "{dir}");
        assert_eq!(cmd(&mut c, &["SET", "k", "v"]), "+OK\r\n");
        let _ = std::fs::remove_file(target.join("both.rdb"));
        assert_eq!(cmd(&mut c, &["SAVE"]), "+OK\r\n");
        assert!(
            target.join("both.rdb").exists(),
            "{mode}: no both.rdb in {t}"
        );
        let _ = std::fs::remove_file(target.join("both.rdb"));
    }
    let _ = std::fs::remove_dir_all(&target);
}

/// `local`: a client from another address than 127.0.0.1 / ::1 is refused (Redis's test is
/// the same: 127.0.0.2 is not local to it either). The client binds 127.0.0.2 as its source
/// (python3's socket module: std cannot bind before connecting).
#[test]
fn local_refuses_other_addresses() {
    let srv = Server::start_with(
        1,
        &[
            "--protected-mode",
            "no",
            "--enable-protected-configs",
            "local",
        ],
    );
    let py = format!(
        "import socket\n\
         s = socket.socket()\n\
         s.bind(('127.0.0.2', 0))\n\
         s.connect(('127.0.0.1', {}))\n\
         s.sendall(b'*4\\r\\n$6\\r\\nCONFIG\\r\\n$3\\r\\nSET\\r\\n$3\\r\\ndir\\r\\n$4\\r\\n/tmp\\r\\n')\n\
         s.settimeout(5)\n\
         print(s.recv(4096).decode(), end='')\n",
        srv.port
    );
    let Ok(out) = Command::new("python3").args(["-c", &py]).output() else {
        eprintln!("python3 not installed: skipped");
        return;
    };
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-ERR CONFIG SET failed (possibly related to argument 'dir') - can't set protected \
         config\r\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // From 127.0.0.1 the same command is applied.
    let mut c = connect("127.0.0.1", srv.port);
    let here = std::env::temp_dir().display().to_string();
    assert_eq!(cmd(&mut c, &["CONFIG", "SET", "dir", &here]), "+OK\r\n");
}
