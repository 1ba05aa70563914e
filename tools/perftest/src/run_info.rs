//! What a report says about the run itself: the commit, the build, the cores and the
//! clock, so that every figure can be traced to what measured it.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Facts about the run that come with its figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// `git rev-parse --short HEAD` of the source tree, or `unknown`.
    pub commit: String,
    /// Whether the tree differs from the commit; `None` when git could not say.
    pub tree_dirty: Option<bool>,
    /// `release` or `debug`; figures from debug builds are not to be reported.
    pub build: String,
    /// Cores online.
    pub cores_online: Option<usize>,
    /// Cores this process could use when it started.
    pub cores_usable: usize,
    /// The core this process pinned itself to, if it did.
    pub pinned_core: Option<usize>,
    /// How samples are timed.
    pub timer: String,
}

impl RunInfo {
    /// Collects the facts. `pinned_core` is where [`pin`] put the process; `timer` says
    /// how samples are timed.
    pub fn collect(cores_usable: usize, pinned_core: Option<usize>, timer: String) -> RunInfo {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"));
        RunInfo {
            commit: git(source, &["rev-parse", "--short", "HEAD"])
                .map(|out| out.trim().to_string())
                .filter(|hash| !hash.is_empty())
                .unwrap_or_else(|| "unknown".to_string()),
            // --no-optional-locks: never rewrite the index of a tree others work in.
            tree_dirty: git(source, &["--no-optional-locks", "status", "--porcelain"])
                .map(|out| !out.trim().is_empty()),
            build: if cfg!(debug_assertions) { "debug" } else { "release" }.to_string(),
            cores_online: cores_online(),
            cores_usable,
            pinned_core,
            timer,
        }
    }

    /// The commit, marked when the tree had changes.
    pub fn commit_label(&self) -> String {
        match self.tree_dirty {
            Some(true) => format!("{} (+ uncommitted changes)", self.commit),
            _ => self.commit.clone(),
        }
    }

    /// The cores line of the info block.
    pub fn cores_label(&self) -> String {
        let online = self.cores_online.map_or_else(|| "?".to_string(), |count| count.to_string());
        let pinning = match self.pinned_core {
            Some(core) => format!("pinned to core {core}"),
            None => "unpinned".to_string(),
        };
        format!("{online} online, {} usable, {pinning}", self.cores_usable)
    }
}

/// The cores this process may run on.
pub fn usable_cores() -> Vec<usize> {
    let mut cores: Vec<usize> =
        core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|core| core.id).collect();
    cores.sort_unstable();
    cores
}

/// Pins the calling thread to `core`, which must be usable.
pub fn pin(core: usize, usable: &[usize]) -> anyhow::Result<()> {
    anyhow::ensure!(usable.contains(&core), "core {core} is not usable here (usable cores: {usable:?})");
    anyhow::ensure!(
        core_affinity::set_for_current(core_affinity::CoreId { id: core }),
        "could not pin this process to core {core}"
    );
    Ok(())
}

fn cores_online() -> Option<usize> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/online").ok()?;
    count_cpu_list(list.trim())
}

/// Counts the CPUs of a kernel CPU list such as `0-3,6`.
fn count_cpu_list(list: &str) -> Option<usize> {
    list.split(',').try_fold(0, |count, range| {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let (first, last): (usize, usize) = (first.parse().ok()?, last.parse().ok()?);
        Some(count + last.checked_sub(first)? + 1)
    })
}

fn git(source: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git").arg("-C").arg(source).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8(output.stdout).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count() {
        assert_eq!(count_cpu_list("0"), Some(1));
        assert_eq!(count_cpu_list("0-3,6,8-9"), Some(7));
        assert_eq!(count_cpu_list("3-1"), None);
        assert_eq!(count_cpu_list(""), None);
    }

    #[test]
    fn labels_say_what_was_used() {
        let mut info = RunInfo {
            commit: "abc1234".into(),
            tree_dirty: Some(false),
            build: "release".into(),
            cores_online: Some(2),
            cores_usable: 2,
            pinned_core: None,
            timer: "CLOCK_MONOTONIC, ns".into(),
        };
        assert_eq!(info.commit_label(), "abc1234");
        assert_eq!(info.cores_label(), "2 online, 2 usable, unpinned");
        info.tree_dirty = Some(true);
        info.pinned_core = Some(1);
        assert_eq!(info.commit_label(), "abc1234 (+ uncommitted changes)");
        assert_eq!(info.cores_label(), "2 online, 2 usable, pinned to core 1");
    }
}
