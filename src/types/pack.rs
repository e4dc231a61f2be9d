//! The compact ("listpack") storage shared by small hashes, sets and sorted sets: a run of
//! byte strings in ONE exact-size heap block, each entry a LEB128 length followed by its
//! bytes (one length byte for the ≤ 64-byte entries compact forms hold). Like Redis's
//! listpack, lookups are linear scans and every change rewrites the block; the forms that
//! use it are bounded (≤ 512 entries of ≤ 64 bytes), so that stays cheap, and a 10-field
//! hash costs one ~200-byte block instead of a `Vec` of `Bytes` (32 bytes each plus one
//! allocation per field and value, plus the `Vec`'s doubling slack).
//!
//! The entry count lives in the block too (a 4-byte little-endian prefix; an empty pack
//! has no block at all), so a `Pack` is one fat pointer, 16 bytes: the keyspace stores
//! small collections unboxed in dense per-type vectors (see `shard::db`), where every
//! word of the handle counts once per key.
//!
//! Positions handed out by [`Pack::iter_at`] are byte offsets of an entry's header (past
//! the count prefix); they stay valid until the next change. An offset before the first
//! entry (0 included) names the first entry. Owned by the key's shard thread.

/// A sequence of byte strings packed into one exact-size block:
/// `[count u32 LE][len varint][bytes]...`, or no block when empty.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Pack {
    buf: Box<[u8]>,
}

/// Bytes of the count prefix.
const HDR: usize = 4;

impl std::fmt::Debug for Pack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(String::from_utf8_lossy))
            .finish()
    }
}

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn encoded_len(item: &[u8]) -> usize {
    let mut n = item.len();
    let mut h = 1;
    while n >= 0x80 {
        n >>= 7;
        h += 1;
    }
    h + item.len()
}

impl Pack {
    pub fn new() -> Pack {
        Pack::default()
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.buf
            .get(..HDR)
            .and_then(|b| b.try_into().ok())
            .map_or(0, |b| u32::from_le_bytes(b) as usize)
    }

    /// Bytes of the block (its heap size).
    /// Where the packed block starts (a prefetch hint for the snapshot walk).
    pub fn data_ptr(&self) -> *const u8 {
        self.buf.as_ptr()
    }

    pub fn heap_bytes(&self) -> usize {
        self.buf.len()
    }

    /// The entry whose header starts at `off`, and the offset of the next one.
    fn read(&self, off: usize) -> Option<(&[u8], usize)> {
        let mut len = 0usize;
        let mut shift = 0;
        let mut p = off.max(HDR);
        loop {
            let b = *self.buf.get(p)?;
            p += 1;
            len |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 56 {
                return None;
            }
        }
        let end = p.checked_add(len)?;
        Some((self.buf.get(p..end)?, end))
    }

    /// Entries in order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.iter_at().map(|(_, e)| e)
    }

    /// Entries in order with the offset of each one's header.
    pub fn iter_at(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        let mut off = HDR;
        std::iter::from_fn(move || {
            let (e, next) = self.read(off)?;
            let at = off;
            off = next;
            Some((at, e))
        })
    }

    /// The offset just past the entry at `off` (or the end of the block).
    pub fn next_offset(&self, off: usize) -> usize {
        self.read(off).map_or(self.buf.len(), |(_, next)| next)
    }

    /// Offset of the `i`-th entry (the end of the block when `i >= len`).
    #[cfg(test)]
    pub fn offset_of(&self, i: usize) -> usize {
        self.iter_at().nth(i).map_or(self.buf.len(), |(off, _)| off)
    }

    /// Replaces the bytes `start..end` (whole entries, `removed` of them) with `items`.
    pub fn splice(&mut self, start: usize, end: usize, removed: usize, items: &[&[u8]]) {
        let body = self.buf.get(HDR..).unwrap_or_default();
        let start = start.saturating_sub(HDR).min(body.len());
        let end = end.saturating_sub(HDR).clamp(start, body.len());
        let add: usize = items.iter().map(|i| encoded_len(i)).sum();
        let len = body.len() - (end - start) + add;
        if len == 0 {
            self.buf = Box::default();
            return;
        }
        let n = self.len().saturating_sub(removed) + items.len();
        let mut v = Vec::with_capacity(HDR + len);
        v.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        v.extend_from_slice(&body[..start]);
        for it in items {
            put_len(&mut v, it.len());
            v.extend_from_slice(it);
        }
        v.extend_from_slice(&body[end..]);
        self.buf = v.into_boxed_slice();
    }

    /// A listpack of `items`, built in one allocation (a loader's bulk path; `push` after
    /// `push` copies the whole buffer each time).
    pub fn from_items(items: &[&[u8]]) -> Pack {
        let mut p = Pack::new();
        p.push(items);
        p
    }

    /// Appends entries.
    pub fn push(&mut self, items: &[&[u8]]) {
        let end = self.buf.len();
        self.splice(end, end, 0, items);
    }

    /// Removes the `count` entries starting at offset `off`.
    pub fn remove_at(&mut self, off: usize, count: usize) {
        let mut end = off;
        for _ in 0..count {
            end = self.next_offset(end);
        }
        self.splice(off, end, count, &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_iter_splice() {
        let mut p = Pack::new();
        assert_eq!(p.len(), 0);
        assert_eq!(p.iter().count(), 0);
        let long = vec![7u8; 300];
        p.push(&[b"a", b"", &long, b"bc"]);
        assert_eq!(p.len(), 4);
        assert_eq!(p.heap_bytes(), 4 + 2 + 1 + (2 + 300) + 3);
        assert_eq!(std::mem::size_of::<Pack>(), 16);
        let all: Vec<&[u8]> = p.iter().collect();
        assert_eq!(all, vec![&b"a"[..], b"", &long[..], b"bc"]);
        // Replace the long entry with two short ones.
        let off = p.offset_of(2);
        let end = p.next_offset(off);
        p.splice(off, end, 1, &[b"x", b"yz"]);
        let all: Vec<&[u8]> = p.iter().collect();
        assert_eq!(all, vec![&b"a"[..], b"", b"x", b"yz", b"bc"]);
        assert_eq!(p.len(), 5);
        p.remove_at(p.offset_of(1), 2);
        let all: Vec<&[u8]> = p.iter().collect();
        assert_eq!(all, vec![&b"a"[..], b"yz", b"bc"]);
        assert_eq!(p.len(), 3);
        assert_eq!(p.offset_of(9), p.heap_bytes());
        p.remove_at(0, 3);
        assert_eq!(p.len(), 0);
        assert_eq!(p.heap_bytes(), 0);
    }
}
