//! What a node is started with: the cluster description, its roles, its regions.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

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
}

impl NodeConfig {
    /// Node `me` of `spec`, with no roles or regions yet, default connection options and a
    /// 30-second bootstrap deadline.
    pub fn new(spec: ClusterSpec, me: NodeId) -> NodeConfig {
        NodeConfig {
            spec,
            me,
            roles: Vec::new(),
            regions: Vec::new(),
            connect: ConnectOptions::default(),
            qp: QpOptions::default(),
            deadline: Duration::from_secs(30),
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
