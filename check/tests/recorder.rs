//! The recorder: many threads record into one history, in time order; it saves and loads
//! as JSON lines; a real store checked through it is linearizable, a store that loses
//! writes is caught.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use usec_check::linearizability::{check, Options, Verdict};
use usec_check::models::{Kv, KvInput, KvOutput};
use usec_check::{history, Bytes, Event, Recorder};

type KvRecorder = Recorder<KvInput, KvOutput>;

/// A store behind one lock; `lose_every` > 0 drops every that-many-th write to a
/// client's own key but acknowledges it.
struct Store {
    values: Mutex<(HashMap<Bytes, Bytes>, u64)>,
    lose_every: u64,
}

impl Store {
    fn apply(&self, input: &KvInput) -> KvOutput {
        let mut guard = self.values.lock().unwrap();
        let (values, writes) = &mut *guard;
        match input {
            KvInput::Get(key) => KvOutput::Value(values.get(key).cloned()),
            KvInput::Set(key, value) => {
                let own = key.as_slice().starts_with(b"own-");
                *writes += u64::from(own);
                if !own || self.lose_every == 0 || *writes % self.lose_every != 0 {
                    values.insert(key.clone(), value.clone());
                }
                KvOutput::Ok
            }
            other => unreachable!("the clients only GET and SET, not {other:?}"),
        }
    }
}

/// `threads` clients, each writing its own key and a shared one and reading both back.
fn run_clients(store: &Arc<Store>, recorder: &KvRecorder, threads: u64, rounds: u64) {
    std::thread::scope(|scope| {
        for client in 0..threads {
            let (store, recorder) = (store.clone(), recorder.clone());
            scope.spawn(move || {
                let own = Bytes::from(format!("own-{client}").as_str());
                let shared = Bytes::from("shared");
                for round in 0..rounds {
                    let value = Bytes::from(format!("{client}.{round}").as_str());
                    for input in [
                        KvInput::Set(own.clone(), value.clone()),
                        KvInput::Get(own.clone()),
                        KvInput::Set(shared.clone(), value.clone()),
                        KvInput::Get(shared.clone()),
                    ] {
                        let invocation = recorder.invoke(client, input.clone());
                        let output = store.apply(&input);
                        recorder.ok(invocation, output);
                    }
                }
            });
        }
    });
}

#[test]
fn threads_record_one_history_in_time_order() {
    let recorder = KvRecorder::new();
    let store = Arc::new(Store { values: Mutex::new((HashMap::new(), 0)), lose_every: 0 });
    run_clients(&store, &recorder, 4, 200);
    let events = recorder.events();
    assert_eq!(events.len(), 4 * 200 * 4 * 2);
    let times: Vec<u64> = events
        .iter()
        .map(|event| match event {
            Event::Invoke { at_ns, .. } | Event::Ok { at_ns, .. } | Event::Fail { at_ns, .. } => *at_ns,
        })
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] <= pair[1]), "events are stamped in order");
    let operations = recorder.operations();
    assert_eq!(operations.len(), 4 * 200 * 4);
    assert_eq!(check(&Kv, &operations, &Options::default()), Verdict::Linearizable);
}

#[test]
fn a_store_that_loses_acknowledged_writes_is_caught() {
    let recorder = KvRecorder::new();
    let store = Arc::new(Store { values: Mutex::new((HashMap::new(), 0)), lose_every: 50 });
    run_clients(&store, &recorder, 4, 100);
    // Each client reads its own key right after writing it: a lost write there is seen
    // whatever the interleaving.
    let verdict = check(&Kv, &recorder.operations(), &Options::default());
    let Verdict::NotLinearizable(counterexample) = verdict else { panic!("not caught: {verdict}") };
    println!("{counterexample}");
}

#[test]
fn histories_save_and_load_and_merge() {
    let directory = std::env::temp_dir().join(format!("usec-check-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let (first, second) = (directory.join("first.jsonl"), directory.join("second.jsonl"));
    // Two recorders, as two client processes would have; the second streams as it goes.
    let one = KvRecorder::new();
    let two = KvRecorder::streaming_to(&second).unwrap();
    let write = one.invoke(1, KvInput::Set(Bytes::from("k"), Bytes(vec![0xff, b'a'])));
    let read = two.invoke(2, KvInput::Get(Bytes::from("k")));
    one.ok(write, KvOutput::Ok);
    let lost = two.invoke(2, KvInput::Set(Bytes::from("k"), Bytes::from("b")));
    drop(lost); // never answered
    two.ok(read, KvOutput::Value(Some(Bytes(vec![0xff, b'a']))));
    one.save(&first).unwrap();
    two.flush().unwrap();
    let text = std::fs::read_to_string(&second).unwrap();
    assert!(text.lines().next().unwrap().starts_with(r#"{"invoke":{"client":2,"op":1,"#), "{text}");
    let mut events = Vec::new();
    for path in [&first, &second] {
        let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
        events.extend(history::read_events::<KvInput, KvOutput>(file).unwrap());
    }
    let mut expected = one.events();
    expected.extend(two.events());
    assert_eq!(events, expected);
    let operations = history::operations(events).unwrap();
    assert_eq!(operations.len(), 3);
    assert_eq!(operations.iter().filter(|operation| operation.output().is_none()).count(), 1);
    assert_eq!(check(&Kv, &operations, &Options::default()), Verdict::Linearizable);
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn broken_logs_are_refused_with_the_line() {
    let log = "{\"invoke\":{\"client\":1,\"op\":1,\"at_ns\":5,\"input\":{\"Get\":\"k\"}}}\n\nnot json\n";
    let error = history::read_events::<KvInput, KvOutput>(log.as_bytes()).unwrap_err();
    assert!(error.to_string().starts_with("history line 3:"), "{error}");
    let early: Vec<Event<KvInput, KvOutput>> = vec![
        Event::Invoke { client: 1, op: 1, at_ns: 5, input: KvInput::Get(Bytes::from("k")) },
        Event::Ok { client: 1, op: 1, at_ns: 4, output: KvOutput::Value(None) },
    ];
    let error = history::operations(early).unwrap_err();
    assert_eq!(error.to_string(), "operation 1 of client 1 ends before it was invoked");
}

#[test]
fn the_command_line_checks_saved_files() {
    let directory = std::env::temp_dir().join(format!("usec-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let recorder = KvRecorder::new();
    let write = recorder.invoke(1, KvInput::Set(Bytes::from("k"), Bytes::from("a")));
    recorder.ok(write, KvOutput::Ok);
    let good = directory.join("good.jsonl");
    recorder.save(&good).unwrap();
    let read = recorder.invoke(2, KvInput::Get(Bytes::from("k")));
    recorder.ok(read, KvOutput::Value(None)); // after the write finished: stale
    let bad = directory.join("bad.jsonl");
    recorder.save(&bad).unwrap();
    let run = |path: &std::path::Path| {
        let output =
            std::process::Command::new(env!("CARGO_BIN_EXE_check-history")).arg(path).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
    };
    let (code, text) = run(&good);
    assert_eq!((code, text.lines().last()), (Some(0), Some("linearizable")), "{text}");
    let (code, text) = run(&bad);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("not linearizable: key \"k\""), "{text}");
    let (code, _) = run(&directory.join("missing.jsonl"));
    assert_eq!(code, Some(3));
    std::fs::remove_dir_all(&directory).unwrap();
}
