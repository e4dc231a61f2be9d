//! String commands (Redis's t_string.c): GET/SET and friends, counters, ranges, MGET/MSET.
//! Handlers run on the shard that owns their key(s).

use bytes::{Bytes, BytesMut};

use super::args::{arg, int, is, owned};
use super::table::{CommandSpec, Exec, KeySpec, Merge, MultiSpec, DENYOOM, FAST, READONLY, WRITE};
use super::KeyCtx;
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::protocol::{parse_f64, parse_i64};
use crate::shard::value::Value;

const S: &str = "string";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("get", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(get))
        .doc(S, "1.0.0", "Returns the string value of a key.", "key"),
    CommandSpec::new("set", -3, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(set))
        .doc(S, "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
             "key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]"),
    CommandSpec::new("setnx", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(setnx))
        .doc(S, "1.0.0", "Set the string value of a key only when the key doesn't exist.", "key value"),
    CommandSpec::new("setex", 4, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(setex))
        .doc(S, "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", "key seconds value"),
    CommandSpec::new("psetex", 4, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(psetex))
        .doc(S, "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", "key milliseconds value"),
    CommandSpec::new("getset", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(getset))
        .doc(S, "1.0.0", "Returns the previous string value of a key after setting it to a new value.", "key value"),
    CommandSpec::new("getdel", 2, WRITE | FAST, KeySpec::single(1), Exec::Key(getdel))
        .doc(S, "6.2.0", "Returns the string value of a key after deleting the key.", "key"),
    CommandSpec::new("getex", -2, WRITE | FAST, KeySpec::single(1), Exec::Key(getex))
        .doc(S, "6.2.0", "Returns the string value of a key after setting its expiration time.",
             "key [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | PERSIST]"),
    CommandSpec::new("mget", -2, READONLY | FAST, KeySpec::range(1, -1, 1),
        Exec::Multi(MultiSpec { sub: mget, step: 1, merge: Merge::InOrder, atomic: true, nx: false }))
        .doc(S, "1.0.0", "Atomically returns the string values of one or more keys.", "key [key ...]"),
    CommandSpec::new("mset", -3, WRITE | DENYOOM, KeySpec::range(1, -1, 2),
        Exec::Multi(MultiSpec { sub: mset, step: 2, merge: Merge::Ok, atomic: true, nx: false }))
        .doc(S, "1.0.1", "Atomically creates or modifies the string values of one or more keys.", "key value [key value ...]"),
    CommandSpec::new("msetnx", -3, WRITE | DENYOOM, KeySpec::range(1, -1, 2),
        Exec::Multi(MultiSpec { sub: msetnx, step: 2, merge: Merge::Ok, atomic: true, nx: true }))
        .doc(S, "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist.", "key value [key value ...]"),
    CommandSpec::new("append", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(append))
        .doc(S, "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist.", "key value"),
    CommandSpec::new("strlen", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(strlen))
        .doc(S, "2.2.0", "Returns the length of a string value.", "key"),
    CommandSpec::new("incr", 2, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(incr))
        .doc(S, "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "key"),
    CommandSpec::new("decr", 2, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(decr))
        .doc(S, "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "key"),
    CommandSpec::new("incrby", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(incrby))
        .doc(S, "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "key increment"),
    CommandSpec::new("decrby", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(decrby))
        .doc(S, "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", "key decrement"),
    CommandSpec::new("incrbyfloat", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(incrbyfloat))
        .doc(S, "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "key increment"),
    CommandSpec::new("getrange", 4, READONLY, KeySpec::single(1), Exec::Key(getrange))
        .doc(S, "2.4.0", "Returns a substring of the string stored at a key.", "key start end"),
    CommandSpec::new("substr", 4, READONLY, KeySpec::single(1), Exec::Key(getrange))
        .doc(S, "1.0.0", "Returns a substring from a string value.", "key start end"),
    CommandSpec::new("setrange", 4, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(setrange))
        .doc(S, "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", "key offset value"),
];

/// Largest string a command may build (Redis's checkStringLength: proto-max-bulk-len default).
const MAX_STRING: u64 = 512 * 1024 * 1024;

fn get(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    Ok(Reply::bulk_opt(ctx.db().get_str(arg(argv, 1)?, now)?))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cond {
    None,
    Nx,
    Xx,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ttl {
    /// Clear any TTL (plain SET).
    Clear,
    /// Keep the existing TTL (KEEPTTL, or GETEX without options).
    Keep,
    /// Absolute Unix milliseconds.
    At(i64),
    /// GETEX PERSIST.
    Persist,
}

/// Turns an EX/PX/EXAT/PXAT argument into absolute milliseconds (Redis's
/// getExpireMillisecondsOrReply), with the command's name in the error.
fn expire_at(
    raw: &[u8],
    unit_secs: bool,
    absolute: bool,
    now: u64,
    cmd: &str,
) -> Result<i64, CmdError> {
    let v = parse_i64(raw).ok_or(CmdError::NotInteger)?;
    let invalid = || CmdError::InvalidExpire(cmd.to_string());
    if v <= 0 || (unit_secs && v > i64::MAX / 1000) {
        return Err(invalid());
    }
    let ms = if unit_secs { v * 1000 } else { v };
    if absolute {
        Ok(ms)
    } else {
        ms.checked_add(now as i64).ok_or_else(invalid)
    }
}

fn set(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, val) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let mut cond = Cond::None;
    let mut want_get = false;
    let mut ttl = Ttl::Clear;
    let mut ttl_kind_set = false;
    let mut i = 3;
    while i < argv.len() {
        let opt = &argv[i];
        let has_next = i + 1 < argv.len();
        if is(opt, "nx") && cond != Cond::Xx {
            cond = Cond::Nx;
        } else if is(opt, "xx") && cond != Cond::Nx {
            cond = Cond::Xx;
        } else if is(opt, "get") {
            want_get = true;
        } else if is(opt, "keepttl") && !ttl_kind_set {
            ttl = Ttl::Keep;
            ttl_kind_set = true;
        } else if (is(opt, "ex") || is(opt, "px") || is(opt, "exat") || is(opt, "pxat"))
            && !ttl_kind_set
            && has_next
        {
            let secs = is(opt, "ex") || is(opt, "exat");
            let abs = is(opt, "exat") || is(opt, "pxat");
            i += 1;
            ttl = Ttl::At(expire_at(&argv[i], secs, abs, now, "set")?);
            ttl_kind_set = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let db = ctx.db();
    let old = if want_get {
        db.get_str(key, now)?
    } else {
        None
    };
    let exists = db.peek(key, now).is_some();
    if (cond == Cond::Nx && exists) || (cond == Cond::Xx && !exists) {
        return Ok(if want_get {
            Reply::bulk_opt(old)
        } else {
            Reply::Null
        });
    }
    let key = owned(key);
    match ttl {
        Ttl::Keep => db.set_keep_ttl(key, Value::Str(owned(val)), now),
        Ttl::At(at) if at <= now as i64 => {
            // Already expired: Redis stores nothing (and deletes any old value).
            db.remove(&key);
        }
        Ttl::At(at) => db.set(key, Value::Str(owned(val)), at as u64, now),
        _ => db.set(key, Value::Str(owned(val)), 0, now),
    }
    Ok(if want_get {
        Reply::bulk_opt(old)
    } else {
        Reply::Ok
    })
}

fn setnx(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, val) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let db = ctx.db();
    if db.peek(key, now).is_some() {
        return Ok(Reply::Int(0));
    }
    db.set(owned(key), Value::Str(owned(val)), 0, now);
    Ok(Reply::Int(1))
}

fn setex_generic(ctx: &mut KeyCtx, argv: &[Bytes], secs: bool, name: &str) -> CmdResult {
    let (key, ttl, val) = (arg(argv, 1)?, arg(argv, 2)?, arg(argv, 3)?);
    let now = ctx.now();
    let at = expire_at(ttl, secs, false, now, name)?;
    ctx.db()
        .set(owned(key), Value::Str(owned(val)), at as u64, now);
    Ok(Reply::Ok)
}

fn setex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    setex_generic(ctx, argv, true, "setex")
}

fn psetex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    setex_generic(ctx, argv, false, "psetex")
}

fn getset(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, val) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let db = ctx.db();
    let old = db.get_str(key, now)?;
    db.set(owned(key), Value::Str(owned(val)), 0, now);
    Ok(Reply::bulk_opt(old))
}

fn getdel(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let db = ctx.db();
    let old = db.get_str(key, now)?;
    if old.is_some() {
        db.remove(key);
    }
    Ok(Reply::bulk_opt(old))
}

fn getex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let mut ttl = Ttl::Keep;
    let mut set_once = false;
    let mut i = 2;
    while i < argv.len() {
        let opt = &argv[i];
        let has_next = i + 1 < argv.len();
        if is(opt, "persist") && !set_once {
            ttl = Ttl::Persist;
            set_once = true;
        } else if (is(opt, "ex") || is(opt, "px") || is(opt, "exat") || is(opt, "pxat"))
            && !set_once
            && has_next
        {
            let secs = is(opt, "ex") || is(opt, "exat");
            let abs = is(opt, "exat") || is(opt, "pxat");
            i += 1;
            ttl = Ttl::At(expire_at(&argv[i], secs, abs, now, "getex")?);
            set_once = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let db = ctx.db();
    let Some(val) = db.get_str(key, now)? else {
        return Ok(Reply::Null);
    };
    match ttl {
        Ttl::At(at) if at <= now as i64 => {
            db.remove(key);
        }
        Ttl::At(at) => {
            db.set_expire(key, at as u64);
        }
        Ttl::Persist => {
            db.set_expire(key, 0);
        }
        _ => {}
    }
    Ok(Reply::Bulk(val))
}

/// MGET for keys that all live on this shard (the coordinator splits wider ones).
fn mget(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let out = argv
        .iter()
        .skip(1)
        .map(|k| match db.get_str(k, now) {
            Ok(v) => Reply::bulk_opt(v),
            // MGET reports nil for keys of other types.
            Err(_) => Reply::Null,
        })
        .collect();
    Ok(Reply::Array(out))
}

fn mset(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    for pair in argv[1..].chunks_exact(2) {
        db.set(owned(&pair[0]), Value::Str(owned(&pair[1])), 0, now);
    }
    Ok(Reply::Ok)
}

fn msetnx(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    if argv[1..]
        .chunks_exact(2)
        .any(|p| db.peek(&p[0], now).is_some())
    {
        return Ok(Reply::Int(0));
    }
    for pair in argv[1..].chunks_exact(2) {
        db.set(owned(&pair[0]), Value::Str(owned(&pair[1])), 0, now);
    }
    Ok(Reply::Int(1))
}

fn append(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, val) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let db = ctx.db();
    match db.lookup_write(key, now) {
        None => {
            db.set(owned(key), Value::Str(owned(val)), 0, now);
            Ok(Reply::Int(val.len() as i64))
        }
        Some(e) => {
            let Value::Str(cur) = &e.val;
            if cur.len() as u64 + val.len() as u64 > MAX_STRING {
                return Err(CmdError::err(
                    "string exceeds maximum allowed size (proto-max-bulk-len)",
                ));
            }
            let mut b = BytesMut::with_capacity(cur.len() + val.len());
            b.extend_from_slice(cur);
            b.extend_from_slice(val);
            let len = b.len();
            e.val = Value::Str(b.freeze());
            e.raw = true;
            Ok(Reply::Int(len as i64))
        }
    }
}

fn strlen(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let v = ctx.db().get_str(arg(argv, 1)?, now)?;
    Ok(Reply::Int(v.map_or(0, |b| b.len() as i64)))
}

fn incr_by(ctx: &mut KeyCtx, key: &Bytes, by: i64) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let cur = match db.get_str(key, now)? {
        None => 0,
        Some(b) => parse_i64(&b).ok_or(CmdError::NotInteger)?,
    };
    let new = cur.checked_add(by).ok_or(CmdError::Overflow)?;
    let mut s = Vec::with_capacity(20);
    crate::protocol::write_i64(&mut s, new);
    db.set_keep_ttl(owned(key), Value::Str(Bytes::from(s)), now);
    Ok(Reply::Int(new))
}

fn incr(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    incr_by(ctx, arg(argv, 1)?, 1)
}

fn decr(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    incr_by(ctx, arg(argv, 1)?, -1)
}

fn incrby(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let by = int(argv, 2)?;
    incr_by(ctx, arg(argv, 1)?, by)
}

fn decrby(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let by = int(argv, 2)?;
    if by == i64::MIN {
        return Err(CmdError::err("decrement would overflow"));
    }
    incr_by(ctx, arg(argv, 1)?, -by)
}

/// Formats an INCRBYFLOAT result the way Redis's human long-double format reads: fixed
/// notation, no exponent, trailing zeros trimmed. We compute in f64, so we print 15
/// significant digits (what f64 carries exactly), which hides binary noise such as
/// 0.1 + 0.2 = 0.30000000000000004 just as Redis's long double arithmetic does.
pub fn fmt_human(d: f64) -> String {
    if d == 0.0 {
        return "0".into();
    }
    let mag = d.abs().log10().floor() as i32;
    let decimals = (14 - mag).clamp(0, 17) as usize;
    let s = format!("{:.*}", decimals, d);
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

fn incrbyfloat(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let by = parse_f64(arg(argv, 2)?).ok_or(CmdError::NotFloat)?;
    let now = ctx.now();
    let db = ctx.db();
    let cur = match db.get_str(key, now)? {
        None => 0.0,
        Some(b) => parse_f64(&b).ok_or(CmdError::NotFloat)?,
    };
    let new = cur + by;
    if new.is_nan() || new.is_infinite() {
        return Err(CmdError::err("increment would produce NaN or Infinity"));
    }
    let s = Bytes::from(fmt_human(new));
    db.set_keep_ttl(owned(key), Value::Str(s.clone()), now);
    Ok(Reply::Bulk(s))
}

fn getrange(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let (mut start, mut end) = (int(argv, 2)?, int(argv, 3)?);
    let now = ctx.now();
    let Some(v) = ctx.db().get_str(key, now)? else {
        return Ok(Reply::bulk(Bytes::new()));
    };
    let len = v.len() as i64;
    if start < 0 && end < 0 && start > end {
        return Ok(Reply::bulk(Bytes::new()));
    }
    if start < 0 {
        start += len;
    }
    if end < 0 {
        end += len;
    }
    start = start.max(0);
    end = end.max(0);
    if end >= len {
        end = len - 1;
    }
    if start > end || len == 0 {
        return Ok(Reply::bulk(Bytes::new()));
    }
    Ok(Reply::Bulk(v.slice(start as usize..=end as usize)))
}

fn setrange(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, val) = (arg(argv, 1)?, arg(argv, 3)?);
    let offset = int(argv, 2)?;
    if offset < 0 {
        return Err(CmdError::err("offset is out of range"));
    }
    let now = ctx.now();
    let db = ctx.db();
    let too_big = || CmdError::err("string exceeds maximum allowed size (proto-max-bulk-len)");
    match db.lookup_write(key, now) {
        None => {
            if val.is_empty() {
                return Ok(Reply::Int(0));
            }
            if offset as u64 + val.len() as u64 > MAX_STRING {
                return Err(too_big());
            }
            let mut b = vec![0u8; offset as usize + val.len()];
            b[offset as usize..].copy_from_slice(val);
            let len = b.len();
            db.set(owned(key), Value::Str(Bytes::from(b)), 0, now);
            if let Some(e) = db.lookup_write(key, now) {
                e.raw = true;
            }
            Ok(Reply::Int(len as i64))
        }
        Some(e) => {
            let Value::Str(cur) = &e.val;
            if val.is_empty() {
                return Ok(Reply::Int(cur.len() as i64));
            }
            if offset as u64 + val.len() as u64 > MAX_STRING {
                return Err(too_big());
            }
            let off = offset as usize;
            let mut b = cur.to_vec();
            if b.len() < off + val.len() {
                b.resize(off + val.len(), 0);
            }
            b[off..off + val.len()].copy_from_slice(val);
            let len = b.len();
            e.val = Value::Str(Bytes::from(b));
            e.raw = true;
            Ok(Reply::Int(len as i64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fmt_human;

    #[test]
    fn human_floats() {
        assert_eq!(fmt_human(10.5), "10.5");
        assert_eq!(fmt_human(0.1 + 0.2), "0.3");
        assert_eq!(fmt_human(5000.0), "5000");
        assert_eq!(fmt_human(-3.25), "-3.25");
        assert_eq!(fmt_human(1e20), "100000000000000000000");
        assert_eq!(fmt_human(3.0e-5), "0.00003");
    }
}
