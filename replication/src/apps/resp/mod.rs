//! RESP2, the protocol Redis clients speak: requests in ([`parser`], [`inline`]),
//! replies out ([`reply`]), numbers as Redis reads them ([`number`]), the scanner that
//! finds where one reply ends ([`scan`]), for relaying replies and for clients, and replies
//! read back as trees ([`value`]), for clients.
//!
//! Nothing here does IO: a server feeds bytes in and writes the bytes that come out.

pub mod inline;
pub mod number;
pub mod parser;
pub mod reply;
pub mod scan;
pub mod value;

pub use parser::{Args, Limits, Parsed, ProtocolError, RequestParser};
pub use value::Value;
