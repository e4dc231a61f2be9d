//! Argument helpers for handlers: checked access and Redis-worded parse errors, so no
//! handler indexes client input directly.

use bytes::Bytes;

use crate::error::CmdError;
use crate::protocol::{parse_f64, parse_i64};

/// The argument at `i`, or a syntax error when absent.
#[inline]
pub fn arg(argv: &[Bytes], i: usize) -> Result<&Bytes, CmdError> {
    argv.get(i).ok_or(CmdError::Syntax)
}

/// The argument at `i` as an integer (`ERR value is not an integer or out of range`).
pub fn int(argv: &[Bytes], i: usize) -> Result<i64, CmdError> {
    parse_i64(arg(argv, i)?).ok_or(CmdError::NotInteger)
}

/// The argument at `i` as a float (`ERR value is not a valid float`).
pub fn float(argv: &[Bytes], i: usize) -> Result<f64, CmdError> {
    parse_f64(arg(argv, i)?).ok_or(CmdError::NotFloat)
}

/// Case-insensitive comparison with an ASCII keyword.
#[inline]
pub fn is(a: &[u8], kw: &str) -> bool {
    a.eq_ignore_ascii_case(kw.as_bytes())
}

/// Lossy text of an argument for error messages.
pub fn text(a: &[u8]) -> String {
    String::from_utf8_lossy(a).into_owned()
}

/// Copies client bytes into an owned value: stored data never pins a whole read buffer.
#[inline]
pub fn owned(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// The optional non-negative count at `i` (LPOP, SPOP, ZPOPMIN ...): Redis's
/// getPositiveLongFromObjectOrReply, one error text for both failures.
pub fn opt_count(argv: &[Bytes], i: usize) -> Result<Option<usize>, CmdError> {
    let Some(c) = argv.get(i) else {
        return Ok(None);
    };
    let n = parse_i64(c)
        .filter(|n| *n >= 0)
        .ok_or_else(|| CmdError::coded(crate::types::err::MUST_BE_POSITIVE))?;
    Ok(Some(usize::try_from(n).unwrap_or(usize::MAX)))
}

/// The arguments of LMPOP / ZMPOP (`numkeys key [key ...] <where> [COUNT count]`) in Redis's
/// check order: numkeys, then the where word (`parse_where`), then COUNT. Returns the keys,
/// the parsed where and the count (1 by default).
pub fn mpop_args<W>(
    argv: &[Bytes],
    parse_where: impl Fn(&Bytes) -> Result<W, CmdError>,
) -> Result<(&[Bytes], W, usize), CmdError> {
    let n = parse_i64(arg(argv, 1)?)
        .filter(|n| *n >= 1)
        .ok_or_else(|| CmdError::coded(crate::error::NUMKEYS_POSITIVE))?;
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    let where_idx = n.saturating_add(2);
    let wh = parse_where(argv.get(where_idx).ok_or(CmdError::Syntax)?)?;
    let mut count: Option<usize> = None;
    let mut i = where_idx + 1;
    while let Some(opt) = argv.get(i) {
        match argv.get(i + 1) {
            Some(c) if count.is_none() && is(opt, "count") => {
                let c = parse_i64(c)
                    .filter(|c| *c >= 1)
                    .ok_or_else(|| CmdError::err("count should be greater than 0"))?;
                count = Some(usize::try_from(c).unwrap_or(usize::MAX));
                i += 2;
            }
            _ => return Err(CmdError::Syntax),
        }
    }
    let keys = argv.get(2..where_idx).unwrap_or_default();
    Ok((keys, wh, count.unwrap_or(1)))
}

/// Redis glob matching (`stringmatchlen`): `*`, `?`, `[abc]`, `[^a]`, `[a-z]`, `\x`.
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    glob(pattern, s, nocase, 0)
}

fn glob(p: &[u8], s: &[u8], nocase: bool, depth: usize) -> bool {
    if depth > 1000 {
        return false;
    }
    let eq = |a: u8, b: u8| {
        if nocase {
            a.eq_ignore_ascii_case(&b)
        } else {
            a == b
        }
    };
    let (mut pi, mut si) = (0usize, 0usize);
    while pi < p.len() {
        match p[pi] {
            b'*' => {
                while pi + 1 < p.len() && p[pi + 1] == b'*' {
                    pi += 1;
                }
                if pi + 1 == p.len() {
                    return true;
                }
                for start in si..=s.len() {
                    if glob(&p[pi + 1..], &s[start..], nocase, depth + 1) {
                        return true;
                    }
                }
                return false;
            }
            b'?' => {
                if si >= s.len() {
                    return false;
                }
                si += 1;
            }
            b'[' => {
                if si >= s.len() {
                    return false;
                }
                pi += 1;
                let not = p.get(pi) == Some(&b'^');
                if not {
                    pi += 1;
                }
                let mut matched = false;
                loop {
                    match p.get(pi) {
                        None => {
                            pi -= 1;
                            break;
                        }
                        Some(b'\\') if pi + 1 < p.len() => {
                            pi += 1;
                            if eq(p[pi], s[si]) {
                                matched = true;
                            }
                        }
                        Some(b']') => break,
                        Some(&c) => {
                            if p.get(pi + 1) == Some(&b'-') && pi + 2 < p.len() {
                                let (mut lo, mut hi) = (c, p[pi + 2]);
                                if lo > hi {
                                    std::mem::swap(&mut lo, &mut hi);
                                }
                                let mut x = s[si];
                                if nocase {
                                    lo = lo.to_ascii_lowercase();
                                    hi = hi.to_ascii_lowercase();
                                    x = x.to_ascii_lowercase();
                                }
                                pi += 2;
                                if x >= lo && x <= hi {
                                    matched = true;
                                }
                            } else if eq(c, s[si]) {
                                matched = true;
                            }
                        }
                    }
                    pi += 1;
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                si += 1;
            }
            b'\\' if pi + 1 < p.len() => {
                pi += 1;
                if si >= s.len() || !eq(p[pi], s[si]) {
                    return false;
                }
                si += 1;
            }
            c => {
                if si >= s.len() || !eq(c, s[si]) {
                    return false;
                }
                si += 1;
            }
        }
        pi += 1;
        if si >= s.len() {
            while pi < p.len() && p[pi] == b'*' {
                pi += 1;
            }
            break;
        }
    }
    pi == p.len() && si == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*", b"anything", false));
        assert!(glob_match(b"h?llo", b"hello", false));
        assert!(glob_match(b"h*llo", b"heeello", false));
        assert!(glob_match(b"h[ae]llo", b"hallo", false));
        assert!(!glob_match(b"h[^e]llo", b"hello", false));
        assert!(glob_match(b"h[a-b]llo", b"hbllo", false));
        assert!(glob_match(b"h\\*llo", b"h*llo", false));
        assert!(!glob_match(b"h\\*llo", b"hello", false));
        assert!(glob_match(b"KEY:*", b"key:1", true));
        assert!(!glob_match(b"key:?", b"key:", false));
        assert!(glob_match(b"a*b*c", b"axxbyyc", false));
        assert!(!glob_match(b"a*b*c", b"axxbyy", false));
        assert!(glob_match(b"", b"", false));
        assert!(!glob_match(b"[", b"x", false));
    }
}
