//! SLOWLOG, LATENCY, MONITOR, MEMORY STATS and the DEBUG introspection subcommands against
//! the real binary, under every shard count of `common::shard_counts()`, and differentially
//! against a real redis-server 7.0.15 where the output is deterministic: error texts byte for
//! byte, slow log entries (arguments, trimming, redaction, client name) with a threshold of 0,
//! the LATENCY HISTOGRAM reply shape, MONITOR's lines for a scripted sequence (timestamps and
//! client ports masked), MEMORY STATS' field list, DEBUG OBJECT's line (address and LRU
//! clock masked).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::resp::{encode_command, shape, Client, Redis};
use common::Server;

fn req(args: &[&[u8]]) -> Vec<u8> {
    encode_command(&args.iter().map(|a| a.to_vec()).collect::<Vec<_>>())
}

fn ask(c: &mut Client, args: &[&[u8]]) -> Vec<u8> {
    c.send(&req(args)).expect("send");
    c.read_reply().expect("reply")
}

fn words(line: &str) -> Vec<Vec<u8>> {
    line.split(' ').map(|w| w.as_bytes().to_vec()).collect()
}

fn ask_line(c: &mut Client, line: &str) -> Vec<u8> {
    c.send(&encode_command(&words(line))).expect("send");
    c.read_reply().expect("reply")
}

fn shardis(shards: usize, extra: &[&str]) -> Server {
    let mut a = vec!["--enable-debug-command", "yes"];
    a.extend_from_slice(extra);
    Server::start_with(shards, &a)
}

fn redis(extra: &[&str]) -> Redis {
    let mut a = vec!["--enable-debug-command", "yes"];
    a.extend_from_slice(extra);
    Redis::start_with(&a)
}

/// Commands whose replies are deterministic: compared byte for byte with Redis.
const ERRORS: &[&str] = &[
    "SLOWLOG GET -2",
    "SLOWLOG GET x",
    "SLOWLOG GET 1.5",
    "SLOWLOG GET 1 2",
    "SLOWLOG LEN x",
    "SLOWLOG FOO",
    "SLOWLOG",
    "SLOWLOG HELP",
    "SLOWLOG RESET",
    "SLOWLOG GET 0",
    "LATENCY HELP",
    "LATENCY FOO",
    "LATENCY GRAPH",
    "LATENCY HISTORY",
    "LATENCY GRAPH nosuch",
    "LATENCY HISTORY nosuch",
    "LATENCY LATEST",
    "LATENCY RESET",
    "LATENCY RESET a b",
    "LATENCY DOCTOR",
    "LATENCY HISTOGRAM nosuch",
    "MONITOR x",
    "CONFIG SET slowlog-log-slower-than x",
    "CONFIG SET slowlog-log-slower-than -5",
    "CONFIG SET slowlog-max-len -1",
    "CONFIG SET latency-monitor-threshold -1",
    "CONFIG SET latency-tracking maybe",
    "CONFIG SET latency-tracking-info-percentiles 200",
    "CONFIG SET latency-tracking-info-percentiles x",
    "CONFIG GET slowlog-log-slower-than",
    "CONFIG GET slowlog-max-len",
    "CONFIG GET latency-monitor-threshold",
    "CONFIG GET latency-tracking",
    "CONFIG GET latency-tracking-info-percentiles",
    "CONFIG SET latency-tracking-info-percentiles 50.0",
    "CONFIG GET latency-tracking-info-percentiles",
    "CONFIG SET slowlog-max-len 5",
    "CONFIG GET slowlog-max-len",
    "DEBUG OBJECT nokey",
    "DEBUG OBJECT",
    "DEBUG OBJECT a b",
    "DEBUG QUICKLIST-PACKED-THRESHOLD x",
    "DEBUG QUICKLIST-PACKED-THRESHOLD 4gb",
    "DEBUG QUICKLIST-PACKED-THRESHOLD 1k",
    "DEBUG SET-ACTIVE-EXPIRE",
    "DEBUG SET-ACTIVE-EXPIRE 1",
    "DEBUG CHANGE-REPL-ID x",
    "DEBUG STRINGMATCH-LEN",
    "MEMORY STATS x",
    "MEMORY HELP",
];

#[test]
fn errors_and_settings_match_redis() {
    let r = redis(&[]);
    let mut rc = Client::connect(r.port);
    let want: Vec<Vec<u8>> = ERRORS.iter().map(|l| ask_line(&mut rc, l)).collect();
    for n in common::shard_counts() {
        let s = shardis(n, &[]);
        let mut c = Client::connect(s.port);
        for (line, want) in ERRORS.iter().zip(&want) {
            let got = ask_line(&mut c, line);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want),
                "{line} (--shards {n})"
            );
        }
    }
}

/// The commands of the slow log script (one connection, client name `bob`).
fn slow_script() -> Vec<Vec<Vec<u8>>> {
    let mut s: Vec<Vec<Vec<u8>>> = Vec::new();
    let w = |l: &str| words(l);
    s.push(w("CLIENT SETNAME bob"));
    s.push(vec![b"SET".to_vec(), b"{t}k".to_vec(), vec![b'v'; 200]]);
    let mut rpush = w("RPUSH {t}l");
    rpush.extend((0..40).map(|i| i.to_string().into_bytes()));
    s.push(rpush);
    // Exactly 32 arguments and 128 bytes: kept whole.
    let mut whole = w("RPUSH {t}m");
    whole.push(vec![b'x'; 128]);
    whole.extend((0..29).map(|i| i.to_string().into_bytes()));
    s.push(whole);
    s.push(w("GET {t}k"));
    s.push(w("MULTI"));
    s.push(w("SET {t}a 1"));
    s.push(w("INCR {t}a"));
    s.push(w("EXEC"));
    s.push(w("AUTH foo"));
    s.push(w("AUTH default foo"));
    s.push(w("HELLO 2 AUTH default foo"));
    s.push(w("ACL SETUSER someone on >pw"));
    s.push(w("ACL DELUSER someone"));
    s.push(w("CONFIG SET maxmemory-samples 5 requirepass"));
    s.push(w("PING"));
    s
}

/// One slow log entry, normalised: (arguments, client address minus its port, name).
type Slow = (Vec<Vec<u8>>, String, Vec<u8>);

/// The slow log read on a raw connection (a client library would log its own setup).
fn slowlog(port: u16) -> (Vec<Slow>, i64) {
    let mut c = Client::connect(port);
    let v = redis::parse_redis_value(&ask_line(&mut c, "SLOWLOG GET -1")).expect("parse");
    let len = ask_line(&mut c, "SLOWLOG LEN");
    let len: i64 = String::from_utf8_lossy(&len)
        .trim()
        .trim_start_matches(':')
        .parse()
        .expect("len");
    let redis::Value::Array(rows) = v else {
        panic!("not an array: {v:?}")
    };
    let mut out = Vec::new();
    let mut last_id = i64::MAX;
    for row in rows {
        let redis::Value::Array(f) = row else {
            panic!("row {row:?}")
        };
        assert_eq!(f.len(), 6, "{f:?}");
        let int = |v: &redis::Value| match v {
            redis::Value::Int(n) => *n,
            o => panic!("not an int: {o:?}"),
        };
        let bulk = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => b.clone(),
            o => panic!("not a bulk: {o:?}"),
        };
        let id = int(&f[0]);
        assert!(id < last_id, "ids newest first: {id} after {last_id}");
        last_id = id;
        assert!(int(&f[1]) > 1_600_000_000, "timestamp");
        assert!(int(&f[2]) >= 0, "duration");
        let redis::Value::Array(args) = &f[3] else {
            panic!("args {:?}", f[3])
        };
        let addr = String::from_utf8(bulk(&f[4])).expect("addr");
        let host = addr
            .rsplit_once(':')
            .map_or(addr.clone(), |(h, _)| h.to_string());
        out.push((args.iter().map(bulk).collect(), host, bulk(&f[5])));
    }
    out.reverse();
    (out, len)
}

fn run_slow_script(port: u16) -> (Vec<Slow>, i64) {
    let mut c = Client::connect(port);
    let _ = ask_line(&mut c, "CONFIG SET slowlog-log-slower-than 0");
    let _ = ask_line(&mut c, "CONFIG SET slowlog-max-len 128");
    let _ = ask_line(&mut c, "SLOWLOG RESET");
    for cmd in slow_script() {
        c.send(&encode_command(&cmd)).expect("send");
        c.read_reply().expect("reply");
    }
    slowlog(port)
}

#[test]
fn slowlog_entries_match_redis() {
    let r = redis(&[]);
    let (want, want_len) = run_slow_script(r.port);
    assert!(want.len() > 10, "{want:?}");
    for n in common::shard_counts() {
        let s = shardis(n, &[]);
        let (got, len) = run_slow_script(s.port);
        assert_eq!(got.len(), want.len(), "--shards {n}: {got:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "--shards {n}");
        }
        assert_eq!(len, want_len);
        // slowlog-max-len bounds the merged log; SLOWLOG GET's count too.
        let mut c = Client::connect(s.port);
        let _ = ask_line(&mut c, "CONFIG SET slowlog-max-len 3");
        assert_eq!(ask_line(&mut c, "SLOWLOG LEN"), b":3\r\n");
        let one = ask_line(&mut c, "SLOWLOG GET 1");
        assert!(one.starts_with(b"*1\r\n*6\r\n"), "{one:?}");
        let _ = ask_line(&mut c, "CONFIG SET slowlog-log-slower-than -1");
        let _ = ask_line(&mut c, "SLOWLOG RESET");
        let _ = ask_line(&mut c, "GET x");
        assert_eq!(ask_line(&mut c, "SLOWLOG LEN"), b":0\r\n");
    }
}

/// Slow commands run on other shards are logged once each, with the caller's address and
/// name, and ids unique across shards.
#[test]
fn slowlog_across_shards() {
    let s = shardis(4, &["--slowlog-log-slower-than", "0"]);
    let mut c = Client::connect(s.port);
    let _ = ask_line(&mut c, "CLIENT SETNAME far");
    let _ = ask_line(&mut c, "SLOWLOG RESET");
    // Pipelined: keys on every shard.
    let mut batch = Vec::new();
    for i in 0..40 {
        batch.extend(encode_command(&words(&format!("SET key:{i} {i}"))));
    }
    c.send(&batch).expect("send");
    for _ in 0..40 {
        c.read_reply().expect("reply");
    }
    // Each is logged once, with the client's name; their ids follow the order in which
    // the shards' replies came back (the pipeline ran on four shards in parallel).
    let (log, _) = slowlog(s.port);
    let sets: Vec<&Slow> = log.iter().filter(|e| e.0[0] == b"SET").collect();
    assert_eq!(sets.len(), 40, "{log:?}");
    let mut keys: Vec<Vec<u8>> = sets.iter().map(|e| e.0[1].clone()).collect();
    keys.sort();
    let mut want: Vec<Vec<u8>> = (0..40).map(|i| format!("key:{i}").into_bytes()).collect();
    want.sort();
    assert_eq!(keys, want);
    for e in sets {
        assert_eq!(e.1, "127.0.0.1");
        assert_eq!(e.2, b"far");
    }
}

/// LATENCY HISTOGRAM's reply shape (RESP2 and RESP3) and INFO latencystats.
#[test]
fn latency_histogram_shape_matches_redis() {
    fn run(port: u16) -> Vec<String> {
        let mut c = Client::connect(port);
        for _ in 0..3 {
            let _ = ask_line(&mut c, "SET a b");
        }
        let _ = ask_line(&mut c, "GET a");
        let mut out = vec![
            shape(&ask_line(&mut c, "LATENCY HISTOGRAM set get nosuch set")),
            shape(&ask_line(&mut c, "LATENCY HISTOGRAM get")),
        ];
        let _ = ask_line(&mut c, "HELLO 3");
        out.push(shape(&ask_line(&mut c, "LATENCY HISTOGRAM get")));
        out
    }
    /// The shape with each bucket list (an aggregate of integers only) as `H`: how many
    /// buckets there are depends on the timings.
    fn buckets_masked(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            if matches!(b[i], b'*' | b'%') {
                let mut j = i + 1;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if b.get(j) == Some(&b'[') {
                    let mut k = j + 1;
                    while b.get(k) == Some(&b':') {
                        k += 1;
                    }
                    if k > j + 1 && b.get(k) == Some(&b']') {
                        out.push('H');
                        i = k + 1;
                        continue;
                    }
                }
            }
            out.push(b[i] as char);
            i += 1;
        }
        out
    }
    let r = redis(&[]);
    let want = run(r.port);
    for n in common::shard_counts() {
        let s = shardis(n, &[]);
        let got = run(s.port);
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(
                buckets_masked(g),
                buckets_masked(w),
                "--shards {n}: {g} vs {w}"
            );
        }
        // Values: calls as sent, cumulative counts ending at the calls.
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", s.port))
            .expect("client")
            .get_connection()
            .expect("connect");
        let v: redis::Value = redis::cmd("LATENCY")
            .arg("HISTOGRAM")
            .arg("set")
            .query(&mut c)
            .expect("histogram");
        let text = format!("{v:?}");
        assert!(text.contains("calls"), "{text}");
        let redis::Value::Array(top) = v else {
            panic!("{v:?}")
        };
        let redis::Value::Array(body) = &top[1] else {
            panic!("{top:?}")
        };
        assert_eq!(body[1], redis::Value::Int(3), "{body:?}");
        let redis::Value::Array(points) = &body[3] else {
            panic!("{body:?}")
        };
        let counts: Vec<i64> = points
            .iter()
            .skip(1)
            .step_by(2)
            .map(|p| match p {
                redis::Value::Int(n) => *n,
                o => panic!("{o:?}"),
            })
            .collect();
        assert!(counts.windows(2).all(|w| w[0] < w[1]), "{counts:?}");
        assert_eq!(counts.last(), Some(&3));
        // INFO latencystats with the configured percentiles.
        let info = common::info(&mut c, "latencystats");
        let set = info.get("latency_percentiles_usec_set").expect("set line");
        assert!(set.starts_with("p50=") && set.contains(",p99=") && set.contains(",p99.9="));
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("latency-tracking-info-percentiles")
            .arg("50 99.99")
            .query(&mut c)
            .expect("config set");
        let info = common::info(&mut c, "latencystats");
        let set = info.get("latency_percentiles_usec_set").expect("set line");
        assert!(set.starts_with("p50=") && set.contains(",p99.99="), "{set}");
        assert!(!common::info(&mut c, "default").contains_key("latency_percentiles_usec_set"));
        // latency-tracking no: nothing more is recorded; CONFIG RESETSTAT clears.
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut c)
            .expect("resetstat");
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("latency-tracking")
            .arg("no")
            .query(&mut c)
            .expect("config set");
        std::thread::sleep(Duration::from_millis(20));
        let _: () = redis::cmd("SET")
            .arg("a")
            .arg("b")
            .query(&mut c)
            .expect("set");
        let info = common::info(&mut c, "latencystats");
        assert!(
            !info.contains_key("latency_percentiles_usec_set"),
            "{info:?}"
        );
    }
}

/// The latency monitor: a DEBUG SLEEP over the threshold is a `command` event.
#[test]
fn latency_monitor_records_events() {
    for n in common::shard_counts() {
        let s = shardis(n, &["--latency-monitor-threshold", "10"]);
        let mut c = Client::connect(s.port);
        let _ = ask_line(&mut c, "DEBUG SLEEP 0.03");
        let latest = ask_line(&mut c, "LATENCY LATEST");
        let text = String::from_utf8_lossy(&latest).to_string();
        assert!(text.starts_with("*1\r\n*4\r\n$7\r\ncommand\r\n:"), "{text}");
        let hist = ask_line(&mut c, "LATENCY HISTORY command");
        assert!(hist.starts_with(b"*1\r\n*2\r\n:"), "{hist:?}");
        let graph = String::from_utf8_lossy(&ask_line(&mut c, "LATENCY GRAPH command")).to_string();
        assert!(graph.contains("command - high "), "{graph}");
        let doc = String::from_utf8_lossy(&ask_line(&mut c, "LATENCY DOCTOR")).to_string();
        assert!(doc.contains("1. command: 1 latency spikes"), "{doc}");
        assert_eq!(ask_line(&mut c, "LATENCY RESET command nosuch"), b":1\r\n");
        assert_eq!(ask_line(&mut c, "LATENCY LATEST"), b"*0\r\n");
    }
}

/// A MONITOR client: (reader, its own connection for later commands).
fn monitor(port: u16) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"MONITOR\r\n").expect("monitor");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("ok");
    assert_eq!(line, "+OK\r\n");
    r
}

/// Reads monitor lines until one contains `until`; returns them with the timestamp and the
/// client port masked.
fn monitor_lines(r: &mut BufReader<TcpStream>, until: &str) -> Vec<String> {
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let mut line = String::new();
        if r.read_line(&mut line).is_err() {
            break;
        }
        let line = line.trim_end().to_string();
        let masked = mask(&line);
        let done = line.contains(until);
        out.push(masked);
        if done {
            break;
        }
    }
    out
}

fn mask(line: &str) -> String {
    // `+1700000000.123456 [0 127.0.0.1:50000] "SET" ...`
    if !line.starts_with("+1") {
        return line.to_string();
    }
    let Some((ts, rest)) = line.split_once(' ') else {
        return line.to_string();
    };
    let (secs, micros) = ts
        .trim_start_matches('+')
        .split_once('.')
        .unwrap_or(("", ""));
    assert!(
        secs.parse::<u64>().is_ok() && micros.len() == 6 && micros.parse::<u32>().is_ok(),
        "timestamp in {line}"
    );
    let Some((who, args)) = rest.split_once("] ") else {
        return line.to_string();
    };
    let who = match who.rsplit_once(':') {
        Some((h, _)) if !h.ends_with("lua") => format!("{h}:*"),
        _ => who.to_string(),
    };
    format!("{who}] {args}")
}

/// The MONITOR script: run on one connection, lines compared with Redis's.
const MONITOR_SCRIPT: &[&str] = &[
    "CLIENT SETNAME bob",
    "SET {t}k a\"b\\c",
    "SELECT 3",
    "GET {t}k",
    "MULTI",
    "SET {t}a 1",
    "INCR {t}a",
    "EXEC",
    "MULTI",
    "SET {t}a 1",
    "DISCARD",
    "EVAL redis.call('set',KEYS[1],'1') 1 {t}x",
    "AUTH foo",
    "HELLO 2 AUTH default x",
    "CONFIG GET maxmemory",
    "SLOWLOG LEN",
    "NOSUCH",
    "GET",
    "MEMORY USAGE {t}k",
    "EXEC",
    "PING done",
];

fn run_monitor_script(port: u16) -> Vec<String> {
    let mut m = monitor(port);
    let mut c = Client::connect(port);
    for line in MONITOR_SCRIPT {
        let _ = ask_line(&mut c, line);
    }
    // Binary arguments are quoted as sdscatrepr does.
    let bin: &[&[u8]] = &[b"SET", b"{t}b", b"\x00\x01\xff\n\r\t\x07\x08 ok\""];
    let _ = ask(&mut c, bin);
    let _ = ask_line(&mut c, "PING last");
    monitor_lines(&mut m, "\"last\"")
}

#[test]
fn monitor_lines_match_redis() {
    let r = redis(&[]);
    let want = run_monitor_script(r.port);
    assert!(want.len() > 15, "{want:?}");
    for n in common::shard_counts() {
        let s = shardis(n, &[]);
        let got = run_monitor_script(s.port);
        assert_eq!(got, want, "--shards {n}");
    }
}

/// Monitors on every shard see commands run by clients on every other shard.
#[test]
fn monitors_see_every_shard() {
    let s = shardis(4, &[]);
    let mut mons: Vec<BufReader<TcpStream>> = (0..8).map(|_| monitor(s.port)).collect();
    let mut clients: Vec<Client> = (0..8).map(|_| Client::connect(s.port)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let _ = ask_line(c, &format!("SET from:{i} {i}"));
    }
    let _ = ask_line(&mut clients[0], "PING end");
    for m in mons.iter_mut() {
        let lines = monitor_lines(m, "\"end\"");
        for i in 0..8 {
            let want = format!("\"SET\" \"from:{i}\" \"{i}\"");
            assert!(
                lines.iter().any(|l| l.ends_with(&want)),
                "{want} in {lines:?}"
            );
        }
    }
    // CLIENT LIST shows the monitors with flag O; RESET leaves monitor mode.
    let list = String::from_utf8_lossy(&ask_line(&mut clients[0], "CLIENT LIST")).to_string();
    assert_eq!(list.matches("flags=O ").count(), 8, "{list}");
    let mut first = mons.remove(0);
    first.get_mut().write_all(b"RESET\r\n").expect("reset");
    let lines = monitor_lines(&mut first, "RESET");
    assert_eq!(
        lines.last().map(String::as_str),
        Some("+RESET"),
        "{lines:?}"
    );
    let list = String::from_utf8_lossy(&ask_line(&mut clients[0], "CLIENT LIST")).to_string();
    assert_eq!(list.matches("flags=O ").count(), 7, "{list}");
    // A second MONITOR is answered with nothing; MONITOR inside MULTI is refused at EXEC.
    let mut c = Client::connect(s.port);
    let _ = ask_line(&mut c, "MULTI");
    let _ = ask_line(&mut c, "MONITOR");
    assert_eq!(
        String::from_utf8_lossy(&ask_line(&mut c, "EXEC")),
        "*1\r\n-ERR MONITOR isn't allowed for DENY BLOCKING client\r\n"
    );
}

/// MEMORY STATS: Redis 7.0's fields in its order, with the same reply types.
#[test]
fn memory_stats_fields_match_redis() {
    fn fields(port: u16, resp3: bool) -> Vec<(String, u8)> {
        let mut c = Client::connect(port);
        let _ = ask_line(&mut c, "SET a 1");
        if resp3 {
            let _ = ask_line(&mut c, "HELLO 3");
        }
        let b = ask_line(&mut c, "MEMORY STATS");
        let Some((common::resp::Node::Agg(_, kids), _)) = common::resp::parse(&b) else {
            panic!("{b:?}")
        };
        kids.chunks(2)
            .map(|kv| {
                let name = match &kv[0] {
                    common::resp::Node::Scalar(_, raw) => {
                        let t = String::from_utf8_lossy(raw).to_string();
                        t.rsplit("\r\n").nth(1).unwrap_or("").to_string()
                    }
                    _ => String::new(),
                };
                let tag = match &kv[1] {
                    common::resp::Node::Scalar(t, _) | common::resp::Node::Agg(t, _) => *t,
                };
                (name, tag)
            })
            .collect()
    }
    let r = redis(&[]);
    for resp3 in [false, true] {
        let want = fields(r.port, resp3);
        assert!(want.len() > 20);
        for n in common::shard_counts() {
            let s = shardis(n, &[]);
            assert_eq!(fields(s.port, resp3), want, "--shards {n} resp3 {resp3}");
        }
    }
}

/// DEBUG OBJECT's line, without the address and LRU clock.
#[test]
fn debug_object_matches_redis() {
    fn lines(port: u16) -> Vec<String> {
        let mut c = Client::connect(port);
        let setup = [
            "RPUSH l a b c",
            "SET i 12345",
            "SET e hello",
            "SET n 12345678901",
            "HSET h f v",
            "SADD s 1 2 3",
            "ZADD z 1 a",
        ];
        for l in setup {
            let _ = ask_line(&mut c, l);
        }
        ["l", "i", "e", "n", "h", "s", "z", "nokey"]
            .iter()
            .map(|k| {
                let r = String::from_utf8_lossy(&ask_line(&mut c, &format!("DEBUG OBJECT {k}")))
                    .to_string();
                // The LRU clock ticks in seconds: a write at x.999 s read at (x+1).001 s
                // is a second idle, in Redis too.
                r.split(' ')
                    .filter(|w| !w.starts_with("at:") && !w.starts_with("lru:"))
                    .map(|w| match w {
                        "lru_seconds_idle:1" | "lru_seconds_idle:1\r\n" => w.replace(":1", ":0"),
                        _ => w.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
    let r = redis(&[]);
    let want = lines(r.port);
    for n in common::shard_counts() {
        let s = shardis(n, &[]);
        assert_eq!(lines(s.port), want, "--shards {n}");
    }
}

/// DEBUG SET-ACTIVE-EXPIRE 0 stops the background cycle (keys stay until touched); 1
/// restarts it. DEBUG CHANGE-REPL-ID gives a new replication id.
#[test]
fn debug_set_active_expire_and_change_repl_id() {
    for n in common::shard_counts() {
        let s = shardis(n, &[]);
        let mut c = s.client();
        let _: () = redis::cmd("DEBUG")
            .arg("SET-ACTIVE-EXPIRE")
            .arg(0)
            .query(&mut c)
            .expect("debug");
        for i in 0..20 {
            let _: () = redis::cmd("SET")
                .arg(format!("t{i}"))
                .arg(1)
                .arg("PX")
                .arg(50)
                .query(&mut c)
                .expect("set");
        }
        std::thread::sleep(Duration::from_millis(400));
        let keys = common::info(&mut c, "keyspace");
        assert!(
            keys.get("db0").is_some_and(|v| v.starts_with("keys=20,")),
            "{keys:?}"
        );
        let _: () = redis::cmd("DEBUG")
            .arg("SET-ACTIVE-EXPIRE")
            .arg(1)
            .query(&mut c)
            .expect("debug");
        assert!(common::wait_for(Duration::from_secs(5), || {
            !common::info(&mut c, "keyspace").contains_key("db0")
        }));
        let before = common::info(&mut c, "replication");
        let _: () = redis::cmd("DEBUG")
            .arg("CHANGE-REPL-ID")
            .query(&mut c)
            .expect("debug");
        let after = common::info(&mut c, "replication");
        assert_ne!(before.get("master_replid"), after.get("master_replid"));
        assert_eq!(after.get("master_replid").map(|s| s.len()), Some(40));
    }
}
