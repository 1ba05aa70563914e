//! Where one RESP2 reply ends: `+`, `-`, `:` lines, `$` bulks (`$-1` null), `*` arrays
//! nested to any depth (`*-1` null). Used to relay replies whole and by test clients.

use crate::apps::resp::number::parse_i64;

/// A reply that is not RESP2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply at byte {0}")]
pub struct MalformedReply(pub usize);

/// The length of the complete reply at the front of `bytes`, `None` if it is not all
/// there yet.
pub fn reply_len(bytes: &[u8]) -> Result<Option<usize>, MalformedReply> {
    let mut pos = 0;
    // Elements still to read at each open array level.
    let mut pending: u64 = 1;
    while pending > 0 {
        let Some(&kind) = bytes.get(pos) else { return Ok(None) };
        let Some(cr) = bytes[pos..].windows(2).position(|pair| pair == b"\r\n") else {
            return Ok(None);
        };
        let line = &bytes[pos + 1..pos + cr];
        let start = pos;
        pos += cr + 2;
        pending -= 1;
        match kind {
            b'+' | b'-' => {}
            b':' => {
                parse_i64(line).ok_or(MalformedReply(start))?;
            }
            b'$' => {
                let len = parse_i64(line).ok_or(MalformedReply(start))?;
                if len >= 0 {
                    let end = pos + len as usize;
                    if bytes.len() < end + 2 {
                        return Ok(None);
                    }
                    if &bytes[end..end + 2] != b"\r\n" {
                        return Err(MalformedReply(end));
                    }
                    pos = end + 2;
                } else if len != -1 {
                    return Err(MalformedReply(start));
                }
            }
            b'*' => {
                let len = parse_i64(line).ok_or(MalformedReply(start))?;
                if len > 0 {
                    pending += len as u64;
                } else if len < -1 {
                    return Err(MalformedReply(start));
                }
            }
            _ => return Err(MalformedReply(start)),
        }
    }
    Ok(Some(pos))
}

/// Splits `bytes` into complete replies (for tests); the rest, if any, is incomplete.
pub fn split_replies(bytes: &[u8]) -> Result<(Vec<&[u8]>, &[u8]), MalformedReply> {
    let mut replies = Vec::new();
    let mut rest = bytes;
    while let Some(len) = reply_len(rest)? {
        replies.push(&rest[..len]);
        rest = &rest[len..];
        if rest.is_empty() {
            break;
        }
    }
    Ok((replies, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ends() {
        let replies =
            b"+OK\r\n-ERR x\r\n:5\r\n$3\r\na\r\n\r\n$-1\r\n*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n*-1\r\n*0\r\n";
        let (split, rest) = split_replies(replies).unwrap();
        assert_eq!(split.len(), 8);
        assert!(rest.is_empty());
        assert_eq!(split[3], b"$3\r\na\r\n\r\n");
        assert_eq!(split[5], b"*2\r\n$1\r\n0\r\n*1\r\n$1\r\nk\r\n");
        for cut in 0..replies.len() {
            let (split, rest) = split_replies(&replies[..cut]).unwrap();
            assert_eq!(split.iter().map(|reply| reply.len()).sum::<usize>() + rest.len(), cut);
        }
        assert!(reply_len(b"?x\r\n").is_err());
        assert!(reply_len(b"$1\r\nab\r\n").is_err());
    }
}
