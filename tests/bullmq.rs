//! BullMQ end to end: the real Node.js job queue (`tests/node/bullmq_check.mjs`, BullMQ pinned
//! in `tests/node/package.json`, installed by `tools/test.sh`) against the real binary under
//! `shard_counts()`. BullMQ's Lua scripts write every job event to `bull:<queue>:events` with
//! XADD (and trim it with XTRIM / MAXLEN ~) and QueueEvents reads it with XREAD BLOCK, so this
//! is the streams work under a real client: Queue, Worker (concurrency 8) and QueueEvents on
//! 200 jobs with delays, priorities, retries with and without backoff, jobs that fail for
//! good, progress, logs, a parent/children flow and a job scheduler. The script checks what
//! BullMQ sees (every job completed exactly once, every event, counts, return values, logs);
//! this file then checks the server: the event stream read back with XRANGE/XREVRANGE/XINFO
//! and rebuilt in a stock redis-server to the same DEBUG DIGEST-VALUE, the queue's sets, no
//! error reply of any kind in INFO.
//!
//! With several shards BullMQ's scripts touch keys they do not declare (a job's hash is
//! `prefix .. jobId`), so the server runs with `lua-allow-undeclared-keys yes`, as the README
//! says job-queue libraries need; a second test runs BullMQ with a `{bull}` hash-tag prefix
//! (what BullMQ documents for Redis Cluster), which needs no such setting.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::resp::Redis;
use common::{shard_counts, Server};

const JOBS: i64 = 200;
/// The jobs that fail for good and the failed attempts, as `bullmq_check.mjs` makes them.
const DOOMED: i64 = 4;
const WORKER_FAILURES: i64 = 6 * 2 + DOOMED * 2;
const RETRIES: i64 = 6 * 2;

const SETUP_HINT: &str = "run tools/test.sh once (it installs node/npm from Debian if missing \
     and the pinned BullMQ into tests/node/node_modules with npm ci)";

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Fails (never skips) when node or the pinned BullMQ is missing.
fn require_node_and_bullmq() {
    let version = Command::new("node").arg("--version").output();
    match version {
        Ok(o) if o.status.success() => {}
        _ => panic!("node is not installed or does not run: {SETUP_HINT}"),
    }
    let dir = node_dir();
    let pinned = std::fs::read_to_string(dir.join("package.json")).unwrap();
    let installed = std::fs::read_to_string(dir.join("node_modules/bullmq/package.json"))
        .unwrap_or_else(|_| panic!("tests/node/node_modules/bullmq is missing: {SETUP_HINT}"));
    let want = json_str(&pinned, "bullmq").expect("bullmq pinned in tests/node/package.json");
    let have = json_str(&installed, "version").unwrap_or_default();
    assert_eq!(
        have, want,
        "tests/node/node_modules has bullmq {have}, package.json pins {want}: {SETUP_HINT}"
    );
}

/// The string value of the first `"key": "value"` in a JSON text.
fn json_str(text: &str, key: &str) -> Option<String> {
    let at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = text[at..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// The integer value of `"key":N` in the summary line.
fn json_num(text: &str, key: &str) -> i64 {
    let at = text
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in summary {text}"))
        + key.len()
        + 3;
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {text}"))
}

/// Runs the BullMQ check on `port`; returns its JSON summary line. Panics with the script's
/// output when it fails.
fn run_check(port: u16, queue: &str, prefix: &str, what: &str) -> String {
    let started = Instant::now();
    let mut child = Command::new("node")
        .arg("bullmq_check.mjs")
        .arg(port.to_string())
        .arg(queue)
        .current_dir(node_dir())
        .env("BULLMQ_JOBS", JOBS.to_string())
        .env("BULLMQ_PREFIX", prefix)
        .env("BULLMQ_DEADLINE_MS", "60000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}: {SETUP_HINT}"));
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    // The script has its own 60 s deadline; this one only guards against a hung node.
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_t.join().unwrap();
    let stderr = err_t.join().unwrap();
    let ok = status.is_some_and(|s| s.success());
    assert!(
        ok,
        "{what}: bullmq_check.mjs failed ({status:?}) after {:?}\nstdout: {stdout}\nstderr: {stderr}",
        started.elapsed()
    );
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("{\"ok\":true"))
        .unwrap_or_else(|| panic!("{what}: no summary line in {stdout}\nstderr: {stderr}"))
        .to_string();
    println!("{what}: {summary} ({:?})", started.elapsed());
    summary
}

fn info_map(c: &mut redis::Connection, section: &str) -> HashMap<String, String> {
    common::info(c, section)
}

/// The calls of `cmdstat_<name>`.
fn calls(stats: &HashMap<String, String>, name: &str) -> u64 {
    stats
        .get(&format!("cmdstat_{name}"))
        .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

type Entries = Vec<(String, Vec<Vec<u8>>)>;

/// Everything the server should show after a BullMQ run on `queue` with `prefix`.
fn check_server(s: &Server, queue: &str, prefix: &str, summary: &str, what: &str) {
    let mut c = s.client();
    // No error reply of any kind went to BullMQ (read before this function sends anything).
    let stats = info_map(&mut c, "stats");
    assert_eq!(stats["total_error_replies"], "0", "{what}: {stats:?}");
    assert_eq!(stats["unexpected_error_replies"], "0", "{what}");
    let errorstats: String = redis::cmd("INFO").arg("errorstats").query(&mut c).unwrap();
    assert!(
        !errorstats.contains("errorstat_"),
        "{what}: error replies: {errorstats}"
    );
    let cmdstats = info_map(&mut c, "commandstats");
    for (k, v) in &cmdstats {
        assert!(
            v.contains("rejected_calls=0,failed_calls=0"),
            "{what}: {k}:{v}"
        );
    }
    assert!(calls(&cmdstats, "evalsha") > 0, "{what}: {cmdstats:?}");
    assert!(calls(&cmdstats, "xread") > 0, "{what}: {cmdstats:?}");

    // The event stream.
    let key = format!("{prefix}:{queue}:events");
    let kind: String = redis::cmd("TYPE").arg(&key).query(&mut c).unwrap();
    assert_eq!(kind, "stream", "{what}: TYPE {key}");
    let len: i64 = redis::cmd("XLEN").arg(&key).query(&mut c).unwrap();
    assert!(
        len > 0 && len >= json_num(summary, "events_len"),
        "{what}: XLEN {len}, summary {summary}"
    );
    // Nothing was trimmed (BullMQ keeps 10000 events), so XADD ran once per entry at least.
    assert!(
        calls(&cmdstats, "xadd") >= len as u64,
        "{what}: {cmdstats:?}"
    );
    let entries: Entries = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    assert_eq!(entries.len() as i64, len, "{what}: XRANGE - + vs XLEN");
    let ids: Vec<(u64, u64)> = entries
        .iter()
        .map(|(id, _)| {
            let (ms, seq) = id.split_once('-').expect("ms-seq id");
            (ms.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "{what}: XRANGE ids not increasing"
    );
    let mut events: HashMap<String, i64> = HashMap::new();
    for (id, fields) in &entries {
        assert!(
            fields.len() >= 2 && fields.len() % 2 == 0 && fields[0] == b"event",
            "{what}: entry {id}: {fields:?}"
        );
        *events
            .entry(String::from_utf8_lossy(&fields[1]).into_owned())
            .or_default() += 1;
    }
    let n = |e: &str| events.get(e).copied().unwrap_or(0);
    let jobs = json_num(summary, "jobs");
    assert_eq!(n("completed"), jobs, "{what}: {events:?}");
    assert_eq!(n("failed"), DOOMED, "{what}: {events:?}");
    assert_eq!(n("retries-exhausted"), DOOMED, "{what}: {events:?}");
    assert!(n("active") >= jobs + DOOMED, "{what}: {events:?}");
    assert!(n("progress") >= jobs, "{what}: {events:?}");
    // XREVRANGE is XRANGE backwards; COUNT and exclusive ranges cut the same list.
    let mut rev: Entries = redis::cmd("XREVRANGE")
        .arg(&key)
        .arg("+")
        .arg("-")
        .query(&mut c)
        .unwrap();
    rev.reverse();
    assert!(rev == entries, "{what}: XREVRANGE differs from XRANGE");
    let first5: Entries = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(5)
        .query(&mut c)
        .unwrap();
    assert!(first5[..] == entries[..5], "{what}: XRANGE COUNT 5");
    let mid = &entries[len as usize / 2].0;
    let after: Entries = redis::cmd("XRANGE")
        .arg(&key)
        .arg(format!("({mid}"))
        .arg("+")
        .query(&mut c)
        .unwrap();
    assert!(
        after[..] == entries[len as usize / 2 + 1..],
        "{what}: XRANGE ({mid} +"
    );
    let xinfo: HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(&key)
        .query(&mut c)
        .unwrap();
    assert_eq!(xinfo["length"], redis::Value::Int(len), "{what}: {xinfo:?}");
    assert_eq!(
        xinfo["entries-added"],
        redis::Value::Int(len),
        "{what}: {xinfo:?}"
    );
    let last = entries.last().map(|e| e.0.clone()).unwrap();
    assert_eq!(
        xinfo["last-generated-id"],
        redis::Value::BulkString(last.into_bytes()),
        "{what}"
    );

    // The queue as BullMQ left it, read on the server.
    let q = |suffix: &str| format!("{prefix}:{queue}:{suffix}");
    let zcard = |c: &mut redis::Connection, k: &str| -> i64 {
        redis::cmd("ZCARD").arg(q(k)).query(c).unwrap()
    };
    assert_eq!(zcard(&mut c, "completed"), jobs, "{what}: completed set");
    assert_eq!(zcard(&mut c, "failed"), DOOMED, "{what}: failed set");
    for k in ["delayed", "prioritized", "waiting-children"] {
        assert_eq!(zcard(&mut c, k), 0, "{what}: {k} set");
    }
    for k in ["wait", "active", "paused"] {
        let l: i64 = redis::cmd("LLEN").arg(q(k)).query(&mut c).unwrap();
        assert_eq!(l, 0, "{what}: {k} list");
    }
    let job: HashMap<String, String> = redis::cmd("HGETALL")
        .arg(q("doomed-0"))
        .query(&mut c)
        .unwrap();
    assert_eq!(
        job["failedReason"], "doomed job doomed-0, attempt 2",
        "{what}"
    );
    assert_eq!(job["atm"], "2", "{what}: {job:?}");

    // DEBUG DIGEST: a real digest, stable while nothing writes; the event stream rebuilt
    // entry by entry in a stock redis-server has the same DIGEST-VALUE there.
    let digest: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    assert!(
        digest.len() == 40
            && digest.bytes().all(|b| b.is_ascii_hexdigit())
            && digest != "0".repeat(40),
        "{what}: DEBUG DIGEST {digest}"
    );
    let again: String = redis::cmd("DEBUG").arg("DIGEST").query(&mut c).unwrap();
    assert_eq!(digest, again, "{what}: DEBUG DIGEST changed with no writes");
    let value: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(&key)
        .query(&mut c)
        .unwrap();
    let reference = Redis::start_with(&["--enable-debug-command", "yes"]);
    let mut r = redis::Client::open(format!("redis://127.0.0.1:{}/", reference.port))
        .and_then(|cl| cl.get_connection_with_timeout(Duration::from_secs(5)))
        .unwrap();
    let mut pipe = redis::pipe();
    for (id, fields) in &entries {
        pipe.cmd("XADD").arg(&key).arg(id).arg(fields).ignore();
    }
    pipe.query::<()>(&mut r).unwrap();
    let want: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(&key)
        .query(&mut r)
        .unwrap();
    assert_eq!(
        value, want,
        "{what}: DEBUG DIGEST-VALUE {key} vs redis-server"
    );
}

#[test]
fn bullmq_runs_its_jobs_and_events_on_shardis() {
    require_node_and_bullmq();
    for n in shard_counts() {
        let mut flags = vec!["--enable-debug-command", "yes", "--save", ""];
        if n > 1 {
            flags.extend(["--lua-allow-undeclared-keys", "yes"]);
        }
        let s = Server::start_with(n, &flags);
        let what = format!("--shards {n}");
        let queue = format!("e2e-{n}");
        let summary = run_check(s.port, &queue, "bull", &what);
        assert_eq!(json_num(&summary, "jobs"), JOBS, "{summary}");
        assert_eq!(json_num(&summary, "completed"), JOBS, "{summary}");
        assert_eq!(json_num(&summary, "failed"), DOOMED, "{summary}");
        assert_eq!(
            json_num(&summary, "worker_failures"),
            WORKER_FAILURES,
            "{summary}"
        );
        assert_eq!(json_num(&summary, "retries"), RETRIES, "{summary}");
        assert_eq!(json_num(&summary, "repeats"), 3, "{summary}");
        assert_eq!(
            json_num(&summary, "progress_jobs"),
            JOBS + DOOMED,
            "{summary}"
        );
        check_server(&s, &queue, "bull", &summary, &what);
    }
}

#[test]
fn bullmq_with_a_hash_tag_prefix_needs_no_undeclared_keys() {
    require_node_and_bullmq();
    let counts: Vec<usize> = shard_counts().into_iter().filter(|&n| n > 1).collect();
    if counts.is_empty() {
        println!("note: no shard count above 1 in SHARDIS_TEST_SHARDS; nothing to run");
    }
    for n in counts {
        let s = Server::start_with(n, &["--enable-debug-command", "yes", "--save", ""]);
        let what = format!("--shards {n}, prefix {{bull}}");
        let queue = format!("e2e-tagged-{n}");
        let summary = run_check(s.port, &queue, "{bull}", &what);
        assert_eq!(json_num(&summary, "completed"), JOBS, "{summary}");
        check_server(&s, &queue, "{bull}", &summary, &what);
    }
}
