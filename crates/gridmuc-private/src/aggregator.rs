//! The two aggregators' state machines: no I/O, no clock. The driver feeds received bytes
//! in and sends what comes out.
//!
//! ```text
//! meter ──Report──► Leader::handle_report ──(queue)──► Leader::poll_helper_request
//!                                                          │ HelperRequest
//!                                                          ▼
//!                   Leader::handle_helper_response ◄── Helper::handle_request
//!                                                HelperResponse
//! end of interval:  Leader::collect_request ──CollectRequest──► Helper::handle_collect
//!                   Leader::finish_collect ◄──AggregateShareMessage──┘  → IntervalResult
//! ```
//!
//! Each report is verified once by Prio3's single round. The leader runs `verify_init` on
//! its share and sends its verifier shares; the helper runs `verify_init`, combines both
//! verifier shares (which decides the validity proof), runs `verify_next` and aggregates;
//! the leader runs `verify_next` on the helper's verifier message and aggregates. Before
//! committing, each aggregator also checks that its own joint-randomness part equals the
//! public share's part at its index: that is exactly the check `verify_next` makes on the
//! *other* side, so a report that one side would accept and the other refuse (a meter
//! lying in the public share) is refused by both, and the two report sets stay equal.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Cursor;
use std::sync::Arc;

use gridmuc_botkey::BotSecretKey;
use prio::codec::{Encode as _, ParameterizedDecode};
use prio::vdaf::prio3::{Prio3Histogram, Prio3Sum};
use prio::vdaf::{Aggregatable as _, Aggregator, Collector as _, Vdaf, VerifyTransition};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::config::PrivateConfig;
use crate::error::{CollectError, ConfigError, Refusal};
use crate::messages::{
    AggregateShareMessage, CollectRequest, HelperItem, HelperOutcome, HelperRequest,
    HelperResponse, Outcome,
};
use crate::report::{Report, ReportId, Role, share_aad};
use crate::result::IntervalResult;
use crate::verify_key::VerifyKey;

type SumPublic = <Prio3Sum as Vdaf>::PublicShare;
type SumInput = <Prio3Sum as Vdaf>::InputShare;
type SumState = <Prio3Sum as Aggregator<32, 16>>::VerifyState;
type SumVerifierShare = <Prio3Sum as Aggregator<32, 16>>::VerifierShare;
type SumMessage = <Prio3Sum as Aggregator<32, 16>>::VerifierMessage;
type SumAggregate = <Prio3Sum as Vdaf>::AggregateShare;
type HistPublic = <Prio3Histogram as Vdaf>::PublicShare;
type HistInput = <Prio3Histogram as Vdaf>::InputShare;
type HistState = <Prio3Histogram as Aggregator<32, 16>>::VerifyState;
type HistVerifierShare = <Prio3Histogram as Aggregator<32, 16>>::VerifierShare;
type HistMessage = <Prio3Histogram as Aggregator<32, 16>>::VerifierMessage;
type HistAggregate = <Prio3Histogram as Vdaf>::AggregateShare;

/// Length of a Prio3 seed (joint-randomness part) in bytes.
const SEED_LEN: usize = 32;

/// How many reports each aggregator refused, by reason: what the bot's log line reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusals([u64; Refusal::ALL.len()]);

impl Refusals {
    /// Count for one reason.
    pub fn get(&self, r: Refusal) -> u64 {
        self.0[r.index()]
    }

    /// Count over all reasons.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Non-zero counts by reason, for log lines.
    pub fn iter(&self) -> impl Iterator<Item = (Refusal, u64)> + '_ {
        Refusal::ALL
            .into_iter()
            .map(|r| (r, self.get(r)))
            .filter(|&(_, n)| n > 0)
    }

    /// Counts one refusal; public for the agents' own refusals (the per-nickname rate limit).
    pub fn add(&mut self, r: Refusal) {
        self.0[r.index()] += 1;
    }
}

/// What [`Leader::handle_helper_response`] did with an answer, for the bot's log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseSummary {
    /// Reports now aggregated on both sides.
    pub accepted: usize,
    /// Reports refused (by the helper, or by the leader on finishing).
    pub refused: usize,
    /// Answers for reports not in flight (duplicates, forgotten intervals, another task).
    pub unknown: usize,
}

/// One interval's running aggregate on one aggregator.
struct Tally {
    /// Report ids accepted (leader: also those in flight), for replay refusal.
    seen: HashSet<ReportId>,
    /// Helper only: the verifier messages sent for each accepted report, so a batch the
    /// leader sends again (its answer was lost) gets the same answer and counts once.
    answered: HashMap<ReportId, (Vec<u8>, Vec<u8>)>,
    /// Reports aggregated.
    reports: u64,
    /// XOR of SHA-256 of each aggregated report id: lets the two sides compare sets.
    checksum: [u8; 32],
    sum: SumAggregate,
    hist: HistAggregate,
}

impl Tally {
    fn new(cfg: &PrivateConfig) -> Self {
        Tally {
            seen: HashSet::new(),
            answered: HashMap::new(),
            reports: 0,
            checksum: [0; 32],
            sum: cfg.sum.aggregate_init(&()),
            hist: cfg.hist.aggregate_init(&()),
        }
    }

    /// Adds one report's output shares; prio refuses only a length mismatch, which the
    /// decoders already excluded.
    fn add(
        &mut self,
        id: ReportId,
        sum: &<Prio3Sum as Vdaf>::OutputShare,
        hist: &<Prio3Histogram as Vdaf>::OutputShare,
    ) -> Result<(), Refusal> {
        let mut sum_agg = self.sum.clone();
        sum_agg
            .accumulate(sum)
            .map_err(|_| Refusal::AggregatorMismatch)?;
        self.hist
            .accumulate(hist)
            .map_err(|_| Refusal::AggregatorMismatch)?;
        self.sum = sum_agg;
        self.reports += 1;
        let h: [u8; 32] = Sha256::digest(id.0).into();
        for (c, b) in self.checksum.iter_mut().zip(h) {
            *c ^= b;
        }
        Ok(())
    }
}

/// Which intervals are open, closed (collected) or forgotten, on one aggregator.
struct Book {
    /// Intervals below this were forgotten: refused.
    floor: u64,
    /// Intervals collected (or being collected): refused.
    closed: BTreeSet<u64>,
    /// Intervals with accepted reports.
    open: BTreeMap<u64, Tally>,
}

impl Book {
    fn new() -> Self {
        Book {
            floor: 0,
            closed: BTreeSet::new(),
            open: BTreeMap::new(),
        }
    }

    /// Refuses closed intervals and replayed ids; does not create a tally.
    fn check(&self, interval: u64, id: &ReportId) -> Result<(), Refusal> {
        if interval < self.floor || self.closed.contains(&interval) {
            return Err(Refusal::IntervalClosed);
        }
        if self
            .open
            .get(&interval)
            .is_some_and(|t| t.seen.contains(id))
        {
            return Err(Refusal::Replay);
        }
        Ok(())
    }

    fn tally(&mut self, cfg: &PrivateConfig, interval: u64) -> &mut Tally {
        self.open.entry(interval).or_insert_with(|| Tally::new(cfg))
    }

    fn forget_before(&mut self, interval: u64) {
        self.floor = self.floor.max(interval);
        let floor = self.floor;
        self.open.retain(|&i, _| i >= floor);
        self.closed.retain(|&i| i >= floor);
    }
}

/// One aggregator's view of a report after `verify_init`.
struct Prepared {
    sum_state: SumState,
    sum_share: SumVerifierShare,
    hist_state: HistState,
    hist_share: HistVerifierShare,
}

/// Decodes a whole byte string as consecutive prio values, refusing leftovers.
fn decode_all<T, P>(param: &P, cursor: &mut Cursor<&[u8]>) -> Result<T, Refusal>
where
    T: ParameterizedDecode<P>,
{
    T::decode_with_param(param, cursor).map_err(|_| Refusal::BadShares)
}

/// Checks that a cursor consumed all of its input.
fn at_end(cursor: &Cursor<&[u8]>) -> Result<(), Refusal> {
    if cursor.position() as usize == cursor.get_ref().len() {
        Ok(())
    } else {
        Err(Refusal::BadShares)
    }
}

/// What an aggregator receives of one report: metadata, public share, its sealed share.
struct Received<'a> {
    interval: u64,
    id: &'a ReportId,
    public_share: &'a [u8],
    sealed: &'a [u8],
}

/// Opens this aggregator's sealed share and runs `verify_init` on both VDAFs, then checks
/// its own joint-randomness part against the public share.
fn prepare(
    cfg: &PrivateConfig,
    key: &BotSecretKey,
    verify_key: &VerifyKey,
    role: Role,
    r: &Received<'_>,
) -> Result<Prepared, Refusal> {
    let Received {
        interval,
        id,
        public_share,
        sealed,
    } = *r;
    let mut c = Cursor::new(public_share);
    let sum_public: SumPublic = decode_all(&cfg.sum, &mut c)?;
    let hist_public: HistPublic = decode_all(&cfg.hist, &mut c)?;
    at_end(&c)?;
    let aad = share_aad(cfg, role, interval, id, public_share);
    let plain = Zeroizing::new(key.open(&aad, sealed).map_err(|_| Refusal::Unauthentic)?);
    let agg_id = role as usize;
    let mut c = Cursor::new(plain.as_slice());
    let sum_input: SumInput = decode_all(&(&cfg.sum, agg_id), &mut c)?;
    let hist_input: HistInput = decode_all(&(&cfg.hist, agg_id), &mut c)?;
    at_end(&c)?;
    let vk = verify_key.as_array();
    let (sum_state, sum_share) = cfg
        .sum
        .verify_init(vk, cfg.ctx(), agg_id, &(), &id.0, &sum_public, &sum_input)
        .map_err(|_| Refusal::BadShares)?;
    let (hist_state, hist_share) = cfg
        .hist
        .verify_init(vk, cfg.ctx(), agg_id, &(), &id.0, &hist_public, &hist_input)
        .map_err(|_| Refusal::BadShares)?;
    check_own_part(&hist_public, &hist_share, agg_id)?;
    Ok(Prepared {
        sum_state,
        sum_share,
        hist_state,
        hist_share,
    })
}

/// The public share carries one joint-randomness part per aggregator, in order (draft 18,
/// `Prio3PublicShare`); a verifier share ends with the sender's own part. They must match,
/// or the other aggregator's `verify_next` will refuse the report.
fn check_own_part(
    public: &HistPublic,
    share: &HistVerifierShare,
    agg_id: usize,
) -> Result<(), Refusal> {
    let public = public.get_encoded().map_err(|_| Refusal::BadShares)?;
    let share = share.get_encoded().map_err(|_| Refusal::BadShares)?;
    let claimed = public.get(agg_id * SEED_LEN..(agg_id + 1) * SEED_LEN);
    let own = share
        .len()
        .checked_sub(SEED_LEN)
        .and_then(|start| share.get(start..));
    match (claimed, own) {
        (Some(a), Some(b)) if a == b => Ok(()),
        (Some(_), Some(_)) => Err(Refusal::JointRandMismatch),
        _ => Err(Refusal::BadShares),
    }
}

/// Encodes a prio value that cannot fail to encode (fixed-size field vectors and seeds).
fn encode<T: prio::codec::Encode>(v: &T) -> Vec<u8> {
    v.get_encoded().unwrap_or_default()
}

/// A report the leader prepared and sent to the helper, until the helper answers.
struct InFlight {
    sum_state: SumState,
    hist_state: HistState,
    /// Kept to send again if the answer is lost ([`Leader::resend_in_flight`]).
    item: HelperItem,
}

/// The substation bot's aggregator and the collector: takes meters' reports, drives the
/// helper, and unshards each interval.
pub struct Leader {
    cfg: PrivateConfig,
    key: Arc<BotSecretKey>,
    verify_key: VerifyKey,
    book: Book,
    in_flight: HashMap<(u64, ReportId), InFlight>,
    outbox: Vec<HelperItem>,
    /// Every item sent to the helper, by interval, until the interval is forgotten: what
    /// [`Leader::resend_interval`] sends a restarted helper that lost them.
    sent: BTreeMap<u64, Vec<HelperItem>>,
    collecting: BTreeMap<u64, Tally>,
    refusals: Refusals,
}

impl Leader {
    /// The leader for `cfg`; its key must be the one `cfg` pins as leader.
    pub fn new(
        cfg: PrivateConfig,
        key: Arc<BotSecretKey>,
        verify_key: VerifyKey,
    ) -> Result<Self, ConfigError> {
        if key.public() != cfg.params().leader {
            return Err(ConfigError::KeyMismatch { role: "leader" });
        }
        Ok(Leader {
            cfg,
            key,
            verify_key,
            book: Book::new(),
            in_flight: HashMap::new(),
            outbox: Vec::new(),
            sent: BTreeMap::new(),
            collecting: BTreeMap::new(),
            refusals: Refusals::default(),
        })
    }

    /// The configuration it runs, for the agent's log lines.
    pub fn config(&self) -> &PrivateConfig {
        &self.cfg
    }

    /// Takes one report received from a meter during `current_interval` (the driver's
    /// clock): checks, opens and prepares it, and queues it for the helper. A refusal is
    /// counted and leaves every aggregate unchanged.
    pub fn handle_report(
        &mut self,
        current_interval: u64,
        bytes: &[u8],
    ) -> Result<ReportId, Refusal> {
        let r = self.take_report(current_interval, bytes);
        if let Err(reason) = r {
            self.refusals.add(reason);
        }
        r
    }

    fn take_report(&mut self, current_interval: u64, bytes: &[u8]) -> Result<ReportId, Refusal> {
        let report = Report::from_bytes(bytes).map_err(|_| Refusal::Malformed)?;
        if report.task_tag() != self.cfg.task_tag() {
            return Err(Refusal::WrongTask);
        }
        let interval = report.interval();
        if interval > current_interval.saturating_add(1) {
            return Err(Refusal::IntervalAhead);
        }
        let id = report.id();
        self.book.check(interval, &id)?;
        let p = prepare(
            &self.cfg,
            &self.key,
            &self.verify_key,
            Role::Leader,
            &Received {
                interval,
                id: &id,
                public_share: report.public_share(),
                sealed: report.leader_share(),
            },
        )?;
        self.book.tally(&self.cfg, interval).seen.insert(id);
        let item = HelperItem {
            interval,
            id,
            public_share: report.public_share().to_vec(),
            helper_share: report.helper_share().to_vec(),
            leader_sum_share: encode(&p.sum_share),
            leader_hist_share: encode(&p.hist_share),
        };
        self.outbox.push(item.clone());
        self.sent.entry(interval).or_default().push(item.clone());
        self.in_flight.insert(
            (interval, id),
            InFlight {
                sum_state: p.sum_state,
                hist_state: p.hist_state,
                item,
            },
        );
        Ok(id)
    }

    /// The next batch for the helper (at most `max_reports`), or `None` when nothing waits.
    pub fn poll_helper_request(&mut self, max_reports: usize) -> Option<HelperRequest> {
        if self.outbox.is_empty() {
            return None;
        }
        let n = max_reports.max(1).min(self.outbox.len());
        let items: Vec<HelperItem> = self.outbox.drain(..n).collect();
        Some(HelperRequest {
            task_tag: self.cfg.task_tag(),
            items,
        })
    }

    /// Finishes the reports the helper answered: aggregates the accepted ones, counts the
    /// refused ones.
    pub fn handle_helper_response(&mut self, response: &HelperResponse) -> ResponseSummary {
        let mut summary = ResponseSummary::default();
        if response.task_tag != self.cfg.task_tag() {
            summary.unknown = response.items.len();
            return summary;
        }
        for item in &response.items {
            let Some(InFlight {
                sum_state,
                hist_state,
                ..
            }) = self.in_flight.remove(&(item.interval, item.id))
            else {
                summary.unknown += 1;
                continue;
            };
            let result = match &item.outcome {
                Outcome::Refused(reason) => Err(*reason),
                Outcome::Accepted {
                    sum_message,
                    hist_message,
                } => self.finish(
                    item.interval,
                    item.id,
                    sum_state,
                    hist_state,
                    sum_message,
                    hist_message,
                ),
            };
            match result {
                Ok(()) => summary.accepted += 1,
                Err(reason) => {
                    self.refusals.add(reason);
                    summary.refused += 1;
                }
            }
        }
        summary
    }

    fn finish(
        &mut self,
        interval: u64,
        id: ReportId,
        sum_state: SumState,
        hist_state: HistState,
        sum_message: &[u8],
        hist_message: &[u8],
    ) -> Result<(), Refusal> {
        let ctx = self.cfg.ctx();
        let sum_msg = SumMessage::get_decoded_with_param(&sum_state, sum_message)
            .map_err(|_| Refusal::AggregatorMismatch)?;
        let hist_msg = HistMessage::get_decoded_with_param(&hist_state, hist_message)
            .map_err(|_| Refusal::AggregatorMismatch)?;
        let sum_out = match self.cfg.sum.verify_next(ctx, sum_state, sum_msg) {
            Ok(VerifyTransition::Finish(out)) => out,
            _ => return Err(Refusal::AggregatorMismatch),
        };
        let hist_out = match self.cfg.hist.verify_next(ctx, hist_state, hist_msg) {
            Ok(VerifyTransition::Finish(out)) => out,
            _ => return Err(Refusal::AggregatorMismatch),
        };
        match self.book.open.get_mut(&interval) {
            Some(t) => t.add(id, &sum_out, &hist_out),
            None => Err(Refusal::IntervalClosed),
        }
    }

    /// Closes `interval` to new reports and asks the helper for its aggregate share. Fails
    /// while reports of the interval wait for the helper, or with too few reports (then the
    /// interval stays open; [`Leader::forget_before`] drops it).
    pub fn collect_request(&mut self, interval: u64) -> Result<CollectRequest, CollectError> {
        if self.book.closed.contains(&interval) {
            return Err(CollectError::AlreadyCollected { interval });
        }
        let waiting = self
            .in_flight
            .keys()
            .filter(|(i, _)| *i == interval)
            .count();
        if waiting > 0 {
            return Err(CollectError::InFlight { reports: waiting });
        }
        let Some(tally) = self.book.open.get(&interval) else {
            return Err(CollectError::UnknownInterval { interval });
        };
        let min = self.cfg.params().min_reports;
        if tally.reports < u64::from(min) {
            return Err(CollectError::TooFewReports {
                reports: tally.reports,
                min,
            });
        }
        let Some(tally) = self.book.open.remove(&interval) else {
            return Err(CollectError::UnknownInterval { interval });
        };
        let request = CollectRequest {
            task_tag: self.cfg.task_tag(),
            interval,
            reports: tally.reports,
            checksum: tally.checksum,
        };
        self.book.closed.insert(interval);
        self.collecting.insert(interval, tally);
        Ok(request)
    }

    /// Combines the helper's aggregate share with the leader's and returns the interval's
    /// statistics. Nothing is released unless both sides aggregated the same reports.
    pub fn finish_collect(
        &mut self,
        share: &AggregateShareMessage,
    ) -> Result<IntervalResult, CollectError> {
        if share.task_tag != self.cfg.task_tag() {
            return Err(CollectError::WrongTask);
        }
        let interval = share.interval;
        let Some(tally) = self.collecting.get(&interval) else {
            return Err(CollectError::UnknownInterval { interval });
        };
        if share.reports != tally.reports || share.checksum != tally.checksum {
            return Err(CollectError::ReportSetMismatch {
                leader: tally.reports,
                helper: share.reports,
            });
        }
        let helper_sum =
            SumAggregate::get_decoded_with_param(&(&self.cfg.sum, &()), &share.sum_share)
                .map_err(|_| CollectError::BadAggregateShare)?;
        let helper_hist =
            HistAggregate::get_decoded_with_param(&(&self.cfg.hist, &()), &share.hist_share)
                .map_err(|_| CollectError::BadAggregateShare)?;
        let n = usize::try_from(tally.reports).unwrap_or(usize::MAX);
        let total_quanta = self
            .cfg
            .sum
            .unshard(&(), [tally.sum.clone(), helper_sum], n)
            .map_err(|e| CollectError::Unshard(e.to_string()))?;
        let histogram = self
            .cfg
            .hist
            .unshard(&(), [tally.hist.clone(), helper_hist], n)
            .map_err(|e| CollectError::Unshard(e.to_string()))?;
        let reports = tally.reports;
        self.collecting.remove(&interval);
        Ok(IntervalResult::new(
            &self.cfg,
            interval,
            reports,
            total_quanta,
            &histogram,
        ))
    }

    /// Forgets every interval below `interval` (open, collecting, or in flight) and refuses
    /// later reports for them; the driver calls it so old intervals cannot pile up. Returns
    /// how many in-flight reports were dropped.
    pub fn forget_before(&mut self, interval: u64) -> usize {
        self.book.forget_before(interval);
        let floor = self.book.floor;
        let before = self.in_flight.len();
        self.in_flight.retain(|(i, _), _| *i >= floor);
        self.outbox.retain(|it| it.interval >= floor);
        self.sent.retain(|&i, _| i >= floor);
        self.collecting.retain(|&i, _| i >= floor);
        before - self.in_flight.len()
    }

    /// Queues every report still waiting for the helper again, for the driver to call when
    /// an answer is overdue (lost request or response); the helper answers a report it
    /// already accepted with the same messages and counts it once. Returns how many.
    pub fn resend_in_flight(&mut self) -> usize {
        let mut items: Vec<HelperItem> = self.in_flight.values().map(|f| f.item.clone()).collect();
        items.sort_by_key(|it| (it.interval, it.id));
        self.outbox = items;
        self.outbox.len()
    }

    /// Queues every report of `interval` sent to the helper so far again, answered or not:
    /// for a collection the helper did not answer, because its answer was lost (it answers
    /// the same again and counts nothing twice) or because it restarted and lost its
    /// aggregate (it prepares them afresh). Returns how many.
    pub fn resend_interval(&mut self, interval: u64) -> usize {
        let items = self.sent.get(&interval).cloned().unwrap_or_default();
        let n = items.len();
        self.outbox.extend(items);
        n
    }

    /// Reports accepted by the leader whose helper answer has not arrived.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Reports refused so far, by reason (including those the helper refused).
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }
}

/// The independent party's aggregator: prepares what the leader forwards, keeps its own
/// aggregate, and releases it only for a whole interval of at least `min_reports` reports.
pub struct Helper {
    cfg: PrivateConfig,
    key: Arc<BotSecretKey>,
    verify_key: VerifyKey,
    book: Book,
    refusals: Refusals,
}

impl Helper {
    /// The helper for `cfg`; its key must be the one `cfg` pins as helper.
    pub fn new(
        cfg: PrivateConfig,
        key: Arc<BotSecretKey>,
        verify_key: VerifyKey,
    ) -> Result<Self, ConfigError> {
        if key.public() != cfg.params().helper {
            return Err(ConfigError::KeyMismatch { role: "helper" });
        }
        Ok(Helper {
            cfg,
            key,
            verify_key,
            book: Book::new(),
            refusals: Refusals::default(),
        })
    }

    /// Prepares every report of a batch and answers each: the verifier messages for an
    /// accepted report (now in the helper's aggregate), or the refusal.
    pub fn handle_request(&mut self, request: &HelperRequest) -> HelperResponse {
        let wrong_task = request.task_tag != self.cfg.task_tag();
        let mut items = Vec::with_capacity(request.items.len());
        for item in &request.items {
            let result = if wrong_task {
                Err(Refusal::WrongTask)
            } else {
                self.take(item)
            };
            let outcome = match result {
                Ok((sum_message, hist_message)) => Outcome::Accepted {
                    sum_message,
                    hist_message,
                },
                Err(reason) => {
                    self.refusals.add(reason);
                    Outcome::Refused(reason)
                }
            };
            items.push(HelperOutcome {
                interval: item.interval,
                id: item.id,
                outcome,
            });
        }
        HelperResponse {
            task_tag: self.cfg.task_tag(),
            items,
        }
    }

    fn take(&mut self, item: &HelperItem) -> Result<(Vec<u8>, Vec<u8>), Refusal> {
        if let Some(answer) = self
            .book
            .open
            .get(&item.interval)
            .and_then(|t| t.answered.get(&item.id))
        {
            // Sent again by the leader: same answer, not counted twice. (A forger replaying
            // the id learns only verifier messages it saw already.)
            return Ok(answer.clone());
        }
        self.book.check(item.interval, &item.id)?;
        let p = prepare(
            &self.cfg,
            &self.key,
            &self.verify_key,
            Role::Helper,
            &Received {
                interval: item.interval,
                id: &item.id,
                public_share: &item.public_share,
                sealed: &item.helper_share,
            },
        )?;
        let ctx = self.cfg.ctx();
        let leader_sum =
            SumVerifierShare::get_decoded_with_param(&p.sum_state, &item.leader_sum_share)
                .map_err(|_| Refusal::AggregatorMismatch)?;
        let leader_hist =
            HistVerifierShare::get_decoded_with_param(&p.hist_state, &item.leader_hist_share)
                .map_err(|_| Refusal::AggregatorMismatch)?;
        // Combining the two verifier shares is where Prio3 decides the validity proof.
        let sum_msg = self
            .cfg
            .sum
            .verifier_shares_to_message(ctx, &(), [leader_sum, p.sum_share])
            .map_err(|_| Refusal::ProofFailed)?;
        let hist_msg = self
            .cfg
            .hist
            .verifier_shares_to_message(ctx, &(), [leader_hist, p.hist_share])
            .map_err(|_| Refusal::ProofFailed)?;
        let sum_out = match self.cfg.sum.verify_next(ctx, p.sum_state, sum_msg.clone()) {
            Ok(VerifyTransition::Finish(out)) => out,
            _ => return Err(Refusal::JointRandMismatch),
        };
        let hist_out = match self
            .cfg
            .hist
            .verify_next(ctx, p.hist_state, hist_msg.clone())
        {
            Ok(VerifyTransition::Finish(out)) => out,
            _ => return Err(Refusal::JointRandMismatch),
        };
        let tally = self.book.tally(&self.cfg, item.interval);
        tally.add(item.id, &sum_out, &hist_out)?;
        tally.seen.insert(item.id);
        let answer = (encode(&sum_msg), encode(&hist_msg));
        tally.answered.insert(item.id, answer.clone());
        Ok(answer)
    }

    /// Releases the helper's aggregate share of an interval, once, if the leader holds the
    /// same reports (count and checksum) and there are at least `min_reports` of them.
    pub fn handle_collect(
        &mut self,
        request: &CollectRequest,
    ) -> Result<AggregateShareMessage, CollectError> {
        if request.task_tag != self.cfg.task_tag() {
            return Err(CollectError::WrongTask);
        }
        let interval = request.interval;
        if self.book.closed.contains(&interval) {
            return Err(CollectError::AlreadyCollected { interval });
        }
        let Some(tally) = self.book.open.get(&interval) else {
            return Err(CollectError::UnknownInterval { interval });
        };
        if request.reports != tally.reports || request.checksum != tally.checksum {
            return Err(CollectError::ReportSetMismatch {
                leader: request.reports,
                helper: tally.reports,
            });
        }
        let min = self.cfg.params().min_reports;
        if tally.reports < u64::from(min) {
            return Err(CollectError::TooFewReports {
                reports: tally.reports,
                min,
            });
        }
        let message = AggregateShareMessage {
            task_tag: self.cfg.task_tag(),
            interval,
            reports: tally.reports,
            checksum: tally.checksum,
            sum_share: encode(&tally.sum),
            hist_share: encode(&tally.hist),
        };
        self.book.open.remove(&interval);
        self.book.closed.insert(interval);
        Ok(message)
    }

    /// Forgets every interval below `interval` and refuses later items for them.
    pub fn forget_before(&mut self, interval: u64) {
        self.book.forget_before(interval);
    }

    /// Reports refused so far, by reason.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }
}
