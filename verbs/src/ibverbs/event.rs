//! Asynchronous events, read without blocking: the context's async file descriptor is
//! made non-blocking when the device is opened, so `ibv_get_async_event` returns at once
//! when nothing is pending.

use std::io;

use rdma_sys::{ibv_ack_async_event, ibv_get_async_event};

use crate::event::AsyncEvent;
use crate::ibverbs::convert::{event_kind_from_ibv, event_names_qp};
use crate::ibverbs::device::ContextHandle;
use crate::ibverbs::raw::{zeroed, AsyncEventRaw};

/// Sets O_NONBLOCK on the context's async event descriptor.
pub(crate) fn make_nonblocking(context: &ContextHandle) -> io::Result<()> {
    // SAFETY: the context is open; `async_fd` is a plain field set by ibv_open_device.
    let fd = unsafe { (*context.as_ptr()).async_fd };
    // SAFETY: fcntl on a descriptor the context owns; F_GETFL/F_SETFL change only flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The next pending event, acknowledged; `None` when there is none.
pub(crate) fn poll(context: &ContextHandle) -> Option<AsyncEvent> {
    let mut raw: AsyncEventRaw = zeroed();
    // `raw` reads the event's enum as an integer; with O_NONBLOCK set the call returns -1 when
    // nothing is pending instead of blocking.
    // SAFETY: the context is open and `raw` has the layout of `struct ibv_async_event`.
    if unsafe { ibv_get_async_event(context.as_ptr(), raw.as_raw()) } != 0 {
        return None;
    }
    let code = raw.event_type;
    let qp_num = event_names_qp(code).then(|| {
        // The QP cannot be destroyed before the event is acknowledged (ibv_destroy_qp waits for that).
        // SAFETY: for QP events the element is the pointer of a live QP.
        unsafe {
            let qp = raw.element.qp;
            (!qp.is_null()).then(|| (*qp).qp_num)
        }
    });
    // SAFETY: an event returned by ibv_get_async_event, acknowledged exactly once.
    unsafe { ibv_ack_async_event(raw.as_raw()) };
    Some(AsyncEvent { kind: event_kind_from_ibv(code), qp_num: qp_num.flatten() })
}
