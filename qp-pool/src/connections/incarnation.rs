//! Which process speaks for a node id: the rules that let a restarted node take over from
//! the process it replaces, and never let an older process take over from a newer one.
//!
//! Every process of a node presents an incarnation in its hello
//! ([`NodeConfig::incarnation`](crate::NodeConfig::incarnation)); a restarted process must
//! present a higher one than the process it replaces. With a cluster key the hello is
//! believed only once the peer proved that it holds the key, so only a member can claim an
//! incarnation.
//!
//! - Against what a node knows of a peer ([`admit`]): a higher incarnation supersedes the
//!   known one (whether its connection is lost or not: a restarted process may dial before
//!   the death of the old one is noticed, and a stopped one must be fenced out all the
//!   same); the same incarnation is taken again only while no connection of it is up (a
//!   rejoining process retrying after a failed handshake); a lower one is refused as
//!   stale, for good.
//! - Between two connections in their handshake for one node ([`prefer_new`]): the higher
//!   incarnation wins; at the same incarnation, when the two nodes dialed each other, the
//!   connection dialed by the lower id wins (both ends decide alike, so exactly one
//!   survives); two connections both accepted from one incarnation keep the first.

use crate::error::{Error, Result};
use crate::spec::NodeId;

/// How a claim to speak for a node compares with what is known of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Nothing was known of the node: its first connection.
    First,
    /// A newer process than the known one: the old one is superseded.
    Newer {
        /// The incarnation it replaces.
        previous: u64,
    },
    /// The known incarnation again, its earlier attempt having failed or its connection
    /// being lost.
    Again,
}

/// Whether a connection claiming `claimed` for `node` may speak for it, given the highest
/// incarnation admitted so far (`known`) and whether a connection of that one is `connected`.
pub(crate) fn admit(node: NodeId, known: Option<u64>, connected: bool, claimed: u64) -> Result<Admission> {
    match known {
        None => Ok(Admission::First),
        Some(current) if claimed > current => Ok(Admission::Newer { previous: current }),
        Some(current) if claimed == current && !connected => Ok(Admission::Again),
        Some(current) if claimed == current => {
            Err(Error::DuplicateNode { node, reason: "already connected".into() })
        }
        Some(current) => Err(Error::StaleIncarnation { node, theirs: claimed, current }),
    }
}

/// One of two connections in their handshake that speak for the same node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Claim {
    /// Whether we dialed it.
    pub(crate) dialed: bool,
    /// The incarnation the peer presented, once it is identified.
    pub(crate) incarnation: Option<u64>,
}

/// Whether `new`, just identified, should replace `old`, still in its handshake, as the
/// connection between `me` and `node`: `Ok(())` if so, else why `new` is refused.
pub(crate) fn prefer_new(me: NodeId, node: NodeId, new: Claim, old: Claim) -> Result<()> {
    if let (Some(theirs), Some(current)) = (new.incarnation, old.incarnation) {
        if theirs != current {
            return if theirs > current {
                Ok(())
            } else {
                Err(Error::StaleIncarnation { node, theirs, current })
            };
        }
    }
    let lower_dialed = |claim: Claim| if claim.dialed { me < node } else { node < me };
    match (new.dialed == old.dialed, lower_dialed(new)) {
        (false, true) => Ok(()),
        (false, false) => Err(Error::DuplicateNode {
            node,
            reason: "we dialed each other, and the connection the lower id dialed wins".into(),
        }),
        (true, _) => Err(Error::DuplicateNode { node, reason: "another connection claims it".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u16) -> NodeId {
        NodeId::new(id).unwrap()
    }

    #[test]
    fn a_newer_incarnation_supersedes_and_an_older_one_never_does() {
        let two = node(2);
        assert_eq!(admit(two, None, false, 5).unwrap(), Admission::First);
        assert_eq!(admit(two, Some(5), true, 6).unwrap(), Admission::Newer { previous: 5 });
        assert_eq!(admit(two, Some(5), false, 6).unwrap(), Admission::Newer { previous: 5 });
        assert_eq!(admit(two, Some(5), false, 5).unwrap(), Admission::Again);
        let error = admit(two, Some(5), true, 5).unwrap_err().to_string();
        assert_eq!(error, "duplicate node id 2: already connected");
        for connected in [false, true] {
            let error = admit(two, Some(5), connected, 4).unwrap_err().to_string();
            assert_eq!(error, "node 2's incarnation 4 is stale: incarnation 5 has joined since");
        }
    }

    #[test]
    fn of_two_connections_both_ends_keep_the_same_one() {
        let (low, high) = (node(1), node(2));
        let ours = |incarnation| Claim { dialed: true, incarnation };
        let theirs = |incarnation| Claim { dialed: false, incarnation };
        // They dialed each other at the same incarnation: each end sees its own dial as
        // `dialed` and the other's as accepted, and both keep the one node 1 dialed.
        assert!(prefer_new(low, high, theirs(Some(7)), ours(None)).is_err(), "node 1 keeps its dial");
        assert!(prefer_new(low, high, ours(Some(7)), theirs(Some(7))).is_ok(), "node 1 keeps its dial");
        assert!(prefer_new(high, low, theirs(Some(7)), ours(None)).is_ok(), "node 2 keeps node 1's");
        assert!(prefer_new(high, low, ours(Some(7)), theirs(Some(7))).is_err(), "node 2 keeps node 1's");
        // A higher incarnation wins whoever dialed; a lower one is stale.
        assert!(prefer_new(low, high, theirs(Some(8)), ours(Some(7))).is_ok());
        let error = prefer_new(low, high, theirs(Some(6)), theirs(Some(7))).unwrap_err().to_string();
        assert!(error.contains("incarnation 6 is stale"), "{error}");
        // Two accepted connections of one incarnation: the first stands.
        let error = prefer_new(high, low, theirs(Some(7)), theirs(Some(7))).unwrap_err().to_string();
        assert_eq!(error, "duplicate node id 1: another connection claims it");
    }
}
