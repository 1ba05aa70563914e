//! Length-prefixed frames on a byte stream (the client transport): a little-endian `u32`
//! length, then that many bytes. A length above the reader's bound is a protocol error and
//! the connection is dropped, so a peer cannot make us buffer without limit.

use std::io::{self, ErrorKind, Read, Write};

/// Bytes of the length prefix.
pub const PREFIX_BYTES: usize = 4;

/// Appends `payload` as one frame to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).expect("frames are bounded far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Writes `payload` as one frame (blocking).
pub fn write_frame(stream: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(PREFIX_BYTES + payload.len());
    encode(payload, &mut bytes);
    stream.write_all(&bytes)
}

/// Why a stream's frames stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer announced a frame longer than allowed.
    #[error("a frame of {len} bytes, above the {max} allowed")]
    TooLong {
        /// Announced.
        len: usize,
        /// Allowed.
        max: usize,
    },
    /// The peer closed the stream.
    #[error("the peer closed the connection")]
    Closed,
    /// Reading failed.
    #[error("reading a frame: {0}")]
    Io(#[from] io::Error),
}

/// Bytes one read of a stream takes at most.
const READ_CHUNK_BYTES: usize = 16 << 10;

/// Reassembles frames from a stream read in whatever pieces it arrives in.
#[derive(Debug)]
pub struct FrameReader {
    buffer: Vec<u8>,
    max: usize,
    /// What one read takes, allocated once: a poll finding nothing costs a syscall, not
    /// also a 16 KiB memset.
    chunk: Box<[u8]>,
}

impl FrameReader {
    /// A reader refusing frames above `max` bytes.
    pub fn new(max: usize) -> FrameReader {
        FrameReader { buffer: Vec::new(), max, chunk: vec![0; READ_CHUNK_BYTES].into_boxed_slice() }
    }

    /// Takes `bytes` read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete frame, if one is buffered.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let Some(prefix) = self.buffer.get(..PREFIX_BYTES) else { return Ok(None) };
        let len = u32::from_le_bytes(prefix.try_into().expect("four bytes")) as usize;
        if len > self.max {
            return Err(FrameError::TooLong { len, max: self.max });
        }
        if self.buffer.len() < PREFIX_BYTES + len {
            return Ok(None);
        }
        let frame = self.buffer[PREFIX_BYTES..PREFIX_BYTES + len].to_vec();
        self.buffer.drain(..PREFIX_BYTES + len);
        Ok(Some(frame))
    }

    /// Reads what a non-blocking `stream` has (until it would block) into the buffer.
    pub fn fill(&mut self, stream: &mut impl Read) -> Result<(), FrameError> {
        loop {
            match stream.read(&mut self.chunk) {
                Ok(0) => return Err(FrameError::Closed),
                Ok(n) => self.buffer.extend_from_slice(&self.chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_back_whole_from_any_split() {
        let mut bytes = Vec::new();
        encode(b"hello", &mut bytes);
        encode(b"", &mut bytes);
        encode(&[7; 300], &mut bytes);
        for split in 0..bytes.len() {
            let mut reader = FrameReader::new(1000);
            reader.push(&bytes[..split]);
            let mut frames = Vec::new();
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
            reader.push(&bytes[split..]);
            while let Some(frame) = reader.next_frame().unwrap() {
                frames.push(frame);
            }
            assert_eq!(frames, vec![b"hello".to_vec(), Vec::new(), vec![7; 300]], "split at {split}");
        }
    }

    #[test]
    fn an_announced_length_above_the_bound_is_refused_before_buffering_it() {
        let mut reader = FrameReader::new(10);
        reader.push(&11u32.to_le_bytes());
        assert!(matches!(reader.next_frame(), Err(FrameError::TooLong { len: 11, max: 10 })));
    }
}
