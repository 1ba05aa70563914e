//! Restarted nodes rejoining a running cluster, on the sim provider in virtual time: a
//! crashed node comes back as a fresh process (on sim, a new sim node: a crashed one never
//! comes back) with the same id and a higher incarnation; the survivors take it in through
//! the full handshake and WRITEs flow both ways again. A stopped old process is superseded
//! and stays fenced when it resumes; a stale incarnation and an impostor without the key
//! are refused; a rejoining node that cannot reach every peer finishes with the others,
//! and the missing one joins it later.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::sim::{addr, of, poll_all, seeds, sim_config, sim_spec, SeedGuard, SimCluster, Started};
use common::{node, ELECTION, LOG_WRITE, REGION, REPLICATION};
use usec_qp_pool::{
    wait_for, Bootstrap, Cluster, ClusterKey, ClusterSpec, ControlEvent, Error, MemoryHub, NodeConfig,
    PeerLoss, Progress, QuorumWaiter, SimDriver, WrId,
};
use usec_verbs::sim;
use usec_verbs::{AccessFlags, AsyncEventKind, Payload, RemoteAddr, SendWr, Status};

/// A fresh process of `config.me` (a new sim node) that rejoins with `config`, listening
/// on `listen` (see [`SimCluster::start_process`]).
fn rejoin(sim: &mut SimCluster, config: NodeConfig, listen: SocketAddr) -> Started {
    sim.start_process(config.rejoin(true), listen)
}

/// Puts a node that rejoined into `sim` at `index`.
fn install(sim: &mut SimCluster, index: usize, cluster: Cluster, sim_node: sim::NodeId) {
    sim.install(index, cluster, sim_node);
}

#[test]
fn a_crashed_node_restarted_with_the_same_id_rejoins_the_running_cluster() {
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("rejoin", seed, 3);
        let mut waiter = QuorumWaiter::new();
        sim.replicate(0, &mut waiter, 1, 2).unwrap();
        let victim = node(2);
        let old_region = sim.clusters[0].remote_region(victim, REGION).unwrap();
        // Node 2's process dies: its verbs vanish, its sockets close.
        sim.fabric.crash(sim.sim_nodes[2]);
        drop(sim.pollers.remove(2));
        drop(sim.clusters.remove(2));
        for entry in 2..=3 {
            assert!(sim.replicate(0, &mut waiter, entry, 1).unwrap().is_met());
        }
        sim.drain_until_failed(0, &mut waiter, victim);

        let config = sim_config(&sim_spec(3, seed), victim).incarnation(2);
        let (fresh, sim_node, events, _) = rejoin(&mut sim, config, addr(2));
        let fresh = fresh.unwrap();
        assert_eq!(fresh.peers().collect::<Vec<_>>(), [node(0), node(1)]);
        assert!(fresh.peer_lost(node(0)).is_none() && fresh.peer_lost(node(1)).is_none());
        assert_eq!((fresh.peer_incarnation(node(0)), fresh.peer_incarnation(node(1))), (Some(1), Some(1)));
        for survivor in [node(0), node(1)] {
            let seen = of(&events, survivor);
            assert!(
                matches!(
                    seen.as_slice(),
                    [
                        ControlEvent::PeerLost { peer: lost, reason: PeerLoss::Closed { .. } },
                        ControlEvent::Rejoined { peer, incarnation: 2 },
                    ] if *lost == victim && *peer == victim
                ),
                "seed {seed}, node {survivor}: {seen:?}"
            );
            let cluster = &sim.clusters[survivor.get() as usize];
            assert_eq!(cluster.peer_incarnation(victim), Some(2));
            assert!(cluster.peer_lost(victim).is_none(), "the new process is connected");
        }
        let new_region = sim.clusters[0].remote_region(victim, REGION).unwrap();
        assert_ne!(new_region, old_region, "the new process's region, not the dead one's");
        // The crash's PeerLost events, queued and never polled, were about the old
        // process: they must not be taken for news of the new one.
        for survivor in 0..2 {
            let stale: Vec<_> = std::iter::from_fn(|| sim.clusters[survivor].poll_event())
                .filter(|event| event.event.kind == AsyncEventKind::PeerLost && event.peer == Some(victim))
                .collect();
            assert!(stale.is_empty(), "seed {seed}, node {survivor}: {stale:?}");
        }

        // WRITEs both ways, on the same roles and regions as before the crash.
        install(&mut sim, 2, fresh, sim_node);
        waiter.revive(victim);
        let outcome = sim.replicate(0, &mut waiter, 4, 2).unwrap();
        assert_eq!(outcome.acked.len(), 2, "seed {seed}: both followers, the new one included");
        assert_eq!(sim.read(2, 4), 4);
        let outcome = sim.replicate(2, &mut QuorumWaiter::new(), 5, 2).unwrap();
        assert_eq!(outcome.acked.len(), 2, "seed {seed}: the new process writes to both survivors");
        assert_eq!((sim.read(0, 5), sim.read(1, 5)), (5, 5));
    }
}

/// `spec` with a fresh cluster key.
fn keyed(spec: ClusterSpec) -> ClusterSpec {
    ClusterSpec::parse(&format!("{spec}key = {}\n", ClusterKey::generate().to_hex())).unwrap()
}

/// Where a second process of node `id` listens while the first still holds its address.
fn second_addr(id: u16) -> SocketAddr {
    SocketAddr::new(addr(id).ip(), 7001)
}

#[test]
fn a_stopped_old_process_is_superseded_and_stays_fenced_when_it_resumes() {
    for seed in seeds(3) {
        let _guard = SeedGuard(seed);
        let spec = keyed(sim_spec(3, seed));
        let mut sim = SimCluster::with_spec("stale", seed, spec.clone());
        let victim = node(2);
        // Node 2's process stops (SIGSTOP): its connections stay up, it polls nothing.
        sim.fabric.pause(sim.sim_nodes[2]);
        let mut old = sim.clusters.remove(2);
        let mut old_poller = sim.pollers.remove(2);
        let old_sim_node = sim.sim_nodes[2];

        // A new process of node 2 rejoins before anyone noticed anything.
        let config = sim_config(&spec, victim).incarnation(2);
        let (fresh, sim_node, events, _) = rejoin(&mut sim, config, second_addr(2));
        let fresh = fresh.unwrap();
        for survivor in [node(0), node(1)] {
            let seen = of(&events, survivor);
            assert!(
                matches!(
                    seen.as_slice(),
                    [
                        ControlEvent::PeerLost { peer: lost, reason: PeerLoss::Superseded { incarnation: 2 } },
                        ControlEvent::Rejoined { peer, incarnation: 2 },
                    ] if *lost == victim && *peer == victim
                ),
                "seed {seed}, node {survivor}: {seen:?}"
            );
        }
        install(&mut sim, 2, fresh, sim_node);

        // The old process resumes: every peer refused it, and nothing it does lands.
        sim.fabric.resume(old_sim_node);
        let old_view = old.remote_region(node(0), REGION).unwrap();
        let lost: Vec<ControlEvent> = std::iter::from_fn(|| old.poll_control()).collect();
        assert_eq!(lost.len(), 2, "seed {seed}: {lost:?}");
        for event in &lost {
            let ControlEvent::PeerLost { reason: PeerLoss::Fenced { reason }, .. } = event else {
                panic!("seed {seed}: {event:?}")
            };
            assert!(reason.contains("node 2 restarted: incarnation 2 replaces this process"), "{reason}");
        }
        let fenced = old.fenced().expect("fenced");
        assert!(fenced.ends_with(": node 2 restarted: incarnation 2 replaces this process"), "{fenced}");
        let error = old.start_reconnect(node(0), &[]).unwrap_err();
        assert!(matches!(error, Error::PeerGone { .. }), "{error}");
        assert_eq!(old.remote_region(node(0), REGION).unwrap(), old_view, "it learnt nothing new");
        let role = old.role(REPLICATION).unwrap();
        let target = RemoteAddr::within(&old_view, 1024, 8).unwrap();
        let wr_id = WrId::new(LOG_WRITE, node(0), 1).unwrap();
        old.post_send(node(0), role, &[SendWr::write(wr_id.to_raw(), target, Payload::Inline(&[0xee; 8]))])
            .unwrap();
        let mut driver = SimDriver::new(&sim.fabric);
        let deadline_ns = driver.deadline_in(60_000_000_000);
        let mut waiter = QuorumWaiter::new();
        let key = waiter.begin(LOG_WRITE, 1, &[node(0)], 1).unwrap();
        let error = wait_for(&mut old_poller, &mut waiter, key, deadline_ns, &mut driver, &mut |_: &_| {})
            .unwrap_err();
        assert!(matches!(error, Error::QuorumImpossible { .. }), "seed {seed}: {error}");
        assert_ne!(sim.read(0, 128), u64::from_le_bytes([0xee; 8]), "seed {seed}: a stale WRITE landed");

        // Nor can a process of the old incarnation come back through the listener.
        let config = sim_config(&spec, victim).incarnation(1).deadline(Duration::from_millis(300));
        let (stale, _, events, _) = rejoin(&mut sim, config, SocketAddr::new(addr(2).ip(), 7002));
        let error = stale.unwrap_err().to_string();
        assert!(error.contains("node 2's incarnation 1 is stale: incarnation 2 has joined since"), "{error}");
        assert!(events.is_empty(), "seed {seed}: {events:?}");
        for survivor in 0..2 {
            let refused = sim.clusters[survivor].refused_connections().join("\n");
            assert!(refused.contains("incarnation 1 is stale"), "seed {seed}: {refused}");
            assert_eq!(sim.clusters[survivor].peer_incarnation(victim), Some(2));
        }
        // The new process and the survivors still write both ways.
        let outcome = sim.replicate(0, &mut QuorumWaiter::new(), 6, 2).unwrap();
        assert_eq!((outcome.acked.len(), sim.read(2, 6)), (2, 6), "seed {seed}");
        let outcome = sim.replicate(2, &mut QuorumWaiter::new(), 7, 2).unwrap();
        assert_eq!((outcome.acked.len(), sim.read(0, 7), sim.read(1, 7)), (2, 7, 7), "seed {seed}");
        // The old process completed its WRITE with an error, never Success.
        drop(old);
    }
}

#[test]
fn an_impostor_without_the_key_cannot_take_a_nodes_place() {
    let seed = 4;
    let spec = keyed(sim_spec(3, seed));
    let mut sim = SimCluster::with_spec("impostor", seed, spec.clone());
    let victim = node(2);
    // It knows everything but the key: the same description with another key, or none.
    for (attempt, mut forged) in [keyed(sim_spec(3, seed)), sim_spec(3, seed)].into_iter().enumerate() {
        forged.key = forged.key.filter(|_| attempt == 0);
        let config = sim_config(&forged, victim).incarnation(u64::MAX).deadline(Duration::from_millis(300));
        let listen = SocketAddr::new(addr(2).ip(), 7001 + attempt as u16);
        let (result, _, events, _) = rejoin(&mut sim, config, listen);
        let error = result.unwrap_err();
        let Error::Deadline { missing, .. } = &error else { panic!("{error}") };
        assert_eq!(missing.len(), 2, "{error}");
        assert!(events.is_empty(), "nothing happened to node 2: {events:?}");
        for survivor in 0..2 {
            let cluster = &sim.clusters[survivor];
            assert!(cluster.peer_lost(victim).is_none() && cluster.peer_incarnation(victim) == Some(1));
            let refused = cluster.refused_connections().join("\n");
            assert!(refused.contains("failed the cluster key check"), "{refused}");
        }
    }
    let outcome = sim.replicate(0, &mut QuorumWaiter::new(), 1, 2).unwrap();
    assert_eq!((outcome.acked.len(), sim.read(2, 1)), (2, 1), "the real node 2 is still there");
}

#[test]
fn a_rejoining_node_finishes_with_the_peers_it_reaches_and_the_others_join_later() {
    let seed = 9;
    let _guard = SeedGuard(seed);
    let mut sim = SimCluster::new("subset", seed, 3);
    let spec = sim_spec(3, seed);
    // Nodes 1 and 2 die. Node 2 comes back first: node 1 is down, so it waits out its
    // deadline and finishes with node 0.
    for index in [2, 1] {
        sim.fabric.crash(sim.sim_nodes[index]);
        drop(sim.pollers.remove(index));
        drop(sim.clusters.remove(index));
    }
    let config = sim_config(&spec, node(2)).incarnation(2).deadline(Duration::from_millis(800));
    let (two, two_sim, events, took) = rejoin(&mut sim, config, addr(2));
    let mut two = two.unwrap();
    assert_eq!(took, Duration::from_millis(800), "virtual time is exact");
    let PeerLoss::Unreached { reason } = two.peer_lost(node(1)).expect("node 1 is missing").clone() else {
        panic!("{:?}", two.peer_lost(node(1)))
    };
    assert!(reason.contains("nothing listens on 10.0.0.2:7000"), "{reason}");
    let reported = two.poll_control().expect("an event");
    assert!(
        matches!(&reported, ControlEvent::PeerLost { peer, reason: PeerLoss::Unreached { .. } } if *peer == node(1))
    );
    assert_eq!(two.peer_incarnation(node(1)), None);
    assert!(matches!(of(&events, node(0)).last(), Some(ControlEvent::Rejoined { incarnation: 2, .. })));
    install(&mut sim, 1, two, two_sim);

    // Node 1 comes back: node 0 and node 2 (which never knew it) both take it in.
    let config = sim_config(&spec, node(1)).incarnation(2);
    let (one, one_sim, events, _) = rejoin(&mut sim, config, addr(1));
    let one = one.unwrap();
    assert!(one.peer_lost(node(0)).is_none() && one.peer_lost(node(2)).is_none());
    for observer in [node(0), node(2)] {
        let seen = of(&events, observer);
        assert!(
            matches!(seen.last(), Some(ControlEvent::Rejoined { peer, incarnation: 2 }) if *peer == node(1)),
            "node {observer}: {seen:?}"
        );
    }
    install(&mut sim, 1, one, one_sim);
    for from in 0..3 {
        let entry = 10 + from as u64;
        let outcome = sim.replicate(from, &mut QuorumWaiter::new(), entry, 2).unwrap();
        assert_eq!(outcome.acked.len(), 2, "node {from} writes to both others");
        for to in (0..3).filter(|&to| to != from) {
            assert_eq!(sim.read(to, entry), entry);
        }
    }

    // A rejoining node that reaches nobody has nothing to rejoin.
    let alone = SimCluster::new("alone", seed, 1);
    let mut lonely = SimCluster { clusters: Vec::new(), pollers: Vec::new(), ..alone };
    let config = sim_config(&spec, node(1)).incarnation(3).deadline(Duration::from_millis(100));
    let (result, _, _, _) = rejoin(&mut lonely, config, addr(1));
    let error = result.unwrap_err();
    let Error::Deadline { missing, .. } = &error else { panic!("{error}") };
    assert_eq!(missing.len(), 2, "{error}");
}

#[test]
fn a_write_to_a_peer_that_rejoined_completes_on_its_new_qp() {
    // The old QP's requests failed when the peer died; after the rejoin the same QP
    // object carries new traffic to the new process.
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("requeue", seed, 2);
        sim.fabric.crash(sim.sim_nodes[1]);
        drop(sim.pollers.remove(1));
        drop(sim.clusters.remove(1));
        sim.write(0, node(1), LOG_WRITE, 1);
        let failed = loop {
            if let Some(polled) = sim.pollers[0].poll().next() {
                break polled.completion.status;
            }
        };
        assert_ne!(failed, Status::Success);
        let config = sim_config(&sim_spec(2, seed), node(1)).incarnation(2);
        let (one, one_sim, _, _) = rejoin(&mut sim, config, addr(1));
        install(&mut sim, 1, one.unwrap(), one_sim);
        let outcome = sim.replicate(0, &mut QuorumWaiter::new(), 2, 1).unwrap();
        assert_eq!((outcome.acked, sim.read(1, 2)), (vec![node(1)], 2));
    }
}

#[test]
fn a_new_process_keeps_the_revocations_made_for_its_node_but_no_grant_beyond_its_defaults() {
    let seed = 17;
    let mut sim = SimCluster::new("rights", seed, 3);
    let victim = node(2);
    let (replication, election) =
        (sim.clusters[0].role(REPLICATION).unwrap(), sim.clusters[0].role(ELECTION).unwrap());
    // Node 0 fenced node 2 off its log, and let it write through the election QP, which
    // by default it may only read through.
    sim.clusters[0].revoke_write(victim, replication).unwrap();
    sim.clusters[0].grant_write(victim, election).unwrap();
    sim.fabric.crash(sim.sim_nodes[2]);
    drop(sim.pollers.remove(2));
    drop(sim.clusters.remove(2));
    let config = sim_config(&sim_spec(3, seed), victim).incarnation(2);
    let (fresh, fresh_sim, _, _) = rejoin(&mut sim, config, addr(2));
    install(&mut sim, 2, fresh.unwrap(), fresh_sim);
    let rights = |role| sim.clusters[0].peer_access(victim, role).unwrap();
    assert_eq!(rights(replication), AccessFlags::REMOTE_READ, "the revocation stands");
    assert_eq!(rights(election), AccessFlags::REMOTE_READ, "the grant went with the old process");
    assert_eq!(
        sim.clusters[1].peer_access(victim, replication).unwrap(),
        AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ
    );
    // And the QPs enforce it: the new node 2 writes into node 1's log, not node 0's.
    let mut statuses = Vec::new();
    for to in [node(0), node(1)] {
        sim.write(2, to, LOG_WRITE, 3);
        let completion = loop {
            if let Some(polled) = sim.pollers[2].poll().next() {
                break polled.completion;
            }
        };
        statuses.push(completion.status);
    }
    assert_eq!(statuses, [Status::RemoteInvalidRequest, Status::Success]);
    assert_eq!((sim.read(0, 3), sim.read(1, 3)), (0, 3));
}

#[test]
fn a_node_restarted_while_its_peers_still_bootstrap_joins_them() {
    for seed in seeds(3) {
        let _guard = SeedGuard(seed);
        let fabric = sim::SimFabric::create(&format!("qp-pool-early-rejoin-{seed}"), seed).unwrap();
        let hub = MemoryHub::new();
        let spec = sim_spec(3, seed);
        let start = |config: NodeConfig| {
            let (sim_node, context) = fabric.open_node().unwrap();
            let network = hub.listen(addr(config.me.get())).unwrap();
            (sim_node, Bootstrap::start(&context, config, Box::new(network)).unwrap())
        };
        // Nodes 0 and 2 start, node 1 is late: node 0 dials node 2 and they connect.
        let (zero_sim, mut zero) = start(sim_config(&spec, node(0)));
        let (old_sim, mut old_two) = start(sim_config(&spec, node(2)));
        let mut now_ns = 0;
        while zero.missing() != [node(1)] || old_two.missing() != [node(1)] {
            zero.poll(now_ns).unwrap();
            old_two.poll(now_ns).unwrap();
            now_ns += 1_000_000;
        }
        // Node 2 dies before anyone finished, and its new process rejoins while node 1 is
        // still away: node 0, still bootstrapping, takes it in place of the old one.
        fabric.crash(old_sim);
        drop(old_two);
        let (two_sim, mut two) = start(sim_config(&spec, node(2)).incarnation(2).rejoin(true));
        for _ in 0..100 {
            zero.poll(now_ns).unwrap();
            two.poll(now_ns).unwrap();
            now_ns += 1_000_000;
        }
        assert_eq!((zero.missing(), two.missing()), (vec![node(1)], vec![node(1)]), "seed {seed}");
        // Node 1 starts: it dials node 2 while node 2 dials it, and one connection stays.
        let (one_sim, one) = start(sim_config(&spec, node(1)));
        let mut boots = vec![zero, one, two];
        let mut done = [false; 3];
        while done.iter().any(|done| !done) {
            for (boot, done) in boots.iter_mut().zip(&mut done) {
                *done = *done || boot.poll(now_ns).unwrap() == Progress::Done;
            }
            now_ns += 1_000_000;
        }
        let clusters: Vec<Cluster> = boots.into_iter().map(|boot| boot.finish().unwrap()).collect();
        assert_eq!(clusters[0].peer_incarnation(node(2)), Some(2), "seed {seed}");
        let sim_nodes = vec![zero_sim, one_sim, two_sim];
        let mut sim = SimCluster {
            fabric: fabric.clone(),
            sim_nodes,
            clusters,
            pollers: Vec::new(),
            taps: Vec::new(),
            hub,
        };
        for index in 0..3 {
            let poller = sim.clusters[index].take_poller(&[]).unwrap();
            sim.pollers.push(poller);
        }
        for from in 0..3 {
            let entry = 1 + from as u64;
            let outcome = sim.replicate(from, &mut QuorumWaiter::new(), entry, 2).unwrap();
            assert_eq!(outcome.acked.len(), 2, "seed {seed}: node {from} writes to both others");
        }
    }
}

#[test]
fn two_nodes_restarted_at_once_keep_one_connection_between_them() {
    for seed in seeds(3) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("two-at-once", seed, 3);
        let spec = sim_spec(3, seed);
        for index in [2, 1] {
            sim.fabric.crash(sim.sim_nodes[index]);
            drop(sim.pollers.remove(index));
            drop(sim.clusters.remove(index));
        }
        // Both come back in the same instant and dial each other (and node 0) at once.
        let mut boots = Vec::new();
        let mut sim_nodes = Vec::new();
        for id in [1, 2] {
            let (sim_node, context) = sim.fabric.open_node().unwrap();
            let config = sim_config(&spec, node(id)).incarnation(2).rejoin(true);
            let network = sim.hub.listen(addr(id)).unwrap();
            boots.push(Bootstrap::start(&context, config, Box::new(network)).unwrap());
            sim_nodes.push(sim_node);
        }
        let (mut now_ns, mut done, mut events) = (0, [false; 2], Vec::new());
        while done.iter().any(|done| !done) {
            poll_all(&mut sim.clusters, now_ns, &mut events);
            for (boot, done) in boots.iter_mut().zip(&mut done) {
                *done = *done || boot.poll(now_ns).unwrap() == Progress::Done;
            }
            now_ns += 1_000_000;
        }
        let refusals: Vec<String> = boots.iter().flat_map(|boot| boot.rejections().to_vec()).collect();
        // Whichever end saw the clash first, node 2's dial lost to node 1's.
        let lost = |refusal: &String| {
            refusal.contains(
                "duplicate node id 2: we dialed each other, and the connection the lower id dialed wins",
            ) || refusal.contains("duplicate node id 1: node 1 incarnation 2 took over on another connection")
        };
        assert!(refusals.iter().any(lost), "seed {seed}: they dialed each other: {refusals:?}");
        for (index, (boot, sim_node)) in boots.into_iter().zip(sim_nodes).enumerate() {
            install(&mut sim, index + 1, boot.finish().unwrap(), sim_node);
        }
        assert_eq!(sim.clusters[1].peer_incarnation(node(2)), Some(2));
        for from in 0..3 {
            let entry = 1 + from as u64;
            let outcome = sim.replicate(from, &mut QuorumWaiter::new(), entry, 2).unwrap();
            assert_eq!(outcome.acked.len(), 2, "seed {seed}: node {from} writes to both others");
        }
    }
}

#[test]
fn a_request_outstanding_to_the_old_process_completes_when_the_new_one_is_admitted() {
    let seed = 23;
    let mut sim = SimCluster::new("outstanding", seed, 2);
    sim.fabric.set_auto_advance(false);
    sim.fabric.crash(sim.sim_nodes[1]);
    drop(sim.pollers.remove(1));
    drop(sim.clusters.remove(1));
    // Posted to the dead process; its retries have not run out when the new one arrives
    // (virtual time stands still while it rejoins).
    sim.write(0, node(1), LOG_WRITE, 1);
    assert!(sim.pollers[0].poll().next().is_none());
    let config = sim_config(&sim_spec(2, seed), node(1)).incarnation(2);
    let (one, one_sim, _, _) = rejoin(&mut sim, config, addr(1));
    install(&mut sim, 1, one.unwrap(), one_sim);
    let completions: Vec<_> = sim.pollers[0].poll().collect();
    assert_eq!(completions.len(), 1, "{completions:?}");
    assert_eq!(completions[0].wr_id, WrId::new(LOG_WRITE, node(1), 1).unwrap());
    assert_eq!(completions[0].completion.status, Status::Flushed);
}

#[test]
fn a_dial_left_unanswered_when_a_rejoin_settled_does_not_shut_out_the_peer() {
    let seed = 29;
    let _guard = SeedGuard(seed);
    let mut sim = SimCluster::new("unanswered", seed, 3);
    let spec = sim_spec(3, seed);
    // Node 2 stops for good (its address still accepts, nobody answers); node 1 crashes.
    sim.fabric.pause(sim.sim_nodes[2]);
    let _stopped = (sim.clusters.remove(2), sim.pollers.remove(2));
    sim.fabric.crash(sim.sim_nodes[1]);
    drop(sim.pollers.remove(1));
    drop(sim.clusters.remove(1));
    // Node 1 comes back and settles with node 0, its dial to node 2 unanswered.
    let config = sim_config(&spec, node(1)).incarnation(2).deadline(Duration::from_millis(300));
    let (one, one_sim, _, _) = rejoin(&mut sim, config, addr(1));
    install(&mut sim, 1, one.unwrap(), one_sim);
    assert!(matches!(sim.clusters[1].peer_lost(node(2)), Some(PeerLoss::Unreached { .. })));
    // A new process of node 2 comes: node 1 takes it at once.
    let config = sim_config(&spec, node(2)).incarnation(2).deadline(Duration::from_millis(300));
    let (two, two_sim, events, _) = rejoin(&mut sim, config, second_addr(2));
    let two = two.unwrap();
    assert!(two.peer_lost(node(1)).is_none(), "{:?}", two.peer_lost(node(1)));
    assert!(matches!(of(&events, node(1)).last(), Some(ControlEvent::Rejoined { .. })), "{events:?}");
    install(&mut sim, 2, two, two_sim);
}

/// A survivor that looks a rejoining peer's region up while it takes the new process in
/// (as a heartbeat reader does for each READ) never gets the dead process's: from the
/// moment its QPs to the peer are reset for the new process until the new process's
/// descriptors arrive, there is none. Those QPs connect to the new process before its
/// handshake ends; a READ with the old process's address reaching it there is refused,
/// and leaves both QPs in ERROR for good — a heartbeat reader's peer suspected forever.
#[test]
fn a_rejoining_peers_old_regions_are_gone_once_its_new_process_is_admitted() {
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("regions-through-rejoin", seed, 2);
        let old = sim.clusters[0].remote_region(node(1), REGION).unwrap();
        sim.fabric.crash(sim.sim_nodes[1]);
        drop(sim.pollers.remove(1));
        drop(sim.clusters.remove(1));
        let config = sim_config(&sim_spec(2, seed), node(1)).incarnation(2);
        let (_, context) = sim.fabric.open_node().unwrap();
        let network = sim.hub.listen(addr(1)).unwrap();
        let mut boot = Bootstrap::start(&context, config.rejoin(true), Box::new(network)).unwrap();
        let (mut rejoined, mut done, mut now_ns, mut admitted_rounds) = (false, false, 0, 0);
        while !(done && rejoined) {
            while let Some(event) = sim.clusters[0].poll_control_at(now_ns) {
                rejoined |= matches!(event, ControlEvent::Rejoined { .. });
            }
            let survivor = &sim.clusters[0];
            if survivor.peer_incarnation(node(1)) == Some(2) {
                admitted_rounds += 1;
                let region = survivor.remote_region(node(1), REGION).ok();
                assert_ne!(region, Some(old), "seed {seed}: the dead process's region, {now_ns} ns in");
            }
            if !done {
                done = boot.poll(now_ns).unwrap() == Progress::Done;
            }
            now_ns += 1_000_000;
        }
        assert!(admitted_rounds >= 2, "seed {seed}: the new process was admitted before it joined");
        let fresh = boot.finish().unwrap();
        let new = sim.clusters[0].remote_region(node(1), REGION).unwrap();
        assert_eq!(new, fresh.region(REGION).unwrap().remote_region(), "seed {seed}");
    }
}
