//! One-way latency of simulated messages, sampled per message from the fabric's seeded RNG.

use rand::{Rng, RngCore};

/// The shape of the base latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LatencyDistribution {
    /// Always `ns`.
    Fixed {
        /// The latency.
        ns: u64,
    },
    /// Uniform over `min_ns..=max_ns` (the bounds are swapped if given in the wrong order).
    Uniform {
        /// Smallest latency.
        min_ns: u64,
        /// Largest latency.
        max_ns: u64,
    },
    /// `min_ns` plus an exponentially distributed extra of mean `mean_extra_ns`: most
    /// messages come early, a few very late (capped at about 37 × the mean).
    Exponential {
        /// Smallest latency.
        min_ns: u64,
        /// Mean of the exponential part.
        mean_extra_ns: u64,
    },
}

/// Rare spikes on top of the base latency: one message in `one_in` (on average) takes an
/// extra `min_extra_ns..=max_extra_ns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LatencySpikes {
    /// How rare a spike is (0 means never).
    pub one_in: u32,
    /// Smallest extra delay of a spike.
    pub min_extra_ns: u64,
    /// Largest extra delay of a spike.
    pub max_extra_ns: u64,
}

/// The one-way latency of a message: a base sampled from `distribution`, plus
/// `ns_per_kib` for every KiB carried (so a large WRITE, or a READ's response, takes
/// longer), plus the occasional spike.
///
/// ```
/// use usec_verbs::sim::LatencyModel;
///
/// // 1 µs ± 0.5 µs, 100 Gb/s worth of serialisation, and a 50 µs hiccup every 10 000 messages.
/// let model = LatencyModel::uniform(500, 1_500).with_ns_per_kib(80).with_spikes(10_000, 40_000, 60_000);
/// assert_eq!(model, LatencyModel::default().with_spikes(10_000, 40_000, 60_000));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LatencyModel {
    /// The base latency of a message.
    pub distribution: LatencyDistribution,
    /// Extra nanoseconds per 1024 bytes of payload (rounded down per message).
    pub ns_per_kib: u64,
    /// Rare extra delays, if any.
    pub spikes: Option<LatencySpikes>,
}

impl Default for LatencyModel {
    /// Uniform 500..=1500 ns, 80 ns per KiB (about 100 Gb/s), no spikes.
    fn default() -> LatencyModel {
        LatencyModel::uniform(500, 1_500).with_ns_per_kib(80)
    }
}

impl LatencyModel {
    /// Always `ns`, whatever the size (no per-byte cost until [`Self::with_ns_per_kib`]).
    pub fn fixed(ns: u64) -> LatencyModel {
        LatencyModel::from_distribution(LatencyDistribution::Fixed { ns })
    }

    /// Uniform over `min_ns..=max_ns`, no per-byte cost.
    pub fn uniform(min_ns: u64, max_ns: u64) -> LatencyModel {
        LatencyModel::from_distribution(LatencyDistribution::Uniform { min_ns, max_ns })
    }

    /// `min_ns` plus an exponential tail of mean `mean_extra_ns`, no per-byte cost.
    pub fn exponential(min_ns: u64, mean_extra_ns: u64) -> LatencyModel {
        LatencyModel::from_distribution(LatencyDistribution::Exponential { min_ns, mean_extra_ns })
    }

    /// The same model costing `ns_per_kib` nanoseconds per KiB of payload.
    pub fn with_ns_per_kib(mut self, ns_per_kib: u64) -> LatencyModel {
        self.ns_per_kib = ns_per_kib;
        self
    }

    /// The same model with a spike of `min_extra_ns..=max_extra_ns` once in `one_in`
    /// messages on average.
    pub fn with_spikes(mut self, one_in: u32, min_extra_ns: u64, max_extra_ns: u64) -> LatencyModel {
        self.spikes = Some(LatencySpikes { one_in, min_extra_ns, max_extra_ns });
        self
    }

    fn from_distribution(distribution: LatencyDistribution) -> LatencyModel {
        LatencyModel { distribution, ns_per_kib: 0, spikes: None }
    }

    /// A latency for a message carrying `bytes` of payload.
    pub(crate) fn sample(&self, rng: &mut impl RngCore, bytes: u64) -> u64 {
        let base = match self.distribution {
            LatencyDistribution::Fixed { ns } => ns,
            LatencyDistribution::Uniform { min_ns, max_ns } => uniform(rng, min_ns, max_ns),
            LatencyDistribution::Exponential { min_ns, mean_extra_ns } => {
                min_ns.saturating_add(exponential(rng, mean_extra_ns))
            }
        };
        let per_byte = u128::from(bytes) * u128::from(self.ns_per_kib) / 1024;
        let per_byte = u64::try_from(per_byte).unwrap_or(u64::MAX);
        let spike = match self.spikes {
            Some(spikes) if spikes.one_in > 0 && rng.gen_range(0..spikes.one_in) == 0 => {
                uniform(rng, spikes.min_extra_ns, spikes.max_extra_ns)
            }
            _ => 0,
        };
        base.saturating_add(per_byte).saturating_add(spike)
    }
}

fn uniform(rng: &mut impl RngCore, a: u64, b: u64) -> u64 {
    rng.gen_range(a.min(b)..=a.max(b))
}

/// An exponential sample of mean `mean`, from IEEE basic arithmetic only (no libm), so a
/// seed gives the same run on every platform.
fn exponential(rng: &mut impl RngCore, mean: u64) -> u64 {
    // Uniform in (0, 1] with 53 bits: never 0, so the logarithm is finite (at most 53 ln 2).
    let unit = ((rng.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
    (negative_ln(unit) * mean as f64) as u64
}

/// `-ln(x)` for a normal `x` in (0, 1]: x = m·2^e with m in [1, 2), ln m = 2·atanh(z) with
/// z = (m - 1)/(m + 1) ≤ 1/3, whose series converges to f64 precision in 24 terms.
fn negative_ln(x: f64) -> f64 {
    assert!(x > 0.0 && x <= 1.0 && x.is_normal(), "negative_ln({x}) outside (0, 1]");
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mantissa = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    let z = (mantissa - 1.0) / (mantissa + 1.0);
    let z_squared = z * z;
    let mut power = z;
    let mut series = 0.0;
    let mut denominator = 1.0;
    for _ in 0..24 {
        series += power / denominator;
        power *= z_squared;
        denominator += 2.0;
    }
    -(exponent as f64 * std::f64::consts::LN_2 + 2.0 * series)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    #[test]
    fn the_logarithm_matches_std() {
        for x in [1.0, 0.5, 0.75, 0.1, 1e-3, 1e-9, 2f64.powi(-53), 0.999_999] {
            let ours = negative_ln(x);
            let reference = -x.ln();
            assert!(
                (ours - reference).abs() <= 1e-12 * reference.abs().max(1.0),
                "{x}: {ours} vs {reference}"
            );
        }
    }

    #[test]
    fn samples_stay_in_their_ranges() {
        let seed = 7;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        assert_eq!(LatencyModel::fixed(42).sample(&mut rng, 1 << 20), 42);
        assert_eq!(LatencyModel::fixed(42).with_ns_per_kib(100).sample(&mut rng, 2048), 242);
        let uniform = LatencyModel::uniform(100, 200);
        let exponential = LatencyModel::exponential(1_000, 500);
        let mut sum = 0u64;
        let samples = 20_000u64;
        for _ in 0..samples {
            let latency = uniform.sample(&mut rng, 0);
            assert!((100..=200).contains(&latency), "seed {seed}: {latency}");
            let latency = exponential.sample(&mut rng, 0);
            assert!((1_000..=1_000 + 37 * 500).contains(&latency), "seed {seed}: {latency}");
            sum += latency - 1_000;
        }
        let mean = sum / samples;
        assert!((450..=550).contains(&mean), "seed {seed}: exponential mean {mean}");
    }

    #[test]
    fn spikes_are_rare_and_bounded() {
        let seed = 11;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let model = LatencyModel::fixed(10).with_spikes(100, 1_000, 2_000);
        let spikes = (0..100_000).map(|_| model.sample(&mut rng, 0)).filter(|&latency| latency > 10).count();
        assert!((700..=1_300).contains(&spikes), "seed {seed}: {spikes} spikes");
    }
}
