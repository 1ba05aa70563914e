//! The proposer against acceptors in plain memory: scripted cases of prediction, refusal,
//! adoption and ring reuse, and seeded interleavings of contending proposers.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// How an action ended, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Done {
    Swapped(u64),
    Written,
    Read(Vec<u8>),
    Failed,
}

impl Done {
    fn outcome(&self) -> Outcome<'_> {
        match self {
            Done::Swapped(old) => Outcome::Swapped { old: *old },
            Done::Written => Outcome::Written,
            Done::Read(bytes) => Outcome::Read(bytes),
            Done::Failed => Outcome::Failed,
        }
    }
}

/// Acceptor regions in plain memory.
struct Memory {
    acceptors: Vec<Vec<u8>>,
}

impl Memory {
    fn new(layout: &Layout, acceptors: usize) -> Memory {
        Memory { acceptors: vec![vec![0; layout.acceptor_bytes()]; acceptors] }
    }

    fn word(&self, acceptor: usize, offset: usize) -> u64 {
        u64::from_le_bytes(self.acceptors[acceptor][offset..offset + 8].try_into().expect("8 bytes"))
    }

    fn set_word(&mut self, acceptor: usize, offset: usize, word: u64) {
        self.acceptors[acceptor][offset..offset + 8].copy_from_slice(&word.to_le_bytes());
    }

    fn execute(&mut self, action: &Action) -> Done {
        let acceptor = usize::from(action.token().acceptor);
        match action {
            Action::Cas { offset, compare, swap, .. } => {
                let old = self.word(acceptor, *offset);
                if old == *compare {
                    self.set_word(acceptor, *offset, *swap);
                }
                Done::Swapped(old)
            }
            Action::Write { offset, bytes, .. } => {
                self.acceptors[acceptor][*offset..*offset + bytes.len()].copy_from_slice(bytes);
                Done::Written
            }
            Action::Read { offset, len, .. } => {
                Done::Read(self.acceptors[acceptor][*offset..*offset + len].to_vec())
            }
        }
    }

    /// Runs every action of `proposer` at once, in order, until it posts nothing more.
    fn settle(&mut self, proposer: &mut Proposer<ChaCha8Rng>, now_ns: u64) -> Vec<Action> {
        let mut posted = Vec::new();
        while let Some(action) = proposer.poll_action() {
            let done = self.execute(&action);
            proposer.handle_completion(now_ns, action.token(), done.outcome());
            posted.push(action);
        }
        posted
    }
}

fn layout() -> Layout {
    Layout { ring: 4, proposers: 3, value_bytes_max: 64 }
}

fn proposer(me: u16, acceptors: usize, seed: u64) -> Proposer<ChaCha8Rng> {
    let config = ProposerConfig::new(me, acceptors);
    Proposer::new(layout(), config, ChaCha8Rng::seed_from_u64(seed)).expect("a proposer")
}

fn decided(proposer: &mut Proposer<ChaCha8Rng>) -> Option<(u64, Ballot, Vec<u8>, bool)> {
    match proposer.poll_event()? {
        ProposerEvent::Decided { instance, ballot, value, own } => Some((instance, ballot, value, own)),
        other => panic!("expected a decision, got {other:?}"),
    }
}

#[test]
fn an_uncontended_proposer_decides_in_one_round_trip_each_phase() {
    let (layout, mut memory, mut p) = (layout(), Memory::new(&layout(), 3), proposer(1, 3, 1));
    p.propose(0, 5, b"view five").expect("idle");
    let posted = memory.settle(&mut p, 0);
    // Three prepares predicting fresh memory, then per acceptor a WRITE and an accept CAS.
    let prepares: Vec<&Action> = posted.iter().take(3).collect();
    for action in prepares {
        let Action::Cas { compare, swap, offset, .. } = action else { panic!("{action:?}") };
        assert_eq!((*compare, *offset), (0, layout.slot_offset(1)));
        assert_eq!(
            Slot::from_word(*swap),
            Slot { instance: 5, min_proposal: Ballot(2), accepted: Ballot::NONE }
        );
    }
    assert_eq!(posted.len(), 3 + 2 * 3);
    assert_eq!(decided(&mut p), Some((5, Ballot(2), b"view five".to_vec(), true)));
    for acceptor in 0..3 {
        assert_eq!(
            Slot::from_word(memory.word(acceptor, layout.slot_offset(1))),
            Slot::accepted(5, Ballot(2))
        );
    }
    assert!(p.is_idle());
}

#[test]
fn a_failed_cas_returns_the_word_that_becomes_the_next_prediction() {
    let (layout, mut memory, mut p) = (layout(), Memory::new(&layout(), 3), proposer(0, 3, 2));
    // Acceptor 2's slot holds instance 3's decision (same position as 7 in a ring of 4).
    let old = Slot::accepted(3, Ballot(5)).to_word();
    memory.set_word(2, layout.slot_offset(3), old);
    p.propose(0, 7, b"seven").expect("idle");
    let posted = memory.settle(&mut p, 0);
    let to_two: Vec<(u64, u64)> = posted
        .iter()
        .filter_map(|action| match action {
            Action::Cas { token, compare, swap, .. } if token.acceptor == 2 => Some((*compare, *swap)),
            _ => None,
        })
        .collect();
    let promise = Slot { instance: 7, min_proposal: Ballot(1), accepted: Ballot::NONE }.to_word();
    assert_eq!(to_two[0], (0, promise), "first prediction: fresh memory");
    assert_eq!(to_two[1], (old, promise), "the word returned is the next prediction");
    assert_eq!(decided(&mut p).map(|(_, _, value, own)| (value, own)), Some((b"seven".to_vec(), true)));
    assert_eq!(p.stats().mispredictions, 1);
}

#[test]
fn a_higher_promise_loses_the_round_and_the_next_ballot_jumps_past_it() {
    let (layout, mut memory, mut p) = (layout(), Memory::new(&layout(), 3), proposer(0, 3, 3));
    // Two acceptors promised proposer 2's ballot 9 in instance 6: no majority for ballot 1.
    let promised = Slot { instance: 6, min_proposal: Ballot(9), accepted: Ballot::NONE }.to_word();
    memory.set_word(0, layout.slot_offset(2), promised);
    memory.set_word(1, layout.slot_offset(2), promised);
    p.propose(0, 6, b"six").expect("idle");
    memory.settle(&mut p, 0);
    assert_eq!(p.poll_event(), None, "the round is lost");
    assert_eq!(p.stats().lost_rounds, 1);
    let wake = p.poll_timeout().expect("backing off");
    assert!(wake <= BackoffConfig::default().base_ns, "first back-off within the base");
    p.tick(wake);
    memory.settle(&mut p, wake);
    assert_eq!(decided(&mut p).map(|(_, ballot, _, _)| ballot), Some(Ballot(10)), "0 + 1 + 3k above 9");
}

/// Writes proposer `owner`'s value into its bank 0 at `acceptor` and marks it accepted.
fn plant(memory: &mut Memory, acceptor: usize, instance: u64, ballot: Ballot, value: &[u8]) {
    let layout = layout();
    let owner = ballot.owner(layout.proposers).expect("a ballot");
    let bytes = buffer::encode(&layout, instance, ballot, value);
    let at = layout.bank_offset(owner, layout.position(instance), 0);
    memory.acceptors[acceptor][at..at + bytes.len()].copy_from_slice(&bytes);
    memory.set_word(
        acceptor,
        layout.slot_offset(layout.position(instance)),
        Slot::accepted(instance, ballot).to_word(),
    );
}

/// Runs `proposer` against `memory`, its back-offs included, until it reports something;
/// returns the event and every action posted.
fn run_to_event(memory: &mut Memory, p: &mut Proposer<ChaCha8Rng>) -> (ProposerEvent, Vec<Action>) {
    let mut now = 0;
    let mut posted = Vec::new();
    loop {
        posted.extend(memory.settle(p, now));
        if let Some(event) = p.poll_event() {
            return (event, posted);
        }
        now = p.poll_timeout().expect("a round or a back-off under way");
        p.tick(now);
    }
}

#[test]
fn a_value_accepted_somewhere_is_adopted_from_its_owner_buffer() {
    let (layout, mut memory, mut p) = (layout(), Memory::new(&layout(), 3), proposer(2, 3, 4));
    plant(&mut memory, 0, 9, Ballot(2), b"proposer one's view");
    // The others hold instance 5 (position 1 too): every first prediction fails, and the
    // retries go in acceptor order, so acceptor 0 is in the first majority of promises.
    for acceptor in 1..3 {
        memory.set_word(acceptor, layout.slot_offset(1), Slot::accepted(5, Ballot(1)).to_word());
    }
    p.propose(0, 9, b"mine").expect("idle");
    let (event, posted) = run_to_event(&mut memory, &mut p);
    assert!(posted.iter().any(|action| matches!(action, Action::Read { .. })), "read the owner's banks");
    let value = b"proposer one's view".to_vec();
    assert_eq!(event, ProposerEvent::Decided { instance: 9, ballot: Ballot(3), value, own: false });
    assert_eq!(p.stats().adopted, 1);
}

#[test]
fn a_value_chosen_by_a_majority_is_the_decision_without_an_accept() {
    let (mut memory, mut p) = (Memory::new(&layout(), 3), proposer(0, 3, 5));
    for acceptor in 0..3 {
        plant(&mut memory, acceptor, 9, Ballot(3), b"chosen");
    }
    p.propose(0, 9, b"mine").expect("idle");
    let (event, posted) = run_to_event(&mut memory, &mut p);
    assert!(!posted.iter().any(|action| matches!(action, Action::Write { .. })), "no accept round");
    let value = b"chosen".to_vec();
    assert_eq!(event, ProposerEvent::Decided { instance: 9, ballot: Ballot(3), value, own: false });
}

#[test]
fn a_torn_bank_sends_the_reader_to_another_acceptor() {
    let (layout, mut memory, mut p) = (layout(), Memory::new(&layout(), 3), proposer(0, 3, 6));
    plant(&mut memory, 0, 9, Ballot(2), b"the value of ballot two");
    plant(&mut memory, 1, 9, Ballot(2), b"the value of ballot two");
    // Acceptor 0's copy is torn (and its other bank blank): the proposer reads acceptor 1's.
    let at = layout.bank_offset(1, layout.position(9), 0);
    memory.acceptors[0][at + 3] ^= 0xff;
    // Ballot 2 is above proposer 0's first: round 1 is lost, and round 2 finds ballot 2
    // chosen by acceptors 0 and 1, and reads its value.
    p.propose(0, 9, b"mine").expect("idle");
    let (event, posted) = run_to_event(&mut memory, &mut p);
    assert!(matches!(event, ProposerEvent::Decided { ballot: Ballot(2), .. }), "{event:?}");
    let reads: Vec<u16> = posted
        .iter()
        .filter_map(|action| match action {
            Action::Read { token, .. } => Some(token.acceptor),
            _ => None,
        })
        .collect();
    assert_eq!(reads[..2], [0, 1], "the torn copy first, then the whole one");
}

#[test]
fn a_slot_of_a_later_instance_makes_the_instance_obsolete() {
    let (layout, mut memory, mut p) = (layout(), Memory::new(&layout(), 3), proposer(0, 3, 7));
    memory.set_word(1, layout.slot_offset(1), Slot::accepted(13, Ballot(1)).to_word());
    p.propose(0, 9, b"late").expect("idle");
    memory.settle(&mut p, 0);
    assert_eq!(p.poll_event(), Some(ProposerEvent::Obsolete { instance: 9 }));
    assert!(p.is_idle());
    // Proposing it again spends no round (nor ballot): the later slot is known.
    let rounds = p.stats().rounds;
    p.propose(0, 9, b"again").expect("idle");
    assert_eq!(memory.settle(&mut p, 0), [], "nothing posted");
    assert_eq!(p.poll_event(), Some(ProposerEvent::Obsolete { instance: 9 }));
    assert_eq!(p.stats().rounds, rounds);
}

#[test]
fn instances_are_refused_while_one_is_under_way_and_values_must_fit() {
    let mut p = proposer(0, 3, 8);
    p.propose(0, 1, b"one").expect("idle");
    assert!(matches!(p.propose(0, 2, b"two"), Err(Error::Busy { busy_with: 1, asked: 2, .. })));
    p.abandon();
    assert!(matches!(p.propose(0, 2, &[0; 65]), Err(Error::ValueTooLarge { len: 65, max: 64 })));
    assert!(p.propose(0, 0, b"zero").is_err(), "instance 0 is the initial state");
}

/// Proposers contending through per-QP FIFO queues executed in a seeded random order, with
/// operations failing (executed or not) now and then: every decision of an instance is
/// the same value.
#[test]
fn contending_proposers_agree_under_random_interleavings() {
    for seed in 0..300u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let acceptors = if rng.gen_bool(0.5) { 3 } else { 5 };
        let count = rng.gen_range(1..=3u16);
        let mut memory = Memory::new(&layout(), acceptors);
        let mut proposers: Vec<Proposer<ChaCha8Rng>> =
            (0..count).map(|me| proposer(me, acceptors, seed * 10 + u64::from(me))).collect();
        // Per (proposer, acceptor): actions posted and not yet executed, in order.
        let mut queues: Vec<VecDeque<Action>> = vec![VecDeque::new(); usize::from(count) * acceptors];
        let mut decisions: Vec<Option<Vec<u8>>> = vec![None; 12];
        let mut next = vec![1u64; usize::from(count)];
        let mut now = 0u64;
        while next.iter().any(|&instance| instance < 12) {
            now += rng.gen_range(0..500);
            for (me, p) in proposers.iter_mut().enumerate() {
                p.tick(now);
                if p.is_idle() && next[me] < 12 {
                    let value = format!("p{me} i{}", next[me]).into_bytes();
                    p.propose(now, next[me], &value).expect("idle");
                }
                while let Some(action) = p.poll_action() {
                    queues[me * acceptors + usize::from(action.token().acceptor)].push_back(action);
                }
            }
            let busy: Vec<usize> = (0..queues.len()).filter(|&queue| !queues[queue].is_empty()).collect();
            if let Some(&queue) = busy.get(rng.gen_range(0..busy.len().max(1))) {
                let action = queues[queue].pop_front().expect("busy");
                let done = match rng.gen_range(0..40) {
                    0 => Done::Failed,
                    1 => {
                        memory.execute(&action);
                        Done::Failed
                    }
                    _ => memory.execute(&action),
                };
                proposers[queue / acceptors].handle_completion(now, action.token(), done.outcome());
            }
            for (me, p) in proposers.iter_mut().enumerate() {
                while let Some(event) = p.poll_event() {
                    match event {
                        ProposerEvent::Decided { instance, value, .. } => {
                            let slot = &mut decisions[instance as usize];
                            assert!(
                                slot.get_or_insert_with(|| value.clone()) == &value,
                                "seed {seed}: instance {instance} decided twice, differently"
                            );
                            next[me] = instance + 1;
                        }
                        // Someone is past it: catch up as a learner would.
                        ProposerEvent::Obsolete { instance } => {
                            assert!(
                                decisions[instance as usize].is_some(),
                                "seed {seed}: obsolete undecided {instance}"
                            );
                            next[me] = instance + 1;
                        }
                        ProposerEvent::Exhausted { instance } => {
                            panic!("seed {seed}: ballots ran out in {instance}")
                        }
                        ProposerEvent::Unchosen { instance } => {
                            panic!("seed {seed}: no recovery of {instance}")
                        }
                    }
                }
                if p.is_idle() {
                    // Another proposer decided it: a learner would say so.
                    while next[me] < 12 && decisions[next[me] as usize].is_some() && p.is_idle() {
                        next[me] += 1;
                    }
                }
            }
            assert!(now < 10_000_000_000, "seed {seed}: no progress");
        }
    }
}
