//! Hash commands (Redis's t_hash.c): HSET and friends, counters, HRANDFIELD, HSCAN. Every
//! command names one key, so handlers run on the shard that owns it; the data structure
//! (compact `listpack` / `hashtable` forms, thresholds) lives in `types::hash`.

use bytes::Bytes;

use super::args::{arg, int, is, owned};
use super::keys::parse_cursor;
use super::ldouble;
use super::table::{CommandSpec, Exec, KeySpec, DENYOOM, FAST, KEY_W, READONLY, WRITE};
use super::KeyCtx;
use crate::error::{self, CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::types::{self, Rng};

const H: &str = "hash";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("hset", -4, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(hset))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::HASH, "hset")
        .verbatim()
        .doc(H, "2.0.0", "Creates or modifies the value of a field in a hash.", "key field value [field value ...]"),
    CommandSpec::new("hmset", -4, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(hmset))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::HASH, "hset")
        .verbatim()
        .doc(H, "2.0.0", "Sets the values of multiple fields.", "key field value [field value ...]"),
    CommandSpec::new("hsetnx", 4, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(hsetnx))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::HASH, "hset")
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .doc(H, "2.0.0", "Sets the value of a field in a hash only when the field doesn't exist.", "key field value"),
    CommandSpec::new("hget", 3, READONLY | FAST, KeySpec::single(1), Exec::Key(hget))
        .doc(H, "2.0.0", "Returns the value of a field in a hash.", "key field"),
    CommandSpec::new("hmget", -3, READONLY | FAST, KeySpec::single(1), Exec::Key(hmget))
        .doc(H, "2.0.0", "Returns the values of all fields in a hash.", "key field [field ...]"),
    CommandSpec::new("hdel", -3, WRITE | FAST, KeySpec::single(1), Exec::Key(hdel))
        .key_perms(&[KEY_W])
        .ev_counted(crate::shard::notify::HASH, "hdel")
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .doc(H, "2.0.0", "Deletes one or more fields and their values from a hash. Deletes the hash if no fields remain.", "key field [field ...]"),
    CommandSpec::new("hexists", 3, READONLY | FAST, KeySpec::single(1), Exec::Key(hexists))
        .key_perms(&[0])
        .doc(H, "2.0.0", "Determines whether a field exists in a hash.", "key field"),
    CommandSpec::new("hlen", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(hlen))
        .key_perms(&[0])
        .doc(H, "2.0.0", "Returns the number of fields in a hash.", "key"),
    CommandSpec::new("hstrlen", 3, READONLY | FAST, KeySpec::single(1), Exec::Key(hstrlen))
        .key_perms(&[0])
        .doc(H, "3.2.0", "Returns the length of the value of a field.", "key field"),
    CommandSpec::new("hkeys", 2, READONLY, KeySpec::single(1), Exec::Key(hkeys))
        .doc(H, "2.0.0", "Returns all fields in a hash.", "key"),
    CommandSpec::new("hvals", 2, READONLY, KeySpec::single(1), Exec::Key(hvals))
        .doc(H, "2.0.0", "Returns all values in a hash.", "key"),
    CommandSpec::new("hgetall", 2, READONLY, KeySpec::single(1), Exec::Key(hgetall))
        .doc(H, "2.0.0", "Returns all fields and values in a hash.", "key"),
    CommandSpec::new("hincrby", 4, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(hincrby))
        .ev(crate::shard::notify::HASH, "hincrby")
        .verbatim()
        .doc(H, "2.0.0", "Increments the integer value of a field in a hash by a number. Uses 0 as initial value if the field doesn't exist.", "key field increment"),
    CommandSpec::new("hincrbyfloat", 4, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(hincrbyfloat))
        .ev(crate::shard::notify::HASH, "hincrbyfloat")
        .prop(crate::shard::journal::Prop::Rewrite(crate::shard::journal::rw_hincrbyfloat))
        .doc(H, "2.6.0", "Increments the floating point value of a field by a number. Uses 0 as initial value if the field doesn't exist.", "key field increment"),
    CommandSpec::new("hrandfield", -2, READONLY, KeySpec::single(1), Exec::Key(hrandfield))
        .doc(H, "6.2.0", "Returns one or more random fields from a hash.", "key [count [WITHVALUES]]"),
    CommandSpec::new("hscan", -3, READONLY, KeySpec::single(1), Exec::Key(hscan))
        .doc(H, "2.8.0", "Iterates over fields and values of a hash.", "key cursor [MATCH pattern] [COUNT count]"),
];

/// Longest reply a random-members command builds (|count| above this is refused rather
/// than exhausting memory; Redis would try and hit its output buffer limits).
pub(super) const MAX_RAND_COUNT: u64 = 100_000_000;

/// The field-value pairs after the key (arity already checked the minimum).
fn field_pairs(argv: &[Bytes], name: &str) -> Result<Vec<(Bytes, Bytes)>, CmdError> {
    let rest = argv.get(2..).unwrap_or_default();
    if !rest.len().is_multiple_of(2) {
        return Err(CmdError::WrongArity(name.to_string()));
    }
    Ok(rest
        .chunks_exact(2)
        .filter_map(|p| Some((owned(p.first()?), owned(p.get(1)?))))
        .collect())
}

fn hset_generic(ctx: &mut KeyCtx, argv: &[Bytes], name: &str) -> Result<i64, CmdError> {
    let key = arg(argv, 1)?;
    let pairs = field_pairs(argv, name)?;
    let now = ctx.now();
    let h = ctx.db().hash_or_create(key, now)?;
    let mut added = 0;
    for (f, v) in pairs {
        added += i64::from(h.insert(f, v));
    }
    Ok(added)
}

fn hset(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    Ok(Reply::Int(hset_generic(ctx, argv, "hset")?))
}

fn hmset(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    hset_generic(ctx, argv, "hmset")?;
    Ok(Reply::Ok)
}

fn hsetnx(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, f, v) = (arg(argv, 1)?, arg(argv, 2)?, arg(argv, 3)?);
    let now = ctx.now();
    let h = ctx.db().hash_or_create(key, now)?;
    Ok(Reply::Int(i64::from(h.insert_nx(owned(f), owned(v)))))
}

fn hget(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, f) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let h = ctx.db().get_hash(key, now)?;
    Ok(Reply::bulk_opt(h.and_then(|h| h.get_bytes(f))))
}

fn hmget(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let h = ctx.db().get_hash(key, now)?;
    Ok(Reply::Array(
        argv.iter()
            .skip(2)
            .map(|f| Reply::bulk_opt(h.and_then(|h| h.get_bytes(f))))
            .collect(),
    ))
}

fn hdel(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let db = ctx.db();
    let Some(h) = db.get_hash_mut(key, now)? else {
        return Ok(Reply::Int(0));
    };
    let n = argv.iter().skip(2).filter(|f| h.remove(f)).count();
    db.remove_if_empty(key);
    Ok(Reply::Int(n as i64))
}

fn hexists(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, f) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let h = ctx.db().get_hash(key, now)?;
    Ok(Reply::Int(i64::from(h.is_some_and(|h| h.contains(f)))))
}

fn hlen(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let h = ctx.db().get_hash(arg(argv, 1)?, now)?;
    Ok(Reply::Int(h.map_or(0, |h| h.len() as i64)))
}

fn hstrlen(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, f) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let h = ctx.db().get_hash(key, now)?;
    Ok(Reply::Int(h.map_or(0, |h| h.strlen(f) as i64)))
}

fn hkeys(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let h = ctx.db().get_hash(arg(argv, 1)?, now)?;
    Ok(Reply::Array(h.map_or_else(Vec::new, |h| {
        h.iter()
            .map(|(f, _)| Reply::Bulk(Bytes::copy_from_slice(f)))
            .collect()
    })))
}

fn hvals(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let h = ctx.db().get_hash(arg(argv, 1)?, now)?;
    Ok(Reply::Array(h.map_or_else(Vec::new, |h| {
        h.iter()
            .map(|(_, v)| Reply::Bulk(Bytes::copy_from_slice(v)))
            .collect()
    })))
}

fn hgetall(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let h = ctx.db().get_hash(arg(argv, 1)?, now)?;
    Ok(Reply::Map(h.map_or_else(Vec::new, |h| {
        h.iter()
            .map(|(f, v)| {
                (
                    Reply::Bulk(Bytes::copy_from_slice(f)),
                    Reply::Bulk(Bytes::copy_from_slice(v)),
                )
            })
            .collect()
    })))
}

fn hincrby(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, f) = (arg(argv, 1)?, arg(argv, 2)?);
    // The increment is checked before the key's type (Redis's order).
    let by = int(argv, 3)?;
    let now = ctx.now();
    let db = ctx.db();
    let res = db.hash_or_create(key, now)?.incr_by(owned(f), by);
    db.remove_if_empty(key);
    Ok(Reply::Int(res.map_err(CmdError::coded)?))
}

fn hincrbyfloat(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, f, incr) = (arg(argv, 1)?, arg(argv, 2)?, arg(argv, 3)?);
    // Checked before the key's type, and before an empty hash could be created.
    let by = ldouble::parse(incr).ok_or(CmdError::NotFloat)?;
    if by.is_inf() {
        return Err(CmdError::coded(types::err::VALUE_NAN_INF));
    }
    let now = ctx.now();
    let db = ctx.db();
    let res = db.hash_or_create(key, now)?.incr_by_float(owned(f), incr);
    db.remove_if_empty(key);
    Ok(Reply::Bulk(res.map_err(CmdError::coded)?))
}

/// A SRANDMEMBER/HRANDFIELD count: an integer in `-LONG_MAX..=LONG_MAX` (Redis's texts),
/// and no longer a reply than we are willing to build.
pub(super) fn rand_count(argv: &[Bytes], i: usize) -> Result<i64, CmdError> {
    let n = int(argv, i)?;
    types::check_rand_count(n, false).map_err(CmdError::coded)?;
    Ok(n)
}

/// The shared guard against absurd reply sizes (see `MAX_RAND_COUNT`): negative counts only.
pub(super) fn bounded(n: i64) -> Result<i64, CmdError> {
    // A positive count is capped by the collection's size; only repetition can be long.
    if n < 0 && n.unsigned_abs() > MAX_RAND_COUNT {
        return Err(CmdError::coded(types::err::OUT_OF_RANGE));
    }
    Ok(n)
}

fn hrandfield(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let seed = ctx.shard.next_rand();
    let mut rng = Rng::new(seed);
    if argv.len() == 2 {
        let h = ctx.db().get_hash(key, now)?;
        return Ok(Reply::bulk_opt(
            h.and_then(|h| h.random_field(&mut rng)).map(|(f, _)| f),
        ));
    }
    let count = rand_count(argv, 2)?;
    let with_values = match argv.get(3) {
        None => false,
        Some(o) if argv.len() == 4 && is(o, "withvalues") => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    if with_values {
        types::check_rand_count(count, true).map_err(CmdError::coded)?;
    }
    let resp = ctx.resp;
    let Some(h) = ctx.db().get_hash(key, now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let count = bounded(count)?;
    let picked = h.random_fields(&mut rng, count);
    Ok(Reply::Array(if !with_values {
        picked.into_iter().map(|(f, _)| Reply::Bulk(f)).collect()
    } else if resp >= 3 {
        picked
            .into_iter()
            .map(|(f, v)| Reply::Array(vec![Reply::Bulk(f), Reply::Bulk(v)]))
            .collect()
    } else {
        picked
            .into_iter()
            .flat_map(|(f, v)| [Reply::Bulk(f), Reply::Bulk(v)])
            .collect()
    }))
}

/// HSCAN/SSCAN options after the cursor: `MATCH pattern`, `COUNT n` (n >= 1).
pub(super) fn scan_opts(argv: &[Bytes]) -> Result<(usize, Option<Bytes>), CmdError> {
    let (mut count, mut pattern) = (10usize, None);
    let mut i = 3;
    while let Some(opt) = argv.get(i) {
        let val = argv.get(i + 1).ok_or(CmdError::Syntax)?;
        if is(opt, "count") {
            let n = int(argv, i + 1)?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if is(opt, "match") {
            pattern = (val.as_ref() != b"*").then(|| val.clone());
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    Ok((count, pattern))
}

/// The SCAN cursor argument (`ERR invalid cursor`).
pub(super) fn cursor_arg(argv: &[Bytes]) -> Result<u64, CmdError> {
    parse_cursor(arg(argv, 2)?).ok_or_else(|| CmdError::coded(error::INVALID_CURSOR))
}

/// A SCAN-family reply: the next cursor and the elements.
pub(super) fn scan_reply(next: u64, items: Vec<Reply>) -> Reply {
    Reply::Array(vec![Reply::bulk(next.to_string()), Reply::Array(items)])
}

fn hscan(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let cursor = cursor_arg(argv)?;
    let now = ctx.now();
    let Some(h) = ctx.db().get_hash(key, now)? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let (count, pattern) = scan_opts(argv)?;
    let (next, pairs) = h.scan(cursor, count, pattern.as_deref());
    Ok(scan_reply(
        next,
        pairs
            .into_iter()
            .flat_map(|(f, v)| [Reply::Bulk(f), Reply::Bulk(v)])
            .collect(),
    ))
}

/// Hash family tests through the in-process kit (3 shards).
#[cfg(test)]
mod family {
    use crate::commands::testkit::{bulk, err, Kit};
    use crate::protocol::reply::Reply;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    #[test]
    fn set_get_delete_and_empty_keys_vanish() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["HSET", "h", "a", "1", "b", "2"]), Reply::Int(2));
        assert_eq!(k.run(&["HSET", "h", "a", "3"]), Reply::Int(0));
        assert_eq!(
            k.run(&["HSET", "h", "a"]),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(
            k.run(&["HSET", "h", "a", "1", "b"]),
            err("ERR wrong number of arguments for 'hset' command")
        );
        assert_eq!(k.run(&["HGET", "h", "a"]), bulk("3"));
        assert_eq!(k.run(&["HSETNX", "h", "a", "x"]), Reply::Int(0));
        assert_eq!(k.run(&["HLEN", "h"]), Reply::Int(2));
        assert_eq!(k.run(&["TYPE", "h"]), Reply::status("hash"));
        assert_eq!(k.run(&["OBJECT", "ENCODING", "h"]), bulk("listpack"));
        assert_eq!(k.run(&["HDEL", "h", "a", "b", "c"]), Reply::Int(2));
        assert_eq!(k.run(&["EXISTS", "h"]), Reply::Int(0));
        k.run(&["SET", "s", "x"]);
        assert_eq!(k.run(&["HGET", "s", "a"]), err(WRONGTYPE));
        assert_eq!(k.run(&["HSET", "s", "a", "b"]), err(WRONGTYPE));
        k.run(&["HSET", "h", "a", "1"]);
        assert_eq!(k.run(&["GET", "h"]), err(WRONGTYPE));
        assert_eq!(k.run(&["APPEND", "h", "x"]), err(WRONGTYPE));
        assert_eq!(k.run(&["INCR", "h"]), err(WRONGTYPE));
        assert_eq!(
            k.run(&["HINCRBYFLOAT", "new", "f", "abc"]),
            err("ERR value is not a valid float")
        );
        assert_eq!(k.run(&["EXISTS", "new"]), Reply::Int(0));
    }
}
