//! [`Shared`]: a state machine that a replica's thread applies to while a front end's
//! thread reads it (READONLY's stale reads, INFO's key count). One mutex: the replica
//! holds it for one command at a time, a reader for one read.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::apps::server::Served;
use crate::state_machine::{RestoreError, StateMachine};

/// A state machine behind a mutex, cloned into the replica and kept by the front end.
#[derive(Debug, Default)]
pub struct Shared<S> {
    inner: Arc<Mutex<S>>,
}

impl<S> Clone for Shared<S> {
    fn clone(&self) -> Shared<S> {
        Shared { inner: self.inner.clone() }
    }
}

impl<S: Served> Shared<S> {
    /// Shares `machine`.
    pub fn new(machine: S) -> Shared<S> {
        Shared { inner: Arc::new(Mutex::new(machine)) }
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
    }

    fn snapshot(&self) -> Vec<u8> {
        self.lock().snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.lock().restore(snapshot)
    }
}
