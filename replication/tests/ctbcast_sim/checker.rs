//! The invariants every run is held to, checked as events happen.

use std::collections::BTreeMap;

use usec_replication::bft::ctbcast::{DeliveryPath, EquivocationProof, Event, Keyring};

/// What correct receivers delivered, and what they may deliver.
pub struct Checker {
    /// Whether the broadcaster follows the protocol (then deliveries must be its messages
    /// and no equivocation may ever be "proven").
    broadcaster_correct: bool,
    keys: Keyring,
    /// The correct broadcaster's messages.
    pub broadcast: BTreeMap<u64, Vec<u8>>,
    /// Per node, what it delivered at each index.
    pub delivered: BTreeMap<usize, BTreeMap<u64, (Vec<u8>, DeliveryPath)>>,
    /// The first delivery of each index, by whom.
    first: BTreeMap<u64, (usize, Vec<u8>)>,
    /// Proofs reported (each already checked).
    pub proofs: Vec<EquivocationProof>,
    /// Abandoned indices per node.
    pub abandoned: BTreeMap<usize, Vec<u64>>,
}

impl Checker {
    pub fn new(broadcaster_correct: bool, keys: Keyring) -> Checker {
        Checker {
            broadcaster_correct,
            keys,
            broadcast: BTreeMap::new(),
            delivered: BTreeMap::new(),
            first: BTreeMap::new(),
            proofs: Vec::new(),
            abandoned: BTreeMap::new(),
        }
    }

    /// An event from correct receiver `node`.
    pub fn record(&mut self, node: usize, event: Event) {
        match event {
            Event::Delivered { index, message, path } => {
                let mine = self.delivered.entry(node).or_default();
                assert!(!mine.contains_key(&index), "node {node} delivered index {index} twice");
                if self.broadcaster_correct {
                    assert_eq!(
                        Some(&message),
                        self.broadcast.get(&index),
                        "node {node} delivered at {index} something the correct broadcaster did not send"
                    );
                }
                match self.first.get(&index) {
                    Some((other, theirs)) => assert_eq!(
                        &message, theirs,
                        "agreement broken at index {index}: node {node} delivered {message:?}, node {other} {theirs:?}"
                    ),
                    None => {
                        self.first.insert(index, (node, message.clone()));
                    }
                }
                mine.insert(index, (message, path));
            }
            Event::Equivocation(proof) => {
                assert!(
                    proof.verify(&self.keys),
                    "node {node} reported a proof that does not verify: {proof:?}"
                );
                assert!(!self.broadcaster_correct, "node {node} convicted a correct broadcaster: {proof:?}");
                self.proofs.push(proof);
            }
            Event::Abandoned { index, .. } => self.abandoned.entry(node).or_default().push(index),
        }
    }

    /// Tail validity: every index in `indices` was delivered by each of `nodes`.
    pub fn check_delivered(&self, nodes: &[usize], indices: std::ops::Range<u64>) {
        for &node in nodes {
            let mine = self.delivered.get(&node);
            for index in indices.clone() {
                assert!(
                    mine.is_some_and(|mine| mine.contains_key(&index)),
                    "node {node} did not deliver index {index} of the final tail (abandoned: {:?})",
                    self.abandoned.get(&node)
                );
            }
        }
    }

    /// Deliveries by `path` over all nodes.
    pub fn count(&self, path: DeliveryPath) -> usize {
        self.delivered.values().flat_map(|mine| mine.values()).filter(|(_, p)| *p == path).count()
    }
}
