//! Running a deterministic simulation seed by seed: the command line every VOPR of this
//! workspace takes, the loop over its seeds, and what a failing seed prints.
//!
//! A VOPR is a test binary with `harness = false` whose `main` hands each seed to a
//! `run(seed, verbose)` of its own. Its command line (after `cargo test -p … --test …
//! --`): `--seeds N` runs N seeds, `--first F` starts at F, `--seed S` (or `USEC_SEED=S`)
//! replays one seed verbosely, `--verbose` traces every seed; whatever else cargo's test
//! runner passes (filters, `--nocapture`) is ignored. `USEC_VOPR_EACH=1` prints each
//! seed's summary.

use std::fmt::{Debug, Display};
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

/// Which seeds to run, from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// The first seed.
    pub first: u64,
    /// How many.
    pub count: u64,
    /// Whether each run traces what it does.
    pub verbose: bool,
}

impl Seeds {
    /// This process's arguments and `USEC_SEED`, with `count` seeds from 0 by default.
    pub fn from_env(count: u64) -> Seeds {
        let seed = std::env::var("USEC_SEED").ok().map(|seed| seed.parse().expect("USEC_SEED is a number"));
        Seeds::parse(count, std::env::args().skip(1), seed)
    }

    /// [`Seeds::from_env`] on given arguments and `USEC_SEED`, which wins over them.
    pub fn parse(count: u64, args: impl IntoIterator<Item = String>, env_seed: Option<u64>) -> Seeds {
        let mut seeds = Seeds { first: 0, count, verbose: false };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let mut number = |what: &str| -> u64 {
                args.next()
                    .and_then(|value| value.parse().ok())
                    .unwrap_or_else(|| panic!("{what} takes a number"))
            };
            match arg.as_str() {
                "--seed" => seeds = Seeds { first: number("--seed"), count: 1, verbose: true },
                "--seeds" => seeds.count = number("--seeds"),
                "--first" => seeds.first = number("--first"),
                "--verbose" => seeds.verbose = true,
                // What cargo's test runner passes along (filters, --nocapture, ...): ignored.
                _ => {}
            }
        }
        if let Some(seed) = env_seed {
            seeds = Seeds { first: seed, count: 1, verbose: true };
        }
        seeds
    }

    /// Runs `run(seed, verbose)` for each seed and hands each summary to `each`, until a
    /// seed fails or panics: then prints `{name}: seed S FAILED: why` (or PANICKED) and
    /// `{name}: replay with: {replay} --seed S` to standard error and returns `None`.
    /// `Some(time taken)` once every seed passed.
    pub fn run<S: Debug, E: Display>(
        &self,
        name: &str,
        replay: &str,
        mut run: impl FnMut(u64, bool) -> Result<S, E>,
        mut each: impl FnMut(&S),
    ) -> Option<Duration> {
        let start = Instant::now();
        let print_each = std::env::var("USEC_VOPR_EACH").is_ok();
        for seed in self.first..self.first.saturating_add(self.count) {
            // The closure is not used again after a panic: nothing it left half done is seen.
            match std::panic::catch_unwind(AssertUnwindSafe(|| run(seed, self.verbose))) {
                Ok(Ok(summary)) => {
                    if print_each {
                        println!("{name}: seed {seed}: {summary:?}");
                    }
                    each(&summary);
                }
                Ok(Err(failure)) => {
                    eprintln!("{name}: seed {seed} FAILED: {failure}");
                    eprintln!("{name}: replay with: {replay} --seed {seed}");
                    return None;
                }
                Err(_) => {
                    eprintln!("{name}: seed {seed} PANICKED (see above)");
                    eprintln!("{name}: replay with: {replay} --seed {seed}");
                    return None;
                }
            }
        }
        Some(start.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_command_line_and_usec_seed() {
        assert_eq!(Seeds::parse(1000, args(""), None), Seeds { first: 0, count: 1000, verbose: false });
        assert_eq!(
            Seeds::parse(1000, args("--nocapture --seeds 5 --first 7 filter"), None),
            Seeds { first: 7, count: 5, verbose: false }
        );
        assert_eq!(Seeds::parse(1000, args("--seed 42"), None), Seeds { first: 42, count: 1, verbose: true });
        assert_eq!(
            Seeds::parse(1000, args("--seeds 5"), Some(9)),
            Seeds { first: 9, count: 1, verbose: true }
        );
    }

    #[test]
    fn a_failing_seed_stops_the_run_and_a_panic_is_caught() {
        let seeds = Seeds { first: 10, count: 5, verbose: false };
        let mut passed = Vec::new();
        let outcome = seeds.run(
            "test",
            "replay",
            |seed, _| if seed == 12 { Err("boom") } else { Ok(seed) },
            |&seed| passed.push(seed),
        );
        assert_eq!((outcome, passed), (None, vec![10, 11]));
        let outcome = seeds.run(
            "test",
            "replay",
            |seed, _| -> Result<u64, &str> {
                assert!(seed < 11);
                Ok(seed)
            },
            |_| {},
        );
        assert_eq!(outcome, None);
        assert!(seeds.run("test", "replay", |seed, _| Ok::<_, &str>(seed), |_| {}).is_some());
    }
}
