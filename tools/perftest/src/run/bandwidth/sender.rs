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
use crate::settings::Settings;
use crate::stats::{BandwidthStats, BandwidthTimes};
use crate::test_kind::Verb;

/// One size's sending run.
struct Sender<'a> {
    verb: Verb,
    size: u64,
    length: u32,
    iterations: u64,
    tx_depth: u64,
    cq_mod: u64,
    inline: Option<Vec<u8>>,
    lkey: u32,
    local_slots: Vec<u64>,
    remotes: Vec<RemoteRegion>,
    posted: Vec<u64>,
    completed: Vec<u64>,
    total: u64,
    total_posted: u64,
    total_completed: u64,
    times: Option<BandwidthTimes>,
    timed: Option<Timed>,
    clock: &'a Clock,
}

impl<'a> Sender<'a> {
    fn new(
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
        Ok(Sender {
            verb,
            size,
            length: u32::try_from(size).context("message size")?,
            iterations: settings.iterations,
            tx_depth: u64::from(settings.tx_depth),
            cq_mod: u64::from(settings.cq_mod),
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
            timed: settings.duration.map(|plan| Timed::new(DurationRun::new(plan, clock.now_ns()))),
            clock,
        })
    }

    fn running(&self) -> bool {
        match &self.timed {
            None => self.total_posted < self.total || self.total_completed < self.total,
            Some(timed) => !timed.over,
        }
    }

    /// Whether QP `qp` may post another request now.
    fn may_post(&self, qp: usize) -> bool {
        let more = match &self.timed {
            None => self.posted[qp] < self.iterations,
            Some(timed) => !timed.over,
        };
        more && self.posted[qp].saturating_sub(self.completed[qp]) < self.tx_depth
    }

    /// Fills every QP's window.
    fn post_window(&mut self, resources: &mut Resources) -> Result<()> {
        for qp in 0..self.posted.len() {
            while self.may_post(qp) {
                self.post_one(resources, qp)?;
            }
        }
        Ok(())
    }

    fn post_one(&mut self, resources: &mut Resources, qp: usize) -> Result<()> {
        let index = self.posted[qp];
        let offset = cycle_offset(index, self.size);
        let sge = Sge { addr: self.local_slots[qp] + offset, len: self.length, lkey: self.lkey };
        let payload = match &self.inline {
            Some(bytes) => Payload::Inline(bytes),
            None => Payload::from(&sge),
        };
        let remote = RemoteAddr::within(&self.remotes[qp], offset, u64::from(self.length))?;
        let op = match self.verb {
            Verb::Write => SendOp::Write { remote },
            Verb::Read => SendOp::Read { remote },
            Verb::Send | Verb::Atomic => SendOp::Send,
        };
        let mut wr = SendWr::new(qp as u64, op, payload);
        let last = self.timed.is_none() && index == self.iterations - 1;
        wr.signaled = index % self.cq_mod == self.cq_mod - 1 || last;
        if let Some(times) = self.times.as_mut() {
            times.posted(self.total_posted, self.clock.now_ns());
        }
        resources.qps[qp].post_send(&[wr]).context("posting a request")?;
        self.posted[qp] += 1;
        self.total_posted += 1;
        Ok(())
    }

    /// Whether completions are still due.
    fn owed(&self) -> bool {
        match self.timed {
            None => self.total_completed < self.total,
            Some(_) => self.total_completed < self.total_posted,
        }
    }

    /// Takes what completed; returns how many completions there were.
    fn take_completions(
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
    fn drain(&mut self, resources: &mut Resources, control: &mut Control) -> Result<()> {
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

/// The sender's side of write_bw, read_bw and send_bw for one size.
pub fn send(session: &mut Session<'_>, size: u64) -> Result<BandwidthStats> {
    let settings = session.settings;
    let clock = session.clock;
    let mut sender = Sender::new(settings, session.resources, session.peers, size, clock)?;
    let mut batch = [Completion::default(); POLL_BATCH];
    let mut watchdog = Watchdog::default();
    let start_ns = clock.now_ns();
    while sender.running() {
        sender.post_window(session.resources)?;
        if !sender.owed() {
            continue;
        }
        if sender.take_completions(session.resources, session.control, &mut batch)? > 0 {
            watchdog = Watchdog::default();
            continue;
        }
        watchdog.spin(session.control, "send completions")?;
        if watchdog.spins() % POLLS_PER_CLOCK_LOOK == 0 {
            if let Some(timed) = sender.timed.as_mut() {
                timed.idle(clock.now_ns());
            }
        }
    }
    let end_ns = clock.now_ns();
    if let Some(timed) = sender.timed.take() {
        sender.drain(session.resources, session.control)?;
        return Ok(BandwidthStats::new(size, timed.counted, timed.run.window_ns(), None, settings.units));
    }
    Ok(match &sender.times {
        Some(times) => BandwidthStats::new(
            size,
            sender.total,
            times.window_ns(),
            times.best_message_ns(),
            settings.units,
        ),
        None => BandwidthStats::new(size, sender.total, end_ns - start_ns, None, settings.units),
    })
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
        let (mut control, _peer) = Control::pair();
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
