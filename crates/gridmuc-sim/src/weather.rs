//! Neighbourhood-wide weather for one day: outdoor temperature and global horizontal irradiance.
//!
//! Everyone on one feeder shares the same sky, so weather is drawn once per day and read by all
//! houses. Temperature = seasonal cosine + persistent daily anomaly (AR(1)) + diurnal cosine.
//! Irradiance = Haurwitz clear-sky model × Kasten–Czeplak cloud attenuation, with cloud cover
//! that drifts minute by minute (AR(1)) around a daily mean drawn from a Beta distribution.

use crate::MINUTES_PER_DAY;
use crate::calendar::SimDay;
use rand::Rng;
use serde::Deserialize;
use statrs::distribution::{Beta, ContinuousCDF, Normal};
use std::f64::consts::PI;

/// Climate parameters from the scenario's `[weather]` table; defaults are a mid-latitude UK town.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WeatherConfig {
    /// Latitude in degrees north, for the sun's path.
    pub latitude: f64,
    /// Annual mean outdoor temperature (°C).
    pub annual_mean_c: f64,
    /// Half the summer–winter difference of daily means (°C).
    pub annual_amplitude_c: f64,
    /// Half the day–night difference (°C).
    pub diurnal_amplitude_c: f64,
    /// Shift applied to every temperature, e.g. -6 for a cold snap scenario (°C).
    pub offset_c: f64,
    /// Standard deviation of the day-to-day temperature anomaly (°C).
    pub daily_sd_c: f64,
    /// Mean cloud cover in [0, 1]; 0 is clear sky every day.
    pub cloudiness: f64,
}

impl Default for WeatherConfig {
    fn default() -> Self {
        WeatherConfig {
            latitude: 52.5,
            annual_mean_c: 10.0,
            annual_amplitude_c: 6.5,
            diurnal_amplitude_c: 3.5,
            offset_c: 0.0,
            daily_sd_c: 2.0,
            cloudiness: 0.6,
        }
    }
}

/// One day of weather at one-minute resolution (irradiance) and ten-minute resolution (temperature).
#[derive(Clone, Debug)]
pub struct DayWeather {
    /// Outdoor temperature per 10-minute slot (°C); buildings smooth anything faster.
    pub temp_c: [f32; 144],
    /// Global horizontal irradiance per minute (W/m²), drives PV and lighting.
    pub ghi: Vec<f32>,
    /// Clear-sky irradiance per minute (W/m²), kept for charts and tests.
    pub clear_sky: Vec<f32>,
}

/// Draws successive days of weather with persistence between days.
#[derive(Clone, Debug)]
pub struct WeatherGen {
    config: WeatherConfig,
    anomaly_c: f64,
    cloud: f64,
}

/// Haurwitz clear-sky GHI for the sun's elevation sine (W/m²).
fn haurwitz(sin_elev: f64) -> f64 {
    if sin_elev <= 0.0 {
        0.0
    } else {
        1098.0 * sin_elev * (-0.057 / sin_elev).exp()
    }
}

impl WeatherGen {
    /// Starts a weather sequence; the first day's anomaly is drawn fresh.
    pub fn new(config: WeatherConfig) -> WeatherGen {
        let cloud = config.cloudiness.clamp(0.0, 1.0);
        WeatherGen {
            config,
            anomaly_c: 0.0,
            cloud,
        }
    }

    /// The next day's weather; `rng` is the scenario's weather stream.
    pub fn day<R: Rng>(&mut self, day: SimDay, rng: &mut R) -> DayWeather {
        let c = &self.config;
        let std_normal = Normal::standard();
        let z = |rng: &mut R| std_normal.inverse_cdf(rng.random_range(1e-9..1.0 - 1e-9));
        // Daily temperature anomaly with persistence (weather regimes last several days).
        self.anomaly_c = 0.7 * self.anomaly_c + (1.0f64 - 0.49).sqrt() * c.daily_sd_c * z(rng);
        let doy = f64::from(day.day_of_year);
        let seasonal =
            c.annual_mean_c - c.annual_amplitude_c * (2.0 * PI * (doy - 20.0) / 365.0).cos();
        let mut temp_c = [0f32; 144];
        for (slot, t) in temp_c.iter_mut().enumerate() {
            let hour = (slot as f64 + 0.5) / 6.0;
            let diurnal = c.diurnal_amplitude_c * (2.0 * PI * (hour - 15.0) / 24.0).cos();
            *t = (seasonal + self.anomaly_c + diurnal + c.offset_c) as f32;
        }
        // Daily mean cloud cover from a Beta around the configured mean.
        let mean = c.cloudiness.clamp(0.02, 0.98);
        let k = 3.0;
        let day_cloud = Beta::new(mean * k, (1.0 - mean) * k)
            .map(|b| b.inverse_cdf(rng.random_range(1e-6..1.0 - 1e-6)))
            .unwrap_or(mean);
        let decl = 23.44f64.to_radians() * (2.0 * PI * (284.0 + doy) / 365.0).sin();
        let lat = c.latitude.to_radians();
        let (sd, cd, sl, cl) = (decl.sin(), decl.cos(), lat.sin(), lat.cos());
        let variability = 0.8 * (day_cloud * (1.0 - day_cloud)).sqrt();
        let mut ghi = Vec::with_capacity(MINUTES_PER_DAY);
        let mut clear_sky = Vec::with_capacity(MINUTES_PER_DAY);
        let mut cloud = 0.5 * self.cloud + 0.5 * day_cloud;
        for minute in 0..MINUTES_PER_DAY {
            let hour_angle = (minute as f64 / 60.0 - 12.0) * 15f64.to_radians();
            let clear = haurwitz(sl * sd + cl * cd * hour_angle.cos());
            // Cloud cover random-walks back towards the day's mean.
            cloud += 0.05 * (day_cloud - cloud) + 0.06 * variability * z(rng);
            cloud = cloud.clamp(0.0, 1.0);
            let attenuation = 1.0 - 0.75 * cloud.powf(3.4);
            clear_sky.push(clear as f32);
            ghi.push((clear * attenuation) as f32);
        }
        self.cloud = cloud;
        DayWeather {
            temp_c,
            ghi,
            clear_sky,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn winter_is_colder_and_darker_than_summer() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut w = WeatherGen::new(WeatherConfig::default());
        let jan = w.day(SimDay::new(20_470), &mut rng);
        let jul = w.day(SimDay::new(20_650), &mut rng);
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        assert!(mean(&jan.temp_c) + 8.0 < mean(&jul.temp_c));
        assert!(mean(&jan.clear_sky) * 2.0 < mean(&jul.clear_sky));
        assert_eq!(jan.ghi[0], 0.0, "no sun at midnight");
        assert!(jul.clear_sky[12 * 60] > 700.0);
    }
}
