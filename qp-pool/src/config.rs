//! What a node is started with: the cluster description, its roles, its regions.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use usec_verbs::{AccessFlags, ConnectOptions, QpOptions, Region};

use crate::error::{Error, Result};
use crate::role::{RoleSpec, MAX_ROLES};
use crate::spec::{check_name, ClusterSpec, NodeId};
use crate::wire::{Entry, MAX_REGIONS};

/// Spare QP sets a node makes by default for nodes that join after it started.
pub const DEFAULT_SPARE_PEERS: usize = 2;

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

/// A region offered to one peer only, registered in a protection domain of that peer's own.
///
/// RDMA enforces rights per memory registration, and an operation arriving on a QP can
/// only reach MRs of the QP's protection domain. A node that gives a peer any grant
/// therefore makes that peer's QPs in a protection domain of their own, registers the
/// peer's grants there (and nothing else), and offers that peer its grants instead of the
/// node's shared regions: through its QPs the peer reaches exactly its grants, with
/// exactly their rights, whatever rkey it presents. Two grants may cover the same memory
/// with different rights (a slice writable by one peer, the whole readable by all): the
/// single-writer registers of uBFT's memory nodes are built so.
#[derive(Clone, Debug)]
pub struct GrantSpec {
    /// The peer it is offered to.
    pub peer: NodeId,
    /// Its name, as that peer looks it up (1-64 characters of `[A-Za-z0-9._-]`; distinct
    /// among the peer's grants).
    pub name: String,
    /// The memory.
    pub region: Arc<Region>,
    /// Where the registration starts in `region`.
    pub offset: usize,
    /// How many bytes it covers.
    pub len: usize,
    /// The rights of the registration.
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
    /// The regions this node offers (each node may offer different ones) to every peer
    /// that has no grant.
    pub regions: Vec<RegionSpec>,
    /// Regions offered to one peer each, in a protection domain of that peer's own
    /// ([`NodeConfig::grant`]).
    pub grants: Vec<GrantSpec>,
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
    /// How the node enters the cluster: with the others of the description, restarted
    /// into it ([`NodeConfig::rejoin`]), or joining it from members' addresses
    /// ([`NodeConfig::join`]).
    pub entry: Entry,
    /// Members' control addresses to join through ([`NodeConfig::join`]).
    pub contacts: Vec<SocketAddr>,
    /// How many nodes may join after this one started without a QP being made for them
    /// ([`NodeConfig::spare_peers`]).
    pub spare_peers: usize,
}

impl NodeConfig {
    /// Node `me` of `spec`, with no roles or regions yet, default connection options, a
    /// 30-second bootstrap deadline, as incarnation the realtime clock now, starting with the
    /// others of the description, with QPs to spare for [`DEFAULT_SPARE_PEERS`] nodes that
    /// join later.
    pub fn new(spec: ClusterSpec, me: NodeId) -> NodeConfig {
        NodeConfig {
            spec,
            me,
            roles: Vec::new(),
            regions: Vec::new(),
            grants: Vec::new(),
            connect: ConnectOptions::default(),
            qp: QpOptions::default(),
            deadline: Duration::from_secs(30),
            incarnation: realtime_incarnation(),
            entry: Entry::Start,
            contacts: Vec::new(),
            spare_peers: DEFAULT_SPARE_PEERS,
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

    /// Offers `len` bytes of `region` from `offset` to `peer` alone, as `name`, with
    /// `access`; see [`GrantSpec`]. A peer with grants reaches nothing else of this node:
    /// not its shared regions, not another peer's grants.
    pub fn grant(
        mut self,
        peer: NodeId,
        name: &str,
        region: &Arc<Region>,
        offset: usize,
        len: usize,
        access: AccessFlags,
    ) -> NodeConfig {
        self.grants.push(GrantSpec {
            peer,
            name: name.to_string(),
            region: Arc::clone(region),
            offset,
            len,
            access,
        });
        self
    }

    /// The grants to `peer`.
    pub(crate) fn grants_to(&self, peer: NodeId) -> impl Iterator<Item = &GrantSpec> + '_ {
        self.grants.iter().filter(move |grant| grant.peer == peer)
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

    /// Joins a cluster that runs already, as a restarted node of the description does:
    /// bootstrap dials every peer (lower ids too: they finished dialing long ago), each of
    /// which takes the connection as a newer incarnation of this node, and tells it the
    /// members it knows, so that it also connects to nodes that joined since the
    /// description was written. It finishes as soon as every member it knows of accepted
    /// it; at the deadline it finishes with those it reached (at least one; the others are
    /// reported lost, and may connect later when they restart themselves), and fails only
    /// if it reached none. `false` starts with the others of the description.
    pub fn rejoin(mut self, rejoin: bool) -> NodeConfig {
        self.entry = if rejoin { Entry::Rejoin } else { Entry::Start };
        self
    }

    /// Joins a running cluster knowing only `contacts`, some members' control addresses:
    /// a new node (an id the description never listed), or a newer process of any node.
    /// The description needs only the cluster's name, the run, the key if the cluster has
    /// one, and this node's own control address (the addresses of any other nodes it lists
    /// are contacts too).
    ///
    /// Bootstrap dials the contacts; each member that answers proves who it is (with a
    /// cluster key, that it holds the key), admits this node, and sends the members it
    /// knows, over the same authenticated connection, before its offer. The node dials each
    /// member it learns of, and learns from each in turn, until it is connected to every
    /// member it knows of; then it is done, and every member reports
    /// [`ControlEvent::Joined`](crate::ControlEvent::Joined) (or
    /// [`Rejoined`](crate::ControlEvent::Rejoined) where it replaces a process of its id). At
    /// the deadline it finishes with the members it reached, and fails only if it reached
    /// none ([`Error::JoinFailed`](crate::Error::JoinFailed), naming each contact).
    pub fn join(mut self, contacts: impl IntoIterator<Item = SocketAddr>) -> NodeConfig {
        self.entry = Entry::Join;
        self.contacts = contacts.into_iter().collect();
        self
    }

    /// How many nodes may join after this one started without a QP being made for them.
    ///
    /// A QP is made on its role's CQ, which goes to a [`Poller`](crate::Poller) once the
    /// cluster runs; so a running node cannot make QPs any more, and keeps spare sets (a QP
    /// per role each) made when its bootstrap finished. A node that joins takes one; a peer
    /// removed ([`Cluster::remove_peer`](crate::Cluster::remove_peer)) gives its own back.
    /// With none left, a node that joins is refused, saying so.
    pub fn spare_peers(mut self, count: usize) -> NodeConfig {
        self.spare_peers = count;
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
        if self.entry == Entry::Join && self.contacts().is_empty() {
            return Err(Error::config(
                "a node that joins a running cluster needs at least one member's control address",
            ));
        }
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
        self.check_grants()
    }

    fn check_grants(&self) -> Result<()> {
        let peers: BTreeSet<NodeId> = self.grants.iter().map(|grant| grant.peer).collect();
        for peer in peers {
            if peer == self.me {
                return Err(Error::config(format!("node {peer} cannot grant a region to itself")));
            }
            let mut names = BTreeSet::new();
            for grant in self.grants_to(peer) {
                check_name("grant", &grant.name, b"").map_err(Error::Config)?;
                if !names.insert(grant.name.as_str()) {
                    return Err(Error::config(format!(
                        "grant {:?} to node {peer} is listed twice",
                        grant.name
                    )));
                }
                let fits = grant.offset.checked_add(grant.len).is_some_and(|end| end <= grant.region.len());
                if grant.len == 0 || !fits {
                    return Err(Error::config(format!(
                        "grant {:?} to node {peer}: {}+{} is not a non-empty range of its {}-byte region",
                        grant.name,
                        grant.offset,
                        grant.len,
                        grant.region.len()
                    )));
                }
            }
            if names.len() > MAX_REGIONS {
                return Err(Error::config(format!(
                    "{} grants to node {peer}, at most {MAX_REGIONS}",
                    names.len()
                )));
            }
        }
        Ok(())
    }
}

impl NodeConfig {
    /// The addresses a joining node dials first: its contacts, and the addresses of the
    /// other nodes its description lists, each once, in that order.
    pub(crate) fn contacts(&self) -> Vec<SocketAddr> {
        let listed = self.spec.nodes.iter().filter(|(&node, _)| node != self.me).map(|(_, &addr)| addr);
        let mut contacts: Vec<SocketAddr> = Vec::new();
        for addr in self.contacts.iter().copied().chain(listed) {
            if !contacts.contains(&addr) {
                contacts.push(addr);
            }
        }
        contacts
    }
}

/// The realtime clock in nanoseconds: the default incarnation, larger for a later start.
fn realtime_incarnation() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |since| since.as_nanos() as u64).max(1)
}
