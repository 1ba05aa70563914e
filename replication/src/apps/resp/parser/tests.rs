use proptest::prelude::*;

use super::*;
use crate::apps::fuzz::{parse_chunks, TIGHT_LIMITS};

fn encode(args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    crate::apps::resp::reply::request(&mut out, args.iter().map(Vec::as_slice));
    out
}

fn words(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|item| item.as_bytes().to_vec()).collect()
}

#[test]
fn multibulk_and_inline_pipelined() {
    let stream = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n\r\n*0\r\n*-1\r\nset a \"b c\"\n";
    let (requests, error) = parse_chunks(Limits::default(), &[stream]);
    assert_eq!(error, None);
    assert_eq!(
        requests,
        vec![Some(words(&["GET", "k"])), Some(words(&["PING"])), Some(words(&["set", "a", "b c"]))]
    );
}

#[test]
fn protocol_errors_as_redis_words_them() {
    let limits = Limits::default();
    let cases: &[(&[u8], &str)] = &[
        (b"*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*2147483648\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n+3\r\n", "-ERR Protocol error: expected '$', got '+'\r\n"),
        (b"*1\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n$536870913\r\n", "-ERR Protocol error: invalid bulk length\r\n"),
        (b"set \"a\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"),
    ];
    for (stream, reply) in cases {
        let (_, error) = parse_chunks(limits, &[stream]);
        let error = error.unwrap_or_else(|| panic!("{:?} parsed", String::from_utf8_lossy(stream)));
        assert_eq!(String::from_utf8(error.reply()).unwrap(), *reply);
    }
    let long_inline = vec![b'a'; 64 * 1024 + 1];
    assert_eq!(parse_chunks(limits, &[&long_inline]).1, Some(ProtocolError::TooBigInline));
    let mut long_count = b"*".to_vec();
    long_count.extend(vec![b'1'; 64 * 1024 + 1]);
    assert_eq!(parse_chunks(limits, &[&long_count]).1, Some(ProtocolError::TooBigCount));
    let mut long_bulk = b"*1\r\n$".to_vec();
    long_bulk.extend(vec![b'1'; 64 * 1024 + 1]);
    assert_eq!(parse_chunks(limits, &[&long_bulk]).1, Some(ProtocolError::TooBigBulkCount));
}

#[test]
fn half_a_gigabyte_is_the_largest_bulk() {
    // 512 MiB itself is a valid length (Redis refuses only above it): the parser waits.
    let (requests, error) = parse_chunks(Limits::default(), &[b"*1\r\n$536870912\r\n"]);
    assert_eq!((requests.len(), error), (0, None));
}

#[test]
fn an_oversized_request_is_skipped_not_kept() {
    let limits = Limits { max_request_bytes: 64, ..Limits::default() };
    let big = encode(&[b"SET".to_vec(), b"k".to_vec(), vec![b'v'; 1000]]);
    let after = encode(&words(&["GET", "k"]));
    let mut parser = RequestParser::new(limits);
    let mut buffer = Vec::new();
    let mut kept_most = 0;
    for chunk in big.chunks(100) {
        buffer.extend_from_slice(chunk);
        match parser.parse(&buffer).unwrap() {
            Parsed::Incomplete { discard } => drop(buffer.drain(..discard)),
            Parsed::TooLarge { len } => drop(buffer.drain(..len)),
            other => panic!("{other:?}"),
        }
        kept_most = kept_most.max(buffer.len());
    }
    assert!(buffer.is_empty());
    assert!(kept_most <= 100, "kept {kept_most} bytes of a request being skipped");
    let (requests, error) = parse_chunks(limits, &[&big, &after]);
    assert_eq!(error, None);
    assert_eq!(requests, vec![None, Some(words(&["GET", "k"]))]);
}

#[test]
fn the_byte_after_a_header_cr_is_not_looked_at() {
    // As in Redis: `\r` ends a header line and the next byte is skipped unseen, and a
    // bulk's two trailing bytes are skipped unseen.
    let (requests, error) = parse_chunks(Limits::default(), &[b"*1\rX$4\r\nPINGzz"]);
    assert_eq!(error, None);
    assert_eq!(requests, vec![Some(words(&["PING"]))]);
}

fn request_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Requests come out as they went in, however the stream is cut.
    #[test]
    fn any_cut_gives_the_same_requests(
        requests in prop::collection::vec(request_strategy(), 1..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let stream: Vec<u8> = requests.iter().flat_map(|request| encode(request)).collect();
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let chunks: Vec<&[u8]> = points.windows(2).map(|pair| &stream[pair[0]..pair[1]]).collect();
        let (parsed, error) = parse_chunks(Limits::default(), &chunks);
        prop_assert_eq!(error, None);
        let expected: Vec<_> = requests.into_iter().map(Some).collect();
        prop_assert_eq!(parsed, expected);
    }

    /// Arbitrary bytes, cut anywhere, never panic, and the parser never asks to discard
    /// more than it was given.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cut in any::<prop::sample::Index>(),
        small in any::<bool>(),
    ) {
        let limits = if small {
            Limits { max_request_bytes: 32, max_inline_bytes: 16, max_args: 4, max_bulk_bytes: 64 }
        } else {
            Limits::default()
        };
        let at = cut.index(bytes.len() + 1);
        let _ = parse_chunks(limits, &[&bytes[..at], &bytes[at..]]);
    }
}

/// A mutation of a valid stream: the fuzzer's moves.
#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: prop::sample::Index, byte: u8 },
    Insert { at: prop::sample::Index, bytes: Vec<u8> },
    Delete { at: prop::sample::Index, len: usize },
    Duplicate { at: prop::sample::Index, len: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to the grammar are drawn more often than chance would.
    let interesting = prop_oneof![prop::sample::select(b"*$\r\n-0123456789\"' \\x".to_vec()), any::<u8>(),];
    prop_oneof![
        (any::<prop::sample::Index>(), interesting.clone())
            .prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        (any::<prop::sample::Index>(), prop::collection::vec(interesting, 1..8))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<prop::sample::Index>(), 1usize..8).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<prop::sample::Index>(), 1usize..32).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
    ]
}

fn mutate(stream: &mut Vec<u8>, mutation: &Mutation) {
    if stream.is_empty() {
        return;
    }
    match mutation {
        Mutation::Flip { at, byte } => {
            let at = at.index(stream.len());
            stream[at] = *byte;
        }
        Mutation::Insert { at, bytes } => {
            let at = at.index(stream.len() + 1);
            stream.splice(at..at, bytes.iter().copied());
        }
        Mutation::Delete { at, len } => {
            let at = at.index(stream.len());
            let end = (at + len).min(stream.len());
            stream.drain(at..end);
        }
        Mutation::Duplicate { at, len } => {
            let at = at.index(stream.len());
            let end = (at + len).min(stream.len());
            let copy = stream[at..end].to_vec();
            stream.splice(at..at, copy);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// The structured fuzzer (run in every `cargo test`; more cases with
    /// `PROPTEST_CASES=1000000 cargo test -p usec-replication --lib structured_fuzz`):
    /// valid pipelines of multibulk and inline requests, mutated where the grammar is
    /// delicate, cut anywhere, under tight and default limits. The parser never panics,
    /// never asks to discard what it was not given, and never reports a request longer
    /// than its buffer — the server's own use of it is the harness.
    #[test]
    fn structured_fuzz(
        requests in prop::collection::vec(request_strategy(), 1..6),
        inline in prop::collection::vec("[a-z \"'\\\\]{0,12}", 0..3),
        mutations in prop::collection::vec(mutation(), 1..6),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        tight in any::<bool>(),
    ) {
        let mut stream: Vec<u8> = requests.iter().flat_map(|request| encode(request)).collect();
        for line in &inline {
            stream.extend_from_slice(line.as_bytes());
            stream.extend_from_slice(b"\r\n");
        }
        for mutation in &mutations {
            mutate(&mut stream, mutation);
        }
        let limits = if tight { TIGHT_LIMITS } else { Limits::default() };
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let chunks: Vec<&[u8]> = points.windows(2).map(|pair| &stream[pair[0]..pair[1]]).collect();
        let (requests, _) = parse_chunks(limits, &chunks);
        for request in requests.iter().flatten() {
            prop_assert!(request.len() as u64 <= limits.max_args.max(64));
        }
    }
}
