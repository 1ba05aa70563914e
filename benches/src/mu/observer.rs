//! [`Observer`]: what a replica process does after each turn of its driver — notes
//! [`Mark`](crate::mu::marks::Mark)s, and, when told to, keeps one command of its own in
//! flight whenever it leads or takes over (the "client" whose first commit under a new
//! leader ends a failover).

use usec_qp_pool::NodeId;
use usec_replication::cft::{Event, RoleKind, Takeover};
use usec_replication::driver::MuDriver;
use usec_replication::log::CommandId;

use crate::mu::machine::Machine;
use crate::mu::marks::{MarkKind, Marks};

/// The client number a replica's own commands use: one per node, so that a command of
/// the old leader's found in the log by the new one is never confused with the new one's.
pub fn client_of(me: NodeId) -> u64 {
    1_000 + u64::from(me.get())
}

/// Watches one driver.
#[derive(Debug)]
pub struct Observer {
    me: NodeId,
    peers: Vec<(NodeId, bool)>,
    takeover: Option<Takeover>,
    grants: u64,
    /// Whether to keep a command in flight while leading or taking over.
    load: bool,
    command: Vec<u8>,
    outstanding: Option<CommandId>,
    sequence: u64,
    /// No command committed since the last candidacy yet.
    awaiting_first: bool,
    /// Commands of its own committed.
    pub commits: u64,
    /// What it noted.
    pub marks: Marks,
    /// The latest view learned, and whether its lease held yet (leadership on views).
    view: (u64, bool),
}

impl Observer {
    /// An observer of `driver`; with `load`, it proposes `command_bytes`-byte commands
    /// back to back whenever the replica leads or takes over.
    pub fn new(driver: &MuDriver<Machine>, load: bool, command_bytes: usize) -> Observer {
        let me = driver.replica().id();
        let peers = driver.cluster().peers().map(|peer| (peer, driver.suspects(peer))).collect();
        Observer {
            me,
            peers,
            takeover: None,
            grants: driver.replica().stats().grants,
            load,
            command: vec![0x5a; command_bytes],
            outstanding: None,
            sequence: 0,
            awaiting_first: true,
            commits: 0,
            marks: Marks::default(),
            view: (0, true),
        }
    }

    /// Looks at the driver after a turn made at `now_ns` (the driver must keep its events:
    /// [`MuDriver::keep_events`]).
    pub fn after_turn(&mut self, driver: &mut MuDriver<Machine>, now_ns: u64) {
        for (peer, suspected) in &mut self.peers {
            let now_suspected = driver.suspects(*peer);
            if now_suspected != *suspected {
                *suspected = now_suspected;
                let peer = peer.get();
                let kind =
                    if now_suspected { MarkKind::Suspected { peer } } else { MarkKind::Trusted { peer } };
                self.marks.note(now_ns, kind);
            }
        }
        for event in driver.drain_events() {
            match event {
                Event::RoleChanged { role: RoleKind::Candidate, .. } => {
                    self.marks.note(now_ns, MarkKind::Candidate);
                    self.awaiting_first = true;
                }
                Event::RoleChanged { role: RoleKind::Leader, .. } => {
                    self.marks.note(now_ns, MarkKind::Leader)
                }
                Event::RoleChanged { role: RoleKind::Follower, leader } => {
                    let leader = leader.map(NodeId::get);
                    self.marks.note(now_ns, MarkKind::Follower { leader });
                }
                Event::Committed { id, .. } if Some(id) == self.outstanding => {
                    self.outstanding = None;
                    self.commits += 1;
                    if self.awaiting_first {
                        self.awaiting_first = false;
                        self.marks.note(now_ns, MarkKind::FirstCommit);
                    }
                }
                Event::NotCommitted { id, .. } | Event::Superseded { id } if Some(id) == self.outstanding => {
                    self.outstanding = None;
                }
                _ => {}
            }
        }
        if let Some(views) = driver.views() {
            let view = views.view().id();
            if view != self.view.0 {
                self.view = (view, false);
                self.marks.note(now_ns, MarkKind::ViewLearned { view });
            }
            let lease = views.view_lease();
            if !self.view.1 && lease.view_id == view && lease.is_active(now_ns) {
                self.view.1 = true;
                self.marks.note(now_ns, MarkKind::ViewActive { view });
            }
        }
        let replica = driver.replica();
        let takeover = replica.takeover();
        if takeover == Some(Takeover::Recovery) && self.takeover != takeover {
            self.marks.note(now_ns, MarkKind::Granted);
        }
        self.takeover = takeover;
        let grants = replica.stats().grants;
        if grants > self.grants {
            self.grants = grants;
            self.marks.note(now_ns, MarkKind::GaveGrant);
        }
        let taking_part = matches!(replica.role(), RoleKind::Leader | RoleKind::Candidate);
        if self.load && taking_part && self.outstanding.is_none() {
            self.sequence += 1;
            let id = CommandId { client: client_of(self.me), sequence: self.sequence };
            if driver.replica_mut().propose(id, &self.command).is_ok() {
                self.outstanding = Some(id);
            }
        }
    }
}
