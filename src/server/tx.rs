//! Transactions (MULTI/EXEC/DISCARD/WATCH/UNWATCH) that stay atomic when their keys live on
//! several shards. Runs on the shard that owns the connection (the coordinator); the queued
//! commands run on the shards that own their keys.
//!
//! - **Queuing.** While a connection is in MULTI, `dispatch` hands every command to `queue`:
//!   it is looked up and arity-checked now (a failure flags the transaction: EXEC answers
//!   EXECABORT), then stored with `+QUEUED`. EXEC, DISCARD, MULTI, WATCH, QUIT and RESET run
//!   at once, as in Redis.
//! - **EXEC.** The shards to lock are those of every queued command's keys, of every watched
//!   key, and all shards when a queued command is a server-wide one (FLUSHALL, CLIENT KILL,
//!   CONFIG...). `lock::lock_all` takes them in shard order (the global order every atomic
//!   command uses, so no cycle). Then, under the locks: the WATCH check on each watched key's
//!   shard, and the commands in order, each on its owner as a `Control` job (consecutive
//!   commands for one shard travel together); the reply of one comes back before the next is
//!   sent. Last, every shard is unlocked. Other clients' jobs for a locked shard wait
//!   (`Msg::Work` is parked), so nobody sees part of a transaction.
//! - **Coordinated commands inside EXEC** (MSET/DEL/MGET across shards, cross-shard RENAME,
//!   connection and server commands) run their normal handler with the worker's `nest` mark
//!   set: while it is set, `lock_all` does not lock again (the transaction already holds every
//!   shard the command touches) and `fan_out` sends `Control` jobs, so nothing waits for the
//!   transaction's own locks. A handler that defers its reply gets a *capture* ticket: its
//!   reply comes back here (`captured`) instead of to the socket, and the next command starts
//!   then. The `nest` mark only lasts for the synchronous handler call; every handler's later
//!   steps use `Control` jobs already (checked for all current ones).
//! - **WATCH.** Registers `(db, key) → watcher` on the key's shard (`shard::watch`). Writes
//!   remove the key's watchers there (`commands::watch::after_write`, hooked in `run_key`,
//!   fan-out parts, cross-shard moves and flushes); EXEC asks each watched shard, under the
//!   lock, whether its entries are still present and unexpired. No message is sent on a write.
//!
//! A connection stays open until its running EXEC finishes (a peer close or CLIENT KILL only
//! marks it closing), so the transaction's steps always find it.

use bytes::Bytes;

use crate::commands::table::{
    table, Exec, DENYOOM, MAY_REPLICATE, NO_MULTI, PROTECTED, READONLY, WRITE,
};
use crate::commands::{self, ConnCtx};
use crate::coord::lock;
use crate::coord::tx::*;
use crate::engine::Engine;
use crate::engine::{Msg, ShardFn, Ticket};
use crate::error::{self, CmdError};
use crate::protocol::reply::Reply;
use crate::server::cmds::FrontCtx;
use crate::server::connection::Conn;
use crate::server::worker::{front, to_front, Worker};
use crate::shard::route::shard_of;
use crate::shard::watch::Watcher;

/// The connection is between MULTI and EXEC/DISCARD.
#[inline]
pub fn in_multi(c: &Conn) -> bool {
    c.tx.as_ref().is_some_and(|t| t.queue.is_some())
}

/// Number of queued commands, or -1 outside MULTI (CLIENT LIST's `multi=`).
pub fn queued_len(c: &Conn) -> i64 {
    c.tx.as_ref()
        .and_then(|t| t.queue.as_ref())
        .map_or(-1, |q| q.len() as i64)
}

/// maxmemory's refusal for a transaction of connection `idx` (never its master link):
/// the OOM error once eviction cannot bring memory under the limit.
fn over_maxmemory(w: &mut Worker, idx: usize) -> Option<CmdError> {
    let tun = &w.eng.shared.tun;
    let limited = tun.maxmemory.load(std::sync::atomic::Ordering::Relaxed) > 0;
    if !limited || w.conns.get(idx).is_some_and(|c| c.master) {
        return None;
    }
    w.memory_check(true).err()
}

/// Called by `dispatch` for a connection in MULTI. Returns false for the commands that run
/// at once (EXEC, DISCARD, MULTI, WATCH, QUIT, RESET); otherwise queues or rejects.
pub fn queue(w: &mut Worker, idx: usize, argv: &mut Vec<Bytes>) -> bool {
    let name = argv.first().map(|b| b.as_ref()).unwrap_or_default();
    let Some((id, spec)) = table().lookup(name) else {
        commands::count_error(&mut w.eng.shard, "ERR");
        if let Some(c) = w.conns.get_mut(idx) {
            if let Some(t) = c.tx.as_mut() {
                t.aborted = true;
            }
            c.push_reply(&Reply::Raw(error::unknown_command_reply(argv)));
        }
        return true;
    };
    // The row's arity only: MSET's pairing is the command's own check when EXEC runs it.
    if let Err(e) = commands::check_table_arity(spec, argv) {
        let slot = w.eng.shard.stat_slot(id, argv);
        if let Some(st) = w.eng.shard.cmd_stats.get_mut(slot) {
            st.rejected += 1;
        }
        let e = e.to_string();
        if spec.name == "exec" {
            // A rejected EXEC ends the transaction (Redis's execCommandAbort).
            discard(w, idx);
            let e = error::exec_abort_because(&e);
            commands::count_error(&mut w.eng.shard, &e);
            if let Some(c) = w.conns.get_mut(idx) {
                c.push_reply(&Reply::Error(e));
            }
            return true;
        }
        reject(w, idx, e);
        return true;
    }
    // A container's subcommand is looked up and arity-checked while queuing too (Redis
    // resolves `container|sub` before queuing): an unknown one aborts the transaction.
    if !spec.subcommands.is_empty() {
        if let Err(e) = commands::check_subcommand(spec, argv) {
            reject(w, idx, e.to_string());
            return true;
        }
    }
    if matches!(
        spec.name,
        "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
    ) {
        return false;
    }
    if spec.has(NO_MULTI) {
        reject(w, idx, error::NOT_ALLOWED_IN_MULTI.to_string());
        return true;
    }
    // maxmemory: queuing may grow memory without bound, so above the limit (once eviction
    // could not help) every command is refused while queuing, as Redis does.
    if let Some(e) = over_maxmemory(w, idx) {
        reject(w, idx, e.to_string());
        return true;
    }
    // stop-writes-on-bgsave-error refuses a write while queuing too (EXEC then aborts).
    let flags = spec.flags_for(argv);
    if flags & WRITE != 0 && crate::persist::writes_refused() {
        reject(w, idx, crate::persist::refusal_text());
        return true;
    }
    // A replica refuses while queuing too (READONLY, MASTERDOWN); never its master link.
    let gate = crate::repl::gate();
    if gate != 0 && !w.conns.get(idx).is_some_and(|c| c.master) {
        if let Some(e) = crate::repl::refusal(gate, flags) {
            reject(w, idx, e.to_string());
            return true;
        }
    }
    if flags & PROTECTED != 0 {
        let refusal = w
            .conns
            .get(idx)
            .and_then(|c| commands::protected_refusal(&w.eng.shared, spec, &c.client.addr));
        if let Some(e) = refusal {
            reject(w, idx, e.to_string());
            return true;
        }
    }
    let Some(c) = w.conns.get_mut(idx) else {
        return true;
    };
    if let Some(q) = c.tx.as_mut().and_then(|t| t.queue.as_mut()) {
        q.push(Queued {
            id,
            argv: std::mem::take(argv),
        });
    }
    c.push_reply(&Reply::status("QUEUED"));
    true
}

/// Answers an error while queuing and flags the transaction (EXEC will abort).
fn reject(w: &mut Worker, idx: usize, e: String) {
    commands::count_error(&mut w.eng.shard, &e);
    let Some(c) = w.conns.get_mut(idx) else {
        return;
    };
    if let Some(t) = c.tx.as_mut() {
        t.aborted = true;
    }
    c.push_reply(&Reply::Error(e));
}

// ----- MULTI / DISCARD / WATCH / UNWATCH / RESET / close ------------------------------------

/// MULTI.
pub fn multi(w: &mut Worker, idx: usize) -> Result<(), CmdError> {
    let Some(c) = w.conns.get_mut(idx) else {
        return Ok(());
    };
    let t = c.tx.get_or_insert_with(Default::default);
    if t.queue.is_some() {
        return Err(CmdError::coded(error::MULTI_NESTED));
    }
    t.queue = Some(Vec::new());
    t.aborted = false;
    Ok(())
}

/// EXEC's flags as the replication gates see them (Redis's processCommand takes an EXEC as
/// a write when a queued command is one): `exec` without MAY_REPLICATE, plus WRITE and
/// MAY_REPLICATE from what is queued, so a read-only transaction passes min-replicas.
pub fn exec_flags(w: &Worker, idx: usize, exec: u32) -> u32 {
    let mut flags = exec & !MAY_REPLICATE;
    let queued = w
        .conns
        .get(idx)
        .and_then(|c| c.tx.as_ref())
        .and_then(|t| t.queue.as_ref());
    for (s, argv) in queued
        .into_iter()
        .flatten()
        .filter_map(|q| table().get(q.id).map(|s| (s, &q.argv)))
    {
        let f = s.flags_for(argv);
        flags |= f & WRITE;
        if f & MAY_REPLICATE != 0 && f & READONLY == 0 {
            flags |= MAY_REPLICATE;
        }
    }
    flags
}

/// DISCARD (and the discarding half of EXECABORT, RESET): drops the queue and the watches.
pub fn discard(w: &mut Worker, idx: usize) {
    if let Some(t) = w.conns.get_mut(idx).and_then(|c| c.tx.as_mut()) {
        t.queue = None;
        t.aborted = false;
    }
    unwatch_all(w, idx);
}

/// UNWATCH: forgets every watched key (the registry entries go with a message to each
/// owner shard).
pub fn unwatch_all(w: &mut Worker, idx: usize) {
    let home = w.eng.id;
    let Some(token) = w.conn_token(idx) else {
        return;
    };
    let Some(c) = w.conns.get_mut(idx) else {
        return;
    };
    let Some(t) = c.tx.as_mut() else {
        return;
    };
    let keys: Vec<(usize, Bytes)> = t.watched.drain().collect();
    let epoch = t.epoch;
    t.epoch += 1;
    if t.idle() {
        c.tx = None;
    }
    release(w, home, token, epoch, keys, &[], None);
}

/// RESET: leaves MULTI and drops the watches.
pub fn reset(w: &mut Worker, idx: usize) {
    if w.conns.get(idx).is_some_and(|c| c.tx.is_some()) {
        discard(w, idx);
    }
}

/// The connection is closing. Returns true when it must stay open for now (its EXEC is
/// running; it is marked closing and goes once the EXEC reply is out).
pub fn on_close(w: &mut Worker, idx: usize) -> bool {
    let running = w
        .conns
        .get(idx)
        .and_then(|c| c.tx.as_ref())
        .is_some_and(|t| t.running);
    if running {
        if let Some(c) = w.conns.get_mut(idx) {
            c.closing = true;
        }
        return true;
    }
    discard(w, idx);
    false
}

/// WATCH key [key ...]: registers the keys on their shards; answers once all are in.
pub fn watch(ctx: &mut FrontCtx, argv: &[Bytes]) -> Result<Option<Reply>, CmdError> {
    let w = &mut *ctx.w;
    let idx = ctx.conn;
    let (home, nshards) = (w.eng.id, w.eng.nshards);
    let Some(token) = w.conn_token(idx) else {
        return Ok(Some(Reply::Ok));
    };
    let Some(c) = w.conns.get_mut(idx) else {
        return Ok(Some(Reply::Ok));
    };
    if in_multi(c) {
        return Err(CmdError::coded(error::WATCH_INSIDE_MULTI));
    }
    let db = c.client.db;
    let t = c.tx.get_or_insert_with(Default::default);
    let epoch = t.epoch;
    let mut groups: Vec<(usize, Vec<Bytes>)> = Vec::new();
    for key in argv.iter().skip(1) {
        if !t.watched.insert((db, key.clone())) {
            continue;
        }
        let s = shard_of(key, nshards);
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, keys)) => keys.push(key.clone()),
            None => groups.push((s, vec![key.clone()])),
        }
    }
    if groups.is_empty() {
        return Ok(Some(Reply::Ok));
    }
    let ticket = ctx.defer();
    let jobs = groups
        .into_iter()
        .map(|(s, keys)| {
            let job: ShardFn<()> = Box::new(move |tw: &mut Engine| {
                let now = tw.shard.now_ms;
                for k in keys {
                    let deadline = tw
                        .shard
                        .dbs
                        .get_mut(db)
                        .map_or(0, |d| live_deadline(d, &k, now));
                    let who = Watcher {
                        shard: home,
                        token,
                        epoch,
                        deadline,
                    };
                    tw.shard.watches.add(db, k, who);
                }
            });
            (s, job)
        })
        .collect();
    ctx.w.eng.fan_out(jobs, true, move |w, _: Vec<()>| {
        w.complete(ticket, Reply::Ok)
    });
    Ok(None)
}

/// Drops registry entries and (with `txid`, at the end of EXEC) shard locks: one job per
/// shard; under a transaction a `Control` job (the connection's own shard inline).
fn release(
    w: &mut Worker,
    home: usize,
    token: u64,
    epoch: u64,
    keys: Vec<(usize, Bytes)>,
    locked: &[usize],
    txid: Option<u64>,
) {
    let nshards = w.eng.nshards;
    let mut groups: Vec<(usize, Vec<(usize, Bytes)>)> =
        locked.iter().map(|&s| (s, Vec::new())).collect();
    for (db, k) in keys {
        let s = shard_of(&k, nshards);
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, v)) => v.push((db, k)),
            None => groups.push((s, vec![(db, k)])),
        }
    }
    for (s, keys) in groups {
        let job = move |tw: &mut Engine| {
            for (db, k) in &keys {
                tw.shard.watches.remove(*db, k, home, token, epoch);
            }
            if let Some(t) = txid {
                lock::unlock(tw, t);
            }
        };
        if txid.is_none() {
            // After this connection's WATCH registrations on that shard, which are `Work`
            // and may still be parked behind another transaction's lock.
            w.eng.post(s, Msg::Work(Box::new(job)));
        } else if s == w.eng.id {
            job(&mut w.eng);
        } else {
            w.eng.post(s, Msg::Control(Box::new(job)));
        }
    }
}

// ----- EXEC ----------------------------------------------------------------------------------

/// EXEC. Returns the reply when it is ready at once; `None` when it was deferred.
pub fn exec(ctx: &mut FrontCtx, exec_argv: &[Bytes]) -> Result<Option<Reply>, CmdError> {
    let idx = ctx.conn;
    let w = &mut *ctx.w;
    let (home, nshards) = (w.eng.id, w.eng.nshards);
    let Some(token) = w.conn_token(idx) else {
        return Ok(Some(Reply::NullArray));
    };
    let Some(c) = w.conns.get_mut(idx) else {
        return Ok(Some(Reply::NullArray));
    };
    let (db, resp) = (c.client.db, c.client.resp);
    let Some(t) = c.tx.as_mut() else {
        return Err(CmdError::coded(error::EXEC_WITHOUT_MULTI));
    };
    let Some(cmds) = t.queue.take() else {
        return Err(CmdError::coded(error::EXEC_WITHOUT_MULTI));
    };
    if std::mem::take(&mut t.aborted) {
        unwatch_all(w, idx);
        return Err(CmdError::coded(error::EXECABORT));
    }
    // Writes queued before a BGSAVE failed: Redis refuses the whole EXEC.
    if crate::persist::writes_refused()
        && cmds.iter().any(|q| {
            table()
                .get(q.id)
                .is_some_and(|s| s.flags_for(&q.argv) & WRITE != 0)
        })
    {
        unwatch_all(w, idx);
        return Err(CmdError::coded(error::exec_abort_because(
            &crate::persist::refusal_text(),
        )));
    }
    // maxmemory: an EXEC queuing a command that may grow memory is refused when memory is
    // over the limit after eviction (EXECABORT ... OOM), as Redis's processCommand does;
    // read-only transactions run.
    let denyoom = cmds
        .iter()
        .any(|q| table().get(q.id).is_some_and(|s| s.has(DENYOOM)));
    if let Some(e) = denyoom.then(|| over_maxmemory(w, idx)).flatten() {
        unwatch_all(w, idx);
        return Err(CmdError::coded(error::exec_abort_because(&e.to_string())));
    }
    let Some(t) = w.conns.get_mut(idx).and_then(|c| c.tx.as_mut()) else {
        return Ok(Some(Reply::NullArray));
    };
    // Redis unwatches at EXEC: the watches are checked once, below, under the locks.
    let watched: Vec<(usize, Bytes)> = t.watched.drain().collect();
    let epoch = t.epoch;
    t.epoch += 1;
    t.running = true;
    let locked = shards_to_lock(&cmds, &watched, nshards, home);
    let rid = w.eng.tx.runs.insert(ExecRun {
        idx,
        token,
        ticket: None,
        txid: None,
        locked: locked.clone(),
        replies: Vec::with_capacity(cmds.len()),
        cmds: cmds.into(),
        db,
        resp,
        watched,
        epoch,
        step: 0,
        waiting: false,
        early: None,
        exec_argv: exec_argv.to_vec(),
    });
    if locked.is_empty() {
        // Nothing but connection-local commands: run them now.
        advance(w, rid);
        if let Some((r, reply)) = w.eng.tx.finished.take() {
            if r == rid {
                return Ok(Some(reply));
            }
            w.eng.tx.finished = Some((r, reply));
        }
        let ticket = ctx.defer();
        if let Some(run) = ctx.w.eng.tx.runs.get_mut(rid) {
            run.ticket = Some(ticket);
        }
        return Ok(None);
    }
    let ticket = ctx.defer();
    let w = &mut *ctx.w;
    if let Some(run) = w.eng.tx.runs.get_mut(rid) {
        run.ticket = Some(ticket);
    }
    lock::lock_all(
        &mut w.eng,
        locked,
        Box::new(move |e: &mut Engine, txid| {
            to_front(e, move |w: &mut Worker| locked_run(w, rid, txid))
        }),
    );
    Ok(None)
}

/// Every shard is locked: check the watches, then run the commands.
fn locked_run(w: &mut Worker, rid: usize, txid: u64) {
    let home = w.eng.id;
    let nshards = w.eng.nshards;
    let Some(run) = w.eng.tx.runs.get_mut(rid) else {
        return;
    };
    run.txid = Some(txid);
    if run.watched.is_empty() {
        advance(w, rid);
        return;
    }
    let (token, epoch) = (run.token, run.epoch);
    let mut groups: Vec<(usize, Vec<(usize, Bytes)>)> = Vec::new();
    for (db, k) in &run.watched {
        let s = shard_of(k, nshards);
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, v)) => v.push((*db, k.clone())),
            None => groups.push((s, vec![(*db, k.clone())])),
        }
    }
    let jobs = groups
        .into_iter()
        .map(|(s, keys)| {
            let job: ShardFn<bool> = Box::new(move |tw: &mut Engine| {
                let now = tw.shard.now_ms;
                keys.iter()
                    .any(|(db, k)| tw.shard.watches.changed(*db, k, home, token, epoch, now))
            });
            (s, job)
        })
        .collect();
    w.eng.fan_out(jobs, false, move |e, changed: Vec<bool>| {
        to_front(e, move |w: &mut Worker| {
            if changed.iter().any(|c| *c) {
                finish(w, rid, Some(Reply::NullArray));
            } else {
                advance(w, rid);
            }
        })
    });
}

/// Runs queued commands until one must wait for a reply from elsewhere, or all are done.
fn advance(w: &mut Worker, rid: usize) {
    let (home, nshards) = (w.eng.id, w.eng.nshards);
    loop {
        let Some(run) = w.eng.tx.runs.get_mut(rid) else {
            return;
        };
        if run.waiting {
            return;
        }
        let Some(first) = run.cmds.front() else {
            finish(w, rid, None);
            return;
        };
        let Some(spec) = table().get(first.id) else {
            run.cmds.pop_front();
            run.add(Reply::error("ERR internal routing error"));
            continue;
        };
        // MSET/MSETNX with an odd pair count: that command fails alone, as in Redis.
        if let Err(e) = commands::check_pairs(spec, &first.argv) {
            run.cmds.pop_front();
            let e = e.to_string();
            commands::count_error(&mut w.eng.shard, &e);
            if let Some(run) = w.eng.tx.runs.get_mut(rid) {
                run.add(Reply::Error(e));
            }
            continue;
        }
        match plan(spec, &first.argv, nshards, home) {
            Plan::On(s) => {
                // This command and the following ones for the same shard travel together.
                let mut batch = Vec::new();
                while let Some(q) = run.cmds.front() {
                    // A command failing its pair check ends the batch: it answers
                    // alone when it comes first.
                    let same = table().get(q.id).is_some_and(|sp| {
                        commands::check_pairs(sp, &q.argv).is_ok()
                            && plan(sp, &q.argv, nshards, home) == Plan::On(s)
                    });
                    if !same {
                        break;
                    }
                    if let Some(q) = run.cmds.pop_front() {
                        batch.push(q);
                    }
                }
                let (db, resp) = (run.db, run.resp);
                let client = w.conns.get(run.idx).map_or(0, |c| c.client.id);
                if w.eng.shard.monitor {
                    let idx = run.idx;
                    for q in &batch {
                        crate::server::monitor::feed_db(w, idx, db, &q.argv);
                    }
                }
                if s == home {
                    let replies = run_batch(w, &batch, db, resp, client);
                    if !w.eng.shard.slow.pending.is_empty() {
                        if let Some(idx) = w.eng.tx.runs.get(rid).map(|r| r.idx) {
                            w.slow_commit(idx);
                        }
                    }
                    if let Some(run) = w.eng.tx.runs.get_mut(rid) {
                        replies.into_iter().for_each(|r| run.add(r));
                    }
                    continue;
                }
                if let Some(run) = w.eng.tx.runs.get_mut(rid) {
                    run.waiting = true;
                }
                // A front job: the batch may run a script, which serves this shard's
                // connections while it is busy.
                w.eng.post(
                    s,
                    front(move |tw: &mut Worker| {
                        let replies = run_batch(tw, &batch, db, resp, client);
                        // Slow entries go back to be logged with the client's address.
                        let slow = std::mem::take(&mut tw.eng.shard.slow.pending);
                        tw.eng.post(
                            home,
                            front(move |ow: &mut Worker| {
                                if !slow.is_empty() {
                                    if let Some(idx) = ow.eng.tx.runs.get(rid).map(|r| r.idx) {
                                        let prev =
                                            std::mem::replace(&mut ow.eng.shard.slow.pending, slow);
                                        ow.slow_commit(idx);
                                        ow.eng.shard.slow.pending = prev;
                                    }
                                }
                                batch_done(ow, rid, replies)
                            }),
                        );
                    }),
                );
                return;
            }
            Plan::Local | Plan::Coord => {
                let Some(q) = run.cmds.pop_front() else {
                    continue;
                };
                run.step += 1;
                let (step, idx, token) = (run.step, run.idx, run.token);
                if w.conn_token(idx) != Some(token) {
                    // Cannot happen (a running EXEC keeps its connection); answer, go on.
                    if let Some(run) = w.eng.tx.runs.get_mut(rid) {
                        run.add(Reply::error("ERR connection closed"));
                    }
                    continue;
                }
                let shown = w.eng.shard.monitor.then(|| q.argv.clone());
                let reply = run_nested(w, rid, step, idx, q);
                let (db, resp) = w
                    .conns
                    .get(idx)
                    .map_or((0, 2), |c| (c.client.db, c.client.resp));
                if let Some(argv) = shown {
                    crate::server::monitor::feed_db(w, idx, db, &argv);
                }
                let Some(run) = w.eng.tx.runs.get_mut(rid) else {
                    return;
                };
                // SELECT / HELLO inside the transaction apply to the commands after them.
                run.db = db;
                run.resp = resp;
                match reply.or_else(|| run.early.take()) {
                    Some(r) => run.add(r),
                    None => {
                        run.waiting = true;
                        return;
                    }
                }
            }
        }
    }
}

/// Runs key commands on this shard (each with statistics and the WATCH hook).
fn run_batch(w: &mut Worker, batch: &[Queued], db: usize, resp: u8, client: u64) -> Vec<Reply> {
    batch
        .iter()
        .map(|q| match table().get(q.id).map(|s| s.exec) {
            Some(Exec::Key(f)) => {
                commands::run_key(&mut w.eng.shard, q.id, f, db, resp, &q.argv, None)
            }
            Some(Exec::Split(m)) => {
                commands::run_key(&mut w.eng.shard, q.id, m.sub, db, resp, &q.argv, None)
            }
            Some(Exec::Script(f)) => crate::scripting::host::run(
                w,
                q.id,
                f,
                db,
                resp,
                &q.argv,
                None,
                crate::scripting::host::Held::Own,
                client,
            ),
            _ => Reply::error("ERR internal routing error"),
        })
        .collect()
}

fn batch_done(w: &mut Worker, rid: usize, replies: Vec<Reply>) {
    let Some(run) = w.eng.tx.runs.get_mut(rid) else {
        return;
    };
    run.waiting = false;
    replies.into_iter().for_each(|r| run.add(r));
    advance(w, rid);
}

/// Runs a coordinated or connection command through its normal handler, inside the
/// transaction's locks. `None`: the handler deferred; its reply will be captured.
fn run_nested(w: &mut Worker, rid: usize, step: u64, idx: usize, q: Queued) -> Option<Reply> {
    let spec = table().get(q.id)?;
    let slot = w.eng.shard.stat_slot(q.id, &q.argv);
    let shown = (w.eng.shard.slow_floor != u64::MAX).then(|| q.argv.clone());
    let start = crate::runtime::clock::ticks();
    w.eng.tx.nest = Some((rid, step));
    let mut ctx = ConnCtx {
        w,
        conn: idx,
        deferred: None,
    };
    let res = match spec.exec {
        Exec::Conn(f) => f(&mut ctx, &q.argv),
        Exec::Split(m) => {
            crate::coord::fanout::multi_key(&mut ctx, q.id, m, q.argv);
            Ok(Reply::Ok)
        }
        Exec::Key(_) | Exec::Script(_) => match spec.cross {
            Some(cross) => cross(&mut ctx, q.argv),
            None => Err(CmdError::coded(error::CROSSSLOT)),
        },
    };
    let deferred = ctx.deferred.is_some();
    w.eng.tx.nest = None;
    let nanos = crate::runtime::clock::to_nanos(crate::runtime::clock::ticks().wrapping_sub(start));
    w.eng
        .shard
        .observe(q.id, slot, shown.as_deref().unwrap_or_default(), nanos);
    if !w.eng.shard.slow.pending.is_empty() {
        w.slow_commit(idx);
    }
    if deferred {
        // Counted here (the fan-out's completion does not count connection commands).
        if matches!(spec.exec, Exec::Conn(_)) {
            w.eng.shard.commands_processed += 1;
            if let Some(st) = w.eng.shard.cmd_stats.get_mut(slot) {
                st.calls += 1;
                st.nanos += nanos;
            }
        }
        return None;
    }
    let reply = commands::finish_at(&mut w.eng.shard, q.id, slot, res);
    if let Some(st) = w.eng.shard.cmd_stats.get_mut(slot) {
        st.nanos += nanos;
    }
    Some(reply)
}

/// `Worker::defer` hook: inside EXEC, a handler's deferred reply is captured.
#[inline]
pub fn capture_ticket(w: &Worker) -> Option<Ticket> {
    w.eng.tx.nest.map(|(rid, step)| Ticket {
        shard: w.eng.id,
        token: CAPTURE | rid as u64,
        seq: step,
    })
}

/// `Worker::drain_outbox` hook: a captured reply arrives; the transaction goes on.
pub fn captured(w: &mut Worker, t: Ticket, reply: Reply) {
    let rid = (t.token & !CAPTURE) as usize;
    let Some(run) = w.eng.tx.runs.get_mut(rid) else {
        return;
    };
    if run.step != t.seq {
        return;
    }
    if run.waiting {
        run.waiting = false;
        run.add(reply);
        advance(w, rid);
    } else {
        // The handler has not returned yet (it completed synchronously).
        run.early = Some(reply);
    }
}

/// Ends an EXEC: releases the locks and the watch entries, answers the client.
fn finish(w: &mut Worker, rid: usize, reply: Option<Reply>) {
    let Some(run) = w.eng.tx.runs.try_remove(rid) else {
        return;
    };
    let home = w.eng.id;
    release(
        w,
        home,
        run.token,
        run.epoch,
        run.watched,
        &run.locked,
        run.txid,
    );
    let reply = reply.unwrap_or(Reply::Array(run.replies));
    if w.eng.shard.monitor && w.conn_token(run.idx) == Some(run.token) {
        let db = w.conns.get(run.idx).map_or(0, |c| c.client.db);
        crate::server::monitor::feed_db(w, run.idx, db, &run.exec_argv);
    }
    if w.conn_token(run.idx) == Some(run.token) {
        if let Some(c) = w.conns.get_mut(run.idx) {
            if let Some(t) = c.tx.as_mut() {
                t.running = false;
                if t.idle() {
                    c.tx = None;
                }
            }
        }
    }
    match run.ticket {
        Some(t) => w.eng.complete(t, reply),
        None => w.eng.tx.finished = Some((rid, reply)),
    }
}
