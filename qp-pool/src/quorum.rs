//! Quorum waiting, sans IO: "k of these n operations completed", with failed peers
//! remembered across rounds.
//!
//! A round is a set of operations of one kind and sequence number, one per peer (the
//! [`WrId`]s `(kind, peer, sequence)`), and the number `need` of successes that make the
//! quorum. The round is met as soon as `need` operations succeeded: never waiting for all
//! of them when `need < n`, so one slow or dead peer cannot stall it (Dory's log recycling
//! and permission steps waited for every follower). An error completion marks its peer
//! failed; later rounds count a failed peer's operations as failed until they complete
//! otherwise or the peer is [revived](QuorumWaiter::revive), and a round that can no longer
//! reach `need` is [`QuorumStatus::Impossible`] at once rather than at a timeout.
//!
//! The completion loop calls [`QuorumWaiter::observe`] and [`QuorumWaiter::status`] on
//! every spin: neither allocates (each round keeps its counts, failed peers are a fixed
//! bitmap). [`QuorumWaiter::begin`] allocates the round's member list and
//! [`QuorumWaiter::outcome`] its report; call those once per round.
//!
//! Majorities: [`majority`]`(n)` is `n / 2 + 1`, which for even `n` is one more than
//! Dory's `(n + 1) / 2` (that one lets two halves of a 4-node cluster both have a
//! "majority"). A leader that counts itself waits for `majority(n) - 1` followers.

use usec_verbs::Status;

use crate::error::{Error, Result};
use crate::node_set::NodeSet;
use crate::spec::NodeId;
use crate::wr_id::{check_sequence, WrId};
use crate::wr_kind::WrKind;

/// The smallest number of `n` nodes that any two such sets share a node: `n / 2 + 1`.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Names a round: the kind and sequence of its work-request ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuorumKey {
    /// The kind.
    pub kind: WrKind,
    /// The sequence number.
    pub sequence: u64,
}

/// Where a round stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumStatus {
    /// Not decided yet.
    Pending {
        /// Successes so far.
        acked: usize,
        /// Operations failed (or whose peer is failed).
        failed: usize,
        /// Successes needed.
        need: usize,
    },
    /// `need` operations succeeded.
    Met,
    /// Too many failed for `need` successes ever to come.
    Impossible,
}

/// The peers of a round by how their operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumOutcome {
    /// The round.
    pub key: QuorumKey,
    /// Successes needed.
    pub need: usize,
    /// Peers whose operation succeeded.
    pub acked: Vec<NodeId>,
    /// Peers whose operation failed, or that are failed.
    pub failed: Vec<NodeId>,
    /// Peers not heard from.
    pub pending: Vec<NodeId>,
}

impl QuorumOutcome {
    /// Whether the quorum was met.
    pub fn is_met(&self) -> bool {
        self.acked.len() >= self.need
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Member {
    Pending,
    Acked,
    Failed,
}

#[derive(Clone, Debug)]
struct Round {
    key: QuorumKey,
    need: usize,
    members: Vec<(NodeId, Member)>,
    /// Members [`Member::Acked`].
    acked: usize,
    /// Members [`Member::Failed`].
    failed: usize,
    /// Members still [`Member::Pending`] whose peer is failed (they count as failed).
    pending_failed: usize,
}

impl Round {
    fn status(&self) -> QuorumStatus {
        let failed = self.failed + self.pending_failed;
        let pending = self.members.len() - self.acked - failed;
        if self.acked >= self.need {
            QuorumStatus::Met
        } else if self.acked + pending < self.need {
            QuorumStatus::Impossible
        } else {
            QuorumStatus::Pending { acked: self.acked, failed, need: self.need }
        }
    }
}

/// Rounds in flight and the peers known to have failed.
#[derive(Clone, Debug, Default)]
pub struct QuorumWaiter {
    rounds: Vec<Round>,
    failed: NodeSet,
    /// Bit `k % 64` of word `k / 64`: kind `k` belongs to this waiter (it was used in a
    /// round).
    kinds: [u64; 4],
}

impl QuorumWaiter {
    /// No rounds, no failed peers.
    pub fn new() -> QuorumWaiter {
        QuorumWaiter::default()
    }

    /// Starts a round: one operation of `kind` and `sequence` to each of `peers`, `need` of
    /// which must succeed. From now on every completion of `kind` belongs to this waiter.
    pub fn begin(&mut self, kind: WrKind, sequence: u64, peers: &[NodeId], need: usize) -> Result<QuorumKey> {
        check_sequence(sequence)?;
        if need > peers.len() {
            return Err(Error::OutOfRange {
                what: "quorum size",
                value: need as u64,
                max: peers.len() as u64,
            });
        }
        let mut distinct = NodeSet::new();
        if !peers.iter().all(|&peer| distinct.insert(peer)) {
            return Err(Error::config(format!("quorum {kind}/{sequence}: peers {peers:?} repeat a node")));
        }
        let key = QuorumKey { kind, sequence };
        if self.rounds.iter().any(|round| round.key == key) {
            return Err(Error::config(format!("quorum {kind}/{sequence} is in flight already")));
        }
        let members = peers.iter().map(|&peer| (peer, Member::Pending)).collect();
        let pending_failed = peers.iter().filter(|&&peer| self.failed.contains(peer)).count();
        self.rounds.push(Round { key, need, members, acked: 0, failed: 0, pending_failed });
        let value = usize::from(kind.value());
        self.kinds[value / 64] |= 1 << (value % 64);
        Ok(key)
    }

    /// Takes a completion: true if its kind belongs to this waiter (then it is consumed,
    /// even when its round is finished already), false if it is somebody else's. An error
    /// marks the peer failed.
    pub fn observe(&mut self, wr_id: WrId, status: Status) -> bool {
        if !self.owns(wr_id.kind()) {
            return false;
        }
        let (peer, success) = (wr_id.peer(), status.is_success());
        if !success {
            self.mark_failed(peer);
        }
        let key = QuorumKey { kind: wr_id.kind(), sequence: wr_id.sequence() };
        let peer_failed = self.failed.contains(peer);
        if let Some(round) = self.rounds.iter_mut().find(|round| round.key == key) {
            if let Some((_, member)) = round.members.iter_mut().find(|(member, _)| *member == peer) {
                if *member == Member::Pending {
                    if peer_failed {
                        round.pending_failed -= 1;
                    }
                    if success {
                        *member = Member::Acked;
                        round.acked += 1;
                    } else {
                        *member = Member::Failed;
                        round.failed += 1;
                    }
                }
            }
        }
        true
    }

    /// Where round `key` stands.
    pub fn status(&self, key: QuorumKey) -> Result<QuorumStatus> {
        Ok(self.round(key)?.status())
    }

    /// Round `key`'s peers by how their operation ended.
    pub fn outcome(&self, key: QuorumKey) -> Result<QuorumOutcome> {
        let round = self.round(key)?;
        let mut outcome = QuorumOutcome {
            key,
            need: round.need,
            acked: Vec::new(),
            failed: Vec::new(),
            pending: Vec::new(),
        };
        for &(peer, member) in &round.members {
            match member {
                Member::Acked => outcome.acked.push(peer),
                Member::Failed => outcome.failed.push(peer),
                Member::Pending if self.failed.contains(peer) => outcome.failed.push(peer),
                Member::Pending => outcome.pending.push(peer),
            }
        }
        Ok(outcome)
    }

    /// Ends round `key` and returns its outcome. Its operations still outstanding complete
    /// into nothing (an error still marks the peer failed).
    pub fn finish(&mut self, key: QuorumKey) -> Result<QuorumOutcome> {
        let outcome = self.outcome(key)?;
        self.rounds.retain(|round| round.key != key);
        Ok(outcome)
    }

    /// Rounds in flight.
    pub fn in_flight(&self) -> usize {
        self.rounds.len()
    }

    /// Whether `peer` is failed.
    pub fn is_failed(&self, peer: NodeId) -> bool {
        self.failed.contains(peer)
    }

    /// The failed peers, in id order.
    pub fn failed_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.failed.iter()
    }

    /// Marks `peer` failed (e.g. on a `PeerLost` event, or a failure detector's verdict).
    pub fn mark_failed(&mut self, peer: NodeId) {
        if self.failed.insert(peer) {
            self.count_pending_of(peer, |count| *count += 1);
        }
    }

    /// Forgets that `peer` failed (after a reconnect); returns whether it was.
    pub fn revive(&mut self, peer: NodeId) -> bool {
        let was = self.failed.remove(peer);
        if was {
            self.count_pending_of(peer, |count| *count -= 1);
        }
        was
    }

    /// Applies `change` to the failed-pending count of every round where `peer` is pending.
    fn count_pending_of(&mut self, peer: NodeId, change: impl Fn(&mut usize)) {
        for round in &mut self.rounds {
            if round.members.iter().any(|&(member, state)| member == peer && state == Member::Pending) {
                change(&mut round.pending_failed);
            }
        }
    }

    /// Whether completions of `kind` belong to this waiter (a round of that kind was begun).
    pub fn owns(&self, kind: WrKind) -> bool {
        let value = usize::from(kind.value());
        self.kinds[value / 64] & (1 << (value % 64)) != 0
    }

    fn round(&self, key: QuorumKey) -> Result<&Round> {
        self.rounds
            .iter()
            .find(|round| round.key == key)
            .ok_or(Error::UnknownQuorum { kind: key.kind, sequence: key.sequence })
    }
}

#[cfg(test)]
mod tests;
