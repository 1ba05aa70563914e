//! The bytes of one ring slot: a frame that judges itself.
//!
//! ```text
//! 0   check     u64   xxh3-64 (seeded) of bytes 8 .. 24 + len
//! 8   sequence  u64   the sender's count of frames on this ring, from 0
//! 16  len       u32   payload bytes
//! 20  (zero)    4 bytes
//! 24  payload   len bytes
//! ```
//!
//! Frame `s` goes to slot `s % slots`. A reader polling a slot cannot tell a finished
//! WRITE from one still landing, a frame of an earlier lap, or a Byzantine sender's
//! garbage, unless the frame says: the check covers the sequence, so a torn frame fails
//! it and an earlier lap names an earlier sequence. Nothing depends on the order in which
//! a WRITE's bytes land (which the InfiniBand specification does not promise).

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Bytes before the payload.
pub const FRAME_HEADER_BYTES: usize = 24;

const FRAME_SEED: u64 = 0x7269_6e67_6672_616d; // "ringfram"

/// What a slot holds, as its reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotView<'a> {
    /// Never written: a zero header.
    Empty,
    /// A whole frame.
    Frame {
        /// Its sequence number.
        sequence: u64,
        /// Its payload.
        payload: &'a [u8],
    },
    /// A WRITE still landing, or garbage: read again later.
    Torn,
    /// A header that names more bytes than the slot holds: only a Byzantine sender
    /// writes that (a correct one never exceeds the ring's payload size).
    Oversized {
        /// The length it claims.
        len: usize,
    },
}

/// Bytes a frame of `payload_len` bytes takes.
pub const fn frame_bytes(payload_len: usize) -> usize {
    FRAME_HEADER_BYTES + payload_len
}

/// Writes the frame of `sequence` carrying `payload` at the start of `out` (at least
/// [`frame_bytes`] long); returns the bytes written.
pub fn encode(sequence: u64, payload: &[u8], out: &mut [u8]) -> usize {
    let len = u32::try_from(payload.len()).expect("a ring payload fits u32");
    let end = frame_bytes(payload.len());
    assert!(out.len() >= end, "the frame fits its slot");
    out[8..16].copy_from_slice(&sequence.to_le_bytes());
    out[16..20].copy_from_slice(&len.to_le_bytes());
    out[20..24].fill(0);
    out[24..end].copy_from_slice(payload);
    let check = xxh3_64_with_seed(&out[8..end], FRAME_SEED);
    out[..8].copy_from_slice(&check.to_le_bytes());
    end
}

/// The payload length a slot's header claims (to know how much more to read), or `None`
/// if `header` is shorter than a header.
pub fn claimed_len(header: &[u8]) -> Option<usize> {
    let bytes = header.get(16..20)?;
    Some(u32::from_le_bytes(bytes.try_into().expect("4 bytes")) as usize)
}

/// Reads the slot `bytes` (at least a header; the frame may end before `bytes` does),
/// whose payloads hold at most `max_payload` bytes.
pub fn decode(bytes: &[u8], max_payload: usize) -> SlotView<'_> {
    assert!(bytes.len() >= FRAME_HEADER_BYTES, "a slot holds a header");
    if bytes[..FRAME_HEADER_BYTES].iter().all(|&byte| byte == 0) {
        return SlotView::Empty;
    }
    let len = claimed_len(bytes).expect("a header");
    if len > max_payload {
        return SlotView::Oversized { len };
    }
    let end = frame_bytes(len);
    if bytes.len() < end || bytes[20..24] != [0; 4] {
        return SlotView::Torn;
    }
    let check = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if xxh3_64_with_seed(&bytes[8..end], FRAME_SEED) != check {
        return SlotView::Torn;
    }
    let sequence = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    SlotView::Frame { sequence, payload: &bytes[FRAME_HEADER_BYTES..end] }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn framed(sequence: u64, payload: &[u8], slot: usize) -> Vec<u8> {
        let mut out = vec![0; slot];
        encode(sequence, payload, &mut out);
        out
    }

    proptest! {
        #[test]
        fn frames_round_trip(sequence in any::<u64>(), payload in prop::collection::vec(any::<u8>(), 0..200)) {
            let bytes = framed(sequence, &payload, 256);
            prop_assert_eq!(decode(&bytes, 232), SlotView::Frame { sequence, payload: &payload });
        }

        /// A new frame landing over an old one, cut anywhere, reads as the old frame, the
        /// new one, or torn — never as something else.
        #[test]
        fn a_frame_landing_over_another_is_never_misread(
            old_sequence in any::<u64>(),
            old in prop::collection::vec(any::<u8>(), 0..100),
            new in prop::collection::vec(any::<u8>(), 0..100),
            landed in 0usize..=124,
        ) {
            let new_sequence = old_sequence.wrapping_add(8);
            let before = framed(old_sequence, &old, 124);
            let after = framed(new_sequence, &new, 124);
            let mut slot = before.clone();
            slot[..landed].copy_from_slice(&after[..landed]);
            match decode(&slot, 100) {
                SlotView::Frame { sequence, payload } => prop_assert!(
                    (sequence, payload) == (old_sequence, &old[..]) || (sequence, payload) == (new_sequence, &new[..])
                ),
                SlotView::Torn | SlotView::Oversized { .. } => {}
                SlotView::Empty => prop_assert!(false, "written bytes read as empty"),
            }
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 24..200), max in 0usize..300) {
            let _ = decode(&bytes, max);
        }
    }

    #[test]
    fn a_zero_slot_is_empty_and_a_flipped_bit_is_torn() {
        assert_eq!(decode(&[0; 64], 40), SlotView::Empty);
        let mut bytes = framed(7, b"hello", 64);
        bytes[27] ^= 4;
        assert_eq!(decode(&bytes, 40), SlotView::Torn);
    }

    #[test]
    fn a_header_claiming_more_than_a_slot_holds_is_oversized() {
        let bytes = framed(1, &[5; 50], 80);
        assert_eq!(decode(&bytes, 40), SlotView::Oversized { len: 50 });
    }
}
