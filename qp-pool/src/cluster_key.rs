//! The cluster key: a secret shared by the nodes of a cluster that authenticates every
//! handshake and control frame between them (see [`wire`](crate::wire) for how).
//!
//! Without it, anyone who can reach a node's control port and knows the cluster and run
//! names is sent the node's offer: its QP endpoints and the rkeys of its regions, which on
//! a real fabric are capabilities to write its memory. With it, a peer must prove that it
//! holds the key, on this very connection, before anything is offered.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;

/// A 32-byte pre-shared key. Its `Debug` form never shows the bytes; its text form (64
/// hexadecimal digits, the `key = ...` line of a [`ClusterSpec`](crate::ClusterSpec)) does,
/// so a description that carries a key is a secret like the key itself.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; ClusterKey::LEN]);

impl ClusterKey {
    /// Bytes in a key.
    pub const LEN: usize = 32;

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; ClusterKey::LEN]) -> ClusterKey {
        ClusterKey(bytes)
    }

    /// A fresh key from the operating system's random source. For launchers and tests;
    /// protocol code never calls it.
    pub fn generate() -> ClusterKey {
        let mut bytes = [0u8; ClusterKey::LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        ClusterKey(bytes)
    }

    /// Parses 64 hexadecimal digits. The error never quotes the text, which may be a
    /// mistyped secret.
    pub fn from_hex(text: &str) -> Result<ClusterKey, String> {
        let digits = text.as_bytes();
        if digits.len() != 2 * ClusterKey::LEN {
            return Err(format!(
                "a cluster key is {} hexadecimal digits, this one has {} characters",
                2 * ClusterKey::LEN,
                digits.len()
            ));
        }
        let mut bytes = [0u8; ClusterKey::LEN];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let (high, low) = (hex_value(pair[0]), hex_value(pair[1]));
            let (Some(high), Some(low)) = (high, low) else {
                return Err("a cluster key has hexadecimal digits only (0-9, a-f)".to_string());
            };
            *byte = high << 4 | low;
        }
        Ok(ClusterKey(bytes))
    }

    /// The key as 64 lowercase hexadecimal digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8; ClusterKey::LEN] {
        &self.0
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKey(<secret>)")
    }
}

impl FromStr for ClusterKey {
    type Err = String;

    fn from_str(text: &str) -> Result<ClusterKey, String> {
        ClusterKey::from_hex(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_debug_hides_the_key() {
        let key = ClusterKey::generate();
        assert_eq!(ClusterKey::from_hex(&key.to_hex()).unwrap(), key);
        assert_eq!(ClusterKey::from_hex(&key.to_hex().to_uppercase()).unwrap(), key);
        assert_ne!(ClusterKey::generate(), key);
        assert_eq!(format!("{key:?}"), "ClusterKey(<secret>)");
        let bytes: [u8; 32] = std::array::from_fn(|index| index as u8 * 7);
        let hex = ClusterKey::from_bytes(bytes).to_hex();
        assert_eq!(&hex[..8], "00070e15");
    }

    #[test]
    fn bad_keys_are_refused_without_quoting_them() {
        let secret = "0123456789abcdef".repeat(4);
        for text in [&secret[1..], &format!("{}g", &secret[1..]), &format!("{}é", &secret[2..])] {
            let error = ClusterKey::from_hex(text).unwrap_err();
            assert!(!error.contains(&secret[8..40]), "{error}");
        }
        assert!(ClusterKey::from_hex("").unwrap_err().contains("64 hexadecimal digits"));
    }
}
