//! `maxmemory-clients`: client eviction as Redis 7 does it. When the memory held by client
//! connections (query and output buffers, reply slots) passes the limit, the clients holding
//! the most are closed until the total is back under it. Runs on every shard in its 100 ms
//! tick (`Worker::on_timer`), never per command: each shard publishes what its clients hold
//! and its biggest evictable client (`ShardMem::clients`, `biggest_client`), reads the
//! others', and closes its own clients that are the biggest anywhere, so the biggest go
//! first across shards without the shards talking to each other (figures are at most one
//! tick old). Clients in `CLIENT NO-EVICT on` count but are never evicted; the master link
//! and replicas neither count nor are evicted, as in Redis.

use std::sync::atomic::Ordering;

use super::worker::Worker;

pub use crate::config::parse_clients_limit as parse;

/// The limit in force, in bytes (0: none): a percentage applies to `maxmemory` (none when
/// maxmemory is 0, as in Redis).
pub fn limit(w: &Worker) -> u64 {
    let tun = &w.eng.shared.tun;
    match tun.maxmemory_clients_pct.load(Ordering::Relaxed) {
        0 => tun.maxmemory_clients.load(Ordering::Relaxed),
        pct => tun.maxmemory.load(Ordering::Relaxed).saturating_mul(pct) / 100,
    }
}

/// Whether a connection counts toward the limit: normal and pub/sub clients (not the
/// master link, not replicas), `CLIENT NO-EVICT` ones included, as Redis sums them.
fn counted(c: &super::connection::Conn) -> bool {
    !c.master && !crate::repl::master::is_replica(c)
}

/// Whether a counted connection may be evicted.
fn evictable(c: &super::connection::Conn) -> bool {
    counted(c) && !c.client.no_evict
}

/// The 100 ms check: publish this shard's client memory and its biggest evictable client;
/// when the total is over the limit, evict this shard's clients that are bigger than every
/// other shard's biggest (Redis evicts the biggest clients first), until the excess is
/// freed. Shards whose clients are smaller take their turn at their next check, with the
/// figures then published.
pub fn tick(w: &mut Worker) {
    let mut mine = 0u64;
    let mut big: Vec<(usize, u64)> = Vec::new();
    for (i, c) in w.conns.iter() {
        if !counted(c) {
            continue;
        }
        let b = c.buffer_bytes() as u64;
        mine += b;
        if evictable(c) {
            big.push((i, b));
        }
    }
    let limit = limit(w);
    if limit == 0 {
        // Off: nothing published, nothing read.
        return;
    }
    big.sort_unstable_by_key(|b| std::cmp::Reverse(b.1));
    let id = w.eng.id;
    let publish = |w: &Worker, mine: u64, biggest: u64| {
        if let Some(m) = w.eng.shared.mem.get(id) {
            m.clients.store(mine, Ordering::Relaxed);
            m.biggest_client.store(biggest, Ordering::Relaxed);
        }
    };
    publish(w, mine, big.first().map_or(0, |b| b.1));
    let mut total = 0u64;
    // The biggest evictable client elsewhere, and whether that shard goes first on a tie.
    let mut rival = (0u64, false);
    for (i, m) in w.eng.shared.mem.iter().enumerate() {
        total += m.clients.load(Ordering::Relaxed);
        if i != id {
            let b = m.biggest_client.load(Ordering::Relaxed);
            if (b, i < id) > rival {
                rival = (b, i < id);
            }
        }
    }
    if total <= limit {
        return;
    }
    let mut excess = total - limit;
    let mut evicted = 0;
    for &(idx, bytes) in &big {
        let rival_first = rival.0 > bytes || (rival.0 == bytes && rival.1);
        if excess == 0 || rival_first {
            break;
        }
        if let Some(c) = w.conns.get(idx) {
            crate::log::verbose(&format!(
                "Evicting client: id={} addr={} tot-mem={bytes} (maxmemory-clients {limit})",
                c.client.id, c.client.addr
            ));
        }
        w.close_conn(idx);
        w.eng.net.evicted_clients += 1;
        excess = excess.saturating_sub(bytes);
        mine = mine.saturating_sub(bytes);
        evicted += 1;
    }
    if evicted > 0 {
        publish(w, mine, big.get(evicted).map_or(0, |b| b.1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(parse("0").unwrap(), (0, 0));
        assert_eq!(parse("1mb").unwrap(), (1 << 20, 0));
        assert_eq!(parse("10%").unwrap(), (0, 10));
        assert!(parse("x%").is_err());
        assert!(parse("200%").unwrap_err().contains("less or equal to 100"));
        assert!(parse("lots").is_err());
    }
}
