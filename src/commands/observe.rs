//! Observability commands (Redis's slowlog.c, latency.c and MONITOR): SLOWLOG, LATENCY,
//! MONITOR. They run on the connection's shard and read every shard's part (`shard::slowlog`,
//! `shard::latency`) through a fan-out, merging on the way back; MONITOR registers the
//! connection with `server::monitor`.

use bytes::Bytes;
use hdrhistogram::Histogram;

use super::table::{table, CommandSpec, Exec, KeySpec, ADMIN, LOADING, NOSCRIPT, STALE};
use super::ConnCtx;
use crate::engine::Engine;
use crate::engine::ShardFn;
use crate::error::{CmdError, CmdResult};
use crate::protocol::parse_i64;
use crate::protocol::reply::Reply;
use crate::shard::latency::{self, Series};
use crate::shard::slowlog::Entry;

const SV: &str = "server";

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("slowlog", -2, ADMIN | LOADING | STALE, KeySpec::none(), Exec::Conn(slowlog))
        .sub_flags(&[
            ("get", ADMIN | LOADING | STALE, 0),
            ("len", ADMIN | LOADING | STALE, 0),
            ("reset", ADMIN | LOADING | STALE, 0),
            ("help", LOADING | STALE, 0),
        ])
        .doc(SV, "2.2.12", "A container for slow log commands.", "subcommand [argument ...]")
        .subs(&[
            ("get", -2, "[count]"),
            ("len", 2, ""),
            ("reset", 2, ""),
            ("help", 2, ""),
        ]),
    CommandSpec::new("latency", -2, ADMIN | NOSCRIPT | LOADING | STALE, KeySpec::none(), Exec::Conn(latency_cmd))
        .sub_flags(&[
            ("doctor", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("graph", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("histogram", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("history", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("latest", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("reset", ADMIN | NOSCRIPT | LOADING | STALE, 0),
            ("help", LOADING | STALE, 0),
        ])
        .doc(SV, "2.8.13", "A container for latency diagnostics commands.", "subcommand [argument ...]")
        .subs(&[
            ("doctor", 2, ""),
            ("graph", 3, "event"),
            ("histogram", -2, "[command [command ...]]"),
            ("history", 3, "event"),
            ("latest", 2, ""),
            ("reset", -2, "[event [event ...]]"),
            ("help", 2, ""),
        ]),
];

/// Runs `f` on this shard now and on the others through a fan-out, then `done` with every
/// result. This shard's part is read before the command itself is logged (as Redis reads
/// its log before logging the command that reads it).
fn every_shard<T: Send + 'static>(
    ctx: &mut ConnCtx,
    f: impl Fn(&mut Engine) -> T + Send + Clone + 'static,
    done: impl FnOnce(&mut Engine, Vec<T>) -> Reply + 'static,
) -> CmdResult {
    let mine = f(ctx.eng());
    let me = ctx.eng().id;
    let ticket = ctx.defer();
    let jobs: Vec<(usize, ShardFn<T>)> = (0..ctx.eng().nshards)
        .filter(|&s| s != me)
        .map(|s| {
            let f = f.clone();
            let job: ShardFn<T> = Box::new(move |tw| f(tw));
            (s, job)
        })
        .collect();
    ctx.eng().fan_out(jobs, true, move |w, mut v: Vec<T>| {
        v.push(mine);
        let r = done(w, v);
        w.complete(ticket, r);
    });
    Ok(Reply::Ok)
}

// ----- SLOWLOG ------------------------------------------------------------------------------

const SLOWLOG_HELP: &[&str] = &[
    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GET [<count>]",
    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
    "    Entries are made of:",
    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
    "    client name",
    "LEN",
    "    Return the length of the slowlog.",
    "RESET",
    "    Reset the slowlog.",
    "HELP",
    "    Prints this help.",
];

fn slowlog(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let sub = super::server::subcommand("slowlog", argv)?;
    let max_len = ctx.eng().shard.slow.max_len;
    match sub.as_str() {
        "get" => {
            if argv.len() > 3 {
                let typed = String::from_utf8_lossy(argv.get(1).map_or(&[][..], |a| a));
                return Err(sub_syntax(&typed, "SLOWLOG"));
            }
            let count = match argv.get(2) {
                None => 10,
                Some(a) => match parse_i64(a) {
                    Some(-1) => usize::MAX,
                    Some(n) if n >= 0 => n as usize,
                    _ => return Err(CmdError::err("count should be greater than or equal to -1")),
                },
            };
            let want = count.min(max_len);
            every_shard(
                ctx,
                move |tw| {
                    tw.shard
                        .slow
                        .entries
                        .iter()
                        .take(want)
                        .cloned()
                        .collect::<Vec<Entry>>()
                },
                move |_, parts| {
                    let mut all: Vec<Entry> = parts.into_iter().flatten().collect();
                    all.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
                    all.truncate(want);
                    Reply::Array(all.into_iter().map(entry_reply).collect())
                },
            )
        }
        "len" => every_shard(
            ctx,
            |tw| tw.shard.slow.entries.len(),
            move |_, parts| Reply::Int(parts.iter().sum::<usize>().min(max_len) as i64),
        ),
        "reset" => every_shard(ctx, |tw| tw.shard.slow.entries.clear(), |_, _| Reply::Ok),
        _ => Ok(Reply::help(SLOWLOG_HELP)),
    }
}

fn entry_reply(e: Entry) -> Reply {
    Reply::Array(vec![
        Reply::Int(e.id as i64),
        Reply::Int(e.time),
        Reply::Int(e.micros as i64),
        Reply::Array(e.argv.into_iter().map(Reply::Bulk).collect()),
        Reply::Bulk(e.addr),
        Reply::Bulk(e.name),
    ])
}

/// Redis's error for a subcommand given the wrong arguments inside its handler.
fn sub_syntax(sub: &str, cmd: &str) -> CmdError {
    CmdError::err(format!(
        "unknown subcommand or wrong number of arguments for '{sub}'. Try {cmd} HELP."
    ))
}

// ----- LATENCY ------------------------------------------------------------------------------

const LATENCY_HELP: &[&str] = &[
    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "DOCTOR",
    "    Return a human readable latency analysis report.",
    "GRAPH <event>",
    "    Return an ASCII latency graph for the <event> class.",
    "HISTORY <event>",
    "    Return time-latency samples for the <event> class.",
    "LATEST",
    "    Return the latest latency samples for all events.",
    "RESET [<event> ...]",
    "    Reset latency data of one or more <event> classes.",
    "    (default: reset all data for all event classes)",
    "HISTOGRAM [COMMAND ...]",
    "    Return a cumulative distribution of latencies in the format of a histogram for the specified command names.",
    "    If no commands are specified then all histograms are replied.",
    "HELP",
    "    Prints this help.",
];

/// Every shard's events merged by name (sorted by name).
fn merge_events(parts: Vec<Vec<(&'static str, Series)>>) -> Vec<(&'static str, Series)> {
    let mut all: Vec<(&'static str, Series)> = Vec::new();
    for (name, s) in parts.into_iter().flatten() {
        match all.iter_mut().find(|(n, _)| *n == name) {
            Some((_, mine)) => mine.merge(&s),
            None => all.push((name, s)),
        }
    }
    all.sort_by_key(|(n, _)| *n);
    all
}

fn events_of(tw: &mut Engine) -> Vec<(&'static str, Series)> {
    tw.shard
        .lat
        .events
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn latency_cmd(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let sub = super::server::subcommand("latency", argv)?;
    match sub.as_str() {
        "latest" => every_shard(ctx, events_of, |_, parts| {
            let rows = merge_events(parts)
                .into_iter()
                .filter_map(|(name, s)| {
                    let &(t, ms) = s.samples.back()?;
                    Some(Reply::Array(vec![
                        Reply::bulk(name),
                        Reply::Int(t),
                        Reply::Int(ms as i64),
                        Reply::Int(s.max as i64),
                    ]))
                })
                .collect();
            Reply::Array(rows)
        }),
        "history" | "graph" => {
            let event = argv.get(2).cloned().unwrap_or_default();
            let graph = sub == "graph";
            every_shard(ctx, events_of, move |_, parts| {
                let found = merge_events(parts)
                    .into_iter()
                    .find(|(n, _)| n.as_bytes() == event.as_ref());
                match (found, graph) {
                    (Some((_, s)), false) => Reply::Array(
                        s.samples
                            .iter()
                            .map(|&(t, ms)| {
                                Reply::Array(vec![Reply::Int(t), Reply::Int(ms as i64)])
                            })
                            .collect(),
                    ),
                    (None, false) => Reply::Array(vec![]),
                    (Some((name, s)), true) => {
                        Reply::Verbatim(Bytes::from(latency::graph(name, &s, unix_now())))
                    }
                    (None, true) => Reply::Error(format!(
                        "ERR No samples available for event '{}'",
                        String::from_utf8_lossy(&event)
                    )),
                }
            })
        }
        "reset" => {
            let names: Vec<Bytes> = argv.get(2..).unwrap_or_default().to_vec();
            every_shard(
                ctx,
                move |tw| {
                    let ev = &mut tw.shard.lat.events;
                    let gone: Vec<&'static str> = ev
                        .keys()
                        .copied()
                        .filter(|k| {
                            names.is_empty() || names.iter().any(|n| n.as_ref() == k.as_bytes())
                        })
                        .collect();
                    for k in &gone {
                        ev.remove(k);
                    }
                    gone
                },
                |_, parts| {
                    let mut all: Vec<&'static str> = parts.into_iter().flatten().collect();
                    all.sort_unstable();
                    all.dedup();
                    Reply::Int(all.len() as i64)
                },
            )
        }
        "doctor" => {
            let tun = &ctx.eng().shared.tun.obs;
            let threshold = tun
                .monitor_threshold_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            let slow_us = tun
                .slower_than_us
                .load(std::sync::atomic::Ordering::Relaxed);
            let slow_len = tun
                .slowlog_max_len
                .load(std::sync::atomic::Ordering::Relaxed);
            every_shard(ctx, events_of, move |_, parts| {
                let events = merge_events(parts);
                let text = latency::doctor(&events, threshold, slow_us, slow_len, unix_now());
                Reply::Verbatim(Bytes::from(text))
            })
        }
        "histogram" => {
            // The commands asked for, in the order asked (repeats too, as Redis); none:
            // every command.
            let ids: Vec<usize> = argv
                .get(2..)
                .unwrap_or_default()
                .iter()
                .filter_map(|a| table().stat_slots_named(a))
                .flatten()
                .collect();
            let all = argv.len() == 2;
            every_shard(
                ctx,
                |tw| tw.shard.lat.histograms(),
                move |_, parts| {
                    let mut merged: Vec<(usize, Histogram<u64>)> = Vec::new();
                    for p in parts {
                        latency::merge_histograms(&mut merged, p);
                    }
                    let order: Vec<usize> = if all {
                        merged.iter().map(|(i, _)| *i).collect()
                    } else {
                        ids
                    };
                    let rows = order
                        .into_iter()
                        .filter_map(|id| {
                            let (_, h) = merged.iter().find(|(i, h)| *i == id && !h.is_empty())?;
                            let name = table().stat_name(id)?;
                            Some((Reply::bulk(name), histogram_reply(h)))
                        })
                        .collect();
                    Reply::Map(rows)
                },
            )
        }
        _ => Ok(Reply::help(LATENCY_HELP)),
    }
}

/// One command's LATENCY HISTOGRAM entry: `calls` and the cumulative `histogram_usec`.
fn histogram_reply(h: &Histogram<u64>) -> Reply {
    let points = latency::cdf(h)
        .into_iter()
        .map(|(us, n)| (Reply::Int(us as i64), Reply::Int(n as i64)))
        .collect();
    Reply::Map(vec![
        (Reply::bulk("calls"), Reply::Int(h.len() as i64)),
        (Reply::bulk("histogram_usec"), Reply::Map(points)),
    ])
}

/// INFO latencystats lines (`latency_percentiles_usec_<cmd>:p50=...`), from the merged
/// histograms, for the percentiles configured.
pub fn latencystats_lines(hists: &[(usize, Histogram<u64>)], percentiles: &[f64]) -> Vec<String> {
    hists
        .iter()
        .filter(|(_, h)| !h.is_empty())
        .filter_map(|(id, h)| {
            let name = table().stat_name(*id)?;
            let vals: Vec<String> = percentiles
                .iter()
                .map(|p| {
                    format!(
                        "p{}={:.3}",
                        latency::percentile_label(*p),
                        latency::percentile(h, *p) as f64 / 1000.0
                    )
                })
                .collect();
            Some(format!(
                "latency_percentiles_usec_{name}:{}",
                vals.join(",")
            ))
        })
        .collect()
}

// ----- MEMORY -------------------------------------------------------------------------------

/// MEMORY but STATS (`server::cmds::observe`): USAGE on the key's shard; the rest here.
pub fn memory(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let sub = super::server::subcommand("memory", argv)?;
    let (db, resp) = {
        let c = ctx.client();
        (c.db, c.resp)
    };
    let owner = match (sub.as_str(), argv.get(2)) {
        ("usage", Some(k)) => crate::shard::route::shard_of(k, ctx.eng().nshards),
        _ => ctx.eng().id,
    };
    let run = move |shard: &mut crate::shard::Shard, argv: &[Bytes]| -> Reply {
        let mut kctx = super::KeyCtx {
            shard,
            db,
            resp,
            out: None,
        };
        match super::keys::memory(&mut kctx, argv) {
            Ok(r) => r,
            Err(e) => Reply::Error(e.to_string()),
        }
    };
    if owner == ctx.eng().id {
        return Ok(run(&mut ctx.eng().shard, argv));
    }
    let ticket = ctx.defer();
    let argv = argv.to_vec();
    let job: ShardFn<Reply> = Box::new(move |tw: &mut Engine| run(&mut tw.shard, &argv));
    ctx.eng()
        .fan_out(vec![(owner, job)], true, move |w, mut v: Vec<Reply>| {
            w.complete(ticket, v.pop().unwrap_or(Reply::Null))
        });
    Ok(Reply::Ok)
}

/// Redis's estimate of a dict's overhead: an entry per element and a bucket pointer per
/// slot (a power of two).
pub fn dict_overhead(n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    n * 24 + n.next_power_of_two() * 8
}

// ----- DEBUG OBJECT / SET-ACTIVE-EXPIRE / QUICKLIST-PACKED-THRESHOLD / CHANGE-REPL-ID --------

/// `DEBUG SET-ACTIVE-EXPIRE`: the shards' active expiry cycle runs (Redis's default).
static ACTIVE_EXPIRE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether the active expiry cycle runs (read by each shard's 100 ms timer).
pub fn active_expire() -> bool {
    ACTIVE_EXPIRE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Help lines of the DEBUG subcommands this module adds (Redis's text).
pub const DEBUG_HELP: &[&str] = &[
    "CHANGE-REPL-ID",
    "    Change the replication IDs of the instance.",
    "    Dangerous: should be used only for testing the replication subsystem.",
    "OBJECT <key>",
    "    Show low level info about `key` and associated value.",
    "SET-ACTIVE-EXPIRE <0|1>",
    "    Setting it to 0 disables expiring keys in background when they are not",
    "    accessed (otherwise the Redis behavior). Setting it to 1 reenables back the",
    "    default.",
    "AOF-FSYNC-DELAY <ms>",
    "    Hold every appendfsync-always group commit <ms> milliseconds before its",
    "    write (0, the default, for none): a slow disk, for tests.",
    "QUICKLIST-PACKED-THRESHOLD <size>",
    "    Sets the threshold for elements to be inserted as plain vs packed nodes",
    "    Default value is 1GB, allows values up to 4GB. Setting to 0 restores to default.",
];

/// C's atoi: the leading integer, 0 when there is none.
fn atoi(b: &[u8]) -> i64 {
    let s = std::str::from_utf8(b).unwrap_or("").trim_start();
    let end = s
        .char_indices()
        .take_while(|&(i, c)| c.is_ascii_digit() || (i == 0 && (c == '-' || c == '+')))
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    s.get(..end).and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// The DEBUG subcommands of this module; `None` for the others.
pub(super) fn debug(ctx: &mut ConnCtx, argv: &[Bytes]) -> Option<CmdResult> {
    let sub = argv.get(1)?;
    let is = |s: &str| sub.eq_ignore_ascii_case(s.as_bytes());
    let n = argv.len();
    if is("object") && n == 3 {
        return Some(debug_object(ctx, argv));
    }
    if is("set-active-expire") && n == 3 {
        let on = argv.get(2).is_some_and(|a| atoi(a) != 0);
        ACTIVE_EXPIRE.store(on, std::sync::atomic::Ordering::Relaxed);
        return Some(Ok(Reply::Ok));
    }
    if is("aof-fsync-delay") && n == 3 {
        let ms = argv.get(2).map_or(-1, |a| atoi(a));
        if !(0..=60_000).contains(&ms) {
            return Some(Err(CmdError::err(
                "the delay must be between 0 and 60000 milliseconds",
            )));
        }
        crate::persist::aof::set_sync_delay(ms as u64);
        return Some(Ok(Reply::Ok));
    }
    if is("quicklist-packed-threshold") && n == 3 {
        let v = argv.get(2).map(|a| String::from_utf8_lossy(a).into_owned());
        let ok = v
            .and_then(|v| crate::config::parse_memory(&v).ok())
            .is_some_and(|sz| sz < 4 << 30);
        if !ok {
            return Some(Err(CmdError::err(
                "argument must be a memory value bigger than 1 and smaller than 4gb",
            )));
        }
        // shardis keeps every element over 1 KiB in a chunk of its own already (see
        // `types::list`); there is no plain-node threshold to move.
        crate::log::warning(
            "DEBUG QUICKLIST-PACKED-THRESHOLD accepted but has no effect: list elements over \
             1 KiB always get a chunk of their own",
        );
        return Some(Ok(Reply::Ok));
    }
    None
}

/// DEBUG OBJECT key: Redis's one-line summary, from the key's shard.
fn debug_object(ctx: &mut ConnCtx, argv: &[Bytes]) -> CmdResult {
    let key = argv.get(2).cloned().unwrap_or_default();
    let db = ctx.client().db;
    let owner = crate::shard::route::shard_of(&key, ctx.eng().nshards);
    let ticket = ctx.defer();
    let job: ShardFn<Reply> = Box::new(move |tw: &mut Engine| object_line(&mut tw.shard, db, &key));
    ctx.eng()
        .fan_out(vec![(owner, job)], true, move |w, mut v: Vec<Reply>| {
            w.complete(ticket, v.pop().unwrap_or(Reply::Null))
        });
    Ok(Reply::Ok)
}

fn object_line(shard: &mut crate::shard::Shard, db: usize, key: &[u8]) -> Reply {
    use crate::persist::rdb::{dump_payload, list_nodes, ValRef};
    use crate::shard::value::{ObjRef, Value};
    let now = shard.now_ms;
    let d = shard.db_mut(db);
    let Some(meta) = d.meta(key, now) else {
        return Reply::error("ERR no such key");
    };
    let Some(e) = d.export(key, now) else {
        return Reply::error("ERR no such key");
    };
    let val = match &e.val {
        Value::Str(s) => ValRef::Str(s),
        v => match v.as_obj() {
            Some(o) => ValRef::Obj(o),
            None => return Reply::error("ERR no such key"),
        },
    };
    // The RDB body without its type byte, version and checksum (Redis's rdbSavedObjectLen).
    let serialized = dump_payload(val, true).len().saturating_sub(11);
    let refcount = if meta.shared { i32::MAX } else { 1 };
    let mut line = format!(
        "Value at:{:p} refcount:{refcount} encoding:{} serializedlength:{serialized} lru:{} \
         lru_seconds_idle:{}",
        &e.val as *const Value,
        meta.encoding,
        meta.atime,
        meta.idle_secs(now)
    );
    if let Value::List(l) = &e.val {
        if let Some(ObjRef::List(_)) = e.val.as_obj() {
            if meta.encoding == "quicklist" {
                let nodes = list_nodes(l);
                let size: usize = nodes.iter().map(|n| n.len()).sum();
                let avg = l.len() as f64 / nodes.len().max(1) as f64;
                line.push_str(&format!(
                    " ql_nodes:{} ql_avg_node:{avg:.2} ql_listpack_max:-2 ql_compressed:0 \
                     ql_uncompressed_size:{size}",
                    nodes.len()
                ));
            }
        }
    }
    Reply::Status(Bytes::from(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_in_the_table() {
        for n in ["slowlog", "latency", "monitor"] {
            let (_, s) = table().lookup(n.as_bytes()).unwrap();
            assert!(s.has(ADMIN), "{n}");
        }
    }

    #[test]
    fn info_lines() {
        let mut h = latency::new_histogram().unwrap();
        h.saturating_record(8_000);
        let (get, _) = table().lookup(b"get").unwrap();
        let lines = latencystats_lines(&[(get, h)], &[50.0, 99.9]);
        assert_eq!(
            lines,
            vec!["latency_percentiles_usec_get:p50=8.031,p99.9=8.031"]
        );
    }
}
