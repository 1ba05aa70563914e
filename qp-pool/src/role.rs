//! QP roles: every peer gets one RC QP per role (replication, election, heartbeat, …), each
//! role with the rights peers get on its QPs, its queue sizes, and a completion queue of
//! its own.

use std::fmt;

use usec_verbs::{AccessFlags, QpCaps};

/// The most roles a node may have.
pub const MAX_ROLES: usize = 16;

/// A role: what its QPs let peers do, and how big its queues are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleSpec {
    /// Its name, the same on every node (1-64 characters of `[A-Za-z0-9._-]`).
    pub name: String,
    /// What peers may do through this role's QPs (the responder rights they start with;
    /// [`Cluster::grant_write`](crate::Cluster::grant_write) and
    /// [`Cluster::revoke_write`](crate::Cluster::revoke_write) toggle remote write per peer).
    pub access: AccessFlags,
    /// Queue sizes of each of its QPs.
    pub caps: QpCaps,
    /// Entries of its completion queue, which all its QPs (one per peer) share.
    pub cq_depth: u32,
}

impl RoleSpec {
    /// A role with default queue sizes and a 1024-entry completion queue.
    pub fn new(name: &str, access: AccessFlags) -> RoleSpec {
        RoleSpec { name: name.to_string(), access, caps: QpCaps::default(), cq_depth: 1024 }
    }

    /// The same role with other queue sizes.
    pub fn with_caps(mut self, caps: QpCaps) -> RoleSpec {
        self.caps = caps;
        self
    }

    /// The same role with another completion-queue depth.
    pub fn with_cq_depth(mut self, cq_depth: u32) -> RoleSpec {
        self.cq_depth = cq_depth;
        self
    }
}

/// A role of a cluster, by its position in the node's role list (the same on every node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleId(pub(crate) u8);

impl RoleId {
    /// Its position in the role list.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

impl fmt::Display for RoleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "role #{}", self.0)
    }
}
