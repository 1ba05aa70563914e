//! Nodes joining and leaving a running cluster, on the sim provider in virtual time.
//!
//! A new node (an id the cluster's description never listed) starts knowing only its own
//! address and one or more members' control addresses: it learns the member list from the
//! members it reaches, connects to each, and every member reports [`ControlEvent::Joined`].
//! Members remove a node ([`Cluster::remove_peer`]): its QPs are torn down, its regions
//! forgotten, and whatever its process sends afterwards is refused with the reason; its id
//! may come back as a newer process. Replacements (a dead node's id, a newer incarnation)
//! take its place by either road, even before the members noticed the death, and a stopped
//! old process cannot lure a joining node into taking it for the live one.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::sim::{addr, of, poll_all, seeds, sim_config, sim_spec, Events, Process, SeedGuard, SimCluster};
use common::{node, ELECTION, LOG_WRITE, REGION, REPLICATION};
use usec_qp_pool::{
    wait_for, Bootstrap, Cluster, ClusterKey, ClusterSpec, ControlEvent, Error, MemoryHub, NodeConfig,
    NodeId, PeerLoss, Progress, QuorumWaiter, SimDriver, WrId,
};
use usec_verbs::sim::SimFabric;
use usec_verbs::{Payload, QpState, RemoteAddr, SendWr, Status};

/// The cluster key of a seed's keyed runs: drawn from the seed, so that a run replays.
fn key_of(seed: u64) -> ClusterKey {
    ClusterKey::from_bytes([seed as u8 ^ 0x5a; 32])
}

/// What a node that joins knows of the cluster: its name, the run, the key if any, and its
/// own control address (listed as the only node).
fn joiner_spec(seed: u64, id: u16, listen: SocketAddr, key: Option<ClusterKey>) -> ClusterSpec {
    let spec = ClusterSpec::new("sim", &format!("seed-{seed}"), [(node(id), listen)]).unwrap();
    match key {
        Some(key) => spec.with_key(key),
        None => spec,
    }
}

/// Node `id` joining through `contacts`, listening at [`addr`]`(id)`, as `incarnation`.
fn joiner(seed: u64, id: u16, incarnation: u64, contacts: &[SocketAddr]) -> NodeConfig {
    sim_config(&joiner_spec(seed, id, addr(id), None), node(id))
        .incarnation(incarnation)
        .join(contacts.iter().copied())
}

/// Where a second process of node `id` listens while the first still holds its address.
fn second_addr(id: u16) -> SocketAddr {
    SocketAddr::new(addr(id).ip(), 7001)
}

fn ids(cluster: &Cluster) -> Vec<NodeId> {
    cluster.peers().collect()
}

fn joined(seen: &[ControlEvent], who: NodeId, as_incarnation: u64) -> bool {
    matches!(seen, [ControlEvent::Joined { peer, incarnation }] if *peer == who && *incarnation == as_incarnation)
}

#[test]
fn a_new_node_joins_a_running_cluster_through_one_members_address() {
    for seed in seeds(6) {
        let _guard = SeedGuard(seed);
        // Odd seeds run with a cluster key: the member list comes over the authenticated
        // channel like everything else.
        let key = (seed % 2 == 1).then(|| key_of(seed));
        let spec = match &key {
            Some(key) => sim_spec(3, seed).with_key(key.clone()),
            None => sim_spec(3, seed),
        };
        let mut sim = SimCluster::with_spec("join", seed, spec);
        let newcomer = node(7);
        let config = sim_config(&joiner_spec(seed, 7, addr(7), key), newcomer).incarnation(3).join([addr(1)]);
        let (fresh, sim_node, events, _) = sim.start_process(config, addr(7));
        let fresh = fresh.unwrap();
        // It learned every member from the one it reached, and connected to each.
        assert_eq!(ids(&fresh), [node(0), node(1), node(2)], "seed {seed}");
        for member in 0..3u16 {
            let cluster = &sim.clusters[member as usize];
            assert_eq!(fresh.peer_incarnation(node(member)), Some(1));
            assert_eq!(fresh.peer_addr(node(member)), Some(addr(member)));
            assert!(fresh.peer_lost(node(member)).is_none());
            let theirs = cluster.region(REGION).unwrap().remote_region();
            assert_eq!(fresh.remote_region(node(member), REGION).unwrap(), theirs, "seed {seed}");
            // Every member reported the join, once, with its id and incarnation.
            let seen = of(&events, node(member));
            assert!(joined(&seen, newcomer, 3), "seed {seed}, node {member}: {seen:?}");
            assert_eq!(ids(cluster).last(), Some(&newcomer));
            assert_eq!(cluster.peer_incarnation(newcomer), Some(3));
            assert_eq!(cluster.peer_addr(newcomer), Some(addr(7)));
            let ours = fresh.region(REGION).unwrap().remote_region();
            assert_eq!(cluster.remote_region(newcomer, REGION).unwrap(), ours);
            // Every role is set up both ways.
            for role in [REPLICATION, ELECTION] {
                let role = cluster.role(role).unwrap();
                assert_eq!(cluster.qp(newcomer, role).unwrap().state(), QpState::Rts);
                assert_eq!(fresh.qp(node(member), role).unwrap().state(), QpState::Rts);
            }
        }
        sim.install(3, fresh, sim_node);
        // WRITEs flow both ways.
        let outcome = sim.replicate(0, &mut QuorumWaiter::new(), 1, 3).unwrap();
        assert!(outcome.acked.contains(&newcomer), "seed {seed}: {outcome:?}");
        assert_eq!(sim.read(3, 1), 1);
        let outcome = sim.replicate(3, &mut QuorumWaiter::new(), 2, 3).unwrap();
        assert_eq!(outcome.acked.len(), 3, "seed {seed}: the new node writes to every member");
        for member in 0..3 {
            assert_eq!(sim.read(member, 2), 2);
        }
    }
}

#[test]
fn nodes_joining_at_once_find_each_other() {
    for seed in seeds(4) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("join-two", seed, 3);
        // Node 5 knows only node 0, node 6 only node 2; neither knows the other.
        let mut joiners = Vec::new();
        let mut sim_nodes = Vec::new();
        for (id, contact) in [(5, 0), (6, 2)] {
            let (sim_node, context) = sim.fabric.open_node().unwrap();
            let network = sim.hub.listen(addr(id)).unwrap();
            let config = joiner(seed, id, 1, &[addr(contact)]);
            joiners.push(Process::new(Bootstrap::start(&context, config, Box::new(network)).unwrap()));
            sim_nodes.push(sim_node);
        }
        let mut events = Events::new();
        let mut now_ns = 0;
        // Until both run, and then a little longer: the one that finished first may take
        // the other's connection afterwards, on its cluster.
        let mut rounds_after = 10;
        while rounds_after > 0 {
            poll_all(&mut sim.clusters, now_ns, &mut events);
            for process in &mut joiners {
                process.turn(now_ns, &mut events);
            }
            if joiners.iter().all(Process::is_running) {
                rounds_after -= 1;
            }
            now_ns += 1_000_000;
        }
        let clusters: Vec<Cluster> = joiners.into_iter().map(Process::into_cluster).collect();
        assert_eq!(ids(&clusters[0]), [node(0), node(1), node(2), node(6)], "seed {seed}: {events:?}");
        assert_eq!(ids(&clusters[1]), [node(0), node(1), node(2), node(5)], "seed {seed}: {events:?}");
        for member in 0..3u16 {
            let seen = of(&events, node(member));
            for id in [5, 6] {
                let reported = seen
                    .iter()
                    .filter(|event| matches!(event, ControlEvent::Joined { peer, .. } if *peer == node(id)))
                    .count();
                assert_eq!(reported, 1, "seed {seed}, node {member}: {seen:?}");
            }
        }
        for (cluster, sim_node) in clusters.into_iter().zip(sim_nodes) {
            let index = sim.clusters.len();
            sim.install(index, cluster, sim_node);
        }
        for from in 0..5 {
            let entry = 1 + from as u64;
            let outcome = sim.replicate(from, &mut QuorumWaiter::new(), entry, 4).unwrap();
            assert_eq!(outcome.acked.len(), 4, "seed {seed}: node #{from} writes to all four others");
        }
    }
}

#[test]
fn a_join_with_the_wrong_cluster_key_or_none_is_refused_with_the_reason() {
    let seed = 11;
    let mut sim = SimCluster::with_spec("join-key", seed, sim_spec(3, seed).with_key(key_of(seed)));
    for (attempt, forged) in [Some(key_of(seed + 1)), None].into_iter().enumerate() {
        let id = 5 + attempt as u16;
        let config = sim_config(&joiner_spec(seed, id, addr(id), forged), node(id))
            .join([addr(0), addr(2)])
            .deadline(Duration::from_millis(300));
        let (result, _, events, took) = sim.start_process(config, addr(id));
        let error = result.unwrap_err();
        let Error::JoinFailed { contacts, .. } = &error else { panic!("{error}") };
        assert_eq!(contacts.iter().map(|(contact, _)| *contact).collect::<Vec<_>>(), [addr(0), addr(2)]);
        let text = error.to_string();
        assert!(text.contains(&format!("node {id} could not join: no member was reached")), "{text}");
        assert!(text.contains("failed the cluster key check"), "{text}");
        assert_eq!(took, Duration::from_millis(300), "virtual time is exact");
        assert!(events.is_empty(), "nothing happened to the members: {events:?}");
        for member in &sim.clusters {
            assert_eq!(member.peers().count(), 2);
        }
        // The two it dialed refused it; node 1 never heard of it.
        for member in [0, 2] {
            let refused = sim.clusters[member].refused_connections().join("\n");
            assert!(
                refused.contains(&format!("(claiming node {id}) failed the cluster key check")),
                "{refused}"
            );
        }
    }
    let outcome = sim.replicate(0, &mut QuorumWaiter::new(), 1, 2).unwrap();
    assert_eq!(outcome.acked.len(), 2, "the members go on");
}

#[test]
fn a_join_that_reaches_nobody_names_each_contact() {
    let seed = 12;
    let mut sim = SimCluster::new("join-nobody", seed, 1);
    assert!(sim_config(&joiner_spec(seed, 5, addr(5), None), node(5)).join([]).check().is_err());
    let config = joiner(seed, 5, 1, &[addr(3), addr(4)]).deadline(Duration::from_millis(200));
    let error = sim.start_process(config, addr(5)).0.unwrap_err().to_string();
    for contact in [addr(3), addr(4)] {
        assert!(
            error.contains(&format!("{contact} (dialing {contact}: nothing listens on {contact})")),
            "{error}"
        );
    }
}

#[test]
fn a_join_claiming_a_live_members_id_is_refused_with_the_reason() {
    let seed = 13;
    let mut sim = SimCluster::new("join-duplicate", seed, 3);
    let cases = [
        (1, 1, "duplicate node id 1: already connected"),
        (1, 0, "node 1's incarnation 0 is stale: incarnation 1 has joined since"),
        (0, 5, "duplicate node id 0: the peer claims our own id"),
    ];
    for (index, (id, incarnation, expected)) in cases.into_iter().enumerate() {
        // The live member holds the id's address: the impostor listens elsewhere.
        let listen = SocketAddr::new(addr(id).ip(), 7100 + index as u16);
        let config = sim_config(&joiner_spec(seed, id, listen, None), node(id))
            .incarnation(incarnation)
            .join([addr(0)])
            .deadline(Duration::from_millis(200));
        let (result, _, events, _) = sim.start_process(config, listen);
        let error = result.unwrap_err().to_string();
        assert!(error.contains(expected), "{error}");
        assert!(events.is_empty(), "{events:?}");
        let refused = sim.clusters[0].refused_connections().join("\n");
        assert!(refused.contains(expected), "{refused}");
    }
    for member in 0..3u16 {
        let cluster = &sim.clusters[member as usize];
        for peer in cluster.peers() {
            assert!(cluster.peer_lost(peer).is_none() && cluster.peer_incarnation(peer) == Some(1));
        }
    }
    let outcome = sim.replicate(0, &mut QuorumWaiter::new(), 1, 2).unwrap();
    assert_eq!(outcome.acked.len(), 2, "the real nodes are untouched");
}

#[test]
fn a_removed_member_is_torn_down_and_everything_it_sends_after_is_refused() {
    for seed in seeds(3) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("remove", seed, 3);
        let victim = node(2);
        // Its process goes on running; the members remove it.
        let mut old = sim.clusters.remove(2);
        let mut old_poller = sim.pollers.remove(2);
        let old_view = old.remote_region(node(0), REGION).unwrap();
        for index in 0..2 {
            let cluster = &mut sim.clusters[index];
            cluster.remove_peer(victim).unwrap();
            let events: Vec<ControlEvent> = std::iter::from_fn(|| cluster.poll_control()).collect();
            assert!(
                matches!(events.as_slice(), [ControlEvent::Removed { peer, incarnation: Some(1) }] if *peer == victim),
                "seed {seed}: {events:?}"
            );
            assert_eq!(ids(cluster), [node(1 - index as u16)]);
            assert_eq!(cluster.peer_incarnation(victim), None);
            let role = cluster.role(REPLICATION).unwrap();
            for error in [
                cluster.remote_region(victim, REGION).unwrap_err(),
                cluster.qp(victim, role).unwrap_err(),
                cluster.remove_peer(victim).unwrap_err(),
                cluster.start_reconnect(victim, &[]).unwrap_err(),
            ] {
                assert!(matches!(error, Error::PeerRemoved { node, .. } if node == victim), "{error}");
                assert_eq!(error.to_string(), "node 2 was removed from the cluster (incarnation 1)");
            }
        }
        // The removed process hears why from each member...
        let lost: Vec<ControlEvent> = std::iter::from_fn(|| old.poll_control()).collect();
        assert_eq!(lost.len(), 2, "seed {seed}: {lost:?}");
        for event in &lost {
            let ControlEvent::PeerLost { peer, reason: PeerLoss::Fenced { reason } } = event else {
                panic!("seed {seed}: {event:?}")
            };
            let expected = format!("node {peer} removed node 2 (incarnation 1) from the cluster");
            assert_eq!(reason, &expected);
        }
        let fenced = old.fenced().expect("fenced").to_string();
        assert!(fenced.ends_with("removed node 2 (incarnation 1) from the cluster"), "{fenced}");
        // ...its WRITE fails and lands nowhere, it cannot reconnect...
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
        assert_ne!(sim.read(0, 128), u64::from_le_bytes([0xee; 8]), "seed {seed}: a removed WRITE landed");
        assert!(matches!(old.start_reconnect(node(0), &[]), Err(Error::PeerGone { .. })));
        // ...and no process of the removed incarnation gets back in, by either road.
        let spec = sim_spec(3, seed);
        let attempts = [
            sim_config(&spec, victim).rejoin(true),
            sim_config(&joiner_spec(seed, 2, second_addr(2), None), victim).join([addr(0), addr(1)]),
        ];
        for config in attempts {
            let (result, _, events, _) =
                sim.start_process(config.incarnation(1).deadline(Duration::from_millis(300)), second_addr(2));
            let error = result.unwrap_err().to_string();
            assert!(
                error.contains("node 2 may not join: its incarnation 1 was removed"),
                "seed {seed}: {error}"
            );
            assert!(events.is_empty(), "seed {seed}: {events:?}");
        }
        for member in 0..2 {
            let refused = sim.clusters[member].refused_connections().join("\n");
            assert!(refused.contains("its incarnation 1 was removed"), "seed {seed}: {refused}");
        }
        // Nor does the removed process take anyone in: a node that comes to it is told.
        sim.clusters.push(old);
        let config = joiner(seed, 5, 1, &[addr(2)]).deadline(Duration::from_millis(200));
        let (result, _, _, _) = sim.start_process(config, addr(5));
        let old = sim.clusters.pop().unwrap();
        let error = result.unwrap_err().to_string();
        let expected =
            format!("this process of node 2 (incarnation 1) was fenced out of the cluster by {fenced}");
        assert!(error.contains(&expected), "seed {seed}: {error}");
        assert_eq!(ids(&old), [node(0), node(1)], "seed {seed}: it took no one in");
        let outcome = sim.replicate(0, &mut QuorumWaiter::new(), 3, 1).unwrap();
        assert_eq!(outcome.acked, [node(1)], "seed {seed}: the members go on without it");
    }
}

#[test]
fn requests_outstanding_to_a_removed_member_complete_flushed() {
    let mut sim = SimCluster::new("remove-flush", 31, 2);
    sim.fabric.set_auto_advance(false);
    // Posted, and virtual time stands still: it is still outstanding at the removal.
    sim.write(0, node(1), LOG_WRITE, 1);
    assert!(sim.pollers[0].poll().next().is_none());
    sim.clusters[0].remove_peer(node(1)).unwrap();
    let completions: Vec<_> = sim.pollers[0].poll().collect();
    assert_eq!(completions.len(), 1, "{completions:?}");
    assert_eq!(completions[0].wr_id, WrId::new(LOG_WRITE, node(1), 1).unwrap());
    assert_eq!(completions[0].completion.status, Status::Flushed);
    let role = sim.clusters[0].role(REPLICATION).unwrap();
    let error = sim.clusters[0].post_send(node(1), role, &[]).unwrap_err();
    assert!(matches!(error, Error::PeerRemoved { .. }), "{error}");
}

#[test]
fn removing_a_dead_member_gives_its_qps_to_a_node_that_joins() {
    let seed = 14;
    let _guard = SeedGuard(seed);
    let mut sim =
        SimCluster::with_configs("remove-dead", seed, sim_spec(3, seed), |config| config.spare_peers(0));
    // No QPs set aside: a new node is refused, and told why.
    let config = joiner(seed, 5, 1, &[addr(0)]).deadline(Duration::from_millis(200));
    let error = sim.start_process(config, addr(5)).0.unwrap_err().to_string();
    let expected = "node 5 may not join: no QPs left for a node that joins (see NodeConfig::spare_peers)";
    assert!(error.contains(expected), "{error}");
    // Node 2 dies, and the members remove it: its QPs are free again.
    sim.fabric.crash(sim.sim_nodes[2]);
    drop(sim.pollers.remove(2));
    drop(sim.clusters.remove(2));
    for index in 0..2 {
        sim.clusters[index].remove_peer(node(2)).unwrap();
    }
    let (fresh, sim_node, events, _) = sim.start_process(joiner(seed, 5, 2, &[addr(0)]), addr(5));
    let fresh = fresh.unwrap();
    assert_eq!(ids(&fresh), [node(0), node(1)]);
    for member in [node(0), node(1)] {
        let seen = of(&events, member);
        let last = seen.last().expect("events");
        assert!(
            matches!(last, ControlEvent::Joined { peer, incarnation: 2 } if *peer == node(5)),
            "{seen:?}"
        );
        assert!(!seen
            .iter()
            .any(|event| matches!(event, ControlEvent::Joined { peer, .. } if *peer == node(2))));
    }
    sim.install(2, fresh, sim_node);
    let outcome = sim.replicate(0, &mut QuorumWaiter::new(), 1, 2).unwrap();
    assert_eq!((outcome.acked.len(), sim.read(2, 1)), (2, 1));
    let outcome = sim.replicate(2, &mut QuorumWaiter::new(), 2, 2).unwrap();
    assert_eq!((outcome.acked.len(), sim.read(0, 2), sim.read(1, 2)), (2, 2, 2));
}

#[test]
fn a_removed_id_joins_again_as_a_newer_process_by_either_road() {
    for (seed, by_join) in [(0, false), (1, true), (2, false), (3, true)] {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("remove-return", seed, 3);
        for index in 0..2 {
            sim.clusters[index].remove_peer(node(2)).unwrap();
        }
        // The removed process exits; a newer process of node 2 comes.
        sim.fabric.crash(sim.sim_nodes[2]);
        drop(sim.pollers.remove(2));
        drop(sim.clusters.remove(2));
        let config = if by_join {
            joiner(seed, 2, 2, &[addr(1)])
        } else {
            sim_config(&sim_spec(3, seed), node(2)).incarnation(2).rejoin(true)
        };
        let (fresh, sim_node, events, _) = sim.start_process(config, addr(2));
        let fresh = fresh.unwrap();
        assert_eq!(ids(&fresh), [node(0), node(1)], "seed {seed}");
        for member in [node(0), node(1)] {
            let seen = of(&events, member);
            // The members forgot node 2: the new process is news, not a restart.
            assert!(
                matches!(
                    seen.as_slice(),
                    [
                        ControlEvent::Removed { peer: removed, incarnation: Some(1) },
                        ControlEvent::Joined { peer, incarnation: 2 },
                    ] if *removed == node(2) && *peer == node(2)
                ),
                "seed {seed}, node {member}: {seen:?}"
            );
        }
        sim.install(2, fresh, sim_node);
        for from in 0..3 {
            let entry = 1 + from as u64;
            let outcome = sim.replicate(from, &mut QuorumWaiter::new(), entry, 2).unwrap();
            assert_eq!(outcome.acked.len(), 2, "seed {seed}: node {from} writes to both others");
        }
    }
}

#[test]
fn a_replacement_that_arrives_before_the_death_is_noticed_supersedes_the_dead_process() {
    for (seed, by_join) in [(0, false), (1, true), (2, false), (3, true)] {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("unnoticed", seed, 3);
        sim.fabric.crash(sim.sim_nodes[2]);
        drop(sim.pollers.remove(2));
        drop(sim.clusters.remove(2));
        // The replacement dials before the members poll: they read its hello in the same
        // poll that would have shown them the closed connection.
        let config = if by_join {
            joiner(seed, 2, 2, &[addr(0), addr(1)])
        } else {
            sim_config(&sim_spec(3, seed), node(2)).incarnation(2).rejoin(true)
        };
        let (sim_node, context) = sim.fabric.open_node().unwrap();
        let network = sim.hub.listen(addr(2)).unwrap();
        let mut boot = Bootstrap::start(&context, config, Box::new(network)).unwrap();
        let mut events = Events::new();
        let mut now_ns = 0;
        let fresh = loop {
            let progress = boot.poll(now_ns).unwrap();
            poll_all(&mut sim.clusters, now_ns, &mut events);
            if progress == Progress::Done {
                break boot.finish().unwrap();
            }
            now_ns += 1_000_000;
        };
        poll_all(&mut sim.clusters, now_ns, &mut events);
        for member in [node(0), node(1)] {
            let seen = of(&events, member);
            assert!(
                matches!(
                    seen.as_slice(),
                    [
                        ControlEvent::PeerLost { peer: lost, reason: PeerLoss::Superseded { incarnation: 2 } },
                        ControlEvent::Rejoined { peer, incarnation: 2 },
                    ] if *lost == node(2) && *peer == node(2)
                ),
                "seed {seed}, node {member}: {seen:?}"
            );
        }
        sim.install(2, fresh, sim_node);
        for from in 0..3 {
            let entry = 1 + from as u64;
            let outcome = sim.replicate(from, &mut QuorumWaiter::new(), entry, 2).unwrap();
            assert_eq!(outcome.acked.len(), 2, "seed {seed}: node {from} writes to both others");
        }
    }
}

#[test]
fn a_joined_node_that_dies_is_replaced_by_a_newer_process_of_its_id() {
    let seed = 15;
    let _guard = SeedGuard(seed);
    let mut sim = SimCluster::new("join-replace", seed, 3);
    let (fresh, sim_node, _, _) = sim.start_process(joiner(seed, 5, 1, &[addr(0)]), addr(5));
    sim.install(3, fresh.unwrap(), sim_node);
    sim.fabric.crash(sim.sim_nodes[3]);
    drop(sim.pollers.remove(3));
    drop(sim.clusters.remove(3));
    let (fresh, sim_node, events, _) = sim.start_process(joiner(seed, 5, 2, &[addr(2)]), addr(5));
    let fresh = fresh.unwrap();
    assert_eq!(ids(&fresh), [node(0), node(1), node(2)]);
    for member in 0..3 {
        let seen = of(&events, node(member));
        assert!(
            matches!(
                seen.as_slice(),
                [
                    ControlEvent::PeerLost { peer: lost, reason: PeerLoss::Closed { .. } },
                    ControlEvent::Rejoined { peer, incarnation: 2 },
                ] if *lost == node(5) && *peer == node(5)
            ),
            "node {member}: {seen:?}"
        );
    }
    sim.install(3, fresh, sim_node);
    let outcome = sim.replicate(3, &mut QuorumWaiter::new(), 1, 3).unwrap();
    assert_eq!(outcome.acked.len(), 3);
    let outcome = sim.replicate(1, &mut QuorumWaiter::new(), 2, 3).unwrap();
    assert_eq!((outcome.acked.len(), sim.read(3, 2)), (3, 2));
}

/// How a node joins while a stopped old process of node 2 is back at node 2's address.
#[derive(Clone, Copy, Debug)]
enum ThroughStale {
    /// Through the old process alone, which read its fence before the node came: refused.
    AloneFenced,
    /// Through the old process alone, which admits the node and tells it the members, then
    /// reads its fence and ends the connection: what it said arrives with its refusal, and
    /// nothing of it is acted on.
    AloneBeforeItsFence,
    /// Through the old process and node 0 (in that order, or the other).
    StaleFirst,
    StaleSecond,
}

#[test]
fn a_node_joining_through_a_stopped_old_process_connects_to_its_replacement() {
    use ThroughStale::*;
    let cases = [AloneFenced, AloneBeforeItsFence, StaleFirst, StaleSecond];
    for (seed, case) in cases.into_iter().cycle().take(8).enumerate() {
        let seed = seed as u64;
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::new("join-stale", seed, 3);
        // Node 2 stops (SIGSTOP) and is replaced by a newer process listening elsewhere.
        sim.fabric.pause(sim.sim_nodes[2]);
        let old = sim.clusters.remove(2);
        let _old_poller = sim.pollers.remove(2);
        let old_sim_node = sim.sim_nodes[2];
        let config = sim_config(&sim_spec(3, seed), node(2)).incarnation(2).rejoin(true);
        let (two, two_sim, _, _) = sim.start_process(config, second_addr(2));
        sim.install(2, two.unwrap(), two_sim);
        // The old process resumes, still listening at the address the description gives
        // node 2, with a fence from each member waiting to be read.
        sim.fabric.resume(old_sim_node);
        sim.clusters.push(old);
        let contacts: &[u16] = match case {
            AloneFenced | AloneBeforeItsFence => &[2],
            StaleFirst => &[2, 0],
            StaleSecond => &[0, 2],
        };
        let contacts: Vec<SocketAddr> = contacts.iter().map(|&id| addr(id)).collect();
        let config = joiner(seed, 5, 1, &contacts).deadline(Duration::from_millis(500));
        let (fresh, sim_node) = match case {
            AloneBeforeItsFence => {
                // The joining node moves first in each round: its hello reaches the old
                // process before that one read its fence.
                let (sim_node, context) = sim.fabric.open_node().unwrap();
                let network = sim.hub.listen(addr(5)).unwrap();
                let mut boot = Bootstrap::start(&context, config, Box::new(network)).unwrap();
                let (mut now_ns, mut events) = (0, Events::new());
                let fresh = loop {
                    let progress = boot.poll(now_ns);
                    poll_all(&mut sim.clusters, now_ns, &mut events);
                    match progress {
                        Ok(Progress::Done) => break boot.finish(),
                        Ok(_) => now_ns += 1_000_000,
                        Err(error) => break Err(error),
                    }
                };
                (fresh, sim_node)
            }
            _ => {
                let (fresh, sim_node, _, _) = sim.start_process(config, addr(5));
                (fresh, sim_node)
            }
        };
        let old = sim.clusters.pop().unwrap();
        let fenced = old.fenced().expect("fenced by the members").to_string();
        assert!(fenced.ends_with("node 2 restarted: incarnation 2 replaces this process"), "{fenced}");
        assert_eq!(ids(&old), [node(0), node(1)], "seed {seed}: the old process took no one in");
        if let AloneFenced | AloneBeforeItsFence = case {
            let error = fresh.unwrap_err().to_string();
            let expected =
                format!("this process of node 2 (incarnation 1) was fenced out of the cluster by {fenced}");
            assert!(error.contains(&expected), "seed {seed}: {error}");
            continue;
        }
        let fresh = fresh.unwrap();
        assert_eq!(ids(&fresh), [node(0), node(1), node(2)], "seed {seed} {case:?}");
        assert_eq!(fresh.peer_incarnation(node(2)), Some(2), "seed {seed} {case:?}: the live process");
        assert_eq!(fresh.peer_addr(node(2)), Some(second_addr(2)));
        let new_region = sim.clusters[2].region(REGION).unwrap().remote_region();
        assert_eq!(fresh.remote_region(node(2), REGION).unwrap(), new_region, "seed {seed} {case:?}");
        drop(old);
        sim.install(3, fresh, sim_node);
        let outcome = sim.replicate(3, &mut QuorumWaiter::new(), 1, 3).unwrap();
        assert_eq!((outcome.acked.len(), sim.read(2, 1)), (3, 1), "seed {seed} {case:?}");
    }
}

#[test]
fn a_restarted_member_of_the_description_also_reconnects_to_nodes_that_joined() {
    let seed = 16;
    let _guard = SeedGuard(seed);
    let mut sim = SimCluster::new("join-then-rejoin", seed, 3);
    let (fresh, sim_node, _, _) = sim.start_process(joiner(seed, 5, 1, &[addr(0)]), addr(5));
    sim.install(3, fresh.unwrap(), sim_node);
    // Node 1 restarts with the description, which does not list node 5: it learns node 5
    // from the members it reaches.
    sim.fabric.crash(sim.sim_nodes[1]);
    drop(sim.pollers.remove(1));
    drop(sim.clusters.remove(1));
    let config = sim_config(&sim_spec(3, seed), node(1)).incarnation(2).rejoin(true);
    let (one, one_sim, events, _) = sim.start_process(config, addr(1));
    let one = one.unwrap();
    assert_eq!(ids(&one), [node(0), node(2), node(5)]);
    let seen = of(&events, node(5));
    assert!(
        matches!(seen.last(), Some(ControlEvent::Rejoined { peer, incarnation: 2 }) if *peer == node(1)),
        "{seen:?}"
    );
    sim.install(1, one, one_sim);
    let outcome = sim.replicate(1, &mut QuorumWaiter::new(), 1, 3).unwrap();
    assert_eq!((outcome.acked.len(), sim.read(3, 1)), (3, 1));
}

#[test]
fn a_node_joining_members_still_in_their_first_bootstrap_is_told_so_and_gets_in_later() {
    let seed = 17;
    let _guard = SeedGuard(seed);
    let fabric = SimFabric::create(&format!("qp-pool-join-early-{seed}"), seed).unwrap();
    let hub = MemoryHub::new();
    let spec = sim_spec(3, seed);
    let start = |config: NodeConfig, listen: SocketAddr| -> Process {
        let (_, context) = fabric.open_node().unwrap();
        let network = hub.listen(listen).unwrap();
        Process::new(Bootstrap::start(&context, config, Box::new(network)).unwrap())
    };
    // Nodes 0 and 2 start; node 1 is late, so they are still bootstrapping.
    let mut processes = vec![
        start(sim_config(&spec, node(0)), addr(0)),
        start(sim_config(&spec, node(2)), addr(2)),
        start(joiner(seed, 5, 1, &[addr(0)]), addr(5)),
    ];
    let mut events = Events::new();
    let mut now_ns = 0;
    for _ in 0..50 {
        for process in &mut processes {
            process.turn(now_ns, &mut events);
            assert!(!process.is_running());
        }
        now_ns += 1_000_000;
    }
    let refused = processes[0].boot().unwrap().rejections().join("\n");
    let expected = "node 5 may not join: node 0 is still in its first bootstrap; join once the cluster runs";
    assert!(refused.contains(expected), "{refused}");
    // Node 1 comes; the members finish, and node 5, trying again, gets in.
    processes.insert(1, start(sim_config(&spec, node(1)), addr(1)));
    while !processes.iter().all(Process::is_running) {
        for process in &mut processes {
            process.turn(now_ns, &mut events);
        }
        now_ns += 1_000_000;
    }
    for _ in 0..3 {
        for process in &mut processes {
            process.turn(now_ns, &mut events);
        }
    }
    let clusters: Vec<Cluster> = processes.into_iter().map(Process::into_cluster).collect();
    assert_eq!(ids(&clusters[3]), [node(0), node(1), node(2)]);
    for member in &clusters[..3] {
        let me = member.me();
        assert_eq!(ids(member).last(), Some(&node(5)), "node {me}: {events:?}");
        assert!(joined(&of(&events, me), node(5), 1), "node {me}: {events:?}");
    }
}
