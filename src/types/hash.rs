//! Hash values: field → value, binary safe. Compact form `listpack` (a [`Pack`] of
//! field, value, field, value ... in insertion order, one heap block, linear lookup) while there are at most `hash-max-listpack-entries` fields (512) and every field and value
//! is at most `hash-max-listpack-value` bytes (64); otherwise `hashtable` ([`EntryTable`]: O(1) lookup, O(1) random field,
//! no-miss SCAN). Never converts back. Owned by the key's shard thread.

use bytes::Bytes;

use super::limits;
use super::pack::Pack;
use super::table::{EntryTable, Slot};
use super::{err, random_positions, sampled_sum, Rng};
use crate::protocol::parse_i64;
use crate::util::glob::glob_match;
use crate::util::ldouble;

#[derive(Debug, Clone)]
enum Repr {
    /// Fields and values alternating.
    Listpack(Pack),
    /// Boxed so a small hash stays three words.
    Table(Box<EntryTable<Pair>>),
}

/// A big hash's field and value in one exact-size block (field bytes, then value bytes):
/// 24 bytes in the table and one allocation, where two `Bytes` took 64 and two.
#[derive(Debug, Clone)]
struct Pair {
    buf: Box<[u8]>,
    field_len: u32,
}

impl Pair {
    fn new(field: &[u8], value: &[u8]) -> Pair {
        let mut v = Vec::with_capacity(field.len() + value.len());
        v.extend_from_slice(field);
        v.extend_from_slice(value);
        Pair {
            buf: v.into_boxed_slice(),
            field_len: field.len() as u32,
        }
    }

    fn value(&self) -> &[u8] {
        self.buf.get(self.field_len as usize..).unwrap_or_default()
    }
}

impl Slot for Pair {
    fn key(&self) -> &[u8] {
        self.buf.get(..self.field_len as usize).unwrap_or_default()
    }
}

/// A Redis hash.
#[derive(Debug, Clone)]
pub struct Hash {
    repr: Repr,
}

impl Default for Hash {
    fn default() -> Self {
        Hash::new()
    }
}

impl Hash {
    pub fn new() -> Hash {
        Hash {
            repr: Repr::Listpack(Pack::new()),
        }
    }

    pub fn len(&self) -> usize {
        match &self.repr {
            Repr::Listpack(p) => p.len() / 2,
            Repr::Table(t) => t.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// OBJECT ENCODING name.
    pub fn encoding(&self) -> &'static str {
        match self.repr {
            Repr::Listpack(_) => "listpack",
            Repr::Table(_) => "hashtable",
        }
    }

    /// Approximate heap bytes (INFO memory, maxmemory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.heap_bytes_sampled(0)
    }

    /// `heap_bytes` with the pairs' own blocks estimated from `samples` of them (0: all).
    pub fn heap_bytes_sampled(&self, samples: usize) -> usize {
        match &self.repr {
            Repr::Listpack(p) => p.heap_bytes(),
            Repr::Table(t) => {
                t.heap_bytes() + sampled_sum(t.iter().map(|p| p.buf.len()), t.len(), samples)
            }
        }
    }

    pub fn get(&self, field: &[u8]) -> Option<&[u8]> {
        match &self.repr {
            Repr::Listpack(p) => lp_find(p, field).map(|(_, _, v)| v),
            Repr::Table(t) => t.get(field).map(Pair::value),
        }
    }

    /// The value of `field` as owned bytes (a copy from the compact form).
    pub fn get_bytes(&self, field: &[u8]) -> Option<Bytes> {
        match &self.repr {
            Repr::Listpack(p) => lp_find(p, field).map(|(_, _, v)| Bytes::copy_from_slice(v)),
            Repr::Table(t) => t.get(field).map(|p| Bytes::copy_from_slice(p.value())),
        }
    }

    pub fn contains(&self, field: &[u8]) -> bool {
        self.get(field).is_some()
    }

    /// HSTRLEN: length of the value, 0 when absent.
    pub fn strlen(&self, field: &[u8]) -> usize {
        self.get(field).map_or(0, |v| v.len())
    }

    fn convert_if_needed(&mut self, field_len: usize, value_len: usize, adding: bool) {
        if let Repr::Listpack(p) = &self.repr {
            let pairs = p.len() / 2;
            // Redis's hashTypeSet checks the length after every set, an update included:
            // a hash left over a lowered threshold converts on its next write.
            let too_many = pairs + usize::from(adding) > limits::hash_max_entries();
            let max_value = limits::hash_max_value();
            let too_big = field_len > max_value || value_len > max_value;
            if too_many || too_big {
                let mut t = EntryTable::with_capacity(pairs + 1);
                for (f, x) in lp_pairs(p) {
                    t.insert(Pair::new(f, x));
                }
                self.repr = Repr::Table(Box::new(t));
            }
        }
    }

    /// HSET one pair; true when the field is new.
    pub fn insert(&mut self, field: Bytes, value: Bytes) -> bool {
        let adding = !self.contains(&field);
        self.convert_if_needed(field.len(), value.len(), adding);
        match &mut self.repr {
            Repr::Listpack(p) => match lp_find(p, &field) {
                Some((_, voff, _)) => {
                    let end = p.next_offset(voff);
                    p.splice(voff, end, 1, &[&value]);
                    false
                }
                None => {
                    p.push(&[&field, &value]);
                    true
                }
            },
            Repr::Table(t) => t.insert(Pair::new(&field, &value)).is_none(),
        }
    }

    /// A hash read from a listpack payload (RDB file, RESTORE) in one step: a listpack in
    /// one allocation when it has at most `hash-max-listpack-entries` pairs (whatever their
    /// lengths, as `insert_loaded`), else pair by pair. `None` if a field repeats.
    pub fn from_loaded_pairs(pairs: Vec<(Bytes, Bytes)>) -> Option<Hash> {
        if pairs.len() > limits::hash_max_entries() {
            let n = pairs.len();
            let mut h = Hash::new();
            for (f, v) in pairs {
                h.insert_loaded(f, v);
            }
            return (h.len() == n).then_some(h);
        }
        let mut fields: Vec<&[u8]> = pairs.iter().map(|(f, _)| f.as_ref()).collect();
        fields.sort_unstable();
        if fields.windows(2).any(|w| w.first() == w.get(1)) {
            return None;
        }
        let items: Vec<&[u8]> = pairs
            .iter()
            .flat_map(|(f, v)| [f.as_ref(), v.as_ref()])
            .collect();
        Some(Hash {
            repr: Repr::Listpack(Pack::from_items(&items)),
        })
    }

    /// `from_loaded_pairs` for a listpack's elements as slices (field, value, field...):
    /// the listpack is built straight from them. `None` on a duplicate field.
    pub fn from_loaded_items(items: &[&[u8]]) -> Option<Hash> {
        if items.len() / 2 > limits::hash_max_entries() {
            let pairs = items
                .chunks_exact(2)
                .map(|p| {
                    let (f, v) = (p.first().copied(), p.get(1).copied());
                    (
                        Bytes::copy_from_slice(f.unwrap_or_default()),
                        Bytes::copy_from_slice(v.unwrap_or_default()),
                    )
                })
                .collect();
            return Hash::from_loaded_pairs(pairs);
        }
        let mut fields: Vec<&[u8]> = items.iter().step_by(2).copied().collect();
        fields.sort_unstable();
        if fields.windows(2).any(|w| w.first() == w.get(1)) {
            return None;
        }
        Some(Hash {
            repr: Repr::Listpack(Pack::from_items(items)),
        })
    }

    /// Adds a pair read from a listpack payload (RDB file, RESTORE): converts only past
    /// `hash-max-listpack-entries`, not on long fields or values, as Redis 7.0's loader
    /// keeps a listpack whatever its elements' lengths. True when the field is new.
    pub fn insert_loaded(&mut self, field: Bytes, value: Bytes) -> bool {
        let adding = !self.contains(&field);
        self.convert_if_needed(0, 0, adding);
        match &mut self.repr {
            Repr::Listpack(p) => match lp_find(p, &field) {
                Some(_) => false,
                None => {
                    p.push(&[&field, &value]);
                    true
                }
            },
            Repr::Table(t) => t.insert(Pair::new(&field, &value)).is_none(),
        }
    }

    /// HSETNX: sets only a new field; true when set.
    pub fn insert_nx(&mut self, field: Bytes, value: Bytes) -> bool {
        if self.contains(&field) {
            return false;
        }
        self.insert(field, value)
    }

    /// HDEL one field; true when it existed.
    pub fn remove(&mut self, field: &[u8]) -> bool {
        match &mut self.repr {
            Repr::Listpack(p) => match lp_find(p, field) {
                Some((foff, _, _)) => {
                    p.remove_at(foff, 2);
                    true
                }
                None => false,
            },
            Repr::Table(t) => t.remove(field).is_some(),
        }
    }

    /// The pair at position `i` of the big ("hashtable") form, in `iter`'s order; `None`
    /// for the listpack form (the snapshot stepper writes big hashes a range at a time).
    pub fn table_pair_at(&self, i: usize) -> Option<(&[u8], &[u8])> {
        match &self.repr {
            Repr::Listpack(_) => None,
            Repr::Table(t) => t.at(i).map(|p| (p.key(), p.value())),
        }
    }

    /// Where a small hash's packed block starts (a prefetch hint).
    pub fn data_ptr(&self) -> Option<*const u8> {
        match &self.repr {
            Repr::Listpack(p) => Some(p.data_ptr()),
            Repr::Table(_) => None,
        }
    }

    /// Pairs in storage order (HGETALL, HKEYS, HVALS).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let (a, b) = match &self.repr {
            Repr::Listpack(p) => (Some(lp_pairs(p)), None),
            Repr::Table(t) => (None, Some(t.iter().map(|p| (p.key(), p.value())))),
        };
        a.into_iter().flatten().chain(b.into_iter().flatten())
    }

    fn at(&self, i: usize) -> Option<(Bytes, Bytes)> {
        match &self.repr {
            Repr::Listpack(p) => lp_pairs(p)
                .nth(i)
                .map(|(f, x)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(x))),
            Repr::Table(t) => t.at(i).map(|p| {
                (
                    Bytes::copy_from_slice(p.key()),
                    Bytes::copy_from_slice(p.value()),
                )
            }),
        }
    }

    /// HINCRBY: adds `by` to the integer in `field` (0 when absent) and stores it.
    pub fn incr_by(&mut self, field: Bytes, by: i64) -> Result<i64, &'static str> {
        let cur = match self.get(&field) {
            None => 0,
            Some(v) => parse_i64(v).ok_or(err::HASH_NOT_INT)?,
        };
        let new = cur.checked_add(by).ok_or(err::OVERFLOW)?;
        self.insert(field, Bytes::from(new.to_string()));
        Ok(new)
    }

    /// HINCRBYFLOAT with the raw increment argument, in `long double` as Redis does; returns
    /// the stored text (`ld2string` human form), which is also the reply.
    pub fn incr_by_float(&mut self, field: Bytes, incr: &[u8]) -> Result<Bytes, &'static str> {
        let by = ldouble::parse(incr).ok_or(err::NOT_FLOAT)?;
        if by.is_inf() {
            return Err(err::VALUE_NAN_INF);
        }
        let cur = match self.get(&field) {
            None => ldouble::Ld::Finite {
                neg: false,
                mant: 0,
                exp: 0,
            },
            Some(v) => ldouble::parse(v).ok_or(err::HASH_NOT_FLOAT)?,
        };
        let sum = ldouble::add(cur, by).ok_or(err::INCR_NAN_INF)?;
        if sum.is_inf() {
            return Err(err::INCR_NAN_INF);
        }
        let text = Bytes::from(ldouble::fmt_human(sum));
        self.insert(field, text.clone());
        Ok(text)
    }

    /// HRANDFIELD without count: one random field and its value.
    pub fn random_field(&self, rng: &mut Rng) -> Option<(Bytes, Bytes)> {
        self.at(rng.below(self.len()))
    }

    /// HRANDFIELD with count: positive gives distinct fields (all when `count >= len`),
    /// negative gives `|count|` fields with repetition. The caller bounds `|count|`.
    pub fn random_fields(&self, rng: &mut Rng, count: i64) -> Vec<(Bytes, Bytes)> {
        random_positions(rng, self.len(), count)
            .into_iter()
            .filter_map(|i| self.at(i))
            .collect()
    }

    /// HSCAN: visits at least `count` fields from `cursor` and returns the next cursor (0 when
    /// done) with the pairs whose field matches `pattern`. The listpack form is returned whole
    /// in one call, as Redis does; the hashtable form never misses a field present for the
    /// whole scan (see `table.rs`).
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        pattern: Option<&[u8]>,
    ) -> (u64, Vec<(Bytes, Bytes)>) {
        let keep = |f: &[u8]| pattern.is_none_or(|p| glob_match(p, f, false));
        let mut out = Vec::new();
        match &self.repr {
            Repr::Listpack(p) => {
                out.extend(
                    lp_pairs(p)
                        .filter(|(f, _)| keep(f))
                        .map(|(f, x)| (Bytes::copy_from_slice(f), Bytes::copy_from_slice(x))),
                );
                (0, out)
            }
            Repr::Table(t) => {
                let next = t.scan(cursor, count, |p| {
                    if keep(p.key()) {
                        out.push((
                            Bytes::copy_from_slice(p.key()),
                            Bytes::copy_from_slice(p.value()),
                        ));
                    }
                });
                (next, out)
            }
        }
    }
}

/// (field, value) pairs of a compact hash.
fn lp_pairs(p: &Pack) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
    let mut it = p.iter();
    std::iter::from_fn(move || Some((it.next()?, it.next()?)))
}

/// Finds `field` in a compact hash: (field offset, value offset, value).
fn lp_find<'a>(p: &'a Pack, field: &[u8]) -> Option<(usize, usize, &'a [u8])> {
    let mut it = p.iter_at();
    while let Some((foff, f)) = it.next() {
        let (voff, v) = it.next()?;
        if f == field {
            return Some((foff, voff, v));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from_loaded_pairs` gives what `insert_loaded` pair by pair gives, and refuses a
    /// repeated field.
    #[test]
    fn from_loaded_pairs_matches_insert_loaded() {
        for n in [1usize, 2, 10, 128, 129, 400] {
            let pairs: Vec<(Bytes, Bytes)> = (0..n)
                .map(|i| {
                    let long = if i % 7 == 0 {
                        "y".repeat(100)
                    } else {
                        String::new()
                    };
                    (
                        Bytes::from(format!("f{i}{long}")),
                        Bytes::from(format!("v{i}")),
                    )
                })
                .collect();
            let mut a = Hash::new();
            for (f, v) in pairs.clone() {
                a.insert_loaded(f, v);
            }
            let b = Hash::from_loaded_pairs(pairs.clone()).expect("no repeats");
            assert_eq!(a.encoding(), b.encoding(), "{n}");
            assert_eq!(
                a.iter().collect::<Vec<_>>(),
                b.iter().collect::<Vec<_>>(),
                "{n}"
            );
            let first = pairs.first().map(|p| p.0.clone()).unwrap_or_default();
            let mut dup = pairs;
            dup.push((first, Bytes::from("again")));
            assert!(Hash::from_loaded_pairs(dup).is_none(), "{n}");
        }
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn set_get_del() {
        let mut h = Hash::new();
        assert!(h.insert(b("f"), b("v")));
        assert!(!h.insert(b("f"), b("w")));
        assert_eq!(h.get(b"f"), Some(&b"w"[..]));
        assert!(!h.insert_nx(b("f"), b("x")));
        assert!(h.insert_nx(b("g"), b("x")));
        assert_eq!(h.strlen(b"g"), 1);
        assert_eq!(h.strlen(b"zz"), 0);
        assert_eq!(h.len(), 2);
        let fields: Vec<_> = h.iter().map(|(f, _)| Bytes::copy_from_slice(f)).collect();
        assert_eq!(fields, vec![b("f"), b("g")]);
        assert!(h.remove(b"f"));
        assert!(!h.remove(b"f"));
        assert_eq!(h.len(), 1);
        assert_eq!(h.encoding(), "listpack");
        h.insert(Bytes::from_static(b"bin\0\xff"), b(""));
        assert_eq!(h.get(b"bin\0\xff"), Some(&b""[..]));
    }

    #[test]
    fn converts_at_513_entries() {
        let mut h = Hash::new();
        for i in 0..512 {
            h.insert(b(&format!("f{i}")), b("v"));
        }
        assert_eq!(h.encoding(), "listpack");
        h.insert(b("f0"), b("updated")); // update does not count as an entry
        assert_eq!(h.encoding(), "listpack");
        h.insert(b("f512"), b("v"));
        assert_eq!(h.encoding(), "hashtable");
        assert_eq!(h.len(), 513);
        assert_eq!(h.get(b"f0"), Some(&b"updated"[..]));
        h.remove(b"f512");
        assert_eq!(h.encoding(), "hashtable", "never converts back");
    }

    #[test]
    fn converts_at_65_bytes() {
        let mut h = Hash::new();
        h.insert(b(&"f".repeat(64)), b(&"v".repeat(64)));
        assert_eq!(h.encoding(), "listpack");
        let mut h2 = h.clone();
        h.insert(b("x"), b(&"v".repeat(65)));
        assert_eq!(h.encoding(), "hashtable");
        h2.insert(b(&"f".repeat(65)), b("v"));
        assert_eq!(h2.encoding(), "hashtable");
        assert_eq!(h2.len(), 2);
        assert!(h2.heap_bytes() > 130);
    }

    #[test]
    fn incr_by_rules() {
        let mut h = Hash::new();
        assert_eq!(h.incr_by(b("n"), 5), Ok(5));
        assert_eq!(h.incr_by(b("n"), -7), Ok(-2));
        assert_eq!(h.get(b"n"), Some(&b"-2"[..]));
        h.insert(b("s"), b("abc"));
        assert_eq!(h.incr_by(b("s"), 1), Err(err::HASH_NOT_INT));
        h.insert(b("sp"), b(" 1"));
        assert_eq!(h.incr_by(b("sp"), 1), Err(err::HASH_NOT_INT));
        h.insert(b("max"), b("9223372036854775807"));
        assert_eq!(h.incr_by(b("max"), 1), Err(err::OVERFLOW));
        assert_eq!(h.get(b"max"), Some(&b"9223372036854775807"[..]));
        h.insert(b("min"), b("-9223372036854775808"));
        assert_eq!(h.incr_by(b("min"), -1), Err(err::OVERFLOW));
    }

    #[test]
    fn incr_by_float_rules() {
        let mut h = Hash::new();
        assert_eq!(h.incr_by_float(b("f"), b"10.5"), Ok(b("10.5")));
        assert_eq!(h.incr_by_float(b("f"), b"0.1"), Ok(b("10.6")));
        assert_eq!(h.incr_by_float(b("f"), b"-10.6"), Ok(b("0")));
        assert_eq!(h.incr_by_float(b("f"), b"5.0e3"), Ok(b("5000")));
        assert_eq!(h.incr_by_float(b("f"), b"abc"), Err(err::NOT_FLOAT));
        assert_eq!(h.incr_by_float(b("f"), b"inf"), Err(err::VALUE_NAN_INF));
        h.insert(b("s"), b("abc"));
        assert_eq!(h.incr_by_float(b("s"), b"1"), Err(err::HASH_NOT_FLOAT));
        h.insert(b("i"), b("inf"));
        assert_eq!(h.incr_by_float(b("i"), b"1"), Err(err::INCR_NAN_INF));
        assert_eq!(h.get(b"i"), Some(&b"inf"[..]));
    }

    #[test]
    fn random_fields_count_rules() {
        let mut rng = Rng::new(7);
        let mut h = Hash::new();
        assert!(h.random_field(&mut rng).is_none());
        assert!(h.random_fields(&mut rng, -5).is_empty());
        for i in 0..10 {
            h.insert(b(&format!("f{i}")), b(&i.to_string()));
        }
        assert!(h.random_field(&mut rng).is_some());
        assert_eq!(h.random_fields(&mut rng, 100).len(), 10);
        let mut d: Vec<_> = h
            .random_fields(&mut rng, 4)
            .into_iter()
            .map(|p| p.0)
            .collect();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 4);
        let rep = h.random_fields(&mut rng, -30);
        assert_eq!(rep.len(), 30);
        for (f, v) in rep {
            assert_eq!(h.get(&f), Some(&v[..]));
        }
        assert!(h.random_fields(&mut rng, 0).is_empty());
    }

    #[test]
    fn scan_small_and_big() {
        let mut h = Hash::new();
        for i in 0..10 {
            h.insert(b(&format!("f{i}")), b("v"));
        }
        let (c, all) = h.scan(0, 2, None);
        assert_eq!((c, all.len()), (0, 10), "listpack is returned whole");
        let (_, some) = h.scan(0, 10, Some(b"f1*"));
        assert_eq!(some, vec![(b("f1"), b("v"))]);
        for i in 10..700 {
            h.insert(b(&format!("f{i}")), b("v"));
        }
        assert_eq!(h.encoding(), "hashtable");
        let mut seen = std::collections::HashSet::new();
        let mut cursor = 0;
        let mut calls = 0;
        loop {
            let (c, page) = h.scan(cursor, 10, None);
            seen.extend(page.into_iter().map(|p| p.0));
            calls += 1;
            h.remove(format!("f{}", 699 - calls).as_bytes());
            cursor = c;
            if cursor == 0 {
                break;
            }
        }
        assert!(calls > 10);
        for i in 0..200 {
            assert!(seen.contains(&b(&format!("f{i}"))));
        }
    }
}
