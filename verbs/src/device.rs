//! Devices: listing them, opening one by name, and what an opened one ([`Context`]) can do.
//!
//! A device name picks the provider, as libibverbs picks a driver: the part before a ':'
//! names it (`soft:<fabric>` is the shared-memory provider, `sim:<name>` the simulator),
//! and a name without a prefix (`mlx5_0`, `rxe0`, `siw0`) goes to the ibverbs provider.
//! The table of prefixes is in `provider.rs`.

use std::fmt;
use std::sync::Arc;

use crate::completion_queue::CompletionQueue;
use crate::error::{Error, Result};
use crate::event::AsyncEvent;
use crate::protection_domain::ProtectionDomain;
use crate::provider::{self, DeviceOps, ProviderKind, PROVIDERS};
use crate::qp::Mtu;

/// A device that [`devices`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to give [`Context::open`].
    pub name: String,
    /// Its provider.
    pub provider: ProviderKind,
}

/// The link layer of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LinkLayer {
    /// InfiniBand.
    Infiniband,
    /// Ethernet (RoCE, iWARP).
    Ethernet,
    /// Shared memory (soft provider).
    SharedMemory,
    /// Simulated.
    Simulated,
}

/// The state of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PortState {
    /// Down.
    Down,
    /// Initialising.
    Init,
    /// Armed.
    Armed,
    /// Active: traffic flows.
    Active,
    /// Another state, with the raw code.
    Other(u32),
}

/// What one port of a device offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortAttributes {
    /// Port number (1-based).
    pub port: u8,
    /// State.
    pub state: PortState,
    /// Active MTU.
    pub active_mtu: Mtu,
    /// Local identifier (InfiniBand), else 0.
    pub lid: u16,
    /// Link layer.
    pub link_layer: LinkLayer,
    /// Entries in the GID table.
    pub gid_table_len: u32,
}

impl PortAttributes {
    /// The one always-active port of an emulating provider (soft, sim).
    pub(crate) fn emulated(link_layer: LinkLayer) -> PortAttributes {
        PortAttributes {
            port: 1,
            state: PortState::Active,
            active_mtu: Mtu::Mtu4096,
            lid: 0,
            link_layer,
            gid_table_len: 0,
        }
    }
}

/// Limits and capabilities of a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAttributes {
    /// Queue pairs.
    pub max_qp: u32,
    /// Work requests per queue.
    pub max_qp_wr: u32,
    /// SGEs per work request.
    pub max_sge: u32,
    /// Completion queues.
    pub max_cq: u32,
    /// Entries per completion queue.
    pub max_cqe: u32,
    /// Memory registrations.
    pub max_mr: u32,
    /// Largest registration in bytes.
    pub max_mr_size: u64,
    /// Largest inline payload a QP can be created with.
    pub max_inline_data: u32,
    /// READs and atomics in flight per QP.
    pub max_qp_rd_atom: u32,
    /// Whether remote atomics are atomic with respect to the CPU too, not only to other
    /// atomics through the same device (`IBV_ATOMIC_GLOB` versus `IBV_ATOMIC_HCA`).
    pub atomics_global: bool,
    /// The device's ports.
    pub ports: Vec<PortAttributes>,
}

/// An opened device: the root of every other verbs object (`ibv_context`).
///
/// Cheap to clone; objects created from it keep it alive.
#[derive(Clone)]
pub struct Context {
    inner: Arc<dyn DeviceOps>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("name", &self.name()).field("provider", &self.provider()).finish()
    }
}

impl Context {
    /// Opens a device by name: `soft:<fabric>`, `sim:<name>`, or an ibverbs device name.
    /// A prefix that names no provider is [`Error::UnknownProvider`], which lists the
    /// known ones.
    pub fn open(name: &str) -> Result<Context> {
        let (provider, device) = provider::resolve(name)?;
        Ok(Context::from_device((provider.open)(device)?))
    }

    /// Wraps a device a provider opened.
    pub(crate) fn from_device(device: Arc<dyn DeviceOps>) -> Context {
        Context { inner: device }
    }

    /// The provider's own device object behind this context, if it is a `T`: how a
    /// provider finds its state again from a context it is handed (`SimFabric::of`).
    pub(crate) fn device_as<T: DeviceOps + 'static>(&self) -> Option<&T> {
        self.inner.as_any().downcast_ref::<T>()
    }

    /// The name it was opened by.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The provider behind it.
    pub fn provider(&self) -> ProviderKind {
        self.inner.kind()
    }

    /// Limits and capabilities.
    pub fn attributes(&self) -> DeviceAttributes {
        self.inner.attributes()
    }

    /// Allocates a protection domain.
    pub fn alloc_pd(&self) -> Result<ProtectionDomain> {
        Ok(ProtectionDomain { inner: self.inner.alloc_pd()?, context: self.clone() })
    }

    /// Creates a completion queue with room for at least `depth` completions.
    pub fn create_cq(&self, depth: u32) -> Result<CompletionQueue> {
        let max = self.attributes().max_cqe;
        if depth == 0 || depth > max {
            return Err(Error::invalid(format!("CQ depth {depth} outside 1..={max}")));
        }
        Ok(CompletionQueue { inner: self.inner.create_cq(depth)? })
    }

    /// The next asynchronous event, if one is pending. Never blocks.
    pub fn poll_event(&self) -> Option<AsyncEvent> {
        self.inner.poll_event()
    }
}

/// Lists the devices of every provider: soft fabrics that exist in the fabric directory,
/// sim fabrics of this process, and ibverbs devices.
pub fn devices() -> Result<Vec<DeviceInfo>> {
    let mut found = Vec::new();
    for provider in PROVIDERS {
        for device in (provider.list)()? {
            found.push(DeviceInfo { name: provider.device_name(&device), provider: provider.kind });
        }
    }
    Ok(found)
}
