//! Independent random streams from one master seed, shared by the neighbourhood runs and the
//! single-house model so both draw a house the same way.

/// Independent random streams derived from the scenario seed.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// Per-house model stream (index = house).
    House = 1,
    /// Weather.
    Weather = 2,
    /// Anomaly scheduling.
    Anomalies = 3,
    /// Room nicknames and sequence numbers (ChaCha20: they must be unpredictable, as live).
    Nicks = 4,
    /// Nickname lifetimes and meter outages of the linkage experiment (index = lifetime × 2³² + house).
    Linkage = 5,
    /// One day of a single house's behaviour in [`crate::HouseModel`] (index = epoch day).
    HouseDay = 6,
}

/// SplitMix64 mixing of (seed, stream, index), so streams do not overlap however seeds are chosen.
pub fn derive_seed(seed: u64, stream: Stream, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add((stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(index.wrapping_mul(0xD1B5_4A32_D192_ED03));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
