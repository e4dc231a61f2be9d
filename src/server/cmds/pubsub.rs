//! Pub/Sub commands (Redis's pubsub.c): SUBSCRIBE, UNSUBSCRIBE, PSUBSCRIBE, PUNSUBSCRIBE,
//! PUBLISH and PUBSUB, and Redis 7.0's sharded forms SSUBSCRIBE, SUNSUBSCRIBE and SPUBLISH
//! (a separate namespace, fanned out like PUBLISH; see `server::pubsub`). They run on the connection's own shard. Subscriptions live on that
//! shard (`server::pubsub`); PUBLISH delivers on its own shard at once and fans out to the
//! others, replying with the sum of the receivers; PUBSUB's introspection gathers from every
//! shard. Also holds the RESP2 subscribed-mode check the dispatcher runs before any command.

use bytes::Bytes;

use super::FrontCtx;
use crate::commands::args::{arg, owned, text};
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, FAST, LOADING, MAY_REPLICATE, NOSCRIPT, PUBSUB,
    PUBSUB as PUBSUB_FLAG, STALE,
};
use crate::engine::Engine;
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;
use crate::server::connection::Conn;
use crate::server::pubsub;
use crate::server::worker::{FrontFn, Worker};

const G: &str = "pubsub";
const SUB_FLAGS: u32 = PUBSUB_FLAG | NOSCRIPT | LOADING | STALE;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("subscribe", -2, SUB_FLAGS, KeySpec::none(), Exec::Conn(front!(subscribe)))
        .doc(G, "2.0.0", "Listen for messages published to the given channels", "channel [channel ...]"),
    CommandSpec::new("unsubscribe", -1, SUB_FLAGS, KeySpec::none(), Exec::Conn(front!(unsubscribe)))
        .doc(G, "2.0.0", "Stop listening for messages posted to the given channels", "[channel [channel ...]]"),
    CommandSpec::new("psubscribe", -2, SUB_FLAGS, KeySpec::none(), Exec::Conn(front!(psubscribe)))
        .doc(G, "2.0.0", "Listen for messages published to channels matching the given patterns", "pattern [pattern ...]"),
    CommandSpec::new("punsubscribe", -1, SUB_FLAGS, KeySpec::none(), Exec::Conn(front!(punsubscribe)))
        .doc(G, "2.0.0", "Stop listening for messages posted to channels matching the given patterns", "[pattern [pattern ...]]"),
    CommandSpec::new("publish", 3, MAY_REPLICATE | PUBSUB_FLAG | LOADING | STALE | FAST, KeySpec::none(), Exec::Conn(front!(publish)))
        .doc(G, "2.0.0", "Post a message to a channel", "channel message"),
    CommandSpec::new("ssubscribe", -2, SUB_FLAGS, KeySpec::none(), Exec::Conn(front!(ssubscribe)))
        .key_perms(&[0])
        .doc(G, "7.0.0", "Listens for messages published to shard channels.", "shardchannel [shardchannel ...]"),
    CommandSpec::new("sunsubscribe", -1, SUB_FLAGS, KeySpec::none(), Exec::Conn(front!(sunsubscribe)))
        .key_perms(&[0])
        .doc(G, "7.0.0", "Stops listening to messages posted to shard channels.", "[shardchannel [shardchannel ...]]"),
    CommandSpec::new("spublish", 3, MAY_REPLICATE | PUBSUB_FLAG | LOADING | STALE | FAST, KeySpec::none(), Exec::Conn(front!(spublish)))
        .key_perms(&[0])
        .doc(G, "7.0.0", "Post a message to a shard channel", "shardchannel message"),
    CommandSpec::new("pubsub", -2, 0, KeySpec::none(), Exec::Conn(front!(pubsub_cmd)))
        .sub_flags(&[
            ("help", LOADING | STALE, 0),
            ("numsub", PUBSUB | LOADING | STALE, 0),
            ("channels", PUBSUB | LOADING | STALE, 0),
            ("numpat", PUBSUB | LOADING | STALE, 0),
            ("shardnumsub", PUBSUB | LOADING | STALE, 0),
            ("shardchannels", PUBSUB | LOADING | STALE, 0),
        ])
        .doc(G, "2.8.0", "A container for Pub/Sub commands", "subcommand [argument ...]")
        .subs(&[
            ("help", 2, ""),
            ("numsub", -2, "[channel [channel ...]]"),
            ("channels", -2, "[pattern]"),
            ("numpat", 2, ""),
            ("shardnumsub", -2, "[shardchannel [shardchannel ...]]"),
            ("shardchannels", -2, "[pattern]"),
        ]),
];

/// Commands a RESP2 client may run while subscribed.
const ALLOWED_SUBSCRIBED: &[&str] = &[
    "subscribe",
    "unsubscribe",
    "psubscribe",
    "punsubscribe",
    "ssubscribe",
    "sunsubscribe",
    "ping",
    "quit",
    "reset",
];

/// The subscribed-mode restriction (RESP2 only): the error for a command this client may not
/// run now, or `None`. Container commands with an unknown subcommand or a subcommand arity
/// error are left to their handler, since Redis reports those first.
pub fn refused_when_subscribed(c: &Conn, spec: &CommandSpec, argv: &[Bytes]) -> Option<CmdError> {
    if c.client.resp != 2 || !c.subs.active() || ALLOWED_SUBSCRIBED.contains(&spec.name) {
        return None;
    }
    if spec.subcommands.is_empty() {
        return Some(CmdError::subscribed_context(spec.name));
    }
    let sub = argv.get(1)?;
    let (name, arity, _) = spec
        .subcommands
        .iter()
        .find(|(n, _, _)| sub.eq_ignore_ascii_case(n.as_bytes()))?;
    let n = argv.len() as i32;
    let arity_ok = if *arity > 0 { n == *arity } else { n >= -arity };
    arity_ok.then(|| CmdError::subscribed_context(&format!("{}|{}", spec.name, name)))
}

/// The confirmations as the command's reply. They are pushes in Redis, so CLIENT REPLY
/// OFF / SKIP does not drop them: a muted client gets them written directly.
fn frames(ctx: &mut FrontCtx, out: Vec<u8>) -> Reply {
    match ctx.w.conns.get_mut(ctx.conn) {
        Some(c) if c.mute && !ctx.w.eng.tx.nested() => {
            c.push_raw(&out);
            Reply::Raw(Bytes::new())
        }
        _ => Reply::Raw(Bytes::from(out)),
    }
}

/// Appends one confirmation frame: `[kind, name-or-nil, count]` (a push in RESP3).
fn confirm(out: &mut Vec<u8>, resp: u8, kind: &'static str, name: Reply, count: usize) {
    Reply::Push(vec![Reply::bulk(kind), name, Reply::Int(count as i64)]).encode(resp, out);
}

fn subscribe(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    subscribe_to(ctx, argv, false)
}

fn psubscribe(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    subscribe_to(ctx, argv, true)
}

fn unsubscribe(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    unsubscribe_from(ctx, argv, false)
}

fn punsubscribe(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    unsubscribe_from(ctx, argv, true)
}

/// One confirmation per argument, repeated names included, with the running count.
fn subscribe_to(ctx: &mut FrontCtx, argv: &[Bytes], pattern: bool) -> CmdResult {
    let resp = ctx.client().resp;
    let kind = if pattern { "psubscribe" } else { "subscribe" };
    let mut out = Vec::new();
    for name in argv.iter().skip(1) {
        let (_, n) = pubsub::subscribe(ctx.w, ctx.conn, owned(name), pattern);
        confirm(&mut out, resp, kind, Reply::Bulk(name.clone()), n);
    }
    Ok(frames(ctx, out))
}

/// Without arguments: every subscription of that kind, or one `nil` frame when there is none.
fn unsubscribe_from(ctx: &mut FrontCtx, argv: &[Bytes], pattern: bool) -> CmdResult {
    let resp = ctx.client().resp;
    let kind = if pattern {
        "punsubscribe"
    } else {
        "unsubscribe"
    };
    let names: Vec<Bytes> = if argv.len() > 1 {
        argv.iter().skip(1).cloned().collect()
    } else {
        ctx.w
            .conns
            .get(ctx.conn)
            .map(|c| c.subs.ordered(pattern))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    if names.is_empty() {
        let n = ctx.w.conns.get(ctx.conn).map_or(0, |c| c.subs.count());
        confirm(&mut out, resp, kind, Reply::Null, n);
    }
    for name in names {
        let (_, n) = pubsub::unsubscribe(ctx.w, ctx.conn, &name, pattern);
        confirm(&mut out, resp, kind, Reply::Bulk(name), n);
    }
    Ok(frames(ctx, out))
}

/// SSUBSCRIBE: one confirmation per argument with the shard channel count. Refused inside
/// a transaction, as Redis refuses it to a client that may not block.
fn ssubscribe(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    if ctx.w.eng.tx.nested() {
        return Err(CmdError::coded(crate::error::SSUBSCRIBE_DENY_BLOCKING));
    }
    let resp = ctx.client().resp;
    let mut out = Vec::new();
    for name in argv.iter().skip(1) {
        let n = pubsub::ssubscribe(ctx.w, ctx.conn, owned(name));
        confirm(&mut out, resp, "ssubscribe", Reply::Bulk(name.clone()), n);
    }
    Ok(frames(ctx, out))
}

/// SUNSUBSCRIBE: without arguments every shard channel, or one `nil` frame when none.
fn sunsubscribe(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let resp = ctx.client().resp;
    let names: Vec<Bytes> = if argv.len() > 1 {
        argv.iter().skip(1).cloned().collect()
    } else {
        ctx.w
            .conns
            .get(ctx.conn)
            .map(|c| c.subs.ordered_shard())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    if names.is_empty() {
        let n = ctx
            .w
            .conns
            .get(ctx.conn)
            .map_or(0, |c| c.subs.shard_count());
        confirm(&mut out, resp, "sunsubscribe", Reply::Null, n);
    }
    for name in names {
        let n = pubsub::sunsubscribe(ctx.w, ctx.conn, &name);
        confirm(&mut out, resp, "sunsubscribe", Reply::Bulk(name), n);
    }
    Ok(frames(ctx, out))
}

/// SPUBLISH: as PUBLISH, to shard channel subscribers only.
fn spublish(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let channel = owned(arg(argv, 1)?);
    let msg = owned(arg(argv, 2)?);
    let local = pubsub::spublish(ctx.w, &channel, &msg);
    if ctx.w.eng.nshards <= 1 {
        return Ok(Reply::Int(local as i64));
    }
    let ticket = ctx.reply_later();
    let me = ctx.w.eng.id;
    let jobs: Vec<(usize, FrontFn<usize>)> = (0..ctx.w.eng.nshards)
        .filter(|&s| s != me)
        .map(|s| {
            let (channel, msg) = (channel.clone(), msg.clone());
            let job: FrontFn<usize> =
                Box::new(move |tw: &mut Worker| pubsub::spublish(tw, &channel, &msg));
            (s, job)
        })
        .collect();
    ctx.w.fan_out_fronts(jobs, move |w, counts: Vec<usize>| {
        let n = local + counts.iter().sum::<usize>();
        w.complete(ticket, Reply::Int(n as i64));
    });
    Ok(Reply::Ok)
}

/// Delivers on this shard at once (so a RESP3 client subscribed to its own channel sees the
/// message before the reply, as in Redis), then on every other shard; the reply waits for
/// their counts without pausing the client.
fn publish(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let channel = owned(arg(argv, 1)?);
    let msg = owned(arg(argv, 2)?);
    let local = pubsub::publish(ctx.w, &channel, &msg);
    if ctx.w.eng.nshards <= 1 {
        return Ok(Reply::Int(local as i64));
    }
    let ticket = ctx.reply_later();
    let me = ctx.w.eng.id;
    let jobs: Vec<(usize, FrontFn<usize>)> = (0..ctx.w.eng.nshards)
        .filter(|&s| s != me)
        .map(|s| {
            let (channel, msg) = (channel.clone(), msg.clone());
            let job: FrontFn<usize> =
                Box::new(move |tw: &mut Worker| pubsub::publish(tw, &channel, &msg));
            (s, job)
        })
        .collect();
    ctx.w.fan_out_fronts(jobs, move |w, counts: Vec<usize>| {
        let n = local + counts.iter().sum::<usize>();
        w.complete(ticket, Reply::Int(n as i64));
    });
    Ok(Reply::Ok)
}

/// Runs `f` on every shard as a control job (pub/sub state is not keyspace, so shard locks
/// do not apply) and hands the results to `done` here.
fn gather<T: Send + 'static>(
    w: &mut Worker,
    f: impl Fn(&mut Worker) -> T + Send + Clone + 'static,
    done: impl FnOnce(&mut Engine, Vec<T>) + 'static,
) {
    w.on_all_fronts(f, done);
}

const PUBSUB_HELP: &[&str] = &[
    "PUBSUB <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CHANNELS [<pattern>]",
    "    Return the currently active channels matching a <pattern> (default: '*').",
    "NUMPAT",
    "    Return number of subscriptions to patterns.",
    "NUMSUB [<channel> ...]",
    "    Return the number of subscribers for the specified channels, excluding",
    "    pattern subscriptions(default: no channels).",
    "SHARDCHANNELS [<pattern>]",
    "    Return the currently active shard level channels matching a <pattern> (default: '*').",
    "SHARDNUMSUB [<shardchannel> ...]",
    "    Return the number of subscribers for the specified shard level channel(s)",
    "HELP",
    "    Prints this help.",
];

/// PUBSUB CHANNELS / NUMSUB / NUMPAT / SHARDCHANNELS / SHARDNUMSUB / HELP, gathered from
/// every shard.
/// PUBSUB CHANNELS / SHARDCHANNELS: the active (shard) channels of every shard, matching.
fn channels(ctx: &mut FrontCtx, pattern: Option<Bytes>, shard: bool) -> CmdResult {
    let ticket = ctx.defer();
    gather(
        ctx.w,
        move |tw| {
            if shard {
                tw.pubsub.shard_channels_matching(pattern.as_deref())
            } else {
                tw.pubsub.channels_matching(pattern.as_deref())
            }
        },
        move |w, parts: Vec<Vec<Bytes>>| {
            let mut all: Vec<Bytes> = parts.into_iter().flatten().collect();
            all.sort_unstable();
            all.dedup();
            w.complete(
                ticket,
                Reply::Array(all.into_iter().map(Reply::Bulk).collect()),
            );
        },
    );
    Ok(Reply::Ok)
}

/// PUBSUB NUMSUB / SHARDNUMSUB: each channel with its subscriber count over every shard.
fn numsub(ctx: &mut FrontCtx, channels: Vec<Bytes>, shard: bool) -> CmdResult {
    let ticket = ctx.defer();
    let asked = channels.clone();
    gather(
        ctx.w,
        move |tw| {
            if shard {
                tw.pubsub.shard_numsub(&asked)
            } else {
                tw.pubsub.numsub(&asked)
            }
        },
        move |w, parts: Vec<Vec<usize>>| {
            let mut out = Vec::with_capacity(channels.len() * 2);
            for (i, ch) in channels.into_iter().enumerate() {
                let n: usize = parts.iter().filter_map(|p| p.get(i)).sum();
                out.push(Reply::Bulk(ch));
                out.push(Reply::Int(n as i64));
            }
            w.complete(ticket, Reply::Array(out));
        },
    );
    Ok(Reply::Ok)
}

fn pubsub_cmd(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let raw = arg(argv, 1)?;
    let sub = text(raw).to_lowercase();
    let argc = argv.len();
    match sub.as_str() {
        "help" if argc == 2 => Ok(Reply::help(PUBSUB_HELP)),
        "channels" if argc <= 3 => channels(ctx, argv.get(2).map(owned), false),
        "numsub" => numsub(ctx, argv.iter().skip(2).map(owned).collect(), false),
        "numpat" if argc == 2 => {
            let ticket = ctx.defer();
            gather(
                ctx.w,
                |tw| tw.pubsub.pattern_names(),
                move |w, parts: Vec<Vec<Bytes>>| {
                    let mut all: Vec<Bytes> = parts.into_iter().flatten().collect();
                    all.sort_unstable();
                    all.dedup();
                    w.complete(ticket, Reply::Int(all.len() as i64));
                },
            );
            Ok(Reply::Ok)
        }
        "shardchannels" if argc <= 3 => channels(ctx, argv.get(2).map(owned), true),
        "shardnumsub" => numsub(ctx, argv.iter().skip(2).map(owned).collect(), true),
        "channels" | "shardchannels" => Err(CmdError::subcommand_syntax(&text(raw), "pubsub")),
        "help" | "numpat" => Err(CmdError::WrongArity(format!("pubsub|{sub}"))),
        _ => Err(CmdError::UnknownSubcommand {
            sub: text(raw),
            cmd: "pubsub".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::table::table;
    use crate::server::connection::ClientInfo;

    fn argv(parts: &[&str]) -> Vec<Bytes> {
        parts
            .iter()
            .map(|p| Bytes::copy_from_slice(p.as_bytes()))
            .collect()
    }

    #[test]
    fn subscribed_mode_restriction() {
        let t = table();
        let mut c = Conn::new(-1, 0, ClientInfo::new(1, String::new(), String::new()));
        let check = |c: &Conn, a: &[&str]| {
            let a = argv(a);
            let (_, spec) = t.lookup(&a[0]).unwrap();
            refused_when_subscribed(c, spec, &a).map(|e| e.to_string())
        };
        assert_eq!(check(&c, &["get", "x"]), None);
        c.subs.channels.insert(Bytes::from_static(b"ch"), 1);
        assert_eq!(
            check(&c, &["get", "x"]).as_deref(),
            Some("ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context")
        );
        assert!(check(&c, &["client", "list"])
            .unwrap()
            .contains("'client|list'"));
        // Unknown subcommand and subcommand arity errors come from the handler.
        assert_eq!(check(&c, &["pubsub", "nosuch"]), None);
        assert_eq!(check(&c, &["pubsub", "numpat", "x"]), None);
        assert_eq!(check(&c, &["PING"]), None);
        assert_eq!(check(&c, &["unsubscribe"]), None);
        c.client.resp = 3;
        assert_eq!(check(&c, &["get", "x"]), None);
    }
}
