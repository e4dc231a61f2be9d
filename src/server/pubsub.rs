//! Pub/Sub state of one shard, run only by that shard's thread. Subscriptions are connection
//! state, so each shard knows only the connections it accepted: `Registry` maps channels and
//! patterns to the local subscribers (slab indexes), and each `Conn` keeps its own `Subs`.
//!
//! PUBLISH fans out to every shard (see `commands::pubsub`); each shard runs `publish` to
//! append `message` / `pmessage` frames to its local subscribers' output and returns how many
//! it reached. Jobs from one shard to another travel one FIFO queue, so one publisher's
//! messages reach each subscriber in publish order.
//!
//! Sharded channels (SSUBSCRIBE, Redis 7.0) are a separate namespace with their own
//! per-connection set and registry map: SPUBLISH reaches only them (as `smessage`), PUBLISH
//! never does, and their confirmations count only them. Redis ties a shard channel to its
//! cluster slot; here subscriptions live with the connection like the others, so SPUBLISH
//! fans out to every shard as PUBLISH does.
//!
//! Slow subscribers: a subscribed connection whose unsent output (buffered + in the kernel
//! send in flight) reaches the pubsub class's hard limit, or stays at or above the soft limit
//! for longer than the soft seconds, is closed, as Redis's `client-output-buffer-limit pubsub`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use bytes::Bytes;

use super::connection::Conn;
use super::worker::Worker;
use crate::commands::args::glob_match;
use crate::protocol::reply::encode_bulk;

/// One connection's subscriptions. The values are insertion ticks, so "unsubscribe from
/// everything" confirms in subscription order.
#[derive(Default, Debug)]
pub struct Subs {
    pub channels: AHashMap<Bytes, u64>,
    pub patterns: AHashMap<Bytes, u64>,
    /// Shard channels (SSUBSCRIBE).
    pub shard: AHashMap<Bytes, u64>,
    tick: u64,
}

impl Subs {
    /// Channels plus patterns: the count subscribe/unsubscribe confirmations carry.
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Shard channels: the count SSUBSCRIBE / SUNSUBSCRIBE confirmations carry.
    pub fn shard_count(&self) -> usize {
        self.shard.len()
    }

    /// In subscribed mode (CLIENT LIST flag `P`, the RESP2 command restriction).
    pub fn active(&self) -> bool {
        self.count() > 0 || !self.shard.is_empty()
    }

    fn set(&mut self, pattern: bool) -> &mut AHashMap<Bytes, u64> {
        if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        }
    }

    /// Names of one kind in subscription order.
    pub fn ordered(&self, pattern: bool) -> Vec<Bytes> {
        let m = if pattern {
            &self.patterns
        } else {
            &self.channels
        };
        Self::in_order(m)
    }

    /// Shard channels in subscription order.
    pub fn ordered_shard(&self) -> Vec<Bytes> {
        Self::in_order(&self.shard)
    }

    fn in_order(m: &AHashMap<Bytes, u64>) -> Vec<Bytes> {
        let mut v: Vec<(&Bytes, &u64)> = m.iter().collect();
        v.sort_by_key(|(_, t)| **t);
        v.into_iter().map(|(k, _)| k.clone()).collect()
    }
}

/// This shard's channel → subscribers and pattern → subscribers maps.
#[derive(Default)]
pub struct Registry {
    channels: AHashMap<Bytes, Vec<usize>>,
    patterns: AHashMap<Bytes, Vec<usize>>,
    /// Shard channel → local subscribers.
    shard: AHashMap<Bytes, Vec<usize>>,
}

impl Registry {
    fn map(&mut self, pattern: bool) -> &mut AHashMap<Bytes, Vec<usize>> {
        if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        }
    }

    fn remove(&mut self, pattern: bool, name: &Bytes, idx: usize) {
        Self::remove_from(self.map(pattern), name, idx);
    }

    fn remove_from(m: &mut AHashMap<Bytes, Vec<usize>>, name: &Bytes, idx: usize) {
        if let Some(v) = m.get_mut(name) {
            v.retain(|&i| i != idx);
            if v.is_empty() {
                m.remove(name);
            }
        }
    }

    /// Forgets every subscription of a connection that is going away.
    pub fn forget(&mut self, idx: usize, subs: &Subs) {
        for ch in subs.channels.keys() {
            self.remove(false, ch, idx);
        }
        for p in subs.patterns.keys() {
            self.remove(true, p, idx);
        }
        for ch in subs.shard.keys() {
            Self::remove_from(&mut self.shard, ch, idx);
        }
    }

    /// Active shard channels matching `pattern`, if any (PUBSUB SHARDCHANNELS).
    pub fn shard_channels_matching(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.shard
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    /// Local subscriber count of each shard channel (PUBSUB SHARDNUMSUB).
    pub fn shard_numsub(&self, channels: &[Bytes]) -> Vec<usize> {
        channels
            .iter()
            .map(|c| self.shard.get(c).map_or(0, Vec::len))
            .collect()
    }

    /// Active channels (with at least one local subscriber) matching `pattern`, if any.
    pub fn channels_matching(&self, pattern: Option<&[u8]>) -> Vec<Bytes> {
        self.channels
            .keys()
            .filter(|c| pattern.is_none_or(|p| glob_match(p, c, false)))
            .cloned()
            .collect()
    }

    /// Local subscriber count of each channel (patterns not included, as in Redis).
    pub fn numsub(&self, channels: &[Bytes]) -> Vec<usize> {
        channels
            .iter()
            .map(|c| self.channels.get(c).map_or(0, Vec::len))
            .collect()
    }

    /// Patterns with at least one local subscriber.
    pub fn pattern_names(&self) -> Vec<Bytes> {
        self.patterns.keys().cloned().collect()
    }
}

/// Subscribes connection `idx` to a channel (or pattern); returns whether it is new and the
/// connection's subscription count afterwards.
pub fn subscribe(w: &mut Worker, idx: usize, name: Bytes, pattern: bool) -> (bool, usize) {
    let Some(c) = w.conns.get_mut(idx) else {
        return (false, 0);
    };
    let subs = &mut c.subs;
    subs.tick += 1;
    let tick = subs.tick;
    let set = subs.set(pattern);
    if set.contains_key(&name) {
        return (false, subs.count());
    }
    set.insert(name.clone(), tick);
    let n = subs.count();
    w.pubsub.map(pattern).entry(name).or_default().push(idx);
    (true, n)
}

/// Unsubscribes connection `idx`; returns whether it was subscribed and its count afterwards.
pub fn unsubscribe(w: &mut Worker, idx: usize, name: &Bytes, pattern: bool) -> (bool, usize) {
    let Some(c) = w.conns.get_mut(idx) else {
        return (false, 0);
    };
    let was = c.subs.set(pattern).remove(name).is_some();
    let n = c.subs.count();
    if was {
        w.pubsub.remove(pattern, name, idx);
    }
    (was, n)
}

/// Subscribes connection `idx` to a shard channel; returns its shard channel count after.
pub fn ssubscribe(w: &mut Worker, idx: usize, name: Bytes) -> usize {
    let Some(c) = w.conns.get_mut(idx) else {
        return 0;
    };
    let subs = &mut c.subs;
    if subs.shard.contains_key(&name) {
        return subs.shard_count();
    }
    subs.tick += 1;
    subs.shard.insert(name.clone(), subs.tick);
    let n = subs.shard_count();
    w.pubsub.shard.entry(name).or_default().push(idx);
    n
}

/// Unsubscribes connection `idx` from a shard channel; returns its shard channel count after.
pub fn sunsubscribe(w: &mut Worker, idx: usize, name: &Bytes) -> usize {
    let Some(c) = w.conns.get_mut(idx) else {
        return 0;
    };
    let was = c.subs.shard.remove(name).is_some();
    let n = c.subs.shard_count();
    if was {
        Registry::remove_from(&mut w.pubsub.shard, name, idx);
    }
    n
}

/// Drops every subscription of connection `idx` without confirmations (RESET, QUIT).
pub fn clear(w: &mut Worker, idx: usize) {
    if let Some(c) = w.conns.get_mut(idx) {
        let subs = std::mem::take(&mut c.subs);
        w.pubsub.forget(idx, &subs);
    }
}

/// The encoded frame of one message, built once per protocol version and shared by every
/// subscriber of this shard.
struct Frame<'a> {
    parts: [&'a [u8]; 4],
    len: usize,
    enc: [Option<Bytes>; 2],
}

impl<'a> Frame<'a> {
    fn new(parts: [&'a [u8]; 4], len: usize) -> Frame<'a> {
        Frame {
            parts,
            len,
            enc: [None, None],
        }
    }

    fn get(&mut self, resp: u8) -> Bytes {
        let i = usize::from(resp >= 3);
        let parts = self.parts;
        let len = self.len;
        self.enc
            .get_mut(i)
            .map(|slot| {
                slot.get_or_insert_with(|| {
                    // `Reply::Push` framing, written directly: no copy of the parts first.
                    let body: usize = parts.iter().take(len).map(|p| p.len() + 16).sum();
                    let mut out = Vec::with_capacity(body + 8);
                    out.push(if resp >= 3 { b'>' } else { b'*' });
                    crate::protocol::write_i64(&mut out, len as i64);
                    out.extend_from_slice(b"\r\n");
                    for p in parts.iter().take(len) {
                        encode_bulk(&mut out, p);
                    }
                    Bytes::from(out)
                })
                .clone()
            })
            .unwrap_or_default()
    }
}

/// Delivers `msg` on `channel` to this shard's subscribers (channel and matching pattern
/// subscriptions); returns how many deliveries were made. Subscribers pushed over their
/// output limit are closed.
/// Appends `frame` to every live subscriber in `subs`; returns how many got it and records
/// them in `touched` (their output limits are checked once per publish).
fn deliver(
    conns: &mut slab::Slab<Conn>,
    subs: &[usize],
    frame: &mut Frame,
    touched: &mut Vec<usize>,
) -> usize {
    let mut n = 0;
    for &idx in subs {
        if let Some(c) = conns.get_mut(idx) {
            if c.closing {
                continue;
            }
            c.push_raw(&frame.get(c.client.resp));
            n += 1;
            touched.push(idx);
        }
    }
    n
}

pub fn publish(w: &mut Worker, channel: &[u8], msg: &[u8]) -> usize {
    let mut touched: Vec<usize> = Vec::new();
    let mut count = 0;
    if let Some(subs) = w.pubsub.channels.get(channel) {
        let mut frame = Frame::new([b"message", channel, msg, b""], 3);
        count += deliver(&mut w.conns, subs, &mut frame, &mut touched);
    }
    for (pat, subs) in &w.pubsub.patterns {
        if !glob_match(pat, channel, false) {
            continue;
        }
        let mut frame = Frame::new([b"pmessage", pat, channel, msg], 4);
        count += deliver(&mut w.conns, subs, &mut frame, &mut touched);
    }
    check_limits(w, touched);
    count
}

/// Publishes the keyspace notifications this shard's pass produced (see `shard::notify`):
/// here at once, then as one job per other shard. Jobs between two shards keep their order,
/// so each key's events (all made on the key's shard) arrive in the order of its writes.
pub fn publish_notes(w: &mut Worker) {
    crate::shard::notify::drain_lost(&mut w.eng.shard);
    if w.eng.shard.notes.out.is_empty() {
        return;
    }
    let notes = std::sync::Arc::new(std::mem::take(&mut w.eng.shard.notes.out));
    for (ch, msg) in notes.iter() {
        publish(w, ch, msg);
    }
    let me = w.eng.id;
    for s in (0..w.eng.nshards).filter(|&s| s != me) {
        let notes = notes.clone();
        w.eng.post(
            s,
            super::worker::front(move |tw: &mut Worker| {
                for (ch, msg) in notes.iter() {
                    publish(tw, ch, msg);
                }
            }),
        );
    }
}

/// SPUBLISH on this shard: `smessage` frames to the local subscribers of the shard channel
/// (patterns do not apply); returns how many were reached.
pub fn spublish(w: &mut Worker, channel: &[u8], msg: &[u8]) -> usize {
    let mut touched: Vec<usize> = Vec::new();
    let mut count = 0;
    if let Some(subs) = w.pubsub.shard.get(channel) {
        let mut frame = Frame::new([b"smessage", channel, msg, b""], 3);
        count += deliver(&mut w.conns, subs, &mut frame, &mut touched);
    }
    check_limits(w, touched);
    count
}

/// After a delivery: closes the subscribers it pushed over their output limits and marks
/// the others for sending.
fn check_limits(w: &mut Worker, mut touched: Vec<usize>) {
    if touched.is_empty() {
        return;
    }
    touched.sort_unstable();
    touched.dedup();
    let limits = Limits::load(w);
    let now = Instant::now();
    for idx in touched {
        let over = w
            .conns
            .get_mut(idx)
            .is_some_and(|c| limits.exceeded(c, now));
        if over {
            close_slow(w, idx);
        } else {
            w.mark_dirty(idx);
        }
    }
}

/// The pubsub class's output limits, read once per use.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub hard: u64,
    pub soft: u64,
    pub soft_secs: u64,
}

impl Limits {
    pub fn load(w: &Worker) -> Limits {
        Limits::of(&w.eng.shared.tun.pubsub_obuf_limit)
    }

    /// One class's limits (`Tunables::pubsub_obuf_limit` or `normal_obuf_limit`).
    pub fn of(class: &[std::sync::atomic::AtomicU64; 3]) -> Limits {
        let [h, s, t] = class;
        Limits {
            hard: h.load(Ordering::Relaxed),
            soft: s.load(Ordering::Relaxed),
            soft_secs: t.load(Ordering::Relaxed),
        }
    }

    /// Whether a subscribed connection must be closed now; tracks when the soft limit was
    /// first reached (and forgets it once below), as Redis's `checkClientOutputBufferLimits`.
    pub fn exceeded(&self, c: &mut Conn, now: Instant) -> bool {
        if !c.subs.active() {
            c.soft_since = None;
            return false;
        }
        self.over(c, now)
    }

    /// Whether any limit is set at all (the normal class has none by default).
    pub fn any(&self) -> bool {
        self.hard > 0 || self.soft > 0
    }

    /// The limit test itself, whatever the client's class.
    pub fn over(&self, c: &mut Conn, now: Instant) -> bool {
        let used = c.pending_output() as u64;
        if self.hard > 0 && used >= self.hard {
            return true;
        }
        if self.soft > 0 && used >= self.soft {
            match c.soft_since {
                None => {
                    c.soft_since = Some(now);
                    false
                }
                Some(t) => now.saturating_duration_since(t) > Duration::from_secs(self.soft_secs),
            }
        } else {
            c.soft_since = None;
            false
        }
    }
}

/// After the kernel took some output: a client back under its soft limit starts over.
pub fn on_sent(c: &mut Conn, tun: &crate::config::Tunables) {
    if c.soft_since.is_some() {
        let class = if c.subs.active() {
            &tun.pubsub_obuf_limit
        } else {
            &tun.normal_obuf_limit
        };
        let [_, soft, _] = class;
        if (c.pending_output() as u64) < soft.load(Ordering::Relaxed) {
            c.soft_since = None;
        }
    }
}

pub fn close_slow(w: &mut Worker, idx: usize) {
    if let Some(c) = w.conns.get(idx) {
        crate::log::warning(&format!(
            "Client id={} addr={} closed for overcoming of output buffer limits.",
            c.client.id, c.client.addr
        ));
    }
    w.close_conn(idx);
}

/// Periodic check (once a second) of clients sitting over a soft limit without new output
/// arriving to trigger the check.
pub fn sweep(w: &mut Worker) {
    let limits = Limits::load(w);
    let normal = Limits::of(&w.eng.shared.tun.normal_obuf_limit);
    let now = Instant::now();
    // Subscribers by the pubsub class, other clients by the normal class.
    let slow: Vec<usize> = w
        .conns
        .iter_mut()
        .filter(|(_, c)| c.soft_since.is_some())
        .filter_map(|(i, c)| {
            let over = if c.subs.active() {
                limits.exceeded(c, now)
            } else {
                normal.over(c, now)
            };
            over.then_some(i)
        })
        .collect();
    for idx in slow {
        close_slow(w, idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::connection::ClientInfo;

    #[test]
    fn frames_per_protocol() {
        let mut f = Frame::new([b"message", b"ch", b"hi", b""], 3);
        assert_eq!(
            &f.get(2)[..],
            b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        );
        assert_eq!(
            &f.get(3)[..],
            b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n"
        );
    }

    #[test]
    fn limits_hard_and_soft() {
        let mut c = Conn::new(-1, 0, ClientInfo::new(1, String::new(), String::new()));
        let l = Limits {
            hard: 100,
            soft: 10,
            soft_secs: 1,
        };
        let t0 = Instant::now();
        c.out.extend_from_slice(&[0; 50]);
        // Not subscribed: the pubsub class does not apply.
        assert!(!l.exceeded(&mut c, t0));
        c.subs.channels.insert(Bytes::from_static(b"c"), 1);
        assert!(!l.exceeded(&mut c, t0));
        assert!(!l.exceeded(&mut c, t0 + Duration::from_millis(900)));
        assert!(l.exceeded(&mut c, t0 + Duration::from_millis(1100)));
        c.out.clear();
        assert!(!l.exceeded(&mut c, t0 + Duration::from_secs(5)));
        assert!(c.soft_since.is_none());
        c.out.extend_from_slice(&[0; 100]);
        assert!(l.exceeded(&mut c, t0));
    }
}
