//! SORT and SORT_RO (Redis's sort.c): sort a list, set or sorted set numerically or with
//! ALPHA, optionally by an external weight (`BY pattern`, `BY nosort`), LIMIT, GET patterns
//! (`#` for the element, `key*`, `hash*->field`), DESC, STORE into a list. Runs on the
//! shard that owns the sorted key. Keys named by BY/GET patterns and the STORE destination
//! must live on that shard too (give them the key's hash tag, `{tag}`): Redis Cluster has
//! the same rule, and reaching other shards' keys per element would break atomicity.

use bytes::Bytes;

use super::args::{arg, is};
use super::table::{CommandSpec, Exec, KeySpec, DENYOOM, READONLY, WRITE};
use super::KeyCtx;
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::protocol::{parse_f64, parse_i64};
use crate::shard::route::shard_of;
use crate::shard::value::Value;
use crate::types::list::{End, List};

const G: &str = "generic";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("sort", -2, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(sort))
        .touches(super::table::Touches::Own)
        .ev_store(crate::shard::notify::LIST, "sortstore", 0)
        .doc(G, "1.0.0", "Sorts the elements in a list, a set, or a sorted set, optionally storing the result.",
             "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA] [STORE destination]"),
    CommandSpec::new("sort_ro", -2, READONLY, KeySpec::single(1), Exec::Key(sort_ro))
        .doc(G, "7.0.0", "Returns the sorted elements of a list, a set, or a sorted set.",
             "key [BY pattern] [LIMIT offset count] [GET pattern [GET pattern ...]] [ASC | DESC] [ALPHA]"),
];

const NOT_LOCAL: &str =
    "SORT BY/GET patterns and STORE must name keys on the sorted key's shard (use its hash tag)";

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

/// Redis's lookupKeyByPattern: `#` is the element itself; the first `*` is replaced by
/// it; `->field` after the `*` reads a hash field. `Ok(None)`: nothing there. `Err`: the
/// key lives on another shard.
fn lookup(ctx: &mut KeyCtx, pattern: &[u8], elem: &[u8]) -> Result<Option<Bytes>, CmdError> {
    if pattern == b"#" {
        return Ok(Some(Bytes::copy_from_slice(elem)));
    }
    let Some(star) = pattern.iter().position(|&c| c == b'*') else {
        return Ok(None);
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
    if shard_of(&key, ctx.shard.nshards) != ctx.shard.id {
        return Err(CmdError::err(NOT_LOCAL));
    }
    let now = ctx.now();
    let db = ctx.db();
    Ok(match field {
        Some(f) => match db.get_hash(&key, now) {
            Ok(Some(h)) => h.get(f).map(Bytes::copy_from_slice),
            _ => None,
        },
        None => db.get_str(&key, now).ok().flatten(),
    })
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
    if let Ok(found) = db.get_zset(key, now) {
        return Ok(found.map(|z| (z.to_vec().into_iter().map(|(m, _)| m).collect(), false)));
    }
    Err(CmdError::WrongType)
}

/// strtod as sort.c uses it: leading spaces skipped, the whole rest must be the number,
/// no overflow, no NaN.
fn weight(b: &[u8]) -> Option<f64> {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    parse_f64(b.get(start..).unwrap_or_default())
}

fn run(ctx: &mut KeyCtx, argv: &[Bytes], ro: bool) -> CmdResult {
    let key = arg(argv, 1)?.clone();
    let o = parse(argv, ro)?;
    let (mut elems, is_set) = elements(ctx, &key)?.unwrap_or_default();
    if let Some(dst) = &o.store {
        if shard_of(dst, ctx.shard.nshards) != ctx.shard.id {
            return Err(CmdError::err(NOT_LOCAL));
        }
    }
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
    let n = elems.len() as i64;
    let (mut start, mut end) = match o.limit {
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
    if !dontsort {
        // (element, numeric score, alpha key)
        let mut items: Vec<(Bytes, f64, Option<Bytes>)> = Vec::with_capacity(elems.len());
        for e in elems.drain(..) {
            let byval = match &by {
                Some(p) => lookup(ctx, p, &e)?,
                None => Some(e.clone()),
            };
            let mut score = 0.0;
            let mut cmp = None;
            if let Some(v) = byval {
                if alpha {
                    if by.is_some() {
                        cmp = Some(v);
                    }
                } else {
                    score = weight(&v).ok_or_else(|| {
                        CmdError::err("One or more scores can't be converted into double")
                    })?;
                }
            }
            items.push((e, score, cmp));
        }
        let by_pattern = by.is_some();
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
            if o.desc {
                ord.reverse()
            } else {
                ord
            }
        });
        elems = items.into_iter().map(|i| i.0).collect();
    } else if o.desc && !is_set {
        // BY nosort DESC walks a list or a sorted set from its end, as Redis does.
        elems.reverse();
    }
    let window: Vec<Bytes> = if start <= end && start >= 0 {
        elems
            .get(start as usize..=(end as usize))
            .map(<[Bytes]>::to_vec)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    // The output: the elements, or each GET pattern's value per element.
    let mut out: Vec<Option<Bytes>> = Vec::new();
    for e in &window {
        if o.gets.is_empty() {
            out.push(Some(e.clone()));
        }
        for g in &o.gets {
            out.push(lookup(ctx, g, e)?);
        }
    }
    let Some(dst) = o.store else {
        return Ok(Reply::Array(
            out.into_iter()
                .map(|v| v.map_or(Reply::Null, Reply::Bulk))
                .collect(),
        ));
    };
    let now = ctx.now();
    let db = ctx.db();
    db.remove(&dst);
    let stored = out.len();
    if stored > 0 {
        let mut l = List::new();
        for v in out {
            l.push(End::Tail, v.unwrap_or_default());
        }
        db.set_value(&dst, Value::List(Box::new(l)), 0, now);
    }
    // Only the destination changed (the sorted key is read): WATCH and blocked clients.
    ctx.shard.touch(ctx.db, &dst);
    Ok(Reply::Int(stored as i64))
}
