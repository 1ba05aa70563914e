//! Ring entries: what one CTBcast participant writes into another's memory.
//!
//! On RDMA every (sender, receiver, kind) pair has a ring of `tail` slots in the
//! receiver's memory, and the sender WRITEs the entry for index `i` into slot `i % tail`.
//! A reader polls a slot and cannot know whether the bytes there are a finished write,
//! one still landing, an entry from an earlier lap, or garbage from a Byzantine sender, so
//! every entry carries what it needs to judge itself:
//!
//! ```text
//! 0   check        u64   xxh3-64 (seeded) of bytes 8 .. 32 + len
//! 8   index        u64   the CTBcast index (absolute, never wraps): tells the lap
//! 16  broadcaster  u16   whose stream the entry belongs to
//! 18  sender       u16   who wrote it (must be the ring's owner on our side)
//! 20  len          u32   payload bytes
//! 24  kind         u8    1 message, 2 echo copy, 3 echo hash, 4 signature, 5 signature request
//! 25  (zero)       7 bytes
//! 32  payload      len bytes
//! ```
//!
//! The checksum is for integrity, not authenticity: a torn or garbage entry fails it
//! (2^-64 per read for a random mixture); a Byzantine sender can write a well-formed entry
//! with any content, which is why the channel (the ring) names the sender and the roles
//! check the named sender, the stream and the index against what they expect. xxh3 and not
//! BLAKE3 because it runs on every entry on the fast path and needs no cryptographic
//! strength here — the ring's write rights already say who wrote.
//!
//! Bytes after `32 + len` are ignored: a driver may hand over a whole ring slot.

use xxhash_rust::xxh3::xxh3_64_with_seed;

use super::reject::Reject;

/// Bytes before the payload.
pub const ENTRY_HEADER_BYTES: usize = 32;

/// Bytes of a content hash (BLAKE3).
pub const HASH_BYTES: usize = 32;

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_BYTES: usize = 64;

const ENTRY_SEED: u64 = 0x6374_6265_6e74_7279; // "ctbentry"

/// A BLAKE3 hash of a message's bytes.
pub type Hash = [u8; HASH_BYTES];

/// An Ed25519 signature's bytes.
pub type SignatureBytes = [u8; SIGNATURE_BYTES];

/// What an entry carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// The broadcaster's message for the index.
    Message(&'a [u8]),
    /// A receiver's echo of the message it got, as a copy (short messages: comparing
    /// bytes is cheaper than hashing them).
    EchoCopy(&'a [u8]),
    /// A receiver's echo of the message it got, as its BLAKE3 hash (long messages).
    EchoHash(Hash),
    /// The broadcaster's signature over `(broadcaster, index, blake3(message))`.
    Signature(SignatureBytes),
    /// A receiver asks the broadcaster for the index's signature (its fast path timed out).
    SignatureRequest,
}

impl Body<'_> {
    fn code(&self) -> u8 {
        match self {
            Body::Message(_) => 1,
            Body::EchoCopy(_) => 2,
            Body::EchoHash(_) => 3,
            Body::Signature(_) => 4,
            Body::SignatureRequest => 5,
        }
    }

    /// The kind's name, for refusals and logs.
    pub fn kind_name(&self) -> &'static str {
        kind_name(self.code())
    }

    fn payload(&self) -> &[u8] {
        match self {
            Body::Message(bytes) | Body::EchoCopy(bytes) => bytes,
            Body::EchoHash(hash) => hash,
            Body::Signature(signature) => signature,
            Body::SignatureRequest => &[],
        }
    }
}

fn kind_name(code: u8) -> &'static str {
    match code {
        1 => "message",
        2 => "echo-copy",
        3 => "echo-hash",
        4 => "signature",
        5 => "signature-request",
        _ => "unknown",
    }
}

/// One entry, borrowed from the bytes it was decoded from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The CTBcast index it is about.
    pub index: u64,
    /// The stream's broadcaster (raw: a Byzantine writer may put anything here).
    pub broadcaster: u16,
    /// Who wrote it (raw, as above).
    pub sender: u16,
    /// What it carries.
    pub body: Body<'a>,
}

impl Entry<'_> {
    /// Bytes the encoded entry takes.
    pub fn encoded_len(&self) -> usize {
        ENTRY_HEADER_BYTES + self.body.payload().len()
    }

    /// The entry as bytes, checksum included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(&mut out);
        out
    }

    /// Appends the encoded entry to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let payload = self.body.payload();
        let len = u32::try_from(payload.len()).expect("a payload fits u32 (messages are bounded by config)");
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&self.index.to_le_bytes());
        out.extend_from_slice(&self.broadcaster.to_le_bytes());
        out.extend_from_slice(&self.sender.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.push(self.body.code());
        out.extend_from_slice(&[0; 7]);
        out.extend_from_slice(payload);
        let check = xxh3_64_with_seed(&out[start + 8..], ENTRY_SEED);
        out[start..start + 8].copy_from_slice(&check.to_le_bytes());
    }
}

impl<'a> Entry<'a> {
    /// Reads an entry from `bytes` (which may run past its end), checking its length,
    /// checksum, kind and payload shape — nothing about who may send it or which index is
    /// wanted; the roles check those.
    pub fn decode(bytes: &'a [u8]) -> Result<Entry<'a>, Reject> {
        if bytes.len() < ENTRY_HEADER_BYTES {
            return Err(Reject::Truncated { len: bytes.len(), needed: ENTRY_HEADER_BYTES });
        }
        let len = u32::from_le_bytes(bytes[20..24].try_into().expect("4 bytes")) as usize;
        let needed = ENTRY_HEADER_BYTES.saturating_add(len);
        if bytes.len() < needed {
            return Err(Reject::Truncated { len: bytes.len(), needed });
        }
        let check = u64::from_le_bytes(bytes[0..8].try_into().expect("8 bytes"));
        if xxh3_64_with_seed(&bytes[8..needed], ENTRY_SEED) != check {
            return Err(Reject::Checksum);
        }
        let code = bytes[24];
        if bytes[25..32] != [0; 7] {
            // Checksummed but not what any version writes: a Byzantine sender's entry.
            return Err(Reject::PayloadLength { kind: kind_name(code), len });
        }
        let payload = &bytes[ENTRY_HEADER_BYTES..needed];
        let body = match code {
            1 => Body::Message(payload),
            2 => Body::EchoCopy(payload),
            3 => Body::EchoHash(fixed(payload, code)?),
            4 => Body::Signature(fixed(payload, code)?),
            5 if payload.is_empty() => Body::SignatureRequest,
            5 => return Err(Reject::PayloadLength { kind: kind_name(code), len }),
            _ => return Err(Reject::UnknownKind(code)),
        };
        Ok(Entry {
            index: u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")),
            broadcaster: u16::from_le_bytes(bytes[16..18].try_into().expect("2 bytes")),
            sender: u16::from_le_bytes(bytes[18..20].try_into().expect("2 bytes")),
            body,
        })
    }
}

fn fixed<const N: usize>(payload: &[u8], code: u8) -> Result<[u8; N], Reject> {
    payload.try_into().map_err(|_| Reject::PayloadLength { kind: kind_name(code), len: payload.len() })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn body_strategy() -> impl Strategy<Value = (u8, Vec<u8>)> {
        prop_oneof![
            (Just(1u8), proptest::collection::vec(any::<u8>(), 0..300)),
            (Just(2u8), proptest::collection::vec(any::<u8>(), 0..300)),
            (Just(3u8), proptest::collection::vec(any::<u8>(), 32..=32)),
            (Just(4u8), proptest::collection::vec(any::<u8>(), 64..=64)),
            (Just(5u8), Just(Vec::new())),
        ]
    }

    fn body(code: u8, bytes: &[u8]) -> Body<'_> {
        match code {
            1 => Body::Message(bytes),
            2 => Body::EchoCopy(bytes),
            3 => Body::EchoHash(bytes.try_into().unwrap()),
            4 => Body::Signature(bytes.try_into().unwrap()),
            _ => Body::SignatureRequest,
        }
    }

    proptest! {
        #[test]
        fn entries_round_trip_and_ignore_trailing_bytes(
            index in any::<u64>(), broadcaster in any::<u16>(), sender in any::<u16>(),
            (code, payload) in body_strategy(), trailing in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let entry = Entry { index, broadcaster, sender, body: body(code, &payload) };
            let mut bytes = entry.encode();
            prop_assert_eq!(bytes.len(), entry.encoded_len());
            bytes.extend_from_slice(&trailing);
            prop_assert_eq!(Entry::decode(&bytes), Ok(entry));
        }

        #[test]
        fn every_truncation_is_refused(
            (code, payload) in body_strategy(), cut in any::<prop::sample::Index>(),
        ) {
            let bytes = Entry { index: 7, broadcaster: 0, sender: 1, body: body(code, &payload) }.encode();
            let cut = cut.index(bytes.len());
            let refused = matches!(Entry::decode(&bytes[..cut]), Err(Reject::Truncated { .. }) | Err(Reject::Checksum));
            prop_assert!(refused);
        }

        #[test]
        fn every_flipped_bit_is_refused(
            (code, payload) in body_strategy(), bit in any::<prop::sample::Index>(),
        ) {
            let mut bytes = Entry { index: 7, broadcaster: 0, sender: 1, body: body(code, &payload) }.encode();
            let bit = bit.index(bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(Entry::decode(&bytes).is_err());
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Entry::decode(&bytes);
        }
    }

    #[test]
    fn a_torn_write_is_refused() {
        let old = Entry { index: 3, broadcaster: 0, sender: 0, body: Body::Message(&[1; 100]) }.encode();
        let new = Entry { index: 7, broadcaster: 0, sender: 0, body: Body::Message(&[2; 100]) }.encode();
        // The new entry's first half has landed over the old one.
        let mut slot = old.clone();
        slot[..60].copy_from_slice(&new[..60]);
        assert_eq!(Entry::decode(&slot), Err(Reject::Checksum));
    }

    #[test]
    fn shapes_that_do_not_fit_their_kind_are_refused() {
        let mut request =
            Entry { index: 1, broadcaster: 0, sender: 1, body: Body::Message(&[9; 5]) }.encode();
        request[24] = 5; // a signature request with a payload
        let check = xxh3_64_with_seed(&request[8..], ENTRY_SEED);
        request[..8].copy_from_slice(&check.to_le_bytes());
        assert_eq!(Entry::decode(&request), Err(Reject::PayloadLength { kind: "signature-request", len: 5 }));
        let mut short_hash = request.clone();
        short_hash[24] = 3;
        let check = xxh3_64_with_seed(&short_hash[8..], ENTRY_SEED);
        short_hash[..8].copy_from_slice(&check.to_le_bytes());
        assert_eq!(Entry::decode(&short_hash), Err(Reject::PayloadLength { kind: "echo-hash", len: 5 }));
        let mut unknown = request.clone();
        unknown[24] = 99;
        let check = xxh3_64_with_seed(&unknown[8..], ENTRY_SEED);
        unknown[..8].copy_from_slice(&check.to_le_bytes());
        assert_eq!(Entry::decode(&unknown), Err(Reject::UnknownKind(99)));
    }
}
