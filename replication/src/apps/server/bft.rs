//! [`BftBackend`]: a front end whose commands run on a uBFT group, as its client — the
//! heart of the gateway (`usec-bft-gateway`) that lets Redis clients drive the BFT KV.
//!
//! The gateway holds a few BFT clients ("lanes"), each with its own id and key and one
//! request outstanding (the consensus client's limit). A command waits for a free lane and
//! for its connection to have nothing in flight: a client's pipelined commands then run in
//! the order it sent them, while different connections use the lanes in parallel. A reply
//! is the result f + 1 replicas signed, so a Byzantine replica cannot make the gateway
//! answer what the replicated state machine did not produce.
//!
//! Every command, reads included, goes through consensus: the gateway keeps no state, so
//! it has no stale reads to offer (READONLY is answered with an error).

use std::collections::VecDeque;

use crate::apps::server::backend::{Backend, Submitted, Tag};
use crate::bft::driver::ClientLink;

/// A uBFT group as a front end's backend; see the [module documentation](self).
#[derive(Debug)]
pub struct BftBackend {
    lanes: Vec<(ClientLink, Option<Tag>)>,
    waiting: VecDeque<(Tag, Vec<u8>)>,
    max_command_bytes: usize,
    answered: u64,
}

impl BftBackend {
    /// Runs commands through `lanes` (at least one), taking commands up to
    /// `max_command_bytes` (the group's largest operation).
    pub fn new(lanes: Vec<ClientLink>, max_command_bytes: usize) -> BftBackend {
        assert!(!lanes.is_empty(), "a gateway needs a client");
        BftBackend {
            lanes: lanes.into_iter().map(|lane| (lane, None)).collect(),
            waiting: VecDeque::new(),
            max_command_bytes,
            answered: 0,
        }
    }

    /// Starts waiting commands on free lanes, oldest first, one per connection.
    fn dispatch(&mut self) {
        while let Some(free) = self.lanes.iter().position(|(_, tag)| tag.is_none()) {
            let busy = |connection: u64| {
                self.lanes.iter().any(|(_, tag)| tag.is_some_and(|t| t.connection == connection))
            };
            let Some(next) = self.waiting.iter().position(|(tag, _)| !busy(tag.connection)) else { return };
            let (tag, command) = self.waiting.remove(next).expect("found");
            let (lane, slot) = &mut self.lanes[free];
            lane.submit(command).expect("a free lane has nothing outstanding");
            *slot = Some(tag);
        }
    }
}

impl Backend for BftBackend {
    fn max_command_bytes(&self) -> usize {
        self.max_command_bytes
    }

    fn submit(&mut self, tag: Tag, command: &[u8], _read: bool, _out: &mut Vec<u8>) -> Submitted {
        self.waiting.push_back((tag, command.to_vec()));
        self.dispatch();
        Submitted::Pending
    }

    fn stale_read(&mut self, _command: &[u8], out: &mut Vec<u8>) {
        crate::apps::resp::reply::error(out, "ERR the BFT gateway keeps no state to read from");
    }

    fn poll(&mut self, deliver: &mut dyn FnMut(Tag, &[u8])) {
        for (lane, slot) in &mut self.lanes {
            lane.turn();
            while let Some((_, result)) = lane.poll_result() {
                if let Some(tag) = slot.take() {
                    self.answered += 1;
                    deliver(tag, &result);
                }
            }
        }
        self.dispatch();
    }

    fn in_flight(&self) -> usize {
        self.waiting.len() + self.lanes.iter().filter(|(_, tag)| tag.is_some()).count()
    }

    fn replication_info(&self, out: &mut String) {
        out.push_str(&format!(
            "role:bft-gateway\r\nusec_replication:ubft\r\nlanes:{}\r\nanswered_commands:{}\r\n",
            self.lanes.len(),
            self.answered
        ));
    }

    fn keyspace_info(&self, _out: &mut String) {}
}
