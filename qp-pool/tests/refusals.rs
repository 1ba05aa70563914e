//! Bootstrap under adversity, over loopback TCP on the soft provider: late and missing
//! peers, strangers (another cluster, another run, a stale process of an earlier run),
//! duplicate and unknown ids, and raw clients sending garbage, cut or damaged frames; and
//! the same, and bad joins, at the control port of a cluster that runs.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use usec_qp_pool::wire::{Entry, Hello, Message};
use usec_qp_pool::ControlEvent;
use usec_qp_pool::{ClusterSpec, Error};

/// Connects to `addr`, sends `bytes` (then closes our side if `shut`), and returns every
/// frame the node sends until it closes.
fn raw_exchange(addr: SocketAddr, bytes: &[u8], shut: bool) -> Vec<Message> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(bytes).unwrap();
    if shut {
        stream.shutdown(Shutdown::Write).unwrap();
    }
    let mut received = Vec::new();
    stream.read_to_end(&mut received).unwrap();
    decode_all(&received)
}

fn decode_all(mut bytes: &[u8]) -> Vec<Message> {
    let mut messages = Vec::new();
    while let Some((message, len)) = Message::decode(bytes).unwrap() {
        messages.push(message);
        bytes = &bytes[len..];
    }
    assert!(bytes.is_empty(), "a cut frame at the end: {bytes:?}");
    messages
}

fn reject_reason(messages: &[Message]) -> String {
    match messages.last() {
        Some(Message::Reject(reject)) => reject.reason.clone(),
        other => panic!("expected a reject last, got {other:?} in {messages:?}"),
    }
}

fn hello_of(spec: &ClusterSpec, node: u16) -> Message {
    Message::Hello(Hello {
        cluster: spec.cluster.clone(),
        run: spec.run.clone(),
        node,
        spec_digest: spec.digest(),
        nonce: [node as u8; 32],
        keyed: spec.key.is_some(),
        incarnation: 0,
        entry: Entry::Start,
        addr: None,
    })
}

#[test]
fn a_late_peer_joins_before_the_deadline() {
    let (mut listeners, spec) = loopback(3, "late");
    let device = soft_device();
    let late = listeners.pop().unwrap();
    let late_node = std::thread::spawn({
        let (device, spec) = (device.clone(), spec.clone());
        move || {
            std::thread::sleep(Duration::from_millis(700));
            start_configs(&device, vec![late], vec![config(&spec, node(2))]).pop().unwrap()
        }
    });
    let configs = vec![config(&spec, node(0)), config(&spec, node(1))];
    for result in start_configs(&device, listeners, configs) {
        assert_eq!(result.unwrap().peers().count(), 2);
    }
    assert_eq!(late_node.join().unwrap().unwrap().peers().count(), 2);
}

#[test]
fn a_missing_peer_fails_the_bootstrap_at_the_deadline_by_name() {
    let (mut listeners, spec) = loopback(3, "missing");
    drop(listeners.pop()); // node 2 never comes: its port refuses connections
    let configs = vec![
        config(&spec, node(0)).deadline(Duration::from_millis(1500)),
        config(&spec, node(1)).deadline(Duration::from_millis(1500)),
    ];
    let start = Instant::now();
    for result in start_configs(&soft_device(), listeners, configs) {
        let error = result.unwrap_err();
        let Error::Deadline { missing, .. } = &error else { panic!("{error}") };
        assert_eq!(missing.iter().map(|(node, _)| *node).collect::<Vec<_>>(), vec![node(2)], "{error}");
        let text = error.to_string();
        assert!(text.contains("missing node 2 (dialing 127.0.0.1:"), "{text}");
    }
    assert!(start.elapsed() < Duration::from_secs(10), "no hang past the deadline");
}

#[test]
fn a_node_of_another_cluster_is_refused() {
    let (listeners, spec) = loopback(2, "ours");
    let mut theirs = spec.clone();
    theirs.cluster = "theirs".into();
    // Node 1 outlives node 0: node 0 reports the last thing that went wrong with node 1,
    // which must be a refusal, not a dial after node 1 gave up and stopped listening.
    let configs = vec![
        config(&spec, node(0)).deadline(Duration::from_millis(1500)),
        config(&theirs, node(1)).deadline(Duration::from_millis(3000)),
    ];
    let results = start_configs(&soft_device(), listeners, configs);
    let dialer = results[0].as_ref().unwrap_err().to_string();
    assert!(dialer.contains("peer 1 belongs to cluster \"theirs\", we are in cluster \"ours\""), "{dialer}");
    let listener = results[1].as_ref().unwrap_err().to_string();
    assert!(
        listener.contains("peer 0 belongs to cluster \"ours\", we are in cluster \"theirs\""),
        "{listener}"
    );
}

#[test]
fn a_stale_process_of_an_earlier_run_is_never_picked_up() {
    let (listeners, spec) = loopback(2, "runs");
    // The stale node 1 of an earlier run still holds node 1's port.
    let mut earlier = spec.clone();
    earlier.run = ClusterSpec::fresh_run() + "-earlier";
    // Node 1 outlives node 0 (see a_node_of_another_cluster_is_refused).
    let configs = vec![
        config(&spec, node(0)).deadline(Duration::from_millis(1500)),
        config(&earlier, node(1)).deadline(Duration::from_millis(3000)),
    ];
    let results = start_configs(&soft_device(), listeners, configs);
    let ours = results[0].as_ref().unwrap_err().to_string();
    let expected = format!("peer 1 belongs to run {:?}, we are in run {:?}", earlier.run, spec.run);
    assert!(ours.contains(&expected), "{ours}");
    let stale = results[1].as_ref().unwrap_err().to_string();
    assert!(stale.contains(&format!("peer 0 belongs to run {:?}", spec.run)), "{stale}");
}

/// Node 1 of a 2-node cluster, alone in a thread, with a short deadline.
fn lone_listener(
    deadline: Duration,
) -> (SocketAddr, ClusterSpec, std::thread::JoinHandle<usec_qp_pool::Result<usec_qp_pool::Cluster>>) {
    let (mut listeners, spec) = loopback(2, "lone");
    let listener: TcpListener = listeners.pop().unwrap();
    let addr = listener.local_addr().unwrap();
    let device = soft_device();
    let config = config(&spec, node(1)).deadline(deadline);
    let thread =
        std::thread::spawn(move || start_configs(&device, vec![listener], vec![config]).pop().unwrap());
    (addr, spec, thread)
}

#[test]
fn duplicate_own_and_unknown_ids_are_refused() {
    let (addr, spec, thread) = lone_listener(Duration::from_secs(3));
    // A first connection claiming node 0 is taken: node 1 answers with its offer.
    let mut first = TcpStream::connect(addr).unwrap();
    first.write_all(&hello_of(&spec, 0).to_frame()).unwrap();
    first.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    while !decode_all_prefix(&received).iter().any(|message| matches!(message, Message::Offer(_))) {
        let count = first.read(&mut chunk).unwrap();
        assert!(count > 0, "node 1 closed the first connection");
        received.extend_from_slice(&chunk[..count]);
    }
    // A second one claiming node 0 is a duplicate.
    let reason = reject_reason(&raw_exchange(addr, &hello_of(&spec, 0).to_frame(), false));
    assert!(reason.contains("duplicate node id 0: another connection claims it"), "{reason}");
    let reason = reject_reason(&raw_exchange(addr, &hello_of(&spec, 1).to_frame(), false));
    assert!(reason.contains("duplicate node id 1: the peer claims our own id"), "{reason}");
    let reason = reject_reason(&raw_exchange(addr, &hello_of(&spec, 7).to_frame(), false));
    assert!(reason.contains("unknown node id 7: the cluster has nodes 0, 1"), "{reason}");
    drop(first);
    let error = thread.join().unwrap().unwrap_err().to_string();
    assert!(error.contains("refused connections") && error.contains("unknown node id 7"), "{error}");
}

/// Decodes the complete frames at the start of `bytes`.
fn decode_all_prefix(mut bytes: &[u8]) -> Vec<Message> {
    let mut messages = Vec::new();
    while let Ok(Some((message, len))) = Message::decode(bytes) {
        messages.push(message);
        bytes = &bytes[len..];
    }
    messages
}

#[test]
fn malformed_frames_are_refused_and_the_bootstrap_goes_on() {
    let (mut listeners, spec) = loopback(2, "garbage");
    let listener = listeners.pop().unwrap();
    let addr = listener.local_addr().unwrap();
    let device = soft_device();
    let node_one = std::thread::spawn({
        let (device, config) = (device.clone(), config(&spec, node(1)));
        move || start_configs(&device, vec![listener], vec![config]).pop().unwrap()
    });
    let hello = hello_of(&spec, 0).to_frame();
    let reason = reject_reason(&raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false));
    assert!(reason.contains("malformed frame (magic)"), "{reason}");
    let reason = reject_reason(&raw_exchange(addr, &hello[..20], true));
    assert!(reason.contains(&format!("truncated frame: 20 of {} bytes", hello.len())), "{reason}");
    let mut damaged = hello.clone();
    *damaged.last_mut().unwrap() ^= 0x40;
    let reason = reject_reason(&raw_exchange(addr, &damaged, false));
    assert!(reason.contains("malformed frame (checksum)"), "{reason}");
    let mut future = hello.clone();
    future[4] = 5;
    let reason = reject_reason(&raw_exchange(addr, &future, false));
    assert!(reason.contains("the peer speaks version 5, this build speaks version 4"), "{reason}");
    let mut absurd = hello.clone();
    absurd[7..11].copy_from_slice(&u32::MAX.to_le_bytes());
    let reason = reject_reason(&raw_exchange(addr, &absurd[..15], false));
    assert!(reason.contains("malformed frame (length)"), "{reason}");

    // The real node 0 still gets in.
    let node_zero = start_configs(&device, listeners, vec![config(&spec, node(0))]).pop().unwrap().unwrap();
    let node_one = node_one.join().unwrap().unwrap();
    assert_eq!((node_zero.peers().count(), node_one.peers().count()), (1, 1));
    let rejections = node_one.bootstrap_rejections();
    assert_eq!(rejections.len(), 5, "{rejections:#?}");
    assert!(rejections.iter().all(|rejection| rejection.starts_with("127.0.0.1:")), "{rejections:#?}");
}

/// A hello of node `node` joining a running cluster as `incarnation`, taking connections at
/// `addr`.
fn join_hello(spec: &ClusterSpec, node: u16, incarnation: u64, addr: Option<SocketAddr>) -> Message {
    let Message::Hello(hello) = hello_of(spec, node) else { unreachable!() };
    Message::Hello(Hello { incarnation, entry: Entry::Join, addr, spec_digest: 0, ..hello })
}

#[test]
fn garbage_and_bad_joins_at_a_running_clusters_control_port_are_refused_with_the_reason() {
    let (listeners, spec) = loopback(2, "running");
    let device = soft_device();
    let mut clusters = start_threads(&device, listeners, &spec);
    let mut zero = clusters.remove(0);
    let one_incarnation = zero.peer_incarnation(node(1)).unwrap();
    let addr = zero.control_addr().unwrap();
    // Node 0 serves its control port, as its loop would.
    let stop = Arc::new(AtomicBool::new(false));
    let server = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut events = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                events.extend(zero.poll_control());
                std::thread::yield_now();
            }
            (zero, events)
        }
    });
    let somewhere = Some(SocketAddr::from(([127, 0, 0, 1], 9)));
    let mut other_run = spec.clone();
    other_run.run = format!("{}-other", spec.run);
    let full = join_hello(&spec, 7, 1, somewhere).to_frame();
    let cases: [(Vec<u8>, bool, String); 8] = [
        (b"GET / HTTP/1.1\r\n\r\n".to_vec(), false, "malformed frame (magic)".into()),
        (
            full[..full.len() - 3].to_vec(),
            true,
            format!("truncated frame: {} of {} bytes", full.len() - 3, full.len()),
        ),
        (join_hello(&other_run, 7, 1, somewhere).to_frame(), false, "belongs to run".into()),
        (
            join_hello(&spec, 7, 1, None).to_frame(),
            false,
            "node 7 joins without saying where it takes connections".into(),
        ),
        (
            join_hello(&spec, 0, 1, somewhere).to_frame(),
            false,
            "duplicate node id 0: the peer claims our own id".into(),
        ),
        (
            join_hello(&spec, 1, one_incarnation, somewhere).to_frame(),
            false,
            "duplicate node id 1: already connected".into(),
        ),
        (
            join_hello(&spec, 1, one_incarnation - 1, somewhere).to_frame(),
            false,
            format!(
                "node 1's incarnation {} is stale: incarnation {one_incarnation} has joined since",
                one_incarnation - 1
            ),
        ),
        (join_hello(&spec, 5000, 1, somewhere).to_frame(), false, "unknown node id 5000".into()),
    ];
    for (bytes, shut, expected) in &cases {
        let reason = reject_reason(&raw_exchange(addr, bytes, *shut));
        assert!(reason.contains(expected.as_str()), "{reason:?} lacks {expected:?}");
    }
    stop.store(true, Ordering::Relaxed);
    let (mut zero, events) = server.join().unwrap();
    assert!(events.is_empty(), "nothing joined, nothing was lost: {events:?}");
    let refused = zero.refused_connections();
    assert_eq!(refused.len(), cases.len(), "{refused:#?}");
    for (_, _, expected) in &cases {
        assert!(
            refused.iter().any(|line| line.contains(expected.as_str())),
            "{expected:?} not in {refused:#?}"
        );
    }
    assert!(!events.iter().any(|event| matches!(event, ControlEvent::Joined { .. })));
    assert_eq!(zero.peers().collect::<Vec<_>>(), [node(1)]);
    let mut poller = zero.take_poller(&[]).unwrap();
    let status = write_and_wait(&mut zero, &mut poller, node(1), REPLICATION, 64, b"still 1!");
    assert_eq!(status, usec_verbs::Status::Success);
    assert_eq!(read_local(&clusters[0], 64, 8), b"still 1!");
}
