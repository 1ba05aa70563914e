//! The client transport over TCP (see the [module documentation](super) for why TCP):
//! [`ClientServer`], a replica's non-blocking listener, and [`ClientLink`], a client's
//! connections to every replica around the sans-IO [`Client`].
//!
//! A connection starts with a hello frame: the client's id (`u32`, little endian). It only
//! routes replies back; a request's client is checked against its signature by the replica,
//! and a request on a connection whose hello named another client is refused there.

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use usec_qp_pool::NodeId;

use super::framing::{self, FrameReader};
use crate::bft::consensus::{Client, ClientId};
use crate::error::{Error, Result};

/// The longest frame either side takes (a request or reply of the largest operation with
/// room to spare; consensus's own limits check the contents).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Bytes queued for a slow connection at most before it is dropped.
const OUTBOX_MAX: usize = 4 << 20;

#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    reader: FrameReader,
    client: Option<ClientId>,
    outbox: Vec<u8>,
}

impl Connection {
    fn new(stream: TcpStream) -> std::io::Result<Connection> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, reader: FrameReader::new(MAX_FRAME_BYTES), client: None, outbox: Vec::new() })
    }

    /// Writes what the socket takes now; false once the connection is unusable.
    fn flush(&mut self) -> bool {
        while !self.outbox.is_empty() {
            match self.stream.write(&self.outbox) {
                Ok(0) => return false,
                Ok(n) => {
                    self.outbox.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return self.outbox.len() <= OUTBOX_MAX,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
        true
    }
}

/// A replica's end: accepts clients, hands their frames over, sends replies.
#[derive(Debug)]
pub struct ClientServer {
    listener: TcpListener,
    connections: Vec<Connection>,
}

impl ClientServer {
    /// Serves clients on `listener` (made non-blocking).
    pub fn new(listener: TcpListener) -> Result<ClientServer> {
        listener.set_nonblocking(true).map_err(|e| Error::Config(format!("client listener: {e}")))?;
        Ok(ClientServer { listener, connections: Vec::new() })
    }

    /// Where clients connect.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Accepts new connections and hands each complete request frame to `deliver`, with
    /// the client its connection's hello named. Whether anything arrived.
    pub fn poll(&mut self, mut deliver: impl FnMut(ClientId, &[u8])) -> bool {
        let mut any = false;
        while let Ok((stream, _)) = self.listener.accept() {
            any = true;
            if let Ok(connection) = Connection::new(stream) {
                self.connections.push(connection);
            }
        }
        self.connections.retain_mut(|connection| {
            if connection.reader.fill(&mut connection.stream).is_err() {
                return false;
            }
            loop {
                match connection.reader.next_frame() {
                    Ok(None) => return true,
                    Err(_) => return false,
                    Ok(Some(frame)) => {
                        any = true;
                        match connection.client {
                            Some(client) => deliver(client, &frame),
                            None => match <[u8; 4]>::try_from(frame.as_slice()) {
                                Ok(id) => connection.client = Some(ClientId(u32::from_le_bytes(id))),
                                Err(_) => return false,
                            },
                        }
                    }
                }
            }
        });
        any
    }

    /// Sends `bytes` to every connection of `client` (dropped if it has none: the client
    /// retransmits, and the replica answers again from its reply cache).
    pub fn send(&mut self, client: ClientId, bytes: &[u8]) {
        self.connections.retain_mut(|connection| {
            if connection.client != Some(client) {
                return true;
            }
            framing::encode(bytes, &mut connection.outbox);
            connection.flush()
        });
    }

    /// Writes what waits for slow connections.
    pub fn flush(&mut self) {
        self.connections.retain_mut(Connection::flush);
    }

    /// Clients connected now.
    pub fn connections(&self) -> usize {
        self.connections.len()
    }
}

/// A client's end: one connection per replica (reconnected when lost), a [`Client`]
/// deciding what to send and what to accept.
#[derive(Debug)]
pub struct ClientLink {
    id: ClientId,
    client: Client,
    replicas: Vec<(NodeId, SocketAddr, Option<Connection>)>,
    epoch: Instant,
    reconnect_every: Duration,
    last_reconnect: Instant,
}

impl ClientLink {
    /// `client` (of id `id`) reaching the replicas at `replicas`; connects to those that
    /// answer now, and to the others later.
    pub fn new(id: ClientId, client: Client, replicas: &[(NodeId, SocketAddr)]) -> ClientLink {
        let now = Instant::now();
        let mut link = ClientLink {
            id,
            client,
            replicas: replicas.iter().map(|&(node, addr)| (node, addr, None)).collect(),
            epoch: now,
            reconnect_every: Duration::from_millis(100),
            last_reconnect: now,
        };
        link.reconnect();
        link
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn reconnect(&mut self) {
        self.last_reconnect = Instant::now();
        let hello = self.id.0.to_le_bytes();
        for (_, addr, connection) in self.replicas.iter_mut().filter(|(_, _, c)| c.is_none()) {
            let Ok(stream) = TcpStream::connect_timeout(addr, Duration::from_millis(200)) else { continue };
            let Ok(mut new) = Connection::new(stream) else { continue };
            framing::encode(&hello, &mut new.outbox);
            if new.flush() {
                *connection = Some(new);
            }
        }
    }

    /// Sends `operation` to the replicas; its number, or `None` while a request is
    /// outstanding (one at a time per client).
    pub fn submit(&mut self, operation: Vec<u8>) -> Option<u64> {
        let number = self.client.submit(self.now_ns(), operation)?;
        self.send_actions();
        Some(number)
    }

    /// One non-blocking step: replies read, retransmissions when due, lost connections
    /// redialled now and then. Whether anything happened.
    pub fn turn(&mut self) -> bool {
        self.send_actions();
        let mut any = self.read_replies();
        let now = self.now_ns();
        if self.client.poll_timeout().is_some_and(|due| due <= now) {
            self.client.tick(now);
            self.send_actions();
            any = true;
        }
        if self.last_reconnect.elapsed() >= self.reconnect_every
            && self.replicas.iter().any(|(_, _, c)| c.is_none())
        {
            self.reconnect();
        }
        any
    }

    /// The next accepted result: `(number, result)`.
    pub fn poll_result(&mut self) -> Option<(u64, Vec<u8>)> {
        self.client.poll_result()
    }

    /// Whether a request waits for its result.
    pub fn busy(&self) -> bool {
        self.client.outstanding().is_some()
    }

    /// Runs `operation` through the replicas and returns the result f + 1 of them signed,
    /// or an error once `timeout` passes without one (blocking).
    pub fn call(&mut self, operation: Vec<u8>, timeout: Duration) -> Result<Vec<u8>> {
        let started = Instant::now();
        let number =
            self.submit(operation).ok_or_else(|| Error::Config("a request is still outstanding".into()))?;
        loop {
            let any = self.turn();
            while let Some((answered, result)) = self.poll_result() {
                if answered == number {
                    return Ok(result);
                }
            }
            if started.elapsed() > timeout {
                return Err(Error::Config(format!(
                    "request {number}: no f + 1 matching replies in {timeout:?}"
                )));
            }
            if !any {
                std::thread::yield_now();
            }
        }
    }

    fn send_actions(&mut self) {
        while let Some(send) = self.client.poll_action() {
            let Some((_, _, slot)) = self.replicas.iter_mut().find(|(node, _, _)| *node == send.to) else {
                continue;
            };
            if let Some(connection) = slot.as_mut() {
                framing::encode(&send.bytes, &mut connection.outbox);
                if !connection.flush() {
                    *slot = None;
                }
            }
        }
    }

    fn read_replies(&mut self) -> bool {
        let mut any = false;
        for (node, _, slot) in &mut self.replicas {
            let Some(connection) = slot.as_mut() else { continue };
            let mut alive = connection.flush() && connection.reader.fill(&mut connection.stream).is_ok();
            loop {
                match connection.reader.next_frame() {
                    Ok(Some(frame)) => {
                        any = true;
                        // Refusals are counted in the client's statistics.
                        let _ = self.client.handle_reply(*node, &frame);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        alive = false;
                        break;
                    }
                }
            }
            if !alive {
                *slot = None;
            }
        }
        any
    }

    /// The client (its statistics).
    pub fn client(&self) -> &Client {
        &self.client
    }
}
