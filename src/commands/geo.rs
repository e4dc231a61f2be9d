//! GEO commands (Redis's geo.c): GEOADD, GEODIST, GEOHASH, GEOPOS, GEORADIUS(_RO),
//! GEORADIUSBYMEMBER(_RO), GEOSEARCH and GEOSEARCHSTORE. A geo set is a sorted set whose
//! scores are 52-bit geohashes (`types::geohash` holds the arithmetic), so every ZSET
//! command works on it too. Single-key commands run on the key's shard. A search with a
//! STORE / STOREDIST destination (or GEOSEARCHSTORE) on another shard than its source runs
//! through `coord::lock::gather`, as ZRANGESTORE does: the search runs on the source's
//! shard under both shards' locks and the result is written on the destination's shard
//! before they go.
//!
//! Argument errors come in Redis's order, which depends on the data: the source's type is
//! checked first, and a FROMMEMBER / BYMEMBER member is looked up while the options are
//! read, so parsing and searching are one function (`run_search`) that runs where the
//! source lives.

use bytes::Bytes;

use super::args::{arg, is, owned};
use super::table::{CommandSpec, Exec, KeySpec, DENYOOM, KEY_R, KEY_W, READONLY, WRITE};
use super::zsets::store_zset;
use super::{ConnCtx, KeyCtx};
use crate::coord::lock::{gather_noting, Noting, WriteFn};
use crate::engine::Engine;
use crate::error::{self as e, CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::protocol::{parse_f64, parse_i64};
use crate::shard::db::Db;
use crate::shard::route::shard_of;
use crate::types::geohash::{self, Shape, ShapeKind};
use crate::types::zset::{ZAddFlags, ZAddOutcome, ZSet};

const G: &str = "geo";

/// GEORADIUS: the source, and a STORE / STOREDIST destination among the options.
const RADIUS_KEYS: KeySpec = KeySpec::single_store(1, 6);
/// GEORADIUSBYMEMBER: as GEORADIUS, one argument fewer before the options.
const MEMBER_KEYS: KeySpec = KeySpec::single_store(1, 5);

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("geoadd", -5, WRITE | DENYOOM, KeySpec::single(1), Exec::Key(geoadd))
        .key_perms(&[KEY_W])
        // Redis runs GEOADD as a ZADD: its event, and a change only when a member moved.
        .ev(crate::shard::notify::ZSET, "zadd")
        .touches(super::table::Touches::Own)
        .verbatim()
        .doc(G, "3.2.0", "Adds one or more members to a geospatial index. The key is created if it doesn't exist.",
             "key [NX | XX] [CH] longitude latitude member [longitude latitude member ...]"),
    CommandSpec::new("geodist", -4, READONLY, KeySpec::single(1), Exec::Key(geodist))
        .doc(G, "3.2.0", "Returns the distance between two members of a geospatial index.",
             "key member1 member2 [M | KM | FT | MI]"),
    CommandSpec::new("geohash", -2, READONLY, KeySpec::single(1), Exec::Key(geohash_cmd))
        .doc(G, "3.2.0", "Returns members from a geospatial index as geohash strings.",
             "key [member [member ...]]"),
    CommandSpec::new("geopos", -2, READONLY, KeySpec::single(1), Exec::Key(geopos))
        .doc(G, "3.2.0", "Returns the longitude and latitude of members from a geospatial index.",
             "key [member [member ...]]"),
    CommandSpec::new("georadius", -6, WRITE | DENYOOM, RADIUS_KEYS, Exec::Key(search))
        .key_perms(&[KEY_R, KEY_W])
        .ev_store(crate::shard::notify::ZSET, "georadiusstore", 0)
        .cross(search_cross)
        .touches(super::table::Touches::AllBut(1))
        .doc(G, "3.2.0", "Queries a geospatial index for members within a distance from a coordinate, optionally stores the result.",
             "key longitude latitude radius <M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC] [STORE key | STOREDIST key]"),
    CommandSpec::new("georadius_ro", -6, READONLY, KeySpec::single(1), Exec::Key(search))
        .doc(G, "3.2.10", "Returns members from a geospatial index that are within a distance from a coordinate.",
             "key longitude latitude radius <M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC]"),
    CommandSpec::new("georadiusbymember", -5, WRITE | DENYOOM, MEMBER_KEYS, Exec::Key(search))
        .key_perms(&[KEY_R, KEY_W])
        .ev_store(crate::shard::notify::ZSET, "georadiusstore", 0)
        .cross(search_cross)
        .touches(super::table::Touches::AllBut(1))
        .doc(G, "3.2.0", "Queries a geospatial index for members within a distance from a member, optionally stores the result.",
             "key member radius <M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC] [STORE key | STOREDIST key]"),
    CommandSpec::new("georadiusbymember_ro", -5, READONLY, KeySpec::single(1), Exec::Key(search))
        .doc(G, "3.2.10", "Returns members from a geospatial index that are within a distance from a member.",
             "key member radius <M | KM | FT | MI> [WITHCOORD] [WITHDIST] [WITHHASH] [COUNT count [ANY]] [ASC | DESC]"),
    CommandSpec::new("geosearch", -7, READONLY, KeySpec::single(1), Exec::Key(search))
        .doc(G, "6.2.0", "Queries a geospatial index for members inside an area of a box or a circle.",
             "key <FROMMEMBER member | FROMLONLAT longitude latitude> <BYRADIUS radius <M | KM | FT | MI> | BYBOX width height <M | KM | FT | MI>> [ASC | DESC] [COUNT count [ANY]] [WITHCOORD] [WITHDIST] [WITHHASH]"),
    CommandSpec::new("geosearchstore", -8, WRITE | DENYOOM, KeySpec::range(1, 2, 1), Exec::Key(search))
        .key_perms(&[KEY_W, KEY_R])
        .ev_store(crate::shard::notify::ZSET, "geosearchstore", 1)
        .cross(search_cross)
        .touches(super::table::Touches::AllBut(2))
        .doc(G, "6.2.0", "Queries a geospatial index for members inside an area of a box or a circle, optionally stores the result.",
             "destination source <FROMMEMBER member | FROMLONLAT longitude latitude> <BYRADIUS radius <M | KM | FT | MI> | BYBOX width height <M | KM | FT | MI>> [ASC | DESC] [COUNT count [ANY]] [STOREDIST]"),
];

/// `longitude latitude` at `i`, `i + 1`: floats within Redis's limits.
fn lonlat(argv: &[Bytes], i: usize) -> Result<(f64, f64), CmdError> {
    let lon = parse_f64(arg(argv, i)?).ok_or(CmdError::NotFloat)?;
    let lat = parse_f64(arg(argv, i + 1)?).ok_or(CmdError::NotFloat)?;
    if !(geohash::LON_MIN..=geohash::LON_MAX).contains(&lon)
        || !(geohash::LAT_MIN..=geohash::LAT_MAX).contains(&lat)
    {
        return Err(CmdError::coded(format!(
            "{} {lon:.6},{lat:.6}",
            e::GEO_BAD_PAIR
        )));
    }
    Ok((lon, lat))
}

/// Meters per unit (`extractUnitOrReply`).
fn unit(a: &[u8]) -> Result<f64, CmdError> {
    if is(a, "m") {
        Ok(1.0)
    } else if is(a, "km") {
        Ok(1000.0)
    } else if is(a, "ft") {
        Ok(0.3048)
    } else if is(a, "mi") {
        Ok(1609.34)
    } else {
        Err(CmdError::coded(e::GEO_UNIT))
    }
}

/// `radius unit` at `i`: (radius, meters per unit).
fn radius_arg(argv: &[Bytes], i: usize) -> Result<(f64, f64), CmdError> {
    let r = parse_f64(arg(argv, i)?).ok_or_else(|| CmdError::coded(e::GEO_RADIUS_NOT_NUMBER))?;
    if r < 0.0 {
        return Err(CmdError::coded(e::GEO_RADIUS_NEGATIVE));
    }
    Ok((r, unit(arg(argv, i + 1)?)?))
}

/// `width height unit` at `i`: (width, height, meters per unit).
fn box_arg(argv: &[Bytes], i: usize) -> Result<(f64, f64, f64), CmdError> {
    let w = parse_f64(arg(argv, i)?).ok_or_else(|| CmdError::coded(e::GEO_WIDTH_NOT_NUMBER))?;
    let h =
        parse_f64(arg(argv, i + 1)?).ok_or_else(|| CmdError::coded(e::GEO_HEIGHT_NOT_NUMBER))?;
    if h < 0.0 || w < 0.0 {
        return Err(CmdError::coded(e::GEO_BOX_NEGATIVE));
    }
    Ok((w, h, unit(arg(argv, i + 2)?)?))
}

/// A member's position, or Redis's error when it is not in the set.
fn member_pos(z: &ZSet, m: &[u8]) -> Result<(f64, f64), CmdError> {
    z.score(m)
        .map(geohash::decode_score)
        .ok_or_else(|| CmdError::coded(e::GEO_NO_MEMBER))
}

/// A coordinate as `addReplyHumanLongDouble` sends it: a bulk string in RESP2, a double in
/// RESP3, both `%.17Lf` without trailing zeros.
fn coord_reply(v: f64, resp: u8) -> Reply {
    let s = geohash::fmt_human(v);
    if resp > 2 {
        Reply::Raw(Bytes::from(format!(",{s}\r\n")))
    } else {
        Reply::bulk(s)
    }
}

/// GEOADD key [NX|XX] [CH] lon lat member ...: ZADD with geohash scores.
fn geoadd(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let key = arg(argv, 1)?;
    let mut flags = ZAddFlags::default();
    let mut ch = false;
    let mut i = 2;
    while let Some(a) = argv.get(i) {
        if is(a, "nx") {
            flags.nx = true;
        } else if is(a, "xx") {
            flags.xx = true;
        } else if is(a, "ch") {
            ch = true;
        } else {
            break;
        }
        i += 1;
    }
    let rest = argv.get(i..).unwrap_or_default();
    if rest.len() % 3 != 0 || (flags.xx && flags.nx) {
        return Err(CmdError::Syntax);
    }
    let mut items = Vec::with_capacity(rest.len() / 3);
    for t in rest.chunks_exact(3) {
        let (lon, lat) = lonlat(t, 0)?;
        let score = geohash::score_of(lon, lat).ok_or(CmdError::NotFloat)?;
        items.push((score as f64, arg(t, 2)?));
    }
    let now = ctx.now();
    let db = ctx.db();
    let z = if flags.xx {
        match db.get_zset_mut(key, now)? {
            Some(z) => z,
            None => return Ok(Reply::Int(0)),
        }
    } else {
        db.zset_or_create(key, now)?
    };
    let mut changed = 0i64;
    let mut added = 0i64;
    for (s, m) in items {
        match z.add(s, owned(m), flags) {
            Ok(ZAddOutcome::Added(_)) => {
                added += 1;
                changed += 1;
            }
            Ok(ZAddOutcome::Updated(_)) => changed += 1,
            Ok(_) => {}
            Err(err) => {
                db.remove_if_empty(key);
                return Err(CmdError::coded(err));
            }
        }
    }
    db.remove_if_empty(key);
    if changed > 0 {
        ctx.shard.touch(ctx.db, key);
    }
    Ok(Reply::Int(if ch { changed } else { added }))
}

/// GEODIST key m1 m2 [unit]: `%.4f` in the unit, nil when a member or the key is missing.
fn geodist(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let to_meter = match argv.len() {
        5 => unit(arg(argv, 4)?)?,
        n if n > 5 => return Err(CmdError::Syntax),
        _ => 1.0,
    };
    let (key, m1, m2) = (arg(argv, 1)?, arg(argv, 2)?, arg(argv, 3)?);
    let now = ctx.now();
    let Some(z) = ctx.db().get_zset(key, now)? else {
        return Ok(Reply::Null);
    };
    let (Some(s1), Some(s2)) = (z.score(m1), z.score(m2)) else {
        return Ok(Reply::Null);
    };
    let (a, b) = (geohash::decode_score(s1), geohash::decode_score(s2));
    let d = geohash::distance(a.0, a.1, b.0, b.1) / to_meter;
    Ok(Reply::bulk(geohash::fmt_distance(d)))
}

/// GEOHASH key member ...: 11-character strings, nil for missing members.
fn geohash_cmd(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let now = ctx.now();
    let z = ctx.db().get_zset(arg(argv, 1)?, now)?;
    let members = argv.get(2..).unwrap_or_default();
    Ok(Reply::Array(
        members
            .iter()
            .map(|m| {
                z.and_then(|z| z.score(m))
                    .and_then(geohash::geohash_string)
                    .map_or(Reply::Null, |s| Reply::bulk(Bytes::copy_from_slice(&s)))
            })
            .collect(),
    ))
}

/// GEOPOS key member ...: [longitude, latitude] pairs, a null array for missing members.
fn geopos(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let resp = ctx.resp;
    let now = ctx.now();
    let z = ctx.db().get_zset(arg(argv, 1)?, now)?;
    let members = argv.get(2..).unwrap_or_default();
    Ok(Reply::Array(
        members
            .iter()
            .map(|m| match z.and_then(|z| z.score(m)) {
                None => Reply::NullArray,
                Some(s) => {
                    let (lon, lat) = geohash::decode_score(s);
                    Reply::Array(vec![coord_reply(lon, resp), coord_reply(lat, resp)])
                }
            })
            .collect(),
    ))
}

// ---- GEORADIUS / GEORADIUSBYMEMBER / GEOSEARCH / GEOSEARCHSTORE ----------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Radius,
    RadiusRo,
    Member,
    MemberRo,
    Search,
    SearchStore,
}

impl Kind {
    fn of(name: &[u8]) -> Option<Kind> {
        [
            ("georadius", Kind::Radius),
            ("georadius_ro", Kind::RadiusRo),
            ("georadiusbymember", Kind::Member),
            ("georadiusbymember_ro", Kind::MemberRo),
            ("geosearch", Kind::Search),
            ("geosearchstore", Kind::SearchStore),
        ]
        .into_iter()
        .find(|(n, _)| is(name, n))
        .map(|(_, k)| k)
    }

    fn search(self) -> bool {
        matches!(self, Kind::Search | Kind::SearchStore)
    }

    /// The STORE / STOREDIST options with a key (not the _RO forms, not GEOSEARCH*).
    fn store_option(self) -> bool {
        matches!(self, Kind::Radius | Kind::Member)
    }

    fn src_index(self) -> usize {
        if self == Kind::SearchStore {
            2
        } else {
            1
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    None,
    Asc,
    Desc,
}

/// One match: the member, its score, position and distance from the centre (meters).
struct Point {
    member: Bytes,
    score: f64,
    lon: f64,
    lat: f64,
    dist: f64,
}

/// What a search produced: a reply, or the (member, score) pairs to store at `dst`.
enum Outcome {
    Reply(Reply),
    Store {
        dst: Bytes,
        items: Vec<(Bytes, f64)>,
    },
}

/// Redis's `membersOfAllNeighbors`: the members of every search cell that lie within the
/// shape, in cell order then score order; with `limit` (COUNT ... ANY) it stops as soon as
/// that many were found.
fn collect(z: &ZSet, shape: &Shape, limit: usize) -> Vec<Point> {
    let mut out: Vec<Point> = Vec::new();
    let full = |out: &Vec<Point>| limit > 0 && out.len() >= limit;
    for cell in geohash::search_cells(shape) {
        if full(&out) {
            break;
        }
        let (min, max) = cell.score_range();
        z.visit_score_range(min, max, &mut |score, member| {
            let (lon, lat) = geohash::decode_score(score);
            if let Some(dist) = geohash::distance_if_within(shape, lon, lat) {
                out.push(Point {
                    member: Bytes::copy_from_slice(member),
                    score,
                    lon,
                    lat,
                    dist,
                });
            }
            !full(&out)
        });
    }
    out
}

/// Parses a search's arguments and runs it against `db`, in the order Redis's
/// `georadiusGeneric` does both (errors included).
fn run_search(db: &mut Db, now: u64, argv: &[Bytes], resp: u8) -> Result<Outcome, CmdError> {
    let name = arg(argv, 0)?;
    let kind = Kind::of(name).ok_or(CmdError::Syntax)?;
    let z = db.get_zset(arg(argv, kind.src_index())?, now)?;
    let mut center: Option<(f64, f64)> = None;
    let mut shape_kind: Option<ShapeKind> = None;
    let mut conversion = 1.0;
    let mut store: Option<Bytes> = None;
    let mut storedist = false;
    let base = match kind {
        Kind::Radius | Kind::RadiusRo => {
            center = Some(lonlat(argv, 2)?);
            let (r, c) = radius_arg(argv, 4)?;
            (shape_kind, conversion) = (Some(ShapeKind::Radius(r)), c);
            6
        }
        Kind::Member | Kind::MemberRo => {
            // Without the key Redis reads the options only, to pick the empty reply.
            if let Some(z) = z {
                center = Some(member_pos(z, arg(argv, 2)?)?);
                let (r, c) = radius_arg(argv, 3)?;
                (shape_kind, conversion) = (Some(ShapeKind::Radius(r)), c);
            }
            5
        }
        Kind::Search => 2,
        Kind::SearchStore => {
            store = Some(owned(arg(argv, 1)?));
            3
        }
    };
    let (mut withdist, mut withhash, mut withcoord) = (false, false, false);
    let (mut frommember, mut fromloc, mut byradius, mut bybox) = (false, false, false, false);
    let mut sort = Sort::None;
    let mut any = false;
    let mut count: i64 = 0;
    let mut i = base;
    while let Some(a) = argv.get(i) {
        let left = argv.len() - i - 1;
        if is(a, "withdist") {
            withdist = true;
        } else if is(a, "withhash") {
            withhash = true;
        } else if is(a, "withcoord") {
            withcoord = true;
        } else if is(a, "any") {
            any = true;
        } else if is(a, "asc") {
            sort = Sort::Asc;
        } else if is(a, "desc") {
            sort = Sort::Desc;
        } else if is(a, "count") && left >= 1 {
            count = parse_i64(arg(argv, i + 1)?).ok_or(CmdError::NotInteger)?;
            if count <= 0 {
                return Err(CmdError::coded(e::GEO_COUNT));
            }
            i += 1;
        } else if (is(a, "store") || is(a, "storedist")) && left >= 1 && kind.store_option() {
            store = Some(owned(arg(argv, i + 1)?));
            storedist = is(a, "storedist");
            i += 1;
        } else if is(a, "storedist") && kind == Kind::SearchStore {
            storedist = true;
        } else if is(a, "frommember") && left >= 1 && kind.search() && !fromloc {
            if let Some(z) = z {
                center = Some(member_pos(z, arg(argv, i + 1)?)?);
            }
            frommember = true;
            i += 1;
        } else if is(a, "fromlonlat") && left >= 2 && kind.search() && !frommember {
            center = Some(lonlat(argv, i + 1)?);
            fromloc = true;
            i += 2;
        } else if is(a, "byradius") && left >= 2 && kind.search() && !bybox {
            let (r, c) = radius_arg(argv, i + 1)?;
            (shape_kind, conversion) = (Some(ShapeKind::Radius(r)), c);
            byradius = true;
            i += 2;
        } else if is(a, "bybox") && left >= 3 && kind.search() && !byradius {
            let (width, height, c) = box_arg(argv, i + 1)?;
            (shape_kind, conversion) = (Some(ShapeKind::Box { width, height }), c);
            bybox = true;
            i += 3;
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    if store.is_some() && (withdist || withhash || withcoord) {
        return Err(CmdError::coded(if kind == Kind::SearchStore {
            e::GEOSEARCHSTORE_WITH
        } else {
            e::GEO_STORE_WITH
        }));
    }
    let typed = String::from_utf8_lossy(name);
    if kind.search() && !(frommember || fromloc) {
        return Err(CmdError::coded(format!("{} {typed}", e::GEO_FROM)));
    }
    if kind.search() && !(byradius || bybox) {
        return Err(CmdError::coded(format!("{} {typed}", e::GEO_BY)));
    }
    if any && count == 0 {
        return Err(CmdError::coded(e::GEO_ANY));
    }
    let (Some(z), Some((lon, lat)), Some(sk)) = (z, center, shape_kind) else {
        // No source key: an empty result (a STORE deletes its destination).
        return Ok(match store {
            Some(dst) => Outcome::Store {
                dst,
                items: Vec::new(),
            },
            None => Outcome::Reply(Reply::Array(Vec::new())),
        });
    };
    if count != 0 && sort == Sort::None && !any {
        sort = Sort::Asc;
    }
    let shape = Shape {
        lon,
        lat,
        conversion,
        kind: sk,
    };
    let limit = if any {
        usize::try_from(count).unwrap_or(usize::MAX)
    } else {
        0
    };
    let mut pts = collect(z, &shape, limit);
    if pts.is_empty() && store.is_none() {
        return Ok(Outcome::Reply(Reply::Array(Vec::new())));
    }
    let returned = match usize::try_from(count) {
        Ok(c) if c > 0 && c < pts.len() => c,
        _ => pts.len(),
    };
    if sort != Sort::None {
        let desc = sort == Sort::Desc;
        let cmp = move |a: &Point, b: &Point| -> i32 {
            let c = if a.dist > b.dist {
                1
            } else if a.dist == b.dist {
                0
            } else {
                -1
            };
            if desc {
                -c
            } else {
                c
            }
        };
        if returned == pts.len() {
            // Stable, as glibc's merge sort behind Redis's qsort: equal distances keep
            // the cell and score order.
            pts.sort_by(|a, b| cmp(a, b).cmp(&0));
        } else {
            // Redis sorts only the first `returned` places with its own quicksort, whose
            // order of equal distances this reproduces.
            pqsort(&mut pts, 0, returned - 1, &cmp);
        }
    }
    pts.truncate(returned);
    if let Some(dst) = store {
        let items = pts
            .into_iter()
            .map(|p| {
                let s = if storedist {
                    p.dist / conversion
                } else {
                    p.score
                };
                (p.member, s)
            })
            .collect();
        return Ok(Outcome::Store { dst, items });
    }
    let with = withdist || withhash || withcoord;
    let out = pts
        .into_iter()
        .map(|p| {
            if !with {
                return Reply::Bulk(p.member);
            }
            let mut v = vec![Reply::Bulk(p.member)];
            if withdist {
                v.push(Reply::bulk(geohash::fmt_distance(p.dist / conversion)));
            }
            if withhash {
                v.push(Reply::Int(p.score as i64));
            }
            if withcoord {
                v.push(Reply::Array(vec![
                    coord_reply(p.lon, resp),
                    coord_reply(p.lat, resp),
                ]));
            }
            Reply::Array(v)
        })
        .collect();
    Ok(Outcome::Reply(Reply::Array(out)))
}

/// Redis's `pqsort` (NetBSD's Bentley-McIlroy quicksort, recursing only into the parts
/// that overlap places `lrange..=rrange`): after it those places hold what a full sort
/// would put there, and equal elements end up where Redis's puts them.
fn pqsort<T>(v: &mut [T], lrange: usize, rrange: usize, cmp: &dyn Fn(&T, &T) -> i32) {
    pq_part(v, 0, v.len(), lrange, rrange, cmp);
}

/// Whether the part `start..start + len` overlaps the places to sort.
fn pq_wanted(start: usize, len: usize, l: usize, r: usize) -> bool {
    let end = start + len;
    !((l < start && r < start) || (l >= end && r >= end))
}

fn med3<T>(v: &[T], a: usize, b: usize, c: usize, cmp: &dyn Fn(&T, &T) -> i32) -> usize {
    let at = |i: usize| &v[i];
    if cmp(at(a), at(b)) < 0 {
        if cmp(at(b), at(c)) < 0 {
            b
        } else if cmp(at(a), at(c)) < 0 {
            c
        } else {
            a
        }
    } else if cmp(at(b), at(c)) > 0 {
        b
    } else if cmp(at(a), at(c)) < 0 {
        a
    } else {
        c
    }
}

fn vecswap<T>(v: &mut [T], a: usize, b: usize, n: usize) {
    for i in 0..n {
        v.swap(a + i, b + i);
    }
}

// Indexes below stay inside `a..a + n`, which the callers keep inside `v`.
#[allow(clippy::indexing_slicing)]
fn pq_part<T>(
    v: &mut [T],
    mut a: usize,
    mut n: usize,
    l: usize,
    r: usize,
    cmp: &dyn Fn(&T, &T) -> i32,
) {
    loop {
        if n < 7 {
            for pm in a + 1..a + n {
                let mut pl = pm;
                while pl > a && cmp(&v[pl - 1], &v[pl]) > 0 {
                    v.swap(pl, pl - 1);
                    pl -= 1;
                }
            }
            return;
        }
        let mut pm = a + n / 2;
        if n > 7 {
            let mut pl = a;
            let mut pn = a + n - 1;
            if n > 40 {
                let d = n / 8;
                pl = med3(v, pl, pl + d, pl + 2 * d, cmp);
                pm = med3(v, pm - d, pm, pm + d, cmp);
                pn = med3(v, pn - 2 * d, pn - d, pn, cmp);
            }
            pm = med3(v, pl, pm, pn, cmp);
        }
        v.swap(a, pm);
        let (mut pa, mut pb) = (a + 1, a + 1);
        let (mut pc, mut pd) = (a + n - 1, a + n - 1);
        loop {
            while pb <= pc {
                let c = cmp(&v[pb], &v[a]);
                if c > 0 {
                    break;
                }
                if c == 0 {
                    v.swap(pa, pb);
                    pa += 1;
                }
                pb += 1;
            }
            while pb <= pc {
                let c = cmp(&v[pc], &v[a]);
                if c < 0 {
                    break;
                }
                if c == 0 {
                    v.swap(pc, pd);
                    pd -= 1;
                }
                pc -= 1;
            }
            if pb > pc {
                break;
            }
            v.swap(pb, pc);
            pb += 1;
            pc -= 1;
        }
        let pn = a + n;
        let s = (pa - a).min(pb - pa);
        vecswap(v, a, pb - s, s);
        let s = (pd - pc).min(pn - pd - 1);
        vecswap(v, pb, pn - s, s);
        let left = pb - pa;
        if left > 1 && pq_wanted(a, left, l, r) {
            pq_part(v, a, left, l, r, cmp);
        }
        let right = pd - pc;
        if right > 1 {
            a = pn - right;
            n = right;
            if pq_wanted(a, n, l, r) {
                continue;
            }
        }
        return;
    }
}

/// Every search form with its keys on this shard.
fn search(ctx: &mut KeyCtx, argv: &[Bytes]) -> CmdResult {
    let resp = ctx.resp;
    let now = ctx.now();
    let db = ctx.db();
    match run_search(db, now, argv, resp)? {
        Outcome::Reply(r) => Ok(r),
        Outcome::Store { dst, items } => Ok(Reply::Int(store_zset(
            db,
            &dst,
            ZSet::from_pairs(items),
            now,
        ))),
    }
}

/// A STORE form whose destination lives on another shard than its source: the search runs
/// on the source's shard and the result is written on the destination's, both locked.
fn search_cross(ctx: &mut ConnCtx, argv: Vec<Bytes>) -> CmdResult {
    let kind = Kind::of(arg(&argv, 0)?).ok_or(CmdError::Syntax)?;
    let src = owned(arg(&argv, kind.src_index())?);
    let n = ctx.eng().nshards;
    let keys = match kind {
        Kind::Radius => RADIUS_KEYS,
        Kind::Member => MEMBER_KEYS,
        _ => KeySpec::range(1, 2, 1),
    };
    // Every possible destination's shard is locked (the last STORE wins when parsed).
    let mut extra: Vec<usize> = keys
        .key_positions(&argv)
        .filter_map(|i| argv.get(i))
        .map(|k| shard_of(k, n))
        .collect();
    extra.sort_unstable();
    extra.dedup();
    let db = ctx.client().db;
    let resp = ctx.client().resp;
    let ticket = ctx.defer();
    let locked = extra.clone();
    gather_noting(
        ctx.eng(),
        Some(Noting {
            db,
            argv: argv.to_vec(),
        }),
        vec![src],
        extra,
        move |w: &mut Engine, _k: &Bytes| -> Result<Outcome, CmdError> {
            let now = w.shard.now_ms;
            run_search(w.shard.db_mut(db), now, &argv, resp)
        },
        move |read| match read.into_iter().next() {
            None => (Reply::Array(Vec::new()), Vec::new()),
            Some(Err(err)) => (err.into_reply(), Vec::new()),
            Some(Ok(Outcome::Reply(r))) => (r, Vec::new()),
            Some(Ok(Outcome::Store { dst, items })) => {
                let owner = shard_of(&dst, n);
                if !locked.contains(&owner) {
                    return (CmdError::coded(e::CROSSSLOT).into_reply(), Vec::new());
                }
                let z = ZSet::from_pairs(items);
                let reply = Reply::Int(z.len() as i64);
                let write: WriteFn = Box::new(move |tw: &mut Engine| {
                    tw.shard.touch(db, &dst);
                    let now = tw.shard.now_ms;
                    store_zset(tw.shard.db_mut(db), &dst, z, now);
                });
                (reply, vec![(owner, write)])
            }
        },
        move |w, r| w.complete(ticket, r),
    );
    Ok(Reply::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(parts: &[&str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn store_destinations_are_keys() {
        let a = argv(&[
            "georadius",
            "src",
            "1",
            "2",
            "3",
            "km",
            "COUNT",
            "store",
            "STORE",
            "d1",
            "storedist",
            "d2",
        ]);
        assert_eq!(
            RADIUS_KEYS.key_positions(&a).collect::<Vec<_>>(),
            vec![1, 9, 11]
        );
        let b = argv(&["georadiusbymember", "src", "m", "3", "km", "STORE"]);
        assert_eq!(MEMBER_KEYS.key_positions(&b).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn pqsort_sorts_the_asked_places() {
        let mut x: u64 = 12345;
        for n in [1usize, 5, 7, 8, 40, 41, 100, 500] {
            for k in [1usize, 3, n / 2 + 1, n] {
                let k = k.min(n);
                let mut v: Vec<u32> = (0..n)
                    .map(|_| {
                        x = x
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((x >> 33) % 50) as u32
                    })
                    .collect();
                let mut want = v.clone();
                want.sort_unstable();
                let cmp = |a: &u32, b: &u32| (*a as i32) - (*b as i32);
                pqsort(&mut v, 0, k - 1, &cmp);
                assert_eq!(&v[..k], &want[..k], "n={n} k={k}");
            }
        }
    }

    #[test]
    fn lonlat_errors_match_redis() {
        let a = argv(&["x", "200", "10"]);
        assert_eq!(
            lonlat(&a, 1).unwrap_err().to_string(),
            "ERR invalid longitude,latitude pair 200.000000,10.000000"
        );
        let a = argv(&["x", "abc", "10"]);
        assert_eq!(lonlat(&a, 1).unwrap_err(), CmdError::NotFloat);
        assert!(unit(b"KM").is_ok() && unit(b"yd").is_err());
    }
}
