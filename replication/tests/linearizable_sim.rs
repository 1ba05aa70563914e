//! Histories of clients of a key-value machine replicated by Mu on three simulated
//! replicas, checked for linearizability with `usec-check` — the check the fault tests of
//! the replicated KV run on real processes, here in virtual time:
//!
//! - through the log, with the leader crashed and a follower paused, the history is
//!   linearizable (operations whose answer never came count as maybe applied);
//! - reads answered from a follower's state instead are caught as stale.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_check::linearizability::{check, Options, Verdict};
use usec_check::models::{Kv, KvInput, KvOutput};
use usec_check::{Bytes, Operation};
use usec_replication::cft::MuConfig;
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::{DetectorConfig, Ticket};
use usec_replication::log::CommandId;
use usec_replication::{RestoreError, StateMachine};

const MS: u64 = 1_000_000;

/// A map of strings: `S<key>=<value>` sets, `G<key>` gets (`+value` or `-` when absent).
#[derive(Debug, Default)]
struct Strings(BTreeMap<Vec<u8>, Vec<u8>>);

impl StateMachine for Strings {
    fn apply(&mut self, command: &[u8], response: &mut Vec<u8>) {
        match command.split_first() {
            Some((b'S', rest)) => {
                let split = rest.iter().position(|&byte| byte == b'=').expect("S<key>=<value>");
                self.0.insert(rest[..split].to_vec(), rest[split + 1..].to_vec());
                response.extend_from_slice(b"OK");
            }
            Some((b'G', key)) => match self.0.get(key) {
                Some(value) => {
                    response.push(b'+');
                    response.extend_from_slice(value);
                }
                None => response.push(b'-'),
            },
            _ => panic!("not a command: {command:?}"),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for (key, value) in &self.0 {
            bytes.extend_from_slice(key);
            bytes.push(b'=');
            bytes.extend_from_slice(value);
            bytes.push(b'\n');
        }
        bytes
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), RestoreError> {
        let mut map = BTreeMap::new();
        for line in snapshot.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()) {
            let split = line.iter().position(|&byte| byte == b'=').ok_or(RestoreError("no '='".into()))?;
            map.insert(line[..split].to_vec(), line[split + 1..].to_vec());
        }
        self.0 = map;
        Ok(())
    }
}

fn encode(input: &KvInput) -> Vec<u8> {
    match input {
        KvInput::Set(key, value) => [b"S", key.as_slice(), b"=", value.as_slice()].concat(),
        KvInput::Get(key) => [b"G", key.as_slice()].concat(),
        other => unreachable!("these clients only get and set: {other:?}"),
    }
}

fn decode(input: &KvInput, response: &[u8]) -> KvOutput {
    match (input, response.split_first()) {
        (KvInput::Set(..), _) => KvOutput::Ok,
        (_, Some((b'+', value))) => KvOutput::Value(Some(Bytes::from(value))),
        _ => KvOutput::Value(None),
    }
}

/// A client: one operation at a time, retried as the same id until answered.
struct Client {
    id: u64,
    sequence: u64,
    /// The operation out: its input, when it was invoked, the ticket if one is out.
    out: Option<(KvInput, u64, Option<Ticket>)>,
    retry_at_ns: u64,
}

/// Where reads are answered.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// Through the log, like writes.
    Log,
    /// From a follower's state, at once (wrong: it may lag).
    Follower,
}

fn run(seed: u64, reads: Reads, faults: bool) -> Vec<Operation<KvInput, KvOutput>> {
    println!("seed {seed} (replay with USEC_SEED={seed})");
    let config = MuConfig {
        capacity: 32,
        pipeline: 8,
        slot_bytes: 256,
        snapshot_bytes: 1 << 16,
        ..MuConfig::default()
    };
    let mode = if reads == Reads::Log { "log" } else { "follower" };
    let name = format!("linearizable-{mode}-{seed}-{}", std::process::id());
    let mut group =
        SimGroup::new(&name, seed, 3, &config, DetectorConfig::default(), &[], Strings::default).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut clients: Vec<Client> =
        (1..=4).map(|id| Client { id, sequence: 0, out: None, retry_at_ns: 0 }).collect();
    let mut history = Vec::new();
    let mut unique = 0;
    let (mut crashed, mut paused) = (false, false);
    let end = group.fabric.now_ns() + 30 * MS;
    while group.fabric.now_ns() < end {
        let now = group.fabric.now_ns();
        if faults && !crashed && now > end - 20 * MS {
            if let Some(&leader) = group.leaders().first() {
                group.crash(leader); // with operations in flight
                crashed = true;
            }
        }
        if faults && !paused && now > end - 10 * MS {
            if let Some(follower) =
                (0..3).find(|&index| group.driver(index).is_some() && group.leaders() != [index])
            {
                group.pause(follower);
                group.run_for(MS / 4);
                group.resume(follower);
            }
            paused = true;
        }
        let running: Vec<usize> =
            group.leaders().into_iter().filter(|&index| !group.members[index].paused).collect();
        for client in &mut clients {
            if client.out.is_none() {
                client.sequence += 1;
                let key = Bytes::from(format!("k{}", rng.gen_range(0..3)).as_str());
                let input = if rng.gen_bool(0.5) {
                    KvInput::Get(key)
                } else {
                    unique += 1;
                    KvInput::Set(key, Bytes::from(format!("v{unique}").as_str()))
                };
                if let (Reads::Follower, KvInput::Get(key)) = (reads, &input) {
                    let follower =
                        (0..3).find(|&index| group.driver(index).is_some() && !running.contains(&index));
                    if let Some(follower) = follower {
                        let machine = group.driver(follower).unwrap().replica().state_machine();
                        let value = machine.0.get(key.as_slice()).map(|value| Bytes::from(value.as_slice()));
                        history.push(Operation::returned(client.id, input, now, now, KvOutput::Value(value)));
                        continue;
                    }
                }
                client.out = Some((input, now, None));
            }
            let (input, invoked_ns, ticket) = client.out.as_mut().unwrap();
            match ticket.as_ref().and_then(Ticket::try_take) {
                Some(Ok(response)) => {
                    let output = decode(input, &response);
                    history.push(Operation::returned(client.id, input.clone(), *invoked_ns, now, output));
                    client.out = None;
                    continue;
                }
                Some(Err(_)) => *ticket = None,
                None => {}
            }
            if let (Some(&via), true) = (running.first(), ticket.is_none() || now >= client.retry_at_ns) {
                let id = CommandId { client: client.id, sequence: client.sequence };
                *ticket = group.driver(via).unwrap().client(client.id).submit_as(id, &encode(input)).ok();
                client.retry_at_ns = now + 2 * MS;
            }
        }
        group.step();
    }
    // What is still out may or may not have happened.
    for client in clients {
        if let Some((input, invoked_ns, _)) = client.out {
            history.push(Operation::unknown(client.id, input, invoked_ns));
        }
    }
    history.sort_by_key(|operation| operation.invoke_ns);
    history
}

fn seed(default: u64) -> u64 {
    std::env::var("USEC_SEED").map_or(default, |seed| seed.parse().expect("USEC_SEED is a number"))
}

#[test]
fn reads_and_writes_through_the_log_are_linearizable_through_faults() {
    for seed in seed(1)..seed(1) + 3 {
        let history = run(seed, Reads::Log, true);
        let answered = history.iter().filter(|operation| operation.output().is_some()).count();
        println!("{} operations, {answered} answered", history.len());
        assert!(answered > 1_000, "the clients got work done");
        let verdict = check(&Kv, &history, &Options::default());
        assert_eq!(verdict, Verdict::Linearizable, "seed {seed}: {verdict}");
    }
}

#[test]
fn reads_from_a_lagging_follower_are_caught() {
    let seed = seed(1);
    let history = run(seed, Reads::Follower, false);
    let verdict = check(&Kv, &history, &Options::default());
    let Verdict::NotLinearizable(counterexample) = verdict else {
        panic!("seed {seed}: stale reads not caught: {verdict}")
    };
    println!("{counterexample}");
}
