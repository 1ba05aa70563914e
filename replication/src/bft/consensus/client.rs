//! The client library, sans IO: one request at a time, sent to every replica, accepted
//! once f + 1 distinct replicas sign the same result (one of them is correct, so the
//! result is what the replicated state machine produced), retransmitted until then.
//!
//! Call order: [`Client::submit`] an operation, feed [`Client::handle_reply`] with what
//! replicas send, call [`Client::tick`] when [`Client::poll_timeout`] has passed, drain
//! [`Client::poll_action`] (messages to replicas) and [`Client::poll_result`].
//!
//! Retransmissions carry the same number and signature, so replicas execute a request at
//! most once and answer a retransmission of an executed one from their reply cache.

use std::collections::{BTreeMap, VecDeque};

use ed25519_dalek::SigningKey;
use usec_qp_pool::NodeId;

use super::reject::{Reject, Stats};
use super::request::{ClientId, Request};
use super::wire::{DirectMessage, Limits};
use crate::bft::ctbcast::{Hash, Keyring};

/// A message for a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSend {
    /// The replica.
    pub to: NodeId,
    /// An encoded request.
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
struct Outstanding {
    number: u64,
    bytes: Vec<u8>,
    resend_at_ns: u64,
    /// Per replica, the hash of the result it signed.
    answers: BTreeMap<NodeId, Hash>,
    results: BTreeMap<Hash, Vec<u8>>,
}

/// A client of a uBFT group.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    key: SigningKey,
    replicas: Vec<NodeId>,
    keys: Keyring,
    limits: Limits,
    retransmit_ns: u64,
    last_number: u64,
    outstanding: Option<Outstanding>,
    actions: VecDeque<ClientSend>,
    results: VecDeque<(u64, Vec<u8>)>,
    stats: Stats,
}

impl Client {
    /// Client `id` signing with `key`, of the group `replicas` (public keys in `keys`),
    /// retransmitting every `retransmit_ns` until answered.
    pub fn new(
        id: ClientId,
        key: SigningKey,
        replicas: Vec<NodeId>,
        keys: Keyring,
        limits: Limits,
        retransmit_ns: u64,
    ) -> Client {
        Client {
            id,
            key,
            replicas,
            keys,
            limits,
            retransmit_ns,
            last_number: 0,
            outstanding: None,
            actions: VecDeque::new(),
            results: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Sends `operation` to every replica and returns its number; `None` while a request
    /// is still outstanding.
    pub fn submit(&mut self, now_ns: u64, operation: Vec<u8>) -> Option<u64> {
        if self.outstanding.is_some() {
            return None;
        }
        self.last_number += 1;
        let number = self.last_number;
        let request = Request::signed(&self.key, self.id, number, operation);
        let bytes = DirectMessage::Request(request).encode();
        self.outstanding = Some(Outstanding {
            number,
            bytes,
            resend_at_ns: now_ns + self.retransmit_ns,
            answers: BTreeMap::new(),
            results: BTreeMap::new(),
        });
        self.send_all();
        Some(number)
    }

    fn send_all(&mut self) {
        let Some(outstanding) = &self.outstanding else { return };
        for &to in &self.replicas {
            self.actions.push_back(ClientSend { to, bytes: outstanding.bytes.clone() });
        }
    }

    /// A message from replica `from`.
    pub fn handle_reply(&mut self, from: NodeId, bytes: &[u8]) -> Result<(), Reject> {
        let result = self.on_reply(from, bytes);
        result.map_err(|reject| self.stats.refuse(reject))
    }

    fn on_reply(&mut self, from: NodeId, bytes: &[u8]) -> Result<(), Reject> {
        let DirectMessage::Reply(reply) = DirectMessage::decode(bytes, &self.limits)? else {
            return Err(Reject::UnexpectedSender { from: from.to_string(), kind: "non-reply" });
        };
        if reply.replica != from || reply.client != self.id || !self.replicas.contains(&from) {
            return Err(Reject::UnexpectedSender { from: from.to_string(), kind: "reply" });
        }
        // Stale first: the replies after the f + 1st are not worth a verify (~35 µs) each.
        if self.outstanding.as_ref().is_none_or(|o| o.number != reply.number) {
            return Err(Reject::Stale { what: "reply" });
        }
        if !self.keys.key(from).is_some_and(|key| reply.verify(key)) {
            return Err(Reject::BadSignature { what: "reply" });
        }
        let f = self.f();
        let outstanding = self.outstanding.as_mut().expect("checked above");
        let hash: Hash = blake3::hash(&reply.result).into();
        outstanding.answers.insert(from, hash);
        outstanding.results.entry(hash).or_insert(reply.result);
        let agreeing = outstanding.answers.values().filter(|&&h| h == hash).count();
        if agreeing > f {
            let number = outstanding.number;
            let result = outstanding.results.remove(&hash).expect("inserted");
            self.outstanding = None;
            self.results.push_back((number, result));
        }
        Ok(())
    }

    fn f(&self) -> usize {
        self.replicas.len() / 2
    }

    /// Retransmits when due.
    pub fn tick(&mut self, now_ns: u64) {
        let retransmit = self.retransmit_ns;
        if let Some(outstanding) = self.outstanding.as_mut().filter(|o| o.resend_at_ns <= now_ns) {
            outstanding.resend_at_ns = now_ns + retransmit;
            self.send_all();
        }
    }

    /// When [`Client::tick`] wants to run.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.outstanding.as_ref().map(|o| o.resend_at_ns)
    }

    /// The next message to send.
    pub fn poll_action(&mut self) -> Option<ClientSend> {
        self.actions.pop_front()
    }

    /// The next accepted result: `(number, result)`.
    pub fn poll_result(&mut self) -> Option<(u64, Vec<u8>)> {
        self.results.pop_front()
    }

    /// The outstanding request's number, if any.
    pub fn outstanding(&self) -> Option<u64> {
        self.outstanding.as_ref().map(|o| o.number)
    }

    /// What it refused.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}
