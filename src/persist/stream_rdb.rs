//! Streams in RDB files and DUMP payloads: Redis 7.0's `RDB_TYPE_STREAM_LISTPACKS_2` (19)
//! when writing; 15 (Redis 5-6), 19 and 21 (Redis 7.2: consumers' active time) when reading.
//! Runs on whichever thread serialises or loads.
//!
//! The entries go in listpack nodes keyed by their master ID, as Redis keeps them: a master
//! entry (live count, deleted count, the master field names) and then each entry as flags,
//! its ID as differences from the master ID, its values alone when its field names are the
//! master's (SAMEFIELDS) or its fields and values otherwise, and its element count. After
//! the nodes come the stream's counters and the consumer groups with their pending entries
//! (PEL) and consumers. The reader checks everything it reads against the rest (IDs in
//! order and consistent with their node, counts that add up, every consumer's pending entry
//! in its group's PEL): a corrupt payload is an error, never a panic.

use std::collections::BTreeSet;
use std::ops::Range;

use bytes::Bytes;

use super::packed::{listpack_entries, ListpackWriter, LpEntry};
use super::rdb::{put_len, PartWriter, TYPE_STREAM_LISTPACKS, TYPE_STREAM_LISTPACKS_3};
use super::read::{corrupt, Cursor, R};
use crate::protocol::parse_i64;
use crate::types::stream::{
    node_max_entries, Consumer, Group, Pending, Stream, StreamId, ENTRIES_READ_UNKNOWN,
};

/// Entry flags in a node.
const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;

/// A node is closed before its field bytes pass this (Redis's STREAM_LISTPACK_MAX_SIZE
/// bound: a listpack's size must fit its 32-bit header).
const NODE_BYTES_CAP: usize = 1 << 30;

/// A group's `entries_read` as the file stores it: a 64-bit length, -1 (unknown) being
/// all ones as Redis writes its `long long` through rdbSaveLen.
const ENTRIES_READ_UNKNOWN_LEN: u64 = u64::MAX;

impl PartWriter {
    /// The body of a stream record (after its type byte and key), type 19.
    pub(crate) fn stream_body(&mut self, x: &Stream) {
        let owned: Vec<(StreamId, Vec<Bytes>)> = x.iter().collect();
        let entries: Vec<(StreamId, &[Bytes])> =
            owned.iter().map(|(i, f)| (*i, f.as_slice())).collect();
        let nodes = node_ranges(&entries);
        put_len(&mut self.buf, nodes.len() as u64);
        let mut lp = ListpackWriter::default();
        for r in nodes {
            let Some(chunk) = entries.get(r) else {
                continue;
            };
            let Some(&(master, _)) = chunk.first() else {
                continue;
            };
            lp.clear();
            write_node(&mut lp, chunk);
            self.string(&master.to_be());
            self.string(lp.finish_ref());
        }
        let first = x.first_id();
        for n in [
            x.len() as u64,
            x.last_id.ms,
            x.last_id.seq,
            first.ms,
            first.seq,
            x.max_deleted.ms,
            x.max_deleted.seq,
            x.entries_added,
        ] {
            put_len(&mut self.buf, n);
        }
        put_len(&mut self.buf, x.groups.len() as u64);
        for (name, g) in &x.groups {
            self.string(name);
            put_len(&mut self.buf, g.last_id.ms);
            put_len(&mut self.buf, g.last_id.seq);
            put_len(&mut self.buf, g.entries_read as u64);
            put_len(&mut self.buf, g.pel.len() as u64);
            for (id, p) in &g.pel {
                self.buf.extend_from_slice(&id.to_be());
                self.buf.extend_from_slice(&p.delivery_time.to_le_bytes());
                put_len(&mut self.buf, p.delivery_count);
            }
            put_len(&mut self.buf, g.consumers.len() as u64);
            for (cname, c) in &g.consumers {
                self.string(cname);
                self.buf.extend_from_slice(&c.seen_time.to_le_bytes());
                put_len(&mut self.buf, c.pel.len() as u64);
                for id in &c.pel {
                    self.buf.extend_from_slice(&id.to_be());
                }
            }
        }
    }
}

/// The entries of each node: runs of at most `stream-node-max-entries` (0: no limit),
/// also closed before their bytes reach `NODE_BYTES_CAP`; never empty.
fn node_ranges(entries: &[(StreamId, &[Bytes])]) -> Vec<Range<usize>> {
    let max = match node_max_entries() {
        0 => usize::MAX,
        n => n,
    };
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, (_, fields)) in entries.iter().enumerate() {
        let size: usize = fields.iter().map(|f| f.len() + 11).sum::<usize>() + 40;
        if i > start && (i - start >= max || bytes + size >= NODE_BYTES_CAP) {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < entries.len() {
        out.push(start..entries.len());
    }
    out
}

/// One node's listpack: the master entry (its first entry's field names), then each entry.
fn write_node(lp: &mut ListpackWriter, chunk: &[(StreamId, &[Bytes])]) {
    let Some(&(master, first)) = chunk.first() else {
        return;
    };
    let names = || first.iter().step_by(2);
    let nf = first.len() / 2;
    lp.push_i64(chunk.len() as i64);
    lp.push_i64(0);
    lp.push_i64(nf as i64);
    for f in names() {
        lp.push(f);
    }
    lp.push_i64(0);
    for &(id, fields) in chunk {
        let n = fields.len() / 2;
        let same = n == nf && fields.iter().step_by(2).eq(names());
        lp.push_i64(if same { FLAG_SAMEFIELDS } else { 0 });
        lp.push_i64(id.ms.wrapping_sub(master.ms) as i64);
        lp.push_i64(id.seq.wrapping_sub(master.seq) as i64);
        if same {
            for v in fields.iter().skip(1).step_by(2) {
                lp.push(v);
            }
            lp.push_i64(nf as i64 + 3);
        } else {
            lp.push_i64(n as i64);
            for fv in fields.chunks_exact(2) {
                for x in fv {
                    lp.push(x);
                }
            }
            lp.push_i64(2 * n as i64 + 4);
        }
    }
}

/// The elements of one node's listpack, read in order.
struct Elems<'a> {
    lp: &'a [u8],
    items: std::vec::IntoIter<LpEntry>,
    /// Where the node is in the input (for errors).
    pos: usize,
}

impl Elems<'_> {
    fn bad(&self, what: &str) -> String {
        corrupt(self.pos, &format!("Stream listpack: {what}"))
    }

    fn left(&self) -> usize {
        self.items.len()
    }

    fn int(&mut self) -> R<i64> {
        match self.items.next() {
            Some(LpEntry::Int(i)) => Ok(i),
            Some(LpEntry::Str(r)) => self
                .lp
                .get(r)
                .and_then(parse_i64)
                .ok_or_else(|| self.bad("an integer expected")),
            None => Err(self.bad("truncated entry")),
        }
    }

    /// A count of what follows: not negative, and at most what is left.
    fn count(&mut self) -> R<usize> {
        let n = self.int()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.left())
            .ok_or_else(|| self.bad("bad count"))
    }

    fn bytes(&mut self) -> R<Bytes> {
        match self.items.next() {
            Some(LpEntry::Int(i)) => Ok(Bytes::from(i.to_string())),
            Some(LpEntry::Str(r)) => self
                .lp
                .get(r)
                .map(Bytes::copy_from_slice)
                .ok_or_else(|| self.bad("bad string")),
            None => Err(self.bad("truncated entry")),
        }
    }
}

/// Reads one node keyed `master` into `s`; `prev` is the last ID read before it (deleted
/// entries included), which every entry must be above.
fn read_node(
    s: &mut Stream,
    master: StreamId,
    lp: &[u8],
    pos: usize,
    prev: &mut Option<StreamId>,
) -> R<()> {
    let mut items = Vec::new();
    listpack_entries(lp, |e| items.push(e))
        .ok_or_else(|| corrupt(pos, "Stream listpack integrity check failed."))?;
    if items.is_empty() {
        return Err(corrupt(pos, "Empty listpack inside stream"));
    }
    let mut e = Elems {
        lp,
        items: items.into_iter(),
        pos,
    };
    let count = e.int()?;
    let deleted = e.int()?;
    let nf = e.count()?;
    let mut names = Vec::with_capacity(nf);
    for _ in 0..nf {
        names.push(e.bytes()?);
    }
    if e.int()? != 0 {
        return Err(e.bad("bad master entry terminator"));
    }
    let mut seen = 0i64;
    while e.left() > 0 {
        let flags = e.int()?;
        if !(0..=(FLAG_DELETED | FLAG_SAMEFIELDS)).contains(&flags) {
            return Err(e.bad("bad entry flags"));
        }
        let ms = master.ms.wrapping_add(e.int()? as u64);
        let seq = master.seq.wrapping_add(e.int()? as u64);
        let id = StreamId::new(ms, seq);
        if id < master || prev.is_some_and(|p| id <= p) {
            return Err(e.bad("entry IDs out of order"));
        }
        *prev = Some(id);
        let same = flags & FLAG_SAMEFIELDS != 0;
        let n = if same { nf } else { e.count()? };
        let mut fields = Vec::with_capacity(2 * n);
        for i in 0..n {
            match names.get(i).filter(|_| same) {
                Some(f) => fields.push(f.clone()),
                None => fields.push(e.bytes()?),
            }
            fields.push(e.bytes()?);
        }
        let want = if same { n + 3 } else { 2 * n + 4 };
        if usize::try_from(e.int()?).ok() != Some(want) {
            return Err(e.bad("bad entry count"));
        }
        seen += 1;
        if flags & FLAG_DELETED == 0 {
            s.append(id, fields);
        }
    }
    if count.checked_add(deleted) != Some(seen) {
        return Err(e.bad("master entry counts do not match the entries"));
    }
    Ok(())
}

fn id_at(c: &mut Cursor<'_>) -> R<StreamId> {
    StreamId::from_be(c.take(16)?).ok_or_else(super::read::short)
}

fn len_id(c: &mut Cursor<'_>) -> R<StreamId> {
    Ok(StreamId::new(c.len()?, c.len()?))
}

/// A stream record's body of RDB type `t` (15, 19 or 21).
pub(super) fn read_stream(c: &mut Cursor<'_>, t: u8) -> R<Stream> {
    let mut s = Stream::new();
    let nodes = c.count(2)?;
    let mut prev = None;
    let mut prev_master: Option<StreamId> = None;
    let mut scratch = Vec::new();
    for _ in 0..nodes {
        let pos = c.pos;
        let key = c.string()?;
        let master = Some(key)
            .filter(|k| k.len() == 16)
            .and_then(|k| StreamId::from_be(&k))
            .ok_or_else(|| corrupt(pos, "Stream node key entry is not the size of a stream ID"))?;
        if prev_master.is_some_and(|p| master <= p) {
            return Err(corrupt(pos, "Stream node keys out of order or repeated"));
        }
        prev_master = Some(master);
        let pos = c.pos;
        let lp = c
            .raw_string()?
            .bytes(&mut scratch)
            .ok_or_else(|| corrupt(pos, "Invalid LZF compressed string"))?;
        read_node(&mut s, master, lp, pos, &mut prev)?;
    }
    let pos = c.pos;
    let length = c.len()?;
    if length != s.len() as u64 {
        return Err(corrupt(pos, "Stream length inconsistent with its entries"));
    }
    let last_id = len_id(c)?;
    if s.last_entry().is_some_and(|(id, _)| id > last_id) {
        return Err(corrupt(pos, "Stream last ID below its last entry"));
    }
    let (max_deleted, entries_added) = if t == TYPE_STREAM_LISTPACKS {
        (StreamId::MIN, length)
    } else {
        // The first ID is the first entry's: derived, not stored.
        len_id(c)?;
        (len_id(c)?, c.len()?)
    };
    if i64::try_from(entries_added).is_err() {
        return Err(corrupt(pos, "Stream entries added out of range"));
    }
    s.last_id = last_id;
    s.max_deleted = max_deleted;
    s.entries_added = entries_added;
    let ngroups = c.count(5)?;
    for _ in 0..ngroups {
        let pos = c.pos;
        let name = c.string()?;
        let g = read_group(c, t, &s)?;
        if s.groups.insert(name, g).is_some() {
            return Err(corrupt(pos, "Duplicated consumer group name"));
        }
    }
    Ok(s)
}

/// One consumer group (after its name).
fn read_group(c: &mut Cursor<'_>, t: u8, s: &Stream) -> R<Group> {
    let pos = c.pos;
    let last_id = len_id(c)?;
    let entries_read = if t == TYPE_STREAM_LISTPACKS {
        s.distance_from_first(last_id)
    } else {
        match c.len()? {
            ENTRIES_READ_UNKNOWN_LEN => ENTRIES_READ_UNKNOWN,
            n => i64::try_from(n)
                .map_err(|_| corrupt(pos, "Stream group entries read out of range"))?,
        }
    };
    let mut g = Group::new(last_id, entries_read);
    for _ in 0..c.count(16 + 8 + 1)? {
        let pos = c.pos;
        let id = id_at(c)?;
        let delivery_time = u64::from_le_bytes(c.fixed()?);
        let delivery_count = c.len()?;
        let p = Pending {
            consumer: Bytes::new(),
            delivery_time,
            delivery_count,
        };
        if g.pel.insert(id, p).is_some() {
            return Err(corrupt(
                pos,
                "Duplicated global PEL entry loading stream consumer group",
            ));
        }
    }
    // Which group PEL entries a consumer has claimed (each must be, exactly once).
    let mut claimed = BTreeSet::new();
    for _ in 0..c.count(1 + 8 + 1)? {
        let pos = c.pos;
        let name = c.string()?;
        let seen_time = u64::from_le_bytes(c.fixed()?);
        if t == TYPE_STREAM_LISTPACKS_3 {
            c.fixed::<8>()?; // active time: not kept
        }
        let mut cons = Consumer {
            seen_time,
            pel: BTreeSet::new(),
        };
        for _ in 0..c.count(16)? {
            let pos = c.pos;
            let id = id_at(c)?;
            let p = g
                .pel
                .get_mut(&id)
                .ok_or_else(|| corrupt(pos, "Consumer entry not found in group global PEL"))?;
            if !claimed.insert(id) {
                return Err(corrupt(
                    pos,
                    "Duplicated consumer PEL entry loading a stream consumer group",
                ));
            }
            p.consumer = name.clone();
            cons.pel.insert(id);
        }
        if g.consumers.insert(name, cons).is_some() {
            return Err(corrupt(pos, "Duplicate stream consumer detected."));
        }
    }
    if claimed.len() != g.pel.len() {
        return Err(corrupt(c.pos, "Stream CG PEL entry without consumer"));
    }
    Ok(g)
}

/// Steps over a stream record's body of RDB type `t`, checking only that its lengths stay
/// within the input (`read_stream` checks the rest).
pub(super) fn skip_stream(c: &mut Cursor<'_>, t: u8) -> R<()> {
    for _ in 0..c.count(2)? {
        c.raw_string_as(false)?;
        c.raw_string_as(false)?;
    }
    let counters = if t == TYPE_STREAM_LISTPACKS { 3 } else { 8 };
    for _ in 0..counters {
        c.len()?;
    }
    for _ in 0..c.count(5)? {
        c.raw_string_as(false)?;
        c.len()?;
        c.len()?;
        if t != TYPE_STREAM_LISTPACKS {
            c.len()?;
        }
        for _ in 0..c.count(16 + 8 + 1)? {
            c.take(16 + 8)?;
            c.len()?;
        }
        for _ in 0..c.count(1 + 8 + 1)? {
            c.raw_string_as(false)?;
            c.take(if t == TYPE_STREAM_LISTPACKS_3 { 16 } else { 8 })?;
            let n = c.count(16)?;
            c.take(n * 16)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::rdb::TYPE_STREAM_LISTPACKS_2;
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId::new(ms, seq)
    }

    /// A body as the writer makes it (type 19).
    fn body(s: &Stream) -> Vec<u8> {
        let mut w = PartWriter::new(true);
        w.stream_body(s);
        w.buf
    }

    /// Reads a body of type `t`; the skipper must step over exactly as much.
    fn read(t: u8, data: &[u8]) -> R<Stream> {
        let mut c = Cursor { b: data, pos: 0 };
        let s = read_stream(&mut c, t)?;
        let mut k = Cursor { b: data, pos: 0 };
        skip_stream(&mut k, t)?;
        assert_eq!(k.pos, c.pos, "skip_stream and read_stream agree");
        if c.pos != data.len() {
            return Err("trailing bytes".into());
        }
        Ok(s)
    }

    /// The same stream as far as a client can tell (the node layout aside).
    fn assert_same(a: &Stream, b: &Stream) {
        assert!(a.iter().eq(b.iter()), "entries");
        assert_eq!(a.len(), b.len());
        assert_eq!(a.first_id(), b.first_id());
        assert_eq!(
            (a.last_id, a.max_deleted, a.entries_added),
            (b.last_id, b.max_deleted, b.entries_added)
        );
        assert_eq!(a.groups, b.groups);
    }

    /// 350 entries (several nodes at the default 100 a node), some with other fields than
    /// their node's first, integer-looking fields and values, long values, some deleted;
    /// groups with pending entries and consumers.
    fn sample() -> Stream {
        let mut s = Stream::new();
        for i in 0..350u64 {
            let fields = match i % 7 {
                0 => vec![b("name"), b("x"), b("n"), Bytes::from(i.to_string())],
                3 => vec![b("n"), b("1"), b("name"), b("swapped")],
                4 => vec![b("12"), b("-5"), b("99999999999"), b("")],
                5 => vec![b("big"), Bytes::from("v".repeat(5000))],
                _ => vec![b("name"), Bytes::from(format!("e{i}")), b("n"), b("-1")],
            };
            s.append(id(1000 + i / 3, i % 3 + u64::from(i > 200) * 7), fields);
        }
        for i in [5u64, 6, 150, 151] {
            assert!(s.delete(id(1000 + i / 3, i % 3)));
        }
        let mut g = Group::new(id(1050, 1), ENTRIES_READ_UNKNOWN);
        g.deliver(id(1001, 0), b"alice", 1_700_000_000_123, None);
        g.deliver(id(1001, 1), b"bob", 1_700_000_000_456, Some(3));
        g.deliver(id(1002, 0), b"alice", 1_700_000_000_789, None);
        g.deliver(id(1002, 0), b"alice", 1_700_000_000_790, None);
        g.consumer(b"idle", 42);
        s.groups.insert(b("g1"), g);
        s.groups.insert(b("0"), Group::new(StreamId::MIN, 0));
        s.groups.insert(b("g2"), Group::new(s.last_id, 346));
        s
    }

    #[test]
    fn roundtrip_nodes_fields_groups() {
        let s = sample();
        assert!(s.len() > 3 * node_max_entries().max(1));
        let data = body(&s);
        let got = read(TYPE_STREAM_LISTPACKS_2, &data).unwrap();
        assert_same(&s, &got);
        assert_eq!(got.groups[&b("g1")].pel[&id(1002, 0)].delivery_count, 2);
        assert_eq!(got.groups[&b("g1")].entries_read, ENTRIES_READ_UNKNOWN);
        // Written again, the same bytes.
        assert_eq!(body(&got), data);
    }

    #[test]
    fn roundtrip_empty_streams_keep_their_counters() {
        let mut s = Stream::new();
        for i in 1..=3 {
            s.append(id(i, 0), vec![b("f"), b("v")]);
        }
        for i in 1..=3 {
            s.delete(id(i, 0));
        }
        let mut g = Group::new(id(2, 0), 2);
        g.deliver(id(2, 0), b"c", 77, None);
        s.groups.insert(b("g"), g);
        let got = read(TYPE_STREAM_LISTPACKS_2, &body(&s)).unwrap();
        assert_same(&s, &got);
        assert_eq!(
            (got.last_id, got.max_deleted, got.entries_added, got.len()),
            (id(3, 0), id(3, 0), 3, 0)
        );
        let fresh = Stream::new();
        assert_same(
            &fresh,
            &read(TYPE_STREAM_LISTPACKS_2, &body(&fresh)).unwrap(),
        );
    }

    /// The metadata after the nodes as type 15 or 21 store it (the nodes are as in 19).
    fn body_as(s: &Stream, t: u8) -> Vec<u8> {
        let full = body(s);
        // Nodes only: a copy of the stream without groups, cut before its counters.
        let mut bare = s.clone();
        bare.groups.clear();
        let nodes_only = body(&bare);
        let mut out = nodes_only[..nodes_only.len() - 8 - 1].to_vec();
        assert!(full.starts_with(&out));
        for n in [s.len() as u64, s.last_id.ms, s.last_id.seq] {
            put_len(&mut out, n);
        }
        if t != TYPE_STREAM_LISTPACKS {
            let f = s.first_id();
            for n in [
                f.ms,
                f.seq,
                s.max_deleted.ms,
                s.max_deleted.seq,
                s.entries_added,
            ] {
                put_len(&mut out, n);
            }
        }
        put_len(&mut out, s.groups.len() as u64);
        for (name, g) in &s.groups {
            put_len(&mut out, name.len() as u64);
            out.extend_from_slice(name);
            put_len(&mut out, g.last_id.ms);
            put_len(&mut out, g.last_id.seq);
            if t != TYPE_STREAM_LISTPACKS {
                put_len(&mut out, g.entries_read as u64);
            }
            put_len(&mut out, g.pel.len() as u64);
            for (i, p) in &g.pel {
                out.extend_from_slice(&i.to_be());
                out.extend_from_slice(&p.delivery_time.to_le_bytes());
                put_len(&mut out, p.delivery_count);
            }
            put_len(&mut out, g.consumers.len() as u64);
            for (name, c) in &g.consumers {
                put_len(&mut out, name.len() as u64);
                out.extend_from_slice(name);
                out.extend_from_slice(&c.seen_time.to_le_bytes());
                if t == TYPE_STREAM_LISTPACKS_3 {
                    out.extend_from_slice(&999u64.to_le_bytes());
                }
                put_len(&mut out, c.pel.len() as u64);
                for i in &c.pel {
                    out.extend_from_slice(&i.to_be());
                }
            }
        }
        out
    }

    #[test]
    fn reads_types_15_and_21() {
        let mut s = Stream::new();
        for i in 1..=5 {
            s.append(id(i, 0), vec![b("f"), Bytes::from(i.to_string())]);
        }
        let mut g = Group::new(id(2, 0), 2);
        g.deliver(id(2, 0), b"c", 77, None);
        s.groups.insert(b("g"), g);
        s.groups.insert(b("h"), Group::new(id(9, 0), 0));
        s.groups.insert(b("a"), Group::new(id(0, 0), 0));
        s.groups.insert(b("z"), Group::new(id(5, 0), 5));
        assert_eq!(body_as(&s, TYPE_STREAM_LISTPACKS_2), body(&s));
        let got = read(
            TYPE_STREAM_LISTPACKS_3,
            &body_as(&s, TYPE_STREAM_LISTPACKS_3),
        )
        .unwrap();
        assert_same(&s, &got);
        // Type 15: entries added is the length, entries read derived from the stream.
        let v1 = read(TYPE_STREAM_LISTPACKS, &body_as(&s, TYPE_STREAM_LISTPACKS)).unwrap();
        assert!(v1.iter().eq(s.iter()));
        assert_eq!((v1.entries_added, v1.max_deleted), (5, StreamId::MIN));
        let read_of = |g: &str| v1.groups[&b(g)].entries_read;
        assert_eq!(read_of("a"), 0);
        assert_eq!(
            read_of("g"),
            ENTRIES_READ_UNKNOWN,
            "not first nor last: unknown"
        );
        assert_eq!(read_of("h"), ENTRIES_READ_UNKNOWN);
        assert_eq!(read_of("z"), 5);
        assert_eq!(v1.groups[&b("g")].pel, s.groups[&b("g")].pel);
    }

    /// A body of one node with listpack `lp`, then `tail` (length, counters, groups).
    fn one_node(lp: &[u8], tail: &[u8]) -> Vec<u8> {
        let mut w = PartWriter::new(false);
        put_len(&mut w.buf, 1);
        w.string(&id(5, 0).to_be());
        w.string(lp);
        w.buf.extend_from_slice(tail);
        w.buf
    }

    /// A listpack's elements, as text.
    type Items<'a> = &'a [&'a [u8]];

    /// Length 1, last ID 5-0, first 5-0, max deleted 0-0, added 1, no groups.
    const TAIL: [u8; 9] = [1, 5, 0, 5, 0, 0, 0, 1, 0];

    fn lp(items: &[&[u8]]) -> Vec<u8> {
        let mut w = ListpackWriter::default();
        for i in items {
            w.push(i);
        }
        w.finish()
    }

    #[test]
    fn corrupt_bodies_are_errors() {
        let good: &[&[u8]] = &[b"1", b"0", b"1", b"f", b"0", b"2", b"0", b"0", b"v", b"4"];
        let s = read(TYPE_STREAM_LISTPACKS_2, &one_node(&lp(good), &TAIL)).unwrap();
        assert_eq!(s.get(id(5, 0)), Some(vec![b("f"), b("v")]));
        let bad: &[(&str, Items, &[u8])] = &[
            ("empty node", &[], &TAIL),
            (
                "live count",
                &[b"2", b"0", b"1", b"f", b"0", b"2", b"0", b"0", b"v", b"4"],
                &TAIL,
            ),
            (
                "entry count",
                &[b"1", b"0", b"1", b"f", b"0", b"2", b"0", b"0", b"v", b"5"],
                &TAIL,
            ),
            (
                "field count",
                &[b"1", b"0", b"9", b"f", b"0", b"2", b"0", b"0", b"v", b"4"],
                &TAIL,
            ),
            (
                "terminator",
                &[b"1", b"0", b"1", b"f", b"1", b"2", b"0", b"0", b"v", b"4"],
                &TAIL,
            ),
            (
                "flags",
                &[b"1", b"0", b"1", b"f", b"0", b"9", b"0", b"0", b"v", b"4"],
                &TAIL,
            ),
            (
                "below master",
                &[b"1", b"0", b"1", b"f", b"0", b"2", b"-1", b"0", b"v", b"4"],
                &TAIL,
            ),
            (
                "not an int",
                &[b"x", b"0", b"1", b"f", b"0", b"2", b"0", b"0", b"v", b"4"],
                &TAIL,
            ),
            (
                "truncated",
                &[b"1", b"0", b"1", b"f", b"0", b"2", b"0", b"0"],
                &TAIL,
            ),
            ("length", good, &[2, 5, 0, 5, 0, 0, 0, 1, 0]),
            ("last id", good, &[1, 4, 0, 5, 0, 0, 0, 1, 0]),
        ];
        for (what, items, tail) in bad {
            let e = read(TYPE_STREAM_LISTPACKS_2, &one_node(&lp(items), tail));
            assert!(e.is_err(), "{what}");
        }
        let e = read(TYPE_STREAM_LISTPACKS_2, &one_node(&lp(&[]), &TAIL)).unwrap_err();
        assert!(e.contains("Empty listpack inside stream"), "{e}");
        // Two entries with the same ID.
        let dup: &[&[u8]] = &[
            b"2", b"0", b"1", b"f", b"0", b"2", b"0", b"0", b"v", b"4", b"2", b"0", b"0", b"v",
            b"4",
        ];
        assert!(read(TYPE_STREAM_LISTPACKS_2, &one_node(&lp(dup), &TAIL)).is_err());
    }

    #[test]
    fn corrupt_groups_are_errors() {
        let mut s = Stream::new();
        s.append(id(1, 0), vec![b("f"), b("v")]);
        s.append(id(2, 0), vec![b("f"), b("v")]);
        let mut g = Group::new(id(2, 0), 2);
        g.deliver(id(1, 0), b"a", 10, None);
        g.deliver(id(2, 0), b"b", 20, None);
        s.groups.insert(b("g"), g);
        read(
            TYPE_STREAM_LISTPACKS_2,
            &body_as(&s, TYPE_STREAM_LISTPACKS_2),
        )
        .unwrap();
        // A consumer's pending entry missing from its group's PEL.
        let mut t = s.clone();
        let g = t.groups.get_mut(&b("g")).unwrap();
        g.pel.remove(&id(1, 0));
        let e = read(
            TYPE_STREAM_LISTPACKS_2,
            &body_as(&t, TYPE_STREAM_LISTPACKS_2),
        )
        .unwrap_err();
        assert!(e.contains("not found in group global PEL"), "{e}");
        // An entry pending for two consumers; one pending for none.
        let mut t = s.clone();
        let g = t.groups.get_mut(&b("g")).unwrap();
        g.consumers.get_mut(&b("b")).unwrap().pel.insert(id(1, 0));
        assert!(read(
            TYPE_STREAM_LISTPACKS_2,
            &body_as(&t, TYPE_STREAM_LISTPACKS_2)
        )
        .is_err());
        let mut t = s.clone();
        let g = t.groups.get_mut(&b("g")).unwrap();
        g.consumers.get_mut(&b("b")).unwrap().pel.clear();
        let e = read(
            TYPE_STREAM_LISTPACKS_2,
            &body_as(&t, TYPE_STREAM_LISTPACKS_2),
        )
        .unwrap_err();
        assert!(e.contains("without consumer"), "{e}");
        // Entries read out of range (neither -1 nor an i64).
        let mut t = s.clone();
        t.groups.get_mut(&b("g")).unwrap().entries_read = -2;
        assert!(read(
            TYPE_STREAM_LISTPACKS_2,
            &body_as(&t, TYPE_STREAM_LISTPACKS_2)
        )
        .is_err());
    }

    #[test]
    fn truncated_and_flipped_bodies_never_panic() {
        let data = body(&sample());
        for cut in (0..data.len())
            .step_by(37)
            .chain(data.len() - 40..data.len())
        {
            assert!(
                read(TYPE_STREAM_LISTPACKS_2, &data[..cut]).is_err(),
                "{cut}"
            );
        }
        let mut seed = 7u64;
        for _ in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut d = data.clone();
            let i = (seed as usize) % d.len();
            d[i] ^= 1 + (seed >> 32) as u8 % 255;
            for t in [15, 19, 21] {
                let _ = read(t, &d);
            }
        }
    }
}
