//! The master link's blocking part, run by one `repl-link` thread per REPLICAOF: connect,
//! handshake (PING, AUTH, REPLCONF listening-port, REPLCONF capa eof capa psync2, PSYNC),
//! and for a full resync the RDB transfer (`$<len>` or the diskless `$EOF:<mark>` form),
//! decoded and split by owner shard here, off the shard threads. The socket then goes to the
//! home shard (`super::hand_over`) and this thread waits until the link is lost, then
//! reconnects with a backoff and asks for a partial resync from the cached offset.
//!
//! Everything the master sends is untrusted: malformed replies end the attempt with a logged
//! reason (and a retry), never a panic. Sockets have `repl-timeout` read/write timeouts.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::{Handover, LinkState, RUNTIME, SETTINGS};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest handshake reply line accepted.
const MAX_LINE: usize = 64 * 1024;
const CHUNK: usize = 256 * 1024;

/// The link thread's body: sessions until the REPLICAOF generation `gen` is replaced.
pub(super) fn run(gen: u64, host: String, port: u16, rx: Receiver<()>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if !super::current(gen) {
            return;
        }
        let res = session(gen, &host, port);
        if let Err(e) = &res {
            if super::failover_psync(gen) {
                // The FAILOVER target refused or did not answer: this node is the master
                // again (`failover::abort`, on the home shard).
                super::failover_refused(gen, e.clone());
                return;
            }
        }
        match res {
            Ok(()) => {
                backoff = BACKOFF_MIN;
                // The home shard owns the link now; wait until it reports it lost.
                loop {
                    match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(()) => break,
                        Err(RecvTimeoutError::Timeout) if super::current(gen) => {}
                        Err(_) => return,
                    }
                }
            }
            Err(e) => {
                if !super::current(gen) {
                    return;
                }
                crate::log::warning(&e);
                super::set_link(gen, LinkState::Connect);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// One attempt: connect, handshake, (full sync,) hand over.
fn session(gen: u64, host: &str, port: u16) -> Result<(), String> {
    let rt = RUNTIME.get().ok_or("replication is not initialised")?;
    let timeout = Duration::from_secs(SETTINGS.timeout_secs.load(Ordering::Relaxed).max(1));
    super::set_link(gen, LinkState::Connecting);
    crate::log::notice(&format!("Connecting to MASTER {host}:{port}"));
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("Unable to connect to MASTER: {e}"))?
        .next()
        .ok_or_else(|| format!("Unable to connect to MASTER: no address for {host}"))?;
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
        format!(
            "Error condition on socket for SYNC: {}",
            crate::util::os_text(&e)
        )
    })?;
    let io = |e: std::io::Error| format!("Error setting up the master link: {e}");
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    stream.set_nodelay(true).map_err(io)?;
    crate::log::notice("MASTER <-> REPLICA sync started");
    super::set_link(gen, LinkState::Handshake);
    let stream = match &rt.shared.tun.tls_client() {
        None => Link::Plain(stream),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("Unable to connect to MASTER: TLS server name: {e}"))?;
            let conn = rustls::ClientConnection::new(cfg.clone(), name)
                .map_err(|e| format!("Unable to connect to MASTER: TLS: {e}"))?;
            Link::Tls(Box::new(rustls::StreamOwned::new(conn, stream)))
        }
    };
    let mut r = Reader::new(stream);

    let l = r.command(&["PING"])?;
    if l.starts_with('-')
        && !(l.starts_with("-NOAUTH")
            || l.starts_with("-NOPERM")
            || l.starts_with("-ERR operation not permitted"))
    {
        return Err(format!("Error reply to PING from master: '{l}'"));
    }
    crate::log::notice("Master replied to PING, replication can continue...");

    let (user, pass) = super::lock(&SETTINGS.auth).clone();
    if !pass.is_empty() {
        let l = if user.is_empty() {
            r.command(&["AUTH", &pass])?
        } else {
            r.command(&["AUTH", &user, &pass])?
        };
        if l.starts_with('-') {
            return Err(format!("Unable to AUTH to MASTER: {l}"));
        }
    }
    // `replica-announce-port` / `-ip`: what the master shows (and Sentinel dials) when
    // this node is reached through another address (NAT, containers).
    let port = match SETTINGS.announce_port.load(Ordering::Relaxed) {
        0 => rt.shared.port.to_string(),
        p => p.to_string(),
    };
    let l = r.command(&["REPLCONF", "listening-port", &port])?;
    if l.starts_with('-') {
        crate::log::notice(&format!(
            "(Non critical) Master does not understand REPLCONF listening-port: {l}"
        ));
    }
    let ip = super::lock(&SETTINGS.announce_ip).clone();
    if !ip.is_empty() {
        let l = r.command(&["REPLCONF", "ip-address", &ip])?;
        if l.starts_with('-') {
            crate::log::notice(&format!(
                "(Non critical) Master does not understand REPLCONF ip-address: {l}"
            ));
        }
    }
    let l = r.command(&["REPLCONF", "capa", "eof", "capa", "psync2"])?;
    if l.starts_with('-') {
        crate::log::notice(&format!(
            "(Non critical) Master does not understand REPLCONF capa: {l}"
        ));
    }

    let cached = super::cached(gen);
    let (id, from) = match &cached {
        Some((id, off)) => {
            crate::log::notice(&format!(
                "Trying a partial resynchronization (request {id}:{}).",
                off + 1
            ));
            (id.clone(), (off + 1).to_string())
        }
        None => {
            crate::log::notice("Partial resynchronization not possible (no cached master)");
            ("?".to_string(), "-1".to_string())
        }
    };
    if super::failover_psync(gen) {
        // A FAILOVER: the target becomes the master if it follows us at this offset.
        r.send(&["PSYNC", &id, &from, "FAILOVER"])?;
    } else {
        r.send(&["PSYNC", &id, &from])?;
    }
    let l = r.line_skipping_empty()?;
    if !super::current(gen) {
        return Err("REPLICAOF changed during the handshake".into());
    }
    if let Some(rest) = l.strip_prefix("+FULLRESYNC") {
        let mut words = rest.split_whitespace();
        let replid = words
            .next()
            .filter(|w| w.len() == 40)
            .ok_or_else(|| format!("Master sent an invalid FULLRESYNC reply: '{l}'"))?
            .to_string();
        let offset: i64 = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| format!("Master sent an invalid FULLRESYNC reply: '{l}'"))?;
        crate::log::notice(&format!("Full resync from master: {replid}:{offset}"));
        super::set_link(gen, LinkState::Sync);
        let data = read_rdb(&mut r, gen)?;
        crate::log::notice("MASTER <-> REPLICA sync: Loading DB in memory");
        let cfg = &rt.shared.cfg;
        let crc = rt.shared.tun.rdbchecksum.load(Ordering::Relaxed);
        // Expired keys are kept (now = 0): the master's DELs remove them.
        let split = crate::persist::load::split_at(&data, cfg.shards, cfg.databases, crc, 0)
            .map_err(|e| {
                format!("Failed trying to load the MASTER synchronization DB from socket: {e}")
            })?;
        drop(data);
        crate::persist::install_functions(&split.summary.functions).map_err(|e| {
            format!("Failed trying to load the MASTER synchronization DB from socket: {e}")
        })?;
        crate::log::notice(&format!(
            "Done loading RDB, keys loaded: {}, keys expired: {}.",
            split.summary.keys, split.summary.expired
        ));
        if !super::current(gen) {
            return Err("REPLICAOF changed during the transfer".into());
        }
        {
            let mut m = super::master_fields();
            m.replid = replid;
            m.replid2 = "0".repeat(40);
            m.second_offset = -1;
        }
        let (stream, tls, leftover) = r.into_parts();
        super::hand_over(Handover {
            gen,
            stream,
            tls,
            leftover,
            offset,
            load: Some(split),
        });
        return Ok(());
    }
    if let Some(rest) = l.strip_prefix("+CONTINUE") {
        let Some((old_id, off)) = cached else {
            return Err("Master accepted a partial resynchronization we did not ask for".into());
        };
        crate::log::notice("Successful partial resynchronization with master.");
        let new_id = rest.trim();
        if !new_id.is_empty() && new_id != old_id {
            if new_id.len() != 40 {
                return Err(format!("Master sent an invalid CONTINUE reply: '{l}'"));
            }
            let mut m = super::master_fields();
            m.replid2 = std::mem::replace(&mut m.replid, new_id.to_string());
            m.second_offset = off + 1;
            crate::log::notice(&format!("Master replication ID changed to {new_id}"));
        }
        crate::log::notice("MASTER <-> REPLICA sync: Master accepted a Partial Resynchronization.");
        let (stream, tls, leftover) = r.into_parts();
        super::hand_over(Handover {
            gen,
            stream,
            tls,
            leftover,
            offset: off,
            load: None,
        });
        return Ok(());
    }
    Err(format!("Unexpected reply to PSYNC from master: {l}"))
}

/// Reads the RDB payload after +FULLRESYNC (keep-alive newlines before it skipped).
fn read_rdb(r: &mut Reader, gen: u64) -> Result<Vec<u8>, String> {
    let l = r.line_skipping_empty()?;
    if l.starts_with('-') {
        return Err(format!("MASTER aborted replication with an error: {l}"));
    }
    let Some(spec) = l.strip_prefix('$') else {
        return Err(format!(
            "Bad protocol from MASTER, the first byte is not '$' (we received '{l}'), are you \
             sure the host and port are right?"
        ));
    };
    if let Some(mark) = spec.strip_prefix("EOF:") {
        if mark.len() != 40 {
            return Err(format!("Bad EOF mark from MASTER: '{l}'"));
        }
        crate::log::notice(
            "MASTER <-> REPLICA sync: receiving streamed RDB from master with EOF to memory",
        );
        return r.until_mark(mark.as_bytes(), gen);
    }
    let len: u64 = spec
        .parse()
        .map_err(|_| format!("Bad RDB length from MASTER: '{l}'"))?;
    crate::log::notice(&format!(
        "MASTER <-> REPLICA sync: receiving {len} bytes from master to memory"
    ));
    r.exact(len, gen)
}

/// The link's socket, in clear or under TLS (`tls-replication yes`).
enum Link {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Link {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Link {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Tls(s) => s.flush(),
        }
    }
}

/// A blocking socket with a read buffer: lines for the handshake, bulk for the RDB.
struct Reader {
    stream: Link,
    buf: Vec<u8>,
    pos: usize,
}

impl Reader {
    fn new(stream: Link) -> Reader {
        Reader {
            stream,
            buf: Vec::new(),
            pos: 0,
        }
    }

    /// The socket, its TLS session, and what was read past the consumed bytes.
    fn into_parts(self) -> (TcpStream, Option<rustls::ClientConnection>, Vec<u8>) {
        let rest = self.buf.get(self.pos..).unwrap_or_default().to_vec();
        match self.stream {
            Link::Plain(s) => (s, None, rest),
            Link::Tls(t) => {
                let rustls::StreamOwned { conn, sock } = *t;
                (sock, Some(conn), rest)
            }
        }
    }

    fn send(&mut self, args: &[&str]) -> Result<(), String> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        self.stream
            .write_all(&out)
            .map_err(|e| format!("Error writing to MASTER: {}", crate::util::os_text(&e)))
    }

    /// Sends a command and reads its one-line reply.
    fn command(&mut self, args: &[&str]) -> Result<String, String> {
        self.send(args)?;
        self.line_skipping_empty()
    }

    /// Reads more bytes into the buffer.
    fn fill(&mut self) -> Result<(), String> {
        if self.pos > 0 && self.pos >= self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + CHUNK, 0);
        let n = read_some(
            &mut self.stream,
            self.buf.get_mut(start..).unwrap_or_default(),
        );
        self.buf.truncate(start + n.as_ref().map_or(0, |n| *n));
        n.map(|_| ())
    }

    fn line(&mut self) -> Result<String, String> {
        loop {
            let rest = self.buf.get(self.pos..).unwrap_or_default();
            if let Some(i) = memchr::memchr(b'\n', rest) {
                let raw = rest.get(..i).unwrap_or_default();
                let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
                let line = String::from_utf8_lossy(raw).into_owned();
                self.pos += i + 1;
                return Ok(line);
            }
            if rest.len() > MAX_LINE {
                return Err("Master sent a reply line that is too long".into());
            }
            self.fill()?;
        }
    }

    /// The next non-empty line (a master sends bare newlines as keep-alives).
    fn line_skipping_empty(&mut self) -> Result<String, String> {
        loop {
            let l = self.line()?;
            if !l.is_empty() {
                return Ok(l);
            }
        }
    }

    /// Exactly `len` bytes (the `$<len>` RDB form).
    fn exact(&mut self, len: u64, gen: u64) -> Result<Vec<u8>, String> {
        let len = usize::try_from(len).map_err(|_| "RDB too large".to_string())?;
        let mut out = Vec::with_capacity(len.min(64 << 20));
        let have = self.buf.get(self.pos..).unwrap_or_default();
        let take = have.len().min(len);
        out.extend_from_slice(have.get(..take).unwrap_or_default());
        self.pos += take;
        let mut last = 0;
        while out.len() < len {
            let start = out.len();
            let want = (len - start).min(CHUNK);
            out.resize(start + want, 0);
            let n = read_some(&mut self.stream, out.get_mut(start..).unwrap_or_default());
            out.truncate(start + n.as_ref().map_or(0, |n| *n));
            n?;
            if out.len() - last >= 1 << 20 || out.len() == len {
                last = out.len();
                super::sync_progress(gen, len as i64, out.len() as u64);
            }
        }
        Ok(out)
    }

    /// Everything up to the 40-byte `mark` (the diskless `$EOF:` form); bytes after it stay
    /// buffered (the start of the command stream).
    fn until_mark(&mut self, mark: &[u8], gen: u64) -> Result<Vec<u8>, String> {
        let mut out = self.buf.get(self.pos..).unwrap_or_default().to_vec();
        self.buf.clear();
        self.pos = 0;
        let mut scanned = 0usize;
        let mut last = 0;
        loop {
            let from = scanned.saturating_sub(mark.len());
            if let Some(i) = out
                .get(from..)
                .and_then(|tail| memchr::memmem::find(tail, mark))
            {
                let at = from + i;
                // `out` keeps the RDB; what followed the mark stays buffered.
                let mut tail = out.split_off(at);
                self.buf = tail.split_off(mark.len().min(tail.len()));
                return Ok(out);
            }
            scanned = out.len();
            let start = out.len();
            out.resize(start + CHUNK, 0);
            let n = read_some(&mut self.stream, out.get_mut(start..).unwrap_or_default());
            out.truncate(start + n.as_ref().map_or(0, |n| *n));
            n?;
            if out.len() - last >= 1 << 20 {
                last = out.len();
                super::sync_progress(gen, -1, out.len() as u64);
            }
        }
    }
}

/// One read; the end of the stream and timeouts are errors.
fn read_some(s: &mut impl Read, into: &mut [u8]) -> Result<usize, String> {
    loop {
        match s.read(into) {
            Ok(0) => return Err("Connection closed by MASTER".into()),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("Timeout receiving from MASTER (repl-timeout)".into())
            }
            Err(e) => {
                return Err(format!(
                    "Error reading from MASTER: {}",
                    crate::util::os_text(&e)
                ))
            }
        }
    }
}
