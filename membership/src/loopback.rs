//! [`Loopback`]: two QPs of one node connected to each other, through which the node
//! reaches its own acceptor on a device whose atomics are atomic only against the device
//! (`atomics_global` false: rxe, a NIC that reports `IBV_ATOMIC_HCA`).
//!
//! Peers compare-and-swap the acceptor's slots through the device; a CPU compare-and-swap
//! on the same word is not atomic with theirs (the device reads, compares and writes the
//! word in steps the CPU does not see as one), so a CAS of this node's could slip between
//! the read and the write of a peer's and both would succeed against the same prediction.
//! Through a QP of its own, this node's operations are the device's like everyone's.
//! Posting is asynchronous as for a remote acceptor: completions come on the loopback's
//! CQ, in the order posted.

use usec_qp_pool::Cluster;
use usec_verbs::{AccessFlags, Completion, CompletionQueue, QpCaps, QpOptions, QueuePair, SendWr};

use crate::error::{Error, Result};

/// How many operations may be outstanding at once (a proposer chain and a learner READ,
/// with room to spare), and the CQ's depth.
const DEPTH: u32 = 64;

/// The node's QP to itself; see the [module documentation](self).
#[derive(Debug)]
pub(crate) struct Loopback {
    cq: CompletionQueue,
    initiator: QueuePair,
    /// The initiator's peer, the responder of its operations: kept, never posted on.
    _responder: QueuePair,
}

impl Loopback {
    /// A connected pair on the cluster's device and protection domain (that of the
    /// acceptor's region), created and connected with the options of the peers' QPs (on
    /// RoCE, the GID index that holds the node's address).
    pub(crate) fn new(cluster: &Cluster) -> Result<Loopback> {
        let cq = cluster.context().create_cq(2 * DEPTH).map_err(Error::verbs("the loopback CQ"))?;
        let options = QpOptions {
            caps: QpCaps { max_send_wr: DEPTH, max_recv_wr: 1, ..cluster.qp_options().caps },
            ..*cluster.qp_options()
        };
        let create = || cluster.pd().create_qp(&cq, &cq, &options).map_err(Error::verbs("a loopback QP"));
        let mut initiator = create()?;
        let mut responder = create()?;
        let mut connect = *cluster.connect_options();
        connect.init.access =
            AccessFlags::REMOTE_READ | AccessFlags::REMOTE_WRITE | AccessFlags::REMOTE_ATOMIC;
        let (to_responder, to_initiator) = (responder.endpoint(), initiator.endpoint());
        initiator.connect(&to_responder, &connect).map_err(Error::verbs("connecting the loopback QPs"))?;
        responder.connect(&to_initiator, &connect).map_err(Error::verbs("connecting the loopback QPs"))?;
        Ok(Loopback { cq, initiator, _responder: responder })
    }

    /// Posts one operation on the node's own memory.
    pub(crate) fn post(&mut self, wr: SendWr<'_>) -> Result<()> {
        self.initiator.post_send(&[wr]).map_err(Error::verbs("posting on the loopback QP"))
    }

    /// Polls completions into `out`, in the order posted; how many (0: none now).
    pub(crate) fn poll(&mut self, out: &mut [Completion]) -> usize {
        self.cq.poll(out)
    }
}
