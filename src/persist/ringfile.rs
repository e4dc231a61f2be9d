//! A file written through an io_uring ring of its own: RDB files (BGSAVE's writer thread,
//! SAVE and SHUTDOWN on the coordinating shard) and the AOF rewrite's base. Writes are
//! queued at increasing offsets, several in flight at once, while the caller goes on
//! producing the next bytes; `sync` waits for them all and ends with an fsync on the same
//! ring. A short write is resubmitted for its remainder; the first error is returned by the
//! next call. Runs on whichever thread writes the file (the ring is that thread's).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use crate::runtime::ring::{Completion, OpBuf, Ring};

/// Bytes in flight before `write` waits for the kernel: enough to keep the disk busy while
/// the producer serialises the next piece, little enough not to hold many pieces in memory.
const MAX_IN_FLIGHT_BYTES: usize = 16 << 20;
/// Ring entries (a few writes and one fsync at a time).
const ENTRIES: u32 = 64;
/// The fsync's tag (writes are tagged with their file offset, which never reaches this).
const SYNC_TAG: u64 = u64::MAX;

pub struct RingFile {
    file: File,
    ring: Ring,
    /// `MAX_IN_FLIGHT_BYTES`, smaller in tests.
    limit: usize,
    /// Where the next write goes.
    offset: u64,
    in_flight: usize,
    in_flight_bytes: usize,
    /// The first failure, returned by every later call.
    failed: Option<io::Error>,
    comps: Vec<Completion>,
}

impl RingFile {
    /// Writes `file` from its start through a new ring.
    pub fn new(file: File) -> io::Result<RingFile> {
        RingFile::with_limit(file, MAX_IN_FLIGHT_BYTES)
    }

    /// `new` with `limit` bytes in flight at most before `write` waits.
    pub fn with_limit(file: File, limit: usize) -> io::Result<RingFile> {
        Ok(RingFile {
            file,
            ring: Ring::new(ENTRIES)?,
            limit,
            offset: 0,
            in_flight: 0,
            in_flight_bytes: 0,
            failed: None,
            comps: Vec::new(),
        })
    }

    /// Queues `buf` after what was queued before.
    pub fn write(&mut self, buf: Vec<u8>) -> io::Result<()> {
        self.check()?;
        if buf.is_empty() {
            return Ok(());
        }
        let len = buf.len();
        self.ring
            .write_at(self.file.as_raw_fd(), buf, 0, self.offset, self.offset);
        self.offset += len as u64;
        self.in_flight += 1;
        self.in_flight_bytes += len;
        // Submit now so the kernel starts while the producer goes on.
        self.reap(false)?;
        while self.in_flight_bytes > self.limit {
            self.reap(true)?;
        }
        self.check()
    }

    /// Waits for every queued write, then fsyncs the file.
    pub fn sync(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.reap(true)?;
        }
        self.check()?;
        self.ring.fsync(self.file.as_raw_fd(), false, SYNC_TAG);
        self.in_flight += 1;
        while self.in_flight > 0 {
            self.reap(true)?;
        }
        self.check()
    }

    /// Bytes queued so far (the file's size once `sync` returned).
    pub fn len(&self) -> u64 {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.offset == 0
    }

    fn check(&mut self) -> io::Result<()> {
        match &self.failed {
            Some(e) => Err(clone_error(e)),
            None => Ok(()),
        }
    }

    /// Submits what is queued and handles the completions there are (waiting for one when
    /// `wait`).
    fn reap(&mut self, wait: bool) -> io::Result<()> {
        self.ring.submit_and_wait(wait, None)?;
        let mut comps = std::mem::take(&mut self.comps);
        self.ring.drain(&mut comps);
        for c in comps.drain(..) {
            self.in_flight = self.in_flight.saturating_sub(1);
            if c.tag == SYNC_TAG {
                if c.result < 0 && self.failed.is_none() {
                    self.failed = Some(io::Error::from_raw_os_error(-c.result));
                }
                continue;
            }
            let OpBuf::Send { buf, off } = c.buf else {
                continue;
            };
            let rest = buf.len().saturating_sub(off);
            match c.result {
                r if r < 0 => {
                    self.in_flight_bytes = self.in_flight_bytes.saturating_sub(rest);
                    if self.failed.is_none() {
                        self.failed = Some(io::Error::from_raw_os_error(-r));
                    }
                }
                0 if rest > 0 => {
                    self.in_flight_bytes = self.in_flight_bytes.saturating_sub(rest);
                    if self.failed.is_none() {
                        self.failed = Some(io::Error::from(io::ErrorKind::WriteZero));
                    }
                }
                r => {
                    let done = (r as usize).min(rest);
                    self.in_flight_bytes = self.in_flight_bytes.saturating_sub(done);
                    if done < rest && self.failed.is_none() {
                        // A short write: the remainder goes where it belongs.
                        let at = c.tag + done as u64;
                        self.ring
                            .write_at(self.file.as_raw_fd(), buf, off + done, at, at);
                        self.in_flight += 1;
                    } else if done < rest {
                        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(rest - done);
                    }
                }
            }
        }
        self.comps = comps;
        Ok(())
    }
}

fn clone_error(e: &io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(code) => io::Error::from_raw_os_error(code),
        None => io::Error::new(e.kind(), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory on tmpfs when there is one: these tests must not load the disk (a
    /// concurrent test measures the machine's iowait).
    fn scratch(name: &str) -> std::path::PathBuf {
        let base = std::path::Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        base.join(format!("shardis-ringfile-{name}-{}", std::process::id()))
    }

    #[test]
    fn pieces_land_in_order_and_sync() {
        let dir = scratch("order");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("out");
        let file = File::create(&path).unwrap();
        let mut w = RingFile::with_limit(file, 64 << 10).unwrap();
        let mut want = Vec::new();
        let mut x = 7u64;
        // Many pieces of varied sizes, many times the in-flight bound in all.
        for i in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = (x % 30_000) as usize + i;
            let piece: Vec<u8> = (0..n).map(|j| (j as u64 ^ x) as u8).collect();
            want.extend_from_slice(&piece);
            w.write(piece).unwrap();
        }
        w.write(Vec::new()).unwrap();
        w.sync().unwrap();
        assert_eq!(w.len(), want.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_error_is_returned_and_kept() {
        // A read-only descriptor: every write fails with EBADF.
        let dir = scratch("ro");
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("ro");
        std::fs::write(&path, b"x").unwrap();
        let file = File::open(&path).unwrap();
        let mut w = RingFile::new(file).unwrap();
        let first = w.write(vec![1u8; 1000]).and_then(|_| w.sync());
        assert_eq!(first.map_err(|e| e.raw_os_error()), Err(Some(libc::EBADF)));
        assert!(w.write(vec![2u8; 10]).is_err(), "the failure stays");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
