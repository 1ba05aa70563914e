//! The search for a linearization of one key's operations: Wing and Gong's algorithm with
//! Lowe's memoization, as Porcupine runs it.
//!
//! The invocations and responses sit in one doubly linked list in time order. The search
//! walks it from the front: at an invocation it tries to *linearize* that operation next
//! — step the model, compare the answer with the one observed — and, if that works and the
//! pair (set of operations linearized, state) was never seen before, lifts the
//! invocation and its response out of the list and starts again from the front. Reaching
//! a response means its operation should have been linearized by now: the last choice
//! was wrong, so it is undone (put back into the list) and the walk goes on after it. The
//! history is linearizable when the list empties, and is not when there is nothing left
//! to undo.
//!
//! Remembering every (linearized set, state) pair visited is what makes it fast: two
//! orders of the same operations that reach the same state have the same future, so the
//! second is cut at once. Sets are bitsets hashed incrementally (one random word per
//! operation, xored in and out).
//!
//! Operations that never answered get two more rules, without which a few of them make a
//! refutation exponential (each may take effect anywhere after its invocation):
//! - once every answered operation is linearized, the search is done: the unanswered
//!   rest can take effect at the end, where nobody observes it;
//! - a pair (answered set, state) reached with unanswered set U is cut if it was seen
//!   before with a subset of U: having fewer unanswered operations behind is never worse,
//!   since those can still go at the end. (What was seen either failed already, or is an
//!   ancestor whose other branches cover everything this one could do.) The subsets
//!   looked up are the empty set and U less one operation: a few hash probes, not a scan.
//!   For the cut to bite, each walk tries the answered candidates before the unanswered.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::model::Model;

const NIL: u32 = u32::MAX;
const HEAD: u32 = 0;

/// One operation as the search sees it: times are ranks (distinct, from 0).
#[derive(Debug)]
pub(crate) struct Item<'a, I, O> {
    pub input: &'a I,
    /// `None`: no answer came; any answer fits.
    pub output: Option<&'a O>,
    pub call: u64,
    /// `u64::MAX` when no answer came: it may take effect any time after `call`.
    pub ret: u64,
}

/// How much searching is allowed.
#[derive(Debug)]
pub(crate) struct Budget<'a> {
    pub steps_left: u64,
    pub deadline: Option<Instant>,
    pub stop: Option<&'a AtomicBool>,
}

impl Budget<'_> {
    /// Whether the search must give up (checked every few hundred steps: reading the
    /// clock on each would cost more than the step).
    fn exhausted(&mut self, steps: u64) -> bool {
        if self.steps_left == 0 {
            return true;
        }
        self.steps_left -= 1;
        if steps % 512 != 0 {
            return false;
        }
        self.deadline.is_some_and(|deadline| Instant::now() >= deadline)
            || self.stop.is_some_and(|stop| stop.load(Ordering::Relaxed))
    }
}

/// Where the deepest attempt stopped (recorded only when asked: it costs a copy per new
/// depth reached).
#[derive(Debug)]
pub(crate) struct Frontier<S> {
    /// The items linearized, in order, with the state after each.
    pub linearized: Vec<(usize, S)>,
    /// The items that were candidates to go next.
    pub candidates: Vec<usize>,
    /// The item whose response the attempt could not get past.
    pub blocking: usize,
}

#[derive(Debug)]
pub(crate) enum Found<S> {
    /// A linearization exists.
    Linearizable,
    /// None exists; where the deepest attempt stopped, if recorded.
    Illegal(Option<Frontier<S>>),
    /// The budget ran out first.
    Unknown,
}

/// Operations linearized so far, as a bitset.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Bits(Box<[u64]>);

impl Bits {
    fn new(n: usize) -> Bits {
        Bits(vec![0; n.div_ceil(64)].into_boxed_slice())
    }

    fn flip(&mut self, index: usize) {
        self.0[index / 64] ^= 1 << (index % 64);
    }

    /// The set as stored in the memo: the words from the first that is not full to the
    /// last that is not empty. Operations are numbered in invocation order and a search
    /// linearizes them roughly in that order, so that is a word or two, not n/64.
    fn compact(&self) -> Compact {
        let start = self.0.iter().position(|word| *word != u64::MAX).unwrap_or(self.0.len());
        let end = self.0.iter().rposition(|word| *word != 0).map_or(0, |last| last + 1).max(start);
        Compact { start: start as u32, words: self.0[start..end].into() }
    }
}

/// A set of operations: all those below 64 × `start`, then `words`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Compact {
    start: u32,
    words: Box<[u64]>,
}

/// A configuration seen: answered operations linearized, unanswered ones (sorted), the
/// state; keyed by a hash of all three.
type Seen<S> = HashMap<u64, Vec<(Compact, Box<[u32]>, S)>, BuildHasherDefault<Prehashed>>;

/// Whether `seen` holds (`answered`, `unanswered` less `without`, `state`) under `key`.
fn holds<S: Eq>(
    seen: &Seen<S>,
    key: u64,
    answered: &Compact,
    unanswered: &[u32],
    without: Option<u32>,
    state: &S,
) -> bool {
    let Some(bucket) = seen.get(&key) else { return false };
    let mut wanted = unanswered.iter().copied().filter(|&item| Some(item) != without);
    bucket.iter().any(|(seen_answered, seen_unanswered, seen_state)| {
        seen_answered == answered
            && seen_unanswered.len() + usize::from(without.is_some()) == unanswered.len()
            && seen_unanswered.iter().copied().eq(wanted.by_ref())
            && seen_state == state
    })
}

/// A hasher that passes on a hash already computed.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn hash_state<S: Hash>(state: &S) -> u64 {
    let mut hasher = DefaultHasher::new(); // fixed keys: the same run hashes the same way
    state.hash(&mut hasher);
    hasher.finish()
}

/// The event list: node 0 is the head; then one node per invocation and per response,
/// in time order.
struct List {
    next: Vec<u32>,
    prev: Vec<u32>,
    item: Vec<u32>,
    /// For an invocation, its response's node; `NIL` for a response.
    response: Vec<u32>,
}

impl List {
    fn new<I, O>(items: &[Item<'_, I, O>]) -> List {
        let mut events: Vec<(u64, bool, u32)> = Vec::with_capacity(items.len() * 2);
        for (index, item) in items.iter().enumerate() {
            assert!(item.call < item.ret, "an operation answers after its invocation");
            let index = u32::try_from(index).expect("fewer than 2^32 operations per key");
            events.push((item.call, false, index));
            events.push((item.ret, true, index));
        }
        // Same time: the invocation first (both may have been anywhere in that tick).
        events.sort_unstable();
        let nodes = events.len() + 1;
        let mut list = List {
            next: (1..=nodes as u32).collect(),
            prev: (0..nodes as u32).map(|node| node.wrapping_sub(1)).collect(),
            item: vec![NIL; nodes],
            response: vec![NIL; nodes],
        };
        list.next[nodes - 1] = NIL;
        let mut call_node = vec![NIL; items.len()];
        for (position, &(_, is_response, index)) in events.iter().enumerate() {
            let node = position as u32 + 1;
            list.item[node as usize] = index;
            if is_response {
                list.response[call_node[index as usize] as usize] = node;
            } else {
                call_node[index as usize] = node;
            }
        }
        list
    }

    fn is_call(&self, node: u32) -> bool {
        self.response[node as usize] != NIL
    }

    fn unlink(&mut self, node: u32) {
        let (prev, next) = (self.prev[node as usize], self.next[node as usize]);
        self.next[prev as usize] = next;
        if next != NIL {
            self.prev[next as usize] = prev;
        }
    }

    fn relink(&mut self, node: u32) {
        let (prev, next) = (self.prev[node as usize], self.next[node as usize]);
        self.next[prev as usize] = node;
        if next != NIL {
            self.prev[next as usize] = node;
        }
    }

    /// Takes an invocation and its response out (they keep their own links, so that
    /// [`List::put_back`] in the reverse order restores them).
    fn lift(&mut self, call: u32) {
        self.unlink(call);
        self.unlink(self.response[call as usize]);
    }

    fn put_back(&mut self, call: u32) {
        self.relink(self.response[call as usize]);
        self.relink(call);
    }
}

/// Searches for a linearization of `items` against `model`.
pub(crate) fn search<M: Model>(
    model: &M,
    items: &[Item<'_, M::Input, M::Output>],
    budget: &mut Budget<'_>,
    explain: bool,
) -> Found<M::State> {
    let mut list = List::new(items);
    let zobrist: Vec<u64> = (0..items.len() as u64).map(splitmix).collect();
    let zobrist_unanswered: Vec<u64> = (0..items.len() as u64).map(|index| splitmix(!index)).collect();
    let mut unanswered_hash = 0u64;
    // Linearized so far: answered operations (they make the hash), unanswered ones.
    let mut answered = Bits::new(items.len());
    let mut unanswered: Vec<u32> = Vec::new();
    let mut answered_hash = 0u64;
    let mut answered_left = items.iter().filter(|item| item.output.is_some()).count();
    let mut seen: Seen<M::State> = HashMap::default();
    // The invocations lifted, with the state before each and the pass that lifted it.
    let mut done: Vec<(u32, M::State, Pass)> = Vec::new();
    let mut frontier: Option<Frontier<M::State>> = None;
    let mut state = model.init();
    let mut steps = 0u64;
    let mut node = list.next[HEAD as usize];
    let mut pass = Pass::Answered;
    while answered_left > 0 {
        if !list.is_call(node) {
            // The candidates end here. Answered ones were tried: now the unanswered.
            if pass == Pass::Answered {
                pass = Pass::Unanswered;
                node = list.next[HEAD as usize];
                continue;
            }
            if explain && frontier.as_ref().is_none_or(|deepest| done.len() > deepest.linearized.len()) {
                frontier = Some(record_frontier(&list, &done, &state, node));
            }
            let Some((call, before, lifted_in)) = done.pop() else {
                return Found::Illegal(frontier);
            };
            let index = list.item[call as usize] as usize;
            if items[index].output.is_some() {
                answered.flip(index);
                answered_hash ^= zobrist[index];
                answered_left += 1;
            } else {
                let position =
                    unanswered.iter().position(|&item| item as usize == index).expect("linearized");
                unanswered.remove(position);
                unanswered_hash ^= zobrist_unanswered[index];
            }
            state = before;
            list.put_back(call);
            node = list.next[call as usize];
            pass = lifted_in;
            continue;
        }
        let index = list.item[node as usize] as usize;
        let item = &items[index];
        if (item.output.is_some()) != (pass == Pass::Answered) {
            node = list.next[node as usize];
            continue;
        }
        steps += 1;
        if budget.exhausted(steps) {
            return Found::Unknown;
        }
        let (after, output) = model.step(&state, item.input);
        if item.output.is_none_or(|observed| *observed == output) {
            let (hash, unanswered_after) = match item.output {
                Some(_) => {
                    answered.flip(index);
                    (answered_hash ^ zobrist[index], unanswered_hash)
                }
                None => {
                    let position = unanswered.partition_point(|&item| (item as usize) < index);
                    unanswered.insert(position, index as u32);
                    (answered_hash, unanswered_hash ^ zobrist_unanswered[index])
                }
            };
            let compact = answered.compact();
            let key = hash ^ hash_state(&after);
            let dominated = holds(&seen, key ^ unanswered_after, &compact, &unanswered, None, &after)
                || (!unanswered.is_empty() && holds(&seen, key, &compact, &[], None, &after))
                || (unanswered.len() > 1
                    && unanswered.iter().any(|&item| {
                        let key = key ^ unanswered_after ^ zobrist_unanswered[item as usize];
                        holds(&seen, key, &compact, &unanswered, Some(item), &after)
                    }));
            if !dominated {
                seen.entry(key ^ unanswered_after).or_default().push((
                    compact,
                    unanswered.as_slice().into(),
                    after.clone(),
                ));
                answered_hash = hash;
                unanswered_hash = unanswered_after;
                answered_left -= usize::from(item.output.is_some());
                done.push((node, std::mem::replace(&mut state, after), pass));
                list.lift(node);
                node = list.next[HEAD as usize];
                pass = Pass::Answered;
                continue;
            }
            match item.output {
                Some(_) => answered.flip(index),
                None => unanswered.retain(|&item| item as usize != index),
            }
        }
        node = list.next[node as usize];
    }
    Found::Linearizable
}

/// Which candidates a walk of the list tries: answered operations first, so that the
/// orders without an unanswered operation are seen before those with it, and cut them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Answered,
    Unanswered,
}

fn record_frontier<S: Clone>(list: &List, done: &[(u32, S, Pass)], state: &S, response: u32) -> Frontier<S> {
    let mut linearized = Vec::with_capacity(done.len());
    for (position, &(call, _, _)) in done.iter().enumerate() {
        let after = done.get(position + 1).map_or(state, |(_, before, _)| before);
        linearized.push((list.item[call as usize] as usize, after.clone()));
    }
    let mut candidates = Vec::new();
    let mut node = list.next[HEAD as usize];
    while node != response {
        if list.is_call(node) {
            candidates.push(list.item[node as usize] as usize);
        }
        node = list.next[node as usize];
    }
    Frontier { linearized, candidates, blocking: list.item[response as usize] as usize }
}
