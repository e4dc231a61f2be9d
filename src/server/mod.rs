//! Per-core networking: `run()` binds one SO_REUSEPORT listener per shard, builds the shard
//! mesh, starts one pinned thread per shard running its `Worker` loop, and waits for SIGINT /
//! SIGTERM (or SHUTDOWN) to stop them all. Runs on the main thread.

pub mod connection;
pub mod lookahead;
pub mod metrics;
pub mod pubsub;
pub mod worker;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::config::{Config, Tunables};
use crate::runtime::{mesh, sys};
use worker::{Msg, Worker};

/// State every shard can read: configuration, tunables, server identity, global counters.
pub struct Shared {
    pub cfg: Config,
    pub tun: Tunables,
    pub run_id: String,
    pub started: Instant,
    /// Heap in use when the shards began serving (INFO used_memory_startup): each shard
    /// raises it to what it sees as it enters its loop.
    pub startup_memory: AtomicU64,
    pub clients: AtomicUsize,
    /// Clients waiting in a blocking command (INFO blocked_clients).
    pub blocked_clients: AtomicUsize,
    pub next_client_id: AtomicU64,
    pub next_tx_id: AtomicU64,
    pub shutdown: AtomicBool,
    /// The port actually bound (differs from cfg.port when it was 0).
    pub port: u16,
    /// What each shard publishes for the others' eviction decisions (indexed by shard).
    pub mem: Vec<ShardMem>,
}

/// One shard's memory figures as the other shards see them (`Worker::memory_check`):
/// written only by that shard, read by all; stale by at most one active-expire tick
/// (100 ms), or less while memory is over the limit (then every command refreshes them).
#[repr(align(128))]
#[derive(Default)]
pub struct ShardMem {
    /// Spare arena bytes (heap held by the shard's arenas that new entries reuse).
    pub spare: AtomicU64,
    /// Keys the shard could evict under the current policy.
    pub candidates: AtomicU64,
    /// Transient heap: the shard's connection buffers and worker scratch (not data, so
    /// eviction does not count it; see `Worker::memory_check`).
    pub transient: AtomicU64,
    /// Another shard asked this one to evict and the request has not run yet.
    pub nudged: AtomicBool,
}

fn run_id() -> String {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ ((std::process::id() as u64) << 32);
    let mut s = String::with_capacity(40);
    for _ in 0..40 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        s.push(char::from_digit((seed % 16) as u32, 16).unwrap_or('0'));
    }
    s
}

/// Memory each ring may lock (SQ + CQ rings), to check RLIMIT_MEMLOCK at startup.
fn memlock_needed(cfg: &Config) -> u64 {
    (cfg.ring_entries as u64 * (64 + 4 * 16) + 64 * 1024) * cfg.shards as u64
}

/// Starts the server and blocks until it stops. Errors are startup errors (exit code 1).
pub fn run(cfg: Config) -> Result<(), String> {
    crate::log::set_level(&cfg.loglevel);
    // A bug that panics a shard must not leave a half-alive server behind: report and stop
    // the whole process, as Redis does on an assertion failure.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        crate::log::warning("=== shardis BUG: a shard thread panicked; stopping the server ===");
        std::process::abort();
    }));
    sys::block_signals();
    crate::runtime::clock::calibrate();
    let want = memlock_needed(&cfg);
    let got = sys::raise_memlock(want.max(64 << 20));
    sys::raise_nofile(cfg.maxclients as u64 + 64 + cfg.shards as u64 * 4);

    let addr = SocketAddr::new(cfg.bind, cfg.port);
    if cfg.port != 0 {
        sys::check_port_free(addr).map_err(|e| {
            format!(
                "Could not create server TCP listening socket {addr}: bind: {}\nFailed listening on port {} (TCP), aborting.",
                os_text(&e),
                cfg.port
            )
        })?;
    }
    let mut listeners = Vec::with_capacity(cfg.shards);
    let mut port = cfg.port;
    for i in 0..cfg.shards {
        let a = SocketAddr::new(cfg.bind, port);
        let fd = sys::listen_reuseport(a, cfg.tcp_backlog).map_err(|e| {
            for &fd in &listeners {
                sys::close(fd);
            }
            format!("Could not create server TCP listening socket {addr}: {e}")
        })?;
        if i == 0 && port == 0 {
            port = sys::addrs(fd).1.map(|a| a.port()).unwrap_or(0);
        }
        listeners.push(fd);
    }

    let shared = Arc::new(Shared {
        tun: Tunables::new(&cfg),
        run_id: run_id(),
        started: Instant::now(),
        startup_memory: AtomicU64::new(0),
        clients: AtomicUsize::new(0),
        blocked_clients: AtomicUsize::new(0),
        next_client_id: AtomicU64::new(1),
        next_tx_id: AtomicU64::new(1),
        shutdown: AtomicBool::new(false),
        port,
        mem: (0..cfg.shards).map(|_| ShardMem::default()).collect(),
        cfg,
    });
    let cfg = &shared.cfg;
    let endpoints = mesh::mesh::<Msg>(cfg.shards, 4096).map_err(|e| format!("mesh: {e}"))?;
    let wakers: Vec<_> = endpoints.iter().map(|e| e.waker().clone()).collect();

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String, String>>();
    // SCHED_BATCH when shards share a core (measured: fewer switches per cross-shard hop,
    // 3-8% less CPU per request at pipeline 1 with two shards on one core; no gain alone).
    let distinct = {
        let mut c = cfg.cores.clone();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    let batch = cfg
        .sched_batch
        .unwrap_or(!cfg.cores.is_empty() && cfg.shards > distinct);
    let mut threads = Vec::new();
    for ((i, ep), fd) in endpoints.into_iter().enumerate().zip(listeners) {
        let shared = shared.clone();
        let core = cfg.cores.get(i % cfg.cores.len().max(1)).copied();
        let ready = ready_tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("shard-{i}"))
            .spawn(move || {
                if let Some(c) = core {
                    if !core_affinity::set_for_current(core_affinity::CoreId { id: c }) {
                        crate::log::warning(&format!("shard {i}: could not pin to core {c}"));
                    }
                }
                if batch {
                    if let Err(e) = crate::runtime::sys::set_sched_batch() {
                        crate::log::warning(&format!("shard {i}: SCHED_BATCH refused: {e}"));
                    }
                }
                match Worker::new(i, shared, ep, fd) {
                    Ok(mut w) => {
                        let _ = ready.send(Ok(w.ring_setup()));
                        w.run();
                    }
                    Err(e) => {
                        let (cur, _) = sys::memlock_limit();
                        let _ = ready.send(Err(format!(
                            "shard {i}: io_uring setup failed: {e}. The locked-memory limit is {} KiB \
                             and shardis needs about {} KiB for its rings: raise it with \
                             `ulimit -l unlimited` (or LimitMEMLOCK=infinity in a systemd unit), \
                             or lower --ring-entries.",
                            cur / 1024,
                            want / 1024
                        )));
                        sys::close(fd);
                    }
                }
            })
            .map_err(|e| format!("cannot start shard thread: {e}"))?;
        threads.push(t);
    }
    drop(ready_tx);
    let mut setup = String::new();
    for _ in 0..cfg.shards {
        match ready_rx.recv() {
            Ok(Ok(s)) => setup = s,
            Ok(Err(e)) => {
                shared.shutdown.store(true, Ordering::SeqCst);
                wakers.iter().for_each(|w| w.wake());
                for t in threads {
                    let _ = t.join();
                }
                return Err(e);
            }
            Err(_) => return Err("a shard thread exited during startup".into()),
        }
    }
    if got < want {
        crate::log::warning(&format!(
            "locked-memory limit is {} KiB, below the {} KiB the rings may need; if io_uring \
             fails under load, raise it with `ulimit -l unlimited`",
            got / 1024,
            want / 1024
        ));
    }
    let cores: Vec<String> = cfg
        .cores
        .iter()
        .take(cfg.shards)
        .map(|c| c.to_string())
        .collect();
    crate::log::notice(&format!(
        "shardis {} started: pid={} port={} bind={} shards={} cores={} io_uring={} sched={}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        port,
        cfg.bind,
        cfg.shards,
        cores.join(","),
        setup,
        if batch { "batch" } else { "other" }
    ));
    crate::log::notice("Ready to accept connections tcp");

    // Signals arrive here (blocked in every thread, waited for in this one).
    let sig_shared = shared.clone();
    let sig_wakers = wakers.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let sig = sys::wait_signal();
            crate::log::notice(&format!(
                "Received {}, scheduling shutdown...",
                if sig == libc::SIGINT {
                    "SIGINT"
                } else {
                    "SIGTERM"
                }
            ));
            sig_shared.shutdown.store(true, Ordering::SeqCst);
            sig_wakers.iter().for_each(|w| w.wake());
        })
        .map_err(|e| format!("cannot start signal thread: {e}"))?;

    for t in threads {
        let _ = t.join();
    }
    crate::log::notice("shardis is now ready to exit, bye bye...");
    Ok(())
}

/// An OS error as strerror(3) words it ("Address already in use"), without Rust's
/// " (os error 98)" suffix, as Redis prints it.
fn os_text(e: &std::io::Error) -> String {
    let t = e.to_string();
    match t.find(" (os error") {
        Some(i) => t[..i].to_string(),
        None => t,
    }
}
