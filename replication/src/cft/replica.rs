//! [`Replica`]: one Mu replica, sans IO.
//!
//! # Driving it
//!
//! A driver owns the replica and, in a loop:
//!
//! 1. feeds what happened since the last turn: [`Replica::handle_completion`] for each
//!    completion of the replica's work requests (those whose id [`Replica::owns`]),
//!    [`Replica::handle_verdict`] for each failure-detector change about a peer,
//!    [`Replica::handle_repaired`] when a QP repair it asked for finished,
//!    [`Replica::handle_rejoined`] when a restarted peer's new process joined (after
//!    the completions flushed from the old one's QPs);
//! 2. hands over client commands with [`Replica::propose`];
//! 3. calls [`Replica::tick`] with the time and a [`Port`] — the only place the replica
//!    posts work or changes rights — and, if [`Replica::awaits_completions`] then says
//!    so, may feed the completions that are in already (on a fabric that completes
//!    WRITEs at once, a leader decides the commands the tick replicated in this turn);
//! 4. drains [`Replica::poll_event`] (responses to proposals, role changes).
//!
//! Nothing in it reads a clock, sleeps or blocks, so the same code runs in a pinned
//! busy-poll thread, in a cooperative loop with other roles, and under the simulator.
//! [`Replica::poll_timeout`] says when a tick is due if nothing else happens.

use usec_qp_pool::NodeId;
use usec_verbs::Status;

use crate::cft::candidate::{Candidate, Outcome};
use crate::cft::config::MuConfig;
use crate::cft::event::{Event, ProposeError, RoleKind, Takeover};
use crate::cft::follower::{agrees, Follower};
use crate::cft::leader::Leader;
use crate::cft::local::Local;
use crate::cft::op::Op;
use crate::cft::peers::{Head, Peers};
use crate::cft::port::{Channel, Port};
use crate::cft::tracked::{InFlight, Tracked};
use crate::cft::views::ViewLease;
use crate::error::{Error, Result};
use crate::log::local::LocalLog;
use crate::log::CommandId;
use crate::state_machine::StateMachine;

#[derive(Debug)]
enum Role {
    Follower,
    Candidate(Candidate),
    Leader(Leader),
}

/// One replica of a Mu group.
#[derive(Debug)]
pub struct Replica<S> {
    local: Local<S>,
    peers: Peers,
    election: crate::cft::election::Election,
    follower: Follower,
    role: Role,
    /// Counts candidacies; tags work requests so that an earlier one's completions are
    /// never taken for a later one's.
    term: u64,
    /// Permission and snapshot request numbers: increasing across the replica's life and
    /// across restarts (they start from the clock).
    number: u64,
    next_inbox_ns: u64,
    in_flight: InFlight,
    rank: u64,
    /// The leader this replica follows, as far as it knows.
    leader: Option<NodeId>,
    /// What the membership says, when leadership follows views ([`Replica::follow_views`]).
    views: Option<ViewLease>,
    /// The leader run of views the current candidacy or leadership started in.
    lead_run: Option<u64>,
    /// Entries below this index were found by the current leadership's takeover: once they
    /// are applied, the state holds every command an earlier leader acknowledged.
    takeover_end: u64,
}

impl<S: StateMachine> Replica<S> {
    /// A replica `me` of a group with `peers`, its log in `log` (regions registered with
    /// the cluster), applying to `machine`.
    pub fn new(
        me: NodeId,
        peers: &[NodeId],
        config: MuConfig,
        log: LocalLog,
        machine: S,
    ) -> Result<Replica<S>> {
        config.check()?;
        if peers.contains(&me) || peers.is_empty() || peers.len() >= 16 {
            return Err(Error::Config(format!(
                "a group of 2 to 16 replicas, {me} not among its peers {peers:?}"
            )));
        }
        let mut ids: Vec<NodeId> = peers.to_vec();
        ids.push(me);
        ids.sort();
        let nodes = usize::from(ids.last().expect("not empty").get()) + 1;
        if log.layout() != &config.layout(nodes) {
            return Err(Error::Config("the regions' layout is not the configuration's".into()));
        }
        let rank = ids.iter().position(|&id| id == me).expect("pushed") as u64;
        Ok(Replica {
            local: Local::new(me, config, log, machine),
            peers: Peers::new(peers),
            election: crate::cft::election::Election::new(me, peers),
            follower: Follower::new(nodes),
            role: Role::Follower,
            term: 0,
            number: 0,
            next_inbox_ns: 0,
            in_flight: InFlight::default(),
            rank,
            leader: None,
            views: None,
            lead_run: None,
            takeover_end: u64::MAX,
        })
    }

    // ---- inputs ----

    /// Whether a completion's `wr_id` is one of this replica's.
    pub fn owns(wr_id: u64) -> bool {
        Op::decode(wr_id).is_some()
    }

    /// A completion of one of its work requests. On a leader, the acknowledgement of an
    /// entry by the follower that completes a majority decides it here, and the outcomes
    /// of the commands it decides are among the next [`Replica::poll_event`]s.
    pub fn handle_completion(&mut self, wr_id: u64, status: Status) {
        let Some(op) = Op::decode(wr_id) else { return };
        self.in_flight.completed(op.peer, op.channel());
        if !status.is_success() {
            self.fail(op);
            return;
        }
        let Some(peer) = self.peers.get_mut(op.peer) else { return };
        if op.kind == crate::cft::op::OpKind::HeadRead {
            // Only the read in flight: an earlier one's bytes may still be landing.
            if !peer.head_reading || op.sequence != peer.head_tag {
                return;
            }
            peer.head_reading = false;
            let mut bytes = [0u8; crate::cft::peers::HEAD_READ_BYTES];
            let offset = self.local.log.layout().scratch_head_offset(op.peer.get());
            self.local.log.read_control(offset, &mut bytes);
            match Head::decode(&bytes) {
                Some(head) => {
                    self.election.set_eligible(op.peer, head.status.eligible);
                    peer.head = Some(head);
                }
                None => peer.drop_out(),
            }
            return;
        }
        if op.kind == crate::cft::op::OpKind::Promise {
            let (term, _) = crate::cft::candidate::split_term_sequence(op.sequence);
            if term == self.term & crate::cft::candidate::TERM_TAG
                && peer.barrier == crate::cft::peers::Barrier::Posted
            {
                peer.barrier = crate::cft::peers::Barrier::Done;
            }
            return;
        }
        match &mut self.role {
            Role::Candidate(candidate) => candidate.on_success(op, &mut self.peers),
            Role::Leader(leader) => {
                leader.on_success(op, &mut self.peers);
                // The acknowledgement that completes a majority decides at once: the
                // command's outcome need not wait for the next tick (a WRITE that landed
                // on a majority is decided whatever this leader learns afterwards).
                if op.kind == crate::cft::op::OpKind::Entry {
                    leader.decide(&mut self.local, &self.peers);
                }
            }
            Role::Follower => {}
        }
    }

    fn fail(&mut self, op: Op) {
        if let Role::Leader(leader) = &mut self.role {
            leader.on_failure(op);
        }
        let Some(peer) = self.peers.get_mut(op.peer) else { return };
        peer.broken[op.channel().index()] = true;
        peer.drop_out();
    }

    /// Makes leadership follow membership views from now on (see [`crate::cft::views`]):
    /// the replica campaigns only as the designated leader of an active view, and knows no
    /// view until [`Replica::handle_view_lease`] says one. Call it before the first tick.
    pub fn follow_views(&mut self) {
        self.views.get_or_insert(ViewLease::NONE);
    }

    /// What the membership says now: the latest view, its designated leader, its lease.
    /// Hand it over whenever it changes (a view learned, a renewal confirmed); ignored by
    /// a replica that does not follow views.
    pub fn handle_view_lease(&mut self, lease: ViewLease) {
        if let Some(views) = self.views.as_mut() {
            if views.leader != lease.leader {
                // A request refused for another designated leader may be granted now.
                self.next_inbox_ns = 0;
            }
            *views = lease;
        }
    }

    /// A failure detector changed its mind about `peer`.
    pub fn handle_verdict(&mut self, peer: NodeId, trusted: bool) {
        if self.election.set_trusted(peer, trusted) {
            let id = peer.get();
            self.local.note(|| format!("verdict on {id}: trusted {trusted}"));
            // A request refused under the old verdict may be granted now: look at once.
            self.next_inbox_ns = 0;
        }
    }

    /// The provider says `peer`'s process does not run (exiting, stopped or lost):
    /// whatever this replica heard from it before (a permission request, entries that
    /// advanced its commit index) no longer keeps it trusted. Call it with the verdict.
    pub fn handle_ruled_out(&mut self, peer: NodeId) {
        if self.election.forget_heard(peer) {
            let id = peer.get();
            self.local.note(|| format!("{id} ruled out: what was heard from it no longer counts"));
            self.next_inbox_ns = 0;
        }
    }

    /// The `channel` QP to `peer` was reconnected (at this replica's request or the
    /// peer's): it works again, and whatever was in flight on it is gone without
    /// completions, so the peer starts over in the current candidacy or leadership.
    pub fn handle_repaired(&mut self, peer: NodeId, channel: Channel) {
        self.in_flight.forget(peer, channel);
        if let Some(peer) = self.peers.get_mut(peer) {
            peer.broken[channel.index()] = false;
            peer.repairing[channel.index()] = false;
            peer.drop_out();
        }
    }

    /// A new process of `peer` took its place (a restart: qp-pool's `Rejoined`), on QPs
    /// reconnected to it: nothing known of the old process holds. Call it once every
    /// completion of what was posted to the old process has been handed over (qp-pool
    /// flushes them into the CQ before it reports the rejoin); anything still counted in
    /// flight went with the old QPs. The peer leaves the current candidacy or leadership,
    /// its QPs count as healthy, its requests are no longer weighed against the old
    /// process's (see [`Follower::forget`]), and it counts in quorums only once the new
    /// process says so when it grants (a process that lost its state does not).
    pub fn handle_rejoined(&mut self, peer: NodeId) {
        for channel in Channel::ALL {
            self.in_flight.forget(peer, channel);
        }
        // A new process holds none of the old one's grants, and may not lead until a leader
        // has caught it up.
        if self.follower.holder == Some(peer) {
            self.follower.holder = None;
        }
        self.follower.forget(peer, &self.local);
        self.election.set_eligible(peer, false);
        if let Some(peer) = self.peers.get_mut(peer) {
            peer.broken = [false; 2];
            peer.repairing = [false; 2];
            peer.eligible = false;
            peer.drop_out();
        }
        self.local.note(|| format!("node {} rejoined", peer.get()));
    }

    /// A repair of the `channel` QP to `peer` failed: it is asked again next tick.
    pub fn handle_repair_failed(&mut self, peer: NodeId, channel: Channel) {
        if let Some(peer) = self.peers.get_mut(peer) {
            peer.repairing[channel.index()] = false;
        }
    }

    /// Takes a command to replicate. On a leader (or a replica taking over) it waits in
    /// a queue for the next entry; its outcome comes as an [`Event`].
    pub fn propose(&mut self, id: CommandId, command: &[u8]) -> std::result::Result<(), ProposeError> {
        if matches!(self.role, Role::Follower) {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        let max = self.local.config.max_command_bytes();
        if command.len() > max {
            return Err(ProposeError::TooLarge { len: command.len(), max });
        }
        if self.local.queue.len() >= self.local.config.queue_limit {
            return Err(ProposeError::QueueFull(self.local.queue.len()));
        }
        self.local.enqueue(id, command);
        Ok(())
    }

    // ---- the turn ----

    /// Does everything due at `now_ns`: serves peers' requests, follows or takes over or
    /// leads, and publishes its status.
    pub fn tick(&mut self, now_ns: u64, port: &mut dyn Port) {
        let mut in_flight = std::mem::take(&mut self.in_flight);
        self.turn(now_ns, &mut Tracked { port, in_flight: &mut in_flight });
        self.in_flight = in_flight;
    }

    fn turn(&mut self, now_ns: u64, port: &mut Tracked<'_>) {
        self.election.set_now(now_ns);
        self.repair(port);
        let inbox_due = now_ns >= self.next_inbox_ns;
        if inbox_due {
            self.next_inbox_ns = now_ns + self.local.config.inbox_period_ns;
            self.serve_inbox(now_ns, port);
        }
        let me = self.local.me;
        let (choice, may_campaign, run_kept) = match &self.views {
            None => (self.election.choice(self.local.eligible), true, true),
            Some(views) => (
                views.leader,
                self.local.eligible && views.is_active(now_ns),
                self.lead_run == Some(views.leader_run),
            ),
        };
        match &mut self.role {
            Role::Follower => {
                let commit = self.local.commit;
                self.follower.follow(&mut self.local);
                if let Some(holder) = self.follower.holder.filter(|_| self.local.commit > commit) {
                    self.election.heard_from(holder, self.local.config.permission_retry_ns);
                }
                if choice == Some(me) && may_campaign {
                    self.start_candidacy(now_ns, port);
                } else if let Some(preferred) = choice.filter(|&choice| self.follower.holder != Some(choice))
                {
                    // It defers to a peer that is not leading it: a process restarted
                    // without its state may be waiting for a leader that waits for it. Its
                    // head says whether it counts ([`Election::set_eligible`]).
                    let retry_ns = self.local.config.permission_retry_ns;
                    if let Some(peer) = self.peers.get_mut(preferred) {
                        if now_ns.saturating_sub(peer.head_read_ns) >= retry_ns {
                            crate::cft::candidate::post_head_read(now_ns, self.term, peer, &self.local, port);
                        }
                    }
                }
            }
            Role::Candidate(_) | Role::Leader(_) if choice != Some(me) => self.step_down(choice),
            // A leadership belongs to its leader run of views: a view outside it may have
            // had another leader, whose writes this one's state has not seen.
            Role::Candidate(_) | Role::Leader(_) if !run_kept => self.step_down(None),
            Role::Candidate(candidate) => {
                match candidate.step(now_ns, &mut self.local, &mut self.peers, port) {
                    Outcome::Working => {}
                    Outcome::Restart => self.start_candidacy(now_ns, port),
                    Outcome::Lead { next_index } => self.lead(now_ns, next_index),
                }
            }
            Role::Leader(leader) => {
                if leader.step(now_ns, &mut self.local, &mut self.peers, port, inbox_due).is_err() {
                    self.step_down(None);
                }
            }
        }
        self.local.publish(None);
    }

    fn repair(&mut self, port: &mut Tracked<'_>) {
        for peer in self.peers.iter_mut() {
            for channel in Channel::ALL {
                if peer.broken[channel.index()] && !peer.repairing[channel.index()] {
                    peer.repairing[channel.index()] = true;
                    port.repair(peer.id, channel);
                }
            }
        }
    }

    fn serve_inbox(&mut self, now_ns: u64, port: &mut Tracked<'_>) {
        while let Some(request) = self.follower.next_permission_request(&self.local, &self.peers) {
            self.election.heard_from(request.from, self.local.config.permission_retry_ns);
            // Only a replica that counts campaigns.
            self.election.set_eligible(request.from, true);
            if self.agrees_to(request) {
                self.grant(request, port);
            } else {
                let (from, number) = (request.from.get(), request.number);
                self.local.note(|| format!("refuses {from}'s request {number}"));
                self.follower.refuse(request, now_ns);
            }
        }
        // A refusal is not final: a request refused because this replica still trusted
        // the leader is granted once it does not, rather than when the candidate asks
        // again. The election changes its mind at most a few microseconds apart on two
        // replicas, which would otherwise cost the candidate a whole retry period.
        for request in self.follower.refused(now_ns, self.local.config.permission_retry_ns) {
            if self.agrees_to(request) {
                let (from, number) = (request.from.get(), request.number);
                self.local.note(|| format!("grants {from}'s request {number}, refused before"));
                self.grant(request, port);
            }
        }
        while let Some(request) = self.follower.next_snapshot_request(&self.local, &self.peers) {
            self.follower.serve_snapshot(request, &mut self.local, &mut self.peers, port);
        }
    }

    /// Whether this replica lets `request`'s candidate have its log now. Following views:
    /// only the designated leader of the latest view known, though a replica that does not
    /// count yet grants whoever asks, as in plain Mu. Otherwise Mu's rule on the detectors.
    fn agrees_to(&self, request: crate::cft::follower::Request) -> bool {
        match &self.views {
            None => agrees(&self.election, request, self.local.eligible),
            Some(views) => !self.local.eligible || views.leader == Some(request.from),
        }
    }

    fn grant(&mut self, request: crate::cft::follower::Request, port: &mut Tracked<'_>) {
        if !matches!(self.role, Role::Follower) {
            self.step_down(Some(request.from));
        }
        self.leader = Some(request.from);
        self.follower.grant(request, &mut self.local, &mut self.peers, port);
    }

    fn next_number(&mut self, now_ns: u64) -> u64 {
        self.number = (self.number + 1).max(now_ns);
        self.number
    }

    fn start_candidacy(&mut self, now_ns: u64, port: &mut Tracked<'_>) {
        self.retire_role();
        self.term += 1;
        let number = self.next_number(now_ns);
        let candidate = Candidate::start(
            self.term,
            number,
            now_ns,
            &mut self.local,
            &mut self.peers,
            &mut self.follower,
            port,
            self.rank,
        );
        self.role = Role::Candidate(candidate);
        self.lead_run = self.views.map(|views| views.leader_run);
        self.takeover_end = u64::MAX;
        self.local.stats.candidacies += 1;
        let (term, commit, applied) = (self.term, self.local.commit, self.local.applied);
        self.local.note(|| format!("candidacy {term} number {number}, commit {commit} applied {applied}"));
        self.leader = Some(self.local.me);
        self.local.events.push_back(Event::RoleChanged { role: RoleKind::Candidate, leader: self.leader });
    }

    fn lead(&mut self, now_ns: u64, next_index: u64) {
        let Role::Candidate(candidate) = &self.role else { unreachable!("only a candidate leads") };
        let (term, proposal) = (candidate.term, candidate.proposal.expect("chosen"));
        let (first, number) = (candidate.first_number, candidate.number);
        self.number = self.number.max(number);
        let leader =
            Leader::new(term, proposal, next_index, now_ns, first, number, &mut self.local, &self.peers);
        self.role = Role::Leader(leader);
        self.takeover_end = next_index;
        self.local.stats.leaderships += 1;
        let commit = self.local.commit;
        self.local
            .note(|| format!("leads term {term} proposal {proposal} from {next_index}, commit {commit}"));
        self.local
            .events
            .push_back(Event::RoleChanged { role: RoleKind::Leader, leader: Some(self.local.me) });
    }

    /// Leaves candidacy or leadership; what it was proposing is reported not committed.
    fn step_down(&mut self, leader: Option<NodeId>) {
        self.local.note(|| format!("steps down (leader {leader:?})"));
        self.retire_role();
        self.leader = leader;
        self.local.abandon_proposals(leader);
        self.local.events.push_back(Event::RoleChanged { role: RoleKind::Follower, leader });
    }

    fn retire_role(&mut self) {
        self.lead_run = None;
        self.takeover_end = u64::MAX;
        match std::mem::replace(&mut self.role, Role::Follower) {
            Role::Candidate(candidate) => self.number = self.number.max(candidate.number),
            Role::Leader(leader) => self.number = self.number.max(leader.permission_number()),
            Role::Follower => {}
        }
        self.peers.reset();
    }

    // ---- outputs ----

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.local.events.pop_front()
    }

    /// Whether work it posted has not completed yet: a driver that finds this true right
    /// after a tick may poll for completions again before handing out events (on a fabric
    /// that completes WRITEs as they are posted, a leader then decides in the same turn).
    pub fn awaits_completions(&self) -> bool {
        self.in_flight.any()
    }

    /// When the next tick is due if nothing arrives before: the next inbox look.
    pub fn poll_timeout(&self) -> Option<u64> {
        Some(self.next_inbox_ns)
    }

    // ---- local reads ----

    /// Until when (on the replica's clock) it may answer read-only commands from its own
    /// state, as seen at `now_ns`; 0 if it may not now (see [`crate::cft::views`]): it
    /// follows views, leads in the current leader run, applied everything its takeover found,
    /// and the view is active. A reader on another thread may use the answer until then,
    /// reading its clock after reading the state.
    pub fn local_read_until(&self, now_ns: u64) -> u64 {
        let Some(views) = &self.views else { return 0 };
        let leads = matches!(self.role, Role::Leader(_))
            && views.leader == Some(self.local.me)
            && self.lead_run == Some(views.leader_run)
            && self.local.applied >= self.takeover_end;
        if leads && views.is_active(now_ns) {
            views.active_until_ns
        } else {
            0
        }
    }

    /// Answers the read-only `command` from this replica's state into `response`, if it
    /// may now ([`Replica::local_read_until`]) and the state machine answers it
    /// ([`StateMachine::query`]); false means it goes through the log instead.
    pub fn read_locally(&self, now_ns: u64, command: &[u8], response: &mut Vec<u8>) -> bool {
        now_ns < self.local_read_until(now_ns) && self.local.applier.machine().query(command, response)
    }

    /// What the membership said last, when leadership follows views.
    pub fn view_lease(&self) -> Option<ViewLease> {
        self.views
    }

    // ---- observation ----

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.local.me
    }

    /// Its role.
    pub fn role(&self) -> RoleKind {
        match self.role {
            Role::Follower => RoleKind::Follower,
            Role::Candidate(_) => RoleKind::Candidate,
            Role::Leader(_) => RoleKind::Leader,
        }
    }

    /// Where it stands in taking over, while it is a candidate.
    pub fn takeover(&self) -> Option<Takeover> {
        match &self.role {
            Role::Candidate(candidate) if candidate.proposal.is_some() => Some(Takeover::Recovery),
            Role::Candidate(_) => Some(Takeover::Permissions),
            _ => None,
        }
    }

    /// The leader it follows (itself when leading or taking over), if known. A follower on
    /// views that no leader has asked yet names its view's designated leader: that is who
    /// will (clients redirected there find it leading, or leading soon), and a follower
    /// dropped and re-added by a view change under load would otherwise say "no leader"
    /// until the leader's next permission request reaches it.
    pub fn leader(&self) -> Option<NodeId> {
        match (&self.role, &self.views) {
            (Role::Follower, Some(views)) if self.leader.is_none() => views.leader,
            _ => self.leader,
        }
    }

    /// Entries below are decided, as far as it knows.
    pub fn commit_index(&self) -> u64 {
        self.local.commit
    }

    /// Entries below are applied.
    pub fn applied_index(&self) -> u64 {
        self.local.applied
    }

    /// Whether this replica leads and `peer` counts in its write quorum: it kept its state,
    /// or it lost it and was brought up to date since (see the [module
    /// documentation](crate::cft), rule 6).
    pub fn counts_in_quorum(&self, peer: NodeId) -> bool {
        matches!(self.role, Role::Leader(_))
            && self.peers.get(peer).is_some_and(|peer| peer.live && crate::cft::leader::counts(peer))
    }

    /// Whether it counts in quorums.
    pub fn is_eligible(&self) -> bool {
        self.local.eligible
    }

    /// The state machine.
    pub fn state_machine(&self) -> &S {
        self.local.applier.machine()
    }

    /// The proposal number it leads with, when leading.
    pub fn proposal(&self) -> Option<u64> {
        match &self.role {
            Role::Leader(leader) => Some(leader.proposal()),
            _ => None,
        }
    }

    /// A one-line summary of its state, for logs and failure reports.
    pub fn describe(&self) -> String {
        let role = match &self.role {
            Role::Follower => format!("follower of {:?}", self.follower.holder.map(|node| node.get())),
            Role::Candidate(candidate) => format!("candidate {:?}", candidate.phase),
            Role::Leader(leader) => format!("leader next {}", leader.next_index),
        };
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|peer| {
                format!(
                    "{}:{}{}{}{} n{} a{}{}",
                    peer.id.get(),
                    if peer.granted { "G" } else { "-" },
                    if peer.head.is_some() { "H" } else { "-" },
                    if peer.live { "L" } else { "-" },
                    match peer.barrier {
                        crate::cft::peers::Barrier::None => "0",
                        crate::cft::peers::Barrier::Posted => "p",
                        crate::cft::peers::Barrier::Done => "B",
                    },
                    peer.next,
                    peer.acked,
                    if peer.broken.iter().any(|&broken| broken) { " broken" } else { "" }
                )
            })
            .collect();
        format!(
            "{} commit {} applied {} queue {} eligible {} [{}]",
            role,
            self.local.commit,
            self.local.applied,
            self.local.queue.len(),
            self.local.eligible,
            peers.join(" ")
        )
    }

    /// Turns the decision trace on or off ([`Replica::take_trace`]).
    pub fn set_trace(&mut self, on: bool) {
        if on != self.local.trace.is_some() {
            self.local.trace = on.then(Vec::new);
        }
    }

    /// The decisions recorded since the last call.
    pub fn take_trace(&mut self) -> Vec<String> {
        self.local.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// What it has done, counted.
    pub fn stats(&self) -> crate::cft::local::Stats {
        self.local.stats
    }

    /// The commands waiting for an entry.
    pub fn queued(&self) -> usize {
        self.local.queue.len()
    }
}
