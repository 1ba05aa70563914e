//! Inline requests (`SET k "a b"\r\n`): split as Redis's `sdssplitargs` does — blanks
//! separate arguments, `"…"` takes `\n \r \t \b \a \xhh` escapes, `'…'` takes `\'`, a
//! closing quote must be followed by a blank or the end, and a NUL byte ends the line.

use std::ops::Range;

/// Quotes that do not close (or a closing quote followed by something else than a blank).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unbalanced quotes")]
pub struct UnbalancedQuotes;

/// Splits `line` (without its newline) into arguments, written one after another into
/// `bytes` with their places in `ranges`.
pub fn split_inline(
    line: &[u8],
    bytes: &mut Vec<u8>,
    ranges: &mut Vec<Range<usize>>,
) -> Result<(), UnbalancedQuotes> {
    let line = match line.iter().position(|&byte| byte == 0) {
        Some(nul) => &line[..nul],
        None => line,
    };
    let at = |index: usize| line.get(index).copied().unwrap_or(0);
    let mut p = 0;
    loop {
        while p < line.len() && is_space(line[p]) {
            p += 1;
        }
        if p >= line.len() {
            return Ok(());
        }
        let start = bytes.len();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = at(p);
            if in_double {
                if c == b'\\' && at(p + 1) == b'x' && is_hex(at(p + 2)) && is_hex(at(p + 3)) {
                    bytes.push(hex(at(p + 2)) * 16 + hex(at(p + 3)));
                    p += 3;
                } else if c == b'\\' && at(p + 1) != 0 {
                    p += 1;
                    bytes.push(match at(p) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return Err(UnbalancedQuotes);
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return Err(UnbalancedQuotes);
                } else {
                    bytes.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(p + 1) == b'\'' {
                    p += 1;
                    bytes.push(b'\'');
                } else if c == b'\'' {
                    if at(p + 1) != 0 && !is_space(at(p + 1)) {
                        return Err(UnbalancedQuotes);
                    }
                    p += 1;
                    break;
                } else if c == 0 {
                    return Err(UnbalancedQuotes);
                } else {
                    bytes.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => {
                        if c != 0 {
                            p += 1;
                        }
                        break;
                    }
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    other => bytes.push(other),
                }
            }
            p += 1;
        }
        ranges.push(start..bytes.len());
    }
}

/// C's `isspace`.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_hex(byte: u8) -> bool {
    byte.is_ascii_hexdigit()
}

fn hex(byte: u8) -> u8 {
    match byte {
        b'0'..=b'9' => byte - b'0',
        b'a'..=b'f' => byte - b'a' + 10,
        _ => byte - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &[u8]) -> Result<Vec<Vec<u8>>, UnbalancedQuotes> {
        let (mut bytes, mut ranges) = (Vec::new(), Vec::new());
        split_inline(line, &mut bytes, &mut ranges)?;
        Ok(ranges.into_iter().map(|range| bytes[range].to_vec()).collect())
    }

    #[test]
    fn splits_as_sdssplitargs() {
        assert_eq!(split(b"  set  k v ").unwrap(), [b"set".to_vec(), b"k".to_vec(), b"v".to_vec()]);
        assert_eq!(
            split(b"set \"a b\\n\\x41\" 'it\\'s'").unwrap()[1..],
            [b"a b\nA".to_vec(), b"it's".to_vec()]
        );
        assert_eq!(split(b"ab\"c d\"").unwrap(), [b"abc d".to_vec()]);
        assert_eq!(split(b"\"\"").unwrap(), [Vec::new()]);
        assert_eq!(split(b"a\0b c").unwrap(), [b"a".to_vec()]);
        assert_eq!(split(b"").unwrap(), Vec::<Vec<u8>>::new());
        assert!(split(b"\"abc").is_err());
        assert!(split(b"'abc").is_err());
        assert!(split(b"\"a\"b").is_err());
        assert!(split(b"'a'b").is_err());
    }
}
