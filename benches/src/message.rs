//! The ping-pong message: `size` bytes of a fixed pattern with the iteration number in the
//! last 8-byte word, which is the word the receiver polls (it lands last).

use anyhow::{bail, Result};

/// Bytes of the word that carries the iteration number.
pub const WORD_BYTES: usize = 8;

/// A message buffer, restamped for each iteration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    bytes: Vec<u8>,
}

impl Message {
    /// A message of `size` bytes: a multiple of 8, at least 8, so that the polled word is
    /// aligned wherever the message is.
    pub fn new(size: usize) -> Result<Message> {
        check_size(size)?;
        let bytes = (0..size).map(|index| (index % 251) as u8).collect();
        Ok(Message { bytes })
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: messages carry at least the iteration word.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Offset of the iteration word within the message.
    pub fn word_offset(&self) -> usize {
        self.bytes.len() - WORD_BYTES
    }

    /// Puts `iteration` in the last word and returns the bytes to send.
    #[inline]
    pub fn stamp(&mut self, iteration: u64) -> &[u8] {
        let at = self.word_offset();
        self.bytes[at..].copy_from_slice(&iteration.to_le_bytes());
        &self.bytes
    }

    /// Checks that `received` is this message as stamped with `iteration`: the whole
    /// payload arrived, not just the polled word.
    pub fn verify(&mut self, received: &[u8], iteration: u64) -> Result<()> {
        if self.stamp(iteration) != received {
            bail!(
                "the message of iteration {iteration} arrived damaged: expected {:02x?}, found {:02x?}",
                self.bytes,
                received
            );
        }
        Ok(())
    }
}

/// Checks a message size: a multiple of 8 and at least 8.
pub fn check_size(size: usize) -> Result<()> {
    if size < WORD_BYTES || size % WORD_BYTES != 0 {
        bail!("message size {size}: must be a multiple of {WORD_BYTES} bytes, at least {WORD_BYTES}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_iteration_rides_in_the_last_word() {
        let mut message = Message::new(64).unwrap();
        let bytes = message.stamp(0x0102_0304).to_vec();
        assert_eq!(bytes.len(), 64);
        assert_eq!(u64::from_le_bytes(bytes[56..].try_into().unwrap()), 0x0102_0304);
        assert_eq!(bytes[3], 3);
        message.verify(&bytes, 0x0102_0304).unwrap();
        assert!(message.verify(&bytes, 7).is_err());
        for bad in [0, 4, 12] {
            assert!(Message::new(bad).is_err());
        }
    }
}
