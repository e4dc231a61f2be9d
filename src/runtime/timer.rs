//! Timers for one shard: a min-heap of deadlines checked on every loop pass; the nearest
//! deadline bounds how long the ring may sleep. Runs on the owning shard thread.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::Instant;

/// Timer id returned by `add`, usable with `cancel`.
pub type TimerId = u64;

pub struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, TimerId)>>,
    payloads: ahash::AHashMap<TimerId, T>,
    cancelled: HashSet<TimerId>,
    next_id: TimerId,
}

impl<T> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            payloads: ahash::AHashMap::new(),
            cancelled: HashSet::new(),
            next_id: 1,
        }
    }
}

impl<T> Timers<T> {
    pub fn add(&mut self, at: Instant, payload: T) -> TimerId {
        let id = self.next_id;
        self.next_id += 1;
        self.heap.push(Reverse((at, id)));
        self.payloads.insert(id, payload);
        id
    }

    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        let p = self.payloads.remove(&id);
        if p.is_some() {
            self.cancelled.insert(id);
        }
        p
    }

    /// The nearest live deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if self.cancelled.remove(&id) {
                self.heap.pop();
                continue;
            }
            return Some(at);
        }
        None
    }

    /// Pops every timer due at `now`, in deadline order.
    pub fn expired(&mut self, now: Instant, out: &mut Vec<T>) {
        while let Some(Reverse((at, id))) = self.heap.peek().copied() {
            if at > now {
                break;
            }
            self.heap.pop();
            if self.cancelled.remove(&id) {
                continue;
            }
            if let Some(p) = self.payloads.remove(&id) {
                out.push(p);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_order_and_honours_cancel() {
        let mut t = Timers::default();
        let now = Instant::now();
        t.add(now + Duration::from_millis(30), "c");
        let b = t.add(now + Duration::from_millis(20), "b");
        t.add(now + Duration::from_millis(10), "a");
        assert_eq!(t.cancel(b), Some("b"));
        assert_eq!(t.next_deadline(), Some(now + Duration::from_millis(10)));
        let mut out = Vec::new();
        t.expired(now + Duration::from_millis(25), &mut out);
        assert_eq!(out, vec!["a"]);
        t.expired(now + Duration::from_millis(35), &mut out);
        assert_eq!(out, vec!["a", "c"]);
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }
}
