//! CLIENT (Redis's networking.c): the container and its ID, GETNAME/SETNAME, INFO, LIST,
//! KILL, UNBLOCK, NO-EVICT, NO-TOUCH, SETINFO and HELP; REPLY, PAUSE, TRACKING and CACHING
//! are in `client_modes`. Runs on the connection's own shard; LIST, KILL and UNBLOCK visit
//! every shard, since each shard owns the connections it accepted.

use bytes::Bytes;

use super::FrontCtx;
use crate::commands::args::{arg, is, text};
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, ADMIN, CAT_CONNECTION, LOADING, NOSCRIPT, STALE,
};
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::server::connection::Conn;
use crate::server::worker::Worker;

const C: &str = "connection";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("client", -2, NOSCRIPT | LOADING | STALE, KeySpec::none(), Exec::Conn(front!(client)))
        .sub_flags(&[
            ("id", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("getname", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("setname", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("list", ADMIN | NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("info", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("kill", ADMIN | NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("setinfo", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("unblock", ADMIN | NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("no-evict", ADMIN | NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("no-touch", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("help", LOADING | STALE, CAT_CONNECTION),
            ("reply", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("pause", ADMIN | NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("unpause", ADMIN | NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("tracking", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("caching", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("getredir", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
            ("trackinginfo", NOSCRIPT | LOADING | STALE, CAT_CONNECTION),
        ])
        .doc(C, "2.4.0", "A container for client connection commands.", "subcommand [argument ...]")
        .subs(&[
            ("id", 2, ""),
            ("getname", 2, ""),
            ("setname", 3, "connection-name"),
            ("list", -2, "[TYPE <NORMAL | MASTER | REPLICA | PUBSUB>] [ID client-id [client-id ...]]"),
            ("info", 2, ""),
            ("kill", -3, "<ip:port | <[ID client-id] | [TYPE <NORMAL | MASTER | SLAVE | REPLICA | PUBSUB>] | [USER username] | [ADDR ip:port] | [LADDR ip:port] | [SKIPME <YES | NO>]> [[ID client-id] | [TYPE <NORMAL | MASTER | SLAVE | REPLICA | PUBSUB>] | [USER username] | [ADDR ip:port] | [LADDR ip:port] | [SKIPME <YES | NO>] ...]>"),
            ("setinfo", 4, "<LIB-NAME libname | LIB-VER libver>"),
            ("unblock", -3, "client-id [TIMEOUT | ERROR]"),
            ("no-evict", 3, "<ON | OFF>"),
            ("no-touch", 3, "<ON | OFF>"),
            ("help", 2, ""),
            ("reply", 3, "<ON | OFF | SKIP>"),
            ("pause", -3, "timeout [WRITE | ALL]"),
            ("unpause", 2, ""),
            ("tracking", -3, "<ON | OFF> [REDIRECT client-id] [PREFIX prefix [PREFIX prefix ...]] [BCAST] [OPTIN] [OPTOUT] [NOLOOP]"),
            ("caching", 3, "<YES | NO>"),
            ("getredir", 2, ""),
            ("trackinginfo", 2, ""),
        ]),
];

pub(super) fn validate_name(n: &[u8]) -> Result<(), CmdError> {
    if n.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(CmdError::err(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    Ok(())
}

/// Memory a connection holds (CLIENT LIST tot-mem, INFO mem_clients_normal): its query
/// buffer's block, its output buffers and a fixed 1 KiB for the rest of its state.
pub fn client_mem(c: &Conn) -> usize {
    c.buffer_bytes() + 1024
}

/// One CLIENT LIST line (Redis 7.0 field order), without the trailing newline.
pub fn client_line(c: &Conn) -> String {
    let ci = &c.client;
    let qbuf = c.rbuf.as_ref().map_or(0, |b| b.len());
    let qfree = c.rbuf.as_ref().map_or(0, |b| b.capacity() - b.len());
    let lossy = |b: &Option<Bytes>| b.as_ref().map(|v| text(v)).unwrap_or_default();
    format!(
        "id={} addr={} laddr={} fd={} name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} qbuf={} qbuf-free={} argv-mem=0 multi-mem=0 rbs={} rbp=0 obl={} oll={} omem={} tot-mem={} events=r cmd={} user={} redir={} resp={} lib-name={} lib-ver={}",
        ci.id,
        ci.addr,
        ci.laddr,
        c.fd,
        lossy(&ci.name),
        ci.created.elapsed().as_secs(),
        ci.last_active.elapsed().as_secs(),
        client_flags(c),
        ci.db,
        c.subs.channels.len(),
        c.subs.patterns.len(),
        c.subs.shard.len(),
        crate::server::tx::queued_len(c),
        qbuf,
        qfree,
        qbuf + qfree,
        c.out.len(),
        // Replies waiting behind a pending one (a reserved slot is not output yet).
        c.slots.iter().filter(|s| s.is_some()).count(),
        c.out.capacity(),
        client_mem(c),
        if ci.last_sub.is_empty() {
            ci.last_cmd.to_string()
        } else {
            format!("{}|{}", ci.last_cmd, ci.last_sub)
        },
        ci.user.name,
        c.track
            .as_ref()
            .filter(|t| t.on)
            .map_or(-1, |t| t.redirect as i64),
        ci.resp,
        lossy(&ci.lib_name),
        lossy(&ci.lib_ver),
    )
}

/// CLIENT LIST `flags=`: Redis's letters in its order (`P` subscribed, `e` no-evict), `N`
/// when none applies.
fn client_flags(c: &Conn) -> String {
    let mut f = String::new();
    if c.monitor {
        f.push('O');
    } else if crate::repl::master::is_replica(c) {
        f.push('S');
    }
    if c.master {
        f.push('M');
    }
    if c.subs.active() {
        f.push('P');
    }
    if crate::server::tx::in_multi(c) {
        f.push('x');
    }
    if c.waiting.is_some() {
        f.push('b');
    }
    if let Some(t) = c.track.as_ref().filter(|t| t.on) {
        f.push('t');
        if t.broken {
            f.push('R');
        }
        if t.bcast {
            f.push('B');
        }
    }
    if c.client.unix {
        f.push('U');
    }
    if c.client.no_evict {
        f.push('e');
    }
    if f.is_empty() {
        f.push('N');
    }
    f
}

const CLIENT_HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CACHING (YES|NO)",
    "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
    "GETREDIR",
    "    Return the client ID we are redirecting to when tracking is enabled.",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are:",
    "    * ADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made from the specified address",
    "    * LADDR (<ip:port>|<unixsocket>:0)",
    "      Kill connections made to specified local address",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Kill connections by type.",
    "    * USER <username>",
    "      Kill connections authenticated by <username>.",
    "    * SKIPME (YES|NO)",
    "      Skip killing current connection (default: yes).",
    "    * ID <client-id>",
    "      Kill connections by client id.",
    "LIST [options ...]",
    "    Return information about client connections. Options:",
    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
    "      Return clients of specified type.",
    "    * ID <client-id> [<client-id> ...]",
    "      Return clients with the given ids.",
    "UNPAUSE",
    "    Stop the current client pause, resuming traffic.",
    "PAUSE <timeout> [WRITE|ALL]",
    "    Suspend all, or just write, clients for <timeout> milliseconds.",
    "REPLY (ON|OFF|SKIP)",
    "    Control the replies sent to the current connection.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Set client library name or version.",
    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
    "    Unblock the specified blocked client.",
    "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
    "         [OPTIN] [OPTOUT] [NOLOOP]",
    "    Control server assisted client side caching.",
    "TRACKINGINFO",
    "    Report tracking status for the current connection.",
    "NO-EVICT (ON|OFF)",
    "    Protect current client connection from eviction.",
    "NO-TOUCH (ON|OFF)",
    "    Do not update the access time of keys this client reads.",
    "HELP",
    "    Prints this help.",
];

/// Which connections a CLIENT LIST / KILL filter selects.
#[derive(Clone, Default)]
struct Filter {
    ids: Option<Vec<u64>>,
    addr: Option<String>,
    laddr: Option<String>,
    /// TYPE filter; clients are "normal" or, while subscribed, "pubsub".
    kind: Option<ClientKind>,
    user_default: Option<bool>,
    skip_id: Option<u64>,
}

impl Filter {
    fn matches(&self, c: &Conn) -> bool {
        let ci = &c.client;
        self.ids.as_ref().is_none_or(|ids| ids.contains(&ci.id))
            && self.addr.as_ref().is_none_or(|a| *a == ci.addr)
            && self.laddr.as_ref().is_none_or(|a| *a == ci.laddr)
            && self.kind.is_none_or(|k| k == ClientKind::of(c))
            && self.user_default.unwrap_or(true)
            && self.skip_id != Some(ci.id)
    }
}

/// Client classes of CLIENT LIST/KILL TYPE (there are no replica or master links yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    Normal,
    PubSub,
    Replication,
}

impl ClientKind {
    fn of(c: &Conn) -> ClientKind {
        if c.subs.active() {
            ClientKind::PubSub
        } else {
            ClientKind::Normal
        }
    }
}

fn client_type(t: &[u8]) -> Result<ClientKind, CmdError> {
    if is(t, "normal") {
        Ok(ClientKind::Normal)
    } else if is(t, "pubsub") {
        Ok(ClientKind::PubSub)
    } else if is(t, "master") || is(t, "replica") || is(t, "slave") {
        Ok(ClientKind::Replication)
    } else {
        Err(CmdError::err(format!("Unknown client type '{}'", text(t))))
    }
}

fn client(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let sub = text(arg(argv, 1)?).to_lowercase();
    let arity_err = || CmdError::WrongArity(format!("client|{sub}"));
    match sub.as_str() {
        "id" if argv.len() == 2 => Ok(Reply::Int(ctx.client().id as i64)),
        "getname" if argv.len() == 2 => Ok(Reply::bulk_opt(ctx.client().name.clone())),
        "setname" if argv.len() == 3 => {
            let n = arg(argv, 2)?.clone();
            validate_name(&n)?;
            ctx.client().name = if n.is_empty() { None } else { Some(n) };
            Ok(Reply::Ok)
        }
        "info" if argv.len() == 2 => {
            let line = ctx
                .w
                .conns
                .get(ctx.conn)
                .map(client_line)
                .unwrap_or_default();
            Ok(Reply::Verbatim(Bytes::from(line + "\n")))
        }
        "setinfo" if argv.len() == 4 => {
            let v = arg(argv, 3)?.clone();
            if v.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
                return Err(CmdError::err(format!(
                    "{} cannot contain spaces, newlines or special characters.",
                    text(arg(argv, 2)?).to_lowercase()
                )));
            }
            if is(arg(argv, 2)?, "lib-name") {
                ctx.client().lib_name = Some(v);
            } else if is(arg(argv, 2)?, "lib-ver") {
                ctx.client().lib_ver = Some(v);
            } else {
                return Err(CmdError::err(format!(
                    "Unrecognized option '{}'",
                    text(arg(argv, 2)?)
                )));
            }
            Ok(Reply::Ok)
        }
        "no-evict" | "no-touch" if argv.len() == 3 => {
            let on = if is(arg(argv, 2)?, "on") {
                true
            } else if is(arg(argv, 2)?, "off") {
                false
            } else {
                return Err(CmdError::Syntax);
            };
            if sub == "no-evict" {
                ctx.client().no_evict = on;
            } else {
                ctx.client().no_touch = on;
            }
            Ok(Reply::Ok)
        }
        "list" => client_list(ctx, argv),
        "kill" if argv.len() >= 3 => client_kill(ctx, argv),
        "unblock" if argv.len() == 3 || argv.len() == 4 => client_unblock(ctx, argv),
        "help" if argv.len() == 2 => Ok(Reply::help(CLIENT_HELP)),
        "reply" if argv.len() == 3 => super::client_modes::reply(ctx, argv),
        "pause" if argv.len() >= 3 => super::client_modes::pause(ctx, argv),
        "unpause" if argv.len() == 2 => super::client_modes::unpause(ctx, argv),
        "tracking" if argv.len() >= 3 => super::client_modes::tracking(ctx, argv),
        "caching" if argv.len() == 3 => super::client_modes::caching(ctx, argv),
        "getredir" if argv.len() == 2 => super::client_modes::getredir(ctx, argv),
        "trackinginfo" if argv.len() == 2 => super::client_modes::trackinginfo(ctx, argv),
        "id" | "getname" | "setname" | "info" | "setinfo" | "no-evict" | "no-touch" | "kill"
        | "unblock" | "help" | "reply" | "pause" | "unpause" | "tracking" | "caching"
        | "getredir" | "trackinginfo" => Err(arity_err()),
        _ => Err(CmdError::UnknownSubcommand {
            sub: text(arg(argv, 1)?),
            cmd: "client".into(),
        }),
    }
}

/// CLIENT LIST [TYPE type | ID id [id ...]]: the two filters exclude each other, as in
/// Redis 7.0; any integer is a valid ID (it just matches nobody when there is no such client).
fn client_list(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let mut f = Filter::default();
    let opt = argv.get(2);
    if argv.len() == 4 && opt.is_some_and(|o| is(o, "type")) {
        f.kind = Some(client_type(arg(argv, 3)?)?);
    } else if argv.len() > 3 && opt.is_some_and(|o| is(o, "id")) {
        let mut ids = Vec::new();
        for a in argv.get(3..).unwrap_or_default() {
            let n = parse_i64(a).ok_or_else(|| CmdError::err("Invalid client ID"))?;
            // Client ids start at 1: other integers select no client.
            ids.push(u64::try_from(n).unwrap_or(0));
        }
        f.ids = Some(ids);
    } else if argv.len() != 2 {
        return Err(CmdError::Syntax);
    }
    let ticket = ctx.defer();
    ctx.w.on_all_fronts(
        move |tw: &mut Worker| {
            tw.conns
                .iter()
                .filter(|(_, c)| f.matches(c))
                .map(|(_, c)| (c.client.id, client_line(c)))
                .collect::<Vec<_>>()
        },
        move |w, parts| {
            let mut all: Vec<(u64, String)> = parts.into_iter().flatten().collect();
            all.sort_by_key(|(id, _)| *id);
            let mut s = String::new();
            for (_, l) in all {
                s.push_str(&l);
                s.push('\n');
            }
            w.complete(ticket, Reply::Verbatim(Bytes::from(s)));
        },
    );
    Ok(Reply::Ok)
}

/// CLIENT UNBLOCK id [TIMEOUT|ERROR]: ends a blocking command's wait (on the client's shard).
fn client_unblock(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let id = parse_i64(arg(argv, 2)?).ok_or(CmdError::NotInteger)?;
    let error = match argv.get(3) {
        Some(r) => crate::coord::blocking::unblock_reason(r)?,
        None => false,
    };
    let ticket = ctx.defer();
    ctx.w.on_all_fronts(
        move |tw: &mut Worker| {
            let wid = tw
                .conns
                .iter()
                .find(|(_, c)| c.client.id as i64 == id)
                .and_then(|(_, c)| c.waiting);
            wid.is_some_and(|wid| crate::coord::blocking::unblock(&mut tw.eng, wid, error))
        },
        move |w, found: Vec<bool>| {
            let n = found.iter().filter(|f| **f).count();
            w.complete(ticket, Reply::Int(n as i64));
        },
    );
    Ok(Reply::Ok)
}

fn client_kill(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let my_id = ctx.client().id;
    let mut f = Filter::default();
    let old_style = argv.len() == 3;
    if old_style {
        f.addr = Some(text(arg(argv, 2)?));
    } else {
        let mut skipme = true;
        let mut i = 2;
        while i < argv.len() {
            if i + 1 >= argv.len() {
                return Err(CmdError::Syntax);
            }
            let (opt, val) = (arg(argv, i)?, arg(argv, i + 1)?);
            if is(opt, "id") {
                match parse_i64(val) {
                    Some(n) if n > 0 => f.ids = Some(vec![n as u64]),
                    _ => return Err(CmdError::err("client-id should be greater than 0")),
                }
            } else if is(opt, "type") {
                f.kind = Some(client_type(val)?);
            } else if is(opt, "addr") {
                f.addr = Some(text(val));
            } else if is(opt, "laddr") {
                f.laddr = Some(text(val));
            } else if is(opt, "user") {
                // The only user is "default" (ACL user names are case-sensitive).
                if val.as_ref() != b"default" {
                    return Err(CmdError::err(format!("No such user '{}'", text(val))));
                }
                f.user_default = Some(true);
            } else if is(opt, "skipme") {
                if is(val, "yes") {
                    skipme = true;
                } else if is(val, "no") {
                    skipme = false;
                } else {
                    return Err(CmdError::Syntax);
                }
            } else {
                return Err(CmdError::Syntax);
            }
            i += 2;
        }
        if skipme {
            f.skip_id = Some(my_id);
        }
    }
    let ticket = ctx.defer();
    ctx.w.on_all_fronts(
        move |tw: &mut Worker| {
            let victims: Vec<(usize, u64)> = tw
                .conns
                .iter()
                .filter(|(_, c)| f.matches(c))
                .map(|(i, c)| (i, c.client.id))
                .collect();
            let n = victims.len();
            for (idx, id) in victims {
                if id == my_id {
                    // Killing ourselves: reply first, then close (CLOSE_AFTER_REPLY).
                    if let Some(c) = tw.conns.get_mut(idx) {
                        c.closing = true;
                    }
                    tw.mark_dirty(idx);
                } else {
                    tw.close_conn(idx);
                }
            }
            n
        },
        move |w, counts: Vec<usize>| {
            let n: usize = counts.iter().sum();
            let reply = if old_style {
                if n == 0 {
                    CmdError::err("No such client").into_reply()
                } else {
                    Reply::Ok
                }
            } else {
                Reply::Int(n as i64)
            };
            w.complete(ticket, reply);
        },
    );
    Ok(Reply::Ok)
}
