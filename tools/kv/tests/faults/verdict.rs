//! After the faults: final reads, the replicas' states compared, no acknowledged write
//! lost, the history checked, the failover gaps measured.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use usec_check::linearizability::{check, Options, Verdict};
use usec_check::models::{Kv, KvInput, KvOutput};
use usec_check::{Bytes, Operation};

use super::client::{classify, is_write, key_of, Answer, Connection, KeyKind, REPLY_TIMEOUT};
use super::cluster;
use super::{Run, STEP_LIMIT};
use crate::common::Group;

/// The final reads' client id in the history.
const FINAL_READER: u64 = 1_000;

type History = Vec<Operation<KvInput, KvOutput>>;
type State = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Every check, in turn; the first that fails says why.
pub fn judge(group: &Group, run: &Run) -> Result<(), String> {
    let state = final_state(group, run)?;
    let history = run.recorder.operations();
    let unknown = history.iter().filter(|operation| operation.output().is_none()).count();
    println!(
        "{} operations ({unknown} unanswered, {} acknowledged writes); {} keys",
        history.len(),
        run.acked(),
        state.len()
    );
    nothing_lost(&history, &state)?;
    failover_gaps(run, &history);
    let started = Instant::now();
    // A bound on each key's search, so that a history the checker cannot decide fails
    // the test instead of exhausting the machine's memory (the search remembers every
    // state it reached: this is around a gigabyte at most).
    let options = Options { max_steps_per_key: 1_000_000, ..Options::default() };
    let verdict = check(&Kv, &history, &options);
    let seconds = started.elapsed().as_secs_f64();
    println!("checked in {seconds:.3} s: {}", if verdict.is_linearizable() { "linearizable" } else { "not" });
    match verdict {
        Verdict::Linearizable => Ok(()),
        other => Err(format!("the history is not known linearizable: {other}")),
    }
}

/// Reads every key through the leader (recorded: the checker sees the final values), then
/// waits until every replica applied as far and reads each one's whole state: they must
/// be the same.
fn final_state(group: &Group, run: &Run) -> Result<State, String> {
    let ports = &group.ports;
    let all: Vec<usize> = (0..ports.len()).collect();
    let keys: BTreeSet<Bytes> =
        run.recorder.operations().iter().map(|operation| key_of(&operation.input).clone()).collect();
    let deadline = Instant::now() + STEP_LIMIT;
    let mut connection = None;
    for key in &keys {
        loop {
            if Instant::now() > deadline {
                return Err(format!("the final reads took over {STEP_LIMIT:?}"));
            }
            if connection.is_none() {
                let leader = cluster::leader(ports, &all).map(|(id, _)| ports[id]);
                connection = leader.and_then(Connection::open);
                if connection.is_none() {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
            let input = KvInput::Get(key.clone());
            let invocation = run.recorder.invoke(FINAL_READER, input);
            let reply = connection.as_mut().and_then(|c| c.request(&[b"GET", key.as_slice()], REPLY_TIMEOUT));
            let answer = reply.as_deref().map(classify);
            match answer {
                Some(Ok(Answer::Output(output))) => {
                    run.recorder.ok(invocation, output);
                    break;
                }
                Some(Ok(Answer::Moved(_) | Answer::Retry)) => run.recorder.fail(invocation),
                Some(Err(reply)) => return Err(format!("final GET {key:?}: {reply}")),
                Some(Ok(Answer::Uncertain)) | None => drop(invocation),
            }
            connection = None;
        }
    }
    let (leader, role) = cluster::leader(ports, &all).ok_or("no leader after the final reads")?;
    let commit = role.commit_index;
    for (id, port) in ports.iter().enumerate() {
        cluster::wait_for(&format!("replica {id} to apply {commit}"), STEP_LIMIT, || {
            cluster::role(*port).filter(|role| role.applied_index >= commit)
        })?;
    }
    let states: Vec<State> = ports.iter().map(|&port| cluster::dump(port)).collect::<Result<_, _>>()?;
    for (id, state) in states.iter().enumerate() {
        if *state != states[leader] {
            return Err(format!(
                "replica {id}'s state differs from the leader's (replica {leader}):\n{}",
                differences(state, &states[leader])
            ));
        }
    }
    println!("every replica applied {commit}; their states agree ({} keys)", states[leader].len());
    Ok(states[leader].clone())
}

/// The keys two states disagree on (a few).
fn differences(ours: &State, theirs: &State) -> String {
    let keys: BTreeSet<&Vec<u8>> = ours.keys().chain(theirs.keys()).collect();
    let show = |value: Option<&Option<Vec<u8>>>| {
        format!("{:?}", value.map(|value| value.as_deref().map(Bytes::from)))
    };
    keys.into_iter()
        .filter(|key| ours.get(*key) != theirs.get(*key))
        .take(10)
        .map(|key| {
            format!(
                "  {:?}: {} vs {}",
                Bytes::from(key.as_slice()),
                show(ours.get(key)),
                show(theirs.get(key))
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Counters and appended lists, whose final values account for their writes: every
/// acknowledged one is in, nothing else but writes whose answer never came.
fn nothing_lost(history: &History, state: &State) -> Result<(), String> {
    let mut acked: BTreeMap<&Bytes, Vec<&KvInput>> = BTreeMap::new();
    let mut maybe: BTreeMap<&Bytes, Vec<&KvInput>> = BTreeMap::new();
    for operation in history.iter().filter(|operation| is_write(&operation.input)) {
        let key = key_of(&operation.input);
        match operation.output() {
            Some(KvOutput::Error(_)) => {}
            Some(_) => acked.entry(key).or_default().push(&operation.input),
            None => maybe.entry(key).or_default().push(&operation.input),
        }
    }
    let mut checked = (0, 0);
    let keys: BTreeSet<&Bytes> = acked.keys().chain(maybe.keys()).copied().collect();
    for key in keys {
        let value = state.get(key.as_slice()).cloned().flatten().unwrap_or_default();
        let writes = acked.get(key).map_or(&[][..], Vec::as_slice);
        let maybe = maybe.get(key).map_or(&[][..], Vec::as_slice);
        match KeyKind::of(key.as_slice()) {
            KeyKind::Counter => {
                let text = String::from_utf8_lossy(&value);
                let count: u64 = if value.is_empty() {
                    0
                } else {
                    text.parse().map_err(|_| format!("{key:?} = {text:?}"))?
                };
                let (acked, maybe) = (writes.len() as u64, maybe.len() as u64);
                if count < acked || count > acked + maybe {
                    return Err(format!(
                        "counter {key:?} is {count}: {acked} INCRs were acknowledged and {maybe} more never answered"
                    ));
                }
                checked.0 += 1;
            }
            KeyKind::Appended => {
                let tokens: Vec<&[u8]> =
                    value.split(|&byte| byte == b',').filter(|token| !token.is_empty()).collect();
                let present: BTreeSet<&[u8]> = tokens.iter().copied().collect();
                if present.len() != tokens.len() {
                    return Err(format!("{key:?} holds a token twice: {:?}", Bytes::from(value.as_slice())));
                }
                let token = |input: &&KvInput| match input {
                    KvInput::Append(_, suffix) => suffix.as_slice().strip_suffix(b",").unwrap().to_vec(),
                    other => panic!("appended lists only get APPEND: {other:?}"),
                };
                let acked: BTreeSet<Vec<u8>> = writes.iter().map(token).collect();
                let sent: BTreeSet<Vec<u8>> = acked.iter().cloned().chain(maybe.iter().map(token)).collect();
                if let Some(lost) = acked.iter().find(|token| !present.contains(token.as_slice())) {
                    return Err(format!(
                        "{key:?} lost the acknowledged APPEND of {:?}",
                        Bytes::from(lost.as_slice())
                    ));
                }
                if let Some(stray) = present.iter().find(|token| !sent.contains(**token)) {
                    return Err(format!("{key:?} holds {:?}, never appended", Bytes::from(*stray)));
                }
                checked.1 += 1;
            }
            KeyKind::Register => {}
        }
    }
    println!(
        "no acknowledged write lost: {} counters, {} appended lists accounted for",
        checked.0, checked.1
    );
    Ok(())
}

/// For each fault: when a new leader was seen (by INFO), when a write sent after the fault
/// was first acknowledged — clients stuck on a stopped leader give up on it after
/// [`REPLY_TIMEOUT`] — and when the last write before it was.
fn failover_gaps(run: &Run, history: &History) {
    let acknowledged: Vec<(u64, u64)> = history
        .iter()
        .filter(|operation| is_write(&operation.input) && operation.client != FINAL_READER)
        .filter_map(|operation| match operation.output() {
            Some(KvOutput::Error(_)) | None => None,
            Some(_) => operation.return_ns().map(|at| (operation.invoke_ns, at)),
        })
        .collect();
    for fault in &run.faults {
        let last = acknowledged.iter().map(|&(_, at)| at).filter(|&at| at <= fault.at_ns).max();
        let next =
            acknowledged.iter().filter(|&&(invoked, _)| invoked >= fault.at_ns).map(|&(_, at)| at).min();
        let after = |from: u64, to: Option<u64>| {
            to.map_or("-".to_string(), |to| format!("{:.1} ms", (to - from) as f64 / 1e6))
        };
        println!(
            "after {}: leader elected {}; first write acknowledged {} (last before it at -{})",
            fault.what,
            after(fault.at_ns, fault.elected_ns),
            after(fault.at_ns, next),
            last.map_or("-".to_string(), |last| after(last, Some(fault.at_ns))),
        );
    }
}
