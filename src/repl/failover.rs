//! FAILOVER (Redis 6.2+): a coordinated hand-over from this master to one of its replicas,
//! with Redis's arguments, replies, states and log lines, both as the master that hands
//! over and as the replica that takes over (`PSYNC <replid> <offset> FAILOVER`).
//!
//! Who runs what:
//! - the command, on the client's shard: checks, then pauses writes server-wide
//!   (`server::pause::failover`, apart from CLIENT PAUSE) and starts the barrier;
//! - the barrier, on every shard: each shard asks every shard (itself included), through
//!   its own mailbox, to push its journal. A job reaches a shard behind everything the
//!   sender posted before it, so once every shard has answered every shard, no write
//!   dispatched before the pause is still on its way to a journal; the per-shard maxima are
//!   the offsets the stream must reach;
//! - the wait, on the hub (shard 0, `master::failover_wait`): until the target (or any
//!   replica) acknowledges the merged offset, or the timeout (FORCE goes on anyway);
//! - the switch, on the home shard (also shard 0): this node follows the target and its
//!   PSYNC says FAILOVER (`repl::follow_failover`); the target's `+CONTINUE` (or full
//!   resync) ends the failover and writes resume; a refusal, or no answer, makes this node a
//!   master again (`abort`).
//!
//! The state is process-wide (INFO's `master_failover_state`), touched only by FAILOVER.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::commands::args::{is, text};
use crate::commands::table::{CommandSpec, Exec, KeySpec, ADMIN, NOSCRIPT, STALE};
use crate::engine::{Engine, Msg, ShardFn};
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::server::cmds::FrontCtx;
use crate::server::worker::{front, Worker};

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("failover", -1, ADMIN | NOSCRIPT | STALE, KeySpec::none(), Exec::Conn(crate::front!(failover)))
        .doc("server", "6.2.0", "Starts a coordinated failover from a server to one of its replicas.", "[TO host port [FORCE]] [ABORT] [TIMEOUT milliseconds]"),
];

#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Phase {
    #[default]
    None,
    /// Writes paused; waiting for the target to acknowledge everything.
    WaitForSync,
    /// This node follows the target and asked it to take over.
    InProgress,
}

#[derive(Default)]
struct State {
    phase: Phase,
    to: Option<(String, u16)>,
    force: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    phase: Phase::None,
    to: None,
    force: false,
});

fn state() -> std::sync::MutexGuard<'static, State> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// INFO replication's `master_failover_state`.
pub fn state_name() -> &'static str {
    match state().phase {
        Phase::None => "no-failover",
        Phase::WaitForSync => "waiting-for-sync",
        Phase::InProgress => "failover-in-progress",
    }
}

/// This node follows a FAILOVER target and waits for its answer.
pub fn in_progress() -> bool {
    state().phase == Phase::InProgress
}

/// FAILOVER [TO host port [FORCE]] [ABORT] [TIMEOUT milliseconds], checked in Redis's
/// order with Redis's errors.
fn failover(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if argv.len() == 2 && argv.get(1).is_some_and(|a| is(a, "abort")) {
        if state().phase == Phase::None {
            return Err(CmdError::err("No failover in progress."));
        }
        abort(ctx.w, "Failover manually aborted");
        return Ok(Reply::Ok);
    }
    let (mut timeout_ms, mut force, mut to) = (0i64, false, None::<(String, u16)>);
    let mut j = 1;
    while let Some(a) = argv.get(j) {
        if is(a, "timeout") && j + 1 < argv.len() && timeout_ms == 0 {
            let ms = argv
                .get(j + 1)
                .and_then(|v| parse_i64(v))
                .ok_or(CmdError::NotInteger)?;
            if ms <= 0 {
                return Err(CmdError::err("FAILOVER timeout must be greater than 0"));
            }
            timeout_ms = ms;
            j += 2;
        } else if is(a, "to") && j + 2 < argv.len() && to.is_none() {
            let port = argv
                .get(j + 2)
                .and_then(|v| parse_i64(v))
                .ok_or(CmdError::NotInteger)?;
            let host = argv.get(j + 1).map(|h| text(h)).unwrap_or_default();
            // A port no replica can have simply matches none (Redis reads it as a long).
            to = Some((host, u16::try_from(port).unwrap_or(0)));
            j += 3;
        } else if is(a, "force") && !force {
            force = true;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    if state().phase != Phase::None {
        return Err(CmdError::err("FAILOVER already in progress."));
    }
    if crate::repl::is_replica() {
        return Err(CmdError::err(
            "FAILOVER is not valid when server is a replica.",
        ));
    }
    if !super::master::any_replica() {
        return Err(CmdError::err("FAILOVER requires connected replicas."));
    }
    if force && (timeout_ms == 0 || to.is_none()) {
        return Err(CmdError::err(
            "FAILOVER with force option requires both a timeout and target HOST and IP.",
        ));
    }
    if let Some((host, port)) = &to {
        match super::master::find_replica(host, *port) {
            None => {
                return Err(CmdError::err(
                    "FAILOVER target HOST and PORT is not a replica.",
                ))
            }
            Some(false) => return Err(CmdError::err("FAILOVER target replica is not online.")),
            Some(true) => {
                crate::log::notice(&format!("FAILOVER requested to {host}:{port}."));
            }
        }
    } else {
        crate::log::notice("FAILOVER requested to any replica.");
    }
    {
        let mut st = state();
        st.phase = Phase::WaitForSync;
        st.to = to.clone();
        st.force = force;
    }
    crate::server::pause::failover(true);
    wake_shards(ctx.w);
    let deadline =
        (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms as u64));
    barrier(&mut ctx.w.eng, move |e, wants| {
        e.post(
            super::master::HUB,
            front(move |hw: &mut Worker| super::master::failover_wait(hw, wants, to, deadline)),
        );
    });
    Ok(Reply::Ok)
}

/// Every shard pushes its journal after everything any shard sent it before the pause
/// (see the module note); `done` gets, per shard, the journal offset the stream must reach.
pub(super) fn barrier(e: &mut Engine, done: impl FnOnce(&mut Engine, Vec<u64>) + 'static) {
    let n = e.nshards;
    let origin = e.id;
    let gid = e.gather_start(n, move |e: &mut Engine, per: Vec<Vec<u64>>| {
        let mut wants = vec![0u64; n];
        for cursors in per {
            for (w, c) in wants.iter_mut().zip(cursors) {
                *w = (*w).max(c);
            }
        }
        done(e, wants)
    });
    for b in 0..n {
        e.post(
            b,
            Msg::Control(Box::new(move |be: &mut Engine| {
                let jobs: Vec<(usize, ShardFn<u64>)> = (0..be.nshards)
                    .map(|s| {
                        let job: ShardFn<u64> = Box::new(super::master::push_now);
                        (s, job)
                    })
                    .collect();
                // Work jobs: behind a lock's parked batches too.
                be.fan_out(jobs, true, move |be, cursors: Vec<u64>| {
                    be.gather_reply(origin, gid, b, Box::new(cursors))
                });
            })),
        );
    }
}

/// The hub's wait ended: `to` is the caught-up target, `None` on the timeout.
pub(super) fn wait_over(w: &mut Worker, to: Option<(String, u16)>) {
    let target = {
        let mut st = state();
        if st.phase != Phase::WaitForSync {
            return;
        }
        match (to, st.force, st.to.clone()) {
            (Some(t), _, _) => {
                crate::log::notice(&format!(
                    "Failover target {}:{} is synced, failing over.",
                    t.0, t.1
                ));
                Some(t)
            }
            (None, true, Some(t)) => {
                crate::log::notice(&format!(
                    "FAILOVER to {}:{} time out exceeded, failing over.",
                    t.0, t.1
                ));
                Some(t)
            }
            _ => None,
        }
        .inspect(|t| {
            st.phase = Phase::InProgress;
            st.to = Some(t.clone());
        })
    };
    match target {
        Some((host, port)) => crate::repl::follow_failover(w, host, port),
        None => abort(w, "Replica never caught up before timeout"),
    }
}

/// Ends a failover that did not happen: the wait is dropped, or this node (which followed
/// the target) is a master again, and writes resume.
pub(super) fn abort(w: &mut Worker, why: &str) {
    let phase = {
        let st = state();
        match &st.to {
            Some((h, p)) => {
                crate::log::notice(&format!("FAILOVER to {h}:{p} aborted: {why}"));
            }
            None => crate::log::notice(&format!("FAILOVER to any replica aborted: {why}")),
        }
        st.phase
    };
    match phase {
        Phase::None => {}
        Phase::WaitForSync => {
            w.eng
                .post(super::master::HUB, front(super::master::failover_unwait));
            finish(w);
        }
        Phase::InProgress => {
            crate::log::notice("MASTER MODE enabled (failover aborted)");
            crate::repl::promote_then(w, Box::new(finish));
        }
    }
}

/// The failover is over (done or aborted): no state, writes resume on every shard.
pub(super) fn finish(w: &mut Worker) {
    {
        let mut st = state();
        st.phase = Phase::None;
        st.to = None;
        st.force = false;
    }
    crate::repl::failover_link_done();
    crate::server::pause::failover(false);
    wake_shards(w);
}

/// Every shard reads the pause again (and runs what it held, once it ended).
fn wake_shards(w: &mut Worker) {
    let me = w.eng.id;
    for s in (0..w.eng.nshards).filter(|&s| s != me) {
        w.eng.post(s, front(|tw: &mut Worker| tw.refresh_pause()));
    }
    w.refresh_pause();
}

/// `PSYNC <replid> <offset> FAILOVER` from this node's master (its FAILOVER chose us):
/// with our master's replication id, this replica becomes a master (as REPLICAOF NO ONE),
/// then serves the PSYNC, which continues from the old master's offset.
pub(super) fn psync_failover(ctx: &mut FrontCtx, id: Bytes, off: i64) -> CmdResult {
    if ctx.eng().tx.nested() {
        return Err(CmdError::err("Replica can't interact with the keyspace"));
    }
    let mine = crate::repl::master_fields().replid.clone();
    if id.as_ref() != mine.as_bytes() {
        return Err(CmdError::err("PSYNC FAILOVER replid must match my replid."));
    }
    crate::log::notice(&format!(
        "Failover request received for replid {}.",
        text(&id)
    ));
    if !crate::repl::is_replica() {
        return super::master::begin_sync(ctx.w, ctx.conn, Some((id, off)));
    }
    let (shard, Some(token)) = (ctx.w.eng.id, ctx.w.conn_token(ctx.conn)) else {
        return Ok(Reply::Raw(Bytes::new()));
    };
    crate::log::notice("MASTER MODE enabled (failover request)");
    // The connection becomes a replica link only after the promotion, which drops the
    // replicas this node had.
    crate::repl::promote_then(
        ctx.w,
        Box::new(move |hw: &mut Worker| {
            hw.eng.post(
                shard,
                front(move |tw: &mut Worker| {
                    let Some(idx) = tw.conn_by_token(token) else {
                        return;
                    };
                    if let Err(e) = super::master::begin_sync(tw, idx, Some((id, off))) {
                        if let Some(c) = tw.conns.get_mut(idx) {
                            c.push_reply(&e.into_reply());
                        }
                        tw.mark_dirty(idx);
                    }
                }),
            );
        }),
    );
    Ok(Reply::Raw(Bytes::new()))
}
