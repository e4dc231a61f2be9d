//! The shard-side engine: what one shard owns and runs on its owner thread, apart from
//! sockets. The databases (`shard`), the multi-shard lock and the jobs parked behind it,
//! this shard's end of the mesh, fan-out gathers, the owner side of transactions, blocked
//! clients' waiters, the append-only writer and a running snapshot.
//!
//! `server::worker::Worker` owns one `Engine` (`Worker::eng`) next to its ring and
//! connections; the worker's loop drives it.

pub mod mail;
pub mod scripts;
pub mod shared;

/// Keys a shard asked to evict by another gives up whatever the published counts say.
const ASKED_MIN_EVICTIONS: u32 = 8;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use crate::error::CmdError;
use crate::runtime::clock;
use crate::runtime::mesh::Endpoint;
use crate::shard::evict::{self, Outcome};
use crate::shard::Shard;
use mail::Gather;
pub use mail::{Batch, BatchCmd, BatchMsg, Filled, Job, Msg, Out, ShardFn, Ticket};
use shared::Shared;

/// Per-shard network and connection counters, aggregated by INFO.
#[derive(Default, Clone, Copy, Debug)]
pub struct NetStats {
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    /// Bytes read from the master link and sent to replicas (Redis 7.0 counts them apart).
    pub net_repl_input_bytes: u64,
    pub net_repl_output_bytes: u64,
    /// Receives and sends completed (INFO total_reads_processed / total_writes_processed).
    pub reads_processed: u64,
    pub writes_processed: u64,
    pub connections_received: u64,
    pub rejected_connections: u64,
    /// Clients closed by maxmemory-clients (`client_evict`).
    pub evicted_clients: u64,
}

impl NetStats {
    /// A receive of `n` bytes (from the master link when `master`).
    #[inline]
    pub fn count_input(&mut self, master: bool, n: u64) {
        self.reads_processed += 1;
        if master {
            self.net_repl_input_bytes += n;
        } else {
            self.net_input_bytes += n;
        }
    }

    /// A send of `n` bytes (to a replica when `replica`).
    #[inline]
    pub fn count_output(&mut self, replica: bool, n: u64) {
        self.writes_processed += 1;
        if replica {
            self.net_repl_output_bytes += n;
        } else {
            self.net_output_bytes += n;
        }
    }
}

pub struct Engine {
    pub id: usize,
    pub nshards: usize,
    pub shard: Shard,
    pub shared: Arc<Shared>,
    /// Held by a multi-shard atomic command while it runs (its transaction id).
    pub lock: Option<u64>,
    /// A command from the master link is being dispatched here (a replica): the shard
    /// locks it takes make its keys look as the master saw them (`coord::lock`).
    pub from_master: bool,
    /// This shard is locked by such a command: every database is in `master_view` until
    /// the lock is released.
    pub master_locked: bool,
    pub gathers: Slab<Gather>,
    /// MULTI/EXEC runs coordinated from this shard (`coord::tx`).
    pub tx: crate::coord::tx::TxRuns,
    /// Clients of this shard waiting in blocking commands (`coord::blocking`).
    pub waiters: crate::coord::blocking::Waiters,
    pub mesh: Endpoint<Msg>,
    pub local: VecDeque<Msg>,
    /// `Work` and `Batch` messages waiting for this shard's lock to go.
    pub parked: VecDeque<Msg>,
    /// Batches sent to other shards whose replies have not arrived yet.
    pub awaiting: usize,
    /// Messages taken from the mesh and not run yet (a long script's busy pump adds what
    /// arrives meanwhile, after answering batches with `-BUSY`).
    pub inbox: VecDeque<Msg>,
    /// This shard's append-only log, with `appendonly yes` (see `persist::aof`).
    pub aof: Option<crate::persist::aof::Writer>,
    /// Logs switched away from (a rewrite's cut, `appendonly no`) while a group was still
    /// on the ring: kept until what they encoded is written.
    pub aof_retired: Vec<crate::persist::aof::Writer>,
    /// Messages for other shards that wait for the log (`post`): each with the journal
    /// offset it waits for, in the order they were posted.
    pub held: VecDeque<(u64, usize, Msg)>,
    /// A snapshot being serialised a slice per pass (`persist::save`); `None` costs one
    /// test per pass.
    pub snap_run: Option<crate::persist::save::Stepping>,
    /// A shutdown waiting for its save (SHUTDOWN, or a signal on shard 0): see
    /// `persist::cron`.
    pub shutdown_req: Option<crate::persist::cron::ShutdownReq>,
    /// The loop pass's clock reading.
    pub pass_now: Instant,
    /// What jobs and handlers left for this shard's connection side (replies, a client
    /// starting or ending a blocking wait), drained by it after every job.
    pub outbox: Vec<Out>,
    /// CLIENT PAUSE in force this pass (`server::pause`: NONE, WRITES, ALL).
    pub pause: u8,
    /// Memory the connection side holds that is not data (client buffers, scratch), as
    /// of its last report: left out of the maxmemory sums.
    pub front_bytes: u64,
    pub net: NetStats,
    /// Replication: this shard's journal records are shipped to the hub from this
    /// offset on (`repl::master::push_now`); `None` until the first full sync's cut or a
    /// promotion.
    pub ship: Option<u64>,
    /// Timers subsystems of the engine set (`after`): a blocked client's timeout, for one.
    /// The loop runs each as a job when due.
    pub timers: crate::runtime::timer::Timers<Job>,
}

impl Engine {
    pub fn new(id: usize, shared: Arc<Shared>, mesh: Endpoint<Msg>, commands: usize) -> Engine {
        let nshards = shared.cfg.shards;
        Engine {
            id,
            nshards,
            shard: Shard::new(id, nshards, shared.cfg.databases, commands),
            shared,
            lock: None,
            from_master: false,
            master_locked: false,
            gathers: Slab::new(),
            tx: Default::default(),
            waiters: Default::default(),
            mesh,
            local: VecDeque::new(),
            parked: VecDeque::new(),
            awaiting: 0,
            inbox: VecDeque::new(),
            aof: None,
            aof_retired: Vec::new(),
            held: VecDeque::new(),
            snap_run: None,
            shutdown_req: None,
            pass_now: Instant::now(),
            outbox: Vec::new(),
            pause: 0,
            front_bytes: 0,
            net: NetStats::default(),
            ship: None,
            timers: Default::default(),
        }
    }
}

impl Engine {
    /// This shard's stall detector readings (see `server::Pulse`).
    #[inline]
    pub fn pulse(&self) -> &shared::Pulse {
        &self.shared.pulse[self.id]
    }

    /// How long this shard has been in its current loop pass, in milliseconds.
    pub fn pass_age_ms(&self) -> u64 {
        Instant::now()
            .saturating_duration_since(self.pass_now)
            .as_millis() as u64
    }

    /// Takes (`Some(txid)`) or releases this shard's lock for a multi-shard command,
    /// telling the stall detector when it was taken.
    pub fn set_lock(&mut self, lock: Option<u64>) {
        let since = if lock.is_some() {
            self.shared.pulse_now()
        } else {
            0
        };
        self.pulse().locked_since.store(since, Ordering::Relaxed);
        self.lock = lock;
        if lock.is_none() {
            crate::shard::journal::end_tx(&mut self.shard);
            if self.master_locked {
                self.set_master_view(false);
            }
        }
    }

    /// Puts every database in (or out of) `master_view`: a replica's keys that its own clock
    /// expired are live for the master's command holding this shard's lock.
    #[cold]
    pub fn set_master_view(&mut self, on: bool) {
        self.master_locked = on;
        for d in self.shard.dbs.iter_mut() {
            d.master_view = on;
        }
    }

    /// Runs `f` on this engine at `at` (a timer of the engine's own; the loop runs it as a
    /// job, its replies drained like any other).
    pub fn after(&mut self, at: Instant, f: impl FnOnce(&mut Engine) + Send + 'static) {
        self.timers.add(at, Box::new(f));
    }

    /// Asks every shard's loop to stop (SHUTDOWN, signals).
    pub fn request_shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        scripts::abort_all();
        self.mesh.wake_all();
        // The main thread starts the grace period for shards that cannot stop.
        let _ = self.shared.events.send(shared::Event::Stop);
    }
    /// Redis's performEvictions, per shard (scheme in `shard::evict`): when the memory in use
    /// (heap minus every shard's spare arena bytes) is over `maxmemory`, evict keys of this
    /// shard, at most `evict::MAX_KEYS_PER_CALL`, while it holds about as many evictable keys
    /// as the fullest other shard. Memory is process-wide, so whichever shard happens to check
    /// would otherwise pay for everyone (the connection's shard checks before every command,
    /// reads too) and run out of old keys while the others keep theirs. A shard with fewer
    /// candidates than another asks that one to evict instead; `Err(OOM)` for a command that
    /// may grow memory (`denyoom`) when no shard has anything.
    pub fn memory_check(&mut self, denyoom: bool) -> Result<(), CmdError> {
        self.memory_check_inner(denyoom, false)
    }

    /// `memory_check`; `asked` when another shard asked this one to evict.
    fn memory_check_inner(&mut self, denyoom: bool, asked: bool) -> Result<(), CmdError> {
        let max = self.shared.tun.maxmemory.load(Ordering::Relaxed);
        // A replica leaves eviction to its master (Redis's replica-ignore-maxmemory yes):
        // evicting here would make its dataset differ from the master's.
        // Nor does anything evict during CLIENT PAUSE, as in Redis.
        if max == 0 || crate::role::is_replica() || self.pause != 0 {
            return Ok(());
        }
        let me = self.id;
        let mut others = 0u64;
        let mut fullest = 0u64;
        for (i, m) in self.shared.mem.iter().enumerate() {
            if i != me {
                others += m.spare.load(Ordering::Relaxed) + m.transient.load(Ordering::Relaxed);
                fullest = fullest.max(m.candidates.load(Ordering::Relaxed));
            }
        }
        // Connection buffers and scratch are not data: evicting keys would not shrink them
        // (they go back by themselves, see `trim_scratch` / `Conn::shrink_buffers`), as
        // Redis leaves replication buffers out (`freeMemoryGetNotCountedMemory`).
        let mine = self.front_bytes + crate::shard::journal::total_bytes();
        let over = |s: &Shard| {
            crate::runtime::alloc::used().saturating_sub(others + mine + s.spare_bytes()) > max
        };
        if !over(&self.shard) {
            return Ok(());
        }
        // Evict here while this shard is not clearly smaller than the fullest other one. A
        // shard that was asked evicts a few keys whatever the figures say (another shard's
        // published count can be stale by a tick), so a request always makes progress.
        let slack = (fullest / 64).max(16);
        let mut rounds = 0;
        let mut fair = |s: &Shard| {
            rounds += 1;
            (asked && rounds <= ASKED_MIN_EVICTIONS) || evict::candidates(s) + slack >= fullest
        };
        let cycle = clock::ticks();
        let outcome = evict::evict(&mut self.shard, |s| over(s) && fair(s));
        let ms = clock::to_nanos(clock::ticks().wrapping_sub(cycle)) / 1_000_000;
        self.shard.lat.event("eviction-cycle", ms);
        self.publish_mem();
        if outcome == Outcome::Capped || !over(&self.shard) {
            return Ok(());
        }
        // Still over: this shard has nothing to evict, or fewer keys than another. Ask the
        // shards holding at least as many candidates as this one (any, when it has none).
        let mine = evict::candidates(&self.shard);
        let mut elsewhere = false;
        for j in (0..self.nshards).filter(|&j| j != me) {
            let Some(m) = self.shared.mem.get(j) else {
                continue;
            };
            let theirs = m.candidates.load(Ordering::Relaxed);
            if theirs == 0 || theirs < mine {
                continue;
            }
            elsewhere = true;
            if !m.nudged.swap(true, Ordering::Relaxed) {
                self.post(
                    j,
                    Msg::Work(Box::new(|tw: &mut Engine| {
                        if let Some(m) = tw.shared.mem.get(tw.id) {
                            m.nudged.store(false, Ordering::Relaxed);
                        }
                        let _ = tw.memory_check_inner(false, true);
                        tw.publish_mem();
                    })),
                );
            }
        }
        if elsewhere || mine > 0 || !denyoom {
            Ok(())
        } else {
            Err(CmdError::coded(
                "OOM command not allowed when used memory > 'maxmemory'.",
            ))
        }
    }

    /// Publishes this shard's spare arena bytes and evictable key count (`Shared::mem`).
    pub fn publish_mem(&self) {
        if let Some(m) = self.shared.mem.get(self.id) {
            m.spare.store(self.shard.spare_bytes(), Ordering::Relaxed);
            m.candidates
                .store(evict::candidates(&self.shard), Ordering::Relaxed);
            m.transient.store(self.front_bytes, Ordering::Relaxed);
            m.dirty.store(self.shard.dirty, Ordering::Relaxed);
        }
    }
}
