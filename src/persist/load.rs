//! Loading `dir/dbfilename` at startup: the main thread reads and decodes the file before any
//! shard serves, and splits the keys by owner shard (`shard::route::shard_of`); each shard
//! thread then stores its own keys as it starts (`apply`), all shards at once. A corrupt
//! file stops the server with the reader's error; a missing file is an empty start.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;

use super::read::{
    decode_record, parse_records, string_record, string_record_key, RawStr, Rec, Summary,
};
use crate::shard::value::Value;
use crate::shard::Shard;

/// Part of a shard's share of a loaded file.
pub enum KeyPart {
    /// One decoded key: (database, key, value, expiry in absolute Unix ms).
    Key(usize, Bytes, Value, u64),
    /// The shard's string keys of one database, located in the file (checked, not copied):
    /// the shard decodes them straight into its keyspace.
    Strings(Strings),
}

/// A shard's string keys of one database, as records of the file they are in.
pub struct Strings {
    /// The whole file (shared by every shard's parts).
    data: Bytes,
    db: usize,
    /// The shard's keys of this database, of every type: its table is sized for them once.
    keys: usize,
    /// The records' type byte offsets; `HAS_TTL` set: the next of `expires` is its expiry.
    recs: Vec<u64>,
    expires: Vec<u64>,
}

const HAS_TTL: u64 = 1 << 63;

/// Records between a key's slot prefetch and its insert.
const AHEAD: usize = 12;

/// The decoded file: per shard, its keys.
pub struct Split {
    pub shards: Vec<Vec<KeyPart>>,
    pub summary: Summary,
}

/// Decodes `data` and splits its keys among `nshards` shards.
pub fn split(
    data: &[u8],
    nshards: usize,
    databases: usize,
    check_crc: bool,
) -> Result<Split, String> {
    split_at(data, nshards, databases, check_crc, crate::shard::now_ms())
}

/// `split`, dropping the keys whose expiry is before `now` (0 keeps them all, as a
/// replica loading its master's RDB does: the master's DELs remove them).
pub fn split_at(
    data: &[u8],
    nshards: usize,
    databases: usize,
    check_crc: bool,
    now: u64,
) -> Result<Split, String> {
    split_owned(
        Bytes::copy_from_slice(data),
        nshards,
        databases,
        check_crc,
        now,
    )
}

/// `split_at` of a file already owned: string keys stay in it (see [`KeyPart::Strings`]).
///
/// The main thread checks the whole file here (a corrupt one is refused before any shard
/// stores a key) and decodes the collections; string keys, most of a typical file, are only
/// located, so they are copied once, by their shard, into its keyspace.
pub fn split_owned(
    data: Bytes,
    nshards: usize,
    databases: usize,
    check_crc: bool,
    now: u64,
) -> Result<Split, String> {
    let n = nshards.max(1);
    let start = Instant::now();
    // Per shard, per database (created on its first key).
    let mut strings: Vec<Vec<Option<Strings>>> = (0..n).map(|_| Vec::new()).collect();
    let mut others: Vec<Other> = Vec::new();
    let mut scratch = Vec::new();
    let mut summary = parse_records(&data, now, databases, check_crc, |r| {
        let (db, key) = match &r {
            Rec::Str { db, key, .. } | Rec::Other { db, key, .. } => (*db, *key),
        };
        let s = if n > 1 {
            let k = key.bytes(&mut scratch).unwrap_or_default();
            crate::shard::route::shard_of(k, n)
        } else {
            0
        };
        let Some(per_db) = strings.get_mut(s) else {
            return Ok(());
        };
        if per_db.len() <= db {
            per_db.resize_with(db + 1, || None);
        }
        let Some(part) = per_db.get_mut(db) else {
            return Ok(());
        };
        let part = part.get_or_insert_with(|| Strings {
            data: data.clone(),
            db,
            keys: 0,
            recs: Vec::new(),
            expires: Vec::new(),
        });
        part.keys += 1;
        match r {
            Rec::Str { at, expire_at, .. } => {
                let mut rec = at as u64;
                if expire_at != 0 {
                    rec |= HAS_TTL;
                    part.expires.push(expire_at);
                }
                part.recs.push(rec);
            }
            Rec::Other { at, expire_at, .. } => others.push(Other {
                shard: s,
                db,
                at,
                expire_at,
            }),
        }
        Ok(())
    })?;
    let framed = start.elapsed();
    let (mut shards, empty) = decode_others(&data, &others, n)?;
    crate::log::verbose(&format!(
        "RDB checked in {} ms, {} collections decoded in {} ms",
        framed.as_millis(),
        others.len(),
        (start.elapsed() - framed).as_millis()
    ));
    summary.keys = summary.keys.saturating_sub(empty);
    // After the shard's decoded keys: a key twice in a file (corrupt; Redis refuses it)
    // keeps one of its values.
    for (v, per_db) in shards.iter_mut().zip(strings) {
        v.extend(per_db.into_iter().flatten().map(KeyPart::Strings));
    }
    Ok(Split { shards, summary })
}

/// A collection located by the reader, to decode.
struct Other {
    shard: usize,
    db: usize,
    at: usize,
    expire_at: u64,
}

/// One thread's decoded collections: per shard, and how many were empty.
type Decoded = Result<(Vec<Vec<KeyPart>>, u64), String>;

/// Collections from this many on are decoded by several threads.
const PARALLEL_FROM: usize = 4096;

/// Decodes the collections, in file order per shard, on as many threads as there are
/// cores (the shards do not run yet: the cores are idle), each a contiguous run of them.
/// Returns the keys per shard and how many were empty collections (not keys).
fn decode_others(data: &[u8], others: &[Other], nshards: usize) -> Decoded {
    let threads = if others.len() < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
    };
    let per = others.len().div_ceil(threads).max(1);
    let run = |chunk: &[Other]| -> Decoded {
        let mut out: Vec<Vec<KeyPart>> = (0..nshards).map(|_| Vec::new()).collect();
        let mut empty = 0;
        for o in chunk {
            match decode_record(data, o.at)? {
                (key, Some(val)) => {
                    if let Some(v) = out.get_mut(o.shard) {
                        v.push(KeyPart::Key(o.db, key, val, o.expire_at));
                    }
                }
                (_, None) => empty += 1,
            }
        }
        Ok((out, empty))
    };
    let results: Vec<Decoded> = if threads <= 1 {
        vec![run(others)]
    } else {
        std::thread::scope(|s| {
            let mut chunks = others.chunks(per);
            let first = chunks.next().unwrap_or_default();
            let handles: Vec<_> = chunks
                .map(|c| {
                    let h = std::thread::Builder::new()
                        .name("rdb-decode".into())
                        .spawn_scoped(s, move || run(c));
                    (c, h)
                })
                .collect();
            let mut res = vec![run(first)];
            for (c, h) in handles {
                res.push(match h {
                    Ok(h) => h
                        .join()
                        .unwrap_or_else(|_| Err("RDB decoding thread failed".into())),
                    // No thread: decoded here.
                    Err(_) => run(c),
                });
            }
            res
        })
    };
    let mut shards: Vec<Vec<KeyPart>> = (0..nshards).map(|_| Vec::new()).collect();
    let mut empty = 0;
    // In file order: the first error is the one the file shows first.
    for r in results {
        let (parts, e) = r?;
        empty += e;
        for (all, mine) in shards.iter_mut().zip(parts) {
            if all.is_empty() {
                *all = mine;
            } else {
                all.extend(mine);
            }
        }
    }
    Ok((shards, empty))
}

/// Reads `path` if it exists (`Ok(None)` if not) and splits its keys, logging as Redis.
pub fn load_file(
    path: &Path,
    nshards: usize,
    databases: usize,
    check_crc: bool,
) -> Result<Option<Split>, String> {
    let start = Instant::now();
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "Fatal error loading the DB: {}. Exiting.",
                crate::server::os_text(&e)
            ))
        }
    };
    let now = crate::shard::now_ms();
    let split = split_owned(Bytes::from(data), nshards, databases, check_crc, now)
        .map_err(|e| format!("Fatal error loading the DB {}: {e}", path.display()))?;
    let s = &split.summary;
    if let Some(v) = &s.redis_ver {
        crate::log::notice(&format!("Loading RDB produced by version {v}"));
    }
    if s.unchecked {
        crate::log::warning("RDB file was saved with checksum disabled: no check performed.");
    }
    crate::log::notice(&format!(
        "Done loading RDB, keys loaded: {}, keys expired: {}.",
        s.keys, s.expired
    ));
    crate::log::verbose(&format!(
        "RDB decoded in {:.3} seconds; the shards store their keys as they start",
        start.elapsed().as_secs_f64()
    ));
    Ok(Some(split))
}

/// Stores a shard's share of a loaded file (its own thread).
pub fn apply(shard: &mut Shard, keys: Vec<KeyPart>) {
    let now = crate::shard::now_ms();
    // Each database's table sized once for all its keys, not doubled ~20 times on the way.
    for p in &keys {
        if let KeyPart::Strings(s) = p {
            shard.db_mut(s.db).reserve(s.keys);
        }
    }
    let (mut kbuf, mut vbuf) = (Vec::new(), Vec::new());
    for p in keys {
        match p {
            KeyPart::Key(db, key, val, exp) => shard.db_mut(db).set_value(&key, val, exp, now),
            KeyPart::Strings(s) => {
                let db = shard.db_mut(s.db);
                let mut expires = s.expires.iter();
                for (i, &rec) in s.recs.iter().enumerate() {
                    // The table slot is a cache miss per key (most of the time here):
                    // start loading the one of a key a few records ahead.
                    if let Some(&next) = s.recs.get(i + AHEAD) {
                        if let Some(RawStr::Raw(k)) =
                            string_record_key(&s.data, (next & !HAS_TTL) as usize)
                        {
                            db.prefetch_slot(k);
                        }
                    }
                    let exp = if rec & HAS_TTL != 0 {
                        expires.next().copied().unwrap_or(0)
                    } else {
                        0
                    };
                    let Some((k, v)) = string_record(&s.data, (rec & !HAS_TTL) as usize) else {
                        continue;
                    };
                    if let (Some(k), Some(v)) = (k.bytes(&mut kbuf), v.bytes(&mut vbuf)) {
                        db.set(k, v, exp, now);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::rdb::{Framer, PartWriter, ValRef};

    /// A file of `n` string keys (some with TTLs, integer and LZF values) and one hash.
    fn file(n: usize) -> Vec<u8> {
        let mut w = PartWriter::new(true);
        for i in 0..n {
            let k = format!("key:{i}");
            let v = match i % 3 {
                0 => i.to_string(),
                1 => format!("v{i}:{}", "x".repeat(40)),
                _ => format!("v{i}"),
            };
            let exp = if i % 5 == 0 { 4_000_000_000_000 } else { 0 };
            w.key(k.as_bytes(), ValRef::Str(v.as_bytes()), exp);
        }
        let mut h = crate::types::hash::Hash::new();
        h.insert(Bytes::from("f"), Bytes::from("v"));
        w.key(b"h", ValRef::Obj(crate::shard::value::ObjRef::Hash(&h)), 0);
        let mut f = Framer::header(1, 2);
        f.extend(Framer::db(2, n as u64 + 1, 0));
        f.extend(&w.buf);
        let crc = super::super::crc64::update(0, &f);
        f.extend(Framer::trailer(crc, true));
        f
    }

    #[test]
    fn strings_reach_their_shards_as_records() {
        let data = file(500);
        for nshards in [1, 3] {
            let split = split_at(&data, nshards, 16, true, 1000).unwrap();
            assert_eq!(split.summary.keys, 501);
            let mut got = 0;
            for (s, parts) in split.shards.iter().enumerate() {
                for p in parts {
                    match p {
                        KeyPart::Key(db, k, ..) => {
                            assert_eq!((*db, k.as_ref()), (2, &b"h"[..]));
                            got += 1;
                        }
                        KeyPart::Strings(st) => {
                            assert_eq!(st.db, 2);
                            got += st.recs.len();
                            for &r in &st.recs {
                                let (k, _) =
                                    string_record(&st.data, (r & !HAS_TTL) as usize).unwrap();
                                let mut b = Vec::new();
                                let k = k.bytes(&mut b).unwrap();
                                assert_eq!(crate::shard::route::shard_of(k, nshards), s);
                            }
                        }
                    }
                }
            }
            assert_eq!(got, 501);
        }
    }

    #[test]
    fn corrupt_string_records_are_errors() {
        let data = file(50);
        for cut in (9..data.len()).step_by(7) {
            assert!(
                split_at(&data[..cut], 2, 16, true, 1000).is_err(),
                "cut {cut}"
            );
        }
        // A string claiming more bytes than the file holds, and a bad LZF stream.
        let mut f = b"REDIS0010".to_vec();
        f.extend([0, 1, b'k', 0x80, 0x7f, 0xff, 0xff, 0xff, b'v']);
        assert!(split_at(&f, 1, 16, false, 0).is_err());
        let mut f = b"REDIS0010".to_vec();
        f.extend([0, 1, b'k', 0xC3, 3, 10, 0x20, 0, 0, 0xFF]);
        assert!(split_at(&f, 1, 16, false, 0).is_err());
    }
}
