//! Typed work-request ids: who a completion belongs to, packed into the `u64` that the
//! NIC hands back untouched.
//!
//! Layout, most significant bits first: `kind` (4 bits: the owner, e.g. replication,
//! election, heartbeat), `peer` (12 bits: the node the request went to), `sequence` (48
//! bits: the owner's counter, e.g. a log index). Every `u64` decodes to some `WrId`, so
//! decoding cannot fail; encoding checks each field.

use std::fmt;

use crate::error::{Error, Result};
use crate::spec::NodeId;

/// A work-request id: kind, peer and sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WrId {
    kind: u8,
    peer: NodeId,
    sequence: u64,
}

const KIND_BITS: u32 = 4;
const PEER_BITS: u32 = 12;
const SEQUENCE_BITS: u32 = 48;

impl WrId {
    /// The largest kind.
    pub const MAX_KIND: u8 = (1 << KIND_BITS) - 1;
    /// The largest sequence number.
    pub const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;

    /// An id, refusing a kind above [`WrId::MAX_KIND`] or a sequence above
    /// [`WrId::MAX_SEQUENCE`] (a [`NodeId`] always fits).
    pub fn new(kind: u8, peer: NodeId, sequence: u64) -> Result<WrId> {
        check_kind(kind)?;
        check_sequence(sequence)?;
        Ok(WrId { kind, peer, sequence })
    }

    /// The owner's kind.
    pub fn kind(self) -> u8 {
        self.kind
    }

    /// The peer the request went to.
    pub fn peer(self) -> NodeId {
        self.peer
    }

    /// The owner's sequence number.
    pub fn sequence(self) -> u64 {
        self.sequence
    }

    /// The `wr_id` to post.
    pub fn to_raw(self) -> u64 {
        (u64::from(self.kind) << (PEER_BITS + SEQUENCE_BITS))
            | (u64::from(self.peer.get()) << SEQUENCE_BITS)
            | self.sequence
    }

    /// Decodes a `wr_id` from a completion.
    pub fn from_raw(raw: u64) -> WrId {
        let peer = ((raw >> SEQUENCE_BITS) & ((1 << PEER_BITS) - 1)) as u16;
        WrId {
            kind: (raw >> (PEER_BITS + SEQUENCE_BITS)) as u8,
            peer: NodeId::new(peer).expect("12 bits always fit a node id"),
            sequence: raw & WrId::MAX_SEQUENCE,
        }
    }
}

pub(crate) fn check_kind(kind: u8) -> Result<()> {
    if kind > WrId::MAX_KIND {
        return Err(Error::OutOfRange {
            what: "work-request kind",
            value: kind.into(),
            max: WrId::MAX_KIND.into(),
        });
    }
    Ok(())
}

pub(crate) fn check_sequence(sequence: u64) -> Result<()> {
    if sequence > WrId::MAX_SEQUENCE {
        return Err(Error::OutOfRange {
            what: "work-request sequence",
            value: sequence,
            max: WrId::MAX_SEQUENCE,
        });
    }
    Ok(())
}

impl fmt::Display for WrId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kind {} to node {} #{}", self.kind, self.peer, self.sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_sit_where_documented() {
        let id = WrId::new(0xa, NodeId::new(0x123).unwrap(), 0x4567_89ab_cdef).unwrap();
        assert_eq!(id.to_raw(), 0xa123_4567_89ab_cdef);
        assert_eq!(WrId::from_raw(u64::MAX).to_raw(), u64::MAX);
        assert_eq!(WrId::from_raw(0), WrId::default());
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let peer = NodeId::new(1).unwrap();
        let kind = WrId::new(16, peer, 0).unwrap_err().to_string();
        assert!(kind.contains("kind = 16 is out of range (at most 15)"), "{kind}");
        assert!(WrId::new(0, peer, 1 << 48).is_err());
        assert!(WrId::new(15, peer, WrId::MAX_SEQUENCE).is_ok());
    }

    proptest! {
        #[test]
        fn packing_round_trips(kind in 0u8..=15, peer in 0u16..=4095, sequence in 0u64..(1 << 48)) {
            let id = WrId::new(kind, NodeId::new(peer).unwrap(), sequence).unwrap();
            let back = WrId::from_raw(id.to_raw());
            prop_assert_eq!(back, id);
            prop_assert_eq!((back.kind(), back.peer().get(), back.sequence()), (kind, peer, sequence));
        }

        #[test]
        fn every_raw_value_decodes_and_reencodes(raw in any::<u64>()) {
            prop_assert_eq!(WrId::from_raw(raw).to_raw(), raw);
        }
    }
}
