//! Batches: several client commands in one entry's payload.
//!
//! ```text
//! count u32, then per command: client u64, sequence u64, len u32, bytes
//! ```
//!
//! Every command carries who sent it (`client`) and its number among that client's
//! commands (`sequence`), so that a command proposed twice (a client retrying after a
//! leader change, a new leader re-proposing what it found in the log) is applied once.

/// Bytes before the first command.
pub const BATCH_HEADER_BYTES: usize = 4;
/// Bytes before each command's own bytes.
pub const COMMAND_HEADER_BYTES: usize = 20;

/// Who sent a command and its number among that client's commands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId {
    /// The client (unique across the cluster's life).
    pub client: u64,
    /// The command's number among the client's; a client numbers its commands 1, 2, 3, …
    pub sequence: u64,
}

/// Builds a batch into a buffer of bounded size.
#[derive(Debug)]
pub struct BatchBuilder {
    bytes: Vec<u8>,
    limit: usize,
    count: u32,
}

impl BatchBuilder {
    /// An empty batch that may grow to `limit` bytes.
    pub fn new(limit: usize) -> BatchBuilder {
        assert!(limit >= BATCH_HEADER_BYTES, "a batch needs room for its count");
        let mut bytes = Vec::with_capacity(limit);
        bytes.extend_from_slice(&0u32.to_le_bytes());
        BatchBuilder { bytes, limit, count: 0 }
    }

    /// Hands over the batch built so far, and starts an empty one in `buffer` (its
    /// allocation reused, grown to the limit if need be): a built batch leaves without a
    /// copy, and a builder fed back the buffers it handed over allocates nothing.
    pub fn take(&mut self, buffer: Vec<u8>) -> Vec<u8> {
        let mut fresh = buffer;
        fresh.clear();
        fresh.reserve(self.limit);
        fresh.extend_from_slice(&0u32.to_le_bytes());
        self.count = 0;
        std::mem::replace(&mut self.bytes, fresh)
    }

    /// Empties it for reuse, keeping its buffer.
    pub fn clear(&mut self) {
        self.bytes.truncate(BATCH_HEADER_BYTES);
        self.bytes[..4].fill(0);
        self.count = 0;
    }

    /// Bytes a command of `len` bytes adds.
    pub fn cost(len: usize) -> usize {
        COMMAND_HEADER_BYTES + len
    }

    /// Whether a command of `len` bytes still fits.
    pub fn fits(&self, len: usize) -> bool {
        self.bytes.len() + Self::cost(len) <= self.limit
    }

    /// Appends a command; false (and nothing appended) when it does not fit.
    pub fn push(&mut self, id: CommandId, command: &[u8]) -> bool {
        if !self.fits(command.len()) {
            return false;
        }
        self.bytes.extend_from_slice(&id.client.to_le_bytes());
        self.bytes.extend_from_slice(&id.sequence.to_le_bytes());
        self.bytes.extend_from_slice(&(command.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(command);
        self.count += 1;
        self.bytes[..4].copy_from_slice(&self.count.to_le_bytes());
        true
    }

    /// Commands in it.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The encoded batch.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// A batch that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed batch: {0}")]
pub struct MalformedBatch(&'static str);

/// The commands of an encoded batch, in order.
pub fn commands(payload: &[u8]) -> Result<Commands<'_>, MalformedBatch> {
    let count = payload.get(..4).ok_or(MalformedBatch("no command count"))?;
    let count = u32::from_le_bytes(count.try_into().expect("4 bytes"));
    // Check the whole batch first, so a consumer never applies half of a broken one.
    let mut rest = &payload[4..];
    for _ in 0..count {
        let (_, _, after) = split_command(rest)?;
        rest = after;
    }
    if !rest.is_empty() {
        return Err(MalformedBatch("bytes after the last command"));
    }
    Ok(Commands { rest: &payload[4..], left: count })
}

fn split_command(bytes: &[u8]) -> Result<(CommandId, &[u8], &[u8]), MalformedBatch> {
    let header = bytes.get(..COMMAND_HEADER_BYTES).ok_or(MalformedBatch("a command header is cut"))?;
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let id = CommandId { client: word(0), sequence: word(8) };
    let len = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes")) as usize;
    let end = COMMAND_HEADER_BYTES.checked_add(len).ok_or(MalformedBatch("a command length overflows"))?;
    let command = bytes.get(COMMAND_HEADER_BYTES..end).ok_or(MalformedBatch("a command is cut"))?;
    Ok((id, command, &bytes[end..]))
}

/// Iterator over a batch's commands ([`commands`] checked it whole).
#[derive(Clone, Debug)]
pub struct Commands<'a> {
    rest: &'a [u8],
    left: u32,
}

impl<'a> Iterator for Commands<'a> {
    type Item = (CommandId, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let (id, command, rest) = split_command(self.rest).expect("checked when the batch was opened");
        self.rest = rest;
        self.left -= 1;
        Some((id, command))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builds_within_the_limit() {
        let mut batch = BatchBuilder::new(BATCH_HEADER_BYTES + 2 * BatchBuilder::cost(3));
        let id = |sequence| CommandId { client: 1, sequence };
        assert!(batch.push(id(1), b"abc"));
        assert!(batch.push(id(2), b"def"));
        assert!(!batch.push(id(3), b"g"));
        let seen: Vec<_> = commands(batch.bytes()).unwrap().collect();
        assert_eq!(seen, vec![(id(1), &b"abc"[..]), (id(2), &b"def"[..])]);
        batch.clear();
        assert_eq!(commands(batch.bytes()).unwrap().count(), 0);
    }

    #[test]
    fn a_taken_batch_leaves_an_empty_builder_in_the_given_buffer() {
        let mut batch = BatchBuilder::new(BATCH_HEADER_BYTES + 2 * BatchBuilder::cost(3));
        let id = |sequence| CommandId { client: 1, sequence };
        assert!(batch.push(id(1), b"abc"));
        let taken = batch.take(b"old bytes".to_vec());
        assert_eq!(commands(&taken).unwrap().collect::<Vec<_>>(), vec![(id(1), &b"abc"[..])]);
        assert!(batch.is_empty());
        assert_eq!(commands(batch.bytes()).unwrap().count(), 0);
        assert!(batch.push(id(2), b"def") && batch.push(id(3), b"ghi"), "the limit is kept");
        assert!(!batch.push(id(4), b"j"));
        let seen: Vec<_> = commands(batch.bytes()).unwrap().collect();
        assert_eq!(seen, vec![(id(2), &b"def"[..]), (id(3), &b"ghi"[..])]);
    }

    proptest! {
        #[test]
        fn round_trips(cmds in proptest::collection::vec((any::<u64>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40)), 0..20)) {
            let mut batch = BatchBuilder::new(1 << 16);
            for (client, sequence, bytes) in &cmds {
                let id = CommandId { client: *client, sequence: *sequence };
                prop_assert!(batch.push(id, bytes));
            }
            let seen: Vec<_> = commands(batch.bytes()).unwrap().map(|(id, bytes)| (id.client, id.sequence, bytes.to_vec())).collect();
            prop_assert_eq!(seen, cmds);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(parsed) = commands(&bytes) {
                let _ = parsed.count();
            }
        }
    }
}
