//! [`Applier`]: a state machine wrapped so that each command is applied at most once.
//!
//! A command can reach the log twice: a client retries after a leader change whose
//! outcome it could not learn, or a new leader re-proposes a command it found in a
//! follower's log while the client's retry is queued too. Every command carries a
//! [`CommandId`] (client, sequence); the applier remembers, per client, the highest
//! sequence applied and that command's response, and skips anything not newer. Clients
//! number their commands 1, 2, 3, … and wait for each before the next (or at least never
//! let a later one overtake an earlier one they still care about).
//!
//! The table travels in snapshots with the state machine's own bytes.

use std::collections::HashMap;

use crate::codec::Reader;
use crate::log::CommandId;
use crate::state_machine::{RestoreError, StateMachine};

/// What applying a command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied now; the response is in the buffer.
    Fresh,
    /// The client's latest command, applied before: its response is in the buffer again.
    Repeat,
    /// Older than the client's latest: skipped, no response kept.
    Stale,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Session {
    sequence: u64,
    response: Vec<u8>,
}

/// A state machine with exactly-once application by command id.
#[derive(Debug)]
pub struct Applier<S> {
    machine: S,
    sessions: HashMap<u64, Session>,
}

impl<S: StateMachine> Applier<S> {
    /// Wraps `machine`, no command applied yet.
    pub fn new(machine: S) -> Applier<S> {
        Applier { machine, sessions: HashMap::new() }
    }

    /// The state machine.
    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// Applies `command` unless `id` was applied already; `response` gets its response
    /// (cleared first) unless the command is [`Applied::Stale`].
    pub fn apply(&mut self, id: CommandId, command: &[u8], response: &mut Vec<u8>) -> Applied {
        response.clear();
        let session = self.sessions.entry(id.client).or_default();
        if id.sequence < session.sequence {
            return Applied::Stale;
        }
        if id.sequence == session.sequence {
            response.extend_from_slice(&session.response);
            return Applied::Repeat;
        }
        self.machine.apply(command, response);
        session.sequence = id.sequence;
        session.response.clear();
        session.response.extend_from_slice(response);
        Applied::Fresh
    }

    /// The highest sequence applied for `client` (0: none).
    pub fn last_sequence(&self, client: u64) -> u64 {
        self.sessions.get(&client).map_or(0, |session| session.sequence)
    }

    /// State machine and session table, as bytes.
    pub fn snapshot(&self) -> Vec<u8> {
        let machine = self.machine.snapshot();
        let mut bytes = Vec::with_capacity(machine.len() + 16 + self.sessions.len() * 24);
        bytes.extend_from_slice(&(machine.len() as u64).to_le_bytes());
        bytes.extend_from_slice(&machine);
        let mut clients: Vec<_> = self.sessions.iter().collect();
        clients.sort_by_key(|(&client, _)| client); // the same state gives the same bytes
        bytes.extend_from_slice(&(clients.len() as u64).to_le_bytes());
        for (&client, session) in clients {
            bytes.extend_from_slice(&client.to_le_bytes());
            bytes.extend_from_slice(&session.sequence.to_le_bytes());
            bytes.extend_from_slice(&(session.response.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&session.response);
        }
        bytes
    }

    /// Replaces state and sessions with a snapshot's; on error nothing changed.
    pub fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let refuse = |why: &str| RestoreError(format!("replica snapshot: {why}"));
        let mut reader = Reader::new(snapshot);
        let machine_len = reader.u64().ok_or_else(|| refuse("no state length"))?;
        let machine = usize::try_from(machine_len)
            .ok()
            .and_then(|len| reader.bytes(len))
            .ok_or_else(|| refuse("the state is cut"))?;
        let count = reader.u64().ok_or_else(|| refuse("no session count"))?;
        let mut sessions = HashMap::new();
        for _ in 0..count {
            let client = reader.u64().ok_or_else(|| refuse("a session is cut"))?;
            let sequence = reader.u64().ok_or_else(|| refuse("a session is cut"))?;
            let len = reader.u32().ok_or_else(|| refuse("a response length is cut"))? as usize;
            let response = reader.bytes(len).ok_or_else(|| refuse("a response is cut"))?.to_vec();
            sessions.insert(client, Session { sequence, response });
        }
        if !reader.is_empty() {
            return Err(refuse("bytes after the sessions"));
        }
        self.machine.restore(machine)?;
        self.sessions = sessions;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::History;

    fn id(client: u64, sequence: u64) -> CommandId {
        CommandId { client, sequence }
    }

    #[test]
    fn each_command_applies_once() {
        let mut applier = Applier::new(History::default());
        let mut response = Vec::new();
        assert_eq!(applier.apply(id(1, 1), b"a", &mut response), Applied::Fresh);
        assert_eq!(response, 1u64.to_le_bytes());
        assert_eq!(applier.apply(id(1, 1), b"a", &mut response), Applied::Repeat);
        assert_eq!(response, 1u64.to_le_bytes(), "the repeat gets the first response");
        assert_eq!(applier.apply(id(2, 1), b"b", &mut response), Applied::Fresh);
        assert_eq!(applier.apply(id(1, 2), b"c", &mut response), Applied::Fresh);
        assert_eq!(applier.apply(id(1, 1), b"a", &mut response), Applied::Stale);
        assert_eq!(applier.machine().applied, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }

    #[test]
    fn snapshots_carry_sessions() {
        let mut applier = Applier::new(History::default());
        let mut response = Vec::new();
        applier.apply(id(7, 3), b"x", &mut response);
        let snapshot = applier.snapshot();
        let mut other = Applier::new(History::default());
        other.restore(&snapshot).unwrap();
        assert_eq!(other.machine(), applier.machine());
        assert_eq!(other.apply(id(7, 3), b"x", &mut response), Applied::Repeat);
        assert_eq!(other.snapshot(), snapshot);
        for cut in 0..snapshot.len() {
            assert!(other.restore(&snapshot[..cut]).is_err(), "a snapshot cut at {cut} restored");
        }
    }
}
