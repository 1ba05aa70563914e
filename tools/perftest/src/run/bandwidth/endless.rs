//! `--run_infinitely` (perftest's `run_iter_bw_infinitely` and
//! `run_iter_bw_infinitely_server`): the same loops without an end, printing a row every
//! interval (`-D`, else 5 s) for the messages completed in it. Only an error, or the
//! process being killed, ends them.

use anyhow::{Context as _, Result};
use usec_verbs::Completion;

use crate::run::bandwidth::receiver::Receiver;
use crate::run::bandwidth::sender::{Sender, Turn};
use crate::run::bandwidth::POLL_BATCH;
use crate::run::wait::Watchdog;
use crate::run::Session;
use crate::stats::BandwidthStats;

/// Turns between looks at the clock for the next row.
const TURNS_PER_CLOCK_LOOK: u32 = 256;

/// Rows of one interval each: messages counted since the last row.
struct Interval {
    size: u64,
    length_ns: u64,
    started_ns: u64,
    counted_before: u64,
}

impl Interval {
    /// The row, if the interval is over at `now_ns` with `counted` messages in all.
    fn row(&mut self, now_ns: u64, counted: u64, session: &Session<'_>) -> Option<BandwidthStats> {
        let elapsed = now_ns.saturating_sub(self.started_ns);
        if elapsed < self.length_ns {
            return None;
        }
        let messages = counted - self.counted_before;
        (self.started_ns, self.counted_before) = (now_ns, counted);
        Some(BandwidthStats::new(self.size, messages, elapsed, None, session.settings.units))
    }
}

fn interval(session: &Session<'_>, size: u64) -> Interval {
    let seconds = session.settings.infinite_interval_s.expect("an endless run has an interval");
    Interval {
        size,
        length_ns: seconds * 1_000_000_000,
        started_ns: session.clock.now_ns(),
        counted_before: 0,
    }
}

/// Sends until something fails, handing a row to `print` every interval.
pub fn send(session: &mut Session<'_>, size: u64, mut print: impl FnMut(&BandwidthStats)) -> Result<()> {
    let clock = session.clock;
    let mut sender = Sender::new(session.settings, session.resources, session.peers, size, clock)?;
    let mut interval = interval(session, size);
    let mut batch = [Completion::default(); POLL_BATCH];
    let mut watchdog = Watchdog::default();
    let mut turn = 0u32;
    loop {
        turn = turn.wrapping_add(1);
        match sender.turn(session.resources, session.control, &mut batch)? {
            Turn::Progress => watchdog = Watchdog::default(),
            Turn::NothingOwed => {}
            Turn::Waiting => sender.idle(&mut watchdog, session.control)?,
        }
        if turn % TURNS_PER_CLOCK_LOOK == 0 {
            if let Some(row) = interval.row(clock.now_ns(), sender.total_completed, session) {
                print(&row);
            }
        }
    }
}

/// Receives (send_bw's server) until something fails, handing a row to `print` every
/// interval; the receives must be posted already.
pub fn receive(session: &mut Session<'_>, size: u64, mut print: impl FnMut(&BandwidthStats)) -> Result<()> {
    let mut recv_cq = session.resources.recv_cq.take().context("send_bw needs a receive CQ")?;
    let mut receiver = Receiver::new(session.settings, size);
    let mut interval = interval(session, size);
    let mut batch = [Completion::default(); POLL_BATCH];
    let mut watchdog = Watchdog::default();
    let result = (|| -> Result<()> {
        let mut turn = 0u32;
        loop {
            turn = turn.wrapping_add(1);
            if receiver.turn(session, &mut recv_cq, &mut batch)? {
                watchdog = Watchdog::default();
            } else {
                watchdog.spin(session.control, "SENDs from the client")?;
            }
            if turn % TURNS_PER_CLOCK_LOOK == 0 {
                if let Some(row) = interval.row(session.clock.now_ns(), receiver.received, session) {
                    print(&row);
                }
            }
        }
    })();
    session.resources.recv_cq = Some(recv_cq);
    result
}
