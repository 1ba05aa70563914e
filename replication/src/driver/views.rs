//! [`Views`]: the membership service inside a Mu node (uKharon over Mu) — the Paxos port
//! and its CQ, a [`ViewChange`] fed by the node's failure detectors, and the node's
//! Active(view) lease, renewed from the acceptor reads the view change makes anyway. No
//! protocol logic: each turn it moves completions into the view change, views learned and
//! confirmations into the lease, and hands the replica the resulting [`ViewLease`].
//!
//! A restarted replica comes back in three steps, none of them an operator's:
//!
//! 1. **Back as a member that neither votes nor leads.** Its new process rejoins the
//!    cluster; the others add it to the next view as an `App` member. Its Mu state is
//!    blank (Mu catches it up from a snapshot and the log tail) and so is its acceptor
//!    memory, which nobody uses — not even itself — until a view names the new process.
//! 2. **An acceptor again, above that view.** Every node that learns a view naming the
//!    process admits its acceptor ([`PaxosPort::admit`]), for the instances above that
//!    view only: the old process's memory served none of those, so blank is the truth
//!    there (the argument: `usec_membership::port`).
//! 3. **A voter again.** The Mu leader, once the newcomer counts in its write quorum (it
//!    applied past an entry the leader created after admitting it: Mu's rule for a
//!    replica that lost its state), proposes the view that makes it a consensus member
//!    again ([`Views::promote`]). That view changes the voters, so it is incompatible with
//!    the one before: it starts only once every lease on the old one has run out. The
//!    leader keeps leading unless the promoted replica has the lowest id, which makes it
//!    the designated leader — which is why it must count in Mu first: a designated leader
//!    that could not campaign would stall the group. After that the group is back to full
//!    strength: it survives the loss of any other minority, views change, Mu commits.
//!
//! Two timing rules of the lease proof are kept here:
//!
//! - a view is handed to the lease with the time of the turn *after* the one that learned
//!   it: the turn's time was read before its completions were polled, so the decision may
//!   postdate it, while the next turn's time is read after it;
//! - a renewal is confirmed from the posting time of the acceptor READs that vouched for
//!   the view ([`ViewChange::vouched_since`]), which the learner took from the turn that
//!   posted them, read before they were posted.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use usec_lease_clock::lease::{ActiveConfig, ActiveLease, Renewal};
use usec_membership::{Layout, Member, MemberKind, PaxosPort, View, ViewChange, ViewChangeConfig, ViewEvent};
use usec_qp_pool::{Cluster, ControlEvent, NodeConfig, NodeId, Poller};

use crate::cft::ViewLease;
use crate::error::{Error, Result};

/// How a node's membership is set up; every node of the group uses the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewsConfig {
    /// The acceptors' layout.
    pub layout: Layout,
    /// The acceptors, in index order (normally every replica).
    pub acceptors: Vec<NodeId>,
    /// The first view: every replica of the group, its first process, a consensus member.
    pub first_view: View,
    /// The Active(view) lease: Δ, ρ, when to renew.
    pub lease: ActiveConfig,
    /// How often the acceptors are read unprompted (renewals also read them when due).
    pub scan_period_ns: u64,
    /// Seeds the proposer's back-offs.
    pub seed: u64,
}

impl ViewsConfig {
    /// The incarnation the first view gives every node's first process: each node's first
    /// process must present it (qp-pool's `NodeConfig::incarnation`), so that every node
    /// names the first view alike before any of them met; a replacement presents a higher
    /// one (the realtime clock, qp-pool's default).
    pub const FIRST_INCARNATION: u64 = 1;

    /// Defaults for a group of `nodes` (ids `0..nodes`, each an acceptor and a consensus
    /// member in its [first incarnation](ViewsConfig::FIRST_INCARNATION)): Δ = 20 µs,
    /// ρ = 1 000 ppm, a scan every 10 µs.
    pub fn for_group(nodes: &[NodeId]) -> Result<ViewsConfig> {
        let members = nodes
            .iter()
            .map(|&node| Member::new(node, ViewsConfig::FIRST_INCARNATION, MemberKind::Consensus))
            .collect();
        let first_view = View::new(0, members).map_err(|error| Error::Config(error.to_string()))?;
        Ok(ViewsConfig {
            layout: Layout::default(),
            acceptors: nodes.to_vec(),
            first_view,
            lease: ActiveConfig::default(),
            scan_period_ns: 10_000,
            seed: 1,
        })
    }

    /// Adds the Paxos role and regions to a node's configuration.
    pub fn configure(&self, node: NodeConfig) -> Result<NodeConfig> {
        let is_acceptor = self.acceptors.contains(&node.me);
        PaxosPort::configure(node, &self.layout, self.acceptors.len(), is_acceptor)
            .map_err(|error| Error::Config(format!("the membership's regions: {error}")))
    }
}

/// Where a node's membership stands, counted and timed (for tests and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewsStats {
    /// Views learned.
    pub views_learned: u64,
    /// Renewals confirmed.
    pub confirmations: u64,
    /// Restarted acceptors (this node's own included) admitted again.
    pub acceptors_admitted: u64,
}

/// One node's membership; see the [module documentation](self).
#[derive(Debug)]
pub struct Views {
    port: PaxosPort,
    poller: Poller,
    view_change: ViewChange<StdRng>,
    lease: ActiveLease,
    me: NodeId,
    incarnation: u64,
    /// Processes that a view made consensus members (the first view's included): those
    /// kept their state, so one that was left out (paused, cut off) and is trusted again
    /// comes back as a consensus member.
    voters: BTreeMap<NodeId, u64>,
    /// The view the lease holds (the latest handed to it).
    lease_view: Option<View>,
    /// The leader run the lease's view belongs to: its first view, and the leader (a
    /// process) all its views designate (see [`ViewLease::leader_run`]).
    leader_run: (u64, Option<Member>),
    /// Views learned in this turn, handed to the lease next turn with that turn's time.
    learned: Vec<View>,
    /// The latest confirmation handed to the lease: (view, posting time).
    confirmed: Option<(u64, u64)>,
    stats: ViewsStats,
    /// Every view learned and when (this node's clock), if kept.
    history: Option<Vec<(View, u64)>>,
}

impl Views {
    /// The membership of a cluster bootstrapped with [`ViewsConfig::configure`]'s roles,
    /// starting from the configured first view at `now_ns`. `rejoined`: this process
    /// replaces an earlier one of its node (its acceptor memory is new, and not used until
    /// a view names this process).
    pub fn new(cluster: &mut Cluster, config: &ViewsConfig, rejoined: bool, now_ns: u64) -> Result<Views> {
        let membership = |what: &'static str| {
            move |error: usec_membership::Error| Error::Config(format!("{what}: {error}"))
        };
        let mut port = PaxosPort::new(cluster, config.layout, &config.acceptors)
            .map_err(membership("the Paxos port"))?;
        if rejoined {
            port.suspend_local();
        }
        let poller = cluster.take_poller(&[port.role()]).map_err(Error::pool("taking the Paxos CQ"))?;
        let me = cluster.me();
        let incarnation = cluster.incarnation();
        let mut change_config = ViewChangeConfig::new(me, incarnation, config.layout, config.acceptors.len());
        change_config.scan_period_ns = config.scan_period_ns;
        let rng = StdRng::seed_from_u64(config.seed ^ (u64::from(me.get()) << 32) ^ incarnation);
        let view_change = ViewChange::new(change_config, config.first_view.clone(), rng, now_ns)
            .map_err(membership("the view change"))?;
        let lease = ActiveLease::new(config.lease).map_err(|error| Error::Config(error.to_string()))?;
        Ok(Views {
            port,
            poller,
            view_change,
            lease,
            me,
            incarnation,
            voters: config
                .first_view
                .members()
                .iter()
                .filter(|member| member.kind == MemberKind::Consensus)
                .map(|member| (member.node, member.incarnation))
                .collect(),
            lease_view: None,
            leader_run: (0, None),
            learned: vec![config.first_view.clone()],
            confirmed: None,
            stats: ViewsStats::default(),
            history: None,
        })
    }

    /// A failure detector's verdict on `peer`, whose process is `incarnation` as far as
    /// the cluster knows: a suspected member goes from the next view; a process trusted
    /// again that the view left out (paused, cut off) is added back — as a consensus
    /// member if a view made that very process one before (its acceptor memory and its
    /// log are intact), else as a member that neither votes nor leads until promoted (see
    /// the [module documentation](self)).
    pub fn handle_verdict(&mut self, now_ns: u64, peer: NodeId, incarnation: Option<u64>, suspected: bool) {
        self.view_change.handle_verdict(now_ns, peer, suspected);
        let Some(incarnation) = incarnation.filter(|_| !suspected) else { return };
        if self.view_change.view().contains(peer, incarnation) {
            return;
        }
        let voter = self.voters.get(&peer) == Some(&incarnation);
        let kind = if voter { MemberKind::Consensus } else { MemberKind::App };
        self.view_change.add(now_ns, Member::new(peer, incarnation, kind));
    }

    /// The failure detector trusts process `incarnation` of `peer` now, whatever it said
    /// before: if the latest view lacks that process, it is added back (as in
    /// [`Views::handle_verdict`]). The driver calls it now and then for every trusted
    /// peer — a member removed on another member's suspicion, which this node never
    /// shared, is otherwise never added back, and a view whose consensus members all but
    /// one failed could not change again.
    ///
    /// A node an operator removes here is not added back here; an operator removing a live
    /// member must do so on every member, or the others add it back.
    pub fn trusted(&mut self, now_ns: u64, peer: NodeId, incarnation: u64) {
        if self.view_change.view().contains(peer, incarnation) || self.view_change.is_removing(peer) {
            return;
        }
        let voter = self.voters.get(&peer) == Some(&incarnation);
        let kind = if voter { MemberKind::Consensus } else { MemberKind::App };
        self.view_change.add(now_ns, Member::new(peer, incarnation, kind));
    }

    /// A control event of the cluster: the port's QPs, and a restarted replica added back
    /// (as a member that does not vote nor lead: it has no state yet, and its acceptor
    /// waits for a view that names it).
    pub fn handle_control(&mut self, cluster: &Cluster, now_ns: u64, event: &ControlEvent) {
        self.port.handle_control(event);
        if let ControlEvent::Rejoined { peer, incarnation } = *event {
            // This node may have learned a view naming the new process before the rejoin
            // reached its cluster.
            if self.view_change.view().contains(peer, incarnation) {
                self.port.admit(cluster, peer, incarnation);
            }
            self.view_change.add(now_ns, Member::new(peer, incarnation, MemberKind::App));
        }
    }

    /// Makes process `incarnation` of `peer`, a member that does not vote yet, a consensus
    /// member in a coming view: Mu's leader calls it once that replica counts in its write
    /// quorum. Nothing if the latest view has no such member.
    pub fn promote(&mut self, now_ns: u64, peer: NodeId, incarnation: u64) {
        let view = self.view_change.view();
        if view.contains(peer, incarnation) && !view.is_consensus(peer, incarnation) {
            self.view_change.add(now_ns, Member::new(peer, incarnation, MemberKind::Consensus));
        }
    }

    /// The members of the latest view that a leader may [promote](Views::promote).
    pub fn non_voters(&self) -> impl Iterator<Item = Member> + '_ {
        self.view_change.view().members().iter().filter(|member| member.kind == MemberKind::App).copied()
    }

    /// Repairs the port's QPs now and then.
    pub fn maintain(&mut self, cluster: &mut Cluster, now_ns: u64) {
        self.port.maintain(cluster, now_ns);
    }

    /// One step; returns the lease to hand the replica if it changed, and whether
    /// anything happened.
    pub fn turn(&mut self, now_ns: u64, cluster: &mut Cluster) -> (Option<ViewLease>, bool) {
        let mut changed = false;
        for view in std::mem::take(&mut self.learned) {
            self.lease.on_view_learned(now_ns, &view);
            // A run goes on only through the very next view with the same leader: a view
            // this node skipped may have designated another.
            let leader = view.designated_leader();
            let next = self.lease_view.as_ref().is_some_and(|last| last.id() + 1 == view.id());
            if !(next && leader.is_some() && leader == self.leader_run.1) {
                self.leader_run = (view.id(), leader);
            }
            if let Some(history) = self.history.as_mut() {
                history.push((view.clone(), now_ns));
            }
            self.lease_view = Some(view);
            changed = true;
        }
        if self.lease.poll_renewal(now_ns).is_some() {
            self.view_change.wake_learner(now_ns);
        }
        let busy = self.port.deliver(&mut self.poller, now_ns, &mut self.view_change);
        self.view_change.tick(now_ns);
        self.port.post_all(cluster, &mut self.view_change);
        while let Some(ViewEvent::Learned { view, .. }) = self.view_change.poll_event() {
            self.stats.views_learned += 1;
            for member in view.members() {
                // A restarted acceptor the view names serves the instances above it.
                self.stats.acceptors_admitted +=
                    u64::from(self.port.admit(cluster, member.node, member.incarnation));
                if member.kind == MemberKind::Consensus {
                    self.voters.insert(member.node, member.incarnation);
                }
            }
            self.learned.push(view);
        }
        changed |= self.confirm(now_ns);
        let lease = changed.then(|| self.view_lease());
        (lease, busy || changed)
    }

    /// Hands the lease the acceptors' latest vouching for the view it holds.
    fn confirm(&mut self, now_ns: u64) -> bool {
        // A new process's own acceptor vouches for nothing until a view names it.
        let (Some(view), true) = (&self.lease_view, self.port.local_admitted()) else { return false };
        // The view change may know a newer view than the lease does (handed over next
        // turn): the acceptors vouch only for the newest.
        if self.view_change.view().id() != view.id() {
            return false;
        }
        let Some(issued_at_ns) = self.view_change.vouched_since() else { return false };
        if self.confirmed == Some((view.id(), issued_at_ns)) {
            return false;
        }
        self.confirmed = Some((view.id(), issued_at_ns));
        let renewal = Renewal { view_id: view.id(), issued_at_ns };
        let extended = self.lease.on_confirmed(now_ns, renewal).is_some();
        self.stats.confirmations += u64::from(extended);
        extended
    }

    /// What the replica is told: the view the lease holds, its leader, its lease.
    pub fn view_lease(&self) -> ViewLease {
        let Some(view) = &self.lease_view else { return ViewLease::NONE };
        let leader = view
            .designated_leader()
            .filter(|member| member.node != self.me || member.incarnation == self.incarnation)
            .map(|member| member.node);
        ViewLease {
            view_id: view.id(),
            epoch: self.lease.epoch_first_view().unwrap_or(view.id()),
            leader_run: self.leader_run.0,
            leader,
            active_from_ns: self.lease.active_from_ns().unwrap_or(u64::MAX),
            active_until_ns: self.lease.active_until_ns().unwrap_or(0),
        }
    }

    /// Records the proposer's decisions, for [`Views::take_trace`].
    pub fn set_trace(&mut self, on: bool) {
        self.view_change.proposer_mut().set_trace(on);
    }

    /// The proposer's decisions recorded since the last call.
    pub fn take_trace(&mut self) -> Vec<String> {
        self.view_change.proposer_mut().take_trace()
    }

    /// Its state in a line, for traces: the view, the learner, the port.
    pub fn describe(&self) -> String {
        format!(
            "{}; proposer idle {} instance {:?}; learner {}; port {}",
            self.view_change.view(),
            self.view_change.proposer().is_idle(),
            self.view_change.proposer().instance(),
            self.view_change.learner().describe(),
            self.port.describe()
        )
    }

    /// The latest view known (possibly newer than the lease's, for one turn).
    pub fn view(&self) -> &View {
        self.view_change.view()
    }

    /// The lease.
    pub fn lease(&self) -> &ActiveLease {
        &self.lease
    }

    /// What it did, counted.
    pub fn stats(&self) -> ViewsStats {
        self.stats
    }

    /// Keeps every view the lease takes, with the time, for [`Views::take_history`].
    pub fn keep_history(&mut self, keep: bool) {
        if !keep {
            self.history = None;
        } else if self.history.is_none() {
            self.history = Some(Vec::new());
        }
    }

    /// The views the lease took since the last call, each with this node's time then.
    pub fn take_history(&mut self) -> Vec<(View, u64)> {
        self.history.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The operator adds `member`.
    pub fn add(&mut self, now_ns: u64, member: Member) {
        self.view_change.add(now_ns, member);
    }

    /// The operator removes `node`'s member.
    pub fn remove(&mut self, now_ns: u64, node: NodeId) {
        self.view_change.remove(now_ns, node);
    }
}
