//! `ctbcast-latency`: how long Consistent Tail Broadcast takes from `broadcast` to
//! delivery over RDMA rings and memory-node registers (`usec_replication::bft::node`), on
//! the soft provider — the fast path, the slow path with its split, and Mu's replication
//! latency measured the same way in the same run for the ratio.
//!
//! Three participants and three memory nodes in threads of this process, each its own soft
//! device on one fabric, bootstrapped over loopback TCP. Then **one thread turns every
//! participant** (the memory nodes' threads only serve the control plane, once a
//! millisecond, asleep otherwise), so a latency here includes the turns of the other
//! participants in between, as if each had a core of its own that it only got in turn:
//!
//! - **fast path**: participant 0 broadcasts; participants 1 and 2 are turned in
//!   alternation until both delivered (each must see the other's echo). Participant 0 is
//!   turned after that, outside the measurement: its turn signs the message ahead of need
//!   (Ed25519), which on its own core would overlap the receivers' work. Reported: to the
//!   first delivery, and to both.
//! - **slow path**: a second group whose fast-path timeout is 2 µs and whose participant 2
//!   is never turned (silent); participants 0 and 1 are turned in alternation until 1
//!   delivers. That is the broadcaster's signature (signed ahead, sent on the signature
//!   ring), its verification, the register write to a majority of memory nodes and the
//!   read of the silent participant's register from a majority. The split: register write
//!   and read times as the participant saw them (start to majority, in its own loop), and
//!   Ed25519 sign and verify timed alone on this machine.
//! - **Mu**: three Mu replicas turned by the same thread; propose at the leader → commit
//!   event. The fast path of each: one round of RDMA WRITEs (Mu: leader to followers, no
//!   follower CPU; CTBcast: broadcaster to receivers, then receivers' echoes to each other).
//!
//! Figures from the soft provider say nothing about a NIC; compare ratios.
#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use ed25519_dalek::SigningKey;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::mu::machine::Counter;
use usec_benches::pinning::usable_cores;
use usec_benches::run_info::{load_average, RunInfo};
use usec_lease_clock::clock::{Clock, MonotonicClock};
use usec_lease_clock::detector::ScoreConfig;
use usec_lease_clock::heartbeat::ReaderConfig;
use usec_qp_pool::{Cluster, ClusterSpec, NodeConfig, NodeId, TcpNetwork};
use usec_replication::bft::ctbcast::signature::{message_hash, sign};
use usec_replication::bft::ctbcast::{CtbConfig, DeliveryPath, Event, Keyring};
use usec_replication::bft::memory_node::{self, MemoryNode};
use usec_replication::bft::node::registers::TimingClock;
use usec_replication::bft::node::{Behaviour, CtbNode, CtbNodeConfig};
use usec_replication::bft::transport::port::role_spec;
use usec_replication::cft::{Event as MuEvent, MuConfig, RoleKind};
use usec_replication::driver::{DetectorConfig, MuDriver};
use usec_replication::log::CommandId;
use usec_verbs::{AccessFlags, Context};

/// CTBcast's fast- and slow-path latency over rings and registers, and Mu's, on soft.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Broadcasts (and Mu proposals) measured on the fast path.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Broadcasts measured on the slow path.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    slow_iterations: u64,
    /// Done first in each, not measured.
    #[arg(long, default_value_t = 200)]
    warmup: u64,
    /// Message bytes.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages each stream keeps.
    #[arg(long, default_value_t = 128)]
    tail: u64,
    /// Skip Mu.
    #[arg(long)]
    no_mu: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    run: RunInfo,
    provider: String,
    threads: String,
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
    message_bytes: usize,
    ring_bytes_per_participant: usize,
    fast_first_delivery: LatencySummary,
    fast_all_delivered: LatencySummary,
    slow_delivery: LatencySummary,
    slow_register_write: LatencySummary,
    slow_register_read: LatencySummary,
    ed25519_sign: LatencySummary,
    ed25519_verify: LatencySummary,
    mu_propose_to_commit: Option<LatencySummary>,
}

const PARTICIPANTS: u16 = 3;
const STEP_LIMIT_NS: u64 = 10_000_000_000;

fn node(id: u16) -> NodeId {
    NodeId::new(id).expect("small")
}

fn key(id: u16) -> SigningKey {
    SigningKey::from_bytes(&[id as u8 + 11; 32])
}

/// Participants and the threads of the memory nodes (stopped by `stop`).
struct Group {
    participants: Vec<CtbNode>,
    memory_threads: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.memory_threads.drain(..) {
            let _ = thread.join();
        }
    }
}

enum Started {
    Participant(Box<CtbNode>),
    Memory(std::thread::JoinHandle<()>),
}

fn start_group(name: &str, config: &CtbNodeConfig) -> Result<Group> {
    let device = format!("soft:{name}-{}", std::process::id());
    let n = 2 * PARTICIPANTS;
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let addrs = listeners.iter().map(TcpListener::local_addr).collect::<Result<Vec<_>, _>>()?;
    let spec =
        ClusterSpec::new(name, &ClusterSpec::fresh_run(), (0..n).map(|id| (node(id), addrs[id as usize])))?;
    let keys = Keyring::new((0..PARTICIPANTS).map(|id| (node(id), key(id).verifying_key())));
    let stop = Arc::new(AtomicBool::new(false));
    let started = std::thread::scope(|scope| -> Result<Vec<Started>> {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(id, listener)| {
                let (spec, device, keys, stop) =
                    (spec.clone(), device.clone(), keys.clone(), Arc::clone(&stop));
                let id = id as u16;
                scope.spawn(move || -> Result<Started> {
                    let node_config = NodeConfig::new(spec, node(id)).deadline(Duration::from_secs(60));
                    let context = Context::open(&device)?;
                    let network = Box::new(TcpNetwork::from_listener(listener)?);
                    if id < PARTICIPANTS {
                        let (node_config, memory) = CtbNode::configure(node_config, config)?;
                        let cluster = Cluster::bootstrap_with(&context, node_config, network)?;
                        let participant =
                            CtbNode::new(cluster, config, key(id), keys, memory, Behaviour::Correct)?;
                        return Ok(Started::Participant(Box::new(participant)));
                    }
                    let (node_config, memory) =
                        memory_node::configure(node_config, &config.layout(), &config.participants)?;
                    let node_config = node_config.role(role_spec(AccessFlags::empty()));
                    let cluster = Cluster::bootstrap_with(&context, node_config, network)?;
                    let mut memory_node = MemoryNode::new(cluster, memory, config.layout());
                    Ok(Started::Memory(std::thread::spawn(move || {
                        let start = Instant::now();
                        while !stop.load(Ordering::Acquire) {
                            memory_node.serve(start.elapsed().as_nanos() as u64);
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    })))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().map_err(|_| anyhow!("a node thread panicked"))?)
            .collect()
    })?;
    let mut group = Group { participants: Vec::new(), memory_threads: Vec::new(), stop };
    for started in started {
        match started {
            Started::Participant(participant) => group.participants.push(*participant),
            Started::Memory(thread) => group.memory_threads.push(thread),
        }
    }
    Ok(group)
}

fn config(tail: u64, size: usize, fast_path_timeout_ns: u64) -> CtbNodeConfig {
    let ctb =
        CtbConfig { tail, max_message_bytes: size.max(64), fast_path_timeout_ns, ..CtbConfig::default() };
    CtbNodeConfig::new(
        (0..PARTICIPANTS).map(node).collect(),
        (PARTICIPANTS..2 * PARTICIPANTS).map(node).collect(),
        ctb,
    )
}

/// Whether `events` delivered `index` of participant 0's stream; its path if so.
fn delivered(participant: &mut CtbNode, index: u64) -> Option<DeliveryPath> {
    let mut found = None;
    while let Some((broadcaster, event)) = participant.poll_event() {
        match event {
            Event::Delivered { index: done, path, .. } if broadcaster == node(0) && done == index => {
                found = Some(path)
            }
            Event::Delivered { .. } => {}
            other => panic!("participant {}: {other:?}", participant.id()),
        }
    }
    found
}

fn fast_path(options: &Options, clock: &MonotonicClock) -> Result<(Recorder, Recorder, usize)> {
    let mut group = start_group("ctbcast-fast", &config(options.tail, options.size, 1_000_000_000))?;
    let ring_bytes = group.participants[0].ring_memory_bytes();
    let message = vec![0x42u8; options.size];
    let (mut first, mut all) = (Recorder::new(), Recorder::new());
    for iteration in 0..options.warmup + options.iterations {
        let started = clock.now_ns();
        let index = group.participants[0].broadcast(&message).map_err(|reject| anyhow!("{reject}"))?;
        let mut done = [None, None];
        let mut first_at = None;
        while done.iter().any(Option::is_none) {
            for n in 1..3 {
                let now = clock.now_ns();
                group.participants[n].turn(now);
                if done[n - 1].is_none() {
                    done[n - 1] = delivered(&mut group.participants[n], index);
                    if done[n - 1].is_some() && first_at.is_none() {
                        first_at = Some(clock.now_ns());
                    }
                }
            }
            if clock.now_ns() - started > STEP_LIMIT_NS {
                bail!("broadcast {index} not delivered in 10 s");
            }
        }
        let ended = clock.now_ns();
        if done.iter().any(|path| *path != Some(DeliveryPath::Fast)) {
            bail!("broadcast {index} left the fast path: {done:?}");
        }
        if iteration >= options.warmup {
            first.record_ns(first_at.expect("delivered") - started);
            all.record_ns(ended - started);
        }
        // The broadcaster's own turn: its sign-ahead, outside the measurement.
        group.participants[0].turn(clock.now_ns());
    }
    Ok((first, all, ring_bytes))
}

fn slow_path(options: &Options, clock: &MonotonicClock) -> Result<(Recorder, Recorder, Recorder)> {
    let mut group = start_group("ctbcast-slow", &config(options.tail, options.size, 2_000))?;
    let timing = MonotonicClock::new();
    group.participants[1].record_register_timings(Some(TimingClock(Box::new(move || timing.now_ns()))));
    let message = vec![0x24u8; options.size];
    let (mut latency, mut writes, mut reads) = (Recorder::new(), Recorder::new(), Recorder::new());
    for iteration in 0..options.warmup.min(50) + options.slow_iterations {
        let started = clock.now_ns();
        let index = group.participants[0].broadcast(&message).map_err(|reject| anyhow!("{reject}"))?;
        let path = loop {
            for n in 0..2 {
                group.participants[n].turn(clock.now_ns());
            }
            if let Some(path) = delivered(&mut group.participants[1], index) {
                break path;
            }
            if clock.now_ns() - started > STEP_LIMIT_NS {
                bail!("broadcast {index} not delivered on the slow path in 10 s");
            }
        };
        let ended = clock.now_ns();
        if path != DeliveryPath::Slow {
            bail!("broadcast {index} took the fast path with a silent participant");
        }
        let timings = group.participants[1].take_register_timings();
        if iteration >= options.warmup.min(50) {
            latency.record_ns(ended - started);
            timings.writes_ns.iter().for_each(|&ns| writes.record_ns(ns));
            timings.reads_ns.iter().for_each(|&ns| reads.record_ns(ns));
        }
        // Drain what is left (signature requests answered, sign-ahead) before the next.
        for _ in 0..4 {
            group.participants[0].turn(clock.now_ns());
            group.participants[1].turn(clock.now_ns());
            delivered(&mut group.participants[1], u64::MAX);
        }
    }
    Ok((latency, writes, reads))
}

fn crypto(iterations: u64) -> (Recorder, Recorder) {
    let signer = key(0);
    let keys = Keyring::new([(node(0), signer.verifying_key())]);
    let hash = message_hash(b"a message of the benchmark");
    let (mut signs, mut verifies) = (Recorder::new(), Recorder::new());
    for index in 0..iterations {
        let started = Instant::now();
        let signature = sign(&signer, node(0), index, &hash);
        signs.record_ns(started.elapsed().as_nanos() as u64);
        let started = Instant::now();
        assert!(keys.verify(node(0), index, &hash, &signature));
        verifies.record_ns(started.elapsed().as_nanos() as u64);
    }
    (signs, verifies)
}

fn mu(options: &Options, clock: &MonotonicClock) -> Result<Recorder> {
    let device = format!("soft:ctbcast-latency-mu-{}", std::process::id());
    let config = MuConfig {
        capacity: 256,
        pipeline: 8,
        slot_bytes: 512,
        snapshot_bytes: 1 << 16,
        ..MuConfig::default()
    };
    // Slow detectors: one thread turns all three replicas.
    let detectors = DetectorConfig {
        reader: ReaderConfig { period_ns: 100_000_000, timeout_ns: 1_000_000_000 },
        score: ScoreConfig { score_max: 10, ..ScoreConfig::default() },
        bump_period_ns: 250_000,
        ..DetectorConfig::default()
    };
    let listeners: Vec<TcpListener> =
        (0..3).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let addrs = listeners.iter().map(TcpListener::local_addr).collect::<Result<Vec<_>, _>>()?;
    let spec = ClusterSpec::new(
        "ctbcast-latency-mu",
        &ClusterSpec::fresh_run(),
        (0..3).map(|id| (node(id), addrs[id as usize])),
    )?;
    let mut drivers = std::thread::scope(|scope| -> Result<Vec<MuDriver<Counter>>> {
        let threads: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(id, listener)| {
                let (spec, device, config) = (spec.clone(), device.clone(), config.clone());
                scope.spawn(move || -> Result<MuDriver<Counter>> {
                    let context = Context::open(&device)?;
                    let node_config =
                        NodeConfig::new(spec, node(id as u16)).deadline(Duration::from_secs(60));
                    let node_config = MuDriver::<Counter>::configure(node_config, &config)?;
                    let cluster = Cluster::bootstrap_with(
                        &context,
                        node_config,
                        Box::new(TcpNetwork::from_listener(listener)?),
                    )?;
                    Ok(MuDriver::new(cluster, config, detectors, Counter::default(), clock.now_ns())?)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().map_err(|_| anyhow!("a Mu thread panicked"))?)
            .collect()
    })?;
    for driver in &mut drivers {
        driver.keep_events(true);
    }
    let started = clock.now_ns();
    while drivers[0].replica().role() != RoleKind::Leader {
        for driver in &mut drivers {
            driver.turn(clock.now_ns());
            driver.take_events();
        }
        if clock.now_ns() - started > STEP_LIMIT_NS {
            bail!("Mu replica 0 did not lead in 10 s");
        }
    }
    let command = vec![1u8; options.size];
    let mut latency = Recorder::new();
    for sequence in 1..=options.warmup + options.iterations {
        let id = CommandId { client: 1, sequence };
        let started = clock.now_ns();
        drivers[0].replica_mut().propose(id, &command).map_err(|error| anyhow!("propose: {error:?}"))?;
        'wait: loop {
            for n in 0..3 {
                drivers[n].turn(clock.now_ns());
                if n == 0
                    && drivers[0]
                        .drain_events()
                        .any(|event| matches!(event, MuEvent::Committed { id: done, .. } if done == id))
                {
                    break 'wait;
                }
            }
            if clock.now_ns() - started > STEP_LIMIT_NS {
                bail!("Mu command {sequence} not committed in 10 s");
            }
        }
        let ended = clock.now_ns();
        if sequence > options.warmup {
            latency.record_ns(ended - started);
        }
        for driver in &mut drivers[1..] {
            driver.take_events();
        }
    }
    Ok(latency)
}

fn main() -> Result<()> {
    let options = Options::parse();
    let mut run = RunInfo::collect(usable_cores().len());
    run.timer = "CLOCK_MONOTONIC (lease-clock's MonotonicClock)".to_string();
    run.warn_if_debug();
    let load_before = load_average();
    let clock = MonotonicClock::new();
    let (first, all, ring_bytes) = fast_path(&options, &clock)?;
    let (slow, writes, reads) = slow_path(&options, &clock)?;
    let (signs, verifies) = crypto(1_000);
    let mu = if options.no_mu { None } else { Some(mu(&options, &clock)?) };
    let report = Report {
        benchmark: "ctbcast-latency",
        run,
        provider: "soft provider (shared memory)".to_string(),
        threads: "one thread turns every participant (and every Mu replica); memory nodes' threads sleep, serving the control plane every millisecond".to_string(),
        load_before,
        load_after: load_average(),
        message_bytes: options.size,
        ring_bytes_per_participant: ring_bytes,
        fast_first_delivery: first.summary(),
        fast_all_delivered: all.summary(),
        slow_delivery: slow.summary(),
        slow_register_write: writes.summary(),
        slow_register_read: reads.summary(),
        ed25519_sign: signs.summary(),
        ed25519_verify: verifies.summary(),
        mu_propose_to_commit: mu.as_ref().map(Recorder::summary),
    };
    let load = |load: Option<[f64; 3]>| {
        load.map_or("unknown".to_string(), |l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2]))
    };
    println!(
        "ctbcast-latency: 3 participants, 3 memory nodes, tail {}, {}-byte messages, {}",
        options.tail, options.size, report.provider
    );
    println!("{}; {}", report.run.provenance(), report.threads);
    println!("load average before: {}; after: {}", load(report.load_before), load(report.load_after));
    println!("ring memory per participant: {} bytes", report.ring_bytes_per_participant);
    println!("fast path, broadcast -> first delivery: {}", report.fast_first_delivery);
    println!("fast path, broadcast -> both delivered: {}", report.fast_all_delivered);
    println!("slow path, broadcast -> delivery:       {}", report.slow_delivery);
    println!("  register write (majority of 3):       {}", report.slow_register_write);
    println!("  register read (majority of 3):        {}", report.slow_register_read);
    println!("  Ed25519 sign (alone):                 {}", report.ed25519_sign);
    println!("  Ed25519 verify (alone):               {}", report.ed25519_verify);
    if let Some(mu) = &report.mu_propose_to_commit {
        println!("Mu, propose -> commit at the leader:    {mu}");
        println!(
            "ratio CTBcast fast path (both delivered) / Mu at p50: {:.2}; slow / fast at p50: {:.1}",
            report.fast_all_delivered.p50_ns as f64 / mu.p50_ns.max(1) as f64,
            report.slow_delivery.p50_ns as f64 / report.fast_all_delivered.p50_ns.max(1) as f64
        );
    }
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
