//! [`RegisterPort`]: a [`RegisterSet`]'s actions carried out on a qp-pool [`Cluster`], on
//! any provider (a NIC, soft, the simulator).
//!
//! Every node has the register [role](ROLE). On a replica its QPs let peers do nothing
//! (nobody reads or writes a replica through them), and a scratch region holds what is
//! staged for WRITEs and what READs bring back, one buffer per action in flight. A memory
//! node's QPs let peers read and write, and it grants each replica its own slice
//! ([`OWN_GRANT`], writable) and the whole region ([`ALL_GRANT`], read-only) — see
//! [`memory_node`](crate::bft::memory_node). A WRITE goes through the replica's own grant,
//! a READ through the read-only one; `wr_id`s are qp-pool [`WrId`]s of the registered kinds
//! `BftRegisterWrite` and `BftRegisterRead`, with the memory node as peer and the action's
//! token as sequence.
//!
//! Completions go back to the set in the order each memory node's QP completed them. A QP
//! that fails is repaired as other ports do: once everything posted on it has come back,
//! the port asks the memory node to reconnect it, again after a pause until it works or
//! the node is gone; actions for it meanwhile fail at once. A memory node that restarted
//! is not used again: its new process holds empty registers, and counting its copies
//! could let a read miss a write that a majority acknowledged (bringing a new memory node
//! in is a reconfiguration, not done here).

use std::collections::VecDeque;
use std::sync::Arc;

use usec_qp_pool::wr_kind::RegisteredKind;
use usec_qp_pool::{Cluster, ControlEvent, NodeConfig, NodeId, Poller, RoleId, RoleSpec, WrId};
use usec_regions::RemoteRegion;
use usec_verbs::{AccessFlags, QpCaps, Region, RemoteAddr, SendWr};

use crate::error::{Error, Result};

use super::layout::RegisterLayout;
use super::set::{Action, Outcome, RegisterSet, Token};

/// Name of the role whose QPs carry register operations.
pub const ROLE: &str = "bft-registers";
/// Name of the grant of a replica's own registers on a memory node (read-write).
pub const OWN_GRANT: &str = "bft-registers-own";
/// Name of the grant of every register on a memory node (read-only).
pub const ALL_GRANT: &str = "bft-registers-all";
/// Name of a replica's scratch region (local only).
pub const SCRATCH_REGION: &str = "bft-registers-scratch";
/// Pause between two tries to reconnect a failed QP.
pub const RECONNECT_RETRY_NS: u64 = 200_000;
/// Work requests in flight per QP at most (the send queue's depth).
const QP_DEPTH: u32 = 256;

/// Where a memory node's QP stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Up,
    /// Failed: repaired once nothing is outstanding, not before `retry_at_ns`.
    Broken {
        retry_at_ns: u64,
    },
    /// Crashed, or restarted with empty registers: not used again.
    Gone,
}

/// A memory node as this replica reaches it.
#[derive(Clone, Copy, Debug)]
struct Target {
    node: NodeId,
    own: RemoteRegion,
    all: RemoteRegion,
}

/// An action posted: its token, its scratch buffer, and whether it is a READ.
#[derive(Clone, Copy, Debug)]
struct Posted {
    token: Token,
    buffer: usize,
    read: bool,
}

/// A replica's register operations on its cluster; see the [module documentation](self).
#[derive(Debug)]
pub struct RegisterPort {
    role: RoleId,
    layout: RegisterLayout,
    own_base: usize,
    targets: Vec<Target>,
    scratch: Arc<Region>,
    free_buffers: Vec<usize>,
    /// Actions waiting for a scratch buffer.
    backlog: VecDeque<Action>,
    /// Actions that ended without a completion (failed at once).
    failed: VecDeque<Token>,
    outstanding: Vec<VecDeque<Posted>>,
    health: Vec<Health>,
    /// Where a read's register is copied out of the scratch (one, kept: a turn allocates
    /// nothing).
    read_back: Vec<u8>,
}

impl RegisterPort {
    /// Adds the register role and a scratch region for `in_flight` actions at once to a
    /// replica's configuration. Every node of the cluster has the role at the same place
    /// in its role list (memory nodes add it with
    /// [`memory_node::configure`](crate::bft::memory_node::configure)).
    pub fn configure(node: NodeConfig, layout: &RegisterLayout, in_flight: usize) -> Result<NodeConfig> {
        layout.check()?;
        if in_flight == 0 {
            return Err(Error::Config("a register port needs room for at least one action".into()));
        }
        let scratch = Arc::new(
            Region::new(in_flight * layout.register_bytes())
                .map_err(Error::region("the register scratch"))?,
        );
        Ok(node.role(role_spec(AccessFlags::empty())).region(
            SCRATCH_REGION,
            &scratch,
            AccessFlags::LOCAL_WRITE,
        ))
    }

    /// The port of a bootstrapped replica, writer `writer` of `layout`, over
    /// `memory_nodes` (their order gives their indexes, the same on every replica).
    pub fn new(
        cluster: &Cluster,
        layout: RegisterLayout,
        writer: usize,
        memory_nodes: &[NodeId],
    ) -> Result<RegisterPort> {
        layout.check()?;
        let role = cluster.role(ROLE).map_err(Error::pool("the register role"))?;
        let scratch =
            cluster.region(SCRATCH_REGION).map_err(Error::pool("the register scratch"))?.region().clone();
        let mut targets = Vec::with_capacity(memory_nodes.len());
        for &node in memory_nodes {
            let own = cluster.remote_region(node, OWN_GRANT).map_err(Error::pool("a memory node's grant"))?;
            let all = cluster.remote_region(node, ALL_GRANT).map_err(Error::pool("a memory node's grant"))?;
            if own.len() as usize != layout.writer_bytes() || all.len() as usize != layout.memory_bytes() {
                return Err(Error::Config(format!(
                    "memory node {node} grants {} and {} bytes; this layout needs {} and {}",
                    own.len(),
                    all.len(),
                    layout.writer_bytes(),
                    layout.memory_bytes()
                )));
            }
            targets.push(Target { node, own, all });
        }
        let buffers = scratch.len() / layout.register_bytes();
        Ok(RegisterPort {
            role,
            layout,
            own_base: layout.writer_offset(writer),
            targets,
            scratch,
            free_buffers: (0..buffers).rev().collect(),
            backlog: VecDeque::new(),
            failed: VecDeque::new(),
            outstanding: vec![VecDeque::new(); memory_nodes.len()],
            health: vec![Health::Up; memory_nodes.len()],
            read_back: vec![0; layout.register_bytes()],
        })
    }

    /// The register role (to take its CQ into a poller).
    pub fn role(&self) -> RoleId {
        self.role
    }

    /// One turn of a replica's loop for its registers at `now_ns`: time to the set, its
    /// actions posted, every completion handed back, failed QPs repaired. Whether anything
    /// came back. Events are then in [`RegisterSet::poll_event`].
    pub fn turn(
        &mut self,
        cluster: &mut Cluster,
        poller: &mut Poller,
        set: &mut RegisterSet,
        now_ns: u64,
    ) -> bool {
        set.tick(now_ns);
        self.carry_out(cluster, set);
        let any = self.deliver(poller, now_ns, set);
        self.maintain(cluster, now_ns);
        any
    }

    /// Posts every action the set has (those beyond the scratch's room wait their turn).
    pub fn carry_out(&mut self, cluster: &mut Cluster, set: &mut RegisterSet) {
        while let Some(action) = set.poll_action() {
            self.backlog.push_back(action);
        }
        while let Some(action) = self.backlog.front() {
            // The oldest action waits for room on its QP and a buffer; the others wait too,
            // so that actions still go out in the order the set made them.
            if self.outstanding[action.memory_node()].len() >= QP_DEPTH as usize {
                break;
            }
            let Some(buffer) = self.free_buffers.pop() else { break };
            let action = self.backlog.pop_front().expect("looked at");
            self.post(cluster, action, buffer);
        }
    }

    fn post(&mut self, cluster: &mut Cluster, action: Action, buffer: usize) {
        let memory_node = action.memory_node();
        let token = action.token();
        if self.health[memory_node] != Health::Up {
            self.free_buffers.push(buffer);
            self.failed.push_back(token);
            return;
        }
        let read = matches!(action, Action::Read { .. });
        match self.post_remote(cluster, &action, buffer) {
            Ok(()) => self.outstanding[memory_node].push_back(Posted { token, buffer, read }),
            Err(_) => {
                self.health[memory_node] = Health::Broken { retry_at_ns: 0 };
                self.free_buffers.push(buffer);
                self.failed.push_back(token);
            }
        }
    }

    fn post_remote(&self, cluster: &mut Cluster, action: &Action, buffer: usize) -> Result<()> {
        let target = self.targets[action.memory_node()];
        let kind = match action {
            Action::Write { .. } => RegisteredKind::BftRegisterWrite,
            Action::Read { .. } => RegisteredKind::BftRegisterRead,
        };
        let wr_id = WrId::wrapping(kind, target.node, action.token().0).to_raw();
        let at = buffer * self.layout.register_bytes();
        let mr = cluster.region(SCRATCH_REGION).map_err(Error::pool("the register scratch"))?;
        let remote = |region: &RemoteRegion, offset: usize, len: usize| {
            RemoteAddr::within(region, offset as u64, len as u64)
                .map_err(|error| Error::Config(format!("a register operation outside its grant: {error}")))
        };
        let local = |len: usize| {
            mr.sge(at, len as u32).map_err(|error| Error::Config(format!("the register scratch: {error}")))
        };
        let wr_bytes;
        let wr = match action {
            Action::Write { offset, bytes, .. } => {
                let within_own =
                    offset.checked_sub(self.own_base).expect("a writer writes its own registers");
                self.scratch.write(at, bytes).map_err(Error::region("staging a register write"))?;
                wr_bytes = local(bytes.len())?;
                SendWr::write(wr_id, remote(&target.own, within_own, bytes.len())?, &wr_bytes)
            }
            Action::Read { offset, len, .. } => {
                wr_bytes = local(*len)?;
                SendWr::read(wr_id, remote(&target.all, *offset, *len)?, &wr_bytes)
            }
        };
        cluster.post_send(target.node, self.role, &[wr]).map_err(Error::pool("posting a register operation"))
    }

    /// Hands the set every completion there is: failed posts, then the poller's (which
    /// polls the register role's CQ). Whether there were any.
    pub fn deliver(&mut self, poller: &mut Poller, now_ns: u64, set: &mut RegisterSet) -> bool {
        let mut any = false;
        while let Some(token) = self.failed.pop_front() {
            any = true;
            set.handle_completion(now_ns, token, Outcome::Failed);
        }
        for polled in poller.poll() {
            any = true;
            let Some(memory_node) = self.memory_node_of(polled.wr_id.peer()) else { continue };
            let Some(posted) = self.outstanding[memory_node].pop_front() else { continue };
            let kind =
                if posted.read { RegisteredKind::BftRegisterRead } else { RegisteredKind::BftRegisterWrite };
            assert_eq!(
                WrId::wrapping(kind, polled.wr_id.peer(), posted.token.0),
                polled.wr_id,
                "completions of one QP come in the order posted"
            );
            self.free_buffers.push(posted.buffer);
            if !polled.completion.status.is_success() {
                if self.health[memory_node] == Health::Up {
                    self.health[memory_node] = Health::Broken { retry_at_ns: now_ns };
                }
                set.handle_completion(now_ns, posted.token, Outcome::Failed);
            } else if posted.read {
                let at = posted.buffer * self.layout.register_bytes();
                self.scratch.read(at, &mut self.read_back).expect("in the scratch");
                set.handle_completion(now_ns, posted.token, Outcome::Read(&self.read_back));
            } else {
                set.handle_completion(now_ns, posted.token, Outcome::Written);
            }
        }
        any
    }

    fn memory_node_of(&self, node: NodeId) -> Option<usize> {
        self.targets.iter().position(|target| target.node == node)
    }

    /// Takes a control event of the cluster: reconnected QPs are up again (what they
    /// dropped fails), a lost or restarted memory node is gone.
    pub fn handle_control(&mut self, event: &ControlEvent) {
        let (peer, up) = match event {
            ControlEvent::Reconnected { peer, roles, .. } if roles.contains(&self.role) => (*peer, true),
            ControlEvent::Rejoined { peer, .. } | ControlEvent::PeerLost { peer, .. } => (*peer, false),
            _ => return,
        };
        let Some(memory_node) = self.memory_node_of(peer) else { return };
        for posted in std::mem::take(&mut self.outstanding[memory_node]) {
            self.free_buffers.push(posted.buffer);
            self.failed.push_back(posted.token);
        }
        self.health[memory_node] = if up { Health::Up } else { Health::Gone };
    }

    /// Starts repairing failed QPs whose requests have all come back.
    pub fn maintain(&mut self, cluster: &mut Cluster, now_ns: u64) {
        for memory_node in 0..self.targets.len() {
            let node = self.targets[memory_node].node;
            let Health::Broken { retry_at_ns } = self.health[memory_node] else { continue };
            if now_ns < retry_at_ns
                || !self.outstanding[memory_node].is_empty()
                || cluster.reconnect_pending(node)
            {
                continue;
            }
            self.health[memory_node] = match cluster.start_reconnect(node, &[self.role]) {
                Err(usec_qp_pool::Error::PeerGone { .. }) => Health::Gone,
                // Under way (ours or the peer's); the reconnected event brings it up.
                _ => Health::Broken { retry_at_ns: now_ns + RECONNECT_RETRY_NS },
            };
        }
    }

    /// Whether memory node `index`'s QP is usable now.
    pub fn is_up(&self, memory_node: usize) -> bool {
        self.health[memory_node] == Health::Up
    }
}

/// The register role with `access` for peers, and queues deep enough for a burst of
/// register operations.
pub(crate) fn role_spec(access: AccessFlags) -> RoleSpec {
    let caps = QpCaps { max_send_wr: QP_DEPTH, ..QpCaps::default() };
    RoleSpec::new(ROLE, access).with_caps(caps)
}
