//! Property tests: histories of real sequential executions are always linearizable; one
//! corrupted read makes them not (always when it saw a value never written; mostly when
//! it saw another value of its key); and the checker is fast on thousands of operations
//! per key.

mod common;

use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_check::linearizability::{check, Options, Verdict};
use usec_check::models::{Kv, KvInput, KvOutput};
use usec_check::Bytes;

use common::{answered_reads, corrupt, kv_history, seed, Shape};

fn runner(test: &str, cases: u32) -> TestRunner {
    let seed = seed(test, 0x5eed_0001);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

fn options() -> Options {
    Options { max_steps_per_key: 5_000_000, threads: 1, ..Options::default() }
}

fn shapes() -> impl proptest::strategy::Strategy<Value = (u64, Shape)> {
    use proptest::prelude::*;
    (any::<u64>(), 1usize..300, 1usize..4, 1usize..8, 2u64..200, 0.0..0.02f64, 0.0..0.02f64).prop_map(
        |(seed, operations, keys, clients, spread_ns, lost_answer, never_applied)| {
            (seed, Shape { operations, keys, clients, spread_ns, lost_answer, never_applied })
        },
    )
}

#[test]
fn executions_are_linearizable() {
    runner("executions_are_linearizable", 256)
        .run(&shapes(), |(seed, shape)| {
            let history = kv_history(seed, shape);
            let verdict = check(&Kv, &history, &options());
            proptest::prop_assert_eq!(&verdict, &Verdict::Linearizable, "{}", verdict);
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_read_of_a_value_never_written_is_caught_where_it_happened() {
    runner("a_read_of_a_value_never_written_is_caught_where_it_happened", 128)
        .run(&(shapes(), proptest::prelude::any::<proptest::sample::Index>()), |((seed, shape), pick)| {
            let mut history = kv_history(seed, shape);
            let reads = answered_reads(&history);
            if reads.is_empty() {
                return Ok(());
            }
            let read = reads[pick.index(reads.len())];
            corrupt(&mut history, read, KvOutput::Value(Some(Bytes::from("never written"))));
            match check(&Kv, &history, &options()) {
                Verdict::NotLinearizable(counterexample) => {
                    let (_, last) = counterexample.prefix.as_ref().expect("explained");
                    proptest::prop_assert_eq!(last.index, read, "{}", counterexample);
                }
                other => proptest::prop_assert!(false, "not caught: {}", other),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn a_read_of_another_written_value_is_mostly_caught() {
    let seed = common::seed("a_read_of_another_written_value_is_mostly_caught", 7);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut tried, mut caught) = (0, 0);
    while tried < 300 {
        let shape = Shape {
            operations: rng.gen_range(20..200),
            keys: rng.gen_range(1..3),
            clients: rng.gen_range(1..6),
            spread_ns: rng.gen_range(2..60),
            lost_answer: 0.0,
            never_applied: 0.0,
        };
        let mut history = kv_history(rng.gen(), shape);
        let reads = answered_reads(&history);
        if reads.is_empty() {
            continue;
        }
        let read = reads[rng.gen_range(0..reads.len())];
        let KvInput::Get(key) = history[read].input.clone() else { unreachable!("a read") };
        let observed = history[read].output().cloned();
        // Another value this key holds at some point of the history.
        let values: Vec<Bytes> = history
            .iter()
            .filter_map(|operation| match &operation.input {
                KvInput::Set(written, value) | KvInput::GetSet(written, value) if *written == key => {
                    Some(value.clone())
                }
                _ => None,
            })
            .filter(|value| Some(KvOutput::Value(Some(value.clone()))) != observed)
            .collect();
        if values.is_empty() {
            continue;
        }
        tried += 1;
        corrupt(&mut history, read, KvOutput::Value(Some(values[rng.gen_range(0..values.len())].clone())));
        match check(&Kv, &history, &options()) {
            Verdict::NotLinearizable(_) => caught += 1,
            Verdict::Linearizable => {}
            unknown => panic!("{unknown}"),
        }
    }
    println!("{caught} of {tried} corrupted reads caught");
    // Some corruptions are still explainable (a concurrent write of that value), most not.
    assert!(caught * 10 >= tried * 7, "only {caught} of {tried} caught");
}

#[test]
fn thousands_of_operations_per_key_are_checked_within_a_small_budget() {
    let seed = common::seed("thousands_of_operations_per_key", 11);
    // 5,000 operations on each of 4 keys, 16 clients; a few answers lost.
    let shape = |lost| Shape {
        operations: 20_000,
        keys: 4,
        clients: 16,
        spread_ns: 100,
        lost_answer: lost,
        never_applied: lost,
    };
    // A few steps per operation: the memo keeps the search near linear.
    let options = Options { max_steps_per_key: 50_000, threads: 1, ..Options::default() };
    assert_eq!(check(&Kv, &kv_history(seed, shape(0.002)), &options), Verdict::Linearizable);
    // Refuting costs more: every order of each window of concurrent operations before
    // the bad read is tried, and each unanswered operation anywhere after its invocation
    // (the cost grows with their number: a handful per key here).
    let mut broken = kv_history(seed, shape(0.0005));
    let reads = answered_reads(&broken);
    let read = reads[reads.len() * 9 / 10];
    corrupt(&mut broken, read, KvOutput::Value(Some(Bytes::from("never written"))));
    let verdict = check(&Kv, &broken, &Options { max_steps_per_key: 1_000_000, ..options });
    let Verdict::NotLinearizable(counterexample) = verdict else { panic!("not caught: {verdict}") };
    assert_eq!(counterexample.prefix.as_ref().unwrap().1.index, read);
}
