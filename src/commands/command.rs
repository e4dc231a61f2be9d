//! COMMAND (Redis's server.c): COUNT, LIST, INFO, DOCS, GETKEYS and HELP, answered from the
//! command table on the connection's shard.

use bytes::Bytes;

use super::args::{glob_match, is, text};
use super::docs;
use super::server::subcommand;
use super::table::{table, CommandSpec};
use super::ConnCtx;
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;

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

pub(super) fn command(_ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let t = table();
    if argv.len() == 1 {
        return Ok(Reply::Array(t.visible().map(docs::command_info).collect()));
    }
    let names = argv.get(2..).unwrap_or_default();
    match subcommand("command", argv)?.as_str() {
        "count" => Ok(Reply::Int(t.visible().count() as i64)),
        "info" if names.is_empty() => {
            Ok(Reply::Array(t.visible().map(docs::command_info).collect()))
        }
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
                t.visible().collect()
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
    table().visible().flat_map(|s| {
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
                // As in Redis: any case, no `@` (then nothing matches).
                let cat = text(value);
                let bit = super::table::category_bit(&cat)
                    .filter(|_| !cat.starts_with('@'))
                    .unwrap_or(0);
                table()
                    .entries()
                    .filter(|(_, _, c)| c & bit != 0)
                    .map(|(n, _, _)| Reply::bulk(n))
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
    if spec.keys.first <= 0 && spec.keys.streams_from <= 0 {
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
