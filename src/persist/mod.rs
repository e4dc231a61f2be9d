//! Persistence: RDB snapshots (Redis 7.0's format, version 10) and loading them.
//!
//! - `crc64`, `lzf`, `packed`: the format's building blocks (pure code).
//! - `rdb`: constants and the writer; `read`: the reader (pure code, no I/O).
//! - `save`: SAVE / SHUTDOWN SAVE / DEBUG RELOAD on the coordinating shard: locks every
//!   shard (one point in time across shards, as MULTI/EXEC), each shard serialises its own
//!   keys in parallel, the coordinator writes the file (temp file, fsync, rename).
//! - `ringfile`: how RDB files and AOF bases reach the disk: writes and the fsync through
//!   an io_uring ring of the writing thread's own, several writes in flight.
//! - `load`: reading `dir/dbfilename` at startup on the main thread, before any shard
//!   serves, and splitting the keys by owner shard.
//! - `cron`: the `save` rules (BGSAVE when one is met, checked once a second on shard 0)
//!   and the save before a SIGTERM/SIGINT shutdown.
//!
//! [`State`] lives in `server::Shared`: every shard reads it for INFO and LASTSAVE. The
//! write gate (`writes_refused`, stop-writes-on-bgsave-error) is process-wide, so the
//! dispatcher and scripts read it without reaching `Shared`.

pub mod aof;
pub mod big;
pub mod crc64;
pub mod cron;
pub mod load;
pub mod lzf;
pub mod packed;
pub mod rdb;
pub mod read;
pub mod ringfile;
pub mod save;
pub mod stream_rdb;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};

/// What INFO persistence and LASTSAVE report, shared by all shards.
#[derive(Default)]
pub struct State {
    /// Unix seconds of the last successful save (startup time before any).
    pub last_save: AtomicU64,
    /// Successful saves since startup (INFO rdb_saves).
    pub saves: AtomicU64,
    /// The sum of the shards' write counters at the last save's point in time.
    pub dirty_at_save: AtomicU64,
    /// The last BGSAVE (or automatic save) failed (INFO rdb_last_bgsave_status:err); a
    /// successful save of any kind clears it, a failed SAVE leaves it, as in Redis.
    pub last_failed: AtomicBool,
    /// Unix seconds of the last BGSAVE attempt (the save rules retry a failed one only
    /// `cron::BGSAVE_RETRY_DELAY` seconds later).
    pub last_try: AtomicU64,
    /// A save is running: another is refused.
    pub saving: AtomicBool,
    /// The running save is a BGSAVE (INFO rdb_bgsave_in_progress).
    pub bg_in_progress: AtomicBool,
    /// A shutdown stops the running BGSAVE instead of waiting for it (as Redis kills its
    /// saving child): every shard drops its part (`save::step`), the writer removes the
    /// temp file, and the shutdown's own save follows.
    pub cancel_bg: AtomicBool,
    /// Seconds the last save took (INFO rdb_last_bgsave_time_sec; -1 before any).
    pub last_save_secs: AtomicI64,
    /// Keys loaded, and found expired, by the startup load.
    pub loaded_keys: AtomicU64,
    pub loaded_expired: AtomicU64,
}

impl State {
    pub fn new(started_unix: u64) -> State {
        let s = State::default();
        s.last_save.store(started_unix, Ordering::Relaxed);
        s.last_save_secs.store(-1, Ordering::Relaxed);
        s
    }

    /// Marks a save as running; false when one already is.
    pub fn try_begin(&self) -> bool {
        !self.saving.swap(true, Ordering::SeqCst)
    }

    /// Recomputes the write gate after the bgsave status or a setting changed: Redis's
    /// writeCommandsDeniedByDiskError (stop-writes-on-bgsave-error, some save rule, and the
    /// last BGSAVE failed).
    pub fn refresh_gate(&self, tun: &crate::config::Tunables) {
        let deny = tun.stop_writes_on_bgsave_error.load(Ordering::Relaxed)
            && tun.has_save_rules.load(Ordering::Relaxed)
            && self.last_failed.load(Ordering::Relaxed);
        RDB_REFUSED.store(deny, Ordering::Relaxed);
        update_gate();
    }
}

/// Write commands (and PING) are answered with MISCONF: the last BGSAVE failed
/// (`State::refresh_gate`) or writing the append-only file failed (`aof_error`).
static WRITES_REFUSED: AtomicBool = AtomicBool::new(false);
static RDB_REFUSED: AtomicBool = AtomicBool::new(false);
/// The errno of the append-only file's last failed write, and of its last failed
/// everysec fdatasync; 0 once one succeeds again (Redis's aof_last_write_status and
/// aof_bio_fsync_status).
static AOF_WRITE_ERRNO: AtomicI32 = AtomicI32::new(0);
static AOF_FSYNC_ERRNO: AtomicI32 = AtomicI32::new(0);

/// The errno refusing writes for the append-only file (0: none).
pub fn aof_errno() -> i32 {
    match AOF_WRITE_ERRNO.load(Ordering::Relaxed) {
        0 => AOF_FSYNC_ERRNO.load(Ordering::Relaxed),
        e => e,
    }
}

fn update_gate() {
    let deny = RDB_REFUSED.load(Ordering::Relaxed) || aof_errno() != 0;
    WRITES_REFUSED.store(deny, Ordering::Relaxed);
}

/// Records how the append-only file's last write (`fsync` false) or everysec fdatasync
/// (`fsync` true) went: `Some(errno)` failed, `None` succeeded. Returns whether that
/// status changed (for the log).
pub fn aof_error(fsync: bool, errno: Option<i32>) -> bool {
    let slot = if fsync {
        &AOF_FSYNC_ERRNO
    } else {
        &AOF_WRITE_ERRNO
    };
    let new = errno.unwrap_or(0);
    let old = slot.swap(new, Ordering::Relaxed);
    update_gate();
    (old == 0) != (new == 0)
}

/// The AOF was turned off: its errors no longer refuse writes.
pub fn aof_off() {
    AOF_WRITE_ERRNO.store(0, Ordering::Relaxed);
    AOF_FSYNC_ERRNO.store(0, Ordering::Relaxed);
    update_gate();
}

/// Whether writes are refused (MISCONF): one relaxed load, made only for write commands
/// (and PING, as Redis), so nothing else pays for the gate.
#[inline]
pub fn writes_refused() -> bool {
    WRITES_REFUSED.load(Ordering::Relaxed)
}

/// The refusal's text, as Redis's writeCommandsGetDiskErrorMessage: the BGSAVE one first,
/// else `MISCONF Errors writing to the AOF file: <strerror>`.
pub fn refusal_text() -> String {
    match aof_errno() {
        errno if errno != 0 && !RDB_REFUSED.load(Ordering::Relaxed) => format!(
            "MISCONF Errors writing to the AOF file: {}",
            crate::util::os_text(&std::io::Error::from_raw_os_error(errno))
        ),
        _ => crate::error::MISCONF.to_string(),
    }
}

/// `refusal_text` as a command error.
pub fn refusal() -> crate::error::CmdError {
    crate::error::CmdError::coded(refusal_text())
}

/// Function libraries (FUNCTION LOAD) ride in RDB files as `RDB_OPCODE_FUNCTION2` records
/// after the AUX fields, as Redis 7.0 writes them, but belong to scripting, which registers
/// at startup how to list their codes and how to replace the loaded set with a file's.
pub struct FunctionHooks {
    pub codes: fn() -> Vec<bytes::Bytes>,
    pub replace: fn(&[bytes::Bytes]) -> Result<(), String>,
    /// A FUNCTION LOAD / DELETE / FLUSH / RESTORE record of an append-only log.
    pub replay: fn(&[bytes::Bytes]) -> Result<(), String>,
}

static FUNCTIONS: std::sync::OnceLock<FunctionHooks> = std::sync::OnceLock::new();

/// Scripting's hooks (once, at startup).
pub fn register_functions(h: FunctionHooks) {
    let _ = FUNCTIONS.set(h);
}

/// The code of every loaded library, for a file being written.
pub fn function_codes() -> Vec<bytes::Bytes> {
    FUNCTIONS.get().map_or_else(Vec::new, |h| (h.codes)())
}

/// After a whole data set was loaded from a file (startup, DEBUG RELOAD, a full sync):
/// the loaded libraries become the file's, as Redis empties its functions with the data.
pub fn install_functions(codes: &[bytes::Bytes]) -> Result<(), String> {
    match FUNCTIONS.get() {
        Some(h) => (h.replace)(codes),
        None if codes.is_empty() => Ok(()),
        None => Err("The RDB file contains functions, and scripting is not available".into()),
    }
}

/// Replays a FUNCTION record of an append-only log (startup, any shard thread).
pub fn replay_function(argv: &[bytes::Bytes]) -> Result<(), String> {
    match FUNCTIONS.get() {
        Some(h) => (h.replay)(argv),
        None => Err("scripting is not available".into()),
    }
}

/// Unix seconds now.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
