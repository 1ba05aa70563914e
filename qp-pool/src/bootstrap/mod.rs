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
//!
//! # Joining
//!
//! A node that the description does not list (or any node that knows only some members'
//! addresses) bootstraps with [`NodeConfig::join`]. It dials those addresses (contacts),
//! not knowing which node answers at each; every member it reaches, once each side proved
//! who it is, sends the members it knows (itself included) before its offer. The joining
//! node takes the union of what it is told, dials every member it learns of (whose own
//! list may name more), stops dialing contacts once it has a list, and is done when it is
//! connected to every member it knows of. Two nodes joining at once learn of each other: a
//! member's list names the nodes it has admitted, their handshakes still under way
//! included, so whichever of the two a member admits second hears of the first.
//!
//! A list is believed over an earlier answer: a member that names node 2 at a higher
//! incarnation than the process we reached at node 2's old address (one stopped, then
//! resumed) ends our connection to that process, and we dial the one named. The
//! rejoin rule holds: at the deadline it finishes with the members it reached, and fails
//! ([`Error::JoinFailed`]) naming each contact only if it reached none. A node still in
//! its first bootstrap refuses joining nodes, saying so; they try again, until their
//! deadline, and get in once it runs.

mod joiner;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use usec_verbs::Context;

use crate::cluster::local::LocalNode;
use crate::cluster::{Cluster, PeerStart};
use crate::config::NodeConfig;
use crate::connections::{Connections, EstablishedPeer};
use crate::error::{Error, Result};
use crate::handshake::{Entry, Joining};
use crate::spec::{ClusterSpec, NodeId};
use crate::transport::tcp::TcpNetwork;
use crate::transport::Network;
use joiner::Joiner;

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

#[derive(Debug)]
struct PeerProgress {
    /// Where to dial it: its address in the description, the address it was reached at,
    /// or the one a member gave.
    addr: SocketAddr,
    established: Option<EstablishedPeer>,
    /// The highest incarnation of the peer admitted so far, or that a member vouched for.
    incarnation: Option<u64>,
    next_dial_ns: u64,
    backoff_ns: u64,
    last_error: Option<String>,
}

impl PeerProgress {
    fn at(addr: SocketAddr) -> PeerProgress {
        PeerProgress {
            addr,
            established: None,
            incarnation: None,
            next_dial_ns: 0,
            backoff_ns: 0,
            last_error: None,
        }
    }
}

/// A member's address a joining node was given.
#[derive(Debug)]
struct Contact {
    addr: SocketAddr,
    next_dial_ns: u64,
    backoff_ns: u64,
    last_error: Option<String>,
}

impl Cluster {
    /// Joins the cluster over TCP, listening on this node's address in the description;
    /// returns once every peer is connected, or fails at `config.deadline`. The cluster
    /// keeps listening there, for restarted peers that rejoin.
    ///
    /// A rejoining or joining node ([`NodeConfig::rejoin`], [`NodeConfig::join`]) whose
    /// address is still held (the process it replaces is stopped, not dead) listens on
    /// another port of the same host instead, and tells its peers in its hello: members do
    /// not dial it (it dials them), and nodes that join later learn that address from them.
    pub fn bootstrap(context: &Context, config: NodeConfig) -> Result<Cluster> {
        config.spec.check_member(config.me)?;
        let addr: SocketAddr = config.spec.addr_of(config.me).expect("checked membership");
        let network = match TcpNetwork::bind(addr) {
            Err(error) if config.entry.joins_running() && error.kind() == std::io::ErrorKind::AddrInUse => {
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
    /// Joining a running cluster, the deadline passed with some peers connected: done with
    /// those.
    settled: bool,
    connections: Connections,
    peers: BTreeMap<NodeId, PeerProgress>,
    /// Members' addresses to dial first (joining with [`NodeConfig::join`]).
    contacts: Vec<Contact>,
    /// Whether a member sent the members it knows (then contacts are dialed no more).
    learned: bool,
    spare_peers: usize,
}

impl Bootstrap {
    /// Creates the node's verbs objects (PD, a CQ per role, a QP per role per peer of the
    /// description, the regions' registrations) and starts joining over `network`.
    pub fn start(context: &Context, config: NodeConfig, network: Box<dyn Network>) -> Result<Bootstrap> {
        config.check()?;
        let described: Vec<NodeId> = match config.entry {
            Entry::Join => Vec::new(),
            Entry::Start | Entry::Rejoin => {
                config.spec.nodes.keys().copied().filter(|&node| node != config.me).collect()
            }
        };
        let local = LocalNode::create(context, &config, &described)?;
        let peers =
            described.iter().map(|&node| (node, PeerProgress::at(config.spec.nodes[&node]))).collect();
        let contacts = match config.entry {
            Entry::Join => config.contacts(),
            Entry::Start | Entry::Rejoin => Vec::new(),
        };
        let contacts = contacts
            .into_iter()
            .map(|addr| Contact { addr, next_dial_ns: 0, backoff_ns: 0, last_error: None })
            .collect();
        // Where peers that join later reach us: where we listen, unless that says nothing
        // (a wildcard address), then the description's.
        let listening = network.local_addr().ok().filter(|addr| !addr.ip().is_unspecified());
        let addr = listening.or_else(|| config.spec.addr_of(config.me));
        let joining = Joining { incarnation: config.incarnation, entry: config.entry, addr };
        // Lower ids dial us, and any peer may when it joins.
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
            contacts,
            learned: false,
            spare_peers: config.spare_peers,
        })
    }

    /// Makes what progress it can without blocking (a TCP dial may take a moment). `now_ns`
    /// is any monotonic clock; the deadline counts from the first poll. Fails once the
    /// deadline has passed with peers still missing (rejoining or joining: with every peer
    /// missing).
    pub fn poll(&mut self, now_ns: u64) -> Result<Progress> {
        let started = *self.started_ns.get_or_insert(now_ns);
        if self.is_done() {
            return Ok(Progress::Done);
        }
        if now_ns.saturating_sub(started) >= self.deadline.as_nanos() as u64 {
            let joins = self.joining.entry.joins_running();
            if joins && self.peers.values().any(|peer| peer.established.is_some()) {
                self.settled = true;
                return Ok(Progress::Done);
            }
            return Err(self.deadline_error(Duration::from_nanos(now_ns - started)));
        }
        let mut busy = self.dial_due(now_ns);
        let mut host = Joiner {
            local: &mut self.local,
            peers: &mut self.peers,
            me: self.me,
            ours: self.joining,
            learned: &mut self.learned,
        };
        busy |= self.connections.poll(now_ns, &mut host);
        for failure in self.connections.take_failures() {
            self.peer_failed(failure.node, failure.reason, now_ns);
        }
        for failure in self.connections.take_contact_failures() {
            self.contact_failed(failure.addr, failure.reason, now_ns);
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

    /// The peers not connected yet (joining a running cluster: those known so far).
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
    /// listening for peers that restart or join on the network bootstrap used, with
    /// [`NodeConfig::spare_peers`] sets of QPs made for those that join.
    pub fn finish(mut self) -> Result<Cluster> {
        self.flush_established();
        if !self.is_done() {
            return Err(Error::config(format!(
                "finish() called with peers {:?} still missing",
                self.missing()
            )));
        }
        self.local.add_spares(self.spare_peers)?;
        let mut refused = self.connections.refused();
        refused.extend(self.connections.impostors_refused());
        let reasons: BTreeMap<NodeId, String> = self.missing_reasons().into_iter().collect();
        let peers = self
            .peers
            .into_iter()
            .map(|(node, peer)| {
                let addr = peer.addr;
                let start = match (peer.established, peer.incarnation) {
                    (Some(established), Some(incarnation)) => {
                        PeerStart::Joined { incarnation, addr, established }
                    }
                    _ => PeerStart::Unreached { addr, reason: reasons[&node].clone() },
                };
                (node, start)
            })
            .collect::<BTreeMap<_, _>>();
        let mut connections = self.connections;
        connections.listen_only(peers.len());
        let (local, spec, me, joining) = (self.local, self.spec, self.me, self.joining);
        Ok(Cluster::from_bootstrap(local, spec, me, joining, peers, connections, refused))
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
        let all = self.peers.values().all(|peer| peer.established.is_some());
        // A joining node knows of nobody before a member answered.
        let anyone = self.joining.entry != Entry::Join || !self.peers.is_empty();
        self.settled || (all && anyone)
    }

    /// Why each missing peer is missing.
    fn missing_reasons(&self) -> Vec<(NodeId, String)> {
        self.peers
            .iter()
            .filter(|(_, peer)| peer.established.is_none())
            .map(|(&node, peer)| {
                let default = if self.connections.speaks_for(node) {
                    "connected, but the handshake did not finish".to_string()
                } else if node < self.me && !self.joining.entry.joins_running() {
                    "it never dialed us (lower ids dial higher ones)".to_string()
                } else {
                    "never reached".to_string()
                };
                (node, peer.last_error.clone().unwrap_or(default))
            })
            .collect()
    }

    fn deadline_error(&self, waited: Duration) -> Error {
        if self.joining.entry == Entry::Join {
            return Error::JoinFailed {
                me: self.me,
                waited,
                contacts: self.contact_reasons(),
                refused: self.connections.refused(),
                impostors: self.connections.impostors_refused(),
            };
        }
        Error::Deadline {
            me: self.me,
            waited,
            missing: self.missing_reasons(),
            refused: self.connections.refused(),
            impostors: self.connections.impostors_refused(),
        }
    }

    /// What went wrong at each contact (with the node that answered there, if one did), and
    /// with each member learned of elsewhere.
    fn contact_reasons(&self) -> Vec<(SocketAddr, String)> {
        let reasons: BTreeMap<NodeId, String> = self.missing_reasons().into_iter().collect();
        let mut listed: Vec<(SocketAddr, String)> = self
            .contacts
            .iter()
            .map(|contact| {
                let answered = self.peers.iter().find(|(_, peer)| peer.addr == contact.addr);
                let reason = match (answered, &contact.last_error) {
                    (Some((node, _)), _) => format!("node {node}: {}", reasons[node]),
                    (None, Some(error)) => error.clone(),
                    (None, None) => "never answered".to_string(),
                };
                (contact.addr, reason)
            })
            .collect();
        for (node, peer) in &self.peers {
            if !self.contacts.iter().any(|contact| contact.addr == peer.addr) {
                listed.push((peer.addr, format!("node {node}: {}", reasons[node])));
            }
        }
        listed
    }

    /// Dials what is due: peers (higher ids, or every peer when joining a running
    /// cluster), and contacts until a member told us whom to dial.
    fn dial_due(&mut self, now_ns: u64) -> bool {
        let joins = self.joining.entry.joins_running();
        let due: Vec<(NodeId, SocketAddr)> = self
            .peers
            .iter()
            .filter(|(&node, peer)| {
                (node > self.me || joins)
                    && peer.established.is_none()
                    && now_ns >= peer.next_dial_ns
                    && !self.connections.speaks_for(node)
                    && !self.connections.dialing(peer.addr)
            })
            .map(|(&node, peer)| (node, peer.addr))
            .collect();
        let contacts: Vec<SocketAddr> = self
            .contacts
            .iter()
            .filter(|contact| {
                !self.learned
                    && now_ns >= contact.next_dial_ns
                    && !self.connections.dialing(contact.addr)
                    && !self.peers.values().any(|peer| peer.addr == contact.addr)
            })
            .map(|contact| contact.addr)
            .collect();
        let dialed = !due.is_empty() || !contacts.is_empty();
        for (node, addr) in due {
            if let Err(reason) = self.connections.dial(node, addr, now_ns) {
                self.peer_failed(node, reason, now_ns);
            }
        }
        for addr in contacts {
            if let Err(reason) = self.connections.dial_contact(addr, now_ns) {
                self.contact_failed(addr, reason, now_ns);
            }
        }
        dialed
    }

    /// Records a failure at contact `addr` and schedules the next dial.
    fn contact_failed(&mut self, addr: SocketAddr, reason: String, now_ns: u64) {
        let contact = self.contacts.iter_mut().find(|contact| contact.addr == addr).expect("a contact");
        contact.backoff_ns = (contact.backoff_ns * 2).clamp(FIRST_BACKOFF_NS, MAX_BACKOFF_NS);
        contact.next_dial_ns = now_ns + contact.backoff_ns;
        contact.last_error = Some(reason);
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
