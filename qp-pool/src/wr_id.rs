//! Typed work-request ids: who a completion belongs to, packed into the `u64` that the
//! NIC hands back untouched. Every layer of the workspace uses this one scheme, send and
//! RECV work requests alike, with its kinds from the [registry](crate::wr_kind).
//!
//! Layout, most significant bits first:
//!
//! | bits | field | |
//! |---|---|---|
//! | 63..56 | `kind` (8 bits) | the owner: a [`WrKind`] from the registry |
//! | 55..44 | `peer` (12 bits) | the node the request went to (a [`NodeId`]: 0..=4095) |
//! | 43..0 | `sequence` (44 bits) | the owner's counter (a log index, a slot, a read number) |
//!
//! 2^44 sequence numbers last 4.8 hours at a billion per second and 200 days at a million;
//! an owner whose counter may run longer than that wraps it ([`WrId::wrapping`]) and
//! keeps no two requests with one id in flight. Every `u64` decodes to some `WrId`, so
//! decoding cannot fail; encoding checks each field.

use std::fmt;

use crate::error::{Error, Result};
use crate::spec::NodeId;
use crate::wr_kind::WrKind;

/// A work-request id: kind, peer and sequence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WrId {
    kind: WrKind,
    peer: NodeId,
    sequence: u64,
}

const PEER_BITS: u32 = 12;
const SEQUENCE_BITS: u32 = 44;

impl WrId {
    /// The largest sequence number.
    pub const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;

    /// An id, refusing a sequence above [`WrId::MAX_SEQUENCE`] (a [`WrKind`] and a
    /// [`NodeId`] always fit).
    pub fn new(kind: impl Into<WrKind>, peer: NodeId, sequence: u64) -> Result<WrId> {
        check_sequence(sequence)?;
        Ok(WrId { kind: kind.into(), peer, sequence })
    }

    /// An id with `sequence` taken modulo 2^44, for counters that run for ever.
    pub fn wrapping(kind: impl Into<WrKind>, peer: NodeId, sequence: u64) -> WrId {
        WrId { kind: kind.into(), peer, sequence: sequence & WrId::MAX_SEQUENCE }
    }

    /// The owner's kind.
    pub fn kind(self) -> WrKind {
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
        (u64::from(self.kind.value()) << (PEER_BITS + SEQUENCE_BITS))
            | (u64::from(self.peer.get()) << SEQUENCE_BITS)
            | self.sequence
    }

    /// Decodes a `wr_id` from a completion.
    pub fn from_raw(raw: u64) -> WrId {
        let peer = ((raw >> SEQUENCE_BITS) & ((1 << PEER_BITS) - 1)) as u16;
        WrId {
            kind: WrKind::from_value((raw >> (PEER_BITS + SEQUENCE_BITS)) as u8),
            peer: NodeId::new(peer).expect("12 bits always fit a node id"),
            sequence: raw & WrId::MAX_SEQUENCE,
        }
    }
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
        write!(f, "{} to node {} #{}", self.kind, self.peer, self.sequence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wr_kind::RegisteredKind;
    use proptest::prelude::*;

    #[test]
    fn fields_sit_where_documented() {
        let id = WrId::new(WrKind::application(0x2a), NodeId::new(0x123).unwrap(), 0x456_789a_bcde).unwrap();
        assert_eq!(id.to_raw(), 0xea12_3456_789a_bcde);
        assert_eq!(WrId::from_raw(u64::MAX).to_raw(), u64::MAX);
        assert_eq!(WrId::from_raw(0), WrId::default());
        let read = WrId::new(RegisteredKind::HeartbeatRead, NodeId::new(1).unwrap(), 2).unwrap();
        assert_eq!(read.to_raw(), 0x1000_1000_0000_0002);
        assert_eq!(read.to_string(), "heartbeat read to node 1 #2");
    }

    #[test]
    fn out_of_range_sequences_are_refused_or_wrapped() {
        let (peer, kind) = (NodeId::new(1).unwrap(), WrKind::application(0));
        let error = WrId::new(kind, peer, 1 << 44).unwrap_err().to_string();
        assert!(error.contains("sequence = 17592186044416 is out of range"), "{error}");
        assert!(WrId::new(kind, peer, WrId::MAX_SEQUENCE).is_ok());
        assert_eq!(WrId::wrapping(kind, peer, (1 << 44) + 5).sequence(), 5);
    }

    proptest! {
        #[test]
        fn packing_round_trips(kind in 0u8..WrKind::APPLICATION_KINDS, peer in 0u16..=4095, sequence in 0u64..(1 << 44)) {
            let id = WrId::new(WrKind::application(kind), NodeId::new(peer).unwrap(), sequence).unwrap();
            let back = WrId::from_raw(id.to_raw());
            prop_assert_eq!(back, id);
            prop_assert_eq!((back.kind().application_index(), back.peer().get(), back.sequence()), (Some(kind), peer, sequence));
        }

        #[test]
        fn every_raw_value_decodes_and_reencodes(raw in any::<u64>()) {
            prop_assert_eq!(WrId::from_raw(raw).to_raw(), raw);
        }

        /// Two ids of different kinds never share a raw value, whatever their peers and
        /// sequences: the owner of a completion is never in doubt.
        #[test]
        fn different_kinds_never_share_a_wr_id(
            a in any::<u8>(), b in any::<u8>(),
            peers in (0u16..=4095, 0u16..=4095),
            sequences in (0u64..(1 << 44), 0u64..(1 << 44)),
        ) {
            prop_assume!(a != b);
            let first = WrId::new(WrKind::from_value(a), NodeId::new(peers.0).unwrap(), sequences.0).unwrap();
            let second = WrId::new(WrKind::from_value(b), NodeId::new(peers.1).unwrap(), sequences.1).unwrap();
            prop_assert_ne!(first.to_raw(), second.to_raw());
            prop_assert_eq!(WrId::from_raw(first.to_raw()).kind(), WrKind::from_value(a));
        }
    }
}
