//! The bot's side: collect keys, route shares, collect masked values, unmask the sum.

use std::collections::{BTreeMap, HashMap};

use curve25519_dalek::scalar::Scalar;
use gridmuc_core::Watts;
use rand::CryptoRng;

use crate::crypto;
use crate::dp::DpConfig;
use crate::wire::{
    KEY_LEN, KeyAnnouncement, MaskedReading, MemberSet, Roster, SealedShare, ShareBundle,
    ShareUpload, UnmaskRequest, UnmaskResponse,
};
use crate::{MAX_COHORT, MaskError, QUANTUM, checked_cohort_size, survivor_threshold};

/// Open rounds kept at once; the oldest is dropped beyond this, bounding memory.
const MAX_OPEN_ROUNDS: usize = 64;

/// The unmasked neighbourhood sum of one round.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundSum {
    /// Round number.
    pub round: u64,
    /// Sum of the survivors' quantised readings (plus DP noise if configured).
    pub sum: Watts,
    /// Members whose readings are in the sum.
    pub survivors: u16,
    /// Cohort size, so consumers can tell how complete the sum is.
    pub enrolled: u16,
    /// Standard deviation of the DP noise in this sum, if DP is on, for honest error bars.
    pub noise_sd: Option<Watts>,
}

struct Enrolment {
    size: u16,
    threshold: u16,
    uploads: Vec<Option<Vec<SealedShare>>>,
    /// Members whose shares were routed; fixed when bundles are issued.
    active: Option<MemberSet>,
    context: [u8; 32],
}

#[derive(Default)]
struct Round {
    values: BTreeMap<u16, u64>,
    request: Option<UnmaskRequest>,
    responses: BTreeMap<u16, UnmaskResponse>,
}

/// The substation bot in masked mode: sees masked values and one unmask answer per
/// survivor per round, and learns only the sum of the survivors' readings.
pub struct MaskedAggregator {
    room: Vec<u8>,
    dp: Option<DpConfig>,
    cohort: [u8; 16],
    keys: Vec<[u8; KEY_LEN]>,
    enrolment: Option<Enrolment>,
    rounds: BTreeMap<u64, Round>,
}

impl MaskedAggregator {
    /// A new cohort for `room`; `dp` must match the meters' configuration and is used only
    /// to report the noise level.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R, room: &[u8], dp: Option<DpConfig>) -> Self {
        let mut cohort = [0u8; 16];
        rng.fill_bytes(&mut cohort);
        MaskedAggregator {
            room: room.to_vec(),
            dp,
            cohort,
            keys: Vec::new(),
            enrolment: None,
            rounds: BTreeMap::new(),
        }
    }

    /// Enrollment step 1: a meter's key; repeats are refused so one key means one member.
    pub fn handle_key(&mut self, announcement: &KeyAnnouncement) -> Result<(), MaskError> {
        if self.enrolment.is_some() {
            return Err(MaskError::WrongPhase("roster already closed"));
        }
        if self.keys.contains(&announcement.key) {
            return Err(MaskError::DuplicateKey);
        }
        if self.keys.len() >= MAX_COHORT {
            return Err(MaskError::CohortSize(self.keys.len() + 1));
        }
        self.keys.push(announcement.key);
        Ok(())
    }

    /// Enrollment step 2: freeze the cohort and return the roster to post in the room.
    pub fn close_enrollment(&mut self) -> Result<Roster, MaskError> {
        if self.enrolment.is_some() {
            return Err(MaskError::WrongPhase("roster already closed"));
        }
        let size = checked_cohort_size(self.keys.len())?;
        let roster = Roster {
            cohort: self.cohort,
            keys: self.keys.clone(),
        };
        self.enrolment = Some(Enrolment {
            size,
            threshold: survivor_threshold(size),
            uploads: vec![None; usize::from(size)],
            active: None,
            context: crypto::cohort_context(&self.room, &roster),
        });
        Ok(roster)
    }

    /// Enrollment step 3: a member's sealed shares, one to every other member.
    pub fn handle_shares(&mut self, upload: &ShareUpload) -> Result<(), MaskError> {
        let e = self.enrolment_mut()?;
        if e.active.is_some() {
            return Err(MaskError::WrongPhase("shares already routed"));
        }
        let slot = e
            .uploads
            .get_mut(usize::from(upload.from))
            .ok_or(MaskError::UnknownMember(upload.from))?;
        let mut peers: Vec<u16> = upload.shares.iter().map(|s| s.peer).collect();
        peers.sort_unstable();
        let expected = (0..e.size).filter(|&j| j != upload.from);
        if !peers.iter().copied().eq(expected) {
            return Err(MaskError::BadUpload(upload.from));
        }
        *slot = Some(upload.shares.clone());
        Ok(())
    }

    /// Enrollment step 4: fix the active members (those who uploaded) and return one bundle
    /// per active member to deliver privately. Members without an upload count as
    /// dropped in every round.
    pub fn share_bundles(&mut self) -> Result<Vec<ShareBundle>, MaskError> {
        let e = self.enrolment_mut()?;
        if e.active.is_some() {
            return Err(MaskError::WrongPhase("shares already routed"));
        }
        let mut active = MemberSet::empty(e.size);
        (0..e.size)
            .filter(|&m| e.uploads[usize::from(m)].is_some())
            .for_each(|m| active.insert(m));
        if active.count() < usize::from(e.threshold) {
            return Err(MaskError::TooFewEnrolled {
                enrolled: active.count(),
                needed: e.threshold,
            });
        }
        let bundles = active
            .iter()
            .map(|to| ShareBundle {
                to,
                shares: (0..e.size)
                    .filter_map(|from| {
                        let share = e.uploads[usize::from(from)]
                            .as_ref()?
                            .iter()
                            .find(|s| s.peer == to)?;
                        Some(SealedShare {
                            peer: from,
                            sealed: share.sealed,
                        })
                    })
                    .collect(),
            })
            .collect();
        e.uploads = Vec::new();
        e.active = Some(active);
        Ok(bundles)
    }

    /// Per round: a masked value. Late values (after the unmask request) are refused, as
    /// the survivor set of a round never changes.
    pub fn handle_masked(&mut self, reading: &MaskedReading) -> Result<(), MaskError> {
        let active = self.active()?;
        if !active.contains(reading.from) {
            return Err(MaskError::NotEnrolled(reading.from));
        }
        let round = self.rounds.entry(reading.round).or_default();
        if round.request.is_some() {
            return Err(MaskError::RoundClosed(reading.round));
        }
        if round.values.insert(reading.from, reading.value).is_some() {
            return Err(MaskError::DuplicateReading {
                round: reading.round,
                member: reading.from,
            });
        }
        while self.rounds.len() > MAX_OPEN_ROUNDS {
            self.rounds.pop_first();
        }
        Ok(())
    }

    /// Per round, when the interval's grace time is over: the survivor set to post. Asking
    /// again returns the same request; a round never gets a second survivor set.
    pub fn unmask_request(&mut self, round: u64) -> Result<UnmaskRequest, MaskError> {
        let (size, threshold) = self.enrolment().map(|e| (e.size, e.threshold))?;
        let state = self
            .rounds
            .get_mut(&round)
            .ok_or(MaskError::UnknownRound(round))?;
        if let Some(request) = &state.request {
            return Ok(request.clone());
        }
        let mut survivors = MemberSet::empty(size);
        state.values.keys().for_each(|&m| survivors.insert(m));
        if survivors.count() < usize::from(threshold) {
            return Err(MaskError::TooManyDropouts {
                round,
                survivors: survivors.count(),
                enrolled: size,
                needed: threshold,
            });
        }
        let request = UnmaskRequest { round, survivors };
        state.request = Some(request.clone());
        Ok(request)
    }

    /// Per round: a survivor's answer to the unmask request.
    pub fn handle_unmask_response(&mut self, response: &UnmaskResponse) -> Result<(), MaskError> {
        let state = self
            .rounds
            .get_mut(&response.round)
            .filter(|s| s.request.is_some())
            .ok_or(MaskError::UnknownRound(response.round))?;
        if !state.values.contains_key(&response.from) {
            return Err(MaskError::UnknownMember(response.from));
        }
        state.responses.insert(response.from, response.clone());
        Ok(())
    }

    /// Per round: the sum once enough answers are in. On error the round stays open so
    /// more answers can still complete it.
    pub fn finish(&mut self, round: u64) -> Result<RoundSum, MaskError> {
        let e = self.enrolment()?;
        let state = self
            .rounds
            .get(&round)
            .filter(|s| s.request.is_some())
            .ok_or(MaskError::UnknownRound(round))?;
        let survivors: Vec<u16> = state.values.keys().copied().collect();
        let anyone_dropped = survivors.len() < usize::from(e.size);
        if let Some(&member) = survivors
            .iter()
            .find(|m| anyone_dropped && !state.responses.contains_key(m))
        {
            return Err(MaskError::MissingResponse { round, member });
        }
        let self_masks = self_masks(e, round, &survivors, &state.responses)?;
        let masked = state
            .values
            .values()
            .fold(0u64, |acc, v| acc.wrapping_add(*v));
        let masks = state
            .responses
            .values()
            .map(|r| r.dropped_masks)
            .chain(self_masks)
            .fold(0u64, u64::wrapping_add);
        // Two's complement turns the mod-2⁶⁴ result back into the signed sum in quanta.
        let quanta = masked.wrapping_sub(masks) as i64;
        let sum = RoundSum {
            round,
            sum: Watts(quanta.saturating_mul(QUANTUM.0)),
            survivors: survivors.len() as u16,
            enrolled: e.size,
            noise_sd: self.dp.map(|dp| {
                Watts(dp.sum_variance(survivors.len(), e.threshold).sqrt().round() as i64)
            }),
        };
        self.rounds.remove(&round);
        Ok(sum)
    }

    fn enrolment(&self) -> Result<&Enrolment, MaskError> {
        self.enrolment
            .as_ref()
            .ok_or(MaskError::WrongPhase("enrollment still open"))
    }

    fn enrolment_mut(&mut self) -> Result<&mut Enrolment, MaskError> {
        self.enrolment
            .as_mut()
            .ok_or(MaskError::WrongPhase("enrollment still open"))
    }

    fn active(&self) -> Result<&MemberSet, MaskError> {
        self.enrolment()?
            .active
            .as_ref()
            .ok_or(MaskError::WrongPhase("shares not routed yet"))
    }
}

/// Reconstructs every survivor's self-mask from `threshold` evaluations of its key shares.
fn self_masks(
    e: &Enrolment,
    round: u64,
    survivors: &[u16],
    responses: &BTreeMap<u16, UnmaskResponse>,
) -> Result<Vec<u64>, MaskError> {
    // evaluations[u] = (holder, point) for every answer carrying an evaluation for u.
    let mut evaluations: Vec<Vec<(u16, [u8; 32])>> = vec![Vec::new(); usize::from(e.size)];
    for r in responses.values() {
        for &(u, point) in &r.evaluations {
            let list = evaluations.get_mut(usize::from(u));
            // One evaluation per holder: a repeated holder would break interpolation.
            if let Some(list) = list.filter(|l| l.last().is_none_or(|(h, _)| *h != r.from)) {
                list.push((r.from, point));
            }
        }
    }
    let mut coefficients: HashMap<Vec<u16>, Vec<Scalar>> = HashMap::new();
    survivors
        .iter()
        .map(|&u| {
            let list = &evaluations[usize::from(u)];
            let chosen =
                list.get(..usize::from(e.threshold))
                    .ok_or(MaskError::NotEnoughShares {
                        round,
                        member: u,
                        have: list.len(),
                        needed: e.threshold,
                    })?;
            let holders: Vec<u16> = chosen.iter().map(|(h, _)| *h).collect();
            let points: Vec<[u8; 32]> = chosen.iter().map(|(_, p)| *p).collect();
            let lambda = coefficients
                .entry(holders)
                .or_insert_with_key(|h| crypto::lagrange_at_zero(h));
            let prf =
                crypto::combine_evaluations(lambda, &points).ok_or(MaskError::BadEvaluation(u))?;
            Ok(crypto::self_mask(&e.context, &prf))
        })
        .collect()
}
