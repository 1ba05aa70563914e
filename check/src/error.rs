//! The crate's error type.

/// What went wrong reading or writing a history.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read or written.
    #[error("history file: {0}")]
    Io(#[source] std::io::Error),
    /// An event could not be encoded.
    #[error("history event could not be encoded: {0}")]
    Encode(String),
    /// A line is not an event.
    #[error("history line {line}: {why}")]
    Malformed {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        why: String,
    },
    /// The events of an operation contradict each other.
    #[error("operation {op} of client {client} {why}")]
    Inconsistent {
        /// The client.
        client: u64,
        /// The client's operation number.
        op: u64,
        /// What is wrong.
        why: &'static str,
    },
}
