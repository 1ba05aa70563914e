//! Crash, partition, heal, pause, permission changes, and atomics from several nodes.

use std::collections::BTreeSet;

use super::support::{
    connect, drain, quick_failure_options, settle, unique_name, wait, Pair, PairConfig, TestNode,
};
use crate::qp::ack_timeout_ns;
use crate::sim::{LatencyModel, SimFabric, TraceKind, PEER_LOST_DELAY_NS};
use crate::{AccessFlags, AsyncEvent, AsyncEventKind, QpCaps, QpState, RecvWr, SendWr, Sge, Status};

fn quick_pair(seed: u64) -> Pair {
    let latency = LatencyModel::fixed(1_000);
    Pair::with(seed, PairConfig { connect: quick_failure_options(), latency, ..PairConfig::default() })
}

/// The ACK timeout of [`quick_failure_options`], and the time its retries take to fail.
fn quick_timeout_ns() -> u64 {
    ack_timeout_ns(quick_failure_options().rts.timeout).unwrap()
}

fn quick_give_up_ns() -> u64 {
    quick_timeout_ns() * (u64::from(quick_failure_options().rts.retry_count) + 1)
}

#[test]
fn a_crashed_peer_fails_requests_after_the_timeout_and_is_reported() {
    let Pair { fabric, mut a, mut b, mut qp_a, mut qp_b } = quick_pair(50);
    let crashed_at = fabric.now_ns();
    fabric.crash(b.id);
    assert!(fabric.is_crashed(b.id));
    fabric.advance_to(crashed_at + PEER_LOST_DELAY_NS - 1);
    assert_eq!(a.context.poll_event(), None);
    fabric.advance_to(crashed_at + PEER_LOST_DELAY_NS);
    let lost = AsyncEvent { kind: AsyncEventKind::PeerLost, qp_num: Some(qp_a.qp_num()) };
    assert_eq!(a.context.poll_event(), Some(lost));
    assert_eq!(a.context.poll_event(), None);

    let posted_at = fabric.now_ns();
    qp_a.post_send(&[SendWr::write(1, b.remote(0), &a.sge(0, 8))]).unwrap();
    let done = wait(&fabric, &mut a.cq, 1);
    assert_eq!(done[0].status, Status::RetryExceeded);
    assert_eq!(fabric.now_ns(), posted_at + quick_give_up_ns());
    assert_eq!(qp_a.state(), QpState::Error);

    // The crashed node's handles stay usable and do nothing.
    assert_eq!(qp_b.state(), QpState::Error);
    qp_b.post_send(&[SendWr::write(2, a.remote(0), &b.sge(0, 8))]).unwrap();
    assert!(drain(&mut b.cq).is_empty());
    assert!(b.context.alloc_pd().is_err());
    assert!(b.context.create_cq(4).is_err());
    settle(&fabric);
    assert_eq!(a.get(0, 8), [0; 8]);
}

#[test]
fn a_crashed_requesters_messages_are_lost() {
    let Pair { fabric, a, b, mut qp_a, qp_b } = quick_pair(51);
    a.put(0, b"doomed!!");
    qp_a.post_send(&[SendWr::write(1, b.remote(0), &a.sge(0, 8))]).unwrap();
    fabric.crash(a.id);
    settle(&fabric);
    assert_eq!(b.get(0, 8), [0; 8], "nothing a sent arrives after its crash");
    let lost = AsyncEvent { kind: AsyncEventKind::PeerLost, qp_num: Some(qp_b.qp_num()) };
    assert_eq!(b.context.poll_event(), Some(lost));
}

#[test]
fn a_long_partition_fails_requests_and_healing_does_not_revive_the_qp() {
    let Pair { fabric, mut a, b, mut qp_a, .. } = quick_pair(52);
    fabric.partition(a.id, b.id);
    assert!(fabric.is_partitioned(b.id, a.id));
    let posted_at = fabric.now_ns();
    qp_a.post_send(&[SendWr::write(1, b.remote(0), &a.sge(0, 8))]).unwrap();
    assert_eq!(wait(&fabric, &mut a.cq, 1)[0].status, Status::RetryExceeded);
    assert_eq!(fabric.now_ns(), posted_at + quick_give_up_ns());
    fabric.heal(a.id, b.id);
    assert!(!fabric.is_partitioned(a.id, b.id));
    assert_eq!(qp_a.state(), QpState::Error, "healing does not revive a QP in ERROR");
    qp_a.post_send(&[SendWr::write(2, b.remote(0), &a.sge(0, 8))]).unwrap();
    assert_eq!(wait(&fabric, &mut a.cq, 1)[0].status, Status::Flushed);
}

#[test]
fn a_short_partition_is_survived_by_retransmission() {
    let mut pair = quick_pair(53);
    pair.fabric.record_trace(true);
    pair.fabric.set_auto_advance(false);
    pair.fabric.partition(pair.a.id, pair.b.id);
    pair.a.put(0, b"survives");
    pair.qp_a.post_send(&[SendWr::write(1, pair.b.remote(0), &pair.a.sge(0, 8))]).unwrap();
    pair.fabric.advance_by(quick_timeout_ns() / 2);
    pair.fabric.heal(pair.a.id, pair.b.id);
    let done = pair.wait_a(1);
    assert_eq!(done[0].status, Status::Success);
    assert_eq!(pair.b.get(0, 8), b"survives");
    assert_eq!(pair.fabric.now_ns(), quick_timeout_ns() + 2_000, "one retransmission, then a round trip");
    assert!(pair.fabric.trace().iter().any(|event| event.kind == TraceKind::Retransmit));
    assert_eq!(pair.qp_a.state(), QpState::Rts);
}

#[test]
fn a_paused_node_sends_nothing_until_resumed() {
    let mut pair = quick_pair(54);
    pair.fabric.pause(pair.a.id);
    assert!(pair.fabric.is_paused(pair.a.id));
    pair.a.put(0, b"held....");
    pair.qp_a.post_send(&[SendWr::write(1, pair.b.remote(0), &pair.a.sge(0, 8))]).unwrap();
    pair.settle();
    assert_eq!(pair.b.get(0, 8), [0; 8]);
    assert!(drain(&mut pair.a.cq).is_empty());
    pair.fabric.advance_by(10 * quick_give_up_ns());
    let resumed_at = pair.fabric.now_ns();
    pair.fabric.resume(pair.a.id);
    assert!(!pair.fabric.is_paused(pair.a.id));
    assert_eq!(pair.wait_a(1)[0].status, Status::Success, "a paused requester times nothing out");
    assert_eq!(pair.b.get(0, 8), b"held....");
    assert_eq!(pair.fabric.now_ns(), resumed_at + 2_000);
}

#[test]
fn a_paused_node_still_serves_its_peers() {
    let mut pair = quick_pair(55);
    pair.b.put(0, b"readable");
    pair.qp_b.post_recv(&[RecvWr::new(7, &[pair.b.sge(100, 8)])]).unwrap();
    pair.fabric.pause(pair.b.id);
    pair.a.put(0, b"written!");
    pair.a.put(8, b"sent....");
    let (write, send, read) = (pair.a.sge(0, 8), pair.a.sge(8, 8), pair.a.sge(16, 8));
    pair.qp_a
        .post_send(&[
            SendWr::write(1, pair.b.remote(50), &write),
            SendWr::send(2, &send),
            SendWr::read(3, pair.b.remote(0), &read),
        ])
        .unwrap();
    let done = pair.wait_a(3);
    assert!(done.iter().all(|c| c.status == Status::Success), "{done:?}");
    assert_eq!(pair.b.get(50, 8), b"written!");
    assert_eq!(pair.b.get(100, 8), b"sent....");
    assert_eq!(pair.a.get(16, 8), b"readable");
    assert_eq!(drain(&mut pair.b.cq)[0].wr_id, 7, "the NIC completes the RECV while the process sleeps");
}

#[test]
fn revoking_qp_write_access_stops_writes_in_flight() {
    let mut pair = Pair::new(56);
    pair.fabric.set_auto_advance(false);
    pair.a.put(0, b"too late");
    pair.qp_a.post_send(&[SendWr::write(1, pair.b.remote(0), &pair.a.sge(0, 8))]).unwrap();
    pair.qp_b.set_access(AccessFlags::REMOTE_READ).unwrap();
    pair.settle();
    assert_eq!(drain(&mut pair.a.cq)[0].status, Status::RemoteInvalidRequest);
    assert_eq!(pair.b.get(0, 8), [0; 8], "no write with the old rights landed after set_access");
}

#[test]
fn revoking_mr_write_access_stops_writes_in_flight() {
    let mut pair = Pair::new(57);
    pair.fabric.set_auto_advance(false);
    let mut target = pair.b.pd.register(&pair.b.memory, AccessFlags::all_remote()).unwrap();
    pair.a.put(0, b"too late");
    pair.qp_a.post_send(&[SendWr::write(1, target.remote_addr(0).unwrap(), &pair.a.sge(0, 8))]).unwrap();
    target.rereg_access(AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ).unwrap();
    pair.settle();
    assert_eq!(drain(&mut pair.a.cq)[0].status, Status::RemoteAccessError);
    assert_eq!(pair.b.get(0, 8), [0; 8]);
}

#[test]
fn fetch_adds_from_two_nodes_add_up_exactly() {
    for seed in 0..4u64 {
        let fabric = SimFabric::create(&unique_name("fetch-add"), seed).unwrap();
        fabric.set_latency(LatencyModel::exponential(300, 1_000));
        let [mut a, mut b, counter] = [(); 3].map(|()| TestNode::open(&fabric, 4096, 256));
        let caps = QpCaps::default();
        let (mut qp_a, mut qp_b) = (a.qp(caps), b.qp(caps));
        let (mut counter_for_a, mut counter_for_b) = (counter.qp(caps), counter.qp(caps));
        connect(&mut qp_a, &mut counter_for_a, &Default::default());
        connect(&mut qp_b, &mut counter_for_b, &Default::default());
        let per_node = 100;
        let results_a: Vec<Sge> = (0..per_node).map(|i| a.sge(i * 8, 8)).collect();
        let results_b: Vec<Sge> = (0..per_node).map(|i| b.sge(i * 8, 8)).collect();
        let remote = counter.remote(0);
        let wrs_a: Vec<_> =
            results_a.iter().enumerate().map(|(i, r)| SendWr::fetch_add(i as u64, remote, 1, r)).collect();
        let wrs_b: Vec<_> = results_b
            .iter()
            .enumerate()
            .map(|(i, r)| SendWr::fetch_add(i as u64, remote, 1_000, r))
            .collect();
        qp_a.post_send(&wrs_a).unwrap();
        qp_b.post_send(&wrs_b).unwrap();
        assert!(wait(&fabric, &mut a.cq, per_node).iter().all(|c| c.status == Status::Success));
        assert!(wait(&fabric, &mut b.cq, per_node).iter().all(|c| c.status == Status::Success));
        assert_eq!(counter.word(0), 100 + 100 * 1_000, "seed {seed}");
        let olds: BTreeSet<u64> = (0..per_node).flat_map(|i| [a.word(i * 8), b.word(i * 8)]).collect();
        assert_eq!(olds.len(), 2 * per_node, "seed {seed}: every add saw a distinct value");
    }
}

#[test]
fn a_retransmitted_atomic_whose_ack_was_lost_runs_once() {
    let mut pair = quick_pair(58);
    pair.fabric.set_auto_advance(false);
    pair.fabric.record_trace(true);
    pair.b.put(0, &41u64.to_ne_bytes());
    let result = pair.a.sge(0, 8);
    pair.qp_a.post_send(&[SendWr::fetch_add(1, pair.b.remote(0), 1, &result)]).unwrap();
    pair.fabric.advance_to(1_000);
    assert_eq!(pair.b.word(0), 42, "executed at the responder");
    pair.fabric.partition(pair.a.id, pair.b.id);
    pair.fabric.advance_by(quick_timeout_ns() / 2);
    pair.fabric.heal(pair.a.id, pair.b.id);
    let done = pair.wait_a(1);
    assert_eq!(done[0].status, Status::Success);
    assert_eq!((pair.a.word(0), pair.b.word(0)), (41, 42), "the retransmission was answered, not re-run");
    assert!(pair.fabric.trace().iter().any(|event| event.kind == TraceKind::Duplicate));
}

#[test]
fn responses_land_in_order_when_an_earlier_one_was_lost() {
    // RC: a READ's data lands in the requester's memory in request order. The first READ's
    // response is lost; the second's arrives before the first is sent again. Accepted out
    // of order, the second's fresh bytes would be overwritten by the first's stale ones.
    let mut pair = quick_pair(59);
    pair.fabric.set_auto_advance(false);
    pair.b.put(0, &41u64.to_ne_bytes());
    let into = pair.a.sge(0, 8);
    pair.qp_a.post_send(&[SendWr::read(1, pair.b.remote(0), &into)]).unwrap();
    pair.fabric.advance_to(1_000);
    pair.fabric.partition(pair.a.id, pair.b.id);
    pair.fabric.advance_by(1_000);
    pair.fabric.heal(pair.a.id, pair.b.id);
    pair.b.put(0, &42u64.to_ne_bytes());
    pair.qp_a.post_send(&[SendWr::read(2, pair.b.remote(0), &into)]).unwrap();
    let done = pair.wait_a(2);
    assert_eq!(done.iter().map(|completion| completion.wr_id).collect::<Vec<_>>(), [1, 2]);
    assert!(done.iter().all(|completion| completion.status == Status::Success));
    assert_eq!(pair.a.word(0), 42, "the later READ's bytes land last");
}
