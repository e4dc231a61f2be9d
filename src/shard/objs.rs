//! The non-string values of one `Db`, unboxed, in one dense vector per type. An object
//! entry in the arena (`KIND_OBJ`) names its value by type (two flag bits) and a 4-byte
//! index into that type's vector; nothing else points at a value, so the vector slot is
//! its only owner and dropping the slot (or taking the value out) is the only way it goes.
//!
//! Why not one `slab::Slab<Value>` (what this replaces): a `Value` is 40 bytes (a `Bytes`
//! plus a tag) and its collection is boxed behind it (one more malloc, ~32 bytes with the
//! header), so a small hash paid ~72 bytes besides its packed block. Here a small hash or
//! sorted set costs one 16-byte slot ([`Hash`] and [`ZSet`] are one fat pointer to their
//! packed block), a set 24; lists and streams, rarely many and large anyway, stay boxed (8).
//!
//! Freed slots hold the type's empty value (no heap) and go on a free list that `insert`
//! reuses first; a store whose last value goes releases its vectors. Owned by the shard
//! thread, like its `Db`.

use super::value::{ObjMut, ObjRef, Value};
use crate::types::hash::Hash;
use crate::types::list::List;
use crate::types::set::Set;
use crate::types::stream::Stream;
use crate::types::zset::ZSet;

/// Which per-type vector an object entry's index points into (three bits of the entry's
/// flags: see `db.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjKind {
    Hash = 0,
    Set = 1,
    List = 2,
    ZSet = 3,
    Stream = 4,
}

impl ObjKind {
    pub fn to_bits(self) -> u8 {
        self as u8
    }

    pub fn from_bits(b: u8) -> ObjKind {
        match b & 7 {
            0 => ObjKind::Hash,
            1 => ObjKind::Set,
            2 => ObjKind::List,
            3 => ObjKind::ZSet,
            _ => ObjKind::Stream,
        }
    }
}

/// One type's values: dense slots, with a free list of the vacant ones.
struct Store<T> {
    items: Vec<T>,
    free: Vec<u32>,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<T: Default> Store<T> {
    fn insert(&mut self, v: T) -> u32 {
        if let Some(i) = self.free.pop() {
            if let Some(slot) = self.items.get_mut(i as usize) {
                *slot = v;
                return i;
            }
        }
        self.items.push(v);
        (self.items.len() - 1) as u32
    }

    /// Moves the value out of slot `i`, leaving it vacant.
    fn take(&mut self, i: u32) -> Option<T> {
        let v = std::mem::take(self.items.get_mut(i as usize)?);
        self.free.push(i);
        if self.free.len() == self.items.len() {
            *self = Store::default();
        }
        Some(v)
    }

    fn get(&self, i: u32) -> Option<&T> {
        self.items.get(i as usize)
    }

    fn get_mut(&mut self, i: u32) -> Option<&mut T> {
        self.items.get_mut(i as usize)
    }

    fn live(&self) -> usize {
        self.items.len() - self.free.len()
    }

    fn heap_bytes(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<T>() + self.free.capacity() * 4
    }
}

/// The object values of one database.
#[derive(Default)]
pub struct Objs {
    hashes: Store<Hash>,
    sets: Store<Set>,
    lists: Store<Option<Box<List>>>,
    zsets: Store<ZSet>,
    streams: Store<Option<Box<Stream>>>,
}

/// A collection moved out of its `Value` box on the thread that built it (the RDB
/// loader's decoders): the shard stores it without freeing an allocation of another
/// thread (glibc would lock that thread's arena for each).
pub enum Unboxed {
    Hash(Hash),
    Set(Set),
    List(Box<List>),
    ZSet(ZSet),
    Stream(Box<Stream>),
}

impl Unboxed {
    /// A string is given back.
    pub fn from_value(v: Value) -> Result<Unboxed, Value> {
        Ok(match v {
            Value::Str(_) => return Err(v),
            Value::Hash(h) => Unboxed::Hash(*h),
            Value::Set(s) => Unboxed::Set(*s),
            Value::List(l) => Unboxed::List(l),
            Value::ZSet(z) => Unboxed::ZSet(*z),
            Value::Stream(x) => Unboxed::Stream(x),
        })
    }
}

impl Objs {
    /// `insert` for a collection already out of its box.
    pub fn insert_unboxed(&mut self, u: Unboxed) -> (ObjKind, u32) {
        match u {
            Unboxed::Hash(h) => (ObjKind::Hash, self.hashes.insert(h)),
            Unboxed::Set(s) => (ObjKind::Set, self.sets.insert(s)),
            Unboxed::List(l) => (ObjKind::List, self.lists.insert(Some(l))),
            Unboxed::ZSet(z) => (ObjKind::ZSet, self.zsets.insert(z)),
            Unboxed::Stream(x) => (ObjKind::Stream, self.streams.insert(Some(x))),
        }
    }

    /// Stores a collection and returns where; a string is given back (it belongs inline).
    pub fn insert(&mut self, v: Value) -> Result<(ObjKind, u32), Value> {
        Ok(match v {
            Value::Str(_) => return Err(v),
            Value::Hash(h) => (ObjKind::Hash, self.hashes.insert(*h)),
            Value::Set(s) => (ObjKind::Set, self.sets.insert(*s)),
            Value::List(l) => (ObjKind::List, self.lists.insert(Some(l))),
            Value::ZSet(z) => (ObjKind::ZSet, self.zsets.insert(*z)),
            Value::Stream(x) => (ObjKind::Stream, self.streams.insert(Some(x))),
        })
    }

    /// Stores a new empty collection of `kind`.
    pub fn insert_empty(&mut self, kind: ObjKind) -> u32 {
        match kind {
            ObjKind::Hash => self.hashes.insert(Hash::new()),
            ObjKind::Set => self.sets.insert(Set::new()),
            ObjKind::List => self.lists.insert(Some(Box::default())),
            ObjKind::ZSet => self.zsets.insert(ZSet::new()),
            ObjKind::Stream => self.streams.insert(Some(Box::default())),
        }
    }

    /// Moves a value out (its slot becomes vacant).
    pub fn take(&mut self, kind: ObjKind, i: u32) -> Option<Value> {
        match kind {
            ObjKind::Hash => self.hashes.take(i).map(|h| Value::Hash(Box::new(h))),
            ObjKind::Set => self.sets.take(i).map(|s| Value::Set(Box::new(s))),
            ObjKind::List => self.lists.take(i).flatten().map(Value::List),
            ObjKind::ZSet => self.zsets.take(i).map(|z| Value::ZSet(Box::new(z))),
            ObjKind::Stream => self.streams.take(i).flatten().map(Value::Stream),
        }
    }

    /// Drops a value.
    pub fn remove(&mut self, kind: ObjKind, i: u32) {
        match kind {
            ObjKind::Hash => drop(self.hashes.take(i)),
            ObjKind::Set => drop(self.sets.take(i)),
            ObjKind::List => drop(self.lists.take(i)),
            ObjKind::ZSet => drop(self.zsets.take(i)),
            ObjKind::Stream => drop(self.streams.take(i)),
        }
    }

    pub fn get(&self, kind: ObjKind, i: u32) -> Option<ObjRef<'_>> {
        match kind {
            ObjKind::Hash => self.hashes.get(i).map(ObjRef::Hash),
            ObjKind::Set => self.sets.get(i).map(ObjRef::Set),
            ObjKind::List => self.lists.get(i)?.as_deref().map(ObjRef::List),
            ObjKind::ZSet => self.zsets.get(i).map(ObjRef::ZSet),
            ObjKind::Stream => self.streams.get(i)?.as_deref().map(ObjRef::Stream),
        }
    }

    /// Starts loading object `i`'s slot (a hint: the snapshot walk's first stage).
    pub fn prefetch(&self, kind: ObjKind, i: u32) {
        let p: Option<*const u8> = match kind {
            ObjKind::Hash => self.hashes.get(i).map(|x| (x as *const Hash).cast()),
            ObjKind::Set => self.sets.get(i).map(|x| (x as *const Set).cast()),
            ObjKind::List => self
                .lists
                .get(i)
                .map(|x| (x as *const Option<Box<List>>).cast()),
            ObjKind::ZSet => self.zsets.get(i).map(|x| (x as *const ZSet).cast()),
            ObjKind::Stream => self
                .streams
                .get(i)
                .map(|x| (x as *const Option<Box<Stream>>).cast()),
        };
        if let Some(p) = p {
            crate::runtime::prefetch::prefetch(p);
        }
    }

    /// Starts loading object `i`'s own block (a small collection's packed data: the
    /// snapshot walk's second stage, once the slot has arrived).
    pub fn prefetch_data(&self, kind: ObjKind, i: u32) {
        let p = match self.get(kind, i) {
            Some(ObjRef::Hash(h)) => h.data_ptr(),
            Some(ObjRef::Set(s)) => s.data_ptr(),
            Some(ObjRef::ZSet(z)) => z.data_ptr(),
            _ => None,
        };
        if let Some(p) = p {
            crate::runtime::prefetch::prefetch(p);
        }
    }

    pub fn get_mut(&mut self, kind: ObjKind, i: u32) -> Option<ObjMut<'_>> {
        match kind {
            ObjKind::Hash => self.hashes.get_mut(i).map(ObjMut::Hash),
            ObjKind::Set => self.sets.get_mut(i).map(ObjMut::Set),
            ObjKind::List => self.lists.get_mut(i)?.as_deref_mut().map(ObjMut::List),
            ObjKind::ZSet => self.zsets.get_mut(i).map(ObjMut::ZSet),
            ObjKind::Stream => self.streams.get_mut(i)?.as_deref_mut().map(ObjMut::Stream),
        }
    }

    /// Values stored (all types).
    pub fn len(&self) -> usize {
        self.hashes.live()
            + self.sets.live()
            + self.lists.live()
            + self.zsets.live()
            + self.streams.live()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the slot vectors (not the values' own blocks).
    pub fn slot_bytes(&self) -> usize {
        self.hashes.heap_bytes()
            + self.sets.heap_bytes()
            + self.lists.heap_bytes()
            + self.zsets.heap_bytes()
            + self.streams.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn slots_are_small_reused_and_released() {
        assert_eq!(std::mem::size_of::<Hash>(), 16);
        assert_eq!(std::mem::size_of::<ZSet>(), 16);
        assert!(std::mem::size_of::<Set>() <= 24);
        assert_eq!(std::mem::size_of::<Option<Box<List>>>(), 8);
        let mut o = Objs::default();
        let a = o.insert_empty(ObjKind::Hash);
        let b = o.insert_empty(ObjKind::Hash);
        let z = o.insert_empty(ObjKind::ZSet);
        assert_eq!((a, b, z), (0, 1, 0));
        if let Some(ObjMut::Hash(h)) = o.get_mut(ObjKind::Hash, b) {
            h.insert(Bytes::from_static(b"f"), Bytes::from_static(b"v"));
        }
        assert_eq!(o.len(), 3);
        o.remove(ObjKind::Hash, a);
        assert!(matches!(o.get(ObjKind::Hash, a), Some(ObjRef::Hash(h)) if h.is_empty()));
        assert_eq!(
            o.insert_empty(ObjKind::Hash),
            a,
            "the vacant slot is reused"
        );
        let v = o.take(ObjKind::Hash, b).unwrap();
        assert_eq!(v.type_name(), "hash");
        o.remove(ObjKind::Hash, a);
        assert_eq!(
            o.hashes.items.capacity(),
            0,
            "an emptied store lets go of its vector"
        );
        assert_eq!(o.len(), 1);
        assert!(o.insert(Value::Str(Bytes::new())).is_err());
        let (k, i) = o.insert(v).unwrap();
        assert_eq!((k, i), (ObjKind::Hash, 0));
        assert!(matches!(o.get(k, i), Some(ObjRef::Hash(h)) if h.len() == 1));
        let l = o.insert_empty(ObjKind::List);
        assert!(matches!(o.get(ObjKind::List, l), Some(ObjRef::List(_))));
        o.remove(ObjKind::List, l);
        assert!(o.get(ObjKind::List, l).is_none());
    }
}
