//! The baseline: the RDMA work of Mu's fast path done by a bare loop on the replica's own
//! QPs — one WRITE of the command's size to each follower, timed until the first
//! completion (with three replicas, the leader and one follower are a majority).
//!
//! The WRITEs go through the `mu-log` role's QPs, on which the leader holds the write
//! right after its election, from its own log region into each follower's snapshot area (no
//! log slot: nothing the replica reads), with `wr_id`s of an application kind that the
//! replica ignores. Completions of the replica's own work polled here go back to it.

use anyhow::{bail, Result};
use usec_lease_clock::clock::Clock;
use usec_qp_pool::{NodeId, RoleId, WrId, WrKind};
use usec_replication::cft::cluster_port::{LOG_REGION, LOG_ROLE};
use usec_replication::cft::{MuConfig, Replica};
use usec_replication::driver::MuDriver;
use usec_verbs::{RemoteAddr, SendWr, Sge, Status};

use usec_benches::mu::clock::SharedClock;
use usec_benches::mu::machine::Machine;

use crate::Sample;

/// The kind of the bare WRITEs.
const BARE: WrKind = WrKind::application(7);

/// A sample gives up after this long.
const SAMPLE_LIMIT_NS: u64 = 1_000_000_000;

/// Bare WRITEs to every follower on the replica's log QPs.
#[derive(Debug)]
pub struct BareWrites {
    role: RoleId,
    source: Sge,
    targets: Vec<(NodeId, RemoteAddr)>,
    sequence: u64,
    theirs: Vec<(u64, Status)>,
}

impl BareWrites {
    /// WRITEs of `size` bytes from the snapshot area of `driver`'s own log into its
    /// followers'.
    pub fn new(driver: &mut MuDriver<Machine>, config: &MuConfig, size: usize) -> Result<BareWrites> {
        let (cluster, _) = driver.parts_mut();
        let nodes =
            cluster.peers().chain([cluster.me()]).map(|node| usize::from(node.get())).max().unwrap_or(0);
        let offset = config.layout(nodes + 1).snapshot_offset();
        if size > config.snapshot_bytes {
            bail!("{size} B do not fit the snapshot area ({} B)", config.snapshot_bytes);
        }
        let source = cluster.region(LOG_REGION)?.sge(offset, size as u32)?;
        let mut targets = Vec::new();
        for peer in cluster.peers() {
            let region = cluster.remote_region(peer, LOG_REGION)?;
            targets.push((peer, RemoteAddr::within(&region, offset as u64, size as u64)?));
        }
        Ok(BareWrites { role: cluster.role(LOG_ROLE)?, source, targets, sequence: 0, theirs: Vec::new() })
    }

    /// One sample: posts a WRITE to every follower and waits for the first successful
    /// completion; the nanoseconds from before the first post to after it. Interrupted when
    /// every WRITE fails (the followers took the write right away: another leader).
    pub fn sample(&mut self, driver: &mut MuDriver<Machine>, clock: &SharedClock) -> Result<Sample> {
        self.sequence += 1;
        let sequence = self.sequence;
        let (cluster, poller) = driver.parts_mut();
        let start = clock.now_ns();
        let mut failed = Vec::new();
        for &(peer, remote) in &self.targets {
            let wr_id = WrId::new(BARE, peer, sequence)?.to_raw();
            if let Err(error) =
                cluster.post_send(peer, self.role, &[SendWr::write(wr_id, remote, &self.source)])
            {
                failed.push(format!("posting to node {peer}: {error}"));
            }
        }
        let sample = loop {
            let mut done = false;
            for polled in poller.poll() {
                let status = polled.completion.status;
                if polled.wr_id.kind() != BARE {
                    self.theirs.push((polled.completion.wr_id, status));
                } else if polled.wr_id.sequence() == sequence {
                    // (The other follower's WRITE of an earlier sample may complete now.)
                    match status.is_success() {
                        true => done = true,
                        false => failed.push(format!("WRITE to node {}: {status:?}", polled.wr_id.peer())),
                    }
                }
            }
            let now = clock.now_ns();
            if done {
                break Sample::Took(now - start);
            }
            if failed.len() == self.targets.len() {
                break Sample::Interrupted(format!("every bare WRITE failed: {failed:?}"));
            }
            if now - start > SAMPLE_LIMIT_NS {
                bail!("no bare WRITE completed within {SAMPLE_LIMIT_NS} ns");
            }
        };
        for (wr_id, status) in self.theirs.drain(..) {
            debug_assert!(Replica::<Machine>::owns(wr_id));
            driver.replica_mut().handle_completion(wr_id, status);
        }
        Ok(sample)
    }
}
