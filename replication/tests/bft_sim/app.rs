//! The simulated application: a hash chain over every operation applied. Its result for
//! an operation is the chain after it, so any divergence in order or content shows in the
//! results clients accept.

use usec_replication::{RestoreError, StateMachine};

#[derive(Debug, Default)]
pub struct Chain {
    pub state: [u8; 32],
}

impl StateMachine for Chain {
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>) {
        let mut hasher = blake3::Hasher::new();
        hasher.update(&self.state);
        hasher.update(command);
        self.state = hasher.finalize().into();
        response.extend_from_slice(&self.state[..16]);
    }

    fn snapshot(&self) -> Vec<u8> {
        self.state.to_vec()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        self.state = snapshot.try_into().map_err(|_| RestoreError("32 bytes".into()))?;
        Ok(())
    }
}
