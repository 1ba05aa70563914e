//! Three Mu replicas bootstrapped on the soft provider in threads of the test process,
//! handed back to the test's thread un-turned.

use std::net::TcpListener;

use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_replication::cft::MuConfig;
use usec_replication::driver::{DetectorConfig, MuDriver};
use usec_replication::StateMachine;
use usec_verbs::Context;

/// Bootstraps replicas 0, 1 and 2 of cluster `name` on `device` (a `soft:` device name),
/// each with a fresh `S`, listening on loopback ports the kernel picks. Node 0 first.
pub fn start<S: StateMachine + Default>(
    name: &str,
    device: &str,
    config: &MuConfig,
    detectors: DetectorConfig,
) -> Vec<MuDriver<S>> {
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let nodes = listeners
        .iter()
        .enumerate()
        .map(|(id, listener)| (NodeId::new(id as u16).unwrap(), listener.local_addr().unwrap()));
    let spec = ClusterSpec::new(name, &ClusterSpec::fresh_run(), nodes).unwrap();
    std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(id, listener)| {
                let spec = spec.clone();
                scope.spawn(move || {
                    let context = Context::open(device).unwrap();
                    let node = NodeConfig::new(spec, NodeId::new(id as u16).unwrap());
                    let node = MuDriver::<S>::configure(node, config).unwrap();
                    let network = TcpNetwork::from_listener(listener).unwrap();
                    let cluster = Cluster::bootstrap_with(&context, node, Box::new(network)).unwrap();
                    let now = MonotonicClock::new().now_ns();
                    MuDriver::new(cluster, config.clone(), detectors, S::default(), now).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    })
}
