//! Persistence commands (Redis's rdb.c parts): SAVE, LASTSAVE. SAVE runs on the connection's
//! shard: it locks every shard, each serialises its keys in parallel (`persist::save`), and
//! this shard writes the file with blocking calls, as Redis's SAVE blocks its server. The
//! other shards serve again as soon as their part is serialised.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::table::{CommandSpec, Exec, KeySpec, ADMIN, FAST, LOADING, NOSCRIPT, NO_MULTI, STALE};
use super::ConnCtx;
use crate::error::{CmdError, CmdResult};
use crate::persist::save;
use crate::protocol::reply::Reply;

const SV: &str = "server";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("save", 1, ADMIN | NOSCRIPT | NO_MULTI, KeySpec::none(), Exec::Conn(save))
        .doc(SV, "1.0.0", "Synchronously save the dataset to disk", ""),
    CommandSpec::new("lastsave", 1, LOADING | STALE | FAST, KeySpec::none(), Exec::Conn(lastsave))
        .doc(SV, "1.0.0", "Get the UNIX time stamp of the last successful save to disk", ""),
];

/// Marks a save as running; Redis's error when one already is.
pub fn begin_save(ctx: &mut ConnCtx) -> Result<(), CmdError> {
    if ctx.w.shared.persist.saving.swap(true, Ordering::SeqCst) {
        return Err(CmdError::err("Background save already in progress"));
    }
    Ok(())
}

fn save(ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    begin_save(ctx)?;
    let ticket = ctx.defer();
    save::snapshot(ctx.w, false, move |w, parts, _| {
        let res = save::save_parts(&w.shared, &parts);
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

fn lastsave(ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    let t = ctx.w.shared.persist.last_save.load(Ordering::Relaxed);
    Ok(Reply::Int(t as i64))
}
