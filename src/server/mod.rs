//! Per-core networking: `run()` fits RLIMIT_NOFILE to maxclients (or maxclients to the
//! limit, as Redis's adjustOpenFilesLimit), binds one SO_REUSEPORT listener per shard per
//! `bind` address (and the `unixsocket`, on shard 0, which hands its clients round), builds
//! the shard mesh, starts one pinned thread per shard running its `Worker` loop, and waits
//! for them to stop. Runs on the main thread; a "signals" thread turns SIGINT / SIGTERM into a
//! shutdown, as SHUTDOWN does: when save rules exist, shard 0 first saves the snapshot
//! (`persist::cron`). A shard that has not stopped `SHUTDOWN_GRACE` after the shutdown began
//! (after that save) is named in the log and the process exits without it.

pub mod client_evict;
pub mod cmds;
pub mod connection;
pub mod lookahead;
pub mod metrics;
pub mod monitor;
pub mod pause;
pub mod pubsub;
pub mod tracking;
pub mod tx;
pub mod worker;

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::engine::Msg;
use crate::runtime::{mesh, sys};
pub(crate) use crate::util::os_text;
use worker::Worker;

pub use crate::engine::shared::{Event, Pulse, ShardMem, Shared};

/// Descriptors kept free beyond the fixed ones, as Redis's CONFIG_MIN_RESERVED_FDS: room for
/// accepting a connection only to refuse it (`-ERR max number of clients reached`; a
/// multishot accept takes descriptors for a whole burst before the loop sees it), the log,
/// CONFIG REWRITE's file.
pub const MIN_RESERVED_FDS: u64 = 32;

/// Descriptors each shard holds for itself: its listener, its ring and its mesh eventfd.
const FDS_PER_SHARD: u64 = 3;

/// How long the shards get to stop once a shutdown began (SIGTERM, SIGINT, SHUTDOWN). A shard
/// still busy then (in DEBUG SLEEP or another long command) is named in the log and the
/// process exits without it (exit code 1). The save before stopping (save rules, SHUTDOWN
/// SAVE) is over by then: the shards are locked from its snapshot on, so nothing is lost.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Redis's adjustOpenFilesLimit: makes RLIMIT_NOFILE hold maxclients plus the descriptors
/// the server needs for itself (what is open now, `FDS_PER_SHARD` per shard and
/// `MIN_RESERVED_FDS`), raising the soft limit up to the hard one; when that is not enough,
/// lowers `cfg.maxclients` to fit, with Redis's warnings. Returns the reserved count (the
/// descriptors that are not for clients), which CONFIG SET maxclients checks against.
fn adjust_open_files_limit(cfg: &mut Config) -> Result<u64, String> {
    // One more listener per shard for each further `bind` address (and each address's
    // `tls-port`), and the Unix socket.
    let tls = u64::from(cfg.tls.port != 0) * cfg.bind.len() as u64;
    let listeners = ((cfg.bind.len() as u64).saturating_sub(1) + tls) * cfg.shards as u64
        + u64::from(cfg.unixsocket.is_some());
    let reserved =
        sys::open_fds() + FDS_PER_SHARD * cfg.shards as u64 + listeners + MIN_RESERVED_FDS;
    let want = cfg.maxclients as u64 + reserved;
    let (cur, max) = match sys::nofile_limit() {
        Ok(l) => l,
        Err(e) => {
            let n = 1024u64.saturating_sub(reserved).max(1);
            crate::log::warning(&format!(
                "Unable to obtain the current NOFILE limit ({}), assuming 1024 and setting the \
                 max clients configuration accordingly.",
                os_text(&e)
            ));
            cfg.maxclients = cfg.maxclients.min(n as usize);
            return Ok(reserved);
        }
    };
    if cur >= want {
        return Ok(reserved);
    }
    let target = want.min(max);
    let (best, why) = if target > cur {
        match sys::set_nofile(target) {
            Ok(()) if target == want => (target, String::new()),
            Ok(()) => (target, format!("the hard limit ('ulimit -Hn') of {max}")),
            Err(e) => (cur, format!("OS error: {}", os_text(&e))),
        }
    } else {
        (cur, format!("the hard limit ('ulimit -Hn') of {max}"))
    };
    if best >= want {
        crate::log::notice(&format!(
            "Increased maximum number of open files to {want} (it was originally set to {cur})."
        ));
        return Ok(reserved);
    }
    if best <= reserved {
        return Err(format!(
            "Your current 'ulimit -n' of {cur} is not enough for the server to start. Please \
             increase your open file limit to at least {want}. Exiting."
        ));
    }
    let old = cfg.maxclients;
    cfg.maxclients = (best - reserved) as usize;
    crate::log::warning(&format!(
        "You requested maxclients of {old} requiring at least {want} max file descriptors."
    ));
    crate::log::warning(&format!(
        "Server can't set maximum open files to {want} because of {why}."
    ));
    crate::log::warning(&format!(
        "Current maximum open files is {best}. maxclients has been reduced to {} to \
         compensate for low ulimit. If you need higher maxclients increase 'ulimit -n'.",
        cfg.maxclients
    ));
    Ok(reserved)
}

/// A startup that cannot go on (a shard's ring, the data file): the shards are told to
/// stop (their go or verdict senders dropped by the caller), woken and joined; `e` is the
/// startup error.
fn abandon_start(
    shared: &Shared,
    wakers: &[Arc<mesh::Waker>],
    threads: Vec<std::thread::JoinHandle<()>>,
    e: String,
) -> Result<(), String> {
    shared.shutdown.store(true, Ordering::SeqCst);
    wakers.iter().for_each(|w| w.wake());
    for t in threads {
        let _ = t.join();
    }
    Err(e)
}

/// Memory each ring may lock (SQ + CQ rings), to check RLIMIT_MEMLOCK at startup.
fn memlock_needed(cfg: &Config) -> u64 {
    (cfg.ring_entries as u64 * (64 + 4 * 16) + 64 * 1024) * cfg.shards as u64
}

/// Starts the server and blocks until it stops. Errors are startup errors (exit code 1).
pub fn run(mut cfg: Config) -> Result<(), String> {
    if !cmds::register() {
        return Err("internal error: the command table was built before registration".into());
    }
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
    let reserved_fds = adjust_open_files_limit(&mut cfg)?;
    // Loading converts collections by the configured thresholds, as Redis's loader.
    crate::config::install_thresholds(&cfg);
    crate::persist::rdb::set_dump_compression(cfg.rdbcompression);

    // Every `bind` address, checked before anything is loaded or started. An optional
    // (`-`) address this host does not have is skipped with Redis's warning.
    let mut binds = Vec::with_capacity(cfg.bind.len());
    for &(ip, optional) in &cfg.bind {
        let addr = SocketAddr::new(ip, cfg.port);
        let free = if cfg.port != 0 {
            sys::check_port_free(addr)
        } else {
            sys::listen_reuseport(addr, 1).map(sys::close)
        };
        match free {
            Ok(()) => binds.push(ip),
            Err(e) => {
                let text = format!(
                    "Could not create server TCP listening socket {}: bind: {}",
                    show_addr(ip, cfg.port),
                    os_text(&e)
                );
                let missing = matches!(
                    e.raw_os_error(),
                    Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT)
                );
                if optional && missing {
                    crate::log::warning(&format!("Warning: {text}"));
                    continue;
                }
                return Err(format!(
                    "{text}\nFailed listening on port {} (TCP), aborting.",
                    cfg.port
                ));
            }
        }
    }
    if binds.is_empty() {
        return Err("Configured to not listen anywhere, exiting.".into());
    }
    // The RDB file is decoded before anything is bound or started: a corrupt file stops
    // the server here, with the reader's error.
    let load_start = Instant::now();
    // With `appendonly yes` the append-only files are the data set when they exist (their
    // base snapshot, then each shard's log), as Redis loads its AOF instead of the RDB.
    let aof_loaded = if cfg.appendonly {
        crate::persist::aof::load(&cfg)?
    } else {
        None
    };
    let rdb_path = match &aof_loaded {
        Some(a) => a.base.clone(),
        None => Some(std::path::PathBuf::from(&cfg.dbfilename)),
    };
    // Each shard's keys reach it through a channel: the RDB is decoded once the shards are
    // up, and each stores its keys as they come (see `persist::load::start_load`).
    let (key_txs, key_rxs): (Vec<_>, Vec<_>) = (0..cfg.shards)
        .map(|_| mpsc::channel::<Vec<crate::persist::load::KeyPart>>())
        .unzip();
    // A redis-server AOF directory comes converted: its keys, split by shard.
    let mut aof_loaded = aof_loaded;
    let mut converted_keys = 0u64;
    if let Some(keys) = aof_loaded.as_mut().and_then(|a| a.keys.take()) {
        converted_keys = keys.iter().map(Vec::len).sum::<usize>() as u64;
        for (tx, part) in key_txs.iter().zip(keys) {
            let _ = tx.send(part);
        }
    }
    let aof_seq = aof_loaded.as_ref().map(|a| a.seq);
    let mut aof_records: Vec<Vec<crate::persist::aof::Rec>> =
        aof_loaded.map(|a| a.shards).unwrap_or_default();
    aof_records.resize_with(cfg.shards, Vec::new);
    // TLS: the configuration is built (files read, settings checked) before anything is
    // bound, so a bad certificate stops the server here with the reason.
    let live = crate::tls::Live::build(cfg.tls.clone())?;
    let tls = live.server.clone();
    if tls.is_some() {
        for &ip in &binds {
            let a = SocketAddr::new(ip, cfg.tls.port);
            sys::check_port_free(a).map_err(|e| {
                format!(
                    "Could not create server TLS listening socket {}: bind: {}\nFailed listening on port {} (TLS), aborting.",
                    show_addr(ip, cfg.tls.port),
                    os_text(&e),
                    cfg.tls.port
                )
            })?;
        }
    }
    // `port 0` with a `tls-port` listens on TLS only, as Redis; `port 0` alone takes a
    // port the kernel picks (tests).
    let plain = cfg.port != 0 || tls.is_none();
    // One listener per shard per address (and per port: plain, TLS), SO_REUSEPORT; shard 0
    // also takes the Unix socket and hands its connections round.
    let mut listeners: Vec<Vec<worker::Listen>> = Vec::with_capacity(cfg.shards);
    let mut port = cfg.port;
    let close_all = |ls: &[Vec<worker::Listen>]| ls.iter().flatten().for_each(|l| sys::close(l.fd));
    for _ in 0..cfg.shards {
        let mut mine: Vec<worker::Listen> = Vec::with_capacity(2 * binds.len() + 1);
        for &ip in &binds {
            let mut wanted: Vec<(u16, bool)> = Vec::with_capacity(2);
            if plain {
                wanted.push((port, false));
            }
            if tls.is_some() {
                wanted.push((cfg.tls.port, true));
            }
            for (p, is_tls) in wanted {
                let a = SocketAddr::new(ip, if is_tls { p } else { port });
                match sys::listen_reuseport(a, cfg.tcp_backlog) {
                    Ok(fd) => {
                        if !is_tls && port == 0 {
                            port = sys::addrs(fd).1.map(|a| a.port()).unwrap_or(0);
                        }
                        mine.push(worker::Listen {
                            fd,
                            unix: false,
                            tls: is_tls,
                        });
                    }
                    Err(e) => {
                        close_all(&listeners);
                        mine.iter().for_each(|l| sys::close(l.fd));
                        return Err(format!(
                            "Could not create server {} listening socket {}: {e}",
                            if is_tls { "TLS" } else { "TCP" },
                            show_addr(ip, a.port())
                        ));
                    }
                }
            }
        }
        listeners.push(mine);
    }
    if let Some(path) = &cfg.unixsocket {
        match sys::listen_unix(path, cfg.tcp_backlog, cfg.unixsocketperm) {
            Ok(fd) => {
                if let Some(l) = listeners.first_mut() {
                    l.push(worker::Listen {
                        fd,
                        unix: true,
                        tls: false,
                    });
                }
            }
            Err(e) => {
                close_all(&listeners);
                return Err(format!("Failed opening Unix socket: bind: {}", os_text(&e)));
            }
        }
    }

    let (events, events_rx) = mpsc::channel::<Event>();
    let shared = Arc::new(Shared::new(cfg, port, events));
    if let Ok(mut t) = shared.tun.tls.lock() {
        *t = Some(live);
    }
    if shared.cfg.appendonly {
        crate::persist::aof::note_base_size(&shared.cfg, &shared.aof);
    }
    shared
        .persist
        .loaded_keys
        .store(converted_keys, Ordering::Relaxed);
    shared
        .tun
        .reserved_fds
        .store(reserved_fds, Ordering::Relaxed);
    let cfg = &shared.cfg;
    // A `replicaof` directive: a replica from the first command on.
    crate::repl::configure(cfg.replicaof.clone());
    let endpoints = mesh::mesh::<Msg>(cfg.shards, 4096).map_err(|e| format!("mesh: {e}"))?;
    let wakers: Vec<_> = endpoints.iter().map(|e| e.waker().clone()).collect();

    // Helper threads the shards spawn run on these CPUs, not on their shard's core.
    crate::runtime::sys::remember_start_affinity();
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
    // Each shard waits for its share of the loaded keys before it serves (see below).
    let mut go = Vec::new();
    // No shard serves before every shard has stored its keys.
    let loaded_all = Arc::new(std::sync::Barrier::new(cfg.shards));
    // After the load: whether it succeeded (a shard serves only then).
    let mut verdict = Vec::new();
    for ((((i, ep), fd), keys), aof_recs) in endpoints
        .into_iter()
        .enumerate()
        .zip(listeners)
        .zip(key_rxs)
        .zip(aof_records.iter_mut().map(std::mem::take))
    {
        let shared = shared.clone();
        let core = cfg.cores.get(i % cfg.cores.len().max(1)).copied();
        let ready = ready_tx.clone();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        go.push(go_tx);
        let (ok_tx, ok_rx) = mpsc::channel::<()>();
        verdict.push(ok_tx);
        let loaded_all = loaded_all.clone();
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
                let fds: Vec<RawFd> = fd.iter().map(|l| l.fd).collect();
                match Worker::new(i, shared.clone(), ep, fd) {
                    Ok(mut w) => {
                        let _ = ready.send(Ok(w.ring_setup()));
                        // The main thread records the startup heap, then lets every shard
                        // store its keys at once; dropped instead when startup failed.
                        if go_rx.recv().is_err() {
                            return;
                        }
                        for part in keys {
                            crate::persist::load::apply(&mut w.eng.shard, part);
                        }
                        crate::persist::aof::replay(&mut w.eng.shard, aof_recs);
                        loaded_all.wait();
                        let _ = ready.send(Ok(String::new()));
                        // A file that failed to load part-way: this shard never serves.
                        if ok_rx.recv().is_err() {
                            return;
                        }
                        w.run();
                        let _ = shared.events.send(Event::Exited(i));
                    }
                    Err(e) => {
                        let (cur, _) = sys::memlock_limit();
                        // Blame locked memory only for the errors it causes.
                        let why = match e.raw_os_error() {
                            Some(libc::ENOMEM) | Some(libc::EPERM) => format!(
                                "The locked-memory limit is {} KiB and shardis needs about {} KiB \
                                 for its rings: raise it with `ulimit -l unlimited` (or \
                                 LimitMEMLOCK=infinity in a systemd unit), or lower --ring-entries.",
                                cur / 1024,
                                want / 1024
                            ),
                            Some(libc::EINVAL) => format!(
                                "The kernel refused the ring's parameters (ring-entries {}, \
                                 recv-buffer {}): try smaller values (defaults 4096 and 16kb).",
                                shared.cfg.ring_entries, shared.cfg.recv_buffer
                            ),
                            _ => "See the error above.".to_string(),
                        };
                        let _ = ready.send(Err(format!(
                            "shard {i}: io_uring setup failed: {e}. {why}"
                        )));
                        fds.iter().for_each(|&f| sys::close(f));
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
                go.clear();
                return abandon_start(&shared, &wakers, threads, e);
            }
            Err(_) => return Err("a shard thread exited during startup".into()),
        }
    }
    shared
        .startup_memory
        .store(crate::runtime::alloc::used(), Ordering::Relaxed);
    for g in go.drain(..) {
        let _ = g.send(());
    }
    // The shards store their keys while the file is decoded (the sinks close when it ends;
    // without a file to read they close here).
    let loading = match &rdb_path {
        Some(p) => {
            crate::persist::load::start_load(p, cfg.shards, cfg.databases, cfg.rdbchecksum, key_txs)
        }
        None => {
            drop(key_txs);
            Ok(None)
        }
    };
    let outcome = match loading {
        Ok(Some(h)) => match h.join() {
            Ok(Ok(summary)) => Ok(Some(summary)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("the RDB loader thread panicked".to_string()),
        },
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    // With `appendonly yes` and no AOF yet, the files start now (from the loaded dump).
    let aof_seq = match (&outcome, aof_seq) {
        (Ok(_), Some(seq)) => Ok(seq),
        (Ok(loaded), None) if cfg.appendonly => crate::persist::aof::create(cfg, loaded.is_some()),
        (Ok(_), None) => Ok(0),
        (Err(e), _) => Err(e.clone()),
    };
    let summary = match (outcome, aof_seq) {
        (Ok(s), Ok(seq)) => {
            shared.aof.seq.store(seq, Ordering::Relaxed);
            s
        }
        (Err(e), _) | (_, Err(e)) => {
            verdict.clear();
            return abandon_start(&shared, &wakers, threads, e);
        }
    };
    if let Some(s) = &summary {
        let st = &shared.persist;
        st.loaded_keys.store(s.keys, Ordering::Relaxed);
        st.loaded_expired.store(s.expired, Ordering::Relaxed);
    }
    for _ in 0..cfg.shards {
        if ready_rx.recv().is_err() {
            return Err("a shard thread exited during startup".into());
        }
    }
    for v in verdict.drain(..) {
        let _ = v.send(());
    }
    if shared.persist.loaded_keys.load(Ordering::Relaxed) > 0 {
        crate::log::notice(&format!(
            "DB loaded from disk: {:.3} seconds",
            load_start.elapsed().as_secs_f64()
        ));
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
        "shardis {} started: pid={} port={}{} bind={} shards={} cores={} io_uring={} sched={}",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        if plain {
            port.to_string()
        } else {
            "none".into()
        },
        if tls.is_some() {
            format!(" tls-port={}", cfg.tls.port)
        } else {
            String::new()
        },
        binds
            .iter()
            .map(|ip| ip.to_string())
            .collect::<Vec<_>>()
            .join(","),
        cfg.shards,
        if cores.is_empty() {
            "none (not pinned)".to_string()
        } else {
            cores.join(",")
        },
        setup,
        if batch { "batch" } else { "other" }
    ));
    if plain {
        crate::log::notice("Ready to accept connections tcp");
    }
    if tls.is_some() {
        crate::log::notice("Ready to accept connections tls");
    }
    if let Some(path) = &cfg.unixsocket {
        crate::log::notice(&format!(
            "The server is now ready to accept connections at {path}"
        ));
    }
    if let Some(home) = wakers.get(crate::repl::HOME) {
        crate::repl::init(shared.clone(), home.clone());
    }
    if cfg.supervised_systemd {
        sd_notify("STATUS=Ready to accept connections\nREADY=1\n");
    }

    // Signals arrive here (blocked in every thread, waited for in this one).
    let sig_shared = shared.clone();
    let sig_wakers = wakers.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            let sig = sys::wait_signal();
            let name = if sig == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            // A second Ctrl-C means "now", as in Redis (exit code 1: not a clean stop).
            if sig == libc::SIGINT && sig_shared.signalled.swap(true, Ordering::SeqCst) {
                crate::log::warning("You insist... exiting now.");
                std::process::exit(1);
            }
            sig_shared.signalled.store(true, Ordering::SeqCst);
            crate::log::notice(&format!("Received {name}, scheduling shutdown..."));
            // shutdown-on-sigint / shutdown-on-sigterm: `default` saves when save rules
            // exist, `save` always, `nosave` never; `force` exits even if the save fails;
            // without `now` a master first waits for lagging replicas (`shutdown-timeout`).
            let tun = &sig_shared.tun;
            let flags = if sig == libc::SIGINT {
                tun.shutdown_on_sigint.load(Ordering::Relaxed)
            } else {
                tun.shutdown_on_sigterm.load(Ordering::Relaxed)
            };
            let save = flags & crate::config::SHUTDOWN_NOSAVE == 0
                && (flags & crate::config::SHUTDOWN_SAVE != 0
                    || tun.has_save_rules.load(Ordering::Relaxed));
            if save || crate::repl::shutdown::would_wait(flags) {
                // Wait for replicas and save first: shard 0 takes the request at its next
                // tick and stops every shard once that is done. The grace period starts
                // then, not now: a big save may take a while.
                sig_shared
                    .sig_shutdown
                    .store(SIG_SHUTDOWN | flags, Ordering::SeqCst);
                crate::scripting::abort_all();
                if let Some(w) = sig_wakers.first() {
                    w.wake();
                }
                continue;
            }
            sig_shared.shutdown.store(true, Ordering::SeqCst);
            // A script looping on a shard thread would keep it from ever seeing the flag.
            crate::scripting::abort_all();
            sig_wakers.iter().for_each(|w| w.wake());
            let _ = sig_shared.events.send(Event::Stop);
        })
        .map_err(|e| format!("cannot start signal thread: {e}"))?;

    wait_for_shards(&events_rx, cfg.shards, cfg.unixsocket.as_deref());
    remove_unix_socket(cfg.unixsocket.as_deref());
    for t in threads {
        let _ = t.join();
    }
    crate::log::notice("shardis is now ready to exit, bye bye...");
    Ok(())
}

/// Marks `Shared::sig_shutdown` as set (the low bits carry the signal's SHUTDOWN_* flags).
pub const SIG_SHUTDOWN: u8 = 0x80;

/// Waits until every shard's loop has returned. Once a shutdown began, a shard that has not
/// stopped within `SHUTDOWN_GRACE` (stuck in a long command: its thread only looks at the
/// shutdown flag between commands) must not keep the process alive: name it in the log and
/// exit the process with code 1.
fn wait_for_shards(events: &mpsc::Receiver<Event>, shards: usize, unixsocket: Option<&str>) {
    let mut running = vec![true; shards];
    let mut deadline: Option<Instant> = None;
    while running.contains(&true) {
        let ev = match deadline {
            None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => events.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        match ev {
            // A shard only leaves its loop on shutdown; either way the others now get the
            // grace period.
            Ok(Event::Stop) => {
                deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
            }
            Ok(Event::Exited(i)) => {
                if let Some(r) = running.get_mut(i) {
                    *r = false;
                }
                deadline.get_or_insert_with(|| Instant::now() + SHUTDOWN_GRACE);
            }
            Err(RecvTimeoutError::Timeout) => {
                for (i, _) in running.iter().enumerate().filter(|(_, r)| **r) {
                    crate::log::warning(&format!(
                        "shard {i} did not stop within {} s of the shutdown request (busy in \
                         a long command); exiting without it",
                        SHUTDOWN_GRACE.as_secs()
                    ));
                }
                remove_unix_socket(unixsocket);
                std::process::exit(1);
            }
            // Every sender gone: no shard thread is left to wait for.
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Removes the Unix socket file at shutdown, as Redis does.
fn remove_unix_socket(path: Option<&str>) {
    if let Some(p) = path {
        crate::log::notice("Removing the unix socket file.");
        let _ = std::fs::remove_file(p);
    }
}

/// An address and port as Redis's log shows them (`127.0.0.1:6379`, `::1:6379`).
fn show_addr(ip: std::net::IpAddr, port: u16) -> String {
    format!("{ip}:{port}")
}

/// Tells systemd (a `Type=notify` unit) how the server is doing: one datagram to
/// `$NOTIFY_SOCKET` (a path, or an abstract name starting with `@`), as redis-server's
/// `supervised systemd`. Without the variable, nothing is sent.
fn sd_notify(msg: &str) {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let addr = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(&path),
    };
    let sent =
        UnixDatagram::unbound().and_then(|s| addr.and_then(|a| s.send_to_addr(msg.as_bytes(), &a)));
    match sent {
        Ok(_) => crate::log::notice("Supervised by systemd. Please make sure you set appropriate values for TimeoutStartSec and TimeoutStopSec in your service unit."),
        Err(e) => crate::log::warning(&format!("systemd supervision error: sd_notify to {path}: {e}")),
    }
}
