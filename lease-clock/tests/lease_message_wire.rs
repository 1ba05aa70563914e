//! The lease messages' 32-byte wire form under structured corruption.
//!
//! Random 32-byte inputs get past the two magic bytes and eleven zero bytes all but never, so
//! the inputs here are valid messages damaged one way each: one field set to a value the
//! layout forbids, one bit flipped anywhere, a wrong length. Each is checked against the
//! layout below, written from the format's description, and
//! `coverage_reaches_the_kind_dispatch` checks that a large share get past the envelope.
//!
//! Seeded: each run uses `PROPTEST_RNG_SEED` when set, else a fixed seed, and prints it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestRunner};
use usec_lease_clock::lease::{LeaseMessage, LeaseReply, LeaseRequest};
use usec_lease_clock::Error;
use usec_qp_pool::NodeId;

const DEFAULT_SEED: u64 = 0x5EED_1EA5_0001;

fn seeded(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(cases);
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    eprintln!("proptest seed {} (set PROPTEST_RNG_SEED to change it)", config.rng_seed);
    config
}

// ---- the layout, from the format's description --------------------------------------------

/// magic "uL", kind (1 request, 2 granted, 3 denied), a zero byte, the holder's node id (2
/// bytes, at most 4095) and 2 zero bytes, request (8), Δ or the retry hint (8, zero in a
/// request), 8 zero bytes; little-endian.
const LEN: usize = 32;
const MAGIC: [u8; 2] = *b"uL";
const KIND_AT: usize = 2;
const ZERO_AT: usize = 3;
const HOLDER_AT: usize = 4;
const HOLDER_PADDING_AT: usize = 6;
const VALUE_AT: usize = 16;
const PADDING_AT: usize = 24;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Decoded,
    Length,
    MagicOrPadding,
    /// A holder id beyond the largest node id.
    Holder,
    /// An unknown kind, or a request that carries a value.
    Kind,
}

fn decode(bytes: &[u8]) -> (Verdict, Option<LeaseMessage>) {
    let reason = match LeaseMessage::decode(bytes) {
        Ok(message) => return (Verdict::Decoded, Some(message)),
        Err(Error::BadMessage { reason }) => reason,
        Err(other) => panic!("{bytes:02x?}: not a BadMessage error: {other:?}"),
    };
    let verdict = if reason.contains("bytes, expected") {
        Verdict::Length
    } else if reason.contains("magic or padding") {
        Verdict::MagicOrPadding
    } else if reason.contains("the holder") {
        Verdict::Holder
    } else if reason.contains("unknown kind") {
        Verdict::Kind
    } else {
        panic!("{bytes:02x?}: an error this test does not know: {reason}")
    };
    (verdict, None)
}

/// What the layout says about `bytes`.
fn expected(bytes: &[u8]) -> Verdict {
    if bytes.len() != LEN {
        return Verdict::Length;
    }
    if bytes[..2] != MAGIC
        || bytes[ZERO_AT] != 0
        || bytes[HOLDER_PADDING_AT..HOLDER_PADDING_AT + 2] != [0, 0]
        || bytes[PADDING_AT..].iter().any(|&b| b != 0)
    {
        return Verdict::MagicOrPadding;
    }
    if u16::from_le_bytes([bytes[HOLDER_AT], bytes[HOLDER_AT + 1]]) > NodeId::MAX {
        return Verdict::Holder;
    }
    let value_is_zero = bytes[VALUE_AT..PADDING_AT].iter().all(|&b| b == 0);
    match bytes[KIND_AT] {
        1 if value_is_zero => Verdict::Decoded,
        2 | 3 => Verdict::Decoded,
        _ => Verdict::Kind,
    }
}

/// No panic, the verdict the layout predicts, and one encoding per message.
fn check(bytes: &[u8]) -> Result<Verdict, TestCaseError> {
    let (verdict, message) = decode(bytes);
    prop_assert_eq!(verdict, expected(bytes), "input {:02x?}", bytes);
    if let Some(message) = message {
        prop_assert_eq!(message.encode().to_vec(), bytes.to_vec(), "{:?} re-encodes differently", message);
    }
    Ok(verdict)
}

fn message() -> impl Strategy<Value = LeaseMessage> {
    let holder = (0..=NodeId::MAX).prop_map(|id| NodeId::new(id).expect("in range"));
    prop_oneof![
        (holder.clone(), any::<u64>())
            .prop_map(|(holder, request)| LeaseMessage::Request(LeaseRequest { holder, request })),
        (holder.clone(), any::<u64>(), any::<u64>()).prop_map(|(holder, request, lease_ns)| {
            LeaseMessage::Reply(LeaseReply::Granted { holder, request, lease_ns })
        }),
        (holder, any::<u64>(), any::<u64>()).prop_map(|(holder, request, retry_after_ns)| {
            LeaseMessage::Reply(LeaseReply::Denied { holder, request, retry_after_ns })
        }),
    ]
}

#[derive(Clone, Debug)]
enum Damage {
    None,
    Magic {
        at: usize,
        value: u8,
    },
    Kind(u8),
    ZeroByte(u8),
    Padding {
        at: usize,
        value: u8,
    },
    Holder(u16),
    /// A value in a request (other kinds: any value is valid).
    RequestValue(u64),
    FlipBit {
        at: usize,
    },
    Length(usize),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        1 => Just(Damage::None),
        1 => (0usize..2, any::<u8>()).prop_map(|(at, value)| Damage::Magic { at, value }),
        1 => any::<u8>().prop_filter("not a kind", |k| !(1..=3).contains(k)).prop_map(Damage::Kind),
        1 => (1u8..).prop_map(Damage::ZeroByte),
        1 => (prop_oneof![HOLDER_PADDING_AT..HOLDER_PADDING_AT + 2, PADDING_AT..LEN], 1u8..)
            .prop_map(|(at, value)| Damage::Padding { at, value }),
        1 => (NodeId::MAX + 1..).prop_map(Damage::Holder),
        1 => (1u64..).prop_map(Damage::RequestValue),
        4 => (0..LEN * 8).prop_map(|at| Damage::FlipBit { at }),
        1 => (0..LEN * 2).prop_filter("not the length", |len| *len != LEN).prop_map(Damage::Length),
    ]
}

fn apply(message: &LeaseMessage, damage: &Damage) -> (Vec<u8>, Option<Verdict>) {
    let mut bytes = message.encode().to_vec();
    let verdict = match damage {
        Damage::None => Some(Verdict::Decoded),
        Damage::Magic { at, value } => {
            bytes[*at] = if bytes[*at] == *value { value.wrapping_add(1) } else { *value };
            Some(Verdict::MagicOrPadding)
        }
        Damage::Kind(kind) => {
            bytes[KIND_AT] = *kind;
            Some(Verdict::Kind)
        }
        Damage::ZeroByte(value) => {
            bytes[ZERO_AT] = *value;
            Some(Verdict::MagicOrPadding)
        }
        Damage::Padding { at, value } => {
            bytes[*at] = *value;
            Some(Verdict::MagicOrPadding)
        }
        Damage::Holder(id) => {
            bytes[HOLDER_AT..HOLDER_AT + 2].copy_from_slice(&id.to_le_bytes());
            Some(Verdict::Holder)
        }
        Damage::RequestValue(value) => {
            bytes[VALUE_AT..PADDING_AT].copy_from_slice(&value.to_le_bytes());
            Some(if matches!(message, LeaseMessage::Request(_)) { Verdict::Kind } else { Verdict::Decoded })
        }
        Damage::FlipBit { at } => {
            bytes[at / 8] ^= 1 << (at % 8);
            None
        }
        Damage::Length(len) => {
            bytes.resize(*len, 0);
            Some(Verdict::Length)
        }
    };
    (bytes, verdict)
}

proptest! {
    #![proptest_config(seeded(2048))]

    #[test]
    fn messages_round_trip(message in message()) {
        let bytes = message.encode();
        prop_assert_eq!(check(&bytes)?, Verdict::Decoded);
        prop_assert_eq!(LeaseMessage::decode(&bytes).unwrap(), message);
    }

    #[test]
    fn each_damage_is_refused_by_the_check_for_it(message in message(), damage in damage()) {
        let (bytes, want) = apply(&message, &damage);
        let verdict = check(&bytes)?;
        if let Some(want) = want {
            prop_assert_eq!(verdict, want, "{:?}", damage);
        }
    }
}

/// A large share of damaged messages get past the length, magic and padding checks to the
/// kind dispatch, and every refusal is reached.
#[test]
fn coverage_reaches_the_kind_dispatch() {
    // No failure file: this runner is not tied to a source file.
    let mut runner = TestRunner::new(ProptestConfig { failure_persistence: None, ..seeded(4096) });
    let verdicts = std::cell::RefCell::new(BTreeMap::<Verdict, u32>::new());
    runner
        .run(&(message(), damage()), |(message, damage)| {
            let (bytes, _) = apply(&message, &damage);
            *verdicts.borrow_mut().entry(check(&bytes)?).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let verdicts = verdicts.into_inner();
    let total: u32 = verdicts.values().sum();
    let past_envelope = verdicts[&Verdict::Decoded] + verdicts[&Verdict::Holder] + verdicts[&Verdict::Kind];
    eprintln!("{total} inputs, {past_envelope} got past the envelope: {verdicts:?}");
    // About half by construction (a third of the flipped bits land in the envelope);
    // random bytes would get past it with a chance of 2^-104.
    assert!(past_envelope * 5 > total * 2, "only {past_envelope} of {total} inputs got past the envelope");
    assert_eq!(verdicts.len(), 5, "every verdict is reached: {verdicts:?}");
}
