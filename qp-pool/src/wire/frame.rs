//! Frames: the envelope of every message.

use crate::error::{Error, Result};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"uQPP";
/// The protocol version this build speaks. Version 2 added the flags byte, the tag of
/// authenticated frames, the nonce and key flag of `Hello`, and `Proof`; version 3 the
/// incarnation and rejoin flag of `Hello`; version 4 the entry (start, rejoin, join) and
/// control address of `Hello` in place of the rejoin flag, `Members` and `Fence`.
pub const VERSION: u8 = 4;
/// Bytes before the body: magic, version, kind, flags, length, checksum.
pub const HEADER_LEN: usize = 4 + 1 + 1 + 1 + 4 + 4;
/// The largest body accepted: far above any real offer (16 roles and 64 regions take
/// under 8 KiB), far below what could hurt.
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// Bytes of the tag that follows the body of an authenticated frame.
pub const TAG_LEN: usize = 32;
/// The flag of a frame whose body is followed by a tag.
pub const FLAG_TAGGED: u8 = 1;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// Who we are: cluster, run, node id, description digest, nonce, whether keyed,
    /// incarnation, how we enter the cluster, our control address.
    Hello = 1,
    /// The QP endpoints made for the receiver, and our region descriptors.
    Offer = 2,
    /// Our QPs to the receiver are connected.
    Ready = 3,
    /// The connection is refused, and why.
    Reject = 4,
    /// After bootstrap: reconnect these roles, here are my fresh endpoints.
    ReconnectRequest = 5,
    /// The answer to a reconnect request, with the answerer's fresh endpoints.
    ReconnectReply = 6,
    /// Region descriptors changed (re-registration gave new keys).
    RegionUpdate = 7,
    /// No body: its tag proves that the sender holds the cluster key.
    Proof = 8,
    /// The members the sender knows, for a node that joins a running cluster.
    Members = 9,
    /// The receiver's process is fenced out of the cluster (replaced, or removed), and why.
    Fence = 10,
}

impl FrameKind {
    /// The kind of a wire code.
    pub fn from_code(code: u8) -> Option<FrameKind> {
        Some(match code {
            1 => FrameKind::Hello,
            2 => FrameKind::Offer,
            3 => FrameKind::Ready,
            4 => FrameKind::Reject,
            5 => FrameKind::ReconnectRequest,
            6 => FrameKind::ReconnectReply,
            7 => FrameKind::RegionUpdate,
            8 => FrameKind::Proof,
            9 => FrameKind::Members,
            10 => FrameKind::Fence,
            _ => return None,
        })
    }
}

/// A complete frame whose envelope checked out (its tag, if any, is not checked here: a
/// keyed [`Channel`](crate::wire::Channel) does that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What it carries.
    pub kind: FrameKind,
    /// The body.
    pub body: &'a [u8],
    /// The tag of an authenticated frame.
    pub tag: Option<&'a [u8; TAG_LEN]>,
    /// The bytes the whole frame took.
    pub len: usize,
}

/// Appends an untagged frame of `kind` carrying `body` to `out`.
pub fn encode_frame(kind: FrameKind, body: &[u8], out: &mut Vec<u8>) {
    encode_frame_with_tag(kind, body, None, out);
}

/// Appends a frame of `kind` carrying `body`, followed by `tag` if there is one.
pub fn encode_frame_with_tag(kind: FrameKind, body: &[u8], tag: Option<&[u8; TAG_LEN]>, out: &mut Vec<u8>) {
    assert!(body.len() <= MAX_BODY_LEN, "a {kind:?} body of {} bytes exceeds the frame limit", body.len());
    let length = (body.len() as u32).to_le_bytes();
    let flags = if tag.is_some() { FLAG_TAGGED } else { 0 };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[VERSION, kind as u8, flags]);
    crc.update(&length);
    crc.update(body);
    if let Some(tag) = tag {
        crc.update(tag);
    }
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, kind as u8, flags]);
    out.extend_from_slice(&length);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(body);
    if let Some(tag) = tag {
        out.extend_from_slice(tag);
    }
}

/// Looks at the frame at the start of `bytes`.
///
/// `Ok(None)`: nothing wrong so far, more bytes are needed. `Ok(Some(frame))`: a complete
/// frame whose envelope (magic, version, kind, flags, length, checksum) checked out. `Err`:
/// the bytes are not a valid frame, said as early as possible (a wrong magic byte,
/// version, kind, flags or length is refused before the rest arrives).
pub fn parse_frame(bytes: &[u8]) -> Result<Option<Frame<'_>>> {
    let magic_seen = bytes.len().min(MAGIC.len());
    if bytes[..magic_seen] != MAGIC[..magic_seen] {
        return Err(Error::malformed(
            "magic",
            format!("starts with {:02x?}, expected {:02x?} (\"uQPP\")", &bytes[..magic_seen], MAGIC),
        ));
    }
    if let Some(&version) = bytes.get(4) {
        if version != VERSION {
            return Err(Error::VersionMismatch { theirs: version, ours: VERSION });
        }
    }
    let kind = match bytes.get(5) {
        Some(&code) => Some(
            FrameKind::from_code(code)
                .ok_or_else(|| Error::malformed("kind", format!("unknown kind {code}")))?,
        ),
        None => None,
    };
    if let Some(&flags) = bytes.get(6) {
        if flags & !FLAG_TAGGED != 0 {
            return Err(Error::malformed("flags", format!("unknown flags {flags:#04x}")));
        }
    }
    if bytes.len() < HEADER_LEN {
        return Ok(None);
    }
    let tagged = bytes[6] & FLAG_TAGGED != 0;
    let length = u32::from_le_bytes(bytes[7..11].try_into().expect("4 bytes")) as usize;
    if length > MAX_BODY_LEN {
        return Err(Error::malformed("length", format!("{length} bytes, at most {MAX_BODY_LEN} accepted")));
    }
    let body_end = HEADER_LEN + length;
    let total = body_end + if tagged { TAG_LEN } else { 0 };
    if bytes.len() < total {
        return Ok(None);
    }
    let declared = u32::from_le_bytes(bytes[11..15].try_into().expect("4 bytes"));
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[4..11]);
    crc.update(&bytes[HEADER_LEN..total]);
    let actual = crc.finalize();
    if declared != actual {
        return Err(Error::malformed(
            "checksum",
            format!("CRC-32 {declared:#010x} declared, {actual:#010x} computed"),
        ));
    }
    let tag = tagged.then(|| bytes[body_end..total].try_into().expect("TAG_LEN bytes"));
    Ok(Some(Frame {
        kind: kind.expect("the header is complete"),
        body: &bytes[HEADER_LEN..body_end],
        tag,
        len: total,
    }))
}

/// The length of the frame that starts `bytes`, as far as its header tells (the header
/// itself while it is incomplete).
pub(crate) fn announced_len(bytes: &[u8]) -> usize {
    if bytes.len() < HEADER_LEN {
        return HEADER_LEN;
    }
    let length = u32::from_le_bytes(bytes[7..11].try_into().expect("4 bytes")) as usize;
    let tag = if bytes[6] & FLAG_TAGGED != 0 { TAG_LEN } else { 0 };
    HEADER_LEN + length + tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_refused_early() {
        let mut frame = Vec::new();
        encode_frame(FrameKind::Ready, &[], &mut frame);
        assert_eq!(frame.len(), HEADER_LEN);
        let parsed = parse_frame(&frame).unwrap().unwrap();
        assert_eq!(
            (parsed.kind, parsed.body, parsed.tag, parsed.len),
            (FrameKind::Ready, &[][..], None, HEADER_LEN)
        );
        let error = parse_frame(b"GET / HTTP/1.1\r\n").unwrap_err().to_string();
        assert!(error.contains("malformed frame (magic)"), "{error}");
        assert!(parse_frame(b"uQ").unwrap().is_none());
        assert!(parse_frame(b"uX").is_err());
        let error = parse_frame(b"uQPP\x05").unwrap_err().to_string();
        assert!(error.contains("the peer speaks version 5, this build speaks version 4"), "{error}");
        let error = parse_frame(b"uQPP\x03").unwrap_err().to_string();
        assert!(error.contains("the peer speaks version 3, this build speaks version 4"), "{error}");
        assert!(parse_frame(b"uQPP\x04\x63").unwrap_err().to_string().contains("unknown kind 99"));
        assert!(parse_frame(b"uQPP\x04\x02\x02").unwrap_err().to_string().contains("unknown flags 0x02"));
        let mut huge = b"uQPP\x04\x02\x00".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        let error = parse_frame(&huge).unwrap_err().to_string();
        assert!(error.contains("(length): 4294967295 bytes, at most 65536"), "{error}");
    }

    #[test]
    fn a_tag_follows_the_body_and_the_checksum_covers_it() {
        let tag = [7u8; TAG_LEN];
        let mut frame = Vec::new();
        encode_frame_with_tag(FrameKind::Offer, b"body", Some(&tag), &mut frame);
        assert_eq!(frame.len(), HEADER_LEN + 4 + TAG_LEN);
        assert_eq!(announced_len(&frame), frame.len());
        let parsed = parse_frame(&frame).unwrap().unwrap();
        assert_eq!((parsed.body, parsed.tag, parsed.len), (&b"body"[..], Some(&tag), frame.len()));
        for cut in 0..frame.len() {
            assert!(parse_frame(&frame[..cut]).unwrap().is_none(), "cut at {cut}");
        }
        let mut damaged = frame.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert!(parse_frame(&damaged).unwrap_err().to_string().contains("(checksum)"));
    }
}
