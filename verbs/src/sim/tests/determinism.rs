//! Ordering, interleaving, virtual time, and replay.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::support::{
    connect, drain, quick_failure_options, settle, unique_name, Pair, PairConfig, TestNode,
};
use crate::sim::{LatencyModel, SimFabric, TraceEvent, TraceKind};
use crate::{CompletionQueue, QpCaps, QueuePair, RecvWr, SendWr, Sge, Status};

#[test]
fn requests_of_one_qp_execute_and_complete_in_post_order_under_jitter() {
    for seed in 0..5u64 {
        let latency = LatencyModel::exponential(200, 2_000).with_spikes(20, 10_000, 50_000);
        let mut pair = Pair::with(seed, PairConfig { latency, ..PairConfig::default() });
        pair.fabric.record_trace(true);
        let count = 200;
        for i in 0..count {
            pair.a.put(8 + i * 8, &(i as u64).to_ne_bytes());
        }
        let sges: Vec<Sge> = (0..count).map(|i| pair.a.sge(8 + i * 8, 8)).collect();
        let wrs: Vec<_> =
            sges.iter().enumerate().map(|(i, s)| SendWr::write(i as u64, pair.b.remote(0), s)).collect();
        pair.qp_a.post_send(&wrs).unwrap();
        let done = pair.wait_a(count);
        let ids: Vec<u64> = done.iter().map(|c| c.wr_id).collect();
        assert_eq!(ids, (0..count as u64).collect::<Vec<_>>(), "seed {seed}: completions out of post order");
        assert_eq!(pair.b.word(0), count as u64 - 1, "seed {seed}: the last WRITE landed last");
        let executed: Vec<u64> = pair
            .fabric
            .trace()
            .iter()
            .filter(|e| e.kind == TraceKind::Executed && e.node == pair.b.id)
            .map(|e| e.wr_id)
            .collect();
        assert_eq!(executed, ids, "seed {seed}: executed out of post order");
    }
}

/// Which of two QPs each WRITE executed through, in execution order.
fn interleaving(seed: u64) -> Vec<u32> {
    let mut pair = Pair::new(seed);
    let (mut second_a, mut second_b) = (pair.a.qp(QpCaps::default()), pair.b.qp(QpCaps::default()));
    connect(&mut second_a, &mut second_b, &Default::default());
    pair.fabric.record_trace(true);
    let local = pair.a.sge(0, 8);
    for i in 0..10 {
        pair.qp_a.post_send(&[SendWr::write(i, pair.b.remote(0), &local)]).unwrap();
        second_a.post_send(&[SendWr::write(100 + i, pair.b.remote(8), &local)]).unwrap();
    }
    pair.settle();
    let first_qp = pair.qp_b.qp_num();
    pair.fabric
        .trace()
        .iter()
        .filter(|e| e.kind == TraceKind::Executed)
        .map(|e| u32::from(e.qp_num != first_qp))
        .collect()
}

#[test]
fn interleaving_across_qps_varies_with_the_seed() {
    assert_eq!(interleaving(7), interleaving(7));
    let orders: BTreeSet<Vec<u32>> = (0..10).map(interleaving).collect();
    assert!(orders.len() > 1, "ten seeds gave one interleaving");
}

/// Three nodes, a seeded random workload of every operation kind, and faults (partition,
/// pause, crash) along the way. Returns the trace hash and the events.
fn chaotic_run(seed: u64, record: bool) -> (u64, Vec<TraceEvent>) {
    let fabric = SimFabric::create(&unique_name("chaos"), seed).unwrap();
    fabric
        .set_latency(LatencyModel::exponential(300, 700).with_spikes(50, 5_000, 20_000).with_ns_per_kib(80));
    fabric.set_auto_advance(false);
    fabric.record_trace(record);
    let mut nodes = [(); 3].map(|()| TestNode::open(&fabric, 8192, 4096));
    let mut options = quick_failure_options();
    options.rtr.min_rnr_timer = 1;
    options.rts.rnr_retry = 3;
    // One QP pair per pair of nodes: qps[i] = (node, peer, QP).
    let mut qps: Vec<(usize, usize, QueuePair)> = Vec::new();
    for (one, other) in [(0, 1), (0, 2), (1, 2)] {
        let mut qp_one = nodes[one].qp(QpCaps { max_send_sge: 2, max_recv_sge: 2, ..QpCaps::default() });
        let mut qp_other = nodes[other].qp(QpCaps { max_send_sge: 2, max_recv_sge: 2, ..QpCaps::default() });
        connect(&mut qp_one, &mut qp_other, &options);
        qps.push((one, other, qp_one));
        qps.push((other, one, qp_other));
    }
    let mut workload = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    for round in 0..400u64 {
        match round {
            100 => fabric.partition(nodes[0].id, nodes[2].id),
            130 => fabric.heal(nodes[0].id, nodes[2].id),
            150 => fabric.pause(nodes[1].id),
            200 => fabric.resume(nodes[1].id),
            300 => fabric.crash(nodes[2].id),
            _ => {}
        }
        let (node, peer, qp) = &mut qps[workload.gen_range(0..6)];
        let (local, remote) = (
            nodes[*node].sge(workload.gen_range(0..64) * 8, 8),
            nodes[*peer].remote(workload.gen_range(0..64) * 8),
        );
        let wr_id = round;
        let wr = match workload.gen_range(0..6) {
            0 => SendWr::write(wr_id, remote, &local),
            1 => SendWr::read(wr_id, remote, &local),
            2 => SendWr::fetch_add(wr_id, remote, 1, &local),
            3 => SendWr::compare_swap(wr_id, remote, 0, wr_id, &local),
            4 => SendWr::send(wr_id, &local),
            _ => {
                let _ = qp.post_recv(&[RecvWr::new(wr_id, &[nodes[*node].sge(4096, 64)])]);
                SendWr::write(wr_id, remote, &local).unsignaled()
            }
        };
        let _ = qp.post_send(&[wr]);
        fabric.advance_by(workload.gen_range(0..3_000));
        for node in &mut nodes {
            drain_quietly(&mut node.cq);
        }
    }
    settle(&fabric);
    for node in &mut nodes {
        drain_quietly(&mut node.cq);
    }
    (fabric.trace_hash(), fabric.trace())
}

fn drain_quietly(cq: &mut CompletionQueue) {
    drain(cq);
}

#[test]
fn the_same_seed_replays_the_same_run() {
    for seed in [1, 2] {
        let (hash, events) = chaotic_run(seed, true);
        let (again, events_again) = chaotic_run(seed, true);
        if let Some(first_difference) = events.iter().zip(&events_again).position(|(x, y)| x != y) {
            panic!(
                "seed {seed}: runs diverge at event {first_difference}: {} vs {}",
                events[first_difference], events_again[first_difference]
            );
        }
        assert_eq!(events.len(), events_again.len(), "seed {seed}");
        assert_eq!(hash, again, "seed {seed}");
        let (unrecorded, _) = chaotic_run(seed, false);
        assert_eq!(unrecorded, hash, "seed {seed}: recording changes nothing");
        let kinds: BTreeSet<_> = events.iter().map(|e| format!("{:?}", e.kind)).collect();
        for expected in
            ["Crash", "Partition", "Heal", "Pause", "Resume", "Executed", "Completion", "PeerLost"]
        {
            assert!(kinds.contains(expected), "seed {seed}: the scenario never saw {expected}: {kinds:?}");
        }
    }
    assert_ne!(chaotic_run(1, false).0, chaotic_run(2, false).0, "two seeds, one run");
}

#[test]
fn without_auto_advance_time_moves_only_when_told() {
    let latency = LatencyModel::fixed(1_000);
    let mut pair = Pair::with(60, PairConfig { latency, ..PairConfig::default() });
    pair.fabric.set_auto_advance(false);
    assert!(!pair.fabric.auto_advance());
    pair.a.put(0, b"on time!");
    pair.qp_a.post_send(&[SendWr::write(1, pair.b.remote(0), &pair.a.sge(0, 8))]).unwrap();
    assert!(drain(&mut pair.a.cq).is_empty());
    assert_eq!(pair.fabric.now_ns(), 0, "an empty poll moves nothing");
    assert_eq!(pair.fabric.next_event_ns(), Some(1_000));
    pair.fabric.advance_to(999);
    assert_eq!((pair.fabric.now_ns(), pair.b.get(0, 8)), (999, vec![0; 8]));
    pair.fabric.advance_to(1_000);
    assert_eq!(pair.b.get(0, 8), b"on time!");
    assert!(drain(&mut pair.a.cq).is_empty(), "the ACK is still on its way");
    pair.fabric.advance_to(2_000);
    let done = drain(&mut pair.a.cq);
    assert_eq!((done.len(), done[0].status), (1, Status::Success));
    pair.fabric.advance_to(1_500);
    assert_eq!(pair.fabric.now_ns(), 2_000, "time never goes backwards");
    assert_eq!(pair.fabric.next_event_ns(), None, "idle: no message, no armed timer");
    assert!(!pair.fabric.step());
    assert_eq!(pair.fabric.run_until_idle(100), 0);
}
