//! Transformer thermal loading after IEC 60076-7 (difference-equation form, its clause 8.2.2).
//!
//! What ages a transformer's insulation is its winding hot-spot temperature, not one minute of
//! load above the nameplate: oil takes hours to heat (τo = 180 min for a distribution
//! transformer), so a three-minute excursion warms the hot spot a few kelvin while a slow
//! three-hour ramp to 1.3 × rating heats it past its limit. The model integrates the
//! load factor K = load / rating into the top-oil rise and the hot-spot gradient, in steps no
//! longer than a minute (the standard asks for at most half the smallest time constant).

use serde::{Deserialize, Serialize};

/// Thermal characteristics; the defaults are the standard's ONAN distribution transformer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThermalConfig {
    /// Ambient temperature (°C); 20 °C is the standard's yearly weighted reference.
    pub ambient_c: f64,
    /// Top-oil temperature rise over ambient at rated load, in steady state (K).
    pub top_oil_rise_k: f64,
    /// Hot-spot to top-oil gradient at rated load, H·g_r (K).
    pub hot_spot_gradient_k: f64,
    /// Ratio of load losses at rated current to no-load losses, R.
    pub loss_ratio: f64,
    /// Oil exponent x.
    pub oil_exponent: f64,
    /// Winding exponent y.
    pub winding_exponent: f64,
    /// Average oil time constant τo (minutes).
    pub oil_time_constant_min: f64,
    /// Winding time constant τw (minutes).
    pub winding_time_constant_min: f64,
    /// Thermal model constant k11.
    pub k11: f64,
    /// Thermal model constant k21.
    pub k21: f64,
    /// Thermal model constant k22.
    pub k22: f64,
}

impl Default for ThermalConfig {
    fn default() -> Self {
        // IEC 60076-7, table of recommended thermal characteristics: distribution transformer, ONAN.
        // At rated load and 20 °C the hot spot settles at 20 + 55 + 23 = 98 °C, the standard's
        // reference for normal ageing of non-upgraded paper.
        ThermalConfig {
            ambient_c: 20.0,
            top_oil_rise_k: 55.0,
            hot_spot_gradient_k: 23.0,
            loss_ratio: 5.0,
            oil_exponent: 0.8,
            winding_exponent: 1.6,
            oil_time_constant_min: 180.0,
            winding_time_constant_min: 4.0,
            k11: 1.0,
            k21: 1.0,
            k22: 2.0,
        }
    }
}

/// Longest integration step (minutes); half the default winding constant k22·τw is 4 minutes.
/// Shorter time constants shorten it further (see [`HotSpotModel::advance`]).
const MAX_STEP_MIN: f64 = 1.0;

impl ThermalConfig {
    /// The same transformer with its time constants divided by `factor`: demos and live tests
    /// that must show in seconds the heating a real transformer takes hours for.
    pub fn faster(self, factor: f64) -> ThermalConfig {
        let f = if factor.is_finite() && factor > 0.0 {
            factor
        } else {
            1.0
        };
        ThermalConfig {
            oil_time_constant_min: self.oil_time_constant_min / f,
            winding_time_constant_min: self.winding_time_constant_min / f,
            ..self
        }
    }
}

/// Top-oil and hot-spot state of one transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct HotSpotModel {
    config: ThermalConfig,
    /// Top-oil temperature (°C).
    top_oil: f64,
    /// The two hot-spot gradient terms Δθh1, Δθh2 (K).
    rise1: f64,
    rise2: f64,
}

impl HotSpotModel {
    /// A transformer in thermal equilibrium at load factor `k`, so the first minutes are not a cold start.
    pub fn steady(config: ThermalConfig, k: f64) -> Self {
        let mut m = HotSpotModel {
            top_oil: 0.0,
            rise1: 0.0,
            rise2: 0.0,
            config,
        };
        let c = &m.config;
        let gradient = c.hot_spot_gradient_k * k.abs().powf(c.winding_exponent);
        m.top_oil = c.ambient_c + m.ultimate_oil_rise(k);
        m.rise1 = c.k21 * gradient;
        m.rise2 = (c.k21 - 1.0) * gradient;
        m
    }

    /// Steady-state top-oil rise at load factor `k`.
    fn ultimate_oil_rise(&self, k: f64) -> f64 {
        let c = &self.config;
        let r = c.loss_ratio;
        ((1.0 + k * k * r) / (1.0 + r)).powf(c.oil_exponent) * c.top_oil_rise_k
    }

    /// Advances the state by `minutes` at constant load factor `k` (IEC 60076-7 eqs. for Dθo, DΔθh1, DΔθh2).
    pub fn advance(&mut self, k: f64, minutes: f64) {
        let ultimate = self.ultimate_oil_rise(k);
        let c = &self.config;
        let gradient = c.hot_spot_gradient_k * k.abs().powf(c.winding_exponent);
        let oil_tau = c.k11 * c.oil_time_constant_min;
        let w1_tau = c.k22 * c.winding_time_constant_min;
        let w2_tau = c.oil_time_constant_min / c.k22;
        // Explicit steps stay stable and monotone only below half the shortest time constant.
        let shortest = oil_tau.min(w1_tau).min(w2_tau);
        let max_step = if shortest.is_finite() && shortest > 0.0 {
            MAX_STEP_MIN.min(shortest / 2.0)
        } else {
            MAX_STEP_MIN
        };
        let steps = (minutes / max_step).ceil().clamp(1.0, 1e6);
        let dt = minutes / steps;
        for _ in 0..steps as u32 {
            self.top_oil += dt / oil_tau * (ultimate - (self.top_oil - c.ambient_c));
            self.rise1 += dt / w1_tau * (c.k21 * gradient - self.rise1);
            self.rise2 += dt / w2_tau * ((c.k21 - 1.0) * gradient - self.rise2);
        }
    }

    /// Winding hot-spot temperature (°C).
    pub fn hot_spot(&self) -> f64 {
        self.top_oil + self.rise1 - self.rise2
    }

    /// Top-oil temperature (°C).
    pub fn top_oil(&self) -> f64 {
        self.top_oil
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rated_load_settles_at_98_c() {
        // Unloaded, the no-load losses alone lift the oil by 55 K × (1 / (1 + R))^x.
        let mut m = HotSpotModel::steady(ThermalConfig::default(), 0.0);
        let idle = 20.0 + 55.0 * (1.0f64 / 6.0).powf(0.8);
        assert!((m.hot_spot() - idle).abs() < 1e-9, "{}", m.hot_spot());
        m.advance(1.0, 24.0 * 60.0);
        assert!((m.hot_spot() - 98.0).abs() < 0.1, "{}", m.hot_spot());
        assert!(
            (HotSpotModel::steady(ThermalConfig::default(), 1.0).hot_spot() - 98.0).abs() < 1e-9
        );
    }

    #[test]
    fn short_excursion_warms_little_and_a_ramp_heats() {
        // Three minutes at 1.5 × rating from an evening at 0.8: the winding warms, the oil hardly.
        let mut m = HotSpotModel::steady(ThermalConfig::default(), 0.8);
        let before = m.hot_spot();
        m.advance(1.5, 3.0);
        let after = m.hot_spot();
        assert!(after - before < 20.0 && after < 98.0, "{before} -> {after}");
        // Three hours rising linearly from 0.6 to 1.3 × rating end above the 98 °C reference.
        let mut m = HotSpotModel::steady(ThermalConfig::default(), 0.6);
        for minute in 0..180 {
            m.advance(0.6 + 0.7 * f64::from(minute) / 180.0, 1.0);
        }
        assert!(m.hot_spot() > 98.0, "{}", m.hot_spot());
    }

    #[test]
    fn k21_above_one_overshoots_then_settles() {
        // With k21 = 2 (the standard's ONAF/large-unit value) the hot spot overshoots after a step.
        let c = ThermalConfig {
            k21: 2.0,
            ..ThermalConfig::default()
        };
        let mut m = HotSpotModel::steady(c.clone(), 0.5);
        let gradient = |m: &HotSpotModel| m.hot_spot() - m.top_oil();
        let mut peak = f64::MIN;
        for _ in 0..(24 * 60) {
            m.advance(1.0, 1.0);
            peak = peak.max(gradient(&m));
        }
        assert!(
            peak > gradient(&m) + 5.0,
            "peak {peak}, end {}",
            gradient(&m)
        );
        assert!((gradient(&m) - 23.0).abs() < 0.1, "{}", gradient(&m));
        assert!((m.hot_spot() - HotSpotModel::steady(c, 1.0).hot_spot()).abs() < 0.5);
    }

    proptest! {
        #[test]
        fn a_faster_transformer_heats_in_seconds_and_stays_bounded(k in 0.0f64..2.5, secs in 1u32..60) {
            let cfg = ThermalConfig::default();
            let mut fast = HotSpotModel::steady(cfg.clone().faster(720.0), 0.2);
            for _ in 0..secs {
                fast.advance(k, 1.0 / 60.0);
            }
            // Between the hot spots of settling at 0.2 and at k (or above both): it moves towards
            // k's without overshooting, although the steps are as long as the oil's new constant.
            let low = HotSpotModel::steady(cfg.clone(), 0.2).hot_spot();
            let high = HotSpotModel::steady(cfg.clone(), k).hot_spot();
            prop_assert!(fast.hot_spot() <= low.max(high) + 1e-6, "{} > {}", fast.hot_spot(), low.max(high));
            prop_assert!(fast.hot_spot() >= low.min(high) - 1e-6);
            // A minute at 2 × rating from 0.2 heats it past the 120 °C limit.
            if k >= 2.0 && secs >= 59 {
                prop_assert!(fast.hot_spot() >= 120.0, "{}", fast.hot_spot());
            }
        }

        #[test]
        fn step_size_does_not_matter(k in 0.0f64..2.0, minutes in 1u32..240) {
            let mut fine = HotSpotModel::steady(ThermalConfig::default(), 0.7);
            let mut coarse = fine.clone();
            for _ in 0..minutes {
                fine.advance(k, 1.0);
            }
            coarse.advance(k, f64::from(minutes));
            prop_assert!((fine.hot_spot() - coarse.hot_spot()).abs() < 1e-9);
        }

        #[test]
        fn hotter_load_never_cools(k in 0.0f64..2.0, extra in 0.0f64..1.0) {
            let mut a = HotSpotModel::steady(ThermalConfig::default(), 0.5);
            let mut b = a.clone();
            a.advance(k, 30.0);
            b.advance(k + extra, 30.0);
            prop_assert!(b.hot_spot() >= a.hot_spot() - 1e-9);
        }
    }
}
