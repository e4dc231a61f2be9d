//! Data owned by exactly one shard (one core): its databases, eviction state and per-command
//! statistics.
//! `!Send` by design in spirit: it is created on, and only ever touched by, its own thread.
//! Networking lives in `server/`; RESP knows nothing of this module.

pub mod arena;
pub mod blocking;
pub mod db;
pub mod dict;
pub mod digest;
pub mod evict;
pub mod journal;
pub mod lazyfree;
pub mod notify;
pub mod objs;
pub mod route;
pub mod tracking;
pub mod value;
pub mod watch;

use db::Db;

/// Per-command counters on one shard, aggregated by INFO commandstats.
#[derive(Default, Clone, Copy, Debug)]
pub struct CmdStat {
    pub calls: u64,
    /// Time spent in the handler, nanoseconds (INFO shows microseconds).
    pub nanos: u64,
    pub rejected: u64,
    pub failed: u64,
}

/// One shard's keyspace and counters.
pub struct Shard {
    pub id: usize,
    pub nshards: usize,
    pub dbs: Vec<Db>,
    /// Unix milliseconds, refreshed once per loop pass (Redis caches its clock per command).
    pub now_ms: u64,
    /// Indexed by command id (position in the command table).
    pub cmd_stats: Vec<CmdStat>,
    /// Errors by code (first word), for INFO errorstats.
    pub error_stats: ahash::AHashMap<String, u64>,
    pub commands_processed: u64,
    /// Successful write commands run here (Redis's `dirty`, summed over shards for INFO
    /// rdb_changes_since_last_save).
    pub dirty: u64,
    /// xorshift state for random choices (RANDOMKEY, sampling).
    pub rng: u64,
    /// Keys of this shard under WATCH (see `watch.rs`).
    pub watches: watch::Watches,
    /// Clients blocked on keys of this shard (see `blocking.rs`).
    pub blocked: blocking::Registry<std::sync::Arc<crate::commands::blocking::BlockOp>>,
    /// maxmemory-policy settings, candidate pool and counters (see `evict.rs`).
    pub evict: evict::State,
    /// The running command comes from a CLIENT NO-TOUCH client (copied into the `Db` the
    /// command uses by `KeyCtx::db`).
    pub no_touch: bool,
    /// The write journal, when something consumes it (see `journal.rs`).
    pub journal: Option<Box<journal::Journal>>,
    /// `notify-keyspace-events` flags in force (0: off, see `notify.rs`).
    pub notify: u32,
    /// Notification work: keys the running command changed, events to publish.
    pub notes: notify::Notes,
    /// CLIENT TRACKING's table of keys read here and BCAST prefixes (`tracking.rs`).
    pub tracking: Option<Box<tracking::Table>>,
}

impl Shard {
    pub fn new(id: usize, nshards: usize, databases: usize, ncommands: usize) -> Shard {
        Shard {
            id,
            nshards,
            dbs: (0..databases).map(|_| Db::default()).collect(),
            now_ms: now_ms(),
            cmd_stats: vec![CmdStat::default(); ncommands],
            error_stats: Default::default(),
            commands_processed: 0,
            dirty: 0,
            rng: 0x2545F4914F6CDD1D ^ (id as u64 + 1).wrapping_mul(0x9E3779B97F4A7C15),
            watches: watch::Watches::default(),
            blocked: Default::default(),
            evict: evict::State::default(),
            no_touch: false,
            journal: None,
            notify: 0,
            notes: notify::Notes::default(),
            tracking: None,
        }
    }

    /// Applies new eviction settings (the worker calls this when `Tunables` changed).
    pub fn set_evict_cfg(&mut self, cfg: evict::EvictCfg) {
        if self.evict.cfg == cfg {
            return;
        }
        let access = cfg.access();
        if self.evict.cfg.access() != access {
            self.dbs.iter_mut().for_each(|d| d.set_access(access));
        }
        if self.evict.cfg.policy != cfg.policy {
            // Scores of another policy mean nothing.
            self.evict.pool.clear();
        }
        self.evict.cfg = cfg;
    }

    /// A write changed `key` of `db`: WATCHers lose, and clients blocked on it may proceed.
    #[inline]
    pub fn touch(&mut self, db: usize, key: &[u8]) {
        self.watches.touch(db, key);
        self.blocked.signal(db, key);
        if let Some(j) = self.journal.as_mut() {
            journal::touched(j, db, key);
        }
        if self.notify != 0 {
            notify::touched(&mut self.notes, db, key);
        }
        if let Some(t) = self.tracking.as_mut() {
            t.touched(key);
        }
    }

    /// The tracking table, created on first use.
    pub fn tracking_mut(&mut self) -> &mut tracking::Table {
        if self.tracking.is_none() {
            // Keys lost to expiry or eviction are invalidations from now on.
            self.dbs
                .iter_mut()
                .for_each(|d| d.track_lost = Some(Vec::new()));
        }
        self.tracking.get_or_insert_with(Default::default)
    }

    /// Spare arena bytes of all databases (see `arena.rs`).
    pub fn spare_bytes(&self) -> u64 {
        self.dbs.iter().map(|d| d.spare_bytes() as u64).sum()
    }

    pub fn next_rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Database `i`, clamped to the configured range (indexes are validated at SELECT).
    pub fn db_mut(&mut self, i: usize) -> &mut Db {
        let last = self.dbs.len().saturating_sub(1);
        &mut self.dbs[i.min(last)]
    }

    pub fn keys(&self) -> usize {
        self.dbs.iter().map(|d| d.len()).sum()
    }
}

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
