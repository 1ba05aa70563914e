//! [`PaxosPort`]: the roles' [`Action`]s carried out on a qp-pool [`Cluster`] — on any
//! provider, the simulator included.
//!
//! Every node has a `paxos` role (QPs that let peers READ, WRITE and CAS) and a scratch
//! region (CAS results, staged WRITEs, READ buffers: one area per acceptor and kind, which
//! is enough because a role keeps at most one proposer chain and one learner READ in
//! flight per acceptor); acceptors also register the acceptor region of the
//! [layout](crate::layout). An action on a remote acceptor is a work request whose
//! `wr_id` is a qp-pool [`WrId`] (the class's registered kind, the acceptor's node, the
//! token's sequence); an action on this node's own acceptor runs on local memory, with
//! CPU atomics, where the device's atomics are atomic with respect to the CPU
//! (`atomics_global`: soft and sim are; a ConnectX is when it reports `IBV_ATOMIC_GLOB`).
//! Elsewhere (rxe, `IBV_ATOMIC_HCA`) it goes through the device, on a QP of this node's
//! connected to itself ([`crate::loopback`]), whose completions come like a peer's.
//!
//! Completions go back to the role in the order each acceptor's QP completed them. A QP
//! that fails is repaired: once everything posted on it has come back (flushed), the port
//! asks the peer to reconnect it, again and again with a pause between tries, until it
//! works or the peer is gone; posts meanwhile fail at once. When a reconnect resets a QP
//! under requests still outstanding (the peer asked for it), they come back failed.
//!
//! # A restarted acceptor
//!
//! An acceptor's memory is its promises, and a new process of an acceptor's node starts
//! with blank memory: taking its empty slots for its old process's could decide an
//! instance twice (the old process promised, or accepted, what the blank one denies). So
//! a new process of an acceptor is not used — every operation on it fails at once — until
//! this node has [admitted](PaxosPort::admit) it, which the caller does when it learns a
//! view that names that process (a new process of this node likewise does not use its own
//! acceptor until it learns a view that names itself: [`PaxosPort::suspend_local`]).
//! From then on the new process's memory is a sound acceptor for every instance *above*
//! that view, and those are the only instances this node's roles still work on:
//!
//! - a role works on an instance only above the latest view it learned (a proposer starts
//!   instance `i` once it knows view `i - 1`, and drops a round at or below a view it
//!   learns; a learner advances past every view it learns);
//! - the first view naming the new process was decided before anyone used its memory
//!   (nobody admits a process before learning a view that names it), so the views that
//!   name it are decided above nothing of its memory's;
//! - the old process's memory served only instances at or below that first view: a node
//!   still connected to the old process uses it only while it has not learned that view
//!   (so for instances at or below it), and once it has, admitting wants the QP to reach
//!   the very process the view names — the old one, even alive (paused, cut off), is used
//!   for nothing higher;
//! - so for every instance above the view, the new memory has seen every operation ever
//!   made on acceptor `node` for it: blank is the truth there.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use usec_qp_pool::{Cluster, ControlEvent, NodeConfig, NodeId, Poller, RoleId, RoleSpec, WrId};
use usec_regions::RemoteRegion;
use usec_verbs::{AccessFlags, Completion, QpCaps, Region, RemoteAddr, SendWr};

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::loopback::Loopback;
use crate::op::{Action, OpClass, Outcome, Role, Token};

/// Name of the role whose QPs carry the Paxos operations.
pub const ROLE: &str = "paxos";
/// Name of an acceptor's region.
pub const ACCEPTOR_REGION: &str = "paxos-acceptor";
/// Name of the scratch region (local only).
pub const SCRATCH_REGION: &str = "paxos-scratch";
/// Pause between two tries to reconnect a failed QP.
pub const RECONNECT_RETRY_NS: u64 = 200_000;

/// An acceptor, as this node reaches it.
#[derive(Clone, Copy, Debug)]
enum Target {
    Local,
    Remote { node: NodeId, region: RemoteRegion },
}

/// What became of an action that did not go through a CQ.
#[derive(Clone, Debug)]
enum Finished {
    Swapped(u64),
    Written,
    Read(Vec<u8>),
    Failed,
}

/// Where a remote acceptor's QP stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Up,
    /// Failed: repaired once nothing is outstanding, not before `retry_at_ns`.
    Broken {
        retry_at_ns: u64,
    },
    /// The peer is gone for good.
    Gone,
    /// A new process of the acceptor's node, of this incarnation: not used until a view
    /// names it (see the [module documentation](self)).
    Awaiting {
        incarnation: u64,
    },
}

/// Offsets of one acceptor's areas in the scratch region.
#[derive(Clone, Copy, Debug)]
struct Areas {
    cas: usize,
    staging: usize,
    proposer_read: usize,
    learner_read: usize,
}

/// The Paxos operations of one node on its cluster; see the [module documentation](self).
#[derive(Debug)]
pub struct PaxosPort {
    role: RoleId,
    targets: Vec<Target>,
    scratch: Arc<Region>,
    areas: Vec<Areas>,
    local: Option<Arc<Region>>,
    /// On a device whose atomics are not atomic against the CPU: this node's QP to itself,
    /// and its own acceptor's region as that QP targets it.
    loopback: Option<(Loopback, RemoteRegion)>,
    /// This node's own acceptor may be used (false for a new process until a view names it).
    local_admitted: bool,
    layout: Layout,
    finished: VecDeque<(Token, Finished)>,
    outstanding: Vec<VecDeque<Token>>,
    health: Vec<Health>,
    read_buffer: Vec<u8>,
}

fn areas_for(layout: &Layout, acceptor: usize) -> (Areas, usize) {
    let round = |bytes: usize| bytes.next_multiple_of(64);
    let reads = round(2 * layout.bank_bytes());
    let learner = round(reads.max(layout.ring_bytes()));
    let stride = 64 + round(layout.bank_bytes()) + reads + learner;
    let base = acceptor * stride;
    let areas = Areas {
        cas: base,
        staging: base + 64,
        proposer_read: base + 64 + round(layout.bank_bytes()),
        learner_read: base + 64 + round(layout.bank_bytes()) + reads,
    };
    (areas, stride)
}

impl PaxosPort {
    /// Adds the Paxos role and regions to a node's configuration, for up to `acceptors`
    /// acceptors; `is_acceptor` says whether this node is one. Every node of the group
    /// adds them with the same layout.
    pub fn configure(
        node: NodeConfig,
        layout: &Layout,
        acceptors: usize,
        is_acceptor: bool,
    ) -> Result<NodeConfig> {
        layout.check()?;
        let (_, stride) = areas_for(layout, 0);
        let scratch =
            Arc::new(Region::new(stride * acceptors.max(1)).map_err(Error::region("the Paxos scratch"))?);
        let access = AccessFlags::REMOTE_READ | AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_ATOMIC;
        let caps = QpCaps { max_send_wr: 64, ..QpCaps::default() };
        let mut node = node.role(RoleSpec::new(ROLE, access).with_caps(caps)).region(
            SCRATCH_REGION,
            &scratch,
            AccessFlags::LOCAL_WRITE,
        );
        if is_acceptor {
            let memory =
                Arc::new(Region::new(layout.acceptor_bytes()).map_err(Error::region("the acceptor region"))?);
            node = node.region(ACCEPTOR_REGION, &memory, AccessFlags::all_remote());
        }
        Ok(node)
    }

    /// The port of a bootstrapped cluster, over `acceptors` (their order gives their
    /// indexes; this node may be one of them).
    pub fn new(cluster: &Cluster, layout: Layout, acceptors: &[NodeId]) -> Result<PaxosPort> {
        let role = cluster.role(ROLE).map_err(Error::pool("the Paxos role"))?;
        let scratch =
            cluster.region(SCRATCH_REGION).map_err(Error::pool("the Paxos scratch"))?.region().clone();
        let mut targets = Vec::with_capacity(acceptors.len());
        let mut local = None;
        let mut loopback = None;
        for &node in acceptors {
            if node == cluster.me() {
                let region = cluster.region(ACCEPTOR_REGION).map_err(Error::pool("the local acceptor"))?;
                if !cluster.context().attributes().atomics_global {
                    loopback = Some((Loopback::new(cluster)?, region.remote_region()));
                }
                local = Some(region.region().clone());
                targets.push(Target::Local);
            } else {
                targets.push(Target::Remote { node, region: remote_acceptor(cluster, node, &layout)? });
            }
        }
        let areas: Vec<Areas> = (0..acceptors.len()).map(|acceptor| areas_for(&layout, acceptor).0).collect();
        if areas.last().is_some_and(|last| last.learner_read + 2 * layout.bank_bytes() > scratch.len()) {
            return Err(Error::Config(format!(
                "{} acceptors: more than the scratch region was made for",
                acceptors.len()
            )));
        }
        Ok(PaxosPort {
            role,
            targets,
            scratch,
            areas,
            local,
            loopback,
            local_admitted: true,
            layout,
            finished: VecDeque::new(),
            outstanding: vec![VecDeque::new(); acceptors.len()],
            health: vec![Health::Up; acceptors.len()],
            read_buffer: Vec::new(),
        })
    }

    /// The Paxos role (to take its CQ into a poller).
    pub fn role(&self) -> RoleId {
        self.role
    }

    /// This node's acceptor memory, if it is an acceptor.
    pub fn local_acceptor(&self) -> Option<&Arc<Region>> {
        self.local.as_ref()
    }

    /// Carries out every action `role` has.
    pub fn post_all(&mut self, cluster: &mut Cluster, role: &mut impl Role) {
        while let Some(action) = role.poll_action() {
            self.post(cluster, action);
        }
    }

    /// Carries out one action: posts it, runs it locally, or fails it at once.
    pub fn post(&mut self, cluster: &mut Cluster, action: Action) {
        let token = action.token();
        let acceptor = usize::from(token.acceptor);
        match self.targets[acceptor] {
            Target::Local if self.local_admitted && self.loopback.is_some() => {
                let (_, region) = self.loopback.as_ref().expect("just checked");
                match self.post_remote(cluster, acceptor, cluster.me(), *region, &action) {
                    Ok(()) => self.outstanding[acceptor].push_back(token),
                    // The QP failed (it flushes what follows): nothing to repair it with.
                    Err(_) => self.finished.push_back((token, Finished::Failed)),
                }
            }
            Target::Local => {
                let finished = if self.local_admitted { self.run_locally(&action) } else { Finished::Failed };
                self.finished.push_back((token, finished));
            }
            Target::Remote { node, region } => {
                if self.health[acceptor] != Health::Up {
                    self.finished.push_back((token, Finished::Failed));
                    return;
                }
                match self.post_remote(cluster, acceptor, node, region, &action) {
                    Ok(()) => self.outstanding[acceptor].push_back(token),
                    Err(_) => {
                        self.health[acceptor] = Health::Broken { retry_at_ns: 0 };
                        self.finished.push_back((token, Finished::Failed));
                    }
                }
            }
        }
    }

    fn run_locally(&mut self, action: &Action) -> Finished {
        let memory = self.local.as_ref().expect("a local acceptor");
        match action {
            Action::Cas { offset, compare, swap, .. } => {
                let word = memory.atomic_u64(*offset).expect("slots are aligned and in the region");
                match word.compare_exchange(*compare, *swap, Ordering::SeqCst, Ordering::SeqCst) {
                    Ok(old) | Err(old) => Finished::Swapped(old),
                }
            }
            Action::Write { offset, bytes, .. } => {
                memory.write(*offset, bytes).expect("banks are in the region");
                Finished::Written
            }
            Action::Read { offset, len, .. } => {
                let mut bytes = vec![0; *len];
                memory.read(*offset, &mut bytes).expect("reads are in the region");
                Finished::Read(bytes)
            }
        }
    }

    fn post_remote(
        &mut self,
        cluster: &mut Cluster,
        acceptor: usize,
        node: NodeId,
        region: RemoteRegion,
        action: &Action,
    ) -> Result<()> {
        let token = action.token();
        let wr_id = WrId::wrapping(token.class.kind(), node, token.sequence).to_raw();
        let areas = self.areas[acceptor];
        let mr = cluster.region(SCRATCH_REGION).map_err(Error::pool("the Paxos scratch"))?;
        let remote = |offset: usize, len: usize| {
            RemoteAddr::within(&region, offset as u64, len as u64).map_err(|error| {
                Error::Config(format!("an operation outside acceptor {node}'s region: {error}"))
            })
        };
        let local = |offset: usize, len: usize| {
            mr.sge(offset, len as u32).map_err(|error| Error::Config(format!("the Paxos scratch: {error}")))
        };
        let role = self.role;
        let loopback = match node == cluster.me() {
            true => self.loopback.as_mut().map(|(loopback, _)| loopback),
            false => None,
        };
        let post = |cluster: &mut Cluster, wr: SendWr<'_>| match loopback {
            Some(loopback) => loopback.post(wr),
            None => cluster.post_send(node, role, &[wr]).map_err(Error::pool("posting a Paxos operation")),
        };
        match action {
            Action::Cas { offset, compare, swap, .. } => {
                let result = local(areas.cas, 8)?;
                let wr = SendWr::compare_swap(wr_id, remote(*offset, 8)?, *compare, *swap, &result);
                post(cluster, wr)
            }
            Action::Write { offset, bytes, .. } => {
                self.scratch.write(areas.staging, bytes).map_err(Error::region("staging a value"))?;
                let source = local(areas.staging, bytes.len())?;
                post(cluster, SendWr::write(wr_id, remote(*offset, bytes.len())?, &source))
            }
            Action::Read { offset, len, .. } => {
                let into = if token.class == OpClass::LearnerRead {
                    areas.learner_read
                } else {
                    areas.proposer_read
                };
                let into = local(into, *len)?;
                post(cluster, SendWr::read(wr_id, remote(*offset, *len)?, &into))
            }
        }
    }

    /// Hands `role` every completion there is: of local actions, failed posts, and the
    /// poller's (which polls the Paxos role's CQ). Whether there were any.
    pub fn deliver(&mut self, poller: &mut Poller, now_ns: u64, role: &mut impl Role) -> bool {
        let mut any = false;
        while let Some((token, finished)) = self.finished.pop_front() {
            any = true;
            let outcome = match &finished {
                Finished::Swapped(old) => Outcome::Swapped { old: *old },
                Finished::Written => Outcome::Written,
                Finished::Read(bytes) => Outcome::Read(bytes),
                Finished::Failed => Outcome::Failed,
            };
            role.handle_completion(now_ns, token, outcome);
        }
        for polled in poller.poll() {
            any = true;
            let Some(acceptor) = self.acceptor_of(polled.wr_id.peer()) else { continue };
            self.complete(acceptor, polled.wr_id, &polled.completion, now_ns, role);
        }
        if let Some(acceptor) = self.targets.iter().position(|target| matches!(target, Target::Local)) {
            let mut batch = [Completion::default(); 16];
            while let Some((loopback, _)) = self.loopback.as_mut() {
                let polled = loopback.poll(&mut batch);
                if polled == 0 {
                    break;
                }
                any = true;
                for completion in &batch[..polled] {
                    self.complete(acceptor, WrId::from_raw(completion.wr_id), completion, now_ns, role);
                }
            }
        }
        any
    }

    /// Hands `role` the completion of the oldest operation outstanding on `acceptor`.
    fn complete(
        &mut self,
        acceptor: usize,
        wr_id: WrId,
        completion: &Completion,
        now_ns: u64,
        role: &mut impl Role,
    ) {
        let Some(token) = self.outstanding[acceptor].pop_front() else { return };
        assert_eq!(
            WrId::wrapping(token.class.kind(), wr_id.peer(), token.sequence),
            wr_id,
            "completions of one QP come in the order posted"
        );
        if !completion.status.is_success() {
            if self.health[acceptor] == Health::Up && matches!(self.targets[acceptor], Target::Remote { .. })
            {
                self.health[acceptor] = Health::Broken { retry_at_ns: now_ns };
            }
            role.handle_completion(now_ns, token, Outcome::Failed);
            return;
        }
        let areas = self.areas[acceptor];
        match token.class {
            OpClass::Cas => {
                let old = self.scratch.read_pod::<u64>(areas.cas).expect("in the scratch");
                role.handle_completion(now_ns, token, Outcome::Swapped { old });
            }
            OpClass::Write => role.handle_completion(now_ns, token, Outcome::Written),
            OpClass::ProposerRead | OpClass::LearnerRead => {
                let from = if token.class == OpClass::LearnerRead {
                    areas.learner_read
                } else {
                    areas.proposer_read
                };
                let len = completion.byte_len as usize;
                self.read_buffer.resize(len, 0);
                self.scratch.read(from, &mut self.read_buffer).expect("in the scratch");
                role.handle_completion(now_ns, token, Outcome::Read(&self.read_buffer));
            }
        }
    }

    fn acceptor_of(&self, node: NodeId) -> Option<usize> {
        self.targets
            .iter()
            .position(|target| matches!(target, Target::Remote { node: remote, .. } if *remote == node))
    }

    /// Takes a control event of the cluster (the driver polls them, for every layer):
    /// reconnected QPs are up again, requests they dropped fail, a lost acceptor stays
    /// down, and a restarted one waits to be [admitted](PaxosPort::admit).
    pub fn handle_control(&mut self, event: &ControlEvent) {
        let (peer, health) = match event {
            ControlEvent::Reconnected { peer, roles, .. } if roles.contains(&self.role) => {
                (*peer, Health::Up)
            }
            ControlEvent::Rejoined { peer, incarnation } => {
                (*peer, Health::Awaiting { incarnation: *incarnation })
            }
            ControlEvent::PeerLost { peer, .. } => (*peer, Health::Gone),
            _ => return,
        };
        let Some(acceptor) = self.acceptor_of(peer) else { return };
        // Whatever was outstanding was dropped with the old QP: it fails, in order.
        for token in std::mem::take(&mut self.outstanding[acceptor]) {
            self.finished.push_back((token, Finished::Failed));
        }
        // A reconnect does not bring back a process that is waiting to be admitted.
        if health != Health::Up || !matches!(self.health[acceptor], Health::Awaiting { .. }) {
            self.health[acceptor] = health;
        }
    }

    /// This process is a new one of its node (its acceptor memory is blank): its own
    /// acceptor is not used until a view names it ([`PaxosPort::admit`]).
    pub fn suspend_local(&mut self) {
        self.local_admitted = false;
    }

    /// A view this node learned names process `incarnation` of `node`: if that is a new
    /// process of an acceptor waiting to be admitted — or this very process, suspended —
    /// and the cluster's QPs reach that process, its acceptor is used from now on, for the
    /// instances above that view (why that is safe: the [module documentation](self)).
    /// True if it was admitted now.
    pub fn admit(&mut self, cluster: &Cluster, node: NodeId, incarnation: u64) -> bool {
        if node == cluster.me() {
            let admitted = !self.local_admitted && incarnation == cluster.incarnation();
            self.local_admitted |= admitted;
            return admitted;
        }
        let Some(acceptor) = self.acceptor_of(node) else { return false };
        if self.health[acceptor] != (Health::Awaiting { incarnation })
            || cluster.peer_incarnation(node) != Some(incarnation)
        {
            return false;
        }
        // The new process registered new memory: its descriptor came with the rejoin.
        self.health[acceptor] = match remote_acceptor(cluster, node, &self.layout) {
            Ok(region) => {
                self.targets[acceptor] = Target::Remote { node, region };
                Health::Up
            }
            Err(_) => Health::Gone,
        };
        self.health[acceptor] == Health::Up
    }

    /// Whether this node's own acceptor is used (it is one, and not a new process waiting
    /// for a view that names it).
    pub fn local_admitted(&self) -> bool {
        self.local.is_some() && self.local_admitted
    }

    /// Starts repairing failed QPs whose requests have all come back.
    pub fn maintain(&mut self, cluster: &mut Cluster, now_ns: u64) {
        for acceptor in 0..self.targets.len() {
            let Target::Remote { node, .. } = self.targets[acceptor] else { continue };
            let Health::Broken { retry_at_ns } = self.health[acceptor] else { continue };
            if now_ns < retry_at_ns
                || !self.outstanding[acceptor].is_empty()
                || cluster.reconnect_pending(node)
            {
                continue;
            }
            self.health[acceptor] = match cluster.start_reconnect(node, &[self.role]) {
                Err(usec_qp_pool::Error::PeerGone { .. }) => Health::Gone,
                // Under way (ours or the peer's); the reconnected event brings it up.
                _ => Health::Broken { retry_at_ns: now_ns + RECONNECT_RETRY_NS },
            };
        }
    }

    /// Its state in a line, for traces: per acceptor, the QP's health and what is
    /// outstanding on it.
    pub fn describe(&self) -> String {
        let acceptors: Vec<String> = (0..self.targets.len())
            .map(|acceptor| {
                format!("{acceptor}: {:?} {:?}", self.health[acceptor], self.outstanding[acceptor])
            })
            .collect();
        format!("{} completions to hand back; {}", self.finished.len(), acceptors.join("; "))
    }

    /// Whether acceptor `index` is usable now.
    pub fn is_up(&self, acceptor: usize) -> bool {
        match self.targets[acceptor] {
            Target::Local => self.local_admitted,
            Target::Remote { .. } => self.health[acceptor] == Health::Up,
        }
    }
}

fn remote_acceptor(cluster: &Cluster, node: NodeId, layout: &Layout) -> Result<RemoteRegion> {
    let region = cluster.remote_region(node, ACCEPTOR_REGION).map_err(Error::pool("an acceptor's region"))?;
    if (region.len() as usize) < layout.acceptor_bytes() {
        return Err(Error::Config(format!("node {node}'s acceptor region is smaller than this layout's")));
    }
    Ok(region)
}
