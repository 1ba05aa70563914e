//! Back-off between lost rounds: exponential, with full jitter drawn from the caller's
//! seeded RNG (never the wall clock, never a global RNG), so that contending proposers
//! drift apart and one of them gets a round to itself — and a simulation replays exactly.

use rand::RngCore;

/// How long to wait after a lost round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The ceiling of the first wait.
    pub base_ns: u64,
    /// The largest ceiling, however many rounds were lost.
    pub max_ns: u64,
}

impl Default for BackoffConfig {
    /// 2 µs doubling up to 200 µs: a round on a fabric of a few microseconds' round trip
    /// takes two of them, so the first waits already separate most contenders.
    fn default() -> BackoffConfig {
        BackoffConfig { base_ns: 2_000, max_ns: 200_000 }
    }
}

/// Lost rounds in a row, and the wait after the next one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    lost: u32,
}

impl Backoff {
    /// The wait after one more lost round: uniform in `[0, min(max, base × 2^lost)]`.
    pub fn next_wait_ns(&mut self, config: &BackoffConfig, rng: &mut impl RngCore) -> u64 {
        let ceiling = config.base_ns.saturating_mul(1u64 << self.lost.min(40)).min(config.max_ns);
        self.lost = self.lost.saturating_add(1);
        rng.next_u64() % ceiling.saturating_add(1)
    }

    /// A round was won: the next contention starts from the first ceiling again.
    pub fn reset(&mut self) {
        self.lost = 0;
    }

    /// Rounds lost in a row.
    pub fn lost(&self) -> u32 {
        self.lost
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn waits_grow_to_the_ceiling_and_stay_jittered() {
        let config = BackoffConfig { base_ns: 1_000, max_ns: 16_000 };
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut backoff = Backoff::default();
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let lost = backoff.lost();
            let ceiling = (1_000u64 << lost).min(16_000);
            let wait = backoff.next_wait_ns(&config, &mut rng);
            assert!(wait <= ceiling, "{wait} above {ceiling}");
            ceilings.push(ceiling);
        }
        assert_eq!(ceilings, [1_000, 2_000, 4_000, 8_000, 16_000, 16_000, 16_000, 16_000]);
        // Jitter: many draws at the ceiling spread over it.
        let draws: Vec<u64> = (0..200).map(|_| backoff.next_wait_ns(&config, &mut rng)).collect();
        assert!(draws.iter().any(|&wait| wait < 4_000) && draws.iter().any(|&wait| wait > 12_000));
        backoff.reset();
        assert!(backoff.next_wait_ns(&config, &mut rng) <= 1_000);
    }

    #[test]
    fn the_same_seed_gives_the_same_waits() {
        let config = BackoffConfig::default();
        let waits = |seed| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut backoff = Backoff::default();
            (0..10).map(|_| backoff.next_wait_ns(&config, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(waits(3), waits(3));
        assert_ne!(waits(3), waits(4));
    }
}
