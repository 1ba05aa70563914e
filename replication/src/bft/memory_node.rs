//! Memory nodes: passive processes that hold uBFT's registers.
//!
//! A memory node registers one region, the registers of every writer
//! ([`RegisterLayout`]), and sets up QPs through qp-pool's bootstrap like any node; after
//! that its CPU takes no part in reads and writes, which are one-sided RDMA operations of
//! the replicas. All it still does is serve qp-pool's control plane (a replica asking to
//! reconnect a QP that broke).
//!
//! Rights are the point. For each writer the memory node makes two
//! [grants](usec_qp_pool::NodeConfig::grant) in a protection domain of that writer's own:
//! its slice of the region, writable ([`OWN_GRANT`]), and the whole region, read-only
//! ([`ALL_GRANT`]). The writer's QPs live in that protection domain, so the memory node's
//! NIC refuses any WRITE of it outside its slice with a remote access error, whatever key
//! it presents — a Byzantine replica cannot touch another's registers. Peers that are no
//! writers (other memory nodes) are offered nothing.
//!
//! Registered memory: [`RegisterLayout::memory_bytes`], e.g. 172,032 bytes (168 KiB) for
//! CTBcast with 3 replicas and a tail of 128 ([`RegisterLayout::for_ctbcast`]).

use std::sync::Arc;

use usec_qp_pool::{Cluster, ControlEvent, NodeConfig, NodeId};
use usec_verbs::{AccessFlags, Region};

use crate::error::{Error, Result};

use super::register::port::{role_spec, ALL_GRANT, OWN_GRANT};
use super::register::RegisterLayout;

/// Adds the register role and region to a memory node's configuration, with the grants
/// of `writers` (their order gives their writer indexes, the same on every node); returns
/// the configuration and the region. Other roles of the cluster should be added to a
/// memory node with no rights ([`AccessFlags::empty`]): its peers use only this one.
pub fn configure(
    node: NodeConfig,
    layout: &RegisterLayout,
    writers: &[NodeId],
) -> Result<(NodeConfig, Arc<Region>)> {
    layout.check()?;
    if writers.len() != layout.writers {
        return Err(Error::Config(format!(
            "{} writers named for a layout of {}",
            writers.len(),
            layout.writers
        )));
    }
    let memory = Arc::new(Region::new(layout.memory_bytes()).map_err(Error::region("the register region"))?);
    let writable = AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ;
    let mut node = node.role(role_spec(AccessFlags::REMOTE_READ | AccessFlags::REMOTE_WRITE));
    for (index, &writer) in writers.iter().enumerate() {
        node = node
            .grant(writer, OWN_GRANT, &memory, layout.writer_offset(index), layout.writer_bytes(), writable)
            .grant(writer, ALL_GRANT, &memory, 0, layout.memory_bytes(), AccessFlags::REMOTE_READ);
    }
    Ok((node, memory))
}

/// A running memory node: its cluster and its registers.
#[derive(Debug)]
pub struct MemoryNode {
    cluster: Cluster,
    memory: Arc<Region>,
    layout: RegisterLayout,
}

impl MemoryNode {
    /// The memory node of a cluster bootstrapped with [`configure`]'s configuration.
    pub fn new(cluster: Cluster, memory: Arc<Region>, layout: RegisterLayout) -> MemoryNode {
        MemoryNode { cluster, memory, layout }
    }

    /// Its cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Its cluster, to serve or inspect.
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }

    /// The register memory (for tests and inspection: nothing in the data path reads it
    /// here).
    pub fn memory(&self) -> &Arc<Region> {
        &self.memory
    }

    /// The registers' geometry.
    pub fn layout(&self) -> &RegisterLayout {
        &self.layout
    }

    /// Bytes of memory it registered for registers: every grant covers part or all of one
    /// region of [`RegisterLayout::memory_bytes`].
    pub fn registered_bytes(&self) -> usize {
        self.layout.memory_bytes()
    }

    /// Bytes the operating system gave that region (rounded up to whole pages).
    pub fn allocated_bytes(&self) -> usize {
        self.memory.len()
    }

    /// Serves the control plane at `now_ns` (call every millisecond or so): returns what
    /// happened, e.g. a replica that reconnected or was lost.
    pub fn serve(&mut self, now_ns: u64) -> Vec<ControlEvent> {
        std::iter::from_fn(|| self.cluster.poll_control_at(now_ns)).collect()
    }
}
