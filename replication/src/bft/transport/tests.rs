//! Rings between three processes' worth of nodes on the soft provider (threads of the test
//! process, each its own device on one fabric).

use std::net::TcpListener;
use std::time::Duration;

use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork, WrId, WrKind};
use usec_verbs::{Context, RemoteAddr, SendWr, Status};

use super::frame::{self, frame_bytes};
use super::port::{IN_GRANT, OUT_GRANT};
use super::*;

fn id(n: u16) -> NodeId {
    NodeId::new(n).unwrap()
}

const TAIL: StreamId = StreamId(1);
const CREDIT: StreamId = StreamId(2);

/// Every node writes a 4-slot tail ring and a 4-slot credit ring into every other.
fn plan() -> RingPlan {
    let mut plan = RingPlan::new();
    for from in 0..3 {
        for to in (0..3).filter(|&to| to != from) {
            for (stream, mode) in [(TAIL, RingMode::Tail), (CREDIT, RingMode::Credit)] {
                let spec = RingSpec { stream, slots: 4, max_payload_bytes: 100, mode };
                plan.add(id(from), id(to), spec).unwrap();
            }
        }
    }
    plan
}

fn start(name: &str) -> Vec<(Cluster, RingPort)> {
    let device = format!("soft:bft-rings-{name}-{}", std::process::id());
    let listeners: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    let nodes =
        listeners.iter().enumerate().map(|(n, listener)| (id(n as u16), listener.local_addr().unwrap()));
    let spec = ClusterSpec::new(name, &ClusterSpec::fresh_run(), nodes).unwrap();
    std::thread::scope(|scope| {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(n, listener)| {
                let (spec, device) = (spec.clone(), device.clone());
                scope.spawn(move || {
                    let node = NodeConfig::new(spec, id(n as u16)).deadline(Duration::from_secs(60));
                    let (node, memory) = RingPort::configure(node, &plan()).unwrap();
                    let network = TcpNetwork::from_listener(listener).unwrap();
                    let mut cluster =
                        Cluster::bootstrap_with(&Context::open(&device).unwrap(), node, Box::new(network))
                            .unwrap();
                    let port = RingPort::new(&mut cluster, &plan(), memory).unwrap();
                    (cluster, port)
                })
            })
            .collect();
        threads.into_iter().map(|thread| thread.join().unwrap()).collect()
    })
}

fn drain(port: &mut RingPort) -> Vec<(NodeId, StreamId, Vec<u8>)> {
    let mut got = Vec::new();
    while port.poll(|from, stream, bytes| got.push((from, stream, bytes.to_vec()))) > 0 {}
    got
}

#[test]
fn frames_arrive_in_order_and_a_lapped_reader_keeps_the_newest() {
    let mut nodes = start("order");
    let (cluster, port) = &mut nodes[0];
    for n in 0u8..3 {
        assert_eq!(port.send(cluster, id(1), TAIL, &[n; 10]), Ok(u64::from(n)));
        port.complete();
    }
    let got = drain(&mut nodes[1].1);
    assert_eq!(got, (0u8..3).map(|n| (id(0), TAIL, vec![n; 10])).collect::<Vec<_>>());
    assert!(drain(&mut nodes[1].1).is_empty(), "a frame is taken once");

    // Ten more into a ring of four, unread: the reader loses six and keeps the last four.
    let (cluster, port) = &mut nodes[0];
    for n in 3u8..13 {
        port.send(cluster, id(1), TAIL, &[n; 20]).unwrap();
        port.complete();
    }
    let got = drain(&mut nodes[1].1);
    assert_eq!(got, (9u8..13).map(|n| (id(0), TAIL, vec![n; 20])).collect::<Vec<_>>());
    assert_eq!(nodes[1].1.stats().inbound.skipped, 6);
    assert_eq!(nodes[0].1.stats().sent, 13);
}

#[test]
fn a_credit_ring_refuses_to_overwrite_and_loses_nothing() {
    let mut nodes = start("credit");
    let mut received = Vec::new();
    let mut next = 0u8;
    let mut refusals = 0;
    while next < 40 {
        let (cluster, port) = &mut nodes[2];
        match port.send(cluster, id(0), CREDIT, &[next; 33]) {
            Ok(_) => next += 1,
            Err(SendError::Full) => refusals += 1,
            Err(other) => panic!("{other}"),
        }
        port.complete();
        // The reader reads only now and then: the sender runs into its credit.
        if refusals % 3 == 2 || next % 7 == 0 {
            received.extend(drain(&mut nodes[0].1));
        }
        assert!(refusals < 10_000, "the sender never got credit back");
    }
    received.extend(drain(&mut nodes[0].1));
    assert!(refusals > 0, "the sender never ran out of room");
    assert_eq!(received, (0u8..40).map(|n| (id(2), CREDIT, vec![n; 33])).collect::<Vec<_>>());
    assert_eq!(nodes[0].1.stats().inbound.skipped, 0);
}

#[test]
fn a_sender_cannot_write_into_another_senders_ring() {
    let mut nodes = start("rights");
    // Node 1's ring in node 0's memory, as node 1 was told of it.
    let victim = nodes[1].0.remote_region(id(0), IN_GRANT).unwrap();
    let (cluster, port) = &mut nodes[2];
    let role = port.role();
    let frame_len = frame_bytes(5);
    let out = cluster.grant(id(0), OUT_GRANT).unwrap();
    let mut forged = vec![0; frame_len];
    frame::encode(0, b"forge", &mut forged);
    out.region().write(out.region_offset(), &forged).unwrap();
    let sge = out.sge(0, frame_len as u32).unwrap();
    let target = RemoteAddr::within(&victim, 0, frame_len as u64).unwrap();
    let wr_id = WrId::new(WrKind::application(3), id(0), 1).unwrap().to_raw();
    cluster.post_send(id(0), role, &[SendWr::write(wr_id, target, &sge)]).unwrap();
    let status = loop {
        // The ring port owns the role's CQ: its completion loop skips kinds of others, so
        // poll it through the port's poller by hand.
        if let Some(status) = port_status(port) {
            break status;
        }
    };
    assert_eq!(status, Status::RemoteAccessError, "node 2 wrote into node 1's ring at node 0");
    assert!(drain(&mut nodes[0].1).is_empty(), "nothing forged was delivered");
}

fn port_status(port: &mut RingPort) -> Option<Status> {
    port.poll_foreign_completion()
}

#[test]
fn garbage_in_a_ring_is_refused_and_the_sender_can_still_write_over_it() {
    let mut nodes = start("garbage");
    // Node 2 writes garbage straight into slot 0 of its own tail ring at node 0 (it may:
    // the ring is its own).
    let own = nodes[2].0.remote_region(id(0), IN_GRANT).unwrap();
    let (cluster, port) = &mut nodes[2];
    let role = port.role();
    let out = cluster.grant(id(0), OUT_GRANT).unwrap();
    out.region().write(out.region_offset(), &[0xa5; 64]).unwrap();
    let sge = out.sge(0, 64).unwrap();
    let wr_id = WrId::new(WrKind::application(3), id(0), 2).unwrap().to_raw();
    let target = RemoteAddr::within(&own, 0, 64).unwrap();
    cluster.post_send(id(0), role, &[SendWr::write(wr_id, target, &sge)]).unwrap();
    while port.poll_foreign_completion().is_none() {}
    assert!(drain(&mut nodes[0].1).is_empty());
    let stats = nodes[0].1.stats().inbound;
    assert!(stats.torn + stats.refused > 0, "garbage went unnoticed: {stats:?}");
    // Its next real frame lands in that slot and is taken.
    let (cluster, port) = &mut nodes[2];
    port.send(cluster, id(0), TAIL, b"real").unwrap();
    assert_eq!(drain(&mut nodes[0].1), [(id(2), TAIL, b"real".to_vec())]);
}
