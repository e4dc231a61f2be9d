//! Function libraries (FUNCTION LOAD / FCALL), the part shared by every shard: the registry
//! of loaded libraries, their `#!lua name=<lib>` metadata, FUNCTION LIST / STATS replies and
//! the DUMP / RESTORE payload. No Lua here: compiling a library and running its functions is
//! `library` (in each shard's VM).
//!
//! The registry is process-wide behind a `Mutex`, written only by FUNCTION LOAD / DELETE /
//! FLUSH / RESTORE (any shard thread). Every change bumps a generation; a shard's VM compares
//! it (one atomic load per FCALL) with the generation it compiled, and recompiles every
//! library from the registry when they differ. So each shard sees the whole set of libraries
//! of one generation, never half of a change, and the registry is the only source of truth.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use super::Flags;
use crate::error::CmdError;
use crate::persist::{crc64, rdb};
use crate::protocol::reply::Reply;

/// `RDB_OPCODE_FUNCTION2`: one library's code in a payload.
const OP_FUNCTION2: u8 = 245;
/// The RDB version written in (and accepted by) DUMP payloads: Redis 7.0's.
const RDB_VERSION: u16 = 10;
const BAD_NAME: &str = "Library names can only contain letters, numbers, or underscores(_) and must be at least one character long";

/// One function a library registered.
#[derive(Clone, Debug)]
pub struct FunctionMeta {
    pub name: Bytes,
    pub desc: Option<Bytes>,
    pub flags: Flags,
}

/// A loaded library: its name, its whole code (with the shebang) and its functions.
#[derive(Debug)]
pub struct Library {
    pub name: Bytes,
    pub code: Bytes,
    pub funcs: Vec<FunctionMeta>,
}

impl Library {
    /// The code the engine runs: after the shebang line, keeping its newline so line numbers
    /// count from the shebang as in Redis.
    pub fn body(&self) -> &[u8] {
        let nl = self.code.iter().position(|&c| c == b'\n');
        nl.and_then(|i| self.code.get(i..)).unwrap_or_default()
    }
}

#[derive(Default)]
struct Registry {
    libs: BTreeMap<Bytes, Arc<Library>>,
}

fn registry() -> MutexGuard<'static, Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    let m = R.get_or_init(Default::default);
    m.lock().unwrap_or_else(|p| p.into_inner())
}

static GEN: AtomicU64 = AtomicU64::new(1);

/// The registry's generation (changes with every successful write).
pub fn generation() -> u64 {
    GEN.load(Ordering::Acquire)
}

/// Every library and the generation they belong to, read under one lock.
pub fn snapshot() -> (u64, Vec<Arc<Library>>) {
    let r = registry();
    (generation(), r.libs.values().cloned().collect())
}

/// Whether some library registered a function called `name`.
pub fn exists(name: &[u8]) -> bool {
    registry()
        .libs
        .values()
        .any(|l| l.funcs.iter().any(|f| f.name == name))
}

fn valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `functionsVerifyName`'s error (Redis 7.0 gives it for function names too).
pub fn check_name(n: &[u8]) -> Result<(), String> {
    if valid_name(n) {
        Ok(())
    } else {
        Err(format!("ERR {BAD_NAME}"))
    }
}

/// The library name from a `#!<engine> name=<lib>` first line, with Redis's errors in
/// Redis's order (metadata, name, engine).
pub fn metadata(code: &[u8]) -> Result<Bytes, CmdError> {
    if !code.starts_with(b"#!") {
        return Err(CmdError::err("Missing library metadata"));
    }
    let Some(nl) = code.iter().position(|&c| c == b'\n') else {
        return Err(CmdError::err("Invalid library metadata"));
    };
    let line = code.get(..nl).unwrap_or_default();
    let mut parts = line
        .split(|c| c.is_ascii_whitespace())
        .filter(|p| !p.is_empty());
    let engine = parts.next().and_then(|e| e.get(2..)).unwrap_or_default();
    let mut name: Option<&[u8]> = None;
    for p in parts {
        let is_name = p.get(..5).is_some_and(|h| h.eq_ignore_ascii_case(b"name="));
        if !is_name {
            return Err(CmdError::err(format!(
                "Invalid metadata value given: {}",
                String::from_utf8_lossy(p)
            )));
        }
        if name.is_some() {
            return Err(CmdError::err(
                "Invalid metadata value, name argument was given multiple times",
            ));
        }
        name = p.get(5..);
    }
    let name = name.ok_or_else(|| CmdError::err("Library name was not given"))?;
    if !valid_name(name) {
        return Err(CmdError::err(BAD_NAME));
    }
    if !engine.eq_ignore_ascii_case(b"lua") {
        return Err(CmdError::err(format!(
            "Engine '{}' not found",
            String::from_utf8_lossy(engine)
        )));
    }
    Ok(Bytes::copy_from_slice(name))
}

/// FUNCTION LOAD's check before the code runs: the library exists and REPLACE was not given.
pub fn check_absent(name: &[u8]) -> Result<(), CmdError> {
    if registry().libs.contains_key(name) {
        return Err(already_exists(name));
    }
    Ok(())
}

fn already_exists(name: &[u8]) -> CmdError {
    CmdError::err(format!(
        "Library '{}' already exists",
        String::from_utf8_lossy(name)
    ))
}

/// A function of `lib` some other library (not one named in `replaced`) already has.
fn conflict<'a>(
    libs: &BTreeMap<Bytes, Arc<Library>>,
    lib: &'a Library,
    replaced: &[Bytes],
) -> Option<&'a Bytes> {
    lib.funcs.iter().map(|f| &f.name).find(|n| {
        libs.values()
            .filter(|l| !replaced.contains(&l.name))
            .any(|l| l.funcs.iter().any(|f| f.name == **n))
    })
}

/// Adds a compiled library (FUNCTION LOAD). With `replace` an old library of the same name
/// goes; a function name another library has is refused either way.
pub fn install(lib: Library, replace: bool) -> Result<Bytes, CmdError> {
    if lib.funcs.is_empty() {
        return Err(CmdError::err("No functions registered"));
    }
    let mut r = registry();
    if !replace && r.libs.contains_key(&lib.name) {
        return Err(already_exists(&lib.name));
    }
    if let Some(f) = conflict(&r.libs, &lib, std::slice::from_ref(&lib.name)) {
        return Err(CmdError::err(format!(
            "Function {} already exists",
            String::from_utf8_lossy(f)
        )));
    }
    let name = lib.name.clone();
    r.libs.insert(name.clone(), Arc::new(lib));
    GEN.fetch_add(1, Ordering::AcqRel);
    Ok(name)
}

/// FUNCTION DELETE.
pub fn delete(name: &[u8]) -> Result<(), CmdError> {
    let mut r = registry();
    r.libs
        .remove(name)
        .ok_or_else(|| CmdError::err("Library not found"))?;
    GEN.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

/// FUNCTION FLUSH.
pub fn flush() {
    registry().libs.clear();
    GEN.fetch_add(1, Ordering::AcqRel);
}

/// How FUNCTION RESTORE treats the libraries already loaded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Flush,
    Append,
    Replace,
}

/// FUNCTION RESTORE's join (Redis's `libraryJoin`), all or nothing.
pub fn restore(libs: Vec<Library>, policy: Policy) -> Result<(), CmdError> {
    let mut r = registry();
    if policy == Policy::Flush {
        r.libs.clear();
    } else {
        let names: Vec<Bytes> = libs.iter().map(|l| l.name.clone()).collect();
        let replaced: &[Bytes] = if policy == Policy::Replace {
            &names
        } else {
            &[]
        };
        for l in &libs {
            if policy == Policy::Append && r.libs.contains_key(&l.name) {
                return Err(CmdError::err(format!(
                    "Library {} already exists",
                    String::from_utf8_lossy(&l.name)
                )));
            }
            if let Some(f) = conflict(&r.libs, l, replaced) {
                return Err(CmdError::err(format!(
                    "Function {} already exists",
                    String::from_utf8_lossy(f)
                )));
            }
        }
    }
    for l in libs {
        r.libs.insert(l.name.clone(), Arc::new(l));
    }
    GEN.fetch_add(1, Ordering::AcqRel);
    Ok(())
}

/// Redis's flag names, in its order (FUNCTION LIST lists them so).
pub fn flag_names(f: &Flags) -> Vec<&'static str> {
    [
        (f.no_writes, "no-writes"),
        (f.allow_oom, "allow-oom"),
        (f.allow_stale, "allow-stale"),
        (f.no_cluster, "no-cluster"),
        (f.allow_cross_slot, "allow-cross-slot-keys"),
    ]
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect()
}

/// Sets the flag `name` (case-insensitive); false for an unknown one.
pub fn set_flag(f: &mut Flags, name: &[u8]) -> bool {
    let n = name.to_ascii_lowercase();
    match n.as_slice() {
        b"no-writes" => f.no_writes = true,
        b"allow-oom" => f.allow_oom = true,
        b"allow-stale" => f.allow_stale = true,
        b"no-cluster" => f.no_cluster = true,
        b"allow-cross-slot-keys" => f.allow_cross_slot = true,
        _ => return false,
    }
    true
}

fn bulk(s: &'static str) -> Reply {
    Reply::Bulk(Bytes::from_static(s.as_bytes()))
}

/// FUNCTION LIST: libraries whose name matches `pattern` (glob, case-insensitive).
pub fn list(pattern: Option<&[u8]>, with_code: bool) -> Reply {
    let r = registry();
    let libs = r
        .libs
        .values()
        .filter(|l| pattern.is_none_or(|p| crate::commands::args::glob_match(p, &l.name, true)));
    Reply::Array(
        libs.map(|l| {
            let funcs = l
                .funcs
                .iter()
                .map(|f| {
                    Reply::Map(vec![
                        (bulk("name"), Reply::Bulk(f.name.clone())),
                        (bulk("description"), Reply::bulk_opt(f.desc.clone())),
                        (
                            bulk("flags"),
                            Reply::Set(
                                flag_names(&f.flags)
                                    .into_iter()
                                    .map(|n| Reply::Status(Bytes::from_static(n.as_bytes())))
                                    .collect(),
                            ),
                        ),
                    ])
                })
                .collect();
            let mut m = vec![
                (bulk("library_name"), Reply::Bulk(l.name.clone())),
                (bulk("engine"), bulk("LUA")),
                (bulk("functions"), Reply::Array(funcs)),
            ];
            if with_code {
                m.push((bulk("library_code"), Reply::Bulk(l.code.clone())));
            }
            Reply::Map(m)
        })
        .collect(),
    )
}

/// FUNCTION STATS (the running function is not reported: see the README).
pub fn stats() -> Reply {
    let r = registry();
    let nfuncs: usize = r.libs.values().map(|l| l.funcs.len()).sum();
    Reply::Map(vec![
        (bulk("running_script"), Reply::Null),
        (
            bulk("engines"),
            Reply::Map(vec![(
                bulk("LUA"),
                Reply::Map(vec![
                    (bulk("libraries_count"), Reply::Int(r.libs.len() as i64)),
                    (bulk("functions_count"), Reply::Int(nfuncs as i64)),
                ]),
            )]),
        ),
    ])
}

/// What INFO memory says of the libraries: how many, how many functions, and the bytes of
/// their code and names.
pub fn usage() -> (usize, usize, usize) {
    let r = registry();
    let funcs = r.libs.values().map(|l| l.funcs.len()).sum();
    let bytes = r
        .libs
        .values()
        .map(|l| {
            l.name.len()
                + l.code.len()
                + l.funcs
                    .iter()
                    .map(|f| f.name.len() + f.desc.as_ref().map_or(0, |d| d.len()))
                    .sum::<usize>()
        })
        .sum();
    (r.libs.len(), funcs, bytes)
}

/// FUNCTION DUMP: each library's code as `RDB_OPCODE_FUNCTION2` + RDB string, then the RDB
/// version (2 bytes, little endian) and the CRC64 of all before it (8 bytes, little endian).
pub fn dump(compress: bool) -> Bytes {
    let mut w = rdb::PartWriter::new(compress);
    for l in registry().libs.values() {
        w.buf.push(OP_FUNCTION2);
        w.string(&l.code);
    }
    let mut out = w.buf;
    out.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64::update(0, &out);
    out.extend_from_slice(&crc.to_le_bytes());
    Bytes::from(out)
}

/// The library codes in a DUMP payload, after its version and checksum are verified.
pub fn parse_payload(p: &[u8]) -> Result<Vec<Bytes>, CmdError> {
    let bad = || CmdError::err("DUMP payload version or checksum are wrong");
    let body_len = p.len().checked_sub(10).ok_or_else(bad)?;
    let (data, footer) = p.split_at(body_len);
    let (ver, crc) = footer.split_at(2);
    let ver = u16::from_le_bytes([*ver.first().ok_or_else(bad)?, *ver.get(1).ok_or_else(bad)?]);
    let crc: [u8; 8] = crc.try_into().map_err(|_| bad())?;
    let expect = crc64::update(0, p.get(..body_len + 2).unwrap_or_default());
    if ver > RDB_VERSION || u64::from_le_bytes(crc) != expect {
        return Err(bad());
    }
    let mut codes = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let t = data.get(pos).copied().unwrap_or_default();
        pos += 1;
        if t != OP_FUNCTION2 {
            return Err(CmdError::err("given type is not a function"));
        }
        let code = crate::persist::read::string_at(data, &mut pos)
            .map_err(|_| CmdError::err("Failed loading library payload"))?;
        codes.push(code);
    }
    Ok(codes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_errors_as_redis() {
        let e = |c: &[u8]| metadata(c).unwrap_err().to_string();
        assert_eq!(e(b"return 1"), "ERR Missing library metadata");
        assert_eq!(e(b"#!lua"), "ERR Invalid library metadata");
        assert_eq!(e(b"#!lua\n"), "ERR Library name was not given");
        assert_eq!(
            e(b"#!lua name=a x=1\n"),
            "ERR Invalid metadata value given: x=1"
        );
        assert_eq!(e(b"#!js name=a\n"), "ERR Engine 'js' not found");
        assert_eq!(e(b"#!lua name=a-b\n"), format!("ERR {BAD_NAME}"));
        assert_eq!(metadata(b"#!LUA  NAME=x_1\nreturn").unwrap(), "x_1");
    }

    #[test]
    fn payload_round_trip_and_checks() {
        let p = dump(true);
        assert_eq!(parse_payload(&p).unwrap().len(), registry().libs.len());
        let mut bad = p.to_vec();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert!(parse_payload(&bad).is_err());
        assert!(parse_payload(b"x").is_err());
    }
}
