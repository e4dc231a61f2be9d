//! Server commands (Redis's server.c / db.c parts): DBSIZE, FLUSHDB, FLUSHALL, TIME,
//! SHUTDOWN, SWAPDB, and the table rows of CONFIG (`config`), COMMAND (`command`), DEBUG
//! (`debug`) and INFO (`info`). They run on the connection's shard and fan out to every
//! shard where the answer spans the keyspace (SWAPDB under a lock on every shard).

use bytes::Bytes;

use super::args::is;
use super::command::command;
use super::config::config;
use super::keys::all_shards;
use super::table::{
    table, CommandSpec, Exec, KeySpec, ADMIN, CAT_CONNECTION, CAT_DANGEROUS, CAT_KEYSPACE, FAST,
    LOADING, NOSCRIPT, READONLY, STALE, WRITE,
};
use super::ConnCtx;
use crate::coord::lock;
use crate::engine::Engine;
use crate::engine::ShardFn;
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;

const SV: &str = "server";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("dbsize", 1, READONLY | FAST, KeySpec::none(), Exec::Conn(dbsize))
        .acl(CAT_KEYSPACE)
        .doc(SV, "1.0.0", "Returns the number of keys in the database.", ""),
    CommandSpec::new("flushdb", -1, WRITE, KeySpec::none(), Exec::Conn(flushdb))
        .acl(CAT_KEYSPACE | CAT_DANGEROUS)
        .doc(SV, "1.0.0", "Removes all keys from the current database.", "[ASYNC | SYNC]"),
    CommandSpec::new("flushall", -1, WRITE, KeySpec::none(), Exec::Conn(flushall))
        .acl(CAT_KEYSPACE | CAT_DANGEROUS)
        .doc(SV, "1.0.0", "Removes all keys from all databases.", "[ASYNC | SYNC]"),
    CommandSpec::new("config", -2, ADMIN | NOSCRIPT | LOADING | STALE, KeySpec::none(), Exec::Conn(config))
        .sub_flags(&[
            ("get", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("set", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("resetstat", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("rewrite", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("help", LOADING | STALE, 0),
        ])
        .doc(SV, "2.0.0", "A container for server configuration commands.", "subcommand [argument ...]")
        .subs(&[
            ("get", -3, "parameter [parameter ...]"),
            ("set", -4, "parameter value [parameter value ...]"),
            ("resetstat", 2, ""),
            ("rewrite", 2, ""),
            ("help", 2, ""),
        ]),
    CommandSpec::new("command", -1, LOADING | STALE, KeySpec::none(), Exec::Conn(command))
        .sub_flags(&[
            ("count", LOADING | STALE, CAT_CONNECTION),
            ("list", LOADING | STALE, CAT_CONNECTION),
            ("info", LOADING | STALE, CAT_CONNECTION),
            ("docs", LOADING | STALE, CAT_CONNECTION),
            ("getkeys", LOADING | STALE, CAT_CONNECTION),
            ("help", LOADING | STALE, CAT_CONNECTION),
        ])
        .acl(CAT_CONNECTION)
        .shows(LOADING | STALE)
        .doc(SV, "2.8.13", "Returns detailed information about all commands.", "subcommand [argument ...]")
        .subs(&[
            ("count", 2, ""),
            ("list", -2, "[FILTERBY <MODULE module-name | ACLCAT category | PATTERN pattern>]"),
            ("info", -2, "[command-name [command-name ...]]"),
            ("docs", -2, "[command-name [command-name ...]]"),
            ("getkeys", -4, "command [arg [arg ...]]"),
            ("help", 2, ""),
        ]),
    CommandSpec::new("time", 1, LOADING | STALE | FAST, KeySpec::none(), Exec::Conn(time))
        .doc(SV, "2.6.0", "Returns the server time.", ""),
    CommandSpec::new("swapdb", 3, WRITE | FAST, KeySpec::none(), Exec::Conn(swapdb))
        .acl(CAT_KEYSPACE | CAT_DANGEROUS)
        .doc(SV, "4.0.0", "Swaps two Redis databases.", "index1 index2"),
];

// ----- DBSIZE / FLUSHDB / FLUSHALL ----------------------------------------------------------

fn dbsize(ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    let db = ctx.client().db;
    let ticket = ctx.defer();
    all_shards(
        ctx.eng(),
        move |tw: &mut Engine| tw.shard.dbs.get(db).map_or(0, |d| d.len()),
        move |w, counts: Vec<usize>| {
            w.complete(ticket, Reply::Int(counts.iter().sum::<usize>() as i64))
        },
    );
    Ok(Reply::Ok)
}

/// Whether a FLUSHDB/FLUSHALL frees in the background: `ASYNC`, or neither word (the
/// default, `lazyfree-lazy-user-flush no`, is synchronous).
fn flush_mode(argv: &[Bytes]) -> Result<bool, CmdError> {
    match argv {
        // Without a mode, `lazyfree-lazy-user-flush` decides (Redis 6.2+).
        [_] => Ok(crate::shard::lazyfree::user_flush()),
        [_, m] if is(m, "async") => Ok(true),
        [_, m] if is(m, "sync") => Ok(false),
        _ => Err(CmdError::Syntax),
    }
}

fn flushdb(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let lazy = flush_mode(argv)?;
    let db = ctx.client().db;
    let ticket = ctx.defer();
    every_shard_locked(
        ctx.eng(),
        move |tw: &mut Engine| {
            super::watch::before_flush(&mut tw.shard, db);
            if let Some(d) = tw.shard.dbs.get_mut(db) {
                if lazy {
                    d.clear_async();
                } else {
                    d.clear();
                }
            }
            crate::shard::journal::record(&mut tw.shard, db, &[b"FLUSHDB"]);
        },
        move |w| w.complete(ticket, Reply::Ok),
    );
    Ok(Reply::Ok)
}

fn flushall(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let lazy = flush_mode(argv)?;
    let ticket = ctx.defer();
    every_shard_locked(
        ctx.eng(),
        move |tw: &mut Engine| {
            for db in 0..tw.shard.dbs.len() {
                super::watch::before_flush(&mut tw.shard, db);
            }
            if lazy {
                tw.shard.dbs.iter_mut().for_each(|d| d.clear_async())
            } else {
                tw.shard.dbs.iter_mut().for_each(|d| d.clear())
            }
            crate::shard::journal::record(&mut tw.shard, 0, &[b"FLUSHALL"]);
        },
        move |w| w.complete(ticket, Reply::Ok),
    );
    Ok(Reply::Ok)
}

/// Runs `f` on every shard under one multi-shard lock (FLUSHDB, FLUSHALL, SWAPDB): no client
/// sees some shards done and others not, and the journal tags every part with one id.
fn every_shard_locked(
    w: &mut Engine,
    f: impl Fn(&mut Engine) + Send + Clone + 'static,
    done: impl FnOnce(&mut Engine) + Send + 'static,
) {
    let shards = (0..w.nshards).collect();
    lock::lock_all(
        w,
        shards,
        Box::new(move |w: &mut Engine, txid| {
            let jobs = (0..w.nshards)
                .map(|s| {
                    let f = f.clone();
                    let job: ShardFn<()> = Box::new(move |tw: &mut Engine| {
                        f(tw);
                        lock::unlock(tw, txid);
                    });
                    (s, job)
                })
                .collect();
            w.fan_out(jobs, false, move |w, _: Vec<()>| done(w));
        }),
    );
}

// ----- subcommand helpers -------------------------------------------------------------------

/// Looks up `argv[1]` among the container's declared subcommands and checks its arity,
/// with Redis's errors (`unknown subcommand`, `wrong number of arguments for 'config|get'`).
pub fn subcommand(container: &str, argv: &[Bytes]) -> Result<String, CmdError> {
    let spec = table().row(container).ok_or(CmdError::Syntax)?;
    super::check_subcommand(spec, argv)
}

// ----- TIME / DEBUG / SWAPDB ----------------------------------------------------------------

fn time(_ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Ok(Reply::Array(vec![
        Reply::bulk(now.as_secs().to_string()),
        Reply::bulk(now.subsec_micros().to_string()),
    ]))
}

/// SWAPDB a b: locks every shard (in shard order, see `coord::lock`), swaps the two
/// databases on each under the lock, and unlocks; no client sees a half-swapped keyspace.
fn swapdb(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let parse = |i: usize, which: &str| {
        argv.get(i)
            .and_then(|a| parse_i64(a))
            .ok_or_else(|| CmdError::err(format!("invalid {which} DB index")))
    };
    let (a, b) = (parse(1, "first")?, parse(2, "second")?);
    let n = ctx.eng().shared.cfg.databases as i64;
    if !(0..n).contains(&a) || !(0..n).contains(&b) {
        return Err(CmdError::DbIndex);
    }
    let (a, b) = (a as usize, b as usize);
    // A database swapped with itself: nothing changes, and WATCHers of its keys keep their
    // transactions (Redis's dbSwapDatabases returns at once).
    if a == b {
        return Ok(Reply::Ok);
    }
    let ticket = ctx.defer();
    every_shard_locked(
        ctx.eng(),
        move |tw: &mut Engine| {
            let len = tw.shard.dbs.len();
            if a < len && b < len {
                super::watch::before_swap(&mut tw.shard, a, b);
                tw.shard.swap_dbs(a, b);
                let (sa, sb) = (a.to_string(), b.to_string());
                crate::shard::journal::record(
                    &mut tw.shard,
                    0,
                    &[b"SWAPDB", sa.as_bytes(), sb.as_bytes()],
                );
            }
        },
        move |w| w.complete(ticket, Reply::Ok),
    );
    Ok(Reply::Ok)
}
