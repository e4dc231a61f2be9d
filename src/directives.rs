//! How every redis.conf directive shardis does not implement itself is treated, as data: one
//! row per Redis 7.0 directive name. Read on the main thread at startup (config file, flags)
//! and by CONFIG SET on any shard.
//!
//! Directives `Config::apply` implements never reach this table. The rest are either
//! accepted with one warning naming what happens instead (only where ignoring the value is
//! harmless: tuning knobs of subsystems shardis does not have, or has in its own form), or
//! refused with the reason unless the value is the one that asks for nothing
//! (`appendonly yes`, a replica setting, a module: ignoring those would lose data or
//! weaken security). Nothing is ignored silently.

/// What happens to a directive's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Treat {
    /// Accepted, shown by CONFIG GET, with one warning: the text says what happens instead.
    /// CONFIG GET shows Redis 7.0's default until a value is set (`None`: a directive
    /// Redis 7.0's CONFIG GET does not show).
    Warn(Option<&'static str>, &'static str),
    /// Accepted only with one of these values (compared case-insensitively, after trimming
    /// and removing quotes); any other is refused with the reason.
    Only(&'static [&'static str], &'static str),
    /// Accepted silently with one of these values (what shardis does anyway, so nothing is
    /// ignored); any other is accepted with the warning.
    Same(&'static [&'static str], &'static str),
}

use Treat::{Only, Same, Warn};

const AOF_FIXED: &str = "the append-only files are one fixed shape: an RDB base plus one \
     command log per shard (see README \"Persistence\"); rewrites run on BGREWRITEAOF";
const RDB_FIXED: &str = "RDB files are written and read one fixed way (see README \"Persistence\")";

/// Every Redis 7.0 directive shardis does not implement, and its treatment.
pub const DIRECTIVES: &[(&str, Treat)] = &[
    // Persistence: the values that ask for nothing are accepted.
    ("rdb-del-sync-files", Same(&["no"], RDB_FIXED)),
    ("rdb-save-incremental-fsync", Same(&["no"], RDB_FIXED)),
    ("rdb-key-save-delay", Warn(Some("0"), RDB_FIXED)),
    ("no-appendfsync-on-rewrite", Same(&["no"], AOF_FIXED)),
    ("aof-use-rdb-preamble", Same(&["yes"], AOF_FIXED)),
    ("aof-timestamp-enabled", Same(&["no"], AOF_FIXED)),
    ("aof-rewrite-incremental-fsync", Same(&["no"], AOF_FIXED)),
    ("sanitize-dump-payload", Warn(Some("no"), RDB_FIXED)),
    // Replication and cluster.
    ("replica-lazy-flush", Same(&["yes"], "a replica frees its old data in the background on a full sync (as yes)")),
    ("slave-lazy-flush", Same(&["yes"], "a replica frees its old data in the background on a full sync (as yes)")),
    ("replica-ignore-maxmemory", Warn(Some("yes"), "a replica never evicts (Redis's default, yes)")),
    ("repl-diskless-sync", Same(&["yes"], "a master always streams the RDB from memory, never through a file (as yes)")),
    ("repl-diskless-sync-delay", Warn(Some("5"), "a full sync starts at once; replicas that ask while one is serialised share the next")),
    ("repl-diskless-sync-max-replicas", Warn(Some("0"), "a full sync starts at once; replicas that ask while one is serialised share the next")),
    ("repl-diskless-load", Same(&["swapdb"], "a replica receives the RDB into memory and serves its old data until the load is done (as swapdb)")),
    ("repl-disable-tcp-nodelay", Same(&["no"], "replication links keep TCP_NODELAY (as no)")),
    ("repl-backlog-ttl", Warn(Some("3600"), "the backlog is kept while the server runs")),
    ("cluster-enabled", Only(&["no"], "cluster mode is not supported yet")),
    ("cluster-config-file", Warn(Some("nodes.conf"), "only used in cluster mode, which is off")),
    ("cluster-node-timeout", Warn(Some("15000"), "only used in cluster mode, which is off")),
    ("cluster-port", Warn(Some("0"), "only used in cluster mode, which is off")),
    ("cluster-allow-pubsubshard-when-down", Warn(Some("yes"), "only used in cluster mode, which is off")),
    ("cluster-allow-reads-when-down", Warn(Some("no"), "only used in cluster mode, which is off")),
    ("cluster-allow-replica-migration", Warn(Some("yes"), "only used in cluster mode, which is off")),
    ("cluster-announce-bus-port", Warn(Some("0"), "only used in cluster mode, which is off")),
    ("cluster-announce-hostname", Warn(Some(""), "only used in cluster mode, which is off")),
    ("cluster-announce-ip", Warn(Some(""), "only used in cluster mode, which is off")),
    ("cluster-announce-port", Warn(Some("0"), "only used in cluster mode, which is off")),
    ("cluster-announce-tls-port", Warn(Some("0"), "only used in cluster mode, which is off")),
    ("cluster-link-sendbuf-limit", Warn(Some("0"), "only used in cluster mode, which is off")),
    ("cluster-migration-barrier", Warn(Some("1"), "only used in cluster mode, which is off")),
    ("cluster-preferred-endpoint-type", Warn(Some("ip"), "only used in cluster mode, which is off")),
    ("cluster-replica-no-failover", Warn(Some("no"), "only used in cluster mode, which is off")),
    ("cluster-replica-validity-factor", Warn(Some("10"), "only used in cluster mode, which is off")),
    ("cluster-require-full-coverage", Warn(Some("yes"), "only used in cluster mode, which is off")),
    ("cluster-slave-no-failover", Warn(Some("no"), "only used in cluster mode, which is off")),
    ("cluster-slave-validity-factor", Warn(Some("10"), "only used in cluster mode, which is off")),
    ("slave-ignore-maxmemory", Warn(Some("yes"), "a replica never evicts (Redis's default, yes)")),
    ("replica-ignore-disk-write-errors", Warn(Some("no"), "append-only write errors on a replica are handled as on a master (see README \"Persistence\")")),
    ("bind-source-addr", Only(&[""], "outgoing connections (to a master, by the sentinel) use the system's source address; a configured one is not supported yet")),
    ("socket-mark-id", Only(&["0"], "socket marks (SO_MARK) are not supported")),
    ("aof-disable-auto-gc", Warn(Some("no"), AOF_FIXED)),
    ("server_cpulist", Warn(Some(""), "shard threads are pinned with --cores; other threads are left to the scheduler")),
    ("bio_cpulist", Warn(Some(""), "shard threads are pinned with --cores; other threads are left to the scheduler")),
    ("aof_rewrite_cpulist", Warn(Some(""), "shard threads are pinned with --cores; other threads are left to the scheduler")),
    ("bgsave_cpulist", Warn(Some(""), "shard threads are pinned with --cores; other threads are left to the scheduler")),
    // Security: refusing is the only safe answer until these exist.
    ("acl-pubsub-default", Only(&["resetchannels"], "new users start with no channels (resetchannels), as Redis 7.0's default")),
    ("enable-module-command", Warn(Some("no"), "modules are not supported; MODULE LIST is empty and MODULE LOAD fails")),
    ("loadmodule", Only(&[], "modules are not supported")),
    // Tuning knobs of subsystems shardis has in its own form, or not at all.
    ("hz", Same(&["10"], "shardis runs its active expiry every 100 ms on every shard")),
    ("dynamic-hz", Warn(Some("yes"), "shardis runs its active expiry every 100 ms on every shard")),
    ("active-expire-effort", Warn(Some("1"), "shardis's active expiry has a fixed effort")),
    ("activerehashing", Same(&["yes"], "shardis's tables resize incrementally on their own")),
    ("activedefrag", Warn(Some("no"), "active defragmentation is not supported")),
    ("active-defrag-ignore-bytes", Warn(Some("104857600"), "active defragmentation is not supported")),
    ("active-defrag-threshold-lower", Warn(Some("10"), "active defragmentation is not supported")),
    ("active-defrag-threshold-upper", Warn(Some("100"), "active defragmentation is not supported")),
    ("active-defrag-cycle-min", Warn(Some("1"), "active defragmentation is not supported")),
    ("active-defrag-cycle-max", Warn(Some("25"), "active defragmentation is not supported")),
    ("active-defrag-max-scan-fields", Warn(Some("1000"), "active defragmentation is not supported")),
    ("jemalloc-bg-thread", Warn(Some("yes"), "shardis does not use jemalloc")),
    ("io-threads", Same(&["1"], "every shard is its own I/O thread (see --shards)")),
    ("io-threads-do-reads", Warn(Some("no"), "every shard is its own I/O thread (see --shards)")),
    ("always-show-logo", Same(&["no"], "shardis prints no logo")),
    ("set-proc-title", Warn(Some("yes"), "the process title is left as it is")),
    ("proc-title-template", Warn(Some("{title} {listen-addr} {server-mode}"), "the process title is left as it is")),
    ("disable-thp", Warn(Some("yes"), "transparent huge pages are left as the system sets them")),
    ("oom-score-adj", Same(&["no"], "the OOM score is left as the system sets it")),
    ("oom-score-adj-values", Warn(Some("0 200 800"), "the OOM score is left as the system sets it")),
    ("crash-log-enabled", Warn(Some("yes"), "crash logs are not written")),
    ("crash-memcheck-enabled", Warn(Some("yes"), "crash logs are not written")),
    ("lazyfree-lazy-eviction", Same(&["no"], "evicted values are freed at once (as no)")),
    ("lazyfree-lazy-expire", Same(&["no"], "expired values are freed at once (as no)")),
    ("lazyfree-lazy-server-del", Same(&["no"], "values the server overwrites or deletes are freed at once (as no)")),
    ("maxmemory-eviction-tenacity", Warn(Some("10"), "eviction runs until memory is under the limit")),
    ("tracking-table-max-keys", Warn(Some("1000000"), "the keys tracking clients read are remembered without a limit")),
    ("propagation-error-behavior", Only(&["ignore"], "a command of the master's stream that fails on a replica is logged and counted (INFO unexpected_error_replies) and the stream goes on, as ignore; shardis never panics on it")),
    ("locale-collate", Warn(None, "strings compare byte by byte")),
    ("ignore-warnings", Warn(Some(""), "shardis has no startup self-checks to silence")),
];

/// The treatment of `name` (lower case), if it is in the table.
pub fn lookup(name: &str) -> Option<Treat> {
    DIRECTIVES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Applies the table to `name value`: `Ok(Some(warning))` when accepted with a warning,
/// `Ok(None)` when accepted as asking for nothing, `Err(reason)` when refused, and
/// `Err` naming an unknown directive when the name is not in the table.
pub fn check(name: &str, value: &str) -> Result<Option<String>, String> {
    let Some(t) = lookup(name) else {
        return Err(format!("unknown parameter '{name}'"));
    };
    let v = value.trim().trim_matches('"').trim_matches('\'');
    match t {
        Warn(_, what) => Ok(Some(if what.is_empty() {
            format!("'{name}' is not supported and has no effect")
        } else {
            format!("'{name}' is not supported: {what}")
        })),
        Only(ok, why) => {
            if ok.iter().any(|o| o.eq_ignore_ascii_case(v)) {
                Ok(None)
            } else {
                Err(format!("'{name} {value}' is refused: {why}"))
            }
        }
        Same(ok, _) if ok.iter().any(|o| o.eq_ignore_ascii_case(v)) => Ok(None),
        Same(_, what) => Ok(Some(format!("'{name}' is not supported: {what}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lower_case() {
        let mut seen = std::collections::HashSet::new();
        for (n, _) in DIRECTIVES {
            assert!(seen.insert(*n), "duplicate directive {n}");
            assert_eq!(*n, n.to_ascii_lowercase());
        }
    }

    #[test]
    fn treatments() {
        assert!(check("io-threads", "4")
            .unwrap()
            .unwrap()
            .contains("io-threads"));
        assert!(check("loadmodule", "/x.so").is_err());
        // What shardis does anyway is accepted without a word; anything else warns.
        assert_eq!(check("hz", "10"), Ok(None));
        assert_eq!(check("lazyfree-lazy-expire", "\"no\""), Ok(None));
        assert!(check("hz", "100").unwrap().unwrap().contains("'hz'"));
        assert!(check("replica-lazy-flush", "no").unwrap().is_some());
        assert!(check("nosuch", "1")
            .unwrap_err()
            .contains("unknown parameter"));
    }
}
