//! The simulated world: replicas (correct or Byzantine), clients, a network, SWMR
//! registers and virtual time, all drawn from one seeded generator.
//!
//! - CTBcast ring writes are RDMA WRITEs on reliable connections: delayed and reordered
//!   across pairs, never lost, but a ring keeps only its last `tail` entries: a paused
//!   receiver finds on resuming the last `tail` writes of each ring (per sender, stream
//!   and kind of entry, as the driver lays them out) when the pause overwrites
//!   (`pause(.., overwrite: true)`), else all of them; a crashed one none.
//! - Point-to-point messages (requests, replies, signature shares) are lost at a seeded
//!   rate until the network heals.
//! - Registers: a write lands a random time after issue and completes later; a read takes
//!   its value at a random instant in between (linearizable, like the real ones).

use std::collections::BTreeMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use usec_qp_pool::NodeId;
use usec_replication::bft::consensus::{Action, Client, ClientId, Event, Replica};
use usec_replication::bft::ctbcast;
use usec_replication::bft::ctbcast::RegisterReadResult;
use usec_replication::bft::node::channels::stream_of;

use crate::app::Chain;
use crate::byzantine::Byzantine;
use crate::checker::Checker;

pub type Core = Replica<Chain>;

// Three replicas per run: boxing the larger variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Role {
    Correct(Core),
    Byzantine(Byzantine),
}

impl Role {
    pub fn core(&mut self) -> &mut Core {
        match self {
            Role::Correct(core) => core,
            Role::Byzantine(byzantine) => &mut byzantine.core,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    Up,
    Crashed,
    PausedUntil(u64),
}

pub struct ReplicaNode {
    pub role: Role,
    pub liveness: Liveness,
}

pub struct ClientNode {
    pub client: Client,
    pub left: u64,
    pub submitted_at: u64,
}

/// Where a point-to-point message goes.
#[derive(Clone, Copy, Debug)]
pub enum Peer {
    Replica(usize),
    Client(usize),
}

enum Ev {
    Ctb { to: usize, from: usize, bytes: Vec<u8> },
    Direct { to: Peer, from: Peer, bytes: Vec<u8> },
    WriteLands { key: (usize, usize, u64), incarnation: u64, value: Vec<u8> },
    WriteDone { owner: usize, stream: usize, index: u64 },
    ReadAt { reader: usize, stream: usize, owner: usize, slot: u64, index: u64 },
    ReadDone { reader: usize, stream: usize, owner: usize, index: u64, value: Option<(u64, Vec<u8>)> },
    Resume(usize),
    Crash(usize),
}

#[derive(Clone, Debug)]
pub struct Faults {
    pub delay_ns: (u64, u64),
    pub drop_per_million: u32,
    pub heal_at_ns: u64,
    pub register_step_ns: (u64, u64),
}

pub struct World {
    pub now: u64,
    pub rng: ChaCha8Rng,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    pub replicas: Vec<ReplicaNode>,
    pub clients: Vec<ClientNode>,
    /// (owner, stream, slot) to (incarnation, value).
    registers: BTreeMap<(usize, usize, u64), (u64, Vec<u8>)>,
    pub faults: Faults,
    pub checker: Checker,
    pub trace: bool,
    pauses: Vec<(usize, u64)>,
    /// Paused replicas whose rings the pause overwrites.
    overwriting: Vec<usize>,
    /// Per (paused receiver, sender): the queued ring writes, oldest first.
    rings: BTreeMap<(usize, usize, u16), std::collections::VecDeque<(u64, u64)>>,
    /// Entries a ring keeps (CTBcast's tail).
    pub tail: usize,
}

pub fn node(id: usize) -> NodeId {
    NodeId::new(id as u16).expect("small ids")
}

impl World {
    pub fn new(
        rng: ChaCha8Rng,
        replicas: Vec<ReplicaNode>,
        clients: Vec<ClientNode>,
        faults: Faults,
        checker: Checker,
    ) -> World {
        World {
            now: 0,
            rng,
            queue: BTreeMap::new(),
            seq: 0,
            replicas,
            clients,
            registers: BTreeMap::new(),
            faults,
            checker,
            trace: false,
            pauses: Vec::new(),
            overwriting: Vec::new(),
            rings: BTreeMap::new(),
            tail: usize::MAX,
        }
    }

    fn schedule(&mut self, at: u64, event: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    fn draw(&mut self, (low, high): (u64, u64)) -> u64 {
        self.rng.gen_range(low..=high)
    }

    pub fn pause(&mut self, replica: usize, from_ns: u64, until_ns: u64, overwrite: bool) {
        self.schedule(from_ns, Ev::Crash(replica | PAUSE_BIT));
        self.schedule(until_ns, Ev::Resume(replica));
        self.pauses.push((replica, until_ns));
        if overwrite {
            self.overwriting.push(replica);
        }
    }

    pub fn crash(&mut self, replica: usize, at_ns: u64) {
        self.schedule(at_ns, Ev::Crash(replica));
    }

    /// Whether every client has had all its requests answered.
    pub fn clients_done(&self) -> bool {
        self.clients.iter().all(|c| c.left == 0 && c.client.outstanding().is_none())
    }

    /// Runs until the clients are done or `until_ns`; an invariant broken is an `Err`.
    pub fn run(&mut self, until_ns: u64) -> Result<(), String> {
        for index in 0..self.clients.len() {
            self.submit(index);
        }
        loop {
            if let Some(failure) = self.checker.failure.take() {
                return Err(failure);
            }
            if self.clients_done() {
                return Ok(());
            }
            let event_at = self.queue.first_key_value().map(|(&(at, _), _)| at);
            let timer = self.next_timer();
            let next = match (event_at, timer) {
                (None, None) => return Ok(()),
                (Some(at), Some((timer_at, _))) => at.min(timer_at),
                (Some(at), None) => at,
                (None, Some((timer_at, _))) => timer_at,
            };
            if next > until_ns {
                return Ok(());
            }
            self.now = self.now.max(next);
            match timer {
                Some((timer_at, who)) if event_at.is_none_or(|at| timer_at <= at) => match who {
                    Peer::Replica(id) => {
                        let now = self.now;
                        self.replicas[id].role.core().tick(now);
                        self.drain(id);
                    }
                    Peer::Client(id) => {
                        let now = self.now;
                        self.clients[id].client.tick(now);
                        self.drain_client(id);
                    }
                },
                _ => {
                    let (_, event) = self.queue.pop_first().expect("peeked");
                    self.dispatch(event);
                }
            }
        }
    }

    fn next_timer(&mut self) -> Option<(u64, Peer)> {
        let replicas =
            self.replicas.iter_mut().enumerate().filter(|(_, r)| r.liveness == Liveness::Up).filter_map(
                |(id, r)| {
                    let core = r.role.core();
                    let at = if core.has_deferred_work() { Some(0) } else { core.poll_timeout() };
                    at.map(|at| (at, Peer::Replica(id)))
                },
            );
        let clients = self
            .clients
            .iter()
            .enumerate()
            .filter_map(|(id, c)| c.client.poll_timeout().map(|at| (at, Peer::Client(id))));
        replicas.chain(clients).min_by_key(|&(at, who)| (at, matches!(who, Peer::Client(_))))
    }

    fn submit(&mut self, index: usize) {
        let client = &mut self.clients[index];
        if client.left == 0 {
            return;
        }
        let operation: Vec<u8> = (0..self.rng.gen_range(1..40)).map(|_| self.rng.gen()).collect();
        let number = client.client.submit(self.now, operation.clone()).expect("one at a time");
        client.left -= 1;
        client.submitted_at = self.now;
        self.checker.submitted(ClientId(index as u32), number, operation);
        self.drain_client(index);
    }

    fn target_state(&self, replica: usize) -> Liveness {
        self.replicas[replica].liveness
    }

    fn dispatch(&mut self, event: Ev) {
        let target = match &event {
            Ev::Ctb { to, .. } => Some(*to),
            Ev::Direct { to: Peer::Replica(to), .. } => Some(*to),
            Ev::WriteDone { owner, .. } => Some(*owner),
            Ev::ReadDone { reader, .. } => Some(*reader),
            _ => None,
        };
        if let Some(replica) = target {
            match self.target_state(replica) {
                Liveness::Crashed => return,
                Liveness::PausedUntil(until) => {
                    let at = until.max(self.now) + self.rng.gen_range(0..1_000);
                    // Rings as the driver lays them out: per sender, receiver, stream and
                    // kind of entry (`channels::stream_of`).
                    let ring = match &event {
                        Ev::Ctb { to, from, bytes } if self.overwriting.contains(to) => {
                            stream_of(bytes).map(|stream| (*to, *from, stream.0))
                        }
                        _ => None,
                    };
                    self.schedule(at, event);
                    if let Some(ring) = ring {
                        // The ring keeps its last `tail` entries: older ones are overwritten.
                        let held = self.rings.entry(ring).or_default();
                        held.push_back((at, self.seq));
                        if held.len() > self.tail {
                            let oldest = held.pop_front().expect("more than tail");
                            self.queue.remove(&oldest);
                        }
                    }
                    return;
                }
                Liveness::Up => {}
            }
        }
        let now = self.now;
        match event {
            Ev::Ctb { to, from, bytes } => {
                let _ = self.replicas[to].role.core().handle_ctbcast(now, node(from), &bytes);
                self.drain(to);
            }
            Ev::Direct { to: Peer::Replica(to), from, bytes } => {
                let from = match from {
                    Peer::Replica(id) => Ok(node(id)),
                    Peer::Client(id) => Err(ClientId(id as u32)),
                };
                let _ = self.replicas[to].role.core().handle_direct(now, from, &bytes);
                self.drain(to);
            }
            Ev::Direct { to: Peer::Client(to), from: Peer::Replica(from), bytes } => {
                let _ = self.clients[to].client.handle_reply(node(from), &bytes);
                self.drain_client(to);
            }
            Ev::Direct { .. } => unreachable!("clients talk to replicas only"),
            Ev::WriteLands { key, incarnation, value } => {
                self.registers.insert(key, (incarnation, value));
            }
            Ev::WriteDone { owner, stream, index } => {
                self.replicas[owner].role.core().handle_register_written(now, node(stream), index);
                self.drain(owner);
            }
            Ev::ReadAt { reader, stream, owner, slot, index } => {
                let value = self.registers.get(&(owner, stream, slot)).cloned();
                let at = self.now + self.draw(self.faults.register_step_ns);
                self.schedule(at, Ev::ReadDone { reader, stream, owner, index, value });
            }
            Ev::ReadDone { reader, stream, owner, index, value } => {
                let result = RegisterReadResult::Value(value.as_ref().map(|(inc, v)| (*inc, v.as_slice())));
                self.replicas[reader].role.core().handle_register_read(
                    now,
                    node(stream),
                    index,
                    node(owner),
                    result,
                );
                self.drain(reader);
            }
            Ev::Resume(replica) => {
                if matches!(self.replicas[replica].liveness, Liveness::PausedUntil(_)) {
                    self.replicas[replica].liveness = Liveness::Up;
                }
                self.rings.retain(|&(to, _, _), _| to != replica);
            }
            Ev::Crash(who) if who & PAUSE_BIT != 0 => {
                let replica = who & !PAUSE_BIT;
                let until = self.pauses.iter().find(|(r, _)| *r == replica).map_or(0, |&(_, until)| until);
                if self.replicas[replica].liveness == Liveness::Up {
                    self.replicas[replica].liveness = Liveness::PausedUntil(until);
                }
            }
            Ev::Crash(replica) => self.replicas[replica].liveness = Liveness::Crashed,
        }
    }

    fn drain_client(&mut self, index: usize) {
        while let Some(send) = self.clients[index].client.poll_action() {
            self.send_direct(Peer::Client(index), Peer::Replica(send.to.get() as usize), send.bytes);
        }
        while let Some((number, result)) = self.clients[index].client.poll_result() {
            self.checker.accepted(ClientId(index as u32), number, result);
            self.submit(index);
        }
    }

    fn send_direct(&mut self, from: Peer, to: Peer, bytes: Vec<u8>) {
        if self.now < self.faults.heal_at_ns && self.rng.gen_ratio(self.faults.drop_per_million, 1_000_000) {
            return;
        }
        let at = self.now + self.draw(self.faults.delay_ns);
        self.schedule(at, Ev::Direct { to, from, bytes });
    }

    /// Carries out a replica's actions and hands a correct replica's events to the checker.
    pub fn drain(&mut self, me: usize) {
        loop {
            let core = self.replicas[me].role.core();
            let (action, event) = (core.poll_action(), core.poll_event());
            if action.is_none() && event.is_none() {
                break;
            }
            if let Some(event) = event {
                self.observe(me, event);
            }
            let Some(action) = action else { continue };
            let actions = match &mut self.replicas[me].role {
                Role::Correct(_) => vec![(action, 0)],
                Role::Byzantine(byzantine) => byzantine.rewrite(&mut self.rng, action),
            };
            for (action, extra_delay) in actions {
                self.perform(me, action, extra_delay);
            }
        }
    }

    fn observe(&mut self, me: usize, event: Event) {
        let correct = matches!(self.replicas[me].role, Role::Correct(_));
        if self.trace {
            println!(
                "{:>10} ns replica {me}{}: {event:?}",
                self.now,
                if correct { "" } else { " (byzantine)" }
            );
        }
        if correct {
            let digest = self.replicas[me].role.core().executed();
            self.checker.record(me, event, digest);
        }
    }

    fn perform(&mut self, me: usize, action: Action, extra_delay: u64) {
        match action {
            Action::Ctbcast { stream, action } => {
                let stream = stream.get() as usize;
                match action {
                    ctbcast::Action::Send { to, bytes } => {
                        let at = self.now + extra_delay + self.draw(self.faults.delay_ns);
                        self.schedule(at, Ev::Ctb { to: to.get() as usize, from: me, bytes });
                    }
                    ctbcast::Action::RegisterWrite { index, slot, incarnation, value } => {
                        let lands = self.now + extra_delay + self.draw(self.faults.register_step_ns);
                        let done = lands + self.draw(self.faults.register_step_ns);
                        let key = (me, stream, slot);
                        self.schedule(lands, Ev::WriteLands { key, incarnation, value: value.to_vec() });
                        self.schedule(done, Ev::WriteDone { owner: me, stream, index });
                    }
                    ctbcast::Action::RegisterRead { index, owner, slot } => {
                        let at = self.now + self.draw(self.faults.register_step_ns);
                        let owner = owner.get() as usize;
                        self.schedule(at, Ev::ReadAt { reader: me, stream, owner, slot, index });
                    }
                }
            }
            Action::ToReplica { to, bytes } => {
                if extra_delay > 0 {
                    let at = self.now + extra_delay;
                    self.schedule(
                        at,
                        Ev::Direct { to: Peer::Replica(to.get() as usize), from: Peer::Replica(me), bytes },
                    );
                } else {
                    self.send_direct(Peer::Replica(me), Peer::Replica(to.get() as usize), bytes);
                }
            }
            Action::ToClient { client, bytes } => {
                self.send_direct(Peer::Replica(me), Peer::Client(client.0 as usize), bytes);
            }
        }
    }
}

const PAUSE_BIT: usize = 1 << 30;
