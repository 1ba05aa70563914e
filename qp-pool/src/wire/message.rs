//! The messages of the handshake and of the control connection, and their encoding in
//! frames.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::role::MAX_ROLES;
use crate::spec::{check_name, NodeId};
use crate::wire::frame::{announced_len, encode_frame, parse_frame, Frame, FrameKind};

/// The most regions one node may offer.
pub const MAX_REGIONS: usize = 64;
/// The longest endpoint or descriptor encoding accepted.
const MAX_BLOB_LEN: usize = 256;
/// The longest rejection reason accepted.
const MAX_REASON_LEN: usize = 4096;
/// The most members a member list may name: what fits a frame, with room to spare
/// (an IPv6 entry takes under 40 bytes).
pub const MAX_MEMBERS: usize = 1024;

/// How the sender of a `Hello` enters the cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Entry {
    /// One of the nodes of the description, starting with the others: the description
    /// must be the same on both ends, and lower ids dial higher ones.
    #[default]
    Start,
    /// A node of the description restarted (a new process, a higher incarnation) into a
    /// running cluster: it dials every member, and learns the member list from them.
    Rejoin,
    /// A node that knows the cluster's name, run and key but not its description: it was
    /// given some members' control addresses, learns the member list from the members it
    /// reaches, and dials every member. Its id need not be in anyone's description, and no
    /// description digest is compared with it.
    Join,
}

impl Entry {
    /// Whether the sender joins a running cluster (it dials every member, lower ids too,
    /// and is sent the member list).
    pub fn joins_running(self) -> bool {
        self != Entry::Start
    }
}

/// Who the sender is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Its cluster's name.
    pub cluster: String,
    /// Its run.
    pub run: String,
    /// Its node id.
    pub node: u16,
    /// The digest of its cluster description.
    pub spec_digest: u32,
    /// A fresh random value of this connection, bound into its session key (used only
    /// with a cluster key).
    pub nonce: [u8; 32],
    /// Whether the sender has a cluster key and will tag what follows.
    pub keyed: bool,
    /// Which process of the node this is: a restarted node presents a higher number than
    /// the process it replaces, and the higher one wins (see
    /// [`Cluster`](crate::Cluster)'s rejoin rules).
    pub incarnation: u64,
    /// How the sender enters the cluster.
    pub entry: Entry,
    /// Where the sender takes connections from nodes that join later (its control
    /// address), so that members can tell joining nodes; required with [`Entry::Join`].
    pub addr: Option<SocketAddr>,
}

/// One member of a cluster, as another member knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its node id.
    pub node: u16,
    /// The incarnation of its process admitted last.
    pub incarnation: u64,
    /// Its control address.
    pub addr: SocketAddr,
}

/// The members a node knows (itself included): sent to a node that joins a running
/// cluster, right after it proved who it is (with a cluster key, tagged like every frame)
/// and before the offer, so that it learns whom else to connect to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The members, each once.
    pub members: Vec<Member>,
}

/// One role's endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleOffer {
    /// The role's name.
    pub name: String,
    /// The [`Endpoint`](usec_verbs::Endpoint) wire form of the sender's QP of that role
    /// made for the receiver.
    pub endpoint: Vec<u8>,
}

/// One region's descriptor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionOffer {
    /// The region's name.
    pub name: String,
    /// The [`RemoteRegion`](usec_regions::RemoteRegion) wire form.
    pub descriptor: Vec<u8>,
}

/// The sender's QP endpoints for the receiver (one per role, in role order) and its
/// region descriptors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// Endpoints by role.
    pub roles: Vec<RoleOffer>,
    /// Region descriptors.
    pub regions: Vec<RegionOffer>,
}

/// Why a connection is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The reason, for people.
    pub reason: String,
}

/// A reconnect request or reply: the sender's fresh endpoints for some roles.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconnect {
    /// The requester's counter; a reply echoes it.
    pub epoch: u64,
    /// The roles and the sender's fresh endpoints.
    pub roles: Vec<RoleOffer>,
}

/// Changed region descriptors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionUpdate {
    /// The new descriptors.
    pub regions: Vec<RegionOffer>,
}

/// A message of the handshake or of the control connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Who the sender is.
    Hello(Hello),
    /// Endpoints and descriptors.
    Offer(Offer),
    /// The sender's QPs to the receiver are connected.
    Ready,
    /// The connection is refused.
    Reject(Reject),
    /// Reconnect these roles.
    ReconnectRequest(Reconnect),
    /// Reconnected; the answerer's endpoints.
    ReconnectReply(Reconnect),
    /// New region descriptors.
    RegionUpdate(RegionUpdate),
    /// With a cluster key: the sender holds it (the proof is the frame's tag).
    Proof,
    /// The members the sender knows, for a node that joins.
    Members(Members),
    /// On a control connection: the receiver's process no longer speaks for its node (a
    /// newer process of it took its place, or it was removed), and why. Unlike `Reject`,
    /// tagged on a keyed connection: it changes what the receiver does beyond the one
    /// connection, so only a holder of the key may say it.
    Fence(Reject),
}

impl Message {
    /// Its frame kind.
    pub fn kind(&self) -> FrameKind {
        match self {
            Message::Hello(_) => FrameKind::Hello,
            Message::Offer(_) => FrameKind::Offer,
            Message::Ready => FrameKind::Ready,
            Message::Reject(_) => FrameKind::Reject,
            Message::ReconnectRequest(_) => FrameKind::ReconnectRequest,
            Message::ReconnectReply(_) => FrameKind::ReconnectReply,
            Message::RegionUpdate(_) => FrameKind::RegionUpdate,
            Message::Proof => FrameKind::Proof,
            Message::Members(_) => FrameKind::Members,
            Message::Fence(_) => FrameKind::Fence,
        }
    }

    /// Its body: the postcard encoding of its fields.
    pub fn body(&self) -> Vec<u8> {
        match self {
            Message::Hello(hello) => to_body(hello),
            Message::Offer(offer) => to_body(offer),
            Message::Ready | Message::Proof => Vec::new(),
            Message::Reject(reject) | Message::Fence(reject) => to_body(reject),
            Message::ReconnectRequest(reconnect) | Message::ReconnectReply(reconnect) => to_body(reconnect),
            Message::RegionUpdate(update) => to_body(update),
            Message::Members(members) => to_body(members),
        }
    }

    /// Appends it, framed without a tag, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode_frame(self.kind(), &self.body(), out);
    }

    /// Its framed bytes.
    pub fn to_frame(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes the untagged frame at the start of `bytes`: `Ok(None)` when more bytes are
    /// needed, else the message and the bytes it took. A tagged frame is an error: only a
    /// keyed [`Channel`](crate::wire::Channel) can check its tag.
    pub fn decode(bytes: &[u8]) -> Result<Option<(Message, usize)>> {
        let Some(frame) = parse_frame(bytes)? else { return Ok(None) };
        if frame.tag.is_some() {
            return Err(Error::malformed("flags", "a tagged frame, and no cluster key to check it with"));
        }
        Ok(Some((Message::from_frame(&frame)?, frame.len)))
    }

    /// Decodes the body of `frame`, whose tag (if any) it leaves unchecked: a keyed
    /// [`Channel`](crate::wire::Channel) checks tags before it decodes.
    pub fn from_frame(frame: &Frame<'_>) -> Result<Message> {
        let body = frame.body;
        let message = match frame.kind {
            FrameKind::Hello => Message::Hello(from_body(body)?),
            FrameKind::Offer => Message::Offer(from_body(body)?),
            FrameKind::Ready if body.is_empty() => Message::Ready,
            FrameKind::Ready => return Err(Error::malformed("body", "a Ready frame carries no body")),
            FrameKind::Proof if body.is_empty() => Message::Proof,
            FrameKind::Proof => return Err(Error::malformed("body", "a Proof frame carries no body")),
            FrameKind::Reject => Message::Reject(from_body(body)?),
            FrameKind::ReconnectRequest => Message::ReconnectRequest(from_body(body)?),
            FrameKind::ReconnectReply => Message::ReconnectReply(from_body(body)?),
            FrameKind::RegionUpdate => Message::RegionUpdate(from_body(body)?),
            FrameKind::Members => Message::Members(from_body(body)?),
            FrameKind::Fence => Message::Fence(from_body(body)?),
        };
        message.check()?;
        Ok(message)
    }

    /// Decodes exactly one frame that must fill `bytes`: a truncated frame or trailing
    /// bytes are errors.
    pub fn decode_exact(bytes: &[u8]) -> Result<Message> {
        match Message::decode(bytes)? {
            Some((message, len)) if len == bytes.len() => Ok(message),
            Some((_, len)) => {
                Err(Error::malformed("length", format!("{} bytes after the frame", bytes.len() - len)))
            }
            None => Err(Error::TruncatedFrame { have: bytes.len(), need: announced_len(bytes) }),
        }
    }

    /// Limits on what a body may hold, beyond what the encoding itself ensures.
    fn check(&self) -> Result<()> {
        match self {
            Message::Hello(hello) => {
                body_check(check_name("cluster", &hello.cluster, b":+"))?;
                body_check(check_name("run", &hello.run, b":+"))
            }
            Message::Offer(offer) => {
                check_roles(&offer.roles)?;
                check_regions(&offer.regions)
            }
            Message::Ready | Message::Proof => Ok(()),
            Message::Reject(reject) | Message::Fence(reject) if reject.reason.len() > MAX_REASON_LEN => {
                Err(Error::malformed("body", format!("a reason of {} bytes", reject.reason.len())))
            }
            Message::Reject(_) | Message::Fence(_) => Ok(()),
            Message::ReconnectRequest(reconnect) | Message::ReconnectReply(reconnect) => {
                check_roles(&reconnect.roles)
            }
            Message::RegionUpdate(update) => check_regions(&update.regions),
            Message::Members(members) => check_members(&members.members),
        }
    }
}

fn check_members(members: &[Member]) -> Result<()> {
    if members.len() > MAX_MEMBERS {
        return Err(Error::malformed("body", format!("{} members, at most {MAX_MEMBERS}", members.len())));
    }
    let mut seen = BTreeSet::new();
    for member in members {
        if member.node > NodeId::MAX {
            return Err(Error::malformed("body", format!("member id {} above {}", member.node, NodeId::MAX)));
        }
        if !seen.insert(member.node) {
            return Err(Error::malformed("body", format!("member {} listed twice", member.node)));
        }
    }
    Ok(())
}

fn body_check(result: std::result::Result<(), String>) -> Result<()> {
    result.map_err(|reason| Error::malformed("body", reason))
}

fn check_roles(roles: &[RoleOffer]) -> Result<()> {
    if roles.len() > MAX_ROLES {
        return Err(Error::malformed("body", format!("{} roles, at most {MAX_ROLES}", roles.len())));
    }
    for role in roles {
        body_check(check_name("role", &role.name, b""))?;
        if role.endpoint.len() > MAX_BLOB_LEN {
            return Err(Error::malformed("body", format!("an endpoint of {} bytes", role.endpoint.len())));
        }
    }
    Ok(())
}

fn check_regions(regions: &[RegionOffer]) -> Result<()> {
    if regions.len() > MAX_REGIONS {
        return Err(Error::malformed("body", format!("{} regions, at most {MAX_REGIONS}", regions.len())));
    }
    for region in regions {
        body_check(check_name("region", &region.name, b""))?;
        if region.descriptor.len() > MAX_BLOB_LEN {
            return Err(Error::malformed(
                "body",
                format!("a descriptor of {} bytes", region.descriptor.len()),
            ));
        }
    }
    Ok(())
}

fn to_body<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("encoding into a Vec cannot fail")
}

fn from_body<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    let (value, rest) = postcard::take_from_bytes(body)
        .map_err(|err| Error::malformed("body", format!("undecodable: {err}")))?;
    if !rest.is_empty() {
        return Err(Error::malformed("body", format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._-]{1,64}"
    }

    fn blob() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..64)
    }

    fn role_offers() -> impl Strategy<Value = Vec<RoleOffer>> {
        proptest::collection::vec(
            (name(), blob()).prop_map(|(name, endpoint)| RoleOffer { name, endpoint }),
            0..4,
        )
    }

    fn region_offers() -> impl Strategy<Value = Vec<RegionOffer>> {
        proptest::collection::vec(
            (name(), blob()).prop_map(|(name, descriptor)| RegionOffer { name, descriptor }),
            0..4,
        )
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                "[A-Za-z0-9.:+_-]{1,64}",
                "[A-Za-z0-9.:+_-]{1,64}",
                any::<u16>(),
                any::<u32>(),
                any::<[u8; 32]>(),
                any::<bool>(),
                any::<u64>(),
                entry(),
                proptest::option::of(socket_addr())
            )
                .prop_map(
                    |(cluster, run, node, spec_digest, nonce, keyed, incarnation, entry, addr)| {
                        Message::Hello(Hello {
                            cluster,
                            run,
                            node,
                            spec_digest,
                            nonce,
                            keyed,
                            incarnation,
                            entry,
                            addr,
                        })
                    }
                ),
            (role_offers(), region_offers())
                .prop_map(|(roles, regions)| Message::Offer(Offer { roles, regions })),
            Just(Message::Ready),
            "\\PC{0,100}".prop_map(|reason| Message::Reject(Reject { reason })),
            "\\PC{0,100}".prop_map(|reason| Message::Fence(Reject { reason })),
            (any::<u64>(), role_offers())
                .prop_map(|(epoch, roles)| Message::ReconnectRequest(Reconnect { epoch, roles })),
            (any::<u64>(), role_offers())
                .prop_map(|(epoch, roles)| Message::ReconnectReply(Reconnect { epoch, roles })),
            region_offers().prop_map(|regions| Message::RegionUpdate(RegionUpdate { regions })),
            Just(Message::Proof),
            proptest::collection::btree_map(0..=NodeId::MAX, (any::<u64>(), socket_addr()), 0..8).prop_map(
                |members| Message::Members(Members {
                    members: members
                        .into_iter()
                        .map(|(node, (incarnation, addr))| Member { node, incarnation, addr })
                        .collect(),
                })
            ),
        ]
    }

    fn entry() -> impl Strategy<Value = Entry> {
        prop_oneof![Just(Entry::Start), Just(Entry::Rejoin), Just(Entry::Join)]
    }

    fn socket_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(SocketAddr::from),
            (any::<[u16; 8]>(), any::<u16>()).prop_map(SocketAddr::from),
        ]
    }

    proptest! {
        #[test]
        fn messages_round_trip(message in message()) {
            let frame = message.to_frame();
            prop_assert_eq!(Message::decode_exact(&frame).unwrap(), message.clone());
            let mut two = frame.clone();
            two.extend_from_slice(&frame);
            let (first, len) = Message::decode(&two).unwrap().unwrap();
            prop_assert_eq!((first, len), (message, frame.len()));
        }

        #[test]
        fn every_truncation_is_refused(message in message()) {
            let frame = message.to_frame();
            for cut in 0..frame.len() {
                let error = Message::decode_exact(&frame[..cut]).unwrap_err();
                prop_assert!(matches!(error, Error::TruncatedFrame { .. }), "cut {}: {}", cut, error);
                prop_assert!(Message::decode(&frame[..cut]).unwrap().is_none());
            }
        }

        #[test]
        fn every_single_bit_flip_is_refused(message in message()) {
            let frame = message.to_frame();
            for bit in 0..frame.len() * 8 {
                let mut flipped = frame.clone();
                flipped[bit / 8] ^= 1 << (bit % 8);
                let result = Message::decode_exact(&flipped);
                prop_assert!(result.is_err(), "flipping bit {} went unnoticed: {:?}", bit, result);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&bytes);
            let _ = Message::decode_exact(&bytes);
        }

        #[test]
        fn arbitrary_bodies_in_valid_frames_never_panic(kind in 1u8..=10, body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut frame = Vec::new();
            encode_frame(FrameKind::from_code(kind).unwrap(), &body, &mut frame);
            let _ = Message::decode_exact(&frame);
        }
    }

    #[test]
    fn bodies_are_checked() {
        let bad_name = Message::Offer(Offer {
            roles: vec![RoleOffer { name: "no spaces".into(), endpoint: vec![] }],
            regions: vec![],
        });
        let error = Message::decode_exact(&bad_name.to_frame()).unwrap_err().to_string();
        assert!(error.contains("malformed frame (body): role \"no spaces\""), "{error}");
        let mut frame = Vec::new();
        encode_frame(FrameKind::Ready, b"x", &mut frame);
        assert!(Message::decode_exact(&frame).unwrap_err().to_string().contains("no body"));
        let mut frame = Vec::new();
        encode_frame(FrameKind::Hello, &[0xff; 8], &mut frame);
        assert!(Message::decode_exact(&frame).unwrap_err().to_string().contains("(body): undecodable"));
        let mut frame = Message::Ready.to_frame();
        frame.push(0);
        assert!(Message::decode_exact(&frame).unwrap_err().to_string().contains("1 bytes after the frame"));
        let mut frame = Vec::new();
        encode_frame(FrameKind::Proof, b"x", &mut frame);
        assert!(Message::decode_exact(&frame)
            .unwrap_err()
            .to_string()
            .contains("a Proof frame carries no body"));
        let mut frame = Vec::new();
        crate::wire::frame::encode_frame_with_tag(FrameKind::Proof, b"", Some(&[0; 32]), &mut frame);
        let error = Message::decode_exact(&frame).unwrap_err().to_string();
        assert!(error.contains("malformed frame (flags): a tagged frame"), "{error}");
        let parsed = parse_frame(&frame).unwrap().unwrap();
        assert_eq!(Message::from_frame(&parsed).unwrap(), Message::Proof);
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let member = |node| Member { node, incarnation: 1, addr };
        let twice = Message::Members(Members { members: vec![member(3), member(3)] });
        let error = Message::decode_exact(&twice.to_frame()).unwrap_err().to_string();
        assert!(error.contains("(body): member 3 listed twice"), "{error}");
        let beyond = Message::Members(Members { members: vec![member(4096)] });
        let error = Message::decode_exact(&beyond.to_frame()).unwrap_err().to_string();
        assert!(error.contains("(body): member id 4096 above 4095"), "{error}");
        let many = Message::Members(Members { members: (0..=MAX_MEMBERS as u16).map(member).collect() });
        let error = Message::decode_exact(&many.to_frame()).unwrap_err().to_string();
        assert!(error.contains("(body): 1025 members, at most 1024"), "{error}");
    }
}
