//! Client-side caching (CLIENT TRACKING), the connection's half: each tracking client's mode
//! (`ClientTrack`), remembering the keys of its reads on the shards that own them, and
//! turning the owners' invalidations (`shard::tracking`) into Redis's frames on the client's
//! shard: `>2 invalidate [keys]` in RESP3, or a `message` on `__redis__:invalidate` to a
//! RESP2 redirect client in Pub/Sub mode, `tracking-redir-broken` when the redirect client
//! is gone, and a null invalidation after FLUSHALL/FLUSHDB. Runs on each shard's thread.
//!
//! A read is remembered on the key's owner atomically with the read when it runs inline on
//! the client's shard; otherwise a remember job is sent to each owner before the command and
//! again after it (same queue, so around it): a write between the two invalidates the
//! first entry and the second one tracks the value the client got, so no change is missed
//! (at worst one extra invalidation).

use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::worker::Worker;
use crate::commands::table::{table, CommandSpec, READONLY};
use crate::engine::Engine;
use crate::engine::Msg;
use crate::shard::tracking::{ClientRef, Inval};

/// Clients with tracking on, in the whole server (INFO `tracking_clients`).
static CLIENTS: AtomicUsize = AtomicUsize::new(0);

pub fn clients() -> usize {
    CLIENTS.load(Ordering::Relaxed)
}

/// One client's CLIENT TRACKING settings.
#[derive(Debug, Default, Clone)]
pub struct ClientTrack {
    pub on: bool,
    pub bcast: bool,
    pub optin: bool,
    pub optout: bool,
    pub noloop: bool,
    /// CLIENT CACHING YES / NO, for the next command.
    pub caching: Option<bool>,
    /// REDIRECT client id (0: none) and where that client lives (shard, token).
    pub redirect: u64,
    pub redir_at: Option<(usize, u64)>,
    /// The redirect client went away (`tracking-redir-broken` was sent).
    pub broken: bool,
    pub prefixes: Vec<Bytes>,
}

impl ClientTrack {
    /// The keys of the next read are remembered (default mode, OPTIN after CACHING YES,
    /// OPTOUT unless CACHING NO).
    pub fn wants_keys(&self) -> bool {
        self.on
            && !self.bcast
            && if self.optin {
                self.caching == Some(true)
            } else if self.optout {
                self.caching != Some(false)
            } else {
                true
            }
    }
}

/// Counts a client turning tracking on (`true`) or off.
pub fn count(on: bool) {
    if on {
        CLIENTS.fetch_add(1, Ordering::Relaxed);
    } else {
        let _ = CLIENTS.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// The keys a command run by a tracking client makes it remember: a read's keys, or the
/// reads queued in the transaction an EXEC runs.
pub fn keys_to_remember(w: &Worker, idx: usize, spec: &CommandSpec, argv: &[Bytes]) -> Vec<Bytes> {
    let keys_of = |spec: &CommandSpec, argv: &[Bytes]| -> Vec<Bytes> {
        spec.keys
            .key_positions(argv)
            .filter_map(|i| argv.get(i).cloned())
            .collect()
    };
    if spec.has(READONLY) {
        return keys_of(spec, argv);
    }
    if spec.name == "exec" {
        let t = table();
        let queued = w
            .conns
            .get(idx)
            .and_then(|c| c.tx.as_ref())
            .and_then(|t| t.queue.as_ref());
        if let Some(q) = queued {
            return q
                .iter()
                .filter_map(|q| t.get(q.id).map(|s| (s, &q.argv)))
                .filter(|(s, _)| s.has(READONLY))
                .flat_map(|(s, a)| keys_of(s, a))
                .collect();
        }
    }
    Vec::new()
}

/// This connection as the owners' tables name it.
pub fn client_ref(w: &Worker, idx: usize) -> Option<ClientRef> {
    let c = w.conns.get(idx)?;
    Some(ClientRef {
        id: c.client.id,
        shard: w.eng.id,
        token: w.conn_token(idx)?,
    })
}

/// Remembers `keys` for the client: at once for this shard's keys, by a job for the others
/// (sent before the command's own jobs, so it is registered before the read).
pub fn remember_now(w: &mut Worker, c: ClientRef, keys: &[Bytes]) {
    let n = w.eng.nshards;
    let mut remote: Vec<Vec<Bytes>> = vec![Vec::new(); n];
    for k in keys {
        let s = crate::shard::route::shard_of(k, n);
        if s == w.eng.id {
            w.eng.shard.tracking_mut().remember(k, c);
        } else if let Some(v) = remote.get_mut(s) {
            v.push(k.clone());
        }
    }
    post_remember(w, c, remote);
}

/// Remembers `keys` by a job on each owner (this shard included), queued after the
/// command's own jobs.
pub fn remember_later(w: &mut Worker, c: ClientRef, keys: &[Bytes]) {
    let n = w.eng.nshards;
    let mut by: Vec<Vec<Bytes>> = vec![Vec::new(); n];
    for k in keys {
        if let Some(v) = by.get_mut(crate::shard::route::shard_of(k, n)) {
            v.push(k.clone());
        }
    }
    post_remember(w, c, by);
}

fn post_remember(w: &mut Worker, c: ClientRef, by: Vec<Vec<Bytes>>) {
    for (s, keys) in by.into_iter().enumerate() {
        if keys.is_empty() {
            continue;
        }
        w.eng.post(
            s,
            Msg::Work(Box::new(move |tw: &mut Engine| {
                let t = tw.shard.tracking_mut();
                for k in &keys {
                    t.remember(k, c);
                }
            })),
        );
    }
}

/// Registers (`add`) or drops a client's BCAST prefixes on every shard.
pub fn broadcast_prefixes(w: &mut Worker, c: ClientRef, prefixes: Vec<Bytes>, add: bool) {
    for s in 0..w.eng.nshards {
        let prefixes = prefixes.clone();
        let job = move |tw: &mut Engine| {
            let t = tw.shard.tracking_mut();
            if add {
                for p in prefixes {
                    t.add_prefix(p, c);
                }
            } else {
                t.drop_client_prefixes(c.id);
            }
        };
        if s == w.eng.id {
            job(&mut w.eng);
        } else {
            w.eng.post(s, Msg::Control(Box::new(job)));
        }
    }
}

/// Tracking off (CLIENT TRACKING OFF, RESET, disconnect): prefixes go everywhere; keys
/// remembered for the client stay until invalidated and are skipped then (as in Redis).
pub fn disable(w: &mut Worker, idx: usize) {
    let Some(c) = client_ref(w, idx) else {
        return;
    };
    let Some(t) = w.conns.get_mut(idx).and_then(|c| c.track.as_mut()) else {
        return;
    };
    if !t.on {
        return;
    }
    let bcast = t.bcast;
    **t = ClientTrack::default();
    count(false);
    if bcast {
        broadcast_prefixes(w, c, Vec::new(), false);
    }
}

/// Once per loop pass (`pass_end`), and after an inline command: turns this shard's
/// collected invalidations into frames, here for its own clients and as one job per other
/// shard. BCAST prefixes collect a whole pass (Redis sends them once per event loop turn).
pub fn deliver(w: &mut Worker, pass_end: bool) {
    let shard = &mut w.eng.shard;
    let Some(t) = shard.tracking.as_mut() else {
        return;
    };
    let writer = std::mem::take(&mut t.writer);
    for d in shard.dbs.iter_mut() {
        if let Some(lost) = d.track_lost.as_mut() {
            for k in lost.drain(..) {
                t.touched(&k);
            }
        }
    }
    t.writer = writer;
    if !t.pending() {
        return;
    }
    if pass_end {
        t.flush_prefixes();
    }
    let flushed = std::mem::take(&mut t.flushed);
    let out = std::mem::take(&mut t.out);
    if flushed {
        flush_here(w);
    }
    if out.is_empty() {
        return;
    }
    let mut by: Vec<Vec<Inval>> = (0..w.eng.nshards).map(|_| Vec::new()).collect();
    for i in out {
        let s = match &i {
            Inval::Key { to, .. } | Inval::Bcast { to, .. } => to.shard,
        };
        if let Some(v) = by.get_mut(s) {
            v.push(i);
        }
    }
    for (s, invals) in by.into_iter().enumerate() {
        if invals.is_empty() {
            continue;
        }
        if s == w.eng.id {
            deliver_here(w, invals);
        } else {
            w.eng.post(
                s,
                super::worker::front(move |tw: &mut Worker| deliver_here(tw, invals)),
            );
        }
    }
}

/// Invalidations for clients of this shard.
fn deliver_here(w: &mut Worker, invals: Vec<Inval>) {
    for inv in invals {
        let (to, keys, bcast) = match inv {
            Inval::Key { to, key, writer } => (to, vec![(key, writer)], false),
            Inval::Bcast { to, keys } => (to, keys, true),
        };
        let Some(idx) = w.conn_by_token(to.token) else {
            continue;
        };
        let Some(c) = w.conns.get(idx) else { continue };
        let Some(t) = c.track.as_ref() else { continue };
        if c.client.id != to.id || !t.on || t.bcast != bcast {
            continue;
        }
        let noloop = t.noloop;
        let keys: Vec<Bytes> = keys
            .into_iter()
            .filter(|(_, writer)| !(noloop && *writer == to.id))
            .map(|(k, _)| k)
            .collect();
        if !keys.is_empty() {
            send(w, idx, Some(keys));
        }
    }
}

/// After FLUSHALL/FLUSHDB: a null invalidation to every tracking client of this shard.
fn flush_here(w: &mut Worker) {
    let idxs: Vec<usize> = w
        .conns
        .iter()
        .filter(|(_, c)| c.track.as_ref().is_some_and(|t| t.on))
        .map(|(i, _)| i)
        .collect();
    for idx in idxs {
        send(w, idx, None);
    }
}

/// The invalidation's value: the keys as an array, or null (flush).
fn body(keys: &Option<Vec<Bytes>>, resp3: bool, out: &mut Vec<u8>) {
    use crate::protocol::reply::Reply;
    match keys {
        Some(keys) => Reply::Array(keys.iter().cloned().map(Reply::Bulk).collect()).encode(2, out),
        None if resp3 => out.extend_from_slice(b"_\r\n"),
        None => out.extend_from_slice(b"$-1\r\n"),
    }
}

/// Writes one invalidation to connection `idx` as Redis's `sendTrackingMessage` does:
/// a push in RESP3, a Pub/Sub message to a RESP2 redirect client that is subscribed to
/// something, nothing otherwise. Pushes pass CLIENT REPLY OFF, as in Redis.
fn write_frame(w: &mut Worker, idx: usize, keys: &Option<Vec<Bytes>>, redirected: bool) {
    let Some(c) = w.conns.get_mut(idx) else {
        return;
    };
    let mut f = Vec::new();
    if c.client.resp >= 3 {
        f.extend_from_slice(b">2\r\n$10\r\ninvalidate\r\n");
        body(keys, true, &mut f);
    } else if redirected && c.subs.active() {
        f.extend_from_slice(b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n");
        body(keys, false, &mut f);
    } else {
        return;
    }
    c.push_raw(&f);
    w.mark_dirty(idx);
}

/// Sends an invalidation for tracking client `idx`, through its redirect client if any.
fn send(w: &mut Worker, idx: usize, keys: Option<Vec<Bytes>>) {
    let Some(t) = w.conns.get(idx).and_then(|c| c.track.as_ref()) else {
        return;
    };
    if t.redirect == 0 {
        write_frame(w, idx, &keys, false);
        return;
    }
    let (rid, at) = (t.redirect, t.redir_at);
    let Some(me) = client_ref(w, idx) else { return };
    let Some((shard, token)) = at else {
        broken(w, idx);
        return;
    };
    if shard == w.eng.id {
        match w
            .conn_by_token(token)
            .filter(|&r| w.conns.get(r).is_some_and(|c| c.client.id == rid))
        {
            Some(r) => write_frame(w, r, &keys, true),
            None => broken(w, idx),
        }
        return;
    }
    w.eng.post(
        shard,
        super::worker::front(move |tw: &mut Worker| {
            let found = tw
                .conn_by_token(token)
                .filter(|&r| tw.conns.get(r).is_some_and(|c| c.client.id == rid));
            match found {
                Some(r) => write_frame(tw, r, &keys, true),
                None => tw.eng.post(
                    me.shard,
                    super::worker::front(move |ow: &mut Worker| {
                        if let Some(i) = ow.conn_by_token(me.token) {
                            broken(ow, i);
                        }
                    }),
                ),
            }
        }),
    );
}

/// The redirect client is gone: flag it, and tell a RESP3 client.
fn broken(w: &mut Worker, idx: usize) {
    let Some(c) = w.conns.get_mut(idx) else {
        return;
    };
    let Some(t) = c.track.as_mut() else { return };
    if !t.on {
        return;
    }
    t.broken = true;
    let id = t.redirect;
    if c.client.resp >= 3 {
        let mut f = b">2\r\n$21\r\ntracking-redir-broken\r\n".to_vec();
        f.push(b':');
        f.extend_from_slice(id.to_string().as_bytes());
        f.extend_from_slice(b"\r\n");
        c.push_raw(&f);
        w.mark_dirty(idx);
    }
}
