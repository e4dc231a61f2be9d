//! Generic key commands (Redis's db.c / expire.c / object.c): DEL, EXISTS, TYPE, TTLs,
//! RENAME, COPY, KEYS, SCAN, RANDOMKEY, OBJECT. Key handlers run on the owner shard; KEYS,
//! SCAN and RANDOMKEY run on the connection's shard and visit the others by message.

use bytes::Bytes;

use super::args::{arg, glob_match, int, is, text};
use super::table::{
    CommandSpec, Exec, KeySpec, Merge, SplitSpec, CAT_DANGEROUS, CAT_KEYSPACE, DENYOOM, FAST,
    KEY_R, KEY_RW, KEY_W, LOADING, READONLY, STALE, WRITE,
};
use super::{ConnCtx, KeyCtx};
use crate::coord::lock::{move_key, MoveCheck};
use crate::engine::Engine;
use crate::engine::{ShardFn, Ticket};
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::runtime::alloc;
use crate::shard::evict::lfu_decayed;

const G: &str = "generic";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("del", -2, WRITE, KeySpec::range(1, -1, 1),
        Exec::Split(SplitSpec { sub: del, step: 1, merge: Merge::Sum, atomic: true, nx: false }))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::GENERIC, "del")
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .doc(G, "1.0.0", "Deletes one or more keys.", "key [key ...]"),
    CommandSpec::new("unlink", -2, WRITE | FAST, KeySpec::range(1, -1, 1),
        Exec::Split(SplitSpec { sub: unlink, step: 1, merge: Merge::Sum, atomic: true, nx: false }))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::GENERIC, "del")
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .doc(G, "4.0.0", "Asynchronously deletes one or more keys.", "key [key ...]"),
    CommandSpec::new("exists", -2, READONLY | FAST, KeySpec::range(1, -1, 1),
        Exec::Split(SplitSpec { sub: exists, step: 1, merge: Merge::Sum, atomic: true, nx: false }))
        .key_perms(&[0])
        .doc(G, "1.0.0", "Determines whether one or more keys exist.", "key [key ...]"),
    CommandSpec::new("touch", -2, READONLY | FAST, KeySpec::range(1, -1, 1),
        Exec::Split(SplitSpec { sub: touch, step: 1, merge: Merge::Sum, atomic: true, nx: false }))
        .key_perms(&[0])
        .doc(G, "3.2.1", "Returns the number of existing keys out of those specified after updating the time they were last accessed.", "key [key ...]"),
    CommandSpec::new("type", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(type_))
        .key_perms(&[0])
        .doc(G, "1.0.0", "Determines the type of value stored at a key.", "key"),
    CommandSpec::new("expire", -3, WRITE | FAST, KeySpec::single(1), Exec::Key(expire))
        .key_perms(&[KEY_W])
        .ev_hook(crate::shard::notify::ev_expire)
        .ttl_prop()
        .noop(super::table::NoOp::Int0)
        .doc(G, "1.0.0", "Sets the expiration time of a key in seconds.", "key seconds [NX | XX | GT | LT]"),
    CommandSpec::new("pexpire", -3, WRITE | FAST, KeySpec::single(1), Exec::Key(pexpire))
        .key_perms(&[KEY_W])
        .ev_hook(crate::shard::notify::ev_expire)
        .ttl_prop()
        .noop(super::table::NoOp::Int0)
        .doc(G, "2.6.0", "Sets the expiration time of a key in milliseconds.", "key milliseconds [NX | XX | GT | LT]"),
    CommandSpec::new("expireat", -3, WRITE | FAST, KeySpec::single(1), Exec::Key(expireat))
        .key_perms(&[KEY_W])
        .ev_hook(crate::shard::notify::ev_expire)
        .ttl_prop()
        .noop(super::table::NoOp::Int0)
        .doc(G, "1.2.0", "Sets the expiration time of a key to a Unix timestamp.", "key unix-time-seconds [NX | XX | GT | LT]"),
    CommandSpec::new("pexpireat", -3, WRITE | FAST, KeySpec::single(1), Exec::Key(pexpireat))
        .key_perms(&[KEY_W])
        .ev_hook(crate::shard::notify::ev_expire)
        .ttl_prop()
        .noop(super::table::NoOp::Int0)
        .doc(G, "2.6.0", "Sets the expiration time of a key to a Unix milliseconds timestamp.", "key unix-time-milliseconds [NX | XX | GT | LT]"),
    CommandSpec::new("ttl", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(ttl))
        .doc(G, "1.0.0", "Returns the expiration time in seconds of a key.", "key"),
    CommandSpec::new("pttl", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(pttl))
        .doc(G, "2.6.0", "Returns the expiration time in milliseconds of a key.", "key"),
    CommandSpec::new("expiretime", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(expiretime))
        .doc(G, "7.0.0", "Returns the expiration time of a key as a Unix timestamp.", "key"),
    CommandSpec::new("pexpiretime", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(pexpiretime))
        .doc(G, "7.0.0", "Returns the expiration time of a key as a Unix milliseconds timestamp.", "key"),
    CommandSpec::new("persist", 2, WRITE | FAST, KeySpec::single(1), Exec::Key(persist))
        .key_perms(&[KEY_W])
        .ev(crate::shard::notify::GENERIC, "persist")
        .ttl_prop()
        .noop(super::table::NoOp::Int0)
        .doc(G, "2.2.0", "Removes the expiration time of a key.", "key"),
    CommandSpec::new("rename", 3, WRITE, KeySpec::range(1, 2, 1), Exec::Key(rename))
        .key_perms(&[KEY_RW, KEY_W])
        .ev_move(crate::shard::notify::ev_rename)
        .cross(rename_cross)
        .verbatim()
        .noop(super::table::NoOp::SameKeys)
        .doc(G, "1.0.0", "Renames a key and overwrites the destination.", "key newkey"),
    CommandSpec::new("renamenx", 3, WRITE | FAST, KeySpec::range(1, 2, 1), Exec::Key(renamenx))
        .key_perms(&[KEY_RW, KEY_W])
        .ev_move(crate::shard::notify::ev_rename)
        .cross(rename_cross)
        .verbatim()
        .noop(super::table::NoOp::Int0OrSameKeys)
        .doc(G, "1.0.0", "Renames a key only when the target key name doesn't exist.", "key newkey"),
    CommandSpec::new("copy", -3, WRITE | DENYOOM, KeySpec::range(1, 2, 1), Exec::Key(copy))
        .key_perms(&[KEY_R, KEY_W])
        .ev_hook(crate::shard::notify::ev_copy)
        .cross(copy_cross)
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .touches(super::table::Touches::CopyDb)
        .doc(G, "6.2.0", "Copies the value of a key to a new key.", "source destination [DB destination-db] [REPLACE]"),
    CommandSpec::new("dump", 2, READONLY, KeySpec::single(1), Exec::Key(dump))
        .doc(G, "2.6.0", "Returns a serialized representation of the value stored at a key.", "key"),
    CommandSpec::new("restore", -4, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(restore))
        .key_perms(&[KEY_W])
        .acl(CAT_KEYSPACE | CAT_DANGEROUS)
        .ev(crate::shard::notify::GENERIC, "restore")
        .doc(G, "2.6.0", "Creates a key from the serialized representation of a value.",
             "key ttl serialized-value [REPLACE] [ABSTTL] [IDLETIME seconds] [FREQ frequency]"),
    CommandSpec::new("move", 3, WRITE | FAST, KeySpec::single(1), Exec::Key(move_cmd))
        .ev_move(crate::shard::notify::ev_move)
        .verbatim()
        .noop(super::table::NoOp::Int0)
        .touches(super::table::Touches::MoveDb)
        .doc(G, "1.0.0", "Moves a key to another database.", "key db"),
    CommandSpec::new("keys", 2, READONLY, KeySpec::none(), Exec::Conn(keys))
        .acl(CAT_KEYSPACE | CAT_DANGEROUS)
        .doc(G, "1.0.0", "Returns all key names that match a pattern.", "pattern"),
    CommandSpec::new("scan", -2, READONLY, KeySpec::none(), Exec::Conn(scan))
        .doc(G, "2.8.0", "Iterates over the key names in the database.", "cursor [MATCH pattern] [COUNT count] [TYPE type]"),
    CommandSpec::new("randomkey", 1, READONLY, KeySpec::none(), Exec::Conn(randomkey))
        .doc(G, "1.0.0", "Returns a random key name from the database.", ""),
    // A connection command (MEMORY STATS reads every shard); USAGE runs `memory` on the
    // key's shard (`observe::memory`).
    CommandSpec::new("object", -2, READONLY, KeySpec::single(2), Exec::Key(object))
        .key_perms(&[0])
        .sub_flags(&[
            ("encoding", READONLY, CAT_KEYSPACE),
            ("freq", READONLY, CAT_KEYSPACE),
            ("idletime", READONLY, CAT_KEYSPACE),
            ("refcount", READONLY, CAT_KEYSPACE),
            ("help", LOADING | STALE, CAT_KEYSPACE),
        ])
        .doc("generic", "2.2.3", "A container for object introspection commands.", "subcommand [key]")
        .subs(&[
            ("encoding", 3, "key"),
            ("freq", 3, "key"),
            ("idletime", 3, "key"),
            ("refcount", 3, "key"),
            ("help", 2, ""),
        ]),
];

/// DEL; with `lazyfree-lazy-user-del yes` it frees big values as UNLINK does.
fn del(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    if crate::shard::lazyfree::user_del() {
        return unlink(ctx, argv);
    }
    let now = ctx.now();
    let db = ctx.db();
    let mut n = 0;
    for k in argv.iter().skip(1) {
        db.expire_if_needed(k, now);
        if db.remove(k) {
            n += 1;
        }
    }
    Ok(Reply::Int(n))
}

/// DEL that frees big values on the lazy-free thread (`shard::lazyfree`).
fn unlink(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    let mut n = 0;
    for k in argv.iter().skip(1) {
        db.expire_if_needed(k, now);
        if db.unlink(k) {
            n += 1;
        }
    }
    Ok(Reply::Int(n))
}

fn exists(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    Ok(Reply::Int(
        argv.iter()
            .skip(1)
            .filter(|k| {
                let found = db.exists(k, now);
                db.count_read(k, found, true);
                found
            })
            .count() as i64,
    ))
}

fn touch(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    Ok(Reply::Int(
        argv.iter()
            .skip(1)
            .filter(|k| {
                let found = db.touch(k, now);
                db.count_read(k, found, true);
                found
            })
            .count() as i64,
    ))
}

fn type_(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let key = arg(argv, 1)?;
    let db = ctx.db();
    let meta = db.meta(key, now);
    db.count_read(key, meta.is_some(), true);
    let name = meta.map_or("none", |m| m.type_name);
    Ok(Reply::status(name))
}

/// EXPIRE family (Redis's expireGenericCommand).
fn expire_generic(
    ctx: &mut KeyCtx,
    argv: &[Bytes],
    secs: bool,
    absolute: bool,
    name: &str,
) -> CmdResult {
    let key = arg(argv, 1)?;
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in argv.iter().skip(3) {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "gt") {
            gt = true;
        } else if is(opt, "lt") {
            lt = true;
        } else {
            return Err(CmdError::err(format!("Unsupported option {}", text(opt))));
        }
    }
    if nx && (xx || gt || lt) {
        return Err(CmdError::err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if gt && lt {
        return Err(CmdError::err(
            "GT and LT options at the same time are not compatible",
        ));
    }
    // Options are checked before the time (Redis's parseExtendedExpireArgumentsOrReply).
    let mut when = int(argv, 2)?;
    let invalid = || CmdError::InvalidExpire(name.to_string());
    if secs {
        if !(i64::MIN / 1000..=i64::MAX / 1000).contains(&when) {
            return Err(invalid());
        }
        when *= 1000;
    }
    let now = ctx.now();
    if !absolute {
        when = when.checked_add(now as i64).ok_or_else(invalid)?;
    }
    let db = ctx.db();
    let Some(e) = db.meta(key, now) else {
        return Ok(Reply::Int(0));
    };
    let current: i64 = if e.expire_at == 0 {
        -1
    } else {
        e.expire_at as i64
    };
    if (nx && current != -1)
        || (xx && current == -1)
        || (gt && (current == -1 || when <= current))
        || (lt && current != -1 && when >= current)
    {
        return Ok(Reply::Int(0));
    }
    // A replica keeps the key with its past TTL, hidden from readers, until the master's
    // DEL: later commands from the master still see it (Redis's checkAlreadyExpired).
    if when <= now as i64 && !db.replica {
        db.remove(key);
        return Ok(Reply::Int(1));
    }
    db.set_expire(key, when as u64);
    Ok(Reply::Int(1))
}

fn expire(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    expire_generic(ctx, argv, true, false, "expire")
}

fn pexpire(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    expire_generic(ctx, argv, false, false, "pexpire")
}

fn expireat(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    expire_generic(ctx, argv, true, true, "expireat")
}

fn pexpireat(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    expire_generic(ctx, argv, false, true, "pexpireat")
}

/// TTL-family reply: -2 missing, -1 no TTL, else the value `f` computes.
fn ttl_generic(ctx: &mut KeyCtx, argv: &[Bytes], f: fn(u64, u64) -> i64) -> CmdResult {
    let now = ctx.now();
    let key = arg(argv, 1)?;
    let db = ctx.db();
    let meta = db.meta(key, now);
    db.count_read(key, meta.is_some(), true);
    match meta {
        None => Ok(Reply::Int(-2)),
        Some(e) if e.expire_at == 0 => Ok(Reply::Int(-1)),
        Some(e) => Ok(Reply::Int(f(e.expire_at, now))),
    }
}

fn ttl(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, argv, |at, now| {
        (at.saturating_sub(now) as i64 + 500) / 1000
    })
}

fn pttl(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, argv, |at, now| at.saturating_sub(now) as i64)
}

fn expiretime(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, argv, |at, _| ((at + 500) / 1000) as i64)
}

fn pexpiretime(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    ttl_generic(ctx, argv, |at, _| at as i64)
}

fn persist(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let db = ctx.db();
    match db.meta(key, now) {
        Some(e) if e.expire_at != 0 => {
            db.set_expire(key, 0);
            Ok(Reply::Int(1))
        }
        _ => Ok(Reply::Int(0)),
    }
}

/// RENAME / RENAMENX when both keys live on this shard.
fn rename_local(ctx: &mut KeyCtx, argv: &[Bytes], nx: bool) -> CmdResult {
    let (src, dst) = (arg(argv, 1)?, arg(argv, 2)?);
    let now = ctx.now();
    let db = ctx.db();
    if !db.exists(src, now) {
        return Err(CmdError::NoSuchKey);
    }
    if src == dst {
        return Ok(if nx { Reply::Int(0) } else { Reply::Ok });
    }
    if nx && db.exists(dst, now) {
        return Ok(Reply::Int(0));
    }
    let Some(entry) = db.take(src) else {
        return Err(CmdError::NoSuchKey);
    };
    db.remove(dst);
    db.import(dst, entry);
    Ok(if nx { Reply::Int(1) } else { Reply::Ok })
}

fn rename(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    rename_local(ctx, argv, false)
}

fn renamenx(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    rename_local(ctx, argv, true)
}

/// RENAME / RENAMENX with the keys on two shards: atomic through `move_key`.
fn rename_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let nx = argv.first().is_some_and(|n| is(n, "renamenx"));
    let src = arg(&argv, 1)?.clone();
    let dst = Bytes::copy_from_slice(arg(&argv, 2)?);
    let db = ctx.client().db;
    let ticket = ctx.defer();
    move_key(
        ctx.eng(),
        src,
        db,
        false,
        dst,
        db,
        move |c: &MoveCheck| match (&c.src, nx && c.dst_exists) {
            (None, _) => (CmdError::NoSuchKey.into_reply(), None),
            (Some(_), true) => (Reply::Int(0), None),
            (Some(_), false) => (if nx { Reply::Int(1) } else { Reply::Ok }, Some(true)),
        },
        move |w: &mut Engine, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}

/// COPY options: destination db and REPLACE.
fn copy_opts(argv: &[Bytes], cur_db: usize, databases: usize) -> Result<(usize, bool), CmdError> {
    let mut db = cur_db;
    let mut replace = false;
    let mut i = 3;
    while i < argv.len() {
        if is(arg(argv, i)?, "replace") {
            replace = true;
        } else if is(arg(argv, i)?, "db") && i + 1 < argv.len() {
            i += 1;
            let n = parse_i64(arg(argv, i)?).ok_or(CmdError::NotInteger)?;
            if n < 0 || n as usize >= databases || n > i32::MAX as i64 {
                return Err(CmdError::DbIndex);
            }
            db = n as usize;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    Ok((db, replace))
}

fn copy(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let (src, dst) = (arg(argv, 1)?, arg(argv, 2)?);
    let (dst_db, replace) = copy_opts(argv, ctx.db, ctx.shard.dbs.len())?;
    if src == dst && dst_db == ctx.db {
        return Err(CmdError::err("source and destination objects are the same"));
    }
    let now = ctx.now();
    let entry = ctx.db().export(src, now);
    ctx.db().count_read(src, entry.is_some(), true);
    let Some(entry) = entry else {
        return Ok(Reply::Int(0));
    };
    let Some(target) = ctx.shard.dbs.get_mut(dst_db) else {
        return Err(CmdError::DbIndex);
    };
    if target.exists(dst, now) {
        if !replace {
            return Ok(Reply::Int(0));
        }
        target.remove(dst);
    }
    target.import(dst, entry);
    Ok(Reply::Int(1))
}

/// DUMP: Redis's serialization (an RDB value, version 10, CRC64), byte for byte what
/// redis-server 7.0 produces for the same value and encoding.
fn dump(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let now = ctx.now();
    let e = ctx.db().export(key, now);
    ctx.db().count_read(key, e.is_some(), true);
    let Some(e) = e else {
        return Ok(Reply::Null);
    };
    let val = match &e.val {
        crate::shard::value::Value::Str(s) => crate::persist::rdb::ValRef::Str(s),
        v => match v.as_obj() {
            Some(o) => crate::persist::rdb::ValRef::Obj(o),
            None => return Ok(Reply::Null),
        },
    };
    // LZF only with `rdbcompression yes`, as Redis's DUMP.
    let compress = crate::persist::rdb::dump_compression();
    Ok(Reply::Bulk(Bytes::from(crate::persist::rdb::dump_payload(
        val, compress,
    ))))
}

/// RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f], with Redis 7.0's
/// checks in its order. IDLETIME seeds the key's LRU clock, FREQ its LFU counter
/// (whichever the eviction policy uses, as Redis).
fn restore(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let (mut replace, mut absttl) = (false, false);
    let (mut idle, mut freq) = (None::<i64>, None::<i64>);
    let mut j = 4;
    while let Some(a) = argv.get(j) {
        let more = argv.len() - j - 1;
        if is(a, "replace") {
            replace = true;
        } else if is(a, "absttl") {
            absttl = true;
        } else if is(a, "idletime") && more >= 1 && freq.is_none() {
            let n = parse_i64(arg(argv, j + 1)?).ok_or(CmdError::NotInteger)?;
            if n < 0 {
                return Err(CmdError::err("Invalid IDLETIME value, must be >= 0"));
            }
            idle = Some(n);
            j += 1;
        } else if is(a, "freq") && more >= 1 && idle.is_none() {
            let n = parse_i64(arg(argv, j + 1)?).ok_or(CmdError::NotInteger)?;
            if !(0..=255).contains(&n) {
                return Err(CmdError::err("Invalid FREQ value, must be >= 0 and <= 255"));
            }
            freq = Some(n);
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    let now = ctx.now();
    if !replace && ctx.db().exists(key, now) {
        return Err(CmdError::coded("BUSYKEY Target key name already exists."));
    }
    let ttl = parse_i64(arg(argv, 2)?).ok_or(CmdError::NotInteger)?;
    if ttl < 0 {
        return Err(CmdError::err("Invalid TTL value, must be >= 0"));
    }
    let val = match crate::persist::read::restore_payload(arg(argv, 3)?, true) {
        Ok(v) => v,
        Err(false) => return Err(CmdError::err("DUMP payload version or checksum are wrong")),
        Err(true) => return Err(CmdError::err("Bad data format")),
    };
    let Some(val) = val else {
        return Err(CmdError::err("Bad data format"));
    };
    if replace {
        ctx.db().remove(key);
    }
    let expire_at = match ttl {
        0 => 0,
        t if absttl => t as u64,
        t => now.saturating_add(t as u64),
    };
    let db = ctx.db();
    // Already expired: the key is just gone (and OK), as Redis; a replica keeps it until
    // the master's DEL, as for EXPIRE.
    if expire_at != 0 && expire_at <= now && !db.replica {
        return Ok(Reply::Ok);
    }
    db.set_value(key, val, expire_at, now);
    db.seed_access(key, now, idle.map(|i| i as u64), freq.map(|f| f as u8));
    Ok(Reply::Ok)
}

/// MOVE key db: the key keeps its shard (ownership does not depend on the database), so
/// this is one shard's move between two of its databases, TTL included. Checks in Redis
/// 7.0's order: the index (an int), its range, same database, then the keys.
fn move_cmd(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let n = parse_i64(arg(argv, 2)?).ok_or(CmdError::NotInteger)?;
    if i32::try_from(n).is_err() {
        // Redis's getIntFromObjectOrReply wording for a long outside int.
        return Err(CmdError::err(
            "value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    let dst_db = usize::try_from(n)
        .ok()
        .filter(|&d| d < ctx.shard.dbs.len())
        .ok_or(CmdError::DbIndex)?;
    if dst_db == ctx.db {
        return Err(CmdError::err("source and destination objects are the same"));
    }
    let now = ctx.now();
    let Some(entry) = ctx.db().export(key, now) else {
        return Ok(Reply::Int(0));
    };
    let Some(target) = ctx.shard.dbs.get_mut(dst_db) else {
        return Err(CmdError::DbIndex);
    };
    if target.exists(key, now) {
        return Ok(Reply::Int(0));
    }
    target.import(key, entry);
    ctx.db().remove(key);
    Ok(Reply::Int(1))
}

fn copy_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let cur = ctx.client().db;
    let (dst_db, replace) = copy_opts(&argv, cur, ctx.eng().shared.cfg.databases)?;
    let src = arg(&argv, 1)?.clone();
    let dst = Bytes::copy_from_slice(arg(&argv, 2)?);
    let ticket = ctx.defer();
    move_key(
        ctx.eng(),
        src,
        cur,
        true,
        dst,
        dst_db,
        move |c: &MoveCheck| match (&c.src, c.dst_exists && !replace) {
            (None, _) => (Reply::Int(0), None),
            (Some(_), true) => (Reply::Int(0), None),
            (Some(_), false) => (Reply::Int(1), Some(false)),
        },
        move |w: &mut Engine, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}

/// Runs `f` on every shard (respecting locks) and hands the results to `done` here.
pub fn all_shards<T: Send + 'static>(
    w: &mut Engine,
    f: impl Fn(&mut Engine) -> T + Send + Clone + 'static,
    done: impl FnOnce(&mut Engine, Vec<T>) + 'static,
) {
    w.on_all_shards(f, true, done);
}

fn keys(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let pattern = arg(argv, 1)?.clone();
    let db = ctx.client().db;
    let ticket = ctx.defer();
    all_shards(
        ctx.eng(),
        move |tw| {
            let now = tw.shard.now_ms;
            let all = pattern.as_ref() == b"*";
            let Some(d) = tw.shard.dbs.get(db) else {
                return Vec::new();
            };
            let mut out = Vec::new();
            d.for_each(|k, e| {
                if (e.expire_at == 0 || e.expire_at > now)
                    && (all || glob_match(&pattern, k, false))
                {
                    out.push(Bytes::copy_from_slice(k));
                }
            });
            out
        },
        move |w, parts| {
            let keys = parts.into_iter().flatten().map(Reply::Bulk).collect();
            w.complete(ticket, Reply::Array(keys));
        },
    );
    Ok(Reply::Ok)
}

fn randomkey(ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    let db = ctx.client().db;
    let ticket = ctx.defer();
    all_shards(
        ctx.eng(),
        move |tw| {
            let now = tw.shard.now_ms;
            // A few tries to skip keys that are logically expired.
            for _ in 0..16 {
                let seed = tw.shard.next_rand();
                let Some(d) = tw.shard.dbs.get_mut(db) else {
                    return (0, None);
                };
                let len = d.len();
                let pick = d.random(seed);
                match pick {
                    None => return (0, None),
                    Some((k, at)) if at != 0 && at <= now => {
                        d.expire_if_needed(&k, now);
                    }
                    Some((k, _)) => return (len, Some(k)),
                }
            }
            (0, None)
        },
        move |w, parts: Vec<(usize, Option<Bytes>)>| {
            let total: usize = parts.iter().map(|p| p.0).sum();
            let mut reply = Reply::Null;
            if total > 0 {
                // Pick a shard with probability proportional to its size.
                let mut r = (w.shard.next_rand() as usize) % total;
                for (n, k) in parts {
                    if r < n {
                        reply = Reply::bulk_opt(k);
                        break;
                    }
                    r -= n;
                }
            }
            w.complete(ticket, reply);
        },
    );
    Ok(Reply::Ok)
}

/// Global SCAN cursor: the shard in the low 8 bits, that shard's table cursor above.
const SHARD_BITS: u32 = 8;

/// Reads a SCAN cursor as Redis's parseScanCursorOrReply does with strtoul: an optional
/// sign (a negative cursor wraps), digits, no leading space, no overflow; "" reads as 0.
pub(crate) fn parse_cursor(b: &[u8]) -> Option<u64> {
    let Some(&first) = b.first() else {
        return Some(0);
    };
    if first.is_ascii_whitespace() {
        return None;
    }
    let (neg, digits) = match first {
        b'-' => (true, b.get(1..)?),
        b'+' => (false, b.get(1..)?),
        _ => (false, b),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = digits.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    Some(if neg { v.wrapping_neg() } else { v })
}

fn scan(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let cursor = parse_cursor(arg(argv, 1)?).ok_or_else(|| CmdError::err("invalid cursor"))?;
    let mut pattern: Option<Bytes> = None;
    let mut count: usize = 10;
    let mut type_filter: Option<Bytes> = None;
    let mut i = 2;
    while i < argv.len() {
        let has_next = i + 1 < argv.len();
        if is(arg(argv, i)?, "count") && has_next {
            let n = int(argv, i + 1)?;
            if n < 1 {
                return Err(CmdError::Syntax);
            }
            count = n as usize;
            i += 2;
        } else if is(arg(argv, i)?, "match") && has_next {
            let p = arg(argv, i + 1)?.clone();
            pattern = if p.as_ref() == b"*" { None } else { Some(p) };
            i += 2;
        } else if is(arg(argv, i)?, "type") && has_next {
            type_filter = Some(arg(argv, i + 1)?.clone());
            i += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let nshards = ctx.eng().nshards;
    let shard = (cursor & ((1 << SHARD_BITS) - 1)) as usize;
    let table_cursor = cursor >> SHARD_BITS;
    if shard >= nshards {
        // A cursor we never issued: Redis would just continue; we end the scan.
        return Ok(Reply::Array(vec![
            Reply::bulk("0"),
            Reply::Array(Vec::new()),
        ]));
    }
    let step = ScanStep {
        // Inside EXEC the transaction holds the shards: every step, the ones run from a
        // reply after EXEC's own turn too, must not wait for their locks.
        work: !ctx.eng().tx.nested(),
        db: ctx.client().db,
        ticket: ctx.defer(),
        shard,
        cursor: table_cursor,
        count,
        budget: count.saturating_mul(10).max(10),
        pattern,
        type_filter,
        found: Vec::new(),
    };
    scan_step(ctx.eng(), step);
    Ok(Reply::Ok)
}

/// Where a SCAN call is: the shard it reads next, from which table cursor, and what it
/// found so far. A shard whose table ends before COUNT keys were found hands over to the
/// next shard in the same call, so a small keyspace comes back in one call, as in Redis.
struct ScanStep {
    /// Whether the steps wait for shard locks (not inside EXEC, which holds them).
    work: bool,
    db: usize,
    ticket: Ticket,
    shard: usize,
    cursor: u64,
    count: usize,
    /// Table buckets left to visit in this call (Redis's `COUNT * 10` iterations).
    budget: usize,
    pattern: Option<Bytes>,
    type_filter: Option<Bytes>,
    found: Vec<Bytes>,
}

fn scan_step(eng: &mut Engine, mut st: ScanStep) {
    let (db, table_cursor, want, mut budget) = (
        st.db,
        st.cursor,
        st.count.saturating_sub(st.found.len()),
        st.budget,
    );
    let (pattern, type_filter) = (st.pattern.clone(), st.type_filter.clone());
    let job: ShardFn<(Vec<Bytes>, u64, usize)> = Box::new(move |tw| {
        let now = tw.shard.now_ms;
        let Some(d) = tw.shard.dbs.get(db) else {
            return (Vec::new(), 0, budget);
        };
        let mut found = Vec::new();
        let mut c = table_cursor;
        loop {
            c = d.scan(c, |k, e| {
                if e.expire_at != 0 && e.expire_at <= now {
                    return;
                }
                if let Some(p) = &pattern {
                    if !glob_match(p, k, false) {
                        return;
                    }
                }
                if let Some(t) = &type_filter {
                    if !t.eq_ignore_ascii_case(e.type_name.as_bytes()) {
                        return;
                    }
                }
                found.push(Bytes::copy_from_slice(k));
            });
            budget = budget.saturating_sub(1);
            if c == 0 || found.len() >= want || budget == 0 {
                break;
            }
        }
        (found, c, budget)
    });
    let shard = st.shard;
    eng.fan_out(vec![(shard, job)], st.work, move |e, mut res| {
        let nshards = e.nshards;
        let (keys, next, left) = res.pop().unwrap_or_default();
        st.found.extend(keys);
        if next == 0 && shard + 1 < nshards && st.found.len() < st.count && left > 0 {
            st.shard = shard + 1;
            st.cursor = 0;
            st.budget = left;
            return scan_step(e, st);
        }
        let next_cursor = if next != 0 {
            (next << SHARD_BITS) | shard as u64
        } else if shard + 1 < nshards {
            (shard + 1) as u64
        } else {
            0
        };
        e.complete(
            st.ticket,
            Reply::Array(vec![
                Reply::bulk(next_cursor.to_string()),
                Reply::Array(st.found.into_iter().map(Reply::Bulk).collect()),
            ]),
        );
    });
}

const OBJECT_HELP: &[&str] = &[
    "OBJECT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "ENCODING <key>",
    "    Return the kind of internal representation used in order to store the value",
    "    associated with a <key>.",
    "FREQ <key>",
    "    Return the access frequency index of the <key>. The returned integer is",
    "    proportional to the logarithm of the recent access frequency of the key.",
    "IDLETIME <key>",
    "    Return the idle time of the <key>, that is the approximated number of",
    "    seconds elapsed since the last access to the key.",
    "REFCOUNT <key>",
    "    Return the number of references of the value associated with the specified",
    "    <key>.",
    "HELP",
    "    Prints this help.",
];

const MEMORY_HELP: &[&str] = &[
    "MEMORY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return memory problems reports.",
    "MALLOC-STATS",
    "    Return internal statistics report from the memory allocator.",
    "PURGE",
    "    Attempt to purge dirty pages for reclamation by the allocator.",
    "STATS",
    "    Return information about the memory usage of the server.",
    "USAGE <key> [SAMPLES <count>]",
    "    Return memory in bytes used by <key> and its value. Nested values are",
    "    sampled up to <count> times (default: 5, 0 means sample all).",
    "HELP",
    "    Prints this help.",
];

/// MEMORY USAGE / DOCTOR / MALLOC-STATS / PURGE / HELP on the shard that owns the key
/// (STATS: `observe::memory_stats`).
pub(crate) fn memory(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    // The declared subcommands and arities (the table row) decide the errors.
    let subname = super::server::subcommand("memory", argv)?;
    match subname.as_str() {
        "usage" => {
            let mut samples = 5;
            let mut opts = argv.get(3..).unwrap_or_default().iter();
            while let Some(o) = opts.next() {
                let count = opts.next().filter(|_| o.eq_ignore_ascii_case(b"samples"));
                let Some(count) = count else {
                    return Err(CmdError::Syntax);
                };
                let n = parse_i64(count).ok_or(CmdError::NotInteger)?;
                samples = usize::try_from(n).map_err(|_| CmdError::Syntax)?;
            }
            let key = arg(argv, 2)?;
            let now = ctx.now();
            Ok(ctx
                .db()
                .memory_usage(key, now, samples)
                .map_or(Reply::Null, |b| Reply::Int(b as i64)))
        }
        "doctor" => {
            // Redis's two verdicts for an instance without any of the issues it detects.
            let text: &'static str = if alloc::used() < 5 << 20 {
                "Hi Sam, this instance is empty or is using very little memory, my issues detector can't be used in these conditions. Please, leave for your mission on Earth and fill it with some data. The new Sam and I will be back to our programming as soon as I finished rebooting.\n"
            } else {
                "Hi Sam, I can't find any memory issue in your instance. I can only account for what occurs on this base.\n"
            };
            Ok(Reply::Verbatim(Bytes::from_static(text.as_bytes())))
        }
        "malloc-stats" => Ok(Reply::Verbatim(Bytes::from_static(
            b"Stats not supported for the current allocator",
        ))),
        "purge" => {
            alloc::purge();
            Ok(Reply::Ok)
        }
        // Connections get it from `observe::memory_stats` (it reads every shard).
        "stats" => Err(CmdError::err("MEMORY STATS is not available from scripts")),
        _ => Ok(Reply::help(MEMORY_HELP)),
    }
}

fn object(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let sub = arg(argv, 1)?;
    let subname = text(sub).to_lowercase();
    let known = ["encoding", "freq", "idletime", "refcount", "help"];
    if !known.contains(&subname.as_str()) {
        return Err(CmdError::UnknownSubcommand {
            sub: text(sub),
            cmd: "object".into(),
        });
    }
    let want = if subname == "help" { 2 } else { 3 };
    if argv.len() != want {
        return Err(CmdError::WrongArity(format!("object|{subname}")));
    }
    if subname == "help" {
        return Ok(Reply::help(OBJECT_HELP));
    }
    let key = arg(argv, 2)?;
    let now = ctx.now();
    let cfg = ctx.shard.evict.cfg;
    let e = ctx.db().meta(key, now);
    // Redis counts OBJECT's lookup but sends no keymiss for it (LOOKUP_NONOTIFY).
    ctx.db().count_read(key, e.is_some(), false);
    let Some(e) = e else {
        return Ok(Reply::Null);
    };
    match subname.as_str() {
        "encoding" => Ok(Reply::bulk(e.encoding)),
        "refcount" => {
            // Redis shares the objects for the integers 0..9999.
            Ok(Reply::Int(if e.shared { i32::MAX as i64 } else { 1 }))
        }
        "idletime" if !cfg.policy.is_lfu() => Ok(Reply::Int(e.idle_secs(now))),
        "idletime" => Err(CmdError::err(
            "An LFU maxmemory policy is selected, idle time not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        )),
        _ if cfg.policy.is_lfu() => Ok(Reply::Int(i64::from(lfu_decayed(
            e.atime,
            now,
            cfg.lfu_decay_time,
        )))),
        _ => Err(CmdError::err(
            "An LFU maxmemory policy is not selected, access frequency not tracked. Please note that when switching between policies at runtime LRU and LFU data will take some time to adjust.",
        )),
    }
}

/// Key family tests through the in-process kit (3 shards): values and exact error texts.
#[cfg(test)]
mod family {
    use crate::commands::testkit::{bulk, err, Kit};
    use crate::protocol::reply::Reply;

    const NOT_INT: &str = "ERR value is not an integer or out of range";

    #[test]
    fn del_unlink_exists_type_across_shards() {
        let mut k = Kit::new();
        k.run(&["MSET", "a", "1", "k1", "2", "k2", "3"]);
        assert_eq!(
            k.run(&["EXISTS", "a", "a", "k1", "nokey", "k2"]),
            Reply::Int(4)
        );
        assert_eq!(k.run(&["TYPE", "a"]), Reply::status("string"));
        assert_eq!(k.run(&["TYPE", "nokey"]), Reply::status("none"));
        assert_eq!(k.run(&["DEL", "a", "k1", "nokey", "a"]), Reply::Int(2));
        assert_eq!(k.run(&["UNLINK", "k2", "k2"]), Reply::Int(1));
        assert_eq!(k.run(&["EXISTS", "a", "k1", "k2"]), Reply::Int(0));
        k.run(&["SET", "t", "v", "PX", "10"]);
        k.advance(10);
        assert_eq!(
            k.run(&["DEL", "t"]),
            Reply::Int(0),
            "expired keys do not count"
        );
    }

    #[test]
    fn ttl_family_on_missing_and_persistent_keys() {
        let mut k = Kit::new();
        k.run(&["SET", "a", "v"]);
        for cmd in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
            assert_eq!(k.run(&[cmd, "nokey"]), Reply::Int(-2), "{cmd}");
            assert_eq!(k.run(&[cmd, "a"]), Reply::Int(-1), "{cmd}");
        }
        assert_eq!(k.run(&["PERSIST", "a"]), Reply::Int(0));
        assert_eq!(k.run(&["PERSIST", "nokey"]), Reply::Int(0));
        assert_eq!(k.run(&["EXPIRE", "nokey", "10"]), Reply::Int(0));
    }

    #[test]
    fn expire_values_and_rounding() {
        let mut k = Kit::new();
        k.run(&["SET", "a", "v"]);
        assert_eq!(k.run(&["PEXPIREAT", "a", "4102444800999"]), Reply::Int(1));
        assert_eq!(k.run(&["EXPIRETIME", "a"]), Reply::Int(4102444801));
        assert_eq!(k.run(&["PEXPIRETIME", "a"]), Reply::Int(4102444800999));
        assert_eq!(k.run(&["EXPIRE", "a", "100"]), Reply::Int(1));
        assert_eq!(k.run(&["TTL", "a"]), Reply::Int(100));
        assert_eq!(k.run(&["PTTL", "a"]), Reply::Int(100_000));
        k.advance(400);
        assert_eq!(k.run(&["TTL", "a"]), Reply::Int(100), "rounded to nearest");
        assert_eq!(k.run(&["PERSIST", "a"]), Reply::Int(1));
        assert_eq!(k.run(&["TTL", "a"]), Reply::Int(-1));
        assert_eq!(k.run(&["EXPIRE", "a", "0"]), Reply::Int(1));
        assert_eq!(k.run(&["EXISTS", "a"]), Reply::Int(0));
        k.run(&["SET", "a", "v"]);
        assert_eq!(k.run(&["PEXPIRE", "a", "-1"]), Reply::Int(1));
        assert_eq!(k.run(&["EXISTS", "a"]), Reply::Int(0));
    }

    #[test]
    fn expire_conditions() {
        let mut k = Kit::new();
        k.run(&["SET", "a", "v"]);
        let at = |k: &mut Kit| k.run(&["EXPIRETIME", "a"]);
        assert_eq!(k.run(&["EXPIREAT", "a", "4102444800", "XX"]), Reply::Int(0));
        assert_eq!(k.run(&["EXPIREAT", "a", "4102444800", "GT"]), Reply::Int(0));
        assert_eq!(k.run(&["EXPIREAT", "a", "4102444800", "LT"]), Reply::Int(1));
        assert_eq!(k.run(&["PERSIST", "a"]), Reply::Int(1));
        assert_eq!(k.run(&["EXPIREAT", "a", "4102444800", "NX"]), Reply::Int(1));
        assert_eq!(k.run(&["EXPIREAT", "a", "4102444900", "NX"]), Reply::Int(0));
        assert_eq!(k.run(&["EXPIREAT", "a", "4102444900", "xx"]), Reply::Int(1));
        assert_eq!(k.run(&["EXPIREAT", "a", "4102444800", "GT"]), Reply::Int(0));
        assert_eq!(k.run(&["EXPIREAT", "a", "4102445000", "gt"]), Reply::Int(1));
        assert_eq!(k.run(&["EXPIREAT", "a", "4102445100", "LT"]), Reply::Int(0));
        assert_eq!(
            k.run(&["EXPIREAT", "a", "4102444000", "LT", "XX"]),
            Reply::Int(1)
        );
        assert_eq!(at(&mut k), Reply::Int(4102444000));
    }

    #[test]
    fn expire_errors_in_redis_order() {
        let mut k = Kit::new();
        k.run(&["SET", "a", "v"]);
        let nx = err("ERR NX and XX, GT or LT options at the same time are not compatible");
        let gtlt = err("ERR GT and LT options at the same time are not compatible");
        assert_eq!(k.run(&["EXPIRE", "a", "10", "NX", "XX"]), nx);
        assert_eq!(k.run(&["EXPIRE", "a", "10", "NX", "LT"]), nx);
        assert_eq!(k.run(&["EXPIRE", "a", "10", "GT", "LT"]), gtlt);
        assert_eq!(
            k.run(&["EXPIRE", "a", "10", "FOO", "NX", "XX"]),
            err("ERR Unsupported option FOO")
        );
        // Options are checked before the number.
        assert_eq!(k.run(&["EXPIRE", "a", "abc", "NX", "XX"]), nx);
        assert_eq!(k.run(&["EXPIRE", "a", "abc"]), err(NOT_INT));
        assert_eq!(k.run(&["PEXPIRE", "a", "1.5"]), err(NOT_INT));
        assert_eq!(
            k.run(&["EXPIRE", "a", "9223372036854775807"]),
            err("ERR invalid expire time in 'expire' command")
        );
        assert_eq!(
            k.run(&["PEXPIRE", "a", "9223372036854775807"]),
            err("ERR invalid expire time in 'pexpire' command")
        );
        assert_eq!(
            k.run(&["TTL", "a"]),
            Reply::Int(-1),
            "errors changed nothing"
        );
    }

    #[test]
    fn rename_and_copy_on_one_shard() {
        let mut k = Kit::new();
        // Hash tags keep both keys on one shard (cross-shard moves need a worker).
        assert_eq!(k.run(&["RENAME", "{t}a", "{t}b"]), err("ERR no such key"));
        assert_eq!(k.run(&["RENAMENX", "{t}a", "{t}b"]), err("ERR no such key"));
        k.run(&["SET", "{t}a", "v", "EXAT", "4102444800"]);
        assert_eq!(k.run(&["RENAME", "{t}a", "{t}a"]), Reply::Ok);
        assert_eq!(k.run(&["RENAMENX", "{t}a", "{t}a"]), Reply::Int(0));
        assert_eq!(k.run(&["RENAME", "{t}a", "{t}b"]), Reply::Ok);
        assert_eq!(k.run(&["EXPIRETIME", "{t}b"]), Reply::Int(4102444800));
        assert_eq!(k.run(&["EXISTS", "{t}a"]), Reply::Int(0));
        k.run(&["SET", "{t}c", "c"]);
        assert_eq!(k.run(&["RENAMENX", "{t}b", "{t}c"]), Reply::Int(0));
        assert_eq!(k.run(&["RENAMENX", "{t}b", "{t}d"]), Reply::Int(1));
        assert_eq!(k.run(&["GET", "{t}d"]), bulk("v"));

        assert_eq!(k.run(&["COPY", "{t}d", "{t}c"]), Reply::Int(0));
        assert_eq!(k.run(&["COPY", "{t}d", "{t}c", "REPLACE"]), Reply::Int(1));
        assert_eq!(k.run(&["GET", "{t}c"]), bulk("v"));
        assert_eq!(k.run(&["EXPIRETIME", "{t}c"]), Reply::Int(4102444800));
        assert_eq!(k.run(&["COPY", "nokey", "{t}c"]), Reply::Int(0));
        assert_eq!(
            k.run(&["COPY", "{t}d", "{t}d"]),
            err("ERR source and destination objects are the same")
        );
        assert_eq!(k.run(&["COPY", "{t}d", "{t}d", "DB", "1"]), Reply::Int(1));
        assert_eq!(
            k.run(&["COPY", "{t}d", "{t}x", "DB", "16"]),
            err("ERR DB index is out of range")
        );
        assert_eq!(k.run(&["COPY", "{t}d", "{t}x", "DB", "x"]), err(NOT_INT));
        assert_eq!(
            k.run(&["COPY", "{t}d", "{t}x", "FOO"]),
            err("ERR syntax error")
        );
        k.db = 1;
        assert_eq!(k.run(&["GET", "{t}d"]), bulk("v"));
    }

    #[test]
    fn object_subcommands() {
        let mut k = Kit::new();
        k.run(&["SET", "a", "100"]);
        k.run(&["SET", "b", "hello"]);
        assert_eq!(
            k.run(&["OBJECT", "REFCOUNT", "a"]),
            Reply::Int(i32::MAX as i64)
        );
        assert_eq!(k.run(&["OBJECT", "REFCOUNT", "b"]), Reply::Int(1));
        assert_eq!(k.run(&["OBJECT", "IDLETIME", "b"]), Reply::Int(0));
        assert_eq!(k.run(&["OBJECT", "IDLETIME", "nokey"]), Reply::Null);
        assert_eq!(
            k.run(&["OBJECT", "NOPE", "b"]),
            err("ERR unknown subcommand 'NOPE'. Try OBJECT HELP.")
        );
        assert_eq!(
            k.run(&["OBJECT", "ENCODING"]),
            err("ERR wrong number of arguments for 'object|encoding' command")
        );
        assert!(
            matches!(k.run(&["OBJECT", "FREQ", "b"]), Reply::Error(e) if e.starts_with("ERR An LFU maxmemory policy is not selected"))
        );
        let Reply::Array(help) = k.run(&["OBJECT", "HELP"]) else {
            panic!("OBJECT HELP is not an array");
        };
        assert_eq!(help.len(), 15);
    }
}
