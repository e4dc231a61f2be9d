//! `cjson` for scripts, written against Redis's lua-cjson 2.1.0 behaviour: `encode` (numbers
//! as `%.14g`, `/` escaped, sparse-array and nesting checks, objects in Lua's own `next`
//! order, which is the order Redis's identical Lua 5.1 produces) and `decode` (the same
//! `Expected X but found Y at character N` errors for the common mistakes). `cjson.null` is a
//! NULL light userdata, as in lua-cjson. Runs on the VM's shard thread.

use mlua::{LightUserData, Lua, Result as LuaResult, Table, Value, Variadic};

use crate::protocol::fmt_g;

const MAX_DEPTH: usize = 1000;

fn err(lua: &Lua, msg: String) -> mlua::Error {
    mlua::Error::RuntimeError(format!("{}{msg}", super::vm::position(lua)))
}

/// The `null` sentinel.
pub fn null() -> Value {
    Value::LightUserData(LightUserData(std::ptr::null_mut()))
}

/// Installs the `cjson` table.
pub fn install(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "encode",
        lua.create_function(|lua, args: Variadic<Value>| {
            let v = args.first().cloned().unwrap_or(Value::Nil);
            if args.len() != 1 {
                return Err(err(
                    lua,
                    "bad argument #1 to 'encode' (expected 1 argument)".into(),
                ));
            }
            let mut out = Vec::new();
            encode(lua, &v, 0, &mut out)?;
            lua.create_string(&out)
        })?,
    )?;
    t.raw_set(
        "decode",
        lua.create_function(|lua, args: Variadic<Value>| {
            let Some(Value::String(s)) = args.first() else {
                let got = args.first().map_or("no value", super::libs::type_name);
                return Err(err(
                    lua,
                    format!("bad argument #1 to 'decode' (string expected, got {got})"),
                ));
            };
            let bytes = s.as_bytes().to_vec();
            let mut p = Parser {
                lua,
                s: &bytes,
                i: 0,
                depth: 0,
            };
            let v = p.value()?;
            p.ws();
            if p.i < bytes.len() {
                let found = p.token_name();
                return Err(p.fail("the end", found));
            }
            Ok(v)
        })?,
    )?;
    t.raw_set("null", null())?;
    t.raw_set("_NAME", "cjson")?;
    t.raw_set("_VERSION", "2.1.0")?;
    // Settings: accepted, and they report lua-cjson's defaults.
    for (name, def) in [
        ("encode_max_depth", 1000),
        ("decode_max_depth", 1000),
        ("encode_number_precision", 14),
    ] {
        t.raw_set(
            name,
            lua.create_function(move |_, _: Variadic<Value>| Ok(def))?,
        )?;
    }
    for name in [
        "encode_keep_buffer",
        "encode_invalid_numbers",
        "decode_invalid_numbers",
    ] {
        t.raw_set(
            name,
            lua.create_function(|_, _: Variadic<Value>| Ok(false))?,
        )?;
    }
    t.raw_set(
        "encode_sparse_array",
        lua.create_function(|_, _: Variadic<Value>| Ok((false, 2, 10)))?,
    )?;
    Ok(t)
}

fn number(lua: &Lua, n: f64, out: &mut Vec<u8>) -> LuaResult<()> {
    if !n.is_finite() {
        return Err(err(
            lua,
            "Cannot serialise number: must not be NaN or Inf".into(),
        ));
    }
    out.extend_from_slice(fmt_g(n, 14).as_bytes());
    Ok(())
}

fn string(s: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in s {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'/' => out.extend_from_slice(b"\\/"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            c if c < 0x20 || c == 0x7f => {
                out.extend_from_slice(format!("\\u{:04x}", c).as_bytes());
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}

fn encode(lua: &Lua, v: &Value, depth: usize, out: &mut Vec<u8>) -> LuaResult<()> {
    match v {
        Value::Nil => out.extend_from_slice(b"null"),
        Value::LightUserData(p) if p.0.is_null() => out.extend_from_slice(b"null"),
        Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Integer(i) => number(lua, *i as f64, out)?,
        Value::Number(n) => number(lua, *n, out)?,
        Value::String(s) => string(&s.as_bytes(), out),
        Value::Table(t) => {
            let depth = depth + 1;
            if depth > MAX_DEPTH {
                return Err(err(
                    lua,
                    format!("Cannot serialise, excessive nesting ({depth})"),
                ));
            }
            match array_len(lua, t)? {
                Some(n) => {
                    out.push(b'[');
                    for i in 1..=n {
                        if i > 1 {
                            out.push(b',');
                        }
                        let item: Value = t.raw_get(i)?;
                        encode(lua, &item, depth, out)?;
                    }
                    out.push(b']');
                }
                None => {
                    out.push(b'{');
                    let mut first = true;
                    for pair in t.pairs::<Value, Value>() {
                        let (k, val) = pair?;
                        if !first {
                            out.push(b',');
                        }
                        first = false;
                        match &k {
                            Value::String(s) => string(&s.as_bytes(), out),
                            Value::Integer(i) => {
                                out.push(b'"');
                                number(lua, *i as f64, out)?;
                                out.push(b'"');
                            }
                            Value::Number(n) => {
                                out.push(b'"');
                                number(lua, *n, out)?;
                                out.push(b'"');
                            }
                            other => {
                                return Err(err(
                                    lua,
                                    format!(
                                        "Cannot serialise {}: table key must be a number or string",
                                        super::libs::type_name(other)
                                    ),
                                ))
                            }
                        }
                        out.push(b':');
                        encode(lua, &val, depth, out)?;
                    }
                    out.push(b'}');
                }
            }
        }
        other => {
            return Err(err(
                lua,
                format!(
                    "Cannot serialise {}: type not supported",
                    super::libs::type_name(other)
                ),
            ))
        }
    }
    Ok(())
}

/// lua-cjson's `lua_array_length`: `Some(max index)` when every key is a positive integer
/// (an empty table is an object), an error for an excessively sparse one.
fn array_len(lua: &Lua, t: &Table) -> LuaResult<Option<usize>> {
    let mut max = 0usize;
    let mut items = 0usize;
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair?;
        let idx = match k {
            Value::Integer(i) if i >= 1 => i as f64,
            Value::Number(n) if n >= 1.0 && n.fract() == 0.0 => n,
            _ => return Ok(None),
        };
        max = max.max(idx as usize);
        items += 1;
    }
    if max == 0 {
        return Ok(None);
    }
    // encode_sparse_ratio 2, safe 10 (lua-cjson defaults).
    if max > 10 && max > items * 2 {
        return Err(err(
            lua,
            "Cannot serialise table: excessively sparse array".into(),
        ));
    }
    Ok(Some(max))
}

struct Parser<'a> {
    lua: &'a Lua,
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// lua-cjson's name for the token at the cursor.
    fn token_name(&self) -> &'static str {
        match self.s.get(self.i) {
            None => "T_END",
            Some(b'{') => "T_OBJ_BEGIN",
            Some(b'}') => "T_OBJ_END",
            Some(b'[') => "T_ARR_BEGIN",
            Some(b']') => "T_ARR_END",
            Some(b',') => "T_COMMA",
            Some(b':') => "T_COLON",
            Some(b'"') => "T_STRING",
            Some(b'-' | b'0'..=b'9') => "T_NUMBER",
            Some(b't' | b'f') if self.keyword().is_some() => "T_BOOLEAN",
            Some(b'n') if self.keyword().is_some() => "T_NULL",
            _ => "invalid token",
        }
    }

    fn keyword(&self) -> Option<Value> {
        let rest = self.s.get(self.i..)?;
        if rest.starts_with(b"true") {
            Some(Value::Boolean(true))
        } else if rest.starts_with(b"false") {
            Some(Value::Boolean(false))
        } else if rest.starts_with(b"null") {
            Some(null())
        } else {
            None
        }
    }

    fn fail(&self, expected: &str, found: &str) -> mlua::Error {
        err(
            self.lua,
            format!(
                "Expected {expected} but found {found} at character {}",
                self.i + 1
            ),
        )
    }

    fn value(&mut self) -> LuaResult<Value> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                let s = self.string()?;
                Ok(Value::String(self.lua.create_string(&s)?))
            }
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => match self.keyword() {
                Some(v) => {
                    self.i += if matches!(v, Value::Boolean(false)) {
                        5
                    } else {
                        4
                    };
                    Ok(v)
                }
                None => Err(self.fail("value", self.token_name())),
            },
        }
    }

    fn nest(&mut self) -> LuaResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                self.lua,
                format!(
                    "Found too many nested data structures ({}) at character {}",
                    self.depth,
                    self.i + 1
                ),
            ));
        }
        Ok(())
    }

    fn array(&mut self) -> LuaResult<Value> {
        self.nest()?;
        self.i += 1;
        let t = self.lua.create_table()?;
        self.ws();
        if self.s.get(self.i) == Some(&b']') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Table(t));
        }
        let mut n = 1;
        loop {
            let v = self.value()?;
            t.raw_set(n, v)?;
            n += 1;
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.fail("comma or array end", self.token_name())),
            }
        }
        self.depth -= 1;
        Ok(Value::Table(t))
    }

    fn object(&mut self) -> LuaResult<Value> {
        self.nest()?;
        self.i += 1;
        let t = self.lua.create_table()?;
        self.ws();
        if self.s.get(self.i) == Some(&b'}') {
            self.i += 1;
            self.depth -= 1;
            return Ok(Value::Table(t));
        }
        loop {
            self.ws();
            if self.s.get(self.i) != Some(&b'"') {
                return Err(self.fail("object key string", self.token_name()));
            }
            let k = self.string()?;
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return Err(self.fail("colon", self.token_name()));
            }
            self.i += 1;
            let v = self.value()?;
            t.raw_set(self.lua.create_string(&k)?, v)?;
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(self.fail("comma or object end", self.token_name())),
            }
        }
        self.depth -= 1;
        Ok(Value::Table(t))
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let h = self.s.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    }

    fn string(&mut self) -> LuaResult<Vec<u8>> {
        let start = self.i;
        self.i += 1;
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                self.i = start;
                return Err(self.fail("value", "invalid token"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    return Ok(out);
                }
                b'\\' => {
                    let bad = |p: &Parser| {
                        let mut q = Parser { ..*p };
                        q.i = start;
                        q.fail("value", "invalid escape code")
                    };
                    let Some(&e) = self.s.get(self.i + 1) else {
                        return Err(bad(self));
                    };
                    self.i += 2;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let Some(mut cp) = self.hex4(self.i) else {
                                return Err(bad(self));
                            };
                            self.i += 4;
                            if (0xD800..0xDC00).contains(&cp) {
                                let low = (self.s.get(self.i) == Some(&b'\\')
                                    && self.s.get(self.i + 1) == Some(&b'u'))
                                .then(|| self.hex4(self.i + 2))
                                .flatten()
                                .filter(|l| (0xDC00..0xE000).contains(l));
                                let Some(low) = low else {
                                    return Err(bad(self));
                                };
                                self.i += 6;
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                            } else if (0xDC00..0xE000).contains(&cp) {
                                return Err(bad(self));
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(bad(self)),
                    }
                }
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn number(&mut self) -> LuaResult<Value> {
        let start = self.i;
        let mut end = self.i;
        while matches!(
            self.s.get(end),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            end += 1;
        }
        let text = std::str::from_utf8(self.s.get(start..end).unwrap_or_default()).unwrap_or("");
        match text.parse::<f64>() {
            Ok(n) => {
                self.i = end;
                Ok(Value::Number(n))
            }
            Err(_) => Err(self.fail("value", "invalid token")),
        }
    }
}
