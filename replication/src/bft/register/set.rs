//! [`RegisterSet`]: one replica's registers and reads, replicated over the memory nodes,
//! sans IO.
//!
//! # How to drive it
//!
//! - Commands: [`RegisterSet::write`] one of this replica's registers,
//!   [`RegisterSet::read`] any writer's. Each returns an [`OpId`] at once.
//! - Outputs: [`RegisterSet::poll_action`] until `None`, carrying each [`Action`] out (a
//!   WRITE or READ on one memory node); [`RegisterSet::poll_event`] for finished
//!   operations ([`Event`]).
//! - Inputs: [`RegisterSet::handle_completion`] once for every action, failure included,
//!   in the order the memory node's QP completed them; [`RegisterSet::tick`] with the time
//!   (torn reads are retried after [`RegisterConfig::retry_delay_ns`]);
//!   [`RegisterSet::poll_timeout`] says when the next retry is due.
//!
//! A write goes to every memory node and completes once a majority acknowledged it; a read
//! goes to every memory node and concludes from the first majority of copies it could
//! decode ([`quorum`](super::quorum)). A memory node that crashed only fails its share.
//!
//! The writer alternates the two sub-slots of each register, write after write. That keeps
//! the previous write whole while the new one lands, because a memory node applies one
//! writer's WRITEs in the order posted (one RC QP): so there is no need to wait for the
//! slowest memory node, nor for a cool-down, before writing the register again.

use std::collections::{HashMap, VecDeque};

use crate::error::{Error, Result};

use super::layout::RegisterLayout;
use super::quorum::{conclude, majority, ReadResult};
use super::sub_slot::{self, RegisterView};

/// Settings of a [`RegisterSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegisterConfig {
    /// The registers' geometry (the same on every replica and memory node).
    pub layout: RegisterLayout,
    /// How many memory nodes hold copies (2f_m + 1 to survive f_m crashes).
    pub memory_nodes: usize,
    /// This replica's writer index (which registers it may write).
    pub writer: usize,
    /// How many times a memory node's copy found torn is read again before it counts as
    /// unreadable.
    pub read_retries: u32,
    /// Pause before reading a torn copy again: long enough for a WRITE in flight to land.
    pub retry_delay_ns: u64,
}

impl RegisterConfig {
    /// Writer `writer` of `layout` over `memory_nodes` memory nodes, with 3 retries 2 µs
    /// apart.
    pub fn new(layout: RegisterLayout, memory_nodes: usize, writer: usize) -> RegisterConfig {
        RegisterConfig { layout, memory_nodes, writer, read_retries: 3, retry_delay_ns: 2_000 }
    }

    fn check(&self) -> Result<()> {
        self.layout.check()?;
        if self.memory_nodes == 0 || self.memory_nodes > 255 {
            return Err(Error::Config(format!("{} memory nodes: use 1 to 255", self.memory_nodes)));
        }
        if self.writer >= self.layout.writers {
            return Err(Error::Config(format!("writer {} of {}", self.writer, self.layout.writers)));
        }
        Ok(())
    }
}

/// Names an operation of a [`RegisterSet`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub u64);

/// Names one action: the set's counter, unique among its actions (a port may keep only
/// its low 44 bits, the sequence of a qp-pool work-request id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Token(pub u64);

/// An operation on one memory node's register region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// WRITE `bytes` (one sub-slot) at `offset`, inside this replica's own registers.
    Write {
        /// Its name.
        token: Token,
        /// The memory node, by index.
        memory_node: usize,
        /// Where, from the start of the region.
        offset: usize,
        /// What.
        bytes: Vec<u8>,
    },
    /// READ `len` bytes (one register) at `offset`.
    Read {
        /// Its name.
        token: Token,
        /// The memory node, by index.
        memory_node: usize,
        /// Where, from the start of the region.
        offset: usize,
        /// How much.
        len: usize,
    },
}

impl Action {
    /// Its token.
    pub fn token(&self) -> Token {
        match self {
            Action::Write { token, .. } | Action::Read { token, .. } => *token,
        }
    }

    /// Its memory node.
    pub fn memory_node(&self) -> usize {
        match self {
            Action::Write { memory_node, .. } | Action::Read { memory_node, .. } => *memory_node,
        }
    }
}

/// How an action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// The WRITE landed.
    Written,
    /// The READ's bytes.
    Read(&'a [u8]),
    /// It failed (the memory node or the path to it broke; a WRITE may have landed in
    /// part).
    Failed,
}

/// A finished operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A majority of memory nodes hold the write.
    Written {
        /// The operation.
        op: OpId,
        /// The register.
        slot: usize,
        /// What was written.
        incarnation: u64,
    },
    /// More than a minority of memory nodes failed the write: it may or may not be
    /// readable.
    WriteFailed {
        /// The operation.
        op: OpId,
        /// The register.
        slot: usize,
        /// What was written.
        incarnation: u64,
    },
    /// A read concluded.
    Read {
        /// The operation.
        op: OpId,
        /// The writer read.
        owner: usize,
        /// Its register.
        slot: usize,
        /// What it found.
        result: ReadResult,
    },
}

impl Event {
    /// The operation it finishes.
    pub fn op(&self) -> OpId {
        match self {
            Event::Written { op, .. } | Event::WriteFailed { op, .. } | Event::Read { op, .. } => *op,
        }
    }
}

/// A write under way: acknowledgements and failures so far.
#[derive(Debug)]
struct Writing {
    slot: usize,
    incarnation: u64,
    acked: usize,
    failed: usize,
}

/// One memory node's copy, as a read knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Copy {
    /// A READ outstanding, after `attempts` torn ones.
    Reading {
        attempts: u32,
    },
    /// Torn `attempts` times; read again at `at_ns`.
    Retrying {
        attempts: u32,
        at_ns: u64,
    },
    Done(RegisterView),
    Failed,
}

/// A read under way: each memory node's copy.
#[derive(Debug)]
struct Reading {
    owner: usize,
    slot: usize,
    copies: Vec<Copy>,
}

#[derive(Debug)]
enum Op {
    Write(Writing),
    Read(Reading),
}

/// One replica's registers and reads; see the [module documentation](self).
#[derive(Debug)]
pub struct RegisterSet {
    config: RegisterConfig,
    next_op: u64,
    next_token: u64,
    ops: HashMap<OpId, Op>,
    /// Actions posted and not yet completed: their operation and memory node.
    outstanding: HashMap<Token, (OpId, usize)>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    /// Per register of ours, the sub-slot the next write goes to.
    next_sub_slot: Vec<u8>,
    now_ns: u64,
}

impl RegisterSet {
    /// The registers of `config.writer`, none written yet by this process.
    pub fn new(config: RegisterConfig) -> Result<RegisterSet> {
        config.check()?;
        Ok(RegisterSet {
            next_sub_slot: vec![0; config.layout.registers_per_writer],
            config,
            next_op: 0,
            next_token: 0,
            ops: HashMap::new(),
            outstanding: HashMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            now_ns: 0,
        })
    }

    /// Its settings.
    pub fn config(&self) -> &RegisterConfig {
        &self.config
    }

    /// Writes `value` (at most the layout's value size; padded with zeros) into this
    /// replica's register `slot` at `incarnation` (at least 1). A correct writer never
    /// writes two different values under one incarnation of a register: readers would
    /// take it for Byzantine.
    pub fn write(&mut self, slot: usize, incarnation: u64, value: &[u8]) -> Result<OpId> {
        let layout = self.config.layout;
        if slot >= layout.registers_per_writer || incarnation == 0 || value.len() > layout.value_bytes {
            return Err(Error::Config(format!(
                "register write of slot {slot} of {}, incarnation {incarnation} (from 1), {} bytes (at most {})",
                layout.registers_per_writer,
                value.len(),
                layout.value_bytes
            )));
        }
        let sub = usize::from(self.next_sub_slot[slot]);
        self.next_sub_slot[slot] ^= 1;
        let mut bytes = vec![0; layout.sub_slot_bytes()];
        sub_slot::encode(incarnation, value, &mut bytes);
        let offset = layout.sub_slot_offset(self.config.writer, slot, sub);
        let op = self.new_op(Op::Write(Writing { slot, incarnation, acked: 0, failed: 0 }));
        for memory_node in 0..self.config.memory_nodes {
            let token = self.new_token(op, memory_node);
            self.actions.push_back(Action::Write { token, memory_node, offset, bytes: bytes.clone() });
        }
        Ok(op)
    }

    /// Reads register `slot` of writer `owner` (any writer, this one included).
    pub fn read(&mut self, owner: usize, slot: usize) -> Result<OpId> {
        let layout = self.config.layout;
        if owner >= layout.writers || slot >= layout.registers_per_writer {
            return Err(Error::Config(format!(
                "register read of writer {owner} of {}, slot {slot} of {}",
                layout.writers, layout.registers_per_writer
            )));
        }
        let copies = vec![Copy::Reading { attempts: 0 }; self.config.memory_nodes];
        let op = self.new_op(Op::Read(Reading { owner, slot, copies }));
        for memory_node in 0..self.config.memory_nodes {
            self.post_read(op, owner, slot, memory_node);
        }
        Ok(op)
    }

    /// The next action to carry out.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next finished operation.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Operations not finished yet.
    pub fn in_flight(&self) -> usize {
        self.ops.len()
    }

    /// When [`RegisterSet::tick`] has something to do next (a torn copy to read again).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.ops
            .values()
            .filter_map(|op| match op {
                Op::Read(reading) => reading
                    .copies
                    .iter()
                    .filter_map(|copy| match copy {
                        Copy::Retrying { at_ns, .. } => Some(*at_ns),
                        _ => None,
                    })
                    .min(),
                Op::Write(_) => None,
            })
            .min()
    }

    /// Moves time on: reads again the torn copies whose pause is over.
    pub fn tick(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        let mut due = Vec::new();
        for (&op, state) in &mut self.ops {
            let Op::Read(reading) = state else { continue };
            for (memory_node, copy) in reading.copies.iter_mut().enumerate() {
                if let Copy::Retrying { attempts, at_ns } = *copy {
                    if at_ns <= self.now_ns {
                        *copy = Copy::Reading { attempts };
                        due.push((op, reading.owner, reading.slot, memory_node));
                    }
                }
            }
        }
        due.sort_unstable();
        for (op, owner, slot, memory_node) in due {
            self.post_read(op, owner, slot, memory_node);
        }
    }

    /// How action `token` ended, at `now_ns`.
    pub fn handle_completion(&mut self, now_ns: u64, token: Token, outcome: Outcome<'_>) {
        self.now_ns = self.now_ns.max(now_ns);
        let Some((op, memory_node)) = self.outstanding.remove(&token) else { return };
        // An operation already finished (its quorum met without this node) ignores it.
        let Some(state) = self.ops.get_mut(&op) else { return };
        match state {
            Op::Write(writing) => {
                match outcome {
                    Outcome::Written => writing.acked += 1,
                    _ => writing.failed += 1,
                }
                self.settle_write(op);
            }
            Op::Read(reading) => {
                let Copy::Reading { attempts } = reading.copies[memory_node] else {
                    unreachable!("a copy {:?} has no READ outstanding", reading.copies[memory_node])
                };
                reading.copies[memory_node] = match outcome {
                    Outcome::Read(bytes) if bytes.len() == self.config.layout.register_bytes() => {
                        match sub_slot::decode_register(bytes) {
                            RegisterView::Torn if attempts < self.config.read_retries => Copy::Retrying {
                                attempts: attempts + 1,
                                at_ns: self.now_ns + self.config.retry_delay_ns,
                            },
                            view => Copy::Done(view),
                        }
                    }
                    _ => Copy::Failed,
                };
                self.settle_read(op);
            }
        }
    }

    fn settle_write(&mut self, op: OpId) {
        let Some(Op::Write(writing)) = self.ops.get(&op) else { return };
        let (n, quorum) = (self.config.memory_nodes, majority(self.config.memory_nodes));
        let (slot, incarnation) = (writing.slot, writing.incarnation);
        let event = if writing.acked >= quorum {
            Event::Written { op, slot, incarnation }
        } else if n - writing.failed < quorum {
            Event::WriteFailed { op, slot, incarnation }
        } else {
            return;
        };
        self.ops.remove(&op);
        self.events.push_back(event);
    }

    fn settle_read(&mut self, op: OpId) {
        let Some(Op::Read(reading)) = self.ops.get(&op) else { return };
        let (n, quorum) = (self.config.memory_nodes, majority(self.config.memory_nodes));
        let done: Vec<(usize, RegisterView)> = reading
            .copies
            .iter()
            .enumerate()
            .filter_map(|(memory_node, copy)| match copy {
                Copy::Done(view) => Some((memory_node, view.clone())),
                _ => None,
            })
            .collect();
        let failed = reading.copies.iter().filter(|copy| **copy == Copy::Failed).count();
        let result = if done.len() >= quorum {
            conclude(n, &done)
        } else if n - failed < quorum {
            ReadResult::Unavailable
        } else {
            return;
        };
        let (owner, slot) = (reading.owner, reading.slot);
        self.ops.remove(&op);
        self.events.push_back(Event::Read { op, owner, slot, result });
    }

    fn post_read(&mut self, op: OpId, owner: usize, slot: usize, memory_node: usize) {
        let layout = self.config.layout;
        let token = self.new_token(op, memory_node);
        let offset = layout.register_offset(owner, slot);
        self.actions.push_back(Action::Read { token, memory_node, offset, len: layout.register_bytes() });
    }

    fn new_op(&mut self, op: Op) -> OpId {
        let id = OpId(self.next_op);
        self.next_op += 1;
        self.ops.insert(id, op);
        id
    }

    fn new_token(&mut self, op: OpId, memory_node: usize) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        self.outstanding.insert(token, (op, memory_node));
        token
    }
}
