//! Each error status, where it comes from, and what it does to the QPs.

use super::support::{
    connect, drain, quick_failure_options, settle, unique_name, wait, Pair, PairConfig, TestNode,
};
use crate::qp::{Address, Endpoint, RtrAttributes, RtsAttributes};
use crate::sim::{LatencyModel, SimFabric, TraceKind};
use crate::{
    AccessFlags, AsyncEvent, AsyncEventKind, BadEndpoint, CompletionOpcode, ConnectOptions, Error, PeerLoss,
    PostRejection, ProviderKind, QpCaps, QpState, RecvWr, RemoteAddr, SendWr, Sge, Status,
};

/// Posts `wr` on `a`, waits for its completion, and checks that the QP went to ERROR.
fn fails_with(pair: &mut Pair, wr: SendWr<'_>) -> Status {
    pair.qp_a.post_send(&[wr]).unwrap();
    let done = pair.wait_a(1)[0];
    assert_eq!(done.wr_id, wr.wr_id);
    assert_eq!(pair.qp_a.state(), QpState::Error, "an error completion moves the requester to ERROR");
    done.status
}

/// Checks that the responder QP went to ERROR with the event a NIC raises.
fn responder_failed(pair: &Pair, kind: AsyncEventKind) {
    assert_eq!(pair.qp_b.state(), QpState::Error, "a refused request fails the responder QP too");
    let event = pair.b.context.poll_event();
    assert_eq!(event, Some(AsyncEvent { kind, qp_num: Some(pair.qp_b.qp_num()) }));
}

#[test]
fn an_unknown_rkey_is_a_remote_access_error_on_both_sides() {
    let mut pair = Pair::new(20);
    // A forged rkey, built by hand on purpose: no descriptor names it.
    let remote = RemoteAddr { rkey: pair.b.mr.rkey() ^ 1, ..pair.b.remote(0) };
    let local = pair.a.sge(0, 8);
    assert_eq!(fails_with(&mut pair, SendWr::write(1, remote, &local)), Status::RemoteAccessError);
    responder_failed(&pair, AsyncEventKind::QpAccessError);
}

#[test]
fn out_of_bounds_is_a_remote_access_error() {
    let mut pair = Pair::new(21);
    let remote = pair.b.remote(pair.b.mr.len() - 4);
    let local = pair.a.sge(0, 8);
    assert_eq!(fails_with(&mut pair, SendWr::write(1, remote, &local)), Status::RemoteAccessError);
}

#[test]
fn a_range_that_overflows_is_a_remote_access_error() {
    let mut pair = Pair::new(22);
    // Out of bounds on purpose (RemoteAddr::within would refuse it): the responder's check is under test.
    let remote = RemoteAddr { addr: u64::MAX - 3, rkey: pair.b.mr.rkey() };
    let local = pair.a.sge(0, 8);
    assert_eq!(fails_with(&mut pair, SendWr::read(1, remote, &local)), Status::RemoteAccessError);
}

#[test]
fn an_mr_without_the_right_refuses() {
    let mut pair = Pair::new(23);
    let read_only =
        pair.b.pd.register(&pair.b.memory, AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ).unwrap();
    let local = pair.a.sge(0, 8);
    let remote = read_only.remote_addr(0).unwrap();
    assert_eq!(fails_with(&mut pair, SendWr::write(1, remote, &local)), Status::RemoteAccessError);
}

#[test]
fn a_responder_qp_without_the_right_refuses() {
    let mut connect = ConnectOptions::default();
    connect.init.access = AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ;
    let mut pair = Pair::with(24, PairConfig { connect, ..PairConfig::default() });
    let (remote, local) = (pair.b.remote(0), pair.a.sge(0, 8));
    // ibv_poll_cq(3): an operation the responder QP's access flags do not enable is an
    // invalid request, not an access error.
    assert_eq!(fails_with(&mut pair, SendWr::fetch_add(1, remote, 1, &local)), Status::RemoteInvalidRequest);
    assert_eq!(pair.b.word(0), 0);
}

#[test]
fn a_misaligned_atomic_is_an_invalid_request() {
    let mut pair = Pair::new(25);
    let (remote, local) = (pair.b.remote(4), pair.a.sge(0, 8));
    assert_eq!(
        fails_with(&mut pair, SendWr::compare_swap(1, remote, 0, 1, &local)),
        Status::RemoteInvalidRequest
    );
}

#[test]
fn an_atomic_needs_an_eight_byte_buffer() {
    let mut pair = Pair::new(26);
    let (remote, local) = (pair.b.remote(0), pair.a.sge(0, 4));
    assert_eq!(fails_with(&mut pair, SendWr::fetch_add(1, remote, 1, &local)), Status::LocalLengthError);
}

#[test]
fn an_unknown_lkey_fails_before_the_wire() {
    let mut pair = Pair::new(27);
    pair.fabric.record_trace(true);
    let local = Sge { lkey: pair.a.mr.lkey() ^ 1, ..pair.a.sge(0, 8) };
    let remote = pair.b.remote(0);
    pair.a.put(0, b"untouchd");
    assert_eq!(fails_with(&mut pair, SendWr::write(1, remote, &local)), Status::LocalProtectionError);
    assert_eq!(pair.b.get(0, 8), [0; 8]);
    assert!(pair.fabric.trace().iter().all(|e| e.kind != TraceKind::Executed), "nothing reached b");
}

#[test]
fn a_read_into_memory_without_local_write_fails() {
    let mut pair = Pair::new(28);
    let no_local_write = pair.a.pd.register(&pair.a.memory, AccessFlags::empty()).unwrap();
    let local = no_local_write.sge(0, 8).unwrap();
    let remote = pair.b.remote(0);
    assert_eq!(fails_with(&mut pair, SendWr::read(1, remote, &local)), Status::LocalProtectionError);
}

#[test]
fn a_recv_too_small_fails_both_sides() {
    let mut pair = Pair::new(29);
    let (small, large) = (pair.b.sge(0, 4), pair.b.sge(64, 64));
    pair.qp_b.post_recv(&[RecvWr::new(1, &[small]), RecvWr::new(2, &[large])]).unwrap();
    let local = pair.a.sge(0, 8);
    assert_eq!(fails_with(&mut pair, SendWr::send(9, &local)), Status::RemoteInvalidRequest);
    let received = pair.wait_b(2);
    assert_eq!((received[0].wr_id, received[0].status), (1, Status::LocalLengthError));
    assert_eq!((received[1].wr_id, received[1].status), (2, Status::Flushed));
    assert_eq!(received[1].opcode, CompletionOpcode::Recv);
    responder_failed(&pair, AsyncEventKind::QpRequestError);
}

fn rnr_options(rnr_retry: u8) -> ConnectOptions {
    ConnectOptions {
        rtr: RtrAttributes { min_rnr_timer: 1, ..RtrAttributes::default() },
        rts: RtsAttributes { rnr_retry, ..RtsAttributes::default() },
        ..ConnectOptions::default()
    }
}

#[test]
fn a_send_without_recv_exhausts_its_rnr_retries() {
    let latency = LatencyModel::fixed(1_000);
    let mut pair = Pair::with(30, PairConfig { connect: rnr_options(2), latency, ..PairConfig::default() });
    pair.fabric.record_trace(true);
    let local = pair.a.sge(0, 8);
    assert_eq!(fails_with(&mut pair, SendWr::send(1, &local)), Status::RnrRetryExceeded);
    let naks = pair.fabric.trace().iter().filter(|e| e.kind == TraceKind::ReceiverNotReady).count();
    assert_eq!(naks, 3, "the first attempt and two retries");
    assert_eq!(pair.fabric.now_ns(), 3 * 2_000 + 2 * 10_000, "three round trips and two RNR waits");
}

#[test]
fn requests_behind_an_rnr_wait_for_it() {
    let mut pair = Pair::with(31, PairConfig { connect: rnr_options(7), ..PairConfig::default() });
    pair.fabric.set_auto_advance(false);
    pair.a.put(0, b"sendsend");
    pair.a.put(8, b"writes!!");
    let (send, write) = (pair.a.sge(0, 8), pair.a.sge(8, 8));
    pair.qp_a.post_send(&[SendWr::send(1, &send), SendWr::write(2, pair.b.remote(100), &write)]).unwrap();
    pair.fabric.advance_by(200_000);
    assert_eq!(pair.b.get(100, 8), [0; 8], "the WRITE may not pass the SEND waiting for a RECV");
    let recv = pair.b.sge(0, 8);
    pair.qp_b.post_recv(&[RecvWr::new(5, &[recv])]).unwrap();
    let done = pair.wait_a(2);
    assert_eq!(
        done.iter().map(|c| (c.wr_id, c.status)).collect::<Vec<_>>(),
        [(1, Status::Success), (2, Status::Success)]
    );
    assert_eq!(pair.b.get(0, 8), b"sendsend");
    assert_eq!(pair.b.get(100, 8), b"writes!!");
}

#[test]
fn everything_after_an_error_flushes_and_nothing_lands() {
    let mut pair = Pair::new(32);
    pair.a.put(0, b"11112222333344445555");
    // A forged rkey, on purpose, to fail the first request.
    let bad = RemoteAddr { rkey: pair.b.mr.rkey() ^ 1, ..pair.b.remote(0) };
    let sges: Vec<Sge> = (0..4).map(|i| pair.a.sge(i * 4, 4)).collect();
    let recv = pair.a.sge(100, 8);
    pair.qp_a.post_recv(&[RecvWr::new(10, &[recv])]).unwrap();
    pair.qp_a
        .post_send(&[
            SendWr::write(1, pair.b.remote(0), &sges[0]),
            SendWr::write(2, bad, &sges[1]),
            SendWr::write(3, pair.b.remote(8), &sges[2]).unsignaled(),
            SendWr::write(4, pair.b.remote(12), &sges[3]),
        ])
        .unwrap();
    let done = pair.wait_a(5);
    let summary: Vec<_> = done.iter().map(|c| (c.wr_id, c.status)).collect();
    assert_eq!(
        summary,
        [
            (1, Status::Success),
            (2, Status::RemoteAccessError),
            (3, Status::Flushed),
            (4, Status::Flushed),
            (10, Status::Flushed)
        ]
    );
    pair.settle();
    assert_eq!(pair.b.get(0, 4), b"1111");
    assert_eq!(pair.b.get(8, 8), [0; 8], "requests after a NAK never execute");
    // Posting to a QP in ERROR is accepted and flushes at once.
    pair.qp_a.post_send(&[SendWr::write(5, pair.b.remote(0), &sges[0]).unsignaled()]).unwrap();
    pair.qp_a.post_recv(&[RecvWr::new(11, &[recv])]).unwrap();
    let flushed = drain(&mut pair.a.cq);
    assert_eq!(
        flushed.iter().map(|c| (c.wr_id, c.status)).collect::<Vec<_>>(),
        [(5, Status::Flushed), (11, Status::Flushed)]
    );
}

#[test]
fn full_queues_refuse_until_completions_are_polled() {
    let caps = QpCaps { max_send_wr: 4, max_recv_wr: 2, ..PairConfig::default().caps };
    let mut pair = Pair::with(33, PairConfig { caps, ..PairConfig::default() });
    pair.fabric.set_auto_advance(false);
    let (local, remote) = (pair.a.sge(0, 8), pair.b.remote(0));
    let write = SendWr::write(0, remote, &local);
    let unsignaled = write.unsignaled();
    pair.qp_a.post_send(&[unsignaled, unsignaled, unsignaled, write]).unwrap();
    let refused = pair.qp_a.post_send(&[write]);
    assert!(
        matches!(
            refused,
            Err(Error::PostRejected { index: 0, reason: PostRejection::QueueFull { depth: 4 } })
        ),
        "{refused:?}"
    );
    pair.settle();
    assert!(pair.qp_a.post_send(&[write]).is_err(), "completed but unpolled requests still count");
    assert_eq!(drain(&mut pair.a.cq).len(), 1);
    let refused = pair.qp_a.post_send(&[write, write, write, write, write]);
    assert!(matches!(refused, Err(Error::PostRejected { index: 4, .. })), "{refused:?}");
    pair.settle();
    assert_eq!(drain(&mut pair.a.cq).len(), 4, "the four before the refused one were posted");

    let recv = pair.b.sge(0, 8);
    let refused =
        pair.qp_b.post_recv(&[RecvWr::new(1, &[recv]), RecvWr::new(2, &[recv]), RecvWr::new(3, &[recv])]);
    assert!(
        matches!(
            refused,
            Err(Error::PostRejected { index: 2, reason: PostRejection::QueueFull { depth: 2 } })
        ),
        "{refused:?}"
    );
}

#[test]
fn posts_are_refused_in_states_that_do_not_take_them() {
    let fabric = SimFabric::create(&unique_name("states"), 34).unwrap();
    let node = TestNode::open(&fabric, 4096, 16);
    let other = TestNode::open(&fabric, 4096, 16);
    let mut qp = node.qp(QpCaps::default());
    let peer = other.qp(QpCaps::default());
    let (local, remote) = (node.sge(0, 8), other.remote(0));
    let recv = [node.sge(0, 8)];
    let state_of = |result: crate::Result<()>| match result {
        Err(Error::PostRejected { index: 0, reason: PostRejection::QpState { state } }) => Some(state),
        _ => None,
    };
    assert_eq!(state_of(qp.post_send(&[SendWr::write(1, remote, &local)])), Some(QpState::Reset));
    assert_eq!(state_of(qp.post_recv(&[RecvWr::new(1, &recv)])), Some(QpState::Reset));
    qp.modify_to_init(&Default::default()).unwrap();
    qp.post_recv(&[RecvWr::new(1, &recv)]).unwrap();
    assert_eq!(state_of(qp.post_send(&[SendWr::write(1, remote, &local)])), Some(QpState::Init));
    qp.modify_to_rtr(&peer.endpoint(), &Default::default()).unwrap();
    assert_eq!(state_of(qp.post_send(&[SendWr::write(1, remote, &local)])), Some(QpState::Rtr));
}

#[test]
fn rtr_refuses_endpoints_it_cannot_reach() {
    let fabric = SimFabric::create(&unique_name("rtr"), 35).unwrap();
    let node = TestNode::open(&fabric, 4096, 16);
    let other = TestNode::open(&fabric, 4096, 16);
    let mut qp = node.qp(QpCaps::default());
    let peer = other.qp(QpCaps::default());
    qp.modify_to_init(&Default::default()).unwrap();
    let good = peer.endpoint();
    let attributes = RtrAttributes::default();

    // Each refusal says why in a form a caller can branch on.
    let soft = Endpoint { address: Address::Soft { fabric: 1, pid: 1, node: 0, nonce: 0 }, ..good };
    let error = qp.modify_to_rtr(&soft, &attributes).unwrap_err();
    assert!(
        matches!(
            error,
            Error::BadEndpoint(BadEndpoint::OtherProvider { provider: ProviderKind::Sim, address })
                if address == soft.address
        ),
        "{error:?}"
    );
    let elsewhere = SimFabric::create(&unique_name("rtr-other"), 35).unwrap();
    let foreign = TestNode::open(&elsewhere, 4096, 16).qp(QpCaps::default()).endpoint();
    let error = qp.modify_to_rtr(&foreign, &attributes).unwrap_err();
    assert!(matches!(error, Error::BadEndpoint(BadEndpoint::OtherFabric { .. })), "{error:?}");
    assert!(error.to_string().contains("another fabric"), "{error}");
    let missing = Endpoint { qp_num: good.qp_num ^ 0x80_0000, ..good };
    let error = qp.modify_to_rtr(&missing, &attributes).unwrap_err();
    assert!(
        matches!(error, Error::PeerUnreachable { reason: PeerLoss::NoSuchQp { qp_num }, .. } if qp_num == missing.qp_num),
        "{error:?}"
    );
    let no_node = Endpoint { address: Address::Sim { fabric: fabric_id(&good), node: 99 }, ..good };
    let error = qp.modify_to_rtr(&no_node, &attributes).unwrap_err();
    assert!(matches!(error, Error::PeerUnreachable { reason: PeerLoss::NoSuchNode, .. }), "{error:?}");
    fabric.crash(other.id);
    let error = qp.modify_to_rtr(&good, &attributes).unwrap_err();
    assert!(matches!(error, Error::PeerUnreachable { reason: PeerLoss::Crashed, .. }), "{error:?}");
    assert!(error.to_string().contains("node1") && error.to_string().contains("crashed"), "{error}");
    assert_eq!(qp.state(), QpState::Init);
}

fn fabric_id(endpoint: &Endpoint) -> u64 {
    match endpoint.address {
        Address::Sim { fabric, .. } => fabric,
        other => panic!("not a sim endpoint: {other:?}"),
    }
}

#[test]
fn a_cq_overrun_fails_the_qp_and_loses_nothing() {
    let mut pair = Pair::with(36, PairConfig { cq_depth: 2, ..PairConfig::default() });
    let (local, remote) = (pair.a.sge(0, 8), pair.b.remote(0));
    let wrs: Vec<SendWr<'_>> = (1..=4).map(|wr_id| SendWr::write(wr_id, remote, &local)).collect();
    pair.qp_a.post_send(&wrs).unwrap();
    pair.settle();
    let event = pair.a.context.poll_event().expect("an overrun event");
    assert_eq!((event.kind, event.qp_num), (AsyncEventKind::CqOverrun, Some(pair.qp_a.qp_num())));
    assert_eq!(pair.a.context.poll_event(), None, "one event per QP");
    assert_eq!(pair.qp_a.state(), QpState::Error);
    let done = drain(&mut pair.a.cq);
    let summary: Vec<_> = done.iter().map(|c| (c.wr_id, c.status)).collect();
    assert_eq!(
        summary,
        [(1, Status::Success), (2, Status::Success), (3, Status::Success), (4, Status::Flushed)]
    );
}

#[test]
fn an_mr_deregistered_in_flight_fails_cleanly() {
    let mut pair = Pair::new(37);
    pair.fabric.set_auto_advance(false);
    let target = pair.b.pd.register(&pair.b.memory, AccessFlags::all_remote()).unwrap();
    let (local, remote) = (pair.a.sge(0, 8), target.remote_addr(0).unwrap());
    pair.qp_a.post_send(&[SendWr::write(1, remote, &local)]).unwrap();
    drop(target);
    pair.settle();
    assert_eq!(drain(&mut pair.a.cq)[0].status, Status::RemoteAccessError);
}

#[test]
fn a_local_mr_deregistered_before_the_read_returns_fails_cleanly() {
    let mut pair = Pair::new(38);
    pair.fabric.set_auto_advance(false);
    let buffer = pair.a.pd.register(&pair.a.memory, AccessFlags::all_remote()).unwrap();
    let (local, remote) = (buffer.sge(0, 8).unwrap(), pair.b.remote(0));
    pair.qp_a.post_send(&[SendWr::read(1, remote, &local)]).unwrap();
    drop(buffer);
    pair.settle();
    assert_eq!(drain(&mut pair.a.cq)[0].status, Status::LocalProtectionError);
}

#[test]
fn a_destroyed_responder_qp_drops_requests() {
    let config = PairConfig { connect: quick_failure_options(), ..PairConfig::default() };
    let Pair { fabric, mut a, b, mut qp_a, qp_b } = Pair::with(39, config);
    drop(qp_b);
    qp_a.post_send(&[SendWr::write(1, b.remote(0), &a.sge(0, 8))]).unwrap();
    assert_eq!(wait(&fabric, &mut a.cq, 1)[0].status, Status::RetryExceeded);
    settle(&fabric);
}

#[test]
fn reconnecting_after_an_error_needs_both_sides_reset() {
    let mut pair = Pair::new(40);
    // A forged rkey, on purpose, to put the QPs in ERROR.
    let bad = RemoteAddr { rkey: 0, ..pair.b.remote(0) };
    let local = pair.a.sge(0, 8);
    assert_eq!(fails_with(&mut pair, SendWr::write(1, bad, &local)), Status::RemoteAccessError);
    pair.qp_a.reset().unwrap();
    pair.qp_b.reset().unwrap();
    connect(&mut pair.qp_a, &mut pair.qp_b, &ConnectOptions::default());
    pair.a.put(0, b"again!!!");
    pair.qp_a.post_send(&[SendWr::write(2, pair.b.remote(0), &local)]).unwrap();
    assert_eq!(pair.wait_a(1)[0].status, Status::Success);
    assert_eq!(pair.b.get(0, 8), b"again!!!");
}

#[test]
fn an_unsignaled_request_that_fails_still_completes() {
    let mut pair = Pair::new(41);
    // A forged rkey, on purpose.
    let bad = RemoteAddr { rkey: pair.b.mr.rkey() ^ 1, ..pair.b.remote(0) };
    let local = pair.a.sge(0, 8);
    let status = fails_with(&mut pair, SendWr::write(1, bad, &local).unsignaled());
    assert_eq!(status, Status::RemoteAccessError);
}
