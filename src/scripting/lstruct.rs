//! `struct` as Redis embeds it (Roberto Ierusalimschy's lua_struct.c with Redis's fixes), in
//! Rust: `pack(fmt, ...)`, `unpack(fmt, s [, pos])`, `size(fmt)`, with x86-64 sizes (`l`,
//! `L`, `T` 8 bytes, `i` 4), native little endian, the `!` alignment rule and the C
//! library's error texts. Installed once per VM; runs on the VM's shard thread.

use mlua::{Lua, MultiValue, Result as LuaResult, Table, Value, Variadic};

const MAXINTSIZE: usize = 32;
const MAXALIGN: usize = 8;

fn lua_error(lua: &Lua, msg: &str) -> mlua::Error {
    mlua::Error::RuntimeError(format!("{}{msg}", super::vm::position(lua)))
}

fn arg_error(lua: &Lua, n: usize, fname: &str, msg: &str) -> mlua::Error {
    lua_error(lua, &format!("bad argument #{n} to '{fname}' ({msg})"))
}

struct Fmt<'a> {
    f: &'a [u8],
    pos: usize,
    little: bool,
    align: usize,
}

impl Fmt<'_> {
    fn next(&mut self) -> Option<u8> {
        let c = self.f.get(self.pos).copied();
        self.pos += usize::from(c.is_some());
        c
    }

    fn getnum(&mut self, lua: &Lua, df: usize) -> LuaResult<usize> {
        if !self.f.get(self.pos).is_some_and(u8::is_ascii_digit) {
            return Ok(df);
        }
        let mut a: usize = 0;
        while let Some(d) = self.f.get(self.pos).filter(|c| c.is_ascii_digit()) {
            let d = usize::from(d - b'0');
            if a > (i32::MAX as usize) / 10 || a * 10 > (i32::MAX as usize) - d {
                return Err(lua_error(lua, "integral size overflow"));
            }
            a = a * 10 + d;
            self.pos += 1;
        }
        Ok(a)
    }

    fn optsize(&mut self, lua: &Lua, opt: u8) -> LuaResult<usize> {
        Ok(match opt {
            b'B' | b'b' | b'x' => 1,
            b'H' | b'h' => 2,
            b'L' | b'l' | b'T' | b'd' => 8,
            b'f' => 4,
            b'c' => self.getnum(lua, 1)?,
            b'i' | b'I' => {
                let sz = self.getnum(lua, 4)?;
                if sz > MAXINTSIZE {
                    return Err(lua_error(
                        lua,
                        &format!("integral size {sz} is larger than limit of {MAXINTSIZE}"),
                    ));
                }
                sz
            }
            _ => 0,
        })
    }

    fn toalign(&self, len: usize, opt: u8, size: usize) -> usize {
        if size == 0 || opt == b'c' {
            return 0;
        }
        let size = size.min(self.align);
        (size - (len & (size - 1))) & (size - 1)
    }

    fn control(&mut self, lua: &Lua, opt: u8, fname: &str) -> LuaResult<()> {
        match opt {
            b' ' => {}
            b'>' => self.little = false,
            b'<' | b'=' => self.little = true,
            b'!' => {
                let a = self.getnum(lua, MAXALIGN)?;
                if a == 0 || a & (a - 1) != 0 {
                    return Err(lua_error(
                        lua,
                        &format!("alignment {a} is not a power of 2"),
                    ));
                }
                self.align = a;
            }
            _ => {
                let msg = format!("invalid format option '{}'", char::from(opt));
                return Err(arg_error(lua, 1, fname, &msg));
            }
        }
        Ok(())
    }
}

fn fmt_arg(lua: &Lua, args: &[Value], fname: &str) -> LuaResult<Vec<u8>> {
    str_arg(lua, args, 1, fname)
}

/// `luaL_checklstring` at argument `n` (numbers converted as Lua prints them).
fn str_arg(lua: &Lua, args: &[Value], n: usize, fname: &str) -> LuaResult<Vec<u8>> {
    match args.get(n - 1) {
        Some(Value::String(s)) => Ok(s.as_bytes().to_vec()),
        Some(Value::Integer(i)) => Ok(i.to_string().into_bytes()),
        Some(Value::Number(x)) => Ok(crate::protocol::fmt_g(*x, 14).into_bytes()),
        other => Err(arg_error(
            lua,
            n,
            fname,
            &format!(
                "string expected, got {}",
                super::libs::type_name(other.unwrap_or(&Value::Nil))
            ),
        )),
    }
}

fn put_int(out: &mut Vec<u8>, n: f64, little: bool, size: usize) {
    let mut v: u64 = if n < 0.0 { n as i64 as u64 } else { n as u64 };
    let mut buf = [0u8; MAXINTSIZE];
    let bytes = buf.get_mut(..size).unwrap_or_default();
    if little {
        for b in bytes.iter_mut() {
            *b = v as u8;
            v >>= 8;
        }
    } else {
        for b in bytes.iter_mut().rev() {
            *b = v as u8;
            v >>= 8;
        }
    }
    out.extend_from_slice(bytes);
}

fn pack(lua: &Lua, args: &[Value]) -> LuaResult<Vec<u8>> {
    let f = fmt_arg(lua, args, "pack")?;
    let mut h = Fmt {
        f: &f,
        pos: 0,
        little: true,
        align: 1,
    };
    let mut out = Vec::new();
    let mut arg = 2;
    let mut total = 0usize;
    while let Some(opt) = h.next() {
        let mut size = h.optsize(lua, opt)?;
        let pad = h.toalign(total, opt, size);
        total += pad;
        out.resize(out.len() + pad, 0);
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let n = super::libs::num_arg(lua, args, arg, "pack")?;
                arg += 1;
                put_int(&mut out, n, h.little, size);
            }
            b'x' => out.push(0),
            b'f' => {
                let x = super::libs::num_arg(lua, args, arg, "pack")? as f32;
                arg += 1;
                out.extend_from_slice(&if h.little {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                });
            }
            b'd' => {
                let x = super::libs::num_arg(lua, args, arg, "pack")?;
                arg += 1;
                out.extend_from_slice(&if h.little {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                });
            }
            b'c' | b's' => {
                let s = str_arg(lua, args, arg, "pack")?;
                arg += 1;
                if size == 0 {
                    size = s.len();
                }
                if s.len() < size {
                    return Err(arg_error(lua, arg, "pack", "string too short"));
                }
                out.extend_from_slice(s.get(..size).unwrap_or_default());
                if opt == b's' {
                    out.push(0);
                    size += 1;
                }
            }
            _ => h.control(lua, opt, "pack")?,
        }
        total += size;
    }
    Ok(out)
}

fn get_int(b: &[u8], little: bool, signed: bool) -> f64 {
    let mut l: u64 = 0;
    let size = b.len();
    if little {
        for c in b.iter().rev() {
            l = (l << 8) | u64::from(*c);
        }
    } else {
        for c in b {
            l = (l << 8) | u64::from(*c);
        }
    }
    if !signed {
        return l as f64;
    }
    let shift = (size * 8).saturating_sub(1).min(63) as u32;
    let mask = u64::MAX << shift;
    if l & mask != 0 {
        l |= mask;
    }
    l as i64 as f64
}

fn unpack(lua: &Lua, args: &[Value]) -> LuaResult<MultiValue> {
    let f = fmt_arg(lua, args, "unpack")?;
    let data = str_arg(lua, args, 2, "unpack")?;
    let start = match args.get(2) {
        None | Some(Value::Nil) => 1.0,
        Some(_) => super::libs::num_arg(lua, args, 3, "unpack")?,
    } as i64;
    if start <= 0 {
        return Err(arg_error(lua, 3, "unpack", "offset must be 1 or greater"));
    }
    let mut pos = (start - 1) as usize;
    let ld = data.len();
    let mut h = Fmt {
        f: &f,
        pos: 0,
        little: true,
        align: 1,
    };
    let mut out: Vec<Value> = Vec::new();
    let short = || arg_error(lua, 2, "unpack", "data string too short");
    while let Some(opt) = h.next() {
        let mut size = h.optsize(lua, opt)?;
        pos += h.toalign(pos, opt, size);
        if size > ld || pos > ld - size {
            return Err(short());
        }
        let field = |size: usize| data.get(pos..pos + size).unwrap_or_default();
        match opt {
            b'b' | b'B' | b'h' | b'H' | b'l' | b'L' | b'T' | b'i' | b'I' => {
                let signed = opt.is_ascii_lowercase();
                out.push(Value::Number(get_int(field(size), h.little, signed)));
            }
            b'x' => {}
            b'f' => {
                let mut a = [0u8; 4];
                a.copy_from_slice(field(4));
                let x = if h.little {
                    f32::from_le_bytes(a)
                } else {
                    f32::from_be_bytes(a)
                };
                out.push(Value::Number(f64::from(x)));
            }
            b'd' => {
                let mut a = [0u8; 8];
                a.copy_from_slice(field(8));
                let x = if h.little {
                    f64::from_le_bytes(a)
                } else {
                    f64::from_be_bytes(a)
                };
                out.push(Value::Number(x));
            }
            b'c' => {
                if size == 0 {
                    let prev = match out.last() {
                        Some(Value::Number(n)) => Some(*n),
                        Some(Value::String(s)) => {
                            s.to_str().ok().and_then(|t| t.trim().parse().ok())
                        }
                        _ => None,
                    };
                    let Some(n) = prev else {
                        return Err(lua_error(lua, "format 'c0' needs a previous size"));
                    };
                    out.pop();
                    size = n as usize;
                    if size > ld || pos > ld - size {
                        return Err(short());
                    }
                }
                out.push(Value::String(lua.create_string(field(size))?));
            }
            b's' => {
                let rest = data.get(pos..).unwrap_or_default();
                let Some(e) = rest.iter().position(|&c| c == 0) else {
                    return Err(lua_error(lua, "unfinished string in data"));
                };
                out.push(Value::String(lua.create_string(field(e))?));
                size = e + 1;
            }
            _ => h.control(lua, opt, "unpack")?,
        }
        pos += size;
    }
    out.push(Value::Number((pos + 1) as f64));
    Ok(MultiValue::from_iter(out))
}

fn size(lua: &Lua, args: &[Value]) -> LuaResult<f64> {
    let f = fmt_arg(lua, args, "size")?;
    let mut h = Fmt {
        f: &f,
        pos: 0,
        little: true,
        align: 1,
    };
    let mut pos = 0usize;
    while let Some(opt) = h.next() {
        let size = h.optsize(lua, opt)?;
        pos += h.toalign(pos, opt, size);
        if opt == b's' {
            return Err(arg_error(lua, 1, "size", "option 's' has no fixed size"));
        } else if opt == b'c' && size == 0 {
            return Err(arg_error(lua, 1, "size", "option 'c0' has no fixed size"));
        }
        if !opt.is_ascii_alphanumeric() {
            h.control(lua, opt, "size")?;
        }
        pos += size;
    }
    Ok(pos as f64)
}

/// Installs the `struct` table.
pub fn install(lua: &Lua) -> LuaResult<Table> {
    let t = lua.create_table()?;
    t.raw_set(
        "pack",
        lua.create_function(|lua, args: Variadic<Value>| lua.create_string(pack(lua, &args)?))?,
    )?;
    t.raw_set(
        "unpack",
        lua.create_function(|lua, args: Variadic<Value>| unpack(lua, &args))?,
    )?;
    t.raw_set(
        "size",
        lua.create_function(|lua, args: Variadic<Value>| size(lua, &args))?,
    )?;
    Ok(t)
}
