//! Authenticated frames: with a [`ClusterKey`], every frame after the two `Hello`s carries
//! a tag proving that its sender holds the key, on this connection, at this point of it.
//!
//! - Each side's `Hello` carries a fresh 32-byte nonce (drawn by the driver from the
//!   operating system; the sans-IO handshake only takes it) and says that it is keyed.
//! - With both hellos in hand a side derives the connection's session key, BLAKE3 keyed
//!   with the cluster key over a context string and both hellos (dialer's first), each
//!   length-prefixed: both nonces, both ids, the cluster, the run and the description
//!   digest are bound into it.
//! - Every later frame carries BLAKE3 keyed with the session key over its direction
//!   (0 from the dialer, 1 from the listener), its sequence number in that direction
//!   (from 0), the protocol version, its kind, its length and its body. The receiver
//!   recomputes it and compares in constant time.
//!
//! What this refuses: a forged frame (no cluster key); a frame recorded on another
//! connection or in another run, replayed (the other end's fresh nonce changes the session
//! key); a frame repeated, dropped or reordered within a connection (sequence); a frame
//! sent back to its sender (direction).
//!
//! What it does not do: hide anything. Frames travel in the clear, so whoever can read the
//! control network sees endpoints and rkeys; keep that network private. `Reject` frames are
//! never tagged and always honoured: ending a connection is what anyone on its path can do
//! with a TCP reset anyway, and a peer must be able to refuse before it can tag.

use std::fmt;

use crate::cluster_key::ClusterKey;
use crate::error::{Error, Result};
use crate::wire::frame::{FrameKind, TAG_LEN, VERSION};
use crate::wire::message::Hello;

/// Separates session keys from any other use of the cluster key.
const SESSION_CONTEXT: &[u8] = b"usec-qp-pool v2 session key";

/// Who sent a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Direction {
    FromDialer = 0,
    FromListener = 1,
}

/// One authenticated connection's key and sequence numbers.
pub(crate) struct Session {
    key: [u8; 32],
    sending: Direction,
    receiving: Direction,
    sent: u64,
    received: u64,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("sending", &self.sending)
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The session of a connection whose hellos were `dialer` and `listener`, for the side
    /// that dialed if `we_dialed`.
    pub(crate) fn new(
        cluster_key: &ClusterKey,
        dialer: &Hello,
        listener: &Hello,
        we_dialed: bool,
    ) -> Session {
        let mut hasher = blake3::Hasher::new_keyed(cluster_key.as_bytes());
        hasher.update(SESSION_CONTEXT);
        for hello in [dialer, listener] {
            let body = postcard::to_allocvec(hello).expect("encoding into a Vec cannot fail");
            hasher.update(&(body.len() as u32).to_le_bytes());
            hasher.update(&body);
        }
        let (sending, receiving) = if we_dialed {
            (Direction::FromDialer, Direction::FromListener)
        } else {
            (Direction::FromListener, Direction::FromDialer)
        };
        Session { key: *hasher.finalize().as_bytes(), sending, receiving, sent: 0, received: 0 }
    }

    /// The tag of the next frame we send.
    pub(crate) fn seal(&mut self, kind: FrameKind, body: &[u8]) -> [u8; TAG_LEN] {
        let tag = self.tag(self.sending, self.sent, kind, body);
        self.sent += 1;
        *tag.as_bytes()
    }

    /// Checks the tag of the next frame received.
    pub(crate) fn open(&mut self, kind: FrameKind, body: &[u8], tag: Option<&[u8; TAG_LEN]>) -> Result<()> {
        let Some(tag) = tag else {
            return Err(unauthenticated(format!(
                "an untagged {kind:?} frame on an authenticated connection"
            )));
        };
        let expected = self.tag(self.receiving, self.received, kind, body);
        // blake3::Hash compares in constant time.
        if expected != blake3::Hash::from(*tag) {
            return Err(unauthenticated(format!(
                "the tag of {kind:?} frame #{} does not verify (forged, replayed from another \
                 connection, out of order, or made with another key)",
                self.received
            )));
        }
        self.received += 1;
        Ok(())
    }

    fn tag(&self, direction: Direction, sequence: u64, kind: FrameKind, body: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.key);
        hasher.update(&[direction as u8]);
        hasher.update(&sequence.to_le_bytes());
        hasher.update(&[VERSION, kind as u8]);
        hasher.update(&(body.len() as u32).to_le_bytes());
        hasher.update(body);
        hasher.finalize()
    }
}

fn unauthenticated(reason: String) -> Error {
    Error::Unauthenticated { peer: "the peer".into(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(node: u16, nonce: u8) -> Hello {
        Hello {
            cluster: "kv".into(),
            run: "r1".into(),
            node,
            spec_digest: 7,
            nonce: [nonce; 32],
            keyed: true,
            incarnation: 0,
            entry: crate::wire::Entry::Start,
            addr: None,
        }
    }

    fn pair(key: &ClusterKey, dialer: &Hello, listener: &Hello) -> (Session, Session) {
        (Session::new(key, dialer, listener, true), Session::new(key, dialer, listener, false))
    }

    #[test]
    fn tags_bind_key_nonces_direction_order_and_content() {
        let key = ClusterKey::from_bytes([1; 32]);
        let (dialer_hello, listener_hello) = (hello(0, 10), hello(1, 11));
        let (mut dialer, mut listener) = pair(&key, &dialer_hello, &listener_hello);
        let first = dialer.seal(FrameKind::Proof, b"");
        let second = dialer.seal(FrameKind::Offer, b"offer");
        // Out of order: the second frame where the first belongs.
        assert!(listener.open(FrameKind::Offer, b"offer", Some(&second)).is_err());
        listener.open(FrameKind::Proof, b"", Some(&first)).unwrap();
        // Changed content or kind, or no tag at all.
        assert!(listener.clone_for_test().open(FrameKind::Offer, b"offeR", Some(&second)).is_err());
        assert!(listener.clone_for_test().open(FrameKind::RegionUpdate, b"offer", Some(&second)).is_err());
        assert!(listener.clone_for_test().open(FrameKind::Offer, b"offer", None).is_err());
        listener.open(FrameKind::Offer, b"offer", Some(&second)).unwrap();
        // Repeated.
        assert!(listener.open(FrameKind::Offer, b"offer", Some(&second)).is_err());
        // Reflected: the dialer's own first frame sent back to it.
        assert!(dialer.clone_for_test().open(FrameKind::Proof, b"", Some(&first)).is_err());
        // The listener's frames verify at the dialer.
        let answer = listener.seal(FrameKind::Proof, b"");
        dialer.open(FrameKind::Proof, b"", Some(&answer)).unwrap();
        // Another connection (another listener nonce) or another key: nothing carries over.
        let (_, mut elsewhere) = pair(&key, &dialer_hello, &hello(1, 12));
        assert!(elsewhere.open(FrameKind::Proof, b"", Some(&first)).is_err());
        let (_, mut other_key) = pair(&ClusterKey::from_bytes([2; 32]), &dialer_hello, &listener_hello);
        let error = other_key.open(FrameKind::Proof, b"", Some(&first)).unwrap_err().to_string();
        assert!(error.contains("does not verify"), "{error}");
        assert!(!format!("{dialer:?}").contains("key:"), "Debug shows no key");
    }

    impl Session {
        fn clone_for_test(&self) -> Session {
            Session { key: self.key, ..*self }
        }
    }
}
