//! A cheap cycle clock for per-command timing (INFO commandstats): the CPU's time-stamp
//! counter on x86_64 (a few ns per read, versus tens of ns for clock_gettime under a
//! hypervisor), calibrated once against the monotonic clock. Other architectures fall back
//! to `Instant`. Read from every shard thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The current tick count.
#[inline]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: RDTSC reads a counter register; it has no memory-safety preconditions and
        // every x86_64 CPU implements it.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// Measures the tick rate (about 10 ms, once per process). Called at startup before the
/// shard threads run; until then conversions assume one tick per nanosecond.
pub fn calibrate() {
    let _ = EPOCH.get_or_init(Instant::now);
    let (t0, i0) = (ticks(), Instant::now());
    std::thread::sleep(Duration::from_millis(10));
    let (t1, el) = (ticks(), i0.elapsed());
    let us = el.as_micros().max(1) as u64;
    // Ticks per microsecond, in 1/1024 units.
    let rate = (t1.saturating_sub(t0) * 1024 / us).max(1);
    // Nanoseconds per tick in 32.32 fixed point, so a conversion is a multiply, not a
    // 128-bit division (it runs twice per command for INFO commandstats).
    let q = ((1024u128 * 1000) << 32) / u128::from(rate);
    NS_PER_TICK_Q32.store(u64::try_from(q).unwrap_or(u64::MAX), Ordering::Relaxed);
}

/// Nanoseconds per tick, 32.32 fixed point (0 until calibrated: one tick per nanosecond).
static NS_PER_TICK_Q32: AtomicU64 = AtomicU64::new(0);

/// Converts a tick difference to nanoseconds.
#[inline]
pub fn to_nanos(ticks: u64) -> u64 {
    match NS_PER_TICK_Q32.load(Ordering::Relaxed) {
        0 => ticks,
        q => ((u128::from(ticks) * u128::from(q)) >> 32) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_ticks_track_wall_time() {
        calibrate();
        let t0 = ticks();
        std::thread::sleep(Duration::from_millis(20));
        let ns = to_nanos(ticks() - t0);
        assert!(
            (15_000_000..200_000_000).contains(&ns),
            "20ms measured as {ns}ns"
        );
    }
}
