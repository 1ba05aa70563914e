//! [`TypedView`]: an array of plain-old-data values laid out in a region.

use std::fmt;
use std::marker::PhantomData;
use std::mem::{align_of, size_of};

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::region::Region;
use crate::slice::Slice;

/// `len` values of type `T` stored back to back in a region, read and written by copy.
///
/// The view checks once, at creation, that its bytes lie in bounds and that its start is
/// aligned for `T`, so a peer or a NIC can address element `i` at
/// [`TypedView::addr_of`]`(i)` and an 8-byte `T` is fit for RDMA atomics. Accessors copy
/// values in and out; there is never a `&T` into the region, because another agent may be
/// writing the bytes while we look. A value read while a peer writes it may be torn:
/// protocols that need whole values check them (canaries, checksums, atomics).
pub struct TypedView<'r, T: Pod> {
    bytes: Slice<'r>,
    len: usize,
    element: PhantomData<T>,
}

impl<T: Pod> Clone for TypedView<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: Pod> Copy for TypedView<'_, T> {}

impl<T: Pod> fmt::Debug for TypedView<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedView")
            .field("element", &std::any::type_name::<T>())
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("len", &self.len)
            .finish()
    }
}

impl<'r, T: Pod> TypedView<'r, T> {
    /// A view of `len` values of `T` starting at byte `offset` of `region`.
    pub fn new(region: &'r Region, offset: usize, len: usize) -> Result<Self> {
        TypedView::in_slice(&region.whole(), offset, len)
    }

    /// A view of `len` values of `T` starting at byte `offset` of `slice`; bounds are
    /// checked against the slice.
    pub fn in_slice(slice: &Slice<'r>, offset: usize, len: usize) -> Result<Self> {
        let byte_len = len.checked_mul(size_of::<T>()).ok_or(Error::OutOfBounds {
            offset: offset as u64,
            len: u64::MAX,
            region_len: slice.len() as u64,
        })?;
        let bytes = slice.sub(offset, byte_len)?;
        if bytes.addr() % align_of::<T>() as u64 != 0 {
            return Err(Error::Misaligned { offset: offset as u64, align: align_of::<T>() as u64 });
        }
        Ok(TypedView { bytes, len, element: PhantomData })
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view has no values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes behind the view.
    pub fn byte_slice(&self) -> Slice<'r> {
        self.bytes
    }

    /// Address of the first value.
    pub fn addr(&self) -> u64 {
        self.bytes.addr()
    }

    /// Address of value `index`, what a peer writes to to update it.
    pub fn addr_of(&self, index: usize) -> Result<u64> {
        self.check_elements(index, 1)?;
        Ok(self.addr() + (index * size_of::<T>()) as u64)
    }

    /// A copy of value `index`.
    pub fn get(&self, index: usize) -> Result<T> {
        self.check_elements(index, 1)?;
        self.bytes.read_pod(index * size_of::<T>())
    }

    /// Overwrites value `index`.
    pub fn set(&self, index: usize, value: &T) -> Result<()> {
        self.check_elements(index, 1)?;
        self.bytes.write_pod(index * size_of::<T>(), value)
    }

    /// Copies every value out; `dst` must have exactly [`TypedView::len`] elements.
    pub fn read_all(&self, dst: &mut [T]) -> Result<()> {
        self.check_exact_len(dst.len())?;
        self.read_range(0, dst)
    }

    /// Overwrites every value; `src` must have exactly [`TypedView::len`] elements.
    pub fn write_all(&self, src: &[T]) -> Result<()> {
        self.check_exact_len(src.len())?;
        self.write_range(0, src)
    }

    /// Copies values `first..first + dst.len()` out.
    pub fn read_range(&self, first: usize, dst: &mut [T]) -> Result<()> {
        self.check_elements(first, dst.len())?;
        self.bytes.read(first * size_of::<T>(), bytemuck::cast_slice_mut(dst))
    }

    /// Overwrites values `first..first + src.len()`, in increasing address order with the
    /// last word last.
    pub fn write_range(&self, first: usize, src: &[T]) -> Result<()> {
        self.check_elements(first, src.len())?;
        self.bytes.write(first * size_of::<T>(), bytemuck::cast_slice(src))
    }

    fn check_elements(&self, first: usize, count: usize) -> Result<()> {
        match first.checked_add(count) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::IndexOutOfBounds { first, count, view_len: self.len }),
        }
    }

    fn check_exact_len(&self, actual: usize) -> Result<()> {
        if actual != self.len {
            return Err(Error::LengthMismatch { expected: self.len, actual });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::small_region;

    #[derive(Clone, Copy, Debug, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Entry {
        key: u64,
        value: u32,
        flags: u32,
    }

    #[test]
    fn values_round_trip_by_index_and_in_bulk() {
        let region = small_region(4096);
        let view = TypedView::<Entry>::new(&region, 64, 10).unwrap();
        assert_eq!(view.len(), 10);
        let entry = Entry { key: 1, value: 2, flags: 3 };
        view.set(9, &entry).unwrap();
        assert_eq!(view.get(9).unwrap(), entry);
        assert_eq!(region.read_pod::<Entry>(64 + 9 * 16).unwrap(), entry);
        assert_eq!(view.addr_of(9).unwrap(), region.addr() + 64 + 9 * 16);

        let all: Vec<Entry> = (0..10).map(|i| Entry { key: i, value: i as u32, flags: 0 }).collect();
        view.write_all(&all).unwrap();
        let mut back = vec![Entry { key: 0, value: 0, flags: 0 }; 10];
        view.read_all(&mut back).unwrap();
        assert_eq!(back, all);
        let mut middle = [Entry { key: 0, value: 0, flags: 0 }; 3];
        view.read_range(4, &mut middle).unwrap();
        assert_eq!(&middle, &all[4..7]);
    }

    #[test]
    fn every_index_is_checked() {
        let region = small_region(4096);
        let view = TypedView::<u64>::new(&region, 0, 4).unwrap();
        let err = view.get(4).unwrap_err();
        assert!(matches!(err, Error::IndexOutOfBounds { first: 4, count: 1, view_len: 4 }), "{err}");
        assert!(view.set(usize::MAX, &1).is_err());
        assert!(view.addr_of(4).is_err());
        assert!(view.write_range(3, &[1, 2]).is_err());
        assert!(view.read_range(usize::MAX, &mut [0]).is_err());
        let err = view.read_all(&mut [0; 3]).unwrap_err();
        assert!(matches!(err, Error::LengthMismatch { expected: 4, actual: 3 }), "{err}");
        assert!(view.write_all(&[0; 5]).is_err());
        view.write_range(4, &[]).unwrap();
    }

    #[test]
    fn creation_checks_bounds_and_alignment() {
        let region = small_region(4096);
        let err = TypedView::<u64>::new(&region, 4, 1).unwrap_err();
        assert!(matches!(err, Error::Misaligned { offset: 4, align: 8 }), "{err}");
        assert!(TypedView::<u64>::new(&region, 4096 - 8, 2).is_err());
        assert!(TypedView::<u64>::new(&region, 8, usize::MAX).is_err());
        assert!(TypedView::<u64>::new(&region, 4096, 0).unwrap().is_empty());
        TypedView::<u8>::new(&region, 3, 4093).unwrap();

        let slice = region.slice(8, 32).unwrap();
        assert!(TypedView::<u64>::in_slice(&slice, 0, 5).is_err());
        let err = TypedView::<u32>::in_slice(&slice, 2, 1).unwrap_err();
        assert!(matches!(err, Error::Misaligned { offset: 2, align: 4 }), "{err}");
        let view = TypedView::<u64>::in_slice(&slice, 8, 3).unwrap();
        view.set(0, &5).unwrap();
        assert_eq!(region.read_pod::<u64>(16).unwrap(), 5);
        assert_eq!(view.byte_slice().offset(), 16);
    }
}
