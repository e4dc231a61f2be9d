//! Keyspace notifications (`notify-keyspace-events`), as Redis 7.0 sends them: for each change
//! of a key, `__keyspace@<db>__:<key>` gets the event name and `__keyevent@<db>__:<event>` gets
//! the key. Owned by the shard's thread: events are produced where the key lives and queued in
//! `Notes::out`; the worker publishes them once per loop pass, on its own shard at once and in
//! one job per other shard (one FIFO queue per pair of shards, so one key's events keep the
//! order of its writes).
//!
//! Which event a command sends is data on its table row ([`Notify`]); the keys it applies to
//! are the ones the command changed (`Shard::touch`). Keys deleted by expiry or eviction are
//! noted by `Db` (`Db::lost`) and become `expired` / `evicted`; so are a read command's
//! lookups of missing keys, which become `keymiss` (class `m`, as Redis 7.0: not part of `A`).
//!
//! When the setting is empty (`Shard::notify == 0`) nothing here runs: the command path pays
//! one branch.

use bytes::Bytes;

use super::db::Lost;
use super::Shard;
use crate::commands::table::CommandSpec;
use crate::protocol::reply::Reply;

pub const KEYSPACE: u32 = 1 << 0;
pub const KEYEVENT: u32 = 1 << 1;
pub const GENERIC: u32 = 1 << 2;
pub const STRING: u32 = 1 << 3;
pub const LIST: u32 = 1 << 4;
pub const SET: u32 = 1 << 5;
pub const HASH: u32 = 1 << 6;
pub const ZSET: u32 = 1 << 7;
pub const EXPIRED: u32 = 1 << 8;
pub const EVICTED: u32 = 1 << 9;
pub const STREAM: u32 = 1 << 10;
pub const KEY_MISS: u32 = 1 << 11;
pub const MODULE: u32 = 1 << 13;
pub const NEW: u32 = 1 << 14;
/// What `A` stands for (`m` and `n` are not part of it, as in Redis).
pub const ALL: u32 =
    GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE;

/// Redis's error text for a bad flag string (CONFIG SET and the config file).
pub const INVALID: &str = "Invalid event class character. Use 'Ag$lshzxeKEtmdn'.";

/// Redis's keyspaceEventsStringToFlags.
pub fn parse(s: &str) -> Option<u32> {
    let mut f = 0;
    for c in s.chars() {
        f |= match c {
            'A' => ALL,
            'g' => GENERIC,
            '$' => STRING,
            'l' => LIST,
            's' => SET,
            'h' => HASH,
            'z' => ZSET,
            'x' => EXPIRED,
            'e' => EVICTED,
            'K' => KEYSPACE,
            'E' => KEYEVENT,
            't' => STREAM,
            'm' => KEY_MISS,
            'd' => MODULE,
            'n' => NEW,
            _ => return None,
        };
    }
    Some(f)
}

/// Redis's keyspaceEventsFlagsToString: the canonical form CONFIG GET shows (`n` is not
/// shown next to `A`, as in Redis 7.0).
pub fn format(f: u32) -> String {
    let mut s = String::new();
    if f & ALL == ALL {
        s.push('A');
    } else {
        for (bit, c) in [
            (GENERIC, 'g'),
            (STRING, '$'),
            (LIST, 'l'),
            (SET, 's'),
            (HASH, 'h'),
            (ZSET, 'z'),
            (EXPIRED, 'x'),
            (EVICTED, 'e'),
            (STREAM, 't'),
            (MODULE, 'd'),
            (NEW, 'n'),
        ] {
            if f & bit != 0 {
                s.push(c);
            }
        }
    }
    for (bit, c) in [(KEYSPACE, 'K'), (KEYEVENT, 'E'), (KEY_MISS, 'm')] {
        if f & bit != 0 {
            s.push(c);
        }
    }
    s
}

/// The flags a shard acts on: 0 (nothing to do) unless some class and a channel kind are on.
pub fn effective(f: u32) -> u32 {
    if f & (KEYSPACE | KEYEVENT) == 0 || f & !(KEYSPACE | KEYEVENT) == 0 {
        0
    } else {
        f
    }
}

/// One event: its class flag and name.
pub type Ev = (u32, &'static str);

/// What a command's outcome is, for a [`Notify::Hook`].
pub struct At<'a> {
    pub argv: &'a [Bytes],
    pub key: &'a [u8],
    /// The key exists after the command.
    pub exists: bool,
    /// The key is in the command's database (MOVE's destination is not).
    pub same_db: bool,
}

/// Events that depend on the outcome (SET with EX, the EXPIRE family, RENAME...).
pub type Hook = fn(&At<'_>) -> &'static [Ev];

/// How a command's row notifies (a field of the row, see `CommandSpec::notify`).
#[derive(Clone, Copy)]
pub enum Notify {
    None,
    /// Each key the command changed gets this event (then `del` if that emptied it).
    On(u32, &'static str),
    /// As `On`, but only when the integer reply is above 0 (SREM, ZREM, LREM, LINSERT...:
    /// a count of 0, or -1, means nothing changed).
    Counted(u32, &'static str),
    /// STORE commands: the event when the destination (argument `pos`; 0: whatever key the
    /// command changed, for SORT's STORE) holds a result, `del` when the result was empty
    /// and an old destination went away. Sources get nothing.
    Store(u32, &'static str, u8),
    Hook(Hook),
    /// A key moves (RENAME, MOVE): as `Hook`, but the destination is created (`new`)
    /// before either key's event, as Redis adds it before notifying.
    Move(Hook),
    /// As `Hook`, the destination's events first (LMOVE pushes, then pops, as Redis).
    DstFirst(Hook),
}

/// A shard's pending notification work.
#[derive(Default)]
pub struct Notes {
    /// A command with notifications is running (cross-shard steps outside one are silent).
    active: bool,
    /// Keys the running command changed, in order.
    touched: Vec<(u32, Bytes)>,
    /// Key arguments missing before the running command: one still missing after it was
    /// not changed (LPOP of a missing key), one present after it is `new`.
    absent: Vec<(u32, Bytes)>,
    /// (channel, message) to publish at the end of the loop pass.
    pub out: Vec<(Bytes, Bytes)>,
}

thread_local! {
    /// A database of this shard thread noted a key lost to expiry or eviction.
    static LOST: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `Db` noted a key lost to expiry or eviction (see `LOST`).
#[inline]
pub fn note_lost() {
    LOST.with(|l| l.set(true));
}

/// Applies new flags (the worker reads the setting once per loop pass).
pub fn set_flags(shard: &mut Shard, flags: u32) {
    let f = effective(flags);
    if shard.notify == f {
        return;
    }
    shard.notify = f;
    let lost = f & (EXPIRED | EVICTED | KEY_MISS) != 0;
    for d in shard.dbs.iter_mut() {
        d.keymiss = f & KEY_MISS != 0;
        if lost {
            d.lost.get_or_insert_with(Vec::new);
        } else {
            d.lost = None;
        }
    }
    if f == 0 {
        shard.notes = Notes::default();
    }
}

/// Queues one event for `key` of `db` if its class is on.
fn emit(shard: &mut Shard, db: usize, ev: Ev, key: &[u8]) {
    let f = shard.notify;
    if f & ev.0 == 0 {
        return;
    }
    if f & KEYSPACE != 0 {
        let mut ch = format!("__keyspace@{db}__:").into_bytes();
        ch.extend_from_slice(key);
        shard
            .notes
            .out
            .push((Bytes::from(ch), Bytes::from_static(ev.1.as_bytes())));
    }
    if f & KEYEVENT != 0 {
        let ch = format!("__keyevent@{db}__:{}", ev.1);
        shard
            .notes
            .out
            .push((Bytes::from(ch), Bytes::copy_from_slice(key)));
    }
}

/// An event from a cross-shard step (RENAME, COPY or SMOVE between shards), which runs
/// outside a key command: queued at once if notifications are on, then `del` if the step
/// emptied the key and `del_if_gone` is set.
pub fn event(shard: &mut Shard, db: usize, ev: Ev, key: &[u8], del_if_gone: bool) {
    if shard.notify == 0 {
        return;
    }
    drain_lost(shard);
    emit(shard, db, ev, key);
    let now = shard.now_ms;
    if del_if_gone
        && shard
            .dbs
            .get(db)
            .is_some_and(|d| d.peek_entry(key, now).is_none())
    {
        emit(shard, db, (GENERIC, "del"), key);
    }
}

/// A write changed `key` (from `Shard::touch`, only while notifications are on).
#[inline]
pub fn touched(n: &mut Notes, db: usize, key: &[u8]) {
    if !n.active {
        return;
    }
    if n.touched
        .last()
        .is_some_and(|(d, k)| *d == db as u32 && k == key)
    {
        return;
    }
    n.touched.push((db as u32, Bytes::copy_from_slice(key)));
}

/// Keys lost to expiry or eviction since the last look become `expired` / `evicted`.
pub fn drain_lost(shard: &mut Shard) {
    if !LOST.with(|l| l.replace(false)) {
        return;
    }
    for i in 0..shard.dbs.len() {
        let lost = match shard.dbs[i].lost.as_mut() {
            Some(l) if !l.is_empty() => std::mem::take(l),
            Some(_) => continue,
            // A database replaced wholesale (a reload) starts noting again.
            None => {
                shard.dbs[i].lost = Some(Vec::new());
                shard.dbs[i].keymiss = shard.notify & KEY_MISS != 0;
                continue;
            }
        };
        for (why, key) in &lost {
            let ev = match why {
                Lost::Evicted => (EVICTED, "evicted"),
                Lost::Expired => (EXPIRED, "expired"),
                Lost::Miss => (KEY_MISS, "keymiss"),
            };
            emit(shard, i, ev, key);
        }
    }
}

/// Before a key command runs (only while notifications are on).
pub fn before_command(shard: &mut Shard, spec: &CommandSpec, db: usize, argv: &[Bytes]) {
    drain_lost(shard);
    if matches!(spec.notify, Notify::None) {
        return;
    }
    shard.notes.active = true;
    shard.notes.touched.clear();
    shard.notes.absent.clear();
    {
        let now = shard.now_ms;
        for i in spec.keys.key_positions(argv) {
            let Some(k) = argv.get(i) else { continue };
            let missing = shard
                .dbs
                .get(db)
                .is_none_or(|d| d.peek_entry(k, now).is_none());
            if missing {
                shard.notes.absent.push((db as u32, k.clone()));
            }
        }
        // SORT ... STORE dst: the destination is not a key position.
        if let Notify::Store(_, _, 0) = spec.notify {
            let dst = argv
                .iter()
                .position(|a| {
                    a.eq_ignore_ascii_case(b"store") || a.eq_ignore_ascii_case(b"storedist")
                })
                .and_then(|i| argv.get(i + 1));
            if let Some(k) = dst {
                if shard
                    .dbs
                    .get(db)
                    .is_none_or(|d| d.peek_entry(k, now).is_none())
                {
                    shard.notes.absent.push((db as u32, k.clone()));
                }
            }
        }
    }
}

/// After a key command ran (only while notifications are on): expiry and eviction its
/// lookups caused, then `new` for keys it created, then its own events per key it changed,
/// each followed by `del` when the change emptied the key (Redis's order).
pub fn after_command(
    shard: &mut Shard,
    spec: &CommandSpec,
    db: usize,
    argv: &[Bytes],
    reply: &Reply,
) {
    drain_lost(shard);
    if !shard.notes.active {
        return;
    }
    shard.notes.active = false;
    let counted_none =
        matches!(spec.notify, Notify::Counted(..)) && matches!(reply, Reply::Int(n) if *n <= 0);
    if reply.is_error() || counted_none {
        shard.notes.touched.clear();
        return;
    }
    let touched = std::mem::take(&mut shard.notes.touched);
    let absent = std::mem::take(&mut shard.notes.absent);
    let now = shard.now_ms;
    let exists = |s: &Shard, d: u32, k: &[u8]| {
        s.dbs
            .get(d as usize)
            .is_some_and(|x| x.peek_entry(k, now).is_some())
    };
    let was_absent = |d: &u32, k: &Bytes| {
        absent.iter().any(|(ad, ak)| ad == d && ak == k)
            // MOVE's destination database had no such key, or it would have failed.
            || (matches!(spec.notify, Notify::Move(_)) && *d as usize != db)
    };
    let new_on = shard.notify & NEW != 0;
    let moves = matches!(spec.notify, Notify::Move(_));
    if new_on && moves {
        for (d, k) in &touched {
            if was_absent(d, k) && exists(shard, *d, k) {
                emit(shard, *d as usize, (NEW, "new"), k);
            }
        }
    }
    let order: Box<dyn Iterator<Item = &(u32, Bytes)>> =
        if matches!(spec.notify, Notify::DstFirst(_)) {
            Box::new(touched.iter().rev())
        } else {
            Box::new(touched.iter())
        };
    for (d, k) in order {
        let there = exists(shard, *d, k);
        if !there && was_absent(d, k) {
            continue;
        }
        if new_on && !moves && there && was_absent(d, k) {
            emit(shard, *d as usize, (NEW, "new"), k);
        }
        let one: [Ev; 1];
        let evs: &[Ev] = match spec.notify {
            Notify::None => &[],
            Notify::On(c, n) | Notify::Counted(c, n) => {
                one = [(c, n)];
                &one
            }
            Notify::Store(_, _, pos) if pos > 0 && argv.get(pos as usize) != Some(k) => &[],
            Notify::Store(c, n, _) => {
                one = if there { [(c, n)] } else { [(GENERIC, "del")] };
                &one
            }
            Notify::Hook(f) | Notify::Move(f) | Notify::DstFirst(f) => f(&At {
                argv,
                key: k,
                exists: there,
                same_db: *d as usize == db,
            }),
        };
        for &ev in evs {
            emit(shard, *d as usize, ev, k);
        }
        if !there && evs.last().is_some_and(|e| e.0 != GENERIC) {
            emit(shard, *d as usize, (GENERIC, "del"), k);
        }
    }
    let mut touched = touched;
    touched.clear();
    shard.notes.touched = touched;
}

/// Some option among the arguments after `from` (case-insensitive).
fn has_opt(argv: &[Bytes], from: usize, opts: &[&str]) -> bool {
    argv.iter()
        .skip(from)
        .any(|a| opts.iter().any(|o| a.eq_ignore_ascii_case(o.as_bytes())))
}

/// SET: `set`, and `expire` when it was given a relative or absolute expiry.
pub fn ev_set(a: &At<'_>) -> &'static [Ev] {
    if has_opt(a.argv, 3, &["ex", "px", "exat", "pxat"]) {
        &[(STRING, "set"), (GENERIC, "expire")]
    } else {
        &[(STRING, "set")]
    }
}

/// SETEX / PSETEX.
pub fn ev_setex(_: &At<'_>) -> &'static [Ev] {
    &[(STRING, "set"), (GENERIC, "expire")]
}

/// GETEX: `persist`, `expire`, or `del` for a time in the past.
pub fn ev_getex(a: &At<'_>) -> &'static [Ev] {
    if !a.exists {
        &[(GENERIC, "del")]
    } else if has_opt(a.argv, 2, &["persist"]) {
        &[(GENERIC, "persist")]
    } else {
        &[(GENERIC, "expire")]
    }
}

/// The EXPIRE family: `expire`, or `del` when the time was already past.
pub fn ev_expire(a: &At<'_>) -> &'static [Ev] {
    if a.exists {
        &[(GENERIC, "expire")]
    } else {
        &[(GENERIC, "del")]
    }
}

/// RENAME / RENAMENX: the source gets `rename_from`, the destination `rename_to`.
pub fn ev_rename(a: &At<'_>) -> &'static [Ev] {
    if a.argv.get(1).is_some_and(|s| s == a.key) && !a.exists {
        &[(GENERIC, "rename_from")]
    } else {
        &[(GENERIC, "rename_to")]
    }
}

/// COPY: only the destination changes (`copy_to`), maybe in another database.
pub fn ev_copy(a: &At<'_>) -> &'static [Ev] {
    let is = |i: usize| a.argv.get(i).is_some_and(|k| k == a.key);
    if is(2) && !(a.same_db && is(1)) {
        &[(GENERIC, "copy_to")]
    } else {
        &[]
    }
}

/// MOVE: `move_from` in the source database, `move_to` in the destination.
pub fn ev_move(a: &At<'_>) -> &'static [Ev] {
    if a.same_db {
        &[(GENERIC, "move_from")]
    } else {
        &[(GENERIC, "move_to")]
    }
}

/// SMOVE: `srem` on the source, `sadd` on the destination.
pub fn ev_smove(a: &At<'_>) -> &'static [Ev] {
    if a.argv.get(1).is_some_and(|s| s == a.key) {
        &[(SET, "srem")]
    } else {
        &[(SET, "sadd")]
    }
}

/// ZADD: `zincr` with INCR.
pub fn ev_zadd(a: &At<'_>) -> &'static [Ev] {
    if has_opt(a.argv, 2, &["incr"]) {
        &[(ZSET, "zincr")]
    } else {
        &[(ZSET, "zadd")]
    }
}

/// The LMOVE family: the destination gets the push, the source the pop (both, push
/// first, when they are the same list).
pub fn ev_lmove(a: &At<'_>) -> &'static [Ev] {
    let arg = |i: usize| a.argv.get(i);
    let name = arg(0).map(|n| n.to_ascii_lowercase()).unwrap_or_default();
    let (from_left, to_left) = match name.as_slice() {
        b"rpoplpush" | b"brpoplpush" => (false, true),
        _ => (
            arg(3).is_some_and(|d| d.eq_ignore_ascii_case(b"left")),
            arg(4).is_some_and(|d| d.eq_ignore_ascii_case(b"left")),
        ),
    };
    let is_src = arg(1).is_some_and(|k| k == a.key);
    let is_dst = arg(2).is_some_and(|k| k == a.key);
    match (is_src, is_dst, from_left, to_left) {
        (true, true, true, true) => &[(LIST, "lpush"), (LIST, "lpop")],
        (true, true, true, false) => &[(LIST, "rpush"), (LIST, "lpop")],
        (true, true, false, true) => &[(LIST, "lpush"), (LIST, "rpop")],
        (true, true, false, false) => &[(LIST, "rpush"), (LIST, "rpop")],
        (true, false, true, _) => &[(LIST, "lpop")],
        (true, false, false, _) => &[(LIST, "rpop")],
        (false, true, _, true) => &[(LIST, "lpush")],
        (false, true, _, false) => &[(LIST, "rpush")],
        (false, false, ..) => &[],
    }
}

/// BLPOP / BRPOP served at once, LMPOP / BLMPOP: `lpop` or `rpop` on the key it popped.
pub fn ev_list_pop(a: &At<'_>) -> &'static [Ev] {
    let name = a
        .argv
        .first()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default();
    let left = match name.as_slice() {
        b"blpop" => true,
        b"brpop" => false,
        // LMPOP numkeys key... LEFT|RIGHT [COUNT n] / BLMPOP timeout numkeys ...
        _ => has_opt(a.argv, 2, &["left"]),
    };
    if left {
        &[(LIST, "lpop")]
    } else {
        &[(LIST, "rpop")]
    }
}

/// BZPOPMIN / BZPOPMAX served at once, ZMPOP / BZMPOP: `zpopmin` or `zpopmax`.
pub fn ev_zset_pop(a: &At<'_>) -> &'static [Ev] {
    let name = a
        .argv
        .first()
        .map(|n| n.to_ascii_lowercase())
        .unwrap_or_default();
    let min = match name.as_slice() {
        b"bzpopmin" => true,
        b"bzpopmax" => false,
        _ => has_opt(a.argv, 2, &["min"]),
    };
    if min {
        &[(ZSET, "zpopmin")]
    } else {
        &[(ZSET, "zpopmax")]
    }
}

/// PFMERGE: only the destination changes (`pfadd`).
pub fn ev_pfmerge(a: &At<'_>) -> &'static [Ev] {
    if a.argv.get(1).is_some_and(|k| k == a.key) {
        &[(STRING, "pfadd")]
    } else {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_strings_as_redis() {
        assert_eq!(parse(""), Some(0));
        assert_eq!(parse("KEA").map(format).as_deref(), Some("AKE"));
        assert_eq!(parse("KEAn").map(format).as_deref(), Some("AKE"));
        assert_eq!(parse("Elgn$shzxetdmK").map(format).as_deref(), Some("AKEm"));
        assert_eq!(parse("Elg").map(format).as_deref(), Some("glE"));
        assert_eq!(parse("nK").map(format).as_deref(), Some("nK"));
        assert_eq!(parse("KEAq"), None);
        assert_eq!(effective(parse("K").unwrap_or(0)), 0);
        assert_eq!(effective(parse("A").unwrap_or(0)), 0);
        assert_ne!(effective(parse("Kx").unwrap_or(0)), 0);
    }
}
