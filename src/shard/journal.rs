//! The shard's write journal: an in-memory, ordered log of the effects of every write on this
//! shard, in replayable Redis command form, with a per-shard offset counted in bytes (as Redis
//! counts replication offsets) and a bounded backlog. Owned by the shard's thread; consumers
//! (replication links, an append-only file, the replay test through `DEBUG JOURNAL`) read it
//! from an offset.
//!
//! Records say what Redis propagates, not what the client sent. How a command is recorded is
//! data on its table row ([`Prop`]):
//! - `Verbatim`: deterministic commands with no relative time (HSET, LPUSH, ZADD, DEL...) are
//!   recorded as sent;
//! - `Ttl`: the expiry family becomes `PEXPIREAT` / `PERSIST` / `DEL` from the key's state;
//! - `State` (the default): every key the write touched is recorded as its resulting state:
//!   `DEL`, `SET key value [PXAT t]` for strings, `RESTORE key t payload REPLACE ABSTTL` for
//!   the other types. That covers relative expiry, randomness (SPOP), floats, and
//!   cross-shard steps without a rule per command.
//!
//! Keys deleted by lazy or active expiry or by eviction become `DEL` (`Db::gone`). A write
//! made while the shard is locked by a multi-shard command carries that command's
//! transaction tag (id and number of shards), so a consumer can apply it all-or-nothing.
//!
//! When the journal is off (`Shard::journal` is `None`) nothing here runs: the hot path pays
//! one branch.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

use super::Shard;
use crate::commands::table::CommandSpec;
use crate::persist::rdb::ValRef;
use crate::protocol::reply::Reply;

thread_local! {
    /// A database of this shard thread has deletions in `Db::gone` not recorded yet: the
    /// flush after each command looks at the databases only then.
    static GONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `Db` noted a deletion by expiry or eviction (see `GONE`).
#[inline]
pub fn note_gone() {
    GONE.with(|g| g.set(true));
}

/// Bytes held by every shard's backlog: not data, so eviction leaves it out (as Redis leaves
/// out its replication backlog). Only touched while a journal is on.
static HELD_TOTAL: AtomicU64 = AtomicU64::new(0);

/// Bytes all journals hold (see `HELD_TOTAL`), with their bookkeeping, to within a block
/// (`CHUNK`) per journal.
pub fn total_bytes() -> u64 {
    HELD_TOTAL.load(Ordering::Relaxed)
}

/// Redis's default `repl-backlog-size`, per shard.
pub const DEFAULT_BACKLOG: usize = 1024 * 1024;

/// How a write command is recorded (a field of its table row).
#[derive(Clone, Copy)]
pub enum Prop {
    /// The resulting state of every key the command touched.
    State,
    /// The command as sent: deterministic, no relative time, no randomness.
    Verbatim,
    /// The key's expiry as it now stands: `PEXPIREAT`, `PERSIST` or `DEL`.
    Ttl,
    /// Recorded as sent when the function says so for the arguments (SET without EX/PX),
    /// else as `State`.
    VerbatimIf(fn(&[Bytes]) -> bool),
    /// Commands built from the arguments and the reply (SPOP as `SREM` of what it popped,
    /// HINCRBYFLOAT as `HSET` of the new value, BLPOP as `LPOP`); `None` falls back to
    /// `State`.
    Rewrite(Rewriter),
}

/// Builds the recorded commands of a `Prop::Rewrite` row.
pub type Rewriter = fn(&[Bytes], &Reply) -> Option<Vec<Vec<Bytes>>>;

/// SPOP key [count] → SREM key member... (nothing popped: nothing to record).
pub fn rw_spop(argv: &[Bytes], reply: &Reply) -> Option<Vec<Vec<Bytes>>> {
    let key = argv.get(1)?.clone();
    let members: Vec<Bytes> = match reply {
        Reply::Bulk(m) => vec![m.clone()],
        Reply::Array(v) | Reply::Set(v) => v
            .iter()
            .map(|r| match r {
                Reply::Bulk(m) => Some(m.clone()),
                _ => None,
            })
            .collect::<Option<_>>()?,
        _ => return None,
    };
    let mut cmd = vec![Bytes::from_static(b"SREM"), key];
    cmd.extend(members);
    Some(vec![cmd])
}

/// SET without a relative expiry (EX/PX) is recorded as sent; with one, as the key's state
/// (`SET ... PXAT`).
pub fn set_is_verbatim(argv: &[Bytes]) -> bool {
    !argv
        .iter()
        .skip(3)
        .any(|a| a.eq_ignore_ascii_case(b"ex") || a.eq_ignore_ascii_case(b"px"))
}

/// HINCRBYFLOAT key field incr → HSET key field new-value.
pub fn rw_hincrbyfloat(argv: &[Bytes], reply: &Reply) -> Option<Vec<Vec<Bytes>>> {
    let Reply::Bulk(v) = reply else { return None };
    Some(vec![vec![
        Bytes::from_static(b"HSET"),
        argv.get(1)?.clone(),
        argv.get(2)?.clone(),
        v.clone(),
    ]])
}

/// BLPOP/BRPOP served at once → LPOP/RPOP of the key that answered.
pub fn rw_bpop(argv: &[Bytes], reply: &Reply) -> Option<Vec<Vec<Bytes>>> {
    let Reply::Array(v) = reply else { return None };
    let Some(Reply::Bulk(key)) = v.first() else {
        return None;
    };
    let left = argv.first()?.eq_ignore_ascii_case(b"blpop");
    let name: &'static [u8] = if left { b"LPOP" } else { b"RPOP" };
    Some(vec![vec![Bytes::from_static(name), key.clone()]])
}

/// BZPOPMIN/BZPOPMAX served at once → ZREM of the member that answered.
pub fn rw_bzpop(_argv: &[Bytes], reply: &Reply) -> Option<Vec<Vec<Bytes>>> {
    let Reply::Array(v) = reply else { return None };
    let (Some(Reply::Bulk(key)), Some(Reply::Bulk(m))) = (v.first(), v.get(1)) else {
        return None;
    };
    Some(vec![vec![
        Bytes::from_static(b"ZREM"),
        key.clone(),
        m.clone(),
    ]])
}

/// A multi-shard write's mark: the id shared by its parts and how many shards it spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxTag {
    pub id: u64,
    pub parts: u32,
}

/// One effect, or a run of untagged effects on one database: commands in RESP form, for
/// database `db`. Consecutive untagged commands of one database are one record (a run), so
/// a write costs no `Bytes` of its own and consumers handle one record per loop pass;
/// offsets are record boundaries only at a run's start.
pub struct Record {
    /// Offset of the record's first byte.
    pub offset: u64,
    pub db: u32,
    pub tx: Option<TxTag>,
    pub cmd: Bytes,
}

/// A consumer asked for an offset the backlog no longer holds (or never held).
#[derive(Debug, PartialEq, Eq)]
pub struct OutOfRange {
    pub first: u64,
    pub next: u64,
}

/// The record of a transaction part that changed nothing on its shard.
pub const MARKER: &[u8] = b"*1\r\n$4\r\nPING\r\n";

/// Heap per record besides its command bytes (the deque slot and the `Bytes` header).
const REC_OVERHEAD: usize = std::mem::size_of::<Record>() + 32;

impl Drop for Journal {
    fn drop(&mut self) {
        HELD_TOTAL.fetch_sub(self.published as u64, Ordering::Relaxed);
    }
}

pub struct Journal {
    recs: VecDeque<Record>,
    /// Offset of the next record.
    next: u64,
    /// Bytes held by `recs`.
    held: usize,
    /// Backlog bound in bytes (the newest record is always kept).
    cap: usize,
    /// Keys touched by a cross-shard step or a `State` command, not yet recorded, with the
    /// transaction tag in force when they were touched.
    pending: Vec<(u32, Bytes, Option<TxTag>)>,
    /// The multi-shard command holding this shard's lock, if any.
    pub tx: Option<TxTag>,
    /// Records written since the journal started (INFO).
    pub written: u64,
    /// The transaction in `tx` has written a record here.
    tx_wrote: bool,
    /// The running command is recorded as sent: `touched` notes that something changed
    /// without copying keys.
    keys_off: bool,
    touched_any: bool,
    /// A consumer that must see every record (the append-only file) has read up to here:
    /// the backlog bound never drops a record at or after it.
    pub pin: Option<u64>,
    /// Where records are encoded: each record is split off as a view of this block, so a
    /// record costs no allocation of its own (a block is freed once its last record is).
    chunk: BytesMut,
    /// What this journal has added to `HELD_TOTAL` (`publish_held`).
    published: usize,
    /// The untagged run being encoded at the end of `chunk` (its offset and database): not
    /// a record until `seal` splits it off, which every reader does first.
    open: Option<(u64, u32)>,
}

/// Bytes of one journal block (records larger than this get a block of their own).
const CHUNK: usize = 64 << 10;
/// How far past the end of the open run a record prefetches the block for writing: two
/// lines ahead, so the next records find theirs already fetched.
const AHEAD: usize = 128;

impl Journal {
    pub fn new(cap: usize, start: u64) -> Journal {
        Journal {
            recs: VecDeque::new(),
            next: start,
            held: 0,
            cap: cap.max(1),
            pending: Vec::new(),
            tx: None,
            written: 0,
            tx_wrote: false,
            pin: None,
            keys_off: false,
            touched_any: false,
            chunk: BytesMut::new(),
            published: 0,
            open: None,
        }
    }

    /// Offset of the oldest record held.
    pub fn first(&self) -> u64 {
        match (self.recs.front(), self.open) {
            (Some(r), _) => r.offset,
            (None, Some((off, _))) => off,
            (None, None) => self.next,
        }
    }

    /// Keys touched and not recorded yet.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Offset the next record will get.
    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn held_bytes(&self) -> usize {
        self.held
    }

    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
        self.trim();
    }

    fn push(&mut self, db: usize, tx: Option<TxTag>, cmd: Vec<u8>) {
        if tx.is_none() {
            let at = self.open_run(db, cmd.len());
            self.chunk.extend_from_slice(&cmd);
            self.grew(at);
            return;
        }
        self.push_bytes(db, tx, Bytes::from(cmd));
    }

    /// Makes room for `size` more bytes of an untagged record of `db` at the end of the
    /// open run (sealing the run first when its database differs or the block is full);
    /// returns the block's length before the record.
    #[inline]
    fn open_run(&mut self, db: usize, size: usize) -> usize {
        if self.open.is_some_and(|(_, d)| d != db as u32) {
            self.seal();
        }
        if self.chunk.capacity() - self.chunk.len() < size {
            self.seal();
            self.chunk = BytesMut::with_capacity(size.max(CHUNK));
        }
        if self.open.is_none() {
            self.open = Some((self.next, db as u32));
        }
        self.chunk.len()
    }

    /// The open run grew by one record, from `at` in the block.
    #[inline]
    fn grew(&mut self, at: usize) {
        let len = self.chunk.len() - at;
        self.next += len as u64;
        self.held += len;
        self.written += 1;
        if self.held > self.cap {
            // The bound holds for runs too (readers seal once a loop pass).
            self.seal();
        }
    }

    /// Splits the open run off as a record: before any reader looks at the records, and
    /// before a tagged record is appended.
    pub fn seal(&mut self) {
        if let Some((offset, db)) = self.open.take() {
            let cmd = self.chunk.split().freeze();
            self.recs.push_back(Record {
                offset,
                db,
                tx: None,
                cmd,
            });
            self.trim();
        }
    }

    fn push_bytes(&mut self, db: usize, tx: Option<TxTag>, cmd: Bytes) {
        self.seal();
        let len = cmd.len();
        if tx.is_some() && tx == self.tx {
            self.tx_wrote = true;
        }
        self.recs.push_back(Record {
            offset: self.next,
            db: db as u32,
            tx,
            cmd,
        });
        self.next += len as u64;
        self.held += len;
        self.written += 1;
        self.trim();
    }

    fn trim(&mut self) {
        while self.held > self.cap
            && self.recs.len() > 1
            && self
                .recs
                .front()
                .is_some_and(|r| self.pin.is_none_or(|p| r.offset < p))
        {
            if let Some(r) = self.recs.pop_front() {
                self.held -= r.cmd.len();
            }
        }
        self.publish_held();
    }

    /// Brings `HELD_TOTAL` up to date with this journal once it is off by a block or more
    /// (one shared atomic per block of records instead of two per record).
    #[inline]
    fn publish_held(&mut self) {
        let now = self.held + self.recs.len() * REC_OVERHEAD;
        if now.abs_diff(self.published) >= CHUNK {
            if now > self.published {
                HELD_TOTAL.fetch_add((now - self.published) as u64, Ordering::Relaxed);
            } else {
                HELD_TOTAL.fetch_sub((self.published - now) as u64, Ordering::Relaxed);
            }
            self.published = now;
        }
    }

    /// Records a command given as its arguments.
    pub fn emit(&mut self, db: usize, tx: Option<TxTag>, args: &[&[u8]]) {
        self.emit_args(db, tx, args);
    }

    /// Records a command given as its arguments (`Bytes`, as parsed).
    pub fn emit_argv(&mut self, db: usize, tx: Option<TxTag>, argv: &[Bytes]) {
        self.emit_args(db, tx, argv);
    }

    /// An untagged record joins the open run; a tagged one is a record of its own.
    #[inline]
    fn emit_args<A: AsRef<[u8]>>(&mut self, db: usize, tx: Option<TxTag>, args: &[A]) {
        // An upper bound is enough here (counting digits per argument cost 1% of a SET
        // with a replica attached): 20 digits and 5 bytes of framing at most per header.
        let size = 25 + args.iter().map(|a| 25 + a.as_ref().len()).sum::<usize>();
        if tx.is_none() {
            let at = self.open_run(db, size);
            self.encode_args(args);
            self.grew(at);
            // The next records' lines, fetched for writing while this command finishes.
            if let Some(next) = self.chunk.spare_capacity_mut().get(AHEAD) {
                crate::runtime::prefetch::prefetch_write(next.as_ptr().cast());
            }
            return;
        }
        self.seal();
        if self.chunk.capacity() - self.chunk.len() < size {
            self.chunk = BytesMut::with_capacity(size.max(CHUNK));
        }
        self.encode_args(args);
        let cmd = self.chunk.split().freeze();
        self.push_bytes(db, tx, cmd);
    }

    /// Encodes a RESP array of bulk strings at the end of the block (which has room).
    #[inline]
    fn encode_args<A: AsRef<[u8]>>(&mut self, args: &[A]) {
        crate::protocol::reply::header(&mut self.chunk, b'*', args.len());
        for a in args {
            let a = a.as_ref();
            crate::protocol::reply::header(&mut self.chunk, b'$', a.len());
            self.chunk.extend_from_slice(a);
            self.chunk.extend_from_slice(b"\r\n");
        }
    }

    /// Where the record at `from` stands in the backlog, or where the backlog stands if it
    /// does not hold a record boundary at `from` (`from == next` is the end).
    fn index_of(&self, from: u64) -> Result<usize, OutOfRange> {
        let (first, next) = (self.first(), self.next);
        if from < first || from > next {
            return Err(OutOfRange { first, next });
        }
        let start = self.recs.partition_point(|r| r.offset < from);
        let at_boundary = match self.recs.get(start) {
            Some(r) => r.offset == from,
            None => from == next,
        };
        if !at_boundary {
            return Err(OutOfRange { first, next });
        }
        Ok(start)
    }

    /// Moves the records from `from` on out of the backlog (up to the first one of `open`,
    /// a transaction still running): for a consumer that keeps what it took (replication's
    /// hub keeps its own backlog), so nothing is copied and nothing is left to trim later.
    /// Records before `from` go too. Returns them and the offset after the last one.
    pub fn take_from(
        &mut self,
        from: u64,
        open: Option<TxTag>,
    ) -> Result<(Vec<Record>, u64), OutOfRange> {
        self.seal();
        let start = self.index_of(from)?;
        for r in self.recs.drain(..start) {
            self.held -= r.cmd.len();
        }
        let n = match open {
            Some(t) => self
                .recs
                .iter()
                .position(|r| r.tx == Some(t))
                .unwrap_or(self.recs.len()),
            None => self.recs.len(),
        };
        let out: Vec<Record> = self.recs.drain(..n).collect();
        let taken: usize = out.iter().map(|r| r.cmd.len()).sum();
        self.held -= taken;
        self.publish_held();
        let to = out.last().map_or(from, |r| r.offset + r.cmd.len() as u64);
        Ok((out, to))
    }

    /// The records from `from` on (at most `max`), or where the backlog stands if it does
    /// not hold `from`.
    /// The open run is not a record yet: readers `seal` first.
    pub fn read(&self, from: u64, max: usize) -> Result<Vec<&Record>, OutOfRange> {
        debug_assert!(self.open.is_none(), "read before seal");
        let start = self.index_of(from)?;
        Ok(self.recs.iter().skip(start).take(max).collect())
    }
}

/// Bytes of `args` encoded as a RESP array of bulk strings.
fn encoded_len<A: AsRef<[u8]>>(args: &[A]) -> usize {
    let digits = |n: usize| n.checked_ilog10().map_or(1, |d| d as usize + 1);
    3 + digits(args.len())
        + args
            .iter()
            .map(|a| 5 + digits(a.as_ref().len()) + a.as_ref().len())
            .sum::<usize>()
}

/// RESP array of bulk strings.
fn encode<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    out.reserve_exact(encoded_len(args));
    crate::protocol::reply::header(out, b'*', args.len());
    for a in args {
        crate::protocol::reply::encode_bulk(out, a.as_ref());
    }
}

/// Turns the journal on for this shard (idempotent), with a backlog of `cap` bytes.
pub fn enable(shard: &mut Shard, cap: usize) {
    match shard.journal.as_mut() {
        None => shard.journal = Some(Box::new(Journal::new(cap, 1))),
        // Every consumer gets at least the backlog it asked for.
        Some(j) if j.cap < cap => j.set_cap(cap),
        Some(_) => {}
    }
    for d in shard.dbs.iter_mut() {
        d.gone.get_or_insert_with(Vec::new);
    }
}

/// Turns it off and drops the backlog.
pub fn disable(shard: &mut Shard) {
    shard.journal = None;
    for d in shard.dbs.iter_mut() {
        d.gone = None;
    }
}

/// A multi-shard command takes this shard's lock: what it writes carries its tag.
pub fn begin_tx(shard: &mut Shard, tag: TxTag) {
    if shard.journal.is_none() {
        return;
    }
    flush(shard);
    if let Some(j) = shard.journal.as_mut() {
        j.tx = Some(tag);
        j.tx_wrote = false;
    }
}

/// It releases the lock. A shard it wrote nothing on still gets a record with its tag (a
/// `PING`, harmless wherever it is replayed), so a consumer knows every part arrived (the
/// tag's `parts` counts locked shards) and every record has its own offset.
pub fn end_tx(shard: &mut Shard) {
    if shard.journal.is_none() {
        return;
    }
    flush(shard);
    if let Some(j) = shard.journal.as_mut() {
        if let Some(tag) = j.tx.take() {
            if !j.tx_wrote {
                j.push(0, Some(tag), MARKER.to_vec());
            }
        }
        j.tx_wrote = false;
    }
}

/// Records a command that is not a key command (FLUSHALL, SWAPDB) after what is waiting.
pub fn record(shard: &mut Shard, db: usize, args: &[&[u8]]) {
    if shard.journal.is_none() {
        return;
    }
    flush(shard);
    if let Some(j) = shard.journal.as_mut() {
        let tx = j.tx;
        j.emit(db, tx, args);
    }
}

/// The running command changed something and is recorded as sent: notes it (what
/// `touched` would do for each of its keys) and says so; `false` when its keys are needed.
#[inline]
pub fn changed_as_sent(j: &mut Journal) -> bool {
    if j.keys_off {
        j.touched_any = true;
    }
    j.keys_off
}

/// A write changed `key` (the shard's `touch`): remember it until the step ends.
#[inline]
pub fn touched(j: &mut Journal, db: usize, key: &[u8]) {
    if j.keys_off {
        j.touched_any = true;
        return;
    }
    let tx = j.tx;
    if let Some(last) = j.pending.last() {
        if last.0 == db as u32 && last.1 == key && last.2 == tx {
            return;
        }
    }
    j.pending.push((db as u32, Bytes::copy_from_slice(key), tx));
}

/// A write's exact effect on one key, as a replayable command (`Shard::touch_effect`):
/// recorded now, after what is waiting, instead of the key's whole state at the step's
/// end. Inside a command recorded as sent, the command's own record already says it.
pub fn effect(shard: &mut Shard, db: usize, args: &[&[u8]]) {
    match shard.journal.as_mut() {
        None => return,
        Some(j) if j.keys_off => {
            j.touched_any = true;
            return;
        }
        Some(_) => {}
    }
    flush(shard);
    if let Some(j) = shard.journal.as_mut() {
        let tx = j.tx;
        j.emit(db, tx, args);
    }
}

/// Records what is waiting: deletions by expiry and eviction, then the state of every key
/// touched since the last flush. Called before and after each command and job.
pub fn flush(shard: &mut Shard) {
    let Some(j) = shard.journal.as_mut() else {
        return;
    };
    let tx = j.tx;
    let gone = GONE.with(|g| g.replace(false));
    for (i, d) in shard.dbs.iter_mut().enumerate().filter(|_| gone) {
        match d.gone.as_mut() {
            Some(g) if !g.is_empty() => {
                for k in g.drain(..) {
                    j.emit(i, tx, &[b"DEL", &k]);
                }
            }
            Some(_) => {}
            // A database replaced wholesale (a reload) starts recording again.
            None => d.gone = Some(Vec::new()),
        }
    }
    if j.pending.is_empty() {
        return;
    }
    let pending = std::mem::take(&mut j.pending);
    let now = shard.now_ms;
    for (db, key, tx) in &pending {
        let Some(d) = shard.dbs.get(*db as usize) else {
            continue;
        };
        let cmd = state_record(d.peek_entry(key, now), key);
        j.push(*db as usize, *tx, cmd);
    }
    let mut pending = pending;
    pending.clear();
    if j.pending.is_empty() {
        j.pending = pending;
    }
}

/// The command that recreates `key` as it stands.
fn state_record(entry: Option<(ValRef<'_>, u64)>, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match entry {
        None => encode(&mut out, &[b"DEL", key]),
        Some((ValRef::Str(v), 0)) => encode(&mut out, &[b"SET", key, v]),
        Some((ValRef::Str(v), at)) => encode(
            &mut out,
            &[b"SET", key, v, b"PXAT", at.to_string().as_bytes()],
        ),
        Some((val, at)) => {
            let payload = crate::persist::rdb::dump_payload(val, true);
            encode(
                &mut out,
                &[
                    b"RESTORE",
                    key,
                    at.to_string().as_bytes(),
                    &payload,
                    b"REPLACE",
                    b"ABSTTL",
                ],
            );
        }
    }
    out
}

/// After a key command ran on this shard: records its effect by the row's [`Prop`]. Keys it
/// touched are in `pending` (the WATCH signal); a write that changed nothing touched none.
/// Before a key command runs on this shard: what earlier steps touched is recorded first,
/// and a command recorded as sent does not copy the keys it touches.
#[inline]
pub fn before_command(shard: &mut Shard, spec: &CommandSpec, argv: &[Bytes]) {
    let Some(j) = shard.journal.as_mut() else {
        return;
    };
    if !j.pending.is_empty() {
        flush(shard);
    }
    if let Some(j) = shard.journal.as_mut() {
        j.keys_off = match spec.prop {
            Prop::Verbatim => true,
            Prop::VerbatimIf(f) => f(argv),
            _ => false,
        };
        j.touched_any = false;
    }
}

/// After a key command ran on this shard: records its effect by the row's [`Prop`]. Keys it
/// touched are in `pending` (the WATCH signal); a write that changed nothing touched none.
pub fn after_command(
    shard: &mut Shard,
    spec: &CommandSpec,
    db: usize,
    argv: &[Bytes],
    reply: &Reply,
) {
    let Some(j) = shard.journal.as_mut() else {
        return;
    };
    let as_sent = std::mem::take(&mut j.keys_off);
    let changed = std::mem::take(&mut j.touched_any) || !j.pending.is_empty();
    if !changed {
        // Only expiry or eviction may have happened.
        flush(shard);
        return;
    }
    if as_sent {
        let tx = j.tx;
        // Deletions the command's own lookups caused come first.
        flush(shard);
        if let Some(j) = shard.journal.as_mut() {
            j.emit_argv(db, tx, argv);
        }
        return;
    }
    match spec.prop {
        Prop::Rewrite(f) => {
            let Some(cmds) = (!reply.is_error()).then(|| f(argv, reply)).flatten() else {
                flush(shard);
                return;
            };
            let tx = j.tx;
            j.pending.clear();
            flush(shard);
            if let Some(j) = shard.journal.as_mut() {
                for c in cmds {
                    j.emit_argv(db, tx, &c);
                }
            }
        }
        Prop::Ttl => {
            let pending = std::mem::take(&mut j.pending);
            flush(shard);
            let now = shard.now_ms;
            for (kdb, key, tx) in pending {
                let at = shard
                    .dbs
                    .get(kdb as usize)
                    .and_then(|d| d.peek_entry(&key, now))
                    .map(|(_, at)| at);
                let Some(j) = shard.journal.as_mut() else {
                    return;
                };
                match at {
                    None => j.emit(kdb as usize, tx, &[b"DEL", &key]),
                    Some(0) => j.emit(kdb as usize, tx, &[b"PERSIST", &key]),
                    Some(t) => j.emit(
                        kdb as usize,
                        tx,
                        &[b"PEXPIREAT", &key, t.to_string().as_bytes()],
                    ),
                }
            }
        }
        Prop::State | Prop::Verbatim | Prop::VerbatimIf(_) => flush(shard),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_bytes_and_backlog_is_bounded() {
        let mut j = Journal::new(64, 1);
        j.emit(0, None, &[b"SET", b"k", b"v"]);
        // *3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n = 4 + 9 + 7 + 7
        assert_eq!(j.next(), 1 + 27);
        assert_eq!(j.first(), 1, "the open run counts");
        j.seal();
        assert_eq!(j.read(1, 10).map(|v| v.len()), Ok(1));
        assert_eq!(j.read(28, 10).map(|v| v.len()), Ok(0));
        assert!(j.read(2, 10).is_err(), "not a record boundary");
        for _ in 0..10 {
            j.emit(0, None, &[b"SET", b"k", b"v"]);
        }
        // One run past the bound is sealed and trimmed as it grows.
        assert!(j.held_bytes() <= 64 + 27, "{}", j.held_bytes());
        j.seal();
        assert!(j.first() > 1);
        assert_eq!(
            j.read(1, 10).err(),
            Some(OutOfRange {
                first: j.first(),
                next: j.next()
            })
        );
    }

    #[test]
    fn take_moves_records_out_up_to_an_open_transaction() {
        let mut j = Journal::new(1 << 20, 1);
        for _ in 0..3 {
            j.emit(0, None, &[b"SET", b"k", b"v"]);
            j.seal();
        }
        // Records before the cursor go, the rest move out.
        let (recs, to) = j.take_from(28, None).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![28, 55]
        );
        assert_eq!((to, j.first(), j.held_bytes()), (82, 82, 0));
        let tag = TxTag { id: 7, parts: 2 };
        j.emit(1, None, &[b"DEL", b"a"]);
        j.emit(1, Some(tag), &[b"DEL", b"b"]);
        let (recs, to) = j.take_from(82, Some(tag)).unwrap();
        assert_eq!(
            recs.len(),
            1,
            "stops at the open transaction's first record"
        );
        assert_eq!(j.first(), to);
        assert_eq!(j.read(to, 10).map(|v| v.len()), Ok(1));
        assert!(j.take_from(to + 1, None).is_err(), "not a record boundary");
        assert!(j.take_from(1, None).is_err(), "taken already");
    }

    #[test]
    fn untagged_records_of_one_database_are_one_run() {
        let mut j = Journal::new(1 << 20, 1);
        for _ in 0..3 {
            j.emit(0, None, &[b"SET", b"k", b"v"]);
        }
        j.emit(1, None, &[b"DEL", b"a"]);
        let tag = TxTag { id: 3, parts: 2 };
        j.emit(1, Some(tag), &[b"DEL", b"b"]);
        j.emit(1, Some(tag), &[b"DEL", b"c"]);
        j.emit(1, None, &[b"DEL", b"d"]);
        assert_eq!(j.written, 7);
        let (recs, to) = j.take_from(1, None).unwrap();
        assert_eq!(to, j.next());
        let shape: Vec<(u64, u32, Option<u64>, usize)> = recs
            .iter()
            .map(|r| (r.offset, r.db, r.tx.map(|t| t.id), r.cmd.len()))
            .collect();
        // 3 SETs (81 bytes), then a DEL on db 1 (20), two tagged DELs, one more DEL.
        assert_eq!(
            shape,
            vec![
                (1, 0, None, 81),
                (82, 1, None, 20),
                (102, 1, Some(3), 20),
                (122, 1, Some(3), 20),
                (142, 1, None, 20)
            ]
        );
        assert_eq!(
            &recs[0].cmd[..],
            &b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n".repeat(3)[..]
        );
        // State records join the run too; a new run starts where the last one was taken.
        j.push(0, None, b"*2\r\n$3\r\nDEL\r\n$1\r\nz\r\n".to_vec());
        j.emit(0, None, &[b"DEL", b"y"]);
        let (recs, _) = j.take_from(to, None).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!((recs[0].offset, recs[0].cmd.len()), (to, 40));
    }

    #[test]
    fn state_records() {
        assert_eq!(state_record(None, b"k"), b"*2\r\n$3\r\nDEL\r\n$1\r\nk\r\n");
        assert_eq!(
            state_record(Some((ValRef::Str(b"v"), 5)), b"k"),
            b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$4\r\nPXAT\r\n$1\r\n5\r\n"
        );
    }
}
