//! The shard-side engine: what one shard owns and runs on its owner thread, apart from
//! sockets. The databases (`shard`), the multi-shard lock and the jobs parked behind it,
//! this shard's end of the mesh, fan-out gathers, the owner side of transactions, blocked
//! clients' waiters, the append-only writer and a running snapshot.
//!
//! `server::worker::Worker` owns one `Engine` (`Worker::eng`) next to its ring and
//! connections; the worker's loop drives it.

use std::collections::VecDeque;
use std::sync::Arc;

use slab::Slab;

use crate::runtime::mesh::Endpoint;
use crate::server::worker::{Gather, Msg};
use crate::server::Shared;
use crate::shard::Shard;

pub struct Engine {
    pub id: usize,
    pub nshards: usize,
    pub shard: Shard,
    pub shared: Arc<Shared>,
    /// Held by a multi-shard atomic command while it runs (its transaction id).
    pub lock: Option<u64>,
    pub gathers: Slab<Gather>,
    /// MULTI/EXEC runs coordinated from this shard (`coord::tx`).
    pub tx: crate::coord::tx::TxRuns,
    /// Clients of this shard waiting in blocking commands (`coord::block`).
    pub waiters: crate::coord::block::Waiters,
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
    /// A snapshot being serialised a slice per pass (`persist::save`); `None` costs one
    /// test per pass.
    pub snap_run: Option<crate::persist::save::Stepping>,
    /// A shutdown waiting for its save (SHUTDOWN, or a signal on shard 0): see
    /// `persist::cron`.
    pub shutdown_req: Option<crate::persist::cron::ShutdownReq>,
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
            gathers: Slab::new(),
            tx: Default::default(),
            waiters: Default::default(),
            mesh,
            local: VecDeque::new(),
            parked: VecDeque::new(),
            awaiting: 0,
            inbox: VecDeque::new(),
            aof: None,
            snap_run: None,
            shutdown_req: None,
        }
    }
}
