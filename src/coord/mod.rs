//! Cross-shard execution, by message passing only: splitting multi-key commands by shard and
//! merging their replies (`fanout`), the shard lock and the atomic multi-shard steps run
//! under it (`lock`), transactions' state and planning (`tx`: MULTI/EXEC/WATCH; the EXEC
//! coordinator itself is `server::tx`), and clients blocked on keys (`blocking`). Runs on
//! the coordinating connection's shard; the per-shard parts run on their owners.

pub mod blocking;
pub mod fanout;
pub mod lock;
pub mod tx;
