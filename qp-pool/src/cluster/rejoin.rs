//! Restarted peers rejoining: after bootstrap a cluster keeps listening on its control
//! address, and a new process of a peer goes through the full handshake again.
//!
//! When node 2 restarts, its new process bootstraps with
//! [`NodeConfig::rejoin`](crate::NodeConfig::rejoin) (or
//! [`NodeConfig::join`](crate::NodeConfig::join), knowing only some members' addresses) and
//! a higher incarnation than the process it replaces. On each of its peers, in
//! [`Cluster::poll_control`]:
//!
//! 1. Its connection is accepted under the same admission limits as at bootstrap (a flood
//!    is shed), and runs the same handshake: cluster, run and description checked, and with
//!    a cluster key, the proof that it holds the key before anything is offered.
//! 2. Identified, its incarnation is weighed against the one connected (the rules:
//!    `connections/incarnation.rs`): a lower one is refused as stale
//!    ([`Error::StaleIncarnation`](crate::Error::StaleIncarnation)); the same one only while
//!    its connection is lost; a higher one supersedes the old process. If the old control
//!    connection is still up (the old process is stopped, or its death not noticed yet), it
//!    is refused and closed, reported as [`PeerLoss::Superseded`].
//! 3. For the new process: our QPs to node 2 are moved to ERROR, so that requests still
//!    outstanding to the old process complete (flushed) rather than vanish in the reset
//!    below (the soft and sim providers flush at once; a NIC flushes on its own schedule,
//!    and a reset that comes first drops what is left); verbs events still queued about
//!    those QPs are dropped (they describe the old connection, and would be taken for news
//!    of the new one); its
//!    rights become what we remembered for node 2 less anything beyond its roles' defaults
//!    (see [`permissions`](super::permissions)); a reconnect under way is forgotten; the
//!    old process's region descriptors are forgotten ([`Cluster::remote_region`] has none
//!    for node 2 until step 4: our QPs connect to the new process before the handshake
//!    ends, and a request carrying the old addresses would be refused there, leaving both
//!    QPs in ERROR); our QPs to it are reset (fresh endpoints; the old process's requests
//!    no longer reach them) and offered, with our region descriptors.
//! 4. Its offer connects our QPs to its new QPs. Once both sides are ready, its control
//!    connection and region descriptors replace the old ones and
//!    [`ControlEvent::Rejoined`] is reported.
//!
//! The old process, should it resume (SIGCONT), finds every control connection refused and
//! closed, and our QPs connected to someone else: its requests fail. It never learns the
//! new process's endpoints or regions, and cannot come back on its own: a running cluster
//! never dials, and a new bootstrap must present a higher incarnation still, which is a
//! restart like any other.
//!
//! Without a cluster key nothing proves who dials: whoever knows the cluster and run names
//! can take a node's place, as it could join at bootstrap. Use a key where that matters.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use usec_regions::RemoteRegion;

use super::{Cluster, ControlEvent, ControlLink, PeerLoss};
use crate::connections::incarnation::{admit, Admission};
use crate::connections::{EstablishedPeer, Host, Joined};
use crate::error::Result;
use crate::handshake::Joining;
use crate::spec::NodeId;
use crate::wire::{Members, Message, Offer, Reject};

/// Failures of rejoining peers' connections remembered; later ones are dropped.
const FAILURES_KEPT: usize = 32;

impl Cluster {
    /// Accepts connections of restarted peers and moves their handshakes on.
    pub(super) fn serve_rejoins(&mut self, now_ns: u64) {
        let Some(mut connections) = self.connections.take() else { return };
        connections.poll(now_ns, self);
        let failures = connections.take_failures();
        self.connections = Some(connections);
        for failure in failures {
            if self.rejoin_failures.len() < FAILURES_KEPT {
                self.rejoin_failures.push(format!("node {}: {}", failure.node, failure.reason));
            }
            self.newcomer_failed(failure.node);
        }
    }

    /// Where this node listens for restarted peers (the network bootstrap used).
    pub fn control_addr(&self) -> Option<SocketAddr> {
        self.connections.as_ref().and_then(|connections| connections.local_addr())
    }

    /// This node's incarnation: which process of it this is.
    pub fn incarnation(&self) -> u64 {
        self.joining.incarnation
    }

    /// The incarnation of `peer`'s process admitted last (`None` for a peer never reached).
    pub fn peer_incarnation(&self, peer: NodeId) -> Option<u64> {
        self.peers.get(&peer).and_then(|state| state.incarnation)
    }

    /// The connections refused since bootstrap, with their reasons: those refused for what
    /// they claimed or sent (a stale incarnation, a duplicate, another run…), those that
    /// failed the cluster key check, and rejoining peers whose handshake failed after they
    /// said who they were.
    pub fn refused_connections(&self) -> Vec<String> {
        let mut refused = Vec::new();
        if let Some(connections) = &self.connections {
            refused.extend(connections.refused());
            refused.extend(connections.impostors_refused());
        }
        refused.extend(self.rejoin_failures.iter().cloned());
        refused
    }

    /// Closes the control connection to the process of `node` that `incarnation` replaces,
    /// telling it why, if it is still up.
    fn supersede(&mut self, node: NodeId, incarnation: u64) {
        let peer = self.peers.get_mut(&node).expect("a peer");
        if peer.lost.is_some() {
            return;
        }
        let reason = format!("node {node} restarted: incarnation {incarnation} replaces this process");
        let control = peer.control.as_mut().expect("a live peer has its connection");
        control.channel.send(&Message::Fence(Reject { reason }));
        // Whether the old process reads it or not, it is gone.
        let _ = self.flush_peer(node);
        self.lose(node, PeerLoss::Superseded { incarnation });
    }

    /// Drops the verbs events still queued about the QPs to `node`: they are about the
    /// connection to a process that is being replaced. The others wait, in order.
    pub(super) fn drop_stale_events(&mut self, node: NodeId) {
        while let Some(event) = self.local.context.poll_event() {
            self.early_events.push_back(event);
        }
        let owners = &self.qp_owners;
        self.early_events.retain(|event| {
            event.qp_num.and_then(|qp_num| owners.get(&qp_num)).map(|&(peer, _)| peer) != Some(node)
        });
    }
}

impl Host for Cluster {
    fn admit(&mut self, node: NodeId, joining: Joining, dialed: Option<SocketAddr>) -> Result<Offer> {
        self.check_not_fenced()?;
        let Some(peer) = self.peers.get(&node) else {
            return self.admit_newcomer(node, joining, dialed);
        };
        let incarnation = joining.incarnation;
        if let Admission::Newer { .. } = admit(node, peer.incarnation, peer.lost.is_none(), incarnation)? {
            self.supersede(node, incarnation);
        }
        self.local.flush(node)?;
        self.drop_stale_events(node);
        self.rights_for_new_incarnation(node);
        let peer = self.peers.get_mut(&node).expect("a peer");
        peer.incarnation = Some(incarnation);
        peer.pending = None;
        // Our QPs connect to the new process before its handshake ends: a request with
        // the old process's addresses would reach it and be refused, leaving both QPs in
        // ERROR. Until its own descriptors arrive, it has none.
        peer.regions.clear();
        self.local.offer_for(node)
    }

    fn members(&self, to: NodeId) -> Members {
        self.member_list(to)
    }

    fn learn(&mut self, _from: NodeId, _members: &Members) -> Result<()> {
        // A running cluster never dials: nodes that join come to it.
        Ok(())
    }

    fn accept_offer(&mut self, node: NodeId, offer: &Offer) -> Result<BTreeMap<String, RemoteRegion>> {
        self.local.accept_offer(node, offer)
    }

    fn joined(&mut self, joined: Joined) {
        if !self.peers.contains_key(&joined.node) {
            return self.newcomer_joined(joined);
        }
        let Joined { node, incarnation, addr, peer: EstablishedPeer { link, channel, regions } } = joined;
        let peer = self.peers.get_mut(&node).expect("a peer");
        if let Some(addr) = addr {
            peer.addr = addr;
        }
        peer.control = Some(ControlLink { link, channel });
        peer.regions = regions;
        peer.lost = None;
        peer.pending = None;
        peer.incarnation = Some(incarnation);
        self.control_events.push_back(ControlEvent::Rejoined { peer: node, incarnation });
    }
}
