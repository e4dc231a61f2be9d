//! Clients blocked on keys of this shard (BLPOP and friends), as seen by the shard that owns
//! the keys. Runs on the owner shard's thread only.
//!
//! A blocked client is registered here once per owner shard, with the keys of its command
//! that this shard owns (`Reg`). Every key keeps its waiters in arrival order (Redis's
//! fairness: the client blocked longest on a key is served first). A write that may feed a
//! waiter (`signal`, called wherever WATCH is told about a write) records the key as ready;
//! the worker later walks the ready keys and serves waiters (`coord::blocking::serve_ready`).
//! Signals cost one emptiness check while nobody is blocked.
//!
//! The type parameter is the waiter's command (kept opaque here).

use std::collections::VecDeque;

use ahash::AHashMap;
use bytes::Bytes;
use slab::Slab;

/// One blocked client's registration on this shard.
pub struct Reg<T> {
    /// The shard that owns the client's connection (and decides timeouts).
    pub home: usize,
    /// The blocked client's id, unique across shards.
    pub wid: u64,
    pub db: usize,
    /// The keys of the command that live on this shard, in command order.
    pub keys: Vec<Bytes>,
    pub op: T,
}

pub struct Registry<T> {
    regs: Slab<Reg<T>>,
    by_wid: AHashMap<u64, usize>,
    /// Per database: key → registrations waiting on it, oldest first.
    by_key: Vec<AHashMap<Bytes, VecDeque<usize>>>,
    ready: Vec<(usize, Bytes)>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            regs: Slab::new(),
            by_wid: AHashMap::new(),
            by_key: Vec::new(),
            ready: Vec::new(),
        }
    }
}

impl<T> Registry<T> {
    /// Registrations on this shard.
    pub fn len(&self) -> usize {
        self.regs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regs.is_empty()
    }

    /// Registers a waiter on `keys` of `db` (behind every earlier waiter on each key).
    pub fn add(&mut self, db: usize, keys: Vec<Bytes>, home: usize, wid: u64, op: T) {
        if self.by_wid.contains_key(&wid) {
            return;
        }
        if self.by_key.len() <= db {
            self.by_key.resize_with(db + 1, AHashMap::new);
        }
        let idx = self.regs.insert(Reg {
            home,
            wid,
            db,
            keys: Vec::new(),
            op,
        });
        let map = &mut self.by_key[db];
        let mut mine: Vec<Bytes> = Vec::with_capacity(keys.len());
        for k in keys {
            // BLPOP k k: one place in the queue, as Redis does.
            if mine.contains(&k) {
                continue;
            }
            map.entry(k.clone()).or_default().push_back(idx);
            mine.push(k);
        }
        self.regs[idx].keys = mine;
        self.by_wid.insert(wid, idx);
    }

    /// Removes a waiter (served, timed out, gone); `None` if it is not registered here.
    pub fn remove(&mut self, wid: u64) -> Option<Reg<T>> {
        let idx = self.by_wid.remove(&wid)?;
        let reg = self.regs.try_remove(idx)?;
        if let Some(map) = self.by_key.get_mut(reg.db) {
            for k in &reg.keys {
                if let Some(q) = map.get_mut(k.as_ref()) {
                    q.retain(|&i| i != idx);
                    if q.is_empty() {
                        map.remove(k.as_ref());
                    }
                }
            }
        }
        Some(reg)
    }

    /// A write to `key` may let waiters on it proceed.
    #[inline]
    pub fn signal(&mut self, db: usize, key: &[u8]) {
        if self.regs.is_empty() {
            return;
        }
        if let Some(map) = self.by_key.get(db) {
            if let Some((k, _)) = map.get_key_value(key) {
                self.ready.push((db, k.clone()));
            }
        }
    }

    /// Every waited key of `db` may have changed (SWAPDB, FLUSHDB of another db's swap).
    pub fn signal_db(&mut self, db: usize) {
        if let Some(map) = self.by_key.get(db) {
            self.ready.extend(map.keys().map(|k| (db, k.clone())));
        }
    }

    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The keys signalled since the last call, oldest first, without repeats.
    pub fn take_ready(&mut self) -> Vec<(usize, Bytes)> {
        let mut v = std::mem::take(&mut self.ready);
        let mut seen: Vec<(usize, Bytes)> = Vec::with_capacity(v.len());
        v.retain(|e| {
            if seen.contains(e) {
                false
            } else {
                seen.push(e.clone());
                true
            }
        });
        v
    }

    /// The waiters on `key`, oldest first (their wids).
    pub fn waiters(&self, db: usize, key: &[u8]) -> Vec<u64> {
        self.by_key
            .get(db)
            .and_then(|m| m.get(key))
            .map(|q| {
                q.iter()
                    .filter_map(|&i| self.regs.get(i).map(|r| r.wid))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn get(&self, wid: u64) -> Option<&Reg<T>> {
        self.by_wid.get(&wid).and_then(|&i| self.regs.get(i))
    }

    /// Drops every registration (FLUSHALL does not unblock; used at shutdown and tests).
    pub fn clear(&mut self) {
        self.regs.clear();
        self.by_wid.clear();
        self.by_key.clear();
        self.ready.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn fifo_per_key_and_removal_everywhere() {
        let mut r: Registry<u8> = Registry::default();
        r.add(0, vec![b("a"), b("b")], 1, 10, 0);
        r.add(0, vec![b("b")], 0, 11, 0);
        r.add(0, vec![b("a"), b("a")], 0, 12, 0);
        assert_eq!(r.waiters(0, b"a"), vec![10, 12]);
        assert_eq!(r.waiters(0, b"b"), vec![10, 11]);
        assert_eq!(r.get(12).map(|g| g.keys.len()), Some(1));
        let g = r.remove(10).map(|g| (g.home, g.keys));
        assert_eq!(g, Some((1, vec![b("a"), b("b")])));
        assert_eq!(r.waiters(0, b"a"), vec![12]);
        assert_eq!(r.waiters(0, b"b"), vec![11]);
        assert!(r.remove(10).is_none());
        r.remove(11);
        r.remove(12);
        assert!(r.is_empty());
        assert!(r.waiters(0, b"a").is_empty());
    }

    #[test]
    fn signals_only_waited_keys_once() {
        let mut r: Registry<u8> = Registry::default();
        r.signal(0, b"a");
        assert!(!r.has_ready());
        r.add(1, vec![b("a")], 0, 1, 0);
        r.signal(0, b"a");
        assert!(!r.has_ready(), "another database");
        r.signal(1, b"a");
        r.signal(1, b"a");
        r.signal(1, b"zz");
        assert_eq!(r.take_ready(), vec![(1, b("a"))]);
        assert!(!r.has_ready());
        r.signal_db(1);
        assert_eq!(r.take_ready(), vec![(1, b("a"))]);
    }
}
