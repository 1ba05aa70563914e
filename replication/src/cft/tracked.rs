//! [`Tracked`]: the port as the roles see it — every post counted per peer and channel
//! until its completion comes back, so a replica knows when nothing it posted to a peer
//! can still land.
//!
//! Why it matters: a follower that revoked this replica's write right and later grants
//! it again (this replica lost leadership and campaigns anew) would let a WRITE of the
//! earlier leadership that was still in flight land after the new grant, overwriting a
//! decided entry with a stale one. A replica therefore asks a peer for its log only when
//! no work request of its own to that peer's log is outstanding: each one has then
//! landed or failed, before the grant.

use usec_qp_pool::NodeId;

use crate::cft::port::{Channel, Place, Port, PortError, Source};

/// Work requests posted and not completed, per peer and channel: a counter per node id
/// and channel, grown to the highest id seen (counted on every post and completion of
/// the fast path, so no map).
#[derive(Clone, Debug, Default)]
pub(crate) struct InFlight {
    counts: Vec<[u64; 2]>,
}

impl InFlight {
    /// Posts outstanding to `peer` on `channel`.
    pub(crate) fn count(&self, peer: NodeId, channel: Channel) -> u64 {
        self.counts.get(usize::from(peer.get())).map_or(0, |counts| counts[channel.index()])
    }

    /// Whether any post is outstanding.
    pub(crate) fn any(&self) -> bool {
        self.counts.iter().any(|counts| counts != &[0; 2])
    }

    /// A completion came back.
    pub(crate) fn completed(&mut self, peer: NodeId, channel: Channel) {
        if let Some(counts) = self.counts.get_mut(usize::from(peer.get())) {
            counts[channel.index()] = counts[channel.index()].saturating_sub(1);
        }
    }

    /// The QP was reset: what was on it is gone, completions and all.
    pub(crate) fn forget(&mut self, peer: NodeId, channel: Channel) {
        if let Some(counts) = self.counts.get_mut(usize::from(peer.get())) {
            counts[channel.index()] = 0;
        }
    }

    fn posted(&mut self, peer: NodeId, channel: Channel) {
        let index = usize::from(peer.get());
        if self.counts.len() <= index {
            self.counts.resize(index + 1, [0; 2]);
        }
        self.counts[index][channel.index()] += 1;
    }
}

/// A [`Port`] that counts what it posts.
pub(crate) struct Tracked<'a> {
    pub(crate) port: &'a mut dyn Port,
    pub(crate) in_flight: &'a mut InFlight,
}

impl std::fmt::Debug for Tracked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked").field("in_flight", &self.in_flight).finish()
    }
}

impl Tracked<'_> {
    /// Whether nothing posted to `peer`'s log is outstanding.
    pub(crate) fn log_drained(&self, peer: NodeId) -> bool {
        self.in_flight.count(peer, Channel::Log) == 0
    }
}

impl Port for Tracked<'_> {
    fn write(
        &mut self,
        peer: NodeId,
        wr_id: u64,
        source: Source<'_>,
        target: Place,
    ) -> Result<(), PortError> {
        self.port.write(peer, wr_id, source, target)?;
        self.in_flight.posted(peer, Channel::of_write(target));
        Ok(())
    }

    fn read(
        &mut self,
        peer: NodeId,
        wr_id: u64,
        from: Place,
        len: usize,
        into: Place,
    ) -> Result<(), PortError> {
        self.port.read(peer, wr_id, from, len, into)?;
        self.in_flight.posted(peer, Channel::Control);
        Ok(())
    }

    fn allow_log_writer(&mut self, peer: NodeId, allowed: bool) -> Result<(), PortError> {
        self.port.allow_log_writer(peer, allowed)
    }

    fn repair(&mut self, peer: NodeId, channel: Channel) {
        self.port.repair(peer, channel)
    }
}
