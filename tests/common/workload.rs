//! A seeded random workload over every write family (strings with expiry, hashes, lists with
//! blocking pops, sets with SPOP, sorted sets, cross-shard moves and STORE forms, MULTI/EXEC,
//! scripts, db 1): shared by the journal replay test and the live replication test.

#![allow(dead_code)]

use redis::Value;

pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len() as u64) as usize]
    }
}

/// Key names spread over every shard; a few share a hash tag so single-shard multi-key
/// commands happen too.
pub fn key(r: &mut Rng, kind: &str) -> String {
    let kind = match kind {
        "any" => ["s", "h", "l", "z", "q"][r.below(5) as usize],
        k => k,
    };
    let n = r.below(12);
    if r.below(4) == 0 {
        format!("{{t}}{kind}{n}")
    } else {
        format!("{kind}{n}")
    }
}

/// One random command (as strings) from the write families.
pub fn random_command(r: &mut Rng) -> Vec<String> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let val = format!("v{}", r.below(1000));
    match r.below(47) {
        0 => vec!["SET".into(), key(r, "s"), val],
        1 => s(&["SET", &key(r, "s"), &val, "EX", "1000"]),
        // Short TTLs only on `x` keys, which nothing copies into a longer-lived key: a
        // replay runs after they are gone, when a command copying from one would fail.
        2 => s(&[
            "SET",
            &key(r, "x"),
            &val,
            "PX",
            &(5 + r.below(40)).to_string(),
        ]),
        3 => s(&["SET", &key(r, "s"), &val, "NX", "GET"]),
        4 => s(&["SETEX", &key(r, "s"), "500", &val]),
        5 => s(&["INCRBYFLOAT", &key(r, "n"), "1.5"]),
        6 => s(&["INCR", &key(r, "n")]),
        7 => s(&["APPEND", &key(r, "s"), &val]),
        8 => s(&["GETDEL", &key(r, "s")]),
        9 => s(&["GETEX", &key(r, "s"), r.pick(&["EX", "PERSIST"]), "300"])
            .into_iter()
            .take(if r.below(2) == 0 { 3 } else { 4 })
            .collect(),
        10 => s(&["EXPIRE", &key(r, "any"), "700"]),
        11 => s(&["PEXPIRE", &key(r, "x"), &(5 + r.below(30)).to_string()]),
        12 => s(&["EXPIRE", &key(r, "s"), "-1"]),
        13 => s(&["PERSIST", &key(r, "any")]),
        14 => s(&["HSET", &key(r, "h"), &format!("f{}", r.below(8)), &val]),
        15 => s(&[
            "HINCRBYFLOAT",
            &key(r, "h"),
            &format!("g{}", r.below(3)),
            "0.25",
        ]),
        16 => s(&["HDEL", &key(r, "h"), &format!("f{}", r.below(8))]),
        17 => s(&["LPUSH", &key(r, "l"), &val, "x"]),
        18 => s(&["RPUSH", &key(r, "l"), &val]),
        19 => s(&["LPOP", &key(r, "l")]),
        20 => s(&["RPOP", &key(r, "l"), "2"]),
        21 => s(&["LMOVE", &key(r, "l"), &key(r, "l"), "LEFT", "RIGHT"]),
        22 => s(&["BLPOP", &key(r, "l"), &key(r, "l"), "0.01"]),
        23 => s(&["LTRIM", &key(r, "l"), "0", "4"]),
        24 => s(&[
            "SADD",
            &key(r, "q"),
            &format!("m{}", r.below(20)),
            &format!("m{}", r.below(20)),
        ]),
        25 => s(&["SREM", &key(r, "q"), &format!("m{}", r.below(20))]),
        26 => s(&["SPOP", &key(r, "q"), "2"]),
        27 => s(&[
            "SMOVE",
            &key(r, "q"),
            &key(r, "q"),
            &format!("m{}", r.below(20)),
        ]),
        28 => s(&["SUNIONSTORE", &key(r, "q"), &key(r, "q"), &key(r, "q")]),
        29 => s(&[
            "ZADD",
            &key(r, "z"),
            &r.below(100).to_string(),
            &format!("m{}", r.below(20)),
        ]),
        30 => s(&["ZINCRBY", &key(r, "z"), "2.5", &format!("m{}", r.below(20))]),
        31 => s(&["ZPOPMIN", &key(r, "z")]),
        32 => s(&["BZPOPMAX", &key(r, "z"), "0.01"]),
        33 => s(&["ZUNIONSTORE", &key(r, "z"), "2", &key(r, "z"), &key(r, "z")]),
        34 => {
            let mut v = s(&["MSET"]);
            for _ in 0..3 {
                v.push(key(r, "s"));
                v.push(format!("m{}", r.below(100)));
            }
            v
        }
        35 => s(&["DEL", &key(r, "s"), &key(r, "h"), &key(r, "l")]),
        36 => s(&["UNLINK", &key(r, "q"), &key(r, "z")]),
        37 => s(&["RENAME", &key(r, "s"), &key(r, "s")]),
        38 => s(&["COPY", &key(r, "h"), &key(r, "h"), "REPLACE"]),
        39 => s(&["MOVE", &key(r, "s"), "1"]),
        40 => s(&["PFADD", &key(r, "p"), &val, "a", "b"]),
        41 => s(&["SETBIT", &key(r, "b"), &r.below(200).to_string(), "1"]),
        42 => s(&[
            "EVAL",
            "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])",
            "2",
            "{e}a",
            "{e}b",
            &val,
        ]),
        43 => s(&["SINTERSTORE", &key(r, "q"), &key(r, "q"), &key(r, "q")]),
        44 => s(&["ZRANGESTORE", &key(r, "z"), &key(r, "z"), "0", "-1"]),
        45 => s(&["APPEND", &key(r, "x"), "z"]),
        _ => s(&["SETRANGE", &key(r, "s"), &r.below(10).to_string(), "zz"]),
    }
}

pub fn run(c: &mut redis::Connection, argv: &[String]) {
    let mut cmd = redis::cmd(&argv[0]);
    for a in &argv[1..] {
        cmd.arg(a);
    }
    // WRONGTYPE and friends are part of the workload.
    let _: redis::RedisResult<Value> = cmd.query(c);
}

/// One client's share of the workload: random commands, some in MULTI/EXEC, some in db 1.
pub fn client_workload(port: u16, seed: u64, ops: usize) {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut r = Rng(seed);
    let mut i = 0;
    while i < ops {
        match r.below(40) {
            0 => {
                let n = 2 + r.below(4) as usize;
                let _: () = redis::cmd("MULTI").query(&mut c).unwrap();
                for _ in 0..n {
                    run(&mut c, &random_command(&mut r));
                }
                let _: redis::RedisResult<Value> = redis::cmd("EXEC").query(&mut c);
                i += n;
            }
            1 => {
                let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
                for _ in 0..5 {
                    run(&mut c, &random_command(&mut r));
                }
                let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
                i += 5;
            }
            _ => {
                run(&mut c, &random_command(&mut r));
                i += 1;
            }
        }
    }
}
