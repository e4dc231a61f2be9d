//! Pub/Sub against the real binary, for every shard count in `common::shard_counts()`:
//! delivery across shards, patterns, PUBLISH counts, PUBSUB introspection, per-publisher
//! order, RESP2 subscribed mode and RESP3 push frames (byte-exact, checked against
//! redis-server 7.0.15), subscription cleanup, and the pubsub output buffer limits.
//!
//! Connections land on shards by the kernel's SO_REUSEPORT hash, so tests that need
//! subscribers on every shard open 16 of them: with 4 shards, all 16 landing on one shard
//! has a probability of 4^-15.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{wait_for, Server};
use redis::{Connection, Value};

const WAIT: Duration = Duration::from_secs(10);

/// A raw RESP connection: write commands, read whole frames as bytes.
struct Raw {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Raw {
    fn new(s: &Server) -> Raw {
        let w = s.raw();
        let r = BufReader::new(w.try_clone().expect("clone"));
        Raw { r, w }
    }

    fn send(&mut self, args: &[&[u8]]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.w.write_all(&out).expect("write");
    }

    /// Reads one complete frame (nested aggregates included).
    fn frame(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        read_frame(&mut self.r, &mut out);
        out
    }

    /// Sends a command and reads `frames` frames, concatenated.
    fn cmd(&mut self, args: &[&[u8]], frames: usize) -> Vec<u8> {
        self.send(args);
        (0..frames).flat_map(|_| self.frame()).collect()
    }

    /// True once the server has closed the connection (whatever was buffered is skipped).
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 65536];
        loop {
            match self.r.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
            }
        }
    }
}

fn read_frame(r: &mut impl BufRead, out: &mut Vec<u8>) {
    let start = out.len();
    r.read_until(b'\n', out).expect("read reply line");
    let line = out[start..].to_vec();
    assert!(line.ends_with(b"\r\n"), "truncated reply: {:?}", esc(out));
    let n: i64 = std::str::from_utf8(&line[1..line.len() - 2])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match line[0] {
        b'$' | b'=' if n >= 0 => {
            let mut body = vec![0u8; n as usize + 2];
            r.read_exact(&mut body).expect("read bulk");
            out.extend_from_slice(&body);
        }
        b'*' | b'>' | b'~' | b'%' => {
            let items = if line[0] == b'%' { n * 2 } else { n };
            for _ in 0..items.max(0) {
                read_frame(r, out);
            }
        }
        _ => {}
    }
}

fn esc(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace("\r\n", "\\r\\n")
}

fn publish(c: &mut Connection, ch: &str, msg: &str) -> i64 {
    redis::cmd("PUBLISH").arg(ch).arg(msg).query(c).unwrap()
}

fn numsub(c: &mut Connection, ch: &str) -> i64 {
    let v: Vec<Value> = redis::cmd("PUBSUB").arg("NUMSUB").arg(ch).query(c).unwrap();
    match v.get(1) {
        Some(Value::Int(n)) => *n,
        other => panic!("NUMSUB reply {other:?}"),
    }
}

fn numpat(c: &mut Connection) -> i64 {
    redis::cmd("PUBSUB").arg("NUMPAT").query(c).unwrap()
}

fn channels(c: &mut Connection, pattern: Option<&str>) -> Vec<String> {
    let mut cmd = redis::cmd("PUBSUB");
    cmd.arg("CHANNELS");
    if let Some(p) = pattern {
        cmd.arg(p);
    }
    let mut v: Vec<String> = cmd.query(c).unwrap();
    v.sort();
    v
}

fn frame(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n{p}\r\n", p.len()).as_bytes());
    }
    out
}

#[test]
fn publish_reaches_subscribers_on_every_shard() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut conns: Vec<Connection> = (0..16).map(|_| s.client()).collect();
        let mut pconn = s.client();
        let mut subs: Vec<_> = conns.iter_mut().map(|c| c.as_pubsub()).collect();
        for ps in subs.iter_mut() {
            ps.subscribe("news").unwrap();
            ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let mut psub = pconn.as_pubsub();
        psub.psubscribe("n[aeiou]w*").unwrap();
        psub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

        let mut p = s.client();
        assert_eq!(numsub(&mut p, "news"), 16, "shards={n}");
        assert_eq!(numsub(&mut p, "other"), 0, "shards={n}");
        assert_eq!(numpat(&mut p), 1, "shards={n}");
        assert_eq!(channels(&mut p, None), vec!["news"], "shards={n}");
        assert_eq!(channels(&mut p, Some("ne*")), vec!["news"], "shards={n}");
        assert!(channels(&mut p, Some("x*")).is_empty(), "shards={n}");
        let stats: String = redis::cmd("INFO").arg("stats").query(&mut p).unwrap();
        assert!(stats.contains("\r\npubsub_channels:1\r\n"), "shards={n}");
        assert!(stats.contains("\r\npubsub_patterns:1\r\n"), "shards={n}");

        // 16 channel subscribers + 1 pattern subscriber, wherever they live.
        assert_eq!(publish(&mut p, "news", "hello"), 17, "shards={n}");
        for (i, ps) in subs.iter_mut().enumerate() {
            let m = ps.get_message().unwrap();
            assert_eq!(m.get_channel_name(), "news", "shards={n} sub {i}");
            assert_eq!(m.get_payload::<String>().unwrap(), "hello", "shards={n}");
            assert!(!m.from_pattern(), "shards={n}");
        }
        let m = psub.get_message().unwrap();
        assert!(m.from_pattern(), "shards={n}");
        assert_eq!(m.get_pattern::<String>().unwrap(), "n[aeiou]w*");
        assert_eq!(m.get_channel_name(), "news");
        assert_eq!(m.get_payload::<String>().unwrap(), "hello");

        // Only the pattern matches this channel; nothing matches the last one.
        assert_eq!(publish(&mut p, "nowhere", "x"), 1, "shards={n}");
        assert_eq!(publish(&mut p, "nothing-here", "x"), 0, "shards={n}");
        let m = psub.get_message().unwrap();
        assert_eq!(m.get_channel_name(), "nowhere");
    }
}

#[test]
fn publish_counts_channel_and_pattern_subscriptions() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut sub = Raw::new(&s);
        // One connection subscribed by channel and by two matching patterns: three receipts.
        sub.cmd(&[b"SUBSCRIBE", b"a.b"], 1);
        sub.cmd(&[b"PSUBSCRIBE", b"a.*", b"*"], 2);
        let mut p = s.client();
        assert_eq!(publish(&mut p, "a.b", "m"), 3, "shards={n}");
        // Patterns are visited in no fixed order: compare the frames as a multiset.
        let mut got: Vec<Vec<u8>> = (0..3).map(|_| sub.frame()).collect();
        let mut want = vec![
            frame(&["message", "a.b", "m"]),
            frame(&["pmessage", "a.*", "a.b", "m"]),
            frame(&["pmessage", "*", "a.b", "m"]),
        ];
        got.sort();
        want.sort();
        assert_eq!(got, want, "shards={n}");
        assert_eq!(numpat(&mut p), 2, "shards={n}");
    }
}

#[test]
fn one_publishers_order_is_kept_at_every_subscriber() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut conns: Vec<Connection> = (0..8).map(|_| s.client()).collect();
        let mut subs: Vec<_> = conns.iter_mut().map(|c| c.as_pubsub()).collect();
        for ps in subs.iter_mut() {
            ps.subscribe("seq").unwrap();
            ps.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let mut p = s.client();
        // One pipeline: the publisher does not wait between messages.
        let mut pipe = redis::pipe();
        for i in 0..1000 {
            pipe.cmd("PUBLISH").arg("seq").arg(i.to_string());
        }
        let counts: Vec<i64> = pipe.query(&mut p).unwrap();
        assert_eq!(counts.len(), 1000);
        assert!(counts.iter().all(|&c| c == 8), "shards={n}: {counts:?}");
        for (k, ps) in subs.iter_mut().enumerate() {
            for i in 0..1000 {
                let m = ps.get_message().unwrap();
                assert_eq!(
                    m.get_payload::<String>().unwrap(),
                    i.to_string(),
                    "shards={n} subscriber {k}"
                );
            }
        }
    }
}

#[test]
fn subscribed_mode_replies_are_byte_exact() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = Raw::new(&s);
        assert_eq!(
            c.cmd(&[b"UNSUBSCRIBE"], 1),
            b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        );
        assert_eq!(
            c.cmd(&[b"PUNSUBSCRIBE"], 1),
            b"*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n"
        );
        assert_eq!(
            c.cmd(&[b"SUBSCRIBE", b"c1", b"c2", b"c1"], 3),
            b"*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nc2\r\n:2\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:2\r\n"
        );
        assert_eq!(
            c.cmd(&[b"GET", b"x"], 1),
            b"-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
        );
        assert_eq!(
            c.cmd(&[b"CLIENT", b"LIST"], 1),
            b"-ERR Can't execute 'client|list': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n"
        );
        // Arity and unknown-command errors come first, as in Redis.
        assert_eq!(
            c.cmd(&[b"GET"], 1),
            b"-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(c.cmd(&[b"PING"], 1), b"*2\r\n$4\r\npong\r\n$0\r\n\r\n");
        assert_eq!(
            c.cmd(&[b"PING", b"hi"], 1),
            b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            c.cmd(&[b"PSUBSCRIBE", b"c*"], 1),
            b"*3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:3\r\n"
        );
        assert_eq!(
            c.cmd(&[b"UNSUBSCRIBE", b"c1", b"nope"], 2),
            b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nc1\r\n:2\r\n*3\r\n$11\r\nunsubscribe\r\n$4\r\nnope\r\n:2\r\n"
        );
        assert_eq!(
            c.cmd(&[b"UNSUBSCRIBE"], 1),
            b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nc2\r\n:1\r\n"
        );
        // Still subscribed to a pattern: still restricted.
        assert!(c.cmd(&[b"GET", b"x"], 1).starts_with(b"-ERR Can't execute"));
        assert_eq!(
            c.cmd(&[b"PUNSUBSCRIBE"], 1),
            b"*3\r\n$12\r\npunsubscribe\r\n$2\r\nc*\r\n:0\r\n"
        );
        assert_eq!(c.cmd(&[b"GET", b"x"], 1), b"$-1\r\n");
        assert_eq!(c.cmd(&[b"PING"], 1), b"+PONG\r\n");
    }
}

#[test]
fn resp3_gets_push_frames_and_every_command() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = Raw::new(&s);
        let hello = c.cmd(&[b"HELLO", b"3"], 1);
        assert!(hello.starts_with(b"%7\r\n"), "{}", esc(&hello));
        assert_eq!(
            c.cmd(&[b"UNSUBSCRIBE"], 1),
            b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"
        );
        assert_eq!(
            c.cmd(&[b"SUBSCRIBE", b"c1"], 1),
            b">3\r\n$9\r\nsubscribe\r\n$2\r\nc1\r\n:1\r\n"
        );
        assert_eq!(c.cmd(&[b"GET", b"x"], 1), b"_\r\n");
        assert_eq!(c.cmd(&[b"PING"], 1), b"+PONG\r\n");
        assert_eq!(
            c.cmd(&[b"PSUBSCRIBE", b"c*"], 1),
            b">3\r\n$10\r\npsubscribe\r\n$2\r\nc*\r\n:2\r\n"
        );
        let mut p = s.client();
        assert_eq!(publish(&mut p, "c1", "hi"), 2);
        let got = [c.frame(), c.frame()].concat();
        let m = b">3\r\n$7\r\nmessage\r\n$2\r\nc1\r\n$2\r\nhi\r\n".to_vec();
        let pm = b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nc1\r\n$2\r\nhi\r\n".to_vec();
        assert!(
            got == [m.clone(), pm.clone()].concat() || got == [pm, m].concat(),
            "shards={n}: {}",
            esc(&got)
        );
        // PUBSUB itself is allowed in RESP3 while subscribed.
        assert_eq!(
            c.cmd(&[b"PUBSUB", b"NUMSUB", b"c1"], 1),
            b"*2\r\n$2\r\nc1\r\n:1\r\n"
        );
        // Back to RESP2 while subscribed: restricted again, messages are arrays.
        assert!(c.cmd(&[b"HELLO", b"2"], 1).starts_with(b"*14\r\n"));
        assert!(c
            .cmd(&[b"GET", b"x"], 1)
            .starts_with(b"-ERR Can't execute 'get'"));
        assert_eq!(publish(&mut p, "c1", "hi"), 2);
        let got = [c.frame(), c.frame()].concat();
        assert!(got.starts_with(b"*3\r\n") || got.starts_with(b"*4\r\n"));
    }
}

#[test]
fn closed_connections_drop_their_subscriptions() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut subs: Vec<Raw> = (0..8).map(|_| Raw::new(&s)).collect();
        for c in subs.iter_mut() {
            c.cmd(&[b"SUBSCRIBE", b"gone", b"other"], 2);
            c.cmd(&[b"PSUBSCRIBE", b"g*"], 1);
        }
        let mut p = s.client();
        assert_eq!(numsub(&mut p, "gone"), 8, "shards={n}");
        assert_eq!(numpat(&mut p), 1, "shards={n}");
        subs.truncate(3);
        assert!(
            wait_for(WAIT, || numsub(&mut p, "gone") == 3),
            "shards={n}: NUMSUB stayed at {}",
            numsub(&mut p, "gone")
        );
        assert_eq!(publish(&mut p, "gone", "m"), 6, "shards={n}");
        subs.clear();
        assert!(wait_for(WAIT, || numsub(&mut p, "other") == 0
            && numpat(&mut p) == 0
            && channels(&mut p, None).is_empty()));
        assert_eq!(publish(&mut p, "gone", "m"), 0, "shards={n}");
    }
}

#[test]
fn reset_and_quit_clear_subscriptions() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut p = s.client();
        let mut c = Raw::new(&s);
        c.cmd(&[b"SUBSCRIBE", b"r"], 1);
        c.cmd(&[b"PSUBSCRIBE", b"r*"], 1);
        assert_eq!(numsub(&mut p, "r"), 1);
        assert_eq!(c.cmd(&[b"RESET"], 1), b"+RESET\r\n");
        assert_eq!(numsub(&mut p, "r"), 0, "shards={n}");
        assert_eq!(numpat(&mut p), 0, "shards={n}");
        assert_eq!(c.cmd(&[b"GET", b"x"], 1), b"$-1\r\n");

        let mut q = Raw::new(&s);
        q.cmd(&[b"SUBSCRIBE", b"q"], 1);
        assert_eq!(numsub(&mut p, "q"), 1);
        assert_eq!(q.cmd(&[b"QUIT"], 1), b"+OK\r\n");
        assert!(q.closed());
        assert!(wait_for(WAIT, || numsub(&mut p, "q") == 0), "shards={n}");
    }
}

#[test]
fn client_list_shows_subscriptions() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = Raw::new(&s);
        c.cmd(&[b"SUBSCRIBE", b"a", b"b"], 2);
        c.cmd(&[b"PSUBSCRIBE", b"p*"], 1);
        let mut p = s.client();
        let all: String = redis::cmd("CLIENT").arg("LIST").query(&mut p).unwrap();
        let line = all
            .lines()
            .find(|l| l.contains("flags=P"))
            .unwrap_or_else(|| panic!("no subscriber line in {all}"));
        assert!(line.contains(" sub=2 psub=1 ssub=0 "), "{line}");
        assert!(line.contains(" cmd=psubscribe "), "{line}");
        let own = all.lines().find(|l| l.contains("cmd=client|list")).unwrap();
        assert!(
            own.contains(" flags=N ") && own.contains(" sub=0 psub=0 "),
            "{own}"
        );
        let pubsub: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut p)
            .unwrap();
        assert_eq!(pubsub.lines().count(), 1, "{pubsub}");
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut p)
            .unwrap();
        assert_eq!(killed, 1, "shards={n}");
        assert!(c.closed());
        assert_eq!(numsub(&mut p, "a"), 0);
    }
}

fn used_memory(c: &mut Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("memory").query(c).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

/// A subscriber that never reads (the kernel's socket buffers fill, then the server's).
fn stalled_subscriber(s: &Server, channel: &[u8]) -> Raw {
    let mut c = Raw::new(s);
    c.cmd(&[b"SUBSCRIBE", channel], 1);
    c
}

#[test]
fn slow_subscriber_over_hard_limit_is_disconnected() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut p = s.client();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg("pubsub 1mb 512kb 60")
            .query(&mut p)
            .unwrap();
        let limits: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("client-output-buffer-limit")
            .query(&mut p)
            .unwrap();
        assert_eq!(
            limits[1],
            "normal 0 0 0 slave 268435456 67108864 60 pubsub 1048576 524288 60"
        );
        let mut slow = stalled_subscriber(&s, b"slow");
        let mut fast_conn = s.client();
        let mut fast = fast_conn.as_pubsub();
        fast.subscribe("other").unwrap();
        let mut other = s.client();
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query(&mut other)
            .unwrap();

        let payload = "x".repeat(100_000);
        // Without a limit, 2000 messages would pile up 200 MB for the stalled subscriber.
        let mut sent = 0;
        while sent < 2000 && publish(&mut p, "slow", &payload) == 1 {
            sent += 1;
        }
        assert!(
            sent < 2000,
            "shards={n}: the stalled subscriber was never dropped"
        );
        assert!(sent >= 10, "shards={n}: dropped after only {sent} messages");
        assert_eq!(numsub(&mut p, "slow"), 0);
        assert!(slow.closed(), "shards={n}: connection still open");
        assert!(used_memory(&mut p) < 64 << 20, "shards={n}");

        // Everyone else carries on.
        let v: String = redis::cmd("GET").arg("k").query(&mut other).unwrap();
        assert_eq!(v, "v");
        assert_eq!(publish(&mut p, "other", "still here"), 1);
        fast.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let m = fast.get_message().unwrap();
        assert_eq!(m.get_payload::<String>().unwrap(), "still here");
    }
}

#[test]
fn slow_subscriber_over_soft_limit_for_too_long_is_disconnected() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut p = s.client();
        // No hard limit; 64kb for more than 1 s is too much.
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg("pubsub 0 64kb 1")
            .query(&mut p)
            .unwrap();
        let mut slow = stalled_subscriber(&s, b"soft");
        let payload = "y".repeat(100_000);
        // Up to 30 MB: enough to fill the kernel's socket buffers and leave more than 64kb
        // queued. On a loaded machine publishing takes over a second, so the subscriber may
        // be dropped before the last one: from then on nobody receives.
        let mut delivered = 0;
        for _ in 0..300 {
            match publish(&mut p, "soft", &payload) {
                1 => delivered += 1,
                0 => break,
                other => panic!("shards={n}: PUBLISH reached {other} subscribers"),
            }
        }
        assert!(
            delivered >= 1,
            "shards={n}: subscriber dropped before any message"
        );
        assert!(
            wait_for(WAIT, || numsub(&mut p, "soft") == 0),
            "shards={n}: stalled subscriber kept"
        );
        assert_eq!(publish(&mut p, "soft", "after"), 0, "shards={n}");
        assert!(slow.closed());
        let pong: String = redis::cmd("PING").query(&mut p).unwrap();
        assert_eq!(pong, "PONG");
    }
}

#[test]
fn pubsub_command_errors() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = Raw::new(&s);
        assert_eq!(
            c.cmd(&[b"PUBSUB", b"foo"], 1),
            b"-ERR unknown subcommand 'foo'. Try PUBSUB HELP.\r\n"
        );
        assert_eq!(
            c.cmd(&[b"PUBSUB", b"CHANNELS", b"a", b"b"], 1),
            b"-ERR unknown subcommand or wrong number of arguments for 'CHANNELS'. Try PUBSUB HELP.\r\n"
        );
        assert_eq!(
            c.cmd(&[b"PUBSUB", b"NUMPAT", b"x"], 1),
            b"-ERR wrong number of arguments for 'pubsub|numpat' command\r\n"
        );
        assert_eq!(
            c.cmd(&[b"SUBSCRIBE"], 1),
            b"-ERR wrong number of arguments for 'subscribe' command\r\n"
        );
        assert_eq!(
            c.cmd(&[b"PUBLISH", b"a"], 1),
            b"-ERR wrong number of arguments for 'publish' command\r\n"
        );
        let help = c.cmd(&[b"PUBSUB", b"HELP"], 1);
        assert!(
            help.starts_with(b"*14\r\n+PUBSUB <subcommand>"),
            "{}",
            esc(&help)
        );
        assert_eq!(c.cmd(&[b"PUBSUB", b"NUMSUB"], 1), b"*0\r\n");
        let bad = c.cmd(
            &[
                b"CONFIG",
                b"SET",
                b"client-output-buffer-limit",
                b"pubsub 1mb 512kb",
            ],
            1,
        );
        assert_eq!(
            bad,
            b"-ERR CONFIG SET failed (possibly related to argument 'client-output-buffer-limit') - Wrong number of arguments in buffer limit configuration.\r\n"
        );
    }
}

#[test]
fn idle_timeout_spares_subscribers() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut p = s.client();
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("timeout")
            .arg("1")
            .query(&mut p)
            .unwrap();
        let mut sub = Raw::new(&s);
        sub.cmd(&[b"SUBSCRIBE", b"idle"], 1);
        let mut idle = Raw::new(&s);
        assert_eq!(idle.cmd(&[b"PING"], 1), b"+PONG\r\n");
        // The plain idle client goes; the subscriber stays.
        assert!(idle.closed(), "shards={n}: idle client kept");
        let mut p = s.client();
        assert_eq!(numsub(&mut p, "idle"), 1, "shards={n}");
        assert_eq!(
            sub.cmd(&[b"PING"], 1),
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n",
            "shards={n}"
        );
    }
}

#[test]
fn spublish_reaches_shard_subscribers_on_every_shard_only() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        // 16 subscribers land on every shard (see the module comment).
        let mut subs: Vec<Raw> = (0..16).map(|_| Raw::new(&s)).collect();
        for c in subs.iter_mut() {
            assert_eq!(
                c.cmd(&[b"SSUBSCRIBE", b"sch"], 1),
                b"*3\r\n$10\r\nssubscribe\r\n$3\r\nsch\r\n:1\r\n"
            );
        }
        let mut psub = Raw::new(&s);
        psub.cmd(&[b"PSUBSCRIBE", b"*"], 1);
        psub.cmd(&[b"SUBSCRIBE", b"sch"], 1);
        let mut p = s.client();
        let shardnumsub: Vec<Value> = redis::cmd("PUBSUB")
            .arg("SHARDNUMSUB")
            .arg("sch")
            .query(&mut p)
            .unwrap();
        assert_eq!(shardnumsub.get(1), Some(&Value::Int(16)), "shards={n}");
        let chans: Vec<String> = redis::cmd("PUBSUB")
            .arg("SHARDCHANNELS")
            .query(&mut p)
            .unwrap();
        assert_eq!(chans, vec!["sch".to_string()], "shards={n}");
        let got: i64 = redis::cmd("SPUBLISH")
            .arg("sch")
            .arg("hi")
            .query(&mut p)
            .unwrap();
        assert_eq!(
            got, 16,
            "shards={n}: pattern and plain subscribers do not count"
        );
        for c in subs.iter_mut() {
            assert_eq!(c.frame(), frame(&["smessage", "sch", "hi"]), "shards={n}");
        }
        // PUBLISH does not reach shard channel subscribers.
        assert_eq!(publish(&mut p, "sch", "x"), 2, "shards={n}");
        assert_eq!(psub.frame(), frame(&["message", "sch", "x"]));
        assert_eq!(psub.frame(), frame(&["pmessage", "*", "sch", "x"]));
        for c in subs.iter_mut() {
            assert_eq!(
                c.cmd(&[b"SUNSUBSCRIBE"], 1),
                b"*3\r\n$12\r\nsunsubscribe\r\n$3\r\nsch\r\n:0\r\n"
            );
        }
        let got: i64 = redis::cmd("SPUBLISH")
            .arg("sch")
            .arg("hi")
            .query(&mut p)
            .unwrap();
        assert_eq!(got, 0, "shards={n}");
    }
}
