//! Grants on the sim provider: a node offers each of two peers a slice of one region that
//! only that peer may write, and the whole region read-only. The NIC (here the simulator,
//! which makes the checks a NIC makes) enforces it: a peer's writes outside its slice, with
//! any key it can get hold of, complete with a remote access error. Each test prints its
//! seed when it fails; `USEC_SEED=<n>` replays one seed.

mod common;

use std::sync::Arc;

use common::sim::{seeds, SeedGuard, SimCluster};
use common::{node, REGION, REPLICATION};
use usec_qp_pool::{NodeConfig, NodeId, WrId, WrKind};
use usec_regions::RemoteRegion;
use usec_verbs::{AccessFlags, Payload, Region, RemoteAddr, SendWr, Status};

const GRANT_WRITE: WrKind = WrKind::application(5);
const SLICE: usize = 256;
const OWN: &str = "own";
const ALL: &str = "all";

/// Node 0 grants node `peer` (1 or 2) the slice `peer - 1` read-write, and everything
/// read-only.
fn with_grants(config: NodeConfig) -> NodeConfig {
    if config.me != node(0) {
        return config;
    }
    let memory = Arc::new(Region::new(2 * SLICE).unwrap());
    let rw = AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ;
    let mut config = config;
    for peer in [1u16, 2] {
        let slice = usize::from(peer - 1) * SLICE;
        config = config.grant(node(peer), OWN, &memory, slice, SLICE, rw).grant(
            node(peer),
            ALL,
            &memory,
            0,
            2 * SLICE,
            AccessFlags::REMOTE_READ,
        );
    }
    config
}

/// Posts one signaled operation from `from` to node 0 and returns its completion status.
fn one_op(sim: &mut SimCluster, from: usize, target: RemoteAddr, write: bool, sequence: u64) -> Status {
    let cluster = &mut sim.clusters[from];
    let role = cluster.role(REPLICATION).unwrap();
    let wr_id = WrId::new(GRANT_WRITE, node(0), sequence).unwrap().to_raw();
    let scratch = cluster.region(REGION).unwrap();
    let sge = scratch.sge(0, 8).unwrap();
    let bytes = sequence.to_le_bytes();
    let wr = if write {
        SendWr::write(wr_id, target, Payload::Inline(&bytes))
    } else {
        SendWr::read(wr_id, target, std::slice::from_ref(&sge))
    };
    cluster.post_send(node(0), role, &[wr]).unwrap();
    for _ in 0..1_000_000 {
        if let Some(polled) = sim.pollers[from].poll().next() {
            assert_eq!(polled.wr_id.to_raw(), wr_id);
            return polled.completion.status;
        }
    }
    panic!("no completion")
}

fn at(region: &RemoteRegion, offset: usize) -> RemoteAddr {
    RemoteAddr::within(region, offset as u64, 8).unwrap()
}

/// A refused operation moved both QPs to ERROR, as on a NIC: reconnect them.
fn reconnect(sim: &mut SimCluster, from: usize) {
    sim.clusters[from].start_reconnect(node(0), &[]).unwrap();
    while sim.clusters[from].reconnect_pending(node(0)) {
        let _ = sim.clusters[0].poll_control();
        let _ = sim.clusters[from].poll_control();
    }
}

#[test]
fn a_peer_writes_only_its_own_grant_and_reads_all() {
    for seed in seeds(5) {
        let _guard = SeedGuard(seed);
        let mut sim = SimCluster::with_configs("grants", seed, common::sim::sim_spec(3, seed), with_grants);
        let own1 = sim.clusters[1].remote_region(node(0), OWN).unwrap();
        let all1 = sim.clusters[1].remote_region(node(0), ALL).unwrap();
        let own2 = sim.clusters[2].remote_region(node(0), OWN).unwrap();
        // Grants replace the shared regions for a peer that has them.
        assert!(sim.clusters[1].remote_region(node(0), REGION).is_err());
        assert_eq!(own1.len() as usize, SLICE);
        assert_eq!(all1.len() as usize, 2 * SLICE);

        // Its own slice: writable and readable; everything: readable.
        assert_eq!(one_op(&mut sim, 1, at(&own1, 8), true, 1), Status::Success);
        assert_eq!(one_op(&mut sim, 1, at(&all1, SLICE + 8), false, 2), Status::Success);
        let memory = sim.clusters[0].grant(node(1), OWN).unwrap().region().clone();
        let mut landed = [0u8; 8];
        memory.read(8, &mut landed).unwrap();
        assert_eq!(u64::from_le_bytes(landed), 1);

        // Writing node 2's slice through the read-only grant: refused by the MR's rights.
        assert_eq!(one_op(&mut sim, 1, at(&all1, SLICE + 8), true, 3), Status::RemoteAccessError);
        reconnect(&mut sim, 1);
        // ... and with node 2's own key, which node 1 may have learned: refused because
        // that MR is in node 2's protection domain, not in the one of node 1's QP.
        assert_eq!(one_op(&mut sim, 1, at(&own2, 8), true, 4), Status::RemoteAccessError);
        reconnect(&mut sim, 1);
        // ... and with the key of node 0's shared region, which peers without grants would
        // write: the node's own protection domain, also out of reach.
        let shared = sim.clusters[0].region(REGION).unwrap().remote_region();
        assert_eq!(one_op(&mut sim, 1, at(&shared, 0), true, 5), Status::RemoteAccessError);
        reconnect(&mut sim, 1);
        let mut untouched = [0u8; 8];
        memory.read(SLICE + 8, &mut untouched).unwrap();
        assert_eq!(untouched, [0; 8], "a refused write landed");

        // Node 2 still writes its own slice.
        assert_eq!(one_op(&mut sim, 2, at(&own2, 16), true, 6), Status::Success);
        memory.read(SLICE + 16, &mut landed).unwrap();
        assert_eq!(u64::from_le_bytes(landed), 6);
        assert_eq!(one_op(&mut sim, 1, at(&own1, 16), true, 7), Status::Success);
    }
}

#[test]
fn grants_are_checked() {
    let spec = common::sim::sim_spec(2, 0);
    let memory = Arc::new(Region::new(64).unwrap());
    let base = || common::sim::sim_config(&spec, node(0));
    let bad = [
        base().grant(node(0), OWN, &memory, 0, 8, AccessFlags::REMOTE_READ),
        base().grant(node(1), OWN, &memory, 32, memory.len(), AccessFlags::REMOTE_READ),
        base().grant(node(1), OWN, &memory, 0, 0, AccessFlags::REMOTE_READ),
        base().grant(node(1), OWN, &memory, 0, 8, AccessFlags::REMOTE_READ).grant(
            node(1),
            OWN,
            &memory,
            8,
            8,
            AccessFlags::REMOTE_READ,
        ),
        base().grant(node(1), "a b", &memory, 0, 8, AccessFlags::REMOTE_READ),
    ];
    for config in bad {
        assert!(config.check().is_err(), "{:?}", config.grants);
    }
    let good = base().grant(node(1), OWN, &memory, 0, 8, AccessFlags::REMOTE_READ).grant(
        NodeId::new(7).unwrap(),
        OWN,
        &memory,
        8,
        8,
        AccessFlags::REMOTE_READ,
    );
    good.check().unwrap();
}
