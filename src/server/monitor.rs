//! MONITOR: every command the server runs, from every shard, as Redis prints it
//! (`+1700000000.123456 [0 127.0.0.1:50000] "SET" "k" "v"`).
//!
//! Each shard runs this on its own thread. While no client monitors anywhere, the only
//! cost is one test of `Shard::monitor` per command (refreshed from a process-wide count
//! once per loop pass). While someone monitors, the shard that runs a command (the
//! connection's shard; the key's shard for commands called by scripts) formats its line
//! into `Shard::mon_out`; at the end of the pass the lines go to this shard's monitors and,
//! as one job per other shard, to theirs. Lines of one shard keep their order; lines of
//! different shards interleave as their passes end.
//!
//! Shown as Redis 7.0 shows them: after the checks that may refuse a command (refused ones
//! are not shown), ADMIN commands never, arguments redacted as in the slow log, MULTI and
//! the queued commands as EXEC runs them followed by `exec`, scripts before the commands
//! they call (`[db lua]`).

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::worker::Worker;
use crate::commands::table::{CommandSpec, ADMIN};
use crate::shard::Shard;

/// Monitoring clients in the process.
static MONITORS: AtomicUsize = AtomicUsize::new(0);

/// Someone monitors (read once per loop pass).
#[inline]
pub fn active() -> bool {
    MONITORS.load(Ordering::Relaxed) != 0
}

/// Whether MONITOR shows this command at all.
#[inline]
pub fn shown(spec: &CommandSpec) -> bool {
    !spec.has(ADMIN)
}

/// Appends `argv` as Redis's sdscatrepr quotes each argument, space separated.
pub fn quote_args(out: &mut Vec<u8>, argv: &[Bytes]) {
    for (i, a) in crate::shard::slowlog::redact(argv).iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        quote(out, a);
    }
}

/// Redis's sdscatrepr: a double-quoted string with `\\`, `\"`, `\n`, `\r`, `\t`, `\a`,
/// `\b` escaped and other unprintable bytes as `\xHH`.
pub fn quote(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    for &c in s {
        match c {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            7 => out.extend_from_slice(b"\\a"),
            8 => out.extend_from_slice(b"\\b"),
            0x20..=0x7e => out.push(c),
            _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

/// Appends one monitor line (a RESP status) for a command run by `who` in `db`, its
/// arguments already quoted.
pub fn push_line(shard: &mut Shard, db: usize, who: &str, quoted: &[u8]) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let out = &mut shard.mon_out;
    out.extend_from_slice(
        format!(
            "+{}.{:06} [{db} {who}] ",
            now.as_secs(),
            now.subsec_micros()
        )
        .as_bytes(),
    );
    out.extend_from_slice(quoted);
    out.extend_from_slice(b"\r\n");
}

/// The quoted arguments of a command MONITOR shows (`None` for one it hides).
#[cold]
pub fn prepare(spec: &CommandSpec, argv: &[Bytes]) -> Option<Vec<u8>> {
    if !shown(spec) {
        return None;
    }
    let mut q = Vec::with_capacity(64);
    quote_args(&mut q, argv);
    Some(q)
}

/// Emits a prepared line for connection `idx` (its address and current database).
#[cold]
pub fn emit(w: &mut Worker, idx: usize, quoted: &[u8]) {
    let Some(c) = w.conns.get(idx) else {
        return;
    };
    let db = c.client.db;
    let addr = c.client.addr.clone();
    push_line(&mut w.eng.shard, db, &addr, quoted);
}

/// Feeds a command run by connection `idx` in database `db` (EXEC's queued commands).
#[cold]
pub fn feed_db(w: &mut Worker, idx: usize, db: usize, argv: &[Bytes]) {
    let Some(spec) = crate::commands::table::table().lookup(argv.first().map_or(&[][..], |a| a))
    else {
        return;
    };
    let Some(q) = prepare(spec.1, argv) else {
        return;
    };
    let Some(c) = w.conns.get(idx) else {
        return;
    };
    let addr = c.client.addr.clone();
    push_line(&mut w.eng.shard, db, &addr, &q);
}

/// A command a script called ran on this shard: its line (`[db lua]`), and its slow log
/// entries (noted from `pending_before` on) are the script client's.
#[inline]
pub fn after_script_call(
    shard: &mut Shard,
    pending_before: usize,
    db: usize,
    spec: &CommandSpec,
    argv: &[Bytes],
) {
    if shard.slow.pending.len() > pending_before {
        for p in shard.slow.pending.iter_mut().skip(pending_before) {
            p.who = crate::shard::slowlog::Who::Script;
        }
    }
    if shard.monitor {
        if let Some(q) = prepare(spec, argv) {
            push_line(shard, db, "lua", &q);
        }
    }
}

/// MONITOR for connection `idx`: `Ok(true)` it monitors now, `Ok(false)` it already did
/// (Redis then sends nothing).
pub fn start(w: &mut Worker, idx: usize) -> bool {
    let Some(c) = w.conns.get_mut(idx) else {
        return false;
    };
    if c.monitor {
        return false;
    }
    c.monitor = true;
    w.monitors.push(idx);
    MONITORS.fetch_add(1, Ordering::Relaxed);
    // This shard feeds from this pass on; the others from their next one.
    w.eng.shard.monitor = true;
    true
}

/// Connection `idx` stops monitoring (RESET, or it closes).
pub fn stop(w: &mut Worker, idx: usize) {
    let Some(c) = w.conns.get_mut(idx) else {
        return;
    };
    if !c.monitor {
        return;
    }
    c.monitor = false;
    w.monitors.retain(|&i| i != idx);
    MONITORS.fetch_sub(1, Ordering::Relaxed);
}

/// End of a loop pass: slow log entries nobody claimed are committed without a client;
/// this pass's monitor lines go to every other shard, and with the lines received from them
/// to this shard's monitors, in timestamp order (a command a client saw answered before it
/// sent another, on another shard, is shown first).
#[cold]
pub fn end_of_pass(w: &mut Worker) {
    if !w.eng.shard.slow.pending.is_empty() {
        let p = std::mem::take(&mut w.eng.shard.slow.pending);
        w.eng.shard.slow.commit(p, "", b"");
    }
    let mut chunks = std::mem::take(&mut w.eng.shard.mon_in);
    if !w.eng.shard.mon_out.is_empty() {
        let lines = Bytes::from(std::mem::take(&mut w.eng.shard.mon_out));
        let me = w.eng.id;
        for s in (0..w.eng.nshards).filter(|&s| s != me) {
            let lines = lines.clone();
            w.eng.post(
                s,
                super::worker::front(move |tw: &mut Worker| {
                    if !tw.monitors.is_empty() {
                        tw.eng.shard.mon_in.push(lines);
                    }
                }),
            );
        }
        chunks.push(lines);
    }
    if w.monitors.is_empty() || chunks.is_empty() {
        return;
    }
    let merged = if chunks.len() == 1 {
        chunks.pop().unwrap_or_default()
    } else {
        let mut lines: Vec<&[u8]> = chunks.iter().flat_map(|c| split_lines(c)).collect();
        lines.sort_by_key(|l| line_time(l));
        Bytes::from(lines.concat())
    };
    deliver(w, &merged);
}

/// The `\r\n`-terminated lines of a chunk.
fn split_lines(c: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in memchr::memchr_iter(b'\n', c) {
        if let Some(l) = c.get(start..=i) {
            out.push(l);
        }
        start = i + 1;
    }
    out
}

/// A line's timestamp in microseconds (`+secs.micros ...`).
fn line_time(l: &[u8]) -> u64 {
    let mut secs = 0u64;
    let mut micros = 0u64;
    let mut frac = false;
    for &b in l.iter().skip(1) {
        match b {
            b'0'..=b'9' if frac => micros = micros * 10 + u64::from(b - b'0'),
            b'0'..=b'9' => secs = secs * 10 + u64::from(b - b'0'),
            b'.' => frac = true,
            _ => break,
        }
    }
    secs * 1_000_000 + micros
}

/// Appends `lines` to this shard's monitors' output.
fn deliver(w: &mut Worker, lines: &[u8]) {
    let mons = std::mem::take(&mut w.monitors);
    for &idx in &mons {
        if let Some(c) = w.conns.get_mut(idx) {
            if c.monitor && !c.closing {
                c.push_raw(lines);
                w.mark_dirty(idx);
            }
        }
    }
    w.monitors = mons;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_as_sdscatrepr() {
        let mut v = Vec::new();
        quote(&mut v, b"a\"b\\c\n\r\t\x07\x08\x01\xff ok");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            r#""a\"b\\c\n\r\t\a\b\x01\xff ok""#
        );
        let mut v = Vec::new();
        quote_args(
            &mut v,
            &[Bytes::from("AUTH"), Bytes::from("u"), Bytes::from("p")],
        );
        assert_eq!(v, br#""AUTH" "(redacted)" "(redacted)""#);
    }

    #[test]
    fn lines_sort_by_time() {
        let a = b"+100.000002 [0 x] \"b\"\r\n+100.000009 [0 x] \"d\"\r\n".to_vec();
        let b = b"+100.000001 [0 y] \"a\"\r\n+100.000005 [0 y] \"c\"\r\n".to_vec();
        let mut lines: Vec<&[u8]> = split_lines(&a).into_iter().chain(split_lines(&b)).collect();
        lines.sort_by_key(|l| line_time(l));
        let all = lines.concat();
        let text = String::from_utf8(all).unwrap();
        let order: Vec<&str> = text.lines().map(|l| &l[l.len() - 2..l.len() - 1]).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert_eq!(line_time(b"+12.000034 [0"), 12_000_034);
    }
}
