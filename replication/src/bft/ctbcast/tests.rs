//! Scripted scenarios: one broadcaster (node 0), receivers 1 and 2, every action carried by
//! hand so each test shows one rule of the protocol.

use ed25519_dalek::SigningKey;
use usec_qp_pool::NodeId;

use super::*;
use crate::bft::ctbcast::signature::{message_hash, sign};

fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

fn key(id: u16) -> SigningKey {
    SigningKey::from_bytes(&[id as u8 + 1; 32])
}

fn keyring() -> Keyring {
    Keyring::new((0..4).map(|id| (node(id), key(id).verifying_key())))
}

fn config() -> CtbConfig {
    CtbConfig { tail: 4, fast_path_timeout_ns: 1_000, ..CtbConfig::default() }
}

struct Group {
    broadcaster: Broadcaster,
    receivers: Vec<Receiver>,
}

impl Group {
    fn new(config: CtbConfig) -> Group {
        let receivers = config
            .receivers
            .iter()
            .map(|&me| Receiver::new(config.clone(), me, keyring()).unwrap())
            .collect();
        Group { broadcaster: Broadcaster::new(config, key(0)).unwrap(), receivers }
    }

    fn receiver(&mut self, id: u16) -> &mut Receiver {
        &mut self.receivers[id as usize - 1]
    }

    /// The broadcaster's sends, as `(to, bytes)`.
    fn broadcaster_sends(&mut self) -> Vec<(NodeId, Vec<u8>)> {
        std::iter::from_fn(|| self.broadcaster.poll_action())
            .map(|action| match action {
                Action::Send { to, bytes } => (to, bytes),
                other => panic!("a broadcaster only sends: {other:?}"),
            })
            .collect()
    }

    fn actions(&mut self, id: u16) -> Vec<Action> {
        std::iter::from_fn(|| self.receiver(id).poll_action()).collect()
    }

    fn events(&mut self, id: u16) -> Vec<Event> {
        std::iter::from_fn(|| self.receiver(id).poll_event()).collect()
    }
}

fn sends(actions: &[Action]) -> Vec<(NodeId, Vec<u8>)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { to, bytes } => Some((*to, bytes.clone())),
            _ => None,
        })
        .collect()
}

fn delivered(index: u64, message: &[u8], path: DeliveryPath) -> Event {
    Event::Delivered { index, message: message.to_vec(), path }
}

#[test]
fn all_echoes_matching_deliver_on_the_fast_path_without_signatures_or_registers() {
    let mut group = Group::new(CtbConfig { sign_ahead: false, ..config() });
    let index = group.broadcaster.broadcast(b"prepare 1").unwrap();
    for (to, bytes) in group.broadcaster_sends() {
        group.receiver(to.get()).handle_entry(0, node(0), &bytes).unwrap();
    }
    let (echo_1, echo_2) = (group.actions(1), group.actions(2));
    assert_eq!(sends(&echo_1).len(), 1, "one echo, to the other receiver");
    for (to, bytes) in sends(&echo_1) {
        group.receiver(to.get()).handle_entry(10, node(1), &bytes).unwrap();
    }
    for (to, bytes) in sends(&echo_2) {
        group.receiver(to.get()).handle_entry(10, node(2), &bytes).unwrap();
    }
    for id in [1, 2] {
        assert_eq!(group.events(id), [delivered(index, b"prepare 1", DeliveryPath::Fast)]);
        assert_eq!(group.actions(id), [], "no register work on the fast path");
        assert_eq!(group.receiver(id).stats().signatures_checked, 0);
    }
    assert_eq!(group.broadcaster.stats().signatures_made, 0);
}

#[test]
fn a_signature_signed_ahead_that_comes_after_the_fast_path_is_no_fault() {
    let mut group = Group::new(config()); // sign-ahead on
    let index = group.broadcaster.broadcast(b"prepare 1").unwrap();
    for (to, bytes) in group.broadcaster_sends() {
        group.receiver(to.get()).handle_entry(0, node(0), &bytes).unwrap();
    }
    for id in [1, 2] {
        for (to, bytes) in sends(&group.actions(id)) {
            group.receiver(to.get()).handle_entry(10, node(id), &bytes).unwrap();
        }
    }
    // The fast path is done before the broadcaster had time to sign.
    for id in [1, 2] {
        assert_eq!(group.events(id), [delivered(index, b"prepare 1", DeliveryPath::Fast)]);
    }
    group.broadcaster.tick();
    let signatures = group.broadcaster_sends();
    assert_eq!(signatures.len(), 2, "the signature goes to both receivers");
    for (to, bytes) in signatures {
        group.receiver(to.get()).handle_entry(20, node(0), &bytes).unwrap();
    }
    for id in [1, 2] {
        let stats = group.receiver(id).stats().clone();
        assert_eq!((stats.late_signatures, stats.rejected_total()), (1, 0), "{stats:?}");
        assert_eq!(group.actions(id), []);
    }
}

#[test]
fn long_messages_are_echoed_as_hashes_and_still_match() {
    let mut group = Group::new(CtbConfig { echo_copy_below_bytes: 16, ..config() });
    let message = vec![7u8; 100];
    group.broadcaster.broadcast(&message).unwrap();
    for (to, bytes) in group.broadcaster_sends() {
        group.receiver(to.get()).handle_entry(0, node(0), &bytes).unwrap();
    }
    let (_, echo) = sends(&group.actions(1)).remove(0);
    assert!(
        matches!(Entry::decode(&echo).unwrap().body, Body::EchoHash(hash) if hash == message_hash(&message))
    );
    group.receiver(2).handle_entry(5, node(1), &echo).unwrap();
    assert_eq!(group.events(2), [delivered(0, &message, DeliveryPath::Fast)]);
}

/// Carries receiver `id`'s slow paths (every register write it asked for) to the end with
/// a register model where every other register reads as `others`; returns the reads.
fn finish_slow_path(group: &mut Group, id: u16, others: RegisterReadResult<'_>) -> Vec<Action> {
    let actions = group.actions(id);
    let mut all_reads = Vec::new();
    for action in &actions {
        let Action::RegisterWrite { index, slot, incarnation, value } = *action else { continue };
        assert_eq!((slot, incarnation), (index % 4, index / 4 + 1));
        let written = SignedHash::from_register_value(&value).unwrap();
        assert!(keyring().verify(node(0), index, &written.hash, &written.signature));
        group.receiver(id).handle_register_written(index);
        let reads = group.actions(id);
        for read in &reads {
            let Action::RegisterRead { index, owner, slot: read_slot } = read else { panic!("{read:?}") };
            assert_eq!(*read_slot, slot);
            group.receiver(id).handle_register_read(*index, *owner, others);
        }
        all_reads.extend(reads);
    }
    assert!(!all_reads.is_empty(), "no register write in {actions:?}");
    all_reads
}

#[test]
fn a_silent_receiver_sends_the_others_down_the_slow_path_on_their_own_timeout() {
    let mut group = Group::new(config());
    group.broadcaster.broadcast(b"m").unwrap();
    group.broadcaster.tick(); // sign ahead, after the message's sends
    for (to, bytes) in group.broadcaster_sends() {
        if to == node(1) {
            group.receiver(1).handle_entry(0, node(0), &bytes).unwrap();
        }
    }
    group.actions(1); // the echo to the silent receiver 2
    assert_eq!(group.receiver(1).poll_timeout(), Some(1_000));
    group.receiver(1).tick(999);
    assert_eq!(group.actions(1), [], "the fast path still has time");
    group.receiver(1).tick(1_000);
    let reads = finish_slow_path(&mut group, 1, RegisterReadResult::Value(None));
    assert_eq!(reads, [Action::RegisterRead { index: 0, owner: node(2), slot: 0 }]);
    assert_eq!(group.events(1), [delivered(0, b"m", DeliveryPath::Slow)]);
    assert_eq!(group.receiver(1).stats().slow_paths, 1);
}

#[test]
fn without_sign_ahead_the_receiver_asks_and_the_broadcaster_signs_once() {
    let mut group = Group::new(CtbConfig { sign_ahead: false, ..config() });
    group.broadcaster.broadcast(b"m").unwrap();
    assert!(!group.broadcaster.has_deferred_work());
    let (_, message) = group.broadcaster_sends().remove(0);
    group.receiver(1).handle_entry(0, node(0), &message).unwrap();
    group.actions(1);
    group.receiver(1).tick(1_000);
    let requests = sends(&group.actions(1));
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, node(0));
    // Asked twice (a retry after another timeout): one signature made.
    group.receiver(1).tick(2_000);
    let again = sends(&group.actions(1));
    for (_, request) in requests.iter().chain(&again) {
        group.broadcaster.handle_entry(node(1), request).unwrap();
    }
    assert_eq!(group.broadcaster.stats().signatures_made, 1);
    let answers = group.broadcaster_sends();
    assert_eq!(answers.len(), 2);
    group.receiver(1).handle_entry(2_100, node(0), &answers[0].1).unwrap();
    assert_eq!(
        group.receiver(1).handle_entry(2_100, node(0), &answers[1].1),
        Err(Reject::Duplicate { kind: "signature", index: 0 })
    );
    finish_slow_path(&mut group, 1, RegisterReadResult::Value(None));
    assert_eq!(group.events(1), [delivered(0, b"m", DeliveryPath::Slow)]);
}

#[test]
fn verified_ahead_the_slow_path_goes_straight_to_the_registers() {
    let mut group = Group::new(CtbConfig { verify_ahead: true, ..config() });
    group.broadcaster.broadcast(b"m").unwrap();
    group.broadcaster.tick();
    for (to, bytes) in group.broadcaster_sends() {
        if to == node(1) {
            group.receiver(1).handle_entry(0, node(0), &bytes).unwrap();
        }
    }
    group.actions(1);
    assert!(group.receiver(1).has_deferred_work());
    group.receiver(1).tick(10); // idle: verifies
    assert!(!group.receiver(1).has_deferred_work());
    assert_eq!(group.receiver(1).stats().signatures_checked, 1);
    group.receiver(1).tick(1_000);
    finish_slow_path(&mut group, 1, RegisterReadResult::Value(None));
    assert_eq!(group.events(1), [delivered(0, b"m", DeliveryPath::Slow)]);
    assert_eq!(group.receiver(1).stats().signatures_checked, 1, "not verified twice");
}

#[test]
fn a_disagreeing_echo_starts_the_slow_path_without_waiting() {
    let mut group = Group::new(config());
    group.broadcaster.broadcast(b"m").unwrap();
    group.broadcaster.tick();
    for (to, bytes) in group.broadcaster_sends() {
        if to == node(1) {
            group.receiver(1).handle_entry(0, node(0), &bytes).unwrap();
        }
    }
    group.actions(1);
    let lie = Entry { index: 0, broadcaster: 0, sender: 2, body: Body::EchoCopy(b"not m") }.encode();
    group.receiver(1).handle_entry(5, node(2), &lie).unwrap();
    assert!(group.actions(1).iter().any(|action| matches!(action, Action::RegisterWrite { .. })));
}

fn signed(index: u64, message: &[u8]) -> SignedHash {
    let hash = message_hash(message);
    SignedHash { hash, signature: sign(&key(0), node(0), index, &hash) }
}

#[test]
fn a_conflicting_signed_register_proves_equivocation_and_blocks_delivery() {
    let mut group = Group::new(config());
    // A Byzantine broadcaster sends "a" to receiver 1, signed.
    let entry = |body| Entry { index: 0, broadcaster: 0, sender: 0, body }.encode();
    group.receiver(1).handle_entry(0, node(0), &entry(Body::Message(b"a"))).unwrap();
    group.receiver(1).handle_entry(0, node(0), &entry(Body::Signature(signed(0, b"a").signature))).unwrap();
    group.receiver(1).tick(1_000);
    // Receiver 2 holds "b", signed too, in its register.
    let theirs = signed(0, b"b").to_register_value();
    finish_slow_path(&mut group, 1, RegisterReadResult::Value(Some((1, &theirs))));
    let events = group.events(1);
    let [Event::Equivocation(proof), Event::Abandoned { index: 0, reason: AbandonReason::Equivocation }] =
        events.as_slice()
    else {
        panic!("{events:?}");
    };
    assert!(proof.verify(&keyring()));
    assert_eq!(proof.second, signed(0, b"b"));
}

#[test]
fn registers_that_prove_nothing_count_as_checked() {
    let mut group = Group::new(config());
    for index in 0..6 {
        group.broadcaster.broadcast(format!("m{index}").as_bytes()).unwrap();
    }
    group.broadcaster.tick();
    for (to, bytes) in group.broadcaster_sends() {
        if to == node(1) {
            // The signatures of 0 and 1 come after they left the tail: refused as stale.
            let _ = group.receiver(1).handle_entry(0, node(0), &bytes);
        }
    }
    group.actions(1);
    group.events(1); // 0 and 1 left the tail
    group.receiver(1).tick(1_000);
    // Index 5, slot 1, incarnation 2. What receiver 2's register may hold:
    let genuine_other_index = signed(1, b"m1").to_register_value(); // replayed from the lap before
    let forged = {
        let mut value = signed(5, b"x").to_register_value();
        value[40] ^= 1;
        value
    };
    let cases: [(&str, RegisterReadResult<'_>); 5] = [
        ("an older lap", RegisterReadResult::Value(Some((1, &[0xAB; 3])))),
        ("our own value", RegisterReadResult::Value(Some((2, &signed(5, b"m5").to_register_value())))),
        (
            "another index's genuine signature, replayed",
            RegisterReadResult::Value(Some((2, &genuine_other_index))),
        ),
        ("a forged signature", RegisterReadResult::Value(Some((2, &forged)))),
        ("garbage of the wrong length", RegisterReadResult::Value(Some((2, &[1; 10])))),
    ];
    let config = config();
    for (what, result) in cases {
        let verdict = slow_path::judge(&config, &keyring(), 5, &message_hash(b"m5"), result);
        assert!(
            matches!(verdict, slow_path::Verdict::Checked | slow_path::Verdict::Byzantine),
            "{what}: {verdict:?}"
        );
    }
    assert_eq!(
        slow_path::judge(&config, &keyring(), 5, &message_hash(b"m5"), RegisterReadResult::ByzantineOwner),
        slow_path::Verdict::Byzantine
    );
    // A newer lap with a garbage value is a Byzantine owner, not a reason to give up.
    let newer_garbage = RegisterReadResult::Value(Some((3, &[0; 96])));
    assert_eq!(
        slow_path::judge(&config, &keyring(), 5, &message_hash(b"m5"), newer_garbage),
        slow_path::Verdict::Byzantine
    );
    // A newer lap the broadcaster signed: the stream moved on.
    let newer = signed(9, b"m9").to_register_value();
    let moved_on = RegisterReadResult::Value(Some((3, &newer)));
    assert_eq!(
        slow_path::judge(&config, &keyring(), 5, &message_hash(b"m5"), moved_on),
        slow_path::Verdict::MovedOn
    );
    // And the receiver delivers through a garbage register.
    finish_slow_path(&mut group, 1, RegisterReadResult::Value(Some((2, &[0; 96]))));
    let events = group.events(1);
    assert!(events.contains(&delivered(5, b"m5", DeliveryPath::Slow)), "{events:?}");
    assert!(group.receiver(1).stats().byzantine_registers >= 1);
}

#[test]
fn messages_older_than_the_tail_are_refused_and_undelivered_ones_abandoned() {
    let mut group = Group::new(config());
    for index in 0..7 {
        group.broadcaster.broadcast(format!("m{index}").as_bytes()).unwrap();
    }
    let to_1: Vec<_> = group.broadcaster_sends().into_iter().filter(|(to, _)| *to == node(1)).collect();
    // Receiver 1 sees 0, then 6: 0 (and the others it never saw) fall out of the tail.
    group.receiver(1).handle_entry(0, node(0), &to_1[0].1).unwrap();
    group.receiver(1).handle_entry(0, node(0), &to_1[6].1).unwrap();
    let events = group.events(1);
    assert_eq!(events, [Event::Abandoned { index: 0, reason: AbandonReason::OutOfTail }]);
    assert_eq!(
        group.receiver(1).handle_entry(0, node(0), &to_1[2].1),
        Err(Reject::Stale { index: 2, oldest_kept: 3 })
    );
    group.receiver(1).handle_entry(0, node(0), &to_1[3].1).unwrap();
}

#[test]
fn every_malformed_input_is_refused_with_its_reason_and_counted() {
    let mut group = Group::new(config());
    group.broadcaster.broadcast(b"m").unwrap();
    let (_, good) = group.broadcaster_sends().remove(0);
    let entry = |index, broadcaster, sender, body| Entry { index, broadcaster, sender, body }.encode();
    let receiver = group.receiver(1);
    receiver.handle_entry(0, node(0), &good).unwrap();
    let huge = vec![0; (64 << 10) + 1];
    let mut torn = good.clone();
    *torn.last_mut().unwrap() ^= 0xFF;
    let cases: Vec<(NodeId, Vec<u8>, Reject)> = vec![
        (node(0), vec![0xAA; 7], Reject::Truncated { len: 7, needed: 32 }),
        (
            node(0),
            good[..good.len() - 1].to_vec(),
            Reject::Truncated { len: good.len() - 1, needed: good.len() },
        ),
        (node(0), torn, Reject::Checksum),
        (
            node(0),
            entry(1, 3, 0, Body::Message(b"x")),
            Reject::WrongBroadcaster { expected: node(0), found: 3 },
        ),
        (node(2), entry(1, 0, 0, Body::Message(b"x")), Reject::WrongSender { from: node(2), claimed: 0 }),
        (
            node(2),
            entry(1, 0, 2, Body::Message(b"x")),
            Reject::UnexpectedSender { from: node(2), kind: "message" },
        ),
        (
            node(0),
            entry(1, 0, 0, Body::EchoCopy(b"x")),
            Reject::UnexpectedSender { from: node(0), kind: "echo-copy" },
        ),
        (
            node(1),
            entry(1, 0, 1, Body::EchoCopy(b"x")),
            Reject::UnexpectedSender { from: node(1), kind: "echo-copy" },
        ),
        (
            node(3),
            entry(1, 0, 3, Body::EchoCopy(b"x")),
            Reject::UnexpectedSender { from: node(3), kind: "echo-copy" },
        ),
        (
            node(2),
            entry(1, 0, 2, Body::SignatureRequest),
            Reject::UnexpectedSender { from: node(2), kind: "signature-request" },
        ),
        (node(0), entry(u64::MAX, 0, 0, Body::Message(b"x")), Reject::IndexOutOfRange(u64::MAX)),
        (node(2), entry(8, 0, 2, Body::EchoCopy(b"x")), Reject::TooFarAhead { index: 8, newest_accepted: 7 }),
        (node(0), good.clone(), Reject::Duplicate { kind: "message", index: 0 }),
        (node(0), entry(0, 0, 0, Body::Message(b"other")), Reject::Conflicting { kind: "message", index: 0 }),
        (
            node(0),
            entry(1, 0, 0, Body::Message(&huge)),
            Reject::TooLarge { len: (64 << 10) + 1, max: 64 << 10 },
        ),
    ];
    let count = cases.len() as u64;
    for (from, bytes, reject) in cases {
        assert_eq!(receiver.handle_entry(1, from, &bytes), Err(reject));
    }
    assert_eq!(receiver.stats().rejected_total(), count);
    // A forged signature is refused when the slow path needs it, then asked for again.
    let forged = entry(0, 0, 0, Body::Signature([9; 64]));
    receiver.handle_entry(1, node(0), &forged).unwrap();
    receiver.tick(1_000);
    assert_eq!(receiver.stats().rejected.get("forged-signature"), Some(&1));
    let actions: Vec<_> = std::iter::from_fn(|| receiver.poll_action()).collect();
    let asked = sends(&actions)
        .into_iter()
        .any(|(to, bytes)| to == node(0) && Entry::decode(&bytes).unwrap().body == Body::SignatureRequest);
    assert!(asked, "{actions:?}");
    assert_eq!(receiver.poll_event(), None);
}

#[test]
fn the_broadcaster_refuses_what_is_not_a_signature_request_from_a_receiver_in_the_tail() {
    let mut group = Group::new(CtbConfig { sign_ahead: false, ..config() });
    for _ in 0..6 {
        group.broadcaster.broadcast(b"m").unwrap();
    }
    let request =
        |index, sender| Entry { index, broadcaster: 0, sender, body: Body::SignatureRequest }.encode();
    let broadcaster = &mut group.broadcaster;
    assert_eq!(
        broadcaster.handle_entry(node(1), &request(1, 1)),
        Err(Reject::Stale { index: 1, oldest_kept: 2 })
    );
    assert_eq!(
        broadcaster.handle_entry(node(1), &request(6, 1)),
        Err(Reject::TooFarAhead { index: 6, newest_accepted: 5 })
    );
    assert_eq!(
        broadcaster.handle_entry(node(3), &request(3, 3)),
        Err(Reject::UnexpectedSender { from: node(3), kind: "signature-request" })
    );
    assert_eq!(
        broadcaster.handle_entry(node(2), &request(3, 1)),
        Err(Reject::WrongSender { from: node(2), claimed: 1 })
    );
    assert_eq!(broadcaster.handle_entry(node(1), &[0; 3]), Err(Reject::Truncated { len: 3, needed: 32 }));
    assert_eq!(broadcaster.stats().signatures_made, 0);
    broadcaster.handle_entry(node(1), &request(5, 1)).unwrap();
    assert_eq!(broadcaster.stats().signatures_made, 1);
    assert_eq!(
        broadcaster.broadcast(&vec![0; (64 << 10) + 1]),
        Err(Reject::TooLarge { len: (64 << 10) + 1, max: 64 << 10 })
    );
}

#[test]
fn a_flood_of_new_indices_keeps_the_receivers_state_bounded() {
    let mut group = Group::new(config());
    let receiver = group.receiver(1);
    for index in 0..10_000u64 {
        let bytes = Entry { index: index * 3, broadcaster: 0, sender: 0, body: Body::Message(b"x") }.encode();
        receiver.handle_entry(0, node(0), &bytes).unwrap();
    }
    assert!(receiver.deadlines_len() <= 4 * 4 + 1);
    while receiver.poll_action().is_some() {}
}

#[test]
fn a_second_write_to_a_busy_register_slot_waits_for_the_first() {
    let mut group = Group::new(config());
    let to_1 = |group: &mut Group| -> Vec<Vec<u8>> {
        group.broadcaster.tick();
        group
            .broadcaster_sends()
            .into_iter()
            .filter(|(to, _)| *to == node(1))
            .map(|(_, bytes)| bytes)
            .collect()
    };
    // Message and signature of index 0; slow path; the write is in flight.
    group.broadcaster.broadcast(b"m0").unwrap();
    for bytes in to_1(&mut group) {
        group.receiver(1).handle_entry(0, node(0), &bytes).unwrap();
    }
    group.receiver(1).tick(1_000);
    let writes = |actions: Vec<Action>| {
        actions.into_iter().filter(|a| matches!(a, Action::RegisterWrite { .. })).count()
    };
    assert_eq!(writes(group.actions(1)), 1);
    // Index 4 (same slot) arrives: 0 leaves the tail, but its write is still landing.
    for index in 1..5 {
        group.broadcaster.broadcast(format!("m{index}").as_bytes()).unwrap();
    }
    let later = to_1(&mut group);
    group.receiver(1).handle_entry(1_000, node(0), &later[3]).unwrap();
    group.receiver(1).handle_entry(1_000, node(0), &later[7]).unwrap();
    group.receiver(1).tick(2_000);
    assert_eq!(writes(group.actions(1)), 0, "slot 0 is busy");
    group.receiver(1).handle_register_written(0);
    let actions = group.actions(1);
    assert!(
        actions.iter().any(|a| matches!(a, Action::RegisterWrite { index: 4, slot: 0, incarnation: 2, .. })),
        "{actions:?}"
    );
}

mod state_machine {
    //! Random input sequences against one receiver: whatever arrives, in whatever order,
    //! it never panics, never delivers an index twice, only delivers the first message the
    //! broadcaster's ring gave it for an index, and keeps its queues bounded.

    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// A well-formed entry from `from` (sender field honest or not).
        Entry { from: u16, honest_sender: bool, index: u64, kind: u8, payload: Vec<u8> },
        /// A valid signature from the broadcaster over `message` at `index`.
        Signed { index: u64, message: Vec<u8> },
        /// Raw bytes from `from`.
        Garbage { from: u16, bytes: Vec<u8> },
        /// Time passes.
        Advance(u64),
        /// The `n`th pending register write completes.
        Written(usize),
        /// The `n`th pending register read completes with `result`.
        Read { n: usize, result: u8, incarnation: u64, value: Vec<u8> },
    }

    fn op() -> impl Strategy<Value = Op> {
        // Mostly from a small alphabet, so echoes and signatures often match a message.
        let small = prop_oneof![
            3 => prop_oneof![Just(b"a".to_vec()), Just(b"b".to_vec()), Just(Vec::new())],
            1 => proptest::collection::vec(any::<u8>(), 0..6),
        ];
        let index = prop_oneof![8 => 0..12u64, 1 => any::<u64>()];
        prop_oneof![
            6 => (0..4u16, proptest::bool::weighted(0.9), index.clone(), 1..6u8, small.clone())
                .prop_map(|(from, honest_sender, index, kind, payload)| Op::Entry { from, honest_sender, index, kind, payload }),
            2 => (0..12u64, small.clone()).prop_map(|(index, message)| Op::Signed { index, message }),
            1 => (0..4u16, proptest::collection::vec(any::<u8>(), 0..80)).prop_map(|(from, bytes)| Op::Garbage { from, bytes }),
            2 => (0..3_000u64).prop_map(Op::Advance),
            2 => (0..4usize).prop_map(Op::Written),
            2 => (0..4usize, 0..5u8, 0..6u64, proptest::collection::vec(any::<u8>(), 96..=96))
                .prop_map(|(n, result, incarnation, value)| Op::Read { n, result, incarnation, value }),
        ]
    }

    fn body(kind: u8, payload: &[u8]) -> Body<'_> {
        let hash = message_hash(payload);
        match kind {
            1 => Body::Message(payload),
            2 => Body::EchoCopy(payload),
            3 => Body::EchoHash(hash),
            4 => Body::Signature([payload.first().copied().unwrap_or(0); 64]),
            _ => Body::SignatureRequest,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
        #[test]
        fn any_input_sequence_keeps_the_receiver_sound(
            ops in proptest::collection::vec(op(), 1..120), verify_ahead in any::<bool>(),
        ) {
            let config = CtbConfig { verify_ahead, ..config() };
            let mut receiver = Receiver::new(config.clone(), node(1), keyring()).unwrap();
            let mut now = 0;
            let mut first_message: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let mut delivered: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
            let (mut writes, mut reads) = (Vec::new(), Vec::new());
            for op in ops {
                match op {
                    Op::Entry { from, honest_sender, index, kind, payload } => {
                        let sender = if honest_sender { from } else { (from + 1) % 4 };
                        let bytes = Entry { index, broadcaster: 0, sender, body: body(kind, &payload) }.encode();
                        let accepted = receiver.handle_entry(now, node(from), &bytes).is_ok();
                        if accepted && kind == 1 {
                            prop_assert!(first_message.insert(index, payload).is_none(), "a second message accepted");
                        }
                    }
                    Op::Signed { index, message } => {
                        let bytes = Entry { index, broadcaster: 0, sender: 0, body: Body::Signature(signed(index, &message).signature) }.encode();
                        let _ = receiver.handle_entry(now, node(0), &bytes);
                    }
                    Op::Garbage { from, bytes } => prop_assert!(receiver.handle_entry(now, node(from), &bytes).is_err()),
                    Op::Advance(ns) => {
                        now += ns;
                        receiver.tick(now);
                    }
                    Op::Written(n) if !writes.is_empty() => {
                        let index: u64 = writes.remove(n % writes.len());
                        receiver.handle_register_written(index);
                    }
                    Op::Read { n, result, incarnation, value } if !reads.is_empty() => {
                        let (index, owner): (u64, NodeId) = reads.remove(n % reads.len());
                        let genuine = signed(index, b"other").to_register_value();
                        let result = match result {
                            0 => RegisterReadResult::Value(None),
                            1 => RegisterReadResult::ByzantineOwner,
                            2 => RegisterReadResult::Value(Some((index / 4 + 1, &genuine))),
                            _ => RegisterReadResult::Value(Some((incarnation, &value))),
                        };
                        receiver.handle_register_read(index, owner, result);
                    }
                    Op::Written(_) | Op::Read { .. } => {}
                }
                while let Some(action) = receiver.poll_action() {
                    match action {
                        Action::RegisterWrite { index, slot, incarnation, .. } => {
                            prop_assert_eq!((slot, incarnation), (index % 4, index / 4 + 1));
                            prop_assert!(!writes.iter().any(|&w| w % 4 == slot), "two writes in flight on slot {}", slot);
                            writes.push(index);
                        }
                        Action::RegisterRead { index, owner, .. } => reads.push((index, owner)),
                        Action::Send { .. } => {}
                    }
                }
                while let Some(event) = receiver.poll_event() {
                    match event {
                        Event::Delivered { index, message, .. } => {
                            prop_assert_eq!(Some(&message), first_message.get(&index), "delivered what the ring did not give first");
                            prop_assert!(delivered.insert(index, message).is_none(), "index {} delivered twice", index);
                        }
                        Event::Abandoned { index, .. } => prop_assert!(!delivered.contains_key(&index)),
                        Event::Equivocation(proof) => prop_assert!(proof.verify(&keyring())),
                    }
                }
                prop_assert!(receiver.deadlines_len() <= 4 * 4 + 1);
            }
        }
    }
}

/// Registers that cannot be read from a majority of memory nodes are neither a value nor a
/// verdict on their owner: the read is asked again after a timeout, and delivery waits.
#[test]
fn an_unavailable_register_is_read_again_after_a_timeout_and_never_counted_as_checked() {
    let mut group = Group::new(config());
    group.broadcaster.broadcast(b"m").unwrap();
    group.broadcaster.tick();
    for (to, bytes) in group.broadcaster_sends() {
        if to == node(1) {
            group.receiver(1).handle_entry(0, node(0), &bytes).unwrap();
        }
    }
    group.actions(1);
    group.receiver(1).tick(1_000);
    let reads = finish_slow_path(&mut group, 1, RegisterReadResult::Unavailable);
    assert_eq!(reads, [Action::RegisterRead { index: 0, owner: node(2), slot: 0 }]);
    assert_eq!(group.events(1), [], "delivered without having read receiver 2's register");
    assert_eq!(group.receiver(1).stats().registers_unavailable, 1);
    assert_eq!(group.receiver(1).poll_timeout(), Some(2_000));
    group.receiver(1).tick(1_999);
    assert_eq!(group.actions(1), []);
    group.receiver(1).tick(2_000);
    assert_eq!(group.actions(1), reads, "the read is asked again");
    group.receiver(1).handle_register_read(0, node(2), RegisterReadResult::Value(None));
    assert_eq!(group.events(1), [delivered(0, b"m", DeliveryPath::Slow)]);
}
