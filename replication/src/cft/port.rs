//! [`Port`]: the narrow seam between the Mu roles and the cluster under them.
//!
//! Roles never touch verbs: they say "WRITE these bytes to this place in that peer's
//! memory", "READ that into here", "let that peer write my log, or not", and learn the
//! outcome later as a completion carrying the work-request id they chose. The real port
//! posts on a qp-pool cluster ([`crate::cft::cluster_port::ClusterPort`]) — on any provider, the
//! simulator included.

use usec_qp_pool::NodeId;

/// One of a replica's two regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Area {
    /// The log region: peers READ it, one peer at a time may WRITE it.
    Log,
    /// The control region: every peer may WRITE its own inbox lines.
    Control,
}

/// A place in a replica's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Place {
    /// Which region.
    pub area: Area,
    /// Where in it.
    pub offset: usize,
}

impl Place {
    /// In the log region.
    pub fn log(offset: usize) -> Place {
        Place { area: Area::Log, offset }
    }

    /// In the control region.
    pub fn control(offset: usize) -> Place {
        Place { area: Area::Control, offset }
    }
}

/// What a WRITE carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// These bytes, copied when posting.
    Bytes(&'a [u8]),
    /// `len` bytes of this replica's own memory, read by the NIC when it sends (they must
    /// not change until the WRITE completes).
    Local(Place, usize),
}

/// The QPs to a peer: a WRITE into a peer's log region goes on the log QP (the one whose
/// write right the peer toggles); everything else on the control QP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    /// The log QP.
    Log,
    /// The control QP.
    Control,
}

impl Channel {
    /// The channel a WRITE to `target` travels on.
    pub fn of_write(target: Place) -> Channel {
        match target.area {
            Area::Log => Channel::Log,
            Area::Control => Channel::Control,
        }
    }

    /// Both.
    pub const ALL: [Channel; 2] = [Channel::Log, Channel::Control];

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A post the port could not make (the QP is broken, or the peer is gone).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("posting to node {peer} on the {channel:?} channel: {reason}")]
pub struct PortError {
    /// The peer.
    pub peer: NodeId,
    /// The channel.
    pub channel: Channel,
    /// Why.
    pub reason: String,
}

/// What the roles need from the cluster.
pub trait Port {
    /// Posts a WRITE of `source` to `target` in `peer`'s memory, signaled, with `wr_id`.
    fn write(&mut self, peer: NodeId, wr_id: u64, source: Source<'_>, target: Place)
        -> Result<(), PortError>;

    /// Posts a READ of `len` bytes at `from` in `peer`'s memory into `into` in this
    /// replica's memory, signaled, with `wr_id`. Travels on the control QP.
    fn read(
        &mut self,
        peer: NodeId,
        wr_id: u64,
        from: Place,
        len: usize,
        into: Place,
    ) -> Result<(), PortError>;

    /// Lets `peer` write this replica's log region, or stops it. When this returns after
    /// a revocation, no WRITE of `peer`'s can land in the log any more.
    fn allow_log_writer(&mut self, peer: NodeId, allowed: bool) -> Result<(), PortError>;

    /// Starts repairing the `channel` QP to `peer` after an error; the driver reports the
    /// end with [`crate::cft::Replica::handle_repaired`].
    fn repair(&mut self, peer: NodeId, channel: Channel);
}
