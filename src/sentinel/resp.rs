//! A blocking RESP2 codec for the sentinel: reading requests on its own port, and a tiny
//! client (`Conn`) for the commands it sends to monitored instances and other sentinels.
//! Used only by sentinel threads (plain std sockets, never the shard runtime).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::protocol::parser::{parse_partial_as, Arg, Limits, Partial, ProtocolError};

/// One RESP2 value as read off the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The value as text when it is a simple or bulk string.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Simple(s) => Some(s.clone()),
            Value::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = Vec::new();
    let n = r.read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Longest bulk string taken from a monitored instance or another sentinel (Redis's
/// `proto-max-bulk-len` default); a longer one is an error, never an allocation.
const MAX_BULK: usize = 512 << 20;
/// Deepest nesting of arrays in a reply (ours nest two levels).
const MAX_DEPTH: usize = 8;

/// Reads one value (any type).
pub fn read_value(r: &mut impl BufRead) -> io::Result<Value> {
    read_nested(r, 0)
}

fn read_nested(r: &mut impl BufRead, depth: usize) -> io::Result<Value> {
    let line = read_line(r)?;
    let (kind, rest) = line.split_at(line.len().min(1));
    let num = || rest.parse::<i64>().map_err(|_| bad("bad number"));
    Ok(match kind {
        "+" => Value::Simple(rest.to_string()),
        "-" => Value::Error(rest.to_string()),
        ":" => Value::Int(num()?),
        "$" => {
            let n = num()?;
            if n < 0 {
                return Ok(Value::Bulk(None));
            }
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= MAX_BULK)
                .ok_or_else(|| bad("bulk too long"))?;
            // Grows as the bytes arrive: a length alone allocates nothing.
            let mut buf = Vec::with_capacity(n.min(64 << 10) + 2);
            r.take(n as u64 + 2).read_to_end(&mut buf)?;
            if buf.len() != n + 2 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.truncate(n);
            Value::Bulk(Some(buf))
        }
        "*" => {
            let n = num()?;
            if n < 0 {
                return Ok(Value::Array(None));
            }
            if depth >= MAX_DEPTH {
                return Err(bad("reply nested too deep"));
            }
            let mut items = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                items.push(read_nested(r, depth + 1)?);
            }
            Value::Array(Some(items))
        }
        _ => return Err(bad("unexpected reply type")),
    })
}

/// Why a client's request stream ended.
#[derive(Debug)]
pub enum ReqError {
    /// The connection closed or failed.
    Io,
    /// The request broke the protocol: the error goes back, then the connection closes.
    Protocol(ProtocolError),
}

/// A client's requests on the sentinel port, parsed by the data server's parser, so the
/// limits and error texts are Redis's: `proto-max-bulk-len` (512 MB), and for a client
/// that must still authenticate 10 arguments of 16 KB at most.
pub struct Requests<R> {
    r: R,
    /// Bytes read; requests before `start` are done (dropped once per read, not per
    /// request, so a pipeline of small requests is not moved once for each).
    buf: Vec<u8>,
    start: usize,
    args: Vec<Arg>,
    partial: Partial,
}

/// The most a client may have sent without completing a request (Redis's default
/// `client-query-buffer-limit`).
const QUERY_LIMIT: usize = 1 << 30;

impl<R: Read> Requests<R> {
    pub fn new(r: R) -> Requests<R> {
        Requests {
            r,
            buf: Vec::new(),
            start: 0,
            args: Vec::new(),
            partial: Partial::default(),
        }
    }

    /// The next request's arguments; an empty vector for an empty line or `*0`, which
    /// Redis ignores.
    pub fn next(&mut self, unauth: bool) -> Result<Vec<String>, ReqError> {
        let lim = Limits::new(MAX_BULK, unauth);
        loop {
            let pending = self.buf.get(self.start..).unwrap_or_default();
            match parse_partial_as(pending, lim, &mut self.args, &mut self.partial) {
                Ok(Some(n)) => {
                    let args = self
                        .args
                        .drain(..)
                        .map(|a| match a {
                            Arg::Range(s, e) => {
                                String::from_utf8_lossy(pending.get(s..e).unwrap_or_default())
                                    .into_owned()
                            }
                            Arg::Owned(v) => String::from_utf8_lossy(&v).into_owned(),
                        })
                        .collect();
                    self.start += n;
                    return Ok(args);
                }
                Ok(None) => {}
                Err(e) => return Err(ReqError::Protocol(e)),
            }
            if pending.len() > QUERY_LIMIT {
                return Err(ReqError::Io);
            }
            // The parse's progress is relative to `start`, so moving the rest to the front
            // keeps it valid.
            self.buf.drain(..self.start);
            self.start = 0;
            let mut chunk = [0u8; 16 << 10];
            match self.r.read(&mut chunk) {
                Ok(0) | Err(_) => return Err(ReqError::Io),
                Ok(n) => self
                    .buf
                    .extend_from_slice(chunk.get(..n).unwrap_or_default()),
            }
        }
    }
}

/// Encodes a command as a multibulk.
pub fn encode_cmd(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reply builders (RESP2 bytes).
pub fn simple(s: &str) -> Vec<u8> {
    format!("+{s}\r\n").into_bytes()
}
pub fn error(s: &str) -> Vec<u8> {
    format!("-{s}\r\n").into_bytes()
}
pub fn int(i: i64) -> Vec<u8> {
    format!(":{i}\r\n").into_bytes()
}
pub fn bulk(s: &str) -> Vec<u8> {
    let mut out = format!("${}\r\n", s.len()).into_bytes();
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}
pub const NULL_ARRAY: &[u8] = b"*-1\r\n";
/// A null reply: `$-1` (or `*-1` for an array) under RESP2, `_` under RESP3.
pub fn null(proto: u8, array: bool) -> Vec<u8> {
    match (proto, array) {
        (3, _) => b"_\r\n".to_vec(),
        (_, true) => NULL_ARRAY.to_vec(),
        _ => b"$-1\r\n".to_vec(),
    }
}
/// Field/value pairs of bulk strings: a map under RESP3, a flat array under RESP2.
pub fn map_bulks<S: AsRef<str>>(pairs: &[S], proto: u8) -> Vec<u8> {
    if proto != 3 {
        return bulks(pairs);
    }
    let mut out = format!("%{}\r\n", pairs.len() / 2).into_bytes();
    for s in pairs {
        out.extend(bulk(s.as_ref()));
    }
    out
}
/// A pub/sub message or (un)subscribe confirmation: a push under RESP3, an array under
/// RESP2.
pub fn push(items: &[Vec<u8>], proto: u8) -> Vec<u8> {
    let mut out = array(items);
    if proto == 3 {
        out[0] = b'>';
    }
    out
}
/// An array of already-encoded items.
pub fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", items.len()).into_bytes();
    for i in items {
        out.extend_from_slice(i);
    }
    out
}
/// An array of bulk strings.
pub fn bulks<S: AsRef<str>>(items: &[S]) -> Vec<u8> {
    let v: Vec<Vec<u8>> = items.iter().map(|s| bulk(s.as_ref())).collect();
    array(&v)
}

/// A blocking client connection with timeouts on connect, read and write.
pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    pub fn connect(ip: &str, port: u16, timeout: Duration) -> io::Result<Conn> {
        let addr = (ip, port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| bad("no address"))?;
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    /// The local address of the link (the address other sentinels can reach us at when
    /// nothing better is configured).
    pub fn local_ip(&self) -> String {
        self.w
            .local_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|_| "127.0.0.1".into())
    }

    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.w.set_read_timeout(Some(t))
    }

    /// Sends one command and reads its reply.
    pub fn call(&mut self, args: &[&str]) -> io::Result<Value> {
        self.send(args)?;
        self.read()
    }

    pub fn send(&mut self, args: &[&str]) -> io::Result<()> {
        self.w.write_all(&encode_cmd(args))
    }

    pub fn read(&mut self) -> io::Result<Value> {
        read_value(&mut self.r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_values_and_requests() {
        let bytes = b"*3\r\n:1\r\n$3\r\nabc\r\n:7\r\n".to_vec();
        let v = read_value(&mut &bytes[..]).unwrap();
        assert_eq!(
            v,
            Value::Array(Some(vec![
                Value::Int(1),
                Value::Bulk(Some(b"abc".to_vec())),
                Value::Int(7)
            ]))
        );
        let req = encode_cmd(&["SENTINEL", "myid"]);
        let next = |bytes: &[u8], unauth: bool| Requests::new(bytes).next(unauth);
        assert_eq!(next(&req, false).unwrap(), vec!["SENTINEL", "myid"]);
        assert_eq!(next(b"ping  x\r\n", false).unwrap(), vec!["ping", "x"]);
        assert_eq!(next(b"*0\r\n", false).unwrap(), Vec::<String>::new());
        // Pipelined requests arriving 5 bytes at a time, cut anywhere.
        struct Trickle(Vec<u8>);
        impl Read for Trickle {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(5).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0.drain(..n);
                Ok(n)
            }
        }
        let mut bytes = Vec::new();
        for i in 0..50 {
            bytes.extend(encode_cmd(&["PING", &format!("m{i}")]));
            bytes.extend(format!("ECHO i{i}\r\n").as_bytes());
        }
        let mut reqs = Requests::new(Trickle(bytes));
        for i in 0..50 {
            assert_eq!(
                reqs.next(false).unwrap(),
                vec!["PING".to_string(), format!("m{i}")]
            );
            assert_eq!(
                reqs.next(false).unwrap(),
                vec!["ECHO".to_string(), format!("i{i}")]
            );
        }
        assert!(matches!(reqs.next(false), Err(ReqError::Io)));
        assert_eq!(bulks(&["a"]), b"*1\r\n$1\r\na\r\n".to_vec());
    }
}
