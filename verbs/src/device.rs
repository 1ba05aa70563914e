//! Devices: listing them, opening one by name, and what an opened one ([`Context`]) can do.
//!
//! A device name picks the provider, as libibverbs picks a driver:
//! `soft:<fabric>` is the shared-memory provider, `sim:<name>` the simulator, and any
//! other name (`mlx5_0`, `rxe0`, `siw0`) goes to the ibverbs provider.

use std::fmt;
use std::sync::Arc;

use crate::completion_queue::CompletionQueue;
use crate::error::{Error, Result};
use crate::event::AsyncEvent;
use crate::protection_domain::ProtectionDomain;
use crate::provider::DeviceOps;
use crate::qp::Mtu;

/// Which provider serves a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// libibverbs: real NICs, SoftRoCE, siw.
    Ibverbs,
    /// Userspace RDMA over shared memory between processes of one host.
    Soft,
    /// Deterministic in-process simulation.
    Sim,
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProviderKind::Ibverbs => "ibverbs",
            ProviderKind::Soft => "soft",
            ProviderKind::Sim => "sim",
        })
    }
}

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
    pub(crate) inner: Arc<dyn DeviceOps>,
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context").field("name", &self.name()).field("provider", &self.provider()).finish()
    }
}

impl Context {
    /// Opens a device by name: `soft:<fabric>`, `sim:<name>`, or an ibverbs device name.
    pub fn open(name: &str) -> Result<Context> {
        let inner: Arc<dyn DeviceOps> = match parse_name(name)? {
            DeviceName::Soft(fabric) => crate::soft::open(fabric)?,
            DeviceName::Sim(fabric) => crate::sim::open(fabric)?,
            DeviceName::Ibverbs(device) => open_ibverbs(device)?,
        };
        Ok(Context { inner })
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
    for fabric in crate::soft::fabrics()? {
        found.push(DeviceInfo { name: format!("soft:{fabric}"), provider: ProviderKind::Soft });
    }
    for fabric in crate::sim::fabrics() {
        found.push(DeviceInfo { name: format!("sim:{fabric}"), provider: ProviderKind::Sim });
    }
    for device in list_ibverbs()? {
        found.push(DeviceInfo { name: device, provider: ProviderKind::Ibverbs });
    }
    Ok(found)
}

#[cfg(feature = "ibverbs")]
fn open_ibverbs(device: &str) -> Result<Arc<dyn DeviceOps>> {
    crate::ibverbs::open(device)
}

#[cfg(not(feature = "ibverbs"))]
fn open_ibverbs(device: &str) -> Result<Arc<dyn DeviceOps>> {
    Err(Error::ProviderUnavailable {
        provider: "ibverbs",
        reason: format!(
            "{device:?} looks like an ibverbs device, but usec-verbs was built without the `ibverbs` \
             feature; use soft:<fabric> or sim:<name>"
        ),
    })
}

#[cfg(feature = "ibverbs")]
fn list_ibverbs() -> Result<Vec<String>> {
    crate::ibverbs::device_names()
}

#[cfg(not(feature = "ibverbs"))]
fn list_ibverbs() -> Result<Vec<String>> {
    Ok(Vec::new())
}

#[derive(Debug, PartialEq, Eq)]
enum DeviceName<'a> {
    Soft(&'a str),
    Sim(&'a str),
    Ibverbs(&'a str),
}

fn parse_name(name: &str) -> Result<DeviceName<'_>> {
    let (kind, rest) = match name.split_once(':') {
        Some(("soft", rest)) => (ProviderKind::Soft, rest),
        Some(("sim", rest)) => (ProviderKind::Sim, rest),
        Some((prefix, _)) => {
            return Err(Error::invalid(format!(
                "unknown provider prefix {prefix:?} in {name:?} (use soft: or sim:)"
            )))
        }
        None => (ProviderKind::Ibverbs, name),
    };
    let valid = !rest.is_empty()
        && rest.len() <= 64
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !rest.starts_with('.');
    if !valid {
        return Err(Error::invalid(format!(
            "device name {name:?}: the part after the prefix must be 1-64 characters of [A-Za-z0-9._-], not starting with '.'"
        )));
    }
    Ok(match kind {
        ProviderKind::Soft => DeviceName::Soft(rest),
        ProviderKind::Sim => DeviceName::Sim(rest),
        ProviderKind::Ibverbs => DeviceName::Ibverbs(rest),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_pick_providers() {
        assert_eq!(parse_name("soft:fab").unwrap(), DeviceName::Soft("fab"));
        assert_eq!(parse_name("sim:a.b-c_1").unwrap(), DeviceName::Sim("a.b-c_1"));
        assert_eq!(parse_name("mlx5_0").unwrap(), DeviceName::Ibverbs("mlx5_0"));
        assert_eq!(parse_name("rxe0").unwrap(), DeviceName::Ibverbs("rxe0"));
        for bad in ["soft:", "soft:../x", "soft:a/b", "sim:.hidden", "foo:bar", "", "soft:a b"] {
            assert!(parse_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
