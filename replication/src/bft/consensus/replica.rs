//! The replica: the sans-IO core of uBFT's consensus at one of the 2f + 1 replicas.
//!
//! Call order, as quinn's `Connection`: feed inputs —
//! [`Replica::handle_ctbcast`] for each entry read from a ring in our memory,
//! [`Replica::handle_register_written`] / [`Replica::handle_register_read`] for the
//! register completions of a stream, [`Replica::handle_direct`] for each point-to-point
//! message (client requests, signature shares) — call [`Replica::tick`] whenever
//! [`Replica::poll_timeout`] has passed (and when [`Replica::has_deferred_work`]), then
//! drain [`Replica::poll_action`] and [`Replica::poll_event`]. Time comes in as `now_ns`;
//! every timeout (slow path, view change) is the replica's own, never the driver's.
//!
//! The protocol's handlers live in [`super::normal`] (prepare, promise, commit,
//! execution, checkpoints) and [`super::view_change`] (seal, new view).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use ed25519_dalek::SigningKey;
use usec_qp_pool::NodeId;

use super::action::{Action, Event};
use super::config::ConsensusConfig;
use super::reject::{Reject, Stats};
use super::request::{ClientId, ClientKeyring, Request};
use super::state_transfer::{Taken, Transfer};
use super::stream::Stream;
use super::wire::{Batch, DirectMessage, Limits, Share, StreamMessage};
use crate::bft::ctbcast::{
    self, Broadcaster, Entry, Hash, Keyring, Receiver, RegisterReadResult, SignatureBytes,
};
use crate::error::{Error, Result};
use crate::state_machine::StateMachine;

/// Where a replica stands with its view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Working in its view.
    Normal,
    /// Sealed its old view; waits for the new one's leader until `deadline_ns`.
    Changing {
        /// When it sealed.
        since_ns: u64,
        /// When it gives up on this view too.
        deadline_ns: u64,
        /// How many views it has given up on in a row (the wait doubles each time).
        attempt: u32,
    },
}

/// One slot's state at this replica.
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// What this replica promised, in which view.
    pub(super) promised: Option<(u64, Hash)>,
    /// When its signature share is due (slow path), while undecided.
    pub(super) share_due_ns: Option<u64>,
    /// Whether our share for the promised view went out.
    pub(super) share_sent: bool,
    /// The latest share of each replica: view, digest, signature.
    pub(super) shares: BTreeMap<NodeId, (u64, Hash, SignatureBytes)>,
    /// The view in which we CTBcast a commit.
    pub(super) committed_in: Option<u64>,
    /// The batches seen for this slot, by digest (few: one per view at most from correct
    /// leaders).
    pub(super) batches: BTreeMap<Hash, Batch>,
    /// The decided batch.
    pub(super) decided: Option<Hash>,
    /// When this replica promised (for the fast-path latency it learns from).
    pub(super) promised_at_ns: u64,
}

/// The consensus core of one replica, running state machine `S`.
#[derive(Debug)]
pub struct Replica<S> {
    pub(super) config: ConsensusConfig,
    pub(super) me: NodeId,
    pub(super) key: SigningKey,
    pub(super) keys: Keyring,
    pub(super) clients: ClientKeyring,
    pub(super) limits: Limits,
    pub(super) broadcaster: Broadcaster,
    pub(super) receivers: BTreeMap<NodeId, Receiver>,
    /// Every replica's stream, ours included (fed as we broadcast).
    pub(super) streams: BTreeMap<NodeId, Stream>,
    /// Our own messages, to process in our own stream after the current handler.
    pub(super) own: VecDeque<StreamMessage>,
    pub(super) view: u64,
    pub(super) status: Status,
    /// The current view's re-proposals (from its new view): slot to digest, up to `plan_end`.
    pub(super) plan: BTreeMap<u64, Hash>,
    pub(super) plan_end: u64,
    pub(super) slots: BTreeMap<u64, Slot>,
    pub(super) app: S,
    /// The last executed slot (slots start at 1).
    pub(super) executed: u64,
    /// A hash chain over everything executed: equal chains mean equal states, since the
    /// state machine is deterministic.
    pub(super) history: Hash,
    /// Per client, its last executed number and result.
    pub(super) replies: BTreeMap<ClientId, (u64, Vec<u8>)>,
    /// Per client, its newest unexecuted request and when it arrived (or the view began).
    pub(super) pending: BTreeMap<ClientId, (Request, u64)>,
    /// The last stable checkpoint.
    pub(super) stable: u64,
    /// Leader: the next slot to propose, and what it proposed in this view.
    pub(super) next_slot: u64,
    pub(super) proposed: BTreeSet<(ClientId, u64)>,
    /// The view whose new view we sent as its leader.
    pub(super) new_view_sent: Option<u64>,
    /// When to ask another replica for what we missed (while behind its checkpoints).
    pub(super) fetch_due_ns: Option<u64>,
    /// Fetches sent so far: a state transfer begun in an earlier round may be replaced by
    /// one of the same checkpoint (its helper may have stopped).
    pub(super) fetch_round: u64,
    /// The replica our latest fetch went to: the only one a state transfer may start from.
    pub(super) fetch_helper: Option<NodeId>,
    /// The checkpoints we took or were given: digests, and the newest states' bytes.
    pub(super) taken: BTreeMap<u64, Taken>,
    /// Per asker, the checkpoint whose state we last sent it, and when.
    pub(super) states_sent_to: BTreeMap<NodeId, (u64, u64)>,
    /// The state transfer under way, if any.
    pub(super) transfer: Option<Transfer>,
    /// When `tick` last ran.
    pub(super) last_tick_ns: u64,
    /// The latest time an input came with.
    pub(super) now_ns: u64,
    /// Promise to fast decision, smoothed over recent slots (0 until one is seen): the
    /// slow path waits a few of these, so that a loaded group does not pay signatures for
    /// slots the fast path was about to decide (see `Replica::slow_path_timeout`).
    pub(super) fast_decision_ns: u64,
    /// Test support: rewrites what we CTBcast (never what we process ourselves).
    pub(super) tamper: Tamper,
    /// Another replica asked for a recap of our stream: sent once our queue is empty.
    pub(super) recap_due: bool,
    /// When our last recap went out.
    pub(super) recap_sent_ns: Option<u64>,
    /// The prepare certificates of our own commits, by (slot, view): a recap carries them.
    pub(super) own_certificates: BTreeMap<(u64, u64), Vec<Share>>,
    /// When we entered our view.
    pub(super) view_entered_ns: u64,
    /// When we last decided a slot on the fast path.
    pub(super) last_fast_ns: u64,
    /// Slots decided on the slow path since the last fast decision.
    pub(super) slow_since_fast: u64,
    pub(super) actions: VecDeque<Action>,
    pub(super) events: VecDeque<Event>,
    pub(super) stats: Stats,
}

impl<S: StateMachine> Replica<S> {
    /// Replica `me` of `config`'s group, signing with `key`; `keys` holds every replica's
    /// public key, `clients` every client's.
    pub fn new(
        config: ConsensusConfig,
        me: NodeId,
        key: SigningKey,
        keys: Keyring,
        clients: ClientKeyring,
        app: S,
    ) -> Result<Replica<S>> {
        config.validate()?;
        if !config.replicas.contains(&me) {
            return Err(Error::Config(format!("bft consensus: {me} is not a replica")));
        }
        let broadcaster = Broadcaster::new(config.stream(me), key.clone())?;
        let mut receivers = BTreeMap::new();
        for &other in config.replicas.iter().filter(|&&r| r != me) {
            receivers.insert(other, Receiver::new(config.stream(other), me, keys.clone())?);
        }
        let streams = config.replicas.iter().map(|&r| (r, Stream::default())).collect();
        Ok(Replica {
            limits: config.limits(),
            me,
            key,
            keys,
            clients,
            broadcaster,
            receivers,
            streams,
            own: VecDeque::new(),
            view: 0,
            status: Status::Normal,
            plan: BTreeMap::new(),
            plan_end: 0,
            slots: BTreeMap::new(),
            app,
            executed: 0,
            history: [0; 32],
            replies: BTreeMap::new(),
            pending: BTreeMap::new(),
            stable: 0,
            next_slot: 1,
            proposed: BTreeSet::new(),
            new_view_sent: None,
            tamper: Tamper(None, false),
            recap_due: false,
            recap_sent_ns: None,
            own_certificates: BTreeMap::new(),
            view_entered_ns: 0,
            last_fast_ns: 0,
            slow_since_fast: 0,
            last_tick_ns: 0,
            now_ns: 0,
            fast_decision_ns: 0,
            fetch_due_ns: None,
            fetch_round: 0,
            fetch_helper: None,
            taken: BTreeMap::new(),
            states_sent_to: BTreeMap::new(),
            transfer: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            config,
        })
    }

    /// An entry read from a ring `from` writes into our memory (any stream's).
    pub fn handle_ctbcast(
        &mut self,
        now_ns: u64,
        from: NodeId,
        bytes: &[u8],
    ) -> std::result::Result<(), Reject> {
        self.now_ns = self.now_ns.max(now_ns);
        let entry = Entry::decode(bytes).map_err(|reject| self.stats.refuse(reject.into()))?;
        let stream = NodeId::new(entry.broadcaster).ok();
        let result = match stream {
            Some(stream) if stream == self.me => self.broadcaster.handle_entry(from, bytes),
            Some(stream) => match self.receivers.get_mut(&stream) {
                Some(receiver) => receiver.handle_entry(now_ns, from, bytes),
                None => {
                    Err(ctbcast::Reject::WrongBroadcaster { expected: self.me, found: entry.broadcaster })
                }
            },
            None => Err(ctbcast::Reject::WrongBroadcaster { expected: self.me, found: entry.broadcaster }),
        };
        self.after_input(now_ns);
        result.map_err(|reject| self.stats.refuse(reject.into()))
    }

    /// Our register write for `stream`'s index `index` completed.
    pub fn handle_register_written(&mut self, now_ns: u64, stream: NodeId, index: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        if let Some(receiver) = self.receivers.get_mut(&stream) {
            receiver.handle_register_written(index);
        }
        self.after_input(now_ns);
    }

    /// Our read of `owner`'s register for `stream`'s index `index` completed.
    pub fn handle_register_read(
        &mut self,
        now_ns: u64,
        stream: NodeId,
        index: u64,
        owner: NodeId,
        result: RegisterReadResult<'_>,
    ) {
        self.now_ns = self.now_ns.max(now_ns);
        if let Some(receiver) = self.receivers.get_mut(&stream) {
            receiver.handle_register_read(index, owner, result);
        }
        self.after_input(now_ns);
    }

    /// A point-to-point message: from a client (`from` = `Err(client)`) or a replica.
    pub fn handle_direct(
        &mut self,
        now_ns: u64,
        from: std::result::Result<NodeId, ClientId>,
        bytes: &[u8],
    ) -> std::result::Result<(), Reject> {
        self.now_ns = self.now_ns.max(now_ns);
        let result = DirectMessage::decode(bytes, &self.limits).and_then(|message| match (message, from) {
            (DirectMessage::Request(request), Err(client)) if request.client == client => {
                self.on_request(now_ns, request)
            }
            (DirectMessage::Share { view, slot, digest, signature }, Ok(replica)) if replica != self.me => {
                self.on_share(now_ns, replica, view, slot, digest, signature)
            }
            (DirectMessage::Fetch { executed }, Ok(replica)) if self.is_peer(replica) => {
                self.on_fetch(replica, executed)
            }
            (DirectMessage::Catchup { slot, digest, state, certificate, first, batches }, Ok(replica))
                if self.is_peer(replica) =>
            {
                self.on_catchup(slot, digest, state, &certificate, first, batches)
            }
            (
                DirectMessage::State { slot, digest, history, certificate, total, offset, chunk },
                Ok(replica),
            ) if self.is_peer(replica) => {
                self.on_state(replica, slot, digest, history, &certificate, total, offset, &chunk)
            }
            (DirectMessage::RecapRequest, Ok(replica)) if self.is_peer(replica) => {
                self.on_recap_request(now_ns)
            }
            (message, from) => Err(Reject::UnexpectedSender {
                from: format!("{from:?}"),
                kind: match message {
                    DirectMessage::Request(_) => "request",
                    DirectMessage::Reply(_) => "reply",
                    DirectMessage::Share { .. } => "share",
                    DirectMessage::Fetch { .. } => "fetch",
                    DirectMessage::Catchup { .. } => "catch-up",
                    DirectMessage::RecapRequest => "recap request",
                    DirectMessage::State { .. } => "state",
                },
            }),
        });
        self.after_input(now_ns);
        result.map_err(|reject| self.stats.refuse(reject))
    }

    /// Runs what is due at `now_ns`: CTBcast's own timeouts and deferred signing, slow
    /// paths (signature shares), and view changes.
    pub fn tick(&mut self, now_ns: u64) {
        self.last_tick_ns = now_ns;
        self.now_ns = self.now_ns.max(now_ns);
        self.broadcaster.tick();
        for receiver in self.receivers.values_mut() {
            receiver.tick(now_ns);
        }
        self.share_timers(now_ns);
        self.fetch_timer(now_ns);
        self.recap_timers(now_ns);
        self.view_timers(now_ns);
        self.after_input(now_ns);
    }

    /// Whether [`Replica::tick`] has deferred work to do now (CTBcast signing ahead).
    pub fn has_deferred_work(&self) -> bool {
        self.broadcaster.has_deferred_work() || self.receivers.values().any(Receiver::has_deferred_work)
    }

    /// When [`Replica::tick`] wants to run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        let receivers = self.receivers.values().filter_map(Receiver::poll_timeout);
        let shares = self.slots.values().filter_map(|slot| slot.share_due_ns);
        let view = match self.status {
            // Also once it has waited a base timeout: it may then follow a further seal.
            Status::Changing { since_ns, deadline_ns, .. } => {
                let follow = since_ns + self.config.view_change_timeout_ns;
                Some(if follow > self.last_tick_ns { follow.min(deadline_ns) } else { deadline_ns })
            }
            Status::Normal => self.oldest_pending().map(|at| at + self.config.view_change_timeout_ns),
        };
        let blocked = self
            .streams
            .values()
            .filter_map(|s| s.blocked_since_ns.map(|since| since + self.config.view_change_timeout_ns));
        let recaps = self.recap_timeout();
        receivers.chain(shares).chain(view).chain(blocked).chain(self.fetch_due_ns).chain(recaps).min()
    }

    /// The next piece of work for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What it has done and refused (CTBcast's refusals are in each stream's stats).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// CTBcast's stats for `stream` (our broadcaster's when it is us).
    pub fn ctbcast_stats(&self, stream: NodeId) -> Option<&ctbcast::Stats> {
        if stream == self.me {
            return Some(self.broadcaster.stats());
        }
        self.receivers.get(&stream).map(Receiver::stats)
    }

    /// The current view and status.
    pub fn view(&self) -> (u64, Status) {
        (self.view, self.status)
    }

    /// The last executed slot and the history digest after it.
    pub fn executed(&self) -> (u64, Hash) {
        (self.executed, self.history)
    }

    /// The last stable checkpoint.
    pub fn stable_checkpoint(&self) -> u64 {
        self.stable
    }

    /// The state machine.
    pub fn app(&self) -> &S {
        &self.app
    }

    /// Makes this replica Byzantine for tests: `tamper` rewrites every message before it
    /// is CTBcast. With `believe` false the replica goes on believing it sent the original
    /// (its lies are consistent with nothing); with `believe` true it processes the lie as
    /// its own message (a liar that keeps its story straight, and leads by it).
    /// Simulations use it for lying leaders and sealers.
    #[doc(hidden)]
    pub fn tamper_broadcasts_for_testing(&mut self, tamper: TamperFn, believe: bool) {
        self.tamper = Tamper(Some(tamper), believe);
    }

    /// Per stream: facts cursor, protocol cursor, messages held, broken (for traces).
    pub fn stream_positions(&self) -> Vec<(NodeId, u64, u64, usize, bool)> {
        self.streams.iter().map(|(&r, s)| (r, s.next, s.protocol_next, s.ahead.len(), s.broken)).collect()
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    /// CTBcasts `message` on our stream and queues it for our own in-order processing.
    pub(super) fn broadcast(&mut self, message: StreamMessage) {
        let mut sent = message.clone();
        if let Some(tamper) = &mut self.tamper.0 {
            tamper(&mut sent);
        }
        let message = if self.tamper.1 { sent.clone() } else { message };
        let bytes = sent.encode();
        match self.broadcaster.broadcast(&bytes) {
            Ok(_) => self.own.push_back(message),
            // Sized by `ConsensusConfig::validate`; the index limit is centuries away.
            Err(reject) => panic!("our own {} refused by ctbcast: {reject}", message.kind_name()),
        }
    }

    pub(super) fn send_replicas(&mut self, message: &DirectMessage) {
        let bytes = message.encode();
        for &to in self.config.replicas.iter().filter(|&&r| r != self.me) {
            self.actions.push_back(Action::ToReplica { to, bytes: bytes.clone() });
        }
    }

    pub(super) fn is_peer(&self, replica: NodeId) -> bool {
        replica != self.me && self.config.replicas.contains(&replica)
    }

    pub(super) fn oldest_pending(&self) -> Option<u64> {
        self.pending.values().map(|&(_, at)| at).min()
    }

    /// After every input: collect CTBcast's deliveries and actions, process what the
    /// streams allow, run the leader's proposals; repeat until nothing moves.
    fn after_input(&mut self, now_ns: u64) {
        loop {
            self.collect_ctbcast();
            let mut moved = false;
            while let Some(message) = self.own.pop_front() {
                let me = self.me;
                self.process(now_ns, me, message);
                moved = true;
            }
            if self.recap_due {
                self.send_recap(now_ns);
                continue;
            }
            let others: Vec<NodeId> = self.receivers.keys().copied().collect();
            for from in others {
                moved |= self.walk_facts(now_ns, from);
                moved |= self.walk_protocol(now_ns, from);
            }
            moved |= self.propose(now_ns);
            self.try_build_new_view(now_ns);
            if !moved && self.own.is_empty() {
                self.collect_ctbcast();
                return;
            }
        }
    }

    /// Our own messages are valid by construction; processing them keeps our own facts.
    fn process(&mut self, now_ns: u64, from: NodeId, message: StreamMessage) {
        let protocol = matches!(message, StreamMessage::Prepare { .. } | StreamMessage::NewView { .. });
        let flow = if protocol {
            self.check_and_process(now_ns, from, message)
        } else {
            self.process_fact(now_ns, from, message)
        };
        // A correct replica's own messages never wait; a test's tampered one may.
        if flow == Flow::Blocked {
            assert!(self.tamper.0.is_some(), "our own message must never wait");
        }
        let stream = self.streams.get_mut(&from).expect("us");
        stream.next += 1;
        stream.protocol_next += 1;
    }

    /// Moves `from`'s facts cursor as far as delivered.
    fn walk_facts(&mut self, now_ns: u64, from: NodeId) -> bool {
        if self.streams[&from].resync.is_some() && !self.try_resync(now_ns, from) {
            return false;
        }
        let mut moved = false;
        while let Some(bytes) = self.streams[&from].facts_head() {
            let decoded = StreamMessage::decode(bytes, &self.limits);
            match decoded {
                Ok(StreamMessage::Prepare { .. } | StreamMessage::NewView { .. }) => {}
                Ok(message) => {
                    self.process_fact(now_ns, from, message);
                }
                Err(reject) => {
                    self.stats.refuse(reject);
                }
            }
            self.streams.get_mut(&from).expect("a replica").next += 1;
            moved = true;
        }
        moved
    }

    /// Moves `from`'s protocol cursor until its head must wait. A new view that waits
    /// longer than a view change would is given up (as if refused: safe, we just do not
    /// enter that view) so that a seal lost in a Byzantine stream's gap cannot hold a
    /// correct leader's stream forever.
    fn walk_protocol(&mut self, now_ns: u64, from: NodeId) -> bool {
        let mut moved = false;
        while let Some(bytes) = self.streams[&from].protocol_head() {
            let flow = match StreamMessage::decode(bytes, &self.limits) {
                Ok(message @ (StreamMessage::Prepare { .. } | StreamMessage::NewView { .. })) => {
                    let new_view = matches!(message, StreamMessage::NewView { .. });
                    match self.check_and_process(now_ns, from, message) {
                        Flow::Blocked if new_view => {
                            let stream = self.streams.get_mut(&from).expect("a replica");
                            let since = *stream.blocked_since_ns.get_or_insert(now_ns);
                            if now_ns.saturating_sub(since) < self.config.view_change_timeout_ns {
                                Flow::Blocked
                            } else {
                                self.stats.refuse(Reject::Stale {
                                    what: "new view that could not be checked in time",
                                });
                                Flow::Done
                            }
                        }
                        flow => flow,
                    }
                }
                // Facts, and refusals, were the facts cursor's business.
                _ => Flow::Done,
            };
            if flow == Flow::Blocked {
                break;
            }
            self.streams.get_mut(&from).expect("a replica").advance_protocol();
            moved = true;
        }
        moved
    }

    fn process_fact(&mut self, now_ns: u64, from: NodeId, message: StreamMessage) -> Flow {
        self.check_and_process(now_ns, from, message)
    }

    fn collect_ctbcast(&mut self) {
        let tail = self.config.ctbcast.tail as usize;
        let mut gaps: Vec<NodeId> = Vec::new();
        while let Some(action) = self.broadcaster.poll_action() {
            self.actions.push_back(Action::Ctbcast { stream: self.me, action });
        }
        for (&stream, receiver) in self.receivers.iter_mut() {
            while let Some(action) = receiver.poll_action() {
                self.actions.push_back(Action::Ctbcast { stream, action });
            }
            while let Some(event) = receiver.poll_event() {
                let state = self.streams.get_mut(&stream).expect("a replica");
                match event {
                    ctbcast::Event::Delivered { index, message, .. } => {
                        // Too far ahead of a stuck cursor: a gap (the message, long before
                        // any recap we will ask for, is not needed).
                        gaps.extend((!state.delivered(index, message, 4 * tail)).then_some(stream));
                    }
                    // A gap in the stream: it waits for a recap (see `recap`).
                    ctbcast::Event::Abandoned { index, .. }
                        if index >= state.next && state.resync.is_none() =>
                    {
                        gaps.push(stream);
                    }
                    // A proven liar: its stream stops here for good.
                    ctbcast::Event::Equivocation(_) if !state.broken => {
                        state.broken = true;
                        self.stats.broken_streams += 1;
                    }
                    _ => {}
                }
                if state.broken {
                    state.ahead.clear();
                }
            }
            if self.streams[&stream].has_gap(receiver.oldest_kept()) {
                gaps.push(stream);
            }
        }
        for stream in gaps {
            self.start_resync(self.now_ns, stream);
        }
    }

    /// One stream message, in stream order: refusals are counted and consumed; a message
    /// that cannot be judged yet blocks its stream.
    fn check_and_process(&mut self, now_ns: u64, from: NodeId, message: StreamMessage) -> Flow {
        let result = match message {
            StreamMessage::Prepare { view, slot, batch } => self.on_prepare(now_ns, from, view, slot, batch),
            StreamMessage::Promise { view, slot, batch } => self.on_promise(from, view, slot, batch),
            StreamMessage::Commit { view, slot, batch, certificate } => {
                self.on_commit(now_ns, from, view, slot, batch, &certificate)
            }
            StreamMessage::Checkpoint { slot, digest, signature } => {
                self.on_checkpoint(from, slot, digest, signature)
            }
            StreamMessage::Seal { view, low } => self.on_seal(now_ns, from, view, low),
            StreamMessage::NewView { view, low, sealers } => {
                self.on_new_view(now_ns, from, view, low, &sealers)
            }
            StreamMessage::Recap(part) => self.on_recap_part(from, part),
        };
        match result {
            Ok(flow) => flow,
            Err(reject) => {
                self.stats.refuse(reject);
                Flow::Done
            }
        }
    }
}

/// A rewrite of outgoing stream messages (tests only).
pub(super) struct Tamper(pub(super) Option<TamperFn>, pub(super) bool);

/// What rewrites an outgoing stream message.
pub type TamperFn = Box<dyn FnMut(&mut StreamMessage) + Send>;

impl std::fmt::Debug for Tamper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tamper({})", if self.0.is_some() { "on" } else { "off" })
    }
}

/// Whether a stream message was handled or must wait at the head of its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// Processed (or refused): the stream moves on.
    Done,
    /// Cannot be judged yet (a seal it names not seen, a slot beyond the window).
    Blocked,
}
