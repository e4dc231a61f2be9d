//! The write hooks that make WATCH see modifications (Redis's touchWatchedKey and
//! friends). They run on the shard that owns the keys, after a command changed them; the
//! transaction commands themselves are connection-side (`server::cmds::multi`).

use bytes::Bytes;

use super::table::{CommandSpec, NoOp, Touches, WRITE};
use crate::coord::tx;
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::shard::Shard;

// ----- write hooks (run on the shard that owns the keys) ------------------------------------

/// After a command ran on this shard: a successful write to a watched key makes every
/// watcher's EXEC fail. Called only when something is watched here. Replies that mean
/// "nothing changed" (DEL of a missing key, a SETNX that did not set...) touch nothing, as
/// Redis only signals real modifications; anything else that succeeded counts.
pub fn after_write(
    shard: &mut Shard,
    spec: &CommandSpec,
    db: usize,
    argv: &[Bytes],
    reply: &Reply,
) {
    let flagged = std::mem::take(&mut shard.unchanged);
    if !spec.has(WRITE) || reply.is_error() || unchanged(spec.noop, argv, reply, flagged) {
        return;
    }
    if spec.touches == Touches::Own {
        return;
    }
    // Only the journal listens, and it records this command as sent: it needs to know that
    // something changed, not which keys (a replica attached, no watcher, no notification).
    if shard.watches.is_empty()
        && shard.blocked.is_empty()
        && shard.notify == 0
        && shard.tracking.is_none()
        && shard
            .journal
            .as_mut()
            .is_some_and(|j| crate::shard::journal::changed_as_sent(j))
    {
        return;
    }
    for i in spec.keys.key_positions(argv) {
        let Some(k) = argv.get(i) else {
            continue;
        };
        let kdb = match spec.touches {
            Touches::Only(p) if p != i => continue,
            Touches::AllBut(p) if p == i => continue,
            // COPY's destination may be in another database (COPY src dst DB n).
            Touches::CopyDb if i == 2 => copy_db(argv).unwrap_or(db),
            _ => db,
        };
        shard.touch(kdb, k);
        // MOVE changes the key in its target database too.
        if spec.touches == Touches::MoveDb {
            if let Some(d) = argv
                .get(2)
                .and_then(|a| parse_i64(a))
                .and_then(|n| usize::try_from(n).ok())
            {
                shard.touch(d, k);
            }
        }
    }
}

/// The reply says the write changed nothing (the row's `NoOp` rule).
fn unchanged(rule: NoOp, argv: &[Bytes], reply: &Reply, flagged: bool) -> bool {
    let same_keys = || argv.get(1) == argv.get(2);
    match rule {
        NoOp::Never => false,
        NoOp::Int0 => matches!(reply, Reply::Int(0)),
        NoOp::Int0OrSameKeys => matches!(reply, Reply::Int(0)) || same_keys(),
        NoOp::SameKeys => same_keys(),
        NoOp::IntAtMost0 => matches!(reply, Reply::Int(n) if *n <= 0),
        NoOp::NullOrEmpty => match reply {
            Reply::Null | Reply::NullArray => true,
            Reply::Set(v) | Reply::Array(v) => v.is_empty(),
            _ => false,
        },
        NoOp::Null => matches!(reply, Reply::Null),
        NoOp::NullOrNoOptions => matches!(reply, Reply::Null) || argv.len() == 2,
        NoOp::NullWithoutGet => {
            matches!(reply, Reply::Null)
                && !argv.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"get"))
        }
        NoOp::EmptyArg(i) => argv.get(i).is_some_and(|a| a.is_empty()),
        NoOp::Flagged => flagged,
    }
}

/// The `DB n` option of COPY.
fn copy_db(argv: &[Bytes]) -> Option<usize> {
    let i = argv.iter().position(|a| a.eq_ignore_ascii_case(b"db"))?;
    let n = parse_i64(argv.get(i + 1)?)?;
    usize::try_from(n).ok()
}

/// Before FLUSHDB/FLUSHALL empties `db` on this shard: watched keys that exist change.
pub fn before_flush(shard: &mut Shard, db: usize) {
    // CLIENT TRACKING: every tracking client is told to drop its whole cache (a null
    // invalidation, sent by its own shard), so the remembered keys are moot.
    if let Some(t) = shard.tracking.as_mut() {
        t.clear_keys();
        t.flushed = true;
    }
    if shard.watches.is_empty() {
        return;
    }
    let now = shard.now_ms;
    let keys = shard.watches.keys_in(db);
    for k in keys {
        if shard.dbs.get_mut(db).is_some_and(|d| tx::live(d, &k, now)) {
            // The watchers only: the flush is journaled as itself, and `Shard::touch`
            // would also record the key's state.
            shard.watches.touch(db, &k);
        }
    }
}

/// Before SWAPDB `a` `b` on this shard: a watched key changes when it exists in either
/// database (watches stay with the database index, as in Redis).
pub fn before_swap(shard: &mut Shard, a: usize, b: usize) {
    // Clients blocked on keys of either database may find their keys there now.
    shard.blocked.signal_db(a);
    shard.blocked.signal_db(b);
    if shard.watches.is_empty() {
        return;
    }
    let now = shard.now_ms;
    for (db, other) in [(a, b), (b, a)] {
        for k in shard.watches.keys_in(db) {
            let exists = [db, other]
                .iter()
                .any(|&d| shard.dbs.get_mut(d).is_some_and(|d| tx::live(d, &k, now)));
            if exists {
                // The watchers only: `Shard::touch` would also journal the key's state,
                // read after the swap under the other database's number (a replay then
                // put the wrong value there; found by the random differential test).
                shard.watches.touch(db, &k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Bytes> {
        a.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    /// The rule on `name`'s table row.
    fn rule(name: &str) -> NoOp {
        super::super::table::table()
            .lookup(name.as_bytes())
            .map(|(_, s)| s.noop)
            .unwrap_or(NoOp::Never)
    }

    #[test]
    fn unchanged_replies() {
        let un = |name: &str, a: &[&str], r: Reply| unchanged(rule(name), &argv(a), &r, false);
        assert!(un("del", &["del", "k"], Reply::Int(0)));
        assert!(!un("del", &["del", "k"], Reply::Int(1)));
        assert!(!un("incr", &["incr", "k"], Reply::Int(0)));
        assert!(un("set", &["set", "k", "v", "NX"], Reply::Null));
        assert!(!un("set", &["set", "k", "v", "get"], Reply::Null));
        assert!(un("rename", &["rename", "k", "k"], Reply::Ok));
        assert!(!un("rename", &["rename", "k", "j"], Reply::Ok));
        assert!(un("getex", &["getex", "k"], Reply::bulk("v")));
        assert!(un("spop", &["spop", "k"], Reply::Null));
        assert!(un("renamenx", &["renamenx", "k", "j"], Reply::Int(0)));
        // Pops of a missing key, LINSERT without its pivot, LREM of nothing (found by the
        // random differential test: they made EXEC fail where Redis's runs).
        assert!(un("lpop", &["lpop", "k"], Reply::Null));
        assert!(un("rpop", &["rpop", "k", "2"], Reply::NullArray));
        assert!(!un("lpop", &["lpop", "k"], Reply::bulk("v")));
        assert!(un("zpopmin", &["zpopmin", "k"], Reply::Array(Vec::new())));
        assert!(un(
            "linsert",
            &["linsert", "k", "before", "p", "v"],
            Reply::Int(-1)
        ));
        assert!(!un(
            "linsert",
            &["linsert", "k", "before", "p", "v"],
            Reply::Int(2)
        ));
        assert!(un("lrem", &["lrem", "k", "0", "v"], Reply::Int(0)));
        assert!(un(
            "lmove",
            &["lmove", "k", "j", "left", "left"],
            Reply::Null
        ));
        assert!(un(
            "zremrangebyscore",
            &["zremrangebyscore", "k", "0", "1"],
            Reply::Int(0)
        ));
        // SETRANGE with an empty value; LTRIM as its handler says.
        assert!(un("setrange", &["setrange", "k", "3", ""], Reply::Int(0)));
        assert!(!un("setrange", &["setrange", "k", "3", "x"], Reply::Int(4)));
        assert!(!un("ltrim", &["ltrim", "k", "0", "1"], Reply::Ok));
        assert!(unchanged(
            rule("ltrim"),
            &argv(&["ltrim", "k", "0", "1"]),
            &Reply::Ok,
            true
        ));
        assert_eq!(copy_db(&argv(&["copy", "a", "b", "db", "3"])), Some(3));
        assert_eq!(copy_db(&argv(&["copy", "a", "b"])), None);
    }
}
