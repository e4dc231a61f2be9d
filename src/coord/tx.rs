//! Transactions' state and planning (MULTI/EXEC/WATCH): what a connection queued and
//! watches (`ConnTx`), the EXECs a shard coordinates (`TxRuns`), where each queued command
//! runs and which shards an EXEC locks, and the WATCH check on a key's owner (`live`). Pure
//! data and functions, used by the coordinator in `server::tx` (on the connection's shard)
//! and by the owners of the keys.

use ahash::AHashSet;
use bytes::Bytes;
use slab::Slab;

use crate::commands::table::{table, CommandSpec, Exec};
use crate::commands::{self, Route};
use crate::engine::Ticket;
use crate::protocol::reply::Reply;
use crate::shard::db::Db;
use crate::shard::route::shard_of;

/// A command queued between MULTI and EXEC.
pub struct Queued {
    pub id: usize,
    pub argv: Vec<Bytes>,
}

/// One connection's transaction state (boxed in `Conn::tx`, absent for most clients).
#[derive(Default)]
pub struct ConnTx {
    /// Commands queued since MULTI; `None` outside MULTI.
    pub queue: Option<Vec<Queued>>,
    /// A command was rejected while queuing: EXEC answers EXECABORT.
    pub aborted: bool,
    /// WATCHed `(db, key)` pairs (the owner shard follows from the key).
    pub watched: AHashSet<(usize, Bytes)>,
    /// Generation of the watches: bumped whenever they are dropped, so registry entries of
    /// an older generation never count.
    pub epoch: u64,
    /// EXEC is running: the connection must stay open until it finishes.
    pub running: bool,
}

impl ConnTx {
    pub(crate) fn idle(&self) -> bool {
        self.queue.is_none() && self.watched.is_empty() && !self.running
    }
}

/// Token bit marking a ticket that delivers to a running EXEC, not to a reply slot.
/// Connection tokens use the low 56 bits.
pub(crate) const CAPTURE: u64 = 1 << 62;

/// EXECs in progress on this (coordinating) shard.
#[derive(Default)]
pub struct TxRuns {
    pub(crate) runs: Slab<ExecRun>,
    /// Set while a queued command's handler runs synchronously inside EXEC: (run, step).
    pub(crate) nest: Option<(usize, u64)>,
    /// The reply of an EXEC that finished before its handler returned.
    pub(crate) finished: Option<(usize, Reply)>,
}

impl TxRuns {
    /// A queued command's handler is running inside EXEC: its shards are already locked.
    #[inline]
    pub fn nested(&self) -> bool {
        self.nest.is_some()
    }

    /// EXECs in progress here (tests, INFO).
    pub fn running(&self) -> usize {
        self.runs.len()
    }
}

pub(crate) struct ExecRun {
    pub(crate) idx: usize,
    pub(crate) token: u64,
    /// Where the EXEC reply goes; `None` until the EXEC handler defers.
    pub(crate) ticket: Option<Ticket>,
    pub(crate) txid: Option<u64>,
    pub(crate) locked: Vec<usize>,
    pub(crate) cmds: std::collections::VecDeque<Queued>,
    pub(crate) replies: Vec<Reply>,
    pub(crate) db: usize,
    pub(crate) resp: u8,
    pub(crate) watched: Vec<(usize, Bytes)>,
    pub(crate) epoch: u64,
    /// Counts coordinated commands; a capture ticket names the step it belongs to.
    pub(crate) step: u64,
    /// A reply is on its way (a shard's batch or a captured deferred reply).
    pub(crate) waiting: bool,
    /// A captured reply that arrived before its handler returned.
    pub(crate) early: Option<Reply>,
    /// The EXEC command as sent, for MONITOR's line after the queued commands.
    pub(crate) exec_argv: Vec<Bytes>,
}

impl ExecRun {
    /// Records a command's reply, encoded with the protocol in force when it was produced
    /// (a HELLO inside the transaction changes it for the replies after it, as in Redis).
    pub(crate) fn add(&mut self, r: Reply) {
        let mut v = Vec::new();
        r.encode(self.resp, &mut v);
        self.replies.push(Reply::Raw(Bytes::from(v)));
    }
}

/// Where a queued command runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Plan {
    /// A key command whose keys all live on this shard (keyless: the connection's shard).
    On(usize),
    /// A connection command that touches no other shard (PING, SELECT...).
    Local,
    /// A command with its own coordination: keys on several shards, or server-wide.
    Coord,
}

pub(crate) fn plan(spec: &CommandSpec, argv: &[Bytes], nshards: usize, home: usize) -> Plan {
    match spec.exec {
        // A script that may touch undeclared keys holds every shard.
        Exec::Script(_)
            if nshards > 1 && crate::engine::scripts::wants_all_shards(spec.name, argv) =>
        {
            Plan::Coord
        }
        Exec::Key(_) | Exec::Split(_) | Exec::Script(_) => {
            match commands::route(&spec.keys, argv, nshards) {
                Route::NoKeys => Plan::On(home),
                Route::One(s) => Plan::On(s),
                Route::Many => Plan::Coord,
            }
        }
        Exec::Conn(_) if conn_is_local(spec, argv) => Plan::Local,
        Exec::Conn(_) => Plan::Coord,
    }
}

/// Connection commands that read or change only this connection's state. Any other
/// connection command inside EXEC locks every shard first (it may visit them all).
pub(crate) fn conn_is_local(spec: &CommandSpec, argv: &[Bytes]) -> bool {
    match spec.name {
        "ping" | "echo" | "select" | "unwatch" | "time" | "hello" | "auth" | "quit" => true,
        "client" => argv
            .get(1)
            .is_some_and(|s| !s.eq_ignore_ascii_case(b"list") && !s.eq_ignore_ascii_case(b"kill")),
        _ => false,
    }
}

/// The shards an EXEC must lock, sorted and deduplicated.
pub(crate) fn shards_to_lock(
    cmds: &[Queued],
    watched: &[(usize, Bytes)],
    nshards: usize,
    home: usize,
) -> Vec<usize> {
    let mut out: Vec<usize> = watched.iter().map(|(_, k)| shard_of(k, nshards)).collect();
    for q in cmds {
        let Some(spec) = table().get(q.id) else {
            continue;
        };
        match plan(spec, &q.argv, nshards, home) {
            Plan::On(s) => out.push(s),
            Plan::Local => {}
            Plan::Coord => match spec.exec {
                Exec::Conn(_) => return (0..nshards).collect(),
                Exec::Script(_) => {
                    out.extend(crate::engine::scripts::shards_for(spec, &q.argv, nshards))
                }
                _ => out.extend(
                    spec.keys
                        .key_positions(&q.argv)
                        .filter_map(|i| q.argv.get(i))
                        .map(|k| shard_of(k, nshards)),
                ),
            },
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

// ----- queuing -----------------------------------------------------------------------------

/// The expiry of `key` if it is live and volatile, else 0. The only keyspace read WATCH
/// needs (kept in one place for the keyspace rewrite).
pub(crate) fn live_deadline(d: &mut Db, key: &[u8], now: u64) -> u64 {
    d.meta(key, now).map_or(0, |m| m.expire_at)
}

/// Whether `key` exists (not expired) in `d`: what a flush or swap changes.
pub fn live(d: &mut Db, key: &[u8], now: u64) -> bool {
    d.exists(key, now)
}

/// The ticket delivers to a running EXEC.
#[inline]
pub fn is_capture(t: &Ticket) -> bool {
    t.token & CAPTURE != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::table::table;

    fn q(args: &[&str]) -> Queued {
        let argv: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        let id = table().lookup(&argv[0]).map(|(i, _)| i).unwrap();
        Queued { id, argv }
    }

    #[test]
    fn lock_sets() {
        // With 4 shards: a->3, b->0, c->1, d->2.
        let cmds = vec![q(&["set", "a", "1"]), q(&["ping"]), q(&["get", "b"])];
        assert_eq!(shards_to_lock(&cmds, &[], 4, 2), vec![0, 3]);
        let cmds = vec![q(&["mset", "a", "1", "c", "2"])];
        assert_eq!(shards_to_lock(&cmds, &[], 4, 2), vec![1, 3]);
        let cmds = vec![q(&["select", "1"]), q(&["echo", "x"])];
        assert!(shards_to_lock(&cmds, &[], 4, 2).is_empty());
        let watched = vec![(0, Bytes::from("d"))];
        assert_eq!(shards_to_lock(&cmds, &watched, 4, 0), vec![2]);
        let cmds = vec![q(&["flushall"])];
        assert_eq!(shards_to_lock(&cmds, &[], 4, 2), vec![0, 1, 2, 3]);
        let cmds = vec![q(&["client", "kill", "id", "1"])];
        assert_eq!(shards_to_lock(&cmds, &[], 4, 2).len(), 4);
        let cmds = vec![q(&["client", "setname", "x"])];
        assert!(shards_to_lock(&cmds, &[], 4, 2).is_empty());
    }
}
