//! Bitmap commands (Redis's bitops.c): SETBIT, GETBIT, BITCOUNT, BITPOS, BITFIELD(_RO) run
//! on the key's shard and work on the stored string in place (`Db::str_mut`, `with_str`:
//! no copy of a big value per command). BITOP reads its sources on their owners and, when
//! they span shards, computes on the coordinator and stores on the destination's owner
//! under `coord::lock::gather`'s locks, as SINTERSTORE does. Argument checks come in
//! Redis's order, before the key is looked at, except where Redis looks first (BITCOUNT,
//! BITPOS in 7.0).

use bytes::Bytes;

use super::args::{arg, int, is};
use super::table::{
    CommandSpec, Exec, KeySpec, CAT_BITMAP, DENYOOM, FAST, KEY_R, KEY_W, READONLY, WRITE,
};
use super::{ConnCtx, KeyCtx};
use crate::coord::lock::{gather_noting, Noting, WriteFn};
use crate::engine::Engine;
use crate::error::{self, CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::shard::db::Db;
use crate::shard::route::shard_of;
use crate::types::bitmap::{self as bm, Overflow};

const G: &str = "bitmap";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("setbit", 4, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(setbit))
        .acl(CAT_BITMAP)
        .ev(crate::shard::notify::STRING, "setbit")
        // A change when the bit flipped or the string was created or grown (Redis 7.0).
        .touches(super::table::Touches::Own)
        .verbatim()
        .doc(G, "2.2.0", "Sets or clears the bit at offset of the string value. Creates the key if it doesn't exist.", "key offset value"),
    CommandSpec::new("getbit", 3, READONLY | FAST, KeySpec::single(1), Exec::Key(getbit))
        .acl(CAT_BITMAP)
        .doc(G, "2.2.0", "Returns a bit value by offset.", "key offset"),
    CommandSpec::new("bitcount", -2, READONLY, KeySpec::single(1), Exec::Key(bitcount))
        .acl(CAT_BITMAP)
        .doc(G, "2.6.0", "Counts the number of set bits (population counting) in a string.", "key [start end [BYTE | BIT]]"),
    CommandSpec::new("bitpos", -3, READONLY, KeySpec::single(1), Exec::Key(bitpos))
        .acl(CAT_BITMAP)
        .doc(G, "2.8.7", "Finds the first set (1) or clear (0) bit in a string.", "key bit [start [end [BYTE | BIT]]]"),
    CommandSpec::new("bitop", -4, WRITE | DENYOOM, KeySpec::range(2, -1, 1), Exec::Key(bitop))
        .key_perms(&[KEY_W, KEY_R])
        .acl(CAT_BITMAP)
        .ev_store(crate::shard::notify::STRING, "set", 2)
        .cross(bitop_cross)
        .verbatim()
        .doc(G, "2.6.0", "Performs bitwise operations on multiple strings, and stores the result.", "AND | OR | XOR | NOT destkey key [key ...]"),
    CommandSpec::new("bitfield", -2, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(bitfield))
        .key_perms_by(bitfield_key_perms)
        .acl(CAT_BITMAP)
        .ev(crate::shard::notify::STRING, "setbit")
        // A change only when a SET or INCRBY did not fail (Redis's `changes`).
        .touches(super::table::Touches::Own)
        .verbatim()
        .doc(G, "3.2.0", "Performs arbitrary bitfield integer operations on strings.",
             "key [GET encoding offset | [OVERFLOW WRAP | SAT | FAIL] SET encoding offset value | INCRBY encoding offset increment [GET encoding offset | [OVERFLOW WRAP | SAT | FAIL] SET encoding offset value | INCRBY encoding offset increment ...]]"),
    CommandSpec::new("bitfield_ro", -2, READONLY | FAST, KeySpec::single(1), Exec::Key(bitfield_ro))
        .acl(CAT_BITMAP)
        .doc(G, "6.0.0", "Performs arbitrary read-only bitfield integer operations on strings.", "key [GET encoding offset [GET encoding offset ...]]"),
];

/// Largest byte offset a bit command may reach (`proto-max-bulk-len`, 512 MB).
const MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Redis's getBitOffsetFromArgument: `#n` (when `hash`) counts in units of `bits`.
fn bit_offset(raw: &[u8], hash: bool, bits: u32) -> Result<u64, CmdError> {
    let bad = || CmdError::coded(error::BIT_OFFSET);
    let use_hash = hash && raw.len() > 1 && raw.first() == Some(&b'#');
    let digits = if use_hash {
        raw.get(1..).unwrap_or_default()
    } else {
        raw
    };
    let mut off = parse_i64(digits).ok_or_else(bad)?;
    if use_hash {
        off = off.wrapping_mul(i64::from(bits));
    }
    if off < 0 || (off as u64 >> 3) >= MAX_BYTES {
        return Err(bad());
    }
    Ok(off as u64)
}

fn setbit(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let off = bit_offset(arg(argv, 2)?, false, 0)?;
    let on = parse_i64(arg(argv, 3)?)
        .filter(|v| v & !1 == 0)
        .ok_or_else(|| CmdError::coded(error::BIT_VALUE))?;
    let now = ctx.now();
    let len = (off >> 3) as usize + 1;
    let before = ctx.db().with_str(key, now, false, |v| v.len())?;
    let v = string_for_write(ctx.db(), key, now, len)?;
    let old = bm::set_bit(v, off, on == 1);
    if old != (on == 1) || before.is_none_or(|b| b < len) {
        ctx.shard.touch(ctx.db, key);
    }
    Ok(Reply::Int(i64::from(old)))
}

/// Redis's lookupStringForBitCommand: the string at `key` grown to `len` bytes, created
/// (zeroed, no TTL) when missing; WRONGTYPE for other types.
fn string_for_write<'a>(
    db: &'a mut Db,
    key: &[u8],
    now: u64,
    len: usize,
) -> Result<&'a mut [u8], CmdError> {
    if db.str_mut(key, now, len)?.is_none() {
        db.set(key, &vec![0u8; len], 0, now);
    }
    db.str_mut(key, now, len)?.ok_or(CmdError::NoSuchKey)
}

fn getbit(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let off = bit_offset(arg(argv, 2)?, false, 0)?;
    let now = ctx.now();
    let bit = ctx
        .db()
        .with_str(key, now, true, |v| bm::get_unsigned(v, off, 1))?;
    Ok(Reply::Int(bit.unwrap_or(0) as i64))
}

/// The optional `BYTE | BIT` unit word at `i`.
fn unit(argv: &[Bytes], i: usize) -> Result<bool, CmdError> {
    match argv.get(i) {
        None => Ok(false),
        Some(u) if is(u, "bit") => Ok(true),
        Some(u) if is(u, "byte") => Ok(false),
        Some(_) => Err(CmdError::Syntax),
    }
}

fn bitcount(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    // 7.0 looks the key up first: a missing key counts 0 whatever the arguments say.
    let r = ctx.db().with_str(key, now, true, |v| -> CmdResult {
        let range = match argv.len() {
            2 => bm::resolve(0, -1, v.len(), false),
            4 | 5 => {
                let (s, e) = (int(argv, 2)?, int(argv, 3)?);
                if s < 0 && e < 0 && s > e {
                    return Ok(Reply::Int(0));
                }
                bm::resolve(s, e, v.len(), unit(argv, 4)?)
            }
            _ => return Err(CmdError::Syntax),
        };
        Ok(Reply::Int(
            range.map_or(0, |(s, e)| bm::count(v, s, e) as i64),
        ))
    })?;
    r.unwrap_or(Ok(Reply::Int(0)))
}

fn bitpos(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let bit = parse_i64(arg(argv, 2)?).ok_or(CmdError::NotInteger)?;
    if bit != 0 && bit != 1 {
        return Err(CmdError::coded(error::BITPOS_BIT));
    }
    let bit = bit == 1;
    let now = ctx.now();
    let r = ctx.db().with_str(key, now, true, |v| -> CmdResult {
        let len = v.len();
        let (range, end_given) = match argv.len() {
            3 => (bm::resolve(0, -1, len, false), false),
            4..=6 => {
                let s = int(argv, 3)?;
                let bits = unit(argv, 5)?;
                let (e, given) = if argv.len() >= 5 {
                    (int(argv, 4)?, true)
                } else {
                    (-1, false)
                };
                (bm::resolve(s, e, len, bits), given)
            }
            _ => return Err(CmdError::Syntax),
        };
        let Some((s, e)) = range else {
            return Ok(Reply::Int(-1));
        };
        let pos = match bm::find(v, bit, s, e) {
            Some(p) => p as i64,
            // Past an open-ended range the string reads as zero bits.
            None if !bit && !end_given => e as i64 + 1,
            None => -1,
        };
        Ok(Reply::Int(pos))
    })?;
    r.unwrap_or(Ok(Reply::Int(if bit { -1 } else { 0 })))
}

// ---- BITOP ------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    And,
    Or,
    Xor,
    Not,
}

fn parse_bitop(argv: &[Bytes]) -> Result<BitOp, CmdError> {
    let name = arg(argv, 1)?;
    let op = if is(name, "and") {
        BitOp::And
    } else if is(name, "or") {
        BitOp::Or
    } else if is(name, "xor") {
        BitOp::Xor
    } else if is(name, "not") {
        BitOp::Not
    } else {
        return Err(CmdError::Syntax);
    };
    if op == BitOp::Not && argv.len() != 4 {
        return Err(CmdError::coded(error::BITOP_NOT));
    }
    Ok(op)
}

/// BITOP over the sources as read in key order (missing keys are empty strings; the
/// first WRONGTYPE wins). The result is as long as the longest source.
fn bitop_compute(op: BitOp, srcs: &[Result<Option<Bytes>, CmdError>]) -> Result<Vec<u8>, CmdError> {
    let mut vals: Vec<&[u8]> = Vec::with_capacity(srcs.len());
    for s in srcs {
        match s {
            Err(e) => return Err(e.clone()),
            Ok(v) => vals.push(v.as_deref().unwrap_or_default()),
        }
    }
    let maxlen = vals.iter().map(|v| v.len()).max().unwrap_or(0);
    let mut out = vec![0u8; maxlen];
    let byte = |v: &[u8], i: usize| v.get(i).copied().unwrap_or(0);
    for (i, o) in out.iter_mut().enumerate() {
        let mut it = vals.iter();
        let first = it.next().map_or(0, |v| byte(v, i));
        *o = match op {
            BitOp::Not => !first,
            BitOp::And => it.fold(first, |a, v| a & byte(v, i)),
            BitOp::Or => it.fold(first, |a, v| a | byte(v, i)),
            BitOp::Xor => it.fold(first, |a, v| a ^ byte(v, i)),
        };
    }
    Ok(out)
}

/// Stores a BITOP result (no TTL, `raw`), or deletes `dst` for an empty one.
fn bitop_store(db: &mut Db, dst: &[u8], res: &[u8], now: u64) {
    if res.is_empty() {
        db.remove(dst);
    } else {
        db.set(dst, res, 0, now);
        db.set_enc(dst, crate::shard::value::StrEnc::Raw);
    }
}

fn bitop(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let op = parse_bitop(argv)?;
    let dst = arg(argv, 2)?;
    let now = ctx.now();
    let db = ctx.db();
    let srcs: Vec<_> = argv.iter().skip(3).map(|k| db.get_str(k, now)).collect();
    let res = bitop_compute(op, &srcs)?;
    bitop_store(db, dst, &res, now);
    Ok(Reply::Int(res.len() as i64))
}

fn bitop_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let op = parse_bitop(&argv)?;
    let dst = arg(&argv, 2)?.clone();
    let db = ctx.client().db;
    let n = ctx.eng().nshards;
    let dst_owner = shard_of(&dst, n);
    let ticket = ctx.defer();
    let srcs: Vec<Bytes> = argv.iter().skip(3).cloned().collect();
    gather_noting(
        ctx.eng(),
        Some(Noting {
            db,
            argv: argv.to_vec(),
        }),
        srcs,
        vec![dst_owner],
        move |w: &mut Engine, k: &Bytes| {
            let now = w.shard.now_ms;
            w.shard.db_mut(db).get_str(k, now)
        },
        move |read| {
            let res = match bitop_compute(op, &read) {
                Ok(r) => r,
                Err(e) => return (e.into_reply(), Vec::new()),
            };
            let reply = Reply::Int(res.len() as i64);
            let write: WriteFn = Box::new(move |tw: &mut Engine| {
                tw.shard.touch(db, &dst);
                let now = tw.shard.now_ms;
                bitop_store(tw.shard.db_mut(db), &dst, &res, now);
            });
            (reply, vec![(dst_owner, write)])
        },
        move |w, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}

// ---- BITFIELD ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum FieldOp {
    Get,
    Set,
    Incrby,
}

struct Field {
    op: FieldOp,
    signed: bool,
    bits: u32,
    offset: u64,
    value: i64,
    ow: Overflow,
}

/// Redis's getBitfieldTypeFromArgument: `i1`..`i64` or `u1`..`u63`.
fn field_type(raw: &[u8]) -> Result<(bool, u32), CmdError> {
    let bad = || CmdError::coded(error::BITFIELD_TYPE);
    let signed = match raw.first() {
        Some(b'i') => true,
        Some(b'u') => false,
        _ => return Err(bad()),
    };
    let bits = parse_i64(raw.get(1..).unwrap_or_default()).ok_or_else(bad)?;
    if bits < 1 || bits > if signed { 64 } else { 63 } {
        return Err(bad());
    }
    Ok((signed, bits as u32))
}

/// Parses every subcommand (all errors come before the key is looked at).
fn parse_fields(argv: &[Bytes]) -> Result<Vec<Field>, CmdError> {
    let mut ops = Vec::new();
    let mut ow = Overflow::Wrap;
    let mut j = 2;
    while let Some(sub) = argv.get(j) {
        let rem = argv.len() - j - 1;
        let op = if is(sub, "get") && rem >= 2 {
            FieldOp::Get
        } else if is(sub, "set") && rem >= 3 {
            FieldOp::Set
        } else if is(sub, "incrby") && rem >= 3 {
            FieldOp::Incrby
        } else if is(sub, "overflow") && rem >= 1 {
            let t = arg(argv, j + 1)?;
            ow = if is(t, "wrap") {
                Overflow::Wrap
            } else if is(t, "sat") {
                Overflow::Sat
            } else if is(t, "fail") {
                Overflow::Fail
            } else {
                return Err(CmdError::coded(error::BITFIELD_OVERFLOW));
            };
            j += 2;
            continue;
        } else {
            return Err(CmdError::Syntax);
        };
        let (signed, bits) = field_type(arg(argv, j + 1)?)?;
        let offset = bit_offset(arg(argv, j + 2)?, true, bits)?;
        let value = if op == FieldOp::Get {
            0
        } else {
            int(argv, j + 3)?
        };
        ops.push(Field {
            op,
            signed,
            bits,
            offset,
            value,
            ow,
        });
        j += if op == FieldOp::Get { 3 } else { 4 };
    }
    Ok(ops)
}

/// One SET / INCRBY on the string: the reply (nil when FAIL refuses) and the write.
fn field_write(v: &mut [u8], f: &Field) -> Reply {
    let (off, bits) = (f.offset, f.bits);
    if f.signed {
        let old = bm::get_signed(v, off, bits);
        let (new, ovf, ret) = if f.op == FieldOp::Incrby {
            let o = bm::signed_overflow(old, f.value, bits, f.ow);
            let new = o.unwrap_or(old.wrapping_add(f.value));
            (new, o.is_some(), new)
        } else {
            let o = bm::signed_overflow(f.value, 0, bits, f.ow);
            (o.unwrap_or(f.value), o.is_some(), old)
        };
        if ovf && f.ow == Overflow::Fail {
            return Reply::Null;
        }
        bm::set_field(v, off, bits, new as u64);
        Reply::Int(ret)
    } else {
        let old = bm::get_unsigned(v, off, bits);
        let (new, ovf, ret) = if f.op == FieldOp::Incrby {
            let o = bm::unsigned_overflow(old, f.value, bits, f.ow);
            let new = o.unwrap_or(old.wrapping_add(f.value as u64));
            (new, o.is_some(), new)
        } else {
            let o = bm::unsigned_overflow(f.value as u64, 0, bits, f.ow);
            (o.unwrap_or(f.value as u64), o.is_some(), old)
        };
        if ovf && f.ow == Overflow::Fail {
            return Reply::Null;
        }
        bm::set_field(v, off, bits, new);
        Reply::Int(ret as i64)
    }
}

fn field_get(v: &[u8], f: &Field) -> Reply {
    Reply::Int(if f.signed {
        bm::get_signed(v, f.offset, f.bits)
    } else {
        bm::get_unsigned(v, f.offset, f.bits) as i64
    })
}

fn bitfield_generic(ctx: &mut KeyCtx, argv: &[Bytes], ro: bool) -> CmdResult {
    let key = arg(argv, 1)?;
    let ops = parse_fields(argv)?;
    let now = ctx.now();
    let db = ctx.db();
    let highest = ops
        .iter()
        .filter(|f| f.op != FieldOp::Get)
        .map(|f| f.offset + u64::from(f.bits) - 1)
        .max();
    let Some(highest) = highest else {
        let out = db.with_str(key, now, true, |v| {
            ops.iter().map(|f| field_get(v, f)).collect::<Vec<_>>()
        })?;
        let out = out.unwrap_or_else(|| ops.iter().map(|f| field_get(&[], f)).collect());
        return Ok(Reply::Array(out));
    };
    if ro {
        return Err(CmdError::coded(error::BITFIELD_RO));
    }
    let v = string_for_write(db, key, now, (highest >> 3) as usize + 1)?;
    let mut changes = 0;
    let out = ops
        .iter()
        .map(|f| match f.op {
            FieldOp::Get => field_get(v, f),
            _ => {
                let r = field_write(v, f);
                changes += usize::from(!matches!(r, Reply::Null));
                r
            }
        })
        .collect();
    if changes > 0 {
        ctx.shard.touch(ctx.db, key);
    }
    Ok(Reply::Array(out))
}

fn bitfield(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, argv, false)
}

fn bitfield_ro(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    bitfield_generic(ctx, argv, true)
}

/// BITFIELD's ACL key permission (Redis's variable-flags key spec): read only when every
/// operation is a GET (OVERFLOW aside), else read and write; a malformed list counts as a
/// write.
pub fn bitfield_key_perms(argv: &[Bytes]) -> u8 {
    use super::table::{KEY_R, KEY_RW};
    let mut i = 2;
    while let Some(op) = argv.get(i) {
        let rest = argv.len() - i - 1;
        if op.eq_ignore_ascii_case(b"get") && rest >= 2 {
            i += 3;
        } else if op.eq_ignore_ascii_case(b"overflow") && rest >= 1 {
            i += 2;
        } else {
            return KEY_RW;
        }
    }
    KEY_R
}

/// Bitmap family tests through the in-process kit (3 shards).
#[cfg(test)]
mod family {
    use crate::commands::testkit::{bulk, err, Kit};
    use crate::protocol::reply::Reply;

    #[test]
    fn setbit_getbit_bitcount() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["SETBIT", "b", "7", "1"]), Reply::Int(0));
        assert_eq!(k.run(&["SETBIT", "b", "7", "1"]), Reply::Int(1));
        assert_eq!(k.run(&["GET", "b"]), bulk("\x01"));
        assert_eq!(k.run(&["GETBIT", "b", "7"]), Reply::Int(1));
        assert_eq!(k.run(&["GETBIT", "b", "100"]), Reply::Int(0));
        assert_eq!(k.run(&["SETBIT", "b", "100", "1"]), Reply::Int(0));
        assert_eq!(k.run(&["STRLEN", "b"]), Reply::Int(13));
        assert_eq!(k.run(&["BITCOUNT", "b"]), Reply::Int(2));
        assert_eq!(k.run(&["BITCOUNT", "b", "0", "0"]), Reply::Int(1));
        assert_eq!(k.run(&["BITCOUNT", "b", "8", "100", "BIT"]), Reply::Int(1));
        assert_eq!(
            k.run(&["SETBIT", "b", "4294967296", "1"]),
            err("ERR bit offset is not an integer or out of range")
        );
        assert_eq!(
            k.run(&["SETBIT", "b", "1", "2"]),
            err("ERR bit is not an integer or out of range")
        );
        assert_eq!(k.run(&["OBJECT", "ENCODING", "b"]), bulk("raw"));
    }

    #[test]
    fn big_string_grows_and_keeps_ttl() {
        let mut k = Kit::new();
        k.run(&["SET", "g", "x", "EX", "100"]);
        for i in 0..2000u64 {
            k.run(&["SETBIT", "g", &(i * 64).to_string(), "1"]);
        }
        assert_eq!(k.run(&["BITCOUNT", "g"]), Reply::Int(1999 + 5));
        assert_eq!(k.run(&["STRLEN", "g"]), Reply::Int(1999 * 8 + 1));
        assert_eq!(k.run(&["TTL", "g"]), Reply::Int(100));
        assert_eq!(k.run(&["BITPOS", "g", "1", "2"]), Reply::Int(64));
    }

    #[test]
    fn bitfield_ops() {
        let mut k = Kit::new();
        assert_eq!(
            k.run(&[
                "BITFIELD", "f", "SET", "i8", "#1", "-5", "GET", "i8", "8", "INCRBY", "u2", "100",
                "7"
            ]),
            Reply::Array(vec![Reply::Int(0), Reply::Int(-5), Reply::Int(3)])
        );
        assert_eq!(
            k.run(&["BITFIELD", "f", "OVERFLOW", "FAIL", "INCRBY", "u2", "100", "1"]),
            Reply::Array(vec![Reply::Null])
        );
        assert_eq!(
            k.run(&["BITFIELD_RO", "f", "SET", "u2", "0", "1"]),
            err("ERR BITFIELD_RO only supports the GET subcommand")
        );
        assert_eq!(
            k.run(&["BITFIELD", "f", "GET", "u64", "0"]),
            err("ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.")
        );
    }
}
