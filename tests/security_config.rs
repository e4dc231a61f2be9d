//! Running shardis like redis-server: `requirepass` and AUTH (flag, file, CONFIG SET),
//! protected mode, the redis-server command line (`shardis FILE --name value`), Debian's
//! stock redis.conf, `include`, `daemonize`/`pidfile`/`logfile`/`dir`, and directives that
//! are refused or accepted with a warning (never silently ignored). Texts checked against
//! redis-server 7.0.15.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::resp::{encode_command, Client};
use common::Server;

fn cmd(c: &mut Client, args: &[&str]) -> String {
    let argv: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    c.send(&encode_command(&argv)).unwrap();
    String::from_utf8_lossy(&c.read_reply().unwrap()).into_owned()
}

const NOAUTH: &str = "-NOAUTH Authentication required.\r\n";
const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

/// A temporary directory for one test.
fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("shardis-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check_password_gate(s: &Server, pass: &str) {
    let n = s.shards;
    let mut c = Client::connect(s.port);
    assert_eq!(cmd(&mut c, &["GET", "k"]), NOAUTH, "shards={n}");
    assert_eq!(cmd(&mut c, &["PING"]), NOAUTH, "shards={n}");
    // The password is not readable before AUTH.
    assert_eq!(cmd(&mut c, &["CONFIG", "GET", "requirepass"]), NOAUTH);
    // A transaction started unauthenticated aborts as in Redis.
    assert_eq!(cmd(&mut c, &["MULTI"]), NOAUTH);
    assert_eq!(
        cmd(&mut c, &["EXEC"]),
        "-EXECABORT Transaction discarded because of: NOAUTH Authentication required.\r\n"
    );
    assert!(cmd(&mut c, &["HELLO", "3"]).starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(cmd(&mut c, &["AUTH", "wrong"]), WRONGPASS);
    assert_eq!(cmd(&mut c, &["AUTH", "bob", pass]), WRONGPASS);
    assert_eq!(cmd(&mut c, &["AUTH", pass]), "+OK\r\n");
    assert_eq!(cmd(&mut c, &["SET", "k", "v"]), "+OK\r\n");
    // A later wrong AUTH does not log the client out (Redis 7.0).
    assert_eq!(cmd(&mut c, &["AUTH", "wrong"]), WRONGPASS);
    assert_eq!(cmd(&mut c, &["GET", "k"]), "$1\r\nv\r\n");
    // RESET goes back to the default user, unauthenticated.
    assert_eq!(cmd(&mut c, &["RESET"]), "+RESET\r\n");
    assert_eq!(cmd(&mut c, &["GET", "k"]), NOAUTH);
    // HELLO AUTH authenticates and switches protocol in one step.
    let h = cmd(&mut c, &["HELLO", "3", "AUTH", "default", pass]);
    assert!(h.starts_with("%7\r\n"), "shards={n}: {h}");
    assert_eq!(cmd(&mut c, &["GET", "k"]), "$1\r\nv\r\n");
    // The redis crate with the password in the URL.
    let mut r = redis::Client::open(format!("redis://:{pass}@127.0.0.1:{}/", s.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut r).unwrap();
    assert_eq!(v, "v");
    // redis-cli -a.
    if common::redis_cli().is_some() {
        let out = Command::new("redis-cli")
            .args([
                "-p",
                &s.port.to_string(),
                "-a",
                pass,
                "--no-auth-warning",
                "GET",
                "k",
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");
    }
}

#[test]
fn requirepass_from_flag_file_and_config_set() {
    for n in common::shard_counts() {
        let s = Server::start_with(n, &["--requirepass", "s3cret"]);
        check_password_gate(&s, "s3cret");

        let dir = tmpdir("pass");
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            "# a password with a space\nrequirepass \"open sesame\"\n",
        )
        .unwrap();
        let s = Server::start_conf(conf.to_str().unwrap(), n, &[]);
        check_password_gate(&s, "open sesame");

        // CONFIG SET at run time: existing connections stay in, new ones must AUTH.
        let s = Server::start(n);
        let mut old = Client::connect(s.port);
        assert_eq!(
            cmd(&mut old, &["CONFIG", "SET", "requirepass", "later"]),
            "+OK\r\n"
        );
        assert_eq!(cmd(&mut old, &["PING"]), "+PONG\r\n");
        assert_eq!(
            cmd(&mut old, &["CONFIG", "GET", "requirepass"]),
            "*2\r\n$11\r\nrequirepass\r\n$5\r\nlater\r\n"
        );
        check_password_gate(&s, "later");
        // Without a password, AUTH answers as Redis's nopass default user.
        assert_eq!(
            cmd(&mut old, &["CONFIG", "SET", "requirepass", ""]),
            "+OK\r\n"
        );
        let mut fresh = Client::connect(s.port);
        assert_eq!(cmd(&mut fresh, &["PING"]), "+PONG\r\n");
        assert!(cmd(&mut fresh, &["AUTH", "x"]).starts_with("-ERR AUTH <password> called without"));
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Connects from `src` (a loopback address other than 127.0.0.1) and returns what the
/// server sends back to a PING. Uses python3 to bind the source address.
fn ping_from(src: &str, port: u16) -> Option<String> {
    let script = format!(
        "import socket,sys\ns=socket.socket(); s.settimeout(3); s.bind(('{src}',0))\n\
         s.connect(('127.0.0.1',{port})); s.sendall(b'PING\\r\\n')\n\
         d=b''\ntry:\n  while True:\n    x=s.recv(65536)\n    if not x: break\n    d+=x\n    \
         if d.endswith(b'\\r\\n'): break\nexcept Exception: pass\nsys.stdout.write(d.decode())"
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .stderr(Stdio::inherit())
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn protected_mode_turns_away_outside_clients_without_a_password() {
    if Command::new("python3").arg("-V").output().is_err() {
        eprintln!("python3 missing: protected-mode test skipped");
        return;
    }
    for n in common::shard_counts() {
        let s = Server::start_with(n, &["--bind", "0.0.0.0"]);
        let denied = ping_from("127.0.0.2", s.port).unwrap();
        assert!(
            denied.starts_with("-DENIED Redis is running in protected mode"),
            "shards={n}: {denied}"
        );
        assert_eq!(ping_from("127.0.0.1", s.port).unwrap(), "+PONG\r\n");
        // Turned off at run time, from loopback.
        let mut c = Client::connect(s.port);
        assert_eq!(
            cmd(&mut c, &["CONFIG", "GET", "protected-mode"]),
            "*2\r\n$14\r\nprotected-mode\r\n$3\r\nyes\r\n"
        );
        assert_eq!(
            cmd(&mut c, &["CONFIG", "SET", "protected-mode", "no"]),
            "+OK\r\n"
        );
        assert_eq!(ping_from("127.0.0.2", s.port).unwrap(), "+PONG\r\n");
        // With a password, outside clients are let in and asked for it.
        let s = Server::start_with(n, &["--bind", "0.0.0.0", "--requirepass", "pw"]);
        assert_eq!(ping_from("127.0.0.2", s.port).unwrap(), NOAUTH);
    }
}

#[test]
fn debian_stock_redis_conf_starts_unchanged() {
    let stock = "/etc/redis/redis.conf";
    if !std::path::Path::new(stock).exists() {
        eprintln!("{stock} missing (tools/test.sh installs redis-server): skipped");
        return;
    }
    let dir = tmpdir("stock");
    // Only what would collide with a system redis-server is overridden, as a second
    // instance would be started: port (by the harness), daemonize, pidfile, logfile, dir.
    let logfile = dir.join("shardis.log");
    let pidfile = dir.join("shardis.pid");
    let s = Server::start_conf(
        stock,
        2,
        &[
            "--daemonize",
            "no",
            "--pidfile",
            pidfile.to_str().unwrap(),
            "--logfile",
            logfile.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
        ],
    );
    let mut c = Client::connect(s.port);
    assert_eq!(cmd(&mut c, &["SET", "k", "v"]), "+OK\r\n");
    // Values in force come from the file.
    let get = |c: &mut Client, p: &str| cmd(c, &["CONFIG", "GET", p]);
    assert!(get(&mut c, "protected-mode").ends_with("$3\r\nyes\r\n"));
    assert!(get(&mut c, "appendonly").ends_with("$2\r\nno\r\n"));
    assert!(get(&mut c, "dir").contains(dir.to_str().unwrap()));
    assert!(get(&mut c, "jemalloc-bg-thread").ends_with("$3\r\nyes\r\n"));
    // The pid file holds the server's pid; the log went to the logfile, with one warning
    // per unsupported directive. (`bind 127.0.0.1 -::1` listens on both: tests/bind.rs.)
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert_eq!(pid.trim(), s.pid().to_string());
    let log = std::fs::read_to_string(&logfile).unwrap();
    for name in ["jemalloc-bg-thread", "set-proc-title", "disable-thp"] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("'{name}")) && l.contains(" # ")),
            "no warning for {name} in:\n{log}"
        );
    }
    // Values that ask for what shardis does anyway draw no warning.
    for name in [
        "always-show-logo",
        "aof-use-rdb-preamble",
        "lazyfree-lazy-expire",
        "hz",
        "repl-diskless-sync",
    ] {
        assert!(
            !log.lines().any(|l| l.contains(&format!("'{name}'"))),
            "a warning for {name} in:\n{log}"
        );
    }
    assert!(log.contains("Ready to accept connections"), "{log}");
    drop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn daemonize_include_and_refused_directives() {
    let bin = env!("CARGO_BIN_EXE_shardis");
    let dir = tmpdir("daemon");
    let port = common::free_port();
    let inc = dir.join("port.conf");
    std::fs::write(&inc, format!("port {port}\n")).unwrap();
    let conf = dir.join("main.conf");
    std::fs::write(
        &conf,
        format!(
            "include {}\ndaemonize yes\npidfile {}\nlogfile {}\nshards 1\nio-threads 4\ndir {}\n",
            inc.display(),
            dir.join("d.pid").display(),
            dir.join("d.log").display(),
            dir.display()
        ),
    )
    .unwrap();
    // The launcher returns at once; the daemon serves on the included port.
    let st = Command::new(bin)
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    assert!(common::wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            && std::fs::read_to_string(dir.join("d.pid")).is_ok_and(|p| !p.trim().is_empty())
    }));
    let pid = std::fs::read_to_string(dir.join("d.pid")).unwrap();
    let mut c = Client::connect(port);
    assert_eq!(cmd(&mut c, &["PING"]), "+PONG\r\n");
    assert!(cmd(&mut c, &["CONFIG", "GET", "io-threads"]).ends_with("$1\r\n4\r\n"));
    let log = std::fs::read_to_string(dir.join("d.log")).unwrap();
    assert!(log.contains("'io-threads' is not supported"), "{log}");
    let _ = Command::new("kill").arg(pid.trim()).status();
    assert!(common::wait_for(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    }));

    // Refused: settings that would lose data or weaken security if ignored. Each names
    // the reason and the process exits with status 1.
    let refused: &[(&[&str], &str)] = &[
        (&["--save", "900"], "Invalid save parameters"),
        (&["--appendonly", "maybe"], "yes"),
        (&["--replicaof", "127.0.0.1 port"], "Invalid master port"),
        (
            &["--rename-command", "NOSUCH", "x"],
            "No such command in rename-command",
        ),
        (
            &["--notify-keyspace-events", "KEAQ"],
            "Invalid event class character",
        ),
        (
            &["--bind", "127.0.0.1 10.255.255.1"],
            "Could not create server TCP listening socket 10.255.255.1:",
        ),
        (&["--nosuch-directive", "1"], "unknown parameter"),
    ];
    for (args, why) in refused {
        let out = Command::new(bin)
            .args(["--port", &common::free_port().to_string()])
            .args(*args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    // Accepted: the values that ask for nothing, in redis-server's flag forms.
    let s = Server::start_with(
        1,
        &[
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1 -::1",
        ],
    );
    let mut c = Client::connect(s.port);
    assert_eq!(
        cmd(&mut c, &["CONFIG", "SET", "save", "900"]),
        "-ERR CONFIG SET failed (possibly related to argument 'save') - Invalid save \
         parameters\r\n"
    );
    assert_eq!(cmd(&mut c, &["CONFIG", "SET", "save", "900 1"]), "+OK\r\n");
    assert_eq!(cmd(&mut c, &["CONFIG", "SET", "save", ""]), "+OK\r\n");
    assert!(cmd(&mut c, &["CONFIG", "SET", "dir", "/tmp"]).contains("can't set protected config"));
    let _ = std::fs::remove_dir_all(dir);
}

/// CONFIG REWRITE keeps the user's file: comments, order, units, every bind address, the
/// password and protected mode; a stock redis-server started on the rewritten file still
/// asks for the password.
#[test]
fn config_rewrite_keeps_the_users_file() {
    let dir = tmpdir("rewrite");
    let conf = dir.join("redis.conf");
    let original = "# my settings\nmaxmemory 2gb\nbind 127.0.0.1 -::1\nrequirepass \"sec ret\"\n\
                    protected-mode yes\n# keep me\nappendonly no\nsave \"\"\n";
    std::fs::write(&conf, original).unwrap();
    let s = Server::start_conf(conf.to_str().unwrap(), 1, &[]);
    let mut c = Client::connect(s.port);
    assert_eq!(cmd(&mut c, &["AUTH", "sec ret"]), "+OK\r\n");
    assert_eq!(
        cmd(
            &mut c,
            &["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"]
        ),
        "+OK\r\n"
    );
    assert_eq!(cmd(&mut c, &["CONFIG", "REWRITE"]), "+OK\r\n");
    let text = std::fs::read_to_string(&conf).unwrap();
    for line in [
        "# my settings",
        "maxmemory 2gb",
        "bind 127.0.0.1 -::1",
        "requirepass \"sec ret\"",
        "protected-mode yes",
        "# keep me",
        "maxmemory-policy allkeys-lru",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "'{line}' missing in:\n{text}"
        );
    }
    // Order kept: the comment still comes first, the new setting at the end.
    assert!(text.starts_with("# my settings\nmaxmemory 2gb\n"), "{text}");
    // The rewritten file is a valid redis-server configuration that keeps the password
    // (the directives only shardis knows are left out when at their defaults).
    let Some(bin) = common::redis_server() else {
        return;
    };
    let port = common::free_port();
    let mut rs = Command::new(bin)
        .arg(&conf)
        .args(["--port", &port.to_string(), "--daemonize", "no", "--dir"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let up = common::wait_for(Duration::from_secs(5), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let answer = up.then(|| {
        let mut r = Client::connect(port);
        cmd(&mut r, &["GET", "k"])
    });
    let _ = rs.kill();
    let _ = rs.wait();
    assert_eq!(answer.as_deref(), Some(NOAUTH), "{text}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `supervised systemd`: READY=1 reaches $NOTIFY_SOCKET once the server serves.
#[test]
fn supervised_systemd_notifies_ready() {
    let dir = tmpdir("notify");
    let sock_path = dir.join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args([
            "--port",
            &port.to_string(),
            "--shards",
            "1",
            "--supervised",
            "systemd",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let got = sock
        .recv(&mut buf)
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    // By the time READY=1 is sent, clients are served.
    let served = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    let got = got.unwrap();
    assert!(got.contains("READY=1"), "{got}");
    assert!(served);
    let _ = std::fs::remove_dir_all(dir);
}

/// ACL users: from `user` lines, ACL SETUSER and an aclfile; commands, keys (across shards)
/// and channels checked; a deleted user's connections are logged out; ACL LOG records
/// denials; ACL SAVE / LOAD round trip. Texts as Redis 7.0 (tests/compat covers the rest).
#[test]
fn acl_users_keys_channels_and_files() {
    for n in common::shard_counts() {
        let dir = tmpdir("acl");
        let conf = dir.join("redis.conf");
        std::fs::write(
            &conf,
            "user alice on >apw ~app:* &news +@read +@write +@pubsub -flushall\n",
        )
        .unwrap();
        let s = Server::start_conf(conf.to_str().unwrap(), n, &[]);
        let mut admin = Client::connect(s.port);
        let mut a = Client::connect(s.port);
        assert_eq!(cmd(&mut a, &["AUTH", "alice", "apw"]), "+OK\r\n");
        assert!(cmd(&mut a, &["ACL", "WHOAMI"]).starts_with("-NOPERM"));
        assert_eq!(cmd(&mut a, &["SET", "app:1", "x"]), "+OK\r\n");
        // Keys on every shard: one outside the pattern denies the whole MGET.
        assert_eq!(
            cmd(&mut a, &["MGET", "app:1", "app:2", "app:3"]),
            "*3\r\n$1\r\nx\r\n$-1\r\n$-1\r\n"
        );
        assert_eq!(
            cmd(&mut a, &["MGET", "app:1", "other"]),
            "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n"
        );
        assert_eq!(
            cmd(&mut a, &["FLUSHALL"]),
            "-NOPERM this user has no permissions to run the 'flushall' command\r\n"
        );
        assert_eq!(cmd(&mut a, &["PUBLISH", "news", "m"]), ":0\r\n");
        assert!(cmd(&mut a, &["SUBSCRIBE", "sports"]).starts_with("-NOPERM"));
        // The ACL LOG has the denials, newest first.
        let log = cmd(&mut admin, &["ACL", "LOG"]);
        assert!(
            log.contains("$7\r\nchannel\r\n") && log.contains("$6\r\nsports\r\n"),
            "{log}"
        );
        assert!(
            log.contains("$5\r\nalice\r\n") && log.contains("$5\r\nother\r\n"),
            "{log}"
        );
        // Changes apply at once to connected clients; a deleted user is logged out.
        assert_eq!(
            cmd(&mut admin, &["ACL", "SETUSER", "alice", "-get"]),
            "+OK\r\n"
        );
        assert!(cmd(&mut a, &["GET", "app:1"]).starts_with("-NOPERM"));
        assert_eq!(cmd(&mut admin, &["ACL", "DELUSER", "alice"]), ":1\r\n");
        assert_eq!(cmd(&mut a, &["ACL", "WHOAMI"]), "$7\r\ndefault\r\n");
        // A restricted default user restricts clients that never sent AUTH.
        assert_eq!(
            cmd(&mut admin, &["ACL", "SETUSER", "default", "-flushdb"]),
            "+OK\r\n"
        );
        let mut fresh = Client::connect(s.port);
        assert!(cmd(&mut fresh, &["FLUSHDB"]).starts_with("-NOPERM"));
        assert_eq!(cmd(&mut fresh, &["PING"]), "+PONG\r\n");
        drop(s);

        // aclfile: loaded at startup, ACL SAVE writes it, ACL LOAD reads it back.
        let aclfile = dir.join("users.acl");
        std::fs::write(&aclfile, "user carol on >cpw ~* &* +@all -debug\n").unwrap();
        let s = Server::start_with(n, &["--aclfile", aclfile.to_str().unwrap()]);
        let mut c = Client::connect(s.port);
        assert_eq!(cmd(&mut c, &["AUTH", "carol", "cpw"]), "+OK\r\n");
        assert_eq!(
            cmd(&mut c, &["ACL", "SETUSER", "dave", "on", "nopass", "+ping"]),
            "+OK\r\n"
        );
        assert_eq!(cmd(&mut c, &["ACL", "SAVE"]), "+OK\r\n");
        let saved = std::fs::read_to_string(&aclfile).unwrap();
        assert!(
            saved.contains("user dave on nopass resetchannels -@all +ping"),
            "{saved}"
        );
        assert_eq!(cmd(&mut c, &["ACL", "DELUSER", "dave"]), ":1\r\n");
        assert_eq!(cmd(&mut c, &["ACL", "LOAD"]), "+OK\r\n");
        assert_eq!(
            cmd(&mut c, &["ACL", "USERS"]),
            "*3\r\n$5\r\ncarol\r\n$4\r\ndave\r\n$7\r\ndefault\r\n"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// client-output-buffer-limit's normal class: a client that pipelines GETs of a big value
/// without reading the replies is closed once its pending output passes the hard limit,
/// so the server's memory stays bounded; other clients are unaffected. Without a limit
/// (Redis's default for normal clients) nothing is closed.
#[test]
fn normal_output_limit_closes_a_client_that_never_reads() {
    for n in common::shard_counts() {
        let s = Server::start_with(n, &["--client-output-buffer-limit", "normal 4mb 2mb 10"]);
        let mut c = Client::connect(s.port);
        let big = "x".repeat(64 * 1024);
        assert_eq!(cmd(&mut c, &["SET", "big", &big]), "+OK\r\n");
        // 4,000 GETs of 64 KB = 256 MB of replies, never read.
        let mut hog = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        hog.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = b"GET big\r\n".repeat(4000);
        let _ = std::io::Write::write_all(&mut hog, &req);
        // The server closes it: reading eventually hits the end (after what it had sent).
        hog.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut total = 0usize;
        let mut buf = vec![0u8; 1 << 20];
        // Only the read timeout means "still open"; the end of the stream or any error
        // the closed socket reports (a reset, usually) means it was closed.
        let closed = loop {
            match std::io::Read::read(&mut hog, &mut buf) {
                Ok(0) => break Ok(()),
                Ok(k) => total += k,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break Err(e)
                }
                Err(_) => break Ok(()),
            }
        };
        assert!(
            closed.is_ok(),
            "shards={n}: the client was not closed: {closed:?}"
        );
        assert!(
            total < 64 << 20,
            "shards={n}: {total} bytes were delivered first"
        );
        // Memory did not grow by the 256 MB of replies; others are still served.
        let used: u64 = cmd(&mut c, &["INFO", "memory"])
            .lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        assert!(used < 64 << 20, "shards={n}: used_memory {used}");
        assert_eq!(cmd(&mut c, &["PING"]), "+PONG\r\n");
        assert!(
            cmd(&mut c, &["CONFIG", "GET", "client-output-buffer-limit"])
                .contains("normal 4194304 2097152 10")
        );
    }
}

/// `acllog-max-len` is a setting: the ACL LOG keeps that many entries, newest first.
#[test]
fn acllog_max_len_bounds_the_acl_log() {
    let s = Server::start(1);
    let mut admin = Client::connect(s.port);
    assert_eq!(
        cmd(
            &mut admin,
            &["ACL", "SETUSER", "bob", "on", ">pw", "+get", "~*"]
        ),
        "+OK\r\n"
    );
    assert_eq!(
        cmd(&mut admin, &["CONFIG", "SET", "acllog-max-len", "2"]),
        "+OK\r\n"
    );
    assert_eq!(
        cmd(&mut admin, &["CONFIG", "GET", "acllog-max-len"]),
        "*2\r\n$14\r\nacllog-max-len\r\n$1\r\n2\r\n"
    );
    let mut b = Client::connect(s.port);
    assert_eq!(cmd(&mut b, &["AUTH", "bob", "pw"]), "+OK\r\n");
    for c in [&["SET", "k", "v"][..], &["DEL", "k"], &["INCR", "k"]] {
        assert!(cmd(&mut b, c).starts_with("-NOPERM"), "{c:?}");
    }
    let log = cmd(&mut admin, &["ACL", "LOG"]);
    assert!(log.starts_with("*2\r\n"), "{log}");
    assert!(
        log.contains("$4\r\nincr\r\n") && log.contains("$3\r\ndel\r\n"),
        "{log}"
    );
    assert!(
        !log.contains("$3\r\nset\r\n"),
        "the oldest entry went: {log}"
    );
}
