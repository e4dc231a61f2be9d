//! A software prefetch hint: asks the CPU to start loading a cache line that a later read
//! will need, so several cache misses overlap instead of stalling one after another (see
//! the look-ahead in `server::lookahead`).

/// Starts loading the cache line holding `ptr` into all cache levels. A hint only: no
/// effect on program state, and a no-op on architectures without the x86 intrinsic.
#[inline(always)]
pub fn prefetch(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults and reads nothing architecturally visible: any
    // address, even an invalid one, is allowed and only warms the cache. SSE is part of the
    // x86_64 baseline.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(ptr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}

/// Starts fetching the cache line holding `ptr` for writing (PREFETCHW where the CPU has
/// it), so a store stream into fresh memory does not stall on each line's fetch. A hint
/// only, as `prefetch`.
#[inline(always)]
pub fn prefetch_write(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: as `prefetch`: a prefetch never faults and changes no visible state.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(ptr as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
