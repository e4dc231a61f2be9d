//! The per-core runtime: our own small io_uring event loop (see DESIGN.md, "Networking and
//! io_uring"). Everything `unsafe` in shardis lives in this module.
//!
//! - `ring`: ring setup with SINGLE_ISSUER + DEFER_TASKRUN and fallbacks, the table of
//!   in-flight operations that owns their buffers, one `io_uring_enter` per pass.
//! - `mesh`: lock-free SPSC queues between shards and eventfd wakeups.
//! - `timer`: deadlines checked every pass.
//! - `sys`: the few raw socket and rlimit calls we need.
//! - `alloc`: the counting global allocator behind INFO's used_memory.

pub mod alloc;
pub mod clock;
pub mod mesh;
pub mod ring;
pub mod sys;
pub mod timer;
