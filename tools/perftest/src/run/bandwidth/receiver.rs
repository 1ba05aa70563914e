//! The receiving side of send_bw (perftest's `run_iter_bw_server`): keeps `rx_depth`
//! receives posted per QP, reposting one for each message taken while more are due, and
//! times from the first arrival to the last.

use anyhow::{Context as _, Result};
use usec_verbs::{Completion, CompletionQueue, RecvWr};

use crate::clock::DurationRun;
use crate::control::Control;
use crate::resources::Resources;
use crate::run::bandwidth::{cycle_offset, Timed, POLLS_PER_CLOCK_LOOK, POLL_BATCH};
use crate::run::wait::{checked, Watchdog};
use crate::run::Session;
use crate::stats::BandwidthStats;

/// Posts `rx_depth` receives of `size` bytes on every QP, before the sides sync for a size.
pub fn prepare(session: &mut Session<'_>, size: u64) -> Result<()> {
    let resources = &mut *session.resources;
    for qp in 0..resources.qps.len() {
        for index in 0..u64::from(session.settings.rx_depth) {
            post_receive(resources, qp, index, size).context("posting a receive")?;
        }
    }
    Ok(())
}

/// Posts receive number `index` of QP `qp`.
fn post_receive(resources: &mut Resources, qp: usize, index: u64, size: u64) -> Result<()> {
    let sge = resources.sge(resources.target_slot(qp) + cycle_offset(index, size), size)?;
    resources.qps[qp].post_recv(&[RecvWr::new(qp as u64, std::slice::from_ref(&sge))])?;
    Ok(())
}

/// One size's receiving run.
struct Receiver {
    size: u64,
    iterations: u64,
    total: u64,
    received: u64,
    reposted: Vec<u64>,
    first_ns: Option<u64>,
    timed: Option<Timed>,
}

impl Receiver {
    fn running(&self) -> bool {
        match &self.timed {
            None => self.received < self.total,
            Some(timed) => !timed.over,
        }
    }

    /// Takes the completions in `batch`, arrived at `now_ns`, and reposts receives.
    fn take(
        &mut self,
        resources: &mut Resources,
        control: &mut Control,
        batch: &[Completion],
        now_ns: u64,
    ) -> Result<()> {
        for completion in batch {
            let qp = checked(*completion, "a receive", control)?.wr_id as usize;
            self.received += 1;
            if let Some(timed) = self.timed.as_mut() {
                timed.done(1, now_ns);
            }
            if self.timed.is_some() || self.reposted[qp] < self.iterations {
                post_receive(resources, qp, self.reposted[qp], self.size).context("reposting a receive")?;
                self.reposted[qp] += 1;
            }
        }
        Ok(())
    }
}

/// send_bw's receiver for one size.
pub fn receive(session: &mut Session<'_>, size: u64) -> Result<BandwidthStats> {
    let settings = session.settings;
    let qps = settings.qps as usize;
    let mut receiver = Receiver {
        size,
        iterations: settings.iterations,
        total: settings.iterations * qps as u64,
        received: 0,
        reposted: vec![u64::from(settings.rx_depth); qps],
        first_ns: None,
        timed: None,
    };
    let mut recv_cq = session.resources.recv_cq.take().context("send_bw needs a receive CQ")?;
    let result = receive_all(session, &mut receiver, &mut recv_cq);
    session.resources.recv_cq = Some(recv_cq);
    result?;
    let end_ns = session.clock.now_ns();
    Ok(match &receiver.timed {
        Some(timed) => BandwidthStats::new(size, timed.counted, timed.run.window_ns(), None, settings.units),
        None => {
            let window = end_ns.saturating_sub(receiver.first_ns.unwrap_or(end_ns));
            BandwidthStats::new(size, receiver.total, window, None, settings.units)
        }
    })
}

fn receive_all(
    session: &mut Session<'_>,
    receiver: &mut Receiver,
    recv_cq: &mut CompletionQueue,
) -> Result<()> {
    let clock = session.clock;
    let mut batch = [Completion::default(); POLL_BATCH];
    let mut watchdog = Watchdog::default();
    while receiver.running() {
        let found = recv_cq.poll(&mut batch);
        if found == 0 {
            watchdog.spin(session.control, "SENDs from the client")?;
            if watchdog.spins() % POLLS_PER_CLOCK_LOOK == 0 {
                if let Some(timed) = receiver.timed.as_mut() {
                    timed.idle(clock.now_ns());
                }
            }
            continue;
        }
        watchdog = Watchdog::default();
        let now_ns = clock.now_ns();
        if receiver.first_ns.is_none() {
            // perftest starts the clock (and a timed run) at the first arrival.
            receiver.first_ns = Some(now_ns);
            receiver.timed = session.settings.duration.map(|plan| Timed::new(DurationRun::new(plan, now_ns)));
        }
        receiver.take(session.resources, session.control, &batch[..found], now_ns)?;
    }
    Ok(())
}
