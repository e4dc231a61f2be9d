//! Server commands (Redis's server.c / config.c / db.c parts): INFO, DBSIZE, FLUSHDB,
//! FLUSHALL, TIME, CONFIG, COMMAND, SHUTDOWN, DEBUG, SWAPDB. They run on the connection's
//! shard and fan out to every shard where the answer spans the keyspace.

use bytes::Bytes;

use super::args::{arg, is, text};
use super::keys::all_shards;
use super::table::{
    CommandSpec, Exec, KeySpec, ADMIN, FAST, LOADING, NOSCRIPT, READONLY, STALE, WRITE,
};
use super::ConnCtx;
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::server::worker::Worker;

const SV: &str = "server";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("dbsize", 1, READONLY | FAST, KeySpec::none(), Exec::Conn(dbsize))
        .doc(SV, "1.0.0", "Returns the number of keys in the database.", ""),
    CommandSpec::new("flushdb", -1, WRITE, KeySpec::none(), Exec::Conn(flushdb))
        .doc(SV, "1.0.0", "Removes all keys from the current database.", "[ASYNC | SYNC]"),
    CommandSpec::new("flushall", -1, WRITE, KeySpec::none(), Exec::Conn(flushall))
        .doc(SV, "1.0.0", "Removes all keys from all databases.", "[ASYNC | SYNC]"),
    CommandSpec::new("config", -2, ADMIN | NOSCRIPT | LOADING | STALE, KeySpec::none(), Exec::Conn(config))
        .doc(SV, "2.0.0", "A container for server configuration commands.", "subcommand [argument ...]")
        .subs(&[
            ("get", -3, "parameter [parameter ...]"),
            ("set", -4, "parameter value [parameter value ...]"),
            ("resetstat", 2, ""),
            ("help", 2, ""),
        ]),
    CommandSpec::new("shutdown", -1, ADMIN | NOSCRIPT | LOADING | STALE, KeySpec::none(), Exec::Conn(shutdown))
        .doc(SV, "1.0.0", "Synchronously saves the database(s) to disk and shuts down the Redis server.",
             "[NOSAVE | SAVE] [NOW] [FORCE] [ABORT]"),
];

fn dbsize(ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    let db = ctx.client().db;
    let ticket = ctx.defer();
    all_shards(
        ctx.w,
        move |tw: &mut Worker| tw.shard.dbs.get(db).map_or(0, |d| d.len()),
        move |w, counts: Vec<usize>| {
            w.complete(ticket, Reply::Int(counts.iter().sum::<usize>() as i64))
        },
    );
    Ok(Reply::Ok)
}

fn flush_mode(argv: &[Bytes]) -> Result<(), CmdError> {
    match argv.len() {
        1 => Ok(()),
        2 if is(&argv[1], "async") || is(&argv[1], "sync") => Ok(()),
        _ => Err(CmdError::Syntax),
    }
}

fn flushdb(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    flush_mode(argv)?;
    let db = ctx.client().db;
    let ticket = ctx.defer();
    all_shards(
        ctx.w,
        move |tw: &mut Worker| {
            if let Some(d) = tw.shard.dbs.get_mut(db) {
                d.clear();
            }
        },
        move |w, _: Vec<()>| w.complete(ticket, Reply::Ok),
    );
    Ok(Reply::Ok)
}

fn flushall(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    flush_mode(argv)?;
    let ticket = ctx.defer();
    all_shards(
        ctx.w,
        |tw: &mut Worker| tw.shard.dbs.iter_mut().for_each(|d| d.clear()),
        move |w, _: Vec<()>| w.complete(ticket, Reply::Ok),
    );
    Ok(Reply::Ok)
}

fn config(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let sub = text(arg(argv, 1)?).to_lowercase();
    match sub.as_str() {
        "get" if argv.len() >= 3 => {
            let all = ctx.w.shared.tun.all();
            let mut out = Vec::new();
            for (k, v) in all {
                if argv[2..]
                    .iter()
                    .any(|p| super::args::glob_match(p, k.as_bytes(), true))
                {
                    out.push((Reply::bulk(k), Reply::bulk(v)));
                }
            }
            Ok(Reply::Map(out))
        }
        "get" => Err(CmdError::WrongArity("config|get".into())),
        _ => Err(CmdError::UnknownSubcommand {
            sub: text(&argv[1]),
            cmd: "config".into(),
        }),
    }
}

fn shutdown(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    for a in argv.iter().skip(1) {
        if !(is(a, "nosave") || is(a, "save") || is(a, "now") || is(a, "force") || is(a, "abort")) {
            return Err(CmdError::Syntax);
        }
    }
    if argv.iter().skip(1).any(|a| is(a, "abort")) {
        return Err(CmdError::err("No shutdown in progress."));
    }
    crate::log::notice("User requested shutdown...");
    ctx.w.request_shutdown();
    // Redis closes the connection without a reply when the shutdown goes ahead.
    ctx.defer();
    Ok(Reply::Ok)
}
