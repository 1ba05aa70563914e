//! The command line, and what it turns into: the replica's sizes and timings, the failure
//! detectors, the node's connection options.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use usec_lease_clock::clock::{CalibrationOptions, ClockPreference};
use usec_lease_clock::detector::ScoreConfig;
use usec_lease_clock::heartbeat::ReaderConfig;
use usec_lease_clock::lease::ActiveConfig;
use usec_qp_pool::{NodeConfig, NodeId};
use usec_replication::cft::{MuConfig, Start};
use usec_replication::driver::views::ViewsConfig;
use usec_replication::driver::{DetectorConfig, Pacing};

/// One Mu replica as a process.
///
/// It joins the cluster the description names, replicates a history of commands (each
/// replica records what it applied), and answers a console on stdin/stdout, one line per
/// command: `status`, `history`, `describe`, `client stop`, `quit`. With `--client`, a
/// thread proposes unique commands through this replica whenever it leads and prints
/// `ack <command in hex>` for each one acknowledged.
#[derive(Debug, Parser)]
#[command(name = "usec-mu-node", version)]
pub struct Args {
    /// The RDMA device: `soft:<fabric>`, or an ibverbs device (`rxe0`, `mlx5_0`).
    #[arg(long)]
    pub device: String,
    /// This node's id in the description.
    #[arg(long)]
    pub id: u16,
    /// The cluster description (qp-pool's text form), or `-` to read it from stdin up to
    /// a line `end`.
    #[arg(long)]
    pub spec: String,
    /// Listen here (port 0: any free port) and print `addr <ip:port>` before reading the
    /// description, which must then give this node that address. Without it the node
    /// listens at its address in the description.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// The GID index of the QPs (RoCE: the one that holds the host's address).
    #[arg(long)]
    pub gid_index: Option<u8>,
    /// How the replica's thread spends idle turns: `cooperative` yields the core (several
    /// nodes on a small machine), `napping` sleeps `--nap-us` (the cores are needed by a
    /// kernel's software NIC, as rxe's), `busy-poll` keeps it.
    #[arg(long, value_enum, default_value_t = PacingKind::Cooperative)]
    pub pacing: PacingKind,
    /// Idle turns before a cooperative thread yields or a napping one sleeps.
    #[arg(long, default_value_t = 64)]
    pub spins: u32,
    /// How long a napping thread sleeps when idle, in microseconds.
    #[arg(long, default_value_t = 100)]
    pub nap_us: u64,
    /// The core a busy-polling thread is pinned to.
    #[arg(long)]
    pub core: Option<usize>,
    /// `initial`: starts with the group, empty. `rejoin`: replaces a replica that crashed;
    /// it does not count in quorums until a leader brought it up to date.
    #[arg(long, value_enum, default_value_t = StartKind::Initial)]
    pub start: StartKind,
    /// The clock: `auto` (TSC where it can be trusted), `os`, `tsc`.
    #[arg(long, value_enum, default_value_t = ClockKindArg::Auto)]
    pub clock: ClockKindArg,

    /// Run a client that proposes unique commands through this replica.
    #[arg(long)]
    pub client: bool,
    /// Pause of the client between two acknowledged commands, in microseconds.
    #[arg(long, default_value_t = 0)]
    pub client_pause_us: u64,
    /// Wait of the client before proposing again to a replica that does not lead, in
    /// microseconds.
    #[arg(long, default_value_t = 1_000)]
    pub client_retry_us: u64,

    /// Slots in the log ring.
    #[arg(long, default_value_t = 1024)]
    pub capacity: u64,
    /// Bytes per slot (a multiple of 64).
    #[arg(long, default_value_t = 512)]
    pub slot_bytes: usize,
    /// Largest state-machine snapshot, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    pub snapshot_bytes: usize,
    /// Entries in flight to a follower at most.
    #[arg(long, default_value_t = 32)]
    pub pipeline: u64,
    /// Commands in one entry at most.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,

    /// A peer's heartbeat is read this often, in microseconds.
    #[arg(long, default_value_t = 1_000)]
    pub heartbeat_period_us: u64,
    /// A heartbeat read not completed after this long counts as a miss, in microseconds.
    #[arg(long, default_value_t = 10_000)]
    pub heartbeat_timeout_us: u64,
    /// Heartbeat misses in a row (unchanged, failed or late) that make a peer suspected.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub suspect_after: u32,
    /// A candidate asks again for permission after this long, in microseconds.
    #[arg(long, default_value_t = 2_000)]
    pub permission_retry_us: u64,
    /// A replica looks at its inbox this often, in microseconds.
    #[arg(long, default_value_t = 2)]
    pub inbox_us: u64,
    /// An idle leader writes its commit index to followers after this long, in microseconds.
    #[arg(long, default_value_t = 2)]
    pub idle_commit_us: u64,
    /// A leader reads its followers' status this often, in microseconds.
    #[arg(long, default_value_t = 50)]
    pub status_read_us: u64,
    /// The QPs' ACK timeout, as the verbs exponent (4.096 µs × 2^n; 0 = infinite).
    #[arg(long)]
    pub ack_timeout: Option<u8>,
    /// How long bootstrap waits for late peers, in seconds.
    #[arg(long, default_value_t = 30)]
    pub bootstrap_deadline_s: u64,

    /// Membership views (uKharon) decide who leads: the lowest-id consensus member of an
    /// active view; a failed replica is removed by a view change, and its replacement
    /// (`--start rejoin`) admitted back and promoted to a voter once caught up. Every
    /// replica of a group must say the same.
    #[arg(long)]
    pub views: bool,
    /// The Active(view) lease Δ, in microseconds (with `--views`).
    #[arg(long, default_value_t = 20)]
    pub lease_us: u64,
    /// How often the membership reads the acceptors unprompted, in microseconds (with
    /// `--views`).
    #[arg(long, default_value_t = 10)]
    pub view_scan_us: u64,
}

/// `--pacing`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PacingKind {
    /// Yield the core when idle.
    Cooperative,
    /// Sleep when idle.
    Napping,
    /// Keep the core.
    BusyPoll,
}

/// `--start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StartKind {
    /// With the group.
    Initial,
    /// Replacing a crashed replica.
    Rejoin,
}

/// `--clock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClockKindArg {
    /// The TSC where it can be trusted, else the OS clock.
    Auto,
    /// The OS monotonic clock.
    Os,
    /// The TSC or an error.
    Tsc,
}

const US: u64 = 1_000;

impl Args {
    /// The replica's sizes and timings.
    pub fn mu_config(&self) -> MuConfig {
        MuConfig {
            capacity: self.capacity,
            slot_bytes: self.slot_bytes,
            snapshot_bytes: self.snapshot_bytes,
            pipeline: self.pipeline,
            batch_commands: self.batch,
            permission_retry_ns: self.permission_retry_us * US,
            status_read_period_ns: self.status_read_us * US,
            inbox_period_ns: self.inbox_us * US,
            idle_commit_ns: self.idle_commit_us * US,
            start: match self.start {
                StartKind::Initial => Start::Initial,
                StartKind::Rejoin => Start::Rejoin,
            },
            ..MuConfig::default()
        }
    }

    /// The failure detectors: Mu's score (+3 on a change, −1 on a miss), scaled so that
    /// `suspect_after` misses in a row from a full score make a suspicion.
    pub fn detectors(&self) -> DetectorConfig {
        let suspect_below = 3;
        let score_max = suspect_below + self.suspect_after - 1;
        let score =
            ScoreConfig { score_up: 3, score_down: 1, score_max, suspect_below, trust_at: score_max.min(5) };
        let period_ns = self.heartbeat_period_us.max(1) * US;
        DetectorConfig {
            reader: ReaderConfig { period_ns, timeout_ns: self.heartbeat_timeout_us * US },
            score,
            // Several bumps per read: a reader never sees the same value from a live node.
            bump_period_ns: (period_ns / 4).max(1),
            ..DetectorConfig::default()
        }
    }

    /// The node's connection options, set on `node`.
    pub fn connection(&self, mut node: NodeConfig) -> NodeConfig {
        node.qp.gid_index = self.gid_index.or(node.qp.gid_index);
        if let Some(timeout) = self.ack_timeout {
            node.connect.rts.timeout = timeout;
        }
        node.deadline(Duration::from_secs(self.bootstrap_deadline_s))
    }

    /// The membership of a group of `nodes` (every one an acceptor and a consensus member),
    /// with `--views`: a lease of `--lease-us`, renewed with half of it left, retried after
    /// a quarter (as `usec-kv --views`).
    pub fn views(&self, nodes: &[NodeId]) -> Result<Option<ViewsConfig>> {
        if !self.views {
            return Ok(None);
        }
        if self.lease_us == 0 || self.view_scan_us == 0 {
            bail!("--lease-us and --view-scan-us must be positive");
        }
        let mut views = ViewsConfig::for_group(nodes)?;
        let lease_ns = self.lease_us * US;
        views.lease = ActiveConfig {
            lease_ns,
            renew_before_ns: lease_ns / 2,
            retry_after_ns: lease_ns / 4,
            ..views.lease
        };
        views.scan_period_ns = self.view_scan_us * US;
        Ok(Some(views))
    }

    /// How the replica's thread runs.
    pub fn pacing(&self) -> Pacing {
        match self.pacing {
            PacingKind::Cooperative => Pacing::Cooperative { spins: self.spins },
            PacingKind::Napping => Pacing::Napping { spins: self.spins, nap_ns: self.nap_us * US },
            PacingKind::BusyPoll => Pacing::BusyPoll { core: self.core },
        }
    }

    /// How the clock is chosen.
    pub fn clock(&self) -> CalibrationOptions {
        let preference = match self.clock {
            ClockKindArg::Auto => ClockPreference::Auto,
            ClockKindArg::Os => ClockPreference::Os,
            ClockKindArg::Tsc => ClockPreference::Tsc,
        };
        CalibrationOptions { preference, ..CalibrationOptions::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let mut argv = vec!["usec-mu-node", "--device", "soft:x", "--id", "1", "--spec", "-"];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv).unwrap()
    }

    #[test]
    fn suspicion_takes_the_misses_asked_for() {
        for misses in [1, 4, 10] {
            let detectors = parse(&["--suspect-after", &misses.to_string()]).detectors();
            detectors.score.validate().unwrap();
            assert_eq!(detectors.score.misses_to_suspect(), misses);
        }
        assert!(Args::try_parse_from([
            "usec-mu-node",
            "--device",
            "soft:x",
            "--id",
            "1",
            "--spec",
            "-",
            "--suspect-after",
            "0"
        ])
        .is_err());
    }

    #[test]
    fn the_defaults_make_a_valid_replica() {
        let args = parse(&[]);
        args.mu_config().check().unwrap();
        assert_eq!(args.pacing(), Pacing::Cooperative { spins: 64 });
        assert_eq!(args.mu_config().start, Start::Initial);
        assert_eq!(parse(&["--start", "rejoin"]).mu_config().start, Start::Rejoin);
    }
}
