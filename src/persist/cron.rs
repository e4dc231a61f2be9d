//! Automatic snapshots and the save before stopping, as Redis's serverCron and
//! prepareForShutdown. Runs on shard 0 (the rule check, the save a SIGTERM/SIGINT asks for)
//! or on the shard of the client that sent SHUTDOWN.
//!
//! - `check_rules` runs from shard 0's one-second tick: when some `save <seconds> <changes>`
//!   rule is met (at least `changes` writes since the last successful save, and more than
//!   `seconds` since it), a BGSAVE starts; after a failed one, the next try waits
//!   `BGSAVE_RETRY_DELAY` seconds. The write count is the sum of the shards' counters as
//!   each last published it (`ShardMem::dirty`, every 100 ms).
//! - `shutdown` saves (when asked, or when save rules exist) and then stops every shard. A
//!   running BGSAVE is stopped (`persist::State::cancel_bg`, as Redis kills its saving
//!   child); a SAVE or AOF rewrite in progress is waited for: the request stays on the
//!   worker and is tried again at each 100 ms tick. If the save fails the server keeps
//!   running, as Redis.

use std::sync::atomic::Ordering;

use super::save;
use crate::engine::Engine;
use crate::engine::Ticket;
use crate::protocol::reply::Reply;

/// Seconds before the save rules try again after a failed BGSAVE (Redis's
/// CONFIG_BGSAVE_RETRY_DELAY).
pub const BGSAVE_RETRY_DELAY: u64 = 5;

/// A shutdown waiting for its save.
pub struct ShutdownReq {
    /// Save even without save rules (SHUTDOWN SAVE).
    pub save: bool,
    /// Stop even if the save fails (SHUTDOWN ... FORCE).
    pub force: bool,
    /// Where the error goes when the save fails (SHUTDOWN); `None` for a signal.
    pub ticket: Option<Ticket>,
    /// Run when the save fails and the server keeps going (the front layer's clean-up:
    /// writes paused for the replicas resume, other SHUTDOWN callers get the error).
    pub on_fail: Option<fn(&mut Engine)>,
}

/// The save rule met now, if any: Redis's serverCron test.
pub fn rule_met(
    rules: &[(u64, u64)],
    changes: u64,
    since_save: u64,
    retry_ok: bool,
) -> Option<(u64, u64)> {
    if !retry_ok {
        return None;
    }
    rules
        .iter()
        .copied()
        .find(|&(secs, n)| changes >= n && since_save > secs)
}

/// Once a second on shard 0: starts a BGSAVE when a save rule is met.
pub fn check_rules(w: &mut Engine) {
    let sh = w.shared.clone();
    let st = &sh.persist;
    if !sh.tun.has_save_rules.load(Ordering::Relaxed) || st.saving.load(Ordering::SeqCst) {
        return;
    }
    let Some(rules) = sh.tun.save_rules.lock().ok().map(|r| r.clone()) else {
        return;
    };
    let dirty: u64 = sh
        .mem
        .iter()
        .enumerate()
        .map(|(i, m)| {
            if i == w.id {
                w.shard.dirty
            } else {
                m.dirty.load(Ordering::Relaxed)
            }
        })
        .sum();
    let changes = dirty.saturating_sub(st.dirty_at_save.load(Ordering::Relaxed));
    let now = super::unix_secs();
    let since = now.saturating_sub(st.last_save.load(Ordering::Relaxed));
    let retry_ok = !st.last_failed.load(Ordering::Relaxed)
        || now.saturating_sub(st.last_try.load(Ordering::Relaxed)) > BGSAVE_RETRY_DELAY;
    if let Some((secs, n)) = rule_met(&rules, changes, since, retry_ok) {
        crate::log::notice(&format!("{n} changes in {secs} seconds. Saving..."));
        let begun = save::bgsave(w, |_, res| {
            if let Err(e) = res {
                crate::log::warning(&e);
            }
        });
        if let Err(e) = begun {
            crate::log::verbose(&e);
        }
    }
}

/// Once a second on shard 0: starts an AOF rewrite when the AOF has grown by
/// `auto-aof-rewrite-percentage` since the last rewrite (or startup) and is over
/// `auto-aof-rewrite-min-size`, as Redis's serverCron does; not while a save or rewrite runs.
pub fn check_aof_growth(w: &mut Engine) {
    let sh = w.shared.clone();
    let aof = &sh.aof;
    if !aof.enabled.load(Ordering::Relaxed)
        || aof.rewriting.load(Ordering::SeqCst)
        || sh.persist.saving.load(Ordering::SeqCst)
    {
        return;
    }
    let cur = aof.current_size();
    let pct = sh.tun.auto_aof_pct.load(Ordering::Relaxed);
    let min = sh.tun.auto_aof_min.load(Ordering::Relaxed);
    let base = aof.rewrite_base.load(Ordering::Relaxed).max(1);
    if pct == 0 || cur <= min {
        return;
    }
    let growth = cur.saturating_sub(base).saturating_mul(100) / base;
    if growth >= pct {
        crate::log::notice(&format!(
            "Starting automatic rewriting of AOF on {growth}% growth"
        ));
        crate::commands::persistence::rewrite_aof(w, false, |_, res| {
            if let Err(e) = res {
                crate::log::warning(&e);
            }
        });
    }
}

/// Every 100 ms tick: any shard runs its waiting shutdown once no other save is running
/// (shard 0 takes a signal's request just before: `repl::shutdown::on_tick`).
pub fn tick(w: &mut Engine) {
    if w.shutdown_req.is_some() {
        shutdown(w);
    }
}

/// Runs the pending shutdown request: saves when asked or when save rules exist, then stops
/// every shard; on a failed save (without FORCE) answers the error and keeps serving.
pub fn shutdown(w: &mut Engine) {
    let Some(req) = w.shutdown_req.take() else {
        return;
    };
    let rules = w.shared.tun.has_save_rules.load(Ordering::Relaxed);
    if !req.save && !rules {
        w.request_shutdown();
        return;
    }
    let st = &w.shared.persist;
    if !st.try_begin() {
        // A BGSAVE is running: it is stopped (as Redis kills its saving child) and this
        // save follows at a next tick; another save (SAVE, an AOF rewrite) is waited for.
        if st.bg_in_progress.load(Ordering::SeqCst) && !st.cancel_bg.swap(true, Ordering::SeqCst) {
            crate::log::notice("A background save is running: stopping it for the shutdown.");
        }
        w.shutdown_req = Some(req);
        return;
    }
    st.cancel_bg.store(false, Ordering::SeqCst);
    crate::log::notice("Saving the final RDB snapshot before exiting.");
    // The shards stay locked after the snapshot: no write is acknowledged after the point
    // in time that is saved, as when Redis saves in SHUTDOWN.
    save::snapshot(w, true, move |w, parts, txid| {
        let res = save::save_parts(&w.shared, &parts, false);
        w.shared.persist.saving.store(false, Ordering::SeqCst);
        if res.is_ok() || req.force {
            if res.is_err() {
                crate::log::warning("Error trying to save the DB, exit anyway.");
            }
            w.request_shutdown();
            return;
        }
        crate::log::warning("Error trying to save the DB, can't exit.");
        crate::log::warning(
            "Errors trying to shut down the server. Check the logs for more information.",
        );
        let (ticket, on_fail) = (req.ticket, req.on_fail);
        save::release(w, txid, move |w| {
            match ticket {
                Some(t) => w.complete(
                    t,
                    Reply::Error("ERR Errors trying to SHUTDOWN. Check logs.".into()),
                ),
                // A later signal may try again (and a second Ctrl-C is not "insisting").
                None => w.shared.signalled.store(false, Ordering::SeqCst),
            }
            if let Some(f) = on_fail {
                f(w);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_as_server_cron() {
        let r = [(3600, 1), (300, 100), (60, 10000)];
        assert_eq!(rule_met(&r, 0, 5000, true), None);
        assert_eq!(rule_met(&r, 1, 3600, true), None, "strictly more seconds");
        assert_eq!(rule_met(&r, 1, 3601, true), Some((3600, 1)));
        assert_eq!(rule_met(&r, 150, 301, true), Some((300, 100)));
        assert_eq!(rule_met(&r, 150, 301, false), None, "retry delay");
        assert_eq!(rule_met(&[(1, 0)], 0, 2, true), Some((1, 0)));
    }
}
