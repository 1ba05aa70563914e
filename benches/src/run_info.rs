//! What every report says about the run itself: the commit, the build, the machine and
//! the clock.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Facts about the run that come with its figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `git rev-parse --short HEAD` of the source tree, or `unknown`.
    pub commit: String,
    /// Whether the tree had changes (tracked or untracked) that the commit lacks; `None`
    /// when git could not say.
    pub tree_dirty: Option<bool>,
    /// `release` or `debug`; figures from debug builds are not to be reported.
    pub build: String,
    /// Cores the machine has online (`/sys/devices/system/cpu/online`), if readable.
    pub cores_online: Option<usize>,
    /// Cores the benchmark could use when it started (its affinity mask).
    pub cores_usable: usize,
    /// How round trips are timed.
    pub timer: String,
    /// The median cost of one clock read, in nanoseconds (each sample holds two).
    pub timer_overhead_ns: u64,
}

impl RunInfo {
    /// Collects the facts; `cores_usable` comes from the caller, which must count them
    /// before it pins itself.
    pub fn collect(cores_usable: usize) -> RunInfo {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"));
        RunInfo {
            commit: git_commit(source),
            tree_dirty: git_tree_dirty(source),
            build: build_profile().to_string(),
            cores_online: cores_online(),
            cores_usable,
            timer: "std::time::Instant around each round trip".to_string(),
            timer_overhead_ns: timer_overhead_ns(),
        }
    }

    /// Whether this is a release build, the only kind whose figures may be reported.
    pub fn is_release(&self) -> bool {
        self.build == "release"
    }

    /// Prints the warning a debug build's report must carry, if this is one.
    pub fn warn_if_debug(&self) {
        if !self.is_release() {
            println!("WARNING: {} build: these figures are not to be reported (use --release)", self.build);
        }
    }

    /// `build release, commit abc1234 (dirty), cores usable 2`: where the figures come from.
    pub fn provenance(&self) -> String {
        let dirty = if self.tree_dirty == Some(true) { " (dirty)" } else { "" };
        format!("build {}, commit {}{dirty}, cores usable {}", self.build, self.commit, self.cores_usable)
    }
}

/// `release` when built with optimisations and without debug assertions, else `debug`.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The number of online cores, from the kernel's list (`0-3,6`).
pub fn cores_online() -> Option<usize> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    count_cpu_list(list.trim())
}

/// Counts the CPUs of a kernel CPU list such as `0-3,6,8-9`.
fn count_cpu_list(list: &str) -> Option<usize> {
    list.split(',').try_fold(0, |count, range| {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
        Some(count + last.checked_sub(first)? + 1)
    })
}

/// The short hash of the commit checked out at `source`, or `unknown`.
pub fn git_commit(source: &Path) -> String {
    git(source, &["rev-parse", "--short", "HEAD"])
        .map(|out| out.trim().to_string())
        .filter(|hash| !hash.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}

/// Whether the tree at `source` differs from its commit. `--no-optional-locks` keeps
/// `git status` from rewriting the index while others work in the tree.
pub fn git_tree_dirty(source: &Path) -> Option<bool> {
    git(source, &["--no-optional-locks", "status", "--porcelain"]).map(|out| !out.trim().is_empty())
}

fn git(source: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").arg("-C").arg(source).args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout).ok()
}

/// The machine's load averages over 1, 5 and 15 minutes (`/proc/loadavg`): on a shared
/// machine, how much else wanted the cores while a benchmark ran.
pub fn load_average() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut fields = text.split_whitespace().map(|field| field.parse::<f64>().ok());
    Some([fields.next()??, fields.next()??, fields.next()??])
}

/// The median time between two back-to-back `Instant::now()` calls, in nanoseconds.
pub fn timer_overhead_ns() -> u64 {
    let mut samples: Vec<u64> = (0..10_001)
        .map(|_| {
            let start = Instant::now();
            let end = Instant::now();
            u64::try_from((end - start).as_nanos()).unwrap_or(u64::MAX)
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-1"), Some(2));
        assert_eq!(count_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list(""), None);
    }
}
