//! A small load generator for mixed workloads that `redis-benchmark` cannot run: every
//! connection interleaves SET and GET at a fixed ratio (`--ratio 1:10` sends one SET, then
//! ten GETs, and again), the way memtier_benchmark's `--ratio` does, over random keys
//! `key:NNNNNNNNNNNN` like redis-benchmark's `-r`. One thread drives all connections on one
//! io_uring (shardis's own `runtime::ring`), so pin it to a core with `taskset` as the bench
//! tool does. Prints a summary and a `totals` line that `tools/bench.py` reads.
//!
//! ```text
//! cargo build --release --example loadgen
//! taskset -c 1 target/release/examples/loadgen --port 6379 --clients 50 --requests 200000 \
//!     --pipeline 1 --ratio 1:10 --data-size 32 --key-max 100000
//! ```

use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use clap::Parser;
use shardis::runtime::ring::{Completion, OpBuf, Ring};

#[derive(Parser, Debug)]
#[command(about = "Mixed SET:GET load at a fixed ratio per connection")]
struct Args {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 6379)]
    port: u16,
    #[arg(long, default_value_t = 50)]
    clients: usize,
    /// Requests in all (SETs and GETs together).
    #[arg(long, default_value_t = 200_000)]
    requests: u64,
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// SET:GET, e.g. 1:10.
    #[arg(long, default_value = "1:10")]
    ratio: String,
    #[arg(long, default_value_t = 32)]
    data_size: usize,
    /// Keys are drawn uniformly from 0..key-max.
    #[arg(long, default_value_t = 100_000)]
    key_max: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const TAG_SEND: u64 = 1 << 32;
const TAG_RECV: u64 = 2 << 32;

struct Client {
    stream: TcpStream,
    rng: u64,
    /// Position in the SET:GET cycle.
    seq: u64,
    /// Replies still due for the batch in flight, and when it was sent.
    due: usize,
    sent_at: Instant,
    rbuf: Option<BytesMut>,
}

/// Counts complete RESP replies (simple strings, errors, integers, bulk strings, null) at the
/// front of `buf` and consumes them. Returns (replies, errors, nulls).
fn take_replies(buf: &mut BytesMut) -> Result<(usize, usize, usize), String> {
    let (mut n, mut errors, mut nulls) = (0, 0, 0);
    while let Some(eol) = memchr::memchr(b'\n', buf) {
        let line = buf.get(..eol.saturating_sub(1)).unwrap_or_default();
        let used = match line.first() {
            Some(b'+') | Some(b':') => eol + 1,
            Some(b'-') => {
                errors += 1;
                eol + 1
            }
            Some(b'$') => {
                let len: i64 = std::str::from_utf8(line.get(1..).unwrap_or_default())
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        format!("bad bulk header {:?}", String::from_utf8_lossy(line))
                    })?;
                if len < 0 {
                    nulls += 1;
                    eol + 1
                } else {
                    let end = eol + 1 + len as usize + 2;
                    if buf.len() < end {
                        break;
                    }
                    end
                }
            }
            _ => {
                return Err(format!(
                    "unexpected reply {:?}",
                    String::from_utf8_lossy(line)
                ))
            }
        };
        buf.advance(used);
        n += 1;
    }
    Ok((n, errors, nulls))
}

fn next_rand(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(&args) {
        eprintln!("loadgen: {e}");
        std::process::exit(1);
    }
}

fn run(args: &Args) -> Result<(), String> {
    let (sets, gets) = args
        .ratio
        .split_once(':')
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
        .filter(|(a, b)| a + b > 0)
        .ok_or_else(|| format!("--ratio wants SET:GET such as 1:10, got {}", args.ratio))?;
    let cycle = sets + gets;
    let pipeline = args.pipeline.max(1);
    let value = "x".repeat(args.data_size);
    let mut ring = Ring::new(1024).map_err(|e| format!("io_uring: {e}"))?;
    let mut clients = Vec::with_capacity(args.clients);
    for i in 0..args.clients.max(1) {
        let stream = TcpStream::connect((args.host.as_str(), args.port))
            .map_err(|e| format!("connect {}:{}: {e}", args.host, args.port))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        clients.push(Client {
            stream,
            rng: (args.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ (i as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D))
                | 1,
            // Spread the connections over the cycle so SETs do not all go out at once.
            seq: i as u64 % cycle,
            due: 0,
            sent_at: Instant::now(),
            rbuf: Some(BytesMut::with_capacity(16 * 1024)),
        });
    }
    let mut issued = 0u64;
    let (mut n_set, mut n_get) = (0u64, 0u64);
    let mut lat_us: Vec<u32> = Vec::with_capacity(args.requests as usize);
    let (mut errors, mut nulls) = (0usize, 0usize);

    // Builds and sends the next batch of connection `i`; false when no requests are left.
    let mut send_batch = |ring: &mut Ring, c: &mut Client, i: usize, issued: &mut u64| -> bool {
        let n = (args.requests - *issued).min(pipeline as u64) as usize;
        if n == 0 {
            return false;
        }
        let mut out = Vec::with_capacity(n * (64 + args.data_size));
        for _ in 0..n {
            let key = format!("key:{:012}", next_rand(&mut c.rng) % args.key_max.max(1));
            if c.seq % cycle < sets {
                out.extend_from_slice(
                    format!(
                        "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
                        key.len(),
                        value.len()
                    )
                    .as_bytes(),
                );
                n_set += 1;
            } else {
                out.extend_from_slice(
                    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
                );
                n_get += 1;
            }
            c.seq += 1;
        }
        *issued += n as u64;
        c.due = n;
        c.sent_at = Instant::now();
        ring.send(c.stream.as_raw_fd(), out, 0, TAG_SEND | i as u64);
        true
    };

    let t0 = Instant::now();
    let mut active = 0usize;
    for (i, c) in clients.iter_mut().enumerate() {
        if send_batch(&mut ring, c, i, &mut issued) {
            active += 1;
            let buf = c.rbuf.take().unwrap_or_default();
            ring.recv(c.stream.as_raw_fd(), buf, 4096, TAG_RECV | i as u64, false);
        }
    }
    let mut comps: Vec<Completion> = Vec::new();
    while active > 0 {
        ring.submit_and_wait(true, Some(Duration::from_secs(10)))
            .map_err(|e| format!("io_uring_enter: {e}"))?;
        ring.drain(&mut comps);
        if comps.is_empty() && t0.elapsed() > Duration::from_secs(600) {
            return Err("no progress".into());
        }
        for comp in comps.drain(..) {
            let i = (comp.tag & 0xFFFF_FFFF) as usize;
            let Some(c) = clients.get_mut(i) else {
                continue;
            };
            if comp.tag & TAG_SEND != 0 {
                if comp.result < 0 {
                    return Err(format!(
                        "send: {}",
                        std::io::Error::from_raw_os_error(-comp.result)
                    ));
                }
                if let OpBuf::Send { buf, off } = comp.buf {
                    let off = off + comp.result as usize;
                    if off < buf.len() {
                        ring.send(c.stream.as_raw_fd(), buf, off, comp.tag);
                    }
                }
                continue;
            }
            if comp.result <= 0 {
                return Err(format!(
                    "connection {i} closed by the server ({})",
                    comp.result
                ));
            }
            let OpBuf::Recv(mut buf) = comp.buf else {
                continue;
            };
            let (n, e, z) = take_replies(&mut buf)?;
            errors += e;
            nulls += z;
            let us = c.sent_at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            lat_us.extend(std::iter::repeat_n(us, n));
            c.due = c.due.saturating_sub(n);
            if c.due == 0 && !send_batch(&mut ring, c, i, &mut issued) {
                active -= 1;
                continue;
            }
            ring.recv(c.stream.as_raw_fd(), buf, 4096, comp.tag, true);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    lat_us.sort_unstable();
    let pct = |q: f64| -> f64 {
        let idx = ((lat_us.len() as f64 * q).ceil() as usize).saturating_sub(1);
        lat_us
            .get(idx.min(lat_us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let done = lat_us.len() as f64;
    let ops = done / secs.max(1e-9);
    println!(
        "loadgen: {} requests ({n_set} SET, {n_get} GET) on {} connections, pipeline {pipeline}, in {secs:.2} s: {ops:.0} ops/s; latency ms p50 {:.3} p99 {:.3} p99.9 {:.3}; GET misses {nulls}, errors {errors}",
        lat_us.len(),
        clients.len(),
        pct(0.5),
        pct(0.99),
        pct(0.999)
    );
    println!(
        "totals ops={ops:.2} p50={:.3} p99={:.3} p999={:.3} requests={} sets={n_set} gets={n_get} errors={errors}",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        lat_us.len()
    );
    if errors > 0 {
        return Err(format!("{errors} error replies"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_reply_kind_and_waits_for_incomplete_ones() {
        let mut b = BytesMut::from(&b"+OK\r\n$3\r\nabc\r\n$-1\r\n:5\r\n-ERR x\r\n$5\r\nab"[..]);
        assert_eq!(take_replies(&mut b).unwrap(), (5, 1, 1));
        assert_eq!(&b[..], b"$5\r\nab");
        b.extend_from_slice(b"cde\r\n");
        assert_eq!(take_replies(&mut b).unwrap(), (1, 0, 0));
        assert!(b.is_empty());
        assert!(take_replies(&mut BytesMut::from(&b"*1\r\n"[..])).is_err());
    }
}
