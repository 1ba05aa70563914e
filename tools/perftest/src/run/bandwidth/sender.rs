//! The sending side of write_bw, read_bw and send_bw (perftest's `run_iter_bw`).
//!
//! Up to `tx_depth` requests stay outstanding per QP, posted round robin over the QPs. A
//! completion is asked for only on every `cq_mod`-th request of a QP and on its last, and
//! each completion retires `cq_mod` requests.

use std::time::Instant;

use anyhow::{Context as _, Result};
use usec_regions::RemoteRegion;
use usec_verbs::{Completion, Payload, RemoteAddr, SendOp, SendWr, Sge};

use crate::clock::{Clock, DurationRun};
use crate::control::Control;
use crate::resources::Resources;
use crate::run::bandwidth::{cycle_offset, Timed, POLLS_PER_CLOCK_LOOK, POLL_BATCH};
use crate::run::wait::{checked, Watchdog};
use crate::run::Session;
use crate::settings::{BandwidthUnits, Settings};
use crate::stats::{BandwidthStats, BandwidthTimes};
use crate::test_kind::Verb;

/// One size's sending run.
pub(super) struct Sender<'a> {
    verb: Verb,
    size: u64,
    length: u32,
    iterations: u64,
    tx_depth: u64,
    cq_mod: u64,
    post_list: u64,
    inline: Option<Vec<u8>>,
    lkey: u32,
    local_slots: Vec<u64>,
    remotes: Vec<RemoteRegion>,
    posted: Vec<u64>,
    completed: Vec<u64>,
    total: u64,
    total_posted: u64,
    pub(super) total_completed: u64,
    times: Option<BandwidthTimes>,
    pub(super) timed: Option<Timed>,
    /// `--run_infinitely`: no end, no count.
    endless: bool,
    clock: &'a Clock,
}

impl<'a> Sender<'a> {
    pub(super) fn new(
        settings: &Settings,
        resources: &Resources,
        peers: &[crate::control::QpInfo],
        size: u64,
        clock: &'a Clock,
    ) -> Result<Sender<'a>> {
        let verb = settings.test.verb();
        let qps = settings.qps as usize;
        let total = settings.iterations * qps as u64;
        let inline = (verb != Verb::Read && size <= u64::from(resources.inline_size))
            .then(|| vec![0u8; size as usize]);
        let endless = settings.infinite_interval_s.is_some();
        Ok(Sender {
            verb,
            size,
            length: u32::try_from(size).context("message size")?,
            iterations: settings.iterations,
            tx_depth: u64::from(settings.tx_depth),
            cq_mod: u64::from(settings.cq_mod),
            post_list: u64::from(settings.post_list),
            inline,
            lkey: resources.mr.lkey(),
            local_slots: (0..qps).map(|qp| resources.mr.addr() + resources.local_slot(qp)).collect(),
            remotes: peers.iter().map(Resources::remote_slot).collect::<Result<_>>()?,
            posted: vec![0; qps],
            completed: vec![0; qps],
            total,
            total_posted: 0,
            total_completed: 0,
            times: (!settings.no_peak).then(|| BandwidthTimes::new(total as usize, settings.cq_mod)),
            timed: settings
                .duration
                .map(|plan| Timed::new(DurationRun::new(plan, clock.now_ns()), settings.cpu_util)),
            endless,
            clock,
        })
    }

    pub(super) fn running(&self) -> bool {
        match &self.timed {
            _ if self.endless => true,
            None => self.total_posted < self.total || self.total_completed < self.total,
            Some(timed) => !timed.over,
        }
    }

    /// Whether QP `qp` may post another list of requests now.
    fn may_post(&self, qp: usize) -> bool {
        let more = match &self.timed {
            _ if self.endless => true,
            None => self.posted[qp] < self.iterations,
            Some(timed) => !timed.over,
        };
        more && self.posted[qp] - self.completed[qp].min(self.posted[qp]) + self.post_list <= self.tx_depth
    }

    /// Fills every QP's window.
    pub(super) fn post_window(&mut self, resources: &mut Resources) -> Result<()> {
        for qp in 0..self.posted.len() {
            while self.may_post(qp) {
                self.post(resources, qp)?;
            }
        }
        Ok(())
    }

    /// Posts the next request of QP `qp`, or with `-l` the next list of them in one call
    /// (perftest's post lists: fixed places in the buffers, a completion asked for every
    /// `cq_mod` requests of the list).
    fn post(&mut self, resources: &mut Resources, qp: usize) -> Result<()> {
        let index = self.posted[qp];
        let mut requests = Vec::with_capacity(self.post_list as usize);
        let sges: Vec<Sge> = (0..self.post_list)
            .map(|position| {
                let offset = if self.post_list == 1 {
                    cycle_offset(index, self.size)
                } else {
                    cycle_offset(position, self.size)
                };
                Sge { addr: self.local_slots[qp] + offset, len: self.length, lkey: self.lkey }
            })
            .collect();
        for (position, sge) in (0..self.post_list).zip(&sges) {
            let offset = sge.addr - self.local_slots[qp];
            let payload = match &self.inline {
                Some(bytes) => Payload::Inline(bytes),
                None => Payload::from(sge),
            };
            let remote = RemoteAddr::within(&self.remotes[qp], offset, u64::from(self.length))?;
            let op = match self.verb {
                Verb::Write => SendOp::Write { remote },
                Verb::Read => SendOp::Read { remote },
                Verb::Send | Verb::Atomic => SendOp::Send,
            };
            let mut wr = SendWr::new(qp as u64, op, payload);
            wr.signaled = if self.post_list == 1 {
                let last = self.timed.is_none() && !self.endless && index == self.iterations - 1;
                index % self.cq_mod == self.cq_mod - 1 || last
            } else {
                (position + 1) % self.cq_mod == 0
            };
            requests.push(wr);
        }
        if let Some(times) = self.times.as_mut() {
            // A list goes in one call: its requests share a post time.
            let now_ns = self.clock.now_ns();
            for position in 0..self.post_list {
                times.posted(self.total_posted + position, now_ns);
            }
        }
        resources.qps[qp].post_send(&requests).context("posting a request")?;
        self.posted[qp] += self.post_list;
        self.total_posted += self.post_list;
        Ok(())
    }

    /// Whether completions are still due.
    pub(super) fn owed(&self) -> bool {
        match self.timed {
            None if !self.endless => self.total_completed < self.total,
            _ => self.total_completed < self.total_posted,
        }
    }

    /// Takes what completed; returns how many completions there were.
    pub(super) fn take_completions(
        &mut self,
        resources: &mut Resources,
        control: &mut Control,
        batch: &mut [Completion],
    ) -> Result<usize> {
        let found = resources.send_cq.poll(batch);
        if found == 0 {
            return Ok(0);
        }
        let now_ns = self.clock.now_ns();
        for completion in &batch[..found] {
            let qp = checked(*completion, "a request", control)?.wr_id as usize;
            self.completed[qp] += self.cq_mod;
            self.total_completed += self.cq_mod;
            if let Some(times) = self.times.as_mut() {
                times.completed(self.total_completed, now_ns);
            }
            if let Some(timed) = self.timed.as_mut() {
                timed.done(self.cq_mod, now_ns);
            }
        }
        Ok(found)
    }

    /// After a timed run, waits for the completions of signaled requests still owed, so
    /// that nothing completes into a CQ that is about to go.
    pub(super) fn drain(&mut self, resources: &mut Resources, control: &mut Control) -> Result<()> {
        let cq_mod = self.cq_mod;
        let owed: u64 = self
            .posted
            .iter()
            .zip(&self.completed)
            .map(|(&p, &c)| (p / cq_mod).saturating_sub(c / cq_mod))
            .sum();
        let cq = &mut resources.send_cq;
        drain_completions(owed, |batch| cq.poll(batch), control, Instant::now)
    }
}

/// Waits for `owed` completions from `poll`, checking each; `now` is the watchdog's clock.
fn drain_completions(
    mut owed: u64,
    mut poll: impl FnMut(&mut [Completion]) -> usize,
    control: &mut Control,
    mut now: impl FnMut() -> Instant,
) -> Result<()> {
    let mut batch = [Completion::default(); POLL_BATCH];
    let mut watchdog = Watchdog::default();
    while owed > 0 {
        let found = poll(&mut batch);
        for completion in &batch[..found] {
            checked(*completion, "a request", control)?;
        }
        owed = owed.saturating_sub(found as u64);
        if found == 0 {
            watchdog.spin_at(&mut now, control, "the last completions")?;
        } else {
            // Progress: the stall limit counts from here.
            watchdog = Watchdog::default();
        }
    }
    Ok(())
}

/// What one turn of a sending loop did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Turn {
    /// Requests completed.
    Progress,
    /// Nothing is outstanding.
    NothingOwed,
    /// Requests are outstanding and none completed.
    Waiting,
}

impl Sender<'_> {
    /// One turn: fills the windows and takes what completed.
    pub(super) fn turn(
        &mut self,
        resources: &mut Resources,
        control: &mut Control,
        batch: &mut [Completion],
    ) -> Result<Turn> {
        self.post_window(resources)?;
        if !self.owed() {
            return Ok(Turn::NothingOwed);
        }
        Ok(if self.take_completions(resources, control, batch)? > 0 { Turn::Progress } else { Turn::Waiting })
    }

    /// Called when a turn found nothing: the watchdog, and now and then the clock.
    pub(super) fn idle(&mut self, watchdog: &mut Watchdog, control: &mut Control) -> Result<()> {
        watchdog.spin(control, "send completions")?;
        if watchdog.spins() % POLLS_PER_CLOCK_LOOK == 0 {
            if let Some(timed) = self.timed.as_mut() {
                timed.idle(self.clock.now_ns());
            }
        }
        Ok(())
    }

    /// The row of a run that ended at `end_ns` and began at `start_ns`.
    pub(super) fn stats(&self, start_ns: u64, end_ns: u64, units: BandwidthUnits) -> BandwidthStats {
        if let Some(timed) = &self.timed {
            return timed.stats(self.size, units);
        }
        match &self.times {
            Some(times) => {
                BandwidthStats::new(self.size, self.total, times.window_ns(), times.best_message_ns(), units)
            }
            None => BandwidthStats::new(self.size, self.total, end_ns - start_ns, None, units),
        }
    }
}

/// The sender's side of write_bw, read_bw and send_bw for one size.
pub fn send(session: &mut Session<'_>, size: u64) -> Result<BandwidthStats> {
    let settings = session.settings;
    let clock = session.clock;
    let mut sender = Sender::new(settings, session.resources, session.peers, size, clock)?;
    let mut batch = [Completion::default(); POLL_BATCH];
    let mut watchdog = Watchdog::default();
    let start_ns = clock.now_ns();
    while sender.running() {
        match sender.turn(session.resources, session.control, &mut batch)? {
            Turn::Progress => watchdog = Watchdog::default(),
            Turn::NothingOwed => {}
            Turn::Waiting => sender.idle(&mut watchdog, session.control)?,
        }
    }
    let end_ns = clock.now_ns();
    // A timed run's last WRITEs and READs complete whatever the passive peer does. Its last
    // SENDs may not: the receiver stops reposting receives when its own clock runs out
    // (perftest's too), and a SEND that finds none is retried forever. perftest does not
    // wait for them; neither does this side (QPs are destroyed before their CQs, which
    // flushes them).
    if sender.timed.is_some() && sender.verb != Verb::Send {
        sender.drain(session.resources, session.control)?;
    }
    Ok(sender.stats(start_ns, end_ns, settings.units))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_drain_that_keeps_making_progress_is_never_stalled() {
        // Each empty poll takes a simulated millisecond and a completion comes every
        // 20,000 polls: 20 s between completions, 200 s in all, longer than the stall
        // limit although no gap comes near it.
        let (mut control, _peer) = Control::pair(Duration::from_secs(120));
        let start = Instant::now();
        let polls = Cell::new(0u64);
        let poll = |batch: &mut [Completion]| {
            polls.set(polls.get() + 1);
            if polls.get() % 20_000 == 0 {
                batch[0] = Completion::default();
                1
            } else {
                0
            }
        };
        let now = || start + Duration::from_millis(polls.get());
        let result = drain_completions(10, poll, &mut control, now);
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(polls.get(), 200_000);
    }
}
