//! Lock-free single-producer single-consumer queues between every pair of shards, plus the
//! eventfd wakeup that a sender rings only when the receiving shard is asleep.
//!
//! Each shard thread owns one `Endpoint`: the producer side of its queue to every other shard
//! and the consumer side of every other shard's queue to it. Nothing here takes a lock: a
//! queue is a power-of-two ring indexed by two atomic counters, written by exactly one thread
//! and read by exactly one other.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[repr(align(64))]
struct Padded(AtomicUsize);

struct Queue<T> {
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
    /// Next slot the consumer reads (written only by the consumer).
    head: Padded,
    /// Next slot the producer writes (written only by the producer).
    tail: Padded,
}

// SAFETY: a slot is written by the single producer before it publishes `tail` with Release,
// and read by the single consumer after it observes `tail` with Acquire; the consumer gives
// the slot back by publishing `head` with Release. No slot is ever accessed by both sides at
// once, so sharing the queue between the two threads is sound when `T: Send`.
unsafe impl<T: Send> Sync for Queue<T> {}
// SAFETY: see above; the queue only moves `T` values between threads.
unsafe impl<T: Send> Send for Queue<T> {}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        let mut head = *self.head.0.get_mut();
        let tail = *self.tail.0.get_mut();
        while head != tail {
            // SAFETY: slots in head..tail were written and never read; we own the queue
            // exclusively here (`&mut self`).
            unsafe { (*self.slots[head & self.mask].get()).assume_init_drop() };
            head = head.wrapping_add(1);
        }
    }
}

/// The sending half of one queue.
pub struct Producer<T> {
    q: Arc<Queue<T>>,
    cached_head: usize,
}

/// The receiving half of one queue.
pub struct Consumer<T> {
    q: Arc<Queue<T>>,
}

/// Creates a bounded SPSC queue with `capacity` rounded up to a power of two.
pub fn spsc<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let slots = (0..cap)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect::<Vec<_>>()
        .into_boxed_slice();
    let q = Arc::new(Queue {
        slots,
        mask: cap - 1,
        head: Padded(AtomicUsize::new(0)),
        tail: Padded(AtomicUsize::new(0)),
    });
    (
        Producer {
            q: q.clone(),
            cached_head: 0,
        },
        Consumer { q },
    )
}

impl<T> Producer<T> {
    /// Pushes `v`, or gives it back when the queue is full.
    pub fn push(&mut self, v: T) -> Result<(), T> {
        let tail = self.q.tail.0.load(Ordering::Relaxed);
        if tail.wrapping_sub(self.cached_head) > self.q.mask {
            self.cached_head = self.q.head.0.load(Ordering::Acquire);
            if tail.wrapping_sub(self.cached_head) > self.q.mask {
                return Err(v);
            }
        }
        // SAFETY: the slot at `tail` is free (the consumer has moved past it, checked above)
        // and only this producer writes slots.
        unsafe { (*self.q.slots[tail & self.q.mask].get()).write(v) };
        self.q.tail.0.store(tail.wrapping_add(1), Ordering::Release);
        Ok(())
    }
}

impl<T> Consumer<T> {
    /// Pops the oldest value, if any.
    pub fn pop(&mut self) -> Option<T> {
        let head = self.q.head.0.load(Ordering::Relaxed);
        let tail = self.q.tail.0.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        // SAFETY: `head != tail`, so the producer has published this slot (Acquire above)
        // and will not touch it again until we advance `head`.
        let v = unsafe { (*self.q.slots[head & self.q.mask].get()).assume_init_read() };
        self.q.head.0.store(head.wrapping_add(1), Ordering::Release);
        Some(v)
    }

    /// True when a value is waiting (used before going to sleep).
    pub fn is_empty(&self) -> bool {
        self.q.head.0.load(Ordering::Relaxed) == self.q.tail.0.load(Ordering::Acquire)
    }
}

/// A shard's wakeup: an eventfd its ring reads, and a flag saying it is about to sleep.
pub struct Waker {
    fd: OwnedFd,
    sleeping: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: plain eventfd(2) call; the returned fd is checked and then owned.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: `fd` is a fresh, valid descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            sleeping: AtomicBool::new(false),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Rings the eventfd unconditionally (shutdown, tests).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Rings only if the owner said it is going to sleep.
    fn wake_if_sleeping(&self) {
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            self.wake();
        }
    }
}

/// One shard's view of the mesh.
pub struct Endpoint<T> {
    pub id: usize,
    outboxes: Vec<Option<Producer<T>>>,
    inboxes: Vec<Option<Consumer<T>>>,
    overflow: Vec<VecDeque<T>>,
    dirty: Vec<bool>,
    wakers: Vec<Arc<Waker>>,
}

/// Builds the full mesh for `n` shards: one endpoint per shard, `n*(n-1)` queues.
pub fn mesh<T>(n: usize, capacity: usize) -> io::Result<Vec<Endpoint<T>>> {
    let wakers = (0..n)
        .map(|_| Waker::new().map(Arc::new))
        .collect::<io::Result<Vec<_>>>()?;
    let mut eps: Vec<Endpoint<T>> = (0..n)
        .map(|id| Endpoint {
            id,
            outboxes: (0..n).map(|_| None).collect(),
            inboxes: (0..n).map(|_| None).collect(),
            overflow: (0..n).map(|_| VecDeque::new()).collect(),
            dirty: vec![false; n],
            wakers: wakers.clone(),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (p, c) = spsc(capacity);
                eps[from].outboxes[to] = Some(p);
                eps[to].inboxes[from] = Some(c);
            }
        }
    }
    Ok(eps)
}

impl<T> Endpoint<T> {
    pub fn shards(&self) -> usize {
        self.wakers.len()
    }

    /// This shard's own waker (its ring keeps a read armed on the eventfd).
    pub fn waker(&self) -> &Arc<Waker> {
        &self.wakers[self.id]
    }

    /// Queues `msg` for shard `to` (never `self.id`). Wakeups go out in `flush`.
    pub fn send(&mut self, to: usize, msg: T) {
        let Some(Some(out)) = self.outboxes.get_mut(to) else {
            return;
        };
        let pending = &mut self.overflow[to];
        if pending.is_empty() {
            if let Err(m) = out.push(msg) {
                pending.push_back(m);
            }
        } else {
            pending.push_back(msg);
        }
        self.dirty[to] = true;
    }

    /// Retries overflowed messages and wakes every shard we sent to that is asleep.
    /// Returns true while some messages are still waiting for queue space.
    pub fn flush(&mut self) -> bool {
        let mut backlog = false;
        for to in 0..self.outboxes.len() {
            if let Some(out) = self.outboxes[to].as_mut() {
                let pending = &mut self.overflow[to];
                while let Some(m) = pending.pop_front() {
                    if let Err(m) = out.push(m) {
                        pending.push_front(m);
                        backlog = true;
                        break;
                    }
                }
            }
            if std::mem::take(&mut self.dirty[to]) {
                self.wakers[to].wake_if_sleeping();
                if !self.overflow[to].is_empty() {
                    self.dirty[to] = true;
                }
            }
        }
        backlog
    }

    /// Pops every waiting message from every peer, calling `f` on each.
    pub fn recv_all(&mut self, mut f: impl FnMut(usize, T)) -> usize {
        let mut n = 0;
        for from in 0..self.inboxes.len() {
            if let Some(inbox) = self.inboxes[from].as_mut() {
                // Bounded per pass so one busy peer cannot starve the loop.
                for _ in 0..4096 {
                    match inbox.pop() {
                        Some(m) => {
                            f(from, m);
                            n += 1;
                        }
                        None => break,
                    }
                }
            }
        }
        n
    }

    /// Announces that this shard is going to sleep. Returns false (and cancels the
    /// announcement) when a message is already waiting, so the caller must not sleep.
    pub fn prepare_sleep(&self) -> bool {
        let me = &self.wakers[self.id];
        me.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let waiting = self.inboxes.iter().flatten().any(|c| !c.is_empty());
        if waiting {
            me.sleeping.store(false, Ordering::SeqCst);
        }
        !waiting
    }

    /// True when a message from some shard is waiting.
    pub fn has_mail(&self) -> bool {
        self.inboxes.iter().flatten().any(|c| !c.is_empty())
    }

    /// Called after waking up.
    pub fn awake(&self) {
        self.wakers[self.id].sleeping.store(false, Ordering::SeqCst);
    }

    /// Wakes every shard (shutdown).
    pub fn wake_all(&self) {
        for w in &self.wakers {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spsc_orders_and_bounds() {
        let (mut p, mut c) = spsc::<u32>(4);
        for i in 0..4 {
            p.push(i).unwrap();
        }
        assert_eq!(p.push(9), Err(9));
        assert_eq!(c.pop(), Some(0));
        p.push(4).unwrap();
        let got: Vec<u32> = std::iter::from_fn(|| c.pop()).collect();
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert!(c.is_empty());
    }

    #[test]
    fn spsc_across_threads_keeps_every_value_in_order() {
        let (mut p, mut c) = spsc::<u64>(64);
        let n = 200_000u64;
        let t = std::thread::spawn(move || {
            for i in 0..n {
                let mut v = i;
                while let Err(back) = p.push(v) {
                    v = back;
                    std::hint::spin_loop();
                }
            }
        });
        let mut expect = 0;
        while expect < n {
            if let Some(v) = c.pop() {
                assert_eq!(v, expect);
                expect += 1;
            }
        }
        t.join().unwrap();
    }

    #[test]
    fn dropping_queue_drops_pending_values() {
        let marker = Arc::new(());
        let (mut p, c) = spsc::<Arc<()>>(8);
        p.push(marker.clone()).unwrap();
        p.push(marker.clone()).unwrap();
        drop((p, c));
        assert_eq!(Arc::strong_count(&marker), 1);
    }

    #[test]
    fn mesh_overflow_is_retried_and_sleep_is_refused_with_mail() {
        let mut eps = mesh::<u32>(2, 2).unwrap();
        let mut b = eps.pop().unwrap();
        let mut a = eps.pop().unwrap();
        for i in 0..5 {
            a.send(1, i);
        }
        assert!(!b.prepare_sleep());
        let mut got = Vec::new();
        while got.len() < 5 {
            a.flush();
            b.recv_all(|from, m| {
                assert_eq!(from, 0);
                got.push(m)
            });
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert!(b.prepare_sleep());
        b.awake();
    }
}
