//! Byzantine participants: they write whatever bytes they like into the rings and
//! registers they own, drawing each misbehaviour from the seed.

use std::collections::BTreeMap;

use ed25519_dalek::SigningKey;
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use usec_replication::bft::ctbcast::signature::{message_hash, sign};
use usec_replication::bft::ctbcast::{Action, Body, CtbConfig, Entry, SignedHash, REGISTER_VALUE_BYTES};

use crate::world::node;

fn garbage(rng: &mut ChaCha8Rng, max: usize) -> Vec<u8> {
    let length = rng.gen_range(0..max);
    (0..length).map(|_| rng.gen()).collect()
}

fn send(to: usize, bytes: Vec<u8>) -> Action {
    Action::Send { to: node(to), bytes }
}

/// A broadcaster that equivocates, sends garbage, truncates, replays, forges and names
/// the wrong stream — one behaviour per index, drawn from the seed.
pub struct ByzantineBroadcaster {
    config: CtbConfig,
    key: SigningKey,
    next_index: u64,
    /// What each receiver was sent per index (so signatures it hands out verify for
    /// that receiver's version: the nastiest equivocation).
    sent: BTreeMap<(usize, u64), Vec<u8>>,
    /// Every entry sent so far, for replays.
    history: Vec<Vec<u8>>,
    /// Only the cleanest lie: every index, a different message to each receiver, each
    /// with its valid signature.
    always_equivocate: bool,
}

impl ByzantineBroadcaster {
    pub fn new(config: CtbConfig, key: SigningKey) -> ByzantineBroadcaster {
        ByzantineBroadcaster {
            config,
            key,
            next_index: 0,
            sent: BTreeMap::new(),
            history: Vec::new(),
            always_equivocate: false,
        }
    }

    /// One that only equivocates, with valid signatures.
    pub fn always_equivocating(config: CtbConfig, key: SigningKey) -> ByzantineBroadcaster {
        ByzantineBroadcaster { always_equivocate: true, ..ByzantineBroadcaster::new(config, key) }
    }

    fn equivocate(&mut self, message: &[u8]) -> Vec<Action> {
        let index = self.next_index;
        self.next_index += 1;
        let receivers: Vec<usize> = self.config.receivers.iter().map(|id| id.get() as usize).collect();
        let mut actions = Vec::new();
        for (position, &to) in receivers.iter().enumerate() {
            let version: Vec<u8> = message.iter().copied().chain([position as u8]).collect();
            actions.push(send(to, self.entry(index, Body::Message(&version))));
            actions.push(send(to, self.signature(index, &version)));
            self.sent.insert((to, index), version);
        }
        actions
    }

    fn entry(&self, index: u64, body: Body<'_>) -> Vec<u8> {
        Entry { index, broadcaster: 0, sender: 0, body }.encode()
    }

    fn signature(&self, index: u64, message: &[u8]) -> Vec<u8> {
        let signature = sign(&self.key, node(0), index, &message_hash(message));
        self.entry(index, Body::Signature(signature))
    }

    pub fn broadcast(&mut self, rng: &mut ChaCha8Rng, message: &[u8]) -> Vec<Action> {
        if self.always_equivocate {
            return self.equivocate(message);
        }
        let index = self.next_index;
        // Sometimes skip ahead, sometimes reuse an index.
        self.next_index = match rng.gen_range(0..20) {
            0 => index + rng.gen_range(2..6),
            1 => index,
            _ => index + 1,
        };
        let other: Vec<u8> = message.iter().map(|byte| byte ^ 0x5A).chain([1]).collect();
        let receivers: Vec<usize> = self.config.receivers.iter().map(|id| id.get() as usize).collect();
        let mut actions = Vec::new();
        for &to in &receivers {
            let version = if rng.gen_bool(0.5) { message } else { &other };
            let mut bytes = self.entry(index, Body::Message(version));
            match rng.gen_range(0..16) {
                0 => continue, // silent towards this one
                1 => bytes = garbage(rng, 120),
                2 => {
                    let cut = rng.gen_range(0..bytes.len());
                    bytes.truncate(cut);
                }
                3 => {
                    bytes = Entry { index, broadcaster: 1, sender: 0, body: Body::Message(version) }.encode()
                }
                4 => {
                    bytes = Entry { index, broadcaster: 0, sender: 2, body: Body::Message(version) }.encode()
                }
                5 if !self.history.is_empty() => bytes = self.history.choose(rng).expect("not empty").clone(),
                _ => {
                    self.sent.insert((to, index), version.to_vec());
                }
            }
            self.history.push(bytes.clone());
            actions.push(send(to, bytes));
            // Its signature: the right one for this receiver's version, another version's,
            // another index's, random bytes, or none.
            let signature = match rng.gen_range(0..6) {
                0 | 1 => self.signature(index, version),
                2 => self.signature(index, if version == message { &other } else { message }),
                3 => self.signature(index.saturating_sub(1), version),
                4 => self.entry(index, Body::Signature(std::array::from_fn(|_| rng.gen()))),
                _ => continue,
            };
            self.history.push(signature.clone());
            actions.push(send(to, signature));
        }
        if rng.gen_range(0..10) == 0 {
            // A late second version to someone who already has one.
            let to = *receivers.choose(rng).expect("receivers");
            actions.push(send(to, self.entry(index, Body::Message(&other))));
            actions.push(send(to, self.signature(index, &other)));
        }
        actions
    }

    /// Signature requests: answered with a signature for the asker's version, for a
    /// random version, a forgery, or not at all.
    pub fn on_entry(&mut self, rng: &mut ChaCha8Rng, from: usize, bytes: &[u8]) -> Vec<Action> {
        let Ok(Entry { index, body: Body::SignatureRequest, .. }) = Entry::decode(bytes) else {
            return Vec::new();
        };
        let answer = match (rng.gen_range(0..4), self.sent.get(&(from, index))) {
            (0 | 1, Some(version)) => self.signature(index, &version.clone()),
            (2, _) => self.signature(index, &garbage(rng, 50)),
            (3, _) => self.entry(index, Body::Signature(std::array::from_fn(|_| rng.gen()))),
            _ => return Vec::new(),
        };
        vec![send(from, answer)]
    }
}

/// A receiver that echoes lies, writes garbage and replays into its registers, and asks
/// for signatures it does not need. With the broadcaster's key (`colluding`) it also
/// writes validly signed conflicting values.
pub struct ByzantineReceiver {
    me: usize,
    config: CtbConfig,
    colluding_key: Option<SigningKey>,
    /// Signed values it has seen, for replays.
    signed: Vec<(u64, SignedHash)>,
    messages: BTreeMap<u64, Vec<u8>>,
}

impl ByzantineReceiver {
    pub fn new(me: usize, config: CtbConfig, colluding_key: Option<SigningKey>) -> ByzantineReceiver {
        ByzantineReceiver { me, config, colluding_key, signed: Vec::new(), messages: BTreeMap::new() }
    }

    pub fn on_entry(&mut self, rng: &mut ChaCha8Rng, from: usize, bytes: &[u8]) -> Vec<Action> {
        let Ok(entry) = Entry::decode(bytes) else { return Vec::new() };
        if from != 0 {
            return Vec::new();
        }
        let index = entry.index;
        match entry.body {
            Body::Message(message) => {
                self.messages.insert(index, message.to_vec());
                let mut actions = self.echo(rng, index, message);
                actions.extend(self.scribble(rng, index));
                if rng.gen_range(0..8) == 0 {
                    let request =
                        Entry { index, broadcaster: 0, sender: self.me as u16, body: Body::SignatureRequest };
                    actions.push(send(0, request.encode()));
                }
                actions
            }
            Body::Signature(signature) => {
                if let Some(message) = self.messages.get(&index) {
                    self.signed.push((index, SignedHash { hash: message_hash(message), signature }));
                }
                self.scribble(rng, index)
            }
            _ => Vec::new(),
        }
    }

    fn echo(&mut self, rng: &mut ChaCha8Rng, index: u64, message: &[u8]) -> Vec<Action> {
        let me = self.me as u16;
        let others: Vec<usize> =
            self.config.receivers.iter().map(|id| id.get() as usize).filter(|&id| id != self.me).collect();
        let mut actions = Vec::new();
        for to in others {
            let wrong: Vec<u8> = message.iter().rev().copied().chain([7]).collect();
            let body_bytes = match rng.gen_range(0..10) {
                0 => continue,
                1 => garbage(rng, 100),
                2 => Entry { index, broadcaster: 0, sender: me, body: Body::EchoCopy(&wrong) }.encode(),
                3 => Entry { index, broadcaster: 0, sender: me, body: Body::EchoHash(message_hash(&wrong)) }
                    .encode(),
                4 => {
                    Entry { index: index + 1_000, broadcaster: 0, sender: me, body: Body::EchoCopy(message) }
                        .encode()
                }
                5 => Entry { index, broadcaster: 0, sender: 0, body: Body::Message(&wrong) }.encode(),
                6 => Entry { index, broadcaster: 0, sender: me, body: Body::EchoHash(message_hash(message)) }
                    .encode(),
                _ => Entry { index, broadcaster: 0, sender: me, body: Body::EchoCopy(message) }.encode(),
            };
            actions.push(send(to, body_bytes));
        }
        actions
    }

    /// Writes something into its register slot for `index`.
    fn scribble(&mut self, rng: &mut ChaCha8Rng, index: u64) -> Vec<Action> {
        let tail = self.config.tail;
        let (slot, incarnation) = (index % tail, index / tail + 1);
        let value: [u8; REGISTER_VALUE_BYTES] = match rng.gen_range(0..8) {
            0 => [0xEE; REGISTER_VALUE_BYTES],
            1 => std::array::from_fn(|_| rng.gen()),
            // A genuine signed value of some index, replayed here.
            2 | 3 if !self.signed.is_empty() => {
                self.signed.choose(rng).expect("not empty").1.to_register_value()
            }
            4 if self.colluding_key.is_some() => {
                let hash = message_hash(&garbage(rng, 40));
                let key = self.colluding_key.as_ref().expect("checked");
                SignedHash { hash, signature: sign(key, node(0), index, &hash) }.to_register_value()
            }
            _ => return Vec::new(),
        };
        let incarnation = match rng.gen_range(0..4) {
            0 => incarnation + rng.gen_range(1..4),
            1 => rng.gen(),
            _ => incarnation,
        };
        vec![Action::RegisterWrite { index, slot, incarnation, value }]
    }
}
