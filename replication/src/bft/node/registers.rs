//! CTBcast's register actions carried onto the replicated SWMR registers of the memory
//! nodes ([`RegisterSet`]), and their outcomes carried back.
//!
//! - **Where.** A participant owns, per other broadcaster, `tail` registers
//!   ([`RegisterLayout::for_ctbcast`]): CTBcast's slot `index % tail` of broadcaster `b`'s
//!   stream is register `rank(b) * tail + index % tail` of the owner, `rank(b)` being `b`'s
//!   rank among the participants other than the owner.
//! - **Incarnations.** CTBcast's `index / tail + 1` and the register's are one number,
//!   64 bits on both sides; every index CTBcast accepts (below 2^62) maps, so there is no
//!   boundary to fall off ([`RegisterLayout::ctbcast_register`]).
//! - **A write that reaches no majority** (`WriteFailed`: memory nodes down) is written
//!   again after a pause, the same value under the same incarnation (which readers take
//!   for one write): CTBcast never has two writes of a register in flight and waits for
//!   this one, so its slow path for that slot resumes when memory nodes come back.
//! - **A read that reaches no majority** is handed to CTBcast as
//!   [`RegisterReadResult::Unavailable`]: it neither hangs nor counts as checked, and the
//!   receiver reads again after its timeout.

use std::collections::{HashMap, VecDeque};

use usec_qp_pool::NodeId;

use super::super::ctbcast::{RegisterReadResult, REGISTER_VALUE_BYTES};
use super::super::register::{Event, OpId, ReadResult, RegisterLayout, RegisterSet};
use crate::error::{Error, Result};

/// Pause before writing again a register write that reached no majority.
pub const WRITE_RETRY_NS: u64 = 100_000;

/// A register operation of one receiver (of `broadcaster`'s stream) under way.
#[derive(Clone, Debug)]
enum Pending {
    Write {
        broadcaster: NodeId,
        index: u64,
        slot: usize,
        incarnation: u64,
        value: [u8; REGISTER_VALUE_BYTES],
    },
    Read {
        broadcaster: NodeId,
        index: u64,
        owner: NodeId,
    },
}

/// A register outcome for the receiver of `broadcaster`'s stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `handle_register_written(index)`.
    Written {
        /// The stream.
        broadcaster: NodeId,
        /// The index.
        index: u64,
    },
    /// `handle_register_read(index, owner, result)`.
    Read {
        /// The stream.
        broadcaster: NodeId,
        /// The index.
        index: u64,
        /// Whose register.
        owner: NodeId,
        /// What was found (see [`Outcome::as_read_result`]).
        result: ReadResult,
    },
}

impl Outcome {
    /// The register layer's result as CTBcast takes it.
    pub fn as_read_result(result: &ReadResult) -> RegisterReadResult<'_> {
        match result {
            ReadResult::Absent => RegisterReadResult::Value(None),
            ReadResult::Value { incarnation, value } => {
                RegisterReadResult::Value(Some((*incarnation, value)))
            }
            ReadResult::Byzantine(_) => RegisterReadResult::ByzantineOwner,
            ReadResult::Unavailable => RegisterReadResult::Unavailable,
        }
    }
}

/// The bridge between the receivers' register actions and the register set.
#[derive(Debug)]
pub struct RegisterBridge {
    layout: RegisterLayout,
    tail: usize,
    participants: Vec<NodeId>,
    pending: HashMap<OpId, Pending>,
    /// Writes to do again: `(due_ns, write)`.
    retries: VecDeque<(u64, Pending)>,
    /// Writes that reached no majority (and were retried).
    pub write_retries: u64,
    /// When each operation under way was started, if timings are recorded.
    started: Option<HashMap<OpId, u64>>,
    /// The clock timings are read from.
    clock: Option<TimingClock>,
    timings: RegisterTimings,
}

/// A clock for timings only (benchmarks): nothing in the protocol reads it.
pub struct TimingClock(pub Box<dyn Fn() -> u64 + Send>);

impl std::fmt::Debug for TimingClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TimingClock")
    }
}

/// How long register operations took, start to majority, in nanoseconds (recorded only
/// when asked: [`RegisterBridge::record_timings`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterTimings {
    /// Writes (each try of a retried write on its own).
    pub writes_ns: Vec<u64>,
    /// Reads.
    pub reads_ns: Vec<u64>,
}

impl RegisterBridge {
    /// The bridge of the participants (sorted, the same list on every one) with `tail`.
    pub fn new(participants: &[NodeId], tail: usize) -> RegisterBridge {
        RegisterBridge {
            layout: RegisterLayout::for_ctbcast(participants.len(), tail),
            tail,
            participants: participants.to_vec(),
            pending: HashMap::new(),
            retries: VecDeque::new(),
            write_retries: 0,
            started: None,
            clock: None,
            timings: RegisterTimings::default(),
        }
    }

    /// Starts (with the clock to read) or stops recording how long operations take, for
    /// benchmarks: a turn's `now` is the time the turn began, too coarse for operations
    /// that start and end within one.
    pub fn record_timings(&mut self, clock: Option<TimingClock>) {
        self.started = clock.is_some().then(HashMap::new);
        self.clock = clock;
    }

    /// The timings recorded since the last call.
    pub fn take_timings(&mut self) -> RegisterTimings {
        std::mem::take(&mut self.timings)
    }

    fn started(&mut self, op: OpId) {
        if let (Some(started), Some(clock)) = (self.started.as_mut(), self.clock.as_ref()) {
            started.insert(op, (clock.0)());
        }
    }

    /// The registers' geometry.
    pub fn layout(&self) -> RegisterLayout {
        self.layout
    }

    /// `owner`'s writer index.
    pub fn writer(&self, owner: NodeId) -> Option<usize> {
        self.participants.iter().position(|&p| p == owner)
    }

    /// Where `owner` keeps its register for `broadcaster`'s `index`.
    fn register(&self, owner: NodeId, broadcaster: NodeId, index: u64) -> Result<(usize, usize, u64)> {
        let writer = self.writer(owner).ok_or_else(|| Error::Config(format!("{owner} owns no registers")))?;
        let rank = self.participants.iter().filter(|&&p| p != owner).position(|&p| p == broadcaster);
        let rank =
            rank.ok_or_else(|| Error::Config(format!("{broadcaster} is no other participant of {owner}")))?;
        let (slot, incarnation) = self
            .layout
            .ctbcast_register(self.tail, rank, index)
            .ok_or_else(|| Error::Config(format!("index {index} of {broadcaster} maps to no register")))?;
        Ok((writer, slot, incarnation))
    }

    /// Starts writing our register for `broadcaster`'s `index`, as CTBcast asked with
    /// `incarnation` (which the register's must equal).
    pub fn write(
        &mut self,
        set: &mut RegisterSet,
        me: NodeId,
        broadcaster: NodeId,
        index: u64,
        incarnation: u64,
        value: [u8; REGISTER_VALUE_BYTES],
    ) -> Result<()> {
        let (_, slot, mapped) = self.register(me, broadcaster, index)?;
        assert_eq!(mapped, incarnation, "CTBcast and the registers number incarnations alike");
        let write = Pending::Write { broadcaster, index, slot, incarnation, value };
        self.start(set, write)
    }

    /// Starts reading `owner`'s register for `broadcaster`'s `index`.
    pub fn read(
        &mut self,
        set: &mut RegisterSet,
        owner: NodeId,
        broadcaster: NodeId,
        index: u64,
    ) -> Result<()> {
        let (writer, slot, _) = self.register(owner, broadcaster, index)?;
        let op = set.read(writer, slot)?;
        self.started(op);
        self.pending.insert(op, Pending::Read { broadcaster, index, owner });
        Ok(())
    }

    fn start(&mut self, set: &mut RegisterSet, pending: Pending) -> Result<()> {
        let Pending::Write { slot, incarnation, value, .. } = &pending else { unreachable!("writes only") };
        let op = set.write(*slot, *incarnation, value)?;
        self.started(op);
        self.pending.insert(op, pending);
        Ok(())
    }

    /// Writes due again at `now_ns`.
    pub fn tick(&mut self, set: &mut RegisterSet, now_ns: u64) -> Result<()> {
        while self.retries.front().is_some_and(|(due, _)| *due <= now_ns) {
            let (_, write) = self.retries.pop_front().expect("looked at");
            self.start(set, write)?;
        }
        Ok(())
    }

    /// When [`RegisterBridge::tick`] has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.retries.front().map(|(due, _)| *due)
    }

    /// Takes a finished register operation at `now_ns`; what to tell CTBcast, if anything.
    pub fn handle_event(&mut self, event: Event, now_ns: u64) -> Option<Outcome> {
        let pending = self.pending.remove(&event.op())?;
        if let Some(started) = self.started.as_mut().and_then(|started| started.remove(&event.op())) {
            let ended = self.clock.as_ref().map_or(now_ns, |clock| (clock.0)());
            let took = ended.saturating_sub(started);
            match pending {
                Pending::Write { .. } => self.timings.writes_ns.push(took),
                Pending::Read { .. } => self.timings.reads_ns.push(took),
            }
        }
        match (event, pending) {
            (Event::Written { .. }, Pending::Write { broadcaster, index, .. }) => {
                Some(Outcome::Written { broadcaster, index })
            }
            (Event::WriteFailed { .. }, write @ Pending::Write { .. }) => {
                self.write_retries += 1;
                self.retries.push_back((now_ns + WRITE_RETRY_NS, write));
                None
            }
            (Event::Read { result, .. }, Pending::Read { broadcaster, index, owner }) => {
                Some(Outcome::Read { broadcaster, index, owner, result })
            }
            (event, pending) => unreachable!("{event:?} finished {pending:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::register::{Action, Outcome as Completion, RegisterConfig};
    use super::*;

    fn id(n: u16) -> NodeId {
        NodeId::new(n).unwrap()
    }

    /// Carries out the set's actions on `memory` (a memory node per entry), every memory
    /// node in `down` failing.
    fn carry(set: &mut RegisterSet, memory: &mut [Vec<u8>], down: &[usize]) {
        while let Some(action) = set.poll_action() {
            let token = action.token();
            match action {
                _ if down.contains(&action.memory_node()) => {
                    set.handle_completion(0, token, Completion::Failed)
                }
                Action::Write { memory_node, offset, bytes, .. } => {
                    memory[memory_node][offset..offset + bytes.len()].copy_from_slice(&bytes);
                    set.handle_completion(0, token, Completion::Written);
                }
                Action::Read { memory_node, offset, len, .. } => {
                    let copy = memory[memory_node][offset..offset + len].to_vec();
                    set.handle_completion(0, token, Completion::Read(&copy));
                }
            }
        }
    }

    #[test]
    fn the_last_index_ctbcast_accepts_is_written_and_read_back_under_its_own_incarnation() {
        let participants = [id(0), id(1), id(2)];
        let tail = 128;
        let mut bridge = RegisterBridge::new(&participants, tail);
        let layout = bridge.layout();
        let mut memory = vec![vec![0u8; layout.memory_bytes()]; 3];
        let mut writer = RegisterSet::new(RegisterConfig::new(layout, 3, 1)).unwrap();
        let mut reader = RegisterSet::new(RegisterConfig::new(layout, 3, 2)).unwrap();
        let index = super::super::super::ctbcast::INDEX_LIMIT - 1;
        let incarnation = index / tail as u64 + 1;
        assert!(incarnation > u64::from(u32::MAX), "past where 32-bit incarnations ended");
        bridge.write(&mut writer, id(1), id(0), index, incarnation, [9; REGISTER_VALUE_BYTES]).unwrap();
        carry(&mut writer, &mut memory, &[]);
        let event = writer.poll_event().unwrap();
        assert_eq!(bridge.handle_event(event, 0), Some(Outcome::Written { broadcaster: id(0), index }));
        bridge.read(&mut reader, id(1), id(0), index).unwrap();
        carry(&mut reader, &mut memory, &[]);
        let Some(Outcome::Read { result, owner, .. }) = bridge.handle_event(reader.poll_event().unwrap(), 0)
        else {
            panic!("no read")
        };
        assert_eq!(owner, id(1));
        assert_eq!(
            Outcome::as_read_result(&result),
            RegisterReadResult::Value(Some((incarnation, &[9; REGISTER_VALUE_BYTES][..])))
        );
    }

    #[test]
    fn without_a_majority_a_read_is_unavailable_and_a_write_is_tried_again() {
        let participants = [id(0), id(1), id(2)];
        let mut bridge = RegisterBridge::new(&participants, 4);
        let layout = bridge.layout();
        let mut memory = vec![vec![0u8; layout.memory_bytes()]; 3];
        let mut set = RegisterSet::new(RegisterConfig::new(layout, 3, 0)).unwrap();
        bridge.read(&mut set, id(2), id(1), 5).unwrap();
        carry(&mut set, &mut memory, &[0, 1]);
        let Some(Outcome::Read { result, .. }) = bridge.handle_event(set.poll_event().unwrap(), 0) else {
            panic!("no read")
        };
        assert_eq!(Outcome::as_read_result(&result), RegisterReadResult::Unavailable);

        bridge.write(&mut set, id(0), id(1), 5, 2, [1; REGISTER_VALUE_BYTES]).unwrap();
        carry(&mut set, &mut memory, &[0, 2]);
        assert_eq!(bridge.handle_event(set.poll_event().unwrap(), 1_000), None);
        assert_eq!(bridge.poll_timeout(), Some(1_000 + WRITE_RETRY_NS));
        bridge.tick(&mut set, 1_000 + WRITE_RETRY_NS).unwrap();
        carry(&mut set, &mut memory, &[2]);
        assert_eq!(
            bridge.handle_event(set.poll_event().unwrap(), 0),
            Some(Outcome::Written { broadcaster: id(1), index: 5 })
        );
        assert_eq!(bridge.write_retries, 1);
    }
}
