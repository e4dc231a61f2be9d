//! CLIENT PAUSE / UNPAUSE, server-wide: the pause's mode and end live in two process-wide
//! atomics; each shard reads them once per loop pass (after taking the pass's completions,
//! so a command sent after the PAUSE's reply always sees it) and parks the commands the
//! pause holds (`Conn::postponed`: the client stops there, its shard serves everyone else),
//! then runs them when the pause ends (its time passes or CLIENT UNPAUSE wakes every shard).
//! While paused, keys do not expire or get evicted (`Db::frozen`), as in Redis.
//!
//! What a pause holds is data on the command rows: `ALL` holds every command, `WRITE` the
//! `write` and `MAY_REPLICATE` ones (EVAL, FCALL, PUBLISH, PFCOUNT...), and an EXEC whose
//! queue holds one, as Redis 7.0 does. Replication links are never paused.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use crate::commands::table::{CommandSpec, MAY_REPLICATE, WRITE};

/// No pause, `WRITE`, `ALL`.
pub const NONE: u8 = 0;
pub const WRITES: u8 = 1;
pub const ALL: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(NONE);
/// Unix milliseconds the pause lasts until.
static END_MS: AtomicU64 = AtomicU64::new(0);
/// A FAILOVER, and a SHUTDOWN waiting for its replicas, hold writes until they end, apart
/// from CLIENT PAUSE (which CLIENT UNPAUSE does not end), as Redis's pause purposes are:
/// one bit each.
static HELD: AtomicU8 = AtomicU8::new(0);
const BY_FAILOVER: u8 = 1;
const BY_SHUTDOWN: u8 = 2;

fn hold_writes(bit: u8, on: bool) {
    if on {
        HELD.fetch_or(bit, Ordering::SeqCst);
    } else {
        HELD.fetch_and(!bit, Ordering::SeqCst);
    }
}

/// FAILOVER's pause of writes, on or off (the caller wakes the shards when it ends).
pub fn failover(on: bool) {
    hold_writes(BY_FAILOVER, on);
}

/// SHUTDOWN's pause of writes while it waits for lagging replicas, on or off (the caller
/// wakes the shards when it ends).
pub fn shutdown(on: bool) {
    hold_writes(BY_SHUTDOWN, on);
}

/// CLIENT PAUSE: the mode is the new one, the end the later of the two (Redis's rule).
pub fn start(mode: u8, end_ms: u64) {
    END_MS.fetch_max(end_ms, Ordering::SeqCst);
    MODE.store(mode, Ordering::SeqCst);
}

/// CLIENT UNPAUSE.
pub fn stop() {
    MODE.store(NONE, Ordering::SeqCst);
    END_MS.store(0, Ordering::SeqCst);
}

/// A pause was started and not stopped (it may have timed out): one atomic load.
#[inline]
pub fn maybe() -> bool {
    MODE.load(Ordering::Acquire) != NONE || HELD.load(Ordering::Acquire) != 0
}

/// The pause in force at `now_ms` (NONE once its time has passed), and its end (`u64::MAX`
/// for a FAILOVER's or SHUTDOWN's, which lasts until they end).
pub fn current(now_ms: u64) -> (u8, u64) {
    let mode = MODE.load(Ordering::Acquire);
    let end = END_MS.load(Ordering::Acquire);
    let client = if mode == NONE || now_ms >= end {
        (NONE, 0)
    } else {
        (mode, end)
    };
    if HELD.load(Ordering::Acquire) != 0 && client.0 != ALL {
        return (WRITES, u64::MAX);
    }
    client
}

/// Whether `mode` holds this command, of `flags` (`CommandSpec::flags_for`; `queued`: the
/// flags of what an EXEC would run).
pub fn holds(
    mode: u8,
    spec: &CommandSpec,
    flags: u32,
    mut queued: impl Iterator<Item = u32>,
) -> bool {
    match mode {
        ALL => true,
        WRITES => {
            (flags & (WRITE | MAY_REPLICATE) != 0 && spec.name != "exec")
                || (spec.name == "exec" && queued.any(|f| f & (WRITE | MAY_REPLICATE) != 0))
        }
        _ => false,
    }
}
