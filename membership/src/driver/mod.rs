//! Drivers: the short loops that run the sans-IO roles on a qp-pool cluster.
//!
//! - [`PaxosDriver`]: any [`Role`] (a proposer, a learner, both, a view change) on one
//!   node's cluster — completions in, `tick`, actions out, the QPs kept repaired;
//! - [`MembershipNode`]: a consensus member — a [`ViewChange`](crate::ViewChange) fed by
//!   heartbeat failure detectors and the provider's peer-death signal;
//! - [`sim`]: clusters of simulated nodes with virtual time, drifting clocks and faults,
//!   for deterministic tests.

mod node;
pub mod sim;

use usec_qp_pool::{Cluster, NodeId, Poller};

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::op::Role;
use crate::port::PaxosPort;

pub use node::{Detectors, MembershipNode};

/// Control-plane work (reconnects) is looked at every this many turns.
const CONTROL_EVERY: u64 = 64;

/// One node's Paxos operations on its cluster, turned by [`PaxosDriver::turn`].
#[derive(Debug)]
pub struct PaxosDriver {
    cluster: Cluster,
    port: PaxosPort,
    poller: Poller,
    turns: u64,
}

impl PaxosDriver {
    /// The driver of a cluster bootstrapped with [`PaxosPort::configure`], over `acceptors`.
    pub fn new(mut cluster: Cluster, layout: Layout, acceptors: &[NodeId]) -> Result<PaxosDriver> {
        let port = PaxosPort::new(&cluster, layout, acceptors)?;
        let poller = cluster.take_poller(&[port.role()]).map_err(Error::pool("taking the Paxos CQ"))?;
        Ok(PaxosDriver { cluster, port, poller, turns: 0 })
    }

    /// One step of `role`: the control plane now and then, completions in, `tick`, actions
    /// out. True if a completion came.
    pub fn turn(&mut self, now_ns: u64, role: &mut impl Role) -> bool {
        self.turns += 1;
        if self.turns % CONTROL_EVERY == 0 {
            while let Some(event) = self.cluster.poll_control_at(now_ns) {
                self.port.handle_control(&event);
            }
            self.port.maintain(&mut self.cluster, now_ns);
        }
        let busy = self.port.deliver(&mut self.poller, now_ns, role);
        role.tick(now_ns);
        self.port.post_all(&mut self.cluster, role);
        busy
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The cluster and the port, for a driver that serves the control plane itself.
    pub fn parts_mut(&mut self) -> (&mut Cluster, &mut PaxosPort, &mut Poller) {
        (&mut self.cluster, &mut self.port, &mut self.poller)
    }

    /// The port.
    pub fn port(&self) -> &PaxosPort {
        &self.port
    }
}
