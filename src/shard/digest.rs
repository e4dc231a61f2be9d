//! DEBUG DIGEST and DEBUG DIGEST-VALUE as Redis 7.0 computes them (debug.c): SHA-1 based,
//! order-independent where Redis's iteration order is unspecified (sets, hashes, sorted
//! sets, the keys of a database), so a shardis dataset and a redis-server dataset built by
//! the same writes give the same 40 hex digits. Pure functions, run on the shard that owns
//! the keys; the coordinator combines the shards' parts per database (`combine`).

use crate::persist::rdb::ValRef;
use crate::shard::value::ObjRef;

pub type Digest = [u8; 20];

fn sha1(b: &[u8]) -> Digest {
    sha1_smol::Sha1::from(b).digest().bytes()
}

/// digest ^= SHA1(bytes) (Redis's xorDigest).
fn xor(d: &mut Digest, b: &[u8]) {
    for (x, y) in d.iter_mut().zip(sha1(b)) {
        *x ^= y;
    }
}

/// xorDigest, then digest = SHA1(digest) (Redis's mixDigest).
fn mix(d: &mut Digest, b: &[u8]) {
    xor(d, b);
    *d = sha1(d);
}

fn xor_digest(d: &mut Digest, other: &Digest) {
    for (x, y) in d.iter_mut().zip(other) {
        *x ^= y;
    }
}

/// One value's digest as Redis's xorObjectDigest adds it to `d` (type, content, and the
/// expire marker when the key has a TTL).
pub fn mix_value(d: &mut Digest, v: &ValRef<'_>, has_expire: bool) {
    let ty: u32 = match v {
        ValRef::Str(_) => 0,
        ValRef::Obj(ObjRef::List(_)) => 1,
        ValRef::Obj(ObjRef::Set(_)) => 2,
        ValRef::Obj(ObjRef::ZSet(_)) => 3,
        ValRef::Obj(ObjRef::Hash(_)) => 4,
        ValRef::Obj(ObjRef::Stream(_)) => 6,
    };
    mix(d, &ty.to_be_bytes());
    match v {
        ValRef::Str(s) => mix(d, s),
        ValRef::Obj(ObjRef::List(l)) => l.iter().for_each(|e| mix(d, e)),
        ValRef::Obj(ObjRef::Set(s)) => s.iter().for_each(|m| xor(d, &m)),
        ValRef::Obj(ObjRef::ZSet(z)) => {
            for (m, score) in z.to_vec() {
                let mut e = [0u8; 20];
                mix(&mut e, &m);
                mix(&mut e, crate::protocol::fmt_g17(score).as_bytes());
                xor(d, &e);
            }
        }
        ValRef::Obj(ObjRef::Hash(h)) => {
            for (f, val) in h.iter() {
                let mut e = [0u8; 20];
                mix(&mut e, f);
                mix(&mut e, val);
                xor(d, &e);
            }
        }
        // Each entry's `ms.seq`, then its fields and values (groups are not digested).
        ValRef::Obj(ObjRef::Stream(x)) => {
            for (id, fields) in x.iter() {
                mix(d, format!("{}.{}", id.ms, id.seq).as_bytes());
                fields.iter().for_each(|f| mix(d, f));
            }
        }
    }
    if has_expire {
        xor(d, b"!!expire!!");
    }
}

/// DEBUG DIGEST-VALUE of one value (all zeros for a missing key).
pub fn value_digest(v: Option<(ValRef<'_>, bool)>) -> Digest {
    let mut d = [0u8; 20];
    if let Some((v, exp)) = v {
        mix_value(&mut d, &v, exp);
    }
    d
}

/// One key's contribution to its database's part: mix(key) then the value.
pub fn key_digest(key: &[u8], v: &ValRef<'_>, has_expire: bool) -> Digest {
    let mut d = [0u8; 20];
    mix(&mut d, key);
    mix_value(&mut d, v, has_expire);
    d
}

/// A shard's part of one database: the XOR of its keys' digests' SHA-1s, and how many keys.
#[derive(Clone, Copy, Default, Debug)]
pub struct Part {
    pub xor: Digest,
    pub keys: u64,
}

impl Part {
    /// Adds one key's digest as Redis does to the dataset's (`xorDigest`: its SHA-1).
    pub fn add(&mut self, k: &Digest) {
        xor(&mut self.xor, k);
        self.keys += 1;
    }
}

/// computeDatasetDigest from every shard's per-database parts: for each database that
/// holds keys on any shard, in order, mix its index, then XOR in all its keys.
pub fn combine(parts: &[Vec<Part>]) -> Digest {
    let mut fin = [0u8; 20];
    let dbs = parts.iter().map(Vec::len).max().unwrap_or(0);
    for db in 0..dbs {
        let keys: u64 = parts.iter().filter_map(|p| p.get(db)).map(|p| p.keys).sum();
        if keys == 0 {
            continue;
        }
        mix(&mut fin, &(db as u32).to_be_bytes());
        for p in parts.iter().filter_map(|p| p.get(db)) {
            xor_digest(&mut fin, &p.xor);
        }
    }
    fin
}

pub fn hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_redis_7_0_15() {
        // Values from a real redis-server 7.0.15 (DEBUG DIGEST-VALUE).
        assert_eq!(
            hex(&value_digest(Some((ValRef::Str(b"hello"), false)))),
            "36b23a1456b2dce2c3ed252c456761301dba8060"
        );
        assert_eq!(hex(&value_digest(None)), "0".repeat(40));
        assert_eq!(hex(&combine(&[vec![Part::default(); 16]])), "0".repeat(40));
    }
}
