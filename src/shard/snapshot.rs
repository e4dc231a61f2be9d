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
//! FLUSHDB/FLUSHALL/SWAPDB in the middle finish the databases they touch at once (the
//! rest of their snapshot is serialised before the data goes). One flag check
//! (`Db::snap.is_some()`) is all a write pays when no snapshot runs.

use crate::persist::rdb::PartWriter;

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
    /// `Table::resizes` when the walk (re)started: another value means a new layout.
    pub layout: u64,
    /// The walk is over: every entry of the moment is in `w`.
    pub done: bool,
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
        }
    }
}
