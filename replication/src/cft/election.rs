//! [`Election`]: who should lead, from what the failure detectors say. Mu's rule: the
//! lowest id among the replicas believed alive; a replica that restarted without its
//! state never counts itself until it is brought up to date.

use std::collections::BTreeMap;

use usec_qp_pool::NodeId;

/// What this replica believes about each peer's liveness.
#[derive(Clone, Debug)]
pub struct Election {
    me: NodeId,
    trusted: BTreeMap<NodeId, bool>,
}

impl Election {
    /// Every peer trusted at first (detectors start trusting, as they do).
    pub fn new(me: NodeId, peers: &[NodeId]) -> Election {
        Election { me, trusted: peers.iter().map(|&peer| (peer, true)).collect() }
    }

    /// Records a detector's verdict; true when it changed something.
    pub fn set_trusted(&mut self, peer: NodeId, trusted: bool) -> bool {
        match self.trusted.get_mut(&peer) {
            Some(known) if *known != trusted => {
                *known = trusted;
                true
            }
            _ => false,
        }
    }

    /// Whether `peer` is believed alive.
    pub fn is_trusted(&self, peer: NodeId) -> bool {
        self.trusted.get(&peer).copied().unwrap_or(false)
    }

    /// The replica that should lead: the lowest trusted id, this replica included when
    /// `eligible`.
    pub fn choice(&self, eligible: bool) -> Option<NodeId> {
        let peers = self.trusted.iter().filter(|(_, &trusted)| trusted).map(|(&peer, _)| peer);
        let lowest_peer = peers.min();
        match (eligible, lowest_peer) {
            (true, Some(peer)) => Some(peer.min(self.me)),
            (true, None) => Some(self.me),
            (false, peer) => peer,
        }
    }

    /// Whether a permission request from `candidate` should be granted: it is this
    /// replica's choice or ranks above it (a lower id). A higher id asking while a lower
    /// one is believed alive is refused, so a live leader is not deposed by a replica
    /// that merely lost sight of it.
    pub fn may_grant(&self, candidate: NodeId, eligible: bool) -> bool {
        candidate != self.me && self.choice(eligible).is_none_or(|choice| candidate <= choice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u16) -> NodeId {
        NodeId::new(id).unwrap()
    }

    #[test]
    fn the_lowest_trusted_id_leads() {
        let mut election = Election::new(node(1), &[node(0), node(2)]);
        assert_eq!(election.choice(true), Some(node(0)));
        election.set_trusted(node(0), false);
        assert_eq!(election.choice(true), Some(node(1)));
        assert_eq!(election.choice(false), Some(node(2)), "an ineligible replica never picks itself");
        assert!(election.may_grant(node(2), false));
        assert!(!election.may_grant(node(2), true), "node 1 ranks above 2");
        election.set_trusted(node(0), true);
        assert!(election.may_grant(node(0), true));
    }
}
