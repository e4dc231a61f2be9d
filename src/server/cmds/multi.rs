//! Transaction commands (Redis's multi.c): MULTI, EXEC, DISCARD, WATCH, UNWATCH. They run
//! on the connection's shard and hand the cross-shard work to `server::tx` and `coord::tx`.

use bytes::Bytes;

use super::FrontCtx;
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, ALLOW_BUSY, CAT_TRANSACTION, FAST, LOADING, MAY_REPLICATE,
    NOSCRIPT, SKIP_SLOWLOG, STALE,
};
use crate::error::{self, CmdError, CmdResult};
use crate::protocol::reply::Reply;

const T: &str = "transactions";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("multi", 1, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY, KeySpec::none(), Exec::Conn(front!(multi)))
        .acl(CAT_TRANSACTION)
        .doc(T, "1.2.0", "Mark the start of a transaction block", ""),
    CommandSpec::new("exec", 1, NOSCRIPT | LOADING | STALE | SKIP_SLOWLOG | MAY_REPLICATE, KeySpec::none(), Exec::Conn(front!(exec)))
        .acl(CAT_TRANSACTION)
        .doc(T, "1.2.0", "Execute all commands issued after MULTI", ""),
    CommandSpec::new("discard", 1, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY, KeySpec::none(), Exec::Conn(front!(discard)))
        .acl(CAT_TRANSACTION)
        .doc(T, "2.0.0", "Discard all commands issued after MULTI", ""),
    CommandSpec::new("watch", -2, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY, KeySpec::range(1, -1, 1), Exec::Conn(front!(watch)))
        .key_perms(&[0])
        .acl(CAT_TRANSACTION)
        .doc(T, "2.2.0", "Watch the given keys to determine execution of the MULTI/EXEC block", "key [key ...]"),
    CommandSpec::new("unwatch", 1, NOSCRIPT | LOADING | STALE | FAST | ALLOW_BUSY, KeySpec::none(), Exec::Conn(front!(unwatch)))
        .acl(CAT_TRANSACTION)
        .doc(T, "2.2.0", "Forget about all watched keys", ""),
];

fn multi(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    crate::server::tx::multi(ctx.w, ctx.conn)?;
    Ok(Reply::Ok)
}

fn exec(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    // `None`: deferred, the reply comes through the ticket (this value is ignored).
    let r = crate::server::tx::exec(ctx, argv);
    if r.is_err() && ctx.eng().shard.monitor {
        // A refused EXEC is shown here; one that ran, after its commands (`coord::tx`).
        let db = ctx.client().db;
        crate::server::monitor::feed_db(ctx.w, ctx.conn, db, argv);
    }
    Ok(r?.unwrap_or(Reply::Ok))
}

fn discard(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    if !ctx
        .w
        .conns
        .get(ctx.conn)
        .is_some_and(crate::server::tx::in_multi)
    {
        return Err(CmdError::coded(error::DISCARD_WITHOUT_MULTI));
    }
    crate::server::tx::discard(ctx.w, ctx.conn);
    Ok(Reply::Ok)
}

fn watch(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    Ok(crate::server::tx::watch(ctx, argv)?.unwrap_or(Reply::Ok))
}

fn unwatch(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    crate::server::tx::unwatch_all(ctx.w, ctx.conn);
    Ok(Reply::Ok)
}
