//! [`Learner`]: finds what was decided by reading acceptors, sans IO.
//!
//! It READs each acceptor's whole ring of slots (`8 × R` bytes, one READ) now and then,
//! or at once when woken. Each slot read is a fact that stays true — "this acceptor
//! accepted ballot `b` in instance `i`" — so facts from reads made at different times
//! add up: an instance is decided once a majority of acceptors (`n/2 + 1`) are seen to
//! have accepted the same ballot in it. The learner then READs that ballot owner's two
//! banks on one of those acceptors and takes the whole bank of that instance with a ballot
//! at least the decided one (see [`crate::buffer`] for why any such bank holds the
//! decided value). A bank that a later instance has taken already means that instance is
//! behind the times: the learner reads the rings again and moves on to what is newer.
//!
//! Learned instances only grow: the learner reports each decided instance it sees above
//! the last one it learned, in order, and skips those it cannot see any more (their ring
//! positions reused). For views, the latest is what matters.
//!
//! Slot tags are the low 32 bits of instances; the learner reads them relative to the
//! last instance it learned, right as long as it is less than 2^31 instances behind.
//!
//! Its ring reads also vouch for the view it holds ([`Learner::clear_since`]): a ring
//! READ posted at local time `a` that shows an acceptor's slot for instance `z + 1` with
//! nothing accepted is what an Active(view) lease renewal of view `z` needs from that
//! acceptor (lease-clock's rule), so a majority of such reads confirms view `z` from the
//! oldest of their posting times.
//!
//! The order of calls is the proposer's: [`Learner::handle_completion`] for its tokens,
//! [`Learner::tick`], [`Learner::poll_action`], [`Learner::poll_event`].

use std::collections::{BTreeMap, VecDeque};

use crate::ballot::Ballot;
use crate::buffer::{self, Found};
use crate::layout::Layout;
use crate::op::{Action, OpClass, Outcome, Role, Token};
use crate::slot::{Relation, Slot};

/// How a learner is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LearnerConfig {
    /// How many acceptors (indexed 0..acceptors).
    pub acceptors: usize,
    /// Time between two unprompted reads of every ring.
    pub scan_period_ns: u64,
}

/// What a learner reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Learned {
    /// The instance.
    pub instance: u64,
    /// The ballot chosen.
    pub ballot: Ballot,
    /// The value.
    pub value: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    Ring,
    Banks,
}

#[derive(Clone, Debug)]
struct Fetch {
    instance: u64,
    ballot: Ballot,
    candidates: Vec<usize>,
    next: usize,
    posted: bool,
}

/// A learner; see the [module documentation](self).
#[derive(Debug)]
pub struct Learner {
    layout: Layout,
    config: LearnerConfig,
    latest: u64,
    rings: Vec<Option<Vec<Slot>>>,
    /// Per acceptor: the local time the READ whose result is in `rings` was posted at
    /// (read before it was posted).
    ring_posted_ns: Vec<Option<u64>>,
    in_flight: Vec<Option<(u64, Reading)>>,
    /// Per acceptor: when the READ in flight was posted.
    in_flight_posted_ns: Vec<u64>,
    /// The latest time the role was given: the posting time of what it posts next.
    now_ns: u64,
    want_ring: Vec<bool>,
    fetch: Option<Fetch>,
    /// The highest instance any slot read shows a proposer started.
    highest_started: u64,
    /// Since when instances started above `latest + 1` (hence decided) are not learned.
    behind_since_ns: Option<u64>,
    sequence: u64,
    next_scan_ns: u64,
    actions: VecDeque<Action>,
    events: VecDeque<Learned>,
}

impl Learner {
    /// A learner that knows instances up to `latest` (0: none) and scans first at
    /// `now_ns`.
    pub fn new(layout: Layout, config: LearnerConfig, latest: u64, now_ns: u64) -> Learner {
        let acceptors = config.acceptors;
        Learner {
            layout,
            config,
            latest,
            rings: vec![None; acceptors],
            ring_posted_ns: vec![None; acceptors],
            in_flight: vec![None; acceptors],
            in_flight_posted_ns: vec![0; acceptors],
            now_ns,
            want_ring: vec![false; acceptors],
            fetch: None,
            highest_started: latest,
            behind_since_ns: None,
            sequence: 0,
            next_scan_ns: now_ns,
            actions: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The last instance learned (or told of).
    pub fn latest(&self) -> u64 {
        self.latest
    }

    /// Instance `instance` is known decided by other means (this node's proposer decided
    /// it): learn only what comes after.
    pub fn advance_to(&mut self, instance: u64) {
        if instance > self.latest {
            self.latest = instance;
            self.highest_started = self.highest_started.max(instance);
            self.behind_since_ns = None;
            if self.fetch.as_ref().is_some_and(|fetch| fetch.instance <= instance) {
                self.fetch = None;
            }
        }
    }

    /// Its state in a line, for traces: the latest instance, the reads in flight, the rings.
    pub fn describe(&self) -> String {
        let rings: Vec<String> = self
            .rings
            .iter()
            .map(|ring| match ring {
                None => "?".to_string(),
                Some(slots) => slots.iter().map(|slot| slot.to_string()).collect::<Vec<_>>().join(" "),
            })
            .collect();
        format!(
            "latest {}, in flight {:?}, fetching {:?}, next scan {} ns, rings {rings:?}",
            self.latest, self.in_flight, self.fetch, self.next_scan_ns
        )
    }

    /// Scans at the next tick (a proposer found its instance obsolete, say).
    pub fn wake(&mut self, now_ns: u64) {
        self.next_scan_ns = self.next_scan_ns.min(now_ns);
    }

    /// Moves time on: scans every ring when the period is up.
    pub fn tick(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        if now_ns < self.next_scan_ns {
            return;
        }
        self.next_scan_ns = now_ns.saturating_add(self.config.scan_period_ns);
        for acceptor in 0..self.config.acceptors {
            self.want_ring[acceptor] = true;
            self.pump(acceptor);
        }
    }

    /// When [`Learner::tick`] is next needed.
    pub fn poll_timeout(&self) -> Option<u64> {
        Some(self.next_scan_ns)
    }

    /// The next instance learned.
    pub fn poll_event(&mut self) -> Option<Learned> {
        self.events.pop_front()
    }

    fn pump(&mut self, acceptor: usize) {
        if self.in_flight[acceptor].is_some() {
            return;
        }
        self.sequence += 1;
        let token = Token { class: OpClass::LearnerRead, acceptor: acceptor as u16, sequence: self.sequence };
        let fetch_here =
            self.fetch.as_mut().filter(|fetch| !fetch.posted && fetch.candidates[fetch.next] == acceptor);
        if let Some(fetch) = fetch_here {
            fetch.posted = true;
            let owner = fetch.ballot.owner(self.layout.proposers).expect("a decided ballot");
            let offset = self.layout.banks_offset(owner, self.layout.position(fetch.instance));
            self.actions.push_back(Action::Read { token, offset, len: 2 * self.layout.bank_bytes() });
            self.in_flight[acceptor] = Some((self.sequence, Reading::Banks));
        } else if std::mem::take(&mut self.want_ring[acceptor]) {
            self.actions.push_back(Action::Read { token, offset: 0, len: self.layout.ring_bytes() });
            self.in_flight[acceptor] = Some((self.sequence, Reading::Ring));
            self.in_flight_posted_ns[acceptor] = self.now_ns;
        }
    }

    /// Takes one completion of a learner token.
    pub fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>) {
        self.now_ns = self.now_ns.max(now_ns);
        let acceptor = usize::from(token.acceptor);
        let Some((sequence, reading)) = self.in_flight.get(acceptor).copied().flatten() else { return };
        if sequence != token.sequence {
            return;
        }
        self.in_flight[acceptor] = None;
        match (reading, outcome) {
            (Reading::Ring, Outcome::Read(bytes)) => {
                let ring = bytes
                    .chunks_exact(8)
                    .map(|word| Slot::from_word(u64::from_le_bytes(word.try_into().expect("8 bytes"))));
                self.rings[acceptor] = Some(ring.collect());
                self.ring_posted_ns[acceptor] = Some(self.in_flight_posted_ns[acceptor]);
            }
            (Reading::Ring, _) => {}
            (Reading::Banks, outcome) => self.fetched(now_ns, outcome),
        }
        self.evaluate(now_ns);
        self.pump(acceptor);
    }

    /// The instance to [recover](crate::Proposer::recover), if the learner has been behind
    /// for `patience_ns`: it saw instances started above the one after the latest it
    /// learned — so those below are decided — but a majority showing what was decided
    /// there is nowhere to be seen (an acceptor of it crashed, the others lagged).
    ///
    /// With a ring of two positions or more, that is the instance just below the highest
    /// started: it is decided, its slots are not reused yet, and a member of any majority
    /// holds its value, so a recovery round learns it. With a ring of one, its slots went
    /// to the highest started, which is recovered instead: decided, or found unchosen —
    /// and then open to a proposer (its predecessor is decided), whose next decision the
    /// learner reads.
    pub fn stuck(&self, now_ns: u64, patience_ns: u64) -> Option<u64> {
        let since = self.behind_since_ns?;
        let target = if self.layout.ring >= 2 { self.highest_started - 1 } else { self.highest_started };
        (now_ns >= since.saturating_add(patience_ns) && self.highest_started > self.latest + 1)
            .then_some(target)
    }

    /// The latest local time `a` such that a majority of the acceptors were each read by
    /// a ring READ posted at `a` or later that found nothing accepted in `instance` at its
    /// slot (the slot held an older instance, or this one with only a promise). `None`
    /// while no majority was read so. The time was read before those READs were posted:
    /// what an Active(view) renewal of view `instance - 1` may be confirmed from.
    pub fn clear_since(&self, instance: u64) -> Option<u64> {
        let position = self.layout.position(instance);
        let mut posted: Vec<u64> = self
            .rings
            .iter()
            .zip(&self.ring_posted_ns)
            .filter_map(|(ring, posted_ns)| {
                let slot = ring.as_ref()?.get(position)?;
                let clear = match slot.relation(instance) {
                    Relation::Older => true,
                    Relation::Current => !slot.accepted.is_some(),
                    Relation::Newer => false,
                };
                clear.then_some((*posted_ns)?)
            })
            .collect();
        let majority = Layout::majority(self.config.acceptors);
        if posted.len() < majority {
            return None;
        }
        posted.sort_unstable_by(|a, b| b.cmp(a));
        Some(posted[majority - 1])
    }

    /// Starts fetching the value of the lowest decided instance above the latest.
    fn evaluate(&mut self, now_ns: u64) {
        let ring = self.layout.ring as usize;
        for slots in self.rings.iter().flatten() {
            for (position, slot) in slots.iter().enumerate() {
                let Some(instance) = slot.resolve(self.latest) else { continue };
                if slot.min_proposal.is_some() && instance % ring as u64 == position as u64 {
                    self.highest_started = self.highest_started.max(instance);
                }
            }
        }
        if self.highest_started <= self.latest + 1 {
            self.behind_since_ns = None;
        } else if self.behind_since_ns.is_none() {
            self.behind_since_ns = Some(now_ns);
        }
        if self.fetch.is_some() {
            return;
        }
        // (instance, ballot) -> acceptors seen to have accepted it.
        let mut seen: BTreeMap<(u64, Ballot), Vec<usize>> = BTreeMap::new();
        for (acceptor, slots) in self.rings.iter().enumerate() {
            for (position, slot) in slots.iter().flatten().enumerate() {
                let Some(instance) = slot.resolve(self.latest) else { continue };
                if slot.accepted.is_some()
                    && instance > self.latest
                    && instance % ring as u64 == position as u64
                {
                    seen.entry((instance, slot.accepted)).or_default().push(acceptor);
                }
            }
        }
        let majority = Layout::majority(self.config.acceptors);
        // The lowest instance decided; of two ballots chosen there (same value), the higher.
        let decided = seen.into_iter().filter(|(_, acceptors)| acceptors.len() >= majority).fold(
            None::<((u64, Ballot), Vec<usize>)>,
            |best, (key, acceptors)| match best {
                Some((best_key, _)) if best_key.0 < key.0 => best,
                _ => Some((key, acceptors)),
            },
        );
        if let Some(((instance, ballot), candidates)) = decided {
            let first = candidates[0];
            self.fetch = Some(Fetch { instance, ballot, candidates, next: 0, posted: false });
            self.pump(first);
        }
    }

    fn fetched(&mut self, now_ns: u64, outcome: Outcome<'_>) {
        let Some(mut fetch) = self.fetch.take() else { return };
        let found = match outcome {
            Outcome::Read(bytes) => buffer::pick(&self.layout, bytes, fetch.instance, fetch.ballot),
            _ => Found::Missing,
        };
        match found {
            Found::Value(content) => {
                self.latest = fetch.instance;
                self.behind_since_ns = None;
                let learned =
                    Learned { instance: fetch.instance, ballot: fetch.ballot, value: content.value };
                self.events.push_back(learned);
            }
            Found::Missing if fetch.next + 1 < fetch.candidates.len() => {
                fetch.next += 1;
                fetch.posted = false;
                let next = fetch.candidates[fetch.next];
                self.fetch = Some(fetch);
                self.pump(next);
            }
            // Reused already, or nowhere whole: forget those rings, read them afresh.
            Found::Newer { .. } | Found::Missing => {
                for &acceptor in &fetch.candidates {
                    self.rings[acceptor] = None;
                    self.ring_posted_ns[acceptor] = None;
                }
                self.wake(now_ns);
            }
        }
    }
}

impl Role for Learner {
    fn tick(&mut self, now_ns: u64) {
        Learner::tick(self, now_ns);
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>) {
        Learner::handle_completion(self, now_ns, token, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout { ring: 4, proposers: 3, value_bytes_max: 64 }
    }

    /// Acceptors' memory: slot words and banks.
    fn memory(acceptors: usize) -> Vec<Vec<u8>> {
        vec![vec![0u8; layout().acceptor_bytes()]; acceptors]
    }

    fn accept(
        memory: &mut [Vec<u8>],
        acceptor: usize,
        instance: u64,
        ballot: Ballot,
        value: &[u8],
        bank: u8,
    ) {
        let layout = layout();
        let position = layout.position(instance);
        let bytes = buffer::encode(&layout, instance, ballot, value);
        let at = layout.bank_offset(ballot.owner(layout.proposers).expect("ballot"), position, bank);
        memory[acceptor][at..at + bytes.len()].copy_from_slice(&bytes);
        let slot = layout.slot_offset(position);
        memory[acceptor][slot..slot + 8]
            .copy_from_slice(&Slot::accepted(instance, ballot).to_word().to_le_bytes());
    }

    /// Runs the learner's reads against `memory` until it has nothing in flight.
    fn settle(learner: &mut Learner, memory: &[Vec<u8>], now_ns: u64) -> Vec<Learned> {
        learner.tick(now_ns);
        while let Some(action) = learner.poll_action() {
            let Action::Read { token, offset, len } = action else { panic!("a learner only reads") };
            let bytes = memory[usize::from(token.acceptor)][offset..offset + len].to_vec();
            learner.handle_completion(now_ns, token, Outcome::Read(&bytes));
        }
        std::iter::from_fn(|| learner.poll_event()).collect()
    }

    fn config(acceptors: usize) -> LearnerConfig {
        LearnerConfig { acceptors, scan_period_ns: 1_000 }
    }

    #[test]
    fn a_majority_of_one_ballot_is_learned_a_minority_is_not() {
        let mut memory = memory(5);
        let mut learner = Learner::new(layout(), config(5), 0, 0);
        accept(&mut memory, 0, 1, Ballot(2), b"one", 0);
        accept(&mut memory, 3, 1, Ballot(2), b"one", 0);
        assert_eq!(settle(&mut learner, &memory, 0), [], "2 of 5");
        accept(&mut memory, 4, 1, Ballot(2), b"one", 1);
        let learned = settle(&mut learner, &memory, 1_000);
        assert_eq!(learned, [Learned { instance: 1, ballot: Ballot(2), value: b"one".to_vec() }]);
        assert_eq!(learner.latest(), 1);
        assert_eq!(settle(&mut learner, &memory, 2_000), [], "learned once");
    }

    #[test]
    fn different_ballots_do_not_add_up() {
        let mut memory = memory(3);
        let mut learner = Learner::new(layout(), config(3), 0, 0);
        accept(&mut memory, 0, 2, Ballot(1), b"a", 0);
        accept(&mut memory, 1, 2, Ballot(2), b"b", 0);
        assert_eq!(settle(&mut learner, &memory, 0), []);
    }

    #[test]
    fn several_decided_instances_come_out_in_order_and_a_reused_position_is_skipped() {
        let mut memory = memory(3);
        let mut learner = Learner::new(layout(), config(3), 0, 0);
        // Instances 1..=6 decided in a ring of 4: positions 1 and 2 now hold 5 and 6.
        for instance in 1..=6u64 {
            for acceptor in 0..2 {
                accept(&mut memory, acceptor, instance, Ballot(1), format!("v{instance}").as_bytes(), 0);
            }
        }
        let learned: Vec<u64> =
            settle(&mut learner, &memory, 0).iter().map(|learned| learned.instance).collect();
        assert_eq!(learned, [3, 4, 5, 6], "1 and 2 are gone from the ring");
    }

    #[test]
    fn a_torn_bank_is_read_elsewhere_and_a_reused_one_means_something_newer() {
        let layout = layout();
        let mut memory = memory(3);
        let mut learner = Learner::new(layout, config(3), 0, 0);
        accept(&mut memory, 0, 1, Ballot(3), b"three", 0);
        accept(&mut memory, 1, 1, Ballot(3), b"three", 0);
        let at = layout.bank_offset(2, 1, 0);
        memory[0][at + 20] ^= 1;
        assert_eq!(settle(&mut learner, &memory, 0).len(), 1, "read on acceptor 1 instead");
        // The rings say instance 1 is decided, but by the time the banks are read,
        // instance 5 has taken position 1 everywhere: the learner reads the rings again.
        let before = memory.clone();
        for acceptor in 0..3 {
            accept(&mut memory, acceptor, 5, Ballot(3), b"five", 0);
            accept(&mut memory, acceptor, 5, Ballot(3), b"five", 1);
        }
        let mut learner = Learner::new(layout, config(3), 0, 0);
        let mut learned = Vec::new();
        for now in [0, 1] {
            learner.tick(now);
            while let Some(action) = learner.poll_action() {
                let Action::Read { token, offset, len } = action else { panic!("a learner only reads") };
                let from = if now == 0 && offset == 0 { &before } else { &memory };
                let bytes = from[usize::from(token.acceptor)][offset..offset + len].to_vec();
                learner.handle_completion(now, token, Outcome::Read(&bytes));
            }
            learned.extend(std::iter::from_fn(|| learner.poll_event()).map(|learned| learned.instance));
        }
        assert_eq!(learned, [5]);
    }

    #[test]
    fn a_majority_of_reads_that_found_the_next_instance_empty_vouches_from_the_oldest() {
        let mut memory = memory(3);
        let mut learner = Learner::new(layout(), config(3), 2, 0);
        assert_eq!(learner.clear_since(3), None, "nothing read yet");
        settle(&mut learner, &memory, 1_000);
        assert_eq!(learner.clear_since(3), Some(1_000), "all three read at 1 µs");
        // Acceptor 0 promised in instance 3 (no accept): still clear there.
        let slot = layout().slot_offset(layout().position(3));
        let promised = Slot { instance: 3, min_proposal: Ballot(2), accepted: Ballot::NONE };
        memory[0][slot..slot + 8].copy_from_slice(&promised.to_word().to_le_bytes());
        settle(&mut learner, &memory, 2_000);
        assert_eq!(learner.clear_since(3), Some(2_000));
        // Acceptor 1 accepted in instance 3: two clear reads remain, one of them older.
        accept(&mut memory, 1, 3, Ballot(2), b"three", 0);
        learner.tick(3_000);
        let mut reads = Vec::new();
        while let Some(action) = learner.poll_action() {
            reads.push(action);
        }
        for action in reads {
            let Action::Read { token, offset, len } = action else { panic!("a learner only reads") };
            if token.acceptor == 2 {
                continue; // lost: acceptor 2's latest ring is still the one posted at 2 µs
            }
            let bytes = memory[usize::from(token.acceptor)][offset..offset + len].to_vec();
            learner.handle_completion(3_000, token, Outcome::Read(&bytes));
        }
        assert_eq!(learner.clear_since(3), Some(2_000), "a majority: 0 at 3 µs and 2 at 2 µs");
        assert_eq!(learner.clear_since(4), Some(3_000), "nothing in 4 anywhere: 0 and 1 read at 3 µs");
        accept(&mut memory, 0, 3, Ballot(2), b"three", 0);
        let mut learner = Learner::new(layout(), config(3), 2, 0);
        settle(&mut learner, &memory, 4_000);
        assert_eq!(learner.clear_since(3), None, "3 was accepted by a majority");
    }
}
