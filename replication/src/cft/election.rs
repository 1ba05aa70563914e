//! [`Election`]: who should lead, from what the failure detectors say. Mu's rule: the
//! lowest id among the replicas believed alive; a replica that restarted without its
//! state never counts itself until it is brought up to date.

use std::collections::{BTreeMap, BTreeSet};

use usec_qp_pool::NodeId;

/// What this replica believes about each peer's liveness.
///
/// Besides the detectors' verdicts, direct evidence of life counts: a peer that just wrote
/// a permission request into this replica's inbox, or whose entries just decided more of
/// this replica's log, is alive whatever a stuck heartbeat READ says. Such evidence keeps
/// the peer trusted for a grace period ([`Election::heard_from`]); without it, a replica
/// whose heartbeat READs of a live candidate are stuck behind an RC retransmission timer
/// would grant the candidate and depose it again at every turn.
#[derive(Clone, Debug)]
pub struct Election {
    me: NodeId,
    trusted: BTreeMap<NodeId, bool>,
    /// Per peer: trusted until this time, whatever the detectors say.
    heard_until: BTreeMap<NodeId, u64>,
    /// Peers known to be new processes without their state yet: they may not lead, so
    /// nobody defers to them (they campaign once they count again, and say so by asking).
    ineligible: BTreeSet<NodeId>,
    now_ns: u64,
}

impl Election {
    /// Every peer trusted at first (detectors start trusting, as they do).
    pub fn new(me: NodeId, peers: &[NodeId]) -> Election {
        Election {
            me,
            trusted: peers.iter().map(|&peer| (peer, true)).collect(),
            heard_until: BTreeMap::new(),
            ineligible: BTreeSet::new(),
            now_ns: 0,
        }
    }

    /// The time the next choices are made at.
    pub fn set_now(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
    }

    /// `peer` showed it is alive: trust it for `grace_ns` from now.
    pub fn heard_from(&mut self, peer: NodeId, grace_ns: u64) {
        if self.trusted.contains_key(&peer) {
            let until = self.now_ns.saturating_add(grace_ns);
            let entry = self.heard_until.entry(peer).or_insert(0);
            *entry = (*entry).max(until);
        }
    }

    /// Forgets what was heard from `peer` (the provider says its process does not run:
    /// that evidence of life is stale); true if it kept `peer` trusted until later.
    pub fn forget_heard(&mut self, peer: NodeId) -> bool {
        self.heard_until.remove(&peer).is_some_and(|until| until > self.now_ns)
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

    /// Records whether `peer` may lead: a restarted process may not until a leader caught
    /// it up; a permission request or a status saying it counts again says it may.
    pub fn set_eligible(&mut self, peer: NodeId, eligible: bool) {
        if eligible {
            self.ineligible.remove(&peer);
        } else if self.trusted.contains_key(&peer) {
            self.ineligible.insert(peer);
        }
    }

    /// Whether `peer` is believed alive.
    pub fn is_trusted(&self, peer: NodeId) -> bool {
        self.trusted.get(&peer).copied().unwrap_or(false)
            || self.heard_until.get(&peer).is_some_and(|&until| until > self.now_ns)
    }

    /// The replica that should lead: the lowest trusted id, this replica included when
    /// `eligible`.
    pub fn choice(&self, eligible: bool) -> Option<NodeId> {
        let lowest_peer = self
            .trusted
            .keys()
            .copied()
            .filter(|&peer| self.is_trusted(peer) && !self.ineligible.contains(&peer))
            .min();
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
    ///
    /// A replica that does not count yet (restarted without its state) grants whoever
    /// asks: only replicas that count campaign, and it cannot tell which of its lower-id
    /// peers are themselves restarted ones still waiting to be caught up.
    pub fn may_grant(&self, candidate: NodeId, eligible: bool) -> bool {
        candidate != self.me && (!eligible || self.choice(eligible).is_none_or(|choice| candidate <= choice))
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
        election.set_trusted(node(0), false);
        election.set_now(100);
        election.heard_from(node(0), 50);
        assert_eq!(election.choice(true), Some(node(0)), "heard from just now");
        election.set_now(150);
        assert_eq!(election.choice(true), Some(node(1)), "the grace ran out");
        election.set_trusted(node(0), true);
        election.set_eligible(node(0), false);
        assert_eq!(election.choice(true), Some(node(1)), "a restarted 0 without its state may not lead");
        election.set_eligible(node(0), true);
        assert_eq!(election.choice(true), Some(node(0)));
        election.set_trusted(node(0), false);
        election.heard_from(node(0), 50);
        assert_eq!(election.choice(true), Some(node(0)), "heard from");
        assert!(election.forget_heard(node(0)));
        assert_eq!(election.choice(true), Some(node(1)), "the provider says 0 does not run");
        assert!(!election.forget_heard(node(0)));
    }
}
