//! Sentinel mode (`shardis --sentinel sentinel.conf`, like `redis-sentinel`): monitors
//! masters and their replicas over TCP with public commands only, agrees with other
//! sentinels that a master is down, elects a leader per epoch and fails over.
//!
//! It owns the whole sentinel process, which never starts the shard runtime. It runs on
//! plain std threads with blocking sockets (it is not on the data path):
//! - the main thread runs the timer (`tick`, every 50 ms): SDOWN/ODOWN, the failover state
//!   machine, and starting link threads;
//! - `monitor`: per monitored instance one command link (PING, INFO, hello PUBLISH) and one
//!   pub/sub link (`__sentinel__:hello`); per known sentinel one link (PING,
//!   `is-master-down-by-addr`, hello);
//! - `server`: the RESP port (accept thread + one thread per client) and the event
//!   dispatcher thread for SUBSCRIBE/PSUBSCRIBE.
//!
//! All state is in one `Sentinel` behind a mutex, held only briefly and never across I/O
//! (except the config rewrite, which must happen before the change is acted on).

mod conf;
mod failover;
mod monitor;
pub mod resp;
mod server;
pub mod timing;

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use failover::FailoverState;

pub const DEFAULT_PORT: u16 = 26379;
pub const HELLO_CHANNEL: &str = "__sentinel__:hello";

pub type Shared = Arc<Mutex<Sentinel>>;

/// Locks the state, surviving a poisoned lock (a panicked thread must not stop monitoring).
pub fn lock(s: &Shared) -> MutexGuard<'_, Sentinel> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Link health as Redis tracks it per instance.
#[derive(Debug, Clone)]
pub struct Health {
    pub created: Instant,
    /// The PING sent and not yet answered, if any.
    pub ping_pending: Option<Instant>,
    pub last_ok: Option<Instant>,
    pub last_reply: Option<Instant>,
    pub connected: bool,
    /// The pub/sub link (hello messages) is up. Together with `connected` this is Redis's
    /// link state: a master that dies shows `disconnected` at once, from the pub/sub
    /// link's EOF, not at the next PING (node-redis's Sentinel client skips such a
    /// master instead of dialling it).
    pub pubsub_up: bool,
    pub sdown_since: Option<Instant>,
}

impl Health {
    fn new() -> Health {
        Health {
            created: Instant::now(),
            ping_pending: None,
            last_ok: None,
            last_reply: None,
            connected: false,
            pubsub_up: false,
            sdown_since: None,
        }
    }

    /// How long the instance has failed to answer, as Redis counts it: since the PING
    /// still pending, or (link down) since the last valid reply or since we learnt of it.
    pub fn silent_for(&self) -> Duration {
        match self.ping_pending {
            Some(t) => t.elapsed(),
            None if !self.connected => self.last_ok.unwrap_or(self.created).elapsed(),
            None => Duration::ZERO,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Unknown,
    Master,
    Slave,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconf {
    None,
    Sent(Instant),
    InProg,
    Done,
}

/// A data instance: the master or one of its replicas (the same struct, so an instance
/// keeps its link state when its role changes at a switch).
#[derive(Debug, Clone)]
pub struct Inst {
    pub ip: String,
    pub port: u16,
    pub runid: String,
    pub health: Health,
    pub role: Role,
    pub role_time: Instant,
    pub info_time: Option<Instant>,
    pub master_host: String,
    pub master_port: u16,
    pub master_link_up: bool,
    pub master_link_down_ms: u64,
    pub priority: u32,
    pub repl_offset: u64,
    pub announced: bool,
    pub reconf: Reconf,
    /// When this replica was last sent a corrective REPLICAOF (convert/fix).
    pub last_fix: Option<Instant>,
    /// Its last INFO reply, verbatim (`SENTINEL INFO-CACHE`).
    pub info_text: Option<String>,
}

impl Inst {
    fn new(ip: &str, port: u16) -> Inst {
        Inst {
            ip: ip.to_string(),
            port,
            runid: String::new(),
            health: Health::new(),
            role: Role::Unknown,
            role_time: Instant::now(),
            info_time: None,
            master_host: String::new(),
            master_port: 0,
            master_link_up: false,
            master_link_down_ms: 0,
            priority: 100,
            repl_offset: 0,
            announced: true,
            reconf: Reconf::None,
            last_fix: None,
            info_text: None,
        }
    }
    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// Another sentinel monitoring the same master, discovered by its hello messages.
#[derive(Debug, Clone)]
pub struct Peer {
    pub ip: String,
    pub port: u16,
    pub runid: String,
    pub health: Health,
    pub last_hello: Option<Instant>,
    pub leader: Option<String>,
    pub leader_epoch: u64,
    /// Its last answer to is-master-down-by-addr, and when.
    pub master_down: bool,
    pub down_reply: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Master {
    pub name: String,
    pub ip: String,
    pub port: u16,
    pub quorum: u32,
    pub down_after: u64,
    pub failover_timeout: u64,
    pub parallel_syncs: u32,
    pub auth_pass: Option<String>,
    pub auth_user: Option<String>,
    pub config_epoch: u64,
    pub leader: Option<String>,
    pub leader_epoch: u64,
    /// Data instances by `ip:port`, the master included.
    pub insts: BTreeMap<String, Inst>,
    /// Other sentinels by run id.
    pub sentinels: BTreeMap<String, Peer>,
    pub odown_since: Option<Instant>,
    pub failover: failover::Failover,
    /// When a failover was last started here (or postponed by a vote for another).
    pub failover_start: Option<Instant>,
}

impl Master {
    pub fn new(name: &str, ip: &str, port: u16, quorum: u32) -> Master {
        let mut m = Master {
            name: name.to_string(),
            ip: ip.to_string(),
            port,
            quorum,
            down_after: timing::DEFAULT_DOWN_AFTER.ms(),
            failover_timeout: timing::DEFAULT_FAILOVER_TIMEOUT.ms(),
            parallel_syncs: 1,
            auth_pass: None,
            auth_user: None,
            config_epoch: 0,
            leader: None,
            leader_epoch: 0,
            insts: BTreeMap::new(),
            sentinels: BTreeMap::new(),
            odown_since: None,
            failover: failover::Failover::default(),
            failover_start: None,
        };
        m.add_inst(ip, port);
        m
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Adds a data instance if unknown; true when it was new.
    pub fn add_inst(&mut self, ip: &str, port: u16) -> bool {
        let key = format!("{ip}:{port}");
        if self.insts.contains_key(&key) {
            return false;
        }
        self.insts.insert(key, Inst::new(ip, port));
        true
    }

    pub fn add_peer(&mut self, ip: &str, port: u16, runid: &str) {
        self.sentinels.insert(
            runid.to_string(),
            Peer {
                ip: ip.to_string(),
                port,
                runid: runid.to_string(),
                health: Health::new(),
                last_hello: None,
                leader: None,
                leader_epoch: 0,
                master_down: false,
                down_reply: None,
            },
        );
    }

    pub fn master_inst(&self) -> Option<&Inst> {
        self.insts.get(&self.addr())
    }

    pub fn replicas(&self) -> impl Iterator<Item = &Inst> {
        let me = self.addr();
        self.insts.values().filter(move |i| i.addr() != me)
    }

    pub fn sdown(&self) -> bool {
        self.master_inst()
            .is_some_and(|i| i.health.sdown_since.is_some())
    }

    /// The address clients should use: the promoted replica once it is promoted.
    pub fn current_addr(&self) -> (String, u16) {
        if let Some(p) = self.failover.promoted_if_done() {
            if let Some(i) = self.insts.get(p) {
                return (i.ip.clone(), i.port);
            }
        }
        (self.ip.clone(), self.port)
    }

    /// `master <name> <ip> <port>`, or `slave <ip:port> <ip> <port> @ <name> <mip> <mport>`.
    pub fn inst_event(&self, addr: &str) -> String {
        if addr == self.addr() {
            format!("master {} {} {}", self.name, self.ip, self.port)
        } else {
            let (ip, port) = addr.rsplit_once(':').unwrap_or((addr, ""));
            format!(
                "slave {addr} {ip} {port} @ {} {} {}",
                self.name, self.ip, self.port
            )
        }
    }

    pub fn peer_event(&self, p: &Peer) -> String {
        format!(
            "sentinel {} {} {} @ {} {} {}",
            p.runid, p.ip, p.port, self.name, self.ip, self.port
        )
    }
}

/// The whole sentinel state.
pub struct Sentinel {
    pub myid: String,
    pub port: u16,
    pub bind: String,
    pub current_epoch: u64,
    pub masters: BTreeMap<String, Master>,
    pub conf_path: String,
    /// Lines of the config file kept verbatim on rewrite.
    pub conf_other: Vec<String>,
    events: Option<mpsc::Sender<(String, String)>>,
    /// Link threads running, by key (`cmd|name|addr`, `hello|name|addr`, `peer|name|runid`).
    pub links: HashSet<String>,
    pub started: Instant,
    /// Bumped when a master's configuration changes (promotion, switch): links then send
    /// their hello at once instead of at the next 2 s period, so the other sentinels
    /// (and the clients asking them) follow the new master sooner.
    pub hello_gen: u64,
    /// Directives accepted but not implemented, logged once the log file is open.
    pub warnings: Vec<String>,
    /// Runs inside a data node (`embed`): the log settings are the node's.
    pub embedded: bool,
    /// The global options of `SENTINEL CONFIG GET/SET` (Redis 7.0's).
    pub resolve_hostnames: bool,
    pub announce_hostnames: bool,
    pub announce_ip: String,
    pub announce_port: u16,
    pub sentinel_user: Option<String>,
    pub sentinel_pass: Option<String>,
    /// `requirepass`: clients of this sentinel must AUTH (or HELLO ... AUTH) first.
    pub requirepass: Option<String>,
    /// TILT mode: since when (None: not in TILT).
    pub tilt_since: Option<Instant>,
    /// When the timer last ran (monotonic and wall clock), to detect jumps (TILT).
    pub last_tick: Option<(Instant, std::time::SystemTime)>,
    /// `SENTINEL SIMULATE-FAILURE` flags: SIMULATE_CRASH_AFTER_ELECTION | ..._PROMOTION.
    pub simulate: u8,
}

pub const SIMULATE_CRASH_AFTER_ELECTION: u8 = 1;
pub const SIMULATE_CRASH_AFTER_PROMOTION: u8 = 2;

impl Sentinel {
    fn new(conf_path: &str, events: Option<mpsc::Sender<(String, String)>>) -> Sentinel {
        Sentinel {
            myid: random_hex(40),
            port: DEFAULT_PORT,
            bind: String::new(),
            current_epoch: 0,
            masters: BTreeMap::new(),
            conf_path: conf_path.to_string(),
            conf_other: Vec::new(),
            events,
            links: HashSet::new(),
            started: Instant::now(),
            hello_gen: 0,
            warnings: Vec::new(),
            embedded: false,
            resolve_hostnames: false,
            announce_hostnames: false,
            announce_ip: String::new(),
            announce_port: 0,
            sentinel_user: None,
            sentinel_pass: None,
            requirepass: None,
            tilt_since: None,
            last_tick: None,
            simulate: 0,
        }
    }

    #[cfg(test)]
    pub fn for_test() -> Sentinel {
        Sentinel::new("/nonexistent", None)
    }

    /// Publishes an event on its channel and logs it, as redis-sentinel does.
    pub fn event(&self, kind: &str, payload: &str) {
        let line = format!("{kind} {payload}");
        if kind.starts_with('-') && kind.contains("abort") {
            crate::log::warning(&line);
        } else {
            crate::log::notice(&line);
        }
        if let Some(tx) = &self.events {
            let _ = tx.send((kind.to_string(), payload.to_string()));
        }
    }

    /// Rewrites the config file; a failure is logged (the caller decides whether to act).
    pub fn save(&self) -> bool {
        match conf::save(self) {
            Ok(()) => true,
            Err(e) => {
                crate::log::warning(&format!(
                    "sentinel: could not rewrite config file {}: {e}",
                    self.conf_path
                ));
                false
            }
        }
    }

    /// Adopts a greater epoch (persisted first), with `+new-epoch`.
    pub fn adopt_epoch(&mut self, epoch: u64) {
        if epoch > self.current_epoch {
            self.current_epoch = epoch;
            self.save();
            self.event("+new-epoch", &epoch.to_string());
        }
    }

    /// TILT mode as Redis Sentinel's: a timer pass that comes more than TILT-TRIGGER after
    /// the previous one (the process was stopped, the machine stalled) or a wall clock that
    /// went backwards makes every judgement unreliable, so for TILT-PERIOD nothing is
    /// judged (SDOWN/ODOWN, failovers) and `is-master-down-by-addr` answers "not down".
    /// Returns whether the sentinel is in TILT.
    pub fn check_tilt(&mut self) -> bool {
        let now = (Instant::now(), std::time::SystemTime::now());
        if let Some((mono, wall)) = self.last_tick.replace(now) {
            let trigger = timing::TILT_TRIGGER.get();
            let jumped = now.0.duration_since(mono) > trigger
                || now.1.duration_since(wall).map_or(true, |d| d > trigger);
            if jumped {
                self.tilt_since = Some(now.0);
                self.event("+tilt", "#tilt mode entered");
                return true;
            }
        }
        match self.tilt_since {
            Some(t) if t.elapsed() < timing::TILT_PERIOD.get() => true,
            Some(_) => {
                self.tilt_since = None;
                self.event("-tilt", "#tilt mode exited");
                false
            }
            None => false,
        }
    }

    /// The port other sentinels are told to reach us at (`announce-port`, else ours).
    pub fn announce_port(&self) -> u16 {
        if self.announce_port != 0 {
            self.announce_port
        } else {
            self.port
        }
    }

    /// The master whose current address is `ip:port`.
    pub fn master_by_addr(&self, ip: &str, port: u16) -> Option<&Master> {
        self.masters.values().find(|m| m.ip == ip && m.port == port)
    }
}

/// `n` random hex digits from /dev/urandom (time and pid if it cannot be read).
pub fn random_hex(n: usize) -> String {
    use std::io::Read;
    let mut bytes = vec![0u8; n.div_ceil(2)];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    if !ok {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(37);
        }
    }
    let mut s: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    s.truncate(n);
    s
}

/// A random duration below `max_ms` (the desync Redis adds to failover start times).
pub fn random_ms(max_ms: u64) -> Duration {
    let h = random_hex(8);
    Duration::from_millis(u64::from_str_radix(&h, 16).unwrap_or(0) % max_ms.max(1))
}

/// Entry point of `shardis --sentinel [sentinel.conf] [--name value ...]`; returns the exit
/// code. Like redis-sentinel, it needs a writable config file to save its state.
pub fn main(args: &[String]) -> i32 {
    let mut conf_path = None;
    let mut extra: Vec<Vec<String>> = Vec::new();
    let mut it = args.iter().skip(1).peekable();
    while let Some(a) = it.next() {
        if a == "--sentinel" {
            continue;
        }
        if let Some(name) = a.strip_prefix("--") {
            let mut line = vec![name.to_string()];
            while let Some(v) = it.peek() {
                if v.starts_with("--") {
                    break;
                }
                line.push(it.next().cloned().unwrap_or_default());
            }
            extra.push(line);
        } else if conf_path.is_none() {
            conf_path = Some(a.clone());
        } else {
            eprintln!("shardis: unexpected argument '{a}'");
            return 1;
        }
    }
    let Some(conf_path) = conf_path else {
        eprintln!("Sentinel needs config file on disk to save state. Exiting...");
        return 1;
    };
    let shared = match start(&conf_path, &extra, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    loop {
        tick(&shared);
        std::thread::sleep(TICK);
    }
}

const TICK: Duration = Duration::from_millis(50);

/// The sentinel inside a data node (`--sentinel-port PORT`, see `config`): the same
/// sentinel on its own threads (a timer thread, link threads, its RESP port), sharing only
/// the process and the log with the shards, which it reaches over TCP like any sentinel.
/// `conf_path` is created when missing; `lines` are sentinel.conf directives (from
/// `--sentinel-monitor ...` flags): a `sentinel monitor` for a master the file already
/// monitors is skipped, since the file holds where that master is now.
pub fn embed(port: u16, conf_path: &str, lines: &[Vec<String>]) -> Result<(), String> {
    if !std::path::Path::new(conf_path).exists() {
        std::fs::write(conf_path, "")
            .map_err(|e| format!("can't create sentinel config file '{conf_path}': {e}"))?;
    }
    let shared = start(conf_path, lines, Some(port))
        .map_err(|e| e.trim_start_matches("shardis: ").to_string())?;
    std::thread::Builder::new()
        .name("sentinel-timer".into())
        .spawn(move || loop {
            tick(&shared);
            std::thread::sleep(TICK);
        })
        .map_err(|e| format!("can't start the sentinel thread: {e}"))?;
    Ok(())
}

/// Loads the config file and `extra` directives, saves the file, binds the port and starts
/// the server threads; the caller runs `tick`. `embedded`: the data node's sentinel port
/// (its log settings stay the data node's).
fn start(conf_path: &str, extra: &[Vec<String>], embedded: Option<u16>) -> Result<Shared, String> {
    let (tx, rx) = mpsc::channel();
    let mut s = Sentinel::new(conf_path, Some(tx));
    s.embedded = embedded.is_some();
    let text = std::fs::read_to_string(conf_path)
        .map_err(|e| format!("shardis: can't read sentinel config file '{conf_path}': {e}"))?;
    let keep = conf::load(&mut s, &text).map_err(|e| format!("shardis: sentinel config: {e}"))?;
    s.conf_other = keep;
    for line in extra {
        let known_master = line.len() >= 3
            && line[0].eq_ignore_ascii_case("sentinel")
            && line[1].eq_ignore_ascii_case("monitor")
            && s.masters.contains_key(&line[2]);
        if embedded.is_some() && known_master {
            continue;
        }
        conf::apply(&mut s, line).map_err(|e| format!("shardis: --{}: {e}", line.join(" ")))?;
    }
    if let Some(port) = embedded {
        s.port = port;
    }
    for w in std::mem::take(&mut s.warnings) {
        crate::log::warning(&w);
    }
    if !s.save() {
        return Err(format!(
            "Sentinel config file {conf_path} is not writable. Exiting..."
        ));
    }
    let bind = if s.bind.is_empty() || s.bind == "*" {
        "0.0.0.0".to_string()
    } else {
        s.bind.clone()
    };
    let listener = std::net::TcpListener::bind((bind.as_str(), s.port))
        .map_err(|e| format!("shardis: can't bind sentinel port {bind}:{}: {e}", s.port))?;
    let mode = if embedded.is_some() {
        "embedded"
    } else {
        "sentinel"
    };
    crate::log::notice(&format!(
        "Sentinel ID is {}; running mode={mode}, port={}",
        s.myid, s.port
    ));
    for m in s.masters.values() {
        s.event(
            "+monitor",
            &format!("{} quorum {}", m.inst_event(&m.addr()), m.quorum),
        );
    }
    let shared: Shared = Arc::new(Mutex::new(s));
    server::start(shared.clone(), listener, rx);
    Ok(shared)
}

/// One timer pass over every master: down states, failover, link threads.
pub fn tick(shared: &Shared) {
    let mut spawn = Vec::new();
    {
        let mut s = lock(shared);
        let tilt = s.check_tilt();
        let names: Vec<String> = s.masters.keys().cloned().collect();
        for name in names {
            // In TILT the links keep monitoring, but no state is judged and nothing acted on.
            if !tilt {
                failover::check_down(&mut s, &name);
                failover::run(&mut s, &name, shared);
            }
            for kind in ["cmd", "hello"] {
                for addr in s.masters[&name].insts.keys() {
                    spawn.push(format!("{kind}|{name}|{addr}"));
                }
            }
            for runid in s.masters[&name].sentinels.keys() {
                spawn.push(format!("peer|{name}|{runid}"));
            }
        }
        spawn.retain(|k| s.links.insert(k.clone()));
    }
    for key in spawn {
        monitor::spawn_link(shared.clone(), key);
    }
}
