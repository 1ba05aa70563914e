//! Client requests and replica replies, and how each is authenticated.
//!
//! **Requests are Ed25519-signed by their client**, over
//! `"ubftreq1" ‖ client (u32 LE) ‖ number (u64 LE) ‖ blake3(operation)`. A signature and
//! not a per-replica MAC because a request travels inside the leader's prepare to every
//! replica, and each must be able to check on its own that the client sent it: a MAC key
//! shared with one replica convinces only that replica, and a vector of MACs (PBFT's
//! authenticators) lets a Byzantine client or leader make a request that verifies at some
//! replicas and not at others, splitting them. With a signature every correct replica
//! reaches the same verdict on the same bytes, and a Byzantine leader cannot invent a
//! request: every executed request came from a client. The cost (one verify per request
//! per replica) is off the leader's critical path only partly; batching amortises the
//! rest, as in uBFT.
//!
//! **Replies are Ed25519-signed by the replica**, over
//! `"ubftrep1" ‖ client ‖ number ‖ blake3(result)`, so a client counts f + 1 *distinct*
//! replicas vouching for one result without trusting the channel to name the sender.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use usec_qp_pool::NodeId;

use super::wire::{Reader, Writer};
use crate::bft::ctbcast::{Hash, SignatureBytes};

/// A client's identity (clients are not replicas: a separate name space).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

impl std::fmt::Display for ClientId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "client {}", self.0)
    }
}

/// One client request: the client's `number`-th operation. Numbers start at 1 and grow by
/// one per request, so a replica executes each at most once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Who sent it.
    pub client: ClientId,
    /// The client's request number.
    pub number: u64,
    /// The operation for the state machine.
    pub operation: Vec<u8>,
    /// The client's signature (see the module doc).
    pub signature: SignatureBytes,
}

fn request_statement(client: ClientId, number: u64, operation: &[u8]) -> [u8; 52] {
    let mut bytes = [0; 52];
    bytes[..8].copy_from_slice(b"ubftreq1");
    bytes[8..12].copy_from_slice(&client.0.to_le_bytes());
    bytes[12..20].copy_from_slice(&number.to_le_bytes());
    let hash: Hash = blake3::hash(operation).into();
    bytes[20..].copy_from_slice(&hash);
    bytes
}

fn reply_statement(client: ClientId, number: u64, result: &[u8]) -> [u8; 52] {
    let mut bytes = request_statement(client, number, result);
    bytes[..8].copy_from_slice(b"ubftrep1");
    bytes
}

impl Request {
    /// `client`'s request `number`, signed with its `key`.
    pub fn signed(key: &SigningKey, client: ClientId, number: u64, operation: Vec<u8>) -> Request {
        let signature = key.sign(&request_statement(client, number, &operation)).to_bytes();
        Request { client, number, operation, signature }
    }

    /// Whether the client's key signed it.
    pub fn verify(&self, keys: &ClientKeyring) -> bool {
        keys.keys.get(&self.client).is_some_and(|key| {
            let statement = request_statement(self.client, self.number, &self.operation);
            key.verify_strict(&statement, &Signature::from_bytes(&self.signature)).is_ok()
        })
    }

    pub(crate) fn encode(&self, out: &mut Writer) {
        out.u32(self.client.0);
        out.u64(self.number);
        out.bytes(&self.operation);
        out.raw(&self.signature);
    }

    pub(crate) fn decode(
        input: &mut Reader<'_>,
        max_operation_bytes: usize,
    ) -> Result<Request, super::Reject> {
        let client = ClientId(input.u32("request client")?);
        let number = input.u64("request number")?;
        let operation = input.bytes("request operation", max_operation_bytes)?.to_vec();
        let signature = input.array::<64>("request signature")?;
        Ok(Request { client, number, operation, signature })
    }
}

/// A replica's answer to a request, signed by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The request's client.
    pub client: ClientId,
    /// The request's number.
    pub number: u64,
    /// The replica that executed it.
    pub replica: NodeId,
    /// What the state machine answered.
    pub result: Vec<u8>,
    /// The replica's signature over `(client, number, blake3(result))`.
    pub signature: SignatureBytes,
}

impl Reply {
    /// `replica`'s reply, signed with its key.
    pub fn signed(
        key: &SigningKey,
        replica: NodeId,
        client: ClientId,
        number: u64,
        result: Vec<u8>,
    ) -> Reply {
        let signature = key.sign(&reply_statement(client, number, &result)).to_bytes();
        Reply { client, number, replica, result, signature }
    }

    /// Whether `key` (the named replica's) signed it.
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        let statement = reply_statement(self.client, self.number, &self.result);
        key.verify_strict(&statement, &Signature::from_bytes(&self.signature)).is_ok()
    }
}

/// Every client's public key, known to every replica.
#[derive(Clone, Debug, Default)]
pub struct ClientKeyring {
    keys: BTreeMap<ClientId, VerifyingKey>,
}

impl ClientKeyring {
    /// A keyring of `keys`.
    pub fn new(keys: impl IntoIterator<Item = (ClientId, VerifyingKey)>) -> ClientKeyring {
        ClientKeyring { keys: keys.into_iter().collect() }
    }

    /// Whether `client` is known.
    pub fn contains(&self, client: ClientId) -> bool {
        self.keys.contains_key(&client)
    }
}
