//! The per-core runtime: our own small io_uring event loop (see DESIGN.md, "Networking and
//! io_uring"). Everything `unsafe` in shardis lives in this module.
//!
//! - `ring`: ring setup with SINGLE_ISSUER + DEFER_TASKRUN and fallbacks, the table of
//!   in-flight operations that owns their buffers (accept, recv, send, connect, timeout,
//!   eventfd read, file read/write/fsync), one `io_uring_enter` per pass.
//! - `bufring`: the provided-buffer pool multishot receives fill (lent to the loop for one
//!   pass, then handed back to the kernel).
//! - `mesh`: lock-free SPSC queues between shards and eventfd wakeups.
//! - `timer`: deadlines (a min-heap) checked every pass; the nearest one is armed as a single
//!   io_uring timeout so a sleeping loop wakes for it.
//! - `clock`: TSC ticks for cheap per-command timing.
//! - `alloc`: the counting global allocator behind INFO's used_memory.
//! - `prefetch`: the software prefetch hint behind the keyspace look-ahead.
//! - `sys`: the few raw socket and rlimit calls we need.

pub mod alloc;
pub mod bufring;
pub mod clock;
pub mod mesh;
pub mod prefetch;
pub mod ring;
pub mod sys;
pub mod timer;
