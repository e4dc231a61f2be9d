//! Function commands: FCALL / FCALL_RO (script rows routed by their declared keys, as EVAL:
//! one shard, or several locked together) and FUNCTION (runs on the connection's shard). A
//! library is compiled on the connection's shard to check it, then put in the process-wide
//! registry (`super::functions`); every shard's VM recompiles from the registry when its
//! generation moves, so a library loaded anywhere is callable on every shard.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::functions::{self as registry, Policy};
use super::host::{self, Host};
use super::{vm, Kill};
use crate::commands::args::{arg, is};
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, ScriptEntry, ALLOW_BUSY, CAT_SCRIPTING, DENYOOM, LOADING,
    MAY_REPLICATE, NOSCRIPT, NO_MANDATORY_KEYS, READONLY, SKIP_MONITOR, STALE, WRITE,
};
use crate::commands::ConnCtx;
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;

const G: &str = "scripting";
const FCALL_FLAGS: u32 = NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("fcall", -3, FCALL_FLAGS | MAY_REPLICATE, KeySpec::script(2), Exec::Script(ScriptEntry::FCall))
        .acl(CAT_SCRIPTING)
        .cross(fcall_cross)
        .doc(G, "7.0.0", "Invoke a function", "function numkeys [key [key ...]] [arg [arg ...]]"),
    CommandSpec::new("fcall_ro", -3, FCALL_FLAGS | READONLY, KeySpec::script(2), Exec::Script(ScriptEntry::FCallRo))
        .acl(CAT_SCRIPTING)
        .cross(fcall_cross)
        .doc(G, "7.0.0", "Invoke a read-only function", "function numkeys [key [key ...]] [arg [arg ...]]"),
    CommandSpec::new("function", -2, NOSCRIPT, KeySpec::none(), Exec::Conn(function))
        .sub_flags(&[
            ("help", LOADING | STALE, CAT_SCRIPTING),
            ("load", WRITE | DENYOOM | NOSCRIPT, CAT_SCRIPTING),
            ("delete", WRITE | NOSCRIPT, CAT_SCRIPTING),
            ("flush", WRITE | NOSCRIPT, CAT_SCRIPTING),
            ("list", NOSCRIPT, CAT_SCRIPTING),
            ("dump", NOSCRIPT, CAT_SCRIPTING),
            ("restore", WRITE | DENYOOM | NOSCRIPT, CAT_SCRIPTING),
            ("stats", NOSCRIPT | ALLOW_BUSY, CAT_SCRIPTING),
            ("kill", NOSCRIPT | ALLOW_BUSY, CAT_SCRIPTING),
        ])
        .doc(G, "7.0.0", "A container for function commands", "subcommand [argument ...]")
        .subs(&[
            ("help", 2, ""),
            ("load", -3, "[REPLACE] function-code"),
            ("delete", 3, "library-name"),
            ("flush", -2, "[ASYNC | SYNC]"),
            ("list", -2, "[LIBRARYNAME library-name-pattern] [WITHCODE]"),
            ("dump", 2, ""),
            ("restore", -3, "serialized-value [FLUSH | APPEND | REPLACE]"),
            ("stats", 2, ""),
            ("kill", 2, ""),
        ])
        // As Redis 7.0: these change the data set (refused on a read-only replica, under
        // MISCONF or NOREPLICAS; LOAD and RESTORE under maxmemory too).,
];

const FUNCTION_HELP: &[&str] = &[
    "FUNCTION <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "LOAD [REPLACE] <FUNCTION CODE>",
    "    Create a new library with the given library name and code.",
    "DELETE <LIBRARY NAME>",
    "    Delete the given library.",
    "LIST [LIBRARYNAME PATTERN] [WITHCODE]",
    "    Return general information on all the libraries:",
    "    * Library name",
    "    * The engine used to run the Library",
    "    * Library description",
    "    * Functions list",
    "    * Library code (if WITHCODE is given)",
    "    It also possible to get only function that matches a pattern using LIBRARYNAME argument.",
    "STATS",
    "    Return information about the current function running:",
    "    * Function name",
    "    * Command used to run the function",
    "    * Duration in MS that the function is running",
    "    If no function is running, return nil",
    "    In addition, returns a list of available engines.",
    "KILL",
    "    Kill the current running function.",
    "FLUSH [ASYNC|SYNC]",
    "    Delete all the libraries.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the libraries.",
    "    * SYNC: Synchronously flush the libraries.",
    "DUMP",
    "    Return a serialized payload representing the current libraries, can be restored using FUNCTION RESTORE command",
    "RESTORE <PAYLOAD> [FLUSH|APPEND|REPLACE]",
    "    Restore the libraries represented by the given payload, it is possible to give a restore policy to",
    "    control how to handle existing libraries (default APPEND):",
    "    * FLUSH: delete all existing libraries.",
    "    * APPEND: appends the restored libraries to the existing libraries. On collision, abort.",
    "    * REPLACE: appends the restored libraries to the existing libraries, On collision, replace the old",
    "      libraries with the new libraries (notice that even on this option there is a chance of failure",
    "      in case of functions name collision with another library).",
    "HELP",
    "    Prints this help.",
];

pub(super) fn fcall(ctx: &mut Host, argv: &[Bytes]) -> CmdResult {
    vm::fcall(
        ctx,
        arg(argv, 1)?,
        argv.get(2..).unwrap_or_default(),
        false,
        split,
    )
}

pub(super) fn fcall_ro(ctx: &mut Host, argv: &[Bytes]) -> CmdResult {
    vm::fcall(
        ctx,
        arg(argv, 1)?,
        argv.get(2..).unwrap_or_default(),
        true,
        split,
    )
}

/// `numkeys key... arg...` into keys and arguments, with `fcallCommandGeneric`'s errors.
fn split(rest: &[Bytes]) -> vm::Split<'_> {
    let n = rest
        .first()
        .and_then(|b| parse_i64(b))
        .ok_or_else(|| CmdError::err("Bad number of keys provided"))?;
    let rest = rest.get(1..).unwrap_or_default();
    if n > rest.len() as i64 {
        return Err(CmdError::err(
            "Number of keys can't be greater than number of args",
        ));
    }
    let n = usize::try_from(n).map_err(|_| CmdError::err("Number of keys can't be negative"))?;
    Ok(rest.split_at(n))
}

/// Declared keys on several shards (or undeclared keys allowed): Redis's own checks first,
/// then the function runs with every shard it needs locked (`super::host::cross`).
fn fcall_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    if !registry::exists(arg(&argv, 1)?) {
        return Err(CmdError::err("Function not found"));
    }
    split(argv.get(2..).unwrap_or_default())?;
    host::cross(ctx, argv)
}

fn function(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let sub = crate::commands::server::subcommand("function", argv)?;
    let reply = run_function(ctx, &sub, argv)?;
    // The changes go to the journal as sent, as Redis propagates them: replicas and the
    // append-only file get them (`replay_from_log` runs them back).
    if matches!(sub.as_str(), "load" | "delete" | "flush" | "restore") {
        let db = ctx.client().db;
        let args: Vec<&[u8]> = argv.iter().map(|a| &a[..]).collect();
        crate::shard::journal::record(&mut ctx.eng().shard, db, &args);
    }
    Ok(reply)
}

/// A FUNCTION record of an append-only log, at startup: run as the command would.
pub fn replay_from_log(argv: &[Bytes]) -> Result<(), String> {
    let sub = crate::commands::server::subcommand("function", argv).map_err(|e| e.to_string())?;
    match sub.as_str() {
        "load" => load(argv).map(|_| ()),
        "delete" => arg(argv, 2).and_then(|n| registry::delete(n)),
        "flush" => {
            registry::flush();
            Ok(())
        }
        "restore" => restore(argv).map(|_| ()),
        _ => Ok(()),
    }
    .map_err(|e| e.to_string())
}

fn run_function(ctx: &mut ConnCtx, sub: &str, argv: &[Bytes]) -> CmdResult {
    match sub {
        "load" => load(argv),
        "delete" => {
            registry::delete(arg(argv, 2)?)?;
            Ok(Reply::Ok)
        }
        "flush" => {
            let mode_ok = match argv.len() {
                2 => true,
                3 => argv.get(2).is_some_and(|m| is(m, "sync") || is(m, "async")),
                _ => return Err(sub_syntax(argv)),
            };
            if !mode_ok {
                return Err(CmdError::err(
                    "FUNCTION FLUSH only supports SYNC|ASYNC option",
                ));
            }
            registry::flush();
            Ok(Reply::Ok)
        }
        "list" => list(argv),
        "dump" => {
            let compress = ctx.eng().shared.tun.rdbcompression.load(Ordering::Relaxed);
            Ok(Reply::Bulk(registry::dump(compress)))
        }
        "restore" => restore(argv),
        "stats" => Ok(registry::stats()),
        "kill" => match super::kill_busy() {
            Kill::Killed => Ok(Reply::Ok),
            Kill::NotBusy => Err(CmdError::coded(super::NOTBUSY)),
            Kill::Unkillable => Err(CmdError::coded(super::UNKILLABLE)),
        },
        _ => Ok(Reply::help(FUNCTION_HELP)),
    }
}

fn sub_syntax(argv: &[Bytes]) -> CmdError {
    let sub = argv.get(1).map(|s| String::from_utf8_lossy(s).into_owned());
    CmdError::subcommand_syntax(&sub.unwrap_or_default(), "function")
}

/// FUNCTION LOAD [REPLACE] code: Redis's checks in its order (options, metadata, an
/// existing library, compile, registration, name clashes).
/// How `persist` lists the libraries for a file and installs a file's (see
/// `persist::FunctionHooks`).
pub fn persist_hooks() -> crate::persist::FunctionHooks {
    crate::persist::FunctionHooks {
        codes: || {
            registry::snapshot()
                .1
                .iter()
                .map(|l| l.code.clone())
                .collect()
        },
        replace: replace_from_file,
        replay: replay_from_log,
    }
}

/// A loaded file's libraries replace the current ones: each compiled here first, then
/// installed at once (nothing changes if one fails to compile).
fn replace_from_file(codes: &[Bytes]) -> Result<(), String> {
    if codes.is_empty() {
        if !registry::snapshot().1.is_empty() {
            registry::flush();
        }
        return Ok(());
    }
    let mut libs = Vec::with_capacity(codes.len());
    for code in codes {
        let lib = vm::compile_library(code).map_err(|e| {
            format!(
                "Failed loading a function library from the RDB file: {}",
                e.to_string().trim_start_matches("ERR ")
            )
        })?;
        libs.push(lib);
    }
    registry::restore(libs, Policy::Flush).map_err(|e| e.to_string())
}

fn load(argv: &[Bytes]) -> CmdResult {
    let mut replace = false;
    let mut i = 2;
    while i + 1 < argv.len() {
        let o = arg(argv, i)?;
        if !is(o, "replace") {
            return Err(CmdError::err(format!(
                "Unknown option given: {}",
                String::from_utf8_lossy(o)
            )));
        }
        replace = true;
        i += 1;
    }
    let code = arg(argv, i)?;
    let name = registry::metadata(code)?;
    if !replace {
        registry::check_absent(&name)?;
    }
    let lib = vm::compile_library(code)?;
    Ok(Reply::Bulk(registry::install(lib, replace)?))
}

fn list(argv: &[Bytes]) -> CmdResult {
    let (mut with_code, mut pattern) = (false, None);
    let mut i = 2;
    while let Some(a) = argv.get(i) {
        if !with_code && is(a, "withcode") {
            with_code = true;
        } else if pattern.is_none() && is(a, "libraryname") {
            i += 1;
            let p = argv
                .get(i)
                .ok_or_else(|| CmdError::err("library name argument was not given"))?;
            pattern = Some(p.as_ref());
        } else {
            return Err(CmdError::err(format!(
                "Unknown argument {}",
                String::from_utf8_lossy(a)
            )));
        }
        i += 1;
    }
    Ok(registry::list(pattern, with_code))
}

fn restore(argv: &[Bytes]) -> CmdResult {
    if argv.len() > 4 {
        return Err(sub_syntax(argv));
    }
    let policy = match argv.get(3) {
        None => Policy::Append,
        Some(p) if is(p, "flush") => Policy::Flush,
        Some(p) if is(p, "append") => Policy::Append,
        Some(p) if is(p, "replace") => Policy::Replace,
        Some(_) => {
            return Err(CmdError::err(
                "Wrong restore policy given, value should be either FLUSH, APPEND or REPLACE.",
            ))
        }
    };
    let codes = registry::parse_payload(arg(argv, 2)?)?;
    let mut libs: Vec<registry::Library> = Vec::with_capacity(codes.len());
    for code in &codes {
        let lib = vm::compile_library(code)?;
        if libs.iter().any(|l| l.name == lib.name) {
            return Err(CmdError::err(format!(
                "Library '{}' already exists",
                String::from_utf8_lossy(&lib.name)
            )));
        }
        if lib.funcs.is_empty() {
            return Err(CmdError::err("No functions registered"));
        }
        let seen = |n: &Bytes| libs.iter().any(|l| l.funcs.iter().any(|f| f.name == n));
        if let Some(f) = lib.funcs.iter().find(|f| seen(&f.name)) {
            return Err(CmdError::err(format!(
                "Function {} already exists",
                String::from_utf8_lossy(&f.name)
            )));
        }
        libs.push(lib);
    }
    registry::restore(libs, policy)?;
    Ok(Reply::Ok)
}
