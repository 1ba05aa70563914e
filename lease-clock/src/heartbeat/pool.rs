//! [`PoolHeartbeats`]: the heartbeat glue on a `usec-qp-pool` [`Cluster`] — a
//! `heartbeat` role whose QPs let peers READ, a `heartbeat` region holding this node's
//! word and a READ slot per peer, and the role's own CQ in a [`Poller`]. Peers are the
//! cluster's [`NodeId`]s; [`PoolHeartbeats::reader`] reads every one but this node.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use usec_qp_pool::{Cluster, ControlEvent, NodeConfig, NodeId, Poller, PoolEvent, RoleId, RoleSpec, WrId};
use usec_verbs::{AccessFlags, AsyncEventKind, Completion, PeerProbe, Region, RemoteAddr, SendWr};

use crate::error::{Error, Result};
use crate::heartbeat::reader::{HeartbeatReader, HeartbeatReads, ReaderConfig};

/// The word and each slot sit on a cache line of their own: the word at 0, the slot for
/// node `n` at `(n + 1) × 64`.
const SLOT_BYTES: usize = 64;

/// Where the READ slot of node id `node` starts.
fn slot_offset_of(node: usize) -> usize {
    SLOT_BYTES * (node + 1)
}

/// Heartbeats over a qp-pool cluster. Build the node's config with [`Self::configure`],
/// bootstrap, then [`Self::new`]; each turn of the node's loop, [`Self::publish`] the
/// counter and tick a [`crate::heartbeat::HeartbeatMonitor`] with [`Self::port`].
pub struct PoolHeartbeats {
    role: RoleId,
    poller: Poller,
    memory: Arc<Region>,
    me: NodeId,
    /// The other nodes, in id order.
    peers: Vec<NodeId>,
    /// Completions polled and not handed out yet.
    pending: VecDeque<Completion>,
}

impl fmt::Debug for PoolHeartbeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolHeartbeats").field("me", &self.me).field("peers", &self.peers).finish()
    }
}

impl PoolHeartbeats {
    /// The role's name in the cluster.
    pub const ROLE: &'static str = "heartbeat";
    /// The region's name in the cluster.
    pub const REGION: &'static str = "heartbeat";

    /// Adds the `heartbeat` role (peers may READ) and region to a node's config. Every
    /// node of the cluster must add it, at the same position among its roles.
    pub fn configure(config: NodeConfig) -> Result<NodeConfig> {
        // Slots are indexed by node id, so the region covers the largest id.
        let largest = config.spec.nodes.keys().map(|node| usize::from(node.get())).max().unwrap_or(0);
        let largest = largest.max(usize::from(config.me.get()));
        let memory = Arc::new(
            Region::new(slot_offset_of(largest) + SLOT_BYTES)
                .map_err(Error::region("allocating the heartbeat region"))?,
        );
        Ok(config.role(RoleSpec::new(Self::ROLE, AccessFlags::REMOTE_READ)).region(
            Self::REGION,
            &memory,
            AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ,
        ))
    }

    /// Takes the role's CQ from the bootstrapped `cluster`.
    pub fn new(cluster: &mut Cluster) -> Result<PoolHeartbeats> {
        let role = cluster.role(Self::ROLE).map_err(Error::pool("the heartbeat role"))?;
        let poller = cluster.take_poller(&[role]).map_err(Error::pool("taking the heartbeat CQ"))?;
        let memory =
            cluster.region(Self::REGION).map_err(Error::pool("the heartbeat region"))?.region().clone();
        let (me, peers): (NodeId, Vec<NodeId>) = (cluster.me(), cluster.peers().collect());
        let largest = peers.iter().chain([&me]).map(|node| usize::from(node.get())).max().unwrap_or(0);
        if memory.len() < slot_offset_of(largest) + SLOT_BYTES {
            return Err(Error::config("the heartbeat region is too small for the cluster"));
        }
        Ok(PoolHeartbeats { role, poller, memory, me, peers, pending: VecDeque::new() })
    }

    /// A reader of every node of the cluster but this one, in id order.
    pub fn reader(&self, config: ReaderConfig, now_ns: u64) -> HeartbeatReader {
        HeartbeatReader::new(config, self.peers.iter().copied(), now_ns)
    }

    /// The nodes it reads: every node of the cluster but this one, in id order (the
    /// reader's peers, one detector each).
    pub fn peers(&self) -> &[NodeId] {
        &self.peers
    }

    /// The heartbeat role: [`Self::port`] polls its CQ, and a completion of another kind on
    /// it (another role's request posted on the heartbeat QPs) comes out of
    /// [`crate::heartbeat::HeartbeatMonitor::tick`] as this role's.
    pub fn role(&self) -> RoleId {
        self.role
    }

    /// Publishes this node's counter.
    pub fn publish(&self, value: u64) {
        self.memory.atomic_u64(0).expect("the word is in bounds and aligned").store(value, Ordering::Release);
    }

    /// The peer an event of `cluster.poll_event()` reports lost, if it is one of the
    /// heartbeat role's (each role's QPs report the loss; one is enough).
    pub fn lost_peer(&self, event: &PoolEvent) -> Option<NodeId> {
        let lost = event.event.kind == AsyncEventKind::PeerLost && event.role == Some(self.role);
        event.peer.filter(|_| lost)
    }

    /// The peer a control event of `cluster.poll_control()` reports rejoined: a new process
    /// of it, with new QPs and a new heartbeat region. Hand it to
    /// [`crate::heartbeat::HeartbeatMonitor::rejoined`] (or
    /// [`HeartbeatReader::restart`]): nothing else here needs refreshing, since every READ
    /// looks the peer's region up in the cluster, which the rejoin updated, and goes out on
    /// the cluster's QP, which it reconnected.
    pub fn rejoined_peer(&self, event: &ControlEvent) -> Option<NodeId> {
        match event {
            ControlEvent::Rejoined { peer, .. } if self.peers.contains(peer) => Some(*peer),
            _ => None,
        }
    }

    /// The [`HeartbeatReads`] to tick a reader or monitor with.
    pub fn port<'a>(&'a mut self, cluster: &'a mut Cluster) -> PoolReads<'a> {
        PoolReads { heartbeats: self, cluster }
    }
}

/// [`HeartbeatReads`] over a cluster: READs posted on the `heartbeat` role, completions
/// from its poller (whatever their kind).
#[derive(Debug)]
pub struct PoolReads<'a> {
    heartbeats: &'a mut PoolHeartbeats,
    cluster: &'a mut Cluster,
}

impl HeartbeatReads for PoolReads<'_> {
    fn post_read(&mut self, peer: NodeId, wr_id: WrId) -> Result<()> {
        if !self.heartbeats.peers.contains(&peer) {
            return Err(Error::UnknownPeer { peer });
        }
        let remote = self
            .cluster
            .remote_region(peer, PoolHeartbeats::REGION)
            .map_err(Error::pool("a peer's heartbeat"))?;
        let word = RemoteAddr::within(&remote, 0, 8).map_err(Error::verbs("a peer's heartbeat word"))?;
        let local =
            self.cluster.region(PoolHeartbeats::REGION).map_err(Error::pool("the heartbeat region"))?;
        let slot =
            local.sge(slot_offset_of(usize::from(peer.get())), 8).map_err(Error::verbs("a READ slot"))?;
        self.cluster
            .post_send(peer, self.heartbeats.role, &[SendWr::read(wr_id.to_raw(), word, &slot)])
            .map_err(Error::pool("posting a heartbeat READ"))
    }

    fn poll_completion(&mut self) -> Option<Completion> {
        let heartbeats = &mut *self.heartbeats;
        if heartbeats.pending.is_empty() {
            heartbeats.pending.extend(heartbeats.poller.poll().map(|polled| polled.completion));
        }
        heartbeats.pending.pop_front()
    }

    fn probe(&mut self, peer: NodeId) -> PeerProbe {
        self.cluster.qp(peer, self.heartbeats.role).map_or(PeerProbe::Unknown, |qp| qp.probe_peer())
    }

    fn read_value(&self, peer: NodeId) -> Option<u64> {
        let heartbeats = &*self.heartbeats;
        if !heartbeats.peers.contains(&peer) {
            return None;
        }
        let slot = heartbeats
            .memory
            .atomic_u64(slot_offset_of(usize::from(peer.get())))
            .expect("slots are in bounds");
        Some(slot.load(Ordering::Acquire))
    }
}
