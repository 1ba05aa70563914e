//! Glob patterns as Redis's `stringmatchlen` reads them (KEYS, SCAN MATCH): `*`, `?`,
//! `[abc]`, `[^a]`, `[a-z]`, `\x` escapes; an unclosed `[` matches up to the end.

/// Whether `string` matches `pattern`.
///
/// The classic one-backtrack-point matcher: on a mismatch after a `*`, the star takes one
/// more byte and matching resumes. It gives Redis's answers in time linear in pattern ×
/// string, where naive recursion on many stars is exponential.
pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    let (mut p, mut s) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while s < string.len() {
        if pattern.get(p) == Some(&b'*') {
            star = Some((p, s));
            p += 1;
            continue;
        }
        if let Some(next) = one(pattern, p, string[s]) {
            p = next;
            s += 1;
            continue;
        }
        match star {
            Some((star_p, star_s)) => {
                star = Some((star_p, star_s + 1));
                p = star_p + 1;
                s = star_s + 1;
            }
            None => return false,
        }
    }
    while pattern.get(p) == Some(&b'*') {
        p += 1;
    }
    p == pattern.len()
}

/// Matches one byte against the pattern element at `p` (not a star): the index after
/// the element when it matches.
fn one(pattern: &[u8], p: usize, byte: u8) -> Option<usize> {
    match *pattern.get(p)? {
        b'?' => Some(p + 1),
        b'[' => {
            let (matched, end) = class(pattern, p + 1, byte);
            matched.then_some(end + 1)
        }
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == byte).then_some(p + 2),
        literal => (literal == byte).then_some(p + 1),
    }
}

/// A `[...]` class starting after the `[` at `p`: whether `byte` is in it, and the index
/// of its `]` (or the pattern's last byte when unclosed, as Redis leaves it).
fn class(pattern: &[u8], mut p: usize, byte: u8) -> (bool, usize) {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    loop {
        match pattern.get(p) {
            None => {
                // Unclosed: Redis steps back so the outer loop ends on the last byte.
                p -= 1;
                break;
            }
            Some(b'\\') if p + 1 < pattern.len() => {
                p += 1;
                matched |= pattern[p] == byte;
            }
            Some(b']') => break,
            Some(&low) if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() => {
                let mut high = pattern[p + 2];
                let mut low = low;
                if low > high {
                    std::mem::swap(&mut low, &mut high);
                }
                p += 2;
                matched |= (low..=high).contains(&byte);
            }
            Some(&other) => matched |= other == byte,
        }
        p += 1;
    }
    (matched != negate, p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_patterns() {
        let yes: &[(&str, &str)] = &[
            ("*", "anything"),
            ("*", ""),
            ("h?llo", "hello"),
            ("h*llo", "heeeello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("user:*:name", "user:42:name"),
            ("a\\*b", "a*b"),
            ("**a", "ba"),
        ];
        for (pattern, string) in yes {
            assert!(matches(pattern.as_bytes(), string.as_bytes()), "{pattern} ~ {string}");
        }
        let no: &[(&str, &str)] = &[
            ("h?llo", "hllo"),
            ("h[ae]llo", "hillo"),
            ("h[^e]llo", "hello"),
            ("a\\*b", "axb"),
            ("abc", "ab"),
            ("ab", "abc"),
            ("?", ""),
        ];
        for (pattern, string) in no {
            assert!(!matches(pattern.as_bytes(), string.as_bytes()), "{pattern} !~ {string}");
        }
    }

    #[test]
    fn many_stars_stay_cheap() {
        let pattern = "a*".repeat(30) + "b";
        assert!(!matches(pattern.as_bytes(), "a".repeat(60).as_bytes()));
    }
}
