//! Each test's sequence after the QPs are connected, as perftest's `src/*_lat.c` and
//! `src/*_bw.c` run it: which side runs which loop, where the two sides meet (a barrier is
//! a key exchange), who exchanges results, who prints a table, and how the test closes.
//!
//! - write_lat: both sides run every size back to back, without meeting, and leave (two
//!   usec-perftest processes close with a handshake instead).
//! - read_lat, atomic_lat: the client runs; the server waits in the closing handshake.
//! - send_lat: before each size, receives are posted and the sides meet; both run.
//! - write_bw, read_bw: the client runs every size, then meets the server and sends it the
//!   last size's report, which the server prints; with `-b` both run each size, meeting
//!   before it (and after it with `-a`), and both print the sum of the two reports.
//! - send_bw: before each size the server (both with `-b`) posts receives and the sides
//!   meet; with `-a` they meet after each size too; with `-b` both add up their reports
//!   unless the run is timed.
//!
//! Every test but write_lat closes with a handshake and "done". The side that waits for
//! the peer's run gives it as long as that run may take ([`Settings::run_patience`]).

use std::time::Duration;

use anyhow::{bail, Result};

use crate::clock::Clock;
use crate::control::handshake::{self, Agreement};
use crate::control::wire::{BandwidthReport, KeyMessage};
use crate::control::{Control, QpInfo};
use crate::report::{self, json, Row, TestInfo, RESULT_LINE};
use crate::resources::Resources;
use crate::run::bandwidth::{self, bidirectional, endless};
use crate::run::{flush, latency, Session};
use crate::settings::Settings;
use crate::stats::BandwidthStats;
use crate::test_kind::{Family, TestKind};

/// What the meeting before the run settled.
#[derive(Debug)]
pub struct Meeting<'a> {
    /// The agreement.
    pub agreement: &'a Agreement,
    /// The key every barrier sends (QP 0's, as perftest's do).
    pub barrier_key: KeyMessage,
    /// The info block, for the JSON report.
    pub info: &'a TestInfo,
}

/// How a test ends.
enum Ending {
    /// It just ends (write_lat).
    Leave,
    /// A closing handshake, the peer having this long to reach it.
    Close(Option<Duration>),
}

/// Runs the test on connected QPs.
pub fn run(
    settings: &Settings,
    resources: &mut Resources,
    peers: &[QpInfo],
    mut control: Control,
    clock: &Clock,
    meeting: &Meeting<'_>,
) -> Result<()> {
    let test = settings.test;
    let prints_rows = settings.role.is_client() || !matches!(test, TestKind::ReadLat | TestKind::AtomicLat);
    if prints_rows {
        println!("{RESULT_LINE}");
        println!("{}", header(settings));
    }
    flush();
    let mut rows = Vec::new();
    let ending = {
        let mut session = Session { settings, resources, peers, control: &mut control, clock };
        match test.family() {
            Family::Latency => latency_test(&mut session, meeting, &mut rows)?,
            Family::Bandwidth if settings.infinite_interval_s.is_some() => {
                endless_test(&mut session, meeting)?
            }
            Family::Bandwidth => bandwidth_test(&mut session, meeting, &mut rows)?,
        }
    };
    println!("{RESULT_LINE}");
    flush();
    if let Ending::Close(patience) = ending {
        handshake::close(control, meeting.agreement, &meeting.barrier_key, patience)?;
    }
    if let (Some(path), true) = (&settings.json_path, prints_rows) {
        json::write(path, &json::document(test.name(), settings.role.name(), meeting.info, &rows))?;
    }
    Ok(())
}

/// The table header of this run.
fn header(settings: &Settings) -> String {
    let mut header = match (settings.test.family(), settings.duration) {
        (Family::Latency, None) => report::table::LATENCY_HEADER.to_string(),
        (Family::Latency, Some(_)) => report::table::LATENCY_DURATION_HEADER.to_string(),
        (Family::Bandwidth, _) => report::table::bandwidth_header(settings.units),
    };
    if settings.cpu_util {
        header.push_str(report::table::CPU_UTIL_HEADER);
    }
    header
}

fn print_row(row: &Row, rows: &mut Vec<Row>) {
    println!("{}", report::render_row(row));
    flush();
    rows.push(*row);
}

/// A barrier: the peer has `patience` to reach it.
fn barrier(
    session: &mut Session<'_>,
    meeting: &Meeting<'_>,
    what: &str,
    patience: Option<Duration>,
) -> Result<()> {
    handshake::barrier(session.control, meeting.agreement, &meeting.barrier_key, what, patience)
}

/// How long the peer's run of `size` may take.
fn run_patience(session: &Session<'_>, size: u64) -> Option<Duration> {
    Some(session.settings.run_patience(size, session.control.step_timeout()))
}

/// How long the peer's run of every size may take.
fn whole_run_patience(session: &Session<'_>) -> Option<Duration> {
    let step = session.control.step_timeout();
    let sizes = session.settings.sizes();
    let runs = sizes.iter().map(|&size| session.settings.run_patience(size, Duration::ZERO));
    Some(runs.fold(step, Duration::saturating_add))
}

fn latency_test(session: &mut Session<'_>, meeting: &Meeting<'_>, rows: &mut Vec<Row>) -> Result<Ending> {
    let settings = session.settings;
    let test = settings.test;
    if matches!(test, TestKind::ReadLat | TestKind::AtomicLat) && !settings.role.is_client() {
        // The client READs this side's memory; this side waits for it to finish.
        return Ok(Ending::Close(whole_run_patience(session)));
    }
    let mut patience = Some(session.control.step_timeout());
    for size in settings.sizes() {
        if test == TestKind::SendLat {
            latency::prepare(session, size)?;
            barrier(session, meeting, "the handshake before a size", patience)?;
        }
        let measured = match test {
            TestKind::WriteLat => latency::write_lat(session, size)?,
            TestKind::SendLat => latency::send_lat(session, size)?,
            _ => latency::one_sided_lat(session, size)?,
        };
        if settings.report_unsorted && !measured.post_times_ns.is_empty() {
            println!("{}", report::table::unsorted_samples(&measured.post_times_ns, test.rtt_factor()));
            println!("{RESULT_LINE}");
            println!("{}", header(settings));
        }
        print_row(&measured.row, rows);
        patience = run_patience(session, size);
    }
    // perftest's write_lat just ends: a side whose clock runs out first leaves while the
    // other's last WRITE may still be on its way, which perftest never polls for. Two
    // usec-perftest processes close as the other tests do, so neither fails that WRITE.
    let leaves = test == TestKind::WriteLat && meeting.agreement.peer_hello.is_none();
    Ok(if leaves { Ending::Leave } else { Ending::Close(patience) })
}

fn bandwidth_test(session: &mut Session<'_>, meeting: &Meeting<'_>, rows: &mut Vec<Row>) -> Result<Ending> {
    let settings = session.settings;
    let client = settings.role.is_client();
    let step = Some(session.control.step_timeout());
    match settings.test {
        TestKind::WriteBw | TestKind::ReadBw if !settings.bidirectional => {
            if !client {
                // The client runs every size, then meets this side and reports its last.
                barrier(
                    session,
                    meeting,
                    "the handshake after the client's run",
                    whole_run_patience(session),
                )?;
                let theirs = handshake::exchange_report(session.control, &BandwidthReport::none(), step)?;
                print_row(&Row::Bandwidth(from_report(&theirs, settings)), rows);
                return Ok(Ending::Close(step));
            }
            let mut last = None;
            for size in settings.sizes() {
                let stats = bandwidth::send(session, size)?;
                print_row(&Row::Bandwidth(stats), rows);
                last = Some(stats);
            }
            let last = last.expect("at least one size");
            barrier(session, meeting, "the handshake after the run", step)?;
            handshake::exchange_report(session.control, &to_report(&last), step)?;
            Ok(Ending::Close(step))
        }
        TestKind::WriteBw | TestKind::ReadBw => {
            let mut patience = step;
            for size in settings.sizes() {
                barrier(session, meeting, "the handshake before a size", patience)?;
                let mine = bandwidth::send(session, size)?;
                if settings.all_sizes {
                    barrier(session, meeting, "the handshake after a size", run_patience(session, size))?;
                }
                let theirs = handshake::exchange_report(
                    session.control,
                    &to_report(&mine),
                    run_patience(session, size),
                )?;
                print_row(&Row::Bandwidth(summed(&mine, &theirs)), rows);
                patience = run_patience(session, size);
            }
            Ok(Ending::Close(step))
        }
        _ => send_bw(session, meeting, rows),
    }
}

fn send_bw(session: &mut Session<'_>, meeting: &Meeting<'_>, rows: &mut Vec<Row>) -> Result<Ending> {
    let settings = session.settings;
    let (client, both) = (settings.role.is_client(), settings.bidirectional);
    let mut patience = Some(session.control.step_timeout());
    for size in settings.sizes() {
        if !client || both {
            bandwidth::prepare_receiver(session, size)?;
        }
        barrier(session, meeting, "the handshake before a size", patience)?;
        let mine = match (both, client) {
            (true, _) => bidirectional::send_and_receive(session, size)?,
            (false, true) => bandwidth::send(session, size)?,
            (false, false) => bandwidth::receive(session, size)?,
        };
        let row = if both && settings.duration.is_none() {
            let theirs =
                handshake::exchange_report(session.control, &to_report(&mine), run_patience(session, size))?;
            summed(&mine, &theirs)
        } else {
            mine
        };
        print_row(&Row::Bandwidth(row), rows);
        if settings.all_sizes {
            barrier(session, meeting, "the handshake after a size", run_patience(session, size))?;
        }
        patience = run_patience(session, size);
    }
    Ok(Ending::Close(patience))
}

/// `--run_infinitely`: runs until killed or until something fails.
fn endless_test(session: &mut Session<'_>, meeting: &Meeting<'_>) -> Result<Ending> {
    let settings = session.settings;
    let (client, size) = (settings.role.is_client(), settings.size);
    let print = |stats: &BandwidthStats| {
        println!("{}", report::table::bandwidth_row(stats));
        flush();
    };
    match settings.test {
        TestKind::WriteBw | TestKind::ReadBw if !client && !settings.bidirectional => {
            // perftest's server waits in a handshake the client never reaches.
            barrier(session, meeting, "the client's endless run", None)?;
            bail!("the client ended a run that has no end")
        }
        TestKind::WriteBw | TestKind::ReadBw => endless::send(session, size, print)?,
        _ => {
            if !client {
                bandwidth::prepare_receiver(session, size)?;
            }
            barrier(session, meeting, "the handshake before the run", Some(session.control.step_timeout()))?;
            if client {
                endless::send(session, size, print)?;
            } else {
                endless::receive(session, size, print)?;
            }
        }
    }
    Ok(Ending::Leave)
}

/// This side's row as perftest's report carries it.
fn to_report(stats: &BandwidthStats) -> BandwidthReport {
    BandwidthReport {
        size: stats.size,
        iterations: stats.iterations,
        peak: stats.peak,
        average: stats.average,
        msg_rate_mpps: stats.msg_rate_mpps,
    }
}

/// The peer's report as a row of this side's table (in the peer's units, as perftest's
/// server prints them under its own header).
fn from_report(report: &BandwidthReport, settings: &Settings) -> BandwidthStats {
    BandwidthStats {
        size: report.size,
        iterations: report.iterations,
        peak: report.peak,
        average: report.average,
        msg_rate_mpps: report.msg_rate_mpps,
        units: settings.units,
        cpu_util: None,
    }
}

/// The bidirectional row: this side's size and iterations, both sides' figures added
/// (perftest's `print_full_bw_report` with a remote report).
fn summed(mine: &BandwidthStats, theirs: &BandwidthReport) -> BandwidthStats {
    BandwidthStats {
        peak: mine.peak + theirs.peak,
        average: mine.average + theirs.average,
        msg_rate_mpps: mine.msg_rate_mpps + theirs.msg_rate_mpps,
        ..*mine
    }
}
