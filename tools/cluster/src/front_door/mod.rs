//! The front door: one RESP address for clients that know nothing of leaders.
//!
//! Replicas redirect writes to the leader (`-MOVED`), which `redis-cli -c` follows but
//! most clients — `redis-benchmark` among them — do not; and a client connected to a
//! leader that dies loses its connection (`redis-benchmark` then exits, as it does at
//! any error reply). The front door takes each client connection and relays it to
//! whichever replica leads now (the launcher's monitor says which), one upstream
//! connection per client. When the leader changes, the client keeps its connection:
//! requests a replica did not apply go to the next leader, reads in flight are sent
//! again, and writes in flight get `-UNCERTAIN` (see [`relay`] for the rules that keep a
//! pipeline in order). An upstream that has answered nothing for a second while another
//! replica leads is taken for lost (a paused leader). State a connection keeps on the
//! replica (CLIENT SETNAME, READONLY) does not follow it to the next leader.
//!
//! It costs a hop: figures measured through it include the relay's work, on the same
//! cores as everything else.

pub mod relay;

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use relay::{ReadOnly, Relay};

/// Who leads now, by answers given after the moment passed (if any).
pub type LeaderSource = Box<dyn Fn(Option<Instant>) -> Option<SocketAddr> + Send>;

/// Makes, for each client, what tells its read-only requests.
pub type ReadOnlyFactory = Box<dyn Fn() -> ReadOnly + Send>;

/// What the front door has done, counted.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections accepted.
    pub clients: AtomicU64,
    /// Requests answered `-UNCERTAIN` because the leader was lost before replying.
    pub uncertain: AtomicU64,
    /// Requests sent again to the next leader (not applied where they were, or reads).
    pub resent: AtomicU64,
    /// Error replies passed to clients (`-UNCERTAIN` included).
    pub errors: AtomicU64,
    /// Connections made to a leader.
    pub upstream_connections: AtomicU64,
}

/// A running front door.
#[derive(Debug)]
pub struct FrontDoor {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    stats: Arc<Stats>,
    thread: Option<JoinHandle<()>>,
}

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
/// How often waiting relays look for a leader, and the loop's longest sleep.
const TICK: Duration = Duration::from_millis(5);
/// An upstream silent this long with requests outstanding, while another replica leads,
/// is lost.
const STALL: Duration = Duration::from_secs(1);
/// A connection attempt to a leader gives up after this (on loopback it never waits).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(100);

impl FrontDoor {
    /// Listens on `address` (port 0: any free port) and relays to `leader`'s answer;
    /// `read_only` tells requests that may be sent again.
    pub fn spawn(
        address: SocketAddr,
        leader: LeaderSource,
        read_only: ReadOnlyFactory,
    ) -> io::Result<FrontDoor> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(address)?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let address = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Stats::default());
        let mut door = Door { poll, listener, pairs: Vec::new(), leader, read_only, stats: stats.clone() };
        let stopped = stop.clone();
        let thread =
            std::thread::Builder::new().name("front-door".into()).spawn(move || door.run(&stopped))?;
        Ok(FrontDoor { address, stop, waker, stats, thread: Some(thread) })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A client and its upstream.
struct Pair {
    client: TcpStream,
    client_open: bool,
    upstream: Option<(TcpStream, SocketAddr)>,
    relay: Relay,
    /// When the upstream last read or took bytes.
    heard: Instant,
    /// When an upstream was last lost or left: answers older than this do not count.
    lost_at: Option<Instant>,
    next_attempt: Instant,
}

struct Door {
    poll: Poll,
    listener: TcpListener,
    pairs: Vec<Option<Pair>>,
    leader: LeaderSource,
    read_only: ReadOnlyFactory,
    stats: Arc<Stats>,
}

fn client_token(slot: usize) -> Token {
    Token(slot * 2)
}

fn upstream_token(slot: usize) -> Token {
    Token(slot * 2 + 1)
}

impl Door {
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(1024);
        while !stop.load(Ordering::Relaxed) {
            if let Err(error) = self.poll.poll(&mut events, Some(TICK)) {
                if error.kind() == ErrorKind::Interrupted {
                    continue;
                }
                eprintln!("front door: polling failed: {error}; it stops");
                return;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(token) => self.pump(token / 2),
                }
            }
            for slot in 0..self.pairs.len() {
                self.look_after(slot);
            }
        }
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut client, _)) => {
                    let _ = client.set_nodelay(true);
                    let slot = self.pairs.iter().position(Option::is_none).unwrap_or_else(|| {
                        self.pairs.push(None);
                        self.pairs.len() - 1
                    });
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    if self.poll.registry().register(&mut client, client_token(slot), interest).is_err() {
                        continue;
                    }
                    let now = Instant::now();
                    self.pairs[slot] = Some(Pair {
                        client,
                        client_open: true,
                        upstream: None,
                        relay: Relay::new((self.read_only)()),
                        heard: now,
                        lost_at: None,
                        next_attempt: now,
                    });
                    self.stats.clients.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                // Out of descriptors, or a connection reset before it was taken: the
                // next event tries again.
                Err(_) => return,
            }
        }
    }

    /// Moves bytes both ways until nothing moves.
    fn pump(&mut self, slot: usize) {
        let Some(pair) = self.pairs.get_mut(slot).and_then(Option::as_mut) else { return };
        let mut chunk = [0u8; 64 << 10];
        loop {
            let mut moved = false;
            while pair.client_open && pair.relay.reads_client() {
                match pair.client.read(&mut chunk) {
                    Ok(0) => pair.client_open = false,
                    Ok(n) => {
                        pair.relay.client_bytes(&chunk[..n]);
                        moved = true;
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == ErrorKind::Interrupted => {}
                    Err(_) => pair.client_open = false,
                }
            }
            let mut lost = false;
            if let Some((upstream, _)) = &mut pair.upstream {
                match write_some(upstream, pair.relay.upstream_out()) {
                    Ok(0) => {}
                    Ok(_) => {
                        pair.heard = Instant::now();
                        moved = true;
                    }
                    Err(_) => lost = true,
                }
                while !lost && pair.relay.reads_upstream() {
                    match upstream.read(&mut chunk) {
                        Ok(0) => lost = true,
                        Ok(n) => {
                            pair.heard = Instant::now();
                            lost = pair.relay.upstream_bytes(&chunk[..n]).is_err();
                            moved = true;
                        }
                        Err(error) if error.kind() == ErrorKind::WouldBlock => break,
                        Err(error) if error.kind() == ErrorKind::Interrupted => {}
                        Err(_) => lost = true,
                    }
                }
            }
            if lost {
                drop_upstream(&self.poll, pair);
                moved = true;
            }
            match write_some(&mut pair.client, pair.relay.client_out()) {
                Ok(0) => {}
                Ok(_) => moved = true,
                Err(_) => pair.client_open = false,
            }
            if !moved || !pair.client_open {
                break;
            }
        }
        let counts = pair.relay.take_counts();
        self.stats.uncertain.fetch_add(counts.uncertain, Ordering::Relaxed);
        self.stats.resent.fetch_add(counts.resent, Ordering::Relaxed);
        self.stats.errors.fetch_add(counts.errors, Ordering::Relaxed);
    }

    /// Closes what is done with, reroutes, and connects relays that wait for a leader.
    fn look_after(&mut self, slot: usize) {
        let Some(pair) = self.pairs[slot].as_mut() else { return };
        if !pair.client_open || pair.relay.finished() {
            let mut pair = self.pairs[slot].take().expect("looked at above");
            let _ = self.poll.registry().deregister(&mut pair.client);
            if let Some((mut upstream, _)) = pair.upstream.take() {
                let _ = self.poll.registry().deregister(&mut upstream);
            }
            return;
        }
        let now = Instant::now();
        if let Some((_, address)) = &pair.upstream {
            let stalled = pair.relay.outstanding() > 0
                && now.duration_since(pair.heard) > STALL
                && (self.leader)(Some(pair.heard)).is_some_and(|leader| leader != *address);
            if pair.relay.must_reroute() || stalled {
                drop_upstream(&self.poll, pair);
                self.pump(slot);
                return;
            }
        }
        if pair.upstream.is_none() && pair.relay.wants_upstream() && now >= pair.next_attempt {
            pair.next_attempt = now + TICK;
            let Some(address) = (self.leader)(pair.lost_at) else { return };
            let Ok(stream) = std::net::TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) else { return };
            if stream.set_nodelay(true).and_then(|()| stream.set_nonblocking(true)).is_err() {
                return;
            }
            let mut stream = TcpStream::from_std(stream);
            let interest = Interest::READABLE | Interest::WRITABLE;
            if self.poll.registry().register(&mut stream, upstream_token(slot), interest).is_err() {
                return;
            }
            pair.upstream = Some((stream, address));
            pair.heard = now;
            pair.relay.upstream_connected();
            self.stats.upstream_connections.fetch_add(1, Ordering::Relaxed);
            self.pump(slot);
        }
    }
}

/// Closes a pair's upstream and tells its relay.
fn drop_upstream(poll: &Poll, pair: &mut Pair) {
    if let Some((mut upstream, _)) = pair.upstream.take() {
        let _ = poll.registry().deregister(&mut upstream);
    }
    pair.relay.upstream_lost();
    pair.lost_at = Some(Instant::now());
}

/// Writes what it can of `buffer`, draining it: how many bytes went.
fn write_some(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> io::Result<usize> {
    let mut written = 0;
    while written < buffer.len() {
        match stream.write(&buffer[written..]) {
            Ok(0) => return Err(io::Error::new(ErrorKind::WriteZero, "the peer takes nothing")),
            Ok(n) => written += n,
            Err(error) if error.kind() == ErrorKind::WouldBlock => break,
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    buffer.drain(..written);
    Ok(written)
}
