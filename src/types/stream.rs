//! Streams (the data side of Redis's t_stream.c): entries by ID in a B-tree, each a flat
//! field/value list; the stream's counters (last ID, first ID, the largest deleted ID, entries
//! ever added) that XINFO, XSETID and the consumer groups' lag read; and the consumer groups
//! with their pending entries lists (PEL) and consumers. Owned by the shard thread that owns
//! the key; nothing here knows RESP or the keyspace.
//!
//! Entries live in nodes as Redis keeps them: up to `stream-node-max-entries` entries (and
//! `stream-node-max-bytes` of listpack) per node, each entry packed into the node's buffer
//! with its ID as a difference from the node's first ID and its field names left out when
//! they repeat the node's first entry's (about 20 bytes for an entry of two short fields,
//! as in Redis). Nodes are cut where Redis cuts them (the listpack size each would take is
//! counted exactly), so approximate trimming (`MAXLEN ~`, `MINID ~`), which removes whole
//! nodes only, removes what Redis removes; XDEL marks an entry deleted inside its node and
//! frees the node with its last entry, as Redis.

use std::collections::{BTreeMap, BTreeSet};
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

/// One node: entries packed one after another, as Redis keeps them in a listpack (IDs as
/// differences from the node's master ID, field names left out when they are the master
/// entry's), in our own compact byte format. `lp_bytes` is what Redis's listpack for the
/// same entries would take, so nodes are cut where Redis cuts them.
#[derive(Clone, Debug, PartialEq)]
struct Node {
    /// The first entry's ID when the node was made (the rax key in Redis).
    master: StreamId,
    /// The master entry's field names.
    fields: Box<[Bytes]>,
    /// Entries: `[flags][ms diff][seq diff]([n][field]...)?[value]...` (varints, and each
    /// field or value as varint length + bytes).
    buf: Vec<u8>,
    live: u32,
    deleted: u32,
    /// The ID of the last entry placed (deleted or not), and where it starts in `buf`.
    last: StreamId,
    last_at: usize,
    /// Listpack bytes of the entries (the master entry's are computed from the counts).
    lp_entries: usize,
}

const FLAG_DELETED: u8 = 1;
const FLAG_SAMEFIELDS: u8 = 2;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7F) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Bytes of a listpack integer entry (encoding and back length).
fn lp_int(i: i64) -> usize {
    match i {
        0..=127 => 2,
        -4096..=4095 => 3,
        -32768..=32767 => 4,
        -8_388_608..=8_388_607 => 5,
        _ if i32::try_from(i).is_ok() => 6,
        _ => 10,
    }
}

fn lp_str(v: &[u8]) -> usize {
    crate::persist::packed::ListpackWriter::entry_size(v)
}

/// One decoded entry: its ID, whether it is deleted, and its fields and values.
struct Decoded {
    id: StreamId,
    deleted: bool,
    /// Byte offset of its flags in the node's buffer.
    at: usize,
    fields: Vec<Bytes>,
}

impl Node {
    fn new(id: StreamId, names: Box<[Bytes]>) -> Node {
        Node {
            master: id,
            fields: names,
            buf: Vec::new(),
            live: 0,
            deleted: 0,
            last: id,
            last_at: 0,
            lp_entries: 0,
        }
    }

    /// Redis's `lpBytes` for this node: header, master entry, entries, end byte.
    fn lp_bytes(&self) -> usize {
        let master = lp_int(i64::from(self.live))
            + lp_int(i64::from(self.deleted))
            + lp_int(self.fields.len() as i64)
            + self.fields.iter().map(|f| lp_str(f)).sum::<usize>()
            + lp_int(0);
        6 + master + self.lp_entries + 1
    }

    fn push(&mut self, id: StreamId, fields: &[Bytes]) {
        let same = fields.len() == self.fields.len() * 2
            && fields
                .iter()
                .step_by(2)
                .zip(self.fields.iter())
                .all(|(a, b)| a == b);
        let ms = id.ms.wrapping_sub(self.master.ms);
        let seq = id.seq.wrapping_sub(self.master.seq);
        self.last_at = self.buf.len();
        self.buf.push(if same { FLAG_SAMEFIELDS } else { 0 });
        put_varint(&mut self.buf, ms);
        put_varint(&mut self.buf, seq);
        let n = fields.len() / 2;
        let mut lp = lp_int(if same { 2 } else { 0 }) + lp_int(ms as i64) + lp_int(seq as i64);
        if !same {
            put_varint(&mut self.buf, n as u64);
            lp += lp_int(n as i64);
        }
        for (i, f) in fields.iter().enumerate() {
            if same && i % 2 == 0 {
                continue;
            }
            put_varint(&mut self.buf, f.len() as u64);
            self.buf.extend_from_slice(f);
            lp += lp_str(f);
        }
        let lp_count = if same { n + 3 } else { 2 * n + 4 };
        lp += lp_int(lp_count as i64);
        self.lp_entries += lp;
        self.live += 1;
        self.last = id;
    }

    /// Decodes the entry at `pos` (moving `pos` past it); deleted entries decode too. Its
    /// fields are copied out only when `want_fields` (a scan skips them without copying).
    fn decode(&self, pos: &mut usize, want_fields: bool) -> Option<Decoded> {
        let at = *pos;
        let flags = *self.buf.get(*pos)?;
        *pos += 1;
        let ms = get_varint(&self.buf, pos)?;
        let seq = get_varint(&self.buf, pos)?;
        let id = StreamId::new(
            self.master.ms.wrapping_add(ms),
            self.master.seq.wrapping_add(seq),
        );
        let same = flags & FLAG_SAMEFIELDS != 0;
        let n = if same {
            self.fields.len()
        } else {
            get_varint(&self.buf, pos)? as usize
        };
        let mut fields = Vec::with_capacity(if want_fields { 2 * n } else { 0 });
        for i in 0..n {
            if !same {
                let name = self.slice(pos)?;
                if want_fields {
                    fields.push(Bytes::copy_from_slice(name));
                }
            } else if want_fields {
                fields.push(self.fields.get(i).cloned().unwrap_or_default());
            }
            let value = self.slice(pos)?;
            if want_fields {
                fields.push(Bytes::copy_from_slice(value));
            }
        }
        Some(Decoded {
            id,
            deleted: flags & FLAG_DELETED != 0,
            at,
            fields,
        })
    }

    /// The length-prefixed bytes at `pos` (moving past them).
    fn slice(&self, pos: &mut usize) -> Option<&[u8]> {
        let n = get_varint(&self.buf, pos)? as usize;
        let b = self.buf.get(*pos..pos.checked_add(n)?)?;
        *pos += n;
        Some(b)
    }

    /// The fields and values of the entry at `pos`, borrowed (names of a SAMEFIELDS entry
    /// from the master entry).
    fn fields_into<'a>(&'a self, pos: &mut usize, out: &mut Vec<&'a [u8]>) -> Option<()> {
        let flags = *self.buf.get(*pos)?;
        *pos += 1;
        get_varint(&self.buf, pos)?;
        get_varint(&self.buf, pos)?;
        let same = flags & FLAG_SAMEFIELDS != 0;
        let n = if same {
            self.fields.len()
        } else {
            get_varint(&self.buf, pos)? as usize
        };
        for i in 0..n {
            if same {
                out.push(self.fields.get(i).map_or(&b""[..], |b| &b[..]));
            } else {
                out.push(self.slice(pos)?);
            }
            out.push(self.slice(pos)?);
        }
        Some(())
    }

    /// The entry at byte `at`, with its fields.
    fn fields_at(&self, at: usize) -> Vec<Bytes> {
        let mut p = at;
        self.decode(&mut p, true)
            .map(|d| d.fields)
            .unwrap_or_default()
    }

    /// Every entry, deleted ones included, in order.
    fn entries(&self, want_fields: bool) -> Vec<Decoded> {
        let mut out = Vec::with_capacity((self.live + self.deleted) as usize);
        let mut pos = 0;
        while pos < self.buf.len() {
            match self.decode(&mut pos, want_fields) {
                Some(d) => out.push(d),
                None => break,
            }
        }
        out
    }

    /// Marks the entry at byte `at` deleted.
    fn mark_deleted(&mut self, at: usize) {
        if let Some(f) = self.buf.get_mut(at) {
            *f |= FLAG_DELETED;
        }
        self.live = self.live.saturating_sub(1);
        self.deleted += 1;
    }

    fn heap_bytes(&self) -> usize {
        self.buf.capacity()
            + self.fields.iter().map(|f| f.len() + 32).sum::<usize>()
            + std::mem::size_of::<Node>()
            + 16
    }
}

/// Trimming: by length, or by lowest ID kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Trim {
    MaxLen(u64),
    MinId(StreamId),
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Stream {
    /// Nodes by master ID.
    nodes: BTreeMap<StreamId, Node>,
    length: usize,
    pub last_id: StreamId,
    pub max_deleted: StreamId,
    pub entries_added: u64,
    pub groups: BTreeMap<Bytes, Group>,
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
        self.length
    }

    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// Listpack nodes (XINFO's `radix-tree-keys`).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The first live entry's ID (0-0 when empty, as Redis's `first_id`).
    pub fn first_id(&self) -> StreamId {
        self.first_entry().map(|e| e.0).unwrap_or_default()
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
        if id <= last {
            return Err(AddError::TooSmall);
        }
        Ok(id)
    }

    /// Appends an entry (`fields`: field, value, ...) whose ID is above every ID in the
    /// stream (checked by `next_id`); a new node starts where Redis would start one.
    pub fn append(&mut self, id: StreamId, fields: Vec<Bytes>) {
        let max = node_max_entries();
        let max_bytes = match node_max_bytes() {
            0 => 1 << 30,
            n => n.min(1 << 30),
        };
        let raw: usize = fields.iter().map(|f| f.len()).sum();
        let open = self.nodes.values().next_back().is_some_and(|n| {
            n.lp_bytes() + raw < max_bytes && (max == 0 || ((n.live + n.deleted) as usize) < max)
        });
        if !open {
            // The node before is closed for good: its buffer gives back what it grew by.
            if let Some(n) = self.nodes.values_mut().next_back() {
                n.buf.shrink_to_fit();
            }
            let names: Box<[Bytes]> = fields.iter().step_by(2).cloned().collect();
            self.nodes.insert(id, Node::new(id, names));
        }
        if let Some(n) = self.nodes.values_mut().next_back() {
            n.push(id, &fields);
        }
        self.length += 1;
        self.last_id = id;
        self.entries_added += 1;
    }

    /// The node that would hold `id` (the last one whose master ID is not above it).
    fn node_of(&self, id: StreamId) -> Option<(&StreamId, &Node)> {
        self.nodes.range(..=id).next_back()
    }

    pub fn contains(&self, id: StreamId) -> bool {
        self.find(id).is_some()
    }

    pub fn get(&self, id: StreamId) -> Option<Vec<Bytes>> {
        self.find(id).map(|(n, at)| n.fields_at(at))
    }

    /// The live entry `id`: its node and byte offset.
    fn find(&self, id: StreamId) -> Option<(&Node, usize)> {
        let (_, n) = self.node_of(id)?;
        let mut pos = 0;
        while pos < n.buf.len() {
            let d = n.decode(&mut pos, false)?;
            if d.id == id {
                return (!d.deleted).then_some((n, d.at));
            }
            if d.id > id {
                return None;
            }
        }
        None
    }

    /// Live entries with `start <= id <= end`, at most `count`, oldest first or (`rev`)
    /// newest first.
    pub fn range(
        &self,
        start: StreamId,
        end: StreamId,
        count: Option<usize>,
        rev: bool,
    ) -> Vec<(StreamId, Vec<Bytes>)> {
        let mut out = Vec::new();
        self.visit(start, end, count, rev, &mut |id, f| {
            out.push((id, f.iter().map(|x| Bytes::copy_from_slice(x)).collect()));
        });
        out
    }

    /// Calls `f` with each live entry in `start..=end` (at most `count`, oldest first or
    /// newest first) as borrowed field and value slices, copying nothing; returns how many.
    pub fn visit(
        &self,
        start: StreamId,
        end: StreamId,
        count: Option<usize>,
        rev: bool,
        f: &mut dyn FnMut(StreamId, &[&[u8]]),
    ) -> usize {
        let limit = count.unwrap_or(usize::MAX);
        if start > end || limit == 0 {
            return 0;
        }
        // The node holding `start` may begin before it.
        let from = self.node_of(start).map_or(start, |(k, _)| *k);
        let mut done = 0;
        let mut slices: Vec<&[u8]> = Vec::new();
        if rev {
            let mut ats: Vec<(StreamId, usize)> = Vec::new();
            for (_, n) in self.nodes.range(from..=end).rev() {
                // The newest entry alone (`XREVRANGE + - COUNT 1`): no scan of the node.
                if limit - done == 1 && n.last <= end && n.last >= start {
                    let mut p = n.last_at;
                    if let Some(d) = n.decode(&mut p, false).filter(|d| !d.deleted) {
                        slices.clear();
                        if n.fields_into(&mut d.at.clone(), &mut slices).is_some() {
                            f(d.id, &slices);
                            return done + 1;
                        }
                    }
                }
                ats.clear();
                let mut pos = 0;
                while pos < n.buf.len() {
                    let Some(d) = n.decode(&mut pos, false) else {
                        break;
                    };
                    if !d.deleted && d.id >= start && d.id <= end {
                        ats.push((d.id, d.at));
                    }
                }
                for &(id, at) in ats.iter().rev() {
                    if done >= limit {
                        return done;
                    }
                    slices.clear();
                    if n.fields_into(&mut at.clone(), &mut slices).is_some() {
                        f(id, &slices);
                        done += 1;
                    }
                }
            }
        } else {
            for (_, n) in self.nodes.range(from..=end) {
                let mut pos = 0;
                while pos < n.buf.len() {
                    if done >= limit {
                        return done;
                    }
                    let Some(d) = n.decode(&mut pos, false) else {
                        break;
                    };
                    if d.id > end {
                        return done;
                    }
                    if !d.deleted && d.id >= start {
                        slices.clear();
                        if n.fields_into(&mut d.at.clone(), &mut slices).is_some() {
                            f(d.id, &slices);
                            done += 1;
                        }
                    }
                }
            }
        }
        done
    }

    /// The last live entry, if any.
    pub fn last_entry(&self) -> Option<(StreamId, Vec<Bytes>)> {
        self.range(StreamId::MIN, StreamId::MAX, Some(1), true)
            .into_iter()
            .next()
    }

    pub fn first_entry(&self) -> Option<(StreamId, Vec<Bytes>)> {
        self.range(StreamId::MIN, StreamId::MAX, Some(1), false)
            .into_iter()
            .next()
    }

    /// XDEL of one ID: whether it was there. Moves `max_deleted` up.
    pub fn delete(&mut self, id: StreamId) -> bool {
        let Some(key) = self.node_of(id).map(|(k, _)| *k) else {
            return false;
        };
        let Some(n) = self.nodes.get_mut(&key) else {
            return false;
        };
        let mut pos = 0;
        let mut found = None;
        while pos < n.buf.len() {
            let Some(d) = n.decode(&mut pos, false) else {
                break;
            };
            if d.id == id {
                found = (!d.deleted).then_some(d.at);
                break;
            }
        }
        let Some(at) = found else {
            return false;
        };
        if n.live == 1 {
            // Its last entry: the node goes (Redis frees the listpack).
            self.nodes.remove(&key);
        } else {
            n.mark_deleted(at);
        }
        self.length -= 1;
        if id > self.max_deleted {
            self.max_deleted = id;
        }
        true
    }

    /// Trims from the oldest end as Redis's `streamTrim`: whole nodes while they may go;
    /// then, unless `approx`, entries inside the next node. `limit` caps the entries removed
    /// (`None`: no cap). Returns how many went.
    pub fn trim(&mut self, how: Trim, approx: bool, limit: Option<u64>) -> u64 {
        let mut removed = 0u64;
        loop {
            if let Trim::MaxLen(n) = how {
                if self.length as u64 <= n {
                    break;
                }
            }
            let Some((&key, node)) = self.nodes.iter().next() else {
                break;
            };
            let entries = u64::from(node.live);
            if limit.is_some_and(|l| removed + entries > l) {
                break;
            }
            let whole = match how {
                Trim::MaxLen(n) => self.length as u64 - entries >= n,
                Trim::MinId(min) => node.last < min,
            };
            if whole {
                self.nodes.remove(&key);
                self.length -= entries as usize;
                removed += entries;
                continue;
            }
            if approx {
                break;
            }
            // Exact: entries inside this node, oldest first; then stop.
            let Some(node) = self.nodes.get_mut(&key) else {
                break;
            };
            for d in node.entries(false) {
                if d.deleted {
                    continue;
                }
                let go = match how {
                    Trim::MaxLen(n) => self.length as u64 > n,
                    Trim::MinId(min) => d.id < min,
                };
                if !go {
                    break;
                }
                node.mark_deleted(d.at);
                self.length -= 1;
                removed += 1;
            }
            if node.live == 0 {
                self.nodes.remove(&key);
            }
            break;
        }
        removed
    }

    /// Whether an entry may have been deleted (XDEL) between `start` and `end` (Redis's
    /// `streamRangeHasTombstones`).
    pub fn has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.length == 0 || self.max_deleted.is_zero() {
            return false;
        }
        // The latest deletion is before the first entry: nothing is missing in between.
        if self.first_id() > self.max_deleted {
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
        if self.length == 0 && id <= self.last_id {
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
                return added - self.length as i64;
            }
            if id == first {
                return added - self.length as i64 + 1;
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
        self.nodes.values().map(Node::heap_bytes).sum::<usize>() + pel
    }

    /// Live entries in ID order, for serialisation.
    pub fn iter(&self) -> impl Iterator<Item = (StreamId, Vec<Bytes>)> + '_ {
        self.nodes.values().flat_map(|n| {
            n.entries(true)
                .into_iter()
                .filter(|d| !d.deleted)
                .map(|d| (d.id, d.fields))
        })
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
        assert_eq!(s.trim(Trim::MaxLen(45), false, None), 5);
        assert_eq!(s.trim(Trim::MaxLen(10), false, None), 35);
        assert_eq!(s.first_id(), StreamId::new(241, 0));
        assert_eq!(s.trim(Trim::MinId(StreamId::new(245, 0)), false, None), 4);
        assert_eq!(s.len(), 6);
        assert_eq!(s.entries_added, 250);
        assert!(s.max_deleted.is_zero(), "trimming is not deletion");
    }

    #[test]
    fn nodes_are_cut_where_redis_cuts_them() {
        // 200 entries `f` => 50 bytes: Redis 7.0.15 cuts its 4096-byte listpacks so that
        // `XTRIM MAXLEN ~ 100` removes 68 entries (measured on redis-server).
        let mut s = Stream::new();
        for i in 1..=200 {
            s.append(
                StreamId::new(0, i),
                vec![b("f"), Bytes::from(vec![b'x'; 50])],
            );
        }
        assert_eq!(s.trim(Trim::MaxLen(100), true, None), 68);
        // Small entries: 100 per node, and about 20 bytes each (Redis: 20).
        let mut s = Stream::new();
        for i in 0..1000u64 {
            let v = format!("value{:03}", i % 1000);
            let j = format!("{i:06}");
            s.append(
                StreamId::new(1_700_000_000_000 + i, 0),
                vec![b("field"), b(&v), b("jobI"), b(&j)],
            );
        }
        assert_eq!(s.node_count(), 10);
        assert!(s.heap_bytes() < 1000 * 40, "{} bytes", s.heap_bytes());
        assert_eq!(
            s.get(StreamId::new(1_700_000_000_500, 0)).map(|f| f.len()),
            Some(4)
        );
        assert!(s.delete(StreamId::new(1_700_000_000_500, 0)));
        assert_eq!(s.get(StreamId::new(1_700_000_000_500, 0)), None);
        assert_eq!(s.len(), 999);
        let r = s.range(
            StreamId::new(1_700_000_000_499, 0),
            StreamId::new(1_700_000_000_501, 0),
            None,
            true,
        );
        assert_eq!(
            r.iter()
                .map(|e| e.0.ms - 1_700_000_000_000)
                .collect::<Vec<_>>(),
            [501, 499]
        );
        assert_eq!(r[0].1[3], b("000501"));
        // The newest entry (read without a scan), and after it is deleted.
        let top = StreamId::new(1_700_000_000_999, 0);
        assert_eq!(s.last_entry().map(|e| e.0), Some(top));
        assert!(s.delete(top));
        assert_eq!(
            s.last_entry().map(|e| e.0),
            Some(StreamId::new(1_700_000_000_998, 0))
        );
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
        // A deletion the stream has since trimmed past is no gap (the difffuzz found the
        // lag wrong here: Redis checks the first ID against the largest deleted one).
        let mut t = s.clone();
        assert!(t.has_tombstones(StreamId::MIN, StreamId::MAX));
        t.trim(Trim::MinId(StreamId::new(4, 0)), false, None);
        assert!(!t.has_tombstones(StreamId::MIN, StreamId::MAX));
        g.deliver(StreamId::new(5, 0), b"alice", 100, None);
        g.deliver(StreamId::new(5, 0), b"bob", 200, None);
        assert_eq!(g.pel[&StreamId::new(5, 0)].delivery_count, 2);
        assert!(g.consumers[&b("alice")].pel.is_empty());
        assert!(g.ack(StreamId::new(5, 0)));
        assert!(g.consumers[&b("bob")].pel.is_empty());
        assert_eq!(g.delete_consumer(b"bob"), Some(0));
    }
}
