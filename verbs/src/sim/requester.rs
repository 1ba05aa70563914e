//! The requester side of a QP: posting send work requests, putting them on the wire in
//! order, responses, the ACK timer with retransmission, RNR retries, and completing in post
//! order.

use std::sync::Arc;

use crate::completion::Status;
use crate::emulation::checks;
use crate::error::{Error, PostRejection, Result};
use crate::qp::{rnr_retries_forever, QpState};
use crate::sim::completion_queue::WorkQueue;
use crate::sim::node::{Node, NodeId};
use crate::sim::queue_pair::SendEntry;
use crate::sim::trace::{TraceEvent, TraceKind};
use crate::sim::wire::{Event, Request, Response, ResponseKind};
use crate::sim::world::World;
use crate::work_request::SendWr;

/// What `transmit_pending` found to do with the next waiting request.
enum Next {
    Stop,
    FailedLocally,
    Send { request: Request, arm_timer: bool },
}

impl World {
    /// Posts send work requests, with the partial-post rule of `ibv_post_send`.
    pub(crate) fn post_send(&mut self, node: NodeId, qp_num: u32, wrs: &[SendWr<'_>]) -> Result<()> {
        if self.is_crashed(node) {
            return Ok(());
        }
        let posted = self.enqueue_sends(node, qp_num, wrs);
        // Whatever was accepted before a refusal goes out.
        self.transmit_pending(node, qp_num);
        posted
    }

    fn enqueue_sends(&mut self, node: NodeId, qp_num: u32, wrs: &[SendWr<'_>]) -> Result<()> {
        for (index, wr) in wrs.iter().enumerate() {
            let reject = |reason| Error::PostRejected { index, reason };
            let qp = self.qp_mut(node, qp_num).expect("a live QP handle names a QP");
            if matches!(qp.state, QpState::Reset | QpState::Init | QpState::Rtr) {
                return Err(reject(PostRejection::QpState { state: qp.state }));
            }
            checks::check_send_post(wr, &qp.caps).map_err(reject)?;
            let depth = qp.caps.max_send_wr;
            if qp.send.outstanding() >= u64::from(depth) {
                return Err(reject(PostRejection::QueueFull { depth }));
            }
            let post_seq = qp.send.next_post_seq;
            qp.send.next_post_seq += 1;
            let entry = SendEntry::new(wr, post_seq);
            if qp.state == QpState::Error {
                let send_cq = qp.send_cq;
                let completion = entry.completion(Status::Flushed, 0, qp_num);
                self.push_completion(node, send_cq, WorkQueue::Send, post_seq, completion);
            } else {
                qp.send.entries.push_back(entry);
            }
        }
        Ok(())
    }

    /// Puts the QP's waiting requests on the wire, in post order, until one must wait (the
    /// node is paused, a fence, a local error ahead).
    pub(crate) fn transmit_pending(&mut self, node: NodeId, qp_num: u32) {
        loop {
            match self.next_to_transmit(node, qp_num) {
                Next::Stop => return,
                Next::FailedLocally => {
                    self.retire(node, qp_num);
                    return;
                }
                Next::Send { request, arm_timer } => {
                    self.send_request(request);
                    if arm_timer {
                        let now = self.now();
                        let qp = self.qp_mut(node, qp_num).expect("just transmitted");
                        qp.send.retries_left = qp.rts.retry_count;
                        let deadline = now + qp.ack_timeout_ns();
                        self.set_ack_timer(node, qp_num, Some(deadline));
                    }
                }
            }
        }
    }

    /// Validates the next waiting request as the NIC does when it starts it, gathers what
    /// it carries, and gives it its wire sequence number.
    fn next_to_transmit(&mut self, node: NodeId, qp_num: u32) -> Next {
        let Node { crashed, paused, memory, qps, .. } = &mut self.nodes[node.0 as usize];
        let Some(qp) = qps.get_mut(&qp_num) else { return Next::Stop };
        if *crashed || *paused || qp.state != QpState::Rts || qp.send.halted {
            return Next::Stop;
        }
        let index = qp.send.transmitted;
        let Some(entry) = qp.send.entries.get(index) else { return Next::Stop };
        let waits_for_fence = entry.fence
            && qp
                .send
                .entries
                .iter()
                .take(index)
                .any(|earlier| earlier.reads_into_local() && earlier.result.is_none());
        if waits_for_fence {
            return Next::Stop;
        }
        let gathered = match entry.shape_error {
            Some(status) => Err(status),
            None if entry.reads_into_local() => memory.check_local(qp.pd, &entry.sges, true).map(|()| None),
            None => match &entry.inline {
                Some(bytes) => Ok(Some(Arc::clone(bytes))),
                None => memory.gather(qp.pd, &entry.sges).map(|bytes| Some(Arc::from(bytes))),
            },
        };
        let entry = &mut qp.send.entries[index];
        match gathered {
            Err(status) => {
                entry.result = Some((status, 0));
                qp.send.halted = true;
                Next::FailedLocally
            }
            Ok(data) => {
                entry.data = data;
                entry.wire_seq = Some(qp.send.next_wire_seq);
                qp.send.next_wire_seq += 1;
                qp.send.transmitted += 1;
                let arm_timer = qp.send.timer.is_none();
                Next::Send { request: qp.request(node, qp_num, index), arm_timer }
            }
        }
    }

    /// Sends a request (first transmission or retry): never arrives before the QP's
    /// previous request.
    pub(crate) fn send_request(&mut self, request: Request) {
        let latency = self.sample_latency(request.from, request.to, request.payload_len());
        let mut at_ns = self.now() + latency;
        if let Some(qp) = self.qp_mut(request.from, request.from_qp) {
            // Strictly after the previous one: events at one instant run in a random order.
            at_ns = at_ns.max(qp.send.last_request_arrival_ns + 1);
            qp.send.last_request_arrival_ns = at_ns;
        }
        if !self.link_up(request.from, request.to) {
            let event = request_trace(self.now(), TraceKind::RequestDropped, &request, Status::Success);
            self.record(TraceEvent { node: request.from, peer: Some(request.to), ..event });
            return;
        }
        self.schedule(at_ns, Event::Deliver(Box::new(request)));
    }

    /// A response reaches the requester.
    pub(crate) fn on_response(&mut self, response: Response) {
        let now = self.now();
        let mut event = TraceEvent::new(now, TraceKind::Response, response.to);
        event.peer = Some(response.from);
        event.qp_num = response.to_qp;
        event.status = response.kind.status();
        event.len = response.kind.payload_len();
        if !self.link_up(response.from, response.to) {
            self.record(TraceEvent { kind: TraceKind::ResponseDropped, ..event });
            return;
        }
        let Node { memory, qps, .. } = &mut self.nodes[response.to.0 as usize];
        let Some(qp) = qps.get_mut(&response.to_qp) else { return };
        if qp.psn != response.to_psn || qp.state != QpState::Rts {
            return;
        }
        let Some(index) = qp.send.index_of(response.seq) else { return };
        // RC takes responses in request order, and the responder runs requests in order:
        // a response to a later request acknowledges every earlier WRITE or SEND whose own
        // ACK was lost. An earlier READ or atomic still owes its data: the later response
        // is dropped, as a NIC drops an out-of-sequence packet, and comes again when the
        // ACK timer sends every unanswered request again. (Taken early, a READ's bytes
        // would land before an earlier READ's resent ones.)
        let earlier: Vec<usize> = qp.send.unanswered().take_while(|&earlier| earlier < index).collect();
        if earlier.iter().any(|&earlier| qp.send.entries[earlier].reads_into_local()) {
            let wr_id = qp.send.entries[index].wr_id;
            self.record(TraceEvent { kind: TraceKind::ResponseDropped, wr_id, ..event });
            return;
        }
        for earlier in earlier {
            qp.send.entries[earlier].result = Some((Status::Success, 0));
        }
        let (rts, pd) = (qp.rts, qp.pd);
        let entry = &mut qp.send.entries[index];
        if entry.result.is_some() {
            return;
        }
        event.opcode = Some(entry.op.completion_opcode());
        event.wr_id = entry.wr_id;
        let mut resend_at_ns = None;
        entry.result = match response.kind {
            ResponseKind::Ack => Some((Status::Success, 0)),
            ResponseKind::Nak(status) => Some((status, 0)),
            ResponseKind::ReadData(data) => Some(match memory.scatter(pd, &entry.sges, &data) {
                Ok(()) => {
                    (Status::Success, u32::try_from(data.len()).expect("messages are at most 2^31 bytes"))
                }
                Err(status) => (status, 0),
            }),
            ResponseKind::Atomic(old) => Some(match memory.scatter(pd, &entry.sges, &old.to_ne_bytes()) {
                Ok(()) => (Status::Success, 8),
                Err(status) => (status, 0),
            }),
            ResponseKind::ReceiverNotReady { wait_ns } => {
                entry.rnr_naks += 1;
                if !rnr_retries_forever(rts.rnr_retry) && entry.rnr_naks > u32::from(rts.rnr_retry) {
                    Some((Status::RnrRetryExceeded, 0))
                } else {
                    resend_at_ns = Some(now + wait_ns);
                    None
                }
            }
        };
        // Any fresh response is progress: the retry budget refills and the timer restarts.
        qp.send.retries_left = rts.retry_count;
        if let Some(at_ns) = resend_at_ns {
            qp.send.quiet_until_ns = qp.send.quiet_until_ns.max(at_ns);
        }
        let deadline =
            qp.send.unanswered().next().map(|_| now.max(qp.send.quiet_until_ns) + qp.ack_timeout_ns());
        let incarnation = qp.incarnation;
        self.record(event);
        if let Some(at_ns) = resend_at_ns {
            let seq = response.seq;
            self.schedule(
                at_ns,
                Event::RnrResend { node: response.to, qp_num: response.to_qp, incarnation, seq },
            );
        }
        self.set_ack_timer(response.to, response.to_qp, deadline);
        self.retire(response.to, response.to_qp);
        self.transmit_pending(response.to, response.to_qp);
    }

    /// The ACK timer expired: send every unanswered request again, or give up.
    pub(crate) fn on_ack_timer(&mut self, node: NodeId, qp_num: u32, incarnation: u64) {
        let now = self.now();
        let Some(qp) = self.qp_mut(node, qp_num) else { return };
        if qp.incarnation != incarnation {
            return;
        }
        qp.send.timer = None;
        let unanswered: Vec<usize> = qp.send.unanswered().collect();
        if qp.state != QpState::Rts || unanswered.is_empty() {
            return;
        }
        if qp.send.retries_left == 0 {
            qp.send.entries[unanswered[0]].result = Some((Status::RetryExceeded, 0));
            self.retire(node, qp_num);
            return;
        }
        qp.send.retries_left -= 1;
        let requests: Vec<Request> =
            unanswered.iter().map(|&index| qp.request(node, qp_num, index)).collect();
        let deadline = now + qp.ack_timeout_ns();
        let mut event = TraceEvent::new(now, TraceKind::Retransmit, node);
        event.qp_num = qp_num;
        event.len = requests.len() as u64;
        self.record(event);
        for request in requests {
            self.send_request(request);
        }
        self.set_ack_timer(node, qp_num, Some(deadline));
    }

    /// The RNR timer of a NAKed request ran out: send it again.
    pub(crate) fn on_rnr_resend(&mut self, node: NodeId, qp_num: u32, incarnation: u64, seq: u64) {
        let Some(qp) = self.qp_mut(node, qp_num) else { return };
        if qp.incarnation != incarnation || qp.state != QpState::Rts {
            return;
        }
        let Some(index) = qp.send.index_of(seq) else { return };
        if qp.send.entries[index].result.is_some() {
            return;
        }
        let request = qp.request(node, qp_num, index);
        self.send_request(request);
    }

    /// Completes finished requests from the front, in post order; the first error moves
    /// the QP to ERROR.
    pub(crate) fn retire(&mut self, node: NodeId, qp_num: u32) {
        loop {
            let Some(qp) = self.qp_mut(node, qp_num) else { return };
            if qp.state == QpState::Error {
                return;
            }
            let Some((status, byte_len)) = qp.send.entries.front().and_then(|entry| entry.result) else {
                return;
            };
            let entry = qp.send.entries.pop_front().expect("front exists");
            if entry.wire_seq.is_some() {
                qp.send.transmitted -= 1;
            }
            let send_cq = qp.send_cq;
            if status.is_success() && !entry.signaled {
                continue;
            }
            let completion = entry.completion(status, byte_len, qp_num);
            self.push_completion(node, send_cq, WorkQueue::Send, entry.post_seq, completion);
            if !status.is_success() {
                self.qp_to_error(node, qp_num);
                return;
            }
        }
    }

    /// Re-arms (or with `None` disarms) a QP's ACK timer.
    pub(crate) fn set_ack_timer(&mut self, node: NodeId, qp_num: u32, deadline: Option<u64>) {
        let Some(qp) = self.qp_mut(node, qp_num) else { return };
        let previous = qp.send.timer.take();
        let incarnation = qp.incarnation;
        if let Some(id) = previous {
            self.scheduler.cancel(id);
        }
        if let Some(at_ns) = deadline {
            let id = self.schedule(at_ns, Event::AckTimer { node, qp_num, incarnation });
            self.qp_mut(node, qp_num).expect("checked above").send.timer = Some(id);
        }
    }
}

/// A trace event about a request.
pub(crate) fn request_trace(at_ns: u64, kind: TraceKind, request: &Request, status: Status) -> TraceEvent {
    let mut event = TraceEvent::new(at_ns, kind, request.to);
    event.peer = Some(request.from);
    event.qp_num = request.to_qp;
    event.opcode = Some(request.op.completion_opcode());
    event.len = request.len;
    event.status = status;
    event.wr_id = request.wr_id;
    event
}
