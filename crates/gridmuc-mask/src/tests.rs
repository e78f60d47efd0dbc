//! Protocol tests: every message passes through the base64 wire form, as it would in the room.

use gridmuc_core::Watts;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::*;

const ROOM: &[u8] = b"neighbourhood@rooms.grid.example";

/// Sends a message through its text form and back, as the XMPP layer will.
macro_rules! relay {
    ($variant:ident, $value:expr) => {
        match MaskMessage::from_base64(&MaskMessage::$variant($value.clone()).to_base64()).unwrap()
        {
            MaskMessage::$variant(v) => v,
            other => panic!("relay changed the message kind: {other:?}"),
        }
    };
}

struct Hood {
    rng: ChaCha20Rng,
    meters: Vec<MaskedMeter>,
    bot: MaskedAggregator,
}

impl Hood {
    fn enroll(n: usize, seed: u64, dp: Option<DpConfig>) -> Hood {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let mut meters: Vec<MaskedMeter> = (0..n)
            .map(|_| MaskedMeter::new(&mut rng, ROOM, dp))
            .collect();
        let mut bot = MaskedAggregator::new(&mut rng, ROOM, dp);
        for m in &meters {
            bot.handle_key(&relay!(Key, m.key_announcement())).unwrap();
        }
        let roster = relay!(Roster, bot.close_enrollment().unwrap());
        for m in &mut meters {
            let upload = m.handle_roster(&mut rng, &roster).unwrap();
            bot.handle_shares(&relay!(Shares, upload)).unwrap();
        }
        for b in bot.share_bundles().unwrap() {
            meters[usize::from(b.to)]
                .handle_bundle(&relay!(Bundle, b))
                .unwrap();
        }
        Hood { rng, meters, bot }
    }

    /// Random readings in −5…25 kW (export included), quantised like the core does.
    fn readings(&mut self) -> Vec<Watts> {
        (0..self.meters.len())
            .map(|_| Watts(self.rng.random_range(-5_000..=25_000)).quantise(10))
            .collect()
    }

    /// Every meter not in `dropped` masks its reading for `round` and sends it to the bot.
    fn submit(&mut self, round: u64, readings: &[Watts], dropped: &[usize]) {
        for (i, (m, w)) in self.meters.iter_mut().zip(readings).enumerate() {
            if !dropped.contains(&i) {
                let masked = m.mask(&mut self.rng, round, *w).unwrap();
                self.bot.handle_masked(&relay!(Masked, masked)).unwrap();
            }
        }
    }

    /// The unmask exchange: the bot's request to every meter, answers back, the sum.
    fn unmask(&mut self, round: u64) -> Result<RoundSum, MaskError> {
        let request = relay!(UnmaskRequest, self.bot.unmask_request(round)?);
        for m in &mut self.meters {
            if let Some(answer) = m.answer_unmask(&request).unwrap() {
                self.bot
                    .handle_unmask_response(&relay!(UnmaskResponse, answer))?;
            }
        }
        self.bot.finish(round)
    }
}

fn total(readings: &[Watts], dropped: &[usize]) -> Watts {
    Watts(
        (0..readings.len())
            .filter(|i| !dropped.contains(i))
            .map(|i| readings[i].0)
            .sum(),
    )
}

fn exact_sums_with_dropouts(n: usize, seed: u64) {
    let mut hood = Hood::enroll(n, seed, None);
    let third = n / 3;
    // Dropouts spread over the cohort, so both mask signs (lower/higher index) are exercised.
    let cases: [Vec<usize>; 3] = [vec![], vec![n / 2], (0..third).map(|k| k * 3 + 1).collect()];
    for (round, dropped) in (1u64..).zip(&cases) {
        let readings = hood.readings();
        hood.submit(round, &readings, dropped);
        let sum = hood.unmask(round).unwrap();
        assert_eq!(
            sum.sum,
            total(&readings, dropped),
            "n={n}, {} dropped",
            dropped.len()
        );
        assert_eq!(usize::from(sum.survivors), n - dropped.len());
        assert_eq!(usize::from(sum.enrolled), n);
        assert_eq!(sum.noise_sd, None);
    }
}

#[test]
fn sum_is_exact_with_0_1_and_a_third_dropped_n20() {
    exact_sums_with_dropouts(20, 20);
}

#[test]
fn sum_is_exact_with_0_1_and_a_third_dropped_n200() {
    exact_sums_with_dropouts(200, 200);
}

#[test]
fn a_dropped_meter_takes_part_again_next_round() {
    let mut hood = Hood::enroll(9, 1, None);
    for round in 1..=4 {
        let readings = hood.readings();
        let dropped = [usize::try_from(round).unwrap() % 2];
        hood.submit(round, &readings, &dropped);
        assert_eq!(hood.unmask(round).unwrap().sum, total(&readings, &dropped));
    }
}

#[test]
fn more_than_a_third_dropped_is_a_clear_error() {
    let mut hood = Hood::enroll(20, 3, None);
    let readings = hood.readings();
    let dropped: Vec<usize> = (0..7).collect();
    hood.submit(1, &readings, &dropped);
    assert_eq!(
        hood.unmask(1),
        Err(MaskError::TooManyDropouts {
            round: 1,
            survivors: 13,
            enrolled: 20,
            needed: 14
        })
    );
    assert_eq!(survivor_threshold(200), 134);
}

/// Chi-square over 16 equiprobable bins; 37.7 is the 0.1 % critical value for 15 dof.
fn chi_square_16(values: impl Iterator<Item = usize>) -> f64 {
    let mut bins = [0f64; 16];
    values.for_each(|b| bins[b] += 1.0);
    let expected = bins.iter().sum::<f64>() / 16.0;
    bins.iter()
        .map(|o| (o - expected) * (o - expected) / expected)
        .sum()
}

#[test]
fn masked_values_are_uniform_whatever_the_reading() {
    let mut hood = Hood::enroll(5, 4, None);
    let mut round = 0;
    for reading in [Watts(0), Watts(25_000)] {
        let values: Vec<u64> = (0..2_000)
            .map(|_| {
                round += 1;
                hood.meters[0]
                    .mask(&mut hood.rng, round, reading)
                    .unwrap()
                    .value
            })
            .collect();
        let high = chi_square_16(values.iter().map(|v| (v >> 60) as usize));
        let low = chi_square_16(values.iter().map(|v| (v & 15) as usize));
        assert!(
            high < 37.7 && low < 37.7,
            "{reading}: chi² high bits {high}, low bits {low}"
        );
        let q = reading.0 / QUANTUM.0;
        assert!(
            values
                .iter()
                .all(|v| (*v as i64).wrapping_sub(q).unsigned_abs() > 1 << 40)
        );
    }
    // The same test rejects unmasked data, so it has power.
    assert!(chi_square_16((0..2_000).map(|i| (i % 7) as usize)) > 37.7);
}

#[test]
fn second_unmask_request_for_another_survivor_set_is_refused() {
    let mut hood = Hood::enroll(12, 5, None);
    let readings = hood.readings();
    hood.submit(1, &readings, &[]);
    let request = hood.bot.unmask_request(1).unwrap();
    assert_eq!(
        hood.bot.unmask_request(1).unwrap(),
        request,
        "the bot repeats, never changes"
    );
    let answers: Vec<_> = hood
        .meters
        .iter_mut()
        .map(|m| m.answer_unmask(&request).unwrap().unwrap())
        .collect();
    // Same set again: the same answer, nothing new revealed.
    assert_eq!(
        hood.meters[3].answer_unmask(&request).unwrap().as_ref(),
        Some(&answers[3])
    );
    // A cheating bot asks again without member 7, hoping for its pairwise masks.
    let mut without_7 = MemberSet::empty(12);
    (0..12)
        .filter(|&m| m != 7)
        .for_each(|m| without_7.insert(m));
    let second = UnmaskRequest {
        round: 1,
        survivors: without_7,
    };
    for m in &mut hood.meters {
        assert_eq!(
            m.answer_unmask(&second),
            Err(MaskError::ConflictingSurvivorSet(1))
        );
    }
    // The honest first request still completes.
    for a in &answers {
        hood.bot.handle_unmask_response(a).unwrap();
    }
    assert_eq!(hood.bot.finish(1).unwrap().sum, total(&readings, &[]));
}

/// The bot holds v's masked value but claims v dropped: every other meter reveals its
/// pairwise masks with v. What is left of v's value is `x_v + F(b_v, r)`, and the
/// evaluations that would give `F(b_v, r)` are then refused by every meter.
#[test]
fn bot_claiming_a_false_dropout_cannot_recover_the_reading() {
    let (n, v) = (8, 5);
    let mut hood = Hood::enroll(n, 6, None);
    let mut all = MemberSet::empty(8);
    (0..8).for_each(|m| all.insert(m));
    let mut all_but_v = MemberSet::empty(8);
    (0..8).filter(|&m| m != 5).for_each(|m| all_but_v.insert(m));
    for round in 1..=10 {
        let readings = hood.readings();
        let masked: Vec<u64> = hood
            .meters
            .iter_mut()
            .zip(&readings)
            .map(|(m, w)| m.mask(&mut hood.rng, round, *w).unwrap().value)
            .collect();
        let lie = UnmaskRequest {
            round,
            survivors: all_but_v.clone(),
        };
        let mut residual = masked[v];
        for (i, m) in hood.meters.iter_mut().enumerate() {
            let answer = m.answer_unmask(&lie).unwrap();
            assert_eq!(answer.is_none(), i == v);
            if let Some(a) = answer {
                assert!(a.evaluations.iter().all(|(u, _)| usize::from(*u) != v));
                residual = residual.wrapping_add(a.dropped_masks);
            }
        }
        // All pairwise masks of v are gone; only v's self-mask stands between bot and value.
        let q = (readings[v].0 / QUANTUM.0) as u64;
        let self_mask = hood.meters[v].self_mask_for_test(round).unwrap();
        assert_eq!(
            residual.wrapping_sub(self_mask),
            q,
            "the attack is set up right"
        );
        assert_ne!(residual, q);
        let truth = UnmaskRequest {
            round,
            survivors: all.clone(),
        };
        for m in &mut hood.meters {
            assert_eq!(
                m.answer_unmask(&truth),
                Err(MaskError::ConflictingSurvivorSet(round))
            );
        }
    }
}

/// Withholding one survivor's evaluations below the threshold leaves its value masked.
#[test]
fn a_self_mask_needs_threshold_evaluations() {
    let mut hood = Hood::enroll(6, 10, None);
    let readings = hood.readings();
    hood.submit(1, &readings, &[]);
    let request = hood.bot.unmask_request(1).unwrap();
    let answers: Vec<UnmaskResponse> = hood
        .meters
        .iter_mut()
        .map(|m| m.answer_unmask(&request).unwrap().unwrap())
        .collect();
    for (i, a) in answers.iter().enumerate() {
        let mut a = a.clone();
        if i >= 3 {
            a.evaluations.retain(|(u, _)| *u != 2);
        }
        hood.bot.handle_unmask_response(&a).unwrap();
    }
    assert_eq!(
        hood.bot.finish(1),
        Err(MaskError::NotEnoughShares {
            round: 1,
            member: 2,
            have: 3,
            needed: 4
        })
    );
    hood.bot.handle_unmask_response(&answers[4]).unwrap();
    assert_eq!(hood.bot.finish(1).unwrap().sum, total(&readings, &[]));
}

#[test]
fn meter_rules_protect_each_round() {
    let mut hood = Hood::enroll(6, 7, None);
    let readings = hood.readings();
    hood.submit(5, &readings, &[2]);
    let rng = &mut hood.rng;
    assert_eq!(
        hood.meters[0].mask(rng, 5, Watts(100)),
        Err(MaskError::RoundReused { round: 5, last: 5 })
    );
    let request = hood.bot.unmask_request(5).unwrap();
    assert!(!request.survivors.contains(2));
    // The dropped meter is not asked, and may not send for that round any more.
    assert_eq!(hood.meters[2].answer_unmask(&request), Ok(None));
    assert_eq!(
        hood.meters[2].mask(rng, 5, Watts(100)),
        Err(MaskError::RoundClosed(5))
    );
    // A request naming a meter that never sent for the round is refused.
    let mut everyone = MemberSet::empty(6);
    (0..6).for_each(|m| everyone.insert(m));
    let bogus = UnmaskRequest {
        round: 9,
        survivors: everyone,
    };
    assert_eq!(
        hood.meters[1].answer_unmask(&bogus),
        Err(MaskError::NotSubmitted(9))
    );
    // The bot refuses late values once the survivor set is out.
    let late = hood.meters[2].mask(rng, 6, Watts(100)).unwrap();
    assert_eq!(
        hood.bot.handle_masked(&MaskedReading { round: 5, ..late }),
        Err(MaskError::RoundClosed(5))
    );
    let wrong_size = UnmaskRequest {
        round: 5,
        survivors: MemberSet::empty(7),
    };
    assert_eq!(
        hood.meters[0].answer_unmask(&wrong_size),
        Err(MaskError::SurvivorSetSize {
            expected: 6,
            got: 7
        })
    );
}

#[test]
fn enrollment_refuses_bad_rosters_and_forged_shares() {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let mut meters: Vec<MaskedMeter> = (0..4)
        .map(|_| MaskedMeter::new(&mut rng, ROOM, None))
        .collect();
    let keys: Vec<[u8; 32]> = meters.iter().map(|m| m.key_announcement().key).collect();
    let roster = |keys: Vec<[u8; 32]>| Roster {
        cohort: [1; 16],
        keys,
    };
    assert_eq!(
        meters[0]
            .handle_roster(&mut rng, &roster(keys[1..].to_vec()))
            .err(),
        Some(MaskError::NotInRoster)
    );
    assert_eq!(
        meters[0]
            .handle_roster(&mut rng, &roster(keys[..2].to_vec()))
            .err(),
        Some(MaskError::CohortSize(2))
    );
    let dup = vec![keys[0], keys[1], keys[1]];
    assert_eq!(
        meters[0].handle_roster(&mut rng, &roster(dup)).err(),
        Some(MaskError::DuplicateKey)
    );
    let weak = vec![keys[0], keys[1], [0; 32]];
    assert_eq!(
        meters[0].handle_roster(&mut rng, &roster(weak)).err(),
        Some(MaskError::WeakKey(2))
    );

    let good = roster(keys.clone());
    let up0 = meters[0].handle_roster(&mut rng, &good).unwrap();
    meters[1].handle_roster(&mut rng, &good).unwrap();
    let mut to_1 = up0.shares.iter().find(|s| s.peer == 1).unwrap().clone();
    to_1.peer = 0;
    to_1.sealed[0] ^= 1;
    let bundle = ShareBundle {
        to: 1,
        shares: vec![to_1],
    };
    assert_eq!(
        meters[1].handle_bundle(&bundle),
        Err(MaskError::BadShare(0))
    );

    let mut bot = MaskedAggregator::new(&mut rng, ROOM, None);
    for k in &keys {
        bot.handle_key(&KeyAnnouncement { key: *k }).unwrap();
    }
    assert_eq!(
        bot.handle_key(&KeyAnnouncement { key: keys[0] }),
        Err(MaskError::DuplicateKey)
    );
    bot.close_enrollment().unwrap();
    let short = ShareUpload {
        from: 0,
        shares: up0.shares[1..].to_vec(),
    };
    assert_eq!(bot.handle_shares(&short), Err(MaskError::BadUpload(0)));
    bot.handle_shares(&up0).unwrap();
    assert_eq!(
        bot.share_bundles().err(),
        Some(MaskError::TooFewEnrolled {
            enrolled: 1,
            needed: 3
        })
    );
}

#[test]
fn dp_sums_carry_the_configured_noise() {
    let dp = DpConfig::new(1.0, Watts::from_kw(1.0)).unwrap();
    let n = 12;
    let mut hood = Hood::enroll(n, 9, Some(dp));
    let sd = dp.sum_variance(n, survivor_threshold(12)).sqrt();
    let mut errors = Vec::new();
    for round in 1..=40 {
        let readings = hood.readings();
        hood.submit(round, &readings, &[]);
        let sum = hood.unmask(round).unwrap();
        assert_eq!(sum.noise_sd, Some(Watts(sd.round() as i64)));
        let error = (sum.sum - total(&readings, &[])).as_f64();
        // Tails are exponential (≈ α^|k|): beyond 10 sd has probability ~1e-6 per round.
        assert!(
            error.abs() < 10.0 * sd,
            "round {round}: error {error} W vs sd {sd} W"
        );
        assert_eq!(sum.sum.0 % 10, 0, "noise is in whole quanta");
        errors.push(error);
    }
    assert!(
        errors.iter().filter(|e| **e != 0.0).count() > 30,
        "noise is actually added"
    );
    // Mean square vs variance; with Laplace-like kurtosis its relative sd is √(5/40) ≈ 35 %.
    let ms = errors.iter().map(|e| e * e).sum::<f64>() / errors.len() as f64;
    assert!(
        ms > 0.3 * sd * sd && ms < 2.5 * sd * sd,
        "mean square {ms} W² vs variance {} W²",
        sd * sd
    );
}
