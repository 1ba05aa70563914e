//! What a bootstrapping node decides for its connections: whom it admits, what it offers,
//! the members it tells a node that joins, and what it learns from the members it reaches
//! when it joins itself.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use usec_regions::RemoteRegion;

use super::PeerProgress;
use crate::cluster::local::LocalNode;
use crate::connections::incarnation::{admit, Admission};
use crate::connections::{Host, Joined};
use crate::error::{Error, Result};
use crate::handshake::Joining;
use crate::spec::NodeId;
use crate::wire::{Member, Members, Message, Offer, Reject};

/// The bootstrap's side of its connections.
pub(super) struct Joiner<'a> {
    pub(super) local: &'a mut LocalNode,
    pub(super) peers: &'a mut BTreeMap<NodeId, PeerProgress>,
    pub(super) me: NodeId,
    /// How this node enters the cluster.
    pub(super) ours: Joining,
    /// Set once a member sent the members it knows.
    pub(super) learned: &'a mut bool,
}

impl Host for Joiner<'_> {
    fn admit(&mut self, node: NodeId, joining: Joining, dialed: Option<SocketAddr>) -> Result<Offer> {
        let reached_at = dialed.or(joining.addr);
        if !self.peers.contains_key(&node) {
            // Only a node that joins a running cluster itself takes nodes it did not know:
            // the others have no QPs made for them until their cluster runs.
            if !self.ours.entry.joins_running() {
                let reason =
                    format!("node {} is still in its first bootstrap; join once the cluster runs", self.me);
                return Err(Error::JoinRefused { node, reason });
            }
            let Some(addr) = reached_at else {
                let reason = "it does not say where it takes connections".to_string();
                return Err(Error::Protocol { peer: format!("node {node}"), reason });
            };
            self.local.attach(node)?;
            self.peers.insert(node, PeerProgress::at(addr));
        }
        let peer = self.peers.get_mut(&node).expect("a peer");
        match admit(node, peer.incarnation, peer.established.is_some(), joining.incarnation)? {
            Admission::First | Admission::Again => {}
            // The process we connected to was replaced before bootstrap finished: its
            // connection goes, and our QPs are reset for the new one by the offer.
            Admission::Newer { .. } => peer.established = None,
        }
        peer.incarnation = Some(joining.incarnation);
        if let Some(addr) = reached_at {
            peer.addr = addr;
        }
        self.local.flush(node)?;
        self.local.offer_for(node)
    }

    fn members(&self, to: NodeId) -> Members {
        let mut members: Vec<Member> = Vec::new();
        if let Some(addr) = self.ours.addr {
            members.push(Member { node: self.me.get(), incarnation: self.ours.incarnation, addr });
        }
        for (&node, peer) in self.peers.iter() {
            if let (true, Some(incarnation)) = (node != to, peer.incarnation) {
                members.push(Member { node: node.get(), incarnation, addr: peer.addr });
            }
        }
        Members { members }
    }

    fn learn(&mut self, from: NodeId, members: &Members) -> Result<()> {
        *self.learned = true;
        for member in &members.members {
            let node = NodeId::new(member.node)?;
            if node == self.me {
                continue;
            }
            let Some(peer) = self.peers.get_mut(&node) else {
                self.local.attach(node)?;
                let mut peer = PeerProgress::at(member.addr);
                peer.incarnation = Some(member.incarnation);
                self.peers.insert(node, peer);
                continue;
            };
            if peer.incarnation.is_some_and(|known| known >= member.incarnation) {
                continue;
            }
            // A member vouches for a newer process than the one we know: whatever we
            // reached of the old one (a stopped process at its old address) is outdated.
            if let Some(mut outdated) = peer.established.take() {
                let old = peer.incarnation.unwrap_or_default();
                let reason = Error::StaleIncarnation { node, theirs: old, current: member.incarnation };
                let reason = format!("node {from} says {reason}");
                outdated.channel.send(&Message::Reject(Reject { reason }));
                let _ = outdated.link.write_some(outdated.channel.outgoing());
                outdated.link.close();
                self.local.flush(node)?;
            }
            peer.incarnation = Some(member.incarnation);
            peer.addr = member.addr;
            peer.next_dial_ns = 0;
        }
        Ok(())
    }

    fn accept_offer(&mut self, node: NodeId, offer: &Offer) -> Result<BTreeMap<String, RemoteRegion>> {
        self.local.accept_offer(node, offer)
    }

    fn joined(&mut self, joined: Joined) {
        let peer = self.peers.get_mut(&joined.node).expect("a peer");
        if peer.incarnation.is_some_and(|known| known > joined.incarnation) {
            // A member vouched for a newer process while this one finished its handshake.
            let mut outdated = joined.peer;
            outdated.link.close();
            return;
        }
        peer.established = Some(joined.peer);
        peer.last_error = None;
        if let Some(addr) = joined.addr {
            peer.addr = addr;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use usec_verbs::sim::SimFabric;
    use usec_verbs::AccessFlags;

    use super::*;
    use crate::connections::EstablishedPeer;
    use crate::handshake::Entry;
    use crate::transport::{Network, Received};
    use crate::wire::Channel;
    use crate::{ClusterSpec, MemoryHub, NodeConfig, RoleSpec};

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 7000))
    }

    fn node(id: u16) -> NodeId {
        NodeId::new(id).unwrap()
    }

    /// A member list naming a newer process of a node than the one a joining node reached
    /// (and finished its handshake with) ends that connection, telling the old process
    /// why, and has the newer one dialed at its own address.
    #[test]
    fn a_member_list_naming_a_newer_process_retires_the_connection_to_the_old_one() {
        let fabric = SimFabric::create("qp-pool-joiner-outdated", 1).unwrap();
        let (_, context) = fabric.open_node().unwrap();
        let spec = ClusterSpec::new("sim", "r", [(node(5), addr(6))]).unwrap();
        let config = NodeConfig::new(spec, node(5))
            .role(RoleSpec::new("replication", AccessFlags::REMOTE_WRITE))
            .deadline(Duration::from_secs(1))
            .join([addr(3)]);
        let mut local = LocalNode::create(&context, &config, &[]).unwrap();
        local.attach(node(2)).unwrap();
        // Node 2's old process, reached at its old address, handshake done.
        let hub = MemoryHub::new();
        let mut listener = hub.listen(addr(3)).unwrap();
        let mut dialer = hub.listen(addr(6)).unwrap();
        let link = dialer.dial(addr(3)).unwrap();
        let mut old_end = listener.accept().unwrap().expect("dialed");
        let established = EstablishedPeer { link, channel: Channel::default(), regions: BTreeMap::new() };
        let mut reached = PeerProgress::at(addr(3));
        reached.established = Some(established);
        reached.incarnation = Some(1);
        reached.next_dial_ns = 7;
        let mut peers = BTreeMap::from([(node(2), reached)]);
        let mut learned = false;
        let ours = Joining { incarnation: 1, entry: Entry::Join, addr: Some(addr(6)) };
        let mut joiner =
            Joiner { local: &mut local, peers: &mut peers, me: node(5), ours, learned: &mut learned };
        let members = Members {
            members: vec![
                Member { node: 0, incarnation: 4, addr: addr(1) },
                Member { node: 2, incarnation: 2, addr: addr(9) },
                Member { node: 5, incarnation: 1, addr: addr(6) },
            ],
        };
        joiner.learn(node(0), &members).unwrap();
        assert!(learned);
        let two = &peers[&node(2)];
        assert!(two.established.is_none(), "the old process's connection is gone");
        assert_eq!(
            (two.incarnation, two.addr, two.next_dial_ns),
            (Some(2), addr(9), 0),
            "dial the new one now"
        );
        assert_eq!((peers[&node(0)].incarnation, peers[&node(0)].addr), (Some(4), addr(1)));
        assert!(!peers.contains_key(&node(5)), "not ourselves");
        // The old process was told why, then the connection closed.
        let mut buffer = [0u8; 4096];
        let Ok(Received::Data(count)) = old_end.read_some(&mut buffer) else { panic!("nothing sent") };
        let message = Message::decode_exact(&buffer[..count]).unwrap();
        let Message::Reject(Reject { reason }) = message else { panic!("{message:?}") };
        assert_eq!(reason, "node 0 says node 2's incarnation 1 is stale: incarnation 2 has joined since");
        assert!(matches!(old_end.read_some(&mut buffer), Ok(Received::Closed)));
        // A member naming the process we know, or an older one, changes nothing.
        let mut joiner =
            Joiner { local: &mut local, peers: &mut peers, me: node(5), ours, learned: &mut learned };
        let stale = Members { members: vec![Member { node: 2, incarnation: 1, addr: addr(3) }] };
        joiner.learn(node(1), &stale).unwrap();
        assert_eq!((peers[&node(2)].incarnation, peers[&node(2)].addr), (Some(2), addr(9)));
    }
}
