//! What the fuzz target `resp_parse` (`fuzz/`, run with `cargo +nightly fuzz run
//! resp_parse`) checks on arbitrary bytes. It lives here, not in the fuzz crate, so that the
//! normal test suite runs the same body on stable over the checked-in corpus
//! (`replication/tests/resp_corpus.rs` reads `fuzz/seeds/resp_parse/`).
//!
//! [`check`] feeds the bytes to:
//!
//! - the request parser, whole and cut into chunks, under Redis's limits and under tight
//!   ones: it never panics, never asks to discard more than it was given, and the cut
//!   stream gives the same requests as the whole one (the requests before a limit error
//!   being a prefix of the other's: a missing delimiter is judged on the bytes at hand, as
//!   Redis judges it). Every request it accepts, sent again as a multibulk frame, parses
//!   back to the same arguments;
//! - each application's request handling (the KV's and the order book's `prepare`): any
//!   arguments get a command or an error, never a panic, and the order book's commands
//!   decode;
//! - the reply scanner: never panics; where it finds a whole reply, that reply alone is
//!   found whole again and no part of it is; the reply decoder takes exactly the same
//!   replies (nesting past its depth limit aside), and what it decodes encodes to bytes
//!   that decode to the same value.

use crate::apps::kv::KvApp;
use crate::apps::orderbook::{Command, OrderBookApp};
use crate::apps::resp::scan::reply_len;
use crate::apps::resp::value::{DecodeError, Value};
use crate::apps::resp::{reply, Args, Limits, Parsed, ProtocolError, RequestParser};
use crate::apps::server::{App, Prepared};

/// Each request's arguments (`None` for one too large to keep).
pub type Requests = Vec<Option<Vec<Vec<u8>>>>;

/// Limits tight enough that short inputs reach every bound.
pub const TIGHT_LIMITS: Limits =
    Limits { max_request_bytes: 48, max_inline_bytes: 24, max_args: 3, max_bulk_bytes: 40 };

/// Checks every property above on `data`; panics on a violation.
pub fn check(data: &[u8]) {
    for limits in [Limits::default(), TIGHT_LIMITS] {
        check_requests(limits, data);
    }
    check_replies(data);
}

/// What a stream fed in `chunks` parses to, as a server drives the parser: each request's
/// arguments (`None` for one too large to keep), then the error that ended it, if any.
pub fn parse_chunks(limits: Limits, chunks: &[&[u8]]) -> (Requests, Option<ProtocolError>) {
    let mut parser = RequestParser::new(limits);
    let mut buffer: Vec<u8> = Vec::new();
    let mut requests = Vec::new();
    for chunk in chunks {
        buffer.extend_from_slice(chunk);
        loop {
            match parser.parse(&buffer) {
                Ok(Parsed::Request { len }) => {
                    assert!(len <= buffer.len(), "a request of {len} bytes in a buffer of {}", buffer.len());
                    let args = parser.args(&buffer);
                    if !args.is_empty() {
                        requests.push(Some(args.iter_from(0).map(<[u8]>::to_vec).collect()));
                    }
                    buffer.drain(..len);
                }
                Ok(Parsed::TooLarge { len }) => {
                    assert!(len <= buffer.len(), "skipped {len} bytes of a buffer of {}", buffer.len());
                    requests.push(None);
                    buffer.drain(..len);
                }
                Ok(Parsed::Incomplete { discard }) => {
                    assert!(discard <= buffer.len(), "discard {discard} of a buffer of {}", buffer.len());
                    buffer.drain(..discard);
                    break;
                }
                Err(error) => return (requests, Some(error)),
            }
        }
    }
    (requests, None)
}

fn check_requests(limits: Limits, data: &[u8]) {
    let (whole, whole_error) = parse_chunks(limits, &[data]);
    // The chunk size comes from the data, so the fuzzer explores cuts too.
    let step = 1 + usize::from(data.first().copied().unwrap_or(0) % 16);
    let chunks: Vec<&[u8]> = data.chunks(step).collect();
    let (cut, cut_error) = parse_chunks(limits, &chunks);
    if whole_error.is_none() && cut_error.is_none() {
        assert_eq!(whole, cut, "the stream cut every {step} bytes parses differently");
    } else {
        let shorter = whole.len().min(cut.len());
        assert_eq!(whole[..shorter], cut[..shorter], "the stream cut every {step} bytes parses differently");
    }
    for request in whole.iter().flatten() {
        round_trip(request);
        prepare(request);
    }
}

/// Limits no request of the fuzzer's size reaches.
const ROOMY_LIMITS: Limits = Limits {
    max_request_bytes: usize::MAX,
    max_inline_bytes: 64 << 10,
    max_args: 1 << 31,
    max_bulk_bytes: 1 << 40,
};

/// A request sent again as a multibulk frame gives the same arguments.
fn round_trip(request: &[Vec<u8>]) {
    let mut frame = Vec::new();
    reply::request(&mut frame, request.iter().map(Vec::as_slice));
    let (again, error) = parse_chunks(ROOMY_LIMITS, &[&frame]);
    assert_eq!(error, None, "{request:?} encoded does not parse");
    assert_eq!(again, vec![Some(request.to_vec())], "{request:?} does not round-trip");
}

/// Each application turns the request into a command or an error.
fn prepare(request: &[Vec<u8>]) {
    let mut bytes = Vec::new();
    let mut ranges = Vec::new();
    for arg in request {
        ranges.push(bytes.len()..bytes.len() + arg.len());
        bytes.extend_from_slice(arg);
    }
    let args = Args::new(&bytes, &ranges);
    let (mut command, mut out) = (Vec::new(), Vec::new());
    let _ = KvApp.prepare(args, 0, &mut command, &mut out);
    command.clear();
    match OrderBookApp.prepare(args, 0, &mut command, &mut out) {
        Prepared::Read | Prepared::Write | Prepared::Local => {
            let decoded = Command::decode(&command);
            assert!(decoded.is_ok(), "{request:?} prepared as a command that does not decode: {decoded:?}");
        }
        Prepared::Replied | Prepared::Unknown => {}
    }
}

fn check_replies(data: &[u8]) {
    let mut rest = data;
    loop {
        let found = reply_len(rest);
        let decoded = Value::decode(rest);
        match (&found, &decoded) {
            (_, Err(DecodeError::TooDeep)) => {}
            (Ok(Some(len)), Ok(Some((_, decoded_len)))) => assert_eq!(len, decoded_len),
            (Ok(None), Ok(None)) => {}
            (Err(error), Err(DecodeError::Malformed(decode_error))) => assert_eq!(error, decode_error),
            _ => panic!("the scanner says {found:?}, the decoder {decoded:?}"),
        }
        let Ok(Some(len)) = found else { return };
        assert!(len > 0 && len <= rest.len(), "a reply of {len} bytes in {}", rest.len());
        assert_eq!(reply_len(&rest[..len]), Ok(Some(len)), "the reply alone is not whole");
        for cut in [0, len / 2, len - 1] {
            assert_eq!(reply_len(&rest[..cut]), Ok(None), "{cut} bytes of a {len}-byte reply are whole");
        }
        if let Ok(Some((value, _))) = decoded {
            let bytes = value.to_bytes();
            assert_eq!(
                Value::decode(&bytes),
                Ok(Some((value, bytes.len()))),
                "decoded, encoded, decoded again"
            );
        }
        rest = &rest[len..];
    }
}
