//! Taking a snapshot and writing it. Runs on the coordinating shard (the one whose client
//! asked, or shard 0 for the save rules and signals); each shard's part is serialised on
//! that shard's own thread, and a BGSAVE's file is written by a std thread.
//!
//! A point in time is marked under the all-shard lock (`coord::lock::lock_all`, the lock
//! MULTI/EXEC uses, so cross-shard transactions are wholly in or out). For SAVE, BGSAVE and
//! automatic saves the lock lasts only for the marking: each shard then serialises its
//! keys a slice per loop pass while it serves (`step`, `shard::snapshot`) and hands its
//! part to the coordinator when done. Snapshots after which nothing may run (SHUTDOWN,
//! DEBUG RELOAD, the AOF rewrite's switch) serialise under the lock instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::rdb::{Framer, PartWriter};
use crate::coord::lock::{lock_all, unlock};
use crate::engine::Engine;
use crate::engine::{Msg, ShardFn};
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
    let mut w = PartWriter::for_snapshots(compress);
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

/// What a streamed BGSAVE's writer thread receives from the shards: database 0's size hint
/// (one per shard, at the moment), its records as they grow, then every part's rest.
pub enum Piece {
    Size { keys: u64, expires: u64 },
    Data(Vec<u8>),
    End(Vec<ShardPart>),
}

/// Hands one shard's finished part over.
type PartFn = Box<dyn FnOnce(&mut Engine, ShardPart) + Send>;
/// Runs on the coordinator with every part and the lock's id.
type PartsFn = Box<dyn FnOnce(&mut Engine, Vec<ShardPart>, u64) + Send>;

/// A shard's snapshot in progress (`Engine::snap_run`): serialised a slice per loop pass
/// by `step` while the shard serves (see `shard::snapshot`).
pub struct Stepping {
    /// The shard's write counter at the snapshot's moment.
    dirty: u64,
    /// Hands the finished part over (to the coordinating shard).
    done: PartFn,
}

/// Time one loop pass spends serialising a running snapshot, before it serves again.
const STEP_BUDGET: Duration = Duration::from_micros(500);
/// Entries between two clock readings while stepping.
const STEP_ENTRIES: usize = 256;

/// One slice of this shard's running snapshot; hands the part over when it is complete.
pub fn step(w: &mut Engine) {
    if w.shared.persist.cancel_bg.load(Ordering::Relaxed)
        && w.shared.persist.bg_in_progress.load(Ordering::Relaxed)
    {
        // Stopped for a shutdown: the part is dropped (and with it the hand-over, so the
        // writer sees its stream end early and removes the temp file).
        w.shard.snap_cancel();
        w.snap_run = None;
        return;
    }
    let deadline = Instant::now() + STEP_BUDGET;
    loop {
        if w.shard.snap_step(STEP_ENTRIES) {
            finish_step(w);
            return;
        }
        if Instant::now() >= deadline {
            return;
        }
    }
}

/// Completes this shard's running snapshot now and hands its part over.
fn finish_step(w: &mut Engine) {
    let Some(run) = w.snap_run.take() else {
        return;
    };
    let dbs = w.shard.snap_take();
    (run.done)(
        w,
        ShardPart {
            dbs,
            dirty: run.dirty,
        },
    );
}

/// The parts of a stepped snapshot as they arrive, and what runs when all have.
struct Collect {
    parts: Vec<Option<ShardPart>>,
    left: usize,
    done: Option<PartsFn>,
    /// `taken` has run on the coordinator.
    taken: bool,
    /// Every part, waiting for `taken` to have run.
    ready: Option<(Vec<ShardPart>, PartsFn)>,
}

/// Takes a snapshot and gives the parts (in shard order) and the lock's id to `done` on
/// this shard.
///
/// Without `keep_locked` (SAVE, BGSAVE, automatic saves) the snapshot is *stepped*: every
/// shard is locked only for the moment it takes to mark its point in time (cross-shard
/// transactions wholly in or out), then serialises its keys a slice per loop pass while it
/// keeps serving, writes included (`shard::snapshot`).
///
/// With `keep_locked` the shards serialise under the lock and stay locked (nothing runs
/// after the snapshot: SHUTDOWN, DEBUG RELOAD, the AOF rewrite's switch) and `done` must
/// `release` them.
pub fn snapshot(
    w: &mut Engine,
    keep_locked: bool,
    done: impl FnOnce(&mut Engine, Vec<ShardPart>, u64) + Send + 'static,
) {
    if !keep_locked {
        stepped(w, None, |_, _| {}, done);
        return;
    }
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

/// What each shard does at the snapshot's moment, still under the lock (the AOF rewrite
/// switches logs there, a replication cut notes its journal offset); its result goes to
/// `taken`.
pub type AtMoment = Arc<dyn Fn(&mut Engine) -> Result<u64, String> + Send + Sync>;

/// The stepped snapshot: every shard runs `at_moment` and marks its point in time under
/// the all-shard lock, then serialises while serving. `taken` runs here with the
/// `at_moment` results once every shard has marked the moment; `done` once every part is
/// serialised, always after `taken`.
pub fn stepped(
    w: &mut Engine,
    at_moment: Option<AtMoment>,
    taken: impl FnOnce(&mut Engine, Vec<Result<u64, String>>) + Send + 'static,
    done: impl FnOnce(&mut Engine, Vec<ShardPart>, u64) + Send + 'static,
) {
    stepped_to(w, at_moment, None, taken, done)
}

/// `stepped` whose database 0 records go to `stream` as they are serialised (`Piece`),
/// so the parts `done` receives hold only the rest.
pub fn stepped_to(
    w: &mut Engine,
    at_moment: Option<AtMoment>,
    stream: Option<std::sync::mpsc::Sender<Piece>>,
    taken: impl FnOnce(&mut Engine, Vec<Result<u64, String>>) + Send + 'static,
    done: impl FnOnce(&mut Engine, Vec<ShardPart>, u64) + Send + 'static,
) {
    let compress = w.shared.tun.rdbcompression.load(Ordering::Relaxed);
    let n = w.nshards;
    let all: Vec<usize> = (0..n).collect();
    let start = Instant::now();
    let origin = w.id;
    let collect = Arc::new(Mutex::new(Collect {
        parts: (0..n).map(|_| None).collect(),
        left: n,
        done: Some(Box::new(done)),
        taken: false,
        ready: None,
    }));
    let after = collect.clone();
    lock_all(
        w,
        all.clone(),
        Box::new(move |w, txid| {
            let jobs = all
                .into_iter()
                .map(|s| {
                    let collect = collect.clone();
                    let at_moment = at_moment.clone();
                    let stream = stream.clone();
                    let job: ShardFn<Result<u64, String>> = Box::new(move |tw| {
                        // One snapshot per shard at a time (saves are serialised by
                        // `persist::State`; this only guards the invariant).
                        if tw.snap_run.is_some() {
                            finish_step(tw);
                        }
                        let r = at_moment.map_or(Ok(0), |f| f(tw));
                        tw.shard.snap_begin_to(compress, stream);
                        let dirty = tw.shard.dirty;
                        unlock(tw, txid);
                        tw.snap_run = Some(Stepping {
                            dirty,
                            done: Box::new(move |tw, part| {
                                hand_over(tw, &collect, s, part, origin, txid, start)
                            }),
                        });
                        r
                    });
                    (s, job)
                })
                .collect();
            w.fan_out(jobs, false, move |w, res: Vec<Result<u64, String>>| {
                crate::log::verbose(&format!(
                    "Snapshot point in time taken in {} ms; shards serialise while serving",
                    start.elapsed().as_millis()
                ));
                taken(w, res);
                let ready = after.lock().ok().and_then(|mut c| {
                    c.taken = true;
                    c.ready.take()
                });
                if let Some((parts, done)) = ready {
                    done(w, parts, txid);
                }
            });
        }),
    );
}

/// A shard's finished part reaches the collection; the last one runs `done` on `origin`
/// (or leaves it for `taken` to run, if the moment's replies have not all arrived yet).
fn hand_over(
    tw: &mut Engine,
    collect: &Arc<Mutex<Collect>>,
    shard: usize,
    part: ShardPart,
    origin: usize,
    txid: u64,
    start: Instant,
) {
    {
        let Ok(mut c) = collect.lock() else {
            return;
        };
        if let Some(slot) = c.parts.get_mut(shard) {
            *slot = Some(part);
        }
        c.left = c.left.saturating_sub(1);
        if c.left > 0 {
            return;
        }
    }
    let collect = collect.clone();
    tw.post(
        origin,
        Msg::Control(Box::new(move |ow: &mut Engine| {
            let ready = collect.lock().ok().and_then(|mut c| {
                let parts: Vec<ShardPart> = c.parts.drain(..).flatten().collect();
                crate::log::notice(&format!(
                    "Snapshot taken: {} shards serialised in {} ms while serving",
                    parts.len(),
                    start.elapsed().as_millis()
                ));
                let done = c.done.take()?;
                if c.taken {
                    Some((parts, done))
                } else {
                    c.ready = Some((parts, done));
                    None
                }
            });
            if let Some((parts, done)) = ready {
                done(ow, parts, txid);
            }
        })),
    );
}

/// Releases every shard locked by `txid`, then runs `then`.
pub fn release(w: &mut Engine, txid: u64, then: impl FnOnce(&mut Engine) + Send + 'static) {
    let jobs = (0..w.nshards)
        .map(|s| {
            let job: ShardFn<()> = Box::new(move |tw| unlock(tw, txid));
            (s, job)
        })
        .collect();
    w.fan_out(jobs, false, move |w, _: Vec<()>| then(w));
}

/// An RDB file being written: a temp file in the target's directory, with the running
/// CRC64 and size; `finish` syncs it and renames it over the target (then syncs the
/// directory, as Redis), `abandon` removes it. A failed save never replaces a good file.
/// The writes and the fsync go through an io_uring ring (`ringfile`); only where the kernel
/// refuses a ring for it does the file fall back to plain writes.
struct RdbOut {
    f: FileOut,
    crc: u64,
    size: u64,
    checksum: bool,
    path: PathBuf,
    tmp: PathBuf,
    tmp_name: String,
}

enum FileOut {
    Ring(Box<super::ringfile::RingFile>),
    Plain(std::fs::File),
}

fn cwd_text() -> String {
    std::env::current_dir()
        .map(|d| d.display().to_string())
        .unwrap_or_default()
}

impl RdbOut {
    /// Creates the temp file and writes the header (`REDIS0010` and the AUX fields).
    fn create(path: &Path, checksum: bool, ctime: u64, used_mem: u64) -> Result<RdbOut, String> {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        let tmp_name = format!("temp-{}.rdb", std::process::id());
        let tmp = dir.map_or_else(|| Path::new(&tmp_name).to_path_buf(), |d| d.join(&tmp_name));
        let f = std::fs::File::create(&tmp).map_err(|e| {
            format!(
                "Failed opening the temp RDB file {tmp_name} (in server root dir {}) for saving: {}",
                cwd_text(),
                crate::util::os_text(&e)
            )
        })?;
        let f = match f
            .try_clone()
            .and_then(super::ringfile::RingFile::new)
            .map(Box::new)
        {
            Ok(r) => FileOut::Ring(r),
            Err(e) => {
                crate::log::warning(&format!(
                    "Saving without io_uring (no ring for the file: {}): plain writes",
                    crate::util::os_text(&e)
                ));
                FileOut::Plain(f)
            }
        };
        let mut out = RdbOut {
            f,
            crc: 0,
            size: 0,
            checksum,
            path: path.to_path_buf(),
            tmp,
            tmp_name,
        };
        if let Err(e) = out.put_owned(Framer::header(ctime, used_mem)) {
            return Err(out.abandon(&e));
        }
        Ok(out)
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        match &mut self.f {
            FileOut::Ring(_) => self.put_owned(b.to_vec()),
            FileOut::Plain(f) => {
                if self.checksum {
                    self.crc = super::crc64::update(self.crc, b);
                }
                self.size += b.len() as u64;
                f.write_all(b)
            }
        }
    }

    /// `put` of bytes the file may keep until they are written (no copy on the ring).
    fn put_owned(&mut self, b: Vec<u8>) -> std::io::Result<()> {
        if self.checksum {
            self.crc = super::crc64::update(self.crc, &b);
        }
        self.size += b.len() as u64;
        match &mut self.f {
            FileOut::Ring(r) => r.write(b),
            FileOut::Plain(f) => f.write_all(&b),
        }
    }

    /// Removes the temp file; returns Redis's text for the write error.
    fn abandon(self, e: &std::io::Error) -> String {
        drop(self.f);
        let _ = std::fs::remove_file(&self.tmp);
        format!("Write error saving DB on disk: {}", crate::util::os_text(e))
    }

    /// Writes the EOF and checksum, syncs, and renames the file over the target. Returns
    /// the file's size.
    fn finish(mut self) -> Result<u64, String> {
        let trailer = Framer::trailer(self.crc, self.checksum);
        self.size += trailer.len() as u64;
        let written = match &mut self.f {
            FileOut::Ring(r) => r.write(trailer).and_then(|_| r.sync()),
            FileOut::Plain(f) => f.write_all(&trailer).and_then(|_| f.sync_all()),
        };
        if let Err(e) = written {
            return Err(self.abandon(&e));
        }
        let RdbOut {
            f,
            size,
            path,
            tmp,
            tmp_name,
            ..
        } = self;
        drop(f);
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!(
                "Error moving temp DB file {tmp_name} on the final destination {} (in server root \
                 dir {}): {}",
                path.display(),
                cwd_text(),
                crate::util::os_text(&e)
            ));
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        if let Ok(d) = std::fs::File::open(dir.unwrap_or(Path::new("."))) {
            let _ = d.sync_all();
        }
        Ok(size)
    }

    /// The databases of `parts` from `from` on, each with its SELECTDB/RESIZEDB header when
    /// it has keys.
    fn put_dbs(&mut self, parts: &[ShardPart], from: usize) -> std::io::Result<()> {
        let ndbs = parts.iter().map(|p| p.dbs.len()).max().unwrap_or(0);
        for db in from..ndbs {
            let (keys, expires) = parts
                .iter()
                .filter_map(|p| p.dbs.get(db))
                .fold((0, 0), |(k, e), d| (k + d.1, e + d.2));
            if keys == 0 {
                continue;
            }
            self.put(&Framer::db(db, keys, expires))?;
            for p in parts {
                if let Some(d) = p.dbs.get(db) {
                    self.put(&d.0)?;
                }
            }
        }
        Ok(())
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
    let mut out = RdbOut::create(path, checksum, ctime, used_mem)?;
    if let Err(e) = out.put_dbs(parts, 0) {
        return Err(out.abandon(&e));
    }
    out.finish()
}

/// A streamed BGSAVE's file (the writer thread): database 0's records are written as the
/// shards send them (`Piece::Data`, after every shard's size hint for its RESIZEDB), then,
/// at `Piece::End`, the rest of every part. The records of database 0 from different
/// shards interleave, which the format allows (keys in any order). Returns the size and
/// the parts' write counters; on an error the remaining pieces are drained (the shards
/// never wait on the writer) and the temp file is removed. Also writes a rewrite's AOF base.
pub fn write_streamed(
    path: &Path,
    rx: std::sync::mpsc::Receiver<Piece>,
    nshards: usize,
    checksum: bool,
    ctime: u64,
    used_mem: u64,
) -> (Result<u64, String>, u64) {
    let mut out = RdbOut::create(path, checksum, ctime, used_mem);
    let (mut sizes, mut keys, mut expires) = (0usize, 0u64, 0u64);
    let mut early: Vec<Vec<u8>> = Vec::new();
    let mut header = false;
    let mut pieces = 0usize;
    let mut failed: Option<std::io::Error> = None;
    let put =
        |out: &mut Result<RdbOut, String>, b: Vec<u8>, failed: &mut Option<std::io::Error>| {
            if failed.is_some() {
                return;
            }
            if let Ok(o) = out {
                if let Err(e) = o.put_owned(b) {
                    *failed = Some(e);
                }
            }
        };
    let parts = loop {
        let Ok(piece) = rx.recv() else {
            break None;
        };
        match piece {
            Piece::Size {
                keys: k,
                expires: e,
            } => {
                sizes += 1;
                keys += k;
                expires += e;
            }
            Piece::Data(b) => {
                pieces += 1;
                if sizes < nshards {
                    early.push(b);
                    continue;
                }
                if !header {
                    header = true;
                    put(&mut out, Framer::db(0, keys, expires), &mut failed);
                    for e in std::mem::take(&mut early) {
                        put(&mut out, e, &mut failed);
                    }
                }
                put(&mut out, b, &mut failed);
            }
            Piece::End(parts) => break Some(parts),
        }
    };
    let Some(mut parts) = parts else {
        if let Ok(o) = out {
            let _ = std::fs::remove_file(&o.tmp);
        }
        return (
            Err("Background saving ended before the snapshot was complete".into()),
            0,
        );
    };
    crate::log::verbose(&format!(
        "Background saving: {pieces} pieces of database 0 written as they were serialised"
    ));
    let dirty = parts.iter().map(|p| p.dirty).sum();
    let tails = parts
        .iter()
        .filter_map(|p| p.dbs.first())
        .any(|d| !d.0.is_empty());
    if !header && (tails || !early.is_empty()) {
        put(&mut out, Framer::db(0, keys.max(1), expires), &mut failed);
    }
    for e in early {
        put(&mut out, e, &mut failed);
    }
    for p in parts.iter_mut() {
        if let Some(d) = p.dbs.first_mut() {
            put(&mut out, std::mem::take(&mut d.0), &mut failed);
        }
    }
    let res = match out {
        Err(e) => Err(e),
        Ok(mut o) => match failed {
            Some(e) => Err(o.abandon(&e)),
            None => match o.put_dbs(&parts, 1) {
                Err(e) => Err(o.abandon(&e)),
                Ok(()) => o.finish(),
            },
        },
    };
    (res, dirty)
}

/// Records a save's outcome in `persist::State` (INFO, LASTSAVE, the write gate). `bg`: a
/// BGSAVE or automatic save, whose failure sets rdb_last_bgsave_status:err (a failed SAVE
/// does not, as in Redis).
fn record_save(
    shared: &crate::engine::shared::Shared,
    res: &Result<u64, String>,
    dirty: u64,
    start: Instant,
    now: u64,
    bg: bool,
) {
    let st = &shared.persist;
    match res {
        Ok(size) => {
            st.last_save.store(now, Ordering::Relaxed);
            st.saves.fetch_add(1, Ordering::Relaxed);
            st.dirty_at_save.store(dirty, Ordering::Relaxed);
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
}

/// Writes `parts` to the configured file and records the outcome (`record_save`).
/// Blocking: runs on the coordinating shard's thread, or a writer thread.
pub fn save_parts(
    shared: &crate::engine::shared::Shared,
    parts: &[ShardPart],
    bg: bool,
) -> Result<(), String> {
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
    record_save(
        shared,
        &res,
        parts.iter().map(|p| p.dirty).sum::<u64>(),
        start,
        now,
        bg,
    );
    res.map(|_| ())
}

/// BGSAVE: marks a save running (`Err` with Redis's text when one already is), takes the
/// snapshot, and hands the parts to a std thread that writes them, so no shard waits for
/// the disk. `started` runs on this shard once the point in time is taken, with whether
/// the writer thread started.
pub fn bgsave(
    w: &mut Engine,
    started: impl FnOnce(&mut Engine, Result<(), String>) + Send + 'static,
) -> Result<(), String> {
    let st = &w.shared.persist;
    if !st.try_begin() {
        return Err("Background save already in progress".into());
    }
    st.bg_in_progress.store(true, Ordering::SeqCst);
    st.last_try.store(super::unix_secs(), Ordering::Relaxed);
    // The reply goes out at the snapshot's moment, as Redis replies after its fork; the
    // shards then serialise while serving, streaming database 0 to a std thread that
    // writes the file as the records come (so the records never all sit in memory).
    let (tx, rx) = std::sync::mpsc::channel::<Piece>();
    let shared = w.shared.clone();
    let nshards = w.nshards;
    let spawned = crate::runtime::sys::spawn_helper("bgsave", move || {
        let start = Instant::now();
        let now = super::unix_secs();
        let checksum = shared.tun.rdbchecksum.load(Ordering::Relaxed);
        let (res, dirty) = write_streamed(
            Path::new(&shared.tun.dbfilename()),
            rx,
            nshards,
            checksum,
            now,
            crate::runtime::alloc::used(),
        );
        let stopped = shared.persist.cancel_bg.swap(false, Ordering::SeqCst);
        if stopped && res.is_err() {
            crate::log::notice("Background saving stopped for the shutdown");
        } else {
            record_save(&shared, &res, dirty, start, now, true);
            match res {
                Ok(_) => crate::log::notice("Background saving terminated with success"),
                Err(_) => crate::log::warning("Background saving error"),
            }
        }
        shared.persist.bg_in_progress.store(false, Ordering::SeqCst);
        shared.persist.saving.store(false, Ordering::SeqCst);
    });
    if let Err(e) = spawned {
        let st = &w.shared.persist;
        st.bg_in_progress.store(false, Ordering::SeqCst);
        st.saving.store(false, Ordering::SeqCst);
        st.last_failed.store(true, Ordering::SeqCst);
        st.refresh_gate(&w.shared.tun);
        return Err(format!("Can't BGSAVE: {e}"));
    }
    let end = tx.clone();
    stepped_to(
        w,
        None,
        Some(tx),
        move |w, _| {
            crate::log::notice("Background saving started");
            started(w, Ok(()));
        },
        move |_, parts, _| {
            let _ = end.send(Piece::End(parts));
        },
    );
    Ok(())
}
