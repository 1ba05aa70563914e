//! Busy-waiting with a stall limit, so a dead or wedged peer ends the run with an error
//! instead of spinning forever.
//!
//! The loop is a bare load loop, like perftest's `while (*poll_buf != n)`: no
//! `spin_loop()` hint. On recent Intel cores PAUSE takes over a hundred cycles, which would
//! add tens of nanoseconds to every hand-off and inflate the shared-memory floor the
//! benchmarks compare against.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// How long a wait may see no progress before it gives up.
pub const STALL_LIMIT: Duration = Duration::from_secs(10);

/// Spins this many times between looks at the clock.
const SPINS_PER_CLOCK_CHECK: u32 = 1 << 16;

/// Calls `done` until it returns true. Every 65,536 calls it looks at
/// the clock and runs `still_alive`; fails when `still_alive` does, or when [`STALL_LIMIT`]
/// has passed, with `describe()` saying what was awaited.
#[inline]
pub fn spin_until(
    mut done: impl FnMut() -> Result<bool>,
    mut still_alive: impl FnMut() -> Result<()>,
    describe: impl FnOnce() -> String,
) -> Result<()> {
    let mut spins: u32 = 0;
    let mut first_check: Option<Instant> = None;
    while !done()? {
        spins = spins.wrapping_add(1);
        if spins % SPINS_PER_CLOCK_CHECK == 0 {
            still_alive()?;
            let since = *first_check.get_or_insert_with(Instant::now);
            if since.elapsed() >= STALL_LIMIT {
                bail!("no progress for {STALL_LIMIT:?} while waiting for {}", describe());
            }
        }
    }
    Ok(())
}

/// A `still_alive` for [`spin_until`] that never fails.
pub fn always_alive() -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_once_done_and_fails_when_the_other_side_dies() {
        let mut calls = 0;
        spin_until(
            || {
                calls += 1;
                Ok(calls == 3)
            },
            always_alive,
            || "three calls".into(),
        )
        .unwrap();
        assert_eq!(calls, 3);
        let error = spin_until(|| Ok(false), || bail!("peer exited"), || "nothing".into()).unwrap_err();
        assert!(error.to_string().contains("peer exited"));
    }
}
