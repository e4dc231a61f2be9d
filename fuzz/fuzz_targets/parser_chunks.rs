//! The request parser fed in reads of random sizes (`parse_partial`, resuming across reads
//! as the connection does) parses exactly what it parses from the whole input in one read:
//! the same requests with the same arguments, and the same protocol error at the end. No
//! panics, and every argument range lies inside the buffer.
//!
//! Input: byte 0 = number of cuts (mod 16), then 2 bytes per cut (little-endian offsets),
//! then byte max_bulk (0..=255), then the stream.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardis::protocol::parser::{parse_partial, Arg, Partial, ProtocolError};

type Parsed = (Vec<Vec<Vec<u8>>>, Option<ProtocolError>);

fn feed(input: &[u8], cuts: &[usize], max_bulk: usize) -> Parsed {
    let (mut buf, mut out, mut args) = (Vec::new(), Vec::new(), Vec::new());
    let mut partial = Partial::default();
    let mut last = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        let cut = cut.clamp(last, input.len());
        buf.extend_from_slice(&input[last..cut]);
        last = cut;
        loop {
            match parse_partial(&buf, max_bulk, &mut args, &mut partial) {
                Ok(Some(n)) => {
                    assert!(n <= buf.len() && !partial.active());
                    let req: Vec<Vec<u8>> = args
                        .iter()
                        .map(|a| match a {
                            Arg::Range(s, e) => {
                                assert!(s <= e && *e <= n, "range {s}..{e} outside {n}");
                                buf[*s..*e].to_vec()
                            }
                            Arg::Owned(v) => v.clone(),
                        })
                        .collect();
                    if !req.is_empty() {
                        out.push(req);
                    }
                    buf.drain(..n);
                }
                Ok(None) => {
                    assert!(args.is_empty());
                    break;
                }
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&ncuts, rest)) = data.split_first() else {
        return;
    };
    let ncuts = usize::from(ncuts % 16);
    if rest.len() < 2 * ncuts + 1 {
        return;
    }
    let (cut_bytes, rest) = rest.split_at(2 * ncuts);
    let (max_bulk, input) = (usize::from(rest[0]), &rest[1..]);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (input.len() + 1))
        .collect();
    cuts.sort_unstable();
    let whole = feed(input, &[], max_bulk);
    assert_eq!(feed(input, &cuts, max_bulk), whole, "cuts {cuts:?}");
});
