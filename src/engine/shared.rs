//! Process-wide state every shard reads: configuration and tunables, identity, global
//! counters, each shard's published memory figures and stall-detector readings, and the
//! channel to the main thread (`Event`). Built once by `server::run`; read by every shard
//! thread.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, Tunables};

/// State every shard can read: configuration, tunables, server identity, global counters.
pub struct Shared {
    pub cfg: Config,
    pub tun: Tunables,
    pub run_id: String,
    pub started: Instant,
    /// Heap in use when the shards began serving (INFO used_memory_startup): each shard
    /// raises it to what it sees as it enters its loop.
    pub startup_memory: AtomicU64,
    pub clients: AtomicUsize,
    /// Clients waiting in a blocking command (INFO blocked_clients).
    pub blocked_clients: AtomicUsize,
    pub next_client_id: AtomicU64,
    pub next_tx_id: AtomicU64,
    pub shutdown: AtomicBool,
    /// A SIGTERM/SIGINT asks shard 0 to wait for replicas, save and stop
    /// (`repl::shutdown::on_tick`, then `persist::cron::tick`):
    /// `server::SIG_SHUTDOWN` with the signal's `config::SHUTDOWN_*` flags, 0 when none.
    pub sig_shutdown: std::sync::atomic::AtomicU8,
    /// A signal's shutdown is under way (a second SIGINT then exits at once).
    pub signalled: AtomicBool,
    /// Tells the main thread that a shutdown began or a shard stopped (see `run`'s wait).
    pub events: Sender<Event>,
    /// The port actually bound (differs from cfg.port when it was 0).
    pub port: u16,
    /// What each shard publishes for the others' eviction decisions (indexed by shard).
    pub mem: Vec<ShardMem>,
    /// Each shard's stall detector readings (indexed by shard).
    pub pulse: Vec<Pulse>,
    /// Snapshot status: last save, saves, the write count at the last save (INFO, LASTSAVE).
    pub persist: crate::persist::State,
    /// The append-only files' shared state (sequence, INFO figures, the fsync registry).
    pub aof: Arc<crate::persist::aof::State>,
}

/// The stall detector: what one shard publishes about its loop, read by INFO on any shard
/// (without a message, so a stalled shard cannot hide its stall). Times are milliseconds
/// since `Shared::started` plus one (0 = not in that state).
#[repr(align(128))]
#[derive(Default)]
pub struct Pulse {
    /// When the pass running now began; 0 while the shard sleeps for completions.
    pub busy_since: AtomicU64,
    /// When a multi-shard command or transaction locked this shard; 0 while unlocked.
    pub locked_since: AtomicU64,
}

impl Shared {
    /// The state for `cfg.shards` shards serving on `port`; `events` reaches the main thread.
    pub fn new(cfg: Config, port: u16, events: Sender<Event>) -> Shared {
        Shared {
            tun: Tunables::new(&cfg),
            run_id: run_id(),
            started: Instant::now(),
            startup_memory: AtomicU64::new(0),
            clients: AtomicUsize::new(0),
            blocked_clients: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
            next_tx_id: AtomicU64::new(1),
            shutdown: AtomicBool::new(false),
            sig_shutdown: std::sync::atomic::AtomicU8::new(0),
            signalled: AtomicBool::new(false),
            events,
            port,
            mem: (0..cfg.shards).map(|_| ShardMem::default()).collect(),
            pulse: (0..cfg.shards).map(|_| Pulse::default()).collect(),
            persist: crate::persist::State::new(crate::persist::unix_secs()),
            aof: Arc::new(crate::persist::aof::State::new(cfg.shards, cfg.appendonly)),
            cfg,
        }
    }

    /// Milliseconds since startup plus one: a `Pulse` timestamp (never 0).
    pub fn pulse_now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// The longest time any shard has been inside one loop pass, and the longest any shard
    /// has been locked, in milliseconds (INFO stats; 0 when none is).
    pub fn stalls(&self) -> (u64, u64) {
        let now = self.pulse_now();
        let age = |a: &AtomicU64| match a.load(Ordering::Relaxed) {
            0 => 0,
            t => now.saturating_sub(t),
        };
        let pass = self.pulse.iter().map(|p| age(&p.busy_since)).max();
        let lock = self.pulse.iter().map(|p| age(&p.locked_since)).max();
        (pass.unwrap_or(0), lock.unwrap_or(0))
    }
}

/// What the main thread waits for once the server is up.
pub enum Event {
    /// A shutdown began (signal or SHUTDOWN): the shards get `SHUTDOWN_GRACE` to stop.
    Stop,
    /// This shard's loop has returned.
    Exited(usize),
}

/// One shard's memory figures as the other shards see them (`Engine::memory_check`):
/// written only by that shard, read by all; stale by at most one active-expire tick
/// (100 ms), or less while memory is over the limit (then every command refreshes them).
#[repr(align(128))]
#[derive(Default)]
pub struct ShardMem {
    /// Spare arena bytes (heap held by the shard's arenas that new entries reuse).
    pub spare: AtomicU64,
    /// Keys the shard could evict under the current policy.
    pub candidates: AtomicU64,
    /// Transient heap: the shard's connection buffers and worker scratch (not data, so
    /// eviction does not count it; see `Engine::memory_check`).
    pub transient: AtomicU64,
    /// Another shard asked this one to evict and the request has not run yet.
    pub nudged: AtomicBool,
    /// The shard's write counter (`Shard::dirty`), for the save rules on shard 0.
    pub dirty: AtomicU64,
    /// Bytes the shard's clients hold, and its biggest evictable client's (`client_evict`,
    /// maxmemory-clients; published only while a limit is set).
    pub clients: AtomicU64,
    pub biggest_client: AtomicU64,
}

fn run_id() -> String {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ ((std::process::id() as u64) << 32);
    let mut s = String::with_capacity(40);
    for _ in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        s.push(char::from_digit((seed % 16) as u32, 16).unwrap_or('0'));
    }
    s
}
