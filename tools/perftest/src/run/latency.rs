//! The latency loops, as perftest's `run_iter_lat_write`, `run_iter_lat_send` and
//! `run_iter_lat` (`src/perftest_resources.c`) run them. Each records the time just before
//! every post; the statistics are the differences between consecutive posts.
//!
//! - write_lat: both sides WRITE `size` bytes into the other's target slot and spin on the
//!   last byte of their own, which carries the iteration number. The server posts first.
//! - send_lat: SEND/RECV ping-pong; the client sends first; receives are reposted while
//!   more are due.
//! - read_lat, atomic_lat: the client posts one READ (or atomic) at a time and waits for
//!   its completion; the server takes no part.

use anyhow::{Context as _, Result};
use usec_verbs::{Completion, Payload, RecvWr, SendOp, SendWr};

use crate::clock::{Clock, DurationRun, Phase};
use crate::cpu_use::CpuUse;
use crate::report::Row;
use crate::resources::Resources;
use crate::run::wait::{self, MarkedByte, PolledByte};
use crate::run::Session;
use crate::settings::Settings;
use crate::stats::{DurationLatency, LatencyStats};
use crate::test_kind::{AtomicType, TestKind, Verb};

/// perftest's `ATOMIC_ADD_VALUE` and `ATOMIC_SWAP_VALUE`.
const ATOMIC_ADD: u64 = 1;
const ATOMIC_SWAP: u64 = 0;

/// Post times of an iterations run, or the counters of a timed one.
enum Timing {
    Iterations { post_times_ns: Vec<u64> },
    Duration { run: DurationRun, counted: u64, ended: bool, cpu: Option<CpuUse> },
}

impl Timing {
    fn new(settings: &Settings, clock: &Clock) -> Timing {
        match settings.duration {
            None => Timing::Iterations { post_times_ns: Vec::with_capacity(settings.iterations as usize) },
            Some(plan) => {
                let cpu = settings.cpu_util.then(CpuUse::default);
                Timing::Duration {
                    run: DurationRun::new(plan, clock.now_ns()),
                    counted: 0,
                    ended: false,
                    cpu,
                }
            }
        }
    }

    /// Whether iteration `number` (from 1) should run.
    fn more(&self, number: u64, iterations: u64) -> bool {
        match self {
            Timing::Iterations { .. } => number <= iterations,
            Timing::Duration { ended, .. } => !ended,
        }
    }

    /// Just before a post.
    #[inline]
    fn posting(&mut self, clock: &Clock) {
        if let Timing::Iterations { post_times_ns } = self {
            post_times_ns.push(clock.now_ns());
        }
    }

    /// After an iteration completed; the clock is read only in a timed run (an
    /// iterations run needs no second reading per iteration).
    #[inline]
    fn completed(&mut self, now_ns: impl FnOnce() -> u64) {
        if let Timing::Duration { run, counted, ended, cpu } = self {
            let phase = run.phase(now_ns());
            if let Some(cpu) = cpu {
                cpu.observe(phase);
            }
            match phase {
                Phase::Sample => *counted += 1,
                Phase::End => *ended = true,
                Phase::Warmup | Phase::Cooldown => {}
            }
        }
    }

    /// Whether a timed run is over at `now_ns` (for waits).
    fn over(&mut self, now_ns: u64) -> bool {
        match self {
            Timing::Iterations { .. } => false,
            Timing::Duration { run, ended, cpu, .. } => {
                let phase = run.phase(now_ns);
                if let Some(cpu) = cpu {
                    cpu.observe(phase);
                }
                if phase == Phase::End {
                    *ended = true;
                }
                *ended
            }
        }
    }

    fn row(self, size: u64, iterations: u64, test: TestKind) -> Result<Measured> {
        match self {
            Timing::Iterations { post_times_ns } => {
                let stats = LatencyStats::from_post_times(&post_times_ns, test.rtt_factor())
                    .context("too few iterations for statistics")?;
                Ok(Measured { row: Row::Latency { size, iterations, stats }, post_times_ns })
            }
            Timing::Duration { run, counted, cpu, .. } => {
                let mut row = DurationLatency::new(counted, run.window_ns(), test.rtt_factor());
                row.cpu_util = cpu.and_then(|cpu| cpu.percent());
                Ok(Measured { row: Row::LatencyDuration { size, row }, post_times_ns: Vec::new() })
            }
        }
    }
}

/// One size's outcome.
#[derive(Debug)]
pub struct Measured {
    /// The row.
    pub row: Row,
    /// The post times of an iterations run (for `-U`); empty for a timed one.
    pub post_times_ns: Vec<u64>,
}

/// Posts the receives of send_lat's next size, before the sides sync for it.
///
/// write_lat needs nothing: each size polls the last byte of its message, which no smaller
/// message reached, in a buffer that starts zeroed, and perftest does not sync between
/// sizes, so a reset here could erase the peer's first WRITE of the size.
pub fn prepare(session: &mut Session<'_>, size: u64) -> Result<()> {
    if session.settings.test == TestKind::SendLat {
        post_receives(session.resources, size, session.settings.rx_depth)?;
    }
    Ok(())
}

/// Posts `count` receives of `size` bytes into QP 0's target slot.
fn post_receives(resources: &mut Resources, size: u64, count: u32) -> Result<()> {
    let sge = resources.sge(resources.target_slot(0), size)?;
    for _ in 0..count {
        resources.qps[0]
            .post_recv(&[RecvWr::new(0, std::slice::from_ref(&sge))])
            .context("posting a receive")?;
    }
    Ok(())
}

/// write_lat for one size.
pub fn write_lat(session: &mut Session<'_>, size: u64) -> Result<Measured> {
    let iterations = session.settings.iterations;
    let server = !session.settings.role.is_client();
    let resources = &mut *session.resources;
    let local = resources.local_slot(0);
    let sge = resources.sge(local, size)?;
    let inline = size <= u64::from(resources.inline_size);
    let mut message = vec![0u8; if inline { size as usize } else { 0 }];
    let remote = Resources::remote_target(&session.peers[0], size)?;
    let region = std::sync::Arc::clone(&resources.region);
    let polled = PolledByte::new(&region, resources.target_slot(0) + size - 1)?;
    let marked = MarkedByte::new(&region, local + size - 1)?;
    let clock = session.clock;
    let mut timing = Timing::new(session.settings, clock);
    let mut received = 0u64;
    let mut number = 1u64;
    while timing.more(number, iterations) {
        if !(server && number == 1) {
            received += 1;
            if !polled.wait_for(received as u8, session.control, || timing.over(clock.now_ns()))? {
                break;
            }
        }
        timing.posting(clock);
        let mark = number as u8;
        let payload = if inline {
            message[size as usize - 1] = mark;
            Payload::Inline(&message[..])
        } else {
            marked.set(mark);
            Payload::from(&sge)
        };
        resources.qps[0].post_send(&[SendWr::write(number, remote, payload)]).context("posting a WRITE")?;
        if wait::one_completion(&mut resources.send_cq, session.control, "a WRITE", || {
            timing.over(clock.now_ns())
        })?
        .is_none()
        {
            break;
        }
        timing.completed(|| clock.now_ns());
        number += 1;
    }
    if session.settings.duration.is_none() {
        // The server's last wait: the client's final WRITE.
        while received < iterations {
            received += 1;
            polled.wait_for(received as u8, session.control, || false)?;
        }
    }
    timing.row(size, iterations, session.settings.test)
}

/// send_lat for one size.
pub fn send_lat(session: &mut Session<'_>, size: u64) -> Result<Measured> {
    let iterations = session.settings.iterations;
    let (rx_depth, cq_mod) = (u64::from(session.settings.rx_depth), u64::from(session.settings.cq_mod));
    let client = session.settings.role.is_client();
    let timed = session.settings.duration.is_some();
    let resources = &mut *session.resources;
    let sge = resources.sge(resources.local_slot(0), size)?;
    let receive_sge = resources.sge(resources.target_slot(0), size)?;
    let inline = size <= u64::from(resources.inline_size);
    let message = vec![0u8; if inline { size as usize } else { 0 }];
    let clock = session.clock;
    let mut timing = Timing::new(session.settings, clock);
    let mut recv_cq = resources.recv_cq.take().context("send_lat needs a receive CQ")?;
    let mut outcome = || -> Result<()> {
        let (mut sent, mut received) = (0u64, 0u64);
        while timing.more(sent + 1, iterations) || (!timed && received < iterations) {
            if (timed || received < iterations) && !(client && sent == 0) {
                if wait::one_completion(&mut recv_cq, session.control, "a SEND from the peer", || {
                    timing.over(clock.now_ns())
                })?
                .is_none()
                {
                    break;
                }
                received += 1;
                timing.completed(|| clock.now_ns());
                if timed || received + rx_depth <= iterations {
                    resources.qps[0]
                        .post_recv(&[RecvWr::new(0, std::slice::from_ref(&receive_sge))])
                        .context("reposting a receive")?;
                }
            }
            if timing.more(sent + 1, iterations) {
                timing.posting(clock);
                sent += 1;
                let signaled = sent % cq_mod == 0 || (!timed && sent == iterations);
                let payload = if inline { Payload::Inline(&message[..]) } else { Payload::from(&sge) };
                let mut wr = SendWr::send(sent, payload);
                wr.signaled = signaled;
                resources.qps[0].post_send(&[wr]).context("posting a SEND")?;
                if signaled
                    && wait::one_completion(&mut resources.send_cq, session.control, "a SEND", || {
                        timing.over(clock.now_ns())
                    })?
                    .is_none()
                {
                    break;
                }
            }
        }
        Ok(())
    };
    let result = outcome();
    resources.recv_cq = Some(recv_cq);
    result?;
    timing.row(size, iterations, session.settings.test)
}

/// read_lat and atomic_lat (the client's side) for one size.
pub fn one_sided_lat(session: &mut Session<'_>, size: u64) -> Result<Measured> {
    let iterations = session.settings.iterations;
    let test = session.settings.test;
    let atomic = session.settings.atomic;
    let resources = &mut *session.resources;
    let local = resources.sge(resources.local_slot(0), size)?;
    let remote = Resources::remote_target(&session.peers[0], size)?;
    let op = match (test.verb(), atomic) {
        (Verb::Read, _) => SendOp::Read { remote },
        (_, AtomicType::FetchAndAdd) => SendOp::FetchAdd { remote, add: ATOMIC_ADD },
        (_, AtomicType::CmpAndSwap) => SendOp::CompareSwap { remote, compare: ATOMIC_ADD, swap: ATOMIC_SWAP },
    };
    let what = if test.verb() == Verb::Read { "a READ" } else { "an atomic" };
    let clock = session.clock;
    let mut timing = Timing::new(session.settings, clock);
    let mut number = 1u64;
    while timing.more(number, iterations) {
        timing.posting(clock);
        resources.qps[0]
            .post_send(&[SendWr::new(number, op, &local)])
            .with_context(|| format!("posting {what}"))?;
        let done: Option<Completion> =
            wait::one_completion(&mut resources.send_cq, session.control, what, || {
                timing.over(clock.now_ns())
            })?;
        if done.is_none() {
            break;
        }
        timing.completed(|| clock.now_ns());
        number += 1;
    }
    timing.row(size, iterations, test)
}
