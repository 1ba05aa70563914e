//! What the cluster tests share: unique device names, loopback listeners, nodes started
//! in threads or as processes ([`child`]), and small helpers to write and wait.
#![allow(dead_code)]

pub mod child;
pub mod sim;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, Poller, RoleSpec, TcpNetwork, WrId, WrKind};
use usec_verbs::{AccessFlags, Completion, Context, Payload, RemoteAddr, SendWr, Status};

pub const REPLICATION: &str = "replication";
pub const ELECTION: &str = "election";
pub const REGION: &str = "data";
pub const REGION_LEN: usize = 1 << 16;

/// The tests' work-request kinds, from the application range of the registry.
pub const SINGLE_WRITE: WrKind = WrKind::application(0);
pub const LOG_WRITE: WrKind = WrKind::application(1);
/// A WRITE posted only for its completion status (to a peer that should be dead).
pub const PROBE_WRITE: WrKind = WrKind::application(2);

static SERIAL: AtomicU32 = AtomicU32::new(0);

/// A soft fabric of its own for one test.
pub fn soft_device() -> String {
    format!("soft:qp-pool-{}-{}", std::process::id(), SERIAL.fetch_add(1, Ordering::Relaxed))
}

pub fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

/// `n` loopback listeners on ports the OS picks, and the description naming them.
pub fn loopback(n: usize, cluster: &str) -> (Vec<TcpListener>, ClusterSpec) {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let nodes: Vec<(NodeId, SocketAddr)> =
        listeners.iter().enumerate().map(|(id, l)| (node(id as u16), l.local_addr().unwrap())).collect();
    let spec = ClusterSpec::new(cluster, &ClusterSpec::fresh_run(), nodes).unwrap();
    (listeners, spec)
}

/// The roles every test node has: replication (write + read) and election (read only).
pub fn config(spec: &ClusterSpec, me: NodeId) -> NodeConfig {
    let region = Arc::new(usec_verbs::Region::new(REGION_LEN).unwrap());
    NodeConfig::new(spec.clone(), me)
        .role(RoleSpec::new(REPLICATION, AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ))
        .role(RoleSpec::new(ELECTION, AccessFlags::REMOTE_READ))
        .region(REGION, &region, AccessFlags::all_remote())
        .deadline(Duration::from_secs(20))
}

/// Starts one node per listener, each in its thread with its own context on `device`;
/// returns the clusters in id order.
pub fn start_threads(device: &str, listeners: Vec<TcpListener>, spec: &ClusterSpec) -> Vec<Cluster> {
    let configs: Vec<NodeConfig> = (0..listeners.len()).map(|id| config(spec, node(id as u16))).collect();
    start_configs(device, listeners, configs).into_iter().map(|result| result.unwrap()).collect()
}

/// Starts each config with its listener in a thread; returns each node's result.
pub fn start_configs(
    device: &str,
    listeners: Vec<TcpListener>,
    configs: Vec<NodeConfig>,
) -> Vec<usec_qp_pool::Result<Cluster>> {
    std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .into_iter()
            .zip(configs)
            .map(|(listener, config)| {
                scope.spawn(move || {
                    let context = Context::open(device).unwrap();
                    let network = TcpNetwork::from_listener(listener).unwrap();
                    Cluster::bootstrap_with(&context, config, Box::new(network))
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().expect("node thread panicked")).collect()
    })
}

/// Where `len` bytes at `offset` of `peer`'s region are, as seen by `cluster`.
pub fn remote(cluster: &Cluster, peer: NodeId, offset: u64, len: u64) -> RemoteAddr {
    let region = cluster.remote_region(peer, REGION).unwrap();
    RemoteAddr::within(&region, offset, len).unwrap()
}

/// Posts one inline WRITE of `bytes` to `peer`'s region at `offset`, on `role`.
pub fn write(cluster: &mut Cluster, peer: NodeId, role: &str, wr_id: WrId, offset: u64, bytes: &[u8]) {
    let role = cluster.role(role).unwrap();
    let target = remote(cluster, peer, offset, bytes.len() as u64);
    cluster.post_send(peer, role, &[SendWr::write(wr_id.to_raw(), target, Payload::Inline(bytes))]).unwrap();
}

/// Waits for one completion on `poller`.
pub fn next_completion(poller: &mut Poller) -> Completion {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(polled) = poller.poll().next() {
            return polled.completion;
        }
        assert!(Instant::now() < deadline, "no completion within 20 s");
        std::thread::yield_now();
    }
}

/// WRITEs `bytes` and returns the status it completed with.
pub fn write_and_wait(
    cluster: &mut Cluster,
    poller: &mut Poller,
    peer: NodeId,
    role: &str,
    offset: u64,
    bytes: &[u8],
) -> Status {
    let wr_id = WrId::new(SINGLE_WRITE, peer, offset).unwrap();
    write(cluster, peer, role, wr_id, offset, bytes);
    let completion = next_completion(poller);
    assert_eq!(completion.wr_id, wr_id.to_raw());
    completion.status
}

/// Reads `len` bytes at `offset` of this node's region.
pub fn read_local(cluster: &Cluster, offset: usize, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    cluster.region(REGION).unwrap().region().read(offset, &mut out).unwrap();
    out
}
