//! [`View`]: who is in the service, decided one per Paxos instance (instance = view id).
//!
//! A member is a process: a node id *and* an incarnation, so that a node restarted as a
//! new process is a new member, and nothing said of the old one (a lease, a vote) is taken
//! for the new. A node appears at most once in a view: a member added with the id of one
//! already there replaces it. Its kind says what it does: `Consensus` members run the
//! view changes (they propose; the acceptors are fixed by configuration), `Cache` members
//! serve reads of the view, `App` members are the application's.

use std::collections::BTreeSet;
use std::fmt;

use usec_lease_clock::lease::{LeaseView, Voter};
use usec_qp_pool::NodeId;

use crate::error::{Error, Result};

/// The most members a view holds (uKharon's bound; a view then encodes in 186 bytes).
pub const MAX_MEMBERS: usize = 16;

/// The format version of an encoded view.
const VERSION: u8 = 1;
/// Bytes of a member, encoded.
const MEMBER_BYTES: usize = 11;
/// Bytes before the members: version, id, count.
const HEADER_BYTES: usize = 10;
/// Bytes of a view of [`MAX_MEMBERS`] members: what value buffers must hold.
pub const MAX_VIEW_BYTES: usize = HEADER_BYTES + MAX_MEMBERS * MEMBER_BYTES;

/// What a member does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberKind {
    /// Runs view changes.
    Consensus,
    /// Serves the view to others.
    Cache,
    /// The application's.
    App,
}

impl MemberKind {
    fn code(self) -> u8 {
        match self {
            MemberKind::Consensus => 1,
            MemberKind::Cache => 2,
            MemberKind::App => 3,
        }
    }

    fn from_code(code: u8) -> Option<MemberKind> {
        match code {
            1 => Some(MemberKind::Consensus),
            2 => Some(MemberKind::Cache),
            3 => Some(MemberKind::App),
            _ => None,
        }
    }
}

/// A process in a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Member {
    /// Its node.
    pub node: NodeId,
    /// Which process of that node.
    pub incarnation: u64,
    /// What it does.
    pub kind: MemberKind,
}

impl Member {
    /// A member.
    pub fn new(node: NodeId, incarnation: u64, kind: MemberKind) -> Member {
        Member { node, incarnation, kind }
    }
}

/// A view: an id and its members, sorted by node.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct View {
    id: u64,
    members: Vec<Member>,
}

impl View {
    /// View `id` of `members` (distinct nodes, at most [`MAX_MEMBERS`]).
    pub fn new(id: u64, mut members: Vec<Member>) -> Result<View> {
        members.sort();
        if members.len() > MAX_MEMBERS {
            return Err(Error::View {
                view: id,
                reason: format!("{} members, at most {MAX_MEMBERS}", members.len()),
            });
        }
        if let Some(pair) = members.windows(2).find(|pair| pair[0].node == pair[1].node) {
            return Err(Error::View { view: id, reason: format!("node {} appears twice", pair[0].node) });
        }
        Ok(View { id, members })
    }

    /// Its id: the Paxos instance that decided it (0 for the configured first view).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Its members, sorted by node.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// The member on `node`, if any.
    pub fn member(&self, node: NodeId) -> Option<&Member> {
        self.members.iter().find(|member| member.node == node)
    }

    /// Whether process `incarnation` of `node` is a member.
    pub fn contains(&self, node: NodeId, incarnation: u64) -> bool {
        self.member(node).is_some_and(|member| member.incarnation == incarnation)
    }

    /// Whether process `incarnation` of `node` is a consensus member.
    pub fn is_consensus(&self, node: NodeId, incarnation: u64) -> bool {
        self.member(node)
            .is_some_and(|member| member.incarnation == incarnation && member.kind == MemberKind::Consensus)
    }

    /// The member that should lead the service in this view: the consensus member of the
    /// lowest node id. A function of the consensus members alone, so views that keep them
    /// (compatible views, which share an Active(view) lease) keep their leader, and two
    /// epochs of views with different leaders never share a lease.
    pub fn designated_leader(&self) -> Option<Member> {
        // Sorted by node: the first consensus member is the lowest.
        self.members.iter().find(|member| member.kind == MemberKind::Consensus).copied()
    }

    /// The next view: these nodes removed, these members added (each replacing any member
    /// of its node). `None` if it would be this view again.
    pub fn successor(&self, remove: &BTreeSet<NodeId>, add: &[Member]) -> Result<Option<View>> {
        let mut members: Vec<Member> =
            self.members.iter().filter(|member| !remove.contains(&member.node)).copied().collect();
        for member in add {
            members.retain(|kept| kept.node != member.node);
            members.push(*member);
        }
        let next = View::new(self.id + 1, members)?;
        Ok((next.members != self.members).then_some(next))
    }

    /// Its bytes, as a Paxos value.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(HEADER_BYTES + MEMBER_BYTES * self.members.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.id.to_le_bytes());
        bytes.push(self.members.len() as u8);
        for member in &self.members {
            bytes.extend_from_slice(&member.node.get().to_le_bytes());
            bytes.extend_from_slice(&member.incarnation.to_le_bytes());
            bytes.push(member.kind.code());
        }
        bytes
    }

    /// A view from its bytes.
    pub fn decode(bytes: &[u8]) -> Result<View> {
        let bad = |reason: &str| Error::BadView(reason.to_string());
        if bytes.len() < HEADER_BYTES || bytes[0] != VERSION {
            return Err(bad("no version 1 header"));
        }
        let id = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
        let count = usize::from(bytes[9]);
        if bytes.len() != HEADER_BYTES + count * MEMBER_BYTES {
            return Err(bad("length does not match the member count"));
        }
        let mut members = Vec::with_capacity(count);
        for chunk in bytes[HEADER_BYTES..].chunks_exact(MEMBER_BYTES) {
            let node = NodeId::new(u16::from_le_bytes([chunk[0], chunk[1]])).map_err(|_| bad("node id"))?;
            let incarnation = u64::from_le_bytes(chunk[2..10].try_into().expect("8 bytes"));
            let kind = MemberKind::from_code(chunk[10]).ok_or_else(|| bad("member kind"))?;
            members.push(Member { node, incarnation, kind });
        }
        View::new(id, members)
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "view {} [", self.id)?;
        for (index, member) in self.members.iter().enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            write!(f, "{separator}{}.{} {:?}", member.node, member.incarnation, member.kind)?;
        }
        write!(f, "]")
    }
}

/// Views carry Active(view) leases: their voters are the consensus members.
impl LeaseView for View {
    fn view_id(&self) -> u64 {
        self.id
    }

    fn voters(&self) -> impl Iterator<Item = Voter> + '_ {
        self.members
            .iter()
            .filter(|member| member.kind == MemberKind::Consensus)
            .map(|member| Voter { node: member.node, incarnation: member.incarnation })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u16) -> NodeId {
        NodeId::new(id).expect("small")
    }

    fn view() -> View {
        View::new(
            3,
            vec![
                Member::new(node(2), 7, MemberKind::App),
                Member::new(node(0), 1, MemberKind::Consensus),
                Member::new(node(1), 1, MemberKind::Cache),
            ],
        )
        .expect("a view")
    }

    #[test]
    fn views_round_trip_and_a_full_one_fits_256_bytes() {
        assert_eq!(View::decode(&view().encode()).expect("decodes"), view());
        let full =
            View::new(u64::MAX, (0..16).map(|id| Member::new(node(id), u64::MAX, MemberKind::App)).collect())
                .expect("16 members");
        assert_eq!(full.encode().len(), 186);
        assert_eq!(View::decode(&full.encode()).expect("decodes"), full);
    }

    #[test]
    fn malformed_bytes_are_refused() {
        let bytes = view().encode();
        assert!(View::decode(&bytes[..bytes.len() - 1]).is_err(), "short");
        assert!(View::decode(&[]).is_err());
        let mut version = bytes.clone();
        version[0] = 9;
        assert!(View::decode(&version).is_err());
        let mut kind = bytes.clone();
        *kind.last_mut().expect("bytes") = 0;
        assert!(View::decode(&kind).is_err());
        let mut duplicate = bytes.clone();
        duplicate[HEADER_BYTES + MEMBER_BYTES] = 0; // member 1 claims node 0 too
        assert!(View::decode(&duplicate).is_err());
    }

    #[test]
    fn successors_remove_add_and_replace_incarnations() {
        let view = view();
        let removed = view.successor(&BTreeSet::from([node(1)]), &[]).expect("fits").expect("a change");
        assert_eq!(removed.id(), 4);
        assert_eq!(removed.members().iter().map(|member| member.node.get()).collect::<Vec<_>>(), [0, 2]);
        let restarted = Member::new(node(2), 8, MemberKind::App);
        let replaced = view.successor(&BTreeSet::new(), &[restarted]).expect("fits").expect("a change");
        assert!(replaced.contains(node(2), 8) && !replaced.contains(node(2), 7));
        assert_eq!(view.successor(&BTreeSet::from([node(9)]), &[]).expect("fits"), None, "no change");
        assert!(
            view.is_consensus(node(0), 1) && !view.is_consensus(node(0), 2) && !view.is_consensus(node(1), 1)
        );
        let crowd: Vec<Member> = (3..17).map(|id| Member::new(node(id), 1, MemberKind::App)).collect();
        assert!(view.successor(&BTreeSet::new(), &crowd).is_err(), "17 members");
    }

    #[test]
    fn the_lowest_consensus_member_leads_and_only_consensus_members_vote() {
        let view = view();
        assert_eq!(view.designated_leader(), Some(Member::new(node(0), 1, MemberKind::Consensus)));
        let voters: Vec<Voter> = view.voters().collect();
        assert_eq!(voters, [Voter { node: node(0), incarnation: 1 }]);
        let without = view.successor(&BTreeSet::from([node(0)]), &[]).expect("fits").expect("a change");
        assert_eq!(without.designated_leader(), None, "no consensus member left");
        let restarted = Member::new(node(0), 2, MemberKind::App);
        let back = without.successor(&BTreeSet::new(), &[restarted]).expect("fits").expect("a change");
        assert_eq!(back.designated_leader(), None, "a member added back as App does not lead");
    }
}
