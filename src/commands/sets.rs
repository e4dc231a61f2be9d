//! Set commands (Redis's t_set.c). Single-key commands run on the key's shard. The
//! multi-key ones (SMOVE, SINTER/SUNION/SDIFF and their STORE forms, SINTERCARD) run on one
//! shard when their keys do, and otherwise through `coord::lock::gather`: every involved
//! shard is locked, the sets are read (cloned) on their owners, the result is computed on
//! the coordinator and written on the destination's shard before the locks go.

use bytes::Bytes;

use super::args::{arg, owned};
use super::hashes::{bounded, cursor_arg, rand_count, scan_opts, scan_reply};
use super::table::{
    CommandSpec, Exec, KeySpec, DENYOOM, FAST, KEY_R, KEY_RW, KEY_W, READONLY, WRITE,
};
use super::{ConnCtx, KeyCtx};
use crate::coord::lock::{gather_noting, Noting, WriteFn};
use crate::engine::Engine;
use crate::error::{self, CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::shard::db::Db;
use crate::shard::route::shard_of;
use crate::shard::value::Value;
use crate::types::set::Set;
use crate::types::{self, Rng};

const S: &str = "set";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("sadd", -3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(sadd))
        .key_perms(&[KEY_W])
        .ev_counted(crate::shard::notify::SET, "sadd")
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .doc(S, "1.0.0", "Adds one or more members to a set. Creates the key if it doesn't exist.", "key member [member ...]"),
    CommandSpec::new("srem", -3, WRITE | FAST, KeySpec::single(1), Exec::Key(srem))
        .key_perms(&[KEY_W])
        .ev_counted(crate::shard::notify::SET, "srem")
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .doc(S, "1.0.0", "Removes one or more members from a set. Deletes the set if the last member was removed.", "key member [member ...]"),
    CommandSpec::new("smembers", 2, READONLY, KeySpec::single(1), Exec::Key(smembers))
        .doc(S, "1.0.0", "Returns all members of a set.", "key"),
    CommandSpec::new("sismember", 3, READONLY | FAST, KeySpec::single(1), Exec::Key(sismember))
        .key_perms(&[0])
        .doc(S, "1.0.0", "Determines whether a member belongs to a set.", "key member"),
    CommandSpec::new("smismember", -3, READONLY | FAST, KeySpec::single(1), Exec::Key(smismember))
        .doc(S, "6.2.0", "Determines whether multiple members belong to a set.", "key member [member ...]"),
    CommandSpec::new("scard", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(scard))
        .key_perms(&[0])
        .doc(S, "1.0.0", "Returns the number of members in a set.", "key"),
    CommandSpec::new("spop", -2, WRITE | FAST, KeySpec::single(1), Exec::Key(spop))
        .ev(crate::shard::notify::SET, "spop")
        .prop(crate::shard::journal::Prop::Rewrite(crate::shard::journal::rw_spop))
        .noop(super::table::NoOp::NullOrEmpty)
        .doc(S, "1.0.0", "Returns one or more random members from a set after removing them. Deletes the set if the last member was popped.", "key [count]"),
    CommandSpec::new("srandmember", -2, READONLY, KeySpec::single(1), Exec::Key(srandmember))
        .doc(S, "1.0.0", "Get one or multiple random members from a set", "key [count]"),
    CommandSpec::new("smove", 4, WRITE | FAST, KeySpec::range(1, 2, 1), Exec::Key(smove))
        .key_perms(&[KEY_RW, KEY_W])
        .ev_hook(crate::shard::notify::ev_smove)
        .cross(smove_cross)
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .doc(S, "1.0.0", "Moves a member from one set to another.", "source destination member"),
    CommandSpec::new("sinter", -2, READONLY, KeySpec::range(1, -1, 1), Exec::Key(sinter))
        .cross(algebra_cross)
        .doc(S, "1.0.0", "Returns the intersect of multiple sets.", "key [key ...]"),
    CommandSpec::new("sintercard", -3, READONLY, KeySpec::numkeys(1), Exec::Key(sintercard))
        .cross(algebra_cross)
        .doc(S, "7.0.0", "Returns the number of members of the intersect of multiple sets.", "numkeys key [key ...] [LIMIT limit]"),
    CommandSpec::new("sunion", -2, READONLY, KeySpec::range(1, -1, 1), Exec::Key(sunion))
        .cross(algebra_cross)
        .doc(S, "1.0.0", "Returns the union of multiple sets.", "key [key ...]"),
    CommandSpec::new("sdiff", -2, READONLY, KeySpec::range(1, -1, 1), Exec::Key(sdiff))
        .cross(algebra_cross)
        .doc(S, "1.0.0", "Returns the difference of multiple sets.", "key [key ...]"),
    CommandSpec::new("sinterstore", -3, WRITE | DENYOOM, KeySpec::range(1, -1, 1), Exec::Key(sinterstore))
        .key_perms(&[KEY_W, KEY_R])
        .ev_store(crate::shard::notify::SET, "sinterstore", 1)
        .cross(algebra_cross)
        .verbatim()
        .touches(super::table::Touches::Only(1))
        .doc(S, "1.0.0", "Stores the intersect of multiple sets in a key.", "destination key [key ...]"),
    CommandSpec::new("sunionstore", -3, WRITE | DENYOOM, KeySpec::range(1, -1, 1), Exec::Key(sunionstore))
        .key_perms(&[KEY_W, KEY_R])
        .ev_store(crate::shard::notify::SET, "sunionstore", 1)
        .cross(algebra_cross)
        .verbatim()
        .touches(super::table::Touches::Only(1))
        .doc(S, "1.0.0", "Stores the union of multiple sets in a key.", "destination key [key ...]"),
    CommandSpec::new("sdiffstore", -3, WRITE | DENYOOM, KeySpec::range(1, -1, 1), Exec::Key(sdiffstore))
        .key_perms(&[KEY_W, KEY_R])
        .ev_store(crate::shard::notify::SET, "sdiffstore", 1)
        .cross(algebra_cross)
        .verbatim()
        .touches(super::table::Touches::Only(1))
        .doc(S, "1.0.0", "Stores the difference of multiple sets in a key.", "destination key [key ...]"),
    CommandSpec::new("sscan", -3, READONLY, KeySpec::single(1), Exec::Key(sscan))
        .doc(S, "2.0.0", "Iterates over members of a set.", "key cursor [MATCH pattern] [COUNT count]"),
];

fn members(s: Option<&Set>) -> Vec<Reply> {
    s.map_or_else(Vec::new, |s| s.iter().map(Reply::Bulk).collect())
}

fn sadd(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let s = ctx.db().set_or_create(key, now)?;
    let n = argv.iter().skip(2).filter(|m| s.add(owned(m))).count();
    Ok(Reply::Int(n as i64))
}

fn srem(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let db = ctx.db();
    let Some(s) = db.get_set_mut(key, now)? else {
        return Ok(Reply::Int(0));
    };
    let n = argv.iter().skip(2).filter(|m| s.remove(m)).count();
    db.remove_if_empty(key);
    Ok(Reply::Int(n as i64))
}

fn smembers(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let s = ctx.db().get_set(arg(argv, 1)?, now)?;
    Ok(Reply::Set(members(s)))
}

fn sismember(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, m) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let s = ctx.db().get_set(key, now)?;
    Ok(Reply::Int(i64::from(s.is_some_and(|s| s.contains(m)))))
}

fn smismember(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let s = ctx.db().get_set(key, now)?;
    Ok(Reply::Array(
        argv.iter()
            .skip(2)
            .map(|m| Reply::Int(i64::from(s.is_some_and(|s| s.contains(m)))))
            .collect(),
    ))
}

fn scard(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let s = ctx.db().get_set(arg(argv, 1)?, now)?;
    Ok(Reply::Int(s.map_or(0, |s| s.len() as i64)))
}

fn spop(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    if argv.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let count = super::args::opt_count(argv, 2)?;
    let now = ctx.now();
    let mut rng = Rng::new(ctx.shard.next_rand());
    let db = ctx.db();
    let Some(s) = db.get_set_mut(key, now)? else {
        return Ok(if count.is_some() {
            Reply::Set(Vec::new())
        } else {
            Reply::Null
        });
    };
    let reply = match count {
        None => Reply::bulk_opt(s.pop(&mut rng)),
        Some(n) => Reply::Set(
            s.pop_count(&mut rng, n)
                .into_iter()
                .map(Reply::Bulk)
                .collect(),
        ),
    };
    db.remove_if_empty(key);
    Ok(reply)
}

fn srandmember(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    if argv.len() > 3 {
        return Err(CmdError::Syntax);
    }
    let now = ctx.now();
    let mut rng = Rng::new(ctx.shard.next_rand());
    if argv.len() == 2 {
        let s = ctx.db().get_set(key, now)?;
        return Ok(Reply::bulk_opt(s.and_then(|s| s.random_member(&mut rng))));
    }
    let count = rand_count(argv, 2)?;
    let Some(s) = ctx.db().get_set(key, now)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    let count = bounded(count)?;
    Ok(Reply::Array(
        s.random_members(&mut rng, count)
            .into_iter()
            .map(Reply::Bulk)
            .collect(),
    ))
}

fn smove(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (src, dst, m) = (arg(argv, 1)?, arg(argv, 2)?, arg(argv, 3)?);
    let now = ctx.now();
    let db = ctx.db();
    let has = match db.get_set_mut(src, now)? {
        None => return Ok(Reply::Int(0)),
        Some(s) => s.contains(m),
    };
    db.get_set_mut(dst, now)?;
    if src == dst || !has {
        return Ok(Reply::Int(i64::from(has)));
    }
    if let Some(s) = db.get_set_mut(src, now)? {
        s.remove(m);
    }
    db.remove_if_empty(src);
    db.set_or_create(dst, now)?.add(owned(m));
    Ok(Reply::Int(1))
}

/// What a cross-shard SMOVE reads of each key: its type, and whether it holds the member.
fn smove_read(w: &mut Engine, db: usize, key: &Bytes, m: &Bytes) -> Result<Option<bool>, CmdError> {
    let now = w.shard.now_ms;
    Ok(w.shard
        .db_mut(db)
        .get_set_mut(key, now)?
        .map(|s| s.contains(m)))
}

fn smove_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let src = owned(arg(&argv, 1)?);
    let dst = owned(arg(&argv, 2)?);
    let m = owned(arg(&argv, 3)?);
    let db = ctx.client().db;
    let n = ctx.eng().nshards;
    let ticket = ctx.defer();
    let m2 = m.clone();
    gather_noting(
        ctx.eng(),
        Some(Noting {
            db,
            argv: argv.to_vec(),
        }),
        vec![src.clone(), dst.clone()],
        Vec::new(),
        move |w, k| smove_read(w, db, k, &m2),
        move |r| {
            let mut it = r.into_iter();
            let (s, d) = (it.next(), it.next());
            let reply = match (s, d) {
                (Some(Ok(None)), _) => Reply::Int(0),
                (Some(Err(e)), _) | (_, Some(Err(e))) => e.into_reply(),
                (Some(Ok(Some(true))), Some(Ok(_))) => Reply::Int(1),
                _ => Reply::Int(0),
            };
            if reply != Reply::Int(1) {
                return (reply, Vec::new());
            }
            let (m1, s1, d1) = (m.clone(), src.clone(), dst.clone());
            let writes: Vec<(usize, WriteFn)> = vec![
                (
                    shard_of(&src, n),
                    Box::new(move |tw: &mut Engine| {
                        let now = tw.shard.now_ms;
                        let d = tw.shard.db_mut(db);
                        let removed = match d.get_set_mut(&s1, now) {
                            Ok(Some(s)) => s.remove(&m1),
                            _ => false,
                        };
                        d.remove_if_empty(&s1);
                        if removed {
                            tw.shard.touch_effect(db, &s1, &[b"SREM", &s1, &m1]);
                        }
                    }),
                ),
                (
                    shard_of(&dst, n),
                    Box::new(move |tw: &mut Engine| {
                        let now = tw.shard.now_ms;
                        let added = match tw.shard.db_mut(db).set_or_create(&d1, now) {
                            Ok(s) => s.add(m.clone()),
                            Err(_) => false,
                        };
                        // Already a member there: the destination did not change.
                        if added {
                            tw.shard.touch_effect(db, &d1, &[b"SADD", &d1, &m]);
                        }
                    }),
                ),
            ];
            (reply, writes)
        },
        move |w, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}

// ---- set algebra ------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Inter,
    Union,
    Diff,
}

/// A parsed algebra command: the operation, the source keys, the STORE destination, and
/// for SINTERCARD the limit (0: none).
struct Algebra {
    op: Op,
    card: bool,
    limit: usize,
    dst: Option<Bytes>,
    srcs: Vec<Bytes>,
}

/// SINTERCARD's `numkeys key... [LIMIT n]`, checked in Redis's order.
fn parse_intercard(argv: &[Bytes]) -> Result<(Vec<Bytes>, usize), CmdError> {
    let numkeys_err = || CmdError::coded(error::NUMKEYS_POSITIVE);
    let n = parse_i64(arg(argv, 1)?).ok_or_else(numkeys_err)?;
    if n < 1 {
        return Err(numkeys_err());
    }
    let avail = argv.len().saturating_sub(2);
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > avail {
        return Err(CmdError::coded(error::NUMKEYS_TOO_MANY));
    }
    let keys = argv.get(2..2 + n).unwrap_or_default().to_vec();
    let mut limit = 0usize;
    let mut i = 2 + n;
    while let Some(opt) = argv.get(i) {
        match argv.get(i + 1) {
            Some(v) if opt.eq_ignore_ascii_case(b"limit") => {
                let l = parse_i64(v)
                    .filter(|l| *l >= 0)
                    .ok_or_else(|| CmdError::coded(types::err::LIMIT_NEGATIVE))?;
                limit = usize::try_from(l).unwrap_or(usize::MAX);
                i += 2;
            }
            _ => return Err(CmdError::Syntax),
        }
    }
    Ok((keys, limit))
}

fn parse_algebra(argv: &[Bytes]) -> Result<Algebra, CmdError> {
    let name = argv
        .first()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default();
    let (op, store) = match &name[..] {
        b"sinter" => (Op::Inter, false),
        b"sunion" => (Op::Union, false),
        b"sdiff" => (Op::Diff, false),
        b"sinterstore" => (Op::Inter, true),
        b"sunionstore" => (Op::Union, true),
        b"sdiffstore" => (Op::Diff, true),
        b"sintercard" => {
            let (srcs, limit) = parse_intercard(argv)?;
            return Ok(Algebra {
                op: Op::Inter,
                card: true,
                limit,
                dst: None,
                srcs,
            });
        }
        _ => return Err(CmdError::Syntax),
    };
    let rest = argv.get(1..).unwrap_or_default();
    let (dst, srcs) = if store {
        let (d, s) = rest.split_first().ok_or(CmdError::Syntax)?;
        (Some(owned(d)), s.to_vec())
    } else {
        (None, rest.to_vec())
    };
    Ok(Algebra {
        op,
        card: false,
        limit: 0,
        dst,
        srcs,
    })
}

/// The result of an algebra command over the sources as read (in key order). Every key's
/// type is checked first (redis-server 7.0.15: a WRONGTYPE anywhere wins over a missing key);
/// a missing key is an empty set.
enum Outcome {
    Members(Set),
    Card(usize),
}

fn compute(a: &Algebra, sets: &[Result<Option<&Set>, CmdError>]) -> Result<Outcome, CmdError> {
    let empty = Set::new();
    let mut present: Vec<&Set> = Vec::with_capacity(sets.len());
    let mut missing = false;
    for (i, s) in sets.iter().enumerate() {
        match s {
            Err(e) => return Err(e.clone()),
            Ok(None) if a.op == Op::Diff && i == 0 => present.push(&empty),
            Ok(None) => missing = true,
            Ok(Some(s)) => present.push(s),
        }
    }
    if missing && a.op == Op::Inter {
        return Ok(if a.card {
            Outcome::Card(0)
        } else {
            Outcome::Members(Set::new())
        });
    }
    Ok(match (a.op, a.card) {
        (Op::Inter, true) => Outcome::Card(Set::intercard(&present, a.limit)),
        (Op::Inter, false) => Outcome::Members(Set::inter(&present)),
        (Op::Union, _) => Outcome::Members(Set::union(&present)),
        (Op::Diff, _) => Outcome::Members(Set::diff(&present)),
    })
}

/// Turns an outcome into the reply (storing nothing).
fn outcome_reply(o: Outcome) -> Reply {
    match o {
        Outcome::Card(n) => Reply::Int(n as i64),
        Outcome::Members(s) => Reply::Set(s.iter().map(Reply::Bulk).collect()),
    }
}

/// Stores a STORE result at `dst` (replacing any value and TTL; an empty result deletes
/// the key) and returns its cardinality.
fn store_result(db: &mut Db, dst: &[u8], s: Set, now: u64) -> i64 {
    let n = s.len() as i64;
    db.remove(dst);
    if n > 0 {
        db.set_value(dst, Value::Set(Box::new(s)), 0, now);
    }
    n
}

/// Any algebra command with every key on this shard.
fn algebra_local(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let a = parse_algebra(argv)?;
    let now = ctx.now();
    let db = ctx.db();
    for k in &a.srcs {
        db.read_probe(k, now);
    }
    let sets: Vec<_> = a.srcs.iter().map(|k| db.peek_set(k, now)).collect();
    let out = compute(&a, &sets)?;
    drop(sets);
    match (&a.dst, out) {
        (Some(dst), Outcome::Members(s)) => Ok(Reply::Int(store_result(db, dst, s, now))),
        (_, o) => Ok(outcome_reply(o)),
    }
}

fn sinter(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    algebra_local(ctx, argv)
}
fn sintercard(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    algebra_local(ctx, argv)
}
fn sunion(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    algebra_local(ctx, argv)
}
fn sdiff(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    algebra_local(ctx, argv)
}
fn sinterstore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    algebra_local(ctx, argv)
}
fn sunionstore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    algebra_local(ctx, argv)
}
fn sdiffstore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    algebra_local(ctx, argv)
}

/// Any algebra command with keys on several shards: read every source (a clone) under
/// the lock, compute here, write the destination on its shard.
fn algebra_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let a = parse_algebra(&argv)?;
    let db = ctx.client().db;
    let n = ctx.eng().nshards;
    let ticket = ctx.defer();
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
        move |w: &mut Engine, k: &Bytes| -> Result<Option<Set>, CmdError> {
            let now = w.shard.now_ms;
            let d = w.shard.db_mut(db);
            d.read_probe(k, now);
            d.peek_set(k, now).map(|s| s.cloned())
        },
        move |read| {
            let sets: Vec<Result<Option<&Set>, CmdError>> = read
                .iter()
                .map(|r| r.as_ref().map(Option::as_ref).map_err(Clone::clone))
                .collect();
            let out = match compute(&a, &sets) {
                Ok(o) => o,
                Err(e) => return (e.into_reply(), Vec::new()),
            };
            match (a.dst, out) {
                (Some(dst), Outcome::Members(s)) => {
                    let reply = Reply::Int(s.len() as i64);
                    let write: WriteFn = Box::new(move |tw: &mut Engine| {
                        tw.shard.touch(db, &dst);
                        let now = tw.shard.now_ms;
                        store_result(tw.shard.db_mut(db), &dst, s, now);
                    });
                    (reply, vec![(dst_owner, write)])
                }
                (_, o) => (outcome_reply(o), Vec::new()),
            }
        },
        move |w, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}

fn sscan(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let cursor = cursor_arg(argv)?;
    let now = ctx.now();
    let Some(s) = ctx.db().get_set(key, now)? else {
        return Ok(scan_reply(0, Vec::new()));
    };
    let (count, pattern) = scan_opts(argv)?;
    let (next, items) = s.scan(cursor, count, pattern.as_deref());
    Ok(scan_reply(
        next,
        items.into_iter().map(Reply::Bulk).collect(),
    ))
}

/// Set family tests through the in-process kit (3 shards; `{t}` keeps multi-key forms on
/// one shard, the cross-shard forms are covered by tests/cross_shard.rs and compat).
#[cfg(test)]
mod family {
    use crate::commands::testkit::{bulk, err, Kit};
    use crate::protocol::reply::Reply;

    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    fn sorted(r: Reply) -> Vec<Reply> {
        let (Reply::Set(mut v) | Reply::Array(mut v)) = r else {
            panic!("not a collection: {r:?}");
        };
        v.sort_by_key(|r| format!("{r:?}"));
        v
    }

    #[test]
    fn members_encodings_and_algebra_on_one_shard() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["SADD", "{t}a", "1", "2", "3"]), Reply::Int(3));
        assert_eq!(k.run(&["OBJECT", "ENCODING", "{t}a"]), bulk("intset"));
        assert_eq!(k.run(&["SADD", "{t}b", "2", "3", "x"]), Reply::Int(3));
        assert_eq!(k.run(&["OBJECT", "ENCODING", "{t}b"]), bulk("hashtable"));
        assert_eq!(k.run(&["TYPE", "{t}b"]), Reply::status("set"));
        assert_eq!(
            sorted(k.run(&["SINTER", "{t}a", "{t}b"])),
            vec![bulk("2"), bulk("3")]
        );
        assert_eq!(k.run(&["SINTERCARD", "2", "{t}a", "{t}b"]), Reply::Int(2));
        assert_eq!(
            k.run(&["SINTERCARD", "2", "{t}a", "{t}b", "LIMIT", "1"]),
            Reply::Int(1)
        );
        assert_eq!(
            k.run(&["SUNIONSTORE", "{t}d", "{t}a", "{t}b"]),
            Reply::Int(4)
        );
        assert_eq!(
            k.run(&["SDIFFSTORE", "{t}d", "{t}a", "{t}b"]),
            Reply::Int(1)
        );
        assert_eq!(sorted(k.run(&["SMEMBERS", "{t}d"])), vec![bulk("1")]);
        assert_eq!(k.run(&["SMOVE", "{t}a", "{t}d", "2"]), Reply::Int(1));
        assert_eq!(k.run(&["SCARD", "{t}d"]), Reply::Int(2));
        k.run(&["SET", "{t}s", "v"]);
        assert_eq!(k.run(&["SINTER", "{t}nokey", "{t}s"]), err(WRONGTYPE));
        assert_eq!(k.run(&["SMOVE", "{t}a", "{t}s", "1"]), err(WRONGTYPE));
        assert_eq!(k.run(&["SMOVE", "{t}nokey", "{t}s", "1"]), Reply::Int(0));
        assert_eq!(k.run(&["SREM", "{t}d", "1", "2"]), Reply::Int(2));
        assert_eq!(k.run(&["EXISTS", "{t}d"]), Reply::Int(0));
        assert_eq!(
            k.run(&["SPOP", "{t}a", "-1"]),
            err("ERR value is out of range, must be positive")
        );
        assert_eq!(k.run(&["SPOP", "{t}a", "0"]), Reply::Set(vec![]));
        assert_eq!(
            k.run(&["SPOP", "{t}a", "10"]).clone(),
            Reply::Set(vec![bulk("1"), bulk("3")])
        );
        assert_eq!(k.run(&["EXISTS", "{t}a"]), Reply::Int(0));
    }
}
