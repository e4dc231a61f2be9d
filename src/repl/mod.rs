//! Replication. `master`: the master side in Redis's own protocol (a stock redis-server, or
//! `redis-cli --replica` / `--rdb`, attached to shardis).

pub mod master;
