//! What a node is started with: the cluster description, its roles, its regions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use usec_verbs::{AccessFlags, ConnectOptions, QpOptions, Region};

use crate::error::{Error, Result};
use crate::role::{RoleSpec, MAX_ROLES};
use crate::spec::{check_name, ClusterSpec, NodeId};
use crate::wire::MAX_REGIONS;

/// A region the node registers at bootstrap and offers to every peer by name.
#[derive(Clone, Debug)]
pub struct RegionSpec {
    /// Its name (1-64 characters of `[A-Za-z0-9._-]`).
    pub name: String,
    /// The memory.
    pub region: Arc<Region>,
    /// The rights of the registration (an MR's rights apply to every peer; per-peer
    /// rights live on the role QPs).
    pub access: AccessFlags,
}

/// Everything a node needs to join the cluster.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Who is in the cluster.
    pub spec: ClusterSpec,
    /// This node.
    pub me: NodeId,
    /// The roles, in the same order on every node.
    pub roles: Vec<RoleSpec>,
    /// The regions this node offers (each node may offer different ones).
    pub regions: Vec<RegionSpec>,
    /// How QPs are connected (the INIT access is each role's, per peer).
    pub connect: ConnectOptions,
    /// Port and GID index of the QPs (their sizes are each role's).
    pub qp: QpOptions,
    /// How long bootstrap waits for late peers before it gives up.
    pub deadline: Duration,
    /// Which process of this node this is. A restarted node must present a higher
    /// incarnation than the process it replaces: peers take a higher one as a restart that
    /// supersedes the old process, and refuse a lower one as stale. Defaults to the
    /// realtime clock in nanoseconds when the config was made ([`NodeConfig::incarnation`]).
    pub incarnation: u64,
    /// Whether the node joins a cluster that runs already (a restarted node): it dials
    /// every peer, and may finish with some of them missing ([`NodeConfig::rejoin`]).
    pub rejoin: bool,
}

impl NodeConfig {
    /// Node `me` of `spec`, with no roles or regions yet, default connection options, a
    /// 30-second bootstrap deadline, and as incarnation the realtime clock now.
    pub fn new(spec: ClusterSpec, me: NodeId) -> NodeConfig {
        NodeConfig {
            spec,
            me,
            roles: Vec::new(),
            regions: Vec::new(),
            connect: ConnectOptions::default(),
            qp: QpOptions::default(),
            deadline: Duration::from_secs(30),
            incarnation: realtime_incarnation(),
            rejoin: false,
        }
    }

    /// Adds a role.
    pub fn role(mut self, role: RoleSpec) -> NodeConfig {
        self.roles.push(role);
        self
    }

    /// Adds a region.
    pub fn region(mut self, name: &str, region: &Arc<Region>, access: AccessFlags) -> NodeConfig {
        self.regions.push(RegionSpec { name: name.to_string(), region: Arc::clone(region), access });
        self
    }

    /// Sets the bootstrap deadline.
    pub fn deadline(mut self, deadline: Duration) -> NodeConfig {
        self.deadline = deadline;
        self
    }

    /// Sets the incarnation: which process of this node this is.
    ///
    /// A restarted node must present a higher incarnation than the process it replaces.
    /// The default, the realtime clock in nanoseconds when the config was made, is higher
    /// for every restart on one host unless its clock is stepped back by more than the
    /// time between the two starts; a launcher that keeps a counter of its own (or an epoch
    /// of the protocol above) sets it here instead, and a simulation sets it to stay
    /// deterministic.
    pub fn incarnation(mut self, incarnation: u64) -> NodeConfig {
        self.incarnation = incarnation;
        self
    }

    /// Joins a cluster that runs already, as a restarted node does: bootstrap dials every
    /// peer (lower ids too: they finished dialing long ago), each of which takes the
    /// connection as a newer incarnation of this node. It finishes as soon as every peer
    /// accepted it; at the deadline it finishes with those it reached (at least one; the
    /// others are reported lost, and may connect later when they restart themselves),
    /// and fails only if it reached none.
    pub fn rejoin(mut self, rejoin: bool) -> NodeConfig {
        self.rejoin = rejoin;
        self
    }

    /// Sets the connection options (timers, retries, MTU).
    pub fn connect_options(mut self, connect: ConnectOptions) -> NodeConfig {
        self.connect = connect;
        self
    }

    /// Checks it: `me` in the description; 1 to 16 roles and up to 64 regions, with valid,
    /// distinct names; CQs of at least one entry.
    pub fn check(&self) -> Result<()> {
        self.spec.check_member(self.me)?;
        if self.roles.is_empty() || self.roles.len() > MAX_ROLES {
            return Err(Error::config(format!(
                "{} roles given: a node needs 1 to {MAX_ROLES}",
                self.roles.len()
            )));
        }
        let mut names = BTreeSet::new();
        for role in &self.roles {
            check_name("role", &role.name, b"").map_err(Error::Config)?;
            if !names.insert(role.name.as_str()) {
                return Err(Error::config(format!("role {:?} is listed twice", role.name)));
            }
            if role.cq_depth == 0 {
                return Err(Error::config(format!("role {:?}: a CQ needs at least one entry", role.name)));
            }
        }
        if self.regions.len() > MAX_REGIONS {
            return Err(Error::config(format!(
                "{} regions given, at most {MAX_REGIONS}",
                self.regions.len()
            )));
        }
        let mut names = BTreeSet::new();
        for region in &self.regions {
            check_name("region", &region.name, b"").map_err(Error::Config)?;
            if !names.insert(region.name.as_str()) {
                return Err(Error::config(format!("region {:?} is listed twice", region.name)));
            }
        }
        Ok(())
    }
}

/// The realtime clock in nanoseconds: the default incarnation, larger for a later start.
fn realtime_incarnation() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |since| since.as_nanos() as u64).max(1)
}
