//! Conversions between replies and Lua values, with Redis 7.0's rules (`script_lua.c`):
//! a command's reply becomes a Lua value for `redis.call` in the script's protocol
//! (`redis.setresp`, RESP2 by default), and a script's return value becomes the reply its
//! caller gets. Runs on the VM's shard thread.

use bytes::Bytes;
use mlua::{Lua, Result as LuaResult, Table, Value};

use crate::protocol::reply::{encode_bulk, Reply};

/// Deepest nesting converted; deeper values (a table holding itself...) end in an error, as
/// Redis's "reached lua stack limit".
const MAX_DEPTH: usize = 1000;

/// `{err = text}`, the shape `redis.pcall` returns for an error reply.
pub fn err_table(lua: &Lua, text: &str) -> LuaResult<Table> {
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set("err", text)?;
    Ok(t)
}

fn single(lua: &Lua, key: &str, v: Value) -> LuaResult<Value> {
    let t = lua.create_table_with_capacity(0, 1)?;
    t.raw_set(key, v)?;
    Ok(Value::Table(t))
}

fn bytes(lua: &Lua, b: &[u8]) -> LuaResult<Value> {
    Ok(Value::String(lua.create_string(b)?))
}

/// A command's reply as the Lua value `redis.call` returns, for a script using protocol
/// `resp` (2 or 3). Error replies become `{err = ...}` (the caller decides to raise).
pub fn reply_to_lua(lua: &Lua, r: &Reply, resp: u8) -> LuaResult<Value> {
    let r3 = resp >= 3;
    Ok(match r {
        Reply::Ok => single(lua, "ok", bytes(lua, b"OK")?)?,
        Reply::Status(s) => single(lua, "ok", bytes(lua, s)?)?,
        Reply::Error(e) => Value::Table(err_table(lua, e)?),
        Reply::Int(i) => Value::Number(*i as f64),
        Reply::Bulk(b) => bytes(lua, b)?,
        Reply::Null | Reply::NullArray => {
            if r3 {
                Value::Nil
            } else {
                Value::Boolean(false)
            }
        }
        Reply::Array(items) | Reply::Push(items) => list(lua, items, resp)?,
        Reply::Set(items) => {
            if r3 {
                let set = lua.create_table()?;
                for i in items {
                    set.raw_set(reply_to_lua(lua, i, resp)?, true)?;
                }
                single(lua, "set", Value::Table(set))?
            } else {
                list(lua, items, resp)?
            }
        }
        Reply::Pairs(pairs) if !r3 => {
            let t = lua.create_table_with_capacity(pairs.len(), 0)?;
            for (n, (k, v)) in pairs.iter().enumerate() {
                let pair = lua.create_table_with_capacity(2, 0)?;
                pair.raw_set(1, reply_to_lua(lua, k, resp)?)?;
                pair.raw_set(2, reply_to_lua(lua, v, resp)?)?;
                t.raw_set(n + 1, pair)?;
            }
            Value::Table(t)
        }
        Reply::Map(pairs) | Reply::Pairs(pairs) => {
            if r3 {
                let map = lua.create_table()?;
                for (k, v) in pairs {
                    map.raw_set(reply_to_lua(lua, k, resp)?, reply_to_lua(lua, v, resp)?)?;
                }
                single(lua, "map", Value::Table(map))?
            } else {
                let t = lua.create_table_with_capacity(pairs.len() * 2, 0)?;
                for (n, (k, v)) in pairs.iter().enumerate() {
                    t.raw_set(2 * n + 1, reply_to_lua(lua, k, resp)?)?;
                    t.raw_set(2 * n + 2, reply_to_lua(lua, v, resp)?)?;
                }
                Value::Table(t)
            }
        }
        Reply::Double(d) => {
            if r3 {
                single(lua, "double", Value::Number(*d))?
            } else {
                bytes(lua, crate::protocol::fmt_g17(*d).as_bytes())?
            }
        }
        Reply::Bool(b) => {
            if r3 {
                Value::Boolean(*b)
            } else {
                Value::Number(if *b { 1.0 } else { 0.0 })
            }
        }
        Reply::Verbatim(b) => {
            if r3 {
                let v = lua.create_table_with_capacity(0, 2)?;
                v.raw_set("format", "txt")?;
                v.raw_set("string", lua.create_string(b)?)?;
                single(lua, "verbatim_string", Value::Table(v))?
            } else {
                bytes(lua, b)?
            }
        }
        // Handlers run for scripts get no output buffer, so they never answer pre-encoded.
        // Replies a handler encoded itself (stream entries): read back, then converted.
        Reply::Raw(b) => match parse_raw(b, &mut 0) {
            Some(r) => return reply_to_lua(lua, &r, resp),
            None => Value::Boolean(false),
        },
    })
}

/// One RESP2 reply (arrays, bulk and simple strings, integers, errors, nulls) from `b` at
/// `pos`: what `Reply::Raw` holds when a handler encoded its reply itself.
fn parse_raw(b: &[u8], pos: &mut usize) -> Option<Reply> {
    let tag = *b.get(*pos)?;
    let rest = b.get(*pos + 1..)?;
    let eol = memchr::memchr(b'\r', rest)?;
    let line = rest.get(..eol)?;
    *pos += 1 + eol + 2;
    let n = || crate::protocol::parse_i64(line);
    Some(match tag {
        b'+' => Reply::Status(Bytes::copy_from_slice(line)),
        b'-' => Reply::Error(String::from_utf8_lossy(line).into_owned()),
        b':' => Reply::Int(n()?),
        b'$' => {
            let len = n()?;
            if len < 0 {
                return Some(Reply::Null);
            }
            let len = len as usize;
            let v = b.get(*pos..pos.checked_add(len)?)?;
            *pos += len + 2;
            Reply::Bulk(Bytes::copy_from_slice(v))
        }
        b'*' => {
            let len = n()?;
            if len < 0 {
                return Some(Reply::NullArray);
            }
            let mut items = Vec::with_capacity((len as usize).min(1024));
            for _ in 0..len {
                items.push(parse_raw(b, pos)?);
            }
            Reply::Array(items)
        }
        _ => return None,
    })
}

fn list(lua: &Lua, items: &[Reply], resp: u8) -> LuaResult<Value> {
    let t = lua.create_table_with_capacity(items.len(), 0)?;
    for (n, i) in items.iter().enumerate() {
        t.raw_set(n + 1, reply_to_lua(lua, i, resp)?)?;
    }
    Ok(Value::Table(t))
}

/// A Lua number as Redis casts it to `long long` (x86's conversion: out of range and NaN
/// give the smallest integer).
pub fn lua_int(n: f64) -> i64 {
    // 2^63: the first double out of range either way.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    if !(-LIMIT..LIMIT).contains(&n) {
        i64::MIN
    } else {
        n as i64
    }
}

/// Replaces CR and LF with spaces (status lines and big numbers are single lines).
fn one_line(b: &[u8]) -> Bytes {
    Bytes::from(
        b.iter()
            .map(|&c| if c == b'\r' || c == b'\n' { b' ' } else { c })
            .collect::<Vec<u8>>(),
    )
}

/// A script's return value as the reply for a caller speaking `caller_resp`, the script
/// having chosen `script_resp` with `redis.setresp`.
pub fn lua_to_reply(v: &Value, script_resp: u8, caller_resp: u8) -> LuaResult<Reply> {
    to_reply(v, script_resp, caller_resp, 0)
}

fn str_field(t: &Table, k: &str) -> LuaResult<Option<Bytes>> {
    Ok(match t.raw_get::<Value>(k)? {
        Value::String(s) => Some(Bytes::copy_from_slice(&s.as_bytes())),
        _ => None,
    })
}

fn to_reply(v: &Value, sresp: u8, cresp: u8, depth: usize) -> LuaResult<Reply> {
    if depth > MAX_DEPTH {
        return Ok(Reply::error("ERR reached lua stack limit"));
    }
    Ok(match v {
        Value::String(s) => Reply::Bulk(Bytes::copy_from_slice(&s.as_bytes())),
        Value::Boolean(b) => {
            if sresp == 2 {
                if *b {
                    Reply::Int(1)
                } else {
                    Reply::Null
                }
            } else {
                Reply::Bool(*b)
            }
        }
        Value::Integer(i) => Reply::Int(*i),
        Value::Number(n) => Reply::Int(lua_int(*n)),
        Value::Table(t) => return table_reply(t, sresp, cresp, depth),
        _ => Reply::Null,
    })
}

fn table_reply(t: &Table, sresp: u8, cresp: u8, depth: usize) -> LuaResult<Reply> {
    if let Some(e) = str_field(t, "err")? {
        return Ok(Reply::Error(String::from_utf8_lossy(&e).into_owned()));
    }
    if let Some(s) = str_field(t, "ok")? {
        return Ok(Reply::Status(one_line(&s)));
    }
    if let Value::Number(_) | Value::Integer(_) = t.raw_get::<Value>("double")? {
        let d: f64 = t.raw_get("double")?;
        return Ok(Reply::Double(d));
    }
    if let Some(n) = str_field(t, "big_number")? {
        let n = one_line(&n);
        let mut out = Vec::with_capacity(n.len() + 8);
        if cresp >= 3 {
            out.push(b'(');
            out.extend_from_slice(&n);
            out.extend_from_slice(b"\r\n");
        } else {
            encode_bulk(&mut out, &n);
        }
        return Ok(Reply::Raw(Bytes::from(out)));
    }
    if let Value::Table(v) = t.raw_get::<Value>("verbatim_string")? {
        if let (Some(fmt), Some(s)) = (str_field(&v, "format")?, str_field(&v, "string")?) {
            let mut out = Vec::with_capacity(s.len() + 16);
            if cresp >= 3 {
                let fmt = fmt.get(..3).unwrap_or(&fmt);
                out.push(b'=');
                crate::protocol::write_i64(&mut out, (s.len() + 4) as i64);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(fmt);
                out.push(b':');
                out.extend_from_slice(&s);
                out.extend_from_slice(b"\r\n");
            } else {
                encode_bulk(&mut out, &s);
            }
            return Ok(Reply::Raw(Bytes::from(out)));
        }
    }
    if let Value::Table(m) = t.raw_get::<Value>("map")? {
        let mut pairs = Vec::new();
        for pair in m.pairs::<Value, Value>() {
            let (k, v) = pair?;
            pairs.push((
                to_reply(&k, sresp, cresp, depth + 1)?,
                to_reply(&v, sresp, cresp, depth + 1)?,
            ));
        }
        return Ok(Reply::Map(pairs));
    }
    if let Value::Table(s) = t.raw_get::<Value>("set")? {
        let mut items = Vec::new();
        for pair in s.pairs::<Value, Value>() {
            let (k, _) = pair?;
            items.push(to_reply(&k, sresp, cresp, depth + 1)?);
        }
        return Ok(Reply::Set(items));
    }
    let mut items = Vec::new();
    for i in 1.. {
        let v: Value = t.raw_get(i)?;
        if v.is_nil() {
            break;
        }
        items.push(to_reply(&v, sresp, cresp, depth + 1)?);
    }
    Ok(Reply::Array(items))
}
