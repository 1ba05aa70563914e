//! Byzantine broadcasters, simulated in a real process: what a lying participant sends
//! through the same rings and registers a correct one uses.
//!
//! Only the broadcasting side lies here; its receivers stay correct (a Byzantine
//! receiver's echoes and registers are the deterministic simulation's business,
//! `tests/ctbcast_sim`).

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use super::super::ctbcast::{Body, Entry, INDEX_LIMIT};

/// How a participant's broadcaster behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Behaviour {
    /// As the protocol says.
    #[default]
    Correct,
    /// Sends, and signs, a different message for every index to half of its receivers
    /// (the first receiver gets one, the others another).
    Equivocate,
    /// Writes garbage into its message rings before every message: random bytes,
    /// truncated entries, entries with indices out of range, entries naming another
    /// sender. (A message for an index far ahead is no garbage: a broadcaster may skip
    /// ahead, and its receivers then give up what falls out of the tail.)
    Garbage,
}

/// The message an equivocating broadcaster sends the second half of its receivers.
pub fn equivocal(message: &[u8]) -> Vec<u8> {
    let mut other = message.to_vec();
    other.extend_from_slice(b" (equivocated)");
    other
}

/// Makes the garbage of [`Behaviour::Garbage`], seeded.
#[derive(Debug)]
pub struct GarbageMaker {
    rng: StdRng,
    count: u64,
}

impl GarbageMaker {
    /// A maker drawing from `seed`.
    pub fn new(seed: u64) -> GarbageMaker {
        GarbageMaker { rng: StdRng::seed_from_u64(seed), count: 0 }
    }

    /// The next piece of garbage for the stream of `broadcaster` (us), near `index`, at
    /// most `max` bytes.
    pub fn next(&mut self, broadcaster: u16, index: u64, max: usize) -> Vec<u8> {
        self.count += 1;
        let entry = |index, sender, body| Entry { index, broadcaster, sender, body }.encode();
        let mut bytes = match self.count % 4 {
            0 => {
                let mut random = vec![0; self.rng.gen_range(1..=max.max(1))];
                self.rng.fill_bytes(&mut random);
                random
            }
            1 => {
                let whole = entry(index, broadcaster, Body::Message(b"a message cut short"));
                whole[..whole.len() / 2].to_vec()
            }
            2 => entry(INDEX_LIMIT + index, broadcaster, Body::Message(b"an index out of range")),
            _ => entry(index, broadcaster.wrapping_add(1), Body::Message(b"in another's name")),
        };
        bytes.truncate(max);
        bytes
    }
}
