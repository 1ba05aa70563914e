//! [`Model`]: the sequential specification a history is checked against.

use std::fmt::Debug;
use std::hash::Hash;

/// A sequential object: what each operation does to the state and answers, one at a time.
///
/// The checker asks whether the concurrent history could have come from applying its
/// operations one by one, in an order that respects real time, to this object.
///
/// Operations on different keys never affect each other, so a history is checked one key
/// at a time (Herlihy and Wing's locality: a history is linearizable exactly when each
/// object's sub-history is). A model of a single object returns the same key for every
/// operation (`()`).
pub trait Model {
    /// What a client asked for.
    type Input: Clone + Debug;
    /// What it was answered.
    type Output: Clone + Debug + PartialEq;
    /// The state of one key's object. The search remembers `(operations done, state)`
    /// pairs it has seen, so equal states must compare equal and hash alike.
    type State: Clone + Debug + Eq + Hash;
    /// Which object an operation is on.
    type Key: Clone + Debug + Ord;

    /// The state of every object before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`: the state after it and the answer it gives.
    fn step(&self, state: &Self::State, input: &Self::Input) -> (Self::State, Self::Output);

    /// The object `input` operates on.
    fn key(&self, input: &Self::Input) -> Self::Key;

    /// Whether `input` leaves every state as it was. An operation whose response never
    /// came and that changes nothing cannot matter to anyone else, so the checker drops
    /// it instead of searching where it might have taken effect.
    fn is_read_only(&self, input: &Self::Input) -> bool {
        let _ = input;
        false
    }
}
