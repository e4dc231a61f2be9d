//! Scripting commands: EVAL, EVALSHA, EVAL_RO, EVALSHA_RO and SCRIPT. The EVAL family are
//! script rows (`Exec::Script`, `KeySpec::script(2)`): routing sends each to the shard owning
//! its declared keys (the connection's shard when there are none) and runs the script there,
//! in that shard's VM (`super::vm`); declared keys on several shards go through `cross`,
//! which locks them all (`super::host`). SCRIPT runs on the connection's shard; FLUSH
//! reaches every shard by message.

use bytes::Bytes;

use super::host::{self, Host};
use super::{vm, Kill};
use crate::commands::args::{arg, is};
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, ScriptEntry, ALLOW_BUSY, CAT_SCRIPTING, LOADING, MAY_REPLICATE,
    NOSCRIPT, NO_MANDATORY_KEYS, READONLY, SKIP_MONITOR, STALE,
};
use crate::commands::ConnCtx;
use crate::error::{CmdError, CmdResult, NUMKEYS_TOO_MANY};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;

const G: &str = "scripting";
const EVAL_FLAGS: u32 = NOSCRIPT | STALE | SKIP_MONITOR | NO_MANDATORY_KEYS;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("eval", -3, EVAL_FLAGS | MAY_REPLICATE, KeySpec::script(2), Exec::Script(ScriptEntry::Eval))
        .acl(CAT_SCRIPTING)
        .cross(eval_cross)
        .doc(G, "2.6.0", "Execute a Lua script server side", "script numkeys [key [key ...]] [arg [arg ...]]"),
    CommandSpec::new("evalsha", -3, EVAL_FLAGS | MAY_REPLICATE, KeySpec::script(2), Exec::Script(ScriptEntry::EvalSha))
        .acl(CAT_SCRIPTING)
        .cross(evalsha_cross)
        .doc(G, "2.6.0", "Execute a Lua script server side", "sha1 numkeys [key [key ...]] [arg [arg ...]]"),
    CommandSpec::new("eval_ro", -3, EVAL_FLAGS | READONLY, KeySpec::script(2), Exec::Script(ScriptEntry::EvalRo))
        .acl(CAT_SCRIPTING)
        .cross(eval_cross)
        .doc(G, "7.0.0", "Execute a read-only Lua script server side", "script numkeys [key [key ...]] [arg [arg ...]]"),
    CommandSpec::new("evalsha_ro", -3, EVAL_FLAGS | READONLY, KeySpec::script(2), Exec::Script(ScriptEntry::EvalShaRo))
        .acl(CAT_SCRIPTING)
        .cross(evalsha_cross)
        .doc(G, "7.0.0", "Execute a read-only Lua script server side", "sha1 numkeys [key [key ...]] [arg [arg ...]]"),
    CommandSpec::new("script", -2, NOSCRIPT, KeySpec::none(), Exec::Conn(script))
        .sub_flags(&[
            ("help", LOADING | STALE, CAT_SCRIPTING),
            ("load", NOSCRIPT | STALE, CAT_SCRIPTING),
            ("exists", NOSCRIPT, CAT_SCRIPTING),
            ("flush", NOSCRIPT, CAT_SCRIPTING),
            ("kill", NOSCRIPT | ALLOW_BUSY, CAT_SCRIPTING),
            ("debug", NOSCRIPT, CAT_SCRIPTING),
        ])
        .doc(G, "2.6.0", "A container for Lua scripts management commands", "subcommand [argument ...]")
        .subs(&[
            ("help", 2, ""),
            ("load", 3, "script"),
            ("exists", -3, "sha1 [sha1 ...]"),
            ("flush", -2, "[ASYNC | SYNC]"),
            ("kill", 2, ""),
            ("debug", 3, "YES | SYNC | NO"),
        ]),
];

const SCRIPT_HELP: &[&str] = &[
    "SCRIPT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DEBUG (YES|SYNC|NO)",
    "    Set the debug mode for subsequent scripts executed.",
    "EXISTS <sha1> [<sha1> ...]",
    "    Return information about the existence of the scripts in the script cache.",
    "FLUSH [ASYNC|SYNC]",
    "    Flush the Lua scripts cache. Very dangerous on replicas.",
    "    When called without the optional mode argument, the behavior is determined by the",
    "    lazyfree-lazy-user-flush configuration directive. Valid modes are:",
    "    * ASYNC: Asynchronously flush the scripts cache.",
    "    * SYNC: Synchronously flush the scripts cache.",
    "KILL",
    "    Kill the currently executing Lua script.",
    "LOAD <script>",
    "    Load a script into the scripts cache without executing it.",
    "HELP",
    "    Prints this help.",
];

pub(super) fn eval(ctx: &mut Host, argv: &[Bytes]) -> CmdResult {
    run(ctx, argv, false, false)
}

pub(super) fn evalsha(ctx: &mut Host, argv: &[Bytes]) -> CmdResult {
    run(ctx, argv, true, false)
}

pub(super) fn eval_ro(ctx: &mut Host, argv: &[Bytes]) -> CmdResult {
    run(ctx, argv, false, true)
}

pub(super) fn evalsha_ro(ctx: &mut Host, argv: &[Bytes]) -> CmdResult {
    run(ctx, argv, true, true)
}

/// `script|sha1 numkeys key... arg...`: Redis's numkeys errors, then the script.
fn run(ctx: &mut Host, argv: &[Bytes], by_sha: bool, ro: bool) -> CmdResult {
    let n = parse_i64(arg(argv, 2)?).ok_or(CmdError::NotInteger)?;
    if n < 0 {
        return Err(CmdError::err("Number of keys can't be negative"));
    }
    let rest = argv.get(3..).unwrap_or_default();
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > rest.len() {
        return Err(CmdError::coded(NUMKEYS_TOO_MANY));
    }
    let (keys, args) = rest.split_at(n);
    let body = arg(argv, 1)?;
    let src = if by_sha {
        vm::Source::Sha(body)
    } else {
        vm::Source::Body(body)
    };
    vm::eval(ctx, src, keys, args, ro)
}

/// Declared keys on several shards (or undeclared keys allowed): Redis's own checks first
/// (a bad script or an unknown sha is reported before any shard is locked), then the
/// script runs with every shard it needs locked (`super::host::cross`).
fn eval_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    vm::prepare(vm::Source::Body(arg(&argv, 1)?))?;
    host::cross(ctx, argv)
}

fn evalsha_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    vm::prepare(vm::Source::Sha(arg(&argv, 1)?))?;
    host::cross(ctx, argv)
}

fn script(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    match crate::commands::server::subcommand("script", argv)?.as_str() {
        "load" => {
            let sha = vm::load(arg(argv, 2)?)?;
            Ok(Reply::Bulk(Bytes::copy_from_slice(&sha)))
        }
        "exists" => Ok(Reply::Array(
            argv.iter()
                .skip(2)
                .map(|s| {
                    let known = super::sha_key(s).and_then(|k| super::body_of(&k));
                    Reply::Int(i64::from(known.is_some()))
                })
                .collect(),
        )),
        "flush" => {
            let mode_ok = match argv.len() {
                2 => true,
                3 => argv.get(2).is_some_and(|m| is(m, "sync") || is(m, "async")),
                _ => false,
            };
            if !mode_ok {
                return Err(CmdError::err("SCRIPT FLUSH only support SYNC|ASYNC option"));
            }
            super::forget_all();
            let ticket = ctx.defer();
            ctx.eng().on_all_shards(
                |_| vm::reset(),
                false,
                move |w, _| w.complete(ticket, Reply::Ok),
            );
            Ok(Reply::Ok)
        }
        "kill" => match super::kill_busy() {
            Kill::Killed => Ok(Reply::Ok),
            Kill::NotBusy => Err(CmdError::coded(super::NOTBUSY)),
            Kill::Unkillable => Err(CmdError::coded(super::UNKILLABLE)),
        },
        "debug" => {
            let mode = arg(argv, 2)?;
            if is(mode, "no") {
                Ok(Reply::Ok)
            } else if is(mode, "yes") || is(mode, "sync") {
                Err(CmdError::err(
                    "SCRIPT DEBUG (the Lua debugger) is not supported by shardis",
                ))
            } else {
                Err(CmdError::err("Use SCRIPT DEBUG YES/SYNC/NO"))
            }
        }
        _ => Ok(Reply::help(SCRIPT_HELP)),
    }
}
