//! The TCP connection itself: listening and connecting as perftest does, and lock-step
//! exchanges of fixed-size messages in perftest's order (the client writes then reads, the
//! server reads then writes), each bounded in length and in time.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::control::wire::{self, FRAME_HEADER_BYTES};

/// Pause between connection attempts while the server is not up yet.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// perftest's own words when a step of its exchange fails.
pub const EXCHANGE_FAILED: &str = "Failed to exchange data between server and clients";

/// The control connection.
#[derive(Debug)]
pub struct Control {
    stream: TcpStream,
    peer: SocketAddr,
    /// Who is at the other end: `server` or `client`.
    pub peer_role: &'static str,
    /// How long the peer may take over one step.
    step_timeout: Duration,
}

impl Control {
    /// Listens on `port`, on every address, as perftest's server does.
    pub fn listen(port: u16) -> Result<TcpListener> {
        TcpListener::bind(("0.0.0.0", port))
            .with_context(|| format!("Couldn't listen to port {port} (is another server running?)"))
    }

    /// Takes the next client of `listener`.
    pub fn accept(listener: &TcpListener, step_timeout: Duration) -> Result<Control> {
        let (stream, peer) = listener.accept().context("accepting the client's connection")?;
        Control::over(stream, peer, "client", step_timeout)
    }

    /// Connects to `host:port`, retrying for up to `patience` while nobody listens yet.
    pub fn connect(host: &str, port: u16, patience: Duration, step_timeout: Duration) -> Result<Control> {
        let addresses: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve server address {host}:{port}"))?
            .collect();
        let deadline = Instant::now() + patience;
        loop {
            let mut last_error = None;
            for address in &addresses {
                match TcpStream::connect_timeout(address, patience.max(Duration::from_secs(1))) {
                    Ok(stream) => return Control::over(stream, *address, "server", step_timeout),
                    Err(error) => last_error = Some(error),
                }
            }
            let error = last_error.unwrap_or_else(|| ErrorKind::AddrNotAvailable.into());
            let transient = matches!(error.kind(), ErrorKind::ConnectionRefused | ErrorKind::TimedOut);
            if !transient || Instant::now() >= deadline {
                bail!(
                    "Couldn't connect to {host}:{port}: {error} (no server there; retried for {} s)",
                    patience.as_secs()
                );
            }
            thread::sleep(RETRY_PAUSE);
        }
    }

    fn over(
        stream: TcpStream,
        peer: SocketAddr,
        peer_role: &'static str,
        step_timeout: Duration,
    ) -> Result<Control> {
        stream.set_nodelay(true).context("setting TCP_NODELAY on the control connection")?;
        // A peer that stops reading must not block this side's writes forever either.
        stream
            .set_write_timeout(Some(step_timeout.max(Duration::from_millis(1))))
            .context("a write timeout")?;
        Ok(Control { stream, peer, peer_role, step_timeout })
    }

    /// Two ends of a loopback connection, for tests.
    #[cfg(test)]
    pub fn pair(step_timeout: Duration) -> (Control, Control) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let client = TcpStream::connect(address).unwrap();
        let (server, peer) = listener.accept().unwrap();
        (
            Control::over(server, peer, "client", step_timeout).unwrap(),
            Control::over(client, address, "server", step_timeout).unwrap(),
        )
    }

    /// The peer's address.
    pub fn peer_address(&self) -> SocketAddr {
        self.peer
    }

    /// How long the peer may take over one step.
    pub fn step_timeout(&self) -> Duration {
        self.step_timeout
    }

    /// Whether this side is the client (which writes first in every exchange).
    fn is_client(&self) -> bool {
        self.peer_role == "server"
    }

    /// One lock-step exchange of `what`: sends `mine` and returns the peer's `theirs_len`
    /// bytes, waiting for them at most `patience` (`None`: as long as the peer stays).
    pub fn exchange(
        &mut self,
        mine: &[u8],
        theirs_len: usize,
        what: &str,
        patience: Option<Duration>,
    ) -> Result<Vec<u8>> {
        let mut theirs = vec![0u8; theirs_len];
        if self.is_client() {
            self.write(mine, what)?;
            self.read(&mut theirs, what, patience)?;
        } else {
            self.read(&mut theirs, what, patience)?;
            self.write(mine, what)?;
        }
        Ok(theirs)
    }

    /// Reads the peer's part of an exchange, checks it with `accept` before answering (a
    /// server that refuses what it read then closes instead of answering, so the peer
    /// fails at once), and sends `mine`.
    pub fn exchange_checked<T>(
        &mut self,
        mine: &[u8],
        theirs_len: usize,
        what: &str,
        accept: impl FnOnce(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let mut theirs = vec![0u8; theirs_len];
        if self.is_client() {
            self.write(mine, what)?;
            self.read(&mut theirs, what, Some(self.step_timeout))?;
            accept(&theirs)
        } else {
            self.read(&mut theirs, what, Some(self.step_timeout))?;
            let accepted = accept(&theirs)?;
            self.write(mine, what)?;
            Ok(accepted)
        }
    }

    /// Exchanges frames (usec peers only): `mine`, and the peer's payload of at most
    /// `bound` bytes.
    pub fn exchange_frame(&mut self, mine: &[u8], bound: usize, what: &str) -> Result<Vec<u8>> {
        let frame = wire::encode_frame(mine);
        let patience = Some(self.step_timeout);
        let read_frame = |control: &mut Control| -> Result<Vec<u8>> {
            let mut header = [0u8; FRAME_HEADER_BYTES];
            control.read(&mut header, what, patience)?;
            let length = wire::frame_length(header, bound).map_err(|error| {
                anyhow!("the {} at {} sent {what} of {error}", control.peer_role, control.peer)
            })?;
            let mut payload = vec![0u8; length];
            control.read(&mut payload, what, patience)?;
            Ok(payload)
        };
        if self.is_client() {
            self.write(&frame, what)?;
            read_frame(self)
        } else {
            let theirs = read_frame(self)?;
            self.write(&frame, what)?;
            Ok(theirs)
        }
    }

    fn write(&mut self, bytes: &[u8], what: &str) -> Result<()> {
        // perftest reads each message with one read(): one write keeps it whole.
        self.stream.write_all(bytes).map_err(|error| {
            let how = match error.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                    format!("it read nothing for {} s", self.step_timeout.as_secs_f64())
                }
                _ => error.to_string(),
            };
            anyhow!("{EXCHANGE_FAILED}: cannot send {what} to the {} at {}: {how}", self.peer_role, self.peer)
        })
    }

    fn read(&mut self, buffer: &mut [u8], what: &str, patience: Option<Duration>) -> Result<()> {
        // A zero timeout would mean none at all.
        let timeout = patience.map(|patience| patience.max(Duration::from_millis(1)));
        self.stream.set_read_timeout(timeout).context("setting a read timeout")?;
        let who = format!("the {} at {}", self.peer_role, self.peer);
        let mut filled = 0;
        while filled < buffer.len() {
            match self.stream.read(&mut buffer[filled..]) {
                Ok(0) => bail!(
                    "{EXCHANGE_FAILED}: {who} closed the connection during {what} (does it run the same test \
                     with the same options?)"
                ),
                Ok(read) => filled += read,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => bail!(
                    "{EXCHANGE_FAILED}: {who} sent nothing for {} s during {what} (is it perftest or \
                     usec-perftest running the same test, and alive?)",
                    timeout.unwrap_or_default().as_secs_f64()
                ),
                Err(error) => bail!("{EXCHANGE_FAILED}: reading {what} from {who}: {error}"),
            }
        }
        Ok(())
    }

    /// The end of a test (`ctx_close_connection`): a last barrier, then "done", never read
    /// by the peer, and the connection closes.
    pub fn close(mut self, barrier: &[u8], theirs_len: usize, patience: Option<Duration>) -> Result<()> {
        self.exchange(barrier, theirs_len, "the closing handshake", patience)?;
        // The peer may be gone already; it said all it had to.
        let _ = self.stream.write_all(wire::DONE);
        let _ = self.stream.shutdown(Shutdown::Write);
        Ok(())
    }

    /// Whether the peer has closed the connection (or the connection broke), without
    /// blocking: for loops that wait on memory the peer should write. A message waiting to
    /// be read is not a closed peer: the peer's next message may arrive while this side
    /// still waits for its last completions.
    pub fn peer_gone(&self) -> bool {
        // POLLRDHUP (Linux): the peer shut its end, even with data still waiting.
        let peer_closed = PollFlags::from_bits_retain(libc::POLLRDHUP);
        let mut fds = [PollFd::new(self.stream.as_fd(), PollFlags::POLLIN | peer_closed)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => false,
            Ok(_) => {
                let closed = peer_closed | PollFlags::POLLHUP | PollFlags::POLLERR;
                // nix reads the events back only when it knows every flag set; the one it
                // does not know is POLLRDHUP, so no answer means the peer closed.
                fds[0].revents().is_none_or(|events| events.intersects(closed))
            }
            Err(Errno::EINTR) => false,
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: Duration = Duration::from_secs(30);

    #[test]
    fn a_message_waiting_to_be_read_is_not_a_dead_peer() {
        let (mut ours, mut theirs) = Control::pair(STEP);
        // The peer's next message, arriving while this side still waits.
        theirs.write(b"next", "a test message").unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(ours.stream.peek(&mut byte).unwrap(), 1);
        assert!(!ours.peer_gone(), "a pending message was taken for a dead peer");
        assert!(!ours.peer_gone(), "asking twice changed the answer");
        let mut next = [0u8; 4];
        ours.read(&mut next, "a test message", Some(STEP)).unwrap();
        assert_eq!(&next, b"next");
        // Once it has closed its end, it is gone, pending data or not.
        theirs.write(b"more", "a test message").unwrap();
        drop(theirs);
        let started = Instant::now();
        while !ours.peer_gone() {
            assert!(started.elapsed() < STEP, "a closed peer never showed as gone");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn exchanges_go_in_perftests_order_and_return_the_peers_bytes() {
        let (mut server, mut client) = Control::pair(STEP);
        let server = thread::spawn(move || {
            let theirs = server.exchange(b"SERVER", 6, "a test step", Some(STEP)).unwrap();
            let frame = server.exchange_frame(b"s", 16, "a frame").unwrap();
            (theirs, frame)
        });
        assert_eq!(client.exchange(b"client", 6, "a test step", Some(STEP)).unwrap(), b"SERVER");
        assert_eq!(client.exchange_frame(b"c", 16, "a frame").unwrap(), b"s");
        assert_eq!(server.join().unwrap(), (b"client".to_vec(), b"c".to_vec()));
    }

    #[test]
    fn a_peer_that_stops_mid_message_or_says_nothing_is_one_line() {
        let (mut server, mut client) = Control::pair(Duration::from_millis(200));
        client.stream.write_all(b"half").unwrap();
        drop(client);
        let error = server.exchange(b"x", 8, "the version", None).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("closed the connection during the version"), "{error}");
        assert!(error.starts_with(EXCHANGE_FAILED), "{error}");
        assert!(!error.contains('\n'));

        let (mut server, _client) = Control::pair(Duration::from_millis(200));
        let error = server.exchange(b"x", 8, "the version", Some(Duration::from_millis(200)));
        let error = error.map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("sent nothing for 0.2 s during the version"), "{error}");
    }

    #[test]
    fn an_oversized_frame_is_refused_before_it_is_read() {
        let (mut server, mut client) = Control::pair(STEP);
        client.stream.write_all(&u32::MAX.to_be_bytes()).unwrap();
        let error = server.exchange_frame(b"", 1024, "the hello").unwrap_err().to_string();
        assert!(error.contains("more than the 1024 accepted"), "{error}");
    }

    #[test]
    fn a_client_without_a_server_gives_up_with_one_line() {
        // Bind then drop a listener: the port is (almost certainly) closed afterwards.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let started = Instant::now();
        let error =
            Control::connect("127.0.0.1", port, Duration::from_millis(300), STEP).unwrap_err().to_string();
        assert!(error.starts_with(&format!("Couldn't connect to 127.0.0.1:{port}")), "{error}");
        assert!(!error.contains('\n'));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
}
