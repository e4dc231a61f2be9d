//! The Lua VM of one shard thread (thread-local, created on the thread's first script, never
//! sent anywhere) and running scripts in it: compiling and caching them by sha1, the `redis`
//! library, globals protection, the error handler that formats Redis 7.0's error texts, and
//! the instruction-count hook SCRIPT KILL acts through.
//!
//! A script runs inside the command that started it (EVAL's handler on the shard owning its
//! keys). `redis.call` runs other commands' handlers on the same shard, with the same
//! `KeyCtx`: it is handed to a Lua function created in an `mlua` scope for that one run, so
//! no reference outlives the run and no `unsafe` is needed.
//!
//! Globals as Redis 7.0 protects them: the script's environment is a read-only proxy over an
//! allow-list of globals (`Script attempted to access nonexistent global variable 'x'`,
//! `Attempt to modify a readonly table`); library tables are read-only proxies too.
//! Functions written in Rust report errors through Lua shims (see `WRAP`), so a script that
//! `pcall`s them gets a plain string, as with Redis's C functions.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use mlua::{
    chunk::ChunkMode, Function, HookTriggers, Lua, LuaOptions, MultiValue, Result as LuaResult,
    StdLib, Table, Value, Variadic, VmState,
};

use super::convert::{err_table, lua_to_reply, reply_to_lua};
use super::host::Host;
use super::library::FnEnv;
use super::libs::Rand48;
use super::{Flags, Slot};
use crate::commands::table::{table, Exec, BLOCKING, NOSCRIPT, WRITE};
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;

/// Name of our own Lua chunks: frames from them are skipped when an error is located.
pub(super) const INTERNAL: &str = "=shardis";
/// Name scripts are compiled under, as in Redis (`user_script:LINE:` in messages).
const USER: &str = "@user_script";
/// VM instructions between two runs of the kill hook (Redis uses the same count).
const HOOK_EVERY: u32 = 100_000;
/// Registry name of the running script's busy pump (a function scoped to the run).
const PUMP: &str = "shardis.pump";
const LOAD_TIMEOUT: &str = "ERR FUNCTION LOAD timeout";

pub const READONLY_SCRIPT: &str = "ERR Write commands are not allowed from read-only scripts.";
pub const RO_WITH_WRITE_FLAG: &str =
    "ERR Can not execute a script with write flag using *_ro command.";
pub const NOT_FROM_SCRIPT: &str = "ERR This Redis command is not allowed from script";
/// Connection-level and server-wide commands other than the few handled here need the
/// connection or every shard, which a script running on one shard does not have.
pub const UNSUPPORTED_IN_SCRIPT: &str =
    "ERR This command is not supported inside scripts by shardis (it needs the connection or every shard)";

/// Builds the environment once per VM. Receives the real globals and the failure sentinel;
/// returns the script environment, the allow-listed globals, the shim maker, the read-only
/// proxy maker and the table the run's `exec` function is put in.
const INIT: &str = r#"
local G, unwrap = ...
local error, setmetatable, setfenv, tostring = G.error, G.setmetatable, G.setfenv, G.tostring
local loadstring, load, pcall, xpcall, rawset = G.loadstring, G.load, G.pcall, G.xpcall, G.rawset
local ro = setmetatable({}, {__mode = 'k'})
local function readonly() error("Attempt to modify a readonly table", 2) end
local function protect(t)
  local p = setmetatable({}, {__index = t, __newindex = readonly, __metatable = false})
  ro[p] = true
  return p
end
local visible = {}
for _, k in G.ipairs({'assert', 'collectgarbage', 'error', 'gcinfo', 'getmetatable',
    'ipairs', 'next', 'pairs', 'rawequal', 'rawget', 'select',
    'setmetatable', 'tonumber', 'tostring', 'type', 'unpack', '_VERSION'}) do
  visible[k] = G[k]
end
setmetatable(visible, {__index = function(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
end, __metatable = false})
local env = setmetatable({}, {__index = visible, __newindex = readonly, __metatable = false})
ro[env] = true
ro[visible] = true
visible._G = env
visible.rawset = function(t, k, v)
  if ro[t] then error("Attempt to modify a readonly table", 0) end
  return rawset(t, k, v)
end
visible.loadstring = function(s, name)
  local f, e = loadstring(s, name)
  if f then setfenv(f, env) end
  return f, e
end
visible.load = function(fn, name)
  local f, e = load(fn, name)
  if f then setfenv(f, env) end
  return f, e
end
-- Errors raised by Rust functions are userdata: scripts that catch them see what Redis's
-- C functions raise (a string, or an {err=...} table).
local function fix(ok, ...)
  if ok then return ok, ... end
  return false, unwrap((...))
end
visible.pcall = function(f, ...) return fix(pcall(f, ...)) end
visible.xpcall = function(f, h)
  return xpcall(f, function(e) return h(unwrap(e)) end)
end
visible.string = protect(G.string)
visible.table = protect(G.table)
visible.coroutine = protect(G.coroutine)
local function run(f, h) return xpcall(f, h) end
return env, visible, protect, run
"#;

/// An error raised as Redis raises `{err = text}` tables (the text carries its code): the
/// kill hook, `redis.call` and the `redis.*` helpers. `RuntimeError`s are Lua string errors.
#[derive(Debug)]
struct Coded(String);

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Coded {}

/// The text of an error raised by Rust code, without mlua's traceback.
pub(super) fn message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => message(cause),
        mlua::Error::RuntimeError(m) => m.clone(),
        mlua::Error::ExternalError(x) => x.to_string(),
        other => other.to_string(),
    }
}

/// `short_src:line: ` of the nearest user frame, for messages raised from Rust as Lua's
/// `luaL_error` would prefix them; empty when no script frame is found.
pub fn position(lua: &Lua) -> String {
    match locate(lua) {
        Some((_, short, line)) => format!("{short}:{line}: "),
        None => String::new(),
    }
}

/// The nearest frame that is script code (not C, not our chunks): source, short source, line.
fn locate(lua: &Lua) -> Option<(String, String, usize)> {
    for level in 1..64 {
        let frame = lua.inspect_stack(level, |d| {
            let s = d.source();
            let source = s.source.map(|c| c.into_owned()).unwrap_or_default();
            let short = s.short_src.map(|c| c.into_owned()).unwrap_or_default();
            (s.what, source, short, d.current_line())
        })?;
        let (what, source, short, line) = frame;
        if what == "C" || source == INTERNAL {
            continue;
        }
        return Some((source, short, line.unwrap_or(0)));
    }
    None
}

/// One compiled script, or one function of a library.
#[derive(Clone)]
pub(super) struct Script {
    pub(super) f: Function,
    pub(super) flags: Flags,
}

pub(super) struct Vm {
    pub(super) lua: Lua,
    scripts: HashMap<[u8; 40], Script>,
    env: Table,
    visible: Table,
    /// The real table behind the scripts' read-only `redis`.
    redis: Table,
    pub(super) run: Function,
    pub(super) handler: Function,
    /// The protocol `redis.setresp` chose for the running script.
    resp: Rc<Cell<u8>>,
    /// Libraries' environment and function caller.
    pub(super) fenv: FnEnv,
    /// Every library's functions by name, as of registry generation `fn_gen`.
    pub(super) functions: HashMap<Bytes, Script>,
    pub(super) fn_gen: u64,
}

thread_local! {
    static VM: RefCell<Option<Vm>> = const { RefCell::new(None) };
    static SLOT: Arc<Slot> = super::new_slot();
    /// math.random's state: outlives SCRIPT FLUSH's new VM, as Redis's C static does.
    static RNG: Rc<Cell<Rand48>> = Rc::new(Cell::new(Rand48::initial()));
}

/// A table-style error (`ERR <msg>`), as Redis's `luaPushError` + `luaError`.
fn err(msg: &str) -> mlua::Error {
    coded(format!("ERR {msg}"))
}

pub(super) fn coded(text: String) -> mlua::Error {
    mlua::Error::external(Coded(text))
}

/// The innermost cause of an error raised by Rust code.
fn root(e: &mlua::Error) -> &mlua::Error {
    match e {
        mlua::Error::CallbackError { cause, .. } => root(cause),
        other => other,
    }
}

/// What a script that catches an error raised by Rust code sees: its text as a string (what
/// `pcall(redis.call, ...)` returns on redis-server 7.0.15, for both kinds).
fn unwrap_error(lua: &Lua, v: Value) -> LuaResult<Value> {
    let Value::Error(e) = v else {
        return Ok(v);
    };
    let e = root(&e);
    if let Some(c) = e.downcast_ref::<Coded>() {
        return Ok(Value::String(lua.create_string(&c.0)?));
    }
    Ok(Value::String(lua.create_string(message(e))?))
}

impl Vm {
    fn new() -> LuaResult<Vm> {
        let lua = Lua::new_with(
            StdLib::TABLE | StdLib::STRING | StdLib::MATH,
            LuaOptions::default(),
        )?;
        let g = lua.globals();
        let unwrap = lua.create_function(unwrap_error)?;
        let init = lua.load(INIT).set_name(INTERNAL).set_mode(ChunkMode::Text);
        let (env, visible, protect, run): (Table, Table, Function, Function) =
            init.call((g.clone(), unwrap))?;

        let rng = RNG.with(Rc::clone);
        let math = lua.create_table()?;
        for p in g.get::<Table>("math")?.pairs::<Value, Value>() {
            let (k, v) = p?;
            math.raw_set(k, v)?;
        }
        super::libs::install_random(&lua, &math, rng)?;
        visible.raw_set("math", protect.call::<Table>(math)?)?;
        let bit = super::libs::install_bit(&lua)?;
        visible.raw_set("bit", protect.call::<Table>(bit)?)?;
        let cjson = super::cjson::install(&lua)?;
        visible.raw_set("cjson", protect.call::<Table>(cjson)?)?;
        let cmsgpack = super::msgpack::install(&lua)?;
        visible.raw_set("cmsgpack", protect.call::<Table>(cmsgpack)?)?;
        let lstruct = super::lstruct::install(&lua)?;
        visible.raw_set("struct", protect.call::<Table>(lstruct)?)?;

        let resp = Rc::new(Cell::new(2u8));
        // `call` and `pcall` are set in `redis` for each run (they hold that run's shard).
        let redis = redis_lib(&lua, resp.clone())?;
        visible.raw_set("redis", protect.call::<Table>(redis.clone())?)?;

        let fenv = super::library::install(&lua, &g, &visible, &redis)?;
        let handler = lua.create_function(|lua, e: Value| error_info(lua, e))?;
        let slot = SLOT.with(|s| s.clone());
        lua.set_global_hook(
            HookTriggers::new().every_nth_instruction(HOOK_EVERY),
            move |lua, _| {
                if slot.kill.load(Ordering::Acquire) {
                    return Err(mlua::Error::external(Coded(super::KILLED.into())));
                }
                if super::library::load_timed_out() {
                    return Err(mlua::Error::external(Coded(LOAD_TIMEOUT.into())));
                }
                if super::aborting() {
                    return Err(mlua::Error::external(Coded(super::SHUTTING_DOWN.into())));
                }
                // Past the busy threshold: serve the shard's clients with -BUSY (and let a
                // SCRIPT KILL arrive) between two stretches of the script.
                let t = slot.started.load(Ordering::Acquire);
                if t != 0 && super::now_tick().saturating_sub(t) >= super::busy_threshold_ms() {
                    if let Ok(pump) = lua.named_registry_value::<Function>(PUMP) {
                        pump.call::<()>(())?;
                    }
                    if slot.kill.load(Ordering::Acquire) {
                        return Err(mlua::Error::external(Coded(super::KILLED.into())));
                    }
                    if super::aborting() {
                        return Err(mlua::Error::external(Coded(super::SHUTTING_DOWN.into())));
                    }
                }
                Ok(VmState::Continue)
            },
        )?;
        Ok(Vm {
            lua,
            scripts: HashMap::new(),
            env,
            visible,
            redis,
            run,
            handler,
            resp,
            fenv,
            functions: HashMap::new(),
            fn_gen: 0,
        })
    }

    /// Compiles `body` under `sha` into this VM's cache.
    fn compile(&mut self, sha: [u8; 40], body: &[u8]) -> Result<Script, CmdError> {
        let flags = super::parse_shebang(body).map_err(CmdError::coded)?;
        let code: Vec<u8> = if flags.shebang {
            // The shebang line is not Lua; keep its newline so line numbers stay right.
            let nl = body.iter().position(|&c| c == b'\n').unwrap_or(body.len());
            body.get(nl..).unwrap_or_default().to_vec()
        } else {
            body.to_vec()
        };
        let f = self
            .lua
            .load(code)
            .set_name(USER)
            .set_mode(ChunkMode::Text)
            .into_function()
            .map_err(|e| {
                let m = syntax_message(&e);
                CmdError::coded(format!("ERR Error compiling script (new function): {m}"))
            })?;
        f.set_environment(self.env.clone())
            .map_err(|e| CmdError::err(message(&e)))?;
        let s = Script { f, flags };
        self.scripts.insert(sha, s.clone());
        Ok(s)
    }
}

/// A compile error's text (`user_script:1: ...`).
pub(super) fn syntax_message(e: &mlua::Error) -> String {
    match e {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => message(other),
    }
}

/// `redis.*` except `call`/`pcall` (added by the caller).
fn redis_lib(lua: &Lua, resp: Rc<Cell<u8>>) -> LuaResult<Table> {
    let r = lua.create_table()?;
    r.raw_set("REDIS_VERSION", "7.0.15")?;
    r.raw_set("REDIS_VERSION_NUM", 0x07_00_0f)?;
    for (k, v) in [
        ("LOG_DEBUG", 0),
        ("LOG_VERBOSE", 1),
        ("LOG_NOTICE", 2),
        ("LOG_WARNING", 3),
        ("REPL_NONE", 0),
        ("REPL_AOF", 1),
        ("REPL_SLAVE", 2),
        ("REPL_REPLICA", 2),
        ("REPL_ALL", 3),
    ] {
        r.raw_set(k, v)?;
    }
    r.raw_set(
        "error_reply",
        lua.create_function(|lua, args: Variadic<Value>| {
            let text = match args.first() {
                Some(Value::String(s)) if args.len() == 1 => {
                    let s = s.to_string_lossy();
                    let s = s.strip_prefix('-').unwrap_or(&s).to_string();
                    if s.contains(' ') {
                        s
                    } else {
                        format!("ERR {s}")
                    }
                }
                _ => "ERR wrong number or type of arguments".to_string(),
            };
            err_table(lua, text.trim_end_matches(['\r', '\n']))
        })?,
    )?;
    r.raw_set(
        "status_reply",
        lua.create_function(|lua, args: Variadic<Value>| match args.first() {
            Some(Value::String(s)) if args.len() == 1 => {
                let t = lua.create_table_with_capacity(0, 1)?;
                t.raw_set("ok", s.clone())?;
                Ok(Value::Table(t))
            }
            _ => Ok(Value::Table(err_table(
                lua,
                "ERR wrong number or type of arguments",
            )?)),
        })?,
    )?;
    let fns: Vec<(&str, Function)> = vec![
        (
            "sha1hex",
            lua.create_function(|lua, args: Variadic<Value>| {
                let [v] = args.as_slice() else {
                    return Err(err("wrong number of arguments"));
                };
                let b = match v {
                    Value::String(s) => s.as_bytes().to_vec(),
                    Value::Integer(i) => crate::protocol::fmt_g(*i as f64, 14).into_bytes(),
                    Value::Number(n) => crate::protocol::fmt_g(*n, 14).into_bytes(),
                    _ => Vec::new(),
                };
                Ok(Value::String(lua.create_string(super::sha1_hex(&b))?))
            })?,
        ),
        (
            "log",
            lua.create_function(|_, args: Variadic<Value>| {
                if args.len() < 2 {
                    return Err(err("redis.log() requires two arguments or more."));
                }
                let level = match args.first() {
                    Some(Value::Integer(i)) => *i,
                    Some(Value::Number(n)) => *n as i64,
                    _ => return Err(err("First argument must be a number (log level).")),
                };
                if !(0..=3).contains(&level) {
                    return Err(err("Invalid debug level."));
                }
                let text: Vec<String> = args
                    .iter()
                    .skip(1)
                    .map(|v| match v {
                        Value::String(s) => s.to_string_lossy(),
                        Value::Integer(i) => i.to_string(),
                        Value::Number(n) => crate::protocol::fmt_g(*n, 14),
                        _ => String::new(),
                    })
                    .collect();
                let line = text.join(" ");
                match level {
                    0 | 1 => crate::log::verbose(&line),
                    2 => crate::log::notice(&line),
                    _ => crate::log::warning(&line),
                }
                Ok(Value::Nil)
            })?,
        ),
        ("setresp", {
            let resp = resp.clone();
            lua.create_function(move |_, args: Variadic<Value>| {
                let [v] = args.as_slice() else {
                    return Err(err("redis.setresp() requires one argument."));
                };
                match v {
                    Value::Integer(n @ 2..=3) => resp.set(*n as u8),
                    Value::Number(n) if *n == 2.0 || *n == 3.0 => resp.set(*n as u8),
                    _ => return Err(err("RESP version must be 2 or 3.")),
                }
                Ok(Value::Nil)
            })?
        }),
        (
            "set_repl",
            lua.create_function(|_, args: Variadic<Value>| {
                let [v] = args.as_slice() else {
                    return Err(err("redis.set_repl() requires one argument."));
                };
                let ok = match v {
                    Value::Integer(n) => (0..=3).contains(n),
                    Value::Number(n) => (0.0..=3.0).contains(n),
                    _ => false,
                };
                if !ok {
                    return Err(err("Invalid replication flags. Use REPL_AOF, REPL_REPLICA, REPL_ALL or REPL_NONE."));
                }
                // Writes always reach the journal (replicas and the AOF): say so once.
                let all = matches!(v, Value::Integer(3)) || matches!(v, Value::Number(n) if *n == 3.0);
                static SAID: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
                if !all && !SAID.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    crate::log::warning(
                        "redis.set_repl(): shardis always propagates a script's writes to \
                         replicas and the AOF; REPL_NONE, REPL_AOF and REPL_REPLICA are not \
                         honoured (said once)",
                    );
                }
                Ok(Value::Nil)
            })?,
        ),
        (
            "acl_check_cmd",
            lua.create_function(|_, args: Variadic<Value>| {
                let name = match args.first() {
                    Some(Value::String(s)) => s.as_bytes().to_vec(),
                    _ => return Err(err("Please specify at least one argument for this redis lib call")),
                };
                if table().lookup(&name).is_none() {
                    return Err(err("Invalid command passed to redis.acl_check_cmd()"));
                }
                Ok(Value::Boolean(true))
            })?,
        ),
        (
            "replicate_commands",
            lua.create_function(|_, _: Variadic<Value>| Ok(true))?,
        ),
        (
            "breakpoint",
            lua.create_function(|_, _: Variadic<Value>| Ok(false))?,
        ),
        (
            "debug",
            lua.create_function(|_, _: Variadic<Value>| Ok(()))?,
        ),
    ];
    for (k, f) in fns {
        r.raw_set(k, f)?;
    }
    Ok(r)
}

/// The error handler given to `xpcall`: turns any error value into Redis's
/// `{err = ..., source = ..., line = ...}` (string errors get the `ERR ` code).
fn error_info(lua: &Lua, e: Value) -> LuaResult<Table> {
    let text = match &e {
        Value::Table(t) => match t.raw_get::<Value>("err")? {
            Value::String(s) => s.to_string_lossy(),
            _ => "ERR unknown error".to_string(),
        },
        Value::String(s) => format!("ERR {}", s.to_string_lossy()),
        Value::Error(err) => {
            let e = root(err);
            match e.downcast_ref::<Coded>() {
                Some(c) => c.0.clone(),
                None => format!("ERR {}", message(e)),
            }
        }
        Value::Nil => "ERR nil".to_string(),
        Value::Boolean(b) => format!("ERR {b}"),
        other => format!("ERR {}", other.to_string().unwrap_or_default()),
    };
    let t = err_table(lua, &text)?;
    if let Some((source, _, line)) = locate(lua) {
        t.raw_set("source", source)?;
        t.raw_set("line", line)?;
    }
    Ok(t)
}

/// What `redis.call` needs besides the shard.
struct RunInfo {
    read_only: bool,
    resp: Rc<Cell<u8>>,
    slot: Arc<Slot>,
}

/// `redis.call` (`protected` false: an error is raised, as a `{err = ...}` table would be)
/// and `redis.pcall` (errors are returned as `{err = ...}`): runs one command on this shard.
fn exec(
    ctx: &RefCell<&mut Host>,
    run: &RunInfo,
    lua: &Lua,
    args: Variadic<Value>,
    protected: bool,
) -> LuaResult<Value> {
    let reply = {
        let mut ctx = ctx
            .try_borrow_mut()
            .map_err(|_| err("redis.call is not reentrant"))?;
        command(&mut ctx, run, &args)
    };
    match reply {
        Ok(Reply::Error(e)) | Err(e) => {
            if protected {
                Ok(Value::Table(err_table(lua, &e)?))
            } else {
                Err(coded(e))
            }
        }
        Ok(r) => reply_to_lua(lua, &r, run.resp.get()),
    }
}

/// Checks and runs one command for a script, in Redis 7.0's order of checks.
fn command(host: &mut Host, run: &RunInfo, args: &[Value]) -> Result<Reply, String> {
    if args.is_empty() {
        return Err("ERR Please specify at least one argument for this redis lib call".into());
    }
    let mut argv = Vec::with_capacity(args.len());
    for a in args {
        argv.push(match a {
            Value::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
            Value::Integer(i) => Bytes::from(crate::protocol::fmt_g17(*i as f64)),
            Value::Number(n) => Bytes::from(crate::protocol::fmt_g17(*n)),
            _ => {
                return Err(
                    "ERR Lua redis lib command arguments must be strings or integers".into(),
                )
            }
        });
    }
    let name = argv.first().cloned().unwrap_or_default();
    let Some((id, spec)) = table().lookup(&name) else {
        return Err("ERR Unknown Redis command called from script".into());
    };
    let n = argv.len() as i32;
    if (spec.arity > 0 && spec.arity != n) || n < -spec.arity {
        return Err("ERR Wrong number of args calling Redis command from script".into());
    }
    if spec.has(NOSCRIPT) {
        return Err(NOT_FROM_SCRIPT.into());
    }
    // The caller's ACL user (Redis's scriptVerifyACL), when it is restricted.
    if let Some((user, info)) = &host.acl {
        if let Some(e) = crate::acl::script_denial(user, info, id, spec, &argv) {
            return Err(e);
        }
    }
    // Blocking rows a script may call (BLMPOP, BZMPOP, XREAD, XREADGROUP) run their
    // non-blocking form, as in Redis; XREAD's BLOCK option is refused with Redis's text.
    if spec.has(BLOCKING) && stream_block(&argv) {
        return Err(format!(
            "ERR {} command is not allowed with BLOCK option from scripts",
            String::from_utf8_lossy(&name)
        ));
    }
    if spec.has(WRITE) && run.read_only {
        return Err(READONLY_SCRIPT.into());
    }
    if spec.has(WRITE) && crate::persist::writes_refused() {
        return Err(crate::persist::refusal_text());
    }
    // A read-only replica refuses a script's writes too (scripts reach a replica only from
    // its clients: a Redis 7 master replicates their effects, not the scripts).
    if spec.has(WRITE) {
        if let Some(e) = crate::repl::refusal(crate::repl::gate(), WRITE) {
            return Err(e.into());
        }
    }
    crate::commands::check_arity(spec, &argv).map_err(|e| e.to_string())?;
    if let Exec::Conn(_) = spec.exec {
        return conn_command(host, spec.name, &argv);
    }
    if spec.has(WRITE) {
        run.slot.wrote.store(true, Ordering::Release);
    }
    // The slow log and MONITOR see the call as Redis shows it, from the script's shard.
    let slow_before = host.w.eng.shard.slow.pending.len();
    let mon = host.w.eng.shard.monitor.then(|| argv.clone());
    let r = host.command(id, spec, argv, run.resp.get());
    if let Some(argv) = mon {
        crate::server::monitor::after_script_call(
            &mut host.w.eng.shard,
            slow_before,
            host.db,
            spec,
            &argv,
        );
    } else if host.w.eng.shard.slow.pending.len() > slow_before {
        crate::server::monitor::after_script_call(
            &mut host.w.eng.shard,
            slow_before,
            host.db,
            spec,
            &[],
        );
    }
    r
}

/// The connection-level commands a script may run here (SELECT changes the script's own
/// database only, as in Redis 7.0).
fn conn_command(ctx: &mut Host, name: &str, argv: &[Bytes]) -> Result<Reply, String> {
    match name {
        "ping" => Ok(match argv.get(1) {
            Some(m) => Reply::Bulk(m.clone()),
            None => Reply::status("PONG"),
        }),
        "echo" => Ok(Reply::Bulk(argv.get(1).cloned().unwrap_or_default())),
        "time" => {
            let d = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            Ok(Reply::Array(vec![
                Reply::bulk(d.as_secs().to_string()),
                Reply::bulk(d.subsec_micros().to_string()),
            ]))
        }
        "select" => {
            let db = argv
                .get(1)
                .and_then(|b| crate::protocol::parse_i64(b))
                .ok_or_else(|| CmdError::NotInteger.to_string())?;
            match usize::try_from(db) {
                Ok(d) if d < ctx.w.eng.shard.dbs.len() => {
                    ctx.db = d;
                    Ok(Reply::Ok)
                }
                _ => Err(CmdError::DbIndex.to_string()),
            }
        }
        // MEMORY USAGE runs where its key lives (a shard the script holds).
        "memory" => {
            let owner = argv.get(2).map_or(ctx.w.eng.id, |k| {
                crate::shard::route::shard_of(k, ctx.w.eng.nshards)
            });
            if !ctx.holds(owner) {
                return Err(UNSUPPORTED_IN_SCRIPT.into());
            }
            let (db, resp, argv) = (ctx.db, ctx.resp, argv.to_vec());
            let run = move |shard: &mut crate::shard::Shard| {
                let mut kc = crate::commands::KeyCtx {
                    shard,
                    db,
                    resp,
                    out: None,
                };
                crate::commands::keys::memory(&mut kc, &argv).map_err(|e| e.to_string())
            };
            if owner == ctx.w.eng.id {
                run(&mut ctx.w.eng.shard)
            } else {
                ctx.on_shard(owner, move |tw| run(&mut tw.shard))
                    .unwrap_or_else(|| Err(super::SHUTTING_DOWN.into()))
            }
        }
        _ => Err(UNSUPPORTED_IN_SCRIPT.into()),
    }
}

/// Where the script to run comes from.
pub enum Source<'a> {
    /// EVAL: the body itself.
    Body(&'a Bytes),
    /// EVALSHA: a sha1 some shard loaded.
    Sha(&'a Bytes),
}

fn with_vm<R>(f: impl FnOnce(&mut Vm) -> Result<R, CmdError>) -> Result<R, CmdError> {
    VM.with(|cell| {
        let mut guard = cell
            .try_borrow_mut()
            .map_err(|_| CmdError::err("scripting VM busy"))?;
        if guard.is_none() {
            let vm = Vm::new().map_err(|e| CmdError::err(format!("Lua setup failed: {e}")))?;
            *guard = Some(vm);
        }
        match guard.as_mut() {
            Some(vm) => f(vm),
            None => Err(CmdError::err("Lua setup failed")),
        }
    })
}

/// SCRIPT LOAD: compiles `body` here (errors as Redis words them) and makes it known to
/// every shard; returns its sha1.
pub fn load(body: &Bytes) -> Result<[u8; 40], CmdError> {
    let sha = super::sha1_hex(body);
    with_vm(|vm| {
        if !vm.scripts.contains_key(&sha) {
            vm.compile(sha, body)?;
        }
        Ok(())
    })?;
    super::remember(sha, body.clone());
    Ok(sha)
}

/// Bytes this shard's Lua VM holds (0 before its first script), for INFO's
/// `used_memory_lua`.
pub fn memory() -> usize {
    VM.with(|cell| {
        cell.try_borrow()
            .ok()
            .and_then(|g| g.as_ref().map(|vm| vm.lua.used_memory()))
            .unwrap_or(0)
    })
}

/// SCRIPT FLUSH on this shard: drops the VM (cache, globals, random state) like Redis's
/// new Lua state; the next script creates a fresh one.
pub fn reset() {
    VM.with(|cell| {
        if let Ok(mut g) = cell.try_borrow_mut() {
            *g = None;
        }
    });
}

/// The cached script for `src`, compiled (and made known to every shard) if needed:
/// NOSCRIPT for an unknown sha, Redis's compile error for a bad body.
fn script_for(vm: &mut Vm, src: &Source) -> Result<([u8; 40], Script), CmdError> {
    let sha = match src {
        Source::Body(b) => super::sha1_hex(b),
        Source::Sha(s) => super::sha_key(s).ok_or_else(|| CmdError::coded(super::NOSCRIPT))?,
    };
    if let Some(s) = vm.scripts.get(&sha) {
        return Ok((sha, s.clone()));
    }
    let s = match src {
        Source::Body(b) => {
            let s = vm.compile(sha, b)?;
            super::remember(sha, Bytes::clone(b));
            s
        }
        Source::Sha(_) => {
            let body = super::body_of(&sha).ok_or_else(|| CmdError::coded(super::NOSCRIPT))?;
            vm.compile(sha, &body)?
        }
    };
    Ok((sha, s))
}

/// The checks Redis makes before running a script (NOSCRIPT, compile errors), for a call
/// that will not run here (declared keys on several shards).
pub fn prepare(src: Source) -> Result<(), CmdError> {
    with_vm(|vm| script_for(vm, &src).map(|_| ()))
}

/// Runs a script for EVAL/EVALSHA(_RO) with its keys and arguments; `ro` for the `_RO`
/// variants. Script errors are error replies with Redis's texts.
pub fn eval(ctx: &mut Host, src: Source, keys: &[Bytes], args: &[Bytes], ro: bool) -> CmdResult {
    with_vm(|vm| {
        let (sha, script) = script_for(vm, &src)?;
        if ro && script.flags.shebang && !script.flags.no_writes {
            return Err(CmdError::coded(RO_WITH_WRITE_FLAG));
        }
        let read_only = ro || script.flags.no_writes;
        // A script declaring it may write is refused before it runs (Redis 7.0's
        // scriptPrepareForRun); one without flags fails at its first write instead.
        if script.flags.shebang && !read_only && crate::persist::writes_refused() {
            return Err(crate::persist::refusal());
        }
        run(vm, ctx, &script, Target::Eval(&sha), keys, args, read_only)
    })
}

fn strings(lua: &Lua, items: &[Bytes]) -> LuaResult<Table> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (i, b) in items.iter().enumerate() {
        t.raw_set(i + 1, lua.create_string(b)?)?;
    }
    Ok(t)
}

/// What is running: an EVAL script (KEYS and ARGV are globals) or a library function
/// (they are its arguments); errors name the script's sha or the function.
#[derive(Clone, Copy)]
enum Target<'a> {
    Eval(&'a [u8; 40]),
    Function(&'a [u8]),
}

fn run(
    vm: &mut Vm,
    ctx: &mut Host,
    script: &Script,
    target: Target,
    keys: &[Bytes],
    args: &[Bytes],
    read_only: bool,
) -> CmdResult {
    let lua_err = |e: mlua::Error| CmdError::err(format!("Error running script: {}", message(&e)));
    vm.resp.set(2);
    let keys = strings(&vm.lua, keys).map_err(lua_err)?;
    let args = strings(&vm.lua, args).map_err(lua_err)?;
    let (keys, args) = match target {
        Target::Eval(_) => {
            vm.visible.raw_set("KEYS", keys).map_err(lua_err)?;
            vm.visible.raw_set("ARGV", args).map_err(lua_err)?;
            (None, None)
        }
        Target::Function(_) => {
            vm.visible.raw_set("KEYS", Value::Nil).map_err(lua_err)?;
            vm.visible.raw_set("ARGV", Value::Nil).map_err(lua_err)?;
            (Some(keys), Some(args))
        }
    };
    let slot = SLOT.with(|s| s.clone());
    slot.kill.store(false, Ordering::Release);
    slot.wrote.store(false, Ordering::Release);
    slot.started.store(super::now_tick(), Ordering::Release);
    let info = RunInfo {
        read_only,
        resp: vm.resp.clone(),
        slot: slot.clone(),
    };
    let caller_resp = ctx.resp;
    let (redis, runner, handler) = (&vm.redis, &vm.run, &vm.handler);
    let fcaller = &vm.fenv.call;
    let ctx = RefCell::new(ctx);
    let out = vm.lua.scope(|scope| {
        let call =
            scope.create_function(|lua, a: Variadic<Value>| exec(&ctx, &info, lua, a, false))?;
        let pcall =
            scope.create_function(|lua, a: Variadic<Value>| exec(&ctx, &info, lua, a, true))?;
        let pump = scope.create_function(|_, ()| {
            // Never while a `redis.call` holds the worker (the hook only runs between
            // Lua instructions, so this is a safeguard).
            if let Ok(mut h) = ctx.try_borrow_mut() {
                h.pump();
            }
            Ok(())
        })?;
        redis.raw_set("call", call)?;
        redis.raw_set("pcall", pcall)?;
        vm.lua.set_named_registry_value(PUMP, pump)?;
        let r = match (&keys, &args) {
            (Some(k), Some(a)) => fcaller.call::<MultiValue>((
                script.f.clone(),
                handler.clone(),
                k.clone(),
                a.clone(),
            )),
            _ => runner.call::<MultiValue>((script.f.clone(), handler.clone())),
        };
        redis.raw_set("call", Value::Nil)?;
        redis.raw_set("pcall", Value::Nil)?;
        vm.lua.unset_named_registry_value(PUMP)?;
        r
    });
    slot.started.store(0, Ordering::Release);
    slot.kill.store(false, Ordering::Release);
    let out = out.map_err(lua_err)?;
    let mut it = out.into_iter();
    let ok = matches!(it.next(), Some(Value::Boolean(true)));
    let v = it.next().unwrap_or(Value::Nil);
    if ok {
        return lua_to_reply(&v, vm.resp.get(), caller_resp).map_err(lua_err);
    }
    let Value::Table(t) = v else {
        return Ok(Reply::error("ERR Error running script: unknown error"));
    };
    let text: String = t
        .raw_get::<Option<String>>("err")
        .ok()
        .flatten()
        .unwrap_or_default();
    let source: Option<String> = t.raw_get("source").ok().flatten();
    let line: Option<i64> = t.raw_get("line").ok().flatten();
    let what = match target {
        Target::Eval(sha) => String::from_utf8_lossy(sha),
        Target::Function(name) => String::from_utf8_lossy(name),
    };
    Ok(Reply::Error(match (source, line) {
        (Some(s), Some(l)) => format!("{text} script: {what}, on {s}:{l}."),
        _ => text,
    }))
}

/// FUNCTION LOAD / RESTORE: compiles `code` as a library in this shard's VM (Redis's
/// compile and registration errors) without installing it.
pub fn compile_library(code: &Bytes) -> Result<super::functions::Library, CmdError> {
    with_vm(|vm| super::library::compile(vm, code))
}

/// FCALL's `numkeys key... arg...` read into keys and arguments.
pub type Split<'a> = Result<(&'a [Bytes], &'a [Bytes]), CmdError>;

/// FCALL / FCALL_RO: the function `name` with `rest` = `numkeys key... arg...`; `split`
/// reads numkeys (after the lookup, as Redis orders its errors).
pub fn fcall(
    ctx: &mut Host,
    name: &[u8],
    rest: &[Bytes],
    ro: bool,
    split: fn(&[Bytes]) -> Split<'_>,
) -> CmdResult {
    with_vm(|vm| {
        super::library::sync(vm);
        let f = vm
            .functions
            .get(name)
            .cloned()
            .ok_or_else(|| CmdError::err("Function not found"))?;
        let (keys, args) = split(rest)?;
        if ro && !f.flags.no_writes {
            return Err(CmdError::coded(RO_WITH_WRITE_FLAG));
        }
        let read_only = ro || f.flags.no_writes;
        // A function that may write is refused while writes are (MISCONF), as a shebang
        // script is: functions always declare their flags.
        if !read_only && crate::persist::writes_refused() {
            return Err(crate::persist::refusal());
        }
        ctx.function = true;
        run(vm, ctx, &f, Target::Function(name), keys, args, read_only)
    })
}

/// XREAD / XREADGROUP with a BLOCK option (before STREAMS).
fn stream_block(argv: &[Bytes]) -> bool {
    let is_read = argv
        .first()
        .is_some_and(|n| n.eq_ignore_ascii_case(b"xread") || n.eq_ignore_ascii_case(b"xreadgroup"));
    is_read
        && argv
            .iter()
            .skip(1)
            .take_while(|a| !a.eq_ignore_ascii_case(b"streams"))
            .any(|a| a.eq_ignore_ascii_case(b"block"))
}
