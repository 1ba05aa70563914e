//! TCP: a non-blocking listener, and non-blocking streams with Nagle off.

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
}

impl TcpNetwork {
    /// Listens on `addr`.
    pub fn bind(addr: SocketAddr) -> io::Result<TcpNetwork> {
        TcpNetwork::from_listener(TcpListener::bind(addr)?)
    }

    /// Uses a listener bound already (tests bind port 0 first, then write the description).
    pub fn from_listener(listener: TcpListener) -> io::Result<TcpNetwork> {
        listener.set_nonblocking(true)?;
        Ok(TcpNetwork { listener })
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
