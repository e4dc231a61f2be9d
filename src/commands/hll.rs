//! HyperLogLog commands (Redis's hyperloglog.c): PFADD, PFCOUNT, PFMERGE over string values
//! in Redis's exact representation (`types::hll`). PFADD runs on the key's shard, in place
//! for a dense value. PFCOUNT of one key caches the count in the value's header, as Redis
//! does. PFCOUNT of several keys and PFMERGE read each key's registers on its owner (one
//! byte per register) under `coord::lock::gather`'s locks; the coordinator takes the
//! maximum, counts (PFCOUNT, nothing stored) or has the destination's owner apply it
//! (PFMERGE).

use bytes::Bytes;

use super::args::arg;
use super::table::{
    CommandSpec, Exec, KeySpec, ADMIN, CAT_HYPERLOGLOG, DENYOOM, FAST, KEY_R, KEY_RW, KEY_W,
    MAY_REPLICATE, READONLY, WRITE,
};
use super::{ConnCtx, KeyCtx};
use crate::coord::lock::{gather, gather_noting, Noting, WriteFn};
use crate::engine::Engine;
use crate::error::{self, CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::shard::db::Db;
use crate::shard::route::shard_of;
use crate::shard::value::StrEnc;
use crate::types::hll;

const G: &str = "hyperloglog";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("pfadd", -2, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(pfadd))
        .key_perms(&[KEY_W])
        .acl(CAT_HYPERLOGLOG)
        .noop(super::table::NoOp::Int0)
        .ev_counted(crate::shard::notify::STRING, "pfadd")
        .verbatim()
        .doc(G, "2.8.9", "Adds elements to a HyperLogLog key. Creates the key if it doesn't exist.", "key [element [element ...]]"),
    CommandSpec::new("pfcount", -2, READONLY | MAY_REPLICATE, KeySpec::range(1, -1, 1), Exec::Key(pfcount))
        .acl(CAT_HYPERLOGLOG)
        .cross(pfcount_cross)
        .doc(G, "2.8.9", "Returns the approximated cardinality of the set(s) observed by the HyperLogLog key(s).", "key [key ...]"),
    CommandSpec::new("pfmerge", -2, WRITE | DENYOOM, KeySpec::range(1, -1, 1), Exec::Key(pfmerge))
        .key_perms(&[KEY_RW, KEY_R])
        .acl(CAT_HYPERLOGLOG)
        .ev_hook(crate::shard::notify::ev_pfmerge)
        .cross(pfmerge_cross)
        .verbatim()
        .doc(G, "2.8.9", "Merges one or more HyperLogLog values into a single key.", "destkey [sourcekey [sourcekey ...]]"),
    CommandSpec::new("pfdebug", 3, WRITE | DENYOOM | ADMIN, KeySpec::single(2), Exec::Key(pfdebug))
        .key_perms(&[KEY_R])
        .acl(CAT_HYPERLOGLOG)
        .doc(G, "2.8.9", "Internal commands for debugging HyperLogLog values.", "subcommand key"),
    CommandSpec::new("pfselftest", 1, ADMIN, KeySpec::none(), Exec::Key(pfselftest))
        .acl(CAT_HYPERLOGLOG)
        .doc(G, "2.8.9", "An internal command for testing HyperLogLog values.", ""),
];

/// PFDEBUG GETREG|DECODE|ENCODING|TODENSE key (Redis's pfdebugCommand): a write lookup;
/// GETREG and TODENSE turn a sparse value dense, as Redis does.
fn pfdebug(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let sub = String::from_utf8_lossy(arg(argv, 1)?).to_ascii_lowercase();
    let key = arg(argv, 2)?;
    let now = ctx.now();
    let db = ctx.db();
    let Some(dense) = check_for_write(db, key, now)? else {
        return Err(CmdError::err("The specified key does not exist"));
    };
    let densify = |ctx: &mut KeyCtx| -> Result<Vec<u8>, CmdError> {
        let db = ctx.db();
        let mut v = db.get_str_for_write(key, now)?.unwrap_or_default().to_vec();
        if !dense {
            hll::to_dense(&mut v).map_err(corrupt)?;
            db.set_keep_ttl_enc(key, &v, StrEnc::Raw, now);
            ctx.shard.touch(ctx.db, key);
        }
        Ok(v)
    };
    match sub.as_str() {
        "getreg" => {
            let v = densify(ctx)?;
            Ok(Reply::Array(
                hll::dense_registers(&v)
                    .into_iter()
                    .map(|r| Reply::Int(i64::from(r)))
                    .collect(),
            ))
        }
        "decode" => {
            let v = db.get_str_for_write(key, now)?.unwrap_or_default();
            match hll::decode(&v) {
                Some(text) => Ok(Reply::bulk(text)),
                None => Err(CmdError::err("HLL encoding is not sparse")),
            }
        }
        "encoding" => Ok(Reply::status(if dense { "dense" } else { "sparse" })),
        "todense" => {
            densify(ctx)?;
            Ok(Reply::Int(i64::from(!dense)))
        }
        _ => Err(CmdError::err(format!(
            "Unknown PFDEBUG subcommand '{}'",
            String::from_utf8_lossy(arg(argv, 1)?)
        ))),
    }
}

/// PFSELFTEST: the representation's self-test (`hll::selftest`), `+OK` when it passes.
fn pfselftest(ctx: &mut KeyCtx, _argv: &[Bytes]) -> CmdResult {
    hll::selftest(ctx.now()).map_err(CmdError::err)?;
    Ok(Reply::Ok)
}

fn not_hll(_: hll::NotHll) -> CmdError {
    CmdError::coded(error::HLL_WRONGTYPE)
}

fn corrupt(_: hll::Corrupt) -> CmdError {
    CmdError::coded(error::HLL_CORRUPT)
}

/// Checks the value at `key` is a HyperLogLog (no copy); Ok(None) when missing, Ok(Some
/// (dense)) otherwise. A write lookup: no hit/miss counted.
fn check_for_write(db: &mut Db, key: &[u8], now: u64) -> Result<Option<bool>, CmdError> {
    db.with_str(key, now, false, |v| {
        hll::check(v).map(|()| hll::is_dense(v))
    })?
    .transpose()
    .map_err(not_hll)
}

fn pfadd(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let elems = argv.get(2..).unwrap_or_default();
    let now = ctx.now();
    let db = ctx.db();
    match check_for_write(db, key, now)? {
        Some(true) => {
            // Dense: registers change in place, the size never does.
            let v = db.str_mut(key, now, 0)?.unwrap_or_default();
            let mut updated = false;
            for e in elems {
                updated |= hll::dense_add(v, e);
            }
            if updated {
                hll::invalidate(v);
            }
            Ok(Reply::Int(i64::from(updated)))
        }
        Some(false) => {
            let mut v = db.get_str_for_write(key, now)?.unwrap_or_default().to_vec();
            let res = add_all(&mut v, elems, false);
            db.set_keep_ttl_enc(key, &v, StrEnc::Raw, now);
            res
        }
        None => {
            let mut v = hll::new_sparse();
            let res = add_all(&mut v, elems, true);
            db.set(key, &v, 0, now);
            db.set_enc(key, StrEnc::Raw);
            res
        }
    }
}

/// Adds `elems` to a sparse (possibly promoted) value; `created` counts as an update.
fn add_all(v: &mut Vec<u8>, elems: &[Bytes], created: bool) -> CmdResult {
    let mut updated = created;
    for e in elems {
        updated |= hll::add(v, e, hll::sparse_max_bytes()).map_err(corrupt)?;
    }
    if updated {
        hll::invalidate(v);
    }
    Ok(Reply::Int(i64::from(updated)))
}

/// The registers of the value at `key` (one byte each) merged into `max`, and whether it
/// is dense; Ok(None) for a missing key. A read lookup (hit/miss counted).
fn merge_key(db: &mut Db, key: &[u8], now: u64, max: &mut [u8]) -> Result<Option<bool>, CmdError> {
    db.with_str(key, now, true, |v| -> Result<bool, CmdError> {
        hll::check(v).map_err(not_hll)?;
        hll::merge_into(max, v).map_err(corrupt)?;
        Ok(hll::is_dense(v))
    })?
    .transpose()
}

fn pfcount(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let db = ctx.db();
    if argv.len() > 2 {
        let mut max = vec![0u8; hll::REGISTERS];
        for k in argv.iter().skip(1) {
            merge_key(db, k, now, &mut max)?;
        }
        return Ok(Reply::Int(hll::count_raw(&max) as i64));
    }
    let key = arg(argv, 1)?;
    let read = db.with_str(key, now, true, |v| -> Result<(u64, bool), CmdError> {
        hll::check(v).map_err(not_hll)?;
        match hll::cached(v) {
            Some(c) => Ok((c, false)),
            None => Ok((hll::count(v).map_err(corrupt)?, true)),
        }
    })?;
    let Some(read) = read else {
        return Ok(Reply::Int(0));
    };
    let (card, fresh) = read?;
    if fresh {
        // The count goes into the header (Redis changes the value on a read here), and as
        // in Redis that is a modification: WATCHers and tracking clients see it, and the
        // journal records `PFCOUNT key` so the append-only file and the replicas hold the
        // same bytes.
        if let Some(v) = db.str_mut(key, now, 0)? {
            hll::set_cached(v, card);
            ctx.shard.touch_effect(ctx.db, key, &[b"PFCOUNT", key]);
        }
    } else {
        db.set_enc(key, StrEnc::Raw);
    }
    Ok(Reply::Int(card as i64))
}

/// What each key's owner sends the coordinator: its registers, one byte each, and whether
/// the value is dense (None: no such key).
type Regs = Result<Option<(Vec<u8>, bool)>, CmdError>;

fn read_regs(w: &mut Engine, db: usize, key: &[u8]) -> Regs {
    let now = w.shard.now_ms;
    let mut max = vec![0u8; hll::REGISTERS];
    let dense = merge_key(w.shard.db_mut(db), key, now, &mut max)?;
    Ok(dense.map(|d| (max, d)))
}

/// The union of what the owners sent, in key order (the first error wins), and whether
/// any source was dense.
fn union(read: Vec<Regs>) -> Result<(Vec<u8>, bool), CmdError> {
    let mut max = vec![0u8; hll::REGISTERS];
    let mut dense = false;
    for r in read {
        if let Some((regs, d)) = r? {
            dense |= d;
            for (m, x) in max.iter_mut().zip(regs) {
                *m = (*m).max(x);
            }
        }
    }
    Ok((max, dense))
}

fn pfcount_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let db = ctx.client().db;
    let ticket = ctx.defer();
    let keys: Vec<Bytes> = argv.iter().skip(1).cloned().collect();
    gather(
        ctx.eng(),
        keys,
        Vec::new(),
        move |w: &mut Engine, k: &Bytes| read_regs(w, db, k),
        move |read| {
            let reply = match union(read) {
                Ok((max, _)) => Reply::Int(hll::count_raw(&max) as i64),
                Err(e) => e.into_reply(),
            };
            (reply, Vec::new())
        },
        move |w, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}

/// PFMERGE's write on the destination's shard: registers raised to `max` (the
/// destination, merged in as a source, was checked already). Keeps its TTL.
fn merge_store(db: &mut Db, dst: &[u8], max: &[u8], dense: bool, now: u64) -> Result<(), CmdError> {
    let existing = db.get_str_for_write(dst, now)?;
    let created = existing.is_none();
    let mut v = existing.map_or_else(hll::new_sparse, |b| b.to_vec());
    if dense {
        hll::to_dense(&mut v).map_err(corrupt)?;
    }
    for (i, &m) in max.iter().enumerate() {
        if m > 0 {
            // Redis ignores a failed register write here too.
            let _ = hll::set_register(&mut v, i, m, hll::sparse_max_bytes());
        }
    }
    hll::invalidate(&mut v);
    if created {
        db.set(dst, &v, 0, now);
        db.set_enc(dst, StrEnc::Raw);
    } else {
        db.set_keep_ttl_enc(dst, &v, StrEnc::Raw, now);
    }
    Ok(())
}

fn pfmerge(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let dst = arg(argv, 1)?;
    let now = ctx.now();
    let db = ctx.db();
    let mut max = vec![0u8; hll::REGISTERS];
    let mut dense = false;
    for k in argv.iter().skip(1) {
        dense |= merge_key(db, k, now, &mut max)?.unwrap_or(false);
    }
    merge_store(db, dst, &max, dense, now)?;
    Ok(Reply::Ok)
}

fn pfmerge_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let dst = arg(&argv, 1)?.clone();
    let db = ctx.client().db;
    let dst_owner = shard_of(&dst, ctx.eng().nshards);
    let ticket = ctx.defer();
    let keys: Vec<Bytes> = argv.iter().skip(1).cloned().collect();
    gather_noting(
        ctx.eng(),
        Some(Noting {
            db,
            argv: argv.to_vec(),
        }),
        keys,
        vec![dst_owner],
        move |w: &mut Engine, k: &Bytes| read_regs(w, db, k),
        move |read| {
            let (max, dense) = match union(read) {
                Ok(u) => u,
                Err(e) => return (e.into_reply(), Vec::new()),
            };
            let write: WriteFn = Box::new(move |tw: &mut Engine| {
                tw.shard.touch(db, &dst);
                let now = tw.shard.now_ms;
                let _ = merge_store(tw.shard.db_mut(db), &dst, &max, dense, now);
            });
            (Reply::Ok, vec![(dst_owner, write)])
        },
        move |w, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}

/// HyperLogLog family tests through the in-process kit (3 shards).
#[cfg(test)]
mod family {
    use crate::commands::testkit::{err, Kit};
    use crate::protocol::reply::Reply;

    #[test]
    fn add_count_merge() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["PFADD", "h"]), Reply::Int(1));
        assert_eq!(k.run(&["PFADD", "h"]), Reply::Int(0));
        assert_eq!(k.run(&["PFADD", "h", "a", "b", "c"]), Reply::Int(1));
        assert_eq!(k.run(&["PFADD", "h", "a"]), Reply::Int(0));
        assert_eq!(k.run(&["PFCOUNT", "h"]), Reply::Int(3));
        assert_eq!(k.run(&["PFCOUNT", "nokey"]), Reply::Int(0));
        k.run(&["PFADD", "{h}2", "c", "d"]);
        assert_eq!(k.run(&["PFMERGE", "{h}3", "{h}2"]), Reply::Ok);
        assert_eq!(k.run(&["PFCOUNT", "{h}3"]), Reply::Int(2));
        k.run(&["SET", "s", "hello"]);
        let wt = err("WRONGTYPE Key is not a valid HyperLogLog string value.");
        assert_eq!(k.run(&["PFADD", "s", "x"]), wt);
        assert_eq!(k.run(&["PFCOUNT", "s"]), wt);
        k.run(&["LPUSH", "l", "x"]);
        assert_eq!(
            k.run(&["PFADD", "l", "x"]),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }
}
