//! Rights: remote write per peer and role on the connected QP (the fast way, what Mu's
//! leader switch uses), and a region's rights for every peer at once by re-registration
//! (the alternative; Dory tried it and found it slower).
//!
//! Revoking is a fence: when [`Cluster::revoke_write`] returns, no WRITE from that peer
//! through that QP can land any more (the verbs layer guarantees it for
//! [`QueuePair::set_access`](usec_verbs::QueuePair::set_access)). A WRITE that hits the
//! revoked QP fails at the writer with a remote invalid request, and, as on a NIC, moves
//! *both* QPs to ERROR; granting again then needs a reconnect, which
//! [`Cluster::grant_write`] says with [`Error::QpNeedsReconnect`]. The rights asked for are
//! remembered and applied whenever the QP is (re)connected.
//!
//! When a peer restarts and rejoins, its new process gets what was remembered for that
//! node, but never more than its roles' defaults ([`Cluster::rights_for_new_incarnation`]):
//! a revocation is this node's own decision about that node id (Mu's followers fence off
//! everyone but their leader), which a restart does not undo, while a grant went to the
//! old process and what it knew, and the new one starts knowing nothing. A protocol that
//! still means a grant for the new process makes it again on
//! [`ControlEvent::Rejoined`](crate::ControlEvent::Rejoined).

use usec_regions::RemoteRegion;
use usec_verbs::{AccessFlags, QpState};

use super::Cluster;
use crate::error::{Error, Result};
use crate::role::RoleId;
use crate::spec::NodeId;
use crate::wire::{Message, RegionOffer, RegionUpdate};

impl Cluster {
    /// Lets `peer` WRITE through the QP of `role` again.
    ///
    /// Fails with [`Error::QpNeedsReconnect`] if the QP is in ERROR (a refused WRITE moved
    /// it there): the grant is remembered and takes effect when [`Cluster::reconnect`]
    /// reconnects it. A QP in RESET (a reconnect under way) also takes it on connecting.
    pub fn grant_write(&mut self, peer: NodeId, role: RoleId) -> Result<()> {
        self.change_write(peer, role, true)
    }

    /// Stops `peer` from WRITEing through the QP of `role`. When it returns, no WRITE from
    /// `peer` through that QP can land. A QP in ERROR or RESET serves nothing, so there is
    /// nothing to fence; the revocation is remembered for when it reconnects.
    pub fn revoke_write(&mut self, peer: NodeId, role: RoleId) -> Result<()> {
        self.change_write(peer, role, false)
    }

    /// The rights `peer` has (or gets on reconnecting) on the QP of `role`.
    pub fn peer_access(&self, peer: NodeId, role: RoleId) -> Result<AccessFlags> {
        self.local.check_role(role)?;
        let rights = self.local.access.get(&peer).filter(|_| self.peers.contains_key(&peer));
        let rights = rights.ok_or_else(|| self.no_peer(peer))?;
        Ok(rights[role.index()])
    }

    /// Before `peer`'s QPs connect to a new process of it: the rights remembered for it,
    /// less whatever its roles' defaults do not give.
    pub(super) fn rights_for_new_incarnation(&mut self, peer: NodeId) {
        let defaults = self.local.roles.iter().map(|role| role.access);
        let rights = self.local.access.get_mut(&peer).expect("a peer");
        for (right, default) in rights.iter_mut().zip(defaults) {
            *right &= default;
        }
    }

    fn change_write(&mut self, peer: NodeId, role: RoleId, allow: bool) -> Result<()> {
        let mut access = self.peer_access(peer, role)?;
        access.set(AccessFlags::REMOTE_WRITE, allow);
        self.local.access.get_mut(&peer).expect("checked")[role.index()] = access;
        let name = self.local.role_name(role).to_string();
        let qp = self.local.qp_mut(peer, role)?;
        match qp.state() {
            QpState::Init | QpState::Rts => qp
                .set_access(access)
                .map_err(Error::verbs(format!("changing node {peer}'s rights on the {name:?} QP"))),
            QpState::Reset => Ok(()),
            QpState::Error if !allow => Ok(()),
            state => Err(Error::QpNeedsReconnect { peer, role: name, state }),
        }
    }

    /// Re-registers region `name` with `access`, for every peer at once; returns its
    /// descriptor. When this returns, no operation with the old rights can land.
    ///
    /// Where re-registration changes the keys (ibverbs may; the soft and sim providers keep
    /// them), the new descriptor is sent to every peer over its control connection; peers
    /// apply it in [`Cluster::poll_control`] (reporting [`ControlEvent::RegionUpdated`]).
    /// Until then their operations carry the old rkey and fail with a remote access
    /// error: never land somewhere else.
    ///
    /// [`ControlEvent::RegionUpdated`]: crate::ControlEvent::RegionUpdated
    pub fn set_region_access(&mut self, name: &str, access: AccessFlags) -> Result<RemoteRegion> {
        let unknown = || Error::UnknownRegion { name: name.to_string(), owner: "registered here".into() };
        let mr = self.local.regions.get_mut(name).ok_or_else(unknown)?;
        let before = mr.remote_region();
        mr.rereg_access(access).map_err(Error::verbs(format!("re-registering region {name:?}")))?;
        let after = mr.remote_region();
        if after != before {
            let update = Message::RegionUpdate(RegionUpdate {
                regions: vec![RegionOffer { name: name.to_string(), descriptor: after.to_bytes().to_vec() }],
            });
            let live: Vec<NodeId> =
                self.peers.iter().filter(|(_, peer)| peer.lost.is_none()).map(|(&node, _)| node).collect();
            for node in live {
                let peer = self.peers.get_mut(&node).expect("a peer");
                peer.control.as_mut().expect("a live peer has its connection").channel.send(&update);
                if let Some(reason) = self.flush_peer(node) {
                    self.lose(node, reason);
                }
            }
        }
        Ok(after)
    }
}
