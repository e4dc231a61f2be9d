//! The scripting state every shard and the dispatcher share (the Lua VMs themselves and
//! the script commands are the `scripting` layer's; it re-exports all of this).
//!
//! Process-wide, read and written by any shard thread (never on a per-call path once a
//! script is cached on a shard):
//! - `BODIES`: sha1 → script body, so EVALSHA works on a shard that never saw the script
//!   (SCRIPT LOAD and EVAL insert; SCRIPT FLUSH clears; a shard compiles a body on its first
//!   EVALSHA of it). A `Mutex`, taken only when a shard's own cache misses.
//! - one `Slot` per running VM: when its script started, whether it wrote, and the kill flag
//!   SCRIPT KILL (from a connection on another shard) sets for the VM's hook to see.
//! - the busy threshold (`busy-reply-threshold` / `lua-time-limit`) and a shutdown flag that
//!   stops any running script so the server can exit;
//! - which shards a script past the threshold holds (`set_shard_busy`: other shards answer
//!   `-BUSY` for them) and `lua-allow-undeclared-keys`.
//!

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use bytes::Bytes;

/// `-NOSCRIPT` for EVALSHA of an unknown sha (clients fall back to EVAL on it).
pub const NOSCRIPT: &str = "NOSCRIPT No matching script. Please use EVAL.";
pub const NOTBUSY: &str = "NOTBUSY No scripts in execution right now.";
pub const UNKILLABLE: &str = "UNKILLABLE Sorry the script already executed write commands against the dataset. You can either wait the script termination or kill the server in a hard way using the SHUTDOWN NOSAVE command.";
/// The error a killed script ends with (before the `script: ..., on ...` suffix).
pub const KILLED: &str = "ERR Script killed by user with SCRIPT KILL...";
/// What other clients of a shard get while a script runs there past the busy threshold.
pub const BUSY_EVAL: &str =
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.";
pub const BUSY_FUNCTION: &str =
    "BUSY Redis is busy running a script. You can only call FUNCTION KILL or SHUTDOWN NOSAVE.";
/// Our own text: the server is shutting down while a script runs.
pub const SHUTTING_DOWN: &str = "ERR Script stopped: the server is shutting down";

/// Script bodies by sha1 (lower-case hex), for every shard.
fn bodies() -> &'static Mutex<HashMap<[u8; 40], Bytes>> {
    static B: OnceLock<Mutex<HashMap<[u8; 40], Bytes>>> = OnceLock::new();
    B.get_or_init(Default::default)
}

/// Remembers a script body under its sha1.
pub fn remember(sha: [u8; 40], body: Bytes) {
    if let Ok(mut m) = bodies().lock() {
        m.entry(sha).or_insert(body);
    }
}

/// The body of a script some shard loaded, if any.
pub fn body_of(sha: &[u8; 40]) -> Option<Bytes> {
    bodies().lock().ok().and_then(|m| m.get(sha).cloned())
}

/// The script cache as INFO counts it: how many scripts, and the bytes their sha1s and
/// bodies take (Redis's `used_memory_scripts_eval` counts the same two strings per script).
pub fn cache_usage() -> (usize, usize) {
    bodies().lock().map_or((0, 0), |m| {
        (m.len(), m.values().map(|b| b.len() + 40).sum())
    })
}

/// Forgets every script body (SCRIPT FLUSH); each shard clears its own cache by message.
pub fn forget_all() {
    if let Ok(mut m) = bodies().lock() {
        m.clear();
    }
}

/// A sha1 argument as the cache key: 40 hex digits, lower-cased (Redis accepts either case).
pub fn sha_key(b: &[u8]) -> Option<[u8; 40]> {
    let arr: [u8; 40] = b.try_into().ok()?;
    Some(arr.map(|c| c.to_ascii_lowercase()))
}

/// Lower-case hex sha1 of `body`.
pub fn sha1_hex(body: &[u8]) -> [u8; 40] {
    let hex = sha1_smol::Sha1::from(body).digest().to_string();
    let mut out = [b'0'; 40];
    for (o, c) in out.iter_mut().zip(hex.bytes()) {
        *o = c;
    }
    out
}

/// What SCRIPT KILL and the VM's hook share about one VM's running script.
#[derive(Default)]
pub struct Slot {
    /// Milliseconds since `epoch()` plus one when the script started; 0 when none runs.
    pub started: AtomicU64,
    /// The running script called a write command (it can no longer be killed).
    pub wrote: AtomicBool,
    /// SCRIPT KILL asked the running script to stop.
    pub kill: AtomicBool,
}

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

/// Milliseconds since the scripting epoch plus one (a `Slot::started` value, never 0).
pub fn now_tick() -> u64 {
    epoch().elapsed().as_millis() as u64 + 1
}

fn slots() -> &'static Mutex<Vec<Arc<Slot>>> {
    static S: OnceLock<Mutex<Vec<Arc<Slot>>>> = OnceLock::new();
    S.get_or_init(Default::default)
}

/// Registers a new VM's slot (once per shard thread).
pub fn new_slot() -> Arc<Slot> {
    let s = Arc::new(Slot::default());
    if let Ok(mut v) = slots().lock() {
        v.push(s.clone());
    }
    s
}

/// `busy-reply-threshold` in milliseconds (Redis's default 5000).
static BUSY_MS: AtomicU64 = AtomicU64::new(5000);
/// Set once when the server shuts down: running scripts stop at their next hook.
static ABORT: AtomicBool = AtomicBool::new(false);

pub fn busy_threshold_ms() -> u64 {
    BUSY_MS.load(Ordering::Relaxed)
}

pub fn set_busy_threshold_ms(ms: u64) {
    BUSY_MS.store(ms, Ordering::Relaxed);
}

/// Shards a busy-state is kept for (a shard beyond it is never reported busy).
const MAX_BUSY_SHARDS: usize = 1024;
/// Per shard: 0, or 1 (an EVAL script) / 2 (a function) running past the busy threshold
/// there, holding the shard. Written by the thread running the script, read by every
/// shard's dispatch before it sends that shard a batch (see `busy_kind`).
static BUSY_SHARDS: [AtomicU8; MAX_BUSY_SHARDS] = [const { AtomicU8::new(0) }; MAX_BUSY_SHARDS];
/// How many entries of `BUSY_SHARDS` are set: the one load dispatch pays while none is.
static ANY_BUSY: AtomicUsize = AtomicUsize::new(0);

/// Marks `shard` as held by a busy script (`function`: FCALL) or not (`None`).
pub fn set_shard_busy(shard: usize, kind: Option<bool>) {
    let Some(b) = BUSY_SHARDS.get(shard) else {
        return;
    };
    let v = match kind {
        None => 0,
        Some(false) => 1,
        Some(true) => 2,
    };
    let old = b.swap(v, Ordering::AcqRel);
    match (old, v) {
        (0, 1..) => {
            ANY_BUSY.fetch_add(1, Ordering::AcqRel);
        }
        (1.., 0) => {
            ANY_BUSY.fetch_sub(1, Ordering::AcqRel);
        }
        _ => {}
    }
}

/// Whether some shard is held by a busy script (one relaxed load).
#[inline]
pub fn some_shard_busy() -> bool {
    ANY_BUSY.load(Ordering::Relaxed) != 0
}

/// The `-BUSY` text for commands that need `shard`, when a busy script holds it.
pub fn busy_reply(shard: usize) -> Option<&'static str> {
    match BUSY_SHARDS.get(shard)?.load(Ordering::Acquire) {
        1 => Some(BUSY_EVAL),
        2 => Some(BUSY_FUNCTION),
        _ => None,
    }
}

/// The `-BUSY` text when some shard is held by a busy script.
pub fn busy_text() -> Option<&'static str> {
    if !some_shard_busy() {
        return None;
    }
    (0..MAX_BUSY_SHARDS).find_map(busy_reply)
}

/// `lua-allow-undeclared-keys`: scripts may touch keys they do not declare, on any shard;
/// every script then locks every shard (see `host`).
static ALLOW_UNDECLARED: AtomicBool = AtomicBool::new(false);
/// Some script with the `allow-undeclared-keys` shebang flag was compiled (EVAL and
/// EVALSHA look at their script's flags only then).
static UNDECLARED_SEEN: AtomicBool = AtomicBool::new(false);

pub fn allow_undeclared() -> bool {
    ALLOW_UNDECLARED.load(Ordering::Relaxed)
}

pub fn set_allow_undeclared(on: bool) {
    ALLOW_UNDECLARED.store(on, Ordering::Relaxed);
}

/// Whether a call of the script command `name` with `argv` must lock every shard (with
/// more than one shard): the setting, or the script's `allow-undeclared-keys` flag.
pub fn wants_all_shards(name: &str, argv: &[Bytes]) -> bool {
    if allow_undeclared() {
        return true;
    }
    let body = match (name, argv.get(1)) {
        ("eval" | "eval_ro", Some(b)) if b.starts_with(b"#!") => b.clone(),
        // A sha names a script some shard compiled: its flags were seen then.
        ("evalsha" | "evalsha_ro", Some(s)) if UNDECLARED_SEEN.load(Ordering::Relaxed) => {
            match sha_key(s).and_then(|k| body_of(&k)) {
                Some(b) => b,
                None => return false,
            }
        }
        _ => return false,
    };
    parse_shebang(&body).is_ok_and(|f| f.allow_undeclared)
}

pub fn abort_all() {
    ABORT.store(true, Ordering::SeqCst);
}

pub fn aborting() -> bool {
    ABORT.load(Ordering::Relaxed)
}

/// What SCRIPT KILL did.
#[derive(Debug, PartialEq, Eq)]
pub enum Kill {
    Killed,
    /// No script has been running past the busy threshold.
    NotBusy,
    /// The busy script already wrote.
    Unkillable,
}

/// SCRIPT KILL: stops every script that has been running longer than the busy threshold
/// (Redis can only be asked while a script is past it, so a quicker script is "not busy").
pub fn kill_busy() -> Kill {
    let Ok(v) = slots().lock() else {
        return Kill::NotBusy;
    };
    let now = now_tick();
    let limit = busy_threshold_ms();
    let busy: Vec<&Arc<Slot>> = v
        .iter()
        .filter(|s| {
            let t = s.started.load(Ordering::Acquire);
            t != 0 && now.saturating_sub(t) >= limit
        })
        .collect();
    if busy.is_empty() {
        return Kill::NotBusy;
    }
    if busy.iter().any(|s| s.wrote.load(Ordering::Acquire)) {
        return Kill::Unkillable;
    }
    for s in busy {
        s.kill.store(true, Ordering::Release);
    }
    Kill::Killed
}

/// Whether any script has been running past the busy threshold (INFO, tests).
pub fn any_busy() -> bool {
    let now = now_tick();
    let limit = busy_threshold_ms();
    slots().lock().is_ok_and(|v| {
        v.iter().any(|s| {
            let t = s.started.load(Ordering::Acquire);
            t != 0 && now.saturating_sub(t) >= limit
        })
    })
}

/// Script flags from a `#!lua flags=...` shebang (or implied by EVAL_RO).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags {
    pub shebang: bool,
    pub no_writes: bool,
    pub allow_oom: bool,
    pub allow_stale: bool,
    pub no_cluster: bool,
    pub allow_cross_slot: bool,
    /// shardis's own flag (as Dragonfly's): the script may touch undeclared keys; it runs
    /// with every shard locked.
    pub allow_undeclared: bool,
}

/// Parses the first line of a script when it is a shebang; Redis's errors for bad ones.
pub fn parse_shebang(body: &[u8]) -> Result<Flags, String> {
    if !body.starts_with(b"#!") {
        return Ok(Flags::default());
    }
    let line_end = body.iter().position(|&c| c == b'\n').unwrap_or(body.len());
    let line = String::from_utf8_lossy(body.get(..line_end).unwrap_or_default()).into_owned();
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let engine = words.next().unwrap_or("");
    if engine != "#!lua" {
        return Err(format!("ERR Unexpected engine in script shebang: {engine}"));
    }
    let mut f = Flags {
        shebang: true,
        ..Flags::default()
    };
    for w in words {
        let Some(list) = w.strip_prefix("flags=") else {
            return Err(format!("ERR Unknown lua shebang option: {w}"));
        };
        for flag in list.split(',').filter(|s| !s.is_empty()) {
            match flag {
                "no-writes" => f.no_writes = true,
                "allow-oom" => f.allow_oom = true,
                "allow-stale" => f.allow_stale = true,
                "no-cluster" => f.no_cluster = true,
                "allow-cross-slot-keys" => f.allow_cross_slot = true,
                "allow-undeclared-keys" => {
                    f.allow_undeclared = true;
                    UNDECLARED_SEEN.store(true, Ordering::Relaxed);
                }
                other => return Err(format!("ERR Unexpected flag in script shebang: {other}")),
            }
        }
    }
    Ok(f)
}

/// The shards a script call must hold when its keys span shards (or when it may touch
/// undeclared keys: every shard).
pub fn shards_for(
    spec: &crate::commands::table::CommandSpec,
    argv: &[Bytes],
    nshards: usize,
) -> Vec<usize> {
    if wants_all_shards(spec.name, argv) {
        return (0..nshards).collect();
    }
    let mut v: Vec<usize> = spec
        .keys
        .key_positions(argv)
        .filter_map(|i| argv.get(i))
        .map(|k| crate::shard::route::shard_of(k, nshards))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_and_shebang() {
        assert_eq!(&sha1_hex(b""), b"da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            sha_key(b"DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"),
            Some(sha1_hex(b""))
        );
        assert_eq!(sha_key(b"abc"), None);
        assert_eq!(parse_shebang(b"return 1"), Ok(Flags::default()));
        let f = parse_shebang(b"#!lua flags=no-writes,allow-oom\nreturn 1").unwrap();
        assert!(f.shebang && f.no_writes && f.allow_oom && !f.no_cluster);
        assert_eq!(
            parse_shebang(b"#!lua flags=bogus\n").unwrap_err(),
            "ERR Unexpected flag in script shebang: bogus"
        );
        assert_eq!(
            parse_shebang(b"#!lua x=1\n").unwrap_err(),
            "ERR Unknown lua shebang option: x=1"
        );
        assert_eq!(
            parse_shebang(b"#!luax\n").unwrap_err(),
            "ERR Unexpected engine in script shebang: #!luax"
        );
    }
}
