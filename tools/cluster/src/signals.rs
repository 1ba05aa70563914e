//! Ctrl-C and friends without a signal handler: the launcher blocks SIGINT, SIGTERM and
//! SIGHUP in every thread (by blocking them before it starts any) and one thread takes
//! them with `sigwait`, turning each into an ordinary message for the main loop.
//!
//! A child inherits the mask across `exec` (the standard library leaves it as it is), and
//! a replica that ignores SIGTERM and SIGHUP is not what anyone expects: replicas are
//! started through the launcher's own executable (`usec-cluster exec-unblocked`), which
//! clears the mask and `exec`s `usec-kv` in its place, same process (see
//! [`crate::process`]).

use anyhow::{Context as _, Result};
use nix::sys::signal::{SigSet, Signal};

/// The signals that stop the launcher.
fn stopping() -> SigSet {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set
}

/// Blocks the stopping signals in this thread, and so in every thread it starts later:
/// call it first thing in `main`.
pub fn block() -> Result<()> {
    stopping().thread_block().context("blocking SIGINT, SIGTERM and SIGHUP")
}

/// Unblocks every signal in this thread (for a process about to `exec` another program).
pub fn unblock_all() -> Result<()> {
    SigSet::empty().thread_set_mask().context("clearing the signal mask")
}

/// Calls `deliver` in a thread of its own for each stopping signal that arrives.
pub fn forward(deliver: impl Fn(Signal) + Send + 'static) {
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || loop {
            match stopping().wait() {
                Ok(signal) => deliver(signal),
                Err(error) => {
                    eprintln!("usec-cluster: waiting for signals failed: {error}");
                    return;
                }
            }
        })
        .expect("spawning the signal thread");
}
