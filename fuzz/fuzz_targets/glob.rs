//! The bounded glob matcher (`util::glob::glob_match`): never panics, stays fast on
//! any input (libFuzzer's timeout catches a blow-up), and on inputs small enough for the
//! exponential reference (a port of Redis's recursive `stringmatchlen`) gives its answer.
//!
//! Input: byte 0 picks nocase (bit 0) and where the pattern ends; the rest is the pattern,
//! then the string.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardis::util::glob::glob_match;

#[path = "../../src/util/glob_oracle.rs"]
#[allow(dead_code)]
mod glob_oracle;

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let nocase = head & 1 == 1;
    let cut = usize::from(head >> 1).min(rest.len());
    let (pattern, s) = rest.split_at(cut);
    let got = glob_match(pattern, s, nocase);
    // The reference explores every way to place the stars: keep it small.
    let stars = pattern.iter().filter(|&&c| c == b'*').count();
    if pattern.len() <= 16 && s.len() <= 24 && stars <= 6 {
        assert_eq!(
            got,
            glob_oracle::reference_match(pattern, s, nocase),
            "pattern {pattern:?} string {s:?} nocase {nocase}"
        );
    }
});
