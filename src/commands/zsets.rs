//! Sorted set commands (Redis's t_zset.c), non-blocking ones. Single-key commands run on
//! the key's shard. Scores reply as `Reply::Double` (RESP2: `%.17g` bulk strings; RESP3:
//! doubles); the ZRANGE family WITHSCORES replies flat in RESP2 and as [member, score]
//! pairs in RESP3, as Redis 7.0 does. ZUNION/ZINTER/ZDIFF, their STORE forms, ZINTERCARD
//! and ZRANGESTORE run on one shard when all their keys do, and otherwise through
//! `coord::lock::gather` (as SINTERSTORE): the sources are read (cloned) under the shards'
//! locks and the destination written on its shard before they go. ZMPOP with keys on
//! several shards runs as LMPOP does (`coord::blocking::mpop_cross`).
use bytes::Bytes;

use super::args::{arg, int, is, owned};
use super::hashes::{bounded, cursor_arg, scan_opts, scan_reply};
use super::table::{CommandSpec, Exec, KeySpec, DENYOOM, FAST, KEY_R, KEY_W, READONLY, WRITE};
use super::{ConnCtx, KeyCtx};
use crate::coord::lock::{gather_noting, Noting, WriteFn};
use crate::engine::Engine;
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::protocol::{fmt_g17, parse_f64, parse_i64};
use crate::shard::db::Db;
use crate::shard::route::shard_of;
use crate::shard::value::{ObjRef, Value};
use crate::types::zset::{
    parse_lex_range, parse_score_range, Aggregate, LexRange, Limit, ScoreRange, ZAddFlags,
    ZAddOutcome, ZInput, ZSet,
};
use crate::types::{self, Rng};

const Z: &str = "sorted-set";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("zadd", -4, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(zadd))
        .key_perms(&[KEY_W])
        .ev_hook(crate::shard::notify::ev_zadd)
        // Only a ZADD that added or updated a member is a change (WATCH, events, journal).
        .touches(super::table::Touches::Own)
        .verbatim()
        .doc(Z, "1.2.0", "Adds one or more members to a sorted set, or updates their scores. Creates the key if it doesn't exist.", "key [NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]"),
    CommandSpec::new("zincrby", 4, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(zincrby))
        .ev(crate::shard::notify::ZSET, "zincr")
        .verbatim()
        .doc(Z, "1.2.0", "Increments the score of a member in a sorted set.", "key increment member"),
    CommandSpec::new("zrem", -3, WRITE | FAST, KeySpec::single(1), Exec::Key(zrem))
        .key_perms(&[KEY_W])
        .noop(super::table::NoOp::Int0)
        .ev_counted(crate::shard::notify::ZSET, "zrem")
        .verbatim()
        .doc(Z, "1.2.0", "Removes one or more members from a sorted set. Deletes the sorted set if all members were removed.", "key member [member ...]"),
    CommandSpec::new("zcard", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(zcard))
        .key_perms(&[0])
        .doc(Z, "1.2.0", "Returns the number of members in a sorted set.", "key"),
    CommandSpec::new("zcount", 4, READONLY | FAST, KeySpec::single(1), Exec::Key(zcount))
        .doc(Z, "2.0.0", "Returns the count of members in a sorted set that have scores within a range.", "key min max"),
    CommandSpec::new("zlexcount", 4, READONLY | FAST, KeySpec::single(1), Exec::Key(zlexcount))
        .doc(Z, "2.8.9", "Returns the number of members in a sorted set within a lexicographical range.", "key min max"),
    CommandSpec::new("zscore", 3, READONLY | FAST, KeySpec::single(1), Exec::Key(zscore))
        .doc(Z, "1.2.0", "Returns the score of a member in a sorted set.", "key member"),
    CommandSpec::new("zmscore", -3, READONLY | FAST, KeySpec::single(1), Exec::Key(zmscore))
        .doc(Z, "6.2.0", "Returns the score of one or more members in a sorted set.", "key member [member ...]"),
    CommandSpec::new("zrank", 3, READONLY | FAST, KeySpec::single(1), Exec::Key(zrank))
        .doc(Z, "2.0.0", "Returns the index of a member in a sorted set ordered by ascending scores.", "key member"),
    CommandSpec::new("zrevrank", 3, READONLY | FAST, KeySpec::single(1), Exec::Key(zrevrank))
        .doc(Z, "2.0.0", "Returns the index of a member in a sorted set ordered by descending scores.", "key member"),
    CommandSpec::new("zrange", -4, READONLY, KeySpec::single(1), Exec::Key(zrange))
        .doc(Z, "1.2.0", "Returns members in a sorted set within a range of indexes.", "key start stop [BYSCORE|BYLEX] [REV] [LIMIT offset count] [WITHSCORES]"),
    CommandSpec::new("zrangestore", -5, WRITE | DENYOOM, KeySpec::range(1, 2, 1), Exec::Key(zrangestore))
        .key_perms(&[KEY_W, KEY_R])
        .ev_store(crate::shard::notify::ZSET, "zrangestore", 1)
        .cross(zrangestore_cross)
        .verbatim()
        .doc(Z, "6.2.0", "Stores a range of members from sorted set in a key.", "dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]"),
    CommandSpec::new("zrangebyscore", -4, READONLY, KeySpec::single(1), Exec::Key(zrangebyscore))
        .doc(Z, "1.0.5", "Returns members in a sorted set within a range of scores.", "key min max [WITHSCORES] [LIMIT offset count]"),
    CommandSpec::new("zrevrangebyscore", -4, READONLY, KeySpec::single(1), Exec::Key(zrevrangebyscore))
        .doc(Z, "2.2.0", "Returns members in a sorted set within a range of scores in reverse order.", "key max min [WITHSCORES] [LIMIT offset count]"),
    CommandSpec::new("zrangebylex", -4, READONLY, KeySpec::single(1), Exec::Key(zrangebylex))
        .doc(Z, "2.8.9", "Returns members in a sorted set within a lexicographical range.", "key min max [LIMIT offset count]"),
    CommandSpec::new("zrevrangebylex", -4, READONLY, KeySpec::single(1), Exec::Key(zrevrangebylex))
        .doc(Z, "2.8.9", "Returns members in a sorted set within a lexicographical range in reverse order.", "key max min [LIMIT offset count]"),
    CommandSpec::new("zrevrange", -4, READONLY, KeySpec::single(1), Exec::Key(zrevrange))
        .doc(Z, "1.2.0", "Returns members in a sorted set within a range of indexes in reverse order.", "key start stop [WITHSCORES]"),
    CommandSpec::new("zpopmin", -2, WRITE | FAST, KeySpec::single(1), Exec::Key(zpopmin))
        .noop(super::table::NoOp::NullOrEmpty)
        .ev(crate::shard::notify::ZSET, "zpopmin")
        .verbatim()
        .doc(Z, "5.0.0", "Returns the lowest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", "key [count]"),
    CommandSpec::new("zpopmax", -2, WRITE | FAST, KeySpec::single(1), Exec::Key(zpopmax))
        .noop(super::table::NoOp::NullOrEmpty)
        .ev(crate::shard::notify::ZSET, "zpopmax")
        .verbatim()
        .doc(Z, "5.0.0", "Returns the highest-scoring members from a sorted set after removing them. Deletes the sorted set if the last member was popped.", "key [count]"),
    CommandSpec::new("zmpop", -4, WRITE, KeySpec::numkeys(1), Exec::Key(super::blocking::now))
        .noop(super::table::NoOp::NullOrEmpty)
        .ev_hook(crate::shard::notify::ev_zset_pop)
        .cross(crate::coord::blocking::mpop_cross)
        .verbatim()
        .doc(Z, "7.0.0", "Returns the highest- or lowest-scoring members from one or more sorted sets after removing them. Deletes the sorted set if the last member was popped.", "numkeys key [key ...] MIN|MAX [COUNT count]"),
    CommandSpec::new("zrandmember", -2, READONLY, KeySpec::single(1), Exec::Key(zrandmember))
        .doc(Z, "6.2.0", "Returns one or more random members from a sorted set.", "key [count [WITHSCORES]]"),
    CommandSpec::new("zremrangebyscore", 4, WRITE, KeySpec::single(1), Exec::Key(zremrangebyscore))
        .key_perms(&[KEY_W])
        .noop(super::table::NoOp::Int0)
        .ev_counted(crate::shard::notify::ZSET, "zremrangebyscore")
        .verbatim()
        .doc(Z, "1.2.0", "Removes members in a sorted set within a range of scores. Deletes the sorted set if all members were removed.", "key min max"),
    CommandSpec::new("zremrangebyrank", 4, WRITE, KeySpec::single(1), Exec::Key(zremrangebyrank))
        .key_perms(&[KEY_W])
        .noop(super::table::NoOp::Int0)
        .ev_counted(crate::shard::notify::ZSET, "zremrangebyrank")
        .verbatim()
        .doc(Z, "2.0.0", "Removes members in a sorted set within a range of indexes. Deletes the sorted set if all members were removed.", "key start stop"),
    CommandSpec::new("zremrangebylex", 4, WRITE, KeySpec::single(1), Exec::Key(zremrangebylex))
        .key_perms(&[KEY_W])
        .noop(super::table::NoOp::Int0)
        .ev_counted(crate::shard::notify::ZSET, "zremrangebylex")
        .verbatim()
        .doc(Z, "2.8.9", "Removes members in a sorted set within a lexicographical range. Deletes the sorted set if all members were removed.", "key min max"),
    CommandSpec::new("zscan", -3, READONLY, KeySpec::single(1), Exec::Key(zscan))
        .doc(Z, "2.8.0", "Iterates over members and scores of a sorted set.", "key cursor [MATCH pattern] [COUNT count]"),
    CommandSpec::new("zunion", -3, READONLY, KeySpec::numkeys(1), Exec::Key(zalgebra))
        .cross(zalgebra_cross)
        .doc(Z, "6.2.0", "Returns the union of multiple sorted sets.", "numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]"),
    CommandSpec::new("zinter", -3, READONLY, KeySpec::numkeys(1), Exec::Key(zalgebra))
        .cross(zalgebra_cross)
        .doc(Z, "6.2.0", "Returns the intersect of multiple sorted sets.", "numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX] [WITHSCORES]"),
    CommandSpec::new("zdiff", -3, READONLY, KeySpec::numkeys(1), Exec::Key(zalgebra))
        .cross(zalgebra_cross)
        .doc(Z, "6.2.0", "Returns the difference between multiple sorted sets.", "numkeys key [key ...] [WITHSCORES]"),
    CommandSpec::new("zintercard", -3, READONLY, KeySpec::numkeys(1), Exec::Key(zalgebra))
        .cross(zalgebra_cross)
        .doc(Z, "7.0.0", "Returns the number of members of the intersect of multiple sorted sets.", "numkeys key [key ...] [LIMIT limit]"),
    CommandSpec::new("zunionstore", -4, WRITE | DENYOOM, KeySpec::dst_numkeys(1, 2), Exec::Key(zalgebra))
        .key_perms(&[KEY_W, KEY_R])
        .ev_store(crate::shard::notify::ZSET, "zunionstore", 1)
        .cross(zalgebra_cross)
        .verbatim()
        .doc(Z, "2.0.0", "Stores the union of multiple sorted sets in a key.", "destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX]"),
    CommandSpec::new("zinterstore", -4, WRITE | DENYOOM, KeySpec::dst_numkeys(1, 2), Exec::Key(zalgebra))
        .key_perms(&[KEY_W, KEY_R])
        .ev_store(crate::shard::notify::ZSET, "zinterstore", 1)
        .cross(zalgebra_cross)
        .verbatim()
        .doc(Z, "2.0.0", "Stores the intersect of multiple sorted sets in a key.", "destination numkeys key [key ...] [WEIGHTS weight [weight ...]] [AGGREGATE SUM|MIN|MAX]"),
    CommandSpec::new("zdiffstore", -4, WRITE | DENYOOM, KeySpec::dst_numkeys(1, 2), Exec::Key(zalgebra))
        .key_perms(&[KEY_W, KEY_R])
        .ev_store(crate::shard::notify::ZSET, "zdiffstore", 1)
        .cross(zalgebra_cross)
        .verbatim()
        .doc(Z, "6.2.0", "Stores the difference of multiple sorted sets in a key.", "destination numkeys key [key ...]"),
];

const LIMIT_ONLY_SCORE_LEX: &str =
    "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX";
const WITHSCORES_NOT_LEX: &str =
    "ERR syntax error, WITHSCORES not supported in combination with BYLEX";

/// (member, score) pairs as the ZRANGE family replies: flat in RESP2, pairs in RESP3.
pub(crate) fn pairs_reply(v: Vec<(Bytes, f64)>, withscores: bool, resp: u8) -> Reply {
    if !withscores {
        return Reply::Array(v.into_iter().map(|(m, _)| Reply::Bulk(m)).collect());
    }
    if resp > 2 {
        Reply::Array(
            v.into_iter()
                .map(|(m, s)| Reply::Array(vec![Reply::Bulk(m), Reply::Double(s)]))
                .collect(),
        )
    } else {
        let mut out = Vec::with_capacity(v.len() * 2);
        for (m, s) in v {
            out.push(Reply::Bulk(m));
            out.push(Reply::Double(s));
        }
        Reply::Array(out)
    }
}

fn zadd(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let mut flags = ZAddFlags::default();
    let mut ch = false;
    let mut i = 2;
    while let Some(a) = argv.get(i) {
        if is(a, "nx") {
            flags.nx = true;
        } else if is(a, "xx") {
            flags.xx = true;
        } else if is(a, "ch") {
            ch = true;
        } else if is(a, "incr") {
            flags.incr = true;
        } else if is(a, "gt") {
            flags.gt = true;
        } else if is(a, "lt") {
            flags.lt = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = argv.get(i..).unwrap_or(&[]);
    if rest.is_empty() || rest.len() % 2 != 0 {
        return Err(CmdError::Syntax);
    }
    flags.validate(rest.len() / 2).map_err(CmdError::coded)?;
    let mut pairs = Vec::with_capacity(rest.len() / 2);
    for p in rest.chunks_exact(2) {
        if let [s, m] = p {
            pairs.push((parse_f64(s).ok_or(CmdError::NotFloat)?, m));
        }
    }
    let now = ctx.now();
    let db = ctx.db();
    let z = if flags.xx {
        match db.get_zset_mut(key, now)? {
            Some(z) => z,
            None => {
                return Ok(if flags.incr {
                    Reply::Null
                } else {
                    Reply::Int(0)
                })
            }
        }
    } else {
        db.zset_or_create(key, now)?
    };
    let (mut added, mut updated, mut processed) = (0i64, 0i64, 0i64);
    let mut last = None;
    for (s, m) in pairs {
        let out = match z.add(s, owned(m), flags) {
            Ok(o) => o,
            Err(e) => {
                db.remove_if_empty(key);
                return Err(CmdError::coded(e));
            }
        };
        match out {
            ZAddOutcome::Added(_) => added += 1,
            ZAddOutcome::Updated(_) => updated += 1,
            _ => {}
        }
        if out != ZAddOutcome::Nop {
            processed += 1;
        }
        last = out.score();
    }
    db.remove_if_empty(key);
    if added + updated > 0 {
        ctx.shard.touch(ctx.db, key);
    }
    Ok(if flags.incr {
        match (processed, last) {
            (p, Some(s)) if p > 0 => Reply::Double(s),
            _ => Reply::Null,
        }
    } else if ch {
        Reply::Int(added + updated)
    } else {
        Reply::Int(added)
    })
}

fn zincrby(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, m) = (arg(argv, 1)?, arg(argv, 3)?);
    // Redis runs ZINCRBY through ZADD's parser: a ZADD flag in the score's place is taken
    // as a flag, which leaves one argument for a score-member pair: a syntax error.
    let by = arg(argv, 2)?;
    if ["nx", "xx", "ch", "incr", "gt", "lt"]
        .iter()
        .any(|f| is(by, f))
    {
        return Err(CmdError::Syntax);
    }
    let by = parse_f64(by).ok_or(CmdError::NotFloat)?;
    let now = ctx.now();
    let db = ctx.db();
    let z = db.zset_or_create(key, now)?;
    let res = z.incr_by(owned(m), by);
    db.remove_if_empty(key);
    Ok(Reply::Double(res.map_err(CmdError::coded)?))
}

fn zrem(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let db = ctx.db();
    let Some(z) = db.get_zset_mut(key, now)? else {
        return Ok(Reply::Int(0));
    };
    let n = argv.iter().skip(2).filter(|m| z.remove(m)).count();
    db.remove_if_empty(key);
    Ok(Reply::Int(n as i64))
}

fn zcard(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let z = ctx.db().get_zset(arg(argv, 1)?, now)?;
    Ok(Reply::Int(z.map_or(0, |z| z.len() as i64)))
}

fn zcount(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let range = parse_score_range(arg(argv, 2)?, arg(argv, 3)?).map_err(CmdError::coded)?;
    let now = ctx.now();
    let z = ctx.db().get_zset(key, now)?;
    Ok(Reply::Int(z.map_or(0, |z| z.count_in_score(&range) as i64)))
}

fn zlexcount(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let range = parse_lex_range(arg(argv, 2)?, arg(argv, 3)?).map_err(CmdError::coded)?;
    let now = ctx.now();
    let z = ctx.db().get_zset(key, now)?;
    Ok(Reply::Int(z.map_or(0, |z| z.count_in_lex(&range) as i64)))
}

fn zscore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, m) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let z = ctx.db().get_zset(key, now)?;
    Ok(z.and_then(|z| z.score(m))
        .map_or(Reply::Null, Reply::Double))
}

fn zmscore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let z = ctx.db().get_zset(key, now)?;
    let members = argv.iter().skip(2);
    Ok(Reply::Array(match z {
        None => members.map(|_| Reply::Null).collect(),
        Some(z) => z
            .mscore(members.map(|m| m.as_ref()))
            .into_iter()
            .map(|s| s.map_or(Reply::Null, Reply::Double))
            .collect(),
    }))
}

fn rank(ctx: &mut KeyCtx, argv: &[Bytes], rev: bool) -> CmdResult {
    let (key, m) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let z = ctx.db().get_zset(key, now)?;
    Ok(z.and_then(|z| z.rank(m, rev))
        .map_or(Reply::Null, |r| Reply::Int(r as i64)))
}

fn zrank(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    rank(ctx, argv, false)
}

fn zrevrank(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    rank(ctx, argv, true)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RangeType {
    Auto,
    Rank,
    Score,
    Lex,
}

#[derive(Clone)]
enum RangeBy {
    Rank(i64, i64),
    Score(ScoreRange),
    Lex(LexRange),
}

/// A parsed ZRANGE-family request (Redis's `zrangeGenericCommand` steps 1 and 2).
#[derive(Clone)]
struct RangeReq {
    by: RangeBy,
    rev: bool,
    limit: Option<Limit>,
    withscores: bool,
}

/// Parses the range at `argv[base..]` (`key start stop options...`): `ty`/`rev` are fixed by
/// the legacy commands (`Auto`/`None` for ZRANGE and ZRANGESTORE, which take
/// BYSCORE/BYLEX/REV as options); `store` refuses WITHSCORES.
fn parse_range(
    argv: &[Bytes],
    base: usize,
    ty: RangeType,
    rev: Option<bool>,
    store: bool,
) -> Result<RangeReq, CmdError> {
    let (mut ty, mut dir) = (ty, rev);
    let (mut withscores, mut limit) = (false, None);
    let mut j = base + 3;
    while let Some(a) = argv.get(j) {
        let left = argv.len() - j - 1;
        if !store && is(a, "withscores") {
            withscores = true;
        } else if is(a, "limit") && left >= 2 {
            let (offset, count) = (int(argv, j + 1)?, int(argv, j + 2)?);
            limit = Some(Limit { offset, count });
            j += 2;
        } else if dir.is_none() && is(a, "rev") {
            dir = Some(true);
        } else if ty == RangeType::Auto && is(a, "bylex") {
            ty = RangeType::Lex;
        } else if ty == RangeType::Auto && is(a, "byscore") {
            ty = RangeType::Score;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let rev = dir.unwrap_or(false);
    if ty == RangeType::Auto {
        ty = RangeType::Rank;
    }
    if limit.is_some_and(|l: Limit| l.count != -1) && ty == RangeType::Rank {
        return Err(CmdError::coded(LIMIT_ONLY_SCORE_LEX));
    }
    if withscores && ty == RangeType::Lex {
        return Err(CmdError::coded(WITHSCORES_NOT_LEX));
    }
    let (mut lo, mut hi) = (arg(argv, base + 1)?, arg(argv, base + 2)?);
    if rev && ty != RangeType::Rank {
        std::mem::swap(&mut lo, &mut hi);
    }
    let by = match ty {
        RangeType::Score => RangeBy::Score(parse_score_range(lo, hi).map_err(CmdError::coded)?),
        RangeType::Lex => RangeBy::Lex(parse_lex_range(lo, hi).map_err(CmdError::coded)?),
        _ => RangeBy::Rank(
            parse_i64(lo).ok_or(CmdError::NotInteger)?,
            parse_i64(hi).ok_or(CmdError::NotInteger)?,
        ),
    };
    Ok(RangeReq {
        by,
        rev,
        limit,
        withscores,
    })
}

/// The (member, score) pairs a range request selects.
fn run_range(z: &ZSet, r: &RangeReq) -> Vec<(Bytes, f64)> {
    match &r.by {
        RangeBy::Rank(start, stop) => z.range_by_rank(*start, *stop, r.rev),
        RangeBy::Score(range) => z.range_by_score(range, r.rev, r.limit),
        RangeBy::Lex(range) => z
            .range_by_lex(range, r.rev, r.limit)
            .into_iter()
            .map(|m| {
                let s = z.score(&m).unwrap_or(0.0);
                (m, s)
            })
            .collect(),
    }
}

fn range_generic(ctx: &mut KeyCtx, argv: &[Bytes], ty: RangeType, rev: Option<bool>) -> CmdResult {
    let key = arg(argv, 1)?;
    let r = parse_range(argv, 1, ty, rev, false)?;
    let resp = ctx.resp;
    let now = ctx.now();
    let Some(z) = ctx.db().get_zset(key, now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    Ok(pairs_reply(run_range(z, &r), r.withscores, resp))
}

/// ZRANGESTORE with both keys on this shard.
fn zrangestore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (dst, src) = (arg(argv, 1)?, arg(argv, 2)?);
    let r = parse_range(argv, 2, RangeType::Auto, None, true)?;
    let now = ctx.now();
    let db = ctx.db();
    let v = match db.get_zset(src, now)? {
        Some(z) => run_range(z, &r),
        None => Vec::new(),
    };
    Ok(Reply::Int(store_zset(db, dst, ZSet::from_pairs(v), now)))
}

/// ZRANGESTORE with the keys on two shards: the source range is read under both locks and
/// written to the destination's shard before they go.
fn zrangestore_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let dst = owned(arg(&argv, 1)?);
    let src = owned(arg(&argv, 2)?);
    let r = parse_range(&argv, 2, RangeType::Auto, None, true)?;
    let db = ctx.client().db;
    let n = ctx.eng().nshards;
    let ticket = ctx.defer();
    let dst_owner = shard_of(&dst, n);
    gather_noting(
        ctx.eng(),
        Some(Noting {
            db,
            argv: argv.to_vec(),
        }),
        vec![src],
        vec![dst_owner],
        move |w: &mut Engine, k: &Bytes| -> Result<Vec<(Bytes, f64)>, CmdError> {
            let now = w.shard.now_ms;
            let d = w.shard.db_mut(db);
            Ok(d.get_zset(k, now)?
                .map_or_else(Vec::new, |z| run_range(z, &r)))
        },
        move |read| {
            let v = match read.into_iter().next() {
                Some(Ok(v)) => v,
                Some(Err(e)) => return (e.into_reply(), Vec::new()),
                None => Vec::new(),
            };
            let z = ZSet::from_pairs(v);
            let reply = Reply::Int(z.len() as i64);
            let write: WriteFn = Box::new(move |tw: &mut Engine| {
                tw.shard.touch(db, &dst);
                let now = tw.shard.now_ms;
                store_zset(tw.shard.db_mut(db), &dst, z, now);
            });
            (reply, vec![(dst_owner, write)])
        },
        move |w, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}

fn zrange(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    range_generic(ctx, argv, RangeType::Auto, None)
}

fn zrevrange(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    range_generic(ctx, argv, RangeType::Rank, Some(true))
}

fn zrangebyscore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    range_generic(ctx, argv, RangeType::Score, Some(false))
}

fn zrevrangebyscore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    range_generic(ctx, argv, RangeType::Score, Some(true))
}

fn zrangebylex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    range_generic(ctx, argv, RangeType::Lex, Some(false))
}

fn zrevrangebylex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    range_generic(ctx, argv, RangeType::Lex, Some(true))
}

fn zpop(ctx: &mut KeyCtx, argv: &[Bytes], max: bool) -> CmdResult {
    let key = arg(argv, 1)?;
    if argv.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = super::args::opt_count(argv, 2)?;
    let nested = ctx.resp > 2 && count.is_some();
    let now = ctx.now();
    let db = ctx.db();
    let Some(z) = db.get_zset_mut(key, now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    // Redis checks the type before answering a zero count.
    if count == Some(0) {
        return Ok(Reply::Array(Vec::new()));
    }
    let v = z.pop(max, count.unwrap_or(1));
    db.remove_if_empty(key);
    Ok(if nested {
        pairs_reply(v, true, 3)
    } else {
        pairs_reply(v, true, 2)
    })
}

fn zpopmin(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    zpop(ctx, argv, false)
}

fn zpopmax(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    zpop(ctx, argv, true)
}

fn zrandmember(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let mut rng = Rng::new(ctx.shard.next_rand());
    if argv.len() == 2 {
        let z = ctx.db().get_zset(key, now)?;
        return Ok(Reply::bulk_opt(
            z.and_then(|z| z.random_member(&mut rng)).map(|p| p.0),
        ));
    }
    // The count first, then the option (Redis's zrandmemberCommand order).
    let count = int(argv, 2)?;
    types::check_rand_count(count, false).map_err(CmdError::coded)?;
    let withscores = match argv.get(3) {
        None => false,
        Some(a) if is(a, "withscores") && argv.len() == 4 => true,
        Some(_) => return Err(CmdError::Syntax),
    };
    types::check_rand_count(count, withscores).map_err(CmdError::coded)?;
    let resp = ctx.resp;
    let Some(z) = ctx.db().get_zset(key, now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let count = bounded(count)?;
    Ok(pairs_reply(
        z.random_members(&mut rng, count),
        withscores,
        resp,
    ))
}

fn zremrangebyscore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let range = parse_score_range(arg(argv, 2)?, arg(argv, 3)?).map_err(CmdError::coded)?;
    rem_with(ctx, key, |z| z.remove_range_by_score(&range))
}

fn zremrangebyrank(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let (start, stop) = (int(argv, 2)?, int(argv, 3)?);
    rem_with(ctx, key, |z| z.remove_range_by_rank(start, stop))
}

fn zremrangebylex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let range = parse_lex_range(arg(argv, 2)?, arg(argv, 3)?).map_err(CmdError::coded)?;
    rem_with(ctx, key, |z| z.remove_range_by_lex(&range))
}

fn rem_with(ctx: &mut KeyCtx, key: &[u8], f: impl FnOnce(&mut ZSet) -> usize) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let Some(z) = db.get_zset_mut(key, now)? else {
        return Ok(Reply::Int(0));
    };
    let n = f(z);
    db.remove_if_empty(key);
    Ok(Reply::Int(n as i64))
}

fn zscan(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let cursor = cursor_arg(argv)?;
    let now = ctx.now();
    let Some(z) = ctx.db().get_zset(key, now)? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let (count, pattern) = scan_opts(argv)?;
    let (next, pairs) = z.scan(cursor, count, pattern.as_deref());
    let mut items = Vec::with_capacity(pairs.len() * 2);
    for (m, s) in pairs {
        items.push(Reply::Bulk(m));
        items.push(Reply::bulk(fmt_g17(s)));
    }
    Ok(scan_reply(next, items))
}

// ---- ZUNION / ZINTER / ZDIFF / ZINTERCARD -------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Union,
    Inter,
    Diff,
}

/// The options after the keys; parsed up front but reported after the type checks, as
/// Redis reads (and type-checks) the keys before the options.
struct ZOpts {
    weights: Vec<f64>,
    agg: Aggregate,
    withscores: bool,
    limit: usize,
}

struct ZAlgebra {
    op: Op,
    card: bool,
    dst: Option<Bytes>,
    srcs: Vec<Bytes>,
    opts: Result<ZOpts, CmdError>,
}

fn parse_zalgebra(argv: &[Bytes]) -> Result<ZAlgebra, CmdError> {
    let name = argv
        .first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
        .unwrap_or_default();
    let (op, card) = match name.as_str() {
        "zunion" => (Op::Union, false),
        "zinter" => (Op::Inter, false),
        "zdiff" => (Op::Diff, false),
        "zintercard" => (Op::Inter, true),
        "zunionstore" => (Op::Union, false),
        "zinterstore" => (Op::Inter, false),
        "zdiffstore" => (Op::Diff, false),
        _ => return Err(CmdError::Syntax),
    };
    let dst = name.ends_with("store").then(|| argv.get(1).map(owned));
    let dst = match dst {
        Some(d) => Some(d.ok_or(CmdError::Syntax)?),
        None => None,
    };
    let ni = if dst.is_some() { 2 } else { 1 };
    let n = int(argv, ni)?;
    if n < 1 {
        return Err(CmdError::coded(format!(
            "ERR at least 1 input key is needed for '{name}' command"
        )));
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > argv.len().saturating_sub(ni + 1) {
        return Err(CmdError::Syntax);
    }
    let srcs = argv.get(ni + 1..ni + 1 + n).unwrap_or_default().to_vec();
    let opts = parse_zopts(argv, ni + 1 + n, n, op, card, dst.is_some());
    Ok(ZAlgebra {
        op,
        card,
        dst,
        srcs,
        opts,
    })
}

fn parse_zopts(
    argv: &[Bytes],
    mut j: usize,
    n: usize,
    op: Op,
    card: bool,
    store: bool,
) -> Result<ZOpts, CmdError> {
    let mut o = ZOpts {
        weights: Vec::new(),
        agg: Aggregate::Sum,
        withscores: false,
        limit: 0,
    };
    while let Some(a) = argv.get(j) {
        let remaining = argv.len() - j;
        if op != Op::Diff && !card && remaining > n && is(a, "weights") {
            o.weights.clear();
            for k in 0..n {
                let w = parse_f64(arg(argv, j + 1 + k)?)
                    .ok_or_else(|| CmdError::coded("ERR weight value is not a float"))?;
                o.weights.push(w);
            }
            j += 1 + n;
        } else if op != Op::Diff && !card && remaining >= 2 && is(a, "aggregate") {
            let v = arg(argv, j + 1)?;
            o.agg = if is(v, "sum") {
                Aggregate::Sum
            } else if is(v, "min") {
                Aggregate::Min
            } else if is(v, "max") {
                Aggregate::Max
            } else {
                return Err(CmdError::Syntax);
            };
            j += 2;
        } else if !card && !store && is(a, "withscores") {
            o.withscores = true;
            j += 1;
        } else if card && remaining >= 2 && is(a, "limit") {
            let l = parse_i64(arg(argv, j + 1)?)
                .filter(|l| *l >= 0)
                .ok_or_else(|| CmdError::coded(types::err::LIMIT_NEGATIVE))?;
            o.limit = usize::try_from(l).unwrap_or(usize::MAX);
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    Ok(o)
}

/// A source as read: a sorted set, a plain set (scores 1), missing, or WRONGTYPE.
fn peek_input<'a>(db: &'a Db, key: &[u8], now: u64) -> Result<ZInput<'a>, CmdError> {
    match db.peek_value(key, now)? {
        None => Ok(ZInput::Missing),
        Some(ObjRef::ZSet(z)) => Ok(ZInput::ZSet(z)),
        Some(ObjRef::Set(s)) => Ok(ZInput::Set(s)),
        Some(_) => Err(CmdError::WrongType),
    }
}

/// What an algebra command produced: a reply, or for a STORE form the set to store.
enum ZOut {
    Reply(Reply),
    Store(ZSet),
}

fn zcompute(a: &ZAlgebra, inputs: &[Result<ZInput, CmdError>], resp: u8) -> Result<ZOut, CmdError> {
    let mut ins = Vec::with_capacity(inputs.len());
    for i in inputs {
        ins.push(*i.as_ref().map_err(Clone::clone)?);
    }
    let o = a.opts.as_ref().map_err(Clone::clone)?;
    if a.card {
        return Ok(ZOut::Reply(Reply::Int(
            ZSet::intercard(&ins, o.limit) as i64
        )));
    }
    let z = match a.op {
        Op::Union => ZSet::union(&ins, &o.weights, o.agg),
        Op::Inter => ZSet::inter(&ins, &o.weights, o.agg),
        Op::Diff => ZSet::diff(&ins),
    };
    Ok(if a.dst.is_some() {
        ZOut::Store(z)
    } else {
        ZOut::Reply(pairs_reply(z.to_vec(), o.withscores, resp))
    })
}

/// Stores a STORE result at `dst` (replacing any value and TTL; an empty result deletes
/// the key) and returns its cardinality.
pub(crate) fn store_zset(db: &mut Db, dst: &[u8], z: ZSet, now: u64) -> i64 {
    let n = z.len() as i64;
    db.remove(dst);
    if n > 0 {
        db.set_value(dst, Value::ZSet(Box::new(z)), 0, now);
    }
    n
}

fn zalgebra(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let a = parse_zalgebra(argv)?;
    let resp = ctx.resp;
    let now = ctx.now();
    let db = ctx.db();
    for k in &a.srcs {
        db.read_probe(k, now);
    }
    let rdb = &*db;
    let inputs: Vec<_> = a.srcs.iter().map(|k| peek_input(rdb, k, now)).collect();
    let out = zcompute(&a, &inputs, resp)?;
    drop(inputs);
    match (out, &a.dst) {
        (ZOut::Store(z), Some(dst)) => Ok(Reply::Int(store_zset(db, dst, z, now))),
        (ZOut::Store(z), None) => Ok(pairs_reply(z.to_vec(), false, resp)),
        (ZOut::Reply(r), _) => Ok(r),
    }
}

/// ZUNION/ZINTER/ZDIFF/ZINTERCARD with keys on several shards: every source is read (a
/// clone) under the shards' locks and the result computed here.
fn zalgebra_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let a = parse_zalgebra(&argv)?;
    let db = ctx.client().db;
    let resp = ctx.client().resp;
    let ticket = ctx.defer();
    let n = ctx.eng().nshards;
    let extra = a.dst.iter().map(|d| shard_of(d, n)).collect();
    let dst_owner = a.dst.as_ref().map_or(0, |d| shard_of(d, n));
    let srcs = a.srcs.clone();
    gather_noting(
        ctx.eng(),
        Some(Noting {
            db,
            argv: argv.to_vec(),
        }),
        srcs,
        extra,
        move |w: &mut Engine, k: &Bytes| -> Result<Option<Value>, CmdError> {
            let now = w.shard.now_ms;
            let d = w.shard.db_mut(db);
            d.read_probe(k, now);
            match d.peek_value(k, now)? {
                None => Ok(None),
                Some(o @ (ObjRef::ZSet(_) | ObjRef::Set(_))) => Ok(Some(o.to_value())),
                Some(_) => Err(CmdError::WrongType),
            }
        },
        move |read| {
            let inputs: Vec<Result<ZInput, CmdError>> = read
                .iter()
                .map(|r| match r {
                    Err(e) => Err(e.clone()),
                    Ok(None) => Ok(ZInput::Missing),
                    Ok(Some(Value::ZSet(z))) => Ok(ZInput::ZSet(z)),
                    Ok(Some(Value::Set(s))) => Ok(ZInput::Set(s)),
                    Ok(Some(_)) => Err(CmdError::WrongType),
                })
                .collect();
            let out = match zcompute(&a, &inputs, resp) {
                Ok(o) => o,
                Err(e) => return (e.into_reply(), Vec::new()),
            };
            match (out, a.dst) {
                (ZOut::Store(z), Some(dst)) => {
                    let reply = Reply::Int(z.len() as i64);
                    let write: WriteFn = Box::new(move |tw: &mut Engine| {
                        tw.shard.touch(db, &dst);
                        let now = tw.shard.now_ms;
                        store_zset(tw.shard.db_mut(db), &dst, z, now);
                    });
                    (reply, vec![(dst_owner, write)])
                }
                (ZOut::Store(z), None) => (pairs_reply(z.to_vec(), false, resp), Vec::new()),
                (ZOut::Reply(r), _) => (r, Vec::new()),
            }
        },
        move |w, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}
