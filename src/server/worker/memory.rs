//! maxmemory as the connection side sees it: the memory its client buffers and scratch
//! hold, published for INFO and left out of the engine's check. Runs on the shard thread.

use super::*;

impl Worker {
    /// Memory the connection side holds that is not data: client buffers and scratch
    /// (see `Engine::memory_check`).
    pub fn front_bytes(&self) -> u64 {
        self.clients_bytes + self.scratch_bytes()
    }

    /// `Engine::publish_mem` with this shard's connection buffers as of now.
    pub fn publish_mem(&mut self) {
        self.eng.front_bytes = self.front_bytes();
        self.eng.publish_mem();
    }

    /// `Engine::memory_check` with this shard's connection buffers left out.
    pub fn memory_check(&mut self, denyoom: bool) -> Result<(), CmdError> {
        // Without maxmemory there is nothing to check (and no buffer sums to take per
        // command: batches from other shards call this for each of theirs).
        if self.eng.shared.tun.maxmemory.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        self.eng.front_bytes = self.front_bytes();
        self.eng.memory_check(denyoom)
    }
}
