//! Keyspace notifications against the real binary, for every shard count in
//! `common::shard_counts()`: a PSUBSCRIBE `__key*__:*` subscriber must see the same messages
//! as on a real redis-server 7.0.15 for the same commands (a differential test), expired and
//! evicted events, the `notify-keyspace-events` setting (CONFIG SET/GET, the flag, bad
//! strings).
//!
//! The subscriber's connection lands on any shard (SO_REUSEPORT), so under `--shards 4` the
//! events travel between shards. Events of one key come from the key's shard in the order of
//! its writes; events of keys on different shards may interleave differently, so the script
//! compared message for message keeps its keys in one hash tag, and the multi-shard script is
//! compared key by key.

mod common;

use std::time::{Duration, Instant};

use common::resp::Redis;
use common::Server;

/// A step of a script: a command, or a pause (`["sleep", ms]`) to let keys expire.
type Script<'a> = &'a [&'a [&'a str]];

/// Runs `script` with `flags` on the server at `port` and returns the (channel, message)
/// pairs a pattern subscriber received: at least `want` of them (waits up to 5 s), then
/// whatever else arrives within 300 ms.
fn collect(port: u16, flags: &str, script: Script<'_>, want: usize) -> Vec<(String, String)> {
    let url = format!("redis://127.0.0.1:{port}/");
    let client = redis::Client::open(url).expect("client");
    let mut c = client.get_connection().expect("connect");
    let _: () = redis::cmd("FLUSHALL").query(&mut c).expect("flushall");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(flags)
        .query(&mut c)
        .expect("config set");
    let mut sc = client.get_connection().expect("connect");
    let mut ps = sc.as_pubsub();
    ps.psubscribe("__key*__:*").expect("psubscribe");
    // shardis applies a CONFIG SET on each shard's next loop pass.
    std::thread::sleep(Duration::from_millis(50));
    for step in script {
        if step[0] == "sleep" {
            std::thread::sleep(Duration::from_millis(step[1].parse().expect("ms")));
            continue;
        }
        let mut cmd = redis::cmd(step[0]);
        for a in &step[1..] {
            cmd.arg(*a);
        }
        let _: redis::RedisResult<redis::Value> = cmd.query(&mut c);
    }
    let mut out = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let now = Instant::now();
        let left = if out.len() < want {
            end.saturating_duration_since(now)
        } else {
            Duration::from_millis(300)
        };
        if left.is_zero() {
            break;
        }
        ps.set_read_timeout(Some(left)).expect("timeout");
        match ps.get_message() {
            Ok(m) => {
                let payload: String = m.get_payload().expect("payload");
                out.push((m.get_channel_name().to_string(), payload));
            }
            Err(_) => break,
        }
    }
    out
}

/// The key a message is about.
fn key_of(m: &(String, String)) -> String {
    if m.0.starts_with("__keyspace@") {
        m.0.split_once("__:").map(|x| x.1).unwrap_or("").to_string()
    } else {
        m.1.clone()
    }
}

/// Every kind of write, all keys in one hash tag (one shard), with a pause for expiry.
const ONE_SLOT: Script<'static> = &[
    &["set", "{t}a", "1"],
    &["set", "{t}a", "2", "ex", "100"],
    &["set", "{t}a", "3", "nx"],
    &["setex", "{t}b", "100", "x"],
    &["getex", "{t}b", "persist"],
    &["getex", "{t}b", "ex", "50"],
    &["getex", "{t}b"],
    &["getdel", "{t}b"],
    &["expire", "{t}a", "-1"],
    &["expire", "{t}nosuch", "10"],
    &["set", "{t}c", "1"],
    &["expire", "{t}c", "100"],
    &["persist", "{t}c"],
    &["rename", "{t}c", "{t}d"],
    &["incr", "{t}n"],
    &["decrby", "{t}n", "3"],
    &["incrbyfloat", "{t}n", "1.5"],
    &["append", "{t}s", "x"],
    &["setrange", "{t}s", "3", "y"],
    &["mset", "{t}m1", "1", "{t}m2", "2"],
    &["msetnx", "{t}m1", "1", "{t}m3", "2"],
    &["lpush", "{t}l", "a", "b", "c"],
    &["rpush", "{t}l", "d"],
    &["lpushx", "{t}nol", "d"],
    &["lpop", "{t}l"],
    &["rpop", "{t}l"],
    &["lpop", "{t}nol"],
    &["linsert", "{t}l", "before", "a", "z"],
    &["linsert", "{t}l", "before", "nope", "z"],
    &["lset", "{t}l", "0", "q"],
    &["lrem", "{t}l", "1", "q"],
    &["lrem", "{t}l", "1", "nope"],
    &["ltrim", "{t}l", "0", "0"],
    &["rpop", "{t}l"],
    &["rpush", "{t}l", "a", "b"],
    &["ltrim", "{t}l", "5", "10"],
    &["sadd", "{t}s1", "a", "b", "c"],
    &["sadd", "{t}s1", "a"],
    &["srem", "{t}s1", "a"],
    &["srem", "{t}s1", "nope"],
    &["spop", "{t}s1"],
    &["spop", "{t}s1"],
    &["sadd", "{t}s2", "x", "y"],
    &["smove", "{t}s2", "{t}s3", "x"],
    &["smove", "{t}s2", "{t}s3", "y"],
    &["sadd", "{t}s4", "a"],
    &["sinterstore", "{t}s5", "{t}s4", "{t}s3"],
    &["sunionstore", "{t}s5", "{t}s4", "{t}s3"],
    &["sinterstore", "{t}s5", "{t}s4", "{t}nosuch"],
    &["hset", "{t}h", "f", "v", "g", "w"],
    &["hsetnx", "{t}h", "f", "v"],
    &["hincrby", "{t}h", "n", "1"],
    &["hincrbyfloat", "{t}h", "n", "1.5"],
    &["hdel", "{t}h", "nope"],
    &["hdel", "{t}h", "f", "g", "n"],
    &["zadd", "{t}z", "1", "a", "2", "b"],
    &["zadd", "{t}z", "incr", "1", "a"],
    &["zincrby", "{t}z", "1", "b"],
    &["zrem", "{t}z", "a"],
    &["zrem", "{t}z", "nope"],
    &["zadd", "{t}z", "3", "c", "4", "d", "5", "e"],
    &["zremrangebyscore", "{t}z", "0", "3"],
    &["zremrangebyrank", "{t}z", "5", "9"],
    &["zpopmin", "{t}z"],
    &["zpopmax", "{t}z"],
    &["zpopmax", "{t}z"],
    &["del", "{t}nosuch"],
    &["set", "{t}x", "1"],
    &["copy", "{t}x", "{t}y"],
    &["move", "{t}y", "1"],
    &["del", "{t}x", "{t}m1", "{t}m2"],
    &["unlink", "{t}m3"],
    &["set", "{t}s1", "a"],
    &["bitop", "and", "{t}dst", "{t}s1", "{t}s1"],
    &["bitop", "and", "{t}dst", "{t}nosuch"],
    &["pfadd", "{t}hl", "a", "b"],
    &["pfadd", "{t}hl", "a"],
    &["pfmerge", "{t}hl2", "{t}hl"],
    &["rpush", "{t}l", "a", "b", "c"],
    &["lmove", "{t}l", "{t}l2", "left", "right"],
    &["rpoplpush", "{t}l", "{t}l2"],
    &["lmove", "{t}l2", "{t}l2", "right", "left"],
    &["lmpop", "1", "{t}l", "left"],
    &["blpop", "{t}nol", "{t}l2", "0"],
    &["blmove", "{t}l2", "{t}l", "right", "right", "0"],
    &["brpop", "{t}l", "0"],
    &["zadd", "{t}z", "1", "a", "2", "b", "3", "c", "4", "d"],
    &["bzpopmin", "{t}z", "0"],
    &["bzpopmax", "{t}z", "0"],
    &["zmpop", "1", "{t}z", "min"],
    &["zadd", "{t}z", "1", "a"],
    &["zunionstore", "{t}z2", "1", "{t}z"],
    &["zinterstore", "{t}z2", "2", "{t}z", "{t}nosuch"],
    &["zrangestore", "{t}z3", "{t}z", "0", "-1"],
    &["rpush", "{t}l3", "3", "1", "2"],
    &["sort", "{t}l3", "store", "{t}st"],
    &["sort", "{t}nosuch", "store", "{t}st"],
    &["zadd", "{t}z", "nx", "5", "a"],
    &["zadd", "{t}z", "xx", "5", "a"],
    &["setbit", "{t}bits", "7", "1"],
    &["setbit", "{t}bits", "7", "1"],
    &["setbit", "{t}bits", "100", "0"],
    &["bitfield", "{t}bits", "get", "u8", "0"],
    &[
        "bitfield", "{t}bits", "set", "u8", "0", "255", "get", "u4", "0",
    ],
    &[
        "bitfield", "{t}bits", "overflow", "fail", "incrby", "u2", "0", "100",
    ],
    &["bitfield", "{t}bf", "incrby", "i5", "100", "1"],
    &[
        "geoadd",
        "{t}g",
        "13.361389",
        "38.115556",
        "Palermo",
        "15.087269",
        "37.502669",
        "Catania",
    ],
    &["geoadd", "{t}g", "nx", "13.361389", "38.115556", "Palermo"],
    &["geoadd", "{t}g", "xx", "ch", "13.4", "38.1", "Palermo"],
    &["georadius", "{t}g", "15", "37", "200", "km"],
    &[
        "georadius",
        "{t}g",
        "15",
        "37",
        "200",
        "km",
        "store",
        "{t}g2",
    ],
    &[
        "georadius",
        "{t}g",
        "15",
        "37",
        "200",
        "km",
        "storedist",
        "{t}g3",
    ],
    &[
        "georadiusbymember",
        "{t}g",
        "Palermo",
        "1",
        "m",
        "store",
        "{t}g3",
    ],
    &[
        "geosearchstore",
        "{t}g4",
        "{t}g",
        "fromlonlat",
        "15",
        "37",
        "byradius",
        "200",
        "km",
    ],
    &[
        "geosearchstore",
        "{t}g4",
        "{t}g",
        "fromlonlat",
        "0",
        "0",
        "byradius",
        "1",
        "m",
    ],
    &["set", "{t}e", "v", "px", "20"],
    &["sleep", "300"],
    &["get", "{t}e"],
    &["set", "{t}last", "1"],
];

#[test]
fn same_messages_as_redis_for_one_slot() {
    let redis = Redis::start();
    let expect = collect(redis.port, "KEA", ONE_SLOT, 0);
    assert!(expect.len() > 100, "redis sent {}", expect.len());
    assert!(expect.iter().any(|m| m.1 == "expired"), "{expect:?}");
    for n in common::shard_counts() {
        let s = Server::start(n);
        let got = collect(s.port, "KEA", ONE_SLOT, expect.len());
        let first = got.iter().zip(&expect).position(|(a, b)| a != b);
        let at = first.unwrap_or(got.len().min(expect.len()));
        let near = |v: &[(String, String)]| v.iter().skip(at).take(8).cloned().collect::<Vec<_>>();
        assert_eq!(
            got.len(),
            expect.len(),
            "--shards {n}: from {at}: got {:?}, redis {:?}",
            near(&got),
            near(&expect)
        );
        assert!(
            first.is_none(),
            "--shards {n}: from {at}: got {:?}, redis {:?}",
            near(&got),
            near(&expect)
        );
    }
}

/// Only some classes, only one channel kind: the same filtering as Redis.
#[test]
fn class_filters_as_redis() {
    let redis = Redis::start();
    for flags in ["Kl", "E$g", "Ksz", "Exh", "KEn$", "KEAn", "g"] {
        let expect = collect(redis.port, flags, ONE_SLOT, 0);
        for n in common::shard_counts() {
            let s = Server::start(n);
            let got = collect(s.port, flags, ONE_SLOT, expect.len());
            assert_eq!(got, expect, "flags {flags} --shards {n}");
        }
    }
}

/// Keys spread over every shard: each key's messages in Redis's order.
#[test]
fn per_key_order_across_shards() {
    let script: Vec<Vec<String>> = (0..40)
        .flat_map(|i| {
            let k = format!("k{i}");
            vec![
                vec!["set".into(), k.clone(), "1".into()],
                vec!["incr".into(), k.clone()],
                vec!["append".into(), k.clone(), "0".into()],
                vec!["expire".into(), k.clone(), "100".into()],
                vec!["rename".into(), k.clone(), format!("r{i}")],
                vec!["del".into(), format!("r{i}")],
                vec!["sadd".into(), format!("s{i}"), "a".into()],
                vec!["smove".into(), format!("s{i}"), format!("d{i}"), "a".into()],
            ]
            .into_iter()
            .chain(
                // STORE commands and LMOVE whose keys land on different shards.
                [
                    "sadd a{i} x y",
                    "sadd b{i} y z",
                    "sinterstore st{i} a{i} b{i}",
                    "sunionstore st{i} a{i} b{i}",
                    "sdiffstore st{i} a{i} a{i}",
                    "zadd za{i} 1 m 2 n",
                    "zunionstore zs{i} 1 za{i}",
                    "zrangestore zr{i} za{i} 0 0",
                    "zinterstore zs{i} 2 za{i} nosuch{i}",
                    "set ba{i} ab",
                    "bitop not bn{i} ba{i}",
                    "pfadd p{i} a",
                    "pfmerge pm{i} p{i}",
                    "geoadd g{i} 13.36 38.11 P",
                    "geosearchstore gs{i} g{i} fromlonlat 13 38 byradius 100 km",
                    "rpush l{i} a b",
                    "lmove l{i} m{i} left right",
                    "rpoplpush l{i} m{i}",
                ]
                .map(|c| {
                    c.replace("{i}", &i.to_string())
                        .split(' ')
                        .map(String::from)
                        .collect()
                }),
            )
            .collect::<Vec<_>>()
        })
        .collect();
    let steps: Vec<Vec<&str>> = script
        .iter()
        .map(|s| s.iter().map(|x| x.as_str()).collect())
        .collect();
    let steps: Vec<&[&str]> = steps.iter().map(|s| s.as_slice()).collect();
    let redis = Redis::start();
    for flags in ["KEA", "KEAn"] {
        let expect = collect(redis.port, flags, &steps, 0);
        per_key_compare(flags, &steps, &expect);
    }
}

fn per_key_compare(flags: &str, steps: &[&[&str]], expect: &[(String, String)]) {
    let by_key = |v: &[(String, String)]| {
        let mut m: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
        for x in v {
            m.entry(key_of(x)).or_default().push(x.clone());
        }
        m
    };
    for n in common::shard_counts() {
        let s = Server::start(n);
        let got = collect(s.port, flags, steps, expect.len());
        let (g, e) = (by_key(&got), by_key(expect));
        for (k, want) in &e {
            assert_eq!(g.get(k), Some(want), "{flags} --shards {n}: key {k}");
        }
        assert_eq!(got.len(), expect.len(), "{flags} --shards {n}");
    }
}

#[test]
fn evicted_events() {
    for n in common::shard_counts() {
        let s = Server::start(n);
        let mut c = s.client();
        let script: Vec<Vec<String>> = (0..50)
            .map(|i| vec!["set".into(), format!("k{i}"), "x".repeat(100)])
            .chain([
                vec![
                    "config".into(),
                    "set".into(),
                    "maxmemory-policy".into(),
                    "allkeys-random".into(),
                ],
                vec![
                    "config".into(),
                    "set".into(),
                    "maxmemory".into(),
                    "1".into(),
                ],
                vec!["set".into(), "trigger".into(), "1".into()],
            ])
            .collect();
        let steps: Vec<Vec<&str>> = script
            .iter()
            .map(|s| s.iter().map(|x| x.as_str()).collect())
            .collect();
        let steps: Vec<&[&str]> = steps.iter().map(|s| s.as_slice()).collect();
        let got = collect(s.port, "KEe", &steps, 2);
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg("0")
            .query(&mut c)
            .expect("config");
        assert!(!got.is_empty(), "--shards {n}: no evicted events");
        assert_eq!(got.len() % 2, 0, "{got:?}");
        for pair in got.chunks(2) {
            let key = pair[0].0.strip_prefix("__keyspace@0__:").expect("keyspace");
            assert_eq!(pair[0].1, "evicted");
            assert_eq!(
                pair[1],
                ("__keyevent@0__:evicted".to_string(), key.to_string())
            );
            let exists: i64 = redis::cmd("EXISTS").arg(key).query(&mut c).expect("exists");
            assert_eq!(exists, 0, "{key} evicted but still there");
        }
    }
}

#[test]
fn setting_as_redis() {
    let redis = Redis::start();
    let rc = redis::Client::open(format!("redis://127.0.0.1:{}/", redis.port)).expect("c");
    let mut r = rc.get_connection().expect("connect");
    let s = Server::start_with(1, &["--notify-keyspace-events", "Elg"]);
    let mut c = s.client();
    let get = |c: &mut redis::Connection| -> Vec<String> {
        redis::cmd("CONFIG")
            .arg("GET")
            .arg("notify-keyspace-events")
            .query(c)
            .expect("config get")
    };
    assert_eq!(get(&mut c)[1], "glE");
    for v in ["KEA", "KEAn", "Elgn$shzxetdmK", "", "nK", "AKE", "x$Km"] {
        let set = |c: &mut redis::Connection| -> String {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg(v)
                .query::<String>(c)
                .expect("config set")
        };
        assert_eq!(set(&mut c), set(&mut r));
        assert_eq!(get(&mut c), get(&mut r), "{v}");
    }
    for bad in ["KEAq", "kea", " "] {
        let err = |c: &mut redis::Connection| -> String {
            let e = redis::cmd("CONFIG")
                .arg("SET")
                .arg("notify-keyspace-events")
                .arg(bad)
                .query::<String>(c)
                .expect_err("bad flags");
            format!("{:?} {}", e.kind(), e.detail().unwrap_or(""))
        };
        let mine = err(&mut c);
        assert_eq!(mine, err(&mut r), "{bad}");
        assert!(mine.contains("Invalid event class character. Use 'Ag$lshzxeKEtmdn'."));
    }
    // A bad value at startup is refused, with Redis's reason.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args([
            "--port",
            &common::free_port().to_string(),
            "--notify-keyspace-events",
            "Q",
        ])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Invalid event class character"), "{text}");
}

/// Read commands over missing keys (and a few writes, which send no `keymiss`): with every
/// key in one hash tag, the same messages in the same order as Redis.
const READS: Script<'static> = &[
    &["get", "{t}a"],
    &["hget", "{t}h", "f"],
    &["mget", "{t}a", "{t}b"],
    &["exists", "{t}e1", "{t}e2"],
    &["type", "{t}t1"],
    &["ttl", "{t}t2"],
    &["pttl", "{t}t3"],
    &["expiretime", "{t}t4"],
    &["object", "encoding", "{t}o1"],
    &["set", "{t}s", "1"],
    &["get", "{t}s"],
    &["exists", "{t}s"],
    &["sunionstore", "{t}d", "{t}x", "{t}y"],
    &["sunion", "{t}x", "{t}y"],
    &["sinter", "{t}x", "{t}y"],
    &["sintercard", "2", "{t}x", "{t}y"],
    &["sdiff", "{t}x", "{t}y"],
    &["zunion", "2", "{t}x", "{t}y"],
    &["zinterstore", "{t}zd", "2", "{t}x", "{t}y"],
    &["incr", "{t}i"],
    &["lpush", "{t}l", "1"],
    &["getdel", "{t}gd"],
    &["getex", "{t}ge"],
    &["strlen", "{t}sl"],
    &["dump", "{t}dm"],
    &["llen", "{t}ll"],
    &["touch", "{t}tc", "{t}s"],
    &["expire", "{t}xp", "10"],
    &["zscore", "{t}z", "m"],
    &["rename", "{t}a", "{t}b"],
    &["pfcount", "{t}p1", "{t}p2"],
    &["smove", "{t}ss1", "{t}ss2", "m"],
    &["lmove", "{t}lm1", "{t}lm2", "left", "left"],
    &["copy", "{t}cp1", "{t}cp2"],
    &["del", "{t}dd"],
    &["set", "{t}s2", "v", "get"],
    &["getset", "{t}s3", "v"],
    &["lrange", "{t}lr", "0", "-1"],
    &["smembers", "{t}sm"],
    &["hgetall", "{t}hg"],
    &["lindex", "{t}li", "0"],
    &["hmget", "{t}hm", "a", "b"],
    &["bitcount", "{t}bc"],
    &["geopos", "{t}gp", "m"],
    &["lpush", "{t}srt", "1", "2"],
    &["sort", "{t}srt", "by", "{t}w_*", "get", "{t}g_*"],
    &["set", "{t}e", "v", "px", "20"],
    &["sleep", "300"],
    &["get", "{t}e"],
    &["set", "{t}last", "1"],
];

/// `m` (keymiss, not part of `A`): a read command's lookup of a missing key, as Redis 7.0.
#[test]
fn keymiss_same_as_redis() {
    let redis = Redis::start();
    for flags in ["KEm", "Em", "Km", "KEAm", "KEA"] {
        let expect = collect(redis.port, flags, READS, 0);
        let misses = expect
            .iter()
            .filter(|m| m.0.ends_with("keymiss") || m.1 == "keymiss");
        assert_eq!(
            misses.count() > 20,
            flags.contains('m'),
            "{flags} {expect:?}"
        );
        for n in common::shard_counts() {
            let s = Server::start(n);
            let got = collect(s.port, flags, READS, expect.len());
            assert_eq!(got, expect, "flags {flags} --shards {n}");
        }
    }
}

/// keymiss from missing keys spread over every shard (MGET, EXISTS, SUNION, COPY, SORT's
/// pattern keys across shards) and SORT's STORE on another shard (`sortstore`): each key's
/// messages as Redis sends them.
#[test]
fn keymiss_across_shards() {
    let script: Vec<Vec<String>> = (0..20)
        .flat_map(|i| {
            vec![
                vec!["get".into(), format!("g{i}")],
                vec!["mget".into(), format!("m{i}"), format!("n{i}")],
                vec!["exists".into(), format!("e{i}"), format!("f{i}")],
                vec!["sunion".into(), format!("u{i}"), format!("v{i}")],
                vec![
                    "zunionstore".into(),
                    format!("zd{i}"),
                    "2".into(),
                    format!("zu{i}"),
                    format!("zv{i}"),
                ],
                vec!["copy".into(), format!("c{i}"), format!("cd{i}")],
                vec!["set".into(), format!("g{i}"), "1".into()],
                vec!["get".into(), format!("g{i}")],
                vec!["rpush".into(), format!("l{i}"), "1".into(), "2".into()],
                vec![
                    "sort".into(),
                    format!("l{i}"),
                    "by".into(),
                    format!("w{i}_*"),
                    "get".into(),
                    format!("o{i}_*"),
                    "store".into(),
                    format!("sd{i}"),
                ],
            ]
        })
        .collect();
    let steps: Vec<Vec<&str>> = script
        .iter()
        .map(|s| s.iter().map(|x| x.as_str()).collect())
        .collect();
    let steps: Vec<&[&str]> = steps.iter().map(|s| s.as_slice()).collect();
    let redis = Redis::start();
    let expect = collect(redis.port, "KElm", &steps, 0);
    assert!(expect.len() > 300, "{}", expect.len());
    assert!(expect.iter().any(|m| m.1 == "sortstore"), "{expect:?}");
    let by_key = |v: &[(String, String)]| {
        let mut m: std::collections::BTreeMap<String, Vec<(String, String)>> = Default::default();
        for x in v {
            m.entry(key_of(x)).or_default().push(x.clone());
        }
        m
    };
    for n in common::shard_counts() {
        let s = Server::start(n);
        let got = collect(s.port, "KElm", &steps, expect.len());
        assert_eq!(got.len(), expect.len(), "--shards {n}");
        assert_eq!(by_key(&got), by_key(&expect), "--shards {n}");
    }
}

/// The lookups that send `keymiss` are the ones INFO counts: keyspace_hits and
/// keyspace_misses after each command as on Redis (EXISTS, TYPE, TTL, TOUCH, DUMP, COPY,
/// OBJECT and the set algebra count; INCR and the other writes do not).
#[test]
fn keyspace_hits_and_misses_as_redis() {
    let script: Script<'static> = &[
        &["exists", "{t}a", "{t}nx"],
        &["type", "{t}a"],
        &["type", "{t}nx"],
        &["ttl", "{t}nx"],
        &["pttl", "{t}a"],
        &["touch", "{t}a", "{t}nx"],
        &["dump", "{t}nx"],
        &["object", "encoding", "{t}nx"],
        &["object", "encoding", "{t}a"],
        &["copy", "{t}a", "{t}b"],
        &["copy", "{t}nx", "{t}b2"],
        &["sunion", "{t}a2", "{t}nx"],
        &["zunionstore", "{t}zd", "1", "{t}nx"],
        &["incr", "{t}i"],
        &["incrbyfloat", "{t}f", "1"],
        &["get", "{t}a"],
        &["mget", "{t}a", "{t}nx"],
    ];
    let stats = |port: u16| -> Vec<(String, String)> {
        let url = format!("redis://127.0.0.1:{port}/");
        let mut c = redis::Client::open(url)
            .expect("client")
            .get_connection()
            .expect("connect");
        let _: () = redis::cmd("FLUSHALL").query(&mut c).expect("flushall");
        let _: () = redis::cmd("SET")
            .arg("{t}a")
            .arg("1")
            .query(&mut c)
            .expect("set");
        let _: () = redis::cmd("SADD")
            .arg("{t}a2")
            .arg("x")
            .query(&mut c)
            .expect("sadd");
        let mut out = Vec::new();
        for step in script {
            let _: () = redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query(&mut c)
                .expect("resetstat");
            let mut cmd = redis::cmd(step[0]);
            for a in &step[1..] {
                cmd.arg(*a);
            }
            let _: redis::RedisResult<redis::Value> = cmd.query(&mut c);
            let info: String = redis::cmd("INFO").arg("stats").query(&mut c).expect("info");
            let pick = |f: &str| {
                info.lines()
                    .find_map(|l| l.strip_prefix(f))
                    .unwrap_or("?")
                    .trim()
                    .to_string()
            };
            out.push((
                step.join(" "),
                format!("{}/{}", pick("keyspace_hits:"), pick("keyspace_misses:")),
            ));
        }
        out
    };
    let redis = Redis::start();
    let expect = stats(redis.port);
    for n in common::shard_counts() {
        let s = Server::start(n);
        assert_eq!(stats(s.port), expect, "--shards {n}");
    }
}
