//! Private mode through its public API only, as the agents will drive it: bytes in, bytes
//! out, with a fake world of one leader, one helper and many meters.

use std::sync::Arc;

use gridmuc_botkey::BotSecretKey;
use gridmuc_private::{
    AggregateShareMessage, CollectError, CollectRequest, ConfigError, DEFAULT_BUCKETS, Helper,
    HelperRequest, HelperResponse, IntervalResult, KeyOfferError, Leader, PrivateConfig,
    PrivateParams, Refusal, Report, ReportError, VerifyKey, bench, log_bucket_edges, report,
};
use proptest::prelude::*;
use rand::{Rng as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;

const ROOM: &str = "neighbourhood@rooms.grid.example";

struct World {
    cfg: PrivateConfig,
    leader_key: Arc<BotSecretKey>,
    helper_key: Arc<BotSecretKey>,
    leader: Leader,
    helper: Helper,
    rng: ChaCha20Rng,
}

fn params(
    seed: u64,
) -> (
    PrivateParams,
    Arc<BotSecretKey>,
    Arc<BotSecretKey>,
    ChaCha20Rng,
) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let leader_key = Arc::new(BotSecretKey::generate(&mut rng));
    let helper_key = Arc::new(BotSecretKey::generate(&mut rng));
    let p = PrivateParams::new(ROOM, 5, leader_key.public(), helper_key.public());
    (p, leader_key, helper_key, rng)
}

fn world(seed: u64) -> World {
    let (p, leader_key, helper_key, mut rng) = params(seed);
    let cfg = PrivateConfig::new(p).expect("valid config");
    // The leader makes the verify key and hands it to the helper, sealed and signed.
    let vk = VerifyKey::generate(&mut rng);
    let offer = vk.offer(&cfg, &leader_key, &mut rng);
    let helper_vk = VerifyKey::accept(&cfg, &helper_key, &offer).expect("helper accepts");
    let leader = Leader::new(cfg.clone(), leader_key.clone(), vk).expect("leader");
    let helper = Helper::new(cfg.clone(), helper_key.clone(), helper_vk).expect("helper");
    World {
        cfg,
        leader_key,
        helper_key,
        leader,
        helper,
        rng,
    }
}

/// Leader ↔ helper for everything queued, through the wire forms.
fn exchange(w: &mut World) {
    while let Some(req) = w.leader.poll_helper_request(16) {
        let req = HelperRequest::from_bytes(&req.to_bytes()).expect("request decodes");
        let resp = w.helper.handle_request(&req);
        let resp = HelperResponse::from_bytes(&resp.to_bytes()).expect("response decodes");
        w.leader.handle_helper_response(&resp);
    }
}

fn collect(w: &mut World, interval: u64) -> Result<IntervalResult, CollectError> {
    let req = w.leader.collect_request(interval)?;
    let req = CollectRequest::from_bytes(&req.to_bytes()).expect("decodes");
    let share = w.helper.handle_collect(&req)?;
    let share = AggregateShareMessage::from_bytes(&share.to_bytes()).expect("decodes");
    w.leader.finish_collect(&share)
}

/// Readings of a neighbourhood: mostly modest, some heavy, a few spikes.
fn readings(rng: &mut ChaCha20Rng, n: usize) -> Vec<u32> {
    (0..n)
        .map(|i| match i % 25 {
            0 => rng.random_range(16_000..=25_000),
            1..=4 => rng.random_range(2_000..7_000),
            _ => rng.random_range(0..1_500),
        })
        .collect()
}

fn expected(cfg: &PrivateConfig, readings: &[u32]) -> (u64, Vec<u64>) {
    let mut hist = vec![0u64; cfg.buckets()];
    let mut total = 0;
    for &r in readings {
        let q = cfg.quantise(r).expect("in range");
        total += u64::from(q);
        hist[cfg.bucket_of(q)] += 1;
    }
    (total, hist)
}

fn send_all(w: &mut World, interval: u64, readings: &[u32]) {
    for &r in readings {
        let rep = report(&w.cfg, r, interval, &mut w.rng).expect("report");
        w.leader
            .handle_report(interval, &rep.to_bytes())
            .expect("honest report accepted");
    }
}

#[test]
fn fifty_honest_meters_give_exact_total_and_histogram() {
    let mut w = world(1);
    let rs = readings(&mut w.rng, 50);
    send_all(&mut w, 100, &rs);
    assert_eq!(w.leader.in_flight(), 50);
    exchange(&mut w);
    assert_eq!(w.leader.in_flight(), 0);
    let res = collect(&mut w, 100).expect("collected");
    let (total, hist) = expected(&w.cfg, &rs);
    assert_eq!(res.interval, 100);
    assert_eq!(res.reports, 50);
    assert_eq!(res.total_watts, total);
    assert_eq!(res.histogram, hist);
    assert_eq!(res.histogram.len(), DEFAULT_BUCKETS);
    assert!((res.mean - total as f64 / 50.0).abs() < 1e-9);
    // The estimates fall inside the bucket that holds the true quantile.
    let mut sorted: Vec<u32> = rs.iter().map(|&r| w.cfg.quantise(r).expect("ok")).collect();
    sorted.sort_unstable();
    for (q, est) in [(0.5, res.median_estimate), (0.95, res.p95_estimate)] {
        let truth = sorted[((q * 50.0) as usize).min(49)];
        let b = w.cfg.bucket_of(truth);
        let lo = f64::from(res.bucket_edges[b]);
        let hi = f64::from(
            res.bucket_edges
                .get(b + 1)
                .copied()
                .unwrap_or(res.max_watts),
        );
        assert!(
            (lo..=hi).contains(&est),
            "q={q}: estimate {est} outside bucket [{lo}, {hi}] of the true {truth}"
        );
    }
    assert!(res.spread_estimate() > 0.0);
    assert_eq!(w.leader.refusals().total(), 0);
    assert_eq!(w.helper.refusals().total(), 0);
}

#[test]
fn house_spike_count_agrees_with_each_meters_own_check() {
    let mut w = world(2);
    let rs = readings(&mut w.rng, 60);
    send_all(&mut w, 3, &rs);
    exchange(&mut w);
    let res = collect(&mut w, 3).expect("collected");
    // "Houses far above their peers": at least 10 × the median, and at least 5 kW.
    let wanted = (10.0 * res.median_estimate).max(5_000.0) as u32;
    let spike = res.count_at_or_above(wanted).expect("below the last edge");
    assert!(spike.threshold_watts >= wanted);
    let local = rs
        .iter()
        .filter(|&&r| w.cfg.at_or_above(r, spike.threshold_watts))
        .count() as u64;
    assert_eq!(spike.reports, local);
    assert!(local >= 2, "the fixture has spikes");
    assert_eq!(res.count_at_or_above(0).map(|s| s.reports), Some(60));
    assert_eq!(res.count_at_or_above(25_000), None);
}

#[test]
fn a_replayed_report_is_refused_counted_and_changes_nothing() {
    let mut w = small_world(3, 2);
    let rs = [500, 900, 1_300];
    send_all(&mut w, 4, &rs);
    let again = report(&w.cfg, 2_000, 4, &mut w.rng)
        .expect("report")
        .to_bytes();
    w.leader.handle_report(4, &again).expect("first time");
    assert_eq!(w.leader.handle_report(4, &again), Err(Refusal::Replay));
    exchange(&mut w);
    assert_eq!(w.leader.handle_report(4, &again), Err(Refusal::Replay));
    let res = collect(&mut w, 4).expect("collected");
    assert_eq!(res.reports, 4);
    assert_eq!(res.total_watts, 500 + 900 + 1_300 + 2_000);
    assert_eq!(w.leader.refusals().get(Refusal::Replay), 2);
    // After collection the interval is closed to everyone, the replay included.
    assert_eq!(
        w.leader.handle_report(4, &again),
        Err(Refusal::IntervalClosed)
    );
}

fn small_world(seed: u64, min_reports: u32) -> World {
    let (mut p, leader_key, helper_key, mut rng) = params(seed);
    p.min_reports = min_reports;
    let cfg = PrivateConfig::new(p).expect("valid");
    let vk = VerifyKey::generate(&mut rng);
    World {
        leader: Leader::new(cfg.clone(), leader_key.clone(), vk.clone()).expect("leader"),
        helper: Helper::new(cfg.clone(), helper_key.clone(), vk).expect("helper"),
        cfg,
        leader_key,
        helper_key,
        rng,
    }
}

#[test]
fn tampered_sealed_shares_are_refused_and_change_nothing() {
    let mut w = small_world(4, 2);
    send_all(&mut w, 9, &[700, 800]);
    let rep = report(&w.cfg, 20_000, 9, &mut w.rng).expect("report");
    let bytes = rep.to_bytes();
    let header = 6 + 8 + 16;
    let public_len = rep.public_share().len();
    let leader_len = rep.leader_share().len();
    // A flipped bit in the leader's sealed share, in the public share (bound as associated
    // data), in the report id or in the interval (9 → 1): the leader's share no longer opens.
    for (at, bit) in [
        (header + 2 + public_len + 2 + 100, 0x10),
        (header + 2 + 10, 0x10),
        (6 + 8 + 3, 0x10),
        (6 + 7, 0x08),
    ] {
        let mut bad = bytes.clone();
        bad[at] ^= bit;
        assert_eq!(
            w.leader.handle_report(9, &bad),
            Err(Refusal::Unauthentic),
            "byte {at}"
        );
    }
    // A flipped bit in the helper's sealed share: the leader cannot tell, the helper can.
    let mut bad = bytes.clone();
    let helper_at = header + 2 + public_len + 2 + leader_len + 2 + 40;
    bad[helper_at] ^= 0x01;
    w.leader
        .handle_report(9, &bad)
        .expect("leader's part is intact");
    exchange(&mut w);
    assert_eq!(w.helper.refusals().get(Refusal::Unauthentic), 1);
    assert_eq!(w.leader.refusals().get(Refusal::Unauthentic), 5);
    // The report id is burnt: the honest original is now a replay.
    assert_eq!(w.leader.handle_report(9, &bytes), Err(Refusal::Replay));
    let res = collect(&mut w, 9).expect("collected");
    assert_eq!((res.reports, res.total_watts), (2, 1_500));
}

#[test]
fn reports_for_another_room_or_config_are_refused() {
    let mut w = world(5);
    let (mut p, _, _, _) = params(5);
    p.room = "other@rooms.grid.example".into();
    let other_room = PrivateConfig::new(p).expect("valid");
    let rep = report(&other_room, 1_000, 1, &mut w.rng).expect("report");
    assert_eq!(
        w.leader.handle_report(1, &rep.to_bytes()),
        Err(Refusal::WrongTask)
    );
    let (mut p, _, _, _) = params(5);
    p.max_watts = 30_000;
    let other_bound = PrivateConfig::new(p).expect("valid");
    assert_ne!(other_bound.task_id(), w.cfg.task_id());
    let rep = report(&other_bound, 1_000, 1, &mut w.rng).expect("report");
    assert_eq!(
        w.leader.handle_report(1, &rep.to_bytes()),
        Err(Refusal::WrongTask)
    );
    assert_eq!(w.leader.refusals().get(Refusal::WrongTask), 2);
}

#[test]
fn interval_window_and_single_collection() {
    let mut w = small_world(6, 2);
    let ahead = report(&w.cfg, 100, 12, &mut w.rng).expect("report");
    assert_eq!(
        w.leader.handle_report(10, &ahead.to_bytes()),
        Err(Refusal::IntervalAhead)
    );
    // One interval ahead is clock skew, accepted.
    send_all_at(&mut w, 10, 11, &[100, 200]);
    send_all_at(&mut w, 10, 10, &[300]);
    assert!(matches!(
        w.leader.collect_request(11),
        Err(CollectError::InFlight { reports: 2 })
    ));
    exchange(&mut w);
    assert!(matches!(
        w.leader.collect_request(10),
        Err(CollectError::TooFewReports { reports: 1, min: 2 })
    ));
    let res = collect(&mut w, 11).expect("collected");
    assert_eq!(res.total_watts, 300);
    assert!(matches!(
        w.leader.collect_request(11),
        Err(CollectError::AlreadyCollected { interval: 11 })
    ));
    let late = report(&w.cfg, 100, 11, &mut w.rng).expect("report");
    assert_eq!(
        w.leader.handle_report(12, &late.to_bytes()),
        Err(Refusal::IntervalClosed)
    );
    // Forgetting drops the unfinished interval 10 and refuses it from then on.
    w.leader.forget_before(11);
    w.helper.forget_before(11);
    let old = report(&w.cfg, 100, 10, &mut w.rng).expect("report");
    assert_eq!(
        w.leader.handle_report(12, &old.to_bytes()),
        Err(Refusal::IntervalClosed)
    );
    assert!(matches!(
        w.leader.collect_request(10),
        Err(CollectError::AlreadyCollected { .. } | CollectError::UnknownInterval { .. })
    ));
}

fn send_all_at(w: &mut World, now: u64, interval: u64, readings: &[u32]) {
    for &r in readings {
        let rep = report(&w.cfg, r, interval, &mut w.rng).expect("report");
        w.leader
            .handle_report(now, &rep.to_bytes())
            .expect("accepted");
    }
}

#[test]
fn a_third_of_the_meters_missing_only_lowers_the_count() {
    let mut w = world(7);
    let rs = readings(&mut w.rng, 60);
    let present: Vec<u32> = rs
        .iter()
        .copied()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, r)| r)
        .collect();
    send_all(&mut w, 20, &present);
    exchange(&mut w);
    let res = collect(&mut w, 20).expect("collected");
    let (total, hist) = expected(&w.cfg, &present);
    assert_eq!(res.reports, 40);
    assert_eq!((res.total_watts, res.histogram), (total, hist));
}

#[test]
fn helper_releases_only_whole_matching_intervals_of_enough_reports() {
    let mut w = world(8); // min_reports = 10 by default
    send_all(&mut w, 30, &[100; 12]);
    exchange(&mut w);
    let good = w.leader.collect_request(30).expect("request");
    // A leader (or a forger on the way) asking with another count or checksum gets nothing.
    let mut bytes = good.to_bytes();
    bytes[6 + 8 + 7] ^= 1; // reports 12 → 13
    let forged = CollectRequest::from_bytes(&bytes).expect("decodes");
    assert!(matches!(
        w.helper.handle_collect(&forged),
        Err(CollectError::ReportSetMismatch {
            leader: 13,
            helper: 12
        })
    ));
    let share = w.helper.handle_collect(&good).expect("released");
    assert!(matches!(
        w.helper.handle_collect(&good),
        Err(CollectError::AlreadyCollected { interval: 30 })
    ));
    // Items for a released interval are refused by the helper too.
    let late = report(&w.cfg, 100, 30, &mut w.rng).expect("report");
    let mut w2 = world(8);
    w2.leader
        .handle_report(30, &late.to_bytes())
        .expect("another leader state");
    let req = w2.leader.poll_helper_request(10).expect("queued");
    let resp = w.helper.handle_request(&req);
    assert_eq!(resp.refused(), 1);
    let res = w.leader.finish_collect(&share).expect("unshards");
    assert_eq!((res.reports, res.total_watts), (12, 1_200));
}

#[test]
fn a_lost_helper_answer_is_recovered_by_sending_again() {
    let mut w = small_world(16, 2);
    send_all(&mut w, 5, &[1_000, 2_000, 3_000]);
    let req = w.leader.poll_helper_request(10).expect("queued");
    let _lost = w.helper.handle_request(&req);
    assert!(w.leader.poll_helper_request(10).is_none());
    assert!(matches!(
        w.leader.collect_request(5),
        Err(CollectError::InFlight { reports: 3 })
    ));
    assert_eq!(w.leader.resend_in_flight(), 3);
    exchange(&mut w);
    let res = collect(&mut w, 5).expect("collected");
    assert_eq!((res.reports, res.total_watts), (3, 6_000));
    assert_eq!(w.helper.refusals().total(), 0);
}

#[test]
fn out_of_range_readings_never_leave_the_meter() {
    let w = world(9);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    assert!(matches!(
        report(&w.cfg, 25_006, 1, &mut rng),
        Err(ReportError::OutOfRange {
            watts: 25_006,
            max: 25_000
        })
    ));
    assert!(
        report(&w.cfg, 25_004, 1, &mut rng).is_ok(),
        "rounds to 25 kW"
    );
    assert!(w.cfg.at_or_above(30_000, 20_000));
}

#[test]
fn verify_key_is_accepted_only_from_the_pinned_leader_for_this_task() {
    let w = world(10);
    let mut rng = ChaCha20Rng::seed_from_u64(10);
    let vk = VerifyKey::generate(&mut rng);
    let offer = vk.offer(&w.cfg, &w.leader_key, &mut rng);
    let got = VerifyKey::accept(&w.cfg, &w.helper_key, &offer).expect("accepted");
    assert_eq!(*got.to_bytes(), *vk.to_bytes());
    // Signed by someone else (here: the helper's own key).
    let forged = vk.offer(&w.cfg, &w.helper_key, &mut rng);
    assert_eq!(
        VerifyKey::accept(&w.cfg, &w.helper_key, &forged).err(),
        Some(KeyOfferError::NotFromLeader)
    );
    // Altered anywhere.
    for at in [8, offer.len() - 1] {
        let mut bad = offer.clone();
        bad[at] ^= 1;
        assert!(VerifyKey::accept(&w.cfg, &w.helper_key, &bad).is_err());
    }
    // For another room.
    let (mut p, _, _, _) = params(10);
    p.room = "elsewhere@rooms.grid.example".into();
    let other = PrivateConfig::new(p).expect("valid");
    assert_eq!(
        VerifyKey::accept(&other, &w.helper_key, &offer).err(),
        Some(KeyOfferError::WrongTask)
    );
    assert!(format!("{vk:?}").contains("redacted"));
}

#[test]
fn configs_that_break_a_promise_are_refused() {
    let (p, leader_key, _helper_key, _) = params(11);
    let mut bad = p.clone();
    bad.helper = bad.leader.clone();
    assert_eq!(
        PrivateConfig::new(bad).err(),
        Some(ConfigError::SameAggregatorKey)
    );
    let mut bad = p.clone();
    bad.min_reports = 1;
    assert!(matches!(
        PrivateConfig::new(bad),
        Err(ConfigError::MinReportsTooSmall { found: 1 })
    ));
    let mut bad = p.clone();
    bad.max_watts = 25_005;
    assert!(matches!(
        PrivateConfig::new(bad),
        Err(ConfigError::MaxNotMultiple { .. })
    ));
    let mut bad = p.clone();
    bad.bucket_edges = vec![0, 100, 100];
    assert!(matches!(
        PrivateConfig::new(bad),
        Err(ConfigError::EdgesNotIncreasing { index: 2, .. })
    ));
    let mut bad = p.clone();
    bad.bucket_edges = vec![10, 100];
    assert!(matches!(
        PrivateConfig::new(bad),
        Err(ConfigError::FirstEdgeNotZero { found: 10 })
    ));
    let mut bad = p.clone();
    bad.bucket_edges = vec![0];
    assert!(matches!(
        PrivateConfig::new(bad),
        Err(ConfigError::BucketCount { count: 1, .. })
    ));
    let mut bad = p.clone();
    bad.quantum_watts = 0;
    assert_eq!(
        PrivateConfig::new(bad).err(),
        Some(ConfigError::QuantumZero)
    );
    let cfg = PrivateConfig::new(p).expect("valid");
    let vk = VerifyKey::from_bytes([7; 32]);
    assert!(matches!(
        Helper::new(cfg.clone(), leader_key, vk),
        Err(ConfigError::KeyMismatch { role: "helper" })
    ));
}

#[test]
fn default_buckets_are_log_spaced_up_to_the_bound() {
    let e = log_bucket_edges(32, 50, 25_000, 10);
    assert_eq!(e.len(), 32);
    assert_eq!((e[0], e[1]), (0, 50));
    assert!(e.windows(2).all(|p| p[0] < p[1] && p[1] % 10 == 0));
    assert!((20_000..25_000).contains(&e[31]), "last edge {}", e[31]);
    for p in e[2..].windows(2) {
        let ratio = f64::from(p[1]) / f64::from(p[0]);
        assert!((1.1..1.4).contains(&ratio), "{p:?}");
    }
}

#[test]
fn bench_runs_tiny_and_is_exact() {
    let f = bench(12, 2).expect("bench runs");
    assert!(f.exact);
    assert!(
        f.report_bytes > 1_000 && f.report_bytes < 2_000,
        "{}",
        f.report_bytes
    );
    assert!(f.summary_line().starts_with("private: "));
    // Shown with `cargo test --release -p gridmuc-private -- --nocapture`.
    let f = bench(200, 3).expect("bench runs");
    assert!(f.exact);
    println!("{f:#?}");
    println!("{}", f.summary_line());
}

// ---- wire decoding never panics, refuses truncations and garbage ----

fn sample_messages() -> &'static [Vec<u8>] {
    static MSGS: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
    MSGS.get_or_init(make_sample_messages)
}

fn make_sample_messages() -> Vec<Vec<u8>> {
    let mut w = small_world(12, 2);
    let reps: Vec<Report> = (0..3)
        .map(|i| report(&w.cfg, 100 * i, 1, &mut w.rng).expect("report"))
        .collect();
    for r in &reps {
        w.leader.handle_report(1, &r.to_bytes()).expect("accepted");
    }
    let req = w.leader.poll_helper_request(10).expect("queued");
    let resp = w.helper.handle_request(&req);
    w.leader.handle_helper_response(&resp);
    let collect = w.leader.collect_request(1).expect("request");
    let share = w.helper.handle_collect(&collect).expect("share");
    vec![
        reps[0].to_bytes(),
        req.to_bytes(),
        resp.to_bytes(),
        collect.to_bytes(),
        share.to_bytes(),
    ]
}

fn decode_any(bytes: &[u8]) -> [bool; 5] {
    [
        Report::from_bytes(bytes).is_ok(),
        HelperRequest::from_bytes(bytes).is_ok(),
        HelperResponse::from_bytes(bytes).is_ok(),
        CollectRequest::from_bytes(bytes).is_ok(),
        AggregateShareMessage::from_bytes(bytes).is_ok(),
    ]
}

#[test]
fn every_message_round_trips_and_every_truncation_is_refused() {
    let msgs = sample_messages();
    for (kind, m) in msgs.iter().enumerate() {
        let ok = decode_any(m);
        assert!(ok[kind], "message {kind} decodes as itself");
        assert_eq!(
            ok.iter().filter(|&&b| b).count(),
            1,
            "message {kind} decodes as one type only"
        );
        for cut in 0..m.len() {
            // A batch cut exactly between items is a shorter valid batch; nothing else is.
            let prefix = &m[..cut];
            let ok = decode_any(prefix);
            if ok[kind] {
                assert!(
                    kind == 1 || kind == 2,
                    "message {kind} cut at {cut} still decodes"
                );
            }
        }
        let mut longer = m.clone();
        longer.push(0);
        assert!(!decode_any(&longer)[kind] || kind == 1 || kind == 2);
    }
    // A report with any trailing byte or any missing byte is refused.
    let r = &msgs[0];
    for cut in 0..r.len() {
        assert!(Report::from_bytes(&r[..cut]).is_err());
    }
    let mut longer = r.clone();
    longer.push(0);
    assert!(Report::from_bytes(&longer).is_err());
    // Another wire version is refused, not guessed at.
    let mut v2 = r.clone();
    v2[0] = 2;
    assert!(Report::from_bytes(&v2).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoders_never_panic_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..2_000)) {
        let _ = decode_any(&bytes);
        let mut with_header = vec![1u8, (bytes.first().copied().unwrap_or(0) % 7)];
        with_header.extend_from_slice(&bytes);
        let _ = decode_any(&with_header);
    }

    #[test]
    fn mutated_messages_never_panic_anyone(which in 0usize..5, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let msgs = sample_messages();
        let mut m = msgs[which].clone();
        for (at, x) in flips {
            let i = at % m.len();
            m[i] ^= x;
        }
        let keep = if cut % 2 == 0 { m.len() } else { cut % (m.len() + 1) };
        let m = &m[..keep];
        let _ = decode_any(m);
        let mut w = small_world(13, 2);
        // Every refusal is counted; nothing panics.
        if w.leader.handle_report(1, m).is_err() {
            prop_assert_eq!(w.leader.refusals().total(), 1);
        }
        if let Ok(req) = HelperRequest::from_bytes(m) {
            let _ = w.helper.handle_request(&req);
        }
        if let Ok(resp) = HelperResponse::from_bytes(m) {
            let _ = w.leader.handle_helper_response(&resp);
        }
        if let Ok(c) = CollectRequest::from_bytes(m) {
            let _ = w.helper.handle_collect(&c);
        }
        if let Ok(s) = AggregateShareMessage::from_bytes(m) {
            let _ = w.leader.finish_collect(&s);
        }
    }

    #[test]
    fn any_in_range_reading_round_trips(watts in 0u32..=25_004, interval in any::<u64>()) {
        let w = world(14);
        let mut rng = ChaCha20Rng::seed_from_u64(u64::from(watts));
        let rep = report(&w.cfg, watts, interval, &mut rng).expect("in range");
        prop_assert_eq!(Report::from_bytes(&rep.to_bytes()).expect("decodes"), rep.clone());
        prop_assert_eq!(rep.interval(), interval);
        let q = w.cfg.quantise(watts).expect("in range");
        prop_assert!(q.abs_diff(watts) <= 5);
        let b = w.cfg.bucket_of(q);
        prop_assert!(w.cfg.params().bucket_edges[b] <= q);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn forged_helper_answers_never_corrupt_an_interval(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        // Whatever a forger does to the helper's answer, the leader either aggregates
        // exactly what the helper did, or collection refuses to release anything.
        let mut w = small_world(15, 2);
        send_all(&mut w, 2, &[1_000, 2_000, 3_000]);
        let req = w.leader.poll_helper_request(10).expect("queued");
        let resp = w.helper.handle_request(&req).to_bytes();
        let mut bad = resp.clone();
        for (at, x) in flips {
            let i = at % bad.len();
            bad[i] ^= x;
        }
        if let Ok(forged) = HelperResponse::from_bytes(&bad) {
            let _ = w.leader.handle_helper_response(&forged);
        }
        // Reports whose answer the forger replaced by another id are still in flight: the
        // driver sends them again and the helper repeats its answer.
        w.leader.resend_in_flight();
        exchange(&mut w);
        match collect(&mut w, 2) {
            Ok(res) => prop_assert_eq!((res.reports, res.total_watts), (3, 6_000)),
            Err(e) => prop_assert!(matches!(
                e,
                CollectError::ReportSetMismatch { .. }
                    | CollectError::TooFewReports { .. }
                    | CollectError::UnknownInterval { .. }
            ), "{e:?}"),
        }
    }
}
