//! Which ring each CTBcast entry travels on, and the ring plan of a group of participants.
//!
//! Between a sender `s` and a receiver `r`, for every broadcaster `b`'s stream, the
//! entries `s` may send `r` are of one kind only, and each kind gets a ring of `tail`
//! slots (so a message is never overwritten by a signature of the same index):
//!
//! | ring (stream id `4b + class`) | when | carries |
//! |---|---|---|
//! | message (class 0) | `b = s` | `b`'s messages, index `i` as frame `i` (slot `i % tail`) |
//! | signature (class 1) | `b = s` | `b`'s signatures, ahead of need or asked for |
//! | request (class 3) | `b = r` | `s` asking `r` for a signature of `r`'s stream |
//! | echo (class 2) | `b ∉ {s, r}` | `s`'s echoes of `b`'s messages to `r` |
//!
//! and, if configured, one credit ring for point-to-point messages ([`P2P_STREAM`]), which
//! a consensus layer uses for what is not a broadcast.

use usec_qp_pool::NodeId;

use super::super::ctbcast::entry::ENTRY_HEADER_BYTES;
use super::super::ctbcast::CtbConfig;
use super::super::transport::{RingMode, RingPlan, RingSpec, StreamId};
use crate::error::{Error, Result};

/// A broadcaster's messages.
const MESSAGE: u16 = 0;
/// A broadcaster's signatures.
const SIGNATURE: u16 = 1;
/// Receivers' echoes.
const ECHO: u16 = 2;
/// Receivers' signature requests.
const REQUEST: u16 = 3;

/// The point-to-point ring between every two participants (above every CTBcast stream id).
pub const P2P_STREAM: StreamId = StreamId(0xC000);

/// Participants' ids must stay below this for stream ids to fit 16 bits under
/// [`P2P_STREAM`].
pub const PARTICIPANT_ID_LIMIT: u16 = 0xC000 / 4;

/// A point-to-point ring's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P2pConfig {
    /// Frames it holds.
    pub slots: u32,
    /// The longest message.
    pub max_message_bytes: u32,
}

/// The ring of broadcaster `broadcaster`'s stream of `class`.
fn stream(broadcaster: NodeId, class: u16) -> StreamId {
    StreamId(broadcaster.get() * 4 + class)
}

/// The ring of `broadcaster`'s messages.
pub fn message_stream(broadcaster: NodeId) -> StreamId {
    stream(broadcaster, MESSAGE)
}

/// The ring an encoded CTBcast entry goes on, read from its header (kind and
/// broadcaster); `None` for bytes no role produces.
pub fn stream_of(entry: &[u8]) -> Option<StreamId> {
    let header = entry.get(..ENTRY_HEADER_BYTES)?;
    let broadcaster = NodeId::new(u16::from_le_bytes([header[16], header[17]])).ok()?;
    let class = match header[24] {
        1 => MESSAGE,
        2 | 3 => ECHO,
        4 => SIGNATURE,
        5 => REQUEST,
        _ => return None,
    };
    Some(stream(broadcaster, class))
}

/// The broadcaster whose stream ring `stream` belongs to, or `None` for the
/// point-to-point ring.
pub fn broadcaster_of(stream: StreamId) -> Option<NodeId> {
    if stream.0 >= P2P_STREAM.0 {
        return None;
    }
    NodeId::new(stream.0 / 4).ok()
}

/// The rings of `participants` (each broadcasting one stream to all the others) with
/// `ctb`'s tail and sizes, plus point-to-point rings if `p2p` says so.
pub fn plan(participants: &[NodeId], ctb: &CtbConfig, p2p: Option<P2pConfig>) -> Result<RingPlan> {
    if let Some(too_big) = participants.iter().find(|id| id.get() >= PARTICIPANT_ID_LIMIT) {
        return Err(Error::Config(format!("participant id {too_big} is {PARTICIPANT_ID_LIMIT} or more")));
    }
    let slots = u32::try_from(ctb.tail).map_err(|_| Error::Config("a tail beyond u32".into()))?;
    let header = ENTRY_HEADER_BYTES as u32;
    let max_message =
        u32::try_from(ctb.max_message_bytes).map_err(|_| Error::Config("messages beyond u32".into()))?;
    let echo_copy = (ctb.echo_copy_below_bytes as u32).saturating_sub(1).min(max_message).max(32);
    let ring = |class: u16, broadcaster: NodeId, payload: u32| RingSpec {
        stream: stream(broadcaster, class),
        slots,
        max_payload_bytes: header + payload,
        mode: RingMode::Tail,
    };
    let mut plan = RingPlan::new();
    for &sender in participants {
        for &receiver in participants.iter().filter(|&&receiver| receiver != sender) {
            plan.add(sender, receiver, ring(MESSAGE, sender, max_message))?;
            plan.add(sender, receiver, ring(SIGNATURE, sender, 64))?;
            plan.add(sender, receiver, ring(REQUEST, receiver, 0))?;
            for &broadcaster in participants.iter().filter(|&&b| b != sender && b != receiver) {
                plan.add(sender, receiver, ring(ECHO, broadcaster, echo_copy))?;
            }
            if let Some(p2p) = p2p {
                let spec = RingSpec {
                    stream: P2P_STREAM,
                    slots: p2p.slots,
                    max_payload_bytes: p2p.max_message_bytes,
                    mode: RingMode::Credit,
                };
                plan.add(sender, receiver, spec)?;
            }
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::super::super::ctbcast::{Body, Entry};
    use super::*;

    fn id(n: u16) -> NodeId {
        NodeId::new(n).unwrap()
    }

    #[test]
    fn every_kind_of_entry_has_a_ring_from_its_sender_to_its_receiver() {
        let participants = [id(0), id(1), id(2)];
        let ctb = CtbConfig { tail: 8, max_message_bytes: 100, ..CtbConfig::default() };
        let plan = plan(&participants, &ctb, None).unwrap();
        let entry =
            |broadcaster: u16, sender: u16, body| Entry { index: 3, broadcaster, sender, body }.encode();
        let cases = [
            (0, 1, entry(0, 0, Body::Message(&[1; 100]))),
            (0, 2, entry(0, 0, Body::Signature([2; 64]))),
            (1, 2, entry(0, 1, Body::EchoCopy(&[1; 100]))),
            (2, 1, entry(0, 2, Body::EchoHash([3; 32]))),
            (1, 0, entry(0, 1, Body::SignatureRequest)),
        ];
        for (from, to, bytes) in cases {
            let stream = stream_of(&bytes).unwrap();
            let ring = plan.rings(id(from), id(to)).into_iter().find(|placed| placed.spec.stream == stream);
            let ring = ring.unwrap_or_else(|| panic!("no ring {stream:?} from {from} to {to}"));
            assert!(bytes.len() <= ring.spec.max_payload_bytes as usize, "{stream:?}");
            assert_eq!(broadcaster_of(stream), Some(id(0)));
        }
        assert_eq!(stream_of(&[0; 10]), None);
        assert_eq!(broadcaster_of(P2P_STREAM), None);
    }
}
