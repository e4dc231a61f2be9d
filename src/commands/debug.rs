//! DEBUG (Redis's debug.c): the subcommands tests and tools use (SLEEP, OBJECT, DIGEST,
//! DIGEST-VALUE, RELOAD, JOURNAL, POPULATE, ...). Runs on the connection's shard; the
//! keyspace-wide ones visit every shard.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;

use super::args::{arg, is, text};
use super::keys::all_shards;
use super::ConnCtx;
use crate::coord::lock;
use crate::engine::Engine;
use crate::engine::ShardFn;
use crate::error::{CmdError, CmdResult};
use crate::persist;
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;

const DEBUG_HELP: &[&str] = &[
    "DEBUG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DIGEST",
    "    Output a hex signature representing the current DB content.",
    "DIGEST-VALUE <key> [<key> ...]",
    "    Output a hex signature of the values of all the specified keys.",
    "RELOAD [NOSAVE]",
    "    Save the RDB on disk and reload it back to memory. With NOSAVE, load the",
    "    existing file without saving first.",
    "POPULATE <count> [<prefix>] [<size>]",
    "    Create <count> string keys named key:<num>. If <prefix> is specified then",
    "    it is used instead of the 'key' prefix. These are not propagated to",
    "    replicas. Each key is created on the shard that owns it.",
    "JOURNAL ON [<backlog-bytes>] | OFF | READ <shard> <offset> [<count>]",
    "    Turn every shard's write journal on or off, or read one shard's records.",
    "SLEEP <seconds>",
    "    Stop the server for <seconds>. Decimals allowed.",
    "HELP",
    "    Prints this help.",
];

pub fn debug(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let sub = arg(argv, 1)?;
    if is(sub, "help") && argv.len() == 2 {
        let mut lines = DEBUG_HELP.to_vec();
        let help = lines.split_off(lines.len().saturating_sub(2));
        lines.extend_from_slice(super::observe::DEBUG_HELP);
        lines.extend(help);
        return Ok(Reply::Array(
            lines.iter().map(|l| Reply::status(l)).collect(),
        ));
    }
    if let Some(r) = super::observe::debug(ctx, argv) {
        return r;
    }
    if is(sub, "reload") {
        let nosave = match argv.get(2..).unwrap_or_default() {
            [] => false,
            [a] if is(a, "nosave") => true,
            _ => return Err(CmdError::Syntax),
        };
        return debug_reload(ctx, nosave);
    }
    if is(sub, "digest") && argv.len() == 2 {
        return debug_digest(ctx);
    }
    if is(sub, "digest-value") {
        return debug_digest_value(ctx, argv.get(2..).unwrap_or_default().to_vec());
    }
    if is(sub, "journal") {
        return debug_journal(ctx, argv);
    }
    if is(sub, "populate") && (3..=5).contains(&argv.len()) {
        return debug_populate(ctx, argv);
    }
    if is(sub, "sleep") && argv.len() == 3 {
        let secs = argv.get(2).map_or(0.0, |a| strtod_prefix(a));
        // As Redis: whole microseconds, and nothing for a negative or zero time.
        let micros = (secs * 1e6) as i64;
        // Deliberately blocks this shard's thread, as DEBUG SLEEP blocks Redis's server:
        // tests use it to make the server unresponsive. The shard does not notice a
        // shutdown meanwhile; the process exits without it after the grace period
        // (`server::SHUTDOWN_GRACE`).
        if micros > 0 {
            std::thread::sleep(Duration::from_micros(micros as u64));
        }
        return Ok(Reply::Ok);
    }
    Err(CmdError::err(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try DEBUG HELP.",
        text(sub)
    )))
}

/// DEBUG POPULATE count [prefix] [size]: `prefix:N` = `value:N` for N below count (the
/// value cut or padded with zero bytes to `size` when given and not 0), keys that exist
/// left alone, as Redis 7.0. Every shard walks the numbers and creates the keys it owns.
/// Like Redis's, the keys are not propagated (no journal record, no notification).
fn debug_populate(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let positive = |a: &Bytes| -> Result<u64, CmdError> {
        parse_i64(a)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| CmdError::err("value is out of range, must be positive"))
    };
    let count = positive(arg(argv, 2)?)?;
    let prefix = argv.get(3).cloned().unwrap_or(Bytes::from_static(b"key"));
    let size = match argv.get(4) {
        Some(a) => positive(a)? as usize,
        None => 0,
    };
    let db = ctx.client().db;
    let ticket = ctx.defer();
    all_shards(
        ctx.eng(),
        move |tw: &mut Engine| {
            let (me, n, now) = (tw.id, tw.nshards, tw.shard.now_ms);
            let d = tw.shard.db_mut(db);
            let mut key = Vec::with_capacity(prefix.len() + 21);
            let mut val = Vec::with_capacity(size.max(26));
            for i in 0..count {
                key.clear();
                key.extend_from_slice(&prefix);
                let _ = write!(ByteWriter(&mut key), ":{i}");
                if crate::shard::route::shard_of(&key, n) != me || d.exists(&key, now) {
                    continue;
                }
                val.clear();
                let _ = write!(ByteWriter(&mut val), "value:{i}");
                if size > 0 {
                    val.resize(size, 0);
                }
                d.set(&key, &val, 0, now);
            }
        },
        move |w, _: Vec<()>| w.complete(ticket, Reply::Ok),
    );
    Ok(Reply::Ok)
}

/// `fmt::Write` into a byte vector (numbers formatted without a `String`).
struct ByteWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// DEBUG JOURNAL: switch the write journal on every shard, or read one shard's records as
/// `[first, next, [[offset, tx id, tx parts, db, command], ...]]` (tests replay them).
fn debug_journal(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    use crate::shard::journal;
    let what = arg(argv, 2)?;
    let num = |i: usize| -> Result<u64, CmdError> {
        argv.get(i)
            .and_then(|a| parse_i64(a))
            .and_then(|n| u64::try_from(n).ok())
            .ok_or(CmdError::NotInteger)
    };
    if is(what, "on") || is(what, "off") {
        let on = is(what, "on");
        let cap = match argv.len() {
            3 => journal::DEFAULT_BACKLOG,
            4 => num(3)? as usize,
            _ => return Err(CmdError::Syntax),
        };
        let ticket = ctx.defer();
        all_shards(
            ctx.eng(),
            move |tw: &mut Engine| {
                if on {
                    journal::enable(&mut tw.shard, cap);
                    if let Some(j) = tw.shard.journal.as_mut() {
                        j.set_cap(cap);
                    }
                } else {
                    journal::disable(&mut tw.shard);
                }
            },
            move |w, _: Vec<()>| w.complete(ticket, Reply::Ok),
        );
        return Ok(Reply::Ok);
    }
    if !is(what, "read") || !(5..=6).contains(&argv.len()) {
        return Err(CmdError::Syntax);
    }
    let shard = num(3)? as usize;
    let from = num(4)?;
    let max = if argv.len() == 6 {
        num(5)? as usize
    } else {
        1000
    };
    if shard >= ctx.eng().nshards {
        return Err(CmdError::err("no such shard"));
    }
    let ticket = ctx.defer();
    let job: ShardFn<Reply> = Box::new(move |tw: &mut Engine| {
        journal::flush(&mut tw.shard);
        let Some(j) = tw.shard.journal.as_mut() else {
            return Reply::Error("ERR the journal is off".into());
        };
        j.seal();
        let int = |n: u64| Reply::Int(n as i64);
        match j.read(from, max) {
            Ok(recs) => Reply::Array(vec![
                int(j.first()),
                int(j.next()),
                Reply::Array(
                    recs.iter()
                        .map(|r| {
                            Reply::Array(vec![
                                int(r.offset),
                                int(r.tx.map_or(0, |t| t.id)),
                                int(r.tx.map_or(0, |t| t.parts as u64)),
                                int(r.db as u64),
                                Reply::Bulk(r.cmd.clone()),
                            ])
                        })
                        .collect(),
                ),
            ]),
            Err(e) => Reply::Error(format!(
                "ERR offset out of range: the backlog holds {} to {}",
                e.first, e.next
            )),
        }
    });
    ctx.eng()
        .fan_out(vec![(shard, job)], false, move |w, mut v: Vec<Reply>| {
            w.complete(ticket, v.pop().unwrap_or(Reply::Null))
        });
    Ok(Reply::Ok)
}

/// DEBUG DIGEST: every shard digests its keys per database (Redis 7.0's algorithm,
/// `shard::digest`); the parts combine here into Redis's 40 hex digits.
fn debug_digest(ctx: &mut ConnCtx) -> CmdResult {
    use crate::shard::digest;
    let ticket = ctx.defer();
    super::keys::all_shards(
        ctx.eng(),
        |tw: &mut Engine| {
            let now = tw.shard.now_ms;
            tw.shard
                .dbs
                .iter()
                .map(|d| {
                    let mut part = digest::Part::default();
                    d.for_each_value(now, |k, v, exp| {
                        part.add(&digest::key_digest(k, &v, exp != 0))
                    });
                    part
                })
                .collect::<Vec<_>>()
        },
        move |w, parts: Vec<Vec<digest::Part>>| {
            let d = digest::combine(&parts);
            w.complete(ticket, Reply::Status(Bytes::from(digest::hex(&d))));
        },
    );
    Ok(Reply::Ok)
}

/// DEBUG DIGEST-VALUE key...: each key's value digest (zeros for a missing key), from the
/// shard that owns it, in argument order.
fn debug_digest_value(ctx: &mut ConnCtx, keys: Vec<Bytes>) -> CmdResult {
    use crate::shard::digest;
    let db = ctx.client().db;
    let ticket = ctx.defer();
    let n = keys.len();
    super::keys::all_shards(
        ctx.eng(),
        move |tw: &mut Engine| {
            let now = tw.shard.now_ms;
            let mine: std::collections::HashMap<&[u8], usize> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| crate::shard::route::shard_of(k, tw.nshards) == tw.id)
                .map(|(i, k)| (k.as_ref(), i))
                .collect();
            let mut out = Vec::new();
            if let Some(d) = tw.shard.dbs.get(db) {
                if !mine.is_empty() {
                    d.for_each_value(now, |k, v, exp| {
                        if let Some(&i) = mine.get(k) {
                            out.push((i, digest::value_digest(Some((v, exp != 0)))));
                        }
                    });
                }
            }
            out
        },
        move |w, parts: Vec<Vec<(usize, digest::Digest)>>| {
            let mut all = vec![[0u8; 20]; n];
            for (i, d) in parts.into_iter().flatten() {
                if let Some(slot) = all.get_mut(i) {
                    *slot = d;
                }
            }
            let reply = all
                .iter()
                .map(|d| Reply::Status(Bytes::from(digest::hex(d))))
                .collect();
            w.complete(ticket, Reply::Array(reply));
        },
    );
    Ok(Reply::Ok)
}

/// DEBUG RELOAD: under a lock on every shard, save (unless NOSAVE), read the file back and
/// replace every shard's keys with the file's; the shards are released when their keys are
/// in. A file that does not load leaves the data as it was (Redis would have emptied it).
fn debug_reload(ctx: &mut ConnCtx, nosave: bool) -> CmdResult {
    super::persistence::begin_save(ctx)?;
    let ticket = ctx.defer();
    persist::save::snapshot(ctx.eng(), true, move |w, parts, txid| {
        let saved = if nosave {
            Ok(())
        } else {
            persist::save::save_parts(&w.shared, &parts, false)
        };
        w.shared.persist.saving.store(false, Ordering::SeqCst);
        drop(parts);
        let cfg = &w.shared.cfg;
        let loaded = saved.and_then(|()| {
            let data = std::fs::read(w.shared.tun.dbfilename())
                .map_err(|e| format!("Error reading the RDB file: {e}"))?;
            let crc = w.shared.tun.rdbchecksum.load(Ordering::Relaxed);
            let split = persist::load::split(&data, w.nshards, cfg.databases, crc)?;
            persist::install_functions(&split.summary.functions)?;
            Ok(split)
        });
        let split = match loaded {
            Ok(s) => s,
            Err(e) => {
                crate::log::warning(&e);
                persist::save::release(w, txid, move |w| {
                    w.complete(
                        ticket,
                        Reply::Error(
                            "ERR Error trying to load the RDB dump, check server logs.".into(),
                        ),
                    )
                });
                return;
            }
        };
        let jobs: Vec<(usize, ShardFn<()>)> = split
            .shards
            .into_iter()
            .enumerate()
            .map(|(s, keys)| {
                let job: ShardFn<()> = Box::new(move |tw| {
                    for db in 0..tw.shard.dbs.len() {
                        super::watch::before_flush(&mut tw.shard, db);
                    }
                    tw.shard.dbs.iter_mut().for_each(|d| d.clear());
                    persist::load::apply(&mut tw.shard, keys);
                    lock::unlock(tw, txid);
                });
                (s, job)
            })
            .collect();
        w.fan_out(jobs, false, move |w, _: Vec<()>| {
            crate::log::notice("DB reloaded by DEBUG RELOAD");
            w.complete(ticket, Reply::Ok)
        });
    });
    Ok(Reply::Ok)
}

/// The number at the start of `s` as C's strtod reads it for DEBUG SLEEP: leading spaces
/// skipped, then the longest decimal prefix ("0.5s" is 0.5); 0 when there is none. Only
/// decimal forms: no hex, inf or nan (a sleep of those makes no sense).
fn strtod_prefix(s: &[u8]) -> f64 {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let rest = s.get(start..).unwrap_or_default();
    let len = rest
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        .count();
    (1..=len)
        .rev()
        .find_map(|n| {
            let t = std::str::from_utf8(rest.get(..n)?).ok()?;
            t.parse::<f64>().ok().filter(|v| v.is_finite())
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_sleep_reads_its_time_as_strtod() {
        for (text, want) in [
            ("1.5", 1.5),
            ("  0.25", 0.25),
            ("0.5s", 0.5),
            ("2e-1x", 0.2),
            ("1e", 1.0),
            ("-3", -3.0),
            ("abc", 0.0),
            ("", 0.0),
            ("inf", 0.0),
            ("0x10", 0.0),
        ] {
            assert_eq!(strtod_prefix(text.as_bytes()), want, "{text:?}");
        }
    }
}
