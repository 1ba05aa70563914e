//! [`RingPort`]: one process's rings on a qp-pool [`Cluster`], on any provider.
//!
//! Every node of the cluster has the ring [role](ROLE) (memory nodes with no rights: they
//! take no part). A process with rings makes one region: the rings its senders write
//! into, its consumption counters, its mirrors of the rings it writes. To each peer it
//! grants, in that peer's own protection domain ([`NodeConfig::grant`]): the peer's slice
//! of our rings, writable ([`IN_GRANT`]); our counters of the peer's rings, read-only
//! ([`COUNTER_GRANT`]); our mirror of the rings we write into the peer, local only
//! ([`OUT_GRANT`]: the source of our WRITEs must be registered in the protection domain of
//! the QP that posts them). A peer's WRITE anywhere but its own slice is refused by our
//! NIC, whatever rkey it forges: no Byzantine sender can write into another's ring.
//!
//! Work requests are signaled, with `wr_id`s of the registered kinds `BftRingWrite` and
//! `BftRingCreditRead`; their completions come back per QP in posting order. A QP that
//! fails is repaired as the register port's are (reconnect once nothing is outstanding);
//! frames for a peer whose QP is down are dropped and counted — CTBcast's tail semantics
//! and its slow path absorb that, and a credit ring's sender sees the refusal. A restarted
//! peer (a new process, new regions) is not written to again.

use std::collections::VecDeque;
use std::sync::Arc;

use usec_qp_pool::wr_kind::RegisteredKind;
use usec_qp_pool::{Cluster, ControlEvent, NodeConfig, NodeId, Poller, RoleId, RoleSpec, WrId};
use usec_regions::RemoteRegion;
use usec_verbs::{AccessFlags, QpCaps, Region, RemoteAddr, SendWr};

use crate::error::{Error, Result};

use super::frame::{self, frame_bytes};
use super::inbound::{InboundRing, InboundStats, Look};
use super::layout::{RingPlan, StreamId};
use super::outbound::{Blocked, OutboundRing};

/// Name of the role whose QPs carry ring WRITEs.
pub const ROLE: &str = "bft-rings";
/// Name of the grant of a sender's own rings in a receiver's memory (remote write).
pub const IN_GRANT: &str = "bft-rings-in";
/// Name of the grant of a receiver's consumption counters of a sender's rings (remote read).
pub const COUNTER_GRANT: &str = "bft-rings-consumed";
/// Name of the grant of a sender's mirror of the rings it writes into a peer (local).
pub const OUT_GRANT: &str = "bft-rings-out";
/// Pause between two tries to reconnect a failed QP.
pub const RECONNECT_RETRY_NS: u64 = 200_000;
/// Work requests in flight per QP at most (its send queue's depth).
const QP_DEPTH: u32 = 512;
/// Frames taken from one ring per poll at most, so one busy ring cannot starve others.
const BURST: usize = 16;

/// Why a frame was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The plan has no such ring from us to that peer.
    #[error("no ring {stream:?} to node {to}")]
    NoRing {
        /// The peer.
        to: NodeId,
        /// The stream.
        stream: StreamId,
    },
    /// The payload is longer than the ring's frames.
    #[error("a {len}-byte payload on a ring of {max}-byte frames")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The ring's payload size.
        max: usize,
    },
    /// A credit ring whose reader has not consumed enough: try again later (a READ of its
    /// counter is under way).
    #[error("the ring is full until its reader catches up")]
    Full,
    /// Our mirror slot or the QP is still busy with earlier WRITEs: try again later.
    #[error("earlier WRITEs still in flight")]
    Busy,
    /// The peer's QP is down (failed, being repaired, or the peer is gone): the frame is
    /// dropped.
    #[error("node {0} is unreachable")]
    PeerDown(NodeId),
}

/// What the port counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingStats {
    /// Frames WRITEn.
    pub sent: u64,
    /// Frames dropped because their peer was down.
    pub dropped: u64,
    /// Work requests that completed with an error.
    pub failed_completions: u64,
    /// What reading our rings counted, all rings together.
    pub inbound: InboundStats,
}

/// Where a peer's QP stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Health {
    Up,
    Broken { retry_at_ns: u64 },
    Gone,
}

/// What a posted work request was.
#[derive(Clone, Copy, Debug)]
enum Posted {
    Write { ring: usize, sequence: u64 },
    CreditRead { ring: usize },
}

/// A peer we write rings into.
#[derive(Debug)]
struct Link {
    peer: NodeId,
    rings: Vec<OutboundRing>,
    /// Its grant of our rings in its memory.
    remote_rings: RemoteRegion,
    /// Its grant of its counters of our rings.
    remote_counters: RemoteRegion,
    /// Where our outbound slice for it starts in our region.
    base: usize,
    posted: VecDeque<Posted>,
    health: Health,
}

/// A sender whose rings we read.
#[derive(Debug)]
struct Source {
    peer: NodeId,
    rings: Vec<InboundRing>,
}

/// The memory a process's rings take, made by [`RingPort::configure`].
#[derive(Clone, Debug)]
pub struct RingMemory {
    region: Arc<Region>,
}

impl RingMemory {
    /// Bytes registered.
    pub fn len(&self) -> usize {
        self.region.len()
    }

    /// Whether it is empty (a process with no rings).
    pub fn is_empty(&self) -> bool {
        self.region.is_empty()
    }
}

/// Offsets of the sections of a process's ring region.
struct Sections {
    /// Per sender to us: its rings' slice, and its counters.
    inbound: Vec<(NodeId, usize, usize)>,
    /// Per receiver of ours: our mirror slice (credit words right after it).
    outbound: Vec<(NodeId, usize)>,
    total: usize,
}

fn sections(plan: &RingPlan, me: NodeId) -> Sections {
    let senders = plan.senders_to(me);
    let mut at = 0;
    let mut slices = Vec::new();
    for &sender in &senders {
        slices.push(at);
        at += plan.slice_bytes(sender, me);
    }
    let mut inbound = Vec::new();
    for (&sender, slice) in senders.iter().zip(slices) {
        inbound.push((sender, slice, at));
        at += plan.counter_bytes(sender, me);
    }
    let mut outbound = Vec::new();
    for receiver in plan.receivers_of(me) {
        outbound.push((receiver, at));
        at += plan.slice_bytes(me, receiver) + plan.counter_bytes(me, receiver);
    }
    Sections { inbound, outbound, total: at }
}

/// One process's rings; see the [module documentation](self).
#[derive(Debug)]
pub struct RingPort {
    role: RoleId,
    region: Arc<Region>,
    poller: Poller,
    links: Vec<Link>,
    sources: Vec<Source>,
    slot_buffer: Vec<u8>,
    payload: Vec<u8>,
    frame: Vec<u8>,
    sent: u64,
    dropped: u64,
    failed_completions: u64,
}

/// The ring role with `access` for peers (memory nodes: none).
pub fn role_spec(access: AccessFlags) -> RoleSpec {
    let caps = QpCaps { max_send_wr: QP_DEPTH, ..QpCaps::default() };
    RoleSpec::new(ROLE, access).with_caps(caps).with_cq_depth(4 * QP_DEPTH)
}

impl RingPort {
    /// Adds the ring role, the ring region and its grants to the configuration of
    /// `node.me`, as `plan` says. Every node of the cluster has the role at the same place
    /// in its role list (a process without rings adds [`role_spec`] with no rights).
    pub fn configure(node: NodeConfig, plan: &RingPlan) -> Result<(NodeConfig, RingMemory)> {
        let me = node.me;
        let sections = sections(plan, me);
        let region = Arc::new(Region::new(sections.total.max(64)).map_err(Error::region("the ring region"))?);
        let mut node = node.role(role_spec(AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_READ));
        let writable = AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_WRITE;
        for &(sender, slice, counters) in &sections.inbound {
            node =
                node.grant(sender, IN_GRANT, &region, slice, plan.slice_bytes(sender, me), writable).grant(
                    sender,
                    COUNTER_GRANT,
                    &region,
                    counters,
                    plan.counter_bytes(sender, me),
                    AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ,
                );
        }
        for &(receiver, base) in &sections.outbound {
            let len = plan.slice_bytes(me, receiver) + plan.counter_bytes(me, receiver);
            node = node.grant(receiver, OUT_GRANT, &region, base, len, AccessFlags::LOCAL_WRITE);
        }
        Ok((node, RingMemory { region }))
    }

    /// The port of a bootstrapped process configured with [`RingPort::configure`] and the
    /// same `plan`; takes the ring role's CQ.
    pub fn new(cluster: &mut Cluster, plan: &RingPlan, memory: RingMemory) -> Result<RingPort> {
        let me = cluster.me();
        let role = cluster.role(ROLE).map_err(Error::pool("the ring role"))?;
        let poller = cluster.take_poller(&[role]).map_err(Error::pool("the ring role's CQ"))?;
        let sections = sections(plan, me);
        let sources = sections
            .inbound
            .iter()
            .map(|&(peer, slice, counters)| Source {
                peer,
                rings: plan
                    .rings(peer, me)
                    .into_iter()
                    .map(|placed| {
                        InboundRing::new(
                            placed.spec,
                            slice + placed.in_slice,
                            counters + placed.counter_in_slice,
                        )
                    })
                    .collect(),
            })
            .collect();
        let mut links = Vec::new();
        for &(peer, base) in &sections.outbound {
            let remote_rings =
                cluster.remote_region(peer, IN_GRANT).map_err(Error::pool("a peer's ring grant"))?;
            let remote_counters =
                cluster.remote_region(peer, COUNTER_GRANT).map_err(Error::pool("a peer's counter grant"))?;
            if remote_rings.len() as usize != plan.slice_bytes(me, peer)
                || remote_counters.len() as usize != plan.counter_bytes(me, peer)
            {
                return Err(Error::Config(format!(
                    "node {peer} grants {} and {} bytes of rings and counters; the plan says {} and {}",
                    remote_rings.len(),
                    remote_counters.len(),
                    plan.slice_bytes(me, peer),
                    plan.counter_bytes(me, peer)
                )));
            }
            let credit_base = plan.slice_bytes(me, peer);
            let rings = plan
                .rings(me, peer)
                .into_iter()
                .enumerate()
                .map(|(position, placed)| {
                    OutboundRing::new(placed, placed.in_slice, credit_base + 8 * position)
                })
                .collect();
            links.push(Link {
                peer,
                rings,
                remote_rings,
                remote_counters,
                base,
                posted: VecDeque::new(),
                health: Health::Up,
            });
        }
        Ok(RingPort {
            role,
            region: memory.region,
            poller,
            links,
            sources,
            slot_buffer: Vec::new(),
            payload: Vec::new(),
            frame: Vec::new(),
            sent: 0,
            dropped: 0,
            failed_completions: 0,
        })
    }

    /// The ring role.
    pub fn role(&self) -> RoleId {
        self.role
    }

    /// WRITEs `payload` as the next frame of ring `stream` into `to`'s memory; returns its
    /// sequence number.
    pub fn send(
        &mut self,
        cluster: &mut Cluster,
        to: NodeId,
        stream: StreamId,
        payload: &[u8],
    ) -> std::result::Result<u64, SendError> {
        let Some(link_index) = self.links.iter().position(|link| link.peer == to) else {
            return Err(SendError::NoRing { to, stream });
        };
        let link = &mut self.links[link_index];
        let Some(ring_index) = link.rings.iter().position(|ring| ring.placed.spec.stream == stream) else {
            return Err(SendError::NoRing { to, stream });
        };
        let max = link.rings[ring_index].placed.spec.max_payload_bytes as usize;
        if payload.len() > max {
            return Err(SendError::TooLarge { len: payload.len(), max });
        }
        if link.health != Health::Up {
            self.dropped += 1;
            return Err(SendError::PeerDown(to));
        }
        if link.posted.len() >= QP_DEPTH as usize {
            self.complete();
            if self.links[link_index].posted.len() >= QP_DEPTH as usize {
                return Err(SendError::Busy);
            }
        }
        match self.links[link_index].rings[ring_index].check() {
            Ok(()) => {}
            Err(Blocked::MirrorBusy) => {
                self.complete();
                if self.links[link_index].rings[ring_index].check() == Err(Blocked::MirrorBusy) {
                    return Err(SendError::Busy);
                }
            }
            Err(Blocked::NoCredit) => {
                self.read_credit(cluster, link_index, ring_index);
                return Err(SendError::Full);
            }
        }
        let link = &mut self.links[link_index];
        let ring = &mut link.rings[ring_index];
        let (sequence, mirror) = ring.take();
        let remote_at = ring.remote_slot(sequence);
        self.frame.resize(frame_bytes(payload.len()), 0);
        let len = frame::encode(sequence, payload, &mut self.frame);
        self.region.write(link.base + mirror, &self.frame[..len]).expect("the mirror lies in the region");
        let wr_id = WrId::wrapping(RegisteredKind::BftRingWrite, to, sequence).to_raw();
        let posted = (|| -> Result<()> {
            let out = cluster.grant(to, OUT_GRANT).map_err(Error::pool("our mirror grant"))?;
            let sge =
                out.sge(mirror, len as u32).map_err(|error| Error::Config(format!("the mirror: {error}")))?;
            let remote = RemoteAddr::within(&link.remote_rings, remote_at as u64, len as u64)
                .map_err(|error| Error::Config(format!("a ring WRITE outside its grant: {error}")))?;
            cluster
                .post_send(to, self.role, &[SendWr::write(wr_id, remote, &sge)])
                .map_err(Error::pool("posting a ring WRITE"))
        })();
        match posted {
            Ok(()) => {
                link.posted.push_back(Posted::Write { ring: ring_index, sequence });
                self.sent += 1;
                Ok(sequence)
            }
            Err(_) => {
                ring.completed(sequence);
                link.health = Health::Broken { retry_at_ns: 0 };
                self.dropped += 1;
                Err(SendError::PeerDown(to))
            }
        }
    }

    fn read_credit(&mut self, cluster: &mut Cluster, link_index: usize, ring_index: usize) {
        let link = &mut self.links[link_index];
        let ring = &mut link.rings[ring_index];
        if ring.credit_read_in_flight {
            return;
        }
        let to = link.peer;
        let wr_id = WrId::wrapping(RegisteredKind::BftRingCreditRead, to, ring_index as u64).to_raw();
        let (local, remote) = (ring.credit_in_slice, ring.placed.counter_in_slice);
        let posted = (|| -> Result<()> {
            let out = cluster.grant(to, OUT_GRANT).map_err(Error::pool("our mirror grant"))?;
            let sge =
                out.sge(local, 8).map_err(|error| Error::Config(format!("the credit word: {error}")))?;
            let remote = RemoteAddr::within(&link.remote_counters, remote as u64, 8)
                .map_err(|error| Error::Config(format!("a credit READ outside its grant: {error}")))?;
            cluster
                .post_send(to, self.role, &[SendWr::read(wr_id, remote, &sge)])
                .map_err(Error::pool("a credit READ"))
        })();
        match posted {
            Ok(()) => {
                ring.credit_read_in_flight = true;
                link.posted.push_back(Posted::CreditRead { ring: ring_index });
            }
            Err(_) => link.health = Health::Broken { retry_at_ns: 0 },
        }
    }

    /// Takes every completion there is; whether there were any.
    pub fn complete(&mut self) -> bool {
        let mut any = false;
        for polled in self.poller.poll() {
            any = true;
            let kind = polled.wr_id.kind();
            if kind != RegisteredKind::BftRingWrite.into() && kind != RegisteredKind::BftRingCreditRead.into()
            {
                continue; // not ours (a test's forged request)
            }
            let peer = polled.wr_id.peer();
            let Some(link) = self.links.iter_mut().find(|link| link.peer == peer) else { continue };
            let Some(posted) = link.posted.pop_front() else { continue };
            let success = polled.completion.status.is_success();
            if !success {
                self.failed_completions += 1;
                if link.health == Health::Up {
                    link.health = Health::Broken { retry_at_ns: 0 };
                }
            }
            match posted {
                Posted::Write { ring, sequence } => link.rings[ring].completed(sequence),
                Posted::CreditRead { ring } => {
                    let consumed = if success {
                        let at = link.base + link.rings[ring].credit_in_slice;
                        let mut word = [0u8; 8];
                        self.region.read(at, &mut word).expect("the credit word lies in the region");
                        u64::from_le_bytes(word)
                    } else {
                        0
                    };
                    link.rings[ring].credit(consumed);
                }
            }
        }
        any
    }

    /// Reads every ring: calls `deliver(sender, stream, payload)` for each new frame, up
    /// to a burst per ring; returns how many.
    pub fn poll(&mut self, mut deliver: impl FnMut(NodeId, StreamId, &[u8])) -> usize {
        let mut taken = 0;
        for source in &mut self.sources {
            for ring in &mut source.rings {
                let max = ring.spec.max_payload_bytes as usize;
                if self.payload.len() < max {
                    self.payload.resize(max, 0);
                }
                // Grown once to the largest slot, never shrunk (see `InboundRing::look`).
                if self.slot_buffer.len() < ring.spec.slot_bytes() {
                    self.slot_buffer.resize(ring.spec.slot_bytes(), 0);
                }
                for _ in 0..BURST {
                    let Look::Frame { len } =
                        ring.look(&self.region, &mut self.slot_buffer, &mut self.payload)
                    else {
                        break;
                    };
                    taken += 1;
                    // Published after each frame: a credit sender may reuse the slot now.
                    self.region
                        .atomic_u64(ring.counter_offset)
                        .expect("counters are 8-byte aligned in the region")
                        .store(ring.next_sequence, std::sync::atomic::Ordering::Release);
                    deliver(source.peer, ring.stream(), &self.payload[..len]);
                }
            }
        }
        taken
    }

    /// Takes a control event of the cluster: reconnected QPs are up again, a lost or
    /// restarted peer is gone.
    pub fn handle_control(&mut self, event: &ControlEvent) {
        let (peer, up) = match event {
            ControlEvent::Reconnected { peer, roles, .. } if roles.contains(&self.role) => (*peer, true),
            ControlEvent::Rejoined { peer, .. } | ControlEvent::PeerLost { peer, .. } => (*peer, false),
            _ => return,
        };
        let Some(link) = self.links.iter_mut().find(|link| link.peer == peer) else { return };
        for posted in std::mem::take(&mut link.posted) {
            match posted {
                Posted::Write { ring, sequence } => link.rings[ring].completed(sequence),
                Posted::CreditRead { ring } => link.rings[ring].credit(0),
            }
        }
        link.health = if up { Health::Up } else { Health::Gone };
    }

    /// Starts repairing failed QPs whose requests have all come back.
    pub fn maintain(&mut self, cluster: &mut Cluster, now_ns: u64) {
        for link in &mut self.links {
            let Health::Broken { retry_at_ns } = link.health else { continue };
            if now_ns < retry_at_ns || !link.posted.is_empty() || cluster.reconnect_pending(link.peer) {
                continue;
            }
            link.health = match cluster.start_reconnect(link.peer, &[self.role]) {
                Err(usec_qp_pool::Error::PeerGone { .. }) => Health::Gone,
                _ => Health::Broken { retry_at_ns: now_ns + RECONNECT_RETRY_NS },
            };
        }
    }

    /// Whether `peer`'s QP is usable now (false for a peer we write no ring into).
    pub fn is_up(&self, peer: NodeId) -> bool {
        self.links.iter().any(|link| link.peer == peer && link.health == Health::Up)
    }

    /// What it counted.
    pub fn stats(&self) -> RingStats {
        let mut inbound = InboundStats::default();
        for ring in self.sources.iter().flat_map(|source| &source.rings) {
            inbound.frames += ring.stats.frames;
            inbound.skipped += ring.stats.skipped;
            inbound.torn += ring.stats.torn;
            inbound.refused += ring.stats.refused;
        }
        RingStats {
            sent: self.sent,
            dropped: self.dropped,
            failed_completions: self.failed_completions,
            inbound,
        }
    }

    /// The status of the next completion on the ring role's CQ, whoever posted it (tests
    /// that post on the role's QPs by hand; nothing of the port's may be outstanding).
    #[cfg(test)]
    pub(super) fn poll_foreign_completion(&mut self) -> Option<usec_verbs::Status> {
        self.poller.poll().next().map(|polled| polled.completion.status)
    }

    /// Bytes registered for rings, counters and mirrors.
    pub fn memory_bytes(&self) -> usize {
        self.region.len()
    }
}
