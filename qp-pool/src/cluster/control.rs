//! The control connections kept open after bootstrap: reconnecting one peer's QPs, and
//! region descriptors that changed.
//!
//! Reconnect, started by node A for some roles with node B:
//! 1. A resets its QPs of those roles to B (fresh endpoints) and sends them in a
//!    `ReconnectRequest` with a new epoch.
//! 2. B, in its [`Cluster::poll_control`], resets its QPs of those roles to A, connects them
//!    to A's endpoints, and answers with its own fresh endpoints in a `ReconnectReply`.
//! 3. A connects to B's endpoints. Both report [`ControlEvent::Reconnected`].
//!
//! Only those QPs are touched: traffic with every other peer, and on other roles with B,
//! goes on. Resetting a QP drops its outstanding work requests without completions, which
//! is why this is meant for QPs in ERROR (whose requests have all completed, flushed).
//!
//! If both ends start a reconnect at once, the lower id's request wins: the higher id
//! serves it, and asks again for whatever roles of its own were not covered.

use std::io::ErrorKind;
use std::sync::Arc;
use std::time::Duration;

use usec_regions::RemoteRegion;

use super::local::decode_regions;
use super::reasons::{PeerLoss, ProtocolViolation, ReconnectFailure};
use super::{Cluster, PendingReconnect};
use crate::driver::Driver;
use crate::error::{Error, Result};
use crate::role::RoleId;
use crate::spec::NodeId;
use crate::transport::Received;
use crate::wire::{Message, Reconnect, RoleOffer};

/// What happened on the control connections.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ControlEvent {
    /// The QPs of `roles` with `peer` were reconnected (at our request, or at the peer's
    /// when `by_peer`).
    Reconnected {
        /// The peer.
        peer: NodeId,
        /// The roles reconnected.
        roles: Vec<RoleId>,
        /// Whether the peer asked for it.
        by_peer: bool,
    },
    /// A reconnect could not be completed (a QP refused to connect).
    ReconnectFailed {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: ReconnectFailure,
    },
    /// `peer` re-registered its region `name`; the new descriptor is in use from now on.
    RegionUpdated {
        /// The peer.
        peer: NodeId,
        /// The region's name.
        name: String,
        /// The new descriptor.
        region: RemoteRegion,
    },
    /// The control connection to `peer` is gone (it exited, crashed, broke the protocol,
    /// or was replaced by a restarted process); its QPs stay as they are, but it can no
    /// longer be reconnected. A restarted process of it may rejoin
    /// ([`ControlEvent::Rejoined`]).
    PeerLost {
        /// The peer.
        peer: NodeId,
        /// What was seen.
        reason: PeerLoss,
    },
    /// A new process of `peer` (a restart: a higher incarnation) joined through the full
    /// handshake. Our QPs to it were flushed (requests outstanding to the old process
    /// completed with [`Flushed`](usec_verbs::Status::Flushed)), reset and connected to its
    /// new QPs, with the rights it has here (see [`Cluster::peer_access`]: what we
    /// remembered for that node, never beyond its roles' defaults); its region descriptors
    /// are the new ones it offered; a reconnect of the old connection that was under way is
    /// forgotten. Any state kept
    /// about the old process is now stale: revive the peer in a
    /// [`QuorumWaiter`](crate::QuorumWaiter), grant again the rights the protocol still
    /// means to give it, restart heartbeat reads (their reads in flight went with the
    /// old QPs).
    Rejoined {
        /// The peer.
        peer: NodeId,
        /// Its new incarnation.
        incarnation: u64,
    },
    /// A node new to us (not in our description, or removed since) joined through the full
    /// handshake: our QPs to it (a spare set, see
    /// [`NodeConfig::spare_peers`](crate::NodeConfig::spare_peers)) are connected to its QPs
    /// for every role, with its roles' default rights, and its region descriptors are
    /// known. It is among [`Cluster::peers`] from now on; what uses the peers (quorums,
    /// heartbeats, a membership view) may take it in.
    Joined {
        /// The node.
        peer: NodeId,
        /// The incarnation of its process.
        incarnation: u64,
    },
    /// `peer` was removed ([`Cluster::remove_peer`]): its QPs are torn down, its regions
    /// forgotten, its process refused from now on.
    Removed {
        /// The node.
        peer: NodeId,
        /// The incarnation removed, if one had been admitted.
        incarnation: Option<u64>,
    },
}

/// Bytes read per `read_some`.
const READ_CHUNK: usize = 4096;

impl Cluster {
    /// Serves the control connections without blocking (peers' reconnect requests and
    /// replies, region updates, restarted peers rejoining, new nodes joining) and returns
    /// the next event, if any. Call it from the node's loop; a peer that waits for our answer waits for this
    /// call.
    ///
    /// It takes no time, so the handshakes of rejoining peers are timed on the latest
    /// `now_ns` given to [`Cluster::poll_control_at`] (none if it is never called: a
    /// handshake that stalls then stays until the rejoining process gives up or a newer
    /// one replaces it). A loop that has a clock calls that instead.
    pub fn poll_control(&mut self) -> Option<ControlEvent> {
        self.poll_control_at(self.control_now_ns)
    }

    /// [`Cluster::poll_control`], at `now_ns` on any monotonic clock: a rejoining peer's
    /// handshake that takes longer than 5 s is dropped.
    pub fn poll_control_at(&mut self, now_ns: u64) -> Option<ControlEvent> {
        self.control_now_ns = self.control_now_ns.max(now_ns);
        self.serve_rejoins(self.control_now_ns);
        let nodes: Vec<NodeId> = self.peers.keys().copied().collect();
        for node in nodes {
            self.pump_peer(node);
        }
        self.control_events.pop_front()
    }

    /// Starts reconnecting the QPs of `roles` (every role when empty) with `peer`, without
    /// blocking; [`Cluster::poll_control`] completes it when the peer answers.
    pub fn start_reconnect(&mut self, peer: NodeId, roles: &[RoleId]) -> Result<()> {
        let state = self.peer(peer)?;
        if let Some(reason) = &state.lost {
            return Err(Error::PeerGone { peer, reason: reason.clone() });
        }
        if state.pending.is_some() {
            return Err(Error::ReconnectInProgress(peer));
        }
        let roles: Vec<RoleId> = if roles.is_empty() {
            (0..self.local.roles.len()).map(|index| RoleId(index as u8)).collect()
        } else {
            roles.to_vec()
        };
        self.send_request(peer, roles).map_err(|(_, error)| error)
    }

    /// Reconnects the QPs of `roles` (every role when empty) with `peer`, waiting until
    /// `deadline_ns` on `driver`'s clock for it to answer. The peer must be calling
    /// [`Cluster::poll_control`]. A dead peer is [`Error::PeerGone`], a silent one
    /// [`Error::ReconnectTimedOut`] (its QPs stay in RESET; a later reconnect can retry).
    ///
    /// This is [`Cluster::start_reconnect`], then [`Cluster::poll_control`]'s work for this
    /// peer until it answers, then [`Cluster::abandon_reconnect`] at the deadline: a loop
    /// that serves other work meanwhile makes those calls itself.
    pub fn reconnect(
        &mut self,
        peer: NodeId,
        roles: &[RoleId],
        deadline_ns: u64,
        driver: &mut impl Driver,
    ) -> Result<()> {
        self.start_reconnect(peer, roles)?;
        let start_ns = driver.now_ns();
        loop {
            self.pump_peer(peer);
            let state = &self.peers[&peer];
            if let Some(reason) = &state.lost {
                return Err(Error::PeerGone { peer, reason: reason.clone() });
            }
            if state.pending.is_none() {
                return Ok(());
            }
            if driver.expired(deadline_ns) {
                self.abandon_reconnect(peer);
                let waited = Duration::from_nanos(driver.now_ns().saturating_sub(start_ns));
                return Err(Error::ReconnectTimedOut { peer, waited });
            }
            driver.idle(deadline_ns);
        }
    }

    /// Gives up waiting for `peer`'s answer to our reconnect request: its QPs of those
    /// roles stay in RESET, and a late answer is ignored. Returns whether one was pending.
    pub fn abandon_reconnect(&mut self, peer: NodeId) -> bool {
        self.peers.get_mut(&peer).is_some_and(|state| state.pending.take().is_some())
    }

    /// Whether our reconnect request to `peer` waits for its answer.
    pub fn reconnect_pending(&self, peer: NodeId) -> bool {
        self.peers.get(&peer).is_some_and(|state| state.pending.is_some())
    }

    /// Why the control connection to `peer` is gone, if it is.
    pub fn peer_lost(&self, peer: NodeId) -> Option<&PeerLoss> {
        self.peers.get(&peer).and_then(|state| state.lost.as_ref())
    }

    /// Resets our QPs of `roles` to `peer` and asks it to reconnect them; an error names
    /// the role it happened on.
    fn send_request(&mut self, peer: NodeId, roles: Vec<RoleId>) -> Result<(), (RoleId, Error)> {
        let mut offers = Vec::with_capacity(roles.len());
        for &role in &roles {
            let fresh = self.local.check_role(role).and_then(|()| self.local.fresh_endpoint(peer, role));
            offers.push(fresh.map_err(|error| (role, error))?);
        }
        let state = self.peers.get_mut(&peer).expect("a peer");
        state.epoch += 1;
        let request = Message::ReconnectRequest(Reconnect { epoch: state.epoch, roles: offers });
        state.control.as_mut().expect("a live peer has its connection").channel.send(&request);
        state.pending = Some(PendingReconnect { epoch: state.epoch, roles });
        if let Some(reason) = self.flush_peer(peer) {
            self.lose(peer, reason);
        }
        Ok(())
    }

    /// Moves `node`'s control bytes both ways and handles the messages that arrived, in
    /// order (handlers only queue answers; they never pump).
    pub(super) fn pump_peer(&mut self, node: NodeId) {
        if self.peers[&node].lost.is_some() {
            return;
        }
        let (messages, mut failure) = self.receive(node);
        for message in messages {
            self.handle_control(node, message);
        }
        failure = failure.or_else(|| self.flush_peer(node));
        if let Some(reason) = failure {
            self.lose(node, reason);
        }
    }

    /// Writes what is queued for `node`; returns a failure to report.
    pub(super) fn flush_peer(&mut self, node: NodeId) -> Option<PeerLoss> {
        let peer = self.peers.get_mut(&node).expect("a peer");
        if peer.lost.is_some() {
            return None;
        }
        let control = peer.control.as_mut().expect("a live peer has its connection");
        while !control.channel.outgoing().is_empty() {
            match control.link.write_some(control.channel.outgoing()) {
                Ok(0) => break,
                Ok(written) => control.channel.written(written),
                Err(error) if matches!(error.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                    return Some(PeerLoss::Closed { cut: None });
                }
                Err(error) => return Some(PeerLoss::WriteFailed { source: Arc::new(error) }),
            }
        }
        None
    }

    /// Flushes, then reads what `node` sent; returns the complete messages and a failure.
    fn receive(&mut self, node: NodeId) -> (Vec<Message>, Option<PeerLoss>) {
        let mut failure = self.flush_peer(node);
        let peer = self.peers.get_mut(&node).expect("a peer");
        let peer = peer.control.as_mut().expect("a live peer has its connection");
        let mut buffer = [0u8; READ_CHUNK];
        while failure.is_none() {
            match peer.link.read_some(&mut buffer) {
                Ok(Received::Data(count)) => peer.channel.received(&buffer[..count]),
                Ok(Received::Nothing) => break,
                Ok(Received::Closed) => {
                    let cut = peer.channel.decoder().end_of_stream().map(Arc::new);
                    failure = Some(PeerLoss::Closed { cut });
                }
                Err(error) if error.kind() == ErrorKind::ConnectionReset => {
                    failure = Some(PeerLoss::Closed { cut: None });
                }
                Err(error) => failure = Some(PeerLoss::ReadFailed { source: Arc::new(error) }),
            }
        }
        let mut messages = Vec::new();
        loop {
            match peer.channel.next_message() {
                Ok(Some(message)) => messages.push(message),
                Ok(None) => break,
                Err(error) => {
                    failure = Some(PeerLoss::BadFrame { source: Arc::new(error) });
                    break;
                }
            }
        }
        (messages, failure)
    }

    pub(super) fn lose(&mut self, node: NodeId, reason: PeerLoss) {
        let peer = self.peers.get_mut(&node).expect("a peer");
        if peer.lost.is_some() {
            return;
        }
        if let Some(control) = &mut peer.control {
            control.link.close();
        }
        peer.pending = None;
        peer.lost = Some(reason.clone());
        self.control_events.push_back(ControlEvent::PeerLost { peer: node, reason });
    }

    fn handle_control(&mut self, node: NodeId, message: Message) {
        if self.peers[&node].lost.is_some() {
            return;
        }
        match message {
            Message::ReconnectRequest(request) => self.serve_reconnect(node, request),
            Message::ReconnectReply(reply) => self.finish_reconnect(node, reply),
            Message::RegionUpdate(update) => match decode_regions(node, &update.regions) {
                Ok(regions) => {
                    for (name, region) in regions {
                        self.peers.get_mut(&node).expect("a peer").regions.insert(name.clone(), region);
                        self.control_events.push_back(ControlEvent::RegionUpdated {
                            peer: node,
                            name,
                            region,
                        });
                    }
                }
                Err(error) => {
                    let violation = ProtocolViolation::BadRegionUpdate { source: Arc::new(error) };
                    self.lose(node, violation.into());
                }
            },
            Message::Reject(reject) => self.lose(node, PeerLoss::Refused { reason: reject.reason }),
            Message::Fence(fence) => self.fence(node, fence.reason),
            other => self.lose(node, ProtocolViolation::UnexpectedFrame(other.kind()).into()),
        }
    }

    fn roles_of(&mut self, node: NodeId, offers: &[RoleOffer]) -> Option<Vec<RoleId>> {
        let roles: Option<Vec<RoleId>> =
            offers.iter().map(|offer| self.local.role_by_name(&offer.name)).collect();
        if roles.is_none() {
            let names = offers.iter().map(|offer| offer.name.clone()).collect();
            self.lose(node, ProtocolViolation::UnknownRoles(names).into());
        }
        roles
    }

    fn serve_reconnect(&mut self, node: NodeId, request: Reconnect) {
        let Some(roles) = self.roles_of(node, &request.roles) else { return };
        let ours = self.peers[&node].pending.clone();
        if ours.is_some() && self.me < node {
            // Both asked at once: ours wins, the peer serves it and asks again for the rest.
            return;
        }
        let mut reply = Vec::with_capacity(roles.len());
        for (&role, offer) in roles.iter().zip(&request.roles) {
            let result = self
                .local
                .fresh_endpoint(node, role)
                .and_then(|fresh| self.local.connect_qp(node, role, &offer.endpoint).map(|()| fresh));
            match result {
                Ok(fresh) => reply.push(fresh),
                Err(error) => {
                    let reason = ReconnectFailure::of_role(role, error);
                    self.control_events.push_back(ControlEvent::ReconnectFailed { peer: node, reason });
                    return;
                }
            }
        }
        let peer = self.peers.get_mut(&node).expect("a peer");
        let answer = Message::ReconnectReply(Reconnect { epoch: request.epoch, roles: reply });
        peer.control.as_mut().expect("a live peer has its connection").channel.send(&answer);
        self.control_events.push_back(ControlEvent::Reconnected {
            peer: node,
            roles: roles.clone(),
            by_peer: true,
        });
        if let Some(ours) = ours {
            peer.pending = None;
            let rest: Vec<RoleId> = ours.roles.into_iter().filter(|role| !roles.contains(role)).collect();
            if !rest.is_empty() {
                if let Err((role, error)) = self.send_request(node, rest) {
                    let reason = ReconnectFailure::of_role(role, error);
                    self.control_events.push_back(ControlEvent::ReconnectFailed { peer: node, reason });
                }
            }
        }
    }

    fn finish_reconnect(&mut self, node: NodeId, reply: Reconnect) {
        let Some(pending) = self.peers[&node].pending.clone() else { return };
        if pending.epoch != reply.epoch {
            return; // The answer to a request we gave up on.
        }
        let Some(roles) = self.roles_of(node, &reply.roles) else { return };
        if roles != pending.roles {
            let violation = ProtocolViolation::WrongRoles { answered: roles, asked: pending.roles };
            self.lose(node, violation.into());
            return;
        }
        self.peers.get_mut(&node).expect("a peer").pending = None;
        for (&role, offer) in roles.iter().zip(&reply.roles) {
            if let Err(error) = self.local.connect_qp(node, role, &offer.endpoint) {
                let reason = ReconnectFailure::of_role(role, error);
                self.control_events.push_back(ControlEvent::ReconnectFailed { peer: node, reason });
                return;
            }
        }
        self.control_events.push_back(ControlEvent::Reconnected { peer: node, roles, by_peer: false });
    }
}
