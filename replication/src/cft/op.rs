//! The work requests of a Mu replica and their ids: which operation, to which peer, and
//! a sequence number (a log index, a read round, a message number).

use usec_qp_pool::{NodeId, RegisteredKind, WrId, WrKind};

use crate::cft::port::Channel;

/// What a work request does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// WRITE of a log entry (sequence: its index).
    Entry,
    /// WRITE of the commit record (sequence: the commit index).
    Commit,
    /// WRITE of the promise record (sequence: the proposal number).
    Promise,
    /// WRITE of a snapshot's bytes (sequence: its index).
    SnapshotBytes,
    /// WRITE of a snapshot's record (sequence: its index).
    SnapshotRecord,
    /// READ of a peer's log head: promise, commit, status, snapshot records (sequence: the
    /// read round).
    HeadRead,
    /// READ of a run of a peer's slots (sequence: the first index).
    SlotRead,
    /// READ of a peer's published snapshot (sequence: its index).
    SnapshotRead,
    /// WRITE of a message into a peer's inbox (sequence: the message number).
    Message,
}

/// Each operation and its kind in the workspace's registry.
const KINDS: [(OpKind, RegisteredKind); 9] = [
    (OpKind::Entry, RegisteredKind::MuEntry),
    (OpKind::Commit, RegisteredKind::MuCommit),
    (OpKind::Promise, RegisteredKind::MuPromise),
    (OpKind::SnapshotBytes, RegisteredKind::MuSnapshotBytes),
    (OpKind::SnapshotRecord, RegisteredKind::MuSnapshotRecord),
    (OpKind::HeadRead, RegisteredKind::MuHeadRead),
    (OpKind::SlotRead, RegisteredKind::MuSlotRead),
    (OpKind::SnapshotRead, RegisteredKind::MuSnapshotRead),
    (OpKind::Message, RegisteredKind::MuMessage),
];

/// A decoded work-request id of a Mu replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    /// The operation.
    pub kind: OpKind,
    /// The peer it went to.
    pub peer: NodeId,
    /// Its sequence number (44 bits).
    pub sequence: u64,
}

impl Op {
    /// An operation.
    pub fn new(kind: OpKind, peer: NodeId, sequence: u64) -> Op {
        Op { kind, peer, sequence }
    }

    /// The QP it travels on.
    pub fn channel(&self) -> Channel {
        match self.kind {
            OpKind::Entry
            | OpKind::Commit
            | OpKind::Promise
            | OpKind::SnapshotBytes
            | OpKind::SnapshotRecord => Channel::Log,
            OpKind::HeadRead | OpKind::SlotRead | OpKind::SnapshotRead | OpKind::Message => Channel::Control,
        }
    }

    /// The `wr_id` to post it with.
    pub fn wr_id(&self) -> u64 {
        let (_, registered) = KINDS.iter().find(|(kind, _)| *kind == self.kind).expect("listed");
        WrId::new(WrKind::registered(*registered), self.peer, self.sequence & WrId::MAX_SEQUENCE)
            .expect("sequences are masked to fit")
            .to_raw()
    }

    /// The operation a completion's `wr_id` names, if it is one of Mu's.
    pub fn decode(wr_id: u64) -> Option<Op> {
        let id = WrId::from_raw(wr_id);
        let registered = id.kind().as_registered()?;
        let (kind, _) = KINDS.iter().find(|(_, listed)| *listed == registered)?;
        Some(Op { kind: *kind, peer: id.peer(), sequence: id.sequence() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let peer = NodeId::new(2).unwrap();
        for (kind, _) in KINDS {
            let op = Op::new(kind, peer, 12345);
            assert_eq!(Op::decode(op.wr_id()), Some(op));
        }
        assert_eq!(Op::decode(0), None);
    }
}
