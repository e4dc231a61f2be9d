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
use super::{bytes_heap, err, norm_range, random_positions, sampled_sum, Rng};
use crate::util::glob::glob_match;
use hashbrown::HashTable;

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
fn lp_build(v: &[(f64, Bytes)]) -> Pack {
    let scores: Vec<[u8; 8]> = v.iter().map(|(s, _)| s.to_le_bytes()).collect();
    let mut items: Vec<&[u8]> = Vec::with_capacity(v.len() * 2);
    for (sc, (_, m)) in scores.iter().zip(v) {
        items.push(sc);
        items.push(m);
    }
    let mut p = Pack::new();
    p.push(&items);
    p
}

// ---------------------------------------------------------------------------------------
// Score and lex bounds
// ---------------------------------------------------------------------------------------

/// One end of a score range (`1.5`, `(1.5`, `-inf`, `+inf`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreBound {
    pub value: f64,
    pub exclusive: bool,
}

/// `min max` of ZRANGEBYSCORE/ZCOUNT/ZREMRANGEBYSCORE (for the REV forms the handler passes
/// the arguments swapped, as Redis does).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreRange {
    pub min: ScoreBound,
    pub max: ScoreBound,
}

/// `strtod` as Redis's `zslParseRange` uses it: leading spaces skipped, the empty string is
/// 0, overflow is ±inf, hex integers accepted, trailing bytes and NaN rejected.
fn strtod(s: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(s).ok()?;
    let t = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    if t.is_empty() {
        return Some(0.0);
    }
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..)?),
        Some(b'+') => (false, t.get(1..)?),
        _ => (false, t),
    };
    if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        let v = u64::from_str_radix(hex, 16).ok()? as f64;
        return Some(if neg { -v } else { v });
    }
    if !body.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == 'i' || c == 'I') {
        return None;
    }
    let v: f64 = t.parse().ok()?;
    (!v.is_nan()).then_some(v)
}

/// Parses one score bound; `ERR min or max is not a float` on failure.
pub fn parse_score_bound(s: &[u8]) -> Result<ScoreBound, &'static str> {
    let (exclusive, body) = match s.split_first() {
        Some((b'(', rest)) => (true, rest),
        _ => (false, s),
    };
    let value = strtod(body).ok_or(err::MIN_MAX_NOT_FLOAT)?;
    Ok(ScoreBound { value, exclusive })
}

/// Parses `min max` score bounds.
pub fn parse_score_range(min: &[u8], max: &[u8]) -> Result<ScoreRange, &'static str> {
    Ok(ScoreRange {
        min: parse_score_bound(min)?,
        max: parse_score_bound(max)?,
    })
}

/// One end of a lex range (`[a`, `(a`, `-`, `+`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexBound {
    /// `-`: below every member.
    Min,
    /// `+`: above every member.
    Max,
    Incl(Bytes),
    Excl(Bytes),
}

/// `min max` of ZRANGEBYLEX/ZLEXCOUNT/ZREMRANGEBYLEX.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexRange {
    pub min: LexBound,
    pub max: LexBound,
}

/// Parses one lex bound; `ERR min or max not valid string range item` on failure.
pub fn parse_lex_bound(s: &[u8]) -> Result<LexBound, &'static str> {
    match s.split_first() {
        Some((b'+', [])) => Ok(LexBound::Max),
        Some((b'-', [])) => Ok(LexBound::Min),
        Some((b'[', rest)) => Ok(LexBound::Incl(Bytes::copy_from_slice(rest))),
        Some((b'(', rest)) => Ok(LexBound::Excl(Bytes::copy_from_slice(rest))),
        _ => Err(err::MIN_MAX_NOT_LEX),
    }
}

/// Parses `min max` lex bounds.
pub fn parse_lex_range(min: &[u8], max: &[u8]) -> Result<LexRange, &'static str> {
    Ok(LexRange {
        min: parse_lex_bound(min)?,
        max: parse_lex_bound(max)?,
    })
}

/// LIMIT offset count as Redis reads it: a negative offset gives nothing, a negative count
/// means "all the rest".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub offset: i64,
    pub count: i64,
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

/// AGGREGATE of ZUNION/ZINTER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregate {
    #[default]
    Sum,
    Min,
    Max,
}

impl Aggregate {
    fn apply(self, acc: f64, v: f64) -> f64 {
        match self {
            Aggregate::Sum => {
                let s = acc + v;
                // +inf + -inf: Redis stores 0.
                if s.is_nan() {
                    0.0
                } else {
                    s
                }
            }
            Aggregate::Min => acc.min(v),
            Aggregate::Max => acc.max(v),
        }
    }
}

/// One source of ZUNION/ZINTER/ZDIFF: a sorted set, a plain set (every score 1), or a
/// missing key (empty).
#[derive(Debug, Clone, Copy)]
pub enum ZInput<'a> {
    ZSet(&'a ZSet),
    Set(&'a Set),
    Missing,
}

impl ZInput<'_> {
    fn len(&self) -> usize {
        match self {
            ZInput::ZSet(z) => z.len(),
            ZInput::Set(s) => s.len(),
            ZInput::Missing => 0,
        }
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        match self {
            ZInput::ZSet(z) => z.score(member),
            ZInput::Set(s) => s.contains(member).then_some(1.0),
            ZInput::Missing => None,
        }
    }

    fn pairs(&self) -> Vec<(Bytes, f64)> {
        match self {
            ZInput::ZSet(z) => z.to_vec(),
            ZInput::Set(s) => s.iter().map(|m| (m, 1.0)).collect(),
            ZInput::Missing => Vec::new(),
        }
    }
}

/// `weight * score` with Redis's rule that `inf * 0` is 0.
fn weighted(score: f64, weight: f64) -> f64 {
    let v = score * weight;
    if v.is_nan() {
        0.0
    } else {
        v
    }
}

// ---------------------------------------------------------------------------------------
// The order-statistics treap
// ---------------------------------------------------------------------------------------

const NIL: u32 = u32::MAX;

/// Where a subtree hangs: the root, or a child pointer of a node.
#[derive(Clone, Copy)]
enum Link {
    Root,
    Left(u32),
    Right(u32),
}

#[derive(Debug, Clone)]
struct Node {
    score: f64,
    member: Bytes,
    /// The member's hash in the owning set's index (kept so the index never rehashes).
    hash: u64,
    prio: u32,
    left: u32,
    right: u32,
    /// Elements in this subtree; 0 marks a free slot.
    size: u32,
}

/// Arena-allocated treap ordered by (score, member), max-heap on `prio`, with subtree sizes.
/// Invariants: every reachable index is in `nodes`; `size` = 1 + sizes of children.
#[derive(Debug, Clone)]
struct Treap {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    rng: Rng,
    /// Scratch: the nodes above the one `detach` found.
    path: Vec<u32>,
}

impl Treap {
    fn new() -> Treap {
        Treap {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            rng: Rng::from_entropy(),
            path: Vec::new(),
        }
    }

    fn node(&self, n: u32) -> Option<&Node> {
        self.nodes.get(n as usize)
    }

    fn size(&self, n: u32) -> usize {
        self.node(n).map_or(0, |x| x.size as usize)
    }

    fn len(&self) -> usize {
        self.size(self.root)
    }

    fn fix(&mut self, n: u32) {
        let (l, r) = match self.node(n) {
            Some(x) => (x.left, x.right),
            None => return,
        };
        let s = 1 + self.size(l) + self.size(r);
        if let Some(x) = self.nodes.get_mut(n as usize) {
            x.size = s as u32;
        }
    }

    fn set_left(&mut self, n: u32, c: u32) {
        if let Some(x) = self.nodes.get_mut(n as usize) {
            x.left = c;
        }
        self.fix(n);
    }

    fn set_right(&mut self, n: u32, c: u32) {
        if let Some(x) = self.nodes.get_mut(n as usize) {
            x.right = c;
        }
        self.fix(n);
    }

    /// Splits `t` into (keys before (score, member), the rest); with `inclusive` the key
    /// itself goes left.
    fn split(&mut self, t: u32, score: f64, member: &[u8], inclusive: bool) -> (u32, u32) {
        let Some(x) = self.node(t) else {
            return (NIL, NIL);
        };
        let o = cmp_key(x.score, &x.member, score, member);
        let goes_left = o == Ordering::Less || (inclusive && o == Ordering::Equal);
        let (l, r) = (x.left, x.right);
        if goes_left {
            let (a, b) = self.split(r, score, member, inclusive);
            self.set_right(t, a);
            (t, b)
        } else {
            let (a, b) = self.split(l, score, member, inclusive);
            self.set_left(t, b);
            (a, t)
        }
    }

    /// Joins two treaps where every key of `a` is below every key of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        let (Some(x), Some(y)) = (self.node(a), self.node(b)) else {
            return if a == NIL { b } else { a };
        };
        if x.prio > y.prio {
            let r = x.right;
            let m = self.merge(r, b);
            self.set_right(a, m);
            a
        } else {
            let l = y.left;
            let m = self.merge(a, l);
            self.set_left(b, m);
            b
        }
    }

    /// The subtree `link` leads to.
    fn child(&self, link: Link) -> u32 {
        match link {
            Link::Root => self.root,
            Link::Left(p) => self.node(p).map_or(NIL, |x| x.left),
            Link::Right(p) => self.node(p).map_or(NIL, |x| x.right),
        }
    }

    /// Points `link` at `c` (sizes are the caller's business).
    fn set_link(&mut self, link: Link, c: u32) {
        match link {
            Link::Root => self.root = c,
            Link::Left(p) => {
                if let Some(x) = self.nodes.get_mut(p as usize) {
                    x.left = c;
                }
            }
            Link::Right(p) => {
                if let Some(x) = self.nodes.get_mut(p as usize) {
                    x.right = c;
                }
            }
        }
    }

    /// Adds `delta` (±1) to the size of node `n`.
    fn bump(&mut self, n: u32, grow: bool) {
        if let Some(x) = self.nodes.get_mut(n as usize) {
            x.size = if grow { x.size + 1 } else { x.size - 1 };
        }
    }

    /// A new unlinked node (a free slot is reused: nodes never move, which is what lets the
    /// member index hold node numbers and ZSCAN walk the arena).
    fn alloc(&mut self, score: f64, member: Bytes, hash: u64) -> u32 {
        let node = Node {
            score,
            member,
            hash,
            prio: self.rng.next_u64() as u32,
            left: NIL,
            right: NIL,
            size: 1,
        };
        match self.free.pop() {
            Some(i) => {
                if let Some(slot) = self.nodes.get_mut(i as usize) {
                    *slot = node;
                }
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        }
    }

    /// Returns an unlinked node's slot to the free list, handing back its element.
    fn release(&mut self, i: u32) -> Option<(f64, Bytes)> {
        let x = self.nodes.get_mut(i as usize)?;
        let out = (x.score, std::mem::take(&mut x.member));
        x.left = NIL;
        x.right = NIL;
        x.size = 0;
        self.free.push(i);
        Some(out)
    }

    /// Links the unlinked node `i` in by its (score, member), in one descent: down the path
    /// while the nodes outrank it (each gains one element below it), then the subtree found
    /// there is split around the key and hung under `i`. The split only walks that subtree,
    /// which is small in expectation (a random node's subtree holds O(log n)).
    fn attach(&mut self, i: u32) {
        let Some(me) = self.nodes.get_mut(i as usize) else {
            return;
        };
        let (score, prio) = (me.score, me.prio);
        // Taken out while the descent compares against it (other nodes are bumped meanwhile).
        let member = std::mem::take(&mut me.member);
        let mut link = Link::Root;
        let mut t = self.root;
        while let Some(x) = self.node(t) {
            if x.prio < prio {
                break;
            }
            let left = cmp_key(score, &member, x.score, &x.member) == Ordering::Less;
            let next = if left { x.left } else { x.right };
            self.bump(t, true);
            link = if left { Link::Left(t) } else { Link::Right(t) };
            t = next;
        }
        let (l, r) = self.split(t, score, &member, false);
        let size = (1 + self.size(l) + self.size(r)) as u32;
        if let Some(me) = self.nodes.get_mut(i as usize) {
            me.member = member;
            me.left = l;
            me.right = r;
            me.size = size;
        }
        self.set_link(link, i);
    }

    /// Inserts a key known to be absent; returns its node.
    fn insert(&mut self, score: f64, member: Bytes, hash: u64) -> u32 {
        let i = self.alloc(score, member, hash);
        self.attach(i);
        i
    }

    /// Unlinks node `i` (found by its key; the node itself is recognised by number): one
    /// descent remembering the nodes passed, each of those loses one element, and the
    /// node's two subtrees are merged into its place. False if `i` is not in the tree.
    fn detach(&mut self, i: u32) -> bool {
        let Some(me) = self.nodes.get_mut(i as usize) else {
            return false;
        };
        if me.size == 0 {
            return false;
        }
        let score = me.score;
        let member = std::mem::take(&mut me.member);
        let mut path = std::mem::take(&mut self.path);
        path.clear();
        let mut t = self.root;
        let found = loop {
            let Some(x) = self.node(t) else {
                break None;
            };
            if t == i {
                break Some((x.left, x.right));
            }
            let next = match cmp_key(score, &member, x.score, &x.member) {
                Ordering::Less => x.left,
                _ => x.right,
            };
            path.push(t);
            t = next;
        };
        if let Some(me) = self.nodes.get_mut(i as usize) {
            me.member = member;
        }
        let Some((l, r)) = found else {
            self.path = path;
            return false;
        };
        for &p in &path {
            self.bump(p, false);
        }
        let link = match path.last() {
            None => Link::Root,
            Some(&p) if self.node(p).is_some_and(|x| x.left == i) => Link::Left(p),
            Some(&p) => Link::Right(p),
        };
        self.path = path;
        if let Some(me) = self.nodes.get_mut(i as usize) {
            me.left = NIL;
            me.right = NIL;
            me.size = 1;
        }
        let joined = self.merge(l, r);
        self.set_link(link, joined);
        true
    }

    /// Unlinks the first (or with `last` the last) node: down the edge of the tree without
    /// comparing, one element off every node passed, and its one subtree takes its place.
    fn detach_edge(&mut self, last: bool) -> Option<u32> {
        let mut link = Link::Root;
        loop {
            let t = self.child(link);
            let x = self.node(t)?;
            let next = if last { x.right } else { x.left };
            if next == NIL {
                break;
            }
            self.bump(t, false);
            link = if last { Link::Right(t) } else { Link::Left(t) };
        }
        let m = self.child(link);
        let x = self.nodes.get_mut(m as usize)?;
        let rest = if last { x.left } else { x.right };
        x.left = NIL;
        x.right = NIL;
        x.size = 1;
        self.set_link(link, rest);
        Some(m)
    }

    /// How many elements satisfy `pred`, which must hold for a prefix of the order.
    fn count_prefix(&self, pred: &dyn Fn(f64, &[u8]) -> bool) -> usize {
        let mut n = self.root;
        let mut count = 0;
        while let Some(x) = self.node(n) {
            if pred(x.score, &x.member) {
                count += self.size(x.left) + 1;
                n = x.right;
            } else {
                n = x.left;
            }
        }
        count
    }

    /// The element of rank `k` (0-based).
    fn select(&self, mut k: usize) -> Option<(f64, &Bytes)> {
        let mut n = self.root;
        while let Some(x) = self.node(n) {
            let ls = self.size(x.left);
            match k.cmp(&ls) {
                Ordering::Less => n = x.left,
                Ordering::Equal => return Some((x.score, &x.member)),
                Ordering::Greater => {
                    k -= ls + 1;
                    n = x.right;
                }
            }
        }
        None
    }

    /// Elements of ranks `lo..hi` in order, appended to `out`.
    fn collect(&self, n: u32, base: usize, lo: usize, hi: usize, out: &mut Vec<(Bytes, f64)>) {
        let Some(x) = self.node(n) else { return };
        let size = x.size as usize;
        if base >= hi || base + size <= lo {
            return;
        }
        let ls = self.size(x.left);
        self.collect(x.left, base, lo, hi, out);
        let me = base + ls;
        if (lo..hi).contains(&me) {
            // A copy: cloning would turn the stored member into a shared one, which
            // allocates a reference-count block that then stays for the member's life.
            out.push((Bytes::copy_from_slice(&x.member), x.score));
        }
        self.collect(x.right, me + 1, lo, hi, out);
    }

    /// Heap bytes, the members' own blocks estimated from `samples` of them (0: all).
    fn heap_bytes(&self, samples: usize) -> usize {
        let live = self.nodes.iter().filter(|x| x.size > 0);
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + sampled_sum(live.map(|x| bytes_heap(&x.member)), self.len(), samples)
    }
}

/// The big form: the treap plus a member index over its node numbers (4 bytes a slot; the
/// member is stored once, in its node, with its hash).
#[derive(Debug, Clone)]
struct Big {
    tree: Treap,
    index: HashTable<u32>,
    hasher: ahash::RandomState,
}

impl Big {
    fn with_capacity(n: usize) -> Big {
        let mut tree = Treap::new();
        tree.nodes.reserve(n);
        Big {
            tree,
            index: HashTable::with_capacity(n),
            hasher: ahash::RandomState::new(),
        }
    }

    /// The node holding `member`.
    fn find(&self, member: &[u8]) -> Option<u32> {
        let nodes = &self.tree.nodes;
        self.index
            .find(self.hasher.hash_one(member), |&i| {
                nodes.get(i as usize).is_some_and(|x| x.member == member)
            })
            .copied()
    }

    fn score(&self, member: &[u8]) -> Option<f64> {
        self.find(member)
            .and_then(|i| self.tree.node(i))
            .map(|x| x.score)
    }

    /// Adds a member known to be absent.
    fn insert_new(&mut self, score: f64, member: Bytes) {
        let hash = self.hasher.hash_one(&member[..]);
        let i = self.tree.insert(score, member, hash);
        let nodes = &self.tree.nodes;
        self.index
            .insert_unique(hash, i, |&j| nodes.get(j as usize).map_or(0, |x| x.hash));
    }

    /// Moves node `i` to a new score (unlinked, re-scored, linked again: the same node).
    fn rescore(&mut self, i: u32, score: f64) {
        if self.tree.detach(i) {
            if let Some(x) = self.tree.nodes.get_mut(i as usize) {
                x.score = score;
            }
            self.tree.attach(i);
        }
    }

    /// Unindexes and frees node `i` (already unlinked from the tree).
    fn forget(&mut self, i: u32) -> Option<(f64, Bytes)> {
        let hash = self.tree.node(i)?.hash;
        if let Ok(slot) = self.index.find_entry(hash, |&j| j == i) {
            slot.remove();
        }
        self.tree.release(i)
    }

    fn remove(&mut self, member: &[u8]) -> bool {
        match self.find(member) {
            Some(i) => {
                self.tree.detach(i);
                self.forget(i).is_some()
            }
            None => false,
        }
    }

    fn heap_bytes(&self, samples: usize) -> usize {
        self.tree.heap_bytes(samples) + self.index.capacity() * 5
    }

    /// ZSCAN over node numbers, downwards from `cursor` (0 starts at the top). Nodes never
    /// move, so an element present for the whole scan is visited exactly once; slots freed
    /// and reused meanwhile may or may not be (Redis's guarantee). Visits at most `count`
    /// elements, and at most ten times as many slots.
    fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&Bytes, f64)) -> u64 {
        let len = self.tree.nodes.len();
        let mut k = match usize::try_from(cursor) {
            Ok(0) | Err(_) => len,
            Ok(c) => c.min(len),
        };
        let (mut seen, mut slots) = (0, 0);
        let count = count.max(1);
        while k > 0 && seen < count && slots < count * 10 {
            k -= 1;
            slots += 1;
            if let Some(x) = self.tree.nodes.get(k).filter(|x| x.size > 0) {
                f(&x.member, x.score);
                seen += 1;
            }
        }
        k as u64
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
