//! What the broadcaster signs on the slow path, and the `{hash, signature}` value a
//! receiver publishes in its register.
//!
//! The signed statement is "broadcaster `b` says message `m` is its index `k`":
//! Ed25519 over `"ctbsign1" ‖ b (u16 LE) ‖ k (u64 LE) ‖ blake3(m)`.
//!
//! - The **broadcaster** is in it (uBFT's prototype left it out): a statement signed for
//!   one stream can never be replayed as another's, even if a key is ever shared between
//!   streams or roles.
//! - The **index travels in the clear, next to the hash**, rather than hashed together
//!   with the message (`blake3(b ‖ k ‖ m)`): a register holds only the 32-byte hash and
//!   the signature, and a reader must be able to check that a value it finds is about
//!   *its* index. With `blake3(b ‖ k ‖ m)` in the register, a Byzantine receiver could
//!   publish the broadcaster's genuine signature for another index; the reader would see a
//!   "different message, valid signature" and wrongly convict a correct broadcaster of
//!   equivocation (and give up the index). Here the reader rebuilds the statement from the
//!   index it wants, and such a replay simply fails to verify.
//! - A **domain tag** keeps these bytes from meaning anything to another protocol signing
//!   with the same key (consensus certificates later).
//! - **`verify_strict`** rejects non-canonical encodings and small-order keys, so one
//!   message cannot carry two valid signatures that look different (malleability would
//!   otherwise let a Byzantine receiver make a "mismatch" out of a genuine signature).
//! - BLAKE3 for the content hash: fast on long messages (SIMD), 256-bit collision
//!   resistance, which is what makes the hash stand for the message in a proof.

use std::collections::BTreeMap;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use usec_qp_pool::NodeId;

use super::entry::{Hash, SignatureBytes, HASH_BYTES, SIGNATURE_BYTES};

const DOMAIN: &[u8; 8] = b"ctbsign1";

/// Bytes of the signed statement.
const STATEMENT_BYTES: usize = 8 + 2 + 8 + HASH_BYTES;

/// Bytes of a register value: the hash, then the signature.
pub const REGISTER_VALUE_BYTES: usize = HASH_BYTES + SIGNATURE_BYTES;

/// The BLAKE3 hash of a message's bytes.
pub fn message_hash(message: &[u8]) -> Hash {
    blake3::hash(message).into()
}

fn statement(broadcaster: NodeId, index: u64, hash: &Hash) -> [u8; STATEMENT_BYTES] {
    let mut bytes = [0; STATEMENT_BYTES];
    bytes[..8].copy_from_slice(DOMAIN);
    bytes[8..10].copy_from_slice(&broadcaster.get().to_le_bytes());
    bytes[10..18].copy_from_slice(&index.to_le_bytes());
    bytes[18..].copy_from_slice(hash);
    bytes
}

/// The broadcaster's signature that `hash` is the hash of its message `index`.
pub fn sign(key: &SigningKey, broadcaster: NodeId, index: u64, hash: &Hash) -> SignatureBytes {
    key.sign(&statement(broadcaster, index, hash)).to_bytes()
}

/// Whether `signature` is `broadcaster`'s (key `key`) for `hash` at `index`.
pub fn verify(
    key: &VerifyingKey,
    broadcaster: NodeId,
    index: u64,
    hash: &Hash,
    signature: &SignatureBytes,
) -> bool {
    key.verify_strict(&statement(broadcaster, index, hash), &Signature::from_bytes(signature)).is_ok()
}

/// Every participant's public key, known to all.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    keys: BTreeMap<NodeId, VerifyingKey>,
}

impl Keyring {
    /// A keyring of `keys`.
    pub fn new(keys: impl IntoIterator<Item = (NodeId, VerifyingKey)>) -> Keyring {
        Keyring { keys: keys.into_iter().collect() }
    }

    /// `node`'s public key.
    pub fn key(&self, node: NodeId) -> Option<&VerifyingKey> {
        self.keys.get(&node)
    }

    /// Whether `signature` is `broadcaster`'s for `hash` at `index` (false for a stranger).
    pub fn verify(&self, broadcaster: NodeId, index: u64, hash: &Hash, signature: &SignatureBytes) -> bool {
        self.key(broadcaster).is_some_and(|key| verify(key, broadcaster, index, hash, signature))
    }
}

/// A message's hash with the broadcaster's signature over it: what a receiver publishes
/// in its register on the slow path, and half of an equivocation proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SignedHash {
    /// BLAKE3 of the message.
    pub hash: Hash,
    /// The broadcaster's signature over `(broadcaster, index, hash)`.
    pub signature: SignatureBytes,
}

impl SignedHash {
    /// The register value: hash then signature.
    pub fn to_register_value(&self) -> [u8; REGISTER_VALUE_BYTES] {
        let mut value = [0; REGISTER_VALUE_BYTES];
        value[..HASH_BYTES].copy_from_slice(&self.hash);
        value[HASH_BYTES..].copy_from_slice(&self.signature);
        value
    }

    /// Reads a register value; `None` when its length is wrong (only a Byzantine owner
    /// writes that). Any 96 bytes parse: whether they mean anything is the signature's
    /// business.
    pub fn from_register_value(value: &[u8]) -> Option<SignedHash> {
        if value.len() != REGISTER_VALUE_BYTES {
            return None;
        }
        Some(SignedHash {
            hash: value[..HASH_BYTES].try_into().expect("32 bytes"),
            signature: value[HASH_BYTES..].try_into().expect("64 bytes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn node(id: u16) -> NodeId {
        NodeId::new(id).unwrap()
    }

    #[test]
    fn a_signature_binds_broadcaster_index_and_content() {
        let signer = key(1);
        let keys = Keyring::new([(node(0), signer.verifying_key()), (node(1), key(2).verifying_key())]);
        let hash = message_hash(b"prepare");
        let signature = sign(&signer, node(0), 5, &hash);
        assert!(keys.verify(node(0), 5, &hash, &signature));
        assert!(!keys.verify(node(0), 6, &hash, &signature), "replayed at another index");
        assert!(!keys.verify(node(0), 5 + 128, &hash, &signature), "replayed a lap later");
        assert!(!keys.verify(node(0), 5, &message_hash(b"commit"), &signature), "another message");
        assert!(!keys.verify(node(1), 5, &hash, &signature), "claimed for another stream");
        assert!(!keys.verify(node(2), 5, &hash, &signature), "a stranger's stream");
    }

    #[test]
    fn the_same_key_signing_for_two_streams_cannot_be_confused() {
        // One key behind two stream ids (a misconfiguration, or a replica broadcasting on
        // two streams): the statement still names the stream.
        let signer = key(1);
        let keys = Keyring::new([(node(0), signer.verifying_key()), (node(1), signer.verifying_key())]);
        let hash = message_hash(b"m");
        let signature = sign(&signer, node(0), 9, &hash);
        assert!(keys.verify(node(0), 9, &hash, &signature));
        assert!(!keys.verify(node(1), 9, &hash, &signature));
    }

    proptest! {
        #[test]
        fn register_values_round_trip(hash in any::<[u8; 32]>(), signature in proptest::collection::vec(any::<u8>(), 64..=64)) {
            let value = SignedHash { hash, signature: signature.try_into().unwrap() };
            prop_assert_eq!(SignedHash::from_register_value(&value.to_register_value()), Some(value));
        }

        #[test]
        fn garbage_signatures_never_verify_and_never_panic(bytes in proptest::collection::vec(any::<u8>(), 64..=64), index in any::<u64>()) {
            let keys = Keyring::new([(node(0), key(1).verifying_key())]);
            let signature: SignatureBytes = bytes.try_into().unwrap();
            prop_assert!(!keys.verify(node(0), index, &message_hash(b"m"), &signature));
        }
    }

    #[test]
    fn a_register_value_of_the_wrong_length_is_refused() {
        assert_eq!(SignedHash::from_register_value(&[0; 95]), None);
        assert_eq!(SignedHash::from_register_value(&[0; 97]), None);
    }
}
