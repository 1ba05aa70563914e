//! [`Endpoint`]: what one side of a connection hands to the other, and its wire form.
//!
//! The wire form is fixed-size little-endian behind a magic and a version byte, so a
//! truncated, foreign or future-version buffer is a clear error, never a panic. Its text
//! form (`Display` / `FromStr`) is the same bytes in hex, handy on pipes and command lines.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::qp::attributes::Mtu;

/// A 128-bit global identifier (an IPv6-format address on RoCE).
pub type Gid = [u8; 16];

/// How the peer's QP is reached, per provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// InfiniBand: routed by LID; `gid` is the port's GID at the chosen index (used when
    /// global routing is asked for).
    Infiniband {
        /// Local identifier of the port.
        lid: u16,
        /// GID at the selected index (zero when none was selected).
        gid: Gid,
        /// GID index selected, if any.
        gid_index: Option<u8>,
    },
    /// RoCE: routed by GID.
    Roce {
        /// GID at the selected index.
        gid: Gid,
        /// The GID index it was read from.
        gid_index: u8,
    },
    /// The soft provider: a node (process context) on a shared-memory fabric.
    Soft {
        /// Hash of the fabric's name, to refuse peers of another fabric.
        fabric: u64,
        /// The node's owner process.
        pid: u32,
        /// The node's number within its process.
        node: u32,
        /// Random value chosen when the node was created, to refuse stale endpoints.
        nonce: u64,
    },
    /// The sim provider: a node of a simulated fabric.
    Sim {
        /// The fabric's identity.
        fabric: u64,
        /// The node's index.
        node: u32,
    },
}

/// One side of a reliable connection: enough for the peer's INIT → RTR → RTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// QP number.
    pub qp_num: u32,
    /// The first packet sequence number this QP sends (24 bits).
    pub psn: u32,
    /// The active MTU of the QP's port.
    pub mtu: Mtu,
    /// How to reach the QP.
    pub address: Address,
}

const MAGIC: [u8; 2] = *b"uE";
const VERSION: u8 = 1;
/// magic, version, kind, qp_num, psn, mtu
const HEADER_LEN: usize = 2 + 1 + 1 + 4 + 4 + 1;

const KIND_INFINIBAND: u8 = 1;
const KIND_ROCE: u8 = 2;
const KIND_SOFT: u8 = 3;
const KIND_SIM: u8 = 4;

impl Endpoint {
    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.kind());
        out.extend_from_slice(&self.qp_num.to_le_bytes());
        out.extend_from_slice(&self.psn.to_le_bytes());
        out.push(self.mtu.code());
        match self.address {
            Address::Infiniband { lid, gid, gid_index } => {
                out.extend_from_slice(&lid.to_le_bytes());
                out.extend_from_slice(&gid);
                out.push(gid_index.map_or(0, |_| 1));
                out.push(gid_index.unwrap_or(0));
            }
            Address::Roce { gid, gid_index } => {
                out.extend_from_slice(&gid);
                out.push(gid_index);
            }
            Address::Soft { fabric, pid, node, nonce } => {
                out.extend_from_slice(&fabric.to_le_bytes());
                out.extend_from_slice(&pid.to_le_bytes());
                out.extend_from_slice(&node.to_le_bytes());
                out.extend_from_slice(&nonce.to_le_bytes());
            }
            Address::Sim { fabric, node } => {
                out.extend_from_slice(&fabric.to_le_bytes());
                out.extend_from_slice(&node.to_le_bytes());
            }
        }
        out
    }

    /// Decodes the wire form, refusing anything malformed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Endpoint> {
        let bad = Error::malformed_endpoint;
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!("{} bytes is shorter than the {HEADER_LEN}-byte header", bytes.len())));
        }
        if bytes[..2] != MAGIC {
            return Err(bad("not an endpoint (wrong magic)".into()));
        }
        if bytes[2] != VERSION {
            return Err(bad(format!("endpoint version {} (this build reads version {VERSION})", bytes[2])));
        }
        let kind = bytes[3];
        let qp_num = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let psn = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if psn >= 1 << 24 {
            return Err(bad(format!("PSN {psn:#x} does not fit 24 bits")));
        }
        let mtu = Mtu::from_code(bytes[12]).ok_or_else(|| bad(format!("unknown MTU code {}", bytes[12])))?;
        let mut body = Reader { bytes: &bytes[HEADER_LEN..] };
        let address = match kind {
            KIND_INFINIBAND => {
                let lid = u16::from_le_bytes(body.take()?);
                let gid = body.take()?;
                let [has_index, index] = body.take()?;
                // Without the flag the index byte must be 0, as written: one encoding per
                // endpoint, so bytes that decode also re-encode to themselves.
                let gid_index = match (has_index, index) {
                    (0, 0) => None,
                    (0, index) => return Err(bad(format!("GID index {index} without the GID-index flag"))),
                    (1, index) => Some(index),
                    (other, _) => return Err(bad(format!("bad GID-index flag {other}"))),
                };
                Address::Infiniband { lid, gid, gid_index }
            }
            KIND_ROCE => Address::Roce { gid: body.take()?, gid_index: body.take::<1>()?[0] },
            KIND_SOFT => Address::Soft {
                fabric: u64::from_le_bytes(body.take()?),
                pid: u32::from_le_bytes(body.take()?),
                node: u32::from_le_bytes(body.take()?),
                nonce: u64::from_le_bytes(body.take()?),
            },
            KIND_SIM => Address::Sim {
                fabric: u64::from_le_bytes(body.take()?),
                node: u32::from_le_bytes(body.take()?),
            },
            other => return Err(bad(format!("unknown address kind {other}"))),
        };
        if !body.bytes.is_empty() {
            return Err(bad(format!("{} trailing bytes", body.bytes.len())));
        }
        Ok(Endpoint { qp_num, psn, mtu, address })
    }

    fn kind(&self) -> u8 {
        match self.address {
            Address::Infiniband { .. } => KIND_INFINIBAND,
            Address::Roce { .. } => KIND_ROCE,
            Address::Soft { .. } => KIND_SOFT,
            Address::Sim { .. } => KIND_SIM,
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        if self.bytes.len() < N {
            return Err(Error::malformed_endpoint("truncated address"));
        }
        let (head, rest) = self.bytes.split_at(N);
        self.bytes = rest;
        Ok(head.try_into().expect("split at N"))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.to_bytes() {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Endpoint> {
        let text = text.trim();
        if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::malformed_endpoint("not an even-length hex string"));
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("checked hex"))
            .collect();
        Endpoint::from_bytes(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Endpoint> {
        let gid = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        [
            Address::Infiniband { lid: 7, gid, gid_index: None },
            Address::Infiniband { lid: 0xffff, gid, gid_index: Some(3) },
            Address::Roce { gid, gid_index: 1 },
            Address::Soft { fabric: 1, pid: 42, node: 3, nonce: u64::MAX },
            Address::Sim { fabric: 9, node: 2 },
        ]
        .into_iter()
        .map(|address| Endpoint { qp_num: 0x1234, psn: 0xabcdef, mtu: Mtu::Mtu4096, address })
        .collect()
    }

    #[test]
    fn round_trips_in_bytes_and_text() {
        for endpoint in samples() {
            assert_eq!(Endpoint::from_bytes(&endpoint.to_bytes()).unwrap(), endpoint);
            assert_eq!(endpoint.to_string().parse::<Endpoint>().unwrap(), endpoint);
        }
    }

    #[test]
    fn refuses_every_truncation_and_extension() {
        for endpoint in samples() {
            let bytes = endpoint.to_bytes();
            for cut in 0..bytes.len() {
                assert!(Endpoint::from_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Endpoint::from_bytes(&longer).is_err());
        }
    }

    #[test]
    fn refuses_bad_headers() {
        let bytes = samples()[0].to_bytes();
        let mut wrong = bytes.clone();
        wrong[0] = b'x';
        assert!(Endpoint::from_bytes(&wrong).unwrap_err().to_string().contains("magic"));
        let mut wrong = bytes.clone();
        wrong[2] = 9;
        assert!(Endpoint::from_bytes(&wrong).unwrap_err().to_string().contains("version"));
        let mut wrong = bytes.clone();
        wrong[3] = 77;
        assert!(Endpoint::from_bytes(&wrong).is_err());
        let mut wrong = bytes;
        wrong[12] = 9;
        assert!(Endpoint::from_bytes(&wrong).is_err());
        assert!("zz".parse::<Endpoint>().is_err());
        assert!("abc".parse::<Endpoint>().is_err());
    }
}
