//! The cluster key over loopback TCP on the soft provider: a keyed cluster bootstraps and
//! keeps its control connections authenticated; impostors that know the cluster and run
//! names (a wrong key, no key, a recorded connection replayed) get no offer and are
//! reported apart, never as a fault of the node whose id they claimed.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use usec_qp_pool::handshake::{Entry, Handshake, HandshakeEvent, Joining, Side};
use usec_qp_pool::wire::{parse_frame, FrameKind, Offer};
use usec_qp_pool::{Cluster, ClusterKey, ClusterSpec, Error};

/// A loopback cluster of `n` whose description carries a fresh key, written and read back
/// in the text form, as a launcher would hand it to each node.
fn keyed_loopback(n: usize, cluster: &str) -> (Vec<TcpListener>, ClusterSpec) {
    let (listeners, spec) = loopback(n, cluster);
    let text = format!("{spec}key = {}\n", ClusterKey::generate().to_hex());
    let keyed = ClusterSpec::parse(&text).unwrap();
    assert!(keyed.key.is_some());
    (listeners, keyed)
}

/// The kinds of the whole frames in `bytes` (tags unchecked).
fn kinds(mut bytes: &[u8]) -> Vec<FrameKind> {
    let mut kinds = Vec::new();
    while let Ok(Some(frame)) = parse_frame(bytes) {
        kinds.push(frame.kind);
        bytes = &bytes[frame.len..];
    }
    kinds
}

/// Plays `handshake` over a TCP connection to `addr`, or sends `replay` instead of what
/// the handshake says. Returns every byte the node sent (until it closed the connection or
/// sent an offer) and every byte we sent.
fn play(addr: SocketAddr, mut handshake: Handshake, replay: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut sent = Vec::new();
    if let Some(bytes) = replay {
        stream.write_all(bytes).unwrap();
        sent.extend_from_slice(bytes);
    }
    let (mut received, mut chunk) = (Vec::new(), [0u8; 4096]);
    let give_up = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < give_up, "the node neither answered nor closed");
        if replay.is_none() {
            let out = handshake.outgoing().to_vec();
            handshake.written(out.len());
            if stream.write_all(&out).is_err() {
                break;
            }
            sent.extend_from_slice(&out);
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(count) => {
                received.extend_from_slice(&chunk[..count]);
                if replay.is_none() && handshake.handle_bytes(&chunk[..count]).is_err() {
                    continue; // keep reading what the node says until it closes
                }
            }
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) if error.kind() == ErrorKind::ConnectionReset => break,
            Err(error) => panic!("reading: {error}"),
        }
        if let Some(HandshakeEvent::Identified(_)) = handshake.poll_event() {
            handshake.send_offer(Offer::default());
        }
        if kinds(&received).contains(&FrameKind::Offer) {
            break;
        }
    }
    (received, sent)
}

fn nonce(seed: u8) -> [u8; 32] {
    [seed; 32]
}

/// A client claiming node 0 of `spec` (as it knows it) to a node at `addr`.
fn claim_node_zero(spec: &ClusterSpec, addr: SocketAddr, seed: u8) -> Handshake {
    let side = Side::Dialer { expected: node(1) };
    let label = format!("{addr} (node 1's address)");
    Handshake::new(Arc::new(spec.clone()), node(0), side, &label, nonce(seed))
}

/// Node 1 of `spec` in a thread, listening on `listener`.
fn node_one(
    device: &str,
    spec: &ClusterSpec,
    listener: TcpListener,
    deadline: Duration,
) -> std::thread::JoinHandle<usec_qp_pool::Result<Cluster>> {
    let (device, config) = (device.to_string(), config(spec, node(1)).deadline(deadline));
    std::thread::spawn(move || start_configs(&device, vec![listener], vec![config]).pop().unwrap())
}

#[test]
fn a_keyed_cluster_bootstraps_writes_and_reconnects() {
    let (listeners, spec) = keyed_loopback(3, "keyed");
    let mut clusters = start_threads(&soft_device(), listeners, &spec);
    let mut poller = clusters[0].take_poller(&[]).unwrap();
    let status = write_and_wait(&mut clusters[0], &mut poller, node(2), REPLICATION, 0, b"keyed!!!");
    assert_eq!(status, usec_verbs::Status::Success);
    assert_eq!(read_local(&clusters[2], 0, 8), b"keyed!!!");
    // A reconnect runs over the authenticated control connection kept from bootstrap.
    clusters[0].start_reconnect(node(2), &[]).unwrap();
    let give_up = Instant::now() + Duration::from_secs(20);
    while clusters[0].reconnect_pending(node(2)) {
        assert!(Instant::now() < give_up, "no reconnect");
        clusters[2].poll_control();
        clusters[0].poll_control();
    }
    assert!(clusters[0].peer_lost(node(2)).is_none());
    assert!(clusters.iter().all(|cluster| cluster.bootstrap_rejections().is_empty()));
}

#[test]
fn impostors_get_no_offer_and_the_real_node_still_joins() {
    let (mut listeners, spec) = keyed_loopback(2, "impostors");
    let listener = listeners.pop().unwrap();
    let addr = listener.local_addr().unwrap();
    let device = soft_device();
    let node_one = node_one(&device, &spec, listener, Duration::from_secs(20));

    // A wrong key: the node sends its hello and proof, then refuses.
    let wrong = spec.clone().with_key(ClusterKey::generate());
    let (received, _) = play(addr, claim_node_zero(&wrong, addr, 1), None);
    assert_eq!(kinds(&received), vec![FrameKind::Hello, FrameKind::Proof, FrameKind::Reject]);
    // No key at all: refused at its hello.
    let mut keyless = spec.clone();
    keyless.key = None;
    let (received, _) = play(addr, claim_node_zero(&keyless, addr, 2), None);
    assert_eq!(kinds(&received), vec![FrameKind::Hello, FrameKind::Reject]);

    // The real node 0 still gets in, and node 1 lists the impostors.
    let zero = start_configs(&device, listeners, vec![config(&spec, node(0))]).pop().unwrap().unwrap();
    let one = node_one.join().unwrap().unwrap();
    assert_eq!((zero.peers().count(), one.peers().count()), (1, 1));
    let refused = one.bootstrap_rejections();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(
        refused.iter().all(|line| line.contains("(claiming node 0) failed the cluster key check")),
        "{refused:#?}"
    );
    assert!(refused[1].contains("no cluster key"), "{refused:#?}");
}

#[test]
fn a_recorded_connection_replayed_gets_no_offer() {
    let (mut listeners, spec) = keyed_loopback(2, "replay");
    let listener = listeners.pop().unwrap();
    let addr = listener.local_addr().unwrap();
    let device = soft_device();
    let node_one = node_one(&device, &spec, listener, Duration::from_secs(20));

    // Someone with the key (standing in for the real node 0) connects and is offered
    // the node's endpoints; an eavesdropper records what it sent.
    let (received, recorded) = play(addr, claim_node_zero(&spec, addr, 3), None);
    assert!(kinds(&received).contains(&FrameKind::Offer), "{:?}", kinds(&received));
    assert!(kinds(&recorded).starts_with(&[FrameKind::Hello, FrameKind::Proof]), "{:?}", kinds(&recorded));

    // The eavesdropper replays it on a connection of its own: the node's nonce is fresh.
    let (received, _) = play(addr, claim_node_zero(&spec, addr, 4), Some(&recorded));
    assert_eq!(kinds(&received), vec![FrameKind::Hello, FrameKind::Proof, FrameKind::Reject]);

    let zero = start_configs(&device, listeners, vec![config(&spec, node(0))]).pop().unwrap().unwrap();
    let one = node_one.join().unwrap().unwrap();
    assert_eq!((zero.peers().count(), one.peers().count()), (1, 1));
    let refused = one.bootstrap_rejections().join("\n");
    assert!(refused.contains("the tag of Proof frame #0 does not verify"), "{refused}");
}

#[test]
fn the_deadline_error_blames_no_missing_node_for_an_impostor() {
    let (mut listeners, spec) = keyed_loopback(2, "blame");
    let listener = listeners.pop().unwrap();
    let addr = listener.local_addr().unwrap();
    let device = soft_device();
    let node_one = node_one(&device, &spec, listener, Duration::from_millis(1500));
    let wrong = spec.clone().with_key(ClusterKey::generate());
    play(addr, claim_node_zero(&wrong, addr, 5), None);
    // The real node 0 never comes.
    let error = node_one.join().unwrap().unwrap_err();
    let Error::Deadline { missing, impostors, .. } = &error else { panic!("{error}") };
    assert_eq!(missing.len(), 1, "{error}");
    assert_eq!(missing[0].0, node(0));
    assert_eq!(missing[0].1, "it never dialed us (lower ids dial higher ones)", "{error}");
    assert_eq!(impostors.len(), 1, "{error}");
    assert!(impostors[0].contains("(claiming node 0) failed the cluster key check"), "{error}");
    let text = error.to_string();
    assert!(text.contains("; refused for failing the cluster key check: 127.0.0.1:"), "{text}");
}

#[test]
fn nodes_with_different_keys_refuse_each_other_as_impostors() {
    let (listeners, spec) = keyed_loopback(2, "two-keys");
    let other = spec.clone().with_key(ClusterKey::generate());
    // Node 1 outlives node 0, so that node 0's last dial still finds it listening.
    let configs = vec![
        config(&spec, node(0)).deadline(Duration::from_millis(1500)),
        config(&other, node(1)).deadline(Duration::from_millis(3000)),
    ];
    let results = start_configs(&soft_device(), listeners, configs);
    // Node 0 dialed node 1's address, and what answered failed the check.
    let error = results[0].as_ref().unwrap_err();
    let Error::Deadline { missing, impostors, .. } = error else { panic!("{error}") };
    assert!(missing[0].1.contains("failed the cluster key check (see the impostors)"), "{error}");
    assert!(!impostors.is_empty(), "{error}");
    // Node 1 was dialed by something that failed the check: node 0 is not blamed.
    let error = results[1].as_ref().unwrap_err();
    let Error::Deadline { missing, impostors, .. } = error else { panic!("{error}") };
    assert_eq!(missing[0].1, "it never dialed us (lower ids dial higher ones)", "{error}");
    assert!(
        impostors.iter().all(|line| line.contains("(claiming node 0) failed the cluster key check")),
        "{error}"
    );
}

#[test]
fn an_impostor_cannot_rejoin_in_the_place_of_a_running_node() {
    let (listeners, spec) = keyed_loopback(3, "rejoin-impostor");
    let device = soft_device();
    let mut clusters = start_threads(&device, listeners, &spec);
    let zero_addr = spec.addr_of(node(0)).unwrap();
    let mut zero = clusters.remove(0);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Node 0 serves its control connections, where restarted nodes rejoin.
    let server = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut events = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                events.extend(zero.poll_control());
                std::thread::yield_now();
            }
            (zero, events)
        }
    });
    // Claiming to be node 2 restarted, with the highest incarnation there is: with
    // another key, and with none.
    let joining = Joining { incarnation: u64::MAX, entry: Entry::Rejoin, addr: None };
    let side = Side::Dialer { expected: node(0) };
    let mut keyless = spec.clone();
    keyless.key = None;
    for (seed, forged) in [(6, spec.clone().with_key(ClusterKey::generate())), (7, keyless)] {
        let handshake =
            Handshake::for_incarnation(Arc::new(forged), node(2), joining, side, "to node 0", nonce(seed));
        let (received, _) = play(zero_addr, handshake, None);
        let kinds = kinds(&received);
        assert!(!kinds.contains(&FrameKind::Offer) && kinds.last() == Some(&FrameKind::Reject), "{kinds:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut zero, events) = server.join().unwrap();
    assert!(events.is_empty(), "node 2 was neither lost nor replaced: {events:?}");
    let refused = zero.refused_connections();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert!(refused.iter().all(|line| line.contains("(claiming node 2) failed the cluster key check")));
    assert!(zero.peer_lost(node(2)).is_none());
    let mut poller = zero.take_poller(&[]).unwrap();
    let status = write_and_wait(&mut zero, &mut poller, node(2), REPLICATION, 64, b"still 2!");
    assert_eq!(status, usec_verbs::Status::Success);
    assert_eq!(read_local(&clusters[1], 64, 8), b"still 2!");
}
