//! Small FFI helpers shared by the provider's files: zero-initialised C structures, the
//! errno of a failed call, and the libibverbs constants `rdma-sys` does not generate.

use std::io;
use std::mem::MaybeUninit;

use rdma_sys::{
    ibv_async_event, ibv_async_event_element_t, ibv_device_attr, ibv_port_attr, ibv_qp_attr,
    ibv_qp_init_attr, ibv_recv_wr, ibv_send_wr, ibv_sge, ibv_wc,
};

/// `IBV_LINK_LAYER_*` (an anonymous enum in `verbs.h`).
pub(crate) const LINK_LAYER_UNSPECIFIED: u8 = 0;
pub(crate) const LINK_LAYER_INFINIBAND: u8 = 1;
pub(crate) const LINK_LAYER_ETHERNET: u8 = 2;

/// C structures for which all-zero bytes are a valid value (integers, raw pointers and
/// unions of those; no references, no Rust enums).
///
/// # Safety
///
/// Implement only for `#[repr(C)]` plain-data types whose every field accepts all-zero
/// bytes.
pub(crate) unsafe trait Zeroable: Sized {}

// SAFETY: each of these is a bindgen (or rdma-sys hand-written) `#[repr(C)]` struct of
// integers, raw pointers, arrays and unions of those; zero is a valid value of each field
// (a null pointer, a zero integer, enum-typed fields are `c_uint`/`c_int` constants).
unsafe impl Zeroable for ibv_qp_attr {}
// SAFETY: as above.
unsafe impl Zeroable for ibv_qp_init_attr {}
// SAFETY: as above.
unsafe impl Zeroable for ibv_send_wr {}
// SAFETY: as above.
unsafe impl Zeroable for ibv_recv_wr {}
// SAFETY: as above.
unsafe impl Zeroable for ibv_sge {}
// SAFETY: as above.
unsafe impl Zeroable for ibv_wc {}
// SAFETY: as above.
unsafe impl Zeroable for ibv_device_attr {}
// SAFETY: as above.
unsafe impl Zeroable for ibv_port_attr {}
// SAFETY: a union of raw pointers and a `c_int` and a `c_uint`: zero is valid for each.
unsafe impl Zeroable for AsyncEventRaw {}

/// An all-zero value of `T`.
pub(crate) fn zeroed<T: Zeroable>() -> T {
    // SAFETY: `Zeroable` promises that all-zero bytes are a valid `T`.
    unsafe { MaybeUninit::<T>::zeroed().assume_init() }
}

/// The calling thread's errno, as an `io::Error`.
pub(crate) fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

/// A verbs call's returned error number (libibverbs returns errno values from
/// `ibv_modify_qp`, `ibv_post_send`, ...), or errno when it returned -1.
pub(crate) fn returned_error(code: i32) -> io::Error {
    if code > 0 {
        io::Error::from_raw_os_error(code)
    } else {
        let errno = last_os_error();
        match errno.raw_os_error() {
            Some(0) | None => io::Error::other(format!("failed with code {code} and no errno")),
            Some(_) => errno,
        }
    }
}

/// `struct ibv_async_event` with the event type read as a plain integer. `rdma-sys`
/// declares it as a Rust enum, and a kernel newer than the bindings may report a code
/// that enum lacks, which would be undefined behaviour to read.
#[repr(C)]
pub(crate) struct AsyncEventRaw {
    pub element: ibv_async_event_element_t,
    pub event_type: std::os::raw::c_uint,
}

const _: () = {
    assert!(size_of::<AsyncEventRaw>() == size_of::<ibv_async_event>());
    assert!(align_of::<AsyncEventRaw>() == align_of::<ibv_async_event>());
};

impl AsyncEventRaw {
    /// The pointer libibverbs' event functions take.
    pub(crate) fn as_raw(&mut self) -> *mut ibv_async_event {
        (self as *mut AsyncEventRaw).cast()
    }
}
