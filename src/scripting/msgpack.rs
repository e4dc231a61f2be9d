//! `cmsgpack` as Redis embeds it (antirez's lua_cmsgpack.c), in Rust: `pack(...)`,
//! `unpack(s)`, `unpack_one(s [, offset])`, `unpack_limit(s, limit [, offset])`, with its
//! encoding choices (integers in the smallest form, floats as float32 when exact, tables as
//! arrays when their keys are exactly 1..n, tables nested deeper than 16 packed as nil) and
//! its error texts. Installed once per VM; runs on the VM's shard thread.

use mlua::{Lua, MultiValue, Result as LuaResult, Table, Value, Variadic};

/// `LUACMSGPACK_MAX_NESTING`: deeper tables are packed as nil.
const MAX_NESTING: usize = 16;

fn lua_error(lua: &Lua, msg: &str) -> mlua::Error {
    mlua::Error::RuntimeError(format!("{}{msg}", super::vm::position(lua)))
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Number(n) => Some(*n),
        _ => None,
    }
}

fn encode_int(out: &mut Vec<u8>, n: i64) {
    if n >= 0 {
        if n <= 127 {
            out.push(n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[0xcc, n as u8]);
        } else if n <= 0xffff {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(0xcf);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    } else if n >= -32 {
        out.push(n as i8 as u8);
    } else if n >= -128 {
        out.extend_from_slice(&[0xd0, n as i8 as u8]);
    } else if n >= -32768 {
        out.push(0xd1);
        out.extend_from_slice(&(n as i16).to_be_bytes());
    } else if n >= -2_147_483_648 {
        out.push(0xd2);
        out.extend_from_slice(&(n as i32).to_be_bytes());
    } else {
        out.push(0xd3);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_number(out: &mut Vec<u8>, n: f64) {
    // IS_INT64_EQUIVALENT: finite and equal to its int64 truncation.
    if n.is_finite() && (n as i64) as f64 == n {
        encode_int(out, n as i64);
    } else if f64::from(n as f32) == n {
        out.push(0xca);
        out.extend_from_slice(&(n as f32).to_be_bytes());
    } else {
        out.push(0xcb);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn encode_len(out: &mut Vec<u8>, n: usize, fix: u8, fix_max: usize, op16: u8, op32: u8) {
    if n <= fix_max {
        out.push(fix | n as u8);
    } else if n <= 0xffff {
        out.push(op16);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(op32);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn encode_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let n = b.len();
    if n < 32 {
        out.push(0xa0 | n as u8);
    } else if n <= 0xff {
        out.extend_from_slice(&[0xd9, n as u8]);
    } else if n <= 0xffff {
        out.push(0xda);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(0xdb);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
    out.extend_from_slice(b);
}

/// `table_is_an_array`: every key a positive integer and the largest equals the count.
fn is_array(t: &Table) -> LuaResult<bool> {
    let (mut count, mut max) = (0f64, 0f64);
    for pair in t.clone().pairs::<Value, Value>() {
        let (k, _) = pair?;
        match number(&k) {
            Some(n) if n > 0.0 && n.trunc() == n && n <= f64::from(i32::MAX) => {
                count += 1.0;
                max = max.max(n);
            }
            _ => return Ok(false),
        }
    }
    Ok(max == count)
}

fn encode(out: &mut Vec<u8>, v: &Value, level: usize) -> LuaResult<()> {
    match v {
        Value::String(s) => encode_bytes(out, &s.as_bytes()),
        Value::Boolean(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
        Value::Integer(_) | Value::Number(_) => encode_number(out, number(v).unwrap_or(0.0)),
        Value::Table(t) if level < MAX_NESTING => {
            if is_array(t)? {
                let n = t.raw_len();
                encode_len(out, n, 0x90, 15, 0xdc, 0xdd);
                for j in 1..=n {
                    encode(out, &t.raw_get::<Value>(j)?, level + 1)?;
                }
            } else {
                let pairs: Vec<(Value, Value)> = t
                    .clone()
                    .pairs::<Value, Value>()
                    .collect::<LuaResult<_>>()?;
                encode_len(out, pairs.len(), 0x80, 15, 0xde, 0xdf);
                for (k, val) in &pairs {
                    encode(out, k, level + 1)?;
                    encode(out, val, level + 1)?;
                }
            }
        }
        _ => out.push(0xc0),
    }
    Ok(())
}

/// Why decoding stopped.
enum Stop {
    Eof,
    BadFormat,
}

struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let end = self.pos.checked_add(n).ok_or(Stop::Eof)?;
        let s = self.b.get(self.pos..end).ok_or(Stop::Eof)?;
        self.pos = end;
        Ok(s)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn left(&self) -> usize {
        self.b.len().saturating_sub(self.pos)
    }
}

fn decode(lua: &Lua, c: &mut Cur) -> Result<LuaResult<Value>, Stop> {
    let t = c.fixed::<1>()?[0];
    let num = |n: f64| Ok(Ok(Value::Number(n)));
    match t {
        0xcc => num(f64::from(c.fixed::<1>()?[0])),
        0xd0 => num(f64::from(c.fixed::<1>()?[0] as i8)),
        0xcd => num(f64::from(u16::from_be_bytes(c.fixed()?))),
        0xd1 => num(f64::from(i16::from_be_bytes(c.fixed()?))),
        0xce => num(f64::from(u32::from_be_bytes(c.fixed()?))),
        0xd2 => num(f64::from(i32::from_be_bytes(c.fixed()?))),
        0xcf => num(u64::from_be_bytes(c.fixed()?) as f64),
        0xd3 => num(i64::from_be_bytes(c.fixed()?) as f64),
        0xc0 => Ok(Ok(Value::Nil)),
        0xc3 => Ok(Ok(Value::Boolean(true))),
        0xc2 => Ok(Ok(Value::Boolean(false))),
        0xca => num(f64::from(f32::from_be_bytes(c.fixed()?))),
        0xcb => num(f64::from_be_bytes(c.fixed()?)),
        0xd9 => {
            let n = usize::from(c.fixed::<1>()?[0]);
            string(lua, c, n)
        }
        0xda => {
            let n = usize::from(u16::from_be_bytes(c.fixed()?));
            string(lua, c, n)
        }
        0xdb => {
            let n = u32::from_be_bytes(c.fixed()?) as usize;
            string(lua, c, n)
        }
        0xdc => {
            let n = usize::from(u16::from_be_bytes(c.fixed()?));
            array(lua, c, n)
        }
        0xdd => {
            let n = u32::from_be_bytes(c.fixed()?) as usize;
            array(lua, c, n)
        }
        0xde => {
            let n = usize::from(u16::from_be_bytes(c.fixed()?));
            map(lua, c, n)
        }
        0xdf => {
            let n = u32::from_be_bytes(c.fixed()?) as usize;
            map(lua, c, n)
        }
        0x00..=0x7f => num(f64::from(t)),
        0xe0..=0xff => num(f64::from(t as i8)),
        0xa0..=0xbf => string(lua, c, usize::from(t & 0x1f)),
        0x90..=0x9f => array(lua, c, usize::from(t & 0x0f)),
        0x80..=0x8f => map(lua, c, usize::from(t & 0x0f)),
        _ => Err(Stop::BadFormat),
    }
}

fn string(lua: &Lua, c: &mut Cur, n: usize) -> Result<LuaResult<Value>, Stop> {
    let s = c.take(n)?;
    Ok(lua.create_string(s).map(Value::String))
}

fn array(lua: &Lua, c: &mut Cur, n: usize) -> Result<LuaResult<Value>, Stop> {
    let t = match lua.create_table() {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    for j in 1..=n {
        let v = match decode(lua, c)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = t.raw_set(j, v) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(Value::Table(t)))
}

fn map(lua: &Lua, c: &mut Cur, n: usize) -> Result<LuaResult<Value>, Stop> {
    let t = match lua.create_table() {
        Ok(t) => t,
        Err(e) => return Ok(Err(e)),
    };
    for _ in 0..n {
        let k = match decode(lua, c)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let v = match decode(lua, c)? {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = t.raw_set(k, v) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(Value::Table(t)))
}

/// `luaL_checklstring` on argument 1 (numbers are converted, as in C).
fn input(lua: &Lua, args: &[Value], fname: &str) -> LuaResult<Vec<u8>> {
    match args.first() {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(v @ (Value::Integer(_) | Value::Number(_))) => {
            Ok(crate::protocol::fmt_g(number(v).unwrap_or(0.0), 14).into_bytes())
        }
        other => Err(lua_error(
            lua,
            &format!(
                "bad argument #1 to '{fname}' (string expected, got {})",
                super::libs::type_name(other.unwrap_or(&Value::Nil))
            ),
        )),
    }
}

/// `mp_unpack_full`.
fn unpack_full(lua: &Lua, s: &[u8], limit: i64, offset: i64) -> LuaResult<MultiValue> {
    let decode_all = limit == 0 && offset == 0;
    let len = s.len() as i64;
    if offset < 0 || limit < 0 {
        return Err(lua_error(
            lua,
            &format!("Invalid request to unpack with offset of {offset} and limit of {len}."),
        ));
    }
    if offset > len {
        return Err(lua_error(
            lua,
            &format!("Start offset {offset} greater than input length {len}."),
        ));
    }
    let limit = if decode_all { i64::MAX } else { limit };
    let mut c = Cur {
        b: s.get(offset as usize..).unwrap_or_default(),
        pos: 0,
    };
    let mut out = Vec::new();
    while c.left() > 0 && (out.len() as i64) < limit {
        match decode(lua, &mut c) {
            Ok(v) => out.push(v?),
            Err(Stop::Eof) => return Err(lua_error(lua, "Missing bytes in input.")),
            Err(Stop::BadFormat) => return Err(lua_error(lua, "Bad data format in input.")),
        }
    }
    if !decode_all {
        let next = if c.left() == 0 {
            -1
        } else {
            len - c.left() as i64
        };
        out.insert(0, Value::Number(next as f64));
    }
    Ok(MultiValue::from_iter(out))
}

/// `luaL_optinteger` / `luaL_checkinteger` at argument `n` (1-based).
fn int_arg(lua: &Lua, args: &[Value], n: usize, fname: &str, opt: bool) -> LuaResult<i64> {
    match args.get(n - 1) {
        None | Some(Value::Nil) if opt => Ok(0),
        _ => Ok(super::libs::num_arg(lua, args, n, fname)? as i64),
    }
}

/// Installs the `cmsgpack` table.
pub fn install(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: Variadic<Value>| {
            if args.is_empty() {
                return Err(lua_error(
                    lua,
                    "bad argument #0 to 'pack' (MessagePack pack needs input.)",
                ));
            }
            let mut out = Vec::new();
            for a in args.iter() {
                encode(&mut out, a, 0)?;
            }
            lua.create_string(out)
        })?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, args: Variadic<Value>| {
            let s = input(lua, &args, "unpack")?;
            unpack_full(lua, &s, 0, 0)
        })?,
    )?;
    t.raw_set(
        "unpack_one",
        lua.create_function(|lua, args: Variadic<Value>| {
            let offset = int_arg(lua, &args, 2, "unpack_one", true)?;
            let s = input(lua, &args, "unpack_one")?;
            unpack_full(lua, &s, 1, offset)
        })?,
    )?;
    t.raw_set(
        "unpack_limit",
        lua.create_function(|lua, args: Variadic<Value>| {
            let limit = int_arg(lua, &args, 2, "unpack_limit", false)?;
            let offset = int_arg(lua, &args, 3, "unpack_limit", true)?;
            let s = input(lua, &args, "unpack_limit")?;
            unpack_full(lua, &s, limit, offset)
        })?,
    )?;
    t.raw_set("_NAME", "cmsgpack")?;
    t.raw_set("_VERSION", "lua-cmsgpack 0.4.0")?;
    t.raw_set("_COPYRIGHT", "Copyright (C) 2012, Salvatore Sanfilippo")?;
    t.raw_set("_DESCRIPTION", "MessagePack C implementation for Lua")?;
    Ok(t)
}
