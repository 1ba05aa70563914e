//! [`RequestParser`]: client requests off a byte stream, sans IO — multibulk frames
//! (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and inline commands (`GET k\r\n`), cut anywhere,
//! pipelined, and bounded against hostile input.
//!
//! It follows Redis 7.0's `processMultibulkBuffer` / `processInlineBuffer` byte for byte
//! where a client can tell the difference: the same protocol error texts, a header line
//! ended by `\r` whose next byte is taken unseen, a bulk's trailing two bytes skipped
//! without a look, empty frames (`*0`, `*-1`, a blank inline line) ignored. Two bounds are
//! ours: at most [`Limits::max_args`] arguments (Redis allows `INT_MAX`), and a request
//! over [`Limits::max_request_bytes`] is not kept but skipped as it arrives and reported
//! [`Parsed::TooLarge`], so one client cannot make the server buffer half a gigabyte.
//!
//! The parser resumes where it stopped: feeding a large frame a few bytes at a time costs
//! no more than feeding it whole.

use std::ops::Range;

use crate::apps::resp::inline::split_inline;
use crate::apps::resp::number::parse_i64;

/// Bounds on what a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A bulk longer than this is a protocol error (Redis's `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_bytes: u64,
    /// A multibulk count above this is a protocol error.
    pub max_args: u64,
    /// An inline request, or a header line, longer than this without its newline is a
    /// protocol error (Redis's `PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub max_inline_bytes: usize,
    /// A request larger than this is skipped, not kept, and reported
    /// [`Parsed::TooLarge`].
    pub max_request_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk_bytes: 512 << 20,
            max_args: 1 << 20,
            max_inline_bytes: 64 << 10,
            max_request_bytes: 1 << 20,
        }
    }
}

/// A malformed request: the client gets `-ERR Protocol error: …` and the connection
/// closes, as Redis does.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// An inline request with no newline within the limit.
    #[error("too big inline request")]
    TooBigInline,
    /// An inline request whose quotes do not close.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
    /// A multibulk count line with no end within the limit.
    #[error("too big mbulk count string")]
    TooBigCount,
    /// A multibulk count that is not a number or too large.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// A bulk length line with no end within the limit.
    #[error("too big bulk count string")]
    TooBigBulkCount,
    /// Something other than `$` where a bulk should start.
    #[error("expected '$', got '{}'", char::from(*.0))]
    ExpectedDollar(u8),
    /// A bulk length that is not a number, negative, or over the limit.
    #[error("invalid bulk length")]
    InvalidBulkLength,
}

impl ProtocolError {
    /// The reply Redis sends before closing: `-ERR Protocol error: …\r\n`, control
    /// characters turned into spaces.
    pub fn reply(&self) -> Vec<u8> {
        let mut reply = Vec::new();
        crate::apps::resp::reply::error(&mut reply, format!("ERR Protocol error: {self}"));
        reply
    }
}

/// What [`RequestParser::parse`] found at the front of the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole request of `len` bytes; its arguments are [`RequestParser::args`] (none
    /// for an empty frame, which the caller skips).
    Request {
        /// Bytes it took.
        len: usize,
    },
    /// A whole request that exceeded [`Limits::max_request_bytes`]; its last `len` bytes
    /// are at the front of the buffer (the rest was discarded on the way).
    TooLarge {
        /// Bytes it took from the buffer as it is now.
        len: usize,
    },
    /// More bytes are needed. The first `discard` bytes of the buffer belong to a request
    /// being skipped: drop them before the next call.
    Incomplete {
        /// Bytes to drop from the front.
        discard: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a request.
    Start,
    /// Inside a multibulk: `remaining` bulks to go.
    Header { remaining: u64 },
    /// Inside a bulk's body: `len` bytes and the two that end it.
    Body { remaining: u64, len: u64 },
    /// Skipping a bulk of a request too large to keep: `left` bytes to go.
    Skip { remaining: u64, left: u64 },
}

/// Where the arguments of the last request live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Buffer,
    Inline,
}

/// The arguments of one request.
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    bytes: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// Arguments over `bytes` at `ranges` (for tests and for requests built by hand).
    pub fn new(bytes: &'a [u8], ranges: &'a [Range<usize>]) -> Args<'a> {
        Args { bytes, ranges }
    }

    /// How many (the command name included).
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `index`.
    ///
    /// # Panics
    /// If `index >= len()`.
    pub fn get(&self, index: usize) -> &'a [u8] {
        &self.bytes[self.ranges[index].clone()]
    }

    /// The arguments from `from` on.
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.ranges.iter().skip(from).map(|range| &self.bytes[range.clone()])
    }
}

/// A resumable request parser (one per connection).
#[derive(Clone, Debug)]
pub struct RequestParser {
    limits: Limits,
    state: State,
    /// Position in the buffer of the next byte to look at.
    pos: usize,
    /// The current request is being skipped: nothing of it is kept.
    skipping: bool,
    ranges: Vec<Range<usize>>,
    source: Source,
    inline: Vec<u8>,
}

impl RequestParser {
    /// A parser at the start of a stream.
    pub fn new(limits: Limits) -> RequestParser {
        RequestParser {
            limits,
            state: State::Start,
            pos: 0,
            skipping: false,
            ranges: Vec::new(),
            source: Source::Buffer,
            inline: Vec::new(),
        }
    }

    /// Its bounds.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The arguments of the request last reported [`Parsed::Request`]; `buffer` is the
    /// buffer given to that call.
    pub fn args<'a>(&'a self, buffer: &'a [u8]) -> Args<'a> {
        let bytes = match self.source {
            Source::Buffer => buffer,
            Source::Inline => &self.inline,
        };
        Args { bytes, ranges: &self.ranges }
    }

    /// Parses the request at the front of `buffer` — the bytes from where the last
    /// complete request (or discard) ended, with whatever arrived since. Call again with
    /// the same buffer plus more bytes after [`Parsed::Incomplete`] (less the discarded
    /// front); after a complete request, with the buffer past it. After an error the
    /// stream is unusable.
    pub fn parse(&mut self, buffer: &[u8]) -> Result<Parsed, ProtocolError> {
        loop {
            match self.state {
                State::Start => {
                    let Some(&first) = buffer.get(self.pos) else { return Ok(self.incomplete()) };
                    self.ranges.clear();
                    self.source = Source::Buffer;
                    if first != b'*' {
                        return self.parse_inline(buffer);
                    }
                    let Some((count, next)) = self.line_number(buffer, ProtocolError::TooBigCount)? else {
                        return Ok(self.incomplete());
                    };
                    let count = count.ok_or(ProtocolError::InvalidMultibulkLength)?;
                    if count > i64::from(i32::MAX) || (count > 0 && count as u64 > self.limits.max_args) {
                        return Err(ProtocolError::InvalidMultibulkLength);
                    }
                    self.pos = next;
                    if count <= 0 {
                        return Ok(self.complete());
                    }
                    self.state = State::Header { remaining: count as u64 };
                }
                State::Header { remaining } => {
                    let Some(&first) = buffer.get(self.pos) else { return Ok(self.incomplete()) };
                    if first != b'$' {
                        return Err(ProtocolError::ExpectedDollar(first));
                    }
                    let Some((len, next)) = self.line_number(buffer, ProtocolError::TooBigBulkCount)? else {
                        return Ok(self.incomplete());
                    };
                    let len = match len {
                        Some(len) if len >= 0 && len as u64 <= self.limits.max_bulk_bytes => len as u64,
                        _ => return Err(ProtocolError::InvalidBulkLength),
                    };
                    self.pos = next;
                    if !self.skipping && self.pos as u64 + len + 2 > self.limits.max_request_bytes as u64 {
                        // Too large to keep: what was kept of it goes, the rest is skipped
                        // as it arrives.
                        self.skipping = true;
                        self.ranges.clear();
                    }
                    self.state = if self.skipping {
                        State::Skip { remaining, left: len + 2 }
                    } else {
                        State::Body { remaining, len }
                    };
                }
                State::Body { remaining, len } => {
                    if ((buffer.len() - self.pos) as u64) < len + 2 {
                        return Ok(Parsed::Incomplete { discard: 0 });
                    }
                    let start = self.pos;
                    self.ranges.push(start..start + len as usize);
                    self.pos += len as usize + 2;
                    if let Some(parsed) = self.next_bulk(remaining) {
                        return Ok(parsed);
                    }
                }
                State::Skip { remaining, left } => {
                    let taken = left.min((buffer.len() - self.pos) as u64);
                    self.pos += taken as usize;
                    if taken < left {
                        self.state = State::Skip { remaining, left: left - taken };
                        return Ok(self.incomplete());
                    }
                    if let Some(parsed) = self.next_bulk(remaining) {
                        return Ok(parsed);
                    }
                }
            }
        }
    }

    /// After a bulk: the request is complete, or the next bulk's header is due.
    fn next_bulk(&mut self, remaining: u64) -> Option<Parsed> {
        if remaining == 1 {
            return Some(self.complete());
        }
        self.state = State::Header { remaining: remaining - 1 };
        None
    }

    /// Reads `<sign><digits>\r` after the type byte at `pos`; the byte after `\r` is taken
    /// without a look, as Redis does. `None` when the line is not all there yet; the number
    /// is `None` when the digits do not parse.
    fn line_number(
        &self,
        buffer: &[u8],
        too_long: ProtocolError,
    ) -> Result<Option<(Option<i64>, usize)>, ProtocolError> {
        let rest = &buffer[self.pos..];
        let Some(cr) = memchr(b'\r', rest) else {
            if rest.len() > self.limits.max_inline_bytes {
                return Err(too_long);
            }
            return Ok(None);
        };
        if cr + 2 > rest.len() {
            return Ok(None);
        }
        Ok(Some((parse_i64(&rest[1..cr]), self.pos + cr + 2)))
    }

    fn parse_inline(&mut self, buffer: &[u8]) -> Result<Parsed, ProtocolError> {
        let rest = &buffer[self.pos..];
        let Some(newline) = memchr(b'\n', rest) else {
            if rest.len() > self.limits.max_inline_bytes {
                return Err(ProtocolError::TooBigInline);
            }
            return Ok(Parsed::Incomplete { discard: 0 });
        };
        let mut line = &rest[..newline];
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        self.inline.clear();
        split_inline(line, &mut self.inline, &mut self.ranges)
            .map_err(|_| ProtocolError::UnbalancedQuotes)?;
        self.source = Source::Inline;
        self.pos += newline + 1;
        Ok(self.complete())
    }

    fn incomplete(&mut self) -> Parsed {
        if self.skipping {
            let discard = self.pos;
            self.pos = 0;
            return Parsed::Incomplete { discard };
        }
        Parsed::Incomplete { discard: 0 }
    }

    fn complete(&mut self) -> Parsed {
        let len = std::mem::take(&mut self.pos);
        self.state = State::Start;
        if std::mem::take(&mut self.skipping) {
            self.ranges.clear();
            return Parsed::TooLarge { len };
        }
        Parsed::Request { len }
    }
}

/// The first `needle` in `haystack`.
fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&byte| byte == needle)
}

#[cfg(test)]
mod tests;
