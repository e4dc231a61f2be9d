//! Function libraries inside one shard's Lua VM (runs on that shard's thread): the load-time
//! sandbox a library's code runs in, `redis.register_function` with Redis 7.0's argument
//! rules and error texts, and keeping the VM's compiled functions in step with the registry
//! in `functions` (recompiled when its generation moves).
//!
//! While a library loads, its globals are only `redis` with `register_function`, `log`, the
//! `LOG_*` constants and `REDIS_VERSION(_NUM)`; anything else is `Script attempted to access
//! nonexistent global variable`, as in Redis. The functions it defines keep that environment
//! table, whose `__index` then points at the ordinary script globals, so at run time they see
//! what EVAL scripts see (without KEYS and ARGV: a function gets them as arguments).

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mlua::{chunk::ChunkMode, Function, Lua, Result as LuaResult, Table, Value, Variadic};

use super::functions::{self, FunctionMeta, Library};
use super::vm::{Script, Vm};
use super::Flags;
use crate::error::CmdError;

/// Name library code is compiled under (`user_function:LINE:` in messages).
const USER_FUNCTION: &str = "@user_function";
/// Redis 7.0's `LOAD_TIMEOUT_MS`.
const LOAD_TIMEOUT: Duration = Duration::from_millis(500);

/// Receives the real globals and the script globals; returns the functions' environment,
/// the load-time `redis` table, the switch between load and run globals, and the caller
/// that runs a function with its keys and arguments under an error handler.
const INIT_FN: &str = r#"
local G, visible = ...
local error, setmetatable, tostring, xpcall = G.error, G.setmetatable, G.tostring, G.xpcall
local function missing(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 2)
end
local function readonly() error("Attempt to modify a readonly table", 2) end
local api_redis = setmetatable({}, {__index = missing, __metatable = false})
local api = setmetatable({
  redis = setmetatable({}, {__index = api_redis, __newindex = readonly, __metatable = false})
}, {__index = missing, __metatable = false})
local mt = {__index = visible, __newindex = readonly, __metatable = false}
local env = setmetatable({}, mt)
local function loading(on)
  if on then mt.__index = api else mt.__index = visible end
end
local function call(f, h, k, a) return xpcall(function() return f(k, a) end, h) end
return env, api_redis, loading, call
"#;

/// The functions' side of a VM, built once with it.
pub struct FnEnv {
    env: Table,
    api_redis: Table,
    loading: Function,
    pub call: Function,
}

thread_local! {
    /// When the library being loaded on this thread must stop (checked by the VM's hook).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Whether a library load on this thread has run past Redis's 500 ms.
pub fn load_timed_out() -> bool {
    DEADLINE.with(|d| d.get().is_some_and(|t| Instant::now() >= t))
}

/// Builds the functions' environment in `lua` (`redis` is the real `redis` table, whose
/// `log` and constants the load-time table shares).
pub fn install(lua: &Lua, g: &Table, visible: &Table, redis: &Table) -> LuaResult<FnEnv> {
    let init = lua
        .load(INIT_FN)
        .set_name(super::vm::INTERNAL)
        .set_mode(ChunkMode::Text);
    let (env, api_redis, loading, call): (Table, Table, Function, Function) =
        init.call((g.clone(), visible.clone()))?;
    for k in [
        "log",
        "LOG_DEBUG",
        "LOG_VERBOSE",
        "LOG_NOTICE",
        "LOG_WARNING",
        "REDIS_VERSION",
        "REDIS_VERSION_NUM",
    ] {
        api_redis.raw_set(k, redis.raw_get::<Value>(k)?)?;
    }
    Ok(FnEnv {
        env,
        api_redis,
        loading,
        call,
    })
}

/// A table-style error raised from `register_function` (`{err = "ERR ..."}` in Redis).
fn fail(msg: &str) -> mlua::Error {
    super::vm::coded(format!("ERR {msg}"))
}

/// `lua_isstring` + `lua_tostring`: strings, and numbers as Lua prints them.
fn as_text(v: &Value) -> Option<Bytes> {
    match v {
        Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Integer(i) => Some(Bytes::from(i.to_string())),
        Value::Number(n) => Some(Bytes::from(crate::protocol::fmt_g(*n, 14))),
        _ => None,
    }
}

fn read_flags(t: &Table) -> LuaResult<Option<Flags>> {
    let mut f = Flags {
        shebang: true,
        ..Flags::default()
    };
    for j in 1.. {
        let v: Value = t.raw_get(j)?;
        if v.is_nil() {
            break;
        }
        match as_text(&v) {
            Some(name) if functions::set_flag(&mut f, &name) => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(f))
}

/// One `redis.register_function` call: its arguments as Redis 7.0 reads them.
fn register(args: Variadic<Value>) -> LuaResult<(FunctionMeta, Function)> {
    let base = Flags {
        shebang: true,
        ..Flags::default()
    };
    let (name, desc, flags, callback) = match args.as_slice() {
        [name, cb] => {
            let name = as_text(name).ok_or_else(|| {
                fail("first argument to redis.register_function must be a string")
            })?;
            let Value::Function(cb) = cb else {
                return Err(fail(
                    "second argument to redis.register_function must be a function",
                ));
            };
            (name, None, base, cb.clone())
        }
        [named] => {
            let Value::Table(t) = named else {
                return Err(fail("calling redis.register_function with a single argument is only applicable to Lua table (representing named arguments)."));
            };
            let (mut name, mut desc, mut flags, mut cb) = (None, None, base, None);
            for pair in t.pairs::<Value, Value>() {
                let (k, v) = pair?;
                let key = as_text(&k).ok_or_else(|| {
                    fail("named argument key given to redis.register_function is not a string")
                })?;
                match key.to_ascii_lowercase().as_slice() {
                    b"function_name" => {
                        name = Some(as_text(&v).ok_or_else(|| {
                            fail("function_name argument given to redis.register_function must be a string")
                        })?);
                    }
                    b"description" => {
                        desc = Some(as_text(&v).ok_or_else(|| {
                            fail("description argument given to redis.register_function must be a string")
                        })?);
                    }
                    b"callback" => {
                        let Value::Function(f) = v else {
                            return Err(fail("callback argument given to redis.register_function must be a function"));
                        };
                        cb = Some(f);
                    }
                    b"flags" => {
                        let Value::Table(ft) = v else {
                            return Err(fail("flags argument to redis.register_function must be a table representing function flags"));
                        };
                        flags = read_flags(&ft)?.ok_or_else(|| fail("unknown flag given"))?;
                    }
                    _ => return Err(fail("unknown argument given to redis.register_function")),
                }
            }
            let name = name
                .ok_or_else(|| fail("redis.register_function must get a function name argument"))?;
            let cb =
                cb.ok_or_else(|| fail("redis.register_function must get a callback argument"))?;
            (name, desc, flags, cb)
        }
        _ => return Err(fail("wrong number of arguments to redis.register_function")),
    };
    functions::check_name(&name).map_err(super::vm::coded)?;
    Ok((FunctionMeta { name, desc, flags }, callback))
}

/// Runs a library's code (after its shebang line) in the load-time sandbox of `vm` and
/// returns what it registered; Redis's compile and registration errors.
pub(super) fn load(vm: &Vm, body: &[u8]) -> Result<Vec<(FunctionMeta, Function)>, CmdError> {
    let chunk = vm
        .lua
        .load(body)
        .set_name(USER_FUNCTION)
        .set_mode(ChunkMode::Text)
        .into_function()
        .map_err(|e| {
            CmdError::coded(format!(
                "ERR Error compiling function: {}",
                super::vm::syntax_message(&e)
            ))
        })?;
    let setup = |e: mlua::Error| CmdError::err(super::vm::message(&e));
    chunk.set_environment(vm.fenv.env.clone()).map_err(setup)?;
    let found: RefCell<Vec<(FunctionMeta, Function)>> = RefCell::new(Vec::new());
    DEADLINE.with(|d| d.set(Some(Instant::now() + LOAD_TIMEOUT)));
    let out = vm.lua.scope(|scope| {
        let reg = scope.create_function(|_, args: Variadic<Value>| {
            let (meta, f) = register(args)?;
            let mut found = found.borrow_mut();
            if found.iter().any(|(m, _)| m.name == meta.name) {
                return Err(fail("Function already exists in the library"));
            }
            found.push((meta, f));
            Ok(())
        })?;
        vm.fenv.api_redis.raw_set("register_function", reg)?;
        vm.fenv.loading.call::<()>(true)?;
        let r = vm
            .run
            .call::<(bool, Value)>((chunk.clone(), vm.handler.clone()));
        vm.fenv.loading.call::<()>(false)?;
        vm.fenv.api_redis.raw_set("register_function", Value::Nil)?;
        r
    });
    DEADLINE.with(|d| d.set(None));
    let (ok, err) = out.map_err(setup)?;
    if !ok {
        let text = match err {
            Value::Table(t) => t.raw_get::<Option<String>>("err").ok().flatten(),
            _ => None,
        };
        return Err(CmdError::coded(format!(
            "ERR Error registering functions: {}",
            text.unwrap_or_default()
        )));
    }
    Ok(found.into_inner())
}

/// Brings `vm`'s functions up to the registry's generation: every library recompiled.
pub(super) fn sync(vm: &mut Vm) {
    if vm.fn_gen == functions::generation() {
        return;
    }
    let (gen, libs) = functions::snapshot();
    vm.functions.clear();
    for lib in libs {
        match load(vm, lib.body()) {
            Ok(fs) => {
                for (meta, f) in fs {
                    let script = Script {
                        f,
                        flags: meta.flags,
                    };
                    vm.functions.insert(meta.name, script);
                }
            }
            Err(e) => crate::log::warning(&format!(
                "library '{}' did not load on this shard: {e}",
                String::from_utf8_lossy(&lib.name)
            )),
        }
    }
    vm.fn_gen = gen;
}

/// FUNCTION LOAD / RESTORE's compile step: the library checked by loading it in `vm`.
pub(super) fn compile(vm: &Vm, code: &Bytes) -> Result<Library, CmdError> {
    let name = functions::metadata(code)?;
    let mut lib = Library {
        name,
        code: code.clone(),
        funcs: Vec::new(),
    };
    lib.funcs = load(vm, lib.body())?.into_iter().map(|(m, _)| m).collect();
    Ok(lib)
}
