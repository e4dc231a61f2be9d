//! Cross-shard execution, by message passing only: splitting multi-key commands by shard and
//! merging their replies (`fanout`), atomic multi-shard commands (`multi`), and transactions
//! (`tx`: MULTI/EXEC/WATCH). Runs on the
//! coordinating connection's shard; the per-shard parts run on their owners.

pub mod block;
pub mod fanout;
pub mod multi;
pub mod tx;
