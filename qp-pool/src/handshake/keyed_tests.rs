//! Scripted handshakes with a cluster key, and what an attacker who knows the cluster and
//! run names but not the key can try: no key, a wrong key, frames recorded on another
//! connection or run and replayed, frames sent back to their sender.

use std::sync::Arc;

use super::tests::{deliver, fresh_nonce, node, offer, spec};
use super::*;
use crate::cluster_key::ClusterKey;
use crate::wire::{parse_frame, FrameKind, Reconnect};

fn key(byte: u8) -> ClusterKey {
    ClusterKey::from_bytes([byte; 32])
}

fn keyed(cluster: &str, run: &str, nodes: u16, key: ClusterKey) -> Arc<ClusterSpec> {
    Arc::new((*spec(cluster, run, nodes)).clone().with_key(key))
}

fn dialer(spec: &Arc<ClusterSpec>, me: u16, expected: u16) -> Handshake {
    let side = Side::Dialer { expected: node(expected) };
    Handshake::new(Arc::clone(spec), node(me), side, "to the listener", fresh_nonce())
}

fn listener(spec: &Arc<ClusterSpec>, me: u16) -> Handshake {
    Handshake::new(Arc::clone(spec), node(me), Side::Listener, "127.0.0.1:5000", fresh_nonce())
}

/// The kinds of the frames in `bytes` (tags unchecked), which must be whole frames.
fn kinds(mut bytes: &[u8]) -> Vec<FrameKind> {
    let mut kinds = Vec::new();
    while !bytes.is_empty() {
        let frame = parse_frame(bytes).unwrap().expect("whole frames");
        kinds.push(frame.kind);
        bytes = &bytes[frame.len..];
    }
    kinds
}

/// Everything `from` queued, taken off it.
fn take(from: &mut Handshake) -> Vec<u8> {
    let bytes = from.outgoing().to_vec();
    from.written(bytes.len());
    bytes
}

fn events(handshake: &mut Handshake) -> Vec<HandshakeEvent> {
    std::iter::from_fn(|| handshake.poll_event()).collect()
}

/// Runs a keyed handshake between node 0 (dialer) and node 2 (listener) to the end;
/// returns both, established, and every byte each sent.
fn establish(spec: &Arc<ClusterSpec>) -> (Handshake, Handshake, Vec<u8>, Vec<u8>) {
    let (mut dialer, mut listener) = (dialer(spec, 0, 2), listener(spec, 2));
    let (mut from_dialer, mut from_listener) = (Vec::new(), Vec::new());
    let mut offered = [false, false];
    while !(dialer.is_established() && listener.is_established()) {
        let bytes = take(&mut dialer);
        listener.handle_bytes(&bytes).unwrap();
        from_dialer.extend(bytes);
        let bytes = take(&mut listener);
        dialer.handle_bytes(&bytes).unwrap();
        from_listener.extend(bytes);
        for (index, handshake) in [&mut dialer, &mut listener].into_iter().enumerate() {
            for event in events(handshake) {
                match event {
                    HandshakeEvent::Identified(_) => {
                        handshake.send_offer(offer(&format!("from {index}")));
                        offered[index] = true;
                    }
                    HandshakeEvent::Offer(_) => handshake.confirm_connected(),
                    HandshakeEvent::Established => {}
                    HandshakeEvent::Members(_) => panic!("members sent to a node that does not join"),
                }
            }
        }
    }
    assert_eq!(offered, [true, true]);
    (dialer, listener, from_dialer, from_listener)
}

#[test]
fn keyed_ends_identify_each_other_only_after_the_proofs() {
    let spec = keyed("kv", "r1", 3, key(1));
    let (mut dialer, mut listener) = (dialer(&spec, 0, 2), listener(&spec, 2));
    deliver(&mut dialer, &mut listener).unwrap();
    // The hello passed, but no proof yet: the listener says who it thinks it is and waits.
    assert_eq!(events(&mut listener), vec![]);
    assert_eq!(listener.who(), "127.0.0.1:5000 (claiming node 0)");
    assert_eq!(kinds(listener.outgoing()), vec![FrameKind::Hello, FrameKind::Proof]);
    deliver(&mut listener, &mut dialer).unwrap();
    assert_eq!(events(&mut dialer), vec![HandshakeEvent::Identified(node(2))]);
    deliver(&mut dialer, &mut listener).unwrap();
    assert_eq!(events(&mut listener), vec![HandshakeEvent::Identified(node(0))]);
    assert_eq!(listener.who(), "node 0");
}

#[test]
fn keyed_control_frames_stay_authenticated_after_the_handshake() {
    let spec = keyed("kv", "r1", 3, key(1));
    let (dialer, listener, _, _) = establish(&spec);
    let (mut ours, mut theirs) = (dialer.into_channel(), listener.into_channel());
    assert!(ours.is_authenticated() && theirs.is_authenticated());
    let request = Message::ReconnectRequest(Reconnect { epoch: 3, roles: offer("fresh").roles });
    ours.send(&request);
    let bytes = ours.outgoing().to_vec();
    ours.written(bytes.len());
    theirs.received(&bytes);
    assert_eq!(theirs.next_message().unwrap(), Some(request.clone()));
    // The same frame again (replayed by someone on the path) is refused.
    theirs.received(&bytes);
    let error = theirs.next_message().unwrap_err().to_string();
    assert!(error.contains("does not verify"), "{error}");
    // And an untagged one.
    let mut fresh = listener_channel(&spec);
    fresh.received(&request.to_frame());
    assert!(fresh.next_message().unwrap_err().to_string().contains("untagged ReconnectRequest frame"));
}

/// The channel of a listener established with a new dialer.
fn listener_channel(spec: &Arc<ClusterSpec>) -> Channel {
    establish(spec).1.into_channel()
}

/// What the listener (node 2 of `ours`) does with `bytes`: its error, and the kinds of
/// every frame it sent. It must never have identified anyone nor offered anything.
fn listener_refuses(ours: &Arc<ClusterSpec>, bytes: &[u8]) -> (Error, Vec<FrameKind>) {
    let mut listener = listener(ours, 2);
    let error = listener.handle_bytes(bytes).unwrap_err();
    assert!(listener.has_failed());
    assert_eq!(events(&mut listener), vec![], "identified an impostor");
    let sent = kinds(&take(&mut listener));
    assert!(!sent.contains(&FrameKind::Offer), "offered to an impostor: {sent:?}");
    assert_eq!(sent.last(), Some(&FrameKind::Reject), "{sent:?}");
    (error, sent)
}

#[test]
fn an_impostor_with_a_wrong_key_is_refused_before_any_offer() {
    let ours = keyed("kv", "r1", 3, key(1));
    let theirs = keyed("kv", "r1", 3, key(2));
    let mut impostor = dialer(&theirs, 0, 2);
    let mut listener = listener(&ours, 2);
    // The impostor gets the listener's hello and proof, and answers with its own proof.
    deliver(&mut impostor, &mut listener).unwrap();
    let from_listener = take(&mut listener);
    assert_eq!(kinds(&from_listener), vec![FrameKind::Hello, FrameKind::Proof]);
    let error = impostor.handle_bytes(&from_listener).unwrap_err().to_string();
    assert!(error.contains("failed the cluster key check"), "the impostor sees the listener fail: {error}");
    let error = deliver(&mut impostor, &mut listener).unwrap_err();
    assert!(matches!(error, Error::Unauthenticated { .. }), "{error}");
    let text = error.to_string();
    assert!(
        text.starts_with(
            "127.0.0.1:5000 (claiming node 0) failed the cluster key check: the tag of Proof frame #0"
        ),
        "{text}"
    );
    assert_eq!(events(&mut listener), vec![]);
    assert_eq!(kinds(&take(&mut listener)), vec![FrameKind::Reject]);
}

#[test]
fn an_impostor_without_a_key_is_refused_at_its_hello() {
    let ours = keyed("kv", "r1", 3, key(1));
    let keyless = spec("kv", "r1", 3);
    let hello = take(&mut dialer(&keyless, 0, 2));
    let (error, sent) = listener_refuses(&ours, &hello);
    assert!(matches!(error, Error::Unauthenticated { .. }), "{error}");
    assert!(error.to_string().contains("it has no cluster key, and this cluster requires one"), "{error}");
    assert_eq!(sent, vec![FrameKind::Hello, FrameKind::Reject], "no proof for a keyless peer");

    // One that claims a key, then sends an untagged proof, or one with a made-up tag.
    let mut claims = dialer(&keyed("kv", "r1", 3, key(7)), 0, 2);
    let hello = take(&mut claims);
    let mut bytes = hello.clone();
    bytes.extend(Message::Proof.to_frame());
    let (error, _) = listener_refuses(&ours, &bytes);
    assert!(error.to_string().contains("an untagged Proof frame"), "{error}");
    let mut bytes = hello;
    crate::wire::encode_frame_with_tag(FrameKind::Proof, b"", Some(&[0xa5; 32]), &mut bytes);
    let (error, _) = listener_refuses(&ours, &bytes);
    assert!(error.to_string().contains("the tag of Proof frame #0 does not verify"), "{error}");
}

#[test]
fn a_keyed_peer_is_refused_by_a_keyless_node() {
    let keyless = spec("kv", "r1", 3);
    let hello = take(&mut dialer(&keyed("kv", "r1", 3, key(1)), 0, 2));
    let mut listener = listener(&keyless, 2);
    let error = listener.handle_bytes(&hello).unwrap_err().to_string();
    assert!(
        error.contains("failed the cluster key check: it has a cluster key, this node has none"),
        "{error}"
    );
}

#[test]
fn frames_recorded_on_another_connection_are_refused() {
    let spec = keyed("kv", "r1", 3, key(1));
    let (_, _, from_dialer, from_listener) = establish(&spec);
    // The dialer's whole side, replayed to a fresh listener: the hello passes, the proof
    // was made for the other listener's nonce.
    let (error, sent) = listener_refuses(&spec, &from_dialer);
    assert!(error.to_string().contains("the tag of Proof frame #0 does not verify"), "{error}");
    assert_eq!(sent, vec![FrameKind::Hello, FrameKind::Proof, FrameKind::Reject]);
    // The listener's side, replayed to a fresh dialer of node 2 (an impostor holding node
    // 2's address).
    let mut dialer = dialer(&spec, 0, 2);
    let error = dialer.handle_bytes(&from_listener).unwrap_err().to_string();
    assert!(error.contains("the tag of Proof frame #0 does not verify"), "{error}");
    assert_eq!(events(&mut dialer), vec![]);
    assert!(!kinds(&take(&mut dialer)).contains(&FrameKind::Offer));
}

#[test]
fn frames_recorded_in_another_run_are_refused_even_with_the_hello_rewritten() {
    let earlier = keyed("kv", "run-1", 3, key(1));
    let (_, _, from_dialer, _) = establish(&earlier);
    let now = keyed("kv", "run-2", 3, key(1));
    // As recorded: refused for its run.
    let (error, _) = listener_refuses(&now, &from_dialer);
    assert!(matches!(error, Error::WrongRun { .. }), "{error}");
    // With the hello rewritten to the new run (and description): the proof was made for
    // the old hello, so it fails.
    let hello = parse_frame(&from_dialer).unwrap().unwrap();
    let Message::Hello(mut rewritten) = Message::from_frame(&hello).unwrap() else { panic!("a hello first") };
    rewritten.run = now.run.clone();
    rewritten.spec_digest = now.digest();
    let mut bytes = Message::Hello(rewritten).to_frame();
    bytes.extend_from_slice(&from_dialer[hello.len..]);
    let (error, _) = listener_refuses(&now, &bytes);
    assert!(error.to_string().contains("the tag of Proof frame #0 does not verify"), "{error}");
}

#[test]
fn a_proof_sent_back_to_its_maker_is_refused() {
    let spec = keyed("kv", "r1", 3, key(1));
    // The attacker opens a connection claiming node 0 with a keyed hello of its own, and
    // gets the listener's hello and proof; it sends that proof back.
    let mut attacker = dialer(&keyed("kv", "r1", 3, key(9)), 0, 2);
    let mut listener = listener(&spec, 2);
    deliver(&mut attacker, &mut listener).unwrap();
    let from_listener = take(&mut listener);
    let hello_len = parse_frame(&from_listener).unwrap().unwrap().len;
    let error = listener.handle_bytes(&from_listener[hello_len..]).unwrap_err().to_string();
    assert!(error.contains("the tag of Proof frame #0 does not verify"), "{error}");
    assert_eq!(events(&mut listener), vec![]);
}

#[test]
fn an_offer_before_the_proof_is_refused() {
    let spec = keyed("kv", "r1", 3, key(1));
    let (mut dialer, mut listener) = (dialer(&spec, 0, 2), listener(&spec, 2));
    let mut bytes = take(&mut dialer);
    bytes.extend(Message::Offer(offer("early")).to_frame());
    let error = listener.handle_bytes(&bytes).unwrap_err().to_string();
    assert!(error.contains("untagged Offer frame"), "{error}");
    assert_eq!(events(&mut listener), vec![]);
}

mod forged {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::encode_frame_with_tag;

    /// A frame an attacker without the key could send: any kind, a body that is often a
    /// real message's, a tag or none.
    fn frame() -> impl Strategy<Value = (u8, Vec<u8>, Option<[u8; 32]>)> {
        let body = prop_oneof![
            Just(Vec::new()),
            Just(Message::Offer(offer("forged")).body()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ];
        (1u8..=10, body, proptest::option::of(any::<[u8; 32]>()))
    }

    proptest! {
        #[test]
        fn whatever_follows_a_keyed_hello_without_the_key_gets_no_offer(
            frames in proptest::collection::vec(frame(), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let ours = keyed("kv", "r1", 3, key(1));
            let mut bytes = take(&mut dialer(&keyed("kv", "r1", 3, key(2)), 0, 2));
            for (kind, body, tag) in &frames {
                let kind = FrameKind::from_code(*kind).expect("a known kind");
                encode_frame_with_tag(kind, body, tag.as_ref(), &mut bytes);
            }
            // Delivered whole, or in two pieces cut anywhere.
            let cut = cut.index(bytes.len() + 1);
            let mut listener = listener(&ours, 2);
            if listener.handle_bytes(&bytes[..cut]).is_ok() {
                let _ = listener.handle_bytes(&bytes[cut..]);
            }
            prop_assert_eq!(events(&mut listener), vec![]);
            let mut sent = take(&mut listener);
            let mut kinds = Vec::new();
            while let Some(frame) = parse_frame(&sent).unwrap() {
                kinds.push(frame.kind);
                sent.drain(..frame.len);
            }
            prop_assert!(!kinds.contains(&FrameKind::Offer), "{:?}", kinds);
        }
    }
}
