//! The keyspace hash table: separate chaining over a power-of-two bucket array, like Redis's
//! dict. We own it (rather than using a std map) for two things a store needs: a SCAN cursor
//! that never misses an element present for the whole scan, across resizes (Redis's
//! reverse-binary cursor), and cheap random sampling (RANDOMKEY, active expiry, eviction).
//! Owned by one shard thread.
//!
//! Resizing rehashes the whole table at once (Redis does it incrementally); fine for the
//! sizes we run today and noted in the README as a known pause at very large tables.

use bytes::Bytes;

struct Node<V> {
    key: Bytes,
    val: V,
    next: Option<Box<Node<V>>>,
}

pub struct Dict<V> {
    buckets: Vec<Option<Box<Node<V>>>>,
    len: usize,
    hasher: ahash::RandomState,
}

impl<V> Default for Dict<V> {
    fn default() -> Self {
        Self::new()
    }
}

const MIN_BUCKETS: usize = 4;

impl<V> Dict<V> {
    pub fn new() -> Self {
        Dict {
            buckets: (0..MIN_BUCKETS).map(|_| None).collect(),
            len: 0,
            hasher: ahash::RandomState::with_seeds(
                0x243f6a8885a308d3,
                0x13198a2e03707344,
                0xa4093822299f31d0,
                0x082efa98ec4e6c89,
            ),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of buckets (for memory accounting and tests).
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    #[inline]
    fn index(&self, key: &[u8]) -> usize {
        (self.hasher.hash_one(key) as usize) & (self.buckets.len() - 1)
    }

    pub fn get(&self, key: &[u8]) -> Option<&V> {
        let mut cur = self.buckets[self.index(key)].as_deref();
        while let Some(n) = cur {
            if n.key[..] == *key {
                return Some(&n.val);
            }
            cur = n.next.as_deref();
        }
        None
    }

    pub fn get_key_value(&self, key: &[u8]) -> Option<(&Bytes, &V)> {
        let mut cur = self.buckets[self.index(key)].as_deref();
        while let Some(n) = cur {
            if n.key[..] == *key {
                return Some((&n.key, &n.val));
            }
            cur = n.next.as_deref();
        }
        None
    }

    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut V> {
        let idx = self.index(key);
        let mut cur = self.buckets[idx].as_deref_mut();
        while let Some(n) = cur {
            if n.key[..] == *key {
                return Some(&mut n.val);
            }
            cur = n.next.as_deref_mut();
        }
        None
    }

    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Inserts or replaces; returns the old value.
    pub fn insert(&mut self, key: Bytes, val: V) -> Option<V> {
        if let Some(slot) = self.get_mut(&key) {
            return Some(std::mem::replace(slot, val));
        }
        if self.len >= self.buckets.len() {
            self.resize(self.buckets.len() * 2);
        }
        let idx = self.index(&key);
        let next = self.buckets[idx].take();
        self.buckets[idx] = Some(Box::new(Node { key, val, next }));
        self.len += 1;
        None
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<(Bytes, V)> {
        let idx = self.index(key);
        let mut link = &mut self.buckets[idx];
        loop {
            match link {
                None => return None,
                Some(n) if n.key[..] == *key => {
                    let mut node = link.take()?;
                    *link = node.next.take();
                    self.len -= 1;
                    self.maybe_shrink();
                    return Some((node.key, node.val));
                }
                Some(n) => link = &mut n.next,
            }
        }
    }

    fn maybe_shrink(&mut self) {
        // Shrink below 1/8 fill, as Redis's HT_MIN_FILL-style resize.
        if self.buckets.len() > MIN_BUCKETS && self.len * 8 < self.buckets.len() {
            let target = (self.len.max(1) * 2).next_power_of_two().max(MIN_BUCKETS);
            if target < self.buckets.len() {
                self.resize(target);
            }
        }
    }

    fn resize(&mut self, n: usize) {
        let old = std::mem::replace(&mut self.buckets, (0..n).map(|_| None).collect());
        for mut head in old {
            while let Some(mut node) = head {
                head = node.next.take();
                let idx = self.index(&node.key);
                node.next = self.buckets[idx].take();
                self.buckets[idx] = Some(node);
            }
        }
    }

    pub fn clear(&mut self) {
        *self = Dict::new();
    }

    /// Visits one bucket chosen by `cursor` and returns the next cursor (0 when done).
    /// Reverse-binary increments (Redis's dictScan): an element present for the whole scan
    /// is returned at least once, even if the table grows or shrinks in between.
    pub fn scan(&self, cursor: u64, mut f: impl FnMut(&Bytes, &V)) -> u64 {
        let mask = (self.buckets.len() - 1) as u64;
        let mut cur = self.buckets[(cursor & mask) as usize].as_deref();
        while let Some(n) = cur {
            f(&n.key, &n.val);
            cur = n.next.as_deref();
        }
        let mut v = cursor | !mask;
        v = v.reverse_bits();
        v = v.wrapping_add(1);
        v.reverse_bits()
    }

    /// A pseudo-random element, chosen from `seed` (random bucket, then random chain link).
    pub fn random(&self, seed: u64) -> Option<(&Bytes, &V)> {
        if self.len == 0 {
            return None;
        }
        let n = self.buckets.len();
        let mut s = seed;
        for _ in 0..(n * 2).max(64) {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let b = ((s >> 17) as usize) & (n - 1);
            if let Some(head) = self.buckets[b].as_deref() {
                let mut chain = 0;
                let mut cur = Some(head);
                while let Some(x) = cur {
                    chain += 1;
                    cur = x.next.as_deref();
                }
                let mut pick = ((s >> 40) as usize) % chain;
                let mut cur = head;
                while pick > 0 {
                    cur = cur.next.as_deref()?;
                    pick -= 1;
                }
                return Some((&cur.key, &cur.val));
            }
        }
        self.iter().next()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &V)> {
        self.buckets.iter().flat_map(|b| {
            let mut cur = b.as_deref();
            std::iter::from_fn(move || {
                let n = cur?;
                cur = n.next.as_deref();
                Some((&n.key, &n.val))
            })
        })
    }
}

impl<V> Drop for Dict<V> {
    fn drop(&mut self) {
        // Unlink chains iteratively so a long chain cannot overflow the stack.
        for b in self.buckets.iter_mut() {
            let mut head = b.take();
            while let Some(mut n) = head {
                head = n.next.take();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn key(i: usize) -> Bytes {
        Bytes::from(format!("key:{i}"))
    }

    #[test]
    fn insert_get_remove() {
        let mut d = Dict::new();
        for i in 0..1000 {
            assert!(d.insert(key(i), i).is_none());
        }
        assert_eq!(d.insert(key(5), 55), Some(5));
        assert_eq!(d.len(), 1000);
        assert_eq!(d.get(b"key:5"), Some(&55));
        *d.get_mut(b"key:6").unwrap() = 66;
        assert_eq!(d.get(b"key:6"), Some(&66));
        for i in 0..990 {
            assert!(d.remove(&key(i)).is_some());
        }
        assert_eq!(d.len(), 10);
        assert!(d.buckets() < 1024, "table shrank");
        assert!(d.get(b"key:1").is_none());
        assert_eq!(d.get(b"key:995"), Some(&995));
        assert_eq!(d.iter().count(), 10);
    }

    #[test]
    fn scan_never_misses_stable_keys_across_resizes() {
        let mut d = Dict::new();
        for i in 0..500 {
            d.insert(key(i), ());
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            cursor = d.scan(cursor, |k, _| {
                seen.insert(k.clone());
            });
            step += 1;
            // Grow, then shrink, while scanning. Keys 0..100 stay throughout.
            if step == 20 {
                for i in 500..5000 {
                    d.insert(key(i), ());
                }
            }
            if step == 200 {
                for i in 100..5000 {
                    d.remove(&key(i));
                }
            }
            if cursor == 0 {
                break;
            }
        }
        for i in 0..100 {
            assert!(seen.contains(&key(i)), "missed key {i}");
        }
    }

    #[test]
    fn random_finds_elements() {
        let mut d = Dict::new();
        assert!(d.random(1).is_none());
        for i in 0..100 {
            d.insert(key(i), i);
        }
        let mut seen = HashSet::new();
        for s in 0..500 {
            let (k, _) = d.random(s).unwrap();
            seen.insert(k.clone());
        }
        assert!(seen.len() > 50);
    }
}
