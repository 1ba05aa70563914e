//! uBFT's registers on the sim provider: three replicas (nodes 0-2) and three memory nodes
//! (nodes 3-5) bootstrapped into one qp-pool cluster, the register set driven through its
//! port in virtual time. A memory node crashes and registers go on; a Byzantine replica
//! scribbles over its own registers and readers say so; it tries to write another
//! replica's registers and the (simulated) NIC refuses with a remote access error. Each
//! test prints its seed when it fails; `USEC_SEED=<n>` replays one seed.

use std::net::SocketAddr;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_qp_pool::{
    Bootstrap, Cluster, ClusterSpec, MemoryHub, NodeConfig, NodeId, Poller, Progress, WrId, WrKind,
};
use usec_replication::bft::memory_node::{self, MemoryNode};
use usec_replication::bft::register::port::{ALL_GRANT, OWN_GRANT, ROLE, SCRATCH_REGION};
use usec_replication::bft::register::{
    Event, Misbehaviour, OpId, ReadResult, RegisterConfig, RegisterLayout, RegisterPort, RegisterSet,
};
use usec_verbs::sim::{self, LatencyModel, SimFabric};
use usec_verbs::{RemoteAddr, SendWr, Status};

const REPLICAS: u16 = 3;
const MEMORY_NODES: u16 = 3;
/// A kind of the application range for the Byzantine replica's raw writes.
const RAW_WRITE: WrKind = WrKind::application(9);

struct SeedGuard(u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("FAILING SEED: {} (replay with USEC_SEED={})", self.0, self.0);
        }
    }
}

fn seeds(count: u64) -> Vec<u64> {
    match std::env::var("USEC_SEED") {
        Ok(seed) => vec![seed.parse().expect("USEC_SEED is a number")],
        Err(_) => (0..count).collect(),
    }
}

fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

fn addr(id: u16) -> SocketAddr {
    SocketAddr::from(([10, 12, 0, id as u8], 7000))
}

fn layout() -> RegisterLayout {
    RegisterLayout::for_ctbcast(usize::from(REPLICAS), 8)
}

struct Replica {
    cluster: Cluster,
    poller: Poller,
    port: RegisterPort,
    set: RegisterSet,
    events: Vec<Event>,
}

struct Harness {
    fabric: SimFabric,
    sim_nodes: Vec<sim::NodeId>,
    replicas: Vec<Replica>,
    memory_nodes: Vec<MemoryNode>,
    /// Memory nodes crashed: their processes serve nothing any more.
    crashed: Vec<bool>,
}

impl Harness {
    fn new(test: &str, seed: u64) -> Harness {
        let fabric = SimFabric::create(&format!("bft-registers-{test}-{seed}"), seed).unwrap();
        fabric.set_latency(LatencyModel::uniform(600, 1_400));
        let hub = MemoryHub::new();
        let n = REPLICAS + MEMORY_NODES;
        let spec =
            ClusterSpec::new("bft-sim", &format!("seed-{seed}"), (0..n).map(|id| (node(id), addr(id))))
                .unwrap();
        let writers: Vec<NodeId> = (0..REPLICAS).map(node).collect();
        let mut boots = Vec::new();
        let mut memories = Vec::new();
        let mut sim_nodes = Vec::new();
        for id in 0..n {
            let (sim_node, context) = fabric.open_node().unwrap();
            sim_nodes.push(sim_node);
            let mut config =
                NodeConfig::new(spec.clone(), node(id)).deadline(Duration::from_secs(60)).incarnation(1);
            // An ACK timeout of about 1 ms and few retries: a WRITE to a crashed memory node
            // fails within milliseconds of virtual time.
            config.connect.rts.timeout = 8;
            config.connect.rts.retry_count = 3;
            let config = if id < REPLICAS {
                RegisterPort::configure(config, &layout(), 64).unwrap()
            } else {
                let (config, memory) = memory_node::configure(config, &layout(), &writers).unwrap();
                memories.push(memory);
                config
            };
            let network = hub.listen(addr(id)).unwrap();
            boots.push(Bootstrap::start(&context, config, Box::new(network)).unwrap());
        }
        let mut clusters = bootstrap_all(boots);
        let memory_clusters = clusters.split_off(usize::from(REPLICAS));
        let memory_nodes = memory_clusters
            .into_iter()
            .zip(memories)
            .map(|(cluster, memory)| MemoryNode::new(cluster, memory, layout()))
            .collect();
        let memory_ids: Vec<NodeId> = (REPLICAS..n).map(node).collect();
        let replicas = clusters
            .into_iter()
            .enumerate()
            .map(|(writer, mut cluster)| {
                let port = RegisterPort::new(&cluster, layout(), writer, &memory_ids).unwrap();
                let poller = cluster.take_poller(&[port.role()]).unwrap();
                let config = RegisterConfig::new(layout(), usize::from(MEMORY_NODES), writer);
                Replica { cluster, poller, port, set: RegisterSet::new(config).unwrap(), events: Vec::new() }
            })
            .collect();
        Harness { fabric, sim_nodes, replicas, memory_nodes, crashed: vec![false; usize::from(MEMORY_NODES)] }
    }

    /// One turn of every replica and memory node.
    fn turn(&mut self) {
        let now_ns = self.fabric.now_ns();
        for replica in &mut self.replicas {
            replica.port.turn(&mut replica.cluster, &mut replica.poller, &mut replica.set, now_ns);
            while let Some(event) = replica.cluster.poll_control_at(now_ns) {
                replica.port.handle_control(&event);
            }
            replica.events.extend(std::iter::from_fn(|| replica.set.poll_event()));
        }
        for (memory_node, crashed) in self.memory_nodes.iter_mut().zip(&self.crashed) {
            if !crashed {
                memory_node.serve(now_ns);
            }
        }
        // Nothing due now: virtual time moves to the next event or retry.
        if !self.fabric.step() {
            let retry = self.replicas.iter().filter_map(|replica| replica.set.poll_timeout()).min();
            self.fabric.advance_to(retry.unwrap_or(now_ns + 1_000).max(now_ns + 1));
        }
    }

    /// Crashes memory node `index` (0-based among the memory nodes).
    fn crash_memory_node(&mut self, index: usize) {
        self.fabric.crash(self.sim_nodes[usize::from(REPLICAS) + index]);
        self.crashed[index] = true;
    }

    fn wait(&mut self, replica: usize, op: OpId) -> Event {
        for _ in 0..1_000_000 {
            let events = &mut self.replicas[replica].events;
            if let Some(index) = events.iter().position(|event| op_of(event) == op) {
                return events.remove(index);
            }
            self.turn();
        }
        panic!("operation {op:?} of replica {replica} never finished");
    }

    fn write(&mut self, replica: usize, slot: usize, incarnation: u64, value: &[u8]) -> Event {
        let op = self.replicas[replica].set.write(slot, incarnation, value).unwrap();
        self.wait(replica, op)
    }

    fn read(&mut self, replica: usize, owner: usize, slot: usize) -> ReadResult {
        let op = self.replicas[replica].set.read(owner, slot).unwrap();
        match self.wait(replica, op) {
            Event::Read { result, .. } => result,
            other => panic!("not a read: {other:?}"),
        }
    }

    /// Replica `from` posts one raw WRITE to memory node `memory` (index) and returns its
    /// status: what a Byzantine replica can do with its QPs, outside the register set.
    fn raw_write(&mut self, from: usize, memory: usize, target: RemoteAddr, bytes: &[u8]) -> Status {
        let replica = &mut self.replicas[from];
        let peer = node(REPLICAS + memory as u16);
        let role = replica.cluster.role(ROLE).unwrap();
        let wr_id = WrId::new(RAW_WRITE, peer, 1).unwrap().to_raw();
        // Staged in the scratch region, which no register operation uses at this point.
        let scratch = replica.cluster.region(SCRATCH_REGION).unwrap();
        scratch.region().write(0, bytes).unwrap();
        let sge = scratch.sge(0, bytes.len() as u32).unwrap();
        replica.cluster.post_send(peer, role, &[SendWr::write(wr_id, target, &sge)]).unwrap();
        for _ in 0..1_000_000 {
            if let Some(polled) = replica.poller.poll().next() {
                assert_eq!(polled.wr_id.to_raw(), wr_id);
                return polled.completion.status;
            }
        }
        panic!("no completion");
    }
}

fn op_of(event: &Event) -> OpId {
    match event {
        Event::Written { op, .. } | Event::WriteFailed { op, .. } | Event::Read { op, .. } => *op,
    }
}

/// Polls every bootstrap with fake time (1 ms a round) until all are done.
fn bootstrap_all(mut boots: Vec<Bootstrap>) -> Vec<Cluster> {
    let mut now_ns = 0;
    let mut done = vec![false; boots.len()];
    while done.iter().any(|done| !done) {
        for (boot, done) in boots.iter_mut().zip(&mut done) {
            if !*done {
                *done = boot.poll(now_ns).unwrap() == Progress::Done;
            }
        }
        now_ns += 1_000_000;
    }
    boots.into_iter().map(|boot| boot.finish().unwrap()).collect()
}

fn value(tag: u8) -> Vec<u8> {
    vec![tag; layout().value_bytes]
}

#[test]
fn every_replica_reads_what_each_wrote() {
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let mut harness = Harness::new("basic", seed);
        for writer in 0..3 {
            let event = harness.write(writer, 5, 1, &value(writer as u8 + 1));
            assert!(matches!(event, Event::Written { slot: 5, incarnation: 1, .. }), "{event:?}");
        }
        for reader in 0..3 {
            for owner in 0..3 {
                let expected = ReadResult::Value { incarnation: 1, value: value(owner as u8 + 1) };
                assert_eq!(harness.read(reader, owner, 5), expected);
                assert_eq!(harness.read(reader, owner, 6), ReadResult::Absent);
            }
        }
        // The memory nodes' CPUs did nothing for it: their copies are simply there.
        let layout = layout();
        for memory_node in &harness.memory_nodes {
            let mut bytes = vec![0; layout.register_bytes()];
            memory_node.memory().read(layout.register_offset(2, 5), &mut bytes).unwrap();
            assert!(bytes.contains(&3), "a copy is missing");
        }
    }
}

#[test]
fn registers_survive_a_crashed_memory_node() {
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let mut harness = Harness::new("crash", seed);
        harness.write(0, 0, 1, &value(1));
        let victim = 3 + (seed % 3) as usize;
        harness.crash_memory_node(victim - 3);
        for incarnation in 2..=6u64 {
            let event = harness.write(0, 0, incarnation, &value(incarnation as u8));
            assert!(matches!(event, Event::Written { .. }), "seed {seed}: {event:?}");
            for reader in 0..3 {
                let expected = ReadResult::Value { incarnation, value: value(incarnation as u8) };
                assert_eq!(harness.read(reader, 0, 0), expected, "seed {seed}");
            }
        }
        assert!(!harness.replicas[0].port.is_up(victim - 3), "the crash went unnoticed");
        // A second crash leaves no majority: operations fail, they do not hang.
        let second = 3 + ((seed + 1) % 3) as usize;
        harness.crash_memory_node(second - 3);
        let event = harness.write(1, 0, 1, &value(9));
        assert!(matches!(event, Event::WriteFailed { .. }), "seed {seed}: {event:?}");
        assert_eq!(harness.read(2, 0, 0), ReadResult::Unavailable, "seed {seed}");
    }
}

#[test]
fn garbage_a_byzantine_replica_writes_into_its_own_registers_is_detected() {
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let mut harness = Harness::new("garbage", seed);
        harness.write(1, 2, 1, &value(7));
        // Replica 1 overwrites both sub-slots of its register 2 with garbage, on every
        // memory node, through its own grant: RDMA lets it, it is its register.
        let layout = layout();
        let garbage = vec![0x5a; layout.register_bytes()];
        for memory in 0..3 {
            let own =
                harness.replicas[1].cluster.remote_region(node(REPLICAS + memory as u16), OWN_GRANT).unwrap();
            let within = layout.register_offset(1, 2) - layout.writer_offset(1);
            let target = RemoteAddr::within(&own, within as u64, garbage.len() as u64).unwrap();
            assert_eq!(harness.raw_write(1, memory, target, &garbage), Status::Success);
        }
        for reader in [0, 2] {
            match harness.read(reader, 1, 2) {
                ReadResult::Byzantine(Misbehaviour::Unreadable { memory_nodes }) => {
                    assert!(memory_nodes.len() >= 2, "seed {seed}: {memory_nodes:?}")
                }
                other => panic!("seed {seed}: garbage read as {other:?}"),
            }
        }
        // Its other registers, and the others' registers, read as before.
        assert_eq!(harness.read(0, 1, 3), ReadResult::Absent);
        harness.write(2, 2, 1, &value(8));
        assert_eq!(harness.read(0, 2, 2), ReadResult::Value { incarnation: 1, value: value(8) });
    }
}

#[test]
fn a_replica_cannot_write_another_replicas_registers() {
    for seed in seeds(3) {
        let _guard = SeedGuard(seed);
        let mut harness = Harness::new("rights", seed);
        harness.write(0, 1, 1, &value(1));
        let layout = layout();
        let victim_register = layout.register_offset(0, 1);
        let memory = node(REPLICAS);
        let forged = vec![0xee; layout.sub_slot_bytes()];
        // Through the read-only grant of everything: the MR has no remote write.
        let all = harness.replicas[2].cluster.remote_region(memory, ALL_GRANT).unwrap();
        let target = RemoteAddr::within(&all, victim_register as u64, forged.len() as u64).unwrap();
        assert_eq!(harness.raw_write(2, 0, target, &forged), Status::RemoteAccessError, "seed {seed}");
        // Through replica 0's own grant, its key learned somehow: another protection
        // domain than the one of replica 2's QP.
        let theirs = harness.replicas[0].cluster.remote_region(memory, OWN_GRANT).unwrap();
        let target =
            RemoteAddr::within(&theirs, layout.register_offset(0, 1) as u64, forged.len() as u64).unwrap();
        let replica = &mut harness.replicas[2];
        replica.cluster.start_reconnect(memory, &[]).unwrap();
        while replica.cluster.reconnect_pending(memory) {
            let _ = replica.cluster.poll_control();
            harness.memory_nodes[0].serve(0);
        }
        assert_eq!(harness.raw_write(2, 0, target, &forged), Status::RemoteAccessError, "seed {seed}");
        // Nothing of it landed: every reader still reads replica 0's write.
        for memory_node in &harness.memory_nodes {
            let mut bytes = vec![0; layout.register_bytes()];
            memory_node.memory().read(victim_register, &mut bytes).unwrap();
            assert!(!bytes.contains(&0xee), "seed {seed}: a forged byte landed");
        }
        for reader in 0..3 {
            assert_eq!(harness.read(reader, 0, 1), ReadResult::Value { incarnation: 1, value: value(1) });
        }
    }
}

#[test]
fn the_same_seed_replays_the_same_run() {
    let run = |name: &str, seed: u64| {
        let mut harness = Harness::new(name, seed);
        harness.fabric.record_trace(true);
        for incarnation in 1..=3u64 {
            harness.write(incarnation as usize % 3, 4, incarnation, &value(incarnation as u8));
            harness.read((incarnation as usize + 1) % 3, incarnation as usize % 3, 4);
        }
        harness.fabric.trace_hash()
    };
    for seed in seeds(3) {
        let _guard = SeedGuard(seed);
        assert_eq!(run("replay-a", seed), run("replay-b", seed), "seed {seed} did not replay");
    }
}

/// What a simulated run checks of every read: its value was written by the owner (for
/// that incarnation), it is no older than the last write of that register completed before
/// the read began, and a correct writer is never blamed.
fn check_read(seed: u64, read: &PendingRead, result: &ReadResult) {
    match result {
        ReadResult::Value { incarnation, value: found } => {
            assert_eq!(found, &tagged(read.owner, *incarnation), "seed {seed}: a value never written");
            assert!(
                *incarnation >= read.floor,
                "seed {seed}: read {incarnation} after {} completed",
                read.floor
            );
        }
        ReadResult::Absent => assert_eq!(read.floor, 0, "seed {seed}: absent after a completed write"),
        // Not enough memory nodes reachable from the reader: allowed while links are cut.
        ReadResult::Unavailable => {}
        ReadResult::Byzantine(why) => panic!("seed {seed}: a correct writer blamed: {why:?}"),
    }
}

/// The value writer `owner` writes at `incarnation`.
fn tagged(owner: usize, incarnation: u64) -> Vec<u8> {
    let mut value = vec![owner as u8; layout().value_bytes];
    value[..8].copy_from_slice(&incarnation.to_le_bytes());
    value
}

struct PendingRead {
    reader: usize,
    op: OpId,
    owner: usize,
    slot: usize,
    floor: u64,
}

/// Random writes and reads of every replica, while links between replicas and memory
/// nodes are cut and healed and one memory node crashes: every read is checked (see
/// [`check_read`]), every operation finishes, and once the links heal every replica writes
/// and reads again on the two memory nodes left — its failed QPs repaired by the port.
#[test]
fn random_operations_under_partitions_and_a_crash_stay_regular() {
    const SLOTS: usize = 3;
    for seed in seeds(40) {
        let _guard = SeedGuard(seed);
        let mut harness = Harness::new("random", seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut completed = vec![vec![0u64; SLOTS]; 3];
        let mut next = vec![vec![1u64; SLOTS]; 3];
        let mut reads: Vec<PendingRead> = Vec::new();
        let mut writes = 0;
        let mut cut: Vec<(usize, usize)> = Vec::new();
        let crash_at = rng.gen_range(0..150);
        for round in 0..200 {
            if round == crash_at {
                harness.crash_memory_node(rng.gen_range(0..3));
            }
            match rng.gen_range(0..10) {
                0..=3 => {
                    let (writer, slot) = (rng.gen_range(0..3), rng.gen_range(0..SLOTS));
                    let incarnation = next[writer][slot];
                    next[writer][slot] += 1;
                    harness.replicas[writer]
                        .set
                        .write(slot, incarnation, &tagged(writer, incarnation))
                        .unwrap();
                    writes += 1;
                }
                4..=7 => {
                    let (reader, owner, slot) =
                        (rng.gen_range(0..3), rng.gen_range(0..3), rng.gen_range(0..SLOTS));
                    let op = harness.replicas[reader].set.read(owner, slot).unwrap();
                    reads.push(PendingRead { reader, op, owner, slot, floor: completed[owner][slot] });
                }
                8 => {
                    let (replica, memory) = (rng.gen_range(0..3), rng.gen_range(0..3));
                    harness.fabric.partition(harness.sim_nodes[replica], harness.sim_nodes[3 + memory]);
                    cut.push((replica, memory));
                }
                _ => {
                    for (replica, memory) in cut.drain(..) {
                        harness.fabric.heal(harness.sim_nodes[replica], harness.sim_nodes[3 + memory]);
                    }
                }
            }
            for _ in 0..rng.gen_range(0..200) {
                harness.turn();
            }
            settle(seed, &mut harness, &mut completed, &mut reads);
        }
        for (replica, memory) in cut.drain(..) {
            harness.fabric.heal(harness.sim_nodes[replica], harness.sim_nodes[3 + memory]);
        }
        // Everything started finishes.
        let mut turns = 0;
        while harness.replicas.iter().any(|replica| replica.set.in_flight() > 0) {
            harness.turn();
            turns += 1;
            assert!(turns < 2_000_000, "seed {seed}: operations never finished");
        }
        settle(seed, &mut harness, &mut completed, &mut reads);
        assert!(reads.is_empty(), "seed {seed}: reads never finished");
        // Healed: every replica writes and reads again, its broken QPs repaired.
        for (writer, next) in next.iter().enumerate() {
            let slot = SLOTS - 1;
            let incarnation = next[slot];
            let mut attempts = 0;
            while !matches!(
                harness.write(writer, slot, incarnation, &tagged(writer, incarnation)),
                Event::Written { .. }
            ) {
                attempts += 1;
                assert!(attempts < 1_000, "seed {seed}: replica {writer} never writes again");
                for _ in 0..1_000 {
                    harness.turn();
                }
            }
            let reader = (writer + 1) % 3;
            let mut attempts = 0;
            loop {
                match harness.read(reader, writer, slot) {
                    ReadResult::Unavailable if attempts < 1_000 => attempts += 1,
                    result => {
                        assert_eq!(
                            result,
                            ReadResult::Value { incarnation, value: tagged(writer, incarnation) },
                            "seed {seed}"
                        );
                        break;
                    }
                }
                for _ in 0..1_000 {
                    harness.turn();
                }
            }
        }
        assert!(writes > 0);
    }
}

/// Takes every finished operation: completed writes raise their register's floor, reads
/// are checked.
fn settle(seed: u64, harness: &mut Harness, completed: &mut [Vec<u64>], reads: &mut Vec<PendingRead>) {
    for (writer, replica) in harness.replicas.iter_mut().enumerate() {
        for event in replica.events.drain(..) {
            match event {
                Event::Written { slot, incarnation, .. } => {
                    completed[writer][slot] = completed[writer][slot].max(incarnation);
                }
                Event::WriteFailed { .. } => {}
                Event::Read { op, owner, slot, result } => {
                    let index = reads
                        .iter()
                        .position(|read| read.reader == writer && read.op == op)
                        .expect("a read that was started");
                    let read = reads.remove(index);
                    assert_eq!((read.owner, read.slot), (owner, slot));
                    check_read(seed, &read, &result);
                }
            }
        }
    }
}
