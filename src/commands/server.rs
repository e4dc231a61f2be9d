//! Server commands (Redis's server.c / config.c / db.c / debug.c parts): INFO, DBSIZE,
//! FLUSHDB, FLUSHALL, TIME, CONFIG, COMMAND, SHUTDOWN, DEBUG, SWAPDB. They run on the
//! connection's shard and fan out to every shard where the answer spans the keyspace
//! (INFO's counters, CONFIG RESETSTAT, SWAPDB under a lock on every shard).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;

use super::args::{arg, glob_match, is, text};
use super::docs;
use super::keys::all_shards;
use super::table::{
    table, CommandSpec, Exec, KeySpec, ADMIN, FAST, LOADING, NOSCRIPT, PROTECTED, READONLY, STALE,
    WRITE,
};
use super::ConnCtx;
use crate::coord::multi;
use crate::engine::Engine;
use crate::engine::NetStats;
use crate::engine::ShardFn;
use crate::error::{CmdError, CmdResult};
use crate::persist;
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::runtime::{alloc, sys};
use crate::server::worker::Worker;
use crate::shard::CmdStat;

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
            ("rewrite", 2, ""),
            ("help", 2, ""),
        ]),
    CommandSpec::new("shutdown", -1, ADMIN | NOSCRIPT | LOADING | STALE, KeySpec::none(), Exec::Conn(shutdown))
        .doc(SV, "1.0.0", "Synchronously saves the database(s) to disk and shuts down the Redis server.",
             "[NOSAVE | SAVE] [NOW] [FORCE] [ABORT]"),
    CommandSpec::new("info", -1, LOADING | STALE, KeySpec::none(), Exec::Conn(info))
        .doc(SV, "1.0.0", "Returns information and statistics about the server.", "[section [section ...]]"),
    CommandSpec::new("command", -1, LOADING | STALE, KeySpec::none(), Exec::Conn(command))
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
    CommandSpec::new("debug", -2, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, KeySpec::none(), Exec::Conn(debug))
        .doc(SV, "1.0.0", "A container for debugging commands.", "subcommand [argument ...]"),
    CommandSpec::new("swapdb", 3, WRITE | FAST, KeySpec::none(), Exec::Conn(swapdb))
        .doc(SV, "4.0.0", "Swaps two Redis databases.", "index1 index2"),
];

// ----- DBSIZE / FLUSHDB / FLUSHALL ----------------------------------------------------------

fn dbsize(ctx: &mut ConnCtx, _argv: &[Bytes]) -> CmdResult {
    let db = ctx.client().db;
    let ticket = ctx.defer();
    all_shards(
        &mut ctx.w.eng,
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
        [_] => Ok(false),
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
        &mut ctx.w.eng,
        move |tw: &mut Engine| {
            super::multi::before_flush(&mut tw.shard, db);
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
        &mut ctx.w.eng,
        move |tw: &mut Engine| {
            for db in 0..tw.shard.dbs.len() {
                super::multi::before_flush(&mut tw.shard, db);
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
    multi::lock_all(
        w,
        shards,
        Box::new(move |w: &mut Engine, txid| {
            let jobs = (0..w.nshards)
                .map(|s| {
                    let f = f.clone();
                    let job: ShardFn<()> = Box::new(move |tw: &mut Engine| {
                        f(tw);
                        multi::unlock(tw, txid);
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
pub(super) fn subcommand(container: &str, argv: &[Bytes]) -> Result<String, CmdError> {
    let spec = table()
        .lookup(container.as_bytes())
        .map(|(_, s)| s)
        .ok_or(CmdError::Syntax)?;
    super::check_subcommand(spec, argv)
}

// ----- CONFIG -------------------------------------------------------------------------------

const CONFIG_HELP: &[&str] = &[
    "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET <pattern>",
    "    Return parameters matching the glob-like <pattern> and their values.",
    "SET <directive> <value>",
    "    Set the configuration <directive> to <value>.",
    "RESETSTAT",
    "    Reset statistics reported by the INFO command.",
    "REWRITE",
    "    Rewrite the configuration file.",
    "HELP",
    "    Prints this help.",
];

fn config(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    match subcommand("config", argv)?.as_str() {
        "get" => config_get(ctx, argv),
        "set" => config_set(ctx, argv),
        "resetstat" => config_resetstat(ctx),
        "rewrite" => config_rewrite(ctx),
        _ => Ok(Reply::help(CONFIG_HELP)),
    }
}

fn config_get(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let patterns = argv.get(2..).unwrap_or_default();
    let all = ctx.w.eng.shared.tun.all();
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in patterns {
        let is_glob = p.iter().any(|c| matches!(c, b'*' | b'?' | b'['));
        for (k, v) in &all {
            let hit = if is_glob {
                glob_match(p, k.as_bytes(), true)
            } else {
                p.eq_ignore_ascii_case(k.as_bytes())
            };
            if hit && seen.insert(k.clone()) {
                // Redis echoes an exact name as the client typed it.
                let name = if is_glob {
                    Bytes::from(k.clone())
                } else {
                    p.clone()
                };
                out.push((Reply::Bulk(name), Reply::bulk(v.clone())));
            }
        }
    }
    Ok(Reply::Map(out))
}

fn set_failed(name: &str, why: &str) -> CmdError {
    CmdError::err(format!(
        "CONFIG SET failed (possibly related to argument '{name}') - {why}"
    ))
}

/// CONFIG SET p v [p v ...]: all or nothing. Every name is checked first; then the values
/// are applied in order, and if one is rejected the ones already applied get their old
/// values back (Redis's restore-on-failure).
/// The parameters Redis 7.0 marks PROTECTED_CONFIG: CONFIG SET changes them only where
/// `enable-protected-configs` allows it (`yes`, or `local` for loopback clients).
const PROTECTED_CONFIGS: &[&str] = &["dir", "dbfilename"];

fn config_set(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let pairs = argv.get(2..).unwrap_or_default();
    if pairs.len() % 2 != 0 {
        return Err(CmdError::Syntax);
    }
    let tun = &ctx.w.eng.shared.tun;
    let current: std::collections::BTreeMap<String, String> = tun.all().into_iter().collect();
    let mut todo: Vec<(String, String)> = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks_exact(2) {
        let [raw_name, raw_value] = pair else {
            return Err(CmdError::Syntax);
        };
        let (name, value) = (text(raw_name).to_ascii_lowercase(), text(raw_value));
        if !current.contains_key(&name) {
            return Err(CmdError::err(format!(
                "Unknown option or number of arguments for CONFIG SET - '{}'",
                text(raw_name)
            )));
        }
        if todo.iter().any(|(n, _)| *n == name) {
            return Err(set_failed(&name, "duplicate parameter"));
        }
        // Redis 7's PROTECTED_CONFIG parameters, under enable-protected-configs.
        if PROTECTED_CONFIGS.contains(&name.as_str()) {
            let access = ctx.w.eng.shared.cfg.protected_configs;
            let local = ctx
                .w
                .conns
                .get(ctx.conn)
                .is_some_and(|c| super::is_local(&c.client.addr));
            if !super::access_allows(access, local) {
                return Err(set_failed(&name, "can't set protected config"));
            }
        }
        todo.push((name, value));
    }
    // The TLS settings change together (a certificate and its key), built once.
    let (tls, todo): (Vec<_>, Vec<_>) = todo
        .into_iter()
        .partition(|(n, _)| crate::tls::is_setting(n));
    let tls_before = match tls.is_empty() {
        true => None,
        false => Some(
            tun.set_tls(&tls)
                .map_err(|(name, why)| set_failed(&name, &why))?,
        ),
    };
    for (i, (name, value)) in todo.iter().enumerate() {
        if let Err(why) = tun.set(name, value) {
            for (prev, _) in todo.iter().take(i) {
                if let Some(old) = current.get(prev) {
                    let _ = tun.set(prev, old);
                }
            }
            if let Some(old) = tls_before {
                tun.restore_tls(old, &current);
            }
            return Err(set_failed(name, &why));
        }
    }
    if let Some((_, l)) = todo.iter().find(|(n, _)| n == "loglevel") {
        crate::log::set_level(&l.to_ascii_lowercase());
    }
    // appendonly: turning it on starts the first rewrite (as Redis), off stops the logs.
    if let Some((_, v)) = todo.iter().find(|(n, _)| n == "appendonly") {
        let on = v.eq_ignore_ascii_case("yes");
        let was = ctx.w.eng.shared.aof.enabled.load(Ordering::SeqCst);
        if on && !was {
            super::persistence::rewrite_aof(&mut ctx.w.eng, true, |_, r| {
                if let Err(e) = r {
                    crate::log::warning(&format!("appendonly yes failed: {e}"));
                }
            });
        } else if !on && was {
            super::persistence::stop_aof(&mut ctx.w.eng);
        }
    }
    // `save` and `stop-writes-on-bgsave-error` open or close the MISCONF gate at once.
    ctx.w.eng.shared.persist.refresh_gate(&ctx.w.eng.shared.tun);
    // This shard's next command already sees a new eviction policy (others: next loop pass).
    let cfg = ctx.w.eng.shared.tun.evict_cfg();
    ctx.w.eng.shard.set_evict_cfg(cfg);
    Ok(Reply::Ok)
}

fn config_resetstat(ctx: &mut ConnCtx) -> CmdResult {
    let ticket = ctx.defer();
    all_shards(
        &mut ctx.w.eng,
        |tw: &mut Engine| {
            let s = &mut tw.shard;
            s.cmd_stats.iter_mut().for_each(|c| *c = CmdStat::default());
            s.error_stats.clear();
            s.lat.hist.clear();
            s.commands_processed = 0;
            s.evict.evicted_keys = 0;
            for d in s.dbs.iter_mut() {
                d.stats = Default::default();
            }
            tw.net = NetStats::default();
        },
        move |w, _: Vec<()>| w.complete(ticket, Reply::Ok),
    );
    Ok(Reply::Ok)
}

/// Renders a config file: the original lines with known parameters updated in place, then
/// every other parameter whose value differs from its default. Pure, for testing.
fn rewrite_text(
    original: &str,
    current: &[(String, String)],
    defaults: &[(String, String)],
) -> String {
    // Directives that take several words are written unquoted (`bind 127.0.0.1 -::1`).
    const MULTI_WORD: &[&str] = &[
        "bind",
        "save",
        "client-output-buffer-limit",
        "oom-score-adj-values",
        "replicaof",
        "slaveof",
    ];
    // Old names of settings that have a new one: only the new name is written (as Redis).
    const ALIASES: &[&str] = &[
        "slaveof",
        "slave-read-only",
        "slave-serve-stale-data",
        "slave-priority",
        "hash-max-ziplist-entries",
        "hash-max-ziplist-value",
        "zset-max-ziplist-entries",
        "zset-max-ziplist-value",
        "list-max-ziplist-size",
    ];
    // `replicaof` with no master is no line at all (redis-server refuses `replicaof ""`).
    let absent = |name: &str, v: &str| v.is_empty() && (name == "replicaof" || name == "slaveof");
    let quote = |name: &str, v: &str| {
        if v.is_empty() || (v.contains(char::is_whitespace) && !MULTI_WORD.contains(&name)) {
            format!("\"{v}\"")
        } else {
            v.to_string()
        }
    };
    // Memory sizes are written in the largest unit that divides them, as Redis's
    // rewriteConfigFormatMemory ("2gb", not 2147483648).
    let units = |name: &str, v: &str| -> String {
        const MEMORY: &[&str] = &[
            "maxmemory",
            "proto-max-bulk-len",
            "client-query-buffer-limit",
            "hash-max-listpack-value",
            "zset-max-listpack-value",
        ];
        match v.parse::<u64>() {
            Ok(n) if n > 0 && MEMORY.contains(&name) => {
                let (gb, mb, kb) = (1u64 << 30, 1u64 << 20, 1u64 << 10);
                if n % gb == 0 {
                    format!("{}gb", n / gb)
                } else if n % mb == 0 {
                    format!("{}mb", n / mb)
                } else if n % kb == 0 {
                    format!("{}kb", n / kb)
                } else {
                    n.to_string()
                }
            }
            _ => v.to_string(),
        }
    };
    let value_of = |name: &str| {
        current
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| units(name, v))
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = String::new();
    for line in original.lines() {
        let t = line.trim();
        let name = t
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        // An old `*-ziplist-*` name is written back under its new name, as Redis does.
        let name = crate::types::limits::canonical(&name).to_string();
        if !t.starts_with('#') && !name.is_empty() {
            if let Some(v) = value_of(&name) {
                if seen.insert(name.clone()) && !absent(&name, &v) {
                    let _ = writeln!(out, "{name} {}", quote(&name, &v));
                }
                continue;
            }
        }
        let _ = writeln!(out, "{line}");
    }
    let mut header = false;
    for (k, v) in current {
        if seen.contains(k) || k == "shards" || ALIASES.contains(&k.as_str()) || absent(k, v) {
            continue;
        }
        let default = defaults.iter().find(|(d, _)| d == k).map(|(_, v)| v);
        if default == Some(v) {
            continue;
        }
        if !header {
            out.push_str("# Generated by CONFIG REWRITE\n");
            header = true;
        }
        let _ = writeln!(out, "{k} {}", quote(k, &units(k, v)));
    }
    out
}

/// CONFIG REWRITE: rewrites the `--config` file (temp file + rename, so a crash never leaves
/// half a file). A short blocking file write on this shard, as in Redis's main thread.
fn config_rewrite(ctx: &mut ConnCtx) -> CmdResult {
    let shared = &ctx.w.eng.shared;
    let Some(path) = shared.cfg.config_file.clone() else {
        return Err(CmdError::err("The server is running without a config file"));
    };
    let original = std::fs::read_to_string(&path).unwrap_or_default();
    let defaults = crate::config::Tunables::new(&crate::config::Config::default()).all();
    let body = rewrite_text(&original, &shared.tun.all(), &defaults);
    let tmp = format!("{path}.tmp-{}", std::process::id());
    std::fs::write(&tmp, body)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CmdError::err(format!("Rewriting config file: {e}"))
        })?;
    crate::log::notice("CONFIG REWRITE executed with success.");
    Ok(Reply::Ok)
}

// ----- SHUTDOWN -----------------------------------------------------------------------------

fn shutdown(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    for a in argv.iter().skip(1) {
        if !(is(a, "nosave") || is(a, "save") || is(a, "now") || is(a, "force") || is(a, "abort")) {
            return Err(CmdError::Syntax);
        }
    }
    let has = |w: &str| argv.iter().skip(1).any(|a| is(a, w));
    if has("abort") {
        return Err(CmdError::err("No shutdown in progress."));
    }
    if has("save") && has("nosave") {
        return Err(CmdError::Syntax);
    }
    // While a script is busy only SHUTDOWN NOSAVE goes ahead (Redis's shutdownCommand).
    if !has("nosave") {
        if let Some(busy) = crate::scripting::busy_text() {
            return Err(CmdError::coded(busy));
        }
    }
    crate::log::notice("User requested shutdown...");
    // As Redis: SAVE always saves, NOSAVE never, no argument saves when save rules exist.
    // Redis closes the connection without a reply when the shutdown goes ahead; a failed
    // save answers through the ticket (`persist::cron::shutdown`).
    let saves = has("save")
        || (!has("nosave") && ctx.w.eng.shared.tun.has_save_rules.load(Ordering::Relaxed));
    let ticket = ctx.defer();
    if !saves {
        ctx.w.eng.request_shutdown();
        return Ok(Reply::Ok);
    }
    ctx.w.eng.shutdown_req = Some(persist::cron::ShutdownReq {
        save: true,
        force: has("force"),
        ticket: Some(ticket),
    });
    persist::cron::shutdown(&mut ctx.w.eng);
    Ok(Reply::Ok)
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

fn debug(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
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
        &mut ctx.w.eng,
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
            &mut ctx.w.eng,
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
    if shard >= ctx.w.eng.nshards {
        return Err(CmdError::err("no such shard"));
    }
    let ticket = ctx.defer();
    let job: ShardFn<Reply> = Box::new(move |tw: &mut Engine| {
        journal::flush(&mut tw.shard);
        let Some(j) = tw.shard.journal.as_ref() else {
            return Reply::Error("ERR the journal is off".into());
        };
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
    ctx.w
        .eng
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
        &mut ctx.w.eng,
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
        &mut ctx.w.eng,
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
    persist::save::snapshot(&mut ctx.w.eng, true, move |w, parts, txid| {
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
            persist::load::split(&data, w.nshards, cfg.databases, crc)
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
                        super::multi::before_flush(&mut tw.shard, db);
                    }
                    tw.shard.dbs.iter_mut().for_each(|d| d.clear());
                    persist::load::apply(&mut tw.shard, keys);
                    multi::unlock(tw, txid);
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

/// SWAPDB a b: locks every shard (in shard order, see `coord::multi`), swaps the two
/// databases on each under the lock, and unlocks; no client sees a half-swapped keyspace.
fn swapdb(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let parse = |i: usize, which: &str| {
        argv.get(i)
            .and_then(|a| parse_i64(a))
            .ok_or_else(|| CmdError::err(format!("invalid {which} DB index")))
    };
    let (a, b) = (parse(1, "first")?, parse(2, "second")?);
    let n = ctx.w.eng.shared.cfg.databases as i64;
    if !(0..n).contains(&a) || !(0..n).contains(&b) {
        return Err(CmdError::DbIndex);
    }
    let (a, b) = (a as usize, b as usize);
    let ticket = ctx.defer();
    every_shard_locked(
        &mut ctx.w.eng,
        move |tw: &mut Engine| {
            let len = tw.shard.dbs.len();
            if a < len && b < len {
                super::multi::before_swap(&mut tw.shard, a, b);
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

// ----- COMMAND ------------------------------------------------------------------------------

const COMMAND_HELP: &[&str] = &[
    "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "(no subcommand)",
    "    Return details about all Redis commands.",
    "COUNT",
    "    Return the total number of commands in this Redis server.",
    "LIST",
    "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
    "    If no command names are given, documentation details for all",
    "    commands are returned.",
    "GETKEYS <full-command>",
    "    Return the keys from a full Redis command.",
    "HELP",
    "    Prints this help.",
];

fn command(_ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let t = table();
    if argv.len() == 1 {
        return Ok(Reply::Array(
            t.specs.iter().map(docs::command_info).collect(),
        ));
    }
    let names = argv.get(2..).unwrap_or_default();
    match subcommand("command", argv)?.as_str() {
        "count" => Ok(Reply::Int(t.len() as i64)),
        "info" if names.is_empty() => Ok(Reply::Array(
            t.specs.iter().map(docs::command_info).collect(),
        )),
        "info" => Ok(Reply::Array(
            names
                .iter()
                .map(|n| {
                    t.lookup(n)
                        .map_or(Reply::Null, |(_, s)| docs::command_info(s))
                })
                .collect(),
        )),
        "docs" => {
            let specs: Vec<&CommandSpec> = if names.is_empty() {
                t.specs.iter().collect()
            } else {
                names
                    .iter()
                    .filter_map(|n| t.lookup(n).map(|(_, s)| s))
                    .collect()
            };
            Ok(Reply::Map(
                specs
                    .into_iter()
                    .map(|s| (Reply::bulk(s.name), docs::command_docs(s)))
                    .collect(),
            ))
        }
        "list" => command_list(argv),
        "getkeys" => command_getkeys(names),
        _ => Ok(Reply::help(COMMAND_HELP)),
    }
}

/// Every command name, subcommands as `container|sub`, as COMMAND LIST prints them.
fn all_names() -> impl Iterator<Item = (String, &'static CommandSpec)> {
    table().specs.iter().flat_map(|s| {
        std::iter::once((s.name.to_string(), s)).chain(
            s.subcommands
                .iter()
                .map(move |(sub, _, _)| (format!("{}|{}", s.name, sub), s)),
        )
    })
}

fn command_list(argv: &[Bytes]) -> CmdResult {
    let names: Vec<Reply> = match argv {
        [_, _] => all_names().map(|(n, _)| Reply::bulk(n)).collect(),
        [_, _, f, kind, value] if is(f, "filterby") => {
            if is(kind, "pattern") {
                all_names()
                    .filter(|(n, _)| glob_match(value, n.as_bytes(), true))
                    .map(|(n, _)| Reply::bulk(n))
                    .collect()
            } else if is(kind, "aclcat") {
                let cat = text(value);
                all_names()
                    .filter(|(_, s)| docs::in_category(s, &cat))
                    .map(|(n, _)| Reply::bulk(n))
                    .collect()
            } else if is(kind, "module") {
                Vec::new()
            } else {
                return Err(CmdError::Syntax);
            }
        }
        _ => return Err(CmdError::Syntax),
    };
    Ok(Reply::Array(names))
}

fn command_getkeys(cmd: &[Bytes]) -> CmdResult {
    let name = cmd.first().ok_or(CmdError::Syntax)?;
    let Some((_, spec)) = table().lookup(name) else {
        return Err(CmdError::err("Invalid command specified"));
    };
    if spec.keys.first <= 0 {
        return Err(CmdError::err("The command has no key arguments"));
    }
    if super::check_arity(spec, cmd).is_err() {
        return Err(CmdError::err(
            "Invalid number of arguments specified for command",
        ));
    }
    if spec.keys.numkeys > 0 {
        // Redis's keynum key spec: the count must be a number whose keys all follow.
        let at = spec.keys.numkeys as usize;
        let n = cmd.get(at).and_then(|b| crate::protocol::parse_i64(b));
        if !n.is_some_and(|n| n >= 0 && (n as u64) < cmd.len().saturating_sub(at) as u64) {
            return Err(CmdError::err("Invalid arguments specified for command"));
        }
    }
    let keys: Vec<Reply> = spec
        .keys
        .key_positions(cmd)
        .filter_map(|i| cmd.get(i).cloned().map(Reply::Bulk))
        .collect();
    if keys.is_empty() {
        return Err(CmdError::err("The command has no key arguments"));
    }
    Ok(Reply::Array(keys))
}

// ----- INFO ---------------------------------------------------------------------------------

/// INFO sections in Redis's order, and which of them `INFO` / `INFO default` prints.
const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
];

/// Which sections the arguments ask for (`INFO`, `INFO default|all|everything`, or names).
fn wanted_sections(args: &[Bytes]) -> Vec<&'static str> {
    let mut want = vec![false; SECTIONS.len()];
    if args.is_empty() {
        for (w, (_, d)) in want.iter_mut().zip(SECTIONS) {
            *w = *d;
        }
    }
    for a in args {
        if is(a, "all") || is(a, "everything") {
            want.iter_mut().for_each(|w| *w = true);
        } else if is(a, "default") {
            for (w, (_, d)) in want.iter_mut().zip(SECTIONS) {
                *w |= *d;
            }
        } else if let Some(i) = SECTIONS.iter().position(|(n, _)| is(a, n)) {
            if let Some(w) = want.get_mut(i) {
                *w = true;
            }
        }
    }
    SECTIONS
        .iter()
        .zip(want)
        .filter(|(_, w)| *w)
        .map(|((n, _), _)| *n)
        .collect()
}

/// One shard's share of INFO, gathered on that shard.
#[derive(Default, Clone, Debug)]
pub struct ShardInfo {
    /// Per database: (keys, keys with a TTL).
    pub dbs: Vec<(u64, u64)>,
    pub cmd: Vec<CmdStat>,
    pub errors: Vec<(String, u64)>,
    pub processed: u64,
    pub expired: u64,
    pub evicted: u64,
    pub hits: u64,
    pub misses: u64,
    pub net: NetStats,
    /// Instantaneous rates (INFO stats).
    pub rates: crate::server::metrics::Rates,
    /// Channels and patterns with subscribers on this shard (names, since a channel with
    /// subscribers on several shards counts once).
    pub pubsub: (Vec<bytes::Bytes>, Vec<bytes::Bytes>),
    /// Memory held by this shard's connections (INFO mem_clients_normal).
    pub clients_mem: u64,
    /// Successful writes run on this shard (`Shard::dirty`).
    pub dirty: u64,
    /// How long this shard had been in its current loop pass when it answered (a command
    /// that held it is still counted then; the `Shared` reading may already be reset).
    pub pass_ms: u64,
    /// Per-command latency histograms, when INFO latencystats is asked for.
    pub latency: Vec<(usize, hdrhistogram::Histogram<u64>)>,
    /// `latency-tracking-info-percentiles` (set on the merged total).
    pub percentiles: Vec<f64>,
}

pub(super) fn gather(tw: &mut Worker) -> ShardInfo {
    let s = &tw.eng.shard;
    ShardInfo {
        dbs: s
            .dbs
            .iter()
            .map(|d| (d.len() as u64, d.expires_len() as u64))
            .collect(),
        cmd: s.cmd_stats.clone(),
        errors: s.error_stats.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        processed: s.commands_processed,
        expired: s.dbs.iter().map(|d| d.stats.expired_keys).sum(),
        evicted: s.evict.evicted_keys,
        hits: s.dbs.iter().map(|d| d.stats.hits).sum(),
        misses: s.dbs.iter().map(|d| d.stats.misses).sum(),
        net: tw.eng.net,
        rates: tw.rates.rates(),
        pubsub: (tw.pubsub.channels_matching(None), tw.pubsub.pattern_names()),
        clients_mem: tw
            .conns
            .iter()
            .map(|(_, c)| super::client::client_mem(c) as u64)
            .sum(),
        pass_ms: tw.eng.pass_age_ms(),
        dirty: s.dirty,
        latency: Vec::new(),
        percentiles: Vec::new(),
    }
}

/// Adds shard `b`'s counters into `a`.
pub(super) fn merge(mut a: ShardInfo, b: ShardInfo) -> ShardInfo {
    if a.dbs.len() < b.dbs.len() {
        a.dbs.resize(b.dbs.len(), (0, 0));
    }
    for (x, y) in a.dbs.iter_mut().zip(&b.dbs) {
        x.0 += y.0;
        x.1 += y.1;
    }
    if a.cmd.len() < b.cmd.len() {
        a.cmd.resize(b.cmd.len(), CmdStat::default());
    }
    for (x, y) in a.cmd.iter_mut().zip(&b.cmd) {
        x.calls += y.calls;
        x.nanos += y.nanos;
        x.rejected += y.rejected;
        x.failed += y.failed;
    }
    for (code, n) in b.errors {
        match a.errors.iter_mut().find(|(c, _)| *c == code) {
            Some((_, m)) => *m += n,
            None => a.errors.push((code, n)),
        }
    }
    a.processed += b.processed;
    a.expired += b.expired;
    a.evicted += b.evicted;
    a.hits += b.hits;
    a.misses += b.misses;
    a.net.net_input_bytes += b.net.net_input_bytes;
    a.net.net_output_bytes += b.net.net_output_bytes;
    a.net.connections_received += b.net.connections_received;
    a.net.rejected_connections += b.net.rejected_connections;
    a.net.evicted_clients += b.net.evicted_clients;
    a.rates.add(b.rates);
    a.pubsub.0.extend(b.pubsub.0);
    a.pubsub.1.extend(b.pubsub.1);
    a.clients_mem += b.clients_mem;
    a.pass_ms = a.pass_ms.max(b.pass_ms);
    a.dirty += b.dirty;
    crate::shard::latency::merge_histograms(&mut a.latency, b.latency);
    a
}

/// Distinct names in a merged list.
fn distinct(v: &[bytes::Bytes]) -> usize {
    v.iter().collect::<std::collections::HashSet<_>>().len()
}

/// Server-wide facts INFO prints next to the shard counters (read on the origin shard).
#[derive(Clone, Debug, Default)]
pub struct Meta {
    pub run_id: String,
    pub replid: String,
    pub port: u16,
    pub shards: usize,
    pub uptime_secs: u64,
    pub started_unix: u64,
    pub now_usec: u64,
    pub clients: usize,
    pub blocked_clients: usize,
    pub maxclients: usize,
    pub config_file: String,
    pub executable: String,
    pub os: String,
    pub used_memory: u64,
    pub startup_memory: u64,
    pub peak_memory: u64,
    pub rss: u64,
    pub total_memory: u64,
    pub maxmemory: u64,
    pub maxmemory_policy: String,
    pub cpu_user: f64,
    pub cpu_sys: f64,
    /// `Shared::stalls`: (longest loop pass, longest lock) in ms.
    pub stalls: (u64, u64),
    /// `persist::State`: (last save, saves, dirty at last save, last failed, BGSAVE running,
    /// last save seconds, keys loaded, keys expired at load).
    pub rdb: (u64, u64, u64, bool, bool, i64, u64, u64),
    /// `persist::aof::State`: (enabled, rewriting, rewrites, last rewrite ok, last write ok).
    pub aof: (bool, bool, u64, bool, bool),
    /// The AOF's current size and its size after the last rewrite (or at startup).
    pub aof_sizes: (u64, u64),
}

/// The replication id this server reports (40 hex digits, fixed for the process lifetime).
pub fn master_replid() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
            ^ (std::process::id() as u64).rotate_left(17)
            ^ 0x9E37_79B9_7F4A_7C15;
        (0..40)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from_digit((seed % 16) as u32, 16).unwrap_or('0')
            })
            .collect()
    })
}

pub(super) fn meta(w: &Engine) -> Meta {
    let sh = &w.shared;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let uptime = sh.started.elapsed();
    let tun = sh.tun.all();
    let param = |n: &str| tun.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    let (cpu_user, cpu_sys) = sys::cpu_times();
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let p = &sh.persist;
    Meta {
        rdb: (
            p.last_save.load(Ordering::Relaxed),
            p.saves.load(Ordering::Relaxed),
            p.dirty_at_save.load(Ordering::Relaxed),
            p.last_failed.load(Ordering::Relaxed),
            p.bg_in_progress.load(Ordering::Relaxed),
            p.last_save_secs.load(Ordering::Relaxed),
            p.loaded_keys.load(Ordering::Relaxed),
            p.loaded_expired.load(Ordering::Relaxed),
        ),
        aof: (
            sh.aof.enabled.load(Ordering::Relaxed),
            sh.aof.rewriting.load(Ordering::Relaxed),
            sh.aof.rewrites.load(Ordering::Relaxed),
            sh.aof.last_rewrite_ok.load(Ordering::Relaxed),
            sh.aof.last_write_ok.load(Ordering::Relaxed),
        ),
        aof_sizes: (
            sh.aof.current_size(),
            sh.aof.rewrite_base.load(Ordering::Relaxed),
        ),
        stalls: sh.stalls(),
        run_id: sh.run_id.clone(),
        replid: master_replid().to_string(),
        port: sh.port,
        shards: w.nshards,
        uptime_secs: uptime.as_secs(),
        started_unix: now.saturating_sub(uptime).as_secs(),
        now_usec: now.as_micros() as u64,
        clients: sh.clients.load(Ordering::Relaxed),
        blocked_clients: sh.blocked_clients.load(Ordering::Relaxed),
        maxclients: sh.tun.maxclients.load(Ordering::Relaxed),
        config_file: sh.cfg.config_file.clone().unwrap_or_default(),
        executable: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        os: format!(
            "{} {} {}",
            read("/proc/sys/kernel/ostype"),
            read("/proc/sys/kernel/osrelease"),
            std::env::consts::ARCH
        ),
        used_memory: alloc::used(),
        startup_memory: sh.startup_memory.load(Ordering::Relaxed),
        peak_memory: alloc::peak(),
        rss: alloc::rss(),
        total_memory: alloc::total_system_memory(),
        maxmemory: w
            .shared
            .tun
            .maxmemory
            .load(std::sync::atomic::Ordering::Relaxed),
        maxmemory_policy: param("maxmemory-policy").unwrap_or_else(|| "noeviction".into()),
        cpu_user,
        cpu_sys,
    }
}

/// Redis's `bytesToHuman`: `943.16K`, `6.58M`, `200B`.
pub fn human_bytes(n: u64) -> String {
    let f = n as f64;
    const K: f64 = 1024.0;
    if f < K {
        format!("{n}B")
    } else if f < K * K {
        format!("{:.2}K", f / K)
    } else if f < K * K * K {
        format!("{:.2}M", f / (K * K))
    } else if f < K * K * K * K {
        format!("{:.2}G", f / (K * K * K))
    } else if f < K * K * K * K * K {
        format!("{:.2}T", f / (K * K * K * K))
    } else {
        format!("{:.2}P", f / (K * K * K * K * K))
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Renders the INFO text: `# Section` headers, `field:value` lines, CRLF line ends, a blank
/// line between sections. Pure, so the format is unit-tested.
pub fn render(sections: &[&str], m: &Meta, s: &ShardInfo) -> String {
    let mut out = String::new();
    for (i, sec) in sections.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let mut lines: Vec<String> = Vec::new();
        let mut f = |k: &str, v: &dyn std::fmt::Display| lines.push(format!("{k}:{v}"));
        let title = match *sec {
            "server" => {
                f("redis_version", &super::conn::REDIS_COMPAT_VERSION);
                f("redis_git_sha1", &"00000000");
                f("redis_git_dirty", &0);
                f("redis_build_id", &"0");
                f("redis_mode", &"standalone");
                f("os", &m.os);
                f("arch_bits", &(usize::BITS));
                f("monotonic_clock", &"POSIX clock_gettime");
                f("multiplexing_api", &"io_uring");
                f("atomicvar_api", &"c11-builtin");
                f("gcc_version", &"0.0.0");
                f("process_id", &std::process::id());
                f("process_supervised", &"no");
                f("run_id", &m.run_id);
                f("tcp_port", &m.port);
                f("server_time_usec", &m.now_usec);
                f("uptime_in_seconds", &m.uptime_secs);
                f("uptime_in_days", &(m.uptime_secs / 86400));
                f("hz", &10);
                f("configured_hz", &10);
                f("lru_clock", &((m.now_usec / 1_000_000) & ((1 << 24) - 1)));
                f("executable", &m.executable);
                f("config_file", &m.config_file);
                f("io_threads_active", &0);
                f("shardis_version", &env!("CARGO_PKG_VERSION"));
                f("shards", &m.shards);
                "Server"
            }
            "clients" => {
                f("connected_clients", &m.clients);
                f("cluster_connections", &0);
                f("maxclients", &m.maxclients);
                f("client_recent_max_input_buffer", &0);
                f("client_recent_max_output_buffer", &0);
                f("blocked_clients", &m.blocked_clients);
                f("tracking_clients", &crate::server::tracking::clients());
                f("clients_in_timeout_table", &0);
                "Clients"
            }
            "memory" => {
                let peak = m.peak_memory.max(m.used_memory);
                f("used_memory", &m.used_memory);
                f("used_memory_human", &human_bytes(m.used_memory));
                f("used_memory_rss", &m.rss);
                f("used_memory_rss_human", &human_bytes(m.rss));
                f("used_memory_peak", &peak);
                f("used_memory_peak_human", &human_bytes(peak));
                let perc = format!("{:.2}%", 100.0 * ratio(m.used_memory, peak));
                f("used_memory_peak_perc", &perc);
                // Overhead as Redis counts it where we can: the heap in use at startup
                // (rings, buffers, tables) plus the clients' buffers; no replication, AOF or
                // scripts exist to add more.
                let startup = m.startup_memory.min(m.used_memory);
                let overhead = (startup + s.clients_mem).min(m.used_memory);
                let dataset = m.used_memory - overhead;
                f("used_memory_overhead", &overhead);
                f("used_memory_startup", &startup);
                f("used_memory_dataset", &dataset);
                let dperc = 100.0 * ratio(dataset, m.used_memory.saturating_sub(startup));
                f("used_memory_dataset_perc", &format!("{dperc:.2}%"));
                f("total_system_memory", &m.total_memory);
                f("total_system_memory_human", &human_bytes(m.total_memory));
                for k in ["used_memory_lua", "used_memory_vm_eval"] {
                    f(k, &0);
                }
                f("used_memory_lua_human", &"0B");
                for k in [
                    "used_memory_scripts_eval",
                    "number_of_cached_scripts",
                    "number_of_functions",
                    "number_of_libraries",
                    "used_memory_vm_functions",
                    "used_memory_vm_total",
                ] {
                    f(k, &0);
                }
                f("used_memory_vm_total_human", &"0B");
                f("used_memory_functions", &0);
                f("used_memory_scripts", &0);
                f("used_memory_scripts_human", &"0B");
                f("maxmemory", &m.maxmemory);
                f("maxmemory_human", &human_bytes(m.maxmemory));
                f("maxmemory_policy", &m.maxmemory_policy);
                let frag = format!("{:.2}", ratio(m.rss, m.used_memory));
                f("mem_fragmentation_ratio", &frag);
                f(
                    "mem_fragmentation_bytes",
                    &(m.rss as i64 - m.used_memory as i64),
                );
                for k in [
                    "mem_not_counted_for_evict",
                    "mem_replication_backlog",
                    "mem_total_replication_buffers",
                    "mem_clients_slaves",
                ] {
                    f(k, &0);
                }
                f("mem_clients_normal", &s.clients_mem);
                f("mem_cluster_links", &0);
                f("mem_aof_buffer", &0);
                f("mem_allocator", &"libc");
                f("active_defrag_running", &0);
                f(
                    "lazyfree_pending_objects",
                    &crate::shard::lazyfree::pending(),
                );
                f("lazyfreed_objects", &crate::shard::lazyfree::freed());
                "Memory"
            }
            "persistence" => {
                f("loading", &0);
                f("async_loading", &0);
                f("current_cow_peak", &0);
                f("current_cow_size", &0);
                f("current_cow_size_age", &0);
                f("current_fork_perc", &"0.00");
                f("current_save_keys_processed", &0);
                f("current_save_keys_total", &0);
                let (last, saves, dirty_at, failed, bg, secs, loaded, expired) = m.rdb;
                f(
                    "rdb_changes_since_last_save",
                    &s.dirty.saturating_sub(dirty_at),
                );
                f("rdb_bgsave_in_progress", &u8::from(bg));
                f("rdb_last_save_time", &last);
                f("rdb_last_bgsave_status", &if failed { "err" } else { "ok" });
                f("rdb_last_bgsave_time_sec", &secs);
                f("rdb_current_bgsave_time_sec", &-1);
                f("rdb_saves", &saves);
                f("rdb_last_cow_size", &0);
                f("rdb_last_load_keys_expired", &expired);
                f("rdb_last_load_keys_loaded", &loaded);
                let (aof_on, rewriting, rewrites, rewrite_ok, write_ok) = m.aof;
                let ok = |b: bool| if b { "ok" } else { "err" };
                f("aof_enabled", &u8::from(aof_on));
                f("aof_rewrite_in_progress", &u8::from(rewriting));
                f("aof_rewrite_scheduled", &0);
                f("aof_last_rewrite_time_sec", &-1);
                f("aof_current_rewrite_time_sec", &-1);
                f("aof_last_bgrewrite_status", &ok(rewrite_ok));
                f("aof_rewrites", &rewrites);
                f("aof_rewrites_consecutive_failures", &u8::from(!rewrite_ok));
                f("aof_last_write_status", &ok(write_ok));
                f("aof_last_cow_size", &0);
                if aof_on {
                    // As Redis, only while the AOF is on.
                    let (cur, base) = m.aof_sizes;
                    f("aof_current_size", &cur);
                    f("aof_base_size", &base);
                    f("aof_pending_rewrite", &0);
                    f("aof_buffer_length", &0);
                    f("aof_pending_bio_fsync", &0);
                    f("aof_delayed_fsync", &0);
                }
                f("module_fork_in_progress", &0);
                f("module_fork_last_cow_size", &0);
                "Persistence"
            }
            "stats" => {
                let errors: u64 = s.errors.iter().map(|(_, n)| n).sum();
                f("total_connections_received", &s.net.connections_received);
                f("total_commands_processed", &s.processed);
                f("instantaneous_ops_per_sec", &(s.rates.ops as u64));
                f("total_net_input_bytes", &s.net.net_input_bytes);
                f("total_net_output_bytes", &s.net.net_output_bytes);
                f("total_net_repl_input_bytes", &0);
                f("total_net_repl_output_bytes", &0);
                f(
                    "instantaneous_input_kbps",
                    &format!("{:.2}", s.rates.input_bytes / 1024.0),
                );
                f(
                    "instantaneous_output_kbps",
                    &format!("{:.2}", s.rates.output_bytes / 1024.0),
                );
                f("instantaneous_input_repl_kbps", &"0.00");
                f("instantaneous_output_repl_kbps", &"0.00");
                f("rejected_connections", &s.net.rejected_connections);
                let [full, ok, err] = crate::repl::master::sync_stats();
                f("sync_full", &full);
                f("sync_partial_ok", &ok);
                f("sync_partial_err", &err);
                f("expired_keys", &s.expired);
                f("expired_stale_perc", &"0.00");
                f("expired_time_cap_reached_count", &0);
                f("expire_cycle_cpu_milliseconds", &0);
                f("evicted_keys", &s.evicted);
                f("evicted_clients", &s.net.evicted_clients);
                f("total_eviction_exceeded_time", &0);
                f("current_eviction_exceeded_time", &0);
                f("keyspace_hits", &s.hits);
                f("keyspace_misses", &s.misses);
                f("pubsub_channels", &distinct(&s.pubsub.0));
                f("pubsub_patterns", &distinct(&s.pubsub.1));
                f("pubsubshard_channels", &0);
                f("latest_fork_usec", &0);
                f("total_forks", &0);
                f("migrate_cached_sockets", &0);
                f("slave_expires_tracked_keys", &0);
                f("active_defrag_hits", &0);
                f("active_defrag_misses", &0);
                f("active_defrag_key_hits", &0);
                f("active_defrag_key_misses", &0);
                f("total_active_defrag_time", &0);
                f("current_active_defrag_time", &0);
                f("tracking_total_keys", &0);
                f("tracking_total_items", &0);
                f("tracking_total_prefixes", &0);
                f("unexpected_error_replies", &0);
                f("total_error_replies", &errors);
                f("dump_payload_sanitizations", &0);
                // The stall detector (not in Redis): the longest any shard has been inside
                // one loop pass, and the longest any shard has been locked by a multi-shard
                // command or transaction. Both stay near 0 on a healthy server.
                f("shard_oldest_pass_ms", &m.stalls.0.max(s.pass_ms));
                f("shard_oldest_lock_ms", &m.stalls.1);
                "Stats"
            }
            "replication" => {
                if crate::repl::is_replica() {
                    for (k, v) in crate::repl::info_fields() {
                        f(&k, &v);
                    }
                } else {
                    crate::repl::master::info_replication(&mut f);
                }
                "Replication"
            }
            "cpu" => {
                f("used_cpu_sys", &format!("{:.6}", m.cpu_sys));
                f("used_cpu_user", &format!("{:.6}", m.cpu_user));
                f("used_cpu_sys_children", &"0.000000");
                f("used_cpu_user_children", &"0.000000");
                "CPU"
            }
            "modules" => "Modules",
            "commandstats" => {
                for (spec, st) in table().specs.iter().zip(&s.cmd) {
                    if st.calls == 0 && st.failed == 0 && st.rejected == 0 {
                        continue;
                    }
                    let usec = st.nanos / 1000;
                    let per = st.nanos as f64 / 1000.0 / (st.calls.max(1) as f64);
                    let v = format!(
                        "calls={},usec={},usec_per_call={per:.2},rejected_calls={},failed_calls={}",
                        st.calls, usec, st.rejected, st.failed
                    );
                    f(&format!("cmdstat_{}", spec.name), &v);
                }
                "Commandstats"
            }
            "errorstats" => {
                let mut errs = s.errors.clone();
                errs.sort();
                for (code, n) in errs {
                    f(&format!("errorstat_{code}"), &format!("count={n}"));
                }
                "Errorstats"
            }
            "latencystats" => {
                lines.extend(super::observe::latencystats_lines(
                    &s.latency,
                    &s.percentiles,
                ));
                "Latencystats"
            }
            "cluster" => {
                f("cluster_enabled", &0);
                "Cluster"
            }
            "keyspace" => {
                for (i, (keys, expires)) in s.dbs.iter().enumerate() {
                    if *keys > 0 {
                        let v = format!("keys={keys},expires={expires},avg_ttl=0");
                        f(&format!("db{i}"), &v);
                    }
                }
                "Keyspace"
            }
            _ => continue,
        };
        let _ = write!(out, "# {title}\r\n");
        for l in lines {
            out.push_str(&l);
            out.push_str("\r\n");
        }
    }
    out
}

fn info(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let sections = wanted_sections(argv.get(1..).unwrap_or_default());
    let ticket = ctx.defer();
    let latency = sections.contains(&"latencystats");
    let gather_all = move |tw: &mut Worker| {
        let mut i = gather(tw);
        if latency {
            i.latency = tw.eng.shard.lat.histograms();
        }
        i
    };
    ctx.w
        .on_all_fronts(gather_all, move |w, parts: Vec<ShardInfo>| {
            let mut total = parts.into_iter().fold(ShardInfo::default(), merge);
            if latency {
                let text = w
                    .shared
                    .tun
                    .text
                    .lock()
                    .ok()
                    .and_then(|m| m.get("latency-tracking-info-percentiles").cloned());
                total.percentiles = text
                    .and_then(|t| crate::shard::latency::parse_percentiles(&t).ok())
                    .unwrap_or_default();
            }
            let text = render(&sections, &meta(w), &total);
            w.complete(ticket, Reply::Verbatim(Bytes::from(text)));
        });
    Ok(Reply::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

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

    #[test]
    fn section_selection() {
        let d = wanted_sections(&[]);
        assert!(d.contains(&"server") && d.contains(&"keyspace"));
        assert!(!d.contains(&"commandstats"));
        let all = wanted_sections(&[b("ALL")]);
        assert_eq!(all.len(), SECTIONS.len());
        assert_eq!(
            wanted_sections(&[b("keyspace"), b("Server")]),
            vec!["server", "keyspace"]
        );
        assert!(wanted_sections(&[b("nosuch")]).is_empty());
        let dc = wanted_sections(&[b("default"), b("commandstats")]);
        assert_eq!(dc.len(), SECTIONS.len() - 1);
        assert!(!dc.contains(&"latencystats") && all.contains(&"latencystats"));
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(200), "200B");
        assert_eq!(human_bytes(965792), "943.16K");
        assert_eq!(human_bytes(6901760), "6.58M");
        assert_eq!(human_bytes(0), "0B");
    }

    #[test]
    fn render_format() {
        let table_len = table().len();
        let get_id = table().lookup(b"get").map(|(i, _)| i).unwrap();
        let mut s = ShardInfo {
            dbs: vec![(3, 1), (0, 0), (2, 0)],
            cmd: vec![CmdStat::default(); table_len],
            errors: vec![("WRONGTYPE".into(), 2), ("ERR".into(), 1)],
            ..Default::default()
        };
        s.cmd[get_id] = CmdStat {
            calls: 4,
            nanos: 10_000,
            rejected: 1,
            failed: 0,
        };
        let m = Meta {
            run_id: "a".repeat(40),
            port: 7000,
            ..Default::default()
        };
        let t = render(
            &["server", "commandstats", "errorstats", "keyspace"],
            &m,
            &s,
        );
        assert!(t.starts_with("# Server\r\nredis_version:7.0.15\r\n"), "{t}");
        assert!(t.contains("\r\ntcp_port:7000\r\n"));
        assert!(t.contains(&format!("\r\nrun_id:{}\r\n", "a".repeat(40))));
        assert!(t.contains("\r\n\r\n# Commandstats\r\ncmdstat_get:calls=4,usec=10,usec_per_call=2.50,rejected_calls=1,failed_calls=0\r\n\r\n# Errorstats\r\n"), "{t}");
        assert!(
            t.contains("# Errorstats\r\nerrorstat_ERR:count=1\r\nerrorstat_WRONGTYPE:count=2\r\n")
        );
        assert!(t.ends_with(
            "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb2:keys=2,expires=0,avg_ttl=0\r\n"
        ));
        assert!(!t.contains("db1:"));
        assert!(!t.contains('\n') || t.matches('\n').count() == t.matches("\r\n").count());
        // An empty keyspace still prints its header, as Redis does.
        let e = render(&["keyspace"], &m, &ShardInfo::default());
        assert_eq!(e, "# Keyspace\r\n");
    }

    #[test]
    fn merge_adds() {
        let a = ShardInfo {
            dbs: vec![(1, 0)],
            errors: vec![("ERR".into(), 1)],
            hits: 2,
            ..Default::default()
        };
        let c = ShardInfo {
            dbs: vec![(2, 1), (5, 0)],
            errors: vec![("ERR".into(), 2), ("X".into(), 1)],
            hits: 3,
            ..Default::default()
        };
        let m = merge(merge(ShardInfo::default(), a), c);
        assert_eq!(m.dbs, vec![(3, 1), (5, 0)]);
        assert_eq!(m.hits, 5);
        assert_eq!(m.errors, vec![("ERR".into(), 3), ("X".into(), 1)]);
    }

    #[test]
    fn rewrite_updates_in_place() {
        let cur = vec![
            ("maxclients".to_string(), "5".to_string()),
            ("timeout".to_string(), "9".to_string()),
            ("save".to_string(), "".to_string()),
            ("port".to_string(), "7001".to_string()),
        ];
        let def = vec![
            ("maxclients".to_string(), "10000".to_string()),
            ("timeout".to_string(), "0".to_string()),
            ("save".to_string(), "".to_string()),
            ("port".to_string(), "6379".to_string()),
        ];
        let out = rewrite_text("# hi\nport 7001\nmaxclients 7\n", &cur, &def);
        assert_eq!(
            out,
            "# hi\nport 7001\nmaxclients 5\n# Generated by CONFIG REWRITE\ntimeout 9\n"
        );
    }

    #[test]
    fn rewrite_writes_replicaof_as_redis_reads_it() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let def = vec![
            pair("replicaof", ""),
            pair("slaveof", ""),
            pair("slave-read-only", "yes"),
        ];
        let cur = vec![
            pair("replicaof", "10.0.0.1 6379"),
            pair("slaveof", "10.0.0.1 6379"),
            pair("slave-read-only", "no"),
        ];
        let out = rewrite_text("", &cur, &def);
        assert_eq!(
            out,
            "# Generated by CONFIG REWRITE\nreplicaof 10.0.0.1 6379\n"
        );
        // Promoted: a replicaof line in the file goes away.
        let cur = vec![pair("replicaof", ""), pair("slaveof", "")];
        assert_eq!(rewrite_text("replicaof 10.0.0.1 6379\n", &cur, &def), "");
    }
}
