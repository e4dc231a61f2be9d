//! Redis value data structures, self-contained: lists, hashes, sets and sorted sets with their
//! compact ("listpack"/"intset") and big forms, streams (`stream`: entries packed in nodes as
//! Redis's listpacks, consumer groups), Redis's conversion rules over the configurable
//! thresholds of [`limits`] (defaults below), the
//! encoding names OBJECT ENCODING reports and an approximate heap size. Nothing here knows RESP,
//! the keyspace or clients: members are `Bytes`, errors are Redis's exact texts as `&'static str`
//! (see [`err`]), replies are plain Rust values. Owned by the shard thread that owns the key.
//!
//! | module | type | compact form | big form | converts when |
//! |---|---|---|---|---|
//! | [`list`] | [`list::List`] | `listpack` | `quicklist` | total bytes > 8 KiB (`list-max-listpack-size -2`) |
//! | [`hash`] | [`hash::Hash`] | `listpack` (`pack.rs`: fields and values in one block) | `hashtable` | > 512 fields or a field/value > 64 bytes |
//! | [`set`] | [`set::Set`] | `intset` (sorted `Vec<i64>`), `listpack` (`pack.rs`) | `hashtable` | intset: non-integer member or > 512 entries; listpack: > 128 members or a member > 64 bytes |
//! | [`zset`] | [`zset::ZSet`] | `listpack` (`pack.rs`: score, member ... sorted) | `skiplist` (treap with subtree counts + member→score map) | > 128 members or a member > 64 bytes |
//!
//! Complexity of the big forms: list push/pop/index O(1), insert/remove in the middle
//! O(min(i, n-i)); hash and set lookup/insert/remove/random O(1) (dense `Vec` + position index,
//! see `table.rs`); zset score O(1), insert/remove/rank/select O(log n) expected (treap with
//! subtree sizes), range reads O(log n + k). SCAN over a `hashtable`/`skiplist` form never
//! misses an element present for the whole scan (compact forms are returned whole with
//! cursor 0, as Redis does).
//!
//! Big forms never convert back to compact ones on removal (Redis doesn't either), except that
//! store operations (ZUNIONSTORE and friends) build their result in the smallest fitting form.
//!
//! Encoding names: Redis 7.0.15 (our compat target) reports `quicklist` for every list and
//! never `listpack` for sets (that arrived in 7.2); the names here follow 7.2. If the compat
//! script checks OBJECT ENCODING of small lists/sets against 7.0.15, map them in the handler.
//!
//! In the keyspace: `shard::value::Value` carries one boxed variant per type between
//! databases and shards; a `Db` stores them unboxed in one vector per type (`shard::objs`),
//! which is why the compact forms keep their handle to one fat pointer (`Hash`, `ZSet`: 16
//! bytes; `Set`: 24). Typed accessors on `Db` (`get_list_mut` …) return WrongType for other
//! types; handlers delete the key when a structure becomes empty.
//! The error texts in [`err`] should move into `error.rs` when the handlers are written.
//! Randomness comes from a caller-owned [`Rng`] (one per shard), so tests are deterministic.

pub mod bitmap;
pub mod geohash;
pub mod hash;
pub mod hll;
pub mod list;
mod pack;
pub mod set;
pub mod stream;
mod table;
pub mod zset;

/// The encoding thresholds: Redis 7.0's `*-max-listpack-*` / `set-max-intset-entries` /
/// `list-max-listpack-size` / `list-compress-depth` settings. Process-wide, set at startup
/// (config file, flags) and by CONFIG SET from any shard; every shard reads them with a
/// relaxed atomic load at its conversion points (a new value applies from the next write
/// that could convert, as in Redis). Defaults are redis-server 7.0.15's compiled ones, which
/// is what a server started without a config file uses (the shipped redis.conf lowers
/// `hash-max-listpack-entries` to 128).
pub mod limits {
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering::Relaxed};

    static HASH_ENTRIES: AtomicUsize = AtomicUsize::new(512);
    static HASH_VALUE: AtomicUsize = AtomicUsize::new(64);
    static SET_INTSET_ENTRIES: AtomicUsize = AtomicUsize::new(512);
    static ZSET_ENTRIES: AtomicUsize = AtomicUsize::new(128);
    static ZSET_VALUE: AtomicUsize = AtomicUsize::new(64);
    static LIST_SIZE: AtomicI64 = AtomicI64::new(-2);
    static LIST_COMPRESS_DEPTH: AtomicI64 = AtomicI64::new(0);

    /// `hash-max-listpack-entries`
    pub fn hash_max_entries() -> usize {
        HASH_ENTRIES.load(Relaxed)
    }
    /// `hash-max-listpack-value`
    pub fn hash_max_value() -> usize {
        HASH_VALUE.load(Relaxed)
    }
    /// `set-max-intset-entries`
    pub fn set_max_intset_entries() -> usize {
        SET_INTSET_ENTRIES.load(Relaxed)
    }
    /// `zset-max-listpack-entries`
    pub fn zset_max_entries() -> usize {
        ZSET_ENTRIES.load(Relaxed)
    }
    /// `zset-max-listpack-value`
    pub fn zset_max_value() -> usize {
        ZSET_VALUE.load(Relaxed)
    }
    /// `list-max-listpack-size`: positive, entries per quicklist node; -1..-5, node bytes
    /// 4/8/16/32/64 KiB (Redis clamps to -5 and to 32767 entries).
    pub fn list_max_size() -> i64 {
        LIST_SIZE.load(Relaxed).clamp(-5, (1 << 15) - 1)
    }
    /// `list-compress-depth`
    pub fn list_compress_depth() -> i64 {
        LIST_COMPRESS_DEPTH.load(Relaxed)
    }

    /// Sets one threshold by its Redis name (either name of an alias pair), from a value
    /// already validated by the config layer. False for a name that is not a threshold.
    pub fn set(name: &str, v: i64) -> bool {
        let u = v.max(0) as usize;
        match canonical(name) {
            "hash-max-listpack-entries" => HASH_ENTRIES.store(u, Relaxed),
            "hash-max-listpack-value" => HASH_VALUE.store(u, Relaxed),
            "set-max-intset-entries" => SET_INTSET_ENTRIES.store(u, Relaxed),
            "zset-max-listpack-entries" => ZSET_ENTRIES.store(u, Relaxed),
            "zset-max-listpack-value" => ZSET_VALUE.store(u, Relaxed),
            "list-max-listpack-size" => LIST_SIZE.store(v, Relaxed),
            "list-compress-depth" => LIST_COMPRESS_DEPTH.store(v, Relaxed),
            "stream-node-max-bytes" => super::stream::set_node_max_bytes(u),
            "stream-node-max-entries" => super::stream::set_node_max_entries(u),
            _ => return false,
        }
        true
    }

    /// Every threshold: (name, Redis 7.0's older alias, default, kind).
    pub const PARAMS: &[(&str, Option<&str>, i64, Kind)] = &[
        (
            "hash-max-listpack-entries",
            Some("hash-max-ziplist-entries"),
            512,
            Kind::Count,
        ),
        (
            "hash-max-listpack-value",
            Some("hash-max-ziplist-value"),
            64,
            Kind::Bytes,
        ),
        ("set-max-intset-entries", None, 512, Kind::Count),
        (
            "zset-max-listpack-entries",
            Some("zset-max-ziplist-entries"),
            128,
            Kind::Count,
        ),
        (
            "zset-max-listpack-value",
            Some("zset-max-ziplist-value"),
            64,
            Kind::Bytes,
        ),
        (
            "list-max-listpack-size",
            Some("list-max-ziplist-size"),
            -2,
            Kind::Int,
        ),
        ("list-compress-depth", None, 0, Kind::Depth),
        ("stream-node-max-bytes", None, 4096, Kind::Bytes),
        ("stream-node-max-entries", None, 100, Kind::Count),
    ];

    /// How a threshold's value is parsed (Redis's config types and ranges).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Kind {
        /// size_t, 0..=i64::MAX, a plain integer.
        Count,
        /// size_t, 0..=i64::MAX, memory units allowed (`1kb`).
        Bytes,
        /// int, i32 range.
        Int,
        /// int, 0..=i32::MAX.
        Depth,
    }

    /// The name a threshold is known by (the new name for a `*-ziplist-*` alias), or the
    /// name itself when it is not a threshold alias.
    pub fn canonical(name: &str) -> &str {
        PARAMS
            .iter()
            .find(|p| p.1 == Some(name))
            .map_or(name, |p| p.0)
    }

    /// The threshold row for `name` (either name).
    pub fn find(name: &str) -> Option<&'static (&'static str, Option<&'static str>, i64, Kind)> {
        let c = canonical(name);
        PARAMS.iter().find(|p| p.0 == c)
    }

    /// Parses a threshold's value; errors carry Redis's CONFIG SET wording.
    pub fn parse(kind: Kind, v: &str) -> Result<i64, String> {
        let v = v.trim();
        match kind {
            Kind::Bytes => {
                let n = crate::config::parse_memory(v)
                    .map_err(|_| "argument must be a memory value".to_string())?;
                if n > i64::MAX as u64 {
                    return Err("argument must be a memory value".into());
                }
                Ok(n as i64)
            }
            Kind::Count | Kind::Int | Kind::Depth => {
                let n: i64 = v
                    .parse()
                    .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
                let (lo, hi) = match kind {
                    Kind::Count => (0, i64::MAX),
                    Kind::Int => (i64::from(i32::MIN), i64::from(i32::MAX)),
                    _ => (0, i64::from(i32::MAX)),
                };
                if n < lo || n > hi {
                    return Err(format!("argument must be between {lo} and {hi} inclusive"));
                }
                Ok(n)
            }
        }
    }

    /// The 7.2 set listpack form (`set-max-listpack-*` does not exist in 7.0, whose
    /// OBJECT ENCODING reports these sets as `hashtable`): an internal layout choice.
    pub const SET_MAX_LISTPACK_ENTRIES: usize = 128;
    pub const SET_MAX_LISTPACK_VALUE: usize = 64;
    /// Our own list's compact form switches at 8 KiB (internal; Redis 7.0 reports every
    /// list as `quicklist`, and DUMP cuts nodes by `list-max-listpack-size`).
    pub const LIST_MAX_LISTPACK_BYTES: usize = 8 * 1024;
}

/// Exact Redis error texts (redis-server 7.0.15) produced by these structures.
pub mod err {
    pub const MIN_MAX_NOT_FLOAT: &str = "ERR min or max is not a float";
    pub const MIN_MAX_NOT_LEX: &str = "ERR min or max not valid string range item";
    pub const ZSCORE_NAN: &str = "ERR resulting score is not a number (NaN)";
    pub const ZADD_XX_NX: &str = "ERR XX and NX options at the same time are not compatible";
    pub const ZADD_GT_LT_NX: &str =
        "ERR GT, LT, and/or NX options at the same time are not compatible";
    pub const ZADD_INCR_PAIR: &str = "ERR INCR option supports a single increment-element pair";
    pub const HASH_NOT_INT: &str = "ERR hash value is not an integer";
    pub const HASH_NOT_FLOAT: &str = "ERR hash value is not a float";
    pub const OVERFLOW: &str = "ERR increment or decrement would overflow";
    pub const INCR_NAN_INF: &str = "ERR increment would produce NaN or Infinity";
    pub const VALUE_NAN_INF: &str = "ERR value is NaN or Infinity";
    pub const NOT_FLOAT: &str = "ERR value is not a valid float";
    pub const INDEX_OUT_OF_RANGE: &str = "ERR index out of range";
    pub const LPOS_RANK_ZERO: &str = "ERR RANK can't be zero: use 1 to start from the first match, 2 from the second ... or use negative to start from the end of the list";
    pub const LPOS_COUNT_NEGATIVE: &str = "ERR COUNT can't be negative";
    pub const LPOS_MAXLEN_NEGATIVE: &str = "ERR MAXLEN can't be negative";
    /// SRANDMEMBER/HRANDFIELD/ZRANDMEMBER count of `i64::MIN`.
    pub const RAND_COUNT_RANGE: &str = "ERR value is out of range, value must between -9223372036854775807 and 9223372036854775807";
    /// HRANDFIELD WITHVALUES / ZRANDMEMBER WITHSCORES count outside `±LONG_MAX/2`.
    pub const OUT_OF_RANGE: &str = "ERR value is out of range";
    /// Negative count of SPOP, LPOP/RPOP, ZPOPMIN/ZPOPMAX.
    pub const MUST_BE_POSITIVE: &str = "ERR value is out of range, must be positive";
    /// SINTERCARD/ZINTERCARD LIMIT below 0.
    pub const LIMIT_NEGATIVE: &str = "ERR LIMIT can't be negative";
}

/// The range checks SRANDMEMBER/HRANDFIELD/ZRANDMEMBER apply to their count (redis-server
/// 7.0.15), `with_values` for WITHVALUES/WITHSCORES, whose reply is twice as long.
pub fn check_rand_count(count: i64, with_values: bool) -> Result<(), &'static str> {
    if count == i64::MIN {
        return Err(err::RAND_COUNT_RANGE);
    }
    if with_values && !(-(i64::MAX / 2)..=i64::MAX / 2).contains(&count) {
        return Err(err::OUT_OF_RANGE);
    }
    Ok(())
}

/// A small, fast, non-cryptographic PRNG (splitmix64) for SPOP/SRANDMEMBER/HRANDFIELD/
/// ZRANDMEMBER and treap priorities. One per shard; seed it from entropy in production.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seeded from std's per-process random hasher keys and the clock.
    pub fn from_entropy() -> Rng {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        h.write_u128(nanos);
        Rng(h.finish())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `n == 0` gives 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Redis's start/stop index rules (LRANGE, ZRANGE, GETRANGE): negative counts from the end,
/// clamped to the sequence; `None` when the range is empty. Returns an inclusive range.
pub fn norm_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = i64::try_from(len).ok()?;
    let mut start = if start < 0 {
        start.saturating_add(len)
    } else {
        start
    };
    let mut stop = if stop < 0 {
        stop.saturating_add(len)
    } else {
        stop
    };
    if start < 0 {
        start = 0;
    }
    if start > stop || start >= len {
        return None;
    }
    if stop >= len {
        stop = len - 1;
    }
    Some((start as usize, stop as usize))
}

/// Which positions of a `len`-element collection a random-members command returns, by Redis's
/// count rules (SRANDMEMBER, HRANDFIELD, ZRANDMEMBER): `count >= 0` gives `min(count, len)`
/// distinct positions (all of them, in order, when `count >= len`); `count < 0` gives
/// `|count|` positions with repetition. The caller bounds `|count|` (Redis errors out of
/// `-LONG_MAX..=LONG_MAX`, and the reply would be that long).
pub fn random_positions(rng: &mut Rng, len: usize, count: i64) -> Vec<usize> {
    if len == 0 || count == 0 {
        return Vec::new();
    }
    if count < 0 {
        let n = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
        return (0..n).map(|_| rng.below(len)).collect();
    }
    let n = usize::try_from(count).unwrap_or(usize::MAX);
    if n >= len {
        return (0..len).collect();
    }
    if n.saturating_mul(3) > len {
        // Many of them: partial Fisher-Yates over all positions.
        let mut all: Vec<usize> = (0..len).collect();
        for i in 0..n {
            let j = i + rng.below(len - i);
            all.swap(i, j);
        }
        all.truncate(n);
        all
    } else {
        // Few of them: rejection sampling.
        let mut seen = std::collections::HashSet::with_capacity(n);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let p = rng.below(len);
            if seen.insert(p) {
                out.push(p);
            }
        }
        out
    }
}

/// Heap bytes of one `Bytes` we hold: the payload plus an allocator/refcount overhead guess.
pub(crate) fn bytes_heap(b: &bytes::Bytes) -> usize {
    b.len() + 16
}

/// The sum of `sizes` (one per element of a collection of `len`), from the first `samples`
/// of them scaled to `len` (MEMORY USAGE's SAMPLES; 0 means all, as Redis).
pub fn sampled_sum(sizes: impl Iterator<Item = usize>, len: usize, samples: usize) -> usize {
    if samples == 0 || samples >= len {
        return sizes.sum();
    }
    let seen: usize = sizes.take(samples).sum();
    seen * len / samples
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampled_sum_scales_the_first_samples() {
        let sizes = [10usize, 20, 30, 40];
        assert_eq!(sampled_sum(sizes.iter().copied(), 4, 0), 100);
        assert_eq!(sampled_sum(sizes.iter().copied(), 4, 9), 100);
        assert_eq!(sampled_sum(sizes.iter().copied(), 4, 2), 60);
        assert_eq!(sampled_sum(std::iter::empty(), 0, 5), 0);
    }

    #[test]
    fn ranges_follow_redis() {
        assert_eq!(norm_range(0, -1, 5), Some((0, 4)));
        assert_eq!(norm_range(-2, -1, 5), Some((3, 4)));
        assert_eq!(norm_range(-100, 1, 5), Some((0, 1)));
        assert_eq!(norm_range(3, 100, 5), Some((3, 4)));
        assert_eq!(norm_range(5, 10, 5), None);
        assert_eq!(norm_range(2, 1, 5), None);
        assert_eq!(norm_range(0, -6, 5), None);
        assert_eq!(norm_range(0, 0, 0), None);
        assert_eq!(norm_range(i64::MIN, i64::MAX, 3), Some((0, 2)));
    }

    #[test]
    fn random_positions_rules() {
        let mut rng = Rng::new(1);
        assert_eq!(random_positions(&mut rng, 5, 10), vec![0, 1, 2, 3, 4]);
        assert!(random_positions(&mut rng, 5, 0).is_empty());
        assert!(random_positions(&mut rng, 0, -3).is_empty());
        let rep = random_positions(&mut rng, 3, -50);
        assert_eq!(rep.len(), 50);
        assert!(rep.iter().all(|&p| p < 3));
        for count in [1i64, 2, 4, 30, 99] {
            let mut d = random_positions(&mut rng, 100, count);
            assert_eq!(d.len(), count as usize);
            d.sort_unstable();
            d.dedup();
            assert_eq!(d.len(), count as usize, "distinct");
        }
    }

    #[test]
    fn rand_count_checks() {
        assert_eq!(
            check_rand_count(i64::MIN, false),
            Err(err::RAND_COUNT_RANGE)
        );
        assert_eq!(check_rand_count(i64::MIN, true), Err(err::RAND_COUNT_RANGE));
        assert_eq!(check_rand_count(-i64::MAX, false), Ok(()));
        assert_eq!(
            check_rand_count(-4611686018427387904, true),
            Err(err::OUT_OF_RANGE)
        );
        assert_eq!(check_rand_count(-4611686018427387903, true), Ok(()));
        assert_eq!(check_rand_count(i64::MAX, true), Err(err::OUT_OF_RANGE));
        assert_eq!(check_rand_count(i64::MAX / 2, true), Ok(()));
        assert_eq!(
            check_rand_count(i64::MAX / 2 + 1, true),
            Err(err::OUT_OF_RANGE)
        );
        assert_eq!(check_rand_count(i64::MAX, false), Ok(()));
    }

    #[test]
    fn rng_is_roughly_uniform() {
        let mut rng = Rng::new(42);
        let mut hist = [0u32; 10];
        for _ in 0..100_000 {
            hist[rng.below(10)] += 1;
        }
        assert!(
            hist.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{hist:?}"
        );
    }
}
