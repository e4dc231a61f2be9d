//! Encoding thresholds as configuration, differentially against a real redis-server 7.0:
//! each type is stepped over each threshold (`hash-max-listpack-*`, `zset-max-listpack-*`,
//! `set-max-intset-entries`, `list-max-listpack-size`, `list-compress-depth`) and after every
//! step OBJECT ENCODING, the data (DEBUG DIGEST-VALUE), and DUMP are compared: byte for byte
//! where the encoding fixes the element order (listpack, intset, lists), and through RESTORE
//! of each server's payload into both servers otherwise. Runs under every shard count of
//! `shard_counts()`.

mod common;

use common::resp::{encode_command, escape, Client, Redis};
use common::{shard_counts, Server};

/// One shardis and one redis-server, both with DEBUG and without LZF in DUMP (so payloads
/// compare byte for byte).
struct Pair {
    /// Lists have LZF-compressed nodes (`list-compress-depth`): their DUMP bytes differ
    /// in the LZF output only, so they are compared through RESTORE.
    lzf: bool,
    r: Client,
    s: Client,
    _redis: Redis,
    _shardis: Server,
}

fn args(line: &str) -> Vec<Vec<u8>> {
    line.split_whitespace()
        .map(|w| w.as_bytes().to_vec())
        .collect()
}

/// Where two byte strings first differ, for failure messages that stay short.
fn diff(a: &[u8], b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let around = |v: &[u8]| {
        escape(
            v.get(at.saturating_sub(16)..(at + 16).min(v.len()))
                .unwrap_or_default(),
        )
    };
    format!(
        "lengths {} and {}, first difference at byte {at}: {} vs {}",
        a.len(),
        b.len(),
        around(a),
        around(b)
    )
}

fn call(c: &mut Client, argv: &[Vec<u8>]) -> Vec<u8> {
    c.send(&encode_command(argv)).expect("send");
    c.read_reply().expect("reply")
}

/// The body of a bulk reply.
fn bulk(reply: &[u8]) -> Option<Vec<u8>> {
    if reply.first() != Some(&b'$') {
        return None;
    }
    let end = reply.windows(2).position(|w| w == b"\r\n")?;
    reply
        .get(end + 2..reply.len().checked_sub(2)?)
        .map(<[u8]>::to_vec)
}

impl Pair {
    fn start(shards: usize, extra: &[&str]) -> Pair {
        let mut flags = vec!["--enable-debug-command", "yes", "--rdbcompression", "no"];
        flags.extend_from_slice(extra);
        let redis = Redis::start_with(&flags);
        let shardis = Server::start_with(shards, &flags);
        Pair {
            lzf: false,
            r: Client::connect(redis.port),
            s: Client::connect(shardis.port),
            _redis: redis,
            _shardis: shardis,
        }
    }

    /// Runs a command on both; the replies must be equal byte for byte.
    fn run(&mut self, line: &str) -> Vec<u8> {
        let a = args(line);
        let (r, s) = (call(&mut self.r, &a), call(&mut self.s, &a));
        assert_eq!(
            escape(&s),
            escape(&r),
            "reply to `{line}` differs (shardis vs redis)"
        );
        s
    }

    /// Runs a command on both without comparing replies (random results).
    fn run_any(&mut self, line: &str) {
        let a = args(line);
        call(&mut self.r, &a);
        call(&mut self.s, &a);
    }

    fn both(&mut self, argv: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
        (call(&mut self.r, argv), call(&mut self.s, argv))
    }

    /// Compares `key` on both servers after `step`: encoding, data (unless `same_data` is
    /// false: random pops), DUMP bytes where the encoding fixes the order, and what each
    /// server's DUMP turns into when restored into either server.
    fn check(&mut self, key: &str, step: &str, same_data: bool) {
        let k = key.as_bytes().to_vec();
        let enc = |v: &str| {
            vec![
                b"OBJECT".to_vec(),
                b"ENCODING".to_vec(),
                v.as_bytes().to_vec(),
            ]
        };
        let digest = |v: &str| {
            vec![
                b"DEBUG".to_vec(),
                b"DIGEST-VALUE".to_vec(),
                v.as_bytes().to_vec(),
            ]
        };
        let (er, es) = self.both(&enc(key));
        assert_eq!(
            escape(&es),
            escape(&er),
            "OBJECT ENCODING {key} after `{step}` (shardis vs redis)"
        );
        let (dr, ds) = self.both(&digest(key));
        if same_data {
            assert_eq!(escape(&ds), escape(&dr), "digest of {key} after `{step}`");
        }
        let (pr, ps) = self.both(&[b"DUMP".to_vec(), k.clone()]);
        let (pr, ps) = (bulk(&pr), bulk(&ps));
        assert!(pr.is_some() && ps.is_some(), "DUMP {key} after `{step}`");
        let (pr, ps) = (pr.unwrap_or_default(), ps.unwrap_or_default());
        let t = call(&mut self.s, &args(&format!("TYPE {key}")));
        let ordered = [&b"$8\r\nlistpack"[..], b"$6\r\nintset"]
            .iter()
            .any(|e| er.starts_with(e))
            || (t == b"+list\r\n" && !self.lzf);
        if same_data && ordered {
            assert!(
                ps == pr,
                "DUMP {key} after `{step}` (shardis vs redis): {}",
                diff(&ps, &pr)
            );
        }
        // Each payload restored into each server: all four agree on encoding, and the data
        // is the dumped server's.
        let mut encs = Vec::new();
        for (from, payload, want) in [("r", &pr, &dr), ("s", &ps, &ds)] {
            let copy = format!("{key}:from-{from}");
            let restore = vec![
                b"RESTORE".to_vec(),
                copy.as_bytes().to_vec(),
                b"0".to_vec(),
                payload.clone(),
                b"REPLACE".to_vec(),
            ];
            let (a, b) = self.both(&restore);
            assert_eq!(
                (a.as_slice(), b.as_slice()),
                (&b"+OK\r\n"[..], &b"+OK\r\n"[..]),
                "RESTORE of {from}'s DUMP of {key} after `{step}`"
            );
            let (ea, eb) = self.both(&enc(&copy));
            encs.push(escape(&ea));
            encs.push(escape(&eb));
            let (ga, gb) = self.both(&digest(&copy));
            assert_eq!(
                escape(&ga),
                escape(want),
                "digest of {from}'s DUMP of {key} restored in redis after `{step}`"
            );
            assert_eq!(
                escape(&gb),
                escape(want),
                "digest of {from}'s DUMP of {key} restored in shardis after `{step}`"
            );
            self.both(&[b"DEL".to_vec(), copy.into_bytes()]);
        }
        assert!(
            encs.windows(2).all(|w| w[0] == w[1]),
            "encodings of {key}'s DUMPs restored after `{step}`: {encs:?} (redis<-r, shardis<-r, redis<-s, shardis<-s)"
        );
    }

    /// Runs `line` on both (replies compared) and checks `keys` afterwards.
    fn step(&mut self, line: &str, keys: &[&str]) {
        self.run(line);
        for k in keys {
            self.check(k, line, true);
        }
    }
}

#[test]
fn hash_crosses_entries_and_value_thresholds() {
    for shards in shard_counts() {
        let mut p = Pair::start(shards, &[]);
        p.run("CONFIG SET hash-max-ziplist-entries 4 hash-max-listpack-value 8");
        for i in 0..6 {
            p.step(&format!("HSET h f{i} v{i}"), &["h"]);
        }
        p.step("HSET h2 a short", &["h2"]);
        p.step("HSET h2 b 123456789", &["h2"]);
        p.step("HSET h3 a 1 b 12345678 c 3", &["h3"]);
        p.step("HSET h4 abcdefghi 1", &["h4"]);
        p.step("HSETNX h5 abcdefghi 1", &["h5"]);
        p.step("HSET h6 a 1", &["h6"]);
        p.step("HINCRBYFLOAT h6 a 0.123456789", &["h6"]);
        p.step("HSET h7 a 1", &["h7"]);
        p.step("HINCRBY h7 a 1234567890", &["h7"]);
        // A long argument that is not stored does not convert.
        p.step("HDEL h7x zzzzzzzzzzzzzz", &[]);
        p.step("HSET h8 a 1 b 2 c 3", &["h8"]);
        p.step("HDEL h8 abcdefghijkl", &["h8"]);
        // A lowered threshold applies at the key's next write, an update included.
        p.run("CONFIG SET hash-max-listpack-entries 2");
        p.check("h8", "CONFIG SET hash-max-listpack-entries 2", true);
        p.step("HSET h8 a 9", &["h8"]);
        // One way: removing fields never converts back.
        p.step("HDEL h8 a b", &["h8"]);
        // 0 entries: the first field converts.
        p.run("CONFIG SET hash-max-listpack-entries 0");
        p.step("HSET h9 a 1", &["h9"]);
        p.run("CONFIG SET hash-max-listpack-entries 512 hash-max-listpack-value 64");
        p.step("HSET h10 a 1", &["h10"]);
    }
}

#[test]
fn zset_crosses_entries_and_value_thresholds() {
    for shards in shard_counts() {
        let mut p = Pair::start(shards, &[]);
        p.run("CONFIG SET zset-max-ziplist-entries 3 zset-max-listpack-value 6");
        for i in 0..5 {
            p.step(&format!("ZADD z {i} m{i}"), &["z"]);
        }
        p.step("ZREM z m0 m1 m2", &["z"]);
        p.step("ZADD z2 1 abcdefg", &["z2"]);
        p.step("ZADD z3 1 a", &["z3"]);
        p.step("ZINCRBY z3 2.5 a", &["z3"]);
        p.step("ZADD z3 2 abcdefg", &["z3"]);
        // Duplicate members in one ZADD: only the distinct count matters.
        p.run("CONFIG SET zset-max-listpack-entries 2");
        p.step("ZADD z4 1 a 1 a 1 a", &["z4"]);
        p.step("ZADD z5 1 a 2 b 3 c", &["z5"]);
        p.run("CONFIG SET zset-max-listpack-entries 3");
        p.step("ZADD {s}src 1 a 2 b 3 c 4 d 5 e", &["{s}src"]);
        p.step("ZRANGESTORE {s}d1 {s}src 0 1", &["{s}d1"]);
        p.step("ZRANGESTORE {s}d2 {s}src 0 4", &["{s}d2"]);
        p.step("ZUNIONSTORE {s}u1 1 {s}src", &["{s}u1"]);
        p.step("ZADD {s}small 1 a 2 b", &["{s}small"]);
        p.step("ZUNIONSTORE {s}u2 1 {s}small", &["{s}u2"]);
        p.step("ZINTERSTORE {s}u3 2 {s}small {s}src", &["{s}u3"]);
        p.step("ZDIFFSTORE {s}u4 2 {s}src {s}small", &["{s}u4"]);
        p.run("CONFIG SET zset-max-listpack-entries 1");
        p.step("GEOADD g 13.361389 38.115556 Palermo", &["g"]);
        p.step("GEOADD g 15.087269 37.502669 Catania", &["g"]);
        p.step(
            "GEOSEARCHSTORE {g}gs g FROMLONLAT 15 37 BYRADIUS 200 km",
            &[],
        );
        p.run("CONFIG SET zset-max-listpack-entries 0");
        p.step("ZADD z6 1 a", &["z6"]);
        p.run("CONFIG SET zset-max-listpack-entries 128 zset-max-listpack-value 64");
        p.step("ZADD z7 1 a", &["z7"]);
    }
}

#[test]
fn set_crosses_intset_threshold() {
    for shards in shard_counts() {
        let mut p = Pair::start(shards, &[]);
        p.run("CONFIG SET set-max-intset-entries 3");
        for i in 0..5 {
            p.step(&format!("SADD s {i}"), &["s"]);
        }
        p.step("SREM s 0 1 2 3", &["s"]);
        p.step("SADD s2 1 2", &["s2"]);
        p.step("SADD s2 x", &["s2"]);
        p.step("SADD s3 1 2 3 4", &["s3"]);
        p.step("SADD {t}a 1 2 3 4 5 6", &["{t}a"]);
        p.step("SADD {t}b 1 2", &["{t}b"]);
        p.step("SINTERSTORE {t}i {t}a {t}b", &["{t}i"]);
        p.step("SUNIONSTORE {t}u {t}a", &["{t}u"]);
        p.step("SUNIONSTORE {t}u2 {t}b", &["{t}u2"]);
        p.step("SDIFFSTORE {t}d {t}a {t}b", &["{t}d"]);
        p.step("SMOVE {t}a {t}m 5", &["{t}a", "{t}m"]);
        // SPOP with a count near the size rebuilds the set from what stays (Redis's case
        // 3), as a new intset when that fits; a small count pops in place.
        p.run("SADD sp 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20");
        p.run_any("SPOP sp 18");
        p.check("sp", "SPOP sp 18", false);
        p.run("SADD sq 1 2 3 4 5 6 7 8");
        p.run_any("SPOP sq 6");
        p.check("sq", "SPOP sq 6", false);
        p.run("CONFIG SET set-max-intset-entries 0");
        p.step("SADD s4 1", &["s4"]);
    }
}

#[test]
fn list_nodes_follow_list_max_listpack_size() {
    for shards in shard_counts() {
        let mut p = Pair::start(shards, &[]);
        let items: Vec<String> = (0..300)
            .map(|i| match i % 3 {
                0 => i.to_string(),
                1 => format!("v{i}-{}", "x".repeat(i % 70)),
                _ => "y".repeat(200 + i),
            })
            .collect();
        for (n, size) in ["-2", "-1", "-3", "-5", "-7", "1", "5", "100", "0"]
            .iter()
            .enumerate()
        {
            p.run(&format!("CONFIG SET list-max-ziplist-size {size}"));
            let key = format!("l{n}");
            for chunk in items.chunks(50) {
                p.step(&format!("RPUSH {key} {}", chunk.join(" ")), &[&key]);
            }
            // Pops at the tail keep Redis's node boundaries (a pop at the head does too in
            // Redis, but our DUMP packs the nodes afresh from the head: see README).
            p.step(&format!("RPOP {key} 7"), &[&key]);
        }
        // Inner nodes compressed: the payloads differ in their LZF bytes only, so they are
        // compared through RESTORE (digest, encoding) in both directions.
        p.run("CONFIG SET list-max-listpack-size -1 list-compress-depth 1");
        p.lzf = true;
        p.run(&format!("RPUSH lz {}", items.join(" ")));
        p.check("lz", "RPUSH lz (compress depth 1)", true);
        let (r, s) = p.both(&args("DUMP lz"));
        let (r, s) = (bulk(&r).unwrap_or_default(), bulk(&s).unwrap_or_default());
        assert!(
            r.len() < 20_000 && s.len() < 20_000,
            "inner nodes are compressed: redis {} bytes, shardis {} bytes",
            r.len(),
            s.len()
        );
    }
}

#[test]
fn restore_converts_by_the_thresholds_in_force() {
    for shards in shard_counts() {
        let mut p = Pair::start(shards, &[]);
        p.run("HSET h a 1 b 2 c 0123456789");
        p.run("ZADD z 1 a 2 b 3 0123456789");
        p.run("SADD s 1 2 3");
        p.run("HSET hbig a 1 b 2 c 3 d 4 e 5");
        let payloads: Vec<(String, Vec<u8>)> = ["h", "z", "s", "hbig"]
            .iter()
            .map(|k| {
                let (r, s) = p.both(&args(&format!("DUMP {k}")));
                assert_eq!(escape(&s), escape(&r), "DUMP {k}");
                (k.to_string(), bulk(&r).unwrap_or_default())
            })
            .collect();
        // Lower every threshold: listpack payloads convert only past the entry count.
        p.run(
            "CONFIG SET hash-max-listpack-entries 3 hash-max-listpack-value 4 \
             zset-max-listpack-entries 2 zset-max-listpack-value 4 set-max-intset-entries 2",
        );
        for (k, payload) in &payloads {
            let copy = format!("{k}2");
            let restore = vec![
                b"RESTORE".to_vec(),
                copy.as_bytes().to_vec(),
                b"0".to_vec(),
                payload.clone(),
            ];
            let (a, b) = p.both(&restore);
            assert_eq!(escape(&b), escape(&a));
            p.check(&copy, &format!("RESTORE {copy}"), true);
        }
    }
}

#[test]
fn thresholds_by_flag_file_config_get_and_rewrite() {
    let dir = std::env::temp_dir().join(format!("shardis-enc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("redis.conf");
    std::fs::write(
        &conf,
        "# thresholds\nhash-max-ziplist-entries 3\nzset-max-listpack-value 1kb\nlist-compress-depth 0\n",
    )
    .unwrap();
    let conf_s = conf.to_string_lossy().to_string();
    let s = Server::start_conf(
        &conf_s,
        2,
        &[
            "--set-max-intset-entries",
            "7",
            "--enable-debug-command",
            "yes",
        ],
    );
    let mut c = Client::connect(s.port);
    let get = |c: &mut Client, name: &str| escape(&call(c, &args(&format!("CONFIG GET {name}"))));
    assert_eq!(
        get(&mut c, "hash-max-listpack-entries"),
        escape(b"*2\r\n$25\r\nhash-max-listpack-entries\r\n$1\r\n3\r\n")
    );
    assert_eq!(
        get(&mut c, "hash-max-ziplist-entries"),
        escape(b"*2\r\n$24\r\nhash-max-ziplist-entries\r\n$1\r\n3\r\n")
    );
    assert_eq!(
        get(&mut c, "zset-max-ziplist-value"),
        escape(b"*2\r\n$22\r\nzset-max-ziplist-value\r\n$4\r\n1024\r\n")
    );
    assert_eq!(
        get(&mut c, "set-max-intset-entries"),
        escape(b"*2\r\n$22\r\nset-max-intset-entries\r\n$1\r\n7\r\n")
    );
    // The file's value is in force.
    call(&mut c, &args("HSET h a 1 b 2 c 3"));
    assert_eq!(
        call(&mut c, &args("OBJECT ENCODING h")),
        b"$8\r\nlistpack\r\n"
    );
    call(&mut c, &args("HSET h d 4"));
    assert_eq!(
        call(&mut c, &args("OBJECT ENCODING h")),
        b"$9\r\nhashtable\r\n"
    );
    // Redis's glob over both names, and its errors.
    let r = Redis::start();
    let mut rc = Client::connect(r.port);
    for bad in [
        "CONFIG SET hash-max-listpack-value -1",
        "CONFIG SET hash-max-ziplist-entries -1",
        "CONFIG SET hash-max-ziplist-entries 1k",
        "CONFIG SET list-max-listpack-size 99999999999",
        "CONFIG SET list-compress-depth -1",
        "CONFIG SET set-max-intset-entries 9223372036854775808",
    ] {
        assert_eq!(
            escape(&call(&mut c, &args(bad))),
            escape(&call(&mut rc, &args(bad))),
            "{bad}"
        );
    }
    call(
        &mut rc,
        &args("CONFIG SET hash-max-listpack-entries 3 zset-max-listpack-value 1kb set-max-intset-entries 7"),
    );
    // CONFIG GET returns a flat [name, value, ...] array: compared as a sorted map.
    let map = |b: &[u8]| -> Vec<(String, String)> {
        let text = String::from_utf8_lossy(b).to_string();
        let parts: Vec<&str> = text
            .split("\r\n")
            .filter(|l| !l.starts_with('$') && !l.starts_with('*') && !l.is_empty())
            .collect();
        let mut v: Vec<(String, String)> = parts
            .chunks(2)
            .filter_map(|c| Some((c.first()?.to_string(), c.get(1)?.to_string())))
            .collect();
        v.sort();
        v
    };
    for pat in ["*ziplist*", "*listpack*", "*intset*", "list-compress-depth"] {
        let want = map(&call(&mut rc, &args(&format!("CONFIG GET {pat}"))));
        let got = map(&call(&mut c, &args(&format!("CONFIG GET {pat}"))));
        assert!(!want.is_empty());
        assert_eq!(got, want, "CONFIG GET {pat}");
    }
    // CONFIG SET changes both names; REWRITE writes the new name in place of the alias.
    assert_eq!(
        call(&mut c, &args("CONFIG SET hash-max-listpack-value 2kb")),
        b"+OK\r\n"
    );
    assert_eq!(
        get(&mut c, "hash-max-ziplist-value"),
        escape(b"*2\r\n$22\r\nhash-max-ziplist-value\r\n$4\r\n2048\r\n")
    );
    assert_eq!(call(&mut c, &args("CONFIG REWRITE")), b"+OK\r\n");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("\nhash-max-listpack-entries 3\n"), "{text}");
    assert!(!text.contains("ziplist"), "{text}");
    assert!(text.contains("\nhash-max-listpack-value 2kb\n"), "{text}");
    assert!(text.contains("\nzset-max-listpack-value 1kb\n"), "{text}");
    assert!(text.contains("\nset-max-intset-entries 7\n"), "{text}");
    // redis-server reads the rewritten file and gets the same values.
    let port = common::free_port();
    let mut child = std::process::Command::new(common::redis_server().expect("redis-server"))
        .args([
            &conf_s,
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--daemonize",
            "no",
        ])
        .args([
            "--logfile",
            "",
            "--pidfile",
            "",
            "--dir",
            &dir.to_string_lossy(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start redis-server");
    let up = common::wait_for(std::time::Duration::from_secs(10), || common::ping(port));
    let got = up.then(|| {
        let mut rc2 = Client::connect(port);
        map(&call(&mut rc2, &args("CONFIG GET *-max-*")))
    });
    let _ = child.kill();
    let _ = child.wait();
    let got = got.expect("redis-server starts on the rewritten file");
    for (k, v) in [
        ("hash-max-listpack-entries", "3"),
        ("hash-max-listpack-value", "2048"),
        ("zset-max-listpack-value", "1024"),
        ("set-max-intset-entries", "7"),
    ] {
        assert!(
            got.contains(&(k.to_string(), v.to_string())),
            "{k} in {got:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
