//! The small libraries Redis adds to its Lua VM, written in Rust: `bit` (LuaBitOp's API on
//! 32-bit integers) and the deterministic `math.random` / `math.randomseed` (Redis's rand48,
//! reseeded with 0 before every script so a script's random numbers repeat run after run).
//! Installed once per VM; they run on the shard thread that owns the VM.

use std::cell::Cell;
use std::rc::Rc;

use mlua::{Lua, Result as LuaResult, Value, Variadic};

/// `bit.tobit`: a Lua number to a signed 32-bit integer, wrapping modulo 2^32 after rounding
/// to the nearest integer (LuaBitOp's `x + 2^52 + 2^51` trick rounds ties to even).
pub fn tobit(x: f64) -> i32 {
    if !x.is_finite() {
        return 0;
    }
    let r = x.round_ties_even().rem_euclid(4_294_967_296.0);
    (r as u64 as u32) as i32
}

fn arg_error(lua: &Lua, n: usize, fname: &str, got: &Value) -> mlua::Error {
    mlua::Error::RuntimeError(format!(
        "{}bad argument #{n} to '{fname}' (number expected, got {})",
        super::vm::position(lua),
        type_name(got)
    ))
}

/// Lua's name for a value's type, as error messages print it.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Nil => "no value",
        Value::Boolean(_) => "boolean",
        Value::LightUserData(_) | Value::UserData(_) => "userdata",
        Value::Integer(_) | Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Table(_) => "table",
        Value::Function(_) => "function",
        Value::Thread(_) => "thread",
        _ => "userdata",
    }
}

/// A number argument as `luaL_checknumber` takes it (numeric strings too).
pub fn num_arg(lua: &Lua, args: &[Value], n: usize, fname: &str) -> LuaResult<f64> {
    let v = args.get(n - 1).unwrap_or(&Value::Nil);
    match v {
        Value::Integer(i) => Ok(*i as f64),
        Value::Number(f) => Ok(*f),
        Value::String(s) => {
            let t = s.to_string_lossy();
            let t = t.trim();
            let parsed = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                i64::from_str_radix(h, 16).ok().map(|i| i as f64)
            } else {
                t.parse::<f64>().ok()
            };
            parsed.ok_or_else(|| arg_error(lua, n, fname, v))
        }
        _ => Err(arg_error(lua, n, fname, v)),
    }
}

fn bits(lua: &Lua, args: &[Value], n: usize, fname: &str) -> LuaResult<i32> {
    Ok(tobit(num_arg(lua, args, n, fname)?))
}

/// Installs the `bit` table.
pub fn install_bit(lua: &Lua) -> LuaResult<mlua::Table> {
    let t = lua.create_table()?;
    type Fold = fn(u32, u32) -> u32;
    let folds: [(&str, Fold); 3] = [
        ("band", |a, b| a & b),
        ("bor", |a, b| a | b),
        ("bxor", |a, b| a ^ b),
    ];
    for (name, op) in folds {
        let f = lua.create_function(move |lua, args: Variadic<Value>| {
            let mut acc = bits(lua, &args, 1, name)? as u32;
            for i in 2..=args.len() {
                acc = op(acc, bits(lua, &args, i, name)? as u32);
            }
            Ok(acc as i32)
        })?;
        t.raw_set(name, f)?;
    }
    t.raw_set(
        "tobit",
        lua.create_function(|lua, args: Variadic<Value>| bits(lua, &args, 1, "tobit"))?,
    )?;
    t.raw_set(
        "bnot",
        lua.create_function(|lua, args: Variadic<Value>| Ok(!bits(lua, &args, 1, "bnot")?))?,
    )?;
    t.raw_set(
        "bswap",
        lua.create_function(|lua, args: Variadic<Value>| {
            Ok(bits(lua, &args, 1, "bswap")?.swap_bytes())
        })?,
    )?;
    type Shift = fn(u32, u32) -> u32;
    let shifts: [(&str, Shift); 5] = [
        ("lshift", |a, n| a << n),
        ("rshift", |a, n| a >> n),
        ("arshift", |a, n| ((a as i32) >> n) as u32),
        ("rol", |a, n| a.rotate_left(n)),
        ("ror", |a, n| a.rotate_right(n)),
    ];
    for (name, op) in shifts {
        let f = lua.create_function(move |lua, args: Variadic<Value>| {
            let a = bits(lua, &args, 1, name)? as u32;
            let n = bits(lua, &args, 2, name)? as u32 & 31;
            Ok(op(a, n) as i32)
        })?;
        t.raw_set(name, f)?;
    }
    t.raw_set(
        "tohex",
        lua.create_function(|lua, args: Variadic<Value>| {
            let mut b = bits(lua, &args, 1, "tohex")? as u32;
            let mut n = match args.get(1) {
                None => 8,
                Some(_) => bits(lua, &args, 2, "tohex")?,
            };
            let digits: &[u8; 16] = if n < 0 {
                n = n.saturating_neg();
                b"0123456789ABCDEF"
            } else {
                b"0123456789abcdef"
            };
            let n = n.min(8) as usize;
            let mut buf = [0u8; 8];
            for slot in buf.iter_mut().take(n).rev() {
                *slot = digits[(b & 15) as usize];
                b >>= 4;
            }
            lua.create_string(buf.get(..n).unwrap_or_default())
        })?,
    )?;
    Ok(t)
}

/// Redis's rand48 (`redisLrand48`): the POSIX 48-bit linear congruential generator.
#[derive(Clone, Copy, Debug)]
pub struct Rand48(u64);

const RAND48_MAX: u32 = i32::MAX as u32;

impl Rand48 {
    /// The state `redisSrand48(seed)` leaves: low 16 bits 0x330E, then the seed's 32 bits.
    pub fn seeded(seed: i32) -> Rand48 {
        Rand48(((seed as u32 as u64) << 16) | 0x330E)
    }

    /// The state of a process that never seeded (`x = {X0, X1, X2}` in Redis's rand.c): a
    /// new VM starts here, as Redis's single VM does at startup (7.0 does not reseed per
    /// script, so the sequence runs on across scripts).
    pub fn initial() -> Rand48 {
        Rand48(0x1234_ABCD_330E)
    }

    /// The next 31-bit value.
    pub fn next_u31(&mut self) -> u32 {
        self.0 = (self.0.wrapping_mul(0x5_DEEC_E66D).wrapping_add(0xB)) & ((1 << 48) - 1);
        (self.0 >> 17) as u32
    }

    /// `redis_math_random`'s base number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        f64::from(self.next_u31() % RAND48_MAX) / f64::from(RAND48_MAX)
    }
}

/// Replaces `math.random` and `math.randomseed` with Redis's versions sharing `state`.
pub fn install_random(lua: &Lua, math: &mlua::Table, state: Rc<Cell<Rand48>>) -> LuaResult<()> {
    let st = state.clone();
    let random = lua.create_function(move |lua, args: Variadic<Value>| {
        let mut g = st.get();
        let r = g.unit();
        st.set(g);
        let int =
            |n: usize| -> LuaResult<i64> { Ok(num_arg(lua, &args, n, "random")? as i32 as i64) };
        match args.len() {
            0 => Ok(r),
            1 => {
                let u = int(1)?;
                if u < 1 {
                    return Err(mlua::Error::RuntimeError(format!(
                        "{}bad argument #1 to 'random' (interval is empty)",
                        super::vm::position(lua)
                    )));
                }
                Ok((r * u as f64).floor() + 1.0)
            }
            2 => {
                let (l, u) = (int(1)?, int(2)?);
                if l > u {
                    return Err(mlua::Error::RuntimeError(format!(
                        "{}bad argument #2 to 'random' (interval is empty)",
                        super::vm::position(lua)
                    )));
                }
                Ok((r * (u - l + 1) as f64).floor() + l as f64)
            }
            _ => Err(mlua::Error::RuntimeError(format!(
                "{}wrong number of arguments",
                super::vm::position(lua)
            ))),
        }
    })?;
    math.raw_set("random", random)?;
    let seed = lua.create_function(move |lua, args: Variadic<Value>| {
        let s = num_arg(lua, &args, 1, "randomseed")? as i32;
        state.set(Rand48::seeded(s));
        Ok(())
    })?;
    math.raw_set("randomseed", seed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_ops() {
        assert_eq!(tobit(4_294_967_301.0), 5);
        assert_eq!(tobit(-1.0), -1);
        assert_eq!(tobit(2_147_483_648.0), i32::MIN);
        assert_eq!(tobit(0.5), 0);
        assert_eq!(tobit(1.5), 2);
    }

    #[test]
    fn rand48_matches_redis() {
        // redis-server 7.0.15: math.random(1,100) twice then math.random() after reseed(0).
        let mut g = Rand48::initial();
        let a = (g.unit() * 100.0).floor() + 1.0;
        let b = (g.unit() * 100.0).floor() + 1.0;
        assert_eq!((a, b), (40.0, 85.0));
        assert_eq!(format!("{:.14}", g.unit()), "0.35333609737146");
        let mut g = Rand48::seeded(7);
        assert_eq!((g.unit() * 1000.0).floor() + 1.0, 267.0);
    }
}
