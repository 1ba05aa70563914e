//! [`Cluster`]: a node connected to every peer, one QP per role per peer.
//!
//! - posting and lookups: this file;
//! - the node's own verbs objects, which the cluster owns for its whole life: [`local`];
//! - rights per peer and per region: [`permissions`];
//! - the control connections kept from bootstrap (reconnect, region updates): [`control`];
//!   why one was lost or a reconnect failed: [`reasons`];
//! - restarted peers rejoining, over the listener kept from bootstrap: [`rejoin`];
//! - new nodes joining, and the member list a joining node is told: [`joins`];
//! - peers removed, and what of them is refused afterwards: [`removal`].
//!
//! A `Cluster` is built only by [`Bootstrap`](crate::Bootstrap) (which also defines
//! [`Cluster::bootstrap`]): this module knows nothing of bootstrap, so the dependency runs
//! one way, bootstrap to cluster.

mod control;
mod joins;
pub(crate) mod local;
mod permissions;
mod reasons;
mod rejoin;
mod removal;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use usec_regions::RemoteRegion;
use usec_verbs::{
    AsyncEvent, ConnectOptions, Context, MemoryRegion, ProtectionDomain, QpOptions, QueuePair, SendWr,
};

pub use control::ControlEvent;
pub use reasons::{PeerLoss, ProtocolViolation, ReconnectFailure};

use crate::connections::{Connections, EstablishedPeer};
use crate::error::{Error, Result};
use crate::handshake::Joining;
use crate::poller::Poller;
use crate::role::{RoleId, RoleSpec};
use crate::spec::{ClusterSpec, NodeId};
use crate::transport::Link;
use crate::wire::Channel;
use local::LocalNode;

/// An asynchronous verbs event, with the peer and role of the QP it concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolEvent {
    /// The event as the device reported it.
    pub event: AsyncEvent,
    /// The peer of the QP concerned, if the event names one of ours.
    pub peer: Option<NodeId>,
    /// Its role.
    pub role: Option<RoleId>,
}

/// A peer: its regions and the control connection kept open after bootstrap.
#[derive(Debug)]
struct Peer {
    regions: BTreeMap<String, RemoteRegion>,
    /// The control connection: there while the peer is not lost, and kept (closed) after;
    /// none for a peer never reached.
    control: Option<ControlLink>,
    /// Why the control connection is gone, once it is.
    lost: Option<PeerLoss>,
    /// The counter of our reconnect requests.
    epoch: u64,
    /// Our reconnect request waiting for the peer's reply.
    pending: Option<PendingReconnect>,
    /// The incarnation of the peer's process admitted last; none for a peer never reached.
    incarnation: Option<u64>,
    /// Where it takes connections (told to nodes that join).
    addr: SocketAddr,
}

/// A control connection.
#[derive(Debug)]
struct ControlLink {
    link: Box<dyn Link>,
    channel: Channel,
}

/// How bootstrap left a peer: connected, or (rejoining or joining) never reached.
#[derive(Debug)]
pub(crate) enum PeerStart {
    /// Connected to the process of that incarnation.
    Joined {
        /// Its incarnation.
        incarnation: u64,
        /// Where it takes connections.
        addr: SocketAddr,
        /// Its control connection and regions.
        established: EstablishedPeer,
    },
    /// Not reached before the deadline of a rejoining node, for this reason.
    Unreached {
        /// Where it was dialed.
        addr: SocketAddr,
        /// The last thing that went wrong with it.
        reason: String,
    },
}

/// A node new to us, admitted, its handshake still under way.
#[derive(Clone, Copy, Debug)]
struct Newcomer {
    incarnation: u64,
    addr: SocketAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PendingReconnect {
    epoch: u64,
    roles: Vec<RoleId>,
}

/// A node of a cluster, connected all-to-all.
///
/// It owns the QPs (one per role per peer, posted to with [`Cluster::post_send`]), the
/// registered regions, the peers' region descriptors, and the control connection to each
/// peer. The role CQs go to [`Poller`]s ([`Cluster::take_poller`]). Call
/// [`Cluster::poll_control`] from the node's loop: peers' reconnect requests and region
/// updates are served there, restarted peers rejoin there ([`ControlEvent::Rejoined`]) and
/// new nodes join there ([`ControlEvent::Joined`]). [`Cluster::remove_peer`] removes one.
/// It costs one non-blocking read per peer and one accept, so a hot loop calls it every so
/// often (say every thousand polls), not on every iteration.
#[derive(Debug)]
pub struct Cluster {
    // Declared first: QPs and MRs go before the control connections close.
    local: LocalNode,
    spec: Arc<ClusterSpec>,
    me: NodeId,
    /// Our incarnation, how we entered the cluster, where we take connections.
    joining: Joining,
    peers: BTreeMap<NodeId, Peer>,
    /// Nodes new to us in their handshake.
    newcomers: BTreeMap<NodeId, Newcomer>,
    /// Peers removed, with the incarnation removed (if one had been admitted).
    removed: BTreeMap<NodeId, Option<u64>>,
    /// Who fenced this process out of the cluster and why, once a peer did.
    fenced: Option<String>,
    qp_owners: HashMap<u32, (NodeId, RoleId)>,
    control_events: VecDeque<ControlEvent>,
    rejections: Vec<String>,
    /// Verbs events taken off the device when a peer rejoined, to hand out before newer ones.
    early_events: VecDeque<AsyncEvent>,
    /// The listener kept from bootstrap and the connections of rejoining peers; taken out
    /// only while they are polled.
    connections: Option<Connections>,
    /// Failures of rejoining peers' connections after they said who they were.
    rejoin_failures: Vec<String>,
    /// The latest time given to [`Cluster::poll_control_at`].
    control_now_ns: u64,
}

impl Cluster {
    /// The node once bootstrap connected its peers: its verbs objects, each peer's
    /// connection (or why it was not reached), and the listener it keeps. Only
    /// [`Bootstrap::finish`](crate::Bootstrap::finish) calls it.
    pub(crate) fn from_bootstrap(
        local: LocalNode,
        spec: Arc<ClusterSpec>,
        me: NodeId,
        joining: Joining,
        starts: BTreeMap<NodeId, PeerStart>,
        connections: Connections,
        rejections: Vec<String>,
    ) -> Cluster {
        let mut qp_owners = HashMap::new();
        for (&peer, qps) in &local.qps {
            for (index, qp) in qps.iter().enumerate() {
                qp_owners.insert(qp.qp_num(), (peer, RoleId(index as u8)));
            }
        }
        let mut control_events = VecDeque::new();
        let mut peers = BTreeMap::new();
        for (node, start) in starts {
            let peer = match start {
                PeerStart::Joined { incarnation, addr, established } => {
                    let EstablishedPeer { link, channel, regions } = established;
                    Peer {
                        regions,
                        control: Some(ControlLink { link, channel }),
                        lost: None,
                        epoch: 0,
                        pending: None,
                        incarnation: Some(incarnation),
                        addr,
                    }
                }
                PeerStart::Unreached { addr, reason } => {
                    let lost = PeerLoss::Unreached { reason };
                    control_events.push_back(ControlEvent::PeerLost { peer: node, reason: lost.clone() });
                    Peer {
                        regions: BTreeMap::new(),
                        control: None,
                        lost: Some(lost),
                        epoch: 0,
                        pending: None,
                        incarnation: None,
                        addr,
                    }
                }
            };
            peers.insert(node, peer);
        }
        Cluster {
            local,
            spec,
            me,
            joining,
            peers,
            newcomers: BTreeMap::new(),
            removed: BTreeMap::new(),
            fenced: None,
            qp_owners,
            control_events,
            rejections,
            early_events: VecDeque::new(),
            connections: Some(connections),
            rejoin_failures: Vec::new(),
            control_now_ns: 0,
        }
    }

    /// This node.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// The cluster description this node started from (for a node that joined: only its
    /// own address); the members now are [`Cluster::peers`].
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    /// The peers, in id order: those of the description (or, for a node that joined, those
    /// it learned of) and those that joined since, less those removed.
    pub fn peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.peers.keys().copied()
    }

    /// The device.
    pub fn context(&self) -> &Context {
        &self.local.context
    }

    /// The protection domain of the shared regions and of the QPs of every peer without
    /// grants (register more memory here); a peer with grants has its own
    /// ([`NodeConfig::grant`](crate::NodeConfig::grant)).
    pub fn pd(&self) -> &ProtectionDomain {
        &self.local.pd
    }

    /// The options the peers' QPs were created with (the GID index among them): a layer
    /// that makes a QP of its own, as a loopback one, creates it alike.
    pub fn qp_options(&self) -> &QpOptions {
        &self.local.qp_options
    }

    /// The options the peers' QPs were connected with.
    pub fn connect_options(&self) -> &ConnectOptions {
        &self.local.connect
    }

    /// The roles, in order.
    pub fn roles(&self) -> &[RoleSpec] {
        &self.local.roles
    }

    /// The role called `name`.
    pub fn role(&self, name: &str) -> Result<RoleId> {
        self.local.role_by_name(name).ok_or_else(|| Error::UnknownRole(name.to_string()))
    }

    /// The QP of `role` to `peer`.
    pub fn qp(&self, peer: NodeId, role: RoleId) -> Result<&QueuePair> {
        if !self.peers.contains_key(&peer) {
            return Err(self.no_peer(peer));
        }
        self.local.qp(peer, role)
    }

    /// The QP of `role` to `peer`, to post on directly. Changing its state or rights
    /// behind the cluster's back is allowed but then [`Cluster::grant_write`] and
    /// [`Cluster::reconnect`] no longer know its rights.
    pub fn qp_mut(&mut self, peer: NodeId, role: RoleId) -> Result<&mut QueuePair> {
        if !self.peers.contains_key(&peer) {
            return Err(self.no_peer(peer));
        }
        self.local.qp_mut(peer, role)
    }

    /// Posts `wrs` on the QP of `role` to `peer` (see [`QueuePair::post_send`]).
    pub fn post_send(&mut self, peer: NodeId, role: RoleId, wrs: &[SendWr<'_>]) -> Result<()> {
        let qp = match self.local.qp_mut(peer, role) {
            // A node new to us has QPs before it is a peer: nothing goes to it before then.
            Ok(qp) if !self.newcomers.contains_key(&peer) => qp,
            Ok(_) => return Err(Error::UnknownPeer(peer)),
            Err(Error::UnknownPeer(_)) => return Err(self.no_peer(peer)),
            Err(error) => return Err(error),
        };
        qp.post_send(wrs).map_err(|source| Error::Verbs {
            context: format!("posting to node {peer} on role #{}", role.index()),
            source,
        })
    }

    /// The region registered here as `name`.
    pub fn region(&self, name: &str) -> Result<&MemoryRegion> {
        self.local
            .regions
            .get(name)
            .ok_or_else(|| Error::UnknownRegion { name: name.to_string(), owner: "registered here".into() })
    }

    /// The registration of grant `name` to `peer` (see [`GrantSpec`](crate::GrantSpec)).
    pub fn grant(&self, peer: NodeId, name: &str) -> Result<&MemoryRegion> {
        let isolated = self.local.isolated.get(&peer);
        isolated.and_then(|isolated| isolated.grants.get(name)).ok_or_else(|| Error::UnknownRegion {
            name: name.to_string(),
            owner: format!("granted here to node {peer}"),
        })
    }

    /// The descriptor of `peer`'s region `name` (as of its latest update).
    pub fn remote_region(&self, peer: NodeId, name: &str) -> Result<RemoteRegion> {
        let owner = self.peer(peer)?;
        owner.regions.get(name).copied().ok_or_else(|| Error::UnknownRegion {
            name: name.to_string(),
            owner: format!("offered by node {peer}"),
        })
    }

    /// A poller over the CQs of `roles` (all roles not taken yet when empty). Each role's
    /// CQ goes to one poller.
    pub fn take_poller(&mut self, roles: &[RoleId]) -> Result<Poller> {
        let wanted: Vec<RoleId> = if roles.is_empty() {
            (0..self.local.roles.len())
                .map(|index| RoleId(index as u8))
                .filter(|role| self.local.cqs[role.index()].is_some())
                .collect()
        } else {
            roles.to_vec()
        };
        for &role in &wanted {
            self.local.check_role(role)?;
            if self.local.cqs[role.index()].is_none() {
                let name = self.local.role_name(role);
                return Err(Error::config(format!(
                    "the CQ of role {name:?} belongs to another poller already"
                )));
            }
        }
        if wanted.is_empty() {
            return Err(Error::config("every role's CQ belongs to a poller already"));
        }
        let cqs = wanted
            .into_iter()
            .map(|role| (role, self.local.cqs[role.index()].take().expect("checked")))
            .collect();
        Ok(Poller::new(cqs))
    }

    /// The next asynchronous verbs event (a peer lost, a QP failed by a refused request),
    /// with the peer and role it concerns. Never blocks.
    ///
    /// Events about a peer's QPs still queued when a newer incarnation of that peer is
    /// admitted are dropped then: they describe the connection to the process that was
    /// replaced (its `PeerLost` above all), which [`ControlEvent::PeerLost`] reported, and
    /// would otherwise be taken for news of the new one.
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        let event = self.early_events.pop_front().or_else(|| self.local.context.poll_event())?;
        let owner = event.qp_num.and_then(|qp_num| self.qp_owners.get(&qp_num).copied());
        Some(PoolEvent { event, peer: owner.map(|(peer, _)| peer), role: owner.map(|(_, role)| role) })
    }

    /// The connections refused during bootstrap, with their reasons.
    pub fn bootstrap_rejections(&self) -> &[String] {
        &self.rejections
    }

    fn peer(&self, node: NodeId) -> Result<&Peer> {
        self.peers.get(&node).ok_or_else(|| self.no_peer(node))
    }
}
