//! The per-shard event loop: one `Worker` per pinned core owns its ring, its listening sockets,
//! the connections it accepted, its slice of the keyspace and its end of the shard mesh.
//!
//! One loop pass: collect completions (accepts, receives, sends, wakeups) → parse and run every
//! complete command of each readable connection (local keys inline, remote keys batched: one
//! message per remote shard per read) → run messages from other shards → timers → one send per
//! connection carrying every reply that is ready, in request order → one `io_uring_enter`.
//! A pass about to sleep first hands back scratch one big request grew (`trim_scratch`);
//! the timers shrink connection buffers after a peak (`Conn::shrink_buffers`).
//!
//! The shard's data side is `engine::Engine` (`Worker::eng`): databases, locks, the mesh,
//! jobs. Cross-shard jobs run on the engine (`engine::mail`); what they leave for
//! connections (replies, blocked clients' waits) is drained from the engine's outbox after
//! every job, command and timer (`drain_outbox`). Work that must reach another shard's
//! connections is a `Msg::Front` job (`front`), run on that shard's whole worker.
//!
//! This file holds the loop, the ring's completions (accept, receive, send, TLS), output
//! flushing and timers; `dispatch` the request path (parse, checks, run/batch/coordinate,
//! CLIENT PAUSE holds); `messages` batches, front jobs, fan-outs, deferred replies and the
//! outbox; `scripts` the busy-script pump; `memory` the connection side's maxmemory view.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use slab::Slab;

use super::connection::{ClientInfo, Conn, RecvState, ReplyMode};
use super::lookahead;
use super::Shared;
use crate::commands::table::{table, Exec, BLOCKING, DENYOOM, PROTECTED, WRITE};
use crate::commands::{self, ConnCtx, Route};
use crate::coord;
use crate::engine::mail::{Batch, BatchCmd, BatchMsg, Filled, Job, Msg, Out, Ticket};
use crate::engine::Engine;
use crate::error::CmdError;
use crate::protocol::parser::{self, Arg};
use crate::protocol::reply::Reply;
use crate::runtime::clock;
use crate::runtime::mesh::Endpoint;
use crate::runtime::ring::{Completion, OpBuf, Ring};
use crate::runtime::sys;
use crate::runtime::timer::Timers;
use crate::shard::now_ms;
use crate::shard::route::shard_of;

mod aof;
mod dispatch;
mod memory;
mod messages;
mod scripts;

pub use messages::{front, to_front, FrontFn};

/// Wall-clock milliseconds from the pass's monotonic reading: re-based on the system clock
/// once a second, so each pass reads one clock instead of two (a wall-clock step shows
/// within a second, as Redis's cached time does at its next cron).
struct PassClock {
    base: Instant,
    base_ms: u64,
}

impl PassClock {
    fn new() -> PassClock {
        PassClock {
            base: Instant::now(),
            base_ms: now_ms(),
        }
    }

    fn ms(&mut self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.base);
        if since >= Duration::from_secs(1) {
            self.base = now;
            self.base_ms = now_ms();
            return self.base_ms;
        }
        self.base_ms + since.as_millis() as u64
    }
}

/// Work a subsystem scheduled on the connection side (`Worker::after`).
type FrontTimer = Box<dyn FnOnce(&mut Worker)>;

enum TimerKind {
    ActiveExpire,
    ClientTimeout,
    /// Arm a listener's accept again after it failed without taking a connection
    /// (`Accepting`; the listener's index).
    AcceptRetry(usize),
    /// A subsystem's own timer on the connection side (`Worker::after`): the replication
    /// hub's periodic work, for one.
    Front(FrontTimer),
    /// A CLIENT PAUSE holding clients here may have ended (`server::pause`).
    PauseEnd,
}

/// The listening socket's accept state. A multishot accept ends on an error; out of
/// descriptors (EMFILE, ENFILE) or kernel memory, arming it again at once fails again at
/// once, so the loop would spin and the log fill. When an accept ends in an error without
/// having taken a connection since it was armed, it is armed again only after a pause that
/// doubles from `ACCEPT_RETRY_MIN` to `ACCEPT_RETRY_MAX`, and the error is logged at most
/// once a second (with the count of the ones not logged). Connections meanwhile wait in the
/// listen backlog. An accept that took connections (and refused them: each refusal frees
/// its descriptor) is armed again at once.
struct Accepting {
    fd: RawFd,
    /// A Unix domain socket (shard 0's `unixsocket`): its connections are handed to the
    /// shards in turn.
    unix: bool,
    /// A `tls-port` listener.
    tls: bool,
    /// A connection was accepted since the accept was last armed.
    progress: bool,
    /// The next pause; back to `ACCEPT_RETRY_MIN` after a connection is accepted.
    backoff: Duration,
    /// When an accept error was last logged, and the errors since then.
    logged: Option<Instant>,
    unlogged: u64,
}

/// One listening socket of a shard, as `server::start` made it.
#[derive(Debug, Clone, Copy)]
pub struct Listen {
    pub fd: RawFd,
    /// The `unixsocket` (shard 0 only).
    pub unix: bool,
    /// A `tls-port` listener: its connections speak TLS.
    pub tls: bool,
}

const ACCEPT_RETRY_MIN: Duration = Duration::from_millis(5);
const ACCEPT_RETRY_MAX: Duration = Duration::from_millis(200);

const TAG_ACCEPT: u64 = 1;
const TAG_RECV: u64 = 2;
const TAG_SEND: u64 = 3;
const TAG_WAKE: u64 = 4;
const TAG_TIMER: u64 = 5;
/// A subsystem's own ring operation (`Worker::submit_io`); the token is its `io_ops` key.
const TAG_IO: u64 = 6;

/// What runs on the worker when a subsystem's ring operation completes.
type IoDone = Box<dyn FnOnce(&mut Worker, Completion)>;

/// Provided buffers per shard for multishot receives (each `--recv-buffer` bytes, at most
/// `POOL_BUF_MAX`). A pass that needs more gets `-ENOBUFS` for the rest, which fall back
/// to one one-shot receive each.
const POOL_BUFS: u16 = 64;
const POOL_BUF_MAX: usize = 64 * 1024;
/// Output buffered for a client above which we stop reading it (back-pressure).
const MAX_PENDING_OUT: usize = 8 << 20;
const MAX_PENDING_SLOTS: usize = 100_000;

fn tag(kind: u64, token: u64) -> u64 {
    (kind << 56) | (token & ((1 << 56) - 1))
}

fn token_of(idx: usize, gen: u32) -> u64 {
    ((gen as u64 & 0xFF_FFFF) << 32) | idx as u64
}

fn split_token(token: u64) -> (usize, u32) {
    (
        (token & 0xFFFF_FFFF) as usize,
        ((token >> 32) & 0xFF_FFFF) as u32,
    )
}

pub struct Worker {
    /// The shard-side engine: data, locks, jobs, the mesh (see `engine`).
    pub eng: Engine,
    pub conns: Slab<Conn>,
    /// Instantaneous rates for INFO, sampled every 100 ms.
    pub rates: super::metrics::Sampler,
    /// This shard's channel and pattern subscribers.
    pub pubsub: super::pubsub::Registry,
    ring: Ring,
    /// How connections receive (startup log).
    recv_path: String,
    dirty: Vec<usize>,
    batches: Vec<Batch>,
    batch_targets: Vec<usize>,
    args_scratch: Vec<Arg>,
    argv_scratch: Vec<Bytes>,
    /// Bytes per reply in the last batch run here for another shard: sizes the next one's
    /// reply buffer (no growth by doubling for GETs of larger values).
    pub(super) batch_reply_bytes: usize,
    /// The look-ahead window of `process_input` (kept for its allocations).
    window: lookahead::Window,
    /// The pass's completions, handled in order from `comp_at` on (`handle_completions`);
    /// a busy script's pump takes the ones the pass has not reached (`take_unhandled`).
    completions: Vec<Completion>,
    comp_at: usize,
    timers: Timers<TimerKind>,
    /// Where this shard listens: one socket per `bind` address (the kernel spreads each
    /// port's connections over the shards, SO_REUSEPORT) and, on shard 0, the
    /// `unixsocket`.
    listeners: Vec<Accepting>,
    /// The shard the next Unix socket connection goes to (shard 0 accepts them all).
    unix_next: usize,
    next_gen: u32,
    /// Deadline of the timeout operation in flight, if any (one at a time).
    timer_armed: Option<Instant>,
    /// Wall-clock milliseconds derived from `pass_now`.
    clock: PassClock,
    /// Sockets shut down by `close_conn` whose descriptors are closed only once every queued
    /// submission has reached the kernel (see `close_pending`).
    pending_close: Vec<RawFd>,
    /// The connections' buffer bytes, summed by the 100 ms tick (`Conn::buffer_bytes`).
    clients_bytes: u64,
    /// Recent biggest client buffers, for INFO clients.
    pub peaks: crate::server::metrics::RecentPeaks,
    /// Replication state, once a replica attached (`repl::master`); `None` costs one test
    /// per pass.
    pub master_repl: Option<Box<crate::repl::master::ShardRepl>>,
    /// The master link, when this is the replication home shard (`repl`).
    pub repl: crate::repl::Home,
    /// Connections of this shard in MONITOR mode (`server::monitor`).
    pub monitors: Vec<usize>,
    /// The end of the CLIENT PAUSE in force (`Engine::pause`).
    pause_end: u64,
    /// Connections holding a command back for the pause.
    postponed: Vec<usize>,
    /// Completions a long script's busy pump left for the loop (closes, errors).
    after_busy: Vec<Completion>,
    /// Connections (tokens) whose input the busy pump left unparsed at a command it could
    /// not answer: parsed again once the script has ended.
    resume: Vec<u64>,
    /// Subsystems' ring operations in flight and what runs when each completes
    /// (`submit_io`).
    io_ops: Slab<IoDone>,
    /// Connections whose output waits for the append-only log (`aof`).
    aof_waiting: Vec<usize>,
}

/// Entries the worker's argument scratch vectors keep when the loop goes idle; one huge
/// request (2M arguments: 48 MB of `Arg`s, 64 MB of `Bytes`) gives the rest back.
const SCRATCH_KEEP: usize = 1024;

impl Worker {
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        mesh: Endpoint<Msg>,
        listen_fds: Vec<Listen>,
    ) -> std::io::Result<Worker> {
        let cfg = &shared.cfg;
        let mut ring = Ring::new(cfg.ring_entries)?;
        let recv_path = match cfg.recv_mode {
            crate::config::RecvMode::Single => "single".to_string(),
            crate::config::RecvMode::Multishot => {
                let size = cfg.recv_buffer.min(POOL_BUF_MAX) as u32;
                match ring.setup_buf_ring(POOL_BUFS, size) {
                    Ok(()) => "multishot".to_string(),
                    Err(e) => format!("single (no provided-buffer ring: {e})"),
                }
            }
        };
        let nshards = cfg.shards;
        Ok(Worker {
            eng: Engine::new(id, shared, mesh, table().len()),
            conns: Slab::with_capacity(256),
            rates: Default::default(),
            pubsub: Default::default(),
            ring,
            recv_path,
            dirty: Vec::new(),
            batches: (0..nshards).map(|_| Batch::default()).collect(),
            batch_targets: Vec::new(),
            args_scratch: Vec::new(),
            argv_scratch: Vec::new(),
            batch_reply_bytes: 16,
            window: lookahead::Window::default(),
            completions: Vec::with_capacity(256),
            comp_at: 0,
            timers: Timers::default(),
            listeners: listen_fds
                .into_iter()
                .map(|l| Accepting {
                    fd: l.fd,
                    unix: l.unix,
                    tls: l.tls,
                    progress: false,
                    backoff: ACCEPT_RETRY_MIN,
                    logged: None,
                    unlogged: 0,
                })
                .collect(),
            unix_next: 0,
            next_gen: 1,
            timer_armed: None,
            clock: PassClock::new(),
            pending_close: Vec::new(),
            clients_bytes: 0,
            peaks: Default::default(),
            master_repl: None,
            repl: Default::default(),
            monitors: Vec::new(),
            pause_end: 0,
            postponed: Vec::new(),
            after_busy: Vec::new(),
            resume: Vec::new(),
            io_ops: Slab::new(),
            aof_waiting: Vec::new(),
        })
    }

    /// The ring's setup flags and the receive path, for the startup log.
    pub fn ring_setup(&self) -> String {
        let reg = if self.ring.registered() {
            "+registered_fd"
        } else {
            ""
        };
        format!("{}{reg} recv={}", self.ring.setup, self.recv_path)
    }

    /// Runs the loop until shutdown.
    pub fn run(&mut self) {
        if self.eng.shared.cfg.journal || self.eng.shared.cfg.appendonly {
            crate::shard::journal::enable(
                &mut self.eng.shard,
                crate::shard::journal::DEFAULT_BACKLOG,
            );
        }
        if self.eng.shared.cfg.appendonly {
            let seq = self.eng.shared.aof.seq.load(Ordering::Relaxed);
            let from = self.eng.shard.journal.as_ref().map_or(1, |j| j.next());
            match crate::persist::aof::Writer::open(
                &self.eng.shared.cfg,
                self.eng.shared.aof.clone(),
                self.eng.id,
                seq,
                from,
            ) {
                Ok(w) => {
                    if let Some(j) = self.eng.shard.journal.as_mut() {
                        j.pin = Some(from);
                    }
                    self.eng.set_aof(Some(w));
                }
                Err(e) => {
                    // Without its log this shard would lose acknowledged writes: stop.
                    crate::log::warning(&format!("shard {}: {e}", self.eng.id));
                    self.eng.request_shutdown();
                }
            }
        }
        // A replica (`replicaof` at startup) leaves expiry to its master from the start.
        if crate::repl::is_replica() {
            self.eng.shard.dbs.iter_mut().for_each(|d| d.replica = true);
        }
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        let wake_fd = self.eng.mesh.waker().fd();
        self.ring.read_eventfd(wake_fd, tag(TAG_WAKE, 0));
        let now = Instant::now();
        self.timers
            .add(now + Duration::from_millis(100), TimerKind::ActiveExpire);
        self.timers
            .add(now + Duration::from_secs(1), TimerKind::ClientTimeout);
        let busy_poll = Duration::from_micros(self.eng.shared.cfg.busy_poll_us);
        let hop_spin = Duration::from_micros(self.eng.shared.cfg.hop_spin_us);
        let mut fired = Vec::new();
        let mut engine_fired = Vec::new();
        loop {
            if self.eng.shared.shutdown.load(Ordering::Relaxed) {
                break;
            }
            // A locked shard keeps its clock: keys do not expire in the middle of an atomic
            // command or transaction (Redis freezes time for EXEC too).
            // One clock reading per pass (the wall clock follows from it, see `PassClock`).
            self.eng.pass_now = Instant::now();
            let since = self
                .eng
                .pass_now
                .saturating_duration_since(self.eng.shared.started);
            self.eng
                .pulse()
                .busy_since
                .store(since.as_millis() as u64 + 1, Ordering::Relaxed);
            if self.eng.lock.is_none() {
                self.eng.shard.now_ms = self.clock.ms(self.eng.pass_now);
            }
            self.eng
                .shard
                .set_evict_cfg(self.eng.shared.tun.evict_cfg());
            self.eng.shard.refresh_observe(&self.eng.shared.tun.obs);
            self.eng.shard.monitor = super::monitor::active();
            let notify = self.eng.shared.tun.notify_flags.load(Ordering::Relaxed);
            crate::shard::notify::set_flags(&mut self.eng.shard, notify);
            if !self.after_busy.is_empty() || !self.resume.is_empty() {
                self.after_script();
            }
            let mut comps = std::mem::take(&mut self.completions);
            self.ring.drain(&mut comps);
            // After the drain: a command that arrived after a CLIENT PAUSE was answered
            // sees the pause.
            self.refresh_pause();
            self.prefetch_received(&comps);
            self.completions = comps;
            self.handle_completions(wake_fd);

            self.run_messages();
            if !self.postponed.is_empty() || self.eng.pause != 0 {
                self.refresh_pause();
            }
            if self.eng.id == crate::repl::HOME {
                crate::repl::on_pass(self);
            }

            let now = self.eng.pass_now;
            self.timers.expired(now, &mut fired);
            for t in fired.drain(..) {
                self.on_timer(t, now);
            }
            // The engine's own timers (blocked clients' timeouts...), as jobs.
            self.eng.timers.expired(now, &mut engine_fired);
            for j in engine_fired.drain(..) {
                self.run_job(j);
            }

            if self.eng.snap_run.is_some() {
                crate::persist::save::step(&mut self.eng);
            }

            // Keys written by jobs and unlocked shards: serve their blocked clients.
            if self.eng.shard.blocked.has_ready() {
                coord::blocking::serve_ready(&mut self.eng);
            }

            if self.eng.aof.is_some() || !self.eng.aof_retired.is_empty() {
                // The pass's writes reach the log before their replies leave (`aof`;
                // replies to other shards' clients wait in `Engine::held`).
                self.aof_pass();
            }
            if self.eng.ship.is_some() {
                crate::repl::master::on_pass(self);
            }

            if self.eng.shard.notify != 0 {
                super::pubsub::publish_notes(self);
            }
            if !self.eng.shard.mon_out.is_empty()
                || !self.eng.shard.mon_in.is_empty()
                || !self.eng.shard.slow.pending.is_empty()
            {
                super::monitor::end_of_pass(self);
            }
            if self.eng.shard.tracking.is_some() {
                super::tracking::deliver(self, true);
            }
            // Replies engine work left without a job around it (timers, hooks).
            self.drain_outbox();
            self.flush_dirty();
            let backlog = self.eng.flush_mesh();

            let busy = backlog
                || self.eng.snap_run.is_some()
                || !self.eng.local.is_empty()
                || (self.eng.lock.is_none() && !self.eng.parked.is_empty())
                || !self.eng.inbox.is_empty()
                || self.eng.aof_ready()
                || !self.after_busy.is_empty()
                || !self.resume.is_empty();
            // While replies from other shards are due, wait for them briefly instead of
            // sleeping: a hop usually answers within microseconds, and a sleep costs two
            // context switches and an eventfd write. Idle shards never spin.
            let awaiting = self.eng.awaiting > 0 || !self.eng.gathers.is_empty();
            let poll_only = busy
                || (!busy_poll.is_zero() && self.spin(busy_poll))
                || (awaiting && !hop_spin.is_zero() && self.wait_for_mail(hop_spin));
            if !poll_only {
                // Going idle: hand back what one big request made the scratch grow to.
                self.trim_scratch();
            }
            let res = if poll_only {
                self.ring.submit_and_wait(false, None)
            } else if self.eng.mesh.prepare_sleep() {
                // Sleep until a completion; the next timer is a timeout operation armed
                // once per deadline (not a timer set up on every wait).
                let next = match (self.timers.next_deadline(), self.eng.timers.next_deadline()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                if let Some(next) = next {
                    // Re-arm when nothing is armed, the new deadline is sooner, or the armed
                    // one is already due (its completion may not have been seen yet). The
                    // pass's clock is a few µs old at most: a timer fires that much late.
                    let now = self.eng.pass_now;
                    if self
                        .timer_armed
                        .is_none_or(|armed| next < armed || armed <= now)
                    {
                        let after = next.saturating_duration_since(now);
                        self.ring.timeout(after, tag(TAG_TIMER, 0));
                        self.timer_armed = Some(next);
                    }
                }
                self.eng.pulse().busy_since.store(0, Ordering::Relaxed);
                let r = self.ring.submit_and_wait(true, None);
                self.eng.mesh.awake();
                r
            } else {
                self.ring.submit_and_wait(false, None)
            };
            if let Err(e) = res {
                crate::log::warning(&format!(
                    "shard {}: io_uring_enter failed: {e}",
                    self.eng.id
                ));
                std::thread::sleep(Duration::from_millis(1));
            }
            self.close_pending();
        }
        // As Redis at shutdown: what the log holds reaches the disk.
        self.aof_finish(wake_fd);
        self.shutdown_conns();
    }

    /// For each receive of this pass that starts a connection's input afresh (its read
    /// buffer empty, as unpipelined clients always are), parses the first command and starts
    /// loading its key's table slot, so the slot arrives while the completion is handled
    /// and the command parsed and routed instead of stalling the lookup (one command per
    /// pass leaves nothing for the pipeline look-ahead to overlap). Changes nothing.
    fn prefetch_received(&mut self, comps: &[Completion]) {
        if self.eng.lock.is_some() {
            return;
        }
        let max_bulk = self.max_bulk();
        let mut args = std::mem::take(&mut self.args_scratch);
        for c in comps {
            let OpBuf::Provided(p) = &c.buf else { continue };
            if c.tag >> 56 != TAG_RECV {
                continue;
            }
            let Some(conn) = self
                .conn_by_token(c.tag & ((1 << 56) - 1))
                .and_then(|i| self.conns.get(i))
            else {
                continue;
            };
            if conn.rbuf.as_ref().is_some_and(|b| !b.is_empty()) || conn.tls.is_some() {
                continue;
            }
            let (Some(data), Some(db)) = (
                self.ring.provided(p),
                self.eng.shard.dbs.get(conn.client.db),
            ) else {
                continue;
            };
            if let Ok(Some(_)) = parser::parse(data, max_bulk, &mut args) {
                if let Some(k) = lookahead::key_of(data, &args) {
                    if shard_of(k, self.eng.nshards) == self.eng.id {
                        db.prefetch_slot(k);
                    }
                }
            }
            args.clear();
        }
        self.args_scratch = args;
    }

    /// Heap held by the worker's reusable scratch (argument vectors, look-ahead window,
    /// queues), which one big request or burst grows.
    fn scratch_bytes(&self) -> u64 {
        use std::mem::size_of;
        let b = self.args_scratch.capacity() * size_of::<Arg>()
            + self.argv_scratch.capacity() * size_of::<Bytes>()
            + self.window.heap_bytes()
            + self.eng.local.capacity() * size_of::<Msg>()
            + self.eng.parked.capacity() * size_of::<Msg>();
        b as u64
    }

    /// Gives back scratch grown past what ordinary traffic needs. Called when the loop is
    /// about to sleep and by the 100 ms tick (a shard that never sleeps), never per command.
    fn trim_scratch(&mut self) {
        if self.args_scratch.capacity() > SCRATCH_KEEP {
            self.args_scratch = Vec::with_capacity(SCRATCH_KEEP);
        }
        if self.argv_scratch.capacity() > SCRATCH_KEEP {
            self.argv_scratch = Vec::with_capacity(SCRATCH_KEEP);
        }
        self.window.trim(SCRATCH_KEEP);
        if self.eng.local.is_empty() && self.eng.local.capacity() > SCRATCH_KEEP {
            self.eng.local = VecDeque::new();
        }
        if self.eng.parked.is_empty() && self.eng.parked.capacity() > SCRATCH_KEEP {
            self.eng.parked = VecDeque::new();
        }
        if self.completions.capacity() > 4 * SCRATCH_KEEP {
            self.completions = Vec::with_capacity(256);
        }
        if self.dirty.is_empty() && self.dirty.capacity() > 4 * SCRATCH_KEEP {
            self.dirty = Vec::new();
        }
    }

    /// The client cron's buffer pass (once a second): shrinks each connection's buffers
    /// after a peak (`Conn::shrink_buffers`); idle means no input for 2 s, as in Redis.
    fn shrink_conn_buffers(&mut self, now: Instant) {
        for (_, c) in self.conns.iter_mut() {
            let idle =
                now.saturating_duration_since(c.client.last_active) >= Duration::from_secs(2);
            c.shrink_buffers(idle);
        }
    }

    /// Yields the core (so a shard sharing it can run) until a message arrives or `d` passes.
    fn wait_for_mail(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.eng.mesh.has_mail() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// Closes the descriptors `close_conn` shut down, once the submission ring is empty.
    ///
    /// Closing earlier is unsafe even though nothing of ours is freed: the descriptor number
    /// is process-wide, so another shard's accept can reuse it at once, and an operation we
    /// queued for the old socket (a receive re-armed earlier in the same pass, a partial
    /// send's remainder) would then be submitted against the new client's socket, stealing
    /// its request bytes or sending it someone else's replies. Once submitted, the kernel
    /// holds its own reference to the old socket, and the shutdown makes it complete.
    fn close_pending(&mut self) {
        if self.pending_close.is_empty() || self.ring.unsubmitted() > 0 {
            return;
        }
        for fd in self.pending_close.drain(..) {
            sys::close(fd);
        }
    }

    /// Handles `self.completions` in order. A command among them may run a script that
    /// turns busy; its pump then takes the rest (`take_unhandled`), so a connection accepted
    /// or a request received in the same batch is answered (`-BUSY`) instead of waiting
    /// for the script's end.
    fn handle_completions(&mut self, wake_fd: RawFd) {
        self.comp_at = 0;
        while let Some(slot) = self.completions.get_mut(self.comp_at) {
            self.comp_at += 1;
            let c = std::mem::replace(slot, Completion::empty());
            self.on_completion(c, wake_fd);
        }
        self.completions.clear();
        self.comp_at = 0;
    }

    /// The pass's completions not handled yet (for a busy script's pump), in order.
    pub(super) fn take_unhandled(&mut self) -> Vec<Completion> {
        let at = self.comp_at.min(self.completions.len());
        self.completions.drain(at..).collect()
    }

    /// Busy-poll: look for completions or messages for up to `d` before sleeping.
    fn spin(&mut self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.ring.submit_and_wait(false, None).is_err() {
                return false;
            }
            self.close_pending();
            let mut comps = std::mem::take(&mut self.completions);
            self.ring.drain(&mut comps);
            let got = !comps.is_empty();
            self.completions = comps;
            if got || !self.eng.mesh.prepare_sleep() {
                self.eng.mesh.awake();
                let wake_fd = self.eng.mesh.waker().fd();
                self.handle_completions(wake_fd);
                return true;
            }
            self.eng.mesh.awake();
            std::hint::spin_loop();
        }
        false
    }

    fn shutdown_conns(&mut self) {
        let idxs: Vec<usize> = self.conns.iter().map(|(i, _)| i).collect();
        for i in idxs {
            self.close_conn(i);
        }
        // Hand any queued operations to the kernel before the descriptors go away.
        let _ = self.ring.submit_and_wait(false, None);
        for fd in self.pending_close.drain(..) {
            sys::close(fd);
        }
        // The ring keeps a listener's file alive while its accept is armed, and the
        // process's rings are torn down only after it exits: shut the listeners down
        // first, so the port is free for a server started right after this one (as
        // redis-server frees it), not 5-10 ms later.
        for l in &self.listeners {
            sys::shutdown(l.fd);
            sys::close(l.fd);
        }
    }

    // ----- completions -------------------------------------------------------------------

    fn on_completion(&mut self, c: Completion, wake_fd: RawFd) {
        let kind = c.tag >> 56;
        let token = c.tag & ((1 << 56) - 1);
        match kind {
            TAG_ACCEPT => {
                let li = token as usize;
                let Some(l) = self.listeners.get_mut(li) else {
                    return;
                };
                let failed = c.result < 0 && c.result != -libc::ECANCELED;
                let (unix, tls) = (l.unix, l.tls);
                if c.result >= 0 {
                    l.progress = true;
                    l.backoff = ACCEPT_RETRY_MIN;
                    if unix {
                        self.hand_off_unix(c.result);
                    } else {
                        self.on_accept(c.result, false, tls);
                    }
                } else if failed {
                    self.log_accept_error(li, -c.result);
                }
                if !c.more && !self.eng.shared.shutdown.load(Ordering::Relaxed) {
                    let Some(l) = self.listeners.get_mut(li) else {
                        return;
                    };
                    if failed && !l.progress {
                        let pause = l.backoff;
                        l.backoff = (pause * 2).min(ACCEPT_RETRY_MAX);
                        self.timers
                            .add(self.eng.pass_now + pause, TimerKind::AcceptRetry(li));
                    } else {
                        self.arm_accept(li);
                    }
                }
            }
            TAG_RECV => self.on_recv(token, c),
            TAG_SEND => self.on_send(token, c),
            TAG_IO => {
                if let Some(done) = self.io_ops.try_remove(token as usize) {
                    done(self, c);
                }
            }
            TAG_WAKE => self.ring.read_eventfd(wake_fd, tag(TAG_WAKE, 0)),
            // Only the latest armed timeout clears the mark; an older one that fires later
            // just wakes the loop once.
            TAG_TIMER
                if self
                    .timer_armed
                    .is_some_and(|d| d <= Instant::now() + Duration::from_millis(1)) =>
            {
                self.timer_armed = None;
            }
            _ => {}
        }
    }

    fn arm_accept(&mut self, li: usize) {
        let Some(l) = self.listeners.get_mut(li) else {
            return;
        };
        l.progress = false;
        self.ring.accept_multi(l.fd, tag(TAG_ACCEPT, li as u64));
    }

    /// A connection on the Unix socket (accepted by shard 0): served here or handed to the
    /// next shard in turn, so every shard serves Unix clients as SO_REUSEPORT spreads the
    /// TCP ones. The descriptor travels in a job; the shard it lands on owns it.
    fn hand_off_unix(&mut self, fd: RawFd) {
        let to = self.unix_next % self.eng.nshards.max(1);
        self.unix_next = to + 1;
        if to == self.eng.id {
            self.on_accept(fd, true, false);
        } else {
            self.eng.post(
                to,
                front(move |w: &mut Worker| w.on_accept(fd, true, false)),
            );
        }
    }

    /// Logs an accept error (Redis's "Accepting client connection: ..." warning), at most
    /// once a second per shard.
    fn log_accept_error(&mut self, li: usize, errno: i32) {
        let Some(a) = self.listeners.get_mut(li) else {
            return;
        };
        let now = self.eng.pass_now;
        if a.logged
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            a.unlogged += 1;
            return;
        }
        let more = match std::mem::take(&mut a.unlogged) {
            0 => String::new(),
            n => format!(" ({n} more in the last second)"),
        };
        a.logged = Some(now);
        crate::log::warning(&format!(
            "Accepting client connection: {} (shard {}){more}",
            super::os_text(&std::io::Error::from_raw_os_error(errno)),
            self.eng.id
        ));
    }

    /// A new client connection (`unix`: from the Unix socket, possibly accepted by
    /// another shard; `tls`: accepted on `tls-port`, it starts a TLS session and every
    /// byte in and out of it goes through that session).
    fn on_accept(&mut self, fd: RawFd, unix: bool, tls: bool) {
        // A connection handed over while this shard was stopping: nobody would serve it.
        if unix && self.eng.shared.shutdown.load(Ordering::Relaxed) {
            sys::close(fd);
            return;
        }
        self.eng.net.connections_received += 1;
        // A refusal's text would be plaintext in the middle of a TLS handshake: a TLS
        // client is only closed.
        let refuse = |fd: RawFd, text: &[u8]| match tls {
            false => sys::write_and_close(fd, text),
            true => sys::close(fd),
        };
        let server_cfg = match tls {
            true => self.eng.shared.tun.tls_server(),
            false => None,
        };
        let session = match (tls, &server_cfg) {
            (false, _) => None,
            (true, Some(cfg)) => match crate::tls::Session::new(cfg) {
                Ok(s) => Some(Box::new(s)),
                Err(e) => {
                    crate::log::warning(&format!("Error creating a TLS session: {e}"));
                    sys::close(fd);
                    return;
                }
            },
            (true, None) => {
                sys::close(fd);
                return;
            }
        };
        let max = self.eng.shared.tun.maxclients.load(Ordering::Relaxed);
        let prev = self.eng.shared.clients.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.eng.shared.clients.fetch_sub(1, Ordering::AcqRel);
            self.eng.net.rejected_connections += 1;
            refuse(fd, b"-ERR max number of clients reached\r\n");
            return;
        }
        if !unix {
            let keepalive = self.eng.shared.tun.tcp_keepalive.load(Ordering::Relaxed);
            sys::setup_conn(fd, self.eng.shared.cfg.tcp_nodelay, keepalive);
        }
        let (peer, local) = sys::addrs(fd);
        let tun = &self.eng.shared.tun;
        let auth_required = tun.auth_required.load(Ordering::Relaxed);
        // Protected mode (Redis's test): no password, and the peer is not 127.0.0.1 / ::1
        // (Unix socket clients are local).
        if !unix && !auth_required && tun.protected_mode.load(Ordering::Relaxed) {
            let local_peer = peer.is_some_and(|p| {
                let ip = p.ip();
                ip == std::net::Ipv4Addr::LOCALHOST || ip == std::net::Ipv6Addr::LOCALHOST
            });
            if !local_peer {
                self.eng.shared.clients.fetch_sub(1, Ordering::AcqRel);
                self.eng.net.rejected_connections += 1;
                crate::log::verbose(&format!(
                    "Denied client {}: protected mode is on and no password is set",
                    peer.map(|p| p.to_string()).unwrap_or_default()
                ));
                refuse(fd, crate::error::DENIED);
                return;
            }
        }
        let show = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let (id, gen) = self.next_client();
        let mut client = if unix {
            // Redis shows a Unix client as `addr=/path:0 laddr=/path:0`.
            let path = self.eng.shared.cfg.unixsocket.clone().unwrap_or_default();
            ClientInfo::new(id, format!("{path}:0"), format!("{path}:0"))
        } else {
            ClientInfo::new(id, show(peer), show(local))
        };
        client.unix = unix;
        client.authed = !auth_required;
        // acl_epoch 0: the first command fetches the default user (see `acl_gate`).
        let mut conn = Conn::new(fd, gen, client);
        conn.tls = session;
        let idx = self.conns.insert(conn);
        self.arm_recv(idx);
    }

    /// `proto-max-bulk-len` as in force (CONFIG SET applies from the next parse).
    fn max_bulk(&self) -> usize {
        self.eng
            .shared
            .tun
            .proto_max_bulk_len
            .load(Ordering::Relaxed) as usize
    }

    /// A new connection's client id (process-wide, as CLIENT ID shows it) and its
    /// generation in this shard's connection tokens.
    fn next_client(&mut self) -> (u64, u32) {
        let id = self
            .eng
            .shared
            .next_client_id
            .fetch_add(1, Ordering::Relaxed);
        let gen = self.next_gen;
        self.next_gen = (self.next_gen + 1) & 0xFF_FFFF;
        (id, gen)
    }

    /// Arms a receive for a connection that wants input and has none armed: multishot
    /// when the ring has a buffer pool, else one-shot.
    fn arm_recv(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        if conn.recv != RecvState::Idle || !conn_readable(conn) {
            return;
        }
        let t = tag(TAG_RECV, token_of(idx, conn.gen));
        if let Some(op) = self.ring.recv_multi(conn.fd, t) {
            conn.recv = RecvState::Multishot(op);
            return;
        }
        self.arm_single(idx, true);
    }

    /// One-shot receive into the connection's own buffer. `poll_first` when data is not
    /// expected to be waiting (we just drained the socket).
    fn arm_single(&mut self, idx: usize, poll_first: bool) {
        let min_free = self.eng.shared.cfg.recv_buffer;
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        // A blocked client is read only to notice a disconnect. Once it has sent more
        // commands, they wait in its buffer (not in a one-shot receive) for the wait to end.
        if conn.waiting.is_some() && conn.rbuf.as_ref().is_some_and(|b| !b.is_empty()) {
            return;
        }
        // A TLS connection receives ciphertext into its session's buffer; the read buffer
        // holds the plaintext.
        let taken = match conn.tls.as_mut() {
            None => conn.rbuf.take(),
            Some(t) => t.cbuf.take(),
        };
        let Some(mut buf) = taken else {
            return;
        };
        // `qalloc`: the block behind the buffer, which a view left by `split_to` hides.
        if conn.tls.is_none()
            && buf.is_empty()
            && buf.capacity().max(conn.qalloc) > 4 * min_free.max(64 * 1024)
        {
            buf = BytesMut::new();
            conn.qalloc = 0;
        }
        let t = tag(TAG_RECV, token_of(idx, conn.gen));
        self.ring.recv(conn.fd, buf, min_free, t, poll_first);
        conn.recv = RecvState::Single;
    }

    /// The token of connection `idx` (tickets, watch registrations).
    pub fn conn_token(&self, idx: usize) -> Option<u64> {
        self.conns.get(idx).map(|c| token_of(idx, c.gen))
    }

    pub fn conn_by_token(&self, token: u64) -> Option<usize> {
        let (idx, gen) = split_token(token);
        match self.conns.get(idx) {
            Some(c) if c.gen == gen => Some(idx),
            _ => None,
        }
    }

    fn on_recv(&mut self, token: u64, mut c: Completion) {
        let Some(idx) = self.conn_by_token(token) else {
            return;
        };
        let min_free = self.eng.shared.cfg.recv_buffer;
        // The master link counts its stream offsets in plaintext bytes.
        let mut plain_in = None;
        if self.conns[idx].tls.is_some() {
            // Ciphertext: decrypted into the read buffer here; what follows sees plaintext.
            let before = self.conns[idx].rbuf.as_ref().map_or(0, |b| b.len());
            self.tls_recv(idx, &mut c);
            let after = self.conns[idx].rbuf.as_ref().map_or(0, |b| b.len());
            plain_in = Some(after.saturating_sub(before));
        }
        let conn = &mut self.conns[idx];
        intake(&self.ring, conn, &mut c, min_free);
        if c.result <= 0 {
            if c.result == -libc::ENOBUFS {
                // The pool ran dry this pass: data is waiting, take it with a one-shot
                // receive (multishot again after that).
                if conn_readable(conn) {
                    self.arm_single(idx, false);
                }
                return;
            }
            if c.result == -libc::EINTR || c.result == -libc::ECANCELED {
                self.arm_recv(idx);
                return;
            }
            if c.result == 0
                && (self.conns[idx].waiting.is_some() || self.conns[idx].postponed.is_some())
            {
                // A blocked client went away: nothing will be sent to it.
                self.close_conn(idx);
                return;
            }
            if c.result == 0 {
                // The peer half-closed (`cmds | nc`, a client's shutdown(SHUT_WR)): answer
                // everything it sent, including replies still on other shards, then close.
                // Redis behaves the same way: it writes pending replies before it reads EOF.
                let conn = &mut self.conns[idx];
                if conn.blocked_on.is_some() {
                    // Input after the blocking command still has to run (`process_input`
                    // sets `closing` once it has).
                    conn.eof = true;
                    return;
                }
                conn.closing = true;
                if conn.drained() {
                    self.close_conn(idx);
                } else {
                    self.mark_dirty(idx);
                }
                return;
            }
            self.close_conn(idx);
            return;
        }
        self.eng
            .net
            .count_input(self.conns[idx].master, c.result as u64);
        self.conns[idx].client.last_active = self.eng.pass_now;
        self.conns[idx].note_input();
        let master = self.conns[idx].master;
        if master {
            let n = plain_in.unwrap_or(c.result as usize);
            self.repl.received += n as u64;
            crate::repl::capture(self, idx, n);
        }
        self.process_input(idx);
        if master {
            crate::repl::after_input(self);
        }
        // A multishot receive keeps delivering; stop it when this client must not be
        // read (back-pressure, a blocking command, closing). It is re-armed by `arm_recv`
        // once the client is readable again.
        if let Some(conn) = self.conns.get_mut(idx) {
            if let RecvState::Multishot(op) = conn.recv {
                if !conn_readable(conn) {
                    self.ring.cancel(op);
                    conn.recv = RecvState::Cancelling;
                }
                return;
            }
        }
        self.arm_recv(idx);
    }

    /// A TLS connection's receive: takes the completion's ciphertext (leaving `c.buf`
    /// empty), feeds it to the session, and appends the plaintext it carried to the read
    /// buffer. A TLS error (a failed handshake, a bad record, a plaintext client on the TLS
    /// port) marks the connection closing: the alert goes out with the next flush, then
    /// the connection closes. Nothing here blocks or waits for more bytes.
    fn tls_recv(&mut self, idx: usize, c: &mut Completion) {
        let buf = std::mem::replace(&mut c.buf, OpBuf::None);
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        let Some(tls) = conn.tls.as_mut() else {
            return;
        };
        let rbuf = conn.rbuf.get_or_insert_with(BytesMut::new);
        let res = match buf {
            OpBuf::Recv(mut b) => {
                conn.recv = RecvState::Idle;
                let r = match c.result > 0 {
                    true => tls.input(&b, rbuf),
                    false => Ok(()),
                };
                b.clear();
                tls.cbuf = Some(b);
                r
            }
            OpBuf::Provided(p) => match self.ring.provided(&p) {
                Some(data) => tls.input(data, rbuf),
                None => Ok(()),
            },
            other => {
                c.buf = other;
                Ok(())
            }
        };
        if let Err(e) = res {
            let what = match tls.is_handshaking() {
                true => "Error accepting a client connection",
                false => "Error reading from client",
            };
            crate::log::verbose(&format!(
                "{what}: TLS: {e} (id={} addr={})",
                conn.client.id, conn.client.addr
            ));
            conn.closing = true;
            self.mark_dirty(idx);
        }
    }

    /// A TLS connection's flush: every ready reply, encrypted, plus the handshake records
    /// or alert due, in one send (the plain path's `flush_dirty` step for TLS).
    fn tls_flush(&mut self, idx: usize, gate: Option<u64>, durable: u64) {
        // Output that waits for the append-only log stays (`aof`).
        let free = match self.conns.get(idx) {
            Some(c)
                if !c.sending
                    && (gate.is_some() || !c.aof_marks.is_empty())
                    && c.replica_link.is_none()
                    && !c.master =>
            {
                self.aof_sendable(idx, gate, durable)
            }
            _ => usize::MAX,
        };
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        if let (false, Some(tls)) = (conn.sending, conn.tls.as_mut()) {
            let free = free.min(conn.out.len());
            if free > 0 || tls.wants_write() {
                // Hold for replies from other shards once, as the plain path does.
                if conn.batches_out > 0 && !conn.held && conn.out.len() < HOLD_MAX && !conn.closing
                {
                    conn.held = true;
                    return;
                }
                conn.held = false;
                let mut cipher = std::mem::take(&mut conn.spare);
                if let Err(e) = tls.output(conn.out.get(..free).unwrap_or_default(), &mut cipher) {
                    crate::log::verbose(&format!(
                        "Error writing to client: TLS: {e} (id={} addr={})",
                        conn.client.id, conn.client.addr
                    ));
                    conn.closing = true;
                }
                if free < conn.out.len() {
                    conn.out.drain(..free);
                    aof::consumed(&mut conn.aof_marks, &mut conn.aof_free, free);
                } else {
                    conn.out.clear();
                    conn.aof_free = 0;
                }
                if !cipher.is_empty() {
                    conn.sending = true;
                    conn.inflight = cipher.len();
                    let t = tag(TAG_SEND, token_of(idx, conn.gen));
                    self.ring.send(conn.fd, cipher, 0, t);
                    return;
                }
                conn.spare = cipher;
            }
        }
        if conn.closing && conn.drained() {
            self.close_conn(idx);
        }
    }

    fn on_send(&mut self, token: u64, c: Completion) {
        let Some(idx) = self.conn_by_token(token) else {
            return;
        };
        let OpBuf::Send { buf, off } = c.buf else {
            return;
        };
        if c.result < 0 {
            self.close_conn(idx);
            return;
        }
        let conn = &mut self.conns[idx];
        self.eng
            .net
            .count_output(conn.replica_link.is_some(), c.result as u64);
        let off = off + c.result as usize;
        conn.inflight = buf.len().saturating_sub(off);
        super::pubsub::on_sent(conn, &self.eng.shared.tun);
        if off < buf.len() {
            let t = tag(TAG_SEND, token_of(idx, conn.gen));
            self.ring.send(conn.fd, buf, off, t);
            return;
        }
        conn.sending = false;
        let mut buf = buf;
        buf.clear();
        if buf.capacity() <= 1 << 20 {
            conn.spare = buf;
        }
        if conn.closing && conn.drained() {
            self.close_conn(idx);
            return;
        }
        self.mark_dirty(idx);
        // Reading may have paused for back-pressure.
        self.arm_recv(idx);
    }

    pub fn mark_dirty(&mut self, idx: usize) {
        if let Some(c) = self.conns.get_mut(idx) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    /// One send per connection per pass, carrying every reply that is ready.
    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        // client-output-buffer-limit's normal class (none by default, as Redis): a client
        // that sends requests without reading replies is closed once its pending output
        // passes the limit, instead of growing without bound.
        let normal = super::pubsub::Limits::of(&self.eng.shared.tun.normal_obuf_limit);
        let (gate, durable) = (self.eng.aof_gate(), self.eng.aof_durable());
        for &idx in &dirty {
            if normal.any() {
                let now = self.eng.pass_now;
                let over = self.conns.get_mut(idx).is_some_and(|c| {
                    !c.subs.active() && !crate::repl::master::is_replica(c) && normal.over(c, now)
                });
                if over {
                    super::pubsub::close_slow(self, idx);
                    continue;
                }
            }
            let Some(conn) = self.conns.get_mut(idx) else {
                continue;
            };
            conn.dirty = false;
            if conn.master && !conn.sending {
                // Replies to our master are dropped; only its ACKs go out.
                conn.out.clear();
                conn.out.append(&mut self.repl.ack);
            }
            if conn.tls.is_some() {
                self.tls_flush(idx, gate, durable);
                continue;
            }
            if conn.sending || conn.out.is_empty() {
                if conn.closing && conn.drained() {
                    self.close_conn(idx);
                }
                continue;
            }
            // Replies from other shards are due behind these: hold the ready prefix until
            // they arrive (their arrival marks the connection dirty again), so a pipelined
            // read is answered with one send instead of one per shard. Held once at most,
            // and never for much output.
            if conn.batches_out > 0
                && !conn.held
                && conn.out.len() < HOLD_MAX
                && !conn.closing
                && !conn.master
            {
                conn.held = true;
                continue;
            }
            conn.held = false;
            let buf = if (gate.is_some() || !conn.aof_marks.is_empty())
                && conn.replica_link.is_none()
                && !conn.master
            {
                // Output that waits for the append-only log stays (`aof`).
                let n = self.aof_sendable(idx, gate, durable);
                let Some(conn) = self.conns.get_mut(idx) else {
                    continue;
                };
                if n == 0 {
                    continue;
                }
                if n < conn.out.len() {
                    let rest = conn.out.split_off(n);
                    aof::consumed(&mut conn.aof_marks, &mut conn.aof_free, n);
                    std::mem::replace(&mut conn.out, rest)
                } else {
                    conn.aof_free = 0;
                    let next = std::mem::take(&mut conn.spare);
                    std::mem::replace(&mut conn.out, next)
                }
            } else {
                let next = std::mem::take(&mut conn.spare);
                std::mem::replace(&mut conn.out, next)
            };
            let Some(conn) = self.conns.get_mut(idx) else {
                continue;
            };
            conn.sending = true;
            conn.inflight = buf.len();
            let t = tag(TAG_SEND, token_of(idx, conn.gen));
            self.ring.send(conn.fd, buf, 0, t);
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    pub fn close_conn(&mut self, idx: usize) {
        // The master link first: its offset leaves out a MULTI still queuing, which the
        // transaction's discard below would forget.
        if self.conns.get(idx).is_some_and(|c| c.master) {
            crate::repl::on_close(self, idx);
        }
        if self.conns.get(idx).is_some_and(|c| c.tx.is_some())
            && crate::server::tx::on_close(self, idx)
        {
            return;
        }
        if let Some(wid) = self.conns.get(idx).and_then(|c| c.waiting) {
            coord::blocking::on_close(&mut self.eng, wid);
        }
        if self.conns.get(idx).is_some_and(|c| c.track.is_some()) {
            super::tracking::disable(self, idx);
        }
        let token = self.conn_token(idx);
        if self.conns.get(idx).is_some_and(|c| c.monitor) {
            super::monitor::stop(self, idx);
        }
        if let Some(conn) = self.conns.try_remove(idx) {
            self.pubsub.forget(idx, &conn.subs);
            if conn.client.script_caller {
                crate::acl::forget_script_caller(conn.client.id);
            }
            if conn.replica_link.is_some() {
                crate::repl::master::on_close(self, token, &conn);
            }
            // Shutdown now: the peer sees the close, and a receive or send in flight (or
            // still queued) completes and releases its buffer. The descriptor itself is
            // closed after the next submit (`close_pending`), so its number cannot be reused
            // while an operation for this socket is still queued.
            sys::shutdown(conn.fd);
            self.pending_close.push(conn.fd);
            self.eng.shared.clients.fetch_sub(1, Ordering::AcqRel);
        }
    }

    // ----- requests ----------------------------------------------------------------------

    /// Runs `f` on this shard's connection side at `at` (a subsystem's own timer: the
    /// replication hub's, for one). The engine's timers are `Engine::after`.
    pub fn after(&mut self, at: Instant, f: impl FnOnce(&mut Worker) + 'static) {
        self.timers.add(at, TimerKind::Front(Box::new(f)));
    }

    /// A subsystem's own ring operation (a file write, an fsync): `op` queues it on the
    /// ring under the tag it is given, and `done` runs here with its completion, in a later
    /// pass. One-shot operations only (the tag is retired on the first completion).
    pub fn submit_io(
        &mut self,
        op: impl FnOnce(&mut Ring, u64),
        done: impl FnOnce(&mut Worker, Completion) + 'static,
    ) {
        let key = self.io_ops.insert(Box::new(done));
        op(&mut self.ring, tag(TAG_IO, key as u64));
    }

    /// Everysec: starts this shard's background fdatasync of its append-only log through
    /// the ring once a second (one at a time; the log's file stays open until it is done).
    fn aof_sync_tick(&mut self) {
        if self.eng.shared.tun.appendfsync.load(Ordering::Relaxed) != 1 {
            return;
        }
        let now = self.eng.pass_now;
        let Some(file) = self.eng.aof.as_mut().and_then(|a| a.sync_due(now)) else {
            return;
        };
        let fd = std::os::fd::AsRawFd::as_raw_fd(&*file);
        self.submit_io(
            |ring, tag| ring.fsync(fd, true, tag),
            move |w: &mut Worker, c: Completion| {
                drop(file);
                let shard = w.eng.id;
                let state = w.eng.shared.aof.clone();
                match w.eng.aof.as_mut() {
                    Some(a) => a.sync_done(c.result),
                    None => crate::persist::aof::sync_result(&state, shard, c.result),
                }
            },
        );
    }

    fn on_timer(&mut self, t: TimerKind, now: Instant) {
        match t {
            TimerKind::ActiveExpire => {
                if self.eng.id == 0 {
                    // Samples live heap bytes so INFO's used_memory_peak sees peaks between calls.
                    crate::runtime::alloc::used();
                }
                self.trim_scratch();
                self.aof_sync_tick();
                let (mut total, mut input, mut output) = (0u64, 0u64, 0u64);
                for (_, c) in self.conns.iter() {
                    total += c.buffer_bytes() as u64;
                    input = input.max(c.input_bytes() as u64);
                    output = output.max(c.output_bytes() as u64);
                }
                self.clients_bytes = total;
                self.peaks.note(crate::persist::unix_secs(), input, output);
                self.publish_mem();
                super::client_evict::tick(self);
                self.rates.sample(
                    now,
                    [
                        self.eng.shard.commands_processed,
                        self.eng.net.net_input_bytes,
                        self.eng.net.net_output_bytes,
                    ],
                );
                let deadline = Instant::now() + Duration::from_millis(2);
                let now_ms = self.eng.shard.now_ms;
                let cycle = clock::ticks();
                let active = commands::observe::active_expire();
                for db in self.eng.shard.dbs.iter_mut().filter(|_| active) {
                    // Keep going while a good share of what we look at is expired, within
                    // the time budget (Redis's active expire cycle, simplified).
                    while db.active_expire(now_ms, 64) > 8 && Instant::now() < deadline {}
                    if Instant::now() >= deadline {
                        break;
                    }
                }
                let ms = clock::to_nanos(clock::ticks().wrapping_sub(cycle)) / 1_000_000;
                self.eng.shard.lat.event("expire-cycle", ms);
                crate::shard::journal::flush(&mut self.eng.shard);
                crate::repl::shutdown::on_tick(&mut self.eng);
                crate::persist::cron::tick(&mut self.eng);
                self.timers
                    .add(now + Duration::from_millis(100), TimerKind::ActiveExpire);
            }
            TimerKind::Front(f) => {
                f(self);
                self.drain_outbox();
            }
            TimerKind::PauseEnd => {
                self.refresh_pause();
                if !self.postponed.is_empty() && self.eng.pause != crate::server::pause::NONE {
                    self.arm_pause_timer();
                }
            }
            TimerKind::AcceptRetry(li) => {
                if !self.eng.shared.shutdown.load(Ordering::Relaxed) {
                    self.arm_accept(li);
                }
            }
            TimerKind::ClientTimeout => {
                let secs = self.eng.shared.tun.timeout.load(Ordering::Relaxed);
                if secs > 0 {
                    let limit = Duration::from_secs(secs);
                    let idle: Vec<usize> = self
                        .conns
                        .iter()
                        // Subscribers wait for messages by design: never idle (as in Redis).
                        .filter(|(_, c)| {
                            c.blocked_on.is_none()
                                && !c.subs.active()
                                && !crate::repl::master::is_replica(c)
                                && !c.master
                                && c.client.last_active.elapsed() > limit
                        })
                        .map(|(i, _)| i)
                        .collect();
                    for i in idle {
                        self.close_conn(i);
                    }
                }
                super::pubsub::sweep(self);
                self.shrink_conn_buffers(now);
                if self.eng.id == crate::repl::HOME {
                    crate::repl::on_tick(self);
                }
                if self.eng.id == 0 {
                    crate::persist::cron::check_rules(&mut self.eng);
                    crate::persist::cron::check_aof_growth(&mut self.eng);
                    crate::repl::master::refresh_good_replicas();
                }
                self.timers
                    .add(now + Duration::from_secs(1), TimerKind::ClientTimeout);
            }
        }
    }
}

/// Whether a connection's input should be read: not closing, not paused behind a blocking
/// command, and not over the back-pressure limits (a client that does not read its replies
/// stops being read).
/// Output held back for replies due from other shards (`flush_dirty`) stays under this.
const HOLD_MAX: usize = 64 * 1024;

/// Moves a receive's bytes into the connection's read buffer: a one-shot receive hands the
/// buffer back (with the new bytes in it); a multishot chunk is copied from the pool buffer
/// (which goes back to the kernel at the next drain). A multishot that ended leaves the
/// connection idle (the normal loop and the busy-script pump both take input this way).
#[inline]
fn intake(ring: &Ring, conn: &mut Conn, c: &mut Completion, min_free: usize) {
    match std::mem::replace(&mut c.buf, OpBuf::None) {
        OpBuf::Recv(b) => {
            conn.rbuf = Some(b);
            conn.recv = RecvState::Idle;
        }
        OpBuf::Provided(p) => {
            if let Some(data) = ring.provided(&p) {
                let rbuf = conn.rbuf.get_or_insert_with(BytesMut::new);
                if rbuf.capacity() - rbuf.len() < data.len() {
                    rbuf.reserve(data.len().max(min_free));
                }
                rbuf.extend_from_slice(data);
            }
        }
        _ => {}
    }
    if !c.more && matches!(conn.recv, RecvState::Multishot(_) | RecvState::Cancelling) {
        conn.recv = RecvState::Idle;
    }
}

fn conn_readable(c: &Conn) -> bool {
    // A client waiting in BLPOP & co stays read (up to a bound) so a disconnect ends the
    // wait; what it sends meanwhile runs once the wait is over.
    let waiting_ok = c.waiting.is_some() && c.rbuf.as_ref().is_none_or(|b| b.len() < 1 << 20);
    // A client held by CLIENT PAUSE is read the same way (a disconnect is noticed).
    let held_ok = c.postponed.is_none() || c.rbuf.as_ref().is_none_or(|b| b.len() < 1 << 20);
    !c.closing
        && !c.eof
        && (c.blocked_on.is_none() || waiting_ok)
        && held_ok
        && c.out.len() <= MAX_PENDING_OUT
        && c.slots.len() <= MAX_PENDING_SLOTS
}
