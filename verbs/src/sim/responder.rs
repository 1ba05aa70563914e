//! The responder side: a request arrives, is checked as a NIC checks it, executes on the
//! responder's memory or consumes one of its RECVs, and a response goes back.
//!
//! Requests of one connection execute in order. One that arrives ahead of an earlier one
//! is parked until that one has run; one the responder has run already (a retransmission)
//! is answered from a small reply cache, so an atomic never runs twice. A request the
//! responder refuses moves the responder QP to ERROR, as on a NIC.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::access::RemoteOpKind;
use crate::completion::{Completion, CompletionOpcode, Status};
use crate::event::{AsyncEvent, AsyncEventKind};
use crate::qp::rnr_timer_ns;
use crate::sim::completion_queue::WorkQueue;
use crate::sim::node::{Node, NodeId};
use crate::sim::queue_pair::{recv_completion, RemoteQp};
use crate::sim::requester::request_trace;
use crate::sim::trace::TraceKind;
use crate::sim::wire::{Event, Request, Response, ResponseKind};
use crate::sim::world::World;
use crate::work_request::SendOp;

/// What executing a request did at the responder besides answering.
struct Executed {
    response: ResponseKind,
    /// A RECV completion to push (recv CQ, post sequence number, completion).
    recv_completion: Option<(u32, u64, Completion)>,
}

impl Executed {
    fn respond(response: ResponseKind) -> Executed {
        Executed { response, recv_completion: None }
    }
}

impl World {
    /// A request reaches its responder.
    pub(crate) fn on_request(&mut self, request: Request) {
        let now = self.now();
        let dropped = request_trace(now, TraceKind::RequestDropped, &request, Status::Success);
        if !self.link_up(request.from, request.to) {
            self.record(dropped);
            return;
        }
        let sender = RemoteQp { node: request.from, qp_num: request.from_qp, psn: request.from_psn };
        let Some(qp) = self.qp_mut(request.to, request.to_qp) else {
            self.record(dropped);
            return;
        };
        if !qp.state.serves_peer() || qp.remote != Some(sender) {
            self.record(dropped);
            return;
        }
        let responder = &mut qp.responder;
        responder.forget_below(request.ack_floor);
        if request.seq < responder.expected_seq {
            match responder.cached(request.seq) {
                Some(response) => {
                    let status = response.status();
                    self.record(request_trace(now, TraceKind::Duplicate, &request, status));
                    self.send_response(&request, response);
                }
                None => self.record(dropped),
            }
            return;
        }
        if request.seq > responder.expected_seq {
            responder.parked.insert(request.seq, request);
            return;
        }
        self.execute_in_order(request);
    }

    /// Executes `first`, then every parked request that was waiting for it.
    fn execute_in_order(&mut self, first: Request) {
        let (node, qp_num) = (first.to, first.to_qp);
        let mut next = Some(first);
        while let Some(request) = next.take() {
            let executed = self.execute(&request);
            let response = executed.response.clone();
            let kind = match response {
                ResponseKind::ReceiverNotReady { .. } => TraceKind::ReceiverNotReady,
                _ => TraceKind::Executed,
            };
            self.record(request_trace(self.now(), kind, &request, response.status()));
            if let Some((recv_cq, post_seq, completion)) = executed.recv_completion {
                self.push_completion(node, recv_cq, WorkQueue::Recv, post_seq, completion);
            }
            match response {
                ResponseKind::ReceiverNotReady { .. } => {}
                ResponseKind::Nak(status) => self.responder_fails(node, qp_num, status),
                _ => {
                    let responder =
                        &mut self.qp_mut(node, qp_num).expect("execution destroys no QP").responder;
                    responder.expected_seq += 1;
                    responder.replies.push_back((request.seq, response.clone()));
                    next = responder.parked.remove(&responder.expected_seq);
                }
            }
            self.send_response(&request, response);
        }
    }

    /// Checks and runs one request on the responder's memory.
    fn execute(&mut self, request: &Request) -> Executed {
        let Node { memory, qps, .. } = &mut self.nodes[request.to.0 as usize];
        let qp = qps.get_mut(&request.to_qp).expect("checked by on_request");
        let (pd, access) = (qp.pd, qp.access);
        let data = request.data.as_deref().unwrap_or(&[]);
        let rnr = ResponseKind::ReceiverNotReady { wait_ns: rnr_timer_ns(qp.min_rnr_timer) };
        match request.op {
            SendOp::Write { remote } | SendOp::WriteWithImm { remote, .. } => {
                let kind = RemoteOpKind::Write;
                let target =
                    match memory.check_remote(pd, access, kind, remote.addr, remote.rkey, request.len) {
                        Ok(target) => target,
                        Err(status) => return Executed::respond(ResponseKind::Nak(status)),
                    };
                if request.op.consumes_recv() && qp.recv.entries.is_empty() {
                    return Executed::respond(rnr);
                }
                if let Some((registration, offset)) = target {
                    registration.region.write(offset, data).expect("checked against the MR");
                }
                let recv_completion = request.op.consumes_recv().then(|| {
                    let recv = qp.recv.entries.pop_front().expect("checked above");
                    let mut completion = recv_completion(
                        recv.wr_id,
                        Status::Success,
                        CompletionOpcode::RecvWithImm,
                        byte_len(request.len),
                        request.to_qp,
                    );
                    completion.imm = request.op.imm();
                    (qp.recv_cq, recv.post_seq, completion)
                });
                Executed { response: ResponseKind::Ack, recv_completion }
            }
            SendOp::Read { remote } => {
                let kind = RemoteOpKind::Read;
                let target =
                    match memory.check_remote(pd, access, kind, remote.addr, remote.rkey, request.len) {
                        Ok(target) => target,
                        Err(status) => return Executed::respond(ResponseKind::Nak(status)),
                    };
                let mut bytes = vec![0u8; usize::try_from(request.len).expect("at most 2^31")];
                if let Some((registration, offset)) = target {
                    registration.region.read(offset, &mut bytes).expect("checked against the MR");
                }
                Executed::respond(ResponseKind::ReadData(Arc::from(bytes)))
            }
            SendOp::CompareSwap { remote, .. } | SendOp::FetchAdd { remote, .. } => {
                let kind = RemoteOpKind::Atomic;
                let (registration, offset) =
                    match memory.check_remote(pd, access, kind, remote.addr, remote.rkey, 8) {
                        Ok(target) => target.expect("atomics always address memory"),
                        Err(status) => return Executed::respond(ResponseKind::Nak(status)),
                    };
                let Ok(word) = registration.region.atomic_u64(offset) else {
                    return Executed::respond(ResponseKind::Nak(Status::RemoteInvalidRequest));
                };
                let old = match request.op {
                    SendOp::CompareSwap { compare, swap, .. } => {
                        match word.compare_exchange(compare, swap, Ordering::SeqCst, Ordering::SeqCst) {
                            Ok(old) | Err(old) => old,
                        }
                    }
                    SendOp::FetchAdd { add, .. } => word.fetch_add(add, Ordering::SeqCst),
                    _ => unreachable!("matched above"),
                };
                Executed::respond(ResponseKind::Atomic(old))
            }
            SendOp::Send | SendOp::SendWithImm { .. } => {
                let Some(recv) = qp.recv.entries.pop_front() else { return Executed::respond(rnr) };
                let outcome = memory.scatter(pd, &recv.sges, data);
                let status = outcome.err().unwrap_or(Status::Success);
                let mut completion = recv_completion(
                    recv.wr_id,
                    status,
                    CompletionOpcode::Recv,
                    if status.is_success() { byte_len(request.len) } else { 0 },
                    request.to_qp,
                );
                completion.imm = request.op.imm().filter(|_| status.is_success());
                // A RECV too small is the sender's fault (remote invalid request); any
                // other RECV-side failure is the responder's (remote operation error).
                let response = match status {
                    Status::Success => ResponseKind::Ack,
                    Status::LocalLengthError => ResponseKind::Nak(Status::RemoteInvalidRequest),
                    _ => ResponseKind::Nak(Status::RemoteOperationError),
                };
                Executed { response, recv_completion: Some((qp.recv_cq, recv.post_seq, completion)) }
            }
        }
    }

    /// A request the responder refused: as on a NIC, the responder QP goes to ERROR and
    /// its context gets `QpAccessError` (rights, keys, bounds) or `QpRequestError` (an
    /// invalid request, a RECV-side failure). Nothing more of the connection executes.
    fn responder_fails(&mut self, node: NodeId, qp_num: u32, status: Status) {
        let kind = match status {
            Status::RemoteAccessError => AsyncEventKind::QpAccessError,
            _ => AsyncEventKind::QpRequestError,
        };
        self.node_mut(node).events.push_back(AsyncEvent { kind, qp_num: Some(qp_num) });
        self.qp_to_error(node, qp_num);
    }

    /// Sends `response` to the requester of `request`; responses of a QP arrive in order.
    fn send_response(&mut self, request: &Request, kind: ResponseKind) {
        let latency = self.sample_latency(request.to, request.from, kind.payload_len());
        let mut at_ns = self.now() + latency;
        if let Some(qp) = self.qp_mut(request.from, request.from_qp) {
            // Strictly after the previous one: events at one instant run in a random order.
            at_ns = at_ns.max(qp.send.last_response_arrival_ns + 1);
            qp.send.last_response_arrival_ns = at_ns;
        }
        if !self.link_up(request.to, request.from) {
            let mut event = request_trace(self.now(), TraceKind::ResponseDropped, request, kind.status());
            event.node = request.from;
            event.peer = Some(request.to);
            event.qp_num = request.from_qp;
            self.record(event);
            return;
        }
        let response = Response {
            from: request.to,
            to: request.from,
            to_qp: request.from_qp,
            to_psn: request.from_psn,
            seq: request.seq,
            kind,
        };
        self.schedule(at_ns, Event::Respond(Box::new(response)));
    }
}

fn byte_len(len: u64) -> u32 {
    u32::try_from(len).expect("messages are at most 2^31 bytes")
}
