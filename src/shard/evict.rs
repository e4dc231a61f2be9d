//! `maxmemory-policy` eviction for one shard (Redis's evict.c idea, our own code). Runs on
//! the shard's own thread and deletes only keys of its own keyspace (all its databases).
//!
//! The scheme:
//! - Used memory is process-wide (`runtime::alloc::used()`), but a deleted small key frees a
//!   slot in its arena page, not heap. So the figure compared with `maxmemory` is the heap in
//!   use minus every shard's spare arena bytes (slots new entries reuse without allocating)
//!   and minus its transient heap (connection buffers and worker scratch: not data, and
//!   given back by the worker on its own, so evicting keys for it would delete data for
//!   nothing; Redis leaves replication buffers out the same way); each shard publishes
//!   those figures and its count of evictable keys in `engine::shared::ShardMem` (see
//!   `engine/mod.rs`, `Engine::memory_check`).
//! - Before a command runs on a shard (inline on the connection's shard, or from a batch on
//!   the key's owner), if that figure is over the limit the shard evicts its own keys, one per
//!   round, until it is under the limit or `MAX_KEYS_PER_CALL` keys are gone: one command
//!   never pays for more than that (a few tens of µs), and the next commands continue.
//!   Redis bounds the same loop by time instead.
//! - LRU/LFU/TTL rounds sample `maxmemory-samples` keys (at most `MAX_SAMPLES`) from each
//!   non-empty database (all keys, or the TTL list for volatile-*), feed a pool of the
//!   `POOL_SIZE` best candidates kept across calls, and evict the best one still valid: a
//!   pool entry names an arena slot, so it is checked to still be in the table with the same
//!   score (a key moved, deleted, or read since is skipped). Random policies pick one random
//!   key per round, databases in turn.
//! - Every shard pays its share: a shard evicts only while it holds about as many evictable
//!   keys as the fullest other shard (the connection's shard checks before every command, so
//!   otherwise it alone would evict, run out of idle keys and drop recently used ones while
//!   the others kept their idle keys). A shard with fewer, or none, does not refuse a write
//!   while another shard publishes evictable keys: it asks the fuller shards to evict (one
//!   request in flight per shard) and lets the command run, as Redis lets commands run while
//!   eviction is still in progress. Only when no shard has anything to evict do DENYOOM
//!   commands get the OOM error.
//!
//! LFU keeps Redis's layout in the entry's 24 access bits: 16 bits of decay minutes, 8 bits
//! of logarithmic counter (`lfu_*` below).

use super::arena::Loc;
use super::Shard;

/// Keys one call evicts at most (the per-command bound).
pub const MAX_KEYS_PER_CALL: usize = 256;
/// Keys sampled per database and round at most, whatever `maxmemory-samples` says.
pub const MAX_SAMPLES: usize = 64;
/// Candidates kept between rounds (Redis's EVPOOL_SIZE).
pub const POOL_SIZE: usize = 16;
/// A new key's LFU counter (Redis's LFU_INIT_VAL).
pub const LFU_INIT_VAL: u8 = 5;

/// The eviction policy (`maxmemory-policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    NoEviction,
    AllkeysLru,
    VolatileLru,
    AllkeysLfu,
    VolatileLfu,
    AllkeysRandom,
    VolatileRandom,
    VolatileTtl,
}

const NAMES: [(&str, Policy); 8] = [
    ("noeviction", Policy::NoEviction),
    ("allkeys-lru", Policy::AllkeysLru),
    ("volatile-lru", Policy::VolatileLru),
    ("allkeys-lfu", Policy::AllkeysLfu),
    ("volatile-lfu", Policy::VolatileLfu),
    ("allkeys-random", Policy::AllkeysRandom),
    ("volatile-random", Policy::VolatileRandom),
    ("volatile-ttl", Policy::VolatileTtl),
];

impl Policy {
    /// Parses a policy name (any case).
    pub fn parse(s: &str) -> Option<Policy> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|&(_, p)| p)
    }

    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("noeviction", |(n, _)| n)
    }

    /// The index stored in the `Tunables` atomic.
    pub fn code(self) -> u64 {
        NAMES.iter().position(|(_, p)| *p == self).unwrap_or(0) as u64
    }

    pub fn from_code(c: u64) -> Policy {
        NAMES
            .get(c as usize)
            .map_or(Policy::NoEviction, |&(_, p)| p)
    }

    pub fn is_lfu(self) -> bool {
        matches!(self, Policy::AllkeysLfu | Policy::VolatileLfu)
    }

    /// Only keys with a TTL are candidates.
    pub fn volatile(self) -> bool {
        matches!(
            self,
            Policy::VolatileLru
                | Policy::VolatileLfu
                | Policy::VolatileRandom
                | Policy::VolatileTtl
        )
    }
}

/// How a database keeps the 24 access bits of its entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Access {
    /// Seconds clock of the last access (Redis's LRU clock, 1 s resolution).
    #[default]
    Lru,
    /// Decay minutes and logarithmic counter.
    Lfu { log_factor: u32, decay_time: u32 },
}

/// A shard's view of the eviction settings, refreshed from `Tunables` once per loop pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictCfg {
    pub policy: Policy,
    pub samples: usize,
    pub lfu_log_factor: u32,
    pub lfu_decay_time: u32,
}

impl Default for EvictCfg {
    fn default() -> Self {
        EvictCfg {
            policy: Policy::NoEviction,
            samples: 5,
            lfu_log_factor: 10,
            lfu_decay_time: 1,
        }
    }
}

impl EvictCfg {
    pub fn access(&self) -> Access {
        if self.policy.is_lfu() {
            Access::Lfu {
                log_factor: self.lfu_log_factor,
                decay_time: self.lfu_decay_time,
            }
        } else {
            Access::Lru
        }
    }
}

// ---- LFU (Redis's LFULogIncr / LFUDecrAndReturn) ----

fn lfu_minutes(now_ms: u64) -> u32 {
    ((now_ms / 60_000) & 0xFFFF) as u32
}

/// The 24 bits of a new key under LFU: this minute, counter `LFU_INIT_VAL`.
pub fn lfu_init(now_ms: u64) -> u32 {
    lfu_minutes(now_ms) << 8 | u32::from(LFU_INIT_VAL)
}

/// The counter of `bits` after decaying one step per `decay_time` minutes since its last
/// access (what OBJECT FREQ shows and eviction compares).
pub fn lfu_decayed(bits: u32, now_ms: u64, decay_time: u32) -> u8 {
    let ldt = (bits >> 8) & 0xFFFF;
    let counter = (bits & 0xFF) as u8;
    let now = lfu_minutes(now_ms);
    let elapsed = if now >= ldt {
        now - ldt
    } else {
        65535 - ldt + now
    };
    let periods = elapsed.checked_div(decay_time).unwrap_or(0);
    counter.saturating_sub(periods.min(255) as u8)
}

/// Logarithmic increment: the higher the counter, the less likely; `r` is uniform in [0, 1).
pub fn lfu_log_incr(counter: u8, log_factor: u32, r: f64) -> u8 {
    if counter == 255 {
        return 255;
    }
    let base = f64::from(counter.saturating_sub(LFU_INIT_VAL));
    let p = 1.0 / (base * f64::from(log_factor) + 1.0);
    if r < p {
        counter + 1
    } else {
        counter
    }
}

/// The 24 bits after one access: decay, then increment, stamped with this minute.
pub fn lfu_touch(bits: u32, now_ms: u64, log_factor: u32, decay_time: u32, r: f64) -> u32 {
    let c = lfu_log_incr(lfu_decayed(bits, now_ms, decay_time), log_factor, r);
    lfu_minutes(now_ms) << 8 | u32::from(c)
}

// ---- the candidate pool ----

/// One eviction candidate: higher `score` is evicted first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cand {
    pub score: u64,
    pub db: usize,
    pub loc: Loc,
}

/// The best candidates seen so far, ascending by score (the best is last).
#[derive(Default, Debug)]
pub struct Pool {
    entries: Vec<Cand>,
}

impl Pool {
    /// Offers a candidate: kept if the pool has room or it beats the worst one.
    pub fn offer(&mut self, c: Cand) {
        if let Some(i) = self
            .entries
            .iter()
            .position(|e| e.db == c.db && e.loc == c.loc)
        {
            self.entries.remove(i);
        }
        if self.entries.len() >= POOL_SIZE {
            match self.entries.first() {
                Some(worst) if worst.score < c.score => {
                    self.entries.remove(0);
                }
                _ => return,
            }
        }
        let at = self.entries.partition_point(|e| e.score <= c.score);
        self.entries.insert(at, c);
    }

    /// Takes the best candidate.
    pub fn pop(&mut self) -> Option<Cand> {
        self.entries.pop()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// What one eviction call achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Under the limit (possibly after evicting).
    Done,
    /// Evicted `MAX_KEYS_PER_CALL` keys and still over: the next command continues.
    Capped,
    /// Still over and nothing of this shard can be evicted under the policy.
    Nothing,
}

/// Per-shard eviction state.
#[derive(Default, Debug)]
pub struct State {
    pub cfg: EvictCfg,
    pub pool: Pool,
    /// INFO `evicted_keys` of this shard.
    pub evicted_keys: u64,
    /// Where random policies look next.
    next_db: usize,
    scratch: Vec<Loc>,
}

/// Keys of `shard` that the policy may evict (what it publishes to the other shards).
pub fn candidates(shard: &Shard) -> u64 {
    let p = shard.evict.cfg.policy;
    match p {
        Policy::NoEviction => 0,
        _ if p.volatile() => shard.dbs.iter().map(|d| d.expires_len() as u64).sum(),
        _ => shard.keys() as u64,
    }
}

/// Evicts keys of `shard` while `over(shard)` says memory is over the limit, at most
/// `MAX_KEYS_PER_CALL` of them. Every eviction is a delete: watchers of the key are told.
pub fn evict(shard: &mut Shard, mut over: impl FnMut(&Shard) -> bool) -> Outcome {
    let policy = shard.evict.cfg.policy;
    if !over(shard) {
        return Outcome::Done;
    }
    if policy == Policy::NoEviction {
        return Outcome::Nothing;
    }
    for _ in 0..MAX_KEYS_PER_CALL {
        let Some((db, loc)) = pick(shard) else {
            return Outcome::Nothing;
        };
        let Some(d) = shard.dbs.get_mut(db) else {
            return Outcome::Nothing;
        };
        if let Some(key) = d.evict_at(loc) {
            shard.evict.evicted_keys += 1;
            if !shard.watches.is_empty() {
                shard.watches.touch(db, &key);
            }
        }
        if !over(shard) {
            return Outcome::Done;
        }
    }
    Outcome::Capped
}

/// The next key to evict under the shard's policy, or None when nothing qualifies.
fn pick(shard: &mut Shard) -> Option<(usize, Loc)> {
    let cfg = shard.evict.cfg;
    let volatile = cfg.policy.volatile();
    let now = shard.now_ms;
    let ndbs = shard.dbs.len();
    if matches!(cfg.policy, Policy::AllkeysRandom | Policy::VolatileRandom) {
        for k in 0..ndbs {
            let db = (shard.evict.next_db + k) % ndbs.max(1);
            let seed = shard.next_rand();
            if let Some(loc) = shard.dbs.get(db).and_then(|d| d.random_loc(volatile, seed)) {
                shard.evict.next_db = db + 1;
                return Some((db, loc));
            }
        }
        return None;
    }
    let samples = cfg.samples.clamp(1, MAX_SAMPLES);
    let mut scratch = std::mem::take(&mut shard.evict.scratch);
    for db in 0..ndbs {
        let seed = shard.next_rand();
        let Some(d) = shard.dbs.get(db) else { break };
        scratch.clear();
        d.sample(volatile, samples, seed, &mut scratch);
        for &loc in &scratch {
            let score = d.evict_score(loc, cfg, now);
            shard.evict.pool.offer(Cand { score, db, loc });
        }
    }
    shard.evict.scratch = scratch;
    // The best candidate that is still what it was when sampled.
    while let Some(c) = shard.evict.pool.pop() {
        let Some(d) = shard.dbs.get(c.db) else {
            continue;
        };
        if d.is_live(c.loc)
            && (!volatile || d.has_ttl(c.loc))
            && d.evict_score(c.loc, cfg, now) == c.score
        {
            return Some((c.db, c.loc));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_round_trip() {
        for (n, p) in NAMES {
            assert_eq!(Policy::parse(n), Some(p));
            assert_eq!(p.name(), n);
            assert_eq!(Policy::from_code(p.code()), p);
        }
        assert_eq!(Policy::parse("ALLKEYS-LRU"), Some(Policy::AllkeysLru));
        assert_eq!(Policy::parse("lru"), None);
        assert!(Policy::VolatileTtl.volatile() && !Policy::AllkeysLfu.volatile());
    }

    #[test]
    fn pool_keeps_the_best() {
        let mut p = Pool::default();
        for i in 0..100u64 {
            // Scores in a scrambled order.
            let score = (i * 37) % 100;
            p.offer(Cand {
                score,
                db: 0,
                loc: i as u32,
            });
        }
        assert_eq!(p.len(), POOL_SIZE);
        // The same slot offered again replaces its entry instead of doubling it.
        let loc = (0..100u32).find(|i| i * 37 % 100 == 99).unwrap_or(0);
        p.offer(Cand {
            score: 99,
            db: 0,
            loc,
        });
        let got: Vec<u64> = std::iter::from_fn(|| p.pop()).map(|c| c.score).collect();
        assert_eq!(got.len(), POOL_SIZE);
        assert_eq!(got, (84..100).rev().collect::<Vec<_>>());
        assert!(p.is_empty());
    }

    /// A shard with `n` keys `k0..` in db 0, every other one (the even ones) with a TTL of
    /// `1000 + i` ms, key `i` last accessed at second `i / 10`.
    fn shard(n: u64, policy: Policy) -> Shard {
        let mut s = Shard::new(0, 1, 2, 0);
        s.set_evict_cfg(EvictCfg {
            policy,
            ..EvictCfg::default()
        });
        for i in 0..n {
            let at = if i % 2 == 0 { 1000 + i } else { 0 };
            s.db_mut(0)
                .set(format!("k{i}").as_bytes(), b"v", at, i / 10 * 1000);
        }
        s.now_ms = 500;
        s
    }

    fn alive(s: &mut Shard, i: u64) -> bool {
        s.db_mut(0).exists(format!("k{i}").as_bytes(), 0)
    }

    #[test]
    fn volatile_policies_evict_only_ttl_keys_then_give_up() {
        for p in [
            Policy::VolatileLru,
            Policy::VolatileLfu,
            Policy::VolatileRandom,
            Policy::VolatileTtl,
        ] {
            let mut s = shard(100, p);
            assert_eq!(candidates(&s), 50);
            assert_eq!(evict(&mut s, |s| s.keys() > 10), Outcome::Nothing, "{p:?}");
            assert_eq!(s.evict.evicted_keys, 50);
            assert_eq!(candidates(&s), 0);
            assert!((0..100).filter(|i| i % 2 == 1).all(|i| alive(&mut s, i)));
        }
        let mut s = shard(10, Policy::NoEviction);
        assert_eq!(evict(&mut s, |_| true), Outcome::Nothing);
        assert_eq!((s.keys(), candidates(&s)), (10, 0));
    }

    #[test]
    fn lru_prefers_idle_keys_and_ttl_the_soonest() {
        // 200 keys accessed at seconds 0..19; evict half: the older half should go.
        let mut s = shard(200, Policy::AllkeysLru);
        s.now_ms = 30_000;
        assert_eq!(evict(&mut s, |s| s.keys() > 100), Outcome::Done);
        // Sampling depends on the table layout, which the per-process hash seed varies:
        // over 40 processes 85-96 (median 91) of the oldest went; picking at random gives 50.
        let old_gone = (0..100).filter(|&i| !alive(&mut s, i)).count();
        assert!(old_gone >= 75, "only {old_gone} of the 100 oldest evicted");
        // volatile-ttl: TTLs 1000 + i; evicting 10 of 100 takes from the soonest.
        let mut s = shard(200, Policy::VolatileTtl);
        assert_eq!(evict(&mut s, |s| s.keys() > 190), Outcome::Done);
        let soonest = (0..60).filter(|&i| !alive(&mut s, i)).count();
        assert!(soonest >= 8, "{soonest} of 10 among the 30 soonest");
    }

    #[test]
    fn eviction_is_capped_per_call_and_touches_watchers() {
        let mut s = shard(1000, Policy::AllkeysRandom);
        assert_eq!(evict(&mut s, |_| true), Outcome::Capped);
        assert_eq!(s.keys(), 1000 - MAX_KEYS_PER_CALL);
        let w = crate::shard::watch::Watcher {
            shard: 0,
            token: 1,
            epoch: 1,
            deadline: 0,
        };
        let live: Vec<u64> = (0..1000).filter(|&i| alive(&mut s, i)).collect();
        for i in &live {
            s.watches.add(0, bytes::Bytes::from(format!("k{i}")), w);
        }
        while evict(&mut s, |s| s.keys() > 0) != Outcome::Done {}
        assert_eq!(s.keys(), 0);
        assert!(
            s.watches.is_empty(),
            "every evicted key's watchers were told"
        );
        assert_eq!(s.evict.evicted_keys, 1000);
    }

    #[test]
    fn lfu_counter_grows_logarithmically_and_decays() {
        let now = 10 * 60_000;
        let mut bits = lfu_init(now);
        assert_eq!(lfu_decayed(bits, now, 1), LFU_INIT_VAL);
        // With r = 0 every access counts; with r just under 1 only the first does.
        bits = lfu_touch(bits, now, 10, 1, 0.99);
        assert_eq!(lfu_decayed(bits, now, 1), 6);
        bits = lfu_touch(bits, now, 10, 1, 0.99);
        assert_eq!(lfu_decayed(bits, now, 1), 6, "p = 1/11 at 6");
        for _ in 0..10 {
            bits = lfu_touch(bits, now, 10, 1, 0.0);
        }
        assert_eq!(lfu_decayed(bits, now, 1), 16);
        // Three minutes later, decay time 1: three steps down; decay time 0: never.
        assert_eq!(lfu_decayed(bits, now + 3 * 60_000, 1), 13);
        assert_eq!(lfu_decayed(bits, now + 3 * 60_000, 0), 16);
        assert_eq!(lfu_log_incr(255, 10, 0.0), 255);
        // The minute clock wraps at 16 bits.
        let late = 65_535 << 8 | 20;
        assert_eq!(lfu_decayed(late, 65_537 * 60_000, 1), 19);
    }
}
