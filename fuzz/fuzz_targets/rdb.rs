//! The RDB reader (`persist::read::parse`, what startup loading and DEBUG RELOAD use) and
//! the DUMP payload reader (`read::restore_payload`, what RESTORE uses) on arbitrary bytes:
//! an error or a value, never a panic, a hang, or an allocation sized by a forged length.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardis::persist::read::{parse, restore_payload};

fuzz_target!(|data: &[u8]| {
    // As a file: the fuzzer's bytes after a valid header, so it explores the body.
    let mut file = b"REDIS0010".to_vec();
    file.extend_from_slice(data);
    let mut keys = 0usize;
    let _ = parse(&file, 0, 16, false, |_| {
        keys += 1;
        Ok(())
    });
    let _ = parse(data, 0, 16, true, |_| Ok(()));
    // As a DUMP payload, with and without the checksum check.
    let _ = restore_payload(data, false);
    let _ = restore_payload(data, true);
});
