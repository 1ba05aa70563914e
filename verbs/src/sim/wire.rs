//! What travels between nodes, and the events of the scheduler.

use std::sync::Arc;

use crate::completion::Status;
use crate::sim::node::NodeId;
use crate::work_request::SendOp;

/// A request packet: one send work request on its way to the responder (a whole message,
/// whatever its size: the sim does not split messages into MTU packets).
#[derive(Clone, Debug)]
pub(crate) struct Request {
    pub(crate) from: NodeId,
    pub(crate) from_qp: u32,
    /// The requester's PSN for this connection: the responder drops packets of an older
    /// connection of the same QP.
    pub(crate) from_psn: u32,
    pub(crate) to: NodeId,
    pub(crate) to_qp: u32,
    /// Position in the connection's request stream (0, 1, 2, … from RTS).
    pub(crate) seq: u64,
    /// Every request below this one has been answered; the responder forgets their replies.
    pub(crate) ack_floor: u64,
    /// For the trace only: the responder never sees a `wr_id`.
    pub(crate) wr_id: u64,
    pub(crate) op: SendOp,
    /// What a WRITE or SEND carries (gathered when first transmitted).
    pub(crate) data: Option<Arc<[u8]>>,
    /// Bytes the operation moves (the READ length for READs, 8 for atomics).
    pub(crate) len: u64,
}

impl Request {
    /// Bytes on the wire, for the latency model.
    pub(crate) fn payload_len(&self) -> u64 {
        self.data.as_ref().map_or(0, |data| data.len() as u64)
    }
}

/// A response packet, to the requester QP.
#[derive(Clone, Debug)]
pub(crate) struct Response {
    pub(crate) from: NodeId,
    pub(crate) to: NodeId,
    pub(crate) to_qp: u32,
    pub(crate) to_psn: u32,
    pub(crate) seq: u64,
    pub(crate) kind: ResponseKind,
}

/// What a responder answers.
#[derive(Clone, Debug)]
pub(crate) enum ResponseKind {
    /// Done (WRITE, SEND, WRITE_WITH_IMM).
    Ack,
    /// The bytes of a READ.
    ReadData(Arc<[u8]>),
    /// The old value of an atomic.
    Atomic(u64),
    /// Refused, with the status the requester completes with.
    Nak(Status),
    /// No RECV was posted; try again after `wait_ns`.
    ReceiverNotReady { wait_ns: u64 },
}

impl ResponseKind {
    pub(crate) fn payload_len(&self) -> u64 {
        match self {
            ResponseKind::ReadData(data) => data.len() as u64,
            ResponseKind::Atomic(_) => 8,
            _ => 0,
        }
    }

    /// The status the responder's side of the operation ended with, for the trace.
    pub(crate) fn status(&self) -> Status {
        match self {
            ResponseKind::Nak(status) => *status,
            _ => Status::Success,
        }
    }
}

/// A scheduled event.
#[derive(Debug)]
pub(crate) enum Event {
    /// A request reaches its responder.
    Deliver(Box<Request>),
    /// A response reaches its requester.
    Respond(Box<Response>),
    /// A requester QP's ACK timer expires.
    AckTimer { node: NodeId, qp_num: u32, incarnation: u64 },
    /// A requester sends again a request that met an RNR NAK.
    RnrResend { node: NodeId, qp_num: u32, incarnation: u64, seq: u64 },
    /// A node notices that the peer of one of its QPs has crashed.
    PeerLost { node: NodeId, qp_num: u32, incarnation: u64, lost: NodeId },
}
