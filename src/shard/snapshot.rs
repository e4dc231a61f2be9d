//! The snapshot stepper: a point-in-time copy of one database, serialised a slice at a
//! time while the shard keeps serving (fork-free, no pause proportional to the data).
//! Runs on the shard's own thread.
//!
//! At the snapshot's moment (taken under the all-shard lock, so cross-shard transactions
//! are wholly in or out) every database flips its *parity* bit: each entry carries one
//! flag bit, and an entry whose bit differs from its database's parity is *unvisited*
//! (not yet in the snapshot). Then:
//! - the stepper walks the table in slot order (sequential reads; a SCAN cursor would walk
//!   each probe run once per home bucket in it) and serialises each unvisited entry,
//!   stamping it visited; when the table was resized meanwhile, the walk starts over on the
//!   new layout, passing over the entries already stamped;
//! - a write, overwrite, expiry, eviction or deletion of an unvisited entry first
//!   serialises it as it was (`Db::pre_write`), then stamps it: the snapshot holds the
//!   value of the moment, whatever happens after;
//! - entries created after the moment are stamped visited when written, so they are not
//!   in it.
//!
//! A big collection (past `persist::big::BIG_ELEMENTS` elements, in its big encoding) is
//! written a range of elements per step into its own buffer, which joins the records when
//! complete; its entry stays unvisited meanwhile, so a write to it finishes it first, and
//! the walk resumes after it. No step copies a million-member set.
//!
//! FLUSHDB/FLUSHALL/SWAPDB in the middle finish the databases they touch at once (the
//! rest of their snapshot is serialised before the data goes). One flag check
//! (`Db::snap.is_some()`) is all a write pays when no snapshot runs.

use crate::persist::big::BigCursor;
use crate::persist::rdb::PartWriter;

use super::arena::Loc;

/// Flag bit of an entry: equal to its database's parity = visited by the running snapshot.
pub const SNAP_BIT: u8 = 1 << 5;

/// One database's running snapshot.
pub struct DbSnap {
    /// The key records so far.
    pub w: PartWriter,
    pub keys: u64,
    pub expires: u64,
    /// The moment's clock (Unix ms): keys expired by then are not in the snapshot.
    pub now: u64,
    /// The slot the walk resumes at.
    pub cursor: u64,
    /// `Dict::resizes` when the walk (re)started: another value means a new layout.
    pub layout: u64,
    /// The walk is over: every entry of the moment is in `w`.
    pub done: bool,
    pub compress: bool,
    /// A big collection being written a range of elements per step (`persist::big`), into
    /// its own buffer (other keys' records may be saved meanwhile), appended to `w` once
    /// complete. Its entry stays unvisited until then, so a write to it finishes it first.
    pub big: Option<Box<BigSave>>,
    /// A BGSAVE streams this database's records to its file writer as they grow
    /// (`persist::save::Piece`), instead of holding them all until the end.
    pub sink: Option<Sink>,
    /// Nobody wants the records any more (the save was stopped, or its writer is gone): the
    /// walk only marks entries visited, so the next snapshot starts from a clean walk.
    pub discard: bool,
}

/// Where a streamed snapshot's records go: the BGSAVE writer thread.
pub struct Sink {
    pub tx: std::sync::mpsc::Sender<crate::persist::save::Piece>,
}

/// Records a streamed snapshot holds before it hands them to the writer.
pub const STREAM_CHUNK: usize = 4 << 20;

/// The big collection a snapshot is writing in steps.
pub struct BigSave {
    pub loc: Loc,
    pub cur: BigCursor,
    pub w: PartWriter,
    pub expires: bool,
}

impl DbSnap {
    pub fn new(compress: bool, now: u64) -> DbSnap {
        DbSnap {
            w: PartWriter::for_snapshots(compress),
            keys: 0,
            expires: 0,
            now,
            cursor: 0,
            layout: u64::MAX,
            done: false,
            compress,
            big: None,
            sink: None,
            discard: false,
        }
    }
}
