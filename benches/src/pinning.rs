//! Pinning each benchmark process to its own core.
//!
//! A ping-pong between two busy-polling processes measures the fabric only when each has a
//! core to itself; sharing one turns every hand-off into a scheduler time slice. So the
//! initiator and its peer each pin themselves to one core of a [`CorePair`], and a machine
//! with fewer than two usable cores runs unpinned with a loud warning.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

/// The cores of the initiator and of its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorePair {
    /// The core of the process that measures.
    pub initiator: usize,
    /// The core of the peer process.
    pub peer: usize,
}

impl Default for CorePair {
    fn default() -> CorePair {
        CorePair { initiator: 0, peer: 1 }
    }
}

impl fmt::Display for CorePair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.initiator, self.peer)
    }
}

impl FromStr for CorePair {
    type Err = String;

    /// Parses `A,B`: the initiator's core, then the peer's.
    fn from_str(text: &str) -> Result<CorePair, String> {
        let parse = |part: &str| {
            part.trim().parse::<usize>().map_err(|_| format!("{part:?} is not a core number (expected A,B)"))
        };
        let Some((initiator, peer)) = text.split_once(',') else {
            return Err(format!("{text:?}: expected two core numbers A,B"));
        };
        let pair = CorePair { initiator: parse(initiator)?, peer: parse(peer)? };
        if pair.initiator == pair.peer {
            return Err(format!("{text:?}: the two processes need two different cores"));
        }
        Ok(pair)
    }
}

/// The cores this process may run on (its affinity mask). Call it before pinning.
pub fn usable_cores() -> Vec<usize> {
    let mut cores: Vec<usize> =
        core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|core| core.id).collect();
    cores.sort_unstable();
    cores
}

/// Checks `requested` against the usable cores: `Some(pair)` to pin, `None` to run
/// unpinned because there are fewer than two cores (after printing a warning on stderr).
pub fn choose_cores(requested: CorePair, usable: &[usize]) -> Result<Option<CorePair>> {
    if usable.len() < 2 {
        eprintln!(
            "WARNING: only {} usable core(s): running UNPINNED. Two busy-polling processes share \
             a core, so every hand-off waits for the scheduler; these figures are not latencies.",
            usable.len()
        );
        return Ok(None);
    }
    for core in [requested.initiator, requested.peer] {
        if !usable.contains(&core) {
            bail!("core {core} is not usable here (usable cores: {usable:?}); pick others with --cores A,B");
        }
    }
    Ok(Some(requested))
}

/// Where a process ended up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinning {
    /// The core it asked for, if any.
    pub core: Option<usize>,
    /// Whether the affinity call succeeded.
    pub pinned: bool,
}

impl fmt::Display for Pinning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.core, self.pinned) {
            (Some(core), true) => write!(f, "core {core} (pinned)"),
            (Some(core), false) => write!(f, "UNPINNED (pinning to core {core} failed)"),
            (None, _) => write!(f, "UNPINNED"),
        }
    }
}

/// Pins the calling thread to `core` (`None`: leaves it unpinned) and says how it went;
/// a failure is also printed on stderr.
pub fn pin_current_thread(core: Option<usize>) -> Pinning {
    let Some(id) = core else { return Pinning { core: None, pinned: false } };
    let pinned = core_affinity::set_for_current(core_affinity::CoreId { id });
    if !pinned {
        eprintln!("WARNING: could not pin process {} to core {id}; running unpinned", std::process::id());
    }
    Pinning { core: Some(id), pinned }
}

/// Keeps the calling thread off `core` (on every other usable core), so that a helper
/// thread never preempts a loop that busy-polls `core`; leaves it alone if `core` is the
/// only usable one. Whether it worked.
pub fn keep_current_thread_off(core: usize) -> bool {
    use nix::sched::{sched_setaffinity, CpuSet};
    let others: Vec<usize> = usable_cores().into_iter().filter(|&other| other != core).collect();
    if others.is_empty() {
        return false;
    }
    let mut set = CpuSet::new();
    for other in others {
        if set.set(other).is_err() {
            return false;
        }
    }
    sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_pairs_parse_and_refuse_nonsense() {
        assert_eq!("2,3".parse::<CorePair>(), Ok(CorePair { initiator: 2, peer: 3 }));
        assert_eq!(" 1 , 0 ".parse::<CorePair>(), Ok(CorePair { initiator: 1, peer: 0 }));
        for bad in ["", "1", "1,1", "a,b", "1,2,3", "-1,2"] {
            assert!(bad.parse::<CorePair>().is_err(), "{bad:?} accepted");
        }
        assert_eq!(CorePair::default().to_string().parse::<CorePair>(), Ok(CorePair::default()));
    }

    #[test]
    fn too_few_cores_means_unpinned_and_unknown_cores_are_refused() {
        assert_eq!(choose_cores(CorePair::default(), &[0]).unwrap(), None);
        assert!(choose_cores(CorePair { initiator: 0, peer: 7 }, &[0, 1]).is_err());
        assert_eq!(choose_cores(CorePair::default(), &[0, 1]).unwrap(), Some(CorePair::default()));
    }
}
