//! [`RegisterReplica`]: a replica's register set, its port, its cluster and its poller
//! in one value, turned by a qp-pool [`Driver`] — what a benchmark, a test, or a replica
//! with nothing else to run uses to wait for its register operations. A replica that also
//! runs CTBcast and consensus turns the [`RegisterPort`] from its own loop instead.

use usec_qp_pool::{Cluster, Driver, NodeId, Poller};

use crate::error::{Error, Result};

use super::layout::RegisterLayout;
use super::port::RegisterPort;
use super::quorum::ReadResult;
use super::set::{Event, OpId, RegisterConfig, RegisterSet};

/// Control-plane polls cost a few system calls (a read per peer, an accept), more than a
/// register operation on the soft provider: one every this many turns.
const TURNS_PER_CONTROL_POLL: u32 = 1024;

/// One replica's registers with what carries them out; see the [module documentation](self).
#[derive(Debug)]
pub struct RegisterReplica {
    cluster: Cluster,
    poller: Poller,
    port: RegisterPort,
    set: RegisterSet,
    events: Vec<Event>,
    turns: u32,
}

impl RegisterReplica {
    /// Writer `writer` of `layout` on a replica bootstrapped with
    /// [`RegisterPort::configure`], over `memory_nodes`; takes the register role's CQ.
    pub fn new(
        mut cluster: Cluster,
        layout: RegisterLayout,
        writer: usize,
        memory_nodes: &[NodeId],
    ) -> Result<RegisterReplica> {
        let role = cluster.role(super::port::ROLE).map_err(Error::pool("the register role"))?;
        let poller = cluster.take_poller(&[role]).map_err(Error::pool("the register role's CQ"))?;
        RegisterReplica::with_poller(cluster, poller, layout, writer, memory_nodes)
    }

    /// The same with a poller over the register role's CQ taken already (whoever took it
    /// has nothing of its own outstanding on it any more).
    pub fn with_poller(
        cluster: Cluster,
        poller: Poller,
        layout: RegisterLayout,
        writer: usize,
        memory_nodes: &[NodeId],
    ) -> Result<RegisterReplica> {
        let port = RegisterPort::new(&cluster, layout, writer, memory_nodes)?;
        let set = RegisterSet::new(RegisterConfig::new(layout, memory_nodes.len(), writer))?;
        Ok(RegisterReplica { cluster, poller, port, set, events: Vec::new(), turns: 0 })
    }

    /// The register set (to start operations, or change nothing).
    pub fn set_mut(&mut self) -> &mut RegisterSet {
        &mut self.set
    }

    /// The port.
    pub fn port(&self) -> &RegisterPort {
        &self.port
    }

    /// The cluster.
    pub fn cluster_mut(&mut self) -> &mut Cluster {
        &mut self.cluster
    }

    /// One turn at `now_ns`; whether a completion came back.
    pub fn turn(&mut self, now_ns: u64) -> bool {
        let any = self.port.turn(&mut self.cluster, &mut self.poller, &mut self.set, now_ns);
        self.turns = self.turns.wrapping_add(1);
        if self.turns % TURNS_PER_CONTROL_POLL == 0 {
            while let Some(event) = self.cluster.poll_control_at(now_ns) {
                self.port.handle_control(&event);
            }
        }
        self.events.extend(std::iter::from_fn(|| self.set.poll_event()));
        any
    }

    /// Turns until operation `op` finishes, or `deadline_ns` on `driver`'s clock passes
    /// (then `None`).
    pub fn wait(&mut self, op: OpId, driver: &mut impl Driver, deadline_ns: u64) -> Option<Event> {
        loop {
            if let Some(index) = self.events.iter().position(|event| event.op() == op) {
                return Some(self.events.remove(index));
            }
            if driver.expired(deadline_ns) {
                return None;
            }
            let now_ns = driver.now_ns();
            if self.turn(now_ns) {
                driver.busy();
            } else {
                driver.idle(deadline_ns.min(self.set.poll_timeout().unwrap_or(deadline_ns)));
            }
        }
    }

    /// Writes and waits: `Ok(true)` once a majority holds it, `Ok(false)` if too many
    /// memory nodes failed, an error if the deadline passed.
    pub fn write(
        &mut self,
        slot: usize,
        incarnation: u64,
        value: &[u8],
        driver: &mut impl Driver,
        deadline_ns: u64,
    ) -> Result<bool> {
        let op = self.set.write(slot, incarnation, value)?;
        match self.wait(op, driver, deadline_ns) {
            Some(Event::Written { .. }) => Ok(true),
            Some(Event::WriteFailed { .. }) => Ok(false),
            Some(other) => unreachable!("a write ended as {other:?}"),
            None => Err(Error::TimedOut(format!("register write of slot {slot}"))),
        }
    }

    /// Reads and waits.
    pub fn read(
        &mut self,
        owner: usize,
        slot: usize,
        driver: &mut impl Driver,
        deadline_ns: u64,
    ) -> Result<ReadResult> {
        let op = self.set.read(owner, slot)?;
        match self.wait(op, driver, deadline_ns) {
            Some(Event::Read { result, .. }) => Ok(result),
            Some(other) => unreachable!("a read ended as {other:?}"),
            None => Err(Error::TimedOut(format!("register read of writer {owner}, slot {slot}"))),
        }
    }
}
