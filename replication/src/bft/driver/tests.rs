//! Three replicas and three memory nodes on the soft provider, threads of the test
//! process; a client reaches the replicas over loopback TCP. One thread turns every
//! replica in virtual time (a microsecond a round), so the replicas' timeouts count rounds,
//! not wall-clock time; a crashed replica is one that is no longer turned.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_verbs::{AccessFlags, Context, Region};

use super::*;
use crate::bft::consensus::{Client, ClientId, ClientKeyring, ConsensusConfig, DecisionPath, Event, Status};
use crate::bft::ctbcast::{CtbConfig, Keyring};
use crate::bft::memory_node;
use crate::bft::node::P2pConfig;
use crate::bft::transport::port::role_spec;
use crate::state_machine::History;

const CLIENT: ClientId = ClientId(7);

fn id(n: u16) -> NodeId {
    NodeId::new(n).unwrap()
}

fn key(n: u16) -> SigningKey {
    SigningKey::from_bytes(&[n as u8 + 1; 32])
}

fn client_key() -> SigningKey {
    SigningKey::from_bytes(&[99; 32])
}

fn keys() -> Keyring {
    Keyring::new((0..3).map(|n| (id(n), key(n).verifying_key())))
}

fn config() -> ReplicaNodeConfig {
    let ctbcast = CtbConfig {
        tail: 32,
        max_message_bytes: 2048,
        fast_path_timeout_ns: 1_000_000,
        ..CtbConfig::default()
    };
    let consensus = ConsensusConfig {
        replicas: vec![id(0), id(1), id(2)],
        window: 16,
        batch: 4,
        max_operation_bytes: 64,
        slow_path_timeout_ns: 2_000_000,
        view_change_timeout_ns: 20_000_000,
        max_state_bytes: 64 << 20,
        ctbcast,
    };
    ReplicaNodeConfig {
        consensus,
        memory_nodes: vec![id(3), id(4), id(5)],
        p2p: P2pConfig { slots: 16, max_message_bytes: 16 << 10 },
        register_in_flight: 256,
    }
}

enum Started {
    Replica(Box<ReplicaNode<History>>),
    /// Kept alive for the test's length.
    Memory(#[allow(dead_code)] Box<(Cluster, Arc<Region>)>),
}

fn start(name: &str) -> (Vec<ReplicaNode<History>>, Vec<Started>) {
    let device = format!("soft:bft-driver-{name}-{}", std::process::id());
    let listeners: Vec<TcpListener> = (0..6).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let nodes =
        listeners.iter().enumerate().map(|(n, listener)| (id(n as u16), listener.local_addr().unwrap()));
    let spec = ClusterSpec::new(name, &ClusterSpec::fresh_run(), nodes).unwrap();
    let clients = ClientKeyring::new([(CLIENT, client_key().verifying_key())]);
    let started: Vec<Started> = std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(n, listener)| {
                let (spec, device, clients) = (spec.clone(), device.clone(), clients.clone());
                scope.spawn(move || {
                    let config = config();
                    let node = NodeConfig::new(spec, id(n as u16)).deadline(Duration::from_secs(60));
                    let network = TcpNetwork::from_listener(listener).unwrap();
                    let context = Context::open(&device).unwrap();
                    if n < 3 {
                        let (node, memory) = ReplicaNode::<History>::configure(node, &config).unwrap();
                        let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).unwrap();
                        let replica = ReplicaNode::new(
                            cluster,
                            &config,
                            key(n as u16),
                            keys(),
                            clients,
                            memory,
                            History::default(),
                        )
                        .unwrap();
                        Started::Replica(Box::new(replica))
                    } else {
                        let ctb = config.ctb_node();
                        let (node, region) =
                            memory_node::configure(node, &ctb.layout(), &ctb.participants).unwrap();
                        let node = node.role(role_spec(AccessFlags::empty()));
                        let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).unwrap();
                        Started::Memory(Box::new((cluster, region)))
                    }
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    });
    let mut replicas = Vec::new();
    let mut memory = Vec::new();
    for started in started {
        match started {
            Started::Replica(node) => replicas.push(*node),
            memory_node => memory.push(memory_node),
        }
    }
    (replicas, memory)
}

/// Turns the replicas (all but `crashed`) and their client servers until `stop`; returns
/// every replica's events.
fn serve(
    replicas: &mut [ReplicaNode<History>],
    servers: &mut [ClientServer],
    stop: &AtomicBool,
    crashed: &AtomicUsize,
) -> Vec<Vec<Event>> {
    let mut events = vec![Vec::new(); replicas.len()];
    let mut now = 0u64;
    while !stop.load(Ordering::Relaxed) {
        now += 1_000;
        let mut busy = false;
        for (n, (replica, server)) in replicas.iter_mut().zip(servers.iter_mut()).enumerate() {
            if crashed.load(Ordering::Relaxed) == n {
                continue;
            }
            busy |= replica.turn(now);
            busy |= server.poll(|client, bytes| replica.handle_client(now, client, bytes));
            while let Some((client, bytes)) = replica.poll_to_client() {
                server.send(client, &bytes);
            }
            server.flush();
            events[n].extend(std::iter::from_fn(|| replica.poll_event()));
        }
        if !busy {
            std::thread::yield_now();
        }
    }
    events
}

fn link(addrs: &[SocketAddr]) -> ClientLink {
    let replicas: Vec<(NodeId, SocketAddr)> =
        addrs.iter().enumerate().map(|(n, &a)| (id(n as u16), a)).collect();
    let limits = config().consensus.limits();
    let client =
        Client::new(CLIENT, client_key(), replicas.iter().map(|r| r.0).collect(), keys(), limits, 50_000_000);
    ClientLink::new(CLIENT, client, &replicas)
}

fn servers() -> (Vec<ClientServer>, Vec<SocketAddr>) {
    let servers: Vec<ClientServer> =
        (0..3).map(|_| ClientServer::new(TcpListener::bind("127.0.0.1:0").unwrap()).unwrap()).collect();
    let addrs = servers.iter().map(|s| s.local_addr().unwrap()).collect();
    (servers, addrs)
}

fn position(result: &[u8]) -> u64 {
    u64::from_le_bytes(result.try_into().expect("History answers a u64"))
}

#[test]
fn requests_commit_on_the_fast_path_and_the_client_accepts_f_plus_one_matching_replies() {
    let (mut replicas, _memory) = start("driver-commit");
    let (mut servers, addrs) = servers();
    let (stop, crashed) = (AtomicBool::new(false), AtomicUsize::new(usize::MAX));
    let events = std::thread::scope(|scope| {
        let serving = scope.spawn(|| serve(&mut replicas, &mut servers, &stop, &crashed));
        let mut client = link(&addrs);
        for n in 1..=20u64 {
            let result = client.call(format!("op {n}").into_bytes(), Duration::from_secs(60)).unwrap();
            assert_eq!(position(&result), n, "each operation applied once, in order");
        }
        stop.store(true, Ordering::Relaxed);
        serving.join().unwrap()
    });
    let digests: Vec<_> = replicas.iter().map(|r| r.replica().executed()).collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "replicas diverged: {digests:?}");
    for replica in &replicas {
        let applied = &replica.replica().app().applied;
        // A replica may lag behind the f + 1 that answered, never disagree.
        assert!(
            applied.len() <= 20 && applied.iter().zip(1..).all(|(op, n)| *op == format!("op {n}").as_bytes())
        );
    }
    let fast =
        events[0].iter().filter(|e| matches!(e, Event::Decided { path: DecisionPath::Fast, .. })).count();
    assert!(fast > 0, "no slot decided on the fast path: {:?}", events[0]);
}

#[test]
fn a_crashed_leader_is_replaced_by_timeout_and_requests_still_complete() {
    let (mut replicas, _memory) = start("driver-view-change");
    let (mut servers, addrs) = servers();
    let (stop, crashed) = (AtomicBool::new(false), AtomicUsize::new(usize::MAX));
    let events = std::thread::scope(|scope| {
        let serving = scope.spawn(|| serve(&mut replicas, &mut servers, &stop, &crashed));
        let mut client = link(&addrs);
        for n in 1..=5u64 {
            let result = client.call(format!("op {n}").into_bytes(), Duration::from_secs(60)).unwrap();
            assert_eq!(position(&result), n);
        }
        // Replica 0 leads view 0; it stops for good.
        crashed.store(0, Ordering::Relaxed);
        for n in 6..=10u64 {
            let result = client.call(format!("op {n}").into_bytes(), Duration::from_secs(120)).unwrap();
            assert_eq!(position(&result), n, "no request lost or applied twice across the view change");
        }
        stop.store(true, Ordering::Relaxed);
        serving.join().unwrap()
    });
    for n in 1..3 {
        let (view, status) = replicas[n].replica().view();
        assert!(view >= 1 && status == Status::Normal, "replica {n} in view {view}, {status:?}");
        assert!(
            events[n].iter().any(|e| matches!(e, Event::ViewEntered { .. })),
            "replica {n}: {:?}",
            events[n]
        );
    }
    assert_eq!(replicas[1].replica().executed(), replicas[2].replica().executed());
    assert_eq!(replicas[1].replica().app().applied.len(), 10);
}
