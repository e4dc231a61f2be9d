//! Command-line flags (clap, redis-server style), the optional redis.conf-style file, and the
//! CONFIG GET/SET parameter table. `Cli` is parsed on the main thread; the resulting `Config`
//! is shared read-only, and the few parameters CONFIG SET may change at run time live in
//! atomics (`Tunables`) that every shard reads without locking.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use clap::Parser;

use crate::shard::evict::{EvictCfg, Policy};

pub const DEFAULT_PORT: u16 = 6379;
pub const DEFAULT_DATABASES: usize = 16;
pub const DEFAULT_MAXCLIENTS: usize = 10000;
pub const DEFAULT_PROTO_MAX_BULK_LEN: u64 = 512 * 1024 * 1024;
pub const DEFAULT_QUERY_BUFFER_LIMIT: u64 = 1024 * 1024 * 1024;
pub const DEFAULT_RING_ENTRIES: u32 = 4096;
pub const DEFAULT_RECV_BUFFER: usize = 16 * 1024;
pub const DEFAULT_BACKLOG: i32 = 511;
pub const DEFAULT_HOP_SPIN_US: u64 = 0;
/// Redis 7's save rules when none are configured: after 3600 s if 1 key changed, after
/// 300 s if 100 did, after 60 s if 10000 did.
pub const DEFAULT_SAVE: &[(u64, u64)] = &[(3600, 1), (300, 100), (60, 10000)];

/// shardis: a Redis-compatible in-memory store, thread-per-core on io_uring.
#[derive(Parser, Debug, Clone, Default)]
#[command(name = "shardis", version, about, long_about = None)]
pub struct Cli {
    /// TCP port to listen on.
    #[arg(long)]
    pub port: Option<u16>,
    /// Address to bind (default 127.0.0.1; binding elsewhere must be explicit).
    #[arg(long)]
    pub bind: Option<String>,
    /// Number of shards (threads, one per core). Default: one per available core.
    #[arg(long)]
    pub shards: Option<usize>,
    /// Cores to pin shards to, e.g. "0,1" or "0-3" (shard i runs on the i-th core listed).
    #[arg(long)]
    pub cores: Option<String>,
    /// Number of logical databases (SELECT 0..N-1).
    #[arg(long)]
    pub databases: Option<usize>,
    /// Maximum number of connected clients.
    #[arg(long)]
    pub maxclients: Option<usize>,
    /// Maximum size of one bulk string argument (e.g. 512mb).
    #[arg(long = "proto-max-bulk-len")]
    pub proto_max_bulk_len: Option<String>,
    /// Maximum size of one client's unparsed query buffer (e.g. 1gb).
    #[arg(long = "client-query-buffer-limit")]
    pub client_query_buffer_limit: Option<String>,
    /// Log level: debug, verbose, notice, warning.
    #[arg(long)]
    pub loglevel: Option<String>,
    /// A redis.conf-style file (`name value` lines) with the same parameter names.
    #[arg(long)]
    pub config: Option<String>,
    /// io_uring submission queue entries per shard.
    #[arg(long = "ring-entries")]
    pub ring_entries: Option<u32>,
    /// Bytes reserved for each receive on a connection.
    #[arg(long = "recv-buffer")]
    pub recv_buffer: Option<String>,
    /// How connections receive: multishot (one receive armed per connection, filling a
    /// per-shard pool of provided buffers) or single (one receive per read into the
    /// connection's own buffer).
    #[arg(long = "recv-mode")]
    pub recv_mode: Option<String>,
    /// Listen backlog (tcp-backlog).
    #[arg(long = "tcp-backlog")]
    pub tcp_backlog: Option<i32>,
    /// Set TCP_NODELAY on client sockets (yes/no).
    #[arg(long = "tcp-nodelay")]
    pub tcp_nodelay: Option<String>,
    /// Spin this many microseconds looking for work before sleeping (0 = never spin).
    #[arg(long = "busy-poll-us")]
    pub busy_poll_us: Option<u64>,
    /// Keep every shard's write journal on from startup (yes/no); replication turns it on
    /// by itself. For measuring the journal's cost.
    #[arg(long = "journal")]
    pub journal: Option<String>,
    /// While replies from other shards are due, wait this many microseconds for them
    /// (yielding the core) before sleeping (0 = sleep at once).
    #[arg(long = "hop-spin-us")]
    pub hop_spin_us: Option<u64>,
    /// Scheduling policy of the shard threads: batch (a woken shard does not preempt the
    /// running one; fewer switches when shards share a core), other (the normal policy), or
    /// auto (default: batch when two shards share a core).
    #[arg(long = "sched-policy")]
    pub sched_policy: Option<String>,
    /// Close idle clients after this many seconds (0 = never).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// TCP keepalive probes on client connections after this many idle seconds (0 = off;
    /// default 300, as Redis).
    #[arg(long = "tcp-keepalive")]
    pub tcp_keepalive: Option<u64>,
    /// Memory limit (e.g. 2gb; 0 = none). Over it, keys are evicted by --maxmemory-policy;
    /// when nothing can be, commands that may grow memory get an OOM error.
    #[arg(long)]
    pub maxmemory: Option<String>,
    /// Eviction policy: noeviction, allkeys-lru, volatile-lru, allkeys-lfu, volatile-lfu,
    /// allkeys-random, volatile-random, volatile-ttl.
    #[arg(long = "maxmemory-policy")]
    pub maxmemory_policy: Option<String>,
    /// Keys sampled per eviction round (approximate LRU/LFU/TTL), default 5.
    #[arg(long = "maxmemory-samples")]
    pub maxmemory_samples: Option<u64>,
    /// Any other redis.conf directive as `--name value` (see `split_command_line`).
    #[arg(skip)]
    pub extra: Vec<(String, String)>,
}

/// Splits redis-server's command line: `[CONFIGFILE] [--name value ...]`. Flags the `Cli`
/// declares go to clap (with `-v` as `--version`); every other `--name` takes the words up
/// to the next `--` word as its value, joined by spaces (so `--save ''` and `--save 60 100`
/// work as in redis-server). Returns clap's arguments and the other directives in order.
pub fn split_command_line(args: &[String]) -> (Vec<String>, Vec<(String, String)>) {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let known: Vec<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .chain(["help".to_string(), "version".to_string()])
        .collect();
    let mut clap_args: Vec<String> = args.first().cloned().into_iter().collect();
    let mut extra = Vec::new();
    let mut i = 1;
    if let Some(first) = args.get(1) {
        if !first.starts_with('-') {
            clap_args.push("--config".into());
            clap_args.push(first.clone());
            i = 2;
        }
    }
    while let Some(a) = args.get(i) {
        i += 1;
        let Some(name) = a.strip_prefix("--") else {
            match a.as_str() {
                "-v" => clap_args.push("--version".into()),
                _ => clap_args.push(a.clone()),
            }
            continue;
        };
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (name, None),
        };
        let mut words = Vec::new();
        if inline.is_none() {
            while let Some(w) = args.get(i).filter(|w| !w.starts_with("--")) {
                words.push(w.clone());
                i += 1;
            }
        }
        let value = inline.unwrap_or_else(|| words.join(" "));
        if known.iter().any(|k| k == name) {
            clap_args.push(format!("--{name}"));
            if !(name == "help" || name == "version") {
                clap_args.push(value);
            }
        } else {
            extra.push((name.to_ascii_lowercase(), value));
        }
    }
    (clap_args, extra)
}

/// Splits one config line into words as Redis's sdssplitargs does: spaces separate,
/// `"..."` (with `\n`, `\"`, `\\` escapes) and `'...'` quote. `None`: unbalanced quotes.
pub fn split_line(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else {
            return Some(out);
        };
        let mut word = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            loop {
                match chars.next()? {
                    '\\' if c == '"' => match chars.next()? {
                        'n' => word.push('\n'),
                        'r' => word.push('\r'),
                        't' => word.push('\t'),
                        o => word.push(o),
                    },
                    q if q == c => break,
                    o => word.push(o),
                }
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return None;
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        out.push(word);
    }
}

/// Reads a config file into `(place, name, value)` lines, following `include` directives
/// (at most 16 deep) at the point they appear, as Redis does.
fn read_config_file(
    path: &str,
    depth: usize,
    out: &mut Vec<(String, String, String)>,
) -> Result<(), String> {
    if depth > 16 {
        return Err(format!("include nesting too deep at '{path}'"));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read config file '{path}': {e}"))?;
    for (lineno, line) in text.lines().enumerate() {
        let place = format!("'{path}' line {}", lineno + 1);
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let words = split_line(t).ok_or_else(|| format!("{place}: unbalanced quotes"))?;
        let Some((name, rest)) = words.split_first() else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if name == "include" {
            for inc in rest {
                read_config_file(inc, depth + 1, out)?;
            }
            continue;
        }
        out.push((place, name, rest.join(" ")));
    }
    Ok(())
}

/// How client connections receive (`--recv-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecvMode {
    /// One multishot receive per connection over a per-shard provided-buffer pool; falls
    /// back to `Single` where the kernel lacks buffer rings.
    #[default]
    Multishot,
    /// One receive per read, into the connection's own buffer, re-armed after each.
    Single,
}

/// Resolved, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub port: u16,
    /// Addresses to listen on (`bind`), each with its optional mark (`-addr`: skipped when
    /// the address is not available here, as Redis 7).
    pub bind: Vec<(IpAddr, bool)>,
    /// `unixsocket`: a Unix domain socket path to listen on as well.
    pub unixsocket: Option<String>,
    /// `unixsocketperm`: the socket file's mode (0: as the umask leaves it).
    pub unixsocketperm: u32,
    pub shards: usize,
    pub cores: Vec<usize>,
    /// `--cores none`: shard threads are not pinned.
    pub unpinned: bool,
    pub databases: usize,
    pub maxclients: usize,
    pub proto_max_bulk_len: u64,
    pub client_query_buffer_limit: u64,
    pub loglevel: String,
    pub config_file: Option<String>,
    pub ring_entries: u32,
    pub recv_buffer: usize,
    pub recv_mode: RecvMode,
    /// Shard threads run under SCHED_BATCH (`--sched-policy`; `None` = auto: when shards
    /// share a core).
    pub sched_batch: Option<bool>,
    pub tcp_backlog: i32,
    pub tcp_nodelay: bool,
    pub busy_poll_us: u64,
    pub journal: bool,
    pub hop_spin_us: u64,
    pub timeout: u64,
    /// `tcp-keepalive` seconds (0 = off).
    pub tcp_keepalive: u64,
    pub maxmemory: u64,
    /// maxmemory-policy, maxmemory-samples, lfu-log-factor, lfu-decay-time.
    pub evict: EvictCfg,
    /// `client-output-buffer-limit` lines from the config file, applied in order at startup.
    pub obuf_limits: Vec<String>,
    /// The default user's password (`requirepass`; empty: none).
    pub requirepass: String,
    /// `protected-mode`: with no password, only loopback clients are served.
    pub protected_mode: bool,
    /// `enable-debug-command`: who may run DEBUG.
    pub debug_command: Access,
    /// `enable-protected-configs`: who may CONFIG SET `dir` and `dbfilename`.
    pub protected_configs: Access,
    /// `daemonize yes`: fork into the background at startup.
    pub daemonize: bool,
    pub pidfile: Option<String>,
    /// `sentinel-port`: run a sentinel inside this data node on that port (`sentinel::embed`).
    pub sentinel_port: Option<u16>,
    /// `sentinel-config`: its sentinel.conf (default `sentinel-<port>.conf` in `dir`).
    pub sentinel_config: Option<String>,
    /// `sentinel-monitor`, `sentinel-down-after-milliseconds`, ...: sentinel.conf lines.
    pub sentinel_lines: Vec<Vec<String>>,
    /// Log file (`logfile`; empty: standard error, or nowhere when daemonized).
    pub logfile: String,
    /// Working directory (`dir`), entered at startup.
    pub dir: Option<String>,
    /// `supervised systemd` (or `auto` under systemd): READY=1 to $NOTIFY_SOCKET once serving.
    pub supervised_systemd: bool,
    /// `user` directives (each `user <name> <rules...>`), applied at startup.
    pub acl_users: Vec<String>,
    /// `rename-command old new` lines in order (`new` empty: the command is hidden), given
    /// to the command table before it is built (`commands::table::set_renames`).
    pub renames: Vec<(String, String)>,
    /// `aclfile`: users loaded at startup and by ACL LOAD, written by ACL SAVE.
    pub aclfile: Option<String>,
    /// `bind` as given (CONFIG GET and REWRITE show every address).
    pub bind_text: String,
    /// The RDB file's name in `dir` (`dbfilename`): loaded at startup, written by SAVE.
    pub dbfilename: String,
    /// `appendonly`: every shard appends its write journal to its own file in
    /// `dir/appenddirname` (see `persist::aof`).
    pub appendonly: bool,
    pub appendfilename: String,
    pub appenddirname: String,
    /// `appendfsync`: 0 no, 1 everysec, 2 always.
    pub appendfsync: u8,
    /// `shutdown-on-sigint` / `shutdown-on-sigterm`: `SHUTDOWN_*` flags (0: default).
    pub shutdown_on_sigint: u8,
    pub shutdown_on_sigterm: u8,
    /// `aof-load-truncated`: a file cut in the middle of a record loads up to it.
    pub aof_load_truncated: bool,
    /// `auto-aof-rewrite-percentage` (0: off) and `auto-aof-rewrite-min-size` (bytes).
    pub auto_aof_pct: u64,
    pub auto_aof_min: u64,
    /// `rdbcompression`: LZF-compress strings longer than 20 bytes in RDB files.
    pub rdbcompression: bool,
    /// `rdbchecksum`: write a CRC64 at the end of RDB files and check it when loading.
    pub rdbchecksum: bool,
    /// `save <seconds> <changes>` rules; `None` until a `save` directive is read (then
    /// `DEFAULT_SAVE` applies), empty after `save ""`.
    pub save: Option<Vec<(u64, u64)>>,
    /// `stop-writes-on-bgsave-error`: refuse writes (MISCONF) after a failed BGSAVE.
    pub stop_writes_on_bgsave_error: bool,
    /// `replicaof host port` (or `slaveof`): start as a replica of that master.
    pub replicaof: Option<(String, u16)>,
    /// Directives of `directives::DIRECTIVES` that were set, with their values (CONFIG GET
    /// shows them), in the order given.
    pub text: Vec<(String, String)>,
    /// One line per accepted-but-unsupported directive, logged at startup.
    pub warnings: Vec<String>,
    /// The `tls-*` directives (`tls`).
    pub tls: crate::tls::TlsCfg,
    /// `maxmemory-clients`: (bytes, percent of maxmemory); both 0 = no limit.
    pub maxmemory_clients: (u64, u64),
    /// `syslog-enabled`, `syslog-ident`, `syslog-facility` (its libc value).
    pub syslog_enabled: bool,
    pub syslog_ident: String,
    pub syslog_facility: i32,
}

/// Who may run a command guarded by an `enable-*-command` setting (Redis's yes/no/local).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    No,
    Yes,
    /// Only clients connected from the loopback interface.
    Local,
}

impl Access {
    pub fn parse(v: &str) -> Option<Access> {
        match v.trim().to_ascii_lowercase().as_str() {
            "no" => Some(Access::No),
            "yes" => Some(Access::Yes),
            "local" => Some(Access::Local),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Access::No => "no",
            Access::Yes => "yes",
            Access::Local => "local",
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        // One shard per available core, not pinned unless `--cores` lists cores: with the
        // clients on the same machine (the usual first run), a pinned shard that shares its
        // core with a busy client process waits a scheduler slice per cross-shard hop
        // (p99 2-3 ms against 0.2-0.3 unpinned; README "Flags").
        let shards = available_cores().len().max(1);
        Config {
            port: DEFAULT_PORT,
            bind: vec![(IpAddr::from([127, 0, 0, 1]), false)],
            unixsocket: None,
            unixsocketperm: 0,
            shards,
            cores: Vec::new(),
            unpinned: true,
            databases: DEFAULT_DATABASES,
            maxclients: DEFAULT_MAXCLIENTS,
            proto_max_bulk_len: DEFAULT_PROTO_MAX_BULK_LEN,
            client_query_buffer_limit: DEFAULT_QUERY_BUFFER_LIMIT,
            loglevel: "notice".into(),
            config_file: None,
            ring_entries: DEFAULT_RING_ENTRIES,
            recv_buffer: DEFAULT_RECV_BUFFER,
            recv_mode: RecvMode::default(),
            sched_batch: None,
            tcp_backlog: DEFAULT_BACKLOG,
            tcp_nodelay: true,
            busy_poll_us: 0,
            journal: false,
            hop_spin_us: DEFAULT_HOP_SPIN_US,
            timeout: 0,
            tcp_keepalive: 300,
            maxmemory: 0,
            evict: EvictCfg::default(),
            obuf_limits: Vec::new(),
            requirepass: String::new(),
            protected_mode: true,
            debug_command: Access::No,
            protected_configs: Access::No,
            daemonize: false,
            pidfile: None,
            sentinel_port: None,
            sentinel_config: None,
            sentinel_lines: Vec::new(),
            logfile: String::new(),
            dir: None,
            supervised_systemd: false,
            acl_users: Vec::new(),
            renames: Vec::new(),
            aclfile: None,
            bind_text: "127.0.0.1".into(),
            dbfilename: "dump.rdb".into(),
            appendonly: false,
            appendfilename: "appendonly.aof".into(),
            appenddirname: "appendonlydir".into(),
            appendfsync: 1,
            shutdown_on_sigint: 0,
            shutdown_on_sigterm: 0,
            aof_load_truncated: true,
            auto_aof_pct: 100,
            auto_aof_min: 64 << 20,
            rdbcompression: true,
            rdbchecksum: true,
            save: None,
            stop_writes_on_bgsave_error: true,
            replicaof: None,
            text: Vec::new(),
            warnings: Vec::new(),
            tls: crate::tls::TlsCfg::default(),
            maxmemory_clients: (0, 0),
            syslog_enabled: false,
            syslog_ident: "redis".into(),
            syslog_facility: libc::LOG_LOCAL0,
        }
    }
}

/// Cores this process may run on.
pub fn available_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect::<Vec<_>>())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get());
            (0..n).collect()
        })
}

/// A subsystem's own settings (replication's), kept by the subsystem: applied at once and
/// shown by CONFIG GET. The subsystem registers them at startup (`register_settings`), so
/// this module needs no knowledge of it.
pub struct SettingGroup {
    /// Every name (aliases included) with its default.
    pub defaults: &'static [(&'static str, &'static str)],
    /// The other name of an aliased setting.
    pub alias: fn(&str) -> Option<&'static str>,
    /// Applies a value: `Ok(Some(text))`, CONFIG GET then shows `text`; errors carry the
    /// CONFIG SET wording.
    pub set: fn(&str, &str) -> Result<Option<String>, String>,
}

static SETTING_GROUPS: std::sync::OnceLock<&'static [SettingGroup]> = std::sync::OnceLock::new();

/// Registers the subsystems' setting groups; before any configuration is read. `false`
/// when a different set was registered already.
pub fn register_settings(groups: &'static [SettingGroup]) -> bool {
    std::ptr::eq(*SETTING_GROUPS.get_or_init(|| groups), groups)
}

fn setting_groups() -> &'static [SettingGroup] {
    // Unit tests read configurations as the binary does after registration.
    #[cfg(test)]
    let _ = SETTING_GROUPS.get_or_init(|| crate::repl::SETTING_GROUPS);
    SETTING_GROUPS.get().copied().unwrap_or_default()
}

/// The registered group that has a setting `name`.
fn setting_group(name: &str) -> Option<&'static SettingGroup> {
    setting_groups()
        .iter()
        .find(|g| g.defaults.iter().any(|(n, _)| *n == name))
}

/// Parses a `replicaof` / `slaveof` directive: `host port` (`no one`: none).
pub fn parse_replicaof(v: &str) -> Result<Option<(String, u16)>, String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(None),
        [h, p] if h.eq_ignore_ascii_case("no") && p.eq_ignore_ascii_case("one") => Ok(None),
        [h, p] => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("Invalid master port in replicaof '{v}'"))?;
            Ok(Some((h.to_string(), port)))
        }
        _ => Err("wrong number of arguments: replicaof <host> <port>".into()),
    }
}

/// Parses Redis memory units: `1k`=1000, `1kb`=1024, `1m`, `1mb`, `1g`, `1gb`, plain bytes.
pub fn parse_memory(s: &str) -> Result<u64, String> {
    let l = s.trim().to_ascii_lowercase();
    let (num, mul) = [
        ("kb", 1024u64),
        ("mb", 1024 * 1024),
        ("gb", 1024 * 1024 * 1024),
        ("k", 1000),
        ("m", 1000 * 1000),
        ("g", 1000 * 1000 * 1000),
        ("b", 1),
    ]
    .iter()
    .find_map(|(suf, m)| l.strip_suffix(suf).map(|n| (n.to_string(), *m)))
    .unwrap_or((l.clone(), 1));
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("argument must be a memory value: '{s}'"))
}

/// `repl-backlog-size` in bytes, as Redis takes it: a memory value of at least 1, raised to
/// Redis's 16 KB floor (CONFIG GET then shows 16384 for `1kb`, as redis-server does).
pub fn parse_backlog_size(v: &str) -> Result<u64, String> {
    let n = parse_memory(v).map_err(|_| "argument must be a memory value".to_string())?;
    if n == 0 || n > i64::MAX as u64 {
        return Err("argument must be between 1 and 9223372036854775807 inclusive".into());
    }
    Ok(n.max(16 * 1024))
}

/// Parses a core list: "0,2,3", "0-3", "0-1,4".
pub fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("invalid core list '{s}' (expected e.g. 0,1 or 0-3)");
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (
                a.trim().parse::<usize>().map_err(|_| bad())?,
                b.trim().parse::<usize>().map_err(|_| bad())?,
            );
            if a > b {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse::<usize>().map_err(|_| bad())?);
        }
    }
    if out.is_empty() {
        return Err(format!("invalid core list '{s}': no cores"));
    }
    Ok(out)
}

/// `auto-aof-rewrite-percentage`: 0 (off) up to i32::MAX, as Redis's bounds.
pub fn parse_percentage(v: &str) -> Result<u64, String> {
    let n: i64 = v
        .trim()
        .parse()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
    u64::try_from(n)
        .ok()
        .filter(|&n| n <= i32::MAX as u64)
        .ok_or_else(|| "argument must be between 0 and 2147483647 inclusive".to_string())
}

/// `shutdown-on-sigint`/`-sigterm` flags, as Redis 7.0's SHUTDOWN_* (0 is `default`: save
/// when save rules exist).
pub const SHUTDOWN_SAVE: u8 = 1;
pub const SHUTDOWN_NOSAVE: u8 = 2;
pub const SHUTDOWN_NOW: u8 = 4;
pub const SHUTDOWN_FORCE: u8 = 8;
const SHUTDOWN_FLAGS: [(&str, u8); 4] = [
    ("save", SHUTDOWN_SAVE),
    ("nosave", SHUTDOWN_NOSAVE),
    ("now", SHUTDOWN_NOW),
    ("force", SHUTDOWN_FORCE),
];

/// `shutdown-on-sigint`/`-sigterm`'s value: space-separated `default`, `save`, `nosave`,
/// `now`, `force`, with Redis's errors.
pub fn parse_shutdown_flags(s: &str) -> Result<u8, String> {
    let mut flags = 0;
    let bad = || {
        "argument(s) must be one of the following: default, save, nosave, now, force".to_string()
    };
    if s.split_ascii_whitespace().next().is_none() {
        return Err(bad());
    }
    for w in s.split_ascii_whitespace() {
        let w = w.to_ascii_lowercase();
        match SHUTDOWN_FLAGS.iter().find(|(n, _)| *n == w) {
            Some((_, f)) => flags |= f,
            None if w == "default" => {}
            None => return Err(bad()),
        }
    }
    if flags & SHUTDOWN_SAVE != 0 && flags & SHUTDOWN_NOSAVE != 0 {
        return Err("shutdown options SAVE and NOSAVE can't be used simultaneously".into());
    }
    Ok(flags)
}

/// CONFIG GET's text of shutdown flags: `default`, or the flags in Redis's order.
pub fn shutdown_flags_name(flags: u8) -> String {
    if flags == 0 {
        return "default".into();
    }
    SHUTDOWN_FLAGS
        .iter()
        .filter(|(_, f)| flags & f != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `appendfsync`'s values as 0 (no), 1 (everysec), 2 (always).
pub fn parse_fsync(s: &str) -> Result<u8, String> {
    match s.to_ascii_lowercase().as_str() {
        "no" => Ok(0),
        "everysec" => Ok(1),
        "always" => Ok(2),
        _ => Err("argument(s) must be one of the following: always, everysec, no".into()),
    }
}

pub fn fsync_name(n: u8) -> &'static str {
    match n {
        0 => "no",
        2 => "always",
        _ => "everysec",
    }
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" => Ok(true),
        "no" | "false" | "0" => Ok(false),
        _ => Err(format!("argument must be 'yes' or 'no': '{s}'")),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, String> {
    v.trim()
        .parse::<T>()
        .map_err(|_| format!("invalid value for '{name}': '{v}'"))
}

impl Config {
    /// Builds the configuration: defaults, then the config file, then flags.
    pub fn from_cli(cli: &Cli) -> Result<Config, String> {
        let mut cfg = Config::default();
        let mut explicit_shards = false;
        if let Some(path) = &cli.config {
            let mut lines = Vec::new();
            read_config_file(path, 0, &mut lines)?;
            for (place, name, value) in lines {
                if name == "shards" {
                    explicit_shards = true;
                }
                cfg.apply(&name, &value)
                    .map_err(|e| format!("config file {place}: {e}"))?;
            }
            // Redis resolves the path once, so CONFIG REWRITE finds the file after `dir`.
            let abs = std::fs::canonicalize(path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| path.clone());
            cfg.config_file = Some(abs);
        }
        let flags: [(&str, Option<String>); 23] = [
            ("port", cli.port.map(|v| v.to_string())),
            ("bind", cli.bind.clone()),
            ("shards", cli.shards.map(|v| v.to_string())),
            ("cores", cli.cores.clone()),
            ("databases", cli.databases.map(|v| v.to_string())),
            ("maxclients", cli.maxclients.map(|v| v.to_string())),
            ("proto-max-bulk-len", cli.proto_max_bulk_len.clone()),
            (
                "client-query-buffer-limit",
                cli.client_query_buffer_limit.clone(),
            ),
            ("loglevel", cli.loglevel.clone()),
            ("ring-entries", cli.ring_entries.map(|v| v.to_string())),
            ("recv-buffer", cli.recv_buffer.clone()),
            ("recv-mode", cli.recv_mode.clone()),
            ("sched-policy", cli.sched_policy.clone()),
            ("tcp-backlog", cli.tcp_backlog.map(|v| v.to_string())),
            ("tcp-nodelay", cli.tcp_nodelay.clone()),
            ("busy-poll-us", cli.busy_poll_us.map(|v| v.to_string())),
            ("journal", cli.journal.clone()),
            ("hop-spin-us", cli.hop_spin_us.map(|v| v.to_string())),
            ("timeout", cli.timeout.map(|v| v.to_string())),
            ("tcp-keepalive", cli.tcp_keepalive.map(|v| v.to_string())),
            ("maxmemory", cli.maxmemory.clone()),
            ("maxmemory-policy", cli.maxmemory_policy.clone()),
            (
                "maxmemory-samples",
                cli.maxmemory_samples.map(|v| v.to_string()),
            ),
        ];
        for (name, value) in flags {
            if let Some(v) = value {
                if name == "shards" {
                    explicit_shards = true;
                }
                cfg.apply(name, &v)?;
            }
        }
        // Any other directive given as `--name value` (redis-server's form).
        for (name, v) in &cli.extra {
            if name == "shards" {
                explicit_shards = true;
            }
            cfg.apply(name, v)?;
        }
        // Shards default to one per listed core.
        if !explicit_shards {
            cfg.shards = if cfg.unpinned {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                cfg.cores.len().max(1)
            };
        }
        if cfg.shards == 0 || cfg.shards > 256 {
            return Err(format!(
                "shards must be between 1 and 256 (got {})",
                cfg.shards
            ));
        }
        Ok(cfg)
    }

    /// Applies one `name value` setting (flag, config file line).
    pub fn apply(&mut self, name: &str, v: &str) -> Result<(), String> {
        // A subsystem's settings (replication's): applied at once, shown by CONFIG GET.
        if let Some(g) = setting_group(name) {
            let shown = (g.set)(name, v)
                .map_err(|e| format!("invalid value for '{name}': {e}"))?
                .unwrap_or_default();
            for n in std::iter::once(name).chain((g.alias)(name)) {
                self.text.retain(|(k, _)| k != n);
                self.text.push((n.to_string(), shown.clone()));
            }
            return Ok(());
        }
        match name {
            "port" => self.port = parse_num(name, v)?,
            "bind" => {
                self.bind = parse_bind(v)?;
                self.bind_text = v.to_string();
            }
            "unixsocket" => self.unixsocket = (!v.is_empty()).then(|| v.to_string()),
            "unixsocketperm" => {
                let p = u32::from_str_radix(v.trim(), 8)
                    .ok()
                    .filter(|p| *p <= 0o777)
                    .ok_or_else(|| format!("invalid unixsocketperm '{v}' (octal, at most 777)"))?;
                self.unixsocketperm = p;
            }
            "shards" => self.shards = parse_num(name, v)?,
            "cores" => {
                // `none`: one shard per available core, none pinned (the scheduler places
                // them; see README "Flags").
                if v.eq_ignore_ascii_case("none") {
                    self.cores.clear();
                    self.unpinned = true;
                } else {
                    self.cores = parse_cores(v)?;
                    self.unpinned = false;
                }
            }
            "databases" => {
                let n: usize = parse_num(name, v)?;
                if n == 0 || n > 1_000_000 {
                    return Err(format!("invalid number of databases '{v}'"));
                }
                self.databases = n;
            }
            "maxclients" => {
                let n: usize = parse_num(name, v)?;
                if n == 0 {
                    return Err("maxclients must be at least 1".into());
                }
                self.maxclients = n;
            }
            "proto-max-bulk-len" => {
                let n = parse_memory(v)?;
                if n < 1024 * 1024 {
                    return Err("proto-max-bulk-len must be at least 1mb".into());
                }
                self.proto_max_bulk_len = n;
            }
            "client-query-buffer-limit" => {
                let n = parse_memory(v)?;
                if n < 1024 * 1024 {
                    return Err("client-query-buffer-limit must be at least 1mb".into());
                }
                self.client_query_buffer_limit = n;
            }
            "loglevel" => {
                let l = v.to_ascii_lowercase();
                if !["debug", "verbose", "notice", "warning", "nothing"].contains(&l.as_str()) {
                    return Err(format!("invalid loglevel '{v}'"));
                }
                self.loglevel = l;
            }
            "ring-entries" => {
                let n: u32 = parse_num(name, v)?;
                if !(8..=32768).contains(&n) {
                    return Err("ring-entries must be between 8 and 32768".into());
                }
                self.ring_entries = n;
            }
            "recv-buffer" => {
                let n = parse_memory(v)? as usize;
                if !(512..=64 * 1024 * 1024).contains(&n) {
                    return Err("recv-buffer must be between 512 bytes and 64mb".into());
                }
                self.recv_buffer = n;
            }
            "recv-mode" => {
                self.recv_mode = match v.to_ascii_lowercase().as_str() {
                    "multishot" => RecvMode::Multishot,
                    "single" => RecvMode::Single,
                    _ => return Err(format!("invalid recv-mode '{v}' (multishot or single)")),
                }
            }
            "sched-policy" => {
                self.sched_batch = match v.to_ascii_lowercase().as_str() {
                    "auto" => None,
                    "batch" => Some(true),
                    "other" | "normal" => Some(false),
                    _ => return Err(format!("invalid sched-policy '{v}' (auto, batch or other)")),
                }
            }
            "tcp-backlog" => self.tcp_backlog = parse_num(name, v)?,
            "tcp-nodelay" => self.tcp_nodelay = parse_yes_no(v)?,
            "busy-poll-us" => self.busy_poll_us = parse_num(name, v)?,
            "journal" => self.journal = parse_yes_no(v)?,
            "notify-keyspace-events" => {
                let f = crate::shard::notify::parse(v)
                    .ok_or_else(|| crate::shard::notify::INVALID.to_string())?;
                let shown = crate::shard::notify::format(f);
                self.text.retain(|(n, _)| n != name);
                self.text.push((name.to_string(), shown));
            }
            other if crate::shard::latency::parse_setting(other, "").is_some() => {
                let (_, shown) = crate::shard::latency::parse_setting(other, v)
                    .unwrap_or(Err(String::new()))
                    .map_err(|e| format!("invalid value for '{other}': {e}"))?;
                self.text.retain(|(n, _)| n != other);
                self.text.push((other.to_string(), shown));
            }
            "hop-spin-us" => self.hop_spin_us = parse_num(name, v)?,
            "timeout" => self.timeout = parse_num(name, v)?,
            "tcp-keepalive" => self.tcp_keepalive = parse_num(name, v)?,
            // Encoding thresholds (`types::limits`): installed when the server starts
            // (`install_thresholds`), shown by CONFIG GET under both names.
            other if crate::types::limits::find(other).is_some() => {
                let (n, shown) = parse_threshold(other, v)?;
                if n == "list-compress-depth" {
                    if let Some(w) = compress_depth_warning(&shown) {
                        self.warnings.push(w);
                    }
                }
                for k in threshold_names(n) {
                    self.text.retain(|(x, _)| x != k);
                    self.text.push((k.to_string(), shown.clone()));
                }
            }
            "lua-time-limit" | "busy-reply-threshold" => {
                let ms: u64 = parse_num(name, v)?;
                crate::engine::scripts::set_busy_threshold_ms(ms);
            }
            "lua-allow-undeclared-keys" => {
                crate::engine::scripts::set_allow_undeclared(parse_yes_no(v)?);
            }
            "lazyfree-lazy-user-del" => crate::shard::lazyfree::set_user_del(parse_yes_no(v)?),
            "acllog-max-len" => crate::acl::set_log_max(parse_num(name, v)?),
            "hll-sparse-max-bytes" => {
                crate::types::hll::set_sparse_max_bytes(parse_memory(v)? as usize)
            }
            "lazyfree-lazy-user-flush" => crate::shard::lazyfree::set_user_flush(parse_yes_no(v)?),
            "maxmemory" => self.maxmemory = parse_memory(v)?,
            "maxmemory-clients" => {
                self.maxmemory_clients = parse_clients_limit(v)
                    .map_err(|e| format!("invalid value for '{name}': {e}"))?;
                let shown = match self.maxmemory_clients {
                    (b, 0) => b.to_string(),
                    (_, p) => format!("{p}%"),
                };
                self.text.retain(|(n, _)| n != name);
                self.text.push((name.to_string(), shown));
            }
            "maxmemory-policy" | "maxmemory-samples" | "lfu-log-factor" | "lfu-decay-time" => {
                set_evict_param(&mut self.evict, name, v)
                    .map_err(|e| format!("invalid value for '{name}': {e}"))?;
            }
            "client-output-buffer-limit" => {
                parse_obuf_limits(v)?;
                self.obuf_limits.push(v.to_string());
            }
            "requirepass" => self.requirepass = v.to_string(),
            "user" => self.acl_users.push(format!("user {v}")),
            "rename-command" => {
                // The words were joined with single spaces (an empty new name leaves a
                // trailing one): exactly two, as Redis takes them.
                let (old, new) = v
                    .split_once(' ')
                    .filter(|(_, n)| !n.contains(' '))
                    .ok_or("wrong number of arguments for 'rename-command'")?;
                let mut all = self.renames.clone();
                all.push((old.to_string(), new.to_string()));
                crate::commands::table::resolve_renames(&all)?;
                self.renames = all;
            }
            "aclfile" => self.aclfile = (!v.is_empty()).then(|| v.to_string()),
            "protected-mode" => self.protected_mode = parse_yes_no(v)?,
            "enable-debug-command" => {
                self.debug_command = Access::parse(v)
                    .ok_or_else(|| format!("argument must be one of yes, no, local: '{v}'"))?
            }
            "enable-protected-configs" => {
                self.protected_configs = Access::parse(v)
                    .ok_or_else(|| format!("argument must be one of yes, no, local: '{v}'"))?
            }
            "daemonize" => self.daemonize = parse_yes_no(v)?,
            "syslog-enabled" | "syslog-ident" | "syslog-facility" => {
                match name {
                    "syslog-enabled" => {
                        self.syslog_enabled = parse_yes_no(v)?;
                    }
                    "syslog-ident" => self.syslog_ident = v.to_string(),
                    _ => {
                        let l = v.trim().to_ascii_lowercase();
                        self.syslog_facility = crate::runtime::sys::SYSLOG_FACILITIES
                            .iter()
                            .find(|(n, _)| *n == l)
                            .map(|(_, f)| *f)
                            .ok_or("Invalid log facility. Must be one of USER or between LOCAL0-LOCAL7")?;
                    }
                }
                let shown = match name {
                    "syslog-facility" => v.trim().to_ascii_lowercase(),
                    "syslog-enabled" => if self.syslog_enabled { "yes" } else { "no" }.into(),
                    _ => v.to_string(),
                };
                self.text.retain(|(n, _)| n != name);
                self.text.push((name.to_string(), shown));
            }
            "pidfile" => self.pidfile = (!v.is_empty()).then(|| v.to_string()),
            "sentinel-port" => {
                let port: u16 = parse_num(name, v)?;
                self.sentinel_port = (port > 0).then_some(port);
                self.text.retain(|(n, _)| n != name);
                self.text.push((name.to_string(), port.to_string()));
            }
            "sentinel-config" => {
                self.sentinel_config = (!v.is_empty()).then(|| v.to_string());
                self.text.retain(|(n, _)| n != name);
                self.text.push((name.to_string(), v.to_string()));
            }
            "sentinel-monitor"
            | "sentinel-down-after-milliseconds"
            | "sentinel-failover-timeout"
            | "sentinel-parallel-syncs"
            | "sentinel-auth-pass" => {
                // `--sentinel-monitor m 127.0.0.1 6379 2` is `sentinel monitor m ...`.
                let mut line = vec![
                    "sentinel".to_string(),
                    name["sentinel-".len()..].to_string(),
                ];
                line.extend(v.split_whitespace().map(str::to_string));
                self.sentinel_lines.push(line);
            }
            "logfile" => self.logfile = v.to_string(),
            "dir" => self.dir = Some(v.to_string()),
            "supervised" => {
                self.supervised_systemd = match v.to_ascii_lowercase().as_str() {
                    "no" => false,
                    "systemd" => true,
                    "auto" => std::env::var_os("NOTIFY_SOCKET").is_some(),
                    "upstart" => {
                        self.warnings.push(
                            "'supervised upstart' is not supported: no SIGSTOP handshake".into(),
                        );
                        false
                    }
                    _ => return Err(format!("invalid supervised mode '{v}'")),
                };
                self.text.retain(|(n, _)| n != "supervised");
                self.text
                    .push(("supervised".into(), v.to_ascii_lowercase()));
            }
            "dbfilename" => {
                // As Redis: a file name, not a path (it lives in `dir`).
                if v.is_empty() || v.contains('/') {
                    return Err("dbfilename can't be a path, just a filename".into());
                }
                self.dbfilename = v.to_string();
            }
            "appendonly" => self.appendonly = parse_yes_no(v)?,
            "appendfilename" | "appenddirname" => {
                if v.is_empty() || v.contains('/') {
                    return Err(format!("{name} can't be a path, just a filename"));
                }
                if name == "appendfilename" {
                    self.appendfilename = v.to_string();
                } else {
                    self.appenddirname = v.to_string();
                }
            }
            "appendfsync" => self.appendfsync = parse_fsync(v)?,
            "shutdown-on-sigint" => self.shutdown_on_sigint = parse_shutdown_flags(v)?,
            "shutdown-on-sigterm" => self.shutdown_on_sigterm = parse_shutdown_flags(v)?,
            "aof-load-truncated" => self.aof_load_truncated = parse_yes_no(v)?,
            "auto-aof-rewrite-percentage" => self.auto_aof_pct = parse_percentage(v)?,
            "auto-aof-rewrite-min-size" => self.auto_aof_min = parse_memory(v)?,
            "repl-backlog-size" => {
                let n = parse_backlog_size(v)
                    .map_err(|e| format!("invalid value for '{name}': {e}"))?;
                self.text.retain(|(k, _)| k != name);
                self.text.push((name.to_string(), n.to_string()));
            }
            "rdbcompression" => self.rdbcompression = parse_yes_no(v)?,
            "rdbchecksum" => self.rdbchecksum = parse_yes_no(v)?,
            "save" => {
                // As Redis reading its config: the first `save` line replaces the default
                // rules, later ones (flags included) add to them; `save ""` clears them.
                let rules = parse_save(v)?;
                match (&mut self.save, v.trim().is_empty()) {
                    (_, true) | (None, _) => self.save = Some(rules),
                    (Some(have), false) => have.extend(rules),
                }
            }
            "stop-writes-on-bgsave-error" => self.stop_writes_on_bgsave_error = parse_yes_no(v)?,
            "replicaof" | "slaveof" => self.replicaof = parse_replicaof(v)?,
            // TLS (`tls`): implemented, or accepted with a warning, or refused.
            other if crate::tls::DEFAULTS.iter().any(|(n, _)| *n == other) => {
                if let Some((shown, warn)) = self.tls.apply(other, v)? {
                    self.warnings.extend(warn);
                    self.text.retain(|(n, _)| n != other);
                    self.text.push((other.to_string(), shown));
                }
            }
            // Every other Redis directive: accepted with a warning, or refused with the
            // reason (`directives`); never ignored silently.
            other => {
                if let Some(w) = crate::directives::check(other, v)? {
                    self.warnings.push(w);
                }
                self.text.retain(|(n, _)| n != other);
                self.text.push((other.to_string(), v.to_string()));
            }
        }
        Ok(())
    }
}

/// Redis's limit on `bind` addresses (CONFIG_BINDADDR_MAX).
const BIND_MAX: usize = 16;

/// Parses `bind`'s addresses as Redis 7: `-` marks an optional one, `*` is every IPv4
/// address and `::*` every IPv6 one, `localhost` is 127.0.0.1.
pub fn parse_bind(v: &str) -> Result<Vec<(IpAddr, bool)>, String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    if words.len() > BIND_MAX {
        return Err("Too many bind addresses specified.".into());
    }
    if words.is_empty() {
        return Err("bind needs at least one address".into());
    }
    words
        .iter()
        .map(|w| {
            let (addr, optional) = match w.strip_prefix('-') {
                Some(a) => (a, true),
                None => (*w, false),
            };
            let ip = match addr {
                "*" => IpAddr::from([0, 0, 0, 0]),
                "::*" => IpAddr::from([0u16; 8]),
                "localhost" => IpAddr::from([127, 0, 0, 1]),
                a => a
                    .parse()
                    .map_err(|_| format!("invalid bind address '{w}'"))?,
            };
            Ok((ip, optional))
        })
        .collect()
}

/// Parses an encoding threshold (`types::limits`) by either of its names: its canonical
/// name and the value as CONFIG GET shows it. Errors carry Redis's CONFIG SET wording.
fn parse_threshold(name: &str, v: &str) -> Result<(&'static str, String), String> {
    let (n, _, _, kind) =
        crate::types::limits::find(name).ok_or_else(|| format!("unknown parameter '{name}'"))?;
    let value = crate::types::limits::parse(*kind, v)?;
    Ok((n, value.to_string()))
}

/// A threshold's names: the canonical one and its `*-ziplist-*` alias, if any.
fn threshold_names(name: &str) -> impl Iterator<Item = &'static str> {
    crate::types::limits::find(name)
        .into_iter()
        .flat_map(|(n, alias, _, _)| std::iter::once(*n).chain(*alias))
}

/// What `list-compress-depth` does not do here, logged when it asks for compression.
fn compress_depth_warning(shown: &str) -> Option<String> {
    (shown != "0").then(|| {
        format!(
            "'list-compress-depth {shown}': list nodes are not compressed in memory; DUMP and \
             RDB files write the inner nodes compressed, as Redis does"
        )
    })
}

/// Makes the thresholds of `cfg` (config file, flags) the ones in force (`types::limits`);
/// the server calls it once before loading data.
pub fn install_thresholds(cfg: &Config) {
    for (name, _, default, _) in crate::types::limits::PARAMS {
        let v = cfg
            .text
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.parse::<i64>().ok())
            .unwrap_or(*default);
        crate::types::limits::set(name, v);
    }
}

/// Parses a `save` value: `<seconds> <changes>` pairs (seconds at least 1), or nothing.
/// Errors carry Redis's text.
pub fn parse_save(v: &str) -> Result<Vec<(u64, u64)>, String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    let bad = || "Invalid save parameters".to_string();
    if !words.len().is_multiple_of(2) {
        return Err(bad());
    }
    words
        .chunks_exact(2)
        .map(|pair| match pair {
            [s, c] => match (s.parse::<u64>(), c.parse::<u64>()) {
                (Ok(s), Ok(c)) if s >= 1 && s <= i64::MAX as u64 && c <= i32::MAX as u64 => {
                    Ok((s, c))
                }
                _ => Err(bad()),
            },
            _ => Err(bad()),
        })
        .collect()
}

/// Save rules as CONFIG GET shows them: `3600 1 300 100` (empty when there are none).
pub fn format_save(rules: &[(u64, u64)]) -> String {
    rules
        .iter()
        .map(|(s, c)| format!("{s} {c}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parameters CONFIG GET reports (with their default values) that shardis accepts but does
/// not act on yet: persistence and memory settings that clients and tools read at startup.
pub const PASSIVE_PARAMS: &[(&str, &str)] = &[
    ("dir", "."),
    ("dbfilename", "dump.rdb"),
    ("maxmemory", "0"),
    ("hz", "10"),
    ("daemonize", "no"),
    ("protected-mode", "no"),
    ("tcp-keepalive", "300"),
    ("requirepass", ""),
    ("lua-time-limit", "5000"),
    ("busy-reply-threshold", "5000"),
    ("notify-keyspace-events", ""),
    ("lazyfree-lazy-user-del", "no"),
    ("lazyfree-lazy-user-flush", "no"),
    ("replica-read-only", "yes"),
    ("replica-priority", "100"),
    ("min-replicas-to-write", "0"),
    ("repl-backlog-size", "1048576"),
    (
        "client-output-buffer-limit",
        "normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60",
    ),
    ("cluster-enabled", "no"),
    ("logfile", ""),
    ("pidfile", ""),
    ("io-threads", "1"),
    ("enable-debug-command", "yes"),
];

/// `client-output-buffer-limit` defaults per class (normal, replica, pubsub): hard bytes,
/// soft bytes, soft seconds, as in Redis.
pub const DEFAULT_OBUF_LIMITS: [[u64; 3]; 3] = [
    [0, 0, 0],
    [256 << 20, 64 << 20, 60],
    [32 << 20, 8 << 20, 60],
];

/// Parses `<class> <hard> <soft> <soft-seconds> [<class> ...]` (Redis's CONFIG SET form):
/// class `normal`, `replica`/`slave` or `pubsub` (index 0, 1, 2), sizes with memory units.
/// Only the classes named are returned; an empty value names none. Errors carry Redis's text.
pub fn parse_obuf_limits(v: &str) -> Result<Vec<(usize, [u64; 3])>, String> {
    let words: Vec<&str> = v.split_whitespace().collect();
    if !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    let mut out = Vec::new();
    for group in words.chunks_exact(4) {
        let [class, hard, soft, secs] = group else {
            continue;
        };
        let class = match class.to_ascii_lowercase().as_str() {
            "normal" => 0,
            "replica" | "slave" => 1,
            "pubsub" => 2,
            _ => {
                return Err("Invalid client class specified in buffer limit configuration.".into())
            }
        };
        let bad = || "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        let hard = parse_memory(hard).map_err(|_| bad())?;
        let soft = parse_memory(soft).map_err(|_| bad())?;
        let secs: u64 = secs.parse().map_err(|_| bad())?;
        out.push((class, [hard, soft, secs]));
    }
    Ok(out)
}

/// Redis's text for a bad `maxmemory-policy` (after CONFIG SET's prefix).
pub const POLICY_ERROR: &str = "argument(s) must be one of the following: volatile-lru, volatile-lfu, volatile-random, volatile-ttl, allkeys-lru, allkeys-lfu, allkeys-random, noeviction";

/// Parses one eviction parameter into `cfg`; errors carry Redis's CONFIG SET wording.
fn set_evict_param(cfg: &mut EvictCfg, name: &str, v: &str) -> Result<(), String> {
    let int = |min: i64| -> Result<u32, String> {
        let n: i64 = v
            .trim()
            .parse()
            .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
        if n < min || n > i64::from(i32::MAX) {
            return Err(format!(
                "argument must be between {min} and 2147483647 inclusive"
            ));
        }
        Ok(n as u32)
    };
    match name {
        "maxmemory-policy" => {
            cfg.policy = Policy::parse(v.trim()).ok_or_else(|| POLICY_ERROR.to_string())?
        }
        "maxmemory-samples" => cfg.samples = int(1)? as usize,
        "lfu-log-factor" => cfg.lfu_log_factor = int(0)?,
        "lfu-decay-time" => cfg.lfu_decay_time = int(0)?,
        _ => {}
    }
    Ok(())
}

/// Values CONFIG SET may change while running, read lock-free by every shard.
pub struct Tunables {
    pub maxclients: AtomicUsize,
    /// Descriptors the server keeps for itself (set once at startup, see
    /// `server::adjust_open_files_limit`); CONFIG SET maxclients must leave room for them
    /// under RLIMIT_NOFILE. 0 = not checked (in-process tests).
    pub reserved_fds: AtomicU64,
    pub proto_max_bulk_len: AtomicU64,
    pub client_query_buffer_limit: AtomicU64,
    pub timeout: AtomicU64,
    /// `tcp-keepalive` seconds for connections accepted from now on (0 = off).
    pub tcp_keepalive: AtomicU64,
    /// Bytes; 0 = no limit. Read on every DENYOOM command when set.
    pub maxmemory: AtomicU64,
    /// `maxmemory-clients` in bytes, or as a percentage of maxmemory (`_pct`, when not 0);
    /// read by each shard's 100 ms client-eviction check.
    pub maxmemory_clients: AtomicU64,
    pub maxmemory_clients_pct: AtomicU64,
    /// `Policy::code()` of maxmemory-policy; shards read it (and the three below) once per
    /// loop pass (`evict_cfg`).
    pub maxmemory_policy: AtomicU64,
    pub maxmemory_samples: AtomicU64,
    pub lfu_log_factor: AtomicU64,
    pub lfu_decay_time: AtomicU64,
    /// `client-output-buffer-limit`'s pubsub class: hard bytes, soft bytes, soft seconds
    /// (0 disables a limit). The replica class is only kept as text.
    pub pubsub_obuf_limit: [AtomicU64; 3],
    /// The normal class's limits (plain clients), the same three figures; all 0 by default
    /// as in Redis (no limit).
    pub normal_obuf_limit: [AtomicU64; 3],
    /// A password is set (`requirepass`): new connections start unauthenticated.
    pub auth_required: AtomicBool,
    /// `protected-mode`: with no password, clients from outside loopback are turned away.
    pub protected_mode: AtomicBool,
    /// `appendfsync` (0 no, 1 everysec, 2 always), read by each shard's AOF writer.
    pub appendfsync: std::sync::atomic::AtomicU8,
    /// `shutdown-on-sigint` / `shutdown-on-sigterm` (`SHUTDOWN_*` flags), read by the
    /// signal thread.
    pub shutdown_on_sigint: std::sync::atomic::AtomicU8,
    pub shutdown_on_sigterm: std::sync::atomic::AtomicU8,
    /// `auto-aof-rewrite-percentage` (0: off) and `auto-aof-rewrite-min-size`, read by shard
    /// 0's once-a-second check (`persist::cron`).
    pub auto_aof_pct: AtomicU64,
    pub auto_aof_min: AtomicU64,
    /// `rdbcompression` / `rdbchecksum` (CONFIG SET changes the next save).
    pub rdbcompression: AtomicBool,
    pub rdbchecksum: AtomicBool,
    /// `save` rules, read once a second by the save check (`persist::cron`) and by CONFIG.
    pub save_rules: Mutex<Vec<(u64, u64)>>,
    /// Some save rule exists (MISCONF needs one, as Redis's `saveparamslen > 0`).
    pub has_save_rules: AtomicBool,
    /// `stop-writes-on-bgsave-error`.
    pub stop_writes_on_bgsave_error: AtomicBool,
    /// `notify-keyspace-events` flags (`shard::notify`), read by each shard once per pass.
    pub notify_flags: AtomicU32,
    /// Slow log and latency settings (`shard::latency::Tunables`).
    pub obs: crate::shard::latency::Tunables,
    /// Everything else CONFIG GET/SET knows, as text (the password too). Touched only by
    /// CONFIG and AUTH, never on the request path.
    pub text: Mutex<BTreeMap<String, String>>,
    /// TLS settings and configurations (`None` until the server built them at startup);
    /// read when a TLS connection is accepted or a replica link connects.
    pub tls: Mutex<Option<crate::tls::Live>>,
}

impl Tunables {
    /// The TLS server configuration new connections on the TLS port start from.
    pub fn tls_server(&self) -> Option<std::sync::Arc<rustls::ServerConfig>> {
        self.tls.lock().ok()?.as_ref()?.server.clone()
    }

    /// CONFIG SET of `tls-*` settings together (see `tls::Live::set_many`); returns the
    /// previous state for `restore_tls`.
    pub fn set_tls(
        &self,
        pairs: &[(String, String)],
    ) -> Result<crate::tls::Live, (String, String)> {
        let internal = || (String::new(), "internal error".to_string());
        let mut live = self.tls.lock().map_err(|_| internal())?;
        let live = live
            .as_mut()
            .ok_or_else(|| (String::new(), "TLS is not initialised".to_string()))?;
        let (old, shown) = live.set_many(pairs)?;
        let mut m = self.text.lock().map_err(|_| internal())?;
        for (n, v) in shown {
            m.insert(n, v);
        }
        Ok(old)
    }

    /// Puts back the TLS state `set_tls` replaced (a CONFIG SET whose other part failed),
    /// with the values CONFIG GET showed before.
    pub fn restore_tls(&self, old: crate::tls::Live, shown: &BTreeMap<String, String>) {
        if let Ok(mut live) = self.tls.lock() {
            *live = Some(old);
        }
        if let Ok(mut m) = self.text.lock() {
            for (n, _) in crate::tls::DEFAULTS {
                if let Some(v) = shown.get(*n) {
                    m.insert(n.to_string(), v.clone());
                }
            }
        }
    }

    /// The TLS client configuration for a new link to a master (`tls-replication yes`).
    pub fn tls_client(&self) -> Option<std::sync::Arc<rustls::ClientConfig>> {
        self.tls.lock().ok()?.as_ref()?.client.clone()
    }

    pub fn new(cfg: &Config) -> Tunables {
        let mut text: BTreeMap<String, String> = PASSIVE_PARAMS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in crate::shard::latency::SETTINGS {
            text.insert(k.to_string(), v.to_string());
        }
        text.insert("port".into(), cfg.port.to_string());
        text.insert("bind".into(), cfg.bind_text.clone());
        text.insert(
            "unixsocket".into(),
            cfg.unixsocket.clone().unwrap_or_default(),
        );
        text.insert("unixsocketperm".into(), format!("{:o}", cfg.unixsocketperm));
        text.insert("databases".into(), cfg.databases.to_string());
        text.insert("loglevel".into(), cfg.loglevel.clone());
        text.insert("tcp-backlog".into(), cfg.tcp_backlog.to_string());
        text.insert(
            "tcp-nodelay".into(),
            if cfg.tcp_nodelay { "yes" } else { "no" }.into(),
        );
        text.insert("shards".into(), cfg.shards.to_string());
        let busy = crate::engine::scripts::busy_threshold_ms().to_string();
        text.insert("lua-time-limit".into(), busy.clone());
        text.insert("busy-reply-threshold".into(), busy);
        let undeclared = if crate::engine::scripts::allow_undeclared() {
            "yes"
        } else {
            "no"
        };
        text.insert("lua-allow-undeclared-keys".into(), undeclared.into());
        text.insert("acllog-max-len".into(), crate::acl::log_max().to_string());
        text.insert(
            "hll-sparse-max-bytes".into(),
            crate::types::hll::sparse_max_bytes().to_string(),
        );
        for (name, on) in [
            ("lazyfree-lazy-user-del", crate::shard::lazyfree::user_del()),
            (
                "lazyfree-lazy-user-flush",
                crate::shard::lazyfree::user_flush(),
            ),
        ] {
            text.insert(name.into(), if on { "yes" } else { "no" }.into());
        }
        text.insert("requirepass".into(), cfg.requirepass.clone());
        text.insert("aclfile".into(), cfg.aclfile.clone().unwrap_or_default());
        let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
        text.insert("protected-mode".into(), yn(cfg.protected_mode));
        text.insert("daemonize".into(), yn(cfg.daemonize));
        text.insert(
            "enable-debug-command".into(),
            cfg.debug_command.name().into(),
        );
        text.insert(
            "enable-protected-configs".into(),
            cfg.protected_configs.name().into(),
        );
        text.insert("pidfile".into(), cfg.pidfile.clone().unwrap_or_default());
        text.insert("logfile".into(), cfg.logfile.clone());
        let dir = std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        text.insert("dir".into(), cfg.dir.clone().unwrap_or(dir));
        text.insert("dbfilename".into(), cfg.dbfilename.clone());
        text.insert("appendonly".into(), yn(cfg.appendonly));
        text.insert("appendfilename".into(), cfg.appendfilename.clone());
        text.insert("appenddirname".into(), cfg.appenddirname.clone());
        text.insert("appendfsync".into(), fsync_name(cfg.appendfsync).into());
        for (name, flags) in [
            ("shutdown-on-sigint", cfg.shutdown_on_sigint),
            ("shutdown-on-sigterm", cfg.shutdown_on_sigterm),
        ] {
            text.insert(name.into(), shutdown_flags_name(flags));
        }
        text.insert("aof-load-truncated".into(), yn(cfg.aof_load_truncated));
        text.insert(
            "auto-aof-rewrite-percentage".into(),
            cfg.auto_aof_pct.to_string(),
        );
        text.insert(
            "auto-aof-rewrite-min-size".into(),
            cfg.auto_aof_min.to_string(),
        );
        text.insert("rdbcompression".into(), yn(cfg.rdbcompression));
        text.insert("rdbchecksum".into(), yn(cfg.rdbchecksum));
        let rules = cfg.save.clone().unwrap_or_else(|| DEFAULT_SAVE.to_vec());
        text.insert("save".into(), format_save(&rules));
        text.insert(
            "stop-writes-on-bgsave-error".into(),
            yn(cfg.stop_writes_on_bgsave_error),
        );
        for (k, v) in setting_groups().iter().flat_map(|g| g.defaults) {
            text.insert(k.to_string(), v.to_string());
        }
        for (k, alias, v, _) in crate::types::limits::PARAMS {
            for n in std::iter::once(*k).chain(*alias) {
                text.insert(n.to_string(), v.to_string());
            }
        }
        text.insert("maxmemory-clients".into(), "0".into());
        text.insert("syslog-enabled".into(), "no".into());
        text.insert("syslog-ident".into(), "redis".into());
        text.insert("syslog-facility".into(), "local0".into());
        for (k, v) in crate::tls::DEFAULTS {
            text.insert(k.to_string(), v.to_string());
        }
        let master = cfg
            .replicaof
            .as_ref()
            .map(|(h, p)| format!("{h} {p}"))
            .unwrap_or_default();
        text.insert("replicaof".into(), master.clone());
        text.insert("slaveof".into(), master);
        for (k, v) in &cfg.text {
            text.insert(k.clone(), v.clone());
        }
        let t = Tunables {
            auth_required: AtomicBool::new(
                !cfg.requirepass.is_empty() || crate::acl::auth_required(),
            ),
            protected_mode: AtomicBool::new(cfg.protected_mode),
            maxclients: AtomicUsize::new(cfg.maxclients),
            reserved_fds: AtomicU64::new(0),
            proto_max_bulk_len: AtomicU64::new(cfg.proto_max_bulk_len),
            client_query_buffer_limit: AtomicU64::new(cfg.client_query_buffer_limit),
            timeout: AtomicU64::new(cfg.timeout),
            tcp_keepalive: AtomicU64::new(cfg.tcp_keepalive),
            maxmemory: AtomicU64::new(cfg.maxmemory),
            maxmemory_clients: AtomicU64::new(cfg.maxmemory_clients.0),
            maxmemory_clients_pct: AtomicU64::new(cfg.maxmemory_clients.1),
            maxmemory_policy: AtomicU64::new(cfg.evict.policy.code()),
            maxmemory_samples: AtomicU64::new(cfg.evict.samples as u64),
            lfu_log_factor: AtomicU64::new(cfg.evict.lfu_log_factor.into()),
            lfu_decay_time: AtomicU64::new(cfg.evict.lfu_decay_time.into()),
            pubsub_obuf_limit: DEFAULT_OBUF_LIMITS[2].map(AtomicU64::new),
            normal_obuf_limit: DEFAULT_OBUF_LIMITS[0].map(AtomicU64::new),
            appendfsync: std::sync::atomic::AtomicU8::new(cfg.appendfsync),
            shutdown_on_sigint: std::sync::atomic::AtomicU8::new(cfg.shutdown_on_sigint),
            shutdown_on_sigterm: std::sync::atomic::AtomicU8::new(cfg.shutdown_on_sigterm),
            auto_aof_pct: AtomicU64::new(cfg.auto_aof_pct),
            auto_aof_min: AtomicU64::new(cfg.auto_aof_min),
            rdbcompression: AtomicBool::new(cfg.rdbcompression),
            rdbchecksum: AtomicBool::new(cfg.rdbchecksum),
            has_save_rules: AtomicBool::new(!rules.is_empty()),
            save_rules: Mutex::new(rules),
            stop_writes_on_bgsave_error: AtomicBool::new(cfg.stop_writes_on_bgsave_error),
            notify_flags: AtomicU32::new(
                text.get("notify-keyspace-events")
                    .and_then(|v| crate::shard::notify::parse(v))
                    .unwrap_or(0),
            ),
            obs: crate::shard::latency::Tunables::new(|n| text.get(n).cloned()),
            text: Mutex::new(text),
            tls: Mutex::new(None),
        };
        for v in &cfg.obuf_limits {
            // Validated when the file was read.
            let _ = t.set("client-output-buffer-limit", v);
        }
        t
    }

    /// Redis's updateMaxclients: raises RLIMIT_NOFILE's soft limit (up to the hard one) so
    /// that `maxclients` clients fit beside the reserved descriptors, or refuses with the
    /// largest value that fits (the setting then stays as it was).
    fn fit_nofile(&self, maxclients: usize) -> Result<(), String> {
        use crate::runtime::sys;
        let reserved = self.reserved_fds.load(Ordering::Relaxed);
        if reserved == 0 {
            return Ok(());
        }
        let want = (maxclients as u64).saturating_add(reserved);
        let Ok((cur, max)) = sys::nofile_limit() else {
            return Ok(());
        };
        if cur >= want {
            return Ok(());
        }
        let best = if max > cur && sys::set_nofile(want.min(max)).is_ok() {
            want.min(max)
        } else {
            cur
        };
        if best >= want {
            return Ok(());
        }
        Err(format!(
            "The operating system is not able to handle the specified number of clients, try \
             with {}",
            best.saturating_sub(reserved)
        ))
    }

    /// The RDB file's name now in force (`dbfilename`: the config, or CONFIG SET where
    /// `enable-protected-configs` allows it). Read by each save, never per command.
    pub fn dbfilename(&self) -> String {
        self.text
            .lock()
            .ok()
            .and_then(|m| m.get("dbfilename").cloned())
            .unwrap_or_else(|| "dump.rdb".into())
    }

    /// The eviction settings now in force.
    pub fn evict_cfg(&self) -> EvictCfg {
        EvictCfg {
            policy: Policy::from_code(self.maxmemory_policy.load(Ordering::Relaxed)),
            samples: self.maxmemory_samples.load(Ordering::Relaxed) as usize,
            lfu_log_factor: self.lfu_log_factor.load(Ordering::Relaxed) as u32,
            lfu_decay_time: self.lfu_decay_time.load(Ordering::Relaxed) as u32,
        }
    }

    /// Every parameter and its current value, sorted by name.
    pub fn all(&self) -> Vec<(String, String)> {
        let mut out: BTreeMap<String, String> =
            self.text.lock().map(|m| m.clone()).unwrap_or_default();
        // Directives shardis accepts only with the value that asks for nothing: that value
        // is what it does, shown until one is set (Redis's default, as CONFIG GET shows).
        // The others show Redis's default until set, so CONFIG GET * lists what Redis's does.
        for (name, treat) in crate::directives::DIRECTIVES {
            let shown = match treat {
                crate::directives::Treat::Same(ok, _) | crate::directives::Treat::Only(ok, _) => {
                    ok.first().copied()
                }
                crate::directives::Treat::Warn(default, _) => *default,
            };
            if let Some(v) = shown {
                out.entry(name.to_string()).or_insert_with(|| v.to_string());
            }
        }
        out.entry("supervised".into())
            .or_insert_with(|| "no".into());
        out.insert(
            "maxclients".into(),
            self.maxclients.load(Ordering::Relaxed).to_string(),
        );
        out.insert(
            "proto-max-bulk-len".into(),
            self.proto_max_bulk_len.load(Ordering::Relaxed).to_string(),
        );
        out.insert(
            "client-query-buffer-limit".into(),
            self.client_query_buffer_limit
                .load(Ordering::Relaxed)
                .to_string(),
        );
        out.insert(
            "timeout".into(),
            self.timeout.load(Ordering::Relaxed).to_string(),
        );
        out.insert(
            "tcp-keepalive".into(),
            self.tcp_keepalive.load(Ordering::Relaxed).to_string(),
        );
        out.insert(
            "maxmemory".into(),
            self.maxmemory.load(Ordering::Relaxed).to_string(),
        );
        let e = self.evict_cfg();
        out.insert("maxmemory-policy".into(), e.policy.name().into());
        out.insert("maxmemory-samples".into(), e.samples.to_string());
        out.insert("lfu-log-factor".into(), e.lfu_log_factor.to_string());
        out.insert("lfu-decay-time".into(), e.lfu_decay_time.to_string());
        out.into_iter().collect()
    }

    /// CONFIG SET one parameter. Errors carry Redis's wording after
    /// `ERR CONFIG SET failed (possibly related to argument '<name>') - `.
    pub fn set(&self, name: &str, value: &str) -> Result<(), String> {
        // A subsystem's settings (replication's), as in `Config::apply`.
        if let Some(g) = setting_group(name) {
            let shown = (g.set)(name, value)?.unwrap_or_default();
            let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
            for n in std::iter::once(name).chain((g.alias)(name)) {
                m.insert(n.to_string(), shown.clone());
            }
            return Ok(());
        }
        match name {
            "maxclients" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
                if n == 0 {
                    return Err("argument must be between 1 and 4294967295 inclusive".into());
                }
                self.fit_nofile(n)?;
                self.maxclients.store(n, Ordering::Relaxed);
            }
            "proto-max-bulk-len" => {
                let n = parse_memory(value)
                    .map_err(|_| "argument must be a memory value".to_string())?;
                if n < 1024 * 1024 {
                    return Err(
                        "argument must be between 1048576 and 9223372036854775807 inclusive".into(),
                    );
                }
                self.proto_max_bulk_len.store(n, Ordering::Relaxed);
            }
            "client-query-buffer-limit" => {
                let n = parse_memory(value)
                    .map_err(|_| "argument must be a memory value".to_string())?;
                if n < 1024 * 1024 {
                    return Err(
                        "argument must be between 1048576 and 9223372036854775807 inclusive".into(),
                    );
                }
                self.client_query_buffer_limit.store(n, Ordering::Relaxed);
            }
            "maxmemory" => {
                let n = parse_memory(value)
                    .map_err(|_| "argument must be a memory value".to_string())?;
                self.maxmemory.store(n, Ordering::Relaxed);
            }
            "maxmemory-clients" => {
                let (bytes, pct) = parse_clients_limit(value)?;
                self.maxmemory_clients.store(bytes, Ordering::Relaxed);
                self.maxmemory_clients_pct.store(pct, Ordering::Relaxed);
                let shown = match pct {
                    0 => bytes.to_string(),
                    p => format!("{p}%"),
                };
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), shown);
            }
            "maxmemory-policy" | "maxmemory-samples" | "lfu-log-factor" | "lfu-decay-time" => {
                let mut e = self.evict_cfg();
                set_evict_param(&mut e, name, value)?;
                self.maxmemory_policy
                    .store(e.policy.code(), Ordering::Relaxed);
                self.maxmemory_samples
                    .store(e.samples as u64, Ordering::Relaxed);
                self.lfu_log_factor
                    .store(e.lfu_log_factor.into(), Ordering::Relaxed);
                self.lfu_decay_time
                    .store(e.lfu_decay_time.into(), Ordering::Relaxed);
            }
            "lua-time-limit" | "busy-reply-threshold" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
                crate::engine::scripts::set_busy_threshold_ms(n);
                // One setting under two names (Redis 7.0's alias).
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert("lua-time-limit".into(), n.to_string());
                m.insert("busy-reply-threshold".into(), n.to_string());
            }
            "acllog-max-len" => {
                let n: usize = value
                    .parse()
                    .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
                crate::acl::set_log_max(n);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), n.to_string());
            }
            "hll-sparse-max-bytes" => {
                let n = parse_memory(value)? as usize;
                crate::types::hll::set_sparse_max_bytes(n);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), n.to_string());
            }
            "lazyfree-lazy-user-del" | "lazyfree-lazy-user-flush" => {
                let on = parse_yes_no(value)?;
                if name == "lazyfree-lazy-user-del" {
                    crate::shard::lazyfree::set_user_del(on);
                } else {
                    crate::shard::lazyfree::set_user_flush(on);
                }
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), if on { "yes" } else { "no" }.into());
            }
            "lua-allow-undeclared-keys" => {
                let on = parse_yes_no(value)?;
                crate::engine::scripts::set_allow_undeclared(on);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), if on { "yes" } else { "no" }.into());
            }
            "timeout" | "tcp-keepalive" => {
                let n: u64 = value
                    .parse()
                    .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
                let slot = if name == "timeout" {
                    &self.timeout
                } else {
                    &self.tcp_keepalive
                };
                slot.store(n, Ordering::Relaxed);
            }
            "loglevel" => {
                let l = value.to_ascii_lowercase();
                if !["debug", "verbose", "notice", "warning", "nothing"].contains(&l.as_str()) {
                    return Err("argument(s) must be one of the following: debug, verbose, notice, warning, nothing".into());
                }
                if let Ok(mut m) = self.text.lock() {
                    m.insert(name.into(), l);
                }
            }
            "client-output-buffer-limit" => {
                let updates = parse_obuf_limits(value)?;
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                let mut classes = m
                    .get(name)
                    .and_then(|cur| parse_obuf_limits(cur).ok())
                    .into_iter()
                    .flatten()
                    .fold(DEFAULT_OBUF_LIMITS, |mut acc, (class, l)| {
                        acc[class] = l;
                        acc
                    });
                for (class, l) in updates {
                    classes[class] = l;
                }
                for (slot, v) in self.normal_obuf_limit.iter().zip(classes[0]) {
                    slot.store(v, Ordering::Relaxed);
                }
                for (slot, v) in self.pubsub_obuf_limit.iter().zip(classes[2]) {
                    slot.store(v, Ordering::Relaxed);
                }
                let [n, r, p] = classes;
                m.insert(
                    name.into(),
                    format!(
                        "normal {} {} {} slave {} {} {} pubsub {} {} {}",
                        n[0], n[1], n[2], r[0], r[1], r[2], p[0], p[1], p[2]
                    ),
                );
            }
            "port"
            | "bind"
            | "unixsocket"
            | "unixsocketperm"
            | "databases"
            | "shards"
            | "tcp-backlog"
            | "daemonize"
            | "pidfile"
            | "sentinel-port"
            | "sentinel-config"
            | "logfile"
            | "replicaof"
            | "slaveof"
            | "enable-debug-command"
            | "enable-protected-configs"
            | "syslog-enabled"
            | "syslog-ident"
            | "syslog-facility" => {
                return Err("can't set immutable config".into());
            }
            // Protected configs: `commands::config::config_set` checks
            // enable-protected-configs before it gets here.
            "dir" => {
                // As Redis: the process enters the directory (saves and the AOF use paths
                // relative to it); CONFIG GET shows where it is now.
                std::env::set_current_dir(value).map_err(|e| crate::util::os_text(&e))?;
                let now = std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|_| value.to_string());
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), now);
            }
            "dbfilename" => {
                if value.is_empty() || value.contains('/') {
                    return Err("dbfilename can't be a path, just a filename".into());
                }
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), value.to_string());
            }
            "appendfilename" | "appenddirname" => return Err("can't set immutable config".into()),
            "appendonly" => {
                let on = parse_yes_no(value)
                    .map_err(|_| "argument must be 'yes' or 'no'".to_string())?;
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), if on { "yes" } else { "no" }.into());
                return Ok(());
            }
            "auto-aof-rewrite-percentage" => {
                let n = parse_percentage(value)?;
                self.auto_aof_pct.store(n, Ordering::Relaxed);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), n.to_string());
                return Ok(());
            }
            "repl-backlog-size" => {
                let n = parse_backlog_size(value)?;
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), n.to_string());
                return Ok(());
            }
            "auto-aof-rewrite-min-size" => {
                let n = parse_memory(value)?;
                self.auto_aof_min.store(n, Ordering::Relaxed);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), n.to_string());
                return Ok(());
            }
            "shutdown-on-sigint" | "shutdown-on-sigterm" => {
                let n = parse_shutdown_flags(value)?;
                let slot = if name == "shutdown-on-sigint" {
                    &self.shutdown_on_sigint
                } else {
                    &self.shutdown_on_sigterm
                };
                slot.store(n, Ordering::Relaxed);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), shutdown_flags_name(n));
                return Ok(());
            }
            "appendfsync" => {
                let n = parse_fsync(value)?;
                self.appendfsync.store(n, Ordering::Relaxed);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), fsync_name(n).into());
                return Ok(());
            }
            "rdbcompression" | "rdbchecksum" => {
                let on = parse_yes_no(value)
                    .map_err(|_| "argument must be 'yes' or 'no'".to_string())?;
                let flag = if name == "rdbcompression" {
                    &self.rdbcompression
                } else {
                    &self.rdbchecksum
                };
                flag.store(on, Ordering::Relaxed);
                if name == "rdbcompression" {
                    crate::persist::rdb::set_dump_compression(on);
                }
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), if on { "yes" } else { "no" }.into());
            }
            "save" => {
                // CONFIG SET replaces the rules (the config file adds to them).
                let rules = parse_save(value)?;
                self.has_save_rules
                    .store(!rules.is_empty(), Ordering::Relaxed);
                let text = format_save(&rules);
                if let Ok(mut r) = self.save_rules.lock() {
                    *r = rules;
                }
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), text);
            }
            "stop-writes-on-bgsave-error" => {
                let on = parse_yes_no(value)
                    .map_err(|_| "argument must be 'yes' or 'no'".to_string())?;
                self.stop_writes_on_bgsave_error
                    .store(on, Ordering::Relaxed);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), if on { "yes" } else { "no" }.into());
            }
            "requirepass" => {
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), value.to_string());
                crate::acl::set_requirepass(value);
                self.auth_required
                    .store(crate::acl::auth_required(), Ordering::Relaxed);
            }
            "aclfile" => return Err("can't set immutable config".into()),
            other if crate::types::limits::find(other).is_some() => {
                let (n, shown) = parse_threshold(other, value)?;
                let v: i64 = shown.parse().map_err(|_| "internal error".to_string())?;
                if n == "list-compress-depth" {
                    if let Some(w) = compress_depth_warning(&shown) {
                        crate::log::warning(&format!("CONFIG SET {w}"));
                    }
                }
                crate::types::limits::set(n, v);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                for k in threshold_names(n) {
                    m.insert(k.to_string(), shown.clone());
                }
            }
            name if crate::tls::is_setting(name) => {
                self.set_tls(&[(name.to_string(), value.to_string())])
                    .map_err(|(_, why)| why)?;
            }
            "notify-keyspace-events" => {
                let f = crate::shard::notify::parse(value)
                    .ok_or_else(|| crate::shard::notify::INVALID.to_string())?;
                self.notify_flags.store(f, Ordering::Relaxed);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), crate::shard::notify::format(f));
            }
            other if crate::shard::latency::parse_setting(other, "").is_some() => {
                let (setting, shown) = crate::shard::latency::parse_setting(other, value)
                    .unwrap_or(Err(String::new()))?;
                self.obs.apply(setting);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), shown);
            }
            "protected-mode" => {
                let on = parse_yes_no(value)
                    .map_err(|_| "argument must be 'yes' or 'no'".to_string())?;
                self.protected_mode.store(on, Ordering::Relaxed);
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                m.insert(name.into(), if on { "yes" } else { "no" }.into());
            }
            other => {
                // A directive shardis does not implement: accepted with a warning in the
                // log, or refused with the reason (`directives`).
                let known = crate::directives::lookup(other).is_some();
                let warning = match known {
                    true => crate::directives::check(other, value)?,
                    false => None,
                };
                let mut m = self.text.lock().map_err(|_| "internal error".to_string())?;
                match m.get_mut(other) {
                    Some(slot) => *slot = value.to_string(),
                    None if known => {
                        m.insert(other.to_string(), value.to_string());
                    }
                    None => {
                        return Err("Unknown option or number of arguments for CONFIG SET".into())
                    }
                }
                if let Some(w) = warning {
                    crate::log::warning(&format!("CONFIG SET {w}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("512mb").unwrap(), 512 * 1024 * 1024);
        assert_eq!(parse_memory("1k").unwrap(), 1000);
        assert_eq!(parse_memory("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_memory("77").unwrap(), 77);
        assert!(parse_memory("lots").is_err());
    }

    #[test]
    fn sched_policy_values() {
        let mut c = Config::default();
        assert_eq!(c.sched_batch, None);
        c.apply("sched-policy", "BATCH").unwrap();
        assert_eq!(c.sched_batch, Some(true));
        c.apply("sched-policy", "other").unwrap();
        assert_eq!(c.sched_batch, Some(false));
        c.apply("sched-policy", "auto").unwrap();
        assert_eq!(c.sched_batch, None);
        let e = c.apply("sched-policy", "fifo").unwrap_err();
        assert_eq!(e, "invalid sched-policy 'fifo' (auto, batch or other)");
    }

    #[test]
    fn obuf_limits() {
        assert_eq!(
            parse_obuf_limits("pubsub 1mb 512kb 60").unwrap(),
            vec![(2, [1 << 20, 512 << 10, 60])]
        );
        assert_eq!(parse_obuf_limits("").unwrap(), vec![]);
        assert!(parse_obuf_limits("pubsub 1 1")
            .unwrap_err()
            .contains("Wrong number"));
        assert!(parse_obuf_limits("master 1 1 1")
            .unwrap_err()
            .contains("class"));
        assert!(parse_obuf_limits("pubsub 1 1 -1")
            .unwrap_err()
            .contains("soft_seconds"));
        let t = Tunables::new(&Config::default());
        t.set("client-output-buffer-limit", "PUBSUB 2mb 1mb 10")
            .unwrap();
        assert_eq!(t.pubsub_obuf_limit[0].load(Ordering::Relaxed), 2 << 20);
        let all = t.all();
        let v = all.iter().find(|(k, _)| k == "client-output-buffer-limit");
        assert_eq!(
            v.map(|(_, v)| v.as_str()),
            Some("normal 0 0 0 slave 268435456 67108864 60 pubsub 2097152 1048576 10")
        );
    }

    #[test]
    fn eviction_params_validate_with_redis_texts() {
        let t = Tunables::new(&Config::default());
        assert_eq!(t.evict_cfg(), EvictCfg::default());
        assert_eq!(
            t.set("maxmemory-policy", "bogus").unwrap_err(),
            POLICY_ERROR
        );
        t.set("maxmemory-policy", "ALLKEYS-LFU").unwrap();
        t.set("lfu-log-factor", "0").unwrap();
        assert_eq!(
            t.set("maxmemory-samples", "0").unwrap_err(),
            "argument must be between 1 and 2147483647 inclusive"
        );
        assert_eq!(
            t.set("lfu-decay-time", "x").unwrap_err(),
            "argument couldn't be parsed into an integer"
        );
        let all = t.all();
        let get = |k: &str| all.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("maxmemory-policy"), Some("allkeys-lfu"));
        assert_eq!(get("maxmemory-samples"), Some("5"));
        assert_eq!(get("lfu-log-factor"), Some("0"));
        assert_eq!(get("lfu-decay-time"), Some("1"));
        let mut cfg = Config::default();
        assert!(cfg.apply("maxmemory-policy", "lru").is_err());
    }

    #[test]
    fn save_rules_as_redis() {
        assert_eq!(
            parse_save("900 1 300 10").unwrap(),
            vec![(900, 1), (300, 10)]
        );
        assert_eq!(parse_save("").unwrap(), vec![]);
        for bad in ["900", "0 1", "x 1", "900 -1", "900 1 300"] {
            assert_eq!(parse_save(bad).unwrap_err(), "Invalid save parameters");
        }
        let mut c = Config::default();
        assert_eq!(
            Tunables::new(&c)
                .all()
                .iter()
                .find(|(k, _)| k == "save")
                .map(|(_, v)| v.as_str()),
            Some("3600 1 300 100 60 10000")
        );
        c.apply("save", "900 1").unwrap();
        c.apply("save", "60 5").unwrap();
        assert_eq!(c.save, Some(vec![(900, 1), (60, 5)]), "later lines add");
        c.apply("save", "").unwrap();
        assert_eq!(c.save, Some(vec![]));
        let t = Tunables::new(&c);
        assert!(!t.has_save_rules.load(Ordering::Relaxed));
        t.set("save", "10 2").unwrap();
        assert!(t.has_save_rules.load(Ordering::Relaxed));
        assert_eq!(t.set("save", "1").unwrap_err(), "Invalid save parameters");
        assert_eq!(t.save_rules.lock().unwrap().clone(), vec![(10, 2)]);
    }

    #[test]
    fn core_lists() {
        assert_eq!(parse_cores("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse_cores("3-1").is_err());
        assert!(parse_cores("x").is_err());
    }

    #[test]
    fn flags_override_file_and_validate() {
        let dir = std::env::temp_dir().join(format!("shardis-cfg-{}", std::process::id()));
        std::fs::write(
            &dir,
            "# comment\nport 7001\nmaxclients 5\nsave \"\"\nclient-output-buffer-limit pubsub 1mb 1kb 5\nmaxmemory-policy volatile-ttl\nmaxmemory-samples 3\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(dir.to_string_lossy().into()),
            maxclients: Some(9),
            shards: Some(3),
            maxmemory_samples: Some(7),
            ..Default::default()
        };
        let cfg = Config::from_cli(&cli).unwrap();
        assert_eq!((cfg.port, cfg.maxclients, cfg.shards), (7001, 9, 3));
        let t = Tunables::new(&cfg);
        assert_eq!(t.pubsub_obuf_limit[0].load(Ordering::Relaxed), 1 << 20);
        assert_eq!(t.evict_cfg().policy, Policy::VolatileTtl);
        assert_eq!(t.evict_cfg().samples, 7, "the flag beats the file");
        assert_eq!(t.pubsub_obuf_limit[1].load(Ordering::Relaxed), 1024);
        std::fs::write(&dir, "nosuchthing 1\n").unwrap();
        assert!(Config::from_cli(&cli).unwrap_err().contains("nosuchthing"));
        let _ = std::fs::remove_file(&dir);
        let bad = Cli {
            shards: Some(0),
            ..Default::default()
        };
        assert!(Config::from_cli(&bad).is_err());
    }
}

#[cfg(test)]
mod fuzz_tests {
    use super::*;

    /// The config-file path on hostile input: random lines (directive names from every table
    /// plus garbage, values from a pool of awkward strings, random quoting) through
    /// `split_line` and `Config::apply`, and the same pairs through CONFIG SET
    /// (`Tunables::set`): errors are fine, a panic is not.
    #[test]
    fn random_directives_never_panic() {
        let mut names: Vec<String> = crate::directives::DIRECTIVES
            .iter()
            .map(|(n, _)| n.to_string())
            .chain(PASSIVE_PARAMS.iter().map(|(n, _)| n.to_string()))
            .collect();
        names.extend(
            [
                "port",
                "bind",
                "shards",
                "cores",
                "maxclients",
                "maxmemory",
                "save",
                "user",
                "include",
                "loglevel",
                "dir",
                "requirepass",
                "supervised",
                "recv-buffer",
                "client-output-buffer-limit",
                "maxmemory-policy",
                "",
                "\u{0}",
                "x y",
            ]
            .map(String::from),
        );
        let values = [
            "",
            "0",
            "-1",
            "1",
            "99999999999999999999999",
            "1gb",
            "1x",
            "yes",
            "no",
            "maybe",
            "\"\"",
            "'",
            "\"",
            "\"a\\",
            "normal 1 1 1",
            "pubsub",
            "0-",
            "-0",
            "9-1",
            "127.0.0.1 ::1",
            "-::1",
            "~* +@all",
            "on >pw",
            "(bad",
            "\u{ff}",
            "\\x00",
            "allkeys-lru",
            "nan",
            "inf",
        ];
        let mut seed = 0x1234_5678_9abc_def1u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as usize
        };
        let tun = Tunables::new(&Config::default());
        for _ in 0..20_000 {
            let name = &names[next() % names.len()];
            // Process-wide settings other unit tests rely on stay out.
            if matches!(
                name.as_str(),
                "requirepass"
                    | "maxclients"
                    | "lua-time-limit"
                    | "busy-reply-threshold"
                    | "lua-allow-undeclared-keys"
                    | "lazyfree-lazy-user-del"
                    | "lazyfree-lazy-user-flush"
                    | "acllog-max-len"
                    | "hll-sparse-max-bytes"
            ) {
                continue;
            }
            let value = values[next() % values.len()];
            let line = format!("{name} {value}");
            if let Some(words) = split_line(&line) {
                if let Some((n, rest)) = words.split_first() {
                    if n != "include" {
                        let mut cfg = Config::default();
                        let _ = cfg.apply(&n.to_ascii_lowercase(), &rest.join(" "));
                    }
                }
            }
            // CONFIG SET refuses what cannot change at run time; nothing panics.
            let _ = tun.set(name, value);
        }
    }
}

/// Parses a `maxmemory-clients` value: bytes with Redis's units, or a percentage of
/// `maxmemory` (`10%`). Errors carry CONFIG SET's wording.
pub fn parse_clients_limit(v: &str) -> Result<(u64, u64), String> {
    let v = v.trim();
    if let Some(p) = v.strip_suffix('%') {
        let n: u64 = p
            .parse()
            .map_err(|_| "argument must be a memory or percent value".to_string())?;
        if n > 100 {
            return Err("percentage argument must be less or equal to 100".into());
        }
        return Ok((0, n));
    }
    parse_memory(v)
        .map(|b| (b, 0))
        .map_err(|_| "argument must be a memory or percent value".to_string())
}
