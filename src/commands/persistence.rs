//! Persistence commands (Redis's rdb.c parts): SAVE, BGSAVE, LASTSAVE. Both saves are
//! coordinated from the connection's shard: every shard marks the moment under a brief
//! all-shard lock and then serialises its keys a slice per loop pass while serving
//! (`persist::save`, `shard::snapshot`). SAVE then writes the file on this shard with
//! blocking calls; BGSAVE answers at the moment and hands the bytes to a std thread that
//! writes them, so no shard waits for the disk.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::table::{
    CommandSpec, Exec, KeySpec, ADMIN, CAT_ADMIN, CAT_DANGEROUS, FAST, LOADING, NOSCRIPT,
    NO_ASYNC_LOADING, NO_MULTI, STALE,
};
use super::ConnCtx;
use crate::engine::Engine;
use crate::error::{CmdError, CmdResult};
use crate::persist::save;
use crate::protocol::reply::Reply;

const SV: &str = "server";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("save", 1, ADMIN | NOSCRIPT | NO_ASYNC_LOADING | NO_MULTI, KeySpec::none(), Exec::Conn(save))
        .doc(SV, "1.0.0", "Synchronously save the dataset to disk", ""),
    CommandSpec::new("bgsave", -1, ADMIN | NOSCRIPT | NO_ASYNC_LOADING, KeySpec::none(), Exec::Conn(bgsave))
        .doc(SV, "1.0.0", "Asynchronously save the dataset to disk", "[SCHEDULE]"),
    CommandSpec::new("bgrewriteaof", 1, ADMIN | NOSCRIPT | NO_ASYNC_LOADING, KeySpec::none(), Exec::Conn(bgrewriteaof))
        .doc(SV, "1.0.0", "Asynchronously rewrite the append-only file to disk", ""),
    CommandSpec::new("lastsave", 1, LOADING | STALE | FAST, KeySpec::none(), Exec::Conn(lastsave))
        .acl(CAT_ADMIN | CAT_DANGEROUS)
        .doc(SV, "1.0.0", "Get the UNIX time stamp of the last successful save to disk", ""),
];

/// Marks a save as running; Redis's error when one already is.
pub fn begin_save(ctx: &mut ConnCtx) -> Result<(), CmdError> {
    if !ctx.eng().shared.persist.try_begin() {
        return Err(CmdError::err("Background save already in progress"));
    }
    Ok(())
}

fn save(ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    begin_save(ctx)?;
    let ticket = ctx.defer();
    save::snapshot(ctx.eng(), false, move |w, parts, _| {
        let res = save::save_parts(&w.shared, &parts, false);
        w.shared.persist.saving.store(false, Ordering::SeqCst);
        // Redis answers a failed SAVE with a bare `-ERR` (the reason is in the log).
        let reply = match res {
            Ok(()) => Reply::Ok,
            Err(_) => Reply::Error("ERR".into()),
        };
        w.complete(ticket, reply);
    });
    Ok(Reply::Ok)
}

/// BGSAVE [SCHEDULE]: the snapshot as SAVE takes it, written by a background thread. The
/// reply comes once the point in time is taken (Redis replies after its fork). SCHEDULE
/// changes nothing: it only defers a save behind an AOF rewrite, and there is none.
fn bgsave(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    match argv.get(1..).unwrap_or_default() {
        [] => {}
        [a] if a.eq_ignore_ascii_case(b"schedule") => {}
        _ => return Err(CmdError::Syntax),
    }
    let ticket = ctx.defer();
    let begun = save::bgsave(ctx.eng(), move |w, res| {
        let reply = match res {
            Ok(()) => Reply::Status("Background saving started".into()),
            Err(e) => Reply::Error(format!("ERR {e}")),
        };
        w.complete(ticket, reply);
    });
    if let Err(e) = begun {
        ctx.eng().complete(ticket, Reply::Error(format!("ERR {e}")));
    }
    Ok(Reply::Ok)
}

fn lastsave(ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    let t = ctx.eng().shared.persist.last_save.load(Ordering::Relaxed);
    Ok(Reply::Int(t as i64))
}

/// BGREWRITEAOF: see `rewrite_aof`. With `appendonly no` it writes the base and a manifest
/// only (as Redis 7 does): a later start with `appendonly yes` loads it.
fn bgrewriteaof(ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    let ticket = ctx.defer();
    rewrite_aof(ctx.eng(), false, move |w, r| {
        let reply = match r {
            Ok(()) => Reply::Status("Background append only file rewriting started".into()),
            Err(e) => Reply::Error(format!("ERR {e}")),
        };
        w.complete(ticket, reply);
    });
    Ok(Reply::Ok)
}

/// A rewrite: a snapshot under the all-shard lock becomes the next base; at that same moment
/// every shard starts its next log (`persist::aof`), and a std thread writes the base and the
/// new manifest. With `enabling` (CONFIG SET appendonly yes) the shards open their first
/// logs instead. `started` gets the outcome once the point in time is taken.
pub fn rewrite_aof(
    w: &mut Engine,
    enabling: bool,
    started: impl FnOnce(&mut Engine, Result<(), String>) + Send + 'static,
) {
    use crate::persist::aof;
    let shared = w.shared.clone();
    if shared.aof.rewriting.swap(true, Ordering::SeqCst) {
        started(
            w,
            Err("Background append only file rewriting already in progress".into()),
        );
        return;
    }
    // With the files off (and not being turned on) only a base and its manifest are
    // written, after whatever sequence the directory already has.
    let off = !enabling && !shared.aof.enabled.load(Ordering::SeqCst);
    let mut old = shared.aof.seq.load(Ordering::SeqCst);
    if off {
        old = old.max(aof::last_seq(&shared.cfg).unwrap_or(0));
    }
    let seq = old + 1;
    let prepared = if enabling || off {
        std::fs::create_dir_all(aof::dir(&shared.cfg)).map_err(|e| {
            format!(
                "Can't create the append-only directory {}: {e}",
                shared.cfg.appenddirname
            )
        })
    } else {
        aof::begin_rewrite(&shared.cfg, aof::current_base(&shared.cfg), old, seq)
    };
    if let Err(e) = prepared {
        shared.aof.rewriting.store(false, Ordering::SeqCst);
        crate::log::warning(&format!("Can't rewrite the append only file: {e}"));
        started(w, Err(format!("Can't rewrite the append only file: {e}")));
        return;
    }
    // At the snapshot's moment, under the all-shard lock, every shard switches to its next
    // log; the shards then serialise the base while serving (`save::stepped`).
    let at_moment: save::AtMoment = std::sync::Arc::new(move |tw: &mut Engine| {
        let cfg = tw.shared.cfg.clone();
        let r = match tw.aof.as_mut() {
            Some(_) => aof::switch(tw, &cfg, seq),
            None if enabling => {
                crate::shard::journal::enable(
                    &mut tw.shard,
                    crate::shard::journal::DEFAULT_BACKLOG,
                );
                let from = tw.shard.journal.as_ref().map_or(1, |j| j.next());
                aof::Writer::open(&cfg, tw.shared.aof.clone(), tw.id, seq, from).map(|wr| {
                    if let Some(j) = tw.shard.journal.as_mut() {
                        j.pin = Some(from);
                    }
                    tw.set_aof(Some(wr));
                })
            }
            None => Ok(()),
        };
        r.map(|()| 0)
    });
    let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failed2 = failed.clone();
    // The base is streamed to its file as the shards serialise it (as BGSAVE's file).
    let (tx, rx) = std::sync::mpsc::channel::<save::Piece>();
    let shared = w.shared.clone();
    let nshards = w.nshards;
    let writer_failed = failed.clone();
    let spawned = crate::runtime::sys::spawn_helper("aof-rewrite", move || {
        let checksum = shared.tun.rdbchecksum.load(Ordering::Relaxed);
        let base = aof::base_path(&shared.cfg, seq);
        let (res, _) =
            save::write_streamed(&base, rx, nshards, checksum, crate::persist::unix_secs(), 0);
        if writer_failed.load(Ordering::SeqCst) {
            // The logs never switched: nothing to install (already reported).
            return;
        }
        let r = res.and_then(|size| aof::install_base(&shared.cfg, &shared.aof, seq, size));
        match &r {
            Ok(()) => crate::log::notice("Background AOF rewrite finished successfully"),
            Err(e) => crate::log::warning(&format!("Background AOF rewrite failed: {e}")),
        }
        shared
            .aof
            .last_rewrite_ok
            .store(r.is_ok(), Ordering::SeqCst);
        shared.aof.rewrites.fetch_add(1, Ordering::SeqCst);
        shared.aof.rewriting.store(false, Ordering::SeqCst);
    });
    if let Err(e) = spawned {
        let e = format!("Can't rewrite the append only file: {e}");
        crate::log::warning(&e);
        w.shared.aof.last_rewrite_ok.store(false, Ordering::SeqCst);
        w.shared.aof.rewriting.store(false, Ordering::SeqCst);
        started(w, Err(e));
        return;
    }
    let end = tx.clone();
    save::stepped_to(
        w,
        Some(at_moment),
        Some(tx),
        move |w: &mut Engine, res: Vec<Result<u64, String>>| {
            let shared = w.shared.clone();
            if let Some(Err(e)) = res.into_iter().find(|r| r.is_err()) {
                crate::log::warning(&format!("Can't rewrite the append only file: {e}"));
                failed.store(true, Ordering::SeqCst);
                shared.aof.last_rewrite_ok.store(false, Ordering::SeqCst);
                shared.aof.rewriting.store(false, Ordering::SeqCst);
                started(w, Err(e));
                return;
            }
            shared.aof.seq.store(seq, Ordering::SeqCst);
            if enabling {
                shared.aof.enabled.store(true, Ordering::SeqCst);
            }
            crate::log::notice("Background append only file rewriting started");
            started(w, Ok(()));
        },
        move |_: &mut Engine, parts, _| {
            // After a failed moment the writer sees the channel close without an end.
            if !failed2.load(Ordering::SeqCst) {
                let _ = end.send(save::Piece::End(parts));
            }
        },
    );
}

/// CONFIG SET appendonly no: every shard stops appending (the files stay as they are).
pub fn stop_aof(w: &mut Engine) {
    use crate::engine::ShardFn;
    w.shared.aof.enabled.store(false, Ordering::SeqCst);
    crate::persist::aof_off();
    let jobs = (0..w.nshards)
        .map(|s| {
            let job: ShardFn<()> = Box::new(move |tw: &mut Engine| {
                crate::persist::aof::stop(tw);
                if let Some(j) = tw.shard.journal.as_mut() {
                    j.pin = None;
                }
            });
            (s, job)
        })
        .collect();
    w.fan_out(jobs, false, |_, _: Vec<()>| {});
    crate::log::notice("Background append only file writing stopped (appendonly no)");
}
