//! The broadcaster: numbers messages, sends each to every receiver, and signs them for
//! the slow path — ahead of need or on request.
//!
//! Call order: [`Broadcaster::broadcast`] for each message, [`Broadcaster::handle_entry`]
//! for each entry found in a ring a receiver writes to us, then drain
//! [`Broadcaster::poll_action`]; when nothing else is pending, [`Broadcaster::tick`] (it
//! does the signing that was deferred so that sends go out first) and drain again.
//!
//! Signing stays off the fast path: a message's sends are queued before anything is
//! signed, so the driver posts them and only then, in `tick`, pays the ~20–60 µs of an
//! Ed25519 signature. A signature is computed at most once per index and kept with the
//! message for the tail, so a receiver (or a Byzantine one) asking again costs a send, not
//! a signature.

use std::collections::VecDeque;

use ed25519_dalek::SigningKey;
use usec_qp_pool::NodeId;

use super::action::Action;
use super::config::{CtbConfig, INDEX_LIMIT};
use super::entry::{Body, Entry, SignatureBytes};
use super::reject::{Reject, Stats};
use super::signature::{message_hash, sign};
use crate::error::Result;

/// A message still in the tail.
#[derive(Debug)]
struct Sent {
    index: u64,
    message: Vec<u8>,
    signature: Option<SignatureBytes>,
}

/// The sending side of one CTBcast stream.
#[derive(Debug)]
pub struct Broadcaster {
    config: CtbConfig,
    key: SigningKey,
    next_index: u64,
    /// The last `tail` messages, at `index % tail`.
    sent: Vec<Option<Sent>>,
    /// Indices to sign in the next `tick` (sign-ahead).
    to_sign: VecDeque<u64>,
    actions: VecDeque<Action>,
    stats: Stats,
}

impl Broadcaster {
    /// The broadcaster of `config`'s stream, signing with `key`.
    pub fn new(config: CtbConfig, key: SigningKey) -> Result<Broadcaster> {
        config.validate()?;
        let sent = (0..config.tail).map(|_| None).collect();
        Ok(Broadcaster {
            config,
            key,
            next_index: 0,
            sent,
            to_sign: VecDeque::new(),
            actions: VecDeque::new(),
            stats: Stats::default(),
        })
    }

    /// Sends `message` to every receiver and returns its index.
    pub fn broadcast(&mut self, message: &[u8]) -> std::result::Result<u64, Reject> {
        if message.len() > self.config.max_message_bytes {
            return Err(self
                .stats
                .refuse(Reject::TooLarge { len: message.len(), max: self.config.max_message_bytes }));
        }
        let index = self.next_index;
        if index >= INDEX_LIMIT {
            return Err(self.stats.refuse(Reject::IndexOutOfRange(index)));
        }
        self.next_index += 1;
        let bytes = self.entry(index, Body::Message(message)).encode();
        self.send_to_all(bytes);
        let slot = (index % self.config.tail) as usize;
        match &mut self.sent[slot] {
            // Reuse the evicted message's buffer: no allocation once the tail is warm.
            Some(sent) => {
                sent.index = index;
                sent.message.clear();
                sent.message.extend_from_slice(message);
                sent.signature = None;
            }
            empty => *empty = Some(Sent { index, message: message.to_vec(), signature: None }),
        }
        if self.config.sign_ahead {
            self.to_sign.push_back(index);
        }
        Ok(index)
    }

    /// An entry from the ring `from` writes into our memory: a receiver asking for a
    /// signature. Answered at once (signing if need be): the asker is on its slow path.
    pub fn handle_entry(&mut self, from: NodeId, bytes: &[u8]) -> std::result::Result<(), Reject> {
        let entry = Entry::decode(bytes).map_err(|reject| self.stats.refuse(reject))?;
        if entry.broadcaster != self.config.broadcaster.get() {
            let reject =
                Reject::WrongBroadcaster { expected: self.config.broadcaster, found: entry.broadcaster };
            return Err(self.stats.refuse(reject));
        }
        if entry.sender != from.get() {
            return Err(self.stats.refuse(Reject::WrongSender { from, claimed: entry.sender }));
        }
        if entry.body != Body::SignatureRequest || self.config.receiver_position(from).is_none() {
            return Err(self.stats.refuse(Reject::UnexpectedSender { from, kind: entry.body.kind_name() }));
        }
        let index = entry.index;
        let oldest_kept = self.next_index.saturating_sub(self.config.tail);
        if index < oldest_kept {
            return Err(self.stats.refuse(Reject::Stale { index, oldest_kept }));
        }
        if index >= self.next_index {
            let newest_accepted = self.next_index.saturating_sub(1);
            return Err(self.stats.refuse(Reject::TooFarAhead { index, newest_accepted }));
        }
        let signature = self.signature(index);
        let bytes = self.entry(index, Body::Signature(signature)).encode();
        self.actions.push_back(Action::Send { to: from, bytes });
        Ok(())
    }

    /// Signs what was deferred (sign-ahead) and sends the signatures to every receiver.
    /// Call when the fast-path work is out.
    pub fn tick(&mut self) {
        while let Some(index) = self.to_sign.pop_front() {
            if index + self.config.tail < self.next_index {
                continue; // left the tail before we got to it
            }
            let signature = self.signature(index);
            let bytes = self.entry(index, Body::Signature(signature)).encode();
            self.send_to_all(bytes);
        }
    }

    /// Whether [`Broadcaster::tick`] has signing to do.
    pub fn has_deferred_work(&self) -> bool {
        !self.to_sign.is_empty()
    }

    /// The next piece of work for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The index the next broadcast gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// What it has done and refused.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &CtbConfig {
        &self.config
    }

    /// `index`'s signature, made now if it was not yet. `index` is in the tail.
    fn signature(&mut self, index: u64) -> SignatureBytes {
        let slot = (index % self.config.tail) as usize;
        let sent = self.sent[slot].as_mut().filter(|sent| sent.index == index).expect("index is in the tail");
        if let Some(signature) = sent.signature {
            return signature;
        }
        let signature = sign(&self.key, self.config.broadcaster, index, &message_hash(&sent.message));
        sent.signature = Some(signature);
        self.stats.signatures_made += 1;
        signature
    }

    fn entry<'a>(&self, index: u64, body: Body<'a>) -> Entry<'a> {
        let me = self.config.broadcaster.get();
        Entry { index, broadcaster: me, sender: me, body }
    }

    fn send_to_all(&mut self, bytes: Vec<u8>) {
        let (last, others) = self.config.receivers.split_last().expect("receivers are not empty");
        for &to in others {
            self.actions.push_back(Action::Send { to, bytes: bytes.clone() });
        }
        self.actions.push_back(Action::Send { to: *last, bytes });
    }
}
