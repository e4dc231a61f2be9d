//! One client's hostile input must cost bounded work and never freeze its shard (issue 9,
//! items 2 and 3): glob patterns built to make a backtracking matcher exponential (KEYS,
//! SCAN and SSCAN MATCH, PSUBSCRIBE delivery), and a multibulk request of 1.6M one-byte
//! arguments arriving in 16 KB writes, which a parser restarting on every read re-parses
//! quadratically. Each runs under every shard count of `common::shard_counts()`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;

/// The pattern of CVE-2022-36021: ten stars, then a byte the string does not have.
const EVIL: &str = "*a*a*a*a*a*a*a*a*a*a*b";
/// Every reply to a hostile pattern must arrive within this.
const DEADLINE: Duration = Duration::from_secs(2);

fn resp(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// Reads exactly `n` bytes or panics (with what came) when the read timeout passes first.
fn read_exact_n(s: &mut TcpStream, n: usize, what: &str) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut have = 0;
    while have < n {
        match s.read(&mut out[have..]) {
            Ok(0) => break,
            Ok(k) => have += k,
            Err(e) => panic!(
                "{what}: no reply in time ({e}); got {:?}",
                String::from_utf8_lossy(&out[..have])
            ),
        }
    }
    assert_eq!(have, n, "{what}: connection closed early");
    out
}

/// Runs `query` on `c` with the reply deadline; returns the reply and checks the time.
fn timed<T: redis::FromRedisValue>(c: &mut redis::Connection, q: &redis::Cmd, what: &str) -> T {
    let t = Instant::now();
    let v = q
        .query(c)
        .unwrap_or_else(|e| panic!("{what}: no reply within {DEADLINE:?}: {e}"));
    assert!(t.elapsed() < DEADLINE, "{what} took {:?}", t.elapsed());
    v
}

#[test]
fn hostile_glob_patterns_reply_in_time() {
    let fifty_a = "a".repeat(50);
    let hit = format!("{fifty_a}b");
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        c.set_read_timeout(Some(DEADLINE)).unwrap();
        // Keys spread over every shard; exactly one matches.
        for k in [fifty_a.as_str(), hit.as_str(), "other"] {
            let _: () = redis::cmd("SET").arg(k).arg("v").query(&mut c).unwrap();
        }
        for i in 0..8 {
            let k = format!("{fifty_a}{{{i}}}");
            let _: () = redis::cmd("SET").arg(k).arg("v").query(&mut c).unwrap();
        }
        let _: () = redis::cmd("SADD")
            .arg("set")
            .arg(&fifty_a)
            .arg(&hit)
            .query(&mut c)
            .unwrap();

        let keys: Vec<String> = timed(&mut c, redis::cmd("KEYS").arg(EVIL), "KEYS");
        assert_eq!(keys, vec![hit.clone()], "KEYS, shards={n}");

        let mut found = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<String>) = timed(
                &mut c,
                redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(EVIL),
                "SCAN MATCH",
            );
            found.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(found, vec![hit.clone()], "SCAN MATCH, shards={n}");

        let (_, members): (u64, Vec<String>) = timed(
            &mut c,
            redis::cmd("SSCAN").arg("set").arg(0).arg("MATCH").arg(EVIL),
            "SSCAN MATCH",
        );
        assert_eq!(members, vec![hit.clone()], "SSCAN MATCH, shards={n}");

        // A subscriber with the pattern: a non-matching channel must not freeze PUBLISH,
        // and a matching one is delivered.
        let mut sub = s.raw();
        sub.set_read_timeout(Some(DEADLINE)).unwrap();
        sub.write_all(&resp(&[b"PSUBSCRIBE", EVIL.as_bytes()]))
            .unwrap();
        let confirm = format!(
            "*3\r\n$10\r\npsubscribe\r\n${}\r\n{EVIL}\r\n:1\r\n",
            EVIL.len()
        );
        let got = read_exact_n(&mut sub, confirm.len(), "PSUBSCRIBE");
        assert_eq!(String::from_utf8_lossy(&got), confirm);
        let receivers: i64 = timed(
            &mut c,
            redis::cmd("PUBLISH").arg(&fifty_a).arg("m"),
            "PUBLISH (no match)",
        );
        assert_eq!(receivers, 0, "shards={n}");
        let receivers: i64 = timed(
            &mut c,
            redis::cmd("PUBLISH").arg(&hit).arg("m"),
            "PUBLISH (match)",
        );
        assert_eq!(receivers, 1, "shards={n}");
        let msg = format!(
            "*4\r\n$8\r\npmessage\r\n${}\r\n{EVIL}\r\n${}\r\n{hit}\r\n$1\r\nm\r\n",
            EVIL.len(),
            hit.len()
        );
        let got = read_exact_n(&mut sub, msg.len(), "pmessage");
        assert_eq!(String::from_utf8_lossy(&got), msg, "shards={n}");

        // The server still serves everyone.
        let pong: String = timed(&mut c, &redis::cmd("PING"), "PING");
        assert_eq!(pong, "PONG");
    }
}

/// CPU time (user + system) the process has used so far, from /proc/<pid>/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // /proc counts in USER_HZ clock ticks, 100 a second on Linux.
    let hz = 100;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Two connections served by the same shard: `DEBUG SLEEP` on the first holds back the
/// PONGs of candidates that share its shard.
fn same_shard_pair(s: &Server) -> (TcpStream, TcpStream) {
    let mut a = s.raw();
    if s.shards == 1 {
        return (a, s.raw());
    }
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..8 {
        let mut cands: Vec<TcpStream> = (0..8).map(|_| s.raw()).collect();
        // Settle each candidate on its shard first.
        for c in &mut cands {
            c.write_all(b"PING\r\n").unwrap();
            read_exact_n(c, 7, "PING");
        }
        a.write_all(b"DEBUG SLEEP 0.6\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let t = Instant::now();
        for c in &mut cands {
            c.write_all(b"PING\r\n").unwrap();
        }
        let mut late = Vec::new();
        for (i, c) in cands.iter_mut().enumerate() {
            read_exact_n(c, 7, "PING");
            if t.elapsed() > Duration::from_millis(300) {
                late.push(i);
            }
        }
        read_exact_n(&mut a, 5, "DEBUG SLEEP");
        // The first late one shares the sleeper's shard (those read after it are late too).
        if let Some(&i) = late.first() {
            a.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            return (a, cands.swap_remove(i));
        }
    }
    panic!("no connection landed on the sleeper's shard");
}

#[test]
fn huge_multibulk_in_small_writes_costs_linear_cpu() {
    const ARGS: usize = 1_600_000;
    const CHUNK: usize = 16 * 1024;
    let mut req = format!("*{}\r\n$9\r\nnosuchcmd\r\n", ARGS + 1).into_bytes();
    req.reserve(ARGS * 7);
    for _ in 0..ARGS {
        req.extend_from_slice(b"$1\r\nx\r\n");
    }
    // Redis quotes the arguments until the list reaches 128 bytes: 32 of "'x' ".
    let want = format!(
        "-ERR unknown command 'nosuchcmd', with args beginning with: {}\r\n",
        "'x' ".repeat(32)
    );
    for n in common::shard_counts() {
        let s = Server::start_with(n, &["--enable-debug-command", "local"]);
        let (mut big, mut pinger) = same_shard_pair(&s);
        big.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        pinger
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();

        // Another client of the same shard keeps pinging meanwhile.
        let stop = Arc::new(AtomicBool::new(false));
        let pings = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let (mut worst, mut count) = (Duration::ZERO, 0u32);
                let mut pong = [0u8; 7];
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let ok = pinger.write_all(b"PING\r\n").is_ok()
                        && pinger.read_exact(&mut pong).is_ok()
                        && &pong == b"+PONG\r\n";
                    worst = worst.max(t.elapsed());
                    if !ok {
                        return (worst, count, false);
                    }
                    count += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                (worst, count, true)
            })
        };

        let before = cpu_time(s.pid());
        let t = Instant::now();
        for chunk in req.chunks(CHUNK) {
            big.write_all(chunk).unwrap();
            big.flush().unwrap();
        }
        let got = read_exact_n(&mut big, want.len(), "the 1.6M-argument request");
        let cpu = cpu_time(s.pid()) - before;
        let wall = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let (worst_ping, pings, pings_ok) = pings.join().unwrap();
        assert_eq!(String::from_utf8_lossy(&got), want, "shards={n}");
        eprintln!(
            "shards={n}: {ARGS} args in {CHUNK}-byte writes: server CPU {cpu:?}, wall {wall:?}, \
             {pings} PINGs meanwhile, slowest {worst_ping:?}"
        );
        assert!(pings_ok, "a PING got no reply within 10 s, shards={n}");
        // Debug build: about 0.4 s of CPU parsing linearly; re-parsing the buffer from its
        // start on every read took 48 s, and the PINGs waited over 10 s.
        assert!(
            cpu < Duration::from_secs(2),
            "server CPU {cpu:?}, shards={n}"
        );
        assert!(
            worst_ping < Duration::from_secs(2),
            "a PING on the same shard waited {worst_ping:?}, shards={n}"
        );
        // The connection goes on serving.
        big.write_all(b"PING\r\n").unwrap();
        assert_eq!(read_exact_n(&mut big, 7, "PING after"), b"+PONG\r\n");
    }
}
