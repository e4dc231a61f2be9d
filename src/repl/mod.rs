//! Replication, replica side: shardis following a master that speaks Redis's protocol (a
//! stock redis-server 7.0 today). Owns the process-wide replication state (role, master
//! address, link state, replication ids and offsets: what ROLE and INFO replication show),
//! the replica settings (`replica-read-only`, `masterauth`, ...), REPLICAOF / SLAVEOF / ROLE /
//! REPLCONF, and the read-only and stale-data gates the dispatcher checks.
//!
//! Threads:
//! - a `repl-link` helper thread per REPLICAOF (`link`) connects with blocking sockets, does
//!   the handshake (PING, AUTH, REPLCONF, PSYNC) and receives the RDB, decodes it and splits
//!   its keys by owner shard off the shard threads, then hands the socket to shard 0 and
//!   waits until the link is lost to reconnect (PSYNC with the cached replid and offset);
//! - shard 0 (the "home" shard) picks the hand-over up once per loop pass (`on_pass`, one
//!   relaxed load when nothing is pending), locks every shard, replaces their data with the
//!   RDB's keys (as DEBUG RELOAD does), and adopts the socket as a connection flagged
//!   `master`: the ordinary parser and dispatcher then run the master's command stream
//!   (cross-shard commands included), its replies are dropped (`filter_output`), and the
//!   processed bytes are the replication offset (`Home`);
//! - any shard runs the commands and reads the atomics (gates, offsets) lock-free; the
//!   `Mutex`ed `State` is touched only by replication control (REPLICAOF, INFO, ROLE, link
//!   changes), never per command.
//!
//! A replica never deletes expired keys on its own: each `Db` is put in replica mode
//! (`Db::replica`), where lazy and active expiry hide expired keys instead of deleting them,
//! and commands from the master link see them as live (`Db::master_view`).
//!
//! The master side (serving PSYNC/SYNC from the write journal, WAIT) is `master`; it owns
//! ROLE and INFO replication while this server is a master, and takes its replication ids
//! from `master_fields()` (a promotion moves them there).

pub mod failover;
pub mod link;
pub mod master;
pub mod shutdown;

use std::collections::VecDeque;
use std::net::TcpStream;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::Bytes;

use crate::commands::args::text;
use crate::commands::table::Exec;
use crate::commands::table::{
    CommandSpec, KeySpec, ADMIN, MAY_REPLICATE, NOSCRIPT, NO_ASYNC_LOADING, READONLY, STALE, WRITE,
};
use crate::engine::shared::Shared;
use crate::engine::ShardFn;
use crate::error::{self, CmdError, CmdResult};
use crate::persist::load::Split;
use crate::protocol::reply::Reply;
use crate::runtime::mesh::Waker;
use crate::server::cmds::FrontCtx;
use crate::server::worker::{front, to_front, Worker};

/// The shard that owns the master link and handles the hand-overs.
pub const HOME: usize = 0;

/// The replica's link to its master, as ROLE words it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting to (re)connect.
    Connect,
    /// TCP connect in progress.
    Connecting,
    /// PING .. PSYNC.
    Handshake,
    /// Receiving (or loading) the RDB.
    Sync,
    /// Streaming commands.
    Connected,
}

impl LinkState {
    pub fn word(self) -> &'static str {
        match self {
            LinkState::Connect => "connect",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Sync => "sync",
            LinkState::Connected => "connected",
        }
    }
}

/// The master-side fields of INFO replication and ROLE. On a replica, `replid` is the
/// master's and `offset` the processed offset. The master side (journal, backlog, replicas)
/// updates these through `master_fields()`.
#[derive(Clone, Debug)]
pub struct MasterFields {
    pub replid: String,
    pub replid2: String,
    pub second_offset: i64,
    /// master_repl_offset while a master (a replica reports its processed offset).
    pub offset: i64,
    pub backlog_active: bool,
    pub backlog_size: u64,
    pub backlog_first_byte: u64,
    pub backlog_histlen: u64,
}

/// Where this server replicates from.
#[derive(Clone, Debug)]
struct Following {
    host: String,
    port: u16,
    link: LinkState,
    /// When the link went down (None: never up since this REPLICAOF).
    down_since: Option<Instant>,
    /// The replid and processed offset to PSYNC from (Redis's cached master).
    cached: Option<(String, i64)>,
    /// RDB transfer progress while in `Sync`: total bytes (-1 unknown) and read so far.
    sync_total: i64,
    sync_read: u64,
    sync_last_io: Option<Instant>,
    /// Tells the link thread the link was lost (it reconnects). Dropping it stops the thread.
    wake: Option<Sender<()>>,
    /// A FAILOVER made this node follow its target: the PSYNC says so, and a refusal (or
    /// no answer) makes this node a master again.
    failover: bool,
}

struct State {
    /// Bumped by every REPLICAOF: a link thread or hand-over of an older one is stale.
    gen: u64,
    following: Option<Following>,
}

/// A hand-over from the link thread to the home shard.
pub struct Handover {
    gen: u64,
    stream: TcpStream,
    /// The TLS session on it (`tls-replication yes`), handshake done.
    tls: Option<rustls::ClientConnection>,
    /// Bytes read past the RDB (the start of the command stream).
    leftover: Vec<u8>,
    /// The offset the stream starts at.
    offset: i64,
    /// The RDB's keys by shard (full sync); `None` for a partial resync.
    load: Option<Split>,
}

/// Replica settings CONFIG SET may change (read by the link thread and the gates).
pub struct Settings {
    pub read_only: AtomicBool,
    pub serve_stale: AtomicBool,
    pub timeout_secs: AtomicU64,
    /// `repl-ping-replica-period` (seconds): how often a master PINGs its replicas.
    pub ping_period_secs: AtomicU64,
    pub priority: AtomicU64,
    /// `min-replicas-to-write` (0: off) and `min-replicas-max-lag` (seconds).
    pub min_replicas: AtomicU64,
    pub min_replicas_max_lag: AtomicU64,
    /// Replicas acknowledged within the max lag, counted once a second by shard 0.
    pub good_replicas: AtomicU64,
    /// `min-replicas-ack` (0: off): a write's reply waits until this many replicas
    /// acknowledged the stream offset covering it (zero acknowledged-write loss).
    pub min_replicas_ack: AtomicU64,
    /// `min-replicas-ack-timeout` (ms): past it the held reply becomes `-NOREPLICAS`.
    pub ack_timeout_ms: AtomicU64,
    /// `shutdown-timeout` (seconds): how long a master's shutdown waits for lagging
    /// replicas (0: not at all).
    pub shutdown_timeout_secs: AtomicU64,
    /// Replicas online (past their sync), kept by the master side.
    pub online_replicas: AtomicU64,
    /// (masteruser, masterauth).
    pub auth: Mutex<(String, String)>,
    /// `replica-announce-ip` ("": the master sees the connection's address) and
    /// `replica-announce-port` (0: our port), sent in the handshake.
    pub announce_ip: Mutex<String>,
    pub announce_port: AtomicU64,
    /// `replica-announced`: INFO's `replica_announced` (Sentinel leaves out a replica that
    /// says 0).
    pub announced: AtomicBool,
}

/// `gate()` bits: writes refused (read-only replica); commands without the `stale` flag
/// refused (link down and `replica-serve-stale-data no`).
const GATE_READONLY: u8 = 1;
const GATE_STALE: u8 = 2;
/// Writes refused: fewer good replicas than `min-replicas-to-write` (on a master).
const GATE_NOREPLICAS: u8 = 4;
/// `min-replicas-to-write` is set: writes also check the good replicas' deadline.
const GATE_MINREPLICAS: u8 = 8;
/// `min-replicas-ack` is set (on a master): writes are refused without enough online
/// replicas, and their replies wait for the replicas' acknowledgements.
const GATE_SYNC_ACK: u8 = 16;

static GATE: AtomicU8 = AtomicU8::new(0);
/// Processed and read offsets of the master link (published by the home shard).
static OFFSET: AtomicI64 = AtomicI64::new(0);
static READ_OFFSET: AtomicI64 = AtomicI64::new(0);
/// Seconds since the master last sent something, published once a second.
static LAST_IO_SECS: AtomicI64 = AtomicI64::new(-1);
/// Hand-overs are waiting for the home shard.
static PENDING: AtomicBool = AtomicBool::new(false);

pub static SETTINGS: Settings = Settings {
    read_only: AtomicBool::new(true),
    serve_stale: AtomicBool::new(true),
    timeout_secs: AtomicU64::new(60),
    ping_period_secs: AtomicU64::new(10),
    priority: AtomicU64::new(100),
    min_replicas: AtomicU64::new(0),
    min_replicas_max_lag: AtomicU64::new(10),
    good_replicas: AtomicU64::new(0),
    min_replicas_ack: AtomicU64::new(0),
    ack_timeout_ms: AtomicU64::new(1000),
    shutdown_timeout_secs: AtomicU64::new(10),
    online_replicas: AtomicU64::new(0),
    auth: Mutex::new((String::new(), String::new())),
    announce_ip: Mutex::new(String::new()),
    announce_port: AtomicU64::new(0),
    announced: AtomicBool::new(true),
};

fn lock<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn state() -> MutexGuard<'static, State> {
    static S: Mutex<State> = Mutex::new(State {
        gen: 0,
        following: None,
    });
    lock(&S)
}

/// The master fields of INFO replication and ROLE (the master side updates them). Lock
/// order: `state()` before this one.
pub fn master_fields() -> MutexGuard<'static, MasterFields> {
    static M: OnceLock<Mutex<MasterFields>> = OnceLock::new();
    M.get_or_init(|| {
        Mutex::new(MasterFields {
            replid: crate::server::cmds::info::master_replid().to_string(),
            replid2: "0".repeat(40),
            second_offset: -1,
            offset: 0,
            backlog_active: false,
            backlog_size: 1 << 20,
            backlog_first_byte: 0,
            backlog_histlen: 0,
        })
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

fn inbox() -> MutexGuard<'static, VecDeque<Handover>> {
    static Q: Mutex<VecDeque<Handover>> = Mutex::new(VecDeque::new());
    lock(&Q)
}

/// FAILOVER targets that refused (or never answered) this node's `PSYNC ... FAILOVER`, by
/// REPLICAOF generation, for the home shard.
fn refusals() -> MutexGuard<'static, Vec<(u64, String)>> {
    static Q: Mutex<Vec<(u64, String)>> = Mutex::new(Vec::new());
    lock(&Q)
}

/// Whether the link of generation `gen` was started by a FAILOVER (its PSYNC says so).
pub(super) fn failover_psync(gen: u64) -> bool {
    let st = state();
    st.gen == gen && st.following.as_ref().is_some_and(|f| f.failover)
}

/// The link thread's PSYNC ... FAILOVER failed: the home shard ends the failover.
pub(super) fn failover_refused(gen: u64, why: String) {
    refusals().push((gen, why));
    PENDING.store(true, Ordering::Release);
    if let Some(rt) = RUNTIME.get() {
        rt.home.wake();
    }
}

/// What the link thread needs from the running server (set once by `server::run`).
struct Runtime {
    shared: Arc<Shared>,
    home: Arc<Waker>,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// Called by `server::run` before the shards start: a `replicaof` directive makes the
/// server a replica from its first command on (read-only, expiry left to the master).
pub fn configure(replicaof: Option<(String, u16)>) {
    if let Some((host, port)) = replicaof {
        let mut st = state();
        st.gen += 1;
        st.following = Some(Following::new(host, port, None));
        refresh_gate(&st);
    }
}

/// Called by `server::run` once the shards serve: remembers how to reach the home shard and
/// starts the link thread for the `replicaof` directive, if any.
pub fn init(shared: Arc<Shared>, home: Arc<Waker>) {
    let _ = RUNTIME.set(Runtime { shared, home });
    let mut st = state();
    let gen = st.gen;
    if let Some(f) = st.following.as_mut() {
        let (host, port) = (f.host.clone(), f.port);
        let (tx, rx) = std::sync::mpsc::channel();
        f.wake = Some(tx);
        drop(st);
        spawn_link(gen, host, port, rx);
    }
}

impl Following {
    fn new(host: String, port: u16, cached: Option<(String, i64)>) -> Following {
        Following {
            host,
            port,
            link: LinkState::Connect,
            down_since: None,
            cached,
            sync_total: -1,
            sync_read: 0,
            sync_last_io: None,
            wake: None,
            failover: false,
        }
    }
}

fn spawn_link(gen: u64, host: String, port: u16, rx: std::sync::mpsc::Receiver<()>) {
    let spawned =
        crate::runtime::sys::spawn_helper("repl-link", move || link::run(gen, host, port, rx));
    if let Err(e) = spawned {
        crate::log::warning(&format!("Can't start the replication link thread: {e}"));
    }
}

pub use crate::role::is_replica;

/// Whether this replica's link to its master is up (a replica serves SYNC only then).
pub fn master_link_up() -> bool {
    state()
        .following
        .as_ref()
        .is_some_and(|f| f.link == LinkState::Connected)
}

/// The gates the dispatcher checks before running a command: 0 on a master (one relaxed
/// load per command, nothing more); see `refusal`.
#[inline]
pub fn gate() -> u8 {
    GATE.load(Ordering::Relaxed)
}

/// The error a command with `flags` gets from a non-master client under gate bits `g`
/// (Redis's processCommand order: READONLY, then MASTERDOWN).
pub fn refusal(g: u8, flags: u32) -> Option<&'static str> {
    if g & GATE_READONLY != 0 && flags & WRITE != 0 {
        return Some(error::READONLY);
    }
    if g & GATE_STALE != 0 && flags & STALE == 0 {
        return Some(error::MASTERDOWN);
    }
    if g & GATE_MINREPLICAS != 0
        && flags & WRITE != 0
        && (g & GATE_NOREPLICAS != 0
            || crate::shard::now_ms() > GOOD_UNTIL_MS.load(Ordering::Relaxed))
    {
        return Some(error::NOREPLICAS);
    }
    if g & GATE_SYNC_ACK != 0
        && may_write(flags)
        && SETTINGS.online_replicas.load(Ordering::Relaxed)
            < SETTINGS.min_replicas_ack.load(Ordering::Relaxed)
    {
        return Some(error::NOREPLICAS);
    }
    None
}

/// Whether a command with `flags` may write (and so is propagated): its reply waits for
/// the replicas under `min-replicas-ack`.
fn may_write(flags: u32) -> bool {
    flags & WRITE != 0 || (flags & MAY_REPLICATE != 0 && flags & READONLY == 0)
}

/// Whether a command's reply is held for the replicas' acknowledgements (gate bits `g`,
/// checked only when the gate is not 0, for clients other than the master link).
#[inline]
pub fn holds_reply(g: u8, flags: u32) -> bool {
    g & GATE_SYNC_ACK != 0 && may_write(flags)
}

/// Unix ms until which enough replicas count as good (see `master::refresh_good_replicas`).
static GOOD_UNTIL_MS: AtomicU64 = AtomicU64::new(0);

/// Shard 0's count of good replicas and the deadline they stay good until.
pub fn set_good_replicas(n: u64, until_ms: u64) {
    GOOD_UNTIL_MS.store(until_ms, Ordering::Relaxed);
    if SETTINGS.good_replicas.swap(n, Ordering::Relaxed) != n {
        refresh_gate(&state());
    }
}

fn refresh_gate(st: &State) {
    crate::role::set_replica(st.following.is_some());
    let mut g = 0;
    if let Some(f) = &st.following {
        if SETTINGS.read_only.load(Ordering::Relaxed) {
            g |= GATE_READONLY;
        }
        if f.link != LinkState::Connected && !SETTINGS.serve_stale.load(Ordering::Relaxed) {
            g |= GATE_STALE;
        }
    } else {
        let min = SETTINGS.min_replicas.load(Ordering::Relaxed);
        if min > 0 {
            g |= GATE_MINREPLICAS;
            if SETTINGS.good_replicas.load(Ordering::Relaxed) < min {
                g |= GATE_NOREPLICAS;
            }
        }
        if SETTINGS.min_replicas_ack.load(Ordering::Relaxed) > 0 {
            g |= GATE_SYNC_ACK;
        }
    }
    GATE.store(g, Ordering::Relaxed);
}

/// Whether `gen` is still the REPLICAOF in force (link threads stop when it is not).
fn current(gen: u64) -> bool {
    state().gen == gen
}

fn set_link(gen: u64, link: LinkState) {
    let mut st = state();
    if st.gen != gen {
        return;
    }
    if let Some(f) = st.following.as_mut() {
        f.link = link;
        if link == LinkState::Sync {
            f.sync_total = -1;
            f.sync_read = 0;
            f.sync_last_io = Some(Instant::now());
        }
    }
    refresh_gate(&st);
}

fn sync_progress(gen: u64, total: i64, read: u64) {
    let mut st = state();
    if st.gen != gen {
        return;
    }
    if let Some(f) = st.following.as_mut() {
        f.sync_total = total;
        f.sync_read = read;
        f.sync_last_io = Some(Instant::now());
    }
}

/// The replid and offset to PSYNC from.
fn cached(gen: u64) -> Option<(String, i64)> {
    let st = state();
    if st.gen != gen {
        return None;
    }
    st.following.as_ref().and_then(|f| f.cached.clone())
}

/// A 40 hex digit replication id from the kernel's random source.
/// DEBUG CHANGE-REPL-ID: a new replication id and no secondary one (Redis's
/// `changeReplicationId` + `clearReplicationId2`); replicas full-sync on their next PSYNC.
pub fn change_replid() {
    let mut m = master_fields();
    m.replid = new_replid();
    m.replid2 = "0".repeat(40);
    m.second_offset = -1;
}

fn new_replid() -> String {
    let mut b = [0u8; 20];
    if !crate::runtime::sys::random_bytes(&mut b) {
        let t = crate::shard::now_ms() ^ u64::from(std::process::id()).rotate_left(32);
        for (i, x) in b.iter_mut().enumerate() {
            *x = (t.rotate_left(i as u32 * 7) & 0xFF) as u8 ^ i as u8;
        }
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The link thread is done with the handshake (and the RDB): queue the hand-over for the
/// home shard and wake it.
fn hand_over(h: Handover) {
    inbox().push_back(h);
    PENDING.store(true, Ordering::Release);
    if let Some(rt) = RUNTIME.get() {
        rt.home.wake();
    }
}

// ----- the home shard's side ---------------------------------------------------------------

/// The home shard's master link: which connection, and the byte counts that make the
/// replication offset (processed = `base + received - unparsed input`).
#[derive(Default)]
pub struct Home {
    pub conn: Option<usize>,
    /// The REPLICAOF generation the link belongs to.
    pub gen: u64,
    /// The offset the link's stream started at.
    pub base: i64,
    /// Bytes received on the link since (counted by the receive path).
    pub received: u64,
    /// `REPLCONF ACK`s waiting to be sent: the only output the master gets.
    pub ack: Vec<u8>,
    /// Until when every batch of the stream is acknowledged as soon as it is applied: a
    /// master waiting for acknowledgements (`min-replicas-ack`, WAIT) sends `REPLCONF
    /// GETACK`, which opens this window for a second.
    pub fast_ack_until: Option<Instant>,
    /// The master's stream as received, by first offset (up to `repl-backlog-size`
    /// bytes): after a promotion it seeds this node's backlog, so the old master's other
    /// replicas continue from it (PSYNC2) instead of taking a full sync.
    pub backlog: VecDeque<(i64, Bytes)>,
    pub backlog_bytes: usize,
    /// The link's commands are held before the next one outside MULTI (a sub-replica's
    /// full sync takes its cut at a command boundary, `master::relay_cut`).
    pub hold: bool,
}

/// The master link's processed offset (what this replica applied), or the last published
/// one when no link is up.
pub fn link_offset(w: &Worker) -> i64 {
    processed(w).map_or_else(|| OFFSET.load(Ordering::Relaxed), |p| p.0)
}

/// The master's stream bytes `from..=to` (offsets count from 1) from the captured copy, or
/// None when it no longer holds them all.
pub fn stream_range(w: &Worker, from: i64, to: i64) -> Option<Vec<u8>> {
    if to < from {
        return Some(Vec::new());
    }
    let first = w.repl.backlog.front().map(|(s, _)| *s)?;
    if from < first {
        return None;
    }
    let mut out = Vec::with_capacity((to - from + 1) as usize);
    for (start, b) in &w.repl.backlog {
        let end = start + b.len() as i64 - 1;
        if end < from || *start > to {
            continue;
        }
        let lo = (from - start).max(0) as usize;
        let hi = ((to - start + 1) as usize).min(b.len());
        out.extend_from_slice(b.get(lo..hi)?);
    }
    (out.len() as i64 == to - from + 1).then_some(out)
}

/// The captured stream up to `off` (a command cut in half is not in it), by first offset.
pub fn stream_upto(w: &Worker, off: i64) -> VecDeque<(i64, Bytes)> {
    let mut backlog = w.repl.backlog.clone();
    while let Some((s, b)) = backlog.back_mut() {
        let end = *s + b.len() as i64 - 1;
        if end <= off {
            break;
        }
        let keep = (off + 1 - *s).max(0) as usize;
        if keep == 0 {
            backlog.pop_back();
        } else {
            b.truncate(keep);
        }
    }
    backlog
}

/// Ends `Home::hold`: the link's held input runs.
pub fn release_hold(w: &mut Worker) {
    w.repl.hold = false;
    if let Some(idx) = w.repl.conn {
        if w.conns.get(idx).is_some_and(|c| c.postponed.is_some()) {
            w.resume_input(idx);
            after_input(w);
        }
    }
}

/// Keeps the `n` bytes just received on the master link (at the end of its read buffer)
/// in the home shard's copy of the master's stream.
pub fn capture(w: &mut Worker, idx: usize, n: usize) {
    let Some(rbuf) = w.conns.get(idx).and_then(|c| c.rbuf.as_ref()) else {
        return;
    };
    let Some(new) = rbuf.len().checked_sub(n).and_then(|from| rbuf.get(from..)) else {
        return;
    };
    // Offsets count from 1: the bytes end at `base + received`.
    let start = w.repl.base + w.repl.received as i64 - n as i64 + 1;
    let h = &mut w.repl;
    h.backlog.push_back((start, Bytes::copy_from_slice(new)));
    h.backlog_bytes += n;
    let cap = master::backlog_size();
    while let Some((_, f)) = h.backlog.front() {
        if h.backlog_bytes - f.len() < cap {
            break;
        }
        h.backlog_bytes -= f.len();
        h.backlog.pop_front();
    }
}

/// Once per loop pass on the home shard: adopts the link thread's hand-overs.
#[inline]
pub fn on_pass(w: &mut Worker) {
    if PENDING.load(Ordering::Relaxed) {
        take_handovers(w);
    }
}

fn take_handovers(w: &mut Worker) {
    PENDING.store(false, Ordering::Relaxed);
    let items: Vec<Handover> = inbox().drain(..).collect();
    for h in items {
        adopt(w, h);
    }
    let refused: Vec<(u64, String)> = refusals().drain(..).collect();
    for (gen, why) in refused {
        if current(gen) {
            failover::abort(w, &why);
        }
    }
}

fn adopt(w: &mut Worker, h: Handover) {
    if !current(h.gen) {
        return;
    }
    if failover::in_progress() {
        // The target accepted this node's PSYNC: the failover is over.
        failover::finish(w);
    }
    let Handover {
        gen,
        stream,
        tls,
        leftover,
        offset,
        load,
    } = h;
    let Some(split) = load else {
        attach(w, gen, stream, tls, leftover, offset);
        return;
    };
    crate::log::notice("MASTER <-> REPLICA sync: Flushing old data");
    let all: Vec<usize> = (0..w.eng.nshards).collect();
    let started = Instant::now();
    // Every shard locked (as DEBUG RELOAD): no client sees a half-loaded dataset.
    crate::coord::lock::lock_all(
        &mut w.eng,
        all,
        Box::new(move |w, txid| {
            let jobs: Vec<(usize, ShardFn<()>)> = split
                .shards
                .into_iter()
                .enumerate()
                .map(|(s, keys)| {
                    let job: ShardFn<()> = Box::new(move |tw| {
                        for db in 0..tw.shard.dbs.len() {
                            crate::commands::watch::before_flush(&mut tw.shard, db);
                        }
                        for d in tw.shard.dbs.iter_mut() {
                            d.clear_async();
                            d.replica = true;
                        }
                        crate::persist::load::apply(&mut tw.shard, keys);
                        crate::coord::lock::unlock(tw, txid);
                    });
                    (s, job)
                })
                .collect();
            w.fan_out(jobs, false, move |w, _: Vec<()>| {
                crate::log::notice(&format!(
                    "MASTER <-> REPLICA sync: Finished with success ({} ms in the shards)",
                    started.elapsed().as_millis()
                ));
                to_front(w, move |w: &mut Worker| {
                    attach(w, gen, stream, tls, leftover, offset)
                });
            });
        }),
    );
}

/// Makes the socket the home shard's master link connection.
fn attach(
    w: &mut Worker,
    gen: u64,
    stream: TcpStream,
    tls: Option<rustls::ClientConnection>,
    mut leftover: Vec<u8>,
    offset: i64,
) {
    if !current(gen) {
        return;
    }
    if let Some(old) = w.repl.conn.take() {
        w.close_conn(old);
    }
    let _ = stream.set_read_timeout(None);
    let _ = stream.set_write_timeout(None);
    let fd = stream.into_raw_fd();
    {
        let mut st = state();
        if let Some(f) = st.following.as_mut() {
            f.link = LinkState::Connected;
            f.cached = None;
        }
        refresh_gate(&st);
    }
    OFFSET.store(offset, Ordering::Relaxed);
    READ_OFFSET.store(offset, Ordering::Relaxed);
    LAST_IO_SECS.store(0, Ordering::Relaxed);
    // A partial resync continues the captured stream; anything else starts it anew.
    let (mut backlog, mut backlog_bytes) =
        (std::mem::take(&mut w.repl.backlog), w.repl.backlog_bytes);
    let end = backlog.back().map(|(s, b)| s + b.len() as i64 - 1);
    if end != Some(offset) {
        backlog.clear();
        backlog_bytes = 0;
    }
    w.repl = Home {
        conn: None,
        gen,
        base: offset,
        received: 0,
        ack: Vec::new(),
        fast_ack_until: None,
        backlog,
        backlog_bytes,
        // A sub-replica's cut in progress keeps the new link held too.
        hold: w.repl.hold,
    };
    // Sub-replicas follow the master's stream through this node: a stream that does not
    // continue theirs (a full sync, another master) sends them to resync, as Redis does.
    master::relay_attach(w, offset);
    // Plaintext the TLS session decrypted past what the link thread read comes next.
    let tls = tls.map(|c| Box::new(crate::tls::Session::client(c, &mut leftover)));
    let idx = w.adopt_master(fd, tls);
    w.repl.conn = Some(idx);
    // The first ACK at once: a diskless master puts the replica online on it.
    queue_ack(w, None);
    w.feed_master(idx, &leftover);
}

/// The processed offset of the home shard's link: bytes received minus those not parsed.
fn processed(w: &Worker) -> Option<(i64, i64)> {
    let c = w.conns.get(w.repl.conn?)?;
    let read = w.repl.base + w.repl.received as i64;
    let mut pending = c.rbuf.as_ref().map_or(0, |b| b.len()) as i64;
    // A command held by `Home::hold` is parsed but not applied.
    if let Some(argv) = c.postponed.as_ref() {
        pending += encoded_len(argv);
    }
    // Inside the master's MULTI nothing is applied until EXEC (Redis advances the master
    // client's offset only outside MULTI): a link cut here continues from before the MULTI,
    // and the master resends the whole transaction.
    if let Some(q) = c.tx.as_ref().and_then(|t| t.queue.as_ref()) {
        const MULTI: i64 = b"*1\r\n$5\r\nMULTI\r\n".len() as i64;
        pending += MULTI + q.iter().map(|x| encoded_len(&x.argv)).sum::<i64>();
    }
    Some((read - pending, read))
}

/// Publishes the link's offsets for INFO and ROLE (any shard reads them).
pub fn publish(w: &Worker) {
    if let Some((done, read)) = processed(w) {
        OFFSET.store(done, Ordering::Relaxed);
        READ_OFFSET.store(read, Ordering::Relaxed);
    }
}

/// After the master link's input ran: publishes the offsets and, while a master asked for
/// prompt acknowledgements, acknowledges what was applied.
pub fn after_input(w: &mut Worker) {
    publish(w);
    master::relay(w);
    if w.repl.fast_ack_until.is_some_and(|t| w.eng.pass_now <= t) {
        queue_ack(w, None);
    }
}

/// RESP length of `argv` as a master sends it (a multibulk).
fn encoded_len(argv: &[Bytes]) -> i64 {
    let n = argv.len().to_string().len() + 3;
    let args: usize = argv
        .iter()
        .map(|a| a.len().to_string().len() + a.len() + 5)
        .sum();
    (n + args) as i64
}

/// Queues `REPLCONF ACK <processed offset>` for the master. `getack`: the GETACK command
/// being answered, whose own bytes the offset leaves out (Redis advances the offset after
/// a command completes).
fn queue_ack(w: &mut Worker, getack: Option<&[Bytes]>) {
    let Some(idx) = w.repl.conn else {
        return;
    };
    let Some((mut off, _)) = processed(w) else {
        return;
    };
    if let Some(a) = getack {
        off -= encoded_len(a);
    }
    let s = off.to_string();
    w.repl.ack.extend_from_slice(
        format!(
            "*3\r\n$8\r\nREPLCONF\r\n$3\r\nACK\r\n${}\r\n{s}\r\n",
            s.len()
        )
        .as_bytes(),
    );
    w.mark_dirty(idx);
}

/// The client cron (once a second, home shard): publishes the offsets, drops a master
/// silent for longer than `repl-timeout`, and sends the periodic ACK.
pub fn on_tick(w: &mut Worker) {
    let Some(idx) = w.repl.conn else {
        return;
    };
    publish(w);
    let idle = w
        .conns
        .get(idx)
        .map_or(0, |c| c.client.last_active.elapsed().as_secs());
    LAST_IO_SECS.store(idle as i64, Ordering::Relaxed);
    if idle > SETTINGS.timeout_secs.load(Ordering::Relaxed) {
        crate::log::warning("MASTER timeout: no data nor PING received...");
        w.close_conn(idx);
        return;
    }
    queue_ack(w, None);
}

/// The master link is closing (`Worker::close_conn`, before the connection goes): caches
/// the master's replid and the processed offset for a partial resync, marks the link down
/// and tells the link thread to reconnect.
pub fn on_close(w: &mut Worker, idx: usize) {
    if w.repl.conn != Some(idx) {
        return;
    }
    // The offset of what was applied: a transaction cut in half is left out (`processed`),
    // so the master resends it whole.
    publish(w);
    w.repl.conn = None;
    w.repl.ack.clear();
    LAST_IO_SECS.store(-1, Ordering::Relaxed);
    let mut st = state();
    if st.gen != w.repl.gen {
        return;
    }
    let replid = master_fields().replid.clone();
    if let Some(f) = st.following.as_mut() {
        crate::log::warning("Connection with master lost.");
        f.link = LinkState::Connect;
        f.down_since = Some(Instant::now());
        crate::log::notice("Caching the disconnected master state.");
        f.cached = Some((replid, OFFSET.load(Ordering::Relaxed)));
        // Reconnect, unless the server is stopping (its shards close every connection).
        if !w.eng.shared.shutdown.load(Ordering::Relaxed) {
            if let Some(tx) = &f.wake {
                let _ = tx.send(());
            }
        }
    }
    refresh_gate(&st);
}

/// Closes the home shard's master link if it belongs to a REPLICAOF older than `gen`.
fn close_link(w: &mut Worker, gen: u64) {
    if w.repl.gen < gen {
        if let Some(idx) = w.repl.conn.take() {
            w.close_conn(idx);
        }
        w.repl.ack.clear();
    }
}

/// Puts every shard's databases in or out of replica mode, and has the home shard drop a
/// link older than `gen`.
fn switch_shards(w: &mut Worker, replica: bool, gen: u64) {
    w.eng.on_all_shards(
        move |tw| {
            for d in tw.shard.dbs.iter_mut() {
                d.replica = replica;
            }
            if replica {
                // Sub-replicas get the master's stream relayed, not this node's journals.
                tw.ship = None;
            }
            if tw.id == HOME {
                to_front(tw, move |w: &mut Worker| close_link(w, gen));
            }
        },
        false,
        |_, _: Vec<()>| {},
    );
}

/// The FAILOVER is over: a later reconnection of this link is an ordinary PSYNC.
pub(super) fn failover_link_done() {
    if let Some(f) = state().following.as_mut() {
        f.failover = false;
    }
}

/// FAILOVER: this master follows its caught-up replica, with `PSYNC ... FAILOVER`.
pub(super) fn follow_failover(w: &mut Worker, host: String, port: u16) {
    follow(w, host.clone(), port, true);
    set_config_text(w, &format!("{host} {port}"));
}

/// Starts following `host:port` (`failover`: for a FAILOVER, whose PSYNC says so; set
/// before the link thread starts, which reads it).
fn follow(w: &mut Worker, host: String, port: u16, failover: bool) {
    let (gen, rx) = {
        let mut st = state();
        st.gen += 1;
        // What to PSYNC from: the current master's stream, or our own history as a master
        // (Redis's cached master "synthesized from myself").
        let m = master_fields();
        let off = if st.following.is_some() {
            OFFSET.load(Ordering::Relaxed)
        } else if master::is_active() {
            // This node's own stream as a master, up to its last byte.
            master::offset() as i64
        } else {
            m.offset
        };
        if st.following.is_none() {
            // Until a link attaches, this node's processed offset is where its own stream
            // ended (Redis's cached master made from itself).
            OFFSET.store(off, Ordering::Relaxed);
        }
        let cached = (off > 0).then(|| (m.replid.clone(), off));
        drop(m);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut f = Following::new(host.clone(), port, cached);
        f.wake = Some(tx);
        f.failover = failover;
        // The old link thread (if any) sees its sender dropped and its generation gone.
        st.following = Some(f);
        refresh_gate(&st);
        (st.gen, rx)
    };
    switch_shards(w, true, gen);
    spawn_link(gen, host, port, rx);
}

/// REPLICAOF NO ONE on a replica: keeps the data and becomes a master; the old replid
/// becomes the secondary one (PSYNC2), valid up to the processed offset. Runs on the home
/// shard (it owns the link): closes the link, then every shard leaves replica mode and
/// (unless replicas already follow this node) starts shipping its journal from this
/// moment, the backlog is seeded with the old master's stream and continues at the same
/// offset, and only then does the node accept writes and the REPLICAOF get its `+OK`:
/// so every write after the promotion is in the stream the old replicas continue with.
fn promote(ctx: &mut FrontCtx) {
    let ticket = ctx.defer();
    promote_then(
        ctx.w,
        Box::new(move |w: &mut Worker| w.eng.complete(ticket, Reply::Ok)),
    );
}

/// What runs on the home shard once a promotion is complete.
pub(super) type Then = Box<dyn FnOnce(&mut Worker) + Send>;

/// Makes this replica a master (as REPLICAOF NO ONE does), then runs `then` on the home
/// shard.
pub(super) fn promote_then(w: &mut Worker, then: Then) {
    let gen = {
        let mut st = state();
        st.gen += 1;
        st.gen
    };
    w.eng.post(
        HOME,
        front(move |hw: &mut Worker| promote_home(hw, gen, then)),
    );
}

fn promote_home(w: &mut Worker, gen: u64, then: Then) {
    close_link(w, gen);
    publish(w);
    let off = OFFSET.load(Ordering::Relaxed);
    // The stream up to the processed offset (a command cut in half is not in it).
    let backlog = stream_upto(w, off);
    w.repl.backlog.clear();
    w.repl.backlog_bytes = 0;
    w.repl.hold = false;
    // Every shard ships its journal from here on; the hub keeps the stream it relayed to
    // sub-replicas (the same bytes and offsets), or is seeded with it.
    w.eng.on_all_shards(
        move |tw| {
            for d in tw.shard.dbs.iter_mut() {
                d.replica = false;
            }
            master::start_shipping(tw)
        },
        false,
        move |e, cursors: Vec<u64>| {
            to_front(e, move |w: &mut Worker| {
                promoted(w, off, backlog, cursors, gen, then)
            })
        },
    );
}

/// Every shard left replica mode and started shipping: the promotion ends on the home
/// shard.
fn promoted(
    w: &mut Worker,
    off: i64,
    backlog: VecDeque<(i64, Bytes)>,
    cursors: Vec<u64>,
    gen: u64,
    then: Then,
) {
    {
        {
            master::seed_backlog(w, off, backlog.into_iter().collect(), &cursors);
            {
                let mut st = state();
                if st.gen == gen && st.following.take().is_some() {
                    let mut m = master_fields();
                    let new = new_replid();
                    m.replid2 = std::mem::replace(&mut m.replid, new);
                    m.second_offset = off + 1;
                    m.offset = off;
                    crate::log::notice(&format!(
                        "Setting secondary replication ID to {}, valid up to offset: {}. New \
                         replication ID is {}",
                        m.replid2, m.second_offset, m.replid
                    ));
                }
                refresh_gate(&st);
            }
            // As Redis: the sub-replicas reconnect and learn the new replication id with
            // a partial resync (`+CONTINUE <new id>`).
            master::drop_replicas(w);
            set_config_text(w, "");
            then(w);
        }
    }
}

// ----- commands ----------------------------------------------------------------------------

/// REPLICAOF / SLAVEOF / ROLE / REPLCONF.
#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("replicaof", 3, ADMIN | NOSCRIPT | STALE | NO_ASYNC_LOADING, KeySpec::none(), Exec::Conn(crate::front!(replicaof)))
        .doc("server", "5.0.0", "Configures a server as replica of another, or promotes it to a master.", "host port"),
    CommandSpec::new("slaveof", 3, ADMIN | NOSCRIPT | STALE | NO_ASYNC_LOADING, KeySpec::none(), Exec::Conn(crate::front!(replicaof)))
        .doc("server", "1.0.0", "Sets a Redis server as a replica of another, or promotes it to being a master.", "host port"),
];

fn replicaof(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if ctx.w.conns.get(ctx.conn).is_some_and(|c| c.master) {
        return Err(CmdError::coded(error::NOT_VALID_FOR_REPLICA));
    }
    let (Some(h), Some(p)) = (argv.get(1), argv.get(2)) else {
        return Err(CmdError::Syntax);
    };
    let who = crate::server::cmds::client::client_line(&ctx.w.conns[ctx.conn]);
    if h.eq_ignore_ascii_case(b"no") && p.eq_ignore_ascii_case(b"one") {
        if is_replica() {
            crate::log::notice(&format!("MASTER MODE enabled (user request from '{who}')"));
            promote(ctx);
        }
        return Ok(Reply::Ok);
    }
    let port = text(p)
        .parse::<i64>()
        .ok()
        .filter(|v| (0..=65535).contains(v))
        .ok_or_else(|| CmdError::coded(error::INVALID_MASTER_PORT))? as u16;
    let host = text(h);
    let same = state()
        .following
        .as_ref()
        .is_some_and(|f| f.host.eq_ignore_ascii_case(&host) && f.port == port);
    if same {
        crate::log::notice(
            "REPLICAOF would result into synchronization with the master we are already \
             connected with. No operation performed.",
        );
        return Ok(Reply::status(error::ALREADY_CONNECTED));
    }
    follow(ctx.w, host.clone(), port, false);
    set_config_text(ctx.w, &format!("{host} {port}"));
    crate::log::notice(&format!(
        "REPLICAOF {host}:{port} enabled (user request from '{who}')"
    ));
    Ok(Reply::Ok)
}

/// CONFIG GET replicaof / slaveof follow REPLICAOF.
fn set_config_text(w: &Worker, v: &str) {
    if let Ok(mut m) = w.eng.shared.tun.text.lock() {
        m.insert("replicaof".into(), v.to_string());
        m.insert("slaveof".into(), v.to_string());
    }
}

/// ROLE while following a master (`master::role` answers on a master).
pub fn role(_ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    let st = state();
    if let Some(f) = &st.following {
        let off = match (f.link, &f.cached) {
            (LinkState::Connected, _) => OFFSET.load(Ordering::Relaxed),
            (_, Some((_, o))) => *o,
            _ => -1,
        };
        return Ok(Reply::Array(vec![
            Reply::bulk("slave"),
            Reply::bulk(f.host.clone()),
            Reply::Int(i64::from(f.port)),
            Reply::bulk(f.link.word()),
            Reply::Int(off),
        ]));
    }
    drop(st);
    // Promoted meanwhile.
    Ok(master::role_master())
}

/// REPLCONF: on a replica, `GETACK` from the master link queues `REPLCONF ACK <offset>`
/// (the one reply a master gets); the options a replica sends its master are accepted
/// (the master side extends this).
/// REPLCONF on the link to our master (GETACK); `master::replconf` hands it over.
pub fn replconf(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if argv.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let none = || Ok(Reply::Raw(Bytes::new()));
    for pair in argv.get(1..).unwrap_or_default().chunks_exact(2) {
        let [opt, val] = pair else {
            return Err(CmdError::Syntax);
        };
        match text(opt).to_ascii_lowercase().as_str() {
            "getack" => {
                if ctx.w.conns.get(ctx.conn).is_some_and(|c| c.master) {
                    queue_ack(ctx.w, Some(argv));
                    ctx.w.repl.fast_ack_until =
                        Some(ctx.eng().pass_now + std::time::Duration::from_secs(1));
                }
                return none();
            }
            // From a replica to its master: no reply (the master side records it).
            "ack" | "fack" => return none(),
            "listening-port" => {
                text(val).parse::<i64>().map_err(|_| CmdError::NotInteger)?;
            }
            "ip-address" | "capa" | "rdb-only" => {}
            _ => {
                return Err(CmdError::err(format!(
                    "Unrecognized REPLCONF option: {}",
                    text(opt)
                )))
            }
        }
    }
    Ok(Reply::Ok)
}

// ----- INFO and CONFIG ---------------------------------------------------------------------

/// Bytes of replication backlog this node holds, as INFO replication's
/// `repl_backlog_histlen` shows them (a replica's is its master's stream kept for PSYNC2).
pub fn backlog_bytes() -> u64 {
    if is_replica() {
        master_fields().backlog_histlen
    } else {
        master::backlog_histlen()
    }
}

/// INFO replication's lines, in Redis 7.0's order.
pub fn info_fields() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut f = |k: &str, v: String| out.push((k.to_string(), v));
    let st = state();
    let following = st.following.clone();
    drop(st);
    let m = master_fields().clone();
    let offset = OFFSET.load(Ordering::Relaxed);
    match &following {
        Some(fo) => {
            let up = fo.link == LinkState::Connected;
            f("role", "slave".into());
            f("master_host", fo.host.clone());
            f("master_port", fo.port.to_string());
            f("master_link_status", if up { "up" } else { "down" }.into());
            let io = if up {
                LAST_IO_SECS.load(Ordering::Relaxed).max(0)
            } else {
                -1
            };
            f("master_last_io_seconds_ago", io.to_string());
            let syncing = fo.link == LinkState::Sync;
            f("master_sync_in_progress", u8::from(syncing).to_string());
            f(
                "slave_read_repl_offset",
                READ_OFFSET.load(Ordering::Relaxed).to_string(),
            );
            f("slave_repl_offset", offset.to_string());
            if syncing {
                let total = fo.sync_total;
                let read = fo.sync_read as i64;
                f("master_sync_total_bytes", total.to_string());
                f("master_sync_read_bytes", read.to_string());
                f("master_sync_left_bytes", (total - read).to_string());
                let perc = if total > 0 {
                    read as f64 * 100.0 / total as f64
                } else {
                    0.0
                };
                f("master_sync_perc", format!("{perc:.2}"));
                let last = fo.sync_last_io.map_or(0, |t| t.elapsed().as_secs());
                f("master_sync_last_io_seconds_ago", last.to_string());
            }
            if !up {
                let down = fo.down_since.map_or(-1, |t| t.elapsed().as_secs() as i64);
                f("master_link_down_since_seconds", down.to_string());
            }
            f(
                "slave_priority",
                SETTINGS.priority.load(Ordering::Relaxed).to_string(),
            );
            f(
                "slave_read_only",
                u8::from(SETTINGS.read_only.load(Ordering::Relaxed)).to_string(),
            );
            f(
                "replica_announced",
                u8::from(SETTINGS.announced.load(Ordering::Relaxed)).to_string(),
            );
        }
        None => f("role", "master".into()),
    }
    // Replicas of this node (a replica relays its master's stream to them).
    let lines = master::replica_lines();
    f("connected_slaves", lines.len().to_string());
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            f(k, v.to_string());
        }
    }
    f("master_failover_state", failover::state_name().into());
    f("master_replid", m.replid.clone());
    f("master_replid2", m.replid2.clone());
    let master_off = if following.is_some() {
        offset
    } else {
        m.offset
    };
    f("master_repl_offset", master_off.to_string());
    f("second_repl_offset", m.second_offset.to_string());
    f(
        "repl_backlog_active",
        u8::from(m.backlog_active).to_string(),
    );
    f("repl_backlog_size", m.backlog_size.to_string());
    f(
        "repl_backlog_first_byte_offset",
        m.backlog_first_byte.to_string(),
    );
    f("repl_backlog_histlen", m.backlog_histlen.to_string());
    out
}

/// The replica settings, by directive name (aliases included), with their defaults.
pub const SETTING_DEFAULTS: &[(&str, &str)] = &[
    ("replica-read-only", "yes"),
    ("slave-read-only", "yes"),
    ("replica-serve-stale-data", "yes"),
    ("slave-serve-stale-data", "yes"),
    ("repl-timeout", "60"),
    ("repl-ping-replica-period", "10"),
    ("repl-ping-slave-period", "10"),
    ("replica-priority", "100"),
    ("slave-priority", "100"),
    ("masterauth", ""),
    ("masteruser", ""),
    ("replica-announce-ip", ""),
    ("slave-announce-ip", ""),
    ("replica-announce-port", "0"),
    ("slave-announce-port", "0"),
    ("replica-announced", "yes"),
    ("min-replicas-to-write", "0"),
    ("min-slaves-to-write", "0"),
    ("min-replicas-max-lag", "10"),
    ("min-slaves-max-lag", "10"),
    ("min-replicas-ack", "0"),
    ("min-replicas-ack-timeout", "1000"),
    ("shutdown-timeout", "10"),
];

/// The other name of an aliased setting.
pub fn alias(name: &str) -> Option<&'static str> {
    Some(match name {
        "replica-read-only" => "slave-read-only",
        "slave-read-only" => "replica-read-only",
        "replica-serve-stale-data" => "slave-serve-stale-data",
        "slave-serve-stale-data" => "replica-serve-stale-data",
        "replica-priority" => "slave-priority",
        "slave-priority" => "replica-priority",
        "replica-announce-ip" => "slave-announce-ip",
        "slave-announce-ip" => "replica-announce-ip",
        "replica-announce-port" => "slave-announce-port",
        "slave-announce-port" => "replica-announce-port",
        "repl-ping-replica-period" => "repl-ping-slave-period",
        "repl-ping-slave-period" => "repl-ping-replica-period",
        "min-replicas-to-write" => "min-slaves-to-write",
        "min-slaves-to-write" => "min-replicas-to-write",
        "min-replicas-max-lag" => "min-slaves-max-lag",
        "min-slaves-max-lag" => "min-replicas-max-lag",
        _ => return None,
    })
}

/// Applies a replica setting (config file, flag, CONFIG SET). `Ok(None)`: not one of
/// ours; `Ok(Some(text))`: applied, CONFIG GET shows `text`. Errors carry the CONFIG SET
/// wording.
pub fn set_setting(name: &str, value: &str) -> Result<Option<String>, String> {
    let yes_no = |v: &str| match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".to_string()),
    };
    let num = |v: &str, min: u64| {
        v.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= min && *n <= i32::MAX as u64)
            .ok_or_else(|| format!("argument must be between {min} and 2147483647 inclusive"))
    };
    let shown = match name {
        "replica-read-only" | "slave-read-only" => {
            let on = yes_no(value)?;
            SETTINGS.read_only.store(on, Ordering::Relaxed);
            if on { "yes" } else { "no" }.to_string()
        }
        "replica-serve-stale-data" | "slave-serve-stale-data" => {
            let on = yes_no(value)?;
            SETTINGS.serve_stale.store(on, Ordering::Relaxed);
            if on { "yes" } else { "no" }.to_string()
        }
        "repl-timeout" => {
            let n = num(value, 1)?;
            SETTINGS.timeout_secs.store(n, Ordering::Relaxed);
            n.to_string()
        }
        "repl-ping-replica-period" | "repl-ping-slave-period" => {
            let n = num(value, 1)?;
            SETTINGS.ping_period_secs.store(n, Ordering::Relaxed);
            n.to_string()
        }
        "replica-priority" | "slave-priority" => {
            let n = num(value, 0)?;
            SETTINGS.priority.store(n, Ordering::Relaxed);
            n.to_string()
        }
        "min-replicas-to-write" | "min-slaves-to-write" => {
            let n = num(value, 0)?;
            SETTINGS.min_replicas.store(n, Ordering::Relaxed);
            n.to_string()
        }
        "min-replicas-max-lag" | "min-slaves-max-lag" => {
            let n = num(value, 0)?;
            SETTINGS.min_replicas_max_lag.store(n, Ordering::Relaxed);
            n.to_string()
        }
        "min-replicas-ack" => {
            let n = num(value, 0)?;
            SETTINGS.min_replicas_ack.store(n, Ordering::Relaxed);
            n.to_string()
        }
        "min-replicas-ack-timeout" => {
            let n = num(value, 1)?;
            SETTINGS.ack_timeout_ms.store(n, Ordering::Relaxed);
            n.to_string()
        }
        "shutdown-timeout" => {
            let n = num(value, 0)?;
            SETTINGS.shutdown_timeout_secs.store(n, Ordering::Relaxed);
            n.to_string()
        }
        "masterauth" => {
            lock(&SETTINGS.auth).1 = value.to_string();
            value.to_string()
        }
        "masteruser" => {
            lock(&SETTINGS.auth).0 = value.to_string();
            value.to_string()
        }
        "replica-announce-ip" | "slave-announce-ip" => {
            *lock(&SETTINGS.announce_ip) = value.trim().to_string();
            value.trim().to_string()
        }
        "replica-announce-port" | "slave-announce-port" => {
            let n = num(value, 0)?;
            if n > 65535 {
                return Err("argument must be between 0 and 65535 inclusive".into());
            }
            SETTINGS.announce_port.store(n, Ordering::Relaxed);
            n.to_string()
        }
        "replica-announced" => {
            let on = yes_no(value)?;
            SETTINGS.announced.store(on, Ordering::Relaxed);
            if on { "yes" } else { "no" }.to_string()
        }
        _ => return Ok(None),
    };
    refresh_gate(&state());
    Ok(Some(shown))
}

pub use crate::config::parse_replicaof;

/// The replica settings as the configuration sees them (`config::register_settings`).
pub static SETTING_GROUPS: &[crate::config::SettingGroup] = &[crate::config::SettingGroup {
    defaults: SETTING_DEFAULTS,
    alias,
    set: set_setting,
}];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_offsets_leave_out_getack() {
        let argv: Vec<Bytes> = ["REPLCONF", "GETACK", "*"]
            .iter()
            .map(|s| Bytes::from(*s))
            .collect();
        assert_eq!(
            encoded_len(&argv),
            b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n".len() as i64
        );
    }

    #[test]
    fn refusals_follow_the_gate_bits() {
        assert_eq!(refusal(0, WRITE), None);
        assert_eq!(refusal(GATE_READONLY, WRITE), Some(error::READONLY));
        assert_eq!(refusal(GATE_READONLY, 0), None);
        assert_eq!(refusal(GATE_STALE, STALE), None);
        assert_eq!(refusal(GATE_STALE, 0), Some(error::MASTERDOWN));
        assert_eq!(
            refusal(GATE_STALE | GATE_READONLY, WRITE),
            Some(error::READONLY)
        );
    }

    #[test]
    fn replicaof_directive() {
        assert_eq!(
            parse_replicaof("127.0.0.1 6379"),
            Ok(Some(("127.0.0.1".into(), 6379)))
        );
        assert_eq!(parse_replicaof(""), Ok(None));
        assert_eq!(parse_replicaof("no one"), Ok(None));
        assert!(parse_replicaof("h 70000").is_err());
        assert!(parse_replicaof("h").is_err());
        assert_eq!(new_replid().len(), 40);
    }
}
