//! Clients blocked on keys (BLPOP and friends) across shards. The connection's shard (the
//! *home*) holds the `Waiter` and its reply slot; the shards that own the waited keys
//! (*owners*) hold registrations (`shard::blocking`) and take the data.
//!
//! - **Start.** Keys (BLMOVE's destination included) all on one shard: that shard tries to
//!   take data and, finding none, registers the client in the same step (one job, so no
//!   push can slip between the check and the registration). Otherwise (or inside EXEC)
//!   every involved shard is locked (`multi::lock_all`), the keys are probed in command
//!   order, and either the first key with data is taken (BLMOVE's push done under the same
//!   locks) or the client is registered on every owner before the locks go. Inside EXEC
//!   nothing waits: the no-data reply comes at once, as in Redis.
//! - **Wake.** A write to a waited key marks it ready (`Shard::touch`). Right after the
//!   command (and at the end of each loop pass) the owner serves the key's waiters oldest
//!   first while it has data of their type, and drops each served client's registrations
//!   on this shard. Serving never runs while the shard is locked.
//! - **Who decides.** When every waited key is on one shard (`BlockOp::single`: always for
//!   BLMOVE, and for BLPOP on keys of one shard) that owner decides alone: it holds the
//!   timeout timer, serves, and for BLMOVE pushes on the destination right away (on its own
//!   shard, or as the next job for the destination's shard, so pushes keep serving order);
//!   the home only relays the reply. CLIENT UNBLOCK is forwarded to it. When the waited
//!   keys span shards the home decides (timeout, unblock) and several owners may take data
//!   for the same client at once: data arriving for a client that already got its reply is
//!   put back where it came from, at the same end, so nothing is lost.
//! - **Disconnects** end the wait on the home and tell the owners; data served meanwhile
//!   is put back (BLMOVE's element stays on its destination, as when Redis serves a client
//!   just before noticing it left).
//!
//! Unregistrations travel as `Work` jobs, behind the registration on the same mesh queue,
//! so an owner never keeps a registration for a client that is gone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;

use super::lock::{lock_all, unlock};
use crate::commands::blocking::{self, BlockOp, Kind, Served};
use crate::commands::ConnCtx;
use crate::engine::Engine;
use crate::engine::{Msg, Out, ShardFn, Ticket};
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::shard::route::shard_of;
use crate::types::list::End;

/// A client of this shard waiting for data.
pub struct Waiter {
    pub conn: usize,
    pub ticket: Ticket,
    pub op: Arc<BlockOp>,
    /// Shards holding (or about to hold) a registration.
    pub owners: Vec<usize>,
    /// Counted in INFO `blocked_clients`: once its registrations are in place (an owner on
    /// another shard registers later), so a client seen blocked has its read pinned (`$`).
    pub counted: bool,
}

/// The home side: this shard's blocked clients by waiter id.
#[derive(Default)]
pub struct Waiters {
    pub map: AHashMap<u64, Waiter>,
    next: u64,
}

impl Waiters {
    fn new_id(&mut self, shard: usize) -> u64 {
        self.next += 1;
        ((shard as u64) << 48) | (self.next & ((1 << 48) - 1))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// What an owner sends home.
enum Outcome {
    /// Data taken from `from`'s key (put back there if the client is no longer waiting).
    Served { s: Served, from: usize, db: usize },
    /// A final reply from the owner `from` (an error, a timeout, BLMOVE already pushed).
    Reply { r: Reply, from: usize },
}

/// The handler of every BLOCKING row outside MULTI (and of their multi-shard form inside
/// EXEC): see the module note.
pub fn start(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let db = ctx.client().db;
    let mut op = blocking::parse(&argv, db)?;
    let nested = ctx.eng().tx.nested();
    let n = ctx.eng().nshards;
    let mut owners: Vec<usize> = op.keys.iter().map(|k| shard_of(k, n)).collect();
    owners.sort_unstable();
    owners.dedup();
    let mut shards = owners.clone();
    if let Kind::Move { dst, .. } = &op.kind {
        shards.push(shard_of(dst, n));
        shards.sort_unstable();
        shards.dedup();
    }
    op.single = owners.len() == 1;
    let home = ctx.eng().id;
    if op.no_wait && !nested {
        // XREAD / XREADGROUP without BLOCK: a read now, on the owner (locked when the keys
        // span shards, or live on another one).
        let owner = shards.first().copied().unwrap_or(home);
        if shards.len() == 1 && owner == home && ctx.eng().lock.is_none() {
            let now = ctx.eng().shard.now_ms;
            return Ok(
                match blocking::try_all(ctx.eng().shard.db_mut(db), now, &op)? {
                    Some(s) => {
                        touch_served(ctx.eng(), &op, &s);
                        serve_ready(ctx.eng());
                        op.kind.reply(s)
                    }
                    None => op.kind.no_data_reply(),
                },
            );
        }
        let ticket = ctx.defer();
        locked_attempt(ctx.eng(), shards, Arc::new(op), ticket, None);
        return Ok(Reply::Ok);
    }
    if op.timeout_ms > 0 {
        op.deadline = Some(Instant::now() + Duration::from_millis(op.timeout_ms.min(1 << 40)));
    }
    if nested || shards.len() != 1 {
        let ticket = ctx.defer();
        let wid = if nested {
            None
        } else {
            Some(new_waiter(
                ctx.w.eng(),
                ctx.conn,
                ticket,
                &op,
                owners,
                false,
            ))
        };
        locked_attempt(ctx.eng(), shards, Arc::new(op), ticket, wid);
        return Ok(Reply::Ok);
    }
    let owner = shards.first().copied().unwrap_or(home);
    if owner == home && ctx.eng().lock.is_none() {
        // Everything is here: try now, reply at once when there is data.
        let now = ctx.eng().shard.now_ms;
        if let Some(s) = blocking::try_all(ctx.eng().shard.db_mut(db), now, &op)? {
            touch_served(ctx.eng(), &op, &s);
            serve_ready(ctx.eng());
            return Ok(op.kind.reply(s));
        }
        let ticket = ctx.defer();
        let wid = new_waiter(ctx.w.eng(), ctx.conn, ticket, &op, vec![home], true);
        let keys = op.keys.clone();
        register_here(ctx.eng(), keys, home, wid, Arc::new(op));
        return Ok(Reply::Ok);
    }
    let ticket = ctx.defer();
    let wid = new_waiter(ctx.w.eng(), ctx.conn, ticket, &op, vec![owner], false);
    let op = Arc::new(op);
    ctx.eng().post(
        owner,
        Msg::Work(Box::new(move |tw: &mut Engine| {
            owner_attempt(tw, home, wid, op)
        })),
    );
    Ok(Reply::Ok)
}

fn new_waiter(
    w: &mut Engine,
    conn: usize,
    ticket: Ticket,
    op: &BlockOp,
    owners: Vec<usize>,
    registered_here: bool,
) -> u64 {
    let wid = w.waiters.new_id(w.id);
    w.waiters.map.insert(
        wid,
        Waiter {
            conn,
            ticket,
            op: Arc::new(op.clone()),
            owners,
            counted: false,
        },
    );
    w.outbox.push(Out::Waiting {
        conn,
        wid,
        on: true,
    });
    if registered_here {
        count_waiter(w, wid);
    }
    wid
}

/// The waiter's registrations are in place: it counts as blocked from now on.
fn count_waiter(w: &mut Engine, wid: u64) {
    if let Some(wt) = w.waiters.map.get_mut(&wid).filter(|wt| !wt.counted) {
        wt.counted = true;
        w.shared
            .blocked_clients
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Removes a waiter here (its reply is about to be given); tells nobody.
fn take_waiter(w: &mut Engine, wid: u64) -> Option<Waiter> {
    let wt = w.waiters.map.remove(&wid)?;
    w.outbox.push(Out::Waiting {
        conn: wt.conn,
        wid,
        on: false,
    });
    if wt.counted {
        w.shared
            .blocked_clients
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    Some(wt)
}

/// Tells every owner but `except` to drop the waiter's registration.
fn unregister(w: &mut Engine, wid: u64, owners: &[usize], except: Option<usize>) {
    for &s in owners {
        if Some(s) == except {
            continue;
        }
        if s == w.id {
            w.shard.blocked.remove(wid);
        } else {
            w.post(
                s,
                Msg::Work(Box::new(move |tw: &mut Engine| {
                    tw.shard.blocked.remove(wid);
                })),
            );
        }
    }
}

/// Registers a waiter on this (owner) shard; a single-owner waiter's timeout is kept here.
fn register_here(w: &mut Engine, keys: Vec<Bytes>, home: usize, wid: u64, op: Arc<BlockOp>) {
    let timer = if op.single { op.deadline } else { None };
    let db = op.db;
    // XREAD's `$`: the stream's last ID now, when the read starts waiting.
    let op = match &op.kind {
        Kind::Stream(r) => {
            let now = w.shard.now_ms;
            let r = crate::commands::streams::resolve_last(w.shard.db_mut(db), now, r);
            let mut o = (*op).clone();
            o.kind = Kind::Stream(Box::new(r));
            Arc::new(o)
        }
        _ => op,
    };
    w.shard.blocked.add(db, keys, home, wid, op);
    if let Some(at) = timer {
        w.after(at, move |e: &mut Engine| on_timeout(e, wid));
    }
}

/// The single-owner start, on the owner: take data or register, in one step.
fn owner_attempt(w: &mut Engine, home: usize, wid: u64, op: Arc<BlockOp>) {
    let now = w.shard.now_ms;
    let db = op.db;
    let from = w.id;
    let outcome = match blocking::try_all(w.shard.db_mut(db), now, &op) {
        Err(e) => Outcome::Reply {
            r: e.into_reply(),
            from,
        },
        Ok(Some(s)) => {
            touch_served(w, &op, &s);
            serve_ready(w);
            if matches!(op.kind, Kind::Move { .. }) {
                // Already pushed on its destination: the reply is final.
                Outcome::Reply {
                    r: op.kind.reply(s),
                    from,
                }
            } else {
                Outcome::Served { s, from, db }
            }
        }
        Ok(None) => {
            let keys = op.keys.clone();
            register_here(w, keys, home, wid, op);
            w.post(
                home,
                Msg::Control(Box::new(move |hw: &mut Engine| count_waiter(hw, wid))),
            );
            return;
        }
    };
    send_home(w, home, wid, outcome);
}

fn send_home(w: &mut Engine, home: usize, wid: u64, outcome: Outcome) {
    w.post(
        home,
        Msg::Control(Box::new(move |hw: &mut Engine| deliver(hw, wid, outcome))),
    );
}

/// WATCH and other waiters learn about the keys a served client changed.
fn touch_served(w: &mut Engine, op: &BlockOp, s: &Served) {
    if let Served::Stream { .. } = s {
        blocking::stream_served(&mut w.shard, op.db, s);
        return;
    }
    if w.shard.notify != 0 {
        notify_served(w, op, s);
    }
    w.shard.touch(op.db, s.key());
    if let Kind::Move { dst, .. } = &op.kind {
        if shard_of(dst, w.nshards) == w.id {
            w.shard.touch(op.db, dst);
        }
    }
}

/// A waiter woken by a write took `s` from its key here: the pop is a write of its own
/// (Redis propagates a served BLPOP as LPOP): journaled as its exact effect, after the
/// write that fed it, with the watchers, tracking and the pop's keyspace event told.
/// BLMOVE's push is recorded where it happens (`move_served`).
fn pop_served(w: &mut Engine, op: &BlockOp, s: &Served) {
    use crate::shard::notify::{event, LIST, ZSET};
    let db = op.db;
    match s {
        Served::Stream { .. } => blocking::stream_served(&mut w.shard, db, s),
        Served::List { key, end, items } => {
            let pop = crate::commands::lists::pop_cmd(*end);
            let n = items.len().to_string();
            let args: &[&[u8]] = if items.len() == 1 {
                &[pop, key]
            } else {
                &[pop, key, n.as_bytes()]
            };
            w.shard.touch_effect(db, key, args);
            if w.shard.notify != 0 {
                let name = if matches!(end, End::Head) {
                    "lpop"
                } else {
                    "rpop"
                };
                event(&mut w.shard, db, (LIST, name), key, true);
            }
        }
        Served::ZSet { key, items } => {
            let mut args: Vec<&[u8]> = vec![b"ZREM", key];
            args.extend(items.iter().map(|(m, _)| m.as_ref()));
            w.shard.touch_effect(db, key, &args);
            if w.shard.notify != 0 {
                let max = matches!(op.kind, Kind::ZPop(true) | Kind::ZMPop(true, _));
                let name = if max { "zpopmax" } else { "zpopmin" };
                event(&mut w.shard, db, (ZSET, name), key, true);
            }
        }
    }
}

/// Keyspace notifications for a served client, as Redis sends them: BLMOVE's push on the
/// destination first (when it is here), then the pop (and `del` if it emptied the key).
fn notify_served(w: &mut Engine, op: &BlockOp, s: &Served) {
    use crate::shard::notify::{event, LIST, NEW, ZSET};
    use crate::types::list::End;
    let pop = |e: &End| {
        if matches!(e, End::Head) {
            "lpop"
        } else {
            "rpop"
        }
    };
    let key = s.key();
    match &op.kind {
        Kind::Pop(e) | Kind::MPop(e, _) => event(&mut w.shard, op.db, (LIST, pop(e)), key, true),
        Kind::Move { dst, from, to } => {
            if shard_of(dst, w.nshards) == w.id {
                let push = if matches!(to, End::Head) {
                    "lpush"
                } else {
                    "rpush"
                };
                let now = w.shard.now_ms;
                // One element after the push: the push created the list.
                let created = dst != key
                    && matches!(w.shard.db_mut(op.db).get_list(dst, now), Ok(Some(l)) if l.len() == 1);
                if created {
                    event(&mut w.shard, op.db, (NEW, "new"), dst, false);
                }
                event(&mut w.shard, op.db, (LIST, push), dst, false);
            }
            event(&mut w.shard, op.db, (LIST, pop(from)), key, true);
        }
        Kind::ZPop(max) | Kind::ZMPop(max, _) => {
            let name = if *max { "zpopmax" } else { "zpopmin" };
            event(&mut w.shard, op.db, (ZSET, name), key, true);
        }
        Kind::Stream(_) => {}
    }
}

/// On the home shard: a multi-owner client is registered everywhere; its timeout starts.
fn registered(w: &mut Engine, wid: u64) {
    let Some(at) = w.waiters.map.get(&wid).and_then(|wt| wt.op.deadline) else {
        return;
    };
    w.after(at, move |e: &mut Engine| on_timeout(e, wid));
}

/// A waiter's timer fired: on the owner of a single-owner waiter, or on the home of a
/// multi-owner one.
pub fn on_timeout(w: &mut Engine, wid: u64) {
    if w.shard.blocked.get(wid).is_some_and(|r| r.op.single) {
        if let Some(reg) = w.shard.blocked.remove(wid) {
            let r = reg.op.kind.timeout_reply();
            let from = w.id;
            send_home(w, reg.home, wid, Outcome::Reply { r, from });
        }
        return;
    }
    if w.waiters.map.get(&wid).is_none_or(|wt| wt.op.single) {
        return;
    }
    let Some(wt) = take_waiter(w, wid) else {
        return;
    };
    unregister(w, wid, &wt.owners, None);
    w.complete(wt.ticket, wt.op.kind.timeout_reply());
}

/// On the home shard: the client's connection is closing.
pub fn on_close(w: &mut Engine, wid: u64) {
    if let Some(wt) = take_waiter(w, wid) {
        unregister(w, wid, &wt.owners, None);
    }
}

/// CLIENT UNBLOCK on the home shard: ends the wait with the timeout reply or an error.
/// A single-owner wait is ended by its owner (which may have just served it instead).
pub fn unblock(w: &mut Engine, wid: u64, error: bool) -> bool {
    let Some(wt) = w.waiters.map.get(&wid) else {
        return false;
    };
    let reply = if error {
        Reply::error("UNBLOCKED client unblocked via CLIENT UNBLOCK")
    } else {
        wt.op.kind.timeout_reply()
    };
    if wt.op.single {
        let owner = wt.owners.first().copied().unwrap_or(w.id);
        let job = move |tw: &mut Engine| {
            if let Some(reg) = tw.shard.blocked.remove(wid) {
                let from = tw.id;
                send_home(tw, reg.home, wid, Outcome::Reply { r: reply, from });
            }
        };
        if owner == w.id {
            job(w);
        } else {
            // Behind the registration on the same queue.
            w.post(owner, Msg::Work(Box::new(job)));
        }
        return true;
    }
    let Some(wt) = take_waiter(w, wid) else {
        return false;
    };
    unregister(w, wid, &wt.owners, None);
    w.complete(wt.ticket, reply);
    true
}

/// On the home shard: data (or a final reply) for a waiter.
fn deliver(w: &mut Engine, wid: u64, outcome: Outcome) {
    let Some(wt) = take_waiter(w, wid) else {
        if let Outcome::Served { s, from, db } = outcome {
            give_back(w, from, db, s);
        }
        return;
    };
    match outcome {
        Outcome::Reply { r, from } => {
            unregister(w, wid, &wt.owners, Some(from));
            w.complete(wt.ticket, r);
        }
        Outcome::Served { s, from, .. } => {
            unregister(w, wid, &wt.owners, Some(from));
            let r = wt.op.kind.reply(s);
            w.complete(wt.ticket, r);
        }
    }
}

/// Puts data back on the shard it was taken from (a `Work` job: it waits for locks).
fn give_back(w: &mut Engine, from: usize, db: usize, s: Served) {
    let job = move |tw: &mut Engine| {
        let now = tw.shard.now_ms;
        let key = s.key().clone();
        if blocking::restore(tw.shard.db_mut(db), now, s) {
            tw.shard.touch(db, &key);
            serve_ready(tw);
        } else {
            crate::log::warning(&format!(
                "blocked client gone and key '{}' changed type: popped data dropped",
                String::from_utf8_lossy(&key)
            ));
        }
    };
    if from == w.id && w.lock.is_none() {
        job(w);
    } else {
        w.post(from, Msg::Work(Box::new(job)));
    }
}

/// On an owner: serves the waiters of every key written since the last call, oldest first.
/// Never delivers synchronously (the results travel as messages, also to this shard), so it
/// is safe to call right after any command.
pub fn serve_ready(w: &mut Engine) {
    // Serving BLMOVE pushes on other waited keys: keep going while keys become ready.
    for _ in 0..64 {
        if w.lock.is_some() || !w.shard.blocked.has_ready() {
            return;
        }
        for (db, key) in w.shard.blocked.take_ready() {
            serve_key(w, db, &key);
        }
    }
}

fn serve_key(w: &mut Engine, db: usize, key: &Bytes) {
    let now = w.shard.now_ms;
    'key: loop {
        let wids = w.shard.blocked.waiters(db, key);
        if wids.is_empty() {
            return;
        }
        for wid in wids {
            let Some(reg) = w.shard.blocked.get(wid) else {
                continue;
            };
            let (op, home) = (reg.op.clone(), reg.home);
            if let Kind::Move { dst, .. } = &op.kind {
                // Redis skips a BLMOVE whose (local) destination holds another type.
                if shard_of(dst, w.nshards) == w.id
                    && w.shard.db_mut(db).get_list_mut(dst, now).is_err()
                {
                    continue;
                }
            }
            match blocking::take_as(w.shard.db_mut(db), now, &op.kind, key, true) {
                // A stream read: this waiter wants entries after another ID.
                Ok(None) if matches!(op.kind, Kind::Stream(_)) => continue,
                // Missing or empty: nobody else can be served from this key.
                Ok(None) => return,
                // A group reader whose group or stream went: it gets the error.
                Err(e)
                    if matches!(op.kind, Kind::Stream(_))
                        && (e.to_string().starts_with("NOGROUP")
                            || e.to_string().starts_with("UNBLOCKED")) =>
                {
                    w.shard.blocked.remove(wid);
                    let from = w.id;
                    send_home(
                        w,
                        home,
                        wid,
                        Outcome::Reply {
                            r: e.into_reply(),
                            from,
                        },
                    );
                    continue 'key;
                }
                // Holds another type than this waiter pops: try the next waiter.
                Err(_) => continue,
                Ok(Some(s)) => {
                    w.shard.blocked.remove(wid);
                    pop_served(w, &op, &s);
                    let from = w.id;
                    if let Kind::Move { dst, to, .. } = &op.kind {
                        move_served(w, home, wid, db, s, dst.clone(), *to);
                    } else {
                        send_home(w, home, wid, Outcome::Served { s, from, db });
                    }
                    continue 'key;
                }
            }
        }
        return;
    }
}

/// A woken BLMOVE, on the source's owner: push the element on the destination (here, or as
/// the next job for the destination's shard), then the reply goes home. A remote
/// destination of another type gets the element back on the source and the client WRONGTYPE.
fn move_served(w: &mut Engine, home: usize, wid: u64, db: usize, s: Served, dst: Bytes, to: End) {
    let from = w.id;
    let d = shard_of(&dst, w.nshards);
    let job = move |tw: &mut Engine| {
        let v = match &s {
            Served::List { items, .. } => items.first().cloned(),
            Served::ZSet { .. } | Served::Stream { .. } => None,
        };
        let now = tw.shard.now_ms;
        let r = match v {
            Some(v) => match blocking::push_dst(tw.shard.db_mut(db), now, &dst, to, v.clone()) {
                Ok(()) => {
                    let push = crate::commands::lists::push_cmd(to);
                    tw.shard.touch_effect(db, &dst, &[push, &dst, &v]);
                    Reply::Bulk(v)
                }
                Err(e) => {
                    give_back(tw, from, db, s);
                    e.into_reply()
                }
            },
            None => Reply::Null,
        };
        let here = tw.id;
        send_home(tw, home, wid, Outcome::Reply { r, from: here });
    };
    if d == w.id {
        job(w);
    } else {
        w.post(d, Msg::Work(Box::new(job)));
    }
}

/// One shard's answer to a probe: (key index, has data | error text); index `usize::MAX`
/// is BLMOVE's destination check.
type Probe = Vec<(usize, Result<bool, String>)>;

/// Keys on several shards (or inside EXEC): probe under the locks, then take or register.
fn locked_attempt(
    w: &mut Engine,
    shards: Vec<usize>,
    op: Arc<BlockOp>,
    ticket: Ticket,
    wid: Option<u64>,
) {
    let n = w.nshards;
    let all = shards.clone();
    lock_all(
        w,
        shards,
        Box::new(move |w, txid| {
            // Each shard reports its keys (by index) and, for BLMOVE, whether the
            // destination may take a list (index usize::MAX).
            let jobs: Vec<(usize, ShardFn<Probe>)> = all
                .iter()
                .map(|&s| {
                    let op = op.clone();
                    let job: ShardFn<Probe> = Box::new(move |tw| {
                        let now = tw.shard.now_ms;
                        let d = tw.shard.db_mut(op.db);
                        let mut out: Vec<(usize, Result<bool, String>)> = op
                            .keys
                            .iter()
                            .enumerate()
                            .filter(|(_, k)| shard_of(k, n) == s)
                            .map(|(i, k)| {
                                let r = blocking::probe(d, now, &op.kind, k);
                                (i, r.map_err(|e| e.to_string()))
                            })
                            .collect();
                        if let Kind::Move { dst, .. } = &op.kind {
                            if shard_of(dst, n) == s {
                                let r = d.get_list_mut(dst, now).map(|_| true);
                                out.push((usize::MAX, r.map_err(|e| e.to_string())));
                            }
                        }
                        out
                    });
                    (s, job)
                })
                .collect();
            w.fan_out(jobs, false, move |w, parts| {
                let mut states: Vec<Option<Result<bool, String>>> = vec![None; op.keys.len()];
                let mut dst_state: Result<bool, String> = Ok(true);
                for (i, r) in parts.into_iter().flatten() {
                    if i == usize::MAX {
                        dst_state = r;
                    } else if let Some(slot) = states.get_mut(i) {
                        *slot = Some(r);
                    }
                }
                let first = states
                    .iter()
                    .position(|s| !matches!(s, Some(Ok(false)) | None));
                let alive = wid.is_none_or(|id| w.waiters.map.contains_key(&id));
                // Stream reads check every key before serving any (Redis's order).
                let stream_err = matches!(op.kind, Kind::Stream(_))
                    .then(|| {
                        states
                            .iter()
                            .flatten()
                            .find_map(|s| s.as_ref().err().cloned())
                    })
                    .flatten();
                if let Some(e) = stream_err.filter(|_| alive) {
                    let r = Reply::Error(e);
                    unlock_then(w, all, txid, move |w| finish(w, wid, ticket, r));
                    return;
                }
                match first.and_then(|i| states.get(i).cloned().flatten().map(|s| (i, s))) {
                    _ if !alive => unlock_then(w, all, txid, |_| {}),
                    Some((_, Err(e))) => {
                        let r = Reply::Error(e);
                        unlock_then(w, all, txid, move |w| finish(w, wid, ticket, r));
                    }
                    Some((_, Ok(_))) if matches!(op.kind, Kind::Stream(_)) => {
                        let ready: Vec<usize> = states
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| matches!(s, Some(Ok(true))))
                            .map(|(i, _)| i)
                            .collect();
                        locked_read(w, all, txid, op, ready, ticket, wid);
                    }
                    Some((i, Ok(_))) => {
                        if let (Kind::Move { .. }, Err(e)) = (&op.kind, &dst_state) {
                            let r = Reply::Error(e.clone());
                            unlock_then(w, all, txid, move |w| finish(w, wid, ticket, r));
                            return;
                        }
                        locked_take(w, all, txid, op, i, ticket, wid);
                    }
                    None => match wid {
                        None => {
                            let r = op.kind.no_data_reply();
                            unlock_then(w, all, txid, move |w| finish(w, wid, ticket, r));
                        }
                        Some(id) => register_everywhere(w, all, txid, op, id),
                    },
                }
            });
        }),
    );
}

/// The reply of a locked attempt: to the waiter (removed here) or, inside EXEC, the ticket.
fn finish(w: &mut Engine, wid: Option<u64>, ticket: Ticket, r: Reply) {
    match wid {
        Some(id) => {
            if take_waiter(w, id).is_some() {
                w.complete(ticket, r);
            }
        }
        None => w.complete(ticket, r),
    }
}

/// Releases every shard of a locked attempt, then runs `then` here.
fn unlock_then(
    w: &mut Engine,
    shards: Vec<usize>,
    txid: u64,
    then: impl FnOnce(&mut Engine) + 'static,
) {
    let jobs: Vec<(usize, ShardFn<()>)> = shards
        .into_iter()
        .map(|s| {
            let job: ShardFn<()> = Box::new(move |tw| {
                unlock(tw, txid);
                serve_ready(tw);
            });
            (s, job)
        })
        .collect();
    w.fan_out(jobs, false, move |w, _| then(w));
}

/// Takes from key `i` (and pushes BLMOVE's element) with every shard still locked.
#[allow(clippy::too_many_arguments)]
fn locked_take(
    w: &mut Engine,
    all: Vec<usize>,
    txid: u64,
    op: Arc<BlockOp>,
    i: usize,
    ticket: Ticket,
    wid: Option<u64>,
) {
    let n = w.nshards;
    let Some(key) = op.keys.get(i).cloned() else {
        return;
    };
    let src = shard_of(&key, n);
    let op2 = op.clone();
    let take: Vec<(usize, ShardFn<Option<Served>>)> = vec![(
        src,
        Box::new(move |tw| {
            let now = tw.shard.now_ms;
            let s = blocking::take(tw.shard.db_mut(op2.db), now, &op2.kind, &key)
                .ok()
                .flatten();
            match &s {
                Some(st @ Served::Stream { .. }) => {
                    blocking::stream_served(&mut tw.shard, op2.db, st)
                }
                Some(_) => tw.shard.touch(op2.db, &key),
                None => {}
            }
            s
        }),
    )];
    w.fan_out(take, false, move |w, mut got| {
        let Some(s) = got.pop().flatten() else {
            let r = op.kind.no_data_reply();
            unlock_then(w, all, txid, move |w| finish(w, wid, ticket, r));
            return;
        };
        match &op.kind {
            Kind::Move { dst, to, .. } => {
                let v = match &s {
                    Served::List { items, .. } => items.first().cloned(),
                    Served::ZSet { .. } | Served::Stream { .. } => None,
                };
                let Some(v) = v else {
                    return;
                };
                let (dst, to, db) = (dst.clone(), *to, op.db);
                let d = shard_of(&dst, n);
                let v2 = v.clone();
                let push: Vec<(usize, ShardFn<()>)> = vec![(
                    d,
                    Box::new(move |tw| {
                        let now = tw.shard.now_ms;
                        let v3 = v2.clone();
                        if blocking::push_dst(tw.shard.db_mut(db), now, &dst, to, v2).is_ok() {
                            let push = crate::commands::lists::push_cmd(to);
                            tw.shard.touch_effect(db, &dst, &[push, &dst, &v3]);
                        }
                    }),
                )];
                w.fan_out(push, false, move |w, _| {
                    unlock_then(w, all, txid, move |w| {
                        finish(w, wid, ticket, Reply::Bulk(v))
                    });
                });
            }
            kind => {
                let kind = kind.clone();
                let db = op.db;
                unlock_then(w, all, txid, move |w| match wid {
                    // The client may have gone meanwhile: `deliver` puts the data back.
                    Some(id) => deliver(w, id, Outcome::Served { s, from: src, db }),
                    None => w.complete(ticket, kind.reply(s)),
                });
            }
        }
    });
}

/// One owner's stream reads: (key index, what it read).
type ReadPart = Vec<(usize, Served)>;

/// Stream reads under the locks: every key with data answers, in command order (each
/// owner reads its keys and journals what a group read changed), then the shards go.
#[allow(clippy::too_many_arguments)]
fn locked_read(
    w: &mut Engine,
    all: Vec<usize>,
    txid: u64,
    op: Arc<BlockOp>,
    ready: Vec<usize>,
    ticket: Ticket,
    wid: Option<u64>,
) {
    let n = w.nshards;
    let mut owners: Vec<usize> = ready
        .iter()
        .filter_map(|&i| op.keys.get(i).map(|k| shard_of(k, n)))
        .collect();
    owners.sort_unstable();
    owners.dedup();
    let src = owners.first().copied().unwrap_or(w.id);
    let jobs: Vec<(usize, ShardFn<ReadPart>)> = owners
        .into_iter()
        .map(|s| {
            let op = op.clone();
            let ready = ready.clone();
            let job: ShardFn<ReadPart> = Box::new(move |tw| {
                let now = tw.shard.now_ms;
                let mut out = Vec::new();
                for i in ready {
                    let Some(key) = op.keys.get(i).filter(|k| shard_of(k, n) == s) else {
                        continue;
                    };
                    let got = blocking::take(tw.shard.db_mut(op.db), now, &op.kind, key);
                    if let Ok(Some(st)) = got {
                        blocking::stream_served(&mut tw.shard, op.db, &st);
                        out.push((i, st));
                    }
                }
                out
            });
            (s, job)
        })
        .collect();
    w.fan_out(jobs, false, move |w, parts| {
        let mut got: Vec<(usize, Served)> = parts.into_iter().flatten().collect();
        got.sort_by_key(|(i, _)| *i);
        let mut pairs = Vec::new();
        let mut first = None;
        for (_, st) in got {
            if let Served::Stream { key, pairs: p, .. } = st {
                first.get_or_insert(key);
                pairs.extend(p);
            }
        }
        let Some(key) = first else {
            let r = op.kind.no_data_reply();
            unlock_then(w, all, txid, move |w| finish(w, wid, ticket, r));
            return;
        };
        let s = Served::Stream {
            key,
            pairs,
            effects: Vec::new(),
        };
        let (kind, db) = (op.kind.clone(), op.db);
        unlock_then(w, all, txid, move |w| match wid {
            Some(id) => deliver(w, id, Outcome::Served { s, from: src, db }),
            None => w.complete(ticket, kind.reply(s)),
        });
    });
}

/// Nothing to take: register the client on every owner of its keys, then release.
fn register_everywhere(w: &mut Engine, all: Vec<usize>, txid: u64, op: Arc<BlockOp>, wid: u64) {
    let n = w.nshards;
    let single = op.single;
    let home = w.id;
    let owners: Vec<usize> = {
        let mut v: Vec<usize> = op.keys.iter().map(|k| shard_of(k, n)).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    if let Some(wt) = w.waiters.map.get_mut(&wid) {
        wt.owners = owners.clone();
    }
    let jobs: Vec<(usize, ShardFn<()>)> = all
        .into_iter()
        .map(|s| {
            let op = op.clone();
            let mine = owners.contains(&s);
            let job: ShardFn<()> = Box::new(move |tw| {
                if mine {
                    let keys: Vec<Bytes> = op
                        .keys
                        .iter()
                        .filter(|k| shard_of(k, n) == s)
                        .cloned()
                        .collect();
                    register_here(tw, keys, home, wid, op);
                }
                unlock(tw, txid);
                serve_ready(tw);
            });
            (s, job)
        })
        .collect();
    w.fan_out(jobs, false, move |w, _| {
        count_waiter(w, wid);
        if !single {
            registered(w, wid);
        }
    });
}

/// LMPOP / ZMPOP with keys on several shards: the locked attempt of the blocking forms,
/// without waiting (the first key in order with data is popped, under the shards' locks).
pub fn mpop_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let db = ctx.client().db;
    let op = blocking::parse(&argv, db)?;
    let n = ctx.eng().nshards;
    let mut shards: Vec<usize> = op.keys.iter().map(|k| shard_of(k, n)).collect();
    shards.sort_unstable();
    shards.dedup();
    let ticket = ctx.defer();
    locked_attempt(ctx.eng(), shards, Arc::new(op), ticket, None);
    Ok(Reply::Ok)
}

/// CLIENT UNBLOCK's error when the reason is neither TIMEOUT nor ERROR.
pub fn unblock_reason(b: &[u8]) -> Result<bool, CmdError> {
    if b.eq_ignore_ascii_case(b"timeout") {
        Ok(false)
    } else if b.eq_ignore_ascii_case(b"error") {
        Ok(true)
    } else {
        Err(CmdError::err(
            "CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
        ))
    }
}
