//! A reference redis-server for differential tests and a RESP reader that returns the exact
//! bytes of one reply (shared by `compat.rs` and `table_walk.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// The reference server.

/// A real redis-server on a free loopback port, without persistence; killed on drop.
pub struct Redis {
    pub port: u16,
    child: Child,
    /// Its own working directory: a stock Redis writes `dump.rdb` there (as a replica, on
    /// SHUTDOWN) and loads it at start, so a shared directory leaks keys between tests.
    dir: std::path::PathBuf,
}

impl Redis {
    pub fn start() -> Redis {
        Redis::start_with(&[])
    }

    /// Starts redis-server with `extra` flags after the defaults (later flags win, so
    /// `--dir D --dbfilename F` points it at a dump).
    pub fn start_with(extra: &[&str]) -> Redis {
        let bin = super::redis_server()
            .expect("redis-server is required for the compat test (tools/test.sh installs it)");
        for _ in 0..5 {
            let port = super::free_port();
            let dir = super::fresh_dir("shardis-test-redis", port);
            let mut child = Command::new(bin)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    &dir.to_string_lossy(),
                ])
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("cannot start redis-server");
            let up = super::wait_for(Duration::from_secs(10), || {
                if let Ok(Some(_)) = child.try_wait() {
                    return true;
                }
                TcpStream::connect(("127.0.0.1", port)).is_ok_and(|mut s| {
                    s.set_read_timeout(Some(Duration::from_millis(500))).ok();
                    let mut b = [0u8; 7];
                    s.write_all(b"PING\r\n").is_ok()
                        && s.read_exact(&mut b).is_ok()
                        && &b == b"+PONG\r\n"
                })
            });
            if up && child.try_wait().ok().flatten().is_none() {
                return Redis { port, child, dir };
            }
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
        }
        panic!("redis-server did not start");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// RESP: request encoding and a reply reader returning the exact bytes of one reply.

pub fn encode_command(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A connection that reads whole replies.
pub struct Client {
    pub r: BufReader<TcpStream>,
    pub w: TcpStream,
}

impl Client {
    pub fn connect(port: u16) -> Client {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.set_nodelay(true).ok();
        let w = s.try_clone().expect("clone socket");
        Client {
            r: BufReader::new(s),
            w,
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.w.write_all(bytes).map_err(|e| format!("write: {e}"))
    }

    /// Reads one complete reply and returns its bytes.
    pub fn read_reply(&mut self) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        read_one(&mut self.r, &mut out)?;
        Ok(out)
    }

    /// True when the peer closed the connection (EOF) within the read timeout.
    pub fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
    }
}

pub fn read_line(r: &mut impl BufRead, out: &mut Vec<u8>) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let n = r
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 {
        return Err("connection closed".into());
    }
    if !line.ends_with(b"\r\n") {
        return Err(format!("line without CRLF: {}", escape(&line)));
    }
    out.extend_from_slice(&line);
    line.truncate(line.len() - 2);
    Ok(line)
}

pub fn read_one(r: &mut impl BufRead, out: &mut Vec<u8>) -> Result<(), String> {
    let line = read_line(r, out)?;
    let Some((&tag, rest)) = line.split_first() else {
        return Err("empty reply line".into());
    };
    let num = || -> Result<i64, String> {
        std::str::from_utf8(rest)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad length in {}", escape(&line)))
    };
    match tag {
        b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => Ok(()),
        b'$' | b'=' | b'!' => {
            let n = num()?;
            if n < 0 {
                return Ok(());
            }
            let mut body = vec![0u8; n as usize + 2];
            r.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
            if !body.ends_with(b"\r\n") {
                return Err("bulk without CRLF".into());
            }
            out.extend_from_slice(&body);
            Ok(())
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let n = num()?;
            let items = if matches!(tag, b'%' | b'|') { n * 2 } else { n };
            for _ in 0..items.max(0) {
                read_one(r, out)?;
            }
            if tag == b'|' {
                // An attribute precedes the reply it describes.
                read_one(r, out)?;
            }
            Ok(())
        }
        _ => Err(format!("unknown reply type in {}", escape(&line))),
    }
}

/// A reply split into its type tag and parts, for shape and unordered comparisons.
pub fn parse(b: &[u8]) -> Option<(Node, usize)> {
    let end = b.windows(2).position(|w| w == b"\r\n")?;
    let (&tag, rest) = b.first().map(|t| (t, &b[1..end]))?;
    let n: i64 = std::str::from_utf8(rest).ok()?.parse().unwrap_or(0);
    let mut pos = end + 2;
    match tag {
        b'$' | b'=' | b'!' if n >= 0 => {
            pos += n as usize + 2;
            Some((Node::Scalar(tag, b[..pos].to_vec()), pos))
        }
        b'*' | b'~' | b'>' | b'%' if n >= 0 => {
            let items = if tag == b'%' { n * 2 } else { n };
            let mut kids = Vec::new();
            for _ in 0..items {
                let (k, used) = parse(b.get(pos..)?)?;
                kids.push(k);
                pos += used;
            }
            Some((Node::Agg(tag, kids), pos))
        }
        _ => Some((Node::Scalar(tag, b[..pos].to_vec()), pos)),
    }
}

pub enum Node {
    Scalar(u8, Vec<u8>),
    Agg(u8, Vec<Node>),
}

/// The reply's type structure: tags and element counts, no values.
pub fn shape(b: &[u8]) -> String {
    pub fn go(n: &Node, out: &mut String) {
        match n {
            Node::Scalar(t, _) => out.push(*t as char),
            Node::Agg(t, kids) => {
                out.push(*t as char);
                out.push_str(&format!("{}[", kids.len()));
                for k in kids {
                    go(k, out);
                }
                out.push(']');
            }
        }
    }
    let mut s = String::new();
    match parse(b) {
        Some((n, _)) => go(&n, &mut s),
        None => s.push_str("<unparsable>"),
    }
    s
}

/// The reply with the elements of its top-level aggregate sorted.
pub fn sorted(b: &[u8]) -> Vec<u8> {
    pub fn flat(n: &Node) -> Vec<u8> {
        match n {
            Node::Scalar(_, b) => b.clone(),
            Node::Agg(t, kids) => {
                let mut out = format!("{}{}\r\n", *t as char, kids.len()).into_bytes();
                for k in kids {
                    out.extend(flat(k));
                }
                out
            }
        }
    }
    match parse(b) {
        Some((Node::Agg(t, kids), _)) => {
            let mut items: Vec<Vec<u8>> = kids.iter().map(flat).collect();
            items.sort();
            let mut out = format!("{}{}\r\n", t as char, items.len()).into_bytes();
            items.into_iter().for_each(|i| out.extend(i));
            out
        }
        _ => b.to_vec(),
    }
}

pub fn escape(b: &[u8]) -> String {
    b.iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect()
}
