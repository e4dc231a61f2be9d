//! A busy script (past busy-reply-threshold): the nested loop that keeps serving this
//! shard's sockets with -BUSY while the script runs, and what waits for its end. Runs on
//! the shard thread, inside the script's hook.

use super::messages::refuse_batch;
use super::*;

impl Worker {
    /// A multi-shard key command with a key on a shard a busy script holds gets `-BUSY`
    /// now instead of waiting for the script's end. True if it did (one relaxed load while
    /// no script is busy).
    pub(super) fn refused_busy(
        &mut self,
        idx: usize,
        id: usize,
        spec: &crate::commands::table::CommandSpec,
        argv: &[Bytes],
    ) -> bool {
        if !crate::scripting::some_shard_busy() {
            return false;
        }
        let text = spec
            .keys
            .key_positions(argv)
            .filter_map(|i| argv.get(i))
            .find_map(|k| crate::scripting::busy_reply(shard_of(k, self.eng.nshards)));
        if let Some(text) = text {
            self.reject(idx, Some(id), argv, CmdError::coded(text));
        }
        text.is_some()
    }

    /// While a script past the busy threshold holds shard `s`, answers this connection's
    /// batch for it with `-BUSY` (in request order) instead of sending it. True if it did.
    pub(super) fn refuse_busy(&mut self, idx: usize, s: usize) -> bool {
        let Some(text) = crate::scripting::busy_reply(s) else {
            return false;
        };
        let batch = std::mem::take(&mut self.batches[s]);
        let mut v = Vec::new();
        Reply::error(text).encode(2, &mut v);
        let bytes = Bytes::from(v);
        for c in &batch.cmds {
            let argv = batch.args.get(c.start..c.end).unwrap_or_default();
            let slot = self.eng.shard.stat_slot(c.id, argv);
            if let Some(st) = self.eng.shard.cmd_stats.get_mut(slot) {
                st.rejected += 1;
            }
            commands::count_error(&mut self.eng.shard, text);
            if self.conns.contains(idx) {
                self.fill(idx, c.seq, bytes.clone());
            }
        }
        true
    }

    /// A script running on this shard is past the busy threshold (called from its VM's
    /// hook, between two Lua instructions): serves this shard's sockets as Redis serves
    /// clients while a script is busy. New connections are accepted; each command read gets
    /// `-BUSY`, except SCRIPT KILL / FUNCTION KILL (answered here) and SHUTDOWN NOSAVE
    /// (stops the server, and so the script); a command Redis allows while busy (AUTH,
    /// HELLO, MULTI...) pauses its connection until the script ends. Replies go out in
    /// request order behind the connection's earlier ones. Nothing here touches keys, runs
    /// other shards' jobs or closes a connection (what would close one waits in
    /// `after_busy`), and the connections whose input is being parsed up the stack
    /// (`in_input`, `caller`) are only read into their buffers.
    pub fn busy_pump(&mut self, caller: Option<usize>, function: bool) {
        let _ = self.ring.submit_and_wait(false, None);
        // What the loop pass drained but had not reached when the script started comes
        // first (a connection accepted in the same batch would otherwise wait for the end).
        let mut comps = self.take_unhandled();
        self.ring.drain_nested(&mut comps);
        let wake_fd = self.eng.mesh.waker().fd();
        for c in comps {
            let token = c.tag & ((1 << 56) - 1);
            match c.tag >> 56 {
                TAG_RECV => self.busy_recv(token, c, caller, function),
                TAG_SEND => {
                    let keep = c.result < 0
                        || self
                            .conn_by_token(token)
                            .and_then(|i| self.conns.get(i))
                            .is_none_or(|conn| conn.closing);
                    if keep {
                        self.after_busy.push(c);
                    } else {
                        self.on_send(token, c);
                    }
                }
                _ => self.on_completion(c, wake_fd),
            }
        }
        // Batches other shards sent here: -BUSY; any other message waits for the script.
        let text = if function {
            crate::scripting::BUSY_FUNCTION
        } else {
            crate::scripting::BUSY_EVAL
        };
        let inbox = &mut self.eng.inbox;
        self.eng.mesh.recv_all(|_, m| inbox.push_back(m));
        for m in std::mem::take(&mut self.eng.inbox) {
            match m {
                Msg::Batch(b) => refuse_batch(self, *b, text),
                other => self.eng.inbox.push_back(other),
            }
        }
        self.eng.flush_mesh();
        // One send per connection that has output, as `flush_dirty` (a closing one's too: a
        // QUIT's +OK goes out now, the close comes after the script).
        let dirty = std::mem::take(&mut self.dirty);
        let mut keep = Vec::new();
        // Output that waits for the append-only log stays for the loop (`aof`).
        let logged = self.eng.aof_gate().is_none();
        for idx in dirty {
            let Some(conn) = self.conns.get_mut(idx) else {
                continue;
            };
            if conn.master
                || conn.sending
                || conn.out.is_empty()
                || (conn.tls.is_some() || !logged || !conn.aof_marks.is_empty())
                    && conn.replica_link.is_none()
            {
                keep.push(idx);
                continue;
            }
            conn.dirty = false;
            conn.held = false;
            let next = std::mem::take(&mut conn.spare);
            let buf = std::mem::replace(&mut conn.out, next);
            conn.sending = true;
            conn.inflight = buf.len();
            let t = tag(TAG_SEND, token_of(idx, conn.gen));
            self.ring.send(conn.fd, buf, 0, t);
        }
        keep.append(&mut self.dirty);
        self.dirty = keep;
        let _ = self.ring.submit_and_wait(false, None);
    }

    /// A receive completion during a busy script: the bytes go to the connection's buffer;
    /// its commands are answered by `busy_input` when nothing up the stack parses it.
    pub(super) fn busy_recv(
        &mut self,
        token: u64,
        mut c: Completion,
        caller: Option<usize>,
        function: bool,
    ) {
        let Some(idx) = self.conn_by_token(token) else {
            return;
        };
        if c.result <= 0 {
            if c.result == -libc::ENOBUFS {
                // The pool ran dry (it is not refilled while the script runs).
                if let Some(conn) = self.conns.get_mut(idx) {
                    if !c.more && matches!(conn.recv, RecvState::Multishot(_)) {
                        conn.recv = RecvState::Idle;
                    }
                    if conn_readable(conn) && conn.recv == RecvState::Idle {
                        self.arm_single(idx, false);
                    }
                }
                return;
            }
            // The end of the stream or an error: the loop handles it after the script.
            self.after_busy.push(c);
            return;
        }
        let min_free = self.eng.shared.cfg.recv_buffer;
        let conn = &mut self.conns[idx];
        intake(&self.ring, conn, &mut c, min_free);
        self.eng.net.count_input(conn.master, c.result as u64);
        conn.client.last_active = self.eng.pass_now;
        conn.note_input();
        let parsed_above = conn.in_input > 0 || caller == Some(idx);
        if !parsed_above {
            self.busy_input(idx, function);
        }
        if let Some(conn) = self.conns.get_mut(idx) {
            if conn.recv == RecvState::Idle {
                self.arm_recv(idx);
            }
        }
    }

    /// Answers the complete commands in a connection's buffer while a script is busy.
    pub(super) fn busy_input(&mut self, idx: usize, function: bool) {
        let max_bulk = self.max_bulk();
        let token = token_of(idx, self.conns[idx].gen);
        if self.resume.contains(&token) {
            // Paused at a command that waits for the script's end.
            return;
        }
        let mut args = Vec::new();
        loop {
            let Some(conn) = self.conns.get_mut(idx) else {
                return;
            };
            if conn.closing
                || conn.master
                || conn.blocked_on.is_some()
                || conn.waiting.is_some()
                || conn.slots.len() > MAX_PENDING_SLOTS
            {
                break;
            }
            let Some(rbuf) = conn.rbuf.as_mut() else {
                break;
            };
            let lim = parser::Limits::new(max_bulk, !conn.client.authed);
            let n = match parser::parse_partial_as(rbuf, lim, &mut args, &mut conn.partial) {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    conn.push_reply(&Reply::Error(e.to_string()));
                    conn.closing = true;
                    break;
                }
            };
            let chunk = rbuf
                .get(..n)
                .map(Bytes::copy_from_slice)
                .unwrap_or_default();
            let argv: Vec<Bytes> = args
                .drain(..)
                .map(|a| match a {
                    Arg::Range(s, e) => chunk.slice(s..e),
                    Arg::Owned(v) => Bytes::from(v),
                })
                .collect();
            let answer = if argv.is_empty() {
                Some(None)
            } else {
                busy_answer(conn, &argv, function)
            };
            let Some(answer) = answer else {
                // Runs once the script has ended (`after_script`).
                self.resume.push(token);
                break;
            };
            if let Some(rbuf) = conn.rbuf.as_mut() {
                let _ = rbuf.split_to(n);
            }
            match answer {
                Some(r) => {
                    conn.push_reply(&r);
                    if let Reply::Error(e) = &r {
                        commands::count_error(&mut self.eng.shard, e);
                    }
                }
                None if argv.is_empty() => {}
                None => {
                    // SHUTDOWN NOSAVE: the script stops at its next hook, then the loop.
                    self.eng.request_shutdown();
                }
            }
        }
        self.mark_dirty(idx);
    }

    /// What the busy pump left: completions it did not handle, and connections whose
    /// input waits for the script's end.
    pub(super) fn after_script(&mut self) {
        let wake_fd = self.eng.mesh.waker().fd();
        for c in std::mem::take(&mut self.after_busy) {
            self.on_completion(c, wake_fd);
        }
        for token in std::mem::take(&mut self.resume) {
            if let Some(idx) = self.conn_by_token(token) {
                self.process_input(idx);
                self.arm_recv(idx);
            }
        }
    }
}

/// How a connection's command is answered while a script is busy: `Some(Some(reply))`,
/// `Some(None)` for SHUTDOWN NOSAVE (the server stops), `None` to leave it (and what
/// follows) until the script ends. Redis's order: unknown command and arity errors, then
/// authentication, then `-BUSY` for everything not allowed while busy.
pub(super) fn busy_answer(
    conn: &mut Conn,
    argv: &[Bytes],
    function: bool,
) -> Option<Option<Reply>> {
    use crate::commands::table::{ALLOW_BUSY, NOAUTH};
    let Some((_, spec)) = table().lookup(argv.first().map(|b| b.as_ref()).unwrap_or_default())
    else {
        return Some(Some(Reply::Raw(crate::error::unknown_command_reply(argv))));
    };
    if let Err(e) = commands::check_arity(spec, argv) {
        return Some(Some(Reply::Error(e.to_string())));
    }
    if !conn.client.authed && !spec.has(NOAUTH) {
        return Some(Some(Reply::Error(crate::error::NOAUTH.to_string())));
    }
    let sub = |i: usize, w: &str| {
        argv.get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(w.as_bytes()))
    };
    let kill = (spec.name == "script" || spec.name == "function") && sub(1, "kill");
    if kill && argv.len() == 2 {
        return Some(Some(match crate::scripting::kill_busy() {
            crate::scripting::Kill::Killed => Reply::Ok,
            crate::scripting::Kill::NotBusy => Reply::error(crate::scripting::NOTBUSY),
            crate::scripting::Kill::Unkillable => Reply::error(crate::scripting::UNKILLABLE),
        }));
    }
    // QUIT is answered and closes the connection while busy (Redis's `allow_busy`).
    if spec.name == "quit" {
        conn.closing = true;
        return Some(Some(Reply::Ok));
    }
    let nosave = argv
        .iter()
        .skip(1)
        .any(|a| a.eq_ignore_ascii_case(b"nosave"));
    if spec.name == "shutdown" && nosave {
        return Some(None);
    }
    if spec.has(ALLOW_BUSY) && spec.name != "shutdown" && !kill {
        return None;
    }
    // A refused command inside MULTI makes EXEC fail, as Redis's rejectCommand.
    if let Some(t) = conn.tx.as_mut() {
        if t.queue.is_some() {
            t.aborted = true;
        }
    }
    let text = if function {
        crate::scripting::BUSY_FUNCTION
    } else {
        crate::scripting::BUSY_EVAL
    };
    Some(Some(Reply::error(text)))
}
