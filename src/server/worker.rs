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
    /// The look-ahead window of `process_input` (kept for its allocations).
    window: lookahead::Window,
    completions: Vec<Completion>,
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
            window: lookahead::Window::default(),
            completions: Vec::with_capacity(256),
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
            master_repl: None,
            repl: Default::default(),
            monitors: Vec::new(),
            pause_end: 0,
            postponed: Vec::new(),
            after_busy: Vec::new(),
            resume: Vec::new(),
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
                    self.eng.aof = Some(w);
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
            for c in comps.drain(..) {
                self.on_completion(c, wake_fd);
            }
            self.completions = comps;

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
                coord::block::serve_ready(&mut self.eng);
            }

            if let Some(a) = self.eng.aof.as_mut() {
                // The pass's writes reach the file before their replies leave.
                crate::shard::journal::flush(&mut self.eng.shard);
                let always = self.eng.shared.tun.appendfsync.load(Ordering::Relaxed) == 2;
                a.write_pass(&mut self.eng.shard, always);
            }
            if self.eng.ship.is_some() {
                crate::repl::master::on_pass(&mut self.eng);
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
            let backlog = self.eng.mesh.flush();

            let busy = backlog
                || self.eng.snap_run.is_some()
                || !self.eng.local.is_empty()
                || (self.eng.lock.is_none() && !self.eng.parked.is_empty())
                || !self.eng.inbox.is_empty()
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
        let max_bulk = self
            .eng
            .shared
            .tun
            .proto_max_bulk_len
            .load(Ordering::Relaxed) as usize;
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
                // Completions already drained are handled at the top of the next pass.
                let mut comps = std::mem::take(&mut self.completions);
                let wake_fd = self.eng.mesh.waker().fd();
                for c in comps.drain(..) {
                    self.on_completion(c, wake_fd);
                }
                self.completions = comps;
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
        for l in &self.listeners {
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
            sys::setup_conn(fd, self.eng.shared.cfg.tcp_nodelay);
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
        let id = self
            .eng
            .shared
            .next_client_id
            .fetch_add(1, Ordering::Relaxed);
        let gen = self.next_gen;
        self.next_gen = (self.next_gen + 1) & 0xFF_FFFF;
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
            conn.recv = RecvState::Multi(op);
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
        match c.buf {
            // A one-shot receive hands the read buffer back (with the new bytes in it).
            OpBuf::Recv(b) => {
                conn.rbuf = Some(b);
                conn.recv = RecvState::Idle;
            }
            // A multishot chunk: copy it to the read buffer; the pool buffer goes back to
            // the kernel at the next drain.
            OpBuf::Provided(p) => {
                if let Some(data) = self.ring.provided(&p) {
                    let rbuf = conn.rbuf.get_or_insert_with(BytesMut::new);
                    if rbuf.capacity() - rbuf.len() < data.len() {
                        rbuf.reserve(data.len().max(min_free));
                    }
                    rbuf.extend_from_slice(data);
                }
            }
            _ => {}
        }
        if !c.more && matches!(conn.recv, RecvState::Multi(_) | RecvState::Cancelling) {
            conn.recv = RecvState::Idle;
        }
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
        self.eng.net.net_input_bytes += c.result as u64;
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
            if let RecvState::Multi(op) = conn.recv {
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
    fn tls_flush(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx) else {
            return;
        };
        if let (false, Some(tls)) = (conn.sending, conn.tls.as_mut()) {
            if !conn.out.is_empty() || tls.wants_write() {
                // Hold for replies from other shards once, as the plain path does.
                if conn.batches_out > 0 && !conn.held && conn.out.len() < HOLD_MAX && !conn.closing
                {
                    conn.held = true;
                    return;
                }
                conn.held = false;
                let mut cipher = std::mem::take(&mut conn.spare);
                if let Err(e) = tls.output(&conn.out, &mut cipher) {
                    crate::log::verbose(&format!(
                        "Error writing to client: TLS: {e} (id={} addr={})",
                        conn.client.id, conn.client.addr
                    ));
                    conn.closing = true;
                }
                conn.out.clear();
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
        self.eng.net.net_output_bytes += c.result as u64;
        let off = off + c.result as usize;
        let conn = &mut self.conns[idx];
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
                self.tls_flush(idx);
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
            let next = std::mem::take(&mut conn.spare);
            let buf = std::mem::replace(&mut conn.out, next);
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
        if self.conns.get(idx).is_some_and(|c| c.tx.is_some()) && coord::tx::on_close(self, idx) {
            return;
        }
        if let Some(wid) = self.conns.get(idx).and_then(|c| c.waiting) {
            coord::block::on_close(&mut self.eng, wid);
        }
        if self.conns.get(idx).is_some_and(|c| c.track.is_some()) {
            super::tracking::disable(self, idx);
        }
        let token = self.conn_token(idx);
        if self.conns.get(idx).is_some_and(|c| c.master) {
            crate::repl::on_close(self, idx);
        }
        if self.conns.get(idx).is_some_and(|c| c.monitor) {
            super::monitor::stop(self, idx);
        }
        if let Some(conn) = self.conns.try_remove(idx) {
            self.pubsub.forget(idx, &conn.subs);
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

    /// Parses and runs every complete command in the connection's read buffer.
    fn process_input(&mut self, idx: usize) {
        let max_bulk = self
            .eng
            .shared
            .tun
            .proto_max_bulk_len
            .load(Ordering::Relaxed) as usize;
        let qlimit = self
            .eng
            .shared
            .tun
            .client_query_buffer_limit
            .load(Ordering::Relaxed) as usize;
        // A command CLIENT PAUSE held back runs first (or is held again).
        if let Some(mut argv) = self.conns.get_mut(idx).and_then(|c| c.postponed.take()) {
            self.dispatch_one(idx, &mut argv, None);
            if self.conns.get(idx).is_none_or(|c| c.postponed.is_some()) {
                self.mark_dirty(idx);
                return;
            }
        }
        let mut args = std::mem::take(&mut self.args_scratch);
        // Commands parsed ahead, with their keys prefetched (see `lookahead`).
        let mut win = std::mem::take(&mut self.window);
        win.clear();
        if let Some(c) = self.conns.get_mut(idx) {
            c.in_input = c.in_input.saturating_add(1);
        }
        while let Some(conn) = self.conns.get_mut(idx) {
            if conn.closing || conn.blocked_on.is_some() || conn.postponed.is_some() {
                break;
            }
            let Some(rbuf) = conn.rbuf.as_mut() else {
                break;
            };
            let (parsed, hint) = match win.pop(rbuf, &mut args) {
                Some((n, id)) => (Ok(Some(n)), Some(id)),
                None => (
                    parser::parse_partial(rbuf, max_bulk, &mut args, &mut conn.partial),
                    None,
                ),
            };
            match parsed {
                Err(e) => {
                    crate::log::verbose(&format!(
                        "Protocol error ({e}) from client: id={} addr={}",
                        conn.client.id, conn.client.addr
                    ));
                    conn.push_reply(&Reply::Error(e.to_string()));
                    conn.closing = true;
                    self.mark_dirty(idx);
                    break;
                }
                Ok(None) => {
                    if rbuf.len() > qlimit {
                        crate::log::warning(&format!(
                            "Closing client that reached max query buffer length: id={} addr={} (qbuf size={})",
                            conn.client.id, conn.client.addr, rbuf.len()
                        ));
                        self.flush_batches(idx);
                        if let Some(c) = self.conns.get_mut(idx) {
                            c.in_input = c.in_input.saturating_sub(1);
                        }
                        self.close_conn(idx);
                        self.args_scratch = args;
                        self.window = win;
                        return;
                    }
                    break;
                }
                Ok(Some(n)) => {
                    // More commands behind this one: parse the next window of them and
                    // warm the keyspace for it (this one included) before running them.
                    if hint.is_none() && rbuf.len() > n && !args.is_empty() {
                        let (id, nshards, locked) =
                            (self.eng.id, self.eng.nshards, self.eng.lock.is_some());
                        if let (Some(db), Some((cur, rest))) = (
                            self.eng.shard.dbs.get(conn.client.db),
                            rbuf.split_at_checked(n),
                        ) {
                            lookahead::prefetch_window(
                                db,
                                &mut win,
                                cur,
                                &args,
                                rest,
                                max_bulk,
                                |k| !locked && shard_of(k, nshards) == id,
                            );
                        }
                    }
                    let mut chunk = rbuf.split_to(n).freeze();
                    if args.is_empty() {
                        continue;
                    }
                    // The argument vector is reused across commands; paths that keep it
                    // (batches for other shards) take it and leave an empty one behind.
                    // The last argument is the chunk itself, cut down (one reference count
                    // fewer per command than slicing it too).
                    let mut argv = std::mem::take(&mut self.argv_scratch);
                    let last = args.pop();
                    argv.extend(args.drain(..).map(|a| match a {
                        Arg::Range(s, e) => chunk.slice(s..e),
                        Arg::Owned(v) => Bytes::from(v),
                    }));
                    if let Some(a) = last {
                        argv.push(match a {
                            Arg::Range(s, e) if s <= e && e <= chunk.len() => {
                                chunk.truncate(e);
                                chunk.advance(s);
                                chunk
                            }
                            Arg::Range(s, e) => chunk.slice(s..e),
                            Arg::Owned(v) => Bytes::from(v),
                        });
                    }
                    self.dispatch_one(idx, &mut argv, hint.flatten());
                    argv.clear();
                    self.argv_scratch = argv;
                }
            }
        }
        self.args_scratch = args;
        win.clear();
        self.window = win;
        self.flush_batches(idx);
        if self.conns.get(idx).is_some_and(|c| c.acks.is_some()) {
            crate::repl::master::start_barriers(self, idx);
        }
        if let Some(conn) = self.conns.get_mut(idx) {
            conn.in_input = conn.in_input.saturating_sub(1);
            if conn.eof && conn.blocked_on.is_none() {
                conn.closing = true;
            }
        }
        self.mark_dirty(idx);
    }

    /// Runs one command of the client's input, applying its CLIENT REPLY mode (one test
    /// for clients that never changed it).
    #[inline]
    fn dispatch_one(&mut self, idx: usize, argv: &mut Vec<Bytes>, known: Option<usize>) {
        let mode = self.conns[idx].reply_mode;
        if mode == ReplyMode::On {
            self.dispatch(idx, argv, known);
            return;
        }
        self.dispatch_muted(idx, argv, known, mode);
    }

    /// CLIENT REPLY OFF / SKIP: the command runs with its reply dropped (`Conn::mute`);
    /// CLIENT REPLY itself sets the mode and unmutes for ON.
    #[cold]
    fn dispatch_muted(
        &mut self,
        idx: usize,
        argv: &mut Vec<Bytes>,
        known: Option<usize>,
        mode: ReplyMode,
    ) {
        if let Some(c) = self.conns.get_mut(idx) {
            c.mute = true;
            if mode == ReplyMode::SkipNext {
                c.reply_mode = ReplyMode::Skipping;
            }
        }
        self.dispatch(idx, argv, known);
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        c.mute = false;
        if c.postponed.is_some() {
            // Held by CLIENT PAUSE: the mode applies when it runs.
            c.reply_mode = mode;
            return;
        }
        // The skipped command ran (unless it was a CLIENT REPLY that set another mode).
        if c.reply_mode == ReplyMode::Skipping {
            c.reply_mode = ReplyMode::On;
        }
    }

    /// Runs one command: checks, then inline, batched to its owner, or coordinated.
    /// `known`: the command's table id, when the look-ahead already looked it up.
    fn dispatch(&mut self, idx: usize, argv: &mut Vec<Bytes>, known: Option<usize>) {
        if (self.eng.pause != 0 || self.repl.hold) && self.pause_holds(idx, argv) {
            return;
        }
        let c = &self.conns[idx].client;
        // The master link is not subject to authentication or ACLs (as in Redis).
        if (!c.authed || c.restricted || c.acl_epoch != crate::acl::epoch())
            && !self.conns[idx].master
            && !self.acl_gate(idx, argv)
        {
            return;
        }
        if coord::tx::in_multi(&self.conns[idx]) && coord::tx::queue(self, idx, argv) {
            return;
        }
        let t = table();
        let found = match known {
            Some(id) => t.get(id).map(|s| (id, s)),
            None => t.lookup(argv.first().map_or(&b""[..], |n| &n[..])),
        };
        let Some((id, spec)) = found else {
            // The raw bytes go back, as Redis echoes them (the stats count an ERR).
            commands::count_error(&mut self.eng.shard, "ERR");
            let reply = crate::error::unknown_command_reply(argv);
            self.conns[idx].push_reply(&Reply::Raw(reply));
            return;
        };
        if let Err(e) = commands::check_arity(spec, argv) {
            self.reject(idx, Some(id), e);
            return;
        }
        // maxmemory: evict, or refuse commands that may grow memory when nothing can be
        // evicted. A command bound for one other shard (or for this one while it is locked)
        // is checked there, by the shard whose keys it writes (`exec_batch`).
        // The master's writes are never refused (Redis obeys its master client).
        if self.eng.shared.tun.maxmemory.load(Ordering::Relaxed) > 0 && !self.conns[idx].master {
            let elsewhere = matches!(spec.exec, Exec::Key(_) | Exec::Multi(_))
                && matches!(commands::route(&spec.keys, argv, self.eng.nshards),
                            Route::One(s) if s != self.eng.id || self.eng.lock.is_some());
            if !elsewhere {
                if let Err(e) = self.memory_check(spec.has(DENYOOM)) {
                    self.reject(idx, Some(id), e);
                    return;
                }
            }
        }
        // stop-writes-on-bgsave-error: one relaxed load per write command (PING checks the
        // gate in its handler, as Redis refuses it too).
        if spec.has(WRITE) && crate::persist::writes_refused() {
            self.reject(idx, Some(id), CmdError::coded(crate::error::MISCONF));
            return;
        }
        // A replica: READONLY for writes, MASTERDOWN while the link is down (one relaxed
        // load on a master).
        let gate = crate::repl::gate();
        let mut hold = false;
        if gate != 0 && !self.conns[idx].master {
            let is_exec = spec.name == "exec";
            let flags = if is_exec {
                crate::coord::tx::exec_flags(self, idx, spec.flags)
            } else {
                spec.flags
            };
            if let Some(e) = crate::repl::refusal(gate, flags) {
                // Redis's rejectCommand: an EXEC refused here discards the transaction.
                let e = if is_exec && crate::coord::tx::in_multi(&self.conns[idx]) {
                    crate::coord::tx::discard(self, idx);
                    CmdError::Other(crate::error::exec_abort_because(e))
                } else {
                    CmdError::coded(e)
                };
                self.reject(idx, Some(id), e);
                return;
            }
            hold = crate::repl::holds_reply(gate, flags);
        }
        let (db, resp) = {
            let c = &mut self.conns[idx].client;
            c.last_cmd = spec.name;
            c.last_sub = match argv.get(1) {
                Some(sub) if !spec.subcommands.is_empty() => spec
                    .subcommands
                    .iter()
                    .find(|(n, _, _)| sub.eq_ignore_ascii_case(n.as_bytes()))
                    .map_or("", |(n, _, _)| *n),
                _ => "",
            };
            (c.db, c.resp)
        };
        // RESP2 subscribed mode allows only (P)(UN)SUBSCRIBE, PING, QUIT, RESET.
        if let Some(e) = commands::pubsub::refused_when_subscribed(&self.conns[idx], spec, argv) {
            self.reject(idx, Some(id), e);
            return;
        }
        if spec.has(PROTECTED) {
            let c = &self.conns[idx].client;
            if let Some(e) =
                commands::protected_refusal(self.eng.shared.cfg.debug_command, &c.addr, spec.name)
            {
                self.reject(idx, Some(id), e);
                return;
            }
        }
        // MONITOR: the line is made now (the arguments move below) and sent after the
        // command, with the database it left the client in (SELECT), as Redis; scripts and
        // blocking commands before, so their own lines follow; EXEC's in `coord::tx`.
        let mut mon = None;
        if self.eng.shard.monitor && spec.name != "exec" {
            mon = super::monitor::prepare(spec, argv);
            if mon.is_some() && (spec.keys.script || spec.has(BLOCKING)) {
                if let Some(q) = mon.take() {
                    super::monitor::emit(self, idx, &q);
                }
            }
        }
        if spec.has(BLOCKING) {
            if let Some(start_fn) = spec.cross {
                self.start_blocking(idx, id, start_fn, argv);
                return;
            }
        }
        // min-replicas-ack: a slot ahead of the write's reply holds it until the replicas
        // acknowledge it (`repl::master::hold`).
        let barrier = if hold {
            Some(self.conns[idx].reserve())
        } else {
            None
        };
        if self.conns[idx].track.is_some() {
            self.execute_tracked(idx, id, spec, argv, db, resp);
        } else {
            self.execute(idx, id, spec, argv, db, resp);
        }
        if let Some(b) = barrier {
            crate::repl::master::hold(self, idx, b);
        }
        if let Some(q) = mon {
            super::monitor::emit(self, idx, &q);
        }
    }

    /// CLIENT TRACKING: a read's keys are remembered on their owners around the command
    /// (`server::tracking`), and CLIENT CACHING's mark lasts for one command (not CLIENT
    /// itself, and not while queuing in MULTI), as in Redis.
    #[cold]
    fn execute_tracked(
        &mut self,
        idx: usize,
        id: usize,
        spec: &'static crate::commands::table::CommandSpec,
        argv: &mut Vec<Bytes>,
        db: usize,
        resp: u8,
    ) {
        let wants = self.conns[idx]
            .track
            .as_ref()
            .is_some_and(|t| t.wants_keys());
        let keys = if wants {
            super::tracking::keys_to_remember(self, idx, spec, argv)
        } else {
            Vec::new()
        };
        let me = super::tracking::client_ref(self, idx);
        let inline = matches!(spec.exec, Exec::Key(_) | Exec::Multi(_))
            && self.eng.lock.is_none()
            && matches!(commands::route(&spec.keys, argv, self.eng.nshards),
                        Route::One(s) if s == self.eng.id);
        if let (Some(me), false) = (me, keys.is_empty()) {
            super::tracking::remember_now(self, me, &keys);
        }
        self.execute(idx, id, spec, argv, db, resp);
        if let (Some(me), false) = (me, keys.is_empty() || inline) {
            self.flush_batches(idx);
            super::tracking::remember_later(self, me, &keys);
        }
        let queuing = self.conns.get(idx).is_some_and(coord::tx::in_multi);
        if spec.name != "client" && !queuing {
            if let Some(t) = self.conns.get_mut(idx).and_then(|c| c.track.as_mut()) {
                t.caching = None;
            }
        }
    }

    /// The command's execution proper, once every check passed (the tail of `dispatch`).
    #[inline]
    fn execute(
        &mut self,
        idx: usize,
        id: usize,
        spec: &'static crate::commands::table::CommandSpec,
        argv: &mut Vec<Bytes>,
        db: usize,
        resp: u8,
    ) {
        self.execute_inner(idx, id, spec, argv, db, resp);
        if !self.eng.outbox.is_empty() {
            self.drain_outbox();
        }
    }

    fn execute_inner(
        &mut self,
        idx: usize,
        id: usize,
        spec: &'static crate::commands::table::CommandSpec,
        argv: &mut Vec<Bytes>,
        db: usize,
        resp: u8,
    ) {
        match spec.exec {
            Exec::Conn(f) => {
                // Earlier commands of this client bound for other shards go first.
                self.flush_batches(idx);
                let start = clock::ticks();
                let mut ctx = ConnCtx {
                    w: self,
                    conn: idx,
                    deferred: None,
                };
                let res = f(&mut ctx, argv);
                let deferred = ctx.deferred.is_some();
                let nanos = clock::to_nanos(clock::ticks().wrapping_sub(start));
                if !deferred {
                    let reply = commands::finish(&mut self.eng.shard, id, res);
                    if let Some(st) = self.eng.shard.cmd_stats.get_mut(id) {
                        st.nanos += nanos;
                    }
                    if let Some(c) = self.conns.get_mut(idx) {
                        c.push_reply(&reply);
                    }
                } else {
                    // Counted here; the time is the handler's own (the fan-out it started
                    // runs on other shards and is not attributed).
                    self.eng.shard.commands_processed += 1;
                    if let Some(st) = self.eng.shard.cmd_stats.get_mut(id) {
                        st.calls += 1;
                        st.nanos += nanos;
                    }
                }
                self.eng.shard.observe(id, argv, nanos);
                if !self.eng.shard.slow.pending.is_empty() {
                    self.slow_commit(idx);
                }
            }
            Exec::Key(f) => match commands::route(&spec.keys, argv, self.eng.nshards) {
                Route::NoKeys => {
                    self.run_here(idx, id, f, db, resp, argv);
                }
                Route::One(s) => self.run_or_batch(idx, s, id, f, db, resp, argv),
                Route::Many if self.refused_busy(idx, id, spec, argv) => {}
                Route::Many => match spec.cross {
                    Some(cross) => {
                        self.flush_batches(idx);
                        let mut ctx = ConnCtx {
                            w: self,
                            conn: idx,
                            deferred: None,
                        };
                        let res = cross(&mut ctx, std::mem::take(argv));
                        if ctx.deferred.is_none() {
                            let reply = commands::finish(&mut self.eng.shard, id, res);
                            self.conns[idx].push_reply(&reply);
                        }
                    }
                    None => self.conns[idx].push_reply(&Reply::error(
                        "CROSSSLOT Keys in request don't hash to the same slot",
                    )),
                },
            },
            Exec::Script(f) => {
                let route = if self.eng.nshards > 1
                    && crate::scripting::wants_all_shards(spec.name, argv)
                {
                    Route::Many
                } else {
                    commands::route(&spec.keys, argv, self.eng.nshards)
                };
                let s = match route {
                    Route::NoKeys => self.eng.id,
                    Route::One(s) => s,
                    Route::Many => {
                        self.run_cross(idx, id, spec, argv);
                        return;
                    }
                };
                if s == self.eng.id && self.eng.lock.is_none() {
                    self.flush_batches(idx);
                    let r = crate::scripting::host::run(
                        self,
                        id,
                        f,
                        db,
                        resp,
                        argv,
                        Some(idx),
                        crate::scripting::host::Held::Own,
                    );
                    if self.eng.shard.blocked.has_ready() {
                        coord::block::serve_ready(&mut self.eng);
                    }
                    if let Some(c) = self.conns.get_mut(idx) {
                        c.push_reply(&r);
                    }
                } else {
                    // Another shard's keys, or ours while a transaction holds them: the
                    // owner runs it when it may (`exec_batch`).
                    self.batch(idx, s, id, db, argv);
                }
            }
            Exec::Multi(m) => match commands::route(&spec.keys, argv, self.eng.nshards) {
                Route::One(s) => self.run_or_batch(idx, s, id, m.sub, db, resp, argv),
                Route::NoKeys => {
                    self.run_here(idx, id, m.sub, db, resp, argv);
                }
                Route::Many if self.refused_busy(idx, id, spec, argv) => {}
                Route::Many => {
                    self.flush_batches(idx);
                    let mut ctx = ConnCtx {
                        w: self,
                        conn: idx,
                        deferred: None,
                    };
                    coord::fanout::multi_key(&mut ctx, id, m, std::mem::take(argv));
                }
            },
        }
    }

    /// A key or script command whose keys span shards: its `cross` handler coordinates.
    fn run_cross(
        &mut self,
        idx: usize,
        id: usize,
        spec: &crate::commands::table::CommandSpec,
        argv: &mut Vec<Bytes>,
    ) {
        self.flush_batches(idx);
        let Some(cross) = spec.cross else {
            self.conns[idx].push_reply(&Reply::error(
                "CROSSSLOT Keys in request don't hash to the same slot",
            ));
            return;
        };
        let mut ctx = ConnCtx {
            w: self,
            conn: idx,
            deferred: None,
        };
        let res = cross(&mut ctx, std::mem::take(argv));
        if ctx.deferred.is_none() {
            let reply = commands::finish(&mut self.eng.shard, id, res);
            if let Some(c) = self.conns.get_mut(idx) {
                c.push_reply(&reply);
            }
        }
    }

    /// Replies with an error to a command that did not run, counting it as rejected.
    /// The slow path of the per-command access check: refreshes the connection's user after
    /// an ACL change, then applies authentication and the user's permissions (-NOPERM, with
    /// an ACL LOG entry, as Redis's processCommand). False: refused, reply queued.
    fn acl_gate(&mut self, idx: usize, argv: &[Bytes]) -> bool {
        let epoch = crate::acl::epoch();
        let c = &mut self.conns[idx].client;
        if c.acl_epoch != epoch {
            match crate::acl::user(&c.user.name) {
                Some(u) => c.user = u,
                None => {
                    // The user was deleted: back to the default user, logged out.
                    c.user = crate::acl::user("default")
                        .unwrap_or_else(|| std::sync::Arc::new(crate::acl::User::default_user()));
                    c.authed = !self.eng.shared.tun.auth_required.load(Ordering::Relaxed);
                }
            }
            c.restricted = !c.user.unrestricted();
            c.acl_epoch = epoch;
        }
        if !c.authed {
            return self.auth_allows(idx, argv);
        }
        if !c.restricted {
            return true;
        }
        let name = argv.first().map(|b| b.as_ref()).unwrap_or_default();
        let Some((id, spec)) = table().lookup(name) else {
            return true;
        };
        if spec.has(crate::commands::table::NOAUTH) && spec.name != "hello" {
            return true;
        }
        let Some((text, reason, object)) = crate::acl::denied(&c.user, id, spec, argv) else {
            return true;
        };
        let context = if coord::tx::in_multi(&self.conns[idx]) {
            "multi"
        } else {
            "toplevel"
        };
        let info = crate::commands::client::client_line(&self.conns[idx]);
        crate::acl::log_denial(
            reason,
            context,
            object,
            self.conns[idx].client.user.name.clone(),
            info,
        );
        let e = if spec.name == "exec" {
            coord::tx::discard(self, idx);
            crate::error::exec_abort_because(&text)
        } else {
            if let Some(t) = self.conns[idx].tx.as_mut() {
                t.aborted = true;
            }
            text
        };
        commands::count_error(&mut self.eng.shard, &e);
        self.conns[idx].push_reply(&Reply::Error(e));
        false
    }

    /// A client that has not authenticated may only run NOAUTH commands (AUTH, HELLO, QUIT,
    /// RESET); anything else gets -NOAUTH (EXEC: EXECABORT, and a MULTI in progress is
    /// flagged), as Redis's processCommand.
    fn auth_allows(&mut self, idx: usize, argv: &[Bytes]) -> bool {
        let name = argv.first().map(|b| b.as_ref()).unwrap_or_default();
        let found = table().lookup(name);
        if found.is_some_and(|(_, s)| s.has(crate::commands::table::NOAUTH)) {
            return true;
        }
        let is_exec = found.is_some_and(|(_, s)| s.name == "exec");
        let e = if is_exec {
            coord::tx::discard(self, idx);
            crate::error::exec_abort_because(crate::error::NOAUTH)
        } else {
            if let Some(t) = self.conns[idx].tx.as_mut() {
                t.aborted = true;
            }
            crate::error::NOAUTH.to_string()
        };
        commands::count_error(&mut self.eng.shard, &e);
        self.conns[idx].push_reply(&Reply::Error(e));
        false
    }

    fn reject(&mut self, idx: usize, id: Option<usize>, e: CmdError) {
        if let Some(st) = id.and_then(|id| self.eng.shard.cmd_stats.get_mut(id)) {
            st.rejected += 1;
        }
        let e = e.to_string();
        commands::count_error(&mut self.eng.shard, &e);
        self.conns[idx].push_reply(&Reply::Error(e));
    }

    #[allow(clippy::too_many_arguments)]
    fn run_or_batch(
        &mut self,
        idx: usize,
        s: usize,
        id: usize,
        f: crate::commands::table::KeyFn,
        db: usize,
        resp: u8,
        argv: &mut Vec<Bytes>,
    ) {
        if s == self.eng.id && self.eng.lock.is_none() {
            self.run_here(idx, id, f, db, resp, argv);
            return;
        }
        self.batch(idx, s, id, db, argv);
    }

    /// Adds a command to this connection's batch for shard `s` (sent by `flush_batches`).
    #[inline]
    fn batch(&mut self, idx: usize, s: usize, id: usize, db: usize, argv: &mut Vec<Bytes>) {
        let no_touch = self.conns[idx].client.no_touch;
        let master = self.conns[idx].master;
        let seq = self.conns[idx].reserve();
        if self.batches[s].is_empty() {
            self.batch_targets.push(s);
        }
        let batch = &mut self.batches[s];
        let start = batch.args.len();
        // Moving the arguments out keeps `argv`'s capacity for the next command.
        batch.args.append(argv);
        let end = batch.args.len();
        batch.cmds.push(BatchCmd {
            seq,
            id,
            db,
            start,
            end,
            no_touch,
            master,
        });
    }

    /// Runs a key command on this shard for connection `idx` (its NO-TOUCH mode applies).
    /// A blocking command (outside MULTI): `coord::block::start` replies now or waits.
    fn start_blocking(
        &mut self,
        idx: usize,
        id: usize,
        f: crate::commands::table::CrossFn,
        argv: &mut Vec<Bytes>,
    ) {
        self.flush_batches(idx);
        let start = clock::ticks();
        let mut ctx = ConnCtx {
            w: self,
            conn: idx,
            deferred: None,
        };
        // Kept for the slow log (blocking commands are not on the hot path).
        let shown = argv.clone();
        let res = f(&mut ctx, std::mem::take(argv));
        if ctx.deferred.is_none() {
            let reply = commands::finish(&mut self.eng.shard, id, res);
            if let Some(c) = self.conns.get_mut(idx) {
                c.push_reply(&reply);
            }
        } else {
            self.eng.shard.commands_processed += 1;
            if let Some(st) = self.eng.shard.cmd_stats.get_mut(id) {
                st.calls += 1;
            }
        }
        let nanos = clock::to_nanos(clock::ticks().wrapping_sub(start));
        if let Some(st) = self.eng.shard.cmd_stats.get_mut(id) {
            st.nanos += nanos;
        }
        self.eng.shard.observe(id, &shown, nanos);
        if !self.eng.shard.slow.pending.is_empty() {
            self.slow_commit(idx);
        }
    }

    /// Commits this shard's pending slow log entries as made by connection `idx`.
    #[cold]
    pub fn slow_commit(&mut self, idx: usize) {
        let pending = std::mem::take(&mut self.eng.shard.slow.pending);
        match self.conns.get(idx) {
            Some(c) => {
                let name = c.client.name.clone().unwrap_or_default();
                self.eng.shard.slow.commit(pending, &c.client.addr, &name);
            }
            None => self.eng.shard.slow.commit(pending, "", b""),
        }
    }

    /// Commits slow log entries made elsewhere for the connection with `token`.
    #[cold]
    fn slow_commit_token(&mut self, token: u64, pending: Vec<crate::shard::slowlog::Pending>) {
        let prev = std::mem::replace(&mut self.eng.shard.slow.pending, pending);
        match self.conn_by_token(token) {
            Some(idx) => self.slow_commit(idx),
            None => {
                let p = std::mem::take(&mut self.eng.shard.slow.pending);
                self.eng.shard.slow.commit(p, "", b"");
            }
        }
        self.eng.shard.slow.pending = prev;
    }

    /// Runs a keyed command on this shard and answers the connection.
    fn run_here(
        &mut self,
        idx: usize,
        id: usize,
        f: crate::commands::table::KeyFn,
        db: usize,
        resp: u8,
        argv: &[Bytes],
    ) {
        self.eng.shard.no_touch = self.conns.get(idx).is_some_and(|c| c.client.no_touch);
        // The reply goes to the connection right below: with nothing pending ahead of it, a
        // handler may encode straight into the output instead.
        let master = self.conns.get(idx).is_some_and(|c| c.master);
        if master {
            self.eng.shard.db_mut(db).master_view = true;
        }
        if let Some(t) = self.eng.shard.tracking.as_mut() {
            t.writer = self.conns.get(idx).map_or(0, |c| c.client.id);
        }
        let out = self
            .conns
            .get_mut(idx)
            .filter(|c| c.slots.is_empty() && !c.mute)
            .map(|c| &mut c.out);
        let r = commands::run_key(&mut self.eng.shard, id, f, db, resp, argv, out);
        if !self.eng.shard.slow.pending.is_empty() {
            self.slow_commit(idx);
        }
        self.eng.shard.no_touch = false;
        if master {
            self.eng.shard.db_mut(db).master_view = false;
        }
        // A push may have fed blocked clients: they are served before the next command.
        if self.eng.shard.blocked.has_ready() {
            coord::block::serve_ready(&mut self.eng);
        }
        if let Some(c) = self.conns.get_mut(idx) {
            c.push_reply(&r);
        }
        // CLIENT TRACKING: invalidations this write caused follow its reply (Redis 7.0's
        // order for a client that changes a key it tracks).
        if let Some(t) = self.eng.shard.tracking.as_mut() {
            t.writer = 0;
            if !t.out.is_empty() {
                super::tracking::deliver(self, false);
            }
        }
    }

    /// Takes a connected socket as the master link (`repl`): a connection flagged
    /// `master`, authenticated, counted as a client. Returns its index.
    pub fn adopt_master(&mut self, fd: RawFd, tls: Option<Box<crate::tls::Session>>) -> usize {
        self.eng.shared.clients.fetch_add(1, Ordering::AcqRel);
        sys::setup_conn(fd, self.eng.shared.cfg.tcp_nodelay);
        let (peer, local) = sys::addrs(fd);
        let show = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let id = self
            .eng
            .shared
            .next_client_id
            .fetch_add(1, Ordering::Relaxed);
        let gen = self.next_gen;
        self.next_gen = (self.next_gen + 1) & 0xFF_FFFF;
        let mut client = ClientInfo::new(id, show(peer), show(local));
        client.authed = true;
        let mut conn = Conn::new(fd, gen, client);
        conn.master = true;
        conn.tls = tls;
        self.conns.insert(conn)
    }

    /// Runs a connection's input again after a hold (`repl::release_hold`).
    pub fn resume_input(&mut self, idx: usize) {
        self.process_input(idx);
        self.arm_recv(idx);
    }

    /// Runs `data` (bytes the link thread read past the RDB) as the master link's input,
    /// then starts receiving on it.
    pub fn feed_master(&mut self, idx: usize, data: &[u8]) {
        if !data.is_empty() {
            if let Some(r) = self.conns.get_mut(idx).and_then(|c| c.rbuf.as_mut()) {
                r.extend_from_slice(data);
            }
            self.repl.received += data.len() as u64;
            crate::repl::capture(self, idx, data.len());
            self.process_input(idx);
            crate::repl::after_input(self);
        }
        self.mark_dirty(idx);
        self.arm_recv(idx);
    }

    // ----- CLIENT PAUSE ---------------------------------------------------------------------

    /// Reads the server-wide pause (`server::pause`); when it changed, freezes or thaws key
    /// expiry, and once it is over runs the commands it held.
    pub fn refresh_pause(&mut self) {
        // The common case: no pause now or before, one atomic load and no clock read.
        if self.eng.pause == super::pause::NONE
            && self.postponed.is_empty()
            && !super::pause::maybe()
        {
            return;
        }
        let (mode, end) = super::pause::current(self.clock.ms(Instant::now()));
        if mode != self.eng.pause {
            let frozen = mode != super::pause::NONE;
            self.eng
                .shard
                .dbs
                .iter_mut()
                .for_each(|d| d.frozen = frozen);
        }
        self.eng.pause = mode;
        self.pause_end = end;
        if mode == super::pause::NONE && !self.postponed.is_empty() {
            for idx in std::mem::take(&mut self.postponed) {
                if self.conns.get(idx).is_some_and(|c| c.postponed.is_some()) {
                    self.process_input(idx);
                    self.arm_recv(idx);
                }
            }
        }
    }

    /// Holds the command if the pause in force holds it (replication links never):
    /// the client stops here until the pause ends. True when held.
    fn pause_holds(&mut self, idx: usize, argv: &mut Vec<Bytes>) -> bool {
        let Some(c) = self.conns.get(idx) else {
            return false;
        };
        if c.master && self.repl.hold {
            // A sub-replica's full sync takes its cut between the master's commands
            // (`repl::master::relay_cut`); a MULTI block runs to its EXEC first.
            if c.tx.as_ref().is_some_and(|t| t.queue.is_some()) {
                return false;
            }
            if let Some(c) = self.conns.get_mut(idx) {
                c.postponed = Some(std::mem::take(argv));
            }
            self.flush_batches(idx);
            return true;
        }
        if c.master || crate::repl::master::is_replica(c) {
            return false;
        }
        let t = table();
        let name = argv.first().map(|b| b.as_ref()).unwrap_or_default();
        let Some((_, spec)) = t.lookup(name) else {
            return false;
        };
        // Commands Redis rejects before its pause check (arity) are answered at once.
        if commands::check_arity(spec, argv).is_err() {
            return false;
        }
        let queued =
            c.tx.as_ref()
                .and_then(|t| t.queue.as_ref())
                .map(|q| q.iter().map(|q| q.id).collect::<Vec<_>>())
                .unwrap_or_default();
        if !super::pause::holds(self.eng.pause, spec, queued.into_iter()) {
            return false;
        }
        if let Some(c) = self.conns.get_mut(idx) {
            c.postponed = Some(std::mem::take(argv));
        }
        self.flush_batches(idx);
        self.postponed.push(idx);
        let at = self.eng.pass_now
            + Duration::from_millis(self.pause_end.saturating_sub(self.eng.shard.now_ms).max(1));
        self.timers.add(at, TimerKind::PauseEnd);
        true
    }

    /// Memory the connection side holds that is not data: client buffers and scratch
    /// (see `Engine::memory_check`).
    pub fn front_bytes(&self) -> u64 {
        self.clients_bytes + self.scratch_bytes()
    }

    /// `Engine::publish_mem` with this shard's connection buffers as of now.
    pub fn publish_mem(&mut self) {
        self.eng.front_bytes = self.front_bytes();
        self.eng.publish_mem();
    }

    /// Runs `f` on the connection side of every shard (at once, lock or not) and hands the
    /// results, in shard order, to `done` here.
    pub fn on_all_fronts<T: Send + 'static>(
        &mut self,
        f: impl Fn(&mut Worker) -> T + Send + Clone + 'static,
        done: impl FnOnce(&mut Engine, Vec<T>) + 'static,
    ) {
        let targets = (0..self.eng.nshards)
            .map(|s| {
                let f = f.clone();
                let job: FrontFn<T> = Box::new(move |tw| f(tw));
                (s, job)
            })
            .collect();
        self.fan_out_fronts(targets, done);
    }

    /// Runs each job on the connection side of its shard (at once, lock or not) and hands
    /// the results, in `targets` order, to `done` here.
    pub fn fan_out_fronts<T: Send + 'static>(
        &mut self,
        targets: Vec<(usize, FrontFn<T>)>,
        done: impl FnOnce(&mut Engine, Vec<T>) + 'static,
    ) {
        let gid = self.eng.gather_start(targets.len(), done);
        let origin = self.eng.id;
        for (i, (s, f)) in targets.into_iter().enumerate() {
            self.eng.post(
                s,
                front(move |tw: &mut Worker| {
                    let r = f(tw);
                    tw.eng.gather_reply(origin, gid, i, Box::new(r));
                }),
            );
        }
    }

    /// `on_all_fronts`, with `done` run on the connection side here too.
    pub fn on_all_fronts_then<T: Send + 'static>(
        &mut self,
        f: impl Fn(&mut Worker) -> T + Send + Clone + 'static,
        done: impl FnOnce(&mut Worker, Vec<T>) + Send + 'static,
    ) {
        self.on_all_fronts(f, move |e: &mut Engine, v: Vec<T>| {
            let me = e.id;
            e.post(me, front(move |w: &mut Worker| done(w, v)));
        });
    }

    /// `Engine::memory_check` with this shard's connection buffers left out.
    pub fn memory_check(&mut self, denyoom: bool) -> Result<(), CmdError> {
        // Without maxmemory there is nothing to check (and no buffer sums to take per
        // command: batches from other shards call this for each of theirs).
        if self.eng.shared.tun.maxmemory.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        self.eng.front_bytes = self.front_bytes();
        self.eng.memory_check(denyoom)
    }

    /// Sends this connection's commands for other shards: one message per shard.
    fn flush_batches(&mut self, idx: usize) {
        if self.batch_targets.is_empty() {
            return;
        }
        let (token, resp, client) = match self.conns.get(idx) {
            Some(c) => (token_of(idx, c.gen), c.client.resp, c.client.id),
            None => (u64::MAX, 2, 0),
        };
        let origin = self.eng.id;
        let mut targets = std::mem::take(&mut self.batch_targets);
        if crate::scripting::some_shard_busy() {
            targets.retain(|&s| !self.refuse_busy(idx, s));
        }
        if let Some(c) = self.conns.get_mut(idx) {
            c.batches_out += targets.len() as u32;
        }
        for &s in &targets {
            if s != origin {
                self.eng.awaiting += 1;
            }
            let batch = std::mem::take(&mut self.batches[s]);
            self.eng.post(
                s,
                Msg::Batch(Box::new(BatchMsg {
                    origin,
                    token,
                    client,
                    resp,
                    batch,
                })),
            );
        }
        targets.clear();
        self.batch_targets = targets;
    }

    /// A multi-shard key command with a key on a shard a busy script holds gets `-BUSY`
    /// now instead of waiting for the script's end. True if it did (one relaxed load while
    /// no script is busy).
    fn refused_busy(
        &mut self,
        idx: usize,
        id: usize,
        spec: &crate::commands::table::CommandSpec,
        argv: &[Bytes],
    ) -> bool {
        if !crate::scripting::some_shard_busy() {
            return false;
        }
        let text = spec
            .keys
            .key_positions(argv)
            .filter_map(|i| argv.get(i))
            .find_map(|k| crate::scripting::busy_reply(shard_of(k, self.eng.nshards)));
        if let Some(text) = text {
            self.reject(idx, Some(id), CmdError::coded(text));
        }
        text.is_some()
    }

    /// While a script past the busy threshold holds shard `s`, answers this connection's
    /// batch for it with `-BUSY` (in request order) instead of sending it. True if it did.
    fn refuse_busy(&mut self, idx: usize, s: usize) -> bool {
        let Some(text) = crate::scripting::busy_reply(s) else {
            return false;
        };
        let batch = std::mem::take(&mut self.batches[s]);
        let mut v = Vec::new();
        Reply::error(text).encode(2, &mut v);
        let bytes = Bytes::from(v);
        for c in &batch.cmds {
            if let Some(st) = self.eng.shard.cmd_stats.get_mut(c.id) {
                st.rejected += 1;
            }
            commands::count_error(&mut self.eng.shard, text);
            if self.conns.contains(idx) {
                self.fill(idx, c.seq, bytes.clone());
            }
        }
        true
    }

    // ----- scripts -----------------------------------------------------------------------

    /// A script running on this shard is past the busy threshold (called from its VM's
    /// hook, between two Lua instructions): serves this shard's sockets as Redis serves
    /// clients while a script is busy. New connections are accepted; each command read gets
    /// `-BUSY`, except SCRIPT KILL / FUNCTION KILL (answered here) and SHUTDOWN NOSAVE
    /// (stops the server, and so the script); a command Redis allows while busy (AUTH,
    /// HELLO, MULTI...) pauses its connection until the script ends. Replies go out in
    /// request order behind the connection's earlier ones. Nothing here touches keys, runs
    /// other shards' jobs or closes a connection (what would close one waits in
    /// `after_busy`), and the connections whose input is being parsed up the stack
    /// (`in_input`, `caller`) are only read into their buffers.
    pub fn busy_pump(&mut self, caller: Option<usize>, function: bool) {
        let _ = self.ring.submit_and_wait(false, None);
        let mut comps = Vec::new();
        self.ring.drain_nested(&mut comps);
        let wake_fd = self.eng.mesh.waker().fd();
        for c in comps {
            let token = c.tag & ((1 << 56) - 1);
            match c.tag >> 56 {
                TAG_RECV => self.busy_recv(token, c, caller, function),
                TAG_SEND => {
                    let keep = c.result < 0
                        || self
                            .conn_by_token(token)
                            .and_then(|i| self.conns.get(i))
                            .is_none_or(|conn| conn.closing);
                    if keep {
                        self.after_busy.push(c);
                    } else {
                        self.on_send(token, c);
                    }
                }
                _ => self.on_completion(c, wake_fd),
            }
        }
        // Batches other shards sent here: -BUSY; any other message waits for the script.
        let text = if function {
            crate::scripting::BUSY_FUNCTION
        } else {
            crate::scripting::BUSY_EVAL
        };
        let inbox = &mut self.eng.inbox;
        self.eng.mesh.recv_all(|_, m| inbox.push_back(m));
        for m in std::mem::take(&mut self.eng.inbox) {
            match m {
                Msg::Batch(b) => refuse_batch(self, *b, text),
                other => self.eng.inbox.push_back(other),
            }
        }
        self.eng.mesh.flush();
        // One send per connection that has output, as `flush_dirty` (closing ones wait).
        let dirty = std::mem::take(&mut self.dirty);
        let mut keep = Vec::new();
        for idx in dirty {
            let Some(conn) = self.conns.get_mut(idx) else {
                continue;
            };
            if conn.closing || conn.master || conn.sending || conn.out.is_empty() {
                keep.push(idx);
                continue;
            }
            conn.dirty = false;
            conn.held = false;
            let next = std::mem::take(&mut conn.spare);
            let buf = std::mem::replace(&mut conn.out, next);
            conn.sending = true;
            conn.inflight = buf.len();
            let t = tag(TAG_SEND, token_of(idx, conn.gen));
            self.ring.send(conn.fd, buf, 0, t);
        }
        keep.append(&mut self.dirty);
        self.dirty = keep;
        let _ = self.ring.submit_and_wait(false, None);
    }

    /// A receive completion during a busy script: the bytes go to the connection's buffer;
    /// its commands are answered by `busy_input` when nothing up the stack parses it.
    fn busy_recv(&mut self, token: u64, c: Completion, caller: Option<usize>, function: bool) {
        let Some(idx) = self.conn_by_token(token) else {
            return;
        };
        if c.result <= 0 {
            if c.result == -libc::ENOBUFS {
                // The pool ran dry (it is not refilled while the script runs).
                if let Some(conn) = self.conns.get_mut(idx) {
                    if !c.more && matches!(conn.recv, RecvState::Multi(_)) {
                        conn.recv = RecvState::Idle;
                    }
                    if conn_readable(conn) && conn.recv == RecvState::Idle {
                        self.arm_single(idx, false);
                    }
                }
                return;
            }
            // The end of the stream or an error: the loop handles it after the script.
            self.after_busy.push(c);
            return;
        }
        let min_free = self.eng.shared.cfg.recv_buffer;
        let conn = &mut self.conns[idx];
        match c.buf {
            OpBuf::Recv(b) => {
                conn.rbuf = Some(b);
                conn.recv = RecvState::Idle;
            }
            OpBuf::Provided(p) => {
                if let Some(data) = self.ring.provided(&p) {
                    let rbuf = conn.rbuf.get_or_insert_with(BytesMut::new);
                    if rbuf.capacity() - rbuf.len() < data.len() {
                        rbuf.reserve(data.len().max(min_free));
                    }
                    rbuf.extend_from_slice(data);
                }
            }
            _ => {}
        }
        if !c.more && matches!(conn.recv, RecvState::Multi(_) | RecvState::Cancelling) {
            conn.recv = RecvState::Idle;
        }
        self.eng.net.net_input_bytes += c.result as u64;
        conn.client.last_active = self.eng.pass_now;
        conn.note_input();
        let parsed_above = conn.in_input > 0 || caller == Some(idx);
        if !parsed_above {
            self.busy_input(idx, function);
        }
        if let Some(conn) = self.conns.get_mut(idx) {
            if conn.recv == RecvState::Idle {
                self.arm_recv(idx);
            }
        }
    }

    /// Answers the complete commands in a connection's buffer while a script is busy.
    fn busy_input(&mut self, idx: usize, function: bool) {
        let max_bulk = self
            .eng
            .shared
            .tun
            .proto_max_bulk_len
            .load(Ordering::Relaxed) as usize;
        let token = token_of(idx, self.conns[idx].gen);
        if self.resume.contains(&token) {
            // Paused at a command that waits for the script's end.
            return;
        }
        let mut args = Vec::new();
        loop {
            let Some(conn) = self.conns.get_mut(idx) else {
                return;
            };
            if conn.closing
                || conn.master
                || conn.blocked_on.is_some()
                || conn.waiting.is_some()
                || conn.slots.len() > MAX_PENDING_SLOTS
            {
                break;
            }
            let Some(rbuf) = conn.rbuf.as_mut() else {
                break;
            };
            let n = match parser::parse_partial(rbuf, max_bulk, &mut args, &mut conn.partial) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    conn.push_reply(&Reply::Error(e.to_string()));
                    conn.closing = true;
                    break;
                }
            };
            let chunk = rbuf
                .get(..n)
                .map(Bytes::copy_from_slice)
                .unwrap_or_default();
            let argv: Vec<Bytes> = args
                .drain(..)
                .map(|a| match a {
                    Arg::Range(s, e) => chunk.slice(s..e),
                    Arg::Owned(v) => Bytes::from(v),
                })
                .collect();
            let answer = if argv.is_empty() {
                Some(None)
            } else {
                busy_answer(conn, &argv, function)
            };
            let Some(answer) = answer else {
                // Runs once the script has ended (`after_script`).
                self.resume.push(token);
                break;
            };
            if let Some(rbuf) = conn.rbuf.as_mut() {
                let _ = rbuf.split_to(n);
            }
            match answer {
                Some(r) => {
                    conn.push_reply(&r);
                    if let Reply::Error(e) = &r {
                        commands::count_error(&mut self.eng.shard, e);
                    }
                }
                None if argv.is_empty() => {}
                None => {
                    // SHUTDOWN NOSAVE: the script stops at its next hook, then the loop.
                    self.eng.request_shutdown();
                }
            }
        }
        self.mark_dirty(idx);
    }

    /// What the busy pump left: completions it did not handle, and connections whose
    /// input waits for the script's end.
    fn after_script(&mut self) {
        let wake_fd = self.eng.mesh.waker().fd();
        for c in std::mem::take(&mut self.after_busy) {
            self.on_completion(c, wake_fd);
        }
        for token in std::mem::take(&mut self.resume) {
            if let Some(idx) = self.conn_by_token(token) {
                self.process_input(idx);
                self.arm_recv(idx);
            }
        }
    }

    // ----- deferred replies --------------------------------------------------------------

    /// Reserves a reply slot for connection `idx` and pauses its parsing until filled.
    pub fn defer(&mut self, idx: usize) -> Ticket {
        if let Some(t) = coord::tx::capture_ticket(self) {
            return t;
        }
        let conn = &mut self.conns[idx];
        let seq = conn.reserve();
        conn.blocked_on = Some(seq);
        Ticket {
            shard: self.eng.id,
            token: token_of(idx, conn.gen),
            seq,
        }
    }

    /// Reserves a reply slot for connection `idx` without pausing it: later commands run
    /// at once, and their replies wait behind this one.
    pub fn reserve(&mut self, idx: usize) -> Ticket {
        // Inside EXEC the reply belongs to the transaction, not to a slot of its own:
        // a slot here would never be filled in order and the EXEC would wait forever.
        if let Some(t) = coord::tx::capture_ticket(self) {
            return t;
        }
        let conn = &mut self.conns[idx];
        let seq = conn.reserve();
        Ticket {
            shard: self.eng.id,
            token: token_of(idx, conn.gen),
            seq,
        }
    }

    pub fn fill(&mut self, idx: usize, seq: u64, bytes: Bytes) {
        let conn = &mut self.conns[idx];
        let was_blocked = conn.blocked_on.is_some();
        conn.fill(seq, bytes);
        let unblocked = was_blocked && conn.blocked_on.is_none();
        if conn.acks.is_some() {
            // A held write's reply arrived: its acknowledgement wait can start.
            crate::repl::master::start_barriers(self, idx);
        }
        self.mark_dirty(idx);
        if unblocked {
            // Resume the commands that arrived behind the blocking one.
            self.process_input(idx);
            self.arm_recv(idx);
        }
    }

    /// A batch's replies arrived (`Msg::Filled`).
    fn filled(&mut self, f: Filled) {
        if let Some(p) = f.slow {
            self.slow_commit_token(f.token, p);
        }
        self.fill_batch(f.token, f.buf, f.marks, f.remote)
    }

    fn fill_batch(&mut self, token: u64, buf: Bytes, marks: Vec<(u64, usize)>, remote: bool) {
        if remote {
            self.eng.awaiting = self.eng.awaiting.saturating_sub(1);
        }
        let Some(idx) = self.conn_by_token(token) else {
            return;
        };
        let c = &mut self.conns[idx];
        c.batches_out = c.batches_out.saturating_sub(1);
        let mut start = 0;
        for (seq, end) in marks {
            let part = buf.slice(start..end);
            start = end;
            self.fill(idx, seq, part);
            if !self.conns.contains(idx) {
                return;
            }
        }
    }

    // ----- messages ----------------------------------------------------------------------

    fn run_messages(&mut self) {
        let inbox = &mut self.eng.inbox;
        self.eng.mesh.recv_all(|_, m| inbox.push_back(m));
        while let Some(m) = self.eng.inbox.pop_front() {
            self.handle_msg(m);
        }
        // Local jobs may queue more local jobs; bound the rounds so the loop keeps turning.
        for _ in 0..64 {
            let Some(m) = self.eng.local.pop_front() else {
                break;
            };
            self.handle_msg(m);
        }
        self.run_parked();
    }

    fn handle_msg(&mut self, m: Msg) {
        match m {
            Msg::Work(j) => {
                if self.eng.lock.is_some() {
                    self.eng.parked.push_back(Msg::Work(j));
                } else {
                    self.run_job(j);
                }
            }
            Msg::Control(j) => {
                self.run_job(j);
                self.run_parked();
            }
            Msg::Filled(f) => self.filled(*f),
            Msg::Front(j) => {
                j(self);
                crate::shard::journal::flush(&mut self.eng.shard);
                self.drain_outbox();
                self.run_parked();
            }
            Msg::Batch(b) => {
                if self.eng.lock.is_none() {
                    run_batch(self, *b);
                    crate::shard::journal::flush(&mut self.eng.shard);
                } else if let Some(text) = crate::scripting::busy_reply(self.eng.id) {
                    // Held by a script past the busy threshold.
                    refuse_batch(self, *b, text);
                } else {
                    self.eng.parked.push_back(Msg::Batch(b));
                }
            }
        }
    }

    /// Runs one job; what it changed is journaled before anything else runs.
    #[inline]
    fn run_job(&mut self, j: Job) {
        j(&mut self.eng);
        crate::shard::journal::flush(&mut self.eng.shard);
        self.drain_outbox();
    }

    /// Delivers the replies jobs and handlers left in the engine's outbox
    /// (`Engine::complete`): to a running EXEC, or into the connection's reply slot.
    pub fn drain_outbox(&mut self) {
        while !self.eng.outbox.is_empty() {
            let mut out = std::mem::take(&mut self.eng.outbox);
            for o in out.drain(..) {
                match o {
                    Out::Reply(t, reply) => self.deliver(t, reply),
                    Out::Waiting { conn, wid, on } => {
                        if let Some(c) = self.conns.get_mut(conn) {
                            if on {
                                c.waiting = Some(wid);
                            } else if c.waiting == Some(wid) {
                                c.waiting = None;
                            }
                        }
                    }
                }
            }
            if self.eng.outbox.is_empty() {
                // Keep the allocation for the next pass.
                self.eng.outbox = out;
            }
        }
    }

    fn deliver(&mut self, t: Ticket, reply: Reply) {
        if coord::tx::is_capture(&t) {
            coord::tx::captured(self, t, reply);
            return;
        }
        let Some(idx) = self.conn_by_token(t.token) else {
            return;
        };
        let mut v = Vec::new();
        reply.encode(self.conns[idx].client.resp, &mut v);
        self.fill(idx, t.seq, Bytes::from(v));
    }

    fn run_parked(&mut self) {
        while self.eng.lock.is_none() {
            match self.eng.parked.pop_front() {
                Some(Msg::Work(j)) | Some(Msg::Control(j)) => self.run_job(j),
                Some(Msg::Batch(b)) => {
                    run_batch(self, *b);
                    crate::shard::journal::flush(&mut self.eng.shard);
                }
                // Never parked (they run at once).
                Some(m @ (Msg::Filled(_) | Msg::Front(_))) => self.handle_msg(m),
                None => break,
            }
        }
    }

    /// A script holding this shard went past the busy threshold: the batches waiting for
    /// the lock get `-BUSY` now (other parked work keeps its place).
    pub fn refuse_parked_batches(&mut self, text: &str) {
        let parked = std::mem::take(&mut self.eng.parked);
        for m in parked {
            match m {
                Msg::Batch(b) => refuse_batch(self, *b, text),
                other => self.eng.parked.push_back(other),
            }
        }
    }

    // ----- timers ------------------------------------------------------------------------

    /// Runs `f` on this shard's connection side at `at` (a subsystem's own timer: the
    /// replication hub's, for one). The engine's timers are `Engine::after`.
    pub fn after(&mut self, at: Instant, f: impl FnOnce(&mut Worker) + 'static) {
        self.timers.add(at, TimerKind::Front(Box::new(f)));
    }

    fn on_timer(&mut self, t: TimerKind, now: Instant) {
        match t {
            TimerKind::ActiveExpire => {
                if self.eng.id == 0 {
                    // Samples live heap bytes so INFO's used_memory_peak sees peaks between calls.
                    crate::runtime::alloc::used();
                }
                self.trim_scratch();
                self.clients_bytes = self
                    .conns
                    .iter()
                    .map(|(_, c)| c.buffer_bytes() as u64)
                    .sum();
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
                crate::persist::cron::tick(&mut self.eng);
                self.timers
                    .add(now + Duration::from_millis(100), TimerKind::ActiveExpire);
            }
            TimerKind::Front(f) => {
                f(self);
                self.drain_outbox();
            }
            TimerKind::PauseEnd => self.refresh_pause(),
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

/// Warms the table slots, then the entries, of a batch's single-key commands (as the
/// look-ahead does for local pipelines), so running them in order finds them in cache.
fn prefetch_batch(tw: &mut Worker, batch: &Batch) {
    const MAX: usize = 32;
    let t = table();
    let mut hashes = [(0usize, 0u32); MAX];
    let mut m = 0;
    for c in batch.cmds.iter().take(MAX) {
        let Some(spec) = t.get(c.id) else { continue };
        if !matches!(spec.exec, Exec::Key(_)) || spec.keys.first <= 0 || spec.keys.numkeys != 0 {
            continue;
        }
        let Some(k) = batch.args.get(c.start + spec.keys.first as usize) else {
            continue;
        };
        if c.start + (spec.keys.first as usize) >= c.end {
            continue;
        }
        if let Some(slot) = hashes.get_mut(m) {
            *slot = (c.db, tw.eng.shard.db_mut(c.db).prefetch_slot(k));
            m += 1;
        }
    }
    for &(db, h) in hashes.iter().take(m) {
        tw.eng.shard.db_mut(db).prefetch_entry(h);
    }
}

/// Runs a batch of commands on their owner shard and ships the encoded replies back.
fn exec_batch(tw: &mut Worker, origin: usize, token: u64, client: u64, resp: u8, batch: Batch) {
    let t = table();
    let mut buf = Vec::with_capacity(batch.cmds.len() * 16);
    let mut marks = Vec::with_capacity(batch.cmds.len());
    if batch.cmds.len() > 1 {
        prefetch_batch(tw, &batch);
    }
    for c in &batch.cmds {
        let argv = batch.args.get(c.start..c.end).unwrap_or_default();
        let spec = t.get(c.id);
        // The owner of the keys evicts (and refuses) for the commands it runs.
        let denyoom = !c.master && spec.is_some_and(|s| s.has(DENYOOM));
        if let Err(e) = tw.memory_check(denyoom) {
            if let Some(st) = tw.eng.shard.cmd_stats.get_mut(c.id) {
                st.rejected += 1;
            }
            let e = e.to_string();
            commands::count_error(&mut tw.eng.shard, &e);
            Reply::Error(e).encode(resp, &mut buf);
            marks.push((c.seq, buf.len()));
            continue;
        }
        tw.eng.shard.no_touch = c.no_touch;
        if c.master {
            tw.eng.shard.db_mut(c.db).master_view = true;
        }
        if let Some(t) = tw.eng.shard.tracking.as_mut() {
            t.writer = client;
        }
        let reply = match spec.map(|s| s.exec) {
            Some(Exec::Key(f)) => {
                commands::run_key(&mut tw.eng.shard, c.id, f, c.db, resp, argv, None)
            }
            Some(Exec::Multi(m)) => {
                commands::run_key(&mut tw.eng.shard, c.id, m.sub, c.db, resp, argv, None)
            }
            Some(Exec::Script(f)) => crate::scripting::host::run(
                tw,
                c.id,
                f,
                c.db,
                resp,
                argv,
                None,
                crate::scripting::host::Held::Own,
            ),
            _ => Reply::error("ERR internal routing error"),
        };
        tw.eng.shard.no_touch = false;
        if c.master {
            tw.eng.shard.db_mut(c.db).master_view = false;
        }
        if let Some(t) = tw.eng.shard.tracking.as_mut() {
            t.writer = 0;
        }
        if tw.eng.shard.blocked.has_ready() {
            coord::block::serve_ready(&mut tw.eng);
        }
        reply.encode(resp, &mut buf);
        marks.push((c.seq, buf.len()));
    }
    let buf = Bytes::from(buf);
    let remote = tw.eng.id != origin;
    // Slow commands are logged where their client lives (its address and name).
    let slow = (!tw.eng.shard.slow.pending.is_empty())
        .then(|| std::mem::take(&mut tw.eng.shard.slow.pending));
    tw.eng.post(
        origin,
        Msg::Filled(Box::new(Filled {
            token,
            buf,
            marks,
            remote,
            slow,
        })),
    );
}

/// Runs a batch that arrived for this shard.
fn run_batch(tw: &mut Worker, b: BatchMsg) {
    exec_batch(tw, b.origin, b.token, b.client, b.resp, b.batch);
    tw.drain_outbox();
}

/// Answers every command of a batch with `text` (in their reply slots) instead of running
/// them.
fn refuse_batch(tw: &mut Worker, b: BatchMsg, text: &str) {
    let mut buf = Vec::new();
    let mut marks = Vec::with_capacity(b.batch.cmds.len());
    for c in &b.batch.cmds {
        commands::count_error(&mut tw.eng.shard, text);
        Reply::error(text).encode(b.resp, &mut buf);
        marks.push((c.seq, buf.len()));
    }
    let remote = tw.eng.id != b.origin;
    tw.eng.post(
        b.origin,
        Msg::Filled(Box::new(Filled {
            token: b.token,
            buf: Bytes::from(buf),
            marks,
            remote,
            slow: None,
        })),
    );
}

/// Runs `f` on the connection side of the engine's own shard, later in this loop pass
/// (an engine callback that must reach a connection: an EXEC's next step, a script).
pub fn to_front(e: &mut Engine, f: impl FnOnce(&mut Worker) + Send + 'static) {
    let me = e.id;
    e.post(me, front(f));
}

/// A job run on some shard's connection side that produces a value for a fan-out.
pub type FrontFn<T> = Box<dyn FnOnce(&mut Worker) -> T + Send>;

/// A job for the connection side of shard `to` (its connections, subscribers, monitors):
/// runs there at once, lock or not, on the whole worker.
pub fn front(f: impl FnOnce(&mut Worker) + Send + 'static) -> Msg {
    Msg::Front(Box::new(move |a: &mut dyn std::any::Any| {
        if let Some(w) = a.downcast_mut::<Worker>() {
            f(w)
        }
    }))
}

/// How a connection's command is answered while a script is busy: `Some(Some(reply))`,
/// `Some(None)` for SHUTDOWN NOSAVE (the server stops), `None` to leave it (and what
/// follows) until the script ends. Redis's order: unknown command and arity errors, then
/// authentication, then `-BUSY` for everything not allowed while busy.
fn busy_answer(conn: &mut Conn, argv: &[Bytes], function: bool) -> Option<Option<Reply>> {
    use crate::commands::table::{ALLOW_BUSY, NOAUTH};
    let Some((_, spec)) = table().lookup(argv.first().map(|b| b.as_ref()).unwrap_or_default())
    else {
        return Some(Some(Reply::Raw(crate::error::unknown_command_reply(argv))));
    };
    if let Err(e) = commands::check_arity(spec, argv) {
        return Some(Some(Reply::Error(e.to_string())));
    }
    if !conn.client.authed && !spec.has(NOAUTH) {
        return Some(Some(Reply::Error(crate::error::NOAUTH.to_string())));
    }
    let sub = |i: usize, w: &str| {
        argv.get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(w.as_bytes()))
    };
    let kill = (spec.name == "script" || spec.name == "function") && sub(1, "kill");
    if kill && argv.len() == 2 {
        return Some(Some(match crate::scripting::kill_busy() {
            crate::scripting::Kill::Killed => Reply::Ok,
            crate::scripting::Kill::NotBusy => Reply::error(crate::scripting::NOTBUSY),
            crate::scripting::Kill::Unkillable => Reply::error(crate::scripting::UNKILLABLE),
        }));
    }
    let nosave = argv
        .iter()
        .skip(1)
        .any(|a| a.eq_ignore_ascii_case(b"nosave"));
    if spec.name == "shutdown" && nosave {
        return Some(None);
    }
    if spec.has(ALLOW_BUSY) && spec.name != "shutdown" && !kill {
        return None;
    }
    // A refused command inside MULTI makes EXEC fail, as Redis's rejectCommand.
    if let Some(t) = conn.tx.as_mut() {
        if t.queue.is_some() {
            t.aborted = true;
        }
    }
    let text = if function {
        crate::scripting::BUSY_FUNCTION
    } else {
        crate::scripting::BUSY_EVAL
    };
    Some(Some(Reply::error(text)))
}
