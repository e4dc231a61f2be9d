//! Sorted set values: members (binary safe) ordered by score (f64, never NaN) then by member
//! bytes. Compact form `listpack`: a [`Pack`] of score (8 bytes), member, score, member ...
//! kept sorted (one heap block, linear lookup and insert, as Redis's listpack), while at most 128 members of at most 64 bytes each. Big form
//! `skiplist`: an order-statistics **treap** (randomized balanced BST in a node arena, each
//! node carrying its subtree size; nodes never move) plus a member index over node numbers
//! (O(1) ZSCORE; each member is stored once, in its node) instead of Redis's indexable
//! skiplist and dict: expected O(log n) insert, remove, rank (ZRANK) and select by rank, one
//! descent per insert or remove, O(log n + k) range reads, ZSCAN over the arena. Chosen over a `BTreeMap` because `BTreeMap` cannot answer
//! "how many keys are below x" in less than O(n). Never converts back, except that
//! [`ZSet::from_pairs`] (store results) picks the smallest fitting form. Owned by the key's
//! shard thread.

use std::cmp::Ordering;
use std::collections::HashMap;

use bytes::Bytes;

use super::limits;
use super::pack::Pack;
use super::set::Set;
use super::{err, norm_range, random_positions, Rng};
use crate::util::glob::glob_match;

mod algebra;
mod range;
mod treap;

use algebra::weighted;
pub use algebra::{Aggregate, ZInput};
pub use range::{
    parse_lex_bound, parse_lex_range, parse_score_bound, parse_score_range, LexBound, LexRange,
    Limit, ScoreBound, ScoreRange,
};
use treap::Big;

/// `-0.0` is stored as `0.0` (Redis's listpack stores scores via `d2string`, which prints it
/// as `0`).
fn canon(score: f64) -> f64 {
    if score == 0.0 {
        0.0
    } else {
        score
    }
}

/// Redis's element order: score, then member bytes. Scores are never NaN.
fn cmp_key(a_score: f64, a_member: &[u8], b_score: f64, b_member: &[u8]) -> Ordering {
    match a_score.partial_cmp(&b_score) {
        Some(Ordering::Equal) | None => a_member.cmp(b_member),
        Some(o) => o,
    }
}

/// (offset, score, member) of each element of a compact sorted set, in order.
fn lp_pairs(p: &Pack) -> impl Iterator<Item = (usize, f64, &[u8])> + '_ {
    let mut it = p.iter_at();
    std::iter::from_fn(move || {
        let (off, s) = it.next()?;
        let (_, m) = it.next()?;
        let score = <[u8; 8]>::try_from(s).map_or(0.0, f64::from_le_bytes);
        Some((off, score, m))
    })
}

/// A compact sorted set holding `v` (already sorted).
fn lp_build<M: AsRef<[u8]>>(v: &[(f64, M)]) -> Pack {
    let scores: Vec<[u8; 8]> = v.iter().map(|(s, _)| s.to_le_bytes()).collect();
    let mut items: Vec<&[u8]> = Vec::with_capacity(v.len() * 2);
    for (sc, (_, m)) in scores.iter().zip(v) {
        items.push(sc);
        items.push(m.as_ref());
    }
    let mut p = Pack::new();
    p.push(&items);
    p
}

// ---------------------------------------------------------------------------------------
// ZADD flags and outcome
// ---------------------------------------------------------------------------------------

/// ZADD's NX/XX/GT/LT/INCR (CH only changes what the handler counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZAddFlags {
    pub nx: bool,
    pub xx: bool,
    pub gt: bool,
    pub lt: bool,
    pub incr: bool,
}

impl ZAddFlags {
    /// Redis's option compatibility checks, given how many score-member pairs follow.
    pub fn validate(&self, pairs: usize) -> Result<(), &'static str> {
        if self.nx && self.xx {
            return Err(err::ZADD_XX_NX);
        }
        if [self.gt, self.lt, self.nx].iter().filter(|&&f| f).count() > 1 {
            return Err(err::ZADD_GT_LT_NX);
        }
        if self.incr && pairs > 1 {
            return Err(err::ZADD_INCR_PAIR);
        }
        Ok(())
    }
}

/// What one ZADD pair did (Redis's `ZADD_OUT_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ZAddOutcome {
    /// New member with this score.
    Added(f64),
    /// Existing member, score changed to this.
    Updated(f64),
    /// Existing member, same score (INCR by 0, or ZADD with the current score).
    Unchanged(f64),
    /// Not applied (NX on existing, XX on missing, GT/LT condition false): INCR replies nil.
    Nop,
}

/// What ZADD with `flags` does to a member whose current score is `cur` (Redis's
/// `zsetAdd` decisions); `Err` when INCR gives NaN.
fn zadd_outcome(
    cur: Option<f64>,
    score: f64,
    flags: ZAddFlags,
) -> Result<ZAddOutcome, &'static str> {
    let Some(cur) = cur else {
        return Ok(if flags.xx {
            ZAddOutcome::Nop
        } else {
            ZAddOutcome::Added(canon(score))
        });
    };
    if flags.nx {
        return Ok(ZAddOutcome::Nop);
    }
    let new = if flags.incr { score + cur } else { score };
    if new.is_nan() {
        return Err(err::ZSCORE_NAN);
    }
    if (flags.lt && new >= cur) || (flags.gt && new <= cur) {
        return Ok(ZAddOutcome::Nop);
    }
    if new == cur {
        return Ok(ZAddOutcome::Unchanged(cur));
    }
    Ok(ZAddOutcome::Updated(canon(new)))
}

impl ZAddOutcome {
    /// The score INCR replies with (`None` → nil).
    pub fn score(&self) -> Option<f64> {
        match *self {
            ZAddOutcome::Added(s) | ZAddOutcome::Updated(s) | ZAddOutcome::Unchanged(s) => Some(s),
            ZAddOutcome::Nop => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Repr {
    /// Sorted by (score, member).
    Listpack(Pack),
    Skiplist(Box<Big>),
}

// ---------------------------------------------------------------------------------------
// ZSet
// ---------------------------------------------------------------------------------------

/// A Redis sorted set.
#[derive(Debug, Clone)]
pub struct ZSet {
    repr: Repr,
}

impl Default for ZSet {
    fn default() -> Self {
        ZSet::new()
    }
}

impl ZSet {
    pub fn new() -> ZSet {
        ZSet {
            repr: Repr::Listpack(Pack::new()),
        }
    }

    /// Builds a sorted set from (member, score) pairs (later duplicates win) in the smallest
    /// form that fits, as Redis's store commands do (`zsetConvertToListpackIfNeeded`).
    pub fn from_pairs<I: IntoIterator<Item = (Bytes, f64)>>(pairs: I) -> ZSet {
        Self::build(pairs, true)
    }

    /// A sorted set read from a listpack payload (RDB file, RESTORE): compact unless it has
    /// more than `zset-max-listpack-entries` members, whatever their lengths (Redis 7.0's
    /// loader checks only the count there).
    pub fn from_packed_pairs<I: IntoIterator<Item = (Bytes, f64)>>(pairs: I) -> ZSet {
        Self::build(pairs, false)
    }

    /// `from_packed_pairs` for members as slices (copied only into the set).
    pub fn from_packed_slices(pairs: &[(&[u8], f64)]) -> ZSet {
        if pairs.len() > limits::zset_max_entries() {
            return Self::from_packed_pairs(
                pairs.iter().map(|(m, s)| (Bytes::copy_from_slice(m), *s)),
            );
        }
        // As `build`'s small case: the last pair of a member wins.
        let mut v: Vec<(&[u8], f64)> = pairs.iter().rev().copied().collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v.dedup_by(|later, kept| later.0 == kept.0);
        let mut v: Vec<(f64, &[u8])> = v.into_iter().map(|(m, s)| (canon(s), m)).collect();
        v.sort_by(|a, b| cmp_key(a.0, a.1, b.0, b.1));
        ZSet {
            repr: Repr::Listpack(lp_build(&v)),
        }
    }

    fn build<I: IntoIterator<Item = (Bytes, f64)>>(pairs: I, check_len: bool) -> ZSet {
        let mut pairs: Vec<(Bytes, f64)> = pairs.into_iter().collect();
        let max_value = limits::zset_max_value();
        if pairs.len() <= limits::zset_max_entries() {
            // Small: deduplicated by sorting (the last pair of a member wins, as the map
            // below), no hash map to build and drop.
            pairs.reverse();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            pairs.dedup_by(|later, kept| later.0 == kept.0);
            if !check_len || pairs.iter().all(|(m, _)| m.len() <= max_value) {
                let mut v: Vec<(f64, Bytes)> =
                    pairs.into_iter().map(|(m, s)| (canon(s), m)).collect();
                v.sort_by(|a, b| cmp_key(a.0, &a.1, b.0, &b.1));
                return ZSet {
                    repr: Repr::Listpack(lp_build(&v)),
                };
            }
        }
        let mut map: HashMap<Bytes, f64, ahash::RandomState> = HashMap::default();
        for (m, s) in pairs {
            map.insert(m, canon(s));
        }
        let small = map.len() <= limits::zset_max_entries()
            && (!check_len || map.keys().all(|m| m.len() <= max_value));
        if small {
            let mut v: Vec<(f64, Bytes)> = map.into_iter().map(|(m, s)| (s, m)).collect();
            v.sort_by(|a, b| cmp_key(a.0, &a.1, b.0, &b.1));
            ZSet {
                repr: Repr::Listpack(lp_build(&v)),
            }
        } else {
            let mut big = Big::with_capacity(map.len());
            for (m, s) in map {
                big.insert_new(s, m);
            }
            ZSet {
                repr: Repr::Skiplist(Box::new(big)),
            }
        }
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Listpack(p) => p.len() / 2,
            Repr::Skiplist(b) => b.tree.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self.repr {
            Repr::Listpack(_) => "listpack",
            Repr::Skiplist(_) => "skiplist",
        }
    }

    /// Approximate heap bytes.
    /// Where a small sorted set's packed block starts (a prefetch hint).
    pub fn data_ptr(&self) -> Option<*const u8> {
        match &self.repr {
            Repr::Listpack(p) => Some(p.data_ptr()),
            Repr::Skiplist(_) => None,
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes_sampled(0)
    }

    /// `heap_bytes` with the members' own blocks estimated from `samples` of them (0: all).
    pub fn heap_bytes_sampled(&self, samples: usize) -> usize {
        match &self.repr {
            Repr::Listpack(p) => p.heap_bytes(),
            Repr::Skiplist(b) => b.heap_bytes(samples),
        }
    }

    /// ZSCORE / ZMSCORE.
    pub fn score(&self, member: &[u8]) -> Option<f64> {
        match &self.repr {
            Repr::Listpack(p) => lp_pairs(p).find(|e| e.2 == member).map(|e| e.1),
            Repr::Skiplist(b) => b.score(member),
        }
    }

    /// SORT's conversion (Redis's `zsetConvert(sortval, OBJ_ENCODING_SKIPLIST)` in
    /// sortCommandGeneric): a small sorted set that SORT read reports `skiplist` from then
    /// on, as in Redis. The members and scores stay as they are.
    pub fn convert_for_sort(&mut self) {
        self.convert_to_skiplist();
    }

    fn convert_to_skiplist(&mut self) {
        if let Repr::Listpack(p) = &self.repr {
            let mut big = Big::with_capacity(p.len() / 2 + 1);
            for (_, s, m) in lp_pairs(p) {
                big.insert_new(s, Bytes::copy_from_slice(m));
            }
            self.repr = Repr::Skiplist(Box::new(big));
        }
    }

    /// Inserts a member known to be absent.
    fn insert_new(&mut self, score: f64, member: Bytes) {
        if let Repr::Listpack(p) = &self.repr {
            if p.len() / 2 >= limits::zset_max_entries() || member.len() > limits::zset_max_value()
            {
                self.convert_to_skiplist();
            }
        }
        match &mut self.repr {
            Repr::Listpack(p) => {
                let pos = lp_pairs(p)
                    .find(|&(_, s, m)| cmp_key(s, m, score, &member) == Ordering::Greater)
                    .map_or(p.heap_bytes(), |e| e.0);
                p.splice(pos, pos, 0, &[&score.to_le_bytes(), &member]);
            }
            Repr::Skiplist(b) => b.insert_new(score, member),
        }
    }

    /// Removes a member with its known score.
    fn remove_known(&mut self, score: f64, member: &[u8]) -> bool {
        match &mut self.repr {
            Repr::Listpack(p) => {
                let found = lp_pairs(p)
                    .find(|&(_, s, m)| cmp_key(s, m, score, member) != Ordering::Less)
                    .filter(|&(_, s, m)| cmp_key(s, m, score, member) == Ordering::Equal)
                    .map(|e| e.0);
                match found {
                    Some(off) => {
                        p.remove_at(off, 2);
                        true
                    }
                    None => false,
                }
            }
            Repr::Skiplist(b) => b.remove(member),
        }
    }

    /// ZADD one score-member pair (Redis's `zsetAdd`). `Err` only for a NaN result of INCR
    /// (`ERR resulting score is not a number (NaN)`); a NaN input score is rejected by the
    /// parser before this.
    pub fn add(
        &mut self,
        score: f64,
        member: Bytes,
        flags: ZAddFlags,
    ) -> Result<ZAddOutcome, &'static str> {
        if score.is_nan() {
            return Err(err::ZSCORE_NAN);
        }
        if let Repr::Skiplist(b) = &mut self.repr {
            // One member lookup; an update moves the same node to its new place.
            let node = b.find(&member);
            let cur = node.and_then(|i| b.tree.node(i)).map(|x| x.score);
            let out = zadd_outcome(cur, score, flags)?;
            match (out, node) {
                (ZAddOutcome::Updated(new), Some(i)) => b.rescore(i, new),
                (ZAddOutcome::Added(new), None) => b.insert_new(new, member),
                _ => {}
            }
            return Ok(out);
        }
        let cur = self.score(&member);
        let out = zadd_outcome(cur, score, flags)?;
        match (out, cur) {
            (ZAddOutcome::Updated(new), Some(old)) => {
                self.remove_known(old, &member);
                self.insert_new(new, member);
            }
            (ZAddOutcome::Added(new), None) => self.insert_new(new, member),
            _ => {}
        }
        Ok(out)
    }

    /// ZINCRBY: the new score.
    pub fn incr_by(&mut self, member: Bytes, by: f64) -> Result<f64, &'static str> {
        let flags = ZAddFlags {
            incr: true,
            ..ZAddFlags::default()
        };
        self.add(by, member, flags)?.score().ok_or(err::ZSCORE_NAN)
    }

    /// ZREM one member; true when it existed.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match self.score(member) {
            Some(s) => self.remove_known(s, member),
            None => false,
        }
    }

    /// How many leading elements satisfy `pred` (a prefix predicate of the order).
    fn count_prefix(&self, pred: &dyn Fn(f64, &[u8]) -> bool) -> usize {
        match &self.repr {
            Repr::Listpack(p) => lp_pairs(p).take_while(|&(_, s, m)| pred(s, m)).count(),
            Repr::Skiplist(b) => b.tree.count_prefix(pred),
        }
    }

    fn at(&self, rank: usize) -> Option<(f64, &[u8])> {
        match &self.repr {
            Repr::Listpack(p) => lp_pairs(p).nth(rank).map(|(_, s, m)| (s, m)),
            Repr::Skiplist(b) => b.tree.select(rank).map(|(s, m)| (s, &m[..])),
        }
    }

    /// Visits the elements with `min <= score < max` in ascending order until `f` returns
    /// false (the GEO searches, which filter each cell's members without copying them).
    pub fn visit_score_range(&self, min: f64, max: f64, f: &mut dyn FnMut(f64, &[u8]) -> bool) {
        let lo = self.count_prefix(&|s, _| s < min);
        let hi = self.count_prefix(&|s, _| s < max);
        match &self.repr {
            Repr::Listpack(p) => {
                for (_, s, m) in lp_pairs(p).skip(lo).take(hi.saturating_sub(lo)) {
                    if !f(s, m) {
                        return;
                    }
                }
            }
            Repr::Skiplist(b) => {
                for r in lo..hi {
                    let Some((s, m)) = b.tree.select(r) else {
                        return;
                    };
                    if !f(s, m) {
                        return;
                    }
                }
            }
        }
    }

    /// Elements of ranks `lo..hi`, ascending.
    fn slice(&self, lo: usize, hi: usize) -> Vec<(Bytes, f64)> {
        let hi = hi.min(self.len());
        if lo >= hi {
            return Vec::new();
        }
        match &self.repr {
            Repr::Listpack(p) => lp_pairs(p)
                .skip(lo)
                .take(hi - lo)
                .map(|(_, s, m)| (Bytes::copy_from_slice(m), s))
                .collect(),
            Repr::Skiplist(b) => {
                let mut out = Vec::with_capacity(hi - lo);
                b.tree.collect(b.tree.root, 0, lo, hi, &mut out);
                out
            }
        }
    }

    /// Ranks `lo..hi` in forward or reverse order with LIMIT applied.
    fn window(&self, lo: usize, hi: usize, rev: bool, limit: Option<Limit>) -> Vec<(Bytes, f64)> {
        if lo >= hi {
            return Vec::new();
        }
        let (offset, count) = match limit {
            None => (0, usize::MAX),
            Some(l) if l.offset < 0 => return Vec::new(),
            Some(l) => (
                usize::try_from(l.offset).unwrap_or(usize::MAX),
                if l.count < 0 {
                    usize::MAX
                } else {
                    usize::try_from(l.count).unwrap_or(usize::MAX)
                },
            ),
        };
        let n = hi - lo;
        if offset >= n || count == 0 {
            return Vec::new();
        }
        let take = count.min(n - offset);
        if rev {
            let end = hi - offset;
            let mut v = self.slice(end - take, end);
            v.reverse();
            v
        } else {
            let start = lo + offset;
            self.slice(start, start + take)
        }
    }

    /// All elements ascending (ZRANGE 0 -1).
    pub fn to_vec(&self) -> Vec<(Bytes, f64)> {
        self.slice(0, self.len())
    }

    /// ZRANK (`rev`: ZREVRANK).
    pub fn rank(&self, member: &[u8], rev: bool) -> Option<usize> {
        let score = self.score(member)?;
        let r = self.count_prefix(&|s, m| cmp_key(s, m, score, member) == Ordering::Less);
        Some(if rev { self.len() - 1 - r } else { r })
    }

    /// ZRANGE by index (negative from the end); `rev` indexes the reversed order.
    pub fn range_by_rank(&self, start: i64, stop: i64, rev: bool) -> Vec<(Bytes, f64)> {
        let len = self.len();
        let Some((s, e)) = norm_range(start, stop, len) else {
            return Vec::new();
        };
        if rev {
            let mut v = self.slice(len - 1 - e, len - s);
            v.reverse();
            v
        } else {
            self.slice(s, e + 1)
        }
    }

    fn score_ranks(&self, r: &ScoreRange) -> (usize, usize) {
        let (min, max) = (r.min, r.max);
        let lo = self.count_prefix(&|s, _| {
            if min.exclusive {
                s <= min.value
            } else {
                s < min.value
            }
        });
        let hi = self.count_prefix(&|s, _| {
            if max.exclusive {
                s < max.value
            } else {
                s <= max.value
            }
        });
        (lo, hi.max(lo))
    }

    fn lex_ranks(&self, r: &LexRange) -> (usize, usize) {
        let below = |b: &LexBound, upper: bool| -> usize {
            match b {
                LexBound::Min => 0,
                LexBound::Max => self.len(),
                LexBound::Incl(x) if upper => self.count_prefix(&|_, m| m <= &x[..]),
                LexBound::Incl(x) => self.count_prefix(&|_, m| m < &x[..]),
                LexBound::Excl(x) if upper => self.count_prefix(&|_, m| m < &x[..]),
                LexBound::Excl(x) => self.count_prefix(&|_, m| m <= &x[..]),
            }
        };
        let lo = below(&r.min, false);
        let hi = below(&r.max, true);
        (lo, hi.max(lo))
    }

    /// ZRANGEBYSCORE / ZREVRANGEBYSCORE (`rev`: descending from `range.max`).
    pub fn range_by_score(
        &self,
        range: &ScoreRange,
        rev: bool,
        limit: Option<Limit>,
    ) -> Vec<(Bytes, f64)> {
        let (lo, hi) = self.score_ranks(range);
        self.window(lo, hi, rev, limit)
    }

    /// ZRANGEBYLEX / ZREVRANGEBYLEX (meaningful when all scores are equal, as in Redis).
    pub fn range_by_lex(&self, range: &LexRange, rev: bool, limit: Option<Limit>) -> Vec<Bytes> {
        let (lo, hi) = self.lex_ranks(range);
        self.window(lo, hi, rev, limit)
            .into_iter()
            .map(|p| p.0)
            .collect()
    }

    /// ZCOUNT.
    pub fn count_in_score(&self, range: &ScoreRange) -> usize {
        let (lo, hi) = self.score_ranks(range);
        hi - lo
    }

    /// ZLEXCOUNT.
    pub fn count_in_lex(&self, range: &LexRange) -> usize {
        let (lo, hi) = self.lex_ranks(range);
        hi - lo
    }

    fn remove_pairs(&mut self, pairs: &[(Bytes, f64)]) -> usize {
        pairs
            .iter()
            .filter(|(m, s)| self.remove_known(*s, m))
            .count()
    }

    /// ZREMRANGEBYRANK.
    pub fn remove_range_by_rank(&mut self, start: i64, stop: i64) -> usize {
        let v = self.range_by_rank(start, stop, false);
        self.remove_pairs(&v)
    }

    /// ZREMRANGEBYSCORE.
    pub fn remove_range_by_score(&mut self, range: &ScoreRange) -> usize {
        let v = self.range_by_score(range, false, None);
        self.remove_pairs(&v)
    }

    /// ZREMRANGEBYLEX.
    pub fn remove_range_by_lex(&mut self, range: &LexRange) -> usize {
        let (lo, hi) = self.lex_ranks(range);
        let v = self.slice(lo, hi);
        self.remove_pairs(&v)
    }

    /// ZPOPMIN (`max` false) / ZPOPMAX: up to `count` elements in pop order.
    pub fn pop(&mut self, max: bool, count: usize) -> Vec<(Bytes, f64)> {
        if let Repr::Skiplist(b) = &mut self.repr {
            let mut v = Vec::with_capacity(count.min(b.tree.len()));
            while v.len() < count {
                let Some((score, member)) = b.tree.detach_edge(max).and_then(|i| b.forget(i))
                else {
                    break;
                };
                v.push((member, score));
            }
            return v;
        }
        let len = self.len();
        let n = count.min(len);
        let v = if max {
            let mut v = self.slice(len - n, len);
            v.reverse();
            v
        } else {
            self.slice(0, n)
        };
        self.remove_pairs(&v);
        v
    }

    /// ZRANDMEMBER without count.
    pub fn random_member(&self, rng: &mut Rng) -> Option<(Bytes, f64)> {
        self.at(rng.below(self.len()))
            .map(|(s, m)| (Bytes::copy_from_slice(m), s))
    }

    /// ZRANDMEMBER with count: positive gives distinct members (all, ascending, when
    /// `count >= len`), negative `|count|` with repetition. The caller bounds `|count|`
    /// (Redis: `-LONG_MAX..=LONG_MAX`, half that WITHSCORES).
    pub fn random_members(&self, rng: &mut Rng, count: i64) -> Vec<(Bytes, f64)> {
        random_positions(rng, self.len(), count)
            .into_iter()
            .filter_map(|i| self.at(i).map(|(s, m)| (Bytes::copy_from_slice(m), s)))
            .collect()
    }

    /// ZMSCORE: one optional score per member.
    pub fn mscore<'a, I: IntoIterator<Item = &'a [u8]>>(&self, members: I) -> Vec<Option<f64>> {
        members.into_iter().map(|m| self.score(m)).collect()
    }

    /// ZSCAN: visits at least `count` members from `cursor`; returns the next cursor (0 when
    /// done) and the (member, score) pairs whose member matches `pattern`. The listpack form
    /// comes whole in one call (as in Redis); the skiplist form never misses a member present
    /// for the whole scan (see `table.rs`).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        pattern: Option<&[u8]>,
    ) -> (u64, Vec<(Bytes, f64)>) {
        let keep = |m: &[u8]| pattern.is_none_or(|p| glob_match(p, m, false));
        match &self.repr {
            Repr::Listpack(p) => (
                0,
                lp_pairs(p)
                    .filter(|&(_, _, m)| keep(m))
                    .map(|(_, s, m)| (Bytes::copy_from_slice(m), s))
                    .collect(),
            ),
            Repr::Skiplist(b) => {
                let mut out = Vec::new();
                let next = b.scan(cursor, count, |m, s| {
                    if keep(m) {
                        out.push((Bytes::copy_from_slice(m), s));
                    }
                });
                (next, out)
            }
        }
    }

    /// ZUNION / ZUNIONSTORE. `weights` is empty (all 1) or one per input.
    pub fn union(inputs: &[ZInput], weights: &[f64], agg: Aggregate) -> ZSet {
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs.get(i).map_or(0, |z| z.len()));
        let mut acc: HashMap<Bytes, f64, ahash::RandomState> = HashMap::default();
        for i in order {
            let Some(input) = inputs.get(i) else { continue };
            let w = weights.get(i).copied().unwrap_or(1.0);
            for (m, s) in input.pairs() {
                let v = weighted(s, w);
                match acc.get_mut(&m) {
                    Some(cur) => *cur = agg.apply(*cur, v),
                    None => {
                        acc.insert(m, v);
                    }
                }
            }
        }
        ZSet::from_pairs(acc)
    }

    /// ZINTER / ZINTERSTORE / the pairs ZINTERCARD counts. `weights` as for [`ZSet::union`].
    pub fn inter(inputs: &[ZInput], weights: &[f64], agg: Aggregate) -> ZSet {
        let mut order: Vec<usize> = (0..inputs.len()).collect();
        order.sort_by_key(|&i| inputs.get(i).map_or(0, |z| z.len()));
        let Some((&first, rest)) = order.split_first() else {
            return ZSet::new();
        };
        let Some(base) = inputs.get(first) else {
            return ZSet::new();
        };
        let w0 = weights.get(first).copied().unwrap_or(1.0);
        let mut out = Vec::new();
        'members: for (m, s) in base.pairs() {
            let mut score = weighted(s, w0);
            for &j in rest {
                let w = weights.get(j).copied().unwrap_or(1.0);
                match inputs.get(j).and_then(|z| z.score(&m)) {
                    Some(s) => score = agg.apply(score, weighted(s, w)),
                    None => continue 'members,
                }
            }
            out.push((m, score));
        }
        ZSet::from_pairs(out)
    }

    /// ZINTERCARD: the intersection's size, stopping at `limit` (0 = no limit).
    pub fn intercard(inputs: &[ZInput], limit: usize) -> usize {
        let limit = if limit == 0 { usize::MAX } else { limit };
        let mut order: Vec<&ZInput> = inputs.iter().collect();
        order.sort_by_key(|z| z.len());
        let Some((base, rest)) = order.split_first() else {
            return 0;
        };
        let mut n = 0;
        for (m, _) in base.pairs() {
            if n >= limit {
                break;
            }
            if rest.iter().all(|z| z.score(&m).is_some()) {
                n += 1;
            }
        }
        n
    }

    /// ZDIFF / ZDIFFSTORE: members of the first input in none of the others, with their
    /// scores from the first.
    pub fn diff(inputs: &[ZInput]) -> ZSet {
        let Some((first, rest)) = inputs.split_first() else {
            return ZSet::new();
        };
        ZSet::from_pairs(
            first
                .pairs()
                .into_iter()
                .filter(|(m, _)| rest.iter().all(|z| z.score(m).is_none())),
        )
    }
}

#[cfg(test)]
mod tests;
