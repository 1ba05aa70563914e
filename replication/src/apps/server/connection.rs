//! [`Connection`]: one client's socket, its unparsed bytes, and its replies in request
//! order — a reply that is ready while an earlier one is still in the log waits behind it.
//!
//! While nothing is pending, replies go straight into the output buffer: the pipelined
//! path allocates nothing per request.

use std::collections::VecDeque;
use std::io::{self, Read, Write};

use mio::net::TcpStream;

use crate::apps::resp::{Limits, RequestParser};
use crate::apps::server::local::Session;

/// A reply not yet in the output buffer.
#[derive(Debug)]
enum Slot {
    /// Waiting for the backend.
    Waiting,
    /// Ready, behind a waiting one.
    Ready(Vec<u8>),
}

/// One client.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: TcpStream,
    pub(crate) session: Session,
    pub(crate) parser: RequestParser,
    /// Bytes read and not yet parsed; the front is where the next request starts.
    pub(crate) input: Vec<u8>,
    output: Vec<u8>,
    written: usize,
    slots: VecDeque<Slot>,
    /// The number of `slots.front()`.
    first_slot: u64,
    /// Close once every reply is out (QUIT, a protocol error).
    pub(crate) closing: bool,
    /// The peer closed its side, or the socket failed: drop it.
    pub(crate) gone: bool,
    /// In the server's list of connections to serve.
    pub(crate) active: bool,
}

impl Connection {
    pub(crate) fn new(stream: TcpStream, id: u64, limits: Limits) -> Connection {
        Connection {
            stream,
            session: Session { id, ..Session::default() },
            parser: RequestParser::new(limits),
            input: Vec::new(),
            output: Vec::new(),
            written: 0,
            slots: VecDeque::new(),
            first_slot: 0,
            closing: false,
            gone: false,
            active: false,
        }
    }

    /// Replies waiting for the backend or behind one.
    pub(crate) fn queued(&self) -> usize {
        self.slots.len()
    }

    /// Bytes of replies not yet written to the socket.
    pub(crate) fn unwritten(&self) -> usize {
        self.output.len() - self.written
    }

    /// Where the next reply goes, written by `write` (straight into the output when
    /// nothing waits before it).
    pub(crate) fn reply(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.slots.is_empty() {
            write(&mut self.output);
        } else {
            let mut bytes = Vec::new();
            write(&mut bytes);
            self.slots.push_back(Slot::Ready(bytes));
        }
    }

    /// The number the next reply gets if it has to wait.
    pub(crate) fn next_slot(&self) -> u64 {
        self.first_slot + self.slots.len() as u64
    }

    /// Whether nothing waits, so a reply made now goes straight out.
    pub(crate) fn nothing_waits(&self) -> bool {
        self.slots.is_empty()
    }

    /// The output buffer, for a reply written directly (only when nothing waits).
    pub(crate) fn output(&mut self) -> &mut Vec<u8> {
        debug_assert!(self.slots.is_empty());
        &mut self.output
    }

    /// The next reply will come from the backend.
    pub(crate) fn wait(&mut self) {
        self.slots.push_back(Slot::Waiting);
    }

    /// A reply the backend made for slot `slot`.
    pub(crate) fn fill(&mut self, slot: u64, bytes: &[u8]) {
        let Some(index) = slot.checked_sub(self.first_slot) else { return };
        let Some(place) = self.slots.get_mut(index as usize) else { return };
        if index > 0 {
            *place = Slot::Ready(bytes.to_vec());
            return;
        }
        self.output.extend_from_slice(bytes);
        self.slots.pop_front();
        self.first_slot += 1;
        while let Some(Slot::Ready(_)) = self.slots.front() {
            let Some(Slot::Ready(bytes)) = self.slots.pop_front() else { unreachable!("just looked") };
            self.output.extend_from_slice(&bytes);
            self.first_slot += 1;
        }
    }

    /// Reads what the socket has, up to `budget` bytes; false if the peer closed or the
    /// socket failed (then `gone`), true otherwise; `drained` says whether it would block.
    pub(crate) fn read(&mut self, scratch: &mut [u8], budget: usize) -> (usize, bool) {
        let mut total = 0;
        while total < budget {
            match self.stream.read(scratch) {
                Ok(0) => {
                    self.gone = true;
                    return (total, true);
                }
                Ok(n) => {
                    self.input.extend_from_slice(&scratch[..n]);
                    total += n;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return (total, true),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.gone = true;
                    return (total, true);
                }
            }
        }
        (total, false)
    }

    /// Writes what it can of the output.
    pub(crate) fn flush(&mut self) {
        while self.written < self.output.len() {
            match self.stream.write(&self.output[self.written..]) {
                Ok(0) => {
                    self.gone = true;
                    return;
                }
                Ok(n) => self.written += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.gone = true;
                    return;
                }
            }
        }
        if self.written == self.output.len() {
            self.output.clear();
            self.written = 0;
        } else if self.written > (1 << 20) {
            self.output.drain(..self.written);
            self.written = 0;
        }
    }

    /// Whether it is done: closing with every reply out.
    pub(crate) fn finished(&self) -> bool {
        self.closing && self.slots.is_empty() && self.unwritten() == 0
    }
}
