//! The waiter against a model, for random completion orders and failures; and the claims
//! of the module documentation one by one.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

fn node(id: u16) -> NodeId {
    NodeId::new(id).unwrap()
}

fn wr(kind: u8, peer: NodeId, sequence: u64) -> WrId {
    WrId::new(app(kind), peer, sequence).unwrap()
}

/// Kinds of the application range, by index.
fn app(index: u8) -> WrKind {
    WrKind::application(index)
}

#[test]
fn majority_is_right_for_even_and_odd_sizes() {
    let expected = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4), (8, 5), (9, 5), (10, 6)];
    for (n, majority_of_n) in expected {
        assert_eq!(majority(n), majority_of_n, "majority({n})");
        // Two majorities always overlap; Dory's (n + 1) / 2 does not for even n.
        assert!(2 * majority(n) > n);
    }
    assert_eq!((4 + 1) / 2, 2, "Dory's formula gives 2 of 4: two disjoint halves");
}

#[test]
fn a_quorum_is_met_without_waiting_for_all() {
    let peers: Vec<NodeId> = (1..=4).map(node).collect();
    let mut waiter = QuorumWaiter::new();
    let key = waiter.begin(app(1), 7, &peers, majority(5) - 1).unwrap();
    assert!(waiter.observe(wr(1, node(3), 7), Status::Success));
    assert_eq!(waiter.status(key).unwrap(), QuorumStatus::Pending { acked: 1, failed: 0, need: 2 });
    assert!(waiter.observe(wr(1, node(1), 7), Status::Success));
    assert_eq!(waiter.status(key).unwrap(), QuorumStatus::Met);
    let outcome = waiter.finish(key).unwrap();
    assert_eq!(outcome.pending, vec![node(2), node(4)]);
    assert!(outcome.is_met());
    // Late completions of a finished round are still the waiter's, and still count as failures.
    assert!(waiter.observe(wr(1, node(4), 7), Status::RetryExceeded));
    assert!(waiter.is_failed(node(4)));
    assert!(!waiter.observe(wr(2, node(4), 7), Status::Success), "application kind 2 is somebody else's");
}

#[test]
fn failed_peers_carry_over_to_later_rounds() {
    let peers: Vec<NodeId> = (1..=4).map(node).collect();
    let mut waiter = QuorumWaiter::new();
    let first = waiter.begin(app(1), 1, &peers, 2).unwrap();
    waiter.observe(wr(1, node(2), 1), Status::RetryExceeded);
    waiter.observe(wr(1, node(3), 1), Status::Flushed);
    assert_eq!(waiter.status(first).unwrap(), QuorumStatus::Pending { acked: 0, failed: 2, need: 2 });
    waiter.observe(wr(1, node(2), 1), Status::Success);
    let second = waiter.begin(app(1), 2, &peers, 3).unwrap();
    assert_eq!(waiter.status(second).unwrap(), QuorumStatus::Impossible, "2 of 4 peers are failed");
    assert_eq!(waiter.failed_peers().collect::<Vec<_>>(), vec![node(2), node(3)]);
    assert!(waiter.revive(node(2)));
    assert_eq!(waiter.status(second).unwrap(), QuorumStatus::Pending { acked: 0, failed: 1, need: 3 });
    assert_eq!(waiter.in_flight(), 2);
}

#[test]
fn bad_rounds_are_refused() {
    let peers = [node(1), node(2)];
    let mut waiter = QuorumWaiter::new();
    assert!(waiter.begin(app(0), 1 << 44, &peers, 1).is_err());
    assert!(waiter.begin(app(0), 0, &peers, 3).unwrap_err().to_string().contains("quorum size = 3"));
    assert!(waiter.begin(app(0), 0, &[node(1), node(1)], 1).unwrap_err().to_string().contains("repeat"));
    let key = waiter.begin(app(0), 0, &peers, 0).unwrap();
    assert_eq!(waiter.status(key).unwrap(), QuorumStatus::Met, "nothing needed, nothing awaited");
    assert!(waiter.begin(app(0), 0, &peers, 1).unwrap_err().to_string().contains("in flight already"));
    waiter.finish(key).unwrap();
    assert!(matches!(waiter.status(key), Err(Error::UnknownQuorum { sequence: 0, .. })));
    assert!(waiter.status(key).unwrap_err().to_string().contains("application kind 0"));
}

#[derive(Clone, Debug)]
enum Step {
    Complete { member: usize, success: bool },
    Foreign { member: usize },
    MarkFailed { member: usize },
    Revive { member: usize },
}

fn step(n: usize) -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..n, any::<bool>()).prop_map(|(member, success)| Step::Complete { member, success }),
        1 => (0..n).prop_map(|member| Step::Foreign { member }),
        1 => (0..n).prop_map(|member| Step::MarkFailed { member }),
        1 => (0..n).prop_map(|member| Step::Revive { member }),
    ]
}

fn scenario() -> impl Strategy<Value = (usize, usize, Vec<bool>, Vec<Step>, u64)> {
    (1usize..=8).prop_flat_map(|n| {
        (
            Just(n),
            0..=n,
            proptest::collection::vec(proptest::bool::weighted(0.2), n),
            proptest::collection::vec(step(n), 0..24),
            0u64..(1 << 44),
        )
    })
}

/// The simplest statement of the rules.
#[derive(Debug)]
struct Model {
    need: usize,
    failed: BTreeSet<NodeId>,
    members: BTreeMap<NodeId, Option<bool>>,
}

impl Model {
    fn status(&self) -> QuorumStatus {
        let acked = self.members.values().filter(|result| **result == Some(true)).count();
        let failed = self
            .members
            .iter()
            .filter(|(peer, result)| {
                **result == Some(false) || (result.is_none() && self.failed.contains(peer))
            })
            .count();
        let pending = self.members.len() - acked - failed;
        if acked >= self.need {
            QuorumStatus::Met
        } else if acked + pending < self.need {
            QuorumStatus::Impossible
        } else {
            QuorumStatus::Pending { acked, failed, need: self.need }
        }
    }
}

proptest! {
    #[test]
    fn the_waiter_agrees_with_the_model((n, need, prefailed, steps, sequence) in scenario()) {
        // Spread-out ids, so a mix-up of index and id would show.
        let peers: Vec<NodeId> = (0..n).map(|index| node(index as u16 * 97 + 5)).collect();
        let mut waiter = QuorumWaiter::new();
        let mut model = Model { need, failed: BTreeSet::new(), members: peers.iter().map(|&peer| (peer, None)).collect() };
        for (&peer, &failed) in peers.iter().zip(&prefailed) {
            if failed {
                waiter.mark_failed(peer);
                model.failed.insert(peer);
            }
        }
        let key = waiter.begin(app(3), sequence, &peers, need).unwrap();
        prop_assert_eq!(waiter.status(key).unwrap(), model.status());
        for step in steps {
            match step {
                Step::Complete { member, success } => {
                    let peer = peers[member];
                    let status = if success { Status::Success } else { Status::RemoteAccessError };
                    prop_assert!(waiter.observe(wr(3, peer, sequence), status));
                    if !success {
                        model.failed.insert(peer);
                    }
                    let result = model.members.get_mut(&peer).unwrap();
                    result.get_or_insert(success);
                }
                Step::Foreign { member } => {
                    prop_assert!(!waiter.observe(wr(4, peers[member], sequence), Status::RemoteAccessError));
                }
                Step::MarkFailed { member } => {
                    waiter.mark_failed(peers[member]);
                    model.failed.insert(peers[member]);
                }
                Step::Revive { member } => {
                    prop_assert_eq!(waiter.revive(peers[member]), model.failed.remove(&peers[member]));
                }
            }
            prop_assert_eq!(waiter.status(key).unwrap(), model.status());
            prop_assert_eq!(waiter.failed_peers().collect::<BTreeSet<_>>(), model.failed.clone());
            let outcome = waiter.outcome(key).unwrap();
            prop_assert_eq!(outcome.acked.len() + outcome.failed.len() + outcome.pending.len(), n);
        }
    }
}
