//! The trace of a run: a hash folded over every executed event, and, when asked for, the
//! events themselves (to diff two runs of a failing seed).
//!
//! The hash is FNV-1a 64 over a fixed little-endian encoding of each [`TraceEvent`], so it
//! does not depend on std's randomly keyed hashers, on the platform, or on the build.

use std::fmt;

use crate::completion::{CompletionOpcode, Status};
use crate::sim::node::NodeId;

/// What a [`TraceEvent`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceKind {
    /// A request reached its responder and was executed; `status` says how it ended there.
    Executed,
    /// A SEND, SEND_WITH_IMM or WRITE_WITH_IMM found no RECV posted: an RNR NAK went back.
    ReceiverNotReady,
    /// A request was lost: partition, crashed node, missing or unconnected QP, or a packet
    /// after a NAK.
    RequestDropped,
    /// A retransmitted request the responder had executed already; it answered from its
    /// reply cache.
    Duplicate,
    /// A response (ACK, NAK, read data, atomic result) reached the requester.
    Response,
    /// A response was lost.
    ResponseDropped,
    /// The requester's ACK timer expired and it sent its unacknowledged requests again.
    Retransmit,
    /// A completion was pushed into a CQ (`wr_id`, `opcode`, `status`, `len` as in it).
    Completion,
    /// A CQ was full when a completion arrived.
    CqOverrun,
    /// A `PeerLost` asynchronous event was raised.
    PeerLost,
    /// A node crashed.
    Crash,
    /// A node was paused.
    Pause,
    /// A node was resumed.
    Resume,
    /// Two nodes were partitioned (`node` and `peer`).
    Partition,
    /// A partition was healed.
    Heal,
}

/// One executed event of a simulated run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual time.
    pub at_ns: u64,
    /// What happened.
    pub kind: TraceKind,
    /// The node where it happened (the responder for requests, the requester for
    /// responses, the CQ's node for completions).
    pub node: NodeId,
    /// The other node involved, if any.
    pub peer: Option<NodeId>,
    /// The QP concerned at `node` (0 when none).
    pub qp_num: u32,
    /// The operation, if any.
    pub opcode: Option<CompletionOpcode>,
    /// Bytes carried.
    pub len: u64,
    /// The outcome.
    pub status: Status,
    /// The work request's id, where one is concerned.
    pub wr_id: u64,
}

impl TraceEvent {
    pub(crate) fn new(at_ns: u64, kind: TraceKind, node: NodeId) -> TraceEvent {
        TraceEvent {
            at_ns,
            kind,
            node,
            peer: None,
            qp_num: 0,
            opcode: None,
            len: 0,
            status: Status::Success,
            wr_id: 0,
        }
    }
}

impl fmt::Display for TraceEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>12} ns {:?} at {}", self.at_ns, self.kind, self.node)?;
        if let Some(peer) = self.peer {
            write!(f, " peer {peer}")?;
        }
        write!(f, " qp {:#x}", self.qp_num)?;
        if let Some(opcode) = self.opcode {
            write!(f, " {opcode:?} len {} wr_id {} {}", self.len, self.wr_id, self.status)?;
        }
        Ok(())
    }
}

/// The running hash, and the recorded events when recording is on.
#[derive(Debug)]
pub(crate) struct Trace {
    hash: u64,
    recording: bool,
    events: Vec<TraceEvent>,
}

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Trace {
    pub(crate) fn new() -> Trace {
        Trace { hash: FNV_OFFSET_BASIS, recording: false, events: Vec::new() }
    }

    pub(crate) fn hash(&self) -> u64 {
        self.hash
    }

    pub(crate) fn set_recording(&mut self, on: bool) {
        self.recording = on;
    }

    pub(crate) fn events(&self) -> &[TraceEvent] {
        &self.events
    }

    pub(crate) fn record(&mut self, event: TraceEvent) {
        let peer = event.peer.map_or(u32::MAX, NodeId::index);
        let opcode = event.opcode.map_or(u32::MAX, CompletionOpcode::code);
        self.fold(&event.at_ns.to_le_bytes());
        self.fold(&kind_code(event.kind).to_le_bytes());
        self.fold(&event.node.index().to_le_bytes());
        self.fold(&peer.to_le_bytes());
        self.fold(&event.qp_num.to_le_bytes());
        self.fold(&opcode.to_le_bytes());
        self.fold(&event.len.to_le_bytes());
        self.fold(&event.status.code().to_le_bytes());
        self.fold(&event.wr_id.to_le_bytes());
        if self.recording {
            self.events.push(event);
        }
    }

    fn fold(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(FNV_PRIME);
        }
    }
}

fn kind_code(kind: TraceKind) -> u32 {
    match kind {
        TraceKind::Executed => 1,
        TraceKind::ReceiverNotReady => 2,
        TraceKind::RequestDropped => 3,
        TraceKind::Duplicate => 4,
        TraceKind::Response => 5,
        TraceKind::ResponseDropped => 6,
        TraceKind::Retransmit => 7,
        TraceKind::Completion => 8,
        TraceKind::CqOverrun => 9,
        TraceKind::PeerLost => 10,
        TraceKind::Crash => 11,
        TraceKind::Pause => 12,
        TraceKind::Resume => 13,
        TraceKind::Partition => 14,
        TraceKind::Heal => 15,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_1a_matches_the_reference_vectors() {
        let mut trace = Trace::new();
        trace.fold(b"a");
        assert_eq!(trace.hash(), 0xaf63_dc4c_8601_ec8c);
        let mut trace = Trace::new();
        trace.fold(b"foobar");
        assert_eq!(trace.hash(), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = TraceEvent::new(5, TraceKind::Executed, NodeId(1));
        let variants = [
            TraceEvent { at_ns: 6, ..base },
            TraceEvent { kind: TraceKind::Response, ..base },
            TraceEvent { node: NodeId(2), ..base },
            TraceEvent { peer: Some(NodeId(0)), ..base },
            TraceEvent { qp_num: 9, ..base },
            TraceEvent { opcode: Some(CompletionOpcode::Write), ..base },
            TraceEvent { len: 1, ..base },
            TraceEvent { status: Status::Flushed, ..base },
            TraceEvent { wr_id: 1, ..base },
        ];
        let hash_of = |event: TraceEvent| {
            let mut trace = Trace::new();
            trace.record(event);
            trace.hash()
        };
        for variant in variants {
            assert_ne!(hash_of(variant), hash_of(base), "{variant:?}");
        }
    }
}
