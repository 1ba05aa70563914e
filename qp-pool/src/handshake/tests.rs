//! Scripted handshakes between two in-memory ends.

use std::sync::Arc;

use super::*;
use crate::wire::{RoleOffer, MAGIC};

pub(super) fn spec(cluster: &str, run: &str, nodes: u16) -> Arc<ClusterSpec> {
    let nodes = (0..nodes).map(|id| (NodeId::new(id).unwrap(), ([127, 0, 0, 1], 7000 + id).into()));
    Arc::new(ClusterSpec::new(cluster, run, nodes).unwrap())
}

pub(super) fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

/// A nonce no other handshake of this test thread had (deterministic: a counter).
pub(super) fn fresh_nonce() -> [u8; 32] {
    thread_local!(static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(1) });
    let count = NEXT.with(|next| next.replace(next.get() + 1));
    let mut nonce = [0u8; 32];
    nonce[..8].copy_from_slice(&count.to_le_bytes());
    nonce
}

/// Moves every queued byte from `from` to `to`; returns `to`'s result.
pub(super) fn deliver(from: &mut Handshake, to: &mut Handshake) -> Result<()> {
    let bytes = from.outgoing().to_vec();
    from.written(bytes.len());
    to.handle_bytes(&bytes)
}

pub(super) fn offer(tag: &str) -> Offer {
    Offer {
        roles: vec![RoleOffer { name: "replication".into(), endpoint: tag.as_bytes().to_vec() }],
        regions: vec![],
    }
}

#[test]
fn two_ends_establish() {
    let spec = spec("kv", "r1", 3);
    let mut dialer =
        Handshake::new(Arc::clone(&spec), node(0), Side::Dialer { expected: node(2) }, "to 2", fresh_nonce());
    let mut listener = Handshake::new(spec, node(2), Side::Listener, "127.0.0.1:5000", fresh_nonce());
    assert_eq!(listener.who(), "127.0.0.1:5000");
    deliver(&mut dialer, &mut listener).unwrap();
    deliver(&mut listener, &mut dialer).unwrap();
    assert_eq!(dialer.poll_event(), Some(HandshakeEvent::Identified(node(2))));
    assert_eq!(listener.poll_event(), Some(HandshakeEvent::Identified(node(0))));
    assert_eq!(listener.who(), "node 0");
    dialer.send_offer(offer("from 0"));
    listener.send_offer(offer("from 2"));
    deliver(&mut dialer, &mut listener).unwrap();
    deliver(&mut listener, &mut dialer).unwrap();
    assert_eq!(dialer.poll_event(), Some(HandshakeEvent::Offer(offer("from 2"))));
    assert_eq!(listener.poll_event(), Some(HandshakeEvent::Offer(offer("from 0"))));
    dialer.confirm_connected();
    deliver(&mut dialer, &mut listener).unwrap();
    assert_eq!(listener.poll_event(), None);
    listener.confirm_connected();
    assert_eq!(listener.poll_event(), Some(HandshakeEvent::Established));
    // A control message right behind the Ready stays buffered for the channel.
    let mut behind = Vec::new();
    Message::Ready.encode(&mut behind);
    let mut bytes = listener.outgoing().to_vec();
    bytes.extend_from_slice(&behind);
    dialer.handle_bytes(&bytes).unwrap();
    assert_eq!(dialer.poll_event(), Some(HandshakeEvent::Established));
    let mut channel = dialer.into_channel();
    assert_eq!(channel.next_message().unwrap(), Some(Message::Ready));
}

/// What a listener (node 1 of `ours`) says to a hello from node `claimed` of `theirs`:
/// its error, and the message that follows its own hello on the wire.
fn listener_refusal(ours: Arc<ClusterSpec>, theirs: Arc<ClusterSpec>, claimed: u16) -> (Error, Message) {
    let mut listener = Handshake::new(ours, node(1), Side::Listener, "127.0.0.1:5000", fresh_nonce());
    let hello = Message::Hello(Hello {
        cluster: theirs.cluster.clone(),
        run: theirs.run.clone(),
        node: claimed,
        spec_digest: theirs.digest(),
        nonce: fresh_nonce(),
        keyed: theirs.key.is_some(),
        incarnation: 0,
        entry: Entry::Start,
        addr: None,
    });
    let error = listener.handle_bytes(&hello.to_frame()).unwrap_err();
    assert!(listener.has_failed());
    let outgoing = listener.outgoing();
    let (own_hello, len) = Message::decode(outgoing).unwrap().unwrap();
    assert!(matches!(own_hello, Message::Hello(_)));
    (error, Message::decode_exact(&outgoing[len..]).unwrap())
}

#[test]
fn strangers_are_refused_with_the_reason() {
    let ours = spec("kv", "run-b", 3);
    let cases = [
        (spec("other", "run-b", 3), 0, "peer 0 belongs to cluster \"other\", we are in cluster \"kv\""),
        (spec("kv", "run-a", 3), 0, "peer 0 belongs to run \"run-a\", we are in run \"run-b\""),
        (spec("kv", "run-b", 4), 0, "peer 0 has another description of the cluster"),
        (Arc::clone(&ours), 1, "duplicate node id 1: the peer claims our own id"),
        (Arc::clone(&ours), 9, "unknown node id 9: the cluster has nodes 0, 1, 2"),
        (Arc::clone(&ours), 5000, "unknown node id 5000"),
        (Arc::clone(&ours), 2, "node 2 dialed node 1, but lower ids dial higher ones"),
    ];
    for (theirs, claimed, expected) in cases {
        let (error, reject) = listener_refusal(Arc::clone(&ours), theirs, claimed);
        assert!(error.to_string().contains(expected), "{error} lacks {expected:?}");
        let Message::Reject(reject) = reject else { panic!("expected a reject, got {reject:?}") };
        assert!(reject.reason.contains(expected), "{reject:?}");
    }
}

#[test]
fn the_dialer_checks_who_answers() {
    let spec = spec("kv", "r", 3);
    let mut dialer =
        Handshake::new(Arc::clone(&spec), node(0), Side::Dialer { expected: node(2) }, "to 2", fresh_nonce());
    let mut wrong = Handshake::new(spec, node(1), Side::Listener, "x", fresh_nonce());
    let error = deliver(&mut wrong, &mut dialer).unwrap_err().to_string();
    assert!(error.contains("we dialed node 2, but node 1 answered"), "{error}");
}

#[test]
fn garbage_and_cut_frames_are_refused() {
    let spec = spec("kv", "r", 2);
    let mut listener =
        Handshake::new(Arc::clone(&spec), node(1), Side::Listener, "127.0.0.1:9", fresh_nonce());
    let error = listener.handle_bytes(b"GET / HTTP/1.1\r\n\r\n").unwrap_err().to_string();
    assert!(error.contains("malformed frame (magic)"), "{error}");
    // Further input is ignored once failed.
    listener.handle_bytes(b"more").unwrap();

    let mut listener =
        Handshake::new(Arc::clone(&spec), node(1), Side::Listener, "127.0.0.1:9", fresh_nonce());
    listener.handle_bytes(&MAGIC).unwrap();
    let error = listener.handle_end_of_stream().to_string();
    assert!(error.contains("truncated frame: 4 of 15"), "{error}");

    let mut listener = Handshake::new(spec, node(1), Side::Listener, "127.0.0.1:9", fresh_nonce());
    let error = listener.handle_end_of_stream().to_string();
    assert!(error.contains("127.0.0.1:9") && error.contains("before saying who it is"), "{error}");
}

#[test]
fn out_of_order_messages_are_protocol_errors() {
    let spec = spec("kv", "r", 2);
    let mut listener = Handshake::new(Arc::clone(&spec), node(1), Side::Listener, "x", fresh_nonce());
    let error = listener.handle_bytes(&Message::Offer(offer("early")).to_frame()).unwrap_err().to_string();
    assert!(error.contains("offer before its hello"), "{error}");

    let mut listener = Handshake::new(Arc::clone(&spec), node(1), Side::Listener, "x", fresh_nonce());
    let mut dialer = Handshake::new(spec, node(0), Side::Dialer { expected: node(1) }, "y", fresh_nonce());
    deliver(&mut dialer, &mut listener).unwrap();
    let error = listener.handle_bytes(&Message::Ready.to_frame()).unwrap_err().to_string();
    assert!(error.contains("node 0") && error.contains("ready before the offers"), "{error}");
}
