//! maxmemory-policy eviction against the real binary, for every shard count in
//! `common::shard_counts()`: memory stays near the limit, the policies pick the keys they
//! should (statistically, with wide margins), volatile policies never touch persistent keys
//! and answer OOM once nothing volatile is left, and the CONFIG / OBJECT surface matches
//! redis-server 7.0.15.

mod common;

use common::info;

use std::collections::HashMap;
use std::time::Duration;

use redis::Connection;

fn info_u64(c: &mut Connection, section: &str, field: &str) -> u64 {
    info(c, section)
        .get(field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
}

fn config_set(c: &mut Connection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query(c)
        .unwrap();
}

/// Writes `keys` with `value` (and `EX ttl` when given) in pipelines of 200.
fn write(c: &mut Connection, keys: &[String], value: &str, ttl: Option<u64>) {
    for chunk in keys.chunks(200) {
        let mut p = redis::pipe();
        for k in chunk {
            let cmd = p.cmd("SET").arg(k).arg(value);
            if let Some(t) = ttl {
                cmd.arg("EX").arg(t);
            }
            cmd.ignore();
        }
        let _: () = p.query(c).unwrap();
    }
}

/// How many of `keys` exist.
fn existing(c: &mut Connection, keys: &[String]) -> usize {
    let mut n = 0;
    for chunk in keys.chunks(500) {
        let got: usize = redis::cmd("EXISTS").arg(chunk).query(c).unwrap();
        n += got;
    }
    n
}

/// How many keys of the server's db 0 live on each of `n` shards.
fn keys_per_shard(c: &mut Connection, n: usize) -> Vec<usize> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(c).unwrap();
    let mut alive = vec![0usize; n];
    for k in keys {
        alive[shardis::shard::route::shard_of(k.as_bytes(), n)] += 1;
    }
    alive
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{{{}}}{prefix}:{i}", i % 97))
        .collect()
}

/// Writes fresh keys in batches until INFO says `target` keys were evicted (or a cap),
/// reading `hot` after every batch.
fn write_until_evicted(c: &mut Connection, target: u64, value: &str, hot: &[String]) -> u64 {
    let mut batch = 0;
    loop {
        for chunk in hot.chunks(500) {
            let _: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(c).unwrap();
        }
        let evicted = info_u64(c, "stats", "evicted_keys");
        if evicted >= target || batch >= 1000 {
            return evicted;
        }
        // Small batches: keys in flight to their shards are heap too, and whichever shard
        // checks memory meanwhile pays for them with evictions.
        let keys: Vec<String> = (0..100)
            .map(|i| format!("{{{}}}new:{batch}:{i}", i % 97))
            .collect();
        write(c, &keys, value, None);
        batch += 1;
    }
}

/// allkeys-lru: writing far beyond maxmemory keeps used_memory near the limit, evicts, and
/// evicts the keys nobody read (idle for over a second) before the ones just read.
#[test]
fn allkeys_lru_stays_near_the_limit_and_keeps_recently_read_keys() {
    for n in common::shard_counts() {
        // Ten samples per round, as Redis advises for a closer approximation: with the
        // default five, a round whose sample holds no idle key evicts the oldest of what it
        // drew, and when the one-second LRU clock ticks between a batch's read of the hot
        // set and its writes, that is a hot key (it then lost 20-60 of the 1000 in one run of
        // three, in Redis's scheme as in ours).
        let s = common::Server::start_with(
            n,
            &[
                "--maxmemory-policy",
                "allkeys-lru",
                "--maxmemory-samples",
                "10",
            ],
        );
        let mut c = s.client();
        let base = info_u64(&mut c, "memory", "used_memory");
        let max = base + (3 << 20);
        config_set(&mut c, "maxmemory", &max.to_string());
        let value = "v".repeat(200);
        let (cold, hot) = (names("cold", 6000), names("hot", 1000));
        write(&mut c, &cold, &value, None);
        write(&mut c, &hot, &value, None);
        assert_eq!(
            info_u64(&mut c, "stats", "evicted_keys"),
            0,
            "under the limit"
        );
        // The LRU clock has one-second resolution (as Redis's): let it tick, then read the
        // hot set so only the cold keys are idle.
        std::thread::sleep(Duration::from_millis(1100));
        for _ in 0..3 {
            for chunk in hot.chunks(500) {
                let _: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
            }
        }
        // The hot set stays in use while the new keys arrive (otherwise it would rightly be
        // the next oldest after the cold keys).
        let evicted = write_until_evicted(&mut c, 4500, &value, &hot);
        assert!(evicted >= 4500, "shards={n}: only {evicted} evicted");
        let used = info_u64(&mut c, "memory", "used_memory");
        assert!(
            used <= max + (1 << 20) && used >= max / 2,
            "shards={n}: used_memory {used} not near maxmemory {max}"
        );
        let hot_alive = existing(&mut c, &hot);
        let cold_alive = existing(&mut c, &cold);
        assert!(
            hot_alive >= 900,
            "shards={n}: only {hot_alive}/1000 hot keys survived (cold alive {cold_alive})"
        );
        assert!(
            cold_alive <= 2500,
            "shards={n}: {cold_alive}/6000 cold keys survived"
        );
        // CONFIG RESETSTAT clears the counter, as Redis.
        let _: () = redis::cmd("CONFIG").arg("RESETSTAT").query(&mut c).unwrap();
        assert_eq!(info_u64(&mut c, "stats", "evicted_keys"), 0);
        // Every shard pays its share. Memory is process-wide, so the shard that happens to
        // check (the connection's, before every command) must not evict for everyone: it
        // would run out of idle keys and drop recently read ones while the others kept
        // theirs. Keys alive per shard stay about even (the new keys hash like the old).
        let per_shard = keys_per_shard(&mut c, n);
        let (lo, hi) = (per_shard.iter().min(), per_shard.iter().max());
        let (lo, hi) = (*lo.unwrap(), *hi.unwrap());
        assert!(
            lo * 5 >= hi * 4,
            "shards={n}: keys alive per shard {per_shard:?}"
        );
    }
}

/// allkeys-lfu: keys read often survive; OBJECT FREQ shows the counters.
#[test]
fn allkeys_lfu_keeps_frequently_read_keys() {
    for n in common::shard_counts() {
        let s = common::Server::start_with(n, &["--maxmemory-policy", "allkeys-lfu"]);
        let mut c = s.client();
        // No decay: a minute boundary between the reads and OBJECT FREQ would otherwise take
        // one off every counter (Redis decays by whole minutes elapsed, too).
        config_set(&mut c, "lfu-decay-time", "0");
        let base = info_u64(&mut c, "memory", "used_memory");
        let max = base + (3 << 20);
        config_set(&mut c, "maxmemory", &max.to_string());
        let value = "v".repeat(200);
        let (cold, hot) = (names("cold", 6000), names("hot", 1000));
        write(&mut c, &cold, &value, None);
        write(&mut c, &hot, &value, None);
        for _ in 0..10 {
            for chunk in hot.chunks(500) {
                let _: Vec<Option<String>> = redis::cmd("MGET").arg(chunk).query(&mut c).unwrap();
            }
        }
        let f: i64 = redis::cmd("OBJECT")
            .arg("FREQ")
            .arg(&cold[0])
            .query(&mut c)
            .unwrap();
        assert_eq!(f, 5, "a new key starts at LFU_INIT_VAL");
        let f: i64 = redis::cmd("OBJECT")
            .arg("FREQ")
            .arg(&hot[0])
            .query(&mut c)
            .unwrap();
        assert!(f >= 6, "read ten times: {f}");
        // New keys tie with the cold ones (counter 5): both go, the hot ones stay.
        let evicted = write_until_evicted(&mut c, 4000, &value, &[]);
        assert!(evicted >= 4000, "shards={n}: only {evicted} evicted");
        let hot_alive = existing(&mut c, &hot);
        let cold_alive = existing(&mut c, &cold);
        assert!(
            hot_alive >= 900,
            "shards={n}: only {hot_alive}/1000 hot keys survived (cold alive {cold_alive})"
        );
        assert!(
            cold_alive <= 4500,
            "shards={n}: {cold_alive}/6000 cold keys survived"
        );
    }
}

/// volatile-lru never evicts a key without a TTL; once no volatile key is left, commands
/// that may grow memory get Redis's OOM error (and the persistent keys are all there).
#[test]
fn volatile_lru_evicts_only_ttl_keys_then_refuses() {
    for n in common::shard_counts() {
        let s = common::Server::start_with(n, &["--maxmemory-policy", "volatile-lru"]);
        let mut c = s.client();
        let value = "v".repeat(200);
        let (persistent, volatile) = (names("p", 2000), names("t", 2000));
        write(&mut c, &persistent, &value, None);
        write(&mut c, &volatile, &value, Some(3600));
        // Shards publish their evictable counts at least every 100 ms.
        std::thread::sleep(Duration::from_millis(250));
        let used = info_u64(&mut c, "memory", "used_memory");
        config_set(&mut c, "maxmemory", &(used + (256 << 10)).to_string());
        let mut written = persistent.clone();
        let mut oom = None;
        for batch in 0..100 {
            let keys: Vec<String> = (0..200)
                .map(|i| format!("{{{}}}more:{batch}:{i}", i % 97))
                .collect();
            let mut p = redis::pipe();
            for k in &keys {
                p.cmd("SET").arg(k).arg(&value).ignore();
            }
            match p.query::<()>(&mut c) {
                Ok(()) => written.extend(keys),
                Err(e) => {
                    oom = Some(e);
                    break;
                }
            }
        }
        let e = oom.unwrap_or_else(|| panic!("shards={n}: never refused"));
        assert_eq!(e.code(), Some("OOM"), "{e}");
        assert!(
            e.to_string()
                .contains("command not allowed when used memory > 'maxmemory'."),
            "{e}"
        );
        assert_eq!(
            existing(&mut c, &written),
            written.len(),
            "shards={n}: a key without TTL was evicted"
        );
        assert_eq!(existing(&mut c, &volatile), 0, "shards={n}");
        assert_eq!(info_u64(&mut c, "stats", "evicted_keys"), 2000);
        // Still refusing: more writes meet the same error.
        let mut p = redis::pipe();
        for i in 0..200 {
            p.cmd("SET").arg(format!("again:{i}")).arg(&value).ignore();
        }
        let err = p.query::<()>(&mut c).unwrap_err();
        assert_eq!(err.code(), Some("OOM"));
        assert_eq!(info_u64(&mut c, "stats", "evicted_keys"), 2000);
        // Reads and deletes still work.
        let v: String = redis::cmd("GET").arg(&persistent[0]).query(&mut c).unwrap();
        assert_eq!(v, value);
    }
}

/// volatile-ttl evicts the keys that expire soonest first.
#[test]
fn volatile_ttl_evicts_the_soonest_expiring_first() {
    for n in common::shard_counts() {
        let s = common::Server::start_with(n, &["--maxmemory-policy", "volatile-ttl"]);
        let mut c = s.client();
        let value = "v".repeat(200);
        let keys = names("ttl", 3000);
        // Key i expires after 10000 + 10 i seconds.
        for (i, chunk) in keys.chunks(100).enumerate() {
            let mut p = redis::pipe();
            for (j, k) in chunk.iter().enumerate() {
                let ttl = 10_000 + 10 * (i * 100 + j);
                p.cmd("SET").arg(k).arg(&value).arg("EX").arg(ttl).ignore();
            }
            let _: () = p.query(&mut c).unwrap();
        }
        std::thread::sleep(Duration::from_millis(250));
        let used = info_u64(&mut c, "memory", "used_memory");
        config_set(&mut c, "maxmemory", &(used + (1 << 20)).to_string());
        let evicted = write_until_evicted(&mut c, 600, &value, &[]);
        assert!(evicted >= 600, "shards={n}: only {evicted} evicted");
        // Each shard takes its own soonest first; how many each shard evicts depends on when
        // it checks memory (and a shard may have to give up more than half of its keys), so
        // the order is judged within each shard. A shard that lost at most half of its keys
        // must have lost its soonest third far more than its latest third; one that lost
        // more must have emptied (nearly) all of its soonest third.
        let (mut soonest_gone, mut latest_gone, mut all_soonest_gone) = (0, 0, 0);
        for shard in 0..n {
            let mine: Vec<String> = keys
                .iter()
                .filter(|k| shardis::shard::route::shard_of(k.as_bytes(), n) == shard)
                .cloned()
                .collect();
            let third = mine.len() / 3;
            let gone = mine.len() - existing(&mut c, &mine);
            let first = third - existing(&mut c, &mine[..third]);
            let last = third - existing(&mut c, &mine[mine.len() - third..]);
            eprintln!(
                "shards={n} shard {shard}: {gone} of {} gone, soonest third lost {first}, latest third lost {last}",
                mine.len()
            );
            all_soonest_gone += first;
            if gone * 2 <= mine.len() {
                soonest_gone += first;
                latest_gone += last;
            } else {
                assert!(
                    first * 10 >= third * 9,
                    "shards={n} shard {shard}: lost {gone} of {} keys but only {first} of its soonest {third}",
                    mine.len()
                );
            }
        }
        assert!(
            all_soonest_gone >= 300 && latest_gone * 5 <= soonest_gone,
            "shards={n}: evicted {soonest_gone} of the soonest thirds, {latest_gone} of the latest (shards that kept half their keys)"
        );
    }
}

/// CONFIG SET/GET of the eviction parameters with Redis's errors, the --maxmemory-policy
/// flag, and OBJECT FREQ / IDLETIME under LRU and LFU policies (texts of redis-server 7.0.15).
#[test]
fn eviction_config_and_object_freq() {
    let not_lfu = "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";
    let is_lfu = "An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.";
    for n in common::shard_counts() {
        let s = common::Server::start_with(
            n,
            &[
                "--maxmemory-policy",
                "volatile-ttl",
                "--maxmemory-samples",
                "7",
            ],
        );
        let mut c = s.client();
        let got: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-*")
            .query(&mut c)
            .unwrap();
        let got: HashMap<_, _> = got
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect();
        assert_eq!(
            got.get("maxmemory-policy").map(|s| s.as_str()),
            Some("volatile-ttl")
        );
        assert_eq!(got.get("maxmemory-samples").map(|s| s.as_str()), Some("7"));
        let e = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("bogus")
            .query::<()>(&mut c)
            .unwrap_err();
        assert_eq!(
            e.detail(),
            Some("CONFIG SET failed (possibly related to argument 'maxmemory-policy') - argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction"),
        );
        let e = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-samples")
            .arg("0")
            .query::<()>(&mut c)
            .unwrap_err();
        assert_eq!(
            e.detail(),
            Some("CONFIG SET failed (possibly related to argument 'maxmemory-samples') - argument must be between 1 and 2147483647 inclusive"),
        );
        let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
        let e = redis::cmd("OBJECT")
            .arg("FREQ")
            .arg("k")
            .query::<i64>(&mut c)
            .unwrap_err();
        assert_eq!(e.detail(), Some(not_lfu));
        let idle: i64 = redis::cmd("OBJECT")
            .arg("IDLETIME")
            .arg("k")
            .query(&mut c)
            .unwrap();
        assert!((0..3).contains(&idle));
        config_set(&mut c, "maxmemory-policy", "ALLKEYS-LFU");
        let got: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query(&mut c)
            .unwrap();
        assert_eq!(got[1], "allkeys-lfu");
        // No decay across a minute boundary mid-loop (see the allkeys-lfu test).
        config_set(&mut c, "lfu-decay-time", "0");
        // Every shard applies a new policy at its next loop pass; give them a moment.
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..20 {
            let k = format!("f{i}");
            let _: () = redis::cmd("SET").arg(&k).arg("v").query(&mut c).unwrap();
            let f: i64 = redis::cmd("OBJECT")
                .arg("FREQ")
                .arg(&k)
                .query(&mut c)
                .unwrap();
            assert_eq!(f, 5, "shards={n}: new key {k}");
            let _: String = redis::cmd("GET").arg(&k).query(&mut c).unwrap();
            let f: i64 = redis::cmd("OBJECT")
                .arg("FREQ")
                .arg(&k)
                .query(&mut c)
                .unwrap();
            assert_eq!(f, 6, "shards={n}: the first read always counts");
            let e = redis::cmd("OBJECT")
                .arg("IDLETIME")
                .arg(&k)
                .query::<i64>(&mut c)
                .unwrap_err();
            assert_eq!(e.detail(), Some(is_lfu));
        }
        let none: Option<i64> = redis::cmd("OBJECT")
            .arg("FREQ")
            .arg("nokey")
            .query(&mut c)
            .unwrap();
        assert_eq!(none, None);
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardis"))
        .args(["--maxmemory-policy", "lru", "--port", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}
