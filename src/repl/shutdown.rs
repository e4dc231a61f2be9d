//! SHUTDOWN's grace period for lagging replicas (Redis 7.0's `shutdown-timeout`): a master
//! (or a replica relaying its master's stream) with replicas that is asked to stop (SHUTDOWN without NOW, SIGTERM, SIGINT) first pauses
//! writes, then waits up to `shutdown-timeout` seconds until every replica has acknowledged
//! the stream up to its last write, so a restart or a failover that follows loses nothing
//! the replicas could still have taken. SHUTDOWN ABORT ends the wait and writes resume.
//!
//! Who runs what:
//! - `begin`, on the shard the request came in on (a client's, or shard 0 for a signal):
//!   pauses writes server-wide (`server::pause::shutdown`, apart from CLIENT PAUSE) and runs
//!   FAILOVER's journal barrier, so no write dispatched before the pause is still on its way
//!   to a journal when the offset to reach is taken;
//! - the wait, on the hub (shard 0, `master::shutdown_wait`): it asks the replicas for an ACK
//!   (REPLCONF GETACK) every 100 ms until all have acknowledged, or the deadline passes;
//! - `wait_over`, on the hub: logs the lagging replicas as Redis does and goes on with the
//!   shutdown proper (the final save when one is due, then every shard stops).
//!
//! The state is process-wide (INFO's `shutdown_in_milliseconds`), touched only by shutdown.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::commands::args::is;
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, ADMIN, ALLOW_BUSY, LOADING, NOSCRIPT, NO_MULTI, STALE,
};
use crate::commands::ConnCtx;
use crate::config::{SHUTDOWN_FORCE, SHUTDOWN_NOSAVE, SHUTDOWN_NOW, SHUTDOWN_SAVE};
use crate::engine::{Engine, Ticket};
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::server::worker::{front, Worker};

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("shutdown", -1, ADMIN | NOSCRIPT | LOADING | STALE | NO_MULTI | ALLOW_BUSY, KeySpec::none(), Exec::Conn(shutdown))
        .doc("server", "1.0.0", "Synchronously saves the database(s) to disk and shuts down the Redis server.",
             "[NOSAVE | SAVE] [NOW] [FORCE] [ABORT]"),
];

/// SHUTDOWN [NOSAVE | SAVE] [NOW] [FORCE] [ABORT], with Redis 7.0's argument checks.
fn shutdown(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let (mut flags, mut abort_it) = (0u8, false);
    for a in argv.iter().skip(1) {
        flags |= if is(a, "nosave") {
            SHUTDOWN_NOSAVE
        } else if is(a, "save") {
            SHUTDOWN_SAVE
        } else if is(a, "now") {
            SHUTDOWN_NOW
        } else if is(a, "force") {
            SHUTDOWN_FORCE
        } else if is(a, "abort") {
            abort_it = true;
            0
        } else {
            return Err(CmdError::Syntax);
        };
    }
    // ABORT stands alone; SAVE and NOSAVE exclude each other (Redis's "illegal combo").
    if (abort_it && flags != 0) || (flags & SHUTDOWN_SAVE != 0 && flags & SHUTDOWN_NOSAVE != 0) {
        return Err(CmdError::Syntax);
    }
    if abort_it {
        return if abort(ctx.eng()) {
            Ok(Reply::Ok)
        } else {
            Err(CmdError::err("No shutdown in progress."))
        };
    }
    // While a script is busy only SHUTDOWN NOSAVE goes ahead (Redis's shutdownCommand).
    if flags & SHUTDOWN_NOSAVE == 0 {
        if let Some(busy) = crate::engine::scripts::busy_text() {
            return Err(CmdError::coded(busy));
        }
    }
    crate::log::notice("User requested shutdown...");
    // As Redis: the caller waits (for lagging replicas, then the final save when SAVE asks
    // for it or save rules exist); the connection closes without a reply when the server
    // exits, and a shutdown that does not happen answers through the ticket.
    let ticket = ctx.defer();
    begin(ctx.eng(), flags, Some(ticket));
    Ok(Reply::Ok)
}

/// A signal's shutdown request (`Shared::sig_shutdown`, set by the signal thread), taken
/// up by shard 0's 100 ms tick: waits for replicas first, or saves (or stops) at once.
pub fn on_tick(e: &mut Engine) {
    if e.id != 0 {
        return;
    }
    let sig = e.shared.sig_shutdown.swap(0, Ordering::SeqCst);
    if sig != 0 {
        begin(e, sig & !crate::server::SIG_SHUTDOWN, None);
    }
}

/// The error SHUTDOWN callers get when the shutdown does not happen (Redis's text).
const FAILED: &str = "ERR Errors trying to SHUTDOWN. Check logs.";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    None,
    /// Writes paused, waiting for the replicas.
    Waiting,
    /// The wait is over; the final save (if any) runs, then the process exits.
    Finishing,
}

struct State {
    phase: Phase,
    /// The SHUTDOWN_* flags of the request that started the wait (later ones block on it,
    /// as in Redis, whatever their flags).
    flags: u8,
    /// Unix milliseconds the wait ends at.
    deadline_ms: u64,
    /// SHUTDOWN callers waiting for the outcome: closed when the server exits, answered
    /// with the error when it does not.
    blocked: Vec<Ticket>,
}

static STATE: Mutex<State> = Mutex::new(State {
    phase: Phase::None,
    flags: 0,
    deadline_ms: 0,
    blocked: Vec::new(),
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a shutdown with `flags` waits for replicas first: not with NOW, not with
/// `shutdown-timeout 0`, and only on a node that has replicas (a replica relaying its
/// master's stream to replicas of its own waits for them too, as in Redis).
pub fn would_wait(flags: u8) -> bool {
    flags & SHUTDOWN_NOW == 0
        && super::SETTINGS
            .shutdown_timeout_secs
            .load(Ordering::Relaxed)
            > 0
        && super::master::any_replica()
}

/// INFO server's `shutdown_in_milliseconds`: shown only while the wait runs.
pub fn remaining_ms() -> Option<u64> {
    let st = state();
    (st.phase == Phase::Waiting).then(|| st.deadline_ms.saturating_sub(crate::shard::now_ms()))
}

/// A shutdown request (SHUTDOWN with its `ticket`, or a signal's with none): waits for the
/// replicas first when `would_wait`, else goes on at once. A request while another is in
/// progress waits for that one's outcome.
pub fn begin(e: &mut Engine, flags: u8, ticket: Option<Ticket>) {
    let deadline = {
        let mut st = state();
        if st.phase != Phase::None {
            st.blocked.extend(ticket);
            return;
        }
        if !would_wait(flags) {
            drop(st);
            super::master::log_lagging(super::master::offset());
            proceed(e, flags, ticket);
            return;
        }
        let secs = super::SETTINGS
            .shutdown_timeout_secs
            .load(Ordering::Relaxed);
        st.phase = Phase::Waiting;
        st.flags = flags;
        st.deadline_ms = crate::shard::now_ms().saturating_add(secs.saturating_mul(1000));
        st.blocked = ticket.into_iter().collect();
        Instant::now() + Duration::from_secs(secs)
    };
    crate::log::notice("Waiting for replicas before shutting down.");
    crate::server::pause::shutdown(true);
    wake_shards(e);
    if super::is_replica() {
        // The stream is the master's, relayed as applied: what is relayed now is the
        // offset to reach (no journal of ours to wait for).
        e.post(
            super::master::HUB,
            front(move |hw: &mut Worker| super::master::shutdown_wait(hw, Vec::new(), deadline)),
        );
        return;
    }
    super::failover::barrier(e, move |e, wants| {
        e.post(
            super::master::HUB,
            front(move |hw: &mut Worker| super::master::shutdown_wait(hw, wants, deadline)),
        );
    });
}

/// The hub's wait ended (every replica acknowledged `target`, or the deadline passed): the
/// lagging replicas are logged and the shutdown goes on.
pub(super) fn wait_over(w: &mut Worker, target: u64) {
    let flags = {
        let mut st = state();
        if st.phase != Phase::Waiting {
            return;
        }
        st.phase = Phase::Finishing;
        st.flags
    };
    super::master::log_lagging(target);
    proceed(&mut w.eng, flags, None);
}

/// The shutdown proper: the final save when SAVE asks for it or save rules exist (NOSAVE
/// never), then every shard stops. A failed save answers `ticket` (and `failed` the rest).
fn proceed(e: &mut Engine, flags: u8, ticket: Option<Ticket>) {
    let saves = flags & SHUTDOWN_SAVE != 0
        || (flags & SHUTDOWN_NOSAVE == 0 && e.shared.tun.has_save_rules.load(Ordering::Relaxed));
    if !saves {
        e.request_shutdown();
        return;
    }
    e.shutdown_req = Some(crate::persist::cron::ShutdownReq {
        save: true,
        force: flags & SHUTDOWN_FORCE != 0,
        ticket,
        on_fail: Some(failed),
    });
    crate::persist::cron::shutdown(e);
}

/// The final save failed (without FORCE): the server keeps running, writes resume, and
/// every SHUTDOWN caller still waiting gets the error.
pub fn failed(e: &mut Engine) {
    let blocked = {
        let mut st = state();
        if st.phase == Phase::None {
            return;
        }
        st.phase = Phase::None;
        std::mem::take(&mut st.blocked)
    };
    resume(e, blocked);
}

/// SHUTDOWN ABORT: ends a wait for replicas (or a signal's request not yet taken up).
/// False when no shutdown is in progress.
pub fn abort(e: &mut Engine) -> bool {
    let blocked = {
        let mut st = state();
        if st.phase == Phase::Waiting {
            st.phase = Phase::None;
            Some(std::mem::take(&mut st.blocked))
        } else {
            None
        }
    };
    match blocked {
        Some(blocked) => {
            e.post(super::master::HUB, front(super::master::shutdown_unwait));
            resume(e, blocked);
        }
        None if e.shared.sig_shutdown.swap(0, Ordering::SeqCst) != 0 => {
            // A later signal is not "insisting" (a second Ctrl-C exits at once).
            e.shared.signalled.store(false, Ordering::SeqCst);
        }
        None => return false,
    }
    crate::log::notice("Shutdown manually aborted.");
    true
}

/// Writes resume on every shard and the waiting SHUTDOWN callers get the error.
fn resume(e: &mut Engine, blocked: Vec<Ticket>) {
    crate::server::pause::shutdown(false);
    e.shared.signalled.store(false, Ordering::SeqCst);
    wake_shards(e);
    for t in blocked {
        e.complete(t, Reply::Error(FAILED.into()));
    }
}

/// Every shard reads the pause again (and runs what it held, once it ended).
fn wake_shards(e: &mut Engine) {
    for s in 0..e.nshards {
        e.post(s, front(|tw: &mut Worker| tw.refresh_pause()));
    }
}
