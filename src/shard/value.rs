//! Values as commands see them. The keyspace stores strings inline in its arena (see
//! `db.rs`); `Value` is the owned form carried between databases and shards
//! ([`Exported`]) and, for the types that join in the data-types issue (lists, hashes,
//! sets, sorted sets, with their compact encodings), the boxed object an entry points to.
//! Owned by one shard thread.

use bytes::Bytes;

use crate::protocol::parse_i64;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Bytes),
}

impl Value {
    /// The name `TYPE` reports.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Str(_) => "string",
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
