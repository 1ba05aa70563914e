//! send_bw's bidirectional run (`-b`, perftest's `run_iter_bi`): each side sends and
//! receives at once, one loop serving both queues. The row is the sending side's; the two
//! sides then add their rows up.
//!
//! Unlike the one-way run, a timed run does not wait for its last SENDs to complete: the
//! peer stops reposting receives when its own clock runs out, so they may never complete
//! (perftest does not wait either); the QPs are destroyed before the CQs, which flushes
//! them.

use anyhow::{Context as _, Result};
use usec_verbs::{Completion, CompletionQueue};

use crate::run::bandwidth::receiver::Receiver;
use crate::run::bandwidth::sender::{Sender, Turn};
use crate::run::bandwidth::POLL_BATCH;
use crate::run::wait::Watchdog;
use crate::run::Session;
use crate::stats::BandwidthStats;

/// Both directions of send_bw for one size; the receives must be posted already.
pub fn send_and_receive(session: &mut Session<'_>, size: u64) -> Result<BandwidthStats> {
    let mut recv_cq = session.resources.recv_cq.take().context("send_bw needs a receive CQ")?;
    let result = run(session, size, &mut recv_cq);
    session.resources.recv_cq = Some(recv_cq);
    result
}

fn run(session: &mut Session<'_>, size: u64, recv_cq: &mut CompletionQueue) -> Result<BandwidthStats> {
    let clock = session.clock;
    let mut sender = Sender::new(session.settings, session.resources, session.peers, size, clock)?;
    let mut receiver = Receiver::new(session.settings, size);
    let mut sends = [Completion::default(); POLL_BATCH];
    let mut receives = [Completion::default(); POLL_BATCH];
    let mut watchdog = Watchdog::default();
    let start_ns = clock.now_ns();
    // A timed run ends with this side's clock, as perftest's does; an iterations run when
    // both directions are done.
    let timed = session.settings.duration.is_some();
    while sender.running() || (!timed && receiver.running()) {
        let sent = sender.turn(session.resources, session.control, &mut sends)?;
        let received = receiver.running() && receiver.turn(session, recv_cq, &mut receives)?;
        match (sent, received) {
            (Turn::Progress, _) | (_, true) => watchdog = Watchdog::default(),
            (Turn::Waiting, false) => sender.idle(&mut watchdog, session.control)?,
            (Turn::NothingOwed, false) => watchdog.spin(session.control, "SENDs from the peer")?,
        }
    }
    Ok(sender.stats(start_ns, clock.now_ns(), session.settings.units))
}
