//! The bytes of a register: two sub-slots, each validating itself.
//!
//! ```text
//! offset  field        size
//! 0       check        u64 LE   xxh3-64 of bytes 8 .. 16 + value_bytes (incarnation ‖ value)
//! 8       incarnation  u64 LE   1, 2, …; 0 only in a sub-slot never written
//! 16      value        value_bytes
//! ```
//!
//! A register is two sub-slots side by side, read in one RDMA READ. The writer alternates
//! between them, so while one is being overwritten the other still holds the previous
//! complete write (a memory node applies one writer's WRITEs in order: they come on one RC
//! QP). A reader that catches a sub-slot half written sees its check fail and takes the
//! other; if both fail it reads again, and a writer that leaves both failing for good
//! wrote garbage on purpose. The check is an integrity code, not a signature: only the
//! owner can write its registers (RDMA rights), so what it protects against is torn and
//! stale reads, and a Byzantine owner can only make its own registers unreadable, which
//! readers detect.

use xxhash_rust::xxh3::xxh3_64;

/// Bytes of a sub-slot's header: check and incarnation.
///
/// The incarnation is 64 bits wide, as CTBcast's are (`index / tail + 1` with indices up
/// to 2^62): 32 bits would run out after 2^32 laps of the slots, at a tail of 128 and a
/// million broadcasts a second in under a week.
pub const HEADER_BYTES: usize = 16;

/// Bytes of one sub-slot holding values of `value_bytes`.
pub const fn sub_slot_bytes(value_bytes: usize) -> usize {
    HEADER_BYTES + value_bytes
}

/// Bytes of one register (two sub-slots) holding values of `value_bytes`.
pub const fn register_bytes(value_bytes: usize) -> usize {
    2 * sub_slot_bytes(value_bytes)
}

/// What one sub-slot holds, as a reader sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubSlot<'a> {
    /// Never written: all zero.
    Empty,
    /// A complete write.
    Valid {
        /// Its incarnation (at least 1).
        incarnation: u64,
        /// Its value (the register's full value size).
        value: &'a [u8],
    },
    /// Torn, or garbage: the check does not match, or incarnation 0 with bytes in it.
    Invalid,
}

/// Encodes a write of `value` (zero-padded to `value_bytes`) at `incarnation` into `out`,
/// which must be one sub-slot long.
pub fn encode(incarnation: u64, value: &[u8], out: &mut [u8]) {
    assert!(incarnation >= 1, "incarnation 0 marks a sub-slot never written");
    assert!(
        out.len() >= HEADER_BYTES && value.len() <= out.len() - HEADER_BYTES,
        "the value fits the sub-slot"
    );
    out[8..16].copy_from_slice(&incarnation.to_le_bytes());
    out[16..16 + value.len()].copy_from_slice(value);
    out[16 + value.len()..].fill(0);
    let check = xxh3_64(&out[8..]);
    out[..8].copy_from_slice(&check.to_le_bytes());
}

/// Decodes one sub-slot (`bytes` is exactly one sub-slot).
pub fn decode(bytes: &[u8]) -> SubSlot<'_> {
    assert!(bytes.len() >= HEADER_BYTES, "a sub-slot has a header");
    if bytes.iter().all(|&byte| byte == 0) {
        return SubSlot::Empty;
    }
    let check = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let incarnation = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    if incarnation == 0 || check != xxh3_64(&bytes[8..]) {
        return SubSlot::Invalid;
    }
    SubSlot::Valid { incarnation, value: &bytes[16..] }
}

/// What a whole register (both sub-slots) holds, as one memory node has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterView {
    /// Both sub-slots never written.
    Empty,
    /// The newest valid sub-slot (the other may be older, empty or torn).
    Value {
        /// Its incarnation.
        incarnation: u64,
        /// Its value.
        value: Vec<u8>,
    },
    /// Both sub-slots invalid: a READ that raced two WRITEs (read again), or garbage.
    Torn,
    /// Both sub-slots valid with one incarnation and different values: the writer wrote
    /// two values under one incarnation, which a correct writer never does.
    Conflicting {
        /// The incarnation written twice.
        incarnation: u64,
    },
}

/// Decodes a register read in one piece (`bytes` is two sub-slots long).
pub fn decode_register(bytes: &[u8]) -> RegisterView {
    assert!(bytes.len() % 2 == 0, "a register is two sub-slots");
    let (first, second) = bytes.split_at(bytes.len() / 2);
    match (decode(first), decode(second)) {
        (SubSlot::Empty, SubSlot::Empty) => RegisterView::Empty,
        (SubSlot::Valid { incarnation: a, value: x }, SubSlot::Valid { incarnation: b, value: y }) => {
            if a == b && x != y {
                return RegisterView::Conflicting { incarnation: a };
            }
            let (incarnation, value) = if a >= b { (a, x) } else { (b, y) };
            RegisterView::Value { incarnation, value: value.to_vec() }
        }
        (SubSlot::Valid { incarnation, value }, _) | (_, SubSlot::Valid { incarnation, value }) => {
            RegisterView::Value { incarnation, value: value.to_vec() }
        }
        // The first write of the register, still landing: nothing written yet. (A writer
        // that leaves it so on purpose only hides a value, as one that never writes does.)
        (SubSlot::Invalid, SubSlot::Empty) | (SubSlot::Empty, SubSlot::Invalid) => RegisterView::Empty,
        (SubSlot::Invalid, SubSlot::Invalid) => RegisterView::Torn,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const VALUE: usize = 96;

    fn written(incarnation: u64, value: &[u8]) -> Vec<u8> {
        let mut out = vec![0; sub_slot_bytes(VALUE)];
        encode(incarnation, value, &mut out);
        out
    }

    fn padded(value: &[u8]) -> Vec<u8> {
        let mut out = value.to_vec();
        out.resize(VALUE, 0);
        out
    }

    #[test]
    fn the_register_of_ctbcast_is_224_bytes() {
        assert_eq!(register_bytes(96), 224);
    }

    #[test]
    fn a_zero_sub_slot_is_empty_and_a_zero_incarnation_with_bytes_is_invalid() {
        assert_eq!(decode(&[0; sub_slot_bytes(VALUE)]), SubSlot::Empty);
        let mut forged = vec![0; sub_slot_bytes(VALUE)];
        forged[16] = 1;
        let check = xxh3_64(&forged[8..]);
        forged[..8].copy_from_slice(&check.to_le_bytes());
        assert_eq!(decode(&forged), SubSlot::Invalid, "incarnation 0 is never written");
    }

    #[test]
    fn a_register_takes_its_newest_valid_sub_slot() {
        let (old, new) = (written(4, b"old"), written(5, b"new"));
        let empty = vec![0; sub_slot_bytes(VALUE)];
        let mut torn = written(6, b"newer");
        torn[40] ^= 1;
        let view = |a: &[u8], b: &[u8]| decode_register(&[a, b].concat());
        assert_eq!(view(&old, &new), RegisterView::Value { incarnation: 5, value: padded(b"new") });
        assert_eq!(view(&new, &old), RegisterView::Value { incarnation: 5, value: padded(b"new") });
        assert_eq!(view(&torn, &new), RegisterView::Value { incarnation: 5, value: padded(b"new") });
        assert_eq!(view(&empty, &old), RegisterView::Value { incarnation: 4, value: padded(b"old") });
        assert_eq!(view(&empty, &empty), RegisterView::Empty);
        assert_eq!(view(&torn, &empty), RegisterView::Empty, "a first write still landing");
        assert_eq!(view(&empty, &torn), RegisterView::Empty, "a first write still landing");
        assert_eq!(view(&torn, &torn), RegisterView::Torn);
        let other = written(5, b"other");
        assert_eq!(view(&new, &other), RegisterView::Conflicting { incarnation: 5 });
        assert_eq!(view(&new, &new), RegisterView::Value { incarnation: 5, value: padded(b"new") });
    }

    proptest! {
        #[test]
        fn what_is_written_reads_back(incarnation in 1u64.., value in prop::collection::vec(any::<u8>(), 0..=VALUE)) {
            let bytes = written(incarnation, &value);
            let padded = padded(&value);
            prop_assert_eq!(decode(&bytes), SubSlot::Valid { incarnation, value: &padded });
        }

        /// A WRITE torn anywhere — the new bytes up to some point over the old ones — is
        /// never taken for a valid write it is not.
        #[test]
        fn a_torn_write_is_never_valid_unless_it_is_whole(
            old_incarnation in 1u64..,
            new_incarnation in 1u64..,
            old in prop::collection::vec(any::<u8>(), VALUE),
            new in prop::collection::vec(any::<u8>(), VALUE),
            landed in 0..=sub_slot_bytes(VALUE),
        ) {
            let (before, after) = (written(old_incarnation, &old), written(new_incarnation, &new));
            let mut torn = before.clone();
            torn[..landed].copy_from_slice(&after[..landed]);
            match decode(&torn) {
                SubSlot::Valid { incarnation, value } => {
                    let whole = (incarnation, value) == (new_incarnation, &new[..])
                        || (incarnation, value) == (old_incarnation, &old[..]);
                    prop_assert!(whole, "a torn write read as incarnation {incarnation}");
                }
                SubSlot::Invalid => prop_assert!(torn != before && torn != after),
                SubSlot::Empty => prop_assert!(false, "written bytes read as empty"),
            }
        }

        /// Garbage is invalid (or, with overwhelming odds, never valid by accident).
        #[test]
        fn garbage_is_not_valid(bytes in prop::collection::vec(any::<u8>(), sub_slot_bytes(VALUE))) {
            prop_assume!(bytes.iter().any(|&byte| byte != 0));
            prop_assert_eq!(decode(&bytes), SubSlot::Invalid);
        }

        /// A stale sub-slot next to a newer one never wins, in either position.
        #[test]
        fn a_stale_sub_slot_never_wins(
            older in 1u64..1_000_000,
            gap in 1u64..1_000,
            value in prop::collection::vec(any::<u8>(), VALUE),
            first in any::<bool>(),
        ) {
            let stale = written(older, b"stale");
            let fresh = written(older + gap, &value);
            let bytes = if first { [stale, fresh].concat() } else { [fresh, stale].concat() };
            prop_assert_eq!(decode_register(&bytes), RegisterView::Value { incarnation: older + gap, value });
        }
    }
}
