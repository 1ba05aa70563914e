//! What holders and grantors say to each other, and its 32-byte wire form.

use usec_qp_pool::NodeId;

use crate::error::{Error, Result};

/// A holder asks for the lease (or its renewal).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseRequest {
    /// The holder: the node asking.
    pub holder: NodeId,
    /// The holder's number for this request, echoed in the reply.
    pub request: u64,
}

/// The grantor's answer to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseReply {
    /// The holder may believe in the lease for `lease_ns` from the moment it asked.
    Granted {
        /// The holder asking.
        holder: NodeId,
        /// The request answered.
        request: u64,
        /// Δ.
        lease_ns: u64,
    },
    /// Another holder has the lease, for about `retry_after_ns` more (on the grantor's
    /// clock: a hint, not a promise).
    Denied {
        /// The holder asking.
        holder: NodeId,
        /// The request answered.
        request: u64,
        /// When asking again may succeed.
        retry_after_ns: u64,
    },
}

impl LeaseReply {
    /// The holder the reply is for.
    pub fn holder(&self) -> NodeId {
        match *self {
            LeaseReply::Granted { holder, .. } | LeaseReply::Denied { holder, .. } => holder,
        }
    }
}

/// Either message, as it travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LeaseMessage {
    /// Holder → grantor.
    Request(LeaseRequest),
    /// Grantor → holder.
    Reply(LeaseReply),
}

const MAGIC: [u8; 2] = *b"uL";
const KIND_REQUEST: u8 = 1;
const KIND_GRANTED: u8 = 2;
const KIND_DENIED: u8 = 3;

impl LeaseMessage {
    /// Bytes on the wire.
    pub const ENCODED_LEN: usize = 32;

    /// The wire form: magic, kind, a zero byte, the holder's node id (2 bytes, then 2
    /// zero bytes), request, then Δ or the retry hint, little-endian, zero-padded.
    pub fn encode(&self) -> [u8; LeaseMessage::ENCODED_LEN] {
        let (kind, holder, request, value) = match *self {
            LeaseMessage::Request(LeaseRequest { holder, request }) => (KIND_REQUEST, holder, request, 0),
            LeaseMessage::Reply(LeaseReply::Granted { holder, request, lease_ns }) => {
                (KIND_GRANTED, holder, request, lease_ns)
            }
            LeaseMessage::Reply(LeaseReply::Denied { holder, request, retry_after_ns }) => {
                (KIND_DENIED, holder, request, retry_after_ns)
            }
        };
        let mut bytes = [0u8; LeaseMessage::ENCODED_LEN];
        bytes[..2].copy_from_slice(&MAGIC);
        bytes[2] = kind;
        bytes[4..6].copy_from_slice(&holder.get().to_le_bytes());
        bytes[8..16].copy_from_slice(&request.to_le_bytes());
        bytes[16..24].copy_from_slice(&value.to_le_bytes());
        bytes
    }

    /// Decodes [`Self::encode`]'s form, refusing anything else.
    pub fn decode(bytes: &[u8]) -> Result<LeaseMessage> {
        let bad = |reason: String| Error::BadMessage { reason };
        if bytes.len() != LeaseMessage::ENCODED_LEN {
            return Err(bad(format!("{} bytes, expected {}", bytes.len(), LeaseMessage::ENCODED_LEN)));
        }
        if bytes[..2] != MAGIC
            || bytes[3] != 0
            || bytes[6..8] != [0, 0]
            || bytes[24..].iter().any(|&byte| byte != 0)
        {
            return Err(bad("not a lease message (magic or padding)".into()));
        }
        let word = |range: std::ops::Range<usize>| {
            let mut eight = [0u8; 8];
            eight.copy_from_slice(&bytes[range]);
            u64::from_le_bytes(eight)
        };
        let holder = NodeId::new(u16::from_le_bytes([bytes[4], bytes[5]]))
            .map_err(|error| bad(format!("the holder: {error}")))?;
        let (request, value) = (word(8..16), word(16..24));
        Ok(match bytes[2] {
            KIND_REQUEST if value == 0 => LeaseMessage::Request(LeaseRequest { holder, request }),
            KIND_GRANTED => LeaseMessage::Reply(LeaseReply::Granted { holder, request, lease_ns: value }),
            KIND_DENIED => LeaseMessage::Reply(LeaseReply::Denied { holder, request, retry_after_ns: value }),
            kind => return Err(bad(format!("unknown kind {kind} (or a request with a value)"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let holder = NodeId::new(7).unwrap();
        let messages = [
            LeaseMessage::Request(LeaseRequest { holder, request: 3 }),
            LeaseMessage::Reply(LeaseReply::Granted { holder, request: 3, lease_ns: 20_000 }),
            LeaseMessage::Reply(LeaseReply::Denied { holder, request: u64::MAX, retry_after_ns: 1 }),
        ];
        for message in messages {
            let bytes = message.encode();
            assert_eq!(LeaseMessage::decode(&bytes).unwrap(), message);
            for index in [0, 2, 3, 5, 6, 31] {
                let mut broken = bytes;
                broken[index] ^= 0x40;
                assert!(LeaseMessage::decode(&broken).is_err(), "byte {index} flipped was accepted");
            }
            assert!(LeaseMessage::decode(&bytes[..31]).is_err());
        }
    }
}
