//! Stored values. Strings only in this wave; lists, hashes, sets and sorted sets join this
//! enum (with their compact encodings) in the data-types issue. Owned by one shard thread.

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

/// One key's slot in the keyspace.
#[derive(Debug, Clone)]
pub struct Entry {
    pub val: Value,
    /// Absolute expiry in Unix milliseconds; 0 means none.
    pub expire_at: u64,
    /// Last access, Unix seconds (truncated), for OBJECT IDLETIME.
    pub atime: u32,
    /// How Redis would have encoded the string object (OBJECT ENCODING).
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

impl Entry {
    pub fn new(val: Value, expire_at: u64, now_ms: u64) -> Entry {
        Entry {
            val,
            expire_at,
            atime: (now_ms / 1000) as u32,
            enc: StrEnc::Auto,
        }
    }

    /// The encoding name OBJECT ENCODING reports, following Redis's rules for strings.
    pub fn encoding(&self) -> &'static str {
        match &self.val {
            Value::Str(b) => {
                if self.enc == StrEnc::Auto && b.len() <= 20 && parse_i64(b).is_some() {
                    "int"
                } else if self.enc == StrEnc::Raw || b.len() > 44 {
                    "raw"
                } else {
                    "embstr"
                }
            }
        }
    }

    /// Approximate heap bytes held by this entry's value (for INFO and, later, maxmemory).
    pub fn value_bytes(&self) -> usize {
        match &self.val {
            Value::Str(b) => b.len(),
        }
    }
}
