//! From a byte stream to messages and back, without IO: bytes received go in, messages
//! come out; messages to send go in, bytes to write come out. Once
//! [authenticated](Channel::authenticate), a channel tags what it sends and checks the tags
//! of what it receives (see [`auth`](super::auth)).

use crate::error::{Error, Result};
use crate::wire::auth::Session;
use crate::wire::frame::{announced_len, encode_frame_with_tag, parse_frame, FrameKind};
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

    /// The next complete message of an untagged stream, `Ok(None)` if more bytes are
    /// needed. A malformed frame is an error as soon as the bytes that show it have
    /// arrived; so is a tagged one (a [`Channel`] checks tags).
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
            let need = match parse_frame(&self.buffer) {
                Ok(None) => announced_len(&self.buffer),
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
    session: Option<Session>,
}

impl Channel {
    /// Queues `message` for sending (tagged once the channel is authenticated, except a
    /// `Reject`, which is never tagged).
    pub fn send(&mut self, message: &Message) {
        let (kind, body) = (message.kind(), message.body());
        let tag = match &mut self.session {
            Some(session) if kind != FrameKind::Reject => Some(session.seal(kind, &body)),
            _ => None,
        };
        encode_frame_with_tag(kind, &body, tag.as_ref(), &mut self.outgoing);
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

    /// The next message received, if complete. On an authenticated channel every frame but
    /// a `Reject` must carry a tag that verifies, checked before its body is decoded; on
    /// another, a tagged frame is refused.
    pub fn next_message(&mut self) -> Result<Option<Message>> {
        let Some(frame) = parse_frame(&self.decoder.buffer)? else { return Ok(None) };
        match &mut self.session {
            Some(_) if frame.kind == FrameKind::Reject => {}
            Some(session) => session.open(frame.kind, frame.body, frame.tag)?,
            None if frame.tag.is_some() => {
                return Err(Error::malformed("flags", "a tagged frame, and no cluster key to check it with"));
            }
            None => {}
        }
        let message = Message::from_frame(&frame)?;
        let len = frame.len;
        self.decoder.buffer.drain(..len);
        Ok(Some(message))
    }

    /// The decoder, to ask about the end of the stream.
    pub fn decoder(&self) -> &FrameDecoder {
        &self.decoder
    }

    /// From now on, tags what is sent and requires valid tags on what is received.
    pub(crate) fn authenticate(&mut self, session: Session) {
        assert!(self.session.is_none(), "a channel is authenticated once");
        self.session = Some(session);
    }

    /// Whether frames are tagged and checked.
    pub fn is_authenticated(&self) -> bool {
        self.session.is_some()
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
        assert!(error.contains("truncated frame: 5 of 15 bytes"), "{error}");
    }

    fn authenticated_pair() -> (Channel, Channel) {
        use crate::cluster_key::ClusterKey;
        use crate::wire::Hello;
        let hello = |node: u16| Hello {
            cluster: "kv".into(),
            run: "r".into(),
            node,
            spec_digest: 1,
            nonce: [node as u8; 32],
            keyed: true,
            incarnation: 0,
            entry: crate::wire::Entry::Start,
            addr: None,
        };
        let key = ClusterKey::from_bytes([9; 32]);
        let (mut dialer, mut listener) = (Channel::default(), Channel::default());
        dialer.authenticate(Session::new(&key, &hello(0), &hello(1), true));
        listener.authenticate(Session::new(&key, &hello(0), &hello(1), false));
        (dialer, listener)
    }

    /// Moves what `from` queued into `to` and returns `to`'s next message.
    fn cross(from: &mut Channel, to: &mut Channel) -> Result<Option<Message>> {
        let bytes = from.outgoing().to_vec();
        from.written(bytes.len());
        to.received(&bytes);
        to.next_message()
    }

    #[test]
    fn an_authenticated_channel_tags_and_checks_every_frame_but_reject() {
        let (mut dialer, mut listener) = authenticated_pair();
        assert!(dialer.is_authenticated());
        dialer.send(&Message::Proof);
        let frame = dialer.outgoing().to_vec();
        assert_eq!(frame.len(), crate::wire::HEADER_LEN + crate::wire::TAG_LEN);
        assert_eq!(cross(&mut dialer, &mut listener).unwrap(), Some(Message::Proof));
        listener.send(&Message::Ready);
        assert_eq!(cross(&mut listener, &mut dialer).unwrap(), Some(Message::Ready));
        // A reject goes untagged and is taken untagged: a peer may refuse before it can tag.
        let reject = Message::Reject(Reject { reason: "no".into() });
        listener.send(&reject);
        assert_eq!(listener.outgoing(), reject.to_frame());
        assert_eq!(cross(&mut listener, &mut dialer).unwrap(), Some(reject));
        // An untagged frame is refused.
        listener.received(&Message::Ready.to_frame());
        let error = listener.next_message().unwrap_err().to_string();
        assert!(error.contains("an untagged Ready frame on an authenticated connection"), "{error}");
    }

    #[test]
    fn a_tampered_frame_with_a_fixed_checksum_fails_its_tag() {
        let (mut dialer, mut listener) = authenticated_pair();
        dialer.send(&Message::Reject(Reject { reason: "x".into() }));
        dialer.written(dialer.outgoing().len());
        dialer.send(&Message::Offer(crate::wire::Offer::default()));
        let mut frame = dialer.outgoing().to_vec();
        // Turn the Offer into a RegionUpdate with the same (empty-list) body shape, and
        // fix the CRC so that only the tag can tell.
        frame[5] = FrameKind::RegionUpdate as u8;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&frame[4..11]);
        crc.update(&frame[crate::wire::HEADER_LEN..]);
        frame[11..15].copy_from_slice(&crc.finalize().to_le_bytes());
        listener.received(&frame);
        let error = listener.next_message().unwrap_err().to_string();
        assert!(error.contains("the tag of RegionUpdate frame #0 does not verify"), "{error}");
    }

    #[test]
    fn a_channel_without_a_key_refuses_tagged_frames() {
        let (mut dialer, _) = authenticated_pair();
        let mut keyless = Channel::default();
        dialer.send(&Message::Ready);
        let error = cross(&mut dialer, &mut keyless).unwrap_err().to_string();
        assert!(error.contains("(flags): a tagged frame, and no cluster key"), "{error}");
    }
}
