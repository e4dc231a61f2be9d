//! Client-side caching (CLIENT TRACKING), the key owner's half: which clients read which keys
//! of this shard, and which BCAST prefixes each client follows. A write (`Shard::touch`,
//! expiry, eviction) turns into invalidations queued for the clients' shards; the worker
//! hands them over once per loop pass (`server::tracking::deliver`). As Redis's tracking
//! table, entries name the key only (not its database) and are dropped once invalidated.
//! Runs on the shard's own thread; `None` in `Shard::tracking` until a tracking client reads
//! a key here or registers a prefix, so other servers pay one `Option` test per write.

use ahash::AHashMap;
use bytes::Bytes;

/// A tracking client, wherever its connection lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientRef {
    pub id: u64,
    pub shard: usize,
    pub token: u64,
}

/// One BCAST prefix and the clients following it here, with the keys under it written
/// since the last delivery (and who wrote each, for NOLOOP).
pub struct Prefix {
    pub prefix: Bytes,
    pub clients: Vec<ClientRef>,
    pub keys: Vec<(Bytes, u64)>,
}

/// An invalidation on its way to a client's shard.
pub enum Inval {
    /// A key the client read changed (`writer`: the client that changed it, 0 if unknown).
    Key {
        to: ClientRef,
        key: Bytes,
        writer: u64,
    },
    /// Keys under one of the client's BCAST prefixes changed this pass.
    Bcast {
        to: ClientRef,
        keys: Vec<(Bytes, u64)>,
    },
}

#[derive(Default)]
pub struct TrackingTable {
    keys: AHashMap<Bytes, Vec<ClientRef>>,
    prefixes: Vec<Prefix>,
    /// Invalidations made since the last delivery.
    pub out: Vec<Inval>,
    /// The client whose command runs now (NOLOOP), 0 when unknown (expiry, eviction).
    pub writer: u64,
    /// A FLUSHDB/FLUSHALL ran: this shard's tracking clients get a null invalidation.
    pub flushed: bool,
}

impl TrackingTable {
    /// Remembers that `c` read `key` (one entry per client).
    pub fn remember(&mut self, key: &[u8], c: ClientRef) {
        match self.keys.get_mut(key) {
            Some(v) => {
                if !v.iter().any(|x| x.id == c.id) {
                    v.push(c);
                }
            }
            None => {
                self.keys.insert(Bytes::copy_from_slice(key), vec![c]);
            }
        }
    }

    /// `key` changed: every client that read it gets one invalidation, and the entry goes
    /// (until read again); BCAST prefixes covering it collect it for this pass.
    pub fn touched(&mut self, key: &[u8]) {
        let writer = self.writer;
        if let Some(clients) = self.keys.remove(key) {
            for to in clients {
                self.out.push(Inval::Key {
                    to,
                    key: Bytes::copy_from_slice(key),
                    writer,
                });
            }
        }
        for p in &mut self.prefixes {
            if key.starts_with(&p.prefix) && !p.keys.iter().any(|(k, _)| k.as_ref() == key) {
                p.keys.push((Bytes::copy_from_slice(key), writer));
            }
        }
    }

    /// Moves the prefixes' collected keys to `out`, one message per client and prefix.
    pub fn flush_prefixes(&mut self) {
        for p in &mut self.prefixes {
            if p.keys.is_empty() {
                continue;
            }
            // Redis keeps them in a radix tree: in byte order.
            let mut keys = std::mem::take(&mut p.keys);
            keys.sort_by(|a, b| a.0.cmp(&b.0));
            for &to in &p.clients {
                self.out.push(Inval::Bcast {
                    to,
                    keys: keys.clone(),
                });
            }
        }
    }

    /// Something is waiting to be delivered.
    pub fn pending(&self) -> bool {
        self.flushed || !self.out.is_empty() || self.prefixes.iter().any(|p| !p.keys.is_empty())
    }

    /// FLUSHALL / FLUSHDB: every client is told to drop everything (by its own shard), so
    /// the entries here mean nothing any more.
    pub fn clear_keys(&mut self) {
        self.keys = AHashMap::new();
    }

    pub fn add_prefix(&mut self, prefix: Bytes, c: ClientRef) {
        match self.prefixes.iter_mut().find(|p| p.prefix == prefix) {
            Some(p) => {
                if !p.clients.iter().any(|x| x.id == c.id) {
                    p.clients.push(c);
                }
            }
            None => {
                // In byte order, as Redis's prefix tree sends them.
                let at = self.prefixes.partition_point(|p| p.prefix < prefix);
                self.prefixes.insert(
                    at,
                    Prefix {
                        prefix,
                        clients: vec![c],
                        keys: Vec::new(),
                    },
                );
            }
        }
    }

    /// Forgets client `id`'s prefixes (tracking off, disconnect).
    pub fn drop_client_prefixes(&mut self, id: u64) {
        for p in &mut self.prefixes {
            p.clients.retain(|c| c.id != id);
        }
        self.prefixes.retain(|p| !p.clients.is_empty());
    }

    /// Keys remembered here (INFO `tracking_total_keys`).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Client entries over every remembered key (INFO `tracking_total_items`).
    pub fn items(&self) -> usize {
        self.keys.values().map(Vec::len).sum()
    }

    /// Prefixes registered here (INFO `tracking_total_prefixes`).
    pub fn prefix_count(&self) -> usize {
        self.prefixes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: u64) -> ClientRef {
        ClientRef {
            id,
            shard: 0,
            token: id,
        }
    }

    #[test]
    fn one_invalidation_per_read_and_prefixes_collect() {
        let mut t = TrackingTable::default();
        t.remember(b"k", c(1));
        t.remember(b"k", c(1));
        t.remember(b"k", c(2));
        t.touched(b"k");
        assert_eq!(t.out.len(), 2);
        t.out.clear();
        t.touched(b"k");
        assert!(t.out.is_empty(), "invalidated once until read again");
        t.add_prefix(Bytes::from_static(b"p:"), c(3));
        t.touched(b"p:1");
        t.touched(b"p:1");
        t.touched(b"q");
        assert!(t.pending());
        t.flush_prefixes();
        assert!(matches!(&t.out[..], [Inval::Bcast { keys, .. }] if keys.len() == 1));
        t.drop_client_prefixes(3);
        assert_eq!(t.prefix_count(), 0);
    }
}
