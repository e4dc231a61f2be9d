//! Big collections written a range of elements at a time, so that no single step of the
//! snapshot stepper (`shard::snapshot`) serialises a million-member hash, set, sorted set or
//! list in one go. The bytes are exactly what `PartWriter::key` writes for the same value
//! in one call (same record head, same element order, same quicklist node cuts), so a
//! stepped snapshot and a one-shot one are the same file.
//!
//! The caller keeps the value unchanged between the steps of one record: the stepper
//! finishes a record in progress before its key is written, deleted or expires
//! (`Db::pre_write`). Pure code, run by the shard that owns the value.

use super::packed::ListpackWriter;
use super::rdb::{
    list_node_fits, put_len, PartWriter, ValRef, OP_EXPIRETIME_MS, QUICKLIST_PACKED, TYPE_HASH,
    TYPE_LIST_QUICKLIST_2, TYPE_SET, TYPE_ZSET_2,
};
use crate::shard::value::ObjRef;

/// Collections with more elements than this are written in steps.
pub const BIG_ELEMENTS: usize = 1024;

/// How far one big record has been written.
pub struct BigCursor {
    /// Elements written so far.
    done: usize,
    /// Elements in the value when the record started (a change would be a bug upstream).
    total: usize,
    /// Lists: the quicklist node being filled, its index and the node count of the record.
    node: ListpackWriter,
    node_index: usize,
    nodes: usize,
}

impl BigCursor {
    /// Elements written so far and in all.
    pub fn progress(&self) -> (usize, usize) {
        (self.done, self.total)
    }
}

/// Element count of a value the stepper writes in steps; `None` for everything written in
/// one go (strings, and collections in a compact encoding or with few elements).
pub fn steppable(val: &ValRef<'_>) -> Option<usize> {
    let n = match val {
        ValRef::Obj(ObjRef::Hash(h)) if h.encoding() == "hashtable" => h.len(),
        ValRef::Obj(ObjRef::Set(s)) if s.encoding() == "hashtable" => s.len(),
        ValRef::Obj(ObjRef::ZSet(z)) if z.encoding() == "skiplist" => z.len(),
        ValRef::Obj(ObjRef::List(l)) => l.len(),
        _ => return None,
    };
    (n > BIG_ELEMENTS).then_some(n)
}

impl PartWriter {
    /// Starts the record of a big collection: writes its expiry, type, key and length, and
    /// returns the cursor `big_step` continues from. `None` (nothing written) for a value
    /// small enough to write at once with `key`.
    pub fn big_begin(&mut self, key: &[u8], val: ValRef<'_>, expire_at: u64) -> Option<BigCursor> {
        let total = steppable(&val)?;
        let mut cur = BigCursor {
            done: 0,
            total,
            node: ListpackWriter::default(),
            node_index: 0,
            nodes: 0,
        };
        if expire_at != 0 {
            self.buf.push(OP_EXPIRETIME_MS);
            self.buf.extend_from_slice(&expire_at.to_le_bytes());
        }
        let (kind, len) = match val {
            ValRef::Obj(ObjRef::Hash(_)) => (TYPE_HASH, total),
            ValRef::Obj(ObjRef::Set(_)) => (TYPE_SET, total),
            ValRef::Obj(ObjRef::ZSet(_)) => (TYPE_ZSET_2, total),
            ValRef::Obj(ObjRef::List(l)) => {
                cur.nodes = list_node_count(l.iter());
                (TYPE_LIST_QUICKLIST_2, cur.nodes)
            }
            ValRef::Str(_) | ValRef::Obj(ObjRef::Stream(_)) => return None,
        };
        self.buf.push(kind);
        self.string(key);
        put_len(&mut self.buf, len as u64);
        Some(cur)
    }

    /// Writes up to `budget` more elements of the record `cur` started; true once the
    /// record is complete. `val` must be the value `big_begin` was given, unchanged.
    pub fn big_step(&mut self, val: ValRef<'_>, cur: &mut BigCursor, budget: usize) -> bool {
        let to = cur.done.saturating_add(budget.max(1)).min(cur.total);
        let (from, total) = (cur.done, cur.total);
        match val {
            ValRef::Obj(ObjRef::Hash(h)) => {
                for i in from..to {
                    if let Some((f, v)) = h.table_pair_at(i) {
                        self.string(f);
                        self.string(v);
                    }
                }
            }
            ValRef::Obj(ObjRef::Set(s)) => {
                for i in from..to {
                    if let Some(m) = s.table_member_at(i) {
                        self.string(m);
                    }
                }
            }
            ValRef::Obj(ObjRef::ZSet(z)) => {
                // Highest first, as the one-shot writer (and Redis): the elements written
                // so far are the top `from` ranks.
                let (lo, hi) = (total - to, total - from);
                if hi > lo {
                    for (m, s) in z
                        .range_by_rank(lo as i64, hi as i64 - 1, false)
                        .iter()
                        .rev()
                    {
                        self.string(m);
                        self.buf.extend_from_slice(&s.to_le_bytes());
                    }
                }
            }
            ValRef::Obj(ObjRef::List(l)) => {
                let fill = crate::types::limits::list_max_size();
                let depth = crate::types::limits::list_compress_depth().max(0) as usize;
                for v in l.iter_from(from).take(to - from) {
                    if cur.node.count() > 0
                        && !list_node_fits(cur.node.bytes(), cur.node.count(), v.len(), fill)
                    {
                        self.list_node(cur, depth);
                    }
                    cur.node.push(v);
                }
                if to == total && cur.node.count() > 0 {
                    self.list_node(cur, depth);
                }
            }
            ValRef::Str(_) | ValRef::Obj(ObjRef::Stream(_)) => {}
        }
        cur.done = to;
        to == total
    }

    /// Writes the list node `cur` has filled (LZF when it is an inner node under
    /// `list-compress-depth`, as the one-shot writer) and starts the next.
    fn list_node(&mut self, cur: &mut BigCursor, depth: usize) {
        let node = std::mem::take(&mut cur.node).finish();
        put_len(&mut self.buf, QUICKLIST_PACKED);
        let i = cur.node_index;
        cur.node_index += 1;
        let inner = depth > 0 && i >= depth && i + depth < cur.nodes;
        if inner && self.node_lzf(&node) {
            return;
        }
        self.string(&node);
    }
}

/// The number of quicklist nodes `rdb::list_nodes` cuts these elements into, without
/// building them.
fn list_node_count<'a>(elems: impl Iterator<Item = &'a [u8]>) -> usize {
    let fill = crate::types::limits::list_max_size();
    let (mut nodes, mut bytes, mut count) = (0usize, 0usize, 0usize);
    for v in elems {
        if count > 0 && !list_node_fits(bytes, count, v.len(), fill) {
            nodes += 1;
            (bytes, count) = (0, 0);
        }
        if count == 0 {
            bytes = ListpackWriter::EMPTY_BYTES;
        }
        bytes += ListpackWriter::entry_size(v);
        count += 1;
    }
    nodes + usize::from(count > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::hash::Hash;
    use crate::types::list::List;
    use crate::types::set::Set;
    use crate::types::zset::ZSet;
    use bytes::Bytes;

    /// The record written in steps of `step` elements.
    fn stepped(key: &[u8], val: ValRef<'_>, exp: u64, step: usize) -> Vec<u8> {
        let mut w = PartWriter::for_snapshots(true);
        let Some(mut cur) = w.big_begin(key, val, exp) else {
            panic!("not steppable");
        };
        let mut rounds = 0;
        while !w.big_step(val, &mut cur, step) {
            rounds += 1;
        }
        assert_eq!(rounds + 1, cur.total.div_ceil(step), "steps of {step}");
        w.buf
    }

    fn one_shot(key: &[u8], val: ValRef<'_>, exp: u64) -> Vec<u8> {
        let mut w = PartWriter::for_snapshots(true);
        w.key(key, val, exp);
        w.buf
    }

    fn b(s: String) -> Bytes {
        Bytes::from(s)
    }

    #[test]
    fn stepped_records_equal_one_shot_records() {
        let n = 5000;
        let mut h = Hash::new();
        let mut s = Set::new();
        let mut l = List::new();
        let mut pairs = Vec::new();
        for i in 0..n {
            // Mixed lengths and integers: LZF, integer encodings and node cuts all show.
            let v = if i % 3 == 0 {
                i.to_string()
            } else {
                format!("value-{i}-{}", "x".repeat(i % 90))
            };
            h.insert(b(format!("field:{i}")), b(v.clone()));
            s.add(b(format!("m{i}")));
            l.push(crate::types::list::End::Tail, v);
            pairs.push((b(format!("z{i}")), (i % 97) as f64 * 0.5));
        }
        let z = ZSet::from_pairs(pairs);
        let vals = [
            ValRef::Obj(ObjRef::Hash(&h)),
            ValRef::Obj(ObjRef::Set(&s)),
            ValRef::Obj(ObjRef::ZSet(&z)),
            ValRef::Obj(ObjRef::List(&l)),
        ];
        for val in vals {
            for exp in [0, 1_900_000_000_000] {
                let whole = one_shot(b"k", val, exp);
                for step in [1, 7, 1000, 4999, 100_000] {
                    assert_eq!(stepped(b"k", val, exp, step), whole, "step {step}");
                }
            }
        }
        assert!(PartWriter::new(false)
            .big_begin(b"k", ValRef::Str(b"v"), 0)
            .is_none());
    }

    #[test]
    fn list_node_counts_match_the_cutter() {
        for (n, len) in [(1, 3), (2000, 10), (3000, 200), (500, 9000)] {
            let mut l = List::new();
            for i in 0..n {
                let v = if i % 5 == 0 {
                    (i * 1000).to_string()
                } else {
                    "y".repeat(len)
                };
                l.push(crate::types::list::End::Tail, v);
            }
            assert_eq!(
                list_node_count(l.iter()),
                super::super::rdb::list_nodes(&l).len()
            );
        }
    }
}
