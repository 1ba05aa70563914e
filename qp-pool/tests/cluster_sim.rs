//! The cluster logic on the sim provider, deterministic: every node in this thread, the
//! handshake over the in-memory network (no sockets), bootstrap driven with fake time,
//! the fabric's seeded scheduler under the verbs, and every wait on a [`SimDriver`] with
//! virtual deadlines: nothing here reads the wall clock. Faults: a crash during quorum
//! waits, a partition, a pause. Each test prints its seed when it fails; `USEC_SEED=<n>`
//! replays one seed.

mod common;

use std::io;
use std::time::Duration;

use common::sim::{addr, drive, seeds, sim_config, sim_spec, SeedGuard, SimCluster};
use common::{node, LOG_WRITE, REPLICATION};
use usec_qp_pool::wire::{Entry, FrameKind, Hello, Message, Reconnect, Reject, RoleOffer};
use usec_qp_pool::{
    majority, wait_for, Bootstrap, ControlEvent, Error, MemoryHub, PeerLoss, ProtocolViolation, QuorumWaiter,
    ReconnectFailure, SimDriver,
};
use usec_verbs::sim::SimFabric;
use usec_verbs::{AsyncEventKind, Status};

/// Bootstrap, 5 quorum rounds, and the trace hash.
fn replicate_some(test: &str, seed: u64) -> u64 {
    let mut sim = SimCluster::new(test, seed, 3);
    let mut waiter = QuorumWaiter::new();
    for entry in 1..=5 {
        sim.replicate(0, &mut waiter, entry, majority(3) - 1).unwrap();
    }
    sim.fabric.run_until_idle(100_000);
    for entry in 1..=5 {
        assert_eq!((sim.read(1, entry), sim.read(2, entry)), (entry, entry));
    }
    sim.fabric.trace_hash()
}

#[test]
fn the_same_seed_replays_the_same_run() {
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let first = replicate_some("replay-a", seed);
        let second = replicate_some("replay-b", seed);
        assert_eq!(first, second, "seed {seed} did not replay");
    }
    if std::env::var_os("USEC_SEED").is_none() {
        assert_ne!(replicate_some("replay-c", 0), replicate_some("replay-d", 1), "the seed changes nothing");
    }
}

#[test]
fn a_crash_during_quorum_waits_leaves_the_majority_and_is_tracked() {
    for seed in seeds(10) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("crash", seed, 5);
        let mut waiter = QuorumWaiter::new();
        sim.replicate(0, &mut waiter, 1, majority(5) - 1).unwrap();
        let victim = node(1 + (seed % 4) as u16);
        sim.fabric.crash(sim.sim_nodes[victim.get() as usize]);
        // Rounds go on with 3 of 4 followers alive: the dead one never stalls them.
        for entry in 2..=6 {
            let outcome = sim.replicate(0, &mut waiter, entry, majority(5) - 1).unwrap();
            assert!(outcome.is_met());
        }
        sim.drain_until_failed(0, &mut waiter, victim);
        assert_eq!(waiter.failed_peers().collect::<Vec<_>>(), vec![victim]);
        // A round that needs every follower is impossible at once, not at a timeout.
        let error = sim.replicate(0, &mut waiter, 7, 4).unwrap_err();
        let Error::QuorumImpossible { failed, .. } = &error else { panic!("{error}") };
        assert_eq!(failed, &vec![victim], "{error}");
        // ... and one that needs three still succeeds.
        sim.replicate(0, &mut waiter, 8, 3).unwrap();
        // The loss surfaced as an asynchronous event naming the peer.
        let events: Vec<_> = std::iter::from_fn(|| sim.clusters[0].poll_event()).collect();
        assert!(
            events
                .iter()
                .any(|event| event.event.kind == AsyncEventKind::PeerLost && event.peer == Some(victim)),
            "{events:?}"
        );
    }
}

#[test]
fn a_partition_fails_one_peer_and_a_reconnect_heals_it() {
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("partition", seed, 3);
        let mut waiter = QuorumWaiter::new();
        let cut = node(2);
        sim.fabric.partition(sim.sim_nodes[0], sim.sim_nodes[2]);
        for entry in 1..=3 {
            sim.replicate(0, &mut waiter, entry, 1).unwrap();
        }
        sim.drain_until_failed(0, &mut waiter, cut);
        sim.fabric.heal(sim.sim_nodes[0], sim.sim_nodes[2]);
        // The control plane is not the fabric: the reconnect runs over the control link.
        let role = sim.clusters[0].role(REPLICATION).unwrap();
        assert_eq!(sim.clusters[0].qp(cut, role).unwrap().state(), usec_verbs::QpState::Error);
        sim.clusters[0].start_reconnect(cut, &[]).unwrap();
        let mut events = Vec::new();
        while sim.clusters[0].reconnect_pending(cut) {
            events.extend(sim.clusters[2].poll_control());
            events.extend(sim.clusters[0].poll_control());
        }
        assert!(
            events.iter().any(|event| matches!(
                event,
                ControlEvent::Reconnected { peer, roles, by_peer: false } if *peer == cut && roles.contains(&role)
            )),
            "{events:?}"
        );
        waiter.revive(cut);
        let outcome = sim.replicate(0, &mut waiter, 4, 2).unwrap();
        assert_eq!(outcome.acked.len(), 2, "both followers answer again");
        assert_eq!(sim.read(2, 4), 4);
    }
}

#[test]
fn a_paused_peer_still_serves_writes_and_its_own_posts_wait() {
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("pause", seed, 3);
        let mut waiter = QuorumWaiter::new();
        let paused = node(2);
        sim.fabric.pause(sim.sim_nodes[2]);
        // Its NIC answers one-sided writes: every follower acknowledges.
        let outcome = sim.replicate(0, &mut waiter, 1, 2).unwrap();
        assert_eq!(outcome.acked.len(), 2);
        // What it posts itself waits for it to resume.
        sim.write(2, node(0), LOG_WRITE, 9);
        for _ in 0..1000 {
            assert!(sim.pollers[2].poll().next().is_none(), "a paused node's request completed");
        }
        assert_eq!(sim.read(0, 9), 0);
        sim.fabric.resume(sim.sim_nodes[2]);
        let completion = loop {
            if let Some(polled) = sim.pollers[2].poll().next() {
                break polled;
            }
        };
        assert_eq!((completion.wr_id.peer(), completion.completion.status), (node(0), Status::Success));
        assert_eq!(sim.read(0, 9), 9);
        assert!(!waiter.is_failed(paused));
    }
}

#[test]
fn a_quorum_wait_times_out_at_its_virtual_deadline() {
    for seed in seeds(3) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("quorum-timeout", seed, 3);
        sim.fabric.set_auto_advance(false); // only the driver moves time: the deadline is exact
        let (one, two) = (node(1), node(2));
        // One write, to node 1 only: the round over both followers can never be met.
        sim.write(0, one, LOG_WRITE, 1);
        let mut waiter = QuorumWaiter::new();
        let key = waiter.begin(LOG_WRITE, 1, &[one, two], 2).unwrap();
        let mut driver = SimDriver::new(&sim.fabric);
        // An hour of virtual time: a wall-clock wait would never end inside the test.
        let deadline_ns = driver.deadline_in(3_600_000_000_000);
        let error =
            wait_for(&mut sim.pollers[0], &mut waiter, key, deadline_ns, &mut driver, &mut |polled: &_| {
                panic!("a completion of another kind: {polled:?}")
            })
            .unwrap_err();
        let Error::QuorumTimedOut { acked, pending, .. } = &error else { panic!("{error}") };
        assert_eq!((*acked, pending.as_slice()), (1, &[two][..]), "{error}");
        assert_eq!(sim.fabric.now_ns(), deadline_ns, "it gave up at the virtual deadline, exactly");
    }
}

#[test]
fn a_blocking_reconnect_times_out_at_its_virtual_deadline() {
    let mut sim = SimCluster::new("reconnect-timeout", 11, 2);
    sim.fabric.set_auto_advance(false);
    let mut driver = SimDriver::new(&sim.fabric);
    let start_ns = driver.deadline_in(0);
    // Node 1 never polls its control connection in this single-threaded run.
    let error = sim.clusters[0].reconnect(node(1), &[], start_ns + 250_000_000, &mut driver).unwrap_err();
    let Error::ReconnectTimedOut { waited, .. } = error else { panic!("{error}") };
    assert_eq!(waited, Duration::from_millis(250), "virtual time is exact");
    assert!(!sim.clusters[0].reconnect_pending(node(1)), "the request was abandoned");
}

/// Node 0's loss of node 1's control connection after `break_it` did something to it.
fn loss_after(test: &str, break_it: impl FnOnce(&mut SimCluster)) -> PeerLoss {
    let mut sim = SimCluster::new(test, 5, 2);
    break_it(&mut sim);
    let peer = node(1);
    let event = std::iter::from_fn(|| sim.clusters[0].poll_control()).next().expect("an event");
    let ControlEvent::PeerLost { peer: lost, reason } = event else { panic!("{event:?}") };
    assert_eq!(lost, peer);
    let remembered = sim.clusters[0].peer_lost(peer).expect("remembered").to_string();
    assert_eq!(remembered, reason.to_string());
    let error = sim.clusters[0].start_reconnect(peer, &[]).unwrap_err();
    let Error::PeerGone { reason: refused, .. } = &error else { panic!("{error}") };
    assert_eq!(refused.to_string(), reason.to_string(), "{error}");
    reason
}

#[test]
fn a_lost_control_connection_says_why_in_a_type_callers_can_branch_on() {
    let closed = loss_after("loss-closed", |sim| drop(sim.clusters.remove(1)));
    assert!(matches!(closed, PeerLoss::Closed { cut: None }) && closed.is_closed(), "{closed}");
    assert_eq!(closed.to_string(), "it closed its control connection");

    let cut = loss_after("loss-cut", |sim| {
        let mut frame = Vec::new();
        Message::Reject(Reject { reason: "bye".into() }).encode(&mut frame);
        sim.taps[0].inject_bytes(&frame[..frame.len() - 2]);
        drop(sim.clusters.remove(1));
    });
    let PeerLoss::Closed { cut: Some(frame) } = &cut else { panic!("{cut}") };
    assert!(matches!(**frame, Error::TruncatedFrame { .. }), "{cut}");

    let garbage = loss_after("loss-garbage", |sim| sim.taps[0].inject_bytes(&[0xff; 64]));
    let PeerLoss::BadFrame { source } = &garbage else { panic!("{garbage}") };
    assert!(matches!(**source, Error::MalformedFrame { .. }), "{garbage}");

    let hello = Message::Hello(Hello {
        cluster: "sim".into(),
        run: "x".into(),
        node: 1,
        spec_digest: 0,
        nonce: [0; 32],
        keyed: false,
        incarnation: 0,
        entry: Entry::Start,
        addr: None,
    });
    let late_hello = loss_after("loss-hello", |sim| sim.taps[0].inject(&hello));
    assert!(
        matches!(late_hello, PeerLoss::Protocol(ProtocolViolation::UnexpectedFrame(FrameKind::Hello))),
        "{late_hello}"
    );
    assert_eq!(late_hello.to_string(), "it sent a Hello frame after the handshake");

    let refusal = Message::Reject(Reject { reason: "you are not welcome".into() });
    let refused = loss_after("loss-refused", |sim| sim.taps[0].inject(&refusal));
    assert!(matches!(&refused, PeerLoss::Refused { reason } if reason == "you are not welcome"), "{refused}");

    let failed = loss_after("loss-read", |sim| sim.taps[0].fail_reads(io::ErrorKind::PermissionDenied));
    let PeerLoss::ReadFailed { source } = &failed else { panic!("{failed}") };
    assert_eq!(source.kind(), io::ErrorKind::PermissionDenied);
    assert!(std::error::Error::source(&failed).is_some(), "the OS error is the source");
}

#[test]
fn a_reconnect_a_qp_refuses_names_the_role_and_carries_the_verbs_error() {
    let mut sim = SimCluster::new("reconnect-refused", 5, 2);
    let role = sim.clusters[0].role(REPLICATION).unwrap();
    // Node 1 asks to reconnect with an endpoint that does not decode.
    let offer = RoleOffer { name: REPLICATION.into(), endpoint: vec![1, 2, 3] };
    sim.taps[0].inject(&Message::ReconnectRequest(Reconnect { epoch: 1, roles: vec![offer] }));
    let event = sim.clusters[0].poll_control().expect("an event");
    let ControlEvent::ReconnectFailed { peer, reason } = &event else { panic!("{event:?}") };
    assert_eq!(*peer, node(1));
    let ReconnectFailure::QpRefused { role: refused, source, .. } = reason else { panic!("{reason}") };
    assert_eq!(*refused, role);
    assert!(matches!(**source, usec_verbs::Error::BadEndpoint(_)), "{reason}");
    assert!(reason.to_string().starts_with("the QP of role #0 could not be reconnected"), "{reason}");
    assert!(sim.clusters[0].peer_lost(node(1)).is_none(), "a local failure does not lose the peer");
}

#[test]
fn a_missing_node_fails_the_bootstrap_in_virtual_time() {
    let fabric = SimFabric::create("qp-pool-missing", 7).unwrap();
    let hub = MemoryHub::new();
    let spec = sim_spec(3, 7);
    let boots: Vec<Bootstrap> = (0..2)
        .map(|id| {
            let (_, context) = fabric.open_node().unwrap();
            let config = sim_config(&spec, node(id)).deadline(Duration::from_millis(800));
            Bootstrap::start(&context, config, Box::new(hub.listen(addr(id)).unwrap())).unwrap()
        })
        .collect();
    for result in drive(boots) {
        let error = result.unwrap_err();
        let Error::Deadline { missing, waited, .. } = &error else { panic!("{error}") };
        assert_eq!(*waited, Duration::from_millis(800), "fake time is exact");
        assert_eq!(missing.len(), 1, "{error}");
        assert_eq!(missing[0].0, node(2));
        assert!(missing[0].1.contains("nothing listens on 10.0.0.3:7000"), "{error}");
    }
}

#[test]
fn a_peer_that_accepts_but_never_answers_is_dropped_and_named() {
    let fabric = SimFabric::create("qp-pool-silent", 3).unwrap();
    let hub = MemoryHub::new();
    let spec = sim_spec(2, 3);
    // Node 1's address accepts connections that nobody ever answers (a stopped process).
    let mut silent = hub.listen(addr(1)).unwrap();
    let (_, context) = fabric.open_node().unwrap();
    let config = sim_config(&spec, node(0)).deadline(Duration::from_secs(12));
    let boot = Bootstrap::start(&context, config, Box::new(hub.listen(addr(0)).unwrap())).unwrap();
    let error = drive(vec![boot]).pop().unwrap().unwrap_err().to_string();
    let mut accepted = 0;
    while usec_qp_pool::Network::accept(&mut silent).unwrap().is_some() {
        accepted += 1;
    }
    assert!(error.contains("missing node 1") && error.contains("did not finish the handshake"), "{error}");
    assert_eq!(accepted, 3, "dialed again after each 5 s handshake timeout: at 0, 5 and 10 s");
}
