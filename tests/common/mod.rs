//! Shared integration-test harness: starts the real `shardis` binary on a free loopback port,
//! waits until it answers PING, and kills it on drop. Every test runs against both shard
//! counts from `shard_counts()` (default `[1, 4]`, override with SHARDIS_TEST_SHARDS=1,4).

#![allow(dead_code)]

pub mod resp;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The shard counts every test runs under.
pub fn shard_counts() -> Vec<usize> {
    std::env::var("SHARDIS_TEST_SHARDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .filter(|v: &Vec<usize>| !v.is_empty())
        .unwrap_or_else(|| vec![1, 4])
}

/// The shardis binary under test: cargo's build, or `SHARDIS_BIN` (a copy kept stable while
/// a test loops in the background and the tree rebuilds).
pub fn bin() -> std::ffi::OsString {
    // Absolute, since some servers start in a directory of their own.
    match std::env::var_os("SHARDIS_BIN") {
        Some(p) => std::fs::canonicalize(&p).map_or(p, std::ffi::OsString::from),
        None => env!("CARGO_BIN_EXE_shardis").into(),
    }
}

/// A free TCP port on 127.0.0.1 for a server a test starts, released right away. It is
/// drawn below the kernel's ephemeral range (32768 and up by default): a port the OS hands
/// out for `bind(0)` can be taken, before the server binds it, as the local port of any
/// outgoing connection the parallel tests open, and the server then fails to start.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (u64::from(std::process::id()) << 20)
        ^ SEQ.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let mut x = seed | 1;
    for _ in 0..200 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let port = 12000 + (x % 20000) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

pub struct Server {
    pub port: u16,
    pub shards: usize,
    child: Child,
    /// Where stderr (the log) goes, for servers started with `start_logged`.
    log: Option<std::path::PathBuf>,
    /// The private `dir` given by `start_with` (removed on drop).
    dir: Option<std::path::PathBuf>,
}

impl Server {
    /// Starts shardis with `--shards n` and default settings.
    pub fn start(shards: usize) -> Server {
        Server::start_with(shards, &[])
    }

    /// Starts shardis with `--shards n` plus extra flags.
    pub fn start_with(shards: usize, extra: &[&str]) -> Server {
        for _ in 0..5 {
            let port = free_port();
            // A private working directory, so SAVE never writes into the checkout and no
            // test loads another's dump.rdb (an explicit `--dir` in `extra` wins).
            let dir = fresh_dir("shardis-test-dir", port);
            let mut cmd = Command::new(bin());
            cmd.args(["--port", &port.to_string(), "--shards", &shards.to_string()])
                .arg("--dir")
                .arg(&dir)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null());
            if std::env::var_os("SHARDIS_TEST_LOG").is_none() {
                cmd.stderr(Stdio::null());
            }
            let mut child = cmd.spawn().expect("cannot start shardis");
            let up = wait_for(Duration::from_secs(10), || {
                if let Ok(Some(_)) = child.try_wait() {
                    return true;
                }
                ping(port)
            });
            if up && child.try_wait().ok().flatten().is_none() {
                return Server {
                    port,
                    shards,
                    child,
                    log: None,
                    dir: Some(dir),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("shardis did not start");
    }

    /// Starts shardis with `--shards n` plus `extra` flags through `sh -c '<shell>; exec
    /// shardis ...'` (`shell` sets limits such as `ulimit -n 256`), its log in a file that
    /// `log()` reads.
    pub fn start_logged(shards: usize, shell: &str, extra: &[&str]) -> Server {
        Server::launch_logged(Some(shell), None, shards, extra)
    }

    /// Starts shardis as redis-server is started: `shardis CONFIGFILE --port P --shards n
    /// [extra...]`, its log in a file that `log()` reads (unless `extra` names a logfile).
    pub fn start_conf(conf: &str, shards: usize, extra: &[&str]) -> Server {
        Server::launch_logged(None, Some(conf), shards, extra)
    }

    fn launch_logged(
        shell: Option<&str>,
        conf: Option<&str>,
        shards: usize,
        extra: &[&str],
    ) -> Server {
        let mut last_log = String::new();
        for attempt in 0..5 {
            let port = free_port();
            let log = std::env::temp_dir().join(format!(
                "shardis-test-{}-{port}-{attempt}.log",
                std::process::id()
            ));
            let file = std::fs::File::create(&log).expect("create log file");
            // A private working directory, as `start_with` gives (a config file or flag
            // naming `dir` still wins): the default save rules write dump.rdb on SIGTERM.
            let dir = fresh_dir("shardis-test-cwd", port);
            let mut cmd = match shell {
                Some(sh) => {
                    let mut c = Command::new("sh");
                    c.arg("-c")
                        .arg(format!("{sh}; exec \"$0\" \"$@\""))
                        .arg(bin());
                    c
                }
                None => Command::new(bin()),
            };
            let mut child = cmd
                .current_dir(&dir)
                .args(conf)
                .args(["--port", &port.to_string(), "--shards", &shards.to_string()])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(file)
                .spawn()
                .expect("cannot start shardis");
            let up = wait_for(Duration::from_secs(10), || {
                if let Ok(Some(_)) = child.try_wait() {
                    return true;
                }
                ping(port)
            });
            if up && child.try_wait().ok().flatten().is_none() {
                return Server {
                    port,
                    shards,
                    child,
                    log: Some(log),
                    dir: Some(dir),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            let _ = std::fs::remove_file(&log);
        }
        panic!("shardis did not start: {last_log}");
    }

    /// The log so far (servers started with `start_logged`; empty otherwise).
    pub fn log(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Sends a signal (`TERM`, `INT`, ...) to the server with kill(1).
    pub fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{name} failed");
    }

    /// CPU time (user + system) the server has used so far, from /proc/<pid>/stat.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the `(comm)` one; utime and stime are the 14th and 15th overall.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
        // USER_HZ is 100 on Linux.
        Duration::from_millis(ticks * 10)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// A `redis` crate connection.
    pub fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
            .expect("connect")
    }

    /// A raw TCP connection with a read timeout.
    pub fn raw(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.set_nodelay(true).ok();
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(p) = &self.log {
            let _ = std::fs::remove_file(p);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn ping(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    // A server with a password answers NOAUTH: it is up all the same.
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).is_ok() && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
}

/// Sends raw bytes and reads until `expect_len` bytes arrive or the peer closes.
pub fn roundtrip(s: &mut TcpStream, req: &[u8], expect_len: usize) -> Vec<u8> {
    s.write_all(req).expect("write");
    read_n(s, expect_len)
}

/// Reads up to `n` bytes (stops early on EOF or timeout).
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut buf = [0u8; 65536];
    while out.len() < n {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(_) => break,
        }
    }
    out
}

/// True when the peer has closed the connection (read returns EOF).
pub fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(0))
        || matches!(s.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset)
}

/// Path of redis-cli if installed.
pub fn redis_cli() -> Option<&'static str> {
    ["/usr/bin/redis-cli", "/usr/local/bin/redis-cli"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// Path of redis-server if installed.
pub fn redis_server() -> Option<&'static str> {
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// Runs redis-cli against the server with `args`; returns stdout.
pub fn cli(port: u16, args: &[&str]) -> String {
    let bin = redis_cli().expect("redis-cli is required (the test command installs redis-tools)");
    let out = Command::new(bin)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("run redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `INFO section` as a field -> value map (comment and blank lines dropped).
pub fn info(c: &mut redis::Connection, section: &str) -> std::collections::HashMap<String, String> {
    let text: String = redis::cmd("INFO").arg(section).query(c).unwrap();
    text.split("\r\n")
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An empty directory no other server of this test run has used: a port can come back from
/// `free_port` later in the same run, and a dump.rdb left there would be loaded.
pub fn fresh_dir(prefix: &str, port: u16) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{prefix}-{}-{port}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}
