//! What a receiver knows about one index, and the bounded window of indices it keeps.
//!
//! The window is a ring of `2 × tail` instances: the last `tail` indices up to the newest
//! message received (the tail CTBcast promises), plus `tail` indices ahead of it for
//! echoes and signatures that overtake the broadcaster's own message. Anything outside is
//! refused, so a Byzantine peer sending indices at random costs a refusal, never memory.

use super::entry::{Hash, SignatureBytes};
use super::signature::message_hash;

/// Another receiver's echo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Echo {
    Copy(Vec<u8>),
    Hash(Hash),
}

/// Where an index stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Echoes or a signature arrived, the broadcaster's message did not (yet).
    Waiting,
    /// Message in hand, waiting for every echo until the fast-path deadline.
    Fast,
    /// Slow path: asked the broadcaster for a signature.
    AwaitSignature,
    /// Slow path: our register slot is still busy with an older index's write.
    WriteQueued,
    /// Slow path: our `{hash, signature}` is being written.
    Writing,
    /// Slow path: reading the others' registers; `true` where checked.
    Reading(Vec<bool>),
    /// Delivered; kept to refuse replays.
    Delivered,
    /// Given up (equivocation); kept to refuse replays.
    Abandoned,
}

/// One index.
#[derive(Clone, Debug)]
pub(super) struct Instance {
    pub index: u64,
    pub message: Option<Vec<u8>>,
    hash: Option<Hash>,
    /// Per position in `receivers` (ours stays `None`).
    pub echoes: Vec<Option<Echo>>,
    /// The broadcaster's signature as received: unchecked until the slow path needs it.
    pub signature: Option<SignatureBytes>,
    pub signature_verified: bool,
    pub phase: Phase,
    /// Slow path: owners whose register read found no majority, to read again.
    pub reads_to_retry: Vec<usec_qp_pool::NodeId>,
}

impl Instance {
    pub fn new(index: u64, receivers: usize) -> Instance {
        Instance {
            index,
            message: None,
            hash: None,
            echoes: vec![None; receivers],
            signature: None,
            signature_verified: false,
            phase: Phase::Waiting,
            reads_to_retry: Vec::new(),
        }
    }

    /// The message's hash, computed once and only if asked (the fast path with copies
    /// never needs it).
    pub fn hash(&mut self) -> Option<Hash> {
        if self.hash.is_none() {
            self.hash = self.message.as_deref().map(message_hash);
        }
        self.hash
    }

    /// Whether an echo agrees with our message.
    pub fn echo_matches(&mut self, echo: &Echo) -> bool {
        match echo {
            Echo::Copy(copy) => self.message.as_deref() == Some(copy.as_slice()),
            Echo::Hash(hash) => self.hash().as_ref() == Some(hash),
        }
    }

    /// Fast path: every other receiver's echo is in and agrees with our message.
    pub fn all_echoes_match(&mut self, me: usize) -> bool {
        if self.message.is_none() {
            return false;
        }
        let echoes = std::mem::take(&mut self.echoes);
        let all = echoes.iter().enumerate().all(|(position, echo)| match echo {
            _ if position == me => true,
            Some(echo) => self.echo_matches(echo),
            None => false,
        });
        self.echoes = echoes;
        all
    }

    /// Whether a fast-path delivery is still possible (no echo disagrees).
    pub fn no_echo_conflicts(&mut self) -> bool {
        let echoes = std::mem::take(&mut self.echoes);
        let none = echoes.iter().flatten().all(|echo| self.echo_matches(echo));
        self.echoes = echoes;
        none
    }

    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Delivered | Phase::Abandoned)
    }
}

/// The instances of `2 × tail` consecutive indices, at `index % (2 × tail)`.
#[derive(Debug)]
pub(super) struct Window {
    tail: u64,
    slots: Vec<Option<Instance>>,
    /// The newest index whose message arrived.
    horizon: Option<u64>,
}

impl Window {
    pub fn new(tail: u64) -> Window {
        Window { tail, slots: (0..2 * tail).map(|_| None).collect(), horizon: None }
    }

    /// The oldest index kept.
    pub fn oldest_kept(&self) -> u64 {
        self.horizon.map_or(0, |horizon| (horizon + 1).saturating_sub(self.tail))
    }

    /// The newest index kept state for.
    pub fn newest_accepted(&self) -> u64 {
        self.oldest_kept() + 2 * self.tail - 1
    }

    fn position(&self, index: u64) -> usize {
        (index % (2 * self.tail)) as usize
    }

    /// The instance of `index`, if kept.
    pub fn get(&self, index: u64) -> Option<&Instance> {
        self.slots[self.position(index)].as_ref().filter(|instance| instance.index == index)
    }

    /// The instance of `index`, if kept.
    pub fn get_mut(&mut self, index: u64) -> Option<&mut Instance> {
        let position = self.position(index);
        self.slots[position].as_mut().filter(|instance| instance.index == index)
    }

    /// The instance of `index` (in the window), made if need be.
    pub fn get_or_insert(&mut self, index: u64, receivers: usize) -> &mut Instance {
        assert!((self.oldest_kept()..=self.newest_accepted()).contains(&index));
        let position = self.position(index);
        let slot = &mut self.slots[position];
        if slot.as_ref().is_none_or(|instance| instance.index != index) {
            // Whatever was there is outside the window: advance evicted it already, or it
            // was never more than echoes.
            *slot = Some(Instance::new(index, receivers));
        }
        slot.as_mut().expect("just filled")
    }

    /// A message for `index` arrived: the horizon moves up to it if it is newer, and the
    /// instances that fall out of the window are handed to `evicted`.
    pub fn advance(&mut self, index: u64, mut evicted: impl FnMut(Instance)) {
        if self.horizon.is_some_and(|horizon| horizon >= index) {
            return;
        }
        let old_oldest = self.oldest_kept();
        self.horizon = Some(index);
        let new_oldest = self.oldest_kept();
        // Past a whole ring every slot is evicted once; no need to walk further.
        let end = new_oldest.min(old_oldest + 2 * self.tail);
        for gone in old_oldest..end {
            let position = self.position(gone);
            if self.slots[position].as_ref().is_some_and(|instance| instance.index < new_oldest) {
                evicted(self.slots[position].take().expect("checked"));
            }
        }
    }

    /// The live instance whose index is `index` plus or minus whole tails, if any is at
    /// least `oldest_kept` and at most the horizon: at most one, since those span a tail.
    pub fn in_tail_congruent(&mut self, index: u64) -> Option<&mut Instance> {
        let horizon = self.horizon?;
        let oldest = self.oldest_kept();
        let candidate = oldest + (index + self.tail - oldest % self.tail) % self.tail;
        if candidate > horizon {
            return None;
        }
        self.get_mut(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_a_tail_behind_the_horizon_and_a_tail_ahead() {
        let mut window = Window::new(4);
        assert_eq!((window.oldest_kept(), window.newest_accepted()), (0, 7));
        window.get_or_insert(6, 2).phase = Phase::Fast;
        let mut evicted = Vec::new();
        window.advance(9, |instance| evicted.push(instance.index));
        assert_eq!((window.oldest_kept(), window.newest_accepted()), (6, 13));
        assert!(evicted.is_empty(), "6 is still in the tail");
        window.advance(10, |instance| evicted.push(instance.index));
        assert_eq!(evicted, [6]);
        assert!(window.get_mut(6).is_none());
        // A jump far ahead evicts each slot once.
        window.get_or_insert(12, 2);
        window.advance(1_000_000, |instance| evicted.push(instance.index));
        assert_eq!(evicted, [6, 12]);
    }

    #[test]
    fn congruent_lookup_finds_the_one_live_index_of_a_register_slot() {
        let mut window = Window::new(4);
        window.advance(9, |_| {});
        for index in 6..=9 {
            window.get_or_insert(index, 2);
        }
        window.get_or_insert(11, 2); // ahead of the horizon: echoes only, no register work
        for (register_index, live) in [(2, Some(6)), (3, Some(7)), (8, Some(8)), (13, Some(9)), (15, Some(7))]
        {
            let found = window.in_tail_congruent(register_index).map(|instance| instance.index);
            assert_eq!(found, live, "register index {register_index}");
        }
        let mut young = Window::new(4);
        young.advance(1, |_| {});
        young.get_or_insert(3, 2);
        assert!(young.in_tail_congruent(7).is_none(), "3 is ahead of the horizon");
        assert!(young.in_tail_congruent(4).is_none(), "0 never arrived");
    }
}
