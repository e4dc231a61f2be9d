//! The sentinel's timing knobs (`SENTINEL DEBUG`): the periods and timeouts Redis Sentinel
//! lets a test shrink at runtime. Process-wide atomics (one sentinel per process), read by
//! every sentinel thread; written only by `SENTINEL DEBUG` on a client thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// One knob: its name as `SENTINEL DEBUG` prints it, its value in ms, and whether shardis
/// uses it (the script ones are stored and reported only: shardis runs no scripts).
pub struct Knob {
    pub name: &'static str,
    ms: AtomicU64,
    pub used: bool,
}

impl Knob {
    const fn new(name: &'static str, ms: u64, used: bool) -> Knob {
        Knob {
            name,
            ms: AtomicU64::new(ms),
            used,
        }
    }
    pub fn ms(&self) -> u64 {
        self.ms.load(Ordering::Relaxed)
    }
    pub fn get(&self) -> Duration {
        Duration::from_millis(self.ms())
    }
    pub fn set(&self, ms: u64) {
        self.ms.store(ms, Ordering::Relaxed);
    }
}

pub static INFO_PERIOD: Knob = Knob::new("INFO-PERIOD", 10_000, true);
pub static PING_PERIOD: Knob = Knob::new("PING-PERIOD", 1000, true);
pub static ASK_PERIOD: Knob = Knob::new("ASK-PERIOD", 1000, true);
pub static PUBLISH_PERIOD: Knob = Knob::new("PUBLISH-PERIOD", 2000, true);
pub static DEFAULT_DOWN_AFTER: Knob = Knob::new("DEFAULT-DOWN-AFTER", 30_000, true);
pub static DEFAULT_FAILOVER_TIMEOUT: Knob = Knob::new("DEFAULT-FAILOVER-TIMEOUT", 180_000, true);
pub static TILT_TRIGGER: Knob = Knob::new("TILT-TRIGGER", 2000, true);
pub static TILT_PERIOD: Knob = Knob::new("TILT-PERIOD", 30_000, true);
pub static SLAVE_RECONF_TIMEOUT: Knob = Knob::new("SLAVE-RECONF-TIMEOUT", 10_000, true);
pub static MIN_LINK_RECONNECT_PERIOD: Knob = Knob::new("MIN-LINK-RECONNECT-PERIOD", 15_000, false);
pub static ELECTION_TIMEOUT: Knob = Knob::new("ELECTION-TIMEOUT", 10_000, true);
pub static SCRIPT_MAX_RUNTIME: Knob = Knob::new("SCRIPT-MAX-RUNTIME", 60_000, false);
pub static SCRIPT_RETRY_DELAY: Knob = Knob::new("SCRIPT-RETRY-DELAY", 30_000, false);

/// In `SENTINEL DEBUG`'s order.
pub static ALL: [&Knob; 13] = [
    &INFO_PERIOD,
    &PING_PERIOD,
    &ASK_PERIOD,
    &PUBLISH_PERIOD,
    &DEFAULT_DOWN_AFTER,
    &DEFAULT_FAILOVER_TIMEOUT,
    &TILT_TRIGGER,
    &TILT_PERIOD,
    &SLAVE_RECONF_TIMEOUT,
    &MIN_LINK_RECONNECT_PERIOD,
    &ELECTION_TIMEOUT,
    &SCRIPT_MAX_RUNTIME,
    &SCRIPT_RETRY_DELAY,
];

pub fn find(name: &str) -> Option<&'static Knob> {
    ALL.iter()
        .copied()
        .find(|k| k.name.eq_ignore_ascii_case(name))
}

/// The INFO period while the master is down or failing over (Redis: 1 s, fixed).
pub const INFO_PERIOD_FAILOVER: Duration = Duration::from_millis(1000);
