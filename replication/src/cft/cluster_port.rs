//! The [`Port`] of a Mu replica on a qp-pool [`Cluster`]: two roles (`mu-log`, whose
//! write right each replica grants to one peer at a time, and `mu-control`, always
//! writable) and two regions (`mu-log`, `mu-control`) on every node.
//!
//! [`MuNode::configure`] adds them to a node's configuration before bootstrap;
//! [`MuNode::new`] looks them up afterwards and builds the replica's [`LocalLog`];
//! [`MuNode::port`] lends a [`ClusterPort`] for one tick.

use std::collections::BTreeMap;
use std::sync::Arc;

use usec_qp_pool::{Cluster, NodeConfig, NodeId, RoleId, RoleSpec};
use usec_regions::RemoteRegion;
use usec_verbs::{AccessFlags, Payload, QpCaps, Region, RemoteAddr, SendWr, Sge};

use crate::cft::config::MuConfig;
use crate::cft::port::{Area, Channel, Place, Port, PortError, Source};
use crate::error::{Error, Result as CrateResult};
use crate::log::local::LocalLog;
use crate::log::Layout;

/// Name of the role whose QPs carry log writes.
pub const LOG_ROLE: &str = "mu-log";
/// Name of the role whose QPs carry everything else.
pub const CONTROL_ROLE: &str = "mu-control";
/// Name of the log region.
pub const LOG_REGION: &str = "mu-log";
/// Name of the control region.
pub const CONTROL_REGION: &str = "mu-control";

/// Lines of the staging ring, for WRITEs of records when the QP cannot inline them.
const STAGING_LINES: usize = 256;
const STAGING_LINE_BYTES: usize = 64;

/// What a Mu replica keeps of its cluster between ticks: roles, the peers' regions, and
/// the staging ring.
#[derive(Debug)]
pub struct MuNode {
    log_role: RoleId,
    control_role: RoleId,
    layout: Layout,
    peer_regions: BTreeMap<NodeId, [RemoteRegion; 2]>,
    staging: Arc<Region>,
    staging_next: usize,
    log: LocalLog,
    /// Per channel, the most bytes a WRITE carries inline: the QPs' caps, which every QP
    /// of a role shares (a reconnected one is made from the same role), read once rather
    /// than on every post.
    inline_max: [usize; 2],
    /// Per area, this replica's own registration, read once rather than looked up by name
    /// on every post: Mu changes rights on QPs, never on these registrations, so their
    /// keys stay as they were registered.
    local_regions: [LocalRegion; 2],
}

/// Where one of the replica's own registrations lies, and its key.
#[derive(Clone, Copy, Debug)]
struct LocalRegion {
    addr: u64,
    len: usize,
    lkey: u32,
}

impl LocalRegion {
    fn of(cluster: &Cluster, name: &str) -> CrateResult<LocalRegion> {
        let mr = cluster.region(name).map_err(Error::pool("a Mu region"))?;
        Ok(LocalRegion { addr: mr.addr(), len: mr.len(), lkey: mr.lkey() })
    }

    /// The SGE of `len` bytes at `offset`, checked to lie inside.
    fn sge(&self, offset: usize, len: usize) -> Result<Sge, String> {
        if offset.checked_add(len).is_none_or(|end| end > self.len) {
            return Err(format!("{len} bytes at {offset} overrun a registration of {} bytes", self.len));
        }
        Ok(Sge { addr: self.addr + offset as u64, len: len as u32, lkey: self.lkey })
    }
}

impl MuNode {
    /// Adds the Mu roles and regions to a node's configuration. Every node of the group
    /// calls it with the same `config`, before any other role it adds.
    pub fn configure(node: NodeConfig, config: &MuConfig) -> CrateResult<NodeConfig> {
        config.check()?;
        let layout = layout_for(&node, config);
        let log = Arc::new(Region::new(layout.log_len()).map_err(Error::region("allocating the Mu log"))?);
        let control = Arc::new(
            Region::new(layout.control_len() + STAGING_LINES * STAGING_LINE_BYTES)
                .map_err(Error::region("allocating the Mu control region"))?,
        );
        let depth = u32::try_from(config.pipeline * 2 + 64).unwrap_or(u32::MAX).min(16_384);
        let caps = QpCaps { max_send_wr: depth, max_inline_data: 256, ..QpCaps::default() };
        let remote = AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ | AccessFlags::REMOTE_WRITE;
        Ok(node
            .role(RoleSpec::new(LOG_ROLE, AccessFlags::REMOTE_READ).with_caps(caps).with_cq_depth(depth * 16))
            .role(
                RoleSpec::new(CONTROL_ROLE, AccessFlags::REMOTE_READ | AccessFlags::REMOTE_WRITE)
                    .with_caps(caps)
                    .with_cq_depth(depth * 16),
            )
            .region(LOG_REGION, &log, remote)
            .region(CONTROL_REGION, &control, remote))
    }

    /// Looks up the roles and regions in a bootstrapped cluster.
    pub fn new(cluster: &Cluster, config: &MuConfig) -> CrateResult<MuNode> {
        let log_role = cluster.role(LOG_ROLE).map_err(Error::pool("the Mu log role"))?;
        let control_role = cluster.role(CONTROL_ROLE).map_err(Error::pool("the Mu control role"))?;
        let nodes =
            cluster.peers().chain([cluster.me()]).map(|node| usize::from(node.get())).max().unwrap_or(0) + 1;
        let layout = config.layout(nodes);
        let mut peer_regions = BTreeMap::new();
        for peer in cluster.peers() {
            peer_regions.insert(peer, peer_regions_of(cluster, peer, &layout)?);
        }
        let mut inline_max = [0; 2];
        for (channel, role) in [(Channel::Log, log_role), (Channel::Control, control_role)] {
            let caps = cluster.peers().map(|peer| cluster.qp(peer, role).map(|qp| qp.caps().max_inline_data));
            let caps = caps.collect::<Result<Vec<u32>, _>>().map_err(Error::pool("the Mu QPs"))?;
            inline_max[channel.index()] = caps.into_iter().min().unwrap_or(0) as usize;
        }
        let local_regions =
            [LocalRegion::of(cluster, LOG_REGION)?, LocalRegion::of(cluster, CONTROL_REGION)?];
        let log_region = cluster.region(LOG_REGION).map_err(Error::pool("the Mu log"))?.region().clone();
        let control =
            cluster.region(CONTROL_REGION).map_err(Error::pool("the Mu control region"))?.region().clone();
        Ok(MuNode {
            log_role,
            control_role,
            layout,
            peer_regions,
            staging: control.clone(),
            staging_next: 0,
            log: LocalLog::new(layout, log_region, control),
            inline_max,
            local_regions,
        })
    }

    /// A new process of `peer` rejoined the cluster (qp-pool's `ControlEvent::Rejoined`):
    /// its regions are new, so the descriptors kept of the old process's are replaced.
    /// If the new ones do not fit this configuration the peer is left without any, and
    /// every post to it fails (the replica treats it as broken).
    pub fn refresh_peer(&mut self, cluster: &Cluster, peer: NodeId) -> CrateResult<()> {
        match peer_regions_of(cluster, peer, &self.layout) {
            Ok(regions) => {
                self.peer_regions.insert(peer, regions);
                Ok(())
            }
            Err(error) => {
                self.peer_regions.remove(&peer);
                Err(error)
            }
        }
    }

    /// The replica's own regions, to build it with.
    pub fn local_log(&self) -> LocalLog {
        self.log.clone()
    }

    /// The role of `channel`.
    pub fn role(&self, channel: Channel) -> RoleId {
        match channel {
            Channel::Log => self.log_role,
            Channel::Control => self.control_role,
        }
    }

    /// The channel of a completion that came from `role`'s CQ.
    pub fn channel_of(&self, role: RoleId) -> Option<Channel> {
        (role == self.log_role)
            .then_some(Channel::Log)
            .or((role == self.control_role).then_some(Channel::Control))
    }

    /// A port for one tick.
    pub fn port<'a>(&'a mut self, cluster: &'a mut Cluster) -> ClusterPort<'a> {
        ClusterPort { node: self, cluster }
    }
}

/// `peer`'s log and control regions, checked to hold `layout`.
fn peer_regions_of(cluster: &Cluster, peer: NodeId, layout: &Layout) -> CrateResult<[RemoteRegion; 2]> {
    let log = cluster.remote_region(peer, LOG_REGION).map_err(Error::pool("a peer's Mu log"))?;
    let control = cluster.remote_region(peer, CONTROL_REGION).map_err(Error::pool("a peer's Mu control"))?;
    if (log.len() as usize) < layout.log_len() || (control.len() as usize) < layout.control_len() {
        return Err(Error::Config(format!("node {peer}'s Mu regions are smaller than this configuration's")));
    }
    Ok([log, control])
}

fn layout_for(node: &NodeConfig, config: &MuConfig) -> Layout {
    let nodes = node.spec.nodes.keys().map(|id| usize::from(id.get())).max().unwrap_or(0) + 1;
    config.layout(nodes)
}

/// [`Port`] over a cluster, for one tick.
#[derive(Debug)]
pub struct ClusterPort<'a> {
    node: &'a mut MuNode,
    cluster: &'a mut Cluster,
}

impl ClusterPort<'_> {
    fn remote(&self, peer: NodeId, place: Place, len: usize) -> Result<RemoteAddr, String> {
        let regions = self.node.peer_regions.get(&peer).ok_or_else(|| format!("node {peer} is no peer"))?;
        let region = match place.area {
            Area::Log => regions[0],
            Area::Control => regions[1],
        };
        let addr = region.addr_of(place.offset as u64, len as u64).map_err(|error| error.to_string())?;
        Ok(RemoteAddr { addr, rkey: region.rkey() })
    }

    fn local(&self, area: Area) -> &LocalRegion {
        match area {
            Area::Log => &self.node.local_regions[0],
            Area::Control => &self.node.local_regions[1],
        }
    }

    fn post(&mut self, peer: NodeId, channel: Channel, wr: &SendWr<'_>) -> Result<(), PortError> {
        let role = self.node.role(channel);
        self.cluster.post_send(peer, role, std::slice::from_ref(wr)).map_err(|error| PortError {
            peer,
            channel,
            reason: error.to_string(),
        })
    }
}

impl Port for ClusterPort<'_> {
    fn write(
        &mut self,
        peer: NodeId,
        wr_id: u64,
        source: Source<'_>,
        target: Place,
    ) -> Result<(), PortError> {
        let channel = Channel::of_write(target);
        let fail = |reason: String| PortError { peer, channel, reason };
        let len = match source {
            Source::Bytes(bytes) => bytes.len(),
            Source::Local(_, len) => len,
        };
        let remote = self.remote(peer, target, len).map_err(fail)?;
        let inline_max = self.node.inline_max[channel.index()];
        match source {
            Source::Bytes(bytes) if bytes.len() <= inline_max => {
                self.post(peer, channel, &SendWr::write(wr_id, remote, Payload::Inline(bytes)))
            }
            Source::Bytes(bytes) => {
                assert!(bytes.len() <= STAGING_LINE_BYTES, "only records travel as bytes");
                // Not inlinable here: stage it in registered memory (the ring is far
                // longer than the records that can be in flight at once).
                let line = self.node.layout.control_len() + self.node.staging_next * STAGING_LINE_BYTES;
                self.node.staging_next = (self.node.staging_next + 1) % STAGING_LINES;
                self.node.staging.write(line, bytes).expect("the staging ring is in the control region");
                let sge = self.local(Area::Control).sge(line, bytes.len()).map_err(fail)?;
                self.post(peer, channel, &SendWr::write(wr_id, remote, &sge))
            }
            Source::Local(place, len) => {
                let sge = self.local(place.area).sge(place.offset, len).map_err(fail)?;
                self.post(peer, channel, &SendWr::write(wr_id, remote, &sge))
            }
        }
    }

    fn read(
        &mut self,
        peer: NodeId,
        wr_id: u64,
        from: Place,
        len: usize,
        into: Place,
    ) -> Result<(), PortError> {
        let channel = Channel::Control;
        let fail = |reason: String| PortError { peer, channel, reason };
        let remote = self.remote(peer, from, len).map_err(fail)?;
        let sge = self.local(into.area).sge(into.offset, len).map_err(fail)?;
        self.post(peer, channel, &SendWr::read(wr_id, remote, &sge))
    }

    fn allow_log_writer(&mut self, peer: NodeId, allowed: bool) -> Result<(), PortError> {
        let role = self.node.log_role;
        let result = if allowed {
            self.cluster.grant_write(peer, role)
        } else {
            self.cluster.revoke_write(peer, role)
        };
        match result {
            // Remembered: it takes effect when the QP is reconnected.
            Ok(()) | Err(usec_qp_pool::Error::QpNeedsReconnect { .. }) => Ok(()),
            Err(error) => Err(PortError { peer, channel: Channel::Log, reason: error.to_string() }),
        }
    }

    fn repair(&mut self, peer: NodeId, channel: Channel) {
        let role = self.node.role(channel);
        // A repair under way already, or a peer gone for good: nothing more to do here;
        // the driver reports the end of a repair from the cluster's control events.
        let _ = self.cluster.start_reconnect(peer, &[role]);
    }
}
