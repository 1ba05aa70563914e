//! [`HeartbeatMonitor`]: a reader and one detector per peer, wired together.

use std::collections::VecDeque;

use usec_qp_pool::NodeId;
use usec_verbs::{Completion, PeerProbe};

use crate::detector::{FailureDetector, Observation, ReadOutcome, Verdict};
use crate::heartbeat::reader::{drive, HeartbeatReader, HeartbeatReads, PeerObservation};

/// A change of mind about one peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PeerChange {
    /// The peer.
    pub peer: NodeId,
    /// What the detector now thinks.
    pub verdict: Verdict,
}

/// Everything a node runs to watch its peers: a [`HeartbeatReader`] and a detector per
/// peer, fed with what the reader observes and with whatever else the driver learns
/// (a `PeerLost` event: [`Self::observe`]). Sans-IO apart from the [`HeartbeatReads`] it
/// is ticked with. The detectors of peers the reader no longer reads (disabled) are not
/// ticked, so a timeout-based one does not suspect them.
#[derive(Debug)]
pub struct HeartbeatMonitor<D> {
    reader: HeartbeatReader,
    detectors: Vec<D>,
    changes: VecDeque<PeerChange>,
    /// Per peer, the last value read: a read that finds it again is a silent one.
    last_values: Vec<Option<u64>>,
    /// Silent reads of a peer the provider says is alive that are excused in a row, at
    /// most (0: none).
    patience_reads: u32,
    /// Per peer, the silent reads excused since its last change.
    excused: Vec<u32>,
    /// Peers the provider said do not run (their process exiting or stopped, or lost), not
    /// yet taken by [`Self::poll_ruled_out`].
    ruled_out: VecDeque<NodeId>,
}

impl<D: FailureDetector> HeartbeatMonitor<D> {
    /// One detector per peer of `reader`, in the order of [`HeartbeatReader::peers`].
    pub fn new(reader: HeartbeatReader, detectors: Vec<D>) -> HeartbeatMonitor<D> {
        assert_eq!(reader.peers().len(), detectors.len(), "one detector per peer");
        let (last_values, excused) = (vec![None; detectors.len()], vec![0; detectors.len()]);
        HeartbeatMonitor {
            reader,
            detectors,
            changes: VecDeque::new(),
            last_values,
            patience_reads: 0,
            excused,
            ruled_out: VecDeque::new(),
        }
    }

    /// Excuses a peer's silence for up to `patience_ns` (in whole read periods) while the
    /// provider says its process is alive and not stopped.
    ///
    /// A process that exists, runs no code of its own and is not stopped is waiting for a
    /// CPU: its core was given to another process (or its virtual CPU to another guest),
    /// and it will run again. Mu deposes a leader that does not bump its counter for four
    /// reads (120 µs with reads every 30 µs); on a shared machine a leader is descheduled
    /// that long many times a second, and each time the group changed leaders for nothing.
    /// A dead or stopped process is told apart at once by the probe, so waiting out a live
    /// one costs no detection time for them; the patience bounds how long a live process
    /// that does not run — descheduled, or wedged in a loop that no longer bumps — is
    /// trusted: after it, its silent reads count as misses again. Only detectors that count
    /// reads are concerned; a provider that cannot tell (`Unknown`) excuses nothing.
    pub fn with_alive_patience(mut self, patience_ns: u64) -> HeartbeatMonitor<D> {
        let reads = patience_ns / self.reader.config().period_ns;
        self.patience_reads = u32::try_from(reads).unwrap_or(u32::MAX);
        self
    }

    /// Posts the reads due, collects completions and timeouts, feeds the detectors and lets
    /// them see time pass. Changes of verdict queue up for [`Self::poll_change`].
    ///
    /// The port's CQ may be shared: a completion of another kind than the heartbeat's
    /// (another role's READ or WRITE on the same CQ) is not the monitor's, and goes to
    /// `others`, untouched and in the order polled, for the driver to hand to its owner.
    pub fn tick(&mut self, now_ns: u64, port: &mut impl HeartbeatReads, others: &mut dyn FnMut(Completion)) {
        drive(&mut self.reader, port, now_ns, others);
        if let Some(since_ns) = self.reader.take_stall() {
            self.each_enabled(|detector| detector.observe(now_ns, Observation::ObserverStalled { since_ns }));
        }
        while let Some(PeerObservation { peer, at_ns, outcome, watched }) =
            self.reader.poll_observation(now_ns)
        {
            let Some(index) = self.reader.index_of(peer) else { continue };
            let silent = match outcome {
                ReadOutcome::Value(value) => self.last_values[index].replace(value) == Some(value),
                ReadOutcome::Error(_) | ReadOutcome::Timeout => true,
            };
            if !silent {
                self.excused[index] = 0;
                self.feed(peer, at_ns, Observation::Read(outcome));
                continue;
            }
            // A silent peer may be a dead or stopped process, which the provider can see
            // at once where more silent reads would take periods — whether or not this
            // observer watched the silence; or a live one waiting for a CPU, which the
            // patience waits out.
            match port.probe(peer) {
                probe @ (PeerProbe::Exiting | PeerProbe::Stopped) => {
                    let read =
                        if watched { Observation::Read(outcome) } else { Observation::Inconclusive(outcome) };
                    self.feed(peer, at_ns, read);
                    self.feed(peer, at_ns, Observation::Probe(probe));
                }
                _ if !watched => self.feed(peer, at_ns, Observation::Inconclusive(outcome)),
                PeerProbe::Alive if self.excused[index] < self.patience_reads => {
                    self.excused[index] += 1;
                    self.feed(peer, at_ns, Observation::Inconclusive(outcome));
                }
                _ => self.feed(peer, at_ns, Observation::Read(outcome)),
            }
        }
        self.each_enabled(|detector| detector.tick(now_ns));
    }

    /// Runs `step` on the detector of every peer the reader reads (the others are not
    /// judged), queueing the changes of verdict it returns.
    fn each_enabled(&mut self, mut step: impl FnMut(&mut D) -> Option<Verdict>) {
        for (index, detector) in self.detectors.iter_mut().enumerate() {
            let (peer, enabled) = self.reader.peer_at(index);
            if !enabled {
                continue;
            }
            if let Some(verdict) = step(detector) {
                self.changes.push_back(PeerChange { peer, verdict });
            }
        }
    }

    /// Tells `peer`'s detector what was learnt outside the reads. A node that is not one
    /// of the peers (the node itself, a stranger) is ignored.
    pub fn observe(&mut self, now_ns: u64, peer: NodeId, observation: Observation) {
        self.feed(peer, now_ns, observation);
    }

    /// `peer` restarted: a new process of it rejoined, on new QPs and a new heartbeat
    /// region (qp-pool's `ControlEvent::Rejoined`). Its reads start afresh
    /// ([`HeartbeatReader::restart`]) and `detector` judges it from now on: what the old
    /// one concluded (a permanent `PeerLost` suspicion above all) was about the process
    /// that died. A change of verdict is queued as usual. Panics if `peer` is not watched.
    pub fn rejoined(&mut self, now_ns: u64, peer: NodeId, detector: D) {
        let index = self.index(peer);
        self.reader.restart(peer, now_ns);
        self.last_values[index] = None;
        self.excused[index] = 0;
        let before = self.detectors[index].verdict();
        self.detectors[index] = detector;
        let after = self.detectors[index].verdict();
        if after != before {
            self.changes.push_back(PeerChange { peer, verdict: after });
        }
    }

    /// The next change of verdict, oldest first.
    pub fn poll_change(&mut self) -> Option<PeerChange> {
        self.changes.pop_front()
    }

    /// The next peer the provider said does not run — its process exiting or stopped (a
    /// probe), or lost (`PeerLost`) — whether or not its verdict changed. Certain evidence
    /// that outweighs any earlier sign of life the caller keeps of its own (a message, a
    /// WRITE from the peer), which the detectors never saw.
    pub fn poll_ruled_out(&mut self) -> Option<NodeId> {
        self.ruled_out.pop_front()
    }

    /// What `peer`'s detector thinks now. Panics if `peer` is not watched.
    pub fn verdict(&self, peer: NodeId) -> Verdict {
        self.detector(peer).verdict()
    }

    /// `peer`'s detector. Panics if `peer` is not watched.
    pub fn detector(&self, peer: NodeId) -> &D {
        &self.detectors[self.index(peer)]
    }

    /// The reader (e.g. for its next deadline).
    pub fn reader(&self) -> &HeartbeatReader {
        &self.reader
    }

    /// The reader, to enable or disable peers.
    pub fn reader_mut(&mut self) -> &mut HeartbeatReader {
        &mut self.reader
    }

    fn index(&self, peer: NodeId) -> usize {
        self.reader.index_of(peer).unwrap_or_else(|| panic!("node {peer} is not watched"))
    }

    fn feed(&mut self, peer: NodeId, now_ns: u64, observation: Observation) {
        let Some(index) = self.reader.index_of(peer) else { return };
        if matches!(
            observation,
            Observation::PeerLost | Observation::Probe(PeerProbe::Exiting | PeerProbe::Stopped)
        ) {
            self.ruled_out.push_back(peer);
        }
        if let Some(verdict) = self.detectors[index].observe(now_ns, observation) {
            self.changes.push_back(PeerChange { peer, verdict });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{ScoreConfig, ScoreDetector};
    use crate::heartbeat::reader::tests::{other_roles_write, Script};
    use crate::heartbeat::ReaderConfig;
    use usec_verbs::PeerProbe;

    /// A peer whose counter never moves, read by an observer that is itself descheduled
    /// between its reads (its ticks a period and more apart): what it reads after each of
    /// its own gaps is no evidence of the peer's silence (a peer sharing its core did not
    /// run either), so it does not suspect. Once it watches without gaps, four reads in a
    /// row without a change do make it suspect.
    #[test]
    fn the_observers_own_gaps_are_not_the_peers_silence() {
        let peer = NodeId::new(1).unwrap();
        let config = ReaderConfig { period_ns: 100, timeout_ns: 40 };
        let reader = HeartbeatReader::new(config, [peer], 0);
        let mut monitor = HeartbeatMonitor::new(reader, vec![ScoreDetector::new(ScoreConfig::default())]);
        let mut port = Script::new();
        let mut now = 0;
        for _ in 0..20 {
            monitor.tick(now, &mut port, &mut |_| {});
            now += 250;
        }
        assert_eq!(monitor.verdict(peer), Verdict::Trusted, "suspected for what it did not watch");
        // Watching: a tick every 10 ns, a read every 100.
        let watched_from = now;
        while !monitor.verdict(peer).is_suspected() {
            monitor.tick(now, &mut port, &mut |_| {});
            now += 10;
            assert!(now < watched_from + 1_000, "a silent peer watched for 10 periods is not suspected");
        }
        assert!(now - watched_from <= 5 * 100, "suspected after {} ns of watching", now - watched_from);
    }

    /// An observer that only ever runs in short bursts, more than a read period apart,
    /// watches no silence of its own: a stopped peer is suspected all the same, at the
    /// first silent read, on the provider's word.
    #[test]
    fn a_stopped_peer_is_suspected_even_by_an_observer_that_always_stalls() {
        let peer = NodeId::new(1).unwrap();
        let config = ReaderConfig { period_ns: 100, timeout_ns: 40 };
        let reader = HeartbeatReader::new(config, [peer], 0);
        let mut monitor = HeartbeatMonitor::new(reader, vec![ScoreDetector::new(ScoreConfig::default())]);
        let mut port = Script::new();
        port.probe = PeerProbe::Alive;
        for now in (0..20).map(|tick| tick * 250) {
            monitor.tick(now, &mut port, &mut |_| {});
        }
        assert_eq!(monitor.verdict(peer), Verdict::Trusted);
        port.probe = PeerProbe::Stopped;
        monitor.tick(5_000, &mut port, &mut |_| {});
        assert!(monitor.verdict(peer).is_suspected());
    }

    /// A silent peer, read every 100 ns without gaps: suspected after four misses if the
    /// provider cannot tell; after the patience and four more if it says the process is
    /// alive; at the first silent read if it says stopped or exiting.
    #[test]
    fn a_live_peer_is_waited_out_and_a_stopped_one_suspected_at_once() {
        let peer = NodeId::new(1).unwrap();
        let config = ReaderConfig { period_ns: 100, timeout_ns: 40 };
        let suspected_after = |probe: PeerProbe, patience_ns: u64| {
            let reader = HeartbeatReader::new(config, [peer], 0);
            let monitor = HeartbeatMonitor::new(reader, vec![ScoreDetector::new(ScoreConfig::default())]);
            let mut monitor = monitor.with_alive_patience(patience_ns);
            let mut port = Script::new();
            port.probe = probe;
            let mut now = 0;
            while !monitor.verdict(peer).is_suspected() {
                monitor.tick(now, &mut port, &mut |_| {});
                now += 10;
                assert!(now < 100_000, "{probe:?}: never suspected");
            }
            // Reads from 0 on, the first a baseline: the nth silent one is at n * 100.
            (now - 10) / 100
        };
        assert_eq!(suspected_after(PeerProbe::Unknown, 1_000), 4);
        assert_eq!(suspected_after(PeerProbe::Alive, 0), 4);
        assert_eq!(suspected_after(PeerProbe::Alive, 1_000), 14, "10 reads of patience");
        assert_eq!(suspected_after(PeerProbe::Stopped, 1_000), 1);
        assert_eq!(suspected_after(PeerProbe::Exiting, 0), 1);
    }

    #[test]
    fn peers_ruled_out_are_reported_whether_or_not_their_verdict_changes() {
        let peer = NodeId::new(1).unwrap();
        let reader = HeartbeatReader::new(ReaderConfig::default(), [peer], 0);
        let mut monitor = HeartbeatMonitor::new(reader, vec![ScoreDetector::new(ScoreConfig::default())]);
        monitor.observe(1, peer, Observation::Probe(PeerProbe::Alive));
        assert_eq!(monitor.poll_ruled_out(), None);
        monitor.observe(2, peer, Observation::Probe(PeerProbe::Stopped));
        monitor.observe(3, peer, Observation::PeerLost);
        assert_eq!(monitor.poll_ruled_out(), Some(peer));
        assert_eq!(monitor.poll_ruled_out(), Some(peer), "again, though it was suspected already");
        assert_eq!(monitor.poll_ruled_out(), None);
    }

    #[test]
    fn another_roles_completion_on_the_same_cq_comes_back_out() {
        let peer = NodeId::new(1).unwrap();
        let reader = HeartbeatReader::new(ReaderConfig::default(), [peer], 0);
        let mut monitor = HeartbeatMonitor::new(reader, vec![ScoreDetector::new(ScoreConfig::default())]);
        let mut port = Script::new();
        port.also = vec![other_roles_write(7)];
        let mut others = Vec::new();
        monitor.tick(0, &mut port, &mut |other| others.push(other));
        assert_eq!(others, [other_roles_write(7)], "handed back, not dropped");
        assert_eq!(monitor.verdict(peer), Verdict::Trusted, "and the heartbeat read was the monitor's");
        port.also = vec![other_roles_write(8)];
        monitor.tick(1, &mut port, &mut |other| others.push(other));
        assert_eq!(others, [other_roles_write(7), other_roles_write(8)]);
    }
}
