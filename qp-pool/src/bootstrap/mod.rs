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
//! than fail when file descriptors run out (see the connections' admission rules).
//!
//! # Rejoining
//!
//! A restarted node bootstraps with [`NodeConfig::rejoin`]: its peers finished dialing long
//! ago and now listen from their [`Cluster`]s, so it dials every peer, lower ids too, with
//! a higher incarnation than the process it replaces ([`NodeConfig::incarnation`]). Each
//! peer takes the connection as that node restarted (see [`Cluster::poll_control`]). It is
//! done as soon as every peer accepted it; at the deadline it finishes with the peers it
//! reached, as long as it reached one, and the [`Cluster`] reports the others lost
//! ([`PeerLoss::Unreached`](crate::PeerLoss::Unreached)) until they restart and rejoin
//! themselves. A dead peer therefore costs a rejoining node its whole deadline: pick one
//! that fits how fast it must be back.
//!
//! A peer still in its own bootstrap takes a rejoining node too: if the two dialed each
//! other, the connection the lower id dialed wins on both ends; if it had connected to the
//! old process already, the new one supersedes it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use usec_regions::RemoteRegion;
use usec_verbs::Context;

use crate::cluster::local::LocalNode;
use crate::cluster::{Cluster, PeerStart};
use crate::config::NodeConfig;
use crate::connections::incarnation::{admit, Admission};
use crate::connections::{Connections, EstablishedPeer, Host, Joined};
use crate::error::{Error, Result};
use crate::handshake::Joining;
use crate::spec::{ClusterSpec, NodeId};
use crate::transport::tcp::TcpNetwork;
use crate::transport::Network;
use crate::wire::Offer;

const FIRST_BACKOFF_NS: u64 = 5_000_000;
const MAX_BACKOFF_NS: u64 = 200_000_000;

/// What a [`Bootstrap::poll`] achieved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every peer is connected (or, rejoining, the deadline came with some connected):
    /// call [`Bootstrap::finish`].
    Done,
    /// Something happened; poll again soon.
    Working,
    /// Nothing happened; a real-time driver may pause a little before the next poll.
    Idle,
}

#[derive(Debug, Default)]
struct PeerProgress {
    established: Option<EstablishedPeer>,
    /// The highest incarnation of the peer admitted so far.
    incarnation: Option<u64>,
    next_dial_ns: u64,
    backoff_ns: u64,
    last_error: Option<String>,
}

impl Cluster {
    /// Joins the cluster over TCP, listening on this node's address in the description;
    /// returns once every peer is connected, or fails at `config.deadline`. The cluster
    /// keeps listening there, for restarted peers that rejoin.
    ///
    /// A rejoining node ([`NodeConfig::rejoin`]) whose address is still held (the process
    /// it replaces is stopped, not dead) listens on another port of the same host instead:
    /// its peers do not dial it (it dials them), only a peer restarting at the same time
    /// would, and that one finds it by dialing too.
    pub fn bootstrap(context: &Context, config: NodeConfig) -> Result<Cluster> {
        config.spec.check_member(config.me)?;
        let addr: SocketAddr = config.spec.addr_of(config.me).expect("checked membership");
        let network = match TcpNetwork::bind(addr) {
            Err(error) if config.rejoin && error.kind() == std::io::ErrorKind::AddrInUse => {
                TcpNetwork::bind(SocketAddr::new(addr.ip(), 0))
            }
            other => other,
        };
        let network = network.map_err(Error::io(format!("listening on {addr}")))?;
        Cluster::bootstrap_with(context, config, Box::new(network))
    }

    /// Joins the cluster over `network` (a [`TcpNetwork`] bound already, or an in-memory
    /// one), in real time. The cluster keeps `network`, to listen for restarted peers.
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
    joining: Joining,
    deadline: Duration,
    started_ns: Option<u64>,
    /// Rejoining, the deadline passed with some peers connected: done with those.
    settled: bool,
    connections: Connections,
    peers: BTreeMap<NodeId, PeerProgress>,
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
            .map(|&node| (node, PeerProgress::default()))
            .collect();
        let joining = Joining { incarnation: config.incarnation, rejoin: config.rejoin };
        // Lower ids dial us, and any peer may when it rejoins.
        let dialers = config.spec.nodes.range(..config.me).count() + 1;
        let spec = Arc::new(config.spec);
        Ok(Bootstrap {
            peers,
            local,
            connections: Connections::new(Arc::clone(&spec), config.me, joining, network, dialers),
            spec,
            me: config.me,
            joining,
            deadline: config.deadline,
            started_ns: None,
            settled: false,
        })
    }

    /// Makes what progress it can without blocking (a TCP dial may take a moment). `now_ns`
    /// is any monotonic clock; the deadline counts from the first poll. Fails once the
    /// deadline has passed with peers still missing (rejoining: with every peer missing).
    pub fn poll(&mut self, now_ns: u64) -> Result<Progress> {
        let started = *self.started_ns.get_or_insert(now_ns);
        if self.is_done() {
            return Ok(Progress::Done);
        }
        if now_ns.saturating_sub(started) >= self.deadline.as_nanos() as u64 {
            if self.joining.rejoin && self.peers.values().any(|peer| peer.established.is_some()) {
                self.settled = true;
                return Ok(Progress::Done);
            }
            return Err(self.deadline_error(Duration::from_nanos(now_ns - started)));
        }
        let mut busy = self.dial_due(now_ns);
        let mut host = Joiner { local: &mut self.local, peers: &mut self.peers };
        busy |= self.connections.poll(now_ns, &mut host);
        for failure in self.connections.take_failures() {
            self.peer_failed(failure.node, failure.reason, now_ns);
        }
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
        self.connections.rejections()
    }

    /// Connections refused so far for failing the cluster key check, with the id each
    /// claimed: impostors, or nodes with another key or none.
    pub fn impostors(&self) -> &[String] {
        self.connections.impostors()
    }

    /// The connected cluster, once [`Bootstrap::poll`] said [`Progress::Done`]. It keeps
    /// listening for restarted peers on the network bootstrap used.
    pub fn finish(mut self) -> Result<Cluster> {
        self.flush_established();
        if !self.is_done() {
            return Err(Error::config(format!(
                "finish() called with peers {:?} still missing",
                self.missing()
            )));
        }
        let mut refused = self.connections.refused();
        refused.extend(self.connections.impostors_refused());
        let reasons: BTreeMap<NodeId, String> = self.missing_reasons().into_iter().collect();
        let peers = self
            .peers
            .into_iter()
            .map(|(node, peer)| {
                let start = match (peer.established, peer.incarnation) {
                    (Some(established), Some(incarnation)) => PeerStart::Joined { incarnation, established },
                    _ => PeerStart::Unreached { reason: reasons[&node].clone() },
                };
                (node, start)
            })
            .collect();
        let mut connections = self.connections;
        connections.listen_only(self.spec.nodes.len() - 1);
        let incarnation = self.joining.incarnation;
        Ok(Cluster::from_bootstrap(self.local, self.spec, self.me, incarnation, peers, connections, refused))
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

    fn is_done(&self) -> bool {
        self.settled || self.peers.values().all(|peer| peer.established.is_some())
    }

    /// Why each missing peer is missing.
    fn missing_reasons(&self) -> Vec<(NodeId, String)> {
        self.peers
            .iter()
            .filter(|(_, peer)| peer.established.is_none())
            .map(|(&node, peer)| {
                let default = if self.connections.speaks_for(node) {
                    "connected, but the handshake did not finish".to_string()
                } else if node < self.me && !self.joining.rejoin {
                    "it never dialed us (lower ids dial higher ones)".to_string()
                } else {
                    "never reached".to_string()
                };
                (node, peer.last_error.clone().unwrap_or(default))
            })
            .collect()
    }

    fn deadline_error(&self, waited: Duration) -> Error {
        Error::Deadline {
            me: self.me,
            waited,
            missing: self.missing_reasons(),
            refused: self.connections.refused(),
            impostors: self.connections.impostors_refused(),
        }
    }

    /// Dials the peers that are due: higher ids, or every peer when rejoining.
    fn dial_due(&mut self, now_ns: u64) -> bool {
        let due: Vec<NodeId> = self
            .peers
            .iter()
            .filter(|(&node, peer)| {
                (node > self.me || self.joining.rejoin)
                    && peer.established.is_none()
                    && now_ns >= peer.next_dial_ns
                    && !self.connections.speaks_for(node)
            })
            .map(|(&node, _)| node)
            .collect();
        let dialed = !due.is_empty();
        for node in due {
            if let Err(reason) = self.connections.dial(node, now_ns) {
                self.peer_failed(node, reason, now_ns);
            }
        }
        dialed
    }

    /// Records a failure with `node` and schedules the next dial (if we dial it).
    fn peer_failed(&mut self, node: NodeId, reason: String, now_ns: u64) {
        let peer = self.peers.get_mut(&node).expect("a peer");
        peer.backoff_ns = (peer.backoff_ns * 2).clamp(FIRST_BACKOFF_NS, MAX_BACKOFF_NS);
        peer.next_dial_ns = now_ns + peer.backoff_ns;
        peer.last_error = Some(reason);
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
}

/// What bootstrap decides for its connections.
struct Joiner<'a> {
    local: &'a mut LocalNode,
    peers: &'a mut BTreeMap<NodeId, PeerProgress>,
}

impl Host for Joiner<'_> {
    fn admit(&mut self, node: NodeId, incarnation: u64) -> Result<Offer> {
        let peer = self.peers.get_mut(&node).expect("the handshake checked membership");
        match admit(node, peer.incarnation, peer.established.is_some(), incarnation)? {
            Admission::First | Admission::Again => {}
            // The process we connected to was replaced before bootstrap finished: its
            // connection goes, and our QPs are reset for the new one by the offer.
            Admission::Newer { .. } => peer.established = None,
        }
        peer.incarnation = Some(incarnation);
        self.local.flush(node)?;
        self.local.offer_for(node)
    }

    fn accept_offer(&mut self, node: NodeId, offer: &Offer) -> Result<BTreeMap<String, RemoteRegion>> {
        self.local.accept_offer(node, offer)
    }

    fn joined(&mut self, joined: Joined) {
        let peer = self.peers.get_mut(&joined.node).expect("a peer");
        peer.established = Some(joined.peer);
        peer.last_error = None;
    }
}
