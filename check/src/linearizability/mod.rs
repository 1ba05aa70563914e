//! Is a history linearizable? [`check`] answers yes, no with a [`Counterexample`], or
//! "unknown" when the search ran out of its budget — never hangs.
//!
//! - [`search`]: the Wing–Gong search with memoization, on one key;
//! - [`report`]: what a "no" says — the shortest prefix of the history that already has
//!   no linearization, how far the best attempt got and which operations could not go
//!   next.
//!
//! The history is split by [`Model::key`] and each key is checked alone, on as many
//! threads as asked for; the first key found not linearizable stops the others.

mod report;
mod search;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use report::{Candidate, Counterexample, OperationView};

use crate::history::Operation;
use crate::model::Model;
use search::{Budget, Found, Item};

/// How hard to look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Model steps one key's search may take; past it, the key's answer is "unknown".
    /// Steps are deterministic, so the same history gets the same answer on any machine.
    pub max_steps_per_key: u64,
    /// Wall-clock limit for the whole check, if any (for tools: the answer may then
    /// depend on the machine's speed).
    pub timeout: Option<Duration>,
    /// Threads checking keys in parallel (0: as many as the machine has cores).
    pub threads: usize,
    /// Whether a "no" comes with its shortest failing prefix and the best attempt on it
    /// (a few more searches of that key).
    pub explain: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { max_steps_per_key: 50_000_000, timeout: None, threads: 0, explain: true }
    }
}

/// The checker's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every key's operations have a linearization.
    Linearizable,
    /// A key's operations have none.
    NotLinearizable(Box<Counterexample>),
    /// No key was found wrong, but these keys' searches ran out of budget or time.
    Unknown {
        /// The keys not decided, as `Debug` writes them.
        keys: Vec<String>,
    },
}

impl Verdict {
    /// Whether the history is known to be linearizable.
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Linearizable => write!(f, "linearizable"),
            Verdict::NotLinearizable(counterexample) => write!(f, "{counterexample}"),
            Verdict::Unknown { keys } => {
                write!(
                    f,
                    "unknown: the search ran out of budget on {} key(s): {}",
                    keys.len(),
                    keys.join(", ")
                )
            }
        }
    }
}

/// One key's operations, as indices into the history.
struct Partition<K> {
    key: K,
    operations: Vec<usize>,
}

enum KeyResult {
    Linearizable,
    Illegal(Box<Counterexample>),
    Unknown,
}

/// Checks `history` against `model`.
///
/// # Panics
///
/// If an operation is answered before it is invoked (histories read with
/// [`crate::history::operations`] never are).
pub fn check<M>(model: &M, history: &[Operation<M::Input, M::Output>], options: &Options) -> Verdict
where
    M: Model + Sync,
    M::Input: Sync,
    M::Output: Sync,
    M::Key: Send + Sync,
{
    let partitions = partition(model, history);
    let deadline = options.timeout.map(|timeout| Instant::now() + timeout);
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        threads => threads,
    }
    .min(partitions.len())
    .max(1);
    let stop = AtomicBool::new(false);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, KeyResult)>> = Mutex::new(Vec::new());
    let work = || loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(partition) = partitions.get(index) else { return };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let result = check_key(model, history, partition, options, deadline, &stop);
        if matches!(result, KeyResult::Illegal(_)) {
            stop.store(true, Ordering::Relaxed);
        }
        results.lock().expect("no panics under the lock").push((index, result));
    };
    if threads == 1 {
        work();
    } else {
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(work);
            }
        });
    }
    let mut results = results.into_inner().expect("no panics under the lock");
    results.sort_by_key(|(index, _)| *index);
    let mut unknown = Vec::new();
    for (index, result) in results {
        match result {
            KeyResult::Illegal(counterexample) => return Verdict::NotLinearizable(counterexample),
            KeyResult::Unknown => unknown.push(format!("{:?}", partitions[index].key)),
            KeyResult::Linearizable => {}
        }
    }
    if unknown.is_empty() {
        Verdict::Linearizable
    } else {
        Verdict::Unknown { keys: unknown }
    }
}

fn partition<M: Model>(model: &M, history: &[Operation<M::Input, M::Output>]) -> Vec<Partition<M::Key>> {
    let mut keys: BTreeMap<M::Key, Vec<usize>> = BTreeMap::new();
    for (index, operation) in history.iter().enumerate() {
        if let Some(return_ns) = operation.return_ns() {
            assert!(return_ns >= operation.invoke_ns, "operation {index} is answered before it is invoked");
        }
        if operation.output().is_none() && model.is_read_only(&operation.input) {
            continue; // it answered nobody and changed nothing
        }
        keys.entry(model.key(&operation.input)).or_default().push(index);
    }
    keys.into_iter().map(|(key, operations)| Partition { key, operations }).collect()
}

/// The events of one key's operations in time order, as (operation, is a response).
/// Ties put invocations first: the two operations then count as concurrent.
fn events<I, O>(history: &[Operation<I, O>], operations: &[usize]) -> Vec<(usize, bool)> {
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(operations.len() * 2);
    for &index in operations {
        events.push((history[index].invoke_ns, false, index));
        if let Some(at_ns) = history[index].return_ns() {
            events.push((at_ns, true, index));
        }
    }
    events.sort_unstable();
    events.into_iter().map(|(_, is_response, index)| (index, is_response)).collect()
}

/// The search items of the history cut after its first `cut` events: operations invoked
/// by then, those not answered by then without an answer. Times are event ranks.
fn cut_items<'h, I, O>(
    history: &'h [Operation<I, O>],
    events: &[(usize, bool)],
    cut: usize,
) -> (Vec<Item<'h, I, O>>, Vec<usize>) {
    let mut position = std::collections::HashMap::new();
    let mut items: Vec<Item<'h, I, O>> = Vec::new();
    let mut indices = Vec::new();
    for (rank, &(index, is_response)) in events[..cut].iter().enumerate() {
        if is_response {
            let item: &mut Item<'h, I, O> = &mut items[position[&index]];
            item.ret = rank as u64;
            item.output = history[index].output();
        } else {
            position.insert(index, items.len());
            items.push(Item { input: &history[index].input, output: None, call: rank as u64, ret: u64::MAX });
            indices.push(index);
        }
    }
    (items, indices)
}

fn check_key<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
    partition: &Partition<M::Key>,
    options: &Options,
    deadline: Option<Instant>,
    stop: &AtomicBool,
) -> KeyResult {
    let events = events(history, &partition.operations);
    let budget = |stop| Budget { steps_left: options.max_steps_per_key, deadline, stop };
    let (items, _) = cut_items(history, &events, events.len());
    match search::search(model, &items, &mut budget(Some(stop)), false) {
        Found::Linearizable => return KeyResult::Linearizable,
        Found::Unknown => return KeyResult::Unknown,
        Found::Illegal(_) => {}
    }
    if !options.explain {
        return KeyResult::Illegal(Box::new(Counterexample::bare(
            &partition.key,
            partition.operations.len(),
        )));
    }
    // The shortest failing prefix: a longer cut only adds constraints, so failing is
    // monotone in the cut and a bisection finds it. Its last event is a response.
    let (mut linearizable, mut illegal) = (0, events.len());
    while illegal - linearizable > 1 {
        let cut = linearizable + (illegal - linearizable) / 2;
        let (items, _) = cut_items(history, &events, cut);
        match search::search(model, &items, &mut budget(None), false) {
            Found::Linearizable => linearizable = cut,
            Found::Illegal(_) => illegal = cut,
            Found::Unknown => break,
        }
    }
    let (items, indices) = cut_items(history, &events, illegal);
    let frontier = match search::search(model, &items, &mut budget(None), true) {
        Found::Illegal(frontier) => frontier,
        _ => None,
    };
    let mut counterexample = Counterexample::bare(&partition.key, partition.operations.len());
    counterexample.explain(model, history, &events[..illegal], &indices, frontier);
    KeyResult::Illegal(Box::new(counterexample))
}
