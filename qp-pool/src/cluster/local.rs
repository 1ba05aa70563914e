//! A node's own verbs objects: its PD, one CQ per role, one QP per role per peer, its
//! registered regions, and the rights each peer has on each role.
//!
//! Nodes that join after bootstrap need QPs too, and a QP is made on its role's CQ, which a
//! [`Poller`](crate::Poller) takes away once the cluster runs. So QPs for them are made
//! while the CQs are still here: as many as a joining node needs during bootstrap, and
//! [`NodeConfig::spare_peers`] sets of spares when it finishes. A node that joins takes a
//! set ([`LocalNode::attach`]); a removed one gives its set back in ERROR
//! ([`LocalNode::detach`]), to be reset when another node takes it. QPs are never
//! destroyed while the cluster lives: on a NIC, destroying a QP in ERROR may lose the
//! flushed completions of its requests, which callers wait for.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, VecDeque};

use usec_regions::RemoteRegion;
use usec_verbs::{
    AccessFlags, CompletionQueue, ConnectOptions, Context, Endpoint, MemoryRegion, ProtectionDomain,
    QpOptions, QpState, QueuePair,
};

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::role::{RoleId, RoleSpec};
use crate::spec::NodeId;
use crate::wire::{Offer, RegionOffer, RoleOffer};

/// The verbs objects of one node.
#[derive(Debug)]
pub(crate) struct LocalNode {
    pub(crate) context: Context,
    pub(crate) pd: ProtectionDomain,
    pub(crate) roles: Vec<RoleSpec>,
    /// One per role; `None` once a poller took it.
    pub(crate) cqs: Vec<Option<CompletionQueue>>,
    pub(crate) regions: BTreeMap<String, MemoryRegion>,
    /// Per peer, one QP per role.
    pub(crate) qps: BTreeMap<NodeId, Vec<QueuePair>>,
    /// Per peer, the rights it has (or will have once reconnected) on each role's QP.
    pub(crate) access: BTreeMap<NodeId, Vec<AccessFlags>>,
    pub(crate) connect: ConnectOptions,
    /// Sets of QPs (one per role) for nodes that join: fresh ones first, then those given
    /// back by removed nodes, oldest first.
    spare: VecDeque<Vec<QueuePair>>,
    /// Peers with grants, each in its own protection domain.
    pub(crate) isolated: BTreeMap<NodeId, IsolatedPeer>,
    pub(crate) qp_options: QpOptions,
}

/// A peer with grants: its protection domain, its grants' MRs, and its QP set while the
/// peer does not hold it.
#[derive(Debug)]
pub(crate) struct IsolatedPeer {
    pd: ProtectionDomain,
    pub(crate) grants: BTreeMap<String, MemoryRegion>,
    parked: Option<Vec<QueuePair>>,
}

impl LocalNode {
    /// Allocates everything `config` asks for, with QPs in RESET for `peers`.
    pub(crate) fn create(context: &Context, config: &NodeConfig, peers: &[NodeId]) -> Result<LocalNode> {
        config.check()?;
        let pd = context.alloc_pd().map_err(Error::verbs("allocating the protection domain"))?;
        let mut cqs = Vec::with_capacity(config.roles.len());
        for role in &config.roles {
            let cq = context
                .create_cq(role.cq_depth)
                .map_err(Error::verbs(format!("creating the CQ of role {:?}", role.name)))?;
            cqs.push(cq);
        }
        let mut regions = BTreeMap::new();
        for region in &config.regions {
            let mr = pd
                .register(&region.region, region.access)
                .map_err(Error::verbs(format!("registering region {:?}", region.name)))?;
            regions.insert(region.name.clone(), mr);
        }
        let mut isolated: BTreeMap<NodeId, IsolatedPeer> = BTreeMap::new();
        for grant in &config.grants {
            let peer = match isolated.entry(grant.peer) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let context_of = format!("allocating the protection domain of node {}", grant.peer);
                    let pd = context.alloc_pd().map_err(Error::verbs(context_of))?;
                    entry.insert(IsolatedPeer { pd, grants: BTreeMap::new(), parked: None })
                }
            };
            let mr = peer.pd.register_range(&grant.region, grant.offset, grant.len, grant.access).map_err(
                Error::verbs(format!("registering grant {:?} to node {}", grant.name, grant.peer)),
            )?;
            peer.grants.insert(grant.name.clone(), mr);
        }
        let mut local = LocalNode {
            context: context.clone(),
            pd,
            roles: config.roles.clone(),
            cqs: cqs.into_iter().map(Some).collect(),
            regions,
            qps: BTreeMap::new(),
            access: BTreeMap::new(),
            connect: config.connect,
            spare: VecDeque::new(),
            isolated: BTreeMap::new(),
            qp_options: config.qp,
        };
        for (peer, mut isolated_peer) in isolated {
            let set = local.create_set(&isolated_peer.pd).map_err(|error| error.for_peer(peer))?;
            isolated_peer.parked = Some(set);
            local.isolated.insert(peer, isolated_peer);
        }
        for &peer in peers {
            local.attach(peer)?;
        }
        Ok(local)
    }

    /// One QP per role in `pd`, in RESET, on the role CQs (which must all still be here).
    fn create_set(&self, pd: &ProtectionDomain) -> std::result::Result<Vec<QueuePair>, QpCreation> {
        let mut set = Vec::with_capacity(self.roles.len());
        for (role, cq) in self.roles.iter().zip(&self.cqs) {
            let Some(cq) = cq else { return Err(QpCreation::CqTaken) };
            let options = QpOptions { caps: role.caps, ..self.qp_options };
            let qp = pd
                .create_qp(cq, cq, &options)
                .map_err(|source| QpCreation::Verbs { role: role.name.clone(), source })?;
            set.push(qp);
        }
        Ok(set)
    }

    /// Hands `set` to `peer`, with its roles' default rights.
    fn give(&mut self, peer: NodeId, set: Vec<QueuePair>) {
        self.qps.insert(peer, set);
        self.access.insert(peer, self.roles.iter().map(|role| role.access).collect());
    }

    /// Makes sure `peer` has its QPs: a spare set, else a new one while the CQs are still
    /// here; returns the numbers of the QPs it was given (none if it had them).
    pub(crate) fn attach(&mut self, peer: NodeId) -> Result<Vec<u32>> {
        if self.qps.contains_key(&peer) {
            return Ok(Vec::new());
        }
        let set = if let Some(isolated) = self.isolated.get_mut(&peer) {
            isolated.parked.take().expect("an isolated peer without QPs has its set parked")
        } else if let Some(set) = self.spare.pop_front() {
            set
        } else {
            self.create_set(&self.pd).map_err(|error| error.for_peer(peer))?
        };
        let numbers = set.iter().map(QueuePair::qp_num).collect();
        self.give(peer, set);
        Ok(numbers)
    }

    /// Takes `peer`'s QPs away (moved to ERROR first, so that its requests still
    /// outstanding complete, flushed) and keeps them as a spare set (an isolated peer's go
    /// back to it); forgets its rights.
    /// Returns the numbers of the QPs taken (none if it had none).
    pub(crate) fn detach(&mut self, peer: NodeId) -> Vec<u32> {
        let Some(mut set) = self.qps.remove(&peer) else { return Vec::new() };
        self.access.remove(&peer);
        for qp in &mut set {
            // This fails only if the device is gone; the QP is kept anyway, and reset
            // before anyone uses it again.
            if !matches!(qp.state(), QpState::Reset | QpState::Error) {
                let _ = qp.modify_to_error();
            }
        }
        let numbers = set.iter().map(QueuePair::qp_num).collect();
        match self.isolated.get_mut(&peer) {
            Some(isolated) => isolated.parked = Some(set),
            None => self.spare.push_back(set),
        }
        numbers
    }

    /// Makes spare sets until there are `count` (the CQs must still be here).
    pub(crate) fn add_spares(&mut self, count: usize) -> Result<()> {
        while self.spare.len() < count {
            let set = self.create_set(&self.pd).map_err(|error| match error {
                QpCreation::CqTaken => unreachable!("spares are made before any poller exists"),
                QpCreation::Verbs { role, source } => Error::Verbs {
                    context: format!("creating a spare {role:?} QP for nodes that join"),
                    source,
                },
            })?;
            self.spare.push_back(set);
        }
        Ok(())
    }

    /// How many nodes may still join without a QP being made.
    pub(crate) fn spares(&self) -> usize {
        self.spare.len()
    }

    /// The role called `name`.
    pub(crate) fn role_by_name(&self, name: &str) -> Option<RoleId> {
        self.roles.iter().position(|role| role.name == name).map(|index| RoleId(index as u8))
    }

    /// The name of `role` (which must be ours).
    pub(crate) fn role_name(&self, role: RoleId) -> &str {
        &self.roles[role.index()].name
    }

    /// Checks that `role` is one of ours.
    pub(crate) fn check_role(&self, role: RoleId) -> Result<()> {
        if role.index() < self.roles.len() {
            return Ok(());
        }
        Err(Error::UnknownRole(role.to_string()))
    }

    /// The QP of `role` to `peer`.
    pub(crate) fn qp(&self, peer: NodeId, role: RoleId) -> Result<&QueuePair> {
        self.check_role(role)?;
        Ok(&self.qps.get(&peer).ok_or(Error::UnknownPeer(peer))?[role.index()])
    }

    /// The QP of `role` to `peer`, to post on or change.
    pub(crate) fn qp_mut(&mut self, peer: NodeId, role: RoleId) -> Result<&mut QueuePair> {
        self.check_role(role)?;
        Ok(&mut self.qps.get_mut(&peer).ok_or(Error::UnknownPeer(peer))?[role.index()])
    }

    /// Moves the QP to RESET (a fresh PSN, so the peer must learn the endpoint anew) unless
    /// it is there already, and returns its endpoint.
    pub(crate) fn fresh_endpoint(&mut self, peer: NodeId, role: RoleId) -> Result<RoleOffer> {
        let name = self.role_name(role).to_string();
        let qp = self.qp_mut(peer, role)?;
        if qp.state() != QpState::Reset {
            qp.reset().map_err(Error::verbs(format!("resetting the {name:?} QP to node {peer}")))?;
        }
        Ok(RoleOffer { name, endpoint: qp.endpoint().to_bytes() })
    }

    /// Connects the QP of `role` to `peer`'s endpoint, with the rights `peer` has on it.
    pub(crate) fn connect_qp(&mut self, peer: NodeId, role: RoleId, endpoint: &[u8]) -> Result<()> {
        let name = self.role_name(role).to_string();
        let endpoint = Endpoint::from_bytes(endpoint)
            .map_err(Error::verbs(format!("decoding node {peer}'s endpoint for role {name:?}")))?;
        let mut options = self.connect;
        options.init.access = self.access[&peer][role.index()];
        self.qp_mut(peer, role)?
            .connect(&endpoint, &options)
            .map_err(Error::verbs(format!("connecting the {name:?} QP to node {peer}")))
    }

    /// Moves every QP to `peer` that is connected or connecting to ERROR, so that the
    /// requests still outstanding on them complete (flushed) before a reset would drop
    /// them without a trace.
    pub(crate) fn flush(&mut self, peer: NodeId) -> Result<()> {
        let names: Vec<String> = self.roles.iter().map(|role| role.name.clone()).collect();
        let qps = self.qps.get_mut(&peer).ok_or(Error::UnknownPeer(peer))?;
        for (qp, name) in qps.iter_mut().zip(names) {
            if !matches!(qp.state(), QpState::Reset | QpState::Error) {
                qp.modify_to_error()
                    .map_err(Error::verbs(format!("flushing the {name:?} QP to node {peer}")))?;
            }
        }
        Ok(())
    }

    /// Our offer to `peer`: fresh endpoints of its QPs, and our region descriptors.
    pub(crate) fn offer_for(&mut self, peer: NodeId) -> Result<Offer> {
        let mut roles = Vec::with_capacity(self.roles.len());
        for index in 0..self.roles.len() {
            roles.push(self.fresh_endpoint(peer, RoleId(index as u8))?);
        }
        Ok(Offer { roles, regions: self.region_offers(peer) })
    }

    /// Our region descriptors for `peer`: its grants if it has any, else the shared
    /// regions.
    pub(crate) fn region_offers(&self, peer: NodeId) -> Vec<RegionOffer> {
        let regions = self.isolated.get(&peer).map_or(&self.regions, |isolated| &isolated.grants);
        regions
            .iter()
            .map(|(name, mr)| RegionOffer {
                name: name.clone(),
                descriptor: mr.remote_region().to_bytes().to_vec(),
            })
            .collect()
    }

    /// Connects our QPs to `peer`'s offer; returns its regions.
    pub(crate) fn accept_offer(
        &mut self,
        peer: NodeId,
        offer: &Offer,
    ) -> Result<BTreeMap<String, RemoteRegion>> {
        let theirs: Vec<&str> = offer.roles.iter().map(|role| role.name.as_str()).collect();
        let ours: Vec<&str> = self.roles.iter().map(|role| role.name.as_str()).collect();
        if theirs != ours {
            return Err(Error::Protocol {
                peer: format!("node {peer}"),
                reason: format!(
                    "offers roles {theirs:?}, this node has {ours:?} (every node lists the same roles in the same order)"
                ),
            });
        }
        let regions = decode_regions(peer, &offer.regions)?;
        for (index, role) in offer.roles.iter().enumerate() {
            self.connect_qp(peer, RoleId(index as u8), &role.endpoint)?;
        }
        Ok(regions)
    }
}

/// Why a set of QPs could not be made.
#[derive(Debug)]
enum QpCreation {
    /// A role's CQ belongs to a poller: no QP can be made on it any more.
    CqTaken,
    /// The device refused.
    Verbs { role: String, source: usec_verbs::Error },
}

impl QpCreation {
    fn for_peer(self, peer: NodeId) -> Error {
        match self {
            QpCreation::CqTaken => Error::JoinRefused {
                node: peer,
                reason: "no QPs left for a node that joins (see NodeConfig::spare_peers)".into(),
            },
            QpCreation::Verbs { role, source } => {
                Error::Verbs { context: format!("creating the {role:?} QP for node {peer}"), source }
            }
        }
    }
}

/// Decodes `peer`'s region descriptors.
pub(crate) fn decode_regions(peer: NodeId, offers: &[RegionOffer]) -> Result<BTreeMap<String, RemoteRegion>> {
    let mut regions = BTreeMap::new();
    for offer in offers {
        let descriptor = RemoteRegion::from_bytes(&offer.descriptor).map_err(|source| Error::Region {
            context: format!("decoding node {peer}'s descriptor of region {:?}", offer.name),
            source,
        })?;
        if regions.insert(offer.name.clone(), descriptor).is_some() {
            return Err(Error::Protocol {
                peer: format!("node {peer}"),
                reason: format!("offers region {:?} twice", offer.name),
            });
        }
    }
    Ok(regions)
}
