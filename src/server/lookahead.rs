//! Look-ahead over pipelined commands: memory-level parallelism for the keyspace.
//!
//! A key lookup costs two dependent cache misses (the table slot, then the arena entry it
//! names; see `shard::db`). Run one command after another and every miss stalls alone. When
//! a connection's read buffer holds several complete commands, `prefetch_window` first
//! parses up to [`WINDOW`] of them read-only, hashes the key of each single-key command and
//! starts loading its slot; then reads those slots (arrived by now) and starts loading the
//! entries; the normal in-order execution then finds both in cache. It never consumes or
//! changes anything: a wrong guess (a SELECT in the window, a key written meanwhile) only
//! wastes a prefetch.

use crate::commands::table::{table, Exec, Table};
use crate::protocol::parser::{self, Arg};
use crate::shard::db::Db;

/// Most commands one look-ahead covers.
pub const WINDOW: usize = 16;

/// Calls `key` with the key of each single-key command (`Exec::Key`, a fixed first key
/// position) among the complete commands at the start of `buf`, at most [`WINDOW`]
/// commands. Returns how many complete commands it parsed (empty ones included); stops at
/// the first incomplete one or protocol error. Reads `buf` only.
pub fn keys<'a>(
    buf: &'a [u8],
    max_bulk: usize,
    args: &mut Vec<Arg>,
    mut key: impl FnMut(&'a [u8]),
) -> usize {
    let t = table();
    let mut pos = 0;
    let mut n = 0;
    while n < WINDOW {
        let Some(rest) = buf.get(pos..) else { break };
        let Ok(Some(used)) = parser::parse(rest, max_bulk, args) else {
            break;
        };
        n += 1;
        if let Some(k) = first_key(t, rest, args) {
            key(k);
        }
        pos += used;
    }
    n
}

fn first_key<'a>(t: &Table, buf: &'a [u8], args: &[Arg]) -> Option<&'a [u8]> {
    let range = |a: &Arg| match a {
        Arg::Range(s, e) => buf.get(*s..*e),
        Arg::Owned(_) => None,
    };
    let (_, spec) = t.lookup(range(args.first()?)?)?;
    if !matches!(spec.exec, Exec::Key(_)) || spec.keys.first <= 0 || spec.keys.numkeys != 0 {
        return None;
    }
    range(args.get(spec.keys.first as usize)?)
}

/// Prefetches the table slots, then the entries, of the keys [`keys`] finds in `buf` for
/// which `local` holds (the key lives in `db` on this shard). Returns the number of
/// commands covered.
pub fn prefetch_window(
    db: &Db,
    buf: &[u8],
    max_bulk: usize,
    args: &mut Vec<Arg>,
    local: impl Fn(&[u8]) -> bool,
) -> usize {
    let mut hashes = [0u32; WINDOW];
    let mut m = 0;
    let n = keys(buf, max_bulk, args, |k| {
        if local(k) {
            if let Some(h) = hashes.get_mut(m) {
                *h = db.prefetch_slot(k);
                m += 1;
            }
        }
    });
    for &h in hashes.iter().take(m) {
        db.prefetch_entry(h);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands;
    use bytes::{Bytes, BytesMut};

    fn cmd(parts: &[&str]) -> Vec<u8> {
        let mut v = format!("*{}\r\n", parts.len()).into_bytes();
        for p in parts {
            v.extend_from_slice(format!("${}\r\n{}\r\n", p.len(), p).as_bytes());
        }
        v
    }

    /// The single-key commands' keys as the real path sees them: parse and consume one
    /// command at a time, then look the command up and route it.
    fn real_keys(buf: &mut BytesMut, limit: usize) -> (Vec<Vec<u8>>, usize) {
        let mut args = Vec::new();
        let mut out = Vec::new();
        let mut n = 0;
        while n < limit {
            let Ok(Some(used)) = parser::parse(buf, usize::MAX, &mut args) else {
                break;
            };
            n += 1;
            let chunk = buf.split_to(used).freeze();
            let argv: Vec<Bytes> = args
                .drain(..)
                .map(|a| match a {
                    Arg::Range(s, e) => chunk.slice(s..e),
                    Arg::Owned(v) => Bytes::from(v),
                })
                .collect();
            let Some(spec) = argv.first().and_then(|c| table().lookup(c)).map(|x| x.1) else {
                continue;
            };
            if matches!(spec.exec, Exec::Key(_)) {
                let pos: Vec<usize> = spec.keys.key_positions(&argv).collect();
                if pos.len() == 1 && spec.keys.numkeys == 0 {
                    out.push(argv[pos[0]].to_vec());
                }
                assert_eq!(
                    commands::route(&spec.keys, &argv, 1),
                    commands::Route::One(0)
                );
            }
        }
        (out, n)
    }

    #[test]
    fn same_keys_as_the_real_parse_stops_at_incomplete_never_consumes() {
        let mut buf = Vec::new();
        for c in [
            &["GET", "k1"][..],
            &["set", "k2", "v"],
            &["PING"],
            &["MGET", "a", "b"],
            &["hset", "h", "f", "v"],
            &["INCR", "n"],
            &["SELECT", "1"],
            &["EXISTS", "k3"],
            &["ZADD", "z", "1", "m"],
        ] {
            buf.extend_from_slice(&cmd(c));
        }
        buf.extend_from_slice(b"*0\r\n");
        buf.extend_from_slice(&cmd(&["GET", "k4"]));
        let complete = buf.len();
        // An incomplete command at the end: the look-ahead stops before it.
        buf.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$5\r\nk5");
        let before = buf.clone();
        let mut got = Vec::new();
        let mut args = Vec::new();
        let n = keys(&buf, usize::MAX, &mut args, |k| got.push(k.to_vec()));
        assert_eq!(buf, before, "the look-ahead reads only");
        let mut real = BytesMut::from(&buf[..]);
        let (want, m) = real_keys(&mut real, usize::MAX);
        assert_eq!(n, 11);
        assert_eq!(m, n);
        assert_eq!(got, want);
        let seen: Vec<&[u8]> = got.iter().map(|k| &k[..]).collect();
        // EXISTS and MGET are split (multi-key) commands: not taken.
        assert_eq!(seen, [&b"k1"[..], b"k2", b"h", b"n", b"z", b"k4"]);
        assert_eq!(
            real.len(),
            buf.len() - complete,
            "the real parse stopped there too"
        );

        // At most WINDOW commands.
        let many: Vec<u8> = (0..40)
            .flat_map(|i| cmd(&["GET", &format!("k{i}")]))
            .collect();
        got.clear();
        assert_eq!(
            keys(&many, usize::MAX, &mut args, |k| got.push(k.to_vec())),
            WINDOW
        );
        let (want, _) = real_keys(&mut BytesMut::from(&many[..]), WINDOW);
        assert_eq!(got, want);
        // A protocol error ends the window without a panic.
        let mut bad = cmd(&["GET", "x"]);
        bad.extend_from_slice(b"*1\r\n#3\r\n");
        assert_eq!(keys(&bad, usize::MAX, &mut args, |_| {}), 1);
    }

    #[test]
    fn prefetch_window_changes_nothing() {
        let mut db = Db::default();
        db.set(b"k1", b"v1", 0, 0);
        let buf: Vec<u8> = [cmd(&["GET", "k1"]), cmd(&["GET", "nope"])].concat();
        let mut args = Vec::new();
        assert_eq!(
            prefetch_window(&db, &buf, usize::MAX, &mut args, |_| true),
            2
        );
        assert_eq!(db.get_str(b"k1", 0).unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(db.len(), 1);
    }
}
