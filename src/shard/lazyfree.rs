//! Lazy free: big values and whole flushed databases are dropped on one background thread
//! (per process, started on first use), so UNLINK and FLUSHALL/FLUSHDB ASYNC return in
//! microseconds however much they free (Redis's `lazyfree.c` and its bio thread).
//!
//! A shard hands over an owned, `Send` value; the thread only drops it. The counting
//! allocator (`runtime::alloc`) sums every thread's counter, so `used_memory` falls as the
//! thread frees, even though the blocks were allocated on a shard thread. Values of at most
//! [`LAZYFREE_THRESHOLD`] elements are freed inline, as in Redis: the hand-over would cost
//! more than the free.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;

use super::value::Value;

/// Values with more elements than this go to the background thread (Redis's
/// LAZYFREE_THRESHOLD).
pub const LAZYFREE_THRESHOLD: usize = 64;

type Garbage = Box<dyn Send>;
type Queue = Sender<(Garbage, u64)>;

/// `lazyfree-lazy-user-del`: DEL frees as UNLINK does.
static USER_DEL: AtomicBool = AtomicBool::new(false);
/// `lazyfree-lazy-user-flush`: FLUSHALL/FLUSHDB without SYNC or ASYNC free as ASYNC.
static USER_FLUSH: AtomicBool = AtomicBool::new(false);

pub fn set_user_del(on: bool) {
    USER_DEL.store(on, Ordering::Relaxed);
}

pub fn user_del() -> bool {
    USER_DEL.load(Ordering::Relaxed)
}

pub fn set_user_flush(on: bool) {
    USER_FLUSH.store(on, Ordering::Relaxed);
}

pub fn user_flush() -> bool {
    USER_FLUSH.load(Ordering::Relaxed)
}

/// Objects handed over and not freed yet (INFO `lazyfree_pending_objects`).
static PENDING: AtomicU64 = AtomicU64::new(0);
/// Objects the thread has freed (INFO `lazyfreed_objects`).
static FREED: AtomicU64 = AtomicU64::new(0);

/// The thread's queue (`Sender` is `Sync`: every shard sends on it directly); `None` when
/// the thread could not be started.
static QUEUE: OnceLock<Option<Queue>> = OnceLock::new();

fn start() -> Option<Queue> {
    let (tx, rx) = channel::<(Garbage, u64)>();
    let spawned = crate::runtime::sys::spawn_helper("lazyfree", move || {
        for (g, n) in rx {
            drop(g);
            PENDING.fetch_sub(n, Ordering::Relaxed);
            FREED.fetch_add(n, Ordering::Relaxed);
        }
    });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            crate::log::warning(&format!(
                "lazyfree thread not started ({e}): freeing inline"
            ));
            None
        }
    }
}

/// Frees `g` on the lazy-free thread (inline if the thread could not be started).
/// `objects` is what INFO counts for it.
pub fn free_later<T: Send + 'static>(g: T, objects: u64) {
    let g: Garbage = Box::new(g);
    PENDING.fetch_add(objects, Ordering::Relaxed);
    let left = match QUEUE.get_or_init(start) {
        Some(q) => q.send((g, objects)).err().map(|e| e.0 .0),
        None => Some(g),
    };
    if let Some(g) = left {
        drop(g);
        PENDING.fetch_sub(objects, Ordering::Relaxed);
    }
}

/// Drops a value taken out of the keyspace: in the background when it is big.
pub fn free_value(v: Value) {
    if free_effort(&v) > LAZYFREE_THRESHOLD {
        free_later(v, 1);
    }
}

/// About how many allocations freeing `v` walks (Redis's `lazyfreeGetFreeEffort`).
pub fn free_effort(v: &Value) -> usize {
    match v {
        Value::Str(_) => 1,
        Value::List(l) => l.len(),
        Value::Hash(h) => h.len(),
        Value::Set(s) => s.len(),
        Value::ZSet(z) => z.len(),
        Value::Stream(x) => x.len() + x.groups.len(),
    }
}

/// INFO `lazyfree_pending_objects`.
pub fn pending() -> u64 {
    PENDING.load(Ordering::Relaxed)
}

/// INFO `lazyfreed_objects`.
pub fn freed() -> u64 {
    FREED.load(Ordering::Relaxed)
}

/// Waits (briefly) until everything handed over so far is freed. Tests only.
#[cfg(test)]
pub fn drain_for_test() {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while pending() > 0 && std::time::Instant::now() < until {
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::list::{End, List};

    #[test]
    fn big_values_go_to_the_thread_and_get_freed() {
        let mut l = List::new();
        for i in 0..1000 {
            l.push(End::Tail, bytes::Bytes::from(format!("e{i}")));
        }
        let before = freed();
        free_value(Value::List(Box::new(l)));
        drain_for_test();
        // The counters are process-wide (other tests free too) and the thread counts a
        // free after it ends: poll for ours with a deadline.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while freed() <= before && std::time::Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(freed() > before);
    }
}
