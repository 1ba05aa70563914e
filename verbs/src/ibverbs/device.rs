//! Devices: listing them, opening one by name, and what it reports (device attributes,
//! ports, GID tables).

use std::any::Any;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::ptr::NonNull;
use std::sync::Arc;

use rdma_sys::{
    ___ibv_query_port, ibv_atomic_cap, ibv_close_device, ibv_context, ibv_device, ibv_device_attr,
    ibv_free_device_list, ibv_get_device_list, ibv_get_device_name, ibv_gid, ibv_open_device, ibv_port_attr,
    ibv_query_device, ibv_query_gid, ibv_transport_type,
};

use crate::device::{DeviceAttributes, PortAttributes};
use crate::error::{Error, Result};
use crate::event::AsyncEvent;
use crate::ibverbs::completion_queue::{CqHandle, IbvCq};
use crate::ibverbs::convert::{link_layer_from_ibv, mtu_from_ibv, port_state_from_ibv};
use crate::ibverbs::protection_domain::{IbvPd, PdHandle};
use crate::ibverbs::queue_pair::QpHandle;
use crate::ibverbs::raw::{last_os_error, zeroed};
use crate::ibverbs::{event, raw};
use crate::provider::{CqOps, DeviceOps, PdOps, ProviderKind};
use crate::qp::{Gid, Mtu, QpCaps};

/// The device list of libibverbs, freed on drop.
struct DeviceList {
    list: NonNull<*mut ibv_device>,
    len: usize,
}

impl DeviceList {
    /// The devices of this machine; `None` when there are none (or no kernel support).
    fn get() -> Result<Option<DeviceList>> {
        let mut len = 0;
        // The returned list is ours until `ibv_free_device_list` (in Drop).
        // SAFETY: `len` is a valid out-pointer.
        let list = unsafe { ibv_get_device_list(&mut len) };
        let Some(list) = NonNull::new(list) else {
            let error = last_os_error();
            // ENOSYS: the kernel has no RDMA (uverbs) support at all.
            return match error.raw_os_error() {
                Some(libc::ENOSYS) | Some(libc::ENOENT) | Some(libc::ENODEV) => Ok(None),
                _ => Err(Error::os("ibv_get_device_list", error)),
            };
        };
        let list = DeviceList { list, len: usize::try_from(len).unwrap_or(0) };
        Ok((list.len > 0).then_some(list))
    }

    fn devices(&self) -> impl Iterator<Item = *mut ibv_device> + '_ {
        // The array stays alive until the list is freed, which borrows of `self` prevent.
        // SAFETY: libibverbs returns an array of `len` valid device pointers (then NULL).
        let slice = unsafe { std::slice::from_raw_parts(self.list.as_ptr(), self.len) };
        slice.iter().copied()
    }

    fn names(&self) -> Vec<String> {
        self.devices().map(device_name).collect()
    }
}

impl Drop for DeviceList {
    fn drop(&mut self) {
        // Contexts opened from its devices stay valid after the list is freed (libibverbs keeps the
        // devices referenced).
        // SAFETY: the list came from `ibv_get_device_list` and is freed once, here.
        unsafe { ibv_free_device_list(self.list.as_ptr()) };
    }
}

fn device_name(device: *mut ibv_device) -> String {
    // The name is a NUL-terminated string owned by the device.
    // SAFETY: `device` is an entry of a live device list.
    let name = unsafe { ibv_get_device_name(device) };
    if name.is_null() {
        return String::from("(unnamed)");
    }
    // SAFETY: checked non-null above; NUL-terminated per libibverbs.
    unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
}

/// Names of this machine's ibverbs devices.
pub(crate) fn device_names() -> Result<Vec<String>> {
    Ok(DeviceList::get()?.map(|list| list.names()).unwrap_or_default())
}

/// An opened `ibv_context`, closed on drop. Everything made from it holds an `Arc` of it,
/// so it closes last.
pub(crate) struct ContextHandle {
    raw: NonNull<ibv_context>,
}

// SAFETY: libibverbs contexts may be used from any thread; every verb on them is
// thread-safe (rdma-core: "all verbs are thread safe"), and the handle has no interior
// state of its own.
unsafe impl Send for ContextHandle {}
// SAFETY: as above; shared use only calls thread-safe verbs.
unsafe impl Sync for ContextHandle {}

impl fmt::Debug for ContextHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContextHandle({:p})", self.raw)
    }
}

impl ContextHandle {
    pub(crate) fn as_ptr(&self) -> *mut ibv_context {
        self.raw.as_ptr()
    }
}

impl Drop for ContextHandle {
    fn drop(&mut self) {
        // Every object made from the context holds an Arc of this handle, so none is left.
        // SAFETY: opened by `ibv_open_device`, closed once, here.
        unsafe { ibv_close_device(self.raw.as_ptr()) };
    }
}

/// What every object of one opened device shares.
#[derive(Debug)]
pub(crate) struct DeviceShared {
    pub name: String,
    pub context: Arc<ContextHandle>,
    /// As of opening (ports are re-queried by [`DeviceShared::attributes`]).
    pub attributes: DeviceAttributes,
    /// `max_qp_init_rd_atom`: outgoing READs/atomics in flight a QP may ask for.
    pub max_qp_init_rd_atom: u32,
    /// An iWARP device: RC connections need the connection manager.
    pub iwarp: bool,
}

impl DeviceShared {
    /// The attributes with the ports' current state.
    pub(crate) fn attributes(&self) -> DeviceAttributes {
        let mut attributes = self.attributes.clone();
        for port in &mut attributes.ports {
            if let Ok(fresh) = self.port(port.port) {
                *port = fresh;
            }
        }
        attributes
    }

    /// `ibv_query_port`.
    pub(crate) fn query_port(&self, port: u8) -> io::Result<ibv_port_attr> {
        let mut attr: ibv_port_attr = zeroed();
        // The helper calls the provider's extended query_port with the size rdma-sys passes along.
        // SAFETY: the context is open and `attr` is a valid out-structure.
        let code = unsafe { ___ibv_query_port(self.context.as_ptr(), port, &mut attr) };
        if code != 0 {
            return Err(raw::returned_error(code));
        }
        Ok(attr)
    }

    /// One port's attributes, queried now.
    pub(crate) fn port(&self, port: u8) -> io::Result<PortAttributes> {
        self.query_port(port).map(|attr| port_attributes(port, &attr))
    }

    /// Checks a port number against the device's ports.
    pub(crate) fn check_port(&self, port: u8) -> Result<()> {
        let count = self.attributes.ports.len();
        if port == 0 || usize::from(port) > count {
            return Err(Error::invalid(format!(
                "port {port} of {}: the device has port{} 1..={count}",
                self.name,
                if count == 1 { "" } else { "s" }
            )));
        }
        Ok(())
    }

    /// `ibv_query_gid`: the GID at `index` of `port`.
    pub(crate) fn query_gid(&self, port: u8, index: u8) -> io::Result<Gid> {
        let mut gid: ibv_gid = ibv_gid { raw: [0; 16] };
        // SAFETY: the context is open; `gid` is a valid out-structure.
        let code = unsafe { ibv_query_gid(self.context.as_ptr(), port, i32::from(index), &mut gid) };
        if code != 0 {
            return Err(raw::returned_error(code));
        }
        // SAFETY: every bit pattern of the union is a valid `[u8; 16]`.
        Ok(unsafe { gid.raw })
    }
}

fn port_attributes(port: u8, attr: &ibv_port_attr) -> PortAttributes {
    PortAttributes {
        port,
        state: port_state_from_ibv(attr.state),
        // A port reporting no valid MTU cannot carry traffic anyway; the smallest is safe.
        active_mtu: mtu_from_ibv(attr.active_mtu).unwrap_or(Mtu::Mtu256),
        lid: attr.lid,
        link_layer: link_layer_from_ibv(attr.link_layer),
        gid_table_len: u32::try_from(attr.gid_tbl_len).unwrap_or(0),
    }
}

/// An opened ibverbs device.
#[derive(Debug)]
pub(crate) struct IbvDevice {
    pub shared: Arc<DeviceShared>,
}

impl IbvDevice {
    /// Opens the device called `name`.
    pub(crate) fn open(name: &str) -> Result<IbvDevice> {
        let list = DeviceList::get()?.ok_or(Error::NoDevice)?;
        let device = list
            .devices()
            .find(|device| device_name(*device) == name)
            .ok_or_else(|| Error::UnknownDevice { name: name.to_string(), known: list.names() })?;
        // SAFETY: `device` is an entry of the live list.
        let raw = unsafe { ibv_open_device(device) };
        let raw = NonNull::new(raw).ok_or_else(|| {
            let error = last_os_error();
            let hint = match error.raw_os_error() {
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    " (no permission on /dev/infiniband/uverbs*; join the group that owns it, usually `rdma`)"
                }
                _ => "",
            };
            Error::os(format!("ibv_open_device({name}){hint}"), error)
        })?;
        let context = Arc::new(ContextHandle { raw });
        // SAFETY: `device` is a live list entry; the field is plain data.
        let transport = unsafe { (*device).transport_type };
        drop(list);
        event::make_nonblocking(&context)
            .map_err(|error| Error::os(format!("fcntl(async fd of {name})"), error))?;
        let (attributes, max_qp_init_rd_atom) = query_attributes(name, &context)?;
        Ok(IbvDevice {
            shared: Arc::new(DeviceShared {
                name: name.to_string(),
                context,
                attributes,
                max_qp_init_rd_atom,
                iwarp: transport == ibv_transport_type::IBV_TRANSPORT_IWARP,
            }),
        })
    }
}

/// Device and port attributes, and the probed inline limit.
fn query_attributes(name: &str, context: &Arc<ContextHandle>) -> Result<(DeviceAttributes, u32)> {
    let mut attr: ibv_device_attr = zeroed();
    // SAFETY: the context is open; `attr` is a valid out-structure.
    let code = unsafe { ibv_query_device(context.as_ptr(), &mut attr) };
    if code != 0 {
        return Err(Error::os(format!("ibv_query_device({name})"), raw::returned_error(code)));
    }
    let count = |value: i32| u32::try_from(value).unwrap_or(0);
    let mut ports = Vec::with_capacity(usize::from(attr.phys_port_cnt));
    for port in 1..=attr.phys_port_cnt {
        let mut port_attr: ibv_port_attr = zeroed();
        // SAFETY: as in `DeviceShared::query_port`.
        let code = unsafe { ___ibv_query_port(context.as_ptr(), port, &mut port_attr) };
        if code != 0 {
            return Err(Error::os(format!("ibv_query_port({name}, {port})"), raw::returned_error(code)));
        }
        ports.push(port_attributes(port, &port_attr));
    }
    let attributes = DeviceAttributes {
        max_qp: count(attr.max_qp),
        max_qp_wr: count(attr.max_qp_wr),
        max_sge: count(attr.max_sge),
        max_cq: count(attr.max_cq),
        max_cqe: count(attr.max_cqe),
        max_mr: count(attr.max_mr),
        max_mr_size: attr.max_mr_size,
        max_inline_data: probe_max_inline(context),
        max_qp_rd_atom: count(attr.max_qp_rd_atom),
        atomics_global: attr.atomic_cap == ibv_atomic_cap::IBV_ATOMIC_GLOB,
        ports,
    };
    Ok((attributes, count(attr.max_qp_init_rd_atom)))
}

/// The largest `max_inline_data` the device accepts at QP creation (it is not in
/// `ibv_device_attr`): a binary search over throwaway QPs, once per opened device. 0 when
/// no QP can be created at all (creation will then report the real error).
fn probe_max_inline(context: &Arc<ContextHandle>) -> u32 {
    const CEILING: u32 = 4096;
    let Ok(pd) = PdHandle::alloc(context) else { return 0 };
    let Ok(cq) = CqHandle::create(context, 2) else { return 0 };
    let (pd, cq) = (Arc::new(pd), Arc::new(cq));
    let accepts = |inline: u32| {
        let caps = QpCaps {
            max_send_wr: 1,
            max_recv_wr: 1,
            max_send_sge: 1,
            max_recv_sge: 1,
            max_inline_data: inline,
        };
        QpHandle::create(&pd, &cq, &cq, &caps).is_ok()
    };
    if accepts(CEILING) {
        return CEILING;
    }
    // Invariant: `low` is accepted (0 assumed), `high` refused.
    let (mut low, mut high) = (0, CEILING);
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        if accepts(middle) {
            low = middle;
        } else {
            high = middle;
        }
    }
    low
}

impl DeviceOps for IbvDevice {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Ibverbs
    }

    fn attributes(&self) -> DeviceAttributes {
        self.shared.attributes()
    }

    fn alloc_pd(&self) -> Result<Arc<dyn PdOps>> {
        Ok(Arc::new(IbvPd::alloc(&self.shared)?))
    }

    fn create_cq(&self, depth: u32) -> Result<Box<dyn CqOps>> {
        Ok(Box::new(IbvCq::create(&self.shared, depth)?))
    }

    fn poll_event(&self) -> Option<AsyncEvent> {
        event::poll(&self.shared.context)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_works_with_or_without_devices() {
        let names = device_names().expect("listing devices never fails for lack of RDMA");
        match IbvDevice::open("usec_absent_device9") {
            Err(Error::NoDevice) => assert!(names.is_empty()),
            Err(Error::UnknownDevice { name, known }) => {
                assert_eq!(name, "usec_absent_device9");
                assert_eq!(known, names);
            }
            other => panic!("opening an absent device: {other:?}"),
        }
    }
}
