//! The peer process: the benchmark binary re-executed as the other side of a ping-pong.
//!
//! The initiator starts its own executable again with [`ROLE_VARIABLE`] set to a role name;
//! the binary's `main` sees the variable before it parses any arguments and serves that
//! role (see [`role`]). The two processes talk JSON, one message per line, over the peer's
//! stdin and stdout; the peer's stderr is the initiator's, so its errors show up in the
//! same terminal. The peer must never print anything else on stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};

use anyhow::{bail, Context as _, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The environment variable that makes the binary a peer, naming the role it plays.
pub const ROLE_VARIABLE: &str = "USEC_BENCHES_PEER_ROLE";

/// The role this process was started to play, if it is a peer.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VARIABLE).ok()
}

/// One JSON message per line over a reader and a writer.
#[derive(Debug)]
pub struct Channel<R, W> {
    reader: BufReader<R>,
    writer: W,
    line: String,
}

impl<R: Read, W: Write> Channel<R, W> {
    /// A channel that reads from `reader` and writes to `writer`.
    pub fn new(reader: R, writer: W) -> Channel<R, W> {
        Channel { reader: BufReader::new(reader), writer, line: String::new() }
    }

    /// Sends one message and flushes it.
    pub fn send<T: Serialize>(&mut self, message: &T) -> Result<()> {
        serde_json::to_writer(&mut self.writer, message).context("encoding a message")?;
        self.writer.write_all(b"\n").context("writing a message")?;
        self.writer.flush().context("flushing a message")
    }

    /// Waits for the next message; `None` when the other side closed the channel.
    pub fn receive<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        self.line.clear();
        if self.reader.read_line(&mut self.line).context("reading a message")? == 0 {
            return Ok(None);
        }
        let message = serde_json::from_str(self.line.trim_end())
            .with_context(|| format!("decoding the message {:?}", self.line.trim_end()))?;
        Ok(Some(message))
    }
}

/// The peer's side of the channel: its own stdin and stdout.
pub fn channel_to_initiator() -> Channel<std::io::Stdin, std::io::Stdout> {
    Channel::new(std::io::stdin(), std::io::stdout())
}

/// A running peer process, seen from the initiator.
///
/// Dropping it before [`Peer::finish`] kills the process: a busy-polling peer left behind
/// would take a core from whatever runs next.
#[derive(Debug)]
pub struct Peer {
    role: String,
    child: Child,
    channel: Option<Channel<ChildStdout, ChildStdin>>,
}

impl Peer {
    /// Starts this executable again as a peer playing `role`.
    pub fn spawn(role: &str) -> Result<Peer> {
        let executable = std::env::current_exe().context("finding this benchmark's own executable")?;
        let mut child = Command::new(&executable)
            .env(ROLE_VARIABLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {} as the {role} peer", executable.display()))?;
        let stdin = child.stdin.take().expect("stdin was piped");
        let stdout = child.stdout.take().expect("stdout was piped");
        Ok(Peer { role: role.to_string(), child, channel: Some(Channel::new(stdout, stdin)) })
    }

    /// The peer's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one message to the peer.
    pub fn send<T: Serialize>(&mut self, message: &T) -> Result<()> {
        let role = self.role.clone();
        self.channel().send(message).with_context(|| format!("sending to the {role} peer"))
    }

    /// Waits for the peer's next message; a peer that exits instead is an error that says
    /// how it exited.
    pub fn receive<T: DeserializeOwned>(&mut self) -> Result<T> {
        let role = self.role.clone();
        match self.channel().receive().with_context(|| format!("receiving from the {role} peer"))? {
            Some(message) => Ok(message),
            None => {
                let status = self.child.wait().context("waiting for the peer")?;
                bail!("the {role} peer closed its output without answering ({status}); its stderr is above")
            }
        }
    }

    /// Fails if the peer has exited (call it when a wait on the peer stalls).
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait().context("checking on the peer")? {
            None => Ok(()),
            Some(status) => bail!("the {} peer exited early ({status})", self.role),
        }
    }

    /// Closes the channel and waits for the peer to exit; a failed exit is an error.
    pub fn finish(mut self) -> Result<()> {
        self.channel = None;
        let status: ExitStatus = self.child.wait().context("waiting for the peer to exit")?;
        if !status.success() {
            bail!("the {} peer failed ({status}); its stderr is above", self.role);
        }
        Ok(())
    }

    fn channel(&mut self) -> &mut Channel<ChildStdout, ChildStdin> {
        self.channel.as_mut().expect("the channel lives until finish")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if self.channel.is_some() {
            // Not finished: an error path. Make sure the peer does not spin on.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
