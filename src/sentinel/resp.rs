//! A blocking RESP2 codec for the sentinel: reading requests on its own port, and a tiny
//! client (`Conn`) for the commands it sends to monitored instances and other sentinels.
//! Used only by sentinel threads (plain std sockets, never the shard runtime).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

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

/// Reads one value (any type).
pub fn read_value(r: &mut impl BufRead) -> io::Result<Value> {
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
            let mut buf = vec![0u8; n as usize + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(n as usize);
            Value::Bulk(Some(buf))
        }
        "*" => {
            let n = num()?;
            if n < 0 {
                return Ok(Value::Array(None));
            }
            let mut items = Vec::with_capacity(n.min(1024) as usize);
            for _ in 0..n {
                items.push(read_value(r)?);
            }
            Value::Array(Some(items))
        }
        _ => return Err(bad("unexpected reply type")),
    })
}

/// Reads one request: a multibulk of strings, or an inline command split on spaces.
/// `Ok(None)` is an empty inline line.
pub fn read_request(r: &mut impl BufRead) -> io::Result<Option<Vec<String>>> {
    let line = read_line(r)?;
    if let Some(n) = line.strip_prefix('*') {
        let n: i64 = n.parse().map_err(|_| bad("invalid multibulk length"))?;
        let mut args = Vec::new();
        for _ in 0..n.max(0) {
            let hdr = read_line(r)?;
            let len: usize = hdr
                .strip_prefix('$')
                .and_then(|l| l.parse().ok())
                .ok_or_else(|| bad("expected '$'"))?;
            let mut buf = vec![0u8; len + 2];
            r.read_exact(&mut buf)?;
            buf.truncate(len);
            args.push(String::from_utf8_lossy(&buf).into_owned());
        }
        return Ok(Some(args));
    }
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    Ok(if words.is_empty() { None } else { Some(words) })
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
        assert_eq!(
            read_request(&mut &req[..]).unwrap(),
            Some(vec!["SENTINEL".to_string(), "myid".to_string()])
        );
        assert_eq!(
            read_request(&mut &b"ping  x\r\n"[..]).unwrap(),
            Some(vec!["ping".to_string(), "x".to_string()])
        );
        assert_eq!(bulks(&["a"]), b"*1\r\n$1\r\na\r\n".to_vec());
    }
}
