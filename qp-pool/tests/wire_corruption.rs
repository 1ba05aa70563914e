//! Handshake and control frames under structured corruption.
//!
//! A frame's CRC-32 refuses every flipped bit before the body decoder sees it, and random
//! bodies in valid frames almost all fail on the first postcard length prefix (a seeded
//! run of 4,096: 3,522 undecodable, 563 Ready frames with a body, 10 with trailing bytes,
//! one decoded; none reached the limits on names, counts and sizes). So the inputs here
//! start from valid messages and are damaged one way each: a header field, the body under
//! a recomputed checksum (so it does reach the body decoder), or one limit of the message
//! broken on purpose. Each is checked against what the frame format documents (see
//! `usec_qp_pool::wire`), and `coverage_mostly_reaches_the_body` checks that most inputs
//! reach the body decoder and a good share get through it to the limits.
//!
//! Seeded: each run uses `PROPTEST_RNG_SEED` when set, else a fixed seed, and prints it.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{RngSeed, TestRunner};
use std::net::SocketAddr;

use usec_qp_pool::wire::{
    encode_frame, encode_frame_with_tag, Entry, FrameKind, Hello, Member, Members, Message, Offer, Reconnect,
    RegionOffer, RegionUpdate, Reject, RoleOffer, HEADER_LEN, MAX_BODY_LEN, MAX_MEMBERS, MAX_REGIONS,
    VERSION,
};
use usec_qp_pool::{Error, MAX_ROLES};

const DEFAULT_SEED: u64 = 0x5EED_F4A3_0001;

fn seeded(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(cases);
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    eprintln!("proptest seed {} (set PROPTEST_RNG_SEED to change it)", config.rng_seed);
    config
}

// ---- the layout, from the format's description (usec_qp_pool::wire) ------------------------

/// magic (4), version, kind, flags, body length (4), CRC-32 (4), body, and a 32-byte tag
/// when the flags say so.
const VERSION_AT: usize = 4;
const KIND_AT: usize = 5;
const FLAGS_AT: usize = 6;
const LENGTH_AT: usize = 7;
const CRC_AT: usize = 11;
/// Frame kinds are 1 to 10.
const KINDS: std::ops::RangeInclusive<u8> = 1..=10;
/// The largest node id.
const NODE_ID_MAX: u16 = 4095;
/// The one flag: a tag follows the body.
const FLAG_TAGGED: u8 = 1;
const NAME_MAX_LEN: usize = 64;
/// The longest endpoint or descriptor, and reason, a body may carry.
const MAX_BLOB_LEN: usize = 256;
const MAX_REASON_LEN: usize = 4096;

// ---- what the decoder said ----------------------------------------------------------------

/// The decoder's answer, by the check that refused it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Verdict {
    Decoded,
    // The envelope.
    Magic,
    Version,
    Kind,
    Flags,
    /// A tag, and no cluster key to check it with.
    Tagged,
    Length,
    Checksum,
    Truncated,
    AfterFrame,
    // The body.
    /// A body on a kind that has none (Ready, Proof).
    BodyOnEmptyKind,
    Undecodable,
    BodyTrailing,
    // The limits on what a decoded body holds.
    Name,
    Count,
    Blob,
    Reason,
    /// A member list naming an id beyond the largest, or one twice.
    Member,
}

impl Verdict {
    /// Got past the envelope to the body decoder.
    fn reached_body(self) -> bool {
        self >= Verdict::BodyOnEmptyKind || self == Verdict::Decoded
    }

    /// Got through the body decoder to the limits.
    fn reached_limits(self) -> bool {
        self >= Verdict::Name || self == Verdict::Decoded
    }
}

/// Decodes exactly one frame and says which check answered. Any error this does not know
/// fails the test: a new refusal must be added here on purpose.
fn decode(frame: &[u8]) -> (Verdict, Option<Message>) {
    let (field, reason) = match Message::decode_exact(frame) {
        Ok(message) => return (Verdict::Decoded, Some(message)),
        Err(Error::VersionMismatch { .. }) => return (Verdict::Version, None),
        Err(Error::TruncatedFrame { .. }) => return (Verdict::Truncated, None),
        Err(Error::MalformedFrame { field, reason }) => (field, reason),
        Err(other) => panic!("{frame:02x?}: an error this test does not know: {other:?}"),
    };
    let verdict = match field {
        "magic" => Verdict::Magic,
        "kind" => Verdict::Kind,
        "flags" if reason.contains("tagged frame") => Verdict::Tagged,
        "flags" => Verdict::Flags,
        "checksum" => Verdict::Checksum,
        "length" if reason.contains("after the frame") => Verdict::AfterFrame,
        "length" => Verdict::Length,
        "body" => {
            [
                ("carries no body", Verdict::BodyOnEmptyKind),
                ("undecodable", Verdict::Undecodable),
                ("trailing bytes", Verdict::BodyTrailing),
                ("characters of", Verdict::Name),
                ("roles, at most", Verdict::Count),
                ("regions, at most", Verdict::Count),
                ("an endpoint of", Verdict::Blob),
                ("a descriptor of", Verdict::Blob),
                ("a reason of", Verdict::Reason),
                ("members, at most", Verdict::Count),
                ("member id", Verdict::Member),
                ("listed twice", Verdict::Member),
            ]
            .into_iter()
            .find(|(words, _)| reason.contains(words))
            .unwrap_or_else(|| panic!("{frame:02x?}: a body error this test does not know: {reason}"))
            .1
        }
        other => panic!("{frame:02x?}: malformed field {other:?} this test does not know: {reason}"),
    };
    (verdict, None)
}

/// The contract on every input: no panic, and a decoded message is one the format allows
/// and frames back to a frame that decodes to it. (Not to the same bytes: postcard takes
/// overlong varints, e.g. `80 80 80 80 00` for 0, so one message has many encodings; a MAC
/// must cover the bytes received, never a re-encoding.)
fn check(frame: &[u8]) -> Result<Verdict, TestCaseError> {
    let (verdict, message) = decode(frame);
    if let Some(message) = message {
        prop_assert!(within_limits(&message), "decoded past the limits: {:?}", message);
        let again = message.to_frame();
        prop_assert_eq!(Message::decode_exact(&again).unwrap(), message);
    }
    Ok(verdict)
}

fn name_ok(name: &str, extra: &str) -> bool {
    (1..=NAME_MAX_LEN).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(c))
}

fn roles_ok(roles: &[RoleOffer]) -> bool {
    roles.len() <= MAX_ROLES
        && roles.iter().all(|role| name_ok(&role.name, "") && role.endpoint.len() <= MAX_BLOB_LEN)
}

fn regions_ok(regions: &[RegionOffer]) -> bool {
    regions.len() <= MAX_REGIONS
        && regions.iter().all(|region| name_ok(&region.name, "") && region.descriptor.len() <= MAX_BLOB_LEN)
}

/// The limits the format documents, written out independently of the decoder.
fn within_limits(message: &Message) -> bool {
    match message {
        Message::Hello(hello) => name_ok(&hello.cluster, ":+") && name_ok(&hello.run, ":+"),
        Message::Offer(offer) => roles_ok(&offer.roles) && regions_ok(&offer.regions),
        Message::Ready | Message::Proof => true,
        Message::Reject(reject) | Message::Fence(reject) => reject.reason.len() <= MAX_REASON_LEN,
        Message::ReconnectRequest(reconnect) | Message::ReconnectReply(reconnect) => {
            roles_ok(&reconnect.roles)
        }
        Message::RegionUpdate(update) => regions_ok(&update.regions),
        Message::Members(members) => {
            let ids: std::collections::BTreeSet<u16> = members.members.iter().map(|m| m.node).collect();
            members.members.len() <= MAX_MEMBERS
                && ids.len() == members.members.len()
                && members.members.iter().all(|member| member.node <= NODE_ID_MAX)
        }
        other => panic!("a message this test does not know: {other:?}"),
    }
}

// ---- valid messages -----------------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._-]{1,64}"
}

fn spec_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.:+_-]{1,64}"
}

fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), MAX_BLOB_LEN - 2..=MAX_BLOB_LEN),
    ]
}

fn role_offers(min: usize) -> impl Strategy<Value = Vec<RoleOffer>> {
    proptest::collection::vec(
        (name(), blob()).prop_map(|(name, endpoint)| RoleOffer { name, endpoint }),
        min..4,
    )
}

fn region_offers(min: usize) -> impl Strategy<Value = Vec<RegionOffer>> {
    proptest::collection::vec(
        (name(), blob()).prop_map(|(name, descriptor)| RegionOffer { name, descriptor }),
        min..4,
    )
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        message_hello().prop_map(Message::Hello),
        (role_offers(0), region_offers(0))
            .prop_map(|(roles, regions)| Message::Offer(Offer { roles, regions })),
        Just(Message::Ready),
        Just(Message::Proof),
        "\\PC{0,100}".prop_map(|reason| Message::Reject(Reject { reason })),
        "\\PC{0,100}".prop_map(|reason| Message::Fence(Reject { reason })),
        (any::<u64>(), role_offers(0))
            .prop_map(|(epoch, roles)| Message::ReconnectRequest(Reconnect { epoch, roles })),
        (any::<u64>(), role_offers(0))
            .prop_map(|(epoch, roles)| Message::ReconnectReply(Reconnect { epoch, roles })),
        region_offers(0).prop_map(|regions| Message::RegionUpdate(RegionUpdate { regions })),
        members(0).prop_map(|members| Message::Members(Members { members })),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![Just(Entry::Start), Just(Entry::Rejoin), Just(Entry::Join)]
}

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(SocketAddr::from),
        (any::<[u16; 8]>(), any::<u16>()).prop_map(SocketAddr::from),
    ]
}

/// Valid members, distinct ids.
fn members(min: usize) -> impl Strategy<Value = Vec<Member>> {
    proptest::collection::btree_map(0..=NODE_ID_MAX, (any::<u64>(), socket_addr()), min..6).prop_map(
        |members| {
            members
                .into_iter()
                .map(|(node, (incarnation, addr))| Member { node, incarnation, addr })
                .collect()
        },
    )
}

// ---- damage -------------------------------------------------------------------------------

/// One way to damage a valid frame.
#[derive(Clone, Debug)]
enum Damage {
    None,
    // To the envelope, leaving the checksum as it was.
    Magic {
        at: usize,
        value: u8,
    },
    Version(u8),
    Kind(u8),
    Flags(u8),
    LengthAboveLimit(u32),
    LengthChanged(u32),
    Checksum(u32),
    Appended(Vec<u8>),
    FlipFrameBit {
        at: usize,
    },
    /// Framed anew with a tag (and a correct checksum).
    Tagged([u8; 32]),
    // To the body, then framed anew with a correct checksum.
    BodyCut {
        at: usize,
    },
    BodyAppended(Vec<u8>),
    BodyFlipBit {
        at: usize,
    },
    BodyByte {
        at: usize,
        value: u8,
    },
    BodySplice {
        other: Message,
        at: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        1 => Just(Damage::None),
        1 => (0usize..4, any::<u8>()).prop_map(|(at, value)| Damage::Magic { at, value }),
        1 => any::<u8>().prop_filter("not ours", |v| *v != VERSION).prop_map(Damage::Version),
        1 => any::<u8>().prop_filter("not a kind", |k| !KINDS.contains(k)).prop_map(Damage::Kind),
        1 => any::<u8>().prop_filter("an unknown flag", |f| f & !FLAG_TAGGED != 0).prop_map(Damage::Flags),
        1 => any::<[u8; 32]>().prop_map(Damage::Tagged),
        1 => (MAX_BODY_LEN as u32 + 1..).prop_map(Damage::LengthAboveLimit),
        1 => (0..=MAX_BODY_LEN as u32).prop_map(Damage::LengthChanged),
        1 => (1u32..).prop_map(Damage::Checksum),
        1 => proptest::collection::vec(any::<u8>(), 1..16).prop_map(Damage::Appended),
        2 => any::<usize>().prop_map(|at| Damage::FlipFrameBit { at }),
        2 => any::<usize>().prop_map(|at| Damage::BodyCut { at }),
        1 => proptest::collection::vec(any::<u8>(), 1..8).prop_map(Damage::BodyAppended),
        4 => any::<usize>().prop_map(|at| Damage::BodyFlipBit { at }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, value)| Damage::BodyByte { at, value }),
        2 => (message(), any::<usize>()).prop_map(|(other, at)| Damage::BodySplice { other, at }),
    ]
}

fn framed(kind: FrameKind, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    encode_frame(kind, body, &mut frame);
    frame
}

/// The damaged frame and the verdict the damage alone must cause; `None` where that
/// depends on where it fell (then only the contract of [`check`] applies, and for damage
/// under a fresh checksum, that the envelope is not blamed).
fn apply(message: &Message, damage: &Damage) -> (Vec<u8>, Option<Verdict>) {
    let mut frame = message.to_frame();
    let body = frame[HEADER_LEN..].to_vec();
    let kind = message.kind();
    let set_u32 =
        |frame: &mut Vec<u8>, at: usize, value: u32| frame[at..at + 4].copy_from_slice(&value.to_le_bytes());
    let verdict = match damage {
        Damage::None => Some(Verdict::Decoded),
        Damage::Magic { at, value } => {
            frame[*at] = if frame[*at] == *value { value.wrapping_add(1) } else { *value };
            Some(Verdict::Magic)
        }
        Damage::Version(version) => {
            frame[VERSION_AT] = *version;
            Some(Verdict::Version)
        }
        Damage::Kind(code) => {
            frame[KIND_AT] = *code;
            Some(Verdict::Kind)
        }
        Damage::Flags(flags) => {
            frame[FLAGS_AT] = *flags;
            Some(Verdict::Flags)
        }
        Damage::Tagged(tag) => {
            frame.clear();
            encode_frame_with_tag(kind, &body, Some(tag), &mut frame);
            Some(Verdict::Tagged)
        }
        Damage::LengthAboveLimit(length) => {
            set_u32(&mut frame, LENGTH_AT, *length);
            Some(Verdict::Length)
        }
        Damage::LengthChanged(length) => {
            set_u32(&mut frame, LENGTH_AT, *length);
            // Longer: the frame is not all here. Shorter: the checksum covers the length.
            Some(match (*length as usize).cmp(&body.len()) {
                std::cmp::Ordering::Greater => Verdict::Truncated,
                std::cmp::Ordering::Less => Verdict::Checksum,
                std::cmp::Ordering::Equal => Verdict::Decoded,
            })
        }
        Damage::Checksum(xor) => {
            let crc = u32::from_le_bytes(frame[CRC_AT..CRC_AT + 4].try_into().unwrap());
            set_u32(&mut frame, CRC_AT, crc ^ xor);
            Some(Verdict::Checksum)
        }
        Damage::Appended(more) => {
            frame.extend_from_slice(more);
            Some(Verdict::AfterFrame)
        }
        Damage::FlipFrameBit { at } => {
            let bit = at % (frame.len() * 8);
            frame[bit / 8] ^= 1 << (bit % 8);
            None
        }
        Damage::BodyCut { at } if !body.is_empty() => {
            // A strict prefix of a postcard encoding runs out before the value ends.
            frame = framed(kind, &body[..at % body.len()]);
            Some(Verdict::Undecodable)
        }
        Damage::BodyAppended(more) => {
            frame = framed(kind, &[body.as_slice(), more].concat());
            let empty_kind = matches!(kind, FrameKind::Ready | FrameKind::Proof);
            Some(if empty_kind { Verdict::BodyOnEmptyKind } else { Verdict::BodyTrailing })
        }
        Damage::BodyFlipBit { at } if !body.is_empty() => {
            let mut body = body.clone();
            let bit = at % (body.len() * 8);
            body[bit / 8] ^= 1 << (bit % 8);
            frame = framed(kind, &body);
            None
        }
        Damage::BodyByte { at, value } if !body.is_empty() => {
            let mut body = body.clone();
            let at = at % body.len();
            body[at] = *value;
            frame = framed(kind, &body);
            None
        }
        Damage::BodySplice { other, at } => {
            let theirs = other.to_frame()[HEADER_LEN..].to_vec();
            let cut = at % (body.len().min(theirs.len()) + 1);
            frame = framed(kind, &[&body[..cut], &theirs[cut..]].concat());
            None
        }
        // Body damage to an empty body (Ready): nothing to damage.
        Damage::BodyCut { .. } | Damage::BodyFlipBit { .. } | Damage::BodyByte { .. } => {
            Some(Verdict::Decoded)
        }
    };
    (frame, verdict)
}

/// Whether the damage left a valid envelope (a fresh checksum), so only the body may be
/// blamed.
fn envelope_intact(damage: &Damage) -> bool {
    matches!(
        damage,
        Damage::None
            | Damage::BodyCut { .. }
            | Damage::BodyAppended(_)
            | Damage::BodyFlipBit { .. }
            | Damage::BodyByte { .. }
            | Damage::BodySplice { .. }
    )
}

/// A valid message with one limit broken, and the verdict that limit must cause.
fn over_a_limit() -> impl Strategy<Value = (Message, Verdict)> {
    let bad_name = prop_oneof![Just(String::new()), "[a-z]{65,80}", "[a-z]{0,8}[ /@#\u{e9}][a-z]{0,8}",];
    let too_long = || proptest::collection::vec(any::<u8>(), MAX_BLOB_LEN + 1..MAX_BLOB_LEN + 8);
    prop_oneof![
        (message_hello(), bad_name.clone(), any::<bool>()).prop_map(|(mut hello, bad, run)| {
            *(if run { &mut hello.run } else { &mut hello.cluster }) = bad;
            (Message::Hello(hello), Verdict::Name)
        }),
        (role_offers(1), region_offers(0), bad_name.clone(), any::<usize>()).prop_map(
            |(mut roles, regions, bad, at)| {
                let at = at % roles.len();
                roles[at].name = bad;
                (Message::Offer(Offer { roles, regions }), Verdict::Name)
            }
        ),
        (region_offers(1), bad_name, any::<usize>()).prop_map(|(mut regions, bad, at)| {
            let at = at % regions.len();
            regions[at].name = bad;
            (Message::RegionUpdate(RegionUpdate { regions }), Verdict::Name)
        }),
        (any::<u64>(), name(), blob(), MAX_ROLES + 1..MAX_ROLES + 4).prop_map(
            |(epoch, name, endpoint, count)| {
                let roles = vec![RoleOffer { name, endpoint }; count];
                (Message::ReconnectReply(Reconnect { epoch, roles }), Verdict::Count)
            }
        ),
        (name(), blob(), MAX_REGIONS + 1..MAX_REGIONS + 4).prop_map(|(name, descriptor, count)| {
            let regions = vec![RegionOffer { name, descriptor }; count];
            (Message::Offer(Offer { roles: Vec::new(), regions }), Verdict::Count)
        }),
        (any::<u64>(), role_offers(1), too_long(), any::<usize>()).prop_map(
            |(epoch, mut roles, long, at)| {
                let at = at % roles.len();
                roles[at].endpoint = long;
                (Message::ReconnectRequest(Reconnect { epoch, roles }), Verdict::Blob)
            }
        ),
        (region_offers(1), too_long(), any::<usize>()).prop_map(|(mut regions, long, at)| {
            let at = at % regions.len();
            regions[at].descriptor = long;
            (Message::RegionUpdate(RegionUpdate { regions }), Verdict::Blob)
        }),
        (MAX_REASON_LEN + 1..MAX_REASON_LEN + 64)
            .prop_map(|len| (Message::Reject(Reject { reason: "r".repeat(len) }), Verdict::Reason)),
        (MAX_REASON_LEN + 1..MAX_REASON_LEN + 64)
            .prop_map(|len| (Message::Fence(Reject { reason: "r".repeat(len) }), Verdict::Reason)),
        (members(1), any::<usize>()).prop_map(|(mut members, at)| {
            let at = at % members.len();
            members.push(members[at]);
            (Message::Members(Members { members }), Verdict::Member)
        }),
        (members(1), NODE_ID_MAX + 1.., any::<usize>()).prop_map(|(mut members, beyond, at)| {
            let at = at % members.len();
            members[at].node = beyond;
            (Message::Members(Members { members }), Verdict::Member)
        }),
        (socket_addr(), MAX_MEMBERS + 1..MAX_MEMBERS + 4).prop_map(|(addr, count)| {
            let members = (0..count as u16).map(|node| Member { node, incarnation: 1, addr }).collect();
            (Message::Members(Members { members }), Verdict::Count)
        }),
    ]
}

fn message_hello() -> impl Strategy<Value = Hello> {
    let names = (spec_name(), spec_name(), any::<u16>(), any::<u32>());
    let session =
        (any::<[u8; 32]>(), any::<bool>(), any::<u64>(), entry(), proptest::option::of(socket_addr()));
    (names, session).prop_map(
        |((cluster, run, node, spec_digest), (nonce, keyed, incarnation, entry, addr))| Hello {
            cluster,
            run,
            node,
            spec_digest,
            nonce,
            keyed,
            incarnation,
            entry,
            addr,
        },
    )
}

// ---- the properties -----------------------------------------------------------------------

proptest! {
    #![proptest_config(seeded(1024))]

    #[test]
    fn valid_messages_decode_to_themselves(message in message()) {
        let frame = message.to_frame();
        prop_assert_eq!(check(&frame)?, Verdict::Decoded);
        prop_assert_eq!(Message::decode_exact(&frame).unwrap(), message);
    }

    #[test]
    fn every_cut_is_truncated(message in message()) {
        let frame = message.to_frame();
        for cut in 0..frame.len() {
            prop_assert_eq!(check(&frame[..cut])?, Verdict::Truncated, "cut at {}", cut);
        }
    }

    #[test]
    fn each_damage_is_refused_by_the_check_for_it(message in message(), damage in damage()) {
        let (frame, want) = apply(&message, &damage);
        let verdict = check(&frame)?;
        if let Some(want) = want {
            prop_assert_eq!(verdict, want, "{:?}", damage);
        }
        if envelope_intact(&damage) {
            prop_assert!(verdict.reached_body(), "{:?} under a fresh checksum blamed the envelope: {:?}", damage, verdict);
        }
        if matches!(damage, Damage::FlipFrameBit { .. }) {
            // CRC-32 detects every single-bit error.
            prop_assert!(!verdict.reached_body(), "a flipped bit got past the envelope: {:?}", verdict);
        }
    }

    #[test]
    fn each_broken_limit_is_refused_with_its_reason((message, want) in over_a_limit()) {
        prop_assert!(!within_limits(&message));
        prop_assert_eq!(check(&message.to_frame())?, want);
    }
}

/// Ready and Proof frames carry nothing; a body is refused whatever it holds.
#[test]
fn ready_and_proof_frames_with_a_body_are_refused() {
    for kind in [FrameKind::Ready, FrameKind::Proof] {
        for body in [&b"\0"[..], b"x", &[0; 64]] {
            assert_eq!(decode(&framed(kind, body)).0, Verdict::BodyOnEmptyKind, "{kind:?} {body:?}");
        }
    }
}

/// The coverage claim: most damaged frames get past the envelope into the body decoder,
/// a good share through it to the limits, and every refusal is reached.
#[test]
fn coverage_mostly_reaches_the_body() {
    // No failure file: this runner is not tied to a source file.
    let mut runner = TestRunner::new(ProptestConfig { failure_persistence: None, ..seeded(4096) });
    let verdicts = std::cell::RefCell::new(BTreeMap::<Verdict, u32>::new());
    let input = prop_oneof![
        3 => (message(), damage()).prop_map(|(message, damage)| apply(&message, &damage).0),
        1 => over_a_limit().prop_map(|(message, _)| message.to_frame()),
    ];
    runner
        .run(&input, |frame| {
            *verdicts.borrow_mut().entry(check(&frame)?).or_default() += 1;
            Ok(())
        })
        .unwrap();
    let verdicts = verdicts.into_inner();
    let count = |keep: fn(Verdict) -> bool| -> u32 {
        verdicts.iter().filter(|(verdict, _)| keep(**verdict)).map(|(_, n)| n).sum()
    };
    let (total, in_body, in_limits) =
        (count(|_| true), count(Verdict::reached_body), count(Verdict::reached_limits));
    eprintln!("{total} frames: {in_body} reached the body decoder, {in_limits} the limits: {verdicts:?}");
    assert!(in_body * 2 > total, "only {in_body} of {total} frames reached the body decoder");
    assert!(in_limits * 4 > total, "only {in_limits} of {total} frames got through the body decoder");
    let all = [
        Verdict::Decoded,
        Verdict::Magic,
        Verdict::Version,
        Verdict::Kind,
        Verdict::Flags,
        Verdict::Tagged,
        Verdict::Length,
        Verdict::Checksum,
        Verdict::Truncated,
        Verdict::AfterFrame,
        Verdict::BodyOnEmptyKind,
        Verdict::Undecodable,
        Verdict::BodyTrailing,
        Verdict::Name,
        Verdict::Count,
        Verdict::Blob,
        Verdict::Reason,
        Verdict::Member,
    ];
    let missed: Vec<_> = all.iter().filter(|verdict| !verdicts.contains_key(verdict)).collect();
    assert!(missed.is_empty(), "never reached: {missed:?}");
}
