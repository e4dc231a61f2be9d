//! Connection commands (Redis's networking.c / server.c parts): PING, ECHO, QUIT, HELLO,
//! SELECT, RESET, AUTH. They run on the connection's own shard. CLIENT is in `client`.

use bytes::Bytes;

use super::client::{client_line, validate_name};
use super::FrontCtx;
use crate::commands::args::{arg, is, text};
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, ALLOW_BUSY, FAST, LOADING, NOAUTH, NOSCRIPT, STALE,
};
use crate::error::{self, CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::server::pubsub;

const C: &str = "connection";

pub use crate::commands::REDIS_COMPAT_VERSION;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("ping", -1, FAST, KeySpec::none(), Exec::Conn(front!(ping)))
        .doc(C, "1.0.0", "Returns the server's liveliness response.", "[message]"),
    CommandSpec::new("echo", 2, FAST | LOADING | STALE, KeySpec::none(), Exec::Conn(front!(echo)))
        .doc(C, "1.0.0", "Returns the given string.", "message"),
    CommandSpec::new("quit", -1, NOSCRIPT | LOADING | STALE | FAST | NOAUTH | ALLOW_BUSY, KeySpec::none(), Exec::Conn(front!(quit)))
        .doc(C, "1.0.0", "Closes the connection.", ""),
    CommandSpec::new("select", 2, LOADING | STALE | FAST, KeySpec::none(), Exec::Conn(front!(select)))
        .doc(C, "1.0.0", "Changes the selected database.", "index"),
    CommandSpec::new("hello", -1, NOSCRIPT | LOADING | STALE | FAST | NOAUTH, KeySpec::none(), Exec::Conn(front!(hello)))
        .doc(C, "6.0.0", "Handshakes with the Redis server.",
             "[protover [AUTH username password] [SETNAME clientname]]"),
    CommandSpec::new("reset", 1, NOSCRIPT | LOADING | STALE | FAST | NOAUTH, KeySpec::none(), Exec::Conn(front!(reset)))
        .doc(C, "6.2.0", "Resets the connection.", ""),
    CommandSpec::new("auth", -2, NOSCRIPT | LOADING | STALE | FAST | NOAUTH, KeySpec::none(), Exec::Conn(front!(auth)))
        .doc(C, "1.0.0", "Authenticates the connection.", "[username] password"),
];

/// PING; a RESP2 client in subscribed mode gets `["pong", message-or-""]` instead.
/// After a failed BGSAVE with stop-writes-on-bgsave-error, PING gets MISCONF as writes do
/// (Redis refuses it too, so health checks notice).
fn ping(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if crate::persist::writes_refused() {
        return Err(crate::persist::refusal());
    }
    if argv.len() > 2 {
        return Err(CmdError::WrongArity("ping".into()));
    }
    let subscribed = ctx
        .w
        .conns
        .get(ctx.conn)
        .is_some_and(|c| c.client.resp == 2 && c.subs.active());
    let msg = argv.get(1).cloned();
    Ok(match (subscribed, msg) {
        (true, m) => Reply::Array(vec![
            Reply::bulk("pong"),
            Reply::Bulk(m.unwrap_or_default()),
        ]),
        (false, None) => Reply::status("PONG"),
        (false, Some(m)) => Reply::Bulk(m),
    })
}

fn echo(_ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    Ok(Reply::Bulk(arg(argv, 1)?.clone()))
}

fn quit(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    pubsub::clear(ctx.w, ctx.conn);
    if let Some(c) = ctx.w.conns.get_mut(ctx.conn) {
        c.closing = true;
    }
    Ok(Reply::Ok)
}

fn select(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let n = parse_i64(arg(argv, 1)?).ok_or(CmdError::NotInteger)?;
    if n < 0 || n as usize >= ctx.w.eng.shared.cfg.databases || n > i32::MAX as i64 {
        return Err(CmdError::DbIndex);
    }
    ctx.client().db = n as usize;
    Ok(Reply::Ok)
}

/// AUTH: no password is configured, so the default user has none (Redis without
/// requirepass answers AUTH <password> with this error).
/// Checks `user`'s password against the ACL users (a `nopass` user takes any) and, when it
/// matches, makes the connection run as that user. A failure is logged in the ACL LOG.
fn check_password(
    ctx: &mut FrontCtx,
    cmd: &'static str,
    user: &[u8],
    pass: &[u8],
) -> Result<(), CmdError> {
    let name = String::from_utf8_lossy(user).into_owned();
    match crate::acl::user(&name).filter(|u| u.check(pass)) {
        Some(u) => {
            let c = ctx.client();
            c.restricted = !u.unrestricted();
            c.user = u;
            if c.script_caller {
                // Listed again by the next script it sends, as the new user.
                c.script_caller = false;
                crate::acl::forget_script_caller(c.id);
            }
            c.acl_epoch = crate::acl::epoch();
            c.authed = true;
            Ok(())
        }
        None => {
            let info = client_line(&ctx.w.conns[ctx.conn]);
            let context = if ctx.w.eng.tx.nested() {
                "multi"
            } else {
                "toplevel"
            };
            crate::acl::log_denial("auth", context, cmd.into(), name, info);
            Err(CmdError::coded(error::WRONGPASS))
        }
    }
}

fn auth(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if argv.len() > 3 {
        return Err(CmdError::Syntax);
    }
    if argv.len() == 2 {
        if crate::acl::user("default").is_some_and(|u| u.nopass) {
            return Err(CmdError::err(
                "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ));
        }
        check_password(ctx, "auth", b"default", arg(argv, 1)?)?;
        return Ok(Reply::Ok);
    }
    check_password(ctx, "auth", arg(argv, 1)?, arg(argv, 2)?)?;
    Ok(Reply::Ok)
}

fn hello(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let mut proto = None;
    let mut i = 1;
    if argv.len() >= 2 {
        let v = parse_i64(arg(argv, 1)?)
            .ok_or_else(|| CmdError::err("Protocol version is not an integer or out of range"))?;
        if v != 2 && v != 3 {
            return Err(CmdError::coded("NOPROTO unsupported protocol version"));
        }
        proto = Some(v as u8);
        i = 2;
    }
    // As in Redis 7.0, AUTH and SETNAME take effect as they are read: a later bad option
    // still leaves the name set. The protocol switches only when every option was good.
    while i < argv.len() {
        let more = argv.len() - i - 1;
        if is(arg(argv, i)?, "auth") && more >= 2 {
            check_password(ctx, "hello", arg(argv, i + 1)?, arg(argv, i + 2)?)?;
            i += 3;
        } else if is(arg(argv, i)?, "setname") && more >= 1 {
            let n = arg(argv, i + 1)?.clone();
            validate_name(&n)?;
            ctx.client().name = if n.is_empty() { None } else { Some(n) };
            i += 2;
        } else {
            return Err(CmdError::err(format!(
                "Syntax error in HELLO option '{}'",
                text(arg(argv, i)?)
            )));
        }
    }
    let c = ctx.client();
    if !c.authed {
        return Err(CmdError::coded(error::NOAUTH_HELLO));
    }
    if let Some(p) = proto {
        c.resp = p;
    }
    let (id, resp) = (c.id, c.resp);
    Ok(Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("redis")),
        (Reply::bulk("version"), Reply::bulk(REDIS_COMPAT_VERSION)),
        (Reply::bulk("proto"), Reply::Int(resp as i64)),
        (Reply::bulk("id"), Reply::Int(id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk(crate::role::word())),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ]))
}

fn reset(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    pubsub::clear(ctx.w, ctx.conn);
    crate::server::monitor::stop(ctx.w, ctx.conn);
    crate::server::tracking::disable(ctx.w, ctx.conn);
    if let Some(c) = ctx.w.conns.get_mut(ctx.conn) {
        c.reply_mode = crate::server::connection::ReplyMode::On;
        c.mute = false;
    }
    crate::server::tx::reset(ctx.w, ctx.conn);
    // Back to the default user: unauthenticated again when a password is set.
    let required = ctx
        .w
        .eng
        .shared
        .tun
        .auth_required
        .load(std::sync::atomic::Ordering::Relaxed);
    let c = ctx.client();
    c.authed = !required;
    c.acl_epoch = 0;
    if c.user.name != "default" {
        if let Some(u) = crate::acl::user("default") {
            c.user = u;
        }
    }
    c.db = 0;
    c.resp = 2;
    c.name = None;
    c.no_evict = false;
    c.no_touch = false;
    Ok(Reply::status("RESET"))
}
