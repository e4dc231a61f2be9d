//! Keys WATCHed on this shard: `(db, key) → watchers`, owned by the key's shard like the key
//! itself. A write to a watched key (or a FLUSHDB/FLUSHALL/SWAPDB that changes it) removes
//! every watcher entry of that key; EXEC later asks, under its shard locks, whether its entries
//! are still here and unexpired. So no message is sent when a key is touched: the entry's
//! absence is the "modified" flag, and it is read on the shard that owns the key.
//!
//! Nothing here is visited unless something is watched (`is_empty` is one branch).

use ahash::AHashMap;
use bytes::Bytes;

/// One connection's interest in one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watcher {
    /// The shard that owns the watching connection.
    pub shard: usize,
    /// The watching connection's token on its shard.
    pub token: u64,
    /// The connection's watch generation (bumped by UNWATCH/EXEC/DISCARD/RESET).
    pub epoch: u64,
    /// When the key was live and volatile at WATCH time: its expiry (Unix ms), else 0.
    /// Passing it counts as a modification, as Redis's `isWatchedKeyExpired`.
    pub deadline: u64,
}

/// The watch registry of one shard.
#[derive(Default, Debug)]
pub struct Watches {
    dbs: AHashMap<usize, AHashMap<Bytes, Vec<Watcher>>>,
}

impl Watches {
    /// Nothing is watched: writes skip the registry entirely.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty()
    }

    /// Registers `w` on `key` (a second WATCH of the same key by the same connection and
    /// generation keeps the first entry, as Redis does).
    pub fn add(&mut self, db: usize, key: Bytes, w: Watcher) {
        let list = self.dbs.entry(db).or_default().entry(key).or_default();
        if !list
            .iter()
            .any(|x| x.shard == w.shard && x.token == w.token && x.epoch == w.epoch)
        {
            list.push(w);
        }
    }

    /// Drops one connection's entry for `key` (UNWATCH, EXEC, close).
    pub fn remove(&mut self, db: usize, key: &[u8], shard: usize, token: u64, epoch: u64) {
        let Some(keys) = self.dbs.get_mut(&db) else {
            return;
        };
        let Some(list) = keys.get_mut(key) else {
            return;
        };
        list.retain(|x| !(x.shard == shard && x.token == token && x.epoch == epoch));
        if list.is_empty() {
            keys.remove(key);
            if keys.is_empty() {
                self.dbs.remove(&db);
            }
        }
    }

    /// `key` was modified: every connection watching it will fail its EXEC.
    pub fn touch(&mut self, db: usize, key: &[u8]) {
        let Some(keys) = self.dbs.get_mut(&db) else {
            return;
        };
        if keys.remove(key).is_some() && keys.is_empty() {
            self.dbs.remove(&db);
        }
    }

    /// Touches every watched key of `db` for which `changed` says yes (FLUSHDB: the key
    /// existed; SWAPDB: it exists in either database).
    pub fn touch_db(&mut self, db: usize, mut changed: impl FnMut(&[u8]) -> bool) {
        let Some(keys) = self.dbs.get_mut(&db) else {
            return;
        };
        keys.retain(|k, _| !changed(k));
        if keys.is_empty() {
            self.dbs.remove(&db);
        }
    }

    /// The watched keys of `db` (to decide what a flush changes).
    pub fn keys_in(&self, db: usize) -> Vec<Bytes> {
        self.dbs
            .get(&db)
            .map(|k| k.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `key` counts as modified for this watcher at time `now`: its entry is gone
    /// (touched) or the key, live and volatile at WATCH time, has expired since.
    pub fn changed(
        &self,
        db: usize,
        key: &[u8],
        shard: usize,
        token: u64,
        epoch: u64,
        now: u64,
    ) -> bool {
        let found = self.dbs.get(&db).and_then(|k| k.get(key)).and_then(|l| {
            l.iter()
                .find(|x| x.shard == shard && x.token == token && x.epoch == epoch)
        });
        match found {
            None => true,
            Some(w) => w.deadline != 0 && w.deadline <= now,
        }
    }

    /// Number of watched keys (all databases), for tests and INFO.
    pub fn len(&self) -> usize {
        self.dbs.values().map(|k| k.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(token: u64, epoch: u64, deadline: u64) -> Watcher {
        Watcher {
            shard: 1,
            token,
            epoch,
            deadline,
        }
    }

    #[test]
    fn touch_remove_and_expiry() {
        let mut r = Watches::default();
        assert!(r.is_empty());
        r.add(0, Bytes::from("k"), w(7, 1, 0));
        r.add(0, Bytes::from("k"), w(7, 1, 0));
        r.add(0, Bytes::from("k"), w(8, 1, 0));
        r.add(2, Bytes::from("v"), w(7, 1, 100));
        assert_eq!(r.len(), 2);
        assert!(!r.changed(0, b"k", 1, 7, 1, 50));
        assert!(r.changed(0, b"k", 1, 7, 2, 50), "other generation");
        assert!(r.changed(0, b"k", 0, 7, 1, 50), "other shard");
        assert!(!r.changed(2, b"v", 1, 7, 1, 99));
        assert!(r.changed(2, b"v", 1, 7, 1, 100), "deadline passed");
        r.touch(0, b"k");
        assert!(r.changed(0, b"k", 1, 8, 1, 50));
        r.remove(2, b"v", 1, 7, 1);
        assert!(r.is_empty());
        r.add(3, Bytes::from("a"), w(1, 1, 0));
        r.add(3, Bytes::from("b"), w(1, 1, 0));
        r.touch_db(3, |k| k == b"a");
        assert!(r.changed(3, b"a", 1, 1, 1, 0));
        assert!(!r.changed(3, b"b", 1, 1, 1, 0));
        assert_eq!(r.keys_in(3), vec![Bytes::from("b")]);
        r.touch_db(3, |_| true);
        assert!(r.is_empty());
    }
}
