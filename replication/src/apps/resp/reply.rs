//! RESP2 replies, appended to a buffer without intermediate allocation.

use crate::apps::resp::number::{write_i64, write_u64};

/// `+OK`.
pub const OK: &[u8] = b"+OK\r\n";
/// The null bulk string (`$-1`).
pub const NULL: &[u8] = b"$-1\r\n";
/// The empty bulk string.
pub const EMPTY_BULK: &[u8] = b"$0\r\n\r\n";
/// `:0`.
pub const ZERO: &[u8] = b":0\r\n";
/// `:1`.
pub const ONE: &[u8] = b":1\r\n";

/// A simple string: `+text`.
pub fn simple(out: &mut Vec<u8>, text: &str) {
    out.push(b'+');
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// An error: `-text`, where `text` starts with its code word (`ERR`, `WRONGTYPE`, …).
/// Carriage returns and newlines become spaces, as Redis's `addReplyErrorLength` makes
/// them, so an error can never break the framing.
pub fn error(out: &mut Vec<u8>, text: impl AsRef<[u8]>) {
    out.push(b'-');
    out.extend(text.as_ref().iter().map(|&byte| if byte == b'\r' || byte == b'\n' { b' ' } else { byte }));
    out.extend_from_slice(b"\r\n");
}

/// An integer: `:n`.
pub fn integer(out: &mut Vec<u8>, value: i64) {
    out.push(b':');
    write_i64(out, value);
    out.extend_from_slice(b"\r\n");
}

/// A bulk string.
pub fn bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'$');
    write_u64(out, bytes.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// A bulk string holding `value` in decimal.
pub fn bulk_u64(out: &mut Vec<u8>, value: u64) {
    let mut digits = Vec::with_capacity(20);
    write_u64(&mut digits, value);
    bulk(out, &digits);
}

/// A bulk string or, for `None`, the null bulk.
pub fn bulk_or_null(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => bulk(out, bytes),
        None => out.extend_from_slice(NULL),
    }
}

/// The header of an array of `len` elements (the elements follow).
pub fn array(out: &mut Vec<u8>, len: usize) {
    out.push(b'*');
    write_u64(out, len as u64);
    out.extend_from_slice(b"\r\n");
}

/// A request as a client sends it: an array of bulk strings.
pub fn request<'a>(out: &mut Vec<u8>, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    array(out, args.len());
    for arg in args {
        bulk(out, arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        let mut out = Vec::new();
        simple(&mut out, "PONG");
        error(&mut out, "ERR bad\r\nthing");
        integer(&mut out, -42);
        bulk(&mut out, b"a\r\nb");
        bulk_or_null(&mut out, None);
        array(&mut out, 2);
        bulk_u64(&mut out, 17);
        assert_eq!(
            out,
            b"+PONG\r\n-ERR bad  thing\r\n:-42\r\n$4\r\na\r\nb\r\n$-1\r\n*2\r\n$2\r\n17\r\n".to_vec()
        );
    }
}
