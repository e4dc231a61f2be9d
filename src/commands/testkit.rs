//! In-process harness (test builds only): three shard engines owned by the test thread,
//! joined by a real mesh, and `Kit::run`, which runs a command the way a worker does:
//! table lookup, arity, `route` + `run_key` for key commands on their owner, and for
//! everything else the real coordinator: `Conn` handlers and `cross` handlers (RENAME,
//! SMOVE, the STORE forms, cross-shard scripts' routing...) on a `ConnCtx` of shard 0,
//! multi-key commands through `coord::fanout`. Messages between the engines are pumped on
//! the test thread until none is left (`Work` waits while a shard is locked, `Control`
//! runs at once), and a deferred reply is read from the engine's outbox. So command
//! semantics, values and exact error texts are checked across shards without sockets or
//! threads. Out of scope, answered with a `testkit:` error so that no test passes by
//! accident: the connection-side families (`server::cmds`: CLIENT, PUBSUB, MULTI...),
//! scripts, admin commands (CONFIG, SAVE, SHUTDOWN, ACL: they reach files and process-wide
//! settings), and a command that is still waiting when the engines go quiet.

use std::sync::Arc;

use bytes::Bytes;

use super::table::{table, Exec, ADMIN};
use super::{check_arity, finish, route, run_key, ClientInfo, ConnCtx, ConnSide, Route};
use crate::config::Config;
use crate::engine::shared::Shared;
use crate::engine::{Engine, Msg, Out, Ticket};
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::shard::route::shard_of;
use crate::shard::Shard;

/// Shards in a kit: more than one, so cross-shard paths run by default.
pub const SHARDS: usize = 3;
const DATABASES: usize = 16;
/// The simulated client's connection index and token.
const CONN: usize = 0;

/// One shard of the kit: its engine and, on shard 0, the simulated client's side.
struct Side {
    eng: Engine,
    client: ClientInfo,
    next_seq: u64,
    /// Deferred replies the engine left for this side.
    replies: Vec<(Ticket, Reply)>,
    /// Connection-side jobs that reached this side (the kit cannot run them).
    front_jobs: usize,
}

impl ConnSide for Side {
    fn eng(&mut self) -> &mut Engine {
        &mut self.eng
    }

    fn client(&mut self, _conn: usize) -> &mut ClientInfo {
        &mut self.client
    }

    fn defer(&mut self, conn: usize) -> Ticket {
        self.reserve(conn)
    }

    fn reserve(&mut self, conn: usize) -> Ticket {
        self.next_seq += 1;
        Ticket {
            shard: self.eng.id,
            token: conn as u64,
            seq: self.next_seq,
        }
    }

    fn as_any(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

impl Side {
    /// Runs one message as the worker's loop does.
    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Work(j) if self.eng.lock.is_some() => self.eng.parked.push_back(Msg::Work(j)),
            Msg::Work(j) => self.job(j),
            Msg::Control(j) => {
                self.job(j);
                self.run_parked();
            }
            Msg::Front(_) => self.front_jobs += 1,
            // The kit sends no batches of plain commands.
            Msg::Batch(_) | Msg::Filled(_) => {}
        }
    }

    fn job(&mut self, j: crate::engine::Job) {
        j(&mut self.eng);
        crate::shard::journal::flush(&mut self.eng.shard);
        self.drain();
    }

    fn run_parked(&mut self) {
        while self.eng.lock.is_none() {
            let Some(m) = self.eng.parked.pop_front() else {
                break;
            };
            self.handle(m);
        }
    }

    /// Takes the replies out of the engine's outbox.
    fn drain(&mut self) {
        for o in std::mem::take(&mut self.eng.outbox) {
            if let Out::Reply(t, r) = o {
                self.replies.push((t, r));
            }
        }
    }

    /// Runs what arrived and what this shard queued for itself; whether anything ran.
    fn step(&mut self) -> bool {
        self.eng.mesh.flush();
        let mut got = Vec::new();
        self.eng.mesh.recv_all(|_, m| got.push(m));
        got.extend(self.eng.local.drain(..));
        let ran = !got.is_empty();
        for m in got {
            self.handle(m);
        }
        self.run_parked();
        self.drain();
        ran
    }
}

pub struct Kit {
    sides: Vec<Side>,
    /// The selected database of the simulated client.
    pub db: usize,
    /// The simulated client's protocol version.
    pub resp: u8,
}

impl Default for Kit {
    fn default() -> Self {
        Kit::new()
    }
}

impl Kit {
    pub fn new() -> Kit {
        let cfg = Config {
            shards: SHARDS,
            databases: DATABASES,
            ..Config::default()
        };
        let (events, _) = std::sync::mpsc::channel();
        let shared = Arc::new(Shared::new(cfg, 0, events));
        let Ok(mesh) = crate::runtime::mesh::mesh(SHARDS, 1024) else {
            panic!("testkit: cannot build the mesh (eventfd)");
        };
        let n = table().len();
        let sides: Vec<Side> = mesh
            .into_iter()
            .enumerate()
            .map(|(id, ep)| Side {
                eng: Engine::new(id, shared.clone(), ep, n),
                client: ClientInfo::new(1, "127.0.0.1:1".into(), "127.0.0.1:6379".into()),
                next_seq: 0,
                replies: Vec::new(),
                front_jobs: 0,
            })
            .collect();
        // One clock for every shard, so expiry is deterministic across them.
        let now = sides.first().map_or(0, |s| s.eng.shard.now_ms);
        let mut kit = Kit {
            sides,
            db: 0,
            resp: 2,
        };
        kit.set_time(now);
        kit
    }

    /// Shard `i`'s data.
    pub fn shard(&mut self, i: usize) -> Option<&mut Shard> {
        self.sides.get_mut(i).map(|s| &mut s.eng.shard)
    }

    /// The shards' shared clock, Unix milliseconds.
    pub fn now(&self) -> u64 {
        self.sides.first().map_or(0, |s| s.eng.shard.now_ms)
    }

    pub fn set_time(&mut self, ms: u64) {
        self.sides.iter_mut().for_each(|s| s.eng.shard.now_ms = ms);
    }

    /// Moves every shard's clock forward.
    pub fn advance(&mut self, ms: u64) {
        let t = self.now() + ms;
        self.set_time(t);
    }

    /// The shard that owns `key` in this kit.
    pub fn owner(key: &str) -> usize {
        shard_of(key.as_bytes(), SHARDS)
    }

    /// Runs one command as a worker would and returns its reply.
    pub fn run(&mut self, args: &[&str]) -> Reply {
        let argv: Vec<Bytes> = args
            .iter()
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        self.run_bytes(&argv)
    }

    pub fn run_bytes(&mut self, argv: &[Bytes]) -> Reply {
        let name = argv.first().cloned().unwrap_or_default();
        let Some((id, spec)) = table().lookup(&name) else {
            return CmdError::unknown_command(argv).into_reply();
        };
        if let Err(e) = check_arity(spec, argv) {
            return e.into_reply();
        }
        if spec.has(ADMIN) && matches!(spec.exec, Exec::Conn(_)) {
            // Process-wide effects (files, the working directory, settings, ACL users).
            return Reply::error(format!("testkit: '{}' is an admin command", spec.name));
        }
        let (db, resp) = (self.db, self.resp);
        let reply = match spec.exec {
            Exec::Script(_) => {
                return Reply::error(format!("testkit: '{}' needs a worker", spec.name))
            }
            Exec::Conn(f) => self.conn(id, |ctx| f(ctx, argv)),
            Exec::Key(f) => match route(&spec.keys, argv, SHARDS) {
                // Keyless runs where the connection is: shard 0 here.
                Route::NoKeys => self.on(0, |s| run_key(s, id, f, db, resp, argv, None)),
                Route::One(s) => self.on(s, |s| run_key(s, id, f, db, resp, argv, None)),
                Route::Many => match spec.cross {
                    Some(cross) => self.conn(id, |ctx| cross(ctx, argv.to_vec())),
                    None => Reply::error("CROSSSLOT Keys in request don't hash to the same slot"),
                },
            },
            Exec::Split(m) => match route(&spec.keys, argv, SHARDS) {
                Route::NoKeys => self.on(0, |s| run_key(s, id, m.sub, db, resp, argv, None)),
                Route::One(s) => self.on(s, |s| run_key(s, id, m.sub, db, resp, argv, None)),
                Route::Many => self.conn(id, |ctx| {
                    crate::coord::fanout::multi_key(ctx, id, m, argv.to_vec());
                    Ok(Reply::Ok)
                }),
            },
        };
        match reply {
            Reply::Error(e) if e.ends_with(super::NEEDS_CONNECTION) => Reply::error(format!(
                "testkit: '{}' is a connection-side command",
                spec.name
            )),
            r => r,
        }
    }

    fn on(&mut self, shard: usize, f: impl FnOnce(&mut Shard) -> Reply) -> Reply {
        let reply = match self.sides.get_mut(shard) {
            Some(s) => f(&mut s.eng.shard),
            None => return Reply::error(format!("testkit: no shard {shard}")),
        };
        // What the command woke (blocked clients) or sent runs now.
        self.pump();
        reply
    }

    /// Runs a handler on a `ConnCtx` of shard 0, then the engines until they are quiet;
    /// the reply is the handler's, or the deferred one.
    fn conn(&mut self, id: usize, f: impl FnOnce(&mut ConnCtx) -> CmdResult) -> Reply {
        let Some(home) = self.sides.first_mut() else {
            return Reply::error("testkit: no shards");
        };
        home.client.db = self.db;
        home.client.resp = self.resp;
        home.front_jobs = 0;
        let mut ctx = ConnCtx {
            w: &mut *home,
            conn: CONN,
            deferred: None,
        };
        let res = f(&mut ctx);
        let ticket = ctx.deferred;
        home.drain();
        self.pump();
        let Some(home) = self.sides.first_mut() else {
            return Reply::error("testkit: no shards");
        };
        self.db = home.client.db;
        let Some(t) = ticket else {
            return finish(&mut home.eng.shard, id, res);
        };
        match home.replies.iter().position(|(r, _)| *r == t) {
            Some(i) => home.replies.remove(i).1,
            None if home.front_jobs > 0 => {
                Reply::error("testkit: the reply went through the connection side")
            }
            None => Reply::error("testkit: no reply (the command is still waiting)"),
        }
    }

    /// Runs every engine's messages until none is left.
    fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut ran = false;
            for s in &mut self.sides {
                ran |= s.step();
            }
            if !ran {
                return;
            }
        }
    }
}

/// A bulk-string reply.
pub fn bulk(s: &str) -> Reply {
    Reply::bulk(Bytes::copy_from_slice(s.as_bytes()))
}

/// An error reply with this exact text.
pub fn err(s: &str) -> Reply {
    Reply::error(s)
}

/// An array of bulk strings (`None` for nil).
pub fn bulks(items: &[Option<&str>]) -> Reply {
    Reply::Array(items.iter().map(|i| i.map_or(Reply::Null, bulk)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kit_spreads_keys_over_all_shards() {
        // The family tests rely on these owners for their cross-shard cases.
        assert_eq!(Kit::owner("a"), 0);
        assert_eq!(Kit::owner("k1"), 1);
        assert_eq!(Kit::owner("k2"), 2);
    }

    #[test]
    fn routing_reaches_the_owner_and_multi_merges_in_order() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["MSET", "a", "1", "k1", "2", "k2", "3"]), Reply::Ok);
        for (key, owner) in [("a", 0), ("k1", 1), ("k2", 2)] {
            let now = k.now();
            for i in 0..SHARDS {
                let here = k
                    .shard(i)
                    .is_some_and(|s| s.db_mut(0).exists(key.as_bytes(), now));
                assert_eq!(here, i == owner, "{key} on shard {i}");
            }
        }
        assert_eq!(
            k.run(&["MGET", "k2", "nokey", "a", "k1"]),
            bulks(&[Some("3"), None, Some("1"), Some("2")])
        );
        assert_eq!(k.run(&["DEL", "a", "k1", "k2", "a"]), Reply::Int(3));
    }

    #[test]
    fn dispatch_errors_and_out_of_scope() {
        let mut k = Kit::new();
        assert_eq!(
            k.run(&["NOPE", "x"]),
            err("ERR unknown command 'NOPE', with args beginning with: 'x' ")
        );
        assert_eq!(
            k.run(&["GET"]),
            err("ERR wrong number of arguments for 'get' command")
        );
        assert!(matches!(k.run(&["PING"]), Reply::Error(e) if e.starts_with("testkit:")));
        assert!(
            matches!(k.run(&["EVAL", "return 1", "0"]), Reply::Error(e) if e.starts_with("testkit:"))
        );
        assert!(matches!(k.run(&["CLIENT", "ID"]), Reply::Error(e) if e.starts_with("testkit:")));
    }

    #[test]
    fn cross_shard_commands_run_through_the_coordinator() {
        let mut k = Kit::new();
        // "a", "k1", "k2" live on shards 0, 1, 2.
        assert_eq!(k.run(&["SET", "a", "1"]), Reply::Ok);
        assert_eq!(k.run(&["RENAME", "a", "k1"]), Reply::Ok);
        assert_eq!(k.run(&["GET", "k1"]), bulk("1"));
        assert_eq!(k.run(&["EXISTS", "a"]), Reply::Int(0));
        assert_eq!(k.run(&["COPY", "k1", "k2"]), Reply::Int(1));
        assert_eq!(k.run(&["COPY", "k1", "k2"]), Reply::Int(0));
        assert_eq!(k.run(&["RENAMENX", "k1", "k2"]), Reply::Int(0));
        assert_eq!(k.run(&["DEL", "k1", "k2"]), Reply::Int(2));
        // Sets and their STORE forms across shards.
        assert_eq!(k.run(&["SADD", "a", "x", "y"]), Reply::Int(2));
        assert_eq!(k.run(&["SADD", "k1", "y", "z"]), Reply::Int(2));
        assert_eq!(k.run(&["SINTERSTORE", "k2", "a", "k1"]), Reply::Int(1));
        assert_eq!(k.run(&["SCARD", "k2"]), Reply::Int(1));
        assert_eq!(k.run(&["SISMEMBER", "k2", "y"]), Reply::Int(1));
        assert_eq!(k.run(&["SMOVE", "a", "k1", "x"]), Reply::Int(1));
        assert_eq!(k.run(&["SCARD", "k1"]), Reply::Int(3));
        assert_eq!(
            k.run(&["SMOVE", "a", "k2", "nope"]),
            Reply::Int(0),
            "a missing member moves nothing"
        );
        // Lists move between shards.
        assert_eq!(k.run(&["RPUSH", "la", "1", "2"]), Reply::Int(2));
        let other = ["lb", "lc", "ld", "le"]
            .into_iter()
            .find(|n| Kit::owner(n) != Kit::owner("la"))
            .unwrap_or("lb");
        assert_eq!(k.run(&["LMOVE", "la", other, "LEFT", "RIGHT"]), bulk("1"));
        assert_eq!(k.run(&["LRANGE", other, "0", "-1"]), bulks(&[Some("1")]));
        // MSETNX checks every shard before writing any.
        assert_eq!(k.run(&["MSETNX", "n0", "1", "k1", "2"]), Reply::Int(0));
        assert_eq!(k.run(&["EXISTS", "n0"]), Reply::Int(0));
        // A type error on one shard is the reply, as from a server.
        assert_eq!(
            k.run(&["SUNIONSTORE", "k2", "k1", "la"]),
            err("WRONGTYPE Operation against a key holding the wrong kind of value")
        );
    }

    #[test]
    fn engine_side_connection_commands_run_over_every_shard() {
        let mut k = Kit::new();
        assert_eq!(k.run(&["MSET", "a", "1", "k1", "2", "k2", "3"]), Reply::Ok);
        assert_eq!(k.run(&["DBSIZE"]), Reply::Int(3));
        let Reply::Array(mut keys) = k.run(&["KEYS", "*"]) else {
            panic!("KEYS is not an array");
        };
        keys.sort_by_key(|r| format!("{r:?}"));
        assert_eq!(
            Reply::Array(keys),
            bulks(&[Some("a"), Some("k1"), Some("k2")])
        );
        // SWAPDB and FLUSHALL reach every shard.
        assert_eq!(k.run(&["SWAPDB", "0", "1"]), Reply::Ok);
        assert_eq!(k.run(&["DBSIZE"]), Reply::Int(0));
        k.db = 1;
        assert_eq!(k.run(&["DBSIZE"]), Reply::Int(3));
        assert_eq!(k.run(&["FLUSHALL"]), Reply::Ok);
        assert_eq!(k.run(&["DBSIZE"]), Reply::Int(0));
        k.db = 0;
        // SCAN walks the shards in turn; the cursor carries the shard.
        assert_eq!(k.run(&["MSET", "a", "1", "k1", "2", "k2", "3"]), Reply::Ok);
        let mut cursor = "0".to_string();
        let mut seen = Vec::new();
        for _ in 0..10 {
            let Reply::Array(v) = k.run(&["SCAN", &cursor, "COUNT", "100"]) else {
                panic!("SCAN is not an array");
            };
            let [Reply::Bulk(c), Reply::Array(keys)] = &v[..] else {
                panic!("SCAN reply {v:?}");
            };
            seen.extend(keys.iter().map(|r| format!("{r:?}")));
            cursor = String::from_utf8_lossy(c).into_owned();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(cursor, "0");
        assert_eq!(seen.len(), 3, "{seen:?}");
    }
}
