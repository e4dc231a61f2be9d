//! A counting global allocator: wraps `std::alloc::System` and keeps the number of live heap
//! bytes, so INFO's `used_memory` is measured rather than guessed.
//!
//! Every thread adds and subtracts on its own cache-padded slot (a thread picks a slot once,
//! round robin, the first time it allocates), so the hot path is one uncontended relaxed
//! atomic add: no shared counter bounces between cores. A block freed on another thread
//! than the one that allocated it makes one slot go up and another down; only the sum over
//! all slots means anything, and `used()` reads it. Installed with `#[global_allocator]` in
//! `main.rs`; runs on every thread of the process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Number of counter slots; threads beyond this share slots (still correct, just contended).
const SLOTS: usize = 64;

/// One counter on its own cache line (128 bytes: adjacent-line prefetch pairs lines on x86).
#[repr(align(128))]
struct Slot(AtomicI64);

#[allow(clippy::declare_interior_mutable_const)]
const ZERO: Slot = Slot(AtomicI64::new(0));
static COUNTS: [Slot; SLOTS] = [ZERO; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Const-initialised with no destructor: reading it never allocates, so it is safe to
    // use from inside the allocator.
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

#[inline]
fn slot() -> &'static AtomicI64 {
    let i = MY_SLOT
        .try_with(|s| {
            let mut i = s.get();
            if i == usize::MAX {
                i = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
                s.set(i);
            }
            i
        })
        // During thread teardown the slot may be gone: fall back to slot 0.
        .unwrap_or(0);
    &COUNTS[i % SLOTS].0
}

#[inline]
fn add(n: usize) {
    slot().fetch_add(n as i64, Ordering::Relaxed);
}

#[inline]
fn sub(n: usize) {
    slot().fetch_sub(n as i64, Ordering::Relaxed);
}

/// Live heap bytes allocated through the global allocator (0 when it is not installed).
/// Also raises the recorded peak, which is therefore the highest value seen by a reader.
pub fn used() -> u64 {
    let sum: i64 = COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    let v = sum.max(0) as u64;
    PEAK.fetch_max(v, Ordering::Relaxed);
    v
}

/// The highest `used()` observed so far (sampled by INFO and every 100 ms by shard 0's
/// active-expire timer, so short spikes between samples are missed).
pub fn peak() -> u64 {
    PEAK.load(Ordering::Relaxed).max(used())
}

/// MEMORY PURGE: asks glibc's malloc to hand free memory at the top of its heaps and in its
/// free lists back to the kernel.
pub fn purge() {
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own arenas under their
    // locks; any thread may call it at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The counting allocator. `System` does the work; we only count bytes.
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// GlobalAlloc contract (layouts, pointers, sizes) is exactly System's; the counters are
// plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract for `layout`; we pass it through.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was returned by this allocator (hence by System) for `layout`.
        unsafe { System.dealloc(ptr, layout) };
        sub(layout.size());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr`/`layout` come from this allocator (hence System); the caller
        // guarantees `new_size` is valid for `layout`'s alignment.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // On failure the old block stays allocated and counted.
            sub(layout.size());
            add(new_size);
        }
        p
    }
}

/// Resident set size in bytes, from /proc/self/statm (0 if unreadable).
pub fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as u64
    } else {
        4096
    }
}

/// Total physical memory in bytes, from /proc/meminfo (0 if unreadable).
pub fn total_system_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_alloc_realloc_dealloc() {
        // Drive the allocator directly: the test binary does not install it globally, so
        // only our calls move the counters.
        let a = Counting;
        let before = used() as i64;
        let l = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: valid non-zero layout; the pointer is freed below with the same layout.
        let p = unsafe { a.alloc(l) };
        assert!(!p.is_null());
        assert_eq!(used() as i64 - before, 1000);
        // SAFETY: p came from `a.alloc(l)`; 5000 is a valid size for align 8.
        let q = unsafe { a.realloc(p, l, 5000) };
        assert!(!q.is_null());
        assert_eq!(used() as i64 - before, 5000);
        assert!(peak() >= 5000);
        let l2 = Layout::from_size_align(5000, 8).unwrap();
        // SAFETY: q is the live block of size 5000 from `a.realloc`.
        unsafe { a.dealloc(q, l2) };
        assert_eq!(used() as i64, before);
    }

    #[test]
    fn slots_are_padded() {
        assert_eq!(std::mem::align_of::<Slot>(), 128);
        assert!(rss() > 0);
    }
}
