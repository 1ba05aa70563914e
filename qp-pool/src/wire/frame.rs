//! Frames: the envelope of every message.

use crate::error::{Error, Result};

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"uQPP";
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Bytes before the body: magic, version, kind, length, checksum.
pub const HEADER_LEN: usize = 4 + 1 + 1 + 4 + 4;
/// The largest body accepted: far above any real offer (16 roles and 64 regions take
/// under 8 KiB), far below what could hurt.
pub const MAX_BODY_LEN: usize = 64 * 1024;

/// What a frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// Who we are: cluster, run, node id, description digest.
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
            _ => return None,
        })
    }
}

/// Appends a frame of `kind` carrying `body` to `out`.
pub fn encode_frame(kind: FrameKind, body: &[u8], out: &mut Vec<u8>) {
    assert!(body.len() <= MAX_BODY_LEN, "a {kind:?} body of {} bytes exceeds the frame limit", body.len());
    let length = (body.len() as u32).to_le_bytes();
    let mut crc = crc32fast::Hasher::new();
    crc.update(&[VERSION, kind as u8]);
    crc.update(&length);
    crc.update(body);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[VERSION, kind as u8]);
    out.extend_from_slice(&length);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(body);
}

/// Looks at the frame at the start of `bytes`.
///
/// `Ok(None)`: nothing wrong so far, more bytes are needed. `Ok(Some((kind, body, len)))`:
/// a complete, checked frame of `len` bytes. `Err`: the bytes are not a valid frame, said
/// as early as possible (a wrong magic byte, version, kind or length is refused before the
/// rest arrives).
pub fn parse_frame(bytes: &[u8]) -> Result<Option<(FrameKind, &[u8], usize)>> {
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
    if bytes.len() < HEADER_LEN {
        return Ok(None);
    }
    let length = u32::from_le_bytes(bytes[6..10].try_into().expect("4 bytes")) as usize;
    if length > MAX_BODY_LEN {
        return Err(Error::malformed("length", format!("{length} bytes, at most {MAX_BODY_LEN} accepted")));
    }
    let total = HEADER_LEN + length;
    if bytes.len() < total {
        return Ok(None);
    }
    let body = &bytes[HEADER_LEN..total];
    let declared = u32::from_le_bytes(bytes[10..14].try_into().expect("4 bytes"));
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[4..10]);
    crc.update(body);
    let actual = crc.finalize();
    if declared != actual {
        return Err(Error::malformed(
            "checksum",
            format!("CRC-32 {declared:#010x} declared, {actual:#010x} computed"),
        ));
    }
    Ok(Some((kind.expect("the header is complete"), body, total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_are_refused_early() {
        let mut frame = Vec::new();
        encode_frame(FrameKind::Ready, &[], &mut frame);
        assert_eq!(frame.len(), HEADER_LEN);
        assert!(
            matches!(parse_frame(&frame), Ok(Some((FrameKind::Ready, body, HEADER_LEN))) if body.is_empty())
        );
        let error = parse_frame(b"GET / HTTP/1.1\r\n").unwrap_err().to_string();
        assert!(error.contains("malformed frame (magic)"), "{error}");
        assert!(parse_frame(b"uQ").unwrap().is_none());
        assert!(parse_frame(b"uX").is_err());
        let error = parse_frame(b"uQPP\x02").unwrap_err().to_string();
        assert!(error.contains("the peer speaks version 2, this build speaks version 1"), "{error}");
        assert!(parse_frame(b"uQPP\x01\x63").unwrap_err().to_string().contains("unknown kind 99"));
        let mut huge = b"uQPP\x01\x02".to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        let error = parse_frame(&huge).unwrap_err().to_string();
        assert!(error.contains("(length): 4294967295 bytes, at most 65536"), "{error}");
    }
}
