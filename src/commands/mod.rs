//! Redis command semantics, grouped by family. Each family file ends with a `COMMANDS` slice
//! (see `table.rs`); this module holds the contexts handlers receive and the shared checks
//! (arity, routing, statistics) the dispatcher applies before any handler runs.
//!
//! `Key` handlers run on the shard that owns their keys and see only that shard's data.
//! `Conn` handlers run on the connection's shard and may start cross-shard work.

pub mod acl;
pub mod args;
pub mod bitmaps;
pub mod blocking;
pub mod client_info;
pub mod command;
pub mod config;
pub mod debug;
pub mod docs;
pub mod geo;
pub mod hashes;
pub mod hll;
pub mod keys;
pub use crate::util::ldouble;
pub mod lists;
pub mod observe;
pub mod persistence;
pub mod server;
pub mod sets;
pub mod sort;
pub mod standalone;
pub mod streams;
pub mod strings;
pub mod table;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod watch;
pub mod zsets;

use crate::runtime::clock;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::engine::{Engine, Ticket};
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::shard::db::Db;
use crate::shard::route::shard_of;
use crate::shard::Shard;
pub use client_info::ClientInfo;
use table::{CommandSpec, KeySpec};

/// The Redis version we answer with (HELLO, INFO): the command set and reply formats we
/// match are those of Redis 7.0.
pub const REDIS_COMPAT_VERSION: &str = "7.0.15";

/// Every family's rows; `table()` concatenates them.
pub const FAMILIES: &[&[CommandSpec]] = &[
    strings::COMMANDS,
    keys::COMMANDS,
    hashes::COMMANDS,
    sets::COMMANDS,
    lists::COMMANDS,
    blocking::COMMANDS,
    zsets::COMMANDS,
    streams::COMMANDS,
    server::COMMANDS,
    persistence::COMMANDS,
    acl::COMMANDS,
    bitmaps::COMMANDS,
    hll::COMMANDS,
    sort::COMMANDS,
    geo::COMMANDS,
    observe::COMMANDS,
    standalone::COMMANDS,
];

/// What a `Key` handler sees: the owning shard, the selected database, the client's protocol.
pub struct KeyCtx<'a> {
    pub shard: &'a mut Shard,
    pub db: usize,
    pub resp: u8,
    /// The asking connection's output, when its reply goes out right after this one
    /// (nothing earlier pending): a handler may encode its reply into it and return
    /// `Reply::Raw` of nothing (GET does, saving the copy through a `Reply`).
    pub out: Option<&'a mut Vec<u8>>,
}

impl KeyCtx<'_> {
    /// The selected database.
    pub fn db(&mut self) -> &mut Db {
        let no_touch = self.shard.no_touch;
        let db = self.shard.db_mut(self.db);
        db.no_touch = no_touch;
        db
    }

    /// For a row whose rule is `NoOp::Flagged`: whether this call changed nothing (WATCH
    /// then sees no modification). Such a handler sets it on every successful path.
    pub fn unchanged(&mut self, yes: bool) {
        self.shard.unchanged = yes;
    }

    pub fn now(&self) -> u64 {
        self.shard.now_ms
    }
}

/// The connection side a `Conn` handler runs beside: the shard's engine, and the asking
/// connection's attributes and reply slots. The server's worker implements it; the
/// connection-side families (`server::cmds`) reach the worker through `as_any`, and the
/// in-process harness (`testkit`) has its own.
pub trait ConnSide: std::any::Any {
    /// This shard's engine: data, locks, jobs, the mesh.
    fn eng(&mut self) -> &mut Engine;
    /// The attributes of connection `conn` (a live connection of this shard).
    fn client(&mut self, conn: usize) -> &mut ClientInfo;
    /// Reserves `conn`'s next reply slot and pauses it until the slot is filled.
    fn defer(&mut self, conn: usize) -> Ticket;
    /// Reserves `conn`'s next reply slot; its later commands run meanwhile.
    fn reserve(&mut self, conn: usize) -> Ticket;
    /// The implementation itself, for the connection-side families that need all of it.
    fn as_any(&mut self) -> &mut dyn std::any::Any;
}

/// What a connection-side handler (`server::cmds`) answers when the `ConnSide` behind a
/// `ConnCtx` is not a server's worker (the in-process harness).
pub const NEEDS_CONNECTION: &str = "connection-side command: needs a server connection";

/// What a `Conn` handler sees: the shard's engine and connection side, and which
/// connection is asking.
pub struct ConnCtx<'a> {
    pub w: &'a mut dyn ConnSide,
    pub conn: usize,
    /// Set by `defer`: the reply will be delivered later through this ticket.
    pub deferred: Option<Ticket>,
}

impl ConnCtx<'_> {
    /// This shard's engine.
    pub fn eng(&mut self) -> &mut Engine {
        self.w.eng()
    }

    pub fn client(&mut self) -> &mut ClientInfo {
        self.w.client(self.conn)
    }

    /// Reserves this command's reply slot and pauses the client until it is filled.
    /// The handler's own return value is then ignored.
    pub fn defer(&mut self) -> Ticket {
        if let Some(t) = self.deferred {
            return t;
        }
        let t = self.w.defer(self.conn);
        self.deferred = Some(t);
        t
    }

    /// Like `defer`, but the client is not paused: its next commands run meanwhile and
    /// their replies queue behind this one (PUBLISH's fan-out).
    pub fn reply_later(&mut self) -> Ticket {
        if let Some(t) = self.deferred {
            return t;
        }
        let t = self.w.reserve(self.conn);
        self.deferred = Some(t);
        t
    }
}

/// Checks Redis arity rules; the error names the command (or `container|sub`).
pub fn check_arity(spec: &CommandSpec, argv: &[Bytes]) -> Result<(), CmdError> {
    check_table_arity(spec, argv)?;
    check_pairs(spec, argv)
}

/// The row's arity alone: what Redis checks before queuing a command in MULTI (and
/// before a script's call runs it).
pub fn check_table_arity(spec: &CommandSpec, argv: &[Bytes]) -> Result<(), CmdError> {
    let n = argv.len() as i32;
    let ok = if spec.arity > 0 {
        n == spec.arity
    } else {
        n >= -spec.arity
    };
    if !ok {
        return Err(CmdError::WrongArity(spec.name.to_string()));
    }
    // A container's subcommand has its own arity, checked before it runs as Redis 7 does
    // (rejected, not failed; inside MULTI the transaction aborts).
    if !spec.subcommands.is_empty() {
        if let Some(sub) = argv.get(1) {
            let found = spec
                .subcommands
                .iter()
                .find(|(name, _, _)| sub.eq_ignore_ascii_case(name.as_bytes()));
            if let Some((name, arity, _)) = found {
                let ok = if *arity > 0 {
                    n == *arity
                } else {
                    n >= -*arity
                };
                if !ok {
                    return Err(CmdError::WrongArity(format!("{}|{name}", spec.name)));
                }
            }
        }
    }
    Ok(())
}

/// Key-value pair commands (MSET, MSETNX) need an even number of pair arguments: in Redis
/// the command itself says so when it runs (inside EXEC, the one failed command's reply).
pub fn check_pairs(spec: &CommandSpec, argv: &[Bytes]) -> Result<(), CmdError> {
    match spec.exec {
        table::Exec::Split(m)
            if m.step > 1 && !argv.len().saturating_sub(1).is_multiple_of(m.step) =>
        {
            Err(CmdError::WrongArity(spec.name.to_string()))
        }
        _ => Ok(()),
    }
}

/// For a container command (CONFIG, CLIENT, OBJECT...): finds the subcommand named by
/// `argv[1]` in the row's table and checks its arity; returns its lower-case name.
pub fn check_subcommand(spec: &CommandSpec, argv: &[Bytes]) -> Result<String, CmdError> {
    let raw = argv
        .get(1)
        .ok_or_else(|| CmdError::WrongArity(spec.name.into()))?;
    let sub = String::from_utf8_lossy(raw).to_ascii_lowercase();
    let Some((_, arity, _)) = spec.subcommands.iter().find(|(n, _, _)| *n == sub) else {
        // Redis names the command as the client typed it (a renamed one by its new name).
        return Err(CmdError::UnknownSubcommand {
            sub: String::from_utf8_lossy(raw).into_owned(),
            cmd: argv.first().map_or(spec.name.into(), |n| {
                String::from_utf8_lossy(n).into_owned()
            }),
        });
    };
    let n = argv.len() as i32;
    let ok = if *arity > 0 { n == *arity } else { n >= -arity };
    if !ok {
        return Err(CmdError::WrongArity(format!("{}|{sub}", spec.name)));
    }
    Ok(sub)
}

/// The client connected from the loopback interface (its `addr` as CLIENT LIST shows it).
pub fn is_local(client_addr: &str) -> bool {
    // A Unix socket client shows as `path:0` (no TCP peer has port 0): local, as Redis's
    // islocalClient says.
    client_addr.starts_with("127.0.0.1:")
        || client_addr.starts_with("[::1]:")
        || client_addr.ends_with(":0")
}

/// Whether an `enable-*` setting (`yes`/`no`/`local`) lets this client through.
pub fn access_allows(access: crate::config::Access, local: bool) -> bool {
    use crate::config::Access;
    match access {
        Access::Yes => true,
        Access::Local => local,
        Access::No => false,
    }
}

/// Redis's refusal of a PROTECTED command (a row's or a subcommand's flag) before it runs
/// or is queued: DEBUG under `enable-debug-command`, MODULE LOAD / LOADEX / UNLOAD under
/// `enable-module-command` (`standalone`); `no` refuses everyone, `local` everyone but
/// loopback clients.
pub fn protected_refusal(
    shared: &crate::engine::shared::Shared,
    spec: &table::CommandSpec,
    client_addr: &str,
) -> Option<CmdError> {
    let (access, option) = if spec.name == "module" {
        (standalone::module_access(shared), "enable-module-command")
    } else {
        (shared.cfg.debug_command, "enable-debug-command")
    };
    let allowed = access_allows(access, is_local(client_addr));
    (!allowed).then(|| {
        CmdError::err(format!(
            "{} command not allowed. If the {option} option is set to \"local\", \
             you can run it from a local connection, otherwise you need to set this option in \
             the configuration file, and then restart the server.",
            spec.name.to_ascii_uppercase()
        ))
    })
}

/// Where a command's keys live.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// No keys: run where the connection is.
    NoKeys,
    /// Every key on one shard.
    One(usize),
    /// Keys on several shards.
    Many,
}

pub fn route(keys: &KeySpec, argv: &[Bytes], nshards: usize) -> Route {
    // One fixed key (GET, SET, INCR, HSET ...): no walk over the key positions.
    if keys.first > 0
        && keys.first == keys.last
        && keys.numkeys == 0
        && keys.store_from == 0
        && !keys.sort
    {
        return match argv.get(keys.first as usize) {
            Some(k) => Route::One(shard_of(k, nshards)),
            None => Route::NoKeys,
        };
    }
    let mut owner = None;
    for i in keys.key_positions(argv) {
        let Some(k) = argv.get(i) else { break };
        let s = shard_of(k, nshards);
        match owner {
            None => owner = Some(s),
            Some(o) if o != s => return Route::Many,
            _ => {}
        }
    }
    if keys.sort {
        if let Some(o) = owner {
            if sort::patterns_elsewhere(argv, o, nshards) {
                return Route::Many;
            }
        }
    }
    owner.map_or(Route::NoKeys, Route::One)
}

/// Runs a key handler on this shard with statistics; errors become error replies.
pub fn run_key(
    shard: &mut Shard,
    id: usize,
    f: table::KeyFn,
    db: usize,
    resp: u8,
    argv: &[Bytes],
    out: Option<&mut Vec<u8>>,
) -> Reply {
    if shard.journal.is_some() {
        if let Some(spec) = table::table().get(id) {
            crate::shard::journal::before_command(shard, spec, argv);
        }
    }
    if shard.notify != 0 {
        if let Some(spec) = table::table().get(id) {
            crate::shard::notify::before_command(shard, spec, db, argv);
        }
    }
    let start = clock::ticks();
    let res = f(
        &mut KeyCtx {
            shard,
            db,
            resp,
            out,
        },
        argv,
    );
    if shard.no_touch {
        // Paths that reach a Db without `KeyCtx::db` must not inherit the flag.
        shard.dbs.iter_mut().for_each(|d| d.no_touch = false);
    }
    let slot = shard.stat_slot(id, argv);
    let reply = finish_at(shard, id, slot, res);
    let nanos = clock::to_nanos(clock::ticks().wrapping_sub(start));
    if let Some(st) = shard.cmd_stats.get_mut(slot) {
        st.nanos += nanos;
    }
    shard.observe(id, slot, argv, nanos);
    if !shard.watches.is_empty()
        || !shard.blocked.is_empty()
        || shard.journal.is_some()
        || shard.notify != 0
        || shard.tracking.is_some()
    {
        if let Some(spec) = table::table().get(id) {
            watch::after_write(shard, spec, db, argv, &reply);
            crate::shard::journal::after_command(shard, spec, db, argv, &reply);
        }
    }
    if shard.notify != 0 {
        if let Some(spec) = table::table().get(id) {
            crate::shard::notify::after_command(shard, spec, db, argv, &reply);
        }
    }
    reply
}

/// Counts a call (and a failure) and turns the result into a reply.
pub fn finish(shard: &mut Shard, id: usize, res: CmdResult) -> Reply {
    finish_at(shard, id, id, res)
}

/// [`finish`] counting in statistics slot `slot` (`Shard::stat_slot`: a container's
/// subcommand has its own).
pub fn finish_at(shard: &mut Shard, id: usize, slot: usize, res: CmdResult) -> Reply {
    shard.commands_processed += 1;
    if let Some(st) = shard.cmd_stats.get_mut(slot) {
        st.calls += 1;
    }
    match res {
        Ok(r) => {
            if let Reply::Error(e) = &r {
                count_error(shard, e);
                note_master_error(shard, id, e);
            } else if table::table().get(id).is_some_and(|s| s.has(table::WRITE)) {
                shard.dirty += 1;
            }
            r
        }
        Err(e) => {
            if let Some(st) = shard.cmd_stats.get_mut(slot) {
                st.failed += 1;
            }
            let text = e.to_string();
            count_error(shard, &text);
            note_master_error(shard, id, &text);
            Reply::Error(text)
        }
    }
}

/// An error from a command of the master link (its databases are in `master_view` while
/// it runs, here or under its shard locks): see `master_error`.
#[cold]
fn note_master_error(shard: &Shard, id: usize, text: &str) {
    if shard.dbs.iter().any(|d| d.master_view) {
        let name = table::table().get(id).map_or("<unknown>", |s| s.name);
        master_error(text, name);
    }
}

static UNEXPECTED: AtomicU64 = AtomicU64::new(0);
/// The second the last `master_error` lines were logged in, and how many.
static LOGGED: AtomicU64 = AtomicU64::new(0);

/// INFO stats `unexpected_error_replies`: errors this replica answered its master with.
pub fn unexpected_error_replies() -> u64 {
    UNEXPECTED.load(Ordering::Relaxed)
}

/// A command of the master's stream failed here: the master applied a write this replica
/// did not (a command shardis lacks, such as a stream's). Counted, and logged as Redis logs
/// it (at most 10 lines a second, so a stream of them cannot flood the log).
#[cold]
pub fn master_error(text: &str, cmd: &str) {
    UNEXPECTED.fetch_add(1, Ordering::Relaxed);
    let sec = crate::shard::now_ms() / 1000;
    let prev = LOGGED.load(Ordering::Relaxed);
    let n = if prev >> 8 == sec {
        (prev & 0xff) + 1
    } else {
        1
    };
    LOGGED.store((sec << 8) | n.min(0xff), Ordering::Relaxed);
    if n <= 10 {
        crate::log::warning(&format!(
            "== CRITICAL == This replica is sending an error to its master: '{text}' after \
             processing the command '{cmd}'"
        ));
    }
}

/// Counts an error reply by its code (INFO errorstats).
pub fn count_error(shard: &mut Shard, text: &str) {
    let code = text.split(' ').next().unwrap_or("ERR");
    match shard.error_stats.get_mut(code) {
        Some(n) => *n += 1,
        None => {
            shard.error_stats.insert(code.to_string(), 1);
        }
    }
}
