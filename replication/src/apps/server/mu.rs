//! [`MuBackend`]: commands go through the Mu log of the replica in this process.
//!
//! - On the leader (or a replica taking over), each command is handed to the replica's
//!   thread through a [`ClientHandle`] — one lock-free queue push; the replica batches
//!   what is queued into log entries — and its reply is the state machine's response once
//!   the command is committed and applied.
//! - On a follower, the client is redirected: `-MOVED 0 <leader's RESP address>`, which
//!   `redis-cli -c` and cluster-aware clients follow. With no leader known yet the reply is
//!   `-CLUSTERDOWN`, and nothing was applied.
//! - Reads go through the log too (linearizable) — unless the replica follows membership
//!   views and the backend was told so ([`MuBackend::with_local_reads`]): then the leader
//!   answers a read from its own state, without the log, while
//!   [`ReplicaStatus::local_reads_until`] allows (it leads in an active view, its takeover
//!   applied: linearizable, see [`crate::cft::views`]), and sends it through the log when
//!   not (a lease that ran out, a replica that does not lead). After READONLY a client's
//!   reads are served from this replica's state as it is, without the log: possibly stale.
//!   An application's local commands ([`crate::apps::server::Prepared::Local`], such as the
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

use usec_qp_pool::clock::Clock;
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
    /// The replica's clock, when reads may be answered locally.
    local_clock: Option<ReplicaClock>,
    reads: ReadCounts,
}

/// The clock the replica's thread turns with.
struct ReplicaClock(Box<dyn Clock + Send>);

impl std::fmt::Debug for ReplicaClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReplicaClock")
    }
}

/// How a [`MuBackend`]'s reads were answered (INFO's `local_reads`, `log_reads`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Answered from the leader's state under its lease.
    pub local: u64,
    /// Sent through the log (or redirected from there: a follower's).
    pub log: u64,
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
            local_clock: None,
            reads: ReadCounts::default(),
        }
    }

    /// Answers reads from the leader's own state while its replica allows
    /// ([`ReplicaStatus::local_reads_until`]); `clock` must be the one the replica's thread
    /// turns with (the status's times are on it). For a replica that follows views
    /// ([`crate::driver::MuDriver::attach_views`]); any other never allows.
    pub fn with_local_reads(mut self, clock: impl Clock + Send + 'static) -> MuBackend<S> {
        self.local_clock = Some(ReplicaClock(Box::new(clock)));
        self
    }

    /// How its reads were answered so far.
    pub fn read_counts(&self) -> ReadCounts {
        self.reads
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

    fn submit(&mut self, tag: Tag, command: &[u8], read: bool, out: &mut Vec<u8>) -> Submitted {
        self.reads.log += u64::from(read);
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

    fn linearizable_read(&mut self, command: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(clock) = &self.local_clock else { return false };
        // The bound is loaded *before* the state is read: a bound published after the read
        // may belong to a leadership that began after it, whose takeover the state read
        // does not hold yet (a follower promoted meanwhile). A bound published before
        // comes from a turn at which the replica led with its takeover applied, and its
        // state only grows from there.
        let until_ns = self.status.local_reads_until();
        if until_ns == 0 {
            return false;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        self.machine.lock().read(command, &mut scratch);
        // The clock is read after the state: the read happened before now, so within the
        // lease if now is.
        let fresh = clock.0.now_ns() < until_ns;
        if fresh {
            out.extend_from_slice(&scratch);
            self.reads.local += 1;
        }
        self.scratch = scratch;
        fresh
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
        out.push_str(&format!(
            "usec_local_reads:{}\r\nlocal_reads:{}\r\nlog_reads:{}\r\n",
            if self.local_clock.is_some() { "leases" } else { "off" },
            self.reads.local,
            self.reads.log,
        ));
        if let Some(view) = self.status.view() {
            out.push_str(&format!(
                "view_id:{}\r\nview_voters:{}\r\nvoting:{}\r\n",
                view.id,
                view.voters,
                u8::from(view.voting)
            ));
        }
    }

    fn keyspace_info(&self, out: &mut String) {
        self.machine.lock().keyspace(out);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crossbeam_queue::ArrayQueue;
    use usec_qp_pool::clock::ManualClock;

    use super::*;
    use crate::apps::kv::{KvApp, KvMachine};
    use crate::apps::resp::{Limits, Parsed, RequestParser};
    use crate::apps::server::{App, Prepared};
    use crate::state_machine::StateMachine;

    /// A leader's front end over a store holding `k = v`, its replica's intake (to see
    /// what went to the log), status and clock.
    fn leader() -> (
        MuBackend<KvMachine>,
        Arc<ArrayQueue<crate::driver::client::Submission>>,
        Arc<ReplicaStatus>,
        ManualClock,
    ) {
        let intake = Arc::new(ArrayQueue::new(16));
        let me = NodeId::new(0).unwrap();
        let client = ClientHandle::new(intake.clone(), me, 7);
        let status = Arc::new(ReplicaStatus::default());
        status.publish_leadership(RoleKind::Leader, Some(me));
        let mut machine = Shared::new(KvMachine::new());
        let mut response = Vec::new();
        machine.apply(&command(&["SET", "k", "v"]), &mut response);
        let clock = ManualClock::starting_at(1_000);
        let backend = MuBackend::new(client, status.clone(), machine, vec![None], 1 << 16)
            .with_local_reads(clock.clone());
        (backend, intake, status, clock)
    }

    fn command(args: &[&str]) -> Vec<u8> {
        let mut request = Vec::new();
        reply::request(&mut request, args.iter().map(|arg| arg.as_bytes()));
        let mut parser = RequestParser::new(Limits::default());
        assert!(matches!(parser.parse(&request), Ok(Parsed::Request { .. })));
        let (mut command, mut error) = (Vec::new(), Vec::new());
        let prepared = KvApp.prepare(parser.args(&request), 0, &mut command, &mut error);
        assert!(matches!(prepared, Prepared::Read | Prepared::Write), "{args:?}: {prepared:?}");
        command
    }

    const TAG: Tag = Tag { connection: 1, slot: 0 };

    #[test]
    fn a_leader_answers_reads_locally_until_its_lease_runs_out_then_through_the_log() {
        let (mut backend, intake, status, clock) = leader();
        status.publish_local_reads(2_000);
        let get = command(&["GET", "k"]);
        let mut out = Vec::new();
        assert!(backend.linearizable_read(&get, &mut out));
        assert_eq!(out, b"$1\r\nv\r\n");
        assert_eq!(backend.read_counts(), ReadCounts { local: 1, log: 0 });
        assert!(intake.is_empty(), "a local read proposes nothing");
        // The bound is exclusive: at 2 000 the lease is over.
        clock.set(2_000);
        out.clear();
        assert!(!backend.linearizable_read(&get, &mut out));
        assert!(out.is_empty(), "a refused local read writes nothing");
        assert_eq!(backend.submit(TAG, &get, true, &mut out), Submitted::Pending);
        assert_eq!(intake.len(), 1, "the read went to the log");
        assert_eq!(backend.read_counts(), ReadCounts { local: 1, log: 1 });
    }

    #[test]
    fn no_local_read_without_a_published_lease_or_without_the_clock() {
        let (mut backend, _intake, status, _clock) = leader();
        let get = command(&["GET", "k"]);
        let mut out = Vec::new();
        // A replica that does not lead, or leads without a view, publishes 0.
        status.publish_local_reads(0);
        assert!(!backend.linearizable_read(&get, &mut out));
        // A front end not told about leases never reads locally, whatever the status.
        let (plain, _intake, status, _clock) = leader();
        let mut plain = MuBackend { local_clock: None, ..plain };
        status.publish_local_reads(u64::MAX);
        assert!(!plain.linearizable_read(&get, &mut out));
        assert!(out.is_empty());
        assert_eq!(plain.read_counts(), ReadCounts::default());
    }

    #[test]
    fn a_follower_redirects_reads_that_its_status_does_not_let_it_answer() {
        let (mut backend, intake, status, _clock) = leader();
        status.publish_leadership(RoleKind::Follower, Some(NodeId::new(1).unwrap()));
        status.publish_local_reads(0);
        let get = command(&["GET", "k"]);
        let mut out = Vec::new();
        assert!(!backend.linearizable_read(&get, &mut out));
        assert_eq!(backend.submit(TAG, &get, true, &mut out), Submitted::Done);
        assert!(out.starts_with(b"-CLUSTERDOWN"), "{:?}", String::from_utf8_lossy(&out));
        assert!(intake.is_empty());
    }

    #[test]
    fn info_says_whether_reads_are_local_and_counts_them() {
        let (mut backend, _intake, status, _clock) = leader();
        status.publish_local_reads(5_000);
        let mut out = Vec::new();
        assert!(backend.linearizable_read(&command(&["EXISTS", "k"]), &mut out));
        let mut info = String::new();
        backend.replication_info(&mut info);
        assert!(info.contains("usec_local_reads:leases\r\nlocal_reads:1\r\nlog_reads:0\r\n"), "{info}");
    }
}
