//! Incremental request parser over a byte buffer: RESP multibulk (`*N\r\n$len\r\n...`) and
//! inline commands (`PING\r\n`, with Redis's quoting rules). It never allocates for
//! multibulk arguments: it reports their byte ranges, and the connection slices them out of
//! its frozen read buffer. Runs on the shard thread that owns the connection.
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
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, max_bulk, args),
        Some(_) => parse_inline(buf, args),
    }
}

/// Finds the `\r` that ends a header line starting at `from`; Redis looks for `\r` only.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\r', buf.get(from..)?).map(|i| from + i)
}

fn parse_multibulk(
    buf: &[u8],
    max_bulk: usize,
    args: &mut Vec<Arg>,
) -> Result<Option<usize>, ProtocolError> {
    let Some(cr) = line_end(buf, 0) else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError::TooBigMbulkCount);
        }
        return Ok(None);
    };
    if cr > INLINE_MAX {
        return Err(ProtocolError::TooBigMbulkCount);
    }
    // The header needs its "\n" too before we act on it.
    if cr + 1 >= buf.len() {
        return Ok(None);
    }
    let count = match super::parse_i64(&buf[1..cr]) {
        Some(n) if n <= i32::MAX as i64 => n,
        _ => return Err(ProtocolError::InvalidMultibulkLength),
    };
    let mut pos = cr + 2;
    if count <= 0 {
        return Ok(Some(pos));
    }
    args.reserve((count as usize).min(1024));
    for _ in 0..count {
        let Some(cr) = line_end(buf, pos) else {
            if buf.len() - pos > INLINE_MAX {
                return Err(ProtocolError::TooBigBulkCount);
            }
            return Ok(None);
        };
        if cr - pos > INLINE_MAX {
            return Err(ProtocolError::TooBigBulkCount);
        }
        if cr + 1 >= buf.len() {
            return Ok(None);
        }
        if buf[pos] != b'$' {
            return Err(ProtocolError::ExpectedDollar(buf[pos]));
        }
        let len = match super::parse_i64(&buf[pos + 1..cr]) {
            Some(n) if n >= 0 && (n as u64) <= max_bulk as u64 => n as usize,
            _ => return Err(ProtocolError::InvalidBulkLength),
        };
        let start = cr + 2;
        // Redis skips the two bytes after the payload without looking at them.
        let end = start + len;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        args.push(Arg::Range(start, end));
        pos = end + 2;
    }
    Ok(Some(pos))
}

fn parse_inline(buf: &[u8], args: &mut Vec<Arg>) -> Result<Option<usize>, ProtocolError> {
    let Some(nl) = memchr::memchr(b'\n', buf) else {
        if buf.len() > INLINE_MAX {
            return Err(ProtocolError::TooBigInline);
        }
        return Ok(None);
    };
    // Redis reads 16 KB at a time and gives up once 64 KB hold no newline, so a longer line
    // fails there whatever its ending; fail it here too, however the bytes were chunked.
    if nl > INLINE_MAX {
        return Err(ProtocolError::TooBigInline);
    }
    let mut line = &buf[..nl];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
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
        // Complete but too long: still too big, as Redis sees it in 16 KB reads.
        let mut line = vec![b'a'; INLINE_MAX + 10];
        line.extend_from_slice(b"\r\n");
        assert_eq!(
            parse(&line, 1 << 20, &mut a).unwrap_err(),
            ProtocolError::TooBigInline
        );
        let mut ok = b"ECHO ".to_vec();
        ok.extend(vec![b'a'; INLINE_MAX - 10]);
        ok.extend_from_slice(b"\r\n");
        assert_eq!(parse(&ok, 1 << 20, &mut a), Ok(Some(ok.len())));
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
