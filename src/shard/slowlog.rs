//! The slow log (Redis's slowlog.c), one per shard, merged by SLOWLOG on read.
//!
//! A command that ran for at least `slowlog-log-slower-than` microseconds is noted by the
//! shard that ran it (`note`, from the same clock reading INFO commandstats uses) as a
//! *pending* entry: the shard that runs a command is often not the one holding the client,
//! so the client's address and name are filled in where the client lives (`Worker::
//! slow_commit`, or by the reply job of a batch that ran elsewhere). Each committed entry
//! gets a process-wide id, so ids are unique across shards and SLOWLOG GET merges the
//! shards' logs newest first by id. Arguments are redacted (AUTH passwords and the like, as
//! Redis does for the slow log and MONITOR) and trimmed as Redis trims them (32 arguments,
//! 128 bytes each).
//!
//! Runs on each shard's thread; the id counter is the only shared state.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// Arguments kept per entry (Redis's SLOWLOG_ENTRY_MAX_ARGC).
pub const MAX_ARGC: usize = 32;
/// Bytes kept per argument (Redis's SLOWLOG_ENTRY_MAX_STRING).
pub const MAX_STRING: usize = 128;

/// The next entry id, shared by every shard (SLOWLOG RESET does not restart it, as Redis).
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Who ran a pending entry's command, when the shard that ran it knows better than
/// "the client that sent the batch".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The client of the command being run (filled in where the client lives).
    Caller,
    /// A command called by a script (Redis shows its fake client: `?:0`, no name).
    Script,
}

/// A command noted as slow, before its client is known.
#[derive(Clone, Debug)]
pub struct Pending {
    pub time: i64,
    pub micros: u64,
    pub argv: Vec<Bytes>,
    pub who: Who,
}

/// One slow log entry, as SLOWLOG GET shows it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub id: u64,
    pub time: i64,
    pub micros: u64,
    pub argv: Vec<Bytes>,
    pub addr: Bytes,
    pub name: Bytes,
}

/// One shard's slow log and its settings (refreshed once per loop pass).
pub struct SlowLog {
    /// Threshold in nanoseconds; `u64::MAX` when the log is off (negative setting).
    pub threshold_ns: u64,
    pub max_len: usize,
    pub entries: VecDeque<Entry>,
    pub pending: Vec<Pending>,
}

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog {
            threshold_ns: 10_000_000,
            max_len: 128,
            entries: VecDeque::new(),
            pending: Vec::new(),
        }
    }
}

impl SlowLog {
    /// Applies `slowlog-log-slower-than` (µs, negative = off) and `slowlog-max-len`.
    pub fn configure(&mut self, slower_than_us: i64, max_len: u64) {
        self.threshold_ns = u64::try_from(slower_than_us)
            .map(|us| us.saturating_mul(1000))
            .unwrap_or(u64::MAX);
        self.max_len = usize::try_from(max_len).unwrap_or(usize::MAX);
        self.trim();
    }

    fn trim(&mut self) {
        while self.entries.len() > self.max_len {
            self.entries.pop_back();
        }
    }

    /// Notes a command that took `nanos` (the caller checked the threshold).
    #[cold]
    pub fn note(&mut self, argv: &[Bytes], nanos: u64, who: Who) {
        self.pending.push(Pending {
            time: unix_secs(),
            micros: nanos / 1000,
            argv: shown_args(argv),
            who,
        });
    }

    /// Commits the pending entries with their client's address and name (newest first).
    pub fn commit(&mut self, pending: Vec<Pending>, addr: &str, name: &[u8]) {
        for p in pending {
            let (addr, name) = match p.who {
                Who::Caller => (
                    Bytes::copy_from_slice(addr.as_bytes()),
                    Bytes::copy_from_slice(name),
                ),
                Who::Script => (Bytes::from_static(b"?:0"), Bytes::new()),
            };
            self.entries.push_front(Entry {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                time: p.time,
                micros: p.micros,
                argv: p.argv,
                addr,
                name,
            });
        }
        self.trim();
    }
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The arguments as the slow log keeps them: redacted, then at most [`MAX_ARGC`] (the last
/// one saying how many more there were) of at most [`MAX_STRING`] bytes each.
pub fn shown_args(argv: &[Bytes]) -> Vec<Bytes> {
    let argv = redact(argv);
    let n = argv.len().min(MAX_ARGC);
    let mut out = Vec::with_capacity(n);
    for (i, a) in argv.iter().take(n).enumerate() {
        if i == MAX_ARGC - 1 && argv.len() > MAX_ARGC {
            let more = argv.len() - (MAX_ARGC - 1);
            out.push(Bytes::from(format!("... ({more} more arguments)")));
        } else if a.len() > MAX_STRING {
            let mut v = a.get(..MAX_STRING).unwrap_or_default().to_vec();
            v.extend_from_slice(format!("... ({} more bytes)", a.len() - MAX_STRING).as_bytes());
            out.push(Bytes::from(v));
        } else {
            // A copy: the argument may be a slice of a huge query buffer it would keep alive.
            out.push(Bytes::copy_from_slice(a));
        }
    }
    out
}

const REDACTED: Bytes = Bytes::from_static(b"(redacted)");

/// Configuration values Redis hides from the slow log and MONITOR.
const SENSITIVE: &[&str] = &[
    "requirepass",
    "masterauth",
    "masteruser",
    "tls-key-file-pass",
    "tls-client-key-file-pass",
];

/// `argv` with secrets replaced by `(redacted)`, as Redis 7.0 hides them from the slow log
/// and MONITOR: AUTH's arguments, HELLO's AUTH pair, ACL SETUSER's rules, MIGRATE's
/// AUTH/AUTH2 credentials, and the values of sensitive CONFIG SET parameters.
pub fn redact(argv: &[Bytes]) -> std::borrow::Cow<'_, [Bytes]> {
    use std::borrow::Cow;
    let Some(cmd) = argv.first() else {
        return Cow::Borrowed(argv);
    };
    let is = |a: &Bytes, s: &str| a.eq_ignore_ascii_case(s.as_bytes());
    let mut hide: Vec<usize> = Vec::new();
    if is(cmd, "auth") {
        hide.extend(1..argv.len());
    } else if is(cmd, "hello") {
        let mut i = 2;
        while i < argv.len() {
            if argv.get(i).is_some_and(|a| is(a, "auth")) && i + 2 < argv.len() {
                hide.extend([i + 1, i + 2]);
                i += 3;
            } else if argv.get(i).is_some_and(|a| is(a, "setname")) {
                i += 2;
            } else {
                i += 1;
            }
        }
    } else if is(cmd, "acl") && argv.get(1).is_some_and(|a| is(a, "setuser")) {
        hide.extend(2..argv.len());
    } else if is(cmd, "config") && argv.get(1).is_some_and(|a| is(a, "set")) {
        let mut i = 2;
        while i + 1 < argv.len() {
            if argv
                .get(i)
                .is_some_and(|a| SENSITIVE.iter().any(|s| is(a, s)))
            {
                hide.push(i + 1);
            }
            i += 2;
        }
    } else if is(cmd, "migrate") {
        let mut i = 6;
        while i < argv.len() {
            let a = argv.get(i);
            if a.is_some_and(|a| is(a, "auth")) && i + 1 < argv.len() {
                hide.push(i + 1);
                i += 2;
            } else if a.is_some_and(|a| is(a, "auth2")) && i + 2 < argv.len() {
                hide.extend([i + 1, i + 2]);
                i += 3;
            } else {
                i += 1;
            }
        }
    }
    if hide.is_empty() {
        return Cow::Borrowed(argv);
    }
    let mut v = argv.to_vec();
    for i in hide {
        if let Some(a) = v.get_mut(i) {
            *a = REDACTED;
        }
    }
    Cow::Owned(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<Bytes> {
        a.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    #[test]
    fn trims_as_redis() {
        let mut a = vec![Bytes::from("rpush"), Bytes::from("l")];
        a.extend((0..40).map(|i| Bytes::from(i.to_string())));
        let s = shown_args(&a);
        assert_eq!(s.len(), 32);
        assert_eq!(s[31], Bytes::from("... (11 more arguments)"));
        assert_eq!(s[30], Bytes::from("28"));
        let long = vec![
            Bytes::from("set"),
            Bytes::from("k"),
            Bytes::from("v".repeat(200)),
        ];
        let s = shown_args(&long);
        assert_eq!(s[2].len(), 128 + "... (72 more bytes)".len());
        assert!(s[2].ends_with(b"v... (72 more bytes)"));
        // Exactly 32 arguments and 128 bytes stay whole.
        let a: Vec<Bytes> = (0..32).map(|_| Bytes::from("x".repeat(128))).collect();
        assert_eq!(shown_args(&a), a);
    }

    #[test]
    fn redacts_secrets() {
        let r = |a: &[&str]| redact(&argv(a)).to_vec();
        assert_eq!(r(&["auth", "p"]), argv(&["auth", "(redacted)"]));
        assert_eq!(
            r(&["HELLO", "3", "AUTH", "u", "p", "SETNAME", "auth"]),
            argv(&[
                "HELLO",
                "3",
                "AUTH",
                "(redacted)",
                "(redacted)",
                "SETNAME",
                "auth"
            ])
        );
        assert_eq!(
            r(&["config", "set", "maxmemory", "1", "requirepass", "x"]),
            argv(&[
                "config",
                "set",
                "maxmemory",
                "1",
                "requirepass",
                "(redacted)"
            ])
        );
        assert_eq!(
            r(&["acl", "setuser", "u", "on"]),
            argv(&["acl", "setuser", "(redacted)", "(redacted)"])
        );
        assert_eq!(
            r(&["migrate", "h", "1", "k", "0", "10", "AUTH2", "u", "p"]),
            argv(&[
                "migrate",
                "h",
                "1",
                "k",
                "0",
                "10",
                "AUTH2",
                "(redacted)",
                "(redacted)"
            ])
        );
        assert_eq!(r(&["get", "auth"]), argv(&["get", "auth"]));
    }

    #[test]
    fn newest_first_bounded() {
        let mut l = SlowLog::default();
        l.configure(0, 2);
        assert_eq!(l.threshold_ns, 0);
        for i in 0..3 {
            l.note(&argv(&["get", &i.to_string()]), 5000, Who::Caller);
        }
        let p = std::mem::take(&mut l.pending);
        l.commit(p, "1.2.3.4:5", b"n");
        assert_eq!(l.entries.len(), 2);
        assert_eq!(l.entries[0].argv[1], Bytes::from("2"));
        assert!(l.entries[0].id > l.entries[1].id);
        assert_eq!(l.entries[0].micros, 5);
        l.configure(-1, 2);
        assert_eq!(l.threshold_ns, u64::MAX);
    }
}
