//! Which connections a node takes in, and which it lets go when there are more than it can
//! hold: a flood of idle connections, or a process out of file descriptors. The same rules
//! hold during bootstrap and afterwards, while a cluster listens for restarted peers.
//!
//! An accepted connection holds a file descriptor until it says who it is, fails, or
//! times out. A flood of idle connections must not exhaust descriptors, and running out of
//! them must not end bootstrap (or the node), so it:
//!
//! - accepts at most [`ACCEPTS_PER_POLL`] connections per poll and reads from them in the
//!   same poll, so an honest peer's hello is seen before a burst behind it crowds it out;
//! - holds at most `waiting_max` connections that have not said who they are
//!   ([`WAITING_MIN`] plus two per peer that may dial, which may all dial at once): taking one
//!   more first drops a waiting one, those that sent nothing before those that did, the
//!   oldest first;
//! - when accepting or dialing fails for want of descriptors, lowers `waiting_max` so that
//!   [`DESCRIPTOR_HEADROOM`] descriptors stay free (dials and the verbs provider need some)
//!   and drops waiting connections down to it; with none to drop, it sheds the next
//!   connection in the accept queue through the network's reserve descriptor
//!   ([`Network::shed`](crate::Network::shed));
//! - takes any other accept error as the loss of that one connection, never as the end of
//!   bootstrap.
//!
//! A connection is let go only before it says who it is: one that proved it speaks for a
//! peer stays until it finishes, fails, or times out.
//!
//! What was dropped or shed is counted among the refusals.

use std::io;

use super::{Connection, Connections};
use crate::handshake::Side;
use crate::transport::Link;

/// Connections accepted per poll at most.
const ACCEPTS_PER_POLL: usize = 64;
/// Connections not yet identified held at least (when descriptors allow).
const WAITING_MIN: usize = 64;
/// Descriptors left free once the process has run out of them.
const DESCRIPTOR_HEADROOM: usize = 16;

/// The limit on waiting connections and what it cost.
#[derive(Debug)]
pub(super) struct Admission {
    /// Connections not yet identified held at most.
    waiting_max: usize,
    /// Waiting connections dropped to make room.
    dropped: usize,
    /// Connections closed as soon as accepted, with no descriptor to hold them.
    shed: usize,
    /// Accepts that failed, and the last reason.
    accept_failures: usize,
    last_accept_failure: Option<String>,
}

impl Admission {
    /// The limits for a node with `dialers` peers that may dial it.
    pub(super) fn new(dialers: usize) -> Admission {
        Admission {
            waiting_max: WAITING_MIN + 2 * dialers,
            dropped: 0,
            shed: 0,
            accept_failures: 0,
            last_accept_failure: None,
        }
    }

    /// What was lost, for the refusals; empty if nothing was.
    pub(super) fn report(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.dropped > 0 {
            lines.push(format!(
                "{} connections dropped before they said who they were, to make room (a connection flood?)",
                self.dropped
            ));
        }
        if self.shed > 0 {
            lines.push(format!("{} connections closed unread: out of file descriptors", self.shed));
        }
        if let Some(last) = &self.last_accept_failure {
            lines.push(format!("accepting failed {} times, last: {last}", self.accept_failures));
        }
        lines
    }
}

/// Whether `error` says the process or the system ran out of descriptors or socket memory.
pub(crate) fn out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

impl Connections {
    /// Takes in waiting connections; returns whether anything happened. Never fails.
    pub(super) fn accept(&mut self, now_ns: u64) -> bool {
        let mut busy = false;
        for _ in 0..ACCEPTS_PER_POLL {
            match self.network.accept() {
                Ok(Some(link)) => {
                    self.drop_waiting_down_to(self.admission.waiting_max - 1);
                    self.take_in(link, now_ns);
                }
                Ok(None) => break,
                Err(error) if out_of_descriptors(&error) => {
                    if self.relieve_descriptors() == 0 && !self.shed(error) {
                        break;
                    }
                }
                Err(error) => {
                    self.note_accept_failure(&error);
                    break;
                }
            }
            busy = true;
        }
        busy
    }

    /// The process is out of descriptors: holds fewer waiting connections from now on, and
    /// drops those beyond; returns how many were dropped.
    pub(super) fn relieve_descriptors(&mut self) -> usize {
        let waiting = self.waiting();
        let admission = &mut self.admission;
        admission.waiting_max = waiting.saturating_sub(DESCRIPTOR_HEADROOM).clamp(1, admission.waiting_max);
        let before = self.list.len();
        self.drop_waiting_down_to(self.admission.waiting_max - 1);
        before - self.list.len()
    }

    /// Closes the next connection in the accept queue unread; returns whether there was one.
    fn shed(&mut self, error: io::Error) -> bool {
        match self.network.shed() {
            Ok(true) => {
                self.admission.shed += 1;
                true
            }
            Ok(false) => {
                self.note_accept_failure(&error);
                false
            }
            Err(shed_error) => {
                self.note_accept_failure(&shed_error);
                false
            }
        }
    }

    fn note_accept_failure(&mut self, error: &io::Error) {
        self.admission.accept_failures += 1;
        self.admission.last_accept_failure = Some(error.to_string());
    }

    fn take_in(&mut self, link: Box<dyn Link>, now_ns: u64) {
        let label = link.describe();
        self.push(link, Side::Listener, &label, None, None, now_ns);
    }

    /// Connections accepted that have not said who they are.
    fn waiting(&self) -> usize {
        self.list.iter().filter(|connection| is_waiting(connection)).count()
    }

    /// Drops waiting connections, the least promising first, until at most `limit` remain.
    fn drop_waiting_down_to(&mut self, limit: usize) {
        let mut waiting = self.waiting();
        while waiting > limit {
            let victim = self
                .list
                .iter()
                .enumerate()
                .filter(|(_, connection)| is_waiting(connection))
                .min_by_key(|(_, connection)| (connection.heard, connection.opened_ns))
                .map(|(index, _)| index)
                .expect("a waiting connection");
            // Dropping the link closes its descriptor now, not at the end of the poll.
            self.list.remove(victim);
            self.admission.dropped += 1;
            waiting -= 1;
        }
    }
}

fn is_waiting(connection: &Connection) -> bool {
    connection.peer.is_none() && !connection.finished
}
