//! The per-connection handshake, sans IO: bytes received go in, bytes to send and events
//! come out; the caller moves the bytes and does the verbs work the events ask for.
//!
//! Both ends send `Hello` at once. Each checks the other's (cluster, run, node id: not ours,
//! the one we dialed; and that both or neither have a cluster key). How the two enter the
//! cluster decides the rest ([`Entry`]): between nodes of the description (starting, or
//! restarted into the running cluster) the description digests must match, the id must be
//! in it, and lower ids dial higher ones unless the dialer rejoins; a node that joins with
//! no description ([`Entry::Join`]) is checked for none of that (its id is new, or its
//! description is only itself) and must say where it takes connections. The hello also
//! carries the sender's incarnation ([`Joining`]), which the caller weighs against what it
//! knows of that node ([`Handshake::peer_joining`]).
//! Without a cluster key it then reports [`HandshakeEvent::Identified`]. With one, each
//! end derives the connection's session key from both hellos, authenticates the channel
//! (every later frame is tagged; see [`wire::auth`](crate::wire::auth)) and sends `Proof`,
//! a frame whose tag only a holder of the key could make for this connection; the peer is
//! identified only once its own `Proof` verifies (so an incarnation is believed only from
//! a holder of the key). Nothing about our QPs or regions leaves before that. The caller
//! then checks the id and incarnation against its other connections (duplicates, stale
//! incarnations). To a peer that joins a running cluster it first sends the members it
//! knows ([`Handshake::send_members`], reported on the other end as
//! [`HandshakeEvent::Members`]): that is how a joining node learns whom else to connect
//! to, over the same authenticated channel. Then it sends its `Offer`: the QP endpoints it
//! made for that peer and its region descriptors. On the peer's offer
//! ([`HandshakeEvent::Offer`]) the caller connects its QPs to the peer's
//! endpoints and confirms ([`Handshake::confirm_connected`]), which sends `Ready`. With
//! `Ready` sent and received the connection is [`HandshakeEvent::Established`]: both
//! sides' QPs are ready to send, and the connection carries control messages from then on
//! ([`Handshake::into_channel`]).
//!
//! Any error queues a `Reject` frame saying why, so a refused peer learns the reason
//! instead of seeing a bare disconnect; the caller flushes it and closes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::spec::{ClusterSpec, NodeId};
use crate::wire::auth::Session;
pub use crate::wire::Entry;
use crate::wire::{Channel, Hello, Members, Message, Offer, Reject};

/// Which end of the connection we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// We dialed `expected` (whose id is higher than ours).
    Dialer {
        /// The node we meant to reach.
        expected: NodeId,
    },
    /// We accepted the connection (the peer's id must be lower than ours, unless it joins
    /// a running cluster).
    Listener,
    /// We dialed a member's address given to a joining node, not knowing which node
    /// answers there.
    Contact,
}

impl Side {
    /// Whether we dialed.
    pub fn dialed(self) -> bool {
        self != Side::Listener
    }
}

/// Which process of a node a hello speaks for: its incarnation (a restarted node presents
/// a higher one than the process it replaces), how it enters the cluster, and where it
/// takes connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Joining {
    /// The incarnation.
    pub incarnation: u64,
    /// How it enters the cluster.
    pub entry: Entry,
    /// Its control address, if it says.
    pub addr: Option<SocketAddr>,
}

/// What the caller must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandshakeEvent {
    /// The peer said who it is and passed the checks (with a cluster key: proved that it
    /// holds it); send it an offer.
    Identified(NodeId),
    /// The members the peer knows (we join a running cluster): connect to them too.
    Members(Members),
    /// The peer's endpoints and descriptors; connect the QPs, then confirm.
    Offer(Offer),
    /// Both sides' QPs are connected.
    Established,
}

/// One connection's handshake.
#[derive(Debug)]
pub struct Handshake {
    spec: Arc<ClusterSpec>,
    me: NodeId,
    side: Side,
    label: String,
    channel: Channel,
    /// Our hello, kept for the session key.
    hello: Hello,
    /// The id the peer's hello claimed, once the hello passed the checks.
    claimed: Option<NodeId>,
    /// The incarnation, entry and address of the peer's hello (meaningful once `claimed`).
    theirs: Joining,
    /// The peer, once identified (with a cluster key, once it proved that it holds it).
    peer: Option<NodeId>,
    members_received: bool,
    offer_sent: bool,
    offer_received: bool,
    ready_sent: bool,
    ready_received: bool,
    failed: bool,
    events: VecDeque<HandshakeEvent>,
}

impl Handshake {
    /// A handshake for node `me` of `spec`; `label` names the connection in errors until
    /// the peer is identified (e.g. its address). `nonce` must be fresh and unpredictable
    /// for every connection (the caller draws it from the operating system): with a
    /// cluster key, it is what makes frames recorded on another connection useless here.
    /// Our `Hello` is queued at once. It presents incarnation 0 of a node of the description
    /// that starts with the others: [`Handshake::for_incarnation`] says otherwise.
    pub fn new(spec: Arc<ClusterSpec>, me: NodeId, side: Side, label: &str, nonce: [u8; 32]) -> Handshake {
        Handshake::for_incarnation(spec, me, Joining::default(), side, label, nonce)
    }

    /// [`Handshake::new`] for the process of `me` that `joining` describes: its
    /// incarnation, how it enters the cluster (joining a running one, it may dial lower
    /// ids) and where it takes connections.
    pub fn for_incarnation(
        spec: Arc<ClusterSpec>,
        me: NodeId,
        joining: Joining,
        side: Side,
        label: &str,
        nonce: [u8; 32],
    ) -> Handshake {
        let hello = Hello {
            cluster: spec.cluster.clone(),
            run: spec.run.clone(),
            node: me.get(),
            spec_digest: spec.digest(),
            nonce,
            keyed: spec.key.is_some(),
            incarnation: joining.incarnation,
            entry: joining.entry,
            addr: joining.addr,
        };
        let mut channel = Channel::default();
        channel.send(&Message::Hello(hello.clone()));
        Handshake {
            spec,
            me,
            side,
            label: label.to_string(),
            channel,
            hello,
            claimed: None,
            theirs: Joining::default(),
            peer: None,
            members_received: false,
            offer_sent: false,
            offer_received: false,
            ready_sent: false,
            ready_received: false,
            failed: false,
            events: VecDeque::new(),
        }
    }

    /// The peer, once identified.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
    }

    /// The incarnation of the peer, how it enters and where it listens, once identified.
    pub fn peer_joining(&self) -> Option<Joining> {
        self.peer.map(|_| self.theirs)
    }

    /// Which end we are.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The peer as errors name it: `node 2` once identified, else the connection's label
    /// and, on a connection we accepted, the id its hello claimed.
    pub fn who(&self) -> String {
        match (self.peer, self.claimed) {
            (Some(peer), _) => format!("node {peer}"),
            (None, Some(claimed)) if matches!(self.side, Side::Listener | Side::Contact) => {
                format!("{} (claiming node {claimed})", self.label)
            }
            (None, _) => self.label.clone(),
        }
    }

    /// Whether both sides are connected.
    pub fn is_established(&self) -> bool {
        self.ready_sent && self.ready_received
    }

    /// Whether the handshake failed (a `Reject` may still wait in [`Handshake::outgoing`]).
    pub fn has_failed(&self) -> bool {
        self.failed
    }

    /// Feeds received bytes. An error fails the handshake and queues a `Reject` (unless
    /// the peer rejected us). Bytes after the handshake stay buffered for the channel.
    pub fn handle_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        if self.failed {
            return Ok(());
        }
        self.channel.received(bytes);
        while !self.is_established() {
            let message = match self.channel.next_message() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(Error::Unauthenticated { reason, .. }) => {
                    let error = Error::Unauthenticated { peer: self.who(), reason };
                    return Err(self.fail(error));
                }
                Err(error) => return Err(self.fail(error)),
            };
            if let Err(error) = self.handle_message(message) {
                return Err(match error {
                    Error::RejectedByPeer { .. } => {
                        self.failed = true;
                        error
                    }
                    other => self.fail(other),
                });
            }
        }
        Ok(())
    }

    /// The connection ended; returns why that is an error (a frame cut short, or the
    /// handshake unfinished).
    pub fn handle_end_of_stream(&mut self) -> Error {
        if let Some(error) = self.channel.decoder().end_of_stream() {
            return self.fail(error);
        }
        self.failed = true;
        let stage = match (self.peer, self.offer_received, self.ready_received) {
            (None, ..) if self.claimed.is_some() => "before proving that it holds the cluster key",
            (None, ..) => "before saying who it is",
            (Some(_), false, _) => "before sending its offer",
            (Some(_), true, false) => "before connecting its QPs",
            (Some(_), true, true) => "after connecting its QPs, before we did",
        };
        Error::Protocol { peer: self.who(), reason: format!("closed the connection {stage}") }
    }

    /// The next event to act on.
    pub fn poll_event(&mut self) -> Option<HandshakeEvent> {
        self.events.pop_front()
    }

    /// Sends the members we know to the identified peer, which joins a running cluster;
    /// before the offer.
    pub fn send_members(&mut self, members: Members) {
        assert!(self.peer.is_some() && !self.offer_sent && !self.failed, "members sent out of turn");
        assert!(self.theirs.entry.joins_running(), "members sent to a node that does not join");
        self.channel.send(&Message::Members(members));
    }

    /// Sends our offer to the identified peer.
    pub fn send_offer(&mut self, offer: Offer) {
        assert!(self.peer.is_some() && !self.offer_sent && !self.failed, "offer sent out of turn");
        self.channel.send(&Message::Offer(offer));
        self.offer_sent = true;
    }

    /// Our QPs are connected to the peer's offer: sends `Ready`.
    pub fn confirm_connected(&mut self) {
        assert!(self.offer_sent && self.offer_received && !self.ready_sent, "confirmed out of turn");
        self.channel.send(&Message::Ready);
        self.ready_sent = true;
        if self.ready_received {
            self.events.push_back(HandshakeEvent::Established);
        }
    }

    /// Refuses the peer for `error` (e.g. a duplicate the caller found); returns the error.
    pub fn reject(&mut self, error: Error) -> Error {
        self.fail(error)
    }

    /// Bytes to write to the connection.
    pub fn outgoing(&self) -> &[u8] {
        self.channel.outgoing()
    }

    /// `written` bytes of [`Handshake::outgoing`] were written.
    pub fn written(&mut self, written: usize) {
        self.channel.written(written);
    }

    /// The connection, established, for control messages (with anything received after
    /// the handshake still buffered in it).
    pub fn into_channel(self) -> Channel {
        assert!(self.is_established(), "the handshake is not finished");
        self.channel
    }

    fn fail(&mut self, error: Error) -> Error {
        if !self.failed {
            self.failed = true;
            self.channel.send(&Message::Reject(Reject { reason: error.to_string() }));
        }
        error
    }

    fn protocol(&self, reason: impl Into<String>) -> Error {
        Error::Protocol { peer: self.who(), reason: reason.into() }
    }

    fn handle_message(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Hello(hello) => self.handle_hello(hello),
            Message::Proof => self.handle_proof(),
            Message::Offer(_) if self.claimed.is_none() => {
                Err(self.protocol("sent an offer before its hello"))
            }
            Message::Offer(_) if self.peer.is_none() => Err(self.protocol("sent an offer before its proof")),
            Message::Offer(_) if self.offer_received => Err(self.protocol("sent a second offer")),
            Message::Members(_) if !self.hello.entry.joins_running() => {
                Err(self.protocol("sent its members, and we do not join"))
            }
            Message::Members(_) if self.peer.is_none() => {
                Err(self.protocol("sent its members before it proved who it is"))
            }
            Message::Members(_) if self.members_received || self.offer_received => {
                Err(self.protocol("sent its members twice, or after its offer"))
            }
            Message::Members(members) => {
                self.members_received = true;
                self.events.push_back(HandshakeEvent::Members(members));
                Ok(())
            }
            Message::Offer(offer) => {
                self.offer_received = true;
                self.events.push_back(HandshakeEvent::Offer(offer));
                Ok(())
            }
            Message::Ready if !(self.offer_sent && self.offer_received) || self.ready_received => {
                Err(self.protocol("said ready before the offers were exchanged"))
            }
            Message::Ready => {
                self.ready_received = true;
                if self.ready_sent {
                    self.events.push_back(HandshakeEvent::Established);
                }
                Ok(())
            }
            Message::Reject(reject) => Err(Error::RejectedByPeer { peer: self.who(), reason: reject.reason }),
            other => Err(self.protocol(format!("sent a {:?} frame during the handshake", other.kind()))),
        }
    }

    fn handle_hello(&mut self, hello: Hello) -> Result<()> {
        if self.claimed.is_some() {
            return Err(self.protocol("said hello twice"));
        }
        let members = || self.spec.member_list();
        let peer = NodeId::new(hello.node)
            .map_err(|_| Error::UnknownNode { node: hello.node, members: members() })?;
        if hello.cluster != self.spec.cluster {
            return Err(Error::WrongCluster { peer, theirs: hello.cluster, ours: self.spec.cluster.clone() });
        }
        if hello.run != self.spec.run {
            return Err(Error::WrongRun { peer, theirs: hello.run, ours: self.spec.run.clone() });
        }
        // A node that joins has no description to compare, and may bring an id that no
        // description lists: it is checked for who it says it is, and (with a key) for
        // holding the key, like anyone.
        let described = self.hello.entry != Entry::Join && hello.entry != Entry::Join;
        let digest = self.spec.digest();
        if described && hello.spec_digest != digest {
            return Err(Error::SpecMismatch { peer, theirs: hello.spec_digest, ours: digest });
        }
        if peer == self.me {
            return Err(Error::DuplicateNode { node: peer, reason: "the peer claims our own id".into() });
        }
        if described && !self.spec.nodes.contains_key(&peer) {
            return Err(Error::UnknownNode { node: peer.get(), members: members() });
        }
        if hello.entry == Entry::Join && hello.addr.is_none() {
            return Err(self.protocol(format!("node {peer} joins without saying where it takes connections")));
        }
        match self.side {
            Side::Dialer { expected } if expected != peer => {
                return Err(self.protocol(format!("we dialed node {expected}, but node {peer} answered")));
            }
            Side::Listener if peer > self.me && !hello.entry.joins_running() => {
                return Err(self.protocol(format!(
                    "node {peer} dialed node {}, but lower ids dial higher ones (unless joining a running cluster)",
                    self.me
                )));
            }
            _ => {}
        }
        self.claimed = Some(peer);
        self.theirs = Joining { incarnation: hello.incarnation, entry: hello.entry, addr: hello.addr };
        let Some(key) = &self.spec.key else {
            if hello.keyed {
                return Err(self.unauthenticated("it has a cluster key, this node has none"));
            }
            self.identify(peer);
            return Ok(());
        };
        if !hello.keyed {
            return Err(self.unauthenticated("it has no cluster key, and this cluster requires one"));
        }
        let we_dialed = self.side.dialed();
        let (dialer, listener) = if we_dialed { (&self.hello, &hello) } else { (&hello, &self.hello) };
        self.channel.authenticate(Session::new(key, dialer, listener, we_dialed));
        self.channel.send(&Message::Proof);
        Ok(())
    }

    /// The peer's proof, whose tag the channel verified before it got here.
    fn handle_proof(&mut self) -> Result<()> {
        match (self.spec.key.is_some(), self.claimed, self.peer) {
            (false, ..) => Err(self.protocol("sent a proof, and this cluster has no key")),
            (true, None, _) => Err(self.protocol("sent a proof before its hello")),
            (true, Some(_), Some(_)) => Err(self.protocol("sent a second proof")),
            (true, Some(claimed), None) => {
                self.identify(claimed);
                Ok(())
            }
        }
    }

    fn identify(&mut self, peer: NodeId) {
        self.peer = Some(peer);
        self.events.push_back(HandshakeEvent::Identified(peer));
    }

    fn unauthenticated(&self, reason: &str) -> Error {
        Error::Unauthenticated { peer: self.who(), reason: reason.into() }
    }
}

#[cfg(test)]
mod keyed_tests;
#[cfg(test)]
mod tests;
