//! One logical database (SELECT index) of one shard: the keyspace, lazy and active expiry,
//! and hit/miss counters. Owned by one shard thread; knows nothing of RESP.
//!
//! Layout (about 70 bytes per small key, against ~220 for a boxed node + two `Bytes`):
//! - `table` ([`Dict`]): open addressing, one 8-byte slot (hash, loc) per key.
//! - `arena` ([`Arena`]): every entry as one run of bytes in a size-class page, no
//!   malloc header, no pointers:
//!   `[flags u8][atime u24][expire_at u64, ttl index u32: only if HAS_TTL]`
//!   `[key len varint][key][value len varint][value]`.
//!   Strings are stored inline. Other types (lists, hashes, ...) set `KIND_OBJ`, the two
//!   encoding bits name the type ([`ObjKind`]) and the value is the 4-byte index of the
//!   collection in that type's vector in `objs` ([`Objs`]: unboxed, 16 bytes a small hash
//!   or sorted set).
//! - `ttls`: the locs of the entries that have a TTL, dense, sampled by active expiry; an
//!   entry with a TTL records its index here, so removal is a swap_remove.
//!
//! Entries move (new loc) only when their size class changes; the table slot and the
//! `ttls` element follow.
//!
//! The 24 `atime` bits follow the shard's eviction policy (`access`): the seconds clock of
//! the last access under LRU (and no policy), or LFU's decay minutes and counter (see
//! `shard::evict`). Reads and writes refresh them unless the command runs for a client in
//! CLIENT NO-TOUCH mode (`no_touch`); OBJECT, EXISTS, TTL and friends never do.

use bytes::{Bytes, BytesMut};

use super::arena::{Arena, Loc};
use super::dict::Dict;
use super::evict::{self, Access, EvictCfg, Policy};
use super::objs::{ObjKind, Objs};
use super::snapshot::{BigSave, DbSnap, Sink, SNAP_BIT, STREAM_CHUNK};
use super::value::{str_encoding, Exported, ObjMut, ObjRef, StrEnc, Value};
use crate::error::CmdError;
use crate::persist::rdb::{PartWriter, ValRef};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::types::hash::Hash;
use crate::types::list::List;
use crate::types::set::Set;
use crate::types::stream::Stream;
use crate::types::zset::ZSet;

const KIND_MASK: u8 = 0b11;
const KIND_STR: u8 = 0;
const KIND_OBJ: u8 = 1;
/// String entries: the [`StrEnc`] bits; object entries: the [`ObjKind`] bits.
const ENC_SHIFT: u8 = 2;
const HAS_TTL: u8 = 1 << 4;
/// Object entries: the third [`ObjKind`] bit (a stream); bit 5 is the snapshot's.
const OBJ_KIND_HI: u8 = 1 << 6;
/// Offset of the key length: after flags + atime, and after expire_at + ttl index.
const HEAD: usize = 4;
const HEAD_TTL: usize = 16;

pub struct Db {
    table: Dict,
    arena: Arena,
    /// Values that are not stored inline (non-string types), by type and index.
    objs: Objs,
    /// Locs of the entries with a TTL.
    ttls: Vec<Loc>,
    hasher: ahash::RandomState,
    pub stats: DbStats,
    /// Where the active expiry cycle resumes its walk of `ttls`.
    expire_cursor: usize,
    /// The chunk small values are copied into for replies (see `copy_out`).
    out: BytesMut,
    /// What the access bits mean (set by the shard when the policy changes).
    access: Access,
    /// Set for the command of a CLIENT NO-TOUCH client: reads leave the access bits alone.
    pub no_touch: bool,
    /// xorshift state for LFU's probabilistic increment.
    rng: u64,
    /// Keys deleted by lazy or active expiry or by eviction since the shard's journal last
    /// looked; `None` (nothing recorded, no cost) unless the journal is on.
    pub gone: Option<Vec<Bytes>>,
    /// The same deletions for keyspace notifications, and a read command's key misses,
    /// in the order they happened; `None` unless `expired`, `evicted` or `keymiss` events
    /// are on (see `shard::notify`).
    pub lost: Option<Vec<(Lost, Bytes)>>,
    /// `keymiss` events are on: a read lookup that misses is noted in `lost`.
    pub keymiss: bool,
    /// The same deletions for CLIENT TRACKING invalidations; `None` until a tracking
    /// client used this shard (see `shard::tracking`).
    pub track_lost: Option<Vec<Bytes>>,
    /// CLIENT PAUSE is on: expired keys are hidden from reads but not deleted, and active
    /// expiry waits, as Redis keeps keys during a pause (`server::pause`).
    pub frozen: bool,
    /// Replica mode (`repl`): expired keys are hidden from reads but never deleted by
    /// lazy or active expiry; the master's DEL is the only deletion, as on a Redis replica.
    pub replica: bool,
    /// The snapshot stepper's parity: entries whose `SNAP_BIT` differs are not yet in the
    /// running snapshot (see `shard::snapshot`).
    parity: u8,
    /// The running snapshot of this database, if any.
    pub snap: Option<Box<DbSnap>>,
    /// Set for a command from the master link: its keys are live whatever their TTL says
    /// (Redis's expireIfNeeded returns "not expired" for the master client), so the
    /// master's writes apply to the same keys they did on the master.
    pub master_view: bool,
}

/// Why a key shows up in `Db::lost`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Lost {
    Expired,
    Evicted,
    /// A read command looked it up and it was missing (Redis's `keymiss`).
    Miss,
}

#[derive(Default, Clone, Copy)]
pub struct DbStats {
    pub expired_keys: u64,
    pub hits: u64,
    pub misses: u64,
}

/// What TYPE, OBJECT and the TTL commands read about a key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta {
    pub type_name: &'static str,
    /// OBJECT ENCODING.
    pub encoding: &'static str,
    /// Absolute expiry in Unix milliseconds; 0 means none.
    pub expire_at: u64,
    /// Last access, Unix seconds, low 24 bits (Redis's LRU clock).
    pub atime: u32,
    /// An integer Redis would serve from its shared objects (OBJECT REFCOUNT).
    pub shared: bool,
}

impl Meta {
    /// OBJECT IDLETIME: seconds since the last access, modulo the 24-bit clock as Redis.
    pub fn idle_secs(&self, now_ms: u64) -> i64 {
        i64::from(clock(now_ms).wrapping_sub(self.atime) & 0xFF_FFFF)
    }
}

/// What SCAN, KEYS and RANDOMKEY see of an entry.
#[derive(Debug, Clone, Copy)]
pub struct KeyInfo {
    pub expire_at: u64,
    pub type_name: &'static str,
}

/// The 24-bit seconds clock kept per entry.
fn clock(now_ms: u64) -> u32 {
    (now_ms / 1000) as u32 & 0xFF_FFFF
}

// ---- entry encoding ----

fn varint_len(v: usize) -> usize {
    1 + (usize::BITS - 1 - (v | 1).leading_zeros()) as usize / 7
}

fn read_varint(b: &[u8], pos: &mut usize) -> usize {
    let mut v = 0usize;
    let mut shift = 0;
    while let Some(&x) = b.get(*pos) {
        *pos += 1;
        v |= usize::from(x & 0x7f) << shift;
        shift += 7;
        if x < 0x80 || shift >= usize::BITS {
            break;
        }
    }
    v
}

fn put(b: &mut [u8], pos: &mut usize, src: &[u8]) {
    if let Some(d) = b.get_mut(*pos..*pos + src.len()) {
        d.copy_from_slice(src);
    }
    *pos += src.len();
}

fn put_varint(b: &mut [u8], pos: &mut usize, mut v: usize) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            put(b, pos, &[byte]);
            return;
        }
        put(b, pos, &[byte | 0x80]);
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn encoded_len(klen: usize, vlen: usize, ttl: bool) -> usize {
    (if ttl { HEAD_TTL } else { HEAD }) + varint_len(klen) + klen + varint_len(vlen) + vlen
}

/// Writes a whole entry into `b` (at least `encoded_len` bytes).
fn write_entry(
    b: &mut [u8],
    flags: u8,
    atime: u32,
    ttl: Option<(u64, u32)>,
    key: &[u8],
    val: &[u8],
) {
    let mut p = 0;
    put(
        b,
        &mut p,
        &[flags | if ttl.is_some() { HAS_TTL } else { 0 }],
    );
    put(b, &mut p, &atime.to_le_bytes()[..3]);
    if let Some((at, tidx)) = ttl {
        put(b, &mut p, &at.to_le_bytes());
        put(b, &mut p, &tidx.to_le_bytes());
    }
    put_varint(b, &mut p, key.len());
    put(b, &mut p, key);
    put_varint(b, &mut p, val.len());
    put(b, &mut p, val);
}

/// A decoded entry, borrowing the arena.
struct View<'a> {
    flags: u8,
    atime: u32,
    expire_at: u64,
    key: &'a [u8],
    val: &'a [u8],
}

impl View<'_> {
    fn kind(&self) -> u8 {
        self.flags & KIND_MASK
    }

    fn enc(&self) -> StrEnc {
        StrEnc::from_bits(self.flags >> ENC_SHIFT)
    }

    fn obj_idx(&self) -> u32 {
        le_u32(self.val, 0)
    }

    fn obj_kind(&self) -> ObjKind {
        ObjKind::from_bits(self.flags >> ENC_SHIFT & 3 | (self.flags & OBJ_KIND_HI) >> 4)
    }
}

/// The flags of an object entry holding a `kind` collection.
fn obj_flags(kind: ObjKind) -> u8 {
    let k = kind.to_bits();
    KIND_OBJ | (k & 3) << ENC_SHIFT | (k & 4) << 4
}

fn head_len(flags: u8) -> usize {
    if flags & HAS_TTL != 0 {
        HEAD_TTL
    } else {
        HEAD
    }
}

#[inline]
fn key_of(b: &[u8]) -> &[u8] {
    let mut p = head_len(b.first().copied().unwrap_or(0));
    let klen = read_varint(b, &mut p);
    b.get(p..p + klen).unwrap_or_default()
}

fn view(b: &[u8]) -> View<'_> {
    let flags = b.first().copied().unwrap_or(0);
    let atime = le_u32(b, 0) >> 8;
    let ttl = flags & HAS_TTL != 0;
    let expire_at = if ttl { le_u64(b, 4) } else { 0 };
    let mut p = head_len(flags);
    let klen = read_varint(b, &mut p);
    let key = b.get(p..p + klen).unwrap_or_default();
    p += klen;
    let vlen = read_varint(b, &mut p);
    let val = b.get(p..p + vlen).unwrap_or_default();
    View {
        flags,
        atime,
        expire_at,
        key,
        val,
    }
}

/// Values up to this size are copied out through a shared chunk.
const OUT_SMALL: usize = 512;
const OUT_CHUNK: usize = 16 * 1024;

/// An owned copy of a value for a reply. Small values are appended to a 16 KiB chunk and
/// split off it, so a GET costs a memcpy and a reference count instead of a malloc and a
/// free; a chunk is freed when the last reply cut from it is gone.
fn copy_out(out: &mut BytesMut, v: &[u8]) -> Bytes {
    if v.len() > OUT_SMALL {
        return Bytes::copy_from_slice(v);
    }
    if out.capacity() < v.len() {
        *out = BytesMut::with_capacity(OUT_CHUNK);
    }
    out.extend_from_slice(v);
    out.split().freeze()
}

fn expire_of(b: &[u8]) -> u64 {
    if b.first().is_some_and(|f| f & HAS_TTL != 0) {
        le_u64(b, 4)
    } else {
        0
    }
}

fn atime_of(b: &[u8]) -> u32 {
    le_u32(b, 0) >> 8
}

fn set_atime(b: &mut [u8], bits: u32) {
    let t = bits.to_le_bytes();
    // Only write when the bits changed: a hot key read over and over in the same second
    // does not dirty its cache line.
    if let Some(d) = b.get_mut(1..4) {
        if d != &t[..3] {
            d.copy_from_slice(&t[..3]);
        }
    }
}

/// The keyspace hasher: seeded once per process from the kernel's random source, so key
/// names a client chooses cannot be aimed at one run of the table (Redis seeds its
/// siphash the same way). Every db of every shard shares the seed, so a stored hash means
/// the same thing wherever an entry moves.
fn key_hasher() -> ahash::RandomState {
    static SEEDS: std::sync::OnceLock<[u64; 4]> = std::sync::OnceLock::new();
    let s = SEEDS.get_or_init(|| {
        let mut seeds = [
            0x243f_6a88_85a3_08d3u64,
            0x1319_8a2e_0370_7344,
            0xa409_3822_299f_31d0,
            0x082e_fa98_ec4e_6c89,
        ];
        let mut buf = [0u8; 32];
        if crate::runtime::sys::random_bytes(&mut buf) {
            for (seed, c) in seeds.iter_mut().zip(buf.chunks_exact(8)) {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                *seed ^= u64::from_le_bytes(b);
            }
        }
        seeds
    });
    ahash::RandomState::with_seeds(s[0], s[1], s[2], s[3])
}

impl Default for Db {
    fn default() -> Self {
        Db {
            table: Dict::new(),
            arena: Arena::default(),
            objs: Objs::default(),
            ttls: Vec::new(),
            hasher: key_hasher(),
            stats: DbStats::default(),
            expire_cursor: 0,
            out: BytesMut::new(),
            access: Access::Lru,
            no_touch: false,
            rng: 0x9E37_79B9_7F4A_7C15,
            gone: None,
            lost: None,
            keymiss: false,
            track_lost: None,
            frozen: false,
            replica: false,
            master_view: false,
            parity: 0,
            snap: None,
        }
    }
}

impl Db {
    /// Sets what the access bits mean (the shard's policy changed between LRU and LFU).
    pub fn set_access(&mut self, a: Access) {
        self.access = a;
    }

    /// RESTORE's IDLETIME / FREQ (Redis's objectSetLRUOrLFU): under an LFU policy `freq`
    /// becomes the key's counter, otherwise `idle` seconds are taken off its access clock;
    /// the other one is ignored, as in Redis.
    pub fn seed_access(&mut self, key: &[u8], now: u64, idle: Option<u64>, freq: Option<u8>) {
        let bits = match (self.access, idle, freq) {
            (Access::Lfu { .. }, _, Some(f)) => evict::lfu_init(now) & !0xFF | u32::from(f),
            (Access::Lru, Some(i), _) => clock(now).wrapping_sub(i as u32) & 0xFF_FFFF,
            _ => return,
        };
        let h = self.hash(key);
        if let Some((_, loc)) = self.find_h(h, key) {
            set_atime(self.arena.get_mut(loc), bits);
        }
    }

    /// The access bits of a key created now.
    fn fresh_atime(&self, now: u64) -> u32 {
        match self.access {
            Access::Lru => clock(now),
            Access::Lfu { .. } => evict::lfu_init(now),
        }
    }

    /// The access bits after an access to an entry whose bits were `old`.
    fn touched_atime(&mut self, old: u32, now: u64) -> u32 {
        match self.access {
            Access::Lru => clock(now),
            Access::Lfu {
                log_factor,
                decay_time,
            } => {
                let mut x = self.rng;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.rng = x;
                let r = (x >> 11) as f64 / (1u64 << 53) as f64;
                evict::lfu_touch(old, now, log_factor, decay_time, r)
            }
        }
    }

    /// Refreshes the access bits of the entry at `loc` (an access by a command).
    fn touch_loc(&mut self, loc: Loc, now: u64) {
        let old = atime_of(self.arena.get(loc));
        let new = self.touched_atime(old, now);
        if new != old {
            set_atime(self.arena.get_mut(loc), new);
        }
    }

    /// Access bits for a write of `key` that found `slot`: an overwrite counts as an access
    /// (LFU keeps and bumps the old counter, as Redis's lookup-then-overwrite does); a new
    /// key starts fresh.
    fn write_atime(&mut self, slot: Option<(usize, Loc)>, now: u64) -> u32 {
        match slot {
            Some((_, loc)) if self.access != Access::Lru => {
                let old = atime_of(self.arena.get(loc));
                self.touched_atime(old, now)
            }
            _ => self.fresh_atime(now),
        }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Makes room for `n` more keys (a bulk load: the table is sized once).
    pub fn reserve(&mut self, n: usize) {
        self.table.reserve(self.table.len().saturating_add(n));
    }

    /// Number of keys with a TTL (INFO keyspace `expires=`).
    pub fn expires_len(&self) -> usize {
        self.ttls.len()
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u32 {
        self.hasher.hash_one(key) as u32
    }

    #[inline]
    fn find_h(&self, h: u32, key: &[u8]) -> Option<(usize, Loc)> {
        let arena = &self.arena;
        self.table.find(h, |loc| key_of(arena.get(loc)) == key)
    }

    /// First stage of a look-ahead over pipelined commands: hashes `key` (the hash `find`
    /// uses) and starts loading its table slot. Returns the hash for `prefetch_entry`.
    #[inline]
    pub fn prefetch_slot(&self, key: &[u8]) -> u32 {
        let h = self.hash(key);
        self.table.prefetch(h);
        h
    }

    /// Second stage: reads the slot `prefetch_slot` warmed and starts loading the entry it
    /// most likely names, so the command's `find` finds both in cache. Changes nothing.
    #[inline]
    pub fn prefetch_entry(&self, h: u32) {
        if let Some(loc) = self.table.peek(h) {
            self.arena.prefetch(loc);
        }
    }

    #[inline]
    fn find(&self, key: &[u8]) -> Option<(usize, Loc)> {
        self.find_h(self.hash(key), key)
    }

    fn expired(&self, loc: Loc, now: u64) -> bool {
        let at = expire_of(self.arena.get(loc));
        at != 0 && at <= now && !self.master_view
    }

    /// Deletes `key` if its TTL has passed. Returns true if it did.
    pub fn expire_if_needed(&mut self, key: &[u8], now: u64) -> bool {
        match self.find(key) {
            // A replica never deletes by expiry (reads hide the key instead).
            Some((pos, loc)) if self.expired(loc, now) && !self.replica && !self.frozen => {
                self.note_gone(loc);
                self.remove_at(pos, loc, true);
                self.stats.expired_keys += 1;
                true
            }
            _ => false,
        }
    }

    /// A lookup missed `key`: for a read command's (`count`), one more keyspace miss and,
    /// when `keymiss` events are on, a note for them (the only cost while they are off is
    /// this branch on the miss path).
    #[inline]
    fn missed(&mut self, key: &[u8], count: bool) {
        if count {
            self.stats.misses += 1;
            if self.keymiss {
                self.note_miss(key);
            }
        }
    }

    #[cold]
    fn note_miss(&mut self, key: &[u8]) {
        if let Some(l) = self.lost.as_mut() {
            l.push((Lost::Miss, Bytes::copy_from_slice(key)));
            crate::shard::notify::note_lost();
        }
    }

    /// A read command's check of `key` that does not go through a value (EXISTS, TYPE,
    /// the TTL family, TOUCH, DUMP, COPY, OBJECT): counts the hit or miss as Redis's
    /// lookupKeyReadWithFlags does, a miss noted for `keymiss` events if `notify`.
    pub fn count_read(&mut self, key: &[u8], found: bool, notify: bool) {
        if found {
            self.stats.hits += 1;
        } else if notify {
            self.missed(key, true);
        } else {
            self.stats.misses += 1;
        }
    }

    /// A read command's lookup of `key` before it peeks at the value (the set and sorted-set
    /// algebra): lazy expiry, then the hit or miss counted and a keymiss noted.
    pub fn read_probe(&mut self, key: &[u8], now: u64) {
        self.expire_if_needed(key, now);
        let found = self.peek_entry(key, now).is_some();
        self.count_read(key, found, true);
    }

    /// The live entry at `key` (lazy expiry), counting a hit or miss if `count`, and
    /// refreshing its access time if `touch`.
    fn lookup(&mut self, key: &[u8], now: u64, count: bool, touch: bool) -> Option<Loc> {
        let Some((pos, loc)) = self.find(key) else {
            self.missed(key, count);
            return None;
        };
        if self.expired(loc, now) {
            // A replica hides the key and waits for the master's DEL.
            if !self.replica && !self.frozen {
                self.note_gone(loc);
                self.remove_at(pos, loc, true);
                self.stats.expired_keys += 1;
            }
            self.missed(key, count);
            return None;
        }
        self.stats.hits += count as u64;
        if touch && !self.no_touch {
            self.touch_loc(loc, now);
        }
        Some(loc)
    }

    /// The string at `key` (lazy expiry, access time; hit/miss if `count`), in one pass
    /// over the entry: the hot path of GET.
    fn read_str(&mut self, key: &[u8], now: u64, count: bool) -> Result<Option<Bytes>, CmdError> {
        self.read_str_with(key, now, count, |v, out| copy_out(out, v))
    }

    /// GET straight into a connection's output: the bulk reply for the string at `key`
    /// (or the null for `resp`) is encoded into `out` with no intermediate copy. Same
    /// expiry, stats and access time as `get_str`.
    pub fn get_str_encoded(
        &mut self,
        key: &[u8],
        now: u64,
        resp: u8,
        out: &mut Vec<u8>,
    ) -> Result<(), CmdError> {
        let found = self.read_str_with(key, now, true, |v, _| {
            crate::protocol::reply::encode_bulk(out, v);
        })?;
        if found.is_none() {
            Reply::Null.encode(resp, out);
        }
        Ok(())
    }

    /// The lookup behind `read_str`: `f` gets the value (and the reply chunk) when `key`
    /// holds a live string.
    fn read_str_with<R>(
        &mut self,
        key: &[u8],
        now: u64,
        count: bool,
        f: impl FnOnce(&[u8], &mut BytesMut) -> R,
    ) -> Result<Option<R>, CmdError> {
        let Some((pos, loc)) = self.find(key) else {
            self.missed(key, count);
            return Ok(None);
        };
        let b = self.arena.get(loc);
        let at = expire_of(b);
        if at != 0 && at <= now && !self.master_view {
            if !self.replica && !self.frozen {
                self.note_gone(loc);
                self.remove_at(pos, loc, true);
                self.stats.expired_keys += 1;
            }
            self.missed(key, count);
            return Ok(None);
        }
        self.stats.hits += count as u64;
        let v = view(b);
        let stale = !self.no_touch && (self.access != Access::Lru || v.atime != clock(now));
        if v.kind() != KIND_STR {
            return Err(CmdError::WrongType);
        }
        let out = f(v.val, &mut self.out);
        if stale {
            self.touch_loc(loc, now);
        }
        Ok(Some(out))
    }

    /// The string at `key` (a copy), WRONGTYPE for other types. Counts a hit or miss and
    /// refreshes the access time, as a read command does.
    pub fn get_str(&mut self, key: &[u8], now: u64) -> Result<Option<Bytes>, CmdError> {
        self.read_str(key, now, true)
    }

    /// The string at `key` for a write command: lazy expiry and access time, no hit/miss.
    pub fn get_str_for_write(&mut self, key: &[u8], now: u64) -> Result<Option<Bytes>, CmdError> {
        self.read_str(key, now, false)
    }

    /// Runs `f` on the string at `key` without copying it (BITCOUNT, PFCOUNT...): lazy
    /// expiry, access time, and a hit or miss if `count` (a read command's lookup).
    pub fn with_str<R>(
        &mut self,
        key: &[u8],
        now: u64,
        count: bool,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, CmdError> {
        self.read_str_with(key, now, count, |v, _| f(v))
    }

    /// The string at `key` lent for an in-place write (SETBIT, BITFIELD, a dense HLL),
    /// first grown with zero bytes to at least `min_len` (Redis's sdsgrowzero). Lazy
    /// expiry and access time as a write; the string becomes `raw`, as Redis's
    /// dbUnshareStringValue makes it. `None` if the key is missing.
    ///
    /// No copy of the value while it fits its slot. Growing past the slot moves the entry
    /// once into a slot with room to spare (up to 1 MiB more for oversized entries, as
    /// sdsMakeRoomFor's greedy growth), so a run of growing writes copies the value
    /// O(log n) times, not once per write.
    pub fn str_mut(
        &mut self,
        key: &[u8],
        now: u64,
        min_len: usize,
    ) -> Result<Option<&mut [u8]>, CmdError> {
        let Some(mut loc) = self.lookup(key, now, false, true) else {
            return Ok(None);
        };
        self.pre_write(loc);
        let b = self.arena.get(loc);
        let flags = b.first().copied().unwrap_or(0);
        if flags & KIND_MASK != KIND_STR {
            return Err(CmdError::WrongType);
        }
        let mut p = head_len(flags);
        let klen = read_varint(b, &mut p);
        let vpos = p + klen;
        p = vpos;
        let vlen = read_varint(b, &mut p);
        let old_start = p;
        let len = vlen.max(min_len);
        let start = vpos + varint_len(len);
        if len > vlen {
            let need = start + len;
            if b.len() < need {
                // Move to a bigger slot: header and key as they are, then the value.
                let cap = if need > super::arena::MAX_CLASS_BYTES {
                    need + need.min(1 << 20)
                } else {
                    need
                };
                let old: Vec<u8> = b.get(..old_start + vlen).unwrap_or_default().to_vec();
                let new = self.arena.alloc(cap);
                let nb = self.arena.get_mut(new);
                if let (Some(d), Some(s)) = (nb.get_mut(..vpos), old.get(..vpos)) {
                    d.copy_from_slice(s);
                }
                if let (Some(d), Some(s)) = (nb.get_mut(start..start + vlen), old.get(old_start..))
                {
                    d.copy_from_slice(s);
                }
                if let Some((pos, _)) = self.find(key) {
                    self.table.set_loc(pos, new);
                }
                if flags & HAS_TTL != 0 {
                    if let Some(t) = self.ttls.get_mut(le_u32(&old, 12) as usize) {
                        *t = new;
                    }
                }
                self.arena.free(loc);
                loc = new;
            } else if start != old_start {
                // The length's varint grew a byte: shift the value right in its slot.
                let b = self.arena.get_mut(loc);
                b.copy_within(old_start..old_start + vlen, start);
            }
            let b = self.arena.get_mut(loc);
            let mut q = vpos;
            put_varint(b, &mut q, len);
            if let Some(tail) = b.get_mut(start + vlen..start + len) {
                tail.fill(0);
            }
        }
        let b = self.arena.get_mut(loc);
        if let Some(f) = b.first_mut() {
            *f = (*f & !(3 << ENC_SHIFT)) | StrEnc::Raw.to_bits() << ENC_SHIFT;
        }
        Ok(b.get_mut(start..start + len))
    }

    /// True if `key` exists (lazy expiry; no stats, access time untouched).
    pub fn exists(&mut self, key: &[u8], now: u64) -> bool {
        self.lookup(key, now, false, false).is_some()
    }

    /// True if `key` exists, refreshing its access time (TOUCH: even for a NO-TOUCH client,
    /// as Redis).
    pub fn touch(&mut self, key: &[u8], now: u64) -> bool {
        let no_touch = std::mem::replace(&mut self.no_touch, false);
        let found = self.lookup(key, now, false, true).is_some();
        self.no_touch = no_touch;
        found
    }

    /// Type, encoding, TTL and access time of `key`, without touching stats or access time.
    pub fn meta(&mut self, key: &[u8], now: u64) -> Option<Meta> {
        let loc = self.lookup(key, now, false, false)?;
        let v = view(self.arena.get(loc));
        if v.kind() != KIND_STR {
            let obj = self.objs.get(v.obj_kind(), v.obj_idx());
            return Some(Meta {
                type_name: obj.map_or("none", ObjRef::type_name),
                encoding: obj.map_or("raw", ObjRef::obj_encoding),
                expire_at: v.expire_at,
                atime: v.atime,
                shared: false,
            });
        }
        let s = v.val;
        let encoding = str_encoding(s, v.enc());
        Some(Meta {
            type_name: "string",
            encoding,
            expire_at: v.expire_at,
            atime: v.atime,
            shared: encoding == "int" && parse_i64(s).is_some_and(|n| (0..10000).contains(&n)),
        })
    }

    /// MEMORY USAGE: bytes held for `key` (its arena slot, its 8-byte table slot and, for a
    /// collection, the value's object slot and heap), without touching stats or access time.
    /// A big collection's elements are estimated from `samples` of them (0: all), as Redis.
    pub fn memory_usage(&mut self, key: &[u8], now: u64, samples: usize) -> Option<usize> {
        let loc = self.lookup(key, now, false, false)?;
        let entry = self.arena.get(loc);
        let v = view(entry);
        let mut bytes = entry.len() + 8;
        if v.kind() != KIND_STR {
            bytes += self
                .objs
                .get(v.obj_kind(), v.obj_idx())
                .map_or(0, |o| o.memory_usage(samples));
        }
        Some(bytes)
    }

    /// Stores the string `val` at `key`, replacing any value and setting the TTL to
    /// `expire_at` (0: none).
    pub fn set(&mut self, key: &[u8], val: &[u8], expire_at: u64, now: u64) {
        self.write_str(key, val, Some(expire_at), StrEnc::Auto, now);
    }

    /// Replaces the value but keeps the TTL (SET KEEPTTL, INCR, APPEND...).
    pub fn set_keep_ttl(&mut self, key: &[u8], val: &[u8], now: u64) {
        self.write_str(key, val, None, StrEnc::Auto, now);
    }

    /// Like `set_keep_ttl`, with the encoding OBJECT ENCODING will report (APPEND and
    /// SETRANGE make strings `raw`, INCRBYFLOAT never `int`).
    pub fn set_keep_ttl_enc(&mut self, key: &[u8], val: &[u8], enc: StrEnc, now: u64) {
        self.write_str(key, val, None, enc, now);
    }

    /// Stores any value, replacing `key` (the path of the non-string types): the key
    /// stays inline, a collection goes to `objs`; a string is stored inline as by `set`.
    pub fn set_value(&mut self, key: &[u8], val: Value, expire_at: u64, now: u64) {
        let (h, slot, atime) = self.replace_slot(key, now);
        match self.objs.insert(val) {
            Ok((kind, idx)) => {
                let flags = obj_flags(kind);
                self.store(h, slot, key, flags, &idx.to_le_bytes(), atime, expire_at);
            }
            Err(Value::Str(b)) => self.store(h, slot, key, KIND_STR, &b, atime, expire_at),
            Err(_) => {}
        }
    }

    /// `set_value` for a collection already out of its box (the RDB loader).
    pub fn set_unboxed(&mut self, key: &[u8], val: super::objs::Unboxed, expire_at: u64, now: u64) {
        let (h, slot, atime) = self.replace_slot(key, now);
        let (kind, idx) = self.objs.insert_unboxed(val);
        let flags = obj_flags(kind);
        self.store(h, slot, key, flags, &idx.to_le_bytes(), atime, expire_at);
    }

    /// Where a new value of `key` goes: its hash, its current slot (whose collection is
    /// dropped first) and the access time to store.
    fn replace_slot(&mut self, key: &[u8], now: u64) -> (u32, Option<(usize, Loc)>, u32) {
        let h = self.hash(key);
        let slot = self.find_h(h, key);
        if let Some((_, loc)) = slot {
            self.pre_write(loc);
            self.drop_obj(loc);
        }
        let atime = self.write_atime(slot, now);
        (h, slot, atime)
    }

    /// Stores a new empty collection of `kind` at `key` (no TTL), replacing any value.
    fn create(&mut self, key: &[u8], kind: ObjKind, now: u64) {
        let h = self.hash(key);
        let slot = self.find_h(h, key);
        if let Some((_, loc)) = slot {
            self.pre_write(loc);
            self.drop_obj(loc);
        }
        let atime = self.write_atime(slot, now);
        let idx = self.objs.insert_empty(kind);
        self.store(h, slot, key, obj_flags(kind), &idx.to_le_bytes(), atime, 0);
    }

    /// `set` of a key whose hash `prefetch_slot` returned (a bulk load hashes each key
    /// once, when it prefetches its slot).
    pub fn set_hashed(&mut self, h: u32, key: &[u8], val: &[u8], expire_at: u64, now: u64) {
        self.write_str_h(h, key, val, Some(expire_at), StrEnc::Auto, now);
    }

    fn write_str(&mut self, key: &[u8], val: &[u8], ttl: Option<u64>, enc: StrEnc, now: u64) {
        self.write_str_h(self.hash(key), key, val, ttl, enc, now);
    }

    #[inline]
    fn write_str_h(
        &mut self,
        h: u32,
        key: &[u8],
        val: &[u8],
        ttl: Option<u64>,
        enc: StrEnc,
        now: u64,
    ) {
        let slot = self.find_h(h, key);
        let at = match (ttl, slot) {
            (Some(at), _) => at,
            (None, Some((_, loc))) => expire_of(self.arena.get(loc)),
            (None, None) => 0,
        };
        if let Some((_, loc)) = slot {
            self.pre_write(loc);
            self.drop_obj(loc);
        }
        let flags = KIND_STR | enc.to_bits() << ENC_SHIFT;
        let atime = self.write_atime(slot, now);
        self.store(h, slot, key, flags, val, atime, at);
    }

    /// Writes an entry for `key` (hash `h`), replacing the one at `slot` if given: in place
    /// when the size class stays, else in a new slot that the table and `ttls` follow.
    #[allow(clippy::too_many_arguments)]
    fn store(
        &mut self,
        h: u32,
        slot: Option<(usize, Loc)>,
        key: &[u8],
        flags: u8,
        val: &[u8],
        atime: u32,
        at: u64,
    ) {
        let has = at != 0;
        // Written now: not part of a running snapshot (any old value was saved first).
        let flags = (flags & !SNAP_BIT) | self.parity;
        let len = encoded_len(key.len(), val.len(), has);
        match slot {
            Some((pos, old)) => {
                let b = self.arena.get(old);
                let (had, tidx) = (expire_of(b) != 0, le_u32(b, 12));
                let loc = if self.arena.fits(old, len) {
                    old
                } else {
                    let n = self.arena.alloc(len);
                    self.table.set_loc(pos, n);
                    n
                };
                let tidx = match (had, has) {
                    (true, true) => {
                        if let Some(t) = self.ttls.get_mut(tidx as usize) {
                            *t = loc;
                        }
                        tidx
                    }
                    (true, false) => {
                        self.ttl_remove(tidx);
                        0
                    }
                    (false, true) => {
                        self.ttls.push(loc);
                        (self.ttls.len() - 1) as u32
                    }
                    (false, false) => 0,
                };
                let ttl = has.then_some((at, tidx));
                write_entry(self.arena.get_mut(loc), flags, atime, ttl, key, val);
                if loc != old {
                    self.arena.free(old);
                }
            }
            None => {
                let loc = self.arena.alloc(len);
                let ttl = has.then(|| {
                    self.ttls.push(loc);
                    (at, (self.ttls.len() - 1) as u32)
                });
                write_entry(self.arena.get_mut(loc), flags, atime, ttl, key, val);
                self.table.insert(h, loc);
            }
        }
    }

    /// Drops `ttls[tidx]`, moving the last element into its place (and telling its entry).
    fn ttl_remove(&mut self, tidx: u32) {
        let i = tidx as usize;
        if i >= self.ttls.len() {
            return;
        }
        self.ttls.swap_remove(i);
        if let Some(&moved) = self.ttls.get(i) {
            if let Some(d) = self.arena.get_mut(moved).get_mut(12..16) {
                d.copy_from_slice(&tidx.to_le_bytes());
            }
        }
    }

    /// Drops the collection of an object entry (strings have none).
    fn drop_obj(&mut self, loc: Loc) {
        let b = self.arena.get(loc);
        if b.first().is_some_and(|f| f & KIND_MASK == KIND_OBJ) {
            let v = view(b);
            self.objs.remove(v.obj_kind(), v.obj_idx());
        }
    }

    /// Sets the encoding flag of an existing string (no expiry check).
    pub fn set_enc(&mut self, key: &[u8], enc: StrEnc) {
        if let Some((_, loc)) = self.find(key) {
            if let Some(f) = self.arena.get_mut(loc).first_mut() {
                if *f & KIND_MASK == KIND_STR {
                    *f = (*f & !(3 << ENC_SHIFT)) | enc.to_bits() << ENC_SHIFT;
                }
            }
        }
    }

    /// Sets or clears (0) the TTL of an existing key. Returns false if the key is missing.
    pub fn set_expire(&mut self, key: &[u8], expire_at: u64) -> bool {
        let h = self.hash(key);
        let Some((pos, loc)) = self.find_h(h, key) else {
            return false;
        };
        self.pre_write(loc);
        let b = self.arena.get(loc);
        if expire_at != 0 && expire_of(b) != 0 {
            // Same layout: overwrite the time in place.
            if let Some(d) = self.arena.get_mut(loc).get_mut(4..12) {
                d.copy_from_slice(&expire_at.to_le_bytes());
            }
            return true;
        }
        // The header grows or shrinks: rewrite from a copy of the entry.
        let copy = b.to_vec();
        let v = view(&copy);
        let flags = v.flags & !HAS_TTL;
        self.store(h, Some((pos, loc)), v.key, flags, v.val, v.atime, expire_at);
        true
    }

    /// Deletes `key` (no expiry check). Returns true if it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.find(key) {
            Some((pos, loc)) => {
                self.remove_at(pos, loc, true);
                true
            }
            None => false,
        }
    }

    /// UNLINK: deletes `key` as `remove` does, handing a big collection to the lazy-free
    /// thread instead of freeing it here (`shard::lazyfree`).
    pub fn unlink(&mut self, key: &[u8]) -> bool {
        let Some((pos, loc)) = self.find(key) else {
            return false;
        };
        self.pre_write(loc);
        let b = self.arena.get(loc);
        if b.first().is_some_and(|f| f & KIND_MASK == KIND_OBJ) {
            let v = view(b);
            if let Some(val) = self.objs.take(v.obj_kind(), v.obj_idx()) {
                super::lazyfree::free_value(val);
            }
        }
        self.remove_at(pos, loc, false);
        true
    }

    /// Records the key at `loc` as deleted by expiry or eviction, when the journal is on.
    #[inline]
    fn note_gone(&mut self, loc: Loc) {
        if let Some(g) = self.gone.as_mut() {
            g.push(Bytes::copy_from_slice(key_of(self.arena.get(loc))));
            crate::shard::journal::note_gone();
        }
        if let Some(l) = self.lost.as_mut() {
            l.push((
                Lost::Expired,
                Bytes::copy_from_slice(key_of(self.arena.get(loc))),
            ));
            crate::shard::notify::note_lost();
        }
        if let Some(t) = self.track_lost.as_mut() {
            t.push(Bytes::copy_from_slice(key_of(self.arena.get(loc))));
        }
    }

    /// The value and expiry (0: none) at `key` as it stands, without lazy expiry, access
    /// time or statistics (`None` when missing or logically expired): the journal's view.
    pub fn peek_entry(&self, key: &[u8], now: u64) -> Option<(ValRef<'_>, u64)> {
        let (_, loc) = self.find(key)?;
        let v = view(self.arena.get(loc));
        if v.expire_at != 0 && v.expire_at <= now {
            return None;
        }
        if v.kind() == KIND_STR {
            Some((ValRef::Str(v.val), v.expire_at))
        } else {
            let o = self.objs.get(v.obj_kind(), v.obj_idx())?;
            Some((ValRef::Obj(o), v.expire_at))
        }
    }

    fn remove_at(&mut self, pos: usize, loc: Loc, drop_obj: bool) {
        self.pre_write(loc);
        let b = self.arena.get(loc);
        if expire_of(b) != 0 {
            let tidx = le_u32(b, 12);
            self.ttl_remove(tidx);
        }
        if drop_obj {
            self.drop_obj(loc);
        }
        self.arena.free(loc);
        self.table.remove_at(pos);
        // Entries the backward shift moved behind the snapshot's walk: saved now, while
        // they are certainly live (see `Dict::crossed`).
        if !self.table.crossed.is_empty() {
            for l in std::mem::take(&mut self.table.crossed) {
                self.snap_save(l);
            }
        }
    }

    fn export_at(&mut self, loc: Loc, take: bool) -> Exported {
        let v = view(self.arena.get(loc));
        let (val, enc) = if v.kind() == KIND_STR {
            (Some(Value::Str(Bytes::copy_from_slice(v.val))), v.enc())
        } else if take {
            (self.objs.take(v.obj_kind(), v.obj_idx()), StrEnc::Auto)
        } else {
            let obj = self.objs.get(v.obj_kind(), v.obj_idx());
            (obj.map(ObjRef::to_value), StrEnc::Auto)
        };
        Exported {
            val: val.unwrap_or(Value::Str(Bytes::new())),
            expire_at: v.expire_at,
            atime: v.atime,
            enc,
        }
    }

    /// A copy of the live entry at `key` (COPY, cross-shard RENAME), no stats.
    pub fn export(&mut self, key: &[u8], now: u64) -> Option<Exported> {
        let loc = self.lookup(key, now, false, false)?;
        Some(self.export_at(loc, false))
    }

    /// Removes `key` and returns its entry (no expiry check: callers looked first).
    pub fn take(&mut self, key: &[u8]) -> Option<Exported> {
        let (pos, loc) = self.find(key)?;
        self.pre_write(loc);
        let e = self.export_at(loc, true);
        self.remove_at(pos, loc, false);
        Some(e)
    }

    /// Stores an exported entry as it is (RENAME/COPY/MOVE keep the TTL), replacing `key`.
    pub fn import(&mut self, key: &[u8], e: Exported) {
        let h = self.hash(key);
        let slot = self.find_h(h, key);
        if let Some((_, loc)) = slot {
            self.pre_write(loc);
            self.drop_obj(loc);
        }
        match self.objs.insert(e.val) {
            Ok((kind, idx)) => {
                let bytes = idx.to_le_bytes();
                self.store(h, slot, key, obj_flags(kind), &bytes, e.atime, e.expire_at);
            }
            Err(Value::Str(b)) => {
                let flags = KIND_STR | e.enc.to_bits() << ENC_SHIFT;
                self.store(h, slot, key, flags, &b, e.atime, e.expire_at);
            }
            Err(_) => {}
        }
    }

    /// The collection at `key` for a command (lazy expiry; hit/miss if `count`, access
    /// time refreshed): `Ok(None)` when missing, WRONGTYPE for a string.
    fn obj_mut(
        &mut self,
        key: &[u8],
        now: u64,
        count: bool,
    ) -> Result<Option<ObjMut<'_>>, CmdError> {
        let Some(loc) = self.lookup(key, now, count, true) else {
            return Ok(None);
        };
        if !count {
            // A write command's access: the snapshot keeps the value as it is now.
            self.pre_write(loc);
        }
        let v = view(self.arena.get(loc));
        if v.kind() == KIND_STR {
            return Err(CmdError::WrongType);
        }
        let (kind, idx) = (v.obj_kind(), v.obj_idx());
        Ok(self.objs.get_mut(kind, idx))
    }

    /// The collection at `key` without side effects (an expired key reads as missing).
    fn obj_ref(&self, key: &[u8], now: u64) -> Result<Option<ObjRef<'_>>, CmdError> {
        let Some((_, loc)) = self.find(key) else {
            return Ok(None);
        };
        if self.expired(loc, now) {
            return Ok(None);
        }
        let v = view(self.arena.get(loc));
        if v.kind() == KIND_STR {
            return Err(CmdError::WrongType);
        }
        Ok(self.objs.get(v.obj_kind(), v.obj_idx()))
    }

    /// The hash at `key` for a read command (counts a hit or miss), WRONGTYPE for others.
    pub fn get_hash(&mut self, key: &[u8], now: u64) -> Result<Option<&Hash>, CmdError> {
        match self.obj_mut(key, now, true)? {
            None => Ok(None),
            Some(ObjMut::Hash(h)) => Ok(Some(h)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The hash at `key` for a write command, WRONGTYPE for other types.
    pub fn get_hash_mut(&mut self, key: &[u8], now: u64) -> Result<Option<&mut Hash>, CmdError> {
        match self.obj_mut(key, now, false)? {
            None => Ok(None),
            Some(ObjMut::Hash(h)) => Ok(Some(h)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The hash at `key`, created empty when missing; WRONGTYPE for other types. A caller
    /// that may leave it empty must call `remove_if_empty`.
    pub fn hash_or_create(&mut self, key: &[u8], now: u64) -> Result<&mut Hash, CmdError> {
        if self.get_hash_mut(key, now)?.is_none() {
            self.create(key, ObjKind::Hash, now);
        }
        self.get_hash_mut(key, now)?.ok_or(CmdError::WrongType)
    }

    /// The set at `key` for a read command (counts a hit or miss), WRONGTYPE for others.
    pub fn get_set(&mut self, key: &[u8], now: u64) -> Result<Option<&Set>, CmdError> {
        match self.obj_mut(key, now, true)? {
            None => Ok(None),
            Some(ObjMut::Set(s)) => Ok(Some(s)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The set at `key` for a write command, WRONGTYPE for other types.
    pub fn get_set_mut(&mut self, key: &[u8], now: u64) -> Result<Option<&mut Set>, CmdError> {
        match self.obj_mut(key, now, false)? {
            None => Ok(None),
            Some(ObjMut::Set(s)) => Ok(Some(s)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The set at `key`, created empty when missing; WRONGTYPE for other types.
    pub fn set_or_create(&mut self, key: &[u8], now: u64) -> Result<&mut Set, CmdError> {
        if self.get_set_mut(key, now)?.is_none() {
            self.create(key, ObjKind::Set, now);
        }
        self.get_set_mut(key, now)?.ok_or(CmdError::WrongType)
    }

    /// The set at `key` without side effects (multi-key reads borrow several at once;
    /// callers run `expire_if_needed` on each key first). WRONGTYPE for other types.
    pub fn peek_set(&self, key: &[u8], now: u64) -> Result<Option<&Set>, CmdError> {
        match self.obj_ref(key, now)? {
            None => Ok(None),
            Some(ObjRef::Set(s)) => Ok(Some(s)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The collection at `key` without side effects (multi-key reads borrow several at
    /// once; callers run `expire_if_needed` on each key first). WRONGTYPE for a string.
    pub fn peek_value(&self, key: &[u8], now: u64) -> Result<Option<ObjRef<'_>>, CmdError> {
        self.obj_ref(key, now)
    }

    /// The list at `key` for a read command (counts a hit or miss), WRONGTYPE for others.
    pub fn get_list(&mut self, key: &[u8], now: u64) -> Result<Option<&List>, CmdError> {
        match self.obj_mut(key, now, true)? {
            None => Ok(None),
            Some(ObjMut::List(l)) => Ok(Some(l)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The list at `key` for a write command, WRONGTYPE for other types.
    pub fn get_list_mut(&mut self, key: &[u8], now: u64) -> Result<Option<&mut List>, CmdError> {
        match self.obj_mut(key, now, false)? {
            None => Ok(None),
            Some(ObjMut::List(l)) => Ok(Some(l)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The list at `key`, created empty when missing; WRONGTYPE for other types. A caller
    /// that may leave it empty must call `remove_if_empty`.
    pub fn list_or_create(&mut self, key: &[u8], now: u64) -> Result<&mut List, CmdError> {
        if self.get_list_mut(key, now)?.is_none() {
            self.create(key, ObjKind::List, now);
        }
        self.get_list_mut(key, now)?.ok_or(CmdError::WrongType)
    }

    /// The stream at `key` for a read command (counts a hit or miss), WRONGTYPE for others.
    pub fn get_stream(&mut self, key: &[u8], now: u64) -> Result<Option<&Stream>, CmdError> {
        match self.obj_mut(key, now, true)? {
            None => Ok(None),
            Some(ObjMut::Stream(x)) => Ok(Some(x)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The stream at `key` for a write command, WRONGTYPE for other types.
    pub fn get_stream_mut(
        &mut self,
        key: &[u8],
        now: u64,
    ) -> Result<Option<&mut Stream>, CmdError> {
        match self.obj_mut(key, now, false)? {
            None => Ok(None),
            Some(ObjMut::Stream(x)) => Ok(Some(x)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The stream at `key`, created empty when missing (streams stay when empty).
    pub fn stream_or_create(&mut self, key: &[u8], now: u64) -> Result<&mut Stream, CmdError> {
        if self.get_stream_mut(key, now)?.is_none() {
            self.create(key, ObjKind::Stream, now);
        }
        self.get_stream_mut(key, now)?.ok_or(CmdError::WrongType)
    }

    /// The sorted set at `key` for a read command (counts a hit or miss), WRONGTYPE for others.
    pub fn get_zset(&mut self, key: &[u8], now: u64) -> Result<Option<&ZSet>, CmdError> {
        match self.obj_mut(key, now, true)? {
            None => Ok(None),
            Some(ObjMut::ZSet(z)) => Ok(Some(z)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The sorted set at `key` for SORT: a read (counts a hit or miss) that may change its
    /// encoding (`ZSet::convert_for_sort`), WRONGTYPE for other types.
    pub fn get_zset_for_sort(
        &mut self,
        key: &[u8],
        now: u64,
    ) -> Result<Option<&mut ZSet>, CmdError> {
        match self.obj_mut(key, now, true)? {
            None => Ok(None),
            Some(ObjMut::ZSet(z)) => Ok(Some(z)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The sorted set at `key` for a write command, WRONGTYPE for other types.
    pub fn get_zset_mut(&mut self, key: &[u8], now: u64) -> Result<Option<&mut ZSet>, CmdError> {
        match self.obj_mut(key, now, false)? {
            None => Ok(None),
            Some(ObjMut::ZSet(z)) => Ok(Some(z)),
            Some(_) => Err(CmdError::WrongType),
        }
    }

    /// The sorted set at `key`, created empty when missing; WRONGTYPE for other types. A
    /// caller that may leave it empty must call `remove_if_empty`.
    pub fn zset_or_create(&mut self, key: &[u8], now: u64) -> Result<&mut ZSet, CmdError> {
        if self.get_zset_mut(key, now)?.is_none() {
            self.create(key, ObjKind::ZSet, now);
        }
        self.get_zset_mut(key, now)?.ok_or(CmdError::WrongType)
    }

    /// Deletes `key` if it holds an empty collection (Redis never keeps empty ones).
    /// Returns true if it did.
    pub fn remove_if_empty(&mut self, key: &[u8]) -> bool {
        let empty = matches!(self.obj_ref(key, 0), Ok(Some(o)) if o.is_empty());
        empty && self.remove(key)
    }

    /// FLUSHDB/FLUSHALL ASYNC: empties the database at once and frees its old contents on
    /// the lazy-free thread.
    pub fn clear_async(&mut self) {
        self.snap_finish();
        let keys = self.len() as u64;
        if keys == 0 {
            self.clear();
            return;
        }
        let old = (
            std::mem::take(&mut self.table),
            std::mem::take(&mut self.arena),
            std::mem::take(&mut self.objs),
            std::mem::take(&mut self.ttls),
        );
        self.expire_cursor = 0;
        super::lazyfree::free_later(old, keys);
    }

    pub fn clear(&mut self) {
        self.snap_finish();
        self.table.clear();
        self.arena = Arena::default();
        self.objs = Objs::default();
        self.ttls = Vec::new();
        self.expire_cursor = 0;
    }

    /// One step of active expiry: looks at up to `budget` keys with a TTL, resuming where
    /// the last step stopped, and deletes those whose time has passed. Returns how many.
    pub fn active_expire(&mut self, now: u64, budget: usize) -> usize {
        if self.replica || self.frozen {
            return 0;
        }
        let n = budget.min(self.ttls.len());
        let mut dead: Vec<Loc> = Vec::new();
        let mut c = self.expire_cursor;
        for _ in 0..n {
            if c >= self.ttls.len() {
                c = 0;
            }
            if let Some(&loc) = self.ttls.get(c) {
                if self.expired(loc, now) {
                    dead.push(loc);
                }
            }
            c += 1;
        }
        self.expire_cursor = c;
        for &loc in &dead {
            let h = self.hash(key_of(self.arena.get(loc)));
            if let Some((pos, _)) = self.table.find(h, |l| l == loc) {
                self.note_gone(loc);
                self.remove_at(pos, loc, true);
            }
        }
        self.stats.expired_keys += dead.len() as u64;
        dead.len()
    }

    fn info(&self, v: &View) -> KeyInfo {
        let type_name = if v.kind() == KIND_STR {
            "string"
        } else {
            self.objs
                .get(v.obj_kind(), v.obj_idx())
                .map_or("none", ObjRef::type_name)
        };
        KeyInfo {
            expire_at: v.expire_at,
            type_name,
        }
    }

    /// Visits the keys of one home bucket named by `cursor` (see [`Dict::scan`]) and
    /// returns the next cursor, 0 when done. Expired keys are visited too.
    pub fn scan(&self, cursor: u64, mut f: impl FnMut(&[u8], &KeyInfo)) -> u64 {
        self.table.scan(cursor, |loc| {
            let v = view(self.arena.get(loc));
            f(v.key, &self.info(&v));
        })
    }

    /// Every key (expired ones included), in table order.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &KeyInfo)) {
        for loc in self.table.iter() {
            let v = view(self.arena.get(loc));
            f(v.key, &self.info(&v));
        }
    }

    /// Every live key (expired at `now` skipped) with its value and expiry (absolute Unix
    /// ms, 0 = none), in table order: what a snapshot writes.
    pub fn for_each_value(&self, now: u64, mut f: impl FnMut(&[u8], ValRef<'_>, u64)) {
        for loc in self.table.iter() {
            let v = view(self.arena.get(loc));
            if v.expire_at != 0 && v.expire_at <= now {
                continue;
            }
            if v.kind() == KIND_STR {
                f(v.key, ValRef::Str(v.val), v.expire_at);
            } else if let Some(o) = self.objs.get(v.obj_kind(), v.obj_idx()) {
                f(v.key, ValRef::Obj(o), v.expire_at);
            }
        }
    }

    /// A pseudo-random key chosen from `seed`, with its expiry time (0: none).
    pub fn random(&self, seed: u64) -> Option<(Bytes, u64)> {
        let loc = self.table.random(seed)?;
        let v = view(self.arena.get(loc));
        Some((Bytes::copy_from_slice(v.key), v.expire_at))
    }

    // ---- eviction (see `shard::evict`) ----

    /// Arena bytes held but unused: new entries take them without allocating.
    pub fn spare_bytes(&self) -> usize {
        self.arena.spare_bytes()
    }

    /// Up to `n` random entries (slots), of all keys or only those with a TTL.
    pub fn sample(&self, volatile: bool, n: usize, seed: u64, out: &mut Vec<Loc>) {
        if volatile {
            let len = self.ttls.len() as u64;
            let mut s = seed;
            for _ in 0..n.min(self.ttls.len()) {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                if let Some(&loc) = self.ttls.get(((s >> 17) % len.max(1)) as usize) {
                    out.push(loc);
                }
            }
        } else {
            self.table.sample(seed, n, |loc| out.push(loc));
        }
    }

    /// One random entry of all keys or of those with a TTL.
    pub fn random_loc(&self, volatile: bool, seed: u64) -> Option<Loc> {
        if volatile {
            let n = self.ttls.len() as u64;
            (n > 0)
                .then(|| {
                    self.ttls
                        .get((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % n as usize)
                })
                .flatten()
                .copied()
        } else {
            self.table.random(seed)
        }
    }

    /// How good an eviction candidate the entry at `loc` is: higher goes first (idle
    /// seconds under LRU, 255 minus the decayed counter under LFU, nearness of the expiry
    /// under volatile-ttl).
    pub fn evict_score(&self, loc: Loc, cfg: EvictCfg, now: u64) -> u64 {
        let b = self.arena.get(loc);
        let bits = atime_of(b);
        match cfg.policy {
            Policy::VolatileTtl => u64::MAX - expire_of(b),
            p if p.is_lfu() => 255 - u64::from(evict::lfu_decayed(bits, now, cfg.lfu_decay_time)),
            _ => u64::from(clock(now).wrapping_sub(bits) & 0xFF_FFFF),
        }
    }

    /// The table position of the entry at `loc`, if `loc` still holds a live entry.
    fn pos_of(&self, loc: Loc) -> Option<usize> {
        let h = self.hash(key_of(self.arena.get(loc)));
        self.table.find(h, |l| l == loc).map(|(pos, _)| pos)
    }

    /// True if `loc` names an entry of this database (a sampled slot may have been freed).
    pub fn is_live(&self, loc: Loc) -> bool {
        self.pos_of(loc).is_some()
    }

    /// True if the entry at `loc` has a TTL.
    pub fn has_ttl(&self, loc: Loc) -> bool {
        expire_of(self.arena.get(loc)) != 0
    }

    /// Deletes the entry at `loc` (eviction) and returns its key, if it is live.
    pub fn evict_at(&mut self, loc: Loc) -> Option<Bytes> {
        let pos = self.pos_of(loc)?;
        let key = Bytes::copy_from_slice(key_of(self.arena.get(loc)));
        if let Some(g) = self.gone.as_mut() {
            g.push(key.clone());
            crate::shard::journal::note_gone();
        }
        if let Some(l) = self.lost.as_mut() {
            l.push((Lost::Evicted, key.clone()));
            crate::shard::notify::note_lost();
        }
        if let Some(t) = self.track_lost.as_mut() {
            t.push(key.clone());
        }
        self.remove_at(pos, loc, true);
        Some(key)
    }

    // ---- the snapshot stepper (see `shard::snapshot`) ----

    /// Starts a snapshot of this database as it is now (`now`: the moment's clock).
    pub fn snap_begin(&mut self, compress: bool, now: u64) {
        self.snap_begin_to(compress, now, None);
    }

    /// `snap_begin` whose records go to `sink` a few megabytes at a time (a BGSAVE's
    /// writer) instead of staying here until the end.
    pub fn snap_begin_to(&mut self, compress: bool, now: u64, sink: Option<Sink>) {
        self.parity ^= SNAP_BIT;
        let mut snap = DbSnap::new(compress, now);
        // The records take about what the entries take in the arena: one allocation up
        // front, not a doubling (a realloc and copy of the records so far) every so often.
        let whole = self
            .arena
            .reserved_bytes()
            .saturating_sub(self.arena.spare_bytes());
        let want = if sink.is_some() {
            whole.min(STREAM_CHUNK + STREAM_CHUNK / 4)
        } else {
            whole
        };
        snap.w.buf.reserve(want);
        snap.sink = sink;
        self.snap = Some(Box::new(snap));
    }

    /// A streamed snapshot hands its records to the writer once they reach
    /// `STREAM_CHUNK` (always at a record boundary: a big collection in progress has a
    /// buffer of its own).
    fn snap_stream(&mut self) {
        let Some(snap) = self.snap.as_mut() else {
            return;
        };
        if snap.w.buf.len() < STREAM_CHUNK {
            return;
        }
        let Some(sink) = snap.sink.as_ref() else {
            return;
        };
        let buf = std::mem::replace(
            &mut snap.w.buf,
            Vec::with_capacity(STREAM_CHUNK + STREAM_CHUNK / 4),
        );
        if sink
            .tx
            .send(crate::persist::save::Piece::Data(buf))
            .is_err()
        {
            // The writer is gone (its save failed): nothing reads the records any more.
            self.snap_discard();
        }
    }

    /// From now on the running snapshot keeps no records: the rest of the walk only marks
    /// entries visited. A big collection in progress is dropped and its entry (which the
    /// walk has already passed) marked visited here, or the next snapshot would skip it.
    fn snap_discard(&mut self) {
        let Some(snap) = self.snap.as_mut() else {
            return;
        };
        snap.discard = true;
        snap.sink = None;
        snap.w.buf = Vec::new();
        if let Some(big) = snap.big.take() {
            if let Some(f) = self.arena.get_mut(big.loc).first_mut() {
                *f = (*f & !SNAP_BIT) | self.parity;
            }
        }
    }

    /// The running snapshot is not wanted any more: its records are dropped, the rest of
    /// the walk only marks entries visited (`snap_discard`), and it ends now.
    pub fn snap_cancel(&mut self) {
        self.snap_discard();
        self.snap_finish();
        self.snap = None;
    }

    /// Before the entry at `loc` changes or goes: a running snapshot saves it first.
    #[inline]
    fn pre_write(&mut self, loc: Loc) {
        if self.snap.is_some() {
            self.snap_save(loc);
        }
    }

    /// Serialises the entry at `loc` into the running snapshot unless it is already in it
    /// (or was written after the moment), and marks it visited.
    #[cold]
    fn snap_save(&mut self, loc: Loc) {
        self.snap_visit(loc, false);
    }

    /// `snap_save` for the stepper's walk, which may start a big collection (`may_begin`,
    /// when none is in progress): its record is then written in the next steps
    /// (`persist::big`) and the entry stays unvisited; returns true in that case.
    fn snap_visit(&mut self, loc: Loc, may_begin: bool) -> bool {
        let Some(snap) = self.snap.as_mut() else {
            return false;
        };
        let b = self.arena.get(loc);
        let flags = b.first().copied().unwrap_or(0);
        if flags & SNAP_BIT == self.parity {
            return false;
        }
        if snap.discard {
            if let Some(f) = self.arena.get_mut(loc).first_mut() {
                *f = (flags & !SNAP_BIT) | self.parity;
            }
            return false;
        }
        if snap.big.as_ref().is_some_and(|g| g.loc == loc) {
            // The big collection being written in steps: the rest of it now.
            self.big_continue(usize::MAX);
            return false;
        }
        let v = view(b);
        if v.expire_at == 0 || v.expire_at > snap.now {
            let val = if v.kind() == KIND_STR {
                Some(ValRef::Str(v.val))
            } else {
                self.objs.get(v.obj_kind(), v.obj_idx()).map(ValRef::Obj)
            };
            if let Some(val) = val {
                if may_begin && snap.big.is_none() && crate::persist::big::steppable(&val).is_some()
                {
                    let mut w = PartWriter::for_snapshots(snap.compress);
                    if let Some(cur) = w.big_begin(v.key, val, v.expire_at) {
                        snap.big = Some(Box::new(BigSave {
                            loc,
                            cur,
                            w,
                            expires: v.expire_at != 0,
                        }));
                        return true;
                    }
                }
                snap.keys += 1;
                snap.expires += u64::from(v.expire_at != 0);
                snap.w.key(v.key, val, v.expire_at);
            }
        }
        if let Some(f) = self.arena.get_mut(loc).first_mut() {
            *f = (flags & !SNAP_BIT) | self.parity;
        }
        false
    }

    /// Writes up to `budget` more elements of the big collection in progress; true when
    /// none is (left) in progress. A finished one joins the snapshot's records and its
    /// entry is marked visited.
    fn big_continue(&mut self, budget: usize) -> bool {
        let Some(snap) = self.snap.as_mut() else {
            return true;
        };
        let Some(big) = snap.big.as_mut() else {
            return true;
        };
        let b = self.arena.get(big.loc);
        let v = view(b);
        let obj = if v.kind() == KIND_STR {
            None
        } else {
            self.objs.get(v.obj_kind(), v.obj_idx())
        };
        let Some(obj) = obj else {
            // Cannot happen: a write to the entry finishes the record first. Leave the key
            // out rather than write a torn record.
            crate::log::warning("snapshot: a big collection changed while being saved; left out");
            snap.big = None;
            return true;
        };
        if !big.w.big_step(ValRef::Obj(obj), &mut big.cur, budget) {
            return false;
        }
        let flags = b.first().copied().unwrap_or(0);
        snap.w.buf.extend_from_slice(&big.w.buf);
        snap.keys += 1;
        snap.expires += u64::from(big.expires);
        let loc = big.loc;
        snap.big = None;
        if let Some(f) = self.arena.get_mut(loc).first_mut() {
            *f = (flags & !SNAP_BIT) | self.parity;
        }
        true
    }

    /// Serialises up to about `budget` more entries of the running snapshot (a big
    /// collection's elements count a quarter of an entry each). True when the snapshot is
    /// complete (or none runs).
    pub fn snap_step(&mut self, budget: usize) -> bool {
        let mut locs: Vec<(usize, Loc)> = Vec::new();
        let mut seen = 0usize;
        loop {
            if seen >= budget {
                return false;
            }
            if self.snap.as_ref().is_some_and(|s| s.big.is_some()) {
                let elements = budget.saturating_sub(seen).saturating_mul(4);
                if !self.big_continue(elements) {
                    return false;
                }
                self.snap_stream();
                seen = seen.saturating_add(budget.saturating_sub(seen) / 2);
            }
            let Some(snap) = self.snap.as_ref() else {
                self.table.set_walk(usize::MAX);
                return true;
            };
            if snap.done {
                self.table.set_walk(usize::MAX);
                return true;
            }
            // A resize moved every entry: start over (visited entries cost one flag read).
            let (layout, mut from) = (self.table.resizes(), snap.cursor as usize);
            if snap.layout != layout {
                from = 0;
            }
            let mut end = from.saturating_add(32).min(self.table.buckets());
            locs.clear();
            locs.extend((from..end).filter_map(|p| Some((p, self.table.loc_at(p)?))));
            // The entries are scattered in the arena: start loading them all at once, then
            // the object slots they name, then the small collections' packed blocks, so the
            // three dependent cache misses of each overlap across the batch.
            for &(_, l) in &locs {
                self.arena.prefetch(l);
            }
            let objs = |db: &Db, l: Loc| {
                let b = db.arena.get(l);
                let flags = b.first().copied().unwrap_or(0);
                (flags & SNAP_BIT != db.parity && flags & KIND_MASK != KIND_STR).then(|| {
                    let v = view(b);
                    (v.obj_kind(), v.obj_idx())
                })
            };
            for &(_, l) in &locs {
                if let Some((k, i)) = objs(self, l) {
                    self.objs.prefetch(k, i);
                }
            }
            for &(_, l) in &locs {
                if let Some((k, i)) = objs(self, l) {
                    self.objs.prefetch_data(k, i);
                }
            }
            // Empty slots count a little: a sparse table must not make one step endless.
            seen += locs.len().max(1);
            for &(p, l) in &locs {
                if self.snap_visit(l, true) {
                    // Written in the next steps; the walk goes on after it.
                    end = p + 1;
                    break;
                }
            }
            self.snap_stream();
            let done = end >= self.table.buckets();
            self.table.set_walk(if done { usize::MAX } else { end });
            if let Some(snap) = self.snap.as_mut() {
                snap.layout = layout;
                snap.cursor = end as u64;
                snap.done = done;
            }
        }
    }

    /// Completes the running snapshot now (before the data it covers goes).
    pub fn snap_finish(&mut self) {
        if self.snap.is_some() {
            while !self.snap_step(usize::MAX) {}
        }
    }

    /// The finished snapshot's records with its key and expiry counts, leaving none running.
    pub fn snap_take(&mut self) -> Option<(Vec<u8>, u64, u64)> {
        self.snap_finish();
        let s = self.snap.take()?;
        Some((s.w.buf, s.keys, s.expires))
    }

    /// Bytes reserved by the table, arena and object slots (tests, memory accounting).
    pub fn reserved_bytes(&self) -> usize {
        self.table.buckets() * 8
            + self.arena.reserved_bytes()
            + self.ttls.capacity() * 4
            + self.objs.slot_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::arena::MAX_CLASS_BYTES;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// Live keys at `now` as (value, expiry): what a snapshot of that moment must hold.
    /// A deterministic generator: `rnd(n)` is in `0..n`.
    fn xorshift(seed: u64) -> impl FnMut(u64) -> u64 {
        let mut x = seed | 1;
        move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        }
    }

    fn contents(db: &Db, now: u64) -> std::collections::BTreeMap<Vec<u8>, (Value, u64)> {
        let mut m = std::collections::BTreeMap::new();
        db.for_each_value(now, |k, v, exp| {
            let val = match v {
                ValRef::Str(s) => Value::Str(Bytes::copy_from_slice(s)),
                ValRef::Obj(o) => o.to_value(),
            };
            m.insert(k.to_vec(), (val, exp));
        });
        m
    }

    /// A snapshot's records read back through the RDB reader.
    fn read_back(
        buf: &[u8],
        keys: u64,
        expires: u64,
    ) -> std::collections::BTreeMap<Vec<u8>, (Value, u64)> {
        use crate::persist::rdb::Framer;
        let mut file = Framer::header(0, 0);
        file.extend(Framer::db(0, keys, expires));
        file.extend_from_slice(buf);
        file.extend(Framer::trailer(0, false));
        let mut m = std::collections::BTreeMap::new();
        crate::persist::read::parse(&file, 0, 1, false, |l| {
            assert!(
                m.insert(l.key.to_vec(), (l.val, l.expire_at)).is_none(),
                "key twice"
            );
            Ok(())
        })
        .unwrap();
        m
    }

    /// A database of `n` string keys `key:<i>` = `v<i>`.
    fn keyed_db(n: u64, now: u64) -> Db {
        let mut db = Db::default();
        for i in 0..n {
            db.set(
                format!("key:{i}").as_bytes(),
                format!("v{i}").as_bytes(),
                0,
                now,
            );
        }
        db
    }

    /// Completes the running snapshot and checks it holds exactly `expected`.
    fn assert_snapshot(
        db: &mut Db,
        expected: &std::collections::BTreeMap<Vec<u8>, (Value, u64)>,
        what: &str,
    ) {
        let (buf, keys, expires) = db.snap_take().unwrap();
        let got = read_back(&buf, keys, expires);
        assert_eq!(got.len(), expected.len(), "{what}");
        assert!(
            &got == expected,
            "{what}: the snapshot differs from its moment"
        );
    }

    /// The stepper's snapshot holds exactly the moment's data while every kind of write
    /// (overwrites, new keys, deletions, TTL changes, in-place edits, collection edits,
    /// moves, expiry, table growth) runs between its slices.
    #[test]
    fn stepped_snapshot_survives_deletes_that_shift_entries_back() {
        // Many deletions and insertions between tiny steps: backward shifts keep moving
        // entries across the walk's position (`Dict::crossed`), and the table shrinks and
        // grows under it.
        for seed in 1..=12u64 {
            let mut rnd = xorshift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
            let now = 1_000_000;
            let mut db = keyed_db(3000, now);
            let key = |i: u64| format!("key:{i}").into_bytes();
            let expected = contents(&db, now);
            db.snap_begin(false, now);
            for _ in 0..6000 {
                let k = key(rnd(4000));
                match rnd(4) {
                    0 | 1 => {
                        db.remove(&k);
                    }
                    2 => db.set(&k, b"later", 0, now),
                    _ => {
                        if rnd(2) == 0 {
                            db.snap_step(1);
                        }
                    }
                }
            }
            assert_snapshot(&mut db, &expected, &format!("seed {seed}"));
        }
    }

    #[test]
    fn a_cancelled_snapshot_leaves_the_next_one_whole() {
        // Stopped part-way (a shutdown stopping a BGSAVE), with writes and a big collection
        // in progress: the next snapshot of the same database has every key of its moment.
        use crate::persist::big::BIG_ELEMENTS;
        for seed in 1..=8u64 {
            let mut rnd = xorshift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
            let now = 1_000_000;
            let mut db = keyed_db(3000, now);
            let key = |i: u64| format!("key:{i}").into_bytes();
            for i in 0..BIG_ELEMENTS as u64 * 2 {
                db.hash_or_create(b"h", now)
                    .unwrap()
                    .insert(b(&format!("f{i}")), b("v"));
            }
            db.snap_begin(seed % 2 == 0, now);
            for _ in 0..(50 + rnd(400)) {
                db.snap_step(1 + rnd(8) as usize);
                if rnd(5) == 0 {
                    db.set(&key(rnd(4000)), b"during", 0, now);
                }
            }
            db.snap_cancel();
            assert!(db.snap.is_none());
            for _ in 0..200 {
                db.set(&key(rnd(4000)), b"after", 0, now);
            }
            let expected = contents(&db, now);
            db.snap_begin(false, now);
            assert_snapshot(
                &mut db,
                &expected,
                &format!("seed {seed}: the next snapshot"),
            );
        }
    }

    #[test]
    fn stepped_snapshot_is_the_moment_under_writes() {
        for seed in 1..=40u64 {
            let mut rnd = xorshift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let now = 1_000_000;
            let mut db = Db::default();
            let key = |i: u64| format!("k{i}").into_bytes();
            for i in 0..300 {
                match i % 5 {
                    0 => db.set(&key(i), b"value", 0, now),
                    1 => db.set(&key(i), b"12345", now + 500_000, now),
                    2 => {
                        let h = db.hash_or_create(&key(i), now).unwrap();
                        h.insert(b("f"), b("v"));
                    }
                    3 => db
                        .list_or_create(&key(i), now)
                        .unwrap()
                        .push(crate::types::list::End::Tail, b"a"),
                    _ => db.set(&key(i), b"gone soon", now + 10, now),
                }
            }
            // Some keys are already expired at the moment: not in the snapshot.
            db.set(b"dead", b"x", now - 1, now - 5);
            let expected = contents(&db, now);
            db.snap_begin(seed % 2 == 0, now);
            let mut later = now;
            for _ in 0..600 {
                let k = key(rnd(700));
                match rnd(12) {
                    0 => db.set(&k, b"new", 0, later),
                    1 => {
                        db.remove(&k);
                    }
                    2 => {
                        db.set_expire(&k, later + 1 + rnd(1000));
                    }
                    3 => {
                        db.set_expire(&k, 0);
                    }
                    4 => {
                        if let Ok(Some(s)) = db.str_mut(&k, later, 40) {
                            if let Some(c) = s.first_mut() {
                                *c = b'Z';
                            }
                        }
                    }
                    5 => {
                        if let Ok(h) = db.hash_or_create(&k, later) {
                            h.insert(b("g"), b("w"));
                        }
                    }
                    6 => {
                        if let Some(e) = db.take(&k) {
                            db.import(&key(rnd(700)), e);
                        }
                    }
                    7 => {
                        db.unlink(&k);
                    }
                    8 => {
                        later += 20;
                        db.active_expire(later, 50);
                    }
                    9 => {
                        // Growth: the table resizes under the walk.
                        for j in 0..50 {
                            db.set(
                                format!("grow{}", rnd(1 << 20) + j).as_bytes(),
                                b"g",
                                0,
                                later,
                            );
                        }
                    }
                    _ => {
                        if let Ok(Some(l)) = db.get_list_mut(&k, later) {
                            l.push(crate::types::list::End::Head, b"b");
                        }
                    }
                }
                if rnd(3) == 0 {
                    db.snap_step(1 + rnd(8) as usize);
                }
            }
            let (buf, keys, expires) = db.snap_take().unwrap();
            let got = read_back(&buf, keys, expires);
            assert_eq!(got.len() as u64, keys, "seed {seed}");
            assert_eq!(got.len(), expected.len(), "seed {seed}");
            assert!(
                got == expected,
                "seed {seed}: snapshot differs from the moment"
            );
            // A second snapshot, taken with no writes, is the data as it is now.
            let current = contents(&db, later);
            db.snap_begin(false, later);
            let (buf, keys, expires) = db.snap_take().unwrap();
            assert!(
                read_back(&buf, keys, expires) == current,
                "seed {seed}: second snapshot"
            );
        }
    }

    /// Big collections are written a range of elements per step, and the snapshot still
    /// holds exactly the moment when they, or other keys, are written, deleted or moved
    /// between those steps.
    #[test]
    fn stepped_snapshot_writes_big_collections_in_ranges() {
        use crate::persist::big::BIG_ELEMENTS;
        use crate::types::zset::ZAddFlags;
        let n = BIG_ELEMENTS as u64 * 3;
        for seed in 1..=12u64 {
            let mut rnd = xorshift(seed.wrapping_mul(0x2545_F491_4F6C_DD1D));
            let now = 1_000_000;
            let mut db = Db::default();
            for i in 0..n {
                let (f, v) = (b(&format!("f{i}")), b(&format!("v{i}")));
                db.hash_or_create(b"h", now)
                    .unwrap()
                    .insert(f.clone(), v.clone());
                db.set_or_create(b"s", now).unwrap().add(f.clone());
                db.zset_or_create(b"z", now)
                    .unwrap()
                    .add((i % 50) as f64, f, ZAddFlags::default())
                    .unwrap();
                db.list_or_create(b"l", now)
                    .unwrap()
                    .push(crate::types::list::End::Tail, v);
            }
            db.set_expire(b"z", now + 1_000_000);
            for i in 0..40 {
                db.set(format!("k{i}").as_bytes(), b"small", 0, now);
            }
            let expected = contents(&db, now);
            db.snap_begin(seed % 2 == 0, now);
            let mut partial = 0;
            for round in 0..400 {
                db.snap_step(1 + rnd(4) as usize);
                if let Some(g) = db.snap.as_ref().and_then(|s| s.big.as_ref()) {
                    let (done, total) = g.cur.progress();
                    assert!(done < total);
                    partial += 1;
                }
                // Now and then a write to a big key (finishing its record first), to a
                // small one, or a deletion.
                if round % 7 == 0 {
                    let k = match rnd(6) {
                        0 => &b"h"[..],
                        1 => b"s",
                        2 => b"z",
                        3 => b"l",
                        _ => b"k3",
                    };
                    match rnd(4) {
                        0 => {
                            db.remove(k);
                        }
                        1 => {
                            if let Ok(Some(h)) = db.get_hash_mut(k, now) {
                                h.insert(b("new"), b("field"));
                            }
                        }
                        2 => {
                            if let Ok(Some(l)) = db.get_list_mut(k, now) {
                                l.push(crate::types::list::End::Head, b"head");
                            }
                        }
                        _ => db.set(format!("k{}", rnd(80)).as_bytes(), b"over", 0, now),
                    }
                }
            }
            assert!(
                partial > 0,
                "seed {seed}: no big collection was written in steps"
            );
            let (buf, keys, expires) = db.snap_take().unwrap();
            let got = read_back(&buf, keys, expires);
            assert_eq!(got.len() as u64, keys, "seed {seed}");
            assert!(
                got == expected,
                "seed {seed}: snapshot differs from the moment"
            );
        }
    }

    /// Every db hashes a key alike within the process (stored hashes stay valid when an
    /// entry moves between dbs), and the seed comes from the kernel's random source.
    #[test]
    fn key_hash_is_shared_and_randomly_seeded() {
        let (a, c) = (Db::default(), Db::default());
        for k in [&b"k"[..], b"", b"another key"] {
            assert_eq!(a.hash(k), c.hash(k));
        }
        let mut buf = [0u8; 32];
        assert!(crate::runtime::sys::random_bytes(&mut buf));
        assert_ne!(buf, [0u8; 32]);
        let fixed = ahash::RandomState::with_seeds(
            0x243f_6a88_85a3_08d3,
            0x1319_8a2e_0370_7344,
            0xa409_3822_299f_31d0,
            0x082e_fa98_ec4e_6c89,
        );
        let same = (0..8)
            .filter(|i| {
                a.hash(format!("key:{i}").as_bytes())
                    == fixed.hash_one(format!("key:{i}").as_bytes()) as u32
            })
            .count();
        assert!(same < 8, "seeded with the fixed constants only");
    }

    #[test]
    fn access_bits_follow_lru_lfu_and_no_touch() {
        let mut db = Db::default();
        db.set(b"a", b"1", 0, 5_000);
        assert_eq!(db.meta(b"a", 9_000).unwrap().idle_secs(9_000), 4);
        db.get_str(b"a", 7_000).unwrap();
        assert_eq!(db.meta(b"a", 9_000).unwrap().idle_secs(9_000), 2);
        db.no_touch = true;
        db.get_str(b"a", 8_000).unwrap();
        assert_eq!(db.meta(b"a", 9_000).unwrap().idle_secs(9_000), 2);
        assert!(db.touch(b"a", 9_000), "TOUCH touches even in NO-TOUCH mode");
        assert_eq!(db.meta(b"a", 9_000).unwrap().idle_secs(9_000), 0);
        db.no_touch = false;
        db.set_access(Access::Lfu {
            log_factor: 10,
            decay_time: 1,
        });
        let freq = |db: &mut Db, k: &[u8]| evict::lfu_decayed(db.meta(k, 0).unwrap().atime, 0, 1);
        db.set(b"n", b"1", 0, 0);
        assert_eq!(freq(&mut db, b"n"), evict::LFU_INIT_VAL);
        db.get_str(b"n", 0).unwrap();
        assert_eq!(
            freq(&mut db, b"n"),
            evict::LFU_INIT_VAL + 1,
            "the first hit always counts"
        );
        db.set(b"n", b"2", 0, 0);
        assert!(
            freq(&mut db, b"n") > evict::LFU_INIT_VAL,
            "an overwrite keeps the counter"
        );
        for _ in 0..2000 {
            db.get_str(b"n", 0).unwrap();
        }
        let f = freq(&mut db, b"n");
        assert!((10..40).contains(&f), "log counter after 2000 hits: {f}");
    }

    #[test]
    fn eviction_helpers_sample_score_and_delete() {
        let mut db = Db::default();
        for i in 0..100u64 {
            let at = if i < 10 { 50_000 + i } else { 0 };
            db.set(format!("k{i}").as_bytes(), b"v", at, i * 1000);
        }
        let mut out = Vec::new();
        db.sample(true, 5, 7, &mut out);
        assert_eq!(out.len(), 5);
        assert!(out.iter().all(|&l| db.has_ttl(l) && db.is_live(l)));
        out.clear();
        db.sample(false, 5, 7, &mut out);
        assert_eq!(out.len(), 5);
        let cfg = EvictCfg {
            policy: Policy::AllkeysLru,
            ..EvictCfg::default()
        };
        let (mut best, mut best_score) = (0, 0);
        for loc in db.table.iter() {
            let sc = db.evict_score(loc, cfg, 200_000);
            if sc > best_score {
                (best, best_score) = (loc, sc);
            }
        }
        assert_eq!(best_score, 200, "k0: idle 200 s");
        assert_eq!(db.evict_at(best).as_deref(), Some(&b"k0"[..]));
        assert!(!db.is_live(best) && db.evict_at(best).is_none());
        assert_eq!((db.len(), db.expires_len()), (99, 9));
        assert!(db.random_loc(true, 3).is_some_and(|l| db.has_ttl(l)));
    }

    #[test]
    fn lazy_and_active_expiry() {
        let mut db = Db::default();
        db.set(b"a", b"1", 100, 0);
        db.set(b"b", b"2", 0, 0);
        db.set(b"c", b"3", 50, 0);
        assert_eq!(db.expires_len(), 2);
        assert_eq!(db.get_str(b"a", 99).unwrap(), Some(b("1")));
        assert_eq!(db.get_str(b"a", 100).unwrap(), None);
        assert_eq!(db.stats.expired_keys, 1);
        assert_eq!(db.active_expire(60, 100), 1);
        assert_eq!(db.len(), 1);
        assert_eq!(db.expires_len(), 0);
        assert_eq!((db.stats.hits, db.stats.misses), (1, 1));
    }

    #[test]
    fn set_clears_ttl_and_keep_ttl_keeps_it() {
        let mut db = Db::default();
        db.set(b"a", b"1", 100, 0);
        db.set_keep_ttl(b"a", b"2", 0);
        assert_eq!(db.meta(b"a", 0).unwrap().expire_at, 100);
        db.set(b"a", b"3", 0, 0);
        assert_eq!(db.meta(b"a", 0).unwrap().expire_at, 0);
        assert_eq!(db.expires_len(), 0);
        assert!(db.set_expire(b"a", 500));
        assert_eq!(db.expires_len(), 1);
        assert!(db.set_expire(b"a", 600));
        assert_eq!(db.meta(b"a", 0).unwrap().expire_at, 600);
        assert!(db.set_expire(b"a", 0));
        assert_eq!(db.expires_len(), 0);
        assert!(!db.set_expire(b"zz", 5));
        assert_eq!(db.get_str(b"a", 0).unwrap(), Some(b("3")));
    }

    #[test]
    fn ttl_index_follows_swap_remove_and_moves() {
        let mut db = Db::default();
        let key = |i: usize| format!("k{i}");
        for i in 0..200 {
            db.set(key(i).as_bytes(), b"v", 1000 + i as u64, 0);
        }
        // Remove every third (swap_remove shuffles `ttls`), grow some values (class moves).
        for i in (0..200).step_by(3) {
            assert!(db.remove(key(i).as_bytes()));
        }
        for i in (1..200).step_by(3) {
            db.set_keep_ttl(key(i).as_bytes(), &[b'x'; 300], 0);
        }
        for i in 0..200 {
            let m = db.meta(key(i).as_bytes(), 0);
            if i % 3 == 0 {
                assert!(m.is_none());
            } else {
                assert_eq!(m.unwrap().expire_at, 1000 + i as u64, "{i}");
            }
        }
        // Everything expires through the active cycle alone.
        let mut n = 0;
        while db.expires_len() > 0 {
            n += db.active_expire(5000, 16);
        }
        assert_eq!(n, 133);
        assert!(db.is_empty());
    }

    #[test]
    fn values_change_size_class_and_keep_their_key() {
        let mut db = Db::default();
        db.set(b"k", b"small", 0, 0);
        let before = db.reserved_bytes();
        let big = vec![b'y'; 1000];
        db.set_keep_ttl(b"k", &big, 0);
        assert_eq!(db.get_str(b"k", 0).unwrap().unwrap(), &big[..]);
        db.set(b"k", b"tiny", 0, 0);
        assert_eq!(db.get_str(b"k", 0).unwrap(), Some(b("tiny")));
        assert_eq!(db.len(), 1);
        // The 1000-byte class emptied and kept at most one page.
        assert!(db.reserved_bytes() <= before + 64 * 1024);
    }

    #[test]
    fn huge_values_and_keys_are_boxed() {
        let mut db = Db::default();
        let huge = vec![b'h'; MAX_CLASS_BYTES * 3];
        db.set(b"big", &huge, 0, 0);
        db.set(&huge, b"v", 0, 0);
        assert_eq!(db.get_str(b"big", 0).unwrap().unwrap(), &huge[..]);
        assert_eq!(db.get_str(&huge, 0).unwrap(), Some(b("v")));
        assert_eq!(db.meta(b"big", 0).unwrap().encoding, "raw");
        db.set(b"big", b"1", 0, 0);
        assert_eq!(db.meta(b"big", 0).unwrap().encoding, "int");
        assert!(db.remove(&huge));
        assert_eq!(db.len(), 1);
    }

    #[test]
    fn export_take_import_keep_everything() {
        let mut db = Db::default();
        db.set(b"a", b"12", 500, 7000);
        db.set_enc(b"a", StrEnc::Raw);
        let e = db.export(b"a", 0).unwrap();
        assert_eq!(e.val, Value::Str(b("12")));
        assert_eq!((e.expire_at, e.atime, e.enc), (500, 7, StrEnc::Raw));
        let t = db.take(b"a").unwrap();
        assert_eq!(t, e);
        assert!(db.is_empty() && db.expires_len() == 0);
        db.set(b"b", b"old", 0, 0);
        db.import(b"b", t);
        let m = db.meta(b"b", 0).unwrap();
        assert_eq!((m.encoding, m.expire_at, m.atime), ("raw", 500, 7));
        assert_eq!(db.expires_len(), 1);
    }

    #[test]
    fn zset_accessors_wrongtype_encoding_and_empty_removal() {
        use crate::types::zset::ZAddFlags;
        let mut db = Db::default();
        db.set(b"s", b"v", 0, 0);
        assert_eq!(db.get_zset(b"s", 0).err(), Some(CmdError::WrongType));
        assert_eq!(db.zset_or_create(b"s", 0).err(), Some(CmdError::WrongType));
        assert!(db.get_zset(b"z", 0).unwrap().is_none());
        let z = db.zset_or_create(b"z", 0).unwrap();
        z.add(1.0, b("a"), ZAddFlags::default()).unwrap();
        let m = db.meta(b"z", 0).unwrap();
        assert_eq!((m.type_name, m.encoding), ("zset", "listpack"));
        assert_eq!(db.get_list(b"z", 0).err(), Some(CmdError::WrongType));
        let e = db.export(b"z", 0).unwrap();
        db.import(b"z2", e);
        assert_eq!(db.get_zset(b"z2", 0).unwrap().map(|z| z.len()), Some(1));
        assert!(!db.remove_if_empty(b"z"));
        db.get_zset_mut(b"z", 0).unwrap().unwrap().remove(b"a");
        assert!(db.remove_if_empty(b"z"));
        assert!(!db.exists(b"z", 0));
    }

    #[test]
    fn collections_live_unboxed_in_objs_and_go_with_their_key() {
        let mut db = Db::default();
        // A string handed to set_value is stored inline, as by SET.
        db.set_value(b"o", Value::Str(b("plain")), 0, 0);
        assert_eq!(db.get_str(b"o", 0).unwrap(), Some(b("plain")));
        assert_eq!(db.meta(b"o", 0).unwrap().encoding, "embstr");
        assert_eq!(db.objs.len(), 0);
        // Overwrites, SET over a collection, take/import, expiry, eviction, clear.
        db.set_value(b"o", Value::Hash(Box::default()), 0, 0);
        db.get_hash_mut(b"o", 0)
            .unwrap()
            .unwrap()
            .insert(b("f"), b("v"));
        assert_eq!(db.meta(b"o", 0).unwrap().type_name, "hash");
        assert_eq!(db.get_str(b"o", 0), Err(CmdError::WrongType));
        db.set_value(b"o", Value::ZSet(Box::default()), 100, 0);
        assert_eq!(db.objs.len(), 1, "the old object was dropped");
        assert_eq!(db.meta(b"o", 0).unwrap().type_name, "zset");
        assert!(
            db.set_expire(b"o", 0),
            "rewriting the header keeps the type bits"
        );
        assert_eq!(db.meta(b"o", 0).unwrap().type_name, "zset");
        db.set_enc(b"o", StrEnc::Raw);
        assert_eq!(
            db.meta(b"o", 0).unwrap().type_name,
            "zset",
            "set_enc leaves objects"
        );
        let e = db.take(b"o").unwrap();
        assert_eq!(e.val.type_name(), "zset");
        assert_eq!(db.objs.len(), 0);
        db.import(b"p", e);
        db.set(b"p", b"inline", 0, 0);
        assert_eq!(db.objs.len(), 0);
        db.set_or_create(b"s", 0).unwrap().add(b("m"));
        db.list_or_create(b"l", 0).unwrap();
        db.zset_or_create(b"z", 0).unwrap();
        assert!(db.set_expire(b"z", 10));
        assert!(db.remove_if_empty(b"l") && db.remove_if_empty(b"z"));
        db.hash_or_create(b"h", 0).unwrap().insert(b("f"), b("v"));
        assert!(db.set_expire(b"h", 10));
        assert_eq!(db.active_expire(20, 10), 1);
        assert_eq!(db.objs.len(), 1);
        let loc = db.find(b"s").unwrap().1;
        assert_eq!(db.evict_at(loc), Some(b("s")));
        assert_eq!(db.objs.len(), 0);
        db.set_or_create(b"s2", 0).unwrap().add(b("m"));
        db.clear();
        assert_eq!(db.objs.len(), 0);
    }

    #[test]
    fn thousands_of_collections_keep_their_own_values() {
        let mut db = Db::default();
        for i in 0..3000u32 {
            let k = format!("k{i}");
            let f = Bytes::from(format!("v{i}"));
            match i % 4 {
                0 => drop(
                    db.hash_or_create(k.as_bytes(), 0)
                        .unwrap()
                        .insert(b("f"), f),
                ),
                1 => drop(db.set_or_create(k.as_bytes(), 0).unwrap().add(f)),
                2 => db.set(k.as_bytes(), &f, 0, 0),
                _ => drop(db.zset_or_create(k.as_bytes(), 0).unwrap().len()),
            }
        }
        // Delete every third key, then refill: freed slots are reused.
        for i in (0..3000u32).step_by(3) {
            assert!(db.remove(format!("k{i}").as_bytes()));
        }
        for i in (0..3000u32).step_by(3) {
            let k = format!("n{i}");
            db.hash_or_create(k.as_bytes(), 0)
                .unwrap()
                .insert(b("f"), b("n"));
        }
        for i in 0..3000u32 {
            let k = format!("k{i}");
            let kb = k.as_bytes();
            if i % 3 == 0 {
                assert!(!db.exists(kb, 0));
                let n = format!("n{i}");
                let h = db.get_hash(n.as_bytes(), 0).unwrap().unwrap();
                assert_eq!(h.get(b"f"), Some(&b"n"[..]));
                continue;
            }
            let v = format!("v{i}");
            match i % 4 {
                0 => assert_eq!(
                    db.get_hash(kb, 0).unwrap().unwrap().get(b"f"),
                    Some(v.as_bytes())
                ),
                1 => assert!(db.get_set(kb, 0).unwrap().unwrap().contains(v.as_bytes())),
                2 => assert_eq!(db.get_str(kb, 0).unwrap(), Some(Bytes::from(v))),
                _ => assert_eq!(db.meta(kb, 0).unwrap().type_name, "zset"),
            }
        }
    }

    #[test]
    fn list_accessors_wrongtype_and_empty_removal() {
        use crate::types::list::End;
        let mut db = Db::default();
        db.set(b"s", b"str", 0, 0);
        assert_eq!(db.get_list(b"s", 0).err(), Some(CmdError::WrongType));
        assert_eq!(db.list_or_create(b"s", 0).err(), Some(CmdError::WrongType));
        db.set_or_create(b"set", 0).unwrap().add(b("m"));
        assert_eq!(db.get_list_mut(b"set", 0).err(), Some(CmdError::WrongType));
        assert!(db.get_list(b"l", 0).unwrap().is_none());
        db.list_or_create(b"l", 0).unwrap().push(End::Tail, b("x"));
        assert_eq!(db.meta(b"l", 0).unwrap().type_name, "list");
        assert_eq!(db.meta(b"l", 0).unwrap().encoding, "quicklist");
        assert_eq!(db.get_set(b"l", 0).err(), Some(CmdError::WrongType));
        let copy = db.export(b"l", 0).unwrap();
        assert!(!db.remove_if_empty(b"l"));
        db.get_list_mut(b"l", 0).unwrap().unwrap().pop(End::Head);
        assert!(db.remove_if_empty(b"l"));
        assert!(!db.exists(b"l", 0));
        db.import(b"l2", copy);
        assert_eq!(db.get_list(b"l2", 0).unwrap().map(|l| l.len()), Some(1));
    }

    #[test]
    fn typed_accessors_and_empty_collections() {
        let mut db = Db::default();
        db.set(b"s", b"str", 0, 0);
        assert_eq!(db.get_hash(b"s", 0).err(), Some(CmdError::WrongType));
        assert_eq!(db.set_or_create(b"s", 0).err(), Some(CmdError::WrongType));
        assert!(db.get_hash(b"h", 0).unwrap().is_none());
        db.hash_or_create(b"h", 0).unwrap().insert(b("f"), b("v"));
        assert_eq!(db.get_str(b"h", 0), Err(CmdError::WrongType));
        assert_eq!(db.get_set_mut(b"h", 0).err(), Some(CmdError::WrongType));
        let m = db.meta(b"h", 0).unwrap();
        assert_eq!((m.type_name, m.encoding), ("hash", "listpack"));
        db.set_or_create(b"t", 0).unwrap().add(b("x"));
        let m = db.meta(b"t", 0).unwrap();
        assert_eq!((m.type_name, m.encoding), ("set", "hashtable"), "7.0 names");
        // Export is a deep copy: changing the copy leaves the original alone.
        let e = db.export(b"t", 0).unwrap();
        db.import(b"u", e);
        db.get_set_mut(b"u", 0).unwrap().unwrap().add(b("y"));
        assert_eq!(db.peek_set(b"t", 0).unwrap().unwrap().len(), 1);
        assert!(!db.remove_if_empty(b"t"));
        db.get_set_mut(b"t", 0).unwrap().unwrap().remove(b"x");
        assert!(db.remove_if_empty(b"t"));
        assert!(!db.exists(b"t", 0));
        let t = db.take(b"h").unwrap();
        assert_eq!(t.val.type_name(), "hash");
        db.import(b"h2", t);
        assert_eq!(
            db.get_hash(b"h2", 0).unwrap().unwrap().get(b"f"),
            Some(&b"v"[..])
        );
        db.set(b"h2", b"over", 0, 0);
        assert_eq!(db.objs.len(), 1, "only u's set is an object");
    }

    #[test]
    fn many_keys_scan_random_and_remove() {
        let mut db = Db::default();
        for i in 0..5000 {
            db.set(format!("key:{i}").as_bytes(), b"v", 0, 0);
        }
        let mut n = 0;
        db.for_each(|_, _| n += 1);
        assert_eq!(n, 5000);
        assert!(db.random(3).is_some());
        for i in 0..5000 {
            assert!(db.remove(format!("key:{i}").as_bytes()));
        }
        assert!(db.is_empty());
        // At most one page kept per class used (two here: 12- and 16-byte entries).
        assert!(db.arena.reserved_bytes() <= 2 * 64 * 1024);
    }

    #[test]
    fn random_ops_match_a_model() {
        use std::collections::HashMap;
        let mut db = Db::default();
        let mut model: HashMap<Vec<u8>, (Vec<u8>, u64)> = HashMap::new();
        let mut x = 0x9E3779B97F4A7C15u64;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for step in 0..20_000 {
            let key = format!("k{}", rnd(300)).into_bytes();
            let vlen = match rnd(10) {
                0 => rnd(MAX_CLASS_BYTES as u64 * 2),
                1..=3 => rnd(200),
                _ => rnd(40),
            } as usize;
            let val = vec![b'a' + (step % 26) as u8; vlen];
            match rnd(8) {
                0 | 1 => {
                    let at = if rnd(2) == 0 { 0 } else { 1 + rnd(1000) };
                    db.set(&key, &val, at, 0);
                    model.insert(key.clone(), (val, at));
                }
                2 => {
                    db.set_keep_ttl(&key, &val, 0);
                    let at = model.get(&key).map_or(0, |m| m.1);
                    model.insert(key.clone(), (val, at));
                }
                3 => assert_eq!(db.remove(&key), model.remove(&key).is_some()),
                4 => {
                    let at = rnd(3) * (1 + rnd(1000));
                    let had = model.get_mut(&key).map(|m| m.1 = at).is_some();
                    assert_eq!(db.set_expire(&key, at), had);
                }
                5 => {
                    let dst = format!("k{}", rnd(300)).into_bytes();
                    if let Some(e) = db.take(&key) {
                        let m = model.remove(&key).unwrap();
                        assert_eq!(
                            (e.val.clone(), e.expire_at),
                            (Value::Str(m.0.clone().into()), m.1)
                        );
                        db.import(&dst, e);
                        model.insert(dst, m);
                    }
                }
                _ => {
                    let got = db.get_str(&key, 0).unwrap();
                    assert_eq!(
                        got.as_deref(),
                        model.get(&key).map(|m| &m.0[..]),
                        "step {step}"
                    );
                }
            }
        }
        assert_eq!(db.len(), model.len());
        assert_eq!(
            db.expires_len(),
            model.values().filter(|m| m.1 != 0).count()
        );
        for (k, (v, at)) in &model {
            assert_eq!(db.meta(k, 0).unwrap().expire_at, *at);
            assert_eq!(db.get_str(k, 0).unwrap().as_deref(), Some(&v[..]));
        }
        let mut scanned = std::collections::HashSet::new();
        let mut c = 0;
        loop {
            c = db.scan(c, |k, _| {
                scanned.insert(k.to_vec());
            });
            if c == 0 {
                break;
            }
        }
        assert_eq!(scanned.len(), model.len());
        // Expire everything with a TTL through the active cycle.
        while db.active_expire(5000, 64) > 0 {}
        assert_eq!(db.len(), model.values().filter(|m| m.1 == 0).count());
        db.clear();
        assert!(db.is_empty() && db.expires_len() == 0);
    }
}
