//! Split a multi-key command (DEL, EXISTS, MGET, MSET...) into one part per owner shard, run
//! the parts, and merge the replies in argument order. Atomic commands (MSET, MSETNX, MGET)
//! go through `multi::locked`, so their parts become visible together.

use bytes::Bytes;

use super::lock;
use crate::commands::table::{table, KeyFn, Merge, SplitSpec};
use crate::commands::{self, ConnCtx, KeyCtx};
use crate::engine::Engine;
use crate::engine::ShardFn;
use crate::protocol::reply::Reply;
use crate::shard::route::shard_of;

/// One shard's share of a split command.
pub struct Part {
    pub shard: usize,
    /// `[name, key, (value), key, (value), ...]` for this shard.
    pub argv: Vec<Bytes>,
    /// Position (in key order) of each key of this part in the original command.
    pub order: Vec<usize>,
}

/// Groups the keys of `argv` by owner shard, in first-seen shard order.
pub fn split(argv: &[Bytes], step: usize, nshards: usize) -> Vec<Part> {
    let mut parts: Vec<Part> = Vec::new();
    let name = argv.first().cloned().unwrap_or_default();
    let mut i = 1;
    let mut n = 0;
    while i + step <= argv.len() {
        let s = shard_of(&argv[i], nshards);
        let part = match parts.iter().position(|p| p.shard == s) {
            Some(p) => &mut parts[p],
            None => {
                parts.push(Part {
                    shard: s,
                    argv: vec![name.clone()],
                    order: Vec::new(),
                });
                let last = parts.len() - 1;
                &mut parts[last]
            }
        };
        part.argv.extend_from_slice(&argv[i..i + step]);
        part.order.push(n);
        i += step;
        n += 1;
    }
    parts
}

/// Runs a handler on this shard without touching statistics (parts of one command).
pub fn run_part(w: &mut Engine, f: KeyFn, db: usize, resp: u8, argv: &[Bytes]) -> Reply {
    if w.shard.journal.is_some() {
        let name = argv.first().map(|n| n.as_ref()).unwrap_or_default();
        if let Some((_, spec)) = table().lookup(name) {
            crate::shard::journal::before_command(&mut w.shard, spec, argv);
        }
    }
    if w.shard.notify != 0 {
        let name = argv.first().map(|n| n.as_ref()).unwrap_or_default();
        if let Some((_, spec)) = table().lookup(name) {
            crate::shard::notify::before_command(&mut w.shard, spec, db, argv);
        }
    }
    let reply = match f(
        &mut KeyCtx {
            shard: &mut w.shard,
            db,
            resp,
            out: None,
        },
        argv,
    ) {
        Ok(r) => r,
        Err(e) => e.into_reply(),
    };
    if !w.shard.watches.is_empty()
        || w.shard.journal.is_some()
        || w.shard.notify != 0
        || w.shard.tracking.is_some()
    {
        let name = argv.first().map(|n| n.as_ref()).unwrap_or_default();
        if let Some((_, spec)) = table().lookup(name) {
            commands::watch::after_write(&mut w.shard, spec, db, argv, &reply);
            crate::shard::journal::after_command(&mut w.shard, spec, db, argv, &reply);
        }
    }
    if w.shard.notify != 0 {
        let name = argv.first().map(|n| n.as_ref()).unwrap_or_default();
        if let Some((_, spec)) = table().lookup(name) {
            crate::shard::notify::after_command(&mut w.shard, spec, db, argv, &reply);
        }
    }
    reply
}

/// Merges per-part replies (in `parts` order) into the command's reply.
pub fn merge(merge: Merge, parts_order: &[Vec<usize>], replies: Vec<Reply>, nkeys: usize) -> Reply {
    if let Some(e) = replies.iter().find(|r| r.is_error()) {
        return e.clone();
    }
    match merge {
        Merge::Sum => Reply::Int(
            replies
                .iter()
                .map(|r| if let Reply::Int(i) = r { *i } else { 0 })
                .sum(),
        ),
        Merge::Ok => Reply::Ok,
        Merge::InOrder => {
            let mut out = vec![Reply::Null; nkeys];
            for (order, r) in parts_order.iter().zip(replies) {
                if let Reply::Array(items) = r {
                    for (pos, item) in order.iter().zip(items) {
                        if let Some(slot) = out.get_mut(*pos) {
                            *slot = item;
                        }
                    }
                }
            }
            Reply::Array(out)
        }
    }
}

/// Entry point from the dispatcher for a multi-key command whose keys span shards.
pub fn multi_key(ctx: &mut ConnCtx, id: usize, m: SplitSpec, argv: Vec<Bytes>) {
    let (db, resp) = {
        let c = ctx.client();
        (c.db, c.resp)
    };
    let ticket = ctx.defer();
    let w = ctx.eng();
    let parts = split(&argv, m.step, w.nshards);
    let nkeys = (argv.len().saturating_sub(1)) / m.step.max(1);
    let orders: Vec<Vec<usize>> = parts.iter().map(|p| p.order.clone()).collect();
    let finish = move |w: &mut Engine, reply: Reply| {
        let reply = commands::finish(&mut w.shard, id, Ok(reply));
        w.complete(ticket, reply);
    };
    if !m.atomic {
        let jobs = parts
            .into_iter()
            .map(|p| {
                let f = m.sub;
                let job: ShardFn<Reply> = Box::new(move |tw| run_part(tw, f, db, resp, &p.argv));
                (p.shard, job)
            })
            .collect();
        w.fan_out(jobs, true, move |w, replies| {
            let r = merge(m.merge, &orders, replies, nkeys);
            finish(w, r)
        });
        return;
    }
    if m.nx {
        lock::msetnx(w, parts, db, resp, m.sub, finish);
    } else {
        lock::locked_parts(w, parts, db, resp, m.sub, move |w, replies| {
            let r = merge(m.merge, &orders, replies, nkeys);
            finish(w, r)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_groups_by_shard_and_keeps_order() {
        let argv: Vec<Bytes> = ["MSET", "a", "1", "b", "2", "c", "3", "{a}x", "4"]
            .iter()
            .map(|s| Bytes::from(s.to_string()))
            .collect();
        let parts = split(&argv, 2, 4);
        let total: usize = parts.iter().map(|p| p.order.len()).sum();
        assert_eq!(total, 4);
        let pa = parts.iter().find(|p| p.order.contains(&0)).unwrap();
        assert!(pa.order.contains(&3), "hash tag keeps {{a}}x with a");
        for p in &parts {
            assert_eq!(p.argv.len(), 1 + 2 * p.order.len());
            assert_eq!(&p.argv[0][..], b"MSET");
        }
        let merged = merge(
            Merge::InOrder,
            &[vec![1, 0], vec![2]],
            vec![
                Reply::Array(vec![Reply::Int(1), Reply::Int(0)]),
                Reply::Array(vec![Reply::Int(2)]),
            ],
            3,
        );
        assert_eq!(
            merged,
            Reply::Array(vec![Reply::Int(0), Reply::Int(1), Reply::Int(2)])
        );
    }
}
