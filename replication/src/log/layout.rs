//! Where everything sits in a replica's two registered regions.
//!
//! The **log region** is what the single writer writes: peers may always READ it, and at
//! most one peer (the leader this replica follows) may WRITE it.
//!
//! ```text
//! 0        promise   record: the highest proposal number a candidate asked for
//! 64       commit    record: the leader's commit index, written when it has nothing new
//! 128      status    record: what this replica publishes about itself (written locally)
//! 192      snapshot  record: index, length and digest of the snapshot below
//! 256      slots     capacity × slot_bytes, entry `i` in slot `i % capacity`
//! ...      snapshot  snapshot_bytes: a state-machine snapshot (pushed by a leader, or
//!                    published here for a candidate to pull)
//! ```
//!
//! The **control region** is writable by every peer, always: candidates' permission
//! requests, followers' acknowledgements, snapshot requests, and the scratch space RDMA
//! READs land in.
//!
//! ```text
//! node s × 256   inbox of messages from node s: permission request, permission ack,
//!                snapshot request, snapshot ready (a record each)
//! ...            scratch per peer p: 256 bytes for the four records of p's log, then
//!                read_chunk slots
//! ```
//!
//! Every peer writes only the lines of its own inbox and never the log region through a
//! control QP: the crash-fault model trusts the code, and the permission mechanism
//! guards the log against the code's stale writers (a deposed leader), which write the
//! log only through the log QP.

use crate::log::record::RECORD_BYTES;

/// Offset of the promise record in the log region.
pub const PROMISE_OFFSET: usize = 0;
/// Offset of the commit record in the log region.
pub const COMMIT_OFFSET: usize = RECORD_BYTES;
/// Offset of the status record in the log region.
pub const STATUS_OFFSET: usize = 2 * RECORD_BYTES;
/// Offset of the snapshot record in the log region.
pub const SNAPSHOT_RECORD_OFFSET: usize = 3 * RECORD_BYTES;
/// Bytes of the four records at the head of the log region.
pub const LOG_HEAD_BYTES: usize = 4 * RECORD_BYTES;

/// The lines of one sender's inbox in the control region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboxLine {
    /// A candidate's permission request.
    PermissionRequest = 0,
    /// A follower's acknowledgement of one.
    PermissionAck = 1,
    /// A candidate asks for a snapshot.
    SnapshotRequest = 2,
    /// The snapshot is published.
    SnapshotReady = 3,
}

impl InboxLine {
    /// Every line.
    pub const ALL: [InboxLine; 4] = [
        InboxLine::PermissionRequest,
        InboxLine::PermissionAck,
        InboxLine::SnapshotRequest,
        InboxLine::SnapshotReady,
    ];
}

const INBOX_LINES: usize = InboxLine::ALL.len();

/// The geometry of a replica's regions; every replica of a cluster uses the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Slots in the ring (entries kept).
    pub capacity: u64,
    /// Bytes per slot (a multiple of 64).
    pub slot_bytes: usize,
    /// Largest snapshot in bytes.
    pub snapshot_bytes: usize,
    /// Node ids are below this.
    pub nodes: usize,
    /// Slots one recovery READ fetches.
    pub read_chunk: usize,
}

impl Layout {
    /// Offset of slot `slot` (not index: `index % capacity`) in the log region.
    pub fn slot_offset(&self, slot: u64) -> usize {
        debug_assert!(slot < self.capacity);
        LOG_HEAD_BYTES + slot as usize * self.slot_bytes
    }

    /// Offset of the slot that holds entry `index`.
    pub fn entry_offset(&self, index: u64) -> usize {
        self.slot_offset(index % self.capacity)
    }

    /// Offset of the snapshot bytes in the log region.
    pub fn snapshot_offset(&self) -> usize {
        LOG_HEAD_BYTES + self.capacity as usize * self.slot_bytes
    }

    /// Bytes of the log region.
    pub fn log_len(&self) -> usize {
        self.snapshot_offset() + self.snapshot_bytes
    }

    /// Offset in the control region of `line` of the inbox for messages from `sender`.
    pub fn inbox_offset(&self, sender: u16, line: InboxLine) -> usize {
        debug_assert!(usize::from(sender) < self.nodes);
        (usize::from(sender) * INBOX_LINES + line as usize) * RECORD_BYTES
    }

    fn scratch_base(&self) -> usize {
        self.nodes * INBOX_LINES * RECORD_BYTES
    }

    fn scratch_per_peer(&self) -> usize {
        LOG_HEAD_BYTES + self.read_chunk * self.slot_bytes
    }

    /// Offset in the control region where READs of `peer`'s log head land.
    pub fn scratch_head_offset(&self, peer: u16) -> usize {
        self.scratch_base() + usize::from(peer) * self.scratch_per_peer()
    }

    /// Offset in the control region where READs of `peer`'s slots land.
    pub fn scratch_slots_offset(&self, peer: u16) -> usize {
        self.scratch_head_offset(peer) + LOG_HEAD_BYTES
    }

    /// Bytes of the control region.
    pub fn control_len(&self) -> usize {
        self.scratch_base() + self.nodes * self.scratch_per_peer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn areas_do_not_overlap() {
        let layout = Layout { capacity: 8, slot_bytes: 128, snapshot_bytes: 4096, nodes: 3, read_chunk: 2 };
        assert_eq!(layout.slot_offset(0), 256);
        assert_eq!(layout.entry_offset(9), 256 + 128);
        assert_eq!(layout.snapshot_offset(), 256 + 8 * 128);
        assert_eq!(layout.log_len(), 256 + 8 * 128 + 4096);
        assert_eq!(layout.inbox_offset(2, InboxLine::SnapshotReady), (2 * 4 + 3) * 64);
        assert_eq!(layout.scratch_head_offset(0), 3 * 4 * 64);
        assert_eq!(layout.scratch_slots_offset(1), 3 * 4 * 64 + (256 + 256) + 256);
        assert_eq!(layout.control_len(), 3 * 4 * 64 + 3 * (256 + 256));
    }
}
