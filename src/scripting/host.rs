//! Where a script runs and what its `redis.call`s reach. Runs on the shard thread that runs
//! the script (the coordinator part, `cross`, on the calling connection's shard).
//!
//! - **One shard.** A script whose declared keys all live on one shard (or that declares
//!   none) is routed like a key command and runs there, holding only that shard
//!   (`Held::Own`): its thread runs nothing else meanwhile, so no lock is needed.
//! - **Several shards.** Declared keys on several shards (or any script when undeclared
//!   keys are allowed: `lua-allow-undeclared-keys yes` or the `allow-undeclared-keys`
//!   shebang flag, which hold every shard) go through `cross`: the shards are locked in one
//!   ordered step (`coord::lock::lock_all`, the order MULTI/EXEC and every atomic command
//!   use), the script runs on one of them as a `Control` job (`Held::Locked`), and every
//!   shard is released when it ends. Inside EXEC the transaction's locks already cover them.
//! - **`redis.call`** runs on the owner of its keys: here inline; on another held shard as a
//!   `Control` job the script waits for (`Worker::call_sync`: that shard is locked for the
//!   script, so it answers at its next loop pass). Keys spread over several held shards: the
//!   split multi-key commands (DEL, MGET, MSET, EXISTS...) run one part per shard; any other
//!   command runs on copies of its keys in a scratch shard, and a write's keys are written
//!   back to their owners (`scratch`). A key on a shard the script does not hold gets
//!   `UNDECLARED`.
//! - Writes run through the owner's `run_key` / `run_part` (or `Shard::touch` for a
//!   written-back copy), so WATCH, blocked clients, keyspace notifications and the journal
//!   see them; under the lock they carry the transaction's tag, as EXEC's writes do.
//! - **Busy.** Past `busy-reply-threshold` the VM's hook calls `pump`: the shards the script
//!   holds are published as busy (other shards answer `-BUSY` instead of sending them
//!   commands) and this shard's own sockets are served with `-BUSY` (`Worker::busy_pump`).

use bytes::Bytes;

use crate::commands::table::{table, CommandSpec, Exec, ScriptEntry, WRITE};
use crate::commands::{self, run_key, ConnCtx};
use crate::coord::fanout;
use crate::coord::lock;
use crate::engine::Engine;
use crate::engine::Msg;
use crate::error::CmdResult;
use crate::protocol::reply::Reply;
use crate::runtime::clock;
use crate::server::worker::Worker;
use crate::shard::route::shard_of;
use crate::shard::value::Exported;
use crate::shard::Shard;

/// Which shards a running script holds besides its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// Only the shard it runs on.
    Own,
    /// These shards (sorted; the script's own among them), locked for it.
    Locked(Vec<usize>),
}

/// What a running script has: the worker of its shard (lent to `redis.call` and to the busy
/// pump in turn), its database and protocol, and the shards it holds.
pub struct Host<'a> {
    pub w: &'a mut Worker,
    pub db: usize,
    pub resp: u8,
    /// The connection of this shard whose input is being processed up the stack (the one
    /// that sent the script, when it runs inline): the busy pump leaves its input alone.
    pub caller: Option<usize>,
    pub held: Held,
    /// A function (FCALL) rather than an EVAL script: picks the `-BUSY` text.
    pub function: bool,
    /// The held shards are published as busy.
    busy: bool,
    /// The restricted user the script runs as (and its CLIENT LIST line, for the ACL LOG):
    /// each call is checked against it. `None` for a user that may run everything.
    pub acl: Option<(std::sync::Arc<crate::acl::User>, String)>,
}

/// Error for a key on a shard the script does not hold.
pub fn undeclared(key: &[u8]) -> String {
    format!(
        "ERR Script attempted to access key '{}' that is not declared and lives on another shard: pass it in KEYS (or give it a hash tag shared with a declared key), or allow undeclared keys (lua-allow-undeclared-keys yes, or the allow-undeclared-keys script flag)",
        String::from_utf8_lossy(key)
    )
}

impl Host<'_> {
    /// Whether the script may touch keys of shard `s`.
    pub fn holds(&self, s: usize) -> bool {
        s == self.w.eng.id
            || match &self.held {
                Held::Own => false,
                Held::Locked(v) => v.binary_search(&s).is_ok(),
            }
    }

    fn held_shards(&self) -> Vec<usize> {
        match &self.held {
            Held::Own => vec![self.w.eng.id],
            Held::Locked(v) => v.clone(),
        }
    }

    /// Called by the VM's hook while the script is past the busy threshold.
    pub fn pump(&mut self) {
        if !self.busy {
            self.busy = true;
            let text = if self.function {
                super::BUSY_FUNCTION
            } else {
                super::BUSY_EVAL
            };
            for s in self.held_shards() {
                super::set_shard_busy(s, Some(self.function));
                if s == self.w.eng.id {
                    self.w.refuse_parked_batches(text);
                } else {
                    // Commands that reached a held shard before now wait in its queue.
                    self.w.eng.post(
                        s,
                        crate::server::worker::front(move |tw: &mut Worker| {
                            tw.refuse_parked_batches(text)
                        }),
                    );
                }
            }
        }
        self.w.busy_pump(self.caller, self.function);
    }

    /// Runs `f` on shard `s` (here, or as a job the script waits for); `None` when the
    /// server stops meanwhile.
    pub fn on_shard<T: Send + 'static>(
        &mut self,
        s: usize,
        f: impl FnOnce(&mut Engine) -> T + Send + 'static,
    ) -> Option<T> {
        if s == self.w.eng.id {
            return Some(f(&mut self.w.eng));
        }
        self.w.eng.call_sync(s, Box::new(f))
    }

    /// Runs one checked command for the script on the owner(s) of its keys.
    pub fn command(
        &mut self,
        id: usize,
        spec: &'static CommandSpec,
        argv: Vec<Bytes>,
        resp: u8,
    ) -> Result<Reply, String> {
        let f = match spec.exec {
            Exec::Key(f) => f,
            Exec::Split(m) => m.sub,
            Exec::Conn(_) | Exec::Script(_) => {
                return Err(super::vm::UNSUPPORTED_IN_SCRIPT.into());
            }
        };
        let nshards = self.w.eng.nshards;
        let mut owners: Vec<usize> = Vec::new();
        for i in spec.keys.key_positions(&argv) {
            let Some(k) = argv.get(i) else { continue };
            let s = shard_of(k, nshards);
            if !self.holds(s) {
                return Err(undeclared(k));
            }
            if !owners.contains(&s) {
                owners.push(s);
            }
        }
        let db = self.db;
        Ok(match owners.as_slice() {
            [] => run_key(&mut self.w.eng.shard, id, f, db, resp, &argv, None),
            [s] if *s == self.w.eng.id => {
                run_key(&mut self.w.eng.shard, id, f, db, resp, &argv, None)
            }
            [s] => {
                let s = *s;
                self.on_shard(s, move |tw| {
                    run_key(&mut tw.shard, id, f, db, resp, &argv, None)
                })
                .unwrap_or_else(|| Reply::error(super::SHUTTING_DOWN))
            }
            _ => {
                let r = self.spread(id, spec, f, argv, resp);
                commands::finish(&mut self.w.eng.shard, id, Ok(r))
            }
        })
    }

    /// A command whose keys live on several held shards.
    fn spread(
        &mut self,
        id: usize,
        spec: &'static CommandSpec,
        f: crate::commands::table::KeyFn,
        argv: Vec<Bytes>,
        resp: u8,
    ) -> Reply {
        let db = self.db;
        let Exec::Split(m) = spec.exec else {
            return self.scratch(id, spec, f, argv, resp);
        };
        let parts = fanout::split(&argv, m.step, self.w.eng.nshards);
        let nkeys = argv.len().saturating_sub(1) / m.step.max(1);
        if m.nx {
            // MSETNX: write nothing when any key exists on any shard.
            for p in &parts {
                let keys: Vec<Bytes> = p.argv.iter().skip(1).step_by(2).cloned().collect();
                let any = self.on_shard(p.shard, move |tw| {
                    let now = tw.shard.now_ms;
                    let d = tw.shard.db_mut(db);
                    keys.iter().any(|k| d.exists(k, now))
                });
                if any != Some(false) {
                    return Reply::Int(0);
                }
            }
        }
        let orders: Vec<Vec<usize>> = parts.iter().map(|p| p.order.clone()).collect();
        let mut replies = Vec::with_capacity(parts.len());
        for p in parts {
            let sub = m.sub;
            let r = self
                .on_shard(p.shard, move |tw| {
                    fanout::run_part(tw, sub, db, resp, &p.argv)
                })
                .unwrap_or_else(|| Reply::error(super::SHUTTING_DOWN));
            replies.push(r);
        }
        let r = fanout::merge(m.merge, &orders, replies, nkeys);
        if m.nx && !r.is_error() {
            return Reply::Int(1);
        }
        r
    }

    /// Any other command over several held shards: runs on copies of its keys in a scratch
    /// shard; a write's keys are then written back to their owners (as their new state,
    /// which is what the journal records). Costs a copy of each key's value both ways.
    fn scratch(
        &mut self,
        id: usize,
        spec: &'static CommandSpec,
        f: crate::commands::table::KeyFn,
        argv: Vec<Bytes>,
        resp: u8,
    ) -> Reply {
        let (db, nshards) = (self.db, self.w.eng.nshards);
        let mut keys: Vec<Bytes> = Vec::new();
        for i in spec.keys.key_positions(&argv) {
            if let Some(k) = argv.get(i) {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        let mut copies: Vec<(Bytes, Option<Exported>)> = Vec::with_capacity(keys.len());
        for k in &keys {
            let key = k.clone();
            let e = self.on_shard(shard_of(k, nshards), move |tw| {
                let now = tw.shard.now_ms;
                tw.shard.db_mut(db).export(&key, now)
            });
            let Some(e) = e else {
                return Reply::error(super::SHUTTING_DOWN);
            };
            copies.push((k.clone(), e));
        }
        let mut sc = Shard::new(
            self.w.eng.id,
            nshards,
            self.w.eng.shard.dbs.len(),
            table().len(),
        );
        sc.now_ms = self.w.eng.shard.now_ms;
        for (k, e) in copies {
            if let Some(e) = e {
                sc.db_mut(db).import(&k, e);
            }
        }
        let reply = run_key(&mut sc, id, f, db, resp, &argv, None);
        if !spec.has(WRITE) || reply.is_error() {
            return reply;
        }
        for k in keys {
            let e = sc.db_mut(db).take(&k);
            let done = self.on_shard(shard_of(&k, nshards), move |tw| {
                tw.shard.touch(db, &k);
                let d = tw.shard.db_mut(db);
                d.remove(&k);
                if let Some(e) = e {
                    d.import(&k, e);
                }
                crate::shard::journal::flush(&mut tw.shard);
            });
            if done.is_none() {
                return Reply::error(super::SHUTTING_DOWN);
            }
        }
        reply
    }
}

/// Runs a script row (`Exec::Script`) on this shard, with statistics. `caller`: the local
/// connection whose input is being processed, when the script runs inline for it;
/// `client`: the id of the client that sent it (its ACL user checks the script's calls).
#[allow(clippy::too_many_arguments)]
pub fn run(
    w: &mut Worker,
    id: usize,
    f: ScriptEntry,
    db: usize,
    resp: u8,
    argv: &[Bytes],
    caller: Option<usize>,
    held: Held,
    client: u64,
) -> Reply {
    let start = clock::ticks();
    let mut h = Host {
        w,
        db,
        resp,
        caller,
        held,
        function: false,
        busy: false,
        acl: crate::acl::script_caller(client),
    };
    let res = super::entry(f)(&mut h, argv);
    if h.busy {
        for s in h.held_shards() {
            super::set_shard_busy(s, None);
        }
    }
    let w = h.w;
    let reply = commands::finish(&mut w.eng.shard, id, res);
    if let Some(st) = w.eng.shard.cmd_stats.get_mut(id) {
        st.nanos += clock::to_nanos(clock::ticks().wrapping_sub(start));
    }
    reply
}

/// A script call that must hold several shards (called by EVAL's and FCALL's `cross`
/// after Redis's own checks): locks them, runs the script on one of them (the connection's
/// own shard when it is among them, else the owner of the first key), releases them and
/// answers the connection.
pub fn cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let name = argv.first().cloned().unwrap_or_default();
    let Some((id, spec)) = table().lookup(&name) else {
        return Err(crate::error::CmdError::err("internal routing error"));
    };
    let Exec::Script(f) = spec.exec else {
        return Err(crate::error::CmdError::err("internal routing error"));
    };
    let (db, resp, client) = {
        let c = ctx.client();
        (c.db, c.resp, c.id)
    };
    let (home, nshards) = (ctx.eng().id, ctx.eng().nshards);
    let shards = super::shards_for(spec, &argv, nshards);
    let first = spec
        .keys
        .key_positions(&argv)
        .find_map(|i| argv.get(i))
        .map(|k| shard_of(k, nshards));
    let runner = if shards.contains(&home) {
        home
    } else {
        first.or(shards.first().copied()).unwrap_or(home)
    };
    let ticket = ctx.defer();
    let w = ctx.eng();
    lock::lock_all(
        w,
        shards.clone(),
        Box::new(move |w: &mut Engine, txid| {
            let job = move |tw: &mut Worker| {
                let reply = run(
                    tw,
                    id,
                    f,
                    db,
                    resp,
                    &argv,
                    None,
                    Held::Locked(shards.clone()),
                    client,
                );
                for &s in &shards {
                    if s == tw.eng.id {
                        lock::unlock(&mut tw.eng, txid);
                    } else {
                        tw.eng.post(
                            s,
                            Msg::Control(Box::new(move |x: &mut Engine| lock::unlock(x, txid))),
                        );
                    }
                }
                if tw.eng.shard.blocked.has_ready() {
                    crate::coord::blocking::serve_ready(&mut tw.eng);
                }
                if tw.eng.id == home {
                    tw.eng.complete(ticket, reply);
                } else {
                    tw.eng.post(
                        home,
                        Msg::Control(Box::new(move |ow: &mut Engine| ow.complete(ticket, reply))),
                    );
                }
            };
            w.post(runner, crate::server::worker::front(job));
        }),
    );
    Ok(Reply::Ok)
}
