//! `--cpu_util`: the machine's share of CPU time spent in user mode during a timed run's
//! sampled window, as perftest's `get_cpu_stats` and `calc_cpu_util` measure it: the `user`
//! and `idle` columns of `/proc/stat`'s first line at the window's start and at its end,
//! and `user / (user + idle)` of the difference, in percent.

use crate::clock::Phase;

/// Where `/proc/stat` is.
const PROC_STAT: &str = "/proc/stat";

/// The two columns perftest reads, in clock ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticks {
    /// Time in user mode.
    pub user: u64,
    /// Time idle.
    pub idle: u64,
}

/// The readings of one window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuUse {
    start: Option<Ticks>,
    end: Option<Ticks>,
}

impl CpuUse {
    /// Takes a reading when the run enters its sampled window and when it leaves it.
    pub fn observe(&mut self, phase: Phase) {
        match phase {
            Phase::Sample if self.start.is_none() => self.start = read(),
            Phase::Cooldown | Phase::End if self.start.is_some() && self.end.is_none() => self.end = read(),
            _ => {}
        }
    }

    /// The user share in percent, once the window has closed (0 when no time passed, as in
    /// perftest).
    pub fn percent(&self) -> Option<f64> {
        let (start, end) = (self.start?, self.end?);
        let user = end.user.saturating_sub(start.user);
        let idle = end.idle.saturating_sub(start.idle);
        Some(if user + idle == 0 { 0.0 } else { user as f64 / (user + idle) as f64 * 100.0 })
    }
}

fn read() -> Option<Ticks> {
    parse(&std::fs::read_to_string(PROC_STAT).ok()?)
}

/// The `user` and `idle` columns (the 1st and 4th numbers) of `/proc/stat`'s first line.
pub fn parse(text: &str) -> Option<Ticks> {
    let mut columns = text.lines().next()?.split_whitespace();
    if columns.next()? != "cpu" {
        return None;
    }
    let numbers: Vec<u64> = columns.take(4).map(|column| column.parse().ok()).collect::<Option<_>>()?;
    match numbers[..] {
        [user, _nice, _system, idle] => Some(Ticks { user, idle }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_gives_user_and_idle() {
        let stat = "cpu  4705 356 584 3699176 23060 0 277 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse(stat), Some(Ticks { user: 4705, idle: 3699176 }));
        assert_eq!(parse("cpu 1 2 3\n"), None);
        assert_eq!(parse("intr 1 2 3 4\n"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("cpu a b c d\n"), None);
    }

    #[test]
    fn the_share_is_of_the_windows_differences() {
        let window =
            CpuUse { start: Some(Ticks { user: 100, idle: 900 }), end: Some(Ticks { user: 130, idle: 990 }) };
        assert_eq!(window.percent(), Some(25.0));
        let still = CpuUse { start: Some(Ticks { user: 1, idle: 1 }), end: Some(Ticks { user: 1, idle: 1 }) };
        assert_eq!(still.percent(), Some(0.0));
        assert_eq!(CpuUse::default().percent(), None);
        // Real readings on this machine: the window opens and closes once.
        let mut cpu = CpuUse::default();
        cpu.observe(Phase::Warmup);
        assert_eq!(cpu, CpuUse::default());
        cpu.observe(Phase::Sample);
        cpu.observe(Phase::Cooldown);
        let closed = cpu;
        cpu.observe(Phase::End);
        assert_eq!(cpu, closed);
        assert!(cpu.percent().is_some_and(|share| (0.0..=100.0).contains(&share)));
    }
}
