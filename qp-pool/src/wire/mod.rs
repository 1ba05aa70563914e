//! The handshake and control protocol on the wire: frames (magic, version, kind, bounded
//! length, CRC-32, body), the messages they carry (serde + postcard bodies), and a
//! channel that turns a byte stream into messages and back.
//!
//! A frame, all integers little-endian:
//!
//! | bytes | field | checked |
//! |---|---|---|
//! | 4 | magic `uQPP` | byte by byte, as soon as each arrives |
//! | 1 | version | refused unless [`VERSION`] |
//! | 1 | kind | refused unless a known message kind |
//! | 4 | body length | refused above [`MAX_BODY_LEN`], before anything is allocated |
//! | 4 | CRC-32 of version, kind, length and body | refused on mismatch |
//! | n | body | postcard encoding of the kind's message; trailing bytes refused |

mod channel;
mod frame;
mod message;

pub use channel::{Channel, FrameDecoder};
pub use frame::{encode_frame, parse_frame, FrameKind, HEADER_LEN, MAGIC, MAX_BODY_LEN, VERSION};
pub use message::{
    Hello, Message, Offer, Reconnect, RegionOffer, RegionUpdate, Reject, RoleOffer, MAX_REGIONS,
};
