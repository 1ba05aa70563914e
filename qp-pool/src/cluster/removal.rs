//! Removing a peer: what a membership change decides about a node, carried out on this
//! node's connections.
//!
//! [`Cluster::remove_peer`] is called on each member (by whatever decides membership: a
//! view change). It ends the peer's control connection, telling its process why; moves our
//! QPs to it to ERROR, so that requests still outstanding complete (flushed) and nothing of
//! its passes any more, and keeps them as a spare set for a node that joins later (see
//! [`local`](super::local): never destroyed while the cluster lives); forgets its regions,
//! its rights and the verbs events still queued about it; ends its connections still in
//! their handshake; and reports [`ControlEvent::Removed`].
//!
//! From then on, everything of the removed process is refused with the reason: its control
//! connection is closed, after a `Fence` saying why (its process sees
//! [`PeerLoss::Fenced`](crate::PeerLoss::Fenced), "node 0 removed node 2 (incarnation 7)
//! from the cluster", and is fenced: see [`Cluster::fenced`]), and cannot be reconnected;
//! its QPs find ours in ERROR or reconnected to someone else; a new connection of its
//! incarnation, or of an older one, is refused ([`Error::JoinRefused`]). Calls naming it
//! here fail with [`Error::PeerRemoved`]. A newer process of the same id may join again: it
//! is a new node then ([`ControlEvent::Joined`]), starting with its roles' default rights.
//!
//! Removing a peer that is already dead is the same, less the message to its process.

use super::{Cluster, ControlEvent, PeerLoss};
use crate::error::{Error, Result};
use crate::spec::NodeId;
use crate::transport::Received;
use crate::wire::{Message, Reject};

impl Cluster {
    /// Removes `node`: its control connection and QPs are torn down, its regions forgotten,
    /// and whatever its process (this incarnation or an older one) sends afterwards is
    /// refused with the reason; [`ControlEvent::Removed`] is reported. Removing a node
    /// that is dead, or still in its handshake, is the same. Fails if `node` is not a peer
    /// ([`Error::UnknownPeer`]), or was removed already ([`Error::PeerRemoved`]).
    pub fn remove_peer(&mut self, node: NodeId) -> Result<()> {
        let incarnation = match (self.peers.get(&node), self.newcomers.get(&node)) {
            (Some(peer), _) => peer.incarnation,
            (None, Some(newcomer)) => Some(newcomer.incarnation),
            (None, None) => return Err(self.no_peer(node)),
        };
        self.drop_stale_events(node);
        self.give_back_qps(node);
        let removed = match incarnation {
            Some(incarnation) => format!("node {node} (incarnation {incarnation})"),
            None => format!("node {node}"),
        };
        let reason = format!("node {} removed {removed} from the cluster", self.me);
        if let Some(peer) = self.peers.get_mut(&node) {
            if peer.lost.is_none() {
                let control = peer.control.as_mut().expect("a live peer has its connection");
                control.channel.send(&Message::Fence(Reject { reason }));
                // Whether its process reads it or not, the connection goes; what it sent is
                // read first, so that the close is a FIN behind the reason, not a reset.
                let _ = self.flush_peer(node);
                let peer = self.peers.get_mut(&node).expect("a peer");
                let control = peer.control.as_mut().expect("still there");
                let mut buffer = [0u8; 4096];
                for _ in 0..16 {
                    if !matches!(control.link.read_some(&mut buffer), Ok(Received::Data(_))) {
                        break;
                    }
                }
                control.link.close();
            }
        }
        if let Some(connections) = &mut self.connections {
            connections.abandon(node, || Error::PeerRemoved { node, incarnation });
        }
        self.peers.remove(&node);
        self.newcomers.remove(&node);
        self.removed.insert(node, incarnation);
        self.control_events.push_back(ControlEvent::Removed { peer: node, incarnation });
        Ok(())
    }

    /// Refuses a process of `node` claiming `incarnation` if that incarnation, or a newer
    /// one, was removed.
    pub(super) fn check_not_removed(&self, node: NodeId, incarnation: u64) -> Result<()> {
        let Some(&Some(removed)) = self.removed.get(&node) else { return Ok(()) };
        let reason = if incarnation == removed {
            format!(
                "its incarnation {incarnation} was removed from the cluster; only a newer process may join"
            )
        } else if incarnation < removed {
            format!(
                "its incarnation {incarnation} is older than incarnation {removed}, which was removed from the cluster"
            )
        } else {
            return Ok(());
        };
        Err(Error::JoinRefused { node, reason })
    }

    /// Whether this process was fenced out of the cluster, and by whom and why ("node 0:
    /// node 2 restarted: incarnation 9 replaces this process"): a peer told it that a newer
    /// process of its node took its place, or that its node was removed.
    ///
    /// A fenced process takes no one in any more: a node that joins through it, or a
    /// restarted peer, is refused ([`Error::Fenced`]), and connections in their handshake
    /// are ended, so that a process stopped and resumed after its replacement joined cannot
    /// lure a joining node into taking it for the live one. Its other connections stay
    /// until their peers fence it too; what runs above should stop acting for the node.
    pub fn fenced(&self) -> Option<&str> {
        self.fenced.as_deref()
    }

    /// `by` fenced this process out of the cluster, for `reason`.
    pub(super) fn fence(&mut self, by: NodeId, reason: String) {
        if self.fenced.is_none() {
            let fenced = format!("node {by}: {reason}");
            let (node, incarnation) = (self.me, self.joining.incarnation);
            if let Some(connections) = &mut self.connections {
                connections.abandon_all(|| Error::Fenced { node, incarnation, reason: fenced.clone() });
            }
            self.fenced = Some(fenced);
            for newcomer in std::mem::take(&mut self.newcomers).into_keys() {
                self.give_back_qps(newcomer);
            }
        }
        self.lose(by, PeerLoss::Fenced { reason });
    }

    /// Refuses to take anyone in once fenced.
    pub(super) fn check_not_fenced(&self) -> Result<()> {
        match self.fenced {
            Some(_) => Err(self.fenced_error()),
            None => Ok(()),
        }
    }

    fn fenced_error(&self) -> Error {
        let reason = self.fenced.clone().unwrap_or_default();
        Error::Fenced { node: self.me, incarnation: self.joining.incarnation, reason }
    }

    /// Why `node` is not a peer: removed, or never one.
    pub(super) fn no_peer(&self, node: NodeId) -> Error {
        match self.removed.get(&node) {
            Some(&incarnation) => Error::PeerRemoved { node, incarnation },
            None => Error::UnknownPeer(node),
        }
    }

    /// Moves our QPs to `node` to ERROR and keeps them as a spare set; forgets who owned
    /// them.
    pub(super) fn give_back_qps(&mut self, node: NodeId) {
        for number in self.local.detach(node) {
            self.qp_owners.remove(&number);
        }
    }
}
