//! The command table: every command is one `CommandSpec` row in its family's `COMMANDS`
//! slice, holding Redis's declarative fields (arity, flags, key positions) and the handler.
//! `table()` concatenates the families once; COMMAND, COMMAND INFO/DOCS, routing and the
//! arity checks all read the same rows. Read-only after startup, shared by every shard.

use std::sync::OnceLock;

use bytes::Bytes;

use super::{ConnCtx, KeyCtx};
use crate::error::CmdResult;
use crate::protocol::reply::Reply;
pub use crate::shard::journal::Prop;
pub use crate::shard::notify::Notify;

pub const WRITE: u32 = 1 << 0;
pub const READONLY: u32 = 1 << 1;
pub const DENYOOM: u32 = 1 << 2;
pub const FAST: u32 = 1 << 3;
pub const ADMIN: u32 = 1 << 4;
pub const NOSCRIPT: u32 = 1 << 5;
pub const LOADING: u32 = 1 << 6;
pub const STALE: u32 = 1 << 7;
pub const PUBSUB: u32 = 1 << 8;
pub const NOAUTH: u32 = 1 << 9;
pub const BLOCKING: u32 = 1 << 10;
pub const ALLOW_BUSY: u32 = 1 << 11;
pub const SKIP_SLOWLOG: u32 = 1 << 12;
pub const NO_MULTI: u32 = 1 << 13;
/// Guarded by `enable-debug-command` (Redis's CMD_PROTECTED; not shown by COMMAND INFO).
pub const PROTECTED: u32 = 1 << 14;
/// Not a write, but may cause one to be replicated (Redis's CMD_MAY_REPLICATE: EVAL, FCALL,
/// PUBLISH, PFCOUNT; EXEC here too): CLIENT PAUSE WRITE holds these (EXEC only when its
/// queue holds a write), and `min-replicas-ack` holds their replies as it holds writes'
/// (unless READONLY). Not shown by COMMAND INFO, as in Redis 7.0. A high bit, clear of the
/// flags COMMAND INFO prints.
pub const MAY_REPLICATE: u32 = 1 << 24;
/// Shown by COMMAND INFO as Redis declares them; nothing here acts on them (MONITOR reads
/// ADMIN; there is no async loading; EVAL's keys are optional anyway).
pub const SKIP_MONITOR: u32 = 1 << 15;
pub const NO_ASYNC_LOADING: u32 = 1 << 16;
pub const NO_MANDATORY_KEYS: u32 = 1 << 17;

/// Flag bits and the names COMMAND INFO prints for them, in Redis's order (`movablekeys`,
/// derived from the key specs, goes before `allow_busy`).
pub const FLAG_NAMES: &[(u32, &str)] = &[
    (WRITE, "write"),
    (READONLY, "readonly"),
    (DENYOOM, "denyoom"),
    (ADMIN, "admin"),
    (PUBSUB, "pubsub"),
    (NOSCRIPT, "noscript"),
    (BLOCKING, "blocking"),
    (LOADING, "loading"),
    (STALE, "stale"),
    (SKIP_MONITOR, "skip_monitor"),
    (SKIP_SLOWLOG, "skip_slowlog"),
    (FAST, "fast"),
    (NOAUTH, "no_auth"),
    (NO_MANDATORY_KEYS, "no_mandatory_keys"),
    (NO_ASYNC_LOADING, "no_async_loading"),
    (NO_MULTI, "no_multi"),
];

/// ACL categories, as bits: a row's explicit ones (Redis's `acl_categories`) are data on the
/// row (`CommandSpec::acl`); the ones Redis derives from the flags are added by
/// [`CommandSpec::categories`]. `CATEGORY_NAMES` is Redis's order (ACL CAT, COMMAND INFO).
pub const CAT_KEYSPACE: u32 = 1 << 0;
pub const CAT_READ: u32 = 1 << 1;
pub const CAT_WRITE: u32 = 1 << 2;
pub const CAT_SET: u32 = 1 << 3;
pub const CAT_SORTEDSET: u32 = 1 << 4;
pub const CAT_LIST: u32 = 1 << 5;
pub const CAT_HASH: u32 = 1 << 6;
pub const CAT_STRING: u32 = 1 << 7;
pub const CAT_BITMAP: u32 = 1 << 8;
pub const CAT_HYPERLOGLOG: u32 = 1 << 9;
pub const CAT_GEO: u32 = 1 << 10;
pub const CAT_STREAM: u32 = 1 << 11;
pub const CAT_PUBSUB: u32 = 1 << 12;
pub const CAT_ADMIN: u32 = 1 << 13;
pub const CAT_FAST: u32 = 1 << 14;
pub const CAT_SLOW: u32 = 1 << 15;
pub const CAT_BLOCKING: u32 = 1 << 16;
pub const CAT_DANGEROUS: u32 = 1 << 17;
pub const CAT_CONNECTION: u32 = 1 << 18;
pub const CAT_TRANSACTION: u32 = 1 << 19;
pub const CAT_SCRIPTING: u32 = 1 << 20;

pub const CATEGORY_NAMES: [&str; 21] = [
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// The category bit of a name (`read` or `@read`, any case).
pub fn category_bit(name: &str) -> Option<u32> {
    let name = name.strip_prefix('@').unwrap_or(name);
    CATEGORY_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .map(|i| 1 << i)
}

/// Redis's `setImplicitACLCategories`: the categories a command's flags imply, added to its
/// explicit ones (a scripting command is not `@read` for being read-only).
pub const fn implied_categories(flags: u32, explicit: u32) -> u32 {
    let mut c = explicit;
    if flags & WRITE != 0 {
        c |= CAT_WRITE;
    }
    if flags & READONLY != 0 && explicit & CAT_SCRIPTING == 0 {
        c |= CAT_READ;
    }
    if flags & ADMIN != 0 {
        c |= CAT_ADMIN | CAT_DANGEROUS;
    }
    if flags & PUBSUB != 0 {
        c |= CAT_PUBSUB;
    }
    if flags & FAST != 0 {
        c |= CAT_FAST;
    }
    if flags & BLOCKING != 0 {
        c |= CAT_BLOCKING;
    }
    if c & CAT_FAST == 0 {
        c |= CAT_SLOW;
    }
    c
}

/// The explicit category of a documentation group, for rows that declare none.
fn group_category(group: &str) -> u32 {
    match group {
        "string" => CAT_STRING,
        "generic" => CAT_KEYSPACE,
        "hash" => CAT_HASH,
        "list" => CAT_LIST,
        "set" => CAT_SET,
        "sorted-set" => CAT_SORTEDSET,
        "geo" => CAT_GEO,
        "connection" => CAT_CONNECTION,
        "pubsub" => CAT_PUBSUB,
        "stream" => CAT_STREAM,
        _ => 0,
    }
}

/// ACL key permissions a key argument needs (Redis's key-spec flags: ACCESS reads; INSERT,
/// DELETE and UPDATE write). A key with neither (EXISTS, TYPE, OBJECT ENCODING) matches any
/// key pattern, `%R~` or `%W~`.
pub const KEY_R: u8 = 1;
pub const KEY_W: u8 = 2;
pub const KEY_RW: u8 = KEY_R | KEY_W;

/// One subcommand of a container, as Redis declares it: its own flags (COMMAND INFO shows
/// them; the gates see them added to the container's, see `flags_for`) and its explicit ACL
/// categories.
pub type SubFlags = (&'static str, u32, u32);

/// Key positions as Redis declares them: first, last (negative counts from the end), step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub first: i32,
    pub last: i32,
    pub step: i32,
    /// For `numkeys` commands (SINTERCARD): the argument index holding the key count, so
    /// the options after the keys are not taken for keys; 0 for the others.
    pub numkeys: i32,
    /// EVAL's numkeys: 0 is allowed (no keys), and an unreadable or too large count means
    /// no keys either (the handler reports the error on the connection's shard).
    pub script: bool,
    /// GEORADIUS's destinations (Redis's `keyword` key specs): from this argument index on,
    /// the argument after each STORE or STOREDIST is a key too; 0 for the others.
    pub store_from: i32,
    /// SORT: BY/GET patterns name keys built from the elements, on any shard (routing
    /// sends the command cross-shard when they may leave the sorted key's shard).
    pub sort: bool,
    /// XREAD / XREADGROUP (Redis's `keyword` spec): from this argument index on, the first
    /// STREAMS is followed by the keys, then as many IDs; 0 for the others.
    pub streams_from: i32,
}

impl KeySpec {
    pub const fn none() -> KeySpec {
        KeySpec {
            first: 0,
            last: 0,
            step: 0,
            numkeys: 0,
            script: false,
            store_from: 0,
            sort: false,
            streams_from: 0,
        }
    }
    pub const fn single(pos: i32) -> KeySpec {
        KeySpec {
            first: pos,
            last: pos,
            step: 1,
            numkeys: 0,
            script: false,
            store_from: 0,
            sort: false,
            streams_from: 0,
        }
    }
    pub const fn range(first: i32, last: i32, step: i32) -> KeySpec {
        KeySpec {
            first,
            last,
            step,
            numkeys: 0,
            script: false,
            store_from: 0,
            sort: false,
            streams_from: 0,
        }
    }

    /// `numkeys key [key ...] [options]` with the count at argument `at` (movable keys).
    pub const fn numkeys(at: i32) -> KeySpec {
        KeySpec {
            first: at + 1,
            last: -1,
            step: 1,
            numkeys: at,
            script: false,
            store_from: 0,
            sort: false,
            streams_from: 0,
        }
    }

    /// EVAL and friends: `script numkeys [key ...] [arg ...]` with the count at `at`.
    pub const fn script(at: i32) -> KeySpec {
        KeySpec {
            first: at + 1,
            last: -1,
            step: 1,
            numkeys: at,
            script: true,
            store_from: 0,
            sort: false,
            streams_from: 0,
        }
    }

    /// A destination key at `dst` followed by `numkeys key [key ...]` with the count at `at`
    /// (ZUNIONSTORE and friends: `dst < at`).
    pub const fn dst_numkeys(dst: i32, at: i32) -> KeySpec {
        KeySpec {
            first: dst,
            last: dst,
            step: 1,
            numkeys: at,
            script: false,
            store_from: 0,
            sort: false,
            streams_from: 0,
        }
    }

    /// A key at `pos` plus a STORE/STOREDIST destination after `from` (GEORADIUS).
    pub const fn single_store(pos: i32, from: i32) -> KeySpec {
        KeySpec {
            first: pos,
            last: pos,
            step: 1,
            numkeys: 0,
            script: false,
            store_from: from,
            sort: false,
            streams_from: 0,
        }
    }

    /// SORT / SORT_RO: the sorted key at 1, the STORE destination (Redis's sortGetKeys),
    /// and BY/GET patterns that may name keys elsewhere.
    pub const fn sort() -> KeySpec {
        KeySpec {
            first: 1,
            last: 1,
            step: 1,
            numkeys: 0,
            script: false,
            store_from: 2,
            sort: true,
            streams_from: 0,
        }
    }

    /// XREAD (`from` 1) and XREADGROUP (4): the keys after STREAMS, half of what follows.
    pub const fn streams(from: i32) -> KeySpec {
        KeySpec {
            first: 0,
            last: 0,
            step: 0,
            numkeys: 0,
            script: false,
            store_from: 0,
            sort: false,
            streams_from: from,
        }
    }

    /// Argument indexes that hold keys in `argv`: as `positions`, but a `numkeys` command
    /// stops after its counted keys (an unreadable count leaves every argument a key,
    /// which only makes routing more conservative; the handler reports the error).
    pub fn key_positions(&self, argv: &[Bytes]) -> impl Iterator<Item = usize> {
        let mut argc = argv.len();
        let mut counted = 0..0;
        if self.numkeys > 0 {
            let at = self.numkeys as usize;
            let n = argv
                .get(at)
                .and_then(|b| crate::protocol::parse_i64(b))
                .and_then(|n| usize::try_from(n).ok());
            if self.script {
                // No keys unless the count is valid; `first..` then stops after them.
                argc = match n.filter(|&n| at + n < argc) {
                    Some(n) => at + n + 1,
                    None => 0,
                };
            } else if let Some(n) = n.filter(|&n| n >= 1 && at + n < argc) {
                if self.first < self.numkeys {
                    // `dst_numkeys`: the destination, then the counted keys.
                    counted = at + 1..at + n + 1;
                } else {
                    argc = at + n + 1;
                }
            }
        }
        self.positions(argc)
            .chain(counted)
            .chain(self.store_positions(argv))
            .chain(self.stream_positions(argv))
    }

    /// The keys of XREAD / XREADGROUP: after the first STREAMS (from `streams_from` on),
    /// the first half of the remaining arguments.
    fn stream_positions(&self, argv: &[Bytes]) -> std::ops::Range<usize> {
        if self.streams_from <= 0 {
            return 0..0;
        }
        let from = self.streams_from as usize;
        let Some(at) = argv
            .iter()
            .skip(from)
            .position(|a| a.eq_ignore_ascii_case(b"streams"))
        else {
            return 0..0;
        };
        let first = from + at + 1;
        // Half of what follows, rounded down (Redis's range spec with `limit 2`).
        let rest = argv.len().saturating_sub(first);
        first..first + rest / 2
    }

    /// The arguments after STORE / STOREDIST from `store_from` on, walking the options as
    /// the handler does (COUNT's value is skipped, so `COUNT store` names no key). Every
    /// candidate is reported, which only makes routing more conservative.
    fn store_positions(&self, argv: &[Bytes]) -> impl Iterator<Item = usize> {
        let mut out = Vec::new();
        if self.store_from > 0 {
            let mut i = self.store_from as usize;
            while let Some(a) = argv.get(i) {
                let kw = |k: &str| a.eq_ignore_ascii_case(k.as_bytes());
                if (kw("store") || kw("storedist")) && i + 1 < argv.len() {
                    out.push(i + 1);
                    i += 1;
                } else if self.sort && (kw("by") || kw("get")) {
                    i += 1;
                } else if self.sort && kw("limit") {
                    i += 2;
                } else if !self.sort && kw("count") && i + 1 < argv.len() {
                    i += 1;
                }
                i += 1;
            }
        }
        out.into_iter()
    }

    /// Argument indexes that hold keys in `argc` arguments.
    pub fn positions(&self, argc: usize) -> impl Iterator<Item = usize> {
        let (first, step) = (self.first.max(0) as usize, self.step.max(1) as usize);
        let last = if self.first <= 0 {
            0
        } else if self.last < 0 {
            (argc as i64 + self.last as i64).max(0) as usize
        } else {
            (self.last as usize).min(argc.saturating_sub(1))
        };
        let active = self.first > 0;
        (first..=last)
            .step_by(step)
            .filter(move |&i| active && i < argc)
    }
}

/// Runs on the shard that owns the command's keys. Never sees the connection.
pub type KeyFn = fn(&mut KeyCtx, &[Bytes]) -> CmdResult;
/// Runs on the connection's own shard (connection state, server-wide fan-outs).
pub type ConnFn = fn(&mut ConnCtx, &[Bytes]) -> CmdResult;
/// The script entry points (`Exec::Script` rows); the scripting layer runs each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScriptEntry {
    Eval,
    EvalSha,
    EvalRo,
    EvalShaRo,
    FCall,
    FCallRo,
}

/// How the per-shard results of a split multi-key command combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Integer replies are added (DEL, EXISTS, TOUCH, UNLINK).
    Sum,
    /// Array replies are put back in argument order (MGET).
    InOrder,
    /// Every part said OK (MSET).
    Ok,
}

/// A multi-key command the coordinator may split by shard.
#[derive(Clone, Copy)]
pub struct SplitSpec {
    /// Handler that does the whole command for keys that all live on one shard; also run
    /// per shard on each part.
    pub sub: KeyFn,
    /// Arguments per key (1 for keys, 2 for key-value pairs).
    pub step: usize,
    pub merge: Merge,
    /// Parts must become visible all at once (MSET, MSETNX, MGET's snapshot).
    pub atomic: bool,
    /// MSETNX: only write if no key exists on any shard.
    pub nx: bool,
}

/// What executes the command.
#[derive(Clone, Copy)]
pub enum Exec {
    Key(KeyFn),
    Conn(ConnFn),
    Split(SplitSpec),
    Script(ScriptEntry),
}

/// Cross-shard variant of a `Key` command whose keys may live on different shards
/// (RENAME, COPY...). Receives the coordinator context.
pub type CrossFn = fn(&mut ConnCtx, Vec<Bytes>) -> CmdResult;

#[derive(Clone, Copy)]
pub struct CommandSpec {
    pub name: &'static str,
    pub arity: i32,
    pub flags: u32,
    pub keys: KeySpec,
    pub exec: Exec,
    pub cross: Option<CrossFn>,
    pub group: &'static str,
    pub since: &'static str,
    pub summary: &'static str,
    /// Argument synopsis as in Redis docs, e.g. `key value [NX | XX]`.
    pub syntax: &'static str,
    /// Subcommands (name, arity, synopsis) for COMMAND INFO/DOCS of container commands.
    pub subcommands: &'static [(&'static str, i32, &'static str)],
    /// Every subcommand's flags and explicit ACL categories (see [`SubFlags`]). The gates
    /// (READONLY on a replica, MISCONF, OOM, NOREPLICAS) read the flags added to the
    /// row's through `flags_for` (FUNCTION LOAD is a `write`); COMMAND INFO and ACL
    /// categories read them alone, as Redis does.
    pub sub_flags: &'static [SubFlags],
    /// Explicit ACL categories (Redis's `acl_categories`); `None`: the group's.
    pub acl: Option<u32>,
    /// The flags COMMAND INFO shows for a container's own row (Redis declares them for
    /// COMMAND only); the row's `flags` are what its subcommands share here.
    pub container_flags: u32,
    /// The ACL key permissions of the command's keys, in the order `KeySpec::key_positions`
    /// yields them, the last repeating (Redis's key specs: COPY reads its source and writes
    /// its destination, LPUSH only writes). Empty: a read-only command reads, any other
    /// reads and writes. For a container, its subcommands' keys.
    pub key_perms: &'static [u8],
    /// Permissions that depend on the arguments (Redis's `VARIABLE_FLAGS` key specs: SET
    /// reads its key only with GET); overrides `key_perms`.
    pub key_perms_by: Option<fn(&[Bytes]) -> u8>,
    /// How the journal records a write (see `shard::journal`).
    pub prop: Prop,
    /// Which keyspace notification the command sends (see `shard::notify`).
    pub notify: Notify,
    /// Replies that mean the write changed nothing (no WATCH signal, no journal record).
    pub noop: NoOp,
    /// Which of its keys a successful write changes.
    pub touches: Touches,
}

/// A write's replies that mean "nothing changed" (Redis signals only real modifications).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoOp {
    /// Every successful reply is a change.
    Never,
    /// `:0` (DEL of a missing key, SADD of a member already there...).
    Int0,
    /// `:0`, or the same key twice (RENAMENX k k).
    Int0OrSameKeys,
    /// The same key twice (RENAME k k).
    SameKeys,
    /// A null or empty reply, a null array included (SPOP, LPOP, ZPOPMIN of a missing
    /// key).
    NullOrEmpty,
    /// A null reply (GETDEL of a missing key).
    Null,
    /// A null reply, or no options at all (GETEX k only reads).
    NullOrNoOptions,
    /// An integer at most 0 (LINSERT: 0 for a missing key, -1 for a missing pivot).
    IntAtMost0,
    /// A null reply without GET among the options (SET ... NX that did not set).
    NullWithoutGet,
    /// The argument at this position is empty (SETRANGE k off "" writes nothing).
    EmptyArg(usize),
    /// The handler says, through `KeyCtx::unchanged` (LTRIM of a missing key: Redis
    /// answers OK, and only a key that exists counts as modified).
    Flagged,
}

/// Which keys a successful write changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Touches {
    /// Every key argument.
    Keys,
    /// None here: the handler signals what it writes (SORT ... STORE).
    Own,
    /// Only the key at this argument position (the STORE forms of set algebra).
    Only(usize),
    /// Every key but the one at this position (a GEO search's source).
    AllBut(usize),
    /// The keys, the destination in the `DB n` option's database (COPY).
    CopyDb,
    /// The key in this database and in the target one (MOVE).
    MoveDb,
}

impl CommandSpec {
    pub const fn new(
        name: &'static str,
        arity: i32,
        flags: u32,
        keys: KeySpec,
        exec: Exec,
    ) -> CommandSpec {
        CommandSpec {
            name,
            arity,
            flags,
            keys,
            exec,
            cross: None,
            group: "generic",
            since: "1.0.0",
            summary: "",
            syntax: "",
            subcommands: &[],
            sub_flags: &[],
            acl: None,
            container_flags: 0,
            key_perms: &[],
            key_perms_by: None,
            prop: Prop::State,
            noop: NoOp::Never,
            touches: Touches::Keys,
            notify: Notify::None,
        }
    }

    /// Documentation fields for COMMAND DOCS (group, since, summary, argument synopsis).
    pub const fn doc(
        mut self,
        group: &'static str,
        since: &'static str,
        summary: &'static str,
        syntax: &'static str,
    ) -> CommandSpec {
        self.group = group;
        self.since = since;
        self.summary = summary;
        self.syntax = syntax;
        self
    }

    pub const fn cross(mut self, f: CrossFn) -> CommandSpec {
        self.cross = Some(f);
        self
    }

    pub const fn subs(mut self, s: &'static [(&'static str, i32, &'static str)]) -> CommandSpec {
        self.subcommands = s;
        self
    }

    pub const fn sub_flags(mut self, f: &'static [SubFlags]) -> CommandSpec {
        self.sub_flags = f;
        self
    }

    /// ACL key permissions of the keys in order (see `key_perms`).
    pub const fn key_perms(mut self, p: &'static [u8]) -> CommandSpec {
        self.key_perms = p;
        self
    }

    /// ACL key permissions that depend on the arguments (see `key_perms_by`).
    pub const fn key_perms_by(mut self, f: fn(&[Bytes]) -> u8) -> CommandSpec {
        self.key_perms_by = Some(f);
        self
    }

    /// The ACL permissions the `nth` key of `argv` needs.
    pub fn key_perm(&self, argv: &[Bytes], nth: usize) -> u8 {
        if let Some(f) = self.key_perms_by {
            return f(argv);
        }
        match self.key_perms.get(nth).or(self.key_perms.last()) {
            Some(p) => *p,
            None if self.flags_for(argv) & READONLY != 0 => KEY_R,
            None => KEY_RW,
        }
    }

    /// The flags a container shows for its own row (see `container_flags`).
    pub const fn shows(mut self, flags: u32) -> CommandSpec {
        self.container_flags = flags;
        self
    }

    /// Explicit ACL categories, in place of the group's (`CAT_*` bits).
    pub const fn acl(mut self, cats: u32) -> CommandSpec {
        self.acl = Some(cats);
        self
    }

    /// The row's ACL categories (explicit ones and those its flags imply). A container's
    /// own row is `@slow` plus its explicit ones: its subcommands carry theirs.
    pub fn categories(&self) -> u32 {
        if !self.subcommands.is_empty() {
            return self.acl.unwrap_or(0) | CAT_SLOW;
        }
        let explicit = self.acl.unwrap_or_else(|| group_category(self.group));
        implied_categories(self.flags, explicit)
    }

    /// A subcommand's own flags and ACL categories (any case); `None` for one the row
    /// does not declare.
    pub fn sub_info(&self, sub: &[u8]) -> Option<(u32, u32)> {
        self.sub_entry(sub)
            .map(|(_, f, c)| (*f, implied_categories(*f, *c)))
    }

    /// The flags of the command `argv` names: the row's, plus its subcommand's.
    #[inline]
    pub fn flags_for(&self, argv: &[Bytes]) -> u32 {
        if self.sub_flags.is_empty() {
            return self.flags;
        }
        self.flags | argv.get(1).map_or(0, |sub| self.sub_flags_of(sub))
    }

    /// The flags subcommand `sub` adds (any case).
    pub fn sub_flags_of(&self, sub: &[u8]) -> u32 {
        self.sub_entry(sub).map_or(0, |(_, f, _)| *f)
    }

    /// Subcommand `sub`'s row of `sub_flags` (any case).
    fn sub_entry(&self, sub: &[u8]) -> Option<&SubFlags> {
        self.sub_flags
            .iter()
            .find(|(n, _, _)| sub.eq_ignore_ascii_case(n.as_bytes()))
    }

    pub const fn noop(mut self, n: NoOp) -> CommandSpec {
        self.noop = n;
        self
    }

    pub const fn touches(mut self, t: Touches) -> CommandSpec {
        self.touches = t;
        self
    }

    /// Recorded as sent (deterministic, no relative time).
    pub const fn verbatim(mut self) -> CommandSpec {
        self.prop = Prop::Verbatim;
        self
    }

    pub const fn prop(mut self, p: Prop) -> CommandSpec {
        self.prop = p;
        self
    }

    /// Sends `event` (of class `class`, a `shard::notify` flag) for each key it changes.
    pub const fn ev(mut self, class: u32, event: &'static str) -> CommandSpec {
        self.notify = Notify::On(class, event);
        self
    }

    /// As `ev`, only when the integer reply says something changed (SREM, ZREM, LREM...).
    pub const fn ev_counted(mut self, class: u32, event: &'static str) -> CommandSpec {
        self.notify = Notify::Counted(class, event);
        self
    }

    /// A STORE command: `event` on the destination (argument `dst`; 0: the key it changed),
    /// `del` when the result was empty.
    pub const fn ev_store(mut self, class: u32, event: &'static str, dst: u8) -> CommandSpec {
        self.notify = Notify::Store(class, event, dst);
        self
    }

    /// Events that depend on the outcome (see the `ev_*` hooks in `shard::notify`).
    pub const fn ev_hook(mut self, f: crate::shard::notify::Hook) -> CommandSpec {
        self.notify = Notify::Hook(f);
        self
    }

    /// A key that moves (RENAME, MOVE): a hook, with the destination's `new` first.
    pub const fn ev_move(mut self, f: crate::shard::notify::Hook) -> CommandSpec {
        self.notify = Notify::Move(f);
        self
    }

    /// Two lists (LMOVE): a hook, with the destination's events first.
    pub const fn ev_dst_first(mut self, f: crate::shard::notify::Hook) -> CommandSpec {
        self.notify = Notify::DstFirst(f);
        self
    }

    /// Recorded as the key's resulting expiry (the EXPIRE family).
    pub const fn ttl_prop(mut self) -> CommandSpec {
        self.prop = Prop::Ttl;
        self
    }

    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag != 0
    }

    pub fn flag_names(&self) -> Vec<Reply> {
        self.flag_names_of(self.flags)
    }

    /// `flag_names` for `flags` (a subcommand's, see `flags_for`).
    pub fn flag_names_of(&self, flags: u32) -> Vec<Reply> {
        let mut out: Vec<Reply> = FLAG_NAMES
            .iter()
            .filter(|(bit, _)| flags & bit != 0)
            .map(|(_, n)| Reply::status(n))
            .collect();
        // Derived from the key specs; Redis lists it after the others but `allow_busy`.
        if self.keys.numkeys > 0 || self.keys.store_from > 0 || self.keys.streams_from > 0 {
            out.push(Reply::status("movablekeys"));
        }
        if flags & ALLOW_BUSY != 0 {
            out.push(Reply::status("allow_busy"));
        }
        out
    }
}

pub struct CommandTable {
    pub specs: Vec<CommandSpec>,
    /// Open-addressing index by [`name_hash`]: `id + 1` per slot, 0 = empty. Probed
    /// linearly, each candidate compared case-insensitively (no lowercased copy, no map).
    index: Box<[u16]>,
    /// Length of the longest command name: longer names are not looked up at all.
    longest: usize,
    /// Built with the registered families (`register`).
    registered: bool,
    /// Per row, its name under `rename-command` (`""`: hidden), if renamed.
    renamed: Vec<Option<&'static str>>,
    /// Each row's name in upper case (made once, at build): with `specs[id].name`, the two
    /// spellings clients send, handed out as static bytes by [`CommandTable::static_name`].
    upper: Vec<&'static str>,
    /// Statistics slots (INFO commandstats, latencystats): one per row, then one per
    /// subcommand of a container row, as Redis 7 counts `client|setname` apart. Per row,
    /// where its subcommands' slots start ([`NO_SUBS`] for a plain command).
    pub sub_base: Vec<u32>,
    /// `container|subcommand` for each slot after the rows.
    sub_names: Vec<String>,
}

/// [`CommandTable::sub_base`] of a command without subcommands.
pub const NO_SUBS: u32 = u32::MAX;

/// Slots of the command index (a power of two, over four times the command count).
const INDEX_SLOTS: usize = 1024;

/// Case-insensitive hash of a command name (ASCII letters fold to lower case; other bytes
/// may collide with them, which the exact comparison afterwards sorts out).
#[inline]
fn name_hash(name: &[u8]) -> usize {
    let mut h: u32 = name.len() as u32;
    for &b in name {
        h = h.wrapping_mul(31).wrapping_add(u32::from(b | 0x20));
    }
    (h.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

/// Every row, in table order: this layer's families, then the registered ones.
fn rows() -> (Vec<CommandSpec>, bool) {
    let mut specs = Vec::new();
    // Unit tests see the whole table, as the binary does after `register`.
    #[cfg(test)]
    let _ = REGISTERED.get_or_init(|| crate::server::cmds::FAMILIES);
    let registered = REGISTERED.get().copied();
    for family in super::FAMILIES.iter().chain(registered.unwrap_or_default()) {
        specs.extend_from_slice(family);
    }
    (specs, registered.is_some())
}

/// An index slot of a renamed row (`rename-command`): its name is in `renamed`.
const RENAMED: u16 = 0x8000;

/// Applies `rename-command` lines in order, as Redis does on its command dictionary: each
/// names a command by its current name; an empty new name hides it. Returns the new name
/// per renamed row (`""`: hidden), or Redis's error for the first bad line.
pub fn resolve_renames(lines: &[(String, String)]) -> Result<Vec<(usize, String)>, String> {
    let (specs, _) = rows();
    let mut names: Vec<String> = specs.iter().map(|s| s.name.to_string()).collect();
    for (old, new) in lines {
        let id = names
            .iter()
            .position(|n| !n.is_empty() && n.eq_ignore_ascii_case(old))
            .ok_or("No such command in rename-command")?;
        if !new.is_empty() && names.iter().any(|n| n.eq_ignore_ascii_case(new)) {
            return Err("Target command name already exists".into());
        }
        if let Some(n) = names.get_mut(id) {
            *n = new.to_ascii_lowercase();
        }
    }
    Ok(specs
        .iter()
        .zip(names)
        .enumerate()
        .filter(|(_, (s, n))| s.name != n)
        .map(|(id, (_, n))| (id, n))
        .collect())
}

static RENAMES: OnceLock<Vec<(usize, String)>> = OnceLock::new();

/// Sets the `rename-command` lines (the config file's, once at startup): they must come
/// before the table is first built.
pub fn set_renames(lines: &[(String, String)]) -> Result<(), String> {
    let r = resolve_renames(lines)?;
    if TABLE.get().is_some() || RENAMES.set(r).is_err() {
        return Err(
            "internal error: rename-command applied after the command table was built".into(),
        );
    }
    Ok(())
}

impl CommandTable {
    fn build() -> CommandTable {
        let (specs, registered) = rows();
        assert!(specs.len() * 4 < INDEX_SLOTS, "command index too small");
        let renames = RENAMES.get().map(Vec::as_slice).unwrap_or_default();
        let mut renamed: Vec<Option<&'static str>> = vec![None; specs.len()];
        for (id, n) in renames {
            if let Some(r) = renamed.get_mut(*id) {
                *r = Some(&*Box::leak(n.clone().into_boxed_str()));
            }
        }
        let mut index = vec![0u16; INDEX_SLOTS].into_boxed_slice();
        let mut longest = 0;
        for (i, s) in specs.iter().enumerate() {
            let (name, tag) = match renamed.get(i).copied().flatten() {
                Some("") => continue,
                Some(n) => (n, RENAMED),
                None => (s.name, 0),
            };
            longest = longest.max(name.len());
            let mut at = name_hash(name.as_bytes()) & (INDEX_SLOTS - 1);
            while index[at] != 0 {
                at = (at + 1) & (INDEX_SLOTS - 1);
            }
            index[at] = (i + 1) as u16 | tag;
        }
        // Built once per process (the table is a static): leaking the names is bounded.
        let upper = specs
            .iter()
            .map(|s| &*Box::leak(s.name.to_ascii_uppercase().into_boxed_str()))
            .collect();
        let mut sub_base = Vec::with_capacity(specs.len());
        let mut sub_names = Vec::new();
        for s in &specs {
            if s.subcommands.is_empty() {
                sub_base.push(NO_SUBS);
                continue;
            }
            sub_base.push((specs.len() + sub_names.len()) as u32);
            sub_names.extend(
                s.subcommands
                    .iter()
                    .map(|(n, _, _)| format!("{}|{n}", s.name)),
            );
        }
        CommandTable {
            specs,
            index,
            longest,
            registered,
            renamed,
            upper,
            sub_base,
            sub_names,
        }
    }

    /// How many statistics slots there are (rows, then subcommands).
    pub fn stat_slots(&self) -> usize {
        self.specs.len() + self.sub_names.len()
    }

    /// The slot of container `id`'s subcommand `argv[1]` (its slots start at `base`); the
    /// row's own slot for an unknown subcommand (refused before it runs, and not shown).
    #[cold]
    pub fn sub_slot(&self, id: usize, base: u32, argv: &[Bytes]) -> usize {
        let (Some(spec), Some(sub)) = (self.specs.get(id), argv.get(1)) else {
            return id;
        };
        spec.subcommands
            .iter()
            .position(|(n, _, _)| sub.eq_ignore_ascii_case(n.as_bytes()))
            .map_or(id, |i| base as usize + i)
    }

    /// The statistics slots of container `id`'s subcommands (empty for a plain command).
    pub fn sub_slots(&self, id: usize) -> std::ops::Range<usize> {
        match (self.sub_base.get(id), self.specs.get(id)) {
            (Some(&b), Some(s)) if b != NO_SUBS => b as usize..b as usize + s.subcommands.len(),
            _ => 0..0,
        }
    }

    /// Every row and subcommand with its statistics slot and ACL categories, named as ACL
    /// CAT and COMMAND LIST name them (`container|sub`).
    pub fn entries(&self) -> impl Iterator<Item = (String, usize, u32)> + '_ {
        self.specs.iter().enumerate().flat_map(move |(id, s)| {
            let slots = self.sub_slots(id);
            std::iter::once((s.name.to_string(), id, s.categories())).chain(
                s.subcommands
                    .iter()
                    .zip(slots)
                    .map(move |((sub, _, _), slot)| {
                        let cats = s
                            .sub_info(sub.as_bytes())
                            .map_or(s.categories(), |(_, c)| c);
                        (format!("{}|{sub}", s.name), slot, cats)
                    }),
            )
        })
    }

    /// The statistics slots a name given to LATENCY HISTOGRAM means: a command's own, every
    /// subcommand's of a container, or one `container|subcommand`'s.
    pub fn stat_slots_named(&self, name: &[u8]) -> Option<Vec<usize>> {
        if let Some((id, _)) = self.lookup(name) {
            return Some(match self.sub_base.get(id) {
                Some(&b) if b != NO_SUBS => {
                    let n = self.specs.get(id).map_or(0, |s| s.subcommands.len());
                    (b as usize..b as usize + n).collect()
                }
                _ => vec![id],
            });
        }
        let at = self
            .sub_names
            .iter()
            .position(|n| n.as_bytes().eq_ignore_ascii_case(name))?;
        Some(vec![self.specs.len() + at])
    }

    /// The name INFO shows for a statistics slot: the command's, or `container|sub`;
    /// `None` for a container row (Redis counts only its subcommands).
    pub fn stat_name(&self, slot: usize) -> Option<&str> {
        match self.specs.get(slot) {
            Some(s) if s.subcommands.is_empty() => Some(s.name),
            Some(_) => None,
            None => self
                .sub_names
                .get(slot - self.specs.len())
                .map(String::as_str),
        }
    }

    /// Finds a command by name, case-insensitively, without allocating for short names.
    #[inline]
    pub fn lookup(&self, name: &[u8]) -> Option<(usize, &CommandSpec)> {
        if name.len() > self.longest {
            return None;
        }
        let mut at = name_hash(name);
        loop {
            at &= INDEX_SLOTS - 1;
            let slot = *self.index.get(at)?;
            let id = usize::from(slot & !RENAMED).checked_sub(1)?;
            let spec = self.specs.get(id)?;
            let known = if slot & RENAMED == 0 {
                spec.name
            } else {
                self.renamed.get(id).copied().flatten().unwrap_or_default()
            };
            if known.as_bytes().eq_ignore_ascii_case(name) {
                return Some((id, spec));
            }
            at += 1;
        }
    }

    pub fn get(&self, id: usize) -> Option<&CommandSpec> {
        self.specs.get(id)
    }

    /// The row named `name` in the code (its original name, whatever `rename-command`
    /// made of it): for handlers that find their own row.
    pub fn row(&self, name: &str) -> Option<&CommandSpec> {
        match self.lookup(name.as_bytes()) {
            Some((_, s)) if s.name == name => Some(s),
            _ => self.specs.iter().find(|s| s.name == name),
        }
    }

    /// The rows COMMAND lists: all but those `rename-command X ""` hid.
    pub fn visible(&self) -> impl Iterator<Item = &CommandSpec> {
        self.specs
            .iter()
            .enumerate()
            .filter(|(id, _)| !self.hidden(*id))
            .map(|(_, s)| s)
    }

    /// Row `id` was hidden by `rename-command X ""` (COMMAND leaves it out, as Redis does).
    pub fn hidden(&self, id: usize) -> bool {
        self.renamed.get(id).copied().flatten() == Some("")
    }

    /// Row `id`'s name as static bytes when `typed` spells it exactly so (all lower or all
    /// upper case): the argument vector can then hold it without a reference count.
    #[inline]
    pub fn static_name(&self, id: usize, typed: &[u8]) -> Option<&'static [u8]> {
        let lower = self.specs.get(id)?.name;
        if lower.as_bytes() == typed {
            return Some(lower.as_bytes());
        }
        let upper = *self.upper.get(id)?;
        (upper.as_bytes() == typed).then_some(upper.as_bytes())
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

static TABLE: OnceLock<CommandTable> = OnceLock::new();
/// Families of the layers above this one (the connection side, replication, scripting),
/// added by `register` before the table is first used.
static REGISTERED: OnceLock<&'static [&'static [CommandSpec]]> = OnceLock::new();

/// Adds the rows of the layers above `commands` to the table. Must run before the first
/// `table()` call (the server's startup does it first thing); `false` when too late, or
/// when a different set was registered already.
pub fn register(families: &'static [&'static [CommandSpec]]) -> bool {
    let set = REGISTERED.get_or_init(|| families);
    std::ptr::eq(*set, families) && TABLE.get().is_none_or(|t| t.registered)
}

/// The command table, built on first use.
pub fn table() -> &'static CommandTable {
    TABLE.get_or_init(CommandTable::build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sane() {
        let t = table();
        let mut seen = std::collections::HashSet::new();
        for s in &t.specs {
            assert!(seen.insert(s.name), "duplicate command {}", s.name);
            assert_eq!(s.name, s.name.to_lowercase(), "{} not lowercase", s.name);
            assert!(s.arity != 0, "{} has arity 0", s.name);
            if s.keys.first > 0 {
                assert!(s.keys.step > 0, "{} bad key step", s.name);
                if s.arity > 0 {
                    assert!(s.keys.first < s.arity, "{} key beyond arity", s.name);
                }
            }
            if let Exec::Split(m) = s.exec {
                assert!(m.step == s.keys.step as usize, "{} multi step", s.name);
            }
            assert!(!s.summary.is_empty(), "{} has no summary", s.name);
        }
        assert!(t.lookup(b"GeT").is_some());
        assert!(t.lookup(b"nosuchcommand").is_none());
    }

    #[test]
    fn lookup_finds_every_name_in_any_case_and_nothing_else() {
        let t = table();
        for (i, s) in t.specs.iter().enumerate() {
            let upper = s.name.to_uppercase();
            let mixed: String = s
                .name
                .chars()
                .enumerate()
                .map(|(j, c)| {
                    if j % 2 == 0 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    }
                })
                .collect();
            for n in [s.name.to_string(), upper, mixed] {
                assert_eq!(t.lookup(n.as_bytes()).map(|f| f.0), Some(i), "{n}");
            }
            // One byte changed, one byte more or less: not this command.
            let mut b = s.name.as_bytes().to_vec();
            b.push(b'x');
            assert_ne!(t.lookup(&b).map(|f| f.0), Some(i));
            b.truncate(b.len() - 2);
            assert_ne!(t.lookup(&b).map(|f| f.0), Some(i));
            let mut c = s.name.as_bytes().to_vec();
            c[0] ^= 0x01;
            assert_ne!(t.lookup(&c).map(|f| f.0), Some(i));
            // Bytes that fold like letters (`|0x20`) but are not: no match.
            let d: Vec<u8> = s.name.bytes().map(|x| x & !0x20 & 0x7f ^ 0x40).collect();
            assert!(t
                .lookup(&d)
                .is_none_or(|f| f.1.name.as_bytes().eq_ignore_ascii_case(&d)));
        }
        assert!(t.lookup(b"").is_none());
        assert!(t.lookup(&[b'a'; 100_000]).is_none());
        assert!(t.lookup(b"get\0").is_none());
        assert!(t.lookup(b"g\xc5t").is_none());
    }

    #[test]
    fn key_positions() {
        let k = KeySpec::range(1, -1, 2);
        assert_eq!(k.positions(5).collect::<Vec<_>>(), vec![1, 3]);
        let k = KeySpec::range(1, -1, 1);
        assert_eq!(k.positions(4).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(KeySpec::none().positions(4).count(), 0);
        let zs: Vec<Bytes> = ["zunionstore", "d", "2", "a", "b", "WEIGHTS", "1", "2"]
            .iter()
            .map(|s| Bytes::from_static(s.as_bytes()))
            .collect();
        let k = KeySpec::dst_numkeys(1, 2);
        assert_eq!(k.key_positions(&zs).collect::<Vec<_>>(), vec![1, 3, 4]);
        assert_eq!(KeySpec::single(1).positions(3).collect::<Vec<_>>(), vec![1]);
        let k = KeySpec::range(1, 2, 1);
        assert_eq!(k.positions(5).collect::<Vec<_>>(), vec![1, 2]);
        let argv = |a: &[&str]| -> Vec<Bytes> {
            a.iter()
                .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                .collect()
        };
        let k = KeySpec::numkeys(1);
        let sic = argv(&["sintercard", "2", "a", "b", "LIMIT", "1"]);
        assert_eq!(k.key_positions(&sic).collect::<Vec<_>>(), vec![2, 3]);
        let bad = argv(&["sintercard", "x", "a", "LIMIT"]);
        assert_eq!(k.key_positions(&bad).collect::<Vec<_>>(), vec![2, 3]);
        let many = argv(&["sintercard", "5", "a"]);
        assert_eq!(k.key_positions(&many).collect::<Vec<_>>(), vec![2]);
    }
}
