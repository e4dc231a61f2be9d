//! Stream commands (Redis's t_stream.c): XADD, XRANGE and friends, trimming, consumer groups
//! (XGROUP, XACK, XPENDING, XCLAIM, XAUTOCLAIM), XINFO, XSETID. Every one names one key, so
//! the handlers run on the shard that owns it. XREAD and XREADGROUP go through the blocking
//! machinery (`commands::blocking`, `coord::blocking`); what they do on the owner of a key
//! (`read_key`, `group_read`) is here. The data structure is `types::stream`.
//!
//! Writes are recorded as Redis propagates them, each as its exact effect (`touch_effect`):
//! XADD with its resolved ID (and `MAXLEN = n` when it trimmed), XTRIM as `MAXLEN = n`, a
//! group read as `XCLAIM ... FORCE JUSTID` per delivered entry plus `XGROUP SETID`, so a
//! replica, the append-only file and a stock Redis replica all end in the same state.
//! Keyspace events are sent here too (`xadd`, `xtrim`, `xdel`, `xgroup-*`, `xsetid`).

use bytes::Bytes;

use super::args::{arg, is, text};
use super::table::{
    CommandSpec, Exec, KeySpec, Touches, BLOCKING, CAT_STREAM, DENYOOM, FAST, KEY_R, KEY_W,
    LOADING, READONLY, STALE, WRITE,
};
use super::KeyCtx;
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::{header, Reply};
use crate::shard::db::Db;
use crate::shard::notify::{event, NEW, STREAM};
use crate::types::stream::{
    node_max_entries, parse_id, parse_plain, AddError, Group, IdArg, Stream, StreamId, Trim,
    ENTRIES_READ_UNKNOWN,
};

const X: &str = "stream";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("xadd", -5, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(xadd))
        .key_perms(&[KEY_W])
        .touches(Touches::Own)
        .doc(X, "5.0.0", "Appends a new message to a stream. Creates the key if it doesn't exist.", "key [NOMKSTREAM] [<MAXLEN | MINID> [= | ~] threshold [LIMIT count]] <* | id> field value [field value ...]"),
    CommandSpec::new("xlen", 2, READONLY | FAST, KeySpec::single(1), Exec::Key(xlen))
        .key_perms(&[0])
        .doc(X, "5.0.0", "Return the number of messages in a stream.", "key"),
    CommandSpec::new("xrange", -4, READONLY, KeySpec::single(1), Exec::Key(xrange))
        .doc(X, "5.0.0", "Returns the messages from a stream within a range of IDs.", "key start end [COUNT count]"),
    CommandSpec::new("xrevrange", -4, READONLY, KeySpec::single(1), Exec::Key(xrevrange))
        .doc(X, "5.0.0", "Returns the messages from a stream within a range of IDs in reverse order.", "key end start [COUNT count]"),
    CommandSpec::new("xdel", -3, WRITE | FAST, KeySpec::single(1), Exec::Key(xdel))
        .key_perms(&[KEY_W])
        .touches(Touches::Own)
        .doc(X, "5.0.0", "Returns the number of messages after removing them from a stream.", "key id [id ...]"),
    CommandSpec::new("xtrim", -4, WRITE, KeySpec::single(1), Exec::Key(xtrim))
        .key_perms(&[KEY_W])
        .touches(Touches::Own)
        .doc(X, "5.0.0", "Deletes messages from the beginning of a stream.", "key <MAXLEN | MINID> [= | ~] threshold [LIMIT count]"),
    CommandSpec::new("xsetid", -3, WRITE | DENYOOM | FAST, KeySpec::single(1), Exec::Key(xsetid))
        .key_perms(&[KEY_W])
        .touches(Touches::Own)
        .doc(X, "5.0.0", "An internal command for replicating stream values.", "key last-id [ENTRIESADDED entries-added] [MAXDELETEDID max-deleted-id]"),
    CommandSpec::new("xack", -4, WRITE | FAST, KeySpec::single(1), Exec::Key(xack))
        .key_perms(&[KEY_W])
        .touches(Touches::Own)
        .doc(X, "5.0.0", "Returns the number of messages that were successfully acknowledged by the consumer group member of a stream.", "key group id [id ...]"),
    CommandSpec::new("xpending", -3, READONLY, KeySpec::single(1), Exec::Key(xpending))
        .doc(X, "5.0.0", "Returns the information and entries from a stream consumer group's pending entries list.", "key group [[IDLE min-idle-time] start end count [consumer]]"),
    CommandSpec::new("xclaim", -6, WRITE | FAST, KeySpec::single(1), Exec::Key(xclaim))
        .key_perms(&[KEY_W])
        .touches(Touches::Own)
        .doc(X, "5.0.0", "Changes, or acquires, ownership of a message in a consumer group, as if the message was delivered a consumer group member.", "key group consumer min-idle-time id [id ...] [IDLE ms] [TIME unix-time-milliseconds] [RETRYCOUNT count] [FORCE] [JUSTID] [LASTID lastid]"),
    CommandSpec::new("xautoclaim", -6, WRITE | FAST, KeySpec::single(1), Exec::Key(xautoclaim))
        .key_perms(&[KEY_W])
        .touches(Touches::Own)
        .doc(X, "6.2.0", "Changes, or acquires, ownership of messages in a consumer group, as if the messages were delivered to as consumer group member.", "key group consumer min-idle-time start [COUNT count] [JUSTID]"),
    CommandSpec::new("xgroup", -2, 0, KeySpec::single(2), Exec::Key(xgroup))
        .key_perms(&[KEY_W])
        .sub_flags(&[
            ("create", WRITE | DENYOOM, CAT_STREAM),
            ("createconsumer", WRITE | DENYOOM, CAT_STREAM),
            ("delconsumer", WRITE, CAT_STREAM),
            ("destroy", WRITE, CAT_STREAM),
            ("help", LOADING | STALE, CAT_STREAM),
            ("setid", WRITE, CAT_STREAM),
        ])
        .touches(Touches::Own)
        .doc(X, "5.0.0", "A container for consumer groups commands.", "subcommand [key]")
        .subs(&[
            ("create", -5, "key group <id | $> [MKSTREAM] [ENTRIESREAD entries-read]"),
            ("createconsumer", 5, "key group consumer"),
            ("delconsumer", 5, "key group consumer"),
            ("destroy", 4, "key group"),
            ("help", 2, ""),
            ("setid", -5, "key group <id | $> [ENTRIESREAD entries-read]"),
        ]),
    CommandSpec::new("xinfo", -2, 0, KeySpec::single(2), Exec::Key(xinfo))
        .sub_flags(&[
            ("consumers", READONLY, CAT_STREAM),
            ("groups", READONLY, CAT_STREAM),
            ("help", LOADING | STALE, CAT_STREAM),
            ("stream", READONLY, CAT_STREAM),
        ])
        .doc(X, "5.0.0", "A container for stream introspection commands.", "subcommand [key]")
        .subs(&[
            ("consumers", 4, "key group"),
            ("groups", 3, "key"),
            ("help", 2, ""),
            ("stream", -3, "key [FULL [COUNT count]]"),
        ]),
    CommandSpec::new("xread", -4, READONLY | BLOCKING, KeySpec::streams(1), Exec::Key(super::blocking::now))
        .cross(crate::coord::blocking::start)
        .doc(X, "5.0.0", "Returns messages from multiple streams with IDs greater than the ones requested. Blocks until a message is available otherwise.", "[COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]"),
    CommandSpec::new("xreadgroup", -7, WRITE | BLOCKING, KeySpec::streams(4), Exec::Key(super::blocking::now))
        .key_perms(&[KEY_R])
        .touches(Touches::Own)
        .cross(crate::coord::blocking::start)
        .doc(X, "5.0.0", "Returns new or historical messages from a stream for a consumer in a group. Blocks until a message is available otherwise.", "GROUP group consumer [COUNT count] [BLOCK milliseconds] [NOACK] STREAMS key [key ...] id [id ...]"),
];

const XGROUP_HELP: &[&str] = &[
    "XGROUP <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CREATE <key> <groupname> <id|$> [option]",
    "    Create a new consumer group. Options are:",
    "    * MKSTREAM",
    "      Create the empty stream if it does not exist.",
    "    * ENTRIESREAD entries_read",
    "      Set the group's entries_read counter (internal use).",
    "CREATECONSUMER <key> <groupname> <consumer>",
    "    Create a new consumer in the specified group.",
    "DELCONSUMER <key> <groupname> <consumer>",
    "    Remove the specified consumer.",
    "DESTROY <key> <groupname>",
    "    Remove the specified group.",
    "SETID <key> <groupname> <id|$> [ENTRIESREAD entries_read]",
    "    Set the current group ID and entries_read counter.",
    "HELP",
    "    Prints this help.",
];

const XINFO_HELP: &[&str] = &[
    "XINFO <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CONSUMERS <key> <groupname>",
    "    Show consumers of <groupname>.",
    "GROUPS <key>",
    "    Show the stream consumer groups.",
    "STREAM <key> [FULL [COUNT <count>]",
    "    Show information about the stream.",
    "HELP",
    "    Prints this help.",
];

// ----- argument parsing ---------------------------------------------------------------

fn invalid_id() -> CmdError {
    CmdError::err("Invalid stream ID specified as stream command argument")
}

/// A strict ID (`ms-seq`, or `ms` with `missing_seq`): no `-`, `+`, `*`.
fn strict_id(b: &[u8], missing_seq: u64) -> Result<StreamId, CmdError> {
    parse_plain(b, missing_seq, false).ok_or_else(invalid_id)
}

/// The strict IDs from argument `from` on (XDEL, XACK).
fn strict_ids(argv: &[Bytes], from: usize) -> Result<Vec<StreamId>, CmdError> {
    argv.get(from..)
        .unwrap_or_default()
        .iter()
        .map(|b| strict_id(b, 0))
        .collect()
}

/// A range bound: `-`, `+`, an ID, or `(`ID (exclusive: moved one step inward).
fn bound(b: &[u8], missing_seq: u64, start: bool) -> Result<StreamId, CmdError> {
    if b.len() > 1 && b.first() == Some(&b'(') {
        let id = strict_id(b.get(1..).unwrap_or_default(), missing_seq)?;
        return if start {
            id.next()
                .ok_or_else(|| CmdError::err("invalid start ID for the interval"))
        } else {
            id.prev()
                .ok_or_else(|| CmdError::err("invalid end ID for the interval"))
        };
    }
    parse_plain(b, missing_seq, true).ok_or_else(invalid_id)
}

fn int_or(b: &[u8], msg: Option<&str>) -> Result<i64, CmdError> {
    parse_i64(b).ok_or_else(|| match msg {
        Some(m) => CmdError::err(m),
        None => CmdError::NotInteger,
    })
}

fn nogroup(key: &[u8], group: &[u8]) -> CmdError {
    CmdError::coded(format!(
        "NOGROUP No such key '{}' or consumer group '{}'",
        text(key),
        text(group)
    ))
}

/// XADD / XTRIM options (Redis's `streamParseAddOrTrimArgsOrReply`).
#[derive(Default)]
struct TrimArgs {
    how: Option<Trim>,
    approx: bool,
    /// Entries an approximate trim may remove at most (`None`: no bound).
    limit: Option<u64>,
    no_mkstream: bool,
    /// XADD: the ID argument and its position.
    id: Option<(IdArg, usize)>,
}

fn trim_args(argv: &[Bytes], xadd: bool) -> Result<TrimArgs, CmdError> {
    let mut a = TrimArgs::default();
    let mut limit: Option<i64> = None;
    let mut i = 2;
    while let Some(opt) = argv.get(i) {
        let more = argv.len() - 1 - i;
        if xadd && opt.as_ref() == b"*" {
            a.id = Some((IdArg::Auto, i));
            break;
        } else if (is(opt, "maxlen") || is(opt, "minid")) && more > 0 {
            if a.how.is_some() {
                return Err(CmdError::err(
                    "syntax error, MAXLEN and MINID options at the same time are not compatible",
                ));
            }
            a.approx = false;
            let next = arg(argv, i + 1)?;
            if more >= 2 && next.as_ref() == b"~" {
                a.approx = true;
                i += 1;
            } else if more >= 2 && next.as_ref() == b"=" {
                i += 1;
            }
            let v = arg(argv, i + 1)?;
            if is(opt, "maxlen") {
                let n = int_or(v, None)?;
                if n < 0 {
                    return Err(CmdError::err("The MAXLEN argument must be >= 0."));
                }
                a.how = Some(Trim::MaxLen(n as u64));
            } else {
                a.how = Some(Trim::MinId(strict_id(v, 0)?));
            }
            i += 2;
        } else if is(opt, "limit") && more > 0 {
            let n = int_or(arg(argv, i + 1)?, None)?;
            if n < 0 {
                return Err(CmdError::err("The LIMIT argument must be >= 0."));
            }
            limit = Some(n);
            i += 2;
        } else if xadd && is(opt, "nomkstream") {
            a.no_mkstream = true;
            i += 1;
        } else if xadd {
            let id = parse_id(opt, true)
                .filter(|id| *id != IdArg::Auto)
                .ok_or_else(invalid_id)?;
            a.id = Some((id, i));
            break;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    if limit.is_some_and(|l| l > 0) && a.how.is_none() {
        return Err(CmdError::err(
            "syntax error, LIMIT cannot be used without specifying a trimming strategy",
        ));
    }
    if !xadd && a.how.is_none() {
        return Err(CmdError::err(
            "syntax error, XTRIM must be called with a trimming strategy",
        ));
    }
    match limit {
        Some(_) if !a.approx => {
            return Err(CmdError::err(
                "syntax error, LIMIT cannot be used without the special ~ option",
            ))
        }
        Some(l) => a.limit = (l > 0).then_some(l as u64),
        None if a.approx => {
            let n = 100u64.saturating_mul(node_max_entries() as u64);
            a.limit = Some(if n == 0 || n > 10_000 { 10_000 } else { n });
        }
        None => {}
    }
    Ok(a)
}

// ----- replies --------------------------------------------------------------------------

fn id_reply(id: StreamId) -> Reply {
    Reply::Bulk(id.to_bytes())
}

/// `[id, [field, value, ...]]`.
fn entry_reply(id: StreamId, fields: &[Bytes]) -> Reply {
    Reply::Array(vec![
        id_reply(id),
        Reply::Array(fields.iter().cloned().map(Reply::Bulk).collect()),
    ])
}

/// `ms-seq` as digits, without an allocation.
fn push_id(out: &mut Vec<u8>, id: StreamId) {
    let mut buf = [0u8; 41];
    let mut at = buf.len();
    for (i, mut v) in [id.seq, id.ms].into_iter().enumerate() {
        if i == 1 {
            at -= 1;
            buf[at] = b'-';
        }
        loop {
            at -= 1;
            buf[at] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
    }
    let digits = buf.get(at..).unwrap_or_default();
    header(out, b'$', digits.len());
    out.extend_from_slice(digits);
    out.extend_from_slice(b"\r\n");
}

/// The entries in `start..=end` (at most `count`, `rev`: newest first) encoded straight
/// from the stream's nodes, the same bytes in RESP2 and RESP3: `[[id, [f, v, ...]] ...]`;
/// and how many.
fn encoded_range(
    s: &Stream,
    start: StreamId,
    end: StreamId,
    count: Option<usize>,
    rev: bool,
) -> (Reply, usize) {
    let mut body = Vec::new();
    let n = s.visit(start, end, count, rev, &mut |id, fields| {
        body.extend_from_slice(b"*2\r\n");
        push_id(&mut body, id);
        header(&mut body, b'*', fields.len());
        for f in fields {
            header(&mut body, b'$', f.len());
            body.extend_from_slice(f);
            body.extend_from_slice(b"\r\n");
        }
    });
    let mut out = Vec::with_capacity(body.len() + 12);
    header(&mut out, b'*', n);
    out.extend_from_slice(&body);
    (Reply::Raw(Bytes::from(out)), n)
}

fn entries_reply(v: Vec<(StreamId, Vec<Bytes>)>) -> Reply {
    Reply::Array(v.into_iter().map(|(i, f)| entry_reply(i, &f)).collect())
}

fn map(pairs: Vec<(&'static str, Reply)>) -> Reply {
    Reply::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (Reply::bulk(Bytes::from_static(k.as_bytes())), v))
            .collect(),
    )
}

fn int(n: u64) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

// ----- helpers over the keyspace -----------------------------------------------------------

/// Records `effect` for `key` (journal, WATCH, blocked readers, tracking).
fn record(ctx: &mut KeyCtx, key: &[u8], effect: &[&[u8]]) {
    let db = ctx.db;
    ctx.shard.touch_effect(db, key, effect);
}

/// Records the command itself as its effect (deterministic as sent).
fn record_as_sent(ctx: &mut KeyCtx, key: &[u8], argv: &[Bytes]) {
    let effect: Vec<&[u8]> = argv.iter().map(|a| a.as_ref()).collect();
    record(ctx, key, &effect);
}

fn notify(ctx: &mut KeyCtx, name: &'static str, key: &[u8]) {
    if ctx.shard.notify != 0 {
        let db = ctx.db;
        event(ctx.shard, db, (STREAM, name), key, false);
    }
}

fn notify_new(ctx: &mut KeyCtx, key: &[u8]) {
    if ctx.shard.notify != 0 {
        let db = ctx.db;
        event(ctx.shard, db, (NEW, "new"), key, false);
    }
}

/// The stream for a write, `None` when missing; WRONGTYPE for other types.
fn stream_mut<'a>(ctx: &'a mut KeyCtx, key: &[u8]) -> Result<Option<&'a mut Stream>, CmdError> {
    let now = ctx.now();
    ctx.db().get_stream_mut(key, now)
}

fn stream_read<'a>(ctx: &'a mut KeyCtx, key: &[u8]) -> Result<Option<&'a Stream>, CmdError> {
    let now = ctx.now();
    ctx.db().get_stream(key, now)
}

// ----- XADD, XLEN, XRANGE, XDEL, XTRIM, XSETID -----------------------------------------------

fn xadd(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let a = trim_args(argv, true)?;
    let Some((idarg, idpos)) = a.id else {
        return Err(CmdError::WrongArity("xadd".into()));
    };
    let fields = argv.get(idpos + 1..).unwrap_or_default();
    if fields.len() < 2 || !fields.len().is_multiple_of(2) {
        return Err(CmdError::WrongArity("xadd".into()));
    }
    if idarg == IdArg::Exact(0, Some(0)) || idarg == IdArg::Exact(0, None) {
        return Err(CmdError::err(
            "The ID specified in XADD must be greater than 0-0",
        ));
    }
    let now = ctx.now();
    let (exists, next) = match ctx.db().get_stream_mut(key, now)? {
        Some(s) if s.last_id == StreamId::MAX => (true, Err(AddError::Exhausted)),
        Some(s) => (true, s.next_id(idarg, now)),
        None if a.no_mkstream => return Ok(Reply::Null),
        None => (false, Stream::new().next_id(idarg, now)),
    };
    let id = next.map_err(|e| match e {
        AddError::Zero => CmdError::err("The ID specified in XADD must be greater than 0-0"),
        AddError::Exhausted => {
            CmdError::err("The stream has exhausted the last possible ID, unable to add more items")
        }
        AddError::TooSmall => CmdError::err(
            "The ID specified in XADD is equal or smaller than the target stream top item",
        ),
    })?;
    let s = ctx.db().stream_or_create(key, now)?;
    s.append(
        id,
        fields.iter().map(|f| Bytes::copy_from_slice(f)).collect(),
    );
    let trimmed = match a.how {
        Some(how) => s.trim(how, a.approx, a.limit),
        None => 0,
    };
    let len = s.len().to_string();
    let ids = id.to_bytes();
    let mut effect: Vec<&[u8]> = vec![b"XADD", key];
    if trimmed > 0 {
        effect.extend_from_slice(&[b"MAXLEN", b"=", len.as_bytes()]);
    }
    effect.push(&ids);
    effect.extend(fields.iter().map(|f| f.as_ref()));
    record(ctx, key, &effect);
    if !exists {
        notify_new(ctx, key);
    }
    notify(ctx, "xadd", key);
    if trimmed > 0 {
        notify(ctx, "xtrim", key);
    }
    Ok(Reply::Bulk(ids))
}

fn xlen(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    Ok(Reply::Int(
        stream_read(ctx, key)?.map_or(0, |s| s.len() as i64),
    ))
}

fn range_generic(ctx: &mut KeyCtx, argv: &[Bytes], rev: bool) -> CmdResult {
    let key = arg(argv, 1)?;
    let (sa, ea) = if rev { (3, 2) } else { (2, 3) };
    let start = bound(arg(argv, sa)?, 0, true)?;
    let end = bound(arg(argv, ea)?, u64::MAX, false)?;
    let mut count: Option<i64> = None;
    let mut j = 4;
    while let Some(a) = argv.get(j) {
        if is(a, "count") && j + 1 < argv.len() {
            count = Some(int_or(arg(argv, j + 1)?, None)?.max(0));
            j += 2;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    let Some(s) = stream_read(ctx, key)? else {
        return Ok(Reply::Array(Vec::new()));
    };
    if count == Some(0) {
        return Ok(Reply::NullArray);
    }
    let n = count.map(|c| usize::try_from(c).unwrap_or(usize::MAX));
    Ok(encoded_range(s, start, end, n, rev).0)
}

fn xrange(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    range_generic(ctx, argv, false)
}

fn xrevrange(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    range_generic(ctx, argv, true)
}

fn xdel(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    // The key and its type first, then the IDs (7.0.15's order).
    if stream_mut(ctx, key)?.is_none() {
        return Ok(Reply::Int(0));
    }
    let ids = strict_ids(argv, 2)?;
    let Some(s) = stream_mut(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let deleted = ids.iter().filter(|id| s.delete(**id)).count();
    if deleted > 0 {
        record_as_sent(ctx, key, argv);
        notify(ctx, "xdel", key);
    }
    Ok(Reply::Int(deleted as i64))
}

fn xtrim(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    // The options first, then the key (7.0.15's order).
    let a = trim_args(argv, false)?;
    let Some(s) = stream_mut(ctx, key)? else {
        return Ok(Reply::Int(0));
    };
    let removed = match a.how {
        Some(how) => s.trim(how, a.approx, a.limit),
        None => 0,
    };
    if removed > 0 {
        let len = s.len().to_string();
        record(ctx, key, &[b"XTRIM", key, b"MAXLEN", b"=", len.as_bytes()]);
        notify(ctx, "xtrim", key);
    }
    Ok(int(removed))
}

fn xsetid(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let id = strict_id(arg(argv, 2)?, 0)?;
    let mut added: Option<u64> = None;
    let mut max_del = StreamId::MIN;
    let mut i = 3;
    while let Some(opt) = argv.get(i) {
        let more = i + 1 < argv.len();
        if is(opt, "entriesadded") && more {
            let n = int_or(arg(argv, i + 1)?, None)?;
            if n < 0 {
                return Err(CmdError::err("entries_added must be positive"));
            }
            added = Some(n as u64);
        } else if is(opt, "maxdeletedid") && more {
            max_del = strict_id(arg(argv, i + 1)?, 0)?;
            if id < max_del {
                return Err(CmdError::err(
                    "The ID specified in XSETID is smaller than the provided max_deleted_entry_id",
                ));
            }
        } else {
            return Err(CmdError::Syntax);
        }
        i += 2;
    }
    let Some(s) = stream_mut(ctx, key)? else {
        return Err(CmdError::err("no such key"));
    };
    if let Some((top, _)) = s.last_entry() {
        if id < top {
            return Err(CmdError::err(
                "The ID specified in XSETID is smaller than the target stream top item",
            ));
        }
        if added.is_some_and(|a| (s.len() as u64) > a) {
            return Err(CmdError::err(
                "The entries_added specified in XSETID is smaller than the target stream length",
            ));
        }
    }
    s.last_id = id;
    if let Some(a) = added {
        s.entries_added = a;
    }
    if !max_del.is_zero() {
        s.max_deleted = max_del;
    }
    record_as_sent(ctx, key, argv);
    notify(ctx, "xsetid", key);
    Ok(Reply::Ok)
}

// ----- consumer groups ----------------------------------------------------------------------

fn xgroup(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let sub = text(arg(argv, 1)?).to_ascii_lowercase();
    let known = [
        "create",
        "createconsumer",
        "delconsumer",
        "destroy",
        "help",
        "setid",
    ];
    let arity_ok = match sub.as_str() {
        "help" => argv.len() == 2,
        "create" => (5..=8).contains(&argv.len()),
        "setid" => (5..=7).contains(&argv.len()),
        "destroy" => argv.len() == 4,
        "createconsumer" | "delconsumer" => argv.len() == 5,
        _ => false,
    };
    if !known.contains(&sub.as_str()) || !arity_ok {
        if known.contains(&sub.as_str()) {
            return Err(CmdError::WrongArity(format!("xgroup|{sub}")));
        }
        return Err(CmdError::UnknownSubcommand {
            sub: text(arg(argv, 1)?),
            cmd: "xgroup".into(),
        });
    }
    if sub == "help" {
        return Ok(Reply::help(XGROUP_HELP));
    }
    let key = arg(argv, 2)?;
    let gname = arg(argv, 3)?;
    let mut mkstream = false;
    let mut entries_read = ENTRIES_READ_UNKNOWN;
    if sub == "create" || sub == "setid" {
        let mut i = 5;
        while let Some(o) = argv.get(i) {
            if sub == "create" && is(o, "mkstream") {
                mkstream = true;
                i += 1;
            } else if is(o, "entriesread") && i + 1 < argv.len() {
                let n = int_or(arg(argv, i + 1)?, None)?;
                if n < 0 && n != ENTRIES_READ_UNKNOWN {
                    return Err(CmdError::err(
                        "value for ENTRIESREAD must be positive or -1",
                    ));
                }
                entries_read = n;
                i += 2;
            } else {
                return Err(CmdError::coded(format!(
                    "ERR unknown subcommand or wrong number of arguments for '{}'. Try XGROUP HELP.",
                    text(arg(argv, 1)?)
                )));
            }
        }
    }
    let now = ctx.now();
    let exists = ctx.db().get_stream_mut(key, now)?.is_some();
    if !(exists || sub == "create" && mkstream) {
        return Err(CmdError::err(
            "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
        ));
    }
    let has_group =
        exists && stream_mut(ctx, key)?.is_some_and(|s| s.groups.contains_key(gname.as_ref()));
    if !has_group && matches!(sub.as_str(), "setid" | "createconsumer" | "delconsumer") {
        return Err(CmdError::coded(format!(
            "NOGROUP No such consumer group '{}' for key name '{}'",
            text(gname),
            text(key)
        )));
    }
    let effect: Vec<&[u8]> = argv.iter().map(|a| a.as_ref()).collect();
    match sub.as_str() {
        "create" => {
            let idb = arg(argv, 4)?;
            let dollar = idb.as_ref() == b"$";
            let id = if dollar {
                None
            } else {
                Some(strict_id(idb, 0)?)
            };
            if !exists && !mkstream {
                return Err(CmdError::err(
                    "The XGROUP subcommand requires the key to exist. Note that for CREATE you may want to use the MKSTREAM option to create an empty stream automatically.",
                ));
            }
            let s = ctx.db().stream_or_create(key, now)?;
            let id = id.unwrap_or(s.last_id);
            if s.groups.contains_key(gname.as_ref()) {
                return Err(CmdError::coded(
                    "BUSYGROUP Consumer Group name already exists",
                ));
            }
            s.groups
                .insert(Bytes::copy_from_slice(gname), Group::new(id, entries_read));
            // `$` is recorded resolved: the effect must not depend on when it is replayed.
            let ids = id.to_bytes();
            let mut eff = effect.clone();
            if let Some(slot) = eff.get_mut(4) {
                *slot = &ids;
            }
            record(ctx, key, &eff);
            if !exists {
                notify_new(ctx, key);
            }
            notify(ctx, "xgroup-create", key);
            Ok(Reply::Ok)
        }
        "setid" => {
            let idb = arg(argv, 4)?;
            let id = if idb.as_ref() == b"$" {
                None
            } else {
                Some(strict_id(idb, 0)?)
            };
            let Some(s) = stream_mut(ctx, key)? else {
                return Err(nogroup(key, gname));
            };
            let id = id.unwrap_or(s.last_id);
            if let Some(g) = s.groups.get_mut(gname.as_ref()) {
                g.last_id = id;
                g.entries_read = entries_read;
            }
            let ids = id.to_bytes();
            let mut eff = effect.clone();
            if let Some(slot) = eff.get_mut(4) {
                *slot = &ids;
            }
            record(ctx, key, &eff);
            notify(ctx, "xgroup-setid", key);
            Ok(Reply::Ok)
        }
        "destroy" => {
            let gone =
                stream_mut(ctx, key)?.is_some_and(|s| s.groups.remove(gname.as_ref()).is_some());
            if gone {
                record(ctx, key, &effect);
                notify(ctx, "xgroup-destroy", key);
            }
            Ok(Reply::Int(i64::from(gone)))
        }
        "createconsumer" => {
            let cname = arg(argv, 4)?;
            let created = match stream_mut(ctx, key)?.and_then(|s| s.groups.get_mut(gname.as_ref()))
            {
                Some(g) => g.consumer(cname, now).1,
                None => false,
            };
            if created {
                record(ctx, key, &effect);
                notify(ctx, "xgroup-createconsumer", key);
            }
            Ok(Reply::Int(i64::from(created)))
        }
        _ => {
            let cname = arg(argv, 4)?;
            let pending = stream_mut(ctx, key)?
                .and_then(|s| s.groups.get_mut(gname.as_ref()))
                .and_then(|g| g.delete_consumer(cname));
            if let Some(n) = pending {
                record(ctx, key, &effect);
                notify(ctx, "xgroup-delconsumer", key);
                return Ok(Reply::Int(n as i64));
            }
            Ok(Reply::Int(0))
        }
    }
}

fn xack(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let gname = arg(argv, 2)?;
    // The key, its type and the group first; without them nothing is parsed (7.0.15).
    let has = stream_mut(ctx, key)?.is_some_and(|s| s.groups.contains_key(gname.as_ref()));
    if !has {
        return Ok(Reply::Int(0));
    }
    let ids = strict_ids(argv, 3)?;
    let acked = match stream_mut(ctx, key)?.and_then(|s| s.groups.get_mut(gname.as_ref())) {
        Some(g) => ids.iter().filter(|id| g.ack(**id)).count(),
        None => 0,
    };
    if acked > 0 {
        record_as_sent(ctx, key, argv);
    }
    Ok(Reply::Int(acked as i64))
}

fn xpending(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let gname = arg(argv, 2)?;
    let n = argv.len();
    if n != 3 && !(6..=9).contains(&n) {
        return Err(CmdError::Syntax);
    }
    let mut range = None;
    let mut min_idle = 0i64;
    let mut consumer = None;
    if n >= 6 {
        let mut at = 3;
        if is(arg(argv, 3)?, "idle") {
            min_idle = int_or(arg(argv, 4)?, None)?;
            if n < 8 {
                return Err(CmdError::Syntax);
            }
            at += 2;
        }
        let count = int_or(arg(argv, at + 2)?, None)?.max(0);
        let start = bound(arg(argv, at)?, 0, true)?;
        let end = bound(arg(argv, at + 1)?, u64::MAX, false)?;
        consumer = argv.get(at + 3).cloned();
        range = Some((start, end, count));
    }
    let now = ctx.now();
    let Some(s) = stream_read(ctx, key)? else {
        return Err(nogroup(key, gname));
    };
    let Some(g) = s.groups.get(gname.as_ref()) else {
        return Err(nogroup(key, gname));
    };
    let Some((start, end, count)) = range else {
        let (Some(first), Some(last)) = (g.pel.keys().next(), g.pel.keys().next_back()) else {
            return Ok(Reply::Array(vec![
                Reply::Int(0),
                Reply::Null,
                Reply::Null,
                Reply::NullArray,
            ]));
        };
        let per: Vec<Reply> = g
            .consumers
            .iter()
            .filter(|(_, c)| !c.pel.is_empty())
            .map(|(name, c)| {
                Reply::Array(vec![
                    Reply::Bulk(name.clone()),
                    Reply::bulk(c.pel.len().to_string()),
                ])
            })
            .collect();
        return Ok(Reply::Array(vec![
            Reply::Int(g.pel.len() as i64),
            id_reply(*first),
            id_reply(*last),
            Reply::Array(per),
        ]));
    };
    let ids: Vec<StreamId> = match &consumer {
        Some(c) => match g.consumers.get(c.as_ref()) {
            Some(c) => c.pel.range(start..).copied().collect(),
            None => return Ok(Reply::Array(Vec::new())),
        },
        None => g.pel.range(start..).map(|(i, _)| *i).collect(),
    };
    let mut out = Vec::new();
    let mut left = count;
    for id in ids {
        if left <= 0 || id > end {
            break;
        }
        let Some(p) = g.pel.get(&id) else { continue };
        let idle = now as i64 - p.delivery_time as i64;
        if min_idle > 0 && idle < min_idle {
            continue;
        }
        left -= 1;
        out.push(Reply::Array(vec![
            id_reply(id),
            Reply::Bulk(p.consumer.clone()),
            Reply::Int(idle.max(0)),
            int(p.delivery_count),
        ]));
    }
    Ok(Reply::Array(out))
}

/// The effect Redis propagates for a claimed or delivered entry (`streamPropagateXCLAIM`).
fn claim_effect(ctx: &mut KeyCtx, key: &[u8], gname: &[u8], id: StreamId) {
    let Some((consumer, time, count, last)) = stream_mut(ctx, key).ok().flatten().and_then(|s| {
        let g = s.groups.get(gname)?;
        let p = g.pel.get(&id);
        Some((
            p.map(|p| p.consumer.clone()).unwrap_or_default(),
            p.map_or(0, |p| p.delivery_time),
            p.map_or(0, |p| p.delivery_count),
            g.last_id,
        ))
    }) else {
        return;
    };
    let (ids, t, c, l) = (
        id.to_bytes(),
        time.to_string(),
        count.to_string(),
        last.to_bytes(),
    );
    record(
        ctx,
        key,
        &[
            b"XCLAIM",
            key,
            gname,
            &consumer,
            b"0",
            &ids,
            b"TIME",
            t.as_bytes(),
            b"RETRYCOUNT",
            c.as_bytes(),
            b"FORCE",
            b"JUSTID",
            b"LASTID",
            &l,
        ],
    );
}

/// A PEL entry whose stream entry is gone: dropped, recorded as Redis does (an XCLAIM the
/// replica resolves the same way).
fn claim_gone(ctx: &mut KeyCtx, key: &[u8], gname: &[u8], id: StreamId) {
    claim_effect(ctx, key, gname, id);
    if let Some(g) = stream_mut(ctx, key)
        .ok()
        .flatten()
        .and_then(|s| s.groups.get_mut(gname))
    {
        g.ack(id);
    }
}

fn setid_effect(ctx: &mut KeyCtx, key: &[u8], gname: &[u8]) {
    let Some((last, read)) = stream_mut(ctx, key)
        .ok()
        .flatten()
        .and_then(|s| s.groups.get(gname).map(|g| (g.last_id, g.entries_read)))
    else {
        return;
    };
    let (l, r) = (last.to_bytes(), read.to_string());
    record(
        ctx,
        key,
        &[
            b"XGROUP",
            b"SETID",
            key,
            gname,
            &l,
            b"ENTRIESREAD",
            r.as_bytes(),
        ],
    );
}

fn consumer_created(ctx: &mut KeyCtx, key: &[u8], gname: &[u8], cname: &[u8]) {
    record(ctx, key, &[b"XGROUP", b"CREATECONSUMER", key, gname, cname]);
    notify(ctx, "xgroup-createconsumer", key);
}

/// What XCLAIM and XAUTOCLAIM claim for.
struct Claim<'a> {
    key: &'a [u8],
    gname: &'a [u8],
    cname: &'a [u8],
    now: u64,
    justid: bool,
}

/// Moves `id` to the claiming consumer (made, and announced, once per command) with
/// `count` deliveries at `time`, records the effect, and returns its reply item (`None`:
/// the stream or group went).
fn claim_one(
    ctx: &mut KeyCtx,
    c: &Claim,
    id: StreamId,
    time: u64,
    count: u64,
    made: &mut bool,
) -> Result<Option<Reply>, CmdError> {
    let Some(g) = stream_mut(ctx, c.key)?.and_then(|s| s.groups.get_mut(c.gname)) else {
        return Ok(None);
    };
    let created = !*made && g.consumer(c.cname, c.now).1;
    *made = true;
    g.deliver(id, c.cname, time, Some(count));
    if let Some(con) = g.consumers.get_mut(c.cname) {
        con.seen_time = c.now;
    }
    if created {
        consumer_created(ctx, c.key, c.gname, c.cname);
    }
    let Some(s) = stream_mut(ctx, c.key)? else {
        return Ok(None);
    };
    let item = if c.justid {
        id_reply(id)
    } else {
        entry_reply(id, &s.get(id).unwrap_or_default())
    };
    claim_effect(ctx, c.key, c.gname, id);
    Ok(Some(item))
}

fn xclaim(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let gname = arg(argv, 2)?;
    let cname = arg(argv, 3)?;
    // One counted lookup (a keyspace hit or miss), as Redis's; the loop's are not.
    let has = stream_read(ctx, key)?.is_some_and(|s| s.groups.contains_key(gname.as_ref()));
    if !has {
        return Err(nogroup(key, gname));
    }
    let min_idle = int_or(
        arg(argv, 4)?,
        Some("Invalid min-idle-time argument for XCLAIM"),
    )?
    .max(0);
    let mut j = 5;
    let mut ids = Vec::new();
    while let Some(id) = argv.get(j).and_then(|b| parse_plain(b, 0, false)) {
        ids.push(id);
        j += 1;
    }
    let now = ctx.now();
    let (mut force, mut justid) = (false, false);
    let mut time: Option<i64> = None;
    let mut retry: Option<i64> = None;
    let mut last_id = StreamId::MIN;
    while let Some(opt) = argv.get(j) {
        let more = j + 1 < argv.len();
        if is(opt, "force") {
            force = true;
        } else if is(opt, "justid") {
            justid = true;
        } else if is(opt, "idle") && more {
            j += 1;
            let v = int_or(
                arg(argv, j)?,
                Some("Invalid IDLE option argument for XCLAIM"),
            )?;
            time = Some(now as i64 - v);
        } else if is(opt, "time") && more {
            j += 1;
            time = Some(int_or(
                arg(argv, j)?,
                Some("Invalid TIME option argument for XCLAIM"),
            )?);
        } else if is(opt, "retrycount") && more {
            j += 1;
            retry = Some(int_or(
                arg(argv, j)?,
                Some("Invalid RETRYCOUNT option argument for XCLAIM"),
            )?);
        } else if is(opt, "lastid") && more {
            j += 1;
            last_id = strict_id(arg(argv, j)?, 0)?;
        } else {
            return Err(CmdError::err(format!(
                "Unrecognized XCLAIM option '{}'",
                text(opt)
            )));
        }
        j += 1;
    }
    let delivery = match time {
        Some(t) if t >= 0 && t <= now as i64 => t as u64,
        _ => now,
    };
    let mut propagate_last = false;
    if let Some(g) = stream_mut(ctx, key)?.and_then(|s| s.groups.get_mut(gname.as_ref())) {
        if last_id > g.last_id {
            g.last_id = last_id;
            propagate_last = true;
        }
    }
    let c = Claim {
        key,
        gname,
        cname,
        now,
        justid,
    };
    let mut out = Vec::new();
    let mut consumer_made = false;
    for id in ids {
        let Some(s) = stream_mut(ctx, key)? else {
            break;
        };
        let exists = s.contains(id);
        let Some(g) = s.groups.get_mut(gname.as_ref()) else {
            break;
        };
        let pending = g.pel.get(&id).cloned();
        if !exists {
            if pending.is_some() {
                claim_gone(ctx, key, gname, id);
                propagate_last = false;
            }
            continue;
        }
        let fresh = pending.is_none();
        if fresh && !force {
            continue;
        }
        if let Some(p) = &pending {
            if min_idle > 0 && (now as i64 - p.delivery_time as i64) < min_idle {
                continue;
            }
        }
        // A NACK made by FORCE starts at one delivery (Redis's streamCreateNACK).
        let base = pending.map_or(1, |p| p.delivery_count);
        let count = match retry {
            Some(r) if r >= 0 => r as u64,
            _ if justid => base,
            _ => base + 1,
        };
        match claim_one(ctx, &c, id, delivery, count, &mut consumer_made)? {
            Some(r) => out.push(r),
            None => break,
        }
        propagate_last = false;
    }
    if propagate_last {
        setid_effect(ctx, key, gname);
    }
    Ok(Reply::Array(out))
}

fn xautoclaim(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let gname = arg(argv, 2)?;
    let cname = arg(argv, 3)?;
    let min_idle = int_or(
        arg(argv, 4)?,
        Some("Invalid min-idle-time argument for XAUTOCLAIM"),
    )?
    .max(0);
    let start = bound(arg(argv, 5)?, 0, true)?;
    let mut count: i64 = 100;
    let mut justid = false;
    let mut j = 6;
    while let Some(opt) = argv.get(j) {
        if is(opt, "count") && j + 1 < argv.len() {
            let max = i64::MAX / 16;
            count = parse_i64(arg(argv, j + 1)?)
                .filter(|c| (1..=max).contains(c))
                .ok_or_else(|| CmdError::err("COUNT must be > 0"))?;
            j += 2;
        } else if is(opt, "justid") {
            justid = true;
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
    }
    // One counted lookup (a keyspace hit or miss), as Redis's; the loop's are not.
    let has = stream_read(ctx, key)?.is_some_and(|s| s.groups.contains_key(gname.as_ref()));
    if !has {
        return Err(nogroup(key, gname));
    }
    let now = ctx.now();
    let pel: Vec<StreamId> = stream_mut(ctx, key)?
        .and_then(|s| s.groups.get(gname.as_ref()))
        .map(|g| g.pel.range(start..).map(|(i, _)| *i).collect())
        .unwrap_or_default();
    let mut attempts = count.saturating_mul(10);
    let mut claimed = Vec::new();
    let mut deleted = Vec::new();
    let c = Claim {
        key,
        gname,
        cname,
        now,
        justid,
    };
    let mut consumer_made = false;
    let mut next = StreamId::MIN;
    let mut it = pel.into_iter().peekable();
    while attempts > 0 && count > 0 {
        let Some(id) = it.next() else { break };
        attempts -= 1;
        let Some(s) = stream_mut(ctx, key)? else {
            break;
        };
        let exists = s.contains(id);
        let idle = s
            .groups
            .get(gname.as_ref())
            .and_then(|g| g.pel.get(&id))
            .map(|p| now as i64 - p.delivery_time as i64);
        if !exists {
            claim_gone(ctx, key, gname, id);
            deleted.push(id_reply(id));
            count -= 1;
            continue;
        }
        if min_idle > 0 && idle.is_some_and(|i| i < min_idle) {
            continue;
        }
        let prev = stream_mut(ctx, key)?
            .and_then(|s| s.groups.get(gname.as_ref()))
            .and_then(|g| g.pel.get(&id))
            .map_or(0, |p| p.delivery_count);
        let n = if justid { prev } else { prev + 1 };
        match claim_one(ctx, &c, id, now, n, &mut consumer_made)? {
            Some(r) => claimed.push(r),
            None => break,
        }
        count -= 1;
    }
    if let Some(n) = it.peek() {
        next = *n;
    }
    Ok(Reply::Array(vec![
        id_reply(next),
        Reply::Array(claimed),
        Reply::Array(deleted),
    ]))
}

// ----- XINFO -----------------------------------------------------------------------------------

fn xinfo(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let sub = text(arg(argv, 1)?).to_ascii_lowercase();
    let arity_ok = match sub.as_str() {
        "help" => argv.len() == 2,
        "consumers" => argv.len() == 4,
        "groups" => argv.len() == 3,
        "stream" => argv.len() >= 3,
        _ => {
            return Err(CmdError::UnknownSubcommand {
                sub: text(arg(argv, 1)?),
                cmd: "xinfo".into(),
            })
        }
    };
    if !arity_ok {
        return Err(CmdError::WrongArity(format!("xinfo|{sub}")));
    }
    if sub == "help" {
        return Ok(Reply::help(XINFO_HELP));
    }
    let key = arg(argv, 2)?;
    let now = ctx.now();
    let Some(s) = stream_read(ctx, key)? else {
        return Err(CmdError::err("no such key"));
    };
    match sub.as_str() {
        "consumers" => {
            let gname = arg(argv, 3)?;
            let Some(g) = s.groups.get(gname.as_ref()) else {
                return Err(CmdError::coded(format!(
                    "NOGROUP No such consumer group '{}' for key name '{}'",
                    text(gname),
                    text(key)
                )));
            };
            Ok(Reply::Array(
                g.consumers
                    .iter()
                    .map(|(name, c)| {
                        map(vec![
                            ("name", Reply::Bulk(name.clone())),
                            ("pending", Reply::Int(c.pel.len() as i64)),
                            ("idle", Reply::Int((now as i64 - c.seen_time as i64).max(0))),
                        ])
                    })
                    .collect(),
            ))
        }
        "groups" => Ok(Reply::Array(
            s.groups
                .iter()
                .map(|(name, g)| {
                    map(vec![
                        ("name", Reply::Bulk(name.clone())),
                        ("consumers", Reply::Int(g.consumers.len() as i64)),
                        ("pending", Reply::Int(g.pel.len() as i64)),
                        ("last-delivered-id", id_reply(g.last_id)),
                        ("entries-read", entries_read(g.entries_read)),
                        ("lag", s.lag(g).map_or(Reply::Null, Reply::Int)),
                    ])
                })
                .collect(),
        )),
        _ => xinfo_stream(s, argv, now),
    }
}

fn entries_read(n: i64) -> Reply {
    if n == ENTRIES_READ_UNKNOWN {
        Reply::Null
    } else {
        Reply::Int(n)
    }
}

fn xinfo_stream_usage(argv: &[Bytes]) -> CmdError {
    CmdError::coded(format!(
        "ERR unknown subcommand or wrong number of arguments for '{}'. Try XINFO HELP.",
        text(argv.get(1).map(|b| b.as_ref()).unwrap_or_default())
    ))
}

fn xinfo_stream(s: &Stream, argv: &[Bytes], _now: u64) -> CmdResult {
    let mut full = false;
    let mut count: usize = 10;
    match argv.len() {
        3 => {}
        4 | 6 => {
            if !is(arg(argv, 3)?, "full") {
                return Err(xinfo_stream_usage(argv));
            }
            full = true;
            if argv.len() == 6 {
                if !is(arg(argv, 4)?, "count") {
                    return Err(CmdError::Syntax);
                }
                let n = int_or(arg(argv, 5)?, None)?;
                count = if n <= 0 {
                    usize::MAX
                } else {
                    usize::try_from(n).unwrap_or(usize::MAX)
                };
            }
        }
        _ => return Err(xinfo_stream_usage(argv)),
    }
    // One rax key per listpack node, as Redis counts them; the rax's inner node count is
    // Redis's own tree shape, estimated.
    let keys = s.node_count();
    let mut out = vec![
        ("length", int(s.len() as u64)),
        ("radix-tree-keys", int(keys as u64)),
        ("radix-tree-nodes", int(keys as u64 + 1)),
        ("last-generated-id", id_reply(s.last_id)),
        ("max-deleted-entry-id", id_reply(s.max_deleted)),
        ("entries-added", int(s.entries_added)),
        ("recorded-first-entry-id", id_reply(s.first_id())),
    ];
    if !full {
        out.push(("groups", int(s.groups.len() as u64)));
        out.push((
            "first-entry",
            s.first_entry()
                .map_or(Reply::Null, |(i, f)| entry_reply(i, &f)),
        ));
        out.push((
            "last-entry",
            s.last_entry()
                .map_or(Reply::Null, |(i, f)| entry_reply(i, &f)),
        ));
        return Ok(map(out));
    }
    out.push((
        "entries",
        entries_reply(s.range(StreamId::MIN, StreamId::MAX, Some(count), false)),
    ));
    let groups = s
        .groups
        .iter()
        .map(|(name, g)| {
            let pending = g
                .pel
                .iter()
                .take(count)
                .map(|(id, p)| {
                    Reply::Array(vec![
                        id_reply(*id),
                        Reply::Bulk(p.consumer.clone()),
                        int(p.delivery_time),
                        int(p.delivery_count),
                    ])
                })
                .collect();
            let consumers = g
                .consumers
                .iter()
                .map(|(cn, c)| {
                    let pend = c
                        .pel
                        .iter()
                        .take(count)
                        .filter_map(|id| {
                            let p = g.pel.get(id)?;
                            Some(Reply::Array(vec![
                                id_reply(*id),
                                int(p.delivery_time),
                                int(p.delivery_count),
                            ]))
                        })
                        .collect();
                    map(vec![
                        ("name", Reply::Bulk(cn.clone())),
                        ("seen-time", int(c.seen_time)),
                        ("pel-count", int(c.pel.len() as u64)),
                        ("pending", Reply::Array(pend)),
                    ])
                })
                .collect();
            map(vec![
                ("name", Reply::Bulk(name.clone())),
                ("last-delivered-id", id_reply(g.last_id)),
                ("entries-read", entries_read(g.entries_read)),
                ("lag", s.lag(g).map_or(Reply::Null, Reply::Int)),
                ("pel-count", int(g.pel.len() as u64)),
                ("pending", Reply::Array(pending)),
                ("consumers", Reply::Array(consumers)),
            ])
        })
        .collect();
    out.push(("groups", Reply::Array(groups)));
    Ok(map(out))
}

// ----- XREAD / XREADGROUP: parsing and the reads the blocking machinery runs -------------------

/// Where a read starts on one key.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum From {
    /// After this ID.
    After(StreamId),
    /// XREAD `$`: after the stream's last ID when the read is registered.
    Last,
    /// XREADGROUP `>`: entries never delivered to the group.
    New,
    /// An ID that does not parse (or `$`/`>` where they mean nothing): reported after the
    /// key's type and group are checked, as Redis checks each key in turn.
    Invalid(&'static str),
}

/// A parsed XREAD / XREADGROUP.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadOp {
    /// Per key (in command order): where the read starts.
    pub from: Vec<(Bytes, From)>,
    /// 0: no limit.
    pub count: usize,
    /// XREADGROUP: group and consumer.
    pub group: Option<(Bytes, Bytes)>,
    pub noack: bool,
}

impl ReadOp {
    pub fn from_of(&self, key: &[u8]) -> Option<From> {
        self.from
            .iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, f)| *f)
    }
}

/// Parses XREAD / XREADGROUP: the op, its keys, and the BLOCK milliseconds (`None`: no
/// BLOCK).
pub fn parse_read(argv: &[Bytes]) -> Result<(ReadOp, Vec<Bytes>, Option<u64>), CmdError> {
    let group_cmd = argv.first().is_some_and(|n| is(n, "xreadgroup"));
    let mut count = 0usize;
    let mut block = None;
    let mut group = None;
    let mut noack = false;
    let mut streams_at = None;
    let mut i = 1;
    while let Some(o) = argv.get(i) {
        let more = argv.len() - i - 1;
        if is(o, "block") && more > 0 {
            i += 1;
            let t = parse_i64(arg(argv, i)?)
                .ok_or_else(|| CmdError::err("timeout is not an integer or out of range"))?;
            if t < 0 {
                return Err(CmdError::err("timeout is negative"));
            }
            block = Some(t as u64);
        } else if is(o, "count") && more > 0 {
            i += 1;
            let n = int_or(arg(argv, i)?, None)?;
            count = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
        } else if is(o, "streams") && more > 0 {
            let n = more;
            if !n.is_multiple_of(2) {
                // 7.0.15 says this for XREADGROUP too.
                return Err(CmdError::err(
                    "Unbalanced XREAD list of streams: for each stream key an ID or '$' must be specified.",
                ));
            }
            streams_at = Some(i + 1);
            break;
        } else if is(o, "group") && more >= 2 {
            if !group_cmd {
                return Err(CmdError::err(
                    "The GROUP option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            group = Some((
                Bytes::copy_from_slice(arg(argv, i + 1)?),
                Bytes::copy_from_slice(arg(argv, i + 2)?),
            ));
            i += 2;
        } else if is(o, "noack") {
            if !group_cmd {
                return Err(CmdError::err(
                    "The NOACK option is only supported by XREADGROUP. You called XREAD instead.",
                ));
            }
            noack = true;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let Some(at) = streams_at else {
        return Err(CmdError::Syntax);
    };
    if group_cmd && group.is_none() {
        return Err(CmdError::err("Missing GROUP option for XREADGROUP"));
    }
    let rest = argv.get(at..).unwrap_or_default();
    let n = rest.len() / 2;
    let (keys, ids) = rest.split_at(n);
    let mut from = Vec::with_capacity(n);
    for (k, id) in keys.iter().zip(ids) {
        let f = if id.as_ref() == b"$" {
            if group_cmd {
                From::Invalid("The $ ID is meaningless in the context of XREADGROUP: you want to read the history of this consumer by specifying a proper ID, or use the > ID to get new messages. The $ ID would just return an empty result set.")
            } else {
                From::Last
            }
        } else if id.as_ref() == b">" {
            if group_cmd {
                From::New
            } else {
                From::Invalid("The > ID can be specified only when calling XREADGROUP using the GROUP <group> <consumer> option.")
            }
        } else {
            match parse_plain(id, 0, false) {
                Some(id) => From::After(id),
                None => From::Invalid("Invalid stream ID specified as stream command argument"),
            }
        };
        from.push((Bytes::copy_from_slice(k), f));
    }
    let keys = from.iter().map(|(k, _)| k.clone()).collect();
    Ok((
        ReadOp {
            from,
            count,
            group,
            noack,
        },
        keys,
        block,
    ))
}

/// The checks Redis makes for every key before serving any: its type, and its group.
pub fn check_key(db: &mut Db, now: u64, op: &ReadOp, key: &[u8]) -> Result<(), CmdError> {
    let s = db.get_stream(key, now)?;
    if let Some((g, _)) = &op.group {
        if !s.is_some_and(|s| s.groups.contains_key(g.as_ref())) {
            return Err(CmdError::coded(format!(
                "NOGROUP No such key '{}' or consumer group '{}' in XREADGROUP with GROUP option",
                text(key),
                text(g)
            )));
        }
    }
    // Every position naming this key (a key may be named twice).
    for (k, f) in &op.from {
        if let (true, From::Invalid(m)) = (k.as_ref() == key, f) {
            return Err(CmdError::err(*m));
        }
    }
    Ok(())
}

/// `$` resolved against the stream as it is now (when a read is registered).
pub fn resolve_last(db: &mut Db, now: u64, op: &ReadOp) -> ReadOp {
    let mut op = op.clone();
    for (k, f) in op.from.iter_mut() {
        if *f == From::Last {
            let last = db
                .get_stream(k, now)
                .ok()
                .flatten()
                .map_or(StreamId::MIN, |s| s.last_id);
            *f = From::After(last);
        }
    }
    op
}

/// Whether `key` has something for this read (WRONGTYPE / NOGROUP as errors).
pub fn has_data(db: &mut Db, now: u64, op: &ReadOp, key: &[u8]) -> Result<bool, CmdError> {
    check_key(db, now, op, key)?;
    let from = op.from_of(key);
    if op.group.is_some() && matches!(from, Some(From::After(_))) {
        // A history read (an ID in XREADGROUP) always answers at once.
        return Ok(true);
    }
    let Some(s) = db.get_stream(key, now)? else {
        return Ok(false);
    };
    let Some(top) = s.last_entry().map(|(i, _)| i) else {
        return Ok(false);
    };
    Ok(match from {
        Some(From::After(id)) => top > id,
        Some(From::New) => op
            .group
            .as_ref()
            .and_then(|(g, _)| s.groups.get(g.as_ref()))
            .is_some_and(|g| top > g.last_id),
        // `$` not resolved yet: nothing after the end.
        Some(From::Last) | Some(From::Invalid(_)) | None => false,
    })
}

/// A read of one key: its `[key, entries]` pair, and the effects a group read recorded
/// (to journal on the shard). `None` when nothing is there for it.
pub struct KeyRead {
    pub reply: Reply,
    pub effects: Vec<Vec<Bytes>>,
    /// A consumer was created (keyspace event).
    pub created: bool,
}

/// Reads `key` for `op` (blocked: `count` defaults to 1000, as Redis serves a woken
/// reader).
pub fn read_key(
    db: &mut Db,
    now: u64,
    op: &ReadOp,
    key: &[u8],
    woken: bool,
) -> Result<Option<KeyRead>, CmdError> {
    let from = op.from_of(key).unwrap_or(From::Last);
    read_from(db, now, op, key, from, woken)
}

/// `read_key` for the key at position `i` of the command (its own ID).
pub fn read_at(
    db: &mut Db,
    now: u64,
    op: &ReadOp,
    i: usize,
    woken: bool,
) -> Result<Option<KeyRead>, CmdError> {
    let Some((key, from)) = op.from.get(i) else {
        return Ok(None);
    };
    read_from(db, now, op, key, *from, woken)
}

fn read_from(
    db: &mut Db,
    now: u64,
    op: &ReadOp,
    key: &[u8],
    from: From,
    woken: bool,
) -> Result<Option<KeyRead>, CmdError> {
    check_key(db, now, op, key)?;
    let count = match (op.count, woken) {
        (0, true) => Some(1000),
        (0, false) => None,
        (n, _) => Some(n),
    };
    let Some(s) = db.get_stream_mut(key, now)? else {
        return Ok(None);
    };
    let Some((gname, cname)) = &op.group else {
        let From::After(after) = from else {
            return Ok(None);
        };
        let Some(start) = after.next() else {
            return Ok(None);
        };
        let (entries, n) = encoded_range(s, start, StreamId::MAX, count, false);
        if n == 0 {
            return Ok(None);
        }
        return Ok(Some(KeyRead {
            reply: Reply::Array(vec![Reply::Bulk(Bytes::copy_from_slice(key)), entries]),
            effects: Vec::new(),
            created: false,
        }));
    };
    group_read(s, key, gname, cname, from, count, op.noack, now)
}

/// XREADGROUP on one stream: history (`After`) from the consumer's PEL, or new entries
/// (`New`) into the PEL (unless NOACK), with Redis's propagation as effects.
#[allow(clippy::too_many_arguments)]
fn group_read(
    s: &mut Stream,
    key: &[u8],
    gname: &Bytes,
    cname: &Bytes,
    from: From,
    count: Option<usize>,
    noack: bool,
    now: u64,
) -> Result<Option<KeyRead>, CmdError> {
    let kb = Bytes::copy_from_slice(key);
    let mut effects: Vec<Vec<Bytes>> = Vec::new();
    let Some(last) = s.groups.get(gname.as_ref()).map(|g| g.last_id) else {
        return Ok(None);
    };
    if matches!(from, From::New | From::Last) {
        let start = last.next().unwrap_or(StreamId::MAX);
        if last == StreamId::MAX || s.range(start, StreamId::MAX, Some(1), false).is_empty() {
            return Ok(None);
        }
    }
    let Some(g) = s.groups.get_mut(gname.as_ref()) else {
        return Ok(None);
    };
    let (c, created) = g.consumer(cname, now);
    c.seen_time = now;
    if created {
        effects.push(vec![
            Bytes::from_static(b"XGROUP"),
            Bytes::from_static(b"CREATECONSUMER"),
            kb.clone(),
            gname.clone(),
            cname.clone(),
        ]);
    }
    let claim = |id: StreamId, p: &crate::types::stream::Pending, last: StreamId| {
        vec![
            Bytes::from_static(b"XCLAIM"),
            kb.clone(),
            gname.clone(),
            p.consumer.clone(),
            Bytes::from_static(b"0"),
            id.to_bytes(),
            Bytes::from_static(b"TIME"),
            Bytes::from(p.delivery_time.to_string()),
            Bytes::from_static(b"RETRYCOUNT"),
            Bytes::from(p.delivery_count.to_string()),
            Bytes::from_static(b"FORCE"),
            Bytes::from_static(b"JUSTID"),
            Bytes::from_static(b"LASTID"),
            last.to_bytes(),
        ]
    };
    let limit = count.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    match from {
        From::After(after) => {
            // History: this consumer's pending entries after `after`.
            let ids: Vec<StreamId> = match g.consumers.get(cname.as_ref()) {
                Some(c) => c
                    .pel
                    .range(after.next().unwrap_or(StreamId::MAX)..)
                    .take(limit)
                    .copied()
                    .collect(),
                None => Vec::new(),
            };
            let last = g.last_id;
            for id in ids {
                let fields = s.get(id).map(|f| f.to_vec());
                let Some(g) = s.groups.get_mut(gname.as_ref()) else {
                    break;
                };
                match fields {
                    Some(f) => {
                        if let Some(p) = g.pel.get_mut(&id) {
                            p.delivery_time = now;
                            p.delivery_count += 1;
                            effects.push(claim(id, p, last));
                        }
                        items.push(entry_reply(id, &f));
                    }
                    None => items.push(Reply::Array(vec![id_reply(id), Reply::NullArray])),
                }
            }
        }
        From::New | From::Last | From::Invalid(_) => {
            let start = g.last_id.next().unwrap_or(StreamId::MAX);
            let found: Vec<(StreamId, Vec<Bytes>)> = s
                .range(start, StreamId::MAX, Some(limit), false)
                .into_iter()
                .map(|(i, f)| (i, f.to_vec()))
                .collect();
            for (id, f) in found {
                let mut g = match s.groups.remove(gname.as_ref()) {
                    Some(g) => g,
                    None => break,
                };
                if id > g.last_id {
                    s.group_advance(&mut g, id);
                }
                if !noack {
                    g.deliver(id, cname, now, Some(1));
                    if let Some(p) = g.pel.get(&id) {
                        effects.push(claim(id, p, g.last_id));
                    }
                }
                s.groups.insert(gname.clone(), g);
                items.push(entry_reply(id, &f));
            }
            if let Some(g) = s.groups.get(gname.as_ref()) {
                effects.push(vec![
                    Bytes::from_static(b"XGROUP"),
                    Bytes::from_static(b"SETID"),
                    kb.clone(),
                    gname.clone(),
                    g.last_id.to_bytes(),
                    Bytes::from_static(b"ENTRIESREAD"),
                    Bytes::from(g.entries_read.to_string()),
                ]);
            }
        }
    }
    Ok(Some(KeyRead {
        reply: Reply::Array(vec![Reply::Bulk(kb.clone()), Reply::Array(items)]),
        effects,
        created,
    }))
}
