//! The cluster logic on the sim provider, deterministic: every node in this thread, the
//! handshake over the in-memory network (no sockets), bootstrap driven with fake time,
//! the fabric's seeded scheduler under the verbs, and every wait on a [`SimDriver`] with
//! virtual deadlines: nothing here reads the wall clock. Faults: a crash during quorum
//! waits, a partition, a pause. Each test prints its seed when it fails; `USEC_SEED=<n>`
//! replays one seed.

mod common;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{node, LOG_WRITE, REGION, REGION_LEN, REPLICATION};
use usec_qp_pool::wire::{FrameKind, Hello, Message, Reconnect, Reject, RoleOffer};
use usec_qp_pool::{
    majority, wait_for, Bootstrap, Cluster, ClusterSpec, ControlEvent, Error, Link, MemoryHub, MemoryNetwork,
    Network, NodeConfig, NodeId, PeerLoss, Poller, Progress, ProtocolViolation, QuorumWaiter, Received,
    ReconnectFailure, RoleSpec, SimDriver, WrId, WrKind,
};
use usec_verbs::sim::{self, SimFabric};
use usec_verbs::{AccessFlags, AsyncEventKind, Payload, RemoteAddr, SendWr, Status};

/// Prints the seed if the test fails while it is alive.
struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("FAILING SEED: {} (replay with USEC_SEED={})", self.0, self.0);
        }
    }
}

/// The seeds to run: `USEC_SEED` alone if set, else `0..count`.
fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("USEC_SEED") {
        Ok(seed) => vec![seed.parse().expect("USEC_SEED is a number")],
        Err(_) => (0..count).collect(),
    }
}

struct SimCluster {
    fabric: SimFabric,
    sim_nodes: Vec<sim::NodeId>,
    clusters: Vec<Cluster>,
    pollers: Vec<Poller>,
    /// What each node's links read before what the peer sent.
    taps: Vec<Tap>,
}

/// Bytes, or a failure, slipped into every link of one node: what a broken or hostile peer
/// would make it read.
#[derive(Clone, Debug, Default)]
struct Tap(Arc<Mutex<TapState>>);

#[derive(Debug, Default)]
struct TapState {
    bytes: VecDeque<u8>,
    read_error: Option<io::ErrorKind>,
}

impl Tap {
    fn inject(&self, message: &Message) {
        let mut bytes = Vec::new();
        message.encode(&mut bytes);
        self.inject_bytes(&bytes);
    }

    fn inject_bytes(&self, bytes: &[u8]) {
        self.0.lock().unwrap().bytes.extend(bytes);
    }

    fn fail_reads(&self, kind: io::ErrorKind) {
        self.0.lock().unwrap().read_error = Some(kind);
    }
}

#[derive(Debug)]
struct TappedNetwork {
    inner: MemoryNetwork,
    tap: Tap,
}

impl Network for TappedNetwork {
    fn accept(&mut self) -> io::Result<Option<Box<dyn Link>>> {
        let link = self.inner.accept()?;
        Ok(link.map(|inner| Box::new(TappedLink { inner, tap: self.tap.clone() }) as Box<dyn Link>))
    }

    fn dial(&mut self, addr: SocketAddr) -> io::Result<Box<dyn Link>> {
        let inner = self.inner.dial(addr)?;
        Ok(Box::new(TappedLink { inner, tap: self.tap.clone() }))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[derive(Debug)]
struct TappedLink {
    inner: Box<dyn Link>,
    tap: Tap,
}

impl Link for TappedLink {
    fn write_some(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.inner.write_some(bytes)
    }

    fn read_some(&mut self, buffer: &mut [u8]) -> io::Result<Received> {
        let mut state = self.tap.0.lock().unwrap();
        if let Some(kind) = state.read_error {
            return Err(io::Error::new(kind, "injected by the test"));
        }
        if !state.bytes.is_empty() {
            let count = state.bytes.len().min(buffer.len());
            for (slot, byte) in buffer.iter_mut().zip(state.bytes.drain(..count)) {
                *slot = byte;
            }
            return Ok(Received::Data(count));
        }
        drop(state);
        self.inner.read_some(buffer)
    }

    fn close(&mut self) {
        self.inner.close()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

fn addr(id: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, id as u8 + 1], 7000))
}

fn sim_spec(n: u16, seed: u64) -> ClusterSpec {
    ClusterSpec::new("sim", &format!("seed-{seed}"), (0..n).map(|id| (node(id), addr(id)))).unwrap()
}

fn sim_config(spec: &ClusterSpec, me: NodeId) -> NodeConfig {
    let region = Arc::new(usec_verbs::Region::new(REGION_LEN).unwrap());
    NodeConfig::new(spec.clone(), me)
        .role(RoleSpec::new(REPLICATION, AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ))
        .region(REGION, &region, AccessFlags::all_remote())
        .deadline(Duration::from_secs(5))
}

/// Polls every bootstrap in turn, fake time advancing 1 ms per round, until all are done.
fn drive(mut boots: Vec<Bootstrap>) -> Vec<usec_qp_pool::Result<Cluster>> {
    let mut now_ns = 0;
    let mut results: Vec<Option<usec_qp_pool::Result<()>>> = boots.iter().map(|_| None).collect();
    while results.iter().any(Option::is_none) {
        for (boot, result) in boots.iter_mut().zip(&mut results) {
            if result.is_none() {
                match boot.poll(now_ns) {
                    Ok(Progress::Done) => *result = Some(Ok(())),
                    Ok(_) => {}
                    Err(error) => *result = Some(Err(error)),
                }
            }
        }
        now_ns += 1_000_000;
    }
    boots
        .into_iter()
        .zip(results)
        .map(|(boot, result)| result.expect("decided").and_then(|()| boot.finish()))
        .collect()
}

impl SimCluster {
    fn new(test: &str, seed: u64, n: u16) -> SimCluster {
        let fabric = SimFabric::create(&format!("qp-pool-{test}-{seed}"), seed).unwrap();
        let hub = MemoryHub::new();
        let spec = sim_spec(n, seed);
        let mut sim_nodes = Vec::new();
        let mut boots = Vec::new();
        let taps: Vec<Tap> = (0..n).map(|_| Tap::default()).collect();
        for id in 0..n {
            let (sim_node, context) = fabric.open_node().unwrap();
            sim_nodes.push(sim_node);
            let network =
                TappedNetwork { inner: hub.listen(addr(id)).unwrap(), tap: taps[id as usize].clone() };
            boots.push(Bootstrap::start(&context, sim_config(&spec, node(id)), Box::new(network)).unwrap());
        }
        let mut clusters: Vec<Cluster> = drive(boots).into_iter().map(|result| result.unwrap()).collect();
        let pollers = clusters.iter_mut().map(|cluster| cluster.take_poller(&[]).unwrap()).collect();
        SimCluster { fabric, sim_nodes, clusters, pollers, taps }
    }

    /// Posts one WRITE of `entry` from `from` to `to` at the entry's slot.
    fn write(&mut self, from: usize, to: NodeId, kind: WrKind, entry: u64) {
        let cluster = &mut self.clusters[from];
        let role = cluster.role(REPLICATION).unwrap();
        let region = cluster.remote_region(to, REGION).unwrap();
        let target = RemoteAddr::within(&region, entry * 8, 8).unwrap();
        let wr_id = WrId::new(kind, to, entry).unwrap().to_raw();
        let bytes = entry.to_le_bytes();
        cluster.post_send(to, role, &[SendWr::write(wr_id, target, Payload::Inline(&bytes))]).unwrap();
    }

    /// Node `from` writes `entry` to all its peers and waits for `need` of them.
    fn replicate(
        &mut self,
        from: usize,
        waiter: &mut QuorumWaiter,
        entry: u64,
        need: usize,
    ) -> usec_qp_pool::Result<usec_qp_pool::QuorumOutcome> {
        let peers: Vec<NodeId> = self.clusters[from].peers().collect();
        for &peer in &peers {
            self.write(from, peer, LOG_WRITE, entry);
        }
        let key = waiter.begin(LOG_WRITE, entry, &peers, need).unwrap();
        let mut driver = SimDriver::new(&self.fabric);
        let deadline_ns = driver.deadline_in(30_000_000_000);
        let result =
            wait_for(&mut self.pollers[from], waiter, key, deadline_ns, &mut driver, &mut |polled: &_| {
                panic!("a completion of another kind: {polled:?}")
            });
        waiter.finish(key).unwrap();
        result
    }

    /// Polls node `index` until `waiter` has seen `peer` fail (or gives up).
    fn drain_until_failed(&mut self, index: usize, waiter: &mut QuorumWaiter, peer: NodeId) {
        for _ in 0..1_000_000 {
            if waiter.is_failed(peer) {
                return;
            }
            for polled in self.pollers[index].poll() {
                assert!(waiter.observe(polled.wr_id, polled.completion.status));
            }
        }
        panic!("node {peer} never failed");
    }

    fn read(&self, index: usize, entry: u64) -> u64 {
        let mut bytes = [0u8; 8];
        self.clusters[index].region(REGION).unwrap().region().read(entry as usize * 8, &mut bytes).unwrap();
        u64::from_le_bytes(bytes)
    }
}

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
                ControlEvent::Reconnected { peer, roles, by_peer: false } if *peer == cut && *roles == [role]
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
