//! Private mode of gridmuc: each interval's total, count, mean and histogram of the
//! neighbourhood's readings, while no single reading is seen by anyone. Sans-IO core: the
//! IETF CFRG VDAF Prio3 (draft 18, through the `prio` crate) between two aggregators, with
//! input shares sealed by HPKE (RFC 9180) as the IETF PPM DAP protocol does. No
//! cryptography of our own: prio does the secret sharing and the validity proofs,
//! `gridmuc-botkey` (the `hpke` crate) the sealing.
//!
//! # The privacy promise
//! **No individual reading is learnt by anyone unless the two aggregators collude.** The
//! leader is the substation bot; the helper is a bot run by an independent party (a
//! regulator, a consumers' association, a cooperative). A meter splits each reading into
//! two additive secret shares; each share alone is uniformly random, and each is sealed to
//! one aggregator's pinned key, so neither the XMPP server, nor other occupants, nor one
//! aggregator (even together with the server) can read it. Only the sum over an interval's
//! reports is ever reconstructed.
//!
//! **What the bot (leader and collector) learns**, per interval and nothing finer: the
//! number of valid reports, the exact total of the quantised readings, and the histogram
//! (reports per bucket); from them the mean (exact), median, p95 and spread (estimated
//! within a bucket), and counts of reports at or above a bucket edge. It also learns how
//! many reports were refused and why. The helper learns the same counts but no values.
//!
//! **What is not protected.**
//! - *Timing and sender.* Reports are PMs through the room: the XMPP server sees which
//!   account sent a report and when, the room sees the nickname, and the leader sees the
//!   nickname. Private mode hides values, not participation.
//! - *Sybil reports.* Every valid report counts once. The proof bounds one report's
//!   influence (at most `max_watts` in the total, exactly one histogram count) but not how
//!   many reports an account sends: that is bounded only by the transport (the agents'
//!   one-report-per-nickname-per-interval rule, the server's account and session limits).
//!   Likewise the leader itself can inject valid fake reports; with the helper's
//!   `min_reports` it could, by filling an interval with its own reports, isolate one
//!   honest report (the classic n−1 attack that DAP shares). The helper sees the report
//!   count per interval and can alarm on intervals much smaller than the room.
//! - *Lies within bounds.* A meter can report any value in `[0, max_watts]`, and its sum
//!   and histogram parts are two proofs that are not tied to each other (see below): a
//!   lying meter can put 25 kW in the total and 0 W in the histogram. Its influence stays
//!   within one report's bounds either way.
//! - *Aggregator-to-aggregator messages* ([`HelperRequest`], [`HelperResponse`],
//!   [`CollectRequest`], [`AggregateShareMessage`]) carry no reading but are not
//!   authenticated here. A forged or altered helper answer only makes reports or an
//!   interval fail (both sides must hold the same report set, count and checksum, or
//!   nothing is released), but a forged [`AggregateShareMessage`] with the right count
//!   and checksum (both visible in the [`CollectRequest`]) would silently change an
//!   interval's result. The agents sign them ([`sign_message`], [`open_signed`]; see
//!   "What the agents add").
//! - *Linkable resends* and *no differential privacy*: the two sections below.
//!
//! # Linkability: a resend carries its report id
//! A report is built once and resent as the same bytes, so its id (the Prio3 nonce, in
//! clear) is the same on every copy. Under one nickname that says nothing new. But a
//! report still without a verdict when its meter changes nickname (a rotation whose drain
//! ran out, a removal, a replaced session) goes again under the *new* nickname, and the
//! leader sees one id under both: it can link the two nicknames of that house, which
//! rotation exists to prevent. A leader restart does the same to whatever the meter resends
//! (the new process sees the old id under the current nickname; it can link only if the
//! old process kept a log). The XMPP server sees the same bytes too, but it knows the
//! account anyway. How often: only when a verdict is lost or late across a nickname
//! change; a clean rotation waits for its verdicts first.
//!
//! **Why a resend is not re-randomised.** A fresh report (new id, new shares) for the same
//! reading and interval would unlink the nicknames, but it would no longer be a replay: if
//! the first copy had arrived and only its verdict was lost, both would be counted and the
//! house would count twice. Exactly-once needs a stable key for the one who removes
//! duplicates, and a key the leader sees links what it is attached to. What could keep
//! both: a duplicate tag sealed to the helper only (beside its input share, bound by the
//! AAD), the helper refusing a second report with the same tag in an interval, the leader
//! dropping whatever the helper refuses (both must hold the same report set already).
//! The leader would see fresh ids under each nickname, the helper tags but no nicknames:
//! linking would again need both. That is a wire change and helper state, not done yet.
//!
//! # Differential privacy: not offered
//! prio 0.18 adds aggregator-side discrete-Laplace noise (`AggregatorWithNoise`,
//! `PureDpDiscreteLaplace`) to `Prio3Histogram`, `Prio3SumVec` and L1-bounded sums, not to
//! `Prio3Sum`; each aggregator noises its own aggregate share, so the result stays
//! ε-differentially private if either aggregator is honest.
//! - *The total* cannot be noised through the crate. Its sensitivity is one report's bound
//!   (25 kW): Laplace noise of scale 25 kW / ε on a neighbourhood total of tens of kW
//!   would blind the overload and aggregate-spike detectors, which are why the total is
//!   published. What could be done: carry the total as a one-element `Prio3SumVec` (whose
//!   bit encoding bounds it at 2^bits − 1 quanta, 40.95 kW for 12 bits of 10 W, not at
//!   `max_watts`), or add prio's discrete-Laplace sample to the Sum's aggregate share
//!   ourselves (a privacy mechanism of our own on the crate's sampler).
//! - *The histogram* could be noised (sensitivity 2 per report under replacement). But
//!   every published count would then be approximate, possibly negative: the house-spike
//!   line ("N houses at or above T") could say 0 while a meter's exact local check says its
//!   house is above it, and median, p95 and spread drift with the noise. The meter's notice
//!   would have to say "approximately", and the agreement between published counts and
//!   local notices, which the tests check, would hold only in expectation.
//! - *Composition.* ε is per interval; a house reporting every 5 minutes spends 288 ε a
//!   day, so a meaningful daily guarantee needs a large scale per interval.
//! - *Not hidden either way:* the report count per interval (the helper checks it exactly)
//!   and participation (who sends when, see above).
//!
//! Until a deployment asks for it, private mode promises what it can keep exactly: no
//! individual reading is learnt unless the two aggregators collude, and aggregates of at
//! least `min_reports` reports are published exactly.
//!
//! # The measurement: two standard Prio3 instances in one report
//! Each report carries a `Prio3Sum` over the quantised reading (`0..=max_watts/quantum`,
//! 2,500 quanta of 10 W by default) and a `Prio3Histogram` over its bucket (32 log-spaced
//! buckets by default, 0, 50 W, … 20.4 kW, ~22 % apart), sharded under the same nonce (the
//! report id), sealed together, verified together and counted only if both proofs pass.
//! Measured sizes (binary; 32 buckets, chunk length 5, prio's optimum):
//!
//! | per report | Prio3Sum (2,500) | Prio3Histogram (32) |
//! |---|---|---|
//! | public share | 0 B | 64 B |
//! | leader's input share | 352 B | 944 B |
//! | helper's input share (a seed) | 32 B | 64 B |
//! | verifier share / message | 24 B / 0 B | 224 B / 32 B |
//!
//! Why two instances rather than one: the only standard single instance that carries both
//! is a `Prio3SumVec`, and it enforces the wrong things or costs too much. A SumVec of 33
//! elements bounded by 2,500 (the sum plus 32 counts) is 7.9–8.8 KB per leader share and
//! 150–230 µs to shard, and each "count" could be 2,500. A SumVec of 44 bits (12 reading
//! bits plus 32 bucket bits) is 1,232 B, barely smaller than 352 + 944 = 1,296 B, but it
//! neither bounds the reading at 25 kW (12 bits reach 40.95 kW) nor forces exactly one
//! bucket. Two instances give each part its own standard, registered circuit: the Sum's
//! encoding makes every valid proof mean `0 ≤ value ≤ max`, the Histogram's proves one-hot.
//! Tying the two together would need a custom circuit, i.e. cryptography of our own.
//! Fewer buckets shrink the report: 24 buckets give a 784 B histogram share and a report of
//! about 1,430 B instead of 1,588 B.
//!
//! **Spike counts.** "Houses far above their peers" come from the histogram: the bot
//! chooses a threshold (e.g. `max(k × median, floor)`), [`IntervalResult::count_at_or_above`]
//! rounds it up to a bucket edge and sums the buckets from there, exactly. The bot
//! publishes "N houses at or above T"; each meter checks its own reading with
//! [`PrivateConfig::at_or_above`] and tells its household. Nobody learns which houses.
//!
//! # The protocol
//! - **Binding.** [`PrivateConfig::task_id`] is SHA-256 over every parameter (room, interval
//!   length, quantum, bound, buckets, minimum, both public keys). It is the VDAF context
//!   (`ctx`), and the HPKE associated data of each sealed share is domain ‖ role ‖ task id ‖
//!   interval ‖ report id ‖ public share (DAP's `InputShareAad`): a share opens only for its
//!   aggregator, room, configuration, interval and report. Its first 4 bytes travel in
//!   clear so a misconfigured meter is told apart from a tampered report.
//! - **Sealing.** `gridmuc-botkey`'s `BotPublicKey::seal` (HPKE base mode,
//!   DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305, single shot), one seal per
//!   aggregator per report. Aggregators are bots with ordinary bot keys.
//! - **Verification** ([`Leader`], [`Helper`]): Prio3's one round in the ping-pong
//!   topology; each side also checks its own joint-randomness part against the public share,
//!   so both sides always accept the same reports. Refusals are counted by [`Refusal`]
//!   and never touch an aggregate. Replays (same report id in an interval) are refused;
//!   the helper answers a batch sent twice identically and counts it once.
//! - **Verify key.** The 32-byte Prio3 verify key is shared by the two aggregators and
//!   secret from meters (robustness depends on it, privacy does not). The leader generates
//!   it and sends it sealed to the helper and signed ([`VerifyKey::offer`],
//!   [`VerifyKey::accept`]).
//! - **Collection.** The helper releases an interval's aggregate share once, only if the
//!   leader holds the same report count and checksum (XOR of SHA-256 of the report ids) and
//!   at least `min_reports` (default 10) reports.
//!
//! # Costs
//! Measured with [`bench()`] in release, as one thread's CPU time on this project's
//! 2-core machine: a meter spends 250–290 µs per report (sharding both VDAFs ~35 µs, the
//! rest two HPKE seals of ~110 µs each); each aggregator 100–120 µs per report (HPKE open
//! ~80 µs, Prio3 ~20–25 µs), flat from 100 to 5,000 houses, so about 2.2–2.4 % of one core
//! for 1,000 houses every 5 s; collection costs microseconds per interval. With the other
//! core busy the same figures read ~340 and ~150 µs. A report is 1,588 bytes binary (about
//! 2.1 KB as base64 in a stanza); the leader sends the helper 488 B per report and gets
//! 61 B back, and the helper's aggregate share is 578 B per interval.
//!
//! # Sans-IO
//! No I/O, no clock, no async. The caller passes interval numbers (its clock) and a
//! [`rand::CryptoRng`] for report ids, HPKE ephemeral keys and the verify key. Two
//! exceptions: prio 0.18 draws its sharding randomness from its own thread-local CSPRNG
//! (its public API takes none), and [`bench()`] reads the thread's CPU clock.
//!
//! # What the agents add (`gridmuc-agent`'s `private` module)
//! - **Authenticate the bots to each other.** Every leader ↔ helper message, verdict and
//!   notice is signed with the sender's bot key ([`sign_message`]) and checked against the
//!   pinned key ([`open_signed`]); otherwise anyone could feed the helper reports the
//!   leader never saw and spoil intervals.
//! - **Meter:** one report per interval and nickname, sent as base64 in a PM to the
//!   leader; a resend is the same bytes (the leader answers a duplicate with
//!   [`Refusal::Replay`], which means "already received").
//! - **Leader:** the per-nickname rate limit (one `rate_limited` verdict per nickname and
//!   interval), batches of at most [`BENCH_BATCH`] reports
//!   per stanza, [`Leader::resend_in_flight`] when the helper is late, collection after a
//!   grace period, [`Leader::forget_before`], signed summaries and spike counts.
//! - **Helper:** a `gridmuc helper` command and its key and verify-key files, an alarm
//!   on intervals with far fewer reports than the room has meters.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use gridmuc_botkey::BotSecretKey;
//! use gridmuc_private::*;
//!
//! let mut rng = rand::rng();
//! let leader_key = Arc::new(BotSecretKey::generate(&mut rng));
//! let helper_key = Arc::new(BotSecretKey::generate(&mut rng));
//! let mut params = PrivateParams::new(
//!     "neighbourhood@rooms.grid.example", 5, leader_key.public(), helper_key.public());
//! params.min_reports = 3;
//! let cfg = PrivateConfig::new(params)?; // the same on every meter and both bots
//!
//! // Once: the leader makes the verify key and hands it to the helper.
//! let vk = VerifyKey::generate(&mut rng);
//! let offer = vk.offer(&cfg, &leader_key, &mut rng);
//! let mut helper = Helper::new(cfg.clone(), helper_key.clone(),
//!     VerifyKey::accept(&cfg, &helper_key, &offer)?)?;
//! let mut leader = Leader::new(cfg.clone(), leader_key, vk)?;
//!
//! // Interval 42: three meters report (PM to the leader).
//! for watts in [350, 1_840, 7_200] {
//!     let bytes = report(&cfg, watts, 42, &mut rng)?.to_bytes();
//!     leader.handle_report(42, &bytes)?;
//! }
//! // Leader ↔ helper (PMs between the bots).
//! while let Some(req) = leader.poll_helper_request(150) {
//!     let resp = helper.handle_request(&HelperRequest::from_bytes(&req.to_bytes())?);
//!     leader.handle_helper_response(&HelperResponse::from_bytes(&resp.to_bytes())?);
//! }
//! // End of the interval: collect.
//! let req = leader.collect_request(42)?;
//! let share = helper.handle_collect(&req)?;
//! let result = leader.finish_collect(&share)?;
//! assert_eq!((result.reports, result.total_watts), (3, 9_390));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aggregator;
mod bench;
mod config;
mod error;
mod messages;
mod notice;
mod report;
mod result;
mod signed;
mod verify_key;
mod wire;

#[cfg(any(test, feature = "hostile"))]
pub mod hostile;
#[cfg(test)]
mod tests;

pub use aggregator::{Helper, Leader, Refusals, ResponseSummary};
pub use bench::{BENCH_BATCH, BenchFigures, bench};
pub use config::{
    DEFAULT_BUCKETS, DEFAULT_LOWEST_EDGE_WATTS, DEFAULT_MAX_WATTS, DEFAULT_MIN_REPORTS,
    DEFAULT_QUANTUM_WATTS, MAX_BUCKETS, PrivateConfig, PrivateParams, log_bucket_edges,
};
pub use error::{
    BenchError, CollectError, ConfigError, DecodeError, KeyOfferError, Refusal, ReportError,
    SignedError,
};
pub use messages::{AggregateShareMessage, CollectRequest, HelperRequest, HelperResponse};
pub use notice::{IntervalNotice, LeaderNotice};
pub use report::{Report, ReportId, report};
pub use result::{IntervalResult, SpikeCount};
pub use signed::{open_signed, sign_message};
pub use verify_key::VerifyKey;
pub use wire::{Kind as MessageKind, WIRE_VERSION};
