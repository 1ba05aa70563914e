//! `usec-cluster demo`: the README's main job. Three KV replicas on the soft provider,
//! redis-benchmark through the front door, the leader SIGKILLed in the middle of a run,
//! and the figures: redis-benchmark's throughput and latency percentiles with and
//! without the fault, and the failover gap a client saw.
//!
//! The run with the fault reads (GET; every read goes through the log, as a write does):
//! redis-benchmark 7 exits at the first error reply, and a write in flight at a killed
//! leader has no truthful answer but an error (`-UNCERTAIN`), while a read in flight is
//! simply sent again to the next leader by the front door. Writes go on across the
//! failover meanwhile: the probe's.
//!
//! The failover gap is measured by the [`probe`](crate::probe): one client writing
//! `SET` after `SET` straight to the replicas (following `-MOVED`, moving on when a
//! connection fails) while the benchmark runs; the gap is the time from its last
//! acknowledged write before the SIGKILL to its first acknowledged write after it —
//! detection, election, the new leader taking over the log, and the client finding it.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};

use crate::client::{Reply, RespClient};
use crate::events::{self, Event};
use crate::group::{wait_for, GroupOptions, LocalGroup};
use crate::plan::App;
use crate::probe::{gap_around, Probe};
use crate::status::Process;

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The usec-kv executable.
    pub kv_bin: PathBuf,
    /// redis-benchmark's clients (`-c`).
    pub clients: u32,
    /// redis-benchmark's pipeline depth (`-P`).
    pub pipeline: u32,
    /// Requests of each test in the run without a fault (`-n`).
    pub requests: u64,
    /// How long the run with the fault should last, judged from the first run's rate.
    pub fault_run: Duration,
    /// When in that run the leader is killed.
    pub kill_after: Duration,
    /// More usec-kv arguments.
    pub extra: Vec<String>,
}

/// The probe's key.
const PROBE_KEY: &str = "usec:probe";

/// One line of redis-benchmark's `--csv` output.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchmarkRow {
    /// The test (`SET`, `GET`).
    pub test: String,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles in milliseconds: p50, p95, p99, max.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Longest.
    pub max_ms: f64,
}

/// Reads redis-benchmark's `--csv` output (7.x: test, rps, avg, min, p50, p95, p99, max).
pub fn parse_csv(text: &str) -> Result<Vec<BenchmarkRow>> {
    let mut rows = Vec::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(|field| field.trim().trim_matches('"')).collect();
        if fields.first() == Some(&"test") {
            continue;
        }
        ensure!(fields.len() == 8, "an unexpected redis-benchmark line: {line:?}");
        let number = |index: usize| -> Result<f64> {
            fields[index].parse().with_context(|| format!("field {index} of {line:?}"))
        };
        rows.push(BenchmarkRow {
            test: fields[0].to_string(),
            rps: number(1)?,
            p50_ms: number(4)?,
            p95_ms: number(5)?,
            p99_ms: number(6)?,
            max_ms: number(7)?,
        });
    }
    ensure!(!rows.is_empty(), "redis-benchmark printed no results: {text:?}");
    Ok(rows)
}

/// A redis-benchmark process, killed if dropped before it ends.
struct Benchmark {
    child: Child,
    output: Option<JoinHandle<String>>,
    errors: Option<JoinHandle<String>>,
}

impl Benchmark {
    fn spawn(front_door: SocketAddr, options: &DemoOptions, tests: &str, requests: u64) -> Result<Benchmark> {
        let mut child = Command::new("redis-benchmark")
            .args(["-h", &front_door.ip().to_string(), "-p", &front_door.port().to_string()])
            .args(["-c", &options.clients.to_string(), "-P", &options.pipeline.to_string()])
            .args(["-n", &requests.to_string(), "-t", tests, "-r", "100000", "--csv"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting redis-benchmark (Debian's redis-tools; tools/install-deps installs it)")?;
        let collect = |mut from: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = from.read_to_string(&mut text);
                text
            })
        };
        let output = Some(collect(Box::new(child.stdout.take().expect("piped"))));
        let errors = Some(collect(Box::new(child.stderr.take().expect("piped"))));
        Ok(Benchmark { child, output, errors })
    }

    /// Its results, once it ended well.
    fn finish(&mut self) -> Result<Option<Vec<BenchmarkRow>>> {
        let Some(status) = self.child.try_wait()? else { return Ok(None) };
        let output = self.output.take().expect("once").join().unwrap_or_default();
        let errors = self.errors.take().expect("once").join().unwrap_or_default();
        ensure!(status.success(), "redis-benchmark failed ({status}): {output}{errors}");
        Ok(Some(parse_csv(&output.replace('\r', "\n"))?))
    }
}

impl Drop for Benchmark {
    fn drop(&mut self) {
        if self.output.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Fails if a stopping signal came.
fn check_interrupted(events: &Receiver<Event>) -> Result<()> {
    match events.try_recv() {
        Ok(Event::Signal(signal)) => bail!("interrupted by {signal}"),
        _ => Ok(()),
    }
}

/// Which replica was killed, and when.
type Kill = (usize, Instant);

/// Runs `benchmark` to its end, printing the status line every second; at `kill_after`
/// (if any) kills the leader. Returns the rows and, with a kill, who and when.
fn drive(
    group: &mut LocalGroup,
    events: &Receiver<Event>,
    mut benchmark: Benchmark,
    kill_after: Option<Duration>,
) -> Result<(Vec<BenchmarkRow>, Option<Kill>)> {
    let started = Instant::now();
    let mut next_status = started + Duration::from_secs(1);
    let mut killed = None;
    loop {
        check_interrupted(events)?;
        if let Some(news) = group.refresh()?.first() {
            bail!("{news} during the benchmark");
        }
        if let Some(rows) = benchmark.finish()? {
            if kill_after.is_some() && killed.is_none() {
                bail!("the benchmark ended before the leader was killed: give it more time (--fault-run-s)");
            }
            return Ok((rows, killed));
        }
        if let (Some(after), None) = (kill_after, killed) {
            if started.elapsed() >= after {
                let leader = group.leader().context("no replica leads at the moment of the kill")?;
                let at = Instant::now();
                println!("demo: {}", group.kill(leader)?);
                killed = Some((leader, at));
            }
        }
        if Instant::now() >= next_status {
            println!("{}", group.status_line());
            next_status += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn print_rows(label: &str, rows: &[BenchmarkRow]) {
    for (index, row) in rows.iter().enumerate() {
        println!(
            "{:<16}{:<4} {:>9.0} requests/s   p50 {:.3} ms   p95 {:.3} ms   p99 {:.3} ms   max {:.3} ms",
            if index == 0 { label } else { "" },
            row.test,
            row.rps,
            row.p50_ms,
            row.p95_ms,
            row.p99_ms,
            row.max_ms
        );
    }
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

/// The front door's requests sent again and answered `-UNCERTAIN` so far.
fn group_stats(group: &LocalGroup) -> (u64, u64) {
    let stats = group.front_door().expect("opened").stats();
    (stats.resent.load(Ordering::Relaxed), stats.uncertain.load(Ordering::Relaxed))
}

/// Runs the demo.
pub fn run(options: &DemoOptions) -> Result<()> {
    let events = events::listen(false);
    let version = Command::new("redis-benchmark").arg("--version").output();
    ensure!(
        version.is_ok_and(|output| output.status.success()),
        "redis-benchmark is missing: install Debian's redis-tools (tools/install-deps does)"
    );
    // Three replicas, their front ends, the front door, the probe and fifty benchmark
    // clients may share two cores with whatever else runs there: a replica thread can
    // wait hundreds of milliseconds for one, which must not be taken for a crash (a
    // needless election mid-run). A SIGKILLed process is detected at once whatever the
    // period (its pidfd), so the failover measured does not depend on it.
    let mut extra = options.extra.clone();
    if !extra.iter().any(|arg| arg.starts_with("--heartbeat-us")) {
        extra.extend(["--heartbeat-us".to_string(), "500000".to_string()]);
    }
    let group_options = GroupOptions {
        replicas: 3,
        app: App::Kv,
        port_base: 0,
        front_door: true,
        kv_bin: options.kv_bin.clone(),
        extra,
    };
    let mut group = LocalGroup::start(&group_options)?;
    println!("demo: starting 3 usec-kv replicas on soft:{}", group.plan().run);
    wait_for(&mut group, Duration::from_secs(90), "replicas serving", LocalGroup::all_ready)?;
    wait_for(&mut group, Duration::from_secs(30), "leader", |group| group.leader().is_some())?;
    let door = group.front_door().expect("opened").address();
    let resp = group.resp_addresses();
    println!(
        "demo: replicas serve RESP on {resp:?}; front door {door}; leader {}",
        group.leader().expect("waited")
    );
    let probe = Probe::spawn(resp.clone(), PROBE_KEY.to_string());

    println!("demo: redis-benchmark, SET and GET, no fault");
    let benchmark = Benchmark::spawn(door, options, "set,get", options.requests)?;
    let (calm, _) = drive(&mut group, &events, benchmark, None)?;
    let get_rps = calm.iter().find(|row| row.test == "GET").context("no GET row")?.rps;
    let requests = ((get_rps * options.fault_run.as_secs_f64()) as u64).max(options.requests);
    println!(
        "demo: redis-benchmark, GET, {requests} requests (about {} s); the leader is killed {} s in",
        options.fault_run.as_secs(),
        options.kill_after.as_secs_f64()
    );
    let before = group_stats(&group);
    let benchmark = Benchmark::spawn(door, options, "get", requests)?;
    let (faulted, killed) = drive(&mut group, &events, benchmark, Some(options.kill_after))?;
    let (old_leader, kill_at) = killed.expect("drive fails without a kill");
    let after = group_stats(&group);
    let (resent, uncertain) = (after.0 - before.0, after.1 - before.1);
    wait_for(&mut group, Duration::from_secs(30), "new leader", |group| group.leader().is_some())?;
    let new_leader = group.leader().expect("waited");

    println!("demo: restarting replica {old_leader} with --rejoin");
    let target = group.table()[new_leader]
        .as_ref()
        .and_then(|seen| seen.info.as_ref().ok())
        .map_or(0, |info| info.commit_index);
    let restarted = Instant::now();
    println!("demo: {}", group.restart(old_leader)?);
    wait_for(&mut group, Duration::from_secs(60), "rejoined replica caught up", |group| {
        group.processes()[old_leader] == Process::Running
            && group.table()[old_leader]
                .as_ref()
                .and_then(|seen| seen.info.as_ref().ok())
                .is_some_and(|info| info.applied_index >= target)
    })?;
    let caught_up = restarted.elapsed();
    let leader_after_rejoin = group.leader();
    println!("{}", group.status_line());

    let log = probe.finish();
    let gap = gap_around(&log.acks, kill_at)
        .context("the probe saw no acknowledged write on both sides of the kill")?;
    let mut reader = RespClient::connect(door, Duration::from_secs(5))?;
    let stored = match reader.request(&[b"GET", PROBE_KEY.as_bytes()])? {
        Reply::Bulk(Some(value)) => {
            String::from_utf8_lossy(&value).parse::<u64>().context("the probe's value")?
        }
        other => bail!("GET {PROBE_KEY} answered {other:?}"),
    };
    ensure!(
        (log.last_acked..=log.last_sent).contains(&stored),
        "the probe's last acknowledged write ({}) is lost: the key holds {stored}",
        log.last_acked
    );
    let summary = group.stop()?;
    ensure!(!group.fabric_dir().exists(), "{} is left behind", group.fabric_dir().display());
    println!("demo: {summary}");

    println!();
    println!(
        "=== usec-kv, 3 replicas (Mu) on the soft provider; redis-benchmark through the launcher's front door: \
         {} clients, pipeline {}, random keys; {} cores{}",
        options.clients,
        options.pipeline,
        std::thread::available_parallelism().map_or(0, usize::from),
        if cfg!(debug_assertions) { "; A DEBUG BUILD: these figures measure nothing" } else { "" }
    );
    print_rows("no fault", &calm);
    print_rows("leader killed", &faulted);
    println!(
        "{:<16}replica {old_leader} SIGKILLed {:.1} s into the run; the front door sent {resent} reads in flight there \
         again to the next leader ({uncertain} answered -UNCERTAIN)",
        "",
        options.kill_after.as_secs_f64()
    );
    println!(
        "failover gap    {}: from the probe's last acknowledged write before the kill to its first after it",
        millis(gap.across)
    );
    println!(
        "{:<16}(the probe writes one SET at a time straight to the replicas, during both runs; its longest interval \
         before the kill was {}, over {} writes)",
        "",
        millis(gap.longest_before),
        gap.acks_before
    );
    println!("new leader      replica {new_leader}");
    println!(
        "rejoin          replica {old_leader} restarted with --rejoin; it applied past the leader's commit index of the \
         restart in {:.2} s{}",
        caught_up.as_secs_f64(),
        match leader_after_rejoin {
            Some(leader) if leader == old_leader => " and leads again (the lowest live id leads)".to_string(),
            Some(leader) => format!("; replica {leader} leads"),
            None => String::new(),
        }
    );
    println!(
        "probe           {} writes acknowledged, {} uncertain; the last acknowledged one is readable",
        log.acks.len(),
        log.uncertain
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmarks_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
            \"SET\",\"909090.94\",\"0.675\",\"0.120\",\"0.607\",\"1.151\",\"3.439\",\"3.503\"\n\
            \"GET\",\"1111111.12\",\"0.584\",\"0.104\",\"0.487\",\"0.943\",\"2.927\",\"2.983\"\n";
        let rows = parse_csv(text).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0],
            BenchmarkRow {
                test: "SET".into(),
                rps: 909090.94,
                p50_ms: 0.607,
                p95_ms: 1.151,
                p99_ms: 3.439,
                max_ms: 3.503
            }
        );
        assert_eq!(rows[1].test, "GET");
    }

    #[test]
    fn no_results_or_odd_lines_fail() {
        assert!(parse_csv("").is_err());
        assert!(parse_csv("\"SET\",\"1\"\n").is_err());
        assert!(parse_csv("\"SET\",\"x\",\"0\",\"0\",\"0\",\"0\",\"0\",\"0\"\n").is_err());
    }
}
