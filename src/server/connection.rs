//! One client connection's state on the shard that accepted it: read buffer (and how far the
//! request at its start has been parsed across reads), output buffer, the ordered reply slots that let replies from other shards arrive out of order yet go out
//! in request order, and the client attributes CLIENT LIST shows. Touched only by its shard.
//!
//! Buffers grow to the largest request or reply burst and are handed back by the shard's
//! once-a-second client cron (`Conn::shrink_buffers`, after Redis's
//! `clientsCronResizeQueryBuffer`), never on the per-command path.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::pubsub::Subs;
use crate::protocol::parser::Partial;
use crate::protocol::reply::Reply;

pub use crate::commands::client_info::ClientInfo;

/// The receive a connection has in the ring, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvState {
    /// Nothing armed.
    Idle,
    /// A one-shot receive owns `rbuf`.
    Single,
    /// A multishot receive (its ring operation id) fills pool buffers; `rbuf` stays here.
    Multishot(u64),
    /// The multishot receive was asked to stop; its final completion is still due.
    Cancelling,
}

/// Buffer bytes a connection keeps however long it lives; above this the client cron
/// hands them back (Redis's PROTO_RESIZE_THRESHOLD is 32 KiB; receives reserve 16 KiB).
pub const KEEP_BUF: usize = 64 * 1024;

/// Bytes of a block that replies waiting in slots are kept in (`slot_copy`).
const SLOT_BLOCK: usize = 2048;

/// `data` copied into the slot block and split off as a view of it: no allocation per
/// waiting reply (a fresh block when this one has no room; the old one is freed with its
/// last waiting reply).
fn slot_copy(slot_buf: &mut BytesMut, data: &[u8]) -> Bytes {
    if slot_buf.capacity() - slot_buf.len() < data.len() {
        *slot_buf = BytesMut::with_capacity(data.len().max(SLOT_BLOCK));
    }
    slot_buf.extend_from_slice(data);
    slot_buf.split().freeze()
}

pub struct Conn {
    pub fd: RawFd,
    pub gen: u32,
    /// The read buffer; `None` while a one-shot receive owns it.
    pub rbuf: Option<BytesMut>,
    /// How far the request at the start of `rbuf` has been parsed, while it spans reads.
    pub partial: Partial,
    /// Largest capacity `rbuf` showed on a receive since it was last shrunk: the block the
    /// buffer holds. After `split_to` the buffer is a view into that block whose own
    /// `capacity()` is only the rest, so this is what the block really costs.
    pub qalloc: usize,
    /// Most unparsed input seen on a receive since the last client cron (Redis's
    /// `querybuf_peak`): a buffer far above it is shrunk even while the client is busy.
    pub qpeak: usize,
    pub recv: RecvState,
    /// Encoded replies not yet handed to the kernel.
    pub out: Vec<u8>,
    /// A spare buffer returned by the last finished send, reused to avoid allocating.
    pub spare: Vec<u8>,
    pub sending: bool,
    /// Bytes of the send in flight not yet taken by the kernel.
    pub inflight: usize,
    /// Replies waiting for an earlier one (from another shard) before they can go out.
    pub slots: VecDeque<Option<Bytes>>,
    /// Where this shard's own replies waiting in `slots` are kept (`slot_copy`).
    slot_buf: BytesMut,
    /// Sequence number of `slots[0]`.
    pub slot_base: u64,
    /// Parsing is paused until the reply with this sequence number arrives (a multi-shard
    /// command must finish before the next command of this client starts).
    pub blocked_on: Option<u64>,
    /// Waiting in a blocking command (BLPOP...): the waiter id (`coord::blocking`). The socket
    /// is still read meanwhile, so a disconnect ends the wait.
    pub waiting: Option<u64>,
    /// Batches of this client's commands sent to other shards whose replies are due.
    pub batches_out: u32,
    /// Ready output was held back once for those replies (`Worker::flush_dirty`).
    pub held: bool,
    /// Under `appendfsync always`: `out[..aof_free]` may be sent; each mark `(offset,
    /// end)` holds `out[..end]` until the log is durable up to journal `offset`
    /// (`server::worker::aof`). Empty for every other client.
    pub aof_free: usize,
    pub aof_marks: VecDeque<(u64, usize)>,
    /// In the worker's list of connections to flush when the log moves on.
    pub aof_listed: bool,
    /// Stop reading; close once every reply has been sent.
    pub closing: bool,
    /// The peer half-closed while input behind a blocking command was still unparsed
    /// (a multishot receive can see the end before we parse everything): `closing` is set
    /// once that input has run.
    pub eof: bool,
    /// Queued in the worker's dirty list for this pass.
    pub dirty: bool,
    /// `process_input` calls running for this connection (up the stack): a long script's
    /// busy pump leaves its input alone (`Worker::busy_pump`).
    pub in_input: u8,
    pub client: ClientInfo,
    /// Pub/Sub subscriptions (this shard's `pubsub::Registry` points back here).
    pub subs: Subs,
    /// When the unsent output first reached the pubsub soft limit (cleared once below).
    pub soft_since: Option<Instant>,
    /// MULTI queue and WATCHed keys; `None` for the common client that uses neither.
    pub tx: Option<Box<crate::coord::tx::ConnTx>>,
    /// Replication handshake and replica-link state (`repl::master`); `None` for clients.
    pub replica_link: Option<Box<crate::repl::master::Link>>,
    /// This is the link to our master (`repl`): its commands always run (no READONLY, no
    /// ACL), see expired keys as live, and its replies are dropped instead of sent (only
    /// `REPLCONF ACK`s go back).
    pub master: bool,
    /// The TLS session of a connection accepted on `tls-port` (`tls`): its receives carry
    /// ciphertext, decrypted into `rbuf`, and its output is encrypted at flush. `None` for
    /// plain connections, which never look further.
    pub tls: Option<Box<crate::tls::Session>>,
    /// In MONITOR mode (`server::monitor`; CLIENT LIST flag `O`).
    pub monitor: bool,
    /// CLIENT REPLY mode (`On` for nearly every client: one test per command).
    pub reply_mode: ReplyMode,
    /// The running command's reply is dropped (CLIENT REPLY OFF / SKIP): `push_reply`
    /// writes nothing and slots reserved meanwhile are filled with nothing.
    pub mute: bool,
    /// Reply slots reserved while muted (filled with nothing when their reply arrives).
    pub muted_slots: Vec<u64>,
    /// A command held back by CLIENT PAUSE (`server::pause`): it runs, then the rest of
    /// the input, once the pause ends.
    pub postponed: Option<Vec<Bytes>>,
    /// CLIENT TRACKING state; `None` for clients that never enabled it.
    pub track: Option<Box<super::tracking::ClientTrack>>,
    /// Replies held for replica acknowledgements (`min-replicas-ack`, `repl::master`);
    /// `None` unless that mode ever held one of this client's writes.
    pub acks: Option<Box<crate::repl::master::AckHolds>>,
}

/// CLIENT REPLY: whether replies are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    /// CLIENT REPLY SKIP just ran: the next command's reply is dropped.
    SkipNext,
    /// The command running now is the skipped one.
    Skipping,
}

impl Conn {
    pub fn new(fd: RawFd, gen: u32, client: ClientInfo) -> Conn {
        Conn {
            fd,
            gen,
            rbuf: Some(BytesMut::new()),
            partial: Partial::default(),
            qalloc: 0,
            qpeak: 0,
            recv: RecvState::Idle,
            out: Vec::new(),
            spare: Vec::new(),
            sending: false,
            inflight: 0,
            slots: VecDeque::new(),
            slot_buf: BytesMut::new(),
            slot_base: 0,
            blocked_on: None,
            waiting: None,
            batches_out: 0,
            held: false,
            aof_free: 0,
            aof_marks: VecDeque::new(),
            aof_listed: false,
            closing: false,
            eof: false,
            dirty: false,
            in_input: 0,
            client,
            subs: Subs::default(),
            soft_since: None,
            tx: None,
            replica_link: None,
            master: false,
            tls: None,
            monitor: false,
            reply_mode: ReplyMode::On,
            mute: false,
            muted_slots: Vec::new(),
            postponed: None,
            track: None,
            acks: None,
        }
    }

    /// Output not yet taken by the kernel: buffered replies plus the rest of the send in
    /// flight (replies waiting in slots are not counted).
    pub fn pending_output(&self) -> usize {
        self.out.len() + self.inflight
    }

    /// Appends a finished reply in request order (nothing while muted by CLIENT REPLY).
    pub fn push_reply(&mut self, r: &Reply) {
        if self.mute {
            return;
        }
        if self.slots.is_empty() {
            r.encode(self.client.resp, &mut self.out);
        } else {
            // Encoded at the output buffer's end (the send in flight has its own buffer),
            // then moved into the slot block.
            let start = self.out.len();
            r.encode(self.client.resp, &mut self.out);
            let b = slot_copy(
                &mut self.slot_buf,
                self.out.get(start..).unwrap_or_default(),
            );
            self.out.truncate(start);
            self.slots.push_back(Some(b));
        }
    }

    /// Appends raw, already-encoded bytes in request order.
    pub fn push_raw(&mut self, b: &[u8]) {
        if self.slots.is_empty() {
            self.out.extend_from_slice(b);
        } else {
            let b = slot_copy(&mut self.slot_buf, b);
            self.slots.push_back(Some(b));
        }
    }

    /// Reserves a place for a reply that will arrive later; returns its sequence number.
    pub fn reserve(&mut self) -> u64 {
        self.slots.push_back(None);
        let seq = self.slot_base + self.slots.len() as u64 - 1;
        if self.mute {
            self.muted_slots.push(seq);
        }
        seq
    }

    /// `fill` with borrowed bytes (a part of a batch's replies): the reply the output buffer
    /// waits for goes straight into it; one that must wait is copied into the slot block.
    pub fn fill_slice(&mut self, seq: u64, data: &[u8]) {
        let front = seq == self.slot_base
            && self.slots.front().is_some_and(|s| s.is_none())
            && !self.muted_slots.contains(&seq);
        if !front {
            let b = slot_copy(&mut self.slot_buf, data);
            self.fill(seq, b);
            return;
        }
        self.slots.pop_front();
        if !self.dropped(seq) {
            self.out.extend_from_slice(data);
        }
        self.slot_base += 1;
        self.drain_ready(seq);
    }

    /// Fills a reserved place and moves every reply now in order to the output buffer.
    pub fn fill(&mut self, seq: u64, bytes: Bytes) {
        let Some(idx) = seq.checked_sub(self.slot_base) else {
            return;
        };
        let bytes = match self.muted_slots.iter().position(|&m| m == seq) {
            Some(at) => {
                self.muted_slots.swap_remove(at);
                Bytes::new()
            }
            None => bytes,
        };
        if let Some(slot) = self.slots.get_mut(idx as usize) {
            *slot = Some(bytes);
        }
        self.drain_ready(seq);
    }

    /// Moves every reply now in order to the output buffer (`seq` was just filled).
    fn drain_ready(&mut self, seq: u64) {
        while let Some(Some(_)) = self.slots.front() {
            if let Some(Some(b)) = self.slots.pop_front() {
                if !self.dropped(self.slot_base) {
                    self.out.extend_from_slice(&b);
                }
            }
            self.slot_base += 1;
        }
        if self.blocked_on.is_some_and(|b| b == seq) {
            self.blocked_on = None;
        }
    }

    /// Whether the reply in slot `seq` is dropped: a write whose acknowledgement timed out
    /// had its reply replaced by the error (`repl::master::AckHolds`).
    fn dropped(&mut self, seq: u64) -> bool {
        let Some(a) = self.acks.as_mut() else {
            return false;
        };
        match a.discard.iter().position(|&d| d == seq) {
            Some(i) => {
                a.discard.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Notes the read buffer's size after a receive (for `shrink_buffers`).
    #[inline]
    pub fn note_input(&mut self) {
        if let Some(b) = &self.rbuf {
            self.qpeak = self.qpeak.max(b.len());
            self.qalloc = self.qalloc.max(b.capacity());
        }
    }

    /// Bytes this connection's buffers hold (query block, output, spare, reply slots).
    pub fn buffer_bytes(&self) -> usize {
        let rbuf = self
            .rbuf
            .as_ref()
            .map_or(0, |b| b.capacity())
            .max(self.qalloc);
        let slots: usize = self.slots.iter().flatten().map(|b| b.len()).sum();
        rbuf + self.out.capacity() + self.spare.capacity() + slots + self.slot_buf.capacity()
    }

    /// What INFO's `client_recent_max_input_buffer` samples: the read buffer's block.
    pub fn input_bytes(&self) -> usize {
        self.rbuf
            .as_ref()
            .map_or(0, |b| b.capacity())
            .max(self.qalloc)
    }

    /// What INFO's `client_recent_max_output_buffer` samples: replies not yet sent
    /// (waiting, and in the send in flight).
    pub fn output_bytes(&self) -> usize {
        let slots: usize = self.slots.iter().flatten().map(|b| b.len()).sum();
        self.out.len() + if self.sending { self.inflight } else { 0 } + slots
    }

    /// The client cron's resize (Redis's `clientsCronResizeQueryBuffer` and output-buffer
    /// trim): an empty read buffer whose block is over [`KEEP_BUF`] is dropped when the
    /// client has been idle for `idle`, or when the block is more than twice the most input
    /// seen since the last cron; an empty output buffer or spare over `KEEP_BUF` is dropped.
    /// The next receive or reply allocates what it needs again. A read buffer owned by a
    /// one-shot receive in flight is left alone (`arm_single` drops it when re-arming).
    pub fn shrink_buffers(&mut self, idle: bool) {
        if let Some(b) = &self.rbuf {
            let block = b.capacity().max(self.qalloc);
            if b.is_empty() && block > KEEP_BUF && (idle || self.qpeak * 2 < block) {
                self.rbuf = Some(BytesMut::new());
                self.qalloc = 0;
            }
        }
        self.qpeak = 0;
        if self.out.is_empty() && self.out.capacity() > KEEP_BUF {
            self.out = Vec::new();
        }
        if self.spare.capacity() > KEEP_BUF {
            self.spare = Vec::new();
        }
        if self.slots.is_empty() && self.slots.capacity() > 64 {
            self.slots = VecDeque::new();
        }
        if self.slots.is_empty() {
            self.slot_buf = BytesMut::new();
        }
    }

    /// Every reply is out of our hands (sent or in the kernel's send).
    pub fn drained(&self) -> bool {
        self.out.is_empty() && self.slots.is_empty() && !self.sending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_leave_in_request_order() {
        let mut c = Conn::new(-1, 0, ClientInfo::new(1, String::new(), String::new()));
        c.push_reply(&Reply::Int(1));
        let a = c.reserve();
        c.push_reply(&Reply::Int(3));
        let b = c.reserve();
        c.fill(b, Bytes::from_static(b":4\r\n"));
        assert_eq!(c.out, b":1\r\n");
        c.fill(a, Bytes::from_static(b":2\r\n"));
        assert_eq!(c.out, b":1\r\n:2\r\n:3\r\n:4\r\n");
        assert!(c.slots.is_empty());
        c.push_reply(&Reply::Ok);
        assert!(c.out.ends_with(b"+OK\r\n"));
    }
}
