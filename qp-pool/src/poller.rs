//! The busy-poll side of the completion loop: role CQs polled into one fixed batch, each
//! completion decoded into its typed [`WrId`] and handed back to the caller, who
//! dispatches it by kind (or lets a [`QuorumWaiter`](crate::QuorumWaiter) take it).

use std::fmt;

use usec_verbs::{Completion, CompletionQueue};

use crate::role::RoleId;
use crate::wr_id::WrId;

/// Completions moved per [`Poller::poll`] at most.
pub const BATCH: usize = 32;

/// One completion, with its role and decoded id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Polled {
    /// The role whose CQ it came from.
    pub role: RoleId,
    /// Its work-request id, decoded.
    pub wr_id: WrId,
    /// The completion itself.
    pub completion: Completion,
}

/// Something that takes completions of the kinds it owns.
pub trait CompletionSink {
    /// Takes one completion.
    fn deliver(&mut self, polled: &Polled);
}

impl<F: FnMut(&Polled)> CompletionSink for F {
    fn deliver(&mut self, polled: &Polled) {
        self(polled)
    }
}

/// Polls the CQs of some roles. Polling never allocates: completions land in a batch
/// allocated once, and the CQ polled first rotates so that a busy role cannot starve the
/// others.
pub struct Poller {
    cqs: Vec<(RoleId, CompletionQueue)>,
    batch: Box<[Completion; BATCH]>,
    roles: [RoleId; BATCH],
    filled: usize,
    first: usize,
}

impl fmt::Debug for Poller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let roles: Vec<RoleId> = self.cqs.iter().map(|(role, _)| *role).collect();
        f.debug_struct("Poller").field("roles", &roles).finish()
    }
}

impl Poller {
    pub(crate) fn new(cqs: Vec<(RoleId, CompletionQueue)>) -> Poller {
        assert!(!cqs.is_empty(), "a poller needs a CQ");
        Poller {
            cqs,
            batch: Box::new([Completion::default(); BATCH]),
            roles: [RoleId::default(); BATCH],
            filled: 0,
            first: 0,
        }
    }

    /// The roles it polls.
    pub fn roles(&self) -> impl Iterator<Item = RoleId> + '_ {
        self.cqs.iter().map(|(role, _)| *role)
    }

    /// Polls every CQ once (up to [`BATCH`] completions in all) and returns what it found.
    /// Never blocks. On the sim provider an empty poll runs the fabric's next event.
    pub fn poll(&mut self) -> Batch<'_> {
        self.filled = 0;
        let count = self.cqs.len();
        for step in 0..count {
            if self.filled == BATCH {
                break;
            }
            let (role, cq) = &mut self.cqs[(self.first + step) % count];
            let got = cq.poll(&mut self.batch[self.filled..]);
            self.roles[self.filled..self.filled + got].fill(*role);
            self.filled += got;
        }
        self.first = (self.first + 1) % count;
        Batch { poller: self, next: 0 }
    }
}

/// The completions of one [`Poller::poll`].
#[derive(Debug)]
pub struct Batch<'a> {
    poller: &'a Poller,
    next: usize,
}

impl Batch<'_> {
    /// Whether the poll found nothing.
    pub fn is_empty(&self) -> bool {
        self.poller.filled == 0
    }
}

impl Iterator for Batch<'_> {
    type Item = Polled;

    fn next(&mut self) -> Option<Polled> {
        if self.next == self.poller.filled {
            return None;
        }
        let completion = self.poller.batch[self.next];
        let role = self.poller.roles[self.next];
        self.next += 1;
        Some(Polled { role, wr_id: WrId::from_raw(completion.wr_id), completion })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.poller.filled - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batch<'_> {}
