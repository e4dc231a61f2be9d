//! The connection-side command families: rows whose handlers need the whole worker (its
//! connections, subscribers, monitors, transactions) rather than the engine alone. They
//! run on the asking connection's shard thread, with a `FrontCtx`, and join the command
//! table through `FAMILIES` (registered at startup, `commands::table::register`).

/// A table handler (`ConnFn`, or `CrossFn` with `cross`) for a connection-side handler.
#[macro_export]
macro_rules! front {
    ($f:path) => {{
        fn wrap(
            ctx: &mut $crate::commands::ConnCtx,
            argv: &[bytes::Bytes],
        ) -> $crate::error::CmdResult {
            $crate::server::cmds::with_front(ctx, argv, $f)
        }
        wrap as $crate::commands::table::ConnFn
    }};
    (cross $f:path) => {{
        fn wrap(
            ctx: &mut $crate::commands::ConnCtx,
            argv: Vec<bytes::Bytes>,
        ) -> $crate::error::CmdResult {
            $crate::server::cmds::with_front(ctx, argv, $f)
        }
        wrap as $crate::commands::table::CrossFn
    }};
}

pub mod client;
pub mod client_modes;
pub mod conn;
pub mod debug;
pub mod info;
pub mod multi;
pub mod observe;
pub mod pubsub;

use super::worker::Worker;
use crate::commands::table::CommandSpec;
use crate::commands::{ClientInfo, ConnCtx};
use crate::engine::{Engine, Ticket};
use crate::error::{CmdError, CmdResult};

/// Every connection-side family's rows, with the replication and scripting subsystems'.
pub const FAMILIES: &[&[CommandSpec]] = &[
    conn::COMMANDS,
    client::COMMANDS,
    pubsub::COMMANDS,
    info::COMMANDS,
    multi::COMMANDS,
    observe::COMMANDS,
    debug::COMMANDS,
    crate::repl::master::COMMANDS,
    crate::repl::failover::COMMANDS,
    crate::repl::shutdown::COMMANDS,
    crate::repl::COMMANDS,
    crate::scripting::eval::COMMANDS,
    crate::scripting::fcall::COMMANDS,
];

/// Adds this layer's rows to the command table and replication's settings to the
/// configuration; call before either is first used. `false` when too late (the table was
/// built without the rows).
pub fn register() -> bool {
    crate::persist::register_functions(crate::scripting::fcall::persist_hooks());
    crate::config::register_settings(crate::repl::SETTING_GROUPS)
        & crate::commands::table::register(FAMILIES)
}

/// The whole command table, this layer's rows included (for tools and tests that walk it).
pub fn full_table() -> &'static crate::commands::table::CommandTable {
    let whole = register();
    debug_assert!(whole, "the command table was built before registration");
    crate::commands::table::table()
}

/// What a connection-side handler sees: the whole worker and which connection is asking.
pub struct FrontCtx<'a> {
    pub w: &'a mut Worker,
    pub conn: usize,
    deferred: &'a mut Option<Ticket>,
}

impl FrontCtx<'_> {
    /// This shard's engine.
    pub fn eng(&mut self) -> &mut Engine {
        &mut self.w.eng
    }

    pub fn client(&mut self) -> &mut ClientInfo {
        &mut self.w.conns[self.conn].client
    }

    /// As `ConnCtx::defer`.
    pub fn defer(&mut self) -> Ticket {
        if let Some(t) = *self.deferred {
            return t;
        }
        let t = self.w.defer(self.conn);
        *self.deferred = Some(t);
        t
    }

    /// As `ConnCtx::reply_later`.
    pub fn reply_later(&mut self) -> Ticket {
        if let Some(t) = *self.deferred {
            return t;
        }
        let t = self.w.reserve(self.conn);
        *self.deferred = Some(t);
        t
    }

    /// The same call as a `ConnCtx`, for an engine-side handler this one delegates to.
    pub fn conn_ctx<T>(&mut self, f: impl FnOnce(&mut ConnCtx) -> T) -> T {
        let mut ctx = ConnCtx {
            w: &mut *self.w,
            conn: self.conn,
            deferred: *self.deferred,
        };
        let r = f(&mut ctx);
        *self.deferred = ctx.deferred;
        r
    }
}

/// Runs a connection-side handler on the worker behind `ctx`.
pub fn with_front<A>(
    ctx: &mut ConnCtx,
    argv: A,
    f: fn(&mut FrontCtx, A) -> CmdResult,
) -> CmdResult {
    let Some(w) = ctx.w.as_any().downcast_mut::<Worker>() else {
        return Err(CmdError::err(crate::commands::NEEDS_CONNECTION));
    };
    let mut fc = FrontCtx {
        w,
        conn: ctx.conn,
        deferred: &mut ctx.deferred,
    };
    f(&mut fc, argv)
}
