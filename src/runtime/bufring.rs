//! A provided-buffer ring (`IORING_REGISTER_PBUF_RING`, kernel 5.19+) for multishot receives.
//!
//! A pool of `count` fixed-size buffers in one anonymous mapping, and a ring of `count`
//! entries (also its own mapping: the kernel wants it page-aligned) through which we hand
//! buffers to the kernel. A multishot receive picks the next buffer from the ring, fills it
//! and names it in its completion (`IORING_CQE_F_BUFFER`, buffer id in the upper 16 bits of
//! the flags). From then on the buffer is ours until we put it back on the ring.
//!
//! Ownership rules, enforced here rather than by the caller:
//! - a buffer on the ring belongs to the kernel: nothing in this module reads or writes it;
//! - a buffer named by a completion is lent to the caller for the current *epoch* only (one
//!   `Ring::drain` to the next): [`BufRing::data`] checks the epoch, and [`BufRing::recycle`]
//!   puts every lent buffer back on the ring at the start of the next drain, so a buffer is
//!   never handed back to the kernel while the caller may still read it, and never handed
//!   back twice;
//! - the mappings are unmapped only after the ring is unregistered (or the io_uring closed,
//!   see `Ring`'s field order), so the kernel never writes into memory we gave away.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// A buffer a completion handed us: valid for reading until the next drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provided {
    pub bid: u16,
    pub len: u32,
    pub epoch: u64,
}

struct Mapping {
    ptr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.ptr.is_null() {
            return;
        }
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped once, here.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

pub struct BufRing {
    bgid: u16,
    /// The entry ring shared with the kernel (`count` × 16 bytes, page-aligned).
    entries: Mapping,
    /// The buffers themselves, `count` × `size` bytes.
    bufs: Mapping,
    count: u16,
    size: u32,
    /// Our copy of the tail; published to the kernel with a release store.
    tail: u16,
    /// Buffers lent out during the current epoch.
    lent: Vec<u16>,
    /// Bumped by every `recycle`; a `Provided` from an older epoch is stale.
    epoch: u64,
    /// Set while the kernel holds the registration (unregistered on drop).
    registered: bool,
}

impl BufRing {
    /// Maps `count` buffers of `size` bytes (count a power of two, at most 32768) and
    /// registers them as buffer group `bgid`. Errors when the kernel lacks buffer rings.
    pub fn new(submitter: &Submitter<'_>, bgid: u16, count: u16, size: u32) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 32768 || size == 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let entries = Mapping::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let bufs = Mapping::new(usize::from(count) * size as usize)?;
        let mut ring = BufRing {
            bgid,
            entries,
            bufs,
            count,
            size,
            tail: 0,
            lent: Vec::with_capacity(usize::from(count)),
            epoch: 0,
            registered: false,
        };
        // SAFETY: the entry ring is a fresh page-aligned mapping of `count` entries that lives
        // in `ring` and is unmapped only after `Drop` unregisters it (or after the io_uring
        // that holds the registration is closed).
        unsafe { submitter.register_buf_ring_with_flags(ring.entries.ptr as u64, count, bgid, 0)? };
        ring.registered = true;
        for bid in 0..count {
            ring.put(bid);
        }
        ring.publish();
        Ok(ring)
    }

    pub fn bgid(&self) -> u16 {
        self.bgid
    }

    pub fn buf_size(&self) -> u32 {
        self.size
    }

    /// Writes buffer `bid` into the next ring entry (not yet visible to the kernel).
    fn put(&mut self, bid: u16) {
        let mask = self.count - 1;
        let slot = usize::from(self.tail & mask);
        // SAFETY: `slot < count`, so the entry lies inside the entry mapping; entries between
        // the kernel's head and our unpublished tail are ours to write.
        let entry = unsafe { &mut *self.entries.ptr.cast::<BufRingEntry>().add(slot) };
        // SAFETY: `bid < count`, so the buffer lies inside the buffer mapping.
        let addr = unsafe { self.bufs.ptr.add(usize::from(bid) * self.size as usize) };
        entry.set_addr(addr as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every entry written so far visible to the kernel.
    fn publish(&mut self) {
        // SAFETY: the tail field overlays the first entry's `resv` field (the kernel ABI);
        // the entry mapping is page-aligned and initialised (zeroed by mmap).
        let tail = unsafe { BufRingEntry::tail(self.entries.ptr.cast::<BufRingEntry>()) };
        // SAFETY: `tail` points to a properly aligned u16 inside our mapping that the kernel
        // only reads; the release store orders the entry writes before it.
        let tail = unsafe { &*(tail as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// Records that a completion handed buffer `bid` to us; returns the loan.
    pub fn lend(&mut self, bid: u16, len: u32) -> Option<Provided> {
        if bid >= self.count {
            return None;
        }
        self.lent.push(bid);
        Some(Provided {
            bid,
            len: len.min(self.size),
            epoch: self.epoch,
        })
    }

    /// The bytes of a loan from the current epoch (`None` once it has been recycled).
    pub fn data(&self, p: &Provided) -> Option<&[u8]> {
        if p.epoch != self.epoch || p.bid >= self.count {
            return None;
        }
        let off = usize::from(p.bid) * self.size as usize;
        // SAFETY: the buffer was named by a completion this epoch and is not on the ring
        // (it goes back only in `recycle`, which bumps the epoch), so the kernel does not
        // write it; `len <= size` keeps the slice inside the buffer. The borrow of `self`
        // ends before any `&mut self` call (such as `recycle`) can run.
        Some(unsafe { std::slice::from_raw_parts(self.bufs.ptr.add(off), p.len as usize) })
    }

    /// Puts every buffer lent this epoch back on the ring and starts a new epoch.
    pub fn recycle(&mut self) {
        if self.lent.is_empty() {
            return;
        }
        let lent = std::mem::take(&mut self.lent);
        for &bid in &lent {
            self.put(bid);
        }
        self.lent = lent;
        self.lent.clear();
        self.publish();
        self.epoch += 1;
    }

    /// Buffers lent out and not yet recycled (tests).
    pub fn lent(&self) -> usize {
        self.lent.len()
    }

    /// Unregisters the group; called before the mappings go away.
    pub fn unregister(&mut self, submitter: &Submitter<'_>) {
        if self.registered && submitter.unregister_buf_ring(self.bgid).is_ok() {
            self.registered = false;
        }
    }

    /// Whether the kernel may still hold the registration.
    pub fn registered(&self) -> bool {
        self.registered
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.registered {
            // The kernel may still pick buffers from these mappings: leak them rather than
            // let the addresses be reused. (`Ring` unregisters first, so this is a backstop.)
            let null = || Mapping {
                ptr: std::ptr::null_mut(),
                len: 0,
            };
            std::mem::forget(std::mem::replace(&mut self.entries, null()));
            std::mem::forget(std::mem::replace(&mut self.bufs, null()));
        }
    }
}
