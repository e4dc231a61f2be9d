//! The ACL command (SETUSER, GETUSER, DELUSER, LIST, USERS, WHOAMI, CAT, LOG, GENPASS,
//! DRYRUN, LOAD, SAVE, HELP) over the process-wide user table in `crate::acl`. Runs on the
//! connection's own shard; the table is shared by every shard behind its mutex.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::args::{arg, is, text};
use super::table::{table, CommandSpec, Exec, KeySpec, ADMIN, LOADING, NOSCRIPT, STALE};
use super::ConnCtx;
use crate::acl;
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("acl", -2, ADMIN | NOSCRIPT | LOADING | STALE, KeySpec::none(), Exec::Conn(acl_cmd))
        .sub_flags(&[
            ("cat", NOSCRIPT | LOADING | STALE, 0),
            ("deluser", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("dryrun", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("genpass", NOSCRIPT | LOADING | STALE, 0),
            ("getuser", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("list", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("load", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("log", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("save", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("setuser", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("users", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("whoami", NOSCRIPT | LOADING | STALE, 0),
            ("help", LOADING | STALE, 0),
        ])
        .doc("server", "6.0.0", "A container for Access List Control commands.", "subcommand [argument ...]")
        .subs(&[
            ("cat", -2, "[category]"),
            ("deluser", -3, "username [username ...]"),
            ("dryrun", -4, "username command [arg [arg ...]]"),
            ("genpass", -2, "[bits]"),
            ("getuser", 3, "username"),
            ("list", 2, ""),
            ("load", 2, ""),
            ("log", -2, "[count | RESET]"),
            ("save", 2, ""),
            ("setuser", -3, "username [rule [rule ...]]"),
            ("users", 2, ""),
            ("whoami", 2, ""),
            ("help", 2, ""),
        ]),
];

const ACL_HELP: &[&str] = &[
    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CAT [<category>]",
    "    List all commands that belong to <category>, or all command categories",
    "    when no category is specified.",
    "DELUSER <username> [<username> ...]",
    "    Delete a list of users.",
    "DRYRUN <username> <command> [<arg> ...]",
    "    Returns whether the user can execute the given command without executing the command.",
    "GETUSER <username>",
    "    Get the user's details.",
    "GENPASS [<bits>]",
    "    Generate a secure 256-bit user password. The optional `bits` argument can",
    "    be used to specify a different size.",
    "LIST",
    "    Show users details in config file format.",
    "LOAD",
    "    Reload users from the ACL file.",
    "LOG [<count> | RESET]",
    "    Show the ACL log entries.",
    "SAVE",
    "    Save the current config to the ACL file.",
    "SETUSER <username> <attribute> [<attribute> ...]",
    "    Create or modify a user with the specified attributes.",
    "USERS",
    "    List all the registered usernames.",
    "WHOAMI",
    "    Return the current connection username.",
    "HELP",
    "    Prints this help.",
];

const NO_ACLFILE: &str = "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.";

fn acl_cmd(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let sub = super::check_subcommand(table().row("acl").ok_or(CmdError::Syntax)?, argv)?;
    let r = match sub.as_str() {
        "help" => Reply::help(ACL_HELP),
        "whoami" => Reply::bulk(ctx.client().user.name.clone()),
        "users" => Reply::Array(
            acl::with(|a| a.users.keys().cloned().collect::<Vec<_>>())
                .into_iter()
                .map(Reply::bulk)
                .collect(),
        ),
        "list" => Reply::Array(
            acl::with(|a| a.users.values().map(|u| u.describe()).collect::<Vec<_>>())
                .into_iter()
                .map(Reply::bulk)
                .collect(),
        ),
        "setuser" => {
            let name = text(arg(argv, 2)?);
            let rules: Vec<String> = argv.iter().skip(3).map(|r| text(r)).collect();
            acl::setuser(&name, &rules).map_err(CmdError::err)?;
            refresh_auth_required(ctx);
            Reply::Ok
        }
        "getuser" => {
            let name = text(arg(argv, 2)?);
            let Some(u) = acl::user(&name) else {
                return Ok(Reply::Null);
            };
            let (flags, passwords, commands, keys, channels) = u.fields();
            Reply::Map(vec![
                (
                    Reply::bulk("flags"),
                    Reply::Array(flags.into_iter().map(Reply::bulk).collect()),
                ),
                (
                    Reply::bulk("passwords"),
                    Reply::Array(passwords.into_iter().map(Reply::bulk).collect()),
                ),
                (Reply::bulk("commands"), Reply::bulk(commands)),
                (Reply::bulk("keys"), Reply::bulk(keys)),
                (Reply::bulk("channels"), Reply::bulk(channels)),
                (
                    Reply::bulk("selectors"),
                    Reply::Array(
                        u.selectors
                            .iter()
                            .map(|s| {
                                let (commands, keys, channels) = s.fields();
                                Reply::Map(vec![
                                    (Reply::bulk("commands"), Reply::bulk(commands)),
                                    (Reply::bulk("keys"), Reply::bulk(keys)),
                                    (Reply::bulk("channels"), Reply::bulk(channels)),
                                ])
                            })
                            .collect(),
                    ),
                ),
            ])
        }
        "deluser" => {
            let names: Vec<String> = argv.iter().skip(2).map(|n| text(n)).collect();
            if names.iter().any(|n| n == "default") {
                return Err(CmdError::err("The 'default' user cannot be removed"));
            }
            let n = acl::with(|a| {
                names
                    .iter()
                    .filter(|n| a.users.remove(*n).is_some())
                    .count()
            });
            acl::changed();
            Reply::Int(n as i64)
        }
        "cat" => match argv.get(2) {
            None => Reply::Array(
                crate::commands::table::CATEGORY_NAMES
                    .iter()
                    .map(|c| Reply::bulk(*c))
                    .collect(),
            ),
            Some(c) => {
                let cat = text(c).to_ascii_lowercase();
                // Redis takes the name without `@` only.
                let Some(bit) =
                    crate::commands::table::category_bit(&cat).filter(|_| !cat.starts_with('@'))
                else {
                    return Err(CmdError::err(format!("Unknown category '{}'", text(c))));
                };
                Reply::Array(
                    table()
                        .entries()
                        .filter(|(_, _, c)| c & bit != 0)
                        .map(|(n, _, _)| Reply::bulk(n))
                        .collect(),
                )
            }
        },
        "genpass" => {
            let bits = match argv.get(2) {
                Some(b) => parse_i64(b)
                    .ok_or(CmdError::NotInteger)
                    .and_then(|n| {
                        (n > 0 && n <= 4096).then_some(n).ok_or_else(|| CmdError::err("ACL GENPASS argument must be the number of bits for the output password, a positive number up to 4096"))
                    })?,
                None => 256,
            };
            let chars = (bits as usize).div_ceil(4);
            let mut raw = vec![0u8; chars.div_ceil(2)];
            if !crate::runtime::sys::random_bytes(&mut raw) {
                return Err(CmdError::err("cannot read random bytes"));
            }
            let mut hex = acl::hex(&raw);
            hex.truncate(chars);
            Reply::bulk(hex)
        }
        "log" => {
            if argv.get(2).is_some_and(|a| is(a, "reset")) {
                acl::with(|a| a.log.clear());
                return Ok(Reply::Ok);
            }
            let count = match argv.get(2) {
                Some(c) => parse_i64(c)
                    .filter(|&n| n >= 0)
                    .ok_or(CmdError::NotInteger)? as usize,
                None => 10,
            };
            let entries = acl::with(|a| a.log.iter().take(count).cloned().collect::<Vec<_>>());
            Reply::Array(
                entries
                    .into_iter()
                    .map(|e| {
                        Reply::Map(vec![
                            (Reply::bulk("count"), Reply::Int(e.count as i64)),
                            (Reply::bulk("reason"), Reply::bulk(e.reason)),
                            (Reply::bulk("context"), Reply::bulk(e.context)),
                            (Reply::bulk("object"), Reply::bulk(e.object)),
                            (Reply::bulk("username"), Reply::bulk(e.username)),
                            (
                                Reply::bulk("age-seconds"),
                                // Milliseconds, as Redis keeps them.
                                Reply::Double(e.created.elapsed().as_millis() as f64 / 1000.0),
                            ),
                            (Reply::bulk("client-info"), Reply::bulk(e.client_info)),
                        ])
                    })
                    .collect(),
            )
        }
        "dryrun" => {
            let name = text(arg(argv, 2)?);
            let Some(u) = acl::user(&name) else {
                return Err(CmdError::err(format!("User '{name}' not found")));
            };
            let cmd = argv.get(3..).unwrap_or_default();
            let Some((id, spec)) = table().lookup(arg(argv, 3)?) else {
                return Err(CmdError::err(format!(
                    "Command '{}' not found",
                    text(arg(argv, 3)?)
                )));
            };
            super::check_arity(spec, cmd)?;
            match acl::denied(&u, id, spec, cmd) {
                None => Reply::Ok,
                Some((_, reason, object)) => Reply::bulk(acl::dryrun_text(reason, &object)),
            }
        }
        "load" | "save" => {
            let Some(path) = ctx.eng().shared.cfg.aclfile.clone() else {
                return Err(CmdError::err(NO_ACLFILE));
            };
            if sub == "save" {
                let body: String =
                    acl::with(|a| a.users.values().map(|u| u.describe() + "\n").collect());
                let tmp = format!("{path}.tmp-{}", std::process::id());
                std::fs::write(&tmp, body)
                    .and_then(|_| std::fs::rename(&tmp, &path))
                    .map_err(|e| CmdError::err(format!("There was an error trying to save the ACLs. Please check the server logs for more information ({e})")))?;
            } else {
                crate::acl::load_file(&path).map_err(CmdError::err)?;
                refresh_auth_required(ctx);
            }
            Reply::Ok
        }
        _ => Reply::help(ACL_HELP),
    };
    Ok(r)
}

/// After a change to the default user: whether new connections must authenticate.
fn refresh_auth_required(ctx: &mut ConnCtx) {
    ctx.eng()
        .shared
        .tun
        .auth_required
        .store(acl::auth_required(), Ordering::Relaxed);
}
