//! The register set against memory nodes modelled in a few lines: WRITEs land 8 bytes at a
//! time in increasing address order, a READ copies at one instant, each writer's actions
//! on one memory node execute in the order posted (one RC QP), and a seeded scheduler
//! interleaves everything. Crashed memory nodes fail what reaches them.

use std::collections::VecDeque;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// An action being carried out: a WRITE lands a chunk per step.
#[derive(Debug)]
struct InFlight {
    action: Action,
    landed: usize,
}

struct Model {
    layout: RegisterLayout,
    memories: Vec<Vec<u8>>,
    crashed: Vec<bool>,
    sets: Vec<RegisterSet>,
    /// Per writer and memory node, the actions in post order.
    queues: Vec<Vec<VecDeque<InFlight>>>,
    events: Vec<Vec<Event>>,
    rng: ChaCha8Rng,
    now_ns: u64,
}

impl Model {
    fn new(seed: u64, layout: RegisterLayout) -> Model {
        Model::with_memory_nodes(seed, layout, 3)
    }

    fn with_memory_nodes(seed: u64, layout: RegisterLayout, memory_nodes: usize) -> Model {
        let sets: Vec<RegisterSet> = (0..layout.writers)
            .map(|writer| RegisterSet::new(RegisterConfig::new(layout, memory_nodes, writer)).unwrap())
            .collect();
        Model {
            layout,
            memories: vec![vec![0; layout.memory_bytes()]; memory_nodes],
            crashed: vec![false; memory_nodes],
            queues: (0..layout.writers)
                .map(|_| (0..memory_nodes).map(|_| VecDeque::new()).collect())
                .collect(),
            events: vec![Vec::new(); layout.writers],
            sets,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now_ns: 0,
        }
    }

    /// Takes every set's new actions into the queues.
    fn collect(&mut self) {
        for (writer, set) in self.sets.iter_mut().enumerate() {
            while let Some(action) = set.poll_action() {
                let memory_node = action.memory_node();
                if let Action::Write { offset, bytes, .. } = &action {
                    // What RDMA rights guarantee: a writer's WRITE stays in its slice.
                    let slice = self.layout.writer_offset(writer)
                        ..self.layout.writer_offset(writer) + self.layout.writer_bytes();
                    assert!(slice.contains(offset) && offset + bytes.len() <= slice.end);
                }
                self.queues[writer][memory_node].push_back(InFlight { action, landed: 0 });
            }
        }
    }

    /// One step of one random QP; false when nothing is left to do.
    fn step(&mut self) -> bool {
        self.collect();
        let busy: Vec<(usize, usize)> = (0..self.sets.len())
            .flat_map(|writer| (0..self.memories.len()).map(move |node| (writer, node)))
            .filter(|&(writer, node)| !self.queues[writer][node].is_empty())
            .collect();
        if busy.is_empty() {
            match self.sets.iter().filter_map(RegisterSet::poll_timeout).min() {
                Some(at_ns) => self.advance(at_ns.max(self.now_ns)),
                None => return false,
            }
            return true;
        }
        self.advance(self.now_ns + 100);
        let (writer, node) = busy[self.rng.gen_range(0..busy.len())];
        let crashed = self.crashed[node];
        let front = self.queues[writer][node].front_mut().expect("busy");
        let token = front.action.token();
        let finished: Option<Result<Vec<u8>, ()>> = if crashed {
            Some(Err(()))
        } else {
            match &front.action {
                Action::Write { offset, bytes, .. } => {
                    let chunk = (bytes.len() - front.landed).min(8);
                    let at = offset + front.landed;
                    self.memories[node][at..at + chunk]
                        .copy_from_slice(&bytes[front.landed..front.landed + chunk]);
                    front.landed += chunk;
                    (front.landed == bytes.len()).then_some(Ok(Vec::new()))
                }
                Action::Read { offset, len, .. } => {
                    Some(Ok(self.memories[node][*offset..offset + len].to_vec()))
                }
            }
        };
        if let Some(result) = finished {
            let done = self.queues[writer][node].pop_front().expect("busy");
            let outcome = match (&done.action, &result) {
                (_, Err(())) => Outcome::Failed,
                (Action::Write { .. }, Ok(_)) => Outcome::Written,
                (Action::Read { .. }, Ok(bytes)) => Outcome::Read(bytes),
            };
            self.sets[writer].handle_completion(self.now_ns, token, outcome);
            self.drain_events(writer);
        }
        true
    }

    fn advance(&mut self, now_ns: u64) {
        self.now_ns = now_ns;
        for set in &mut self.sets {
            set.tick(now_ns);
        }
    }

    fn drain_events(&mut self, writer: usize) {
        while let Some(event) = self.sets[writer].poll_event() {
            self.events[writer].push(event);
        }
    }

    fn run(&mut self) {
        let mut steps = 0;
        while self.step() {
            steps += 1;
            assert!(steps < 1_000_000, "the model never settles");
        }
    }

    /// Runs until `writer` has an event for `op`, which it returns.
    fn wait(&mut self, writer: usize, op: OpId) -> Event {
        loop {
            if let Some(index) = self.events[writer].iter().position(|event| op_of(event) == op) {
                return self.events[writer].remove(index);
            }
            assert!(self.step(), "operation {op:?} of writer {writer} never finished");
        }
    }

    /// Writes garbage straight into `writer`'s register `slot` on every memory node: what
    /// a Byzantine writer can do with its own registers (and nothing more).
    fn scribble(&mut self, writer: usize, slot: usize, byte: u8) {
        let offset = self.layout.register_offset(writer, slot);
        for memory in &mut self.memories {
            memory[offset..offset + self.layout.register_bytes()].fill(byte);
        }
    }
}

fn op_of(event: &Event) -> OpId {
    match event {
        Event::Written { op, .. } | Event::WriteFailed { op, .. } | Event::Read { op, .. } => *op,
    }
}

fn layout() -> RegisterLayout {
    RegisterLayout { writers: 3, registers_per_writer: 4, value_bytes: 24 }
}

fn value(incarnation: u64, writer: usize) -> Vec<u8> {
    let mut value = vec![0; 24];
    value[..8].copy_from_slice(&incarnation.to_le_bytes());
    value[8] = writer as u8;
    value
}

fn read_result(event: Event) -> ReadResult {
    match event {
        Event::Read { result, .. } => result,
        other => panic!("not a read: {other:?}"),
    }
}

#[test]
fn a_write_then_a_read_by_another_replica() {
    let mut model = Model::new(1, layout());
    let op = model.sets[0].write(2, 7, &value(7, 0)).unwrap();
    assert_eq!(model.wait(0, op), Event::Written { op, slot: 2, incarnation: 7 });
    let op = model.sets[1].read(0, 2).unwrap();
    assert_eq!(read_result(model.wait(1, op)), ReadResult::Value { incarnation: 7, value: value(7, 0) });
    let op = model.sets[1].read(0, 3).unwrap();
    assert_eq!(read_result(model.wait(1, op)), ReadResult::Absent);
}

#[test]
fn reads_and_writes_go_on_with_one_memory_node_crashed() {
    for seed in 0..20 {
        let mut model = Model::new(seed, layout());
        model.crashed[(seed % 3) as usize] = true;
        for incarnation in 1..=5 {
            let op = model.sets[2].write(1, incarnation, &value(incarnation, 2)).unwrap();
            assert!(matches!(model.wait(2, op), Event::Written { .. }), "seed {seed}");
            let op = model.sets[0].read(2, 1).unwrap();
            let expected = ReadResult::Value { incarnation, value: value(incarnation, 2) };
            assert_eq!(read_result(model.wait(0, op)), expected, "seed {seed}");
        }
        model.run();
    }
}

#[test]
fn with_two_of_three_memory_nodes_crashed_operations_fail_instead_of_hanging() {
    let mut model = Model::new(3, layout());
    model.crashed[0] = true;
    model.crashed[2] = true;
    let op = model.sets[0].write(0, 1, b"x").unwrap();
    assert_eq!(model.wait(0, op), Event::WriteFailed { op, slot: 0, incarnation: 1 });
    let op = model.sets[1].read(0, 0).unwrap();
    assert_eq!(read_result(model.wait(1, op)), ReadResult::Unavailable);
}

/// With four memory nodes, two acknowledgements are half, not a majority: a write that
/// only two nodes hold must not complete, or a read of the other two would miss it (the
/// prototype's `(n + 1) / 2` would have reported it written).
#[test]
fn with_four_memory_nodes_two_acknowledgements_are_not_enough() {
    let mut model = Model::with_memory_nodes(6, layout(), 4);
    model.crashed[2] = true;
    model.crashed[3] = true;
    let op = model.sets[0].write(1, 1, &value(1, 0)).unwrap();
    assert_eq!(model.wait(0, op), Event::WriteFailed { op, slot: 1, incarnation: 1 });
    model.run();
    // Its WRITEs to nodes 0 and 1 land. Nodes 0 and 1 hold it; with them down and 2 and 3 back, a read must not say absent.
    model.crashed = vec![true, true, false, false];
    let op = model.sets[1].read(0, 1).unwrap();
    assert_eq!(read_result(model.wait(1, op)), ReadResult::Unavailable);
    model.crashed = vec![false, false, false, true];
    let op = model.sets[1].read(0, 1).unwrap();
    assert_eq!(read_result(model.wait(1, op)), ReadResult::Value { incarnation: 1, value: value(1, 0) });
}

#[test]
fn garbage_in_a_writers_registers_is_reported_byzantine() {
    let mut model = Model::new(4, layout());
    model.scribble(1, 3, 0xa5);
    let op = model.sets[0].read(1, 3).unwrap();
    let ReadResult::Byzantine(Misbehaviour::Unreadable { memory_nodes }) = read_result(model.wait(0, op))
    else {
        panic!("garbage not detected")
    };
    assert!(memory_nodes.len() >= 2, "{memory_nodes:?}");
    // The reader read every copy again before blaming the writer.
    model.run();
}

#[test]
fn two_values_under_one_incarnation_are_reported_byzantine() {
    let mut model = Model::new(5, layout());
    let op = model.sets[1].write(0, 4, &value(4, 1)).unwrap();
    model.wait(1, op);
    // A Byzantine writer whose second write reuses the incarnation with another value.
    let op = model.sets[1].write(0, 4, &value(4, 9)).unwrap();
    model.wait(1, op);
    let op = model.sets[2].read(1, 0).unwrap();
    assert_eq!(
        read_result(model.wait(2, op)),
        ReadResult::Byzantine(Misbehaviour::Conflicting { incarnation: 4 })
    );
}

/// Every writer writes its registers again and again while every replica reads them, all
/// interleaved at the granularity of 8-byte chunks: a read returns only values that were
/// written, never one older than a write completed before the read began, and never
/// blames a correct writer.
#[test]
fn concurrent_reads_of_registers_being_rewritten_see_whole_fresh_values() {
    for seed in 0..50 {
        let mut model = Model::new(seed, layout());
        // Per writer and slot, the incarnation whose write completed last.
        let mut completed = vec![vec![0u64; 4]; 3];
        let mut started: Vec<(usize, OpId, usize, usize, u64)> = Vec::new();
        let mut next = vec![vec![1u64; 4]; 3];
        for _ in 0..200 {
            let writer = model.rng.gen_range(0..3);
            let slot = model.rng.gen_range(0..4);
            if model.rng.gen_bool(0.5) {
                let incarnation = next[writer][slot];
                next[writer][slot] += 1;
                model.sets[writer].write(slot, incarnation, &value(incarnation, writer)).unwrap();
            } else {
                let reader = model.rng.gen_range(0..3);
                let op = model.sets[reader].read(writer, slot).unwrap();
                started.push((reader, op, writer, slot, completed[writer][slot]));
            }
            for _ in 0..model.rng.gen_range(0..40) {
                model.step();
            }
            for (events, completed) in model.events.iter_mut().zip(&mut completed) {
                for event in events.iter() {
                    if let Event::Written { slot, incarnation, .. } = event {
                        completed[*slot] = completed[*slot].max(*incarnation);
                    }
                }
                events.retain(|event| !matches!(event, Event::Written { .. }));
            }
        }
        model.run();
        for (reader, op, writer, slot, floor) in started {
            let index = model.events[reader].iter().position(|event| op_of(event) == op).expect("finished");
            match read_result(model.events[reader].remove(index)) {
                ReadResult::Value { incarnation, value: found } => {
                    assert_eq!(found, value(incarnation, writer), "seed {seed}: a value never written");
                    assert!(incarnation >= floor, "seed {seed}: read {incarnation} after {floor} completed");
                }
                ReadResult::Absent => assert_eq!(floor, 0, "seed {seed}: absent after a completed write"),
                other => panic!("seed {seed}: {other:?} for correct writer {writer}, slot {slot}"),
            }
        }
    }
}

#[test]
fn bad_arguments_are_refused_not_panicked_on() {
    let mut set = RegisterSet::new(RegisterConfig::new(layout(), 3, 0)).unwrap();
    assert!(set.write(4, 1, b"x").is_err());
    assert!(set.write(0, 0, b"x").is_err());
    assert!(set.write(0, 1, &[0; 25]).is_err());
    assert!(set.read(3, 0).is_err());
    assert!(set.read(0, 4).is_err());
    assert!(RegisterSet::new(RegisterConfig::new(layout(), 3, 3)).is_err());
    assert!(RegisterSet::new(RegisterConfig::new(layout(), 0, 0)).is_err());
    assert_eq!(set.poll_action(), None);
}
