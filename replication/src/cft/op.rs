//! The work requests of a Mu replica and their ids: which operation, to which peer, and
//! a sequence number (a log index, a read round, a message number).

use usec_qp_pool::{NodeId, WrId};

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

const KINDS: [OpKind; 9] = [
    OpKind::Entry,
    OpKind::Commit,
    OpKind::Promise,
    OpKind::SnapshotBytes,
    OpKind::SnapshotRecord,
    OpKind::HeadRead,
    OpKind::SlotRead,
    OpKind::SnapshotRead,
    OpKind::Message,
];

/// The first work-request kind Mu uses; its kinds follow in [`KINDS`] order.
const FIRST_KIND: u8 = 4;

/// A decoded work-request id of a Mu replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    /// The operation.
    pub kind: OpKind,
    /// The peer it went to.
    pub peer: NodeId,
    /// Its sequence number.
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
            OpKind::Entry | OpKind::Commit | OpKind::Promise | OpKind::SnapshotBytes | OpKind::SnapshotRecord => {
                Channel::Log
            }
            OpKind::HeadRead | OpKind::SlotRead | OpKind::SnapshotRead | OpKind::Message => Channel::Control,
        }
    }

    /// The `wr_id` to post it with.
    pub fn wr_id(&self) -> u64 {
        let kind = FIRST_KIND + KINDS.iter().position(|&kind| kind == self.kind).expect("listed") as u8;
        WrId::new(kind, self.peer, self.sequence & WrId::MAX_SEQUENCE).expect("kinds and sequences fit").to_raw()
    }

    /// The operation a completion's `wr_id` names, if it is one of Mu's.
    pub fn decode(wr_id: u64) -> Option<Op> {
        let id = WrId::from_raw(wr_id);
        let kind = *KINDS.get(usize::from(id.kind().checked_sub(FIRST_KIND)?))?;
        Some(Op { kind, peer: id.peer(), sequence: id.sequence() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let peer = NodeId::new(2).unwrap();
        for kind in KINDS {
            let op = Op::new(kind, peer, 12345);
            assert_eq!(Op::decode(op.wr_id()), Some(op));
        }
        assert_eq!(Op::decode(0), None);
    }
}
