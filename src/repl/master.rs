//! The master side of replication in Redis's own protocol: a stock `redis-server` (or
//! `redis-cli --replica` / `--rdb`) attaches to shardis as to a Redis master and gets one RDB
//! and one merged command stream with one offset.
//!
//! Who runs what:
//! - Shard 0 is the *hub*. It owns the merged stream: every shard pushes its new journal
//!   records to it (`Msg::Control`, once per loop pass, only while replication runs); the
//!   hub merges them (each shard's order kept, a multi-shard transaction's records sent only
//!   once all of its `parts` shards' runs have arrived, wrapped in MULTI/EXEC; FLUSHALL,
//!   FLUSHDB and SWAPDB once; PING markers dropped), puts `SELECT n` where the database
//!   changes, keeps a backlog of `repl-backlog-size` bytes for PSYNC, and sends each new
//!   chunk to the shards that host replica connections. It also runs full syncs (a cut of
//!   every shard under `lock_all`), WAIT, and the `repl-ping-replica-period` PING.
//! - Every shard: pushes its records (`on_pass`), hosts the replica connections it accepted
//!   (REPLCONF, PSYNC/SYNC handlers, writing stream chunks to them, the replica class of
//!   `client-output-buffer-limit`).
//! - INFO, ROLE and WAIT read the replica list and the offsets from statics: they are
//!   touched on handshakes, ACKs (once a second per replica) and INFO, never per write.
//!
//! Until a replica first attaches nothing here runs: journals stay off and the per-pass hook
//! is one `Option` test.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::commands::args::is;
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, ADMIN, ALLOW_BUSY, CAT_ADMIN, CAT_CONNECTION, CAT_DANGEROUS, FAST,
    LOADING, NOSCRIPT, NO_ASYNC_LOADING, NO_MULTI, STALE,
};
use crate::engine::Engine;
use crate::engine::{ShardFn, Ticket};
use crate::error::{CmdError, CmdResult};
use crate::persist::save::ShardPart;
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::server::cmds::FrontCtx;
use crate::server::connection::Conn;
use crate::server::worker::{front, to_front, Worker};
use crate::shard::journal::{self, TxTag};

pub(super) const HUB: usize = 0;
const RP: &str = "replication";

/// Each shard's journal backlog while replication runs: records wait there only until the
/// loop pass pushes them to the hub, so this bounds what one pass may write before the
/// replicas must resync.
const JOURNAL_CAP: usize = 16 << 20;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("replconf", -1, ADMIN | NOSCRIPT | LOADING | STALE | ALLOW_BUSY, KeySpec::none(), Exec::Conn(crate::front!(replconf)))
        .doc(RP, "3.0.0", "An internal command for configuring the replication stream.", ""),
    CommandSpec::new("psync", -3, ADMIN | NOSCRIPT | NO_ASYNC_LOADING | NO_MULTI, KeySpec::none(), Exec::Conn(crate::front!(psync)))
        .doc(RP, "2.8.0", "An internal command used in replication.", "replicationid offset"),
    CommandSpec::new("sync", 1, ADMIN | NOSCRIPT | NO_ASYNC_LOADING | NO_MULTI, KeySpec::none(), Exec::Conn(crate::front!(sync)))
        .doc(RP, "1.0.0", "An internal command used in replication.", ""),
    CommandSpec::new("wait", 3, NOSCRIPT, KeySpec::none(), Exec::Conn(crate::front!(wait)))
        .acl(CAT_CONNECTION)
        .doc("generic", "3.0.0", "Blocks until the asynchronous replication of all preceding write commands sent by the connection is completed.", "numreplicas timeout"),
    CommandSpec::new("role", 1, NOSCRIPT | LOADING | STALE | FAST, KeySpec::none(), Exec::Conn(crate::front!(role)))
        .acl(CAT_ADMIN | CAT_DANGEROUS)
        .doc("server", "2.8.12", "Returns the replication role.", ""),
];

// ----- what INFO, ROLE and WAIT read ---------------------------------------------------------

/// A replica attached once: journals are on and shards push to the hub.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// master_repl_offset: bytes of the merged stream so far.
static OFFSET: AtomicU64 = AtomicU64::new(0);
static BACKLOG_FIRST: AtomicU64 = AtomicU64::new(0);
static BACKLOG_HISTLEN: AtomicU64 = AtomicU64::new(0);
static BACKLOG_SIZE: AtomicU64 = AtomicU64::new(1 << 20);
static SYNC_FULL: AtomicU64 = AtomicU64::new(0);
static SYNC_PARTIAL_OK: AtomicU64 = AtomicU64::new(0);
static SYNC_PARTIAL_ERR: AtomicU64 = AtomicU64::new(0);
/// WAITs pending on the hub: ACKs then wake it.
static WAITS: AtomicUsize = AtomicUsize::new(0);
/// `client-output-buffer-limit replica`: hard bytes, soft bytes, soft seconds.
static OBUF: [AtomicU64; 3] = [
    AtomicU64::new(256 << 20),
    AtomicU64::new(64 << 20),
    AtomicU64::new(60),
];

/// One attached replica, as INFO and ROLE show it.
struct Replica {
    id: u64,
    shard: usize,
    token: u64,
    ip: String,
    port: u16,
    online: bool,
    /// Shown by INFO/ROLE/WAIT (an `rdb-only` client is not).
    listed: bool,
    ack: u64,
    ack_at: Instant,
    /// Attached with SYNC (`redis-cli --replica`): it never acknowledges, so
    /// `repl-timeout` does not drop it (Redis's CLIENT_PRE_PSYNC).
    pre_psync: bool,
}

static REPLICAS: Mutex<Vec<Replica>> = Mutex::new(Vec::new());

fn replicas<T>(f: impl FnOnce(&mut Vec<Replica>) -> T) -> T {
    match REPLICAS.lock() {
        Ok(mut g) => f(&mut g),
        Err(p) => f(&mut p.into_inner()),
    }
}

/// Counts the replicas whose last acknowledgement is within `min-replicas-max-lag` seconds
/// (Redis's "good" replicas) for the `min-replicas-to-write` gate, and until when the
/// `min-replicas-to-write`-th freshest acknowledgement keeps them good: writes check that
/// deadline against the clock, so a master that was frozen (SIGSTOP) or cut off refuses
/// writes from its first pass back, before any recount (fencing). Shard 0 calls it once a
/// second; every acknowledgement calls it too.
pub fn refresh_good_replicas() {
    let settings = &crate::repl::SETTINGS;
    let max_lag = settings.min_replicas_max_lag.load(Ordering::Relaxed);
    let min = settings.min_replicas.load(Ordering::Relaxed) as usize;
    let now = Instant::now();
    let now_ms = crate::shard::now_ms();
    let mut ages: Vec<u64> = replicas(|v| {
        v.iter()
            .filter(|r| r.listed && r.online)
            .map(|r| now.saturating_duration_since(r.ack_at).as_millis() as u64)
            .collect()
    });
    ages.sort_unstable();
    let n = ages.iter().filter(|a| *a / 1000 <= max_lag).count() as u64;
    // Lag counts whole seconds, as Redis's: good while age < (max_lag + 1) s.
    let until = match min.checked_sub(1).and_then(|i| ages.get(i)) {
        Some(age) if min > 0 => (now_ms + (max_lag + 1) * 1000).saturating_sub(*age),
        _ => 0,
    };
    crate::repl::set_good_replicas(n, until);
}

/// Whether replicas were ever served (journals shipping to the hub).
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// `repl-backlog-size` as the hub last read it.
pub fn backlog_size() -> usize {
    BACKLOG_SIZE.load(Ordering::Relaxed) as usize
}

/// A promotion (`repl::promote`), on every shard: journal on, records shipped to the hub
/// from this point on. Returns the journal offset shipping starts at.
pub fn start_shipping(tw: &mut Engine) -> u64 {
    journal::enable(&mut tw.shard, JOURNAL_CAP);
    journal::flush(&mut tw.shard);
    let next = tw.shard.journal.as_ref().map_or(0, |j| j.next());
    tw.ship = Some(next);
    next
}

/// A promotion, on the hub once every shard ships: the backlog holds the old master's
/// stream up to `offset` (`chunks` by first offset) and this node's stream continues at
/// `offset + 1`, so the old master's replicas resync partially (PSYNC2).
pub fn seed_backlog(w: &mut Worker, offset: i64, chunks: Vec<(i64, Bytes)>, cursors: &[u64]) {
    ensure_hub(w);
    let h = hub(w);
    // Every shard's records are merged up to where it starts shipping (WAIT and held
    // writes compare their journal offsets with this).
    for (r, c) in h.received.iter_mut().zip(cursors) {
        *r = (*r).max(*c);
    }
    // A hub that relayed the old master's stream to sub-replicas already holds it, with
    // the same offsets: they continue with this node's stream without a resync.
    let relayed = std::mem::take(&mut h.relay) && h.offset == offset.max(0) as u64;
    if !relayed {
        h.load(offset, chunks);
    }
    // The first command of this node's stream says its database.
    h.last_db = None;
    h.publish();
    ACTIVE.store(true, Ordering::Relaxed);
}

/// Publishes how many listed replicas are online (the `min-replicas-ack` gate reads it).
fn count_online() {
    let n = replicas(|v| v.iter().filter(|r| r.listed && r.online).count()) as u64;
    crate::repl::SETTINGS
        .online_replicas
        .store(n, Ordering::Relaxed);
}

/// Online replicas that acknowledged `offset`.
fn acked(offset: u64) -> i64 {
    replicas(|v| v.iter().filter(|r| r.listed && r.has_acked(offset)).count() as i64)
}

impl Replica {
    /// Whether it is the replica FAILOVER TO names (Redis's findReplica: the address it
    /// announced or connected from, and its listening port).
    fn is_at(&self, host: &str, port: u16) -> bool {
        self.listed && self.ip.eq_ignore_ascii_case(host) && self.port == port
    }

    /// Online and has acknowledged `offset` (WAIT, FAILOVER's target, SHUTDOWN's wait).
    fn has_acked(&self, offset: u64) -> bool {
        self.online && self.ack >= offset
    }
}

/// FAILOVER's target: the replica at `to` (or the first online one, when `None`) if it has
/// acknowledged `offset`, by the address FAILOVER TO names it with.
fn caught_up(to: Option<&(String, u16)>, offset: u64) -> Option<(String, u16)> {
    replicas(|v| {
        v.iter()
            .filter(|r| r.listed && r.has_acked(offset))
            .find(|r| to.is_none_or(|(h, p)| r.is_at(h, *p)))
            .map(|r| (r.ip.clone(), r.port))
    })
}

/// FAILOVER's checks of its target: `Some(online)` when a listed replica has that address.
pub(super) fn find_replica(host: &str, port: u16) -> Option<bool> {
    replicas(|v| v.iter().find(|r| r.is_at(host, port)).map(|r| r.online))
}

/// Whether any replica is attached (FAILOVER needs one).
pub(super) fn any_replica() -> bool {
    replicas(|v| v.iter().any(|r| r.listed))
}

/// FAILOVER's wait: once every shard's journal up to `wants` is merged, until the target
/// acknowledges the merged offset or `deadline`; then `failover::wait_over` on the hub.
pub(super) fn failover_wait(
    w: &mut Worker,
    wants: Vec<u64>,
    to: Option<(String, u16)>,
    deadline: Option<Instant>,
) {
    hub_wait(
        w,
        Wait {
            origin: HUB,
            for_: Waiter::Failover(to),
            wants,
            num: 1,
            deadline,
            target: None,
        },
    );
}

/// FAILOVER ABORT while waiting: the wait is dropped.
pub(super) fn failover_unwait(w: &mut Worker) {
    let h = hub(w);
    h.waits.retain(|wt| !matches!(wt.for_, Waiter::Failover(_)));
    WAITS.store(h.waits.len(), Ordering::Relaxed);
}

/// SHUTDOWN's wait: once every shard's journal up to `wants` is merged, until every replica
/// acknowledges the merged offset or `deadline`; then `shutdown::wait_over` on the hub.
pub(super) fn shutdown_wait(w: &mut Worker, wants: Vec<u64>, deadline: Instant) {
    hub_wait(
        w,
        Wait {
            origin: HUB,
            for_: Waiter::Shutdown,
            wants,
            num: 1,
            deadline: Some(deadline),
            target: None,
        },
    );
}

/// SHUTDOWN ABORT while waiting: the wait is dropped.
pub(super) fn shutdown_unwait(w: &mut Worker) {
    let h = hub(w);
    h.waits.retain(|wt| !matches!(wt.for_, Waiter::Shutdown));
    WAITS.store(h.waits.len(), Ordering::Relaxed);
}

/// Whether every replica (online or still syncing) has acknowledged `offset`: Redis's
/// isReadyToShutdown. True with none.
fn all_acked(offset: u64) -> bool {
    replicas(|v| v.iter().filter(|r| r.listed).all(|r| r.has_acked(offset)))
}

/// At shutdown, Redis's lines for the replicas that have not acknowledged `target` (the
/// offset holding every write), then how many are in sync; nothing without replicas.
pub(super) fn log_lagging(target: u64) {
    let now = Instant::now();
    let cur = offset();
    let (lines, total) = replicas(|v| {
        let listed: Vec<&Replica> = v.iter().filter(|r| r.listed).collect();
        let lines: Vec<String> = listed
            .iter()
            .filter(|r| !r.has_acked(target))
            .map(|r| {
                let lag = if r.online {
                    now.saturating_duration_since(r.ack_at).as_secs()
                } else {
                    0
                };
                format!(
                    "Lagging replica {}:{} reported offset {} behind master, lag={lag}, \
                     state={}.",
                    r.ip,
                    r.port,
                    cur.saturating_sub(r.ack),
                    if r.online { "online" } else { "wait_bgsave" }
                )
            })
            .collect();
        (lines, listed.len())
    });
    if total == 0 {
        return;
    }
    for l in &lines {
        crate::log::warning(l);
    }
    crate::log::notice(&format!(
        "{} of {total} replicas are in sync when shutting down.",
        total - lines.len()
    ));
}

/// The merged offset this master's stream is at (master_repl_offset).
pub(super) fn offset() -> u64 {
    OFFSET.load(Ordering::Relaxed)
}

/// INFO stats: sync_full, sync_partial_ok, sync_partial_err.
pub fn sync_stats() -> [u64; 3] {
    [
        SYNC_FULL.load(Ordering::Relaxed),
        SYNC_PARTIAL_OK.load(Ordering::Relaxed),
        SYNC_PARTIAL_ERR.load(Ordering::Relaxed),
    ]
}

/// The replication id this master serves PSYNC with (a promoted replica's new one).
fn current_replid() -> String {
    crate::repl::master_fields().replid.clone()
}

/// INFO replication's `slaveN:` lines (with the `slaveN:` prefix) for the attached
/// replicas: a master's, or a replica's own replicas that it relays the stream to.
pub(super) fn replica_lines() -> Vec<String> {
    let now = Instant::now();
    replicas(|v| {
        v.iter()
            .filter(|r| r.listed)
            .enumerate()
            .map(|(i, r)| {
                let lag = now.saturating_duration_since(r.ack_at).as_secs();
                format!(
                    "slave{i}:ip={},port={},state={},offset={},lag={}",
                    r.ip,
                    r.port,
                    if r.online { "online" } else { "wait_bgsave" },
                    r.ack,
                    if r.online { lag } else { 0 }
                )
            })
            .collect()
    })
}

/// Bytes the master's backlog holds (INFO `repl_backlog_histlen`; 0 before a replica).
pub fn backlog_histlen() -> u64 {
    BACKLOG_HISTLEN.load(Ordering::Relaxed)
}

/// The `# Replication` fields of a master, in Redis's order.
/// `backlog_size` is `repl-backlog-size` as configured (Redis shows that; the hub takes a
/// new value at its next timer).
pub fn info_replication(f: &mut dyn FnMut(&str, &dyn std::fmt::Display), backlog_size: u64) {
    let lines = replica_lines();
    let active = ACTIVE.load(Ordering::Relaxed);
    f("role", &"master");
    f("connected_slaves", &lines.len());
    for l in &lines {
        if let Some((k, v)) = l.split_once(':') {
            f(k, &v);
        }
    }
    f("master_failover_state", &super::failover::state_name());
    let (replid, replid2, second) = {
        let m = crate::repl::master_fields();
        (m.replid.clone(), m.replid2.clone(), m.second_offset)
    };
    f("master_replid", &replid);
    f("master_replid2", &replid2);
    f("master_repl_offset", &OFFSET.load(Ordering::Relaxed));
    f("second_repl_offset", &second);
    f("repl_backlog_active", &u8::from(active));
    f("repl_backlog_size", &backlog_size);
    f(
        "repl_backlog_first_byte_offset",
        &if active {
            BACKLOG_FIRST.load(Ordering::Relaxed)
        } else {
            0
        },
    );
    f(
        "repl_backlog_histlen",
        &BACKLOG_HISTLEN.load(Ordering::Relaxed),
    );
}

// ----- per-connection and per-shard state -------------------------------------------------

/// A connection's replication handshake and, once it sent PSYNC/SYNC, its link state.
#[derive(Default)]
pub struct Link {
    /// REPLCONF listening-port / ip-address.
    pub port: u16,
    pub ip: Option<String>,
    /// PSYNC or SYNC arrived: this connection is a replica.
    pub replica: bool,
    /// REPLCONF rdb-only 1: closed once the RDB is sent.
    pub rdb_only: bool,
    /// REPLCONF rdb-filter-only functions: its RDB has the function libraries and no keys
    /// (`redis-cli --functions-rdb`).
    pub functions_only: bool,
    /// The next stream offset this replica needs; `None` until its RDB or CONTINUE is out.
    next: Option<u64>,
    /// When its pending output first passed the soft limit.
    soft_since: Option<Instant>,
    /// Stream bytes queued behind the RDB or backlog payload while that may still be
    /// unsent (the output limit counts only those).
    after_payload: Option<u64>,
    /// The stream since the cut, held while this replica's RDB is still being serialised
    /// (the shards step their snapshot while serving); sent right after the RDB.
    behind_rdb: Option<Vec<u8>>,
}

/// Whether the connection is a replica link (never timed out, its own output limit, `S`).
pub fn is_replica(c: &Conn) -> bool {
    c.replica_link.as_ref().is_some_and(|l| l.replica)
}

/// A shard's replication state, created when a replica attaches anywhere.
#[derive(Default)]
pub struct ShardRepl {
    /// Replica connections of this shard (tokens).
    conns: Vec<u64>,
    hub: Option<Box<Hub>>,
    /// When this shard's replica output is next written, if some waits (`deliver`).
    flush_at: Option<Instant>,
}

/// How long stream bytes may wait in a replica's output buffer for more to join them: one
/// send per window instead of one per loop pass, so a master at pipeline 1 is not paying a
/// loopback send (the receiver's TCP work included) for every few writes. WAIT and
/// `min-replicas-ack` send at once.
const FLUSH_WINDOW: Duration = Duration::from_micros(FLUSH_US);
const FLUSH_US: u64 = 300;
/// A replica's pending output past this goes out at once.
const FLUSH_BYTES: usize = 32 * 1024;

/// One journal record on its way through the hub.
struct Rec {
    off: u64,
    db: u32,
    tx: Option<TxTag>,
    cmd: Bytes,
}

/// A PSYNC or SYNC waiting for the hub.
struct SyncReq {
    shard: usize,
    token: u64,
    id: u64,
    sync: bool,
    rdb_only: bool,
    functions_only: bool,
    psync: Option<(Bytes, i64)>,
    ip: String,
    port: u16,
}

struct Wait {
    origin: usize,
    /// Who is answered: a WAIT's ticket, or a client's held write replies.
    for_: Waiter,
    /// Per shard, the journal offset the WAIT's writes end at.
    wants: Vec<u64>,
    num: i64,
    deadline: Option<Instant>,
    /// The merged offset to be acknowledged, once every `wants` is merged.
    target: Option<u64>,
}

enum Waiter {
    /// WAIT: answered with the count.
    Wait(Ticket),
    /// `min-replicas-ack`: the connection (token) and its held replies, released or
    /// replaced by `-NOREPLICAS`.
    Hold(u64, Vec<Hold>),
    /// FAILOVER: its target replica (or any, when `None`) must acknowledge the offset.
    Failover(Option<(String, u16)>),
    /// SHUTDOWN's grace period: every replica must acknowledge the offset.
    Shutdown,
}

/// A connection's write replies held for the replicas (`min-replicas-ack`).
#[derive(Default)]
pub struct AckHolds {
    holds: Vec<Hold>,
    /// Reply slots dropped as they come due: writes whose wait timed out, answered with
    /// the error in their hold slot instead.
    pub discard: Vec<u64>,
}

/// One held write: the empty slot ahead of its reply, and the reply's slot.
#[derive(Clone, Copy)]
struct Hold {
    gate: u64,
    reply: Option<u64>,
    started: bool,
}

/// The merged stream (shard 0 only).
pub struct Hub {
    queues: Vec<VecDeque<Rec>>,
    /// Per shard, the journal offset after the last record received.
    received: Vec<u64>,
    offset: u64,
    chunks: VecDeque<(u64, Bytes)>,
    held: usize,
    last_db: Option<u32>,
    /// A full sync's cut is being taken: nothing is merged until it is in.
    cutting: bool,
    /// The cut is in and the stream flows again; the shards are still serialising its
    /// RDB (a new full sync waits for it).
    serialising: bool,
    /// The merged stream offset at the last cut (where its replicas' streams start).
    cut_offset: u64,
    in_cut: Vec<SyncReq>,
    queued: Vec<SyncReq>,
    waits: Vec<Wait>,
    /// This node is a replica: the stream is its master's, relayed as applied with the
    /// master's offsets (Redis's proxying to sub-replicas), not merged from the journals.
    relay: bool,
    last_ping: Instant,
    last_refresh: Instant,
    /// When the last `REPLCONF GETACK` for held writes went out (at most one per 100 ms;
    /// replicas acknowledge every batch for a second after one).
    last_getack: Option<Instant>,
}

impl Hub {
    fn new(n: usize) -> Hub {
        Hub {
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            received: vec![0; n],
            offset: 0,
            chunks: VecDeque::new(),
            held: 0,
            last_db: None,
            cutting: false,
            serialising: false,
            cut_offset: 0,
            in_cut: Vec::new(),
            queued: Vec::new(),
            waits: Vec::new(),
            relay: false,
            last_ping: Instant::now(),
            last_refresh: Instant::now(),
            last_getack: None,
        }
    }

    fn first(&self) -> u64 {
        self.chunks.front().map_or(self.offset + 1, |c| c.0)
    }

    /// The backlog becomes a master's stream up to `offset`, as captured (by first offset).
    fn load(&mut self, offset: i64, chunks: impl IntoIterator<Item = (i64, Bytes)>) {
        self.offset = offset.max(0) as u64;
        self.chunks = chunks
            .into_iter()
            .filter(|(s, b)| *s > 0 && !b.is_empty())
            .map(|(s, b)| (s as u64, b))
            .collect();
        self.held = self.chunks.iter().map(|c| c.1.len()).sum();
    }

    /// Appends merged bytes to the backlog; returns the chunk and its first offset.
    fn append(&mut self, b: Bytes) -> Option<(u64, Bytes)> {
        if b.is_empty() {
            return None;
        }
        let start = self.offset + 1;
        self.offset += b.len() as u64;
        self.held += b.len();
        self.chunks.push_back((start, b.clone()));
        let cap = BACKLOG_SIZE.load(Ordering::Relaxed) as usize;
        while let Some((_, f)) = self.chunks.front() {
            if self.held - f.len() < cap {
                break;
            }
            self.held -= f.len();
            self.chunks.pop_front();
        }
        self.publish();
        Some((start, b))
    }

    fn publish(&self) {
        OFFSET.store(self.offset, Ordering::Relaxed);
        BACKLOG_FIRST.store(self.first(), Ordering::Relaxed);
        BACKLOG_HISTLEN.store(self.held as u64, Ordering::Relaxed);
    }

    /// The backlog from `from` on, if it holds `from`.
    fn since(&self, from: u64) -> Option<Vec<u8>> {
        if from < self.first() || from > self.offset + 1 {
            return None;
        }
        let mut out = Vec::new();
        for (start, b) in &self.chunks {
            let end = start + b.len() as u64;
            if end <= from {
                continue;
            }
            let skip = from.saturating_sub(*start) as usize;
            out.extend_from_slice(b.get(skip..).unwrap_or_default());
        }
        Some(out)
    }

    /// Per shard, the journal offset up to which records are merged.
    fn merged_to(&self, s: usize) -> u64 {
        match self.queues.get(s).and_then(|q| q.front()) {
            Some(r) => r.off,
            None => self.received.get(s).copied().unwrap_or(0),
        }
    }

    fn put(&mut self, out: &mut Vec<u8>, db: u32, cmd: &[u8]) {
        if self.last_db != Some(db) {
            let d = db.to_string();
            out.extend_from_slice(
                format!("*2\r\n$6\r\nSELECT\r\n${}\r\n{d}\r\n", d.len()).as_bytes(),
            );
            self.last_db = Some(db);
        }
        out.extend_from_slice(cmd);
    }

    /// What is queued when it is one untagged run in the database the stream is in (the
    /// usual loop pass with one shard writing): the stream continues with its bytes as they
    /// are, with no copy.
    fn take_single(&mut self) -> Option<Bytes> {
        let mut found = None;
        for (s, q) in self.queues.iter().enumerate() {
            match (q.len(), found) {
                (0, _) => {}
                (1, None) => found = Some(s),
                _ => return None,
            }
        }
        let q = self.queues.get_mut(found?)?;
        if q.front()
            .is_some_and(|r| r.tx.is_none() && Some(r.db) == self.last_db)
        {
            return q.pop_front().map(|r| r.cmd);
        }
        None
    }

    /// Merges what can be merged (records before `limit[s]` only, when given) into stream
    /// bytes.
    fn merge(&mut self, limit: Option<&[u64]>) -> Vec<u8> {
        // Sized once for everything queued (a pass's records), not grown by doubling.
        let queued: usize = self.queues.iter().flatten().map(|r| r.cmd.len()).sum();
        let mut out = Vec::with_capacity(queued + 64);
        let n = self.queues.len();
        let ok = |s: usize, r: &Rec| limit.is_none_or(|l| l.get(s).is_some_and(|&c| r.off < c));
        loop {
            let mut progress = false;
            for s in 0..n {
                while let Some(r) = self.queues[s].front() {
                    if r.tx.is_some() || !ok(s, r) {
                        break;
                    }
                    if let Some(r) = self.queues[s].pop_front() {
                        self.put(&mut out, r.db, &r.cmd);
                    }
                    progress = true;
                }
                let Some(tag) = self.queues[s]
                    .front()
                    .filter(|r| ok(s, r))
                    .and_then(|r| r.tx)
                else {
                    continue;
                };
                let ready: Vec<usize> = (0..n)
                    .filter(|&o| {
                        self.queues[o]
                            .front()
                            .is_some_and(|h| h.tx == Some(tag) && ok(o, h))
                    })
                    .collect();
                if ready.len() < tag.parts as usize {
                    continue;
                }
                // The group: each ready shard's run, server-wide commands once, markers out.
                let mut group: Vec<(u32, Bytes)> = Vec::new();
                for o in ready {
                    while self.queues[o].front().is_some_and(|h| h.tx == Some(tag)) {
                        let Some(h) = self.queues[o].pop_front() else {
                            break;
                        };
                        if h.cmd.as_ref() == journal::MARKER {
                            continue;
                        }
                        if is_global(&h.cmd) && group.iter().any(|g| g.0 == h.db && g.1 == h.cmd) {
                            continue;
                        }
                        group.push((h.db, h.cmd));
                    }
                }
                let wrap = group.len() > 1;
                for (i, (db, cmd)) in group.iter().enumerate() {
                    if wrap && i == 0 {
                        // SELECT goes before MULTI, as Redis propagates it.
                        if self.last_db != Some(*db) {
                            self.put(&mut out, *db, b"");
                        }
                        out.extend_from_slice(b"*1\r\n$5\r\nMULTI\r\n");
                    }
                    self.put(&mut out, *db, cmd);
                }
                if wrap {
                    out.extend_from_slice(b"*1\r\n$4\r\nEXEC\r\n");
                }
                progress = true;
            }
            if !progress {
                return out;
            }
        }
    }
}

/// FLUSHALL, FLUSHDB, SWAPDB: recorded by every shard, applied once.
fn is_global(cmd: &[u8]) -> bool {
    [&b"FLUSHALL"[..], b"FLUSHDB", b"SWAPDB"]
        .iter()
        .any(|n| cmd.len() > 8 + n.len() && cmd[8..].starts_with(n) && cmd.starts_with(b"*"))
        && cmd.get(4) == Some(&b'$')
}

// ----- every shard: pushing records, writing to replica connections -------------------------

/// The loop pass's hook (only while this shard has replication state): pushes new journal
/// records to the hub. The hub's own records merge in place, so the stream leaves with this
/// pass's replies instead of two passes later (each of them an extra `io_uring_enter`).
#[inline]
pub fn on_pass(w: &mut Worker) {
    let Some(cursor) = w.eng.ship else {
        return;
    };
    let newer = w
        .eng
        .shard
        .journal
        .as_ref()
        .is_some_and(|j| j.next() > cursor);
    if !newer {
        return;
    }
    // A job already queued here may carry an earlier push: then order says post behind it.
    if w.eng.id != HUB || !w.eng.local.is_empty() {
        push_now(&mut w.eng);
        return;
    }
    match take_records(&mut w.eng) {
        Some(Taken::Recs(recs, to)) => hub_push(w, HUB, recs, to),
        Some(Taken::Lost(to)) => hub_lost(w, HUB, to),
        None => {}
    }
}

/// What `take_records` found since the last push.
enum Taken {
    Recs(Vec<Rec>, u64),
    /// The journal dropped records before they were pushed; the stream resumes at this offset.
    Lost(u64),
}

/// Pushes every complete record since the last push to the hub; returns the journal offset
/// pushed up to. A transaction still holding this shard's lock keeps its run here until it
/// ends, so the hub always gets whole runs.
pub fn push_now(w: &mut Engine) -> u64 {
    let cursor = w.ship.unwrap_or(0);
    let s = w.id;
    match take_records(w) {
        Some(Taken::Lost(to)) => {
            w.post(HUB, front(move |hw: &mut Worker| hub_lost(hw, s, to)));
            to
        }
        Some(Taken::Recs(recs, to)) => {
            if !recs.is_empty() {
                w.post(HUB, front(move |hw: &mut Worker| hub_push(hw, s, recs, to)));
            }
            to
        }
        None => cursor,
    }
}

/// Takes the complete records since the last push out of the journal (or copies them, when
/// the append-only file also reads it) and moves the push cursor past them.
fn take_records(w: &mut Engine) -> Option<Taken> {
    let cursor = w.ship?;
    journal::flush(&mut w.shard);
    let j = w.shard.journal.as_mut()?;
    if j.next() == cursor {
        return None;
    }
    j.seal();
    // The only consumer (no append-only file pinning the backlog): the records move to
    // the hub, which keeps the backlog, instead of being copied and trimmed 16 MB later.
    let taken = if j.pin.is_none() {
        let open = j.tx;
        Some(j.take_from(cursor, open))
    } else {
        None
    };
    let (recs, to, lost) = match taken {
        Some(Ok((recs, to))) => {
            let out = recs
                .into_iter()
                .map(|r| Rec {
                    off: r.offset,
                    db: r.db,
                    tx: r.tx,
                    cmd: r.cmd,
                })
                .collect::<Vec<_>>();
            (out, to, false)
        }
        Some(Err(e)) => (Vec::new(), e.next, true),
        None => match j.read(cursor, usize::MAX) {
            Ok(recs) => {
                let open = j.tx;
                let mut out = Vec::new();
                let mut to = cursor;
                for r in recs {
                    if open.is_some() && r.tx == open {
                        break;
                    }
                    to = r.offset + r.cmd.len() as u64;
                    out.push(Rec {
                        off: r.offset,
                        db: r.db,
                        tx: r.tx,
                        cmd: r.cmd.clone(),
                    });
                }
                (out, to, false)
            }
            Err(e) => (Vec::new(), e.next, true),
        },
    };
    w.ship = Some(to);
    if lost {
        let s = w.id;
        crate::log::warning(&format!(
            "Replication: shard {s} wrote more than its journal backlog holds between two \
             pushes; replicas must resync"
        ));
        return Some(Taken::Lost(to));
    }
    Some(Taken::Recs(recs, to))
}

/// A stream chunk from the hub: written to this shard's replicas that are past their sync.
fn deliver(w: &mut Worker, start: u64, b: Bytes) {
    let tokens = w
        .master_repl
        .as_ref()
        .map(|r| r.conns.clone())
        .unwrap_or_default();
    let end = start + b.len() as u64;
    let mut later = false;
    // Someone waits for acknowledgements (WAIT, min-replicas-ack, FAILOVER): no window.
    let urgent = WAITS.load(Ordering::Relaxed) > 0
        || crate::repl::SETTINGS
            .min_replicas_ack
            .load(Ordering::Relaxed)
            > 0;
    for t in tokens {
        let Some(idx) = w.conn_by_token(t) else {
            continue;
        };
        let c = &mut w.conns[idx];
        let Some(link) = c.replica_link.as_mut() else {
            continue;
        };
        let Some(next) = link.next else { continue };
        if c.closing || next >= end {
            continue;
        }
        if let Some(held) = link.behind_rdb.as_mut() {
            // Its RDB is not out yet: the stream waits behind it (bounded by the
            // replica output limit, as Redis's buffer during a full sync).
            if next < start {
                link.behind_rdb = None;
                w.close_conn(idx);
                continue;
            }
            let part = b.get((next - start) as usize..).unwrap_or_default();
            held.extend_from_slice(part);
            link.next = Some(end);
            let hard = OBUF[0].load(Ordering::Relaxed);
            if hard > 0 && held.len() as u64 > hard {
                crate::log::warning(&format!(
                    "Replica {} passed the output limit while its RDB was serialised: dropped",
                    c.client.addr
                ));
                link.behind_rdb = None;
                w.close_conn(idx);
            }
            continue;
        }
        if next < start {
            crate::log::warning(&format!(
                "Replica {} missed stream bytes {next}..{start}: dropped",
                c.client.addr
            ));
            w.close_conn(idx);
            continue;
        }
        link.next = Some(end);
        let part = b.get((next - start) as usize..).unwrap_or_default();
        if let Some(n) = link.after_payload.as_mut() {
            *n += part.len() as u64;
        }
        c.push_raw(part);
        if urgent || c.pending_output() >= FLUSH_BYTES {
            w.mark_dirty(idx);
        } else {
            later = true;
        }
        check_obuf(w, idx);
    }
    if later {
        let r = w.master_repl.get_or_insert_with(Default::default);
        if r.flush_at.is_none() {
            let at = Instant::now() + FLUSH_WINDOW;
            r.flush_at = Some(at);
            w.after(at, flush_replicas);
        }
    }
}

/// The flush window ended: this shard's replicas get what waits for them.
fn flush_replicas(w: &mut Worker) {
    let tokens = match w.master_repl.as_mut() {
        Some(r) => {
            r.flush_at = None;
            r.conns.clone()
        }
        None => return,
    };
    for t in tokens {
        if let Some(idx) = w.conn_by_token(t) {
            if w.conns[idx].pending_output() > 0 {
                w.mark_dirty(idx);
            }
        }
    }
}

/// `client-output-buffer-limit replica`: a replica whose pending output passes the hard
/// limit, or stays over the soft one for its seconds, is closed (and will resync).
fn check_obuf(w: &mut Worker, idx: usize) {
    let [hard, soft, secs] = [0, 1, 2].map(|i| OBUF[i].load(Ordering::Relaxed));
    let Some(c) = w.conns.get_mut(idx) else {
        return;
    };
    let pending = c.pending_output() as u64;
    let Some(link) = c.replica_link.as_mut() else {
        return;
    };
    let used = match link.after_payload {
        Some(n) if pending > n => n,
        _ => {
            link.after_payload = None;
            pending
        }
    };
    let mut over = hard > 0 && used >= hard;
    if soft > 0 && used >= soft {
        let since = *link.soft_since.get_or_insert_with(Instant::now);
        over |= since.elapsed() >= Duration::from_secs(secs);
    } else {
        link.soft_since = None;
    }
    if over {
        crate::log::warning(&format!(
            "Client id={} addr={} flags=S scheduled to be closed ASAP for overcoming of output \
             buffer limits.",
            c.client.id, c.client.addr
        ));
        w.close_conn(idx);
    }
}

/// The RDB (or CONTINUE and backlog) for one replica: written, then the stream from `next`.
fn deliver_payload(w: &mut Worker, id: u64, token: u64, payload: Vec<u8>, next: u64) {
    let Some(idx) = w.conn_by_token(token) else {
        // It closed before the hub listed it: unlist it.
        replicas(|v| v.retain(|r| r.id != id));
        return;
    };
    let c = &mut w.conns[idx];
    let rdb_only = c.replica_link.as_ref().is_some_and(|l| l.rdb_only);
    let mut held = None;
    if let Some(l) = c.replica_link.as_mut() {
        // A stepped cut already set where its stream starts and held what came since.
        held = l.behind_rdb.take();
        if held.is_none() {
            l.next = Some(next);
        }
        // The RDB is not replication buffer: the output limit counts what follows it.
        l.after_payload = Some(held.as_ref().map_or(0, |h| h.len() as u64));
    }
    c.push_raw(&payload);
    if let Some(h) = held.filter(|_| !rdb_only) {
        c.push_raw(&h);
    }
    if rdb_only {
        c.closing = true;
    }
    w.mark_dirty(idx);
    replicas(|v| {
        if let Some(r) = v.iter_mut().find(|r| r.id == id) {
            r.online = true;
            r.ack_at = Instant::now();
        }
    });
    count_online();
    check_obuf(w, idx);
}

/// A connection (its token) closed: a replica leaves the lists.
pub fn on_close(w: &mut Worker, token: Option<u64>, c: &Conn) {
    if !is_replica(c) {
        return;
    }
    let id = c.client.id;
    // Named as Redis's replicationGetSlaveName: its address and the port it listens on,
    // when it said (REPLCONF listening-port), else the connection's.
    let name = replicas(|v| {
        let name = v
            .iter()
            .find(|r| r.id == id && r.port != 0)
            .map(|r| format!("{}:{}", r.ip, r.port));
        v.retain(|r| r.id != id);
        name
    })
    .unwrap_or_else(|| c.client.addr.to_string());
    count_online();
    if let Some(r) = w.master_repl.as_mut() {
        r.conns.retain(|t| Some(*t) != token);
    }
    crate::log::notice(&format!("Connection with replica {name} lost."));
}

// ----- relaying a master's stream to sub-replicas (this node a replica) ------------------

/// A sub-replica asked this replica for the stream: from now on the hub relays the
/// master's stream, starting with what the link captured up to the applied offset (so a
/// replica of the same master may even continue partially).
fn relay_start(w: &mut Worker) {
    let off = crate::repl::link_offset(w);
    let captured = crate::repl::stream_upto(w, off);
    let h = hub(w);
    h.relay = true;
    for q in h.queues.iter_mut() {
        q.clear();
    }
    h.load(off, captured);
    h.last_db = None;
    h.publish();
    ACTIVE.store(true, Ordering::Relaxed);
}

/// On the home shard, after the master link's input ran: what it applied since the last
/// call goes to the sub-replicas, byte for byte (Redis's `proxy` of the master stream).
pub fn relay(w: &mut Worker) {
    let from = match w.master_repl.as_ref().and_then(|r| r.hub.as_ref()) {
        Some(h) if h.relay && !h.cutting => h.offset as i64 + 1,
        _ => return,
    };
    let done = crate::repl::link_offset(w);
    if done < from {
        return;
    }
    match crate::repl::stream_range(w, from, done) {
        Some(bytes) => {
            let chunk = hub(w).append(Bytes::from(bytes));
            broadcast(w, chunk);
        }
        None => relay_attach(w, -1),
    }
}

/// The master link was (re)attached at `offset`: a relaying hub whose stream does not
/// continue there (a full sync, another master), or a hub that served this node's own
/// journals, starts over at `offset` and its replicas resync, as Redis drops its
/// sub-replicas when it loads a new dataset. `-1`: the relay lost bytes.
pub fn relay_attach(w: &mut Worker, offset: i64) {
    let at = if offset >= 0 {
        offset
    } else {
        crate::repl::link_offset(w)
    };
    let Some(h) = w.master_repl.as_mut().and_then(|r| r.hub.as_mut()) else {
        return;
    };
    if h.relay && offset >= 0 && h.offset == offset as u64 {
        return;
    }
    h.relay = true;
    for q in h.queues.iter_mut() {
        q.clear();
    }
    h.in_cut.clear();
    h.queued.clear();
    h.chunks.clear();
    h.held = 0;
    h.offset = at.max(0) as u64;
    h.last_db = None;
    h.publish();
    if offset < 0 {
        crate::log::warning("Replication: the relayed stream lost bytes; sub-replicas must resync");
    }
    drop_all(w);
}

/// A sub-replica's full sync while this node is a replica: the link is held at the next
/// command boundary outside MULTI, and once everything it dispatched has run, every shard
/// marks its snapshot's moment; the stream relayed so far is exactly what that snapshot
/// holds, so the RDB plus the stream from there is the master's dataset at every later
/// point. The link runs again as soon as the moment is taken.
fn relay_cut(w: &mut Worker) {
    let busy = w.repl.conn.and_then(|i| w.conns.get(i)).is_some_and(|c| {
        // Commands still running on other shards, or a MULTI block not yet executed (the
        // hold applies after its EXEC). A partial command in the input is not applied.
        let in_multi = c.tx.as_ref().is_some_and(|t| t.queue.is_some());
        !c.slots.is_empty() || in_multi
    });
    if busy {
        w.after(Instant::now() + Duration::from_millis(1), relay_cut);
        return;
    }
    // Everything applied is relayed (`relay` waits while cutting).
    if let Some(h) = w.master_repl.as_mut().and_then(|r| r.hub.as_mut()) {
        h.cutting = false;
    }
    relay(w);
    hub(w).cutting = true;
    let started = Instant::now();
    let at_moment: crate::persist::save::AtMoment = std::sync::Arc::new(|_tw| Ok(0));
    crate::persist::save::stepped(
        &mut w.eng,
        Some(at_moment),
        move |w, _cuts| {
            crate::log::notice(&format!(
                "Replication cut taken in {} ms (relayed stream); shards serialise while serving",
                started.elapsed().as_millis()
            ));
            to_front(w, relay_cut_taken)
        },
        move |w, parts, _| {
            crate::log::notice(&format!(
                "Replication RDB serialised: {} shards in {} ms",
                parts.len(),
                started.elapsed().as_millis()
            ));
            to_front(w, move |w: &mut Worker| rdb_ready(w, parts))
        },
    );
}

/// The relay's cut is in: the replicas being synced hold the stream from its offset until
/// their RDB is out, and the link runs again.
fn relay_cut_taken(w: &mut Worker) {
    let h = hub(w);
    h.cutting = false;
    h.serialising = true;
    h.cut_offset = h.offset;
    hold_behind_rdb(w);
    crate::repl::release_hold(w);
}

// ----- the hub --------------------------------------------------------------------------

fn hub(w: &mut Worker) -> &mut Hub {
    let n = w.eng.nshards;
    let r = w.master_repl.get_or_insert_with(Default::default);
    r.hub.get_or_insert_with(|| Box::new(Hub::new(n)))
}

fn ensure_hub(w: &mut Worker) {
    let fresh = w.master_repl.as_ref().is_none_or(|r| r.hub.is_none());
    hub(w).publish();
    if fresh {
        refresh_config(w);
        w.after(Instant::now() + Duration::from_millis(100), on_timer);
    }
}

/// repl-backlog-size and the replica output limits, from the CONFIG table.
fn refresh_config(w: &Worker) {
    for (k, v) in w.eng.shared.tun.all() {
        match k.as_str() {
            "repl-backlog-size" => {
                if let Ok(n) = crate::config::parse_memory(&v) {
                    BACKLOG_SIZE.store(n.max(16 * 1024), Ordering::Relaxed);
                }
            }
            "client-output-buffer-limit" => {
                if let Ok(classes) = crate::config::parse_obuf_limits(&v) {
                    for (class, l) in classes {
                        if class == 1 {
                            for (slot, x) in OBUF.iter().zip(l) {
                                slot.store(x, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn ping_period() -> Duration {
    let secs = crate::repl::SETTINGS
        .ping_period_secs
        .load(Ordering::Relaxed);
    Duration::from_secs(secs.max(1))
}

/// Sends a merged chunk to every shard hosting a replica.
fn broadcast(w: &mut Worker, chunk: Option<(u64, Bytes)>) {
    let Some((start, b)) = chunk else { return };
    let mut shards: Vec<usize> = replicas(|v| v.iter().map(|r| r.shard).collect());
    shards.sort_unstable();
    shards.dedup();
    for s in shards {
        let b = b.clone();
        // Here, with nothing queued ahead of it: written this pass.
        if s == w.eng.id && w.eng.local.is_empty() {
            deliver(w, start, b);
        } else {
            w.eng
                .post(s, front(move |tw: &mut Worker| deliver(tw, start, b)));
        }
    }
}

fn merge_and_send(w: &mut Worker) {
    let h = hub(w);
    if h.cutting {
        return;
    }
    let out = match h.take_single() {
        Some(run) => run,
        None => Bytes::from(h.merge(None)),
    };
    let chunk = h.append(out);
    broadcast(w, chunk);
    if WAITS.load(Ordering::Relaxed) > 0 {
        check_waits(w);
    }
}

fn hub_push(w: &mut Worker, s: usize, recs: Vec<Rec>, to: u64) {
    let h = hub(w);
    if h.relay {
        // Pushed before this node became a replica: its master's stream replaces them.
        return;
    }
    if let Some(q) = h.queues.get_mut(s) {
        q.extend(recs);
    }
    if let Some(r) = h.received.get_mut(s) {
        *r = (*r).max(to);
    }
    merge_and_send(w);
}

/// A shard lost records before pushing them: the stream is broken for every replica.
fn hub_lost(w: &mut Worker, s: usize, to: u64) {
    let h = hub(w);
    if h.relay {
        return;
    }
    for q in h.queues.iter_mut() {
        q.clear();
    }
    if let Some(r) = h.received.get_mut(s) {
        *r = (*r).max(to);
    }
    // No PSYNC can continue from before the break.
    h.chunks.clear();
    h.held = 0;
    h.publish();
    drop_all(w);
}

/// Closes every replica connection (they reconnect and resync, partially when they can).
pub fn drop_replicas(w: &mut Worker) {
    drop_all(w);
}

fn drop_all(w: &mut Worker) {
    let all: Vec<(usize, u64)> = replicas(|v| v.iter().map(|r| (r.shard, r.token)).collect());
    for (s, t) in all {
        w.eng.post(
            s,
            front(move |tw: &mut Worker| {
                if let Some(i) = tw.conn_by_token(t) {
                    tw.close_conn(i);
                }
            }),
        );
    }
}

/// PSYNC / SYNC reached the hub: continue from the backlog, or take a full sync.
fn hub_psync(w: &mut Worker, req: SyncReq) {
    ensure_hub(w);
    if crate::repl::is_replica() && !hub(w).relay {
        relay_start(w);
    }
    let replid = current_replid();
    replicas(|v| {
        v.push(Replica {
            id: req.id,
            shard: req.shard,
            token: req.token,
            ip: req.ip.clone(),
            port: req.port,
            online: false,
            listed: !req.rdb_only,
            ack: 0,
            ack_at: Instant::now(),
            pre_psync: req.sync,
        })
    });
    // A filtered RDB is all such a client wants: never a partial resync.
    if let Some((id, off)) = req.psync.as_ref().filter(|_| !req.functions_only) {
        // Our id, or the one we had as a replica up to where we were promoted (PSYNC2).
        let known = id.as_ref() == replid.as_bytes() || {
            let m = crate::repl::master_fields();
            id.as_ref() == m.replid2.as_bytes() && *off <= m.second_offset
        };
        let h = hub(w);
        let cont = (ACTIVE.load(Ordering::Relaxed) && known)
            .then(|| u64::try_from(*off).ok().and_then(|o| h.since(o)))
            .flatten();
        if let Some(backlog) = cont {
            let next = h.offset + 1;
            let mut payload = format!("+CONTINUE {replid}\r\n").into_bytes();
            let n = backlog.len();
            payload.extend_from_slice(&backlog);
            SYNC_PARTIAL_OK.fetch_add(1, Ordering::Relaxed);
            crate::log::notice(&format!(
                "Partial resynchronization request from {}:{} accepted. Sending {n} bytes of \
                 backlog starting from offset {off}.",
                req.ip, req.port
            ));
            let (s, t, id) = (req.shard, req.token, req.id);
            w.eng.post(
                s,
                front(move |tw: &mut Worker| deliver_payload(tw, id, t, payload, next)),
            );
            return;
        }
        if id.as_ref() != b"?" {
            SYNC_PARTIAL_ERR.fetch_add(1, Ordering::Relaxed);
        }
    }
    SYNC_FULL.fetch_add(1, Ordering::Relaxed);
    crate::log::notice(&format!(
        "Replica {}:{} asks for synchronization; starting a full resync",
        req.ip, req.port
    ));
    if req.functions_only && req.rdb_only {
        // `redis-cli --functions-rdb`: the libraries and nothing after them. No key is
        // read, so no cut of the shards is needed (it would serialise every key).
        let offset = hub(w).offset;
        let checksum = w.eng.shared.tun.rdbchecksum.load(Ordering::Relaxed);
        send_rdb(w, req, &rdb_bytes(&[], checksum, offset), offset);
        return;
    }
    let h = hub(w);
    h.queued.push(req);
    if !h.cutting && !h.serialising {
        start_cut(w);
    }
}

/// Takes a consistent cut of every shard: under one lock on all of them, each pushes its
/// records so far, notes its journal offset and marks its snapshot's moment, then serves
/// again while it serialises (the stepper, `persist::save::stepped`). Once every cut is
/// in, the hub merges exactly the records before it, the stream flows again, and the
/// replicas being synced hold their stream from the cut until their RDB is out; so the RDB
/// plus the stream from the merged offset is the dataset at every later point.
fn start_cut(w: &mut Worker) {
    let h = hub(w);
    h.cutting = true;
    h.in_cut = std::mem::take(&mut h.queued);
    ACTIVE.store(true, Ordering::Relaxed);
    if h.relay {
        w.repl.hold = true;
        relay_cut(w);
        return;
    }
    let n = w.eng.nshards;
    let started = Instant::now();
    let at_moment: crate::persist::save::AtMoment = std::sync::Arc::new(move |tw| {
        let txid = tw.lock.unwrap_or(0);
        Ok(cut_offset(tw, txid, n))
    });
    crate::persist::save::stepped(
        &mut w.eng,
        Some(at_moment),
        move |w, cuts| {
            let cuts: Vec<u64> = cuts.into_iter().map(|c| c.unwrap_or(0)).collect();
            crate::log::notice(&format!(
                "Replication cut taken in {} ms; shards serialise while serving",
                started.elapsed().as_millis()
            ));
            to_front(w, move |w: &mut Worker| cut_taken(w, cuts))
        },
        move |w, parts, _| {
            crate::log::notice(&format!(
                "Replication RDB serialised: {} shards in {} ms",
                parts.len(),
                started.elapsed().as_millis()
            ));
            to_front(w, move |w: &mut Worker| rdb_ready(w, parts))
        },
    );
}

/// One shard at the cut (under the lock): its journal on, its records so far pushed to
/// the hub; returns its journal offset at the cut.
fn cut_offset(tw: &mut Engine, txid: u64, n: usize) -> u64 {
    let fresh = tw.shard.journal.is_none();
    journal::enable(&mut tw.shard, JOURNAL_CAP);
    if fresh && tw.lock == Some(txid) {
        // Tag this lock as the shards whose journal was already on did, so its release
        // marker is a whole group everywhere.
        journal::begin_tx(
            &mut tw.shard,
            TxTag {
                id: txid,
                parts: n as u32,
            },
        );
    }
    journal::flush(&mut tw.shard);
    if tw.ship.is_some() {
        push_now(tw)
    } else {
        let next = tw.shard.journal.as_ref().map_or(0, |j| j.next());
        tw.ship = Some(next);
        next
    }
}

/// Every cut is in: merge the records before it, let the stream flow again, and have the
/// replicas being synced hold their stream from here until their RDB is out.
fn cut_taken(w: &mut Worker, cuts: Vec<u64>) {
    let h = hub(w);
    for (s, c) in cuts.iter().enumerate() {
        if let Some(r) = h.received.get_mut(s) {
            *r = (*r).max(*c);
        }
    }
    let out = h.merge(Some(&cuts));
    // Anything still before a cut belongs to a group a lost push broke: the RDB has it.
    for (s, q) in h.queues.iter_mut().enumerate() {
        let c = cuts.get(s).copied().unwrap_or(0);
        while q.front().is_some_and(|r| r.off < c) {
            q.pop_front();
        }
    }
    let chunk = h.append(Bytes::from(out));
    let offset = h.offset;
    // As Redis after a full sync: the next command says its database.
    h.last_db = None;
    h.cutting = false;
    h.serialising = true;
    h.cut_offset = offset;
    broadcast(w, chunk);
    // Sent after the chunk above (same channel, in order).
    hold_behind_rdb(w);
    merge_and_send(w);
}

/// The replicas of the cut just taken: from the cut's offset on, their stream collects
/// behind their RDB until it is out.
fn hold_behind_rdb(w: &mut Worker) {
    let h = hub(w);
    let offset = h.cut_offset;
    let reqs: Vec<(usize, u64)> = h.in_cut.iter().map(|r| (r.shard, r.token)).collect();
    for (shard, token) in reqs {
        w.eng.post(
            shard,
            front(move |tw: &mut Worker| {
                if let Some(idx) = tw.conn_by_token(token) {
                    if let Some(l) = tw.conns[idx].replica_link.as_mut() {
                        l.next = Some(offset + 1);
                        l.behind_rdb = Some(Vec::new());
                    }
                }
            }),
        );
    }
}

/// Every shard's part is serialised: the RDB goes to each replica of the cut, followed by
/// the stream held since the cut.
fn rdb_ready(w: &mut Worker, parts: Vec<ShardPart>) {
    let h = hub(w);
    let offset = h.cut_offset;
    h.serialising = false;
    let reqs = std::mem::take(&mut h.in_cut);
    let checksum = w.eng.shared.tun.rdbchecksum.load(Ordering::Relaxed);
    let rdb = rdb_bytes(&parts, checksum, offset);
    let functions = reqs
        .iter()
        .any(|r| r.functions_only)
        .then(|| rdb_bytes(&[], checksum, offset));
    for req in reqs {
        let rdb = match &functions {
            Some(f) if req.functions_only => f,
            _ => &rdb,
        };
        send_rdb(w, req, rdb, offset);
    }
    if !hub(w).queued.is_empty() {
        start_cut(w);
    }
}

/// Sends `rdb` (taken at `offset`) to the replica that asked with `req`, as a full sync's
/// reply; the connection's shard then sends what follows the offset.
fn send_rdb(w: &mut Worker, req: SyncReq, rdb: &[u8], offset: u64) {
    let mut payload = Vec::with_capacity(rdb.len() + 80);
    if !req.sync {
        let replid = current_replid();
        payload.extend_from_slice(format!("+FULLRESYNC {replid} {offset}\r\n").as_bytes());
    }
    payload.extend_from_slice(format!("${}\r\n", rdb.len()).as_bytes());
    payload.extend_from_slice(rdb);
    crate::log::notice(&format!(
        "Synchronization with replica {}:{} succeeded ({} bytes of RDB)",
        req.ip,
        req.port,
        rdb.len()
    ));
    let (t, id) = (req.token, req.id);
    w.eng.post(
        req.shard,
        front(move |tw: &mut Worker| deliver_payload(tw, id, t, payload, offset + 1)),
    );
}

/// The shards' parts as one RDB file in memory (the layout `persist::save` writes).
fn rdb_bytes(parts: &[ShardPart], checksum: bool, offset: u64) -> Vec<u8> {
    use crate::persist::rdb::Framer;
    let mut out = Framer::header(crate::persist::unix_secs(), crate::runtime::alloc::used());
    // What a replica keeps to ask PSYNC after a restart (Redis's `rdbSaveInfoAuxFields`).
    let replid = current_replid();
    for (k, v) in [
        ("repl-stream-db", "0".to_string()),
        ("repl-id", replid.to_string()),
        ("repl-offset", offset.to_string()),
    ] {
        out.push(0xFA);
        put_short(&mut out, k.as_bytes());
        put_short(&mut out, v.as_bytes());
    }
    let ndbs = parts.iter().map(|p| p.dbs.len()).max().unwrap_or(0);
    for db in 0..ndbs {
        let (keys, expires) = parts
            .iter()
            .filter_map(|p| p.dbs.get(db))
            .fold((0, 0), |(k, e), d| (k + d.1, e + d.2));
        if keys == 0 {
            continue;
        }
        out.extend_from_slice(&Framer::db(db, keys, expires));
        for p in parts {
            if let Some(d) = p.dbs.get(db) {
                out.extend_from_slice(&d.0);
            }
        }
    }
    let crc = if checksum {
        crate::persist::crc64::update(0, &out)
    } else {
        0
    };
    out.extend_from_slice(&Framer::trailer(crc, checksum));
    out
}

/// An RDB string of under 16 KiB (6- or 14-bit length, no encoding).
fn put_short(out: &mut Vec<u8>, s: &[u8]) {
    let n = s.len().min(0x3FFF);
    if n < 64 {
        out.push(n as u8);
    } else {
        out.push(0x40 | (n >> 8) as u8);
        out.push((n & 0xFF) as u8);
    }
    out.extend_from_slice(s.get(..n).unwrap_or_default());
}

/// The hub's timer: PING every `repl-ping-replica-period`, WAIT deadlines, settings.
pub fn on_timer(w: &mut Worker) {
    if w.eng.id != HUB {
        return;
    }
    let period = ping_period();
    let now = Instant::now();
    let h = hub(w);
    let refresh = now.saturating_duration_since(h.last_refresh) >= Duration::from_secs(1);
    if refresh {
        h.last_refresh = now;
    }
    let any = replicas(|v| !v.is_empty());
    let mut chunk = None;
    // A replica relays its master's PINGs instead of sending its own.
    if any && !h.cutting && !h.relay && now.saturating_duration_since(h.last_ping) >= period {
        h.last_ping = now;
        chunk = h.append(Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"));
    }
    let waits = !h.waits.is_empty();
    broadcast(w, chunk);
    if refresh {
        refresh_config(w);
        drop_timed_out(w, now);
    }
    if waits {
        check_waits(w);
    }
    let again = if hub(w).waits.is_empty() { 100 } else { 10 };
    w.after(now + Duration::from_millis(again), on_timer);
}

/// `repl-timeout`: an online replica that has not acknowledged for that long is closed (it
/// reconnects and resyncs), as Redis's replicationCron does. Once a second, on the hub.
fn drop_timed_out(w: &mut Worker, now: Instant) {
    let limit = Duration::from_secs(
        crate::repl::SETTINGS
            .timeout_secs
            .load(Ordering::Relaxed)
            .max(1),
    );
    let late: Vec<(usize, u64, String)> = replicas(|v| {
        v.iter()
            .filter(|r| r.online && !r.pre_psync)
            .filter(|r| now.saturating_duration_since(r.ack_at) > limit)
            .map(|r| (r.shard, r.token, format!("{}:{}", r.ip, r.port)))
            .collect()
    });
    for (shard, token, name) in late {
        crate::log::warning(&format!(
            "Disconnecting timedout replica (streaming sync): {name}"
        ));
        w.eng.post(
            shard,
            front(move |tw: &mut Worker| {
                if let Some(idx) = tw.conn_by_token(token) {
                    tw.close_conn(idx);
                }
            }),
        );
    }
}

fn hub_wait(w: &mut Worker, wait: Wait) {
    ensure_hub(w);
    hub(w).waits.push(wait);
    WAITS.fetch_add(1, Ordering::Relaxed);
    check_waits(w);
}

/// Settles the WAITs that can be: their target merged, then enough ACKs or the deadline.
fn check_waits(w: &mut Worker) {
    let now = Instant::now();
    // The acknowledged offsets of the online replicas, read once (one lock) for every
    // wait: with `min-replicas-ack`, every connection's batch of writes is a wait.
    let acks: Vec<u64> = replicas(|v| {
        v.iter()
            .filter(|r| r.listed && r.online)
            .map(|r| r.ack)
            .collect()
    });
    let acked = |t: u64| acks.iter().filter(|&&a| a >= t).count() as i64;
    let h = hub(w);
    let mut getack = false;
    let mut done: Vec<(usize, Waiter, i64, bool, u64)> = Vec::new();
    let mut keep = Vec::with_capacity(h.waits.len());
    for mut wt in std::mem::take(&mut h.waits) {
        if wt.target.is_none()
            && wt
                .wants
                .iter()
                .enumerate()
                .all(|(s, &want)| h.merged_to(s) >= want)
        {
            wt.target = Some(h.offset);
            // Held writes ask at most once per 100 ms: replicas then acknowledge each
            // batch they apply for a second.
            getack |= match wt.for_ {
                Waiter::Wait(_) | Waiter::Failover(_) | Waiter::Shutdown => true,
                Waiter::Hold(..) => h
                    .last_getack
                    .is_none_or(|t| now.saturating_duration_since(t) >= GETACK_EVERY),
            };
        }
        let count = match (&mut wt.for_, wt.target) {
            (Waiter::Shutdown, Some(t)) => i64::from(all_acked(t)),
            (Waiter::Failover(to), Some(t)) => match caught_up(to.as_ref(), t) {
                Some(found) => {
                    *to = Some(found);
                    1
                }
                None => 0,
            },
            (_, t) => t.map_or(0, acked),
        };
        let enough = wt.target.is_some() && count >= wt.num;
        if enough || wt.deadline.is_some_and(|d| now >= d) {
            done.push((
                wt.origin,
                wt.for_,
                count,
                enough,
                wt.target.unwrap_or_else(offset),
            ));
        } else {
            keep.push(wt);
        }
    }
    // Held writes still waiting ask again every 100 ms: a stock Redis replica
    // acknowledges only on GETACK (or once a second).
    getack |= keep.iter().any(|w| {
        matches!(
            w.for_,
            Waiter::Hold(..) | Waiter::Failover(_) | Waiter::Shutdown
        ) && w.target.is_some()
    }) && h
        .last_getack
        .is_none_or(|t| now.saturating_duration_since(t) >= GETACK_EVERY);
    h.waits = keep;
    WAITS.store(h.waits.len(), Ordering::Relaxed);
    let any = replicas(|v| v.iter().any(|r| r.online));
    let chunk = if getack && any && !h.waits.is_empty() && !h.cutting {
        h.last_getack = Some(now);
        h.append(Bytes::from_static(
            b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n",
        ))
    } else {
        None
    };
    broadcast(w, chunk);
    for (origin, for_, count, enough, target) in done {
        let job: Box<dyn FnOnce(&mut Worker) + Send> = match for_ {
            Waiter::Wait(ticket) => Box::new(move |ow| ow.eng.complete(ticket, Reply::Int(count))),
            Waiter::Hold(token, holds) => Box::new(move |ow| release(ow, token, holds, enough)),
            Waiter::Failover(to) => {
                Box::new(move |ow| super::failover::wait_over(ow, to.filter(|_| enough)))
            }
            Waiter::Shutdown => Box::new(move |ow| super::shutdown::wait_over(ow, target)),
        };
        w.eng.post(origin, front(job));
    }
}

const GETACK_EVERY: Duration = Duration::from_millis(100);

/// The error a held write gets when too few replicas acknowledged it in time (the write
/// itself is done on this master: the error says it may not survive a failover).
const ACK_TIMEOUT: &str = crate::error::NOREPLICAS_ACK;

// ----- min-replicas-ack: held write replies ---------------------------------------------------

/// Called by the dispatcher after a write ran with `gate` reserved ahead of its reply:
/// notes the hold; the wait starts once the reply is in (`start_barriers`).
pub fn hold(w: &mut Worker, idx: usize, gate: u64) {
    let Some(c) = w.conns.get_mut(idx) else {
        return;
    };
    // The command added exactly one reply behind the gate slot (the usual case); otherwise
    // the gate only delays what follows and is never replaced by the error.
    let next = c.slot_base + c.slots.len() as u64;
    let reply = (next == gate + 2).then_some(gate + 1);
    c.acks
        .get_or_insert_with(Default::default)
        .holds
        .push(Hold {
            gate,
            reply,
            started: false,
        });
}

/// Starts the acknowledgement wait for every held write of connection `idx` whose reply is
/// in (so its records are in its shards' journals): one fan-out for all of them.
pub fn start_barriers(w: &mut Worker, idx: usize) {
    let Some(token) = w.conn_token(idx) else {
        return;
    };
    let Some(c) = w.conns.get_mut(idx) else {
        return;
    };
    let (base, slots) = (c.slot_base, &c.slots);
    let Some(a) = c.acks.as_mut() else {
        return;
    };
    let mut ready = Vec::new();
    for h in a.holds.iter_mut().filter(|h| !h.started) {
        let filled = match h.reply {
            Some(r) => r
                .checked_sub(base)
                .and_then(|i| slots.get(i as usize))
                .is_some_and(|s| s.is_some()),
            None => true,
        };
        if filled {
            h.started = true;
            ready.push(*h);
        }
    }
    a.holds.retain(|h| !h.started);
    if ready.is_empty() {
        return;
    }
    let num = crate::repl::SETTINGS
        .min_replicas_ack
        .load(Ordering::Relaxed) as i64;
    let ms = crate::repl::SETTINGS.ack_timeout_ms.load(Ordering::Relaxed);
    let deadline = Some(Instant::now() + Duration::from_millis(ms));
    let jobs: Vec<(usize, ShardFn<u64>)> = (0..w.eng.nshards)
        .map(|s| {
            let job: ShardFn<u64> = Box::new(push_now);
            (s, job)
        })
        .collect();
    w.eng.fan_out(jobs, false, move |w, wants: Vec<u64>| {
        let origin = w.id;
        w.post(
            HUB,
            front(move |hw: &mut Worker| {
                hub_wait(
                    hw,
                    Wait {
                        origin,
                        for_: Waiter::Hold(token, ready),
                        wants,
                        num,
                        deadline,
                        target: None,
                    },
                )
            }),
        );
    });
}

/// A held wait ended (on the connection's shard): the replies go out, or each becomes
/// the timeout error.
fn release(w: &mut Worker, token: u64, holds: Vec<Hold>, acked: bool) {
    let Some(idx) = w.conn_by_token(token) else {
        return;
    };
    let mut err = Vec::new();
    if !acked {
        let resp = w.conns[idx].client.resp;
        Reply::error(ACK_TIMEOUT).encode(resp, &mut err);
        crate::commands::count_error(&mut w.eng.shard, ACK_TIMEOUT);
    }
    for h in holds {
        let Some(c) = w.conns.get_mut(idx) else {
            return;
        };
        let bytes = match h.reply {
            Some(r) if !acked => {
                c.acks.get_or_insert_with(Default::default).discard.push(r);
                Bytes::from(err.clone())
            }
            _ => Bytes::new(),
        };
        w.fill(idx, h.gate, bytes);
    }
}

// ----- commands -----------------------------------------------------------------------------

/// REPLCONF: the handshake options, ACK (no reply) and GETACK (no reply on a master).
fn replconf(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    // From our own master (this server is its replica): the replica side answers.
    if ctx.w.conns.get(ctx.conn).is_some_and(|c| c.master) {
        return crate::repl::replconf(ctx, argv);
    }
    if argv.len().is_multiple_of(2) {
        return Err(CmdError::Syntax);
    }
    let idx = ctx.conn;
    let mut pairs = argv.get(1..).unwrap_or_default().chunks_exact(2);
    let mut silent = false;
    for p in pairs.by_ref() {
        let [opt, val] = p else { continue };
        let conn = &mut ctx.w.conns[idx];
        let link = conn.replica_link.get_or_insert_with(Default::default);
        if is(opt, "listening-port") {
            let port = parse_i64(val)
                .and_then(|n| u16::try_from(n).ok())
                .ok_or(CmdError::NotInteger)?;
            link.port = port;
        } else if is(opt, "ip-address") {
            link.ip = Some(String::from_utf8_lossy(val).into_owned());
        } else if is(opt, "capa") {
            // eof, psync2: we send a sized RDB, which every replica reads.
        } else if is(opt, "rdb-only") {
            link.rdb_only = parse_i64(val) == Some(1);
        } else if is(opt, "rdb-filter-only") {
            // Words, each `functions` (Redis 7.0 has no other filter); empty: no filter.
            let text = String::from_utf8_lossy(val);
            if let Some(bad) = text
                .split_whitespace()
                .find(|w| !w.eq_ignore_ascii_case("functions"))
            {
                return Err(CmdError::err(format!(
                    "Unsupported rdb-filter-only option: {bad}"
                )));
            }
            link.functions_only = text.split_whitespace().next().is_some();
        } else if is(opt, "ack") {
            // Only from a replica, and never answered.
            if link.replica {
                if let Some(off) = parse_i64(val).and_then(|n| u64::try_from(n).ok()) {
                    let id = conn.client.id;
                    replicas(|v| {
                        if let Some(r) = v.iter_mut().find(|r| r.id == id) {
                            r.ack = r.ack.max(off);
                            r.ack_at = Instant::now();
                        }
                    });
                    if crate::repl::SETTINGS.min_replicas.load(Ordering::Relaxed) > 0 {
                        refresh_good_replicas();
                    }
                    if WAITS.load(Ordering::Relaxed) > 0 {
                        ctx.eng().post(HUB, front(check_waits));
                    }
                }
            }
            silent = true;
            break;
        } else if is(opt, "getack") {
            silent = true;
            break;
        } else {
            return Err(CmdError::err(format!(
                "Unrecognized REPLCONF option: {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    Ok(if silent {
        Reply::Raw(Bytes::new())
    } else {
        Reply::Ok
    })
}

fn psync(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let id = argv.get(1).cloned().unwrap_or_default();
    let off = argv.get(2).and_then(|a| parse_i64(a)).unwrap_or(-1);
    if argv.get(3).is_some_and(|a| is(a, "failover")) {
        return super::failover::psync_failover(ctx, id, off);
    }
    start_sync(ctx, Some((id, off)))
}

fn sync(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    start_sync(ctx, None)
}

fn start_sync(ctx: &mut FrontCtx, psync: Option<(Bytes, i64)>) -> CmdResult {
    if ctx.eng().tx.nested() {
        return Err(CmdError::err("Replica can't interact with the keyspace"));
    }
    // As Redis: a replica still syncing would hand its sub-replica a dataset it is about
    // to replace; the sub-replica retries.
    if crate::repl::is_replica() && !crate::repl::master_link_up() {
        return Err(CmdError::coded(crate::error::NOMASTERLINK));
    }
    begin_sync(ctx.w, ctx.conn, psync)
}

/// Makes connection `idx` a replica link and asks the hub for its RDB or continuation.
pub(super) fn begin_sync(w: &mut Worker, idx: usize, psync: Option<(Bytes, i64)>) -> CmdResult {
    let Some(token) = w.conn_token(idx) else {
        return Ok(Reply::Raw(Bytes::new()));
    };
    let conn = &mut w.conns[idx];
    if is_replica(conn) {
        // A second PSYNC on a replica link is ignored, as Redis does.
        return Ok(Reply::Raw(Bytes::new()));
    }
    if !conn.out.is_empty() || !conn.slots.is_empty() {
        return Err(CmdError::err(
            "SYNC and PSYNC are invalid with pending output",
        ));
    }
    let link = conn.replica_link.get_or_insert_with(Default::default);
    link.replica = true;
    link.next = None;
    let ip = link.ip.clone().unwrap_or_else(|| {
        conn.client
            .addr
            .rsplit_once(':')
            .map_or(conn.client.addr.clone(), |(h, _)| h.to_string())
    });
    let req = SyncReq {
        shard: w.eng.id,
        token,
        id: conn.client.id,
        sync: psync.is_none(),
        rdb_only: link.rdb_only,
        functions_only: link.functions_only,
        psync,
        ip,
        port: link.port,
    };
    w.master_repl
        .get_or_insert_with(Default::default)
        .conns
        .push(token);
    w.eng
        .post(HUB, front(move |hw: &mut Worker| hub_psync(hw, req)));
    Ok(Reply::Raw(Bytes::new()))
}

/// WAIT numreplicas timeout: the offset this client's writes reach in the merged stream,
/// then enough ACKs of it, or the timeout, with the count.
fn wait(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if crate::repl::is_replica() {
        return Err(CmdError::err(
            "WAIT cannot be used with replica instances. Please also note that since Redis 4.0 \
             if a replica is configured to be writable (which is not the default) writes to \
             replicas are just local and are not propagated.",
        ));
    }
    let num = argv
        .get(1)
        .and_then(|a| parse_i64(a))
        .ok_or(CmdError::NotInteger)?;
    let ms = argv
        .get(2)
        .and_then(|a| parse_i64(a))
        .ok_or_else(|| CmdError::err("timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(CmdError::err("timeout is negative"));
    }
    if ctx.eng().tx.nested() {
        // Cannot block inside MULTI: the count now.
        return Ok(Reply::Int(acked(OFFSET.load(Ordering::Relaxed))));
    }
    let ticket = ctx.defer();
    let deadline = (ms > 0).then(|| Instant::now() + Duration::from_millis(ms as u64));
    let jobs: Vec<(usize, ShardFn<u64>)> = (0..ctx.eng().nshards)
        .map(|s| {
            let job: ShardFn<u64> = Box::new(push_now);
            (s, job)
        })
        .collect();
    ctx.eng().fan_out(jobs, false, move |w, wants: Vec<u64>| {
        let origin = w.id;
        w.post(
            HUB,
            front(move |hw: &mut Worker| {
                hub_wait(
                    hw,
                    Wait {
                        origin,
                        for_: Waiter::Wait(ticket),
                        wants,
                        num,
                        deadline,
                        target: None,
                    },
                )
            }),
        );
    });
    Ok(Reply::Ok)
}

/// ROLE on a master: `["master", offset, [[ip, port, ack], ...]]` (online replicas).
fn role(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if crate::repl::is_replica() {
        return crate::repl::role(ctx, argv);
    }
    Ok(role_master())
}

/// ROLE's master form.
pub(super) fn role_master() -> Reply {
    let list: Vec<Reply> = replicas(|v| {
        v.iter()
            .filter(|r| r.listed && r.online)
            .map(|r| {
                Reply::Array(vec![
                    Reply::bulk(r.ip.clone()),
                    Reply::bulk(r.port.to_string()),
                    Reply::bulk(r.ack.to_string()),
                ])
            })
            .collect()
    });
    Reply::Array(vec![
        Reply::bulk("master"),
        Reply::Int(OFFSET.load(Ordering::Relaxed) as i64),
        Reply::Array(list),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(off: u64, db: u32, tx: Option<(u64, u32)>, cmd: &[u8]) -> Rec {
        Rec {
            off,
            db,
            tx: tx.map(|(id, parts)| TxTag { id, parts }),
            cmd: Bytes::copy_from_slice(cmd),
        }
    }

    const SET_A: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n";
    const SET_B: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n";
    const FLUSH: &[u8] = b"*1\r\n$7\r\nFLUSHDB\r\n";

    #[test]
    fn groups_wait_for_every_part_and_global_commands_go_once() {
        let mut h = Hub::new(2);
        h.queues[0].push_back(rec(1, 0, Some((7, 2)), SET_A));
        assert_eq!(h.merge(None), b"", "the other part is missing");
        h.queues[1].push_back(rec(1, 0, Some((7, 2)), SET_B));
        let out = h.merge(None);
        let want = [
            &b"*2\r\n$6\r\nSELECT\r\n$1\r\n0\r\n*1\r\n$5\r\nMULTI\r\n"[..],
            SET_A,
            SET_B,
            b"*1\r\n$4\r\nEXEC\r\n",
        ]
        .concat();
        assert_eq!(out, want);
        h.queues[0].push_back(rec(40, 1, Some((8, 2)), FLUSH));
        h.queues[1].push_back(rec(40, 1, Some((8, 2)), FLUSH));
        h.queues[1].push_back(rec(60, 1, Some((9, 1)), journal::MARKER));
        let out = h.merge(None);
        assert_eq!(
            out,
            [&b"*2\r\n$6\r\nSELECT\r\n$1\r\n1\r\n"[..], FLUSH].concat(),
            "one FLUSHDB, no MULTI around one command, markers dropped"
        );
        assert!(is_global(FLUSH));
        assert!(!is_global(SET_A));
    }

    #[test]
    fn limits_and_backlog() {
        let mut h = Hub::new(1);
        h.queues[0].push_back(rec(1, 0, None, SET_A));
        h.queues[0].push_back(rec(28, 0, None, SET_B));
        let out = h.merge(Some(&[28]));
        assert!(out.ends_with(SET_A));
        let first = h.append(Bytes::from(out)).map(|c| c.0);
        assert_eq!(first, Some(1));
        assert_eq!(h.merged_to(0), 28);
        let end = h.offset + 1;
        assert_eq!(h.since(end), Some(Vec::new()));
        assert!(h.since(end + 1).is_none());
        assert_eq!(h.since(h.offset).map(|v| v.len()), Some(1));
    }
}
