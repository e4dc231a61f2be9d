//! Set values, binary safe. Three forms, as Redis 7.2: `intset` (sorted `Vec<i64>`) while every
//! member is an integer in `string2ll` form and there are at most 512; `listpack` (a
//! [`Pack`]: one heap block, insertion order) for small non-integer sets (at most 128 members, each at most 64 bytes);
//! `hashtable` ([`EntryTable`]) otherwise. Conversions only go towards `hashtable`. Also the set
//! algebra over several sets (SINTER/SUNION/SDIFF/SINTERCARD) and SCAN. Owned by the key's
//! shard thread.

use bytes::Bytes;

use super::limits::{self, SET_MAX_LISTPACK_ENTRIES, SET_MAX_LISTPACK_VALUE};
use super::pack::Pack;
use super::table::EntryTable;
use super::{random_positions, sampled_sum, Rng};
use crate::protocol::parse_i64;
use crate::util::glob::glob_match;

#[derive(Debug, Clone)]
enum Repr {
    Intset(Vec<i64>),
    Listpack(Pack),
    /// Boxed so a small set stays three words.
    Table(Box<EntryTable<Box<[u8]>>>),
}

/// A Redis set.
#[derive(Debug, Clone)]
pub struct Set {
    repr: Repr,
}

impl Default for Set {
    fn default() -> Self {
        Set::new()
    }
}

fn int_bytes(i: i64) -> Bytes {
    Bytes::from(i.to_string())
}

impl Set {
    /// An empty set (intset form, as Redis creates a set whose first member is an integer;
    /// the first non-integer member converts it).
    pub fn new() -> Set {
        Set {
            repr: Repr::Intset(Vec::new()),
        }
    }

    /// Builds a set from members (duplicates ignored), with the same conversions as SADD.
    pub fn from_members<I: IntoIterator<Item = Bytes>>(members: I) -> Set {
        let mut s = Set::new();
        for m in members {
            s.add(m);
        }
        s
    }

    /// A set read from a file (RDB, RESTORE) in one step, with the encoding and order
    /// `from_members` gives: a small set with a non-integer member is one listpack built in
    /// one allocation (the integers before the first other member sorted, as the intset
    /// they were, then the rest in order) instead of a copy per member. Repeated members
    /// take `from_members` (the loader refuses the set on the count).
    pub fn from_loaded(members: Vec<Bytes>) -> Set {
        let refs: Vec<&[u8]> = members.iter().map(|m| m.as_ref()).collect();
        match Set::packed_from(&refs) {
            Some(s) => s,
            None => Set::from_members(members),
        }
    }

    /// `from_loaded` for members as slices (copied only into the set).
    pub fn from_loaded_slices(members: &[&[u8]]) -> Set {
        match Set::packed_from(members) {
            Some(s) => s,
            None => Set::from_members(members.iter().map(|m| Bytes::copy_from_slice(m))),
        }
    }

    /// The one-listpack form of a loaded set (see `from_loaded`); `None` when it takes
    /// `from_members`' way (repeated members, only integers, too big for a listpack).
    fn packed_from(members: &[&[u8]]) -> Option<Set> {
        let mut refs: Vec<&[u8]> = members.to_vec();
        refs.sort_unstable();
        if refs.windows(2).any(|w| w.first() == w.get(1)) {
            return None;
        }
        let k = members.iter().position(|m| parse_i64(m).is_none())?;
        let (ints, rest) = members.split_at(k);
        let fits = members.len() <= SET_MAX_LISTPACK_ENTRIES
            && k <= limits::set_max_intset_entries()
            && rest.iter().all(|m| m.len() <= SET_MAX_LISTPACK_VALUE);
        if !fits {
            return None;
        }
        let mut sorted: Vec<i64> = ints.iter().filter_map(|m| parse_i64(m)).collect();
        sorted.sort_unstable();
        let int_b: Vec<Bytes> = sorted.into_iter().map(int_bytes).collect();
        let items: Vec<&[u8]> = int_b
            .iter()
            .map(|b| b.as_ref())
            .chain(rest.iter().copied())
            .collect();
        Some(Set {
            repr: Repr::Listpack(Pack::from_items(&items)),
        })
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Intset(v) => v.len(),
            Repr::Listpack(v) => v.len(),
            Repr::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self.repr {
            Repr::Intset(_) => "intset",
            Repr::Listpack(_) => "listpack",
            Repr::Table(_) => "hashtable",
        }
    }

    /// Approximate heap bytes.
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes_sampled(0)
    }

    /// `heap_bytes` with the members' own blocks estimated from `samples` of them (0: all).
    pub fn heap_bytes_sampled(&self, samples: usize) -> usize {
        match &self.repr {
            Repr::Intset(v) => v.capacity() * 8,
            Repr::Listpack(p) => p.heap_bytes(),
            Repr::Table(t) => {
                t.heap_bytes() + sampled_sum(t.iter().map(|m| m.len()), t.len(), samples)
            }
        }
    }

    /// SISMEMBER.
    pub fn contains(&self, member: &[u8]) -> bool {
        match &self.repr {
            Repr::Intset(v) => parse_i64(member).is_some_and(|i| v.binary_search(&i).is_ok()),
            Repr::Listpack(p) => p.iter().any(|m| m == member),
            Repr::Table(t) => t.contains(member),
        }
    }

    /// SMISMEMBER: one flag per member.
    pub fn contains_many<'a, I: IntoIterator<Item = &'a [u8]>>(&self, members: I) -> Vec<bool> {
        members.into_iter().map(|m| self.contains(m)).collect()
    }

    fn convert_to_table(&mut self, extra: usize) {
        let mut t = EntryTable::with_capacity(self.len() + extra);
        for m in self.iter() {
            t.insert_absent(boxed(m));
        }
        self.repr = Repr::Table(Box::new(t));
    }

    /// SADD one member; true when it was new.
    pub fn add(&mut self, member: Bytes) -> bool {
        if let Repr::Intset(v) = &mut self.repr {
            if let Some(i) = parse_i64(&member) {
                return match v.binary_search(&i) {
                    Ok(_) => false,
                    Err(pos) => {
                        v.insert(pos, i);
                        if v.len() > limits::set_max_intset_entries() {
                            self.convert_to_table(0);
                        }
                        true
                    }
                };
            }
            // A non-integer member: listpack if it still fits, else hashtable.
            if v.len() < SET_MAX_LISTPACK_ENTRIES && member.len() <= SET_MAX_LISTPACK_VALUE {
                let mut lp = Pack::new();
                let ints: Vec<Bytes> = v.iter().map(|&i| int_bytes(i)).collect();
                let refs: Vec<&[u8]> = ints.iter().map(|b| &b[..]).collect();
                lp.push(&refs);
                self.repr = Repr::Listpack(lp);
            } else {
                self.convert_to_table(1);
            }
        }
        if let Repr::Listpack(p) = &mut self.repr {
            if p.iter().any(|m| m == member) {
                return false;
            }
            if p.len() < SET_MAX_LISTPACK_ENTRIES && member.len() <= SET_MAX_LISTPACK_VALUE {
                p.push(&[&member]);
                return true;
            }
            self.convert_to_table(1);
        }
        match &mut self.repr {
            Repr::Table(t) => t.insert_absent(boxed(member)),
            // Unreachable: both compact forms were handled or converted above.
            Repr::Intset(_) | Repr::Listpack(_) => false,
        }
    }

    /// SREM one member; true when it existed.
    pub fn remove(&mut self, member: &[u8]) -> bool {
        match &mut self.repr {
            Repr::Intset(v) => match parse_i64(member).map(|i| v.binary_search(&i)) {
                Some(Ok(pos)) => {
                    v.remove(pos);
                    true
                }
                _ => false,
            },
            Repr::Listpack(p) => {
                let found = p.iter_at().find(|(_, m)| *m == member).map(|e| e.0);
                match found {
                    Some(off) => {
                        p.remove_at(off, 1);
                        true
                    }
                    None => false,
                }
            }
            Repr::Table(t) => t.remove(member).is_some(),
        }
    }

    fn at(&self, i: usize) -> Option<Bytes> {
        match &self.repr {
            Repr::Intset(v) => v.get(i).map(|&x| int_bytes(x)),
            Repr::Listpack(p) => p.iter().nth(i).map(Bytes::copy_from_slice),
            Repr::Table(t) => t.at(i).map(|m| Bytes::copy_from_slice(m)),
        }
    }

    fn remove_at(&mut self, i: usize) -> Option<Bytes> {
        match &mut self.repr {
            Repr::Intset(v) => (i < v.len()).then(|| int_bytes(v.remove(i))),
            Repr::Listpack(p) => {
                let (off, m) = p.iter_at().nth(i)?;
                let m = Bytes::copy_from_slice(m);
                p.remove_at(off, 1);
                Some(m)
            }
            Repr::Table(t) => t.remove_at(i).map(Bytes::from),
        }
    }

    /// The member at position `i` of the big ("hashtable") form, in `iter`'s order; `None`
    /// for the compact forms (the snapshot stepper writes big sets a range at a time).
    pub fn table_member_at(&self, i: usize) -> Option<&[u8]> {
        match &self.repr {
            Repr::Table(t) => t.at(i).map(|m| &m[..]),
            _ => None,
        }
    }

    /// Where a small set's members start (a prefetch hint).
    pub fn data_ptr(&self) -> Option<*const u8> {
        match &self.repr {
            Repr::Intset(v) => Some(v.as_ptr().cast()),
            Repr::Listpack(p) => Some(p.data_ptr()),
            Repr::Table(_) => None,
        }
    }

    /// Members in storage order (SMEMBERS): ascending for intsets.
    pub fn iter(&self) -> impl Iterator<Item = Bytes> + '_ {
        let (a, b, c) = match &self.repr {
            Repr::Intset(v) => (Some(v.iter().map(|&i| int_bytes(i))), None, None),
            Repr::Listpack(p) => (None, Some(p.iter().map(Bytes::copy_from_slice)), None),
            Repr::Table(t) => (
                None,
                None,
                Some(t.iter().map(|m| Bytes::copy_from_slice(m))),
            ),
        };
        a.into_iter()
            .flatten()
            .chain(b.into_iter().flatten())
            .chain(c.into_iter().flatten())
    }

    /// SPOP without count.
    pub fn pop(&mut self, rng: &mut Rng) -> Option<Bytes> {
        let i = rng.below(self.len());
        self.remove_at(i)
    }

    /// SPOP with count: `count` distinct random members removed (all when `count >= len`).
    pub fn pop_count(&mut self, rng: &mut Rng, count: usize) -> Vec<Bytes> {
        if count >= self.len() {
            let all = self.iter().collect();
            *self = Set::new();
            return all;
        }
        let remaining = self.len() - count;
        if remaining * 5 > count {
            return (0..count).filter_map(|_| self.pop(rng)).collect();
        }
        // Redis's SPOP case 3 (few members stay): the ones that stay move to a new set,
        // built as SADD would build it (an intset again when they are integers that fit
        // `set-max-intset-entries`), and the old set's rest is the reply.
        let kept: Vec<Bytes> = (0..remaining).filter_map(|_| self.pop(rng)).collect();
        let popped = std::mem::replace(self, Set::from_members(kept));
        popped.iter().collect()
    }

    /// SRANDMEMBER without count.
    pub fn random_member(&self, rng: &mut Rng) -> Option<Bytes> {
        self.at(rng.below(self.len()))
    }

    /// SRANDMEMBER with count: positive gives distinct members (all when `count >= len`),
    /// negative `|count|` members with repetition. The caller bounds `|count|`.
    pub fn random_members(&self, rng: &mut Rng, count: i64) -> Vec<Bytes> {
        random_positions(rng, self.len(), count)
            .into_iter()
            .filter_map(|i| self.at(i))
            .collect()
    }

    /// SMOVE's data part: moves `member` from `self` to `dst`; false when not in `self`.
    /// (SMOVE with the same source and destination key is the handler's case: it must not
    /// call this with one set twice, which the borrow checker prevents anyway.)
    pub fn move_to(&mut self, dst: &mut Set, member: &Bytes) -> bool {
        if !self.remove(member) {
            return false;
        }
        dst.add(member.clone());
        true
    }

    /// SINTER over `sets` (missing keys should be passed as empty sets): walks the smallest.
    pub fn inter(sets: &[&Set]) -> Set {
        Set::from_members(Self::inter_iter(sets, usize::MAX))
    }

    fn inter_iter(sets: &[&Set], limit: usize) -> Vec<Bytes> {
        let mut order: Vec<&Set> = sets.to_vec();
        order.sort_by_key(|s| s.len());
        let Some((first, rest)) = order.split_first() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for m in first.iter() {
            if out.len() >= limit {
                break;
            }
            if rest.iter().all(|s| s.contains(&m)) {
                out.push(m);
            }
        }
        out
    }

    /// SINTERCARD: size of the intersection, stopping at `limit` (0 = no limit).
    pub fn intercard(sets: &[&Set], limit: usize) -> usize {
        let limit = if limit == 0 { usize::MAX } else { limit };
        Self::inter_iter(sets, limit).len()
    }

    /// SUNION.
    pub fn union(sets: &[&Set]) -> Set {
        let mut out = Set::new();
        for s in sets {
            for m in s.iter() {
                out.add(m);
            }
        }
        out
    }

    /// SDIFF: members of the first set in none of the others.
    pub fn diff(sets: &[&Set]) -> Set {
        let Some((first, rest)) = sets.split_first() else {
            return Set::new();
        };
        Set::from_members(first.iter().filter(|m| !rest.iter().any(|s| s.contains(m))))
    }

    /// SSCAN: visits at least `count` members from `cursor`; returns the next cursor (0 when
    /// done) and the members matching `pattern`. Compact forms come whole in one call.
    pub fn scan(&self, cursor: u64, count: usize, pattern: Option<&[u8]>) -> (u64, Vec<Bytes>) {
        let keep = |m: &[u8]| pattern.is_none_or(|p| glob_match(p, m, false));
        match &self.repr {
            Repr::Table(t) => {
                let mut out = Vec::new();
                let next = t.scan(cursor, count, |m| {
                    if keep(m) {
                        out.push(Bytes::copy_from_slice(m));
                    }
                });
                (next, out)
            }
            _ => (0, self.iter().filter(|m| keep(m)).collect()),
        }
    }
}

/// A member as a big set stores it: an exact-size block (16 bytes in the table instead of a
/// 32-byte `Bytes`); an owned, unshared `Bytes` converts without copying.
fn boxed(m: Bytes) -> Box<[u8]> {
    Vec::from(m).into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from_loaded` gives what `from_members` gives (encoding, order, members) on random
    /// mixes of integers and strings, short and long, small and big, with repeats.
    #[test]
    fn from_loaded_matches_from_members() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..400 {
            let n = [0, 1, 3, 10, 127, 128, 129, 300, 600][round % 9];
            let members: Vec<Bytes> = (0..n)
                .map(|_| match next(5) {
                    0 | 1 => Bytes::from(next(1000).to_string()),
                    2 => Bytes::from(format!("m{}", next(2000))),
                    3 => Bytes::from("x".repeat(60 + next(10) as usize)),
                    _ => Bytes::from(format!("-{}", next(50))),
                })
                .collect();
            let a = Set::from_members(members.clone());
            let b = Set::from_loaded(members);
            assert_eq!(a.encoding(), b.encoding(), "round {round}");
            assert_eq!(a.len(), b.len(), "round {round}");
            if a.encoding() == "listpack" {
                assert_eq!(a.iter().collect::<Vec<_>>(), b.iter().collect::<Vec<_>>());
            } else {
                assert_eq!(sorted(&a), sorted(&b), "round {round}");
            }
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn set(ms: &[&str]) -> Set {
        Set::from_members(ms.iter().map(|m| b(m)))
    }

    fn sorted(s: &Set) -> Vec<Bytes> {
        let mut v: Vec<_> = s.iter().collect();
        v.sort();
        v
    }

    #[test]
    fn add_remove_contains_each_form() {
        for (members, enc) in [
            (vec!["3", "1", "2"], "intset"),
            (vec!["a", "1", "b"], "listpack"),
        ] {
            let mut s = Set::new();
            for m in &members {
                assert!(s.add(b(m)));
                assert!(!s.add(b(m)));
            }
            assert_eq!(s.encoding(), enc);
            assert_eq!(s.len(), 3);
            assert!(s.contains(b"1"));
            assert!(!s.contains(b"01"));
            assert!(!s.contains(b"zz"));
            assert!(s.remove(b"1"));
            assert!(!s.remove(b"1"));
            assert!(!s.remove(b"x"));
            assert_eq!(s.len(), 2);
        }
        let s = set(&["3", "-1", "2"]);
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![b("-1"), b("2"), b("3")]);
        // "01" and " 1" are not integers for string2ll: stored as strings.
        let s = set(&["1", "01"]);
        assert_eq!(s.encoding(), "listpack");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn intset_converts_at_513() {
        let mut s = Set::new();
        for i in 0..512 {
            s.add(int_bytes(i));
        }
        assert_eq!(s.encoding(), "intset");
        s.add(b("511"));
        assert_eq!(s.encoding(), "intset");
        s.add(b("512"));
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), 513);
        assert!(s.contains(b"0") && s.contains(b"512"));
    }

    #[test]
    fn listpack_converts_at_129_and_65_bytes() {
        let mut s = Set::new();
        for i in 0..127 {
            s.add(int_bytes(i));
        }
        s.add(b("x")); // 128 members: intset → listpack
        assert_eq!(s.encoding(), "listpack");
        s.add(b("x"));
        assert_eq!(s.encoding(), "listpack");
        s.add(b("y"));
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), 129);

        let mut s = Set::new();
        for i in 0..128 {
            s.add(int_bytes(i));
        }
        s.add(b("x")); // 129th member non-integer: straight to hashtable
        assert_eq!(s.encoding(), "hashtable");

        let mut s = set(&["a"]);
        s.add(b(&"v".repeat(64)));
        assert_eq!(s.encoding(), "listpack");
        s.add(b(&"v".repeat(65)));
        assert_eq!(s.encoding(), "hashtable");
        let s = set(&["1", &"v".repeat(65)]);
        assert_eq!(s.encoding(), "hashtable");
        assert_eq!(s.len(), 2);
        assert!(s.heap_bytes() > 65);
    }

    #[test]
    fn pop_and_random() {
        let mut rng = Rng::new(3);
        for base in [
            set(&["1", "2", "3", "4", "5"]),
            set(&["a", "b", "c", "d", "e"]),
        ] {
            let mut s = base.clone();
            let p = s.pop(&mut rng).unwrap();
            assert!(!s.contains(&p) && base.contains(&p));
            let two = s.pop_count(&mut rng, 2);
            assert_eq!(two.len(), 2);
            assert_eq!(s.len(), 2);
            let rest = s.pop_count(&mut rng, 10);
            assert_eq!(rest.len(), 2);
            assert!(s.is_empty());
            assert!(s.pop(&mut rng).is_none());
            assert!(s.random_member(&mut rng).is_none());

            assert_eq!(base.random_members(&mut rng, 10).len(), 5);
            let mut d = base.random_members(&mut rng, 3);
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3);
            let rep = base.random_members(&mut rng, -20);
            assert_eq!(rep.len(), 20);
            assert!(rep.iter().all(|m| base.contains(m)));
        }
    }

    #[test]
    fn random_member_is_fair_on_hashtable() {
        let mut rng = Rng::new(11);
        let s = Set::from_members((0..200).map(|i| b(&format!("m{i}"))));
        assert_eq!(s.encoding(), "hashtable");
        let mut hist = std::collections::HashMap::new();
        for m in s.random_members(&mut rng, -200_000) {
            *hist.entry(m).or_insert(0u32) += 1;
        }
        assert_eq!(hist.len(), 200);
        assert!(hist.values().all(|&c| (800..1200).contains(&c)));
    }

    #[test]
    fn smismember() {
        let s = set(&["1", "a"]);
        assert_eq!(
            s.contains_many([&b"1"[..], b"2", b"a"]),
            vec![true, false, true]
        );
    }

    #[test]
    fn smove() {
        let mut a = set(&["1", "2"]);
        let mut c = set(&["x"]);
        assert!(a.move_to(&mut c, &b("1")));
        assert!(!a.move_to(&mut c, &b("1")));
        assert_eq!(a.len(), 1);
        assert!(c.contains(b"1"));
    }

    #[test]
    fn algebra() {
        let a = set(&["1", "2", "3", "a"]);
        let c = set(&["2", "3", "4"]);
        let d = set(&["3", "a", "z"]);
        let empty = Set::new();
        assert_eq!(sorted(&Set::inter(&[&a, &c])), vec![b("2"), b("3")]);
        assert_eq!(Set::inter(&[&a, &c]).encoding(), "intset");
        assert_eq!(sorted(&Set::inter(&[&a, &c, &d])), vec![b("3")]);
        assert!(Set::inter(&[&a, &empty]).is_empty());
        assert!(Set::inter(&[]).is_empty());
        assert_eq!(Set::union(&[&a, &c, &d]).len(), 6);
        assert_eq!(sorted(&Set::diff(&[&a, &c, &d])), vec![b("1")]);
        assert_eq!(sorted(&Set::diff(&[&a])), sorted(&a));
        assert_eq!(Set::intercard(&[&a, &c], 0), 2);
        assert_eq!(Set::intercard(&[&a, &c], 1), 1);
        assert_eq!(Set::intercard(&[&a, &c], 5), 2);
        assert_eq!(Set::intercard(&[&a, &empty], 0), 0);
    }

    #[test]
    fn scan_all_forms() {
        let s = set(&["1", "2", "10"]);
        assert_eq!(s.scan(0, 1, Some(b"1*")), (0, vec![b("1"), b("10")]));
        let mut big = Set::from_members((0..1000).map(|i| b(&format!("k{i}"))));
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut n = 0;
        loop {
            let (c, page) = big.scan(cursor, 7, None);
            seen.extend(page);
            n += 1;
            big.remove(format!("k{}", 999 - n).as_bytes());
            big.add(b(&format!("new{n}")));
            cursor = c;
            if cursor == 0 {
                break;
            }
        }
        for i in 0..800 {
            assert!(seen.contains(&b(&format!("k{i}"))), "k{i}");
        }
    }
}
