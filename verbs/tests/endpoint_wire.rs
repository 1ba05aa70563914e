//! The endpoint wire form under structured corruption.
//!
//! Random bytes almost never get past an endpoint's 13-byte header (a seeded run of the
//! old fuzz loop, 20,000 inputs: none reached an address field), so the inputs here are
//! built from valid encodings and then damaged one way each: one field set to a value the
//! layout forbids, a cut at every length, bytes appended, the address kind swapped, one
//! bit flipped, two encodings spliced. The expected outcome of each comes from the layout
//! below, written from the format's description rather than read off the decoder, and
//! `coverage_mostly_reaches_the_body` checks that most inputs do reach the body decoder.
//!
//! Seeded: each run uses `PROPTEST_RNG_SEED` when set, else a fixed seed, and prints it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestRunner};
use usec_verbs::qp::{Address, Mtu};
use usec_verbs::{BadEndpoint, Endpoint, Error};

const DEFAULT_SEED: u64 = 0x5EED_E4D0_0001;

fn seeded(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(cases);
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    eprintln!("proptest seed {} (set PROPTEST_RNG_SEED to change it)", config.rng_seed);
    config
}

// ---- the layout, from the format's description --------------------------------------------

/// magic "uE", version 1, kind, qp_num (4), psn (4, 24 bits used), mtu code (0..=4).
const HEADER_LEN: usize = 13;
const MAGIC: [u8; 2] = *b"uE";
const VERSION: u8 = 1;
const KIND_AT: usize = 3;
const PSN_AT: usize = 8;
const MTU_AT: usize = 12;
const MTU_CODES: std::ops::RangeInclusive<u8> = 0..=4;

/// Body length by address kind: InfiniBand (lid, gid, has-index flag, index), RoCE (gid,
/// index), soft (fabric, pid, node, nonce), sim (fabric, node).
fn body_len(kind: u8) -> Option<usize> {
    match kind {
        1 => Some(2 + 16 + 1 + 1),
        2 => Some(16 + 1),
        3 => Some(8 + 4 + 4 + 8),
        4 => Some(8 + 4),
        _ => None,
    }
}

/// Offset of the InfiniBand GID-index flag (0: no index, 1: index follows).
const IB_FLAG_AT: usize = HEADER_LEN + 2 + 16;

// ---- what the decoder said ----------------------------------------------------------------

/// The decoder's answer, by the check that refused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Verdict {
    Decoded,
    ShortHeader,
    Magic,
    Version,
    Psn,
    Mtu,
    UnknownKind,
    TruncatedAddress,
    GidFlag,
    GidIndexWithoutFlag,
    Trailing,
}

impl Verdict {
    /// Whether the input got past the header into the address decoder.
    fn reached_body(self) -> bool {
        matches!(
            self,
            Verdict::Decoded
                | Verdict::UnknownKind
                | Verdict::TruncatedAddress
                | Verdict::GidFlag
                | Verdict::GidIndexWithoutFlag
                | Verdict::Trailing
        )
    }
}

/// Decodes `bytes` and says which check answered. Any other error is a test failure: a new
/// refusal must be added here on purpose.
fn decode(bytes: &[u8]) -> (Verdict, Option<Endpoint>) {
    let message = match Endpoint::from_bytes(bytes) {
        Ok(endpoint) => return (Verdict::Decoded, Some(endpoint)),
        Err(Error::BadEndpoint(BadEndpoint::Malformed(message))) => message,
        Err(other) => panic!("{bytes:02x?}: not a malformed-endpoint error: {other:?}"),
    };
    let verdict = [
        ("shorter than the", Verdict::ShortHeader),
        ("wrong magic", Verdict::Magic),
        ("endpoint version", Verdict::Version),
        ("does not fit 24 bits", Verdict::Psn),
        ("unknown MTU code", Verdict::Mtu),
        ("unknown address kind", Verdict::UnknownKind),
        ("truncated address", Verdict::TruncatedAddress),
        ("bad GID-index flag", Verdict::GidFlag),
        ("without the GID-index flag", Verdict::GidIndexWithoutFlag),
        ("trailing bytes", Verdict::Trailing),
    ]
    .into_iter()
    .find(|(words, _)| message.contains(words))
    .unwrap_or_else(|| panic!("{bytes:02x?}: an error this test does not know: {message}"))
    .1;
    (verdict, None)
}

/// What the layout says about `bytes`, checking in the order the format documents:
/// header length, magic, version, PSN, MTU, kind, address length, the flag.
fn expected(bytes: &[u8]) -> Verdict {
    if bytes.len() < HEADER_LEN {
        return Verdict::ShortHeader;
    }
    if bytes[..2] != MAGIC {
        return Verdict::Magic;
    }
    if bytes[2] != VERSION {
        return Verdict::Version;
    }
    if bytes[PSN_AT + 3] != 0 {
        return Verdict::Psn;
    }
    if !MTU_CODES.contains(&bytes[MTU_AT]) {
        return Verdict::Mtu;
    }
    let kind = bytes[KIND_AT];
    let Some(want) = body_len(kind) else { return Verdict::UnknownKind };
    let body = &bytes[HEADER_LEN..];
    // The flag is read before the address is known to be complete.
    if kind == 1 && body.len() >= 2 + 16 + 2 {
        match (body[18], body[19]) {
            (0, 0) | (1, _) => {}
            (0, _) => return Verdict::GidIndexWithoutFlag,
            _ => return Verdict::GidFlag,
        }
    }
    match body.len().cmp(&want) {
        std::cmp::Ordering::Less => Verdict::TruncatedAddress,
        std::cmp::Ordering::Greater => Verdict::Trailing,
        std::cmp::Ordering::Equal => Verdict::Decoded,
    }
}

/// The contract on one input: no panic, the verdict the layout predicts, and a decoded
/// endpoint encodes back to exactly the input (one encoding per endpoint).
fn check(bytes: &[u8]) -> Result<Verdict, TestCaseError> {
    let (verdict, endpoint) = decode(bytes);
    prop_assert_eq!(verdict, expected(bytes), "input {:02x?}", bytes);
    if let Some(endpoint) = endpoint {
        prop_assert_eq!(endpoint.to_bytes(), bytes.to_vec(), "decoded {:?} re-encodes differently", endpoint);
    }
    Ok(verdict)
}

// ---- valid endpoints and their corruptions ------------------------------------------------

fn gid() -> impl Strategy<Value = [u8; 16]> {
    any::<[u8; 16]>()
}

fn address() -> impl Strategy<Value = Address> {
    prop_oneof![
        (any::<u16>(), gid(), any::<Option<u8>>()).prop_map(|(lid, gid, gid_index)| Address::Infiniband {
            lid,
            gid,
            gid_index
        }),
        (gid(), any::<u8>()).prop_map(|(gid, gid_index)| Address::Roce { gid, gid_index }),
        (any::<u64>(), any::<u32>(), any::<u32>(), any::<u64>())
            .prop_map(|(fabric, pid, node, nonce)| Address::Soft { fabric, pid, node, nonce }),
        (any::<u64>(), any::<u32>()).prop_map(|(fabric, node)| Address::Sim { fabric, node }),
    ]
}

fn mtu() -> impl Strategy<Value = Mtu> {
    prop_oneof![
        Just(Mtu::Mtu256),
        Just(Mtu::Mtu512),
        Just(Mtu::Mtu1024),
        Just(Mtu::Mtu2048),
        Just(Mtu::Mtu4096)
    ]
}

fn endpoint() -> impl Strategy<Value = Endpoint> {
    (any::<u32>(), 0u32..1 << 24, mtu(), address()).prop_map(|(qp_num, psn, mtu, address)| Endpoint {
        qp_num,
        psn,
        mtu,
        address,
    })
}

/// One way to damage a valid encoding.
#[derive(Clone, Debug)]
enum Damage {
    None,
    /// Byte 0 or 1 set to something other than the magic.
    Magic {
        at: usize,
        value: u8,
    },
    Version(u8),
    Kind(u8),
    /// A PSN of 25 bits or more.
    Psn(u32),
    Mtu(u8),
    /// The InfiniBand flag set to neither 0 nor 1 (other kinds: left alone).
    GidFlag(u8),
    /// The InfiniBand flag cleared while an index is present.
    GidIndexWithoutFlag(u8),
    /// Cut at `at` modulo the length.
    Truncate {
        at: usize,
    },
    Extend(Vec<u8>),
    /// Another valid kind, with another body length.
    SwapKind(u8),
    /// One bit, anywhere.
    FlipBit {
        at: usize,
    },
    /// The start of this encoding, then the rest of `other`'s from the same cut.
    Splice {
        other: Endpoint,
        at: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        1 => Just(Damage::None),
        1 => (0usize..2, any::<u8>()).prop_map(|(at, value)| Damage::Magic { at, value }),
        1 => any::<u8>().prop_filter("not the version", |v| *v != VERSION).prop_map(Damage::Version),
        1 => any::<u8>().prop_filter("not a kind", |kind| body_len(*kind).is_none()).prop_map(Damage::Kind),
        1 => ((1u32 << 24)..).prop_map(Damage::Psn),
        1 => (5u8..).prop_map(Damage::Mtu),
        1 => (2u8..).prop_map(Damage::GidFlag),
        1 => (1u8..).prop_map(Damage::GidIndexWithoutFlag),
        2 => any::<usize>().prop_map(|at| Damage::Truncate { at }),
        1 => proptest::collection::vec(any::<u8>(), 1..8).prop_map(Damage::Extend),
        1 => (1u8..=4).prop_map(Damage::SwapKind),
        3 => any::<usize>().prop_map(|at| Damage::FlipBit { at }),
        2 => (endpoint(), any::<usize>()).prop_map(|(other, at)| Damage::Splice { other, at }),
    ]
}

/// The damaged bytes, and the verdict the damage alone must cause (`None` where it
/// depends on where the damage fell; [`expected`] judges those).
fn apply(endpoint: &Endpoint, damage: &Damage) -> (Vec<u8>, Option<Verdict>) {
    let mut bytes = endpoint.to_bytes();
    let kind = bytes[KIND_AT];
    let verdict = match damage {
        Damage::None => Some(Verdict::Decoded),
        Damage::Magic { at, value } => {
            bytes[*at] = if *value == MAGIC[*at] { value.wrapping_add(1) } else { *value };
            Some(Verdict::Magic)
        }
        Damage::Version(version) => {
            bytes[2] = *version;
            Some(Verdict::Version)
        }
        Damage::Kind(kind) => {
            bytes[KIND_AT] = *kind;
            Some(Verdict::UnknownKind)
        }
        Damage::Psn(psn) => {
            bytes[PSN_AT..PSN_AT + 4].copy_from_slice(&psn.to_le_bytes());
            Some(Verdict::Psn)
        }
        Damage::Mtu(code) => {
            bytes[MTU_AT] = *code;
            Some(Verdict::Mtu)
        }
        Damage::GidFlag(flag) if kind == 1 => {
            bytes[IB_FLAG_AT] = *flag;
            Some(Verdict::GidFlag)
        }
        Damage::GidIndexWithoutFlag(index) if kind == 1 => {
            bytes[IB_FLAG_AT] = 0;
            bytes[IB_FLAG_AT + 1] = *index;
            Some(Verdict::GidIndexWithoutFlag)
        }
        Damage::GidFlag(_) | Damage::GidIndexWithoutFlag(_) => Some(Verdict::Decoded),
        Damage::Truncate { at } => {
            let cut = at % bytes.len();
            bytes.truncate(cut);
            Some(if cut < HEADER_LEN { Verdict::ShortHeader } else { Verdict::TruncatedAddress })
        }
        Damage::Extend(more) => {
            bytes.extend_from_slice(more);
            Some(Verdict::Trailing)
        }
        Damage::SwapKind(other) => {
            bytes[KIND_AT] = *other;
            let (have, want) = (body_len(kind).unwrap(), body_len(*other).unwrap());
            // An InfiniBand body read from another kind's bytes may first fail on its flag.
            Some(match have.cmp(&want) {
                std::cmp::Ordering::Equal => Verdict::Decoded,
                _ if *other == 1 && have >= 20 => return (bytes, None),
                std::cmp::Ordering::Less => Verdict::TruncatedAddress,
                std::cmp::Ordering::Greater => Verdict::Trailing,
            })
        }
        Damage::FlipBit { at } => {
            let bit = at % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
            None
        }
        Damage::Splice { other, at } => {
            let other = other.to_bytes();
            let cut = at % (bytes.len().min(other.len()) + 1);
            bytes.truncate(cut);
            bytes.extend_from_slice(&other[cut..]);
            None
        }
    };
    (bytes, verdict)
}

// ---- the properties -----------------------------------------------------------------------

proptest! {
    #![proptest_config(seeded(2048))]

    #[test]
    fn valid_endpoints_round_trip_in_bytes_and_text(endpoint in endpoint()) {
        let bytes = endpoint.to_bytes();
        prop_assert_eq!(bytes.len(), HEADER_LEN + body_len(bytes[KIND_AT]).unwrap());
        prop_assert_eq!(check(&bytes)?, Verdict::Decoded);
        prop_assert_eq!(Endpoint::from_bytes(&bytes).unwrap(), endpoint);
        let text = endpoint.to_string();
        prop_assert_eq!(text.parse::<Endpoint>().unwrap(), endpoint);
        prop_assert_eq!(format!(" {} \n", text.to_uppercase()).parse::<Endpoint>().unwrap(), endpoint);
        prop_assert!(text[1..].parse::<Endpoint>().is_err(), "odd-length hex");
        prop_assert!(format!("{}g0", &text[2..]).parse::<Endpoint>().is_err(), "not hex");
    }

    #[test]
    fn every_cut_is_refused_by_the_check_it_reaches(endpoint in endpoint()) {
        let bytes = endpoint.to_bytes();
        for cut in 0..bytes.len() {
            let want = if cut < HEADER_LEN { Verdict::ShortHeader } else { Verdict::TruncatedAddress };
            prop_assert_eq!(check(&bytes[..cut])?, want, "cut at {}", cut);
        }
    }

    #[test]
    fn each_damage_is_refused_with_its_own_error(endpoint in endpoint(), damage in damage()) {
        let (bytes, want) = apply(&endpoint, &damage);
        let verdict = check(&bytes)?;
        if let Some(want) = want {
            prop_assert_eq!(verdict, want, "{:?}", damage);
        }
    }
}

/// The coverage claim: most structured inputs get past the header into the address
/// decoder, and every refusal of the format is reached.
#[test]
fn coverage_mostly_reaches_the_body() {
    // No failure file: this runner is not tied to a source file.
    let mut runner = TestRunner::new(ProptestConfig { failure_persistence: None, ..seeded(4096) });
    let verdicts = std::cell::RefCell::new(BTreeMap::<Verdict, u32>::new());
    runner
        .run(&(endpoint(), damage()), |(endpoint, damage)| {
            let (bytes, _) = apply(&endpoint, &damage);
            *verdicts.borrow_mut().entry(check(&bytes)?).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let verdicts = verdicts.into_inner();
    let total: u32 = verdicts.values().sum();
    let in_body: u32 = verdicts.iter().filter(|(verdict, _)| verdict.reached_body()).map(|(_, n)| n).sum();
    eprintln!("{total} inputs, {in_body} reached the address decoder: {verdicts:?}");
    assert!(in_body * 2 > total, "only {in_body} of {total} inputs reached the address decoder");
    let all = [
        Verdict::Decoded,
        Verdict::ShortHeader,
        Verdict::Magic,
        Verdict::Version,
        Verdict::Psn,
        Verdict::Mtu,
        Verdict::UnknownKind,
        Verdict::TruncatedAddress,
        Verdict::GidFlag,
        Verdict::GidIndexWithoutFlag,
        Verdict::Trailing,
    ];
    let missed: Vec<_> = all.iter().filter(|verdict| !verdicts.contains_key(verdict)).collect();
    assert!(missed.is_empty(), "never reached: {missed:?}");
}
