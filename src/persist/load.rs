//! Loading `dir/dbfilename` at startup: a loader thread (`start_load`) reads and decodes the
//! file, with a decoding pool for the collections, and streams each shard its keys (split
//! by `shard::route::shard_of`) as they are decoded; each shard thread stores them as they
//! come (`apply`), all shards at once, and serves only once the whole file checked out. A
//! corrupt file stops the server with the reader's error; a missing file is an empty start.
//! Replicas and DEBUG RELOAD split a file in memory (`split_at`).

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;

use super::read::{decode_record_into, parse_records, string_record, RawStr, Rec, Summary};
use crate::shard::value::Value;
use crate::shard::Shard;

/// Part of a shard's share of a loaded file.
pub enum KeyPart {
    /// One decoded key: (database, key, value, expiry in absolute Unix ms).
    Key(usize, Bytes, Value, u64),
    /// A decoded collection, out of its box (`objs::Unboxed`), as `Key`.
    Obj(usize, Bytes, crate::shard::objs::Unboxed, u64),
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
    let got: std::sync::Mutex<Vec<(usize, usize, Vec<KeyPart>)>> =
        std::sync::Mutex::new(Vec::new());
    let summary = split_into(data, n, databases, check_crc, now, &|seq, s, part| {
        if let Ok(mut all) = got.lock() {
            all.push((seq, s, part));
        }
    })?;
    let mut got = got
        .into_inner()
        .map_err(|_| "RDB decoding failed".to_string())?;
    // In file order within each shard (the strings, numbered last, after the collections).
    got.sort_unstable_by_key(|g| g.0);
    let mut shards: Vec<Vec<KeyPart>> = (0..n).map(|_| Vec::new()).collect();
    for (_, s, mut part) in got {
        if let Some(mine) = shards.get_mut(s) {
            if mine.is_empty() {
                *mine = part;
            } else {
                mine.append(&mut part);
            }
        }
    }
    Ok(Split { shards, summary })
}

/// Decodes `data` for `nshards` shards, handing each shard's keys to `deliver` as soon as
/// they are ready (from the main thread and the decoding pool, in no particular order, with
/// the number of their chunk in file order: the strings come last), so the shards can store
/// them while the rest is still being decoded. Returns the file's summary; on an error (the
/// first the file shows) some keys may have been delivered.
pub fn split_into(
    data: Bytes,
    nshards: usize,
    databases: usize,
    check_crc: bool,
    now: u64,
    deliver: &(dyn Fn(usize, usize, Vec<KeyPart>) + Sync),
) -> Result<crate::persist::read::Summary, String> {
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let n = nshards.max(1);
    let start = Instant::now();
    // The collections are decoded by a pool while the main thread still checks the file
    // after them: each core busy from the start.
    let helpers = std::thread::available_parallelism()
        .map_or(1, |c| c.get().min(8))
        .saturating_sub(1);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Vec<Other>)>();
    let rx = std::sync::Mutex::new(rx);
    let empty = AtomicU64::new(0);
    let decoded = AtomicUsize::new(0);
    // The error of the earliest chunk that failed (file order).
    let failed: std::sync::Mutex<Option<(usize, String)>> = std::sync::Mutex::new(None);
    let body = &data[..];
    // Takes chunks off the queue until it is empty (and closed, if `wait`).
    let drain = |wait: bool| loop {
        let next = match rx.lock() {
            Ok(r) if wait => r.recv().ok(),
            Ok(r) => r.try_recv().ok(),
            Err(_) => None,
        };
        let Some((seq, chunk)) = next else {
            return;
        };
        match decode_chunk(body, &chunk, n) {
            Ok((per_shard, e, count)) => {
                empty.fetch_add(e, Ordering::Relaxed);
                decoded.fetch_add(count, Ordering::Relaxed);
                for (s, part) in per_shard.into_iter().enumerate() {
                    if !part.is_empty() {
                        deliver(seq, s, part);
                    }
                }
            }
            Err(e) => {
                if let Ok(mut f) = failed.lock() {
                    if f.as_ref().is_none_or(|(at, _)| seq < *at) {
                        *f = Some((seq, e));
                    }
                }
            }
        }
    };
    let (framed, summary) = std::thread::scope(|scope| {
        for _ in 0..helpers {
            let spawned = std::thread::Builder::new()
                .name("rdb-decode".into())
                .spawn_scoped(scope, || drain(true));
            if spawned.is_err() {
                break;
            }
        }
        let res = frame(&data, n, databases, check_crc, now, tx);
        let framed = start.elapsed();
        // The strings go to their shards now, while the pool may still decode collections.
        let res = res.map(|(sum, strings)| {
            for (s, per_db) in strings.into_iter().enumerate() {
                let part: Vec<KeyPart> =
                    per_db.into_iter().flatten().map(KeyPart::Strings).collect();
                if !part.is_empty() {
                    deliver(usize::MAX, s, part);
                }
            }
            sum
        });
        // The queue is closed (`tx` gone with `frame`): help with what is left.
        drain(false);
        res.map(|sum| (framed, sum))
    })?;
    if let Some((_, e)) = failed.into_inner().ok().flatten() {
        return Err(e);
    }
    crate::log::verbose(&format!(
        "RDB checked in {} ms, {} collections decoded by {} ms",
        framed.as_millis(),
        decoded.load(Ordering::Relaxed),
        start.elapsed().as_millis()
    ));
    let mut summary = summary;
    summary.keys = summary.keys.saturating_sub(empty.load(Ordering::Relaxed));
    Ok(summary)
}

/// Per shard, per database: its located string keys (created on its first key).
type StringParts = Vec<Vec<Option<Strings>>>;

/// The main thread's pass over the file: checks it, locates the string keys per shard
/// and database, and queues the collections in chunks (numbered in file order) on `tx`.
fn frame(
    data: &Bytes,
    n: usize,
    databases: usize,
    check_crc: bool,
    now: u64,
    tx: std::sync::mpsc::Sender<(usize, Vec<Other>)>,
) -> Result<(Summary, StringParts), String> {
    let mut strings: StringParts = (0..n).map(|_| Vec::new()).collect();
    let mut others: Vec<Other> = Vec::new();
    let mut seq = 0;
    let mut scratch = Vec::new();
    let summary = parse_records(data, now, databases, check_crc, |r| {
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
            Rec::Other { at, expire_at, .. } => {
                others.push(Other {
                    shard: s,
                    db,
                    at,
                    expire_at,
                });
                if others.len() >= CHUNK {
                    // A closed queue only means no helper: `drain` decodes it later.
                    let _ = tx.send((seq, std::mem::take(&mut others)));
                    seq += 1;
                }
            }
        }
        Ok(())
    })?;
    if !others.is_empty() {
        let _ = tx.send((seq, others));
    }
    Ok((summary, strings))
}

/// A collection located by the reader, to decode.
struct Other {
    shard: usize,
    db: usize,
    at: usize,
    expire_at: u64,
}

/// One chunk's decoded collections: per shard, how many were empty, how many in all.
type Decoded = Result<(Vec<Vec<KeyPart>>, u64, usize), String>;

/// Collections per chunk handed to the decoding pool.
const CHUNK: usize = 2048;

/// Decodes a chunk of collections, in order, into per-shard keys.
fn decode_chunk(data: &[u8], chunk: &[Other], nshards: usize) -> Decoded {
    let mut out: Vec<Vec<KeyPart>> = (0..nshards).map(|_| Vec::new()).collect();
    let mut empty = 0;
    // The chunk's keys in one buffer (see `decode_record_into`).
    let (mut keys, mut scratch) = (Vec::with_capacity(chunk.len() * 24), Vec::new());
    let mut decoded = Vec::with_capacity(chunk.len());
    for o in chunk {
        match decode_record_into(data, o.at, &mut keys, &mut scratch)? {
            (range, Some(val)) => decoded.push((o, range, val)),
            (_, None) => empty += 1,
        }
    }
    let keys = Bytes::from(keys);
    for (o, range, val) in decoded {
        if let Some(v) = out.get_mut(o.shard) {
            let key = keys.slice(range);
            v.push(match crate::shard::objs::Unboxed::from_value(val) {
                Ok(u) => KeyPart::Obj(o.db, key, u, o.expire_at),
                Err(val) => KeyPart::Key(o.db, key, val, o.expire_at),
            });
        }
    }
    Ok((out, empty, chunk.len()))
}

/// Reads `path` if it exists (`Ok(None)` if not) and starts decoding it on a thread of its
/// own, which sends each shard's keys to `sinks[shard]` as they are decoded (the shards
/// store them meanwhile) and returns the file's summary, logging as Redis; the sinks close
/// when it ends. A read error is returned at once, a decoding error by the thread.
pub fn start_load(
    path: &Path,
    nshards: usize,
    databases: usize,
    check_crc: bool,
    sinks: Vec<std::sync::mpsc::Sender<Vec<KeyPart>>>,
) -> Result<Option<std::thread::JoinHandle<Result<Summary, String>>>, String> {
    let start = Instant::now();
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "Fatal error loading the DB: {}. Exiting.",
                crate::util::os_text(&e)
            ))
        }
    };
    let path = path.to_path_buf();
    let now = crate::shard::now_ms();
    std::thread::Builder::new()
        .name("rdb-load".into())
        .spawn(move || {
            let sinks = std::sync::Mutex::new(sinks);
            let deliver = |_seq: usize, s: usize, part: Vec<KeyPart>| {
                if let Ok(v) = sinks.lock() {
                    if let Some(tx) = v.get(s) {
                        let _ = tx.send(part);
                    }
                }
            };
            let s = split_into(
                Bytes::from(data),
                nshards,
                databases,
                check_crc,
                now,
                &deliver,
            )
            .map_err(|e| format!("Fatal error loading the DB {}: {e}", path.display()))?;
            // Before the sinks close: an append-only log replayed next may load more.
            super::install_functions(&s.functions)
                .map_err(|e| format!("Fatal error loading the DB {}: {e}", path.display()))?;
            if let Some(v) = &s.redis_ver {
                crate::log::notice(&format!("Loading RDB produced by version {v}"));
            }
            if s.unchecked {
                crate::log::warning(
                    "RDB file was saved with checksum disabled: no check performed.",
                );
            }
            crate::log::notice(&format!(
                "Done loading RDB, keys loaded: {}, keys expired: {}.",
                s.keys, s.expired
            ));
            crate::log::verbose(&format!(
                "RDB decoded in {:.3} seconds, the shards storing their keys meanwhile",
                start.elapsed().as_secs_f64()
            ));
            Ok(s)
        })
        .map(Some)
        .map_err(|e| format!("cannot start the RDB loader thread: {e}"))
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
    let mut keys = keys;
    for i in 0..keys.len() {
        // Decoded keys: the slot of the key AHEAD parts on is prefetched, as for strings.
        if let Some(KeyPart::Key(db, k, ..) | KeyPart::Obj(db, k, ..)) = keys.get(i + AHEAD) {
            shard.db_mut(*db).prefetch_slot(k);
        }
        let Some(slot) = keys.get_mut(i) else {
            break;
        };
        let p = std::mem::replace(
            slot,
            KeyPart::Key(0, Bytes::new(), Value::Str(Bytes::new()), 0),
        );
        match p {
            KeyPart::Key(db, key, val, exp) => shard.db_mut(db).set_value(&key, val, exp, now),
            KeyPart::Obj(db, key, val, exp) => shard.db_mut(db).set_unboxed(&key, val, exp, now),
            KeyPart::Strings(s) => store_strings(shard.db_mut(s.db), &s, now),
        }
    }
}

/// A string record parsed ahead of its insert: key, value, and the key's hash when its
/// slot was prefetched (raw keys; integer or LZF keys are hashed at the insert).
type Ahead<'a> = (RawStr<'a>, RawStr<'a>, Option<u32>);

/// Stores a shard's located string keys of one database. Each record is parsed once,
/// `AHEAD` records before its insert, when its key's table slot is prefetched: the slot
/// miss was most of the cost of a key.
fn store_strings(db: &mut crate::shard::db::Db, s: &Strings, now: u64) {
    let (mut kbuf, mut vbuf) = (Vec::new(), Vec::new());
    let data = &s.data[..];
    let parse = |db: &crate::shard::db::Db, rec: u64| -> Option<Ahead<'_>> {
        let (k, v) = string_record(data, (rec & !HAS_TTL) as usize)?;
        let h = match k {
            RawStr::Raw(kb) => Some(db.prefetch_slot(kb)),
            _ => None,
        };
        Some((k, v, h))
    };
    let mut ring: std::collections::VecDeque<Option<Ahead<'_>>> =
        std::collections::VecDeque::with_capacity(AHEAD + 1);
    for &rec in s.recs.iter().take(AHEAD) {
        ring.push_back(parse(db, rec));
    }
    let mut expires = s.expires.iter();
    for (i, &rec) in s.recs.iter().enumerate() {
        if let Some(&next) = s.recs.get(i + AHEAD) {
            ring.push_back(parse(db, next));
        }
        let exp = if rec & HAS_TTL != 0 {
            expires.next().copied().unwrap_or(0)
        } else {
            0
        };
        let Some(Some((k, v, h))) = ring.pop_front() else {
            continue;
        };
        let (Some(k), Some(v)) = (k.bytes(&mut kbuf), v.bytes(&mut vbuf)) else {
            continue;
        };
        match h {
            Some(h) => db.set_hashed(h, k, v, exp, now),
            None => db.set(k, v, exp, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::rdb::{Framer, PartWriter, ValRef};
    use crate::shard::value::ObjRef;

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
                        KeyPart::Key(db, k, ..) | KeyPart::Obj(db, k, ..) => {
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

    /// A file of `n` small hashes (listpacks) and as many strings, interleaved.
    fn hashes_file(n: usize) -> Vec<u8> {
        let mut w = PartWriter::new(true);
        for i in 0..n {
            let mut h = crate::types::hash::Hash::new();
            h.insert(Bytes::from("f"), Bytes::from(format!("value-{i}")));
            h.insert(Bytes::from("n"), Bytes::from(i.to_string()));
            let k = format!("h:{i}");
            w.key(k.as_bytes(), ValRef::Obj(ObjRef::Hash(&h)), 0);
            let k = format!("s:{i}");
            w.key(k.as_bytes(), ValRef::Str(b"v"), 0);
        }
        let mut f = Framer::header(1, 2);
        f.extend(Framer::db(0, 2 * n as u64, 0));
        f.extend(&w.buf);
        let crc = super::super::crc64::update(0, &f);
        f.extend(Framer::trailer(crc, true));
        f
    }

    #[test]
    fn collections_decoded_by_the_pool_keep_file_order() {
        // More than a few chunks, so the decoding pool takes part.
        let n = CHUNK * 3 + 17;
        let data = hashes_file(n);
        for nshards in [1, 2] {
            let split = split_at(&data, nshards, 16, true, 1000).unwrap();
            assert_eq!(split.summary.keys, 2 * n as u64);
            let mut seen = vec![false; n];
            for (s, parts) in split.shards.iter().enumerate() {
                let mut last = None;
                for p in parts {
                    let KeyPart::Obj(_, k, v, _) = p else {
                        continue;
                    };
                    assert_eq!(crate::shard::route::shard_of(k, nshards), s);
                    let i: usize = std::str::from_utf8(&k[2..]).unwrap().parse().unwrap();
                    // File order within a shard.
                    assert!(last < Some(i), "{last:?} then {i}");
                    last = Some(i);
                    let crate::shard::objs::Unboxed::Hash(h) = v else {
                        panic!("not a hash")
                    };
                    assert_eq!(h.get(b"f"), Some(format!("value-{i}").as_bytes()));
                    seen[i] = true;
                }
            }
            assert!(seen.iter().all(|&x| x));
        }
    }

    #[test]
    fn a_bad_collection_deep_in_the_file_is_an_error() {
        let n = CHUNK * 2;
        let mut data = hashes_file(n);
        // Break the listpack of a hash in the second chunk: its count field (the blob is
        // stored uncompressed: too small for LZF to pay). No CRC check, so the decoder
        // has to find it.
        let key = format!("h:{}", CHUNK + 5);
        let at = data
            .windows(key.len())
            .position(|w| w == key.as_bytes())
            .unwrap();
        // Key, then the blob's length byte, then 4 bytes total, then 2 bytes count.
        let count_at = at + key.len() + 1 + 4;
        data[count_at] ^= 0x7f;
        let e = split_at(&data, 2, 16, false, 1000).err().unwrap();
        assert!(e.contains("integrity check failed"), "{e}");
    }

    #[test]
    fn apply_stores_every_string_with_its_ttl() {
        // Raw, integer-encoded and LZF keys; raw, integer and LZF values; some TTLs.
        let mut w = PartWriter::new(true);
        let mut want = Vec::new();
        for i in 0..3000 {
            let k = match i % 3 {
                0 => format!("key:{i}"),
                1 => i.to_string(),
                _ => format!("{}{i}", "k".repeat(40)),
            };
            let v = match i % 4 {
                0 => (i * 7).to_string(),
                1 => format!("v{i}:{}", "x".repeat(40)),
                _ => format!("v{i}"),
            };
            let exp = if i % 5 == 0 {
                4_000_000_000_000 + i as u64
            } else {
                0
            };
            w.key(k.as_bytes(), ValRef::Str(v.as_bytes()), exp);
            want.push((k, v, exp));
        }
        let mut f = Framer::header(1, 2);
        f.extend(Framer::db(1, want.len() as u64, 0));
        f.extend(&w.buf);
        let crc = super::super::crc64::update(0, &f);
        f.extend(Framer::trailer(crc, true));
        let split = split_at(&f, 1, 16, true, 1000).unwrap();
        let mut shard = Shard::new(0, 1, 16, crate::commands::table::table().len());
        for part in split.shards {
            apply(&mut shard, part);
        }
        let now = crate::shard::now_ms();
        let db = shard.db_mut(1);
        assert_eq!(db.len(), want.len());
        for (k, v, exp) in want {
            let got = db.get_str(k.as_bytes(), now).unwrap();
            assert_eq!(got.as_deref(), Some(v.as_bytes()), "{k}");
            assert_eq!(db.meta(k.as_bytes(), now).unwrap().expire_at, exp, "{k}");
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
