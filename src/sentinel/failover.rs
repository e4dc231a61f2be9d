//! Down states, leader election and the failover state machine (sentinel.c's states), run
//! by the sentinel's timer thread (`tick`) under the state lock. Commands to instances go
//! out through `monitor::fire` (their own threads), and their effect is observed in INFO.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::monitor::{fire, reconf_progress};
use super::{Reconf, Role, Sentinel, Shared};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailoverState {
    #[default]
    None,
    /// Elected or not yet: collecting votes for `epoch`.
    WaitStart,
    SelectSlave,
    SendSlaveofNoone,
    WaitPromotion,
    ReconfSlaves,
}

impl FailoverState {
    pub fn name(self) -> &'static str {
        match self {
            FailoverState::None => "none",
            FailoverState::WaitStart => "wait_start",
            FailoverState::SelectSlave => "select_slave",
            FailoverState::SendSlaveofNoone => "send_slaveof_noone",
            FailoverState::WaitPromotion => "wait_promotion",
            FailoverState::ReconfSlaves => "reconf_slaves",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Failover {
    pub state: FailoverState,
    pub epoch: u64,
    pub since: Instant,
    pub state_since: Instant,
    /// The selected replica (`ip:port`).
    pub promoted: Option<String>,
    /// SENTINEL FAILOVER: no ODOWN, no election.
    pub force: bool,
    /// How long to wait before voting for ourselves. Sentinels that see ODOWN in the same
    /// instant would otherwise each vote for themselves and split the vote (then nobody
    /// retries for 2 × failover-timeout); a random pause lets the first request win
    /// the others' votes, as Raft's randomized election timeouts do.
    pub self_vote_after: Duration,
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            state: FailoverState::None,
            epoch: 0,
            since: Instant::now(),
            state_since: Instant::now(),
            promoted: None,
            force: false,
            self_vote_after: Duration::ZERO,
        }
    }
}

impl Failover {
    pub fn in_progress(&self) -> bool {
        self.state != FailoverState::None
    }
    /// The promoted replica once it serves as master (clients are sent there).
    pub fn promoted_if_done(&self) -> Option<&String> {
        (self.state == FailoverState::ReconfSlaves)
            .then_some(self.promoted.as_ref())
            .flatten()
    }
    fn set(&mut self, st: FailoverState) {
        self.state = st;
        self.state_since = Instant::now();
    }
}

/// SDOWN of every instance and sentinel of `name`, then ODOWN of the master.
pub fn check_down(s: &mut Sentinel, name: &str) {
    let mut events = Vec::new();
    let Some(m) = s.masters.get_mut(name) else {
        return;
    };
    let down_after = Duration::from_millis(m.down_after);
    let master_addr = m.addr();
    let keys: Vec<String> = m.insts.keys().cloned().collect();
    for k in keys {
        let ev = m.inst_event(&k);
        let Some(i) = m.insts.get_mut(&k) else {
            continue;
        };
        let silent = i.health.silent_for() > down_after;
        // A master that reports itself a replica for too long is down too.
        let wrong_role = k == master_addr
            && i.role == Role::Slave
            && i.role_time.elapsed() > down_after + 2 * super::timing::INFO_PERIOD.get();
        match (silent || wrong_role, i.health.sdown_since.is_some()) {
            (true, false) => {
                i.health.sdown_since = Some(Instant::now());
                events.push(("+sdown", ev));
            }
            (false, true) => {
                i.health.sdown_since = None;
                events.push(("-sdown", ev));
            }
            _ => {}
        }
    }
    let runids: Vec<String> = m.sentinels.keys().cloned().collect();
    for r in runids {
        let ev = m.peer_event(&m.sentinels[&r]);
        let Some(p) = m.sentinels.get_mut(&r) else {
            continue;
        };
        let silent = p.health.silent_for() > down_after;
        match (silent, p.health.sdown_since.is_some()) {
            (true, false) => {
                p.health.sdown_since = Some(Instant::now());
                events.push(("+sdown", ev));
            }
            (false, true) => {
                p.health.sdown_since = None;
                events.push(("-sdown", ev));
            }
            _ => {}
        }
    }
    // ODOWN: we see SDOWN and, counting ourselves, quorum sentinels agree (fresh replies).
    let mut votes = 1u32;
    for p in m.sentinels.values_mut() {
        if p.down_reply
            .is_some_and(|t| t.elapsed() > 5 * super::timing::ASK_PERIOD.get())
        {
            p.master_down = false;
        }
        if p.master_down {
            votes += 1;
        }
    }
    let odown = m.sdown() && votes >= m.quorum;
    let ev = m.inst_event(&master_addr);
    match (odown, m.odown_since.is_some()) {
        (true, false) => {
            m.odown_since = Some(Instant::now());
            events.push(("+odown", format!("{ev} #quorum {votes}/{}", m.quorum)));
        }
        (false, true) => {
            m.odown_since = None;
            events.push(("-odown", ev));
        }
        _ => {}
    }
    for (k, e) in events {
        s.event(k, &e);
    }
}

/// Whom to vote for when `requester` asks for our vote in `epoch`: the requester, unless we
/// are a candidate of that same epoch still pausing before our own vote. Then the smaller
/// run id of the two gets it, so two candidates that started together vote for the same
/// one (each voting for the other would split the vote and stall the failover for twice
/// the failover-timeout).
pub fn peer_vote(s: &Sentinel, name: &str, epoch: u64, requester: &str) -> String {
    let candidate = s.masters.get(name).is_some_and(|m| {
        m.failover.state == FailoverState::WaitStart
            && m.failover.epoch == epoch
            && m.leader_epoch < epoch
    });
    if candidate && s.myid.as_str() < requester {
        s.myid.clone()
    } else {
        requester.to_string()
    }
}

/// sentinelVoteLeader: one vote per epoch, persisted before it is returned.
pub fn vote_leader(s: &mut Sentinel, name: &str, epoch: u64, runid: &str) -> (Option<String>, u64) {
    s.adopt_epoch(epoch);
    let current = s.current_epoch;
    let myid = s.myid.clone();
    let Some(m) = s.masters.get_mut(name) else {
        return (None, 0);
    };
    if m.leader_epoch < epoch && current <= epoch {
        m.leader = Some(runid.to_string());
        m.leader_epoch = current;
        if runid != myid {
            // Give the one we voted for time to fail over before trying ourselves.
            m.failover_start = Some(Instant::now() + super::random_ms(1000));
        }
        s.save();
        s.event("+vote-for-leader", &format!("{runid} {current}"));
    }
    let m = &s.masters[name];
    (m.leader.clone(), m.leader_epoch)
}

/// sentinelGetLeader: the run id with most votes for `epoch`, if it has a majority of all
/// known sentinels (us included) and at least quorum. Casts our own vote on the way.
fn get_leader(s: &mut Sentinel, name: &str, epoch: u64) -> Option<String> {
    let m = &s.masters[name];
    let voters = m.sentinels.len() as u32 + 1;
    let quorum = m.quorum;
    let mut count: BTreeMap<String, u32> = BTreeMap::new();
    for p in m.sentinels.values() {
        if let Some(l) = &p.leader {
            if p.leader_epoch == epoch {
                *count.entry(l.clone()).or_default() += 1;
            }
        }
    }
    let best = |c: &BTreeMap<String, u32>| {
        c.iter()
            .max_by_key(|(_, n)| **n)
            .map(|(r, n)| (r.clone(), *n))
    };
    let want = best(&count)
        .map(|(r, _)| r)
        .unwrap_or_else(|| s.myid.clone());
    let (mine, mine_epoch) = vote_leader(s, name, epoch, &want);
    if let Some(l) = mine {
        if mine_epoch == epoch {
            *count.entry(l).or_default() += 1;
        }
    }
    let (winner, n) = best(&count)?;
    (n > voters / 2 && n >= quorum).then_some(winner)
}

/// Begins a failover in a new epoch (persisted first).
pub fn start(s: &mut Sentinel, name: &str, force: bool) {
    s.current_epoch += 1;
    let epoch = s.current_epoch;
    s.save();
    s.event("+new-epoch", &epoch.to_string());
    let Some(m) = s.masters.get_mut(name) else {
        return;
    };
    m.failover = Failover {
        state: FailoverState::WaitStart,
        epoch,
        since: Instant::now(),
        state_since: Instant::now(),
        promoted: None,
        force,
        self_vote_after: super::random_ms(250),
    };
    m.failover_start = Some(Instant::now() + super::random_ms(1000));
    for i in m.insts.values_mut() {
        i.reconf = Reconf::None;
    }
    let ev = m.inst_event(&m.addr());
    s.event("+try-failover", &ev);
}

fn abort(s: &mut Sentinel, name: &str, why: &str) {
    let Some(m) = s.masters.get_mut(name) else {
        return;
    };
    m.failover = Failover::default();
    let ev = m.inst_event(&m.addr());
    s.event(why, &ev);
}

/// The best replica to promote, or None (sentinelSelectSlave).
pub fn select_replica(m: &super::Master) -> Option<String> {
    let down_after = Duration::from_millis(m.down_after);
    let info_max = if m.sdown() {
        5 * super::timing::PING_PERIOD.get()
    } else {
        5 * super::timing::INFO_PERIOD.get()
    };
    let link_max = m
        .master_inst()
        .and_then(|i| i.health.sdown_since)
        .map(|t| t.elapsed())
        .unwrap_or_default()
        + 10 * down_after;
    let mut ok: Vec<&super::Inst> = m
        .replicas()
        .filter(|i| {
            i.health.sdown_since.is_none()
                && i.health.connected
                && i.health.silent_for() <= 5 * super::timing::PING_PERIOD.get()
                && i.priority != 0
                && i.info_time.is_some_and(|t| t.elapsed() <= info_max)
                && Duration::from_millis(i.master_link_down_ms) <= link_max
        })
        .collect();
    ok.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then(b.repl_offset.cmp(&a.repl_offset))
            .then_with(|| match (a.runid.is_empty(), b.runid.is_empty()) {
                (false, true) => std::cmp::Ordering::Less,
                (true, false) => std::cmp::Ordering::Greater,
                _ => a.runid.cmp(&b.runid),
            })
    });
    ok.first().map(|i| i.addr())
}

/// Makes `ip:port` the master of `name` (the old master stays as a replica), with
/// `+switch-master`, and persists it.
pub fn switch_master(s: &mut Sentinel, name: &str, ip: &str, port: u16, config_epoch: u64) {
    let Some(m) = s.masters.get_mut(name) else {
        return;
    };
    let (old_ip, old_port) = (m.ip.clone(), m.port);
    m.ip = ip.to_string();
    m.port = port;
    m.config_epoch = m.config_epoch.max(config_epoch);
    m.add_inst(ip, port);
    m.failover = Failover::default();
    m.odown_since = None;
    m.leader = None;
    let new_master = m.addr();
    for i in m.insts.values_mut() {
        i.reconf = Reconf::None;
        // Leave an ex-master time to come back before it is corrected.
        i.last_fix = Some(Instant::now());
        // As Redis re-creates its replicas under the new master: their down state is
        // judged afresh (the old master's `+sdown slave ...` follows down-after).
        if i.addr() != new_master {
            let links = (i.health.connected, i.health.pubsub_up);
            i.health = super::Health::new();
            (i.health.connected, i.health.pubsub_up) = links;
        }
    }
    // Redis announces every replica of the new master, the old master included, with
    // `+slave` right after `+switch-master`; clients (node-redis) re-read the topology on it.
    let replicas: Vec<String> = m.replicas().map(|i| m.inst_event(&i.addr())).collect();
    for p in m.sentinels.values_mut() {
        p.master_down = false;
        p.down_reply = None;
    }
    s.hello_gen += 1;
    s.save();
    s.event(
        "+switch-master",
        &format!("{name} {old_ip} {old_port} {ip} {port}"),
    );
    for ev in replicas {
        s.event("+slave", &ev);
    }
}

/// One step of the failover state machine, plus starting one and correcting replicas.
pub fn run(s: &mut Sentinel, name: &str, shared: &Shared) {
    let Some(m) = s.masters.get(name) else {
        return;
    };
    let timeout = Duration::from_millis(m.failover_timeout);
    let st = m.failover.state;
    let epoch = m.failover.epoch;
    match st {
        FailoverState::None => {
            let can_start = m.odown_since.is_some()
                && m.failover_start.is_none_or(|t| {
                    Instant::now()
                        .checked_duration_since(t)
                        .is_some_and(|d| d >= 2 * timeout)
                });
            if can_start {
                start(s, name, false);
            } else {
                fix_replicas(s, name, shared);
            }
        }
        FailoverState::WaitStart => {
            let force = m.failover.force;
            let since = m.failover.since;
            let voted_elsewhere = m.leader_epoch >= epoch;
            let leader = if force {
                Some(s.myid.clone())
            } else if voted_elsewhere || since.elapsed() >= m.failover.self_vote_after {
                get_leader(s, name, epoch)
            } else {
                None
            };
            if leader.as_deref() == Some(s.myid.as_str()) {
                let m = &s.masters[name];
                if !force && m.odown_since.is_none() {
                    return abort(s, name, "-failover-abort-not-odown");
                }
                let ev = m.inst_event(&m.addr());
                s.event("+elected-leader", &ev);
                simulated_crash(
                    s,
                    super::SIMULATE_CRASH_AFTER_ELECTION,
                    "crash-after-election",
                );
                s.event("+failover-state-select-slave", &ev);
                set_state(s, name, FailoverState::SelectSlave);
            } else if since.elapsed() > timeout.min(super::timing::ELECTION_TIMEOUT.get()) {
                abort(s, name, "-failover-abort-not-elected");
            }
        }
        FailoverState::SelectSlave => match select_replica(m) {
            None => abort(s, name, "-failover-abort-no-good-slave"),
            Some(addr) => {
                let ev = m.inst_event(&addr);
                s.event("+selected-slave", &ev);
                s.event("+failover-state-send-slaveof-noone", &ev);
                if let Some(m) = s.masters.get_mut(name) {
                    m.failover.promoted = Some(addr);
                }
                set_state(s, name, FailoverState::SendSlaveofNoone);
            }
        },
        FailoverState::SendSlaveofNoone => {
            let p = m.failover.promoted.clone().unwrap_or_default();
            let connected = m.insts.get(&p).is_some_and(|i| i.health.connected);
            if !connected {
                if m.failover.state_since.elapsed() > timeout {
                    abort(s, name, "-failover-abort-slave-timeout");
                }
                return;
            }
            fire(
                shared,
                name,
                &p,
                vec!["REPLICAOF".into(), "NO".into(), "ONE".into()],
            );
            let ev = m.inst_event(&p);
            s.event("+failover-state-wait-promotion", &ev);
            set_state(s, name, FailoverState::WaitPromotion);
        }
        FailoverState::WaitPromotion => {
            let p = m.failover.promoted.clone().unwrap_or_default();
            let since = m.failover.state_since;
            let promoted = m
                .insts
                .get(&p)
                .is_some_and(|i| i.role == Role::Master && i.role_time >= since);
            if promoted {
                let ev = m.inst_event(&p);
                if let Some(m) = s.masters.get_mut(name) {
                    m.config_epoch = epoch;
                }
                s.hello_gen += 1;
                s.save();
                s.event("+promoted-slave", &ev);
                simulated_crash(
                    s,
                    super::SIMULATE_CRASH_AFTER_PROMOTION,
                    "crash-after-promotion",
                );
                s.event("+failover-state-reconf-slaves", &m_event(s, name));
                set_state(s, name, FailoverState::ReconfSlaves);
            } else if since.elapsed() > timeout {
                abort(s, name, "-failover-abort-slave-timeout");
            }
        }
        FailoverState::ReconfSlaves => reconf_replicas(s, name, shared),
    }
}

/// `SENTINEL SIMULATE-FAILURE`: exits as redis-sentinel does (code 99) at that point.
fn simulated_crash(s: &Sentinel, flag: u8, what: &str) {
    if s.simulate & flag != 0 {
        crate::log::warning(&format!("Simulated failure: {what}. Exiting."));
        std::process::exit(99);
    }
}

fn m_event(s: &Sentinel, name: &str) -> String {
    let m = &s.masters[name];
    m.inst_event(&m.addr())
}

fn set_state(s: &mut Sentinel, name: &str, st: FailoverState) {
    if let Some(m) = s.masters.get_mut(name) {
        m.failover.set(st);
    }
}

/// Points the other replicas at the promoted one, `parallel-syncs` at a time; ends the
/// failover when all are done (down ones count as done) or failover-timeout passed.
fn reconf_replicas(s: &mut Sentinel, name: &str, shared: &Shared) {
    let mut events = Vec::new();
    let Some(m) = s.masters.get_mut(name) else {
        return;
    };
    let Some(p) = m.failover.promoted.clone() else {
        return;
    };
    let Some((pip, pport)) = m.insts.get(&p).map(|i| (i.ip.clone(), i.port)) else {
        return;
    };
    let timed_out = m.failover.since.elapsed() > Duration::from_millis(m.failover_timeout);
    let old = m.addr();
    let others: Vec<String> = m.insts.keys().filter(|k| **k != p).cloned().collect();
    let mut in_flight = 0;
    let mut all_done = true;
    for k in &others {
        let ev = m.inst_event(k);
        let Some(i) = m.insts.get_mut(k) else {
            continue;
        };
        if let Reconf::Sent(at) = i.reconf {
            if at.elapsed() > super::timing::SLAVE_RECONF_TIMEOUT.get() {
                i.reconf = Reconf::Done;
                events.push(("-slave-reconf-sent-timeout", ev.clone()));
            }
        }
        if let Some(e) = reconf_progress(i, &pip, pport) {
            events.push((e, ev.clone()));
        }
        let down = i.health.sdown_since.is_some() || !i.health.connected || *k == old;
        match i.reconf {
            Reconf::Sent(_) | Reconf::InProg => {
                in_flight += 1;
                all_done = false;
            }
            Reconf::Done => {}
            Reconf::None if down => {}
            Reconf::None => all_done = false,
        }
    }
    for k in &others {
        let ev = m.inst_event(k);
        let Some(i) = m.insts.get_mut(k) else {
            continue;
        };
        let down = i.health.sdown_since.is_some() || !i.health.connected || *k == old;
        if i.reconf == Reconf::None && !down && (in_flight < m.parallel_syncs || timed_out) {
            i.reconf = Reconf::Sent(Instant::now());
            in_flight += 1;
            fire(
                shared,
                name,
                k,
                vec!["REPLICAOF".into(), pip.clone(), pport.to_string()],
            );
            events.push(("+slave-reconf-sent", ev));
        }
    }
    let epoch = m.failover.epoch;
    let mev = m.inst_event(&old);
    for (k, e) in events {
        s.event(k, &e);
    }
    if all_done || timed_out {
        s.event(
            if all_done {
                "+failover-end"
            } else {
                "+failover-end-for-timeout"
            },
            &mev,
        );
        switch_master(s, name, &pip, pport, epoch);
    }
}

/// Outside failovers: a replica that reports role master (a returning old master) is
/// turned into a replica of the current master (`+convert-to-slave`), and one following
/// the wrong master is repointed (`+fix-slave-config`), after Redis's 8 s settle time.
fn fix_replicas(s: &mut Sentinel, name: &str, shared: &Shared) {
    let wait = 4 * super::timing::PUBLISH_PERIOD.get();
    let Some(m) = s.masters.get_mut(name) else {
        return;
    };
    let sane = m.master_inst().is_some_and(|i| {
        i.role == Role::Master
            && i.health.sdown_since.is_none()
            && i.info_time
                .is_some_and(|t| t.elapsed() < 2 * super::timing::INFO_PERIOD.get())
    });
    if !sane || m.odown_since.is_some() {
        return;
    }
    let (mip, mport) = (m.ip.clone(), m.port);
    let me = m.addr();
    let mut todo = Vec::new();
    for (k, i) in m.insts.iter_mut() {
        if *k == me || i.health.sdown_since.is_some() || !i.health.connected {
            continue;
        }
        if i.last_fix.is_some_and(|t| t.elapsed() < wait) || i.role_time.elapsed() < wait {
            continue;
        }
        let kind = match i.role {
            Role::Master => "+convert-to-slave",
            Role::Slave if i.master_host != mip || i.master_port != mport => "+fix-slave-config",
            _ => continue,
        };
        i.last_fix = Some(Instant::now());
        todo.push((kind, k.clone()));
    }
    for (kind, k) in todo {
        let ev = s.masters[name].inst_event(&k);
        s.event(kind, &ev);
        fire(
            shared,
            name,
            &k,
            vec!["REPLICAOF".into(), mip.clone(), mport.to_string()],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::Master;

    fn sentinel_with(name: &str) -> Sentinel {
        let mut s = Sentinel::for_test();
        s.masters
            .insert(name.into(), Master::new(name, "127.0.0.1", 6379, 2));
        s
    }

    #[test]
    fn one_vote_per_epoch() {
        let mut s = sentinel_with("m");
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        assert_eq!(vote_leader(&mut s, "m", 3, &a), (Some(a.clone()), 3));
        assert_eq!(s.current_epoch, 3);
        // A second request in the same epoch gets the vote already cast.
        assert_eq!(vote_leader(&mut s, "m", 3, &b), (Some(a.clone()), 3));
        // An older epoch cannot win a vote either.
        assert_eq!(vote_leader(&mut s, "m", 2, &b), (Some(a.clone()), 3));
        assert_eq!(vote_leader(&mut s, "m", 4, &b), (Some(b.clone()), 4));
    }

    #[test]
    fn candidates_of_one_epoch_agree_on_the_smaller_run_id() {
        let mut s = sentinel_with("m");
        let me = s.myid.clone();
        let (low, high) = ("0".repeat(40), "f".repeat(40));
        // Not a candidate: the requester gets the vote.
        assert_eq!(peer_vote(&s, "m", 1, &high), high);
        start(&mut s, "m", false);
        let epoch = s.current_epoch;
        assert_eq!(peer_vote(&s, "m", epoch, &low), low);
        assert_eq!(peer_vote(&s, "m", epoch, &high), me);
        // Another epoch's request is not ours to contest.
        assert_eq!(peer_vote(&s, "m", epoch + 1, &high), high);
    }

    #[test]
    fn leader_needs_majority_and_quorum() {
        let mut s = sentinel_with("m");
        let me = s.myid.clone();
        let m = s.masters.get_mut("m").unwrap();
        for r in ["p1", "p2", "p3", "p4"] {
            m.add_peer("127.0.0.1", 1, r);
        }
        s.current_epoch = 1;
        // Five voters: our own vote is not enough.
        assert_eq!(get_leader(&mut s, "m", 1), None);
        let m = s.masters.get_mut("m").unwrap();
        for r in ["p1", "p2"] {
            let p = m.sentinels.get_mut(r).unwrap();
            p.leader = Some(me.clone());
            p.leader_epoch = 1;
        }
        assert_eq!(get_leader(&mut s, "m", 1), Some(me.clone()));
        // Votes from another epoch do not count.
        assert_eq!(get_leader(&mut s, "m", 2), None);
    }

    #[test]
    fn replica_choice_priority_offset_runid() {
        let mut m = Master::new("m", "127.0.0.1", 6379, 2);
        for (port, prio, off, runid) in [
            (1, 0, 900, "a"),
            (2, 100, 10, "b"),
            (3, 100, 50, "d"),
            (4, 100, 50, "c"),
            (5, 10, 1, "e"),
        ] {
            m.add_inst("127.0.0.1", port);
            let i = m.insts.get_mut(&format!("127.0.0.1:{port}")).unwrap();
            i.priority = prio;
            i.repl_offset = off;
            i.runid = runid.into();
            i.health.connected = true;
            i.info_time = Some(Instant::now());
        }
        assert_eq!(select_replica(&m).as_deref(), Some("127.0.0.1:5"));
        m.insts.get_mut("127.0.0.1:5").unwrap().health.connected = false;
        assert_eq!(select_replica(&m).as_deref(), Some("127.0.0.1:4"));
        m.insts.get_mut("127.0.0.1:4").unwrap().health.sdown_since = Some(Instant::now());
        assert_eq!(select_replica(&m).as_deref(), Some("127.0.0.1:3"));
    }
}
