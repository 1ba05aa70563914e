//! [`PeerProbe`]: what a provider can tell, when asked, of the process at the other end of
//! a QP.

/// The state of the process at the other end of a connected QP, as the provider sees it
/// on the spot ([`crate::QueuePair::probe_peer`]).
///
/// The synchronous counterpart of [`crate::AsyncEventKind::PeerLost`]: that event comes
/// once the process has exited — on Linux after the kernel has torn its memory down, a
/// couple of hundred microseconds after a SIGKILL on a virtual machine — while a killed
/// process is `Exiting` as soon as the signal is delivered, and a stopped one `Stopped`
/// as soon as it stops. A failure detector that finds a heartbeat unchanged asks, and
/// suspects at once on certain evidence instead of waiting for more misses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerProbe {
    /// It exists, and runs or waits for a CPU.
    Alive,
    /// It is stopped (SIGSTOP, a debugger; the sim's pause): it runs no code until
    /// resumed.
    Stopped,
    /// It is exiting or gone (the sim's crash): it never runs code of its own again.
    Exiting,
    /// The provider cannot tell: a NIC sees no process across the network, or the QP is
    /// not connected.
    Unknown,
}
