//! Queue pairs: their state in the fabric, the state machine, posting RECVs, flushing,
//! and the handle behind the public [`QueuePair`](crate::QueuePair).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use rand::Rng;

use crate::access::AccessFlags;
use crate::completion::{Completion, CompletionOpcode, Status};
use crate::emulation::checks;
use crate::error::{BadEndpoint, Error, PeerLoss, PostRejection, Result};
use crate::probe::PeerProbe;
use crate::provider::{ProviderKind, QpOps, Transition};
use crate::qp::{Address, Endpoint, Mtu, QpCaps, QpState, RtsAttributes};
use crate::sim::completion_queue::WorkQueue;
use crate::sim::device::{crashed_error, MAX_QP_PER_NODE};
use crate::sim::fabric::Shared;
use crate::sim::node::NodeId;
use crate::sim::scheduler::EventId;
use crate::sim::wire::{Request, ResponseKind};
use crate::sim::world::World;
use crate::work_request::{RecvWr, SendOp, SendWr, Sge};

/// PSN mask (24 bits) and the step between a QP's PSNs across resets: odd, so a QP meets
/// its old PSN again only after 2^24 resets, and a stale packet never matches.
const PSN_MASK: u32 = 0xff_ffff;
const PSN_STEP: u32 = 0x9e_3779;

/// The peer a QP was connected to at RTR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RemoteQp {
    pub(crate) node: NodeId,
    pub(crate) qp_num: u32,
    pub(crate) psn: u32,
}

/// A QP as the fabric sees it.
#[derive(Debug)]
pub(crate) struct QueuePairState {
    pub(crate) pd: u32,
    pub(crate) send_cq: u32,
    pub(crate) recv_cq: u32,
    pub(crate) caps: QpCaps,
    pub(crate) state: QpState,
    /// Bumped at each reset, so events of an earlier life of the QP are ignored.
    pub(crate) incarnation: u64,
    pub(crate) psn: u32,
    /// Responder rights.
    pub(crate) access: AccessFlags,
    pub(crate) remote: Option<RemoteQp>,
    pub(crate) min_rnr_timer: u8,
    pub(crate) rts: RtsAttributes,
    pub(crate) send: SendQueue,
    pub(crate) recv: RecvQueue,
    pub(crate) responder: ResponderState,
}

/// The requester side: posted send work requests not yet completed, in post order.
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    pub(crate) entries: VecDeque<SendEntry>,
    /// How many entries at the front have been put on the wire (they carry consecutive
    /// wire sequence numbers).
    pub(crate) transmitted: usize,
    pub(crate) next_post_seq: u64,
    /// Post sequence numbers below this are no longer outstanding (their completion, or a
    /// later one of this queue, was polled).
    pub(crate) retired_below: u64,
    pub(crate) next_wire_seq: u64,
    /// A request failed locally; nothing after it goes on the wire.
    pub(crate) halted: bool,
    /// Requests and responses of a QP arrive in order: never before the previous one.
    pub(crate) last_request_arrival_ns: u64,
    pub(crate) last_response_arrival_ns: u64,
    /// The pending ACK-timer event.
    pub(crate) timer: Option<EventId>,
    pub(crate) retries_left: u8,
    /// An RNR-NAKed request goes out again at this time; the ACK timer waits for it.
    pub(crate) quiet_until_ns: u64,
}

/// One posted send work request.
#[derive(Debug)]
pub(crate) struct SendEntry {
    pub(crate) post_seq: u64,
    pub(crate) wr_id: u64,
    pub(crate) op: SendOp,
    pub(crate) signaled: bool,
    pub(crate) fence: bool,
    pub(crate) sges: Vec<Sge>,
    pub(crate) inline: Option<Arc<[u8]>>,
    pub(crate) len: u64,
    /// What `check_request_shape` found wrong, reported when the request would go out.
    pub(crate) shape_error: Option<Status>,
    pub(crate) wire_seq: Option<u64>,
    /// The bytes a WRITE or SEND carries, gathered when first put on the wire and kept for
    /// retransmissions.
    pub(crate) data: Option<Arc<[u8]>>,
    pub(crate) rnr_naks: u32,
    /// Status and byte count, once known; it completes when every earlier one has.
    pub(crate) result: Option<(Status, u32)>,
}

/// Posted RECVs, consumed in order.
#[derive(Debug, Default)]
pub(crate) struct RecvQueue {
    pub(crate) entries: VecDeque<RecvEntry>,
    pub(crate) next_post_seq: u64,
    pub(crate) retired_below: u64,
}

/// One posted RECV.
#[derive(Debug)]
pub(crate) struct RecvEntry {
    pub(crate) post_seq: u64,
    pub(crate) wr_id: u64,
    pub(crate) sges: Vec<Sge>,
}

/// The responder side of the connection.
#[derive(Debug, Default)]
pub(crate) struct ResponderState {
    /// The next request sequence number to execute.
    pub(crate) expected_seq: u64,
    /// Requests that arrived ahead of an earlier one (same arrival time, or behind an
    /// RNR-NAKed one); they run as soon as it has.
    pub(crate) parked: BTreeMap<u64, Request>,
    /// Responses to executed requests the requester may not have received, to answer a
    /// retransmission without executing it twice.
    pub(crate) replies: VecDeque<(u64, ResponseKind)>,
}

impl ResponderState {
    pub(crate) fn forget_below(&mut self, ack_floor: u64) {
        while self.replies.front().is_some_and(|(seq, _)| *seq < ack_floor) {
            self.replies.pop_front();
        }
    }

    pub(crate) fn cached(&self, seq: u64) -> Option<ResponseKind> {
        self.replies.iter().find(|(cached, _)| *cached == seq).map(|(_, kind)| kind.clone())
    }
}

impl SendQueue {
    pub(crate) fn outstanding(&self) -> u64 {
        self.next_post_seq - self.retired_below
    }

    /// The index of the transmitted entry with wire sequence number `seq`.
    pub(crate) fn index_of(&self, seq: u64) -> Option<usize> {
        let first = self.entries.front()?.wire_seq?;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        (index < self.transmitted).then_some(index)
    }

    /// Indices of transmitted entries still waiting for their response.
    pub(crate) fn unanswered(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.transmitted).filter(|&index| self.entries[index].result.is_none())
    }

    /// The wire sequence number below which every request has been answered.
    pub(crate) fn ack_floor(&self) -> u64 {
        self.unanswered()
            .next()
            .map_or(self.next_wire_seq, |index| self.entries[index].wire_seq.expect("transmitted"))
    }
}

impl SendEntry {
    pub(crate) fn new(wr: &SendWr<'_>, post_seq: u64) -> SendEntry {
        let (sges, inline) = match wr.payload {
            crate::work_request::Payload::Sges(sges) => (sges.to_vec(), None),
            crate::work_request::Payload::Inline(bytes) => (Vec::new(), Some(Arc::from(bytes))),
        };
        SendEntry {
            post_seq,
            wr_id: wr.wr_id,
            op: wr.op,
            signaled: wr.signaled,
            fence: wr.fence,
            sges,
            inline,
            len: wr.payload.len(),
            shape_error: checks::check_request_shape(wr).err(),
            wire_seq: None,
            data: None,
            rnr_naks: 0,
            result: None,
        }
    }

    /// Whether the responder's answer lands in local memory (READ, atomics).
    pub(crate) fn reads_into_local(&self) -> bool {
        matches!(self.op, SendOp::Read { .. } | SendOp::CompareSwap { .. } | SendOp::FetchAdd { .. })
    }

    pub(crate) fn completion(&self, status: Status, byte_len: u32, qp_num: u32) -> Completion {
        Completion {
            wr_id: self.wr_id,
            status,
            opcode: self.op.completion_opcode(),
            byte_len,
            imm: None,
            qp_num,
        }
    }
}

impl QueuePairState {
    /// The request for the transmitted entry at `index`.
    pub(crate) fn request(&self, from: NodeId, from_qp: u32, index: usize) -> Request {
        let entry = &self.send.entries[index];
        let remote = self.remote.expect("a transmitting QP is connected");
        Request {
            from,
            from_qp,
            from_psn: self.psn,
            to: remote.node,
            to_qp: remote.qp_num,
            seq: entry.wire_seq.expect("transmitted"),
            ack_floor: self.send.ack_floor(),
            wr_id: entry.wr_id,
            op: entry.op,
            data: entry.data.clone(),
            len: entry.len,
        }
    }

    /// The requester's ACK timeout (an "infinite" one is capped, see the module doc).
    pub(crate) fn ack_timeout_ns(&self) -> u64 {
        crate::qp::ack_timeout_ns(self.rts.timeout).unwrap_or(crate::sim::UNLIMITED_ACK_TIMEOUT_NS)
    }
}

impl World {
    /// Creates a QP in RESET; returns its number and first PSN.
    pub(crate) fn create_qp(
        &mut self,
        node: NodeId,
        pd: u32,
        send_cq: u32,
        recv_cq: u32,
        caps: QpCaps,
    ) -> Result<(u32, u32)> {
        if self.is_crashed(node) {
            return Err(crashed_error(node));
        }
        let rng = self.scheduler.rng();
        let psn = rng.gen_range(0..=PSN_MASK);
        let state = &mut self.nodes[node.0 as usize];
        if state.qps.len() >= MAX_QP_PER_NODE as usize {
            return Err(Error::ResourceExhausted { what: "QPs", limit: u64::from(MAX_QP_PER_NODE) });
        }
        let qp_num = state.fresh_qp_num(self.scheduler.rng());
        let qp = QueuePairState {
            pd,
            send_cq,
            recv_cq,
            caps,
            state: QpState::Reset,
            incarnation: 0,
            psn,
            access: AccessFlags::empty(),
            remote: None,
            min_rnr_timer: 0,
            rts: RtsAttributes::default(),
            send: SendQueue::default(),
            recv: RecvQueue::default(),
            responder: ResponderState::default(),
        };
        state.qps.insert(qp_num, qp);
        Ok((qp_num, psn))
    }

    /// Applies a transition the public layer has already checked.
    pub(crate) fn modify_qp(&mut self, node: NodeId, qp_num: u32, transition: Transition<'_>) -> Result<()> {
        if self.is_crashed(node) {
            return Ok(());
        }
        let remote = match transition {
            Transition::Rtr(endpoint, _) => Some(self.resolve(endpoint)?),
            _ => None,
        };
        let qp = self.qp_mut(node, qp_num).expect("a live QP handle names a QP");
        match transition {
            Transition::Init(attributes) => {
                qp.access = attributes.access;
                qp.state = QpState::Init;
            }
            Transition::Rtr(_, attributes) => {
                qp.remote = remote;
                qp.min_rnr_timer = attributes.min_rnr_timer;
                qp.responder = ResponderState::default();
                qp.send.next_wire_seq = 0;
                qp.state = QpState::Rtr;
            }
            Transition::Rts(attributes) => {
                qp.rts = *attributes;
                qp.send.retries_left = attributes.retry_count;
                qp.state = QpState::Rts;
            }
            // Takes effect for every request executed from now on: nothing with the old
            // rights can land after this returns.
            Transition::Access(access) => qp.access = access,
            Transition::Error => self.qp_to_error(node, qp_num),
            Transition::Reset => self.reset_qp(node, qp_num),
        }
        Ok(())
    }

    /// The peer an RTR endpoint names, if it is a live QP of this fabric.
    fn resolve(&self, endpoint: &Endpoint) -> Result<RemoteQp> {
        let Address::Sim { fabric, node } = endpoint.address else {
            let provider = ProviderKind::Sim;
            return Err(Error::BadEndpoint(BadEndpoint::OtherProvider {
                provider,
                address: endpoint.address,
            }));
        };
        if fabric != self.fabric_id {
            let ours = format!("sim fabric #{}", self.fabric_id);
            return Err(Error::BadEndpoint(BadEndpoint::OtherFabric { ours }));
        }
        let peer = NodeId(node);
        let unreachable = |reason| Error::unreachable(format!("sim {peer}"), reason);
        if node as usize >= self.nodes.len() {
            return Err(unreachable(PeerLoss::NoSuchNode));
        }
        if self.is_crashed(peer) {
            return Err(unreachable(PeerLoss::Crashed));
        }
        if self.qp(peer, endpoint.qp_num).is_none() {
            return Err(unreachable(PeerLoss::NoSuchQp { qp_num: endpoint.qp_num }));
        }
        Ok(RemoteQp { node: peer, qp_num: endpoint.qp_num, psn: endpoint.psn })
    }

    /// RESET: queues emptied without completions, a new PSN, disconnected.
    fn reset_qp(&mut self, node: NodeId, qp_num: u32) {
        self.set_ack_timer(node, qp_num, None);
        let qp = self.qp_mut(node, qp_num).expect("a live QP handle names a QP");
        qp.state = QpState::Reset;
        qp.incarnation += 1;
        qp.psn = qp.psn.wrapping_add(PSN_STEP) & PSN_MASK;
        qp.remote = None;
        let send = &mut qp.send;
        send.entries.clear();
        send.transmitted = 0;
        send.retired_below = send.next_post_seq;
        send.next_wire_seq = 0;
        send.halted = false;
        send.quiet_until_ns = 0;
        qp.recv.entries.clear();
        qp.recv.retired_below = qp.recv.next_post_seq;
        qp.responder = ResponderState::default();
    }

    /// ERROR: every outstanding request and posted RECV completes as flushed, signaled or
    /// not, in order.
    pub(crate) fn qp_to_error(&mut self, node: NodeId, qp_num: u32) {
        if self.qp(node, qp_num).is_none() {
            return;
        }
        self.set_ack_timer(node, qp_num, None);
        let qp = self.qp_mut(node, qp_num).expect("checked above");
        qp.state = QpState::Error;
        let sends = std::mem::take(&mut qp.send.entries);
        qp.send.transmitted = 0;
        qp.send.halted = false;
        let recvs = std::mem::take(&mut qp.recv.entries);
        qp.responder = ResponderState::default();
        let (send_cq, recv_cq) = (qp.send_cq, qp.recv_cq);
        for entry in sends {
            let completion = entry.completion(Status::Flushed, 0, qp_num);
            self.push_completion(node, send_cq, WorkQueue::Send, entry.post_seq, completion);
        }
        for entry in recvs {
            let completion = recv_completion(entry.wr_id, Status::Flushed, CompletionOpcode::Recv, 0, qp_num);
            self.push_completion(node, recv_cq, WorkQueue::Recv, entry.post_seq, completion);
        }
    }

    /// Posts RECVs, with the partial-post rule of `ibv_post_recv`.
    pub(crate) fn post_recv(&mut self, node: NodeId, qp_num: u32, wrs: &[RecvWr<'_>]) -> Result<()> {
        if self.is_crashed(node) {
            return Ok(());
        }
        for (index, wr) in wrs.iter().enumerate() {
            let reject = |reason| Error::PostRejected { index, reason };
            let qp = self.qp_mut(node, qp_num).expect("a live QP handle names a QP");
            if !qp.state.accepts_recv() {
                return Err(reject(PostRejection::QpState { state: qp.state }));
            }
            checks::check_recv_post(wr, &qp.caps).map_err(reject)?;
            let depth = qp.caps.max_recv_wr;
            if qp.recv.next_post_seq - qp.recv.retired_below >= u64::from(depth) {
                return Err(reject(PostRejection::QueueFull { depth }));
            }
            let post_seq = qp.recv.next_post_seq;
            qp.recv.next_post_seq += 1;
            if qp.state == QpState::Error {
                let recv_cq = qp.recv_cq;
                let completion =
                    recv_completion(wr.wr_id, Status::Flushed, CompletionOpcode::Recv, 0, qp_num);
                self.push_completion(node, recv_cq, WorkQueue::Recv, post_seq, completion);
            } else {
                qp.recv.entries.push_back(RecvEntry { post_seq, wr_id: wr.wr_id, sges: wr.sges.to_vec() });
            }
        }
        Ok(())
    }

    /// Destroys a QP: flushes it, then forgets it; requests to it are dropped from now on.
    pub(crate) fn destroy_qp(&mut self, node: NodeId, qp_num: u32) {
        if self.is_crashed(node) {
            return;
        }
        self.qp_to_error(node, qp_num);
        self.node_mut(node).qps.remove(&qp_num);
    }
}

pub(crate) fn recv_completion(
    wr_id: u64,
    status: Status,
    opcode: CompletionOpcode,
    byte_len: u32,
    qp_num: u32,
) -> Completion {
    Completion { wr_id, status, opcode, byte_len, imm: None, qp_num }
}

/// The provider object behind a [`QueuePair`](crate::QueuePair).
#[derive(Debug)]
pub(crate) struct SimQp {
    pub(crate) fabric: Arc<Shared>,
    pub(crate) node: NodeId,
    pub(crate) qp_num: u32,
    pub(crate) caps: QpCaps,
    /// The PSN as of the last transition (kept here so a crashed node's QP still answers).
    pub(crate) psn: u32,
}

impl QpOps for SimQp {
    fn qp_num(&self) -> u32 {
        self.qp_num
    }

    /// A crashed node's QPs read as ERROR.
    fn state(&self) -> QpState {
        self.fabric.world().qp(self.node, self.qp_num).map_or(QpState::Error, |qp| qp.state)
    }

    fn caps(&self) -> QpCaps {
        self.caps
    }

    fn endpoint(&self) -> Endpoint {
        let fabric = self.fabric.id();
        Endpoint {
            qp_num: self.qp_num,
            psn: self.psn,
            mtu: Mtu::Mtu4096,
            address: Address::Sim { fabric, node: self.node.index() },
        }
    }

    fn modify(&mut self, transition: Transition<'_>) -> Result<()> {
        let mut world = self.fabric.world();
        world.modify_qp(self.node, self.qp_num, transition)?;
        if let Some(qp) = world.qp(self.node, self.qp_num) {
            self.psn = qp.psn;
        }
        Ok(())
    }

    fn post_send(&mut self, wrs: &[SendWr<'_>]) -> Result<()> {
        self.fabric.world().post_send(self.node, self.qp_num, wrs)
    }

    fn post_recv(&mut self, wrs: &[RecvWr<'_>]) -> Result<()> {
        self.fabric.world().post_recv(self.node, self.qp_num, wrs)
    }

    /// What the soft provider would read in /proc: a crashed peer node is `Exiting` at
    /// once (a killed process is, microseconds after the signal), a paused one `Stopped`.
    fn probe_peer(&self) -> PeerProbe {
        let world = self.fabric.world();
        let Some(remote) = world.qp(self.node, self.qp_num).and_then(|qp| qp.remote) else {
            return PeerProbe::Unknown;
        };
        let peer = world.node(remote.node);
        if peer.crashed {
            PeerProbe::Exiting
        } else if peer.paused {
            PeerProbe::Stopped
        } else {
            PeerProbe::Alive
        }
    }
}

impl Drop for SimQp {
    fn drop(&mut self) {
        self.fabric.world().destroy_qp(self.node, self.qp_num);
    }
}
