//! What a report says about the run itself: the commit, the build, the cores and the
//! clock, so that every figure can be traced to what measured it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use usec_benches::run_info::{build_profile, cores_online, git_commit, git_tree_dirty};

pub use usec_benches::pinning::usable_cores;

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
            commit: git_commit(source),
            tree_dirty: git_tree_dirty(source),
            build: build_profile().to_string(),
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

/// Pins the calling thread to `core`, which must be usable.
pub fn pin(core: usize, usable: &[usize]) -> anyhow::Result<()> {
    anyhow::ensure!(usable.contains(&core), "core {core} is not usable here (usable cores: {usable:?})");
    anyhow::ensure!(
        core_affinity::set_for_current(core_affinity::CoreId { id: core }),
        "could not pin this process to core {core}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
