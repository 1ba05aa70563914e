//! The provider objects behind [`Context`](crate::Context),
//! [`ProtectionDomain`](crate::ProtectionDomain) and [`MemoryRegion`](crate::MemoryRegion),
//! and the limits a sim device reports.

use std::any::Any;
use std::sync::Arc;

use usec_regions::Region;

use crate::access::AccessFlags;
use crate::device::{DeviceAttributes, LinkLayer, PortAttributes};
use crate::error::{Error, Result};
use crate::event::AsyncEvent;
use crate::provider::{CqOps, DeviceOps, MrOps, PdOps, ProviderKind, QpOps};
use crate::qp::QpOptions;
use crate::sim::completion_queue::SimCq;
use crate::sim::fabric::Shared;
use crate::sim::memory::MemoryRegistration;
use crate::sim::node::NodeId;
use crate::sim::queue_pair::SimQp;
use crate::sim::world::World;

/// QPs per node.
pub(crate) const MAX_QP_PER_NODE: u32 = 4096;
/// CQs per node.
pub(crate) const MAX_CQ_PER_NODE: u32 = 4096;
/// Memory registrations per node.
pub(crate) const MAX_MR_PER_NODE: u32 = 1 << 16;

/// What every sim device reports.
pub(crate) fn device_attributes() -> DeviceAttributes {
    DeviceAttributes {
        max_qp: MAX_QP_PER_NODE,
        max_qp_wr: 16_384,
        max_sge: 16,
        max_cq: MAX_CQ_PER_NODE,
        max_cqe: 1 << 20,
        max_mr: MAX_MR_PER_NODE,
        max_mr_size: 1 << 40,
        max_inline_data: 1024,
        max_qp_rd_atom: 16,
        atomics_global: true,
        ports: vec![PortAttributes::emulated(LinkLayer::Simulated)],
    }
}

/// What creating an object on a crashed node returns.
pub(crate) fn crashed_error(node: NodeId) -> Error {
    Error::ProviderUnavailable { provider: ProviderKind::Sim, reason: format!("{node} has crashed") }
}

/// One node's device: the provider object behind a [`Context`](crate::Context).
#[derive(Debug)]
pub(crate) struct SimDevice {
    pub(crate) fabric: Arc<Shared>,
    pub(crate) node: NodeId,
    name: String,
}

impl SimDevice {
    pub(crate) fn new(fabric: Arc<Shared>, node: NodeId) -> SimDevice {
        let name = format!("sim:{}", fabric.name());
        SimDevice { fabric, node, name }
    }
}

impl DeviceOps for SimDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> ProviderKind {
        ProviderKind::Sim
    }

    fn attributes(&self) -> DeviceAttributes {
        device_attributes()
    }

    fn alloc_pd(&self) -> Result<Arc<dyn PdOps>> {
        let mut world = self.fabric.world();
        if world.is_crashed(self.node) {
            return Err(crashed_error(self.node));
        }
        let node = world.node_mut(self.node);
        node.next_pd += 1;
        Ok(Arc::new(SimPd { fabric: Arc::clone(&self.fabric), node: self.node, pd: node.next_pd }))
    }

    fn create_cq(&self, depth: u32) -> Result<Box<dyn CqOps>> {
        let cq = self.fabric.world().create_cq(self.node, depth)?;
        Ok(Box::new(SimCq { fabric: Arc::clone(&self.fabric), node: self.node, cq, depth }))
    }

    fn poll_event(&self) -> Option<AsyncEvent> {
        self.fabric.world().node_mut(self.node).events.pop_front()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A protection domain of a node.
#[derive(Debug)]
struct SimPd {
    fabric: Arc<Shared>,
    node: NodeId,
    pd: u32,
}

impl PdOps for SimPd {
    fn register(
        &self,
        region: &Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> Result<Box<dyn MrOps>> {
        let mut world = self.fabric.world();
        if world.is_crashed(self.node) {
            return Err(crashed_error(self.node));
        }
        let World { nodes, scheduler, .. } = &mut *world;
        let node = &mut nodes[self.node.0 as usize];
        if node.memory.len() >= MAX_MR_PER_NODE as usize {
            return Err(Error::ResourceExhausted { what: "MRs", limit: u64::from(MAX_MR_PER_NODE) });
        }
        let lkey = node.fresh_key(scheduler.rng());
        let rkey = node.fresh_key(scheduler.rng());
        let registration = MemoryRegistration {
            pd: self.pd,
            region: Arc::clone(region),
            region_offset: offset,
            addr: region.addr() + offset as u64,
            len: len as u64,
            access,
            rkey,
        };
        node.memory.insert(lkey, registration);
        Ok(Box::new(SimMr { fabric: Arc::clone(&self.fabric), node: self.node, lkey, rkey }))
    }

    fn create_qp(
        &self,
        send_cq: &dyn CqOps,
        recv_cq: &dyn CqOps,
        options: &QpOptions,
    ) -> Result<Box<dyn QpOps>> {
        let send_cq = self.own_cq(send_cq)?;
        let recv_cq = self.own_cq(recv_cq)?;
        let (qp_num, psn) =
            self.fabric.world().create_qp(self.node, self.pd, send_cq, recv_cq, options.caps)?;
        Ok(Box::new(SimQp {
            fabric: Arc::clone(&self.fabric),
            node: self.node,
            qp_num,
            caps: options.caps,
            psn,
        }))
    }
}

impl SimPd {
    /// The id of a CQ of this very node.
    fn own_cq(&self, cq: &dyn CqOps) -> Result<u32> {
        match cq.as_any().downcast_ref::<SimCq>() {
            Some(cq) if Arc::ptr_eq(&cq.fabric, &self.fabric) && cq.node == self.node => Ok(cq.cq),
            _ => Err(Error::ForeignObject("completion queue")),
        }
    }
}

/// A memory registration; dropping it deregisters.
#[derive(Debug)]
struct SimMr {
    fabric: Arc<Shared>,
    node: NodeId,
    lkey: u32,
    rkey: u32,
}

impl MrOps for SimMr {
    fn lkey(&self) -> u32 {
        self.lkey
    }

    fn rkey(&self) -> u32 {
        self.rkey
    }

    /// Takes effect for every access checked from now on (virtual time does not move), so
    /// nothing with the old rights lands after this returns.
    fn rereg_access(&mut self, access: AccessFlags) -> Result<()> {
        self.fabric.world().node_mut(self.node).memory.set_access(self.lkey, access);
        Ok(())
    }
}

impl Drop for SimMr {
    fn drop(&mut self) {
        self.fabric.world().node_mut(self.node).memory.remove(self.lkey);
    }
}
