//! Lua scripting (EVAL and friends): the script commands (`eval`, `fcall`) and where
//! scripts run. The state shared between shards is `engine::scripts`, re-exported here.
//! Every shard thread owns one Lua 5.1 VM (`vm`, thread-local, never sent anywhere) with
//! its own cache of compiled scripts; a script runs on the shard that owns its declared
//! keys, inside that shard's loop pass, with `redis.call` running the table's handlers on
//! the same shard's data.
//!
//! `host` is where a script runs and how its calls reach other shards' keys.

pub mod cjson;
pub mod convert;
pub mod eval;
pub mod fcall;
pub mod functions;
pub mod host;
pub mod library;
pub mod libs;
pub mod lstruct;
pub mod msgpack;
pub mod vm;

pub use crate::engine::scripts::*;

/// The handler behind a script row (`Exec::Script`).
pub fn entry(
    e: crate::commands::table::ScriptEntry,
) -> fn(&mut host::Host, &[bytes::Bytes]) -> crate::error::CmdResult {
    use crate::commands::table::ScriptEntry as E;
    match e {
        E::Eval => eval::eval,
        E::EvalSha => eval::evalsha,
        E::EvalRo => eval::eval_ro,
        E::EvalShaRo => eval::evalsha_ro,
        E::FCall => fcall::fcall,
        E::FCallRo => fcall::fcall_ro,
    }
}
