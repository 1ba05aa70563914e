//! Proof that a broadcaster equivocated: two different messages for one index, both
//! signed by it.
//!
//! A correct broadcaster signs one message per index, so two valid signatures over two
//! different hashes for the same `(broadcaster, index)` convict it — anyone holding the
//! public keys can check, with no trust in whoever found the proof. Consensus on top uses
//! it to exclude the broadcaster (e.g. to change view away from a lying leader).

use usec_qp_pool::NodeId;

use super::signature::{Keyring, SignedHash};

/// Two different messages the broadcaster signed for one index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EquivocationProof {
    /// The broadcaster who signed both.
    pub broadcaster: NodeId,
    /// The index it signed twice.
    pub index: u64,
    /// The message the finder received (its hash and signature).
    pub first: SignedHash,
    /// The conflicting one (found in another receiver's register).
    pub second: SignedHash,
}

impl EquivocationProof {
    /// Whether this proves the broadcaster equivocated: the hashes differ and both
    /// signatures verify for `(broadcaster, index)` under `keys`.
    pub fn verify(&self, keys: &Keyring) -> bool {
        self.first.hash != self.second.hash
            && keys.verify(self.broadcaster, self.index, &self.first.hash, &self.first.signature)
            && keys.verify(self.broadcaster, self.index, &self.second.hash, &self.second.signature)
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::super::signature::{message_hash, sign};
    use super::*;

    #[test]
    fn a_proof_holds_only_for_two_different_messages_signed_for_one_index() {
        let signer = SigningKey::from_bytes(&[7; 32]);
        let b = NodeId::new(0).unwrap();
        let keys = Keyring::new([(b, signer.verifying_key())]);
        let signed = |index, message: &[u8]| {
            let hash = message_hash(message);
            SignedHash { hash, signature: sign(&signer, b, index, &hash) }
        };
        let proof =
            EquivocationProof { broadcaster: b, index: 3, first: signed(3, b"a"), second: signed(3, b"b") };
        assert!(proof.verify(&keys));
        // The same message twice proves nothing.
        assert!(!EquivocationProof { second: signed(3, b"a"), ..proof }.verify(&keys));
        // Two indices are two messages, not an equivocation.
        assert!(!EquivocationProof { second: signed(4, b"b"), ..proof }.verify(&keys));
        // A forged half proves nothing.
        let mut forged = signed(3, b"b");
        forged.signature[0] ^= 1;
        assert!(!EquivocationProof { second: forged, ..proof }.verify(&keys));
        // Another broadcaster's name on it proves nothing about that one.
        assert!(!EquivocationProof { broadcaster: NodeId::new(1).unwrap(), ..proof }.verify(&keys));
    }
}
