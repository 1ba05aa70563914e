//! The report of a comparison benchmark: a baseline and a candidate measured in the same
//! run, printed as text whose last line is `ratio <candidate p50 / baseline p50>`, and
//! optionally written as JSON.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};

use usec_verbs::Context;

use crate::latency::LatencySummary;
use crate::pinning::Pinning;
use crate::run_info::RunInfo;

/// How figures measured on `context` are labelled: the provider, the device when it is a
/// real one, and where the provider's time is simulated, that a time measured on it is
/// not a latency.
pub fn provider_label(context: &Context) -> String {
    let provider = context.provider();
    let mut label = provider.label().to_string();
    if !provider.is_emulated() {
        label.push_str(&format!(", device {}", context.name()));
    }
    if !provider.has_real_time() {
        label.push_str("; simulated time, not a latency");
    }
    label
}

/// One measured latency distribution and what it was measured on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// What carried the messages; figures from the soft provider say so here.
    pub label: String,
    /// How the messages were exchanged and timed.
    pub method: String,
    /// What backs the memory the messages land in.
    pub memory: String,
    /// Where the measuring process ran.
    pub initiator: Pinning,
    /// Where the peer process ran.
    pub peer: Pinning,
    /// The distribution (RTT/2 for ping-pongs).
    pub latency: LatencySummary,
}

/// A baseline and a candidate from the same run, with the run's facts and parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report<P> {
    /// The benchmark's name.
    pub benchmark: String,
    /// One line on what it measures.
    pub description: String,
    /// Commit, build, cores, clock.
    pub run: RunInfo,
    /// The benchmark's own parameters.
    pub parameters: P,
    /// What the candidate is compared against.
    pub baseline: Measurement,
    /// What is being judged.
    pub candidate: Measurement,
    /// Candidate median over baseline median.
    pub ratio: f64,
}

impl<P: Serialize + fmt::Display> Report<P> {
    /// A report comparing the medians of `candidate` and `baseline`.
    pub fn new(
        benchmark: &str,
        description: &str,
        run: RunInfo,
        parameters: P,
        baseline: Measurement,
        candidate: Measurement,
    ) -> Result<Report<P>> {
        if baseline.latency.p50_ns == 0 {
            bail!("the baseline median is 0 ns: nothing to compare against");
        }
        let ratio = candidate.latency.p50_ns as f64 / baseline.latency.p50_ns as f64;
        Ok(Report {
            benchmark: benchmark.to_string(),
            description: description.to_string(),
            run,
            parameters,
            baseline,
            candidate,
            ratio,
        })
    }

    /// Writes the text report; its last line is exactly `ratio <x.xx>`.
    pub fn print(&self, out: &mut impl Write) -> Result<()> {
        let run = &self.run;
        writeln!(out, "{}: {}", self.benchmark, self.description)?;
        writeln!(
            out,
            "note: both processes busy-poll, one core each; keep everything else on this machine idle \
             during the run"
        )?;
        if !run.is_release() {
            writeln!(
                out,
                "WARNING: {} build: these figures are not to be reported (use --release)",
                run.build
            )?;
        }
        let dirty = match run.tree_dirty {
            Some(true) => " (tree has uncommitted changes)",
            Some(false) => "",
            None => " (tree state unknown)",
        };
        let online = run.cores_online.map_or_else(|| "unknown".to_string(), |cores| cores.to_string());
        writeln!(
            out,
            "build {}, commit {}{dirty}, cores: {online} online, {} usable; timer: {} (one clock read ~{} ns)",
            run.build, run.commit, run.cores_usable, run.timer, run.timer_overhead_ns
        )?;
        writeln!(out, "parameters: {}", self.parameters)?;
        print_measurement(out, "(a) baseline", &self.baseline)?;
        print_measurement(out, "(b)", &self.candidate)?;
        writeln!(out, "ratio {:.2}", self.ratio)?;
        Ok(())
    }

    /// Writes the whole report as JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut writer = BufWriter::new(file);
        serde_json::to_writer_pretty(&mut writer, self).context("encoding the report")?;
        writer.write_all(b"\n")?;
        writer.flush().with_context(|| format!("writing {}", path.display()))
    }
}

fn print_measurement(out: &mut impl Write, tag: &str, measurement: &Measurement) -> Result<()> {
    writeln!(out, "{tag} {}: {}", measurement.label, measurement.method)?;
    writeln!(
        out,
        "    memory: {}; initiator {}, peer {}",
        measurement.memory, measurement.initiator, measurement.peer
    )?;
    writeln!(out, "    {} iterations, RTT/2: {}", measurement.latency.count, measurement.latency)?;
    Ok(())
}
