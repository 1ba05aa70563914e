//! Signature shares and prepare certificates (the slow path).
//!
//! A share is a replica's Ed25519 signature over
//! `"ubftcert" ‖ view (u64 LE) ‖ slot (u64 LE) ‖ digest`: "I promised this batch for this
//! slot in this view". A correct replica signs at most one digest per `(view, slot)` — the
//! first prepare of that view's leader for the slot, which every correct replica sees the
//! same (CTBcast) — so f + 1 shares (one of them from a correct replica) pin the batch: two
//! certificates for one `(view, slot)` always name the same digest. The domain tag keeps a
//! share from meaning anything to CTBcast, whose statements use the same keys.

use std::collections::BTreeSet;

use ed25519_dalek::{Signature, Signer as _, SigningKey};
use usec_qp_pool::NodeId;

use super::reject::Reject;
use super::wire::Share;
use crate::bft::ctbcast::{Hash, Keyring, SignatureBytes};

fn statement(view: u64, slot: u64, digest: &Hash) -> [u8; 56] {
    tagged(b"ubftcert", view, slot, digest)
}

fn tagged(tag: &[u8; 8], view: u64, slot: u64, digest: &Hash) -> [u8; 56] {
    let mut bytes = [0; 56];
    bytes[..8].copy_from_slice(tag);
    bytes[8..16].copy_from_slice(&view.to_le_bytes());
    bytes[16..24].copy_from_slice(&slot.to_le_bytes());
    bytes[24..].copy_from_slice(digest);
    bytes
}

/// This replica's share for `(view, slot, digest)`.
pub fn sign_share(key: &SigningKey, view: u64, slot: u64, digest: &Hash) -> SignatureBytes {
    key.sign(&statement(view, slot, digest)).to_bytes()
}

/// Whether `signer` signed `(view, slot, digest)`.
pub fn verify_share(
    keys: &Keyring,
    signer: NodeId,
    view: u64,
    slot: u64,
    digest: &Hash,
    signature: &SignatureBytes,
) -> bool {
    keys.key(signer).is_some_and(|key| {
        key.verify_strict(&statement(view, slot, digest), &Signature::from_bytes(signature)).is_ok()
    })
}

/// Checks a certificate: at least `needed` distinct members of `replicas` with valid
/// shares. Shares from strangers or that do not verify are not counted.
pub fn verify_certificate(
    keys: &Keyring,
    replicas: &[NodeId],
    needed: usize,
    view: u64,
    slot: u64,
    digest: &Hash,
    certificate: &[Share],
) -> Result<(), Reject> {
    let mut signers = BTreeSet::new();
    for (signer, signature) in certificate {
        if signers.contains(signer) || !replicas.contains(signer) {
            continue;
        }
        if verify_share(keys, *signer, view, slot, digest, signature) {
            signers.insert(*signer);
        }
    }
    if signers.len() < needed {
        return Err(Reject::ThinCertificate { found: signers.len(), needed });
    }
    Ok(())
}

/// This replica's signature on its history digest after `slot` (a checkpoint).
pub fn sign_checkpoint(key: &SigningKey, slot: u64, digest: &Hash) -> SignatureBytes {
    key.sign(&tagged(b"ubftckpt", 0, slot, digest)).to_bytes()
}

/// Checks a stable checkpoint certificate: `needed` distinct replicas signed `(slot, digest)`.
pub fn verify_checkpoint_certificate(
    keys: &Keyring,
    replicas: &[NodeId],
    needed: usize,
    slot: u64,
    digest: &Hash,
    certificate: &[Share],
) -> Result<(), Reject> {
    let mut signers = BTreeSet::new();
    for (signer, signature) in certificate {
        let valid = keys.key(*signer).is_some_and(|key| {
            let statement = tagged(b"ubftckpt", 0, slot, digest);
            key.verify_strict(&statement, &Signature::from_bytes(signature)).is_ok()
        });
        if replicas.contains(signer) && valid {
            signers.insert(*signer);
        }
    }
    if signers.len() < needed {
        return Err(Reject::ThinCertificate { found: signers.len(), needed });
    }
    Ok(())
}
