//! [`Server`]: the event loop. One thread, non-blocking sockets (mio), every client served
//! in turn:
//!
//! 1. wait for socket events — without a timeout when nothing is in flight, else only
//!    polling, so replies from the replica's thread go out as soon as they are in;
//! 2. for each client with something to do: read (at most [`ServerConfig::read_budget`]),
//!    parse and dispatch at most [`ServerConfig::requests_per_turn`] requests, write;
//! 3. hand the backend's replies to their connections, in each connection's order.
//!
//! Bounds, so that no client can hurt the others or the server: a client with
//! [`ServerConfig::max_queued`] replies waiting, or [`ServerConfig::max_unwritten_bytes`]
//! not read by it, is not read from until that drains; requests over
//! [`Limits::max_request_bytes`] are skipped and refused; at most
//! [`ServerConfig::max_clients`] connections; at most [`ServerConfig::max_in_flight`]
//! commands in the backend (below the replica's queue, so it never refuses for room). A
//! client sending half a request and going idle holds only its own bytes.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::apps::kv::syntax::c_string;
use crate::apps::resp::{reply, Args, Limits, Parsed, RequestParser};
use crate::apps::server::backend::{Backend, Submitted, Tag};
use crate::apps::server::commands::Table;
use crate::apps::server::connection::Connection;
use crate::apps::server::local::{self, InfoSource};
use crate::apps::server::{App, Prepared};

const LISTENER: Token = Token(0);
const WAKER: Token = Token(1);
const FIRST_CONNECTION: usize = 2;
/// A connection id is its slab index in the high bits and a serial in the low ones, so a
/// reply for a closed connection is never given to the one reusing its index.
const SERIAL_BITS: u32 = 40;
/// Quiet turns with replies awaited before the loop waits a millisecond at a time.
const IDLE_TURNS_BEFORE_SLEEP: u32 = 4096;

/// The front end's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The request parser's bounds.
    pub limits: Limits,
    /// Connections at most; more are told so and closed (Redis's `maxclients`).
    pub max_clients: usize,
    /// Replies a connection may have waiting before it is read from again.
    pub max_queued: usize,
    /// Reply bytes a connection may leave unread before it is read from again.
    pub max_unwritten_bytes: usize,
    /// Requests one connection may have dispatched per turn (fairness).
    pub requests_per_turn: usize,
    /// Bytes read from one connection per turn at most (fairness).
    pub read_budget: usize,
    /// Commands in the backend at most.
    pub max_in_flight: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            limits: Limits { max_request_bytes: 64 << 20, ..Limits::default() },
            max_clients: 10_000,
            max_queued: 1024,
            max_unwritten_bytes: 4 << 20,
            requests_per_turn: 256,
            read_budget: 256 << 10,
            max_in_flight: 2048,
        }
    }
}

/// Stops a running [`Server`] from another thread.
#[derive(Clone, Debug)]
pub struct Stopper {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl Stopper {
    /// Makes [`Server::run`] return soon.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
    }
}

/// A RESP server for application `A` on backend `B`.
pub struct Server<A, B> {
    poll: Poll,
    events: Events,
    listener: TcpListener,
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    config: ServerConfig,
    app: A,
    backend: B,
    connections: Vec<Option<Connection>>,
    free: Vec<usize>,
    clients: usize,
    serial: u64,
    /// Connections to serve this turn.
    active: Vec<usize>,
    /// Connections held back while the backend is full.
    blocked: Vec<usize>,
    stamp_ms: i64,
    command: Vec<u8>,
    read_scratch: Box<[u8]>,
    idle_turns: u32,
}

impl<A, B> std::fmt::Debug for Server<A, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("address", &self.address).field("clients", &self.clients).finish()
    }
}

/// INFO's and COMMAND's view of the server.
struct Info<'a, B> {
    backend: &'a B,
    clients: usize,
    port: u16,
    commands: &'a Table,
}

impl<B: Backend> InfoSource for Info<'_, B> {
    fn replication(&self, out: &mut String) {
        self.backend.replication_info(out);
    }
    fn keyspace(&self, out: &mut String) {
        self.backend.keyspace_info(out);
    }
    fn clients(&self) -> usize {
        self.clients
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn commands(&self) -> &Table {
        self.commands
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64)
}

impl<A: App, B: Backend> Server<A, B> {
    /// Listens on `address` (port 0: any free port).
    pub fn bind(address: SocketAddr, app: A, backend: B, config: ServerConfig) -> io::Result<Server<A, B>> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(address)?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let address = listener.local_addr()?;
        Ok(Server {
            poll,
            events: Events::with_capacity(1024),
            listener,
            address,
            stop: Arc::new(AtomicBool::new(false)),
            waker,
            config,
            app,
            backend,
            connections: Vec::new(),
            free: Vec::new(),
            clients: 0,
            serial: 0,
            active: Vec::new(),
            blocked: Vec::new(),
            stamp_ms: 0,
            command: Vec::new(),
            read_scratch: vec![0u8; 64 << 10].into_boxed_slice(),
            idle_turns: 0,
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// A handle that stops [`Server::run`].
    pub fn stopper(&self) -> Stopper {
        Stopper { flag: self.stop.clone(), waker: self.waker.clone() }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Serves until stopped.
    pub fn run(&mut self) -> io::Result<()> {
        while !self.stop.load(Ordering::Relaxed) {
            if self.turn()? {
                self.idle_turns = 0;
            } else {
                self.idle_turns = self.idle_turns.saturating_add(1);
                if self.idle_turns > 64 {
                    // Replies are awaited from the replica's thread: let it have the core
                    // on a small machine.
                    std::thread::yield_now();
                }
            }
        }
        Ok(())
    }

    /// One turn of the loop; whether anything happened.
    pub fn turn(&mut self) -> io::Result<bool> {
        let timeout = if !self.active.is_empty() {
            Some(Duration::ZERO)
        } else if self.backend.in_flight() > 0 {
            // Spin while replies come often; after a long quiet spell, look every
            // millisecond instead, so a slow command does not keep a core busy.
            Some(if self.idle_turns > IDLE_TURNS_BEFORE_SLEEP {
                Duration::from_millis(1)
            } else {
                Duration::ZERO
            })
        } else {
            None
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
        let mut busy = !self.events.is_empty();
        let tokens: Vec<Token> = self.events.iter().map(|event| event.token()).collect();
        for token in tokens {
            match token {
                LISTENER => self.accept(),
                WAKER => {}
                Token(index) => self.activate(index - FIRST_CONNECTION),
            }
        }
        self.stamp_ms = self.stamp_ms.max(now_ms());
        for index in std::mem::take(&mut self.active) {
            if let Some(connection) = self.connections[index].as_mut() {
                connection.active = false;
            }
            self.serve(index);
        }
        busy |= self.deliver();
        Ok(busy)
    }

    fn activate(&mut self, index: usize) {
        if let Some(Some(connection)) = self.connections.get_mut(index) {
            if !connection.active {
                connection.active = true;
                self.active.push(index);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, _) = match self.listener.accept() {
                Ok(accepted) => accepted,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors and the like: the next event tries again.
                Err(_) => return,
            };
            if self.clients >= self.config.max_clients {
                // Best effort, as Redis does: tell it, then close.
                let _ = io::Write::write(&mut stream, b"-ERR max number of clients reached\r\n");
                continue;
            }
            let _ = stream.set_nodelay(true);
            let index = self.free.pop().unwrap_or_else(|| {
                self.connections.push(None);
                self.connections.len() - 1
            });
            self.serial += 1;
            let id = ((index as u64) << SERIAL_BITS) | (self.serial & ((1 << SERIAL_BITS) - 1));
            let token = Token(index + FIRST_CONNECTION);
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                self.free.push(index);
                continue;
            }
            self.connections[index] = Some(Connection::new(stream, id, self.config.limits));
            self.clients += 1;
            self.activate(index);
        }
    }

    /// Reads, dispatches and writes for one connection.
    fn serve(&mut self, index: usize) {
        let config = self.config;
        let Some(connection) = self.connections[index].as_mut() else { return };
        let held = |connection: &Connection| {
            connection.queued() >= config.max_queued || connection.unwritten() >= config.max_unwritten_bytes
        };
        let mut more = false;
        if !connection.closing && !held(connection) {
            if self.backend.in_flight() >= config.max_in_flight {
                self.blocked.push(index);
            } else {
                let (_, drained) = connection.read(&mut self.read_scratch, config.read_budget);
                more |= !drained;
                more |= self.dispatch(index);
            }
        }
        let Some(connection) = self.connections[index].as_mut() else { return };
        connection.flush();
        if connection.gone || connection.finished() {
            self.close(index);
            return;
        }
        if more && !held(connection) {
            self.activate(index);
        }
    }

    /// Parses and dispatches requests of connection `index`; whether some were left for
    /// the next turn.
    fn dispatch(&mut self, index: usize) -> bool {
        let Server { connections, app, backend, config, command, stamp_ms, clients, address, .. } = self;
        let connection = connections[index].as_mut().expect("served connections exist");
        let mut input = std::mem::take(&mut connection.input);
        // Out of the connection while its arguments are borrowed from it.
        let mut parser = std::mem::replace(&mut connection.parser, RequestParser::new(config.limits));
        let mut start = 0;
        let mut left = false;
        let mut dispatched = 0;
        while dispatched < config.requests_per_turn {
            dispatched += 1;
            if connection.closing
                || connection.queued() >= config.max_queued
                || backend.in_flight() >= config.max_in_flight
            {
                left = start < input.len();
                break;
            }
            match parser.parse(&input[start..]) {
                Ok(Parsed::Request { len }) => {
                    let args = parser.args(&input[start..]);
                    if !args.is_empty() {
                        if local::handles(args.get(0)) {
                            let info = Info {
                                backend: &*backend,
                                clients: *clients,
                                port: address.port(),
                                commands: app.commands(),
                            };
                            let mut session = std::mem::take(&mut connection.session);
                            connection.reply(|out| {
                                local::answer(args, &mut session, &info, out);
                            });
                            connection.session = session;
                        } else {
                            request(connection, args, &*app, backend, *stamp_ms, command);
                        }
                        if connection.session.quit {
                            connection.closing = true;
                        }
                    }
                    start += len;
                }
                Ok(Parsed::TooLarge { len }) => {
                    let limit = config.limits.max_request_bytes;
                    connection.reply(|out| {
                        reply::error(
                            out,
                            format!("ERR request exceeds the {limit} bytes a request may have here"),
                        )
                    });
                    start += len;
                }
                Ok(Parsed::Incomplete { discard }) => {
                    start += discard;
                    break;
                }
                Err(error) => {
                    connection.reply(|out| out.extend_from_slice(&error.reply()));
                    connection.closing = true;
                    break;
                }
            }
            if start == input.len() {
                break;
            }
        }
        if dispatched == config.requests_per_turn && !connection.closing && start < input.len() {
            // The turn's budget ran out with bytes still buffered.
            left = true;
        }
        input.drain(..start);
        connection.input = input;
        connection.parser = parser;
        left
    }

    /// Hands the backend's replies over; whether there were any.
    fn deliver(&mut self) -> bool {
        let Server { connections, backend, active, blocked, config, .. } = self;
        let mut any = false;
        backend.poll(&mut |tag: Tag, bytes: &[u8]| {
            any = true;
            let index = (tag.connection >> SERIAL_BITS) as usize;
            let Some(Some(connection)) = connections.get_mut(index) else { return };
            if connection.session.id != tag.connection {
                return;
            }
            connection.fill(tag.slot, bytes);
            if !connection.active {
                connection.active = true;
                active.push(index);
            }
        });
        if backend.in_flight() < config.max_in_flight {
            for index in std::mem::take(blocked) {
                if let Some(Some(connection)) = connections.get_mut(index) {
                    if !connection.active {
                        connection.active = true;
                        active.push(index);
                    }
                }
            }
        }
        any
    }

    fn close(&mut self, index: usize) {
        if let Some(mut connection) = self.connections[index].take() {
            let _ = self.poll.registry().deregister(&mut connection.stream);
            self.free.push(index);
            self.clients -= 1;
        }
    }
}

/// A request for the application: prepared into a command and run by the backend, or
/// answered with an error.
fn request<A: App, B: Backend>(
    connection: &mut Connection,
    args: Args<'_>,
    app: &A,
    backend: &mut B,
    stamp_ms: i64,
    command: &mut Vec<u8>,
) {
    command.clear();
    let mut error = Vec::new();
    let prepared = app.prepare(args, stamp_ms, command, &mut error);
    match prepared {
        Prepared::Replied => connection.reply(|out| out.extend_from_slice(&error)),
        Prepared::Unknown => connection.reply(|out| unknown_command(out, args)),
        Prepared::Local => connection.reply(|out| backend.stale_read(command, out)),
        Prepared::Read if connection.session.readonly => {
            connection.reply(|out| backend.stale_read(command, out))
        }
        // Not behind a pending reply of its own connection: a pipelined read after a write
        // waits for the write's turn in the log.
        Prepared::Read
            if connection.nothing_waits() && backend.linearizable_read(command, connection.output()) => {}
        Prepared::Read | Prepared::Write => {
            if command.len() > backend.max_command_bytes() {
                let (len, max) = (command.len(), backend.max_command_bytes());
                return connection.reply(|out| {
                    reply::error(
                        out,
                        format!("ERR command of {len} bytes exceeds the log's entry limit of {max} bytes"),
                    )
                });
            }
            let tag = Tag { connection: connection.session.id, slot: connection.next_slot() };
            let read = prepared == Prepared::Read;
            if connection.nothing_waits() {
                if backend.submit(tag, command, read, connection.output()) == Submitted::Pending {
                    connection.wait();
                }
            } else {
                let mut out = Vec::new();
                match backend.submit(tag, command, read, &mut out) {
                    Submitted::Pending => connection.wait(),
                    Submitted::Done => connection.reply(|bytes| bytes.extend_from_slice(&out)),
                }
            }
        }
    }
}

/// Redis 7.0's `-ERR unknown command 'name', with args beginning with: 'a' 'b' `: the
/// name to 128 bytes, then arguments while the list is under 128 bytes, each cut to what
/// is left of them (C strings: each ends at its first NUL).
fn unknown_command(out: &mut Vec<u8>, args: Args<'_>) {
    let mut text = b"ERR unknown command '".to_vec();
    let name = c_string(args.get(0));
    text.extend_from_slice(&name[..name.len().min(128)]);
    text.extend_from_slice(b"', with args beginning with: ");
    let mut listed = 0;
    for arg in args.iter_from(1) {
        if listed >= 128 {
            break;
        }
        let arg = c_string(arg);
        let cut = &arg[..arg.len().min(128 - listed)];
        text.push(b'\'');
        text.extend_from_slice(cut);
        text.extend_from_slice(b"' ");
        listed += cut.len() + 3;
    }
    reply::error(out, text);
}
