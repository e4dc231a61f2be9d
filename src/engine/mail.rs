//! What shards send one another over the mesh (`runtime::mesh`), and the owner-side
//! plumbing around it: posting, fan-out with gathered results, synchronous calls for
//! scripts, deferred-reply tickets. Runs on every shard thread, on `&mut Engine`.
//!
//! Cross-shard work is a closure (`Job`) sent to the owner shard. `Work` jobs respect a
//! shard lock taken by multi-shard atomic commands (they wait, FIFO, while the shard is
//! locked); `Control` jobs (replies, the lock holder's own steps) always run. Jobs see only
//! the engine: a reply for a connection goes into the engine's outbox (`Engine::complete`),
//! which the connection side drains. Batches of plain commands and their replies are data
//! (`Batch`, `Filled`), handled by the connection side.

use std::any::Any;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use super::Engine;
use crate::protocol::reply::Reply;

/// Work shipped to another shard (or queued for our own).
pub type Job = Box<dyn FnOnce(&mut Engine) + Send>;

/// A job run on some shard that produces a value for a fan-out.
pub type ShardFn<T> = Box<dyn FnOnce(&mut Engine) -> T + Send>;

pub enum Msg {
    /// Keyspace work: waits while the shard is locked by a multi-shard command.
    Work(Job),
    /// Replies and a lock holder's own steps: always run at once.
    Control(Job),
    /// A connection's commands for this shard: `Work`, but data, so that a shard held by a
    /// busy script can answer it with `-BUSY` (`busy_pump`, `handle_msg`).
    Batch(Box<BatchMsg>),
    /// The encoded replies of a batch, back on the connection's shard.
    Filled(Box<Filled>),
    /// Work for the connection side of the shard (its connections, subscribers,
    /// monitors), which this layer does not see: the worker hands itself to it
    /// (`server::worker::front`). Runs at once, lock or not.
    Front(FrontJob),
}

/// A job for a shard's connection side; see `Msg::Front`.
pub type FrontJob = Box<dyn FnOnce(&mut dyn Any) + Send>;

/// A batch on its way to the shard that runs it.
pub struct BatchMsg {
    pub origin: usize,
    pub token: u64,
    /// The sending client's id (the slow log names it).
    pub client: u64,
    pub resp: u8,
    pub batch: Batch,
}

/// A batch's replies: `buf` holds them encoded, `marks` says where each ends and which
/// reply slot it fills.
pub struct Filled {
    pub token: u64,
    pub buf: Bytes,
    pub marks: Vec<(u64, usize)>,
    /// Sent by another shard (the origin counts it in `Engine::awaiting`).
    pub remote: bool,
    /// Slow-log entries of the batch's commands, logged where the client lives.
    pub slow: Option<Vec<crate::shard::slowlog::Pending>>,
}

/// What the engine leaves for the connection side of its shard (`Engine::outbox`), in order.
pub enum Out {
    /// A deferred reply for a connection of this shard (or a running EXEC).
    Reply(Ticket, Reply),
    /// Connection `conn` starts (`on`) or ends waiting in a blocking command as waiter
    /// `wid` (`coord::blocking`): it stays read meanwhile, so a disconnect ends the wait.
    Waiting { conn: usize, wid: u64, on: bool },
}

/// Where a deferred reply goes: a connection (by token) and its reply slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub shard: usize,
    pub token: u64,
    pub seq: u64,
}

/// One command bound for another shard inside a batch; its arguments are
/// `Batch::args[start..end]`.
pub struct BatchCmd {
    pub seq: u64,
    pub id: usize,
    pub db: usize,
    pub start: usize,
    pub end: usize,
    /// The client is in CLIENT NO-TOUCH mode.
    pub no_touch: bool,
    /// From the master link: expired keys are live for it (`Db::master_view`).
    pub master: bool,
}

/// Commands of one connection's read for one other shard: one message, one argument vector
/// for all of them (no allocation per command).
#[derive(Default)]
pub struct Batch {
    pub cmds: Vec<BatchCmd>,
    pub args: Vec<Bytes>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }

    /// An empty batch with room for `cmds` commands of `args` arguments in all.
    pub fn with_capacity((cmds, args): (usize, usize)) -> Batch {
        Batch {
            cmds: Vec::with_capacity(cmds),
            args: Vec::with_capacity(args),
        }
    }
}

type GatherDone = Box<dyn FnOnce(&mut Engine, Vec<Box<dyn Any + Send>>)>;

/// Results of a fan-out being collected on the origin shard.
pub struct Gather {
    remaining: usize,
    results: Vec<Option<Box<dyn Any + Send>>>,
    done: Option<GatherDone>,
}

impl Engine {
    /// Sends what this shard queued for other shards (and wakes them). With an append-only
    /// file, the records of what this shard changed are written first: under `appendfsync
    /// everysec|no` with one blocking `write` here; under `always` they are encoded here and
    /// the connection side writes and syncs them as a group on its ring
    /// (`server::worker::aof`). A message that waits for the log (`post`) leaves once the
    /// records before it went through. Returns true while some messages still wait for
    /// queue space.
    pub fn flush_mesh(&mut self) -> bool {
        if let Some(a) = self.aof.as_mut() {
            crate::shard::journal::flush(&mut self.shard);
            if self.shared.tun.appendfsync.load(Ordering::Relaxed) == 2 {
                a.encode(&mut self.shard);
            } else {
                a.write_pass(&mut self.shard, false);
            }
        }
        if !self.held.is_empty() {
            let durable = self.aof_durable();
            while self.held.front().is_some_and(|h| h.0 <= durable) {
                if let Some((_, to, msg)) = self.held.pop_front() {
                    self.mesh.send(to, msg);
                }
            }
        }
        self.mesh.flush()
    }

    /// The journal offset a reply or message produced now must wait for before it leaves
    /// this shard: `Some` while records this shard wrote have not gone through the log.
    #[inline]
    pub fn aof_gate(&self) -> Option<u64> {
        let a = self.aof.as_ref()?;
        let j = self.shard.journal.as_ref()?;
        // Keys a step touched are recorded when it ends (`journal::flush`): a message posted
        // before then (a batch's replies, a job's) waits for the byte past `next`, which
        // only a sync of those records reaches.
        let next = j.next() + u64::from(j.has_pending());
        (a.synced() < next).then_some(next)
    }

    /// The journal offset below which every record went through the log (`u64::MAX`
    /// without one).
    pub fn aof_durable(&self) -> u64 {
        let mut d = self.aof.as_ref().map_or(u64::MAX, |a| a.synced());
        for r in &self.aof_retired {
            d = d.min(r.synced());
        }
        d
    }

    /// Records are encoded and no group carries them yet: the loop must not sleep.
    pub fn aof_ready(&self) -> bool {
        self.aof.as_ref().is_some_and(|a| a.ready()) || self.aof_retired.iter().any(|a| a.ready())
    }

    /// Installs (or, with `None`, drops) this shard's append-only writer.
    pub fn set_aof(&mut self, w: Option<crate::persist::aof::Writer>) {
        self.aof = w;
    }

    /// Sends a job to shard `to` (our own shard included: it runs later this pass). With
    /// an append-only file, a message posted after a write waits until the write's record
    /// went through the log (`flush_mesh`): a reply or a result that reaches another
    /// shard's client never outruns it.
    pub fn post(&mut self, to: usize, msg: Msg) {
        if to == self.id {
            self.local.push_back(msg);
        } else if self.aof.is_none() && self.held.is_empty() {
            self.mesh.send(to, msg);
        } else {
            self.post_gated(to, msg);
        }
    }

    #[cold]
    fn post_gated(&mut self, to: usize, msg: Msg) {
        match self.aof_gate() {
            Some(g) => self.held.push_back((g, to, msg)),
            None if !self.held.is_empty() => {
                // Behind what is held for the same or another shard: order is kept.
                let g = self.held.back().map_or(0, |h| h.0);
                self.held.push_back((g, to, msg));
            }
            None => self.mesh.send(to, msg),
        }
    }

    /// Delivers a deferred reply: into the outbox the connection side drains (a reply for
    /// a connection of another shard is posted there first).
    pub fn complete(&mut self, t: Ticket, reply: Reply) {
        if t.shard == self.id {
            self.outbox.push(Out::Reply(t, reply));
        } else {
            self.post(
                t.shard,
                Msg::Control(Box::new(move |e: &mut Engine| e.complete(t, reply))),
            );
        }
    }

    /// Starts collecting `n` results for `done` (typed `T`): each arrives through
    /// `gather_reply`, from any shard, with its index.
    pub fn gather_start<T: Send + 'static>(
        &mut self,
        n: usize,
        done: impl FnOnce(&mut Engine, Vec<T>) + 'static,
    ) -> usize {
        let gid = self.gathers.insert(Gather {
            remaining: n,
            results: (0..n).map(|_| None).collect(),
            done: Some(Box::new(move |e, v| {
                let typed: Vec<T> = v
                    .into_iter()
                    .filter_map(|b| b.downcast::<T>().ok().map(|b| *b))
                    .collect();
                done(e, typed)
            })),
        });
        if n == 0 {
            self.gather_finish(gid);
        }
        gid
    }

    /// Sends result `i` of gather `gid` to its shard `origin`.
    pub fn gather_reply(&mut self, origin: usize, gid: usize, i: usize, r: Box<dyn Any + Send>) {
        self.post(
            origin,
            Msg::Control(Box::new(move |oe: &mut Engine| oe.gather_put(gid, i, r))),
        );
    }

    /// Runs `f` on every shard in `targets` and calls `done` here with the results in
    /// `targets` order. `work` jobs wait for shard locks; control jobs do not.
    pub fn fan_out<T: Send + 'static>(
        &mut self,
        targets: Vec<(usize, ShardFn<T>)>,
        work: bool,
        done: impl FnOnce(&mut Engine, Vec<T>) + 'static,
    ) {
        // Inside EXEC the targets are locked by the transaction itself: don't wait for them.
        let work = work && !self.tx.nested();
        let n = targets.len();
        let gid = self.gather_start(n, done);
        let origin = self.id;
        for (i, (target, f)) in targets.into_iter().enumerate() {
            let job: Job = Box::new(move |te: &mut Engine| {
                let r: Box<dyn Any + Send> = Box::new(f(te));
                te.gather_reply(origin, gid, i, r);
            });
            self.post(
                target,
                if work {
                    Msg::Work(job)
                } else {
                    Msg::Control(job)
                },
            );
        }
    }

    /// Runs `f` on every shard and hands the results, in shard order, to `done` here.
    /// `work` jobs wait for shard locks (keyspace reads); control jobs do not.
    pub fn on_all_shards<T: Send + 'static>(
        &mut self,
        f: impl Fn(&mut Engine) -> T + Send + Clone + 'static,
        work: bool,
        done: impl FnOnce(&mut Engine, Vec<T>) + 'static,
    ) {
        let jobs = (0..self.nshards)
            .map(|s| {
                let f = f.clone();
                let job: ShardFn<T> = Box::new(move |te| f(te));
                (s, job)
            })
            .collect();
        self.fan_out(jobs, work, done);
    }

    fn gather_put(&mut self, gid: usize, i: usize, r: Box<dyn Any + Send>) {
        let Some(g) = self.gathers.get_mut(gid) else {
            return;
        };
        if let Some(slot) = g.results.get_mut(i) {
            *slot = Some(r);
        }
        g.remaining = g.remaining.saturating_sub(1);
        if g.remaining == 0 {
            self.gather_finish(gid);
        }
    }

    fn gather_finish(&mut self, gid: usize) {
        if let Some(mut g) = self.gathers.try_remove(gid) {
            let results = g.results.drain(..).flatten().collect();
            if let Some(done) = g.done.take() {
                done(self, results);
            }
        }
    }

    /// Runs `f` on shard `to` and waits for its result, for a script's `redis.call` on a
    /// shard the script holds. That shard is locked for the script (by its transaction), so
    /// it runs nothing but `Control` jobs and answers at its next loop pass; this thread
    /// yields meanwhile. `None` if the server stops first.
    pub fn call_sync<T: Send + 'static>(&mut self, to: usize, f: ShardFn<T>) -> Option<T> {
        type Cell<T> = std::sync::Mutex<Option<T>>;
        let cell: Arc<Cell<T>> = Arc::new(std::sync::Mutex::new(None));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c2, d2) = (cell.clone(), done.clone());
        // Not held for the log (`post`): this thread spins here and would never see the
        // group it waits for complete. The shard it calls is locked for the caller.
        let job = Msg::Control(Box::new(move |te: &mut Engine| {
            let v = f(te);
            if let Ok(mut g) = c2.lock() {
                *g = Some(v);
            }
            d2.store(true, Ordering::Release);
        }));
        if to == self.id {
            self.local.push_back(job);
        } else {
            self.mesh.send(to, job);
        }
        let mut spins = 0u32;
        loop {
            self.flush_mesh();
            if done.load(Ordering::Acquire) {
                return cell.lock().ok().and_then(|mut g| g.take());
            }
            if self.shared.shutdown.load(Ordering::Relaxed) {
                return None;
            }
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}
