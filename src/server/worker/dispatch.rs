//! The request path of a shard's connections: parsing the input (with the look-ahead),
//! the checks every command passes (ACL, MULTI queueing, arity, maxmemory, MISCONF, replica
//! gates, CLIENT PAUSE), then running it here, batching it to its owner shard, or
//! coordinating it across shards. Runs on the shard thread that owns the connection.

use super::*;

impl Worker {
    /// Parses and runs every complete command in the connection's read buffer.
    pub(super) fn process_input(&mut self, idx: usize) {
        let max_bulk = self.max_bulk();
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
                    parser::parse_partial_as(
                        rbuf,
                        parser::Limits::new(max_bulk, !conn.client.authed),
                        &mut args,
                        &mut conn.partial,
                    ),
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
                    // Not for a client that must authenticate first: the commands behind
                    // its AUTH are parsed with the smaller limits until AUTH has run.
                    if hint.is_none() && rbuf.len() > n && !args.is_empty() && conn.client.authed {
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
                    // The command's name as static bytes when the client spelled it in
                    // one case (one reference count fewer again); the row found here is
                    // the one `dispatch` would look up.
                    let t = table();
                    let known = match (hint.flatten(), args.first()) {
                        (Some(id), _) => Some(id),
                        (None, Some(Arg::Range(s, e))) => chunk
                            .get(*s..*e)
                            .and_then(|n| t.lookup(n))
                            .map(|(id, _)| id),
                        _ => None,
                    };
                    if args.len() > 1 {
                        let name = match (known, args.first()) {
                            (Some(id), Some(Arg::Range(s, e))) => {
                                chunk.get(*s..*e).and_then(|n| t.static_name(id, n))
                            }
                            _ => None,
                        };
                        if let Some(name) = name {
                            argv.push(Bytes::from_static(name));
                        }
                    }
                    let first = usize::from(!argv.is_empty());
                    let last = args.pop();
                    argv.extend(args.drain(first.min(args.len())..).map(|a| match a {
                        Arg::Range(s, e) => chunk.slice(s..e),
                        Arg::Owned(v) => Bytes::from(v),
                    }));
                    args.clear();
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
                    self.dispatch_one(idx, &mut argv, known);
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
    pub(super) fn dispatch_one(&mut self, idx: usize, argv: &mut Vec<Bytes>, known: Option<usize>) {
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
    pub(super) fn dispatch_muted(
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
    pub(super) fn dispatch(&mut self, idx: usize, argv: &mut Vec<Bytes>, known: Option<usize>) {
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
        if crate::server::tx::in_multi(&self.conns[idx])
            && crate::server::tx::queue(self, idx, argv)
        {
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
            if self.conns[idx].master {
                let text = String::from_utf8_lossy(reply.get(1..).unwrap_or_default());
                commands::master_error(text.trim_end(), "<unknown>");
            }
            self.conns[idx].push_reply(&Reply::Raw(reply));
            return;
        };
        if let Err(e) = commands::check_arity(spec, argv) {
            self.reject(idx, Some(id), argv, e);
            return;
        }
        // The row's flags, plus a subcommand's (FUNCTION LOAD writes).
        let flags = spec.flags_for(argv);
        // maxmemory: evict, or refuse commands that may grow memory when nothing can be
        // evicted. A command bound for one other shard (or for this one while it is locked)
        // is checked there, by the shard whose keys it writes (`exec_batch`).
        // The master's writes are never refused (Redis obeys its master client).
        if self.eng.shared.tun.maxmemory.load(Ordering::Relaxed) > 0 && !self.conns[idx].master {
            let elsewhere = matches!(spec.exec, Exec::Key(_) | Exec::Split(_))
                && matches!(commands::route(&spec.keys, argv, self.eng.nshards),
                            Route::One(s) if s != self.eng.id || self.eng.lock.is_some());
            if !elsewhere {
                if let Err(e) = self.memory_check(flags & DENYOOM != 0) {
                    self.reject(idx, Some(id), argv, e);
                    return;
                }
            }
        }
        // stop-writes-on-bgsave-error: one relaxed load per write command (PING checks the
        // gate in its handler, as Redis refuses it too).
        if flags & WRITE != 0 && crate::persist::writes_refused() {
            self.reject(idx, Some(id), argv, crate::persist::refusal());
            return;
        }
        // A replica: READONLY for writes, MASTERDOWN while the link is down (one relaxed
        // load on a master).
        let gate = crate::repl::gate();
        let mut hold = false;
        if gate != 0 && !self.conns[idx].master {
            let is_exec = spec.name == "exec";
            let flags = if is_exec {
                crate::server::tx::exec_flags(self, idx, spec.flags)
            } else {
                flags
            };
            if let Some(e) = crate::repl::refusal(gate, flags) {
                // Redis's rejectCommand: an EXEC refused here discards the transaction.
                let e = if is_exec && crate::server::tx::in_multi(&self.conns[idx]) {
                    crate::server::tx::discard(self, idx);
                    CmdError::Other(crate::error::exec_abort_because(e))
                } else {
                    CmdError::coded(e)
                };
                self.reject(idx, Some(id), argv, e);
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
        if let Some(e) =
            super::super::cmds::pubsub::refused_when_subscribed(&self.conns[idx], spec, argv)
        {
            self.reject(idx, Some(id), argv, e);
            return;
        }
        if flags & PROTECTED != 0 {
            let c = &self.conns[idx].client;
            if let Some(e) = commands::protected_refusal(&self.eng.shared, spec, &c.addr) {
                self.reject(idx, Some(id), argv, e);
                return;
            }
        }
        // MONITOR: the line is made now (the arguments move below) and sent after the
        // command, with the database it left the client in (SELECT), as Redis; scripts and
        // blocking commands before, so their own lines follow; EXEC's in `coord::tx`.
        let mut mon = None;
        if self.eng.shard.monitor && spec.name != "exec" {
            mon = crate::server::monitor::prepare(spec, argv);
            if mon.is_some() && (spec.keys.script || spec.has(BLOCKING)) {
                if let Some(q) = mon.take() {
                    crate::server::monitor::emit(self, idx, &q);
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
            crate::server::monitor::emit(self, idx, &q);
        }
    }

    /// CLIENT TRACKING: a read's keys are remembered on their owners around the command
    /// (`server::tracking`), and CLIENT CACHING's mark lasts for one command (not CLIENT
    /// itself, and not while queuing in MULTI), as in Redis.
    #[cold]
    pub(super) fn execute_tracked(
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
            crate::server::tracking::keys_to_remember(self, idx, spec, argv)
        } else {
            Vec::new()
        };
        let me = crate::server::tracking::client_ref(self, idx);
        let inline = matches!(spec.exec, Exec::Key(_) | Exec::Split(_))
            && self.eng.lock.is_none()
            && matches!(commands::route(&spec.keys, argv, self.eng.nshards),
                        Route::One(s) if s == self.eng.id);
        if let (Some(me), false) = (me, keys.is_empty()) {
            crate::server::tracking::remember_now(self, me, &keys);
        }
        self.execute(idx, id, spec, argv, db, resp);
        if let (Some(me), false) = (me, keys.is_empty() || inline) {
            self.flush_batches(idx);
            crate::server::tracking::remember_later(self, me, &keys);
        }
        let queuing = self.conns.get(idx).is_some_and(crate::server::tx::in_multi);
        if spec.name != "client" && !queuing {
            if let Some(t) = self.conns.get_mut(idx).and_then(|c| c.track.as_mut()) {
                t.caching = None;
            }
        }
    }

    /// The command's execution proper, once every check passed (the tail of `dispatch`).
    #[inline]
    pub(super) fn execute(
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

    pub(super) fn execute_inner(
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
                if self.conns.get(idx).is_some_and(|c| c.master) {
                    self.as_master(|w| w.execute_conn(idx, id, f, argv));
                } else {
                    self.execute_conn(idx, id, f, argv);
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
                        self.as_master_if(idx, |w| {
                            let mut ctx = ConnCtx {
                                w,
                                conn: idx,
                                deferred: None,
                            };
                            let res = cross(&mut ctx, std::mem::take(argv));
                            if ctx.deferred.is_none() {
                                let reply = commands::finish(&mut w.eng.shard, id, res);
                                w.conns[idx].push_reply(&reply);
                            }
                        });
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
                        self.as_master_if(idx, |w| w.run_cross(idx, id, spec, argv));
                        return;
                    }
                };
                if s == self.eng.id && self.eng.lock.is_none() {
                    self.flush_batches(idx);
                    let client = self.conns[idx].client.id;
                    let r = crate::scripting::host::run(
                        self,
                        id,
                        f,
                        db,
                        resp,
                        argv,
                        Some(idx),
                        crate::scripting::host::Held::Own,
                        client,
                    );
                    if self.eng.shard.blocked.has_ready() {
                        coord::blocking::serve_ready(&mut self.eng);
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
            Exec::Split(m) => match commands::route(&spec.keys, argv, self.eng.nshards) {
                Route::One(s) => self.run_or_batch(idx, s, id, m.sub, db, resp, argv),
                Route::NoKeys => {
                    self.run_here(idx, id, m.sub, db, resp, argv);
                }
                Route::Many if self.refused_busy(idx, id, spec, argv) => {}
                Route::Many => {
                    self.flush_batches(idx);
                    self.as_master_if(idx, |w| {
                        let mut ctx = ConnCtx {
                            w,
                            conn: idx,
                            deferred: None,
                        };
                        coord::fanout::multi_key(&mut ctx, id, m, std::mem::take(argv));
                    });
                }
            },
        }
    }

    /// A connection-level command (the `Exec::Conn` row): runs with statistics, its reply
    /// now or deferred.
    fn execute_conn(
        &mut self,
        idx: usize,
        id: usize,
        f: crate::commands::table::ConnFn,
        argv: &mut [Bytes],
    ) {
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
        // A deferred reply's time is the handler's own (the fan-out it started runs
        // on other shards and is not attributed).
        let slot = self.eng.shard.stat_slot(id, argv);
        self.conclude(idx, id, slot, res, deferred);
        if let Some(st) = self.eng.shard.cmd_stats.get_mut(slot) {
            st.nanos += nanos;
        }
        self.eng.shard.observe(id, slot, argv, nanos);
        if !self.eng.shard.slow.pending.is_empty() {
            self.slow_commit(idx);
        }
    }

    /// Runs `f` with `Engine::from_master` set when the connection is the master link: the
    /// shard locks a cross-shard command takes then show keys as the master saw them.
    fn as_master_if(&mut self, idx: usize, f: impl FnOnce(&mut Worker)) {
        if self.conns.get(idx).is_some_and(|c| c.master) {
            self.as_master(f);
        } else {
            f(self);
        }
    }

    #[cold]
    fn as_master(&mut self, f: impl FnOnce(&mut Worker)) {
        self.eng.from_master = true;
        f(self);
        self.eng.from_master = false;
    }

    /// A key or script command whose keys span shards: its `cross` handler coordinates.
    pub(super) fn run_cross(
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
    pub(super) fn acl_gate(&mut self, idx: usize, argv: &[Bytes]) -> bool {
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
            // The listed user is the old one: listed again by the next script.
            if c.script_caller {
                c.script_caller = false;
                crate::acl::forget_script_caller(c.id);
            }
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
        // Redis answers an arity error, an unknown subcommand and a protected command's
        // refusal before the ACL check (the dispatcher gives them).
        if commands::check_arity(spec, argv).is_err()
            || (!spec.subcommands.is_empty() && commands::check_subcommand(spec, argv).is_err())
            || (spec.flags_for(argv) & crate::commands::table::PROTECTED != 0
                && commands::protected_refusal(&self.eng.shared, spec, &c.addr).is_some())
        {
            return true;
        }
        let Some((text, reason, object)) = crate::acl::denied(&c.user, id, spec, argv) else {
            // A script's calls are checked against this user where it runs.
            // Listed once per user (its CLIENT LIST line, for the ACL LOG, as it was then).
            if !c.script_caller && (matches!(spec.exec, Exec::Script(_)) || spec.name == "exec") {
                let (cid, user) = (c.id, c.user.clone());
                self.conns[idx].client.script_caller = true;
                let info = crate::server::cmds::client::client_line(&self.conns[idx]);
                crate::acl::set_script_caller(cid, user, info);
            }
            return true;
        };
        let context = if crate::server::tx::in_multi(&self.conns[idx]) {
            "multi"
        } else {
            "toplevel"
        };
        let info = crate::server::cmds::client::client_line(&self.conns[idx]);
        crate::acl::log_denial(
            reason,
            context,
            object,
            self.conns[idx].client.user.name.clone(),
            info,
        );
        let e = if spec.name == "exec" {
            crate::server::tx::discard(self, idx);
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
    pub(super) fn auth_allows(&mut self, idx: usize, argv: &[Bytes]) -> bool {
        let name = argv.first().map(|b| b.as_ref()).unwrap_or_default();
        let found = table().lookup(name);
        if found.is_some_and(|(_, s)| s.has(crate::commands::table::NOAUTH)) {
            return true;
        }
        let is_exec = found.is_some_and(|(_, s)| s.name == "exec");
        let e = if is_exec {
            crate::server::tx::discard(self, idx);
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

    pub(super) fn reject(&mut self, idx: usize, id: Option<usize>, argv: &[Bytes], e: CmdError) {
        let slot = id.map(|id| self.eng.shard.stat_slot(id, argv));
        if let Some(st) = slot.and_then(|s| self.eng.shard.cmd_stats.get_mut(s)) {
            st.rejected += 1;
        }
        let e = e.to_string();
        commands::count_error(&mut self.eng.shard, &e);
        if self.conns[idx].master {
            let name = id
                .and_then(|id| table().get(id))
                .map_or("<unknown>", |s| s.name);
            commands::master_error(&e, name);
        }
        self.conns[idx].push_reply(&Reply::Error(e));
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_or_batch(
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
    pub(super) fn batch(
        &mut self,
        idx: usize,
        s: usize,
        id: usize,
        db: usize,
        argv: &mut Vec<Bytes>,
    ) {
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
    /// A blocking command (outside MULTI): `coord::blocking::start` replies now or waits.
    pub(super) fn start_blocking(
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
        let deferred = ctx.deferred.is_some();
        let slot = self.eng.shard.stat_slot(id, &shown);
        self.conclude(idx, id, slot, res, deferred);
        let nanos = clock::to_nanos(clock::ticks().wrapping_sub(start));
        if let Some(st) = self.eng.shard.cmd_stats.get_mut(slot) {
            st.nanos += nanos;
        }
        self.eng.shard.observe(id, slot, &shown, nanos);
        if !self.eng.shard.slow.pending.is_empty() {
            self.slow_commit(idx);
        }
    }

    /// A connection-side handler returned: its result becomes the reply and is counted, or,
    /// when it deferred its reply (which comes later through a ticket), the call is counted
    /// now.
    fn conclude(
        &mut self,
        idx: usize,
        id: usize,
        slot: usize,
        res: crate::error::CmdResult,
        deferred: bool,
    ) {
        if deferred {
            self.eng.shard.commands_processed += 1;
            if let Some(st) = self.eng.shard.cmd_stats.get_mut(slot) {
                st.calls += 1;
            }
            return;
        }
        let reply = commands::finish_at(&mut self.eng.shard, id, slot, res);
        if let Some(c) = self.conns.get_mut(idx) {
            c.push_reply(&reply);
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
    pub(super) fn slow_commit_token(
        &mut self,
        token: u64,
        pending: Vec<crate::shard::slowlog::Pending>,
    ) {
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
    pub(super) fn run_here(
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
            coord::blocking::serve_ready(&mut self.eng);
        }
        if let Some(c) = self.conns.get_mut(idx) {
            c.push_reply(&r);
        }
        // CLIENT TRACKING: invalidations this write caused follow its reply (Redis 7.0's
        // order for a client that changes a key it tracks).
        if let Some(t) = self.eng.shard.tracking.as_mut() {
            t.writer = 0;
            if !t.out.is_empty() {
                crate::server::tracking::deliver(self, false);
            }
        }
    }

    /// Takes a connected socket as the master link (`repl`): a connection flagged
    /// `master`, authenticated, counted as a client. Returns its index.
    pub fn adopt_master(&mut self, fd: RawFd, tls: Option<Box<crate::tls::Session>>) -> usize {
        self.eng.shared.clients.fetch_add(1, Ordering::AcqRel);
        let keepalive = self.eng.shared.tun.tcp_keepalive.load(Ordering::Relaxed);
        sys::setup_conn(fd, self.eng.shared.cfg.tcp_nodelay, keepalive);
        let (peer, local) = sys::addrs(fd);
        let show = |a: Option<std::net::SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        let (id, gen) = self.next_client();
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

    /// Reads the server-wide pause (`server::pause`); when it changed, freezes or thaws key
    /// expiry, and once it is over runs the commands it held.
    pub fn refresh_pause(&mut self) {
        // The common case: no pause now or before, one atomic load and no clock read.
        if self.eng.pause == crate::server::pause::NONE
            && self.postponed.is_empty()
            && !crate::server::pause::maybe()
        {
            return;
        }
        let (mode, end) = crate::server::pause::current(self.clock.ms(Instant::now()));
        if mode != self.eng.pause {
            let frozen = mode != crate::server::pause::NONE;
            self.eng
                .shard
                .dbs
                .iter_mut()
                .for_each(|d| d.frozen = frozen);
        }
        self.eng.pause = mode;
        self.pause_end = end;
        if mode == crate::server::pause::NONE && !self.postponed.is_empty() {
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
    pub(super) fn pause_holds(&mut self, idx: usize, argv: &mut Vec<Bytes>) -> bool {
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
                .map(|q| {
                    q.iter()
                        .filter_map(|q| t.get(q.id).map(|s| s.flags_for(&q.argv)))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
        let flags = spec.flags_for(argv);
        if !crate::server::pause::holds(self.eng.pause, spec, flags, queued.into_iter()) {
            return false;
        }
        if let Some(c) = self.conns.get_mut(idx) {
            c.postponed = Some(std::mem::take(argv));
        }
        self.flush_batches(idx);
        self.postponed.push(idx);
        self.arm_pause_timer();
        true
    }

    /// Wakes this shard when the pause ends, to run what it holds. A FAILOVER's pause has no
    /// end of its own (its end wakes the shards): the timer looks again every second.
    pub(super) fn arm_pause_timer(&mut self) {
        let ms = self
            .pause_end
            .saturating_sub(self.eng.shard.now_ms)
            .clamp(1, 1000);
        let at = self.eng.pass_now + Duration::from_millis(ms);
        self.timers.add(at, TimerKind::PauseEnd);
    }
}
