//! CONFIG (Redis's config.c): GET, SET (every shard applies a change before the reply), RESETSTAT,
//! REWRITE and HELP. Runs on the connection's shard.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::args::{glob_match, text};
use super::keys::all_shards;
use super::server::subcommand;
use super::ConnCtx;
use crate::engine::Engine;
use crate::engine::NetStats;
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::shard::CmdStat;

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

pub(super) fn config(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
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
    let all = ctx.eng().shared.tun.all();
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
    let shared = ctx.eng().shared.clone();
    let tun = &shared.tun;
    let current: std::collections::BTreeMap<String, String> = tun.all().into_iter().collect();
    let mut todo: Vec<(String, String)> = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks_exact(2) {
        let [raw_name, raw_value] = pair else {
            return Err(CmdError::Syntax);
        };
        let (name, value) = (text(raw_name).to_ascii_lowercase(), text(raw_value));
        // A directive of `directives` is accepted (with its warning) or refused with its
        // reason by `Tunables::set`, set before or not.
        if !current.contains_key(&name) && crate::directives::lookup(&name).is_none() {
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
            let access = ctx.eng().shared.cfg.protected_configs;
            let local = super::is_local(&ctx.client().addr);
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
        let was = ctx.eng().shared.aof.enabled.load(Ordering::SeqCst);
        if on && !was {
            super::persistence::rewrite_aof(ctx.eng(), true, |_, r| {
                if let Err(e) = r {
                    crate::log::warning(&format!("appendonly yes failed: {e}"));
                }
            });
        } else if !on && was {
            super::persistence::stop_aof(ctx.eng());
        }
    }
    // `save` and `stop-writes-on-bgsave-error` open or close the MISCONF gate at once.
    let shared = ctx.eng().shared.clone();
    shared.persist.refresh_gate(&shared.tun);
    // This shard's next command already sees a new eviction policy (others: next loop pass).
    let cfg = ctx.eng().shared.tun.evict_cfg();
    ctx.eng().shard.set_evict_cfg(cfg);
    Ok(Reply::Ok)
}

fn config_resetstat(ctx: &mut ConnCtx) -> CmdResult {
    let ticket = ctx.defer();
    all_shards(
        ctx.eng(),
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
        "shutdown-on-sigint",
        "shutdown-on-sigterm",
        "latency-tracking-info-percentiles",
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
    let shared = &ctx.eng().shared;
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Flag lists are written as Redis writes them, one word each (redis-server would read
    /// a quoted `"save force"` as one unknown flag).
    #[test]
    fn rewrite_writes_shutdown_flags_unquoted() {
        let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
        let def = vec![pair("shutdown-on-sigint", "default")];
        let cur = vec![pair("shutdown-on-sigint", "save force")];
        assert_eq!(
            rewrite_text("shutdown-on-sigint nosave\n", &cur, &def),
            "shutdown-on-sigint save force\n"
        );
    }
}
