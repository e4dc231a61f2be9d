//! The AOF shard-log reader (`persist::aof::parse_log`, what startup loading uses): on
//! arbitrary bytes it returns records covering a prefix of the input or an error, never a
//! panic; the covered length is inside the input, and re-reading that prefix alone gives
//! the same number of records (a cut-off tail is never half-applied).

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardis::persist::aof::parse_log;

fuzz_target!(|data: &[u8]| {
    if let Ok((recs, used)) = parse_log(data) {
        assert!(used <= data.len(), "covered {used} of {}", data.len());
        let again = parse_log(&data[..used]).map(|(r, u)| (r.len(), u));
        assert_eq!(again, Ok((recs.len(), used)));
    }
});
