//! Distributed discrete-Laplace noise, so the published sum is ε-DP per interval.
//!
//! The discrete Laplace distribution `DL(α)`, `P(z) ∝ α^|z|`, is the difference of two
//! geometric variables, and a geometric variable is a negative binomial `NB(1, α)`, which is
//! infinitely divisible: `NB(1, α) = Σ_{i=1..t} NB(1/t, α)` (Pólya split). Each meter adds
//! `NB(1/t, α) − NB(1/t, α)` to its quantised reading, with `t` the cohort's survivor
//! threshold. A round only unmasks with `s ≥ t` survivors, whose noise sums to
//! `NB(s/t, α) − NB(s/t, α)` = `DL(α)` plus independent extra noise; adding independent
//! noise is post-processing, so the sum is ε-DP with `α = exp(−ε/Δ)` for sensitivity `Δ`
//! quanta. `NB(r, α)` is drawn as `Poisson(Gamma(r, α/(1−α)))`.

use gridmuc_core::Watts;
use rand::Rng;
use rand_distr::{Distribution, Gamma, Poisson};

use crate::{MaskError, QUANTUM};

/// Largest Gamma scale accepted, keeping Poisson rates far inside `rand_distr`'s range.
const MAX_SCALE: f64 = 1e12;

/// Privacy budget per interval and the change in one house it hides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpConfig {
    epsilon: f64,
    sensitivity: Watts,
}

impl DpConfig {
    /// Validated configuration: `epsilon > 0` per interval against a change of up to
    /// `sensitivity` in one house's reading (e.g. `Watts::from_kw(1.0)`).
    pub fn new(epsilon: f64, sensitivity: Watts) -> Result<Self, MaskError> {
        if !(epsilon.is_finite() && epsilon > 0.0) {
            return Err(MaskError::BadDpConfig("epsilon must be a positive number"));
        }
        if sensitivity < QUANTUM {
            return Err(MaskError::BadDpConfig(
                "sensitivity must be at least one quantum",
            ));
        }
        let config = DpConfig {
            epsilon,
            sensitivity,
        };
        if config.gamma_scale() > MAX_SCALE {
            return Err(MaskError::BadDpConfig(
                "epsilon too small for this sensitivity",
            ));
        }
        Ok(config)
    }

    /// ε per interval.
    pub fn epsilon(&self) -> f64 {
        self.epsilon
    }

    /// Sensitivity in quanta, rounded up so the guarantee never weakens.
    pub fn sensitivity_quanta(&self) -> u64 {
        self.sensitivity
            .0
            .unsigned_abs()
            .div_ceil(QUANTUM.0.unsigned_abs())
    }

    /// `α = exp(−ε/Δ)`, the discrete Laplace parameter of the summed noise.
    pub fn alpha(&self) -> f64 {
        (-self.epsilon / self.sensitivity_quanta() as f64).exp()
    }

    fn gamma_scale(&self) -> f64 {
        let a = self.alpha();
        a / (1.0 - a)
    }

    /// Variance in W² of the noise in a sum of `contributors` meters, each drawing shares for
    /// `threshold`: `(contributors/threshold) · 2α/(1−α)² · quantum²`.
    pub fn sum_variance(&self, contributors: usize, threshold: u16) -> f64 {
        let a = self.alpha();
        let q = QUANTUM.as_f64();
        contributors as f64 / f64::from(threshold) * 2.0 * a / ((1.0 - a) * (1.0 - a)) * q * q
    }
}

/// One meter's noise source, so tests and simulations draw exactly what meters add.
#[derive(Debug, Clone)]
pub struct NoiseShare {
    gamma: Gamma<f64>,
}

impl NoiseShare {
    /// Noise shares for a cohort whose rounds need at least `threshold` survivors.
    pub fn new(config: &DpConfig, threshold: u16) -> Result<Self, MaskError> {
        let shape = 1.0 / f64::from(threshold.max(1));
        let gamma = Gamma::new(shape, config.gamma_scale())
            .map_err(|_| MaskError::BadDpConfig("noise distribution out of range"))?;
        Ok(NoiseShare { gamma })
    }

    /// One share in quanta: `NB(1/t, α) − NB(1/t, α)`.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> i64 {
        self.polya(rng) - self.polya(rng)
    }

    fn polya<R: Rng + ?Sized>(&self, rng: &mut R) -> i64 {
        let rate = self.gamma.sample(rng);
        if rate <= 0.0 {
            return 0;
        }
        // Poisson::new only fails for rates beyond 1e19, which MAX_SCALE rules out; such a
        // Poisson variable would equal its rate to 10 significant digits anyway.
        Poisson::new(rate).map_or(rate, |p| p.sample(rng)) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn config_is_validated() {
        assert!(DpConfig::new(0.0, Watts(1000)).is_err());
        assert!(DpConfig::new(f64::NAN, Watts(1000)).is_err());
        assert!(DpConfig::new(1.0, Watts(5)).is_err());
        assert!(DpConfig::new(1e-15, Watts(25_000)).is_err());
        let c = DpConfig::new(1.0, Watts(1005)).unwrap();
        assert_eq!(c.sensitivity_quanta(), 101);
    }

    /// t shares must sum to discrete Laplace: variance 2α/(1−α)², and the tails must match
    /// P(|Z| ≥ k) = 2α^k/(1+α).
    #[test]
    fn t_shares_sum_to_discrete_laplace_with_configured_variance() {
        let config = DpConfig::new(1.0, Watts::from_kw(0.2)).unwrap(); // Δ = 20 quanta
        let t = 20;
        let share = NoiseShare::new(&config, t).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let trials = 20_000;
        let sums: Vec<f64> = (0..trials)
            .map(|_| (0..t).map(|_| share.sample(&mut rng)).sum::<i64>() as f64)
            .collect();
        let mean = sums.iter().sum::<f64>() / trials as f64;
        let var = sums.iter().map(|s| (s - mean) * (s - mean)).sum::<f64>() / (trials - 1) as f64;
        let a = config.alpha();
        let expected = 2.0 * a / ((1.0 - a) * (1.0 - a));
        assert!(
            (expected - 799.83).abs() < 0.01,
            "variance for ε=1, Δ=20: {expected}"
        );
        // Sample variance of a Laplace-like law has relative sd ≈ √(5/N) ≈ 1.6 %; allow 6 %.
        assert!(
            (var / expected - 1.0).abs() < 0.06,
            "variance {var} vs {expected}"
        );
        assert!(
            mean.abs() < 5.0 * (expected / trials as f64).sqrt(),
            "mean {mean}"
        );
        let k = 40.0;
        let tail = sums.iter().filter(|s| s.abs() >= k).count() as f64 / trials as f64;
        let expected_tail = 2.0 * a.powf(k) / (1.0 + a);
        assert!(
            (tail / expected_tail - 1.0).abs() < 0.08,
            "tail {tail} vs {expected_tail}"
        );
        assert_eq!(config.sum_variance(t.into(), t), expected * 100.0);
    }
}
