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
//!
//! The index is a [`hashbrown::HashTable`] of entry positions (4 bytes a slot) and each entry
//! keeps its member's hash: a lookup hashes once and compares members only on a 7-bit tag
//! match, growth never rehashes a member, and the entry a removal moves is re-pointed by its
//! stored hash and old position without hashing or comparing its member.

use hashbrown::HashTable;

/// What a table stores: anything that names its own key (a set member, a hash's field and
/// value in one block).
pub(crate) trait Slot {
    fn key(&self) -> &[u8];
}

impl Slot for Box<[u8]> {
    fn key(&self) -> &[u8] {
        self
    }
}

#[derive(Debug, Clone)]
struct Entry<E> {
    item: E,
    hash: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct EntryTable<E> {
    entries: Vec<Entry<E>>,
    /// Positions in `entries`, hashed by their entry's `hash`.
    index: HashTable<u32>,
    hasher: ahash::RandomState,
}

impl<E: Slot> EntryTable<E> {
    pub fn with_capacity(n: usize) -> EntryTable<E> {
        EntryTable {
            entries: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
            hasher: ahash::RandomState::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Heap bytes of the entry vector and the index (not the items' own blocks).
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<E>>() + self.index.capacity() * 5
    }

    fn hash(&self, k: &[u8]) -> u64 {
        self.hasher.hash_one(k)
    }

    /// The position of key `k`.
    fn position(&self, k: &[u8]) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(self.hash(k), |&i| {
                entries.get(i as usize).is_some_and(|e| e.item.key() == k)
            })
            .map(|&i| i as usize)
    }

    pub fn get(&self, k: &[u8]) -> Option<&E> {
        let i = self.position(k)?;
        self.entries.get(i).map(|e| &e.item)
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        self.position(k).is_some()
    }

    /// Inserts `item`, replacing the one with the same key; returns the replaced one.
    pub fn insert(&mut self, item: E) -> Option<E> {
        let hash = self.hash(item.key());
        let entries = &mut self.entries;
        let found = self.index.find(hash, |&i| {
            entries
                .get(i as usize)
                .is_some_and(|e| e.item.key() == item.key())
        });
        if let Some(e) = found.and_then(|&i| entries.get_mut(i as usize)) {
            return Some(std::mem::replace(&mut e.item, item));
        }
        self.push(item, hash);
        None
    }

    /// Inserts `item` unless its key is present (then the stored one stays untouched, its
    /// cache line clean); true when inserted.
    pub fn insert_absent(&mut self, item: E) -> bool {
        let hash = self.hash(item.key());
        if self
            .index
            .find(hash, |&i| {
                self.entries
                    .get(i as usize)
                    .is_some_and(|e| e.item.key() == item.key())
            })
            .is_some()
        {
            return false;
        }
        self.push(item, hash);
        true
    }

    fn push(&mut self, item: E, hash: u64) {
        let pos = self.entries.len() as u32;
        let entries = &self.entries;
        self.index.insert_unique(hash, pos, |&i| {
            entries.get(i as usize).map_or(0, |e| e.hash)
        });
        self.entries.push(Entry { item, hash });
    }

    pub fn remove(&mut self, k: &[u8]) -> Option<E> {
        let hash = self.hash(k);
        let entries = &self.entries;
        let (i, _) = self
            .index
            .find_entry(hash, |&i| {
                entries.get(i as usize).is_some_and(|e| e.item.key() == k)
            })
            .ok()?
            .remove();
        self.remove_at_index(i as usize)
    }

    /// Removes the entry at position `i` (already unindexed), moving the last one into it and
    /// re-pointing the last one's index slot (found by its stored hash and old position).
    fn remove_at_index(&mut self, i: usize) -> Option<E> {
        if i >= self.entries.len() {
            return None;
        }
        let last = (self.entries.len() - 1) as u32;
        let out = self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            if let Some(p) = self.index.find_mut(moved.hash, |&j| j == last) {
                *p = i as u32;
            }
        }
        Some(out.item)
    }

    /// Removes and returns the entry at position `i`.
    pub fn remove_at(&mut self, i: usize) -> Option<E> {
        let hash = self.entries.get(i)?.hash;
        let pos = i as u32;
        if let Ok(slot) = self.index.find_entry(hash, |&j| j == pos) {
            slot.remove();
        }
        self.remove_at_index(i)
    }

    pub fn at(&self, i: usize) -> Option<&E> {
        self.entries.get(i).map(|e| &e.item)
    }

    pub fn iter(&self) -> impl Iterator<Item = &E> {
        self.entries.iter().map(|e| &e.item)
    }

    /// Visits at least `count` (≥ 1) entries from `cursor` (see the module doc); returns the
    /// next cursor, 0 when done.
    pub fn scan(&self, cursor: u64, count: usize, mut f: impl FnMut(&E)) -> u64 {
        let len = self.entries.len();
        let mut k = match usize::try_from(cursor) {
            Ok(0) | Err(_) => len,
            Ok(c) => c.min(len),
        };
        let mut n = 0;
        while k > 0 && n < count.max(1) {
            k -= 1;
            if let Some(e) = self.entries.get(k) {
                f(&e.item);
            }
            n += 1;
        }
        k as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    impl Slot for Bytes {
        fn key(&self) -> &[u8] {
            self
        }
    }

    /// A keyed test item: (key, value).
    #[derive(Debug, Clone, PartialEq)]
    struct Kv(Bytes, u32);

    impl Slot for Kv {
        fn key(&self) -> &[u8] {
            &self.0
        }
    }

    #[test]
    fn insert_remove_index_stays_consistent() {
        let mut t = EntryTable::with_capacity(0);
        for i in 0..100 {
            assert!(t.insert(Kv(b(&i.to_string()), i)).is_none());
        }
        assert_eq!(t.insert(Kv(b("5"), 50)).map(|e| e.1), Some(5));
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
            assert_eq!(t.get(i.to_string().as_bytes()).map(|e| e.1), want);
        }
        let Kv(k, _) = t.remove_at(0).unwrap();
        assert!(!t.contains(&k));
        assert_eq!(t.len(), 65);
    }

    #[test]
    fn scan_never_misses_entries_present_throughout() {
        let mut t = EntryTable::with_capacity(0);
        for i in 0..1000 {
            t.insert(b(&i.to_string()));
        }
        // Keys 0..500 stay; the others are removed and new ones added during the scan.
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut round = 0;
        loop {
            cursor = t.scan(cursor, 10, |k| {
                seen.insert(k.clone());
            });
            round += 1;
            for j in 0..5 {
                let victim = 500 + (round * 5 + j) % 500;
                t.remove(victim.to_string().as_bytes());
                t.insert(b(&format!("new{round}_{j}")));
            }
            if cursor == 0 {
                break;
            }
        }
        for i in 0..500 {
            assert!(seen.contains(&b(&i.to_string())), "missed {i}");
        }
    }

    #[test]
    fn random_operations_match_a_hash_map() {
        use std::collections::HashMap;
        let mut t: EntryTable<Kv> = EntryTable::with_capacity(0);
        let mut model: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut x = 12345u64;
        for step in 0..50_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = format!("k{}", x % 2000).into_bytes();
            match x % 7 {
                0 | 1 => assert_eq!(t.remove(&k).map(|e| e.1), model.remove(&k), "{step}"),
                2 if t.len() > 0 => {
                    let i = (x as usize / 7) % t.len();
                    let Kv(k, v) = t.remove_at(i).unwrap();
                    assert_eq!(model.remove(&k[..]), Some(v));
                }
                3 => {
                    if let Some(v) = t.get(&k).map(|e| e.1) {
                        let old = t.insert(Kv(Bytes::from(k.clone()), v + 1));
                        assert_eq!(old.map(|e| e.1), Some(v));
                        *model.get_mut(&k).unwrap() += 1;
                    }
                }
                _ => assert_eq!(
                    t.insert(Kv(Bytes::from(k.clone()), step)).map(|e| e.1),
                    model.insert(k, step)
                ),
            }
        }
        assert_eq!(t.len(), model.len());
        for (k, v) in &model {
            assert_eq!(t.get(k).map(|e| e.1), Some(*v));
        }
        for (i, Kv(k, v)) in t.iter().enumerate() {
            assert_eq!(model.get(&k[..]), Some(v));
            assert_eq!(t.at(i).map(|e| e.1), Some(*v));
        }
        assert!(t.heap_bytes() >= t.len() * std::mem::size_of::<Entry<Kv>>());
    }
}
