//! The command dispatcher with arbitrary argv on three shards (`commands::testkit::Kit`,
//! the same table lookup, arity check, routing and multi-key split/merge a worker runs):
//! no command, however malformed its arguments, panics, and state carries over from one
//! command to the next so later commands meet values of every type.
//!
//! Input: commands separated by 0xFF; within one, arguments separated by 0x00; the first
//! byte of a command picks its table row (so the fuzzer reaches the implementations rather
//! than `unknown command`); numbers longer than 5 digits are cut to 5 so one SETBIT or
//! SETRANGE cannot ask for half a gigabyte (Redis allows that; it is not a bug to find).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use shardis::commands::table::table;
use shardis::commands::testkit::Kit;

fn clamp(arg: &[u8]) -> Bytes {
    let digits = arg.strip_prefix(b"-").unwrap_or(arg);
    if digits.len() > 5 && digits.iter().all(u8::is_ascii_digit) {
        let keep = arg.len() - digits.len() + 5;
        return Bytes::copy_from_slice(&arg[..keep]);
    }
    Bytes::copy_from_slice(arg)
}

fuzz_target!(|data: &[u8]| {
    let rows = table().len();
    let mut kit = Kit::new();
    for cmd in data.split(|&b| b == 0xFF).take(64) {
        let Some((&pick, rest)) = cmd.split_first() else {
            continue;
        };
        let Some(spec) = table().get(usize::from(pick) % rows) else {
            continue;
        };
        let mut argv = vec![Bytes::copy_from_slice(spec.name.as_bytes())];
        if !rest.is_empty() {
            argv.extend(rest.split(|&b| b == 0).take(32).map(clamp));
        }
        let _ = kit.run_bytes(&argv);
    }
});
