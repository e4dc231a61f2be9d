//! List commands (Redis's t_list.c), non-blocking ones. Single-key commands run on the
//! key's shard. LMOVE and RPOPLPUSH run on one shard when both keys do, and otherwise
//! through `coord::lock::gather` (as SMOVE): both shards are locked, the source's end
//! element and the destination's type are read, and the pop and push are written before
//! the locks go. LMPOP with keys on several shards takes the first key with data under the
//! shards' locks (`coord::blocking::mpop_cross`).

use bytes::Bytes;

use super::args::{arg, int, is, owned};
use super::table::{CommandSpec, Exec, KeySpec, DENYOOM, FAST, KEY_RW, KEY_W, READONLY, WRITE};
use super::{ConnCtx, KeyCtx};
use crate::coord::lock::{gather_noting, Noting, WriteFn};
use crate::engine::Engine;
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::shard::route::shard_of;
use crate::types::list::{End, LposOpts};

const L: &str = "list";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("lpush", -3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(lpush))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::LIST, "lpush")
        .verbatim()
        .doc(L, "1.0.0", "Prepends one or more elements to a list. Creates the key if it doesn't exist.", "key element [element ...]"),
    CommandSpec::new("rpush", -3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(rpush))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::LIST, "rpush")
        .verbatim()
        .doc(L, "1.0.0", "Appends one or more elements to a list. Creates the key if it doesn't exist.", "key element [element ...]"),
    CommandSpec::new("lpushx", -3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(lpushx))
        .key_perms(&[KEY_W])
        .noop(super::table::NoOp::Int0)
        .ev(crate::shard::notify::LIST, "lpush")
        .verbatim()
        .doc(L, "2.2.0", "Prepends one or more elements to a list only when the list exists.", "key element [element ...]"),
    CommandSpec::new("rpushx", -3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(rpushx))
        .key_perms(&[KEY_W])
        .noop(super::table::NoOp::Int0)
        .ev(crate::shard::notify::LIST, "rpush")
        .verbatim()
        .doc(L, "2.2.0", "Appends an element to a list only when the list exists.", "key element [element ...]"),
    CommandSpec::new("lpop", -2, WRITE | FAST, KeySpec::single(1), Exec::Key(lpop))
        .noop(super::table::NoOp::NullOrEmpty)
        .ev(crate::shard::notify::LIST, "lpop")
        .verbatim()
        .doc(L, "1.0.0", "Returns the first elements in a list after removing it. Deletes the list if the last element was popped.", "key [count]"),
    CommandSpec::new("rpop", -2, WRITE | FAST, KeySpec::single(1), Exec::Key(rpop))
        .noop(super::table::NoOp::NullOrEmpty)
        .ev(crate::shard::notify::LIST, "rpop")
        .verbatim()
        .doc(L, "1.0.0", "Returns and removes the last elements of a list. Deletes the list if the last element was popped.", "key [count]"),
    CommandSpec::new("llen", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(llen))
        .key_perms(&[0])
        .doc(L, "1.0.0", "Returns the length of a list.", "key"),
    CommandSpec::new("lrange", 4, READONLY, KeySpec::single(1), Exec::Key(lrange))
        .doc(L, "1.0.0", "Returns a range of elements from a list.", "key start stop"),
    CommandSpec::new("lindex", 3, READONLY, KeySpec::single(1), Exec::Key(lindex))
        .doc(L, "1.0.0", "Returns an element from a list by its index.", "key index"),
    CommandSpec::new("lset", 4, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(lset))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::LIST, "lset")
        .verbatim()
        .doc(L, "1.0.0", "Sets the value of an element in a list by its index.", "key index element"),
    CommandSpec::new("linsert", 5, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(linsert))
        .key_perms(&[KEY_W])
        .noop(super::table::NoOp::IntAtMost0)
        .ev_counted(crate::shard::notify::LIST, "linsert")
        .verbatim()
        .doc(L, "2.2.0", "Inserts an element before or after another element in a list.", "key BEFORE|AFTER pivot element"),
    CommandSpec::new("lrem", 4, WRITE, KeySpec::single(1), Exec::Key(lrem))
        .key_perms(&[KEY_W])
        .noop(super::table::NoOp::Int0)
        .ev_counted(crate::shard::notify::LIST, "lrem")
        .verbatim()
        .doc(L, "1.0.0", "Removes elements from a list. Deletes the list if the last element was removed.", "key count element"),
    CommandSpec::new("ltrim", 4, WRITE, KeySpec::single(1), Exec::Key(ltrim))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::LIST, "ltrim")
        .noop(super::table::NoOp::Flagged)
        .verbatim()
        .doc(L, "1.0.0", "Removes elements from both ends a list. Deletes the list if all elements were trimmed.", "key start stop"),
    CommandSpec::new("lpos", -3, READONLY, KeySpec::single(1), Exec::Key(lpos))
        .doc(L, "6.0.6", "Returns the index of matching elements in a list.", "key element [RANK rank] [COUNT num-matches] [MAXLEN len]"),
    CommandSpec::new("lmove", 5, WRITE | DENYOOM, KeySpec::range(1, 2, 1), Exec::Key(lmove))
        .key_perms(&[KEY_RW, KEY_W])
        .noop(super::table::NoOp::Null)
        .ev_dst_first(crate::shard::notify::ev_lmove)
        .cross(lmove_cross)
        .verbatim()
        .doc(L, "6.2.0", "Returns an element after popping it from one list and pushing it to another. Deletes the list if the last element was moved.", "source destination LEFT|RIGHT LEFT|RIGHT"),
    CommandSpec::new("rpoplpush", 3, WRITE | DENYOOM, KeySpec::range(1, 2, 1), Exec::Key(rpoplpush))
        .key_perms(&[KEY_RW, KEY_W])
        .noop(super::table::NoOp::Null)
        .ev_dst_first(crate::shard::notify::ev_lmove)
        .cross(rpoplpush_cross)
        .verbatim()
        .doc(L, "1.2.0", "Returns the last element of a list after removing and pushing it to another list. Deletes the list if the last element was popped.", "source destination"),
    CommandSpec::new("lmpop", -4, WRITE, KeySpec::numkeys(1), Exec::Key(super::blocking::now))
        .noop(super::table::NoOp::NullOrEmpty)
        .ev_hook(crate::shard::notify::ev_list_pop)
        .cross(crate::coord::blocking::mpop_cross)
        .verbatim()
        .doc(L, "7.0.0", "Returns multiple elements from a list after removing them. Deletes the list if the last element was popped.", "numkeys key [key ...] LEFT|RIGHT [COUNT count]"),
];

fn push(ctx: &mut KeyCtx, argv: &[Bytes], end: End, only_existing: bool) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let db = ctx.db();
    let l = if only_existing {
        match db.get_list_mut(key, now)? {
            Some(l) => l,
            None => return Ok(Reply::Int(0)),
        }
    } else {
        db.list_or_create(key, now)?
    };
    for v in argv.iter().skip(2) {
        l.push(end, v);
    }
    Ok(Reply::Int(l.len() as i64))
}

fn lpush(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    push(ctx, argv, End::Head, false)
}

fn rpush(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    push(ctx, argv, End::Tail, false)
}

fn lpushx(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    push(ctx, argv, End::Head, true)
}

fn rpushx(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    push(ctx, argv, End::Tail, true)
}

fn cmd_name(argv: &[Bytes]) -> String {
    argv.first()
        .map(|n| String::from_utf8_lossy(n).to_ascii_lowercase())
        .unwrap_or_default()
}

fn pop(ctx: &mut KeyCtx, argv: &[Bytes], end: End) -> CmdResult {
    let key = arg(argv, 1)?;
    if argv.len() > 3 {
        return Err(CmdError::WrongArity(cmd_name(argv)));
    }
    let count = super::args::opt_count(argv, 2)?;
    let now = ctx.now();
    let db = ctx.db();
    let Some(l) = db.get_list_mut(key, now)? else {
        return Ok(if count.is_some() {
            Reply::NullArray
        } else {
            Reply::Null
        });
    };
    let reply = match count {
        None => Reply::bulk_opt(l.pop(end)),
        Some(n) => Reply::Array(l.pop_count(end, n).into_iter().map(Reply::Bulk).collect()),
    };
    db.remove_if_empty(key);
    Ok(reply)
}

fn lpop(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    pop(ctx, argv, End::Head)
}

fn rpop(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    pop(ctx, argv, End::Tail)
}

fn llen(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let l = ctx.db().get_list(arg(argv, 1)?, now)?;
    Ok(Reply::Int(l.map_or(0, |l| l.len() as i64)))
}

fn lrange(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let (start, stop) = (int(argv, 2)?, int(argv, 3)?);
    let now = ctx.now();
    let l = ctx.db().get_list(key, now)?;
    Ok(Reply::Array(l.map_or_else(Vec::new, |l| {
        l.range(start, stop).into_iter().map(Reply::Bulk).collect()
    })))
}

fn lindex(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let Some(l) = ctx.db().get_list(key, now)? else {
        return Ok(Reply::Null);
    };
    let i = int(argv, 2)?;
    Ok(Reply::bulk_opt(l.get(i).map(Bytes::copy_from_slice)))
}

fn lset(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, v) = (arg(argv, 1)?, arg(argv, 3)?);
    let now = ctx.now();
    let Some(l) = ctx.db().get_list_mut(key, now)? else {
        return Err(CmdError::NoSuchKey);
    };
    let i = int(argv, 2)?;
    l.set(i, v).map_err(CmdError::coded)?;
    Ok(Reply::Ok)
}

fn linsert(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, wh, pivot, v) = (arg(argv, 1)?, arg(argv, 2)?, arg(argv, 3)?, arg(argv, 4)?);
    let before = if is(wh, "before") {
        true
    } else if is(wh, "after") {
        false
    } else {
        return Err(CmdError::Syntax);
    };
    let now = ctx.now();
    let Some(l) = ctx.db().get_list_mut(key, now)? else {
        return Ok(Reply::Int(0));
    };
    Ok(Reply::Int(
        l.insert(pivot, before, v).map_or(-1, |n| n as i64),
    ))
}

fn lrem(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, v) = (arg(argv, 1)?, arg(argv, 3)?);
    let count = int(argv, 2)?;
    let now = ctx.now();
    let db = ctx.db();
    let Some(l) = db.get_list_mut(key, now)? else {
        return Ok(Reply::Int(0));
    };
    let n = l.remove(count, v);
    db.remove_if_empty(key);
    Ok(Reply::Int(n as i64))
}

fn ltrim(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let (start, stop) = (int(argv, 2)?, int(argv, 3)?);
    let now = ctx.now();
    let db = ctx.db();
    let found = match db.get_list_mut(key, now)? {
        Some(l) => {
            l.trim(start, stop);
            db.remove_if_empty(key);
            true
        }
        None => false,
    };
    ctx.unchanged(!found);
    Ok(Reply::Ok)
}

fn lpos(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (key, v) = (arg(argv, 1)?, arg(argv, 2)?);
    let mut opts = LposOpts::default();
    let mut i = 3;
    while let Some(opt) = argv.get(i) {
        let Some(val) = argv.get(i + 1) else {
            return Err(CmdError::Syntax);
        };
        // COUNT and MAXLEN answer their own text for a non-number too (Redis's
        // getPositiveLongFromObjectOrReply with a message).
        let positive = |what: &'static str| match parse_i64(val) {
            Some(n) if n >= 0 => Ok(n),
            _ => Err(CmdError::coded(what)),
        };
        if is(opt, "rank") {
            opts.rank = parse_i64(val).ok_or(CmdError::NotInteger)?;
        } else if is(opt, "count") {
            opts.count = Some(positive(crate::types::err::LPOS_COUNT_NEGATIVE)?);
        } else if is(opt, "maxlen") {
            opts.maxlen = positive(crate::types::err::LPOS_MAXLEN_NEGATIVE)?;
        } else {
            return Err(CmdError::Syntax);
        }
        opts.validate().map_err(CmdError::coded)?;
        i += 2;
    }
    let now = ctx.now();
    let Some(l) = ctx.db().get_list(key, now)? else {
        return Ok(if opts.count.is_some() {
            Reply::Array(Vec::new())
        } else {
            Reply::Null
        });
    };
    let found = l.pos(v, opts).map_err(CmdError::coded)?;
    Ok(match opts.count {
        None => found.first().map_or(Reply::Null, |p| Reply::Int(*p as i64)),
        Some(_) => Reply::Array(found.into_iter().map(|p| Reply::Int(p as i64)).collect()),
    })
}

pub(crate) fn end_arg(b: &[u8]) -> Result<End, CmdError> {
    if is(b, "left") {
        Ok(End::Head)
    } else if is(b, "right") {
        Ok(End::Tail)
    } else {
        Err(CmdError::Syntax)
    }
}

/// The element LMOVE would take from `l`'s `from` end.
fn peek(l: &crate::types::list::List, from: End) -> Option<Bytes> {
    match from {
        End::Head => l.iter().next().map(Bytes::copy_from_slice),
        End::Tail => l.iter().next_back().map(Bytes::copy_from_slice),
    }
}

fn do_move(ctx: &mut KeyCtx, src: &[u8], dst: &[u8], from: End, to: End) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    if db.get_list_mut(src, now)?.is_none() {
        return Ok(Reply::Null);
    }
    db.get_list_mut(dst, now)?;
    let Some(v) = db.get_list_mut(src, now)?.and_then(|l| l.pop(from)) else {
        return Ok(Reply::Null);
    };
    db.list_or_create(dst, now)?.push(to, v.clone());
    db.remove_if_empty(src);
    Ok(Reply::Bulk(v))
}

fn lmove(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (src, dst) = (arg(argv, 1)?, arg(argv, 2)?);
    let (from, to) = (end_arg(arg(argv, 3)?)?, end_arg(arg(argv, 4)?)?);
    do_move(ctx, src, dst, from, to)
}

fn rpoplpush(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (src, dst) = (arg(argv, 1)?, arg(argv, 2)?);
    do_move(ctx, src, dst, End::Tail, End::Head)
}

fn lmove_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let from = end_arg(arg(&argv, 3)?)?;
    let to = end_arg(arg(&argv, 4)?)?;
    move_cross(ctx, &argv, from, to)
}

fn rpoplpush_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    move_cross(ctx, &argv, End::Tail, End::Head)
}

/// The command that pops one element at `end` (a journal effect).
pub fn pop_cmd(end: End) -> &'static [u8] {
    match end {
        End::Head => b"LPOP",
        End::Tail => b"RPOP",
    }
}

/// The command that pushes at `end` (a journal effect).
pub fn push_cmd(end: End) -> &'static [u8] {
    match end {
        End::Head => b"LPUSH",
        End::Tail => b"RPUSH",
    }
}

/// A cross-shard LMOVE: reads the source's `from` element and checks the destination's
/// type with both shards locked, then pops on the source's shard and pushes on the
/// destination's.
fn move_cross(ctx: &mut ConnCtx, argv: &[Bytes], from: End, to: End) -> CmdResult {
    let src = owned(arg(argv, 1)?);
    let dst = owned(arg(argv, 2)?);
    let db = ctx.client().db;
    let n = ctx.eng().nshards;
    let ticket = ctx.defer();
    let src_r = src.clone();
    gather_noting(
        ctx.eng(),
        Some(Noting {
            db,
            argv: argv.to_vec(),
        }),
        vec![src.clone(), dst.clone()],
        Vec::new(),
        move |w: &mut Engine, k: &Bytes| -> Result<Option<Bytes>, CmdError> {
            let now = w.shard.now_ms;
            let l = w.shard.db_mut(db).get_list_mut(k, now)?;
            Ok(if *k == src_r {
                l.and_then(|l| peek(l, from))
            } else {
                l.map(|_| Bytes::new())
            })
        },
        move |r| {
            let mut it = r.into_iter();
            let (s, d) = (it.next(), it.next());
            let v = match (s, d) {
                (Some(Err(e)), _) => return (e.into_reply(), Vec::new()),
                (Some(Ok(Some(v))), Some(Ok(_))) => v,
                (Some(Ok(Some(_))), Some(Err(e))) => return (e.into_reply(), Vec::new()),
                _ => return (Reply::Null, Vec::new()),
            };
            let (s1, d1, v1) = (src.clone(), dst.clone(), v.clone());
            let writes: Vec<(usize, WriteFn)> = vec![
                (
                    shard_of(&src, n),
                    Box::new(move |tw: &mut Engine| {
                        let now = tw.shard.now_ms;
                        let d = tw.shard.db_mut(db);
                        let popped = match d.get_list_mut(&s1, now) {
                            Ok(Some(l)) => l.pop(from).is_some(),
                            _ => false,
                        };
                        d.remove_if_empty(&s1);
                        if popped {
                            tw.shard.touch_effect(db, &s1, &[pop_cmd(from), &s1]);
                        }
                    }),
                ),
                (
                    shard_of(&dst, n),
                    Box::new(move |tw: &mut Engine| {
                        let now = tw.shard.now_ms;
                        if let Ok(l) = tw.shard.db_mut(db).list_or_create(&d1, now) {
                            l.push(to, v1.clone());
                            tw.shard.touch_effect(db, &d1, &[push_cmd(to), &d1, &v1]);
                        }
                    }),
                ),
            ];
            (Reply::Bulk(v), writes)
        },
        move |w, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}
