//! The TCP control connection: how the two sides find each other, check that they run the
//! same test, exchange QP endpoints and buffer descriptors, and keep in step.
//!
//! perftest's server listens on TCP port 18515 and its client connects; so do ours, but the
//! messages are our own (one JSON object per line), so only `usec-perftest` talks to
//! `usec-perftest`. The first message each way is a [`Hello`]; if the two disagree on
//! anything that must match, both sides say so in one line and stop.

use std::io::{BufRead, BufReader, ErrorKind, Read as _, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

use crate::settings::{DurationPlan, Settings};
use crate::stats::BandwidthStats;
use crate::test_kind::{AtomicType, TestKind};

/// Bumped when the messages change.
pub const PROTOCOL_VERSION: u32 = 1;
/// The program name a peer must announce.
const PROGRAM: &str = "usec-perftest";
/// How long a peer may take over one control step (its hello, its QPs, a barrier that does
/// not wait for a run) before this side gives up on it.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest message before the hello says how many QPs there are.
const MESSAGE_BYTES_MAX: usize = 64 * 1024;
/// What each QP adds to the longest message (its line in the QP exchange).
const MESSAGE_BYTES_PER_QP: usize = 1024;
/// Pause between connection attempts while the server is not up yet.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The first message each way: what this side is about to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// Always `usec-perftest`.
    pub program: String,
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The sender's crate version, for messages.
    pub version: String,
    /// The test.
    pub test: TestKind,
    /// The atomic operation.
    pub atomic: AtomicType,
    /// The sizes, in order.
    pub sizes: Vec<u64>,
    /// Iterations per size (unused with a duration).
    pub iterations: u64,
    /// The duration plan, if any.
    pub duration: Option<DurationPlan>,
    /// QPs.
    pub qps: u32,
    /// The provider of the sender's device (`soft`, `ibverbs`, `sim`).
    pub provider: String,
}

impl Hello {
    /// What `settings` will run on `provider`.
    pub fn new(settings: &Settings, provider: &str) -> Hello {
        Hello {
            program: PROGRAM.to_string(),
            protocol: PROTOCOL_VERSION,
            version: env!("CARGO_PKG_VERSION").to_string(),
            test: settings.test,
            atomic: settings.atomic,
            sizes: settings.sizes(),
            iterations: settings.iterations,
            duration: settings.duration,
            qps: settings.qps,
            provider: provider.to_string(),
        }
    }

    /// How `peer` differs from this side in what must match, as one phrase naming both
    /// values (`this client runs read_lat, the server write_lat`); `None` if they match.
    pub fn mismatch(&self, peer: &Hello, me: &str, them: &str) -> Option<String> {
        let differ = |what: &str, mine: String, theirs: String| {
            Some(format!("{what}: this {me} has {mine}, the {them} {theirs}"))
        };
        if peer.protocol != self.protocol {
            return differ(
                "protocol version",
                format!("{} (usec-perftest {})", self.protocol, self.version),
                format!("{} (usec-perftest {})", peer.protocol, peer.version),
            );
        }
        if peer.test != self.test {
            return Some(format!("test: this {me} runs {}, the {them} runs {}", self.test, peer.test));
        }
        if peer.atomic != self.atomic {
            return differ(
                "atomic type",
                self.atomic.perftest_name().into(),
                peer.atomic.perftest_name().into(),
            );
        }
        if peer.sizes != self.sizes {
            return differ("message sizes (-s/-a)", describe_sizes(&self.sizes), describe_sizes(&peer.sizes));
        }
        if peer.duration != self.duration {
            return differ(
                "duration (-D)",
                describe_duration(self.duration),
                describe_duration(peer.duration),
            );
        }
        if self.duration.is_none() && peer.iterations != self.iterations {
            return differ("iterations (-n)", self.iterations.to_string(), peer.iterations.to_string());
        }
        if peer.qps != self.qps {
            return differ("QPs (-q)", self.qps.to_string(), peer.qps.to_string());
        }
        if peer.provider != self.provider {
            return differ("provider (-d)", self.provider.clone(), peer.provider.clone());
        }
        None
    }
}

fn describe_sizes(sizes: &[u64]) -> String {
    match sizes {
        [one] => format!("size {one}"),
        _ => "all sizes (-a)".to_string(),
    }
}

fn describe_duration(duration: Option<DurationPlan>) -> String {
    duration.map_or_else(|| "no duration".to_string(), |plan| format!("{} s", plan.total_s))
}

/// One QP of one side: its endpoint, and the buffer the peer's one-sided operations target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QpInfo {
    /// The endpoint in its hex text form.
    pub endpoint: String,
    /// Remote key of the buffer.
    pub rkey: u32,
    /// Address of the buffer.
    pub addr: u64,
    /// Length of the buffer.
    pub len: u64,
    /// READs and atomics this side lets in flight.
    pub out_reads: u32,
}

/// Everything that goes over the control connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    /// The first message.
    Hello(Hello),
    /// A side's QPs.
    QueuePairs {
        /// One per QP, in order.
        qps: Vec<QpInfo>,
    },
    /// A barrier: both sides reached `step`.
    Sync {
        /// What was reached, to catch the two sides drifting apart.
        step: String,
    },
    /// The client's bandwidth rows, which the server prints as its own (as perftest's
    /// write/read bandwidth servers do).
    Report {
        /// One per size.
        rows: Vec<BandwidthStats>,
    },
    /// This side failed; the peer should stop and say why.
    Failed {
        /// The one-line reason.
        reason: String,
    },
}

/// The control connection.
#[derive(Debug)]
pub struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    peer: SocketAddr,
    /// Who is at the other end: `server` or `client`.
    pub peer_role: &'static str,
    line: String,
    /// The longest message accepted: a peer that sends more without a newline is refused.
    message_bytes_max: usize,
}

impl Control {
    /// Listens on `port`, on every address, as perftest's server does.
    pub fn listen(port: u16) -> Result<TcpListener> {
        TcpListener::bind(("0.0.0.0", port))
            .with_context(|| format!("cannot listen on TCP port {port} (is another server running?)"))
    }

    /// Takes the next client of `listener`.
    pub fn accept(listener: &TcpListener) -> Result<Control> {
        let (stream, peer) = listener.accept().context("accepting the client's connection")?;
        Control::over(stream, peer, "client")
    }

    /// Connects to `host:port`, retrying for up to `patience` while nobody listens yet.
    pub fn connect(host: &str, port: u16, patience: Duration) -> Result<Control> {
        let addresses: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve server address {host}:{port}"))?
            .collect();
        let deadline = Instant::now() + patience;
        loop {
            let mut last_error = None;
            for address in &addresses {
                match TcpStream::connect_timeout(address, patience.max(Duration::from_secs(1))) {
                    Ok(stream) => return Control::over(stream, *address, "server"),
                    Err(error) => last_error = Some(error),
                }
            }
            let error = last_error.unwrap_or_else(|| ErrorKind::AddrNotAvailable.into());
            let transient = matches!(error.kind(), ErrorKind::ConnectionRefused | ErrorKind::TimedOut);
            if !transient || Instant::now() >= deadline {
                bail!(
                    "Couldn't connect to {host}:{port}: {error} (no usec-perftest server there; retried for {} s)",
                    patience.as_secs()
                );
            }
            thread::sleep(RETRY_PAUSE);
        }
    }

    fn over(stream: TcpStream, peer: SocketAddr, peer_role: &'static str) -> Result<Control> {
        stream.set_nodelay(true).context("setting TCP_NODELAY on the control connection")?;
        // A peer that stops reading must not block this side's sends forever either.
        stream.set_write_timeout(Some(STEP_TIMEOUT)).context("setting a write timeout")?;
        let writer = stream.try_clone().context("cloning the control connection")?;
        Ok(Control {
            reader: BufReader::new(stream),
            writer,
            peer,
            peer_role,
            line: String::new(),
            message_bytes_max: MESSAGE_BYTES_MAX,
        })
    }

    /// Sends one message.
    pub fn send(&mut self, message: &Message) -> Result<()> {
        let mut bytes = serde_json::to_vec(message).expect("messages always serialise");
        bytes.push(b'\n');
        self.writer
            .write_all(&bytes)
            .with_context(|| format!("the {} at {} closed the connection", self.peer_role, self.peer))
    }

    /// Waits up to [`STEP_TIMEOUT`] for the next message. A `Failed` message from the peer
    /// becomes this side's error, and so does a closed connection.
    pub fn receive(&mut self) -> Result<Message> {
        self.receive_within(STEP_TIMEOUT)
    }

    /// Waits up to `patience` for the next message, of at most the bounded length.
    pub fn receive_within(&mut self, patience: Duration) -> Result<Message> {
        self.line.clear();
        let who = format!("the {} at {}", self.peer_role, self.peer);
        // A zero timeout would mean none at all.
        let patience = patience.max(Duration::from_millis(1));
        self.reader.get_ref().set_read_timeout(Some(patience)).context("setting a read timeout")?;
        let limit = self.message_bytes_max as u64 + 1;
        let read = (&mut self.reader).take(limit).read_line(&mut self.line);
        match read {
            Ok(0) => bail!("{who} closed the connection"),
            Ok(_) if !self.line.ends_with('\n') && self.line.len() as u64 >= limit => bail!(
                "{who} sent a control message longer than {} bytes: is it usec-perftest?",
                self.message_bytes_max
            ),
            Ok(_) if !self.line.ends_with('\n') => bail!("{who} closed the connection mid-message"),
            Ok(_) => {}
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                bail!("{who} sent nothing in {} s: is it usec-perftest, and alive?", patience.as_secs_f64())
            }
            Err(error) => return Err(anyhow!(error).context(format!("reading from {who}"))),
        }
        let message: Message = serde_json::from_str(self.line.trim_end()).map_err(|_| {
            let shown: String = self.line.trim_end().chars().take(60).collect();
            anyhow!("{who} does not speak usec-perftest's protocol (it sent {shown:?})")
        })?;
        if let Message::Failed { reason } = &message {
            bail!("the {} failed: {reason}", self.peer_role);
        }
        Ok(message)
    }

    /// Exchanges hellos; a mismatch is an error on both sides.
    pub fn hello(&mut self, mine: &Hello, my_role: &str) -> Result<Hello> {
        self.send(&Message::Hello(mine.clone()))?;
        let peer = match self.receive()? {
            Message::Hello(hello) if hello.program == PROGRAM => hello,
            other => {
                bail!("the {} at {} is not usec-perftest (it sent {other:?})", self.peer_role, self.peer)
            }
        };
        if let Some(difference) = mine.mismatch(&peer, my_role, self.peer_role) {
            bail!("mismatched peer at {}: {difference}", self.peer);
        }
        // Now that both run the same number of QPs, the QP exchange may be that long.
        self.message_bytes_max = MESSAGE_BYTES_MAX + MESSAGE_BYTES_PER_QP * mine.qps as usize;
        Ok(peer)
    }

    /// Sends this side's QPs and returns the peer's.
    pub fn exchange_qps(&mut self, mine: Vec<QpInfo>) -> Result<Vec<QpInfo>> {
        let count = mine.len();
        self.send(&Message::QueuePairs { qps: mine })?;
        match self.receive()? {
            Message::QueuePairs { qps } if qps.len() == count => Ok(qps),
            Message::QueuePairs { qps } => {
                bail!("the {} has {} QPs, this side {count}", self.peer_role, qps.len())
            }
            other => bail!("expected the {}'s QPs, got {other:?}", self.peer_role),
        }
    }

    /// A barrier: returns once both sides reached `step`; the peer has `patience` to get
    /// there (a run of its own may come first).
    pub fn sync(&mut self, step: &str, patience: Duration) -> Result<()> {
        self.send(&Message::Sync { step: step.to_string() })?;
        match self.receive_within(patience)? {
            Message::Sync { step: theirs } if theirs == step => Ok(()),
            other => bail!("out of step with the {}: expected sync {step:?}, got {other:?}", self.peer_role),
        }
    }

    /// Tells the peer this side failed (best effort: the connection may be gone).
    pub fn report_failure(&mut self, reason: &str) {
        let _ = self.send(&Message::Failed { reason: reason.to_string() });
    }

    /// Two ends of a loopback connection, for tests.
    #[cfg(test)]
    pub fn pair() -> (Control, Control) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let client = TcpStream::connect(address).unwrap();
        let (server, peer) = listener.accept().unwrap();
        (Control::over(server, peer, "client").unwrap(), Control::over(client, address, "server").unwrap())
    }

    /// Whether the peer has closed the connection (or the connection broke), without
    /// blocking: for loops that wait on memory the peer should write. A message waiting
    /// to be read is not a closed peer: the peer's normal next message may arrive while
    /// this side still waits for its last completions. A peer that fails says why and
    /// closes, so its failure shows here too.
    pub fn peer_gone(&mut self) -> bool {
        let stream = self.reader.get_ref();
        // POLLRDHUP (Linux): the peer shut its end, even with data still waiting.
        let peer_closed = PollFlags::from_bits_retain(libc::POLLRDHUP);
        let interest = PollFlags::POLLIN | peer_closed;
        let mut fds = [PollFd::new(stream.as_fd(), interest)];
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

    fn hello() -> Hello {
        Hello {
            program: PROGRAM.into(),
            protocol: PROTOCOL_VERSION,
            version: "0.1.0".into(),
            test: TestKind::WriteLat,
            atomic: AtomicType::FetchAndAdd,
            sizes: vec![2],
            iterations: 1000,
            duration: None,
            qps: 1,
            provider: "soft".into(),
        }
    }

    #[test]
    fn matching_hellos_agree() {
        assert_eq!(hello().mismatch(&hello(), "client", "server"), None);
        // Iterations do not matter in duration mode.
        let plan = Some(DurationPlan { total_s: 4, margin_s: 1 });
        let (mut a, mut b) = (hello(), hello());
        (a.duration, b.duration, b.iterations) = (plan, plan, 5);
        assert_eq!(a.mismatch(&b, "client", "server"), None);
    }

    #[test]
    fn every_difference_is_named_with_both_values() {
        let base = hello();
        let cases: Vec<(Hello, &str)> = vec![
            (
                Hello { test: TestKind::ReadLat, ..hello() },
                "test: this client runs write_lat, the server runs read_lat",
            ),
            (
                Hello { sizes: vec![64], ..hello() },
                "message sizes (-s/-a): this client has size 2, the server size 64",
            ),
            (Hello { iterations: 10, ..hello() }, "iterations (-n): this client has 1000, the server 10"),
            (Hello { qps: 2, ..hello() }, "QPs (-q): this client has 1, the server 2"),
            (
                Hello { provider: "ibverbs".into(), ..hello() },
                "provider (-d): this client has soft, the server ibverbs",
            ),
            (Hello { atomic: AtomicType::CmpAndSwap, ..hello() }, "atomic type"),
            (Hello { protocol: 99, ..hello() }, "protocol version"),
            (
                Hello { duration: Some(DurationPlan { total_s: 4, margin_s: 1 }), ..hello() },
                "duration (-D): this client has no duration, the server 4 s",
            ),
        ];
        for (peer, expected) in cases {
            let said = base.mismatch(&peer, "client", "server").expect("a mismatch");
            assert!(said.contains(expected), "{said:?} lacks {expected:?}");
        }
    }

    #[test]
    fn messages_round_trip_as_json_lines() {
        let messages = vec![
            Message::Hello(hello()),
            Message::QueuePairs {
                qps: vec![QpInfo { endpoint: "7545".into(), rkey: 7, addr: 0x1000, len: 64, out_reads: 16 }],
            },
            Message::Sync { step: "size 2".into() },
            Message::Failed { reason: "boom".into() },
        ];
        for message in messages {
            let line = serde_json::to_string(&message).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<Message>(&line).unwrap(), message);
        }
    }

    #[test]
    fn a_message_waiting_to_be_read_is_not_a_dead_peer() {
        let (mut ours, mut theirs) = Control::pair();
        // The peer's normal end-of-run message, arriving while this side still waits.
        theirs.send(&Message::Sync { step: "done".into() }).unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(ours.reader.get_ref().peek(&mut byte).unwrap(), 1);
        assert!(!ours.peer_gone(), "a pending message was taken for a dead peer");
        assert!(!ours.peer_gone(), "asking twice changed the answer");
        assert_eq!(ours.receive().unwrap(), Message::Sync { step: "done".into() });
        // Once it has closed its end, it is gone, pending data or not.
        theirs.send(&Message::Sync { step: "more".into() }).unwrap();
        drop(theirs);
        let started = Instant::now();
        while !ours.peer_gone() {
            assert!(started.elapsed() < Duration::from_secs(30), "a closed peer never showed as gone");
            thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_client_without_a_server_gives_up_with_one_line() {
        // Bind then drop a listener: the port is (almost certainly) closed afterwards.
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let started = Instant::now();
        let error = Control::connect("127.0.0.1", port, Duration::from_millis(300)).unwrap_err().to_string();
        assert!(error.starts_with(&format!("Couldn't connect to 127.0.0.1:{port}")), "{error}");
        assert!(!error.contains('\n'));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[test]
    fn two_ends_say_hello_sync_and_exchange() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (stream, peer) = listener.accept().unwrap();
            let mut control = Control::over(stream, peer, "client").unwrap();
            control.hello(&hello(), "server").unwrap();
            let theirs = control
                .exchange_qps(vec![QpInfo { endpoint: "aa".into(), rkey: 1, addr: 2, len: 3, out_reads: 4 }])
                .unwrap();
            control.sync("go", STEP_TIMEOUT).unwrap();
            theirs
        });
        let mut client = Control::connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
        client.hello(&hello(), "client").unwrap();
        let theirs = client
            .exchange_qps(vec![QpInfo { endpoint: "bb".into(), rkey: 5, addr: 6, len: 7, out_reads: 8 }])
            .unwrap();
        client.sync("go", STEP_TIMEOUT).unwrap();
        assert_eq!(theirs[0].endpoint, "aa");
        assert_eq!(server.join().unwrap()[0].endpoint, "bb");
    }

    #[test]
    fn a_mismatched_peer_is_an_error_on_both_sides() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (stream, peer) = listener.accept().unwrap();
            let mut control = Control::over(stream, peer, "client").unwrap();
            control.hello(&hello(), "server").unwrap_err().to_string()
        });
        let mut client = Control::connect("127.0.0.1", port, Duration::from_secs(5)).unwrap();
        let mine = Hello { test: TestKind::SendLat, ..hello() };
        let client_error = client.hello(&mine, "client").unwrap_err().to_string();
        let server_error = server.join().unwrap();
        assert!(
            client_error.contains("this client runs send_lat, the server runs write_lat"),
            "{client_error}"
        );
        assert!(
            server_error.contains("this server runs write_lat, the client runs send_lat"),
            "{server_error}"
        );
    }
}
