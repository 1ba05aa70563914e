//! New nodes joining a running cluster: ids that this node never knew (not in its
//! description, or removed since), admitted in [`Cluster::poll_control`] like a restarted
//! peer, and the member list a joining node is told.
//!
//! A node that joins ([`NodeConfig::join`](crate::NodeConfig::join)) dials a member's
//! control address. On the member, in [`Cluster::poll_control`]:
//!
//! 1. Its connection goes through the same admission and handshake as any: cluster and run
//!    checked, and with a cluster key the proof that it holds the key before anything is
//!    sent to it. Its hello says that it joins, so no description digest is compared and
//!    its id need not be in ours; it must say where it takes connections.
//! 2. Identified, an id removed here is refused unless its incarnation is newer than the
//!    one removed ([`Cluster::remove_peer`]); a second connection of an id in its handshake
//!    follows the incarnation rules of a restart. It takes a spare set of QPs (see
//!    [`NodeConfig::spare_peers`](crate::NodeConfig::spare_peers)), with its roles' default
//!    rights; with none left it is refused, saying so.
//! 3. It is sent the members this node knows, itself included, then our offer: endpoints
//!    of the QPs for it and our region descriptors. The members are every peer whose
//!    control connection is up and every node new to us whose handshake is under way
//!    (with its incarnation and control address), so that of two nodes joining at once,
//!    the one a member admits second hears of the first, and dials it.
//! 4. Once both sides' QPs are connected it becomes a peer with its regions and control
//!    connection, and [`ControlEvent::Joined`] is reported. A handshake that fails gives
//!    its QPs back.

use std::net::SocketAddr;

use super::{Cluster, ControlEvent, ControlLink, Newcomer, Peer};
use crate::connections::{EstablishedPeer, Joined};
use crate::error::{Error, Result};
use crate::handshake::Joining;
use crate::role::RoleId;
use crate::spec::NodeId;
use crate::wire::{Member, Members, Offer};

impl Cluster {
    /// Where `peer` takes connections (what nodes that join are told).
    pub fn peer_addr(&self, peer: NodeId) -> Option<SocketAddr> {
        self.peers.get(&peer).map(|state| state.addr)
    }

    /// How many more nodes may join before one is refused for want of QPs (see
    /// [`NodeConfig::spare_peers`](crate::NodeConfig::spare_peers)).
    pub fn spare_peers(&self) -> usize {
        self.local.spares()
    }

    /// Admits `node`, new to us, as `joining`.
    pub(super) fn admit_newcomer(
        &mut self,
        node: NodeId,
        joining: Joining,
        dialed: Option<SocketAddr>,
    ) -> Result<Offer> {
        self.check_not_removed(node, joining.incarnation)?;
        // A second connection of a node in its handshake (the first one lost to it under
        // the incarnation rules, or failed): never an older process than the first.
        if let Some(current) = self.newcomers.get(&node).map(|newcomer| newcomer.incarnation) {
            if joining.incarnation < current {
                return Err(Error::StaleIncarnation { node, theirs: joining.incarnation, current });
            }
        }
        let Some(addr) = dialed.or(joining.addr) else {
            let reason = "it does not say where it takes connections".to_string();
            return Err(Error::Protocol { peer: format!("node {node}"), reason });
        };
        let numbers = self.local.attach(node)?;
        for (index, number) in numbers.into_iter().enumerate() {
            self.qp_owners.insert(number, (node, RoleId(index as u8)));
        }
        self.local.flush(node)?;
        self.drop_stale_events(node);
        self.newcomers.insert(node, Newcomer { incarnation: joining.incarnation, addr });
        self.local.offer_for(node)
    }

    /// `node`, new to us, finished its handshake: it is a peer now.
    pub(super) fn newcomer_joined(&mut self, joined: Joined) {
        let Joined { node, incarnation, addr, peer: EstablishedPeer { link, channel, regions } } = joined;
        let newcomer = self.newcomers.remove(&node).expect("admitted first");
        self.removed.remove(&node);
        let peer = Peer {
            regions,
            control: Some(ControlLink { link, channel }),
            lost: None,
            epoch: 0,
            pending: None,
            incarnation: Some(incarnation),
            addr: addr.unwrap_or(newcomer.addr),
        };
        self.peers.insert(node, peer);
        self.control_events.push_back(ControlEvent::Joined { peer: node, incarnation });
    }

    /// A connection that spoke for `node` failed: if it was new to us and nothing else
    /// speaks for it, its QPs go back to the spares.
    pub(super) fn newcomer_failed(&mut self, node: NodeId) {
        let speaks = self.connections.as_ref().is_some_and(|connections| connections.speaks_for(node));
        if self.peers.contains_key(&node) || speaks || self.newcomers.remove(&node).is_none() {
            return;
        }
        self.give_back_qps(node);
    }

    /// What a node that joins is told: ourselves, the peers whose control connection is up,
    /// and the nodes new to us in their handshake; not `to` itself.
    pub(super) fn member_list(&self, to: NodeId) -> Members {
        let mut members = Vec::new();
        if let Some(addr) = self.joining.addr {
            members.push(Member { node: self.me.get(), incarnation: self.joining.incarnation, addr });
        }
        for (&node, peer) in &self.peers {
            if let (true, None, Some(incarnation)) = (node != to, &peer.lost, peer.incarnation) {
                members.push(Member { node: node.get(), incarnation, addr: peer.addr });
            }
        }
        for (&node, newcomer) in &self.newcomers {
            if node != to {
                let Newcomer { incarnation, addr } = *newcomer;
                members.push(Member { node: node.get(), incarnation, addr });
            }
        }
        Members { members }
    }
}
