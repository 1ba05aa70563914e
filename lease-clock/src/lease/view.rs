//! [`LeaseView`]: what an Active(view) lease needs to know about a view — its id and its
//! voting members — and [`VoterSet`], the voting members compared to tell whether a view is
//! compatible with the one before it.

use usec_qp_pool::NodeId;

/// One voting member of a view: a node in one incarnation. A node that restarts comes back
/// in a new incarnation and is a different voter, so replacing a replica by a fresh process
/// on the same node id changes the voting members.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Voter {
    /// The node.
    pub node: NodeId,
    /// Which process of the node.
    pub incarnation: u64,
}

/// The voting members of a view, as a set: the order they are given in and repetitions do
/// not matter. Built once per view learned, never on the hot path.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct VoterSet {
    /// Sorted, without repetitions, so that equal sets compare equal.
    voters: Vec<Voter>,
}

impl VoterSet {
    /// The set of `voters`.
    pub fn new(voters: impl IntoIterator<Item = Voter>) -> VoterSet {
        let mut voters: Vec<Voter> = voters.into_iter().collect();
        voters.sort_unstable();
        voters.dedup();
        VoterSet { voters }
    }

    /// How many voters.
    pub fn len(&self) -> usize {
        self.voters.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.voters.is_empty()
    }

    /// Whether `voter` is one of them.
    pub fn contains(&self, voter: Voter) -> bool {
        self.voters.binary_search(&voter).is_ok()
    }

    /// The voters, in order of node id, then incarnation.
    pub fn iter(&self) -> impl Iterator<Item = Voter> + '_ {
        self.voters.iter().copied()
    }
}

impl FromIterator<Voter> for VoterSet {
    fn from_iter<I: IntoIterator<Item = Voter>>(voters: I) -> VoterSet {
        VoterSet::new(voters)
    }
}

/// What an Active(view) lease ([`crate::lease::ActiveLease`]) needs to know about a view.
/// A membership service's view type implements it; [`ViewSummary`] is the plain version.
///
/// Views are decided one per consensus instance, in order, and numbered by that instance:
/// the view after view `v` is view `v + 1`. A view is *compatible* with the view before it
/// when both have the same voting members (uKharon's `Consensus` kind); the others
/// (`Cache`, `App`) may differ. A compatible view inherits its predecessor's lease.
pub trait LeaseView {
    /// The view's id: the instance that decided it.
    fn view_id(&self) -> u64;

    /// Its voting members, in any order.
    fn voters(&self) -> impl Iterator<Item = Voter> + '_;
}

/// A view reduced to what the lease needs: for drivers and tests without a view type of
/// their own.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ViewSummary {
    /// The view's id.
    pub view_id: u64,
    /// Its voting members.
    pub voters: VoterSet,
}

impl LeaseView for ViewSummary {
    fn view_id(&self) -> u64 {
        self.view_id
    }

    fn voters(&self) -> impl Iterator<Item = Voter> + '_ {
        self.voters.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voter(node: u16, incarnation: u64) -> Voter {
        Voter { node: NodeId::new(node).unwrap(), incarnation }
    }

    #[test]
    fn voter_sets_ignore_order_and_repetition() {
        let one = VoterSet::new([voter(2, 0), voter(1, 0), voter(2, 0)]);
        let other: VoterSet = [voter(1, 0), voter(2, 0)].into_iter().collect();
        assert_eq!(one, other);
        assert_eq!(one.len(), 2);
        assert!(one.contains(voter(1, 0)) && !one.contains(voter(1, 1)));
        assert_eq!(one.iter().collect::<Vec<_>>(), vec![voter(1, 0), voter(2, 0)]);
        assert!(VoterSet::default().is_empty());
    }

    #[test]
    fn a_new_incarnation_is_a_different_voter() {
        let before = VoterSet::new([voter(1, 0), voter(2, 0), voter(3, 0)]);
        let replaced = VoterSet::new([voter(1, 0), voter(2, 1), voter(3, 0)]);
        assert_ne!(before, replaced);
    }
}
