//! The packed blobs RDB stores collections in: listpack (written and read), intset (written
//! and read), and, read only, ziplist (dumps of Redis before 7.0, and quicklist v1 nodes) and
//! zipmap (hashes of Redis before 2.6). Readers check every length against the blob and
//! return `None` on anything malformed; nothing here panics on bad input. Pure code, any
//! thread.

use bytes::Bytes;

use crate::protocol::parse_i64;

// ----- listpack ------------------------------------------------------------------------------

/// Builds a listpack (Redis's lpNew / lpAppend): integers that read back as the same string
/// are stored as integers, as Redis does.
pub struct ListpackWriter {
    buf: Vec<u8>,
    count: usize,
}

impl Default for ListpackWriter {
    fn default() -> Self {
        ListpackWriter {
            buf: vec![0; 6],
            count: 0,
        }
    }
}

fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

impl ListpackWriter {
    /// `bytes()` of an empty listpack.
    pub const EMPTY_BYTES: usize = 7;

    /// Bytes `push(v)` adds (entry and back length), without writing it.
    pub fn entry_size(v: &[u8]) -> usize {
        let l = match parse_i64(v) {
            Some(i) if (0..=127).contains(&i) => 1,
            Some(i) if (-4096..=4095).contains(&i) => 2,
            Some(i) if (-32768..=32767).contains(&i) => 3,
            Some(i) if (-8_388_608..=8_388_607).contains(&i) => 4,
            Some(i) if (i64::from(i32::MIN)..=i64::from(i32::MAX)).contains(&i) => 5,
            Some(_) => 9,
            None if v.len() < 64 => 1 + v.len(),
            None if v.len() < 4096 => 2 + v.len(),
            None => 5 + v.len(),
        };
        l + backlen_size(l)
    }

    /// Bytes so far (quicklist nodes are cut at a size).
    pub fn bytes(&self) -> usize {
        self.buf.len() + 1
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn push(&mut self, v: &[u8]) {
        match parse_i64(v) {
            Some(i) => self.push_i64(i),
            None => {
                let start = self.buf.len();
                let n = v.len();
                if n < 64 {
                    self.buf.push(0x80 | n as u8);
                } else if n < 4096 {
                    self.buf.push(0xE0 | (n >> 8) as u8);
                    self.buf.push(n as u8);
                } else {
                    self.buf.push(0xF0);
                    self.buf.extend_from_slice(&(n as u32).to_le_bytes());
                }
                self.buf.extend_from_slice(v);
                self.end_entry(start);
            }
        }
    }

    /// An integer entry (what `push` makes of an integer's text).
    pub fn push_i64(&mut self, v: i64) {
        let start = self.buf.len();
        self.push_int(v);
        self.end_entry(start);
    }

    /// The back length of the entry written from `start`, and the count.
    fn end_entry(&mut self, start: usize) {
        let l = self.buf.len() - start;
        // lpEncodeBacklen: 7 bits a byte, most significant first, the high bit set on all
        // but the first byte.
        let size = backlen_size(l);
        for i in (0..size).rev() {
            let b = ((l >> (7 * i)) & 127) as u8;
            self.buf.push(if i == size - 1 { b } else { b | 128 });
        }
        self.count += 1;
    }

    fn push_int(&mut self, v: i64) {
        if (0..=127).contains(&v) {
            self.buf.push(v as u8);
        } else if (-4096..=4095).contains(&v) {
            let u = (v as u64) & 0x1FFF;
            self.buf.push(0xC0 | (u >> 8) as u8);
            self.buf.push(u as u8);
        } else if (-32768..=32767).contains(&v) {
            self.buf.push(0xF1);
            self.buf.extend_from_slice(&(v as i16).to_le_bytes());
        } else if (-8_388_608..=8_388_607).contains(&v) {
            self.buf.push(0xF2);
            self.buf.extend_from_slice(&(v as i32).to_le_bytes()[..3]);
        } else if (i64::from(i32::MIN)..=i64::from(i32::MAX)).contains(&v) {
            self.buf.push(0xF3);
            self.buf.extend_from_slice(&(v as i32).to_le_bytes());
        } else {
            self.buf.push(0xF4);
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// The finished listpack.
    pub fn finish(mut self) -> Vec<u8> {
        self.seal();
        self.buf
    }

    /// Finishes the listpack in place and lends it; `clear` then starts the next one in
    /// the same buffer (the RDB writer builds one per small collection).
    pub fn finish_ref(&mut self) -> &[u8] {
        self.seal();
        &self.buf
    }

    /// Empties the writer, keeping its buffer.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 6]);
        self.count = 0;
    }

    fn seal(&mut self) {
        self.buf.push(0xFF);
        let total = self.buf.len() as u32;
        let count = self.count.min(65535) as u16;
        if let Some(h) = self.buf.get_mut(0..6) {
            h[..4].copy_from_slice(&total.to_le_bytes());
            h[4..].copy_from_slice(&count.to_le_bytes());
        }
    }
}

fn le(b: &[u8]) -> u64 {
    b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x))
}

/// Sign-extends the low `bits` of `v`.
fn sext(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

fn int_bytes(i: i64) -> Bytes {
    Bytes::from(i.to_string())
}

/// One element of a listpack as `listpack_entries` reads it.
pub enum LpEntry {
    /// A string: where its bytes are in the listpack (a range known to be in it).
    Str(std::ops::Range<usize>),
    Int(i64),
}

/// The elements of a listpack, integers as decimal strings; `None` if malformed (header
/// size, entry lengths, back lengths' sizes, terminator, count when recorded).
pub fn read_listpack(lp: &[u8]) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    listpack_entries(lp, |e| {
        out.push(match e {
            LpEntry::Str(r) => Bytes::copy_from_slice(lp.get(r).unwrap_or_default()),
            LpEntry::Int(i) => int_bytes(i),
        })
    })?;
    Some(out)
}

/// `read_listpack`, the strings as slices of `lp` (no copy: for values that copy what
/// they keep, so `lp` is not held by them).
pub fn read_listpack_shared(lp: &Bytes) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    listpack_entries(lp, |e| {
        out.push(match e {
            LpEntry::Str(r) => lp.slice(r),
            LpEntry::Int(i) => int_bytes(i),
        })
    })?;
    Some(out)
}

/// A listpack's elements as slices: strings borrowed from `lp`, integers formatted into
/// `ints` (no allocation per element, no reference count: for values that copy what they
/// keep). `None` if malformed.
pub fn listpack_slices<'a>(lp: &'a [u8], ints: &'a mut Vec<u8>) -> Option<Vec<&'a [u8]>> {
    enum Span {
        Lp(std::ops::Range<usize>),
        Int(std::ops::Range<usize>),
    }
    let mut spans = Vec::new();
    ints.clear();
    listpack_entries(lp, |e| {
        spans.push(match e {
            LpEntry::Str(r) => Span::Lp(r),
            LpEntry::Int(i) => {
                let start = ints.len();
                ints.extend_from_slice(i.to_string().as_bytes());
                Span::Int(start..ints.len())
            }
        })
    })?;
    let ints: &'a [u8] = ints;
    spans
        .into_iter()
        .map(|s| match s {
            Span::Lp(r) => lp.get(r),
            Span::Int(r) => ints.get(r),
        })
        .collect()
}

/// Hands every element of a listpack to `f`, in order; `None` if malformed (see
/// `read_listpack`). String ranges given to `f` are within `lp`.
pub fn listpack_entries(lp: &[u8], mut f: impl FnMut(LpEntry)) -> Option<()> {
    let total = le(lp.get(0..4)?) as usize;
    let count = le(lp.get(4..6)?) as usize;
    if total != lp.len() || lp.last() != Some(&0xFF) {
        return None;
    }
    let end = lp.len() - 1;
    let mut seen = 0usize;
    let mut p = 6;
    // A string entry: `n` bytes after a header of `h` bytes at `p`.
    let text = |p: usize, h: usize, n: usize| -> Option<(LpEntry, usize)> {
        let a = p.checked_add(h)?;
        let b = a.checked_add(n)?;
        lp.get(a..b)?;
        Some((LpEntry::Str(a..b), h + n))
    };
    while p < end {
        let b = *lp.get(p)?;
        let (val, len) = if b & 0x80 == 0 {
            (LpEntry::Int(i64::from(b)), 1)
        } else if b & 0xC0 == 0x80 {
            text(p, 1, usize::from(b & 0x3F))?
        } else if b & 0xE0 == 0xC0 {
            let v = u64::from(b & 0x1F) << 8 | u64::from(*lp.get(p + 1)?);
            (LpEntry::Int(sext(v, 13)), 2)
        } else if b & 0xF0 == 0xE0 {
            let n = usize::from(b & 0x0F) << 8 | usize::from(*lp.get(p + 1)?);
            text(p, 2, n)?
        } else {
            match b {
                0xF0 => text(p, 5, le(lp.get(p + 1..p + 5)?) as usize)?,
                0xF1 => (LpEntry::Int(sext(le(lp.get(p + 1..p + 3)?), 16)), 3),
                0xF2 => (LpEntry::Int(sext(le(lp.get(p + 1..p + 4)?), 24)), 4),
                0xF3 => (LpEntry::Int(sext(le(lp.get(p + 1..p + 5)?), 32)), 5),
                0xF4 => (LpEntry::Int(le(lp.get(p + 1..p + 9)?) as i64), 9),
                _ => return None,
            }
        };
        p += len + backlen_size(len);
        if p > end {
            return None;
        }
        seen += 1;
        f(val);
    }
    if count != 65535 && count != seen {
        return None;
    }
    Some(())
}

// ----- intset --------------------------------------------------------------------------------

/// An intset of `vals` (sorted and deduplicated here), in the narrowest encoding.
pub fn write_intset(vals: &mut Vec<i64>) -> Vec<u8> {
    vals.sort_unstable();
    vals.dedup();
    let width: usize = if vals
        .iter()
        .all(|v| (i64::from(i16::MIN)..=i64::from(i16::MAX)).contains(v))
    {
        2
    } else if vals
        .iter()
        .all(|v| (i64::from(i32::MIN)..=i64::from(i32::MAX)).contains(v))
    {
        4
    } else {
        8
    };
    let mut out = Vec::with_capacity(8 + width * vals.len());
    out.extend_from_slice(&(width as u32).to_le_bytes());
    out.extend_from_slice(&(vals.len() as u32).to_le_bytes());
    for v in vals.iter() {
        out.extend_from_slice(&v.to_le_bytes()[..width]);
    }
    out
}

/// The members of an intset; `None` if malformed (width, size, order).
pub fn read_intset(b: &[u8]) -> Option<Vec<Bytes>> {
    let width = le(b.get(0..4)?) as usize;
    let n = le(b.get(4..8)?) as usize;
    if !matches!(width, 2 | 4 | 8) || n.checked_mul(width)?.checked_add(8)? != b.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let mut prev: Option<i64> = None;
    for c in b.get(8..)?.chunks_exact(width) {
        let v = sext(le(c), 8 * width as u32);
        if prev.is_some_and(|p| p >= v) {
            return None;
        }
        prev = Some(v);
        out.push(int_bytes(v));
    }
    Some(out)
}

// ----- ziplist (read only) -------------------------------------------------------------------

/// The elements of a ziplist (Redis before 7.0); `None` if malformed.
pub fn read_ziplist(z: &[u8]) -> Option<Vec<Bytes>> {
    let total = le(z.get(0..4)?) as usize;
    let count = le(z.get(8..10)?) as usize;
    if total != z.len() || z.last() != Some(&0xFF) {
        return None;
    }
    let end = z.len() - 1;
    let mut out = Vec::with_capacity(count.min(z.len() / 2));
    let mut p = 10;
    while p < end {
        // prevlen: 1 byte, or 0xFE and 4 bytes.
        p += if *z.get(p)? == 0xFE { 5 } else { 1 };
        let b = *z.get(p)?;
        let (val, len) = match b >> 6 {
            0 => {
                let n = usize::from(b & 0x3F);
                (Bytes::copy_from_slice(z.get(p + 1..p + 1 + n)?), 1 + n)
            }
            1 => {
                let n = usize::from(b & 0x3F) << 8 | usize::from(*z.get(p + 1)?);
                (Bytes::copy_from_slice(z.get(p + 2..p + 2 + n)?), 2 + n)
            }
            2 => {
                let l = z.get(p + 1..p + 5)?;
                let n = l.iter().fold(0usize, |a, &x| a << 8 | usize::from(x));
                let s = z.get(p + 5..p.checked_add(5)?.checked_add(n)?)?;
                (Bytes::copy_from_slice(s), 5 + n)
            }
            _ => match b {
                0xC0 => (int_bytes(sext(le(z.get(p + 1..p + 3)?), 16)), 3),
                0xD0 => (int_bytes(sext(le(z.get(p + 1..p + 5)?), 32)), 5),
                0xE0 => (int_bytes(le(z.get(p + 1..p + 9)?) as i64), 9),
                0xF0 => (int_bytes(sext(le(z.get(p + 1..p + 4)?), 24)), 4),
                0xFE => (int_bytes(sext(le(z.get(p + 1..p + 2)?), 8)), 2),
                0xF1..=0xFD => (int_bytes(i64::from(b & 0x0F) - 1), 1),
                _ => return None,
            },
        };
        p += len;
        if p > end {
            return None;
        }
        out.push(val);
    }
    if count != 65535 && count != out.len() {
        return None;
    }
    Some(out)
}

// ----- zipmap (read only) --------------------------------------------------------------------

/// The (field, value) pairs of a zipmap (hashes of Redis 2.4 and before), flattened.
pub fn read_zipmap(z: &[u8]) -> Option<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut p = 1;
    let len_at = |p: usize| -> Option<(usize, usize)> {
        match *z.get(p)? {
            0xFF => None,
            254 => Some((le(z.get(p + 1..p + 5)?) as usize, 5)),
            253 => None,
            n => Some((usize::from(n), 1)),
        }
    };
    loop {
        if *z.get(p)? == 0xFF {
            break;
        }
        let (klen, h) = len_at(p)?;
        p += h;
        out.push(Bytes::copy_from_slice(z.get(p..p.checked_add(klen)?)?));
        p += klen;
        let (vlen, h) = len_at(p)?;
        p += h;
        let free = usize::from(*z.get(p)?);
        p += 1;
        out.push(Bytes::copy_from_slice(z.get(p..p.checked_add(vlen)?)?));
        p += vlen + free;
    }
    (p + 1 == z.len()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::from(s.to_string())).collect()
    }

    #[test]
    fn listpack_roundtrip_every_encoding() {
        let big = "x".repeat(5000);
        let mid = "y".repeat(300);
        let items = [
            "0",
            "127",
            "128",
            "-1",
            "-4096",
            "4095",
            "4096",
            "-32768",
            "32767",
            "40000",
            "-8388608",
            "8388607",
            "9000000",
            "-2147483648",
            "2147483647",
            "2147483648",
            "-9223372036854775808",
            "9223372036854775807",
            "01",
            "-0",
            "+1",
            "",
            "hello",
            mid.as_str(),
            big.as_str(),
        ];
        let mut w = ListpackWriter::default();
        for i in items {
            w.push(i.as_bytes());
        }
        let lp = w.finish();
        assert_eq!(read_listpack(&lp), Some(strs(&items)));
        // Any truncation or a changed header is caught.
        for cut in 0..lp.len() {
            assert_eq!(read_listpack(&lp[..cut]), None);
        }
    }

    #[test]
    fn listpack_bytes_as_redis() {
        // lpAppend of "a" then 5: header 6, "a" = 0x81 'a' backlen 2, 5 = 0x05 backlen 1, end.
        let mut w = ListpackWriter::default();
        w.push(b"a");
        w.push(b"5");
        assert_eq!(
            w.finish(),
            vec![12, 0, 0, 0, 2, 0, 0x81, b'a', 2, 0x05, 1, 0xFF]
        );
    }

    #[test]
    fn intset_roundtrip() {
        for vals in [
            vec![3, 1, 2],
            vec![1, 70000, -5],
            vec![i64::MIN, 0, i64::MAX],
        ] {
            let mut v = vals.clone();
            let b = write_intset(&mut v);
            let want: Vec<Bytes> = v.iter().map(|i| int_bytes(*i)).collect();
            assert_eq!(read_intset(&b), Some(want));
        }
        assert_eq!(
            read_intset(&[2, 0, 0, 0, 2, 0, 0, 0, 5, 0, 1, 0]),
            None,
            "order"
        );
        assert_eq!(read_intset(&[3, 0, 0, 0, 0, 0, 0, 0]), None, "width");
        assert_eq!(read_intset(&[2, 0, 0, 0, 255, 255, 255, 255]), None, "size");
    }

    #[test]
    fn ziplist_reads_every_encoding() {
        // zlbytes, zltail, zllen=4: "ab", 12 (immediate), int16 -2, int8 -3.
        let mut z = vec![0, 0, 0, 0, 0, 0, 0, 0, 4, 0];
        z.extend_from_slice(&[0, 0x02, b'a', b'b']);
        z.extend_from_slice(&[4, 0xFD]);
        z.extend_from_slice(&[2, 0xC0, 0xFE, 0xFF]);
        z.extend_from_slice(&[4, 0xFE, 0xFD]);
        z.push(0xFF);
        let n = z.len() as u32;
        z[..4].copy_from_slice(&n.to_le_bytes());
        assert_eq!(read_ziplist(&z), Some(strs(&["ab", "12", "-2", "-3"])));
        for cut in 0..z.len() {
            assert_eq!(read_ziplist(&z[..cut]), None);
        }
    }

    #[test]
    fn zipmap_reads() {
        let z = [
            2, 1, b'f', 1, 0, b'v', 2, b'g', b'h', 3, 1, b'x', b'y', b'z', b'!', 0xFF,
        ];
        assert_eq!(read_zipmap(&z), Some(strs(&["f", "v", "gh", "xyz"])));
        assert_eq!(read_zipmap(&z[..10]), None);
    }
}
