//! The state machines the Mu benchmarks replicate: [`Counter`], as cheap as a state
//! machine can be while still reading every command, so that what is timed is the
//! replication and not the service; or the order book, a real service
//! (`orderbook-replicated`); or the key-value store behind a lock its front end reads
//! through (`kv-read-latency`). [`Machine`] is one of them, chosen by [`MachineKind`] in
//! the group's settings.

use serde::{Deserialize, Serialize};
use usec_replication::apps::kv::KvMachine;
use usec_replication::apps::orderbook::OrderBook;
use usec_replication::apps::server::Shared;
use usec_replication::{RestoreError, StateMachine};

/// Which state machine a benchmark's group replicates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum MachineKind {
    /// [`Counter`].
    #[default]
    Counter,
    /// The order-matching engine.
    OrderBook,
    /// The key-value store, shared with a front end ([`Shared`]).
    Kv,
}

/// The replicated state machine of a benchmark's group.
#[derive(Debug)]
pub enum Machine {
    /// Counts commands.
    Counter(Counter),
    /// Matches orders.
    OrderBook(Box<OrderBook>),
    /// Keys and values; a clone of the [`Shared`] reads them from another place (a
    /// [`usec_replication::apps::server::MuBackend`]).
    Kv(Shared<KvMachine>),
}

impl Machine {
    /// A fresh machine of `kind`.
    pub fn new(kind: MachineKind) -> Machine {
        match kind {
            MachineKind::Counter => Machine::Counter(Counter::default()),
            MachineKind::OrderBook => Machine::OrderBook(Box::new(OrderBook::new())),
            MachineKind::Kv => Machine::Kv(Shared::new(KvMachine::new())),
        }
    }
}

impl StateMachine for Machine {
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>) {
        match self {
            Machine::Counter(counter) => counter.apply(command, response),
            Machine::OrderBook(book) => book.apply(command, response),
            Machine::Kv(kv) => kv.apply(command, response),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        match self {
            Machine::Counter(counter) => counter.snapshot(),
            Machine::OrderBook(book) => book.snapshot(),
            Machine::Kv(kv) => kv.snapshot(),
        }
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        match self {
            Machine::Counter(counter) => counter.restore(snapshot),
            Machine::OrderBook(book) => book.restore(snapshot),
            Machine::Kv(kv) => kv.restore(snapshot),
        }
    }
}

/// Counts commands and folds their bytes into a digest; answers each with its position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Commands applied.
    pub applied: u64,
    /// A running digest of the commands' bytes (so that replicas can be compared).
    pub digest: u64,
}

impl StateMachine for Counter {
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>) {
        self.applied += 1;
        // FNV-1a over the first and last 8 bytes: every command is read, none is copied.
        let edges = command.iter().take(8).chain(command.iter().rev().take(8));
        for &byte in edges {
            self.digest = (self.digest ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
        response.extend_from_slice(&self.applied.to_le_bytes());
    }

    fn snapshot(&self) -> Vec<u8> {
        [self.applied.to_le_bytes(), self.digest.to_le_bytes()].concat()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let words: Option<[u64; 2]> = (snapshot.len() == 16).then(|| {
            let word = |at: usize| u64::from_le_bytes(snapshot[at..at + 8].try_into().expect("8 bytes"));
            [word(0), word(8)]
        });
        let [applied, digest] =
            words.ok_or_else(|| RestoreError(format!("{} bytes, not 16", snapshot.len())))?;
        *self = Counter { applied, digest };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_round_trip_and_bad_ones_are_refused() {
        let mut counter = Counter::default();
        let mut response = Vec::new();
        counter.apply(b"first command", &mut response);
        assert_eq!(response, 1u64.to_le_bytes());
        let mut copy = Counter::default();
        copy.restore(&counter.snapshot()).unwrap();
        assert_eq!(copy, counter);
        assert!(copy.restore(&[0; 15]).is_err());
        let mut other = Counter::default();
        other.apply(b"another command", &mut Vec::new());
        assert_ne!(other.digest, counter.digest, "the digest reads the bytes");
    }
}
