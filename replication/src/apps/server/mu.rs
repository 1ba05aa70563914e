//! [`MuBackend`]: commands go through the Mu log of the replica in this process.
//!
//! - On the leader (or a replica taking over), each command is handed to the replica's
//!   thread through a [`ClientHandle`] — one lock-free queue push; the replica batches
//!   what is queued into log entries — and its reply is the state machine's response once
//!   the command is committed and applied.
//! - On a follower, the client is redirected: `-MOVED 0 <leader's RESP address>`, which
//!   `redis-cli -c` and cluster-aware clients follow. With no leader known yet the reply is
//!   `-CLUSTERDOWN`, and nothing was applied.
//! - Reads go through the log too (linearizable). After READONLY a client's reads are
//!   served from this replica's state as it is, without the log: possibly stale. An
//!   application's local commands ([`crate::apps::server::Prepared::Local`], such as the
//!   order book's `BOOK.DIGEST`) are always answered that way, on every replica.
//!
//! What a client may see besides the state machine's replies:
//!
//! | reply | applied? |
//! |---|---|
//! | `-MOVED 0 host:port` | no: ask the leader there |
//! | `-CLUSTERDOWN …` | no: no leader known yet, try again |
//! | `-TRYAGAIN …` | no |
//! | `-UNCERTAIN …` | unknown: leadership changed before the outcome was known here; it may have been applied (the history checker treats it as an operation that may or may not have happened) |

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use usec_qp_pool::NodeId;

use crate::apps::resp::reply;
use crate::apps::server::backend::{Backend, Submitted, Tag};
use crate::apps::server::shared::Shared;
use crate::apps::server::Served;
use crate::cft::{ProposeError, RoleKind};
use crate::driver::{ClientError, ClientHandle, ReplicaStatus, Ticket};

/// A front end's way into its replica.
#[derive(Debug)]
pub struct MuBackend<S> {
    client: ClientHandle,
    status: Arc<ReplicaStatus>,
    machine: Shared<S>,
    /// Each node's RESP address, by node id.
    addresses: Vec<Option<SocketAddr>>,
    in_flight: VecDeque<(Tag, Ticket)>,
    max_command_bytes: usize,
    scratch: Vec<u8>,
}

impl<S: Served> MuBackend<S> {
    /// Talks to the replica through `client` (a client id unique in the group's life),
    /// watches it through `status`, reads its state through `machine`; `addresses` maps
    /// node ids to their front ends' RESP addresses for redirections; commands over
    /// `max_command_bytes` (the log's entry limit) are refused.
    pub fn new(
        client: ClientHandle,
        status: Arc<ReplicaStatus>,
        machine: Shared<S>,
        addresses: Vec<Option<SocketAddr>>,
        max_command_bytes: usize,
    ) -> MuBackend<S> {
        MuBackend {
            client,
            status,
            machine,
            addresses,
            in_flight: VecDeque::new(),
            max_command_bytes,
            scratch: Vec::new(),
        }
    }

    fn address(&self, node: NodeId) -> Option<SocketAddr> {
        self.addresses.get(usize::from(node.get())).copied().flatten()
    }

    /// Redirects to `leader`'s front end, or says none is known.
    fn redirect(&self, leader: Option<NodeId>, out: &mut Vec<u8>) {
        match leader.filter(|&leader| leader != self.client.replica()).and_then(|leader| self.address(leader))
        {
            Some(address) => reply::error(out, format!("MOVED 0 {address}")),
            None => reply::error(out, "CLUSTERDOWN no leader is known yet"),
        }
    }

    fn outcome(&self, outcome: Result<Vec<u8>, ClientError>, out: &mut Vec<u8>) {
        match outcome {
            Ok(response) => out.extend_from_slice(&response),
            Err(ClientError::Refused(ProposeError::NotLeader { leader })) => self.redirect(leader, out),
            Err(ClientError::Refused(ProposeError::TooLarge { len, max })) => {
                reply::error(out, format!("ERR command of {len} bytes exceeds the log's entry limit of {max} bytes"))
            }
            Err(ClientError::Refused(_) | ClientError::Busy) => {
                reply::error(out, "TRYAGAIN the replica's queue is full")
            }
            Err(ClientError::Superseded) => {
                reply::error(out, "TRYAGAIN superseded by a later command; not applied")
            }
            Err(ClientError::NotCommitted { .. }) => reply::error(
                out,
                "UNCERTAIN leadership changed before the command was known committed; it may or may not have been applied",
            ),
            Err(error) => reply::error(out, format!("UNCERTAIN {error}")),
        }
    }
}

impl<S: Served> Backend for MuBackend<S> {
    fn max_command_bytes(&self) -> usize {
        self.max_command_bytes
    }

    fn submit(&mut self, tag: Tag, command: &[u8], _read: bool, out: &mut Vec<u8>) -> Submitted {
        if self.status.role() == RoleKind::Follower {
            self.redirect(self.status.leader(), out);
            return Submitted::Done;
        }
        match self.client.submit(command) {
            Ok(ticket) => {
                self.in_flight.push_back((tag, ticket));
                Submitted::Pending
            }
            Err(error) => {
                self.outcome(Err(error), out);
                Submitted::Done
            }
        }
    }

    fn stale_read(&mut self, command: &[u8], out: &mut Vec<u8>) {
        self.machine.lock().read(command, out);
    }

    fn poll(&mut self, deliver: &mut dyn FnMut(Tag, &[u8])) {
        // Outcomes come in log order: stop at the first one not in.
        while let Some((tag, ticket)) = self.in_flight.front() {
            let Some(outcome) = ticket.try_take() else { break };
            let tag = *tag;
            self.in_flight.pop_front();
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            self.outcome(outcome, &mut scratch);
            deliver(tag, &scratch);
            self.scratch = scratch;
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn replication_info(&self, out: &mut String) {
        let role = self.status.role();
        let leader = self.status.leader();
        out.push_str(match role {
            RoleKind::Leader => "role:master\r\n",
            _ => "role:slave\r\n",
        });
        out.push_str(&format!(
            "usec_role:{}\r\nnode_id:{}\r\nleader_id:{}\r\nleader_address:{}\r\ncommit_index:{}\r\napplied_index:{}\r\napplied_commands:{}\r\n",
            match role {
                RoleKind::Leader => "leader",
                RoleKind::Candidate => "candidate",
                RoleKind::Follower => "follower",
            },
            self.client.replica(),
            leader.map_or("none".to_string(), |node| node.to_string()),
            leader.and_then(|node| self.address(node)).map_or("none".to_string(), |address| address.to_string()),
            self.status.commit_index(),
            self.status.applied_index(),
            self.machine.applied_commands(),
        ));
    }

    fn keyspace_info(&self, out: &mut String) {
        self.machine.lock().keyspace(out);
    }
}
