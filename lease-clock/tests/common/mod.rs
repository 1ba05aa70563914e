//! What the integration tests share: the seed of a run.

#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// The variable that replays a run: `USEC_SEED=<n> cargo test -p usec-lease-clock`.
pub const SEED_VARIABLE: &str = "USEC_SEED";

/// The seed for `what`: `USEC_SEED` if set, else a fresh one; printed either way, so that
/// a failure can be replayed.
pub fn seed(what: &str) -> u64 {
    let seed = match std::env::var(SEED_VARIABLE) {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("{SEED_VARIABLE}={text:?} is not a u64")),
        Err(_) => {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
            (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
        }
    };
    eprintln!("{what}: seed {seed} (replay with {SEED_VARIABLE}={seed})");
    seed
}
