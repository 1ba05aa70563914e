//! Three participants and three memory nodes on the soft provider (threads of the test
//! process bootstrap them; one thread then turns them all, so no wall-clock margin is
//! involved: a "silent" participant is one that is not turned).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_verbs::{AccessFlags, Context, Region};

use super::super::ctbcast::{CtbConfig, DeliveryPath, Event, Keyring};
use super::super::memory_node;
use super::super::transport::port::role_spec;
use super::*;

fn id(n: u16) -> NodeId {
    NodeId::new(n).unwrap()
}

fn key(n: u16) -> SigningKey {
    SigningKey::from_bytes(&[n as u8 + 1; 32])
}

fn config() -> CtbNodeConfig {
    let ctb = CtbConfig {
        tail: 16,
        max_message_bytes: 256,
        fast_path_timeout_ns: 1_000_000,
        ..CtbConfig::default()
    };
    let mut config = CtbNodeConfig::new(vec![id(0), id(1), id(2)], vec![id(3), id(4), id(5)], ctb);
    config.p2p = Some(P2pConfig { slots: 4, max_message_bytes: 64 });
    config
}

enum Started {
    Participant(Box<CtbNode>),
    /// Kept alive for the test's length.
    Memory(#[allow(dead_code)] Box<(Cluster, Arc<Region>)>),
}

fn start(name: &str, behaviours: [Behaviour; 3]) -> (Vec<CtbNode>, Vec<Started>) {
    let device = format!("soft:bft-node-{name}-{}", std::process::id());
    let listeners: Vec<TcpListener> = (0..6).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let nodes =
        listeners.iter().enumerate().map(|(n, listener)| (id(n as u16), listener.local_addr().unwrap()));
    let spec = ClusterSpec::new(name, &ClusterSpec::fresh_run(), nodes).unwrap();
    let keys = Keyring::new((0..3).map(|n| (id(n), key(n).verifying_key())));
    let started: Vec<Started> = std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(n, listener)| {
                let (spec, device, keys) = (spec.clone(), device.clone(), keys.clone());
                scope.spawn(move || {
                    let config = config();
                    let node = NodeConfig::new(spec, id(n as u16)).deadline(Duration::from_secs(60));
                    let network = TcpNetwork::from_listener(listener).unwrap();
                    let context = Context::open(&device).unwrap();
                    if n < 3 {
                        let (node, memory) = CtbNode::configure(node, &config).unwrap();
                        let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).unwrap();
                        let participant =
                            CtbNode::new(cluster, &config, key(n as u16), keys, memory, behaviours[n])
                                .unwrap();
                        Started::Participant(Box::new(participant))
                    } else {
                        let (node, region) =
                            memory_node::configure(node, &config.layout(), &config.participants).unwrap();
                        let node = node.role(role_spec(AccessFlags::empty()));
                        let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).unwrap();
                        Started::Memory(Box::new((cluster, region)))
                    }
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    });
    let mut participants = Vec::new();
    let mut memory = Vec::new();
    for started in started {
        match started {
            Started::Participant(node) => participants.push(*node),
            memory_node => memory.push(memory_node),
        }
    }
    (participants, memory)
}

/// Turns the participants in `turning` (virtual time: a microsecond a round) until `done`
/// holds of the events collected, or `rounds` pass.
fn run(
    nodes: &mut [CtbNode],
    turning: &[usize],
    now: &mut u64,
    rounds: usize,
    events: &mut [Vec<(NodeId, Event)>],
    done: impl Fn(&[Vec<(NodeId, Event)>]) -> bool,
) {
    for _ in 0..rounds {
        *now += 1_000;
        for &n in turning {
            nodes[n].turn(*now);
            while let Some(event) = nodes[n].poll_event() {
                events[n].push(event);
            }
        }
        if done(events) {
            return;
        }
    }
    panic!("not done after {rounds} rounds: {events:?}");
}

fn delivered(events: &[(NodeId, Event)], from: NodeId) -> Vec<(u64, Vec<u8>, DeliveryPath)> {
    events
        .iter()
        .filter_map(|(b, event)| match event {
            Event::Delivered { index, message, path } if *b == from => Some((*index, message.clone(), *path)),
            _ => None,
        })
        .collect()
}

#[test]
fn every_participant_delivers_every_broadcast_on_the_fast_path() {
    let (mut nodes, _memory) = start("fast", [Behaviour::Correct; 3]);
    let mut now = 0;
    let mut events = vec![Vec::new(), Vec::new(), Vec::new()];
    for round in 0..5u8 {
        for (n, node) in nodes.iter_mut().enumerate() {
            node.broadcast(&[round, n as u8, 7]).unwrap();
        }
    }
    let all = |events: &[Vec<(NodeId, Event)>]| events.iter().all(|events| events.len() == 10);
    run(&mut nodes, &[0, 1, 2], &mut now, 10_000, &mut events, all);
    for b in 0..3u16 {
        let expected: Vec<_> =
            (0..5u8).map(|round| (u64::from(round), vec![round, b as u8, 7], DeliveryPath::Fast)).collect();
        for n in (0..3).filter(|&n| n != b as usize) {
            let mut got = delivered(&events[n], id(b));
            got.sort_by_key(|(index, _, _)| *index);
            assert_eq!(got, expected, "participant {n}, stream {b}");
        }
    }
    // Point-to-point: credit rings between participants.
    nodes[0].send_p2p(id(2), b"promise").unwrap();
    for _ in 0..10 {
        nodes[2].turn(now);
    }
    assert_eq!(nodes[2].poll_p2p(), Some((id(0), b"promise".to_vec())));
}

#[test]
fn with_a_participant_silent_the_others_deliver_on_the_slow_path_through_the_memory_nodes() {
    let (mut nodes, _memory) = start("slow", [Behaviour::Correct; 3]);
    let mut now = 0;
    let mut events = vec![Vec::new(), Vec::new(), Vec::new()];
    // Participant 2 is never turned: it never echoes.
    for n in 0..3u8 {
        nodes[0].broadcast(&[n; 40]).unwrap();
    }
    let done = |events: &[Vec<(NodeId, Event)>]| events[1].len() == 3;
    run(&mut nodes, &[0, 1], &mut now, 100_000, &mut events, done);
    let mut got = delivered(&events[1], id(0));
    got.sort_by_key(|(index, _, _)| *index);
    let expected: Vec<_> = (0..3u8).map(|n| (u64::from(n), vec![n; 40], DeliveryPath::Slow)).collect();
    assert_eq!(got, expected);
    let stats = nodes[1].receiver_stats(id(0)).unwrap();
    assert_eq!((stats.slow_paths, stats.delivered_slow), (3, 3));

    // Participant 2 wakes up: it reads participant 1's registers and agrees.
    let done = |events: &[Vec<(NodeId, Event)>]| events[2].len() >= 3;
    run(&mut nodes, &[0, 1, 2], &mut now, 100_000, &mut events, done);
    let mut late = delivered(&events[2], id(0));
    late.sort_by_key(|(index, _, _)| *index);
    let messages: Vec<_> = late.iter().map(|(index, message, _)| (*index, message.clone())).collect();
    assert_eq!(messages, expected.iter().map(|(i, m, _)| (*i, m.clone())).collect::<Vec<_>>());
}

#[test]
fn an_equivocating_broadcaster_is_proven_and_never_delivered_two_ways() {
    let (mut nodes, _memory) =
        start("equivocate", [Behaviour::Equivocate, Behaviour::Correct, Behaviour::Correct]);
    let mut now = 0;
    let mut events = vec![Vec::new(), Vec::new(), Vec::new()];
    nodes[0].broadcast(b"pay alice").unwrap();
    // Each correct receiver settles index 0: delivers it (at most one of them can: it read
    // the other's register before that was written) or gives it up.
    let done = |events: &[Vec<(NodeId, Event)>]| {
        events[1..].iter().all(|events| {
            events.iter().any(|(_, e)| matches!(e, Event::Abandoned { .. } | Event::Delivered { .. }))
        })
    };
    run(&mut nodes, &[0, 1, 2], &mut now, 100_000, &mut events, done);
    let keys = Keyring::new((0..3).map(|n| (id(n), key(n).verifying_key())));
    let mut proofs = 0;
    let deliveries: Vec<_> = events[1..].iter().flat_map(|events| delivered(events, id(0))).collect();
    assert!(
        deliveries.len() <= 1,
        "two correct receivers delivered index 0 of an equivocator: {deliveries:?}"
    );
    for events in &events[1..] {
        for (_, event) in events {
            if let Event::Equivocation(proof) = event {
                assert!(proof.verify(&keys));
                proofs += 1;
            }
        }
    }
    assert!(proofs >= 1, "nobody proved the equivocation: {events:?}");
}

#[test]
fn garbage_in_the_rings_is_refused_and_the_real_messages_delivered() {
    let (mut nodes, _memory) = start("garbage", [Behaviour::Garbage, Behaviour::Correct, Behaviour::Correct]);
    let mut now = 0;
    let mut events = vec![Vec::new(), Vec::new(), Vec::new()];
    for n in 0..4u8 {
        nodes[0].broadcast(&[n; 8]).unwrap();
    }
    let done = |events: &[Vec<(NodeId, Event)>]| events[1..].iter().all(|events| events.len() == 4);
    run(&mut nodes, &[0, 1, 2], &mut now, 100_000, &mut events, done);
    for n in 1..3 {
        let mut got = delivered(&events[n], id(0));
        got.sort_by_key(|(index, _, _)| *index);
        let expected: Vec<_> = (0..4u8).map(|i| (u64::from(i), vec![i; 8], DeliveryPath::Fast)).collect();
        assert_eq!(got, expected);
        let stats = nodes[n].receiver_stats(id(0)).unwrap();
        assert!(stats.rejected_total() >= 4, "garbage accepted: {stats:?}");
    }
}
