//! TCP: a non-blocking listener, and non-blocking streams with Nagle off.
//!
//! The listener keeps one file descriptor in reserve (a duplicate of itself): when the
//! process runs out of descriptors, [`Network::shed`] gives the reserve up for a moment to
//! take a waiting connection and close it, so that a flood cannot park connections in the
//! accept queue that nobody can take.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use crate::transport::{Link, Network, Received};

/// The longest a single connect may block (loopback answers at once; a remote host that
/// drops SYNs is retried on the bootstrap's backoff instead).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// A TCP listener and dialer.
#[derive(Debug)]
pub struct TcpNetwork {
    listener: TcpListener,
    /// A descriptor held to be given up when [`Network::shed`] needs one.
    reserve: Option<TcpListener>,
}

impl TcpNetwork {
    /// Listens on `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpNetwork> {
        TcpNetwork::from_listener(TcpListener::bind(addr)?)
    }

    /// Uses a listener bound already (tests bind port 0 first, then write the description).
    pub fn from_listener(listener: TcpListener) -> io::Result<TcpNetwork> {
        listener.set_nonblocking(true)?;
        let reserve = Some(listener.try_clone()?);
        Ok(TcpNetwork { listener, reserve })
    }
}

impl Network for TcpNetwork {
    fn accept(&mut self) -> io::Result<Option<Box<dyn Link>>> {
        match self.listener.accept() {
            Ok((stream, addr)) => Ok(Some(Box::new(TcpLink::new(stream, addr)?))),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn shed(&mut self) -> io::Result<bool> {
        if self.reserve.is_none() {
            // Given up last time and not got back then: try again.
            self.reserve = self.listener.try_clone().ok();
        }
        let Some(reserve) = self.reserve.take() else { return Ok(false) };
        drop(reserve);
        let shed = match self.listener.accept() {
            Ok((_stream, _)) => Ok(true), // closed as it goes out of scope
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(error) => Err(error),
        };
        self.reserve = self.listener.try_clone().ok();
        shed
    }

    fn dial(&mut self, addr: SocketAddr) -> io::Result<Box<dyn Link>> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        Ok(Box::new(TcpLink::new(stream, addr)?))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A non-blocking TCP stream.
#[derive(Debug)]
pub struct TcpLink {
    stream: TcpStream,
    peer: SocketAddr,
}

impl TcpLink {
    fn new(stream: TcpStream, peer: SocketAddr) -> io::Result<TcpLink> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(TcpLink { stream, peer })
    }
}

impl Link for TcpLink {
    fn write_some(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.stream.write(bytes) {
            Ok(written) => Ok(written),
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                Ok(0)
            }
            Err(error) => Err(error),
        }
    }

    fn read_some(&mut self, buffer: &mut [u8]) -> io::Result<Received> {
        match self.stream.read(buffer) {
            Ok(0) => Ok(Received::Closed),
            Ok(read) => Ok(Received::Data(read)),
            Err(error) if matches!(error.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {
                Ok(Received::Nothing)
            }
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => Ok(Received::Closed),
            Err(error) => Err(error),
        }
    }

    fn close(&mut self) {
        // Shut down our side only: a reject frame written just before must reach the peer,
        // which a close with unread input (an RST) could discard.
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    fn describe(&self) -> String {
        self.peer.to_string()
    }
}
