//! Size-class byte arena for keyspace entries: no per-entry malloc header, no pointer per
//! entry. Each size class owns fixed-size pages (`Box<[u8]>`, ~32–64 KiB) cut into equal
//! slots, a bump index and a free list; an entry is named by a 32-bit [`Loc`] (class in the
//! top 6 bits, slot index below). Entries larger than the biggest class get a plain
//! `Box<[u8]>` of their own (the `BOXED` class). Owned by one shard thread, like its `Db`.
//!
//! Pages are kept until their class is empty (then all but one are dropped at once), as a
//! slab allocator does; freed slots are reused first. The arena counts its spare bytes
//! (slots held in pages but not in use): heap the allocator sees as used, but that new
//! entries of the same class take without allocating. Eviction subtracts it from the
//! process's used memory (see `shard::evict`), since deleting a small key frees a slot,
//! not heap.

/// Where an entry lives: `class << IDX_BITS | index`. `u32::MAX` is never handed out.
pub type Loc = u32;

const IDX_BITS: u32 = 26;
const IDX_MASK: u32 = (1 << IDX_BITS) - 1;
/// Largest entry kept in a size class; anything bigger is boxed.
pub const MAX_CLASS_BYTES: usize = 2048;
/// Classes 0..NCLASSES are arena classes (see `class_of`).
const NCLASSES: usize = 56;
/// The class id of boxed entries.
const BOXED: u32 = 63;
/// Target page size; a class's page holds a power-of-two number of slots.
const PAGE: usize = 64 * 1024;

/// The size class for an entry of `len` bytes: 4-byte steps up to 64 bytes, then eight
/// steps per doubling (72, 80, .., 128, 144, ..), up to `MAX_CLASS_BYTES`.
pub fn class_of(len: usize) -> Option<usize> {
    if len <= 64 {
        return Some(len.saturating_sub(1) / 4);
    }
    if len > MAX_CLASS_BYTES {
        return None;
    }
    let lg = (usize::BITS - 1 - (len - 1).leading_zeros()) as usize;
    Some(16 + (lg - 6) * 8 + ((len - 1 - (1 << lg)) >> (lg - 3)))
}

/// Slot size of class `c`.
pub fn class_size(c: usize) -> usize {
    if c < 16 {
        (c + 1) * 4
    } else {
        let lg = 6 + (c - 16) / 8;
        (1 << lg) + ((c - 16) % 8 + 1) * (1 << (lg - 3))
    }
}

struct Class {
    size: usize,
    /// log2 of slots per page.
    shift: u32,
    pages: Vec<Box<[u8]>>,
    free: Vec<u32>,
    /// Slots ever handed out (bump index).
    next: u32,
    live: u32,
}

impl Class {
    fn new(c: usize) -> Class {
        let size = class_size(c);
        Class {
            size,
            shift: (PAGE / size).ilog2(),
            pages: Vec::new(),
            free: Vec::new(),
            next: 0,
            live: 0,
        }
    }

    fn alloc(&mut self) -> Option<u32> {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                if self.next >= IDX_MASK {
                    return None;
                }
                let i = self.next;
                if (i >> self.shift) as usize >= self.pages.len() {
                    self.pages
                        .push(vec![0u8; self.size << self.shift].into_boxed_slice());
                }
                self.next += 1;
                i
            }
        };
        self.live += 1;
        Some(idx)
    }

    fn free(&mut self, idx: u32) {
        self.live -= 1;
        if self.live == 0 {
            // Empty class: give every page back but the first, so a key that keeps coming
            // and going (SET then DEL) does not allocate and free a page each time.
            self.pages.truncate(1);
            self.free = Vec::new();
            self.next = 0;
        } else {
            self.free.push(idx);
        }
    }

    /// Bytes of the slots held in pages but not in use.
    fn spare(&self) -> usize {
        ((self.pages.len() << self.shift) - self.live as usize) * self.size
    }

    #[inline]
    fn range(&self, idx: u32) -> (usize, usize) {
        let page = (idx >> self.shift) as usize;
        let off = (idx as usize & ((1 << self.shift) - 1)) * self.size;
        (page, off)
    }
}

/// The arena of one database.
pub struct Arena {
    classes: Vec<Class>,
    boxed: Vec<Option<Box<[u8]>>>,
    boxed_free: Vec<u32>,
    /// Sum of the classes' `spare()`, kept up to date by `alloc` and `free`.
    spare: usize,
}

impl Default for Arena {
    fn default() -> Self {
        Arena {
            classes: (0..NCLASSES).map(Class::new).collect(),
            boxed: Vec::new(),
            boxed_free: Vec::new(),
            spare: 0,
        }
    }
}

#[inline]
fn split(loc: Loc) -> (u32, u32) {
    (loc >> IDX_BITS, loc & IDX_MASK)
}

impl Arena {
    /// A slot of at least `len` bytes (contents unspecified).
    pub fn alloc(&mut self, len: usize) -> Loc {
        if let Some(c) = class_of(len) {
            // A full class (2^26 slots) spills into the next larger ones, then to boxes.
            for (i, class) in self.classes.iter_mut().enumerate().skip(c) {
                let before = class.spare();
                if let Some(idx) = class.alloc() {
                    self.spare = self.spare + class.spare() - before;
                    return (i as u32) << IDX_BITS | idx;
                }
            }
        }
        self.alloc_boxed(len)
    }

    fn alloc_boxed(&mut self, len: usize) -> Loc {
        let b = Some(vec![0u8; len].into_boxed_slice());
        let idx = match self.boxed_free.pop() {
            Some(i) => {
                if let Some(slot) = self.boxed.get_mut(i as usize) {
                    *slot = b;
                }
                i
            }
            None => {
                // 2^26 boxed entries (each > 2 KiB) is beyond any memory we run with.
                assert!(
                    self.boxed.len() < IDX_MASK as usize,
                    "arena: too many boxed entries"
                );
                self.boxed.push(b);
                (self.boxed.len() - 1) as u32
            }
        };
        BOXED << IDX_BITS | idx
    }

    /// Releases the slot at `loc`.
    pub fn free(&mut self, loc: Loc) {
        let (c, idx) = split(loc);
        if c == BOXED {
            if let Some(slot) = self.boxed.get_mut(idx as usize) {
                *slot = None;
                self.boxed_free.push(idx);
            }
        } else if let Some(class) = self.classes.get_mut(c as usize) {
            let before = class.spare();
            class.free(idx);
            self.spare = self.spare + class.spare() - before;
        }
    }

    /// True if an entry of `len` bytes belongs in the slot at `loc` (same class, or a box
    /// of exactly that size), so it can be rewritten in place.
    pub fn fits(&self, loc: Loc, len: usize) -> bool {
        let (c, idx) = split(loc);
        if c == BOXED {
            self.boxed
                .get(idx as usize)
                .and_then(|b| b.as_ref())
                .is_some_and(|b| b.len() == len)
        } else {
            class_of(len) == Some(c as usize)
        }
    }

    /// The slot's bytes (the whole slot: entries describe their own length).
    #[inline]
    pub fn get(&self, loc: Loc) -> &[u8] {
        let (c, idx) = split(loc);
        if c == BOXED {
            return self
                .boxed
                .get(idx as usize)
                .and_then(|b| b.as_deref())
                .unwrap_or_default();
        }
        let Some(class) = self.classes.get(c as usize) else {
            return &[];
        };
        let (page, off) = class.range(idx);
        class
            .pages
            .get(page)
            .and_then(|p| p.get(off..off + class.size))
            .unwrap_or_default()
    }

    /// Starts loading the first cache line of the entry at `loc` (a hint).
    #[inline]
    pub fn prefetch(&self, loc: Loc) {
        let b = self.get(loc);
        if b.is_empty() {
            return;
        }
        crate::runtime::prefetch::prefetch(b.as_ptr());
        // An entry that runs into the next cache line (most small entries do, from where
        // they sit in their page): that line too, for the key's compare and the value's
        // copy or overwrite. At most two lines.
        let next = 64 - (b.as_ptr() as usize) % 64;
        if let Some(rest) = b.get(next..).filter(|r| !r.is_empty()) {
            crate::runtime::prefetch::prefetch(rest.as_ptr());
        }
    }

    #[inline]
    pub fn get_mut(&mut self, loc: Loc) -> &mut [u8] {
        let (c, idx) = split(loc);
        if c == BOXED {
            return self
                .boxed
                .get_mut(idx as usize)
                .and_then(|b| b.as_deref_mut())
                .unwrap_or_default();
        }
        let Some(class) = self.classes.get_mut(c as usize) else {
            return &mut [];
        };
        let (page, off) = class.range(idx);
        let size = class.size;
        class
            .pages
            .get_mut(page)
            .and_then(|p| p.get_mut(off..off + size))
            .unwrap_or_default()
    }

    /// True if `loc` is a boxed (oversized) entry.
    pub fn is_boxed(loc: Loc) -> bool {
        split(loc).0 == BOXED
    }

    /// Bytes of page slots not in use: reusable without allocating.
    pub fn spare_bytes(&self) -> usize {
        self.spare
    }

    /// Bytes held in pages and boxes (for tests and memory accounting).
    pub fn reserved_bytes(&self) -> usize {
        let pages: usize = self
            .classes
            .iter()
            .map(|c| c.pages.len() * (c.size << c.shift))
            .sum();
        let boxed: usize = self.boxed.iter().flatten().map(|b| b.len()).sum();
        pages + boxed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_monotonic_and_tight() {
        for len in 1..=MAX_CLASS_BYTES {
            let c = class_of(len).unwrap();
            assert!(c < NCLASSES);
            assert!(class_size(c) >= len, "{len}");
            if c > 0 {
                assert!(class_size(c - 1) < len, "{len} could use a smaller class");
            }
        }
        assert_eq!(class_of(52).map(class_size), Some(52));
        assert_eq!(class_of(MAX_CLASS_BYTES + 1), None);
    }

    #[test]
    fn reuse_after_free() {
        let mut a = Arena::default();
        let x = a.alloc(50);
        let y = a.alloc(50);
        assert_ne!(x, y);
        a.get_mut(x)[..3].copy_from_slice(b"abc");
        a.get_mut(y)[..3].copy_from_slice(b"xyz");
        assert_eq!(&a.get(x)[..3], b"abc");
        a.free(x);
        let spare = a.spare_bytes();
        let z = a.alloc(49);
        assert_eq!(z, x, "a freed slot of the same class is reused first");
        assert_eq!(a.spare_bytes(), spare - 52);
        assert_eq!(&a.get(y)[..3], b"xyz");
        assert!(a.fits(z, 52) && !a.fits(z, 53));
    }

    #[test]
    fn many_pages_and_empty_class_releases_them() {
        let mut a = Arena::default();
        let locs: Vec<Loc> = (0..10_000u32)
            .map(|i| {
                let l = a.alloc(20);
                a.get_mut(l)[..4].copy_from_slice(&i.to_le_bytes());
                l
            })
            .collect();
        for (i, l) in locs.iter().enumerate() {
            assert_eq!(a.get(*l)[..4], (i as u32).to_le_bytes());
        }
        assert!(a.reserved_bytes() >= 10_000 * 20);
        for l in locs {
            a.free(l);
        }
        assert!(a.reserved_bytes() <= PAGE, "all pages but one released");
        assert_eq!(
            a.spare_bytes(),
            a.reserved_bytes(),
            "the kept page is all spare"
        );
        let l = a.alloc(20);
        assert_eq!(l & IDX_MASK, 0, "an emptied class starts over");
    }

    #[test]
    fn huge_entries_are_boxed() {
        let mut a = Arena::default();
        let l = a.alloc(MAX_CLASS_BYTES + 1);
        assert!(Arena::is_boxed(l));
        assert_eq!(a.get(l).len(), MAX_CLASS_BYTES + 1);
        assert!(a.fits(l, MAX_CLASS_BYTES + 1) && !a.fits(l, MAX_CLASS_BYTES));
        a.get_mut(l)[MAX_CLASS_BYTES] = 7;
        assert_eq!(a.get(l)[MAX_CLASS_BYTES], 7);
        a.free(l);
        let m = a.alloc(1 << 20);
        assert_eq!(m, l, "boxed ids are reused");
        assert_eq!(a.get(m).len(), 1 << 20);
    }
}
