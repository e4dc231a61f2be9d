//! INFO (Redis's server.c genRedisInfoString): every shard's counters gathered and merged,
//! then rendered in Redis's section order and field formats.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use bytes::Bytes;

use super::FrontCtx;
use crate::commands::args::is;
use crate::commands::table::{table, CommandSpec, Exec, KeySpec, CAT_DANGEROUS, LOADING, STALE};
use crate::engine::Engine;
use crate::engine::NetStats;
use crate::error::CmdResult;
use crate::protocol::reply::Reply;
use crate::runtime::{alloc, sys};
use crate::server::worker::Worker;
use crate::shard::CmdStat;

// ----- INFO ---------------------------------------------------------------------------------

/// INFO sections in Redis's order, and which of them `INFO` / `INFO default` prints.
#[rustfmt::skip]
pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec::new("info", -1, LOADING | STALE, KeySpec::none(), Exec::Conn(front!(info)))
        .acl(CAT_DANGEROUS)
        .doc("server", "1.0.0", "Returns information and statistics about the server.", "[section [section ...]]"),
];

const SECTIONS: &[(&str, bool)] = &[
    ("server", true),
    ("clients", true),
    ("memory", true),
    ("persistence", true),
    ("stats", true),
    ("replication", true),
    ("cpu", true),
    ("modules", true),
    ("commandstats", false),
    ("errorstats", true),
    ("latencystats", false),
    ("cluster", true),
    ("keyspace", true),
];

/// Which sections the arguments ask for (`INFO`, `INFO default|all|everything`, or names).
fn wanted_sections(args: &[Bytes]) -> Vec<&'static str> {
    let mut want = vec![false; SECTIONS.len()];
    if args.is_empty() {
        for (w, (_, d)) in want.iter_mut().zip(SECTIONS) {
            *w = *d;
        }
    }
    for a in args {
        if is(a, "all") || is(a, "everything") {
            want.iter_mut().for_each(|w| *w = true);
        } else if is(a, "default") {
            for (w, (_, d)) in want.iter_mut().zip(SECTIONS) {
                *w |= *d;
            }
        } else if let Some(i) = SECTIONS.iter().position(|(n, _)| is(a, n)) {
            if let Some(w) = want.get_mut(i) {
                *w = true;
            }
        }
    }
    SECTIONS
        .iter()
        .zip(want)
        .filter(|(_, w)| *w)
        .map(|((n, _), _)| *n)
        .collect()
}

/// One shard's share of INFO, gathered on that shard.
#[derive(Default, Clone, Debug)]
pub struct ShardInfo {
    /// Per database: (keys, keys with a TTL).
    pub dbs: Vec<(u64, u64)>,
    pub cmd: Vec<CmdStat>,
    pub errors: Vec<(String, u64)>,
    pub processed: u64,
    pub expired: u64,
    pub evicted: u64,
    pub hits: u64,
    pub misses: u64,
    pub net: NetStats,
    /// Instantaneous rates (INFO stats).
    pub rates: crate::server::metrics::Rates,
    /// Channels and patterns with subscribers on this shard (names, since a channel with
    /// subscribers on several shards counts once).
    pub pubsub: (Vec<bytes::Bytes>, Vec<bytes::Bytes>),
    /// Memory held by this shard's connections (INFO mem_clients_normal).
    pub clients_mem: u64,
    /// Successful writes run on this shard (`Shard::dirty`).
    pub dirty: u64,
    /// Bytes this shard's Lua VM holds.
    pub lua_mem: u64,
    /// The biggest client input and output buffers of the last eight seconds.
    pub recent_max: (u64, u64),
    /// Client-side caching: keys remembered here, their client entries, and the BCAST
    /// prefixes (registered on every shard, so merged by maximum).
    pub tracking: (u64, u64, u64),
    /// How long this shard had been in its current loop pass when it answered (a command
    /// that held it is still counted then; the `Shared` reading may already be reset).
    pub pass_ms: u64,
    /// Per-command latency histograms, when INFO latencystats is asked for.
    pub latency: Vec<(usize, hdrhistogram::Histogram<u64>)>,
    /// `latency-tracking-info-percentiles` (set on the merged total).
    pub percentiles: Vec<f64>,
}

pub(super) fn gather(tw: &mut Worker) -> ShardInfo {
    let s = &tw.eng.shard;
    ShardInfo {
        dbs: s
            .dbs
            .iter()
            .map(|d| (d.len() as u64, d.expires_len() as u64))
            .collect(),
        cmd: s.cmd_stats.clone(),
        errors: s.error_stats.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        processed: s.commands_processed,
        expired: s.dbs.iter().map(|d| d.stats.expired_keys).sum(),
        evicted: s.evict.evicted_keys,
        hits: s.dbs.iter().map(|d| d.stats.hits).sum(),
        misses: s.dbs.iter().map(|d| d.stats.misses).sum(),
        net: tw.eng.net,
        rates: tw.rates.rates(),
        pubsub: (tw.pubsub.channels_matching(None), tw.pubsub.pattern_names()),
        clients_mem: tw
            .conns
            .iter()
            .map(|(_, c)| super::client::client_mem(c) as u64)
            .sum(),
        pass_ms: tw.eng.pass_age_ms(),
        dirty: s.dirty,
        lua_mem: crate::scripting::vm::memory() as u64,
        recent_max: {
            // Sampled now too, so a buffer of this moment counts before the cron's next
            // sample (and stays counted after it is gone).
            let sec = crate::persist::unix_secs();
            let now = tw.conns.iter().fold((0u64, 0u64), |(i, o), (_, c)| {
                (
                    i.max(c.input_bytes() as u64),
                    o.max(c.output_bytes() as u64),
                )
            });
            tw.peaks.note(sec, now.0, now.1);
            tw.peaks.max(sec)
        },
        tracking: s.tracking.as_ref().map_or((0, 0, 0), |t| {
            (t.len() as u64, t.items() as u64, t.prefix_count() as u64)
        }),
        latency: Vec::new(),
        percentiles: Vec::new(),
    }
}

/// Adds shard `b`'s counters into `a`.
pub(super) fn merge(mut a: ShardInfo, b: ShardInfo) -> ShardInfo {
    if a.dbs.len() < b.dbs.len() {
        a.dbs.resize(b.dbs.len(), (0, 0));
    }
    for (x, y) in a.dbs.iter_mut().zip(&b.dbs) {
        x.0 += y.0;
        x.1 += y.1;
    }
    if a.cmd.len() < b.cmd.len() {
        a.cmd.resize(b.cmd.len(), CmdStat::default());
    }
    for (x, y) in a.cmd.iter_mut().zip(&b.cmd) {
        x.calls += y.calls;
        x.nanos += y.nanos;
        x.rejected += y.rejected;
        x.failed += y.failed;
    }
    for (code, n) in b.errors {
        match a.errors.iter_mut().find(|(c, _)| *c == code) {
            Some((_, m)) => *m += n,
            None => a.errors.push((code, n)),
        }
    }
    a.processed += b.processed;
    a.expired += b.expired;
    a.evicted += b.evicted;
    a.hits += b.hits;
    a.misses += b.misses;
    a.net.net_input_bytes += b.net.net_input_bytes;
    a.net.net_output_bytes += b.net.net_output_bytes;
    a.net.net_repl_input_bytes += b.net.net_repl_input_bytes;
    a.net.net_repl_output_bytes += b.net.net_repl_output_bytes;
    a.net.reads_processed += b.net.reads_processed;
    a.net.writes_processed += b.net.writes_processed;
    a.net.connections_received += b.net.connections_received;
    a.net.rejected_connections += b.net.rejected_connections;
    a.net.evicted_clients += b.net.evicted_clients;
    a.rates.add(b.rates);
    a.pubsub.0.extend(b.pubsub.0);
    a.pubsub.1.extend(b.pubsub.1);
    a.clients_mem += b.clients_mem;
    a.pass_ms = a.pass_ms.max(b.pass_ms);
    a.dirty += b.dirty;
    a.lua_mem += b.lua_mem;
    a.recent_max = (
        a.recent_max.0.max(b.recent_max.0),
        a.recent_max.1.max(b.recent_max.1),
    );
    a.tracking.0 += b.tracking.0;
    a.tracking.1 += b.tracking.1;
    a.tracking.2 = a.tracking.2.max(b.tracking.2);
    crate::shard::latency::merge_histograms(&mut a.latency, b.latency);
    a
}

/// Distinct names in a merged list.
fn distinct(v: &[bytes::Bytes]) -> usize {
    v.iter().collect::<std::collections::HashSet<_>>().len()
}

/// Server-wide facts INFO prints next to the shard counters (read on the origin shard).
#[derive(Clone, Debug, Default)]
pub struct Meta {
    /// `repl-backlog-size` as configured.
    pub backlog_size: u64,
    pub run_id: String,
    pub replid: String,
    pub port: u16,
    pub shards: usize,
    pub uptime_secs: u64,
    pub started_unix: u64,
    pub now_usec: u64,
    pub clients: usize,
    pub blocked_clients: usize,
    pub maxclients: usize,
    pub config_file: String,
    pub executable: String,
    pub os: String,
    pub used_memory: u64,
    pub startup_memory: u64,
    pub peak_memory: u64,
    pub rss: u64,
    pub total_memory: u64,
    pub maxmemory: u64,
    pub maxmemory_policy: String,
    pub cpu_user: f64,
    pub cpu_sys: f64,
    /// The answering shard thread's CPU time (INFO's `*_main_thread`).
    pub cpu_user_main: f64,
    pub cpu_sys_main: f64,
    /// `Shared::stalls`: (longest loop pass, longest lock) in ms.
    pub stalls: (u64, u64),
    /// `persist::State`: (last save, saves, dirty at last save, last failed, BGSAVE running,
    /// last save seconds, keys loaded, keys expired at load).
    pub rdb: (u64, u64, u64, bool, bool, i64, u64, u64),
    /// `persist::aof::State`: (enabled, rewriting, rewrites, last rewrite ok, last write ok).
    pub aof: (bool, bool, u64, bool, bool),
    /// The AOF's current size and its size after the last rewrite (or at startup).
    pub aof_sizes: (u64, u64),
    /// Everysec fdatasyncs: in flight, delayed, completed (`persist::aof::State`).
    pub aof_fsyncs: (u64, u64, u64),
}

/// The replication id this server reports (40 hex digits, fixed for the process lifetime).
pub fn master_replid() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7)
            ^ (std::process::id() as u64).rotate_left(17)
            ^ 0x9E37_79B9_7F4A_7C15;
        (0..40)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from_digit((seed % 16) as u32, 16).unwrap_or('0')
            })
            .collect()
    })
}

pub(super) fn meta(w: &Engine) -> Meta {
    let sh = &w.shared;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let uptime = sh.started.elapsed();
    let tun = sh.tun.all();
    let param = |n: &str| tun.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
    // The thread first: the process's figures, read after, include all of its time.
    let (cpu_user_main, cpu_sys_main) = sys::thread_cpu_times();
    let (cpu_user, cpu_sys) = sys::cpu_times();
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let p = &sh.persist;
    Meta {
        backlog_size: param("repl-backlog-size")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1 << 20),
        rdb: (
            p.last_save.load(Ordering::Relaxed),
            p.saves.load(Ordering::Relaxed),
            p.dirty_at_save.load(Ordering::Relaxed),
            p.last_failed.load(Ordering::Relaxed),
            p.bg_in_progress.load(Ordering::Relaxed),
            p.last_save_secs.load(Ordering::Relaxed),
            p.loaded_keys.load(Ordering::Relaxed),
            p.loaded_expired.load(Ordering::Relaxed),
        ),
        aof: (
            sh.aof.enabled.load(Ordering::Relaxed),
            sh.aof.rewriting.load(Ordering::Relaxed),
            sh.aof.rewrites.load(Ordering::Relaxed),
            sh.aof.last_rewrite_ok.load(Ordering::Relaxed),
            sh.aof.last_write_ok.load(Ordering::Relaxed) && crate::persist::aof_errno() == 0,
        ),
        aof_sizes: (
            sh.aof.current_size(),
            sh.aof.rewrite_base.load(Ordering::Relaxed),
        ),
        aof_fsyncs: (
            sh.aof.fsyncs_pending.load(Ordering::Relaxed),
            sh.aof.fsyncs_delayed.load(Ordering::Relaxed),
            sh.aof.fsyncs_done.load(Ordering::Relaxed),
        ),
        stalls: sh.stalls(),
        run_id: sh.run_id.clone(),
        replid: master_replid().to_string(),
        port: sh.port,
        shards: w.nshards,
        uptime_secs: uptime.as_secs(),
        started_unix: now.saturating_sub(uptime).as_secs(),
        now_usec: now.as_micros() as u64,
        clients: sh.clients.load(Ordering::Relaxed),
        blocked_clients: sh.blocked_clients.load(Ordering::Relaxed),
        maxclients: sh.tun.maxclients.load(Ordering::Relaxed),
        config_file: sh.cfg.config_file.clone().unwrap_or_default(),
        executable: std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        os: format!(
            "{} {} {}",
            read("/proc/sys/kernel/ostype"),
            read("/proc/sys/kernel/osrelease"),
            std::env::consts::ARCH
        ),
        used_memory: alloc::used(),
        startup_memory: sh.startup_memory.load(Ordering::Relaxed),
        peak_memory: alloc::peak(),
        rss: alloc::rss(),
        total_memory: alloc::total_system_memory(),
        maxmemory: w
            .shared
            .tun
            .maxmemory
            .load(std::sync::atomic::Ordering::Relaxed),
        maxmemory_policy: param("maxmemory-policy").unwrap_or_else(|| "noeviction".into()),
        cpu_user,
        cpu_sys,
        cpu_user_main,
        cpu_sys_main,
    }
}

/// Redis's `bytesToHuman`: `943.16K`, `6.58M`, `200B`.
pub fn human_bytes(n: u64) -> String {
    let f = n as f64;
    const K: f64 = 1024.0;
    if f < K {
        format!("{n}B")
    } else if f < K * K {
        format!("{:.2}K", f / K)
    } else if f < K * K * K {
        format!("{:.2}M", f / (K * K))
    } else if f < K * K * K * K {
        format!("{:.2}G", f / (K * K * K))
    } else if f < K * K * K * K * K {
        format!("{:.2}T", f / (K * K * K * K))
    } else {
        format!("{:.2}P", f / (K * K * K * K * K))
    }
}

/// The allocator's figures as redis-server reports them when its allocator gives none (a
/// libc build, as ours): allocated is `used_memory`, active and resident are the RSS less
/// the Lua VMs' memory, so the fragmentation INFO shows is the process's.
pub(super) struct AllocatorView {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub rss: u64,
}

impl AllocatorView {
    pub(super) fn new(used: u64, rss: u64, lua: u64) -> AllocatorView {
        let resident = rss.saturating_sub(lua);
        AllocatorView {
            allocated: used,
            active: resident,
            resident,
            rss,
        }
    }
    pub(super) fn frag_ratio(&self) -> f64 {
        ratio(self.active, self.allocated)
    }
    pub(super) fn frag_bytes(&self) -> i64 {
        self.active as i64 - self.allocated as i64
    }
    pub(super) fn rss_ratio(&self) -> f64 {
        ratio(self.resident, self.active)
    }
    pub(super) fn rss_bytes(&self) -> i64 {
        self.resident as i64 - self.active as i64
    }
    pub(super) fn overhead_ratio(&self) -> f64 {
        ratio(self.rss, self.resident)
    }
    pub(super) fn overhead_bytes(&self) -> i64 {
        self.rss as i64 - self.resident as i64
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Renders the INFO text: `# Section` headers, `field:value` lines, CRLF line ends, a blank
/// line between sections. Pure, so the format is unit-tested.
pub fn render(sections: &[&str], m: &Meta, s: &ShardInfo) -> String {
    let mut out = String::new();
    for (i, sec) in sections.iter().enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        let mut lines: Vec<String> = Vec::new();
        let mut f = |k: &str, v: &dyn std::fmt::Display| lines.push(format!("{k}:{v}"));
        let title = match *sec {
            "server" => {
                f("redis_version", &super::conn::REDIS_COMPAT_VERSION);
                f("redis_git_sha1", &"00000000");
                f("redis_git_dirty", &0);
                f("redis_build_id", &"0");
                f("redis_mode", &"standalone");
                f("os", &m.os);
                f("arch_bits", &(usize::BITS));
                f("monotonic_clock", &"POSIX clock_gettime");
                f("multiplexing_api", &"io_uring");
                f("atomicvar_api", &"c11-builtin");
                f("gcc_version", &"0.0.0");
                f("process_id", &std::process::id());
                f("process_supervised", &"no");
                f("run_id", &m.run_id);
                f("tcp_port", &m.port);
                f("server_time_usec", &m.now_usec);
                f("uptime_in_seconds", &m.uptime_secs);
                f("uptime_in_days", &(m.uptime_secs / 86400));
                f("hz", &10);
                f("configured_hz", &10);
                f("lru_clock", &((m.now_usec / 1_000_000) & ((1 << 24) - 1)));
                f("executable", &m.executable);
                f("config_file", &m.config_file);
                f("io_threads_active", &0);
                // Only while a shutdown waits for lagging replicas, as Redis 7.0.
                if let Some(ms) = crate::repl::shutdown::remaining_ms() {
                    f("shutdown_in_milliseconds", &ms);
                }
                f("shardis_version", &env!("CARGO_PKG_VERSION"));
                f("shards", &m.shards);
                "Server"
            }
            "clients" => {
                f("connected_clients", &m.clients);
                f("cluster_connections", &0);
                f("maxclients", &m.maxclients);
                f("client_recent_max_input_buffer", &s.recent_max.0);
                f("client_recent_max_output_buffer", &s.recent_max.1);
                f("blocked_clients", &m.blocked_clients);
                f("tracking_clients", &crate::server::tracking::clients());
                f("clients_in_timeout_table", &0);
                "Clients"
            }
            "memory" => {
                let peak = m.peak_memory.max(m.used_memory);
                f("used_memory", &m.used_memory);
                f("used_memory_human", &human_bytes(m.used_memory));
                f("used_memory_rss", &m.rss);
                f("used_memory_rss_human", &human_bytes(m.rss));
                f("used_memory_peak", &peak);
                f("used_memory_peak_human", &human_bytes(peak));
                let perc = format!("{:.2}%", 100.0 * ratio(m.used_memory, peak));
                f("used_memory_peak_perc", &perc);
                // Overhead as Redis counts it where we can: the heap in use at startup
                // (rings, buffers, tables) plus the clients' buffers; no replication, AOF or
                // scripts exist to add more.
                let startup = m.startup_memory.min(m.used_memory);
                let overhead = (startup + s.clients_mem).min(m.used_memory);
                let dataset = m.used_memory - overhead;
                f("used_memory_overhead", &overhead);
                f("used_memory_startup", &startup);
                f("used_memory_dataset", &dataset);
                let dperc = 100.0 * ratio(dataset, m.used_memory.saturating_sub(startup));
                f("used_memory_dataset_perc", &format!("{dperc:.2}%"));
                let a = AllocatorView::new(m.used_memory, m.rss, s.lua_mem);
                f("allocator_allocated", &a.allocated);
                f("allocator_active", &a.active);
                f("allocator_resident", &a.resident);
                f("total_system_memory", &m.total_memory);
                f("total_system_memory_human", &human_bytes(m.total_memory));
                // One Lua VM per shard runs both EVAL scripts and function libraries:
                // its memory is shown as the eval VM's.
                let (scripts, scripts_mem) = crate::scripting::cache_usage();
                let (libs, funcs, funcs_mem) = crate::scripting::functions::usage();
                let (scripts_mem, funcs_mem) = (scripts_mem as u64, funcs_mem as u64);
                f("used_memory_lua", &s.lua_mem);
                f("used_memory_vm_eval", &s.lua_mem);
                f("used_memory_lua_human", &human_bytes(s.lua_mem));
                f("used_memory_scripts_eval", &scripts_mem);
                f("number_of_cached_scripts", &scripts);
                f("number_of_functions", &funcs);
                f("number_of_libraries", &libs);
                f("used_memory_vm_functions", &0);
                f("used_memory_vm_total", &s.lua_mem);
                f("used_memory_vm_total_human", &human_bytes(s.lua_mem));
                f("used_memory_functions", &funcs_mem);
                f("used_memory_scripts", &(scripts_mem + funcs_mem));
                f(
                    "used_memory_scripts_human",
                    &human_bytes(scripts_mem + funcs_mem),
                );
                f("maxmemory", &m.maxmemory);
                f("maxmemory_human", &human_bytes(m.maxmemory));
                f("maxmemory_policy", &m.maxmemory_policy);
                f("allocator_frag_ratio", &format!("{:.2}", a.frag_ratio()));
                f("allocator_frag_bytes", &a.frag_bytes());
                f("allocator_rss_ratio", &format!("{:.2}", a.rss_ratio()));
                f("allocator_rss_bytes", &a.rss_bytes());
                f("rss_overhead_ratio", &format!("{:.2}", a.overhead_ratio()));
                f("rss_overhead_bytes", &a.overhead_bytes());
                let frag = format!("{:.2}", ratio(m.rss, m.used_memory));
                f("mem_fragmentation_ratio", &frag);
                f(
                    "mem_fragmentation_bytes",
                    &(m.rss as i64 - m.used_memory as i64),
                );
                // Redis 7.0 shares one buffer between the backlog and its replicas; ours
                // is the backlog, so the total is the backlog and no replica holds more.
                let backlog = crate::repl::backlog_bytes();
                f("mem_not_counted_for_evict", &0);
                f("mem_replication_backlog", &backlog);
                f("mem_total_replication_buffers", &backlog);
                f("mem_clients_slaves", &0);
                f("mem_clients_normal", &s.clients_mem);
                f("mem_cluster_links", &0);
                f("mem_aof_buffer", &0);
                f("mem_allocator", &"libc");
                f("active_defrag_running", &0);
                f(
                    "lazyfree_pending_objects",
                    &crate::shard::lazyfree::pending(),
                );
                f("lazyfreed_objects", &crate::shard::lazyfree::freed());
                "Memory"
            }
            "persistence" => {
                f("loading", &0);
                f("async_loading", &0);
                f("current_cow_peak", &0);
                f("current_cow_size", &0);
                f("current_cow_size_age", &0);
                f("current_fork_perc", &"0.00");
                f("current_save_keys_processed", &0);
                f("current_save_keys_total", &0);
                let (last, saves, dirty_at, failed, bg, secs, loaded, expired) = m.rdb;
                f(
                    "rdb_changes_since_last_save",
                    &s.dirty.saturating_sub(dirty_at),
                );
                f("rdb_bgsave_in_progress", &u8::from(bg));
                f("rdb_last_save_time", &last);
                f("rdb_last_bgsave_status", &if failed { "err" } else { "ok" });
                f("rdb_last_bgsave_time_sec", &secs);
                f("rdb_current_bgsave_time_sec", &-1);
                f("rdb_saves", &saves);
                f("rdb_last_cow_size", &0);
                f("rdb_last_load_keys_expired", &expired);
                f("rdb_last_load_keys_loaded", &loaded);
                let (aof_on, rewriting, rewrites, rewrite_ok, write_ok) = m.aof;
                let ok = |b: bool| if b { "ok" } else { "err" };
                f("aof_enabled", &u8::from(aof_on));
                f("aof_rewrite_in_progress", &u8::from(rewriting));
                f("aof_rewrite_scheduled", &0);
                f("aof_last_rewrite_time_sec", &-1);
                f("aof_current_rewrite_time_sec", &-1);
                f("aof_last_bgrewrite_status", &ok(rewrite_ok));
                f("aof_rewrites", &rewrites);
                f("aof_rewrites_consecutive_failures", &u8::from(!rewrite_ok));
                f("aof_last_write_status", &ok(write_ok));
                f("aof_last_cow_size", &0);
                if aof_on {
                    // As Redis, only while the AOF is on.
                    let (cur, base) = m.aof_sizes;
                    f("aof_current_size", &cur);
                    f("aof_base_size", &base);
                    f("aof_pending_rewrite", &0);
                    f("aof_buffer_length", &0);
                    let (pending, delayed, done) = m.aof_fsyncs;
                    f("aof_pending_bio_fsync", &pending);
                    f("aof_delayed_fsync", &delayed);
                    // Not in Redis: everysec fdatasyncs the shards' rings completed.
                    f("aof_background_fsyncs", &done);
                }
                f("module_fork_in_progress", &0);
                f("module_fork_last_cow_size", &0);
                "Persistence"
            }
            "stats" => {
                let errors: u64 = s.errors.iter().map(|(_, n)| n).sum();
                f("total_connections_received", &s.net.connections_received);
                f("total_commands_processed", &s.processed);
                f("instantaneous_ops_per_sec", &(s.rates.ops as u64));
                f("total_net_input_bytes", &s.net.net_input_bytes);
                f("total_net_output_bytes", &s.net.net_output_bytes);
                f("total_net_repl_input_bytes", &s.net.net_repl_input_bytes);
                f("total_net_repl_output_bytes", &s.net.net_repl_output_bytes);
                f(
                    "instantaneous_input_kbps",
                    &format!("{:.2}", s.rates.input_bytes / 1024.0),
                );
                f(
                    "instantaneous_output_kbps",
                    &format!("{:.2}", s.rates.output_bytes / 1024.0),
                );
                f("instantaneous_input_repl_kbps", &"0.00");
                f("instantaneous_output_repl_kbps", &"0.00");
                f("rejected_connections", &s.net.rejected_connections);
                let [full, ok, err] = crate::repl::master::sync_stats();
                f("sync_full", &full);
                f("sync_partial_ok", &ok);
                f("sync_partial_err", &err);
                f("expired_keys", &s.expired);
                f("expired_stale_perc", &"0.00");
                f("expired_time_cap_reached_count", &0);
                f("expire_cycle_cpu_milliseconds", &0);
                f("evicted_keys", &s.evicted);
                f("evicted_clients", &s.net.evicted_clients);
                f("total_eviction_exceeded_time", &0);
                f("current_eviction_exceeded_time", &0);
                f("keyspace_hits", &s.hits);
                f("keyspace_misses", &s.misses);
                f("pubsub_channels", &distinct(&s.pubsub.0));
                f("pubsub_patterns", &distinct(&s.pubsub.1));
                f("pubsubshard_channels", &0);
                f("latest_fork_usec", &0);
                f("total_forks", &0);
                f("migrate_cached_sockets", &0);
                f("slave_expires_tracked_keys", &0);
                f("active_defrag_hits", &0);
                f("active_defrag_misses", &0);
                f("active_defrag_key_hits", &0);
                f("active_defrag_key_misses", &0);
                f("total_active_defrag_time", &0);
                f("current_active_defrag_time", &0);
                f("tracking_total_keys", &s.tracking.0);
                f("tracking_total_items", &s.tracking.1);
                f("tracking_total_prefixes", &s.tracking.2);
                f(
                    "unexpected_error_replies",
                    &crate::commands::unexpected_error_replies(),
                );
                f("total_error_replies", &errors);
                f("dump_payload_sanitizations", &0);
                f("total_reads_processed", &s.net.reads_processed);
                f("total_writes_processed", &s.net.writes_processed);
                // Every shard is its own I/O thread: nothing is handed to I/O threads.
                f("io_threaded_reads_processed", &0);
                f("io_threaded_writes_processed", &0);
                // The stall detector (not in Redis): the longest any shard has been inside
                // one loop pass, and the longest any shard has been locked by a multi-shard
                // command or transaction. Both stay near 0 on a healthy server.
                f("shard_oldest_pass_ms", &m.stalls.0.max(s.pass_ms));
                f("shard_oldest_lock_ms", &m.stalls.1);
                "Stats"
            }
            "replication" => {
                if crate::repl::is_replica() {
                    for (k, v) in crate::repl::info_fields() {
                        f(&k, &v);
                    }
                } else {
                    crate::repl::master::info_replication(&mut f, m.backlog_size);
                }
                "Replication"
            }
            "cpu" => {
                f("used_cpu_sys", &format!("{:.6}", m.cpu_sys));
                f("used_cpu_user", &format!("{:.6}", m.cpu_user));
                f("used_cpu_sys_children", &"0.000000");
                f("used_cpu_user_children", &"0.000000");
                // Redis's main thread: here the shard thread that answers (each shard
                // runs its own clients, commands and timers).
                f(
                    "used_cpu_sys_main_thread",
                    &format!("{:.6}", m.cpu_sys_main),
                );
                f(
                    "used_cpu_user_main_thread",
                    &format!("{:.6}", m.cpu_user_main),
                );
                "CPU"
            }
            "modules" => "Modules",
            "commandstats" => {
                let t = table();
                for (slot, st) in s.cmd.iter().enumerate() {
                    if st.calls == 0 && st.failed == 0 && st.rejected == 0 {
                        continue;
                    }
                    // Redis names a container's subcommands (`client|setname`), never the
                    // container itself.
                    let Some(name) = t.stat_name(slot) else {
                        continue;
                    };
                    let usec = st.nanos / 1000;
                    let per = st.nanos as f64 / 1000.0 / (st.calls.max(1) as f64);
                    let v = format!(
                        "calls={},usec={},usec_per_call={per:.2},rejected_calls={},failed_calls={}",
                        st.calls, usec, st.rejected, st.failed
                    );
                    f(&format!("cmdstat_{name}"), &v);
                }
                "Commandstats"
            }
            "errorstats" => {
                let mut errs = s.errors.clone();
                errs.sort();
                for (code, n) in errs {
                    f(&format!("errorstat_{code}"), &format!("count={n}"));
                }
                "Errorstats"
            }
            "latencystats" => {
                lines.extend(crate::commands::observe::latencystats_lines(
                    &s.latency,
                    &s.percentiles,
                ));
                "Latencystats"
            }
            "cluster" => {
                f("cluster_enabled", &0);
                "Cluster"
            }
            "keyspace" => {
                for (i, (keys, expires)) in s.dbs.iter().enumerate() {
                    if *keys > 0 {
                        let v = format!("keys={keys},expires={expires},avg_ttl=0");
                        f(&format!("db{i}"), &v);
                    }
                }
                "Keyspace"
            }
            _ => continue,
        };
        let _ = write!(out, "# {title}\r\n");
        for l in lines {
            out.push_str(&l);
            out.push_str("\r\n");
        }
    }
    out
}

pub(super) fn info(ctx: &mut FrontCtx, argv: &[Bytes]) -> CmdResult {
    let sections = wanted_sections(argv.get(1..).unwrap_or_default());
    let ticket = ctx.defer();
    let latency = sections.contains(&"latencystats");
    let gather_all = move |tw: &mut Worker| {
        let mut i = gather(tw);
        if latency {
            i.latency = tw.eng.shard.lat.histograms();
        }
        i
    };
    ctx.w
        .on_all_fronts(gather_all, move |w, parts: Vec<ShardInfo>| {
            let mut total = parts.into_iter().fold(ShardInfo::default(), merge);
            if latency {
                let text = w
                    .shared
                    .tun
                    .text
                    .lock()
                    .ok()
                    .and_then(|m| m.get("latency-tracking-info-percentiles").cloned());
                total.percentiles = text
                    .and_then(|t| crate::shard::latency::parse_percentiles(&t).ok())
                    .unwrap_or_default();
            }
            let text = render(&sections, &meta(w), &total);
            w.complete(ticket, Reply::Verbatim(Bytes::from(text)));
        });
    Ok(Reply::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn section_selection() {
        let d = wanted_sections(&[]);
        assert!(d.contains(&"server") && d.contains(&"keyspace"));
        assert!(!d.contains(&"commandstats"));
        let all = wanted_sections(&[b("ALL")]);
        assert_eq!(all.len(), SECTIONS.len());
        assert_eq!(
            wanted_sections(&[b("keyspace"), b("Server")]),
            vec!["server", "keyspace"]
        );
        assert!(wanted_sections(&[b("nosuch")]).is_empty());
        let dc = wanted_sections(&[b("default"), b("commandstats")]);
        assert_eq!(dc.len(), SECTIONS.len() - 1);
        assert!(!dc.contains(&"latencystats") && all.contains(&"latencystats"));
    }

    #[test]
    fn human() {
        assert_eq!(human_bytes(200), "200B");
        assert_eq!(human_bytes(965792), "943.16K");
        assert_eq!(human_bytes(6901760), "6.58M");
        assert_eq!(human_bytes(0), "0B");
    }

    #[test]
    fn render_format() {
        let table_len = table().len();
        let get_id = table().lookup(b"get").map(|(i, _)| i).unwrap();
        let mut s = ShardInfo {
            dbs: vec![(3, 1), (0, 0), (2, 0)],
            cmd: vec![CmdStat::default(); table_len],
            errors: vec![("WRONGTYPE".into(), 2), ("ERR".into(), 1)],
            ..Default::default()
        };
        s.cmd[get_id] = CmdStat {
            calls: 4,
            nanos: 10_000,
            rejected: 1,
            failed: 0,
        };
        let m = Meta {
            run_id: "a".repeat(40),
            port: 7000,
            ..Default::default()
        };
        let t = render(
            &["server", "commandstats", "errorstats", "keyspace"],
            &m,
            &s,
        );
        assert!(t.starts_with("# Server\r\nredis_version:7.0.15\r\n"), "{t}");
        assert!(t.contains("\r\ntcp_port:7000\r\n"));
        assert!(t.contains(&format!("\r\nrun_id:{}\r\n", "a".repeat(40))));
        assert!(t.contains("\r\n\r\n# Commandstats\r\ncmdstat_get:calls=4,usec=10,usec_per_call=2.50,rejected_calls=1,failed_calls=0\r\n\r\n# Errorstats\r\n"), "{t}");
        assert!(
            t.contains("# Errorstats\r\nerrorstat_ERR:count=1\r\nerrorstat_WRONGTYPE:count=2\r\n")
        );
        assert!(t.ends_with(
            "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb2:keys=2,expires=0,avg_ttl=0\r\n"
        ));
        assert!(!t.contains("db1:"));
        assert!(!t.contains('\n') || t.matches('\n').count() == t.matches("\r\n").count());
        // An empty keyspace still prints its header, as Redis does.
        let e = render(&["keyspace"], &m, &ShardInfo::default());
        assert_eq!(e, "# Keyspace\r\n");
    }

    #[test]
    fn merge_adds() {
        let a = ShardInfo {
            dbs: vec![(1, 0)],
            errors: vec![("ERR".into(), 1)],
            hits: 2,
            ..Default::default()
        };
        let c = ShardInfo {
            dbs: vec![(2, 1), (5, 0)],
            errors: vec![("ERR".into(), 2), ("X".into(), 1)],
            hits: 3,
            ..Default::default()
        };
        let m = merge(merge(ShardInfo::default(), a), c);
        assert_eq!(m.dbs, vec![(3, 1), (5, 0)]);
        assert_eq!(m.hits, 5);
        assert_eq!(m.errors, vec![("ERR".into(), 3), ("X".into(), 1)]);
    }
}
