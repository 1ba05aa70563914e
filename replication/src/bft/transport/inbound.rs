//! Reading one ring in our own memory: the next frame in sequence, if it is there.
//!
//! The reader looks only at the slot of the sequence it expects next. What it finds:
//!
//! - that sequence, whole: the frame is taken and the expectation moves on;
//! - an older sequence, or nothing: the sender has not written it yet;
//! - a newer sequence in that slot (the sender lapped us, which a tail ring allows): the
//!   frames between are overwritten or about to be; the reader skips to the oldest one
//!   the ring can still hold and reads on from there (tail semantics: the newest frames
//!   are kept, the oldest lost);
//! - a torn frame: a WRITE still landing, or garbage; looked at again next time. A
//!   Byzantine sender can stall only its own ring so, which it could by staying silent.

use std::sync::atomic::Ordering;

use usec_verbs::Region;

use super::frame::{self, SlotView, FRAME_HEADER_BYTES};
use super::layout::{RingMode, RingSpec, StreamId};

/// Lap jumps one look may make before giving the other rings their turn.
const LAP_JUMPS_PER_LOOK: usize = 8;

/// What reading a ring counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InboundStats {
    /// Frames taken.
    pub frames: u64,
    /// Frames lost to a sender that lapped the reader (tail rings).
    pub skipped: u64,
    /// Times the expected slot was torn (a WRITE landing, or garbage).
    pub torn: u64,
    /// Frames refused: a sequence that does not belong in its slot, or a length no
    /// correct sender writes.
    pub refused: u64,
}

/// One ring we read.
#[derive(Debug)]
pub(super) struct InboundRing {
    pub spec: RingSpec,
    /// Where the ring starts in our inbound region.
    pub offset: usize,
    /// Where its consumption counter sits in our counter region.
    pub counter_offset: usize,
    pub next_sequence: u64,
    pub stats: InboundStats,
}

/// What one look at the ring found.
pub(super) enum Look {
    /// A frame, its payload copied into the buffer's first `len` bytes.
    Frame { len: usize },
    /// Nothing to take now.
    Nothing,
}

impl InboundRing {
    pub fn new(spec: RingSpec, offset: usize, counter_offset: usize) -> InboundRing {
        InboundRing { spec, offset, counter_offset, next_sequence: 0, stats: InboundStats::default() }
    }

    pub fn stream(&self) -> StreamId {
        self.spec.stream
    }

    /// Looks at the expected slot of the ring in `memory`, copying the frame's payload
    /// into `payload` (at least the ring's payload size) if one is there. `slot_buffer`
    /// is scratch space of at least a slot: one buffer serves rings of every size, and is
    /// never resized here (shrinking it for a small ring, then growing it back for a large
    /// one, zeroed a megabyte per poll and made every BFT request take milliseconds).
    pub fn look(&mut self, memory: &Region, slot_buffer: &mut [u8], payload: &mut [u8]) -> Look {
        let slots = u64::from(self.spec.slots);
        // Each turn of the loop returns or moves the expectation forward past a lap (the
        // slot we guessed from may be overwritten again by then); bounded so that a sender
        // lapping us without end cannot hold the reader here.
        for _ in 0..LAP_JUMPS_PER_LOOK {
            let slot = (self.next_sequence % slots) as usize;
            let at = self.offset + slot * self.spec.slot_bytes();
            let slot_buffer = &mut slot_buffer[..self.spec.slot_bytes()];
            // An earlier lap's frame (or a slot never written) is what a poll finds most of
            // the time: told by the sequence it claims, one word loaded (slots are aligned),
            // without copying the header or checksumming the rest. Nothing is taken on that
            // claim; a frame is taken only once it checks.
            if let Ok(word) = memory.atomic_u64(at + 8) {
                if u64::from_le(word.load(Ordering::Acquire)) < self.next_sequence {
                    return Look::Nothing;
                }
            }
            memory.read(at, &mut slot_buffer[..FRAME_HEADER_BYTES]).expect("the ring lies in the region");
            let claimed = u64::from_le_bytes(slot_buffer[8..16].try_into().expect("8 bytes"));
            if claimed < self.next_sequence {
                return Look::Nothing;
            }
            let len = frame::claimed_len(slot_buffer).expect("a header");
            let wanted = frame::frame_bytes(len.min(self.spec.max_payload_bytes as usize));
            memory
                .read(at + FRAME_HEADER_BYTES, &mut slot_buffer[FRAME_HEADER_BYTES..wanted])
                .expect("the ring lies in the region");
            match frame::decode(&slot_buffer[..wanted], self.spec.max_payload_bytes as usize) {
                SlotView::Empty => return Look::Nothing,
                SlotView::Torn => {
                    self.stats.torn += 1;
                    return Look::Nothing;
                }
                SlotView::Oversized { .. } => {
                    self.stats.refused += 1;
                    return Look::Nothing;
                }
                SlotView::Frame { sequence, .. } if sequence < self.next_sequence => return Look::Nothing,
                SlotView::Frame { sequence, payload: bytes } if sequence == self.next_sequence => {
                    payload[..bytes.len()].copy_from_slice(bytes);
                    self.next_sequence += 1;
                    self.stats.frames += 1;
                    return Look::Frame { len: bytes.len() };
                }
                SlotView::Frame { sequence, .. } => {
                    if sequence % slots != self.next_sequence % slots || sequence == u64::MAX {
                        // Not a frame a correct sender puts in this slot.
                        self.stats.refused += 1;
                        return Look::Nothing;
                    }
                    // Lapped: the oldest frame the ring may still hold follows the slot.
                    let oldest = sequence - slots + 1;
                    self.stats.skipped += oldest - self.next_sequence;
                    self.next_sequence = oldest;
                    if self.spec.mode == RingMode::Credit {
                        // A correct sender never laps a credit ring: count it, read on.
                        self.stats.refused += 1;
                    }
                }
            }
        }
        Look::Nothing
    }
}
