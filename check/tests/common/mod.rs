//! Histories generated from a real sequential execution: each operation takes effect at
//! its own instant, and its invocation and answer are drawn around that instant, so the
//! history is linearizable by construction.

#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_check::models::{Kv, KvInput, KvOutput};
use usec_check::{Bytes, Model, Operation, Outcome};

/// The seed of a test's random: `USEC_SEED` if set, else `default`; printed either way.
pub fn seed(test: &str, default: u64) -> u64 {
    let seed =
        std::env::var("USEC_SEED").map_or(default, |seed| seed.parse().expect("USEC_SEED is a number"));
    println!("{test}: seed {seed} (replay with USEC_SEED={seed})");
    seed
}

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub operations: usize,
    pub keys: usize,
    pub clients: usize,
    /// How far an invocation or an answer lies from the instant of effect, at most.
    pub spread_ns: u64,
    /// Chance that an answer is lost (the operation took effect).
    pub lost_answer: f64,
    /// Chance that an operation is invoked, never takes effect, and never answers.
    pub never_applied: f64,
}

/// A history of `shape`, from `seed`; operations in invocation order.
pub fn kv_history(seed: u64, shape: Shape) -> Vec<Operation<KvInput, KvOutput>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut states: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
    // When each client is free again (clients issue one operation at a time).
    let mut free_at = vec![0u64; shape.clients];
    let mut now = 0u64;
    let mut history = Vec::new();
    for _ in 0..shape.operations {
        now += rng.gen_range(1..=shape.spread_ns.max(2) / 2);
        let client = (0..shape.clients).min_by_key(|&client| (free_at[client], client)).expect("clients");
        if free_at[client] >= now {
            now = free_at[client] + 1;
        }
        let invoke = rng.gen_range(now.saturating_sub(shape.spread_ns).max(free_at[client] + 1)..=now);
        let key = Bytes::from(format!("k{}", rng.gen_range(0..shape.keys)).as_str());
        // A few values only, so that reads are ambiguous and the search has work to do.
        let value = Bytes::from(format!("v{}", rng.gen_range(0..4)).as_str());
        let input = match rng.gen_range(0..10) {
            0..=3 => KvInput::Get(key.clone()),
            4..=5 => KvInput::Set(key.clone(), value),
            6 => KvInput::IncrBy(key.clone(), 1),
            7 => KvInput::Append(key.clone(), value),
            8 => KvInput::GetSet(key.clone(), value),
            _ => KvInput::Del(key.clone()),
        };
        if rng.gen_bool(shape.never_applied) {
            history.push(Operation::unknown(client as u64, input, invoke));
            free_at[client] = now + shape.spread_ns; // it gave up waiting
            continue;
        }
        let state = states.entry(key).or_insert(None);
        let (next, output) = Kv.step(state, &input);
        *state = next;
        let answer = rng.gen_range(now..=now + shape.spread_ns);
        free_at[client] = answer;
        if rng.gen_bool(shape.lost_answer) {
            history.push(Operation::unknown(client as u64, input, invoke));
        } else {
            history.push(Operation::returned(client as u64, input, invoke, answer, output));
        }
    }
    history.sort_by_key(|operation| operation.invoke_ns);
    history
}

/// The indices of the answered reads of `history`.
pub fn answered_reads(history: &[Operation<KvInput, KvOutput>]) -> Vec<usize> {
    (0..history.len())
        .filter(|&index| {
            matches!(history[index].input, KvInput::Get(_))
                && matches!(history[index].outcome, Outcome::Returned { .. })
        })
        .collect()
}

/// Replaces operation `index`'s answer with `output`.
pub fn corrupt(history: &mut [Operation<KvInput, KvOutput>], index: usize, output: KvOutput) {
    if let Outcome::Returned { output: observed, .. } = &mut history[index].outcome {
        *observed = output;
    }
}
