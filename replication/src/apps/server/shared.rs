//! [`Shared`]: a state machine that a replica's thread applies to while a front end's
//! thread reads it (READONLY's stale reads, INFO's key count). One mutex: the replica
//! holds it for one command at a time, a reader for one read. It also counts the commands
//! applied, for INFO's `applied_commands` (a launcher's ops/s: entries hold batches, so
//! the log index does not count commands).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::apps::server::Served;
use crate::state_machine::{RestoreError, StateMachine};

/// A state machine behind a mutex, cloned into the replica and kept by the front end.
#[derive(Debug, Default)]
pub struct Shared<S> {
    inner: Arc<Mutex<S>>,
    applied_commands: Arc<AtomicU64>,
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Shared<S> {
        Shared { inner: self.inner.clone(), applied_commands: self.applied_commands.clone() }
    }
}

impl<S: Served> Shared<S> {
    /// Shares `machine`.
    pub fn new(machine: S) -> Shared<S> {
        Shared { inner: Arc::new(Mutex::new(machine)), applied_commands: Arc::default() }
    }

    /// Commands applied through any clone since it was made (not those a restored
    /// snapshot stands for).
    pub fn applied_commands(&self) -> u64 {
        self.applied_commands.load(Ordering::Relaxed)
    }

    /// The machine, locked.
    pub fn lock(&self) -> MutexGuard<'_, S> {
        // A panic while applying leaves the state unknown: better to stop here too.
        self.inner.lock().expect("the state machine's lock is never poisoned")
    }
}

impl<S: Served> StateMachine for Shared<S> {
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>) {
        self.lock().apply(command, response);
        self.applied_commands.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Vec<u8> {
        self.lock().snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.lock().restore(snapshot)
    }

    fn query(&self, command: &[u8], response: &mut Vec<u8>) -> bool {
        self.lock().read(command, response);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apps::kv::KvMachine;

    #[test]
    fn counts_the_commands_applied_through_any_clone() {
        let shared = Shared::new(KvMachine::new());
        let mut replica_side = shared.clone();
        assert_eq!(shared.applied_commands(), 0);
        let mut response = Vec::new();
        let snapshot = replica_side.snapshot();
        replica_side.apply(b"not a command", &mut response);
        replica_side.apply(b"nor this", &mut response);
        assert_eq!(shared.applied_commands(), 2);
        // A restored state was applied elsewhere: it is not counted here.
        replica_side.restore(&snapshot).unwrap();
        assert_eq!(shared.applied_commands(), 2);
    }
}
