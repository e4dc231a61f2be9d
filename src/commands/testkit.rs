//! In-process family-test harness (test builds only): three shards owned by the test thread
//! and `Kit::run`, which routes a command the way a worker does — table lookup, arity,
//! `route` + `run_key` for key commands, and the `fanout` split/merge for multi-key commands —
//! so command semantics, values and exact error texts are checked across shards without
//! sockets or threads. Connection commands (`Exec::Conn`) and the cross-shard variants of
//! two-key commands (RENAME/COPY, which need a `Worker`) are out of its scope: `run` answers
//! those with a `testkit:` error, so a test cannot pass by accident.

use bytes::Bytes;

use super::table::{table, Exec, MultiSpec};
use super::{check_arity, route, run_key, KeyCtx, Route};
use crate::coord::fanout::{merge, split};
use crate::error::CmdError;
use crate::protocol::reply::Reply;
use crate::shard::route::shard_of;
use crate::shard::Shard;

/// Shards in a kit: more than one, so cross-shard paths run by default.
pub const SHARDS: usize = 3;
const DATABASES: usize = 16;

pub struct Kit {
    pub shards: Vec<Shard>,
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
        let n = table().len();
        let shards: Vec<Shard> = (0..SHARDS)
            .map(|id| Shard::new(id, SHARDS, DATABASES, n))
            .collect();
        // One clock for every shard, so expiry is deterministic across them.
        let now = shards.first().map_or(0, |s| s.now_ms);
        let mut kit = Kit {
            shards,
            db: 0,
            resp: 2,
        };
        kit.set_time(now);
        kit
    }

    /// The shards' shared clock, Unix milliseconds.
    pub fn now(&self) -> u64 {
        self.shards.first().map_or(0, |s| s.now_ms)
    }

    pub fn set_time(&mut self, ms: u64) {
        self.shards.iter_mut().for_each(|s| s.now_ms = ms);
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
        let (db, resp) = (self.db, self.resp);
        match spec.exec {
            Exec::Conn(_) => Reply::error(format!("testkit: '{}' is a Conn command", spec.name)),
            Exec::Script(_) => Reply::error(format!("testkit: '{}' needs a worker", spec.name)),
            Exec::Key(f) => match route(&spec.keys, argv, SHARDS) {
                // Keyless runs where the connection is: shard 0 here.
                Route::NoKeys => self.on(0, |s| run_key(s, id, f, db, resp, argv, None)),
                Route::One(s) => self.on(s, |s| run_key(s, id, f, db, resp, argv, None)),
                Route::Many => Reply::error(format!(
                    "testkit: cross-shard '{}' needs a worker",
                    spec.name
                )),
            },
            Exec::Multi(m) => match route(&spec.keys, argv, SHARDS) {
                Route::NoKeys => self.on(0, |s| run_key(s, id, m.sub, db, resp, argv, None)),
                Route::One(s) => self.on(s, |s| run_key(s, id, m.sub, db, resp, argv, None)),
                Route::Many => self.multi(m, argv),
            },
        }
    }

    fn on(&mut self, shard: usize, f: impl FnOnce(&mut Shard) -> Reply) -> Reply {
        match self.shards.get_mut(shard) {
            Some(s) => f(s),
            None => Reply::error(format!("testkit: no shard {shard}")),
        }
    }

    /// Runs `m.sub` on one shard's part, as `fanout::run_part` does on a worker.
    fn part(&mut self, m: MultiSpec, shard: usize, argv: &[Bytes]) -> Reply {
        let (db, resp) = (self.db, self.resp);
        self.on(shard, |s| {
            (m.sub)(
                &mut KeyCtx {
                    shard: s,
                    db,
                    resp,
                    out: None,
                },
                argv,
            )
            .unwrap_or_else(CmdError::into_reply)
        })
    }

    /// A multi-key command over several shards: split, run each part, merge in key order.
    /// MSETNX checks every part before writing any, as `multi::msetnx` does under its lock.
    fn multi(&mut self, m: MultiSpec, argv: &[Bytes]) -> Reply {
        let parts = split(argv, m.step, SHARDS);
        let nkeys = argv.len().saturating_sub(1) / m.step.max(1);
        if m.nx {
            let (db, now) = (self.db, self.now());
            let any = parts.iter().any(|p| {
                self.shards.get_mut(p.shard).is_some_and(|s| {
                    let d = s.db_mut(db);
                    p.argv.iter().skip(1).step_by(2).any(|k| d.exists(k, now))
                })
            });
            if any {
                return Reply::Int(0);
            }
        }
        let orders: Vec<Vec<usize>> = parts.iter().map(|p| p.order.clone()).collect();
        let replies: Vec<Reply> = parts
            .iter()
            .map(|p| self.part(m, p.shard, &p.argv))
            .collect();
        if m.nx {
            return replies
                .into_iter()
                .find(Reply::is_error)
                .unwrap_or(Reply::Int(1));
        }
        merge(m.merge, &orders, replies, nkeys)
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
            for (i, s) in k.shards.iter_mut().enumerate() {
                let here = s.db_mut(0).exists(key.as_bytes(), now);
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
            matches!(k.run(&["RENAME", "a", "k1"]), Reply::Error(e) if e.starts_with("testkit:"))
        );
    }
}
