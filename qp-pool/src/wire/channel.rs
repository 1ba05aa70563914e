//! From a byte stream to messages and back, without IO: bytes received go in, messages
//! come out; messages to send go in, bytes to write come out.

use crate::error::{Error, Result};
use crate::wire::message::Message;

/// Reassembles frames from a byte stream.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buffer: Vec<u8>,
}

impl FrameDecoder {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. A malformed frame is
    /// an error as soon as the bytes that show it have arrived.
    pub fn next_message(&mut self) -> Result<Option<Message>> {
        match Message::decode(&self.buffer)? {
            Some((message, len)) => {
                self.buffer.drain(..len);
                Ok(Some(message))
            }
            None => Ok(None),
        }
    }

    /// Bytes received but not yet part of a complete message.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The error to report when the stream ends: none if it ended between frames.
    pub fn end_of_stream(&self) -> Option<Error> {
        (!self.buffer.is_empty()).then(|| {
            let need = match Message::decode_exact(&self.buffer) {
                Err(Error::TruncatedFrame { need, .. }) => need,
                _ => self.buffer.len() + 1,
            };
            Error::TruncatedFrame { have: self.buffer.len(), need }
        })
    }
}

/// Both directions of a framed connection.
#[derive(Debug, Default)]
pub struct Channel {
    decoder: FrameDecoder,
    outgoing: Vec<u8>,
}

impl Channel {
    /// Queues `message` for sending.
    pub fn send(&mut self, message: &Message) {
        message.encode(&mut self.outgoing);
    }

    /// Bytes waiting to be written.
    pub fn outgoing(&self) -> &[u8] {
        &self.outgoing
    }

    /// `written` bytes of [`Channel::outgoing`] went out.
    pub fn written(&mut self, written: usize) {
        self.outgoing.drain(..written);
    }

    /// Bytes arrived.
    pub fn received(&mut self, bytes: &[u8]) {
        self.decoder.push(bytes);
    }

    /// The next message received, if complete.
    pub fn next_message(&mut self) -> Result<Option<Message>> {
        self.decoder.next_message()
    }

    /// The decoder, to ask about the end of the stream.
    pub fn decoder(&self) -> &FrameDecoder {
        &self.decoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Reject;

    #[test]
    fn messages_cross_in_any_slicing() {
        let messages = [Message::Ready, Message::Reject(Reject { reason: "no".into() }), Message::Ready];
        let mut sender = Channel::default();
        for message in &messages {
            sender.send(message);
        }
        let bytes = sender.outgoing().to_vec();
        sender.written(bytes.len());
        assert!(sender.outgoing().is_empty());
        for chunk in [1, 2, 5, 13, bytes.len()] {
            let mut receiver = Channel::default();
            let mut got = Vec::new();
            for piece in bytes.chunks(chunk) {
                receiver.received(piece);
                while let Some(message) = receiver.next_message().unwrap() {
                    got.push(message);
                }
            }
            assert_eq!(got, messages);
            assert!(receiver.decoder().end_of_stream().is_none());
        }
        let mut receiver = Channel::default();
        receiver.received(&bytes[..20]);
        while receiver.next_message().unwrap().is_some() {}
        let error = receiver.decoder().end_of_stream().unwrap().to_string();
        assert!(error.contains("truncated frame: 6 of"), "{error}");
    }
}
