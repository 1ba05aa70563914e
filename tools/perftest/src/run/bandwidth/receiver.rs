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
use crate::settings::{BandwidthUnits, Settings};
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
pub(super) struct Receiver {
    size: u64,
    iterations: u64,
    total: u64,
    pub(super) received: u64,
    reposted: Vec<u64>,
    first_ns: Option<u64>,
    timed: Option<Timed>,
    /// `--run_infinitely`: no end, every receive reposted.
    endless: bool,
}

impl Receiver {
    pub(super) fn new(settings: &Settings, size: u64) -> Receiver {
        let qps = settings.qps as usize;
        Receiver {
            size,
            iterations: settings.iterations,
            total: settings.iterations * qps as u64,
            received: 0,
            reposted: vec![u64::from(settings.rx_depth); qps],
            first_ns: None,
            timed: None,
            endless: settings.infinite_interval_s.is_some(),
        }
    }

    pub(super) fn running(&self) -> bool {
        match &self.timed {
            _ if self.endless => true,
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
            if self.endless || self.timed.is_some() || self.reposted[qp] < self.iterations {
                post_receive(resources, qp, self.reposted[qp], self.size).context("reposting a receive")?;
                self.reposted[qp] += 1;
            }
        }
        Ok(())
    }

    /// Polls `recv_cq` once; whether anything arrived. The clock starts at the first
    /// arrival, as perftest's does (and a timed run with it).
    pub(super) fn turn(
        &mut self,
        session: &mut Session<'_>,
        recv_cq: &mut CompletionQueue,
        batch: &mut [Completion],
    ) -> Result<bool> {
        let found = recv_cq.poll(batch);
        if found == 0 {
            return Ok(false);
        }
        let now_ns = session.clock.now_ns();
        if self.first_ns.is_none() {
            self.first_ns = Some(now_ns);
            let settings = session.settings;
            self.timed =
                settings.duration.map(|plan| Timed::new(DurationRun::new(plan, now_ns), settings.cpu_util));
        }
        self.take(session.resources, session.control, &batch[..found], now_ns)?;
        Ok(true)
    }

    /// Looks at the clock while nothing arrives.
    pub(super) fn idle(&mut self, now_ns: u64) {
        if let Some(timed) = self.timed.as_mut() {
            timed.idle(now_ns);
        }
    }

    /// The row, the run having ended at `end_ns`.
    pub(super) fn stats(&self, end_ns: u64, units: BandwidthUnits) -> BandwidthStats {
        match &self.timed {
            Some(timed) => timed.stats(self.size, units),
            None => {
                let window = end_ns.saturating_sub(self.first_ns.unwrap_or(end_ns));
                BandwidthStats::new(self.size, self.received, window, None, units)
            }
        }
    }
}

/// send_bw's receiver for one size.
pub fn receive(session: &mut Session<'_>, size: u64) -> Result<BandwidthStats> {
    let mut receiver = Receiver::new(session.settings, size);
    let mut recv_cq = session.resources.recv_cq.take().context("send_bw needs a receive CQ")?;
    let result = receive_all(session, &mut receiver, &mut recv_cq);
    session.resources.recv_cq = Some(recv_cq);
    result?;
    Ok(receiver.stats(session.clock.now_ns(), session.settings.units))
}

fn receive_all(
    session: &mut Session<'_>,
    receiver: &mut Receiver,
    recv_cq: &mut CompletionQueue,
) -> Result<()> {
    let mut batch = [Completion::default(); POLL_BATCH];
    let mut watchdog = Watchdog::default();
    while receiver.running() {
        if receiver.turn(session, recv_cq, &mut batch)? {
            watchdog = Watchdog::default();
            continue;
        }
        watchdog.spin(session.control, "SENDs from the client")?;
        if watchdog.spins() % POLLS_PER_CLOCK_LOOK == 0 {
            receiver.idle(session.clock.now_ns());
        }
    }
    Ok(())
}
