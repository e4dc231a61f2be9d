//! List values, binary safe, packed in chunks as Redis's quicklist of listpacks: a
//! `VecDeque` of chunks, each one heap block of up to [`CHUNK_BYTES`] holding its elements
//! back to back as `[length][bytes][length]` (1–2 length bytes each side, so a chunk is
//! walked from either end); an element over [`BIG`] bytes is a chunk of its own, kept as
//! `Bytes`. Push and pop at both ends touch one end chunk: O(1) (a head push or pop moves
//! at most one chunk's bytes, as a listpack does); an index walks the chunks' counts from
//! the nearer end, then one chunk; changes in the middle rebuild one chunk. A 5M-element
//! list of short elements takes ~5 bytes an element (a `VecDeque<Bytes>` took 32 plus an
//! allocation each, ~60).
//!
//! The encoding name follows Redis 7.2: `listpack` while the elements would fit one 8 KiB
//! listpack (`list-max-listpack-size -2`), `quicklist` beyond; a quicklist shrinking to half
//! a listpack converts back (7.2's `listTypeTryConvertQuicklist`). The listpack size is an
//! estimate kept incrementally from Redis's entry encoding (integer entries are compact),
//! so the switch happens at the same element for typical data. Owned by the key's shard
//! thread.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::limits::LIST_MAX_LISTPACK_BYTES;
use super::{err, norm_range};
use crate::protocol::parse_i64;

/// Listpack header (total bytes + count) and end byte.
const LP_OVERHEAD: usize = 6 + 1;

/// A packed chunk takes no element that would grow it past this many bytes.
pub const CHUNK_BYTES: usize = 4096;
/// Elements longer than this are a chunk of their own (and are never copied on read).
/// Below 2^14, so a packed length fits two 7-bit bytes.
pub const BIG: usize = 1024;

/// Bytes one element takes in a listpack: encoding header + payload + back-length.
fn lp_entry_bytes(b: &[u8]) -> usize {
    let enc_len = match parse_i64(b) {
        Some(i) if b.len() <= 20 => match i {
            0..=127 => 1,
            -4096..=4095 => 2,
            -32768..=32767 => 3,
            -8_388_608..=8_388_607 => 4,
            -2_147_483_648..=2_147_483_647 => 5,
            _ => 9,
        },
        _ => {
            let n = b.len();
            let hdr = if n < 64 {
                1
            } else if n < 4096 {
                2
            } else {
                5
            };
            hdr + n
        }
    };
    let backlen = match enc_len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        2_097_152..=268_435_455 => 4,
        _ => 5,
    };
    enc_len + backlen
}

// ---- packed entries: [len fwd][bytes][len back] ----
//
// Forward length: one byte `n` (n < 128), or `n & 0x7f | 0x80`, `n >> 7`.
// Back length, read from the entry's end: one byte `n` (n < 128), or `n & 0x7f`,
// `n >> 7 | 0x80` (the last byte has the high bit set when there are two).

fn len_bytes(n: usize) -> usize {
    if n < 128 {
        1
    } else {
        2
    }
}

/// Bytes a packed entry of an `n`-byte element takes.
fn entry_size(n: usize) -> usize {
    n + 2 * len_bytes(n)
}

/// Writes the entry for `v` into `out`, which is exactly `entry_size(v.len())` long.
fn write_entry(out: &mut [u8], v: &[u8]) {
    let n = v.len();
    let (lo, hi) = ((n & 0x7f) as u8, (n >> 7) as u8);
    let k = len_bytes(n);
    let (head, rest) = out.split_at_mut(k.min(out.len()));
    let (body, tail) = rest.split_at_mut(n.min(rest.len()));
    body.copy_from_slice(v.get(..body.len()).unwrap_or_default());
    if k == 1 {
        head.fill(lo);
        tail.fill(lo);
    } else {
        head.copy_from_slice(&[lo | 0x80, hi]);
        tail.copy_from_slice(&[lo, hi | 0x80]);
    }
}

/// Appends the entry for `v` to `buf`.
fn append_entry(buf: &mut Vec<u8>, v: &[u8]) {
    let at = buf.len();
    buf.resize(at + entry_size(v.len()), 0);
    if let Some(out) = buf.get_mut(at..) {
        write_entry(out, v);
    }
}

/// The entry starting at `pos`: (element start, element length).
fn entry_fwd(buf: &[u8], pos: usize) -> Option<(usize, usize)> {
    let b0 = usize::from(*buf.get(pos)?);
    if b0 < 0x80 {
        return Some((pos + 1, b0));
    }
    let b1 = usize::from(*buf.get(pos + 1)?);
    Some((pos + 2, (b0 & 0x7f) | (b1 << 7)))
}

/// The entry ending at `end`: (element start, element length).
fn entry_back(buf: &[u8], end: usize) -> Option<(usize, usize)> {
    let last = usize::from(*buf.get(end.checked_sub(1)?)?);
    let (n, k) = if last < 0x80 {
        (last, 1)
    } else {
        let prev = usize::from(*buf.get(end.checked_sub(2)?)?);
        (prev | ((last & 0x7f) << 7), 2)
    };
    Some((end.checked_sub(k + n)?, n))
}

/// One run of a list's elements.
#[derive(Debug, Clone)]
enum Chunk {
    /// `n` packed entries, at most `CHUNK_BYTES` (a rebuilt chunk may end slightly over).
    Packed { buf: Vec<u8>, n: u32 },
    /// One element longer than `BIG`.
    Big(Bytes),
}

impl Chunk {
    fn len(&self) -> usize {
        match self {
            Chunk::Packed { n, .. } => *n as usize,
            Chunk::Big(_) => 1,
        }
    }

    fn entries(&self) -> Entries<'_> {
        match self {
            Chunk::Packed { buf, .. } => Entries {
                buf,
                front: 0,
                back: buf.len(),
                whole: false,
            },
            Chunk::Big(b) => Entries {
                buf: b,
                front: 0,
                back: 1,
                whole: true,
            },
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Chunk::Packed { buf, .. } => buf.capacity(),
            Chunk::Big(b) => b.len(),
        }
    }
}

/// The elements of one chunk, from either end.
struct Entries<'a> {
    buf: &'a [u8],
    front: usize,
    back: usize,
    /// A `Big` chunk: `buf` is the one element (`front < back` until it is taken).
    whole: bool,
}

impl<'a> Iterator for Entries<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.front >= self.back {
            return None;
        }
        if self.whole {
            self.front = self.back;
            return Some(self.buf);
        }
        let (s, n) = entry_fwd(self.buf, self.front)?;
        self.front = s + n + len_bytes(n);
        self.buf.get(s..s + n)
    }
}

impl DoubleEndedIterator for Entries<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.front >= self.back {
            return None;
        }
        if self.whole {
            self.back = self.front;
            return Some(self.buf);
        }
        let (s, n) = entry_back(self.buf, self.back)?;
        self.back = s.saturating_sub(len_bytes(n));
        self.buf.get(s..s + n)
    }
}

/// Packs `items` into chunks, in order.
fn pack<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut n = 0u32;
    for v in items {
        if v.len() > BIG {
            if n > 0 {
                out.push(Chunk::Packed {
                    buf: std::mem::take(&mut buf),
                    n,
                });
                n = 0;
            }
            out.push(Chunk::Big(Bytes::copy_from_slice(v)));
            continue;
        }
        if n > 0 && buf.len() + entry_size(v.len()) > CHUNK_BYTES {
            buf.shrink_to_fit();
            out.push(Chunk::Packed {
                buf: std::mem::take(&mut buf),
                n,
            });
            n = 0;
        }
        append_entry(&mut buf, v);
        n += 1;
    }
    if n > 0 {
        buf.shrink_to_fit();
        out.push(Chunk::Packed { buf, n });
    }
    out
}

/// LPOS options, as parsed by the handler (defaults: rank 1, no count, maxlen 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LposOpts {
    /// Which match to start from; negative searches from the tail. Never 0.
    pub rank: i64,
    /// `None`: reply with one position (or nil); `Some(0)`: all matches; `Some(n)`: up to n.
    pub count: Option<i64>,
    /// Compare at most this many elements; 0 means all.
    pub maxlen: i64,
}

impl Default for LposOpts {
    fn default() -> Self {
        LposOpts {
            rank: 1,
            count: None,
            maxlen: 0,
        }
    }
}

impl LposOpts {
    /// Redis's option checks, in its order (each checked when its option is parsed, so the
    /// handler may also call this after each option).
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.rank == 0 {
            return Err(err::LPOS_RANK_ZERO);
        }
        if self.count.is_some_and(|c| c < 0) {
            return Err(err::LPOS_COUNT_NEGATIVE);
        }
        if self.maxlen < 0 {
            return Err(err::LPOS_MAXLEN_NEGATIVE);
        }
        Ok(())
    }
}

/// Which end of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Head,
    Tail,
}

/// A Redis list.
#[derive(Debug, Clone, Default)]
pub struct List {
    chunks: VecDeque<Chunk>,
    len: usize,
    /// Estimated listpack bytes of all elements (entries only).
    lp_bytes: usize,
    /// Sum of element lengths.
    data_bytes: usize,
    quicklist: bool,
}

impl List {
    pub fn new() -> List {
        List::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// OBJECT ENCODING name (Redis 7.2 naming; 7.0 always says `quicklist`).
    pub fn encoding(&self) -> &'static str {
        if self.quicklist {
            "quicklist"
        } else {
            "listpack"
        }
    }

    /// Heap bytes: the chunk ring and every chunk's block.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Chunk>()
            + self.chunks.iter().map(Chunk::heap_bytes).sum::<usize>()
    }

    fn added(&mut self, b: &[u8]) {
        self.len += 1;
        self.lp_bytes += lp_entry_bytes(b);
        self.data_bytes += b.len();
        if !self.quicklist && self.lp_bytes + LP_OVERHEAD > LIST_MAX_LISTPACK_BYTES {
            self.quicklist = true;
        }
    }

    fn removed(&mut self, b: &[u8]) {
        self.len = self.len.saturating_sub(1);
        self.lp_bytes = self.lp_bytes.saturating_sub(lp_entry_bytes(b));
        self.data_bytes = self.data_bytes.saturating_sub(b.len());
        if self.quicklist && self.lp_bytes + LP_OVERHEAD <= LIST_MAX_LISTPACK_BYTES / 2 {
            self.quicklist = false;
        }
    }

    /// Recomputes the counts after the chunks were rebuilt.
    fn recount(&mut self) {
        let (mut len, mut lp, mut data) = (0, 0, 0);
        for v in self.iter() {
            len += 1;
            lp += lp_entry_bytes(v);
            data += v.len();
        }
        (self.len, self.lp_bytes, self.data_bytes) = (len, lp, data);
        if !self.quicklist && self.lp_bytes + LP_OVERHEAD > LIST_MAX_LISTPACK_BYTES {
            self.quicklist = true;
        }
        if self.quicklist && self.lp_bytes + LP_OVERHEAD <= LIST_MAX_LISTPACK_BYTES / 2 {
            self.quicklist = false;
        }
    }

    /// LPUSH / RPUSH one element (copied in).
    pub fn push(&mut self, end: End, v: impl AsRef<[u8]>) {
        let v = v.as_ref();
        self.added(v);
        if v.len() > BIG {
            let c = Chunk::Big(Bytes::copy_from_slice(v));
            match end {
                End::Head => self.chunks.push_front(c),
                End::Tail => self.chunks.push_back(c),
            }
            return;
        }
        let need = entry_size(v.len());
        let c = match end {
            End::Head => self.chunks.front_mut(),
            End::Tail => self.chunks.back_mut(),
        };
        if let Some(Chunk::Packed { buf, n }) = c {
            if buf.len() + need <= CHUNK_BYTES {
                match end {
                    End::Tail => append_entry(buf, v),
                    End::Head => {
                        let old = buf.len();
                        buf.resize(old + need, 0);
                        buf.copy_within(0..old, need);
                        if let Some(out) = buf.get_mut(..need) {
                            write_entry(out, v);
                        }
                    }
                }
                *n += 1;
                return;
            }
        }
        let mut buf = Vec::new();
        append_entry(&mut buf, v);
        let c = Chunk::Packed { buf, n: 1 };
        match end {
            End::Head => self.chunks.push_front(c),
            End::Tail => self.chunks.push_back(c),
        }
    }

    /// LPOP / RPOP one element.
    pub fn pop(&mut self, end: End) -> Option<Bytes> {
        let c = match end {
            End::Head => self.chunks.front_mut(),
            End::Tail => self.chunks.back_mut(),
        }?;
        let (v, emptied) = match c {
            Chunk::Big(b) => (std::mem::take(b), true),
            Chunk::Packed { buf, n } => {
                let v = match end {
                    End::Head => {
                        let (s, len) = entry_fwd(buf, 0)?;
                        let v = Bytes::copy_from_slice(buf.get(s..s + len)?);
                        buf.drain(..(s + len + len_bytes(len)).min(buf.len()));
                        v
                    }
                    End::Tail => {
                        let (s, len) = entry_back(buf, buf.len())?;
                        let v = Bytes::copy_from_slice(buf.get(s..s + len)?);
                        buf.truncate(s.saturating_sub(len_bytes(len)));
                        v
                    }
                };
                *n = n.saturating_sub(1);
                (v, *n == 0)
            }
        };
        if emptied {
            match end {
                End::Head => self.chunks.pop_front(),
                End::Tail => self.chunks.pop_back(),
            };
            if self.chunks.capacity() > 64 && self.chunks.len() < self.chunks.capacity() / 4 {
                self.chunks.shrink_to(self.chunks.len() * 2);
            }
        }
        self.removed(&v);
        Some(v)
    }

    /// LPOP / RPOP with count: up to `count` elements in pop order.
    pub fn pop_count(&mut self, end: End, count: usize) -> Vec<Bytes> {
        let n = count.min(self.len());
        (0..n).filter_map(|_| self.pop(end)).collect()
    }

    fn abs_index(&self, index: i64) -> Option<usize> {
        let len = i64::try_from(self.len()).ok()?;
        let i = if index < 0 {
            index.checked_add(len)?
        } else {
            index
        };
        if (0..len).contains(&i) {
            usize::try_from(i).ok()
        } else {
            None
        }
    }

    /// The chunk holding element `i` (< len) and `i`'s position in it, walking the chunk
    /// counts from the nearer end.
    fn locate(&self, i: usize) -> Option<(usize, usize)> {
        if i < self.len / 2 {
            let mut left = i;
            for (ci, c) in self.chunks.iter().enumerate() {
                if left < c.len() {
                    return Some((ci, left));
                }
                left -= c.len();
            }
            None
        } else {
            // Elements after `i`.
            let mut right = self.len.checked_sub(i + 1)?;
            for (ci, c) in self.chunks.iter().enumerate().rev() {
                if right < c.len() {
                    return Some((ci, c.len() - 1 - right));
                }
                right -= c.len();
            }
            None
        }
    }

    /// LINDEX (negative counts from the tail).
    pub fn get(&self, index: i64) -> Option<&[u8]> {
        let (ci, k) = self.locate(self.abs_index(index)?)?;
        self.chunks.get(ci)?.entries().nth(k)
    }

    /// Rebuilds chunk `ci` with element `k` replaced by `v` (`insert`: `v` goes in at `k`).
    fn rebuild(&mut self, ci: usize, k: usize, v: &[u8], insert: bool) {
        let Some(old) = self.chunks.remove(ci) else {
            return;
        };
        let mut items: Vec<&[u8]> = old.entries().collect();
        if insert {
            items.insert(k.min(items.len()), v);
        } else if let Some(slot) = items.get_mut(k) {
            *slot = v;
        }
        for (j, c) in pack(items).into_iter().enumerate() {
            self.chunks.insert(ci + j, c);
        }
    }

    /// LSET: `ERR index out of range` when outside (the missing key is the handler's case).
    pub fn set(&mut self, index: i64, v: impl AsRef<[u8]>) -> Result<(), &'static str> {
        let v = v.as_ref();
        let i = self.abs_index(index).ok_or(err::INDEX_OUT_OF_RANGE)?;
        let (ci, k) = self.locate(i).ok_or(err::INDEX_OUT_OF_RANGE)?;
        let old = self
            .chunks
            .get(ci)
            .and_then(|c| c.entries().nth(k))
            .map(<[u8]>::to_vec)
            .ok_or(err::INDEX_OUT_OF_RANGE)?;
        self.rebuild(ci, k, v, false);
        self.added(v);
        self.removed(&old);
        Ok(())
    }

    /// LINSERT BEFORE|AFTER the first element equal to `pivot`; the new length, or `None`
    /// when the pivot is absent (the reply is then -1).
    pub fn insert(&mut self, pivot: &[u8], before: bool, v: impl AsRef<[u8]>) -> Option<usize> {
        let v = v.as_ref();
        let (ci, k) = self
            .chunks
            .iter()
            .enumerate()
            .find_map(|(ci, c)| c.entries().position(|x| x == pivot).map(|k| (ci, k)))?;
        let at = if before { k } else { k + 1 };
        self.rebuild(ci, at, v, true);
        self.added(v);
        Some(self.len())
    }

    /// Keeps the elements for which `keep(i)` holds (`i`: position from the head).
    fn retain_positions(&mut self, mut keep: impl FnMut(usize) -> bool) {
        let old = std::mem::take(&mut self.chunks);
        let mut i = 0;
        let kept = old.iter().flat_map(Chunk::entries).filter(|_| {
            let k = keep(i);
            i += 1;
            k
        });
        self.chunks = pack(kept).into();
        self.recount();
    }

    /// LREM: removes up to `|count|` elements equal to `v` from the head (`count > 0`), the
    /// tail (`count < 0`) or all of them (`count == 0`); returns how many went.
    pub fn remove(&mut self, count: i64, v: &[u8]) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
        };
        // The range of positions the first (or last) `limit` matches span, and how many.
        let mut n = 0;
        let mut edge = None;
        if count >= 0 {
            for (i, x) in self.iter().enumerate() {
                if n >= limit {
                    break;
                }
                if x == v {
                    n += 1;
                    edge = Some(i);
                }
            }
        } else {
            let last = self.len.saturating_sub(1);
            for (j, x) in self.iter().rev().enumerate() {
                if n >= limit {
                    break;
                }
                if x == v {
                    n += 1;
                    edge = Some(last - j);
                }
            }
        }
        let Some(edge) = edge else {
            return 0;
        };
        // Matches from the head up to `edge` (count >= 0) or from `edge` to the tail go.
        let mut matched = Vec::with_capacity(self.len);
        matched.extend(self.iter().map(|x| x == v));
        self.retain_positions(|i| {
            let doomed = matched.get(i).copied().unwrap_or(false)
                && if count >= 0 { i <= edge } else { i >= edge };
            !doomed
        });
        n
    }

    /// Drops `k` elements from one end: whole chunks, then single pops.
    fn drop_end(&mut self, end: End, mut k: usize) {
        while k > 0 {
            let c = match end {
                End::Head => self.chunks.front(),
                End::Tail => self.chunks.back(),
            };
            let Some(c) = c else { break };
            if c.len() <= k {
                k -= c.len();
                let gone = match end {
                    End::Head => self.chunks.pop_front(),
                    End::Tail => self.chunks.pop_back(),
                };
                if let Some(gone) = gone {
                    for x in gone.entries() {
                        self.removed(x);
                    }
                }
            } else {
                self.pop(end);
                k -= 1;
            }
        }
    }

    /// LTRIM with Redis's index rules; an empty range empties the list (the handler then
    /// deletes the key).
    pub fn trim(&mut self, start: i64, stop: i64) {
        match norm_range(start, stop, self.len()) {
            None => *self = List::default(),
            Some((s, e)) => {
                let after = self.len.saturating_sub(e + 1);
                self.drop_end(End::Tail, after);
                self.drop_end(End::Head, s);
            }
        }
    }

    /// LRANGE with Redis's index rules. The short elements are copied into one block that
    /// the returned `Bytes` share; long ones are shared as they are.
    pub fn range(&self, start: i64, stop: i64) -> Vec<Bytes> {
        let Some((s, e)) = norm_range(start, stop, self.len()) else {
            return Vec::new();
        };
        let Some((ci, k)) = self.locate(s) else {
            return Vec::new();
        };
        let want = e + 1 - s;
        // Each element: a shared long one, or where its bytes are in `block`.
        enum Part {
            Shared(Bytes),
            At(usize, usize),
        }
        let mut parts = Vec::with_capacity(want);
        let mut block = BytesMut::new();
        'chunks: for (j, c) in self.chunks.range(ci..).enumerate() {
            let skip = if j == 0 { k } else { 0 };
            match c {
                Chunk::Big(b) if skip == 0 => parts.push(Part::Shared(b.clone())),
                Chunk::Big(_) => {}
                Chunk::Packed { .. } => {
                    for x in c.entries().skip(skip) {
                        if parts.len() >= want {
                            break 'chunks;
                        }
                        parts.push(Part::At(block.len(), x.len()));
                        block.extend_from_slice(x);
                    }
                }
            }
            if parts.len() >= want {
                break;
            }
        }
        let block = block.freeze();
        parts
            .into_iter()
            .map(|p| match p {
                Part::Shared(b) => b,
                Part::At(at, n) => block.slice(at..at + n),
            })
            .collect()
    }

    /// Elements head to tail.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &[u8]> + '_ {
        self.chunks.iter().flat_map(Chunk::entries)
    }

    /// Elements head to tail from index `from` (whole chunks before it are passed over by
    /// their counts, not element by element).
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &[u8]> + '_ {
        let mut skip = from;
        let mut first = self.chunks.len();
        for (i, c) in self.chunks.iter().enumerate() {
            if skip < c.len() {
                first = i;
                break;
            }
            skip -= c.len();
        }
        self.chunks
            .range(first..)
            .flat_map(Chunk::entries)
            .skip(skip)
    }

    /// LPOS: positions (from the head) of matches of `v`, by Redis's RANK/COUNT/MAXLEN
    /// rules. With `count == None` at most one position is returned (reply: it or nil).
    /// Redis 7.0 reads RANK -9223372036854775808 as "first match from the tail"; so do we.
    pub fn pos(&self, v: &[u8], opts: LposOpts) -> Result<Vec<usize>, &'static str> {
        opts.validate()?;
        let from_tail = opts.rank < 0;
        let rank = if opts.rank == i64::MIN {
            1
        } else {
            opts.rank.unsigned_abs()
        };
        let want = match opts.count {
            None => 1,
            Some(0) => u64::MAX,
            Some(c) => c.unsigned_abs(),
        };
        let maxlen = if opts.maxlen == 0 {
            usize::MAX
        } else {
            usize::try_from(opts.maxlen).unwrap_or(usize::MAX)
        };
        let len = self.len();
        let mut out = Vec::new();
        let mut matches: u64 = 0;
        let mut scan = |k: usize, x: &[u8]| {
            if x == v {
                matches += 1;
                if matches >= rank {
                    out.push(if from_tail { len - 1 - k } else { k });
                    if out.len() as u64 >= want {
                        return false;
                    }
                }
            }
            true
        };
        if from_tail {
            for (k, x) in self.iter().rev().take(maxlen).enumerate() {
                if !scan(k, x) {
                    break;
                }
            }
        } else {
            for (k, x) in self.iter().take(maxlen).enumerate() {
                if !scan(k, x) {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn list(items: &[&str]) -> List {
        let mut l = List::new();
        for i in items {
            l.push(End::Tail, b(i));
        }
        l
    }

    fn strs(v: Vec<Bytes>) -> Vec<String> {
        v.into_iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn push_pop_both_ends() {
        let mut l = List::new();
        l.push(End::Head, b("b"));
        l.push(End::Head, b("a"));
        l.push(End::Tail, b("c"));
        assert_eq!(strs(l.range(0, -1)), ["a", "b", "c"]);
        assert_eq!(l.pop(End::Tail), Some(b("c")));
        assert_eq!(l.pop(End::Head), Some(b("a")));
        assert_eq!(l.pop_count(End::Head, 5), vec![b("b")]);
        assert!(l.is_empty());
        assert_eq!(l.pop(End::Tail), None);
        assert!(l.pop_count(End::Tail, 3).is_empty());
    }

    #[test]
    fn index_set_insert() {
        let mut l = list(&["a", "b", "c"]);
        assert_eq!(l.get(0), Some(&b"a"[..]));
        assert_eq!(l.get(-1), Some(&b"c"[..]));
        assert_eq!(l.get(-3), Some(&b"a"[..]));
        assert_eq!(l.get(3), None);
        assert_eq!(l.get(-4), None);
        assert_eq!(l.get(i64::MIN), None);
        assert_eq!(l.set(-1, b("C")), Ok(()));
        assert_eq!(l.set(3, b("x")), Err(err::INDEX_OUT_OF_RANGE));
        assert_eq!(l.set(i64::MIN, b("x")), Err(err::INDEX_OUT_OF_RANGE));
        assert_eq!(l.insert(b"b", true, b("x")), Some(4));
        assert_eq!(l.insert(b"C", false, b("y")), Some(5));
        assert_eq!(l.insert(b"zz", false, b("y")), None);
        assert_eq!(strs(l.range(0, -1)), ["a", "x", "b", "C", "y"]);
    }

    #[test]
    fn lrem_count_sign_rules() {
        let base = list(&["a", "b", "a", "c", "a", "b", "a"]);
        let mut l = base.clone();
        assert_eq!(l.remove(2, b"a"), 2);
        assert_eq!(strs(l.range(0, -1)), ["b", "c", "a", "b", "a"]);
        let mut l = base.clone();
        assert_eq!(l.remove(-2, b"a"), 2);
        assert_eq!(strs(l.range(0, -1)), ["a", "b", "a", "c", "b"]);
        let mut l = base.clone();
        assert_eq!(l.remove(0, b"a"), 4);
        assert_eq!(strs(l.range(0, -1)), ["b", "c", "b"]);
        let mut l = base.clone();
        assert_eq!(l.remove(i64::MIN, b"b"), 2);
        assert_eq!(l.remove(1, b"zz"), 0);
        assert_eq!(l.len(), 5);
    }

    #[test]
    fn ltrim_and_lrange_index_rules() {
        let l = list(&["0", "1", "2", "3", "4"]);
        assert_eq!(strs(l.range(1, 2)), ["1", "2"]);
        assert_eq!(strs(l.range(-2, -1)), ["3", "4"]);
        assert_eq!(strs(l.range(-100, 100)), ["0", "1", "2", "3", "4"]);
        assert!(l.range(3, 1).is_empty());
        assert!(l.range(5, 10).is_empty());
        let mut t = l.clone();
        t.trim(1, -2);
        assert_eq!(strs(t.range(0, -1)), ["1", "2", "3"]);
        let mut t = l.clone();
        t.trim(4, 1);
        assert!(t.is_empty());
        let mut t = l.clone();
        t.trim(-1, 100);
        assert_eq!(strs(t.range(0, -1)), ["4"]);
    }

    #[test]
    fn lpos_rules_match_redis() {
        // Same list and answers as redis-server 7.0.15: RPUSH l a b c a b a.
        let l = list(&["a", "b", "c", "a", "b", "a"]);
        let o = |rank, count, maxlen| LposOpts {
            rank,
            count,
            maxlen,
        };
        assert_eq!(l.pos(b"a", LposOpts::default()), Ok(vec![0]));
        assert_eq!(l.pos(b"a", o(2, Some(0), 0)), Ok(vec![3, 5]));
        assert_eq!(l.pos(b"a", o(-1, Some(2), 0)), Ok(vec![5, 3]));
        assert_eq!(l.pos(b"a", o(i64::MIN, None, 0)), Ok(vec![5]));
        assert_eq!(l.pos(b"a", o(i64::MAX, None, 0)), Ok(vec![]));
        assert_eq!(l.pos(b"a", o(1, Some(0), 3)), Ok(vec![0]));
        assert_eq!(l.pos(b"a", o(-1, Some(0), 2)), Ok(vec![5]));
        assert_eq!(l.pos(b"c", o(1, Some(1), 0)), Ok(vec![2]));
        assert_eq!(l.pos(b"z", o(1, Some(0), 0)), Ok(vec![]));
        assert_eq!(l.pos(b"a", o(0, None, 0)), Err(err::LPOS_RANK_ZERO));
        assert_eq!(
            l.pos(b"a", o(1, Some(-1), 0)),
            Err(err::LPOS_COUNT_NEGATIVE)
        );
        assert_eq!(l.pos(b"a", o(1, None, -1)), Err(err::LPOS_MAXLEN_NEGATIVE));
    }

    #[test]
    fn encoding_switches_at_8kb_and_back_at_half() {
        let mut l = List::new();
        // 100-byte strings take 2 + 100 + 1 = 103 bytes each: 79 fit (8137 + 7 <= 8192).
        for _ in 0..79 {
            l.push(End::Tail, b(&"x".repeat(100)));
        }
        assert_eq!(l.encoding(), "listpack");
        l.push(End::Tail, b(&"x".repeat(100)));
        assert_eq!(l.encoding(), "quicklist");
        // Back to listpack once at most half of 8 KiB: 39 * 103 + 7 = 4024.
        while l.len() > 40 {
            l.pop(End::Head);
            assert_eq!(l.encoding(), "quicklist");
        }
        l.pop(End::Head);
        assert_eq!(l.encoding(), "listpack");
        // One huge element goes straight to quicklist.
        let mut l = List::new();
        l.push(End::Head, b(&"y".repeat(9000)));
        assert_eq!(l.encoding(), "quicklist");
        assert!(l.heap_bytes() >= 9000);
        l.trim(1, 0);
        assert_eq!(l.encoding(), "listpack");
        // Small integers are compact: 2 bytes each.
        let mut l = List::new();
        for _ in 0..4000 {
            l.push(End::Tail, b("7"));
        }
        assert_eq!(l.encoding(), "listpack");
    }

    #[test]
    fn binary_safe() {
        let mut l = List::new();
        l.push(End::Tail, Bytes::from_static(b"\x00\xff"));
        assert_eq!(l.pos(b"\x00\xff", LposOpts::default()), Ok(vec![0]));
        assert_eq!(l.iter().count(), 1);
    }

    /// The packed list against a `VecDeque<Vec<u8>>` model, through every operation, with
    /// short, 127/128-byte (one/two length bytes) and long (own chunk) elements, so chunk
    /// boundaries, splits and rebuilds are all crossed.
    #[test]
    fn matches_a_plain_deque_model() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut l = List::new();
        let mut m: VecDeque<Vec<u8>> = VecDeque::new();
        for step in 0..20_000 {
            let r = next();
            let size = match r % 10 {
                0 => 127,
                1 => 128,
                2 => 2000,
                3 => BIG,
                4 => BIG + 1,
                _ => (r >> 8) as usize % 20,
            };
            let v: Vec<u8> = (0..size).map(|i| (i as u64 + r % 7) as u8).collect();
            let idx = ((r >> 16) % (m.len() as u64 + 3)) as i64 - 1;
            // `idx` as the list reads it (-1: the tail).
            let at = if idx < 0 { m.len() as i64 + idx } else { idx };
            let at = usize::try_from(at).ok().filter(|&i| i < m.len());
            match (r >> 32) % 14 {
                0..=2 => {
                    l.push(End::Tail, &v);
                    m.push_back(v);
                }
                3..=5 => {
                    l.push(End::Head, &v);
                    m.push_front(v);
                }
                6 => assert_eq!(l.pop(End::Head).map(|b| b.to_vec()), m.pop_front()),
                7 => assert_eq!(l.pop(End::Tail).map(|b| b.to_vec()), m.pop_back()),
                8 => {
                    let ok = l.set(idx, &v).is_ok();
                    assert_eq!(ok, at.is_some());
                    if let Some(i) = at {
                        m[i] = v;
                    }
                }
                9 => {
                    if let Some(p) = m.get(((r >> 40) as usize) % (m.len() + 1)).cloned() {
                        let before = r & 1 == 0;
                        assert_eq!(l.insert(&p, before, &v), Some(m.len() + 1));
                        let at = m.iter().position(|x| *x == p).unwrap();
                        m.insert(if before { at } else { at + 1 }, v);
                    }
                }
                10 if step % 5 == 0 => {
                    let count = (r >> 40) as i64 % 5 - 2;
                    let target = m.get(idx.max(0) as usize).cloned().unwrap_or_default();
                    let n = l.remove(count, &target);
                    let limit = if count == 0 {
                        usize::MAX
                    } else {
                        count.unsigned_abs() as usize
                    };
                    let mut removed = 0;
                    let mut keep: Vec<bool> = vec![true; m.len()];
                    let order: Vec<usize> = if count >= 0 {
                        (0..m.len()).collect()
                    } else {
                        (0..m.len()).rev().collect()
                    };
                    for i in order {
                        if removed < limit && m[i] == target {
                            keep[i] = false;
                            removed += 1;
                        }
                    }
                    let mut i = 0;
                    m.retain(|_| {
                        i += 1;
                        keep[i - 1]
                    });
                    assert_eq!(n, removed);
                }
                11 if step % 10 == 0 => {
                    let a = (r >> 40) as i64 % 8 - 2;
                    let b = -((r >> 48) as i64 % 8) - 1;
                    l.trim(a, b);
                    m = match norm_range(a, b, m.len()) {
                        None => VecDeque::new(),
                        Some((s, e)) => m.range(s..=e).cloned().collect(),
                    };
                }
                12 => {
                    let got = l.get(idx).map(<[u8]>::to_vec);
                    let want = at.and_then(|i| m.get(i)).cloned();
                    assert_eq!(got, want);
                }
                _ => {
                    let (a, b) = (idx, idx + (r >> 40) as i64 % 40);
                    let got: Vec<Vec<u8>> = l.range(a, b).iter().map(|x| x.to_vec()).collect();
                    let want: Vec<Vec<u8>> = match norm_range(a, b, m.len()) {
                        None => Vec::new(),
                        Some((s, e)) => m.range(s..=e).cloned().collect(),
                    };
                    assert_eq!(got, want, "step {step}");
                }
            }
            assert_eq!(l.len(), m.len(), "step {step}");
            if step % 500 == 0 {
                assert!(l.iter().eq(m.iter().map(|x| &x[..])));
                assert!(l.iter().rev().eq(m.iter().rev().map(|x| &x[..])));
                let mut fresh = l.clone();
                fresh.recount();
                assert_eq!(
                    (fresh.lp_bytes, fresh.data_bytes, fresh.quicklist),
                    (l.lp_bytes, l.data_bytes, l.quicklist),
                    "step {step}"
                );
            }
        }
    }

    #[test]
    fn small_elements_are_packed() {
        let mut l = List::new();
        for i in 0..100_000 {
            l.push(End::Tail, (i % 1000).to_string());
        }
        // ~3 bytes of digits + 2 length bytes each, in 4 KiB chunks.
        assert!(l.heap_bytes() < 100_000 * 6, "{}", l.heap_bytes());
        assert_eq!(l.pos(b"999", LposOpts::default()), Ok(vec![999]));
        assert_eq!(l.get(-1), Some(&b"999"[..]));
    }
}
