//! Client handles: an application thread proposes through a lock-free queue into the
//! replica's thread and waits for the outcome, never touching verbs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use usec_qp_pool::NodeId;

use crate::cft::ProposeError;
use crate::log::CommandId;

/// Why a proposal through a handle did not produce a response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The replica refused it at once (not the leader, too large, queue full).
    #[error("refused: {0}")]
    Refused(#[from] ProposeError),
    /// The replica lost leadership before it could report the command committed; it may
    /// still be decided. Proposing it again with the same id is safe.
    #[error("not committed here (the leader is {})", leader.map_or("unknown".to_string(), |node| format!("node {node}")))]
    NotCommitted {
        /// The leader the replica follows now, if known.
        leader: Option<NodeId>,
    },
    /// A later command of the same client was applied first; this one never will be.
    #[error("superseded by a later command of the same client")]
    Superseded,
    /// The replica's intake queue is full.
    #[error("the replica's intake queue is full")]
    Busy,
    /// No outcome within the time given.
    #[error("no outcome within {0:?}")]
    TimedOut(Duration),
}

/// Where the replica thread leaves a proposal's outcome.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    done: AtomicBool,
    outcome: Mutex<Option<Result<Vec<u8>, ClientError>>>,
}

impl Reply {
    pub(crate) fn fulfil(&self, outcome: Result<Vec<u8>, ClientError>) {
        *self.outcome.lock().expect("never poisoned: no panics under the lock") = Some(outcome);
        self.done.store(true, Ordering::Release);
    }

    fn take(&self) -> Option<Result<Vec<u8>, ClientError>> {
        if !self.done.load(Ordering::Acquire) {
            return None;
        }
        self.outcome.lock().expect("never poisoned").take()
    }
}

/// A command on its way to the replica.
#[derive(Debug)]
pub(crate) struct Submission {
    pub(crate) id: CommandId,
    pub(crate) command: Vec<u8>,
    pub(crate) reply: Arc<Reply>,
}

/// A proposal in flight; [`Ticket::wait`] for its outcome.
#[derive(Debug)]
pub struct Ticket {
    /// The command's id.
    pub id: CommandId,
    reply: Arc<Reply>,
}

impl Ticket {
    /// The outcome, if it is in.
    pub fn try_take(&self) -> Option<Result<Vec<u8>, ClientError>> {
        self.reply.take()
    }

    /// Waits (spinning, then yielding) up to `timeout` for the outcome.
    pub fn wait(&self, timeout: Duration) -> Result<Vec<u8>, ClientError> {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if let Some(outcome) = self.reply.take() {
                return outcome;
            }
            spins += 1;
            if spins < 1_000 {
                std::hint::spin_loop();
            } else {
                if start.elapsed() >= timeout {
                    return Err(ClientError::TimedOut(timeout));
                }
                std::thread::yield_now();
            }
        }
    }
}

/// A client of one replica: numbers its commands and hands them over.
#[derive(Clone, Debug)]
pub struct ClientHandle {
    intake: Arc<ArrayQueue<Submission>>,
    replica: NodeId,
    client: u64,
    sequence: u64,
}

impl ClientHandle {
    pub(crate) fn new(intake: Arc<ArrayQueue<Submission>>, replica: NodeId, client: u64) -> ClientHandle {
        ClientHandle { intake, replica, client, sequence: 0 }
    }

    /// The replica it talks to.
    pub fn replica(&self) -> NodeId {
        self.replica
    }

    /// Proposes `command` as this client's next command.
    pub fn submit(&mut self, command: &[u8]) -> Result<Ticket, ClientError> {
        self.sequence += 1;
        let id = CommandId { client: self.client, sequence: self.sequence };
        self.submit_as(id, command)
    }

    /// Proposes `command` under a given id (to retry one whose outcome was not learnt).
    pub fn submit_as(&mut self, id: CommandId, command: &[u8]) -> Result<Ticket, ClientError> {
        let reply = Arc::new(Reply::default());
        let submission = Submission { id, command: command.to_vec(), reply: reply.clone() };
        self.intake.push(submission).map_err(|_| ClientError::Busy)?;
        Ok(Ticket { id, reply })
    }

    /// Proposes and waits up to `timeout`.
    pub fn propose(&mut self, command: &[u8], timeout: Duration) -> Result<Vec<u8>, ClientError> {
        self.submit(command)?.wait(timeout)
    }
}
