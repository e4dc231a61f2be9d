//! String commands (Redis's t_string.c): GET/SET and friends, counters, ranges, MGET/MSET.
//! Handlers run on the shard that owns their key(s).

use bytes::Bytes;

use super::args::{arg, int, is};
use super::ldouble;
use super::table::{
    CommandSpec, Exec, KeySpec, Merge, SplitSpec, DENYOOM, FAST, KEY_W, READONLY, WRITE,
};
use super::{ConnCtx, KeyCtx};
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::shard::value::StrEnc;

const S: &str = "string";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("get", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(get))
        .doc(S, "1.0.0", "Returns the string value of a key.", "key"),
    CommandSpec::new("set", -3, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(set))
        .key_perms_by(set_key_perms)
        .ev_hook(crate::shard::notify::ev_set)
        .prop(crate::shard::journal::Prop::VerbatimIf(crate::shard::journal::set_is_verbatim))
        .noop(super::table::NoOp::NullWithoutGet)
        .doc(S, "1.0.0", "Sets the string value of a key, ignoring its type. The key is created if it doesn't exist.",
             "key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | KEEPTTL]"),
    CommandSpec::new("setnx", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(setnx))
        .key_perms(&[KEY_W])
        .noop(super::table::NoOp::Int0)
        .ev(crate::shard::notify::STRING, "set")
        .doc(S, "1.0.0", "Set the string value of a key only when the key doesn't exist.", "key value"),
    CommandSpec::new("setex", 4, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(setex))
        .key_perms(&[KEY_W])
        .ev_hook(crate::shard::notify::ev_setex)
        .doc(S, "2.0.0", "Sets the string value and expiration time of a key. Creates the key if it doesn't exist.", "key seconds value"),
    CommandSpec::new("psetex", 4, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(psetex))
        .key_perms(&[KEY_W])
        .ev_hook(crate::shard::notify::ev_setex)
        .doc(S, "2.6.0", "Sets both string value and expiration time in milliseconds of a key. The key is created if it doesn't exist.", "key milliseconds value"),
    CommandSpec::new("getset", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(getset))
        .ev(crate::shard::notify::STRING, "set")
        .doc(S, "1.0.0", "Returns the previous string value of a key after setting it to a new value.", "key value"),
    CommandSpec::new("getdel", 2, WRITE | FAST, KeySpec::single(1), Exec::Key(getdel))
        .noop(super::table::NoOp::Null)
        .ev(crate::shard::notify::GENERIC, "del")
        .doc(S, "6.2.0", "Returns the string value of a key after deleting the key.", "key"),
    CommandSpec::new("getex", -2, WRITE | FAST, KeySpec::single(1), Exec::Key(getex))
        .ev_hook(crate::shard::notify::ev_getex)
        .ttl_prop()
        .noop(super::table::NoOp::NullOrNoOptions)
        .doc(S, "6.2.0", "Returns the string value of a key after setting its expiration time.",
             "key [EX seconds | PX milliseconds | EXAT unix-time-seconds | PXAT unix-time-milliseconds | PERSIST]"),
    CommandSpec::new("mget", -2, READONLY | FAST, KeySpec::range(1, -1, 1),
        Exec::Split(SplitSpec { sub: mget, step: 1, merge: Merge::InOrder, atomic: true, nx: false }))
        .doc(S, "1.0.0", "Atomically returns the string values of one or more keys.", "key [key ...]"),
    CommandSpec::new("mset", -3, WRITE | DENYOOM, KeySpec::range(1, -1, 2),
        Exec::Split(SplitSpec { sub: mset, step: 2, merge: Merge::Ok, atomic: true, nx: false }))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::STRING, "set")
        .verbatim()
        .doc(S, "1.0.1", "Atomically creates or modifies the string values of one or more keys.", "key value [key value ...]"),
    CommandSpec::new("msetnx", -3, WRITE | DENYOOM, KeySpec::range(1, -1, 2),
        Exec::Split(SplitSpec { sub: msetnx, step: 2, merge: Merge::Ok, atomic: true, nx: true }))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::STRING, "set")
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .doc(S, "1.0.1", "Atomically modifies the string values of one or more keys only when all keys don't exist.", "key value [key value ...]"),
    CommandSpec::new("append", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(append))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::STRING, "append")
        .verbatim()
        .doc(S, "2.0.0", "Appends a string to the value of a key. Creates the key if it doesn't exist.", "key value"),
    CommandSpec::new("strlen", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(strlen))
        .key_perms(&[0])
        .doc(S, "2.2.0", "Returns the length of a string value.", "key"),
    CommandSpec::new("incr", 2, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(incr))
        .ev(crate::shard::notify::STRING, "incrby")
        .verbatim()
        .doc(S, "1.0.0", "Increments the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "key"),
    CommandSpec::new("decr", 2, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(decr))
        .ev(crate::shard::notify::STRING, "incrby")
        .verbatim()
        .doc(S, "1.0.0", "Decrements the integer value of a key by one. Uses 0 as initial value if the key doesn't exist.", "key"),
    CommandSpec::new("incrby", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(incrby))
        .ev(crate::shard::notify::STRING, "incrby")
        .verbatim()
        .doc(S, "1.0.0", "Increments the integer value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "key increment"),
    CommandSpec::new("decrby", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(decrby))
        .ev(crate::shard::notify::STRING, "incrby")
        .verbatim()
        .doc(S, "1.0.0", "Decrements a number from the integer value of a key. Uses 0 as initial value if the key doesn't exist.", "key decrement"),
    CommandSpec::new("incrbyfloat", 3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(incrbyfloat))
        .ev(crate::shard::notify::STRING, "incrbyfloat")
        .doc(S, "2.6.0", "Increment the floating point value of a key by a number. Uses 0 as initial value if the key doesn't exist.", "key increment"),
    CommandSpec::new("getrange", 4, READONLY, KeySpec::single(1), Exec::Key(getrange))
        .doc(S, "2.4.0", "Returns a substring of the string stored at a key.", "key start end"),
    CommandSpec::new("substr", 4, READONLY, KeySpec::single(1), Exec::Key(getrange))
        .doc(S, "1.0.0", "Returns a substring from a string value.", "key start end"),
    CommandSpec::new("setrange", 4, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(setrange))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::STRING, "setrange")
        .noop(super::table::NoOp::EmptyArg(3))
        .verbatim()
        .doc(S, "2.2.0", "Overwrites a part of a string value with another by an offset. Creates the key if it doesn't exist.", "key offset value"),
    CommandSpec::new("lcs", -3, READONLY, KeySpec::range(1, 2, 1), Exec::Key(lcs))
        .cross(lcs_cross)
        .doc(S, "7.0.0", "Finds the longest common substring.", "key1 key2 [LEN] [IDX] [MINMATCHLEN min-match-len] [WITHMATCHLEN]"),
];

/// Largest string a command may build (Redis's checkStringLength: proto-max-bulk-len default).
const MAX_STRING: u64 = 512 * 1024 * 1024;

fn get(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let key = arg(argv, 1)?;
    if let Some(out) = ctx.out.take() {
        // Straight into the connection's output (the common case: see `KeyCtx::out`).
        let resp = ctx.resp;
        ctx.db().get_str_encoded(key, now, resp, out)?;
        return Ok(Reply::Raw(Bytes::new()));
    }
    Ok(Reply::bulk_opt(ctx.db().get_str(key, now)?))
}

/// SET / GETEX options as Redis's parseExtendedStringArgumentsOrReply reads them. An
/// option may repeat (the last expire value wins), but two different expire kinds, NX with
/// XX, or KEEPTTL/PERSIST with an expire are a syntax error. The expire value itself is
/// only checked after every option parsed, so a syntax error wins over a bad number.
#[derive(Default)]
struct StrOpts<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    /// The expire kind (`ex`, `px`, `exat`, `pxat`) and its raw value.
    expire: Option<(&'static str, &'a [u8])>,
}

/// Which command's options `parse_str_opts` reads: SET or GETEX.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OptsFor {
    Set,
    Getex,
}

fn parse_str_opts(argv: &[Bytes], cmd: OptsFor) -> Result<StrOpts<'_>, CmdError> {
    let mut o = StrOpts::default();
    let set = cmd == OptsFor::Set;
    let mut i = if set { 3 } else { 2 };
    while let Some(opt) = argv.get(i) {
        let next = argv.get(i + 1);
        let kind = ["ex", "px", "exat", "pxat"]
            .into_iter()
            .find(|k| is(opt, k));
        let other_expire = |k: &str| o.expire.is_some_and(|(cur, _)| cur != k);
        if set && is(opt, "nx") && !o.xx {
            o.nx = true;
        } else if set && is(opt, "xx") && !o.nx {
            o.xx = true;
        } else if set && is(opt, "get") {
            o.get = true;
        } else if set && is(opt, "keepttl") && o.expire.is_none() {
            o.keepttl = true;
        } else if !set && is(opt, "persist") && o.expire.is_none() {
            o.persist = true;
        } else if let (Some(k), Some(v)) = (kind, next) {
            if o.keepttl || o.persist || other_expire(k) {
                return Err(CmdError::Syntax);
            }
            o.expire = Some((k, v));
            i += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    Ok(o)
}

/// Turns an EX/PX/EXAT/PXAT argument into absolute milliseconds (Redis's
/// getExpireMillisecondsOrReply), with the command's name in the error.
fn expire_at(kind: &str, raw: &[u8], now: u64, cmd: &str) -> Result<i64, CmdError> {
    let v = parse_i64(raw).ok_or(CmdError::NotInteger)?;
    let invalid = || CmdError::InvalidExpire(cmd.to_string());
    let secs = kind == "ex" || kind == "exat";
    if v <= 0 || (secs && v > i64::MAX / 1000) {
        return Err(invalid());
    }
    let ms = if secs { v * 1000 } else { v };
    if kind == "exat" || kind == "pxat" {
        Ok(ms)
    } else {
        ms.checked_add(now as i64).ok_or_else(invalid)
    }
}

fn set(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, val) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let o = parse_str_opts(argv, OptsFor::Set)?;
    let at = match o.expire {
        Some((kind, raw)) => Some(expire_at(kind, raw, now, "set")?),
        None => None,
    };
    let db = ctx.db();
    let old = if o.get { db.get_str(key, now)? } else { None };
    // Only NX / XX need to know; a plain SET overwrites whatever is there.
    let exists = (o.nx || o.xx) && db.exists(key, now);
    if (o.nx && exists) || (o.xx && !exists) {
        return Ok(if o.get {
            Reply::bulk_opt(old)
        } else {
            Reply::Null
        });
    }
    match at {
        None if o.keepttl => db.set_keep_ttl(key, val, now),
        None => db.set(key, val, 0, now),
        Some(at) if at <= now as i64 && !db.replica => {
            // Already expired: Redis's value would never be seen again; drop any old one.
            // (A replica keeps it until the master's DEL, as for EXPIRE.)
            db.remove(key);
        }
        Some(at) => db.set(key, val, at as u64, now),
    }
    Ok(if o.get {
        Reply::bulk_opt(old)
    } else {
        Reply::Ok
    })
}

fn setnx(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, val) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let db = ctx.db();
    if db.exists(key, now) {
        return Ok(Reply::Int(0));
    }
    db.set(key, val, 0, now);
    Ok(Reply::Int(1))
}

fn setex_generic(ctx: &mut KeyCtx, argv: &[Bytes], kind: &str, name: &str) -> CmdResult {
    let (key, ttl, val) = (arg(argv, 1)?, arg(argv, 2)?, arg(argv, 3)?);
    let now = ctx.now();
    let at = expire_at(kind, ttl, now, name)?;
    ctx.db().set(key, val, at as u64, now);
    Ok(Reply::Ok)
}

fn setex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    setex_generic(ctx, argv, "ex", "setex")
}

fn psetex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    setex_generic(ctx, argv, "px", "psetex")
}

fn getset(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, val) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let db = ctx.db();
    let old = db.get_str(key, now)?;
    db.set(key, val, 0, now);
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

/// GETEX (Redis's getexCommand): options, then the lookup (a missing key is nil even
/// with a bad expire value), then the expire value.
fn getex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let o = parse_str_opts(argv, OptsFor::Getex)?;
    let db = ctx.db();
    let Some(val) = db.get_str(key, now)? else {
        return Ok(Reply::Null);
    };
    let at = match o.expire {
        Some((kind, raw)) => Some(expire_at(kind, raw, now, "getex")?),
        None => None,
    };
    let db = ctx.db();
    match at {
        Some(at) if at <= now as i64 && !db.replica => {
            db.remove(key);
        }
        Some(at) => {
            db.set_expire(key, at as u64);
        }
        None if o.persist => {
            db.set_expire(key, 0);
        }
        None => {}
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

/// The key-value pairs of MSET/MSETNX (arity checked an odd argument count already).
fn pairs(argv: &[Bytes]) -> impl Iterator<Item = (&Bytes, &Bytes)> {
    argv.get(1..)
        .unwrap_or_default()
        .chunks_exact(2)
        .filter_map(|p| Some((p.first()?, p.get(1)?)))
}

fn mset(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    for (k, v) in pairs(argv) {
        db.set(k, v, 0, now);
    }
    Ok(Reply::Ok)
}

fn msetnx(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    if pairs(argv).any(|(k, _)| db.exists(k, now)) {
        return Ok(Reply::Int(0));
    }
    for (k, v) in pairs(argv) {
        db.set(k, v, 0, now);
    }
    Ok(Reply::Int(1))
}

fn append(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, val) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let db = ctx.db();
    match db.get_str_for_write(key, now)? {
        None => {
            db.set(key, val, 0, now);
            Ok(Reply::Int(val.len() as i64))
        }
        Some(cur) => {
            if cur.len() as u64 + val.len() as u64 > MAX_STRING {
                return Err(CmdError::err(
                    "string exceeds maximum allowed size (proto-max-bulk-len)",
                ));
            }
            let mut b = Vec::with_capacity(cur.len() + val.len());
            b.extend_from_slice(&cur);
            b.extend_from_slice(val);
            db.set_keep_ttl_enc(key, &b, StrEnc::Raw, now);
            Ok(Reply::Int(b.len() as i64))
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
    // A write's lookup (Redis's lookupKeyWrite): no hit or miss, no keymiss.
    let cur = match db.get_str_for_write(key, now)? {
        None => 0,
        Some(b) => parse_i64(&b).ok_or(CmdError::NotInteger)?,
    };
    let new = cur.checked_add(by).ok_or(CmdError::Overflow)?;
    let mut s = Vec::with_capacity(20);
    crate::protocol::write_i64(&mut s, new);
    db.set_keep_ttl(key, &s, now);
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

/// INCRBYFLOAT in `long double`, as Redis computes it (see `ldouble`).
fn incrbyfloat(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let db = ctx.db();
    // A write's lookup (Redis's lookupKeyWrite): no hit or miss, no keymiss. The key's
    // type and value are checked before the increment, in Redis's order (WRONGTYPE wins
    // over a bad increment).
    let cur = match db.get_str_for_write(key, now)? {
        None => ldouble::Ld::Finite {
            neg: false,
            mant: 0,
            exp: 0,
        },
        Some(b) => ldouble::parse(&b).ok_or(CmdError::NotFloat)?,
    };
    let by = ldouble::parse(arg(argv, 2)?).ok_or(CmdError::NotFloat)?;
    let new = ldouble::add(cur, by)
        .filter(|v| !v.is_inf())
        .ok_or_else(|| CmdError::err("increment would produce NaN or Infinity"))?;
    let s = Bytes::from(ldouble::fmt_human(new));
    // Redis builds the result with createStringObjectFromLongDouble: never int-encoded.
    db.set_keep_ttl_enc(key, &s, StrEnc::NoInt, now);
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
    let cur = db.get_str_for_write(key, now)?;
    if val.is_empty() {
        return Ok(Reply::Int(cur.map_or(0, |c| c.len() as i64)));
    }
    if offset as u64 + val.len() as u64 > MAX_STRING {
        return Err(too_big());
    }
    let off = offset as usize;
    let mut b = cur.map(|c| c.to_vec()).unwrap_or_default();
    if b.len() < off + val.len() {
        b.resize(off + val.len(), 0);
    }
    if let Some(dst) = b.get_mut(off..off + val.len()) {
        dst.copy_from_slice(val);
    }
    db.set_keep_ttl_enc(key, &b, StrEnc::Raw, now);
    Ok(Reply::Int(b.len() as i64))
}

/// LCS with both keys on this shard.
fn lcs(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let a = db.get_str(arg(argv, 1)?, now).map_err(lcs_type)?;
    let b = db.get_str(arg(argv, 2)?, now).map_err(lcs_type)?;
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    lcs_reply(&a, &b, argv)
}

/// LCS reports other types with its own text instead of WRONGTYPE.
fn lcs_type(e: CmdError) -> CmdError {
    match e {
        CmdError::WrongType => CmdError::coded(crate::error::LCS_NOT_STRING),
        e => e,
    }
}

/// LCS with the keys on two shards: read both values, then compute here.
fn lcs_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let db = ctx.client().db;
    let nshards = ctx.eng().nshards;
    let keys = [arg(&argv, 1)?.clone(), arg(&argv, 2)?.clone()];
    let ticket = ctx.defer();
    let jobs = keys
        .into_iter()
        .map(|k| {
            let owner = crate::shard::route::shard_of(&k, nshards);
            let job: crate::engine::ShardFn<Result<Option<Bytes>, CmdError>> =
                Box::new(move |tw| {
                    let now = tw.shard.now_ms;
                    tw.shard.db_mut(db).get_str(&k, now).map_err(lcs_type)
                });
            (owner, job)
        })
        .collect();
    ctx.eng().fan_out(jobs, true, move |w, vals| {
        let reply = (|| {
            let mut vals = vals.into_iter();
            let a = vals.next().transpose()?.flatten().unwrap_or_default();
            let b = vals.next().transpose()?.flatten().unwrap_or_default();
            lcs_reply(&a, &b, &argv)
        })()
        .unwrap_or_else(CmdError::into_reply);
        w.complete(ticket, reply);
    });
    Ok(Reply::Ok)
}

/// Redis's lcsCommand after the lookups: options, the DP table, then the walk back that
/// builds the string and the match ranges (in Redis's order: from the strings' ends).
fn lcs_reply(a: &[u8], b: &[u8], argv: &[Bytes]) -> CmdResult {
    let (mut getlen, mut getidx, mut withmatchlen, mut minmatchlen) = (false, false, false, 0i64);
    let mut j = 3;
    while let Some(opt) = argv.get(j) {
        if is(opt, "idx") {
            getidx = true;
        } else if is(opt, "len") {
            getlen = true;
        } else if is(opt, "withmatchlen") {
            withmatchlen = true;
        } else if is(opt, "minmatchlen") && j + 1 < argv.len() {
            minmatchlen = int(argv, j + 1)?.max(0);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    if getidx && getlen {
        return Err(CmdError::err(
            "If you want both the length and indexes, please just use IDX.",
        ));
    }
    let (alen, blen) = (a.len(), b.len());
    let cells = (alen as u64 + 1) * (blen as u64 + 1);
    if cells.saturating_mul(4) > MAX_STRING {
        return Err(CmdError::err(
            "Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let w = blen + 1;
    let mut t = vec![0u32; cells as usize];
    let at = |t: &[u32], i: usize, j: usize| t.get(j + i * w).copied().unwrap_or(0);
    for (i, &ca) in a.iter().enumerate() {
        for (j, &cb) in b.iter().enumerate() {
            let v = if ca == cb {
                at(&t, i, j) + 1
            } else {
                at(&t, i, j + 1).max(at(&t, i + 1, j))
            };
            if let Some(slot) = t.get_mut(j + 1 + (i + 1) * w) {
                *slot = v;
            }
        }
    }
    let total = at(&t, alen, blen);
    if getlen {
        return Ok(Reply::Int(i64::from(total)));
    }
    let mut result = vec![0u8; total as usize];
    let mut matches = Vec::new();
    let (mut i, mut j, mut idx) = (alen, blen, total as usize);
    // `None`: no range open (Redis uses arange_start == alen for that).
    let mut range: Option<(usize, usize, usize, usize)> = None;
    while i > 0 && j > 0 {
        let mut emit = false;
        let (ca, cb) = (a.get(i - 1), b.get(j - 1));
        if ca == cb {
            if let (Some(slot), Some(&c)) = (result.get_mut(idx.wrapping_sub(1)), ca) {
                *slot = c;
            }
            range = Some(match range {
                None => (i - 1, i - 1, j - 1, j - 1),
                Some((as_, ae, bs, be)) if as_ == i && bs == j => (as_ - 1, ae, bs - 1, be),
                Some(r) => {
                    emit = true;
                    r
                }
            });
            if range.is_some_and(|(as_, _, bs, _)| as_ == 0 || bs == 0) {
                emit = true;
            }
            idx = idx.saturating_sub(1);
            i -= 1;
            j -= 1;
        } else {
            if at(&t, i - 1, j) > at(&t, i, j - 1) {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = range.is_some();
        }
        if emit {
            if let Some((as_, ae, bs, be)) = range.take() {
                let len = (ae - as_ + 1) as i64;
                if minmatchlen == 0 || len >= minmatchlen {
                    let mut m = vec![
                        Reply::Array(vec![Reply::Int(as_ as i64), Reply::Int(ae as i64)]),
                        Reply::Array(vec![Reply::Int(bs as i64), Reply::Int(be as i64)]),
                    ];
                    if withmatchlen {
                        m.push(Reply::Int(len));
                    }
                    matches.push(Reply::Array(m));
                }
            }
        }
    }
    if getidx {
        return Ok(Reply::Map(vec![
            (Reply::bulk("matches"), Reply::Array(matches)),
            (Reply::bulk("len"), Reply::Int(i64::from(total))),
        ]));
    }
    Ok(Reply::Bulk(Bytes::from(result)))
}

/// SET's ACL key permission (Redis's variable-flags key spec): it only writes its key,
/// unless GET makes it read it too.
pub fn set_key_perms(argv: &[Bytes]) -> u8 {
    use super::table::{KEY_RW, KEY_W};
    if argv.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get")) {
        KEY_RW
    } else {
        KEY_W
    }
}

/// String family tests through the in-process kit (3 shards): values and exact error texts.
#[cfg(test)]
mod family {
    use crate::commands::testkit::{bulk, bulks, err, Kit};
    use crate::protocol::reply::Reply;

    const SYNTAX: &str = "ERR syntax error";
    const NOT_INT: &str = "ERR value is not an integer or out of range";
    const NOT_FLOAT: &str = "ERR value is not a valid float";

    #[test]
    fn get_set_and_conditions() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["GET", "a"]), Reply::Null);
        assert_eq!(k.run(&["SET", "a", "1"]), Reply::Ok);
        assert_eq!(k.run(&["GET", "a"]), bulk("1"));
        assert_eq!(k.run(&["SET", "a", "2", "NX"]), Reply::Null);
        assert_eq!(k.run(&["SET", "b", "2", "XX"]), Reply::Null);
        assert_eq!(k.run(&["GET", "b"]), Reply::Null);
        assert_eq!(k.run(&["SET", "a", "3", "xx", "GET"]), bulk("1"));
        assert_eq!(k.run(&["SET", "n", "x", "NX", "GET"]), Reply::Null);
        assert_eq!(k.run(&["GET", "n"]), bulk("x"));
        assert_eq!(k.run(&["SET", "a", "4", "NX", "GET"]), bulk("3"));
        assert_eq!(k.run(&["GET", "a"]), bulk("3"));
        // Repeating an option is allowed; the last expire value wins.
        assert_eq!(
            k.run(&["SET", "a", "v", "EX", "10", "EX", "20", "GET", "GET"]),
            bulk("3")
        );
        assert_eq!(k.run(&["TTL", "a"]), Reply::Int(20));
        assert_eq!(k.run(&["SET", "a", "w", "KEEPTTL", "KEEPTTL"]), Reply::Ok);
        assert_eq!(k.run(&["TTL", "a"]), Reply::Int(20));
        assert_eq!(k.run(&["SET", "a", "w"]), Reply::Ok);
        assert_eq!(k.run(&["TTL", "a"]), Reply::Int(-1));
    }

    #[test]
    fn set_option_errors_in_redis_order() {
        let mut k = Kit::new();
        for bad in [
            &["NX", "XX"][..],
            &["EX", "10", "PX", "10"],
            &["KEEPTTL", "EX", "10"],
            &["EX", "10", "KEEPTTL"],
            &["EXAT", "10", "PXAT", "10"],
            &["EX"],
            &["FOO"],
            // Option syntax is checked before the expire value.
            &["EX", "abc", "NX", "XX"],
            &["EX", "0", "FOO"],
        ] {
            let mut argv = vec!["SET", "a", "v"];
            argv.extend_from_slice(bad);
            assert_eq!(k.run(&argv), err(SYNTAX), "{argv:?}");
        }
        let inv = err("ERR invalid expire time in 'set' command");
        for (opt, v) in [
            ("EX", "0"),
            ("EX", "-1"),
            ("PX", "0"),
            ("EXAT", "0"),
            ("EX", "9223372036854775807"),
            ("PX", "9223372036854775807"),
        ] {
            assert_eq!(k.run(&["SET", "a", "v", opt, v]), inv, "{opt} {v}");
        }
        assert_eq!(k.run(&["SET", "a", "v", "EX", "1.5"]), err(NOT_INT));
        assert_eq!(
            k.run(&["GET", "a"]),
            Reply::Null,
            "failed SETs wrote nothing"
        );
    }

    #[test]
    fn expiry_options_and_time() {
        let mut k = Kit::new();
        let now_s = k.now() / 1000;
        let at = (now_s + 100).to_string();
        assert_eq!(k.run(&["SET", "a", "v", "EXAT", &at]), Reply::Ok);
        assert_eq!(k.run(&["EXPIRETIME", "a"]), Reply::Int(now_s as i64 + 100));
        assert_eq!(k.run(&["SET", "b", "v", "PX", "1500"]), Reply::Ok);
        assert_eq!(k.run(&["PTTL", "b"]), Reply::Int(1500));
        k.advance(1499);
        assert_eq!(k.run(&["GET", "b"]), bulk("v"));
        k.advance(1);
        assert_eq!(k.run(&["GET", "b"]), Reply::Null);
        assert_eq!(k.run(&["SET", "c", "v", "PXAT", "1"]), Reply::Ok);
        assert_eq!(k.run(&["EXISTS", "c"]), Reply::Int(0));
    }

    #[test]
    fn setnx_setex_getset_getdel() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["SETNX", "a", "1"]), Reply::Int(1));
        assert_eq!(k.run(&["SETNX", "a", "2"]), Reply::Int(0));
        assert_eq!(k.run(&["SETEX", "b", "100", "v"]), Reply::Ok);
        assert_eq!(k.run(&["TTL", "b"]), Reply::Int(100));
        assert_eq!(
            k.run(&["SETEX", "b", "0", "v"]),
            err("ERR invalid expire time in 'setex' command")
        );
        assert_eq!(
            k.run(&["PSETEX", "b", "-5", "v"]),
            err("ERR invalid expire time in 'psetex' command")
        );
        assert_eq!(k.run(&["SETEX", "b", "x", "v"]), err(NOT_INT));
        assert_eq!(k.run(&["GETSET", "b", "w"]), bulk("v"));
        assert_eq!(
            k.run(&["TTL", "b"]),
            Reply::Int(-1),
            "GETSET clears the TTL"
        );
        assert_eq!(k.run(&["GETSET", "new", "w"]), Reply::Null);
        assert_eq!(k.run(&["GETDEL", "b"]), bulk("w"));
        assert_eq!(k.run(&["GETDEL", "b"]), Reply::Null);
        assert_eq!(k.run(&["EXISTS", "b"]), Reply::Int(0));
    }

    #[test]
    fn getex_options() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["SET", "a", "v"]), Reply::Ok);
        assert_eq!(k.run(&["GETEX", "a", "EX", "100"]), bulk("v"));
        assert_eq!(k.run(&["TTL", "a"]), Reply::Int(100));
        assert_eq!(k.run(&["GETEX", "a", "PERSIST", "PERSIST"]), bulk("v"));
        assert_eq!(k.run(&["TTL", "a"]), Reply::Int(-1));
        assert_eq!(k.run(&["GETEX", "a", "EX", "10", "PERSIST"]), err(SYNTAX));
        assert_eq!(k.run(&["GETEX", "a", "EX", "abc", "PERSIST"]), err(SYNTAX));
        assert_eq!(k.run(&["GETEX", "a", "NX"]), err(SYNTAX));
        assert_eq!(
            k.run(&["GETEX", "a", "EX", "0"]),
            err("ERR invalid expire time in 'getex' command")
        );
        // A missing key is nil before the expire value is looked at.
        assert_eq!(k.run(&["GETEX", "nokey", "EX", "0"]), Reply::Null);
        assert_eq!(k.run(&["GETEX", "a", "PXAT", "1"]), bulk("v"));
        assert_eq!(k.run(&["EXISTS", "a"]), Reply::Int(0));
    }

    #[test]
    fn mget_mset_msetnx_across_shards() {
        let mut k = Kit::new();
        assert_eq!(
            k.run(&["MSET", "a", "1", "k1", "2", "k2", "3", "a", "4"]),
            Reply::Ok
        );
        assert_eq!(
            k.run(&["MGET", "k2", "a", "nokey", "k1"]),
            bulks(&[Some("3"), Some("4"), None, Some("2")])
        );
        assert_eq!(
            k.run(&["MSET", "a", "1", "k1"]),
            err("ERR wrong number of arguments for 'mset' command")
        );
        assert_eq!(
            k.run(&["MSETNX", "x", "1", "k2", "9"]),
            Reply::Int(0),
            "k2 exists on another shard"
        );
        assert_eq!(k.run(&["EXISTS", "x"]), Reply::Int(0));
        assert_eq!(
            k.run(&["MSETNX", "x", "1", "k3", "2", "k4", "3"]),
            Reply::Int(1)
        );
        assert_eq!(
            k.run(&["MGET", "x", "k3", "k4"]),
            bulks(&[Some("1"), Some("2"), Some("3")])
        );
    }

    #[test]
    fn append_strlen_ranges() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["APPEND", "a", "Hello"]), Reply::Int(5));
        assert_eq!(k.run(&["APPEND", "a", " World"]), Reply::Int(11));
        assert_eq!(k.run(&["STRLEN", "a"]), Reply::Int(11));
        assert_eq!(k.run(&["STRLEN", "nokey"]), Reply::Int(0));
        assert_eq!(k.run(&["GETRANGE", "a", "0", "4"]), bulk("Hello"));
        assert_eq!(k.run(&["GETRANGE", "a", "-5", "-1"]), bulk("World"));
        assert_eq!(k.run(&["GETRANGE", "a", "-100", "2"]), bulk("Hel"));
        assert_eq!(k.run(&["GETRANGE", "a", "5", "2"]), bulk(""));
        assert_eq!(k.run(&["GETRANGE", "a", "-1", "-5"]), bulk(""));
        assert_eq!(k.run(&["GETRANGE", "a", "100", "200"]), bulk(""));
        assert_eq!(k.run(&["SUBSTR", "a", "6", "100"]), bulk("World"));
        assert_eq!(k.run(&["GETRANGE", "nokey", "0", "-1"]), bulk(""));
        assert_eq!(k.run(&["GETRANGE", "a", "x", "1"]), err(NOT_INT));
        assert_eq!(k.run(&["SETRANGE", "a", "6", "Redis"]), Reply::Int(11));
        assert_eq!(k.run(&["GET", "a"]), bulk("Hello Redis"));
        assert_eq!(k.run(&["SETRANGE", "b", "3", "x"]), Reply::Int(4));
        assert_eq!(k.run(&["GET", "b"]), bulk("\0\0\0x"));
        assert_eq!(k.run(&["SETRANGE", "c", "3", ""]), Reply::Int(0));
        assert_eq!(k.run(&["EXISTS", "c"]), Reply::Int(0));
        assert_eq!(
            k.run(&["SETRANGE", "a", "-1", "x"]),
            err("ERR offset is out of range")
        );
        assert_eq!(
            k.run(&["SETRANGE", "a", "536870912", "x"]),
            err("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
        );
    }

    #[test]
    fn counters_and_overflow() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["INCR", "n"]), Reply::Int(1));
        assert_eq!(k.run(&["INCRBY", "n", "-11"]), Reply::Int(-10));
        assert_eq!(k.run(&["DECRBY", "n", "-3"]), Reply::Int(-7));
        assert_eq!(k.run(&["DECR", "n"]), Reply::Int(-8));
        for bad in ["abc", "1.5", "", " 1", "+1", "01", "9223372036854775808"] {
            assert_eq!(k.run(&["INCRBY", "n", bad]), err(NOT_INT), "{bad:?}");
        }
        assert_eq!(k.run(&["SET", "n", "9223372036854775807"]), Reply::Ok);
        let ovf = err("ERR increment or decrement would overflow");
        assert_eq!(k.run(&["INCR", "n"]), ovf);
        assert_eq!(k.run(&["SET", "n", "-9223372036854775808"]), Reply::Ok);
        assert_eq!(k.run(&["DECR", "n"]), ovf);
        assert_eq!(
            k.run(&["DECRBY", "n", "-9223372036854775808"]),
            err("ERR decrement would overflow")
        );
        assert_eq!(k.run(&["SET", "n", "x"]), Reply::Ok);
        assert_eq!(k.run(&["INCR", "n"]), err(NOT_INT));
        assert_eq!(k.run(&["SET", "t", "5", "EX", "100"]), Reply::Ok);
        assert_eq!(k.run(&["INCR", "t"]), Reply::Int(6));
        assert_eq!(k.run(&["TTL", "t"]), Reply::Int(100), "INCR keeps the TTL");
    }

    #[test]
    fn incrbyfloat() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["INCRBYFLOAT", "f", "0.1"]), bulk("0.1"));
        assert_eq!(k.run(&["INCRBYFLOAT", "f", "0.2"]), bulk("0.3"));
        assert_eq!(k.run(&["INCRBYFLOAT", "g", "5.0e3"]), bulk("5000"));
        assert_eq!(k.run(&["INCRBYFLOAT", "g", "-5000"]), bulk("0"));
        assert_eq!(k.run(&["INCRBYFLOAT", "h", "1.5e-7"]), bulk("0.00000015"));
        // long double precision and range, as Redis.
        assert_eq!(
            k.run(&["INCRBYFLOAT", "big", "12345678901234567890"]),
            bulk("12345678901234567890")
        );
        assert_eq!(k.run(&["INCRBYFLOAT", "hex", "0x10"]), bulk("16"));
        assert_eq!(k.run(&["SET", "huge", "1e308"]), Reply::Ok);
        let Reply::Bulk(v) = k.run(&["INCRBYFLOAT", "huge", "1e308"]) else {
            panic!("1e308 + 1e308 is finite in long double");
        };
        assert!(v.starts_with(b"1999999999999999999933717"), "{v:?}");
        assert_eq!(v.len(), 309);
        assert_eq!(k.run(&["OBJECT", "ENCODING", "g"]), bulk("embstr"));
        for bad in ["abc", "", " 1", "nan", "1e4933"] {
            assert_eq!(k.run(&["INCRBYFLOAT", "f", bad]), err(NOT_FLOAT), "{bad:?}");
        }
        assert_eq!(
            k.run(&["INCRBYFLOAT", "f", "inf"]),
            err("ERR increment would produce NaN or Infinity")
        );
        assert_eq!(k.run(&["SET", "s", "1e4933"]), Reply::Ok);
        assert_eq!(k.run(&["INCRBYFLOAT", "s", "1"]), err(NOT_FLOAT));
        // The key's type before the increment, as Redis.
        assert_eq!(k.run(&["LPUSH", "l", "x"]), Reply::Int(1));
        assert!(
            matches!(k.run(&["INCRBYFLOAT", "l", "abc"]), Reply::Error(e) if e.starts_with("WRONGTYPE"))
        );
    }

    #[test]
    fn object_encodings() {
        let mut k = Kit::new();
        let enc = |k: &mut Kit, key: &str| k.run(&["OBJECT", "ENCODING", key]);
        k.run(&["SET", "i", "12345"]);
        assert_eq!(enc(&mut k, "i"), bulk("int"));
        k.run(&["SET", "s", "hello"]);
        assert_eq!(enc(&mut k, "s"), bulk("embstr"));
        k.run(&["SET", "l", &"x".repeat(45)]);
        assert_eq!(enc(&mut k, "l"), bulk("raw"));
        k.run(&["APPEND", "i", "6"]);
        assert_eq!(
            enc(&mut k, "i"),
            bulk("raw"),
            "APPEND makes even digits raw"
        );
        k.run(&["INCR", "i"]);
        assert_eq!(enc(&mut k, "i"), bulk("int"));
        k.run(&["SETRANGE", "r", "1", "x"]);
        assert_eq!(enc(&mut k, "r"), bulk("raw"));
        assert_eq!(enc(&mut k, "nokey"), Reply::Null);
    }

    #[test]
    fn lcs_on_one_shard() {
        let mut k = Kit::new();
        k.run(&["MSET", "{l}a", "ohmytext", "{l}b", "mynewtext"]);
        assert_eq!(k.run(&["LCS", "{l}a", "{l}b"]), bulk("mytext"));
        assert_eq!(k.run(&["LCS", "{l}a", "{l}b", "LEN"]), Reply::Int(6));
        let pair = |x: i64, y: i64| Reply::Array(vec![Reply::Int(x), Reply::Int(y)]);
        assert_eq!(
            k.run(&[
                "LCS",
                "{l}a",
                "{l}b",
                "IDX",
                "MINMATCHLEN",
                "4",
                "WITHMATCHLEN"
            ]),
            Reply::Map(vec![
                (
                    bulk("matches"),
                    Reply::Array(vec![Reply::Array(vec![
                        pair(4, 7),
                        pair(5, 8),
                        Reply::Int(4)
                    ])])
                ),
                (bulk("len"), Reply::Int(6)),
            ])
        );
        assert_eq!(
            k.run(&["LCS", "{l}a", "{l}b", "LEN", "IDX"]),
            err("ERR If you want both the length and indexes, please just use IDX.")
        );
        assert_eq!(
            k.run(&["LCS", "{l}a", "{l}b", "MINMATCHLEN", "x"]),
            err(NOT_INT)
        );
        assert_eq!(k.run(&["LCS", "{l}a", "{l}b", "FOO"]), err(SYNTAX));
        assert_eq!(k.run(&["LCS", "{l}a", "{l}none"]), bulk(""));
    }
}
