//! The BFT KV with real processes on the soft provider: three `usec-bft-kv` replicas,
//! three `usec-bft-memory` memory nodes and a `usec-bft-gateway`, driven with RESP as
//! redis-cli would. Client threads run SET / GET / INCR through the gateway while a memory
//! node is SIGKILLed and then the leader; while one replica lies (`--byzantine`); while a
//! follower is SIGSTOPped past its tail and resumed (it must rejoin); or with five
//! replicas, one lying and one SIGKILLed (f = 2). Every history is checked linearizable
//! with `usec_check`'s checker.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use usec_check::linearizability::{check, Options, Verdict};
use usec_check::models::{Kv, KvInput, KvOutput};
use usec_check::Bytes;
use usec_check::Recorder;

use common::{settled_states, stats, Group, Resp, STEP_LIMIT};

/// How long a client waits for one reply before it counts the operation as unknown.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

fn output(bytes: &[u8]) -> KvOutput {
    let text = String::from_utf8_lossy(bytes).into_owned();
    match bytes[0] {
        b'+' if text == "+OK\r\n" => KvOutput::Ok,
        b':' => KvOutput::Integer(text[1..text.len() - 2].parse().unwrap()),
        b'$' if text == "$-1\r\n" => KvOutput::Value(None),
        b'$' => {
            let header = text.find("\r\n").unwrap();
            KvOutput::Value(Some(Bytes::from(&bytes[header + 2..bytes.len() - 2])))
        }
        _ => panic!("unexpected reply {text:?}"),
    }
}

fn args(input: &KvInput) -> Vec<Vec<u8>> {
    match input {
        KvInput::Get(key) => vec![b"GET".to_vec(), key.0.clone()],
        KvInput::Set(key, value) => vec![b"SET".to_vec(), key.0.clone(), value.0.clone()],
        KvInput::IncrBy(key, 1) => vec![b"INCR".to_vec(), key.0.clone()],
        other => unreachable!("not generated: {other:?}"),
    }
}

/// A seeded generator (xorshift64*): the workload is reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Client `client`'s operations until `stop`: registers `k0`, `k1` set and read, counters
/// `c0`, `c1` incremented and read.
fn client_loop(
    client: u64,
    seed: u64,
    addr: SocketAddr,
    recorder: &Recorder<KvInput, KvOutput>,
    answered: &AtomicU64,
    stop: &AtomicBool,
) {
    let mut rng = Rng(seed.wrapping_add(client).max(1));
    let mut resp = Resp::open(addr);
    let mut written = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = |kind: &str, rng: &mut Rng| Bytes::from(format!("{kind}{}", rng.below(2)).as_bytes());
        let input = match rng.below(4) {
            0 => KvInput::Get(key("k", &mut rng)),
            1 => {
                written += 1;
                KvInput::Set(key("k", &mut rng), Bytes::from(format!("{client}-{written}").as_bytes()))
            }
            2 => KvInput::Get(key("c", &mut rng)),
            _ => KvInput::IncrBy(key("c", &mut rng), 1),
        };
        let request = args(&input);
        let invocation = recorder.invoke(client, input);
        let parts: Vec<&[u8]> = request.iter().map(Vec::as_slice).collect();
        match resp.request(&parts, REPLY_TIMEOUT) {
            Some(reply) => {
                recorder.ok(invocation, output(&reply));
                answered.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                // Perhaps applied: left without a return, and a fresh connection.
                drop(invocation);
                resp = Resp::open(addr);
            }
        }
    }
}

/// Runs `clients` client threads through the gateway; `faults` runs alongside with the
/// count of answered operations to wait on; then the history is checked.
fn workload(group: &mut Group, clients: u64, faults: impl FnOnce(&mut Group, &dyn Fn(u64))) {
    let seed = std::env::var("USEC_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_b0f7);
    println!("seed {seed} (USEC_SEED to repeat)");
    let recorder = Recorder::new();
    let answered = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let addr = group.gateway_addr;
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..clients)
            .map(|client| {
                let (recorder, answered, stop) = (&recorder, &answered, &stop);
                scope.spawn(move || client_loop(client, seed, addr, recorder, answered, stop))
            })
            .collect();
        let wait_for = |count: u64| {
            let deadline = Instant::now() + STEP_LIMIT;
            while answered.load(Ordering::Relaxed) < count {
                assert!(
                    Instant::now() < deadline,
                    "only {} operations answered of {count}",
                    answered.load(Ordering::Relaxed)
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        faults(group, &wait_for);
        stop.store(true, Ordering::Relaxed);
        for thread in threads {
            thread.join().unwrap();
        }
    });
    let history = recorder.operations();
    let unknown = history.iter().filter(|operation| operation.output().is_none()).count();
    println!("{} operations, {unknown} unanswered", history.len());
    let options = Options { max_steps_per_key: 1_000_000, ..Options::default() };
    match check(&Kv, &history, &options) {
        Verdict::Linearizable => {}
        other => panic!("the history is not known linearizable: {other}"),
    }
}

fn basic_commands(group: &Group) {
    let mut resp = Resp::open(group.gateway_addr);
    let mut run = |args: &[&[u8]]| resp.request(args, STEP_LIMIT).expect("a reply");
    assert_eq!(run(&[b"SET", b"greeting", b"hello"]), b"+OK\r\n");
    assert_eq!(run(&[b"GET", b"greeting"]), b"$5\r\nhello\r\n");
    assert_eq!(run(&[b"INCR", b"n"]), b":1\r\n");
    assert_eq!(run(&[b"INCR", b"n"]), b":2\r\n");
    assert_eq!(run(&[b"GET", b"missing"]), b"$-1\r\n");
    // A reply longer than the longest command: the gateway must still take it.
    let value = [b'v'; 400];
    for key in [&b"v0"[..], b"v1", b"v2"] {
        assert_eq!(run(&[b"SET", key, &value]), b"+OK\r\n");
    }
    let reply = run(&[b"MGET", b"v0", b"v1", b"v2"]);
    let bulk = [&b"$400\r\n"[..], &value, b"\r\n"].concat();
    assert_eq!(reply, [&b"*3\r\n"[..], &bulk, &bulk, &bulk].concat());
}

#[test]
fn the_kv_survives_a_memory_node_and_then_the_leader_killed() {
    let mut group = Group::start("kill", "kv", None);
    basic_commands(&group);
    let before = stats(&mut group.replicas[1]);
    assert!(before["fast"] > 0, "all correct and up: the fast path ({before:?})");
    workload(&mut group, 3, |group, wait_for| {
        wait_for(30);
        group.memory[0].kill();
        println!("memory node 3 killed");
        wait_for(60);
        // Replica 0 leads view 0.
        group.replicas[0].kill();
        println!("replica 0 (the leader) killed");
        let view = group.replicas[1].expect("view ");
        println!("replica 1: {view}");
        wait_for(120);
    });
    let mut resp = Resp::open(group.gateway_addr);
    assert_eq!(resp.request(&[b"GET", b"greeting"], STEP_LIMIT).unwrap(), b"$5\r\nhello\r\n");
    let (one, two) = (stats(&mut group.replicas[1]), stats(&mut group.replicas[2]));
    assert!(one["view"] >= 1 && two["view"] >= 1, "{one:?} {two:?}");
    let [one, two] = &mut group.replicas[1..] else { unreachable!() };
    let states = settled_states(&mut [one, two]);
    assert_eq!(states[0], states[1], "the surviving replicas hold the same store");
}

#[test]
fn a_follower_paused_past_the_tail_rejoins_and_the_fast_path_returns() {
    use nix::sys::signal::Signal;
    let mut group = Group::start("pause", "kv", None);
    basic_commands(&group);
    workload(&mut group, 3, |group, wait_for| {
        wait_for(20);
        // Replica 1 follows in view 0. Stopped while the others decide on the slow path:
        // its rings (a tail of 32 each) are overwritten many times over.
        group.replicas[1].signal(Signal::SIGSTOP);
        println!("replica 1 stopped");
        wait_for(120);
        group.replicas[1].signal(Signal::SIGCONT);
        println!("replica 1 resumed");
        wait_for(200);
    });
    let paused = stats(&mut group.replicas[1]);
    assert!(paused["stream_gaps"] >= 1, "the pause lost part of the streams: {paused:?}");
    assert!(paused["resynced_streams"] >= 1, "and a recap restarted them: {paused:?}");
    assert_eq!(paused["broken_streams"], 0, "{paused:?}");
    // Back in: a request now gets every replica's promise (the fast path) again. The
    // others wait a few view-change timeouts on the slow path before letting it in.
    let deadline = Instant::now() + STEP_LIMIT;
    let mut resp = Resp::open(group.gateway_addr);
    loop {
        let before: Vec<u64> = group.replicas.iter_mut().map(|r| stats(r)["fast"]).collect();
        let reply = resp.request(&[b"INCR", b"after"], STEP_LIMIT).expect("a reply");
        assert!(reply.starts_with(b":"), "{:?}", String::from_utf8_lossy(&reply));
        let after: Vec<u64> = group.replicas.iter_mut().map(|r| stats(r)["fast"]).collect();
        if before.iter().zip(&after).all(|(b, a)| a > b) {
            break;
        }
        assert!(Instant::now() < deadline, "the fast path did not come back: {before:?} {after:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let [zero, one, two] = &mut group.replicas[..] else { unreachable!() };
    let states = settled_states(&mut [zero, one, two]);
    assert!(states.iter().all(|s| *s == states[0]), "the paused replica holds the same store: {states:?}");
}

#[test]
fn five_replicas_tolerate_a_liar_and_a_killed_leader_at_once() {
    // n = 5, f = 2: replica 4 lies from the start; replica 0, the leader of view 0, is
    // SIGKILLed mid-run and replaced by a view change.
    let mut group = Group::start_n("five", "kv", 5, Some((4, "lie")));
    basic_commands(&group);
    workload(&mut group, 3, |group, wait_for| {
        wait_for(30);
        group.replicas[0].kill();
        println!("replica 0 (the leader) killed");
        wait_for(90);
    });
    // The liar's promises never match: every slot needs the slow path's certificates
    // (f + 1 = 3 shares), and after the kill a new view.
    let [_, one, two, three, _] = &mut group.replicas[..] else { unreachable!() };
    let stats_one = stats(one);
    assert!(stats_one["slow"] > 0 && stats_one["view"] >= 1, "{stats_one:?}");
    let states = settled_states(&mut [one, two, three]);
    assert!(states.iter().all(|s| *s == states[0]), "the correct replicas hold the same store: {states:?}");
}

#[test]
fn a_lying_replica_changes_nothing_clients_see() {
    let mut group = Group::start("lie", "kv", Some((2, "lie")));
    basic_commands(&group);
    workload(&mut group, 3, |_, wait_for| wait_for(60));
    // Replica 2's promises never match: no slot gets every promise, each is decided on
    // the slow path, by certificates.
    for n in 0..2 {
        let stats = stats(&mut group.replicas[n]);
        assert_eq!(stats["fast"], 0, "replica {n}: {stats:?}");
        assert!(stats["slow"] > 0, "replica {n}: {stats:?}");
    }
    let [zero, one, _] = &mut group.replicas[..] else { unreachable!() };
    let states = settled_states(&mut [zero, one]);
    assert_eq!(states[0], states[1], "the correct replicas hold the same store");
}

#[test]
fn a_leader_that_drops_requests_is_replaced_by_timeout() {
    let mut group = Group::start("drop", "kv", Some((0, "drop")));
    basic_commands(&group);
    let view = group.replicas[1].expect("view ");
    println!("replica 1: {view}");
    workload(&mut group, 3, |_, wait_for| wait_for(60));
    let stats = stats(&mut group.replicas[1]);
    assert!(stats["view"] >= 1, "{stats:?}");
}
