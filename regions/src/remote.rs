//! [`RemoteRegion`]: what a peer needs to reach memory over RDMA — address, length, rkey —
//! with bounds-checked arithmetic and a fixed wire encoding.

use std::fmt;

use crate::error::{Error, Result};

/// First byte of every encoded descriptor: tells a descriptor from other bytes.
const MAGIC: u8 = b'R';
/// Second byte: the layout that follows.
const VERSION: u8 = 1;

/// A range of a peer's registered memory: `len` bytes from address `addr`, accessed with
/// `rkey`.
///
/// Peers exchange these at connection time ([`RemoteRegion::to_bytes`],
/// [`RemoteRegion::from_bytes`]) and derive the target of every one-sided operation from
/// them ([`RemoteRegion::sub`], [`RemoteRegion::addr_of`], and in `usec-verbs`
/// `RemoteAddr::within(&region, offset, len)`), so an offset bug becomes an error here
/// rather than a remote access error that kills the queue pair. The fields are
/// private to keep one invariant: `addr + len` does not overflow. Empty regions are allowed.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteRegion {
    addr: u64,
    len: u64,
    rkey: u32,
}

impl fmt::Debug for RemoteRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteRegion")
            .field("addr", &format_args!("{:#x}", self.addr))
            .field("len", &self.len)
            .field("rkey", &format_args!("{:#x}", self.rkey))
            .finish()
    }
}

impl RemoteRegion {
    /// Bytes of [`RemoteRegion::to_bytes`]: magic, version, then `addr` (8), `len` (8)
    /// and `rkey` (4), little-endian.
    pub const ENCODED_LEN: usize = 22;

    /// Describes `len` bytes from `addr` under `rkey`; fails if the range wraps around the
    /// address space.
    pub fn new(addr: u64, len: u64, rkey: u32) -> Result<RemoteRegion> {
        if addr.checked_add(len).is_none() {
            return Err(Error::RemoteRangeOverflow { addr, len });
        }
        Ok(RemoteRegion { addr, len, rkey })
    }

    /// Start address, in the peer's address space.
    pub fn addr(&self) -> u64 {
        self.addr
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The remote key that grants access.
    pub fn rkey(&self) -> u32 {
        self.rkey
    }

    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.addr + self.len
    }

    /// The bytes `offset..offset + len` of this region, same rkey.
    pub fn sub(&self, offset: u64, len: u64) -> Result<RemoteRegion> {
        self.check_range(offset, len)?;
        Ok(RemoteRegion { addr: self.addr + offset, len, rkey: self.rkey })
    }

    /// The address to put in a work request that accesses `access_len` bytes at `offset`,
    /// after checking that they lie inside the region.
    pub fn addr_of(&self, offset: u64, access_len: u64) -> Result<u64> {
        self.check_range(offset, access_len)?;
        Ok(self.addr + offset)
    }

    /// The offset of an incoming access of `access_len` bytes at absolute address `addr`,
    /// after checking that it lies inside the region: what a target does before touching
    /// memory on a peer's behalf.
    pub fn offset_of(&self, addr: u64, access_len: u64) -> Result<u64> {
        let out_of_bounds = || Error::RemoteOutOfBounds {
            addr,
            len: access_len,
            region_addr: self.addr,
            region_len: self.len,
        };
        let offset = addr.checked_sub(self.addr).ok_or_else(out_of_bounds)?;
        self.check_range(offset, access_len).map_err(|_| out_of_bounds())?;
        Ok(offset)
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::OutOfBounds { offset, len, region_len: self.len }),
        }
    }

    /// The fixed little-endian encoding: magic `b'R'`, version 1, `addr`, `len`, `rkey`.
    pub fn to_bytes(&self) -> [u8; RemoteRegion::ENCODED_LEN] {
        let mut bytes = [0u8; RemoteRegion::ENCODED_LEN];
        bytes[0] = MAGIC;
        bytes[1] = VERSION;
        bytes[2..10].copy_from_slice(&self.addr.to_le_bytes());
        bytes[10..18].copy_from_slice(&self.len.to_le_bytes());
        bytes[18..22].copy_from_slice(&self.rkey.to_le_bytes());
        bytes
    }

    /// Decodes [`RemoteRegion::to_bytes`]. `bytes` must be exactly one descriptor; a wrong
    /// magic byte, an unknown version, a wrong length or a range that wraps around the
    /// address space is an error, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<RemoteRegion> {
        let length_error =
            Error::DescriptorLength { actual: bytes.len(), expected: RemoteRegion::ENCODED_LEN };
        // Magic and version come before the length check: a later version may be longer,
        // and "wrong version" is the more useful error then.
        match bytes.first() {
            None => return Err(length_error),
            Some(&found) if found != MAGIC => return Err(Error::DescriptorMagic { found, expected: MAGIC }),
            Some(_) => {}
        }
        match bytes.get(1) {
            None => return Err(length_error),
            Some(&found) if found != VERSION => {
                return Err(Error::DescriptorVersion { found, supported: VERSION })
            }
            Some(_) => {}
        }
        let Ok(bytes) = <&[u8; RemoteRegion::ENCODED_LEN]>::try_from(bytes) else {
            return Err(length_error);
        };
        let addr = u64::from_le_bytes(bytes[2..10].try_into().expect("8 bytes"));
        let len = u64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes"));
        let rkey = u32::from_le_bytes(bytes[18..22].try_into().expect("4 bytes"));
        RemoteRegion::new(addr, len, rkey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_fixed() {
        let region = RemoteRegion::new(0x0102_0304_0506_0708, 0x10, 0xAABB_CCDD).unwrap();
        let bytes = region.to_bytes();
        assert_eq!(
            bytes,
            [
                b'R', 1, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x10, 0, 0, 0, 0, 0, 0, 0, 0xDD,
                0xCC, 0xBB, 0xAA
            ]
        );
        assert_eq!(RemoteRegion::from_bytes(&bytes).unwrap(), region);
    }

    #[test]
    fn malformed_descriptors_are_clear_errors() {
        let bytes = RemoteRegion::new(4096, 100, 7).unwrap().to_bytes();
        assert!(matches!(
            RemoteRegion::from_bytes(&[]),
            Err(Error::DescriptorLength { actual: 0, expected: 22 })
        ));
        assert!(matches!(
            RemoteRegion::from_bytes(&bytes[..21]),
            Err(Error::DescriptorLength { actual: 21, .. })
        ));
        assert!(matches!(
            RemoteRegion::from_bytes(&[bytes.as_slice(), &[0]].concat()),
            Err(Error::DescriptorLength { actual: 23, .. })
        ));
        let mut wrong_magic = bytes;
        wrong_magic[0] = 0;
        assert!(matches!(
            RemoteRegion::from_bytes(&wrong_magic),
            Err(Error::DescriptorMagic { found: 0, .. })
        ));
        let mut wrong_version = bytes;
        wrong_version[1] = 2;
        let err = RemoteRegion::from_bytes(&wrong_version[..5]).unwrap_err();
        assert!(matches!(err, Error::DescriptorVersion { found: 2, supported: 1 }), "{err}");
        let wrapping = [&bytes[..2], &u64::MAX.to_le_bytes(), &1u64.to_le_bytes(), &[0; 4]].concat();
        assert!(matches!(RemoteRegion::from_bytes(&wrapping), Err(Error::RemoteRangeOverflow { .. })));
    }

    #[test]
    fn sub_ranges_and_addresses_are_checked() {
        let region = RemoteRegion::new(1000, 100, 5).unwrap();
        let sub = region.sub(10, 20).unwrap();
        assert_eq!((sub.addr(), sub.len(), sub.rkey(), sub.end()), (1010, 20, 5, 1030));
        assert!(region.sub(100, 0).unwrap().is_empty());
        assert!(matches!(
            region.sub(90, 11),
            Err(Error::OutOfBounds { offset: 90, len: 11, region_len: 100 })
        ));
        assert!(region.sub(u64::MAX, 2).is_err());
        assert_eq!(region.addr_of(92, 8).unwrap(), 1092);
        assert!(region.addr_of(93, 8).is_err());
        assert_eq!(region.offset_of(1092, 8).unwrap(), 92);
        assert!(matches!(region.offset_of(999, 1), Err(Error::RemoteOutOfBounds { addr: 999, .. })));
        assert!(region.offset_of(1093, 8).is_err());
        assert!(region.offset_of(u64::MAX, u64::MAX).is_err());
    }

    #[test]
    fn ranges_that_wrap_are_refused() {
        assert!(RemoteRegion::new(u64::MAX, 0, 0).is_ok());
        assert!(RemoteRegion::new(u64::MAX, 1, 0).is_err());
        assert!(RemoteRegion::new(0, u64::MAX, 0).is_ok());
    }
}
