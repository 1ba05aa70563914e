//! Malformed input for every message type, and a scripted group driven by hand.

use std::collections::{BTreeMap, VecDeque};

use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use usec_qp_pool::NodeId;

use super::*;
use crate::bft::ctbcast::{self, Keyring, RegisterReadResult};
use crate::state_machine::{History, StateMachine as _};

fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

fn limits() -> Limits {
    ConsensusConfig::default().limits()
}

fn request(number: u64) -> Request {
    Request::signed(&SigningKey::from_bytes(&[9; 32]), ClientId(0), number, b"set x 1".to_vec())
}

fn stream_samples() -> Vec<StreamMessage> {
    let batch = vec![request(1), request(2)];
    vec![
        StreamMessage::Prepare { view: 3, slot: 7, batch: batch.clone() },
        StreamMessage::Promise { view: 3, slot: 7, batch: batch.clone() },
        StreamMessage::Commit {
            view: 3,
            slot: 7,
            batch,
            certificate: vec![(node(1), [5; 64]), (node(2), [6; 64])],
        },
        StreamMessage::Checkpoint { slot: 128, digest: [4; 32], signature: [3; 64] },
        StreamMessage::Seal { view: 4, low: 128 },
        StreamMessage::NewView { view: 4, low: 128, sealers: vec![node(0), node(1)] },
        StreamMessage::Recap(RecapPart {
            low: 128,
            sealed: 4,
            first: true,
            last: false,
            checkpoints: vec![(128, [4; 32], [3; 64])],
            promises: vec![(129, 3, [1; 32]), (129, 4, [2; 32])],
            commits: vec![(130, 4, [5; 32], vec![(node(1), [5; 64]), (node(2), [6; 64])])],
        }),
    ]
}

fn direct_samples() -> Vec<DirectMessage> {
    vec![
        DirectMessage::Request(request(1)),
        DirectMessage::Reply(Reply::signed(
            &SigningKey::from_bytes(&[1; 32]),
            node(1),
            ClientId(0),
            1,
            b"ok".to_vec(),
        )),
        DirectMessage::Share { view: 1, slot: 2, digest: [3; 32], signature: [4; 64] },
        DirectMessage::Fetch { executed: 12 },
        DirectMessage::RecapRequest,
        DirectMessage::Catchup {
            slot: 2,
            digest: [1; 32],
            state: [7; 32],
            certificate: vec![(node(0), [2; 64])],
            first: 1,
            batches: vec![vec![request(1)], vec![]],
        },
        DirectMessage::State {
            slot: 8,
            digest: [1; 32],
            history: [2; 32],
            certificate: vec![(node(0), [3; 64]), (node(1), [4; 64])],
            total: 100,
            offset: 40,
            chunk: vec![5; 60],
        },
    ]
}

#[test]
fn every_stream_message_round_trips_and_every_truncation_is_refused() {
    for message in stream_samples() {
        let bytes = message.encode();
        assert_eq!(StreamMessage::decode(&bytes, &limits()), Ok(message.clone()));
        for len in 0..bytes.len() {
            assert!(StreamMessage::decode(&bytes[..len], &limits()).is_err(), "{message:?} cut at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(StreamMessage::decode(&longer, &limits()), Err(Reject::Trailing(1)));
    }
}

#[test]
fn every_direct_message_round_trips_and_every_truncation_is_refused() {
    for message in direct_samples() {
        let bytes = message.encode();
        assert_eq!(DirectMessage::decode(&bytes, &limits()), Ok(message.clone()));
        for len in 0..bytes.len() {
            assert!(DirectMessage::decode(&bytes[..len], &limits()).is_err(), "{message:?} cut at {len}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(DirectMessage::decode(&longer, &limits()), Err(Reject::Trailing(1)));
    }
}

#[test]
fn unknown_kinds_and_huge_counts_are_refused_before_allocating() {
    assert_eq!(StreamMessage::decode(&[99], &limits()), Err(Reject::UnknownKind(99)));
    assert_eq!(DirectMessage::decode(&[1], &limits()), Err(Reject::UnknownKind(1)), "a stream kind");
    // A prepare claiming four billion requests: refused on the count, nothing allocated.
    let mut bytes = vec![1];
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(&1u64.to_le_bytes());
    bytes.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(StreamMessage::decode(&bytes, &limits()), Err(Reject::TooLarge { what: "batch", .. })));
    // An operation longer than allowed.
    let long = Request::signed(&SigningKey::from_bytes(&[9; 32]), ClientId(0), 1, vec![0; 5000]);
    let bytes = DirectMessage::Request(long).encode();
    assert!(matches!(DirectMessage::decode(&bytes, &limits()), Err(Reject::TooLarge { .. })));
    // A new view naming more sealers than there are replicas.
    let many = StreamMessage::NewView { view: 1, low: 0, sealers: (0..4).map(node).collect() }.encode();
    assert!(matches!(StreamMessage::decode(&many, &limits()), Err(Reject::TooLarge { .. })));
    // Node id 4096 does not exist.
    let mut seal = StreamMessage::NewView { view: 1, low: 0, sealers: vec![node(0)] }.encode();
    let at = seal.len() - 2;
    seal[at..].copy_from_slice(&4096u16.to_le_bytes());
    assert!(StreamMessage::decode(&seal, &limits()).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = StreamMessage::decode(&bytes, &limits());
        let _ = DirectMessage::decode(&bytes, &limits());
    }

    #[test]
    fn flipped_bytes_of_valid_messages_never_panic(which in 0usize..14, at in any::<usize>(), bit in 0u8..8) {
        let mut bytes = match which {
            0..=6 => stream_samples()[which].encode(),
            _ => direct_samples()[which - 7].encode(),
        };
        let at = at % bytes.len();
        bytes[at] ^= 1 << bit;
        let _ = StreamMessage::decode(&bytes, &limits());
        let _ = DirectMessage::decode(&bytes, &limits());
    }
}

/// Three replicas and one client, every action carried at once, in order.
struct Group {
    replicas: Vec<Replica<History>>,
    client: Client,
    registers: BTreeMap<(u16, u16, u64), (u64, Vec<u8>)>,
    now: u64,
    /// Crashed replicas: they get nothing and send nothing.
    down: Vec<bool>,
    /// Paused replicas (a SIGSTOP): what is sent to them waits in `held`, in order, as
    /// ring writes land in a stopped process's memory, and they get no tick.
    paused: Vec<bool>,
    held: VecDeque<Wire>,
    /// Messages the network loses.
    lose: Option<fn(&Wire) -> bool>,
}

enum Wire {
    Ctb { from: NodeId, to: NodeId, bytes: Vec<u8> },
    ToReplica { from: Result<NodeId, ClientId>, to: NodeId, bytes: Vec<u8> },
    ToClient { from: NodeId, bytes: Vec<u8> },
}

impl Group {
    fn new() -> Group {
        Group::with(ConsensusConfig { window: 4, batch: 2, ..ConsensusConfig::default() })
    }

    fn with(config: ConsensusConfig) -> Group {
        let keys: Vec<SigningKey> = (0..3).map(|i| SigningKey::from_bytes(&[i as u8 + 1; 32])).collect();
        let keyring = Keyring::new(keys.iter().enumerate().map(|(i, k)| (node(i as u16), k.verifying_key())));
        let client_key = SigningKey::from_bytes(&[9; 32]);
        let clients = ClientKeyring::new([(ClientId(0), client_key.verifying_key())]);
        let replicas = (0..3)
            .map(|i| {
                let key = keys[i as usize].clone();
                Replica::new(
                    config.clone(),
                    node(i),
                    key,
                    keyring.clone(),
                    clients.clone(),
                    History::default(),
                )
                .unwrap()
            })
            .collect();
        let client =
            Client::new(ClientId(0), client_key, config.replicas.clone(), keyring, config.limits(), 1 << 40);
        Group {
            replicas,
            client,
            registers: BTreeMap::new(),
            now: 1_000,
            down: vec![false; 3],
            paused: vec![false; 3],
            held: VecDeque::new(),
            lose: None,
        }
    }

    fn run(&mut self) {
        let mut wire: VecDeque<Wire> = VecDeque::new();
        // What waited for a replica resumed since goes first, in order.
        let (mut held, paused) = (std::mem::take(&mut self.held), self.paused.clone());
        while let Some(next) = held.pop_front() {
            let to = match &next {
                Wire::Ctb { to, .. } | Wire::ToReplica { to, .. } => Some(to.get() as usize),
                Wire::ToClient { .. } => None,
            };
            match to {
                Some(to) if paused[to] => self.held.push_back(next),
                _ => wire.push_back(next),
            }
        }
        while let Some(send) = self.client.poll_action() {
            wire.push_back(Wire::ToReplica { from: Err(ClientId(0)), to: send.to, bytes: send.bytes });
        }
        loop {
            for replica in &mut self.replicas {
                let me = replica.id();
                if self.down[me.get() as usize] {
                    while replica.poll_action().is_some() {}
                    continue;
                }
                while let Some(action) = replica.poll_action() {
                    match action {
                        Action::Ctbcast { stream, action } => match action {
                            ctbcast::Action::Send { to, bytes } => {
                                wire.push_back(Wire::Ctb { from: me, to, bytes })
                            }
                            ctbcast::Action::RegisterWrite { index, slot, incarnation, value } => {
                                let key = (me.get(), stream.get(), slot);
                                self.registers.insert(key, (incarnation, value.to_vec()));
                                replica.handle_register_written(self.now, stream, index);
                            }
                            ctbcast::Action::RegisterRead { index, owner, slot } => {
                                let value = self.registers.get(&(owner.get(), stream.get(), slot)).cloned();
                                let result = RegisterReadResult::Value(
                                    value.as_ref().map(|(i, v)| (*i, v.as_slice())),
                                );
                                replica.handle_register_read(self.now, stream, index, owner, result);
                            }
                        },
                        Action::ToReplica { to, bytes } => {
                            wire.push_back(Wire::ToReplica { from: Ok(me), to, bytes })
                        }
                        Action::ToClient { bytes, .. } => wire.push_back(Wire::ToClient { from: me, bytes }),
                    }
                }
            }
            let Some(next) = wire.pop_front() else { return };
            let to = match &next {
                Wire::Ctb { to, .. } | Wire::ToReplica { to, .. } => Some(to.get() as usize),
                Wire::ToClient { .. } => None,
            };
            if to.is_some_and(|to| self.down[to]) {
                continue;
            }
            if self.lose.is_some_and(|lose| lose(&next)) {
                continue;
            }
            if to.is_some_and(|to| self.paused[to]) {
                self.held.push_back(next);
                continue;
            }
            match next {
                Wire::Ctb { from, to, bytes } => {
                    let _ = self.replicas[to.get() as usize].handle_ctbcast(self.now, from, &bytes);
                }
                Wire::ToReplica { from, to, bytes } => {
                    let _ = self.replicas[to.get() as usize].handle_direct(self.now, from, &bytes);
                }
                Wire::ToClient { from, bytes } => {
                    let _ = self.client.handle_reply(from, &bytes);
                }
            }
        }
    }

    /// Advances time to the earliest timeout of the live replicas, ticks them, carries
    /// what follows.
    fn advance(&mut self) {
        let live: Vec<usize> = (0..3).filter(|&i| !self.down[i] && !self.paused[i]).collect();
        let next = live.iter().filter_map(|&i| self.replicas[i].poll_timeout()).min();
        self.now = next.expect("something is due").max(self.now);
        for i in live {
            self.replicas[i].tick(self.now);
        }
        self.run();
    }
}

#[test]
fn a_request_is_decided_on_the_fast_path_executed_everywhere_and_answered() {
    let mut group = Group::new();
    let number = group.client.submit(group.now, b"put a 1".to_vec()).unwrap();
    group.run();
    assert_eq!(group.client.poll_result().map(|(n, _)| n), Some(number));
    for replica in &group.replicas {
        assert_eq!(replica.executed().0, 1, "replica {}", replica.id());
        assert_eq!(replica.stats().decided_fast, 1);
        assert_eq!(replica.stats().decided_slow, 0);
        assert!(replica.executed_request(ClientId(0), number));
        // Checked when taken from the client, not again when the prepare carried it.
        assert_eq!(replica.stats().requests_verified, 1, "replica {}", replica.id());
    }
    let digests: Vec<_> = group.replicas.iter().map(|r| r.executed().1).collect();
    assert!(digests.windows(2).all(|pair| pair[0] == pair[1]));
}

#[test]
fn a_crashed_leader_is_replaced_by_timeout_and_the_slow_path_decides() {
    let mut group = Group::new();
    group.down[0] = true; // the leader of view 0
    let number = group.client.submit(group.now, b"put a 1".to_vec()).unwrap();
    group.run();
    let mut steps = 0;
    while group.client.poll_result().is_none() {
        group.advance();
        steps += 1;
        assert!(steps < 100, "no progress: {:?}", group.replicas[1].view());
    }
    for replica in &group.replicas[1..] {
        // The view changed (by the replicas' own timeout), and with one replica down
        // nothing can be decided on the fast path.
        assert_eq!(replica.view(), (1, Status::Normal));
        assert!(replica.executed_request(ClientId(0), number));
        assert_eq!((replica.stats().decided_fast, replica.stats().decided_slow), (0, 1));
    }
}

#[test]
fn a_retransmitted_request_is_answered_again_and_executed_once() {
    let mut group = Group::new();
    group.client.submit(group.now, b"incr".to_vec()).unwrap();
    let resend: Vec<_> = std::iter::from_fn(|| group.client.poll_action()).collect();
    for send in &resend {
        group.replicas[send.to.get() as usize]
            .handle_direct(group.now, Err(ClientId(0)), &send.bytes)
            .unwrap();
    }
    group.run();
    for send in &resend {
        // The same signed request again: the cached reply goes out, nothing executes.
        group.replicas[send.to.get() as usize]
            .handle_direct(group.now, Err(ClientId(0)), &send.bytes)
            .unwrap();
    }
    group.run();
    for replica in &group.replicas {
        assert_eq!(replica.stats().executed, 1);
    }
}

#[test]
fn a_leader_cannot_invent_a_request() {
    let mut group = Group::new();
    // The leader (replica 0) alters the operation of every request it prepares.
    group.replicas[0].tamper_broadcasts_for_testing(
        Box::new(|message| {
            if let StreamMessage::Prepare { batch, .. } = message {
                for request in batch {
                    request.operation = b"invented".to_vec();
                }
            }
        }),
        false,
    );
    group.client.submit(group.now, b"put a 1".to_vec()).unwrap();
    group.run();
    for replica in &group.replicas[1..] {
        assert_eq!(replica.executed().0, 0);
        assert_eq!(replica.stats().rejected.get("forged-request"), Some(&1), "{:?}", replica.stats());
    }
    assert_eq!(group.client.poll_result(), None);
}

#[test]
fn garbage_from_the_network_is_counted_and_changes_nothing() {
    let mut group = Group::new();
    let replica = &mut group.replicas[1];
    assert!(replica.handle_direct(0, Ok(node(0)), &[]).is_err());
    assert!(replica.handle_direct(0, Ok(node(0)), &[18, 1, 2]).is_err());
    assert!(replica.handle_ctbcast(0, node(0), &[0; 40]).is_err());
    // A request from a client id the replica does not know, and one sent as a replica.
    let stranger = Request::signed(&SigningKey::from_bytes(&[7; 32]), ClientId(5), 1, vec![1]);
    let bytes = DirectMessage::Request(stranger).encode();
    assert!(replica.handle_direct(0, Err(ClientId(5)), &bytes).is_err());
    let bytes = DirectMessage::Request(request(1)).encode();
    assert!(replica.handle_direct(0, Ok(node(0)), &bytes).is_err());
    // A share with a bad signature.
    let share = DirectMessage::Share { view: 0, slot: 1, digest: [0; 32], signature: [0; 64] }.encode();
    assert!(replica.handle_direct(0, Ok(node(0)), &share).is_err());
    // A catch-up whose certificate does not verify.
    let catchup = DirectMessage::Catchup {
        slot: 2,
        digest: [0; 32],
        state: [0; 32],
        certificate: vec![],
        first: 1,
        batches: vec![vec![], vec![]],
    };
    assert!(replica.handle_direct(0, Ok(node(0)), &catchup.encode()).is_err());
    assert_eq!(replica.stats().rejected_total(), 7, "{:?}", replica.stats());
    assert_eq!(replica.executed().0, 0);
}

#[test]
fn extreme_numbers_from_the_network_are_refused_not_overflowed() {
    let mut group = Group::new();
    let replica = &mut group.replicas[1];
    let cases = [
        DirectMessage::Catchup {
            slot: u64::MAX,
            digest: [0; 32],
            state: [0; 32],
            certificate: vec![],
            first: 1,
            batches: vec![],
        },
        DirectMessage::Catchup {
            slot: 0,
            digest: [0; 32],
            state: [0; 32],
            certificate: vec![],
            first: u64::MAX,
            batches: vec![vec![]],
        },
        DirectMessage::Fetch { executed: u64::MAX },
        DirectMessage::Share { view: u64::MAX, slot: u64::MAX, digest: [0; 32], signature: [0; 64] },
    ];
    for message in cases {
        assert!(replica.handle_direct(0, Ok(node(0)), &message.encode()).is_err(), "{message:?}");
    }
}

proptest! {
    #[test]
    fn well_formed_direct_messages_with_any_numbers_never_panic_a_replica(
        a in any::<u64>(), b in any::<u64>(), batches in 0usize..3, from in 0u16..4,
    ) {
        let mut group = Group::new();
        let messages = [
            DirectMessage::Catchup { slot: a, digest: [1; 32], state: [2; 32], certificate: vec![], first: b, batches: vec![vec![]; batches] },
            DirectMessage::Fetch { executed: a },
            DirectMessage::State { slot: a, digest: [1; 32], history: [2; 32], certificate: vec![], total: b, offset: a, chunk: vec![1; batches] },
            DirectMessage::Share { view: a, slot: b, digest: [0; 32], signature: [0; 64] },
            DirectMessage::Request(Request::signed(&SigningKey::from_bytes(&[9; 32]), ClientId(0), a, vec![])),
        ];
        for message in messages {
            let sender = if from == 3 { Err(ClientId(0)) } else { Ok(node(from)) };
            let _ = group.replicas[1].handle_direct(b, sender, &message.encode());
            group.replicas[1].tick(b);
        }
    }
}

#[test]
fn a_client_spends_no_verify_on_replies_after_the_result_is_accepted() {
    let mut group = Group::new();
    let number = group.client.submit(group.now, b"put a 1".to_vec()).unwrap();
    group.run();
    assert_eq!(group.client.poll_result().map(|(n, _)| n), Some(number));
    // A late reply for the answered request, its signature garbage: refused as stale,
    // before its signature is looked at.
    let mut late =
        Reply::signed(&SigningKey::from_bytes(&[3; 32]), node(2), ClientId(0), number, b"x".to_vec());
    late.signature = [0xee; 64];
    let bytes = DirectMessage::Reply(late).encode();
    assert_eq!(group.client.handle_reply(node(2), &bytes), Err(Reject::Stale { what: "reply" }));
    // For the request outstanding, the signature is checked.
    let next = group.client.submit(group.now, b"put b 2".to_vec()).unwrap();
    let mut forged =
        Reply::signed(&SigningKey::from_bytes(&[3; 32]), node(2), ClientId(0), next, b"x".to_vec());
    forged.signature = [0xee; 64];
    let bytes = DirectMessage::Reply(forged).encode();
    assert_eq!(group.client.handle_reply(node(2), &bytes), Err(Reject::BadSignature { what: "reply" }));
}

#[test]
fn the_slow_path_waits_longer_when_fast_decisions_are_slow_and_never_past_its_cap() {
    let mut group = Group::new();
    let replica = &mut group.replicas[1];
    let base = replica.config.slow_path_timeout_ns;
    assert_eq!(replica.slow_path_timeout(), base, "no fast decision seen yet");
    // Fast decisions well under a quarter of the timeout leave it alone.
    for _ in 0..50 {
        replica.learn_fast_decision(base / 8);
    }
    assert_eq!(replica.slow_path_timeout(), base);
    // A loaded group: fast decisions take the whole timeout; the wait becomes four of them.
    for _ in 0..200 {
        replica.learn_fast_decision(base);
    }
    let stretched = replica.slow_path_timeout();
    assert!(stretched > 3 * base && stretched <= 4 * base, "{stretched} against {base}");
    // However slow (or however late a Byzantine replica promises), at most 16 times.
    for _ in 0..200 {
        replica.learn_fast_decision(1_000 * base);
    }
    assert_eq!(replica.slow_path_timeout(), 16 * base);
}

/// Submits `count` requests one after another, advancing time until each has its result.
fn complete(group: &mut Group, count: usize) {
    for _ in 0..count {
        group.client.submit(group.now, b"incr".to_vec()).unwrap();
        group.run();
        let mut steps = 0;
        while group.client.poll_result().is_none() {
            group.advance();
            steps += 1;
            let views: Vec<_> = group.replicas.iter().map(Replica::view).collect();
            if steps >= 2_000 {
                for r in &group.replicas {
                    eprintln!("{} {:?} {:?} {:?}", r.id(), r.view(), r.stats(), r.stream_positions());
                }
            }
            assert!(steps < 2_000, "no progress: {views:?}");
        }
    }
}

#[test]
fn a_replica_paused_past_the_tail_resyncs_its_streams_and_the_fast_path_returns() {
    let ctbcast = ctbcast::CtbConfig { tail: 16, ..ctbcast::CtbConfig::default() };
    let mut group =
        Group::with(ConsensusConfig { window: 8, batch: 2, ctbcast, ..ConsensusConfig::default() });
    complete(&mut group, 2);
    assert_eq!(group.replicas[0].stats().decided_fast, 2);
    // Replica 2 is paused: it gets nothing, sends nothing, its clock stops. 12 slots go
    // by on the slow path: far more messages than the tail of 16 its rings keep.
    group.down[2] = true;
    complete(&mut group, 12);
    group.down[2] = false;
    let fast_before = group.replicas[0].stats().decided_fast;
    let mut rounds = 0;
    while group.replicas.iter().any(|r| r.stats().decided_fast == fast_before) || rounds < 4 {
        complete(&mut group, 1);
        rounds += 1;
        assert!(rounds < 2_000, "the fast path never came back: {:?}", group.replicas[2].stats());
    }
    let paused = group.replicas[2].stats();
    assert_eq!(paused.stream_gaps, 2, "{paused:?}");
    assert_eq!(paused.resynced_streams, 2, "{paused:?}");
    assert_eq!(paused.broken_streams, 0, "{paused:?}");
    for replica in &group.replicas[..2] {
        assert_eq!(replica.stats().recaps_sent, 1, "{:?}", replica.stats());
        assert_eq!(replica.stats().broken_streams, 0, "{:?}", replica.stats());
    }
    // Everyone executed the same history, and the last request was decided fast everywhere.
    let executed: Vec<_> = group.replicas.iter().map(|r| r.executed()).collect();
    assert!(executed.windows(2).all(|pair| pair[0] == pair[1]), "{executed:?}");
    let last_fast = group.replicas.iter().map(|r| r.stats().decided_fast).collect::<Vec<_>>();
    complete(&mut group, 1);
    for (replica, before) in group.replicas.iter().zip(last_fast) {
        assert_eq!(replica.stats().decided_fast, before + 1, "replica {}", replica.id());
    }
}

#[test]
fn an_honest_recap_is_checked_and_a_lying_one_gives_its_stream_up() {
    let mut group = Group::new();
    complete(&mut group, 3);
    let ask = DirectMessage::RecapRequest.encode();
    group.replicas[0].handle_direct(group.now, Ok(node(1)), &ask).unwrap();
    // Asked again at once: refused, one recap per half view-change timeout.
    assert_eq!(
        group.replicas[0].handle_direct(group.now, Ok(node(2)), &ask),
        Err(Reject::Duplicate { what: "recap request" })
    );
    group.run();
    assert_eq!(group.replicas[0].stats().recaps_sent, 1);
    for replica in &group.replicas[1..] {
        assert_eq!(replica.stats().broken_streams, 0, "{:?}", replica.stats());
    }
    // Later, a recap that claims a higher sealed view than its stream ever showed: every
    // in-order receiver sees the lie and gives the stream up.
    group.now += ConsensusConfig::default().view_change_timeout_ns;
    let lie: TamperFn = Box::new(|message| {
        if let StreamMessage::Recap(part) = message {
            part.sealed += 1;
        }
    });
    group.replicas[0].tamper_broadcasts_for_testing(lie, false);
    group.replicas[0].handle_direct(group.now, Ok(node(1)), &ask).unwrap();
    group.run();
    for replica in &group.replicas[1..] {
        assert_eq!(replica.stats().broken_streams, 1, "{:?}", replica.stats());
        assert_eq!(replica.stats().rejected.get("invalid"), Some(&1), "{:?}", replica.stats());
    }
}

/// State transfer: a replica past the batches kept, and Byzantine helpers.
#[path = "state_transfer_tests.rs"]
mod state_transfer_tests;
