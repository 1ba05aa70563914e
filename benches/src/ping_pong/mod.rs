//! Two-process ping-pongs: the initiator sends a message into the peer's memory, the peer
//! polls the message's last word, then answers the same way; the initiator times each
//! round trip and records RTT/2.
//!
//! - [`shared_memory`]: the physical floor, plain stores into one shared region.
//! - [`rdma_write`]: RDMA WRITEs through a verbs provider, as perftest's `ib_write_lat`.
//!
//! Each scenario is a session: `start` spawns its peer and sets up, [`Scenario::run_block`]
//! runs a block of round trips, `finish` checks the last message, stops the peer and
//! returns the measurement. [`run_interleaved`] alternates blocks of several scenarios, so
//! that slow drifts of the machine (on a VM, the host moving the virtual CPUs) weigh on
//! all of them alike instead of on whichever ran last. Between blocks a peer sleeps in a
//! blocking read, so only one peer busy-polls at a time.
//!
//! The peer side of each scenario is its `serve_peer` function, which the binary's `main`
//! runs when [`crate::peer::role`] names the scenario's `PEER_ROLE`.

pub mod rdma_write;
pub mod shared_memory;

use std::io::{Read, Write};

use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

use crate::latency::RoundTrips;
use crate::peer::{Channel, Peer};
use crate::pinning::Pinning;

/// What every ping-pong session is set up with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingPong {
    /// Message size in bytes (a multiple of 8).
    pub size: usize,
    /// Where the initiator (this process) is; it pins itself before the run.
    pub initiator: Pinning,
    /// The core the peer pins itself to, if any.
    pub peer_core: Option<usize>,
}

/// A ping-pong session that runs blocks of round trips on demand.
pub trait Scenario {
    /// Runs `warmup` unrecorded round trips, then `iterations` recorded ones.
    fn run_block(&mut self, warmup: u64, iterations: u64) -> Result<()>;
}

/// How the round trips of an interleaved run are split into blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPlan {
    /// Unrecorded round trips before a scenario's first block.
    pub warmup: u64,
    /// Unrecorded round trips before each later block (the peer has been asleep).
    pub block_warmup: u64,
    /// Recorded round trips per scenario, in all.
    pub iterations: u64,
    /// Blocks per scenario.
    pub blocks: u64,
}

impl BlockPlan {
    /// `(warmup, iterations)` of each block; the iterations add up to `self.iterations`.
    pub fn blocks(&self) -> Vec<(u64, u64)> {
        let blocks = self.blocks.clamp(1, self.iterations.max(1));
        (0..blocks)
            .map(|block| {
                let warmup = if block == 0 { self.warmup } else { self.block_warmup };
                let iterations = self.iterations / blocks + u64::from(block < self.iterations % blocks);
                (warmup, iterations)
            })
            .collect()
    }
}

/// Runs every scenario's blocks, alternating scenarios block by block and reversing their
/// order on every other block.
pub fn run_interleaved(plan: &BlockPlan, scenarios: &mut [&mut dyn Scenario]) -> Result<()> {
    for (index, (warmup, iterations)) in plan.blocks().into_iter().enumerate() {
        if index % 2 == 1 {
            scenarios.reverse();
        }
        for scenario in scenarios.iter_mut() {
            scenario.run_block(warmup, iterations)?;
        }
        if index % 2 == 1 {
            scenarios.reverse();
        }
    }
    Ok(())
}

/// A block of round trips the peer is to answer: numbers `first..first + count`.
#[derive(Debug, Serialize, Deserialize)]
struct Block {
    first: u64,
    count: u64,
}

/// The peer's word that it answered a block, with the last round trip it served.
#[derive(Debug, Serialize, Deserialize)]
struct BlockDone {
    last: u64,
}

/// Initiator side of a block: tells the peer, runs the round trips, waits for the peer to
/// go back to sleep. `round_trip(n, peer)` performs round trip `n`.
fn run_block_with_peer(
    peer: &mut Peer,
    round_trips: &mut RoundTrips,
    warmup: u64,
    iterations: u64,
    mut round_trip: impl FnMut(u64, &mut Peer) -> Result<()>,
) -> Result<()> {
    peer.send(&Block { first: round_trips.last_iteration() + 1, count: warmup + iterations })?;
    round_trips.run(warmup, iterations, |iteration| round_trip(iteration, peer))?;
    let done: BlockDone = peer.receive()?;
    ensure!(
        done.last == round_trips.last_iteration(),
        "the peer finished the block at round trip {}, the initiator at {}",
        done.last,
        round_trips.last_iteration()
    );
    Ok(())
}

/// Peer side: answers blocks until the initiator closes the channel, and returns the last
/// round trip served (0 if none). `answer(n)` waits for message `n` and answers it.
fn serve_blocks<R: Read, W: Write>(
    channel: &mut Channel<R, W>,
    mut answer: impl FnMut(u64) -> Result<()>,
) -> Result<u64> {
    let mut last = 0;
    while let Some(block) = channel.receive::<Block>()? {
        ensure!(block.first == last + 1, "block starts at {} after round trip {last}", block.first);
        for iteration in block.first..block.first + block.count {
            answer(iteration)?;
            last = iteration;
        }
        channel.send(&BlockDone { last })?;
    }
    Ok(last)
}

/// A region offset for each direction: the two messages sit in different pages so that
/// neither side's writes share a cache line (or an adjacent-line prefetch pair) with the
/// word the other side polls.
fn slot_bytes(size: usize) -> usize {
    size.next_multiple_of(4096)
}

/// Watches the initiator from a peer: its death re-parents the peer.
#[derive(Clone, Copy, Debug)]
struct InitiatorWatch {
    parent: u32,
}

impl InitiatorWatch {
    fn new() -> InitiatorWatch {
        InitiatorWatch { parent: std::os::unix::process::parent_id() }
    }

    fn check(&self) -> Result<()> {
        ensure!(
            std::os::unix::process::parent_id() == self.parent,
            "the initiator (pid {}) exited",
            self.parent
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_plans_split_the_iterations_and_warm_up_first() {
        let plan = BlockPlan { warmup: 100, block_warmup: 10, iterations: 1003, blocks: 4 };
        assert_eq!(plan.blocks(), vec![(100, 251), (10, 251), (10, 251), (10, 250)]);
        let few = BlockPlan { warmup: 5, block_warmup: 1, iterations: 2, blocks: 10 };
        assert_eq!(few.blocks(), vec![(5, 1), (1, 1)]);
        let none = BlockPlan { warmup: 5, block_warmup: 1, iterations: 0, blocks: 0 };
        assert_eq!(none.blocks(), vec![(5, 0)]);
    }

    struct Log<'a> {
        name: char,
        log: &'a std::cell::RefCell<Vec<(char, u64)>>,
    }

    impl Scenario for Log<'_> {
        fn run_block(&mut self, _warmup: u64, iterations: u64) -> Result<()> {
            self.log.borrow_mut().push((self.name, iterations));
            Ok(())
        }
    }

    #[test]
    fn interleaving_alternates_the_order() {
        let log = std::cell::RefCell::new(Vec::new());
        let (mut a, mut b) = (Log { name: 'a', log: &log }, Log { name: 'b', log: &log });
        let plan = BlockPlan { warmup: 0, block_warmup: 0, iterations: 3, blocks: 3 };
        run_interleaved(&plan, &mut [&mut a, &mut b]).unwrap();
        assert_eq!(log.into_inner(), vec![('a', 1), ('b', 1), ('b', 1), ('a', 1), ('a', 1), ('b', 1)]);
    }
}
