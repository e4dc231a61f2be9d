//! Key expiry against the real binary: EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT with NX/XX/GT/LT,
//! TTL/PTTL/EXPIRETIME/PEXPIRETIME, SET EX/PX/EXAT/PXAT/KEEPTTL/GET, SETEX, GETEX, PERSIST,
//! lazy expiry on access, and the active expiry cycle (observed through DBSIZE only, which
//! counts keys whose time has passed until they are really deleted). The expected replies in
//! `SCRIPT` were recorded from redis-server 7.0.15.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;
use redis::Commands;

/// A tiny RESP2 client that renders each reply as text: `+OK`, `:1`, `$value`, `nil`,
/// `-ERR ...`, `[a,b]`, so expected replies can be written exactly as Redis sends them.
struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn new(s: &Server) -> Raw {
        let w = s.raw();
        Raw {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        }
    }

    fn send(&mut self, args: &[&str]) {
        let mut v = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            v.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        self.w.write_all(&v).unwrap();
    }

    fn read(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        let line = line.trim_end_matches("\r\n");
        let (t, rest) = line.split_at(1.min(line.len()));
        match t {
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    return "nil".into();
                }
                let mut b = vec![0u8; n as usize + 2];
                self.r.read_exact(&mut b).unwrap();
                b.truncate(n as usize);
                format!("${}", String::from_utf8_lossy(&b))
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                let items: Vec<String> = (0..n).map(|_| self.read()).collect();
                format!("[{}]", items.join(","))
            }
            _ => line.to_string(),
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        let args: Vec<&str> = line.split_whitespace().collect();
        self.send(&args);
        self.read()
    }

    fn int(&mut self, line: &str) -> i64 {
        let r = self.cmd(line);
        r.strip_prefix(':')
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line}: not an integer reply: {r}"))
    }
}

/// Commands and Redis's replies, in order; time-independent (TTLs are far from rounding).
const SCRIPT: &[(&str, &str)] = &[
    ("SET k v", "+OK"),
    ("EXPIRE k 100 XX", ":0"),
    ("EXPIRE k 100 GT", ":0"),
    ("EXPIRE k 100 LT", ":1"),
    ("TTL k", ":100"),
    ("EXPIRE k 100 NX", ":0"),
    ("EXPIRE k 50 NX", ":0"),
    ("EXPIRE k 200 GT", ":1"),
    ("TTL k", ":200"),
    ("EXPIRE k 150 GT", ":0"),
    ("EXPIRE k 150 LT", ":1"),
    ("TTL k", ":150"),
    ("EXPIRE k 300 LT", ":0"),
    ("EXPIRE k 10 XX", ":1"),
    ("TTL k", ":10"),
    (
        "EXPIRE k 10 NX XX",
        "-ERR NX and XX, GT or LT options at the same time are not compatible",
    ),
    (
        "EXPIRE k 10 GT LT",
        "-ERR GT and LT options at the same time are not compatible",
    ),
    (
        "EXPIRE k 10 NX GT",
        "-ERR NX and XX, GT or LT options at the same time are not compatible",
    ),
    ("EXPIRE k 10 FOO", "-ERR Unsupported option FOO"),
    (
        "EXPIRE k abc",
        "-ERR value is not an integer or out of range",
    ),
    ("EXPIRE k 20 xx gt", ":1"),
    ("EXPIRE k 5 xx gt", ":0"),
    ("TTL k", ":20"),
    ("EXPIRE nokey 10", ":0"),
    ("EXPIRE nokey 10 XX", ":0"),
    ("PEXPIRE k 5000 LT", ":1"),
    (
        "EXPIRE k 99999999999999999",
        "-ERR invalid expire time in 'expire' command",
    ),
    (
        "EXPIRE k 9223372036854775807",
        "-ERR invalid expire time in 'expire' command",
    ),
    (
        "PEXPIRE k 9223372036854775807",
        "-ERR invalid expire time in 'pexpire' command",
    ),
    (
        "EXPIREAT k 9223372036854775807",
        "-ERR invalid expire time in 'expireat' command",
    ),
    ("PEXPIREAT k 9223372036854775807", ":1"),
    (
        "EXPIRE k -9223372036854775808",
        "-ERR invalid expire time in 'expire' command",
    ),
    ("PERSIST k", ":1"),
    ("PERSIST k", ":0"),
    ("TTL k", ":-1"),
    ("EXPIRETIME k", ":-1"),
    ("PEXPIRETIME k", ":-1"),
    ("EXPIRETIME nokey", ":-2"),
    ("PEXPIRETIME nokey", ":-2"),
    ("TTL nokey", ":-2"),
    ("PERSIST nokey", ":0"),
    ("EXPIREAT k 4102444800", ":1"),
    ("EXPIRETIME k", ":4102444800"),
    ("PEXPIRETIME k", ":4102444800000"),
    ("PEXPIREAT k 4102444800123", ":1"),
    ("PEXPIRETIME k", ":4102444800123"),
    ("EXPIRETIME k", ":4102444800"),
    ("EXPIREAT k 4102444801 LT", ":0"),
    ("EXPIREAT k 4102444801 GT", ":1"),
    ("EXPIRETIME k", ":4102444801"),
    ("EXPIREAT k 1", ":1"),
    ("EXISTS k", ":0"),
    ("SET k v", "+OK"),
    ("EXPIRE k 0", ":1"),
    ("EXISTS k", ":0"),
    ("SET k v", "+OK"),
    ("EXPIRE k -1", ":1"),
    ("EXISTS k", ":0"),
    ("SET k v", "+OK"),
    ("PEXPIRE k 0 GT", ":0"),
    ("EXISTS k", ":1"),
    ("PEXPIRE k -5 LT", ":1"),
    ("EXISTS k", ":0"),
    ("SET k v EX 100", "+OK"),
    ("TTL k", ":100"),
    ("SET k v2 KEEPTTL", "+OK"),
    ("TTL k", ":100"),
    ("GET k", "$v2"),
    ("SET k v3", "+OK"),
    ("TTL k", ":-1"),
    ("SET k v EX 0", "-ERR invalid expire time in 'set' command"),
    ("SET k v EX -1", "-ERR invalid expire time in 'set' command"),
    ("SET k v PX 0", "-ERR invalid expire time in 'set' command"),
    (
        "SET k v EX abc",
        "-ERR value is not an integer or out of range",
    ),
    ("SET k v EX 10 PX 10", "-ERR syntax error"),
    ("SET k v EX 10 KEEPTTL", "-ERR syntax error"),
    ("SET k v KEEPTTL EX 10", "-ERR syntax error"),
    ("SET k v EX", "-ERR syntax error"),
    ("SET k v NX XX", "-ERR syntax error"),
    ("SET k v NX GET", "$v3"),
    ("SET k v EXAT 4102444800", "+OK"),
    ("EXPIRETIME k", ":4102444800"),
    ("SET k v PXAT 4102444800999", "+OK"),
    ("PEXPIRETIME k", ":4102444800999"),
    ("SET k new GET", "$v"),
    ("SET nokey2 new GET", "nil"),
    ("GET nokey2", "$new"),
    ("SET k v2 GET EX 100", "$new"),
    ("TTL k", ":100"),
    ("SET k v3 GET KEEPTTL", "$v2"),
    ("TTL k", ":100"),
    ("SET k v4 XX GET", "$v3"),
    ("SET nokey3 v XX GET", "nil"),
    ("EXISTS nokey3", ":0"),
    ("SET k v5 NX GET", "$v4"),
    ("GET k", "$v4"),
    (
        "SET k v EX 9223372036854775807",
        "-ERR invalid expire time in 'set' command",
    ),
    (
        "SET k v PX 9223372036854775807",
        "-ERR invalid expire time in 'set' command",
    ),
    (
        "SET k v EXAT 9223372036854775807",
        "-ERR invalid expire time in 'set' command",
    ),
    ("SETEX k 0 v", "-ERR invalid expire time in 'setex' command"),
    (
        "SETEX k -1 v",
        "-ERR invalid expire time in 'setex' command",
    ),
    (
        "PSETEX k 0 v",
        "-ERR invalid expire time in 'psetex' command",
    ),
    ("SETEX k 100 v", "+OK"),
    ("TTL k", ":100"),
    ("GETEX k PERSIST", "$v"),
    ("TTL k", ":-1"),
    ("GETEX k EX 50", "$v"),
    ("TTL k", ":50"),
    (
        "GETEX k PX 0",
        "-ERR invalid expire time in 'getex' command",
    ),
    ("GETEX k EX 10 PX 10", "-ERR syntax error"),
    ("GETEX nokey", "nil"),
    ("GETEX k PERSIST EX 10", "-ERR syntax error"),
    ("DEL k", ":1"),
];

#[test]
fn expire_ttl_set_options_match_redis() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = Raw::new(&s);
        for (i, (cmd, want)) in SCRIPT.iter().enumerate() {
            let got = c.cmd(cmd);
            assert_eq!(&got, want, "shards={n} step {i}: {cmd}");
        }
    }
}

#[test]
fn millisecond_ttls() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = Raw::new(&s);
        assert_eq!(c.cmd("SET k v PX 100000"), "+OK");
        let p = c.int("PTTL k");
        assert!((99_000..=100_000).contains(&p), "PTTL {p}");
        assert_eq!(c.int("TTL k"), 100);
        assert_eq!(c.int("PEXPIRE k 5000 LT"), 1);
        let p = c.int("PTTL k");
        assert!((4_000..=5_000).contains(&p), "PTTL {p}");
        // PEXPIRETIME is absolute: now + PTTL, within clock slack.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let at = c.int("PEXPIRETIME k");
        assert!(
            (at - (now_ms + p)).abs() < 1_000,
            "PEXPIRETIME {at} vs {now_ms}+{p}"
        );
        // EXPIRETIME rounds to the nearest second, as Redis does ((ms + 500) / 1000).
        assert_eq!(c.int("EXPIRETIME k"), (at + 500) / 1000);
        // TTL rounds to the nearest second as Redis does.
        assert_eq!(c.cmd("SET r v PX 1600"), "+OK");
        assert_eq!(c.int("TTL r"), 2);
        assert_eq!(c.cmd("SET r v PX 1400"), "+OK");
        assert_eq!(c.int("TTL r"), 1);
        assert_eq!(c.int("PTTL nokey"), -2);
        assert_eq!(c.cmd("SET p v"), "+OK");
        assert_eq!(c.int("PTTL p"), -1);
    }
}

#[test]
fn keys_expire_lazily_on_access() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let keys: Vec<String> = (0..8).map(|i| format!("lazy:{i}")).collect();
        let start = Instant::now();
        for k in &keys {
            let _: () = redis::cmd("SET")
                .arg(k)
                .arg("v")
                .arg("PX")
                .arg(400)
                .query(&mut c)
                .unwrap();
        }
        let _: () = c.set("lazy:keep", "v").unwrap();
        // Still there right after.
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        if start.elapsed() < Duration::from_millis(350) {
            assert!(got.iter().all(|v| v.is_some()), "expired early: {got:?}");
        }
        // Every way of reading the keys stops seeing them once their time has passed
        // (wait for the last one set: it expires last).
        assert!(common::wait_for(Duration::from_secs(5), || {
            let v: Option<String> = c.get(&keys[keys.len() - 1]).unwrap();
            v.is_none()
        }));
        assert!(
            start.elapsed() >= Duration::from_millis(390),
            "key expired after {:?}, before its 400 ms",
            start.elapsed()
        );
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        assert_eq!(got, vec![None; keys.len()], "shards={n}");
        let ex: i64 = redis::cmd("EXISTS").arg(&keys).query(&mut c).unwrap();
        assert_eq!(ex, 0);
        let ttl: i64 = c.ttl(&keys[1]).unwrap();
        assert_eq!(ttl, -2);
        let t: String = redis::cmd("TYPE").arg(&keys[2]).query(&mut c).unwrap();
        assert_eq!(t, "none");
        let all: Vec<String> = c.keys("lazy:*").unwrap();
        assert_eq!(all, vec!["lazy:keep".to_string()]);
        // An expired key can be set again, and INCR starts from zero.
        let v: i64 = c.incr(&keys[3], 1).unwrap();
        assert_eq!(v, 1);
        let ttl: i64 = c.ttl(&keys[3]).unwrap();
        assert_eq!(ttl, -1, "a recreated key has no TTL");
    }
}

#[test]
fn active_expiry_deletes_untouched_keys_on_every_shard() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let mut p = redis::pipe();
        for i in 0..2000 {
            p.cmd("SET")
                .arg(format!("act:{i}"))
                .arg("v")
                .arg("PX")
                .arg(100)
                .ignore();
        }
        for i in 0..50 {
            p.cmd("SET").arg(format!("stay:{i}")).arg("v").ignore();
            p.cmd("SET")
                .arg(format!("long:{i}"))
                .arg("v")
                .arg("EX")
                .arg(1000)
                .ignore();
        }
        let _: () = p.query(&mut c).unwrap();
        // The same in another database.
        let mut c9 = s.client();
        let _: () = redis::cmd("SELECT").arg(9).query(&mut c9).unwrap();
        let mut p = redis::pipe();
        for i in 0..500 {
            p.cmd("PSETEX")
                .arg(format!("act9:{i}"))
                .arg(100)
                .arg("v")
                .ignore();
        }
        let _: () = p.query(&mut c9).unwrap();
        // DBSIZE counts keys until they are really deleted; nobody touches them meanwhile.
        let mut last = (0, 0);
        let done = common::wait_for(Duration::from_secs(8), || {
            let a: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
            let b: i64 = redis::cmd("DBSIZE").query(&mut c9).unwrap();
            last = (a, b);
            a == 100 && b == 0
        });
        assert!(
            done,
            "shards={n}: active expiry left DBSIZE at {last:?} (want (100, 0))"
        );
        // Keys without a TTL, or with a long one, were left alone.
        let ex: i64 = redis::cmd("EXISTS")
            .arg((0..50).map(|i| format!("stay:{i}")).collect::<Vec<_>>())
            .arg((0..50).map(|i| format!("long:{i}")).collect::<Vec<_>>())
            .query(&mut c)
            .unwrap();
        assert_eq!(ex, 100);
    }
}
