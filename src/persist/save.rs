//! Taking a snapshot and writing it. Runs on the coordinating shard (the one whose client
//! asked, or shard 0 for the save rules and signals); each shard's part is serialised on
//! that shard's own thread, and a BGSAVE's file is written by a std thread.
//!
//! Without the snapshot stepper of the engine issue, a point in time is had by locking every
//! shard (`coord::multi::lock_all`, the lock MULTI/EXEC uses): from the moment a shard is
//! locked until it has serialised its keys, it runs no other keyspace work, so the parts
//! together are one consistent moment, cross-shard transactions wholly in or out. The
//! shards serialise in parallel and release themselves at once; the coordinator then
//! writes the file with blocking calls (SAVE blocks, as Redis's does; only the coordinating
//! shard waits for the disk).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::rdb::{Framer, PartWriter};
use crate::coord::multi::{lock_all, unlock};
use crate::server::worker::{ShardFn, Worker};
use crate::shard::Shard;

/// One shard's serialised keys: per database, the key records and the key and expiry counts.
pub struct ShardPart {
    pub dbs: Vec<(Vec<u8>, u64, u64)>,
    /// The shard's write counter when it serialised.
    pub dirty: u64,
}

/// Serialises every live key of `shard` (its own thread).
pub fn serialise(shard: &Shard, compress: bool) -> ShardPart {
    let now = crate::shard::now_ms();
    let mut w = PartWriter::new(compress);
    let dbs = shard
        .dbs
        .iter()
        .map(|db| {
            let (mut keys, mut expires) = (0u64, 0u64);
            db.for_each_value(now, |k, v, exp| {
                keys += 1;
                expires += u64::from(exp != 0);
                w.key(k, v, exp);
            });
            (std::mem::take(&mut w.buf), keys, expires)
        })
        .collect();
    ShardPart {
        dbs,
        dirty: shard.dirty,
    }
}

/// Locks every shard, has each serialise its part, and gives the parts (in shard order) and
/// the lock's id to `done` on this shard. With `keep_locked` the shards stay locked (nothing
/// runs after the snapshot: SHUTDOWN, DEBUG RELOAD) and `done` must `release` them.
pub fn snapshot(
    w: &mut Worker,
    keep_locked: bool,
    done: impl FnOnce(&mut Worker, Vec<ShardPart>, u64) + Send + 'static,
) {
    let compress = w.shared.tun.rdbcompression.load(Ordering::Relaxed);
    let all: Vec<usize> = (0..w.nshards).collect();
    let start = Instant::now();
    lock_all(
        w,
        all.clone(),
        Box::new(move |w, txid| {
            let jobs = all
                .into_iter()
                .map(|s| {
                    let job: ShardFn<ShardPart> = Box::new(move |tw| {
                        let p = serialise(&tw.shard, compress);
                        if !keep_locked {
                            unlock(tw, txid);
                        }
                        p
                    });
                    (s, job)
                })
                .collect();
            w.fan_out(jobs, false, move |w, parts: Vec<ShardPart>| {
                // From the lock request to the last part: how long the shards paused.
                crate::log::notice(&format!(
                    "Snapshot taken: {} shards serialised in {} ms",
                    parts.len(),
                    start.elapsed().as_millis()
                ));
                done(w, parts, txid)
            });
        }),
    );
}

/// Releases every shard locked by `txid`, then runs `then`.
pub fn release(w: &mut Worker, txid: u64, then: impl FnOnce(&mut Worker) + Send + 'static) {
    let jobs = (0..w.nshards)
        .map(|s| {
            let job: ShardFn<()> = Box::new(move |tw| unlock(tw, txid));
            (s, job)
        })
        .collect();
    w.fan_out(jobs, false, move |w, _: Vec<()>| then(w));
}

/// The file being written, with the running CRC64 and size.
struct Out {
    f: std::fs::File,
    crc: u64,
    size: u64,
    checksum: bool,
}

impl Out {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        if self.checksum {
            self.crc = super::crc64::update(self.crc, b);
        }
        self.size += b.len() as u64;
        self.f.write_all(b)
    }
}

/// Writes the parts as one RDB file at `path`: a temp file in the same directory, fsynced,
/// renamed over `path`, and the directory fsynced (as Redis). Returns the file's size.
pub fn write_file(
    path: &Path,
    parts: &[ShardPart],
    checksum: bool,
    ctime: u64,
    used_mem: u64,
) -> Result<u64, String> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp_name = format!("temp-{}.rdb", std::process::id());
    let tmp = dir.map_or_else(|| Path::new(&tmp_name).to_path_buf(), |d| d.join(&tmp_name));
    let cwd = || {
        std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    };
    let f = std::fs::File::create(&tmp).map_err(|e| {
        format!(
            "Failed opening the temp RDB file {tmp_name} (in server root dir {}) for saving: {}",
            cwd(),
            crate::server::os_text(&e)
        )
    })?;
    let mut out = Out {
        f,
        crc: 0,
        size: 0,
        checksum,
    };
    let res = (|| -> std::io::Result<()> {
        out.put(&Framer::header(ctime, used_mem))?;
        let ndbs = parts.iter().map(|p| p.dbs.len()).max().unwrap_or(0);
        for db in 0..ndbs {
            let (keys, expires) = parts
                .iter()
                .filter_map(|p| p.dbs.get(db))
                .fold((0, 0), |(k, e), d| (k + d.1, e + d.2));
            if keys == 0 {
                continue;
            }
            out.put(&Framer::db(db, keys, expires))?;
            for p in parts {
                if let Some(d) = p.dbs.get(db) {
                    out.put(&d.0)?;
                }
            }
        }
        let trailer = Framer::trailer(out.crc, checksum);
        out.size += trailer.len() as u64;
        out.f.write_all(&trailer)?;
        out.f.sync_all()
    })();
    let Out { f, size, .. } = out;
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "Write error saving DB on disk: {}",
            crate::server::os_text(&e)
        ));
    }
    drop(f);
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "Error moving temp DB file {tmp_name} on the final destination {} (in server root \
             dir {}): {}",
            path.display(),
            cwd(),
            crate::server::os_text(&e)
        ));
    }
    if let Ok(d) = std::fs::File::open(dir.unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    Ok(size)
}

/// Writes `parts` to the configured file and records the outcome in `persist::State`
/// (INFO, LASTSAVE, the write gate). `bg`: a BGSAVE or automatic save, whose failure sets
/// rdb_last_bgsave_status:err (a failed SAVE does not, as in Redis). Blocking: runs on the
/// coordinating shard's thread, or the bgsave thread.
pub fn save_parts(
    shared: &crate::server::Shared,
    parts: &[ShardPart],
    bg: bool,
) -> Result<(), String> {
    let st = &shared.persist;
    let start = Instant::now();
    let now = super::unix_secs();
    let checksum = shared.tun.rdbchecksum.load(Ordering::Relaxed);
    let res = write_file(
        Path::new(&shared.tun.dbfilename()),
        parts,
        checksum,
        now,
        crate::runtime::alloc::used(),
    );
    match &res {
        Ok(size) => {
            st.last_save.store(now, Ordering::Relaxed);
            st.saves.fetch_add(1, Ordering::Relaxed);
            st.dirty_at_save.store(
                parts.iter().map(|p| p.dirty).sum::<u64>(),
                Ordering::Relaxed,
            );
            st.last_failed.store(false, Ordering::Relaxed);
            st.last_save_secs
                .store(start.elapsed().as_secs() as i64, Ordering::Relaxed);
            crate::log::notice(&format!(
                "DB saved on disk ({size} bytes in {} ms)",
                start.elapsed().as_millis()
            ));
        }
        Err(e) => {
            if bg {
                st.last_failed.store(true, Ordering::Relaxed);
            }
            crate::log::warning(e);
        }
    }
    st.refresh_gate(&shared.tun);
    res.map(|_| ())
}

/// BGSAVE: marks a save running (`Err` with Redis's text when one already is), takes the
/// snapshot, and hands the parts to a std thread that writes them, so no shard waits for
/// the disk. `started` runs on this shard once the point in time is taken, with whether
/// the writer thread started.
pub fn bgsave(
    w: &mut Worker,
    started: impl FnOnce(&mut Worker, Result<(), String>) + Send + 'static,
) -> Result<(), String> {
    let st = &w.shared.persist;
    if !st.try_begin() {
        return Err("Background save already in progress".into());
    }
    st.bg_in_progress.store(true, Ordering::SeqCst);
    st.last_try.store(super::unix_secs(), Ordering::Relaxed);
    snapshot(w, false, move |w, parts, _| {
        let shared = w.shared.clone();
        let spawned = std::thread::Builder::new()
            .name("bgsave".into())
            .spawn(move || {
                match save_parts(&shared, &parts, true) {
                    Ok(()) => crate::log::notice("Background saving terminated with success"),
                    Err(_) => crate::log::warning("Background saving error"),
                }
                shared.persist.bg_in_progress.store(false, Ordering::SeqCst);
                shared.persist.saving.store(false, Ordering::SeqCst);
            });
        let res = match spawned {
            Ok(_) => {
                crate::log::notice("Background saving started");
                Ok(())
            }
            Err(e) => {
                let st = &w.shared.persist;
                st.bg_in_progress.store(false, Ordering::SeqCst);
                st.saving.store(false, Ordering::SeqCst);
                st.last_failed.store(true, Ordering::SeqCst);
                st.refresh_gate(&w.shared.tun);
                Err(format!("Can't BGSAVE: {e}"))
            }
        };
        started(w, res);
    });
    Ok(())
}
