//! Celery end to end: the real Python task queue (`tests/python/celery_check.py`, Celery
//! installed by `tools/test.sh`) with shardis as both broker and result backend, under
//! `shard_counts()`. kombu keeps its queues in lists popped with BRPOP, tracks unacked
//! messages (`task_acks_late`) in a hash indexed by a sorted set, and broadcasts remote
//! control over PUBLISH/PSUBSCRIBE; the result backend writes results with SETEX,
//! announces them on a channel per task and counts chord parts in MULTI/EXEC. The script
//! runs plain tasks, a group, a chord, a chain, retries, a countdown and a remote-control
//! ping, checking every result; this file then checks the server: the queue drained, no
//! message left unacknowledged, the results stored, and no error reply but the ones
//! redis-py's own probes get.

mod common;

use std::process::Command;

use common::{shard_counts, Server};

#[test]
fn celery_runs_tasks_groups_chords_and_retries() {
    let have = Command::new("python3")
        .args(["-c", "import celery"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have,
        "python3 with Celery is missing: run tools/test.sh once (it pip-installs it)"
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/celery_check.py");
    for n in shard_counts() {
        let s = Server::start(n);
        let out = Command::new("python3")
            .arg(&script)
            .arg(s.port.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success() && text.contains("ALL OK"),
            "shards={n}: {text}\n{err}"
        );
        let mut c = s.client();
        let queued: i64 = redis::cmd("LLEN").arg("celery").query(&mut c).unwrap();
        assert_eq!(queued, 0, "shards={n}: the queue drained");
        let unacked: i64 = redis::cmd("HLEN").arg("unacked").query(&mut c).unwrap();
        assert_eq!(unacked, 0, "shards={n}: every message acknowledged");
        let index: i64 = redis::cmd("ZCARD")
            .arg("unacked_index")
            .query(&mut c)
            .unwrap();
        assert_eq!(index, 0, "shards={n}");
        let _: () = redis::cmd("SELECT").arg(1).query(&mut c).unwrap();
        let results: Vec<String> = redis::cmd("KEYS")
            .arg("celery-task-meta-*")
            .query(&mut c)
            .unwrap();
        // 200 adds, 50 in the group, 30 chord parts and the chord, 3 in the chain, 10
        // retried tasks, the countdown one.
        assert!(
            results.len() >= 294,
            "shards={n}: {} results",
            results.len()
        );
        let info: String = redis::cmd("INFO").arg("errorstats").query(&mut c).unwrap();
        // NOSCRIPT: kombu's EVALSHA before its SCRIPT LOAD. ERR: redis-py 8's probe of
        // CLIENT MAINT_NOTIFICATIONS (7.0 has no such subcommand either).
        for line in info.lines().filter(|l| l.starts_with("errorstat_")) {
            assert!(
                line.starts_with("errorstat_NOSCRIPT") || line.starts_with("errorstat_ERR"),
                "shards={n}: {line}"
            );
        }
    }
}
