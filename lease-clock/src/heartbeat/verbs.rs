//! [`VerbsHeartbeats`]: heartbeats over plain verbs QPs — the node's own counter in a
//! registered word that peers READ, one QP per peer, and a slot per peer that READs land
//! in.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use usec_regions::RemoteRegion;
use usec_verbs::{
    AccessFlags, AsyncEventKind, Completion, CompletionQueue, ConnectOptions, Context, Endpoint,
    MemoryRegion, PeerProbe, ProtectionDomain, QpOptions, QueuePair, Region, RemoteAddr, SendWr, Sge,
};

use usec_qp_pool::{NodeId, WrId};

use crate::error::{Error, Result};
use crate::heartbeat::reader::HeartbeatReads;

/// Each peer's slot, and the published word, sit on a cache line of their own.
const SLOT_BYTES: usize = 64;

/// What a peer needs to read this node's heartbeat: the endpoint of this node's QP for
/// that peer, and where the counter lives. Text form: `<endpoint> <addr hex> <rkey hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeartbeatEndpoint {
    /// The QP the peer connects to.
    pub endpoint: Endpoint,
    /// The heartbeat word.
    pub heartbeat: RemoteAddr,
}

impl fmt::Display for HeartbeatEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:x} {:x}", self.endpoint, self.heartbeat.addr, self.heartbeat.rkey)
    }
}

impl FromStr for HeartbeatEndpoint {
    type Err = Error;

    fn from_str(text: &str) -> Result<HeartbeatEndpoint> {
        let bad = |why: &str| Error::config(format!("heartbeat endpoint {text:?}: {why}"));
        let mut words = text.split_whitespace();
        let mut next = |what: &str| words.next().ok_or_else(|| bad(&format!("missing {what}")));
        let endpoint = next("the endpoint")?.parse().map_err(|_| bad("bad endpoint"))?;
        let addr = u64::from_str_radix(next("the address")?, 16).map_err(|_| bad("bad address"))?;
        let rkey = u32::from_str_radix(next("the rkey")?, 16).map_err(|_| bad("bad rkey"))?;
        // The text names one 8-byte word; it must not wrap the address space.
        let word = RemoteRegion::new(addr, 8, rkey)
            .map_err(|_| bad("the heartbeat word wraps the address space"))?;
        let heartbeat = RemoteAddr::within(&word, 0, 8).map_err(|_| bad("the heartbeat word"))?;
        Ok(HeartbeatEndpoint { endpoint, heartbeat })
    }
}

/// One node's heartbeat glue: its published counter, and a QP and a READ slot per peer
/// (peers by [`NodeId`]; the node itself is not one of them).
/// Implements [`HeartbeatReads`] for a [`crate::heartbeat::HeartbeatReader`].
pub struct VerbsHeartbeats {
    // Declared first: QPs go before the CQ and the memory.
    qps: Vec<QueuePair>,
    cq: CompletionQueue,
    context: Context,
    published_mr: MemoryRegion,
    published: Arc<Region>,
    slots_mr: MemoryRegion,
    slots: Arc<Region>,
    /// The peers, in the order of `qps`, `remotes` and the slots.
    peers: Vec<NodeId>,
    remotes: Vec<Option<RemoteAddr>>,
    /// QP number → index in `peers`.
    index_of_qp: HashMap<u32, usize>,
    batch: [Completion; 16],
    pending: VecDeque<Completion>,
}

impl fmt::Debug for VerbsHeartbeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerbsHeartbeats").field("peers", &self.peers).finish()
    }
}

impl VerbsHeartbeats {
    /// The glue for `peers` (each once) on `pd`, with QPs created (not connected).
    pub fn new(pd: &ProtectionDomain, peers: &[NodeId]) -> Result<VerbsHeartbeats> {
        for (index, node) in peers.iter().enumerate() {
            if peers[..index].contains(node) {
                return Err(Error::config(format!("node {node} is listed twice")));
            }
        }
        let context = pd.context().clone();
        let depth = u32::try_from(4 * peers.len().max(1)).map_err(|_| Error::config("too many peers"))?;
        let cq = context.create_cq(depth).map_err(Error::verbs("creating the heartbeat CQ"))?;
        let published =
            Arc::new(Region::new(SLOT_BYTES).map_err(Error::region("allocating the heartbeat word"))?);
        let published_mr = pd
            .register(&published, AccessFlags::LOCAL_WRITE | AccessFlags::REMOTE_READ)
            .map_err(Error::verbs("registering the heartbeat word"))?;
        let slots = Arc::new(
            Region::new(SLOT_BYTES * peers.len().max(1))
                .map_err(Error::region("allocating the READ slots"))?,
        );
        let slots_mr = pd
            .register(&slots, AccessFlags::LOCAL_WRITE)
            .map_err(Error::verbs("registering the READ slots"))?;
        let mut qps = Vec::with_capacity(peers.len());
        let mut index_of_qp = HashMap::new();
        for index in 0..peers.len() {
            let qp = pd
                .create_qp(&cq, &cq, &QpOptions::default())
                .map_err(Error::verbs("creating a heartbeat QP"))?;
            index_of_qp.insert(qp.qp_num(), index);
            qps.push(qp);
        }
        Ok(VerbsHeartbeats {
            qps,
            cq,
            context,
            published_mr,
            published,
            slots_mr,
            slots,
            peers: peers.to_vec(),
            remotes: vec![None; peers.len()],
            index_of_qp,
            batch: [Completion::default(); 16],
            pending: VecDeque::new(),
        })
    }

    /// Its peers, in the order given.
    pub fn peers(&self) -> &[NodeId] {
        &self.peers
    }

    /// What `peer` needs to connect to this node and read its heartbeat.
    pub fn local(&self, peer: NodeId) -> Result<HeartbeatEndpoint> {
        let qp = &self.qps[self.index_of(peer)?];
        let heartbeat = self.published_mr.remote_addr(0).map_err(Error::verbs("the heartbeat word"))?;
        Ok(HeartbeatEndpoint { endpoint: qp.endpoint(), heartbeat })
    }

    /// Connects this node's QP for `peer` to the peer's QP for this node, and remembers
    /// where the peer's heartbeat lives.
    pub fn connect(
        &mut self,
        peer: NodeId,
        remote: &HeartbeatEndpoint,
        options: &ConnectOptions,
    ) -> Result<()> {
        let index = self.index_of(peer)?;
        self.qps[index]
            .connect(&remote.endpoint, options)
            .map_err(Error::verbs("connecting a heartbeat QP"))?;
        self.remotes[index] = Some(remote.heartbeat);
        Ok(())
    }

    /// Publishes this node's counter (what [`crate::detector::HeartbeatCounter::tick`]
    /// returned).
    pub fn publish(&self, value: u64) {
        self.published
            .atomic_u64(0)
            .expect("the word is in bounds and aligned")
            .store(value, Ordering::Release);
    }

    /// The peer whose QP has number `qp_num`.
    pub fn peer_of_qp(&self, qp_num: u32) -> Option<NodeId> {
        self.index_of_qp.get(&qp_num).map(|&index| self.peers[index])
    }

    /// Drains the context's asynchronous events and returns the peers reported lost; other
    /// events (and losses on QPs that are not this glue's) are dropped. Meant for a context
    /// the heartbeat glue has to itself.
    pub fn poll_lost_peers(&self) -> Vec<NodeId> {
        let mut lost = Vec::new();
        while let Some(event) = self.context.poll_event() {
            if event.kind == AsyncEventKind::PeerLost {
                lost.extend(event.qp_num.and_then(|qp_num| self.peer_of_qp(qp_num)));
            }
        }
        lost
    }

    fn index_of(&self, peer: NodeId) -> Result<usize> {
        self.peers.iter().position(|&node| node == peer).ok_or(Error::UnknownPeer { peer })
    }

    fn slot_sge(&self, index: usize) -> Result<Sge> {
        self.slots_mr.sge(index * SLOT_BYTES, 8).map_err(Error::verbs("a READ slot"))
    }
}

impl HeartbeatReads for VerbsHeartbeats {
    fn post_read(&mut self, peer: NodeId, wr_id: WrId) -> Result<()> {
        let index = self.index_of(peer)?;
        let remote =
            self.remotes[index].ok_or_else(|| Error::config(format!("node {peer} is not connected")))?;
        let sge = self.slot_sge(index)?;
        self.qps[index]
            .post_send(&[SendWr::read(wr_id.to_raw(), remote, &sge)])
            .map_err(Error::verbs("posting a heartbeat READ"))
    }

    fn poll_completion(&mut self) -> Option<Completion> {
        if self.pending.is_empty() {
            let count = self.cq.poll(&mut self.batch);
            self.pending.extend(&self.batch[..count]);
        }
        self.pending.pop_front()
    }

    fn probe(&mut self, peer: NodeId) -> PeerProbe {
        self.index_of(peer).map_or(PeerProbe::Unknown, |index| self.qps[index].probe_peer())
    }

    fn read_value(&self, peer: NodeId) -> Option<u64> {
        let index = self.index_of(peer).ok()?;
        Some(self.slots.atomic_u64(index * SLOT_BYTES).expect("slots are in bounds").load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use usec_verbs::qp::{Address, Mtu};

    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint { qp_num: 0x12, psn: 7, mtu: Mtu::Mtu4096, address: Address::Sim { fabric: 3, node: 1 } }
    }

    #[test]
    fn the_text_form_round_trips() {
        let heartbeat = HeartbeatEndpoint {
            endpoint: endpoint(),
            heartbeat: RemoteAddr { addr: 0x7f00_1000, rkey: 0xab },
        };
        assert_eq!(heartbeat.to_string().parse::<HeartbeatEndpoint>().unwrap(), heartbeat);
    }

    #[test]
    fn a_word_that_wraps_the_address_space_is_refused() {
        let text = format!("{} {:x} 1", endpoint(), u64::MAX - 3);
        let error = text.parse::<HeartbeatEndpoint>().unwrap_err().to_string();
        assert!(error.contains("wraps the address space"), "{error}");
        // The highest word a RemoteRegion can describe: its end, one past it, still fits.
        let last_word = format!("{} {:x} 1", endpoint(), u64::MAX - 8);
        assert_eq!(last_word.parse::<HeartbeatEndpoint>().unwrap().heartbeat.addr, u64::MAX - 8);
    }
}
