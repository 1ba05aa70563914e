//! Busy-waiting, as perftest does, but never forever: a wait that makes no progress looks
//! at the control connection now and then, and gives up with one line when the peer has
//! gone or nothing has happened for a long time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use usec_verbs::{Completion, CompletionQueue};

use crate::control::Control;

/// Spins between looks at the clock.
const SPINS_PER_CHECK: u32 = 1 << 14;
/// How long a wait may go without progress before the control connection is checked.
const QUIET_BEFORE_CHECKING: Duration = Duration::from_millis(500);

/// Watches one wait.
#[derive(Debug, Default)]
pub struct Watchdog {
    spins: u32,
    since: Option<Instant>,
}

impl Watchdog {
    /// Called on every empty spin; fails when the peer is gone or the wait stalled.
    #[inline]
    pub fn spin(&mut self, control: &mut Control, waiting_for: &str) -> Result<()> {
        self.spin_at(Instant::now, control, waiting_for)
    }

    /// [`Watchdog::spin`] with the clock given (tests pass a simulated one).
    #[inline]
    pub fn spin_at(
        &mut self,
        now: impl FnOnce() -> Instant,
        control: &mut Control,
        waiting_for: &str,
    ) -> Result<()> {
        self.spins = self.spins.wrapping_add(1);
        if self.spins % SPINS_PER_CHECK != 0 {
            return Ok(());
        }
        self.check(now(), control, waiting_for)
    }

    /// Empty spins so far.
    pub fn spins(&self) -> u32 {
        self.spins
    }

    /// The stall limit is the control step timeout: no run leaves a wait that long without
    /// progress unless the peer is gone, stuck, or running another test.
    #[cold]
    fn check(&mut self, now: Instant, control: &mut Control, waiting_for: &str) -> Result<()> {
        let since = *self.since.get_or_insert(now);
        let quiet = now.saturating_duration_since(since);
        if quiet >= QUIET_BEFORE_CHECKING && control.peer_gone() {
            bail!(
                "the {} stopped (closed the connection) while this side waited for {waiting_for}",
                control.peer_role
            );
        }
        let limit = control.step_timeout();
        if quiet >= limit {
            bail!(
                "no progress for {} s while waiting for {waiting_for} (is the {} alive, and running the same test \
                 with the same options?)",
                limit.as_secs_f64(),
                control.peer_role
            );
        }
        Ok(())
    }
}

/// Waits for one completion on `cq` and checks that it succeeded. `give_up` is asked on
/// every look at the clock; when it says so, returns `None` (a timed run that ended).
pub fn one_completion(
    cq: &mut CompletionQueue,
    control: &mut Control,
    waiting_for: &str,
    mut give_up: impl FnMut() -> bool,
) -> Result<Option<Completion>> {
    let mut batch = [Completion::default(); 1];
    let mut watchdog = Watchdog::default();
    loop {
        if cq.poll(&mut batch) == 1 {
            return checked(batch[0], waiting_for, control).map(Some);
        }
        watchdog.spin(control, waiting_for)?;
        if watchdog.spins % 1024 == 0 && give_up() {
            return Ok(None);
        }
    }
}

/// `completion` if it succeeded, else the error naming what failed. A request usually fails
/// because the peer died; its control connection says so (the kernel closes a dead
/// process's sockets before it reports the exit), and then that is the error.
pub fn checked(completion: Completion, what: &str, control: &mut Control) -> Result<Completion> {
    if completion.is_success() {
        return Ok(completion);
    }
    if control.peer_gone() {
        bail!("the {} stopped: {what} completed with an error: {}", control.peer_role, completion.status);
    }
    bail!("{what} completed with an error: {} (wr_id {})", completion.status, completion.wr_id)
}

/// A byte of registered memory that the peer writes: the last byte of a message, polled
/// through the aligned 8-byte word that holds it.
#[derive(Debug)]
pub struct PolledByte<'a> {
    word: &'a AtomicU64,
    shift: u32,
}

impl<'a> PolledByte<'a> {
    /// The byte at `offset` of `region`.
    pub fn new(region: &'a usec_verbs::Region, offset: u64) -> Result<PolledByte<'a>> {
        let aligned = offset & !7;
        Ok(PolledByte { word: region.atomic_u64(aligned as usize)?, shift: ((offset - aligned) * 8) as u32 })
    }

    /// Its current value.
    #[inline]
    pub fn get(&self) -> u8 {
        (self.word.load(Ordering::Acquire) >> self.shift) as u8
    }

    /// Waits until it reads `value`; `Ok(false)` when `give_up` said so first.
    pub fn wait_for(
        &self,
        value: u8,
        control: &mut Control,
        mut give_up: impl FnMut() -> bool,
    ) -> Result<bool> {
        let mut watchdog = Watchdog::default();
        while self.get() != value {
            watchdog.spin(control, "the peer's WRITE")?;
            if watchdog.spins % 1024 == 0 && give_up() {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The last byte of an outgoing message in registered memory, set through the aligned
/// 8-byte word that holds it (one store instead of a bounds-checked copy: it is on the
/// critical path of every write_lat iteration). The word's other bytes become zero; they
/// are message payload, whose content does not matter, or unused.
#[derive(Debug)]
pub struct MarkedByte<'a> {
    word: &'a AtomicU64,
    shift: u32,
}

impl<'a> MarkedByte<'a> {
    /// The byte at `offset` of `region`.
    pub fn new(region: &'a usec_verbs::Region, offset: u64) -> Result<MarkedByte<'a>> {
        let aligned = offset & !7;
        Ok(MarkedByte { word: region.atomic_u64(aligned as usize)?, shift: ((offset - aligned) * 8) as u32 })
    }

    /// Sets it to `value`.
    #[inline]
    pub fn set(&self, value: u8) {
        self.word.store(u64::from(value) << self.shift, Ordering::Release);
    }
}
