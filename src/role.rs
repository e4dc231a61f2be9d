//! This server's replication role, process-wide: written by `repl` when it starts or stops
//! following a master, read lock-free by whoever needs it (the log line's role letter,
//! eviction, which replicas leave to their master, HELLO's `role`). Any thread.

use std::sync::atomic::{AtomicBool, Ordering};

/// Following a master.
static REPLICA: AtomicBool = AtomicBool::new(false);

/// Whether this server is a replica now.
pub fn is_replica() -> bool {
    REPLICA.load(Ordering::Relaxed)
}

/// Records the role (`repl` only).
pub fn set_replica(on: bool) {
    REPLICA.store(on, Ordering::Relaxed);
}

/// HELLO's `role`.
pub fn word() -> &'static str {
    if is_replica() {
        "replica"
    } else {
        "master"
    }
}
