//! In-process cost measurement for `gridmuc bench masked --houses N`.
//!
//! The only place in this crate that reads a clock, and only to time the protocol: it uses
//! the thread's CPU clock, so figures are CPU time even on a shared, loaded machine. It runs
//! every role in one process (single-threaded), checks every sum it unmasks, and returns
//! the figures for the CLI to print. Build with `--release`.

use std::hint::black_box;
use std::time::Duration;

use cpu_time::ThreadTime;

use gridmuc_core::Watts;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::crypto::{self, Pair};
use crate::{
    DpConfig, MaskError, MaskMessage, MaskedAggregator, MaskedMeter, NoiseShare, survivor_threshold,
};

/// Costs of masked mode for one neighbourhood, as measured by [`bench_masked`].
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedBench {
    /// Cohort size.
    pub houses: u16,
    /// Rounds masked for the per-round figures.
    pub rounds: u32,
    /// Meter CPU per house, one-off: roster → sealed shares, plus opening its bundle.
    pub enroll_us_per_house: f64,
    /// Bot CPU, one-off: roster, checking uploads, routing bundles.
    pub enroll_bot_ms: f64,
    /// Bytes a meter uploads at enrollment (key + shares, binary).
    pub enroll_upload_bytes_per_house: usize,
    /// Bytes a meter downloads at enrollment (roster + its bundle, binary).
    pub enroll_download_bytes_per_house: usize,
    /// Meter CPU per round that does not depend on the reading (self-mask PRF + n−1
    /// pairwise masks); can run ahead of the interval via `prepare_round`.
    pub prepare_ns_per_house_round: f64,
    /// The part of `prepare` spent on the self-mask threshold PRF (hash to Ristretto, one
    /// scalar multiplication, hash); the rest is the n−1 pairwise ChaCha12 masks.
    pub self_mask_prf_ns: f64,
    /// Meter CPU per round on the reading path: quantise, add masks, build the message.
    pub mask_ns_per_house_round: f64,
    /// Extra meter CPU per round for one DP noise share.
    pub dp_noise_ns_per_house_round: f64,
    /// Binary size of one masked reading.
    pub masked_reading_bytes: usize,
    /// Base64 characters of one masked reading (what goes in the XMPP payload).
    pub masked_reading_base64_chars: usize,
    /// Size of the unmask request (binary), posted once per round.
    pub unmask_request_bytes: usize,
    /// Survivor CPU to answer the unmask request, no dropouts.
    pub answer_us_per_house: f64,
    /// Size of one survivor's answer (binary), no dropouts.
    pub answer_bytes_per_house: usize,
    /// Bot CPU to unmask one round, no dropouts.
    pub combine_ms_per_round: f64,
    /// Members dropped in the dropout round (⌊n/3⌋).
    pub dropouts: u16,
    /// Survivor CPU to answer, with ⌊n/3⌋ dropped.
    pub answer_us_per_survivor_with_dropouts: f64,
    /// Bot CPU to unmask one round with ⌊n/3⌋ dropped.
    pub combine_ms_with_dropouts: f64,
    /// Extra CPU the neighbourhood spends per dropped member: each survivor computes one
    /// random-access pairwise mask (the bot adds one word per survivor, negligible).
    pub unmask_us_per_dropout: f64,
    /// Whether every unmasked sum equalled the true sum (the figures mean nothing otherwise).
    pub sums_exact: bool,
}

fn per(total: Duration, count: usize) -> f64 {
    total.as_secs_f64() / count.max(1) as f64
}

/// Runs enrollment, `rounds` masked rounds and two unmasked rounds (no dropouts, ⌊n/3⌋
/// dropouts) for `houses` meters in-process, deterministically from `seed`.
pub fn bench_masked(houses: u16, rounds: u32, seed: u64) -> Result<MaskedBench, MaskError> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let room = b"bench@rooms.grid.example";
    let n = usize::from(houses);
    let mut meters: Vec<MaskedMeter> = (0..n)
        .map(|_| MaskedMeter::new(&mut rng, room, None))
        .collect();
    let mut bot = MaskedAggregator::new(&mut rng, room, None);

    // Enrollment.
    let mut upload_bytes = 0;
    let mut meter_time = Duration::ZERO;
    let mut bot_time = Duration::ZERO;
    for m in &meters {
        let key = m.key_announcement();
        upload_bytes += MaskMessage::Key(key.clone()).to_bytes().len();
        let t = ThreadTime::now();
        bot.handle_key(&key)?;
        bot_time += t.elapsed();
    }
    let t = ThreadTime::now();
    let roster = bot.close_enrollment()?;
    bot_time += t.elapsed();
    let roster_bytes = MaskMessage::Roster(roster.clone()).to_bytes().len();
    for m in &mut meters {
        let t = ThreadTime::now();
        let upload = m.handle_roster(&mut rng, &roster)?;
        meter_time += t.elapsed();
        upload_bytes += MaskMessage::Shares(upload.clone()).to_bytes().len();
        let t = ThreadTime::now();
        bot.handle_shares(&upload)?;
        bot_time += t.elapsed();
    }
    let t = ThreadTime::now();
    let bundles = bot.share_bundles()?;
    bot_time += t.elapsed();
    let mut bundle_bytes = 0;
    for b in &bundles {
        bundle_bytes += MaskMessage::Bundle(b.clone()).to_bytes().len();
        let t = ThreadTime::now();
        meters[usize::from(b.to)].handle_bundle(b)?;
        meter_time += t.elapsed();
    }

    // Masked rounds.
    let readings: Vec<Watts> = (0..n)
        .map(|_| Watts(rng.random_range(-5_000..25_000)).quantise(10))
        .collect();
    let truth: i64 = readings.iter().map(|w| w.0).sum();
    // Meter-major order, as on real devices: each meter's pairwise state (n−1 ChaCha12
    // generators, ~60 KB at n = 200) stays in its own cache instead of 200 meters' worth
    // (12 MB) being streamed through one core each round.
    let (mut prepare_time, mut mask_time) = (Duration::ZERO, Duration::ZERO);
    let last = u64::from(rounds.max(1));
    let mut wire = (0, 0);
    for (m, w) in meters.iter_mut().zip(&readings) {
        for round in 1..=last {
            let t = ThreadTime::now();
            m.prepare_round(round)?;
            prepare_time += t.elapsed();
            let t = ThreadTime::now();
            let text = MaskMessage::Masked(m.mask(&mut rng, round, *w)?).to_base64();
            mask_time += t.elapsed();
            if round == last {
                let msg = MaskMessage::from_base64(&text)?;
                wire = (msg.to_bytes().len(), text.len());
                if let MaskMessage::Masked(r) = msg {
                    bot.handle_masked(&r)?;
                }
            }
        }
    }
    let full = unmask(&mut meters, &mut bot, last)?;

    // One round with ⌊n/3⌋ dropouts (the first members miss it).
    let dropouts = houses / 3;
    let round = last + 1;
    for (m, w) in meters.iter_mut().zip(&readings).skip(usize::from(dropouts)) {
        bot.handle_masked(&m.mask(&mut rng, round, *w)?)?;
    }
    let partial = unmask(&mut meters, &mut bot, round)?;
    let partial_truth: i64 = readings
        .iter()
        .skip(usize::from(dropouts))
        .map(|w| w.0)
        .sum();

    Ok(MaskedBench {
        houses,
        rounds,
        enroll_us_per_house: per(meter_time, n) * 1e6,
        enroll_bot_ms: bot_time.as_secs_f64() * 1e3,
        enroll_upload_bytes_per_house: upload_bytes / n.max(1),
        enroll_download_bytes_per_house: roster_bytes + bundle_bytes / n.max(1),
        prepare_ns_per_house_round: per(prepare_time, n * rounds.max(1) as usize) * 1e9,
        self_mask_prf_ns: self_mask_cost(&mut rng) * 1e9,
        mask_ns_per_house_round: per(mask_time, n * rounds.max(1) as usize) * 1e9,
        dp_noise_ns_per_house_round: noise_cost(houses, &mut rng)? * 1e9,
        masked_reading_bytes: wire.0,
        masked_reading_base64_chars: wire.1,
        unmask_request_bytes: full.request_bytes,
        answer_us_per_house: full.answer_s_per_survivor * 1e6,
        answer_bytes_per_house: full.answer_bytes_per_survivor,
        combine_ms_per_round: full.combine_s * 1e3,
        dropouts,
        answer_us_per_survivor_with_dropouts: partial.answer_s_per_survivor * 1e6,
        combine_ms_with_dropouts: partial.combine_s * 1e3,
        unmask_us_per_dropout: random_access_mask_cost(&mut rng)
            * f64::from(houses - dropouts)
            * 1e6,
        sums_exact: full.sum == Watts(truth) && partial.sum == Watts(partial_truth),
    })
}

struct UnmaskCost {
    request_bytes: usize,
    answer_s_per_survivor: f64,
    answer_bytes_per_survivor: usize,
    combine_s: f64,
    sum: Watts,
}

fn unmask(
    meters: &mut [MaskedMeter],
    bot: &mut MaskedAggregator,
    round: u64,
) -> Result<UnmaskCost, MaskError> {
    let request = bot.unmask_request(round)?;
    let t = ThreadTime::now();
    let answers: Vec<_> = meters
        .iter_mut()
        .map(|m| m.answer_unmask(&request))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let answer_time = t.elapsed();
    let answer_bytes: usize = answers
        .iter()
        .map(|a| MaskMessage::UnmaskResponse(a.clone()).to_bytes().len())
        .sum();
    let t = ThreadTime::now();
    for a in &answers {
        bot.handle_unmask_response(a)?;
    }
    let sum = bot.finish(round)?;
    Ok(UnmaskCost {
        request_bytes: MaskMessage::UnmaskRequest(request).to_bytes().len(),
        answer_s_per_survivor: per(answer_time, answers.len()),
        answer_bytes_per_survivor: answer_bytes / answers.len().max(1),
        combine_s: t.elapsed().as_secs_f64(),
        sum: sum.sum,
    })
}

/// Seconds per DP noise share (ε = 1 per kW) for a cohort of `houses`.
fn noise_cost(houses: u16, rng: &mut ChaCha20Rng) -> Result<f64, MaskError> {
    let share = NoiseShare::new(
        &DpConfig::new(1.0, Watts::from_kw(1.0))?,
        survivor_threshold(houses),
    )?;
    let draws = 20_000;
    let t = ThreadTime::now();
    for _ in 0..draws {
        black_box(share.sample(rng));
    }
    Ok(per(t.elapsed(), draws))
}

/// Seconds per self-mask: `H(r)`, `b · H(r)`, hash.
fn self_mask_cost(rng: &mut ChaCha20Rng) -> f64 {
    let key = crypto::random_scalar(rng);
    let draws: u64 = 2_000;
    let t = ThreadTime::now();
    for round in 0..draws {
        let base = crypto::round_base(&[0; 32], round);
        black_box(crypto::self_mask(&[0; 32], &(key * base)));
    }
    per(t.elapsed(), draws as usize)
}

/// Seconds per pairwise mask at a non-sequential round (a seek + one 4-block refill).
fn random_access_mask_cost(rng: &mut ChaCha20Rng) -> f64 {
    let (a, b) = (crypto::new_secret(rng), crypto::new_secret(rng));
    let key = x25519_dalek::PublicKey::from(&b).to_bytes();
    let Some(mut pair) = Pair::derive(&a, &key, &[0; 32], true) else {
        return f64::NAN;
    };
    let draws: u64 = 20_000;
    let t = ThreadTime::now();
    for i in 0..draws {
        black_box(pair.mask(i * 1_000_003));
    }
    per(t.elapsed(), draws as usize)
}
