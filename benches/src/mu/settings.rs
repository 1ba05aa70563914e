//! What every replica of a benchmark's group is configured with, in a form that travels
//! to the replica processes.

use serde::{Deserialize, Serialize};
use usec_lease_clock::detector::ScoreConfig;
use usec_lease_clock::heartbeat::ReaderConfig;
use usec_lease_clock::lease::ActiveConfig;
use usec_qp_pool::NodeId;
use usec_replication::cft::MuConfig;
use usec_replication::driver::views::ViewsConfig;
use usec_replication::driver::DetectorConfig;

use crate::mu::machine::MachineKind;

/// The sizes and timings of the group (every replica uses the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Slots in each log ring.
    pub capacity: u64,
    /// Bytes per slot.
    pub slot_bytes: usize,
    /// Largest snapshot.
    pub snapshot_bytes: usize,
    /// Entries in flight to a follower at most.
    pub pipeline: u64,
    /// Commands per entry at most.
    pub batch_commands: usize,
    /// Commands waiting for an entry at most.
    pub queue_limit: usize,
    /// Heartbeat READ period.
    pub heartbeat_period_ns: u64,
    /// Heartbeat READ timeout.
    pub heartbeat_timeout_ns: u64,
    /// Each replica bumps its own heartbeat this often.
    pub bump_period_ns: u64,
    /// How long a silent peer whose process is alive (waiting for a CPU) is waited for
    /// before its silence counts ([`DetectorConfig::alive_patience_ns`]).
    #[serde(default = "default_alive_patience_ns")]
    pub alive_patience_ns: u64,
    /// The replicated state machine.
    pub machine: MachineKind,
    /// Whether every replica registers a region of the log ring's geometry (`capacity`
    /// slots of `slot_bytes`) that nobody reads, [`BARE_RING_REGION`], for bare WRITEs
    /// that walk through memory as Mu's entries do.
    #[serde(default)]
    pub bare_ring: bool,
    /// Leadership follows membership views (uKharon over Mu,
    /// [`MuDriver::attach_views`](usec_replication::driver::MuDriver::attach_views)) with an
    /// Active(view) lease of this many nanoseconds; `None`: Mu's own election.
    #[serde(default)]
    pub views_lease_ns: Option<u64>,
}

/// The name of the region of [`GroupSettings::bare_ring`].
pub const BARE_RING_REGION: &str = "bench-bare-ring";

impl Default for GroupSettings {
    /// The replication crate's defaults, with a log of 1,024 slots of 4 KiB + 256 B (room
    /// for a 4 KiB command) and snapshots of up to 64 KiB.
    fn default() -> GroupSettings {
        let mu = MuConfig::default();
        let detectors = DetectorConfig::default();
        GroupSettings {
            capacity: 1024,
            slot_bytes: 4096 + 256,
            snapshot_bytes: 64 << 10,
            pipeline: mu.pipeline,
            batch_commands: mu.batch_commands,
            queue_limit: mu.queue_limit,
            heartbeat_period_ns: detectors.reader.period_ns,
            heartbeat_timeout_ns: detectors.reader.timeout_ns,
            bump_period_ns: detectors.bump_period_ns,
            alive_patience_ns: detectors.alive_patience_ns,
            machine: MachineKind::Counter,
            bare_ring: false,
            views_lease_ns: None,
        }
    }
}

impl GroupSettings {
    /// The replica's configuration.
    pub fn mu(&self) -> MuConfig {
        MuConfig {
            capacity: self.capacity,
            slot_bytes: self.slot_bytes,
            snapshot_bytes: self.snapshot_bytes,
            pipeline: self.pipeline,
            batch_commands: self.batch_commands,
            queue_limit: self.queue_limit,
            ..MuConfig::default()
        }
    }

    /// The failure detectors' configuration (Mu's score detector, and the provider's
    /// report of a dead peer process).
    pub fn detectors(&self) -> DetectorConfig {
        DetectorConfig {
            reader: ReaderConfig {
                period_ns: self.heartbeat_period_ns,
                timeout_ns: self.heartbeat_timeout_ns,
            },
            score: ScoreConfig::default(),
            bump_period_ns: self.bump_period_ns,
            alive_patience_ns: self.alive_patience_ns,
        }
    }

    /// The membership's configuration for a group of `nodes`, if leadership follows views:
    /// the lease renewed with half of it left, retried after a quarter.
    pub fn views(&self, nodes: &[NodeId]) -> Result<Option<ViewsConfig>, usec_replication::Error> {
        let Some(lease_ns) = self.views_lease_ns else { return Ok(None) };
        let mut views = ViewsConfig::for_group(nodes)?;
        views.lease = ActiveConfig {
            lease_ns,
            renew_before_ns: lease_ns / 2,
            retry_after_ns: lease_ns / 4,
            ..ActiveConfig::default()
        };
        Ok(Some(views))
    }

    /// Bytes of the region of [`GroupSettings::bare_ring`].
    pub fn bare_ring_bytes(&self) -> usize {
        self.capacity as usize * self.slot_bytes
    }

    /// One line for reports.
    pub fn describe(&self) -> String {
        let mu = self.mu();
        format!(
            "log {} slots of {} B, pipeline {}, batch {} commands; inbox every {} ns, idle commit after {} ns; \
             heartbeat READ every {} ns (timeout {} ns), bumped every {} ns, Mu score detector {:?}, a silent \
             peer probed (stopped or exiting: suspected at once; alive: waited for {} ns), and the provider's \
             dead-peer report{}",
            mu.capacity,
            mu.slot_bytes,
            mu.pipeline,
            mu.batch_commands,
            mu.inbox_period_ns,
            mu.idle_commit_ns,
            self.heartbeat_period_ns,
            self.heartbeat_timeout_ns,
            self.bump_period_ns,
            ScoreConfig::default(),
            self.alive_patience_ns,
            if self.bare_ring { "; a ring of the log's geometry on each replica for bare WRITEs" } else { "" }
        ) + &match self.views_lease_ns {
            Some(lease_ns) => format!(
                "; leadership on membership views (one-sided Paxos on the replicas, a view change fed by the \
                 detectors), Active(view) lease {lease_ns} ns"
            ),
            None => String::new(),
        }
    }
}

fn default_alive_patience_ns() -> u64 {
    DetectorConfig::default().alive_patience_ns
}
