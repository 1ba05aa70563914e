//! `kv-read-latency`: what a GET costs on the KV's leader when it is served locally under
//! the Active(view) lease (uKharon: no replication for reads) next to the same GET sent
//! through the Mu log — the same group, the same key, in the same run, blocks of the two
//! alternating so that drifts of the machine weigh on both.
//!
//! Both go through `usec-kv`'s own front-end path, [`MuBackend`], minus the RESP socket:
//! the local GET is [`Backend::linearizable_read`] of a backend made
//! [`with_local_reads`](MuBackend::with_local_reads) (load the lease bound, lock and read
//! the store, read the clock); the logged GET is [`Backend::submit`] of a backend without
//! local reads, then driver turns until [`Backend::poll`] hands the reply back (queued,
//! batched into an entry, WRITTEN to both followers, committed, applied, answered). The
//! group follows membership views on both sides: only the read path differs.
//!
//! This process is replica 0 and leads (the first view's lowest id); it measures in its
//! own loop, pinned to the leader core, and turns the driver between samples (untimed) as
//! the replica's own thread would — which is what renews the lease. A local read the lease
//! does not allow at that instant is not a sample: it is counted (`local_refused`) and
//! tried again after more turns. The followers are two replica processes sharing the
//! other core, yielding it when idle (as in `mu-latency`).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use clap::Parser;
use serde::Serialize;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::mu::clock::SharedClock;
use usec_benches::mu::launch::{await_leadership, Group, GroupPlan, ProcessPlan};
use usec_benches::mu::machine::{Machine, MachineKind};
use usec_benches::mu::replica::{self, Pacing};
use usec_benches::mu::settings::GroupSettings;
use usec_benches::pinning::{choose_cores, pin_current_thread, usable_cores, CorePair, Pinning};
use usec_benches::report::provider_label;
use usec_benches::run_info::{load_average, RunInfo};
use usec_lease_clock::clock::Clock;
use usec_replication::apps::kv::KvApp;
use usec_replication::apps::resp::{Limits, Parsed, RequestParser};
use usec_replication::apps::server::{App, Backend, MuBackend, Prepared, Submitted, Tag};
use usec_replication::driver::MuDriver;

/// GET latency on the leader: served locally under the lease, and through the log.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Samples per scenario.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Samples run first in each scenario and discarded.
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
    /// Blocks each scenario's samples are split into; the scenarios alternate.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    blocks: u64,
    /// Bytes of the value read.
    #[arg(long, default_value_t = 64)]
    value_bytes: usize,
    /// The Active(view) lease Δ, in microseconds (renewed with half of it left). Longer
    /// than uKharon's 20–25 µs by default: on a shared machine the followers' core is
    /// taken from them for longer than that, and a lease that lapses only makes local reads
    /// wait for renewals (counted, not timed).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    lease_us: u64,
    /// Core of the leader (this process), then the core the two followers share.
    #[arg(long, default_value_t = CorePair::default())]
    cores: CorePair,
    /// Heartbeat READ period of the failure detectors (patient, as in `mu-latency`).
    #[arg(long, default_value_t = 100_000)]
    heartbeat_period_ns: u64,
    /// Idle turns of a follower before it yields its core.
    #[arg(long, default_value_t = 16)]
    follower_spins: u32,
    /// Also write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Report {
    benchmark: &'static str,
    run: RunInfo,
    provider: String,
    leader: Pinning,
    followers: Vec<(u16, Pinning, String)>,
    group_description: String,
    lease_ns: u64,
    value_bytes: usize,
    iterations: u64,
    warmup: u64,
    blocks: u64,
    /// GETs answered from the leader's state under its lease.
    local: LatencySummary,
    /// GETs through the log.
    log: LatencySummary,
    /// Log median over local median.
    ratio: f64,
    /// Local reads the lease did not allow when asked (tried again, not timed).
    local_refused: u64,
    load_before: Option<[f64; 3]>,
    load_after: Option<[f64; 3]>,
}

/// A sample gives up after this long.
const SAMPLE_LIMIT_NS: u64 = 1_000_000_000;

/// The only connection of the logged backend.
const TAG: Tag = Tag { connection: 1, slot: 0 };

fn main() -> Result<()> {
    if let Some(role) = usec_benches::peer::role() {
        return match role.as_str() {
            replica::PEER_ROLE => replica::serve(),
            other => bail!("unknown peer role {other:?}"),
        };
    }
    let options = Options::parse();
    let usable = usable_cores();
    let cores = choose_cores(options.cores, &usable)?;
    let mut run = RunInfo::collect(usable.len());
    run.timer = "CLOCK_MONOTONIC (vDSO clock_gettime) around the local read / from before the submission \
                 to after the turn whose poll handed the reply back"
        .into();
    let leader = pin_current_thread(cores.map(|pair| pair.initiator));
    let load_before = load_average();
    let clock = SharedClock;

    let device = usec_benches::default_soft_device(None);
    let settings = GroupSettings {
        heartbeat_period_ns: options.heartbeat_period_ns,
        machine: MachineKind::Kv,
        views_lease_ns: Some(options.lease_us * 1_000),
        ..GroupSettings::default()
    };
    let follower = |me| ProcessPlan {
        me,
        core: cores.map(|pair| pair.peer),
        pacing: Pacing::Cooperative { spins: options.follower_spins },
        load: false,
    };
    let plan = GroupPlan {
        device: device.clone(),
        settings,
        command_bytes: 64,
        processes: vec![follower(1), follower(2)],
        local: Some(0),
    };
    eprintln!("starting a group of 3 on {device}, on membership views ...");
    let mut group = Group::launch(&plan)?;
    let mut driver = group.local.take().expect("this process is replica 0");
    let provider = provider_label(driver.cluster().context());
    await_leadership(&mut driver, &clock)?;

    // The two front ends of usec-kv's leader, on the replica's store.
    let Machine::Kv(store) = driver.replica().state_machine() else { bail!("the group replicates the KV") };
    let store = store.clone();
    let max_command_bytes = settings.mu().max_command_bytes();
    let addresses = vec![None; 3];
    let mut local = MuBackend::new(
        driver.client(1),
        driver.status(),
        store.clone(),
        addresses.clone(),
        max_command_bytes,
    )
    .with_local_reads(clock);
    let mut logged = MuBackend::new(driver.client(2), driver.status(), store, addresses, max_command_bytes);

    let value = "v".repeat(options.value_bytes);
    let set = encode(&["SET", "k", &value])?;
    let get = encode(&["GET", "k"])?;
    let expected = format!("${}\r\n{value}\r\n", value.len()).into_bytes();
    let mut reply = Vec::with_capacity(expected.len() + 64);
    through_log(&mut driver, &mut logged, &set, false, &mut reply)?;
    if reply != b"+OK\r\n" {
        bail!("SET answered {:?}", String::from_utf8_lossy(&reply));
    }

    let (mut local_samples, mut log_samples) = (Recorder::new(), Recorder::new());
    let mut local_refused = 0;
    for round in 0..=options.blocks {
        // Round 0 is the warm-up of both.
        let (count, keep) = match round {
            0 => (options.warmup, false),
            _ => (
                options.iterations / options.blocks + u64::from(round <= options.iterations % options.blocks),
                true,
            ),
        };
        for _ in 0..count {
            let took = served_locally(&mut driver, &mut local, &get, &mut reply, &mut local_refused)?;
            check(&reply, &expected, "the local GET")?;
            if keep {
                local_samples.record_ns(took);
            }
        }
        for _ in 0..count {
            let took = through_log(&mut driver, &mut logged, &get, true, &mut reply)?;
            check(&reply, &expected, "the logged GET")?;
            if keep {
                log_samples.record_ns(took);
            }
        }
    }
    let counts = (local.read_counts(), logged.read_counts());
    if counts.1.local != 0 || counts.0.local != options.warmup + options.iterations {
        bail!("reads went the wrong way: local backend {:?}, logged backend {:?}", counts.0, counts.1);
    }

    let followers: Vec<(u16, Pinning, String)> = group
        .processes
        .iter()
        .map(|process| (process.plan.me, process.pinning.clone(), process.plan.pacing.to_string()))
        .collect();
    for process in group.processes.drain(..) {
        process.stop()?;
    }
    let (local, log) = (local_samples.summary(), log_samples.summary());
    let report = Report {
        benchmark: "kv-read-latency",
        run,
        provider,
        leader,
        followers,
        group_description: settings.describe(),
        lease_ns: options.lease_us * 1_000,
        value_bytes: options.value_bytes,
        iterations: options.iterations,
        warmup: options.warmup,
        blocks: options.blocks,
        ratio: log.p50_ns as f64 / local.p50_ns.max(1) as f64,
        local,
        log,
        local_refused,
        load_before,
        load_after: load_average(),
    };
    print(&report);
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `args` as the KV's front end encodes them for its state machine.
fn encode(args: &[&str]) -> Result<Vec<u8>> {
    let mut request = Vec::new();
    usec_replication::apps::resp::reply::request(&mut request, args.iter().map(|arg| arg.as_bytes()));
    let mut parser = RequestParser::new(Limits::default());
    if !matches!(parser.parse(&request), Ok(Parsed::Request { .. })) {
        bail!("{args:?} is not one request");
    }
    let stamp_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let (mut command, mut error) = (Vec::new(), Vec::new());
    match KvApp.prepare(parser.args(&request), stamp_ms, &mut command, &mut error) {
        Prepared::Read | Prepared::Write => Ok(command),
        other => bail!("{args:?}: {other:?} {}", String::from_utf8_lossy(&error)),
    }
}

fn check(reply: &[u8], expected: &[u8], what: &str) -> Result<()> {
    if reply != expected {
        bail!("{what} answered {:?}", String::from_utf8_lossy(reply));
    }
    Ok(())
}

/// One local GET: turns (untimed) until the lease allows it, then the nanoseconds of the
/// read itself, the reply in `reply`.
fn served_locally(
    driver: &mut MuDriver<Machine>,
    local: &mut MuBackend<usec_replication::apps::kv::KvMachine>,
    get: &[u8],
    reply: &mut Vec<u8>,
    refused: &mut u64,
) -> Result<u64> {
    let clock = SharedClock;
    let start = clock.now_ns();
    loop {
        driver.turn(clock.now_ns());
        reply.clear();
        let before = clock.now_ns();
        let served = local.linearizable_read(get, reply);
        let after = clock.now_ns();
        if served {
            return Ok(after - before);
        }
        *refused += 1;
        if after - start > SAMPLE_LIMIT_NS {
            bail!("no local read allowed within {SAMPLE_LIMIT_NS} ns: {}", driver.replica().describe());
        }
    }
}

/// One command through the log: the nanoseconds from before the submission to after the
/// turn whose poll handed the reply back, the reply in `reply`.
fn through_log(
    driver: &mut MuDriver<Machine>,
    logged: &mut MuBackend<usec_replication::apps::kv::KvMachine>,
    command: &[u8],
    read: bool,
    reply: &mut Vec<u8>,
) -> Result<u64> {
    let clock = SharedClock;
    reply.clear();
    let start = clock.now_ns();
    if logged.submit(TAG, command, read, reply) == Submitted::Done {
        bail!("the leader refused the command: {:?}", String::from_utf8_lossy(reply));
    }
    let mut answered = false;
    loop {
        driver.turn(clock.now_ns());
        logged.poll(&mut |_, bytes| {
            reply.extend_from_slice(bytes);
            answered = true;
        });
        let end = clock.now_ns();
        if answered {
            return Ok(end - start);
        }
        if end - start > SAMPLE_LIMIT_NS {
            bail!("no reply within {SAMPLE_LIMIT_NS} ns: {}", driver.replica().describe());
        }
    }
}

fn print(report: &Report) {
    let run = &report.run;
    println!(
        "{}: a GET on the KV's leader, served locally under the lease and through the log",
        report.benchmark
    );
    println!("provider: {}", report.provider);
    run.warn_if_debug();
    let followers: Vec<String> = report
        .followers
        .iter()
        .map(|(me, pinning, pacing)| format!("replica {me} {pinning}, {pacing}"))
        .collect();
    println!(
        "{}; cores used: leader (this process, replica 0, measuring and turning the driver) {}; {}",
        run.provenance(),
        report.leader,
        followers.join("; ")
    );
    let load = |load: Option<[f64; 3]>| {
        load.map_or("unknown".into(), |[one, five, fifteen]| format!("{one} {five} {fifteen}"))
    };
    println!("load average before {}, after {}", load(report.load_before), load(report.load_after));
    println!("timer: {} (one read ~{} ns)", run.timer, run.timer_overhead_ns);
    println!("group: {}", report.group_description);
    println!(
        "Active(view) lease {} ns; value {} B; {} samples each after {} of warm-up, in {} alternating blocks",
        report.lease_ns, report.value_bytes, report.iterations, report.warmup, report.blocks
    );
    println!("GET served locally (lease):  {}", report.local);
    println!("GET through the log:         {}", report.log);
    println!("local reads the lease refused (tried again after turns, not timed): {}", report.local_refused);
    println!("ratio {:.1}", report.ratio);
}
