//! shardis: a Redis-compatible in-memory store, thread-per-core on io_uring.
//!
//! ```text
//!            SO_REUSEPORT :6379 (one listening socket per shard)
//!    ┌──────────────┬──────────────┬──────────────┐
//!    │ shard 0      │ shard 1      │ shard N-1    │  one io_uring loop per core, pinned
//!    │ connections  │ connections  │ connections  │  a connection lives where it was accepted
//!    │ keyspace 0   │ keyspace 1   │ keyspace N-1 │  each key has exactly one owner shard
//!    └──────┬───────┴──────┬───────┴──────┬───────┘
//!           └── SPSC mesh (lock-free, one queue per shard pair) ──┘
//! ```
//!
//! - `acl`: ACL users, their permissions and the ACL LOG (process-wide).
//! - `config`: flags, config file, CONFIG parameters.
//! - `directives`: how each redis.conf directive shardis does not implement is treated.
//! - `error`: every error text a client can see.
//! - `log`: Redis-style log lines.
//! - `persist`: RDB snapshots (Redis 7.0's format): codec, SAVE, loading at startup.
//! - `protocol`: RESP parsing and reply encoding.
//! - `runtime`: our per-core io_uring runtime (ring, ops, timers, mesh); all `unsafe` lives here.
//! - `server`: per-shard event loop, connections, pub/sub subscribers, startup and shutdown.
//! - `shard`: data one core owns (databases, hash table, expiry, eviction, routing); big
//!   values UNLINKed or flushed ASYNC are dropped on one background `lazyfree` thread.
//! - `commands`: Redis command semantics, one table row per command.
//! - `scripting`: Lua scripting (one VM per shard thread, the script cache, SCRIPT KILL).
//! - `coord`: cross-shard fan-out, atomic multi-shard commands, MULTI/EXEC transactions.
//! - `repl`: replication, replica side (REPLICAOF, the master link, ROLE, INFO replication).
//! - `tls`: TLS settings, the rustls server configuration, and the per-connection TLS
//!   session a shard drives from its ring (bytes in, plaintext out; replies in, records out).
//! - `sentinel`: `shardis --sentinel` mode, its own process on plain std threads (monitoring,
//!   quorum, failover, the Sentinel protocol); it never starts the shard runtime.

#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod acl;
pub mod commands;
pub mod config;
pub mod coord;
pub mod directives;
pub mod engine;
pub mod error;
pub mod log;
pub mod persist;
pub mod protocol;
pub mod repl;
pub mod role;
pub mod runtime;
pub mod scripting;
pub mod sentinel;
pub mod server;
pub mod shard;
pub mod tls;
pub mod types;
pub mod util;
