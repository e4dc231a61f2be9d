//! Atomic multi-shard commands. The scheme: a command that must look atomic takes a lock on
//! every shard it touches, one shard after another in shard-index order (a global order, so
//! two such commands can never wait for each other in a cycle), runs its steps on the locked
//! shards with `Control` jobs, and releases each shard in its last step. While a shard is
//! locked, every other job for it (`Work`: batches, fan-out parts, other lock requests) waits
//! in a FIFO, so no client can observe some keys written and others not. Single-shard
//! commands never take a lock and pay nothing for this beyond one branch.
//!
//! Runs on the coordinating shard; the steps run on their owners.

use bytes::Bytes;

use super::fanout::{run_part, Part};
use crate::commands::table::KeyFn;
use crate::engine::Engine;
use crate::engine::{Msg, ShardFn};
use crate::protocol::reply::Reply;
use crate::shard::value::Exported;

type Body = Box<dyn FnOnce(&mut Engine, u64) + Send>;

/// The transaction id a command nested in EXEC runs under: never a real lock holder.
const NESTED_TX: u64 = u64::MAX;

/// Locks `shards` (sorted and deduplicated here) in order, then runs `body` on this shard
/// with the transaction id. Every step run afterwards must release its shard with `unlock`.
pub fn lock_all(w: &mut Engine, mut shards: Vec<usize>, body: Body) {
    if w.tx.nested() {
        // Inside EXEC: the transaction already holds every shard this command touches.
        // Run at once, with an id that matches no lock (so its `unlock`s do nothing).
        body(w, NESTED_TX);
        return;
    }
    shards.sort_unstable();
    shards.dedup();
    let txid = w
        .shared
        .next_tx_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // A replica applying its master's command: the locked shards see its keys as the master
    // did, expired by the replica's clock or not (the master's DEL removes them).
    let master = w.from_master;
    lock_step(w, txid, shards, 0, master, body);
}

fn lock_step(w: &mut Engine, txid: u64, shards: Vec<usize>, i: usize, master: bool, body: Body) {
    let Some(&target) = shards.get(i) else {
        body(w, txid);
        return;
    };
    let origin = w.id;
    w.post(
        target,
        Msg::Work(Box::new(move |tw: &mut Engine| {
            tw.set_lock(Some(txid));
            if master {
                tw.set_master_view(true);
            }
            crate::shard::journal::begin_tx(
                &mut tw.shard,
                crate::shard::journal::TxTag {
                    id: txid,
                    parts: shards.len() as u32,
                },
            );
            tw.post(
                origin,
                Msg::Control(Box::new(move |ow: &mut Engine| {
                    lock_step(ow, txid, shards, i + 1, master, body)
                })),
            );
        })),
    );
}

/// Releases this shard if `txid` holds it.
pub fn unlock(w: &mut Engine, txid: u64) {
    if w.lock == Some(txid) {
        w.set_lock(None);
    }
}

/// Runs each part under the lock and releases each shard as its part finishes; `done` gets
/// the replies in `parts` order.
pub fn locked_parts(
    w: &mut Engine,
    parts: Vec<Part>,
    db: usize,
    resp: u8,
    f: KeyFn,
    done: impl FnOnce(&mut Engine, Vec<Reply>) + Send + 'static,
) {
    let shards = parts.iter().map(|p| p.shard).collect();
    lock_all(
        w,
        shards,
        Box::new(move |w, txid| {
            let jobs = parts
                .into_iter()
                .map(|p| {
                    let job: ShardFn<Reply> = Box::new(move |tw| {
                        let r = run_part(tw, f, db, resp, &p.argv);
                        unlock(tw, txid);
                        r
                    });
                    (p.shard, job)
                })
                .collect();
            w.fan_out(jobs, false, done);
        }),
    );
}

/// MSETNX across shards: under the lock, check every key; write all only if none exists.
pub fn msetnx(
    w: &mut Engine,
    parts: Vec<Part>,
    db: usize,
    resp: u8,
    f: KeyFn,
    finish: impl FnOnce(&mut Engine, Reply) + Send + 'static,
) {
    let shards = parts.iter().map(|p| p.shard).collect();
    lock_all(
        w,
        shards,
        Box::new(move |w, txid| {
            let checks = parts
                .iter()
                .map(|p| {
                    let keys: Vec<Bytes> = p.argv.iter().skip(1).step_by(2).cloned().collect();
                    let job: ShardFn<bool> = Box::new(move |tw| {
                        let now = tw.shard.now_ms;
                        let d = tw.shard.db_mut(db);
                        keys.iter().any(|k| d.exists(k, now))
                    });
                    (p.shard, job)
                })
                .collect();
            w.fan_out(checks, false, move |w, exists: Vec<bool>| {
                let any = exists.iter().any(|e| *e);
                let jobs = parts
                    .into_iter()
                    .map(|p| {
                        let job: ShardFn<Reply> = Box::new(move |tw| {
                            let r = if any {
                                Reply::Int(0)
                            } else {
                                run_part(tw, f, db, resp, &p.argv)
                            };
                            unlock(tw, txid);
                            r
                        });
                        (p.shard, job)
                    })
                    .collect();
                w.fan_out(jobs, false, move |w, replies| {
                    let r = match replies.iter().find(|r| r.is_error()) {
                        Some(e) => e.clone(),
                        None => Reply::Int(if any { 0 } else { 1 }),
                    };
                    finish(w, r)
                });
            });
        }),
    );
}

/// What a two-key move (RENAME, RENAMENX, COPY) found under the lock.
pub struct MoveCheck {
    pub src: Option<Exported>,
    pub dst_exists: bool,
}

/// Two-key atomic move across shards: reads `src` (in `src_db`) and checks `dst` (in
/// `dst_db`) under the lock, lets `decide` choose, then writes and releases both shards.
/// `decide` returns the reply and whether to write (`Some(remove_src)`). `src_read`: the
/// source is read as a read command's lookup (COPY: a hit or miss, a keymiss event).
#[allow(clippy::too_many_arguments)]
pub fn move_key(
    w: &mut Engine,
    src: Bytes,
    src_db: usize,
    src_read: bool,
    dst: Bytes,
    dst_db: usize,
    decide: impl FnOnce(&MoveCheck) -> (Reply, Option<bool>) + Send + 'static,
    finish: impl FnOnce(&mut Engine, Reply) + Send + 'static,
) {
    let (ss, ds) = (
        crate::shard::route::shard_of(&src, w.nshards),
        crate::shard::route::shard_of(&dst, w.nshards),
    );
    lock_all(
        w,
        vec![ss, ds],
        Box::new(move |w, txid| {
            let s2 = src.clone();
            let d2 = dst.clone();
            let jobs: Vec<(usize, ShardFn<MoveCheck>)> = vec![
                (
                    ss,
                    Box::new(move |tw| {
                        let now = tw.shard.now_ms;
                        let d = tw.shard.db_mut(src_db);
                        let src = d.export(&s2, now);
                        if src_read {
                            d.count_read(&s2, src.is_some(), true);
                        }
                        MoveCheck {
                            src,
                            dst_exists: false,
                        }
                    }),
                ),
                (
                    ds,
                    Box::new(move |tw| {
                        let now = tw.shard.now_ms;
                        let d = tw.shard.db_mut(dst_db);
                        MoveCheck {
                            src: None,
                            dst_exists: d.exists(&d2, now),
                        }
                    }),
                ),
            ];
            w.fan_out(jobs, false, move |w, checks: Vec<MoveCheck>| {
                let mut it = checks.into_iter();
                let (a, b) = (it.next(), it.next());
                let check = MoveCheck {
                    src: a.and_then(|c| c.src),
                    dst_exists: b.is_some_and(|c| c.dst_exists),
                };
                let (reply, write) = decide(&check);
                let (entry, dst_new) = (check.src, !check.dst_exists);
                let jobs: Vec<(usize, ShardFn<()>)> = vec![
                    (
                        ss,
                        Box::new(move |tw| {
                            if write == Some(true) {
                                tw.shard.touch(src_db, &src);
                                let d = tw.shard.db_mut(src_db);
                                d.remove(&src);
                                let ev = (crate::shard::notify::GENERIC, "rename_from");
                                crate::shard::notify::event(&mut tw.shard, src_db, ev, &src, false);
                            }
                            unlock(tw, txid);
                        }),
                    ),
                    (
                        ds,
                        Box::new(move |tw| {
                            if let (Some(_), Some(e)) = (write, entry) {
                                tw.shard.touch(dst_db, &dst);
                                let d = tw.shard.db_mut(dst_db);
                                d.remove(&dst);
                                d.import(&dst, e);
                                if dst_new {
                                    let ev = (crate::shard::notify::NEW, "new");
                                    crate::shard::notify::event(
                                        &mut tw.shard,
                                        dst_db,
                                        ev,
                                        &dst,
                                        false,
                                    );
                                }
                                let name = if write == Some(true) {
                                    "rename_to"
                                } else {
                                    "copy_to"
                                };
                                let ev = (crate::shard::notify::GENERIC, name);
                                crate::shard::notify::event(&mut tw.shard, dst_db, ev, &dst, false);
                            }
                            unlock(tw, txid);
                        }),
                    ),
                ];
                w.fan_out(jobs, false, move |w, _: Vec<()>| finish(w, reply));
            });
        }),
    );
}

/// One shard's write step of a [`gather`] command, run under the lock.
pub type WriteFn = Box<dyn FnOnce(&mut Engine) + Send>;

/// A multi-key read-compute-write across shards (set algebra, SMOVE): locks the owners of
/// `keys` and `extra` (the shards written), runs `read` on each key's owner (results in
/// `keys` order), lets `decide` compute the reply and the writes here, runs every write on
/// its shard, releases every shard, and hands the reply to `finish`. Nothing is visible to
/// other clients between the reads and the writes.
pub fn gather<T: Send + 'static>(
    w: &mut Engine,
    keys: Vec<Bytes>,
    extra: Vec<usize>,
    read: impl Fn(&mut Engine, &Bytes) -> T + Send + Clone + 'static,
    decide: impl FnOnce(Vec<T>) -> (Reply, Vec<(usize, WriteFn)>) + Send + 'static,
    finish: impl FnOnce(&mut Engine, Reply) + Send + 'static,
) {
    gather_noting(w, None, keys, extra, read, decide, finish);
}

/// The command a [`gather`] runs, for keyspace notifications: its database and arguments
/// (the row is looked up by name).
pub struct Noting {
    pub db: usize,
    pub argv: Vec<Bytes>,
}

/// [`gather`], with each shard's writes noted as the command's own on that shard: the
/// keys its writes touch get the row's events (`new`, the event or `del`), exactly as
/// when the command runs on one shard (the STORE commands, LMOVE).
pub fn gather_noting<T: Send + 'static>(
    w: &mut Engine,
    noting: Option<Noting>,
    keys: Vec<Bytes>,
    extra: Vec<usize>,
    read: impl Fn(&mut Engine, &Bytes) -> T + Send + Clone + 'static,
    decide: impl FnOnce(Vec<T>) -> (Reply, Vec<(usize, WriteFn)>) + Send + 'static,
    finish: impl FnOnce(&mut Engine, Reply) + Send + 'static,
) {
    let noting = noting.and_then(|n| {
        let spec = crate::commands::table::table()
            .lookup(n.argv.first()?)
            .map(|(_, s)| s)?;
        Some((spec, std::sync::Arc::new(n)))
    });
    let n = w.nshards;
    let owners: Vec<usize> = keys
        .iter()
        .map(|k| crate::shard::route::shard_of(k, n))
        .collect();
    let mut shards: Vec<usize> = owners.iter().copied().chain(extra).collect();
    shards.sort_unstable();
    shards.dedup();
    lock_all(
        w,
        shards.clone(),
        Box::new(move |w, txid| {
            let jobs: Vec<(usize, ShardFn<T>)> = keys
                .into_iter()
                .zip(owners)
                .map(|(k, s)| {
                    let read = read.clone();
                    let job: ShardFn<T> = Box::new(move |tw| read(tw, &k));
                    (s, job)
                })
                .collect();
            w.fan_out(jobs, false, move |w, results: Vec<T>| {
                let (reply, mut writes) = decide(results);
                let jobs: Vec<(usize, ShardFn<()>)> = shards
                    .into_iter()
                    .map(|s| {
                        let mine: Vec<WriteFn> = {
                            let (m, rest): (Vec<_>, Vec<_>) =
                                writes.drain(..).partition(|(ws, _)| *ws == s);
                            writes = rest;
                            m.into_iter().map(|(_, f)| f).collect()
                        };
                        let note = noting.clone().map(|(spec, n)| (spec, n, reply.clone()));
                        let job: ShardFn<()> = Box::new(move |tw| {
                            let note = note.filter(|_| tw.shard.notify != 0 && !mine.is_empty());
                            if let Some((spec, n, _)) = &note {
                                crate::shard::notify::before_command(
                                    &mut tw.shard,
                                    spec,
                                    n.db,
                                    &n.argv,
                                );
                            }
                            for f in mine {
                                f(tw);
                            }
                            if let Some((spec, n, reply)) = &note {
                                crate::shard::notify::after_command(
                                    &mut tw.shard,
                                    spec,
                                    n.db,
                                    &n.argv,
                                    reply,
                                );
                            }
                            unlock(tw, txid);
                        });
                        (s, job)
                    })
                    .collect();
                w.fan_out(jobs, false, move |w, _: Vec<()>| finish(w, reply));
            });
        }),
    );
}
