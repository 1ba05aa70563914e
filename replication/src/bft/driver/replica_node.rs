//! [`ReplicaNode`]: one consensus replica on RDMA, turned step by step by
//! [`ReplicaNode::turn`]. No protocol logic: ring entries go to the replica (CTBcast
//! entries by stream, point-to-point frames as direct messages), its CTBcast sends become
//! ring WRITEs, its register actions operations of the replicated registers on the memory
//! nodes, its shares and catch-up point-to-point WRITEs, and its replies wait in an outbox
//! for the client transport.
//!
//! A turn never blocks and never sleeps; a thread with nothing to do (the turn returned
//! `false`) may yield or nap before the next one.

use std::collections::VecDeque;

use ed25519_dalek::SigningKey;
use usec_qp_pool::{Cluster, NodeConfig, NodeId, Poller};

use super::super::consensus::{self, Action, ClientId, ClientKeyring, ConsensusConfig, Event, Replica};
use super::super::ctbcast::{self, Keyring};
use super::super::node::channels::{broadcaster_of, stream_of};
use super::super::node::registers::{Outcome, RegisterBridge};
use super::super::node::{CtbNode, CtbNodeConfig, P2pConfig, P2P_STREAM};
use super::super::register::{port, RegisterConfig, RegisterPort, RegisterSet};
use super::super::transport::{RingMemory, RingPort, SendError, StreamId};
use crate::error::{Error, Result};
use crate::state_machine::StateMachine;

/// Control-plane events are looked at every this many turns.
const CONTROL_EVERY: u64 = 256;
/// Entries waiting for room in a ring at most; beyond, the oldest are dropped (the
/// protocol retransmits what matters: shares on its timers, requests from clients).
const UNSENT_MAX: usize = 4096;

/// A consensus group over memory nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaNodeConfig {
    /// The consensus settings (its `replicas` are the CTBcast participants).
    pub consensus: ConsensusConfig,
    /// The memory nodes holding the registers (2f_m + 1 of them).
    pub memory_nodes: Vec<NodeId>,
    /// The point-to-point rings (shares, fetches, catch-up): their frames must hold a
    /// catch-up message, the largest direct message.
    pub p2p: P2pConfig,
    /// Register operations posted at once at most.
    pub register_in_flight: usize,
}

impl ReplicaNodeConfig {
    /// The rings and registers this group needs, as CTBcast participants.
    pub fn ctb_node(&self) -> CtbNodeConfig {
        let mut config = CtbNodeConfig::new(
            self.consensus.replicas.clone(),
            self.memory_nodes.clone(),
            self.consensus.ctbcast.clone(),
        );
        config.p2p = Some(self.p2p);
        config.register_in_flight = self.register_in_flight;
        config
    }
}

/// What the node counted besides the replica's statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaNodeStats {
    /// Ring entries dropped: the peer was down, or too many waited for room.
    pub entries_dropped: u64,
    /// Ring entries that waited a turn for room.
    pub entries_deferred: u64,
    /// Direct messages too large for a point-to-point frame (dropped).
    pub direct_too_large: u64,
}

/// One replica; see the [module documentation](self).
#[derive(Debug)]
pub struct ReplicaNode<S> {
    me: NodeId,
    cluster: Cluster,
    rings: RingPort,
    registers: RegisterPort,
    register_poller: Poller,
    set: RegisterSet,
    bridge: RegisterBridge,
    replica: Replica<S>,
    unsent: VecDeque<(NodeId, StreamId, Vec<u8>)>,
    to_clients: VecDeque<(ClientId, Vec<u8>)>,
    events: VecDeque<Event>,
    turns: u64,
    stats: ReplicaNodeStats,
}

impl<S: StateMachine> ReplicaNode<S> {
    /// Adds the register role, the ring role, the rings' region and grants to a replica's
    /// configuration (memory nodes configure as for [`CtbNode`]).
    pub fn configure(node: NodeConfig, config: &ReplicaNodeConfig) -> Result<(NodeConfig, RingMemory)> {
        CtbNode::configure(node, &config.ctb_node())
    }

    /// The replica of a cluster bootstrapped with [`ReplicaNode::configure`], signing with
    /// `key` (`keys`: every replica's public key; `clients`: every client's), running `app`.
    pub fn new(
        mut cluster: Cluster,
        config: &ReplicaNodeConfig,
        key: SigningKey,
        keys: Keyring,
        clients: ClientKeyring,
        memory: RingMemory,
        app: S,
    ) -> Result<ReplicaNode<S>> {
        let me = cluster.me();
        let ctb = config.ctb_node();
        let bridge = RegisterBridge::new(&ctb.participants, ctb.ctb.tail as usize);
        let writer = bridge.writer(me).ok_or_else(|| Error::Config(format!("{me} is no replica")))?;
        let plan = ctb.plan()?;
        let rings = RingPort::new(&mut cluster, &plan, memory)?;
        let role = cluster.role(port::ROLE).map_err(Error::pool("the register role"))?;
        let register_poller = cluster.take_poller(&[role]).map_err(Error::pool("the register role's CQ"))?;
        let layout = ctb.layout();
        let registers = RegisterPort::new(&cluster, layout, writer, &ctb.memory_nodes)?;
        let set = RegisterSet::new(RegisterConfig::new(layout, ctb.memory_nodes.len(), writer))?;
        let replica = Replica::new(config.consensus.clone(), me, key, keys, clients, app)?;
        Ok(ReplicaNode {
            me,
            cluster,
            rings,
            registers,
            register_poller,
            set,
            bridge,
            replica,
            unsent: VecDeque::new(),
            to_clients: VecDeque::new(),
            events: VecDeque::new(),
            turns: 0,
            stats: ReplicaNodeStats::default(),
        })
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// A frame a client sent (an encoded request; the replica checks its signature).
    pub fn handle_client(&mut self, now_ns: u64, client: ClientId, bytes: &[u8]) {
        // Refusals are counted in the replica's statistics.
        let _ = self.replica.handle_direct(now_ns, Err(client), bytes);
        self.carry_actions();
    }

    /// The next message for a client (an encoded, signed reply).
    pub fn poll_to_client(&mut self) -> Option<(ClientId, Vec<u8>)> {
        self.to_clients.pop_front()
    }

    /// The replica's next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// One step at `now_ns`: completions, rings read, the replica ticked when due, its
    /// work carried out, registers turned. Whether anything happened.
    pub fn turn(&mut self, now_ns: u64) -> bool {
        self.turns += 1;
        let mut busy = self.rings.complete();
        busy |= self.retry_unsent();
        busy |= self.read_rings(now_ns);
        if self.replica.poll_timeout().is_some_and(|due| due <= now_ns) || self.replica.has_deferred_work() {
            self.replica.tick(now_ns);
        }
        busy |= self.carry_actions();
        busy |= self.turn_registers(now_ns);
        if self.turns % CONTROL_EVERY == 0 {
            while let Some(event) = self.cluster.poll_control_at(now_ns) {
                self.rings.handle_control(&event);
                self.registers.handle_control(&event);
            }
            self.rings.maintain(&mut self.cluster, now_ns);
        }
        while let Some(event) = self.replica.poll_event() {
            busy = true;
            self.events.push_back(event);
        }
        busy
    }

    /// When the next turn has timed work, if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.replica
            .poll_timeout()
            .into_iter()
            .chain(self.set.poll_timeout())
            .chain(self.bridge.poll_timeout())
            .min()
    }

    fn read_rings(&mut self, now_ns: u64) -> bool {
        let ReplicaNode { rings, replica, .. } = self;
        let taken = rings.poll(|from, stream, bytes| {
            // Refusals are counted in the replica's statistics.
            let _ = match broadcaster_of(stream) {
                None => replica.handle_direct(now_ns, Ok(from), bytes),
                Some(_) => replica.handle_ctbcast(now_ns, from, bytes),
            };
        });
        taken > 0
    }

    fn carry_actions(&mut self) -> bool {
        let mut any = false;
        while let Some(action) = self.replica.poll_action() {
            any = true;
            match action {
                Action::Ctbcast { stream, action } => self.carry_ctbcast(stream, action),
                Action::ToReplica { to, bytes } => self.send(to, P2P_STREAM, bytes),
                Action::ToClient { client, bytes } => self.to_clients.push_back((client, bytes)),
            }
        }
        any
    }

    fn carry_ctbcast(&mut self, stream: NodeId, action: ctbcast::Action) {
        match action {
            ctbcast::Action::Send { to, bytes } => {
                let Some(ring) = stream_of(&bytes) else { unreachable!("the roles encode entries") };
                self.send(to, ring, bytes);
            }
            ctbcast::Action::RegisterWrite { index, incarnation, value, .. } => {
                let me = self.me;
                self.bridge
                    .write(&mut self.set, me, stream, index, incarnation, value)
                    .expect("every index CTBcast accepts maps to a register");
            }
            ctbcast::Action::RegisterRead { index, owner, .. } => {
                self.bridge
                    .read(&mut self.set, owner, stream, index)
                    .expect("every index CTBcast accepts maps to a register");
            }
        }
    }

    fn send(&mut self, to: NodeId, ring: StreamId, bytes: Vec<u8>) {
        match self.rings.send(&mut self.cluster, to, ring, &bytes) {
            Ok(_) => {}
            // A full credit ring is waited out like a busy one.
            Err(SendError::Busy | SendError::Full) => {
                self.stats.entries_deferred += 1;
                if self.unsent.len() >= UNSENT_MAX {
                    self.unsent.pop_front();
                    self.stats.entries_dropped += 1;
                }
                self.unsent.push_back((to, ring, bytes));
            }
            Err(SendError::TooLarge { .. }) if ring == P2P_STREAM => self.stats.direct_too_large += 1,
            Err(_) => self.stats.entries_dropped += 1,
        }
    }

    fn retry_unsent(&mut self) -> bool {
        let waiting = self.unsent.len();
        for _ in 0..waiting {
            let (to, ring, bytes) = self.unsent.pop_front().expect("counted");
            self.send(to, ring, bytes);
        }
        waiting > 0
    }

    fn turn_registers(&mut self, now_ns: u64) -> bool {
        self.bridge.tick(&mut self.set, now_ns).expect("retried writes were valid once");
        let mut any =
            self.registers.turn(&mut self.cluster, &mut self.register_poller, &mut self.set, now_ns);
        while let Some(event) = self.set.poll_event() {
            any = true;
            let Some(outcome) = self.bridge.handle_event(event, now_ns) else { continue };
            match outcome {
                Outcome::Written { broadcaster, index } => {
                    self.replica.handle_register_written(now_ns, broadcaster, index);
                }
                Outcome::Read { broadcaster, index, owner, result } => {
                    let result = Outcome::as_read_result(&result);
                    self.replica.handle_register_read(now_ns, broadcaster, index, owner, result);
                }
            }
        }
        if any {
            // Reads that follow a completed write go out in this turn.
            self.carry_actions();
            self.registers.carry_out(&mut self.cluster, &mut self.set);
        }
        any
    }

    /// The consensus core (its view, statistics, state machine).
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// Test support: rewrites what this replica CTBcasts (a Byzantine replica); see
    /// [`Replica::tamper_broadcasts_for_testing`].
    pub fn tamper_broadcasts_for_testing(&mut self, tamper: consensus::TamperFn, believe: bool) {
        self.replica.tamper_broadcasts_for_testing(tamper, believe);
    }

    /// What the node counted.
    pub fn stats(&self) -> ReplicaNodeStats {
        self.stats
    }

    /// Whether memory node `index`'s QP is usable.
    pub fn memory_node_up(&self, index: usize) -> bool {
        self.registers.is_up(index)
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}
