//! The append-only log's ring side, on each shard thread. Under `appendfsync always` the
//! records a loop pass encoded go to the ring as one group: one `write` with `RWF_DSYNC`
//! (the write and its `fdatasync` in one operation). The shard keeps serving while they run, and what depends on those records
//! waits for the group, as Redis sends no reply before its `fsync`:
//! - a client's output is cut by marks (`Conn::aof_marks`: a journal offset and an end in
//!   `out`); the bytes before the first unmet mark go out, the rest at the group's end;
//! - a message to another shard waits in `Engine::held` (`Engine::post`).
//!
//! One group is in flight per log at a time (one write position); the records of the
//! passes that run meanwhile form the next group, started when it completes. Under
//! `everysec` and `no` the pass's records are written with one blocking `write` before the
//! replies (`Writer::write_pass`), and a group on the ring only exists around a change of
//! policy or a rewrite's cut. A write or sync that fails under `always` stops the server,
//! as Redis does.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{Worker, TAG_IO};
use crate::persist::aof::{Group, Writer};
use crate::runtime::ring::{Completion, OpBuf};
use crate::server::connection::Conn;

/// `appendfsync always` is in force.
fn always(w: &Worker) -> bool {
    w.eng.shared.tun.appendfsync.load(Ordering::Relaxed) == 2
}

impl Worker {
    /// End of a pass, before any reply leaves: the pass's records go to the log (a group
    /// on the ring under `always`, a blocking write otherwise).
    pub(super) fn aof_pass(&mut self) {
        let always = always(self);
        if let Some(a) = self.eng.aof.as_mut() {
            crate::shard::journal::flush(&mut self.eng.shard);
            if always {
                a.encode(&mut self.eng.shard);
            } else {
                a.write_pass(&mut self.eng.shard, false);
            }
        }
        self.aof_submit();
    }

    /// Starts the next group of every log that has records waiting and none in flight.
    fn aof_submit(&mut self) {
        let sync = always(self);
        if let Some(g) = self.eng.aof.as_mut().and_then(|a| a.take_group(sync)) {
            self.aof_write(g, 0);
        }
        if !self.eng.aof_retired.is_empty() {
            let groups: Vec<Group> = self
                .eng
                .aof_retired
                .iter_mut()
                .filter_map(|a| a.take_group(true))
                .collect();
            for g in groups {
                self.aof_write(g, 0);
            }
        }
    }

    /// Writes `g.buf[off..]` at its place in the file: under `always` with `RWF_DSYNC`, so
    /// one operation is the write and its fdatasync. `DEBUG AOF-FSYNC-DELAY` puts its delay
    /// (a ring timeout) before a group's write.
    fn aof_write(&mut self, g: Group, off: usize) {
        let delay = crate::persist::aof::sync_delay();
        if g.sync && delay > 0 && off == 0 {
            self.submit_io(
                move |ring, tag| ring.timeout(Duration::from_millis(delay), tag),
                move |w: &mut Worker, _| w.aof_write_now(g, 0),
            );
            return;
        }
        self.aof_write_now(g, off);
    }

    fn aof_write_now(&mut self, mut g: Group, off: usize) {
        let buf = std::mem::take(&mut g.buf);
        let fd = g.file.as_raw_fd();
        let at = g.offset + off as u64;
        let sync = g.sync;
        self.submit_io(
            move |ring, tag| {
                if sync {
                    ring.write_dsync_at(fd, buf, off, at, tag)
                } else {
                    ring.write_at(fd, buf, off, at, tag)
                }
            },
            move |w: &mut Worker, c: Completion| w.aof_written(g, c),
        );
    }

    /// A write of the group completed (synced too, under `always`: RWF_DSYNC).
    fn aof_written(&mut self, mut g: Group, c: Completion) {
        let OpBuf::Send { buf, off } = c.buf else {
            return;
        };
        g.buf = buf;
        if c.result <= 0 && off < g.buf.len() {
            let errno = if c.result < 0 {
                -c.result
            } else {
                libc::ENOSPC
            };
            self.aof_failed(g, off, &std::io::Error::from_raw_os_error(errno));
            return;
        }
        let off = off + c.result as usize;
        if off < g.buf.len() {
            self.aof_write_now(g, off);
            return;
        }
        self.aof_done(g);
    }

    /// The writer a group belongs to (the current one, or one retired since).
    fn aof_writer(&mut self, gen: u64) -> Option<&mut Writer> {
        if self.eng.aof.as_ref().is_some_and(|a| a.gen == gen) {
            return self.eng.aof.as_mut();
        }
        self.eng.aof_retired.iter_mut().find(|a| a.gen == gen)
    }

    /// A group is in the file (and synced): what waited for it may go.
    fn aof_done(&mut self, g: Group) {
        if let Some(a) = self.aof_writer(g.gen) {
            a.group_done(&g);
        }
        self.eng.aof_retired.retain(|a| a.outstanding());
        self.aof_submit();
        self.aof_release();
    }

    /// A group's write failed after `done` of its bytes.
    fn aof_failed(&mut self, g: Group, done: usize, e: &std::io::Error) {
        if g.sync {
            match self.aof_writer(g.gen) {
                Some(a) => a.fatal(e),
                None => std::process::exit(1),
            }
        }
        if let Some(a) = self.aof_writer(g.gen) {
            a.group_failed(g, done, e);
        }
        self.aof_release();
    }

    /// The log moved on: connections holding output for it flush again.
    fn aof_release(&mut self) {
        for idx in std::mem::take(&mut self.aof_waiting) {
            if let Some(c) = self.conns.get_mut(idx) {
                c.aof_listed = false;
            }
            self.mark_dirty(idx);
        }
    }

    /// How much of connection `idx`'s output may be sent now (see the module note); a
    /// connection left with held output is flushed again when the log moves on.
    pub(super) fn aof_sendable(&mut self, idx: usize, gate: Option<u64>, durable: u64) -> usize {
        let Some(conn) = self.conns.get_mut(idx) else {
            return 0;
        };
        let n = sendable(conn, gate, durable);
        if !conn.aof_marks.is_empty() && !conn.aof_listed {
            conn.aof_listed = true;
            self.aof_waiting.push(idx);
        }
        n
    }

    /// The loop is ending: every group on the ring completes and what is left is written
    /// and synced, as Redis syncs its log at shutdown. Bounded, in case the disk hangs.
    pub(super) fn aof_finish(&mut self, wake_fd: std::os::fd::RawFd) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut comps = Vec::new();
        loop {
            self.aof_submit();
            let inflight = self.eng.aof.as_ref().is_some_and(|a| a.outstanding())
                || !self.eng.aof_retired.is_empty();
            if !inflight || Instant::now() >= deadline {
                break;
            }
            if self
                .ring
                .submit_and_wait(true, Some(Duration::from_millis(100)))
                .is_err()
            {
                break;
            }
            self.ring.drain(&mut comps);
            for c in comps.drain(..) {
                if c.tag >> 56 == TAG_IO {
                    self.on_completion(c, wake_fd);
                }
            }
        }
        if let Some(a) = self.eng.aof.as_mut() {
            crate::shard::journal::flush(&mut self.eng.shard);
            a.write_pass(&mut self.eng.shard, true);
        }
    }
}

/// `sendable` for one connection: records the pass's new output under `gate` (the
/// journal offset it waits for, when the log is behind), drops the marks the log has
/// passed (`durable`), and returns the length of the prefix that is free.
pub(super) fn sendable(conn: &mut Conn, gate: Option<u64>, durable: u64) -> usize {
    if let Some(g) = gate {
        let covered = conn.aof_marks.back().map_or(conn.aof_free, |m| m.1);
        if conn.out.len() > covered {
            conn.aof_marks.push_back((g, conn.out.len()));
        }
    }
    while let Some(&(g, end)) = conn.aof_marks.front() {
        if g > durable {
            break;
        }
        conn.aof_free = end;
        conn.aof_marks.pop_front();
    }
    if conn.aof_marks.is_empty() {
        conn.aof_free = conn.out.len();
    }
    conn.aof_free.min(conn.out.len())
}

/// `n` bytes left the front of `out`: the marks move with the rest.
pub(super) fn consumed(marks: &mut VecDeque<(u64, usize)>, free: &mut usize, n: usize) {
    *free = free.saturating_sub(n);
    for m in marks.iter_mut() {
        m.1 = m.1.saturating_sub(n);
    }
}
