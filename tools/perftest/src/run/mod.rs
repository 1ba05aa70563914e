//! One run, start to end, in perftest's order: open the device, meet the peer, print the
//! info block and the address lines, connect, then for each size sync and run the loop,
//! printing a row per size.
//!
//! Who prints a table, as in perftest: both sides of write_lat, send_lat and send_bw (each
//! its own figures); the client of read_lat and atomic_lat; and for write_bw and read_bw
//! the client, whose rows the server prints as well.

pub mod bandwidth;
pub mod latency;
pub mod wait;

use std::io::Write as _;

use anyhow::{bail, Result};

use crate::clock::Clock;
use crate::control::{Control, Hello, Message, QpInfo, STEP_TIMEOUT};
use crate::report::{self, json, Row, TestInfo, RESULT_LINE, WAITING_BANNER};
use crate::resources::{address_line, Resources};
use crate::run_info::{pin, usable_cores, RunInfo};
use crate::settings::{Role, Settings};
use crate::test_kind::{Family, TestKind, Verb};

/// What the loops work with.
pub struct Session<'a> {
    /// The run's settings.
    pub settings: &'a Settings,
    /// The verbs objects.
    pub resources: &'a mut Resources,
    /// The peer's QPs.
    pub peers: &'a [QpInfo],
    /// The control connection.
    pub control: &'a mut Control,
    /// Timestamps.
    pub clock: &'a Clock,
}

/// Runs the test `settings` describe.
pub fn run(settings: &Settings) -> Result<()> {
    let usable = usable_cores();
    if let Some(core) = settings.core {
        pin(core, &usable)?;
    }
    let clock = Clock::calibrate();
    let run_info = RunInfo::collect(usable.len(), settings.core, clock.describe());
    let mut resources = Resources::create(settings)?;
    let mut control = match &settings.role {
        Role::Server => {
            let listener = Control::listen(settings.port)?;
            println!("{WAITING_BANNER}");
            flush();
            Control::accept(&listener)?
        }
        Role::Client { host } => Control::connect(host, settings.port, settings.connect_timeout)?,
    };
    let result = run_connected(settings, &mut resources, &mut control, &clock, run_info);
    if let Err(error) = &result {
        control.report_failure(&format!("{error:#}"));
    }
    result
}

fn run_connected(
    settings: &Settings,
    resources: &mut Resources,
    control: &mut Control,
    clock: &Clock,
    run_info: RunInfo,
) -> Result<()> {
    let test = settings.test;
    let client = settings.role.is_client();
    control.hello(&Hello::new(settings, &resources.provider()), settings.role.name())?;
    let info = test_info(settings, resources, run_info);
    println!("{}", info.render());
    let mine = resources.describe();
    let peers = control.exchange_qps(mine.clone())?;
    resources.connect(&peers)?;
    for qp in &mine {
        println!("{}", address_line(qp, test.verb())?.render("local"));
    }
    for qp in &peers {
        println!("{}", address_line(qp, test.verb())?.render("remote"));
    }
    control.sync("connected", STEP_TIMEOUT)?;

    let prints_rows = client || !matches!(test, TestKind::ReadLat | TestKind::AtomicLat);
    if prints_rows {
        println!("{RESULT_LINE}");
        println!("{}", header(settings));
    }
    flush();
    let mut session = Session { settings, resources, peers: &peers, control, clock };
    let mut rows = Vec::new();
    // Before each size the peer may still be running the previous one.
    let mut patience = STEP_TIMEOUT;
    for size in settings.sizes() {
        prepare(&mut session, size)?;
        session.control.sync(&format!("size {size}"), patience)?;
        patience = settings.run_patience(size, STEP_TIMEOUT);
        if let Some(row) = run_size(&mut session, size)? {
            println!("{}", report::render_row(&row));
            flush();
            rows.push(row);
        }
    }
    println!("{RESULT_LINE}");
    flush();
    session.control.sync("done", patience)?;
    if let (Some(path), true) = (&settings.json_path, prints_rows) {
        json::write(path, &json::document(test.name(), settings.role.name(), &info, &rows))?;
    }
    Ok(())
}

/// What the next size needs before the sides sync for it.
fn prepare(session: &mut Session<'_>, size: u64) -> Result<()> {
    let client = session.settings.role.is_client();
    match session.settings.test {
        TestKind::WriteLat | TestKind::SendLat => latency::prepare(session, size),
        TestKind::SendBw if !client => bandwidth::prepare_receiver(session, size),
        _ => Ok(()),
    }
}

/// Runs one size; the row this side prints, if any.
fn run_size(session: &mut Session<'_>, size: u64) -> Result<Option<Row>> {
    let client = session.settings.role.is_client();
    let row = match session.settings.test {
        TestKind::WriteLat => Some(latency::write_lat(session, size)?),
        TestKind::SendLat => Some(latency::send_lat(session, size)?),
        TestKind::ReadLat | TestKind::AtomicLat if client => Some(latency::one_sided_lat(session, size)?),
        TestKind::ReadLat | TestKind::AtomicLat => None,
        TestKind::WriteBw | TestKind::ReadBw if client => {
            let stats = bandwidth::send(session, size)?;
            session.control.send(&Message::Report { rows: vec![stats] })?;
            Some(Row::Bandwidth(stats))
        }
        TestKind::WriteBw | TestKind::ReadBw => {
            match session.control.receive_within(session.settings.run_patience(size, STEP_TIMEOUT))? {
                Message::Report { rows } if rows.len() == 1 => Some(Row::Bandwidth(rows[0])),
                other => bail!("expected the client's report, got {other:?}"),
            }
        }
        TestKind::SendBw if client => Some(Row::Bandwidth(bandwidth::send(session, size)?)),
        TestKind::SendBw => Some(Row::Bandwidth(bandwidth::receive(session, size)?)),
    };
    Ok(row)
}

/// The table header of this run.
fn header(settings: &Settings) -> String {
    match (settings.test.family(), settings.duration) {
        (Family::Latency, None) => report::table::LATENCY_HEADER.to_string(),
        (Family::Latency, Some(_)) => report::table::LATENCY_DURATION_HEADER.to_string(),
        (Family::Bandwidth, _) => report::table::bandwidth_header(settings.units),
    }
}

fn test_info(settings: &Settings, resources: &Resources, run: RunInfo) -> TestInfo {
    let verb = settings.test.verb();
    let client = settings.role.is_client();
    TestInfo {
        title: settings.test.title(settings.atomic),
        device: resources.context.name().to_string(),
        qps: settings.qps,
        transport: resources.transport(),
        tx_depth: client.then_some(settings.tx_depth),
        rx_depth: (verb == Verb::Send && !client).then_some(settings.rx_depth),
        cq_mod: (settings.test.family() == Family::Bandwidth).then_some(settings.cq_mod),
        mtu_bytes: resources.port.active_mtu.bytes(),
        link_type: resources.link_type(),
        gid_index: resources.gid_index,
        inline_or_reads: resources.inline_or_reads(verb),
        provider: resources.provider(),
        run,
    }
}

fn flush() {
    let _ = std::io::stdout().flush();
}
