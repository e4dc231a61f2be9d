//! Links to monitored instances and to other sentinels, one std thread each, all blocking
//! sockets with timeouts. A link thread looks its target up in the state on every pass and
//! ends when the target is gone (removed master, reset, forgotten sentinel).
//!
//! - `cmd` link (per data instance): PING every second, INFO every 10 s (1 s while the
//!   master is down or failing over), hello PUBLISH every 2 s.
//! - `hello` link (per data instance): SUBSCRIBE `__sentinel__:hello`, feeds `process_hello`.
//! - `peer` link (per sentinel): PING, hello, and `SENTINEL is-master-down-by-addr` every
//!   second while our master is SDOWN (asking for a vote while we are electing).

use std::time::{Duration, Instant};

use super::resp::{Conn, Value};
use super::{lock, Reconf, Role, Sentinel, Shared, HELLO_CHANNEL};

const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const PASS: Duration = Duration::from_millis(50);

pub fn spawn_link(shared: Shared, key: String) {
    let parts: Vec<String> = key.splitn(3, '|').map(str::to_string).collect();
    let [kind, name, target] = <[String; 3]>::try_from(parts).unwrap_or_default();
    let k = key.clone();
    let r = std::thread::Builder::new()
        .name(format!("sentinel-{kind}"))
        .spawn(move || {
            match kind.as_str() {
                "cmd" => cmd_link(&shared, &name, &target),
                "hello" => hello_link(&shared, &name, &target),
                "peer" => peer_link(&shared, &name, &target),
                _ => {}
            }
            lock(&shared).links.remove(&k);
        });
    if r.is_err() {
        crate::log::warning(&format!("sentinel: cannot start link thread {key}"));
    }
}

/// What a data-instance link needs each pass, or None when the instance is gone.
struct Target {
    ip: String,
    port: u16,
    auth: Option<String>,
    auth_user: Option<String>,
    /// `announce-ip`, when set (else the link's local address is announced).
    announce_ip: Option<String>,
    down_after: Duration,
    info_period: Duration,
    hello: String,
    hello_gen: u64,
}

fn target(s: &Sentinel, name: &str, addr: &str) -> Option<Target> {
    let m = s.masters.get(name)?;
    let i = m.insts.get(addr)?;
    let busy = m.sdown() || m.odown_since.is_some() || m.failover.in_progress();
    let (mip, mport) = m.current_addr();
    Some(Target {
        ip: i.ip.clone(),
        port: i.port,
        auth: m.auth_pass.clone(),
        auth_user: m.auth_user.clone(),
        announce_ip: (!s.announce_ip.is_empty()).then(|| s.announce_ip.clone()),
        down_after: Duration::from_millis(m.down_after.max(1)),
        info_period: if busy {
            super::timing::INFO_PERIOD_FAILOVER
        } else {
            super::timing::INFO_PERIOD.get()
        },
        // The announce ip is filled in by the link (its socket's local address).
        hello: format!(
            "{},{},{},{},{mip},{mport},{}",
            s.announce_port(),
            s.myid,
            s.current_epoch,
            m.name,
            m.config_epoch
        ),
        hello_gen: s.hello_gen,
    })
}

fn connect(t: &Target, s: &Shared, kind: &str) -> std::io::Result<Conn> {
    let mut c = Conn::connect(&t.ip, t.port, CONNECT_TIMEOUT)?;
    match (&t.auth_user, &t.auth) {
        (Some(u), Some(p)) => {
            c.call(&["AUTH", u, p])?;
        }
        (None, Some(p)) => {
            c.call(&["AUTH", p])?;
        }
        _ => {}
    }
    let id8: String = lock(s).myid.chars().take(8).collect();
    let _ = c.call(&["CLIENT", "SETNAME", &format!("sentinel-{id8}-{kind}")])?;
    Ok(c)
}

fn with_inst(s: &Shared, name: &str, addr: &str, f: impl FnOnce(&mut super::Inst)) {
    let mut g = lock(s);
    if let Some(i) = g.masters.get_mut(name).and_then(|m| m.insts.get_mut(addr)) {
        f(i);
    }
}

fn cmd_link(s: &Shared, name: &str, addr: &str) {
    let mut conn: Option<Conn> = None;
    let mut local_ip = String::new();
    let mut next_ping = Instant::now();
    // The INFO period shrinks when the master goes down, so keep when it last ran.
    let mut last_info: Option<Instant> = None;
    let mut next_hello = Instant::now();
    let mut hello_gen = 0;
    loop {
        let Some(t) = target(&lock(s), name, addr) else {
            return;
        };
        if t.hello_gen != hello_gen {
            hello_gen = t.hello_gen;
            next_hello = Instant::now();
        }
        if conn.is_none() {
            match connect(&t, s, "cmd") {
                Ok(c) => {
                    local_ip = t.announce_ip.clone().unwrap_or_else(|| c.local_ip());
                    conn = Some(c);
                    last_info = None;
                    with_inst(s, name, addr, |i| i.health.connected = true);
                }
                Err(_) => {
                    with_inst(s, name, addr, |i| {
                        i.health.connected = false;
                        i.health.ping_pending = None;
                    });
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        let now = Instant::now();
        let mut ok = true;
        if now >= next_ping {
            next_ping = now + super::timing::PING_PERIOD.get().min(t.down_after);
            with_inst(s, name, addr, |i| {
                i.health.ping_pending.get_or_insert(now);
            });
            let _ = c.set_read_timeout(t.down_after.max(Duration::from_millis(100)));
            match c.call(&["PING"]) {
                Ok(v) => {
                    let valid = match &v {
                        Value::Simple(p) => p == "PONG",
                        Value::Error(e) => e.starts_with("LOADING") || e.starts_with("MASTERDOWN"),
                        _ => false,
                    };
                    with_inst(s, name, addr, |i| {
                        let at = Instant::now();
                        i.health.last_reply = Some(at);
                        if valid {
                            i.health.last_ok = Some(at);
                            i.health.ping_pending = None;
                        }
                    });
                }
                Err(_) => ok = false,
            }
        }
        if ok && last_info.is_none_or(|l| l.elapsed() >= t.info_period) {
            last_info = Some(now);
            match c.call(&["INFO"]) {
                Ok(v) => {
                    if let Some(text) = v.text() {
                        apply_info(&mut lock(s), name, addr, &text);
                    }
                }
                Err(_) => ok = false,
            }
        }
        if ok && now >= next_hello {
            next_hello = now + super::timing::PUBLISH_PERIOD.get();
            let payload = format!("{local_ip},{}", t.hello);
            ok = c.call(&["PUBLISH", HELLO_CHANNEL, &payload]).is_ok();
        }
        if !ok {
            conn = None;
            with_inst(s, name, addr, |i| i.health.connected = false);
        }
        std::thread::sleep(PASS);
    }
}

fn hello_link(s: &Shared, name: &str, addr: &str) {
    let mut conn: Option<Conn> = None;
    loop {
        let Some(t) = target(&lock(s), name, addr) else {
            return;
        };
        if conn.is_none() {
            let c = connect(&t, s, "pubsub").and_then(|mut c| {
                c.call(&["SUBSCRIBE", HELLO_CHANNEL])?;
                c.set_read_timeout(Duration::from_millis(500))?;
                Ok(c)
            });
            match c {
                Ok(c) => {
                    conn = Some(c);
                    with_inst(s, name, addr, |i| i.health.pubsub_up = true);
                }
                Err(_) => {
                    with_inst(s, name, addr, |i| i.health.pubsub_up = false);
                    std::thread::sleep(Duration::from_millis(200));
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match c.read() {
            Ok(Value::Array(Some(items))) => {
                let kind = items.first().and_then(Value::text).unwrap_or_default();
                if kind == "message" {
                    if let Some(p) = items.get(2).and_then(Value::text) {
                        process_hello(&mut lock(s), &p);
                    }
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => {
                conn = None;
                with_inst(s, name, addr, |i| i.health.pubsub_up = false);
            }
        }
    }
}

fn peer_link(s: &Shared, name: &str, runid: &str) {
    let mut conn: Option<Conn> = None;
    let mut next_ping = Instant::now();
    let mut next_hello = Instant::now();
    let mut last_ask: Option<(Instant, String, u64)> = None;
    let mut hello_gen = 0;
    loop {
        let (ip, port, down_after, ask, hello, gen, auth) = {
            let g = lock(s);
            let Some(m) = g.masters.get(name) else { return };
            let Some(p) = m.sentinels.get(runid) else {
                return;
            };
            // Ask for votes with our run id while we are electing; otherwise only ask
            // whether they see the master down.
            let asker = if m.failover.state == super::FailoverState::WaitStart {
                g.myid.clone()
            } else {
                "*".to_string()
            };
            let ask = m
                .sdown()
                .then(|| (m.ip.clone(), m.port, g.current_epoch, asker));
            let (mip, mport) = m.current_addr();
            let hello = format!(
                "{},{},{},{},{},{mip},{mport},{}",
                if !g.announce_ip.is_empty() {
                    &g.announce_ip
                } else if g.bind.is_empty() || g.bind == "*" || g.bind == "0.0.0.0" {
                    "127.0.0.1"
                } else {
                    &g.bind
                },
                g.announce_port(),
                g.myid,
                g.current_epoch,
                m.name,
                m.config_epoch
            );
            let auth = (g.sentinel_user.clone(), g.sentinel_pass.clone());
            (
                p.ip.clone(),
                p.port,
                m.down_after,
                ask,
                hello,
                g.hello_gen,
                auth,
            )
        };
        if gen != hello_gen {
            hello_gen = gen;
            next_hello = Instant::now();
        }
        if conn.is_none() {
            let authed = Conn::connect(&ip, port, CONNECT_TIMEOUT).and_then(|mut c| {
                // `sentinel-user` / `sentinel-pass`: how to log in to the other sentinels.
                match &auth {
                    (Some(u), Some(p)) => {
                        c.call(&["AUTH", u, p])?;
                    }
                    (None, Some(p)) => {
                        c.call(&["AUTH", p])?;
                    }
                    _ => {}
                }
                Ok(c)
            });
            match authed {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    set_peer(s, name, runid, |p| p.health.connected = false);
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            }
            set_peer(s, name, runid, |p| p.health.connected = true);
        }
        let Some(c) = conn.as_mut() else { continue };
        let now = Instant::now();
        let mut ok = true;
        if now >= next_ping {
            next_ping = now
                + super::timing::PING_PERIOD
                    .get()
                    .min(Duration::from_millis(down_after.max(1)));
            set_peer(s, name, runid, |p| {
                p.health.ping_pending.get_or_insert(now);
            });
            match c.call(&["PING"]) {
                Ok(Value::Simple(p)) if p == "PONG" => set_peer(s, name, runid, |p| {
                    let at = Instant::now();
                    p.health.last_ok = Some(at);
                    p.health.last_reply = Some(at);
                    p.health.ping_pending = None;
                }),
                Ok(_) => {}
                Err(_) => ok = false,
            }
        }
        if let (true, Some((mip, mport, epoch, asker))) = (ok, ask) {
            let due = match &last_ask {
                None => true,
                Some((at, who, ep)) => {
                    at.elapsed() >= super::timing::ASK_PERIOD.get() || *who != asker || *ep != epoch
                }
            };
            if due {
                last_ask = Some((now, asker.clone(), epoch));
                let args = [
                    "SENTINEL",
                    "is-master-down-by-addr",
                    &mip,
                    &mport.to_string(),
                    &epoch.to_string(),
                    &asker,
                ];
                match c.call(&args) {
                    Ok(Value::Array(Some(v))) if v.len() == 3 => {
                        let down = v[0] == Value::Int(1);
                        let leader = v[1].text().unwrap_or_default();
                        let lepoch = match v[2] {
                            Value::Int(e) => e.max(0) as u64,
                            _ => 0,
                        };
                        set_peer(s, name, runid, |p| {
                            p.master_down = down;
                            p.down_reply = Some(Instant::now());
                            if leader != "*" {
                                p.leader = Some(leader);
                                p.leader_epoch = lepoch;
                            }
                        });
                    }
                    Ok(_) => {}
                    Err(_) => ok = false,
                }
            }
        }
        if ok && now >= next_hello {
            next_hello = now + super::timing::PUBLISH_PERIOD.get();
            ok = c.call(&["PUBLISH", HELLO_CHANNEL, &hello]).is_ok();
        }
        if !ok {
            conn = None;
            set_peer(s, name, runid, |p| p.health.connected = false);
        }
        std::thread::sleep(PASS);
    }
}

fn set_peer(s: &Shared, name: &str, runid: &str, f: impl FnOnce(&mut super::Peer)) {
    let mut g = lock(s);
    if let Some(p) = g
        .masters
        .get_mut(name)
        .and_then(|m| m.sentinels.get_mut(runid))
    {
        f(p);
    }
}

/// Sends one command to a data instance on a short-lived connection (its own thread), then
/// reads INFO so the result shows at once (REPLICAOF's reply itself is not trusted).
pub fn fire(shared: &Shared, name: &str, addr: &str, args: Vec<String>) {
    let (s, name, addr) = (shared.clone(), name.to_string(), addr.to_string());
    let _ = std::thread::Builder::new()
        .name("sentinel-fire".into())
        .spawn(move || {
            let Some(t) = target(&lock(&s), &name, &addr) else {
                return;
            };
            let Ok(mut c) = connect(&t, &s, "cmd") else {
                return;
            };
            // As Redis Sentinel: the role change, the config rewrite and the disconnection of
            // the node's clients in one transaction, so clients reconnect and ask the
            // sentinels where the master is now. CONFIG REWRITE and CLIENT KILL may fail on
            // their own (no config file): EXEC still applies the rest.
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let is_replicaof = argv
                .first()
                .is_some_and(|a| a.eq_ignore_ascii_case("REPLICAOF"));
            let sent = if is_replicaof {
                let cmds: [&[&str]; 6] = [
                    &["MULTI"],
                    &argv,
                    &["CONFIG", "REWRITE"],
                    &["CLIENT", "KILL", "TYPE", "normal"],
                    &["CLIENT", "KILL", "TYPE", "pubsub"],
                    &["EXEC"],
                ];
                let mut replies = Vec::new();
                if cmds.iter().all(|a| c.send(a).is_ok()) {
                    for _ in 0..cmds.len() {
                        match c.read() {
                            Ok(v) => replies.push(v),
                            Err(_) => break,
                        }
                    }
                }
                match replies.last() {
                    Some(Value::Array(Some(_))) => true,
                    // EXEC refused as a whole (shardis under min-replicas-ack refuses
                    // EXEC without enough replicas, even when nothing in it writes):
                    // the same commands one by one (after a DISCARD: shardis keeps the
                    // transaction open after such a refusal).
                    Some(_) if replies.len() == cmds.len() => {
                        let _ = c.call(&["DISCARD"]);
                        let ok = c.call(&argv).is_ok_and(|v| !matches!(v, Value::Error(_)));
                        for a in &cmds[2..cmds.len() - 1] {
                            let _ = c.call(a);
                        }
                        ok
                    }
                    _ => false,
                }
            } else {
                c.call(&argv).is_ok()
            };
            if !sent {
                return;
            }
            if let Ok(v) = c.call(&["INFO"]) {
                if let Some(text) = v.text() {
                    apply_info(&mut lock(&s), &name, &addr, &text);
                }
            }
        });
}

/// Updates an instance from its INFO: run id, role, replication fields, and (for a master)
/// the replicas it lists, which become monitored (`+slave`).
pub fn apply_info(s: &mut Sentinel, name: &str, addr: &str, text: &str) {
    let mut new_replicas = Vec::new();
    let Some(m) = s.masters.get_mut(name) else {
        return;
    };
    let is_master_addr = addr == m.addr();
    // The replica being promoted is expected to turn master (Redis's `-role-change`).
    let expected = m.failover.in_progress() && m.failover.promoted.as_deref() == Some(addr);
    let mut role_change = None;
    let Some(i) = m.insts.get_mut(addr) else {
        return;
    };
    i.info_time = Some(Instant::now());
    i.info_text = Some(text.to_string());
    for line in text.lines() {
        let Some((k, v)) = line.trim_end().split_once(':') else {
            continue;
        };
        match k {
            "run_id" => i.runid = v.to_string(),
            "role" => {
                let role = if v == "master" {
                    Role::Master
                } else {
                    Role::Slave
                };
                if role != i.role {
                    // A master reporting slave or a replica reporting master, as Redis
                    // announces it (not the first INFO of an instance).
                    if i.role != Role::Unknown && (role == Role::Master) != is_master_addr {
                        role_change = Some((
                            if expected {
                                "-role-change"
                            } else {
                                "+role-change"
                            },
                            v.to_string(),
                        ));
                    }
                    i.role = role;
                    i.role_time = Instant::now();
                }
            }
            "master_host" => i.master_host = v.to_string(),
            "master_port" => i.master_port = v.parse().unwrap_or(0),
            "master_link_status" => i.master_link_up = v == "up",
            "master_link_down_since_seconds" => {
                i.master_link_down_ms = v.parse::<u64>().unwrap_or(0) * 1000
            }
            "slave_priority" | "replica_priority" => i.priority = v.parse().unwrap_or(100),
            "slave_repl_offset" => i.repl_offset = v.parse().unwrap_or(0),
            "replica_announced" => i.announced = v != "0",
            k if k.starts_with("slave") && k[5..].bytes().all(|b| b.is_ascii_digit()) => {
                let mut ip = "";
                let mut port = 0u16;
                for kv in v.split(',') {
                    match kv.split_once('=') {
                        Some(("ip", x)) => ip = x,
                        Some(("port", x)) => port = x.parse().unwrap_or(0),
                        _ => {}
                    }
                }
                if !ip.is_empty() && port != 0 {
                    new_replicas.push((ip.to_string(), port));
                }
            }
            _ => {}
        }
    }
    if i.role == Role::Master {
        i.master_link_up = false;
    }
    let reported_master = i.role == Role::Master;
    if let Some((kind, role)) = role_change {
        let ev = format!("{} new reported role is {role}", m.inst_event(addr));
        s.event(kind, &ev);
    }
    // Replicas count only from what the current master reports.
    if !is_master_addr || !reported_master {
        return;
    }
    let Some(m) = s.masters.get_mut(name) else {
        return;
    };
    let mut events = Vec::new();
    for (ip, port) in new_replicas {
        if m.add_inst(&ip, port) {
            events.push(m.inst_event(&format!("{ip}:{port}")));
        }
    }
    if !events.is_empty() {
        s.save();
    }
    for ev in events {
        s.event("+slave", &ev);
    }
}

/// Handles one `__sentinel__:hello` payload: discovers the sending sentinel, adopts a
/// greater epoch, and follows a newer master configuration.
pub fn process_hello(s: &mut Sentinel, payload: &str) {
    let f: Vec<&str> = payload.split(',').collect();
    if f.len() != 8 || f[2] == s.myid {
        return;
    }
    let (Ok(port), Ok(epoch), Ok(mport), Ok(mepoch)) = (
        f[1].parse::<u16>(),
        f[3].parse::<u64>(),
        f[6].parse::<u16>(),
        f[7].parse::<u64>(),
    ) else {
        return;
    };
    let (ip, runid, name, mip) = (f[0], f[2], f[4], f[5]);
    let Some(m) = s.masters.get_mut(name) else {
        return;
    };
    let mut changed = false;
    if !m.sentinels.contains_key(runid) {
        // Another run id at the same address is the same sentinel restarted.
        m.sentinels.retain(|_, p| !(p.ip == ip && p.port == port));
        m.add_peer(ip, port, runid);
        changed = true;
    }
    if let Some(p) = m.sentinels.get_mut(runid) {
        p.last_hello = Some(Instant::now());
        p.ip = ip.to_string();
        p.port = port;
    }
    if changed {
        let ev = m.peer_event(&m.sentinels[runid]);
        s.save();
        s.event("+sentinel", &ev);
    }
    s.adopt_epoch(epoch);
    let Some(m) = s.masters.get(name) else {
        return;
    };
    if mepoch > m.config_epoch && (mip, mport) != (m.ip.as_str(), m.port) {
        let ev = m
            .sentinels
            .get(runid)
            .map(|p| m.peer_event(p))
            .unwrap_or_default();
        s.event("+config-update-from", &ev);
        super::failover::switch_master(s, name, mip, mport, mepoch);
    } else if mepoch > m.config_epoch {
        if let Some(m) = s.masters.get_mut(name) {
            m.config_epoch = mepoch;
        }
        s.save();
    }
}

/// Whether a replica follows `ip:port` (for reconfiguration progress).
pub fn follows(i: &super::Inst, ip: &str, port: u16) -> bool {
    i.role == Role::Slave && i.master_host == ip && i.master_port == port
}

/// Replica reconfiguration steps seen in INFO.
pub fn reconf_progress(i: &mut super::Inst, ip: &str, port: u16) -> Option<&'static str> {
    match i.reconf {
        Reconf::Sent(_) if follows(i, ip, port) => {
            i.reconf = Reconf::InProg;
            Some("+slave-reconf-inprog")
        }
        Reconf::InProg if follows(i, ip, port) && i.master_link_up => {
            i.reconf = Reconf::Done;
            Some("+slave-reconf-done")
        }
        _ => None,
    }
}
