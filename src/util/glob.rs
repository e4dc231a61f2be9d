//! Redis's glob matching (`stringmatchlen`), bounded: the one matcher every pattern user
//! shares (KEYS, the SCAN family's MATCH, HSCAN/SSCAN/ZSCAN, PSUBSCRIBE, PUBSUB CHANNELS,
//! CONFIG GET, COMMAND LIST). Pure function, runs on whichever thread calls it.

/// Most `*` groups a pattern may pass through before a match gives up: Redis's matcher
/// returns "no match" beyond 1000 levels of recursion (one level per `*` group).
const MAX_STAR_GROUPS: usize = 1000;

/// Redis glob matching (`stringmatchlen` in util.c, 7.0.15): `*`, `?`, `[abc]`, `[^a]`,
/// `[a-z]` (ends in either order, compared as C's signed chars), `\x` escapes, and Redis's
/// quirks: an unterminated `[` matches like the class read so far, `\` inside a class ignores
/// `nocase`, and an empty string matches only the empty pattern (callers that treat `*` as
/// "everything" do so before calling, as Redis does).
///
/// Non-recursive: on a mismatch it resumes after the most recent `*`, one character further
/// along the string. Going back to an earlier `*` can never help (a longer match for it would
/// only start the rest later), which is the bound Redis 7.0.9 added (CVE-2022-36021): at most
/// `pattern.len() * s.len()` steps, where the old recursion was exponential in the stars.
pub fn glob_match(pattern: &[u8], s: &[u8], nocase: bool) -> bool {
    if s.is_empty() {
        return pattern.is_empty();
    }
    let (mut pi, mut si) = (0usize, 0usize);
    let mut groups = 0usize;
    // After the most recent `*`: where its rest starts in the pattern, the string position
    // the rest is being tried at, and the star groups passed up to there.
    let mut star: Option<(usize, usize, usize)> = None;
    loop {
        // Invariant: si < s.len().
        let Some(&c) = s.get(si) else {
            return false;
        };
        let step = match pattern.get(pi) {
            Some(b'*') => {
                while pattern.get(pi + 1) == Some(&b'*') {
                    pi += 1;
                }
                if pi + 1 == pattern.len() {
                    return true;
                }
                groups += 1;
                if groups > MAX_STAR_GROUPS {
                    return false;
                }
                pi += 1;
                star = Some((pi, si, groups));
                continue;
            }
            Some(_) => match_one(pattern, pi, c, nocase),
            None => None,
        };
        if let Some(next) = step {
            pi = next;
            si += 1;
            if si < s.len() {
                continue;
            }
            // The string is used up: only trailing stars may remain.
            while pattern.get(pi) == Some(&b'*') {
                pi += 1;
            }
            if pi == pattern.len() {
                return true;
            }
        }
        // Mismatch: let the latest `*` take one more character.
        let Some((rest, from, g)) = star else {
            return false;
        };
        let from = from + 1;
        if from >= s.len() {
            return false;
        }
        star = Some((rest, from, g));
        (pi, si, groups) = (rest, from, g);
    }
}

/// Matches the single-character pattern element at `p[pi]` (not `*`) against `c`; returns
/// where the next element starts, or `None` on a mismatch.
fn match_one(p: &[u8], pi: usize, c: u8, nocase: bool) -> Option<usize> {
    let eq = |a: u8, b: u8| a == b || (nocase && a.eq_ignore_ascii_case(&b));
    match p.get(pi)? {
        b'?' => Some(pi + 1),
        b'[' => {
            let mut i = pi + 1;
            let not = p.get(i) == Some(&b'^');
            if not {
                i += 1;
            }
            let mut matched = false;
            loop {
                match p.get(i) {
                    Some(b'\\') if i + 1 < p.len() => {
                        i += 1;
                        matched |= p.get(i) == Some(&c);
                    }
                    Some(b']') => break,
                    // Unterminated: the last byte counts as the class's end.
                    None => {
                        i -= 1;
                        break;
                    }
                    Some(&lo) if i + 2 < p.len() && p.get(i + 1) == Some(&b'-') => {
                        let hi = p.get(i + 2).copied().unwrap_or(lo);
                        // C compares `char`s, which are signed: bytes >= 0x80 sort below 0.
                        let (mut lo, mut hi, mut x) = (signed(lo), signed(hi), signed(c));
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        if nocase {
                            (lo, hi, x) = (lower(lo), lower(hi), lower(x));
                        }
                        i += 2;
                        matched |= lo <= x && x <= hi;
                    }
                    Some(&a) => matched |= eq(a, c),
                }
                i += 1;
            }
            (matched != not).then_some(i + 1)
        }
        b'\\' if pi + 1 < p.len() => p.get(pi + 1).filter(|&&a| eq(a, c)).map(|_| pi + 2),
        &a => eq(a, c).then_some(pi + 1),
    }
}

fn signed(b: u8) -> i32 {
    b as i8 as i32
}

/// C's `tolower` in the "C" locale, on a signed char value.
fn lower(x: i32) -> i32 {
    if (i32::from(b'A')..=i32::from(b'Z')).contains(&x) {
        x + 32
    } else {
        x
    }
}

#[cfg(test)]
#[path = "glob_oracle.rs"]
mod glob_oracle;

#[cfg(test)]
mod tests {
    use super::glob_oracle::reference_match;
    use super::*;
    use std::time::{Duration, Instant};

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

    /// Edge cases checked against redis-server 7.0.15 (`KEYS` over single-byte keys).
    #[test]
    fn redis_quirks() {
        let keys: &[u8] = b"\x80b\xff\x00Aa]-\\^[x";
        let hits = |p: &[u8], nocase: bool| -> Vec<u8> {
            let mut v: Vec<u8> = keys
                .iter()
                .copied()
                .filter(|&k| glob_match(p, &[k], nocase))
                .collect();
            v.sort_unstable();
            v
        };
        let sorted = |k: &[u8]| {
            let mut v = k.to_vec();
            v.sort_unstable();
            v
        };
        // Range ends compare as signed chars: 0x80..0xfe sort below 0x00, 0xff is -1.
        assert_eq!(hits(b"[a-\xff]", false), sorted(b"\x00-A[\\]^a\xff"));
        assert_eq!(hits(b"[\xff-a]", false), sorted(b"\x00-A[\\]^a\xff"));
        assert_eq!(hits(b"[\x80-\xfe]", false), b"\x80");
        assert_eq!(hits(b"[\\A]", false), b"A");
        assert_eq!(hits(b"[]", false), b"");
        assert_eq!(hits(b"[^]", false), sorted(keys));
        assert_eq!(hits(b"[", false), b"");
        assert_eq!(hits(b"[^", false), sorted(keys));
        assert_eq!(hits(b"[a-]", false), sorted(b"]^a"));
        assert_eq!(hits(b"[]-a]", false), b"");
        assert_eq!(hits(b"\\", false), b"\\");
        assert_eq!(hits(b"[\\]", false), b"]");
        assert_eq!(hits(b"[a-\\]", false), sorted(b"\\]^a"));
        assert_eq!(hits(b"[Z-a]", false), sorted(b"[\\]^a"));
        // An escape inside a class ignores nocase; a plain member does not.
        assert!(!glob_match(b"[\\a]", b"A", true));
        assert!(glob_match(b"[a]", b"A", true));
        // The empty string matches only the empty pattern (KEYS * shortcuts this in Redis).
        assert!(!glob_match(b"*", b"", false));
        assert!(!glob_match(b"**", b"", false));
        assert!(glob_match(b"", b"", false));
        // Redis gives up past 1000 `*` groups unless the 1001st ends the pattern.
        let a1200 = vec![b'a'; 1200];
        assert!(glob_match(&b"a*".repeat(1000), &a1200, false));
        assert!(glob_match(&b"a*".repeat(1001), &a1200, false));
        assert!(!glob_match(&b"a*".repeat(1002), &a1200, false));
        let mut p = b"a*".repeat(1001);
        p.push(b'a');
        assert!(!glob_match(&p, &a1200, false));
        p.truncate(2000);
        p.push(b'a');
        assert!(glob_match(&p, &a1200, false));
    }

    /// CVE-2022-36021: many stars against a long string that almost matches.
    #[test]
    fn many_stars_are_fast() {
        let t = Instant::now();
        let key = vec![b'a'; 50];
        assert!(!glob_match(b"*a*a*a*a*a*a*a*a*a*a*b", &key, false));
        let long = vec![b'a'; 5000];
        let mut p = b"*a".repeat(500);
        p.push(b'b');
        assert!(!glob_match(&p, &long, false));
        assert!(glob_match(&b"*a".repeat(500), &long, false));
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }

    fn xorshift(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    /// Random small patterns and strings over the bytes that matter: the bounded matcher
    /// agrees with the recursive reference, with and without nocase.
    #[test]
    fn random_patterns_match_the_reference() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let pat_alpha = b"**??[[]]^-\\aabAB\x80\xff\x00";
        let str_alpha = b"aabAB]-\\^[*?\x80\xff\x00";
        let pick = |seed: &mut u64, alpha: &[u8], max: u64| -> Vec<u8> {
            let n = xorshift(seed) % (max + 1);
            (0..n)
                .map(|_| alpha[(xorshift(seed) % alpha.len() as u64) as usize])
                .collect()
        };
        for _ in 0..200_000 {
            let p = pick(&mut seed, pat_alpha, 10);
            let s = pick(&mut seed, str_alpha, 10);
            for nocase in [false, true] {
                assert_eq!(
                    glob_match(&p, &s, nocase),
                    reference_match(&p, &s, nocase),
                    "pattern {p:?} string {s:?} nocase {nocase}"
                );
            }
        }
    }
}
