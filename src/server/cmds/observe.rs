//! Connection-side observation: MONITOR (this connection joins the shard's monitors) and
//! MEMORY, whose STATS reads every shard's connection side; MEMORY's other subcommands
//! are the engine's (`commands::observe::memory`).

use bytes::Bytes;

use super::info;
use super::FrontCtx;
use crate::commands::observe::dict_overhead;
use crate::commands::table::{
    CommandSpec, Exec, KeySpec, ADMIN, LOADING, NOSCRIPT, READONLY, STALE,
};
use crate::error::{CmdError, CmdResult};
use crate::protocol::reply::Reply;

#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("monitor", 1, ADMIN | NOSCRIPT | LOADING | STALE, KeySpec::none(), Exec::Conn(front!(monitor)))
        .doc("server", "1.0.0", "Listen for all requests received by the server in real time", ""),
    CommandSpec::new("memory", -2, READONLY, KeySpec::single(2), Exec::Conn(front!(memory)))
        .key_perms(&[0])
        .sub_flags(&[
            ("doctor", 0, 0),
            ("malloc-stats", 0, 0),
            ("purge", 0, 0),
            ("stats", 0, 0),
            ("usage", READONLY, 0),
            ("help", LOADING | STALE, 0),
        ])
        .doc("server", "4.0.0", "A container for memory diagnostics commands.", "subcommand [key]")
        .subs(&[
            ("doctor", 2, ""),
            ("malloc-stats", 2, ""),
            ("purge", 2, ""),
            ("stats", 2, ""),
            ("usage", -3, "key [SAMPLES count]"),
            ("help", 2, ""),
        ]),
];

/// MEMORY: STATS here, the rest by the engine-side handler.
fn memory(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let sub = crate::commands::server::subcommand("memory", argv)?;
    if sub == "stats" {
        return memory_stats(ctx);
    }
    ctx.conn_ctx(|c| crate::commands::observe::memory(c, argv))
}

// ----- MONITOR ------------------------------------------------------------------------------

fn monitor(ctx: &mut FrontCtx, _argv: &[Bytes]) -> CmdResult {
    if ctx.eng().tx.nested() {
        return Err(CmdError::err(
            "MONITOR isn't allowed for DENY BLOCKING client",
        ));
    }
    if !crate::server::monitor::start(ctx.w, ctx.conn) {
        // Already monitoring: Redis sends nothing.
        return Ok(Reply::Raw(Bytes::new()));
    }
    Ok(Reply::Ok)
}

/// MEMORY STATS in Redis 7.0's field order. The figures are the ones INFO memory shows
/// (the live heap, startup heap, peak, RSS, client buffers); the allocator fields report the
/// heap as allocated and active and RSS as resident (no jemalloc arenas to look into); the
/// per-database hash table overheads are Redis's formula applied to the key counts; there
/// is no replication backlog, AOF buffer or cluster link memory to count (0).
fn memory_stats(ctx: &mut FrontCtx) -> CmdResult {
    let ticket = ctx.defer();
    ctx.w.on_all_fronts(info::gather, move |w, parts| {
        let s = parts
            .into_iter()
            .fold(info::ShardInfo::default(), info::merge);
        let m = info::meta(w);
        let total = m.used_memory;
        let peak = m.peak_memory.max(total);
        let startup = m.startup_memory.min(total);
        let int = |n: u64| Reply::Int(n as i64);
        // Redis reports these as C floats.
        let float = |x: f64| Reply::Double(f64::from(x as f32));
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut rows: Vec<(Reply, Reply)> = vec![
            (Reply::bulk("peak.allocated"), int(peak)),
            (Reply::bulk("total.allocated"), int(total)),
            (Reply::bulk("startup.allocated"), int(startup)),
            (
                Reply::bulk("replication.backlog"),
                int(crate::repl::backlog_bytes()),
            ),
            (Reply::bulk("clients.slaves"), int(0)),
            (Reply::bulk("clients.normal"), int(s.clients_mem)),
            (Reply::bulk("cluster.links"), int(0)),
            (Reply::bulk("aof.buffer"), int(0)),
            (
                Reply::bulk("lua.caches"),
                int(crate::scripting::cache_usage().1 as u64),
            ),
            (
                Reply::bulk("functions.caches"),
                int(crate::scripting::functions::usage().2 as u64),
            ),
        ];
        let mut overhead = startup + s.clients_mem;
        for (i, &(keys, expires)) in s.dbs.iter().enumerate() {
            if keys == 0 {
                continue;
            }
            let (main, exp) = (dict_overhead(keys), dict_overhead(expires));
            overhead += main + exp;
            rows.push((
                Reply::bulk(format!("db.{i}")),
                Reply::Map(vec![
                    (Reply::bulk("overhead.hashtable.main"), int(main)),
                    (Reply::bulk("overhead.hashtable.expires"), int(exp)),
                    (Reply::bulk("overhead.hashtable.slot-to-keys"), int(0)),
                ]),
            ));
        }
        let overhead = overhead.min(total);
        let keys: u64 = s.dbs.iter().map(|d| d.0).sum();
        let net = total.saturating_sub(startup);
        let dataset = total - overhead;
        let a = info::AllocatorView::new(total, m.rss, s.lua_mem);
        rows.extend([
            (Reply::bulk("overhead.total"), int(overhead)),
            (Reply::bulk("keys.count"), int(keys)),
            (
                Reply::bulk("keys.bytes-per-key"),
                int(net.checked_div(keys).unwrap_or(0)),
            ),
            (Reply::bulk("dataset.bytes"), int(dataset)),
            (
                Reply::bulk("dataset.percentage"),
                float(100.0 * ratio(dataset, net)),
            ),
            (
                Reply::bulk("peak.percentage"),
                float(100.0 * ratio(total, peak)),
            ),
            (Reply::bulk("allocator.allocated"), int(a.allocated)),
            (Reply::bulk("allocator.active"), int(a.active)),
            (Reply::bulk("allocator.resident"), int(a.resident)),
            (
                Reply::bulk("allocator-fragmentation.ratio"),
                float(a.frag_ratio()),
            ),
            (
                Reply::bulk("allocator-fragmentation.bytes"),
                Reply::Int(a.frag_bytes()),
            ),
            (Reply::bulk("allocator-rss.ratio"), float(a.rss_ratio())),
            (
                Reply::bulk("allocator-rss.bytes"),
                Reply::Int(a.rss_bytes()),
            ),
            (Reply::bulk("rss-overhead.ratio"), float(a.overhead_ratio())),
            (
                Reply::bulk("rss-overhead.bytes"),
                Reply::Int(a.overhead_bytes()),
            ),
            (Reply::bulk("fragmentation"), float(ratio(m.rss, total))),
            (
                Reply::bulk("fragmentation.bytes"),
                Reply::Int(m.rss as i64 - total as i64),
            ),
        ]);
        w.complete(ticket, Reply::Map(rows));
    });
    Ok(Reply::Ok)
}
