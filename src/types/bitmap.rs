//! Bit operations over string bytes as Redis's bitops.c does them: bit 0 is the most
//! significant bit of byte 0. Range resolution for BITCOUNT/BITPOS (BYTE and BIT units),
//! bit search, and BITFIELD's integer reads, writes and overflow rules. Pure functions; the
//! handlers in `commands::bitmaps` run them on the key's shard.

/// A resolved BITCOUNT/BITPOS range in bits, both ends inclusive, or `None` when empty.
pub fn resolve(start: i64, end: i64, len_bytes: usize, bit_unit: bool) -> Option<(u64, u64)> {
    let mut total = len_bytes as i64;
    if bit_unit {
        total = total.saturating_mul(8);
    }
    let (mut s, mut e) = (start, end);
    if s < 0 {
        s = s.saturating_add(total);
    }
    if e < 0 {
        e = e.saturating_add(total);
    }
    s = s.max(0);
    e = e.max(0);
    if e >= total {
        e = total - 1;
    }
    if s > e {
        return None;
    }
    Some(if bit_unit {
        (s as u64, e as u64)
    } else {
        (s as u64 * 8, e as u64 * 8 + 7)
    })
}

fn bit_at(v: &[u8], i: u64) -> bool {
    v.get((i >> 3) as usize)
        .is_some_and(|b| b & (0x80 >> (i & 7)) != 0)
}

/// Set bits in bit range `[s, e]`.
pub fn count(v: &[u8], s: u64, e: u64) -> u64 {
    let (sb, eb) = ((s >> 3) as usize, (e >> 3) as usize);
    let mut n: u64 = v
        .get(sb..=eb)
        .unwrap_or_default()
        .iter()
        .map(|b| u64::from(b.count_ones()))
        .sum();
    // Drop the bits of the edge bytes outside the range.
    if let Some(b) = v.get(sb) {
        let outside = !(0xffu8 >> (s & 7));
        n -= u64::from((b & outside).count_ones());
    }
    if let Some(b) = v.get(eb) {
        let outside = (0xffu16 >> ((e & 7) + 1)) as u8;
        n -= u64::from((b & outside).count_ones());
    }
    n
}

/// The first bit equal to `bit` in `[s, e]`, if any.
pub fn find(v: &[u8], bit: bool, s: u64, e: u64) -> Option<u64> {
    let mut i = s;
    // Bit by bit up to a byte boundary, then whole bytes, then the tail.
    while i <= e && i & 7 != 0 {
        if bit_at(v, i) == bit {
            return Some(i);
        }
        i += 1;
    }
    let skip = if bit { 0u8 } else { 0xff };
    while i + 7 <= e {
        let b = v.get((i >> 3) as usize).copied().unwrap_or(0);
        if b != skip {
            let x = if bit { b } else { !b };
            return Some(i + u64::from(x.leading_zeros()));
        }
        i += 8;
    }
    while i <= e {
        if bit_at(v, i) == bit {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Sets bit `i` (the byte must exist); returns the old value.
pub fn set_bit(v: &mut [u8], i: u64, on: bool) -> bool {
    let mask = 0x80u8 >> (i & 7);
    let Some(b) = v.get_mut((i >> 3) as usize) else {
        return false;
    };
    let old = *b & mask != 0;
    if on {
        *b |= mask;
    } else {
        *b &= !mask;
    }
    old
}

/// `bits` bits from bit `offset`, most significant first; bytes past the end read as 0.
pub fn get_unsigned(v: &[u8], offset: u64, bits: u32) -> u64 {
    (0..u64::from(bits)).fold(0u64, |acc, j| (acc << 1) | u64::from(bit_at(v, offset + j)))
}

pub fn get_signed(v: &[u8], offset: u64, bits: u32) -> i64 {
    let u = get_unsigned(v, offset, bits);
    if bits < 64 && u & (1u64 << (bits - 1)) != 0 {
        (u | (u64::MAX << bits)) as i64
    } else {
        u as i64
    }
}

pub fn set_field(v: &mut [u8], offset: u64, bits: u32, value: u64) {
    for j in 0..u64::from(bits) {
        let on = (value >> (u64::from(bits) - 1 - j)) & 1 == 1;
        set_bit(v, offset + j, on);
    }
}

/// BITFIELD's OVERFLOW behaviours.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Overflow {
    Wrap,
    Sat,
    Fail,
}

/// Redis's checkUnsignedBitfieldOverflow: `Some(limit)` when `value + incr` overflows
/// (the wrapped or saturated result; for FAIL the value is unused).
pub fn unsigned_overflow(value: u64, incr: i64, bits: u32, ow: Overflow) -> Option<u64> {
    let max = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let maxincr = max.wrapping_sub(value) as i64;
    let minincr = (value as i64).wrapping_neg();
    let wrap = || value.wrapping_add(incr as u64) & !(u64::MAX.checked_shl(bits).unwrap_or(0));
    if value > max || (incr > 0 && incr > maxincr) {
        Some(match ow {
            Overflow::Wrap => wrap(),
            _ => max,
        })
    } else if incr < 0 && incr < minincr {
        Some(match ow {
            Overflow::Wrap => wrap(),
            _ => 0,
        })
    } else {
        None
    }
}

/// Redis's checkSignedBitfieldOverflow, with its arithmetic (wrapping where C wraps).
pub fn signed_overflow(value: i64, incr: i64, bits: u32, ow: Overflow) -> Option<i64> {
    let max = if bits == 64 {
        i64::MAX
    } else {
        (1i64 << (bits - 1)) - 1
    };
    let min = -max - 1;
    let maxincr = (max as u64).wrapping_sub(value as u64) as i64;
    let minincr = min.wrapping_sub(value);
    let wrap = || {
        let mut c = (value as u64).wrapping_add(incr as u64);
        if bits < 64 {
            let mask = u64::MAX << bits;
            if c & (1u64 << (bits - 1)) != 0 {
                c |= mask;
            } else {
                c &= !mask;
            }
        }
        c as i64
    };
    if value > max || (bits != 64 && incr > maxincr) || (value >= 0 && incr > 0 && incr > maxincr) {
        Some(match ow {
            Overflow::Wrap => wrap(),
            _ => max,
        })
    } else if value < min
        || (bits != 64 && incr < minincr)
        || (value < 0 && incr < 0 && incr < minincr)
    {
        Some(match ow {
            Overflow::Wrap => wrap(),
            _ => min,
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_and_find_with_edges() {
        let v = [0b1010_1010u8, 0xff, 0x00, 0b0000_0001];
        assert_eq!(count(&v, 0, 31), 4 + 8 + 1);
        assert_eq!(count(&v, 1, 6), 3);
        assert_eq!(count(&v, 7, 8), 1);
        assert_eq!(count(&v, 31, 31), 1);
        assert_eq!(find(&v, true, 1, 31), Some(2));
        assert_eq!(find(&v, false, 8, 31), Some(16));
        assert_eq!(find(&v, true, 16, 30), None);
        assert_eq!(find(&v, true, 16, 31), Some(31));
    }

    #[test]
    fn fields_and_overflow() {
        let mut v = [0u8; 4];
        set_field(&mut v, 3, 5, 0b10110);
        assert_eq!(get_unsigned(&v, 3, 5), 0b10110);
        assert_eq!(get_signed(&v, 3, 5), -10);
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Wrap), Some(4));
        assert_eq!(unsigned_overflow(250, 10, 8, Overflow::Sat), Some(255));
        assert_eq!(unsigned_overflow(5, -10, 8, Overflow::Sat), Some(0));
        assert_eq!(unsigned_overflow(5, 10, 8, Overflow::Sat), None);
        assert_eq!(signed_overflow(120, 10, 8, Overflow::Wrap), Some(-126));
        assert_eq!(signed_overflow(-120, -10, 8, Overflow::Sat), Some(-128));
        assert_eq!(
            signed_overflow(i64::MAX, 1, 64, Overflow::Wrap),
            Some(i64::MIN)
        );
    }
}
