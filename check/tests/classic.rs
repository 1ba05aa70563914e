//! Hand-written histories whose answer is known: the classic ways a replicated store goes
//! wrong, and concurrent histories that look wrong but can be ordered.

use usec_check::linearizability::{check, Counterexample, Options, Verdict};
use usec_check::models::{Kv, KvInput, KvOutput, Register, RegisterInput, RegisterOutput};
use usec_check::{history, Bytes, Event, Model, Operation};

type KvOp = Operation<KvInput, KvOutput>;

fn b(text: &str) -> Bytes {
    Bytes::from(text)
}

fn set(client: u64, key: &str, value: &str, from: u64, to: u64) -> KvOp {
    Operation::returned(client, KvInput::Set(b(key), b(value)), from, to, KvOutput::Ok)
}

fn get(client: u64, key: &str, value: Option<&str>, from: u64, to: u64) -> KvOp {
    Operation::returned(client, KvInput::Get(b(key)), from, to, KvOutput::Value(value.map(b)))
}

fn incr(client: u64, key: &str, result: i64, from: u64, to: u64) -> KvOp {
    Operation::returned(client, KvInput::IncrBy(b(key), 1), from, to, KvOutput::Integer(result))
}

fn verdict<M>(model: &M, history: &[Operation<M::Input, M::Output>]) -> Verdict
where
    M: Model + Sync,
    M::Input: Sync,
    M::Output: Sync,
    M::Key: Send + Sync,
{
    check(model, history, &Options::default())
}

fn counterexample(verdict: Verdict) -> Box<Counterexample> {
    match verdict {
        Verdict::NotLinearizable(counterexample) => {
            println!("{counterexample}");
            counterexample
        }
        other => panic!("expected not linearizable, got {other:?}"),
    }
}

/// The index of the operation whose answer ends the shortest failing prefix.
fn culprit(verdict: Verdict) -> usize {
    counterexample(verdict).prefix.expect("explained").1.index
}

#[test]
fn a_read_after_a_write_sees_it() {
    let history = [set(1, "x", "a", 0, 10), get(2, "x", Some("a"), 20, 30)];
    assert_eq!(verdict(&Kv, &history), Verdict::Linearizable);
}

#[test]
fn a_stale_read_is_caught() {
    // The write finished before the read began; the read still saw nothing.
    let history = [set(1, "x", "a", 0, 10), get(2, "x", None, 20, 30)];
    assert_eq!(culprit(verdict(&Kv, &history)), 1);
}

#[test]
fn a_lost_write_is_caught() {
    // Two acknowledged writes in a row; later reads see the first: the second was lost.
    let history = [
        set(1, "x", "a", 0, 10),
        set(1, "x", "b", 20, 30),
        get(2, "x", Some("b"), 25, 35),
        get(3, "x", Some("a"), 40, 50),
    ];
    assert_eq!(culprit(verdict(&Kv, &history)), 3);
}

#[test]
fn reordered_writes_are_caught() {
    // One client writes 1 then 2; another then reads 2 then 1.
    let history = [
        set(1, "x", "1", 0, 10),
        set(1, "x", "2", 20, 30),
        get(2, "x", Some("2"), 40, 50),
        get(2, "x", Some("1"), 60, 70),
    ];
    assert_eq!(culprit(verdict(&Kv, &history)), 3);
}

#[test]
fn overlapping_writes_can_be_ordered_either_way() {
    // Two long writes overlap three reads that see 2, then 1: W2, R, W1, R orders them.
    let history = [
        set(1, "x", "1", 0, 100),
        set(2, "x", "2", 10, 90),
        get(3, "x", Some("2"), 20, 30),
        get(3, "x", Some("1"), 40, 50),
        get(4, "x", Some("1"), 95, 99),
    ];
    assert_eq!(verdict(&Kv, &history), Verdict::Linearizable);
    // But a write cannot take effect twice: 2, then 1, then 2 again is impossible.
    let mut flip_back = history.to_vec();
    flip_back[4] = get(4, "x", Some("2"), 95, 99);
    assert_eq!(culprit(verdict(&Kv, &flip_back)), 4);
}

#[test]
fn concurrent_reads_may_see_old_and_new() {
    // A read overlapping a write may see either value, even one that started later
    // seeing the old value while an earlier one saw the new — as long as they overlap.
    let history = [
        set(1, "x", "new", 0, 100),
        get(2, "x", Some("new"), 10, 60),
        get(3, "x", Some("old"), 20, 50),
        set(4, "x", "old", 0, 5),
    ];
    // "old" was written first (0..5), then "new" took effect after read 3 and before read 2 ended.
    assert_eq!(verdict(&Kv, &history), Verdict::Linearizable);
    // Read 3 starting after read 2 ended may not go back to the old value.
    let mut later = history.to_vec();
    later[2] = get(3, "x", Some("old"), 70, 80);
    assert_eq!(culprit(verdict(&Kv, &later)), 2);
}

#[test]
fn an_unanswered_write_may_or_may_not_have_happened() {
    let pending = Operation::unknown(1, KvInput::Set(b("x"), b("a")), 0);
    let took_effect = [pending.clone(), get(2, "x", Some("a"), 10, 20)];
    assert_eq!(verdict(&Kv, &took_effect), Verdict::Linearizable);
    let did_not = [pending.clone(), get(2, "x", None, 10, 20), get(2, "x", None, 1_000, 1_010)];
    assert_eq!(verdict(&Kv, &did_not), Verdict::Linearizable);
    // Once seen it stays: nothing else writes x.
    let flickers = [pending.clone(), get(2, "x", Some("a"), 10, 20), get(2, "x", None, 30, 40)];
    assert_eq!(culprit(verdict(&Kv, &flickers)), 2);
    // And it cannot be seen before it was invoked.
    let early = [get(2, "x", Some("a"), 0, 10), Operation::unknown(1, KvInput::Set(b("x"), b("a")), 20)];
    assert_eq!(culprit(verdict(&Kv, &early)), 0);
}

#[test]
fn counters_must_count_in_real_time_order() {
    let concurrent = [incr(1, "n", 2, 0, 50), incr(2, "n", 1, 10, 40)];
    assert_eq!(verdict(&Kv, &concurrent), Verdict::Linearizable);
    // The first answer is already impossible: nothing else had been invoked by then.
    let backwards = [incr(1, "n", 2, 0, 10), incr(2, "n", 1, 20, 30)];
    assert_eq!(culprit(verdict(&Kv, &backwards)), 0);
    // A counter that skipped a number.
    let skipped = [incr(1, "n", 1, 0, 10), incr(1, "n", 3, 20, 30)];
    assert_eq!(culprit(verdict(&Kv, &skipped)), 1);
}

#[test]
fn append_is_checked_by_length() {
    let append = |client, suffix: &str, length, from, to| {
        Operation::returned(client, KvInput::Append(b("log"), b(suffix)), from, to, KvOutput::Integer(length))
    };
    let history = [append(1, "ab", 4, 0, 30), append(2, "cd", 2, 5, 25), get(3, "log", Some("cdab"), 40, 50)];
    assert_eq!(verdict(&Kv, &history), Verdict::Linearizable);
    let mut wrong_order = history.to_vec();
    wrong_order[2] = get(3, "log", Some("abcd"), 40, 50);
    assert_eq!(culprit(verdict(&Kv, &wrong_order)), 2);
}

#[test]
fn keys_are_checked_apart_and_the_broken_one_is_named() {
    let history = [
        set(1, "good", "a", 0, 10),
        set(1, "bad", "a", 0, 10),
        get(2, "good", Some("a"), 20, 30),
        get(2, "bad", Some("zzz"), 20, 30),
    ];
    let counterexample = counterexample(verdict(&Kv, &history));
    assert_eq!(counterexample.key, "\"bad\"");
    assert_eq!(counterexample.operations, 2);
}

#[test]
fn compare_and_set_on_a_register() {
    let op = |client, input, from, to, output| Operation::returned(client, input, from, to, output);
    let history = [
        op(1, RegisterInput::Cas { expected: 0, new: 1 }, 0, 10, RegisterOutput::Swapped(true)),
        op(2, RegisterInput::Cas { expected: 0, new: 2 }, 5, 15, RegisterOutput::Swapped(false)),
        op(3, RegisterInput::Read, 20, 30, RegisterOutput::Value(1)),
    ];
    assert_eq!(verdict(&Register, &history), Verdict::Linearizable);
    // Both compare-and-sets from 0 cannot succeed.
    let mut both = history.to_vec();
    both[1] = op(2, RegisterInput::Cas { expected: 0, new: 2 }, 5, 15, RegisterOutput::Swapped(true));
    assert!(!verdict(&Register, &both).is_linearizable());
}

#[test]
fn the_counterexample_says_what_could_not_go_next() {
    let history = [
        set(1, "x", "a", 0, 10),
        set(2, "x", "b", 20, 30),
        get(3, "x", Some("a"), 40, 50),
        set(4, "x", "c", 45, 60), // overlaps the read: a candidate too
    ];
    let counterexample = counterexample(verdict(&Kv, &history));
    let (events, last) = counterexample.prefix.clone().unwrap();
    assert_eq!(last.index, 2, "the read's answer is where it breaks");
    assert_eq!(events, 7, "the 4 invocations and the answers of the 3 first operations");
    // The deepest attempt ordered both writes and the overlapping one, then had only the
    // read left, which cannot see "a" any more.
    let order: Vec<usize> = counterexample.linearized.iter().map(|(operation, _)| operation.index).collect();
    assert_eq!(order, [0, 1, 3]);
    assert_eq!(counterexample.linearized[2].1, "Some(\"c\")");
    assert_eq!(counterexample.candidates.len(), 1);
    let read = &counterexample.candidates[0];
    assert_eq!(read.operation.index, 2);
    assert!(!read.fits);
    assert_eq!(read.model_output, "Value(Some(\"c\"))");
    assert_eq!(counterexample.blocking.as_ref().unwrap().index, 2);
    let text = counterexample.to_string();
    assert!(text.contains("#2 client 3: Get(\"x\") -> Value(Some(\"a\"))"), "{text}");
    assert!(text.contains("the model answers Value(Some(\"c\"))"), "{text}");
}

#[test]
fn the_search_gives_up_instead_of_hanging() {
    // 24 concurrent unanswered appends, then a read of a value no order of them makes:
    // to refute it, every order of every subset of the appends is a state of its own.
    let mut history: Vec<KvOp> = (0..24)
        .map(|client| Operation::unknown(client, KvInput::Append(b("x"), b(&format!("{client},"))), 0))
        .collect();
    history.push(get(99, "x", Some("never"), 10, 20));
    let options = Options { max_steps_per_key: 100_000, ..Options::default() };
    assert_eq!(check(&Kv, &history, &options), Verdict::Unknown { keys: vec!["\"x\"".into()] });
}

#[test]
fn a_dozen_unanswered_writes_are_refuted_within_budget() {
    // A dozen concurrent unanswered writes (a leader killed under a dozen clients), then
    // a read of a value nobody wrote. The search tries the subsets of the writes (each
    // may or may not have happened): 2^12 of them, times the last writer.
    let mut history: Vec<KvOp> = (0..12)
        .map(|client| Operation::unknown(client, KvInput::Set(b("x"), b(&client.to_string())), 0))
        .collect();
    history.push(get(99, "x", Some("never"), 10, 20));
    let options = Options { max_steps_per_key: 1_000_000, ..Options::default() };
    assert_eq!(culprit(check(&Kv, &history, &options)), 12);
}

#[test]
fn failed_operations_are_dropped_and_unanswered_ones_kept() {
    let key = || b("x");
    let events: Vec<Event<KvInput, KvOutput>> = vec![
        Event::Invoke { client: 1, op: 1, at_ns: 0, input: KvInput::Set(key(), b("a")) },
        Event::Invoke { client: 2, op: 1, at_ns: 5, input: KvInput::Set(key(), b("b")) },
        Event::Ok { client: 1, op: 1, at_ns: 10, output: KvOutput::Ok },
        Event::Fail { client: 2, op: 1, at_ns: 12 },
        Event::Invoke { client: 3, op: 1, at_ns: 20, input: KvInput::Set(key(), b("c")) },
        Event::Invoke { client: 1, op: 2, at_ns: 30, input: KvInput::Get(key()) },
        Event::Ok { client: 1, op: 2, at_ns: 40, output: KvOutput::Value(Some(b("a"))) },
    ];
    let operations = history::operations(events).unwrap();
    assert_eq!(operations.len(), 3, "the failed write is gone");
    assert_eq!(operations[1].output(), None, "client 3's write never answered");
    assert_eq!(verdict(&Kv, &operations), Verdict::Linearizable);
}

#[test]
fn long_values_are_shortened_in_the_explanation_only() {
    let long = "v".repeat(5_000) + "end";
    let history = [set(1, "x", &long, 0, 10), get(2, "x", Some("stale"), 20, 30)];
    let counterexample = counterexample(verdict(&Kv, &history));
    let (_, state) = counterexample.linearized.last().expect("the write went first");
    assert!(state.ends_with("vend\")"), "the explanation's fields keep whole values");
    let shown = counterexample.to_string();
    assert!(shown.len() < 2_000, "{} bytes shown", shown.len());
    assert!(shown.contains("vvvvend"), "the end of a value shows: {shown}");
    assert!(shown.contains("characters left out"), "{shown}");
}
