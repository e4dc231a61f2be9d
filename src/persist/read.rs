//! The RDB reader: every encoding Redis 7.0 writes for strings, lists, hashes, sets, sorted
//! sets and streams (`stream_rdb`), and the older ones it still loads (ziplist, zipmap,
//! quicklist v1, ZSET with string scores, plain LIST, Redis 5-6 streams). Runs on the main
//! thread at startup and on the coordinating shard for DEBUG RELOAD. Every read is checked
//! against the input: a truncated or corrupt file is an error with Redis's wording, never a
//! panic, and no length read from the file allocates more than the input could hold.

use bytes::Bytes;

use super::packed::{read_intset, read_listpack, read_listpack_shared, read_ziplist, read_zipmap};
use super::rdb::*;
use crate::shard::value::Value;
use crate::types::hash::Hash;
use crate::types::list::{End, List};
use crate::types::set::Set;
use crate::types::zset::ZSet;

pub const SHORT_READ: &str = "Short read or OOM loading DB. Unrecoverable error, aborting now.";

/// What a load found besides the keys.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub keys: u64,
    /// Keys already expired, not loaded (as a Redis primary does).
    pub expired: u64,
    /// The `redis-ver` AUX field, if any.
    pub redis_ver: Option<String>,
    /// The file's checksum was 0 (saved with `rdbchecksum no`): not checked.
    pub unchecked: bool,
    /// The code of every function library in the file (`RDB_OPCODE_FUNCTION2`), for
    /// `persist::install_functions`.
    pub functions: Vec<Bytes>,
}

/// One key as loaded.
#[derive(Debug)]
pub struct Loaded {
    pub db: usize,
    pub key: Bytes,
    pub val: Value,
    /// Absolute Unix ms; 0 = none.
    pub expire_at: u64,
}

/// A string as the file stores it, not copied yet: raw bytes, a small integer, or LZF
/// (already checked to decompress to its length).
#[derive(Debug, Clone, Copy)]
pub enum RawStr<'a> {
    Raw(&'a [u8]),
    Int(i64),
    Lzf(&'a [u8], usize),
}

impl<'a> RawStr<'a> {
    /// The bytes: borrowed from the file, or built in `buf` (integers, LZF). `None` only
    /// for LZF data that does not decompress (never once the reader has checked it).
    pub fn bytes<'b>(self, buf: &'b mut Vec<u8>) -> Option<&'b [u8]>
    where
        'a: 'b,
    {
        match self {
            RawStr::Raw(b) => Some(b),
            RawStr::Int(i) => {
                buf.clear();
                buf.extend_from_slice(itoa(i).as_slice());
                Some(buf.as_slice())
            }
            RawStr::Lzf(data, ulen) => {
                super::lzf::decompress_into(data, ulen, buf).then_some(buf.as_slice())
            }
        }
    }

    /// An owned copy.
    fn to_bytes(self) -> Option<Bytes> {
        Some(match self {
            RawStr::Raw(b) => Bytes::copy_from_slice(b),
            RawStr::Int(i) => Bytes::from(i.to_string()),
            RawStr::Lzf(data, ulen) => Bytes::from(super::lzf::decompress(data, ulen)?),
        })
    }
}

/// A decimal integer in a stack buffer (at most 20 bytes for an i64).
struct Itoa {
    buf: [u8; 20],
    start: usize,
}

impl Itoa {
    fn as_slice(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

fn itoa(v: i64) -> Itoa {
    let mut f = Itoa {
        buf: [0; 20],
        start: 20,
    };
    let mut n = v.unsigned_abs();
    loop {
        f.start -= 1;
        if let Some(d) = f.buf.get_mut(f.start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if v < 0 {
        f.start -= 1;
        if let Some(d) = f.buf.get_mut(f.start) {
            *d = b'-';
        }
    }
    f
}

/// A key record as the reader meets it: checked and located, not decoded. String keys
/// are decoded later by their owner shard, straight from the file (`string_record`);
/// the others by `decode_record`, several threads at once (see `persist::load`).
pub enum Rec<'a> {
    Str {
        db: usize,
        /// Where the record's type byte is (its expiry, read before, is `expire_at`).
        at: usize,
        key: RawStr<'a>,
        expire_at: u64,
    },
    /// A collection: its structure is checked (every length within the file, LZF data
    /// sound); its contents are checked by `decode_record`.
    Other {
        db: usize,
        at: usize,
        key: RawStr<'a>,
        expire_at: u64,
    },
}

/// The key and value of the record whose type byte is at `at` (as `Rec::Other` located
/// it), fully checked; `None` for an empty collection (skipped, as Redis).
pub fn decode_record(data: &[u8], at: usize) -> R<(Bytes, Option<Value>)> {
    let mut c = Cursor { b: data, pos: at };
    let t = c.u8()?;
    let key = c.string()?;
    let val = read_value(&mut c, t, &key)?;
    Ok((key, val))
}

/// `decode_record` with the key appended to `keys` (its range returned): a batch of keys
/// shares one allocation, freed once by the shard that stores them, instead of one
/// allocation each, freed on another thread.
pub fn decode_record_into(
    data: &[u8],
    at: usize,
    keys: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
) -> R<(std::ops::Range<usize>, Option<Value>)> {
    let mut c = Cursor { b: data, pos: at };
    let t = c.u8()?;
    let pos = c.pos;
    let raw = c.raw_string()?;
    let key = raw
        .bytes(scratch)
        .ok_or_else(|| corrupt(pos, "Invalid LZF compressed string"))?;
    let start = keys.len();
    keys.extend_from_slice(key);
    let end = keys.len();
    let val = read_value(&mut c, t, keys.get(start..end).unwrap_or_default())?;
    Ok((start..end, val))
}

/// The string record whose type byte is at `at` in `data` (as `Rec::Str` located it): its
/// key and value. `None` if it is not one. The file was checked when the record was located:
/// LZF data is not checked again (a bad stream still fails to decompress, never panics).
pub fn string_record(data: &[u8], at: usize) -> Option<(RawStr<'_>, RawStr<'_>)> {
    let mut c = Cursor { b: data, pos: at };
    if c.u8().ok()? != TYPE_STRING {
        return None;
    }
    let key = c.raw_string_as(false).ok()?;
    let val = c.raw_string_as(false).ok()?;
    Some((key, val))
}

/// Only the key of the string record at `at` (a look-ahead: the loader prefetches where
/// the key will go).
pub fn string_record_key(data: &[u8], at: usize) -> Option<RawStr<'_>> {
    let mut c = Cursor { b: data, pos: at };
    if c.u8().ok()? != TYPE_STRING {
        return None;
    }
    c.raw_string_as(false).ok()
}

/// A reading position in a file or payload; every read is checked against its end.
pub(super) struct Cursor<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
}

pub(super) type R<T> = Result<T, String>;

pub(super) fn short() -> String {
    SHORT_READ.to_string()
}

/// One RDB string (length-prefixed, integer-encoded or LZF) at `*pos` in `b`; advances `pos`
/// (FUNCTION RESTORE reads its payload's library codes with it).
pub fn string_at(b: &[u8], pos: &mut usize) -> Result<Bytes, String> {
    let mut c = Cursor { b, pos: *pos };
    let s = c.string()?;
    *pos = c.pos;
    Ok(s)
}

impl<'a> Cursor<'a> {
    pub(super) fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(short)?;
        let s = self.b.get(self.pos..end).ok_or_else(short)?;
        self.pos = end;
        Ok(s)
    }

    pub(super) fn u8(&mut self) -> R<u8> {
        Ok(*self.take(1)?.first().ok_or_else(short)?)
    }

    pub(super) fn fixed<const N: usize>(&mut self) -> R<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn remaining(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }

    /// A length, or the special string encoding (`Err(Ok(enc))` style folded in `Len`).
    fn len_or_enc(&mut self) -> R<Len> {
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => Len::N(u64::from(b & 0x3F)),
            1 => Len::N(u64::from(b & 0x3F) << 8 | u64::from(self.u8()?)),
            3 => Len::Enc(b & 0x3F),
            _ => match b {
                0x80 => Len::N(u64::from(u32::from_be_bytes(self.fixed()?))),
                0x81 => Len::N(u64::from_be_bytes(self.fixed()?)),
                _ => return Err(format!("Unknown length encoding {b} in rdbLoadLen()")),
            },
        })
    }

    pub(super) fn len(&mut self) -> R<u64> {
        match self.len_or_enc()? {
            Len::N(n) => Ok(n),
            Len::Enc(_) => Err(short()),
        }
    }

    /// A count of items that each take at least one byte: more than the input holds is
    /// corrupt (so a count never sizes an allocation beyond the file).
    pub(super) fn count(&mut self, per_item: usize) -> R<usize> {
        let n = self.len()?;
        match usize::try_from(n) {
            Ok(n) if n.saturating_mul(per_item) <= self.remaining() => Ok(n),
            _ => Err(short()),
        }
    }

    pub(super) fn string(&mut self) -> R<Bytes> {
        let pos = self.pos;
        self.raw_string()?
            .to_bytes()
            .ok_or_else(|| corrupt(pos, "Invalid LZF compressed string"))
    }

    /// A string without copying it; LZF data is checked (not decompressed).
    pub(super) fn raw_string(&mut self) -> R<RawStr<'a>> {
        self.raw_string_as(true)
    }

    /// `raw_string`, checking LZF data only if `check`.
    #[inline]
    pub(super) fn raw_string_as(&mut self, check: bool) -> R<RawStr<'a>> {
        Ok(match self.len_or_enc()? {
            Len::N(n) => {
                let n = usize::try_from(n).map_err(|_| short())?;
                RawStr::Raw(self.take(n)?)
            }
            Len::Enc(0) => RawStr::Int(i64::from(self.u8()? as i8)),
            Len::Enc(1) => RawStr::Int(i64::from(i16::from_le_bytes(self.fixed()?))),
            Len::Enc(2) => RawStr::Int(i64::from(i32::from_le_bytes(self.fixed()?))),
            Len::Enc(3) => {
                let clen = usize::try_from(self.len()?).map_err(|_| short())?;
                let ulen = usize::try_from(self.len()?).map_err(|_| short())?;
                let data = self.take(clen)?;
                if check && !super::lzf::check(data, ulen) {
                    return Err(corrupt(self.pos, "Invalid LZF compressed string"));
                }
                RawStr::Lzf(data, ulen)
            }
            Len::Enc(e) => return Err(format!("Unknown RDB string encoding type {e}")),
        })
    }

    /// ZSET (version 1) scores: a length byte (253 NaN, 254 +inf, 255 -inf) and text.
    fn text_double(&mut self) -> R<f64> {
        let n = self.u8()?;
        Ok(match n {
            253 => f64::NAN,
            254 => f64::INFINITY,
            255 => f64::NEG_INFINITY,
            n => {
                let t = self.take(usize::from(n))?;
                std::str::from_utf8(t)
                    .ok()
                    .and_then(|s| s.trim().parse::<f64>().ok())
                    .ok_or_else(|| corrupt(self.pos, "Bad double value"))?
            }
        })
    }
}

enum Len {
    N(u64),
    Enc(u8),
}

pub(super) fn corrupt(pos: usize, what: &str) -> String {
    format!("Internal error in RDB reading offset {pos}, function at rdb.c:0 -> {what}")
}

fn parse_score(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    let d = s.parse::<f64>().ok()?;
    (!d.is_nan()).then_some(d)
}

/// Reads a whole RDB file (`data`), handing every live key to `sink`. `check_crc`:
/// compare the trailing CRC64 (Redis's `rdbchecksum`). Keys whose expiry is before `now_ms`
/// are counted in `expired` and not handed over.
pub fn parse(
    data: &[u8],
    now_ms: u64,
    databases: usize,
    check_crc: bool,
    mut sink: impl FnMut(Loaded) -> R<()>,
) -> R<Summary> {
    let mut empty = 0;
    let mut sum = parse_records(data, now_ms, databases, check_crc, |r| match r {
        Rec::Str {
            db,
            at,
            key,
            expire_at,
        } => {
            let (key, val) = string_record(data, at)
                .and_then(|(_, v)| Some((key.to_bytes()?, v.to_bytes()?)))
                .ok_or_else(|| corrupt(at, "Invalid string record"))?;
            sink(Loaded {
                db,
                key,
                val: Value::Str(val),
                expire_at,
            })
        }
        Rec::Other {
            db, at, expire_at, ..
        } => match decode_record(data, at)? {
            (key, Some(val)) => sink(Loaded {
                db,
                key,
                val,
                expire_at,
            }),
            (_, None) => {
                empty += 1;
                Ok(())
            }
        },
    })?;
    sum.keys -= empty;
    Ok(sum)
}

/// Files from this size on have their checksum computed on a second thread while the
/// main thread parses (a thread costs tens of µs; DEBUG RELOAD of a small file should not
/// pay for one).
const CRC_THREAD_FROM: usize = 1 << 20;

/// `parse`, handing string keys over located but not copied ([`Rec::Str`]).
pub fn parse_records(
    data: &[u8],
    now_ms: u64,
    databases: usize,
    check_crc: bool,
    sink: impl FnMut(Rec<'_>) -> R<()>,
) -> R<Summary> {
    // The checksum covers everything but the last 8 bytes of a well-formed file: computed
    // alongside the parse (the parse then checks that the file does end there).
    let whole = data.len().saturating_sub(8);
    if !check_crc || data.len() < CRC_THREAD_FROM {
        return parse_inner(data, now_ms, databases, check_crc, None, sink);
    }
    std::thread::scope(|s| {
        let crc = std::thread::Builder::new()
            .name("rdb-crc".into())
            .spawn_scoped(s, || {
                super::crc64::update(0, data.get(..whole).unwrap_or_default())
            })
            .ok();
        let pre = move || crc.and_then(|h| h.join().ok());
        parse_inner(
            data,
            now_ms,
            databases,
            check_crc,
            Some(Box::new(pre)),
            sink,
        )
    })
}

/// The checksum of `data[..len - 8]` computed meanwhile, if any.
type PreCrc<'s> = Option<Box<dyn FnOnce() -> Option<u64> + 's>>;

fn parse_inner(
    data: &[u8],
    now_ms: u64,
    databases: usize,
    check_crc: bool,
    pre_crc: PreCrc<'_>,
    mut sink: impl FnMut(Rec<'_>) -> R<()>,
) -> R<Summary> {
    let mut c = Cursor { b: data, pos: 0 };
    let magic = c.take(9).map_err(|_| short())?;
    if magic.get(..5) != Some(b"REDIS") {
        return Err("Wrong signature trying to load DB from file".into());
    }
    let version: u32 = std::str::from_utf8(magic.get(5..).unwrap_or_default())
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if !(1..=RDB_VERSION).contains(&version) {
        return Err(format!("Can't handle RDB format version {version}"));
    }
    let mut sum = Summary::default();
    let mut db = 0usize;
    let mut expire_at: u64 = 0;
    loop {
        let at = c.pos;
        let op = c.u8()?;
        match op {
            OP_EXPIRETIME => {
                expire_at = u64::from(u32::from_le_bytes(c.fixed()?)) * 1000;
                continue;
            }
            OP_EXPIRETIME_MS => {
                expire_at = u64::from_le_bytes(c.fixed()?);
                continue;
            }
            OP_FREQ => {
                c.u8()?;
                continue;
            }
            OP_IDLE => {
                c.len()?;
                continue;
            }
            OP_EOF => break,
            OP_SELECTDB => {
                let n = c.len()?;
                db = match usize::try_from(n) {
                    Ok(n) if n < databases => n,
                    _ => {
                        return Err(format!(
                            "FATAL: Data file was created with a Redis server configured to \
                             handle more than {databases} databases. Exiting"
                        ))
                    }
                };
                continue;
            }
            OP_RESIZEDB => {
                c.len()?;
                c.len()?;
                continue;
            }
            OP_AUX => {
                let k = c.string()?;
                let v = c.string()?;
                if k.as_ref() == b"redis-ver" {
                    sum.redis_ver = Some(String::from_utf8_lossy(&v).into_owned());
                }
                continue;
            }
            OP_MODULE_AUX => {
                return Err(
                    "The RDB file contains module AUX data; modules are not supported \
                            by shardis"
                        .into(),
                )
            }
            OP_FUNCTION2 => {
                sum.functions.push(c.string()?);
                continue;
            }
            OP_FUNCTION_PRE_GA => {
                return Err(
                    "The RDB file contains functions in the format of Redis 7.0's release \
                     candidates (RDB_OPCODE_FUNCTION); load and save it with Redis 7.0 first"
                        .into(),
                )
            }
            8 | 22.. => return Err(format!("Unknown RDB encoding type {op}")),
            _ => {}
        }
        let exp = std::mem::take(&mut expire_at);
        if op == TYPE_STRING {
            let key = c.raw_string()?;
            c.raw_string()?;
            if exp != 0 && exp < now_ms {
                sum.expired += 1;
                continue;
            }
            sum.keys += 1;
            sink(Rec::Str {
                db,
                at,
                key,
                expire_at: exp,
            })?;
            continue;
        }
        let key = c.raw_string()?;
        skip_value(&mut c, op, key)?;
        if exp != 0 && exp < now_ms {
            sum.expired += 1;
            continue;
        }
        // An empty collection is not a key: the decoding takes it off the count.
        sum.keys += 1;
        sink(Rec::Other {
            db,
            at,
            key,
            expire_at: exp,
        })?;
    }
    if version >= 5 {
        let body = c.pos;
        let stored = u64::from_le_bytes(c.fixed()?);
        if check_crc {
            if stored == 0 {
                sum.unchecked = true;
            } else {
                let pre = pre_crc.and_then(|f| f()).filter(|_| body + 8 == data.len());
                let got = pre.unwrap_or_else(|| {
                    super::crc64::update(0, data.get(..body).unwrap_or_default())
                });
                if got != stored {
                    return Err(format!(
                        "Wrong RDB checksum expected: ({stored:x}) got: ({got:x}). Aborting now."
                    ));
                }
            }
        }
    }
    Ok(sum)
}

/// RESTORE's payload check and decoding (Redis's verifyDumpPayload + rdbLoadObject):
/// `Err(false)` for a wrong version or checksum, `Err(true)` for bad data. An empty
/// collection decodes to `None`.
pub fn restore_payload(p: &[u8], check_crc: bool) -> Result<Option<Value>, bool> {
    let n = p.len();
    if n < 10 {
        return Err(false);
    }
    let (body, footer) = p.split_at(n - 10);
    let ver = u16::from_le_bytes([footer[0], footer[1]]);
    if u32::from(ver) > RDB_VERSION {
        return Err(false);
    }
    if check_crc {
        let stored = footer.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok());
        let got = super::crc64::update(0, p.get(..n - 8).unwrap_or_default());
        if stored.map(u64::from_le_bytes) != Some(got) {
            return Err(false);
        }
    }
    let mut c = Cursor { b: body, pos: 0 };
    let t = c.u8().map_err(|_| true)?;
    // Module types are refused by read_value like any unknown type.
    read_value(&mut c, t, b"").map_err(|_| true)
}

/// A packed blob read with `f`, or the Redis-style integrity error.
fn packed(c: &mut Cursor<'_>, what: &str, f: fn(&[u8]) -> Option<Vec<Bytes>>) -> R<Vec<Bytes>> {
    let blob = c.string()?;
    f(&blob).ok_or_else(|| corrupt(c.pos, &format!("{what} integrity check failed.")))
}

/// `packed` for a listpack whose strings stay slices of the blob (no copy each): only for
/// values that copy what they keep (hashes and sets do; a small sorted set does).
fn packed_shared(c: &mut Cursor<'_>, what: &str) -> R<Vec<Bytes>> {
    let blob = c.string()?;
    read_listpack_shared(&blob)
        .ok_or_else(|| corrupt(c.pos, &format!("{what} integrity check failed.")))
}

/// A listpack of pairs (a hash's, a small sorted set's) as slices, built straight from the
/// blob (see `packed::listpack_slices`): `buf` holds the blob when it was compressed,
/// `ints` the integers' text.
fn paired_slices<'a: 'b, 'b>(
    c: &mut Cursor<'a>,
    buf: &'b mut Vec<u8>,
    ints: &'b mut Vec<u8>,
    what: &str,
) -> R<Vec<&'b [u8]>> {
    let pos = c.pos;
    let blob = c
        .raw_string()?
        .bytes(buf)
        .ok_or_else(|| corrupt(pos, "Invalid LZF compressed string"))?;
    let items = super::packed::listpack_slices(blob, ints)
        .ok_or_else(|| corrupt(c.pos, "Listpack integrity check failed."))?;
    if !items.len().is_multiple_of(2) {
        return Err(corrupt(
            c.pos,
            &format!("{what} with an odd number of elements"),
        ));
    }
    Ok(items)
}

fn pairs_of(items: Vec<Bytes>, pos: usize, what: &str) -> R<Vec<(Bytes, Bytes)>> {
    if !items.len().is_multiple_of(2) {
        return Err(corrupt(
            pos,
            &format!("{what} with an odd number of elements"),
        ));
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        out.push((a, b));
    }
    Ok(out)
}

/// A hash from its pairs; `packed`: read from a listpack or ziplist (then only the count
/// decides the encoding, as Redis 7.0's loader).
fn hash_of(pairs: Vec<(Bytes, Bytes)>, pos: usize, packed: bool) -> R<Option<Value>> {
    let n = pairs.len();
    if packed {
        return match Hash::from_loaded_pairs(pairs) {
            Some(h) => Ok((n > 0).then(|| Value::Hash(Box::new(h)))),
            None => Err(corrupt(pos, "Duplicate hash fields detected")),
        };
    }
    let mut h = Hash::new();
    for (f, v) in pairs {
        h.insert(f, v);
    }
    if h.len() != n {
        return Err(corrupt(pos, "Duplicate hash fields detected"));
    }
    Ok((n > 0).then(|| Value::Hash(Box::new(h))))
}

fn set_of(members: Vec<Bytes>, pos: usize) -> R<Option<Value>> {
    let n = members.len();
    let s = Set::from_loaded(members);
    if s.len() != n {
        return Err(corrupt(pos, "Duplicate set members detected"));
    }
    Ok((n > 0).then(|| Value::Set(Box::new(s))))
}

/// A sorted set from its pairs; `packed` as in `hash_of`.
fn zset_of(pairs: Vec<(Bytes, f64)>, pos: usize, packed: bool) -> R<Option<Value>> {
    let n = pairs.len();
    if pairs.iter().any(|(_, s)| s.is_nan()) {
        return Err(corrupt(pos, "Zset with NAN score detected"));
    }
    let z = if packed {
        ZSet::from_packed_pairs(pairs)
    } else {
        ZSet::from_pairs(pairs)
    };
    if z.len() != n {
        return Err(corrupt(pos, "Duplicate zset fields detected"));
    }
    Ok((n > 0).then(|| Value::ZSet(Box::new(z))))
}

fn list_of(items: impl IntoIterator<Item = Bytes>) -> Option<Value> {
    let mut l = List::new();
    for v in items {
        l.push(End::Tail, v);
    }
    (!l.is_empty()).then(|| Value::List(Box::new(l)))
}

fn scored(items: Vec<Bytes>, pos: usize) -> R<Vec<(Bytes, f64)>> {
    pairs_of(items, pos, "Zset listpack")?
        .into_iter()
        .map(|(m, s)| {
            parse_score(&s)
                .map(|d| (m, d))
                .ok_or_else(|| corrupt(pos, "Zset listpack with a bad score"))
        })
        .collect()
}

/// Steps over the value of a key of RDB type `t`, checking only that its lengths stay
/// within the file: `read_value` checks the rest later (LZF data included, as it
/// decompresses it).
fn skip_value(c: &mut Cursor<'_>, t: u8, key: RawStr<'_>) -> R<()> {
    match t {
        TYPE_STRING | TYPE_HASH_ZIPMAP | TYPE_LIST_ZIPLIST | TYPE_SET_INTSET
        | TYPE_SET_LISTPACK | TYPE_ZSET_ZIPLIST | TYPE_ZSET_LISTPACK | TYPE_HASH_ZIPLIST
        | TYPE_HASH_LISTPACK => {
            c.raw_string_as(false)?;
        }
        TYPE_LIST | TYPE_SET => {
            for _ in 0..c.count(1)? {
                c.raw_string_as(false)?;
            }
        }
        TYPE_ZSET | TYPE_ZSET_2 => {
            for _ in 0..c.count(2)? {
                c.raw_string_as(false)?;
                if t == TYPE_ZSET_2 {
                    c.take(8)?;
                } else {
                    c.text_double()?;
                }
            }
        }
        TYPE_HASH => {
            for _ in 0..c.count(2)? {
                c.raw_string_as(false)?;
                c.raw_string_as(false)?;
            }
        }
        TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => {
            for _ in 0..c.count(1)? {
                if t == TYPE_LIST_QUICKLIST {
                    c.raw_string_as(false)?;
                    continue;
                }
                match c.len()? {
                    QUICKLIST_PLAIN | QUICKLIST_PACKED => {
                        c.raw_string_as(false)?;
                    }
                    n => {
                        return Err(corrupt(
                            c.pos,
                            &format!("Quicklist integrity check failed: container {n}"),
                        ))
                    }
                }
            }
        }
        TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 | TYPE_STREAM_LISTPACKS_3 => {
            super::stream_rdb::skip_stream(c, t)?;
        }
        // Modules, unknown types: `read_value`'s error.
        _ => {
            read_value(c, t, &key.to_bytes().unwrap_or_default())?;
        }
    }
    Ok(())
}

/// The value of a key of RDB type `t`; `None` for an empty collection (skipped, as Redis).
fn read_value(c: &mut Cursor<'_>, t: u8, key: &[u8]) -> R<Option<Value>> {
    Ok(match t {
        TYPE_STRING => Some(Value::Str(c.string()?)),
        TYPE_LIST => {
            let n = c.count(1)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(c.string()?);
            }
            list_of(v)
        }
        TYPE_SET => {
            // The members in one buffer, copied only into the set.
            let n = c.count(1)?;
            let (mut buf, mut scratch) = (Vec::new(), Vec::new());
            let mut spans = Vec::with_capacity(n);
            for _ in 0..n {
                let pos = c.pos;
                let m = c
                    .raw_string()?
                    .bytes(&mut scratch)
                    .ok_or_else(|| corrupt(pos, "Invalid LZF compressed string"))?;
                let start = buf.len();
                buf.extend_from_slice(m);
                spans.push(start..buf.len());
            }
            let items: Vec<&[u8]> = spans.into_iter().filter_map(|r| buf.get(r)).collect();
            let s = Set::from_loaded_slices(&items);
            if s.len() != n {
                return Err(corrupt(c.pos, "Duplicate set members detected"));
            }
            (n > 0).then(|| Value::Set(Box::new(s)))
        }
        TYPE_ZSET | TYPE_ZSET_2 => {
            let n = c.count(2)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let m = c.string()?;
                let s = if t == TYPE_ZSET_2 {
                    f64::from_le_bytes(c.fixed()?)
                } else {
                    c.text_double()?
                };
                v.push((m, s));
            }
            zset_of(v, c.pos, false)?
        }
        TYPE_HASH => {
            let n = c.count(2)?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let f = c.string()?;
                v.push((f, c.string()?));
            }
            hash_of(v, c.pos, false)?
        }
        TYPE_HASH_ZIPMAP => {
            let items = packed(c, "Zipmap", read_zipmap)?;
            hash_of(pairs_of(items, c.pos, "Zipmap")?, c.pos, false)?
        }
        TYPE_LIST_ZIPLIST => list_of(packed(c, "Ziplist", read_ziplist)?),
        TYPE_SET_INTSET => set_of(packed(c, "Intset", read_intset)?, c.pos)?,
        TYPE_SET_LISTPACK => set_of(packed_shared(c, "Listpack")?, c.pos)?,
        TYPE_ZSET_ZIPLIST => zset_of(
            scored(packed(c, "Ziplist", read_ziplist)?, c.pos)?,
            c.pos,
            true,
        )?,
        TYPE_ZSET_LISTPACK => {
            let (mut buf, mut ints) = (Vec::new(), Vec::new());
            let items = paired_slices(c, &mut buf, &mut ints, "Zset listpack")?;
            let mut pairs = Vec::with_capacity(items.len() / 2);
            for p in items.chunks_exact(2) {
                let (m, s) = (p.first().copied(), p.get(1).copied());
                let score = s
                    .and_then(parse_score)
                    .ok_or_else(|| corrupt(c.pos, "Zset listpack with a bad score"))?;
                if score.is_nan() {
                    return Err(corrupt(c.pos, "Zset with NAN score detected"));
                }
                pairs.push((m.unwrap_or_default(), score));
            }
            let z = ZSet::from_packed_slices(&pairs);
            if z.len() != pairs.len() {
                return Err(corrupt(c.pos, "Duplicate zset fields detected"));
            }
            (!pairs.is_empty()).then(|| Value::ZSet(Box::new(z)))
        }
        TYPE_HASH_ZIPLIST => {
            let items = packed(c, "Ziplist", read_ziplist)?;
            hash_of(pairs_of(items, c.pos, "Hash ziplist")?, c.pos, true)?
        }
        TYPE_HASH_LISTPACK => {
            let (mut buf, mut ints) = (Vec::new(), Vec::new());
            let items = paired_slices(c, &mut buf, &mut ints, "Hash listpack")?;
            let n = items.len() / 2;
            match Hash::from_loaded_items(&items) {
                Some(h) => (n > 0).then(|| Value::Hash(Box::new(h))),
                None => return Err(corrupt(c.pos, "Duplicate hash fields detected")),
            }
        }
        TYPE_LIST_QUICKLIST | TYPE_LIST_QUICKLIST_2 => {
            let nodes = c.count(1)?;
            let mut items = Vec::new();
            for _ in 0..nodes {
                if t == TYPE_LIST_QUICKLIST {
                    items.extend(packed(c, "Ziplist", read_ziplist)?);
                    continue;
                }
                match c.len()? {
                    QUICKLIST_PLAIN => items.push(c.string()?),
                    QUICKLIST_PACKED => items.extend(packed(c, "Listpack", read_listpack)?),
                    n => {
                        return Err(corrupt(
                            c.pos,
                            &format!("Quicklist integrity check failed: container {n}"),
                        ))
                    }
                }
            }
            list_of(items)
        }
        // A stream is a key even with no entries (its counters and groups are kept).
        TYPE_STREAM_LISTPACKS | TYPE_STREAM_LISTPACKS_2 | TYPE_STREAM_LISTPACKS_3 => Some(
            Value::Stream(Box::new(super::stream_rdb::read_stream(c, t)?)),
        ),
        TYPE_MODULE_PRE_GA | TYPE_MODULE_2 => {
            return Err(format!(
                "Can't load key '{}' of type module (RDB type {t}): shardis does not support \
                 modules",
                String::from_utf8_lossy(key),
            ))
        }
        _ => return Err(format!("Unknown RDB encoding type {t}")),
    })
}

#[cfg(test)]
mod tests {
    use super::super::crc64;
    use super::super::rdb::{Framer, PartWriter, ValRef};
    use super::*;
    use crate::types::stream::{Group, Stream, StreamId};

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_string())
    }

    /// A dataset with every type in its small and big encodings.
    fn dataset() -> Vec<(Bytes, Value, u64)> {
        let mut out = vec![
            (b("s-int"), Value::Str(b("12345")), 0),
            (b("s-neg"), Value::Str(b("-7")), 0),
            (b("s-big-int"), Value::Str(b("123456789012345")), 0),
            (b("s-raw"), Value::Str(b("hello")), 4_000_000_000_000),
            (b("s-lzf"), Value::Str(Bytes::from("ab".repeat(500))), 0),
            (b("s-empty"), Value::Str(Bytes::new()), 0),
        ];
        let mut h = Hash::new();
        h.insert(b("f"), b("v"));
        h.insert(b("n"), b("42"));
        out.push((b("h-small"), Value::Hash(Box::new(h)), 0));
        let mut h = Hash::new();
        for i in 0..1000 {
            h.insert(Bytes::from(format!("field{i}")), Bytes::from(i.to_string()));
        }
        out.push((b("h-big"), Value::Hash(Box::new(h)), 0));
        out.push((
            b("set-int"),
            Value::Set(Box::new(Set::from_members([b("1"), b("-70000"), b("3")]))),
            0,
        ));
        out.push((
            b("set-str"),
            Value::Set(Box::new(Set::from_members(
                (0..600).map(|i| Bytes::from(format!("m{i}"))),
            ))),
            0,
        ));
        out.push((
            b("z-small"),
            Value::ZSet(Box::new(ZSet::from_pairs([
                (b("a"), 1.0),
                (b("b"), -2.5),
                (b("c"), f64::INFINITY),
                (b("d"), 0.1),
                (b("e"), 1e300),
            ]))),
            0,
        ));
        out.push((
            b("z-big"),
            Value::ZSet(Box::new(ZSet::from_pairs(
                (0..300).map(|i| (Bytes::from(format!("m{i}")), f64::from(i) / 3.0)),
            ))),
            0,
        ));
        let mut l = List::new();
        for i in 0..5000 {
            l.push(End::Tail, Bytes::from(format!("item-{i}")));
        }
        l.push(End::Tail, Bytes::from("x".repeat(20_000)));
        out.push((b("list"), Value::List(Box::new(l)), 0));
        out.push((b("stream"), Value::Stream(Box::new(stream())), 0));
        out.push((b("stream-empty"), Value::Stream(Box::new(Stream::new())), 0));
        out
    }

    /// A stream of several nodes with a consumer group (built by appends only, so a loaded
    /// copy compares equal, node layout included).
    fn stream() -> Stream {
        let mut x = Stream::new();
        for i in 1..=250u64 {
            let f = if i % 10 == 0 { "other" } else { "f" };
            x.append(StreamId::new(i, 0), vec![b(f), Bytes::from(i.to_string())]);
        }
        let mut g = Group::new(StreamId::new(3, 0), 3);
        g.deliver(StreamId::new(2, 0), b"c1", 1234, None);
        x.groups.insert(b("grp"), g);
        x
    }

    fn file(keys: &[(Bytes, Value, u64)], compress: bool, checksum: bool) -> Vec<u8> {
        let mut w = PartWriter::new(compress);
        for (k, v, e) in keys {
            let r = match v.as_obj() {
                Some(o) => ValRef::Obj(o),
                None => match v {
                    Value::Str(s) => ValRef::Str(s),
                    _ => unreachable!(),
                },
            };
            w.key(k, r, *e);
        }
        let mut f = Framer::header(1, 2);
        f.extend(Framer::db(3, keys.len() as u64, 0));
        f.extend(&w.buf);
        let crc = crc64::update(0, &f);
        f.extend(Framer::trailer(crc, checksum));
        f
    }

    fn load(data: &[u8]) -> R<(Vec<Loaded>, Summary)> {
        let mut got = Vec::new();
        let s = parse(data, 1000, 16, true, |k| {
            got.push(k);
            Ok(())
        })?;
        Ok((got, s))
    }

    #[test]
    fn roundtrip_every_type_and_encoding() {
        let keys = dataset();
        for (compress, checksum) in [(true, true), (false, false)] {
            let (got, sum) = load(&file(&keys, compress, checksum)).unwrap();
            assert_eq!(sum.keys, keys.len() as u64);
            assert_eq!(sum.unchecked, !checksum);
            assert_eq!(got.len(), keys.len());
            for (l, (k, v, e)) in got.iter().zip(&keys) {
                assert_eq!((l.db, &l.key, l.expire_at), (3, k, *e));
                assert!(l.val == *v, "value of {k:?}");
            }
        }
    }

    #[test]
    fn expired_keys_are_skipped() {
        let keys = vec![(b("old"), Value::Str(b("v")), 500)];
        let (got, sum) = load(&file(&keys, true, true)).unwrap();
        assert!(got.is_empty());
        assert_eq!(sum.expired, 1);
    }

    #[test]
    fn truncation_and_corruption_are_errors_not_panics() {
        let keys = dataset();
        let data = file(&keys, true, true);
        for cut in (0..data.len())
            .step_by(97)
            .chain(data.len() - 9..data.len())
        {
            assert!(load(&data[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(load(&data[..100]).err().as_deref(), Some(SHORT_READ));
        // Flip bytes anywhere: an error (CRC at worst), never a panic.
        let mut seed = 1u64;
        for _ in 0..300 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut d = data.clone();
            let i = (seed as usize) % d.len();
            d[i] ^= 1 + (seed >> 32) as u8 % 255;
            assert!(load(&d).is_err());
        }
        let mut d = data.clone();
        let n = d.len();
        d[n - 1] ^= 0xFF;
        assert!(load(&d)
            .unwrap_err()
            .starts_with("Wrong RDB checksum expected: ("));
    }

    #[test]
    fn huge_lengths_do_not_allocate() {
        // A set claiming 2^60 members, a string claiming 2^60 bytes, an LZF string claiming
        // 2^40 bytes uncompressed.
        let mut f = b"REDIS0010".to_vec();
        f.extend([TYPE_SET, 1, b'k', 0x81]);
        f.extend((1u64 << 60).to_be_bytes());
        assert_eq!(load(&f).err().as_deref(), Some(SHORT_READ));
        let mut f = b"REDIS0010".to_vec();
        f.extend([TYPE_STRING, 1, b'k', 0x81]);
        f.extend((1u64 << 60).to_be_bytes());
        assert_eq!(load(&f).err().as_deref(), Some(SHORT_READ));
        let mut f = b"REDIS0010".to_vec();
        f.extend([TYPE_STRING, 1, b'k', 0xC3, 2, 0x81]);
        f.extend((1u64 << 40).to_be_bytes());
        f.extend([0, b'a', 0xFF]);
        assert!(load(&f).is_err());
    }

    #[test]
    fn header_streams_and_unsupported_types() {
        assert_eq!(
            load(b"REDIS0011\xff").err().as_deref(),
            Some("Can't handle RDB format version 11")
        );
        assert!(load(b"RODIS0010\xff")
            .unwrap_err()
            .starts_with("Wrong signature"));
        // A Redis 5/6 stream (type 15): no entries, last ID 5-0, no groups; a key all the
        // same. With a node whose listpack is empty: refused.
        let mut f = b"REDIS0009".to_vec();
        f.extend([
            TYPE_STREAM_LISTPACKS,
            3,
            b'e',
            b'v',
            b't',
            0,
            0,
            5,
            0,
            0,
            OP_EOF,
        ]);
        f.extend([0; 8]);
        let (got, sum) = load(&f).unwrap();
        assert_eq!(sum.keys, 1);
        match &got[0].val {
            Value::Stream(x) => {
                assert_eq!(
                    (x.len(), x.last_id, x.entries_added),
                    (0, StreamId::new(5, 0), 0)
                )
            }
            _ => panic!("not a stream"),
        }
        let mut f = b"REDIS0009".to_vec();
        f.extend([TYPE_STREAM_LISTPACKS, 3, b'e', b'v', b't', 1, 16]);
        f.extend(StreamId::new(5, 0).to_be());
        f.push(7);
        f.extend(super::super::packed::ListpackWriter::default().finish());
        f.extend([0, 5, 0, 0, OP_EOF]);
        f.extend([0; 8]);
        let e = load(&f).unwrap_err();
        assert!(e.contains("Empty listpack inside stream"), "{e}");
        let mut f = b"REDIS0009".to_vec();
        f.extend([TYPE_MODULE_2, 3, b'm', b'o', b'd', 0]);
        let e = load(&f).unwrap_err();
        assert!(e.contains("'mod'") && e.contains("module"), "{e}");
        let mut f = b"REDIS0009".to_vec();
        f.extend([OP_SELECTDB, 20]);
        assert!(load(&f).unwrap_err().contains("more than 16 databases"));
    }

    #[test]
    fn old_formats() {
        // ZSET v1 with text scores, a plain LIST, version 6 (checksum 0).
        let mut f = b"REDIS0006".to_vec();
        f.extend([
            TYPE_ZSET, 1, b'z', 2, 1, b'a', 3, b'1', b'.', b'5', 1, b'b', 254,
        ]);
        f.extend([TYPE_LIST, 1, b'l', 2, 1, b'x', 0xC0, 7]);
        f.push(OP_EOF);
        f.extend([0; 8]);
        let (got, _) = load(&f).unwrap();
        assert!(
            got[0].val
                == Value::ZSet(Box::new(ZSet::from_pairs([
                    (b("a"), 1.5),
                    (b("b"), f64::INFINITY)
                ])))
        );
        let mut l = List::new();
        l.push(End::Tail, b("x"));
        l.push(End::Tail, b("7"));
        assert!(got[1].val == Value::List(Box::new(l)));
    }
}
