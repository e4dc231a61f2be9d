//! Reference for `args::glob_match`: a line-by-line port of Redis's recursive
//! `stringmatchlen` as it was before 7.0.9 (exponential in the stars), with the C string's
//! NUL terminator read where the C code reads one past the end, and C's signed `char`s.
//! Test-only (and included by the `glob` fuzz target); run it on small inputs only.

/// The pattern byte at `i`, or the terminating NUL past the end, as C's signed `char`.
fn at(p: &[u8], i: usize) -> i32 {
    p.get(i).map_or(0, |&b| b as i8 as i32)
}

fn lower(x: i32) -> i32 {
    if (65..=90).contains(&x) {
        x + 32
    } else {
        x
    }
}

/// Whether `s` matches `p` (Redis `stringmatchlen(p, len, s, len, nocase)`).
pub fn reference_match(p: &[u8], s: &[u8], nocase: bool) -> bool {
    rec(p, s, nocase, 0)
}

fn rec(p: &[u8], s: &[u8], nocase: bool, nesting: usize) -> bool {
    if nesting > 1000 {
        return false;
    }
    let (mut p, mut s) = (p, s);
    while !p.is_empty() && !s.is_empty() {
        match at(p, 0) as u8 {
            b'*' => {
                while !p.is_empty() && at(p, 1) == b'*' as i32 {
                    p = &p[1..];
                }
                if p.len() == 1 {
                    return true;
                }
                while !s.is_empty() {
                    if rec(&p[1..], s, nocase, nesting + 1) {
                        return true;
                    }
                    s = &s[1..];
                }
                return false;
            }
            b'?' => s = &s[1..],
            b'[' => {
                p = &p[1..];
                let not = at(p, 0) == b'^' as i32;
                if not {
                    p = &p[1..];
                }
                let mut matched = false;
                // `back` is C's `pattern--`: the slice is re-taken from the full pattern.
                loop {
                    if at(p, 0) == b'\\' as i32 && p.len() >= 2 {
                        p = &p[1..];
                        if at(p, 0) == at(s, 0) {
                            matched = true;
                        }
                    } else if at(p, 0) == b']' as i32 {
                        break;
                    } else if p.is_empty() {
                        // pattern--: step back onto the last byte so the `pattern++`
                        // after the switch leaves it empty.
                        p = b"\0";
                        break;
                    } else if p.len() >= 3 && at(p, 1) == b'-' as i32 {
                        let (mut start, mut end, mut c) = (at(p, 0), at(p, 2), at(s, 0));
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        if nocase {
                            (start, end, c) = (lower(start), lower(end), lower(c));
                        }
                        p = &p[2..];
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if nocase {
                        if lower(at(p, 0)) == lower(at(s, 0)) {
                            matched = true;
                        }
                    } else if at(p, 0) == at(s, 0) {
                        matched = true;
                    }
                    p = &p[1..];
                }
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
                s = &s[1..];
            }
            other => {
                if other == b'\\' && p.len() >= 2 {
                    p = &p[1..];
                }
                let (a, b) = (at(p, 0), at(s, 0));
                let same = if nocase { lower(a) == lower(b) } else { a == b };
                if !same {
                    return false;
                }
                s = &s[1..];
            }
        }
        p = &p[1..];
        if s.is_empty() {
            while at(p, 0) == b'*' as i32 {
                p = &p[1..];
            }
            break;
        }
    }
    p.is_empty() && s.is_empty()
}
