//! [`MuDriver`]: everything one node runs, wired together — the cluster, the Mu
//! [`Replica`], its completions, its heartbeats and failure detectors, and the commands
//! clients hand in — turned one step at a time by [`MuDriver::turn`]. No protocol logic:
//! it moves completions, verdicts and commands into the replica and events out.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use usec_lease_clock::detector::{
    AnyOf, HeartbeatCounter, Observation, PeerLossDetector, ScoreConfig, ScoreDetector,
};
use usec_lease_clock::heartbeat::{HeartbeatMonitor, PoolHeartbeats, ReaderConfig};
use usec_membership::MemberKind;
use usec_qp_pool::{Cluster, ControlEvent, NodeConfig, NodeId, Poller};
use usec_verbs::Status;

use crate::cft::cluster_port::MuNode;
use crate::cft::op::Op;
use crate::cft::{Channel, Event, MuConfig, Replica, Start};
use crate::driver::client::{ClientError, ClientHandle, Submission};
use crate::driver::status::{ReplicaStatus, ViewStatus};
use crate::driver::views::{Views, ViewsConfig};
use crate::error::{Error, Result};
use crate::state_machine::StateMachine;

/// How a node watches its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorConfig {
    /// Heartbeat READs.
    pub reader: ReaderConfig,
    /// Mu's score.
    pub score: ScoreConfig,
    /// This node bumps its own counter this often (more often than peers read it).
    pub bump_period_ns: u64,
    /// How long a silent peer whose process the provider says is alive (not stopped, not
    /// exiting: waiting for a CPU) is not held against it
    /// ([`HeartbeatMonitor::with_alive_patience`]). A dead or stopped process is suspected
    /// at the first silent read whatever this is; a provider that cannot tell (a NIC)
    /// gets no patience.
    pub alive_patience_ns: u64,
}

impl Default for DetectorConfig {
    /// Reads every 30 µs, Mu's score (four misses), bumps every 5 µs; a live process that
    /// does not run is waited for 1 ms — above the scheduling hiccups of a shared machine
    /// (a virtual CPU taken for a few hundred microseconds), below the time its clients
    /// would wait for a leader whose core was taken for good.
    fn default() -> DetectorConfig {
        DetectorConfig {
            reader: ReaderConfig::default(),
            score: ScoreConfig::default(),
            bump_period_ns: 5_000,
            alive_patience_ns: 1_000_000,
        }
    }
}

/// On views, peers the detectors trust but the view lacks are added back this often (see
/// [`Views::trusted`]).
const RECONCILE_PERIOD_NS: u64 = 1_000_000;

/// Control-plane work (reconnects, rejoins: messages over TCP) is looked at every this
/// many turns.
const CONTROL_EVERY: u64 = 256;
/// The provider's events (a peer process's death above all: the fastest failure signal
/// there is) are looked at this often. A look costs about 100 ns on the soft provider,
/// a few per cent of a busy leader's time at this period; a death waits at most this long
/// after the provider reported it.
pub const PROVIDER_EVENTS_PERIOD_NS: u64 = 2_000;
/// Client commands taken per turn at most.
const INTAKE_PER_TURN: usize = 64;

/// One node: cluster, replica, heartbeats, clients.
pub struct MuDriver<S> {
    cluster: Cluster,
    mu: MuNode,
    replica: Replica<S>,
    poller: Poller,
    heartbeats: PoolHeartbeats,
    monitor: HeartbeatMonitor<AnyOf>,
    counter: HeartbeatCounter,
    intake: Arc<ArrayQueue<Submission>>,
    waiting: HashMap<crate::log::CommandId, Submission>,
    turns: u64,
    next_provider_events_ns: u64,
    events: Vec<Event>,
    keep_events: bool,
    counts: DriverCounts,
    status: Arc<ReplicaStatus>,
    detectors: DetectorConfig,
    /// The membership, when leadership follows views ([`MuDriver::attach_views`]).
    views: Option<Views>,
    /// This process replaces an earlier one of its node ([`Start::Rejoin`]).
    rejoined: bool,
    /// On views, when trusted peers the view lacks are next added back.
    next_reconcile_ns: u64,
}

/// A peer's failure detector: Mu's score on its heartbeat, or the provider saying its
/// process is gone.
fn detector(config: &DetectorConfig) -> AnyOf {
    AnyOf::new(vec![
        Box::new(ScoreDetector::new(config.score)) as Box<_>,
        Box::new(PeerLossDetector::new()) as Box<_>,
    ])
}

/// What a driver saw, counted (for operators and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverCounts {
    /// The replica's work requests that completed with an error.
    pub failed_completions: u64,
    /// Of those, WRITEs into a peer's log that the peer refused: the peer had revoked
    /// this replica's right to write — what a deposed leader's late writes meet. A
    /// responder QP without the right answers [`Status::RemoteInvalidRequest`] (the NAK
    /// of the InfiniBand spec, what rxe and the soft provider return);
    /// [`Status::RemoteAccessError`] is counted too (a memory region without it).
    pub refused_log_writes: u64,
    /// Restarted peers whose new process joined (qp-pool's `Rejoined`).
    pub rejoins: u64,
}

impl<S> std::fmt::Debug for MuDriver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MuDriver").field("me", &self.cluster.me()).field("turns", &self.turns).finish()
    }
}

impl<S: StateMachine> MuDriver<S> {
    /// Adds what the driver needs (Mu's roles and regions, then heartbeats) to a node's
    /// configuration; every node of the group does the same.
    pub fn configure(mut node: NodeConfig, config: &MuConfig) -> Result<NodeConfig> {
        // rxe reads a transport retry count of 7 as "retry forever" (the spec's 7 means
        // seven): a WRITE to a dead follower would never fail there.
        node.connect.rts.retry_count = node.connect.rts.retry_count.min(6);
        let node = MuNode::configure(node, config)?;
        PoolHeartbeats::configure(node).map_err(Error::heartbeat("adding heartbeats"))
    }

    /// Builds the node from a cluster bootstrapped with [`MuDriver::configure`]'s roles.
    pub fn new(
        mut cluster: Cluster,
        config: MuConfig,
        detectors: DetectorConfig,
        machine: S,
        now_ns: u64,
    ) -> Result<MuDriver<S>> {
        let mu = MuNode::new(&cluster, &config)?;
        let roles = [mu.role(Channel::Log), mu.role(Channel::Control)];
        let poller = cluster.take_poller(&roles).map_err(Error::pool("taking the Mu CQs"))?;
        let heartbeats = PoolHeartbeats::new(&mut cluster).map_err(Error::heartbeat("heartbeats"))?;
        let reader = heartbeats.reader(detectors.reader, now_ns);
        let detector_set = (0..reader.peers().len()).map(|_| detector(&detectors)).collect();
        let monitor =
            HeartbeatMonitor::new(reader, detector_set).with_alive_patience(detectors.alive_patience_ns);
        let peers: Vec<NodeId> = cluster.peers().collect();
        let replica = Replica::new(cluster.me(), &peers, config.clone(), mu.local_log(), machine)?;
        Ok(MuDriver {
            cluster,
            mu,
            replica,
            poller,
            heartbeats,
            monitor,
            counter: HeartbeatCounter::new(detectors.bump_period_ns),
            intake: Arc::new(ArrayQueue::new(config.queue_limit)),
            waiting: HashMap::new(),
            turns: 0,
            next_provider_events_ns: 0,
            events: Vec::new(),
            keep_events: false,
            counts: DriverCounts::default(),
            detectors,
            status: Arc::new(ReplicaStatus::default()),
            views: None,
            rejoined: config.start == Start::Rejoin,
            next_reconcile_ns: 0,
        })
    }

    /// [`MuDriver::configure`], plus the membership's role and regions (for
    /// [`MuDriver::attach_views`]); every node of the group does the same.
    pub fn configure_with_views(
        node: NodeConfig,
        config: &MuConfig,
        views: &ViewsConfig,
    ) -> Result<NodeConfig> {
        views.configure(MuDriver::<S>::configure(node, config)?)
    }

    /// Runs the membership service in this node and makes the replica's leadership follow
    /// its views (see [`crate::cft::views`]): the node's failure detectors feed view
    /// changes, restarted replicas are added back, and the replica leads only as the
    /// designated leader of an active view, when it may also answer reads locally. The
    /// cluster must have been configured with [`MuDriver::configure_with_views`]. Call it
    /// before the first turn.
    pub fn attach_views(&mut self, config: &ViewsConfig, now_ns: u64) -> Result<()> {
        let views = Views::new(&mut self.cluster, config, self.rejoined, now_ns)?;
        self.replica.follow_views();
        self.replica.handle_view_lease(views.view_lease());
        self.views = Some(views);
        Ok(())
    }

    /// The membership, if attached.
    pub fn views(&self) -> Option<&Views> {
        self.views.as_ref()
    }

    /// The membership, if attached (to add or remove members, to keep its history).
    pub fn views_mut(&mut self) -> Option<&mut Views> {
        self.views.as_mut()
    }

    /// A handle for a client numbered `client` (unique in the group's life) to propose
    /// through this node from any thread.
    pub fn client(&self, client: u64) -> ClientHandle {
        ClientHandle::new(self.intake.clone(), self.replica.id(), client)
    }

    /// The replica's role, leader and indexes as its thread last published them, for other
    /// threads (an application's front end routing its clients). Updated every turn.
    pub fn status(&self) -> Arc<ReplicaStatus> {
        self.status.clone()
    }

    /// Keeps the replica's events for [`MuDriver::take_events`] (tests and benchmarks).
    pub fn keep_events(&mut self, keep: bool) {
        self.keep_events = keep;
    }

    /// The events kept since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The events kept since the last call, keeping the buffer for the next ones (a loop
    /// that looks after every turn allocates nothing for it).
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// One step: heartbeats, completions, control plane now and then, client commands,
    /// the replica's tick, the completions of what it posted if they are in already,
    /// outcomes back to clients. True if something happened.
    pub fn turn(&mut self, now_ns: u64) -> bool {
        self.turns += 1;
        if let Some(value) = self.counter.tick(now_ns) {
            self.heartbeats.publish(value);
        }
        // The heartbeat role has a CQ of its own: nothing else completes there.
        self.monitor.tick(now_ns, &mut self.heartbeats.port(&mut self.cluster), &mut |_| {});
        self.verdicts(now_ns);
        if now_ns >= self.next_provider_events_ns {
            self.next_provider_events_ns = now_ns + PROVIDER_EVENTS_PERIOD_NS;
            self.provider_events(now_ns);
        }
        let mut busy = false;
        if let Some(views) = self.views.as_mut() {
            let (lease, views_busy) = views.turn(now_ns, &mut self.cluster);
            if let Some(lease) = lease {
                self.replica.handle_view_lease(lease);
            }
            busy |= views_busy;
        }
        busy |= self.completions();
        if self.turns % CONTROL_EVERY == 0 {
            self.control_plane(now_ns);
        }
        for _ in 0..INTAKE_PER_TURN {
            let Some(submission) = self.intake.pop() else { break };
            busy = true;
            match self.replica.propose(submission.id, &submission.command) {
                Ok(()) => {
                    self.waiting.insert(submission.id, submission);
                }
                Err(error) => submission.reply.fulfil(Err(ClientError::Refused(error))),
            }
        }
        self.replica.tick(now_ns, &mut self.mu.port(&mut self.cluster));
        // What the tick posted may have completed already (the soft provider completes a
        // WRITE as it is posted, a NIC within microseconds): handing those completions
        // over now lets a leader decide a command in the turn that replicated it rather
        // than in the next one, a whole turn of housekeeping sooner.
        if self.replica.awaits_completions() {
            busy |= self.completions();
        }
        while let Some(event) = self.replica.poll_event() {
            busy = true;
            self.deliver(&event);
            if self.keep_events {
                self.events.push(event);
            }
        }
        self.status.publish(&self.replica);
        self.status.publish_local_reads(self.replica.local_read_until(now_ns));
        busy
    }

    /// Hands the replica its completions; whether there were any.
    fn completions(&mut self) -> bool {
        let mut any = false;
        for polled in self.poller.poll() {
            any = true;
            let (wr_id, status) = (polled.completion.wr_id, polled.completion.status);
            if !status.is_success() {
                self.counts.failed_completions += 1;
                let log_write = Op::decode(wr_id).is_some_and(|op| op.channel() == Channel::Log);
                let refused = matches!(status, Status::RemoteInvalidRequest | Status::RemoteAccessError);
                if log_write && refused {
                    self.counts.refused_log_writes += 1;
                }
            }
            self.replica.handle_completion(wr_id, status);
        }
        any
    }

    fn deliver(&mut self, event: &Event) {
        if self.waiting.is_empty() {
            return; // no client handle waits: spare the hashing of the command's id
        }
        match event {
            Event::Committed { id, response } => {
                if let Some(submission) = self.waiting.remove(id) {
                    submission.reply.fulfil(Ok(response.clone()));
                }
            }
            Event::NotCommitted { id, leader } => {
                if let Some(submission) = self.waiting.remove(id) {
                    submission.reply.fulfil(Err(ClientError::NotCommitted { leader: *leader }));
                }
            }
            Event::Superseded { id } => {
                if let Some(submission) = self.waiting.remove(id) {
                    submission.reply.fulfil(Err(ClientError::Superseded));
                }
            }
            Event::RoleChanged { .. } => {}
        }
    }

    fn control_plane(&mut self, now_ns: u64) {
        while let Some(event) = self.cluster.poll_control_at(now_ns) {
            if let Some(views) = self.views.as_mut() {
                views.handle_control(&self.cluster, now_ns, &event);
            }
            match event {
                ControlEvent::Reconnected { peer, roles, .. } => {
                    for role in roles {
                        if let Some(channel) = self.mu.channel_of(role) {
                            self.replica.handle_repaired(peer, channel);
                        }
                    }
                }
                ControlEvent::ReconnectFailed { peer, .. } => {
                    for channel in Channel::ALL {
                        self.replica.handle_repair_failed(peer, channel);
                    }
                }
                ControlEvent::Rejoined { peer, .. } => self.rejoined(now_ns, peer),
                _ => {}
            }
        }
        if let Some(views) = self.views.as_mut() {
            views.maintain(&mut self.cluster, now_ns);
            if now_ns >= self.next_reconcile_ns {
                self.next_reconcile_ns = now_ns + RECONCILE_PERIOD_NS;
                for peer in self.cluster.peers() {
                    let incarnation = self.cluster.peer_incarnation(peer);
                    if let (false, Some(incarnation)) =
                        (self.monitor.verdict(peer).is_suspected(), incarnation)
                    {
                        views.trusted(now_ns, peer, incarnation);
                    }
                }
            }
            // A restarted replica becomes a voter again once it counts in the leader's
            // write quorum (see `crate::driver::views`).
            let counted = views.non_voters().filter(|member| {
                self.cluster.peer_incarnation(member.node) == Some(member.incarnation)
                    && self.replica.counts_in_quorum(member.node)
            });
            let promoted: Vec<_> = counted.collect();
            for member in promoted {
                views.promote(now_ns, member.node, member.incarnation);
            }
            let view = views.view();
            self.status.publish_view(ViewStatus {
                id: view.id(),
                voters: view.members().iter().filter(|member| member.kind == MemberKind::Consensus).count()
                    as u32,
                voting: view.is_consensus(self.cluster.me(), self.cluster.incarnation()),
            });
        }
    }

    /// Hands the detectors the provider's word that a peer is gone, and passes the
    /// verdicts it changes to the replica at once.
    fn provider_events(&mut self, now_ns: u64) {
        while let Some(event) = self.cluster.poll_event() {
            if let Some(peer) = self.heartbeats.lost_peer(&event) {
                self.monitor.observe(now_ns, peer, Observation::PeerLost);
            }
        }
        self.verdicts(now_ns);
    }

    fn verdicts(&mut self, now_ns: u64) {
        while let Some(change) = self.monitor.poll_change() {
            self.replica.handle_verdict(change.peer, !change.verdict.is_suspected());
            if let Some(views) = self.views.as_mut() {
                let incarnation = self.cluster.peer_incarnation(change.peer);
                views.handle_verdict(now_ns, change.peer, incarnation, change.verdict.is_suspected());
            }
        }
        while let Some(peer) = self.monitor.poll_ruled_out() {
            self.replica.handle_ruled_out(peer);
        }
    }

    /// Answers the read-only `command` locally if the replica may now (it leads in an
    /// active view: [`Replica::read_locally`]); false: it goes through the log instead.
    pub fn read_locally(&self, now_ns: u64, command: &[u8], response: &mut Vec<u8>) -> bool {
        self.replica.read_locally(now_ns, command, response)
    }

    /// A new process of `peer` joined in place of the old one.
    fn rejoined(&mut self, now_ns: u64, peer: NodeId) {
        self.counts.rejoins += 1;
        // What was outstanding to the old process was flushed into the CQ when the new one
        // was admitted: the replica takes those failures first, so that none of them is
        // taken for news of the new process.
        self.completions();
        // Regions that do not fit leave the peer without any: every post to it fails.
        let _ = self.mu.refresh_peer(&self.cluster, peer);
        self.replica.handle_rejoined(peer);
        // The old process's verdict (for good, if its loss was seen) was about it alone.
        self.monitor.rejoined(now_ns, peer, detector(&self.detectors));
    }

    /// What it saw, counted.
    pub fn counts(&self) -> DriverCounts {
        self.counts
    }

    /// The replica.
    pub fn replica(&self) -> &Replica<S> {
        &self.replica
    }

    /// The replica, to observe or trace it.
    pub fn replica_mut(&mut self) -> &mut Replica<S> {
        &mut self.replica
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Whether this node's failure detector suspects `peer` now. Panics if `peer` is not
    /// one of its peers.
    pub fn suspects(&self, peer: NodeId) -> bool {
        self.monitor.verdict(peer).is_suspected()
    }

    /// The cluster and the poller of the Mu CQs, for measurements on the replica's own
    /// QPs while the replica is idle (a baseline of bare WRITEs on the same QPs, say).
    /// Work posted here must use `wr_id`s of another kind than the replica's (an
    /// application kind): the replica ignores completions it does not own. A completion of
    /// the replica's own polled here must be handed back with
    /// [`Replica::handle_completion`] (through [`MuDriver::replica_mut`]), or the replica
    /// waits for it forever.
    pub fn parts_mut(&mut self) -> (&mut Cluster, &mut Poller) {
        (&mut self.cluster, &mut self.poller)
    }

    /// The replica's own regions (to inspect its log).
    pub fn log(&self) -> crate::log::local::LocalLog {
        self.mu.local_log()
    }
}
