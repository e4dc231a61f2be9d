//! The big form's order-statistics treap: a randomized balanced BST in a node arena (nodes
//! never move), each node carrying its subtree size, plus `Big`, the treap with its member
//! index over node numbers. Owned by the sorted set's shard thread.

use std::cmp::Ordering;

use bytes::Bytes;
use hashbrown::HashTable;

use super::super::{bytes_heap, sampled_sum, Rng};
use super::cmp_key;

pub(super) const NIL: u32 = u32::MAX;

/// Where a subtree hangs: the root, or a child pointer of a node.
#[derive(Clone, Copy)]
pub(super) enum Link {
    Root,
    Left(u32),
    Right(u32),
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) score: f64,
    pub(super) member: Bytes,
    /// The member's hash in the owning set's index (kept so the index never rehashes).
    pub(super) hash: u64,
    pub(super) prio: u32,
    pub(super) left: u32,
    pub(super) right: u32,
    /// Elements in this subtree; 0 marks a free slot.
    pub(super) size: u32,
}

/// Arena-allocated treap ordered by (score, member), max-heap on `prio`, with subtree sizes.
/// Invariants: every reachable index is in `nodes`; `size` = 1 + sizes of children.
#[derive(Debug, Clone)]
pub(super) struct Treap {
    pub(super) nodes: Vec<Node>,
    pub(super) free: Vec<u32>,
    pub(super) root: u32,
    pub(super) rng: Rng,
    /// Scratch: the nodes above the one `detach` found.
    pub(super) path: Vec<u32>,
}

impl Treap {
    pub(super) fn new() -> Treap {
        Treap {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            rng: Rng::from_entropy(),
            path: Vec::new(),
        }
    }

    pub(super) fn node(&self, n: u32) -> Option<&Node> {
        self.nodes.get(n as usize)
    }

    pub(super) fn size(&self, n: u32) -> usize {
        self.node(n).map_or(0, |x| x.size as usize)
    }

    pub(super) fn len(&self) -> usize {
        self.size(self.root)
    }

    pub(super) fn fix(&mut self, n: u32) {
        let (l, r) = match self.node(n) {
            Some(x) => (x.left, x.right),
            None => return,
        };
        let s = 1 + self.size(l) + self.size(r);
        if let Some(x) = self.nodes.get_mut(n as usize) {
            x.size = s as u32;
        }
    }

    pub(super) fn set_left(&mut self, n: u32, c: u32) {
        if let Some(x) = self.nodes.get_mut(n as usize) {
            x.left = c;
        }
        self.fix(n);
    }

    pub(super) fn set_right(&mut self, n: u32, c: u32) {
        if let Some(x) = self.nodes.get_mut(n as usize) {
            x.right = c;
        }
        self.fix(n);
    }

    /// Splits `t` into (keys before (score, member), the rest); with `inclusive` the key
    /// itself goes left.
    pub(super) fn split(
        &mut self,
        t: u32,
        score: f64,
        member: &[u8],
        inclusive: bool,
    ) -> (u32, u32) {
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
    pub(super) fn merge(&mut self, a: u32, b: u32) -> u32 {
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
    pub(super) fn child(&self, link: Link) -> u32 {
        match link {
            Link::Root => self.root,
            Link::Left(p) => self.node(p).map_or(NIL, |x| x.left),
            Link::Right(p) => self.node(p).map_or(NIL, |x| x.right),
        }
    }

    /// Points `link` at `c` (sizes are the caller's business).
    pub(super) fn set_link(&mut self, link: Link, c: u32) {
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
    pub(super) fn bump(&mut self, n: u32, grow: bool) {
        if let Some(x) = self.nodes.get_mut(n as usize) {
            x.size = if grow { x.size + 1 } else { x.size - 1 };
        }
    }

    /// A new unlinked node (a free slot is reused: nodes never move, which is what lets the
    /// member index hold node numbers and ZSCAN walk the arena).
    pub(super) fn alloc(&mut self, score: f64, member: Bytes, hash: u64) -> u32 {
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
    pub(super) fn release(&mut self, i: u32) -> Option<(f64, Bytes)> {
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
    pub(super) fn attach(&mut self, i: u32) {
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
    pub(super) fn insert(&mut self, score: f64, member: Bytes, hash: u64) -> u32 {
        let i = self.alloc(score, member, hash);
        self.attach(i);
        i
    }

    /// Unlinks node `i` (found by its key; the node itself is recognised by number): one
    /// descent remembering the nodes passed, each of those loses one element, and the
    /// node's two subtrees are merged into its place. False if `i` is not in the tree.
    pub(super) fn detach(&mut self, i: u32) -> bool {
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
    pub(super) fn detach_edge(&mut self, last: bool) -> Option<u32> {
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
    pub(super) fn count_prefix(&self, pred: &dyn Fn(f64, &[u8]) -> bool) -> usize {
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
    pub(super) fn select(&self, mut k: usize) -> Option<(f64, &Bytes)> {
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
    pub(super) fn collect(
        &self,
        n: u32,
        base: usize,
        lo: usize,
        hi: usize,
        out: &mut Vec<(Bytes, f64)>,
    ) {
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
    pub(super) fn heap_bytes(&self, samples: usize) -> usize {
        let live = self.nodes.iter().filter(|x| x.size > 0);
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + sampled_sum(live.map(|x| bytes_heap(&x.member)), self.len(), samples)
    }
}

/// The big form: the treap plus a member index over its node numbers (4 bytes a slot; the
/// member is stored once, in its node, with its hash).
#[derive(Debug, Clone)]
pub(super) struct Big {
    pub(super) tree: Treap,
    pub(super) index: HashTable<u32>,
    pub(super) hasher: ahash::RandomState,
}

impl Big {
    pub(super) fn with_capacity(n: usize) -> Big {
        let mut tree = Treap::new();
        tree.nodes.reserve(n);
        Big {
            tree,
            index: HashTable::with_capacity(n),
            hasher: ahash::RandomState::new(),
        }
    }

    /// The node holding `member`.
    pub(super) fn find(&self, member: &[u8]) -> Option<u32> {
        let nodes = &self.tree.nodes;
        self.index
            .find(self.hasher.hash_one(member), |&i| {
                nodes.get(i as usize).is_some_and(|x| x.member == member)
            })
            .copied()
    }

    pub(super) fn score(&self, member: &[u8]) -> Option<f64> {
        self.find(member)
            .and_then(|i| self.tree.node(i))
            .map(|x| x.score)
    }

    /// Adds a member known to be absent.
    pub(super) fn insert_new(&mut self, score: f64, member: Bytes) {
        let hash = self.hasher.hash_one(&member[..]);
        let i = self.tree.insert(score, member, hash);
        let nodes = &self.tree.nodes;
        self.index
            .insert_unique(hash, i, |&j| nodes.get(j as usize).map_or(0, |x| x.hash));
    }

    /// Moves node `i` to a new score (unlinked, re-scored, linked again: the same node).
    pub(super) fn rescore(&mut self, i: u32, score: f64) {
        if self.tree.detach(i) {
            if let Some(x) = self.tree.nodes.get_mut(i as usize) {
                x.score = score;
            }
            self.tree.attach(i);
        }
    }

    /// Unindexes and frees node `i` (already unlinked from the tree).
    pub(super) fn forget(&mut self, i: u32) -> Option<(f64, Bytes)> {
        let hash = self.tree.node(i)?.hash;
        if let Ok(slot) = self.index.find_entry(hash, |&j| j == i) {
            slot.remove();
        }
        self.tree.release(i)
    }

    pub(super) fn remove(&mut self, member: &[u8]) -> bool {
        match self.find(member) {
            Some(i) => {
                self.tree.detach(i);
                self.forget(i).is_some()
            }
            None => false,
        }
    }

    pub(super) fn heap_bytes(&self, samples: usize) -> usize {
        self.tree.heap_bytes(samples) + self.index.capacity() * 5
    }

    /// ZSCAN over node numbers, downwards from `cursor` (0 starts at the top). Nodes never
    /// move, so an element present for the whole scan is visited exactly once; slots freed
    /// and reused meanwhile may or may not be (Redis's guarantee). Visits at most `count`
    /// elements, and at most ten times as many slots.
    pub(super) fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&Bytes, f64)) -> u64 {
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
