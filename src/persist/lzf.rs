//! LZF, the compression Redis applies to RDB strings (liblzf's format: literal runs of up to
//! 32 bytes and back references of 3 to 264 bytes within 8 KiB). Decompression checks every
//! length and offset against both buffers, so corrupt input is an error, never a panic or
//! an overlong allocation. Pure code, any thread (the saving and loading threads).

const MAX_LIT: usize = 1 << 5;
const MAX_OFF: usize = 1 << 13;
const MAX_REF: usize = (1 << 8) + (1 << 3);
const HLOG: u32 = 14;
/// With `Compressor::for_snapshots`, inputs up to this size hash into the first
/// 2^SMALL_HLOG slots of the table only: an RDB is mostly short strings, and 8 KiB of table
/// stays in L1 where the whole 128 KiB would not (LZF was a quarter of a 1M-string BGSAVE).
/// Entries are stamped with the call's `base`, so slots a longer input wrote earlier are
/// simply out of reach. It finds other matches than Redis's lzf, so DUMP and FUNCTION DUMP,
/// whose bytes must equal Redis's, use the whole table.
const SMALL_INPUT: usize = 1024;
const SMALL_HLOG: u32 = 10;

/// A compressor; keeps its hash table between calls (cleared by generation, not memset).
pub struct Compressor {
    /// Position + `base` of the last place each 3-byte hash was seen.
    htab: Vec<u64>,
    /// Added to positions of the current call: older entries are always out of reach.
    base: u64,
    /// Short inputs use a small part of the table (`SMALL_INPUT`).
    small: bool,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor {
            htab: vec![0; 1 << HLOG],
            base: 1,
            small: false,
        }
    }
}

impl Compressor {
    /// A compressor for snapshot files: faster on short inputs, valid LZF, but not the
    /// same bytes as Redis's (see `SMALL_INPUT`).
    pub fn for_snapshots() -> Compressor {
        Compressor {
            small: true,
            ..Compressor::default()
        }
    }
}

fn hash(v: u32, bits: u32) -> usize {
    (v.wrapping_mul(2_654_435_761) >> (32 - bits)) as usize
}

fn three(inp: &[u8], i: usize) -> Option<u32> {
    let b = inp.get(i..i + 3)?;
    Some(u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]))
}

/// How many bytes from `r` and `ip` (`r < ip`) agree, from 3 (known) up to `maxlen`:
/// eight at a time, then the first differing byte of the word.
#[inline]
fn match_len(inp: &[u8], r: usize, ip: usize, maxlen: usize) -> usize {
    let word = |at: usize| -> Option<u64> {
        let b: [u8; 8] = inp.get(at..at + 8)?.try_into().ok()?;
        Some(u64::from_le_bytes(b))
    };
    let mut len = 3;
    while len + 8 <= maxlen {
        match (word(r + len), word(ip + len)) {
            (Some(a), Some(b)) if a == b => len += 8,
            (Some(a), Some(b)) => return len + ((a ^ b).trailing_zeros() / 8) as usize,
            _ => break,
        }
    }
    while len < maxlen && inp.get(r + len) == inp.get(ip + len) {
        len += 1;
    }
    len
}

impl Compressor {
    /// Compresses `inp` into `out` (cleared first) if the result is at most `max` bytes;
    /// false when it would not fit (the caller then stores the data raw).
    pub fn compress(&mut self, inp: &[u8], max: usize, out: &mut Vec<u8>) -> bool {
        out.clear();
        let base = self.base;
        self.base = base + inp.len() as u64 + MAX_OFF as u64 + 1;
        let n = inp.len();
        let bits = if self.small && n <= SMALL_INPUT {
            SMALL_HLOG
        } else {
            HLOG
        };
        let mut lit = 0usize;
        // Index of the current literal run's length byte.
        let mut run = 0usize;
        out.push(0);
        let mut ip = 0usize;
        while ip + 2 < n {
            let Some(h3) = three(inp, ip) else { break };
            let slot = hash(h3, bits);
            let prev = self
                .htab
                .get_mut(slot)
                .map_or(0, |s| std::mem::replace(s, base + ip as u64));
            let found = prev >= base && (base + ip as u64 - prev) as usize <= MAX_OFF;
            let r = prev.wrapping_sub(base) as usize;
            if found && three(inp, r) == Some(h3) && r < ip {
                // Extend the match (at least 3 bytes).
                let len = match_len(inp, r, ip, (n - ip).min(MAX_REF));
                let off = ip - r - 1;
                // Close the literal run (or drop its empty length byte).
                if lit == 0 {
                    out.pop();
                } else if let Some(b) = out.get_mut(run) {
                    *b = (lit - 1) as u8;
                }
                let l = len - 2;
                if l < 7 {
                    out.push(((off >> 8) as u8) | ((l as u8) << 5));
                } else {
                    out.push(((off >> 8) as u8) | (7 << 5));
                    out.push((l - 7) as u8);
                }
                out.push(off as u8);
                if out.len() + 1 > max {
                    return false;
                }
                ip += len;
                lit = 0;
                run = out.len();
                out.push(0);
                continue;
            }
            lit += 1;
            out.push(inp.get(ip).copied().unwrap_or(0));
            ip += 1;
            if lit == MAX_LIT {
                if let Some(b) = out.get_mut(run) {
                    *b = (MAX_LIT - 1) as u8;
                }
                lit = 0;
                run = out.len();
                out.push(0);
            }
            if out.len() > max {
                return false;
            }
        }
        for &b in inp.get(ip..).unwrap_or_default() {
            lit += 1;
            out.push(b);
            if lit == MAX_LIT {
                if let Some(x) = out.get_mut(run) {
                    *x = (MAX_LIT - 1) as u8;
                }
                lit = 0;
                run = out.len();
                out.push(0);
            }
        }
        if lit == 0 {
            out.pop();
        } else if let Some(b) = out.get_mut(run) {
            *b = (lit - 1) as u8;
        }
        out.len() <= max && !out.is_empty()
    }
}

/// Decompresses `inp` into exactly `ulen` bytes; `None` if the data is corrupt or does not
/// produce exactly `ulen` bytes.
pub fn decompress(inp: &[u8], ulen: usize) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    decompress_into(inp, ulen, &mut out).then_some(out)
}

/// A back reference yields at most 264 bytes from 2-3 input bytes: a larger claim is
/// corrupt, and must not allocate.
fn plausible(inp: &[u8], ulen: usize) -> bool {
    ulen <= inp.len().saturating_mul(MAX_REF / 2 + 1)
}

/// `decompress` into `out` (cleared first, its capacity reused: the loader decompresses
/// every value into one buffer); false if corrupt.
pub fn decompress_into(inp: &[u8], ulen: usize, out: &mut Vec<u8>) -> bool {
    out.clear();
    if !plausible(inp, ulen) {
        return false;
    }
    out.reserve(ulen);
    let mut ip = 0usize;
    while ip < inp.len() {
        let Some(&ctrl) = inp.get(ip) else {
            return false;
        };
        let ctrl = usize::from(ctrl);
        ip += 1;
        if ctrl < 32 {
            let len = ctrl + 1;
            let Some(lit) = inp.get(ip..ip + len) else {
                return false;
            };
            if out.len() + len > ulen {
                return false;
            }
            out.extend_from_slice(lit);
            ip += len;
        } else {
            let Some((len, back, used)) = back_ref(inp, ip, ctrl) else {
                return false;
            };
            ip += used;
            if back > out.len() || out.len() + len > ulen {
                return false;
            }
            // An overlapping reference repeats the last `back` bytes: copy from `start` in
            // chunks that stay whole periods (the copied run doubles each time), not a byte
            // at a time.
            let start = out.len() - back;
            let mut left = len;
            while left > 0 {
                let n = left.min(out.len() - start);
                out.extend_from_within(start..start + n);
                left -= n;
            }
        }
    }
    out.len() == ulen
}

/// A back reference at `inp[ip..]` after its control byte `ctrl`: (length, distance, input
/// bytes used after the control byte).
#[inline]
fn back_ref(inp: &[u8], ip: usize, ctrl: usize) -> Option<(usize, usize, usize)> {
    let mut len = ctrl >> 5;
    let mut used = 0;
    if len == 7 {
        len += usize::from(*inp.get(ip)?);
        used += 1;
    }
    let back = ((ctrl & 0x1f) << 8) + usize::from(*inp.get(ip + used)?) + 1;
    Some((len + 2, back, used + 1))
}

/// Whether `inp` decompresses to exactly `ulen` bytes, without producing them: the
/// loader's check on the main thread, the owner shard decompresses later.
pub fn check(inp: &[u8], ulen: usize) -> bool {
    if !plausible(inp, ulen) {
        return false;
    }
    let (mut ip, mut out) = (0usize, 0usize);
    while ip < inp.len() {
        let Some(&ctrl) = inp.get(ip) else {
            return false;
        };
        let ctrl = usize::from(ctrl);
        ip += 1;
        if ctrl < 32 {
            let len = ctrl + 1;
            if ip + len > inp.len() || out + len > ulen {
                return false;
            }
            ip += len;
            out += len;
        } else {
            let Some((len, back, used)) = back_ref(inp, ip, ctrl) else {
                return false;
            };
            ip += used;
            if back > out || out + len > ulen {
                return false;
            }
            out += len;
        }
    }
    out == ulen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(data: &[u8]) {
        let mut c = Compressor::default();
        let mut out = Vec::new();
        if c.compress(data, data.len() + 64, &mut out) {
            assert_eq!(decompress(&out, data.len()).as_deref(), Some(data));
            assert!(check(&out, data.len()));
            assert!(!check(&out, data.len() + 1));
        } else {
            assert!(data.is_empty());
        }
    }

    #[test]
    fn roundtrips() {
        roundtrip(b"");
        roundtrip(b"a");
        roundtrip(b"abcabcabcabcabcabcabcabcabcabcabcabc");
        roundtrip(b"v123456:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        roundtrip(b"abcdefgabcdefgabcdefgabcdefgabcdefgabcdefgabcdefgabcdefgab");
        roundtrip(&[b'x'; 10_000]);
        let mut seed = 7u64;
        let noise: Vec<u8> = (0..20_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed % 7) as u8 + b'a'
            })
            .collect();
        roundtrip(&noise);
        for n in 0..200 {
            roundtrip(noise.get(..n).unwrap());
        }
        // Reusing a compressor across inputs.
        let mut c = Compressor::default();
        let mut out = Vec::new();
        for chunk in noise.chunks(333) {
            assert!(c.compress(chunk, chunk.len() + 64, &mut out));
            assert_eq!(decompress(&out, chunk.len()).as_deref(), Some(chunk));
        }
        // The snapshot compressor (a small table for short inputs), with long and short
        // inputs alternating so the short ones meet slots the long ones wrote.
        let mut c = Compressor::for_snapshots();
        let mut at = 0;
        for (i, len) in [5000usize, 40, 300, 1024, 1025, 7, 3000, 900]
            .iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            let from = (at + i * 37) % (noise.len() - len);
            let chunk = noise.get(from..from + len).unwrap();
            assert!(c.compress(chunk, chunk.len() + 64, &mut out));
            assert_eq!(decompress(&out, chunk.len()).as_deref(), Some(chunk));
            at += len;
        }
    }

    #[test]
    fn compresses_repetition_and_respects_max() {
        let data = vec![b'a'; 1000];
        let mut out = Vec::new();
        assert!(Compressor::default().compress(&data, 996, &mut out));
        assert!(out.len() < 20);
        let noise: Vec<u8> = (0..=255u8).collect();
        assert!(!Compressor::default().compress(&noise, 252, &mut out));
    }

    #[test]
    fn corrupt_input_is_an_error() {
        assert_eq!(
            decompress(&[0x20, 0x00], 3),
            None,
            "reference before any output"
        );
        assert_eq!(
            decompress(&[5, b'a'], 6),
            None,
            "literal run past the input"
        );
        assert_eq!(decompress(&[0, b'a'], 2), None, "wrong length");
        assert_eq!(decompress(&[0, b'a'], 1 << 60), None, "huge claim");
        for (inp, n) in [
            (&[0x20u8, 0x00][..], 3),
            (&[5, b'a'], 6),
            (&[0, b'a'], 2),
            (&[0, b'a'], 1 << 60),
            (&[0, b'a', 0xe0], 10),
            (&[0, b'a', 0xe0, 0x00], 10),
            (&[0, b'a', 0xe0, 0x00, 0x00], 10),
        ] {
            assert_eq!(check(inp, n), decompress(inp, n).is_some(), "{inp:?} {n}");
        }
        // A literal 'a', then a back reference of 9 bytes at distance 1.
        assert_eq!(
            decompress(&[0, b'a', 0xe0, 0x00, 0x00], 10).as_deref(),
            Some(&b"aaaaaaaaaa"[..])
        );
    }
}
