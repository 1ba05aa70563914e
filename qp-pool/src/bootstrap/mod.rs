//! Bootstrap: from a cluster description to QPs connected all-to-all.
//!
//! [`Bootstrap`] is non-blocking and takes the time as an argument: each
//! [`Bootstrap::poll`] accepts waiting connections, dials the peers that are due, moves
//! handshake bytes, and connects QPs as offers arrive. Lower ids dial higher ones, so
//! there is one connection per pair; a peer not there yet is dialed again with
//! exponential backoff (5 ms doubling to 200 ms) until the deadline, which then fails
//! naming each missing peer and the last thing that went wrong with it. [`Bootstrap::run`]
//! drives it in real time; a simulation drives it with virtual time and the in-memory
//! network, several nodes in one thread.
//!
//! Connections that fail their handshake are refused with a reason (a `Reject` frame) and
//! closed; the bootstrap goes on, so a garbage client, a stale process of an earlier run or
//! a node of another cluster cannot stop it, and each refusal is kept for diagnosis
//! ([`Cluster::bootstrap_rejections`](crate::Cluster::bootstrap_rejections)). Nor can a
//! flood of connections: what bootstrap holds is bounded, and it sheds connections rather
//! than fail when file descriptors run out ([`admission`]).

mod admission;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::RngCore;
use usec_regions::RemoteRegion;
use usec_verbs::Context;

use crate::cluster::local::LocalNode;
use crate::cluster::{Cluster, EstablishedPeer};
use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::handshake::{Handshake, HandshakeEvent, Side};
use crate::spec::{ClusterSpec, NodeId};
use crate::transport::tcp::TcpNetwork;
use crate::transport::{Link, Network, Received};
use admission::{out_of_descriptors, Admission};

const FIRST_BACKOFF_NS: u64 = 5_000_000;
/// How long a connection may take to finish its handshake before it is dropped (and, if
/// we dialed, dialed again): a peer that accepts but never answers (a stopped process)
/// cannot hold a slot forever.
const HANDSHAKE_TIMEOUT_NS: u64 = 5_000_000_000;
/// Refused connections remembered for diagnosis; later ones are only counted.
const REJECTIONS_KEPT: usize = 32;
const MAX_BACKOFF_NS: u64 = 200_000_000;
/// Bytes read per `read_some`.
const READ_CHUNK: usize = 4096;

/// A fresh nonce for a handshake, from the operating system: unpredictable, never reused.
fn fresh_nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// What a [`Bootstrap::poll`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every peer is connected: call [`Bootstrap::finish`].
    Done,
    /// Something happened; poll again soon.
    Working,
    /// Nothing happened; a real-time driver may pause a little before the next poll.
    Idle,
}

#[derive(Debug, Default)]
struct PeerProgress {
    established: Option<EstablishedPeer>,
    /// A connection in progress speaks for this peer.
    bound: bool,
    next_dial_ns: u64,
    backoff_ns: u64,
    last_error: Option<String>,
}

#[derive(Debug)]
struct Connection {
    link: Box<dyn Link>,
    handshake: Handshake,
    /// The peer this connection speaks for (set when dialed, or once identified).
    peer: Option<NodeId>,
    regions: BTreeMap<String, RemoteRegion>,
    finished: bool,
    established: bool,
    /// Whether any bytes came from the other end.
    heard: bool,
    /// When it was accepted or dialed.
    opened_ns: u64,
}

impl Cluster {
    /// Joins the cluster over TCP, listening on this node's address in the description;
    /// returns once every peer is connected, or fails at `config.deadline`.
    pub fn bootstrap(context: &Context, config: NodeConfig) -> Result<Cluster> {
        config.spec.check_member(config.me)?;
        let addr: SocketAddr = config.spec.addr_of(config.me).expect("checked membership");
        let network = TcpNetwork::bind(addr).map_err(Error::io(format!("listening on {addr}")))?;
        Cluster::bootstrap_with(context, config, Box::new(network))
    }

    /// Joins the cluster over `network` (a [`TcpNetwork`] bound already, or an in-memory
    /// one), in real time.
    pub fn bootstrap_with(
        context: &Context,
        config: NodeConfig,
        network: Box<dyn Network>,
    ) -> Result<Cluster> {
        Bootstrap::start(context, config, network)?.run()
    }
}

/// A node joining the cluster.
#[derive(Debug)]
pub struct Bootstrap {
    local: LocalNode,
    spec: Arc<ClusterSpec>,
    me: NodeId,
    network: Box<dyn Network>,
    deadline: Duration,
    started_ns: Option<u64>,
    connections: Vec<Connection>,
    peers: BTreeMap<NodeId, PeerProgress>,
    rejections: Vec<String>,
    /// Refused connections beyond [`REJECTIONS_KEPT`].
    rejections_dropped: usize,
    /// Connections refused for failing the cluster key check, kept apart from the others.
    impostors: Vec<String>,
    /// Those beyond [`REJECTIONS_KEPT`].
    impostors_dropped: usize,
    admission: Admission,
}

impl Bootstrap {
    /// Creates the node's verbs objects (PD, a CQ per role, a QP per role per peer, the
    /// regions' registrations) and starts joining over `network`.
    pub fn start(context: &Context, config: NodeConfig, network: Box<dyn Network>) -> Result<Bootstrap> {
        let local = LocalNode::create(context, &config)?;
        let peers = config
            .spec
            .nodes
            .keys()
            .filter(|&&node| node != config.me)
            .map(|&node| (node, PeerProgress::default()));
        let lower_peers = config.spec.nodes.range(..config.me).count();
        Ok(Bootstrap {
            peers: peers.collect(),
            local,
            spec: Arc::new(config.spec),
            me: config.me,
            network,
            deadline: config.deadline,
            started_ns: None,
            connections: Vec::new(),
            rejections: Vec::new(),
            rejections_dropped: 0,
            impostors: Vec::new(),
            impostors_dropped: 0,
            admission: Admission::new(lower_peers),
        })
    }

    /// Makes what progress it can without blocking (a TCP dial may take a moment). `now_ns`
    /// is any monotonic clock; the deadline counts from the first poll. Fails once the
    /// deadline has passed with peers still missing.
    pub fn poll(&mut self, now_ns: u64) -> Result<Progress> {
        let started = *self.started_ns.get_or_insert(now_ns);
        if self.is_done() {
            return Ok(Progress::Done);
        }
        if now_ns.saturating_sub(started) >= self.deadline.as_nanos() as u64 {
            return Err(self.deadline_error(Duration::from_nanos(now_ns - started)));
        }
        let mut busy = self.accept(now_ns);
        busy |= self.dial_due(now_ns);
        for index in 0..self.connections.len() {
            busy |= self.pump(index, now_ns);
            let connection = &mut self.connections[index];
            if !connection.finished && now_ns.saturating_sub(connection.opened_ns) >= HANDSHAKE_TIMEOUT_NS {
                let reason = format!(
                    "did not finish the handshake within {:?}",
                    Duration::from_nanos(HANDSHAKE_TIMEOUT_NS)
                );
                let error =
                    connection.handshake.reject(Error::Protocol { peer: connection.handshake.who(), reason });
                self.close(index, error, now_ns);
                busy = true;
            }
        }
        self.sweep();
        busy |= self.flush_established();
        Ok(if self.is_done() {
            Progress::Done
        } else if busy {
            Progress::Working
        } else {
            Progress::Idle
        })
    }

    /// The peers not connected yet.
    pub fn missing(&self) -> Vec<NodeId> {
        self.peers.iter().filter(|(_, peer)| peer.established.is_none()).map(|(&node, _)| node).collect()
    }

    /// Connections refused so far, with their reasons (those that failed the cluster key
    /// check apart: [`Bootstrap::impostors`]).
    pub fn rejections(&self) -> &[String] {
        &self.rejections
    }

    /// Connections refused so far for failing the cluster key check, with the id each
    /// claimed: impostors, or nodes with another key or none.
    pub fn impostors(&self) -> &[String] {
        &self.impostors
    }

    /// The connected cluster, once [`Bootstrap::poll`] said [`Progress::Done`].
    pub fn finish(mut self) -> Result<Cluster> {
        self.flush_established();
        if !self.is_done() {
            return Err(Error::config(format!(
                "finish() called with peers {:?} still missing",
                self.missing()
            )));
        }
        let mut refused = self.refused();
        refused.extend(self.impostors_refused());
        let peers =
            self.peers.into_iter().map(|(node, peer)| (node, peer.established.expect("done"))).collect();
        Ok(Cluster::from_bootstrap(self.local, self.spec, self.me, peers, refused))
    }

    /// Polls in real time until done or past the deadline, pausing (50 µs growing to 2 ms)
    /// while nothing happens.
    pub fn run(mut self) -> Result<Cluster> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            match self.poll(start.elapsed().as_nanos() as u64)? {
                Progress::Done => return self.finish(),
                Progress::Working => pause = Duration::from_micros(50),
                Progress::Idle => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(2));
                }
            }
        }
    }

    /// The refusals kept, and how many more there were.
    fn refused(&self) -> Vec<String> {
        let mut refused = self.rejections.clone();
        if self.rejections_dropped > 0 {
            refused.push(format!("{} more refused connections not kept", self.rejections_dropped));
        }
        refused.extend(self.admission.report());
        refused
    }

    /// The connections refused for failing the key check, and how many more there were.
    fn impostors_refused(&self) -> Vec<String> {
        let mut impostors = self.impostors.clone();
        if self.impostors_dropped > 0 {
            impostors.push(format!("{} more not kept", self.impostors_dropped));
        }
        impostors
    }

    fn is_done(&self) -> bool {
        self.peers.values().all(|peer| peer.established.is_some())
    }

    fn deadline_error(&self, waited: Duration) -> Error {
        let missing = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.established.is_none())
            .map(|(&node, peer)| {
                let default = if peer.bound {
                    "connected, but the handshake did not finish".to_string()
                } else if node < self.me {
                    "it never dialed us (lower ids dial higher ones)".to_string()
                } else {
                    "never reached".to_string()
                };
                (node, peer.last_error.clone().unwrap_or(default))
            })
            .collect();
        Error::Deadline {
            me: self.me,
            waited,
            missing,
            refused: self.refused(),
            impostors: self.impostors_refused(),
        }
    }

    fn dial_due(&mut self, now_ns: u64) -> bool {
        let mut dialed = false;
        let due: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(&node, peer)| {
                node > self.me && peer.established.is_none() && !peer.bound && now_ns >= peer.next_dial_ns
            })
            .map(|(&node, _)| node)
            .collect();
        for node in due {
            dialed = true;
            let addr = self.spec.addr_of(node).expect("peers come from the description");
            match self.network.dial(addr) {
                Ok(link) => {
                    // Not "node 2": until it is identified, whoever answers may be anyone.
                    let label = format!("{addr} (node {node}'s address)");
                    let side = Side::Dialer { expected: node };
                    let handshake =
                        Handshake::new(Arc::clone(&self.spec), self.me, side, &label, fresh_nonce());
                    self.peers.get_mut(&node).expect("a peer").bound = true;
                    self.connections.push(Connection {
                        link,
                        handshake,
                        peer: Some(node),
                        regions: BTreeMap::new(),
                        finished: false,
                        established: false,
                        heard: false,
                        opened_ns: now_ns,
                    });
                }
                Err(error) => {
                    if out_of_descriptors(&error) {
                        self.relieve_descriptors();
                    }
                    self.peer_failed(node, format!("dialing {addr}: {error}"), now_ns)
                }
            }
        }
        dialed
    }

    /// Records a failure with `node` and schedules the next dial (if we dial it).
    fn peer_failed(&mut self, node: NodeId, reason: String, now_ns: u64) {
        let peer = self.peers.get_mut(&node).expect("a peer");
        peer.bound = false;
        peer.backoff_ns = (peer.backoff_ns * 2).clamp(FIRST_BACKOFF_NS, MAX_BACKOFF_NS);
        peer.next_dial_ns = now_ns + peer.backoff_ns;
        peer.last_error = Some(reason);
    }

    /// Moves the bytes of one connection and acts on its handshake's events; returns
    /// whether anything happened.
    fn pump(&mut self, index: usize, now_ns: u64) -> bool {
        let mut busy = self.flush(index);
        let mut buffer = [0u8; READ_CHUNK];
        loop {
            let connection = &mut self.connections[index];
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
            let outcome = outcome.and_then(|()| self.handle_events(index));
            if let Err(error) = outcome {
                self.close(index, error, now_ns);
                return true;
            }
            if self.connections[index].finished {
                self.flush(index);
                return true;
            }
        }
        busy | self.flush(index)
    }

    fn handle_events(&mut self, index: usize) -> Result<()> {
        while let Some(event) = self.connections[index].handshake.poll_event() {
            match event {
                HandshakeEvent::Identified(node) => self.identified(index, node)?,
                HandshakeEvent::Offer(offer) => {
                    let connection = &mut self.connections[index];
                    let node = connection.peer.expect("an offer comes after the hello");
                    match self.local.accept_offer(node, &offer) {
                        Ok(regions) => connection.regions = regions,
                        Err(error) => return Err(connection.handshake.reject(error)),
                    }
                    connection.handshake.confirm_connected();
                }
                HandshakeEvent::Established => self.established(index),
            }
        }
        Ok(())
    }

    fn identified(&mut self, index: usize, node: NodeId) -> Result<()> {
        let connection = &mut self.connections[index];
        if connection.handshake.side() == Side::Listener {
            let peer = self.peers.get_mut(&node).expect("the handshake checked membership");
            if peer.established.is_some() || peer.bound {
                let reason = if peer.established.is_some() {
                    "already connected"
                } else {
                    "another connection claims it"
                };
                return Err(connection
                    .handshake
                    .reject(Error::DuplicateNode { node, reason: reason.into() }));
            }
            peer.bound = true;
            connection.peer = Some(node);
        }
        match self.local.offer_for(node) {
            Ok(offer) => connection.handshake.send_offer(offer),
            Err(error) => return Err(connection.handshake.reject(error)),
        }
        Ok(())
    }

    fn established(&mut self, index: usize) {
        let connection = &mut self.connections[index];
        connection.finished = true;
        connection.established = true;
    }

    /// Moves the established connections to their peers and drops the finished ones.
    fn sweep(&mut self) {
        for connection in std::mem::take(&mut self.connections) {
            if connection.established {
                let node = connection.peer.expect("established with an identified peer");
                let peer = self.peers.get_mut(&node).expect("a peer");
                peer.established = Some(EstablishedPeer {
                    link: connection.link,
                    channel: connection.handshake.into_channel(),
                    regions: connection.regions,
                });
                peer.last_error = None;
            } else if !connection.finished {
                self.connections.push(connection);
            }
        }
    }

    /// Ends a failed connection: sends what is queued (the reject), closes, and records why.
    fn close(&mut self, index: usize, error: Error, now_ns: u64) {
        self.flush(index);
        let connection = &mut self.connections[index];
        // Read what is left, so that the close is a FIN after our reject, not a reset.
        let mut buffer = [0u8; READ_CHUNK];
        for _ in 0..16 {
            if !matches!(connection.link.read_some(&mut buffer), Ok(Received::Data(_))) {
                break;
            }
        }
        connection.link.close();
        connection.finished = true;
        let who = connection.handshake.who();
        if matches!(error, Error::Unauthenticated { .. }) {
            // Whatever id it claimed, an impostor says nothing about that node: listed
            // apart, and a node we dialed is only told that its address answered wrong.
            if self.impostors.len() < REJECTIONS_KEPT {
                self.impostors.push(error.to_string());
            } else {
                self.impostors_dropped += 1;
            }
            if let Some(node) = connection.peer {
                let addr = self.spec.addr_of(node).expect("peers come from the description");
                let reason =
                    format!("what answered at {addr} failed the cluster key check (see the impostors)");
                self.peer_failed(node, reason, now_ns);
            }
            return;
        }
        match connection.peer {
            Some(node) => self.peer_failed(node, error.to_string(), now_ns),
            None if self.rejections.len() < REJECTIONS_KEPT => {
                self.rejections.push(format!("{who}: {error}"))
            }
            None => self.rejections_dropped += 1,
        }
    }

    /// Writes what established peers still have queued (a `Ready` the link could not take
    /// at once); returns whether anything went out.
    fn flush_established(&mut self) -> bool {
        let mut wrote = false;
        for peer in self.peers.values_mut() {
            let Some(established) = &mut peer.established else { continue };
            while !established.channel.outgoing().is_empty() {
                match established.link.write_some(established.channel.outgoing()) {
                    Ok(0) | Err(_) => break,
                    Ok(written) => {
                        established.channel.written(written);
                        wrote = true;
                    }
                }
            }
        }
        wrote
    }

    /// Writes what the connection has queued; returns whether anything went out.
    fn flush(&mut self, index: usize) -> bool {
        let connection = &mut self.connections[index];
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
}
