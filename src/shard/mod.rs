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
pub mod latency;
pub mod lazyfree;
pub mod notify;
pub mod objs;
pub mod route;
pub mod slowlog;
pub mod snapshot;
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
    /// By statistics slot ([`Shard::stat_slot`]): one per command (its position in the
    /// command table), then one per subcommand of a container.
    pub cmd_stats: Vec<CmdStat>,
    /// The table's `sub_base`: where a container's subcommand slots start.
    pub sub_base: &'static [u32],
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
    /// What a `NoOp::Flagged` handler said about its call (see `KeyCtx::unchanged`).
    pub unchanged: bool,
    /// The write journal, when something consumes it (see `journal.rs`).
    pub journal: Option<Box<journal::Journal>>,
    /// `notify-keyspace-events` flags in force (0: off, see `notify.rs`).
    pub notify: u32,
    /// Notification work: keys the running command changed, events to publish.
    pub notes: notify::Notes,
    /// The slow log (see `slowlog.rs`).
    pub slow: slowlog::SlowLog,
    /// Per-command histograms and latency monitor events (see `latency.rs`).
    pub lat: latency::Latency,
    /// Commands at least this slow (ns) go to `observe_slow`: the smaller of the slow log
    /// and latency monitor thresholds, `u64::MAX` when both are off.
    pub slow_floor: u64,
    /// `latency::Tunables::gen` last applied.
    pub obs_gen: u64,
    /// Someone runs MONITOR (refreshed once per loop pass; see `server::monitor`).
    pub monitor: bool,
    /// MONITOR lines made on this shard this pass, delivered at its end.
    pub mon_out: Vec<u8>,
    /// MONITOR lines from other shards received this pass (for this shard's monitors).
    pub mon_in: Vec<bytes::Bytes>,
    /// CLIENT TRACKING's table of keys read here and BCAST prefixes (`tracking.rs`).
    pub tracking: Option<Box<tracking::TrackingTable>>,
}

impl Shard {
    pub fn new(id: usize, nshards: usize, databases: usize, ncommands: usize) -> Shard {
        let t = crate::commands::table::table();
        Shard {
            id,
            nshards,
            dbs: (0..databases).map(|_| Db::default()).collect(),
            now_ms: now_ms(),
            cmd_stats: vec![CmdStat::default(); ncommands.max(t.stat_slots())],
            sub_base: &t.sub_base,
            error_stats: Default::default(),
            commands_processed: 0,
            dirty: 0,
            rng: 0x2545F4914F6CDD1D ^ (id as u64 + 1).wrapping_mul(0x9E3779B97F4A7C15),
            watches: watch::Watches::default(),
            blocked: Default::default(),
            evict: evict::State::default(),
            no_touch: false,
            unchanged: false,
            journal: None,
            notify: 0,
            notes: notify::Notes::default(),
            slow: slowlog::SlowLog::default(),
            lat: latency::Latency::default(),
            slow_floor: 10_000_000,
            obs_gen: 0,
            monitor: false,
            mon_out: Vec::new(),
            mon_in: Vec::new(),
            tracking: None,
        }
    }

    /// Applies the slow log and latency settings when they changed (once per loop pass).
    #[inline]
    pub fn refresh_observe(&mut self, t: &latency::Tunables) {
        use std::sync::atomic::Ordering::Relaxed;
        let gen = t.gen.load(Relaxed);
        if gen == self.obs_gen {
            return;
        }
        self.obs_gen = gen;
        self.slow.configure(
            t.slower_than_us.load(Relaxed),
            t.slowlog_max_len.load(Relaxed),
        );
        self.lat.tracking = t.tracking.load(Relaxed);
        self.lat.threshold_ms = t.monitor_threshold_ms.load(Relaxed);
        let lat_ns = match self.lat.threshold_ms {
            0 => u64::MAX,
            ms => ms.saturating_mul(1_000_000),
        };
        self.slow_floor = self.slow.threshold_ns.min(lat_ns);
    }

    /// The statistics slot of command `id` run with `argv`: its own, or its subcommand's.
    #[inline]
    pub fn stat_slot(&self, id: usize, argv: &[bytes::Bytes]) -> usize {
        match self.sub_base.get(id) {
            Some(&b) if b != crate::commands::table::NO_SUBS => {
                crate::commands::table::table().sub_slot(id, b, argv)
            }
            _ => id,
        }
    }

    /// After a command of id `id` ran for `nanos` (the commandstats clock reading): its
    /// histogram (by statistics slot), and the slow log / latency monitor when it was slow
    /// enough.
    #[inline]
    pub fn observe(&mut self, id: usize, slot: usize, argv: &[bytes::Bytes], nanos: u64) {
        if self.lat.tracking {
            self.lat.record(slot, nanos);
        }
        if nanos >= self.slow_floor {
            self.observe_slow(id, argv, nanos);
        }
    }

    #[cold]
    #[inline(never)]
    fn observe_slow(&mut self, id: usize, argv: &[bytes::Bytes], nanos: u64) {
        use crate::commands::table::{table, FAST, SKIP_SLOWLOG};
        let Some(spec) = table().get(id) else {
            return;
        };
        if nanos >= self.slow.threshold_ns && self.slow.max_len > 0 && !spec.has(SKIP_SLOWLOG) {
            self.slow.note(argv, nanos, slowlog::Who::Caller);
        }
        let event = if spec.has(FAST) {
            "fast-command"
        } else {
            "command"
        };
        self.lat.event(event, nanos / 1_000_000);
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

    /// `touch` for a write whose whole effect on `key` is the command `effect` (an element
    /// moved onto a list or into a set by another shard's step): the journal records that
    /// command rather than the key's whole state, so moving one element into a long list
    /// costs one element. Call it after the change.
    pub fn touch_effect(&mut self, db: usize, key: &[u8], effect: &[&[u8]]) {
        journal::effect(self, db, effect);
        self.watches.touch(db, key);
        self.blocked.signal(db, key);
        if self.notify != 0 {
            notify::touched(&mut self.notes, db, key);
        }
        if let Some(t) = self.tracking.as_mut() {
            t.touched(key);
        }
    }

    /// The tracking table, created on first use.
    pub fn tracking_mut(&mut self) -> &mut tracking::TrackingTable {
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

    /// SWAPDB: exchanges two databases' contents. A running snapshot of either is first
    /// completed, and each snapshot stays with its database index (it is the moment's
    /// content of that index).
    pub fn swap_dbs(&mut self, a: usize, b: usize) {
        if a >= self.dbs.len() || b >= self.dbs.len() || a == b {
            return;
        }
        for i in [a, b] {
            if let Some(d) = self.dbs.get_mut(i) {
                d.snap_finish();
            }
        }
        self.dbs.swap(a, b);
        let (lo, hi) = (a.min(b), a.max(b));
        let (x, y) = self.dbs.split_at_mut(hi);
        if let (Some(x), Some(y)) = (x.get_mut(lo), y.first_mut()) {
            std::mem::swap(&mut x.snap, &mut y.snap);
        }
    }

    /// Starts a stepped snapshot of every database (see `snapshot.rs`).
    pub fn snap_begin(&mut self, compress: bool) {
        self.snap_begin_to(compress, None);
    }

    /// `snap_begin` for a streamed BGSAVE: database 0's records go to `tx` as they grow
    /// (the other databases, usually empty or small, are handed over at the end), after a
    /// size hint for its RESIZEDB.
    pub fn snap_begin_to(
        &mut self,
        compress: bool,
        tx: Option<std::sync::mpsc::Sender<crate::persist::save::Piece>>,
    ) {
        let now = self.now_ms;
        for (i, d) in self.dbs.iter_mut().enumerate() {
            let sink = match (&tx, i) {
                (Some(tx), 0) => {
                    let _ = tx.send(crate::persist::save::Piece::Size {
                        keys: d.len() as u64,
                        expires: d.expires_len() as u64,
                    });
                    Some(snapshot::Sink { tx: tx.clone() })
                }
                _ => None,
            };
            d.snap_begin_to(compress, now, sink);
        }
    }

    /// Stops the running snapshot (a BGSAVE the shutdown does not wait for): every
    /// database's walk ends at once, keeping nothing.
    pub fn snap_cancel(&mut self) {
        self.dbs.iter_mut().for_each(|d| d.snap_cancel());
    }

    /// One slice of the running snapshot: about `budget` entries over the databases. True
    /// when every database is complete.
    pub fn snap_step(&mut self, budget: usize) -> bool {
        for d in self.dbs.iter_mut() {
            if !d.snap_step(budget) {
                return false;
            }
        }
        true
    }

    /// The finished snapshot, per database: (records, keys, expires).
    pub fn snap_take(&mut self) -> Vec<(Vec<u8>, u64, u64)> {
        self.dbs
            .iter_mut()
            .map(|d| d.snap_take().unwrap_or_default())
            .collect()
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
