//! Values as commands see them. The keyspace stores strings inline in its arena (see
//! `db.rs`); `Value` is the owned form carried between databases and shards
//! ([`Exported`]) and, for the types that join in the data-types issue (lists, hashes,
//! sets, sorted sets, with their compact encodings) what `Db::set_value` stores; the
//! keyspace keeps collections unboxed (`shard::objs`) and lends them as [`ObjRef`] /
//! [`ObjMut`].
//! Owned by one shard thread.

use bytes::Bytes;

use crate::protocol::parse_i64;
use crate::types::hash::Hash;
use crate::types::list::List;
use crate::types::set::Set;
use crate::types::stream::Stream;
use crate::types::zset::ZSet;

/// A value as a whole, owned (what crosses databases and shards). Collections are boxed;
/// cloning one deep-copies it (COPY relies on that).
#[derive(Debug, Clone)]
pub enum Value {
    Str(Bytes),
    Hash(Box<Hash>),
    Set(Box<Set>),
    List(Box<List>),
    ZSet(Box<ZSet>),
    Stream(Box<Stream>),
}

impl PartialEq for Value {
    /// Content equality: collections compare as unordered (field, value) pairs / members.
    fn eq(&self, other: &Value) -> bool {
        match (self, other) {
            (Value::Str(a), Value::Str(b)) => a == b,
            (Value::Hash(a), Value::Hash(b)) => {
                a.len() == b.len() && a.iter().all(|(f, v)| b.get(f) == Some(v))
            }
            (Value::Set(a), Value::Set(b)) => {
                a.len() == b.len() && a.iter().all(|m| b.contains(&m))
            }
            (Value::List(a), Value::List(b)) => a.len() == b.len() && a.iter().eq(b.iter()),
            (Value::ZSet(a), Value::ZSet(b)) => a.to_vec() == b.to_vec(),
            (Value::Stream(a), Value::Stream(b)) => a == b,
            _ => false,
        }
    }
}

impl Value {
    /// The name `TYPE` reports.
    pub fn type_name(&self) -> &'static str {
        self.as_obj().map_or("string", |o| o.type_name())
    }

    /// The name OBJECT ENCODING reports for a collection (see [`ObjRef::obj_encoding`]);
    /// `None` for strings (their encoding depends on flags in the entry).
    pub fn obj_encoding(&self) -> Option<&'static str> {
        self.as_obj().map(|o| o.obj_encoding())
    }

    /// The collection, borrowed; `None` for a string.
    pub fn as_obj(&self) -> Option<ObjRef<'_>> {
        Some(match self {
            Value::Str(_) => return None,
            Value::Hash(h) => ObjRef::Hash(h),
            Value::Set(s) => ObjRef::Set(s),
            Value::List(l) => ObjRef::List(l),
            Value::ZSet(z) => ObjRef::ZSet(z),
            Value::Stream(x) => ObjRef::Stream(x),
        })
    }
}

/// A collection as the keyspace lends it (it stores them unboxed, see `shard::objs`).
#[derive(Debug, Clone, Copy)]
pub enum ObjRef<'a> {
    Hash(&'a Hash),
    Set(&'a Set),
    List(&'a List),
    ZSet(&'a ZSet),
    Stream(&'a Stream),
}

/// A collection lent for a write.
#[derive(Debug)]
pub enum ObjMut<'a> {
    Hash(&'a mut Hash),
    Set(&'a mut Set),
    List(&'a mut List),
    ZSet(&'a mut ZSet),
    Stream(&'a mut Stream),
}

impl ObjRef<'_> {
    /// The name `TYPE` reports.
    pub fn type_name(self) -> &'static str {
        match self {
            ObjRef::Hash(_) => "hash",
            ObjRef::Set(_) => "set",
            ObjRef::List(_) => "list",
            ObjRef::ZSet(_) => "zset",
            ObjRef::Stream(_) => "stream",
        }
    }

    /// The name OBJECT ENCODING reports, as redis-server 7.0.15 says it: 7.0 has no
    /// listpack sets (that arrived in 7.2), so a small non-integer set is a `hashtable`
    /// there.
    pub fn obj_encoding(self) -> &'static str {
        match self {
            ObjRef::Hash(h) => h.encoding(),
            ObjRef::Set(s) => match s.encoding() {
                "listpack" => "hashtable",
                e => e,
            },
            // 7.0 stores every list as a quicklist (listpack lists arrived in 7.2).
            ObjRef::List(_) => "quicklist",
            // `listpack` up to 128 members of at most 64 bytes (7.0's compiled defaults).
            ObjRef::ZSet(z) => z.encoding(),
            ObjRef::Stream(_) => "stream",
        }
    }

    /// Bytes the value holds: its slot in the keyspace's object vector and its heap.
    /// Elements' own blocks are estimated from `samples` of them (0: all).
    pub fn memory_usage(self, samples: usize) -> usize {
        match self {
            ObjRef::Hash(h) => std::mem::size_of::<Hash>() + h.heap_bytes_sampled(samples),
            ObjRef::Set(s) => std::mem::size_of::<Set>() + s.heap_bytes_sampled(samples),
            ObjRef::List(l) => {
                std::mem::size_of::<Option<Box<List>>>()
                    + std::mem::size_of::<List>()
                    + l.heap_bytes()
            }
            ObjRef::ZSet(z) => std::mem::size_of::<ZSet>() + z.heap_bytes_sampled(samples),
            ObjRef::Stream(x) => {
                std::mem::size_of::<Option<Box<Stream>>>()
                    + std::mem::size_of::<Stream>()
                    + x.heap_bytes()
            }
        }
    }

    /// An owned deep copy.
    pub fn to_value(self) -> Value {
        match self {
            ObjRef::Hash(h) => Value::Hash(Box::new(h.clone())),
            ObjRef::Set(s) => Value::Set(Box::new(s.clone())),
            ObjRef::List(l) => Value::List(Box::new(l.clone())),
            ObjRef::ZSet(z) => Value::ZSet(Box::new(z.clone())),
            ObjRef::Stream(x) => Value::Stream(Box::new(x.clone())),
        }
    }

    /// True if the collection is empty (Redis never keeps empty ones).
    pub fn is_empty(self) -> bool {
        match self {
            ObjRef::Hash(h) => h.is_empty(),
            ObjRef::Set(s) => s.is_empty(),
            ObjRef::List(l) => l.is_empty(),
            ObjRef::ZSet(z) => z.is_empty(),
            // A stream stays when emptied (XDEL, XTRIM), as in Redis.
            ObjRef::Stream(_) => false,
        }
    }
}

/// A whole entry taken out of a `Db`, owned and `Send`: what RENAME, COPY and MOVE carry
/// from one database or shard to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    pub val: Value,
    /// Absolute expiry in Unix milliseconds; 0 means none.
    pub expire_at: u64,
    /// Last access, Unix seconds (low 24 bits, as Redis's LRU clock).
    pub atime: u32,
    pub enc: StrEnc,
}

/// The string encoding Redis would report, where it does not follow from the bytes alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StrEnc {
    /// Redis's tryObjectEncoding rules: `int` if it reads as an integer, else by length.
    #[default]
    Auto,
    /// Modified in place (APPEND, SETRANGE): always `raw`.
    Raw,
    /// Built without integer encoding (INCRBYFLOAT): `embstr` up to 44 bytes, else `raw`.
    NoInt,
}

/// The encoding name OBJECT ENCODING reports for a string, following Redis's rules.
pub fn str_encoding(b: &[u8], enc: StrEnc) -> &'static str {
    if enc == StrEnc::Auto && b.len() <= 20 && parse_i64(b).is_some() {
        "int"
    } else if enc == StrEnc::Raw || b.len() > 44 {
        "raw"
    } else {
        "embstr"
    }
}

impl StrEnc {
    pub fn to_bits(self) -> u8 {
        match self {
            StrEnc::Auto => 0,
            StrEnc::Raw => 1,
            StrEnc::NoInt => 2,
        }
    }

    pub fn from_bits(b: u8) -> StrEnc {
        match b & 3 {
            1 => StrEnc::Raw,
            2 => StrEnc::NoInt,
            _ => StrEnc::Auto,
        }
    }
}
