//! Streams in RDB files and DUMP payloads: Redis 7.0's `RDB_TYPE_STREAM_LISTPACKS_2` (19)
//! when writing; 15, 19 and 21 when reading. Runs on whichever thread serialises or loads.

use super::rdb::{put_len, PartWriter};
use crate::types::stream::Stream;

impl PartWriter {
    /// The body of a stream record (after its type byte and key).
    pub(crate) fn stream_body(&mut self, x: &Stream) {
        // Placeholder until the full writer lands: an empty stream's counters only.
        let _ = x;
        let buf = &mut self.buf;
        put_len(buf, 0);
        put_len(buf, 0);
        for _ in 0..7 {
            put_len(buf, 0);
        }
        put_len(buf, 0);
    }
}
