//! Blocking pops (Redis's blocking forms in t_list.c / t_zset.c): BLPOP, BRPOP, BLMOVE,
//! BRPOPLPUSH, BLMPOP, BZPOPMIN, BZPOPMAX, BZMPOP. This file holds what runs on the shard
//! that owns a key: argument parsing with Redis's checks and texts, the pop a client makes
//! when it finds (or is woken by) data, the replies, and putting data back. Waiting,
//! waking, timeouts and disconnects across shards are `coord::blocking`'s.
//!
//! The `Key` handlers are the non-blocking form, which is what these commands do inside
//! MULTI/EXEC (as in Redis): pop if there is data, else answer the timeout reply at once.
//! Outside a transaction `dispatch` sends every `BLOCKING` row to `coord::blocking::start`.

use bytes::Bytes;

use super::args::{arg, is, mpop_args, owned};
use super::lists::end_arg;
use super::streams::{KeyRead, ReadOp};
use super::table::{
    CommandSpec, Exec, KeySpec, BLOCKING, DENYOOM, FAST, KEY_RW, KEY_W, NOSCRIPT, WRITE,
};
use super::zsets::pairs_reply;
use super::KeyCtx;
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::shard::db::Db;
use crate::types::list::End;
use crate::types::zset::ZAddFlags;

const L: &str = "list";
const Z: &str = "sorted-set";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("blpop", -3, WRITE | NOSCRIPT | BLOCKING, KeySpec::range(1, -2, 1), Exec::Key(now))
        .ev_hook(crate::shard::notify::ev_list_pop)
        .cross(crate::coord::blocking::start)
        .prop(crate::shard::journal::Prop::Rewrite(crate::shard::journal::rw_bpop))
        .doc(L, "2.0.0", "Removes and returns the first element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "key [key ...] timeout"),
    CommandSpec::new("brpop", -3, WRITE | NOSCRIPT | BLOCKING, KeySpec::range(1, -2, 1), Exec::Key(now))
        .ev_hook(crate::shard::notify::ev_list_pop)
        .cross(crate::coord::blocking::start)
        .prop(crate::shard::journal::Prop::Rewrite(crate::shard::journal::rw_bpop))
        .doc(L, "2.0.0", "Removes and returns the last element in a list. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "key [key ...] timeout"),
    CommandSpec::new("brpoplpush", 4, WRITE | DENYOOM | NOSCRIPT | BLOCKING, KeySpec::range(1, 2, 1), Exec::Key(now))
        .key_perms(&[KEY_RW, KEY_W])
        .ev_dst_first(crate::shard::notify::ev_lmove)
        .cross(crate::coord::blocking::start)
        .doc(L, "2.2.0", "Pops an element from a list, pushes it to another list and returns it. Block until an element is available otherwise. Deletes the list if the last element was popped.", "source destination timeout"),
    CommandSpec::new("blmove", 6, WRITE | DENYOOM | NOSCRIPT | BLOCKING, KeySpec::range(1, 2, 1), Exec::Key(now))
        .key_perms(&[KEY_RW, KEY_W])
        .ev_dst_first(crate::shard::notify::ev_lmove)
        .cross(crate::coord::blocking::start)
        .doc(L, "6.2.0", "Pops an element from a list, pushes it to another list and returns it. Blocks until an element is available otherwise. Deletes the list if the last element was moved.", "source destination LEFT|RIGHT LEFT|RIGHT timeout"),
    CommandSpec::new("blmpop", -5, WRITE | BLOCKING, KeySpec::numkeys(2), Exec::Key(now))
        .ev_hook(crate::shard::notify::ev_list_pop)
        .cross(crate::coord::blocking::start)
        .doc(L, "7.0.0", "Pops the first element from one of multiple lists. Blocks until an element is available otherwise. Deletes the list if the last element was popped.", "timeout numkeys key [key ...] LEFT|RIGHT [COUNT count]"),
    CommandSpec::new("bzpopmin", -3, WRITE | FAST | NOSCRIPT | BLOCKING, KeySpec::range(1, -2, 1), Exec::Key(now))
        .ev_hook(crate::shard::notify::ev_zset_pop)
        .cross(crate::coord::blocking::start)
        .prop(crate::shard::journal::Prop::Rewrite(crate::shard::journal::rw_bzpop))
        .doc(Z, "5.0.0", "Removes and returns the member with the lowest score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "key [key ...] timeout"),
    CommandSpec::new("bzpopmax", -3, WRITE | FAST | NOSCRIPT | BLOCKING, KeySpec::range(1, -2, 1), Exec::Key(now))
        .ev_hook(crate::shard::notify::ev_zset_pop)
        .cross(crate::coord::blocking::start)
        .prop(crate::shard::journal::Prop::Rewrite(crate::shard::journal::rw_bzpop))
        .doc(Z, "5.0.0", "Removes and returns the member with the highest score from one or more sorted sets. Blocks until a member available otherwise.  Deletes the sorted set if the last element was popped.", "key [key ...] timeout"),
    CommandSpec::new("bzmpop", -5, WRITE | BLOCKING, KeySpec::numkeys(2), Exec::Key(now))
        .ev_hook(crate::shard::notify::ev_zset_pop)
        .cross(crate::coord::blocking::start)
        .doc(Z, "7.0.0", "Removes and returns a member by score from one or more sorted sets. Blocks until a member is available otherwise. Deletes the sorted set if the last element was popped.", "timeout numkeys key [key ...] MIN|MAX [COUNT count]"),
];

/// What a blocked client will do with the first key that has data.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// BLPOP / BRPOP.
    Pop(End),
    /// BLMPOP: up to `count` elements.
    MPop(End, usize),
    /// BLMOVE / BRPOPLPUSH: pop one from the key, push it on `dst`.
    Move { dst: Bytes, from: End, to: End },
    /// BZPOPMIN / BZPOPMAX (`true` = max).
    ZPop(bool),
    /// BZMPOP: up to `count` members.
    ZMPop(bool, usize),
    /// XREAD / XREADGROUP: entries after an ID, read (and for a group, delivered) rather
    /// than popped; every waiter whose ID is behind the stream's top is served.
    Stream(Box<ReadOp>),
}

/// A parsed blocking command.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockOp {
    pub kind: Kind,
    /// The keys it waits on, in command order (BLMOVE: only the source).
    pub keys: Vec<Bytes>,
    /// Milliseconds to wait; 0 waits forever.
    pub timeout_ms: u64,
    pub db: usize,
    /// When the wait ends (set when the wait starts; `None`: never).
    pub deadline: Option<std::time::Instant>,
    /// Every waited key is on one shard: that shard decides (see `coord::blocking`).
    pub single: bool,
    /// XREAD / XREADGROUP without BLOCK: read now, never wait.
    pub no_wait: bool,
}

/// Data a client took: what it replies with, and what goes back if it cannot be delivered.
#[derive(Debug, PartialEq)]
pub enum Served {
    List {
        key: Bytes,
        end: End,
        items: Vec<Bytes>,
    },
    ZSet {
        key: Bytes,
        items: Vec<(Bytes, f64)>,
    },
    /// Stream reads: the `[key, entries]` pairs, and per key what a group read recorded
    /// (journaled by the caller on the owning shard). Nothing is ever put back.
    Stream {
        key: Bytes,
        pairs: Vec<Reply>,
        effects: Vec<(Bytes, Vec<Vec<Bytes>>, bool)>,
    },
}

impl Served {
    pub fn key(&self) -> &Bytes {
        match self {
            Served::List { key, .. } | Served::ZSet { key, .. } | Served::Stream { key, .. } => key,
        }
    }

    fn from_read(key: &[u8], r: KeyRead) -> Served {
        Served::Stream {
            key: Bytes::copy_from_slice(key),
            pairs: vec![r.reply],
            effects: vec![(Bytes::copy_from_slice(key), r.effects, r.created)],
        }
    }
}

/// What serving a stream read changed on the owning shard: a group read's effects are
/// journaled (and wake WATCH), a created consumer is announced. A plain XREAD changed
/// nothing.
pub fn stream_served(shard: &mut crate::shard::Shard, db: usize, s: &Served) {
    let Served::Stream { effects, .. } = s else {
        return;
    };
    for (key, effs, created) in effects {
        for e in effs {
            let args: Vec<&[u8]> = e.iter().map(|a| a.as_ref()).collect();
            shard.touch_effect(db, key, &args);
        }
        if *created && shard.notify != 0 {
            crate::shard::notify::event(
                shard,
                db,
                (crate::shard::notify::STREAM, "xgroup-createconsumer"),
                key,
                false,
            );
        }
    }
}

/// Redis's `getTimeoutFromObjectOrReply` for seconds: a long double times 1000, converted
/// to a long long (x86: out of range becomes the most negative value), then checked.
pub fn parse_timeout(b: &[u8]) -> Result<u64, CmdError> {
    let v = super::ldouble::parse(b)
        .map(super::ldouble::to_f64)
        .ok_or_else(|| CmdError::err("timeout is not a float or out of range"))?;
    let ms = v * 1000.0;
    let t = if ms.is_finite() && ms < 9.223_372_036_854_775e18 && ms > -9.223_372_036_854_775e18 {
        ms.trunc() as i64
    } else {
        i64::MIN
    };
    if t < 0 {
        return Err(CmdError::err("timeout is negative"));
    }
    Ok(t as u64)
}

fn zwhere(b: &Bytes) -> Result<bool, CmdError> {
    if is(b, "min") {
        Ok(false)
    } else if is(b, "max") {
        Ok(true)
    } else {
        Err(CmdError::Syntax)
    }
}

/// Parses any of the blocking commands, with Redis's order of checks.
pub fn parse(argv: &[Bytes], db: usize) -> Result<BlockOp, CmdError> {
    let name = argv
        .first()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default();
    let last = argv.len().saturating_sub(1);
    let tail_keys = || argv.get(1..last).unwrap_or_default().to_vec();
    let (kind, keys, timeout) = match name.as_slice() {
        b"blpop" | b"brpop" | b"bzpopmin" | b"bzpopmax" => {
            let t = parse_timeout(arg(argv, last)?)?;
            let kind = match name.as_slice() {
                b"blpop" => Kind::Pop(End::Head),
                b"brpop" => Kind::Pop(End::Tail),
                b"bzpopmin" => Kind::ZPop(false),
                _ => Kind::ZPop(true),
            };
            (kind, tail_keys(), t)
        }
        b"brpoplpush" => {
            let t = parse_timeout(arg(argv, 3)?)?;
            let dst = owned(arg(argv, 2)?);
            let kind = Kind::Move {
                dst,
                from: End::Tail,
                to: End::Head,
            };
            (kind, vec![arg(argv, 1)?.clone()], t)
        }
        b"blmove" => {
            let from = end_arg(arg(argv, 3)?)?;
            let to = end_arg(arg(argv, 4)?)?;
            let t = parse_timeout(arg(argv, 5)?)?;
            let dst = owned(arg(argv, 2)?);
            (Kind::Move { dst, from, to }, vec![arg(argv, 1)?.clone()], t)
        }
        // The non-blocking forms, for their multi-shard path (`coord::blocking::mpop_cross`).
        b"lmpop" => {
            let (keys, end, count) = mpop_args(argv, |w| end_arg(w))?;
            (Kind::MPop(end, count), keys.to_vec(), 0)
        }
        b"zmpop" => {
            let (keys, max, count) = mpop_args(argv, zwhere)?;
            (Kind::ZMPop(max, count), keys.to_vec(), 0)
        }
        b"blmpop" | b"bzmpop" => {
            // `mpop_args` expects numkeys at index 1: skip the command name.
            let rest = argv.get(1..).unwrap_or_default();
            let (kind, keys) = if name.as_slice() == b"blmpop" {
                let (keys, end, count) = mpop_args(rest, |w| end_arg(w))?;
                (Kind::MPop(end, count), keys.to_vec())
            } else {
                let (keys, max, count) = mpop_args(rest, zwhere)?;
                (Kind::ZMPop(max, count), keys.to_vec())
            };
            (kind, keys, parse_timeout(arg(argv, 1)?)?)
        }
        b"xread" | b"xreadgroup" => {
            let (op, keys, block) = super::streams::parse_read(argv)?;
            return Ok(BlockOp {
                kind: Kind::Stream(Box::new(op)),
                keys,
                timeout_ms: block.unwrap_or(0),
                db,
                deadline: None,
                single: false,
                no_wait: block.is_none(),
            });
        }
        _ => return Err(CmdError::Syntax),
    };
    // Keys are kept: registrations outlive the request buffer they were parsed from.
    let keys = keys.iter().map(owned).collect();
    Ok(BlockOp {
        kind,
        keys,
        timeout_ms: timeout,
        db,
        deadline: None,
        single: false,
        no_wait: false,
    })
}

impl Kind {
    fn wants_list(&self) -> bool {
        matches!(self, Kind::Pop(_) | Kind::MPop(..) | Kind::Move { .. })
    }

    /// The reply when the wait times out (or is ended by CLIENT UNBLOCK TIMEOUT): a null
    /// array for every kind, BLMOVE included (Redis's `replyToBlockedClientTimedOut`).
    pub fn timeout_reply(&self) -> Reply {
        Reply::NullArray
    }

    /// The reply when there is no data and the client may not block (inside MULTI): BLMOVE
    /// answers a null bulk there, the others a null array.
    pub fn no_data_reply(&self) -> Reply {
        match self {
            Kind::Move { .. } => Reply::Null,
            _ => Reply::NullArray,
        }
    }

    /// The reply for data taken from a key.
    pub fn reply(&self, s: Served) -> Reply {
        match (self, s) {
            // A map of key to entries in RESP3, `[key, entries]` pairs in RESP2.
            (_, Served::Stream { pairs, .. }) => Reply::Pairs(
                pairs
                    .into_iter()
                    .map(|p| match p {
                        Reply::Array(mut kv) if kv.len() == 2 => {
                            let v = kv.pop().unwrap_or(Reply::Null);
                            let k = kv.pop().unwrap_or(Reply::Null);
                            (k, v)
                        }
                        other => (other, Reply::Null),
                    })
                    .collect(),
            ),
            (Kind::Move { .. }, Served::List { items, .. }) => {
                Reply::bulk_opt(items.into_iter().next())
            }
            (Kind::MPop(..), Served::List { key, items, .. }) => Reply::Array(vec![
                Reply::Bulk(key),
                Reply::Array(items.into_iter().map(Reply::Bulk).collect()),
            ]),
            (_, Served::List { key, items, .. }) => {
                let mut v = vec![Reply::Bulk(key)];
                v.extend(items.into_iter().take(1).map(Reply::Bulk));
                Reply::Array(v)
            }
            (Kind::ZMPop(..), Served::ZSet { key, items }) => {
                Reply::Array(vec![Reply::Bulk(key), pairs_reply(items, true, 3)])
            }
            (_, Served::ZSet { key, items }) => {
                let mut v = vec![Reply::Bulk(key)];
                if let Some((m, s)) = items.into_iter().next() {
                    v.push(Reply::Bulk(m));
                    v.push(Reply::Double(s));
                }
                Reply::Array(v)
            }
        }
    }
}

/// Whether `key` has data this kind can take; WRONGTYPE when it holds another type.
pub fn probe(db: &mut Db, now: u64, kind: &Kind, key: &[u8]) -> Result<bool, CmdError> {
    if let Kind::Stream(op) = kind {
        return super::streams::has_data(db, now, op, key);
    }
    Ok(if kind.wants_list() {
        db.get_list_mut(key, now)?.is_some()
    } else {
        db.get_zset_mut(key, now)?.is_some()
    })
}

/// Takes data from `key` for `kind` (a missing key is empty; empty keys are deleted).
/// BLMOVE's push is not done here.
pub fn take(db: &mut Db, now: u64, kind: &Kind, key: &[u8]) -> Result<Option<Served>, CmdError> {
    take_as(db, now, kind, key, false)
}

/// `take`, for a waiter woken by a write (`woken`: a stream read without COUNT is served
/// at most 1000 entries, as Redis serves a blocked reader).
pub fn take_as(
    db: &mut Db,
    now: u64,
    kind: &Kind,
    key: &[u8],
    woken: bool,
) -> Result<Option<Served>, CmdError> {
    let served = match kind {
        Kind::Stream(op) => {
            if woken {
                if let Some((g, _)) = &op.group {
                    // The group or the stream went while its consumer waited: the wait
                    // ends with Redis 7.0's error.
                    let gone = matches!(db.get_stream(key, now),
                        Ok(Some(s)) if !s.groups.contains_key(g.as_ref()));
                    if gone {
                        return Err(CmdError::coded(
                            "NOGROUP the consumer group this client was blocked on no longer exists",
                        ));
                    }
                    // Deleted (or replaced by another type): 7.0.15 ends the wait too.
                    if !matches!(db.get_stream(key, now), Ok(Some(_))) {
                        return Err(CmdError::coded("UNBLOCKED the stream key no longer exists"));
                    }
                }
            }
            return Ok(super::streams::read_key(db, now, op, key, woken)?
                .map(|r| Served::from_read(key, r)));
        }
        Kind::Pop(end) | Kind::MPop(end, _) | Kind::Move { from: end, .. } => {
            let Some(l) = db.get_list_mut(key, now)? else {
                return Ok(None);
            };
            let n = match kind {
                Kind::MPop(_, n) => *n,
                _ => 1,
            };
            let items = l.pop_count(*end, n);
            Served::List {
                key: owned_key(key),
                end: *end,
                items,
            }
        }
        Kind::ZPop(max) | Kind::ZMPop(max, _) => {
            let Some(z) = db.get_zset_mut(key, now)? else {
                return Ok(None);
            };
            let n = match kind {
                Kind::ZMPop(_, n) => *n,
                _ => 1,
            };
            Served::ZSet {
                key: owned_key(key),
                items: z.pop(*max, n),
            }
        }
    };
    db.remove_if_empty(key);
    Ok(Some(served))
}

fn owned_key(k: &[u8]) -> Bytes {
    Bytes::copy_from_slice(k)
}

/// Pushes BLMOVE's element on its destination (which must hold a list or nothing).
pub fn push_dst(db: &mut Db, now: u64, dst: &[u8], to: End, v: Bytes) -> Result<(), CmdError> {
    db.list_or_create(dst, now)?.push(to, v);
    Ok(())
}

/// The immediate attempt on one shard holding every key of `op` (BLMOVE's destination
/// too): the first key in order with data is taken; WRONGTYPE stops at the first key of
/// another type, as Redis checks them in order. `Ok(None)`: nothing, the client waits.
pub fn try_all(db: &mut Db, now: u64, op: &BlockOp) -> Result<Option<Served>, CmdError> {
    if let Kind::Stream(rop) = &op.kind {
        // Every key is checked first, then every key with data answers (in command order).
        for key in &op.keys {
            super::streams::check_key(db, now, rop, key)?;
        }
        let mut out: Option<Served> = None;
        for (i, key) in op.keys.iter().enumerate() {
            let Some(r) = super::streams::read_at(db, now, rop, i, false)? else {
                continue;
            };
            match out.as_mut() {
                Some(Served::Stream { pairs, effects, .. }) => {
                    pairs.push(r.reply);
                    effects.push((key.clone(), r.effects, r.created));
                }
                _ => out = Some(Served::from_read(key, r)),
            }
        }
        return Ok(out);
    }
    for key in &op.keys {
        if !probe(db, now, &op.kind, key)? {
            continue;
        }
        if let Kind::Move { dst, to, .. } = &op.kind {
            // LMOVE checks the destination's type before popping.
            db.get_list_mut(dst, now)?;
            let Some(s) = take(db, now, &op.kind, key)? else {
                continue;
            };
            if let Served::List { items, .. } = &s {
                if let Some(v) = items.first() {
                    push_dst(db, now, dst, *to, v.clone())?;
                }
            }
            return Ok(Some(s));
        }
        return take(db, now, &op.kind, key);
    }
    Ok(None)
}

/// Puts data a client could not receive back where it was taken from (the same end, in
/// the same order). Data is lost only if the key meanwhile holds another type.
pub fn restore(db: &mut Db, now: u64, s: Served) -> bool {
    match s {
        // Read, not taken (a group read's deliveries stay pending, as in Redis).
        Served::Stream { .. } => true,
        Served::List { key, end, items } => match db.list_or_create(&key, now) {
            Ok(l) => {
                for v in items.into_iter().rev() {
                    l.push(end, v);
                }
                true
            }
            Err(_) => false,
        },
        Served::ZSet { key, items } => match db.zset_or_create(&key, now) {
            Ok(z) => {
                let nx = ZAddFlags {
                    nx: true,
                    ..ZAddFlags::default()
                };
                for (m, sc) in items {
                    let _ = z.add(sc, m, nx);
                }
                db.remove_if_empty(&key);
                true
            }
            Err(_) => false,
        },
    }
}

/// Pops now or answers the no-data reply: the blocking forms inside MULTI/EXEC, and LMPOP /
/// ZMPOP (their keys on this shard).
pub(crate) fn now(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let op = parse(argv, ctx.db)?;
    let t = ctx.now();
    let db = ctx.db;
    let served = try_all(ctx.db(), t, &op)?;
    Ok(match served {
        Some(s @ Served::Stream { .. }) => {
            stream_served(ctx.shard, db, &s);
            op.kind.reply(s)
        }
        Some(s) => {
            ctx.shard.touch(db, s.key());
            if let Kind::Move { dst, .. } = &op.kind {
                ctx.shard.touch(db, dst);
            }
            op.kind.reply(s)
        }
        None => op.kind.no_data_reply(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Bytes> {
        a.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    fn err(a: &[&str]) -> String {
        parse(&argv(a), 0)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn timeouts_follow_redis() {
        assert_eq!(parse_timeout(b"0").ok(), Some(0));
        assert_eq!(parse_timeout(b"0.5").ok(), Some(500));
        assert_eq!(parse_timeout(b"1.0009").ok(), Some(1000));
        assert_eq!(parse_timeout(b"0x10").ok(), Some(16000));
        // A tiny negative rounds to 0, which waits forever (7.0.15 does the same).
        assert_eq!(parse_timeout(b"-0.0001").ok(), Some(0));
        let neg = "ERR timeout is negative";
        let nf = "ERR timeout is not a float or out of range";
        for (s, e) in [
            ("-1", neg),
            ("1e30", neg),
            ("inf", neg),
            ("nan", nf),
            ("abc", nf),
            ("", nf),
        ] {
            assert_eq!(
                parse_timeout(s.as_bytes()).err().map(|e| e.to_string()),
                Some(e.to_string()),
                "{s}"
            );
        }
    }

    #[test]
    fn parse_orders_checks_as_redis() {
        assert_eq!(
            err(&["blmpop", "-1", "0", "a", "left"]),
            "ERR numkeys should be greater than 0"
        );
        assert_eq!(
            err(&["blmpop", "-1", "1", "a", "middle"]),
            "ERR syntax error"
        );
        assert_eq!(
            err(&["bzmpop", "-1", "1", "a", "min", "count", "0"]),
            "ERR count should be greater than 0"
        );
        assert_eq!(
            err(&["blmpop", "-1", "1", "a", "left"]),
            "ERR timeout is negative"
        );
        assert_eq!(
            err(&["blmove", "a", "b", "left", "middle", "-1"]),
            "ERR syntax error"
        );
        let op = parse(
            &argv(&["blmpop", "1.5", "2", "a", "b", "right", "count", "3"]),
            4,
        );
        assert_eq!(
            op.ok(),
            Some(BlockOp {
                kind: Kind::MPop(End::Tail, 3),
                keys: argv(&["a", "b"]),
                timeout_ms: 1500,
                db: 4,
                deadline: None,
                single: false,
                no_wait: false,
            })
        );
        let op = parse(&argv(&["BRPOPLPUSH", "s", "d", "0"]), 0);
        assert_eq!(
            op.map(|o| (o.keys, o.kind)).ok(),
            Some((
                argv(&["s"]),
                Kind::Move {
                    dst: Bytes::from("d"),
                    from: End::Tail,
                    to: End::Head
                }
            ))
        );
    }

    #[test]
    fn try_all_takes_first_key_with_data_and_restore_undoes() {
        let mut db = Db::default();
        let op = parse(
            &argv(&["blmpop", "0", "3", "x", "l", "m", "left", "count", "2"]),
            0,
        )
        .ok()
        .unwrap_or_else(|| panic!("parse"));
        for k in ["l", "m"] {
            let l = db
                .list_or_create(k.as_bytes(), 0)
                .ok()
                .unwrap_or_else(|| panic!());
            for v in ["a", "b", "c"] {
                l.push(End::Tail, Bytes::from(v));
            }
        }
        let s = try_all(&mut db, 0, &op)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!());
        assert_eq!(s.key(), &Bytes::from("l"));
        assert!(restore(&mut db, 0, s));
        let l = db
            .get_list_mut(b"l", 0)
            .ok()
            .flatten()
            .map(|l| l.range(0, -1));
        assert_eq!(l, Some(argv(&["a", "b", "c"])));
        // A key of another type before any data: WRONGTYPE, nothing taken.
        db.set(b"x", b"str", 0, 0);
        assert!(matches!(try_all(&mut db, 0, &op), Err(CmdError::WrongType)));
    }
}
