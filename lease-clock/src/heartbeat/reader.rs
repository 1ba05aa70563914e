//! [`HeartbeatReader`]: when to READ each peer's counter, and what became of each read.

use std::collections::VecDeque;

use usec_qp_pool::{NodeId, RegisteredKind, WrId};
use usec_verbs::{Completion, PeerProbe, Status};

use crate::detector::ReadOutcome;
use crate::error::Result;

/// The kind of every read's work-request id: the registry's, so that heartbeat completions
/// share a CQ with any other role's without being mistaken for them.
pub const READ_KIND: RegisteredKind = RegisteredKind::HeartbeatRead;

/// How often peers are read and how long a read may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderConfig {
    /// A read of each peer is started this often (uKharon: about 30 µs).
    pub period_ns: u64,
    /// A read not completed this long after it was posted is reported as
    /// [`ReadOutcome::Timeout`], and again every `period_ns` while it stays stuck.
    pub timeout_ns: u64,
}

impl Default for ReaderConfig {
    /// Every 30 µs; 20 µs to complete.
    fn default() -> ReaderConfig {
        ReaderConfig { period_ns: 30_000, timeout_ns: 20_000 }
    }
}

/// A READ the driver is to post: `peer`'s heartbeat word into `peer`'s local slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRequest {
    /// Whom to read.
    pub peer: NodeId,
    /// The `wr_id` to post it with (of kind [`READ_KIND`]).
    pub wr_id: WrId,
}

/// A READ that completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadCompletion {
    /// Its `wr_id`.
    pub wr_id: WrId,
    /// How it ended.
    pub status: Status,
    /// The value that landed in the slot (meaningful on success only).
    pub value: u64,
}

/// What a read of one peer came to, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerObservation {
    /// The peer.
    pub peer: NodeId,
    /// When (the `now_ns` of the call that produced it).
    pub at_ns: u64,
    /// The outcome.
    pub outcome: ReadOutcome,
    /// Whether the reader was running throughout the span this outcome covers (since the
    /// previous read of the peer was posted, or the previous timeout of this one): no
    /// stall of its own in it (see [`HeartbeatReader`]). A value that changed is evidence
    /// of life either way; no change, an error or a timeout is evidence of silence only
    /// if watched.
    pub watched: bool,
}

/// The tiny interface the reader needs from a fabric: post a READ of a peer's heartbeat
/// word into that peer's local slot, hand back what the CQ the reads complete on holds,
/// and the value a READ left. [`crate::heartbeat::VerbsHeartbeats`] and
/// [`crate::heartbeat::PoolReads`] implement it over verbs QPs; tests implement it with a
/// script.
///
/// The CQ may be shared with other roles: [`drive`] takes the completions of the
/// heartbeat kind ([`READ_KIND`]) and hands every other one back to its caller untouched.
pub trait HeartbeatReads {
    /// Posts a READ of `peer`'s heartbeat word into its local slot, with `wr_id`.
    fn post_read(&mut self, peer: NodeId, wr_id: WrId) -> Result<()>;

    /// The next completion of the CQ the reads complete on, whoever it belongs to.
    fn poll_completion(&mut self) -> Option<Completion>;

    /// What the last READ of `peer` left in its slot (`None` for a node it has no slot
    /// for). Read right after the READ's successful completion is polled.
    fn read_value(&self, peer: NodeId) -> Option<u64>;

    /// What the provider can tell now of `peer`'s process ([`PeerProbe`]): asked when a
    /// read finds the peer silent. A port that cannot tell says `Unknown` (the default).
    fn probe(&mut self, peer: NodeId) -> PeerProbe {
        let _ = peer;
        PeerProbe::Unknown
    }
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    wr_id: WrId,
    /// When the next Timeout is due.
    next_timeout_ns: u64,
    /// The reader's stall count when it was posted.
    posted_stalls: u64,
    /// The reader's stall count when it was posted or last reported timed out.
    timeout_stalls: u64,
}

#[derive(Clone, Copy, Debug)]
struct PeerState {
    node: NodeId,
    enabled: bool,
    next_read_ns: u64,
    in_flight: Option<InFlight>,
    sequence: u64,
    /// The reader's stall count when the last completed read was posted: the span a new
    /// completion covers starts there.
    previous_stalls: u64,
}

/// Decides when to read each peer (one read in flight per peer, one started every
/// `period_ns`), tracks reads in flight against their deadlines, and turns completions
/// and missed deadlines into [`PeerObservation`]s for the detectors. Sans-IO: time comes
/// in, [`ReadRequest`]s go out.
///
/// Call order on each tick: [`Self::poll_read`] until `None` (posting each), then
/// [`Self::on_completion`] for each completion, then [`Self::poll_observation`] until
/// `None`. [`drive`] does the first two against a [`HeartbeatReads`].
///
/// # The reader's own stalls
///
/// A read that finds a peer's counter unchanged says the peer did not run in between —
/// but only if the reader did. Between two calls more than a read period apart, the
/// reader itself was not running (descheduled, its core or virtual CPU taken by another
/// process, the process paused), and a peer sharing its core was held up just as long:
/// after such a *stall*, the next outcome of each peer (a value, an error, a timeout) is
/// marked unwatched ([`PeerObservation::watched`]), and [`Self::take_stall`] reports the
/// stall for detectors that measure silence in time. A changed value remains evidence of
/// life. Completeness is kept: a peer that stopped is suspected once the reader has run
/// for the detector's misses without a stall of its own, a few read periods; a reader
/// that always stalls for longer than a period reads too seldom to judge anyway.
#[derive(Clone, Debug)]
pub struct HeartbeatReader {
    config: ReaderConfig,
    peers: Vec<PeerState>,
    observations: VecDeque<PeerObservation>,
    latest_now_ns: u64,
    /// Stalls of the reader so far.
    stalls: u64,
    /// The start of the stall not yet taken by [`Self::take_stall`] (the earliest, if
    /// several).
    stall_since_ns: Option<u64>,
}

impl HeartbeatReader {
    /// A reader of `peers` (each once; the node itself is simply not among them), first
    /// reads spread over the first period after `now_ns`.
    pub fn new(
        config: ReaderConfig,
        peers: impl IntoIterator<Item = NodeId>,
        now_ns: u64,
    ) -> HeartbeatReader {
        assert!(config.period_ns > 0, "a read period of 0");
        let nodes: Vec<NodeId> = peers.into_iter().collect();
        for (index, node) in nodes.iter().enumerate() {
            assert!(!nodes[..index].contains(node), "node {node} is listed twice");
        }
        let spread = |index: usize| config.period_ns * index as u64 / nodes.len().max(1) as u64;
        let peers = nodes
            .iter()
            .enumerate()
            .map(|(index, &node)| PeerState {
                node,
                enabled: true,
                next_read_ns: now_ns + spread(index),
                in_flight: None,
                sequence: 0,
                previous_stalls: 0,
            })
            .collect();
        HeartbeatReader {
            config,
            peers,
            observations: VecDeque::new(),
            latest_now_ns: now_ns,
            stalls: 0,
            stall_since_ns: None,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &ReaderConfig {
        &self.config
    }

    /// The peers it reads, in the order given.
    pub fn peers(&self) -> impl ExactSizeIterator<Item = NodeId> + '_ {
        self.peers.iter().map(|state| state.node)
    }

    /// Where `peer` is in [`Self::peers`], if it is one.
    pub fn index_of(&self, peer: NodeId) -> Option<usize> {
        self.peers.iter().position(|state| state.node == peer)
    }

    /// Stops (or resumes) reading `peer` (e.g. a node that left). A read in flight is
    /// forgotten. Panics if `peer` is not one of its peers.
    pub fn set_enabled(&mut self, peer: NodeId, enabled: bool) {
        let latest_now_ns = self.latest_now_ns;
        let index = self.index_of(peer).unwrap_or_else(|| panic!("node {peer} is not read"));
        let stalls = self.stalls;
        let state = &mut self.peers[index];
        state.enabled = enabled;
        state.in_flight = None;
        state.next_read_ns = latest_now_ns;
        state.previous_stalls = stalls;
    }

    /// `peer` restarted (a new process rejoined in its place, on new QPs): forgets its read
    /// in flight, which went with the old QP (resetting a QP drops its requests without
    /// completions, so it would never complete nor let a new read start), drops what was
    /// observed of the old process and not yet handed out, and reads it at once. A late
    /// completion of the forgotten read is ignored. Panics if `peer` is not one of its
    /// peers.
    pub fn restart(&mut self, peer: NodeId, now_ns: u64) {
        self.see(now_ns);
        let index = self.index_of(peer).unwrap_or_else(|| panic!("node {peer} is not read"));
        let stalls = self.stalls;
        let state = &mut self.peers[index];
        state.enabled = true;
        state.in_flight = None;
        state.next_read_ns = now_ns;
        state.previous_stalls = stalls;
        self.observations.retain(|observation| observation.peer != peer);
    }

    /// The peer at `index` of [`Self::peers`], and whether it is read.
    pub(crate) fn peer_at(&self, index: usize) -> (NodeId, bool) {
        let state = &self.peers[index];
        (state.node, state.enabled)
    }

    /// Whether `peer` is read (false for a node that is not one of its peers).
    pub fn is_enabled(&self, peer: NodeId) -> bool {
        self.index_of(peer).is_some_and(|index| self.peers[index].enabled)
    }

    /// The next READ to post, if one is due.
    pub fn poll_read(&mut self, now_ns: u64) -> Option<ReadRequest> {
        self.see(now_ns);
        let state = self
            .peers
            .iter_mut()
            .find(|state| state.enabled && state.in_flight.is_none() && now_ns >= state.next_read_ns)?;
        state.sequence = (state.sequence + 1) & WrId::MAX_SEQUENCE;
        let (peer, wr_id) = (state.node, WrId::wrapping(READ_KIND, state.node, state.sequence));
        state.in_flight = Some(InFlight {
            wr_id,
            next_timeout_ns: now_ns.saturating_add(self.config.timeout_ns),
            posted_stalls: self.stalls,
            timeout_stalls: self.stalls,
        });
        state.next_read_ns = now_ns.saturating_add(self.config.period_ns);
        Some(ReadRequest { peer, wr_id })
    }

    /// A READ could not be posted: it counts as a failed read now.
    pub fn on_post_failed(&mut self, now_ns: u64, request: ReadRequest) {
        self.on_completion(
            now_ns,
            ReadCompletion { wr_id: request.wr_id, status: Status::LocalQpOperationError, value: 0 },
        );
    }

    /// A READ completed. Returns false for a completion that is not one of this reader's
    /// reads in flight (another kind, a forgotten read), which is otherwise ignored.
    pub fn on_completion(&mut self, now_ns: u64, completion: ReadCompletion) -> bool {
        self.see(now_ns);
        if completion.wr_id.kind() != READ_KIND.into() {
            return false;
        }
        let peer = completion.wr_id.peer();
        let Some(index) = self.index_of(peer) else { return false };
        let state = &mut self.peers[index];
        let Some(read) = state.in_flight.filter(|read| read.wr_id == completion.wr_id) else {
            return false;
        };
        state.in_flight = None;
        let watched = state.previous_stalls == self.stalls;
        state.previous_stalls = read.posted_stalls;
        let outcome = match completion.status {
            Status::Success => ReadOutcome::Value(completion.value),
            status => ReadOutcome::Error(status),
        };
        self.observations.push_back(PeerObservation { peer, at_ns: now_ns, outcome, watched });
        true
    }

    /// The next observation: completions first, in arrival order, then the timeouts due at
    /// `now_ns`.
    pub fn poll_observation(&mut self, now_ns: u64) -> Option<PeerObservation> {
        self.see(now_ns);
        if let Some(observation) = self.observations.pop_front() {
            return Some(observation);
        }
        let (period_ns, stalls) = (self.config.period_ns, self.stalls);
        for state in &mut self.peers {
            if let Some(read) = state.in_flight.as_mut().filter(|read| now_ns >= read.next_timeout_ns) {
                read.next_timeout_ns = now_ns.saturating_add(period_ns);
                let watched = read.timeout_stalls == stalls;
                read.timeout_stalls = stalls;
                let (peer, outcome) = (state.node, ReadOutcome::Timeout);
                return Some(PeerObservation { peer, at_ns: now_ns, outcome, watched });
            }
        }
        None
    }

    /// The reader's latest stall not yet taken, as its start: it was not running from then
    /// until the call that noticed it (see the type's docs).
    pub fn take_stall(&mut self) -> Option<u64> {
        self.stall_since_ns.take()
    }

    /// How many times the reader stalled so far.
    pub fn stalls(&self) -> u64 {
        self.stalls
    }

    /// When the reader next has something to do (a read to start or a timeout to report).
    pub fn next_deadline_ns(&self) -> Option<u64> {
        self.peers
            .iter()
            .filter(|state| state.enabled)
            .map(|state| state.in_flight.map_or(state.next_read_ns, |read| read.next_timeout_ns))
            .min()
    }

    fn see(&mut self, now_ns: u64) {
        assert!(now_ns >= self.latest_now_ns, "time went backwards from {} to {now_ns}", self.latest_now_ns);
        if now_ns - self.latest_now_ns > self.config.period_ns {
            self.stalls += 1;
            self.stall_since_ns.get_or_insert(self.latest_now_ns);
        }
        self.latest_now_ns = now_ns;
    }
}

/// Posts every read due at `now_ns` through `port`, then feeds every completion of the
/// heartbeat kind it has back to `reader` (a stale one, for a read the reader forgot, is
/// dropped: nobody else owns that kind). A refused post counts as a failed read.
/// Completions of every other kind, another role's on a shared CQ, go to `others`, in the
/// order polled. Allocates nothing.
pub fn drive(
    reader: &mut HeartbeatReader,
    port: &mut impl HeartbeatReads,
    now_ns: u64,
    others: &mut dyn FnMut(Completion),
) {
    while let Some(request) = reader.poll_read(now_ns) {
        if port.post_read(request.peer, request.wr_id).is_err() {
            reader.on_post_failed(now_ns, request);
        }
    }
    while let Some(completion) = port.poll_completion() {
        let wr_id = WrId::from_raw(completion.wr_id);
        if wr_id.kind() != READ_KIND.into() {
            others(completion);
            continue;
        }
        let value = if completion.is_success() { port.read_value(wr_id.peer()).unwrap_or(0) } else { 0 };
        reader.on_completion(now_ns, ReadCompletion { wr_id, status: completion.status, value });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn config() -> ReaderConfig {
        ReaderConfig { period_ns: 100, timeout_ns: 40 }
    }

    fn node(id: u16) -> NodeId {
        NodeId::new(id).unwrap()
    }

    fn success(request: ReadRequest, value: u64) -> ReadCompletion {
        ReadCompletion { wr_id: request.wr_id, status: Status::Success, value }
    }

    #[test]
    fn reads_each_peer_once_per_period_spread_out() {
        // Sparse ids, in an order of their own: a mix-up of index and id would show.
        let mut reader = HeartbeatReader::new(config(), [node(40), node(3)], 0);
        assert_eq!(reader.peers().collect::<Vec<_>>(), [node(40), node(3)]);
        let first = reader.poll_read(0).unwrap();
        assert_eq!(first.peer, node(40));
        assert_eq!(first.wr_id.kind(), READ_KIND.into(), "of the registry's heartbeat kind");
        assert_eq!((first.wr_id.peer(), first.wr_id.sequence()), (node(40), 1));
        assert_eq!(reader.poll_read(0), None, "the second peer starts half a period later");
        assert_eq!(reader.poll_read(50).unwrap().peer, node(3));
        assert!(reader.on_completion(60, success(first, 5)));
        assert_eq!(
            reader.poll_observation(60),
            Some(PeerObservation {
                peer: node(40),
                at_ns: 60,
                outcome: ReadOutcome::Value(5),
                watched: true
            })
        );
        assert_eq!(reader.poll_read(99), None);
        assert_eq!(reader.poll_read(100).unwrap().peer, node(40));
    }

    #[test]
    fn a_stuck_read_times_out_once_per_period_and_blocks_new_reads() {
        let mut reader = HeartbeatReader::new(config(), [node(1)], 0);
        let stuck = reader.poll_read(0).unwrap();
        assert_eq!(reader.next_deadline_ns(), Some(40));
        assert_eq!(reader.poll_observation(39), None);
        assert_eq!(reader.poll_observation(40).map(|o| o.outcome), Some(ReadOutcome::Timeout));
        assert_eq!(reader.poll_observation(41), None);
        assert_eq!(reader.poll_read(100), None, "one read in flight per peer");
        assert_eq!(reader.poll_observation(140).map(|o| o.at_ns), Some(140));
        // It completes after all, with an error: reported, and reading resumes.
        let failed = ReadCompletion { wr_id: stuck.wr_id, status: Status::RetryExceeded, value: 0 };
        assert!(reader.on_completion(150, failed));
        assert_eq!(
            reader.poll_observation(150).map(|o| o.outcome),
            Some(ReadOutcome::Error(Status::RetryExceeded))
        );
        assert!(reader.poll_read(150).is_some());
    }

    #[test]
    fn foreign_and_stale_completions_are_ignored() {
        let mut reader = HeartbeatReader::new(config(), [node(7)], 0);
        let request = reader.poll_read(0).unwrap();
        let other = WrId::from_raw(12);
        assert!(!reader.on_completion(1, ReadCompletion { wr_id: other, status: Status::Success, value: 1 }));
        let stranger = WrId::new(READ_KIND, node(8), request.wr_id.sequence()).unwrap();
        assert!(
            !reader.on_completion(1, ReadCompletion { wr_id: stranger, ..success(request, 1) }),
            "not a peer"
        );
        assert!(reader.on_completion(2, success(request, 1)));
        assert!(!reader.on_completion(3, success(request, 1)), "already completed");
        reader.set_enabled(node(7), false);
        assert!(!reader.is_enabled(node(7)) && !reader.is_enabled(node(8)));
        assert_eq!(reader.poll_read(1_000), None);
        assert_eq!(reader.next_deadline_ns(), None);
    }

    #[test]
    fn a_restarted_peer_is_read_again_at_once_and_its_old_read_is_forgotten() {
        let mut reader = HeartbeatReader::new(config(), [node(1), node(2)], 0);
        let lost = reader.poll_read(0).unwrap();
        assert_eq!(lost.peer, node(1));
        let other = reader.poll_read(50).unwrap();
        // Node 1's QP was reset under its read: no completion will ever come, and the
        // read in flight would block every new one.
        assert_eq!(reader.poll_observation(50).map(|o| o.outcome), Some(ReadOutcome::Timeout));
        assert_eq!(reader.poll_read(300), None, "stuck behind the lost read");
        assert!(reader.on_completion(300, success(other, 4)));
        let failed = ReadCompletion { wr_id: lost.wr_id, status: Status::Flushed, value: 0 };
        reader.restart(node(1), 300);
        assert_eq!(reader.poll_observation(300).map(|o| o.peer), Some(node(2)), "others' news stays");
        let fresh = reader.poll_read(300).expect("read at once");
        assert_eq!(fresh.peer, node(1));
        assert_ne!(fresh.wr_id, lost.wr_id);
        assert!(!reader.on_completion(301, failed), "the old read is forgotten");
        assert!(reader.on_completion(302, success(fresh, 1)));
        assert_eq!(reader.poll_observation(302).map(|o| o.outcome), Some(ReadOutcome::Value(1)));
    }

    /// A port whose READs complete, in post order, on a CQ that `also` shares.
    pub(crate) struct Script {
        pub(crate) posted: Vec<(NodeId, WrId)>,
        pub(crate) refuse: bool,
        /// Other roles' completions, polled before the reads'.
        pub(crate) also: Vec<Completion>,
        /// What a probe of any peer finds.
        pub(crate) probe: PeerProbe,
    }

    impl Script {
        pub(crate) fn new() -> Script {
            Script { posted: Vec::new(), refuse: false, also: Vec::new(), probe: PeerProbe::Unknown }
        }
    }

    impl HeartbeatReads for Script {
        fn post_read(&mut self, peer: NodeId, wr_id: WrId) -> Result<()> {
            if self.refuse {
                return Err(crate::Error::config("refused"));
            }
            self.posted.push((peer, wr_id));
            Ok(())
        }

        fn poll_completion(&mut self) -> Option<Completion> {
            if !self.also.is_empty() {
                return Some(self.also.remove(0));
            }
            let (_, wr_id) = self.posted.pop()?;
            Some(Completion { wr_id: wr_id.to_raw(), status: Status::Success, ..Completion::default() })
        }

        fn read_value(&self, _peer: NodeId) -> Option<u64> {
            Some(9)
        }

        fn probe(&mut self, _peer: NodeId) -> PeerProbe {
            self.probe
        }
    }

    /// Another role's WRITE completing on the heartbeat CQ.
    pub(crate) fn other_roles_write(sequence: u64) -> Completion {
        let wr_id =
            WrId::new(usec_qp_pool::WrKind::application(7), NodeId::new(1).unwrap(), sequence).unwrap();
        Completion {
            wr_id: wr_id.to_raw(),
            status: Status::Success,
            byte_len: 64,
            qp_num: 99,
            ..Completion::default()
        }
    }

    #[test]
    fn drive_posts_and_collects_and_refusals_are_failures() {
        let mut reader = HeartbeatReader::new(config(), [node(0), node(1), node(2)], 0);
        let mut script = Script::new();
        drive(&mut reader, &mut script, 70, &mut |other| panic!("no other role here: {other:?}"));
        let values: Vec<_> = std::iter::from_fn(|| reader.poll_observation(70)).map(|o| o.outcome).collect();
        assert_eq!(values, vec![ReadOutcome::Value(9); 3]);
        script.refuse = true;
        drive(&mut reader, &mut script, 170, &mut |other| panic!("no other role here: {other:?}"));
        let observation = reader.poll_observation(170).unwrap();
        assert_eq!(observation.outcome, ReadOutcome::Error(Status::LocalQpOperationError));
    }

    #[test]
    fn drive_hands_other_roles_completions_back_untouched() {
        let mut reader = HeartbeatReader::new(config(), [node(1)], 0);
        let mut script = Script::new();
        script.also = vec![other_roles_write(1), other_roles_write(2)];
        let mut others = Vec::new();
        drive(&mut reader, &mut script, 0, &mut |other| others.push(other));
        assert_eq!(others, [other_roles_write(1), other_roles_write(2)], "in order, every field intact");
        assert_eq!(
            reader.poll_observation(0).map(|o| o.outcome),
            Some(ReadOutcome::Value(9)),
            "and the read"
        );
    }

    /// With each layer packing its own `wr_id`s, a qp-pool write of kind 4 to node 2816
    /// and the reader's first read of peer 0 were both `0x4b00_0000_0000_0001`, and the
    /// reader took the write's completion for its read. Kinds from one registry cannot meet.
    #[test]
    fn no_other_kind_is_ever_taken_for_a_read() {
        let mut reader = HeartbeatReader::new(config(), [node(0)], 0);
        let read = reader.poll_read(0).unwrap();
        for value in (0..=u8::MAX).filter(|value| *value != READ_KIND as u8) {
            for peer in [0, 0xb00, NodeId::MAX] {
                let raw = (u64::from(value) << 56) | (u64::from(peer) << 44) | read.wr_id.sequence();
                let completion =
                    ReadCompletion { wr_id: WrId::from_raw(raw), status: Status::Success, value: 0 };
                assert!(!reader.on_completion(1, completion), "{} was taken for a read", completion.wr_id);
            }
        }
        let write = WrId::new(usec_qp_pool::WrKind::application(4), NodeId::new(0xb00).unwrap(), 1).unwrap();
        assert_ne!(write.to_raw(), read.wr_id.to_raw());
        assert!(reader.on_completion(1, success(read, 1)), "its own read is still its own");
    }
}
