//! One simulated run: members with drifting [`SimClock`]s driving the real [`ActiveLease`],
//! acceptors whose slots are a reused ring, a proposer deciding views one instance after
//! the other, and an event queue in virtual time. Everything is drawn from one seed.
//!
//! The model keeps exactly what the rule assumes of the membership protocol (see
//! `usec_lease_clock::lease`): an instance is decided once a majority of acceptors accepted
//! in it (M1), the next instance is proposed only after that (M2), a member learns a view
//! no earlier than its decision, and a renewal reads each acceptor's slot of instance
//! `z + 1` after its issue time was read. Within that, everything the adversary likes is
//! drawn at random: clock rates at the edges of ρ, reads and learns delayed by several
//! leases or lost, members paused, views changing faster than a lease.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_lease_clock::clock::{Clock, SimClock};
use usec_lease_clock::lease::{
    ActiveConfig, ActiveLease, DriftBound, Renewal, ViewStart, ViewSummary, Voter, VoterSet,
};
use usec_qp_pool::NodeId;
use usec_verbs::sim::SimFabric;

/// What a run draws from its seed.
#[derive(Clone, Debug)]
pub struct Params {
    pub acceptors: usize,
    /// Slots per acceptor, reused for instance `i` at `i % ring`.
    pub ring: u64,
    /// The true bound on the clocks' drift.
    pub rho_ppm: u32,
    /// Each member's clock rate, within ±`rho_ppm`.
    pub drifts_ppm: Vec<i32>,
    pub lease_ns: u64,
    pub renew_before_ns: u64,
    pub retry_after_ns: u64,
    /// Views decided: 1 to `views`.
    pub views: u64,
    /// Chance that a view keeps its predecessor's voters.
    pub compatible_chance: f64,
}

impl Params {
    /// Draws the parameters of seed `seed`; with `rho_ppm` set, ρ is that and every clock
    /// runs at one edge of it.
    pub fn draw(rng: &mut ChaCha8Rng, rho_ppm: Option<u32>) -> Params {
        let members = rng.gen_range(2..=5);
        let rho_ppm = rho_ppm.unwrap_or_else(|| match rng.gen_range(0..4) {
            0 => 0,
            1 => rng.gen_range(1..=1_000),
            _ => rng.gen_range(1_000..=200_000),
        });
        let rho = rho_ppm as i32;
        let drifts_ppm = (0..members)
            .map(|_| match rng.gen_range(0..5) {
                0 | 1 => -rho,
                2 | 3 => rho,
                _ => rng.gen_range(-rho..=rho),
            })
            .collect();
        let lease_ns = rng.gen_range(8_000..=30_000);
        Params {
            acceptors: if rng.gen_bool(0.5) { 3 } else { 5 },
            ring: rng.gen_range(2..=8),
            rho_ppm,
            drifts_ppm,
            lease_ns,
            renew_before_ns: rng.gen_range(lease_ns / 3..=lease_ns / 2),
            retry_after_ns: rng.gen_range(lease_ns / 8..=lease_ns / 4),
            views: rng.gen_range(3..=10),
            compatible_chance: rng.gen_range(0.2..0.7),
        }
    }
}

/// The promise broken: two members found views of different epochs active at the same
/// virtual instant, or a view of an older epoch was active after one of a newer epoch had
/// been.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at_ns: u64,
    pub what: String,
}

/// What a safe run did, so that the scenarios can be seen to exercise the rule.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Virtual instants checked.
    pub checks: u64,
    /// Times a newer epoch became active somewhere after an older one had been.
    pub handovers: u64,
    /// Per handover, the virtual time between the older epochs' last activity and the
    /// newer one's first: the smallest.
    pub min_gap_ns: Option<u64>,
    /// Compatible views learned while the old one was active, and active at once.
    pub seamless_inheritances: u64,
    pub confirmations: u64,
    pub reads_lost: u64,
    pub pauses: u64,
    /// Renewals whose majority saw a later instance (the view had moved on).
    pub refuted_reads: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Propose(u64),
    AcceptArrives {
        acceptor: usize,
        view: u64,
    },
    Learn {
        member: usize,
        view: u64,
    },
    /// The member's loop polls for a renewal; stale unless `generation` is current.
    Tick {
        member: usize,
        generation: u64,
    },
    ReadArrives {
        member: usize,
        renewal: usize,
        acceptor: usize,
    },
    ReadReturns {
        member: usize,
        renewal: usize,
        ok: bool,
    },
    Pause {
        member: usize,
        until_ns: u64,
    },
}

struct Member {
    clock: SimClock,
    lease: ActiveLease,
    paused_until_ns: u64,
    tick_generation: u64,
    /// Renewals issued: what was asked, and how many acceptors said yes so far.
    renewals: Vec<(Renewal, usize, bool)>,
}

/// The run of one seed.
pub struct World {
    seed: u64,
    params: Params,
    rng: ChaCha8Rng,
    fabric: SimFabric,
    members: Vec<Member>,
    /// `slots[acceptor][i % ring]`: the instance last accepted in that slot (0: none).
    slots: Vec<Vec<u64>>,
    accepted: Vec<usize>,
    /// `views[i]` and `epochs[i]` for i in 1..=views (index 0 unused).
    views: Vec<ViewSummary>,
    epochs: Vec<u64>,
    decided_at_ns: Vec<Option<u64>>,
    queue: BinaryHeap<Reverse<(u64, u64, Event)>>,
    sequence: u64,
    /// From the last decision on, no read is lost or slow and no pause starts.
    quiet: bool,
    /// Per epoch, the end of its latest activity seen (for the gap statistics).
    epoch_active_end_ns: Vec<Option<u64>>,
    previously_active: Option<u64>,
    stats: Stats,
    trace: bool,
}

/// The first virtual time from `from_ns` on at which `clock` reads `value` or more: the
/// inverse of [`SimClock::at`], which reads `offset + ⌊t·(10⁶ + drift)/10⁶⌋`.
fn first_reaching(clock: &SimClock, value: u64, from_ns: u64) -> u64 {
    let offset = clock.at(0);
    let rate = i128::from(1_000_000 + clock.drift_ppm());
    let scaled = i128::from(value.saturating_sub(offset)) * 1_000_000;
    let at = u64::try_from((scaled + rate - 1) / rate).expect("in range");
    debug_assert!(clock.at(at) >= value && (at == 0 || clock.at(at - 1) < value));
    at.max(from_ns)
}

impl World {
    /// A world for `seed`; the members' leases assume the drift bound `assumed` (the true
    /// one, or a wrong one to show what breaks).
    pub fn new(name: &str, seed: u64, params: Params, assumed: DriftBound, trace: bool) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_ac71_7e1e_a5e5);
        let fabric = SimFabric::create(&format!("{name}-{seed}"), seed).expect("a fresh fabric");
        fabric.set_auto_advance(false);
        let config = ActiveConfig {
            lease_ns: params.lease_ns,
            drift: assumed,
            renew_before_ns: params.renew_before_ns,
            retry_after_ns: params.retry_after_ns,
        };
        let members = params
            .drifts_ppm
            .iter()
            .map(|&drift| Member {
                clock: SimClock::with_drift(&fabric, drift, rng.gen_range(0..1 << 40)),
                lease: ActiveLease::new(config).expect("a valid configuration"),
                paused_until_ns: 0,
                tick_generation: 0,
                renewals: Vec::new(),
            })
            .collect();
        let (views, epochs) = draw_views(&mut rng, &params);
        let view_count = params.views as usize;
        let mut world = World {
            seed,
            slots: vec![vec![0; params.ring as usize]; params.acceptors],
            accepted: vec![0; view_count + 1],
            decided_at_ns: vec![None; view_count + 1],
            epoch_active_end_ns: vec![None; view_count + 1],
            params,
            rng,
            fabric,
            members,
            views,
            epochs,
            queue: BinaryHeap::new(),
            sequence: 0,
            quiet: false,
            previously_active: None,
            stats: Stats::default(),
            trace,
        };
        world.schedule(0, Event::Propose(1));
        world.schedule_pauses();
        world
    }

    fn schedule(&mut self, at_ns: u64, event: Event) {
        self.queue.push(Reverse((at_ns, self.sequence, event)));
        self.sequence += 1;
    }

    fn schedule_pauses(&mut self) {
        let lease = self.params.lease_ns;
        let horizon = self.params.views * 3 * lease;
        for member in 0..self.members.len() {
            for _ in 0..self.rng.gen_range(0..=3) {
                let at = self.rng.gen_range(0..horizon);
                let until_ns = at + self.rng.gen_range(0..=4 * lease);
                self.schedule(at, Event::Pause { member, until_ns });
            }
        }
    }

    /// A delay for a message: mostly a microsecond or two, sometimes none, sometimes
    /// several leases (never once the run is quiet).
    fn delay(&mut self, slow_up_to_ns: u64) -> u64 {
        match self.rng.gen_range(0..20) {
            0..=1 => 0,
            2..=4 if !self.quiet => self.rng.gen_range(0..=slow_up_to_ns),
            _ => self.rng.gen_range(50..=1_000),
        }
    }

    /// Runs until every view was decided and the quiet phase had time to settle; checks the
    /// promise at every virtual instant at which an answer can change.
    pub fn run(mut self) -> Result<Stats, Violation> {
        let mut horizon_ns = u64::MAX;
        loop {
            let now = self.fabric.now_ns();
            let next_event = self.queue.peek().map(|Reverse((at, _, _))| *at);
            let next_flip = (0..self.members.len()).filter_map(|member| self.next_flip(member, now)).min();
            let Some(at_ns) = next_event.into_iter().chain(next_flip).min() else { break };
            if at_ns > horizon_ns {
                break;
            }
            self.fabric.advance_to(at_ns);
            while self.queue.peek().is_some_and(|Reverse((at, _, _))| *at == at_ns) {
                let Reverse((_, _, event)) = self.queue.pop().expect("peeked");
                self.handle(at_ns, event);
            }
            if self.quiet && horizon_ns == u64::MAX {
                horizon_ns = at_ns + 16 * self.params.lease_ns;
            }
            self.check(at_ns)?;
        }
        self.check_liveness();
        Ok(self.stats)
    }

    /// The next virtual time after `now` at which `member`'s answer can change without an
    /// event: its clock reaching the start or the end of its view's activity.
    fn next_flip(&self, member: usize, now: u64) -> Option<u64> {
        let member = &self.members[member];
        let local = member.clock.at(now);
        let lease = &member.lease;
        [lease.active_from_ns(), lease.active_until_ns()]
            .into_iter()
            .flatten()
            .filter(|&value| value > local)
            .map(|value| first_reaching(&member.clock, value, now))
            .min()
    }

    fn handle(&mut self, now: u64, event: Event) {
        if self.trace {
            eprintln!("{now:>9} {event:?}");
        }
        // A paused member takes nothing in until it resumes; it then takes it in order.
        let paused_member = match event {
            Event::Learn { member, .. } | Event::Tick { member, .. } | Event::ReadReturns { member, .. } => {
                Some(member).filter(|&member| self.members[member].paused_until_ns > now)
            }
            _ => None,
        };
        if let Some(member) = paused_member {
            let until = self.members[member].paused_until_ns;
            self.schedule(until, event);
            return;
        }
        match event {
            Event::Propose(view) => self.propose(view),
            Event::AcceptArrives { acceptor, view } => self.accept(now, acceptor, view),
            Event::Learn { member, view } => self.learn(member, view),
            Event::Tick { member, generation } => {
                if generation == self.members[member].tick_generation {
                    self.tick(now, member);
                }
            }
            Event::ReadArrives { member, renewal, acceptor } => {
                let view = self.members[member].renewals[renewal].0.view_id;
                let slot = self.slots[acceptor][((view + 1) % self.params.ring) as usize];
                let ok = slot < view + 1;
                let delay = self.delay(2 * self.params.lease_ns);
                self.schedule(now + delay, Event::ReadReturns { member, renewal, ok });
            }
            Event::ReadReturns { member, renewal, ok } => self.read_returns(member, renewal, ok),
            Event::Pause { member, until_ns } => {
                if !self.quiet {
                    self.stats.pauses += 1;
                    let state = &mut self.members[member];
                    state.paused_until_ns = state.paused_until_ns.max(until_ns);
                    // Its loop resumes where it left off.
                    self.schedule_tick(member);
                }
            }
        }
    }

    fn propose(&mut self, view: u64) {
        let now = self.fabric.now_ns();
        // Some acceptors may never hear of it, but a majority does.
        let majority = self.params.acceptors / 2 + 1;
        let reached = self.rng.gen_range(majority..=self.params.acceptors);
        let mut order: Vec<usize> = (0..self.params.acceptors).collect();
        for index in (1..order.len()).rev() {
            order.swap(index, self.rng.gen_range(0..=index));
        }
        for &acceptor in &order[..reached] {
            let delay = self.delay(3 * self.params.lease_ns);
            self.schedule(now + delay, Event::AcceptArrives { acceptor, view });
        }
    }

    fn accept(&mut self, now: u64, acceptor: usize, view: u64) {
        let slot = &mut self.slots[acceptor][(view % self.params.ring) as usize];
        // A slot moves on to later instances only (M1).
        if *slot >= view {
            return;
        }
        *slot = view;
        self.accepted[view as usize] += 1;
        if self.accepted[view as usize] != self.params.acceptors / 2 + 1 {
            return;
        }
        self.decided_at_ns[view as usize] = Some(now);
        assert!(view == 1 || self.decided_at_ns[view as usize - 1].is_some(), "decided out of order");
        for member in 0..self.members.len() {
            let delay = match self.rng.gen_range(0..20) {
                0..=2 => 0,
                3..=7 if !self.quiet => self.rng.gen_range(0..=6 * self.params.lease_ns),
                _ => self.rng.gen_range(300..=3_000),
            };
            self.schedule(now + delay, Event::Learn { member, view });
        }
        if view < self.params.views {
            // The proposer learns the decision and builds the next view from it (M2).
            let think = self.rng.gen_range(0..=3 * self.params.lease_ns);
            self.schedule(now + think, Event::Propose(view + 1));
        } else {
            self.quiet = true;
        }
    }

    fn learn(&mut self, member: usize, view: u64) {
        let state = &mut self.members[member];
        let now_local = state.clock.now_ns(); // after the member knew the view was decided
        let before = state.lease.view_id().filter(|&old| state.lease.is_active(old, now_local));
        let start = state.lease.on_view_learned(now_local, &self.views[view as usize]);
        if self.trace {
            eprintln!("          member {member} learns view {view} at {now_local}: {start:?}");
        }
        if let ViewStart::Inherited { .. } = start {
            if before.is_some() && state.lease.is_active(view, now_local) {
                self.stats.seamless_inheritances += 1;
            }
        }
        self.schedule_tick(member);
    }

    fn tick(&mut self, now: u64, member: usize) {
        let state = &mut self.members[member];
        let issued_local = state.clock.now_ns(); // before any read is posted
        if let Some(renewal) = state.lease.poll_renewal(issued_local) {
            let index = state.renewals.len();
            state.renewals.push((renewal, 0, false));
            let lose_all = !self.quiet && self.rng.gen_bool(0.1);
            for acceptor in 0..self.params.acceptors {
                if lose_all || (!self.quiet && self.rng.gen_bool(0.05)) {
                    self.stats.reads_lost += 1;
                    continue;
                }
                let delay = self.delay(2 * self.params.lease_ns);
                self.schedule(now + delay, Event::ReadArrives { member, renewal: index, acceptor });
            }
        }
        self.schedule_tick(member);
    }

    fn read_returns(&mut self, member: usize, renewal: usize, ok: bool) {
        let majority = self.params.acceptors / 2 + 1;
        let state = &mut self.members[member];
        let (asked, yes, confirmed) = &mut state.renewals[renewal];
        if !ok {
            self.stats.refuted_reads += 1;
            return;
        }
        *yes += 1;
        if *yes < majority || *confirmed {
            return;
        }
        *confirmed = true;
        let asked = *asked;
        let now_local = state.clock.now_ns();
        if state.lease.on_confirmed(now_local, asked).is_some() {
            self.stats.confirmations += 1;
        }
        self.schedule_tick(member);
    }

    /// Schedules `member`'s next poll for when its lease says a renewal is due, give or
    /// take its loop's period.
    fn schedule_tick(&mut self, member: usize) {
        let now = self.fabric.now_ns();
        let jitter = self.rng.gen_range(0..=300);
        let state = &mut self.members[member];
        state.tick_generation += 1;
        let Some(due_local) = state.lease.next_renewal_at_ns() else { return };
        let at = first_reaching(&state.clock, due_local, now).max(state.paused_until_ns) + jitter;
        let generation = state.tick_generation;
        self.schedule(at, Event::Tick { member, generation });
    }

    /// At virtual time `now`, asks every member, paused or not, whether it would find its
    /// view active if it looked, and compares their epochs.
    fn check(&mut self, now: u64) -> Result<(), Violation> {
        self.stats.checks += 1;
        if let Some(epoch) = self.previously_active {
            self.epoch_active_end_ns[epoch as usize] = Some(now);
        }
        // At most 5 members: no allocation per instant.
        let mut active = [(0, 0, 0); 5];
        let mut count = 0;
        for (index, member) in self.members.iter().enumerate() {
            if let Some(view) = member.lease.active_view(member.clock.at(now)) {
                active[count] = (index, view, self.epochs[view as usize]);
                count += 1;
            }
        }
        let active = &active[..count];
        for (position, &first) in active.iter().enumerate() {
            if let Some(&second) = active[position + 1..].iter().find(|other| other.2 != first.2) {
                let what = format!(
                    "(member, view, epoch) {first:?} and {second:?} both active (drifts {:?} ppm)",
                    self.params.drifts_ppm
                );
                return Err(Violation { at_ns: now, what });
            }
        }
        // All of one epoch, as checked above.
        let epoch = active.first().map(|&(_, _, epoch)| epoch);
        if let Some(epoch) = epoch {
            let newer = (epoch as usize + 1..self.epoch_active_end_ns.len())
                .find(|&newer| self.epoch_active_end_ns[newer].is_some());
            if let Some(newer) = newer {
                let what = format!("epoch {epoch} active in {active:?} after epoch {newer} was");
                return Err(Violation { at_ns: now, what });
            }
            let first_time = self.epoch_active_end_ns[epoch as usize].is_none();
            let older_end = self.epoch_active_end_ns[..epoch as usize].iter().flatten().max();
            if let (true, Some(&older_end)) = (first_time, older_end) {
                self.stats.handovers += 1;
                let gap = now - older_end;
                self.stats.min_gap_ns = Some(self.stats.min_gap_ns.map_or(gap, |min| min.min(gap)));
            }
            self.epoch_active_end_ns[epoch as usize].get_or_insert(now);
        }
        self.previously_active = epoch;
        Ok(())
    }

    /// Once faults stopped, every member learned the last view and keeps it active.
    fn check_liveness(&self) {
        let last = self.params.views;
        let now = self.fabric.now_ns();
        for (index, member) in self.members.iter().enumerate() {
            let local = member.clock.at(now);
            assert!(
                member.lease.is_active(last, local),
                "seed {}: member {index} is not active in the last view {last} at {now} once quiet: view {:?}, \
                 from {:?}, until {:?}, local {local}\n  replay with USEC_SEED={} cargo test -p usec-lease-clock \
                 --test sim_active_lease",
                self.seed,
                member.lease.view_id(),
                member.lease.active_from_ns(),
                member.lease.active_until_ns(),
                self.seed
            );
        }
    }
}

/// Views 1..=`views`: each keeps its predecessor's voters with `compatible_chance`, else a
/// voter is replaced by a new incarnation or a voter joins or leaves. Returns the views and
/// each view's epoch (the first view of its run of compatible views), both indexed by id.
fn draw_views(rng: &mut ChaCha8Rng, params: &Params) -> (Vec<ViewSummary>, Vec<u64>) {
    let voter =
        |node: u16, incarnation: u64| Voter { node: NodeId::new(node).expect("a node id"), incarnation };
    let mut voters: Vec<Voter> = (0..3).map(|node| voter(node, 0)).collect();
    let mut views = vec![ViewSummary { view_id: 0, voters: VoterSet::default() }];
    let mut epochs = vec![0];
    for view_id in 1..=params.views {
        let compatible = view_id > 1 && rng.gen_bool(params.compatible_chance);
        if !compatible && view_id > 1 {
            match rng.gen_range(0..3) {
                0 if voters.len() > 1 => {
                    voters.remove(rng.gen_range(0..voters.len()));
                }
                1 => voters.push(voter(100 + view_id as u16, 0)),
                _ => {
                    let replaced = rng.gen_range(0..voters.len());
                    voters[replaced].incarnation += 1;
                }
            }
        }
        epochs.push(if compatible { epochs[view_id as usize - 1] } else { view_id });
        views.push(ViewSummary { view_id, voters: voters.iter().copied().collect() });
    }
    (views, epochs)
}
