//! List values, binary safe: a `VecDeque<Bytes>` (O(1) push/pop at both ends, O(1) index,
//! O(min(i, n-i)) insert/remove in the middle). The encoding name follows Redis 7.2:
//! `listpack` while the elements would fit one 8 KiB listpack (`list-max-listpack-size -2`),
//! `quicklist` beyond; a quicklist shrinking to half a listpack converts back (7.2's
//! `listTypeTryConvertQuicklist`). The listpack size is an estimate kept incrementally from
//! Redis's entry encoding (integer entries are compact), so the switch happens at the same
//! element for typical data. Owned by the key's shard thread.

use std::collections::VecDeque;

use bytes::Bytes;

use super::limits::LIST_MAX_LISTPACK_BYTES;
use super::{err, norm_range};
use crate::protocol::parse_i64;

/// Listpack header (total bytes + count) and end byte.
const LP_OVERHEAD: usize = 6 + 1;

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
    items: VecDeque<Bytes>,
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
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// OBJECT ENCODING name (Redis 7.2 naming; 7.0 always says `quicklist`).
    pub fn encoding(&self) -> &'static str {
        if self.quicklist {
            "quicklist"
        } else {
            "listpack"
        }
    }

    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<Bytes>() + self.data_bytes + 16 * self.len()
    }

    fn added(&mut self, b: &[u8]) {
        self.lp_bytes += lp_entry_bytes(b);
        self.data_bytes += b.len();
        if !self.quicklist && self.lp_bytes + LP_OVERHEAD > LIST_MAX_LISTPACK_BYTES {
            self.quicklist = true;
        }
    }

    fn removed(&mut self, b: &[u8]) {
        self.lp_bytes = self.lp_bytes.saturating_sub(lp_entry_bytes(b));
        self.data_bytes = self.data_bytes.saturating_sub(b.len());
        if self.quicklist && self.lp_bytes + LP_OVERHEAD <= LIST_MAX_LISTPACK_BYTES / 2 {
            self.quicklist = false;
        }
    }

    fn recount(&mut self) {
        self.lp_bytes = self.items.iter().map(|b| lp_entry_bytes(b)).sum();
        self.data_bytes = self.items.iter().map(|b| b.len()).sum();
        if self.quicklist && self.lp_bytes + LP_OVERHEAD <= LIST_MAX_LISTPACK_BYTES / 2 {
            self.quicklist = false;
        }
    }

    /// LPUSH / RPUSH one element.
    pub fn push(&mut self, end: End, v: Bytes) {
        self.added(&v);
        match end {
            End::Head => self.items.push_front(v),
            End::Tail => self.items.push_back(v),
        }
    }

    /// LPOP / RPOP one element.
    pub fn pop(&mut self, end: End) -> Option<Bytes> {
        let v = match end {
            End::Head => self.items.pop_front(),
            End::Tail => self.items.pop_back(),
        }?;
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

    /// LINDEX (negative counts from the tail).
    pub fn get(&self, index: i64) -> Option<&Bytes> {
        self.items.get(self.abs_index(index)?)
    }

    /// LSET: `ERR index out of range` when outside (the missing key is the handler's case).
    pub fn set(&mut self, index: i64, v: Bytes) -> Result<(), &'static str> {
        let i = self.abs_index(index).ok_or(err::INDEX_OUT_OF_RANGE)?;
        let old = self
            .items
            .get_mut(i)
            .map(|slot| std::mem::replace(slot, v.clone()));
        match old {
            Some(old) => {
                self.added(&v);
                self.removed(&old);
                Ok(())
            }
            None => Err(err::INDEX_OUT_OF_RANGE),
        }
    }

    /// LINSERT BEFORE|AFTER the first element equal to `pivot`; the new length, or `None`
    /// when the pivot is absent (the reply is then -1).
    pub fn insert(&mut self, pivot: &[u8], before: bool, v: Bytes) -> Option<usize> {
        let i = self.items.iter().position(|x| x[..] == *pivot)?;
        self.added(&v);
        self.items.insert(if before { i } else { i + 1 }, v);
        Some(self.len())
    }

    /// LREM: removes up to `|count|` elements equal to `v` from the head (`count > 0`), the
    /// tail (`count < 0`) or all of them (`count == 0`); returns how many went.
    pub fn remove(&mut self, count: i64, v: &[u8]) -> usize {
        let limit = if count == 0 {
            usize::MAX
        } else {
            usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX)
        };
        let mut doomed = vec![false; self.len()];
        let mut n = 0;
        if count >= 0 {
            for (i, x) in self.items.iter().enumerate() {
                if n >= limit {
                    break;
                }
                if x[..] == *v {
                    if let Some(d) = doomed.get_mut(i) {
                        *d = true;
                    }
                    n += 1;
                }
            }
        } else {
            for (i, x) in self.items.iter().enumerate().rev() {
                if n >= limit {
                    break;
                }
                if x[..] == *v {
                    if let Some(d) = doomed.get_mut(i) {
                        *d = true;
                    }
                    n += 1;
                }
            }
        }
        if n > 0 {
            let mut i = 0;
            self.items.retain(|_| {
                let keep = !doomed.get(i).copied().unwrap_or(false);
                i += 1;
                keep
            });
            self.recount();
        }
        n
    }

    /// LTRIM with Redis's index rules; an empty range empties the list (the handler then
    /// deletes the key).
    pub fn trim(&mut self, start: i64, stop: i64) {
        match norm_range(start, stop, self.len()) {
            None => self.items.clear(),
            Some((s, e)) => {
                self.items.truncate(e + 1);
                self.items.drain(..s);
            }
        }
        self.recount();
    }

    /// LRANGE with Redis's index rules.
    pub fn range(&self, start: i64, stop: i64) -> Vec<Bytes> {
        match norm_range(start, stop, self.len()) {
            None => Vec::new(),
            Some((s, e)) => self.items.range(s..=e).cloned().collect(),
        }
    }

    /// Elements head to tail.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Bytes> + '_ {
        self.items.iter()
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
        for k in 0..len.min(maxlen) {
            let i = if from_tail { len - 1 - k } else { k };
            if self.items.get(i).is_some_and(|x| x[..] == *v) {
                matches += 1;
                if matches >= rank {
                    out.push(i);
                    if out.len() as u64 >= want {
                        break;
                    }
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
        assert_eq!(l.get(0), Some(&b("a")));
        assert_eq!(l.get(-1), Some(&b("c")));
        assert_eq!(l.get(-3), Some(&b("a")));
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
}
