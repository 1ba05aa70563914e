//! [`ViewLease`]: Mu's leadership subordinate to membership views (uKharon), and what
//! makes a leader's local reads linearizable.
//!
//! A replica that follows views ([`Replica::follow_views`](crate::cft::Replica::follow_views))
//! no longer picks its leader from its own failure detectors. The membership service
//! (`usec-membership`) decides views; each view designates one leader, a function of its
//! consensus members alone (the lowest node id among them); and an Active(view) lease
//! (lease-clock's `ActiveLease`) says whether the view is still active on this replica's
//! clock. The driver hands the replica what it knows as a [`ViewLease`], a plain value:
//! the replica reads no clock and knows nothing of Paxos.
//!
//! # The rules
//!
//! - A replica campaigns only while it is the designated leader of the latest view it
//!   knows *and* that view is active ([`ViewLease::is_active`]); it grants its log only to
//!   the designated leader of the latest view it knows (or to anyone while it does not
//!   count yet, as plain Mu does). A candidacy or leadership belongs to the *leader run*
//!   it started in: consecutive views, each learned by this replica, each designating this
//!   process ([`ViewLease::leader_run`]). A replica that learns a view designating another,
//!   or a view that is not the next one (a view it skipped may have designated another),
//!   steps down and campaigns again if designated. A view that changes the voters but
//!   keeps the leader — a follower suspected and removed, or added back — continues the
//!   run: the leader keeps leading with its majority (its lease on the new view, an
//!   incompatible one, still waits for the old leases to run out before it reads locally).
//! - Mu's permissions still guarantee one writer per log whatever the views say.
//! - **Local reads.** A replica may answer a read-only command from its own state at
//!   local time `t` ([`Replica::local_read_until`](crate::cft::Replica::local_read_until))
//!   only when it leads in the current leader run, its takeover is over (it applied every
//!   entry its recovery found, so its state holds every command any earlier leader
//!   acknowledged), and the view is active at `t`.
//!
//! # Why a local read is never stale
//!
//! Let replica A answer a read at real time `t` with A leading in leader run `R` and its
//! latest view `v` (a view of `R`) active. Take a write `w` acknowledged at real time
//! `t_w < t`.
//!
//! - If A acknowledged `w` itself, it applied `w` before acknowledging it.
//! - If a leader of an earlier leadership acknowledged `w`, `w` was decided on a majority
//!   before A's permission switch revoked that leader on a majority (two majorities meet;
//!   after the revocation no WRITE of the old leader lands), so A's recovery adopted it
//!   and A applied it before its takeover was over.
//! - No leadership after A's can have acknowledged anything before `t`. A later leader B
//!   campaigned as the designated leader of a view `w` later than `v`: every view of `R`
//!   designates A, and A steps down as soon as it learns a view that does not continue
//!   `R`. The designated leader is a function of the consensus members, so somewhere
//!   between `v` and `w` the consensus members changed: `w` belongs to a later epoch (run
//!   of compatible views) than `v`. B campaigned only once `w` was active, which by the
//!   Active(view) rule (`usec_lease_clock::lease`, "Why it is safe") is after every lease
//!   on a view of an older epoch — A's on `v` included — has expired in real time. A's
//!   view was active at `t`, so B's campaign, and any acknowledgement of B's, comes after
//!   `t`.
//!
//! Hence A's state at `t` holds every write acknowledged before `t`. A deposed leader that
//! was paused (SIGSTOP) finds its lease expired on its next look: a confirmation counts
//! `Δ` from when its READs were posted, and a renewal needs a majority of acceptors that
//! have accepted nothing for the next view.

use usec_qp_pool::NodeId;

/// What the membership service says, as the replica's driver hands it over: see the
/// [module documentation](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewLease {
    /// The latest view known.
    pub view_id: u64,
    /// The first view of the run of compatible views the latest belongs to (they share
    /// one lease).
    pub epoch: u64,
    /// The first view of the *leader run* the latest belongs to: the consecutive views,
    /// each learned here, that all designate the latest's designated leader. A leadership
    /// is tied to it: a view that changes the voters but keeps the leader continues it.
    pub leader_run: u64,
    /// The view's designated leader, if it is one of the group's replicas in the process
    /// the view names (an older process of this node is no leader of this process).
    pub leader: Option<NodeId>,
    /// From when the view may be active, on the replica's clock.
    pub active_from_ns: u64,
    /// Until when the latest confirmation keeps it active, on the replica's clock; 0 if
    /// it was never confirmed.
    pub active_until_ns: u64,
}

impl ViewLease {
    /// No view known yet: nobody leads, nothing is active.
    pub const NONE: ViewLease = ViewLease {
        view_id: 0,
        epoch: 0,
        leader_run: 0,
        leader: None,
        active_from_ns: u64::MAX,
        active_until_ns: 0,
    };

    /// Whether the view is active at `now_ns` (the replica's clock, read right before the
    /// action it permits).
    #[inline]
    pub fn is_active(&self, now_ns: u64) -> bool {
        (now_ns >= self.active_from_ns) & (now_ns < self.active_until_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_is_active_from_its_start_until_its_confirmation_runs_out() {
        let lease = ViewLease { active_from_ns: 100, active_until_ns: 200, ..ViewLease::NONE };
        assert!(
            !lease.is_active(99) && lease.is_active(100) && lease.is_active(199) && !lease.is_active(200)
        );
        assert!(!ViewLease::NONE.is_active(0) && !ViewLease::NONE.is_active(u64::MAX));
    }
}
