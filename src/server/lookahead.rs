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

use crate::commands::table::{table, CommandTable, Exec};
use crate::protocol::parser::{self, Arg};
use crate::shard::db::Db;

/// Most commands one look-ahead covers.
pub const WINDOW: usize = 16;

/// One command the look-ahead parsed: its length, where its arguments end in
/// `Window::args`, and its command table id (when known).
struct Pre {
    used: usize,
    args_end: usize,
    id: Option<usize>,
}

/// The commands one look-ahead parsed, handed to the real loop in order so it parses and
/// looks up each command once. Valid only while the read buffer still starts where the
/// window expects (checked by `pop`): anything else drops it, and the loop parses again.
#[derive(Default)]
pub struct Window {
    cmds: Vec<Pre>,
    args: Vec<Arg>,
    /// Parse scratch.
    scratch: Vec<Arg>,
    next: usize,
    args_at: usize,
    /// Address the read buffer must start at for the next command.
    expect: usize,
    /// Bytes of the read buffer the window's remaining commands cover.
    remaining: usize,
}

impl Window {
    pub fn clear(&mut self) {
        self.cmds.clear();
        self.args.clear();
        self.next = 0;
        self.args_at = 0;
        self.remaining = 0;
    }

    /// Heap the window's vectors hold.
    pub fn heap_bytes(&self) -> usize {
        self.cmds.capacity() * std::mem::size_of::<Pre>()
            + (self.args.capacity() + self.scratch.capacity()) * std::mem::size_of::<Arg>()
    }

    /// Gives back vectors grown past `keep` entries (a window over huge commands).
    pub fn trim(&mut self, keep: usize) {
        if self.args.capacity() > keep {
            self.args = Vec::new();
        }
        if self.scratch.capacity() > keep {
            self.scratch = Vec::new();
        }
    }

    /// Parses the complete commands at the start of `buf` (at most [`WINDOW`]; stops at the
    /// first incomplete one or protocol error, which the real parse then meets itself),
    /// calling `key` with the key of each single-key command (`Exec::Key`, a fixed first
    /// key position). Reads `buf` only. Returns the number of commands parsed.
    pub fn fill<'a>(
        &mut self,
        buf: &'a [u8],
        max_bulk: usize,
        mut key: impl FnMut(&'a [u8]),
    ) -> usize {
        self.clear();
        let t = table();
        let mut pos = 0;
        while self.cmds.len() < WINDOW {
            let Some(rest) = buf.get(pos..) else { break };
            let Ok(Some(used)) = parser::parse(rest, max_bulk, &mut self.scratch) else {
                break;
            };
            let (id, k) = classify(t, rest, &self.scratch);
            if let Some(k) = k {
                key(k);
            }
            self.args.append(&mut self.scratch);
            self.cmds.push(Pre {
                used,
                args_end: self.args.len(),
                id,
            });
            pos += used;
        }
        self.expect = buf.as_ptr() as usize;
        self.remaining = pos;
        self.cmds.len()
    }

    /// The next command of the window if `buf` still starts where it did: moves its
    /// arguments into `args` (as `parser::parse` would) and returns its length and command
    /// id. `None` (and the window dropped) once it is used up or out of date.
    pub fn pop(&mut self, buf: &[u8], args: &mut Vec<Arg>) -> Option<(usize, Option<usize>)> {
        let pre = self.cmds.get(self.next)?;
        if buf.as_ptr() as usize != self.expect || buf.len() < self.remaining {
            self.clear();
            return None;
        }
        args.clear();
        args.extend(
            self.args
                .get_mut(self.args_at..pre.args_end)
                .into_iter()
                .flatten()
                .map(|a| std::mem::replace(a, Arg::Range(0, 0))),
        );
        self.args_at = pre.args_end;
        self.next += 1;
        self.expect += pre.used;
        self.remaining -= pre.used;
        Some((pre.used, pre.id))
    }
}

/// The command table id of a parsed command and, for a single-key command, its key.
fn classify<'a>(
    t: &CommandTable,
    buf: &'a [u8],
    args: &[Arg],
) -> (Option<usize>, Option<&'a [u8]>) {
    let range = |a: &Arg| match a {
        Arg::Range(s, e) => buf.get(*s..*e),
        Arg::Owned(_) => None,
    };
    let Some((id, spec)) = args.first().and_then(range).and_then(|n| t.lookup(n)) else {
        return (None, None);
    };
    if !matches!(spec.exec, Exec::Key(_)) || spec.keys.first <= 0 || spec.keys.numkeys != 0 {
        return (Some(id), None);
    }
    (Some(id), args.get(spec.keys.first as usize).and_then(range))
}

/// The key of the command parsed into `args` from `buf`, if single-key (see `Window::fill`).
pub fn key_of<'a>(buf: &'a [u8], args: &[Arg]) -> Option<&'a [u8]> {
    classify(table(), buf, args).1
}

/// Prefetches, for the command just parsed (`cur`, `args`) and the window filled from
/// `rest`, the table slots and then the entries of the keys for which `local` holds (the
/// key lives in `db` on this shard). Returns the number of commands in the window.
pub fn prefetch_window(
    db: &Db,
    win: &mut Window,
    cur: &[u8],
    args: &[Arg],
    rest: &[u8],
    max_bulk: usize,
    local: impl Fn(&[u8]) -> bool,
) -> usize {
    let mut hashes = [0u32; WINDOW + 1];
    let mut m = 0;
    let stage1 = |k: &[u8]| {
        if local(k) {
            if let Some(h) = hashes.get_mut(m) {
                *h = db.prefetch_slot(k);
                m += 1;
            }
        }
    };
    // The command about to run: its slot was most likely prefetched when its read was
    // drained (`Worker::prefetch_received`), so start on its entry now, before the window
    // is parsed, rather than just before it runs.
    if let Some(k) = key_of(cur, args) {
        if local(k) {
            db.prefetch_entry(db.prefetch_slot(k));
        }
    }
    let n = win.fill(rest, max_bulk, stage1);
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

    /// One command as the real path sees it.
    #[derive(Debug, PartialEq)]
    struct Seen {
        used: usize,
        argv: Vec<Bytes>,
        id: Option<usize>,
        /// The key, for a single-key command.
        key: Option<Vec<u8>>,
    }

    fn argv_of(chunk: &Bytes, args: &mut Vec<Arg>) -> Vec<Bytes> {
        args.drain(..)
            .map(|a| match a {
                Arg::Range(s, e) => chunk.slice(s..e),
                Arg::Owned(v) => Bytes::from(v),
            })
            .collect()
    }

    /// Parse and consume one command at a time, then look it up and route it, as
    /// `process_input` and `dispatch` do.
    fn real(buf: &mut BytesMut, limit: usize) -> Vec<Seen> {
        let mut args = Vec::new();
        let mut out = Vec::new();
        while out.len() < limit {
            let Ok(Some(used)) = parser::parse(buf, usize::MAX, &mut args) else {
                break;
            };
            let chunk = buf.split_to(used).freeze();
            let argv = argv_of(&chunk, &mut args);
            let found = argv.first().and_then(|c| table().lookup(c));
            let mut key = None;
            if let Some((_, spec)) = found {
                if matches!(spec.exec, Exec::Key(_)) && spec.keys.numkeys == 0 {
                    let pos: Vec<usize> = spec.keys.key_positions(&argv).collect();
                    if let [p] = pos[..] {
                        key = Some(argv[p].to_vec());
                        assert_eq!(
                            commands::route(&spec.keys, &argv, 1),
                            commands::Route::One(0)
                        );
                    }
                }
            }
            out.push(Seen {
                used,
                argv,
                id: found.map(|f| f.0),
                key,
            });
        }
        out
    }

    /// The same through the look-ahead: `fill` over the buffer, then `pop` while
    /// consuming, as `process_input` does.
    fn ahead(buf: &mut BytesMut) -> Vec<Seen> {
        let mut win = Window::default();
        let mut keys = Vec::new();
        let before = buf.clone();
        let n = win.fill(buf, usize::MAX, |k| keys.push(k.to_vec()));
        assert_eq!(*buf, before, "fill reads only");
        let mut keys = keys.into_iter();
        let mut args = Vec::new();
        let mut out = Vec::new();
        while let Some((used, id)) = win.pop(buf, &mut args) {
            let chunk = buf.split_to(used).freeze();
            let argv = argv_of(&chunk, &mut args);
            let single = id
                .and_then(|i| table().get(i))
                .is_some_and(|s| matches!(s.exec, Exec::Key(_)) && s.keys.first > 0);
            out.push(Seen {
                used,
                argv,
                id,
                key: if single { keys.next() } else { None },
            });
        }
        assert_eq!(out.len(), n);
        assert!(keys.next().is_none());
        out
    }

    #[test]
    fn same_commands_and_keys_as_the_real_parse_stops_at_incomplete_never_consumes() {
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
            &["NOSUCH", "x"],
            &["ZADD", "z", "1", "m"],
        ] {
            buf.extend_from_slice(&cmd(c));
        }
        buf.extend_from_slice(b"*0\r\n");
        buf.extend_from_slice(&cmd(&["GET", "k4"]));
        // An incomplete command at the end: the look-ahead stops before it.
        buf.extend_from_slice(b"*2\r\n$3\r\nGET\r\n$5\r\nk5");
        let (mut a, mut b) = (BytesMut::from(&buf[..]), BytesMut::from(&buf[..]));
        let got = ahead(&mut a);
        let want = real(&mut b, usize::MAX);
        assert_eq!(got.len(), 12);
        assert_eq!(got, want);
        assert_eq!(a, b, "both stopped at the incomplete command");
        let keys: Vec<&[u8]> = got.iter().filter_map(|s| s.key.as_deref()).collect();
        // EXISTS and MGET are split (multi-key) commands: not taken.
        assert_eq!(keys, [&b"k1"[..], b"k2", b"h", b"n", b"z", b"k4"]);

        // At most WINDOW commands.
        let many: Vec<u8> = (0..40)
            .flat_map(|i| cmd(&["GET", &format!("k{i}")]))
            .collect();
        let got = ahead(&mut BytesMut::from(&many[..]));
        assert_eq!(got.len(), WINDOW);
        assert_eq!(got, real(&mut BytesMut::from(&many[..]), WINDOW));
        // A protocol error ends the window without a panic.
        let mut bad = cmd(&["GET", "x"]);
        bad.extend_from_slice(b"*1\r\n#3\r\n");
        assert_eq!(ahead(&mut BytesMut::from(&bad[..])).len(), 1);
    }

    #[test]
    fn a_window_out_of_date_is_dropped() {
        let buf: Vec<u8> = [cmd(&["GET", "a"]), cmd(&["GET", "b"])].concat();
        let mut win = Window::default();
        assert_eq!(win.fill(&buf, usize::MAX, |_| {}), 2);
        let mut args = Vec::new();
        // Another buffer (the connection's was replaced): nothing handed out.
        let other = buf.clone();
        assert!(win.pop(&other, &mut args).is_none());
        assert!(win.pop(&buf, &mut args).is_none(), "dropped for good");
        // Shorter than the window covers: dropped too.
        win.fill(&buf, usize::MAX, |_| {});
        assert!(win.pop(&buf[..buf.len() - 1], &mut args).is_none());
    }

    #[test]
    fn prefetch_window_changes_nothing() {
        let mut db = Db::default();
        db.set(b"k1", b"v1", 0, 0);
        let buf: Vec<u8> = [cmd(&["GET", "k1"]), cmd(&["GET", "nope"])].concat();
        let mut args = Vec::new();
        let cur = parser::parse(&buf, usize::MAX, &mut args).unwrap().unwrap();
        let mut win = Window::default();
        let (a, b) = buf.split_at(cur);
        assert_eq!(
            prefetch_window(&db, &mut win, a, &args, b, usize::MAX, |_| true),
            1
        );
        assert_eq!(db.get_str(b"k1", 0).unwrap().as_deref(), Some(&b"v1"[..]));
        assert_eq!(db.len(), 1);
    }
}
