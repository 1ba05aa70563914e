//! Three consensus members in threads of this process on the soft provider (each its own
//! device on one fabric, bootstrapped over loopback TCP), each both an acceptor and a
//! proposer, deciding a sequence of views as operators on every node add members, one at a
//! time each, all at once: their proposals contend for the same instances. Every node ends with every member, and
//! every view id learned anywhere is the same view everywhere.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_lease_clock::detector::ScoreConfig;
use usec_lease_clock::heartbeat::ReaderConfig;
use usec_membership::{
    Detectors, Layout, Member, MemberKind, MembershipNode, View, ViewChangeConfig, ViewEvent,
};
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_verbs::Context;

fn node(id: u16) -> NodeId {
    NodeId::new(id).expect("small")
}

/// Heartbeats slow enough that a busy two-core machine never makes a member look dead.
fn patient_detectors() -> Detectors {
    Detectors {
        reader: ReaderConfig { period_ns: 50_000_000, timeout_ns: 1_000_000_000 },
        score: ScoreConfig { score_max: 10, ..ScoreConfig::default() },
        bump_period_ns: 1_000_000,
    }
}

#[test]
fn three_contending_proposers_decide_one_sequence_of_views() {
    let seed = 11;
    println!("seed {seed}");
    let device = format!("soft:membership-views-{}", std::process::id());
    let listeners: Vec<TcpListener> =
        (0..3).map(|_| TcpListener::bind("127.0.0.1:0").expect("a port")).collect();
    let nodes = listeners.iter().enumerate().map(|(id, l)| (node(id as u16), l.local_addr().expect("bound")));
    let spec = ClusterSpec::new("views", &ClusterSpec::fresh_run(), nodes).expect("a spec");
    let acceptors = [node(0), node(1), node(2)];
    let layout = Layout::default();
    let first = View::new(0, acceptors.iter().map(|&id| Member::new(id, 1, MemberKind::Consensus)).collect())
        .expect("a view");
    // Each operator adds four application members of its own: 12 changes, 3 proposers.
    let additions = |me: u16| -> Vec<Member> {
        (0..4).map(|k| Member::new(node(10 + me * 4 + k), 1, MemberKind::App)).collect()
    };
    let stop = Arc::new(AtomicBool::new(false));
    // Per node, the members of the latest view it knows, for the test's thread to watch.
    let sizes: Arc<Vec<AtomicUsize>> = Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
    let learned: Vec<Vec<(View, u64)>> = std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(id, listener)| {
                let (spec, first, stop, sizes) = (spec.clone(), first.clone(), stop.clone(), sizes.clone());
                let device = device.clone();
                scope.spawn(move || {
                    let me = node(id as u16);
                    let context = Context::open(&device).expect("the soft device");
                    let config = NodeConfig::new(spec, me).incarnation(1);
                    let config =
                        MembershipNode::<ChaCha8Rng>::configure(config, &layout, &acceptors).expect("fits");
                    let network = TcpNetwork::from_listener(listener).expect("a network");
                    let cluster =
                        Cluster::bootstrap_with(&context, config, Box::new(network)).expect("bootstrap");
                    let clock = MonotonicClock::new();
                    let view_config = ViewChangeConfig::new(me, 1, layout, acceptors.len());
                    let rng = ChaCha8Rng::seed_from_u64(seed + id as u64);
                    let now = clock.now_ns();
                    let mut member = MembershipNode::new(
                        cluster,
                        view_config,
                        &acceptors,
                        first,
                        patient_detectors(),
                        rng,
                        now,
                    )
                    .expect("a member");
                    // One addition at a time, the next once the view holds the last: twelve
                    // changes, most of them contended.
                    let mut pending = additions(id as u16);
                    pending.reverse();
                    let mut last_added: Option<Member> = None;
                    let mut learned = Vec::new();
                    let mut turns = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let landed = last_added.is_none_or(|last| member.view().contains(last.node, 1));
                        if landed {
                            if let Some(next) = pending.pop() {
                                member.add(clock.now_ns(), next);
                                last_added = Some(next);
                            }
                        }
                        member.turn(clock.now_ns());
                        while let Some(ViewEvent::Learned { view, at_ns, .. }) = member.poll_event() {
                            sizes[id].store(view.members().len(), Ordering::Relaxed);
                            learned.push((view, at_ns));
                        }
                        turns += 1;
                        if turns % 64 == 0 {
                            std::thread::yield_now(); // two cores, three nodes and the test
                        }
                    }
                    learned
                })
            })
            .collect();
        // Wait until every node knows a view with all 15 members.
        let deadline = Instant::now() + Duration::from_secs(60);
        while sizes.iter().any(|size| size.load(Ordering::Relaxed) < 15) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        threads.into_iter().map(|thread| thread.join().expect("no panic")).collect()
    });

    let mut by_id: BTreeMap<u64, View> = BTreeMap::new();
    for (index, views) in learned.iter().enumerate() {
        let ids: Vec<u64> = views.iter().map(|(view, _)| view.id()).collect();
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "node {index} learned views out of order: {ids:?}"
        );
        assert!(views.windows(2).all(|pair| pair[0].1 <= pair[1].1), "learned at times that go back");
        for (view, _) in views {
            let same = by_id.entry(view.id()).or_insert_with(|| view.clone());
            assert_eq!(same, view, "view {} differs between nodes", view.id());
        }
        let last = &views.last().expect("views learned").0;
        assert_eq!(last.members().len(), 15, "node {index} ends with {last}");
        for id in 0..3 {
            assert!(last.is_consensus(node(id), 1), "node {id} still a consensus member");
            for addition in additions(id) {
                assert!(last.contains(addition.node, 1), "node {index} misses {addition:?}");
            }
        }
    }
    println!("views decided: {}", by_id.len());
}
