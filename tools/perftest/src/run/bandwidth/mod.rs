//! The bandwidth loops, as perftest's `run_iter_bw` ([`sender`]) and `run_iter_bw_server`
//! ([`receiver`], send_bw only) in `src/perftest_resources.c` run them.

pub mod bidirectional;
pub mod endless;
pub mod receiver;
pub mod sender;

use crate::clock::{DurationRun, Phase};
use crate::cpu_use::CpuUse;
use crate::resources::CYCLE_BYTES;
use crate::settings::BandwidthUnits;
use crate::stats::BandwidthStats;

pub use receiver::{prepare as prepare_receiver, receive};
pub use sender::send;

/// Completions taken per poll (perftest's `CTX_POLL_BATCH`).
const POLL_BATCH: usize = 16;
/// perftest's cache line step for small messages.
const CACHE_LINE: u64 = 64;
/// Empty polls between looks at the clock in a timed run.
const POLLS_PER_CLOCK_LOOK: u32 = 1024;

/// Offset within a slot of message `index` of `size` bytes: messages up to half a page
/// walk through a page in cache-line steps (perftest's `increase_loc_addr`), larger ones
/// all use the slot's start.
fn cycle_offset(index: u64, size: u64) -> u64 {
    if size > CYCLE_BYTES / 2 {
        return 0;
    }
    let step = size.next_multiple_of(CACHE_LINE).max(CACHE_LINE);
    (index % (CYCLE_BYTES / step)) * step
}

/// A timed run's phases and what it counted in its sampled window.
#[derive(Debug)]
struct Timed {
    run: DurationRun,
    counted: u64,
    over: bool,
    /// `--cpu_util`.
    cpu: Option<CpuUse>,
}

impl Timed {
    fn new(run: DurationRun, cpu_util: bool) -> Timed {
        Timed { run, counted: 0, over: false, cpu: cpu_util.then(CpuUse::default) }
    }

    fn phase(&mut self, now_ns: u64) -> Phase {
        let phase = self.run.phase(now_ns);
        if let Some(cpu) = self.cpu.as_mut() {
            cpu.observe(phase);
        }
        phase
    }

    /// `messages` more done at `now_ns`: counted if inside the window.
    fn done(&mut self, messages: u64, now_ns: u64) {
        match self.phase(now_ns) {
            Phase::Sample => self.counted += messages,
            Phase::End => self.over = true,
            Phase::Warmup | Phase::Cooldown => {}
        }
    }

    /// Looks at the clock while nothing happens.
    fn idle(&mut self, now_ns: u64) {
        if self.phase(now_ns) == Phase::End {
            self.over = true;
        }
    }

    /// The row of the window.
    fn stats(&self, size: u64, units: BandwidthUnits) -> BandwidthStats {
        let mut stats = BandwidthStats::new(size, self.counted, self.run.window_ns(), None, units);
        stats.cpu_util = self.cpu.and_then(|cpu| cpu.percent());
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_walk_a_page_in_cache_lines() {
        assert_eq!(cycle_offset(0, 2), 0);
        assert_eq!(cycle_offset(1, 2), 64);
        assert_eq!(cycle_offset(63, 2), 63 * 64);
        assert_eq!(cycle_offset(64, 2), 0);
        assert_eq!(cycle_offset(1, 100), 128);
        assert_eq!(cycle_offset(2, 2048), 0);
        assert_eq!(cycle_offset(1, 2048), 2048);
        assert_eq!(cycle_offset(5, 4096), 0);
        assert_eq!(cycle_offset(5, 65536), 0);
    }

    #[test]
    fn timed_runs_count_only_their_window() {
        use crate::settings::DurationPlan;
        let second = 1_000_000_000;
        let mut timed = Timed::new(DurationRun::new(DurationPlan { total_s: 4, margin_s: 1 }, 0), false);
        timed.done(5, second / 2);
        timed.done(3, 2 * second);
        timed.idle(3 * second + 1);
        assert!(!timed.over);
        timed.done(7, 3 * second + 2);
        assert_eq!(timed.counted, 3);
        timed.idle(4 * second);
        assert!(timed.over);
    }
}
