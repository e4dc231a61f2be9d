//! The sentinel's RESP port: an accept thread, one thread per client, and the event
//! dispatcher thread that writes `+sdown`, `+switch-master`, ... to SUBSCRIBE/PSUBSCRIBE
//! clients. Replies follow redis-sentinel 7.0's shapes, in RESP2 or (after `HELLO 3`) RESP3:
//! maps for instance and settings replies, `_` nulls, pushes for pub/sub.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::Instant;

use super::failover::{select_replica, start as start_failover, vote_leader, FailoverState};
use super::resp::{
    array, bulk, bulks, error, int, map_bulks, null, push, simple, ReqError, Requests,
};
use super::{conf, lock, Health, Inst, Master, Peer, Sentinel, Shared, HELLO_CHANNEL};
use crate::commands::args::glob_match;

struct Sub {
    id: u64,
    out: Arc<Mutex<TcpStream>>,
    /// The client's protocol when it subscribed: messages are pushes under RESP3.
    proto: u8,
    channels: BTreeSet<String>,
    patterns: BTreeSet<String>,
}

fn subs() -> &'static Mutex<Vec<Sub>> {
    static SUBS: OnceLock<Mutex<Vec<Sub>>> = OnceLock::new();
    SUBS.get_or_init(|| Mutex::new(Vec::new()))
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static CLIENTS: AtomicU64 = AtomicU64::new(0);

pub fn start(shared: Shared, listener: TcpListener, events: mpsc::Receiver<(String, String)>) {
    let _ = std::thread::Builder::new()
        .name("sentinel-events".into())
        .spawn(move || {
            for (ch, payload) in events {
                dispatch(&ch, &payload);
            }
        });
    let _ = std::thread::Builder::new()
        .name("sentinel-accept".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = shared.clone();
                let _ = std::thread::Builder::new()
                    .name("sentinel-client".into())
                    .spawn(move || {
                        CLIENTS.fetch_add(1, Ordering::Relaxed);
                        serve(&s, stream);
                        CLIENTS.fetch_sub(1, Ordering::Relaxed);
                    });
            }
        });
}

fn dispatch(ch: &str, payload: &str) {
    let mut subs = subs().lock().unwrap_or_else(|e| e.into_inner());
    subs.retain(|sub| {
        let mut msgs = Vec::new();
        if sub.channels.contains(ch) {
            msgs.push(push(&[bulk("message"), bulk(ch), bulk(payload)], sub.proto));
        }
        for p in &sub.patterns {
            if glob_match(p.as_bytes(), ch.as_bytes(), false) {
                let m = [bulk("pmessage"), bulk(p), bulk(ch), bulk(payload)];
                msgs.push(push(&m, sub.proto));
            }
        }
        let mut out = sub.out.lock().unwrap_or_else(|e| e.into_inner());
        msgs.iter().all(|m| out.write_all(m).is_ok())
    });
}

/// What the sentinel port keeps per client.
struct Client {
    id: u64,
    authed: bool,
    name: Option<String>,
    /// 2 or 3, set by HELLO.
    proto: u8,
    /// Channels and patterns subscribed to: under RESP2 a subscribed client may only
    /// (un)subscribe and PING.
    subs: usize,
}

fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(rd) = stream.try_clone() else { return };
    let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(5)));
    let mut reqs = Requests::new(rd);
    let out = Arc::new(Mutex::new(stream));
    let mut c = Client {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        authed: lock(shared).requirepass.is_none(),
        name: None,
        proto: 2,
        subs: 0,
    };
    loop {
        let args = match reqs.next(!c.authed) {
            Ok(args) => args,
            Err(ReqError::Protocol(e)) => {
                crate::log::verbose(&format!("sentinel: protocol error ({e}) from a client"));
                let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
                let _ = o.write_all(&error(&e.to_string()));
                break;
            }
            Err(ReqError::Io) => break,
        };
        let Some(first) = args.first() else { continue };
        let cmd = first.to_ascii_lowercase();
        let reply = match cmd.as_str() {
            "auth" => auth(shared, &args[1..], &mut c.authed),
            "hello" => hello(shared, &args, &mut c),
            _ if !KNOWN.contains(&cmd.as_str()) => unknown_command(&args),
            _ if !c.authed => error("NOAUTH Authentication required."),
            _ if c.subs > 0 && c.proto == 2 && !SUBSCRIBED_OK.contains(&cmd.as_str()) => {
                not_when_subscribed(&args)
            }
            "client" => client(&args, &mut c),
            "subscribe" | "psubscribe" | "unsubscribe" | "punsubscribe" => {
                subscribe(&out, &cmd, &args[1..], &mut c)
            }
            "ping" if c.subs > 0 && c.proto == 2 => {
                bulks(&["pong", args.get(1).map_or("", |s| s.as_str())])
            }
            _ => command(shared, &args, c.proto),
        };
        let mut o = out.lock().unwrap_or_else(|e| e.into_inner());
        if o.write_all(&reply).is_err() {
            break;
        }
    }
    subs()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|s| s.id != c.id);
}

/// The commands redis-sentinel 7.0 has (QUIT and RESET are not among them; COMMAND is,
/// and is not implemented here).
const KNOWN: &[&str] = &[
    "auth",
    "client",
    "hello",
    "info",
    "ping",
    "psubscribe",
    "publish",
    "punsubscribe",
    "role",
    "sentinel",
    "shutdown",
    "subscribe",
    "unsubscribe",
];

/// What a RESP2 client may send while subscribed.
const SUBSCRIBED_OK: &[&str] = &[
    "subscribe",
    "psubscribe",
    "unsubscribe",
    "punsubscribe",
    "ping",
];

/// Redis's refusal of a command in a RESP2 subscribed context; a command with
/// subcommands is named `command|subcommand`.
fn not_when_subscribed(args: &[String]) -> Vec<u8> {
    let mut name = args[0].to_ascii_lowercase();
    if let Some(sub) = args
        .get(1)
        .filter(|_| matches!(name.as_str(), "sentinel" | "client"))
    {
        name = format!("{name}|{}", sub.to_ascii_lowercase());
    }
    error(&format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / \
         RESET are allowed in this context"
    ))
}

/// AUTH [user] password, as Redis's default user under `requirepass` (no other users).
fn auth(shared: &Shared, args: &[String], authed: &mut bool) -> Vec<u8> {
    let pass = lock(shared).requirepass.clone();
    let ok = match (args, &pass) {
        ([_], None) => {
            return error(
                "ERR AUTH <password> called without any password configured for the default \
                 user. Are you sure your configuration is correct?",
            )
        }
        ([p], Some(want)) => p == want,
        ([u, _], None) => u == "default",
        ([u, p], Some(want)) => u == "default" && p == want,
        ([], _) => return error("ERR wrong number of arguments for 'auth' command"),
        _ => return error("ERR syntax error"),
    };
    if !ok {
        return error("WRONGPASS invalid username-password pair or user is disabled.");
    }
    *authed = true;
    simple("OK")
}

/// HELLO [protover [AUTH user pass] [SETNAME name]]: switches between RESP2 and RESP3; the
/// reply is redis-sentinel's map (a flat array under RESP2).
fn hello(shared: &Shared, args: &[String], c: &mut Client) -> Vec<u8> {
    let mut proto = c.proto;
    if let Some(v) = args.get(1) {
        match v.parse::<i64>() {
            Ok(p @ (2 | 3)) => proto = p as u8,
            Ok(_) => return error("NOPROTO unsupported protocol version"),
            Err(_) => return error("ERR Protocol version is not an integer or out of range"),
        }
    }
    let mut i = 2;
    let mut setname = None;
    while i < args.len() {
        let opt = args[i].to_ascii_lowercase();
        match (opt.as_str(), args.get(i + 1), args.get(i + 2)) {
            ("auth", Some(u), Some(p)) => {
                let r = auth(shared, &[u.clone(), p.clone()], &mut c.authed);
                if r.first() == Some(&b'-') {
                    return r;
                }
                i += 3;
            }
            ("setname", Some(n), _) => {
                setname = Some(n.clone());
                i += 2;
            }
            _ => return error(&format!("ERR Syntax error in HELLO option '{}'", args[i])),
        }
    }
    if !c.authed {
        return error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO AUTH <user> <pass> option can be used to authenticate the client and select \
             the RESP protocol version at the same time",
        );
    }
    if setname.is_some() {
        c.name = setname;
    }
    c.proto = proto;
    let mut out = array(&[
        bulk("server"),
        bulk("redis"),
        bulk("version"),
        bulk("7.0.15"),
        bulk("proto"),
        int(i64::from(proto)),
        bulk("id"),
        int(c.id as i64),
        bulk("mode"),
        bulk("sentinel"),
        bulk("modules"),
        array(&[]),
    ]);
    if proto == 3 {
        // "*12" becomes "%6": the same items as pairs.
        out.splice(..5, b"%6\r\n".iter().copied());
    }
    out
}

/// The CLIENT subcommands clients send on connect (SETNAME, GETNAME, ID, SETINFO).
fn client(args: &[String], c: &mut Client) -> Vec<u8> {
    let sub = args
        .get(1)
        .map(|s| s.to_ascii_lowercase())
        .unwrap_or_default();
    match (sub.as_str(), args.len()) {
        ("setname", 3) => {
            c.name = (!args[2].is_empty()).then(|| args[2].clone());
            simple("OK")
        }
        ("setinfo", 4) => simple("OK"),
        ("getname", 2) => c.name.as_deref().map_or_else(|| null(c.proto, false), bulk),
        ("id", 2) => int(c.id as i64),
        ("", _) => error("ERR wrong number of arguments for 'client' command"),
        _ => error(&format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            args[1]
        )),
    }
}

/// SUBSCRIBE / PSUBSCRIBE / UNSUBSCRIBE / PUNSUBSCRIBE: one confirmation per name (an
/// unsubscribe from nothing confirms a null name, as Redis does).
fn subscribe(out: &Arc<Mutex<TcpStream>>, cmd: &str, names: &[String], c: &mut Client) -> Vec<u8> {
    let mut all = subs().lock().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| s.id == c.id) {
        all.push(Sub {
            id: c.id,
            out: out.clone(),
            proto: c.proto,
            channels: BTreeSet::new(),
            patterns: BTreeSet::new(),
        });
    }
    let Some(sub) = all.iter_mut().find(|s| s.id == c.id) else {
        return Vec::new();
    };
    sub.proto = c.proto;
    let pattern = cmd.starts_with('p');
    let unsub = cmd.contains("unsub");
    let mut reply = Vec::new();
    let names: Vec<String> = if names.is_empty() && unsub {
        let set = if pattern {
            &sub.patterns
        } else {
            &sub.channels
        };
        set.iter().cloned().collect()
    } else {
        names.to_vec()
    };
    for n in &names {
        let set = if pattern {
            &mut sub.patterns
        } else {
            &mut sub.channels
        };
        if unsub {
            set.remove(n);
        } else {
            set.insert(n.clone());
        }
        let count = (sub.channels.len() + sub.patterns.len()) as i64;
        reply.extend(push(&[bulk(cmd), bulk(n), int(count)], c.proto));
    }
    let count = sub.channels.len() + sub.patterns.len();
    if names.is_empty() {
        reply = push(
            &[bulk(cmd), null(c.proto, false), int(count as i64)],
            c.proto,
        );
    }
    c.subs = count;
    reply
}

fn unknown_command(args: &[String]) -> Vec<u8> {
    let mut text = format!(
        "ERR unknown command '{}', with args beginning with: ",
        args[0]
    );
    for a in args.iter().skip(1) {
        text.push_str(&format!("'{a}' "));
    }
    error(&text)
}

fn command(shared: &Shared, args: &[String], proto: u8) -> Vec<u8> {
    let cmd = args[0].to_ascii_lowercase();
    match cmd.as_str() {
        "ping" => match args.get(1) {
            Some(m) => bulk(m),
            None => simple("PONG"),
        },
        "info" => bulk(&info(&lock(shared), args.get(1).map(String::as_str))),
        "role" => {
            let s = lock(shared);
            let names: Vec<&String> = s.masters.keys().collect();
            array(&[bulk("sentinel"), bulks(&names)])
        }
        "publish" if args.len() == 3 => {
            if args[1] != HELLO_CHANNEL {
                return error("ERR Only HELLO messages are accepted by Sentinel instances.");
            }
            super::monitor::process_hello(&mut lock(shared), &args[2]);
            int(1)
        }
        "sentinel" if args.len() >= 2 => sentinel(shared, args, proto),
        "sentinel" | "publish" => error(&format!(
            "ERR wrong number of arguments for '{cmd}' command"
        )),
        "shutdown" => {
            lock(shared).save();
            std::process::exit(0);
        }
        _ => unknown_command(args),
    }
}

fn info(s: &Sentinel, section: Option<&str>) -> String {
    let want = |name: &str| {
        section.is_none_or(|x| {
            let x = x.to_ascii_lowercase();
            x == name || x == "all" || x == "default" || x == "everything"
        })
    };
    let mut out = String::new();
    if want("server") {
        out.push_str(&format!(
            "# Server\r\nredis_version:7.0.15\r\nredis_mode:sentinel\r\nos:{}\r\narch_bits:64\r\n\
             process_id:{}\r\nrun_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\nexecutable:{}\r\n\
             config_file:{}\r\nshardis_version:{}\r\n\r\n",
            std::env::consts::OS,
            std::process::id(),
            s.myid,
            s.port,
            s.started.elapsed().as_secs(),
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            s.conf_path,
            env!("CARGO_PKG_VERSION"),
        ));
    }
    if want("clients") {
        out.push_str(&format!(
            "# Clients\r\nconnected_clients:{}\r\n\r\n",
            CLIENTS.load(Ordering::Relaxed)
        ));
    }
    if want("sentinel") {
        out.push_str(&format!(
            "# Sentinel\r\nsentinel_masters:{}\r\nsentinel_tilt:{}\r\nsentinel_tilt_since_seconds:{}\r\n\
             sentinel_running_scripts:0\r\nsentinel_scripts_queue_length:0\r\n\
             sentinel_simulate_failure_flags:{}\r\n",
            s.masters.len(),
            u8::from(s.tilt_since.is_some()),
            s.tilt_since
                .map_or(-1, |t| t.elapsed().as_secs() as i64),
            s.simulate
        ));
        for (n, m) in s.masters.values().enumerate() {
            let status = if m.odown_since.is_some() {
                "odown"
            } else if m.sdown() {
                "sdown"
            } else {
                "ok"
            };
            let (ip, port) = m.current_addr();
            out.push_str(&format!(
                "master{n}:name={},status={status},address={ip}:{port},slaves={},sentinels={}\r\n",
                m.name,
                m.replicas().count(),
                m.sentinels.len() + 1
            ));
        }
    }
    while out.ends_with("\r\n\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

fn ms_since(t: Option<Instant>) -> String {
    t.map_or("0".into(), |t| t.elapsed().as_millis().to_string())
}

/// The fields every instance map starts with.
fn common(out: &mut Vec<String>, name: &str, ip: &str, port: u16, runid: &str, flags: &str) {
    out.extend(
        [
            "name",
            name,
            "ip",
            ip,
            "port",
            &port.to_string(),
            "runid",
            runid,
            "flags",
            flags,
            "link-pending-commands",
            "0",
            "link-refcount",
            "1",
        ]
        .map(str::to_string),
    );
}

fn pings(out: &mut Vec<String>, h: &Health, odown: Option<Instant>, down_after: u64) {
    let never = |t: Option<Instant>| {
        t.map_or_else(
            || h.created.elapsed().as_millis().to_string(),
            |t| t.elapsed().as_millis().to_string(),
        )
    };
    out.extend([
        "last-ping-sent".into(),
        ms_since(h.ping_pending),
        "last-ok-ping-reply".into(),
        never(h.last_ok),
        "last-ping-reply".into(),
        never(h.last_reply),
    ]);
    if let Some(t) = h.sdown_since {
        out.extend(["s-down-time".into(), ms_since(Some(t))]);
    }
    if let Some(t) = odown {
        out.extend(["o-down-time".into(), ms_since(Some(t))]);
    }
    out.extend(["down-after-milliseconds".into(), down_after.to_string()]);
}

fn flags(base: &str, h: &Health, extra: &[(&str, bool)]) -> String {
    let mut f = Vec::new();
    if h.sdown_since.is_some() {
        f.push("s_down");
    }
    for (name, on) in extra.iter().take(1) {
        if *on {
            f.push(name);
        }
    }
    f.push(base);
    if !h.connected || !h.pubsub_up {
        f.push("disconnected");
    }
    for (name, on) in extra.iter().skip(1) {
        if *on {
            f.push(name);
        }
    }
    f.join(",")
}

fn role_fields(out: &mut Vec<String>, i: &Inst) {
    let role = match i.role {
        super::Role::Master => "master",
        super::Role::Slave => "slave",
        super::Role::Unknown => "unknown",
    };
    out.extend([
        "info-refresh".into(),
        i.info_time
            .map_or("0".into(), |t| t.elapsed().as_millis().to_string()),
        "role-reported".into(),
        role.into(),
        "role-reported-time".into(),
        i.role_time.elapsed().as_millis().to_string(),
    ]);
}

fn master_map(m: &Master) -> Vec<String> {
    let mut out = Vec::new();
    let none = Inst::new(&m.ip, m.port);
    let i = m.master_inst().unwrap_or(&none);
    let f = flags(
        "master",
        &i.health,
        &[
            ("o_down", m.odown_since.is_some()),
            ("failover_in_progress", m.failover.in_progress()),
        ],
    );
    common(&mut out, &m.name, &m.ip, m.port, &i.runid, &f);
    if m.failover.in_progress() {
        out.extend(["failover-state".into(), m.failover.state.name().into()]);
    }
    pings(&mut out, &i.health, m.odown_since, m.down_after);
    role_fields(&mut out, i);
    out.extend(
        [
            ("config-epoch", m.config_epoch.to_string()),
            ("num-slaves", m.replicas().count().to_string()),
            ("num-other-sentinels", m.sentinels.len().to_string()),
            ("quorum", m.quorum.to_string()),
            ("failover-timeout", m.failover_timeout.to_string()),
            ("parallel-syncs", m.parallel_syncs.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v]),
    );
    out
}

fn replica_map(m: &Master, i: &Inst) -> Vec<String> {
    let mut out = Vec::new();
    let promoted = m.failover.promoted.as_deref() == Some(i.addr().as_str());
    let (sent, inprog, done) = match i.reconf {
        super::Reconf::Sent(_) => (true, false, false),
        super::Reconf::InProg => (false, true, false),
        super::Reconf::Done => (false, false, true),
        super::Reconf::None => (false, false, false),
    };
    let f = flags(
        "slave",
        &i.health,
        &[
            ("o_down", false),
            ("promoted", promoted),
            ("reconf_sent", sent),
            ("reconf_inprog", inprog),
            ("reconf_done", done),
        ],
    );
    common(&mut out, &i.addr(), &i.ip, i.port, &i.runid, &f);
    pings(&mut out, &i.health, None, m.down_after);
    role_fields(&mut out, i);
    out.extend(
        [
            ("master-link-down-time", i.master_link_down_ms.to_string()),
            (
                "master-link-status",
                if i.master_link_up { "ok" } else { "err" }.to_string(),
            ),
            ("master-host", i.master_host.clone()),
            ("master-port", i.master_port.to_string()),
            ("slave-priority", i.priority.to_string()),
            ("slave-repl-offset", i.repl_offset.to_string()),
            ("replica-announced", u8::from(i.announced).to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v]),
    );
    out
}

fn peer_map(m: &Master, p: &Peer) -> Vec<String> {
    let mut out = Vec::new();
    let f = flags("sentinel", &p.health, &[]);
    common(&mut out, &p.runid, &p.ip, p.port, &p.runid, &f);
    pings(&mut out, &p.health, None, m.down_after);
    out.extend([
        "last-hello-message".into(),
        ms_since(p.last_hello),
        "voted-leader".into(),
        p.leader.clone().unwrap_or_else(|| "?".into()),
        "voted-leader-epoch".into(),
        p.leader_epoch.to_string(),
    ]);
    out
}

fn no_master() -> Vec<u8> {
    error("ERR No such master with that name")
}

fn sentinel(shared: &Shared, args: &[String], proto: u8) -> Vec<u8> {
    let sub = args[1].to_ascii_lowercase();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let arity = |n: usize| args.len() == n;
    let mut s = lock(shared);
    match sub.as_str() {
        "myid" if arity(2) => bulk(&s.myid),
        "masters" if arity(2) => {
            let v: Vec<Vec<u8>> = (s.masters.values())
                .map(|m| map_bulks(&master_map(m), proto))
                .collect();
            array(&v)
        }
        "master" if arity(3) => match s.masters.get(arg(2)) {
            Some(m) => map_bulks(&master_map(m), proto),
            None => no_master(),
        },
        "replicas" | "slaves" if arity(3) => match s.masters.get(arg(2)) {
            Some(m) => {
                let v: Vec<Vec<u8>> = m
                    .replicas()
                    .filter(|i| i.announced)
                    .map(|i| map_bulks(&replica_map(m, i), proto))
                    .collect();
                array(&v)
            }
            None => no_master(),
        },
        "sentinels" if arity(3) => match s.masters.get(arg(2)) {
            Some(m) => {
                let v: Vec<Vec<u8>> = m
                    .sentinels
                    .values()
                    .map(|p| map_bulks(&peer_map(m, p), proto))
                    .collect();
                array(&v)
            }
            None => no_master(),
        },
        "get-master-addr-by-name" if arity(3) => match s.masters.get(arg(2)) {
            Some(m) => {
                let (ip, port) = m.current_addr();
                bulks(&[ip, port.to_string()])
            }
            None => null(proto, true),
        },
        "is-master-down-by-addr" if arity(6) => {
            let port: u16 = arg(3).parse().unwrap_or(0);
            let Ok(epoch) = arg(4).parse::<u64>() else {
                return error("ERR value is not an integer or out of range");
            };
            let Some(name) = s.master_by_addr(arg(2), port).map(|m| m.name.clone()) else {
                return array(&[int(0), bulk("*"), int(0)]);
            };
            // In TILT nothing this sentinel sees is trusted, so it never says "down".
            let down = s.tilt_since.is_none() && s.masters[&name].sdown();
            let (leader, lepoch) = if arg(5) != "*" {
                let who = super::failover::peer_vote(&s, &name, epoch, arg(5));
                vote_leader(&mut s, &name, epoch, &who)
            } else {
                (None, 0)
            };
            array(&[
                int(i64::from(down)),
                bulk(leader.as_deref().unwrap_or("*")),
                int(lepoch as i64),
            ])
        }
        "ckquorum" if arity(3) => match s.masters.get(arg(2)) {
            Some(m) => {
                let voters = m.sentinels.len() as u32 + 1;
                let usable = 1 + m
                    .sentinels
                    .values()
                    .filter(|p| p.health.sdown_since.is_none())
                    .count() as u32;
                let mut e = String::new();
                if usable < m.quorum {
                    e.push_str(". Not enough available Sentinels to reach the specified quorum for this master");
                }
                if usable < voters / 2 + 1 {
                    e.push_str(". Not enough available Sentinels to reach the majority and authorize a failover");
                }
                if e.is_empty() {
                    simple(&format!(
                        "OK {usable} usable Sentinels. Quorum and failover authorization can be reached"
                    ))
                } else {
                    error(&format!("NOQUORUM {usable} usable Sentinels{e}"))
                }
            }
            None => no_master(),
        },
        "failover" if arity(3) => {
            let name = arg(2).to_string();
            let Some(m) = s.masters.get(&name) else {
                return no_master();
            };
            if m.failover.in_progress() {
                return error("INPROG Failover already in progress");
            }
            if select_replica(m).is_none() {
                return error("NOGOODSLAVE No suitable replica to promote");
            }
            start_failover(&mut s, &name, true);
            simple("OK")
        }
        "monitor" if arity(6) => {
            let name = arg(2).to_string();
            if s.masters.contains_key(&name) {
                return error("ERR Duplicate master name.");
            }
            let Ok(port) = arg(4).parse::<u16>() else {
                return error("ERR Invalid port number");
            };
            let resolvable = || {
                use std::net::ToSocketAddrs;
                s.resolve_hostnames
                    && (arg(3), port)
                        .to_socket_addrs()
                        .is_ok_and(|mut a| a.next().is_some())
            };
            if arg(3).parse::<std::net::IpAddr>().is_err() && !resolvable() {
                return error("ERR Invalid IP address or hostname specified");
            }
            match arg(5).parse::<u32>() {
                Ok(q) if q > 0 => {
                    let m = Master::new(&name, arg(3), port, q);
                    let ev = format!("{} quorum {q}", m.inst_event(&m.addr()));
                    s.masters.insert(name, m);
                    if !s.save() {
                        return error("ERR Failed to save config file. Check server logs.");
                    }
                    s.event("+monitor", &ev);
                    simple("OK")
                }
                _ => error("ERR Quorum must be 1 or greater."),
            }
        }
        "remove" if arity(3) => match s.masters.remove(arg(2)) {
            Some(m) => {
                s.save();
                s.event("-monitor", &m.inst_event(&m.addr()));
                simple("OK")
            }
            None => no_master(),
        },
        "set" if args.len() >= 5 => set(&mut s, args),
        "config" if args.len() >= 3 => config(&mut s, args, proto),
        "info-cache" if args.len() >= 3 => {
            let mut names: Vec<&str> = Vec::new();
            for n in &args[2..] {
                if s.masters.contains_key(n.as_str()) && !names.contains(&n.as_str()) {
                    names.push(n);
                }
            }
            let mut out = Vec::new();
            for n in names {
                let m = &s.masters[n];
                let entry = |i: &Inst| {
                    array(&[
                        int(i.info_time.map_or(0, |t| t.elapsed().as_millis() as i64)),
                        i.info_text
                            .as_deref()
                            .map_or_else(|| null(proto, false), bulk),
                    ])
                };
                let mut insts: Vec<Vec<u8>> = m.master_inst().map(entry).into_iter().collect();
                insts.extend(m.replicas().map(entry));
                out.push(bulk(n));
                out.push(array(&insts));
            }
            array(&out)
        }
        "simulate-failure" if args.len() >= 3 => {
            let mut flags = 0;
            for a in &args[2..] {
                match a.to_ascii_lowercase().as_str() {
                    "crash-after-election" => flags |= super::SIMULATE_CRASH_AFTER_ELECTION,
                    "crash-after-promotion" => flags |= super::SIMULATE_CRASH_AFTER_PROMOTION,
                    "help" => return bulks(&["crash-after-election", "crash-after-promotion"]),
                    _ => return error("ERR Unknown failure simulation specified"),
                }
            }
            s.simulate = flags;
            crate::log::warning(&format!(
                "sentinel: SIMULATE-FAILURE {}: the process exits (code 99) at that point",
                args[2..].join(" ")
            ));
            simple("OK")
        }
        "debug" => debug(args, proto),
        "help" if arity(2) => help(),
        "reset" if arity(3) => {
            let pat = arg(2).to_string();
            let names: Vec<String> = s
                .masters
                .keys()
                .filter(|n| glob_match(pat.as_bytes(), n.as_bytes(), false))
                .cloned()
                .collect();
            for n in &names {
                if let Some(m) = s.masters.get_mut(n) {
                    let me = m.addr();
                    m.insts.retain(|k, _| *k == me);
                    m.sentinels.clear();
                    m.failover = Default::default();
                    m.odown_since = None;
                    let ev = m.inst_event(&me);
                    s.event("+reset-master", &ev);
                }
            }
            s.save();
            int(names.len() as i64)
        }
        "flushconfig" if arity(2) => {
            if s.save() {
                simple("OK")
            } else {
                error("ERR Failed to save config file. Check server logs.")
            }
        }
        "pending-scripts" if arity(2) => array(&[]),
        _ if [
            "myid",
            "masters",
            "master",
            "replicas",
            "slaves",
            "sentinels",
            "get-master-addr-by-name",
            "is-master-down-by-addr",
            "ckquorum",
            "failover",
            "monitor",
            "remove",
            "set",
            "reset",
            "flushconfig",
            "info-cache",
            "config",
            "simulate-failure",
            "pending-scripts",
            "help",
        ]
        .contains(&sub.as_str()) =>
        {
            error(&format!(
                "ERR wrong number of arguments for 'sentinel|{sub}' command"
            ))
        }
        _ => {
            let _ = FailoverState::None;
            error(&format!(
                "ERR unknown subcommand '{}'. Try SENTINEL HELP.",
                args[1]
            ))
        }
    }
}

/// `SENTINEL SET <master> <option> <value> ...` as Redis 7.0: options apply in order; a bad
/// one stops there (the ones before it stay applied and saved), each applied one is a
/// `+set` event (auth-pass shown as `******`).
fn set(s: &mut Sentinel, args: &[String]) -> Vec<u8> {
    let name = args[2].clone();
    if !s.masters.contains_key(&name) {
        return no_master();
    }
    let mut changes = Vec::new();
    let mut j = 3;
    let mut failure = None;
    while j < args.len() {
        let opt = args[j].to_ascii_lowercase();
        let Some(val) = args.get(j + 1).cloned() else {
            failure = Some(error(&format!(
                "ERR Unknown option or number of arguments for SENTINEL SET '{}'",
                args[j]
            )));
            break;
        };
        let invalid = || {
            error(&format!(
                "ERR Invalid argument '{val}' for SENTINEL SET '{}'",
                args[j]
            ))
        };
        let Some(m) = s.masters.get_mut(&name) else {
            return no_master();
        };
        let positive = val.parse::<u64>().ok().filter(|v| *v > 0);
        match opt.as_str() {
            "down-after-milliseconds" | "failover-timeout" | "parallel-syncs" | "quorum" => {
                let Some(v) = positive else {
                    failure = Some(invalid());
                    break;
                };
                match opt.as_str() {
                    "down-after-milliseconds" => m.down_after = v,
                    "failover-timeout" => m.failover_timeout = v,
                    "parallel-syncs" => m.parallel_syncs = v.min(u64::from(u32::MAX)) as u32,
                    _ => m.quorum = v.min(u64::from(u32::MAX)) as u32,
                }
            }
            "auth-pass" => m.auth_pass = (!val.is_empty()).then(|| val.clone()),
            "auth-user" => m.auth_user = (!val.is_empty()).then(|| val.clone()),
            "notification-script" | "client-reconfig-script" => {
                // Redis's default (deny-scripts-reconfig yes); shardis runs no scripts at all.
                failure = Some(error(
                    "ERR Reconfiguration of scripts path is denied for security reasons. \
                     Check the deny-scripts-reconfig configuration directive in your \
                     Sentinel configuration",
                ));
                break;
            }
            "master-reboot-down-after-period" | "rename-command" => {
                failure = Some(error(&format!(
                    "ERR shardis's sentinel does not support SENTINEL SET '{}'",
                    args[j]
                )));
                break;
            }
            _ => {
                failure = Some(error(&format!(
                    "ERR Unknown option or number of arguments for SENTINEL SET '{}'",
                    args[j]
                )));
                break;
            }
        }
        let shown = if opt == "auth-pass" { "******" } else { &val };
        changes.push(format!("{} {shown}", args[j]));
        j += 2;
    }
    if !changes.is_empty() {
        let saved = s.save();
        let ev = {
            let m = &s.masters[&name];
            m.inst_event(&m.addr())
        };
        for c in &changes {
            s.event("+set", &format!("{ev} {c}"));
        }
        if !saved && failure.is_none() {
            return error("ERR Failed to save config file. Check server logs.");
        }
    }
    failure.unwrap_or_else(|| simple("OK"))
}

/// The global options of `SENTINEL CONFIG GET/SET`, in Redis 7.0's order.
const CONFIG_OPTIONS: [&str; 6] = [
    "resolve-hostnames",
    "announce-hostnames",
    "announce-ip",
    "announce-port",
    "sentinel-user",
    "sentinel-pass",
];

fn config(s: &mut Sentinel, args: &[String], proto: u8) -> Vec<u8> {
    let usage =
        || error("ERR Only SENTINEL CONFIG GET <option> / SET <option> <value> are supported.");
    let op = args.get(2).map(|a| a.to_ascii_lowercase());
    match (op.as_deref(), args.len()) {
        (Some("get"), 4) => {
            let pat = args[3].to_ascii_lowercase();
            let mut out = Vec::new();
            for o in CONFIG_OPTIONS {
                if !glob_match(pat.as_bytes(), o.as_bytes(), true) {
                    continue;
                }
                let yn = |b: bool| if b { "yes" } else { "no" }.to_string();
                let v = match o {
                    "resolve-hostnames" => yn(s.resolve_hostnames),
                    "announce-hostnames" => yn(s.announce_hostnames),
                    "announce-ip" => s.announce_ip.clone(),
                    "announce-port" => s.announce_port.to_string(),
                    "sentinel-user" => s.sentinel_user.clone().unwrap_or_default(),
                    _ => s.sentinel_pass.clone().unwrap_or_default(),
                };
                out.push(o.to_string());
                out.push(v);
            }
            map_bulks(&out, proto)
        }
        (Some("set"), 5) => {
            let opt = args[3].to_ascii_lowercase();
            let v = &args[4];
            if !CONFIG_OPTIONS.contains(&opt.as_str()) {
                return error(&format!(
                    "ERR Invalid argument '{}' to SENTINEL CONFIG SET",
                    args[3]
                ));
            }
            if conf::set_global(s, &opt, v).is_err() {
                return error(&format!(
                    "ERR Invalid value '{v}' to SENTINEL CONFIG SET '{}'",
                    args[3]
                ));
            }
            if opt == "announce-hostnames" {
                crate::log::warning(
                    "sentinel: announce-hostnames: shardis's sentinel always reports \
                     addresses as they were configured or announced (it never resolves them)",
                );
            }
            if s.save() {
                simple("OK")
            } else {
                error("ERR Failed to save config file. Check server logs.")
            }
        }
        _ => usage(),
    }
}

/// `SENTINEL DEBUG [<option> <ms> ...]`: the timing knobs, as redis-sentinel prints them.
fn debug(args: &[String], proto: u8) -> Vec<u8> {
    use super::timing;
    if args.len() == 2 {
        let mut out = Vec::new();
        for k in timing::ALL {
            out.push(k.name.to_string());
            out.push(k.ms().to_string());
        }
        return map_bulks(&out, proto);
    }
    let mut todo = Vec::new();
    for pair in args[2..].chunks(2) {
        let Some(k) = timing::find(&pair[0]).filter(|_| pair.len() == 2) else {
            return error(&format!(
                "ERR Unknown option or number of arguments for SENTINEL DEBUG '{}'",
                pair[0]
            ));
        };
        match pair[1].parse::<u64>() {
            Ok(v) if v > 0 => todo.push((k, v)),
            _ => {
                return error(&format!(
                    "ERR Invalid argument '{}' for SENTINEL DEBUG '{}'",
                    pair[1], pair[0]
                ))
            }
        }
    }
    for (k, v) in todo {
        k.set(v);
        if !k.used {
            crate::log::warning(&format!(
                "sentinel: DEBUG {} stored but unused: shardis's sentinel runs no scripts \
                 and reconnects its links at once",
                k.name
            ));
        }
    }
    simple("OK")
}

fn help() -> Vec<u8> {
    let lines = [
        "SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
        "CKQUORUM <master-name>",
        "CONFIG GET <option> | CONFIG SET <option> <value>",
        "    Global options: resolve-hostnames, announce-hostnames, announce-ip,",
        "    announce-port, sentinel-user, sentinel-pass.",
        "DEBUG [<option> <ms> ...]",
        "    Show or change the timing knobs (periods and timeouts, milliseconds).",
        "GET-MASTER-ADDR-BY-NAME <master-name>",
        "FAILOVER <master-name>",
        "FLUSHCONFIG",
        "INFO-CACHE <master-name> [<master-name> ...]",
        "    The last INFO of the master and its replicas, with its age in ms.",
        "IS-MASTER-DOWN-BY-ADDR <ip> <port> <current-epoch> <runid>",
        "MASTER <master-name>",
        "MASTERS",
        "MONITOR <name> <ip> <port> <quorum>",
        "MYID",
        "PENDING-SCRIPTS",
        "REMOVE <master-name>",
        "REPLICAS <master-name>",
        "RESET <pattern>",
        "SENTINELS <master-name>",
        "SET <master-name> <option> <value> [<option> <value> ...]",
        "SIMULATE-FAILURE [CRASH-AFTER-ELECTION] [CRASH-AFTER-PROMOTION] [HELP]",
        "HELP",
        "    Print this help.",
    ];
    let mut out = format!("*{}\r\n", lines.len()).into_bytes();
    for l in lines {
        out.extend(simple(l));
    }
    out
}
