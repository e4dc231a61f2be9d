//! The "hashtable" big form shared by hashes and sets: entries in a dense `Vec` plus a
//! member → position index. O(1) lookup, insert and remove (swap-remove), O(1) uniform random
//! member (SPOP, SRANDMEMBER, HRANDFIELD) and a SCAN cursor that never misses an entry present
//! for the whole scan.
//!
//! SCAN invariant: the cursor `k` means "positions `< k` are still to visit"; a scan walks
//! positions downwards. Removal moves only the *last* entry, and only to a lower position, so
//! an entry not yet visited stays below `k`, and one already visited is at worst returned
//! again (Redis allows duplicates). New entries are appended above `k` (not guaranteed, as in
//! Redis). Cursor 0 starts (and, returned, ends) a scan.

use std::collections::HashMap;

use bytes::Bytes;

#[derive(Debug, Clone, Default)]
pub(crate) struct Table<V> {
    entries: Vec<(Bytes, V)>,
    index: HashMap<Bytes, usize, ahash::RandomState>,
}

impl<V> Table<V> {
    pub fn with_capacity(n: usize) -> Table<V> {
        Table {
            entries: Vec::with_capacity(n),
            index: HashMap::with_capacity_and_hasher(n, ahash::RandomState::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn get(&self, k: &[u8]) -> Option<&V> {
        let &i = self.index.get(k)?;
        self.entries.get(i).map(|(_, v)| v)
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        self.index.contains_key(k)
    }

    pub fn get_mut(&mut self, k: &[u8]) -> Option<&mut V> {
        let &i = self.index.get(k)?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    /// Inserts a member the caller knows is absent (one index probe instead of two).
    pub fn insert_absent(&mut self, k: Bytes, v: V) {
        debug_assert!(!self.index.contains_key(&k[..]));
        self.index.insert(k.clone(), self.entries.len());
        self.entries.push((k, v));
    }

    /// Inserts or replaces; returns the previous value.
    pub fn insert(&mut self, k: Bytes, v: V) -> Option<V> {
        if let Some(&i) = self.index.get(&k[..]) {
            if let Some(slot) = self.entries.get_mut(i) {
                return Some(std::mem::replace(&mut slot.1, v));
            }
        }
        self.index.insert(k.clone(), self.entries.len());
        self.entries.push((k, v));
        None
    }

    pub fn remove(&mut self, k: &[u8]) -> Option<(Bytes, V)> {
        let i = self.index.remove(k)?;
        self.remove_at_index(i)
    }

    /// Removes the entry at position `i` (already unindexed), moving the last one into it.
    fn remove_at_index(&mut self, i: usize) -> Option<(Bytes, V)> {
        if i >= self.entries.len() {
            return None;
        }
        let out = self.entries.swap_remove(i);
        if let Some((moved, _)) = self.entries.get(i) {
            if let Some(p) = self.index.get_mut(&moved[..]) {
                *p = i;
            }
        }
        Some(out)
    }

    /// Removes and returns the entry at position `i`.
    pub fn remove_at(&mut self, i: usize) -> Option<(Bytes, V)> {
        let k = self.entries.get(i)?.0.clone();
        self.index.remove(&k[..]);
        self.remove_at_index(i)
    }

    pub fn at(&self, i: usize) -> Option<(&Bytes, &V)> {
        self.entries.get(i).map(|(k, v)| (k, v))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Visits at least `count` (≥ 1) entries from `cursor` (see the module doc); returns the
    /// next cursor, 0 when done.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&Bytes, &V)) -> u64 {
        let len = self.entries.len();
        let mut k = match usize::try_from(cursor) {
            Ok(0) | Err(_) => len,
            Ok(c) => c.min(len),
        };
        let mut n = 0;
        while k > 0 && n < count.max(1) {
            k -= 1;
            if let Some((key, v)) = self.entries.get(k) {
                f(key, v);
            }
            n += 1;
        }
        k as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn insert_remove_index_stays_consistent() {
        let mut t = Table::with_capacity(0);
        for i in 0..100 {
            assert!(t.insert(b(&i.to_string()), i).is_none());
        }
        assert_eq!(t.insert(b("5"), 50), Some(5));
        for i in (0..100).step_by(3) {
            assert!(t.remove(i.to_string().as_bytes()).is_some());
        }
        assert!(t.remove(b"0").is_none());
        assert_eq!(t.len(), 66);
        for i in 0..100 {
            let want = if i % 3 == 0 {
                None
            } else if i == 5 {
                Some(50)
            } else {
                Some(i)
            };
            assert_eq!(t.get(i.to_string().as_bytes()).copied(), want);
        }
        let (k, _) = t.remove_at(0).unwrap();
        assert!(!t.contains(&k));
        assert_eq!(t.len(), 65);
    }

    #[test]
    fn scan_never_misses_entries_present_throughout() {
        let mut t = Table::with_capacity(0);
        for i in 0..1000 {
            t.insert(b(&i.to_string()), ());
        }
        // Keys 0..500 stay; the others are removed and new ones added during the scan.
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = t.scan(cursor, 10, |k, _| {
                seen.insert(k.clone());
            });
            round += 1;
            for j in 0..5 {
                let victim = 500 + (round * 5 + j) % 500;
                t.remove(victim.to_string().as_bytes());
                t.insert(b(&format!("new{round}_{j}")), ());
            }
            if cursor == 0 {
                break;
            }
        }
        for i in 0..500 {
            assert!(seen.contains(&b(&i.to_string())), "missed {i}");
        }
    }
}
