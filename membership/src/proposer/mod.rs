//! [`Proposer`]: one-sided Paxos over RDMA compare-and-swap, sans IO.
//!
//! # The protocol
//!
//! Acceptors are passive memory: a ring of [slots](crate::slot) and every proposer's value
//! [buffers](crate::buffer). A proposer decides instance `i` at ring position `i % R`:
//!
//! 1. **Prepare** at ballot `p`: on each acceptor, CAS the slot from the word it predicts
//!    to the same word with `min_proposal = p` (a slot of an older instance becomes an
//!    empty slot of `i` promised to `p`). The prediction is the last word seen there; a
//!    CAS that finds another word returns it, and that word is the next prediction — the
//!    CAS is posted again straight away while the slot still allows `p`. A slot that
//!    promised `p` or more refuses; a slot of a later instance means `i` is decided
//!    ([`ProposerEvent::Obsolete`]).
//! 2. With promises from a majority (`n/2 + 1`): the value with the highest accepted
//!    ballot `h` among them is adopted — read from the banks of `h`'s owner on an
//!    acceptor that reported `h` — or, if none, the proposer's own. If a majority reported
//!    the same `h`, that value was chosen already: it is the decision, no accept needed.
//! 3. **Accept**: on each acceptor that promised, WRITE the value into the proposer's own
//!    buffer (the bank not holding its last completed write there), then CAS the slot
//!    from the promised word to `{i, p, p}` — on the same QP, so the bytes are there
//!    before any reader can see the slot point at them. A majority of accepts decides.
//! 4. A round that cannot reach a majority (refusals, unreachable acceptors, the round's
//!    timeout) is lost: the proposer waits a jittered, growing back-off drawn from its
//!    seeded RNG, then starts again with the smallest ballot of its own above everything
//!    it saw (`p += n`). Contention is the normal case, not an error.
//!
//! A proposer starts instance `i` only once `i - 1` is decided (the caller's contract:
//! views follow each other). That makes the ring safe to reuse: a slot of a later
//! instance proves this one decided, so a proposer never overwrites one, and a slot of
//! an earlier instance belongs to a decided instance, so claiming it loses nothing.
//!
//! # The order of calls
//!
//! [`Proposer::propose`] starts an instance. Then, in the driver's loop: hand every
//! completion of a [`Token`] of a proposer class to [`Proposer::handle_completion`], call
//! [`Proposer::tick`] with the time, post what [`Proposer::poll_action`] returns, and
//! take [`Proposer::poll_event`]s. [`Proposer::poll_timeout`] says when `tick` is next
//! needed if nothing completes before.

mod link;

use std::collections::VecDeque;
use std::sync::Arc;

use rand::RngCore;

use crate::backoff::{Backoff, BackoffConfig};
use crate::ballot::Ballot;
use crate::buffer::{self, Found, MAX_INSTANCE};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::op::{Action, OpClass, Outcome, Role, Token};
use crate::slot::{Relation, Slot};
use link::{Chain, ChainKind, Link, Mark, Want};

/// Mispredicted CASes on one acceptor in one round before it counts as refusing: each one
/// means another proposer changed the slot in between, so a few are normal contention, and
/// many mean the round is better lost and backed off.
const MISPREDICTIONS_MAX: u32 = 8;

/// How a proposer is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProposerConfig {
    /// Its index, below the layout's room for proposers (its ballots are `me + 1 + k·n`).
    pub me: u16,
    /// How many acceptors (indexed 0..acceptors).
    pub acceptors: usize,
    /// Back-off between lost rounds.
    pub backoff: BackoffConfig,
    /// A round not concluded by then is lost.
    pub round_timeout_ns: u64,
}

impl ProposerConfig {
    /// Proposer `me` of `acceptors` acceptors, default back-off, 200 µs rounds.
    pub fn new(me: u16, acceptors: usize) -> ProposerConfig {
        ProposerConfig { me, acceptors, backoff: BackoffConfig::default(), round_timeout_ns: 200_000 }
    }
}

/// What a proposer reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposerEvent {
    /// The instance is decided, with this value.
    Decided {
        /// The instance.
        instance: u64,
        /// The ballot whose value was chosen.
        ballot: Ballot,
        /// The value.
        value: Vec<u8>,
        /// Whether it is the value this proposer proposed.
        own: bool,
    },
    /// A later instance has started on some acceptor: this one is decided, by others; a
    /// learner tells which value.
    Obsolete {
        /// The instance.
        instance: u64,
    },
    /// A [recovery](Proposer::recover) found nothing accepted in its majority: the
    /// instance is not decided (and it proposed nothing).
    Unchosen {
        /// The instance.
        instance: u64,
    },
    /// The instance ran out of ballots (65,535 / n rounds): never in practice, and the
    /// proposer stops rather than wrap.
    Exhausted {
        /// The instance.
        instance: u64,
    },
}

/// Counts of what a proposer did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProposerStats {
    /// Rounds started.
    pub rounds: u64,
    /// Rounds lost (and backed off).
    pub lost_rounds: u64,
    /// CASes that found another word than predicted.
    pub mispredictions: u64,
    /// Values adopted from another proposer's buffer.
    pub adopted: u64,
    /// Instances decided by this proposer.
    pub decided: u64,
}

/// A value proposed at one ballot, and who accepted it.
#[derive(Clone, Debug)]
struct Proposal {
    ballot: Ballot,
    value: Arc<[u8]>,
    acked: Vec<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    Preparing,
    Fetching { highest: Ballot, candidates: Vec<usize>, next: usize, chosen: bool },
    Accepting { proposal: usize },
    BackingOff,
    Done,
}

/// The instance a proposer works on.
#[derive(Clone, Debug)]
struct Work {
    /// Counts `propose` calls: chains of an earlier call are told apart by it.
    generation: u64,
    instance: u64,
    position: usize,
    /// The value to propose if nothing may have been chosen; `None` when recovering.
    own: Option<Arc<[u8]>>,
    round: u64,
    ballot: Ballot,
    phase: Phase,
    deadline_ns: u64,
    /// The highest promise seen in this instance.
    highest_promise: Ballot,
    proposals: Vec<Proposal>,
}

/// A proposer of one-sided Paxos; see the [module documentation](self).
#[derive(Debug)]
pub struct Proposer<R> {
    layout: Layout,
    config: ProposerConfig,
    rng: R,
    links: Vec<Link>,
    sequence: u64,
    generations: u64,
    work: Option<Work>,
    backoff: Backoff,
    actions: VecDeque<Action>,
    events: VecDeque<ProposerEvent>,
    stats: ProposerStats,
    trace: Option<Vec<String>>,
}

impl<R: RngCore> Proposer<R> {
    /// A proposer with nothing to do yet; `rng` (seeded by the caller) draws its back-offs.
    pub fn new(layout: Layout, config: ProposerConfig, rng: R) -> Result<Proposer<R>> {
        layout.check()?;
        if config.me >= layout.proposers {
            return Err(Error::Config(format!(
                "proposer {} outside the layout's room for {}",
                config.me, layout.proposers
            )));
        }
        if config.acceptors == 0 || config.acceptors > usize::from(u16::MAX) {
            return Err(Error::Config(format!("{} acceptors", config.acceptors)));
        }
        let links = (0..config.acceptors).map(|_| Link::new(layout.ring as usize)).collect();
        Ok(Proposer {
            layout,
            config,
            rng,
            links,
            sequence: 0,
            generations: 0,
            work: None,
            backoff: Backoff::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: ProposerStats::default(),
            trace: None,
        })
    }

    /// Starts deciding `instance` (1 to 2^48 - 1), proposing `value` unless another value
    /// may have been chosen already. Refused while another instance is under way.
    pub fn propose(&mut self, now_ns: u64, instance: u64, value: &[u8]) -> Result<()> {
        if value.len() > self.layout.value_bytes_max {
            return Err(Error::ValueTooLarge { len: value.len(), max: self.layout.value_bytes_max });
        }
        self.start(now_ns, instance, Some(Arc::from(value)))
    }

    /// Finds out what was decided in `instance` by running rounds that only ever adopt: a
    /// value accepted by a member of its majority is carried to a majority and reported
    /// decided; if its majority accepted nothing, [`ProposerEvent::Unchosen`]. For an
    /// instance known decided whose accepting majority a learner cannot see any more (a
    /// member crashed, the others lagged): the value is then on at least one member of any
    /// majority, and this makes a majority show it again.
    pub fn recover(&mut self, now_ns: u64, instance: u64) -> Result<()> {
        self.start(now_ns, instance, None)
    }

    fn start(&mut self, now_ns: u64, instance: u64, own: Option<Arc<[u8]>>) -> Result<()> {
        if let Some(work) = self.work.as_ref().filter(|work| work.phase != Phase::Done) {
            return Err(Error::Busy { proposer: self.config.me, busy_with: work.instance, asked: instance });
        }
        if instance == 0 || instance > MAX_INSTANCE {
            return Err(Error::Config(format!("instance {instance} (1 to 2^48 - 1)")));
        }
        self.generations += 1;
        self.work = Some(Work {
            generation: self.generations,
            instance,
            position: self.layout.position(instance),
            own,
            round: 0,
            ballot: Ballot::NONE,
            phase: Phase::Preparing,
            deadline_ns: now_ns,
            highest_promise: Ballot::NONE,
            proposals: Vec::new(),
        });
        // A slot of a later instance seen already: no round, no ballot spent.
        let position = self.layout.position(instance);
        if self.links.iter().any(|link| link.known[position].relation(instance) == Relation::Newer) {
            self.finish(ProposerEvent::Obsolete { instance });
            return Ok(());
        }
        self.start_round(now_ns);
        Ok(())
    }

    /// Stops working on the current instance, without an event (a learner found it decided).
    pub fn abandon(&mut self) {
        if let Some(work) = self.work.as_mut() {
            work.phase = Phase::Done;
        }
        for link in &mut self.links {
            link.want = Want::Nothing;
        }
    }

    /// Whether it has no instance under way.
    pub fn is_idle(&self) -> bool {
        self.work.as_ref().is_none_or(|work| work.phase == Phase::Done)
    }

    /// The instance under way, if any.
    pub fn instance(&self) -> Option<u64> {
        self.work.as_ref().filter(|work| work.phase != Phase::Done).map(|work| work.instance)
    }

    /// Moves time on: a round past its timeout is lost, a back-off that ran out starts the
    /// next round.
    pub fn tick(&mut self, now_ns: u64) {
        let Some(work) = self.work.as_ref() else { return };
        if now_ns < work.deadline_ns {
            return;
        }
        match work.phase {
            Phase::Preparing | Phase::Fetching { .. } | Phase::Accepting { .. } => {
                self.note(|| "round timed out".to_string());
                self.lose_round(now_ns);
            }
            Phase::BackingOff => self.start_round(now_ns),
            Phase::Done => {}
        }
    }

    /// When [`Proposer::tick`] is next needed, if no completion comes first.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.work.as_ref().filter(|work| work.phase != Phase::Done).map(|work| work.deadline_ns)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ProposerEvent> {
        self.events.pop_front()
    }

    /// What it did.
    pub fn stats(&self) -> ProposerStats {
        self.stats
    }

    /// Its configuration.
    pub fn config(&self) -> &ProposerConfig {
        &self.config
    }

    /// Keeps a trace of its decisions for [`Proposer::take_trace`] (simulation runs).
    pub fn set_trace(&mut self, on: bool) {
        self.trace = on.then(Vec::new);
    }

    /// The trace kept since the last call.
    pub fn take_trace(&mut self) -> Vec<String> {
        self.trace.as_mut().map(std::mem::take).unwrap_or_default()
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if let Some(trace) = self.trace.as_mut() {
            let (instance, ballot) =
                self.work.as_ref().map(|work| (work.instance, work.ballot)).unwrap_or_default();
            trace.push(format!("p{} i{instance} {ballot}: {}", self.config.me, line()));
        }
    }

    fn majority(&self) -> usize {
        Layout::majority(self.config.acceptors)
    }

    fn start_round(&mut self, now_ns: u64) {
        let work = self.work.as_mut().expect("an instance under way");
        let position = work.position;
        let mut floor = work.ballot.max(work.highest_promise);
        for link in &self.links {
            if let Some(slot) = link.known[position].for_instance(work.instance) {
                floor = floor.max(slot.min_proposal);
            }
        }
        let Some(ballot) = Ballot::next_above(self.config.me, self.layout.proposers, floor) else {
            work.phase = Phase::Done;
            self.events.push_back(ProposerEvent::Exhausted { instance: work.instance });
            return;
        };
        work.round += 1;
        work.ballot = ballot;
        work.phase = Phase::Preparing;
        work.deadline_ns = now_ns.saturating_add(self.config.round_timeout_ns);
        self.stats.rounds += 1;
        self.note(|| "prepare".to_string());
        for acceptor in 0..self.links.len() {
            let link = &mut self.links[acceptor];
            link.mark = Mark::Waiting;
            link.mispredictions = 0;
            link.want = Want::Prepare;
            self.pump(acceptor);
        }
    }

    fn lose_round(&mut self, now_ns: u64) {
        let wait = self.backoff.next_wait_ns(&self.config.backoff, &mut self.rng);
        let work = self.work.as_mut().expect("an instance under way");
        work.phase = Phase::BackingOff;
        work.deadline_ns = now_ns.saturating_add(wait);
        self.stats.lost_rounds += 1;
        for link in &mut self.links {
            link.want = Want::Nothing;
        }
        self.note(|| format!("round lost, backing off {wait} ns"));
    }

    fn finish(&mut self, event: ProposerEvent) {
        let work = self.work.as_mut().expect("an instance under way");
        work.phase = Phase::Done;
        if matches!(event, ProposerEvent::Decided { .. }) {
            self.stats.decided += 1;
            self.backoff.reset();
        }
        for link in &mut self.links {
            link.want = Want::Nothing;
        }
        self.note(|| format!("{event:?}"));
        self.events.push_back(event);
    }

    fn next_token(&mut self, class: OpClass, acceptor: usize) -> Token {
        Token { class, acceptor: acceptor as u16, sequence: self.sequence }
    }

    /// Posts what `acceptor` is wanted for, if its previous chain is done.
    fn pump(&mut self, acceptor: usize) {
        let Some(work) = self.work.as_ref() else { return };
        let link = &self.links[acceptor];
        let in_round =
            matches!(work.phase, Phase::Preparing | Phase::Fetching { .. } | Phase::Accepting { .. });
        if link.chain.is_some() || link.want == Want::Nothing || !in_round {
            return;
        }
        let (instance, position, ballot, round) = (work.instance, work.position, work.ballot, work.round);
        let generation = work.generation;
        let known = link.known[position];
        let want = std::mem::take(&mut self.links[acceptor].want);
        self.sequence += 1;
        let kind = match want {
            Want::Nothing => unreachable!("checked above"),
            Want::Prepare => match known.relation(instance) {
                Relation::Newer => return self.finish(ProposerEvent::Obsolete { instance }),
                Relation::Current if known.min_proposal >= ballot => {
                    return self.refused(known.min_proposal, acceptor);
                }
                _ => {
                    let swap = known.promised(instance, ballot);
                    let token = self.next_token(OpClass::Cas, acceptor);
                    let offset = self.layout.slot_offset(position);
                    let (compare, swap_word) = (known.to_word(), swap.to_word());
                    self.actions.push_back(Action::Cas { token, offset, compare, swap: swap_word });
                    ChainKind::Prepare { compare: known, swap }
                }
            },
            Want::Accept => {
                let Phase::Accepting { proposal } = work.phase else { return };
                if known.relation(instance) != Relation::Current || known.min_proposal != ballot {
                    return self.refused(known.min_proposal, acceptor);
                }
                let bank = self.links[acceptor].banks.next(instance);
                let bytes = buffer::encode(&self.layout, instance, ballot, &work.proposals[proposal].value);
                let offset = self.layout.bank_offset(self.config.me, position, bank);
                let token = self.next_token(OpClass::Write, acceptor);
                self.actions.push_back(Action::Write { token, offset, bytes });
                let swap = Slot::accepted(instance, ballot);
                let token = self.next_token(OpClass::Cas, acceptor);
                let offset = self.layout.slot_offset(position);
                self.actions.push_back(Action::Cas {
                    token,
                    offset,
                    compare: known.to_word(),
                    swap: swap.to_word(),
                });
                ChainKind::Accept { compare: known, swap, bank, proposal }
            }
            Want::Read => {
                let Phase::Fetching { highest, .. } = work.phase else { return };
                let owner = highest.owner(self.layout.proposers).expect("a real ballot");
                let token = self.next_token(OpClass::ProposerRead, acceptor);
                let offset = self.layout.banks_offset(owner, position);
                self.actions.push_back(Action::Read { token, offset, len: 2 * self.layout.bank_bytes() });
                ChainKind::Read
            }
        };
        self.links[acceptor].chain =
            Some(Chain { sequence: self.sequence, generation, instance, round, kind });
    }

    fn refused(&mut self, promise: Ballot, acceptor: usize) {
        let work = self.work.as_mut().expect("an instance under way");
        work.highest_promise = work.highest_promise.max(promise);
        self.links[acceptor].mark = Mark::Refused;
        self.note(|| format!("acceptor {acceptor} refuses (promised {promise})"));
    }

    /// Takes one completion of a proposer-class token.
    pub fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>) {
        let acceptor = usize::from(token.acceptor);
        let Some(chain) = self.links.get(acceptor).and_then(|link| link.chain) else { return };
        if chain.sequence != token.sequence {
            return; // not ours (another proposer object's, before a restart of the role)
        }
        let Some(work) = self.work.as_ref() else { return };
        let position = self.layout.position(chain.instance);
        let same_work = chain.generation == work.generation;
        let in_round =
            matches!(work.phase, Phase::Preparing | Phase::Fetching { .. } | Phase::Accepting { .. });
        let current = same_work && chain.round == work.round && in_round;
        match (token.class, chain.kind) {
            (OpClass::Write, ChainKind::Accept { bank, .. }) => {
                if outcome == Outcome::Written {
                    self.links[acceptor].banks.completed(chain.instance, bank);
                }
                return; // the CAS behind it completes the chain
            }
            (OpClass::Cas, ChainKind::Prepare { compare, swap }) => {
                self.links[acceptor].chain = None;
                self.prepared(acceptor, position, compare, swap, outcome, current);
            }
            (OpClass::Cas, ChainKind::Accept { compare, swap, proposal, .. }) => {
                self.links[acceptor].chain = None;
                self.accepted((acceptor, position), (compare, swap), proposal, outcome, current, same_work);
            }
            (OpClass::ProposerRead, ChainKind::Read) => {
                self.links[acceptor].chain = None;
                if current {
                    self.fetched(now_ns, acceptor, outcome);
                }
            }
            _ => return,
        }
        self.check_round(now_ns);
        self.pump(acceptor);
    }

    fn prepared(
        &mut self,
        acceptor: usize,
        position: usize,
        compare: Slot,
        swap: Slot,
        outcome: Outcome<'_>,
        current: bool,
    ) {
        let link = &mut self.links[acceptor];
        let Outcome::Swapped { old } = outcome else {
            if current {
                link.mark = Mark::Down;
            }
            return;
        };
        let swapped = link.learn(position, compare, swap, old);
        if !swapped {
            self.stats.mispredictions += 1;
        }
        let work = self.work.as_ref().expect("an instance under way");
        if !current {
            return;
        }
        // A promise that comes late, while accepting, still lets this acceptor accept.
        let accepting = matches!(work.phase, Phase::Accepting { .. });
        if swapped {
            let accepted = compare.for_instance(work.instance).map_or(Ballot::NONE, |slot| slot.accepted);
            link.mark = Mark::Promised { accepted };
            if accepting {
                link.want = Want::Accept;
            }
        } else if matches!(work.phase, Phase::Preparing) || accepting {
            link.mispredictions += 1;
            if link.mispredictions > MISPREDICTIONS_MAX {
                link.mark = Mark::Refused;
            } else {
                link.want = Want::Prepare; // with the word just found as the prediction
            }
        }
    }

    fn accepted(
        &mut self,
        (acceptor, position): (usize, usize),
        (compare, swap): (Slot, Slot),
        proposal: usize,
        outcome: Outcome<'_>,
        current: bool,
        same_work: bool,
    ) {
        let link = &mut self.links[acceptor];
        let Outcome::Swapped { old } = outcome else {
            if current {
                link.mark = Mark::Down;
            }
            return;
        };
        let swapped = link.learn(position, compare, swap, old);
        if current {
            link.mark = if swapped { Mark::Accepted } else { Mark::Refused };
        }
        if !swapped {
            self.stats.mispredictions += 1;
            let found = Slot::from_word(old);
            let work = self.work.as_mut().expect("an instance under way");
            if let Some(slot) = found.for_instance(work.instance) {
                work.highest_promise = work.highest_promise.max(slot.min_proposal);
            }
            return;
        }
        if !same_work {
            return;
        }
        // An accept of any round of this instance counts for its ballot, late ones too.
        let majority = self.majority();
        let work = self.work.as_mut().expect("an instance under way");
        let entry = &mut work.proposals[proposal];
        entry.acked[acceptor] = true;
        let decided = entry.acked.iter().filter(|&&acked| acked).count() >= majority;
        if decided && work.phase != Phase::Done {
            let (ballot, value) = (entry.ballot, entry.value.to_vec());
            let own = work.own.as_deref() == Some(&*value);
            let instance = work.instance;
            self.finish(ProposerEvent::Decided { instance, ballot, value, own });
        }
    }

    fn fetched(&mut self, now_ns: u64, acceptor: usize, outcome: Outcome<'_>) {
        let work = self.work.as_ref().expect("an instance under way");
        let Phase::Fetching { highest, ref candidates, next, chosen } = work.phase else { return };
        let candidates = candidates.clone();
        let (instance, own) = (work.instance, work.own.clone());
        let found = match outcome {
            Outcome::Read(bytes) => buffer::pick(&self.layout, bytes, instance, highest),
            _ => Found::Missing,
        };
        match found {
            Found::Value(content) => {
                self.stats.adopted += 1;
                if chosen {
                    let own = own.as_deref() == Some(&content.value[..]);
                    let event =
                        ProposerEvent::Decided { instance, ballot: highest, value: content.value, own };
                    self.finish(event);
                } else {
                    self.note(|| format!("adopts the value of {highest} read at acceptor {acceptor}"));
                    self.accept(Arc::from(content.value));
                }
            }
            Found::Newer { .. } => self.finish(ProposerEvent::Obsolete { instance }),
            Found::Missing if next + 1 < candidates.len() => {
                let following = candidates[next + 1];
                let work = self.work.as_mut().expect("an instance under way");
                work.phase = Phase::Fetching { highest, candidates, next: next + 1, chosen };
                self.links[following].want = Want::Read;
                self.pump(following);
            }
            Found::Missing => {
                self.note(|| format!("no whole bank of {highest} found"));
                self.lose_round(now_ns);
            }
        }
    }

    /// Sends accepts of `value` at the round's ballot to every acceptor that promised.
    fn accept(&mut self, value: Arc<[u8]>) {
        let work = self.work.as_mut().expect("an instance under way");
        work.proposals.push(Proposal { ballot: work.ballot, value, acked: vec![false; self.links.len()] });
        work.phase = Phase::Accepting { proposal: work.proposals.len() - 1 };
        self.note(|| "accept".to_string());
        for acceptor in 0..self.links.len() {
            if matches!(self.links[acceptor].mark, Mark::Promised { .. }) {
                self.links[acceptor].want = Want::Accept;
                self.pump(acceptor);
            }
        }
    }

    /// Moves the round on once its fate is known.
    fn check_round(&mut self, now_ns: u64) {
        let Some(work) = self.work.as_ref() else { return };
        let majority = self.majority();
        let marks: Vec<Mark> = self.links.iter().map(|link| link.mark).collect();
        let lost = marks.iter().filter(|mark| mark.is_lost()).count();
        let hopeless = marks.len() - lost < majority;
        match work.phase {
            Phase::Preparing => {
                let promised: Vec<(usize, Ballot)> = marks
                    .iter()
                    .enumerate()
                    .filter_map(|(acceptor, mark)| match mark {
                        Mark::Promised { accepted } => Some((acceptor, *accepted)),
                        _ => None,
                    })
                    .collect();
                if promised.len() >= majority {
                    self.choose(&promised);
                } else if hopeless {
                    self.lose_round(now_ns);
                }
            }
            Phase::Accepting { .. } if hopeless => self.lose_round(now_ns),
            _ => {}
        }
    }

    /// With a majority of promises: decides what to accept, or whether it is decided.
    fn choose(&mut self, promised: &[(usize, Ballot)]) {
        let majority = self.majority();
        let work = self.work.as_mut().expect("an instance under way");
        let highest = promised.iter().map(|(_, accepted)| *accepted).max().unwrap_or(Ballot::NONE);
        if !highest.is_some() {
            return match work.own.clone() {
                Some(own) => self.accept(own),
                None => {
                    let instance = work.instance;
                    self.finish(ProposerEvent::Unchosen { instance })
                }
            };
        }
        let candidates: Vec<usize> = promised
            .iter()
            .filter(|(_, accepted)| *accepted == highest)
            .map(|(acceptor, _)| *acceptor)
            .collect();
        let chosen = candidates.len() >= majority;
        // A value of this proposer's own, of this instance, needs no read.
        if let Some(known) = work.proposals.iter().find(|proposal| proposal.ballot == highest) {
            let value = known.value.clone();
            if chosen {
                let (instance, own) = (work.instance, work.own.as_deref() == Some(&*value));
                return self.finish(ProposerEvent::Decided {
                    instance,
                    ballot: highest,
                    value: value.to_vec(),
                    own,
                });
            }
            return self.accept(value);
        }
        let first = candidates[0];
        work.phase = Phase::Fetching { highest, candidates, next: 0, chosen };
        self.note(|| format!("reads the value of {highest} at acceptor {first}"));
        self.links[first].want = Want::Read;
        self.pump(first);
    }
}

impl<R: RngCore> Role for Proposer<R> {
    fn tick(&mut self, now_ns: u64) {
        Proposer::tick(self, now_ns);
    }

    fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>) {
        Proposer::handle_completion(self, now_ns, token, outcome);
    }
}

#[cfg(test)]
mod tests;
