//! CLIENT subcommands that change how the server treats a connection or every client:
//! REPLY (ON/OFF/SKIP), PAUSE/UNPAUSE (`server::pause`), and client-side caching: TRACKING,
//! CACHING, GETREDIR, TRACKINGINFO (`server::tracking`). Run on the connection's shard;
//! replies and error texts are Redis 7.0.15's.

use bytes::Bytes;

use super::FrontCtx;
use crate::commands::args::{arg, is, text};
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::server::connection::ReplyMode;
use crate::server::tracking::{self, ClientTrack};
use crate::server::worker::Worker;

/// CLIENT REPLY ON|OFF|SKIP. OFF and SKIP answer nothing; SKIP while OFF changes nothing.
pub fn reply(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let v = arg(argv, 2)?;
    let c = &mut ctx.w.conns[ctx.conn];
    if is(v, "on") {
        c.reply_mode = ReplyMode::On;
        c.mute = false;
        Ok(Reply::Ok)
    } else if is(v, "off") {
        c.reply_mode = ReplyMode::Off;
        Ok(Reply::Raw(Bytes::new()))
    } else if is(v, "skip") {
        if c.reply_mode != ReplyMode::Off {
            c.reply_mode = ReplyMode::SkipNext;
        }
        Ok(Reply::Raw(Bytes::new()))
    } else {
        Err(CmdError::Syntax)
    }
}

/// CLIENT PAUSE timeout [WRITE|ALL]: every shard sees it from its next command on.
pub fn pause(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if argv.len() > 4 {
        return Err(CmdError::err(format!(
            "unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
            text(arg(argv, 1)?)
        )));
    }
    let ms = parse_i64(arg(argv, 2)?)
        .ok_or_else(|| CmdError::err("timeout is not an integer or out of range"))?;
    if ms < 0 {
        return Err(CmdError::err("timeout is negative"));
    }
    let mode = match argv.get(3) {
        None => crate::server::pause::ALL,
        Some(m) if is(m, "all") => crate::server::pause::ALL,
        Some(m) if is(m, "write") => crate::server::pause::WRITES,
        Some(_) => return Err(CmdError::err("CLIENT PAUSE mode must be WRITE or ALL")),
    };
    let end = crate::shard::now_ms().saturating_add(ms as u64);
    crate::server::pause::start(mode, end);
    ctx.w.refresh_pause();
    Ok(Reply::Ok)
}

/// CLIENT UNPAUSE: ends the pause and wakes every shard to run what it held.
pub fn unpause(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    crate::server::pause::stop();
    let me = ctx.w.eng.id;
    for s in (0..ctx.w.eng.nshards).filter(|&s| s != me) {
        ctx.w.eng.post(
            s,
            crate::server::worker::front(|tw: &mut Worker| tw.refresh_pause()),
        );
    }
    ctx.w.refresh_pause();
    Ok(Reply::Ok)
}

/// Parsed CLIENT TRACKING options.
#[derive(Default, Clone)]
struct Opts {
    on: bool,
    redirect: Option<i64>,
    bcast: bool,
    optin: bool,
    optout: bool,
    noloop: bool,
    prefixes: Vec<Bytes>,
}

/// CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT] [NOLOOP].
/// A REDIRECT id is looked up on every shard first (the reply is deferred until then).
pub fn tracking(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let mut o = Opts::default();
    let mut i = 3;
    while i < argv.len() {
        let a = arg(argv, i)?;
        let more = i + 1 < argv.len();
        if is(a, "redirect") && more {
            if o.redirect.is_some() {
                return Err(CmdError::err(
                    "A client can only redirect to a single other client",
                ));
            }
            i += 1;
            o.redirect = Some(parse_i64(arg(argv, i)?).ok_or(CmdError::NotInteger)?);
        } else if is(a, "bcast") {
            o.bcast = true;
        } else if is(a, "optin") {
            o.optin = true;
        } else if is(a, "optout") {
            o.optout = true;
        } else if is(a, "noloop") {
            o.noloop = true;
        } else if is(a, "prefix") && more {
            i += 1;
            o.prefixes.push(arg(argv, i)?.clone());
        } else {
            return Err(CmdError::Syntax);
        }
        i += 1;
    }
    let onoff = arg(argv, 2)?;
    o.on = is(onoff, "on");
    if !o.on && !is(onoff, "off") {
        return Err(CmdError::Syntax);
    }
    let Some(id) = o.redirect else {
        return match apply(ctx.w, ctx.conn, o, None)? {
            None => Ok(Reply::Ok),
            Some((me, new)) => {
                let ticket = ctx.defer();
                register_prefixes(ctx.w, me, new, ticket);
                Ok(Reply::Ok)
            }
        };
    };
    let not_found = || CmdError::err("The client ID you want redirect to does not exist");
    if id <= 0 {
        return Err(not_found());
    }
    let local = ctx
        .w
        .conns
        .iter()
        .find(|(_, c)| c.client.id == id as u64)
        .map(|(i, _)| i);
    if let Some(r) = local {
        let at = ctx.w.conn_token(r).map(|t| (ctx.w.eng.id, t));
        return match apply(ctx.w, ctx.conn, o, at)? {
            None => Ok(Reply::Ok),
            Some((me, new)) => {
                let ticket = ctx.defer();
                register_prefixes(ctx.w, me, new, ticket);
                Ok(Reply::Ok)
            }
        };
    }
    let ticket = ctx.defer();
    let conn = ctx.conn;
    ctx.w.on_all_fronts_then(
        move |tw: &mut Worker| {
            tw.conns
                .iter()
                .find(|(_, c)| c.client.id == id as u64)
                .and_then(|(i, _)| tw.conn_token(i))
                .map(|t| (tw.eng.id, t))
        },
        move |w, found: Vec<Option<(usize, u64)>>| {
            let reply = match found.into_iter().flatten().next() {
                Some(at) => match apply(w, conn, o, Some(at)) {
                    Ok(None) => Reply::Ok,
                    Ok(Some((me, new))) => return register_prefixes(w, me, new, ticket),
                    Err(e) => e.into_reply(),
                },
                None => not_found().into_reply(),
            };
            w.eng.complete(ticket, reply);
        },
    );
    Ok(Reply::Ok)
}

/// BCAST prefixes new for this client, to register on every shard before the reply.
type NewPrefixes = Option<(crate::shard::tracking::ClientRef, Vec<Bytes>)>;

/// Registers BCAST prefixes on every shard, then answers `+OK`: a write another client
/// makes after the reply, on any shard, is invalidated (as on one Redis).
fn register_prefixes(
    w: &mut Worker,
    me: crate::shard::tracking::ClientRef,
    prefixes: Vec<Bytes>,
    ticket: crate::engine::Ticket,
) {
    w.eng.on_all_shards(
        move |tw| {
            let t = tw.shard.tracking_mut();
            for p in prefixes.iter().cloned() {
                t.add_prefix(p, me);
            }
        },
        false,
        move |e, _: Vec<()>| e.complete(ticket, Reply::Ok),
    );
}

/// Applies CLIENT TRACKING once the redirect client (if any) was found. Returns the BCAST
/// prefixes still to register everywhere (`register_prefixes`).
fn apply(
    w: &mut Worker,
    idx: usize,
    o: Opts,
    redir_at: Option<(usize, u64)>,
) -> Result<NewPrefixes, CmdError> {
    if !o.on {
        tracking::disable(w, idx);
        return Ok(None);
    }
    let Some(me) = tracking::client_ref(w, idx) else {
        return Ok(None);
    };
    let Some(c) = w.conns.get_mut(idx) else {
        return Ok(None);
    };
    let cur = c.track.get_or_insert_with(Default::default);
    if !o.bcast && !o.prefixes.is_empty() {
        return Err(CmdError::err(
            "PREFIX option requires BCAST mode to be enabled",
        ));
    }
    if cur.on && cur.bcast != o.bcast {
        return Err(CmdError::err(
            "You can't switch BCAST mode on/off before disabling tracking for this client, \
             and then re-enabling it with a different mode.",
        ));
    }
    if o.bcast && (o.optin || o.optout) {
        return Err(CmdError::err(
            "OPTIN and OPTOUT are not compatible with BCAST",
        ));
    }
    if o.optin && o.optout {
        return Err(CmdError::err(
            "You can't specify both OPTIN mode and OPTOUT mode",
        ));
    }
    if (o.optin && cur.on && cur.optout) || (o.optout && cur.on && cur.optin) {
        return Err(CmdError::err(
            "You can't switch OPTIN/OPTOUT mode before disabling tracking for this client, \
             and then re-enabling it with a different mode.",
        ));
    }
    if o.bcast {
        check_prefixes(&cur.prefixes, &o.prefixes)?;
    }
    let was_on = cur.on;
    let mut new = if o.bcast && o.prefixes.is_empty() {
        vec![Bytes::new()]
    } else {
        o.prefixes
    };
    new.retain(|p| !cur.prefixes.contains(p));
    cur.prefixes.extend(new.iter().cloned());
    let prefixes = cur.prefixes.clone();
    **cur = ClientTrack {
        on: true,
        bcast: o.bcast,
        optin: o.optin,
        optout: o.optout,
        noloop: o.noloop,
        caching: cur.caching,
        redirect: o.redirect.map_or(0, |r| r as u64),
        redir_at,
        broken: false,
        prefixes,
    };
    if !was_on {
        tracking::count(true);
    }
    // This shard delivers FLUSHALL's null invalidation to its tracking clients.
    w.eng.shard.tracking_mut();
    Ok((!new.is_empty()).then_some((me, new)))
}

/// Redis's rule: no prefix of a client may be a prefix of another of its prefixes.
fn check_prefixes(existing: &[Bytes], new: &[Bytes]) -> Result<(), CmdError> {
    let overlap = |a: &Bytes, b: &Bytes| a.starts_with(b) || b.starts_with(a);
    for (i, p) in new.iter().enumerate() {
        if let Some(e) = existing.iter().find(|e| overlap(p, e)) {
            return Err(CmdError::err(format!(
                "Prefix '{}' overlaps with an existing prefix '{}'. Prefixes for a single \
                 client must not overlap.",
                text(p),
                text(e)
            )));
        }
        if let Some(q) = new.iter().skip(i + 1).find(|q| overlap(p, q)) {
            return Err(CmdError::err(format!(
                "Prefix '{}' overlaps with another provided prefix '{}'. Prefixes for a \
                 single client must not overlap.",
                text(p),
                text(q)
            )));
        }
    }
    Ok(())
}

/// CLIENT CACHING YES|NO: marks the next command in OPTIN / OPTOUT mode.
pub fn caching(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let v = arg(argv, 2)?.clone();
    let t = ctx.w.conns[ctx.conn].track.as_mut().filter(|t| t.on);
    let Some(t) = t.filter(|t| t.optin || t.optout) else {
        return Err(CmdError::err(
            "CLIENT CACHING can be called only when the client is in tracking mode with \
             OPTIN or OPTOUT mode enabled",
        ));
    };
    if is(&v, "yes") {
        if !t.optin {
            return Err(CmdError::err(
                "CLIENT CACHING YES is only valid when tracking is enabled in OPTIN mode.",
            ));
        }
        t.caching = Some(true);
    } else if is(&v, "no") {
        if !t.optout {
            return Err(CmdError::err(
                "CLIENT CACHING NO is only valid when tracking is enabled in OPTOUT mode.",
            ));
        }
        t.caching = Some(false);
    } else {
        return Err(CmdError::Syntax);
    }
    Ok(Reply::Ok)
}

/// CLIENT GETREDIR: the redirect client id, 0 without one, -1 when tracking is off.
pub fn getredir(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    let t = ctx.w.conns[ctx.conn].track.as_ref().filter(|t| t.on);
    Ok(Reply::Int(t.map_or(-1, |t| t.redirect as i64)))
}

/// CLIENT TRACKINGINFO: flags, redirect and prefixes, in Redis's order.
pub fn trackinginfo(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    let t = ctx.w.conns[ctx.conn]
        .track
        .as_ref()
        .filter(|t| t.on)
        .cloned();
    let mut flags = Vec::new();
    let (redirect, prefixes) = match &t {
        None => {
            flags.push("off");
            (-1, Vec::new())
        }
        Some(t) => {
            flags.push("on");
            if t.bcast {
                flags.push("bcast");
            }
            if t.optin {
                flags.push("optin");
                if t.caching == Some(true) {
                    flags.push("caching-yes");
                }
            }
            if t.optout {
                flags.push("optout");
                if t.caching == Some(false) {
                    flags.push("caching-no");
                }
            }
            if t.noloop {
                flags.push("noloop");
            }
            if t.broken {
                flags.push("broken_redirect");
            }
            (t.redirect as i64, t.prefixes.clone())
        }
    };
    Ok(Reply::Map(vec![
        (
            Reply::bulk("flags"),
            Reply::Set(flags.into_iter().map(Reply::bulk).collect()),
        ),
        (Reply::bulk("redirect"), Reply::Int(redirect)),
        (
            Reply::bulk("prefixes"),
            Reply::Array(prefixes.into_iter().map(Reply::Bulk).collect()),
        ),
    ]))
}
