//! One io_uring per core: setup flags with fallbacks, the operation table that owns every
//! buffer handed to the kernel, and the once-per-pass submit/wait.
//!
//! Runs on the shard thread that created it (the ring is set up with SINGLE_ISSUER, so no
//! other thread may submit to it). Every operation is recorded in a slab together with the
//! resources the kernel may touch (receive buffer, send buffer, eventfd counter). The entry is
//! removed only when the completion arrives, so a buffer lives at least as long as the kernel
//! can write into it, whatever the caller does in between (close, drop its connection).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use bytes::BytesMut;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use super::bufring::{BufRing, Provided};

/// `IORING_ENTER_GETEVENTS` from the kernel ABI (the crate does not re-export it).
const IORING_ENTER_GETEVENTS: u32 = 1;
/// `IORING_ENTER_REGISTERED_RING`: the fd argument is an index into the thread's registered
/// ring table (kernel 5.18+), which saves the file lookup and refcount of every enter.
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
/// `IORING_ENTER_NO_IOWAIT` (kernel 6.15+, see `IORING_FEAT_NO_IOWAIT`).
const IORING_ENTER_NO_IOWAIT: u32 = 1 << 7;
/// `IORING_REGISTER_RING_FDS` / `IORING_UNREGISTER_RING_FDS`.
const IORING_REGISTER_RING_FDS: libc::c_uint = 20;
const IORING_UNREGISTER_RING_FDS: libc::c_uint = 21;

/// `struct io_uring_rsrc_update` of the kernel ABI.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}
/// `IORING_RECVSEND_POLL_FIRST` (kernel 5.19+; older kernels ignore the hint).
const IORING_RECVSEND_POLL_FIRST: u16 = 1;
/// Buffer group id of the ring's provided-buffer pool (one pool per ring).
const RECV_BGID: u16 = 0;
/// `user_data` of cancel requests: their completions are dropped in `drain`.
const CANCEL_UD: u64 = u64::MAX;

/// What the kernel may be reading or writing while an operation is in flight.
#[derive(Debug)]
pub enum OpBuf {
    /// No memory is shared with the kernel (accept, cancel).
    None,
    /// Receive buffer; the kernel writes into its spare capacity.
    Recv(BytesMut),
    /// Send buffer; the kernel reads `buf[off..]`.
    Send { buf: Vec<u8>, off: usize },
    /// Eventfd counter the kernel writes 8 bytes into.
    Counter(Box<u64>),
    /// Timeout duration the kernel reads when it prepares the timeout.
    Timespec(Box<types::Timespec>),
    /// Peer address for a connect.
    Addr(Box<libc::sockaddr_storage>),
    /// File read buffer; the kernel writes into its spare capacity.
    Read(Vec<u8>),
    /// A buffer from the provided-buffer pool that a multishot receive filled; its bytes
    /// are readable through [`Ring::provided`] until the next `drain`.
    Provided(Provided),
}

struct InFlight {
    tag: u64,
    buf: OpBuf,
    /// The `user_data` this operation was submitted with (slot index and a generation).
    ud: u64,
}

/// A finished operation: the caller's tag, the kernel's result, and the buffer handed back.
#[derive(Debug)]
pub struct Completion {
    pub tag: u64,
    /// Bytes transferred, a new fd, or `-errno`.
    pub result: i32,
    /// A multishot operation will produce more completions under the same tag.
    pub more: bool,
    pub buf: OpBuf,
}

impl Completion {
    /// A placeholder left where a completion was taken out of a list.
    pub fn empty() -> Completion {
        Completion {
            tag: 0,
            result: 0,
            more: false,
            buf: OpBuf::None,
        }
    }
}

type SetupFn = fn(&mut io_uring::Builder);

/// A per-core ring and the table of its in-flight operations.
///
/// Field order matters on drop: `Drop` unregisters the buffer pool, then `uring` closes
/// before `pbuf` unmaps its memory.
pub struct Ring {
    uring: IoUring,
    ops: Slab<InFlight>,
    /// Generation stamped into each operation's `user_data`, so that a completion or a
    /// cancel naming an older operation in a reused slot never matches the new one.
    next_gen: u32,
    /// Provided buffers for multishot receives, when set up and supported.
    pbuf: Option<BufRing>,
    /// Which setup flags the kernel accepted, for the startup log and INFO.
    pub setup: &'static str,
    /// Index of this ring in the creating thread's registered-ring table, when the kernel
    /// took the registration: `io_uring_enter` then names the ring by index.
    reg_index: Option<u32>,
    /// `IORING_ENTER_NO_IOWAIT` where the kernel has it (6.15+), else 0: a shard waiting for
    /// its clients is idle, not waiting for a disk, and must not show as iowait in top.
    no_iowait: u32,
}

impl Drop for Ring {
    fn drop(&mut self) {
        if let Some(p) = self.pbuf.as_mut() {
            p.unregister(&self.uring.submitter());
        }
        if let Some(i) = self.reg_index.take() {
            let mut up = RsrcUpdate {
                offset: i,
                resv: 0,
                data: 0,
            };
            // SAFETY: `up` is a valid io_uring_rsrc_update that lives across the call; the
            // kernel only reads it. Failure (another thread dropping the ring) just leaves
            // the registration to be released when the registering thread exits.
            unsafe {
                libc::syscall(
                    libc::SYS_io_uring_register,
                    self.uring.as_raw_fd(),
                    IORING_UNREGISTER_RING_FDS,
                    &mut up as *mut RsrcUpdate,
                    1,
                )
            };
        }
    }
}

impl Ring {
    /// Builds a ring with SINGLE_ISSUER + DEFER_TASKRUN + COOP_TASKRUN, falling back to
    /// COOP_TASKRUN alone and then to no flags where the kernel refuses them.
    pub fn new(entries: u32) -> io::Result<Ring> {
        let attempts: [(&'static str, SetupFn); 3] = [
            ("single_issuer+defer_taskrun+coop_taskrun", |b| {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_coop_taskrun();
            }),
            ("coop_taskrun", |b| {
                b.setup_coop_taskrun();
            }),
            ("none", |_| {}),
        ];
        let mut last_err = None;
        for (name, apply) in attempts {
            let mut builder = IoUring::builder();
            builder.setup_cqsize(entries.saturating_mul(4));
            apply(&mut builder);
            match builder.build(entries) {
                Ok(uring) => {
                    let reg_index = register_ring_fd(uring.as_raw_fd());
                    let no_iowait = if uring.params().is_feature_no_iowait() {
                        IORING_ENTER_NO_IOWAIT
                    } else {
                        0
                    };
                    return Ok(Ring {
                        uring,
                        ops: Slab::with_capacity(1024),
                        next_gen: 0,
                        pbuf: None,
                        setup: name,
                        reg_index,
                        no_iowait,
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("io_uring setup failed")))
    }

    /// Extra flags for a waiting enter through the crate's API.
    fn enter_flags(&self) -> io_uring::EnterFlags {
        if self.no_iowait != 0 {
            io_uring::EnterFlags::NO_IOWAIT
        } else {
            io_uring::EnterFlags::empty()
        }
    }

    /// Whether `io_uring_enter` names this ring by its registered index.
    pub fn registered(&self) -> bool {
        self.reg_index.is_some()
    }

    /// Operations submitted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// Entries queued in the submission ring that the kernel has not consumed yet.
    pub fn unsubmitted(&mut self) -> usize {
        self.uring.submission().len()
    }

    /// Sets up a pool of `count` provided buffers of `size` bytes for `recv_multi`.
    /// Errors when the kernel lacks buffer rings (5.19+) or the memory cannot be mapped.
    pub fn setup_buf_ring(&mut self, count: u16, size: u32) -> io::Result<()> {
        if self.pbuf.is_none() {
            self.pbuf = Some(BufRing::new(
                &self.uring.submitter(),
                RECV_BGID,
                count,
                size,
            )?);
        }
        Ok(())
    }

    /// Whether `recv_multi` can be used.
    pub fn has_buf_ring(&self) -> bool {
        self.pbuf.is_some()
    }

    /// Bytes of a provided buffer handed back by a completion of this pass (`None` once
    /// the next `drain` has returned it to the kernel).
    pub fn provided(&self, p: &Provided) -> Option<&[u8]> {
        self.pbuf.as_ref().and_then(|b| b.data(p))
    }

    fn push(&mut self, entry: squeue::Entry, tag: u64, buf: OpBuf) -> u64 {
        let slot = self.ops.vacant_key();
        let ud = (u64::from(self.next_gen) << 32) | (slot as u64 & 0xFFFF_FFFF);
        self.next_gen = self.next_gen.wrapping_add(1);
        let idx = self.ops.insert(InFlight { tag, buf, ud });
        debug_assert_eq!(idx, slot);
        self.push_raw(entry.user_data(ud));
        ud
    }

    fn push_raw(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every pointer in `entry` points into memory owned by its `self.ops`
            // entry (or a socket fd the caller keeps open until completion, or the buffer
            // pool, which outlives the ring's registration); that slab entry is removed only
            // in `drain` when the operation's final completion arrives, so the memory
            // outlives the kernel's use of it. Cancel entries carry no pointers.
            let pushed = unsafe { self.uring.submission().push(&entry) };
            if pushed.is_ok() {
                return;
            }
            // Submission queue full: hand what we have to the kernel and retry.
            if self.uring.submit().is_err() {
                std::thread::yield_now();
            }
        }
    }

    /// Multishot accept on a listening socket.
    pub fn accept_multi(&mut self, fd: RawFd, tag: u64) {
        let e = opcode::AcceptMulti::new(types::Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build();
        self.push(e, tag, OpBuf::None);
    }

    /// Receives into the spare capacity of `buf` (reserving `min_free` bytes first).
    /// `poll_first` when no data is expected to be waiting.
    pub fn recv(
        &mut self,
        fd: RawFd,
        mut buf: BytesMut,
        min_free: usize,
        tag: u64,
        poll_first: bool,
    ) {
        if buf.capacity() - buf.len() < min_free {
            buf.reserve(min_free);
        }
        let spare = buf.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr() as *mut u8, spare.len() as u32);
        // POLL_FIRST: we usually re-arm after draining the socket, so data is rarely waiting;
        // arming the poll straight away skips a receive attempt that would find nothing.
        let prio = if poll_first {
            IORING_RECVSEND_POLL_FIRST
        } else {
            0
        };
        let e = opcode::Recv::new(types::Fd(fd), ptr, len)
            .ioprio(prio)
            .build();
        // The BytesMut moves into the slab; its heap allocation (and so `ptr`) does not move.
        self.push(e, tag, OpBuf::Recv(buf));
    }

    /// Multishot receive into the provided-buffer pool: one submission, a completion per
    /// chunk received (each naming its buffer, see [`OpBuf::Provided`]) until one arrives
    /// without `more` (peer closed, error, `-ENOBUFS` when the pool ran dry, or cancelled).
    /// Returns the operation's id for [`Ring::cancel`], or `None` without a pool.
    pub fn recv_multi(&mut self, fd: RawFd, tag: u64) -> Option<u64> {
        let bgid = self.pbuf.as_ref()?.bgid();
        let e = opcode::RecvMulti::new(types::Fd(fd), bgid).build();
        Some(self.push(e, tag, OpBuf::None))
    }

    /// Asks the kernel to cancel operation `op` (an id from `recv_multi`). The operation
    /// still ends with its own final completion (`-ECANCELED`, or whatever it finished with
    /// first); until then its entry, and everything it owns, stays in the table.
    pub fn cancel(&mut self, op: u64) {
        let e = opcode::AsyncCancel::new(op).build().user_data(CANCEL_UD);
        self.push_raw(e);
    }

    /// Sends `buf[off..]`.
    pub fn send(&mut self, fd: RawFd, buf: Vec<u8>, off: usize, tag: u64) {
        let rest = &buf[off.min(buf.len())..];
        let (ptr, len) = (rest.as_ptr(), rest.len() as u32);
        let e = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build();
        self.push(e, tag, OpBuf::Send { buf, off });
    }

    /// Reads an eventfd's 8-byte counter (the cross-core wakeup).
    pub fn read_eventfd(&mut self, fd: RawFd, tag: u64) {
        let mut counter = Box::new(0u64);
        let ptr = (&mut *counter) as *mut u64 as *mut u8;
        let e = opcode::Read::new(types::Fd(fd), ptr, 8).build();
        self.push(e, tag, OpBuf::Counter(counter));
    }

    /// Connects a socket from `sys::tcp_socket` to `addr` (replication and sentinel links).
    pub fn connect(&mut self, fd: RawFd, addr: std::net::SocketAddr, tag: u64) {
        let (ss, len) = super::sys::to_sockaddr(addr);
        let ss = Box::new(ss);
        let ptr = (&*ss as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
        let e = opcode::Connect::new(types::Fd(fd), ptr, len).build();
        self.push(e, tag, OpBuf::Addr(ss));
    }

    /// Reads up to `len` bytes at `offset` into the spare capacity of `buf` (persistence).
    pub fn read_at(&mut self, fd: RawFd, mut buf: Vec<u8>, len: usize, offset: u64, tag: u64) {
        buf.reserve(len);
        let spare = buf.spare_capacity_mut();
        let (ptr, n) = (spare.as_mut_ptr() as *mut u8, spare.len().min(len) as u32);
        let e = opcode::Read::new(types::Fd(fd), ptr, n)
            .offset(offset)
            .build();
        self.push(e, tag, OpBuf::Read(buf));
    }

    /// Writes `buf[off..]` at file `offset` (persistence); the result counts bytes written.
    pub fn write_at(&mut self, fd: RawFd, buf: Vec<u8>, off: usize, offset: u64, tag: u64) {
        let rest = &buf[off.min(buf.len())..];
        let (ptr, len) = (rest.as_ptr(), rest.len() as u32);
        let e = opcode::Write::new(types::Fd(fd), ptr, len)
            .offset(offset)
            .build();
        self.push(e, tag, OpBuf::Send { buf, off });
    }

    /// `write_at` with `RWF_DSYNC`: the data (and what reading it back needs) is on stable
    /// storage when it completes, as a write followed by `fdatasync` (one operation).
    pub fn write_dsync_at(&mut self, fd: RawFd, buf: Vec<u8>, off: usize, offset: u64, tag: u64) {
        let rest = &buf[off.min(buf.len())..];
        let (ptr, len) = (rest.as_ptr(), rest.len() as u32);
        let e = opcode::Write::new(types::Fd(fd), ptr, len)
            .offset(offset)
            .rw_flags(libc::RWF_DSYNC)
            .build();
        self.push(e, tag, OpBuf::Send { buf, off });
    }

    /// Flushes a file's data (and, unless `data_only`, its metadata: fdatasync vs fsync)
    /// to stable storage.
    pub fn fsync(&mut self, fd: RawFd, data_only: bool, tag: u64) {
        let flags = if data_only {
            types::FsyncFlags::DATASYNC
        } else {
            types::FsyncFlags::empty()
        };
        let e = opcode::Fsync::new(types::Fd(fd)).flags(flags).build();
        self.push(e, tag, OpBuf::None);
    }

    /// A one-shot timeout that completes (with -ETIME) after `after`: how the loop sleeps
    /// until its next timer without arming a timer on every wait.
    pub fn timeout(&mut self, after: Duration, tag: u64) {
        let ts = Box::new(types::Timespec::from(after));
        let ptr: *const types::Timespec = &*ts;
        let e = opcode::Timeout::new(ptr).build();
        self.push(e, tag, OpBuf::Timespec(ts));
    }

    /// Submits queued operations and collects completions. Waits for at least one completion
    /// when `wait` is set, bounded by `timeout`. Exactly one `io_uring_enter` per call.
    pub fn submit_and_wait(&mut self, wait: bool, timeout: Option<Duration>) -> io::Result<()> {
        let to_submit = self.uring.submission_shared_len();
        let submitter = self.uring.submitter();
        let res = if let (Some(idx), None) = (self.reg_index, timeout) {
            // SAFETY: io_uring_enter on this thread's registered ring index with no extra
            // argument (null sigmask, size 0); GETEVENTS makes the kernel run deferred task
            // work (DEFER_TASKRUN) so completions are posted. Every queued entry's memory is
            // owned by `self.ops` (see `push_raw`).
            let r = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    idx,
                    to_submit as u32,
                    u32::from(wait),
                    IORING_ENTER_GETEVENTS | IORING_ENTER_REGISTERED_RING | self.no_iowait,
                    std::ptr::null::<libc::c_void>(),
                    0usize,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EBADF) {
                    // Not the registering thread: name the ring by its fd from now on.
                    self.reg_index = None;
                }
                Err(e)
            } else {
                Ok(r as usize)
            }
        } else if !wait {
            // SAFETY: plain io_uring_enter with no extra argument; GETEVENTS makes the
            // kernel run deferred task work (DEFER_TASKRUN) so completions are posted.
            unsafe {
                submitter.enter::<libc::sigset_t>(to_submit as u32, 0, IORING_ENTER_GETEVENTS, None)
            }
        } else if let Some(t) = timeout {
            let ts = types::Timespec::from(t);
            let args = types::SubmitArgs::new().timespec(&ts);
            submitter.submit_with_args_and_flags(1, &args, self.enter_flags())
        } else if self.no_iowait != 0 {
            submitter.submit_with_args_and_flags(1, &types::SubmitArgs::new(), self.enter_flags())
        } else {
            // No extended argument: kernels before 5.11 refuse it.
            submitter.submit_and_wait(1)
        };
        match res {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Moves every available completion into `out`, releasing finished operations' slots.
    ///
    /// Provided buffers lent by the previous drain go back to the kernel first: callers
    /// must be done with the completions of one drain before calling the next.
    pub fn drain(&mut self, out: &mut Vec<Completion>) {
        if let Some(p) = self.pbuf.as_mut() {
            p.recycle();
        }
        self.drain_nested(out);
    }

    /// `drain` without giving the pool buffers lent so far back to the kernel: for a drain
    /// nested inside a loop pass (a long script's busy pump) while completions of the pass
    /// that borrow pool buffers are still unread. Buffers it lends stay lent until the next
    /// `drain`; a pool that runs dry meanwhile ends multishot receives with `-ENOBUFS`.
    pub fn drain_nested(&mut self, out: &mut Vec<Completion>) {
        let mut cq = self.uring.completion();
        cq.sync();
        for cqe in &mut cq {
            let ud = cqe.user_data();
            let more = cqueue::more(cqe.flags());
            // A completion that names a pool buffer lends it to us, whoever it is for; it
            // goes back to the kernel at the next drain even if nobody reads it.
            let lent = cqueue::buffer_select(cqe.flags()).and_then(|bid| {
                let len = u32::try_from(cqe.result()).unwrap_or(0);
                self.pbuf.as_mut().and_then(|p| p.lend(bid, len))
            });
            if ud == CANCEL_UD {
                continue;
            }
            let idx = (ud & 0xFFFF_FFFF) as usize;
            if self.ops.get(idx).is_none_or(|op| op.ud != ud) {
                continue;
            }
            let (tag, buf) = if more {
                match self.ops.get(idx) {
                    Some(op) => (op.tag, OpBuf::None),
                    None => continue,
                }
            } else {
                match self.ops.try_remove(idx) {
                    Some(op) => (op.tag, op.buf),
                    None => continue,
                }
            };
            let mut buf = match lent {
                Some(p) => OpBuf::Provided(p),
                None => buf,
            };
            let n = cqe.result();
            match &mut buf {
                OpBuf::Recv(b) if n > 0 => {
                    let new_len = b.len() + n as usize;
                    // SAFETY: the kernel reported writing `n` bytes into the spare capacity
                    // that `recv` handed it, starting at the old length.
                    unsafe { b.set_len(new_len.min(b.capacity())) };
                }
                OpBuf::Read(b) if n > 0 => {
                    let new_len = b.len() + n as usize;
                    // SAFETY: the kernel reported writing `n` bytes into the spare capacity
                    // that `read_at` handed it, starting at the old length.
                    unsafe { b.set_len(new_len.min(b.capacity())) };
                }
                _ => {}
            }
            out.push(Completion {
                tag,
                result: cqe.result(),
                more,
                buf,
            });
        }
    }
}

/// Registers `fd` in the calling thread's registered-ring table (kernel 5.18+). Returns
/// its index, or `None` when the kernel refuses (older kernel, table full).
fn register_ring_fd(fd: RawFd) -> Option<u32> {
    let mut up = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: fd as u64,
    };
    // SAFETY: `up` is a valid io_uring_rsrc_update that lives across the call; the kernel
    // reads the fd and writes the chosen index back into `offset`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            fd,
            IORING_REGISTER_RING_FDS,
            &mut up as *mut RsrcUpdate,
            1,
        )
    };
    (r == 1).then_some(up.offset)
}

/// Submission-side length helper kept out of the public API.
trait SubmissionLen {
    fn submission_shared_len(&mut self) -> usize;
}

impl SubmissionLen for IoUring {
    fn submission_shared_len(&mut self) -> usize {
        self.submission().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    fn wait_one(ring: &mut Ring) -> Completion {
        let mut out = Vec::new();
        for _ in 0..1000 {
            ring.submit_and_wait(true, Some(Duration::from_millis(10)))
                .unwrap();
            ring.drain(&mut out);
            if let Some(c) = out.pop() {
                return c;
            }
        }
        panic!("no completion");
    }

    #[test]
    fn ring_sets_up() {
        let ring = Ring::new(64).unwrap();
        assert!(!ring.setup.is_empty());
        assert_eq!(ring.in_flight(), 0);
    }

    /// On kernels with registered rings (5.18+, as here) `io_uring_enter` names the ring by
    /// index, and the plain waits (no timeout) go through that path and see completions.
    #[test]
    fn registered_ring_enter_submits_and_waits() {
        let mut ring = Ring::new(64).unwrap();
        assert!(ring.registered(), "kernel refused IORING_REGISTER_RING_FDS");
        let (a, mut b) = UnixStream::pair().unwrap();
        ring.recv(a.as_raw_fd(), BytesMut::with_capacity(64), 64, 9, true);
        ring.submit_and_wait(false, None).unwrap();
        assert_eq!(
            ring.unsubmitted(),
            0,
            "submitted through the registered index"
        );
        b.write_all(b"ping").unwrap();
        let mut out = Vec::new();
        while out.is_empty() {
            ring.submit_and_wait(true, None).unwrap();
            ring.drain(&mut out);
        }
        assert_eq!((out[0].tag, out[0].result), (9, 4));
        assert!(ring.registered());
    }

    /// A wait for clients is idle time, not iowait (kernel 6.15+, as here): 300 ms asleep in
    /// the ring add (almost) nothing to the machine's iowait ticks, where without the flag
    /// they would grow by the whole wait (30 ticks at 100 Hz).
    #[test]
    fn waiting_is_not_iowait() {
        fn iowait_ticks() -> u64 {
            let stat = std::fs::read_to_string("/proc/stat").unwrap();
            let cpu = stat.lines().next().unwrap();
            cpu.split_whitespace().nth(5).unwrap().parse().unwrap()
        }
        let mut ring = Ring::new(64).unwrap();
        assert!(ring.no_iowait != 0, "kernel lacks IORING_FEAT_NO_IOWAIT");
        let (a, _b) = UnixStream::pair().unwrap();
        // A receive in flight, as a server always has: that is what made waits iowait.
        ring.recv(a.as_raw_fd(), BytesMut::with_capacity(64), 64, 1, true);
        ring.submit_and_wait(false, None).unwrap();
        // The ticks are the whole machine's: other tests writing files at the same moment
        // add theirs. Without the flag every attempt grows by about 30; one quiet attempt
        // out of three shows the flag works.
        let mut grew = Vec::new();
        for _ in 0..3 {
            let before = iowait_ticks();
            let until = std::time::Instant::now() + Duration::from_millis(300);
            while std::time::Instant::now() < until {
                ring.submit_and_wait(true, Some(Duration::from_millis(100)))
                    .unwrap();
            }
            grew.push(iowait_ticks() - before);
            if grew.last().is_some_and(|&g| g < 10) {
                break;
            }
        }
        assert!(
            grew.iter().any(|&g| g < 10),
            "iowait grew by {grew:?} ticks during 300 ms idle waits"
        );
    }

    /// The ring owns a receive buffer until the completion arrives: the caller drops every
    /// handle it had, data arrives later, and the buffer comes back intact with the bytes.
    #[test]
    fn recv_buffer_owned_until_completion() {
        let mut ring = Ring::new(64).unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"old:");
        ring.recv(a.as_raw_fd(), buf, 64, 7, true);
        ring.submit_and_wait(false, None).unwrap();
        assert_eq!(ring.in_flight(), 1);
        // Churn the allocator: if the buffer had been freed, these would likely reuse it.
        let junk: Vec<Vec<u8>> = (0..64).map(|_| vec![0xAAu8; 128]).collect();
        b.write_all(b"hello").unwrap();
        let c = wait_one(&mut ring);
        drop(junk);
        assert_eq!(c.tag, 7);
        assert_eq!(c.result, 5);
        match c.buf {
            OpBuf::Recv(got) => assert_eq!(&got[..], b"old:hello"),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(ring.in_flight(), 0);
    }

    /// Submits and collects completions until `n` have arrived (without draining twice
    /// more than needed: every drain returns the previous drain's pool buffers).
    fn wait_n(ring: &mut Ring, n: usize) -> Vec<Completion> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            if out.len() >= n {
                break;
            }
            ring.submit_and_wait(true, Some(Duration::from_millis(10)))
                .unwrap();
            ring.drain(&mut out);
        }
        assert!(out.len() >= n, "got {out:?}");
        out
    }

    fn provided(c: &Completion) -> Provided {
        match &c.buf {
            OpBuf::Provided(p) => *p,
            other => panic!(
                "expected a pool buffer, got {other:?} (result {})",
                c.result
            ),
        }
    }

    /// A pool buffer named by a completion is ours until the next drain: while we hold it
    /// the kernel fills the other buffer and then, rather than reuse ours, ends the
    /// multishot receive with -ENOBUFS. The next drain hands it back (the loan goes stale)
    /// and a new receive can use it again.
    #[test]
    fn provided_buffer_owned_until_next_drain() {
        let mut ring = Ring::new(64).unwrap();
        ring.setup_buf_ring(2, 64).unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let op = ring.recv_multi(a.as_raw_fd(), 5).unwrap();
        assert!(op != CANCEL_UD);
        b.write_all(b"hello").unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.tag, c.result, c.more), (5, 5, true));
        let first = provided(&c);
        assert_eq!(ring.provided(&first), Some(&b"hello"[..]));

        // No drain from here on: the kernel must not touch `first`.
        let mut out = Vec::new();
        b.write_all(b"world").unwrap();
        ring.submit_and_wait(true, Some(Duration::from_millis(100)))
            .unwrap();
        b.write_all(b"third").unwrap();
        for _ in 0..20 {
            ring.submit_and_wait(true, Some(Duration::from_millis(10)))
                .unwrap();
        }
        assert_eq!(ring.provided(&first), Some(&b"hello"[..]));

        ring.drain(&mut out);
        assert!(
            ring.provided(&first).is_none(),
            "loan must end at the next drain"
        );
        assert_eq!(out.len(), 2, "{out:?}");
        let second = provided(&out[0]);
        assert_ne!(second.bid, first.bid);
        assert_eq!((out[0].result, out[0].more), (5, true));
        assert_eq!(ring.provided(&second), Some(&b"world"[..]));
        assert_eq!((out[1].result, out[1].more), (-libc::ENOBUFS, false));
        assert_eq!(ring.in_flight(), 0);

        // Both buffers are back after the next drain; a new receive gets the waiting bytes.
        ring.recv_multi(a.as_raw_fd(), 6).unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.tag, c.result), (6, 5));
        let p = provided(&c);
        assert_eq!(ring.provided(&p), Some(&b"third"[..]));
    }

    /// A cancelled multishot receive keeps its table entry until its final completion,
    /// which arrives exactly once; the cancel's own completion is not reported.
    #[test]
    fn multishot_cancel_ends_with_one_final_completion() {
        let mut ring = Ring::new(64).unwrap();
        ring.setup_buf_ring(4, 64).unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let op = ring.recv_multi(a.as_raw_fd(), 8).unwrap();
        b.write_all(b"x").unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.result, c.more), (1, true));
        ring.cancel(op);
        let c = wait_one(&mut ring);
        assert_eq!((c.tag, c.result, c.more), (8, -libc::ECANCELED, false));
        assert_eq!(ring.in_flight(), 0);
        // A stale cancel naming the finished operation does not touch a new one in its slot.
        let op2 = ring.recv_multi(a.as_raw_fd(), 9).unwrap();
        assert_ne!(op, op2);
        ring.cancel(op);
        b.write_all(b"yz").unwrap();
        let out = wait_n(&mut ring, 1);
        assert_eq!((out[0].tag, out[0].result, out[0].more), (9, 2, true));
        assert_eq!(ring.in_flight(), 1);
    }

    /// Shutting the socket down ends a multishot receive (how `close_conn` stops one).
    #[test]
    fn shutdown_ends_multishot_recv() {
        let mut ring = Ring::new(64).unwrap();
        ring.setup_buf_ring(4, 64).unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        ring.recv_multi(a.as_raw_fd(), 10).unwrap();
        ring.submit_and_wait(false, None).unwrap();
        a.shutdown(std::net::Shutdown::Both).unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.tag, c.result, c.more), (10, 0, false));
        assert_eq!(ring.in_flight(), 0);
    }

    #[test]
    fn send_returns_buffer_and_count() {
        let mut ring = Ring::new(64).unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        ring.send(a.as_raw_fd(), b"xxping".to_vec(), 2, 3);
        let c = wait_one(&mut ring);
        assert_eq!((c.tag, c.result), (3, 4));
        let mut got = [0u8; 4];
        std::io::Read::read_exact(&mut &b, &mut got).unwrap();
        assert_eq!(&got, b"ping");
    }

    #[test]
    fn connect_reaches_a_listener() {
        let mut ring = Ring::new(64).unwrap();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let fd = crate::runtime::sys::tcp_socket(false).unwrap();
        ring.connect(fd, addr, 21);
        let c = wait_one(&mut ring);
        assert_eq!((c.tag, c.result), (21, 0));
        let (_peer, from) = l.accept().unwrap();
        assert_eq!(crate::runtime::sys::addrs(fd).1, Some(from));
        crate::runtime::sys::close(fd);
    }

    #[test]
    fn file_write_fsync_read_round_trip() {
        use std::os::fd::AsRawFd;
        let path = std::env::temp_dir().join(format!("shardis-ring-{}", std::process::id()));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut ring = Ring::new(64).unwrap();
        ring.write_at(f.as_raw_fd(), b"xxsnapshot".to_vec(), 2, 4, 1);
        let c = wait_one(&mut ring);
        assert_eq!((c.tag, c.result), (1, 8));
        ring.fsync(f.as_raw_fd(), true, 2);
        assert_eq!(wait_one(&mut ring).result, 0);
        ring.read_at(f.as_raw_fd(), b"pre:".to_vec(), 64, 4, 3);
        let c = wait_one(&mut ring);
        assert_eq!(c.result, 8);
        match c.buf {
            OpBuf::Read(b) => assert_eq!(&b[..], b"pre:snapshot"),
            other => panic!("unexpected {other:?}"),
        }
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn timeout_fires_after_its_duration() {
        let mut ring = Ring::new(64).unwrap();
        let start = std::time::Instant::now();
        ring.timeout(Duration::from_millis(30), 11);
        let c = wait_one(&mut ring);
        assert_eq!(c.tag, 11);
        assert_eq!(c.result, -libc::ETIME);
        assert!(start.elapsed() >= Duration::from_millis(25));
    }

    #[test]
    fn shutdown_completes_pending_recv() {
        let mut ring = Ring::new(64).unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        ring.recv(a.as_raw_fd(), BytesMut::new(), 16, 9, true);
        ring.submit_and_wait(false, None).unwrap();
        // SAFETY-free: shutdown through std.
        a.shutdown(std::net::Shutdown::Both).unwrap();
        let c = wait_one(&mut ring);
        assert_eq!((c.tag, c.result), (9, 0));
    }
}
