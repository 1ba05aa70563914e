//! The handshake and control protocol on the wire: frames (magic, version, kind, flags,
//! bounded length, CRC-32, body, and a tag when authenticated), the messages they carry
//! (serde + postcard bodies), and a channel that turns a byte stream into messages and
//! back, checking tags once a cluster key is in use ([`auth`]).
//!
//! A frame, all integers little-endian:
//!
//! | bytes | field | checked |
//! |---|---|---|
//! | 4 | magic `uQPP` | byte by byte, as soon as each arrives |
//! | 1 | version | refused unless [`VERSION`] |
//! | 1 | kind | refused unless a known message kind |
//! | 1 | flags | refused unless 0 or [`FLAG_TAGGED`] |
//! | 4 | body length | refused above [`MAX_BODY_LEN`], before anything is allocated |
//! | 4 | CRC-32 of version, kind, flags, length, body and tag | refused on mismatch |
//! | n | body | postcard encoding of the kind's message; trailing bytes refused |
//! | 32 | tag, if flagged | on a keyed connection: required on every frame after `Hello` but `Reject`, checked before the body is decoded; refused elsewhere |

pub mod auth;
mod channel;
mod frame;
mod message;

pub use channel::{Channel, FrameDecoder};
pub use frame::{
    encode_frame, encode_frame_with_tag, parse_frame, Frame, FrameKind, FLAG_TAGGED, HEADER_LEN, MAGIC,
    MAX_BODY_LEN, TAG_LEN, VERSION,
};
pub use message::{
    Entry, Hello, Member, Members, Message, Offer, Reconnect, RegionOffer, RegionUpdate, Reject, RoleOffer,
    MAX_MEMBERS, MAX_REGIONS,
};
