//! [`ViewChange`]: a consensus member's view changes, sans IO — failure verdicts in, the
//! next view proposed, views decided by anyone learned.
//!
//! It holds a [`Proposer`] and a [`Learner`] over the same acceptors. Verdicts come from
//! the failure detectors (lease-clock's heartbeat detectors and the provider's peer-death
//! signal, which the driver feeds in); an operator adds or removes members. Whenever this
//! process is a consensus member of the latest view it knows and that view differs from
//! what it should be — a suspected member still in it, an added one missing — it
//! proposes the successor as the next instance (view id + 1). Other members may propose
//! other successors at the same time: Paxos picks one, and the losers propose again on top
//! of it if their change is still missing.
//!
//! If its learner sees views decided that it cannot read (their accepting majority lost a
//! member to a crash, the other acceptors lagged), its proposer [recovers](Proposer::recover)
//! the latest of them: a round that only adopts, and carries the value to a majority.
//!
//! Every view it learns — decided by its own proposer, or read by its learner — comes out
//! as [`ViewEvent::Learned`] with the local time it was learned at, which is what leases
//! on views are timed from.
//!
//! The instance rule the proposer needs (start `i` only once `i - 1` is decided) holds: a
//! member proposes view `v + 1` only once it knows view `v`. And a value is proposed at
//! most once per instance per process, by a member of the view before it — so a node
//! restarted as a new process, a new member, never shares an instance with its old self.
//!
//! The order of calls: [`ViewChange::handle_completion`] for every token of a membership
//! class, [`ViewChange::handle_verdict`] / [`ViewChange::add`] / [`ViewChange::remove`] as
//! news comes, [`ViewChange::tick`], then [`ViewChange::poll_action`] and
//! [`ViewChange::poll_event`] until empty.

use std::collections::{BTreeSet, VecDeque};

use rand::RngCore;
use usec_qp_pool::NodeId;

use crate::backoff::BackoffConfig;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::learner::{Learner, LearnerConfig};
use crate::op::{Action, Outcome, Role, Token};
use crate::proposer::{Proposer, ProposerConfig, ProposerEvent};
use crate::view::{Member, MemberKind, View, MAX_VIEW_BYTES};

/// How a view change role is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewChangeConfig {
    /// This node (its id is its proposer index).
    pub me: NodeId,
    /// Which process of it this is.
    pub incarnation: u64,
    /// The acceptors' layout.
    pub layout: Layout,
    /// How many acceptors.
    pub acceptors: usize,
    /// Back-off between lost rounds.
    pub backoff: BackoffConfig,
    /// A Paxos round not concluded by then is lost.
    pub round_timeout_ns: u64,
    /// How often the learner reads the acceptors unprompted.
    pub scan_period_ns: u64,
}

impl ViewChangeConfig {
    /// Defaults for process `incarnation` of `me`: 200 µs rounds, a scan every 20 µs.
    pub fn new(me: NodeId, incarnation: u64, layout: Layout, acceptors: usize) -> ViewChangeConfig {
        ViewChangeConfig {
            me,
            incarnation,
            layout,
            acceptors,
            backoff: BackoffConfig::default(),
            round_timeout_ns: 200_000,
            scan_period_ns: 20_000,
        }
    }
}

/// What a view change role reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewEvent {
    /// A view newer than any before was learned, at `at_ns` on the role's clock.
    Learned {
        /// The view.
        view: View,
        /// When it was learned.
        at_ns: u64,
        /// Whether this process's own proposal decided it.
        proposed_here: bool,
    },
}

/// A consensus member's view changes; see the [module documentation](self).
#[derive(Debug)]
pub struct ViewChange<R> {
    config: ViewChangeConfig,
    view: View,
    proposer: Proposer<R>,
    learner: Learner,
    suspected: BTreeSet<NodeId>,
    removals: BTreeSet<NodeId>,
    additions: Vec<Member>,
    /// The highest instance the proposer found decided by others and the learner has not
    /// read yet: not proposed again meanwhile.
    obsolete: u64,
    events: VecDeque<ViewEvent>,
}

impl<R: RngCore> ViewChange<R> {
    /// Starts from `view` (the configured first view, or one learned elsewhere) at `now_ns`;
    /// `rng`, seeded by the caller, draws the proposer's back-offs.
    pub fn new(config: ViewChangeConfig, view: View, rng: R, now_ns: u64) -> Result<ViewChange<R>> {
        let proposer_config = ProposerConfig {
            me: config.me.get(),
            acceptors: config.acceptors,
            backoff: config.backoff,
            round_timeout_ns: config.round_timeout_ns,
        };
        let proposer = Proposer::new(config.layout, proposer_config, rng)?;
        if config.layout.ring < 2 {
            // A view is computed from the one before: a ring of one would leave no way to
            // read the previous view once the next instance starts (see `Learner::stuck`).
            return Err(Error::Config("views need a ring of at least two positions".into()));
        }
        if config.layout.value_bytes_max < MAX_VIEW_BYTES {
            return Err(Error::Config(format!(
                "value buffers too small for a full view ({MAX_VIEW_BYTES} bytes)"
            )));
        }
        let learner_config =
            LearnerConfig { acceptors: config.acceptors, scan_period_ns: config.scan_period_ns };
        let learner = Learner::new(config.layout, learner_config, view.id(), now_ns);
        Ok(ViewChange {
            config,
            view,
            proposer,
            learner,
            suspected: BTreeSet::new(),
            removals: BTreeSet::new(),
            additions: Vec::new(),
            obsolete: 0,
            events: VecDeque::new(),
        })
    }

    /// Whether an operator's removal of `node` is pending here.
    pub fn is_removing(&self, node: NodeId) -> bool {
        self.removals.contains(&node)
    }

    /// The latest view known.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// A failure detector's verdict on `node`: suspected (it goes from the next view) or
    /// trusted again.
    pub fn handle_verdict(&mut self, now_ns: u64, node: NodeId, suspected: bool) {
        if suspected {
            self.suspected.insert(node);
        } else {
            self.suspected.remove(&node);
        }
        self.maybe_propose(now_ns);
    }

    /// The operator adds `member` (replacing any member of its node).
    pub fn add(&mut self, now_ns: u64, member: Member) {
        self.additions.retain(|added| added.node != member.node);
        self.additions.push(member);
        self.suspected.remove(&member.node);
        self.removals.remove(&member.node);
        self.maybe_propose(now_ns);
    }

    /// The operator removes whatever member `node` has.
    pub fn remove(&mut self, now_ns: u64, node: NodeId) {
        self.removals.insert(node);
        self.additions.retain(|added| added.node != node);
        self.maybe_propose(now_ns);
    }

    /// Moves time on: rounds time out, back-offs end, the learner scans.
    pub fn tick(&mut self, now_ns: u64) {
        self.proposer.tick(now_ns);
        self.learner.tick(now_ns);
        self.drain(now_ns);
        self.maybe_propose(now_ns);
    }

    /// Takes one completion of a membership token.
    pub fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>) {
        if token.class.is_proposer() {
            self.proposer.handle_completion(now_ns, token, outcome);
        } else {
            self.learner.handle_completion(now_ns, token, outcome);
        }
        self.drain(now_ns);
        self.maybe_propose(now_ns);
    }

    /// The next operation to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.proposer.poll_action().or_else(|| self.learner.poll_action())
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ViewEvent> {
        self.events.pop_front()
    }

    /// When [`ViewChange::tick`] is next needed.
    pub fn poll_timeout(&self) -> Option<u64> {
        [self.proposer.poll_timeout(), self.learner.poll_timeout()].into_iter().flatten().min()
    }

    /// The latest local time from which the acceptors vouch for the current view: a
    /// majority of ring READs posted then or later found nothing accepted for the next
    /// instance. What an Active(view) lease renewal of [`ViewChange::view`] is confirmed
    /// from (`usec_lease_clock::lease::ActiveLease::on_confirmed`); `None` while no such
    /// majority was read.
    pub fn vouched_since(&self) -> Option<u64> {
        self.learner.clear_since(self.view.id() + 1)
    }

    /// Reads the acceptors at the next tick (a lease renewal is due).
    pub fn wake_learner(&mut self, now_ns: u64) {
        self.learner.wake(now_ns);
    }

    /// The proposer (its statistics, its trace).
    pub fn proposer(&self) -> &Proposer<R> {
        &self.proposer
    }

    /// The learner (to describe it).
    pub fn learner(&self) -> &Learner {
        &self.learner
    }

    /// The proposer, to trace it.
    pub fn proposer_mut(&mut self) -> &mut Proposer<R> {
        &mut self.proposer
    }

    fn drain(&mut self, now_ns: u64) {
        while let Some(event) = self.proposer.poll_event() {
            match event {
                ProposerEvent::Decided { value, .. } => {
                    let view = View::decode(&value).expect("only views are proposed to these acceptors");
                    self.adopt(view, now_ns, true);
                }
                // Decided by others: the learner finds out which view.
                ProposerEvent::Obsolete { instance } | ProposerEvent::Exhausted { instance } => {
                    self.obsolete = self.obsolete.max(instance);
                    self.learner.wake(now_ns);
                }
                ProposerEvent::Unchosen { .. } => self.learner.wake(now_ns),
            }
        }
        while let Some(learned) = self.learner.poll_event() {
            let view = View::decode(&learned.value).expect("only views are proposed to these acceptors");
            assert_eq!(view.id(), learned.instance, "view ids are their instances");
            self.adopt(view, now_ns, false);
        }
    }

    fn adopt(&mut self, view: View, now_ns: u64, proposed_here: bool) {
        if view.id() <= self.view.id() {
            return;
        }
        self.learner.advance_to(view.id());
        if self.proposer.instance().is_some_and(|instance| instance <= view.id()) {
            self.proposer.abandon();
        }
        self.additions.retain(|added| !view.contains(added.node, added.incarnation));
        self.removals.retain(|node| view.member(*node).is_some());
        self.view = view.clone();
        self.events.push_back(ViewEvent::Learned { view, at_ns: now_ns, proposed_here });
    }

    /// Proposes the next view if this process may and something should change.
    fn maybe_propose(&mut self, now_ns: u64) {
        if !self.proposer.is_idle() {
            return;
        }
        // Views were decided that nobody can read any more: a round that only adopts makes
        // the latest of them readable again.
        let patience_ns = 2 * self.config.scan_period_ns;
        if let Some(instance) =
            self.learner.stuck(now_ns, patience_ns).filter(|&instance| instance > self.view.id())
        {
            self.proposer.recover(now_ns, instance).expect("idle");
            return;
        }
        let waits = self.view.id() < self.obsolete;
        if waits
            || !self.proposer.is_idle()
            || !self.view.is_consensus(self.config.me, self.config.incarnation)
        {
            return;
        }
        let mut remove: BTreeSet<NodeId> = self.suspected.union(&self.removals).copied().collect();
        remove.remove(&self.config.me);
        // A view keeps a majority of the acceptors' count as consensus members (or as many
        // as the current one has, if fewer): only consensus members propose, so a view
        // whose last consensus member then fails could never change again. A member
        // suspecting all the others (cut off, or they lost their cores) removes them only
        // down to that floor — with more than a minority really gone, nothing could
        // progress anyway.
        let floor = (self.config.acceptors / 2 + 1).min(consensus_members(&self.view));
        let next = loop {
            let Some(next) = self.successor(&remove) else { return };
            // Additions alone go through: a new process replacing a consensus member's
            // old one joins as what the caller says.
            if consensus_members(&next) >= floor || remove.is_empty() {
                break next;
            }
            // Kept for a later view, once the removals that fit are decided.
            remove.pop_last();
        };
        self.proposer.propose(now_ns, next.id(), &next.encode()).expect("idle, and a view fits the buffers");
    }

    /// The next view without `remove` and with the additions, if it differs.
    fn successor(&mut self, remove: &BTreeSet<NodeId>) -> Option<View> {
        match self.view.successor(remove, &self.additions) {
            Ok(next) => next,
            Err(_) => {
                // An addition that does not fit (a full view): dropped, the rest proposed.
                self.additions.clear();
                self.view.successor(remove, &[]).ok().flatten()
            }
        }
    }
}

/// How many consensus members `view` has.
fn consensus_members(view: &View) -> usize {
    view.members().iter().filter(|member| member.kind == MemberKind::Consensus).count()
}

impl<R: RngCore> Role for ViewChange<R> {
    fn tick(&mut self, now_ns: u64) {
        ViewChange::tick(self, now_ns);
    }

    fn poll_action(&mut self) -> Option<Action> {
        ViewChange::poll_action(self)
    }

    fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>) {
        ViewChange::handle_completion(self, now_ns, token, outcome);
    }
}
