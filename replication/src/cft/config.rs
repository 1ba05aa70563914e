//! [`MuConfig`]: sizes and timings of a Mu replica group. Every replica of a group uses
//! the same sizes (they define where things sit in each other's memory).

use crate::error::{Error, Result};
use crate::log::batch::BATCH_HEADER_BYTES;
use crate::log::entry::ENTRY_HEADER_BYTES;
use crate::log::Layout;

/// How a replica starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// With the group: every replica starts empty at once, and all count in quorums.
    Initial,
    /// Replacing a replica that lost its state (a fresh process after a crash): it does
    /// not count in quorums, nor campaign, until a leader has brought it up to date.
    Rejoin,
}

/// Sizes and timings of a Mu replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MuConfig {
    /// Slots in the log ring.
    pub capacity: u64,
    /// Bytes per slot (a multiple of 64): the largest entry, header included.
    pub slot_bytes: usize,
    /// Largest state-machine snapshot, in bytes.
    pub snapshot_bytes: usize,
    /// Slots one recovery READ fetches.
    pub read_chunk: usize,
    /// Entries in flight to a follower at most (the pipeline).
    pub pipeline: u64,
    /// Commands in one entry at most (the batch).
    pub batch_commands: usize,
    /// Commands waiting for a leader to take them, at most.
    pub queue_limit: usize,
    /// A candidate asks again for permission after this long without a majority.
    pub permission_retry_ns: u64,
    /// A leader reads its followers' status (for log recycling) this often.
    pub status_read_period_ns: u64,
    /// A replica looks at its inbox (permission and snapshot requests) this often.
    pub inbox_period_ns: u64,
    /// A leader with nothing new writes its commit index to followers after this long.
    pub idle_commit_ns: u64,
    /// How the replica starts.
    pub start: Start,
}

impl Default for MuConfig {
    fn default() -> MuConfig {
        MuConfig {
            capacity: 4096,
            slot_bytes: 4096 + 256,
            snapshot_bytes: 16 << 20,
            read_chunk: 16,
            pipeline: 64,
            batch_commands: 32,
            queue_limit: 4096,
            permission_retry_ns: 200_000,
            status_read_period_ns: 50_000,
            inbox_period_ns: 2_000,
            idle_commit_ns: 2_000,
            start: Start::Initial,
        }
    }
}

impl MuConfig {
    /// Checks the sizes.
    pub fn check(&self) -> Result<()> {
        let fail = |why: String| Err(Error::Config(why));
        if self.slot_bytes % 64 != 0 || self.slot_bytes < ENTRY_HEADER_BYTES + BATCH_HEADER_BYTES + 64 {
            return fail(format!("slot_bytes {} must be a multiple of 64 of at least 128", self.slot_bytes));
        }
        if self.capacity < 4 || self.pipeline == 0 || self.pipeline >= self.capacity {
            return fail(format!(
                "need 4 <= capacity ({}) and 0 < pipeline ({}) < capacity",
                self.capacity, self.pipeline
            ));
        }
        if self.read_chunk == 0 || self.batch_commands == 0 || self.queue_limit == 0 {
            return fail("read_chunk, batch_commands and queue_limit must be positive".into());
        }
        Ok(())
    }

    /// The largest command payload an entry can carry alone.
    pub fn max_command_bytes(&self) -> usize {
        self.slot_bytes - ENTRY_HEADER_BYTES - BATCH_HEADER_BYTES - crate::log::batch::COMMAND_HEADER_BYTES
    }

    /// The regions' geometry for a group whose node ids are below `nodes`.
    pub fn layout(&self, nodes: usize) -> Layout {
        Layout {
            capacity: self.capacity,
            slot_bytes: self.slot_bytes,
            snapshot_bytes: self.snapshot_bytes,
            nodes,
            read_chunk: self.read_chunk,
        }
    }
}
