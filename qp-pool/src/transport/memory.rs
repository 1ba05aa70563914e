//! An in-process network: listeners are registered by address on a shared hub, links are
//! pairs of byte queues. Deterministic when one thread drives it; sim tests use it so that
//! the whole cluster logic runs without sockets.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::transport::{Link, Network, Received};

/// The switchboard every in-memory network of a test shares.
#[derive(Clone, Debug, Default)]
pub struct MemoryHub {
    listeners: Arc<Mutex<BTreeMap<SocketAddr, VecDeque<MemoryLink>>>>,
}

impl MemoryHub {
    /// An empty hub.
    pub fn new() -> MemoryHub {
        MemoryHub::default()
    }

    /// Listens on `addr`; refuses an address in use.
    pub fn listen(&self, addr: SocketAddr) -> io::Result<MemoryNetwork> {
        let mut listeners = self.listeners();
        if listeners.contains_key(&addr) {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, format!("{addr} is in use on this hub")));
        }
        listeners.insert(addr, VecDeque::new());
        Ok(MemoryNetwork { hub: self.clone(), addr })
    }

    fn listeners(&self) -> MutexGuard<'_, BTreeMap<SocketAddr, VecDeque<MemoryLink>>> {
        self.listeners.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One node's listener and dialer on a [`MemoryHub`]. Dropping it stops listening.
#[derive(Debug)]
pub struct MemoryNetwork {
    hub: MemoryHub,
    addr: SocketAddr,
}

impl Drop for MemoryNetwork {
    fn drop(&mut self) {
        self.hub.listeners().remove(&self.addr);
    }
}

impl Network for MemoryNetwork {
    fn accept(&mut self) -> io::Result<Option<Box<dyn Link>>> {
        let mut listeners = self.hub.listeners();
        let queue = listeners.get_mut(&self.addr).expect("listening while the network lives");
        Ok(queue.pop_front().map(|link| Box::new(link) as Box<dyn Link>))
    }

    fn dial(&mut self, addr: SocketAddr) -> io::Result<Box<dyn Link>> {
        let mut listeners = self.hub.listeners();
        let Some(queue) = listeners.get_mut(&addr) else {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionRefused,
                format!("nothing listens on {addr}"),
            ));
        };
        let (ours, theirs) = MemoryLink::pair(addr, self.addr);
        queue.push_back(theirs);
        Ok(Box::new(ours))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

#[derive(Debug, Default)]
struct Pipe {
    bytes: VecDeque<u8>,
    closed: bool,
}

/// One end of an in-memory connection. Dropping it closes both directions.
#[derive(Debug)]
pub struct MemoryLink {
    incoming: Arc<Mutex<Pipe>>,
    outgoing: Arc<Mutex<Pipe>>,
    peer: SocketAddr,
}

impl MemoryLink {
    /// A connected pair; each end describes its other end by the address given for it.
    pub fn pair(first_peer: SocketAddr, second_peer: SocketAddr) -> (MemoryLink, MemoryLink) {
        let (a_to_b, b_to_a) = (Arc::<Mutex<Pipe>>::default(), Arc::<Mutex<Pipe>>::default());
        let first =
            MemoryLink { incoming: Arc::clone(&b_to_a), outgoing: Arc::clone(&a_to_b), peer: first_peer };
        let second = MemoryLink { incoming: a_to_b, outgoing: b_to_a, peer: second_peer };
        (first, second)
    }
}

fn lock(pipe: &Mutex<Pipe>) -> MutexGuard<'_, Pipe> {
    pipe.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Link for MemoryLink {
    fn write_some(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut pipe = lock(&self.outgoing);
        if pipe.closed {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed"));
        }
        pipe.bytes.extend(bytes);
        Ok(bytes.len())
    }

    fn read_some(&mut self, buffer: &mut [u8]) -> io::Result<Received> {
        let mut pipe = lock(&self.incoming);
        if pipe.bytes.is_empty() {
            return Ok(if pipe.closed { Received::Closed } else { Received::Nothing });
        }
        let count = buffer.len().min(pipe.bytes.len());
        for (slot, byte) in buffer.iter_mut().zip(pipe.bytes.drain(..count)) {
            *slot = byte;
        }
        Ok(Received::Data(count))
    }

    fn close(&mut self) {
        lock(&self.outgoing).closed = true;
    }

    fn describe(&self) -> String {
        format!("{} (in memory)", self.peer)
    }
}

impl Drop for MemoryLink {
    fn drop(&mut self) {
        lock(&self.outgoing).closed = true;
        lock(&self.incoming).closed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_accept_and_close() {
        let hub = MemoryHub::new();
        let (a_addr, b_addr): (SocketAddr, SocketAddr) =
            ("10.0.0.1:1".parse().unwrap(), "10.0.0.2:1".parse().unwrap());
        let mut a = hub.listen(a_addr).unwrap();
        let mut b = hub.listen(b_addr).unwrap();
        assert!(hub.listen(a_addr).is_err());
        assert!(a.dial("10.0.0.3:1".parse().unwrap()).is_err());
        let mut dialed = a.dial(b_addr).unwrap();
        let mut accepted = b.accept().unwrap().expect("a pending connection");
        assert!(b.accept().unwrap().is_none());
        assert_eq!(accepted.describe(), "10.0.0.1:1 (in memory)");
        assert_eq!(dialed.write_some(b"hello").unwrap(), 5);
        let mut buffer = [0u8; 3];
        assert_eq!(accepted.read_some(&mut buffer).unwrap(), Received::Data(3));
        assert_eq!(accepted.read_some(&mut buffer).unwrap(), Received::Data(2));
        assert_eq!(accepted.read_some(&mut buffer).unwrap(), Received::Nothing);
        drop(dialed);
        assert_eq!(accepted.read_some(&mut buffer).unwrap(), Received::Closed);
        assert!(accepted.write_some(b"x").is_err());
        drop(a);
        assert!(b.dial(a_addr).is_err());
    }
}
