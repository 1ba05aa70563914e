//! A Byzantine replica: the real core, whose every output is rewritten by a behaviour
//! drawn from the seed — and, for lies that must be well formed (a view change, a
//! certificate), whose CTBcast messages are rewritten before they are broadcast.

use ed25519_dalek::SigningKey;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use usec_qp_pool::NodeId;
use usec_replication::bft::consensus::certificate::sign_share;
use usec_replication::bft::consensus::{batch_digest, Action, DirectMessage, Limits, Reply, StreamMessage};
use usec_replication::bft::ctbcast::signature::{message_hash, sign};
use usec_replication::bft::ctbcast::{self, Body, Entry};

use crate::world::{node, Core};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Sends nothing at all.
    Silent,
    /// Garbage, truncated and bit-flipped bytes in rings and point-to-point messages.
    Garbage,
    /// Garbage values and incarnations in its registers.
    GarbageRegisters,
    /// Signature shares, CTBcast signatures and replies with forged or replayed signatures.
    ForgeSignatures,
    /// A different, validly signed message for one receiver at each index it broadcasts.
    Equivocate,
    /// Lies in the protocol's own terms: seals claiming unstable checkpoints, new views
    /// naming the wrong sealers or low, commits with bad certificates, prepares with
    /// invented requests, promises of batches it never got.
    LieInViewChange,
    /// Everything it sends arrives just below the timeout that waits for it.
    DelayBelowTimeouts,
    /// Replies to clients carry a result of its own making, validly signed.
    ForgeReplies,
    /// Turns each promise into a commit of the same batch with an invented request, under
    /// a certificate signed with every colluder's key it holds.
    ColludingCommits,
    /// Promises a different batch than the one prepared (an empty one) now and then, and
    /// believes its own lie: its facts, its seals and the new views it leads all follow
    /// the story every other replica sees, so its new views are accepted and only the
    /// derivation's rules stand between its lies and a lost decision.
    ConsistentLiar,
}

pub const BEHAVIOURS: [Behaviour; 10] = [
    Behaviour::Silent,
    Behaviour::Garbage,
    Behaviour::GarbageRegisters,
    Behaviour::ForgeSignatures,
    Behaviour::Equivocate,
    Behaviour::LieInViewChange,
    Behaviour::DelayBelowTimeouts,
    Behaviour::ForgeReplies,
    Behaviour::ConsistentLiar,
    Behaviour::ColludingCommits,
];

pub struct Byzantine {
    pub core: Core,
    pub behaviour: Behaviour,
    me: usize,
    key: SigningKey,
    limits: Limits,
    /// Timeouts to stay just below: CTBcast's fast path, the slow path.
    fast_path_timeout_ns: u64,
    slow_path_timeout_ns: u64,
    /// Point-to-point messages sent so far, for replays.
    sent: Vec<Vec<u8>>,
}

impl Byzantine {
    pub fn new(
        mut core: Core,
        behaviour: Behaviour,
        key: SigningKey,
        limits: Limits,
        timeouts: (u64, u64),
        seed: u64,
        colluders: Vec<(NodeId, SigningKey)>,
    ) -> Byzantine {
        let me = core.id().get() as usize;
        if behaviour == Behaviour::ColludingCommits {
            let invent = move |message: &mut StreamMessage| {
                let StreamMessage::Promise { view, slot, batch } = message else { return };
                let mut invented = batch.clone();
                let Some(request) = invented.first_mut() else { return };
                request.operation.push(0xbb);
                let digest = batch_digest(&invented);
                let certificate =
                    colluders.iter().map(|(id, key)| (*id, sign_share(key, *view, *slot, &digest))).collect();
                *message = StreamMessage::Commit { view: *view, slot: *slot, batch: invented, certificate };
            };
            core.tamper_broadcasts_for_testing(Box::new(invent), false);
        }
        if behaviour == Behaviour::LieInViewChange {
            let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
            core.tamper_broadcasts_for_testing(Box::new(move |message| lie(&mut rng, message)), false);
        }
        if behaviour == Behaviour::ConsistentLiar {
            let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
            let lie = move |message: &mut StreamMessage| {
                if let StreamMessage::Promise { batch, .. } = message {
                    if rng.gen_bool(0.5) {
                        batch.clear();
                    }
                }
            };
            core.tamper_broadcasts_for_testing(Box::new(lie), true);
        }
        Byzantine {
            core,
            behaviour,
            me,
            key,
            limits,
            fast_path_timeout_ns: timeouts.0,
            slow_path_timeout_ns: timeouts.1,
            sent: Vec::new(),
        }
    }

    /// What actually goes out for `action`, each with an extra delay.
    pub fn rewrite(&mut self, rng: &mut ChaCha8Rng, action: Action) -> Vec<(Action, u64)> {
        match self.behaviour {
            Behaviour::Silent => vec![],
            Behaviour::Garbage if rng.gen_ratio(1, 3) => vec![(garble(rng, action), 0)],
            Behaviour::GarbageRegisters => match action {
                Action::Ctbcast {
                    stream,
                    action: ctbcast::Action::RegisterWrite { index, slot, incarnation, .. },
                } => {
                    let mut value = [0; ctbcast::REGISTER_VALUE_BYTES];
                    rng.fill(&mut value[..]);
                    let incarnation =
                        if rng.gen_bool(0.5) { incarnation } else { rng.gen_range(0..incarnation + 3) };
                    let action = ctbcast::Action::RegisterWrite { index, slot, incarnation, value };
                    vec![(Action::Ctbcast { stream, action }, 0)]
                }
                action => vec![(action, 0)],
            },
            Behaviour::ForgeSignatures => vec![(self.forge(rng, action), 0)],
            Behaviour::Equivocate => self.equivocate(rng, action),
            Behaviour::DelayBelowTimeouts => {
                let delay = match &action {
                    Action::Ctbcast { action: ctbcast::Action::Send { .. }, .. } => {
                        self.fast_path_timeout_ns * 9 / 10
                    }
                    Action::ToReplica { .. } => self.slow_path_timeout_ns * 9 / 10,
                    _ => 0,
                };
                vec![(action, delay)]
            }
            Behaviour::ForgeReplies => vec![(self.forge_reply(action), 0)],
            Behaviour::Garbage
            | Behaviour::LieInViewChange
            | Behaviour::ConsistentLiar
            | Behaviour::ColludingCommits => vec![(action, 0)],
        }
    }

    fn forge(&mut self, rng: &mut ChaCha8Rng, action: Action) -> Action {
        match action {
            Action::ToReplica { to, mut bytes } => {
                if !self.sent.is_empty() && rng.gen_bool(0.3) {
                    // A replay of an earlier share (valid, for another slot or view).
                    bytes = self.sent[rng.gen_range(0..self.sent.len())].clone();
                } else {
                    self.sent.push(bytes.clone());
                    if let Some(last) = bytes.last_mut() {
                        *last ^= 1 << rng.gen_range(0..8);
                    }
                }
                Action::ToReplica { to, bytes }
            }
            Action::ToClient { client, mut bytes } => {
                if let Some(last) = bytes.last_mut() {
                    *last ^= 0x40;
                }
                Action::ToClient { client, bytes }
            }
            Action::Ctbcast { stream, action: ctbcast::Action::Send { to, bytes } } => {
                let bytes = match Entry::decode(&bytes) {
                    Ok(Entry { body: Body::Signature(mut signature), index, broadcaster, sender }) => {
                        signature[rng.gen_range(0..64)] ^= 0x10;
                        Entry { index, broadcaster, sender, body: Body::Signature(signature) }.encode()
                    }
                    _ => bytes,
                };
                Action::Ctbcast { stream, action: ctbcast::Action::Send { to, bytes } }
            }
            action => action,
        }
    }

    fn equivocate(&mut self, rng: &mut ChaCha8Rng, action: Action) -> Vec<(Action, u64)> {
        let Action::Ctbcast { stream, action: ctbcast::Action::Send { to, bytes } } = &action else {
            return vec![(action, 0)];
        };
        let victim = if self.me == 0 { 1 } else { 0 };
        if stream.get() as usize != self.me || to.get() as usize != victim {
            return vec![(action, 0)];
        }
        let Ok(entry) = Entry::decode(bytes) else { return vec![(action, 0)] };
        let (Body::Message(message), true) = (entry.body, rng.gen_bool(0.7)) else {
            return vec![(action, 0)];
        };
        let Ok(mut consensus) = StreamMessage::decode(message, &self.limits) else {
            return vec![(action, 0)];
        };
        lie(rng, &mut consensus);
        let other = consensus.encode();
        let me = node(self.me).get();
        let lying =
            Entry { index: entry.index, broadcaster: me, sender: me, body: Body::Message(&other) }.encode();
        let signature = sign(&self.key, node(self.me), entry.index, &message_hash(&other));
        let signed =
            Entry { index: entry.index, broadcaster: me, sender: me, body: Body::Signature(signature) }
                .encode();
        let send =
            |bytes| Action::Ctbcast { stream: *stream, action: ctbcast::Action::Send { to: *to, bytes } };
        vec![(send(lying), 0), (send(signed), 0)]
    }

    fn forge_reply(&mut self, action: Action) -> Action {
        let Action::ToClient { client, bytes } = &action else { return action };
        let Ok(DirectMessage::Reply(reply)) = DirectMessage::decode(bytes, &self.limits) else {
            return action;
        };
        let forged = Reply::signed(&self.key, reply.replica, reply.client, reply.number, b"forged".to_vec());
        Action::ToClient { client: *client, bytes: DirectMessage::Reply(forged).encode() }
    }
}

/// A well-formed lie about `message`.
fn lie(rng: &mut ChaCha8Rng, message: &mut StreamMessage) {
    match message {
        StreamMessage::Prepare { batch, .. } | StreamMessage::Promise { batch, .. } => {
            if let Some(request) = batch.first_mut().filter(|_| rng.gen_bool(0.5)) {
                request.operation.push(0xee); // an invented request: its signature no longer holds
            } else if !batch.is_empty() {
                batch.pop();
            } else {
                batch.clear();
            }
        }
        StreamMessage::Commit { certificate, .. } => {
            if let Some((_, signature)) = certificate.first_mut() {
                signature[rng.gen_range(0..64)] ^= 0x01;
            }
        }
        StreamMessage::Checkpoint { digest, .. } => digest[0] ^= 0xff,
        StreamMessage::Seal { low, .. } => *low += rng.gen_range(1..3) * 1024,
        StreamMessage::NewView { low, sealers, .. } => {
            if rng.gen_bool(0.5) {
                *low += 1024;
            } else if let Some(first) = sealers.first_mut() {
                *first = node((first.get() as usize + 1) % 3);
            }
        }
        // A recap that says more, or other, than the stream did.
        StreamMessage::Recap(part) => {
            if rng.gen_bool(0.5) {
                part.sealed += 1;
            } else {
                part.promises.push((part.low + 1, part.sealed, [0xee; 32]));
            }
        }
    }
}

/// Garbage, truncation or a flipped bit in whatever the action carries.
fn garble(rng: &mut ChaCha8Rng, action: Action) -> Action {
    let mangle = |rng: &mut ChaCha8Rng, mut bytes: Vec<u8>| -> Vec<u8> {
        match rng.gen_range(0..3) {
            0 => (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect(),
            1 => {
                bytes.truncate(rng.gen_range(0..bytes.len().max(1)));
                bytes
            }
            _ => {
                if !bytes.is_empty() {
                    let at = rng.gen_range(0..bytes.len());
                    bytes[at] ^= 1 << rng.gen_range(0..8);
                }
                bytes
            }
        }
    };
    match action {
        Action::Ctbcast { stream, action: ctbcast::Action::Send { to, bytes } } => {
            Action::Ctbcast { stream, action: ctbcast::Action::Send { to, bytes: mangle(rng, bytes) } }
        }
        Action::ToReplica { to, bytes } => Action::ToReplica { to, bytes: mangle(rng, bytes) },
        Action::ToClient { client, bytes } => Action::ToClient { client, bytes: mangle(rng, bytes) },
        action => action,
    }
}
