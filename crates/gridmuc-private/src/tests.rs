//! Tests that need the crate's insides: a malicious meter that shards honestly and then
//! tampers with its shares (re-sealing them, so only Prio3's checks can catch it), and what
//! one aggregator's input share looks like.

use std::sync::Arc;

use gridmuc_botkey::BotSecretKey;
use prio::codec::ParameterizedDecode as _;
use prio::field::{Field64, Field128, FieldElement as _};
use prio::vdaf::prio3::Prio3InputShare;
use rand::SeedableRng as _;
use rand_chacha::ChaCha20Rng;

use crate::hostile::{
    self, HistIn, Shares, SumIn, leader_hist_measurement, leader_part, leader_sum_measurement,
};
use crate::report::{ReportId, Role, share_aad};
use crate::{
    AggregateShareMessage, CollectRequest, Helper, HelperRequest, HelperResponse, IntervalResult,
    Leader, PrivateConfig, PrivateParams, Refusal, Report, VerifyKey, report,
};

struct World {
    cfg: PrivateConfig,
    leader_key: Arc<BotSecretKey>,
    helper_key: Arc<BotSecretKey>,
    leader: Leader,
    helper: Helper,
    rng: ChaCha20Rng,
}

fn world(seed: u64) -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let leader_key = Arc::new(BotSecretKey::generate(&mut rng));
    let helper_key = Arc::new(BotSecretKey::generate(&mut rng));
    let mut params = PrivateParams::new(
        "neighbourhood@rooms.grid.example",
        5,
        leader_key.public(),
        helper_key.public(),
    );
    params.min_reports = 3;
    let cfg = PrivateConfig::new(params).expect("valid config");
    let vk = VerifyKey::generate(&mut rng);
    let leader = Leader::new(cfg.clone(), leader_key.clone(), vk.clone()).expect("leader");
    let helper = Helper::new(cfg.clone(), helper_key.clone(), vk).expect("helper");
    World {
        cfg,
        leader_key,
        helper_key,
        leader,
        helper,
        rng,
    }
}

/// Runs the leader ↔ helper exchange for everything queued, through the wire forms.
fn exchange(w: &mut World) {
    while let Some(req) = w.leader.poll_helper_request(64) {
        let req = HelperRequest::from_bytes(&req.to_bytes()).expect("request decodes");
        let resp = w.helper.handle_request(&req);
        let resp = HelperResponse::from_bytes(&resp.to_bytes()).expect("response decodes");
        w.leader.handle_helper_response(&resp);
    }
}

fn collect(w: &mut World, interval: u64) -> IntervalResult {
    let req = w.leader.collect_request(interval).expect("collect request");
    let req = CollectRequest::from_bytes(&req.to_bytes()).expect("decodes");
    let share = w.helper.handle_collect(&req).expect("helper releases");
    let share = AggregateShareMessage::from_bytes(&share.to_bytes()).expect("decodes");
    w.leader.finish_collect(&share).expect("unshards")
}

/// The crafting path with the id these tests use.
fn malicious_report(
    w: &mut World,
    watts: u32,
    interval: u64,
    tamper: impl FnOnce(&mut Shares),
) -> Report {
    let cfg = w.cfg.clone();
    hostile::malicious_report(
        &cfg,
        watts,
        interval,
        ReportId([0x42; 16]),
        &mut w.rng,
        tamper,
    )
}

/// Sends three honest reports and one crafted one for interval 7 and returns the result
/// plus what each side refused.
fn run_with(w: &mut World, crafted: Report) -> (Result<ReportId, Refusal>, IntervalResult) {
    let mut want = 0;
    for watts in [400, 1_200, 3_000] {
        let r = report(&w.cfg, watts, 7, &mut w.rng).expect("report");
        w.leader
            .handle_report(7, &r.to_bytes())
            .expect("honest accepted");
        want += u64::from(watts);
    }
    let outcome = w.leader.handle_report(7, &crafted.to_bytes());
    exchange(w);
    let result = collect(w, 7);
    assert_eq!(result.reports, 3, "the crafted report was not aggregated");
    assert_eq!(result.total_watts, want, "the crafted report moved nothing");
    assert_eq!(result.histogram.iter().sum::<u64>(), 3);
    (outcome, result)
}

#[test]
fn untampered_crafted_report_is_accepted() {
    // Control: the crafting path itself yields reports the aggregators accept.
    let mut w = world(1);
    let r = malicious_report(&mut w, 2_000, 7, |_| {});
    w.leader.handle_report(7, &r.to_bytes()).expect("accepted");
    exchange(&mut w);
    let res = collect_after(&mut w, &[400, 1_200], 2_000);
    assert_eq!(res.reports, 3);
}

fn collect_after(w: &mut World, others: &[u32], crafted_watts: u32) -> IntervalResult {
    for &watts in others {
        let r = report(&w.cfg, watts, 7, &mut w.rng).expect("report");
        w.leader.handle_report(7, &r.to_bytes()).expect("accepted");
    }
    exchange(w);
    let res = collect(w, 7);
    let want: u64 = others.iter().map(|&x| u64::from(x)).sum::<u64>() + u64::from(crafted_watts);
    assert_eq!(res.total_watts, want);
    res
}

#[test]
fn sum_above_the_bound_is_refused_by_the_proof() {
    let mut w = world(2);
    // Shard the largest allowed value (25 kW), then add 1,000 to the share of the top bit:
    // unchecked, the sum would grow by 1,000 × its weight, hundreds of megawatts.
    let crafted = malicious_report(&mut w, 25_000, 7, |s| {
        let m = leader_sum_measurement(s);
        let top = m.len() - 1;
        m[top] += Field64::from(1_000u64);
    });
    let (outcome, _) = run_with(&mut w, crafted);
    assert!(outcome.is_ok(), "the leader alone cannot tell: {outcome:?}");
    assert_eq!(w.helper.refusals().get(Refusal::ProofFailed), 1);
    assert_eq!(w.leader.refusals().get(Refusal::ProofFailed), 1);
}

#[test]
fn negative_sum_is_refused_by_the_proof() {
    let mut w = world(3);
    let crafted = malicious_report(&mut w, 0, 7, |s| {
        let m = leader_sum_measurement(s);
        m[0] -= Field64::one();
    });
    let _ = run_with(&mut w, crafted);
    assert_eq!(w.leader.refusals().get(Refusal::ProofFailed), 1);
}

#[test]
fn two_buckets_at_once_is_refused_by_the_proof() {
    let mut w = world(4);
    let nonce = [0x42; 16];
    let cfg = w.cfg.clone();
    // One-hot in bucket of 500 W, plus a second bucket; the meter fixes its own
    // joint-randomness part so only the validity proof can catch it.
    let crafted = malicious_report(&mut w, 500, 7, |s| {
        leader_hist_measurement(s)[31] += Field128::one();
        s.parts[0] = leader_part(&cfg, &s.hist[0], &nonce);
    });
    let (outcome, _) = run_with(&mut w, crafted);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(w.helper.refusals().get(Refusal::ProofFailed), 1);
    assert_eq!(w.leader.refusals().get(Refusal::ProofFailed), 1);
    assert_eq!(w.leader.refusals().total(), 1);
}

#[test]
fn a_bucket_counted_twice_is_refused_by_the_proof() {
    let mut w = world(5);
    let nonce = [0x42; 16];
    let cfg = w.cfg.clone();
    let bucket = cfg.bucket_of(15_000);
    let crafted = malicious_report(&mut w, 15_000, 7, |s| {
        leader_hist_measurement(s)[bucket] += Field128::one();
        s.parts[0] = leader_part(&cfg, &s.hist[0], &nonce);
    });
    let _ = run_with(&mut w, crafted);
    assert_eq!(w.leader.refusals().get(Refusal::ProofFailed), 1);
}

#[test]
fn tampered_share_without_fixing_joint_randomness_is_refused() {
    let mut w = world(6);
    let crafted = malicious_report(&mut w, 500, 7, |s| {
        leader_hist_measurement(s)[31] += Field128::one();
    });
    let (outcome, _) = run_with(&mut w, crafted);
    assert_eq!(outcome, Err(Refusal::JointRandMismatch));
}

#[test]
fn a_lie_in_the_helpers_joint_rand_part_is_refused_by_both() {
    // Only the leader's `verify_next` compares the helper's part with the public share;
    // the helper's own-part check makes the helper refuse it too, by construction, so the
    // two report sets stay equal. (Without that check this naive lie still fails, as
    // ProofFailed, because the two sides then prove with different joint randomness; the
    // check makes the outcome not depend on that.)
    let mut w = world(7);
    let crafted = malicious_report(&mut w, 500, 7, |s| s.parts[1][0] ^= 1);
    let (outcome, result) = run_with(&mut w, crafted);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(w.helper.refusals().get(Refusal::JointRandMismatch), 1);
    assert_eq!(w.leader.refusals().get(Refusal::JointRandMismatch), 1);
    assert_eq!(result.reports, 3);
}

#[test]
fn a_lie_in_the_leaders_joint_rand_part_is_refused_at_once() {
    let mut w = world(8);
    let crafted = malicious_report(&mut w, 500, 7, |s| s.parts[0][5] ^= 0x80);
    let (outcome, _) = run_with(&mut w, crafted);
    assert_eq!(outcome, Err(Refusal::JointRandMismatch));
    assert_eq!(w.helper.refusals().total(), 0);
}

#[test]
fn neither_aggregator_holds_the_measurement() {
    // What each aggregator opens is an additive share: neither its histogram share is a
    // one-hot vector, nor its sum share a bit vector, and the two differ from each other.
    let mut w = world(9);
    let cfg = w.cfg.clone();
    for (n, watts) in [0u32, 450, 2_500, 24_990].into_iter().enumerate() {
        let r = report(&cfg, watts, 1, &mut w.rng).expect("report");
        let id = r.id();
        let aad = share_aad(&cfg, Role::Leader, 1, &id, r.public_share());
        let plain = w
            .leader_key
            .open(&aad, r.leader_share())
            .expect("leader opens");
        let mut c = std::io::Cursor::new(plain.as_slice());
        let sum = SumIn::decode_with_param(&(&cfg.sum, 0), &mut c).expect("sum share");
        let hist = HistIn::decode_with_param(&(&cfg.hist, 0), &mut c).expect("hist share");
        let (
            Prio3InputShare::Leader {
                measurement_share: s,
                ..
            },
            Prio3InputShare::Leader {
                measurement_share: h,
                ..
            },
        ) = (&sum, &hist)
        else {
            panic!("leader shares");
        };
        let small = |x: u128| x <= 1;
        assert!(
            !h.iter().all(|x| small(u128::from(*x))),
            "report {n}: leader's histogram share looks like a one-hot vector"
        );
        assert!(
            !s.iter().all(|x| u64::from(*x) <= 1),
            "report {n}: leader's sum share looks like the bits of the reading"
        );
        // The helper's share is a 32-byte seed (plus a blind): it has no room for a reading.
        let aad = share_aad(&cfg, Role::Helper, 1, &id, r.public_share());
        let plain = w
            .helper_key
            .open(&aad, r.helper_share())
            .expect("helper opens");
        assert_eq!(plain.len(), 32 + 64);
        // And neither key opens the other's share.
        assert!(w.leader_key.open(&aad, r.helper_share()).is_err());
    }
}
