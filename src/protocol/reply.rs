//! Replies as values (`Reply`) and their RESP2/RESP3 encoding, written straight into a
//! connection's output buffer. `Reply` is `Send`, so a remote shard can build one, though
//! shards normally encode on the executing core and ship bytes.

use bytes::Bytes;

use super::write_i64;

/// A reply before encoding. RESP3-only shapes degrade to their RESP2 forms.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// `+<text>` (status).
    Status(Bytes),
    /// `-<text>`; the text carries its own code (`ERR ...`, `WRONGTYPE ...`).
    Error(String),
    Int(i64),
    Bulk(Bytes),
    /// Null bulk (`$-1` / `_`).
    Null,
    /// Null array (`*-1` / `_`).
    NullArray,
    Array(Vec<Reply>),
    /// RESP3 map; a flat array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// RESP3 map; in RESP2 an array of two-element arrays (XREAD's streams).
    Pairs(Vec<(Reply, Reply)>),
    /// RESP3 set; an array in RESP2.
    Set(Vec<Reply>),
    /// RESP3 double; a bulk string (`%.17g`) in RESP2.
    Double(f64),
    /// RESP3 boolean; integer 1/0 in RESP2.
    Bool(bool),
    /// RESP3 verbatim string (`=len\r\ntxt:...`); a bulk string in RESP2.
    Verbatim(Bytes),
    /// Already-encoded bytes, copied as they are.
    Raw(Bytes),
    /// RESP3 out-of-band push (`>`: pub/sub messages and confirmations); an array in RESP2.
    Push(Vec<Reply>),
}

impl Reply {
    pub fn bulk(b: impl Into<Bytes>) -> Reply {
        Reply::Bulk(b.into())
    }

    pub fn status(s: &'static str) -> Reply {
        Reply::Status(Bytes::from_static(s.as_bytes()))
    }

    /// A container command's HELP reply: one status line per entry.
    pub fn help(lines: &'static [&'static str]) -> Reply {
        Reply::Array(lines.iter().map(|l| Reply::status(l)).collect())
    }

    pub fn error(s: impl Into<String>) -> Reply {
        Reply::Error(s.into())
    }

    pub fn bulk_opt(b: Option<Bytes>) -> Reply {
        b.map_or(Reply::Null, Reply::Bulk)
    }

    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Encodes into `out` for protocol version `resp` (2 or 3).
    pub fn encode(&self, resp: u8, out: &mut Vec<u8>) {
        let r3 = resp >= 3;
        match self {
            Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
            Reply::Status(s) => {
                out.push(b'+');
                out.extend_from_slice(s);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Error(e) => {
                out.push(b'-');
                // Error lines cannot carry newlines; Redis replaces them with spaces.
                out.extend(
                    e.bytes()
                        .map(|c| if c == b'\r' || c == b'\n' { b' ' } else { c }),
                );
                out.extend_from_slice(b"\r\n");
            }
            Reply::Int(i) => {
                out.push(b':');
                write_i64(out, *i);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Bulk(b) => encode_bulk(out, b),
            Reply::Null => out.extend_from_slice(if r3 { b"_\r\n" } else { b"$-1\r\n" }),
            Reply::NullArray => out.extend_from_slice(if r3 { b"_\r\n" } else { b"*-1\r\n" }),
            Reply::Array(items) => {
                header(out, b'*', items.len());
                for i in items {
                    i.encode(resp, out);
                }
            }
            Reply::Set(items) => {
                header(out, if r3 { b'~' } else { b'*' }, items.len());
                for i in items {
                    i.encode(resp, out);
                }
            }
            Reply::Map(pairs) => {
                if r3 {
                    header(out, b'%', pairs.len());
                } else {
                    header(out, b'*', pairs.len() * 2);
                }
                for (k, v) in pairs {
                    k.encode(resp, out);
                    v.encode(resp, out);
                }
            }
            Reply::Pairs(pairs) => {
                header(out, if r3 { b'%' } else { b'*' }, pairs.len());
                for (k, v) in pairs {
                    if !r3 {
                        header(out, b'*', 2);
                    }
                    k.encode(resp, out);
                    v.encode(resp, out);
                }
            }
            Reply::Double(d) => {
                let s = super::fmt_g17(*d);
                if r3 {
                    out.push(b',');
                    out.extend_from_slice(s.as_bytes());
                    out.extend_from_slice(b"\r\n");
                } else {
                    encode_bulk(out, s.as_bytes());
                }
            }
            Reply::Bool(b) => {
                if r3 {
                    out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" });
                } else {
                    out.extend_from_slice(if *b { b":1\r\n" } else { b":0\r\n" });
                }
            }
            Reply::Verbatim(b) => {
                if r3 {
                    header(out, b'=', b.len() + 4);
                    out.extend_from_slice(b"txt:");
                    out.extend_from_slice(b);
                    out.extend_from_slice(b"\r\n");
                } else {
                    encode_bulk(out, b);
                }
            }
            Reply::Raw(b) => out.extend_from_slice(b),
            Reply::Push(items) => {
                header(out, if r3 { b'>' } else { b'*' }, items.len());
                for i in items {
                    i.encode(resp, out);
                }
            }
        }
    }
}

/// `<tag><n>\r\n` into a reply (`Vec<u8>`) or a journal block (`BytesMut`).
pub fn header(out: &mut impl bytes::BufMut, tag: u8, n: usize) {
    // Lengths under 100 (most replies) as fixed-size stores, without a copy call.
    if n < 10 {
        out.put_slice(&[tag, b'0' + n as u8, b'\r', b'\n']);
        return;
    }
    if n < 100 {
        let (t, u) = ((n / 10) as u8, (n % 10) as u8);
        out.put_slice(&[tag, b'0' + t, b'0' + u, b'\r', b'\n']);
        return;
    }
    out.put_u8(tag);
    write_i64(out, n as i64);
    out.put_slice(b"\r\n");
}

/// `$<len>\r\n<bytes>\r\n`
pub fn encode_bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.reserve(b.len() + 16);
    header(out, b'$', b.len());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, resp: u8) -> String {
        let mut out = Vec::new();
        r.encode(resp, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn resp2_and_resp3_bytes() {
        assert_eq!(enc(&Reply::Ok, 2), "+OK\r\n");
        assert_eq!(enc(&Reply::Int(-3), 2), ":-3\r\n");
        assert_eq!(enc(&Reply::bulk("ab"), 2), "$2\r\nab\r\n");
        assert_eq!(enc(&Reply::Null, 2), "$-1\r\n");
        assert_eq!(enc(&Reply::Null, 3), "_\r\n");
        assert_eq!(enc(&Reply::NullArray, 2), "*-1\r\n");
        assert_eq!(enc(&Reply::error("ERR x\ny"), 2), "-ERR x y\r\n");
        let m = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        assert_eq!(enc(&m, 2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&m, 3), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Double(1.5), 3), ",1.5\r\n");
        assert_eq!(enc(&Reply::Double(1.5), 2), "$3\r\n1.5\r\n");
        assert_eq!(enc(&Reply::Bool(true), 3), "#t\r\n");
        assert_eq!(enc(&Reply::Verbatim("hi".into()), 3), "=6\r\ntxt:hi\r\n");
        assert_eq!(enc(&Reply::Set(vec![]), 3), "~0\r\n");
        assert_eq!(enc(&Reply::Array(vec![]), 2), "*0\r\n");
        let x = Reply::Pairs(vec![(Reply::bulk("s"), Reply::Array(vec![]))]);
        assert_eq!(enc(&x, 2), "*1\r\n*2\r\n$1\r\ns\r\n*0\r\n");
        assert_eq!(enc(&x, 3), "%1\r\n$1\r\ns\r\n*0\r\n");
        let p = Reply::Push(vec![Reply::bulk("message"), Reply::Null]);
        assert_eq!(enc(&p, 3), ">2\r\n$7\r\nmessage\r\n_\r\n");
        assert_eq!(enc(&p, 2), "*2\r\n$7\r\nmessage\r\n$-1\r\n");
    }
}
