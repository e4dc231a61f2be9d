//! Incremental request parser over a byte buffer: RESP multibulk (`*N\r\n$len\r\n...`) and
//! inline commands (`PING\r\n`, with Redis's quoting rules). It never allocates for
//! multibulk arguments: it reports their byte ranges, and the connection slices them out of
//! its frozen read buffer. A request that spans reads keeps its progress in the
//! connection's [`Partial`], so each byte is parsed once however the request was split.
//! Runs on the shard thread that owns the connection.
//!
//! Error texts and limits follow Redis's `processMultibulkBuffer` / `processInlineBuffer`.

use std::fmt;

/// Longest inline request, or multibulk/bulk header line, Redis accepts (PROTO_INLINE_MAX_SIZE).
pub const INLINE_MAX: usize = 64 * 1024;

/// A request the parser cannot accept; the connection replies once and closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    InvalidMultibulkLength,
    InvalidBulkLength,
    ExpectedDollar(u8),
    UnbalancedQuotes,
    TooBigInline,
    TooBigMbulkCount,
    TooBigBulkCount,
    /// A client that must authenticate first sent more than 10 arguments.
    UnauthMultibulkLength,
    /// A client that must authenticate first sent an argument over 16 KB.
    UnauthBulkLength,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ERR Protocol error: ")?;
        match self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedDollar(c) => write!(f, "expected '$', got '{}'", *c as char),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::TooBigInline => f.write_str("too big inline request"),
            ProtocolError::TooBigMbulkCount => f.write_str("too big mbulk count string"),
            ProtocolError::TooBigBulkCount => f.write_str("too big bulk count string"),
            ProtocolError::UnauthMultibulkLength => f.write_str("unauthenticated multibulk length"),
            ProtocolError::UnauthBulkLength => f.write_str("unauthenticated bulk length"),
        }
    }
}

/// What a request may carry: `proto-max-bulk-len`, and Redis's smaller bounds for a client
/// that must still authenticate (at most 10 arguments of at most 16 KB each, so a stranger
/// cannot make the server buffer big requests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_bulk: usize,
    pub unauth: bool,
}

impl Limits {
    /// Most arguments an unauthenticated request may have.
    pub const UNAUTH_ARGS: usize = 10;
    /// Longest argument an unauthenticated request may have.
    pub const UNAUTH_BULK: usize = 16384;

    pub fn new(max_bulk: usize, unauth: bool) -> Limits {
        Limits { max_bulk, unauth }
    }

    #[inline]
    fn max_args(self) -> usize {
        if self.unauth {
            Self::UNAUTH_ARGS
        } else {
            i32::MAX as usize
        }
    }

    #[inline]
    fn max_len(self) -> usize {
        if self.unauth {
            self.max_bulk.min(Self::UNAUTH_BULK)
        } else {
            self.max_bulk
        }
    }
}

/// Where one argument's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `buf[start..end]` of the parsed buffer (multibulk).
    Range(usize, usize),
    /// Unescaped bytes (inline commands with quotes).
    Owned(Vec<u8>),
}

/// How far the parse of an incomplete request got, so the next read resumes there instead
/// of parsing the buffer again from its start (a multibulk of millions of small arguments
/// arriving in 16 KB reads would otherwise cost quadratic time). Offsets are relative to the
/// start of the read buffer, which must not move until the request completes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Resume {
    /// Where the next bulk header starts; 0 while the multibulk header is not parsed yet.
    pos: usize,
    /// Bulk arguments still to parse.
    remaining: usize,
    /// Up to here the line being looked for has no terminator (a header's `\r`, an inline
    /// request's `\n`), so the search starts here.
    scanned: usize,
}

/// A connection's request parsed so far across reads (see [`parse_partial`]): kept in the
/// connection, empty (and unallocated) except while a request spans reads.
#[derive(Debug, Default)]
pub struct Partial {
    at: Resume,
    /// The arguments of the request parsed so far.
    args: Vec<Arg>,
}

impl Partial {
    /// Whether a request is partly parsed.
    pub fn active(&self) -> bool {
        self.at != Resume::default()
    }

    /// Forgets the partial request (and its memory).
    pub fn reset(&mut self) {
        self.at = Resume::default();
        self.args = Vec::new();
    }
}

/// Parses one request from the start of `buf`.
///
/// - `Ok(None)`: not complete yet; read more.
/// - `Ok(Some(n))`: consumed `n` bytes; `args` holds the arguments (may be empty: an empty
///   inline line or `*0`, which Redis ignores).
/// - `Err(e)`: protocol error.
pub fn parse(
    buf: &[u8],
    max_bulk: usize,
    args: &mut Vec<Arg>,
) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    parse_from(
        buf,
        Limits::new(max_bulk, false),
        args,
        &mut Resume::default(),
    )
}

/// [`parse`] for a connection's read buffer that grows between calls: an incomplete
/// request's progress is kept in `partial` (its arguments move there from `args`), and the
/// next call with the same buffer, more bytes appended, resumes where this one stopped, so
/// parsing a request costs time linear in its size however it was split. `partial` is
/// cleared whenever a request completes or fails: the caller must consume those `n` bytes
/// (or close) before calling again. A request complete in one read takes the same path as
/// [`parse`], without touching `partial`.
pub fn parse_partial(
    buf: &[u8],
    max_bulk: usize,
    args: &mut Vec<Arg>,
    partial: &mut Partial,
) -> Result<Option<usize>, ProtocolError> {
    parse_partial_as(buf, Limits::new(max_bulk, false), args, partial)
}

/// [`parse_partial`] with the limits of a client that may have to authenticate first.
pub fn parse_partial_as(
    buf: &[u8],
    lim: Limits,
    args: &mut Vec<Arg>,
    partial: &mut Partial,
) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    let mut at = Resume::default();
    if partial.active() {
        if partial.at.pos.max(partial.at.scanned) <= buf.len() {
            at = partial.at;
            std::mem::swap(args, &mut partial.args);
        } else {
            // Not the buffer this progress was made on: start again.
            partial.reset();
        }
    }
    let r = parse_from(buf, lim, args, &mut at);
    match r {
        Ok(None) if at != Resume::default() => {
            partial.at = at;
            std::mem::swap(args, &mut partial.args);
            args.clear();
        }
        _ if partial.active() => partial.reset(),
        _ => {}
    }
    r
}

fn parse_from(
    buf: &[u8],
    lim: Limits,
    args: &mut Vec<Arg>,
    at: &mut Resume,
) -> Result<Option<usize>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, lim, args, at),
        Some(_) => parse_inline(buf, args, at),
    }
}

/// Finds the `\r` that ends a header line starting at `from`; Redis looks for `\r` only.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\r', buf.get(from..)?).map(|i| from + i)
}

/// The common header line, read in one pass: after the tag at `tag_at`, up to 10 digits in
/// canonical form (no sign, no leading zero) ended by `\r`. Returns the `\r`'s index and
/// the value; anything else (a sign, a long or bad number, no `\r` yet) is `None`, for the
/// general path (`line_end` and `parse_i64`), which decides what it is.
#[inline]
fn short_header(buf: &[u8], tag_at: usize) -> Option<(usize, usize)> {
    let digits = buf.get(tag_at + 1..)?;
    let mut n = 0usize;
    for (i, &c) in digits.iter().take(11).enumerate() {
        match c {
            b'0'..=b'9' if i < 10 => n = n * 10 + usize::from(c - b'0'),
            b'\r' if i == 1 || (i > 1 && digits.first() != Some(&b'0')) => {
                return Some((tag_at + 1 + i, n));
            }
            _ => return None,
        }
    }
    None
}

fn parse_multibulk(
    buf: &[u8],
    lim: Limits,
    args: &mut Vec<Arg>,
    at: &mut Resume,
) -> Result<Option<usize>, ProtocolError> {
    if *at == Resume::default() {
        if let Some((cr, count)) = short_header(buf, 0) {
            if cr + 1 < buf.len() && count > 0 && count <= lim.max_args() {
                let pos = cr + 2;
                args.reserve(count.min(1024));
                *at = Resume {
                    pos,
                    remaining: count,
                    scanned: pos,
                };
            }
        }
    }
    if at.pos == 0 {
        let Some(cr) = line_end(buf, at.scanned) else {
            if buf.len() > INLINE_MAX {
                return Err(ProtocolError::TooBigMbulkCount);
            }
            at.scanned = buf.len();
            return Ok(None);
        };
        // A complete header line is judged by its value, whatever its length: Redis only
        // says "too big" while no line end has arrived (70,000 digits: invalid length).
        // The header needs its "\n" too before we act on it.
        if cr + 1 >= buf.len() {
            at.scanned = cr;
            return Ok(None);
        }
        let count = match buf.get(1..cr).and_then(super::parse_i64) {
            Some(n) if n <= i32::MAX as i64 => n,
            _ => return Err(ProtocolError::InvalidMultibulkLength),
        };
        if count > lim.max_args() as i64 {
            return Err(ProtocolError::UnauthMultibulkLength);
        }
        let pos = cr + 2;
        if count <= 0 {
            return Ok(Some(pos));
        }
        args.reserve((count as usize).min(1024));
        *at = Resume {
            pos,
            remaining: count as usize,
            scanned: pos,
        };
    }
    // Locals in the loop; `at` is written only when the request stops short.
    let (mut pos, mut remaining, mut scanned) = (at.pos, at.remaining, at.scanned);
    while remaining > 0 {
        // The usual case first: a complete `$<len>\r\n` header and its payload in the buffer.
        if buf.get(pos) == Some(&b'$') {
            if let Some((cr, len)) = short_header(buf, pos) {
                let start = cr + 2;
                let end = start + len;
                if len <= lim.max_len() && buf.len() >= end + 2 {
                    args.push(Arg::Range(start, end));
                    pos = end + 2;
                    scanned = pos;
                    remaining -= 1;
                    continue;
                }
            }
        }
        let Some(cr) = line_end(buf, scanned.max(pos)) else {
            if buf.len() - pos > INLINE_MAX {
                return Err(ProtocolError::TooBigBulkCount);
            }
            *at = Resume {
                pos,
                remaining,
                scanned: buf.len(),
            };
            return Ok(None);
        };
        // Complete header line or not, the search resumes at its `\r`.
        let stop = Resume {
            pos,
            remaining,
            scanned: cr,
        };
        if cr + 1 >= buf.len() {
            *at = stop;
            return Ok(None);
        }
        match buf.get(pos) {
            Some(b'$') => {}
            other => return Err(ProtocolError::ExpectedDollar(other.copied().unwrap_or(0))),
        }
        let len = match buf.get(pos + 1..cr).and_then(super::parse_i64) {
            Some(n) if n >= 0 && (n as u64) <= lim.max_bulk as u64 => n as usize,
            _ => return Err(ProtocolError::InvalidBulkLength),
        };
        if len > lim.max_len() {
            return Err(ProtocolError::UnauthBulkLength);
        }
        let start = cr + 2;
        // Redis skips the two bytes after the payload without looking at them.
        let end = start + len;
        if buf.len() < end + 2 {
            *at = stop;
            return Ok(None);
        }
        args.push(Arg::Range(start, end));
        pos = end + 2;
        scanned = pos;
        remaining -= 1;
    }
    Ok(Some(pos))
}

fn parse_inline(
    buf: &[u8],
    args: &mut Vec<Arg>,
    at: &mut Resume,
) -> Result<Option<usize>, ProtocolError> {
    let from = at.scanned.min(buf.len());
    let Some(nl) = buf.get(from..).and_then(|b| memchr::memchr(b'\n', b)) else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError::TooBigInline);
        }
        at.scanned = buf.len();
        return Ok(None);
    };
    let nl = from + nl;
    // A complete line runs whatever its length, as in Redis when the line arrives in one
    // read (its reads grow with the buffer); only 64 KB without a newline is too big.
    let mut line = buf.get(..nl).unwrap_or_default();
    if let Some(l) = line.strip_suffix(b"\r") {
        line = l;
    }
    split_args(line, args)?;
    Ok(Some(nl + 1))
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c)
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// Splits an inline line like Redis's `sdssplitargs`: whitespace separates arguments,
/// "double quotes" support \n \r \t \b \a \xHH escapes, 'single quotes' support \',
/// a closing quote must be followed by whitespace or the end. A NUL byte ends the line.
pub fn split_args(line: &[u8], args: &mut Vec<Arg>) -> Result<(), ProtocolError> {
    let line = match memchr::memchr(0, line) {
        Some(i) => &line[..i],
        None => line,
    };
    let mut p = 0;
    let at = |i: usize| line.get(i).copied();
    loop {
        while at(p).is_some_and(is_space) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(());
        }
        let mut cur = Vec::new();
        let (mut inq, mut insq) = (false, false);
        loop {
            let Some(c) = at(p) else {
                if inq || insq {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
                break;
            };
            if inq {
                if c == b'\\' && at(p + 1) == Some(b'x') {
                    if let (Some(h), Some(l)) =
                        (at(p + 2).and_then(hex_val), at(p + 3).and_then(hex_val))
                    {
                        cur.push(h * 16 + l);
                        p += 4;
                        continue;
                    }
                }
                if c == b'\\' && p + 1 < line.len() {
                    p += 1;
                    cur.push(match line[p] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1).is_some_and(|n| !is_space(n)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    p += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if insq {
                if c == b'\\' && at(p + 1) == Some(b'\'') {
                    p += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1).is_some_and(|n| !is_space(n)) {
                        return Err(ProtocolError::UnbalancedQuotes);
                    }
                    p += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' => {
                        p += 1;
                        break;
                    }
                    b'"' => inq = true,
                    b'\'' => insq = true,
                    _ => cur.push(c),
                }
            }
            p += 1;
        }
        args.push(Arg::Owned(cur));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(buf: &[u8], args: &[Arg]) -> Vec<Vec<u8>> {
        args.iter()
            .map(|a| match a {
                Arg::Range(s, e) => buf[*s..*e].to_vec(),
                Arg::Owned(v) => v.clone(),
            })
            .collect()
    }

    fn parse_all(buf: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut out = Vec::new();
        let mut args = Vec::new();
        let mut pos = 0;
        while pos < buf.len() {
            match parse(&buf[pos..], 512 * 1024 * 1024, &mut args)? {
                Some(n) => {
                    if !args.is_empty() {
                        out.push(resolve(&buf[pos..], &args));
                    }
                    pos += n;
                }
                None => break,
            }
        }
        Ok(out)
    }

    fn v(parts: &[&str]) -> Vec<Vec<u8>> {
        parts.iter().map(|p| p.as_bytes().to_vec()).collect()
    }

    const VALID: &[&[u8]] = &[
        b"*1\r\n$4\r\nPING\r\n",
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n",
        b"*2\r\n$3\r\nGET\r\n$0\r\n\r\n",
        b"*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n",
        b"PING\r\n",
        b"SET k \"a b\\x41\\n\"\r\n",
        b"ECHO 'it\\'s'\n",
    ];

    #[test]
    fn parses_valid_commands() {
        assert_eq!(parse_all(VALID[0]).unwrap(), vec![v(&["PING"])]);
        assert_eq!(
            parse_all(VALID[1]).unwrap(),
            vec![v(&["SET", "k", "hello"])]
        );
        assert_eq!(parse_all(VALID[2]).unwrap(), vec![v(&["GET", ""])]);
        assert_eq!(parse_all(VALID[3]).unwrap(), vec![v(&["ECHO", "a\r\nb"])]);
        assert_eq!(parse_all(VALID[4]).unwrap(), vec![v(&["PING"])]);
        assert_eq!(
            parse_all(VALID[5]).unwrap(),
            vec![v(&["SET", "k", "a bA\n"])]
        );
        assert_eq!(parse_all(VALID[6]).unwrap(), vec![v(&["ECHO", "it's"])]);
    }

    /// Every valid command, cut at every byte offset: the first part is incomplete (or a
    /// complete earlier command), and the whole parses to the same thing.
    #[test]
    fn split_at_every_offset() {
        let mut all = Vec::new();
        for c in VALID {
            all.extend_from_slice(c);
        }
        let expect = parse_all(&all).unwrap();
        assert_eq!(expect.len(), VALID.len());
        for cmd in VALID {
            for cut in 0..cmd.len() {
                let mut args = Vec::new();
                let r = parse(&cmd[..cut], 1 << 20, &mut args).unwrap();
                // A prefix may complete only if it is the whole inline line.
                if let Some(n) = r {
                    assert!(n <= cut);
                }
            }
        }
        // Feed the concatenation a few bytes at a time, as a socket would.
        for chunk in 1..8 {
            let mut buf = Vec::new();
            let mut got = Vec::new();
            let mut args = Vec::new();
            for piece in all.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(n) = parse(&buf, 1 << 20, &mut args).unwrap() {
                    if !args.is_empty() {
                        got.push(resolve(&buf, &args));
                    }
                    buf.drain(..n);
                }
            }
            assert_eq!(got, expect, "chunk size {chunk}");
        }
    }

    #[test]
    fn protocol_errors_have_redis_texts() {
        let mut a = Vec::new();
        let err = |b: &[u8]| parse(b, 1 << 20, &mut Vec::new()).unwrap_err().to_string();
        assert_eq!(
            err(b"*abc\r\n"),
            "ERR Protocol error: invalid multibulk length"
        );
        assert_eq!(
            err(b"*1\r\n$x\r\n"),
            "ERR Protocol error: invalid bulk length"
        );
        assert_eq!(
            err(b"*1\r\n$-1\r\n"),
            "ERR Protocol error: invalid bulk length"
        );
        assert_eq!(
            err(b"*1\r\n:1\r\n"),
            "ERR Protocol error: expected '$', got ':'"
        );
        assert_eq!(
            err(b"SET \"a\r\n"),
            "ERR Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            err(b"SET \"a\"b\r\n"),
            "ERR Protocol error: unbalanced quotes in request"
        );
        assert_eq!(
            parse(b"*1\r\n$2000000\r\n", 1 << 20, &mut a).unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        let big = vec![b'a'; INLINE_MAX + 1];
        assert_eq!(
            parse(&big, 1 << 20, &mut a).unwrap_err(),
            ProtocolError::TooBigInline
        );
        // Complete but long: runs, as redis-server 7.0.15 runs a 66,000-byte line.
        let mut line = b"ECHO ".to_vec();
        line.extend(vec![b'a'; INLINE_MAX + 10]);
        line.extend_from_slice(b"\r\n");
        assert_eq!(parse(&line, 1 << 20, &mut a), Ok(Some(line.len())));
        // 70,000 digits with their line end: an invalid length, not "too big".
        let mut hdr = b"*1\r\n$".to_vec();
        hdr.extend(vec![b'0'; 69_999]);
        hdr.extend_from_slice(b"1\r\na\r\n");
        assert_eq!(
            parse(&hdr, 1 << 20, &mut a).unwrap_err(),
            ProtocolError::InvalidBulkLength
        );
        let mut hdr = b"*".to_vec();
        hdr.extend(vec![b'0'; 69_999]);
        hdr.extend_from_slice(b"1\r\n$4\r\nPING\r\n");
        assert_eq!(
            parse(&hdr, 1 << 20, &mut a).unwrap_err(),
            ProtocolError::InvalidMultibulkLength
        );
        // Headers the one-pass reader (`short_header`) hands to the general path, as
        // redis-server 7.0.15 answers them: leading zeros, signs, past i32.
        for (input, want) in [
            (
                &b"*1\r\n$04\r\nPING\r\n"[..],
                ProtocolError::InvalidBulkLength,
            ),
            (b"*1\r\n$+4\r\nPING\r\n", ProtocolError::InvalidBulkLength),
            (
                b"*01\r\n$4\r\nPING\r\n",
                ProtocolError::InvalidMultibulkLength,
            ),
            (
                b"*+1\r\n$4\r\nPING\r\n",
                ProtocolError::InvalidMultibulkLength,
            ),
            (b"*2147483648\r\n", ProtocolError::InvalidMultibulkLength),
            (b"*1\r\n$12345678901\r\n", ProtocolError::InvalidBulkLength),
        ] {
            assert_eq!(parse(input, 1 << 20, &mut a), Err(want), "{input:?}");
        }
        assert_eq!(parse(b"*1\r\n$0\r\n\r\n", 1 << 20, &mut a), Ok(Some(10)));
        assert_eq!(a, vec![Arg::Range(8, 8)]);
        assert_eq!(parse(b"*2147483647\r\n$1\r\n", 1 << 20, &mut a), Ok(None));
        let mut ok = b"ECHO ".to_vec();
        ok.extend(vec![b'a'; INLINE_MAX - 10]);
        ok.extend_from_slice(b"\r\n");
        assert_eq!(parse(&ok, 1 << 20, &mut a), Ok(Some(ok.len())));
    }

    /// A client that must authenticate first gets Redis 7.0's smaller bounds (checked
    /// against redis-server 7.0.15 with `requirepass`): 10 arguments, 16 KB each; the
    /// general bounds are judged first.
    #[test]
    fn unauthenticated_requests_have_smaller_bounds() {
        let un = Limits::new(1 << 20, true);
        let run = |input: &[u8], lim: Limits| {
            let (mut a, mut p) = (Vec::new(), Partial::default());
            parse_partial_as(input, lim, &mut a, &mut p)
        };
        assert_eq!(
            run(b"*11\r\n", un),
            Err(ProtocolError::UnauthMultibulkLength)
        );
        assert_eq!(
            run(b"*1\r\n$16385\r\n", un),
            Err(ProtocolError::UnauthBulkLength)
        );
        assert_eq!(
            run(b"*1\r\n$99999999999\r\n", un),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(
            run(b"*99999999999\r\n", un),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(run(b"*10\r\n", un), Ok(None));
        assert_eq!(run(b"*1\r\n$16384\r\n", un), Ok(None));
        let authed = Limits::new(1 << 20, false);
        assert_eq!(run(b"*11\r\n", authed), Ok(None));
        assert_eq!(run(b"*1\r\n$16385\r\n", authed), Ok(None));
        let mut big = b"*2\r\n$4\r\nECHO\r\n$20000\r\n".to_vec();
        big.extend(vec![b'x'; 20000]);
        big.extend_from_slice(b"\r\n");
        assert_eq!(run(&big, authed), Ok(Some(big.len())));
        assert_eq!(run(&big, un), Err(ProtocolError::UnauthBulkLength));
        assert_eq!(
            ProtocolError::UnauthMultibulkLength.to_string(),
            "ERR Protocol error: unauthenticated multibulk length"
        );
        assert_eq!(
            ProtocolError::UnauthBulkLength.to_string(),
            "ERR Protocol error: unauthenticated bulk length"
        );
    }

    #[test]
    fn empty_requests_are_ignored() {
        let mut a = Vec::new();
        assert_eq!(parse(b"*0\r\n", 100, &mut a), Ok(Some(4)));
        assert!(a.is_empty());
        assert_eq!(parse(b"*-1\r\n", 100, &mut a), Ok(Some(5)));
        assert_eq!(parse(b"\r\n", 100, &mut a), Ok(Some(2)));
        assert!(a.is_empty());
        assert_eq!(parse(b"   \n", 100, &mut a), Ok(Some(4)));
    }

    type Parsed = (Vec<Vec<Vec<u8>>>, Option<ProtocolError>);

    /// Feeds `input` in the pieces `cuts` makes, as reads would arrive, through
    /// `parse_partial`, consuming each complete request as `process_input` does. Returns the
    /// requests and the protocol error that ended the stream, if any.
    fn feed(input: &[u8], cuts: &[usize], max_bulk: usize) -> Parsed {
        let (mut buf, mut out, mut args) = (Vec::new(), Vec::new(), Vec::new());
        let mut partial = Partial::default();
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let cut = cut.clamp(last, input.len());
            buf.extend_from_slice(&input[last..cut]);
            last = cut;
            loop {
                match parse_partial(&buf, max_bulk, &mut args, &mut partial) {
                    Ok(Some(n)) => {
                        assert!(!partial.active());
                        if !args.is_empty() {
                            out.push(resolve(&buf, &args));
                        }
                        buf.drain(..n);
                    }
                    Ok(None) => {
                        assert!(args.is_empty());
                        break;
                    }
                    Err(e) => return (out, Some(e)),
                }
            }
        }
        (out, None)
    }

    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// A random stream of requests: multibulk ones (payloads with CR/LF in them, empty ones,
    /// `*0`), inline ones, and now and then a corrupted byte.
    fn random_stream(seed: &mut u64) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..(xorshift(seed) % 6) {
            let argc = xorshift(seed) % 5;
            if xorshift(seed).is_multiple_of(4) {
                out.extend_from_slice(b"SET k \"a\\x41 b\" 'c'\r\n");
                continue;
            }
            out.extend_from_slice(format!("*{argc}\r\n").as_bytes());
            for _ in 0..argc {
                let len = (xorshift(seed) % 6) as usize;
                out.extend_from_slice(format!("${len}\r\n").as_bytes());
                out.extend((0..len).map(|_| b"ab\r\n*$"[(xorshift(seed) % 6) as usize]));
                out.extend_from_slice(b"\r\n");
            }
        }
        if !out.is_empty() && xorshift(seed).is_multiple_of(5) {
            let i = (xorshift(seed) % out.len() as u64) as usize;
            out[i] = b"*$\r\n0-9x"[(xorshift(seed) % 8) as usize];
        }
        out
    }

    /// Any stream, split anywhere into any number of reads, parses to exactly what it
    /// parses to in one read (the same requests, the same final error).
    #[test]
    fn random_splits_parse_like_one_read() {
        let mut seed = 0x853c_49e6_748f_ea9bu64;
        for round in 0..20_000 {
            let input = random_stream(&mut seed);
            let whole = feed(&input, &[], 64);
            let mut cuts: Vec<usize> = (0..(xorshift(&mut seed) % 8))
                .map(|_| (xorshift(&mut seed) % (input.len() as u64 + 1)) as usize)
                .collect();
            cuts.sort_unstable();
            assert_eq!(
                feed(&input, &cuts, 64),
                whole,
                "round {round} input {:?} cuts {cuts:?}",
                String::from_utf8_lossy(&input)
            );
            let bytewise: Vec<usize> = (1..input.len()).collect();
            assert_eq!(feed(&input, &bytewise, 64), whole, "byte at a time");
        }
    }

    /// A request of many arguments arriving in small reads is parsed once overall: each
    /// call resumes where the last one stopped (the old parser restarted every time).
    #[test]
    fn resumes_where_it_stopped() {
        let n = 300_000;
        let mut input = format!("*{n}\r\n").into_bytes();
        for _ in 0..n {
            input.extend_from_slice(b"$1\r\nx\r\n");
        }
        let (mut args, mut partial) = (Vec::new(), Partial::default());
        let t = std::time::Instant::now();
        let mut done = None;
        for end in (0..=input.len()).step_by(1024).chain([input.len()]) {
            if let Some(n) = parse_partial(&input[..end], 1 << 20, &mut args, &mut partial).unwrap()
            {
                done = Some(n);
                break;
            }
            assert!(partial.active() || end == 0);
        }
        assert_eq!(done, Some(input.len()));
        assert_eq!(args.len(), n);
        assert!(!partial.active());
        // Quadratic re-parsing takes minutes here in a debug build; linear, well under 1 s.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            t.elapsed()
        );
    }

    /// Random bytes never panic, and whatever they parse to stays inside the buffer.
    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let alphabet = b"*$\r\n0123456789-abc \"'\\x";
        let mut args = Vec::new();
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 4 == 0 {
                        r as u8
                    } else {
                        alphabet[(r as usize / 4) % alphabet.len()]
                    }
                })
                .collect();
            if let Ok(Some(n)) = parse(&buf, 64, &mut args) {
                assert!(n <= buf.len());
                for a in &args {
                    if let Arg::Range(s, e) = a {
                        assert!(s <= e && *e <= n);
                    }
                }
            }
        }
    }
}
