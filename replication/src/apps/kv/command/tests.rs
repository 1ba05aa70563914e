use proptest::prelude::*;

use super::*;
use crate::apps::kv::syntax::prepare;
use crate::apps::server::Prepared;

fn encoded(words: &[Vec<u8>], stamp: i64) -> Option<Vec<u8>> {
    let bytes: Vec<u8> = words.concat();
    let mut ranges = Vec::new();
    let mut at = 0;
    for word in words {
        ranges.push(at..at + word.len());
        at += word.len();
    }
    let (mut command, mut reply) = (Vec::new(), Vec::new());
    match prepare(Args::new(&bytes, &ranges), stamp, &mut command, &mut reply) {
        Prepared::Read | Prepared::Write => Some(command),
        _ => None,
    }
}

fn request() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let name = prop::sample::select(crate::apps::kv::syntax::COMMANDS.to_vec());
    let word = prop_oneof![
        prop::sample::select(vec![
            "nx", "xx", "get", "ex", "px", "exat", "pxat", "keepttl", "gt", "lt", "match", "count", "type",
            "1", "-5", "100", "*"
        ])
        .prop_map(|word| word.as_bytes().to_vec()),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    (name, prop::collection::vec(word, 0..6)).prop_map(|(name, rest)| {
        let mut words = vec![name.as_bytes().to_vec()];
        words.extend(rest);
        words
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// What the front end encodes decodes to a command that encodes the same again.
    #[test]
    fn encodings_round_trip(words in request(), stamp: i64) {
        if let Some(bytes) = encoded(&words, stamp) {
            let (decoded_stamp, command) = Command::decode(&bytes).expect("a fresh encoding decodes");
            prop_assert_eq!(decoded_stamp, stamp);
            let mut again = Vec::new();
            command.encode(stamp, &mut again);
            prop_assert_eq!(again, bytes);
        }
    }

    /// A corrupted command never panics the decoder (nor the machine: see its tests).
    #[test]
    fn corrupt_encodings_are_refused_not_panicked_on(
        words in request(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        if let Some(mut bytes) = encoded(&words, 7) {
            for (at, value) in flips {
                let index = at.index(bytes.len());
                bytes[index] = value;
            }
            let _ = Command::decode(&bytes);
            let end = cut.index(bytes.len() + 1);
            let _ = Command::decode(&bytes[..end]);
        }
    }
}

#[test]
fn versions_and_opcodes_are_checked() {
    let bytes = encoded(&[b"GET".to_vec(), b"k".to_vec()], 1).unwrap();
    let mut other = bytes.clone();
    other[0] = 2;
    assert_eq!(Command::decode(&other).unwrap_err(), DecodeError::Version(2));
    let mut other = bytes.clone();
    other[9] = 200;
    assert_eq!(Command::decode(&other).unwrap_err(), DecodeError::Opcode(200));
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Command::decode(&longer).unwrap_err(), DecodeError::Malformed);
    assert_eq!(Command::decode(&bytes[..bytes.len() - 1]).unwrap_err(), DecodeError::Malformed);
}
