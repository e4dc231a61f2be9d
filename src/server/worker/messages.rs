//! Messages between shards as the connection side sees them: batches of plain commands to
//! other shards and their encoded replies, jobs for this shard's connections (`front`),
//! fan-outs over every shard's connection side, deferred reply slots and the engine's
//! outbox. Runs on the shard thread.

use super::*;

impl Worker {
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

    /// Sends this connection's commands for other shards: one message per shard.
    pub(super) fn flush_batches(&mut self, idx: usize) {
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
            // The next batch for `s` starts with room for one like this (its vectors are
            // not grown by doubling from empty again).
            let room = self
                .batches
                .get(s)
                .map_or((0, 0), |b| (b.cmds.len().min(256), b.args.len().min(1024)));
            let batch = std::mem::replace(&mut self.batches[s], Batch::with_capacity(room));
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

    /// Reserves a reply slot for connection `idx` and pauses its parsing until filled.
    pub fn defer(&mut self, idx: usize) -> Ticket {
        if let Some(t) = crate::server::tx::capture_ticket(self) {
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
        if let Some(t) = crate::server::tx::capture_ticket(self) {
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
        self.fill_with(idx, |c| c.fill(seq, bytes));
    }

    /// `fill` with borrowed bytes (`Conn::fill_slice`).
    pub fn fill_slice(&mut self, idx: usize, seq: u64, data: &[u8]) {
        self.fill_with(idx, |c| c.fill_slice(seq, data));
    }

    #[inline]
    fn fill_with(&mut self, idx: usize, f: impl FnOnce(&mut crate::server::connection::Conn)) {
        let conn = &mut self.conns[idx];
        let was_blocked = conn.blocked_on.is_some();
        f(conn);
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
    pub(super) fn filled(&mut self, f: Filled) {
        if let Some(p) = f.slow {
            self.slow_commit_token(f.token, p);
        }
        self.fill_batch(f.token, f.buf, f.marks, f.remote)
    }

    pub(super) fn fill_batch(
        &mut self,
        token: u64,
        buf: Bytes,
        marks: Vec<(u64, usize)>,
        remote: bool,
    ) {
        if remote {
            self.eng.awaiting = self.eng.awaiting.saturating_sub(1);
        }
        let Some(idx) = self.conn_by_token(token) else {
            return;
        };
        let c = &mut self.conns[idx];
        c.batches_out = c.batches_out.saturating_sub(1);
        // Parts are copied out (straight into the output buffer when in order) rather than
        // sliced: no reference count per reply, and `buf` is freed whole.
        let mut start = 0;
        for (seq, end) in marks {
            let part = buf.get(start..end).unwrap_or_default();
            start = end;
            self.fill_slice(idx, seq, part);
            if !self.conns.contains(idx) {
                return;
            }
        }
    }

    pub(super) fn run_messages(&mut self) {
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

    pub(super) fn handle_msg(&mut self, m: Msg) {
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
    pub(super) fn run_job(&mut self, j: Job) {
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

    pub(super) fn deliver(&mut self, t: Ticket, reply: Reply) {
        if coord::tx::is_capture(&t) {
            crate::server::tx::captured(self, t, reply);
            return;
        }
        let Some(idx) = self.conn_by_token(t.token) else {
            return;
        };
        let mut v = Vec::new();
        reply.encode(self.conns[idx].client.resp, &mut v);
        self.fill(idx, t.seq, Bytes::from(v));
    }

    pub(super) fn run_parked(&mut self) {
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
}

/// Warms the table slots, then the entries, of a batch's single-key commands (as the
/// look-ahead does for local pipelines), so running them in order finds them in cache.
pub(super) fn prefetch_batch(tw: &mut Worker, batch: &Batch) {
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
pub(super) fn exec_batch(
    tw: &mut Worker,
    origin: usize,
    token: u64,
    client: u64,
    resp: u8,
    batch: Batch,
) {
    let t = table();
    let per = tw.batch_reply_bytes.clamp(8, 512);
    let mut buf = Vec::with_capacity(batch.cmds.len() * per + 16);
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
            let slot = tw.eng.shard.stat_slot(c.id, argv);
            if let Some(st) = tw.eng.shard.cmd_stats.get_mut(slot) {
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
            Some(Exec::Split(m)) => {
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
                client,
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
            coord::blocking::serve_ready(&mut tw.eng);
        }
        reply.encode(resp, &mut buf);
        marks.push((c.seq, buf.len()));
    }
    tw.batch_reply_bytes = buf.len() / batch.cmds.len().max(1) + 1;
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
pub(super) fn run_batch(tw: &mut Worker, b: BatchMsg) {
    exec_batch(tw, b.origin, b.token, b.client, b.resp, b.batch);
    tw.drain_outbox();
}

/// Answers every command of a batch with `text` (in their reply slots) instead of running
/// them.
pub(super) fn refuse_batch(tw: &mut Worker, b: BatchMsg, text: &str) {
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

impl crate::commands::ConnSide for Worker {
    fn eng(&mut self) -> &mut Engine {
        &mut self.eng
    }

    fn client(&mut self, conn: usize) -> &mut crate::commands::ClientInfo {
        &mut self.conns[conn].client
    }

    fn defer(&mut self, conn: usize) -> Ticket {
        Worker::defer(self, conn)
    }

    fn reserve(&mut self, conn: usize) -> Ticket {
        Worker::reserve(self, conn)
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
