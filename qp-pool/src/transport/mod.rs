//! How handshake and control bytes travel: a [`Network`] accepts and dials [`Link`]s, a
//! link moves bytes without blocking. [`tcp`] is the real one; [`memory`] runs in one
//! process without sockets, so that simulations stay deterministic.

pub mod memory;
pub mod tcp;

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// What a non-blocking read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// This many bytes were read into the buffer.
    Data(usize),
    /// Nothing for now.
    Nothing,
    /// The other end closed the connection.
    Closed,
}

/// One connection, non-blocking both ways.
pub trait Link: Send + fmt::Debug {
    /// Writes what it can of `bytes` without blocking; returns how many (0 when it would
    /// block).
    fn write_some(&mut self, bytes: &[u8]) -> io::Result<usize>;
    /// Reads what is there into `buffer` without blocking.
    fn read_some(&mut self, buffer: &mut [u8]) -> io::Result<Received>;
    /// Closes our sending side, after what was written so far; the link may still read.
    fn close(&mut self);
    /// The other end, for messages (an address).
    fn describe(&self) -> String;
}

/// Where links come from.
pub trait Network: Send + fmt::Debug {
    /// The next incoming connection, if one is waiting. Never blocks.
    fn accept(&mut self) -> io::Result<Option<Box<dyn Link>>>;
    /// Takes the next waiting connection and closes it at once, even when the process is
    /// out of file descriptors (where [`Network::accept`] fails and would leave it waiting);
    /// returns whether there was one. Bootstrap sheds connections this way under a flood.
    fn shed(&mut self) -> io::Result<bool> {
        Ok(self.accept()?.is_some())
    }
    /// Connects to `addr` (may block for a bounded time, as a TCP connect does).
    fn dial(&mut self, addr: SocketAddr) -> io::Result<Box<dyn Link>>;
    /// Where we listen.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}
