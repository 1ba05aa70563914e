//! [`ReplicaStatus`]: what a replica's thread publishes about it for other threads — a
//! front end that routes clients (who leads?) and reports INFO (commit and applied
//! index) while the driver itself is owned by the replica's thread.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use usec_qp_pool::NodeId;

use crate::cft::{Replica, RoleKind};
use crate::state_machine::StateMachine;

/// No leader known.
const NO_LEADER: u32 = u32::MAX;

/// A replica's role, leader and indexes, updated by its driver every turn. Each field is
/// read on its own: a reader may see a role from one turn and an index from the next.
#[derive(Debug)]
pub struct ReplicaStatus {
    role: AtomicU8,
    leader: AtomicU32,
    commit: AtomicU64,
    applied: AtomicU64,
    /// Until when (the replica's clock) reads may be answered from the local state.
    local_reads_until: AtomicU64,
    /// On membership views: the latest view's id ([`NO_VIEW`] without views), how many
    /// consensus members it has, and whether this process is one (1) or not (0).
    view_id: AtomicU64,
    view_voters: AtomicU32,
    voting: AtomicU8,
}

/// No membership views.
const NO_VIEW: u64 = u64::MAX;

/// The membership view a replica knows, as published (INFO's `view_id`, `view_voters`,
/// `voting`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewStatus {
    /// The latest view's id.
    pub id: u64,
    /// Its consensus members.
    pub voters: u32,
    /// Whether this process is one of them.
    pub voting: bool,
}

impl Default for ReplicaStatus {
    fn default() -> ReplicaStatus {
        ReplicaStatus {
            role: AtomicU8::new(0),
            leader: AtomicU32::new(NO_LEADER),
            commit: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            local_reads_until: AtomicU64::new(0),
            view_id: AtomicU64::new(NO_VIEW),
            view_voters: AtomicU32::new(0),
            voting: AtomicU8::new(0),
        }
    }
}

impl ReplicaStatus {
    /// Copies what `replica` says now.
    pub(crate) fn publish<S: StateMachine>(&self, replica: &Replica<S>) {
        self.publish_leadership(replica.role(), replica.leader());
        self.commit.store(replica.commit_index(), Ordering::Relaxed);
        self.applied.store(replica.applied_index(), Ordering::Relaxed);
    }

    /// Publishes a role and the leader followed (a front end's tests call it directly).
    pub(crate) fn publish_leadership(&self, role: RoleKind, leader: Option<NodeId>) {
        let role = match role {
            RoleKind::Follower => 0,
            RoleKind::Candidate => 1,
            RoleKind::Leader => 2,
        };
        self.role.store(role, Ordering::Relaxed);
        self.leader.store(leader.map_or(NO_LEADER, |node| u32::from(node.get())), Ordering::Relaxed);
    }

    /// Publishes [`Replica::local_read_until`] (0: no local reads now).
    pub(crate) fn publish_local_reads(&self, until_ns: u64) {
        self.local_reads_until.store(until_ns, Ordering::Release);
    }

    /// Publishes the latest membership view known.
    pub(crate) fn publish_view(&self, view: ViewStatus) {
        self.view_voters.store(view.voters, Ordering::Relaxed);
        self.voting.store(u8::from(view.voting), Ordering::Relaxed);
        self.view_id.store(view.id, Ordering::Release);
    }

    /// The latest membership view known, if the replica follows views.
    pub fn view(&self) -> Option<ViewStatus> {
        let id = self.view_id.load(Ordering::Acquire);
        (id != NO_VIEW).then(|| ViewStatus {
            id,
            voters: self.view_voters.load(Ordering::Relaxed),
            voting: self.voting.load(Ordering::Relaxed) == 1,
        })
    }

    /// Until when, on the replica's clock, a read may be answered from the replica's state
    /// in another thread (0: not now). The reader loads this *first*, then reads the state,
    /// then its clock (the same clock the replica's thread turns with), and uses the answer
    /// only if the clock is still below the value loaded: the value was published by a
    /// turn at which the replica led in an active view with its takeover applied, its state
    /// only grew since, and no later leader acknowledged anything before the view's lease
    /// ran out (see [`crate::cft::views`]). Loaded after the state, the value could belong
    /// to a leadership that began after the state was read (a follower promoted meanwhile,
    /// whose state then lacked its takeover). One atomic load: a value published a turn
    /// ago is an earlier end of the same lease or of an older one, never a later one for a
    /// leadership that already ended — once the replica steps down it publishes 0, and a
    /// reader that loaded the older value is still inside that lease.
    /// ([`crate::apps::server::MuBackend`] reads this way.)
    pub fn local_reads_until(&self) -> u64 {
        self.local_reads_until.load(Ordering::Acquire)
    }

    /// Its role.
    pub fn role(&self) -> RoleKind {
        match self.role.load(Ordering::Relaxed) {
            2 => RoleKind::Leader,
            1 => RoleKind::Candidate,
            _ => RoleKind::Follower,
        }
    }

    /// The leader it follows (itself when leading or taking over), if known.
    pub fn leader(&self) -> Option<NodeId> {
        let leader = self.leader.load(Ordering::Relaxed);
        u16::try_from(leader).ok().and_then(|id| NodeId::new(id).ok())
    }

    /// Entries below are decided, as far as it knows.
    pub fn commit_index(&self) -> u64 {
        self.commit.load(Ordering::Relaxed)
    }

    /// Entries below are applied.
    pub fn applied_index(&self) -> u64 {
        self.applied.load(Ordering::Relaxed)
    }
}
