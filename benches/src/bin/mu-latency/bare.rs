//! The baselines: the RDMA work of Mu's fast path done by a bare loop on the replica's own
//! QPs — one WRITE to each follower, timed until the first completion (with three
//! replicas, the leader and one follower are a majority).
//!
//! The WRITEs go through the `mu-log` role's QPs, on which the leader holds the write
//! right after its election, with `wr_id`s of an application kind that the replica
//! ignores. Completions of the replica's own work polled here go back to it. Two kinds:
//!
//! - [`BareWrites::fixed`], the baseline of the issue: a WRITE of the command's size from
//!   the leader's log region into each follower's snapshot area (no log slot: nothing the
//!   replica reads), always the same place.
//! - [`BareWrites::ring`]: a WRITE of the size of Mu's entry for the command, one slot
//!   further at each sample through a ring of the log's geometry (as many slots, as far
//!   apart) in a region of its own on every replica that nobody reads
//!   ([`GroupSettings::bare_ring`]): the memory Mu's entries walk through, without Mu. On
//!   the soft provider the leader's CPU makes the WRITEs, and memory that was not touched
//!   lately costs it cache and TLB misses that a WRITE to one place never meets.

use anyhow::{bail, Result};
use usec_benches::mu::settings::{GroupSettings, BARE_RING_REGION};
use usec_lease_clock::clock::Clock;
use usec_qp_pool::{NodeId, RoleId, WrId, WrKind};
use usec_replication::cft::cluster_port::{LOG_REGION, LOG_ROLE};
use usec_replication::cft::Replica;
use usec_replication::driver::MuDriver;
use usec_verbs::{RemoteAddr, SendWr, Sge, Status};

use usec_benches::mu::clock::SharedClock;
use usec_benches::mu::machine::Machine;

use crate::Sample;

/// The kind of the bare WRITEs.
const BARE: WrKind = WrKind::application(7);

/// A sample gives up after this long.
const SAMPLE_LIMIT_NS: u64 = 1_000_000_000;

/// Where the WRITEs go, at each sample.
#[derive(Clone, Copy, Debug)]
enum Walk {
    /// Always `offset`.
    Fixed { offset: usize },
    /// Slot `sample % slots`, `stride` bytes apart.
    Ring { slots: u64, stride: usize },
}

/// Bare WRITEs to every follower on the replica's log QPs.
#[derive(Debug)]
pub struct BareWrites {
    role: RoleId,
    walk: Walk,
    /// The first slot's source (or the fixed one).
    source: Sge,
    /// Each follower and its first slot (or the fixed place).
    targets: Vec<(NodeId, RemoteAddr)>,
    sequence: u64,
    theirs: Vec<(u64, Status)>,
}

impl BareWrites {
    /// WRITEs of `size` bytes from the snapshot area of `driver`'s own log into its
    /// followers'.
    pub fn fixed(
        driver: &mut MuDriver<Machine>,
        settings: &GroupSettings,
        size: usize,
    ) -> Result<BareWrites> {
        let config = settings.mu();
        if size > config.snapshot_bytes {
            bail!("{size} B do not fit the snapshot area ({} B)", config.snapshot_bytes);
        }
        let nodes = node_count(driver);
        let offset = config.layout(nodes).snapshot_offset();
        BareWrites::new(driver, LOG_REGION, Walk::Fixed { offset }, size)
    }

    /// WRITEs of `len` bytes walking the ring of [`GroupSettings::bare_ring`], from
    /// `driver`'s own ring into its followers'.
    pub fn ring(driver: &mut MuDriver<Machine>, settings: &GroupSettings, len: usize) -> Result<BareWrites> {
        if !settings.bare_ring {
            bail!("the group has no bare ring");
        }
        if len > settings.slot_bytes {
            bail!("{len} B do not fit a slot of {} B", settings.slot_bytes);
        }
        let walk = Walk::Ring { slots: settings.capacity, stride: settings.slot_bytes };
        BareWrites::new(driver, BARE_RING_REGION, walk, len)
    }

    fn new(driver: &mut MuDriver<Machine>, region: &str, walk: Walk, len: usize) -> Result<BareWrites> {
        let (cluster, _) = driver.parts_mut();
        let start = match walk {
            Walk::Fixed { offset } => offset,
            Walk::Ring { .. } => 0,
        };
        // Checks that the whole walk lies in the region, here and at every follower.
        let span = match walk {
            Walk::Fixed { offset } => offset + len,
            Walk::Ring { slots, stride } => (slots as usize - 1) * stride + len,
        };
        cluster.region(region)?.sge(0, span as u32)?;
        let source = cluster.region(region)?.sge(start, len as u32)?;
        let mut targets = Vec::new();
        for peer in cluster.peers() {
            let target = cluster.remote_region(peer, region)?;
            RemoteAddr::within(&target, 0, span as u64)?;
            targets.push((peer, RemoteAddr::within(&target, start as u64, len as u64)?));
        }
        Ok(BareWrites {
            role: cluster.role(LOG_ROLE)?,
            walk,
            source,
            targets,
            sequence: 0,
            theirs: Vec::new(),
        })
    }

    /// One sample: posts a WRITE to every follower and waits for the first successful
    /// completion; the nanoseconds from before the first post to after it. Interrupted when
    /// every WRITE fails (the followers took the write right away: another leader).
    pub fn sample(&mut self, driver: &mut MuDriver<Machine>, clock: &SharedClock) -> Result<Sample> {
        self.sequence += 1;
        let sequence = self.sequence;
        // Where this sample's WRITEs go, past the first slot (checked to fit when built).
        let step = match self.walk {
            Walk::Fixed { .. } => 0,
            Walk::Ring { slots, stride } => (sequence % slots) * stride as u64,
        };
        let source = Sge { addr: self.source.addr + step, ..self.source };
        let (cluster, poller) = driver.parts_mut();
        let start = clock.now_ns();
        let mut failed = Vec::new();
        for &(peer, first) in &self.targets {
            let wr_id = WrId::new(BARE, peer, sequence)?.to_raw();
            let remote = RemoteAddr { addr: first.addr + step, ..first };
            if let Err(error) = cluster.post_send(peer, self.role, &[SendWr::write(wr_id, remote, &source)]) {
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

/// One more than the highest node id of the group: what the log layout is sized for.
fn node_count(driver: &mut MuDriver<Machine>) -> usize {
    let (cluster, _) = driver.parts_mut();
    cluster.peers().chain([cluster.me()]).map(|node| usize::from(node.get())).max().unwrap_or(0) + 1
}
