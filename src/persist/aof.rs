//! The append-only files: every shard appends its write journal (`shard::journal`) to its own
//! file, so a restart replays the writes made since the last snapshot.
//!
//! Layout, in `dir/appenddirname` (Redis 7's multi-part shape, one incremental file per shard):
//! - `<appendfilename>.<seq>.base.rdb`: a snapshot (an RDB file) the logs start from;
//! - `<appendfilename>.<seq>.s<shard>.incr.aof`: shard `shard`'s records after it, as RESP
//!   commands with `SELECT` when the database changes and a `#TX:<id>:<parts>` annotation line
//!   before each record of a multi-shard write (Redis skips `#` lines in an AOF);
//! - `<appendfilename>.manifest`: which files make up the data set, Redis's line format
//!   (`file <name> seq <n> type b|i`) plus `shard <k>` on the per-shard logs.
//!
//! Threads: startup loading runs on the main thread (decode) and on each shard's thread
//! (replay of its own records); each shard's `Writer` runs on that shard after every loop
//! pass (one `write` per pass carrying every new record, before the replies go out);
//! `appendfsync everysec` has each shard submit an `fdatasync` of its own file to its ring
//! once a second (`Worker::submit_io`; the shard keeps serving while it runs); under
//! `always` a pass's records are one group on the ring, and the replies that depend on them
//! wait for it (`server::worker::aof`); a shard's loop syncs its file when it stops.
//! BGREWRITEAOF takes a snapshot
//! under the all-shard lock, switches every shard to new logs at that same moment, then a std
//! thread writes the base and the new manifest.
//!
//! A multi-shard write whose records did not reach every shard's file before a crash is
//! dropped whole at load (the journal's transaction tags carry the shard count).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::Config;
use crate::shard::journal::TxTag;
use crate::shard::Shard;

/// One replayable record read back from a shard's log.
pub struct Rec {
    pub db: usize,
    pub tx: Option<TxTag>,
    pub argv: Vec<Bytes>,
}

/// What INFO persistence reports about the AOF and what the writers share.
pub struct State {
    /// `appendonly` as in force (CONFIG SET switches it).
    pub enabled: AtomicBool,
    /// Sequence number of the current files.
    pub seq: AtomicU64,
    pub rewriting: AtomicBool,
    pub rewrites: AtomicU64,
    pub last_rewrite_ok: AtomicBool,
    pub last_write_ok: AtomicBool,
    /// Everysec fdatasyncs in flight on the shards' rings (INFO aof_pending_bio_fsync),
    /// completed (aof_background_fsyncs), and seconds a shard found its previous one still
    /// running (aof_delayed_fsync).
    pub fsyncs_pending: AtomicU64,
    pub fsyncs_done: AtomicU64,
    pub fsyncs_delayed: AtomicU64,
    /// Bytes in each shard's current log (auto-aof-rewrite, INFO aof_current_size).
    incr: Vec<AtomicU64>,
    /// Size of the current base file.
    pub base_size: AtomicU64,
    /// The AOF's size right after the last rewrite or at startup (Redis's
    /// aof_rewrite_base_size): auto-aof-rewrite-percentage measures growth from it.
    pub rewrite_base: AtomicU64,
}

impl State {
    pub fn new(nshards: usize, enabled: bool) -> State {
        State {
            enabled: AtomicBool::new(enabled),
            seq: AtomicU64::new(1),
            rewriting: AtomicBool::new(false),
            rewrites: AtomicU64::new(0),
            last_rewrite_ok: AtomicBool::new(true),
            last_write_ok: AtomicBool::new(true),
            fsyncs_pending: AtomicU64::new(0),
            fsyncs_done: AtomicU64::new(0),
            fsyncs_delayed: AtomicU64::new(0),
            incr: (0..nshards).map(|_| AtomicU64::new(0)).collect(),
            base_size: AtomicU64::new(0),
            rewrite_base: AtomicU64::new(0),
        }
    }

    /// The AOF's total size: base plus every shard's current log (INFO aof_current_size).
    pub fn current_size(&self) -> u64 {
        self.base_size.load(Ordering::Relaxed)
            + self
                .incr
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .sum::<u64>()
    }

    fn set_incr(&self, shard: usize, n: u64) {
        if let Some(c) = self.incr.get(shard) {
            c.store(n, Ordering::Relaxed);
        }
    }
}

pub fn dir(cfg: &Config) -> PathBuf {
    PathBuf::from(&cfg.appenddirname)
}

fn manifest_path(cfg: &Config) -> PathBuf {
    dir(cfg).join(format!("{}.manifest", cfg.appendfilename))
}

fn base_name(cfg: &Config, seq: u64) -> String {
    format!("{}.{seq}.base.rdb", cfg.appendfilename)
}

fn incr_name(cfg: &Config, seq: u64, shard: usize) -> String {
    format!("{}.{seq}.s{shard}.incr.aof", cfg.appendfilename)
}

/// The manifest's text for a base (if any) and the logs of `seqs` for every shard.
fn manifest_text(cfg: &Config, base: Option<u64>, seqs: &[u64]) -> String {
    let mut out = format!("# shardis append-only files, {} shards\n", cfg.shards);
    if let Some(b) = base {
        out.push_str(&format!("file {} seq {b} type b\n", base_name(cfg, b)));
    }
    for &seq in seqs {
        for s in 0..cfg.shards {
            out.push_str(&format!(
                "file {} seq {seq} type i shard {s}\n",
                incr_name(cfg, seq, s)
            ));
        }
    }
    out
}

/// Writes `text` as the manifest: a temp file, fsynced, renamed over the old one.
fn write_manifest(cfg: &Config, text: &str) -> Result<(), String> {
    let path = manifest_path(cfg);
    let tmp = dir(cfg).join(format!("temp-{}.manifest", cfg.appendfilename));
    let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir(cfg)) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A parsed manifest: the base file (seq, name) and each shard's logs in sequence order.
struct Manifest {
    base: Option<(u64, String)>,
    incr: Vec<Vec<(u64, String)>>,
    /// Incremental files without a shard: a directory written by redis-server.
    redis_incr: Vec<(u64, String)>,
}

fn parse_manifest(text: &str, nshards: usize) -> Result<Manifest, String> {
    let mut m = Manifest {
        base: None,
        incr: (0..nshards).map(|_| Vec::new()).collect(),
        redis_incr: Vec::new(),
    };
    let shards_seen: usize = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("# shardis append-only files, ")
                .and_then(|r| r.strip_suffix(" shards"))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if shards_seen != 0 && shards_seen != nshards {
        return Err(format!(
            "the append-only files were written by {shards_seen} shards and this server has \
             {nshards}: start it with --shards {shards_seen}"
        ));
    }
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        let field = |k: &str| {
            w.iter()
                .position(|x| *x == k)
                .and_then(|i| w.get(i + 1))
                .copied()
        };
        let (Some(name), Some(seq), Some(kind)) = (field("file"), field("seq"), field("type"))
        else {
            return Err(format!("Invalid AOF manifest file format: '{line}'"));
        };
        if name.contains('/') {
            return Err(format!("Invalid AOF manifest file name: '{name}'"));
        }
        let seq: u64 = seq
            .parse()
            .map_err(|_| format!("Invalid AOF manifest sequence: '{line}'"))?;
        match kind {
            "b" => m.base = Some((seq, name.to_string())),
            "i" if field("shard").is_none() => m.redis_incr.push((seq, name.to_string())),
            "i" => {
                let shard: usize = field("shard")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("Invalid AOF manifest shard: '{line}'"))?;
                let slot = m.incr.get_mut(shard).ok_or_else(|| {
                    format!(
                        "the append-only files were written by more shards than --shards {nshards} \
                         (line '{line}'): start with the same shard count"
                    )
                })?;
                slot.push((seq, name.to_string()));
            }
            _ => return Err(format!("Unknown AOF file type in manifest: '{line}'")),
        }
    }
    for v in m.incr.iter_mut() {
        v.sort_by_key(|(seq, _)| *seq);
    }
    m.redis_incr.sort_by_key(|(seq, _)| *seq);
    if !m.redis_incr.is_empty() && m.incr.iter().any(|v| !v.is_empty()) {
        return Err("AOF manifest mixes shardis and redis-server files".into());
    }
    Ok(m)
}

/// What startup loads from the append-only files.
pub struct Loaded {
    /// The base snapshot's path, if the manifest names one.
    pub base: Option<PathBuf>,
    /// A redis-server directory, replayed and converted: each shard's keys.
    pub keys: Option<Vec<Vec<super::load::KeyPart>>>,
    /// Each shard's records, incomplete multi-shard writes removed.
    pub shards: Vec<Vec<Rec>>,
    pub seq: u64,
}

/// Reads the manifest and every shard's logs (`Ok(None)`: no append-only files yet).
pub fn load(cfg: &Config) -> Result<Option<Loaded>, String> {
    let text = match std::fs::read_to_string(manifest_path(cfg)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("Can't open the AOF manifest: {e}")),
    };
    let m = parse_manifest(&text, cfg.shards)?;
    if !m.redis_incr.is_empty() {
        return load_redis_dir(cfg, m).map(Some);
    }
    let mut seq = m.base.as_ref().map_or(1, |(s, _)| *s);
    let mut shards = Vec::with_capacity(cfg.shards);
    for (s, files) in m.incr.iter().enumerate() {
        let mut recs = Vec::new();
        for (fseq, name) in files {
            seq = seq.max(*fseq);
            let path = dir(cfg).join(name);
            let data = match std::fs::read(&path) {
                Ok(d) => d,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(format!("Can't open the append-only file {name}: {e}")),
            };
            let (mut got, complete) = parse_log(&data)
                .map_err(|e| format!("Bad file format reading the append only file {name}: {e}"))?;
            if complete < data.len() {
                if !cfg.aof_load_truncated {
                    return Err(format!(
                        "Unexpected end of file reading the append only file {name}. You can: \
                         1) Make a backup of your AOF file, then use ./redis-check-aof --fix \
                         <filename.manifest>. 2) Alternatively you can set the \
                         'aof-load-truncated' configuration option to yes and restart the server."
                    ));
                }
                crate::log::warning(&format!(
                    "!!! Warning: short read while loading the AOF file {name} (shard {s})!!! \
                     AOF loaded anyway because aof-load-truncated is enabled"
                ));
                // Redis truncates the file to the last complete command, so the next
                // appends continue a valid file.
                if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) {
                    let _ = f.set_len(complete as u64);
                }
            }
            recs.append(&mut got);
        }
        shards.push(recs);
    }
    drop_incomplete(&mut shards);
    let base = m.base.map(|(_, name)| dir(cfg).join(name));
    let n: usize = shards.iter().map(Vec::len).sum();
    crate::log::notice(&format!(
        "Reading the append-only files: {} records in {} shard logs{}",
        n,
        shards.len(),
        base.as_ref()
            .map_or(String::new(), |b| format!(", base {}", b.display()))
    ));
    Ok(Some(Loaded {
        base,
        keys: None,
        shards,
        seq,
    }))
}

/// Loads a redis-server 7 append-only directory (its base, RDB or RESP, then its incremental
/// files) by replaying it into one temporary shard on this thread, then splits the keys by
/// owner shard; writes a shardis base and manifest of the next sequence so the next restart
/// reads shardis's own files (Redis's manifest is kept beside it as `.redis-<secs>`).
fn load_redis_dir(cfg: &Config, m: Manifest) -> Result<Loaded, String> {
    use crate::commands::table::table;
    let mut tmp = Shard::new(0, 1, cfg.databases, table().len());
    let mut seq = 0;
    if let Some((bseq, name)) = &m.base {
        seq = *bseq;
        let path = dir(cfg).join(name);
        let data = std::fs::read(&path).map_err(|e| format!("Can't open {name}: {e}"))?;
        if data.starts_with(b"REDIS") {
            let split = super::load::split(&data, 1, cfg.databases, cfg.rdbchecksum)
                .map_err(|e| format!("Bad base file {name}: {e}"))?;
            super::install_functions(&split.summary.functions)?;
            for part in split.shards {
                super::load::apply(&mut tmp, part);
            }
        } else {
            let (recs, _) = parse_log(&data).map_err(|e| format!("Bad base file {name}: {e}"))?;
            replay(&mut tmp, recs);
        }
    }
    let mut n = 0;
    for (iseq, name) in &m.redis_incr {
        seq = seq.max(*iseq);
        let path = dir(cfg).join(name);
        let data = std::fs::read(&path).map_err(|e| format!("Can't open {name}: {e}"))?;
        let (recs, used) = parse_log(&data)
            .map_err(|e| format!("Bad file format reading the append only file {name}: {e}"))?;
        if used < data.len() && !cfg.aof_load_truncated {
            return Err(format!(
                "Unexpected end of file reading the append only file {name}"
            ));
        }
        n += recs.len();
        replay(&mut tmp, recs);
    }
    // The keys, to their owner shards.
    let now = crate::shard::now_ms();
    let mut keys: Vec<Vec<super::load::KeyPart>> = (0..cfg.shards).map(|_| Vec::new()).collect();
    for (db, d) in tmp.dbs.iter_mut().enumerate() {
        let mut names = Vec::new();
        d.for_each(|k, _| names.push(Bytes::copy_from_slice(k)));
        for k in names {
            if let Some(e) = d.export(&k, now) {
                let s = crate::shard::route::shard_of(&k, cfg.shards);
                if let Some(v) = keys.get_mut(s) {
                    v.push(super::load::KeyPart::Key(db, k, e.val, e.expire_at));
                }
            }
        }
    }
    // From now on the directory is shardis's: a base of everything loaded, new logs.
    let next = seq + 1;
    let part = super::save::serialise(&tmp, true);
    super::save::write_file(
        &dir(cfg).join(base_name(cfg, next)),
        &[part],
        true,
        crate::persist::unix_secs(),
        0,
    )?;
    let keep = manifest_path(cfg)
        .with_extension(format!("manifest.redis-{}", crate::persist::unix_secs()));
    let _ = std::fs::copy(manifest_path(cfg), &keep);
    write_manifest(cfg, &manifest_text(cfg, Some(next), &[next]))?;
    crate::log::notice(&format!(
        "Loaded redis-server's append-only files ({n} commands replayed); converted to \
         shardis's layout (base {}), Redis's manifest kept as {}",
        base_name(cfg, next),
        keep.display()
    ));
    Ok(Loaded {
        base: None,
        keys: Some(keys),
        shards: (0..cfg.shards).map(|_| Vec::new()).collect(),
        seq: next,
    })
}

/// Removes the records of multi-shard writes that are not in every one of their shards' logs
/// (a crash between the shards' writes): all or nothing.
fn drop_incomplete(shards: &mut [Vec<Rec>]) {
    let mut seen: ahash::AHashMap<u64, (u32, ahash::AHashSet<usize>)> = Default::default();
    for (s, recs) in shards.iter().enumerate() {
        for r in recs {
            if let Some(t) = r.tx {
                seen.entry(t.id).or_default().1.insert(s);
                seen.entry(t.id).or_default().0 = t.parts;
            }
        }
    }
    let incomplete: ahash::AHashSet<u64> = seen
        .into_iter()
        .filter(|(_, (parts, on))| on.len() < *parts as usize)
        .map(|(id, _)| id)
        .collect();
    if incomplete.is_empty() {
        return;
    }
    crate::log::warning(&format!(
        "Dropping {} multi-shard write(s) that did not reach every shard's append-only file",
        incomplete.len()
    ));
    for recs in shards.iter_mut() {
        recs.retain(|r| r.tx.is_none_or(|t| !incomplete.contains(&t.id)));
    }
}

/// Parses a shard log: the records and how many bytes of `data` they cover (a cut-off last
/// record is left out). `Err` for content that is not a log at all.
pub fn parse_log(data: &[u8]) -> Result<(Vec<Rec>, usize), String> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut db = 0usize;
    let mut tx: Option<TxTag> = None;
    loop {
        let start = pos;
        let Some(&first) = data.get(pos) else {
            return Ok((out, pos));
        };
        if first == b'#' {
            let Some(end) = memchr::memmem::find(&data[pos..], b"\r\n") else {
                return Ok((out, start));
            };
            let line = &data[pos + 1..pos + end];
            if let Some(rest) = line.strip_prefix(b"TX:") {
                let text = String::from_utf8_lossy(rest);
                let mut it = text.split(':').map(|x| x.parse::<u64>().ok());
                if let (Some(Some(id)), Some(Some(parts))) = (it.next(), it.next()) {
                    tx = Some(TxTag {
                        id,
                        parts: parts as u32,
                    });
                }
            }
            pos += end + 2;
            continue;
        }
        if first != b'*' {
            return Err(format!("expected '*' at byte {pos}"));
        }
        let Some((n, used)) = read_int(&data[pos + 1..]) else {
            return Ok((out, start));
        };
        pos += 1 + used;
        let mut argv = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            match data.get(pos) {
                None => return Ok((out, start)),
                Some(b'$') => {}
                Some(_) => return Err(format!("expected '$' at byte {pos}")),
            }
            let Some((len, used)) = read_int(&data[pos + 1..]) else {
                return Ok((out, start));
            };
            pos += 1 + used;
            // A length past the end of the file (u64::MAX included, which would overflow
            // the sum) is a cut-off record, as one a little too long is.
            let Some(end) = pos
                .checked_add(len)
                .filter(|e| e.saturating_add(2) <= data.len())
            else {
                return Ok((out, start));
            };
            let Some(arg) = data.get(pos..end) else {
                return Ok((out, start));
            };
            argv.push(Bytes::copy_from_slice(arg));
            pos += len + 2;
        }
        let is_select = argv
            .first()
            .is_some_and(|a| a.eq_ignore_ascii_case(b"select"));
        if is_select {
            // An annotation before a SELECT still belongs to the record after it.
            db = argv
                .get(1)
                .and_then(|a| crate::protocol::parse_i64(a))
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(0);
        } else if !argv.is_empty() {
            out.push(Rec {
                db,
                tx: tx.take(),
                argv,
            });
        }
    }
}

/// `<digits>\r\n`: the number and the bytes it took (`None` if cut off or not a number).
fn read_int(b: &[u8]) -> Option<(usize, usize)> {
    let end = memchr::memmem::find(b, b"\r\n")?;
    let n = std::str::from_utf8(b.get(..end)?).ok()?.parse().ok()?;
    Some((n, end + 2))
}

/// Replays a shard's records on its own thread at startup, with the clock stopped (as Redis
/// loads an AOF: nothing expires while loading; what has expired goes once serving starts).
pub fn replay(shard: &mut Shard, recs: Vec<Rec>) {
    use crate::commands::table::{table, Exec};
    let now = shard.now_ms;
    shard.now_ms = 1;
    let (mut done, mut failed) = (0u64, 0u64);
    for r in recs {
        let Some(name) = r.argv.first() else { continue };
        let lower = name.to_ascii_lowercase();
        match lower.as_slice() {
            b"ping" | b"multi" | b"exec" => continue,
            b"flushall" => {
                shard.dbs.iter_mut().for_each(|d| d.clear());
                done += 1;
                continue;
            }
            b"flushdb" => {
                if let Some(d) = shard.dbs.get_mut(r.db) {
                    d.clear();
                }
                done += 1;
                continue;
            }
            b"function" => {
                match super::replay_function(&r.argv) {
                    Ok(()) => done += 1,
                    Err(e) => {
                        crate::log::warning(&format!(
                            "shard {}: a FUNCTION record failed to replay: {e}",
                            shard.id
                        ));
                        failed += 1;
                    }
                }
                continue;
            }
            b"swapdb" => {
                let ix = |i: usize| {
                    r.argv
                        .get(i)
                        .and_then(|a| crate::protocol::parse_i64(a))
                        .and_then(|n| usize::try_from(n).ok())
                };
                if let (Some(a), Some(b)) = (ix(1), ix(2)) {
                    if a < shard.dbs.len() && b < shard.dbs.len() {
                        shard.swap_dbs(a, b);
                    }
                }
                done += 1;
                continue;
            }
            _ => {}
        }
        let Some((id, spec)) = table().lookup(name) else {
            failed += 1;
            continue;
        };
        let f = match spec.exec {
            Exec::Key(f) => f,
            Exec::Split(m) => m.sub,
            // Scripts are journaled as their effects, never as scripts.
            Exec::Conn(_) | Exec::Script(_) => {
                failed += 1;
                continue;
            }
        };
        let reply = crate::commands::run_key(shard, id, f, r.db, 2, &r.argv, None);
        if reply.is_error() {
            failed += 1;
        } else {
            done += 1;
        }
    }
    shard.now_ms = now;
    if failed > 0 {
        crate::log::warning(&format!(
            "shard {}: {failed} append-only records failed to replay ({done} replayed)",
            shard.id
        ));
    }
}

/// Creates the directory and a first manifest when `appendonly` starts with none: the base is
/// a copy of the RDB file just loaded, if there was one, so nothing loaded is lost.
pub fn create(cfg: &Config, rdb_loaded: bool) -> Result<u64, String> {
    std::fs::create_dir_all(dir(cfg)).map_err(|e| {
        format!(
            "Can't create the append-only directory {}: {e}",
            cfg.appenddirname
        )
    })?;
    let base = if rdb_loaded {
        let to = dir(cfg).join(base_name(cfg, 1));
        std::fs::copy(&cfg.dbfilename, &to)
            .map_err(|e| format!("Can't copy {} to {}: {e}", cfg.dbfilename, to.display()))?;
        Some(1)
    } else {
        None
    };
    write_manifest(cfg, &manifest_text(cfg, base, &[1]))?;
    crate::log::notice("Creating AOF incr files: the append-only files start here");
    Ok(1)
}

/// A shard's open log and how far into its journal it has written.
pub struct Writer {
    shard: usize,
    /// Shared with an operation in flight on the ring (a group's write or fsync, an
    /// everysec fdatasync), which keeps it open.
    file: Arc<std::fs::File>,
    /// An everysec fdatasync of this log is in flight; when the last one started; bytes
    /// were written since it started.
    syncing: bool,
    unsynced: bool,
    /// The log's length as this writer knows it (a failed write is cut back to it).
    size: u64,
    last_sync: std::time::Instant,
    /// Journal offset of the next record to encode.
    next: u64,
    /// Journal offset below which every record went through its write (and sync, under
    /// `always`): what replies and messages held for the log wait for
    /// (`Engine::aof_durable`). A failed write outside `always` counts too: as Redis,
    /// its replies go out (writes are refused with MISCONF meanwhile) and the bytes are
    /// written again later.
    synced: u64,
    /// A group on the ring (`appendfsync always`): it ends at this journal offset.
    inflight: Option<u64>,
    /// Tells this writer's ring completions from another's after a switch.
    pub gen: u64,
    /// Database of the last record encoded (a `SELECT` goes before a change).
    db: Option<u32>,
    /// Encoded records not yet in the file.
    buf: Vec<u8>,
    state: Arc<State>,
}

/// One group commit handed to the ring: `buf` written at `offset` (with `sync`, as one
/// `RWF_DSYNC` write: the data is on disk when it completes); it covers the journal up to
/// `end`.
pub struct Group {
    pub gen: u64,
    pub file: Arc<std::fs::File>,
    pub buf: Vec<u8>,
    pub offset: u64,
    pub end: u64,
    pub sync: bool,
}

static WRITER_GEN: AtomicU64 = AtomicU64::new(1);

/// `DEBUG AOF-FSYNC-DELAY`: milliseconds every `always` group waits before its fdatasync
/// (a slow disk, for tests; 0 by default).
static SYNC_DELAY_MS: AtomicU64 = AtomicU64::new(0);

pub fn set_sync_delay(ms: u64) {
    SYNC_DELAY_MS.store(ms, Ordering::Relaxed);
}

pub fn sync_delay() -> u64 {
    SYNC_DELAY_MS.load(Ordering::Relaxed)
}

impl Writer {
    /// Opens (appending) this shard's log of sequence `seq`, starting at journal offset `from`.
    pub fn open(
        cfg: &Config,
        state: Arc<State>,
        shard: usize,
        seq: u64,
        from: u64,
    ) -> Result<Writer, String> {
        let path = dir(cfg).join(incr_name(cfg, seq, shard));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| format!("Can't open the append-only file {}: {e}", path.display()))?;
        let size = file.metadata().map_or(0, |m| m.len());
        state.set_incr(shard, size);
        Ok(Writer {
            size,
            shard,
            file: Arc::new(file),
            syncing: false,
            unsynced: false,
            last_sync: std::time::Instant::now(),
            next: from,
            synced: from,
            inflight: None,
            gen: WRITER_GEN.fetch_add(1, Ordering::Relaxed),
            db: None,
            buf: Vec::new(),
            state,
        })
    }

    /// Journal offset below which every record went through its write (see the field).
    #[inline]
    pub fn synced(&self) -> u64 {
        self.synced
    }

    /// Encoded records wait and no group is in flight: the next one can start.
    pub fn ready(&self) -> bool {
        self.inflight.is_none() && !self.buf.is_empty()
    }

    /// Something encoded is not in the file yet (a retired writer lives until it is).
    pub fn outstanding(&self) -> bool {
        self.inflight.is_some() || !self.buf.is_empty()
    }

    /// Appends every journal record not encoded yet to the buffer (`SELECT` and
    /// transaction annotations included); the journal may drop them from then on.
    pub fn encode(&mut self, shard: &mut Shard) {
        let Some(j) = shard.journal.as_mut() else {
            return;
        };
        if j.next() == self.next {
            return;
        }
        j.seal();
        let recs = match j.read(self.next, usize::MAX) {
            Ok(r) => r,
            Err(e) => {
                // Cannot happen while the journal is pinned at `next`; say so if it does.
                crate::log::warning(&format!(
                    "shard {}: the append-only file missed records {}..{}",
                    self.shard, self.next, e.first
                ));
                self.next = e.first;
                return;
            }
        };
        for r in &recs {
            if self.db != Some(r.db) {
                let n = r.db.to_string();
                self.buf.extend_from_slice(
                    format!("*2\r\n$6\r\nSELECT\r\n${}\r\n{n}\r\n", n.len()).as_bytes(),
                );
                self.db = Some(r.db);
            }
            if let Some(t) = r.tx {
                self.buf
                    .extend_from_slice(format!("#TX:{}:{}\r\n", t.id, t.parts).as_bytes());
            }
            self.buf.extend_from_slice(&r.cmd);
        }
        self.next = j.next();
        j.pin = Some(self.next);
    }

    /// Appends every record not written yet with one blocking `write` (syncing it when
    /// `always`): `appendfsync everysec|no`, and the moments that must finish at once (a
    /// rewrite's cut, `appendonly no`, the loop's end). With a group still on the ring the
    /// records are only encoded: the group's completion writes them next.
    pub fn write_pass(&mut self, shard: &mut Shard, always: bool) {
        self.encode(shard);
        if self.inflight.is_some() {
            return;
        }
        if self.buf.is_empty() {
            self.synced = self.next;
            return;
        }
        if let Err(e) = self.append(always) {
            // As Redis's flushAppendOnlyFile: under `always` an acknowledged write could be
            // lost, so the server stops before any reply of this pass leaves; otherwise the
            // records stay in the buffer and the next pass writes them again, and writes
            // are refused meanwhile (MISCONF Errors writing to the AOF file).
            self.write_failed(always, &e);
            self.synced = self.next;
            return;
        }
        self.written(!always);
        self.synced = self.next;
    }

    /// A write of this log failed: fatal under `always`, else MISCONF until one succeeds.
    fn write_failed(&mut self, always: bool, e: &std::io::Error) {
        let text = crate::util::os_text(e);
        if always {
            crate::log::warning(&format!(
                "shard {}: error writing to the AOF file: {text}",
                self.shard
            ));
            crate::log::warning(
                "Can't recover from AOF write error when the AOF fsync policy is 'always'. \
                 Exiting...",
            );
            std::process::exit(1);
        }
        self.state.last_write_ok.store(false, Ordering::Relaxed);
        if super::aof_error(false, Some(e.raw_os_error().unwrap_or(libc::EIO))) {
            crate::log::warning(&format!(
                "shard {}: error writing to the AOF file: {text}",
                self.shard
            ));
        }
    }

    /// Everything encoded up to `next` reached the file.
    fn written(&mut self, unsynced: bool) {
        self.state.last_write_ok.store(true, Ordering::Relaxed);
        if super::aof_error(false, None) {
            crate::log::warning("AOF write error looks solved, Redis can write again.");
        }
        self.unsynced |= unsynced;
        self.state.set_incr(self.shard, self.size);
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
    }

    /// Writes `buf` at the end of the log (and syncs it under `always`). A write that fails
    /// part-way is cut off again (the log ends at a record boundary), as Redis does; when
    /// the cut fails too, the bytes that did reach the file leave the buffer.
    fn append(&mut self, always: bool) -> std::io::Result<()> {
        let mut file: &std::fs::File = &self.file;
        let mut done = 0;
        let mut res = Ok(());
        while done < self.buf.len() {
            match file.write(&self.buf[done..]) {
                Ok(0) => {
                    res = Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = res {
            self.cut_back(done);
            return Err(e);
        }
        self.size += done as u64;
        self.buf.clear();
        if always {
            file.sync_data()?;
        }
        Ok(())
    }

    /// `done` bytes of the buffer reached the file before a write failed: cut them off
    /// again, or, when the cut fails, keep them and drop them from the buffer.
    fn cut_back(&mut self, done: usize) {
        if done == 0 {
            return;
        }
        if self.file.set_len(self.size).is_err() {
            self.size += done as u64;
            self.buf.drain(..done.min(self.buf.len()));
        }
    }

    /// `appendfsync always` (or the rest of a ring group's buffer after a switch of
    /// policy): the next group for the ring, when none is in flight and records wait.
    pub fn take_group(&mut self, sync: bool) -> Option<Group> {
        if !self.ready() {
            return None;
        }
        self.inflight = Some(self.next);
        Some(Group {
            gen: self.gen,
            file: self.file.clone(),
            buf: std::mem::take(&mut self.buf),
            offset: self.size,
            end: self.next,
            sync,
        })
    }

    /// A group's write and sync finished: its records are durable.
    pub fn group_done(&mut self, g: &Group) {
        self.inflight = None;
        self.size += g.buf.len() as u64;
        self.written(!g.sync);
        self.synced = g.end;
    }

    /// A group's write failed after `done` of its bytes (never under `always`, which
    /// exits): its bytes go back in front of the buffer and the next pass retries them.
    pub fn group_failed(&mut self, mut g: Group, done: usize, e: &std::io::Error) {
        self.inflight = None;
        std::mem::swap(&mut self.buf, &mut g.buf);
        self.buf.extend_from_slice(&g.buf);
        self.cut_back(done);
        self.write_failed(g.sync, e);
        self.synced = g.end;
    }

    /// A group's write or sync failed under `always`: as Redis, stop.
    pub fn fatal(&mut self, e: &std::io::Error) {
        self.write_failed(true, e);
    }

    /// Everysec: the log to fdatasync now, when something was written since the last one
    /// started, a second ago or more, and none is in flight (the caller submits it, then
    /// calls `sync_done`).
    pub fn sync_due(&mut self, now: std::time::Instant) -> Option<Arc<std::fs::File>> {
        if !self.unsynced || now.saturating_duration_since(self.last_sync).as_secs() < 1 {
            return None;
        }
        if self.syncing {
            self.state.fsyncs_delayed.fetch_add(1, Ordering::Relaxed);
            self.last_sync = now;
            return None;
        }
        self.syncing = true;
        self.unsynced = false;
        self.last_sync = now;
        self.state.fsyncs_pending.fetch_add(1, Ordering::Relaxed);
        Some(self.file.clone())
    }

    /// An everysec fdatasync ended with `result` (0, or `-errno`).
    pub fn sync_done(&mut self, result: i32) {
        self.syncing = false;
        sync_result(&self.state, self.shard, result);
    }
}

/// Switches shard `e` to the logs of sequence `seq` (BGREWRITEAOF's cut, under the lock):
/// what the old log has not written yet is written now, or, with a group still on the
/// ring, after it (the old writer is kept in `Engine::aof_retired` until then).
pub fn switch(e: &mut crate::engine::Engine, cfg: &Config, seq: u64) -> Result<(), String> {
    let Some(a) = e.aof.as_mut() else {
        return Ok(());
    };
    a.write_pass(&mut e.shard, true);
    let from = e.shard.journal.as_ref().map_or(a.next, |j| j.next());
    let w = Writer::open(cfg, a.state.clone(), a.shard, seq, from)?;
    let old = std::mem::replace(a, w);
    if old.outstanding() {
        e.aof_retired.push(old);
    }
    Ok(())
}

/// Stops shard `e`'s log (`appendonly no`): what it has not written is written now, or
/// after the group on the ring.
pub fn stop(e: &mut crate::engine::Engine) {
    if let Some(mut a) = e.aof.take() {
        a.write_pass(&mut e.shard, true);
        if a.outstanding() {
            e.aof_retired.push(a);
        }
    }
    e.set_aof(None);
}

/// What an everysec fdatasync's `result` means: a failure refuses writes (MISCONF, as
/// Redis's aof_bio_fsync_status) until a later fdatasync succeeds; logged once.
pub fn sync_result(state: &State, shard: usize, result: i32) {
    state.fsyncs_pending.fetch_sub(1, Ordering::Relaxed);
    if result >= 0 {
        state.fsyncs_done.fetch_add(1, Ordering::Relaxed);
        if super::aof_error(true, None) {
            crate::log::warning("AOF background fsync error looks solved, Redis can write again.");
        }
        return;
    }
    if super::aof_error(true, Some(-result)) {
        crate::log::warning(&format!(
            "shard {shard}: error syncing the append-only file: {}",
            crate::util::os_text(&std::io::Error::from_raw_os_error(-result))
        ));
    }
}

/// After a rewrite's snapshot: writes the base file of `seq` and a manifest naming only it
/// and the logs of `seq`, then removes the older files. Runs on a std thread.
pub fn finish_rewrite(
    cfg: &Config,
    state: &State,
    seq: u64,
    parts: &[super::save::ShardPart],
    checksum: bool,
) -> Result<(), String> {
    let base = base_path(cfg, seq);
    let size = super::save::write_file(&base, parts, checksum, crate::persist::unix_secs(), 0)?;
    install_base(cfg, state, seq, size)
}

/// Where the base file of sequence `seq` goes.
pub fn base_path(cfg: &Config, seq: u64) -> PathBuf {
    dir(cfg).join(base_name(cfg, seq))
}

/// Once the base of sequence `seq` (`size` bytes) is written: a manifest naming only it and
/// the logs of `seq`, the size figures, and the older files removed.
pub fn install_base(cfg: &Config, state: &State, seq: u64, size: u64) -> Result<(), String> {
    write_manifest(cfg, &manifest_text(cfg, Some(seq), &[seq]))?;
    state.base_size.store(size, Ordering::Relaxed);
    state
        .rewrite_base
        .store(state.current_size(), Ordering::Relaxed);
    // Everything of older sequences is history now.
    if let Ok(rd) = std::fs::read_dir(dir(cfg)) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&format!("{}.", cfg.appendfilename)) else {
                continue;
            };
            let old = rest
                .split('.')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n < seq);
            if old {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

/// Before a rewrite switches the logs: a manifest naming the old files and the new logs, so a
/// crash during the rewrite loses nothing.
pub fn begin_rewrite(
    cfg: &Config,
    old_base: Option<u64>,
    old_seq: u64,
    seq: u64,
) -> Result<(), String> {
    let mut seqs: Vec<u64> = (old_base.unwrap_or(old_seq)..=old_seq).collect();
    seqs.push(seq);
    seqs.dedup();
    write_manifest(cfg, &manifest_text(cfg, old_base, &seqs))
}

/// At startup: the current base file's size (the logs' sizes come as each shard opens its
/// log) and the AOF's size as loaded, the growth reference of auto-aof-rewrite (as Redis
/// sets it after loading).
pub fn note_base_size(cfg: &Config, state: &State) {
    let base = current_base(cfg)
        .and_then(|s| std::fs::metadata(dir(cfg).join(base_name(cfg, s))).ok())
        .map_or(0, |m| m.len());
    state.base_size.store(base, Ordering::Relaxed);
    let manifest = manifest_path(cfg);
    let total: u64 = std::fs::read_dir(dir(cfg))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path() != manifest)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    state.rewrite_base.store(total.max(1), Ordering::Relaxed);
}

/// The highest sequence the current manifest names (base or logs), if there is one.
pub fn last_seq(cfg: &Config) -> Option<u64> {
    let text = std::fs::read_to_string(manifest_path(cfg)).ok()?;
    let m = parse_manifest(&text, cfg.shards).ok()?;
    let logs = m
        .incr
        .iter()
        .flatten()
        .chain(&m.redis_incr)
        .map(|(s, _)| *s);
    m.base.map(|(s, _)| s).into_iter().chain(logs).max()
}

/// The current manifest's base sequence, if it names a base.
pub fn current_base(cfg: &Config) -> Option<u64> {
    let text = std::fs::read_to_string(manifest_path(cfg)).ok()?;
    parse_manifest(&text, cfg.shards).ok()?.base.map(|(s, _)| s)
}

pub fn exists(path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_roundtrip_with_tags_selects_and_a_cut_tail() {
        let log = b"*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n\
#TX:7:2\r\n*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n*3\r\n$3\r\nSET\r\n$1\r\nj";
        let (recs, used) = parse_log(log).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].db, 3);
        assert_eq!(recs[0].tx, None);
        assert_eq!(recs[1].tx, Some(TxTag { id: 7, parts: 2 }));
        assert_eq!(&recs[1].argv[0][..], b"DEL");
        assert!(used < log.len());
        assert_eq!(&log[used..used + 1], b"*");
        assert!(parse_log(b"hello").is_err());
        // A bulk length of u64::MAX (found by the aof fuzz target: the sum overflowed) is a
        // cut-off record like any length past the end.
        let cut = b"*1\r\n$4\r\nPING\r\n*1\r\n$18446744073709551615\r\nx\r\n";
        let (recs, used) = parse_log(cut).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(used, 14);
    }

    #[test]
    fn incomplete_transactions_are_dropped_whole() {
        let rec = |id: u64, parts: u32| Rec {
            db: 0,
            tx: (id != 0).then_some(TxTag { id, parts }),
            argv: vec![Bytes::from_static(b"PING")],
        };
        let mut shards = vec![vec![rec(0, 0), rec(5, 2), rec(6, 2)], vec![rec(5, 2)]];
        drop_incomplete(&mut shards);
        assert_eq!(shards[0].len(), 2);
        assert_eq!(shards[1].len(), 1);
    }
}
