//! The Mu scenario: the leader's own loop proposes a command and turns its driver until
//! the `Committed` event — what an application embedded in the leader's thread sees.

use anyhow::{bail, Result};
use usec_lease_clock::clock::Clock;
use usec_replication::cft::{Event, RoleKind};
use usec_replication::driver::MuDriver;
use usec_replication::log::batch::{BATCH_HEADER_BYTES, COMMAND_HEADER_BYTES};
use usec_replication::log::entry::ENTRY_HEADER_BYTES;
use usec_replication::log::CommandId;

use usec_benches::mu::clock::SharedClock;
use usec_benches::mu::machine::Machine;

use crate::Sample;

/// A sample gives up after this long.
const SAMPLE_LIMIT_NS: u64 = 1_000_000_000;

/// Bytes of the entry that carries one command of `size` bytes.
pub fn entry_bytes(size: usize) -> usize {
    ENTRY_HEADER_BYTES + BATCH_HEADER_BYTES + COMMAND_HEADER_BYTES + size
}

/// Proposes one command at a time as one client.
#[derive(Debug)]
pub struct Proposer {
    client: u64,
    sequence: u64,
    command: Vec<u8>,
}

impl Proposer {
    /// A client numbered `client`.
    pub fn new(client: u64) -> Proposer {
        Proposer { client, sequence: 0, command: Vec::new() }
    }

    /// Its commands are `size` bytes from now on.
    pub fn set_size(&mut self, size: usize) {
        self.command = (0..size).map(|byte| byte as u8).collect();
    }

    /// One sample: proposes, turns until the command is committed; the nanoseconds from
    /// before the proposal to after the turn that reported the commit.
    pub fn sample(&mut self, driver: &mut MuDriver<Machine>, clock: &SharedClock) -> Result<Sample> {
        self.sequence += 1;
        let id = CommandId { client: self.client, sequence: self.sequence };
        let start = clock.now_ns();
        driver.replica_mut().propose(id, &self.command)?;
        loop {
            driver.turn(clock.now_ns());
            let end = clock.now_ns();
            let mut outcome = None;
            for event in driver.drain_events() {
                match event {
                    Event::Committed { id: done, .. } if done == id => {
                        outcome = Some(Sample::Took(end - start))
                    }
                    Event::NotCommitted { id: done, leader } if done == id => {
                        let why = format!("command {id:?} not committed, the leader is now {leader:?}");
                        outcome = Some(Sample::Interrupted(why));
                    }
                    Event::Superseded { id: done } if done == id => bail!("command {id:?} superseded"),
                    Event::RoleChanged { role, leader } if role != RoleKind::Leader => {
                        let why = format!("replica 0 became {role:?} (leader {leader:?})");
                        outcome = Some(Sample::Interrupted(why));
                    }
                    _ => {}
                }
            }
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
            if end - start > SAMPLE_LIMIT_NS {
                bail!(
                    "command {id:?} not committed within {SAMPLE_LIMIT_NS} ns: {}",
                    driver.replica().describe()
                );
            }
        }
    }
}
