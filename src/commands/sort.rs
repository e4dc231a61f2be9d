//! SORT and SORT_RO (Redis's sort.c): sort a list, set or sorted set numerically or with
//! ALPHA, optionally by an external weight (`BY pattern`, `BY nosort`), LIMIT, GET patterns
//! (`#` for the element, `key*`, `hash*->field`), DESC, STORE into a list. Runs on the
//! shard that owns the sorted key when every key it may touch is there (the STORE
//! destination and the keys BY/GET patterns name, e.g. through the key's hash tag);
//! otherwise routing (`KeySpec::sort`, `patterns_elsewhere`) sends it to `sort_cross`,
//! which runs on the client's thread with every shard locked: it reads the elements on the
//! key's owner, the pattern keys on theirs (one job per shard and step), sorts here and
//! writes STORE on the destination's shard, so the command stays atomic.

use bytes::Bytes;

use super::args::{arg, is};
use super::table::{
    CommandSpec, Exec, KeySpec, CAT_DANGEROUS, CAT_LIST, CAT_SET, CAT_SORTEDSET, DENYOOM, KEY_R,
    KEY_W, READONLY, WRITE,
};
use super::{ConnCtx, KeyCtx};
use crate::coord::lock::{lock_all, unlock};
use crate::engine::Engine;
use crate::engine::{ShardFn, Ticket};
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::protocol::{parse_f64, parse_i64};
use crate::shard::db::Db;
use crate::shard::route::shard_of;
use crate::shard::value::Value;
use crate::types::list::{End, List};

const G: &str = "generic";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("sort", -2, WRITE | DENYOOM, KeySpec::sort(), Exec::Key(sort))
        .key_perms(&[KEY_R, KEY_W])
        .acl(CAT_SET | CAT_SORTEDSET | CAT_LIST | CAT_DANGEROUS)
        .cross(sort_cross)
        .touches(super::table::Touches::Own)
        .ev_store(crate::shard::notify::LIST, "sortstore", 0)
        .doc(G, "1.0.0", "Sorts the elements in a list, a set, or a sorted set, optionally storing the result.",
             "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA] [STORE destination]"),
    CommandSpec::new("sort_ro", -2, READONLY, KeySpec::sort(), Exec::Key(sort_ro))
        .key_perms(&[KEY_R])
        .acl(CAT_SET | CAT_SORTEDSET | CAT_LIST | CAT_DANGEROUS)
        .cross(sort_cross)
        .doc(G, "7.0.0", "Returns the sorted elements of a list, a set, or a sorted set.",
             "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA]"),
];

const NOT_LOCAL: &str =
    "SORT BY/GET patterns and STORE inside a script must name keys on the sorted key's shard (use its hash tag)";

struct Opts {
    desc: bool,
    alpha: bool,
    limit: Option<(i64, i64)>,
    by: Option<Bytes>,
    gets: Vec<Bytes>,
    store: Option<Bytes>,
}

fn parse(argv: &[Bytes], ro: bool) -> Result<Opts, CmdError> {
    let mut o = Opts {
        desc: false,
        alpha: false,
        limit: None,
        by: None,
        gets: Vec::new(),
        store: None,
    };
    let mut j = 2;
    while let Some(a) = argv.get(j) {
        let left = argv.len() - j - 1;
        if is(a, "asc") {
            o.desc = false;
        } else if is(a, "desc") {
            o.desc = true;
        } else if is(a, "alpha") {
            o.alpha = true;
        } else if is(a, "limit") && left >= 2 {
            let s = parse_i64(arg(argv, j + 1)?).ok_or(CmdError::NotInteger)?;
            let c = parse_i64(arg(argv, j + 2)?).ok_or(CmdError::NotInteger)?;
            o.limit = Some((s, c));
            j += 2;
        } else if is(a, "store") && left >= 1 && !ro {
            o.store = Some(arg(argv, j + 1)?.clone());
            j += 1;
        } else if is(a, "by") && left >= 1 {
            o.by = Some(arg(argv, j + 1)?.clone());
            j += 1;
        } else if is(a, "get") && left >= 1 {
            o.gets.push(arg(argv, j + 1)?.clone());
            j += 1;
        } else {
            return Err(CmdError::Syntax);
        }
        j += 1;
    }
    Ok(o)
}

fn sort(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    run(ctx, argv, false)
}

fn sort_ro(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    run(ctx, argv, true)
}

/// Where a pattern points for an element: the element itself (`#`), nothing (no `*`), or
/// a key (and a hash field, for `->field`).
enum Target<'a> {
    Elem,
    Nothing,
    Key(Vec<u8>, Option<&'a [u8]>),
}

/// Redis's lookupKeyByPattern, the naming half: `#` is the element itself; the first `*`
/// is replaced by it; `->field` after the `*` names a hash field.
fn target<'a>(pattern: &'a [u8], elem: &[u8]) -> Target<'a> {
    if pattern == b"#" {
        return Target::Elem;
    }
    let Some(star) = pattern.iter().position(|&c| c == b'*') else {
        return Target::Nothing;
    };
    let after = pattern.get(star + 1..).unwrap_or_default();
    let arrow = after
        .windows(2)
        .position(|w| w == b"->")
        .filter(|&p| p + 2 < after.len());
    let (rest, field) = match arrow {
        Some(p) => (after.get(..p).unwrap_or_default(), after.get(p + 2..)),
        None => (after, None),
    };
    let mut key = Vec::with_capacity(pattern.len() + elem.len());
    key.extend_from_slice(pattern.get(..star).unwrap_or_default());
    key.extend_from_slice(elem);
    key.extend_from_slice(rest);
    Target::Key(key, field)
}

/// The reading half: the string at `key`, or its hash's `field` (a read's lookup: hit or
/// miss counted, keymiss noted). Anything else reads as nothing.
fn read(db: &mut Db, now: u64, key: &[u8], field: Option<&[u8]>) -> Option<Bytes> {
    match field {
        Some(f) => match db.get_hash(key, now) {
            Ok(Some(h)) => h.get(f).map(Bytes::copy_from_slice),
            _ => None,
        },
        None => db.get_str(key, now).ok().flatten(),
    }
}

/// Redis's lookupKeyByPattern on this shard. `Ok(None)`: nothing there. `Err`: the key
/// lives on another shard (only inside a script, which runs on one shard).
fn lookup(ctx: &mut KeyCtx, pattern: &[u8], elem: &[u8]) -> Result<Option<Bytes>, CmdError> {
    match target(pattern, elem) {
        Target::Elem => Ok(Some(Bytes::copy_from_slice(elem))),
        Target::Nothing => Ok(None),
        Target::Key(key, field) => {
            if shard_of(&key, ctx.shard.nshards) != ctx.shard.id {
                return Err(CmdError::err(NOT_LOCAL));
            }
            let now = ctx.now();
            Ok(read(ctx.db(), now, &key, field))
        }
    }
}

/// Routing's question (`commands::route`, for `KeySpec::sort`): may a BY or GET pattern
/// name a key off shard `owner`? A pattern whose part before `*` holds a whole hash tag
/// `{tag}` always lands on `tag`'s shard; any other pattern with a `*` may land anywhere.
pub fn patterns_elsewhere(argv: &[Bytes], owner: usize, nshards: usize) -> bool {
    if nshards <= 1 {
        return false;
    }
    let mut j = 2;
    while let Some(a) = argv.get(j) {
        if is(a, "limit") {
            j += 3;
            continue;
        }
        if is(a, "by") || is(a, "get") {
            if let Some(p) = argv.get(j + 1) {
                if let Some(star) = p.iter().position(|&c| c == b'*') {
                    let head = p.get(..star).unwrap_or_default();
                    let tagged = head.iter().position(|&c| c == b'{').is_some_and(|o| {
                        head.get(o + 1..)
                            .and_then(|r| r.iter().position(|&c| c == b'}'))
                            .is_some_and(|c| c > 0)
                    });
                    if !tagged || shard_of(head, nshards) != owner {
                        return true;
                    }
                }
            }
            j += 2;
            continue;
        }
        j += 1;
    }
    false
}

/// The sorted key's elements (list order, set order, zset score order); `None`: missing.
fn elements(ctx: &mut KeyCtx, key: &[u8]) -> Result<Option<(Vec<Bytes>, bool)>, CmdError> {
    let now = ctx.now();
    let db = ctx.db();
    if let Ok(found) = db.get_list(key, now) {
        return Ok(found.map(|l| (l.iter().map(Bytes::copy_from_slice).collect(), false)));
    }
    if let Ok(found) = db.get_set(key, now) {
        return Ok(found.map(|s| (s.iter().collect(), true)));
    }
    if let Ok(found) = db.get_zset_for_sort(key, now) {
        return Ok(found.map(|z| {
            z.convert_for_sort();
            (z.to_vec().into_iter().map(|(m, _)| m).collect(), false)
        }));
    }
    Err(CmdError::WrongType)
}

/// strtod as sort.c uses it: leading spaces skipped, the whole rest must be the number,
/// no overflow, no NaN. An empty string converts nothing and stops at its end: 0, as in
/// Redis (all spaces stop at the first one: an error).
fn weight(b: &[u8]) -> Option<f64> {
    if b.is_empty() {
        return Some(0.0);
    }
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    parse_f64(b.get(start..).unwrap_or_default())
}

/// What SORT does once it knows the elements (sort.c's decisions, shared by the local and
/// the cross-shard paths).
struct Plan {
    o: Opts,
    by: Option<Bytes>,
    alpha: bool,
    dontsort: bool,
    is_set: bool,
}

impl Plan {
    fn new(o: Opts, is_set: bool) -> Plan {
        let mut by = o.by.clone();
        let mut alpha = o.alpha;
        // BY without '*' means "do not sort".
        let mut dontsort = by.as_ref().is_some_and(|p| !p.contains(&b'*'));
        // Sorting a set without sorting into a STORE would store an arbitrary order: Redis
        // sorts it alphabetically then, for a deterministic result.
        if dontsort && is_set && o.store.is_some() {
            dontsort = false;
            alpha = true;
            by = None;
        }
        Plan {
            o,
            by,
            alpha,
            dontsort,
            is_set,
        }
    }

    /// The BY pattern to look up for each element before sorting, if any.
    fn by_pattern(&self) -> Option<&Bytes> {
        self.by.as_ref().filter(|_| !self.dontsort)
    }

    /// Sorts `elems` (with `byvals[i]`, the BY pattern's value for element i, when there is
    /// a BY pattern) and returns the LIMIT window.
    fn order(
        &self,
        mut elems: Vec<Bytes>,
        byvals: Vec<Option<Bytes>>,
    ) -> Result<Vec<Bytes>, CmdError> {
        let n = elems.len() as i64;
        let (mut start, mut end) = match self.o.limit {
            Some((s, c)) => {
                let start = s.max(0);
                let end = if c < 0 {
                    n - 1
                } else {
                    start.saturating_add(c) - 1
                };
                (start, end)
            }
            None => (0, n - 1),
        };
        if start >= n {
            start = n - 1;
            end = n - 2;
        }
        if end >= n {
            end = n - 1;
        }
        let alpha = self.alpha;
        if !self.dontsort {
            // (element, numeric score, alpha key)
            let mut items: Vec<(Bytes, f64, Option<Bytes>)> = Vec::with_capacity(elems.len());
            let by_pattern = self.by.is_some();
            let mut byvals = byvals.into_iter();
            let mut bad_score = false;
            for e in elems.drain(..) {
                let byval = if by_pattern {
                    byvals.next().flatten()
                } else {
                    Some(e.clone())
                };
                let mut score = 0.0;
                let mut cmp = None;
                if let Some(v) = byval {
                    if alpha {
                        if by_pattern {
                            cmp = Some(v);
                        }
                    } else {
                        match weight(&v) {
                            Some(w) => score = w,
                            None => bad_score = true,
                        }
                    }
                }
                items.push((e, score, cmp));
            }
            if bad_score {
                return Err(CmdError::err(
                    "One or more scores can't be converted into double",
                ));
            }
            let desc = self.o.desc;
            items.sort_by(|a, b| {
                let ord = if !alpha {
                    a.1.partial_cmp(&b.1)
                        .unwrap_or(std::cmp::Ordering::Equal)
                        .then_with(|| a.0.cmp(&b.0))
                } else if by_pattern {
                    match (&a.2, &b.2) {
                        (None, None) => std::cmp::Ordering::Equal,
                        (None, Some(_)) => std::cmp::Ordering::Less,
                        (Some(_), None) => std::cmp::Ordering::Greater,
                        (Some(x), Some(y)) => x.cmp(y),
                    }
                } else {
                    a.0.cmp(&b.0)
                };
                if desc {
                    ord.reverse()
                } else {
                    ord
                }
            });
            elems = items.into_iter().map(|i| i.0).collect();
        } else if self.o.desc && !self.is_set {
            // BY nosort DESC walks a list or a sorted set from its end, as Redis does.
            elems.reverse();
        }
        Ok(if start <= end && start >= 0 {
            elems
                .get(start as usize..=(end as usize))
                .map(<[Bytes]>::to_vec)
                .unwrap_or_default()
        } else {
            Vec::new()
        })
    }
}

/// The reply without STORE.
fn array(out: Vec<Option<Bytes>>) -> Reply {
    Reply::Array(
        out.into_iter()
            .map(|v| v.map_or(Reply::Null, Reply::Bulk))
            .collect(),
    )
}

/// STORE: replaces `dst` with the list `out` (an empty result deletes it). Returns the
/// length and whether an old value went away.
fn store(db: &mut Db, dst: &[u8], out: Vec<Option<Bytes>>, now: u64) -> (usize, bool) {
    let removed = db.remove(dst);
    let stored = out.len();
    if stored > 0 {
        let mut l = List::new();
        for v in out {
            l.push(End::Tail, v.unwrap_or_default());
        }
        db.set_value(dst, Value::List(Box::new(l)), 0, now);
    }
    (stored, removed)
}

fn run(ctx: &mut KeyCtx, argv: &[Bytes], ro: bool) -> CmdResult {
    let key = arg(argv, 1)?.clone();
    let o = parse(argv, ro)?;
    let (elems, is_set) = elements(ctx, &key)?.unwrap_or_default();
    if let Some(dst) = &o.store {
        if shard_of(dst, ctx.shard.nshards) != ctx.shard.id {
            return Err(CmdError::err(NOT_LOCAL));
        }
    }
    let plan = Plan::new(o, is_set);
    let mut byvals = Vec::new();
    if let Some(p) = plan.by_pattern() {
        for e in &elems {
            byvals.push(lookup(ctx, p, e)?);
        }
    }
    let window = plan.order(elems, byvals)?;
    // The output: the elements, or each GET pattern's value per element.
    let mut out: Vec<Option<Bytes>> = Vec::new();
    for e in &window {
        if plan.o.gets.is_empty() {
            out.push(Some(e.clone()));
        }
        for g in &plan.o.gets {
            out.push(lookup(ctx, g, e)?);
        }
    }
    let Some(dst) = plan.o.store else {
        return Ok(array(out));
    };
    let now = ctx.now();
    let (stored, _) = store(ctx.db(), &dst, out, now);
    // Only the destination changed (the sorted key is read): WATCH and blocked clients.
    ctx.shard.touch(ctx.db, &dst);
    Ok(Reply::Int(stored as i64))
}

// ----- across shards ------------------------------------------------------------------------

/// What one step reads: per lookup, the key and hash field (`None`: nothing to read, the
/// value is known already).
type Reads = Vec<Option<(Vec<u8>, Option<Bytes>)>>;

/// One shard's share of a step: (index in the step, key, hash field).
type ShardReads = Vec<(usize, Vec<u8>, Option<Bytes>)>;

/// What one shard read: (index in the step, value).
type ShardVals = Vec<(usize, Option<Bytes>)>;

/// Where each pattern lookup of `elems` goes: the element itself, nothing, or a key.
fn plan_reads(patterns: &[Bytes], elems: &[Bytes]) -> (Vec<Option<Bytes>>, Reads) {
    let mut known = Vec::with_capacity(elems.len() * patterns.len().max(1));
    let mut reads = Vec::with_capacity(known.capacity());
    for e in elems {
        for p in patterns {
            match target(p, e) {
                Target::Elem => {
                    known.push(Some(e.clone()));
                    reads.push(None);
                }
                Target::Nothing => {
                    known.push(None);
                    reads.push(None);
                }
                Target::Key(k, f) => {
                    known.push(None);
                    reads.push(Some((k, f.map(Bytes::copy_from_slice))));
                }
            }
        }
    }
    (known, reads)
}

/// Reads every key of `reads` on its owner (one job per shard, in order there; the shards
/// are locked by the caller) and hands `known` with the values filled in to `done`.
fn read_all(
    w: &mut Engine,
    db: usize,
    mut known: Vec<Option<Bytes>>,
    reads: Reads,
    done: impl FnOnce(&mut Engine, Vec<Option<Bytes>>) + 'static,
) {
    let n = w.nshards;
    let mut per: Vec<ShardReads> = (0..n).map(|_| Vec::new()).collect();
    for (i, r) in reads.into_iter().enumerate() {
        if let Some((k, f)) = r {
            if let Some(v) = per.get_mut(shard_of(&k, n)) {
                v.push((i, k, f));
            }
        }
    }
    let jobs: Vec<(usize, ShardFn<ShardVals>)> = per
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(s, v)| {
            let job: ShardFn<ShardVals> = Box::new(move |tw: &mut Engine| {
                let now = tw.shard.now_ms;
                let d = tw.shard.db_mut(db);
                v.into_iter()
                    .map(|(i, k, f)| (i, read(d, now, &k, f.as_deref())))
                    .collect()
            });
            (s, job)
        })
        .collect();
    w.fan_out(jobs, false, move |w, parts| {
        for (i, v) in parts.into_iter().flatten() {
            if let Some(slot) = known.get_mut(i) {
                *slot = v;
            }
        }
        done(w, known)
    });
}

/// Ends a cross-shard SORT: the STORE write (with its `sortstore` / `del` event) on the
/// destination's shard, every shard released, then the reply.
fn finish_cross(
    w: &mut Engine,
    txid: u64,
    db: usize,
    ticket: Ticket,
    res: Result<(Option<Bytes>, Vec<Option<Bytes>>), CmdError>,
) {
    let n = w.nshards;
    let (reply, write) = match res {
        Err(e) => (e.into_reply(), None),
        Ok((None, out)) => (array(out), None),
        Ok((Some(dst), out)) => (Reply::Int(out.len() as i64), Some((dst, out))),
    };
    let dst_owner = write.as_ref().map(|(d, _)| shard_of(d, n));
    let mut write = write;
    let jobs: Vec<(usize, ShardFn<()>)> = (0..n)
        .map(|s| {
            let mine = if Some(s) == dst_owner {
                write.take()
            } else {
                None
            };
            let job: ShardFn<()> = Box::new(move |tw: &mut Engine| {
                if let Some((dst, out)) = mine {
                    let now = tw.shard.now_ms;
                    let (stored, removed) = store(tw.shard.db_mut(db), &dst, out, now);
                    tw.shard.touch(db, &dst);
                    use crate::shard::notify::{event, GENERIC, LIST};
                    if stored > 0 {
                        event(&mut tw.shard, db, (LIST, "sortstore"), &dst, false);
                    } else if removed {
                        event(&mut tw.shard, db, (GENERIC, "del"), &dst, false);
                    }
                }
                unlock(tw, txid);
            });
            (s, job)
        })
        .collect();
    w.fan_out(jobs, false, move |w, _: Vec<()>| w.complete(ticket, reply));
}

/// SORT / SORT_RO whose STORE destination or BY/GET pattern keys may be on other shards:
/// every shard locked, the elements read on the key's owner, each pattern step's keys on
/// their owners, the sort here, STORE on the destination's shard.
fn sort_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let ro = argv.first().is_some_and(|n| is(n, "sort_ro"));
    let key = arg(&argv, 1)?.clone();
    let o = parse(&argv, ro)?;
    let db = ctx.client().db;
    let resp = ctx.client().resp;
    let ticket = ctx.defer();
    let n = ctx.eng().nshards;
    let owner = shard_of(&key, n);
    lock_all(
        ctx.eng(),
        (0..n).collect(),
        Box::new(move |w: &mut Engine, txid| {
            type Elems = Result<Option<(Vec<Bytes>, bool)>, CmdError>;
            let job: ShardFn<Elems> = Box::new(move |tw: &mut Engine| {
                elements(
                    &mut KeyCtx {
                        shard: &mut tw.shard,
                        db,
                        resp,
                        out: None,
                    },
                    &key,
                )
            });
            w.fan_out(vec![(owner, job)], false, move |w, mut got: Vec<Elems>| {
                let (elems, is_set) = match got.pop().unwrap_or(Ok(None)) {
                    Ok(found) => found.unwrap_or_default(),
                    Err(e) => return finish_cross(w, txid, db, ticket, Err(e)),
                };
                let plan = Plan::new(o, is_set);
                let (known, reads) = match plan.by_pattern() {
                    Some(p) => plan_reads(std::slice::from_ref(p), &elems),
                    None => (Vec::new(), Vec::new()),
                };
                read_all(w, db, known, reads, move |w, byvals| {
                    let window = match plan.order(elems, byvals) {
                        Ok(win) => win,
                        Err(e) => return finish_cross(w, txid, db, ticket, Err(e)),
                    };
                    let (known, reads) = if plan.o.gets.is_empty() {
                        (window.into_iter().map(Some).collect(), Vec::new())
                    } else {
                        plan_reads(&plan.o.gets, &window)
                    };
                    let dst = plan.o.store;
                    read_all(w, db, known, reads, move |w, out| {
                        finish_cross(w, txid, db, ticket, Ok((dst, out)))
                    });
                });
            });
        }),
    );
    Ok(Reply::Ok)
}
