//! Streams (the data side of Redis's t_stream.c): entries by ID in a B-tree, each a flat
//! field/value list; the stream's counters (last ID, first ID, the largest deleted ID, entries
//! ever added) that XINFO, XSETID and the consumer groups' lag read; and the consumer groups
//! with their pending entries lists (PEL) and consumers. Owned by the shard thread that owns
//! the key; nothing here knows RESP or the keyspace.
//!
//! Redis keeps entries in listpack nodes of up to `stream-node-max-entries` entries
//! (and `stream-node-max-bytes`); approximate trimming (`MAXLEN ~`, `MINID ~`) removes whole
//! nodes only. The nodes are kept here as counts (`nodes`: entries ever placed in each node,
//! how many are still live, and about how many bytes their listpack would take), closed as
//! Redis closes them (`stream-node-max-entries`, `stream-node-max-bytes`), so `~` removes
//! about what Redis would. The byte size is an estimate of Redis's listpack, so with
//! entries near the byte bound the node cuts may differ by an entry.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;

/// `stream-node-max-entries` (0: no limit by count).
static NODE_MAX_ENTRIES: AtomicUsize = AtomicUsize::new(100);
/// `stream-node-max-bytes` (0: no limit by size, as Redis then uses its 1 GB cap).
static NODE_MAX_BYTES: AtomicUsize = AtomicUsize::new(4096);

pub fn node_max_entries() -> usize {
    NODE_MAX_ENTRIES.load(Relaxed)
}
pub fn set_node_max_entries(n: usize) {
    NODE_MAX_ENTRIES.store(n, Relaxed)
}
pub fn node_max_bytes() -> usize {
    NODE_MAX_BYTES.load(Relaxed)
}
pub fn set_node_max_bytes(n: usize) {
    NODE_MAX_BYTES.store(n, Relaxed)
}

/// A stream entry ID: milliseconds and a sequence number.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    pub fn new(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    /// The next ID, `None` past the largest.
    pub fn next(self) -> Option<StreamId> {
        if self.seq < u64::MAX {
            Some(StreamId::new(self.ms, self.seq + 1))
        } else if self.ms < u64::MAX {
            Some(StreamId::new(self.ms + 1, 0))
        } else {
            None
        }
    }

    /// The previous ID, `None` before 0-0.
    pub fn prev(self) -> Option<StreamId> {
        if self.seq > 0 {
            Some(StreamId::new(self.ms, self.seq - 1))
        } else if self.ms > 0 {
            Some(StreamId::new(self.ms - 1, u64::MAX))
        } else {
            None
        }
    }

    pub fn is_zero(self) -> bool {
        self == StreamId::MIN
    }

    /// `ms-seq`, as replies spell it.
    pub fn to_bytes(self) -> Bytes {
        Bytes::from(format!("{}-{}", self.ms, self.seq))
    }

    /// The 16 bytes (big-endian ms, seq) RDB files key nodes and PEL entries with.
    pub fn to_be(self) -> [u8; 16] {
        let mut b = [0; 16];
        b[..8].copy_from_slice(&self.ms.to_be_bytes());
        b[8..].copy_from_slice(&self.seq.to_be_bytes());
        b
    }

    pub fn from_be(b: &[u8]) -> Option<StreamId> {
        let ms = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
        let seq = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
        Some(StreamId::new(ms, seq))
    }
}

/// How an ID argument was spelled, before it is resolved against a stream.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IdArg {
    /// `ms-seq`, or `ms` alone (the sequence the caller supplies for a missing one).
    Exact(u64, Option<u64>),
    /// `ms-*` (XADD only).
    AutoSeq(u64),
    /// `*` (XADD only).
    Auto,
}

/// An unsigned decimal as Redis's `string2ull` takes it here: digits only.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Parses `ms-seq`, `ms`, and (when `auto` is allowed) `ms-*` and `*`. IDs longer than
/// 127 bytes are invalid, as in Redis.
pub fn parse_id(s: &[u8], auto: bool) -> Option<IdArg> {
    if s.len() > 127 {
        return None;
    }
    if auto && s == b"*" {
        return Some(IdArg::Auto);
    }
    match memchr::memchr(b'-', s) {
        None => Some(IdArg::Exact(parse_u64(s)?, None)),
        Some(i) => {
            let ms = parse_u64(s.get(..i)?)?;
            let rest = s.get(i + 1..)?;
            if auto && rest == b"*" {
                return Some(IdArg::AutoSeq(ms));
            }
            Some(IdArg::Exact(ms, Some(parse_u64(rest)?)))
        }
    }
}

/// A plain ID (`ms-seq`, or `ms` with `missing_seq`); with `special`, `-` and `+` too.
pub fn parse_plain(s: &[u8], missing_seq: u64, special: bool) -> Option<StreamId> {
    if special && s == b"-" {
        return Some(StreamId::MIN);
    }
    if special && s == b"+" {
        return Some(StreamId::MAX);
    }
    match parse_id(s, false)? {
        IdArg::Exact(ms, seq) => Some(StreamId::new(ms, seq.unwrap_or(missing_seq))),
        _ => None,
    }
}

/// One pending entry of a group: delivered to `consumer`, not yet acknowledged.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub consumer: Bytes,
    /// Unix ms of the last delivery.
    pub delivery_time: u64,
    pub delivery_count: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Consumer {
    /// Unix ms of its last interaction (what XINFO's idle counts from).
    pub seen_time: u64,
    /// The IDs pending for it (each also in the group's PEL).
    pub pel: BTreeSet<StreamId>,
}

/// "Unknown": the group's count of entries read cannot be derived (Redis's
/// SCG_INVALID_ENTRIES_READ).
pub const ENTRIES_READ_UNKNOWN: i64 = -1;

#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    pub last_id: StreamId,
    pub entries_read: i64,
    pub pel: BTreeMap<StreamId, Pending>,
    pub consumers: BTreeMap<Bytes, Consumer>,
}

impl Group {
    pub fn new(last_id: StreamId, entries_read: i64) -> Group {
        Group {
            last_id,
            entries_read,
            pel: BTreeMap::new(),
            consumers: BTreeMap::new(),
        }
    }

    /// The consumer, created when missing; returns whether it was created.
    pub fn consumer(&mut self, name: &[u8], now: u64) -> (&mut Consumer, bool) {
        let created = !self.consumers.contains_key(name);
        let c = self
            .consumers
            .entry(Bytes::copy_from_slice(name))
            .or_insert_with(|| Consumer {
                seen_time: now,
                pel: BTreeSet::new(),
            });
        (c, created)
    }

    /// Acknowledges `id`: out of the PEL and its consumer's list. Whether it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        match self.pel.remove(&id) {
            Some(p) => {
                if let Some(c) = self.consumers.get_mut(&p.consumer) {
                    c.pel.remove(&id);
                }
                true
            }
            None => false,
        }
    }

    /// Records a delivery of `id` to `consumer` (moving it from another consumer if it was
    /// pending there). `count`: `None` adds one to the count, `Some(n)` sets it.
    pub fn deliver(&mut self, id: StreamId, consumer: &[u8], now: u64, count: Option<u64>) {
        let prev = self
            .pel
            .get(&id)
            .map(|p| (p.consumer.clone(), p.delivery_count));
        if let Some((owner, _)) = &prev {
            if owner.as_ref() != consumer {
                if let Some(c) = self.consumers.get_mut(owner) {
                    c.pel.remove(&id);
                }
            }
        }
        let name = match self.consumers.get_key_value(consumer) {
            Some((k, _)) => k.clone(),
            None => Bytes::copy_from_slice(consumer),
        };
        let delivery_count = match count {
            Some(n) => n,
            None => prev.map_or(1, |p| p.1 + 1),
        };
        self.consumers
            .entry(name.clone())
            .or_insert_with(|| Consumer {
                seen_time: now,
                pel: BTreeSet::new(),
            })
            .pel
            .insert(id);
        self.pel.insert(
            id,
            Pending {
                consumer: name,
                delivery_time: now,
                delivery_count,
            },
        );
    }

    /// Deletes a consumer; returns how many entries it had pending (they leave the PEL).
    pub fn delete_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let c = self.consumers.remove(name)?;
        for id in &c.pel {
            self.pel.remove(id);
        }
        Some(c.pel.len())
    }
}

/// One node of Redis's layout, as counts (see the module note).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    /// Entries placed in it (deleted ones included).
    total: u32,
    /// Entries still in it.
    live: u32,
    /// About the bytes of Redis's listpack for it.
    bytes: usize,
}

#[derive(Clone, Debug, PartialEq)]
struct Entry {
    /// Sequence number of its node (`Stream::node_base` names `nodes[0]`).
    node: u64,
    fields: Box<[Bytes]>,
}

/// Trimming: by length, or by lowest ID kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Stream {
    entries: BTreeMap<StreamId, Entry>,
    nodes: VecDeque<Node>,
    node_base: u64,
    pub last_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Bytes, Group>,
    /// Bytes of fields and values (MEMORY USAGE's estimate).
    data_bytes: usize,
}

/// Why an XADD ID is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddError {
    /// Not above the top item.
    TooSmall,
    /// 0-0.
    Zero,
    /// The stream already holds the largest ID.
    Exhausted,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry's ID (0-0 when empty, as Redis's `first_id`).
    pub fn first_id(&self) -> StreamId {
        self.entries.keys().next().copied().unwrap_or_default()
    }

    /// The ID an XADD would use for `arg` at `now_ms`.
    pub fn next_id(&self, arg: IdArg, now_ms: u64) -> Result<StreamId, AddError> {
        let last = self.last_id;
        let id = match arg {
            IdArg::Auto => {
                if now_ms > last.ms {
                    StreamId::new(now_ms, 0)
                } else {
                    last.next().ok_or(AddError::Exhausted)?
                }
            }
            IdArg::AutoSeq(ms) => {
                if ms == last.ms {
                    if last.seq == u64::MAX {
                        return Err(AddError::TooSmall);
                    }
                    StreamId::new(ms, last.seq + 1)
                } else if ms > last.ms {
                    StreamId::new(ms, 0)
                } else {
                    return Err(AddError::TooSmall);
                }
            }
            IdArg::Exact(ms, seq) => {
                let id = StreamId::new(ms, seq.unwrap_or(0));
                if id.is_zero() {
                    return Err(AddError::Zero);
                }
                id
            }
        };
        if last == StreamId::MAX && arg == IdArg::Auto {
            return Err(AddError::Exhausted);
        }
        if id <= last {
            return Err(AddError::TooSmall);
        }
        Ok(id)
    }

    /// Appends an entry whose ID is above `last_id` (checked by `next_id`).
    pub fn append(&mut self, id: StreamId, fields: Vec<Bytes>) {
        let max = node_max_entries();
        let max_bytes = match node_max_bytes() {
            0 => 1 << 30,
            n => n.min(1 << 30),
        };
        let raw: usize = fields.iter().map(|f| f.len()).sum();
        let open = self
            .nodes
            .back()
            .is_some_and(|n| n.bytes + raw < max_bytes && (max == 0 || (n.total as usize) < max));
        if !open {
            // The master entry: counts, the field names, a terminator.
            let names: usize = fields.iter().step_by(2).map(|f| f.len() + 2).sum();
            self.nodes.push_back(Node {
                total: 0,
                live: 0,
                bytes: 7 + 8 + names,
            });
        }
        let node = self.node_base + self.nodes.len() as u64 - 1;
        if let Some(n) = self.nodes.back_mut() {
            n.total += 1;
            n.live += 1;
            n.bytes += 8 + fields.iter().map(|f| f.len() + 2).sum::<usize>();
        }
        self.data_bytes += fields.iter().map(|f| f.len() + 8).sum::<usize>() + 32;
        self.entries.insert(
            id,
            Entry {
                node,
                fields: fields.into_boxed_slice(),
            },
        );
        self.last_id = id;
        self.entries_added += 1;
    }

    pub fn get(&self, id: StreamId) -> Option<&[Bytes]> {
        self.entries.get(&id).map(|e| &*e.fields)
    }

    /// Entries with `start <= id <= end`, at most `count`, oldest first or (`rev`) newest
    /// first.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
        count: Option<usize>,
        rev: bool,
    ) -> Vec<(StreamId, &[Bytes])> {
        if start > end {
            return Vec::new();
        }
        let limit = count.unwrap_or(usize::MAX);
        let it = self.entries.range(start..=end);
        if rev {
            it.rev()
                .take(limit)
                .map(|(i, e)| (*i, &*e.fields))
                .collect()
        } else {
            it.take(limit).map(|(i, e)| (*i, &*e.fields)).collect()
        }
    }

    /// The last entry, if any.
    pub fn last_entry(&self) -> Option<(StreamId, &[Bytes])> {
        self.entries
            .iter()
            .next_back()
            .map(|(i, e)| (*i, &*e.fields))
    }

    pub fn first_entry(&self) -> Option<(StreamId, &[Bytes])> {
        self.entries.iter().next().map(|(i, e)| (*i, &*e.fields))
    }

    fn unlink(&mut self, e: &Entry) {
        self.data_bytes = self
            .data_bytes
            .saturating_sub(e.fields.iter().map(|f| f.len() + 8).sum::<usize>() + 32);
        let idx = e.node.wrapping_sub(self.node_base) as usize;
        if let Some(n) = self.nodes.get_mut(idx) {
            n.live = n.live.saturating_sub(1);
        }
        // Empty nodes at the head go (Redis frees a node whose entries are all deleted).
        while self.nodes.front().is_some_and(|n| n.live == 0)
            && (self.nodes.len() > 1 || self.entries.is_empty())
        {
            self.nodes.pop_front();
            self.node_base += 1;
        }
    }

    /// XDEL of one ID: whether it was there. Moves `max_deleted` up.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some(e) = self.entries.remove(&id) else {
            return false;
        };
        self.unlink(&e);
        if id > self.max_deleted {
            self.max_deleted = id;
        }
        true
    }

    /// Trims from the oldest end; `approx` removes whole nodes only; `limit` caps the
    /// entries removed (0: none, `None`: no cap). Returns how many went.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: Option<u64>) -> u64 {
        let mut removed = 0u64;
        let cap = limit.unwrap_or(u64::MAX);
        if approx {
            loop {
                if self.nodes.is_empty() {
                    break;
                }
                let base = self.node_base;
                // The head node's live entries, oldest first.
                let ids: Vec<StreamId> = self
                    .entries
                    .iter()
                    .take_while(|(_, e)| e.node == base)
                    .map(|(i, _)| *i)
                    .collect();
                if ids.is_empty() {
                    // Unreachable (an emptied head node goes at once): never spin.
                    self.nodes.pop_front();
                    self.node_base += 1;
                    continue;
                }
                let fits = match how {
                    Trim::MaxLen(n) => (self.entries.len() - ids.len()) as u64 >= n,
                    Trim::MinId(min) => ids.last().is_some_and(|l| *l < min),
                };
                if !fits || removed + ids.len() as u64 > cap {
                    break;
                }
                for id in &ids {
                    if let Some(e) = self.entries.remove(id) {
                        self.unlink(&e);
                    }
                }
                removed += ids.len() as u64;
            }
            return removed;
        }
        while removed < cap {
            let Some((&id, _)) = self.entries.iter().next() else {
                break;
            };
            let go = match how {
                Trim::MaxLen(n) => self.entries.len() as u64 > n,
                Trim::MinId(min) => id < min,
            };
            if !go {
                break;
            }
            if let Some(e) = self.entries.remove(&id) {
                self.unlink(&e);
            }
            removed += 1;
        }
        removed
    }

    /// Whether an entry may have been deleted (XDEL) between `start` and `end` (Redis's
    /// `streamRangeHasTombstones`).
    pub fn has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.entries.is_empty() || self.max_deleted.is_zero() {
            return false;
        }
        start <= self.max_deleted && self.max_deleted <= end
    }

    /// The logical count of entries up to `id` (Redis's
    /// `streamEstimateDistanceFromFirstEverEntry`), or `ENTRIES_READ_UNKNOWN`.
    pub fn distance_from_first(&self, id: StreamId) -> i64 {
        if self.entries_added == 0 {
            return 0;
        }
        let added = self.entries_added as i64;
        if self.entries.is_empty() && id <= self.last_id {
            return added;
        }
        if id == self.last_id {
            return added;
        }
        if id > self.last_id {
            return ENTRIES_READ_UNKNOWN;
        }
        let first = self.first_id();
        if self.max_deleted.is_zero() || self.max_deleted < first {
            if id < first {
                return added - self.entries.len() as i64;
            }
            if id == first {
                return added - self.entries.len() as i64 + 1;
            }
        }
        ENTRIES_READ_UNKNOWN
    }

    /// A group's lag (XINFO GROUPS), `None` when it cannot be known.
    pub fn lag(&self, g: &Group) -> Option<i64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if g.entries_read != ENTRIES_READ_UNKNOWN && !self.has_tombstones(g.last_id, StreamId::MAX)
        {
            return Some(self.entries_added as i64 - g.entries_read);
        }
        let read = self.distance_from_first(g.last_id);
        (read != ENTRIES_READ_UNKNOWN).then(|| self.entries_added as i64 - read)
    }

    /// A group read delivered `id`: its counters move (XREADGROUP `>`).
    pub fn group_advance(&self, g: &mut Group, id: StreamId) {
        if g.entries_read != ENTRIES_READ_UNKNOWN && !self.has_tombstones(id, StreamId::MAX) {
            g.entries_read += 1;
        } else if self.entries_added > 0 {
            g.entries_read = self.distance_from_first(id);
        }
        g.last_id = id;
    }

    /// Approximate heap bytes (MEMORY USAGE).
    pub fn heap_bytes(&self) -> usize {
        let pel: usize = self
            .groups
            .values()
            .map(|g| 96 + g.pel.len() * 64 + g.consumers.len() * 64)
            .sum();
        self.data_bytes + self.nodes.len() * 8 + pel
    }

    /// Entries in ID order, for serialisation.
    pub fn iter(&self) -> impl Iterator<Item = (StreamId, &[Bytes])> {
        self.entries.iter().map(|(i, e)| (*i, &*e.fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn add(s: &mut Stream, ms: u64, seq: u64) {
        s.append(StreamId::new(ms, seq), vec![b("f"), b("v")]);
    }

    #[test]
    fn ids_parse_and_order() {
        assert_eq!(parse_id(b"5-3", true), Some(IdArg::Exact(5, Some(3))));
        assert_eq!(parse_id(b"5", true), Some(IdArg::Exact(5, None)));
        assert_eq!(parse_id(b"5-*", true), Some(IdArg::AutoSeq(5)));
        assert_eq!(parse_id(b"5-*", false), None);
        assert_eq!(parse_id(b"*", true), Some(IdArg::Auto));
        for bad in [
            &b""[..],
            b"-",
            b"a-1",
            b"1-",
            b"1-2-3",
            b"-1",
            b"18446744073709551616",
        ] {
            assert_eq!(parse_id(bad, true), None, "{:?}", bad);
        }
        assert_eq!(parse_plain(b"-", 0, true), Some(StreamId::MIN));
        assert_eq!(parse_plain(b"+", 0, true), Some(StreamId::MAX));
        assert_eq!(
            parse_plain(b"7", u64::MAX, true),
            Some(StreamId::new(7, u64::MAX))
        );
        assert!(StreamId::new(1, 9) < StreamId::new(2, 0));
        assert_eq!(StreamId::new(1, u64::MAX).next(), Some(StreamId::new(2, 0)));
        assert_eq!(StreamId::MAX.next(), None);
        assert_eq!(StreamId::new(2, 0).prev(), Some(StreamId::new(1, u64::MAX)));
        assert_eq!(
            StreamId::from_be(&StreamId::new(3, 4).to_be()),
            Some(StreamId::new(3, 4))
        );
    }

    #[test]
    fn next_id_follows_the_top_item() {
        let mut s = Stream::new();
        assert_eq!(s.next_id(IdArg::Exact(0, Some(0)), 10), Err(AddError::Zero));
        assert_eq!(s.next_id(IdArg::Auto, 10), Ok(StreamId::new(10, 0)));
        add(&mut s, 10, 0);
        assert_eq!(s.next_id(IdArg::Auto, 5), Ok(StreamId::new(10, 1)));
        assert_eq!(s.next_id(IdArg::AutoSeq(10), 0), Ok(StreamId::new(10, 1)));
        assert_eq!(s.next_id(IdArg::AutoSeq(9), 0), Err(AddError::TooSmall));
        assert_eq!(
            s.next_id(IdArg::Exact(10, None), 0),
            Err(AddError::TooSmall)
        );
        s.last_id = StreamId::MAX;
        assert_eq!(s.next_id(IdArg::Auto, 0), Err(AddError::Exhausted));
    }

    #[test]
    fn trims_exactly_and_by_whole_nodes() {
        let mut s = Stream::new();
        for i in 1..=250 {
            add(&mut s, i, 0);
        }
        // Nodes of 100, 100, 50: `~ 120` keeps 150 (one node goes), `~ 10` keeps the last
        // node (removing it would leave fewer than 10).
        assert_eq!(s.trim(Trim::MaxLen(120), true, None), 100);
        assert_eq!(s.len(), 150);
        assert_eq!(
            s.trim(Trim::MaxLen(10), true, Some(99)),
            0,
            "LIMIT stops before a node"
        );
        assert_eq!(s.trim(Trim::MaxLen(10), true, None), 100);
        assert_eq!(s.len(), 50);
        assert_eq!(s.trim(Trim::MaxLen(10), false, Some(5)), 5);
        assert_eq!(s.trim(Trim::MaxLen(10), false, None), 35);
        assert_eq!(s.first_id(), StreamId::new(241, 0));
        assert_eq!(s.trim(Trim::MinId(StreamId::new(245, 0)), false, None), 4);
        assert_eq!(s.len(), 6);
        assert_eq!(s.entries_added, 250);
        assert!(s.max_deleted.is_zero(), "trimming is not deletion");
    }

    #[test]
    fn deletions_and_the_groups_counters() {
        let mut s = Stream::new();
        for i in 1..=5 {
            add(&mut s, i, 0);
        }
        let mut g = Group::new(StreamId::MIN, 0);
        assert_eq!(s.lag(&g), Some(5));
        s.group_advance(&mut g, StreamId::new(1, 0));
        assert_eq!((g.entries_read, s.lag(&g)), (1, Some(4)));
        assert!(s.delete(StreamId::new(3, 0)));
        assert!(!s.delete(StreamId::new(3, 0)));
        assert_eq!(s.max_deleted, StreamId::new(3, 0));
        // A deletion ahead of the group: its lag is unknown.
        assert_eq!(s.lag(&g), None);
        // Reading on past it: the counter is unknown until the read reaches the last ID.
        s.group_advance(&mut g, StreamId::new(2, 0));
        assert_eq!(g.entries_read, ENTRIES_READ_UNKNOWN);
        s.group_advance(&mut g, StreamId::new(4, 0));
        s.group_advance(&mut g, StreamId::new(5, 0));
        assert_eq!((g.entries_read, s.lag(&g)), (5, Some(0)));
        g.deliver(StreamId::new(5, 0), b"alice", 100, None);
        g.deliver(StreamId::new(5, 0), b"bob", 200, None);
        assert_eq!(g.pel[&StreamId::new(5, 0)].delivery_count, 2);
        assert!(g.consumers[&b("alice")].pel.is_empty());
        assert!(g.ack(StreamId::new(5, 0)));
        assert!(g.consumers[&b("bob")].pel.is_empty());
        assert_eq!(g.delete_consumer(b"bob"), Some(0));
    }
}
