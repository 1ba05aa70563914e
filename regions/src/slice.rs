//! [`Slice`]: a bounds-checked window `offset..offset + len` onto a [`Region`], the unit
//! that arenas and slabs hand out and that a peer addresses by [`Slice::addr`].

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::error::{Error, Result};
use crate::region::Region;
use crate::remote::RemoteRegion;

/// A window onto a region: its own bounds, the region's safe accessors.
///
/// Every accessor takes offsets relative to the slice and checks them against the slice's
/// length, never the region's, so code handed a slice cannot reach its neighbours. Like a
/// [`Region`], a slice never hands out `&[u8]`: the bytes are shared with a NIC and other
/// processes, so access is by copies and atomics only. That is also why slices may be
/// copied freely: two slices over the same bytes are no more unsafe than two threads with
/// the same `&Region`.
#[derive(Clone, Copy)]
pub struct Slice<'r> {
    region: &'r Region,
    offset: usize,
    len: usize,
}

impl fmt::Debug for Slice<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slice")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("offset", &self.offset)
            .field("len", &self.len)
            .finish()
    }
}

impl Region {
    /// The bytes `offset..offset + len` of this region as a [`Slice`].
    pub fn slice(&self, offset: usize, len: usize) -> Result<Slice<'_>> {
        self.check_range(offset, len)?;
        Ok(Slice { region: self, offset, len })
    }

    /// The whole region as a [`Slice`], e.g. to carve it with an [`Arena`](crate::Arena).
    pub fn whole(&self) -> Slice<'_> {
        Slice { region: self, offset: 0, len: self.len() }
    }
}

impl<'r> Slice<'r> {
    /// The region this slice is a window onto (what a provider registers).
    pub fn region(&self) -> &'r Region {
        self.region
    }

    /// Where the slice starts, in bytes from the start of its region.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slice has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Start of the slice in this process.
    pub fn as_ptr(&self) -> *mut u8 {
        self.region.as_ptr().wrapping_add(self.offset)
    }

    /// Start of the slice as an address: what a peer puts in an RDMA work request (with the
    /// region's rkey) to reach these bytes.
    pub fn addr(&self) -> u64 {
        self.region.addr() + self.offset as u64
    }

    /// A descriptor a peer can use to reach this slice, given the rkey the region was
    /// registered under.
    pub fn remote_descriptor(&self, rkey: u32) -> RemoteRegion {
        RemoteRegion::new(self.addr(), self.len as u64, rkey)
            .expect("a mapped range cannot wrap around the address space")
    }

    /// Checks that `offset..offset + len` lies inside the slice (overflow included).
    pub fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset: offset as u64,
                len: len as u64,
                region_len: self.len as u64,
            }),
        }
    }

    /// The bytes `offset..offset + len` of this slice as a narrower slice.
    pub fn sub(&self, offset: usize, len: usize) -> Result<Slice<'r>> {
        self.check_range(offset, len)?;
        Ok(Slice { region: self.region, offset: self.offset + offset, len })
    }

    /// Copies `dst.len()` bytes at `offset` out of the slice.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        self.check_range(offset, dst.len())?;
        self.region.read(self.offset + offset, dst)
    }

    /// Copies `src` into the slice at `offset`, in increasing address order with the last
    /// word last (see [`crate::copy::ordered_write`]).
    pub fn write(&self, offset: usize, src: &[u8]) -> Result<()> {
        self.check_range(offset, src.len())?;
        self.region.write(self.offset + offset, src)
    }

    /// Sets `len` bytes at `offset` to `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<()> {
        self.check_range(offset, len)?;
        self.region.fill(self.offset + offset, len, byte)
    }

    /// Reads a plain-old-data value at `offset` (any alignment).
    pub fn read_pod<T: bytemuck::Pod>(&self, offset: usize) -> Result<T> {
        self.check_range(offset, std::mem::size_of::<T>())?;
        self.region.read_pod(self.offset + offset)
    }

    /// Writes a plain-old-data value at `offset` (any alignment).
    pub fn write_pod<T: bytemuck::Pod>(&self, offset: usize, value: &T) -> Result<()> {
        self.check_range(offset, std::mem::size_of::<T>())?;
        self.region.write_pod(self.offset + offset, value)
    }

    /// The 8-byte word at `offset` as an atomic. The word's address must be 8-byte aligned.
    pub fn atomic_u64(&self, offset: usize) -> Result<&'r AtomicU64> {
        self.check_aligned_word(offset, 8)?;
        self.region.atomic_u64(self.offset + offset)
    }

    /// The 4-byte word at `offset` as an atomic. The word's address must be 4-byte aligned.
    pub fn atomic_u32(&self, offset: usize) -> Result<&'r AtomicU32> {
        self.check_aligned_word(offset, 4)?;
        self.region.atomic_u32(self.offset + offset)
    }

    /// Checks a word access against the slice, so errors name slice offsets, not region ones.
    fn check_aligned_word(&self, offset: usize, word_len: usize) -> Result<()> {
        self.check_range(offset, word_len)?;
        if (self.offset + offset) % word_len != 0 {
            return Err(Error::Misaligned { offset: offset as u64, align: word_len as u64 });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::small_region;

    #[test]
    fn accessors_are_relative_to_the_slice() {
        let region = small_region(4096);
        let slice = region.slice(100, 50).unwrap();
        assert_eq!(slice.addr(), region.addr() + 100);
        assert_eq!(slice.as_ptr(), region.as_ptr().wrapping_add(100));
        slice.write(0, b"abc").unwrap();
        let mut out = [0u8; 3];
        region.read(100, &mut out).unwrap();
        assert_eq!(&out, b"abc");
        slice.fill(10, 5, 7).unwrap();
        assert_eq!(region.read_pod::<[u8; 5]>(110).unwrap(), [7; 5]);
        slice.write_pod(45, &0xAABB_CCDDu32).unwrap();
        assert_eq!(slice.read_pod::<u32>(45).unwrap(), 0xAABB_CCDD);
        assert_eq!(region.read_pod::<u32>(145).unwrap(), 0xAABB_CCDD);
    }

    #[test]
    fn bounds_are_the_slice_not_the_region() {
        let region = small_region(4096);
        let slice = region.slice(100, 50).unwrap();
        let err = slice.write(48, b"abc").unwrap_err();
        assert!(matches!(err, Error::OutOfBounds { offset: 48, len: 3, region_len: 50 }), "{err}");
        assert!(slice.read_pod::<u64>(43).is_err());
        assert!(slice.fill(usize::MAX, 2, 0).is_err());
        assert!(slice.sub(40, 11).is_err());
        assert!(slice.sub(50, 0).unwrap().is_empty());
        assert!(region.slice(4000, 97).is_err());
        assert_eq!(region.whole().len(), region.len());
    }

    #[test]
    fn atomics_check_the_address_alignment() {
        let region = small_region(4096);
        let slice = region.slice(4, 60).unwrap();
        // Slice offset 4 is region offset 8: aligned for a u64.
        slice.atomic_u64(4).unwrap().store(9, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(region.read_pod::<u64>(8).unwrap(), 9);
        let err = slice.atomic_u64(0).unwrap_err();
        assert!(matches!(err, Error::Misaligned { offset: 0, align: 8 }), "{err}");
        slice.atomic_u32(0).unwrap();
        assert!(slice.atomic_u32(58).is_err());
    }

    #[test]
    fn sub_slices_nest() {
        let region = small_region(4096);
        let outer = region.slice(1000, 1000).unwrap();
        let inner = outer.sub(100, 10).unwrap();
        assert_eq!(inner.offset(), 1100);
        assert_eq!(inner.addr(), region.addr() + 1100);
        let remote = inner.remote_descriptor(77);
        assert_eq!((remote.addr(), remote.len(), remote.rkey()), (inner.addr(), 10, 77));
    }
}
