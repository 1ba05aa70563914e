//! `Peers`: what a replica knows of, and is doing with, each other replica — whether
//! its QPs work, whether it granted this replica's candidacy, what its log head said,
//! and how far this replica's log has been copied into it.

use usec_qp_pool::NodeId;

use crate::cft::port::Channel;
use crate::log::layout::{COMMIT_OFFSET, PROMISE_OFFSET, STATUS_OFFSET};
use crate::log::record::{Record, RecordKind, RECORD_BYTES};
use crate::log::Status;

/// Bytes of a head read: the promise, commit and status records.
pub(crate) const HEAD_READ_BYTES: usize = 3 * RECORD_BYTES;

/// A peer's log head as read: the first three records of its log region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Head {
    /// Its promise (0: none).
    pub(crate) promise: u64,
    /// The commit record a leader left there.
    pub(crate) commit_record: u64,
    /// Its published status.
    pub(crate) status: Status,
}

impl Head {
    /// Decodes a head read into scratch; `None` if its status does not validate (the
    /// replica publishes one at start, so a live replica always has one).
    pub(crate) fn decode(bytes: &[u8]) -> Option<Head> {
        let line = |offset: usize| &bytes[offset..offset + RECORD_BYTES];
        let status = Status::decode(line(STATUS_OFFSET))?;
        let promise =
            Record::decode(line(PROMISE_OFFSET), RecordKind::Promise).map_or(0, |record| record.fields[0]);
        let commit_record =
            Record::decode(line(COMMIT_OFFSET), RecordKind::Commit).map_or(0, |record| record.fields[0]);
        Some(Head { promise, commit_record, status })
    }

    /// The highest commit index the head shows.
    pub(crate) fn commit(&self) -> u64 {
        self.status.commit.max(self.commit_record)
    }

    /// Where a leader starts copying its log into this peer: entries below are decided
    /// and present there.
    pub(crate) fn copy_from(&self) -> u64 {
        self.status.commit.min(self.status.present)
    }
}

/// The promise write that opens a leadership with a peer: entries follow it on the log
/// QP, so every completion of an earlier leadership comes back before theirs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Barrier {
    None,
    Posted,
    Done,
}

/// One peer.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) id: NodeId,
    /// A QP in error, per channel.
    pub(crate) broken: [bool; 2],
    /// A repair asked of the driver, per channel.
    pub(crate) repairing: [bool; 2],
    /// It granted the current candidacy (permission to write its log).
    pub(crate) granted: bool,
    /// The number of the last permission acknowledgement taken from it (a stale one, of
    /// a grant it since gave someone else, is never taken twice).
    pub(crate) ack_seen: u64,
    /// The number of the last permission request sent to it.
    pub(crate) asked: u64,
    /// It said it counts in quorums when it granted.
    pub(crate) eligible: bool,
    /// Its head, as last read.
    pub(crate) head: Option<Head>,
    /// A head read is in flight.
    pub(crate) head_reading: bool,
    /// The sequence number of the head read in flight: a completion of an earlier one
    /// (an earlier candidacy's, whose bytes may still be landing) is not it.
    pub(crate) head_tag: u64,
    /// Head reads posted, to number them.
    pub(crate) head_reads: u64,
    /// When the last head read was posted.
    pub(crate) head_read_ns: u64,
    pub(crate) barrier: Barrier,
    /// Leadership: its log holds this replica's entries below `acked`; `next` is the next
    /// entry to post to it.
    pub(crate) next: u64,
    pub(crate) acked: u64,
    /// Leadership: copying to it has started.
    pub(crate) live: bool,
    /// Leadership: the commit index last written to it.
    pub(crate) commit_sent: u64,
    /// Leadership: a snapshot is on its way to it.
    pub(crate) snapshot_pushing: bool,
    /// Leadership: the index of the last snapshot pushed to it.
    pub(crate) pushed: u64,
    /// Candidacy: one of the quorum the proposal number was chosen with, whose logs the
    /// recovery reads (a peer granting later is caught up once this replica leads).
    pub(crate) member: bool,
    /// Candidacy: a run of its slots is being read, with this sequence number.
    pub(crate) slots_reading: bool,
    pub(crate) slots_tag: u64,
    /// Candidacy: the last run of its slots arrived.
    pub(crate) slots_read: bool,
}

impl Peer {
    fn new(id: NodeId) -> Peer {
        Peer {
            id,
            broken: [false; 2],
            repairing: [false; 2],
            granted: false,
            ack_seen: 0,
            asked: 0,
            eligible: false,
            head: None,
            head_reading: false,
            head_tag: u64::MAX,
            head_reads: 0,
            head_read_ns: 0,
            barrier: Barrier::None,
            next: 0,
            acked: 0,
            live: false,
            commit_sent: 0,
            snapshot_pushing: false,
            pushed: 0,
            member: false,
            slots_reading: false,
            slots_tag: u64::MAX,
            slots_read: false,
        }
    }

    /// Forgets everything of a previous candidacy or leadership (not the QPs' health).
    pub(crate) fn reset(&mut self) {
        let (broken, repairing, ack_seen, head_reads) =
            (self.broken, self.repairing, self.ack_seen, self.head_reads);
        *self = Peer { broken, repairing, ack_seen, head_reads, ..Peer::new(self.id) };
    }

    /// Whether posts on `channel` can go out.
    pub(crate) fn usable(&self, channel: Channel) -> bool {
        !self.broken[channel.index()]
    }

    /// Whether it counts in the current candidacy's quorum.
    pub(crate) fn in_quorum(&self) -> bool {
        self.granted && self.eligible && self.head.is_some()
    }

    /// Drops it from the current candidacy or leadership (an operation to it failed).
    pub(crate) fn drop_out(&mut self) {
        self.granted = false;
        self.live = false;
        self.head = None;
        self.head_reading = false;
        self.member = false;
        self.slots_reading = false;
        self.slots_read = false;
        self.snapshot_pushing = false;
        self.barrier = Barrier::None;
    }
}

/// Every peer, in id order.
#[derive(Clone, Debug)]
pub(crate) struct Peers {
    peers: Vec<Peer>,
}

impl Peers {
    pub(crate) fn new(ids: &[NodeId]) -> Peers {
        let mut peers: Vec<Peer> = ids.iter().map(|&id| Peer::new(id)).collect();
        peers.sort_by_key(|peer| peer.id);
        Peers { peers }
    }

    pub(crate) fn get(&self, id: NodeId) -> Option<&Peer> {
        self.peers.iter().find(|peer| peer.id == id)
    }

    pub(crate) fn get_mut(&mut self, id: NodeId) -> Option<&mut Peer> {
        self.peers.iter_mut().find(|peer| peer.id == id)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Peer> {
        self.peers.iter_mut()
    }

    pub(crate) fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.iter().map(|peer| peer.id)
    }

    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    pub(crate) fn reset(&mut self) {
        self.peers.iter_mut().for_each(Peer::reset);
    }

    /// Peers that granted the current candidacy, count in quorums, and whose head is in.
    pub(crate) fn quorum(&self) -> usize {
        self.peers.iter().filter(|peer| peer.in_quorum()).count()
    }

    /// Peers of the recovery quorum still with the candidacy.
    pub(crate) fn members(&self) -> usize {
        self.peers.iter().filter(|peer| peer.member).count()
    }
}
