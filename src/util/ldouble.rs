//! x87 80-bit `long double` arithmetic in software, for the commands Redis computes in
//! `long double` (INCRBYFLOAT): parsing as glibc's `strtold` (correctly rounded, hex floats,
//! ERANGE rules of Redis's `string2ld`), one correctly rounded addition, and `%.17Lf`
//! printing as Redis's `ld2string(LD_STR_HUMAN)`. With f64 instead, results such as
//! `12345678901234567890` or `1e308 + 1e308` differ from Redis. Pure functions on values;
//! runs on whichever shard executes the command.

use std::cmp::Ordering;

/// Significand bits of the x87 extended format (explicit integer bit).
const MANT_BITS: u64 = 64;
/// Smallest binary exponent of the last significand bit (subnormals included).
const MIN_EXP: i64 = -16445;
/// A finite value is below 2^16384.
const MAX_EXP2: i64 = 16384;
/// Redis's MAX_LONG_DOUBLE_CHARS: longer inputs are not numbers.
const MAX_CHARS: usize = 5 * 1024;

/// A long double: `(-1)^neg * mant * 2^exp`, or an infinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ld {
    Finite { neg: bool, mant: u64, exp: i64 },
    Inf { neg: bool },
}

impl Ld {
    pub fn is_inf(&self) -> bool {
        matches!(self, Ld::Inf { .. })
    }
}

/// Parses like Redis's `string2ld` (strtold, then: no leading space, nothing left over, no
/// NaN, no overflow, no underflow to zero). `None` means "not a valid float".
pub fn parse(s: &[u8]) -> Option<Ld> {
    if s.is_empty() || s.len() >= MAX_CHARS || s.first()?.is_ascii_whitespace() {
        return None;
    }
    let (neg, body) = match s.first()? {
        b'-' => (true, s.get(1..)?),
        b'+' => (false, s.get(1..)?),
        _ => (false, s),
    };
    if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
        return Some(Ld::Inf { neg });
    }
    let lower = body.to_ascii_lowercase();
    if let Some(hex) = lower.strip_prefix(b"0x") {
        return parse_hex(neg, hex);
    }
    parse_dec(neg, &lower)
}

/// Splits `digits[.digits]` off the front; returns (all digits, digits after the point, rest).
fn mantissa(s: &[u8], radix: u32) -> (Vec<u8>, usize, &[u8]) {
    let is_digit = |c: &u8| (*c as char).is_digit(radix);
    let int_len = s.iter().take_while(|c| is_digit(c)).count();
    let (int, rest) = s.split_at(int_len);
    let mut digits = int.to_vec();
    let mut frac = 0;
    let mut rest = rest;
    if let Some((b'.', after)) = rest.split_first() {
        let n = after.iter().take_while(|c| is_digit(c)).count();
        let (more, tail) = after.split_at(n);
        digits.extend_from_slice(more);
        frac = n;
        rest = tail;
    }
    (digits, frac, rest)
}

/// `[+-]digits` exponent; the whole rest must be it. Clamped (the value is then 0 or inf).
fn exponent(s: &[u8]) -> Option<i64> {
    let (neg, d) = match s.split_first()? {
        (b'-', d) => (true, d),
        (b'+', d) => (false, d),
        _ => (false, s),
    };
    if d.is_empty() || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v = d.iter().fold(0i64, |acc, &c| {
        (acc * 10 + i64::from(c - b'0')).min(1 << 40)
    });
    Some(if neg { -v } else { v })
}

fn parse_dec(neg: bool, s: &[u8]) -> Option<Ld> {
    let (digits, frac, rest) = mantissa(s, 10);
    if digits.is_empty() {
        return None;
    }
    let e10 = match rest.split_first() {
        None => 0,
        Some((b'e', exp)) => exponent(exp)?,
        Some(_) => return None,
    } - frac as i64;
    let mut d = Big::zero();
    for c in &digits {
        d.mul_small(10);
        d.add_small(u32::from(c - b'0'));
    }
    if d.is_zero() {
        return Some(zero(neg));
    }
    // Order of magnitude decides overflow / underflow before any huge power is built.
    let mag = (d.decimal_len() as i64) + e10;
    if !(-4952..=4934).contains(&mag) {
        return None;
    }
    let v = if e10 >= 0 {
        d.mul_assign(&Big::pow10(e10 as u32));
        round(neg, d, 0, false)
    } else {
        let b = Big::pow10((-e10) as u32);
        // Enough quotient bits for 64 significant bits plus guard and sticky.
        let k = (MANT_BITS as i64 + 2 + b.bit_len() as i64 - d.bit_len() as i64).max(0);
        let (q, rem) = d.shl(k as usize).div_rem(&b);
        round(neg, q, -k, !rem.is_zero())
    };
    finite_nonzero(v)
}

fn parse_hex(neg: bool, s: &[u8]) -> Option<Ld> {
    let (digits, frac, rest) = mantissa(s, 16);
    if digits.is_empty() {
        // strtold reads "0x" as "0" followed by "x": trailing garbage for Redis.
        return None;
    }
    let e2 = match rest.split_first() {
        None => 0,
        Some((b'p', exp)) => exponent(exp)?,
        Some(_) => return None,
    } - 4 * frac as i64;
    let mut h = Big::zero();
    for c in &digits {
        h.mul_small(16);
        h.add_small((*c as char).to_digit(16)?);
    }
    if h.is_zero() {
        return Some(zero(neg));
    }
    let mag = h.bit_len() as i64 + e2;
    if !(MIN_EXP - 2..=MAX_EXP2 + 1).contains(&mag) {
        return None;
    }
    finite_nonzero(round(neg, h, e2, false))
}

/// Redis rejects overflow (ERANGE with HUGE_VAL) and underflow to zero.
fn finite_nonzero(v: Ld) -> Option<Ld> {
    match v {
        Ld::Inf { .. } => None,
        Ld::Finite { mant: 0, .. } => None,
        v => Some(v),
    }
}

fn zero(neg: bool) -> Ld {
    Ld::Finite {
        neg,
        mant: 0,
        exp: 0,
    }
}

/// Rounds `big * 2^exp2` (plus a nonzero tail below it when `sticky`) to the nearest long
/// double, ties to even; overflow gives an infinity.
fn round(neg: bool, big: Big, exp2: i64, sticky: bool) -> Ld {
    let bl = big.bit_len() as i64;
    if bl == 0 {
        return zero(neg);
    }
    let shift = (bl - MANT_BITS as i64).max(MIN_EXP - exp2);
    let (mut mant, mut exp) = if shift <= 0 {
        (big.shl((-shift) as usize).low_u64(), exp2 + shift)
    } else {
        let s = shift as usize;
        let kept = big.shr(s).low_u64();
        let half = big.bit(s - 1);
        let rest = sticky || big.any_below(s - 1);
        let up = half && (rest || kept & 1 == 1);
        match kept.checked_add(u64::from(up)) {
            Some(m) => (m, exp2 + shift),
            None => (1u64 << 63, exp2 + shift + 1),
        }
    };
    if mant == 0 {
        return zero(neg);
    }
    // Normalise (the significand never has more than 64 bits here).
    let lead = 64 - i64::from(mant.leading_zeros());
    if lead + exp > MAX_EXP2 {
        return Ld::Inf { neg };
    }
    if mant.leading_zeros() > 0 && exp > MIN_EXP {
        let by = (i64::from(mant.leading_zeros())).min(exp - MIN_EXP);
        mant <<= by;
        exp -= by;
    }
    Ld::Finite { neg, mant, exp }
}

/// `a + b`, correctly rounded. Infinities: inf + -inf is NaN, reported as `None`.
pub fn add(a: Ld, b: Ld) -> Option<Ld> {
    let (an, am, ae, bn, bm, be) = match (a, b) {
        (Ld::Inf { neg: x }, Ld::Inf { neg: y }) => {
            return (x == y).then_some(Ld::Inf { neg: x });
        }
        (i @ Ld::Inf { .. }, _) | (_, i @ Ld::Inf { .. }) => return Some(i),
        (
            Ld::Finite {
                neg: an,
                mant: am,
                exp: ae,
            },
            Ld::Finite {
                neg: bn,
                mant: bm,
                exp: be,
            },
        ) => (an, am, ae, bn, bm, be),
    };
    let e = ae.min(be);
    let x = Big::from_u64(am).shl((ae - e) as usize);
    let y = Big::from_u64(bm).shl((be - e) as usize);
    if an == bn {
        let mut s = x;
        s.add_assign(&y);
        return Some(round(an, s, e, false));
    }
    Some(match x.cmp(&y) {
        Ordering::Equal => zero(false),
        Ordering::Greater => round(an, x.sub(&y), e, false),
        Ordering::Less => round(bn, y.sub(&x), e, false),
    })
}

/// The nearest `f64` (infinite beyond its range).
pub fn to_f64(v: Ld) -> f64 {
    match v {
        Ld::Inf { neg } => {
            if neg {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            }
        }
        Ld::Finite { neg, mant, exp } => {
            let e = exp.clamp(-2000, 2000) as i32;
            let m = mant as f64 * 2f64.powi(e);
            if neg {
                -m
            } else {
                m
            }
        }
    }
}

/// `%.17Lf` with trailing zeros (and a bare point) removed, "-0" as "0": Redis's
/// `ld2string(..., LD_STR_HUMAN)`. Infinities print as Redis would never store them.
pub fn fmt_human(v: Ld) -> String {
    let (neg, mant, exp) = match v {
        Ld::Inf { neg } => return if neg { "-inf" } else { "inf" }.into(),
        Ld::Finite { neg, mant, exp } => (neg, mant, exp),
    };
    let mut n = Big::from_u64(mant);
    n.mul_assign(&Big::pow10(17));
    let n = if exp >= 0 {
        n.shl(exp as usize)
    } else {
        let s = (-exp) as usize;
        let mut kept = n.shr(s);
        let up = n.bit(s - 1) && (n.any_below(s - 1) || kept.bit(0));
        if up {
            kept.add_small(1);
        }
        kept
    };
    let mut digits = n.to_decimal();
    while digits.len() < 18 {
        digits.insert(0, '0');
    }
    let point = digits.len() - 17;
    let (int, frac) = digits.split_at(point);
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(digits.len() + 2);
    if neg {
        out.push('-');
    }
    out.push_str(int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    if out == "-0" {
        out = "0".into();
    }
    out
}

/// Minimal unsigned big integer (little-endian 32-bit limbs), just what this module needs.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Big(Vec<u32>);

impl Big {
    fn zero() -> Big {
        Big(Vec::new())
    }

    fn from_u64(v: u64) -> Big {
        let mut b = Big(vec![v as u32, (v >> 32) as u32]);
        b.trim();
        b
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn bit_len(&self) -> usize {
        self.0
            .last()
            .map_or(0, |top| self.0.len() * 32 - top.leading_zeros() as usize)
    }

    fn bit(&self, i: usize) -> bool {
        self.0.get(i / 32).is_some_and(|l| (l >> (i % 32)) & 1 == 1)
    }

    /// Whether any bit below position `i` is set.
    fn any_below(&self, i: usize) -> bool {
        let (limbs, bits) = (i / 32, i % 32);
        self.0.iter().take(limbs).any(|&l| l != 0)
            || (bits > 0
                && self
                    .0
                    .get(limbs)
                    .is_some_and(|l| l & ((1 << bits) - 1) != 0))
    }

    fn low_u64(&self) -> u64 {
        let lo = u64::from(self.0.first().copied().unwrap_or(0));
        let hi = u64::from(self.0.get(1).copied().unwrap_or(0));
        lo | (hi << 32)
    }

    fn mul_small(&mut self, m: u32) {
        let mut carry = 0u64;
        for l in self.0.iter_mut() {
            let v = u64::from(*l) * u64::from(m) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
        self.trim();
    }

    fn add_small(&mut self, a: u32) {
        let mut carry = u64::from(a);
        for l in self.0.iter_mut() {
            if carry == 0 {
                break;
            }
            let v = u64::from(*l) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn add_assign(&mut self, o: &Big) {
        if self.0.len() < o.0.len() {
            self.0.resize(o.0.len(), 0);
        }
        let mut carry = 0u64;
        for (i, l) in self.0.iter_mut().enumerate() {
            let v = u64::from(*l) + u64::from(o.0.get(i).copied().unwrap_or(0)) + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    /// `self - o`, for `self >= o`.
    fn sub(&self, o: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for (i, &l) in self.0.iter().enumerate() {
            let mut v = i64::from(l) - i64::from(o.0.get(i).copied().unwrap_or(0)) - borrow;
            borrow = 0;
            if v < 0 {
                v += 1 << 32;
                borrow = 1;
            }
            out.push(v as u32);
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    fn mul_assign(&mut self, o: &Big) {
        let mut out = vec![0u32; self.0.len() + o.0.len()];
        for (i, &a) in self.0.iter().enumerate() {
            let mut carry = 0u64;
            for (j, &b) in o.0.iter().enumerate() {
                let slot = &mut out[i + j];
                let v = u64::from(*slot) + u64::from(a) * u64::from(b) + carry;
                *slot = v as u32;
                carry = v >> 32;
            }
            let mut k = i + o.0.len();
            while carry > 0 {
                let slot = &mut out[k];
                let v = u64::from(*slot) + carry;
                *slot = v as u32;
                carry = v >> 32;
                k += 1;
            }
        }
        self.0 = out;
        self.trim();
    }

    fn pow10(n: u32) -> Big {
        let mut b = Big::from_u64(1);
        let mut left = n;
        while left >= 9 {
            b.mul_small(1_000_000_000);
            left -= 9;
        }
        b.mul_small(10u32.pow(left));
        b
    }

    fn shl(&self, bits: usize) -> Big {
        if self.is_zero() {
            return Big::zero();
        }
        let (limbs, s) = (bits / 32, bits % 32);
        let mut out = vec![0u32; limbs];
        let mut carry = 0u32;
        for &l in &self.0 {
            out.push(if s == 0 { l } else { (l << s) | carry });
            carry = if s == 0 { 0 } else { l >> (32 - s) };
        }
        out.push(carry);
        let mut b = Big(out);
        b.trim();
        b
    }

    fn shr(&self, bits: usize) -> Big {
        let (limbs, s) = (bits / 32, bits % 32);
        let src = self.0.get(limbs..).unwrap_or_default();
        let mut out = Vec::with_capacity(src.len());
        for (i, &l) in src.iter().enumerate() {
            let hi = src.get(i + 1).copied().unwrap_or(0);
            out.push(if s == 0 {
                l
            } else {
                (l >> s) | (hi << (32 - s))
            });
        }
        let mut b = Big(out);
        b.trim();
        b
    }

    /// Quotient and remainder by shift-and-subtract (few quotient bits are ever needed).
    fn div_rem(&self, d: &Big) -> (Big, Big) {
        let mut rem = self.clone();
        let mut q = Big::zero();
        let (n, m) = (self.bit_len(), d.bit_len());
        if m == 0 || n < m {
            return (q, rem);
        }
        for i in (0..=n - m).rev() {
            let t = d.shl(i);
            if rem.cmp(&t) != Ordering::Less {
                rem = rem.sub(&t);
                let limb = i / 32;
                if q.0.len() <= limb {
                    q.0.resize(limb + 1, 0);
                }
                if let Some(l) = q.0.get_mut(limb) {
                    *l |= 1 << (i % 32);
                }
            }
        }
        q.trim();
        (q, rem)
    }

    fn div_small(&mut self, d: u32) -> u32 {
        let mut rem = 0u64;
        for l in self.0.iter_mut().rev() {
            let v = (rem << 32) | u64::from(*l);
            *l = (v / u64::from(d)) as u32;
            rem = v % u64::from(d);
        }
        self.trim();
        rem as u32
    }

    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut n = self.clone();
        let mut chunks = Vec::new();
        while !n.is_zero() {
            chunks.push(n.div_small(1_000_000_000));
        }
        let mut s = String::new();
        for (i, c) in chunks.iter().rev().enumerate() {
            if i == 0 {
                s.push_str(&c.to_string());
            } else {
                s.push_str(&format!("{c:09}"));
            }
        }
        s
    }

    /// Number of decimal digits (an upper bound is enough for the range check).
    fn decimal_len(&self) -> usize {
        // log10(2) < 0.30103
        (self.bit_len() * 30103).div_ceil(100000)
    }
}

impl PartialOrd for Big {
    fn partial_cmp(&self, o: &Big) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Big {
    fn cmp(&self, o: &Big) -> Ordering {
        self.0
            .len()
            .cmp(&o.0.len())
            .then_with(|| self.0.iter().rev().cmp(o.0.iter().rev()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Ld {
        parse(s.as_bytes()).unwrap_or_else(|| panic!("{s} should parse"))
    }

    fn sum(a: &str, b: &str) -> String {
        add(p(a), p(b)).map_or("NaN".into(), fmt_human)
    }

    #[test]
    fn values_redis_prints() {
        // Each expectation was read from redis-server 7.0.15 (INCRBYFLOAT).
        assert_eq!(sum("0.1", "0.2"), "0.3");
        assert_eq!(sum("0", "5.0e3"), "5000");
        assert_eq!(sum("0", "1.5e-7"), "0.00000015");
        assert_eq!(sum("0", "12345678901234567890"), "12345678901234567890");
        assert_eq!(sum("0", "-0.0"), "0");
        assert_eq!(sum("0", "1e-20"), "0");
        assert_eq!(sum("0", "3.0e20"), "300000000000000000000");
        assert_eq!(sum("0", "0x10"), "16");
        assert_eq!(sum("0", "1."), "1");
        assert_eq!(sum("0", ".5"), "0.5");
        assert_eq!(sum("0", "+1.5"), "1.5");
        assert_eq!(sum("10.5", "-3.25"), "7.25");
        assert_eq!(
            sum("1e308", "1e308"),
            "199999999999999999993371759311691291321120199694831134415594095989843469737676123744200253843777078640893494450108026446304269499187921167194841628860392837535918200039206381557326219209014213335878306791577877829121087126122536729803237260434173178506889763247582601711514636284849020905456510092687857156096"
        );
        assert_eq!(
            sum("0", "1e309"),
            "999999999999999999986349424581256454766307763249906048699722933664407363742116431635427166600418245409398702382304152749971957328402423172341126484032370375772746974788657214625693651444984012739133113268869496442311034817571120406763557498021655642425941543468850939783228659030453659621446207643423114002432"
        );
        assert_eq!(sum("inf", "-inf"), "NaN");
    }

    #[test]
    fn rejects_what_string2ld_rejects() {
        for bad in [
            "", " 1", "1 ", "abc", "1e", "1e5x", ".", "-", "nan", "NaN", "1e4933", "-1e4933",
            "1e-5000", "0x", "infinit", "1..2",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert!(p("inf").is_inf());
        assert!(p("-Infinity").is_inf());
        assert!(!p("1e4931").is_inf());
        assert_eq!(parse(&vec![b'1'; MAX_CHARS]), None);
    }

    #[test]
    fn overflow_to_infinity_on_add() {
        let max = p("1.18973149535723176502e4932");
        assert!(add(max, max).is_some_and(|v| v.is_inf()));
    }
}
