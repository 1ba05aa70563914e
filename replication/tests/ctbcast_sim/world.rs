//! The simulated world: a network that delays, reorders and (while lossy) drops entries,
//! SWMR registers with linearizable reads, nodes that crash or pause, and virtual time —
//! all drawn from one seeded generator, so a seed replays exactly.
//!
//! Registers: a write lands (takes effect) a random time after it is issued and completes
//! a random time after that; a read takes its value at a random instant between issue and
//! completion. So a read concurrent with a write may see the older or the newer
//! incarnation, and a read that starts after a write completed sees it — the abstract
//! interface's semantics. The model also holds correct writers to their promise: one write
//! per register slot in flight, incarnations that never go down.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use usec_qp_pool::NodeId;
use usec_replication::bft::ctbcast::{Action, Broadcaster, Receiver, RegisterReadResult};

use crate::byzantine::{ByzantineBroadcaster, ByzantineReceiver};
use crate::checker::Checker;

/// A register slot: never written, or its incarnation and value.
type RegisterValue = Option<(u64, Vec<u8>)>;

/// What runs at a node.
pub enum Role {
    Broadcaster(Broadcaster),
    ByzantineBroadcaster(ByzantineBroadcaster),
    Receiver(Receiver),
    ByzantineReceiver(ByzantineReceiver),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Up,
    Crashed,
    PausedUntil(u64),
}

pub struct Node {
    pub role: Role,
    pub liveness: Liveness,
}

enum Ev {
    Deliver { to: usize, from: usize, bytes: Vec<u8> },
    Broadcast,
    WriteLands { owner: usize, slot: u64, incarnation: u64, value: Vec<u8> },
    WriteDone { owner: usize, index: u64, slot: u64, correct: bool },
    ReadAt { reader: usize, owner: usize, slot: u64, index: u64 },
    ReadDone { reader: usize, owner: usize, index: u64, result: Option<RegisterValue> },
    Resume(usize),
}

/// The knobs one seed draws.
#[derive(Clone, Debug)]
pub struct Faults {
    pub delay_ns: (u64, u64),
    /// Chance in a million that an entry is lost, before `heal_at_ns`.
    pub drop_per_million: u32,
    pub heal_at_ns: u64,
    pub register_step_ns: (u64, u64),
    /// Chance in a million that a read of a Byzantine owner's register ends in the
    /// register layer's "Byzantine owner" verdict.
    pub byzantine_verdict_per_million: u32,
}

pub struct World {
    pub now: u64,
    pub rng: ChaCha8Rng,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    pub nodes: Vec<Node>,
    pub tail: u64,
    registers: Vec<Vec<RegisterValue>>,
    writes_in_flight: BTreeSet<(usize, u64)>,
    pub faults: Faults,
    pub checker: Checker,
    /// Messages the broadcaster still has to send, and the gap between them.
    pub broadcasts_left: u64,
    pub broadcast_gap_ns: (u64, u64),
    pub last_broadcast_ns: u64,
}

impl World {
    pub fn new(rng: ChaCha8Rng, nodes: Vec<Node>, tail: u64, faults: Faults, checker: Checker) -> World {
        let registers = (0..nodes.len()).map(|_| vec![None; tail as usize]).collect();
        World {
            now: 0,
            rng,
            queue: BTreeMap::new(),
            seq: 0,
            nodes,
            tail,
            registers,
            writes_in_flight: BTreeSet::new(),
            faults,
            checker,
            broadcasts_left: 0,
            broadcast_gap_ns: (0, 0),
            last_broadcast_ns: 0,
        }
    }

    fn schedule(&mut self, at: u64, event: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn draw(&mut self, (low, high): (u64, u64)) -> u64 {
        self.rng.gen_range(low..=high)
    }

    pub fn start_broadcasts(&mut self, count: u64, gap_ns: (u64, u64)) {
        self.broadcasts_left = count;
        self.broadcast_gap_ns = gap_ns;
        self.schedule(0, Ev::Broadcast);
    }

    /// Pauses `node` from now until `until_ns`: its inputs wait, its timers do not fire.
    pub fn pause(&mut self, node: usize, until_ns: u64) {
        self.nodes[node].liveness = Liveness::PausedUntil(until_ns);
        self.schedule(until_ns, Ev::Resume(node));
    }

    /// Runs until nothing is left to do or `until_ns`.
    pub fn run(&mut self, until_ns: u64) {
        loop {
            let event_at = self.queue.first_key_value().map(|(&(at, _), _)| at);
            let timer = self.next_timer();
            let next = match (event_at, timer) {
                (None, None) => return,
                (Some(at), Some((timer_at, _))) => at.min(timer_at),
                (Some(at), None) => at,
                (None, Some((timer_at, _))) => timer_at,
            };
            if next > until_ns {
                return;
            }
            self.now = self.now.max(next);
            match timer {
                Some((timer_at, node)) if event_at.is_none_or(|at| timer_at <= at) => {
                    let Role::Receiver(receiver) = &mut self.nodes[node].role else { unreachable!() };
                    receiver.tick(self.now);
                    self.drain(node);
                }
                _ => {
                    let (_, event) = self.queue.pop_first().expect("peeked");
                    self.dispatch(event);
                }
            }
        }
    }

    fn next_timer(&self) -> Option<(u64, usize)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, node)| node.liveness == Liveness::Up)
            .filter_map(|(id, node)| match &node.role {
                Role::Receiver(receiver) => receiver.poll_timeout().map(|at| (at, id)),
                _ => None,
            })
            .min()
    }

    fn dispatch(&mut self, event: Ev) {
        // Inputs for a paused node wait for it; a crashed node loses them.
        let target = match &event {
            Ev::Deliver { to, .. } => Some(*to),
            Ev::WriteDone { owner, .. } => Some(*owner),
            Ev::ReadDone { reader, .. } => Some(*reader),
            _ => None,
        };
        if let Some(node) = target {
            match self.nodes[node].liveness {
                Liveness::Crashed => return,
                Liveness::PausedUntil(until) => {
                    let at = until.max(self.now) + self.rng.gen_range(0..1_000);
                    self.schedule(at, event);
                    return;
                }
                Liveness::Up => {}
            }
        }
        match event {
            Ev::Deliver { to, from, bytes } => self.deliver(to, from, &bytes),
            Ev::Broadcast => self.broadcast(),
            Ev::WriteLands { owner, slot, incarnation, value } => {
                self.registers[owner][slot as usize] = Some((incarnation, value));
            }
            Ev::WriteDone { owner, index, slot, correct } => {
                if correct {
                    self.writes_in_flight.remove(&(owner, slot));
                }
                if let Role::Receiver(receiver) = &mut self.nodes[owner].role {
                    receiver.handle_register_written(index);
                    self.drain(owner);
                }
            }
            Ev::ReadAt { reader, owner, slot, index } => {
                let byzantine_owner = matches!(self.nodes[owner].role, Role::ByzantineReceiver(_));
                let verdict = byzantine_owner
                    && self.rng.gen_ratio(self.faults.byzantine_verdict_per_million, 1_000_000);
                let result = if verdict { None } else { Some(self.registers[owner][slot as usize].clone()) };
                let at = self.now + self.draw(self.faults.register_step_ns);
                self.schedule(at, Ev::ReadDone { reader, owner, index, result });
            }
            Ev::ReadDone { reader, owner, index, result } => {
                let Role::Receiver(receiver) = &mut self.nodes[reader].role else { return };
                let result = match &result {
                    None => RegisterReadResult::ByzantineOwner,
                    Some(value) => {
                        RegisterReadResult::Value(value.as_ref().map(|(inc, v)| (*inc, v.as_slice())))
                    }
                };
                receiver.handle_register_read(index, node(owner), result);
                self.drain(reader);
            }
            Ev::Resume(node) => {
                if matches!(self.nodes[node].liveness, Liveness::PausedUntil(_)) {
                    self.nodes[node].liveness = Liveness::Up;
                }
            }
        }
    }

    fn deliver(&mut self, to: usize, from: usize, bytes: &[u8]) {
        let now = self.now;
        let actions = match &mut self.nodes[to].role {
            Role::Receiver(receiver) => {
                // Refusals are expected from Byzantine senders; they are counted in stats.
                let _ = receiver.handle_entry(now, node(from), bytes);
                // Idle right after an input: what it deferred (verify-ahead) runs now.
                if receiver.has_deferred_work() {
                    receiver.tick(now);
                }
                self.drain(to);
                return;
            }
            Role::Broadcaster(broadcaster) => {
                let _ = broadcaster.handle_entry(node(from), bytes);
                self.drain(to);
                return;
            }
            Role::ByzantineBroadcaster(byzantine) => byzantine.on_entry(&mut self.rng, from, bytes),
            Role::ByzantineReceiver(byzantine) => byzantine.on_entry(&mut self.rng, from, bytes),
        };
        self.perform(to, actions, false);
    }

    fn broadcast(&mut self) {
        if self.broadcasts_left == 0 {
            return;
        }
        // The final tail is sent over a healed network: tail validity is asked of it.
        if self.broadcasts_left <= self.tail {
            self.faults.heal_at_ns = self.faults.heal_at_ns.min(self.now);
        }
        self.broadcasts_left -= 1;
        self.last_broadcast_ns = self.now;
        let length = self.rng.gen_range(0..200);
        let message: Vec<u8> = (0..length).map(|_| self.rng.gen()).collect();
        match &mut self.nodes[0].role {
            Role::Broadcaster(broadcaster) => {
                let index = broadcaster.broadcast(&message).expect("a message within bounds");
                self.checker.broadcast.insert(index, message);
                self.drain(0);
                // Sign ahead once the message's sends are out.
                let Role::Broadcaster(broadcaster) = &mut self.nodes[0].role else { unreachable!() };
                broadcaster.tick();
                self.drain(0);
            }
            Role::ByzantineBroadcaster(byzantine) => {
                let actions = byzantine.broadcast(&mut self.rng, &message);
                self.perform(0, actions, false);
            }
            _ => unreachable!("node 0 broadcasts"),
        }
        if self.broadcasts_left > 0 {
            let at = self.now + self.draw(self.broadcast_gap_ns);
            self.schedule(at, Ev::Broadcast);
        }
    }

    /// Carries out a correct role's actions and hands its events to the checker.
    fn drain(&mut self, me: usize) {
        let mut actions = Vec::new();
        loop {
            let (action, event) = match &mut self.nodes[me].role {
                Role::Receiver(receiver) => (receiver.poll_action(), receiver.poll_event()),
                Role::Broadcaster(broadcaster) => (broadcaster.poll_action(), None),
                _ => unreachable!("Byzantine roles return their actions"),
            };
            if action.is_none() && event.is_none() {
                break;
            }
            actions.extend(action);
            if let Some(event) = event {
                self.checker.record(me, event);
            }
        }
        self.perform(me, actions, true);
    }

    fn perform(&mut self, me: usize, actions: Vec<Action>, correct: bool) {
        for action in actions {
            match action {
                Action::Send { to, bytes } => {
                    let lossy = self.now < self.faults.heal_at_ns;
                    if lossy && self.rng.gen_ratio(self.faults.drop_per_million, 1_000_000) {
                        continue;
                    }
                    let at = self.now + self.draw(self.faults.delay_ns);
                    self.schedule(at, Ev::Deliver { to: to.get() as usize, from: me, bytes });
                }
                Action::RegisterWrite { index, slot, incarnation, value } => {
                    self.write_register(me, index, slot, incarnation, value.to_vec(), correct);
                }
                Action::RegisterRead { index, owner, slot } => {
                    let at = self.now + self.draw(self.faults.register_step_ns);
                    self.schedule(at, Ev::ReadAt { reader: me, owner: owner.get() as usize, slot, index });
                }
            }
        }
    }

    /// A write to `owner`'s own register (Byzantine owners write anything, any time).
    pub fn write_register(
        &mut self,
        owner: usize,
        index: u64,
        slot: u64,
        incarnation: u64,
        value: Vec<u8>,
        correct: bool,
    ) {
        assert!(slot < self.tail, "slot {slot} out of range");
        if correct {
            assert!(
                self.writes_in_flight.insert((owner, slot)),
                "node {owner} wrote slot {slot} twice at once"
            );
            let current = self.registers[owner][slot as usize].as_ref().map_or(0, |(inc, _)| *inc);
            assert!(
                incarnation > current,
                "node {owner} slot {slot}: incarnation {incarnation} after {current}"
            );
        }
        let lands = self.now + self.draw(self.faults.register_step_ns);
        let done = lands + self.draw(self.faults.register_step_ns);
        self.schedule(lands, Ev::WriteLands { owner, slot, incarnation, value });
        self.schedule(done, Ev::WriteDone { owner, index, slot, correct });
    }

    /// The correct receivers' stats, summed.
    pub fn receivers(&self) -> impl Iterator<Item = (usize, &Receiver)> {
        self.nodes.iter().enumerate().filter_map(|(id, node)| match &node.role {
            Role::Receiver(receiver) => Some((id, receiver)),
            _ => None,
        })
    }
}

pub fn node(id: usize) -> NodeId {
    NodeId::new(id as u16).expect("small ids")
}
