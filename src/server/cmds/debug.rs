//! DEBUG's row: CHANGE-REPL-ID is replication's; every other subcommand is the engine's
//! (`commands::debug`).

use bytes::Bytes;

use super::FrontCtx;
use crate::commands::args::{arg, is};
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, ADMIN, LOADING, NOSCRIPT, PROTECTED, STALE,
};
use crate::error::CmdResult;
use crate::protocol::reply::Reply;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("debug", -2, ADMIN | NOSCRIPT | LOADING | STALE | PROTECTED, KeySpec::none(), Exec::Conn(front!(debug)))
        .doc("server", "1.0.0", "A container for debugging commands.", "subcommand [argument ...]"),
];

fn debug(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if is(arg(argv, 1)?, "change-repl-id") && argv.len() == 2 {
        crate::repl::change_replid();
        return Ok(Reply::Ok);
    }
    ctx.conn_ctx(|c| crate::commands::debug::debug(c, argv))
}
