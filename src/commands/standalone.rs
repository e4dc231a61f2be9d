//! What a standalone redis-server 7.0 (`cluster-enabled no`, no modules) answers for the
//! cluster and module commands, so clients and tools that probe for them get Redis's
//! replies instead of "unknown command": CLUSTER (every subcommand), READONLY, READWRITE
//! and ASKING say cluster support is disabled; MODULE LIST is empty, and MODULE LOAD /
//! LOADEX / UNLOAD are refused as Redis refuses them by default (`enable-module-command
//! no`); with it enabled they fail as an unloadable module fails (the log says why) and
//! UNLOAD finds no such module. Runs on the connection's shard; touches nothing.

use bytes::Bytes;

use super::args::{arg, text};
use super::table::{
    CommandSpec, Exec, KeySpec, ADMIN, CAT_CONNECTION, FAST, LOADING, NOSCRIPT, NO_ASYNC_LOADING,
    PROTECTED, STALE,
};
use super::ConnCtx;
use crate::config::Access;
use crate::engine::shared::Shared;
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;

/// The reply to every cluster command (`ERR ` is added by `CmdError::err`).
pub const CLUSTER_DISABLED: &str = "This instance has cluster support disabled";

/// CLUSTER's subcommands in Redis 7.0 (name, arity, synopsis): COMMAND shows them and the
/// handler tells them from unknown ones.
#[rustfmt::skip]
const CLUSTER_SUBS: &[(&str, i32, &str)] = &[
    ("addslots", -3, "slot [slot ...]"),
    ("addslotsrange", -4, "start-slot end-slot [start-slot end-slot ...]"),
    ("bumpepoch", 2, ""),
    ("count-failure-reports", 3, "node-id"),
    ("countkeysinslot", 3, "slot"),
    ("delslots", -3, "slot [slot ...]"),
    ("delslotsrange", -4, "start-slot end-slot [start-slot end-slot ...]"),
    ("failover", -2, "[FORCE | TAKEOVER]"),
    ("flushslots", 2, ""),
    ("forget", 3, "node-id"),
    ("getkeysinslot", 4, "slot count"),
    ("help", 2, ""),
    ("info", 2, ""),
    ("keyslot", 3, "key"),
    ("links", 2, ""),
    ("meet", -4, "ip port [cluster-bus-port]"),
    ("myid", 2, ""),
    ("nodes", 2, ""),
    ("replicas", 3, "node-id"),
    ("replicate", 3, "node-id"),
    ("reset", -2, "[HARD | SOFT]"),
    ("saveconfig", 2, ""),
    ("set-config-epoch", 3, "config-epoch"),
    ("setslot", -4, "slot <IMPORTING node-id | MIGRATING node-id | NODE node-id | STABLE>"),
    ("shards", 2, ""),
    ("slaves", 3, "node-id"),
    ("slots", 2, ""),
];

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("cluster", -2, STALE, KeySpec::none(), Exec::Conn(cluster))
        .sub_flags(&[
            ("addslots", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("addslotsrange", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("bumpepoch", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("count-failure-reports", ADMIN | STALE, 0),
            ("countkeysinslot", STALE, 0),
            ("delslots", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("delslotsrange", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("failover", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("flushslots", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("forget", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("getkeysinslot", STALE, 0),
            ("help", LOADING | STALE, 0),
            ("info", STALE, 0),
            ("keyslot", STALE, 0),
            ("links", STALE, 0),
            ("meet", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("myid", STALE, 0),
            ("nodes", STALE, 0),
            ("replicas", ADMIN | STALE, 0),
            ("replicate", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("reset", ADMIN | NOSCRIPT | STALE, 0),
            ("saveconfig", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("set-config-epoch", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("setslot", ADMIN | STALE | NO_ASYNC_LOADING, 0),
            ("shards", STALE, 0),
            ("slaves", ADMIN | STALE, 0),
            ("slots", STALE, 0),
        ])
        .doc("cluster", "3.0.0", "A container for cluster commands", "subcommand [argument ...]")
        .subs(CLUSTER_SUBS),
    CommandSpec::new("readonly", 1, LOADING | STALE | FAST, KeySpec::none(), Exec::Conn(cluster))
        .acl(CAT_CONNECTION)
        .doc("cluster", "3.0.0", "Enables read queries for a connection to a cluster replica node", ""),
    CommandSpec::new("readwrite", 1, LOADING | STALE | FAST, KeySpec::none(), Exec::Conn(cluster))
        .acl(CAT_CONNECTION)
        .doc("cluster", "3.0.0", "Disables read queries for a connection to a cluster replica node", ""),
    CommandSpec::new("asking", 1, FAST, KeySpec::none(), Exec::Conn(cluster))
        .acl(CAT_CONNECTION)
        .doc("cluster", "3.0.0", "Sent by cluster clients after an -ASK redirect", ""),
    CommandSpec::new("module", -2, ADMIN | NOSCRIPT, KeySpec::none(), Exec::Conn(module))
        .sub_flags(&[
            ("help", LOADING | STALE, 0),
            ("list", ADMIN | NOSCRIPT, 0),
            ("load", ADMIN | NOSCRIPT | NO_ASYNC_LOADING | PROTECTED, 0),
            ("loadex", ADMIN | NOSCRIPT | NO_ASYNC_LOADING | PROTECTED, 0),
            ("unload", ADMIN | NOSCRIPT | NO_ASYNC_LOADING | PROTECTED, 0),
        ])
        .doc("server", "4.0.0", "A container for module commands", "subcommand [argument ...]")
        .subs(&[
            ("help", 2, ""),
            ("list", 2, ""),
            ("load", -3, "path [arg [arg ...]]"),
            ("loadex", -3, "path [CONFIGS name value [CONFIGS name value ...]] [ARGS args [args ...]]"),
            ("unload", 3, "name"),
        ])
        // Refused unless `enable-module-command` allows them, before they run or queue.,
];

/// Every CLUSTER subcommand, READONLY, READWRITE and ASKING: as a standalone Redis.
fn cluster(_ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let is_cluster = arg(argv, 0).is_ok_and(|n| n.eq_ignore_ascii_case(b"cluster"));
    if is_cluster {
        let sub = arg(argv, 1)?;
        if !CLUSTER_SUBS
            .iter()
            .any(|(n, _, _)| sub.eq_ignore_ascii_case(n.as_bytes()))
        {
            return Err(CmdError::UnknownSubcommand {
                sub: text(sub),
                cmd: "cluster".into(),
            });
        }
    }
    Err(CmdError::err(CLUSTER_DISABLED))
}

const MODULE_HELP: &[&str] = &[
    "MODULE <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LIST",
    "    Return a list of loaded modules.",
    "LOAD <path> [<arg> ...]",
    "    Load a module library from <path>, passing to it any optional arguments.",
    "LOADEX <path> [[CONFIG NAME VALUE] [CONFIG NAME VALUE]] [ARGS ...]",
    "    Load a module library from <path>, while passing it module configurations and optional arguments.",
    "UNLOAD <name>",
    "    Unload a module.",
    "HELP",
    "    Prints this help.",
];

/// What `enable-module-command` allows (MODULE's PROTECTED subcommands check it before
/// they run or are queued, as Redis does).
pub fn module_access(shared: &Shared) -> Access {
    let set = shared
        .tun
        .text
        .lock()
        .ok()
        .and_then(|m| m.get("enable-module-command").cloned());
    set.as_deref().and_then(Access::parse).unwrap_or(Access::No)
}

/// MODULE: no module is ever loaded here. LOAD, LOADEX and UNLOAD reach this only where
/// `enable-module-command` allows them (`module_access`; startup warns that modules are
/// not supported), and then fail as an unloadable module and an unknown one fail in Redis.
fn module(_ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let sub = arg(argv, 1)?;
    let low = text(sub).to_ascii_lowercase();
    match low.as_str() {
        "help" => Ok(Reply::help(MODULE_HELP)),
        "list" => Ok(Reply::Array(Vec::new())),
        "load" | "loadex" => {
            crate::log::warning(&format!(
                "Module {} failed to load: shardis does not load Redis modules",
                text(arg(argv, 2)?)
            ));
            Err(CmdError::err(
                "Error loading the extension. Please check the server logs.",
            ))
        }
        "unload" => Err(CmdError::err(
            "Error unloading module: no such module with that name",
        )),
        _ => Err(CmdError::UnknownSubcommand {
            sub: text(sub),
            cmd: "module".into(),
        }),
    }
}
