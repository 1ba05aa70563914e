//! The atomics of the soft provider's lock-free shared-memory code: std's, or loom's when
//! the crate's tests are built for loom's model checker (`RUSTFLAGS="--cfg loom"`), as
//! crossbeam-utils' `primitive` module does.
//!
//! Loom's atomics are tracked objects, not bytes in memory, so a loom build can only run
//! code over instances it constructed on the heap: the models build receive queue entries
//! and control block lines that way. Memory mapped from another process (a control block,
//! a peer's ring) is std's atomics in every build that talks to one; a loom build runs its
//! models and nothing else.

#[cfg(not(all(loom, test)))]
pub(crate) mod sync {
    pub(crate) mod atomic {
        pub(crate) use std::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
    }
}

#[cfg(all(loom, test))]
pub(crate) mod sync {
    pub(crate) mod atomic {
        pub(crate) use loom::sync::atomic::{fence, AtomicBool, AtomicU32, AtomicU64, Ordering};
    }
}
