//! RDB version 10 as Redis 7.0 writes it: the constants of the format and the writer. A
//! shard serialises its own keys with [`PartWriter`] (on its own thread, under the SAVE
//! lock); the coordinating shard frames the parts with the header, AUX fields, SELECTDB /
//! RESIZEDB per database, EOF and the CRC64 ([`Framer`]). Collections are written in the
//! encodings Redis 7.0 uses: listpack for small hashes and sorted sets, intset for small
//! integer sets, quicklist 2 of listpack nodes for lists, the plain HASH / SET / ZSET_2 forms
//! for big ones. Strings are integer-encoded or LZF-compressed as Redis does.

use super::lzf::Compressor;
use super::packed::{write_intset, ListpackWriter};
use crate::protocol::{fmt_g17, parse_i64};
use crate::shard::value::ObjRef;

pub const RDB_VERSION: u32 = 10;

pub const TYPE_STRING: u8 = 0;
pub const TYPE_LIST: u8 = 1;
pub const TYPE_SET: u8 = 2;
pub const TYPE_ZSET: u8 = 3;
pub const TYPE_HASH: u8 = 4;
pub const TYPE_ZSET_2: u8 = 5;
pub const TYPE_MODULE_PRE_GA: u8 = 6;
pub const TYPE_MODULE_2: u8 = 7;
pub const TYPE_HASH_ZIPMAP: u8 = 9;
pub const TYPE_LIST_ZIPLIST: u8 = 10;
pub const TYPE_SET_INTSET: u8 = 11;
pub const TYPE_ZSET_ZIPLIST: u8 = 12;
pub const TYPE_HASH_ZIPLIST: u8 = 13;
pub const TYPE_LIST_QUICKLIST: u8 = 14;
pub const TYPE_STREAM_LISTPACKS: u8 = 15;
pub const TYPE_HASH_LISTPACK: u8 = 16;
pub const TYPE_ZSET_LISTPACK: u8 = 17;
pub const TYPE_LIST_QUICKLIST_2: u8 = 18;
pub const TYPE_STREAM_LISTPACKS_2: u8 = 19;
pub const TYPE_SET_LISTPACK: u8 = 20;
pub const TYPE_STREAM_LISTPACKS_3: u8 = 21;

pub const OP_FUNCTION_PRE_GA: u8 = 0xF6;
pub const OP_FUNCTION2: u8 = 0xF5;
pub const OP_MODULE_AUX: u8 = 0xF7;
pub const OP_IDLE: u8 = 0xF8;
pub const OP_FREQ: u8 = 0xF9;
pub const OP_AUX: u8 = 0xFA;
pub const OP_RESIZEDB: u8 = 0xFB;
pub const OP_EXPIRETIME_MS: u8 = 0xFC;
pub const OP_EXPIRETIME: u8 = 0xFD;
pub const OP_SELECTDB: u8 = 0xFE;
pub const OP_EOF: u8 = 0xFF;

/// Quicklist node containers (RDB_TYPE_LIST_QUICKLIST_2).
pub const QUICKLIST_PLAIN: u64 = 1;
pub const QUICKLIST_PACKED: u64 = 2;

/// Quicklist node sizes for `list-max-listpack-size` -1 .. -5 (Redis's optimization_level).
const NODE_SIZE_LEVELS: [usize; 5] = [4096, 8192, 16384, 32768, 65536];
/// A node given as an entry count never grows past this many bytes (SIZE_SAFETY_LIMIT).
const NODE_SAFETY_LIMIT: usize = 8192;
/// Nodes smaller than this are never compressed (MIN_COMPRESS_BYTES), and compression must
/// save at least MIN_COMPRESS_IMPROVE bytes.
const MIN_COMPRESS_BYTES: usize = 48;
const MIN_COMPRESS_IMPROVE: usize = 8;

/// Redis's `_quicklistNodeAllowInsert`: may an element of `sz` bytes join a node of
/// `node_bytes` bytes and `count` entries under `list-max-listpack-size` `fill`? Its
/// overhead estimate is Redis's own (ziplist-era), so the nodes come out as Redis cuts
/// them for a list pushed at the tail.
pub(super) fn list_node_fits(node_bytes: usize, count: usize, sz: usize, fill: i64) -> bool {
    let mut overhead = if sz < 254 { 1 } else { 5 };
    overhead += if sz < 64 {
        1
    } else if sz < 16384 {
        2
    } else {
        5
    };
    let new_sz = node_bytes + sz + overhead;
    if fill < 0 {
        let level = NODE_SIZE_LEVELS
            .get(fill.unsigned_abs() as usize - 1)
            .copied()
            .unwrap_or(0);
        if new_sz <= level {
            return true;
        }
    }
    new_sz <= NODE_SAFETY_LIMIT && (count as i64) < fill
}

/// A value as the keyspace lends it for saving.
#[derive(Clone, Copy)]
pub enum ValRef<'a> {
    Str(&'a [u8]),
    Obj(ObjRef<'a>),
}

/// rdbSaveLen: 6-bit, 14-bit, 32-bit or 64-bit (big endian) lengths.
pub fn put_len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// A string without compression (AUX fields), integer-encoded where Redis would.
pub fn put_plain_string(out: &mut Vec<u8>, s: &[u8]) {
    if !put_int_encoded(out, s) {
        put_len(out, s.len() as u64);
        out.extend_from_slice(s);
    }
}

/// rdbTryIntegerEncoding: a canonical integer that fits 32 bits is stored as one.
fn put_int_encoded(out: &mut Vec<u8>, s: &[u8]) -> bool {
    if s.len() > 11 {
        return false;
    }
    let Some(v) = parse_i64(s) else { return false };
    if let Ok(b) = i8::try_from(v) {
        out.extend_from_slice(&[0xC0, b as u8]);
    } else if let Ok(h) = i16::try_from(v) {
        out.push(0xC1);
        out.extend_from_slice(&h.to_le_bytes());
    } else if let Ok(w) = i32::try_from(v) {
        out.push(0xC2);
        out.extend_from_slice(&w.to_le_bytes());
    } else {
        return false;
    }
    true
}

/// The score text Redis 7.0 stores in a listpack (d2string): integers without a fraction,
/// others as `%.17g`.
fn score_text(d: f64) -> String {
    if d != 0.0 && d.fract() == 0.0 && d.abs() < 1e17 {
        (d as i64).to_string()
    } else {
        fmt_g17(d)
    }
}

/// Pushes a score as `score_text` would write it, without formatting through `String`
/// in the common cases: integers go in as integers (what `push` makes of their text), and
/// a score that is a multiple of 1/1024 below 10^7 in magnitude (12.5, 0.75...) has an
/// exact decimal expansion of at most 17 significant digits, which is what `%.17g`
/// prints: it is written from integer arithmetic (the general `%.17g` is exact
/// big-number formatting, a fifth of a BGSAVE of small sorted sets when measured).
fn push_score(lp: &mut ListpackWriter, d: f64) {
    if d != 0.0 && d.fract() == 0.0 && d.abs() < 1e17 {
        lp.push_i64(d as i64);
        return;
    }
    let a = d.abs();
    let scaled = a * 1024.0;
    if d != 0.0 && a < 1e7 && scaled.fract() == 0.0 {
        let n = scaled as u64;
        let (int, frac) = (n >> 10, (n & 1023) * 9_765_625);
        // frac / 10^10 is the fraction exactly (1/1024 = 9765625 / 10^10); not 0 here.
        let mut buf = [0u8; 32];
        let mut len = 0;
        let mut put = |b: u8| {
            if let Some(x) = buf.get_mut(len) {
                *x = b;
            }
            len += 1;
        };
        if d < 0.0 {
            put(b'-');
        }
        let mut digits = [0u8; 20];
        let mut k = 0;
        let mut v = int;
        loop {
            if let Some(x) = digits.get_mut(k) {
                *x = b'0' + (v % 10) as u8;
            }
            k += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for i in (0..k).rev() {
            put(digits.get(i).copied().unwrap_or(b'0'));
        }
        put(b'.');
        let mut f = frac;
        let mut div = 1_000_000_000u64;
        while f > 0 {
            put(b'0' + (f / div) as u8);
            f %= div;
            div /= 10;
        }
        lp.push(buf.get(..len).unwrap_or_default());
        return;
    }
    lp.push(score_text(d).as_bytes());
}

/// One shard's keys of one database, serialised as RDB key records.
pub struct PartWriter {
    pub buf: Vec<u8>,
    compress: bool,
    lzf: Compressor,
    scratch: Vec<u8>,
    /// The listpack being built for a small collection (its buffer reused key after key).
    lp: ListpackWriter,
}

impl PartWriter {
    pub fn new(compress: bool) -> PartWriter {
        PartWriter {
            buf: Vec::new(),
            compress,
            lzf: Compressor::default(),
            scratch: Vec::new(),
            lp: ListpackWriter::default(),
        }
    }

    /// A writer for snapshot files: its LZF is faster on short strings and does not
    /// produce Redis's exact bytes (DUMP payloads use `new`).
    pub fn for_snapshots(compress: bool) -> PartWriter {
        PartWriter {
            lzf: Compressor::for_snapshots(),
            ..PartWriter::new(compress)
        }
    }

    /// Writes the listpack `fill` builds, as an RDB string (compressed as any string).
    fn listpack(&mut self, fill: impl FnOnce(&mut ListpackWriter)) {
        let mut lp = std::mem::take(&mut self.lp);
        lp.clear();
        fill(&mut lp);
        self.string(lp.finish_ref());
        self.lp = lp;
    }

    /// A compressed quicklist node (Redis's __quicklistCompressNode then rdbSaveLzfBlob):
    /// written as an LZF string when the node is big enough and compression saves enough;
    /// false (nothing written) otherwise.
    pub(super) fn node_lzf(&mut self, n: &[u8]) -> bool {
        if n.len() < MIN_COMPRESS_BYTES
            || !self
                .lzf
                .compress(n, n.len() - MIN_COMPRESS_IMPROVE - 1, &mut self.scratch)
        {
            return false;
        }
        self.buf.push(0xC3);
        put_len(&mut self.buf, self.scratch.len() as u64);
        put_len(&mut self.buf, n.len() as u64);
        self.buf.extend_from_slice(&self.scratch);
        true
    }

    /// rdbSaveRawString: integer encoding for short integers, LZF above 20 bytes when it
    /// saves at least 4 bytes, else the bytes with their length.
    pub fn string(&mut self, s: &[u8]) {
        if put_int_encoded(&mut self.buf, s) {
            return;
        }
        if self.compress && s.len() > 20 && self.lzf.compress(s, s.len() - 4, &mut self.scratch) {
            self.buf.push(0xC3);
            put_len(&mut self.buf, self.scratch.len() as u64);
            put_len(&mut self.buf, s.len() as u64);
            self.buf.extend_from_slice(&self.scratch);
            return;
        }
        put_len(&mut self.buf, s.len() as u64);
        self.buf.extend_from_slice(s);
    }

    /// One key record: its expiry (absolute Unix ms, 0 = none), type, name and value.
    pub fn key(&mut self, key: &[u8], val: ValRef<'_>, expire_at: u64) {
        if expire_at != 0 {
            self.buf.push(OP_EXPIRETIME_MS);
            self.buf.extend_from_slice(&expire_at.to_le_bytes());
        }
        self.typed(Some(key), val);
    }

    /// The type byte, the key's name when given (a file record) and the value: without a
    /// name this is the body of a DUMP payload.
    pub fn typed(&mut self, key: Option<&[u8]>, val: ValRef<'_>) {
        match val {
            ValRef::Str(s) => {
                self.buf.push(TYPE_STRING);
                if let Some(k) = key {
                    self.string(k);
                }
                self.string(s);
            }
            ValRef::Obj(ObjRef::Hash(h)) => {
                if h.encoding() == "listpack" {
                    self.buf.push(TYPE_HASH_LISTPACK);
                    if let Some(k) = key {
                        self.string(k);
                    }
                    self.listpack(|lp| {
                        for (f, v) in h.iter() {
                            lp.push(f);
                            lp.push(v);
                        }
                    });
                } else {
                    self.buf.push(TYPE_HASH);
                    if let Some(k) = key {
                        self.string(k);
                    }
                    put_len(&mut self.buf, h.len() as u64);
                    for (f, v) in h.iter() {
                        self.string(f);
                        self.string(v);
                    }
                }
            }
            ValRef::Obj(ObjRef::Set(s)) => {
                if s.encoding() == "intset" {
                    let mut vals: Vec<i64> = s.iter().filter_map(|m| parse_i64(&m)).collect();
                    if vals.len() == s.len() {
                        self.buf.push(TYPE_SET_INTSET);
                        if let Some(k) = key {
                            self.string(k);
                        }
                        self.string(&write_intset(&mut vals));
                        return;
                    }
                }
                self.buf.push(TYPE_SET);
                if let Some(k) = key {
                    self.string(k);
                }
                put_len(&mut self.buf, s.len() as u64);
                for m in s.iter() {
                    self.string(&m);
                }
            }
            ValRef::Obj(ObjRef::ZSet(z)) => {
                if z.encoding() == "listpack" {
                    self.buf.push(TYPE_ZSET_LISTPACK);
                    if let Some(k) = key {
                        self.string(k);
                    }
                    self.listpack(|lp| {
                        // Visited in place, ascending; a +inf score is past the visit's
                        // range (`score < max`): then the copy below.
                        let mut n = 0;
                        z.visit_score_range(f64::NEG_INFINITY, f64::INFINITY, &mut |s, m| {
                            lp.push(m);
                            push_score(lp, s);
                            n += 1;
                            true
                        });
                        if n != z.len() {
                            lp.clear();
                            for (m, s) in z.to_vec() {
                                lp.push(&m);
                                push_score(lp, s);
                            }
                        }
                    });
                } else {
                    let pairs = z.to_vec();
                    self.buf.push(TYPE_ZSET_2);
                    if let Some(k) = key {
                        self.string(k);
                    }
                    put_len(&mut self.buf, pairs.len() as u64);
                    // From the highest, as Redis (its loader then inserts at the head).
                    for (m, s) in pairs.iter().rev() {
                        self.string(m);
                        self.buf.extend_from_slice(&s.to_le_bytes());
                    }
                }
            }
            ValRef::Obj(ObjRef::Stream(x)) => {
                self.buf.push(TYPE_STREAM_LISTPACKS_2);
                if let Some(k) = key {
                    self.string(k);
                }
                self.stream_body(x);
            }
            ValRef::Obj(ObjRef::List(l)) => {
                self.buf.push(TYPE_LIST_QUICKLIST_2);
                if let Some(k) = key {
                    self.string(k);
                }
                // Nodes as `list-max-listpack-size` cuts them; with `list-compress-depth`
                // N the nodes more than N from either end are LZF blobs, as Redis keeps
                // them compressed in memory and saves them so.
                let depth = crate::types::limits::list_compress_depth().max(0) as usize;
                let nodes = list_nodes(l);
                let count = nodes.len();
                put_len(&mut self.buf, count as u64);
                for (i, n) in nodes.into_iter().enumerate() {
                    put_len(&mut self.buf, QUICKLIST_PACKED);
                    let inner = depth > 0 && i >= depth && i + depth < count;
                    if inner && self.node_lzf(&n) {
                        continue;
                    }
                    self.string(&n);
                }
            }
        }
    }
}

/// `rdbcompression` as DUMP reads it on any shard (set at startup and by CONFIG SET).
static DUMP_COMPRESSION: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn set_dump_compression(on: bool) {
    DUMP_COMPRESSION.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub fn dump_compression() -> bool {
    DUMP_COMPRESSION.load(std::sync::atomic::Ordering::Relaxed)
}

/// A list as the listpack nodes of Redis's quicklist, cut as `list-max-listpack-size`
/// says, as the RDB writer and DEBUG OBJECT's `ql_*` fields see it.
pub fn list_nodes(l: &crate::types::list::List) -> Vec<Vec<u8>> {
    let fill = crate::types::limits::list_max_size();
    let mut nodes: Vec<Vec<u8>> = Vec::new();
    let mut lp = ListpackWriter::default();
    for v in l.iter() {
        if lp.count() > 0 && !list_node_fits(lp.bytes(), lp.count(), v.len(), fill) {
            nodes.push(std::mem::take(&mut lp).finish());
        }
        lp.push(v);
    }
    if lp.count() > 0 {
        nodes.push(lp.finish());
    }
    nodes
}

/// DUMP's payload for a value: the value as an RDB record body, then the RDB version (two
/// bytes, little endian) and the CRC64 of everything before it (little endian), as Redis's
/// createDumpPayload.
pub fn dump_payload(val: ValRef<'_>, compress: bool) -> Vec<u8> {
    let mut w = PartWriter::new(compress);
    w.typed(None, val);
    let mut out = w.buf;
    out.extend_from_slice(&(RDB_VERSION as u16).to_le_bytes());
    let crc = super::crc64::update(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The file around the parts: header and AUX fields, database headers, EOF and checksum.
pub struct Framer;

impl Framer {
    /// `REDIS0010` and the AUX fields Redis 7.0 writes (redis-ver, redis-bits, ctime,
    /// used-mem, aof-base).
    pub fn header(ctime: u64, used_mem: u64) -> Vec<u8> {
        let mut out = format!("REDIS{RDB_VERSION:04}").into_bytes();
        let ver = crate::commands::REDIS_COMPAT_VERSION;
        let bits = (usize::BITS).to_string();
        let aux: [(&str, String); 5] = [
            ("redis-ver", ver.to_string()),
            ("redis-bits", bits),
            ("ctime", ctime.to_string()),
            ("used-mem", used_mem.to_string()),
            ("aof-base", "0".to_string()),
        ];
        for (k, v) in aux {
            out.push(OP_AUX);
            put_plain_string(&mut out, k.as_bytes());
            put_plain_string(&mut out, v.as_bytes());
        }
        // Function libraries after the AUX fields, as Redis 7.0's rdbSaveFunctions.
        for code in super::function_codes() {
            out.push(OP_FUNCTION2);
            put_plain_string(&mut out, &code);
        }
        out
    }

    /// SELECTDB and RESIZEDB before a database's keys.
    pub fn db(db: usize, keys: u64, expires: u64) -> Vec<u8> {
        let mut out = vec![OP_SELECTDB];
        put_len(&mut out, db as u64);
        out.push(OP_RESIZEDB);
        put_len(&mut out, keys);
        put_len(&mut out, expires);
        out
    }

    /// EOF and the CRC64 of everything before it (0 when checksums are off, as Redis).
    pub fn trailer(crc: u64, checksum: bool) -> Vec<u8> {
        let mut out = vec![OP_EOF];
        let crc = if checksum {
            super::crc64::update(crc, &out)
        } else {
            0
        };
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_score_writes_what_score_text_says() {
        let scores = [
            1.5,
            -2.25,
            12345.5,
            1.0 / 1024.0,
            -(1.0 / 1024.0),
            9_999_999.0 + 1023.0 / 1024.0,
            10_000_000.5,
            0.1,
            1e-5,
            0.0,
            -0.0,
            123.0,
            -7.0,
            1e17,
            3e16,
            1e300,
            f64::INFINITY,
            f64::NEG_INFINITY,
            4_503_599_627_370_495.5,
        ];
        for d in scores {
            let mut a = ListpackWriter::default();
            push_score(&mut a, d);
            let mut b = ListpackWriter::default();
            b.push(score_text(d).as_bytes());
            assert_eq!(a.finish(), b.finish(), "{d}");
        }
    }
}
