//! The keyspace index: open addressing with linear probing over a power-of-two array of
//! 8-byte slots, each `(loc + 1) << 32 | hash32` (0 is an empty slot). The table holds no
//! keys: it names entries by their arena [`Loc`](super::arena::Loc) and asks the caller to
//! compare keys, so one probe costs one slot read plus, only on a hash match, one entry
//! read. Owned by one shard thread.
//!
//! What a store needs beyond a map, kept from the chained dict this replaces:
//! - SCAN never misses an element present for the whole scan, across resizes: the cursor
//!   walks *home* buckets in Redis's reverse-binary order, and visiting home `i` means
//!   walking the run from slot `i` and reporting the entries whose home is `i` (linear
//!   probing keeps every entry between its home and the next empty slot). Deletion shifts
//!   entries back (no tombstones), which never moves one before its home.
//! - Cheap random sampling (RANDOMKEY, eviction): random slots until a full one.
//!
//! Resizing rehashes at once from the stored hashes (no entry is touched).

/// Load above which the table doubles (4/5).
const GROW_NUM: usize = 4;
const GROW_DEN: usize = 5;
const MIN_SLOTS: usize = 8;

pub struct Dict {
    slots: Vec<u64>,
    len: usize,
    /// Resizes so far: a walk by slot position (the snapshot stepper) restarts when this
    /// moves, since every entry may have changed place.
    resizes: u64,
    /// The slot a walk in slot order resumes at (`usize::MAX`: none runs). A deletion's
    /// backward shift that moves an entry from at or after it to before it would hide the
    /// entry from the walk: such entries are listed in `crossed` for the walker.
    walk: usize,
    pub crossed: Vec<u32>,
}

impl Default for Dict {
    fn default() -> Self {
        Self::new()
    }
}

#[inline]
fn pack(hash: u32, loc: u32) -> u64 {
    (u64::from(loc) + 1) << 32 | u64::from(hash)
}

#[inline]
fn loc_of(s: u64) -> u32 {
    ((s >> 32) - 1) as u32
}

impl Dict {
    pub fn new() -> Self {
        Dict {
            slots: vec![0; MIN_SLOTS],
            len: 0,
            resizes: 0,
            walk: usize::MAX,
            crossed: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of slots (for memory accounting and tests).
    pub fn buckets(&self) -> usize {
        self.slots.len()
    }

    /// How many times the table was resized (see `resizes`).
    pub fn resizes(&self) -> u64 {
        self.resizes
    }

    /// Where a walk in slot order resumes (`usize::MAX`: no walk); see `crossed`.
    pub fn set_walk(&mut self, at: usize) {
        self.walk = at;
        if at == usize::MAX {
            self.crossed = Vec::new();
        }
    }

    /// The entry in slot `pos`, if that slot is full (a walk in slot order).
    #[inline]
    pub fn loc_at(&self, pos: usize) -> Option<u32> {
        self.slots.get(pos).copied().filter(|&s| s != 0).map(loc_of)
    }

    #[inline]
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// The slot position and loc of the entry with `hash` for which `eq(loc)` holds.
    #[inline]
    pub fn find(&self, hash: u32, mut eq: impl FnMut(u32) -> bool) -> Option<(usize, u32)> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let s = *self.slots.get(i)?;
            if s == 0 {
                return None;
            }
            if s as u32 == hash && eq(loc_of(s)) {
                return Some((i, loc_of(s)));
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading the home slot of `hash` into the cache (a hint; see `peek`).
    #[inline]
    pub fn prefetch(&self, hash: u32) {
        let i = hash as usize & self.mask();
        crate::runtime::prefetch::prefetch(self.slots.as_ptr().wrapping_add(i).cast());
    }

    /// The loc of the first entry near the home of `hash` whose stored hash matches (a few
    /// slots at most; no key compared): where a later `find` will most likely read, for
    /// prefetching the entry.
    #[inline]
    pub fn peek(&self, hash: u32) -> Option<u32> {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        for _ in 0..4 {
            let s = *self.slots.get(i)?;
            if s == 0 {
                return None;
            }
            if s as u32 == hash {
                return Some(loc_of(s));
            }
            i = (i + 1) & mask;
        }
        None
    }

    /// Adds an entry the caller knows is absent.
    pub fn insert(&mut self, hash: u32, loc: u32) {
        if (self.len + 1) * GROW_DEN > self.slots.len() * GROW_NUM {
            self.resize(self.slots.len() * 2);
        }
        self.place(pack(hash, loc));
        self.len += 1;
    }

    /// Grows the table at once to hold `n` entries in all without resizing (a bulk load
    /// knows its count: one rehash instead of one per doubling).
    pub fn reserve(&mut self, n: usize) {
        let want = (n.saturating_mul(GROW_DEN) / GROW_NUM + 1).next_power_of_two();
        if want > self.slots.len() {
            self.resize(want);
        }
    }

    fn place(&mut self, s: u64) {
        let mask = self.mask();
        let mut i = s as u32 as usize & mask;
        while let Some(slot) = self.slots.get_mut(i) {
            if *slot == 0 {
                *slot = s;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Points the slot at `pos` to a new loc (the entry moved in the arena).
    pub fn set_loc(&mut self, pos: usize, loc: u32) {
        if let Some(s) = self.slots.get_mut(pos) {
            *s = pack(*s as u32, loc);
        }
    }

    /// Removes the entry at slot `pos` (backward-shift deletion), then maybe shrinks.
    pub fn remove_at(&mut self, pos: usize) {
        let mask = self.mask();
        let mut hole = pos;
        let mut j = (pos + 1) & mask;
        loop {
            let s = self.slots.get(j).copied().unwrap_or(0);
            if s == 0 {
                break;
            }
            let home = s as u32 as usize & mask;
            // Move `s` into the hole unless its home lies cyclically in (hole, j].
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                if let Some(h) = self.slots.get_mut(hole) {
                    *h = s;
                }
                if hole < self.walk && j >= self.walk {
                    self.crossed.push(loc_of(s));
                }
                hole = j;
            }
            j = (j + 1) & mask;
        }
        if let Some(h) = self.slots.get_mut(hole) {
            *h = 0;
        }
        self.len -= 1;
        // Shrink below 1/8 fill, as Redis's HT_MIN_FILL-style resize.
        if self.slots.len() > MIN_SLOTS && self.len * 8 < self.slots.len() {
            let target = (self.len.max(1) * 2).next_power_of_two().max(MIN_SLOTS);
            if target < self.slots.len() {
                self.resize(target);
            }
        }
    }

    fn resize(&mut self, n: usize) {
        self.resizes += 1;
        let old = std::mem::replace(&mut self.slots, vec![0; n]);
        for s in old {
            if s != 0 {
                self.place(s);
            }
        }
    }

    pub fn clear(&mut self) {
        let (resizes, walk) = (self.resizes + 1, self.walk);
        *self = Dict::new();
        self.resizes = resizes;
        self.walk = walk;
    }

    /// Visits the entries whose home is the bucket `cursor` names and returns the next
    /// cursor (0 when done). Reverse-binary increments (Redis's dictScan): an element
    /// present for the whole scan is returned at least once, even if the table grows or
    /// shrinks in between.
    pub fn scan(&self, cursor: u64, mut f: impl FnMut(u32)) -> u64 {
        let mask = self.mask();
        let home = (cursor & mask as u64) as usize;
        let mut j = home;
        loop {
            let s = self.slots.get(j).copied().unwrap_or(0);
            if s == 0 {
                break;
            }
            if s as u32 as usize & mask == home {
                f(loc_of(s));
            }
            j = (j + 1) & mask;
            if j == home {
                break;
            }
        }
        let mut v = cursor | !(mask as u64);
        v = v.reverse_bits();
        v = v.wrapping_add(1);
        v.reverse_bits()
    }

    /// A pseudo-random entry, chosen from `seed`: random slots until a full one.
    pub fn random(&self, seed: u64) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mask = self.mask();
        let mut s = seed;
        let mut i = 0;
        for _ in 0..64 {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            i = ((s >> 17) as usize) & mask;
            match self.slots.get(i) {
                Some(&v) if v != 0 => return Some(loc_of(v)),
                _ => {}
            }
        }
        // Very sparse table: the next full slot after the last guess.
        (0..self.slots.len())
            .map(|k| self.slots.get((i + k) & mask).copied().unwrap_or(0))
            .find(|&v| v != 0)
            .map(loc_of)
    }

    /// Visits up to `n` pseudo-random entries chosen from `seed` (eviction sampling): each
    /// draw is a random slot, moved forward to the next full one. The table is kept at least
    /// 1/8 full (above its minimum size), so a draw reads a few slots. An entry right after
    /// a long empty run is drawn more often; eviction only needs rough uniformity.
    pub fn sample(&self, seed: u64, n: usize, mut f: impl FnMut(u32)) {
        if self.len == 0 {
            return;
        }
        let mask = self.mask();
        let mut s = seed;
        for _ in 0..n.min(self.len) {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let start = ((s >> 17) as usize) & mask;
            if let Some(v) = (0..self.slots.len())
                .map(|k| self.slots.get((start + k) & mask).copied().unwrap_or(0))
                .find(|&v| v != 0)
            {
                f(loc_of(v));
            }
        }
    }

    /// Every entry's loc, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots.iter().filter(|&&s| s != 0).map(|&s| loc_of(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    /// A table over a side map of loc → key, as `Db` uses it over the arena.
    #[derive(Default)]
    struct Map {
        t: Dict,
        keys: HashMap<u32, String>,
        next: u32,
    }

    fn h(k: &str) -> u32 {
        ahash::RandomState::with_seeds(1, 2, 3, 4).hash_one(k) as u32
    }

    impl Map {
        fn get(&self, k: &str) -> Option<u32> {
            self.t.find(h(k), |l| self.keys[&l] == k).map(|(_, l)| l)
        }
        fn insert(&mut self, k: &str) -> bool {
            if self.get(k).is_some() {
                return false;
            }
            self.next += 1;
            self.keys.insert(self.next, k.to_string());
            self.t.insert(h(k), self.next);
            true
        }
        fn remove(&mut self, k: &str) -> bool {
            match self.t.find(h(k), |l| self.keys[&l] == k) {
                Some((pos, l)) => {
                    self.t.remove_at(pos);
                    self.keys.remove(&l);
                    true
                }
                None => false,
            }
        }
    }

    fn key(i: usize) -> String {
        format!("key:{i}")
    }

    #[test]
    fn insert_get_remove() {
        let mut d = Map::default();
        for i in 0..1000 {
            assert!(d.insert(&key(i)));
        }
        assert!(!d.insert(&key(5)));
        assert_eq!(d.t.len(), 1000);
        for i in 0..990 {
            assert!(d.remove(&key(i)), "{i}");
            // Everything not yet removed is still reachable after each backward shift.
            if i % 97 == 0 {
                for j in i + 1..1000 {
                    assert!(d.get(&key(j)).is_some(), "lost {j} after removing {i}");
                }
            }
        }
        assert_eq!(d.t.len(), 10);
        assert!(d.t.buckets() < 1024, "table shrank");
        assert!(d.get("key:1").is_none());
        assert!(d.get("key:995").is_some());
        assert_eq!(d.t.iter().count(), 10);
    }

    #[test]
    fn scan_never_misses_stable_keys_across_resizes() {
        let mut d = Map::default();
        for i in 0..500 {
            d.insert(&key(i));
        }
        let mut seen = HashSet::new();
        let mut cursor = 0;
        let mut step = 0;
        loop {
            cursor = d.t.scan(cursor, |l| {
                seen.insert(d.keys[&l].clone());
            });
            step += 1;
            // Grow, then shrink, while scanning. Keys 0..100 stay throughout.
            if step == 20 {
                for i in 500..5000 {
                    d.insert(&key(i));
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
    fn full_scan_reports_each_key_once_without_changes() {
        let mut d = Map::default();
        for i in 0..3000 {
            d.insert(&key(i));
        }
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            cursor = d.t.scan(cursor, |l| seen.push(l));
            if cursor == 0 {
                break;
            }
        }
        assert_eq!(seen.len(), 3000);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 3000);
    }

    #[test]
    fn sample_draws_spread_over_the_table() {
        let mut d = Map::default();
        let mut got = Vec::new();
        d.t.sample(1, 5, |l| got.push(l));
        assert!(got.is_empty(), "empty table");
        for i in 0..1000 {
            d.insert(&key(i));
        }
        let mut seen = HashSet::new();
        for seed in 0..200 {
            got.clear();
            d.t.sample(seed, 5, |l| got.push(l));
            assert_eq!(got.len(), 5);
            seen.extend(got.iter().copied());
        }
        // 1000 draws over 1000 keys: a uniform sampler sees ~63% of them; demand half.
        assert!(seen.len() > 500, "only {} distinct", seen.len());
        // Never more draws than entries, and a lone survivor is found.
        for i in 1..1000 {
            d.remove(&key(i));
        }
        got.clear();
        d.t.sample(9, 5, |l| got.push(l));
        assert_eq!(got, vec![d.get(&key(0)).unwrap()]);
    }

    #[test]
    fn random_finds_elements() {
        let mut d = Map::default();
        assert!(d.t.random(1).is_none());
        for i in 0..100 {
            d.insert(&key(i));
        }
        let mut seen = HashSet::new();
        for s in 0..500 {
            seen.insert(d.t.random(s).unwrap());
        }
        assert!(seen.len() > 50);
        // Sparse after removals: still finds the survivor.
        for i in 1..100 {
            d.remove(&key(i));
        }
        assert_eq!(d.t.random(7), d.get(&key(0)));
    }
}
