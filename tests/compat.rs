//! Differential compatibility test: the same scripted command sequence goes to a real
//! `redis-server` and to shardis (`--shards 1` and `--shards 4`) over raw TCP, and the replies
//! are compared byte for byte. The script lives in `tests/compat/script.txt`, one command per
//! line (shell-like quoting, `#` comments); see the header of that file for the markers.

mod common;

use common::resp::*;
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// The script.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Compare {
    Exact,
    /// Top-level elements compared as a multiset (KEYS).
    Sorted,
    /// Only types and element counts (RANDOMKEY, TIME, CLIENT ID, HELLO's id).
    Shape,
}

#[derive(Debug)]
struct Step {
    line: usize,
    text: String,
    compare: Compare,
    /// Sent as an inline command (the raw text and CRLF) instead of a multibulk.
    inline: bool,
    /// After the reply, both servers must close the connection (QUIT).
    closes: bool,
    args: Vec<Vec<u8>>,
}

/// Splits a line shell-style: whitespace separates words; `"..."` understands `\"`, `\\`,
/// `\n`, `\r`, `\t` and `\xHH`; `'...'` is literal.
fn split_words(line: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut words = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
                i += 1;
            }
            b'"' => {
                let w = cur.get_or_insert_with(Vec::new);
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err("unbalanced double quote".into()),
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let e = *b.get(i + 1).ok_or("dangling backslash")?;
                            i += 2;
                            match e {
                                b'n' => w.push(b'\n'),
                                b'r' => w.push(b'\r'),
                                b't' => w.push(b'\t'),
                                b'x' => {
                                    let hex = line.get(i..i + 2).ok_or("short \\x escape")?;
                                    w.push(u8::from_str_radix(hex, 16).map_err(|e| e.to_string())?);
                                    i += 2;
                                }
                                other => w.push(other),
                            }
                        }
                        Some(&o) => {
                            w.push(o);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            b'\'' => {
                let w = cur.get_or_insert_with(Vec::new);
                let end = b[i + 1..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .ok_or("unbalanced single quote")?;
                w.extend_from_slice(&b[i + 1..i + 1 + end]);
                i += end + 2;
            }
            _ => {
                cur.get_or_insert_with(Vec::new).push(c);
                i += 1;
            }
        }
    }
    if let Some(w) = cur {
        words.push(w);
    }
    Ok(words)
}

fn load_script() -> Vec<Step> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/script.txt");
    let src = std::fs::read_to_string(path).expect("read tests/compat/script.txt");
    let mut steps = Vec::new();
    for (n, raw) in src.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        let (mut compare, mut inline, mut closes) = (Compare::Exact, false, false);
        while let Some(m) = rest.strip_prefix('@') {
            let (marker, tail) = m.split_once(' ').unwrap_or((m, ""));
            match marker {
                "sorted" => compare = Compare::Sorted,
                "shape" => compare = Compare::Shape,
                "inline" => inline = true,
                "closes" => closes = true,
                other => panic!("script line {}: unknown marker @{other}", n + 1),
            }
            rest = tail.trim_start();
        }
        let args = split_words(rest).unwrap_or_else(|e| panic!("script line {}: {e}", n + 1));
        assert!(!args.is_empty(), "script line {}: no command", n + 1);
        steps.push(Step {
            line: n + 1,
            text: rest.to_string(),
            compare,
            inline,
            closes,
            args,
        });
    }
    steps
}

fn request(step: &Step) -> Vec<u8> {
    if step.inline {
        format!("{}\r\n", step.text).into_bytes()
    } else {
        encode_command(&step.args)
    }
}

/// Runs every step against both servers; returns a description of each mismatch. When
/// `pipelined`, every request is written before any reply is read (one write per server),
/// which drives shardis's batching of commands bound for other shards.
fn run_script(
    steps: &[Step],
    redis_port: u16,
    ours_port: u16,
    shards: usize,
    pipelined: bool,
) -> Vec<String> {
    let mut theirs = Client::connect(redis_port);
    let mut ours = Client::connect(ours_port);
    let mode = if pipelined { " pipelined" } else { "" };
    if pipelined {
        let all: Vec<u8> = steps.iter().flat_map(request).collect();
        theirs.send(&all).expect("write to redis-server");
        ours.send(&all).expect("write to shardis");
    }
    let mut bad = Vec::new();
    for step in steps {
        let req = request(step);
        let want = if pipelined {
            theirs.read_reply()
        } else {
            theirs.send(&req).and_then(|_| theirs.read_reply())
        }
        .unwrap_or_else(|e| panic!("redis-server, line {}: {e}", step.line));
        let got = if pipelined {
            ours.read_reply()
        } else {
            ours.send(&req).and_then(|_| ours.read_reply())
        };
        let got = match got {
            Ok(g) => g,
            Err(e) => {
                bad.push(format!(
                    "shards={shards}{mode} line {}: {}\n    redis:   {}\n    shardis: <{e}>",
                    step.line,
                    step.text,
                    escape(&want)
                ));
                // The connection is unusable; nothing after this can be compared.
                return bad;
            }
        };
        let same = match step.compare {
            Compare::Exact => want == got,
            Compare::Sorted => sorted(&want) == sorted(&got),
            Compare::Shape => shape(&want) == shape(&got),
        };
        if !same {
            let extra = if step.compare == Compare::Shape {
                format!("\n    shapes:  {} vs {}", shape(&want), shape(&got))
            } else {
                String::new()
            };
            bad.push(format!(
                "shards={shards}{mode} line {}: {}\n    redis:   {}\n    shardis: {}{extra}",
                step.line,
                step.text,
                escape(&want),
                escape(&got)
            ));
        }
        if step.closes {
            assert!(theirs.closed(), "redis-server kept the connection open");
            if !ours.closed() {
                bad.push(format!(
                    "shards={shards}{mode} line {}: {}: shardis kept the connection open",
                    step.line, step.text
                ));
            }
            break;
        }
    }
    bad
}

fn check_script(pipelined: bool) {
    let steps = load_script();
    assert!(steps.len() > 100, "script too short: {}", steps.len());
    assert!(
        steps.last().is_some_and(|s| s.closes),
        "the script must end with @closes QUIT"
    );
    let mut bad = Vec::new();
    for n in common::shard_counts() {
        let redis = Redis::start();
        let ours = common::Server::start(n);
        bad.extend(run_script(&steps, redis.port, ours.port, n, pipelined));
    }
    assert!(
        bad.is_empty(),
        "{} mismatch(es) against redis-server:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn script_matches_redis() {
    check_script(false);
}

#[test]
fn script_pipelined_matches_redis() {
    check_script(true);
}

// ---------------------------------------------------------------------------------------------
// Big collections (past the listpack limits): a seeded random mix of writes and ordered reads
// on one big sorted set, hash and set, compared byte for byte.

/// A fresh redis-server and shardis (`n` shards) with one connection to each: (redis,
/// shardis, to redis, to shardis). The servers stop when dropped.
fn both(n: usize) -> (Redis, common::Server, Client, Client) {
    let redis = Redis::start();
    let ours = common::Server::start(n);
    let (theirs, mine) = (Client::connect(redis.port), Client::connect(ours.port));
    (redis, ours, theirs, mine)
}

/// The next command of the random mix (xorshift state in `x`); only commands whose replies
/// do not depend on hash order or randomness.
fn big_collection_command(x: &mut u64) -> Vec<String> {
    let mut r = || {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    };
    let m = format!("member:{}", r() % 700);
    let score = format!("{}", (r() % 2000) as i64 - 1000);
    let v: Vec<&str> = match r() % 24 {
        0..=4 => vec!["ZADD", "{b}z", &score, &m],
        5 => vec!["ZADD", "{b}z", "GT", "CH", &score, &m],
        6 => vec!["ZADD", "{b}z", "NX", &score, &m],
        7 => vec!["ZINCRBY", "{b}z", "0.5", &m],
        8 => vec!["ZREM", "{b}z", &m],
        9 => vec!["ZPOPMIN", "{b}z", "2"],
        10 => vec!["ZPOPMAX", "{b}z"],
        11 => vec!["ZRANK", "{b}z", &m],
        12 => vec!["ZREVRANK", "{b}z", &m],
        13 => vec!["ZSCORE", "{b}z", &m],
        14 => vec!["ZRANGE", "{b}z", "100", "110", "WITHSCORES"],
        15 => vec!["ZRANGE", "{b}z", "-50", "10", "BYSCORE", "LIMIT", "3", "5"],
        16 => vec!["ZCOUNT", "{b}z", "-100", "(100"],
        17 => vec!["ZCARD", "{b}z"],
        18 => vec!["HSET", "{b}h", &m, &score],
        19 => vec!["HDEL", "{b}h", &m],
        20 => vec!["HGET", "{b}h", &m],
        21 => vec!["HINCRBY", "{b}h", &m, "3"],
        22 => vec!["SADD", "{b}s", &m],
        _ => vec!["SREM", "{b}s", &m],
    };
    v.into_iter().map(String::from).collect()
}

#[test]
fn big_collections_match_redis() {
    for n in common::shard_counts() {
        let (_redis, _ours, mut theirs, mut mine) = both(n);
        // Fill past the listpack limits first (700 members of each).
        for c in [&mut theirs, &mut mine] {
            for i in 0..700 {
                let m = format!("member:{i}");
                let s = format!("{}", i % 50);
                command(c, &["ZADD", "{b}z", &s, &m]);
                command(c, &["HSET", "{b}h", &m, &s]);
                command(c, &["SADD", "{b}s", &m]);
            }
        }
        for (k, enc) in [
            ("{b}z", "skiplist"),
            ("{b}h", "hashtable"),
            ("{b}s", "hashtable"),
        ] {
            let want = format!("${}\r\n{enc}\r\n", enc.len()).into_bytes();
            assert_eq!(command(&mut mine, &["OBJECT", "ENCODING", k]), want);
        }
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for step in 0..6000 {
            let cmd = big_collection_command(&mut x);
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            let want = command(&mut theirs, &args);
            let got = command(&mut mine, &args);
            assert_eq!(
                escape(&got),
                escape(&want),
                "shards={n} step {step}: {args:?}"
            );
        }
        // The whole sorted set, in order, and the hash and set contents.
        let all = ["ZRANGE", "{b}z", "0", "-1", "WITHSCORES"];
        assert_eq!(
            escape(&command(&mut mine, &all)),
            escape(&command(&mut theirs, &all))
        );
        for (k, read) in [("{b}h", "HGETALL"), ("{b}s", "SMEMBERS")] {
            let want = sorted(&command(&mut theirs, &[read, k]));
            assert_eq!(sorted(&command(&mut mine, &[read, k])), want, "{read}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SCAN: cursors differ between implementations, so compare the keys a full iteration returns.

fn command(c: &mut Client, args: &[&str]) -> Vec<u8> {
    let args: Vec<Vec<u8>> = args.iter().map(|a| a.as_bytes().to_vec()).collect();
    c.send(&encode_command(&args)).expect("send");
    c.read_reply().expect("reply")
}

/// Iterates SCAN to the end with the given options; returns the sorted keys (deduplicated,
/// since SCAN may return a key twice) and the number of calls.
fn scan_all(c: &mut Client, opts: &[&str]) -> (Vec<Vec<u8>>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut args = vec!["SCAN", cursor.as_str()];
        args.extend_from_slice(opts);
        let reply = command(c, &args);
        calls += 1;
        assert!(calls < 10_000, "SCAN does not terminate");
        let Some((Node::Agg(b'*', kids), _)) = parse(&reply) else {
            panic!("SCAN reply is not an array: {}", escape(&reply));
        };
        let [Node::Scalar(b'$', cur), Node::Agg(b'*', found)] = kids.as_slice() else {
            panic!("SCAN reply has the wrong shape: {}", escape(&reply));
        };
        for k in found {
            let Node::Scalar(b'$', k) = k else {
                panic!("SCAN key is not a bulk: {}", escape(&reply));
            };
            keys.push(bulk_body(k));
        }
        cursor = String::from_utf8(bulk_body(cur)).expect("cursor is text");
        if cursor == "0" {
            break;
        }
    }
    keys.sort();
    keys.dedup();
    (keys, calls)
}

fn bulk_body(b: &[u8]) -> Vec<u8> {
    let start = b.windows(2).position(|w| w == b"\r\n").map_or(0, |p| p + 2);
    b.get(start..b.len().saturating_sub(2))
        .unwrap_or_default()
        .to_vec()
}

#[test]
fn scan_returns_the_same_keys() {
    for n in common::shard_counts() {
        let (_redis, _ours, mut theirs, mut mine) = both(n);
        for c in [&mut theirs, &mut mine] {
            for i in 0..60 {
                let k = format!("scan:{i}");
                assert_eq!(command(c, &["SET", &k, "v"]), b"+OK\r\n");
            }
            assert_eq!(command(c, &["SET", "other", "v"]), b"+OK\r\n");
        }
        for opts in [
            &[][..],
            &["COUNT", "3"][..],
            &["MATCH", "scan:1*"][..],
            &["MATCH", "scan:?", "COUNT", "1"][..],
            &["MATCH", "nomatch*"][..],
            &["TYPE", "string", "COUNT", "7"][..],
        ] {
            let (want, _) = scan_all(&mut theirs, opts);
            let (got, calls) = scan_all(&mut mine, opts);
            assert!(
                !opts.is_empty() || want.len() == 61,
                "redis: {}",
                want.len()
            );
            assert_eq!(
                got.iter().map(|k| escape(k)).collect::<Vec<_>>(),
                want.iter().map(|k| escape(k)).collect::<Vec<_>>(),
                "shards={n} SCAN {opts:?} after {calls} calls"
            );
        }
        // A keyspace smaller than COUNT comes back in one call, as from Redis (whose
        // small table fits one COUNT), however many shards hold it.
        for opts in [
            &["COUNT", "100"][..],
            &["MATCH", "scan:1*", "COUNT", "1000"][..],
        ] {
            let (want, redis_calls) = scan_all(&mut theirs, opts);
            let (got, calls) = scan_all(&mut mine, opts);
            assert_eq!(redis_calls, 1, "redis SCAN {opts:?}");
            assert_eq!(calls, 1, "shards={n} SCAN {opts:?}");
            assert_eq!(got, want, "shards={n} SCAN {opts:?}");
        }
        // Errors are compared byte for byte.
        for args in [
            &["SCAN", "abc"][..],
            &["SCAN", "0", "COUNT", "0"][..],
            &["SCAN", "0", "COUNT", "x"][..],
            &["SCAN", "0", "MATCH"][..],
            &["SCAN", "0", "FOO", "bar"][..],
        ] {
            let want = command(&mut theirs, args);
            let got = command(&mut mine, args);
            assert_eq!(
                escape(&got),
                escape(&want),
                "shards={n} {args:?}: shardis vs redis"
            );
        }
    }
}

#[test]
fn reader_and_helpers() {
    // The reply reader keeps the exact bytes of nested and RESP3 replies.
    let wire = b"*3\r\n$-1\r\n%1\r\n+a\r\n~2\r\n:1\r\n_\r\n=7\r\ntxt:abc\r\n:9\r\n";
    let mut r = BufReader::new(&wire[..]);
    let mut out = Vec::new();
    read_one(&mut r, &mut out).unwrap();
    assert_eq!(&out[..], &wire[..wire.len() - 4]);
    let mut out2 = Vec::new();
    read_one(&mut r, &mut out2).unwrap();
    assert_eq!(out2, b":9\r\n");
    assert!(
        read_one(&mut r, &mut Vec::new()).is_err(),
        "EOF is an error"
    );
    let mut r = BufReader::new(&b"$5\r\nab"[..]);
    assert!(read_one(&mut r, &mut Vec::new()).is_err(), "short bulk");
    assert_eq!(shape(b"*2\r\n$1\r\na\r\n:3\r\n"), "*2[$:]");
    assert_eq!(
        sorted(b"*2\r\n$1\r\nb\r\n$1\r\na\r\n"),
        b"*2\r\n$1\r\na\r\n$1\r\nb\r\n"
    );
    assert_ne!(shape(b"$-1\r\n"), shape(b"*0\r\n"));
    assert_eq!(
        split_words(r#"SET "a b" 'c d' "\x41\n" x"#).unwrap(),
        vec![
            b"SET".to_vec(),
            b"a b".to_vec(),
            b"c d".to_vec(),
            b"A\n".to_vec(),
            b"x".to_vec()
        ]
    );
    assert!(split_words("\"open").is_err());
}

// ---------------------------------------------------------------------------------------------
// Protocol errors: Redis replies once and closes the connection; each case gets fresh ones.

/// Sends `req` and returns everything received until the peer closes (or `None` if it does
/// not close within the timeout).
fn until_close(port: u16, req: &[u8]) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
    // The server may close before reading everything; a failed write is part of the case.
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Some(out),
            Err(_) => return None,
        }
    }
}

#[test]
fn protocol_errors_match_redis() {
    let big_inline = vec![b'a'; 70 * 1024];
    let big_count = [b"*".as_slice(), &vec![b'1'; 70 * 1024]].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("bad multibulk length", b"*abc\r\n".to_vec()),
        ("multibulk too long", b"*2147483648\r\n".to_vec()),
        ("bad bulk length", b"*1\r\n$abc\r\n".to_vec()),
        ("negative bulk length", b"*1\r\n$-5\r\n".to_vec()),
        ("bulk too long", b"*1\r\n$536870913\r\n".to_vec()),
        ("not a bulk", b"*1\r\n:5\r\n".to_vec()),
        ("unbalanced quotes", b"SET a \"b\r\n".to_vec()),
        ("unbalanced single quote", b"ECHO 'x\r\n".to_vec()),
        (
            "reply after good ones",
            b"PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n".to_vec(),
        ),
        ("too big inline", big_inline),
        ("too big multibulk count", big_count),
        ("quit", b"QUIT\r\nPING\r\n".to_vec()),
    ];
    for n in common::shard_counts() {
        let redis = Redis::start();
        let ours = common::Server::start(n);
        for (name, req) in &cases {
            let want = until_close(redis.port, req)
                .unwrap_or_else(|| panic!("{name}: redis-server did not close"));
            let got = until_close(ours.port, req);
            assert_eq!(
                got.as_deref().map(escape),
                Some(escape(&want)),
                "shards={n} {name}: shardis (None: kept the connection open) vs redis"
            );
        }
    }
}

/// DEBUG POPULATE: the same keys and values as redis-server (prefix, size padding and
/// cutting, existing keys kept, errors), checked by DEBUG DIGEST and by reading keys back.
#[test]
fn debug_populate_matches_redis() {
    for n in common::shard_counts() {
        let redis = Redis::start_with(&["--enable-debug-command", "yes"]);
        let ours = common::Server::start_with(n, &["--enable-debug-command", "yes"]);
        let (mut theirs, mut mine) = (Client::connect(redis.port), Client::connect(ours.port));
        let steps: &[&[&str]] = &[
            &["SET", "key:7", "keep"],
            &["DEBUG", "POPULATE", "1000"],
            &["GET", "key:7"],
            &["GET", "key:999"],
            &["DEBUG", "POPULATE", "50", "p", "12"],
            &["GET", "p:3"],
            &["DEBUG", "POPULATE", "20", "q", "3"],
            &["GET", "q:19"],
            &["DEBUG", "POPULATE", "5", "", "0"],
            &["GET", ":4"],
            &["DEBUG", "POPULATE", "0"],
            &["DEBUG", "POPULATE", "-1"],
            &["DEBUG", "POPULATE", "abc"],
            &["DEBUG", "POPULATE", "2", "s", "-1"],
            &["DEBUG", "POPULATE"],
            &["DEBUG", "POPULATE", "1", "a", "2", "3"],
            &["DBSIZE"],
            &["DEBUG", "DIGEST"],
        ];
        for s in steps {
            let want = command(&mut theirs, s);
            let got = command(&mut mine, s);
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "--shards {n}: {s:?}"
            );
        }
    }
}
