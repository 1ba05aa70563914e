//! `bft-registers`: how long uBFT's replicated single-writer registers take to write and
//! to read (`usec-replication::bft`), on the soft provider.
//!
//! Three replicas and three memory nodes in threads of this process, each its own soft
//! device on one fabric, bootstrapped into one qp-pool cluster over loopback TCP; memory
//! nodes grant each replica its slice writable and everything read-only, each in a
//! protection domain of the replica's own. Replica 0 measures, one after the other:
//!
//! - (a) baseline: one RDMA READ of a register (224 bytes) from one memory node, the unit
//!   every register operation costs;
//! - (b) write: `RegisterSet::write` → a majority (2 of 3) of memory nodes acknowledged
//!   the WRITE of one sub-slot (108 bytes), hash computed, actions posted, completions
//!   handed back;
//! - (c) read: `RegisterSet::read` of another replica's register → concluded from a
//!   majority of copies, each validated.
//!
//! Registers hold CTBcast's values (96 bytes: a hash and a signature), 3 replicas, a tail
//! of 128. The memory nodes' threads only serve the control plane (every millisecond):
//! their CPUs take no part. Figures from the soft provider say nothing about a NIC.
#![forbid(unsafe_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::pinning::usable_cores;
use usec_benches::run_info::{load_average, RunInfo};
use usec_qp_pool::{BusyPoll, Cluster, ClusterSpec, NodeConfig, NodeId, PollMode, TcpNetwork, WrId, WrKind};
use usec_replication::bft::memory_node::{self, MemoryNode};
use usec_replication::bft::register::port::{ALL_GRANT, ROLE, SCRATCH_REGION};
use usec_replication::bft::register::{ReadResult, RegisterLayout, RegisterPort, RegisterReplica};
use usec_verbs::{Context, RemoteAddr, SendWr, Status};

/// Write and read latency of uBFT's registers on the soft provider.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Operations measured in each of (a), (b), (c).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    operations: u64,
    /// Operations done first in each, not measured.
    #[arg(long, default_value_t = 1_000)]
    warmup: u64,
    /// Messages CTBcast keeps (each replica owns 2 × tail registers).
    #[arg(long, default_value_t = 128)]
    tail: usize,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

const REPLICAS: usize = 3;
const MEMORY_NODES: usize = 3;
const BASELINE_READ: WrKind = WrKind::application(20);

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    run: RunInfo,
    provider: String,
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
    registered_bytes_per_memory_node: usize,
    value_bytes: usize,
    register_bytes: usize,
    read_round_trip: LatencySummary,
    register_write: LatencySummary,
    register_read: LatencySummary,
}

fn node(id: usize) -> NodeId {
    NodeId::new(id as u16).expect("small")
}

fn main() -> Result<()> {
    let options = Options::parse();
    let mut run = RunInfo::collect(usable_cores().len());
    run.timer = "CLOCK_MONOTONIC around each operation".to_string();
    run.warn_if_debug();
    let load_before = load_average();
    let layout = RegisterLayout::for_ctbcast(REPLICAS, options.tail);
    let device = format!("soft:bft-registers-{}", std::process::id());
    let n = REPLICAS + MEMORY_NODES;
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    let addrs = listeners.iter().map(|listener| listener.local_addr()).collect::<Result<Vec<_>, _>>()?;
    let spec =
        ClusterSpec::new("bft-registers", &ClusterSpec::fresh_run(), (0..n).map(|id| (node(id), addrs[id])))?;
    let writers: Vec<NodeId> = (0..REPLICAS).map(node).collect();
    let memory_ids: Vec<NodeId> = (REPLICAS..n).map(node).collect();

    let stop = Arc::new(AtomicBool::new(false));
    let (replicas, memory_threads, registered) = std::thread::scope(|scope| -> Result<_> {
        let mut threads = Vec::new();
        for (id, listener) in listeners.into_iter().enumerate() {
            let (spec, device, writers, stop) =
                (spec.clone(), device.clone(), writers.clone(), Arc::clone(&stop));
            threads.push(scope.spawn(move || -> Result<Started> {
                let config = NodeConfig::new(spec, node(id)).deadline(Duration::from_secs(60));
                let context = Context::open(&device)?;
                let network = Box::new(TcpNetwork::from_listener(listener)?);
                if id < REPLICAS {
                    let config = RegisterPort::configure(config, &layout, 256)?;
                    return Ok(Started::Replica(Box::new(Cluster::bootstrap_with(
                        &context, config, network,
                    )?)));
                }
                let (config, memory) = memory_node::configure(config, &layout, &writers)?;
                let cluster = Cluster::bootstrap_with(&context, config, network)?;
                let memory_node = MemoryNode::new(cluster, memory, layout);
                let registered = memory_node.registered_bytes();
                let thread = std::thread::spawn(move || serve(memory_node, &stop));
                Ok(Started::Memory(thread, registered))
            }));
        }
        let (mut replicas, mut memory_threads, mut registered) = (Vec::new(), Vec::new(), 0);
        for thread in threads {
            match thread.join().map_err(|_| anyhow!("a node thread panicked"))?? {
                Started::Replica(cluster) => replicas.push(*cluster),
                Started::Memory(thread, bytes) => {
                    memory_threads.push(thread);
                    registered = bytes;
                }
            }
        }
        Ok((replicas, memory_threads, registered))
    })?;
    let mut replicas = replicas.into_iter();
    let mut cluster = replicas.next().expect("replica 0");
    let others: Vec<Cluster> = replicas.collect();

    // (a) One RDMA READ of a register from memory node 3.
    let role = cluster.role(ROLE)?;
    let mut poller = cluster.take_poller(&[role])?;
    let all = cluster.remote_region(memory_ids[0], ALL_GRANT)?;
    let target =
        RemoteAddr::within(&all, layout.register_offset(1, 0) as u64, layout.register_bytes() as u64)?;
    let sge = cluster.region(SCRATCH_REGION)?.sge(0, layout.register_bytes() as u32)?;
    let mut baseline = Recorder::new();
    for sequence in 0..options.warmup + options.operations {
        let wr_id = WrId::new(BASELINE_READ, memory_ids[0], sequence)?.to_raw();
        let started = Instant::now();
        cluster.post_send(memory_ids[0], role, &[SendWr::read(wr_id, target, std::slice::from_ref(&sge))])?;
        let status = loop {
            if let Some(polled) = poller.poll().next() {
                break polled.completion.status;
            }
        };
        if status != Status::Success {
            return Err(anyhow!("the baseline READ failed: {status:?}"));
        }
        if sequence >= options.warmup {
            baseline.record_ns(started.elapsed().as_nanos() as u64);
        }
    }

    // (b) and (c) through the register set.
    let mut replica = RegisterReplica::with_poller(cluster, poller, layout, 0, &memory_ids)?;
    let mut driver = BusyPoll::new(PollMode::Spin);
    let value = [0x5au8; 96];
    let (mut writes, mut reads) = (Recorder::new(), Recorder::new());
    let slots = layout.registers_per_writer;
    for index in 0..options.warmup + options.operations {
        let (slot, incarnation) = ((index as usize) % slots, (index as usize / slots) as u64 + 1);
        let deadline = driver.deadline_in(10_000_000_000);
        let started = Instant::now();
        if !replica.write(slot, incarnation, &value, &mut driver, deadline)? {
            return Err(anyhow!("a register write failed"));
        }
        if index >= options.warmup {
            writes.record_ns(started.elapsed().as_nanos() as u64);
        }
    }
    for index in 0..options.warmup + options.operations {
        let slot = (index as usize) % slots;
        let deadline = driver.deadline_in(10_000_000_000);
        let started = Instant::now();
        // Replica 1's registers were never written: a read validates and concludes all the
        // same. Replica 0's own are read too, alternately, to read values.
        let owner = (index % 2) as usize;
        let result = replica.read(owner, slot, &mut driver, deadline)?;
        if index >= options.warmup {
            reads.record_ns(started.elapsed().as_nanos() as u64);
        }
        match (owner, result) {
            (0, ReadResult::Value { .. }) | (1, ReadResult::Absent) => {}
            (_, other) => return Err(anyhow!("register read of writer {owner}, slot {slot}: {other:?}")),
        }
    }
    stop.store(true, Ordering::Release);
    for thread in memory_threads {
        thread.join().map_err(|_| anyhow!("a memory node thread panicked"))?;
    }
    drop(others);

    let report = Report {
        benchmark: "bft-registers",
        run,
        provider: "soft provider (shared memory)".to_string(),
        load_before,
        load_after: load_average(),
        registered_bytes_per_memory_node: registered,
        value_bytes: layout.value_bytes,
        register_bytes: layout.register_bytes(),
        read_round_trip: baseline.summary(),
        register_write: writes.summary(),
        register_read: reads.summary(),
    };
    let load = |load: Option<[f64; 3]>| {
        load.map_or("unknown".to_string(), |l| format!("{:.2} {:.2} {:.2}", l[0], l[1], l[2]))
    };
    println!("bft-registers: 3 replicas, 3 memory nodes, tail {}, {}", options.tail, report.provider);
    println!("{}; threads unpinned", report.run.provenance());
    println!("load average before: {}; after: {}", load(report.load_before), load(report.load_after));
    println!(
        "registered memory per memory node: {} bytes; registers of {} bytes ({}-byte values)",
        report.registered_bytes_per_memory_node, report.register_bytes, report.value_bytes
    );
    println!("(a) RDMA READ of a register, one memory node: {}", report.read_round_trip);
    println!("(b) register write, majority of 3:           {}", report.register_write);
    println!("(c) register read, majority of 3:            {}", report.register_read);
    println!(
        "ratios to (a) at p50: write {:.2}x, read {:.2}x",
        report.register_write.p50_ns as f64 / report.read_round_trip.p50_ns.max(1) as f64,
        report.register_read.p50_ns as f64 / report.read_round_trip.p50_ns.max(1) as f64
    );
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

/// What a node thread hands back: a replica's cluster, or a memory node's serving thread
/// and its registered bytes.
enum Started {
    Replica(Box<Cluster>),
    Memory(std::thread::JoinHandle<()>, usize),
}

/// A memory node's whole life after bootstrap: the control plane, every millisecond.
fn serve(mut memory_node: MemoryNode, stop: &AtomicBool) {
    let start = Instant::now();
    while !stop.load(Ordering::Acquire) {
        memory_node.serve(start.elapsed().as_nanos() as u64);
        std::thread::sleep(Duration::from_millis(1));
    }
}
