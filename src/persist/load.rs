//! Loading `dir/dbfilename` at startup: the main thread reads and decodes the file before any
//! shard serves, and splits the keys by owner shard (`shard::route::shard_of`); each shard
//! thread then stores its own keys as it starts (`apply`), all shards at once. A corrupt
//! file stops the server with the reader's error; a missing file is an empty start.

use std::path::Path;
use std::time::Instant;

use bytes::Bytes;

use super::read::{parse, Loaded, Summary};
use crate::shard::value::Value;
use crate::shard::Shard;

/// One key on its way to its shard: (database, key, value, expiry in absolute Unix ms).
pub type KeyPart = (usize, Bytes, Value, u64);

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
    let mut shards: Vec<Vec<KeyPart>> = (0..nshards.max(1)).map(|_| Vec::new()).collect();
    let summary = parse(data, now, databases, check_crc, |k: Loaded| {
        let s = crate::shard::route::shard_of(&k.key, nshards.max(1));
        if let Some(v) = shards.get_mut(s) {
            v.push((k.db, k.key, k.val, k.expire_at));
        }
        Ok(())
    })?;
    Ok(Split { shards, summary })
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
    let split = split(&data, nshards, databases, check_crc)
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
    for (db, key, val, exp) in keys {
        shard.db_mut(db).set_value(&key, val, exp, now);
    }
}
