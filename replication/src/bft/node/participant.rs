//! [`CtbNode`]: one participant of CTBcast on RDMA — its broadcaster, the receivers of
//! every other participant's stream, its rings and its registers, turned one step at a
//! time by [`CtbNode::turn`]. No protocol logic: entries found in rings go to the roles,
//! the roles' `Send`s become ring WRITEs, their register actions become operations of the
//! replicated registers on the memory nodes, and completions come back.
//!
//! A turn never blocks and never sleeps: a thread that has nothing to do after a turn
//! (it returned `false`) may yield or nap before the next one (a 2-core machine).

use std::collections::{BTreeMap, VecDeque};

use ed25519_dalek::SigningKey;
use usec_qp_pool::{Cluster, NodeConfig, NodeId, Poller};

use super::super::ctbcast::{Action, Broadcaster, CtbConfig, Event, Keyring, Receiver, Reject, Stats};
use super::super::register::{port, RegisterConfig, RegisterLayout, RegisterPort, RegisterSet};
use super::super::transport::{RingMemory, RingPlan, RingPort, RingStats, SendError};
use super::byzantine::{equivocal, Behaviour, GarbageMaker};
use super::channels::{self, broadcaster_of, stream_of, P2pConfig, P2P_STREAM};
use super::registers::{Outcome, RegisterBridge, RegisterTimings, TimingClock};
use crate::error::{Error, Result};

/// Control-plane events are looked at every this many turns.
const CONTROL_EVERY: u64 = 256;
/// Entries waiting for room in a ring (WRITEs of the previous lap still in flight) at most;
/// beyond, the oldest are dropped (tail semantics).
const UNSENT_MAX: usize = 4096;

/// A group of CTBcast participants and the memory nodes under them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtbNodeConfig {
    /// Every participant, each broadcasting one stream to all others (the same list, in
    /// the same order, everywhere; writer indexes of the registers follow it).
    pub participants: Vec<NodeId>,
    /// The memory nodes holding the registers (2f_m + 1 of them).
    pub memory_nodes: Vec<NodeId>,
    /// Every stream's settings; `broadcaster` and `receivers` are filled in per stream.
    pub ctb: CtbConfig,
    /// Point-to-point rings between every two participants, if any.
    pub p2p: Option<P2pConfig>,
    /// Register operations posted at once at most (the register port's scratch buffers).
    pub register_in_flight: usize,
}

impl CtbNodeConfig {
    /// `participants` over `memory_nodes` with `ctb`'s settings, no point-to-point rings.
    pub fn new(participants: Vec<NodeId>, memory_nodes: Vec<NodeId>, ctb: CtbConfig) -> CtbNodeConfig {
        CtbNodeConfig { participants, memory_nodes, ctb, p2p: None, register_in_flight: 256 }
    }

    /// The settings of `broadcaster`'s stream.
    pub fn stream(&self, broadcaster: NodeId) -> CtbConfig {
        let receivers = self.participants.iter().copied().filter(|&p| p != broadcaster).collect();
        CtbConfig { broadcaster, receivers, ..self.ctb.clone() }
    }

    /// The rings of the group.
    pub fn plan(&self) -> Result<RingPlan> {
        channels::plan(&self.participants, &self.ctb, self.p2p)
    }

    /// The registers on each memory node.
    pub fn layout(&self) -> RegisterLayout {
        RegisterLayout::for_ctbcast(self.participants.len(), self.ctb.tail as usize)
    }
}

/// What a node counted besides its roles' statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Entries dropped: their receiver's QP was down, or too many waited for room.
    pub entries_dropped: u64,
    /// Entries that waited a turn for room in their ring.
    pub entries_deferred: u64,
    /// Register writes written again after reaching no majority.
    pub register_write_retries: u64,
    /// Garbage written (a [`Behaviour::Garbage`] node).
    pub garbage_sent: u64,
}

/// One participant; see the [module documentation](self).
#[derive(Debug)]
pub struct CtbNode {
    me: NodeId,
    cluster: Cluster,
    rings: RingPort,
    registers: RegisterPort,
    register_poller: Poller,
    set: RegisterSet,
    bridge: RegisterBridge,
    broadcaster: Broadcaster,
    /// The equivocating twin of a [`Behaviour::Equivocate`] node.
    twin: Option<Broadcaster>,
    garbage: Option<GarbageMaker>,
    receivers: BTreeMap<NodeId, Receiver>,
    unsent: VecDeque<(NodeId, Vec<u8>)>,
    events: VecDeque<(NodeId, Event)>,
    p2p_inbox: VecDeque<(NodeId, Vec<u8>)>,
    turns: u64,
    stats: NodeStats,
}

impl CtbNode {
    /// Adds the register role (with its scratch), the ring role, the rings' region and
    /// grants to a participant's configuration. Memory nodes add
    /// [`memory_node::configure`](super::super::memory_node::configure) and then the ring
    /// role with no rights ([`transport::port::role_spec`](super::super::transport::port::role_spec)).
    pub fn configure(node: NodeConfig, config: &CtbNodeConfig) -> Result<(NodeConfig, RingMemory)> {
        let node = RegisterPort::configure(node, &config.layout(), config.register_in_flight)?;
        RingPort::configure(node, &config.plan()?)
    }

    /// The participant of a cluster bootstrapped with [`CtbNode::configure`], signing with
    /// `key`; `keys` holds every participant's public key.
    pub fn new(
        mut cluster: Cluster,
        config: &CtbNodeConfig,
        key: SigningKey,
        keys: Keyring,
        memory: RingMemory,
        behaviour: Behaviour,
    ) -> Result<CtbNode> {
        let me = cluster.me();
        let mut sorted = config.participants.clone();
        sorted.sort();
        if sorted != config.participants {
            return Err(Error::Config("participants must be listed in id order".into()));
        }
        let bridge = RegisterBridge::new(&config.participants, config.ctb.tail as usize);
        let writer = bridge.writer(me).ok_or_else(|| Error::Config(format!("{me} is no participant")))?;
        let rings = RingPort::new(&mut cluster, &config.plan()?, memory)?;
        let role = cluster.role(port::ROLE).map_err(Error::pool("the register role"))?;
        let register_poller = cluster.take_poller(&[role]).map_err(Error::pool("the register role's CQ"))?;
        let layout = config.layout();
        let registers = RegisterPort::new(&cluster, layout, writer, &config.memory_nodes)?;
        let set = RegisterSet::new(RegisterConfig::new(layout, config.memory_nodes.len(), writer))?;
        let broadcaster = Broadcaster::new(config.stream(me), key.clone())?;
        let twin = match behaviour {
            Behaviour::Equivocate => Some(Broadcaster::new(config.stream(me), key)?),
            _ => None,
        };
        let garbage = (behaviour == Behaviour::Garbage).then(|| GarbageMaker::new(u64::from(me.get())));
        let mut receivers = BTreeMap::new();
        for &other in config.participants.iter().filter(|&&p| p != me) {
            receivers.insert(other, Receiver::new(config.stream(other), me, keys.clone())?);
        }
        Ok(CtbNode {
            me,
            cluster,
            rings,
            registers,
            register_poller,
            set,
            bridge,
            broadcaster,
            twin,
            garbage,
            receivers,
            unsent: VecDeque::new(),
            events: VecDeque::new(),
            p2p_inbox: VecDeque::new(),
            turns: 0,
            stats: NodeStats::default(),
        })
    }

    /// This participant's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// Broadcasts `message` on our stream; its index. The WRITEs go out in this call.
    pub fn broadcast(&mut self, message: &[u8]) -> std::result::Result<u64, Reject> {
        if let Some(garbage) = self.garbage.as_mut() {
            let index = self.broadcaster.next_index();
            let max = self.broadcaster.config().max_message_bytes;
            for to in self.broadcaster.config().receivers.clone() {
                let bytes = garbage.next(self.me.get(), index, max);
                let stream = channels::message_stream(self.me);
                self.stats.garbage_sent += 1;
                if self.rings.send(&mut self.cluster, to, stream, &bytes).is_err() {
                    self.stats.entries_dropped += 1;
                }
            }
        }
        let index = self.broadcaster.broadcast(message)?;
        if let Some(twin) = self.twin.as_mut() {
            let twin_index = twin.broadcast(&equivocal(message))?;
            assert_eq!(twin_index, index, "the twin numbers alike");
        }
        self.carry_broadcaster();
        Ok(index)
    }

    /// Sends `message` to `to` on the point-to-point ring (a credit ring: see
    /// [`SendError::Full`]).
    pub fn send_p2p(&mut self, to: NodeId, message: &[u8]) -> std::result::Result<u64, SendError> {
        self.rings.send(&mut self.cluster, to, P2P_STREAM, message)
    }

    /// The next point-to-point message received, and its sender.
    pub fn poll_p2p(&mut self) -> Option<(NodeId, Vec<u8>)> {
        self.p2p_inbox.pop_front()
    }

    /// The next event of a receiver, with the broadcaster whose stream it is about.
    pub fn poll_event(&mut self) -> Option<(NodeId, Event)> {
        self.events.pop_front()
    }

    /// One step at `now_ns`: completions, rings read, roles ticked, their work carried
    /// out, registers turned. Whether anything happened.
    pub fn turn(&mut self, now_ns: u64) -> bool {
        self.turns += 1;
        let mut busy = self.rings.complete();
        busy |= self.retry_unsent();
        busy |= self.read_rings(now_ns);
        for receiver in self.receivers.values_mut() {
            if receiver.poll_timeout().is_some_and(|due| due <= now_ns) || receiver.has_deferred_work() {
                receiver.tick(now_ns);
            }
        }
        busy |= self.carry_receivers();
        busy |= self.carry_broadcaster();
        if self.unsent.is_empty() {
            // Signing ahead, once the sends are out.
            let twin_work = self.twin.as_ref().is_some_and(Broadcaster::has_deferred_work);
            if self.broadcaster.has_deferred_work() || twin_work {
                self.broadcaster.tick();
                if let Some(twin) = self.twin.as_mut() {
                    twin.tick();
                }
                busy |= self.carry_broadcaster();
            }
        }
        busy |= self.turn_registers(now_ns);
        if self.turns % CONTROL_EVERY == 0 {
            while let Some(event) = self.cluster.poll_control_at(now_ns) {
                self.rings.handle_control(&event);
                self.registers.handle_control(&event);
            }
            self.rings.maintain(&mut self.cluster, now_ns);
        }
        for (&broadcaster, receiver) in &mut self.receivers {
            while let Some(event) = receiver.poll_event() {
                busy = true;
                self.events.push_back((broadcaster, event));
            }
        }
        busy
    }

    /// When the next turn has timed work (a fast-path deadline, a register retry), if any.
    pub fn poll_timeout(&self) -> Option<u64> {
        let receivers = self.receivers.values().filter_map(Receiver::poll_timeout);
        receivers.chain(self.set.poll_timeout()).chain(self.bridge.poll_timeout()).min()
    }

    fn read_rings(&mut self, now_ns: u64) -> bool {
        let CtbNode { me, rings, receivers, broadcaster, twin, p2p_inbox, .. } = self;
        let taken = rings.poll(|from, stream, bytes| match broadcaster_of(stream) {
            None => p2p_inbox.push_back((from, bytes.to_vec())),
            Some(b) if b == *me => {
                // A signature request; an equivocator answers from the side the asker saw.
                let first = broadcaster.config().receivers.first() == Some(&from);
                let _ = match twin.as_mut() {
                    Some(twin) if !first => twin.handle_entry(from, bytes),
                    _ => broadcaster.handle_entry(from, bytes),
                };
            }
            Some(b) => {
                if let Some(receiver) = receivers.get_mut(&b) {
                    // Refusals are counted in the receiver's statistics.
                    let _ = receiver.handle_entry(now_ns, from, bytes);
                }
            }
        });
        taken > 0
    }

    fn carry_broadcaster(&mut self) -> bool {
        let mut any = false;
        let first = self.broadcaster.config().receivers.first().copied();
        while let Some(action) = self.broadcaster.poll_action() {
            any = true;
            if let Action::Send { to, bytes } = action {
                if self.twin.is_none() || Some(to) == first {
                    self.send_entry(to, bytes);
                }
            }
        }
        while let Some(action) = self.twin.as_mut().and_then(Broadcaster::poll_action) {
            any = true;
            if let Action::Send { to, bytes } = action {
                if Some(to) != first {
                    self.send_entry(to, bytes);
                }
            }
        }
        any
    }

    fn carry_receivers(&mut self) -> bool {
        let mut any = false;
        let broadcasters: Vec<NodeId> = self.receivers.keys().copied().collect();
        for broadcaster in broadcasters {
            while let Some(action) = self.receivers.get_mut(&broadcaster).and_then(Receiver::poll_action) {
                any = true;
                match action {
                    Action::Send { to, bytes } => self.send_entry(to, bytes),
                    Action::RegisterWrite { index, incarnation, value, .. } => {
                        let me = self.me;
                        self.bridge
                            .write(&mut self.set, me, broadcaster, index, incarnation, value)
                            .expect("every index CTBcast accepts maps to a register");
                    }
                    Action::RegisterRead { index, owner, .. } => {
                        self.bridge
                            .read(&mut self.set, owner, broadcaster, index)
                            .expect("every index CTBcast accepts maps to a register");
                    }
                }
            }
        }
        any
    }

    fn send_entry(&mut self, to: NodeId, bytes: Vec<u8>) {
        let Some(stream) = stream_of(&bytes) else { unreachable!("the roles encode entries") };
        match self.rings.send(&mut self.cluster, to, stream, &bytes) {
            Ok(_) => {}
            Err(SendError::Busy) => {
                self.stats.entries_deferred += 1;
                if self.unsent.len() >= UNSENT_MAX {
                    self.unsent.pop_front();
                    self.stats.entries_dropped += 1;
                }
                self.unsent.push_back((to, bytes));
            }
            Err(_) => self.stats.entries_dropped += 1,
        }
    }

    fn retry_unsent(&mut self) -> bool {
        let waiting = self.unsent.len();
        for _ in 0..waiting {
            let (to, bytes) = self.unsent.pop_front().expect("counted");
            self.send_entry(to, bytes);
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
                    if let Some(receiver) = self.receivers.get_mut(&broadcaster) {
                        receiver.handle_register_written(index);
                    }
                }
                Outcome::Read { broadcaster, index, owner, result } => {
                    if let Some(receiver) = self.receivers.get_mut(&broadcaster) {
                        receiver.handle_register_read(index, owner, Outcome::as_read_result(&result));
                    }
                }
            }
        }
        self.stats.register_write_retries = self.bridge.write_retries;
        if any {
            // Reads that follow a completed write go out in this turn.
            self.carry_receivers();
            self.registers.carry_out(&mut self.cluster, &mut self.set);
        }
        any
    }

    /// Starts (reading `clock`) or stops recording how long register operations take
    /// (benchmarks).
    pub fn record_register_timings(&mut self, clock: Option<TimingClock>) {
        self.bridge.record_timings(clock);
    }

    /// The register timings recorded since the last call.
    pub fn take_register_timings(&mut self) -> RegisterTimings {
        self.bridge.take_timings()
    }

    /// The statistics of the receiver of `broadcaster`'s stream.
    pub fn receiver_stats(&self, broadcaster: NodeId) -> Option<&Stats> {
        self.receivers.get(&broadcaster).map(Receiver::stats)
    }

    /// The broadcaster's statistics.
    pub fn broadcaster_stats(&self) -> &Stats {
        self.broadcaster.stats()
    }

    /// What the rings counted.
    pub fn ring_stats(&self) -> RingStats {
        self.rings.stats()
    }

    /// What the node counted.
    pub fn stats(&self) -> NodeStats {
        self.stats
    }

    /// Bytes registered for rings here.
    pub fn ring_memory_bytes(&self) -> usize {
        self.rings.memory_bytes()
    }

    /// Whether memory node `index`'s QP is usable.
    pub fn memory_node_up(&self, index: usize) -> bool {
        self.registers.is_up(index)
    }

    /// Whether `peer`'s ring QP is usable.
    pub fn peer_up(&self, peer: NodeId) -> bool {
        self.rings.is_up(peer)
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }
}
