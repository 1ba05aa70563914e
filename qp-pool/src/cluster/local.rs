//! A node's own verbs objects: its PD, one CQ per role, one QP per role per peer, its
//! registered regions, and the rights each peer has on each role.

use std::collections::BTreeMap;

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
}

impl LocalNode {
    /// Allocates everything `config` asks for, QPs in RESET.
    pub(crate) fn create(context: &Context, config: &NodeConfig) -> Result<LocalNode> {
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
        let (mut qps, mut access) = (BTreeMap::new(), BTreeMap::new());
        for &peer in config.spec.nodes.keys().filter(|&&node| node != config.me) {
            let mut per_role = Vec::with_capacity(config.roles.len());
            for (role, cq) in config.roles.iter().zip(&cqs) {
                let options = QpOptions { caps: role.caps, ..config.qp };
                let qp = pd
                    .create_qp(cq, cq, &options)
                    .map_err(Error::verbs(format!("creating the {:?} QP for node {peer}", role.name)))?;
                per_role.push(qp);
            }
            qps.insert(peer, per_role);
            access.insert(peer, config.roles.iter().map(|role| role.access).collect());
        }
        Ok(LocalNode {
            context: context.clone(),
            pd,
            roles: config.roles.clone(),
            cqs: cqs.into_iter().map(Some).collect(),
            regions,
            qps,
            access,
            connect: config.connect,
        })
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
        Ok(Offer { roles, regions: self.region_offers() })
    }

    /// Our region descriptors.
    pub(crate) fn region_offers(&self) -> Vec<RegionOffer> {
        self.regions
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
