//! Where one RESP2 reply ends: `+`, `-`, `:` lines, `$` bulks (`$-1` null), `*` arrays
//! nested to any depth (`*-1` null). Used to relay replies whole and by clients;
//! [`next_item`] is the one place that reads an element, for [`reply_len`] and for
//! [`super::value::Value::decode`].

use crate::apps::resp::number::parse_i64;

/// A reply that is not RESP2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply at byte {0}")]
pub struct MalformedReply(pub usize);

/// One element of a reply as it comes off the wire: a whole scalar, or an array's header
/// (its elements follow it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// `+text`.
    Simple(&'a [u8]),
    /// `-text`.
    Error(&'a [u8]),
    /// `:n`.
    Integer(i64),
    /// `$n` and its bytes.
    Bulk(&'a [u8]),
    /// `$-1`.
    NullBulk,
    /// `*n`: `n` elements follow.
    Array(u64),
    /// `*-1`.
    NullArray,
}

/// The element at the front of `bytes` and the bytes it takes, `None` if it is not all
/// there yet.
pub fn next_item(bytes: &[u8]) -> Result<Option<(Item<'_>, usize)>, MalformedReply> {
    let Some(&kind) = bytes.first() else { return Ok(None) };
    let Some(cr) = bytes.windows(2).position(|pair| pair == b"\r\n") else {
        return Ok(None);
    };
    if cr == 0 {
        // The line's end where its type byte should be.
        return Err(MalformedReply(0));
    }
    let line = &bytes[1..cr];
    let after = cr + 2;
    let number = || parse_i64(line).ok_or(MalformedReply(0));
    let item = match kind {
        b'+' => Item::Simple(line),
        b'-' => Item::Error(line),
        b':' => Item::Integer(number()?),
        b'$' => match number()? {
            -1 => Item::NullBulk,
            len if len < 0 => return Err(MalformedReply(0)),
            len => {
                if ((bytes.len() - after) as u64) < len as u64 + 2 {
                    return Ok(None);
                }
                let end = after + len as usize;
                if &bytes[end..end + 2] != b"\r\n" {
                    return Err(MalformedReply(end));
                }
                return Ok(Some((Item::Bulk(&bytes[after..end]), end + 2)));
            }
        },
        b'*' => match number()? {
            -1 => Item::NullArray,
            len if len < 0 => return Err(MalformedReply(0)),
            len => Item::Array(len as u64),
        },
        _ => return Err(MalformedReply(0)),
    };
    Ok(Some((item, after)))
}

/// The length of the complete reply at the front of `bytes`, `None` if it is not all
/// there yet.
pub fn reply_len(bytes: &[u8]) -> Result<Option<usize>, MalformedReply> {
    let mut pos = 0;
    // Elements still to read at each open array level.
    let mut pending: u64 = 1;
    while pending > 0 {
        let next = next_item(&bytes[pos..]).map_err(|MalformedReply(at)| MalformedReply(pos + at))?;
        let Some((item, len)) = next else { return Ok(None) };
        pos += len;
        pending -= 1;
        if let Item::Array(count) = item {
            // Saturates only for counts no buffer can complete: still incomplete.
            pending = pending.saturating_add(count);
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

    /// Found by the fuzz target: a line with no type byte before its `\r\n`.
    #[test]
    fn a_line_without_a_type_is_malformed() {
        assert_eq!(reply_len(b"\r\n\r\n"), Err(MalformedReply(0)));
        assert_eq!(reply_len(b"*1\r\n\r\n"), Err(MalformedReply(4)));
    }

    /// Arrays announcing more elements than memory could hold are waited for, not
    /// counted past `u64::MAX` (a seed of the fuzz target's corpus).
    #[test]
    fn huge_arrays_are_incomplete() {
        let max = b"*9223372036854775807\r\n";
        assert_eq!(reply_len(&max.repeat(3)), Ok(None));
        assert_eq!(reply_len(b"$9223372036854775807\r\n"), Ok(None));
    }
}
