//! The [`StateMachine`] trait: what replication replicates.
//!
//! A state machine is deterministic: the same commands applied in the same order from the
//! same snapshot give the same state and responses on every replica. Replication applies
//! every decided command exactly once, in log order, on every replica; snapshots carry
//! the state to a replica that fell too far behind to catch up from the log.

/// A deterministic service to replicate.
pub trait StateMachine: Send {
    /// Applies one command and writes its response into `response` (empty on entry).
    /// Must not fail: a command the service refuses produces a response that says so.
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>);

    /// The whole state, as bytes [`StateMachine::restore`] takes back.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with a snapshot's.
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError>;

    /// Answers `command` from the state as it is, changing nothing, if it is a read-only
    /// command this machine can answer so; false (the default) sends it through the log.
    /// A leader answers reads this way while its view is active (see [`crate::cft::views`]).
    fn query(&self, command: &[u8], response: &mut Vec<u8>) -> bool {
        let _ = (command, response);
        false
    }
}

/// A snapshot the state machine cannot take back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("snapshot refused: {0}")]
pub struct RestoreError(pub String);

/// A state machine that records every command it applied, in order, and answers each
/// with its position: the reference machine of the tests (two replicas agree exactly
/// when their histories do). Its one query, the empty command, answers how many
/// commands it applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct History {
    /// The commands applied, in order.
    pub applied: Vec<Vec<u8>>,
}

impl StateMachine for History {
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>) {
        self.applied.push(command.to_vec());
        response.extend_from_slice(&(self.applied.len() as u64).to_le_bytes());
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(self.applied.len() as u64).to_le_bytes());
        for command in &self.applied {
            bytes.extend_from_slice(&(command.len() as u32).to_le_bytes());
            bytes.extend_from_slice(command);
        }
        bytes
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let refuse = |why: &str| RestoreError(format!("history snapshot: {why}"));
        let mut reader = crate::codec::Reader::new(snapshot);
        let count = reader.u64().ok_or_else(|| refuse("no count"))?;
        let mut applied = Vec::new();
        for _ in 0..count {
            let len = reader.u32().ok_or_else(|| refuse("a length is cut"))? as usize;
            applied.push(reader.bytes(len).ok_or_else(|| refuse("a command is cut"))?.to_vec());
        }
        if !reader.is_empty() {
            return Err(refuse("bytes after the last command"));
        }
        self.applied = applied;
        Ok(())
    }

    fn query(&self, command: &[u8], response: &mut Vec<u8>) -> bool {
        if !command.is_empty() {
            return false;
        }
        response.extend_from_slice(&(self.applied.len() as u64).to_le_bytes());
        true
    }
}
