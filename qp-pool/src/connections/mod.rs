//! Connections in their handshake: taken in from the listener, or dialed; moved through
//! their sans-IO [`Handshake`]; refused with a reason; handed over once established.
//!
//! [`Bootstrap`](crate::Bootstrap) joins the cluster through them, and a
//! [`Cluster`](crate::Cluster) keeps them afterwards, listening, so that a restarted node
//! can rejoin. What to do with a peer (admit its claim, make our offer, take its offer,
//! keep the connection) is their owner's business, asked through [`Host`]; what is the same
//! for both lives here:
//!
//! - admission of connections under a flood or out of file descriptors ([`admission`]);
//! - which of two connections for one node stays, and whether an incarnation may speak
//!   for a node at all ([`incarnation`]);
//! - the handshake timeout, refusals with their reasons, impostors kept apart
//!   ([`refusals`]).
//!
//! A node that joins a running cluster dials members' addresses without knowing their ids
//! (contacts): what answers there is taken for the node it proves to be. The member lists
//! it is sent ([`Host::learn`]) also retire its connections to processes of a member older
//! than the one listed (a stopped process still at an old address).

mod admission;
pub(crate) mod incarnation;
mod refusals;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;
use usec_regions::RemoteRegion;

use crate::error::{Error, Result};
use crate::handshake::{Handshake, HandshakeEvent, Joining, Side};
use crate::spec::{ClusterSpec, NodeId};
use crate::transport::{Link, Network, Received};
use crate::wire::{Channel, Members, Offer};
pub(crate) use admission::out_of_descriptors;
use admission::Admission;
use incarnation::{prefer_new, Claim};
use refusals::Refusals;

/// How long a connection may take to finish its handshake before it is dropped (and, if
/// we dialed, dialed again): a peer that accepts but never answers (a stopped process)
/// cannot hold a slot forever.
const HANDSHAKE_TIMEOUT_NS: u64 = 5_000_000_000;
/// Bytes read per `read_some`.
const READ_CHUNK: usize = 4096;

/// A fresh nonce for a handshake, from the operating system: unpredictable, never reused.
fn fresh_nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// A peer's control connection once its handshake is over, and the regions it offered.
#[derive(Debug)]
pub(crate) struct EstablishedPeer {
    pub(crate) link: Box<dyn Link>,
    pub(crate) channel: Channel,
    pub(crate) regions: BTreeMap<String, RemoteRegion>,
}

/// A connection that finished its handshake: who, which process of it, where it takes
/// connections (the address we dialed, else the one its hello gave), and the connection.
#[derive(Debug)]
pub(crate) struct Joined {
    pub(crate) node: NodeId,
    pub(crate) incarnation: u64,
    pub(crate) addr: Option<SocketAddr>,
    pub(crate) peer: EstablishedPeer,
}

/// A connection that spoke for a peer (dialed to it, or identified as it) and failed.
#[derive(Debug)]
pub(crate) struct PeerFailure {
    pub(crate) node: NodeId,
    pub(crate) reason: String,
}

/// A contact (a member's address given to a joining node) whose connection failed before
/// it said who answered there.
#[derive(Debug)]
pub(crate) struct ContactFailure {
    pub(crate) addr: SocketAddr,
    pub(crate) reason: String,
}

/// What the owner of the connections decides and does.
pub(crate) trait Host {
    /// A connection proved that it speaks for `node`, whose hello said `joining` (and won
    /// against any other connection for it); we dialed it at `dialed`, or it dialed us:
    /// refuse it, or return the offer to send (making it resets our QPs to `node`).
    fn admit(&mut self, node: NodeId, joining: Joining, dialed: Option<SocketAddr>) -> Result<Offer>;
    /// The members we know, for `node`, which joins a running cluster.
    fn members(&self, to: NodeId) -> Members;
    /// `node` sent the members it knows (we join a running cluster); refusing them ends
    /// the connection.
    fn learn(&mut self, from: NodeId, members: &Members) -> Result<()>;
    /// `node`'s offer arrived on the connection admitted: connect our QPs, return its regions.
    fn accept_offer(&mut self, node: NodeId, offer: &Offer) -> Result<BTreeMap<String, RemoteRegion>>;
    /// The handshake is over: the connection is `node`'s from now on.
    fn joined(&mut self, joined: Joined);
}

#[derive(Debug)]
struct Connection {
    link: Box<dyn Link>,
    handshake: Handshake,
    /// The peer this connection speaks for (set when dialed, or once admitted).
    peer: Option<NodeId>,
    /// The address we dialed, if we did.
    addr: Option<SocketAddr>,
    regions: BTreeMap<String, RemoteRegion>,
    finished: bool,
    established: bool,
    /// Whether any bytes came from the other end.
    heard: bool,
    /// When it was accepted or dialed.
    opened_ns: u64,
}

impl Connection {
    /// Whether it still counts: in its handshake, or established and not yet handed over.
    fn is_live(&self) -> bool {
        !self.finished || self.established
    }

    fn claim(&self) -> Claim {
        Claim {
            dialed: self.handshake.side().dialed(),
            incarnation: self.handshake.peer_joining().map(|joining| joining.incarnation),
        }
    }
}

/// The connections of one node in their handshake, and the listener they come from.
#[derive(Debug)]
pub(crate) struct Connections {
    spec: Arc<ClusterSpec>,
    me: NodeId,
    joining: Joining,
    network: Box<dyn Network>,
    list: Vec<Connection>,
    admission: Admission,
    refusals: Refusals,
    failures: Vec<PeerFailure>,
    contact_failures: Vec<ContactFailure>,
}

impl Connections {
    /// Connections of node `me` presenting `joining` in its hellos, listening on
    /// `network`; `dialers` peers may dial it at once.
    pub(crate) fn new(
        spec: Arc<ClusterSpec>,
        me: NodeId,
        joining: Joining,
        network: Box<dyn Network>,
        dialers: usize,
    ) -> Connections {
        Connections {
            spec,
            me,
            joining,
            network,
            list: Vec::new(),
            admission: Admission::new(dialers),
            refusals: Refusals::default(),
            failures: Vec::new(),
            contact_failures: Vec::new(),
        }
    }

    /// From now on it only listens, for a cluster: what is left of bootstrap's connections
    /// goes (a dial unanswered would otherwise stand in the way of the very peer it was
    /// meant for when that one dials in, and the others were timed on bootstrap's clock),
    /// `dialers` peers may dial at once, and refusals count afresh.
    pub(crate) fn listen_only(&mut self, dialers: usize) {
        self.list.clear();
        self.admission = Admission::new(dialers);
        self.refusals = Refusals::default();
        self.failures.clear();
        self.contact_failures.clear();
    }

    /// Accepts what waits, moves every connection's bytes, acts on their handshakes (asking
    /// `host`), drops those past the handshake timeout, and hands the established ones to
    /// `host`; returns whether anything happened. Never fails.
    pub(crate) fn poll(&mut self, now_ns: u64, host: &mut dyn Host) -> bool {
        let mut busy = self.accept(now_ns);
        for index in 0..self.list.len() {
            busy |= self.pump(index, host);
            let connection = &mut self.list[index];
            if !connection.finished && now_ns.saturating_sub(connection.opened_ns) >= HANDSHAKE_TIMEOUT_NS {
                let reason = format!(
                    "did not finish the handshake within {:?}",
                    Duration::from_nanos(HANDSHAKE_TIMEOUT_NS)
                );
                let error =
                    connection.handshake.reject(Error::Protocol { peer: connection.handshake.who(), reason });
                self.close(index, error);
                busy = true;
            }
        }
        busy | self.sweep(host)
    }

    /// Dials `node` at `addr`; a failure is returned (and counted as nothing else).
    pub(crate) fn dial(
        &mut self,
        node: NodeId,
        addr: SocketAddr,
        now_ns: u64,
    ) -> std::result::Result<(), String> {
        // Not "node 2": until it is identified, whoever answers may be anyone.
        let label = format!("{addr} (node {node}'s address)");
        self.dial_as(addr, Side::Dialer { expected: node }, &label, Some(node), now_ns)
    }

    /// Dials a contact: a member's address, whichever node answers there.
    pub(crate) fn dial_contact(&mut self, addr: SocketAddr, now_ns: u64) -> std::result::Result<(), String> {
        let label = format!("{addr} (a member's address)");
        self.dial_as(addr, Side::Contact, &label, None, now_ns)
    }

    fn dial_as(
        &mut self,
        addr: SocketAddr,
        side: Side,
        label: &str,
        peer: Option<NodeId>,
        now_ns: u64,
    ) -> std::result::Result<(), String> {
        match self.network.dial(addr) {
            Ok(link) => {
                self.push(link, side, label, peer, Some(addr), now_ns);
                Ok(())
            }
            Err(error) => {
                if out_of_descriptors(&error) {
                    self.relieve_descriptors();
                }
                Err(format!("dialing {addr}: {error}"))
            }
        }
    }

    /// Whether a connection we dialed to `addr` is still in its handshake (so there is no
    /// need to dial it again, whoever answers there).
    pub(crate) fn dialing(&self, addr: SocketAddr) -> bool {
        self.list.iter().any(|connection| connection.is_live() && connection.addr == Some(addr))
    }

    /// Ends every connection in its handshake, telling each `error`.
    pub(crate) fn abandon_all(&mut self, error: impl Fn() -> Error) {
        for index in 0..self.list.len() {
            if self.list[index].is_live() {
                self.drop_quietly(index, error());
            }
        }
    }

    /// Ends the connections that speak for `node` (it was removed), telling it `error`.
    pub(crate) fn abandon(&mut self, node: NodeId, error: impl Fn() -> Error) {
        for index in 0..self.list.len() {
            let connection = &self.list[index];
            if connection.is_live() && connection.peer == Some(node) {
                self.drop_quietly(index, error());
            }
        }
    }

    /// Whether a connection in its handshake speaks for `node` (so there is no need to dial).
    pub(crate) fn speaks_for(&self, node: NodeId) -> bool {
        self.list.iter().any(|connection| connection.is_live() && connection.peer == Some(node))
    }

    /// The failures of connections that spoke for a peer, since the last call.
    pub(crate) fn take_failures(&mut self) -> Vec<PeerFailure> {
        std::mem::take(&mut self.failures)
    }

    /// The failures of contacts' connections before they said who answered, since the
    /// last call.
    pub(crate) fn take_contact_failures(&mut self) -> Vec<ContactFailure> {
        std::mem::take(&mut self.contact_failures)
    }

    /// The connections refused (for what they claimed or sent; impostors apart).
    pub(crate) fn rejections(&self) -> &[String] {
        self.refusals.rejected.reasons()
    }

    /// The connections refused for failing the cluster key check.
    pub(crate) fn impostors(&self) -> &[String] {
        self.refusals.impostors.reasons()
    }

    /// The refusals kept, how many more there were, and what admission had to drop.
    pub(crate) fn refused(&self) -> Vec<String> {
        let mut refused = self.refusals.rejected.report("refused connections");
        refused.extend(self.admission.report());
        refused
    }

    /// The impostors kept, and how many more there were.
    pub(crate) fn impostors_refused(&self) -> Vec<String> {
        self.refusals.impostors.report("impostors")
    }

    fn push(
        &mut self,
        link: Box<dyn Link>,
        side: Side,
        label: &str,
        peer: Option<NodeId>,
        addr: Option<SocketAddr>,
        now_ns: u64,
    ) {
        let handshake = Handshake::for_incarnation(
            Arc::clone(&self.spec),
            self.me,
            self.joining,
            side,
            label,
            fresh_nonce(),
        );
        self.list.push(Connection {
            link,
            handshake,
            peer,
            addr,
            regions: BTreeMap::new(),
            finished: false,
            established: false,
            heard: false,
            opened_ns: now_ns,
        });
    }

    /// Moves the bytes of one connection and acts on its handshake's events; returns
    /// whether anything happened.
    fn pump(&mut self, index: usize, host: &mut dyn Host) -> bool {
        if self.list[index].finished {
            return false;
        }
        let mut busy = self.flush(index);
        let mut buffer = [0u8; READ_CHUNK];
        loop {
            let connection = &mut self.list[index];
            let outcome = match connection.link.read_some(&mut buffer) {
                Ok(Received::Data(count)) => {
                    connection.heard = true;
                    connection.handshake.handle_bytes(&buffer[..count])
                }
                Ok(Received::Nothing) => break,
                Ok(Received::Closed) => Err(connection.handshake.handle_end_of_stream()),
                Err(error) => Err(connection.handshake.reject(Error::Io {
                    context: format!("reading from {}", connection.handshake.who()),
                    source: error,
                })),
            };
            busy = true;
            let outcome = outcome.and_then(|()| self.handle_events(index, host));
            if let Err(error) = outcome {
                self.close(index, error);
                return true;
            }
            if self.list[index].finished {
                self.flush(index);
                return true;
            }
        }
        busy | self.flush(index)
    }

    fn handle_events(&mut self, index: usize, host: &mut dyn Host) -> Result<()> {
        while let Some(event) = self.list[index].handshake.poll_event() {
            match event {
                HandshakeEvent::Identified(node) => self.identified(index, node, host)?,
                HandshakeEvent::Members(members) => {
                    let connection = &mut self.list[index];
                    let node = connection.peer.expect("members come after the admission");
                    if let Err(error) = host.learn(node, &members) {
                        return Err(connection.handshake.reject(error));
                    }
                    self.retire_outdated(index, &members);
                }
                HandshakeEvent::Offer(offer) => {
                    let connection = &mut self.list[index];
                    let node = connection.peer.expect("an offer comes after the admission");
                    match host.accept_offer(node, &offer) {
                        Ok(regions) => connection.regions = regions,
                        Err(error) => return Err(connection.handshake.reject(error)),
                    }
                    connection.handshake.confirm_connected();
                }
                HandshakeEvent::Established => {
                    let connection = &mut self.list[index];
                    connection.finished = true;
                    connection.established = true;
                }
            }
        }
        Ok(())
    }

    /// The peer proved who it is: settles which connection speaks for it, asks `host` to
    /// admit it, and sends the offer.
    fn identified(&mut self, index: usize, node: NodeId, host: &mut dyn Host) -> Result<()> {
        let new = self.list[index].claim();
        let incarnation = new.incarnation.expect("identified");
        let rivals: Vec<usize> = (0..self.list.len())
            .filter(|&other| {
                other != index && self.list[other].is_live() && self.list[other].peer == Some(node)
            })
            .collect();
        for &other in &rivals {
            if let Err(error) = prefer_new(self.me, node, new, self.list[other].claim()) {
                return Err(self.list[index].handshake.reject(error));
            }
        }
        for other in rivals {
            let reason = format!("node {node} incarnation {incarnation} took over on another connection");
            self.drop_quietly(other, Error::DuplicateNode { node, reason });
        }
        let connection = &mut self.list[index];
        let joining = connection.handshake.peer_joining().expect("identified");
        match host.admit(node, joining, connection.addr) {
            Ok(offer) => {
                connection.peer = Some(node);
                if joining.entry.joins_running() {
                    connection.handshake.send_members(host.members(node));
                }
                connection.handshake.send_offer(offer);
                Ok(())
            }
            Err(error) => Err(connection.handshake.reject(error)),
        }
    }

    /// Ends the other connections, still in their handshake, to processes of a node older
    /// than the one `members` lists: a member vouches that a newer one joined since.
    fn retire_outdated(&mut self, index: usize, members: &Members) {
        for member in &members.members {
            let Ok(node) = NodeId::new(member.node) else { continue };
            for other in 0..self.list.len() {
                let connection = &self.list[other];
                let claimed = connection.claim().incarnation;
                if other == index || !connection.is_live() || connection.peer != Some(node) {
                    continue;
                }
                if let Some(theirs) = claimed.filter(|&theirs| theirs < member.incarnation) {
                    let current = member.incarnation;
                    self.drop_quietly(other, Error::StaleIncarnation { node, theirs, current });
                }
            }
        }
    }

    /// Ends a connection that lost to another one for the same peer: it is no failure of
    /// that peer, only the reason goes out.
    fn drop_quietly(&mut self, index: usize, error: Error) {
        let connection = &mut self.list[index];
        connection.handshake.reject(error);
        connection.established = false;
        self.finish(index);
    }

    /// Ends a failed connection: sends what is queued (the reject), closes, and records why.
    fn close(&mut self, index: usize, error: Error) {
        self.finish(index);
        let connection = &self.list[index];
        if matches!(error, Error::Unauthenticated { .. }) {
            // Whatever id it claimed, an impostor says nothing about that node: listed
            // apart, and a node we dialed is only told that its address answered wrong.
            self.refusals.impostors.push(error.to_string());
            let addr = connection.addr.map_or_else(|| "its address".to_string(), |addr| addr.to_string());
            let reason = format!("what answered at {addr} failed the cluster key check (see the impostors)");
            match (connection.peer, connection.addr) {
                (Some(node), _) => self.failures.push(PeerFailure { node, reason }),
                (None, Some(addr)) => self.contact_failures.push(ContactFailure { addr, reason }),
                (None, None) => {}
            }
            return;
        }
        match (connection.peer, connection.addr) {
            (Some(node), _) => self.failures.push(PeerFailure { node, reason: error.to_string() }),
            (None, Some(addr)) => {
                self.contact_failures.push(ContactFailure { addr, reason: error.to_string() })
            }
            (None, None) => {
                let who = connection.handshake.who();
                self.refusals.rejected.push(format!("{who}: {error}"));
            }
        }
    }

    /// Flushes what is queued (a reject), reads what is left so that the close is a FIN
    /// after it and not a reset, and closes.
    fn finish(&mut self, index: usize) {
        self.flush(index);
        let connection = &mut self.list[index];
        let mut buffer = [0u8; READ_CHUNK];
        for _ in 0..16 {
            if !matches!(connection.link.read_some(&mut buffer), Ok(Received::Data(_))) {
                break;
            }
        }
        connection.link.close();
        connection.finished = true;
    }

    /// Hands the established connections to `host` and drops the finished ones; returns
    /// whether any was handed over.
    fn sweep(&mut self, host: &mut dyn Host) -> bool {
        let mut handed = false;
        for connection in std::mem::take(&mut self.list) {
            if connection.established {
                let node = connection.peer.expect("established with an admitted peer");
                let joining = connection.handshake.peer_joining().expect("identified");
                let addr = connection.addr.or(joining.addr);
                let peer = EstablishedPeer {
                    link: connection.link,
                    channel: connection.handshake.into_channel(),
                    regions: connection.regions,
                };
                host.joined(Joined { node, incarnation: joining.incarnation, addr, peer });
                handed = true;
            } else if !connection.finished {
                self.list.push(connection);
            }
        }
        handed
    }

    /// Writes what the connection has queued; returns whether anything went out.
    fn flush(&mut self, index: usize) -> bool {
        let connection = &mut self.list[index];
        let mut wrote = false;
        while !connection.handshake.outgoing().is_empty() {
            match connection.link.write_some(connection.handshake.outgoing()) {
                Ok(0) | Err(_) => break,
                Ok(written) => {
                    connection.handshake.written(written);
                    wrote = true;
                }
            }
        }
        wrote
    }

    /// Where it listens.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.network.local_addr().ok()
    }
}
