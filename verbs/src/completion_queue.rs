//! Completion queues.

use crate::completion::Completion;
use crate::provider::CqOps;

/// A completion queue (`ibv_cq`).
///
/// Polling takes `&mut self`: a CQ has one consumer, so the providers need no lock on the
/// poll path. QPs post into it through their own handles.
#[derive(Debug)]
pub struct CompletionQueue {
    pub(crate) inner: Box<dyn CqOps>,
}

impl CompletionQueue {
    /// Moves up to `out.len()` completions into `out` and returns how many. Never blocks
    /// and never allocates. On the sim provider an empty poll may advance virtual time to
    /// the next event (see [`crate::sim`]).
    pub fn poll(&mut self, out: &mut [Completion]) -> usize {
        self.inner.poll(out)
    }

    /// The number of completions it holds at most.
    pub fn depth(&self) -> u32 {
        self.inner.depth()
    }
}
