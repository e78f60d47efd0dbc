//! The meter's side: one `MaskedMeter` per room nickname (keys are as ephemeral as the nick).

use std::collections::BTreeMap;

use curve25519_dalek::ristretto::RistrettoBasepointTable;
use curve25519_dalek::scalar::Scalar;
use gridmuc_core::Watts;
use rand::CryptoRng;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::crypto::{self, Pair};
use crate::dp::{DpConfig, NoiseShare};
use crate::wire::{
    KEY_LEN, KeyAnnouncement, MaskedReading, MemberSet, Roster, SealedShare, ShareBundle,
    ShareUpload, UnmaskRequest, UnmaskResponse,
};
use crate::{MaskError, checked_cohort_size, survivor_threshold, to_quanta};

/// Rounds remembered for the one-survivor-set rule; older requests are refused outright.
const MEMO_ROUNDS: usize = 1024;

/// What this meter has done in a round, so it never helps unmask one round two ways.
#[derive(Debug)]
enum RoundMemo {
    /// Sent a masked value, no unmask request seen yet.
    Submitted,
    /// Answered an unmask request with this survivor set.
    Answered(MemberSet),
    /// Saw a request excluding this meter: it must not send (or reveal) anything more.
    Closed(MemberSet),
}

/// Cohort state, present once the roster arrived.
struct Cohort {
    context: [u8; 32],
    index: u16,
    size: u16,
    self_key: Scalar,
    /// Pairwise material, `None` at this meter's own index.
    pairs: Vec<Option<Pair>>,
    /// Shares of each member's self-mask key held by this meter (own share included).
    held: Vec<Option<Scalar>>,
    noise: Option<NoiseShare>,
    last_masked: Option<u64>,
    floor: u64,
    rounds: BTreeMap<u64, RoundMemo>,
    prepared: Option<(u64, u64)>,
}

impl Cohort {
    fn total_mask(&mut self, round: u64) -> u64 {
        let base = crypto::round_base(&self.context, round);
        let own = crypto::self_mask(&self.context, &(self.self_key * base));
        self.pairs
            .iter_mut()
            .flatten()
            .fold(own, |acc, p| acc.wrapping_add(p.mask(round)))
    }

    fn remember(&mut self, round: u64, memo: RoundMemo) {
        self.rounds.insert(round, memo);
        while self.rounds.len() > MEMO_ROUNDS {
            if let Some((old, _)) = self.rounds.pop_first() {
                self.floor = self.floor.max(old + 1);
            }
        }
    }

    fn respond(&mut self, round: u64, survivors: &MemberSet) -> UnmaskResponse {
        let dropped_masks = self
            .pairs
            .iter_mut()
            .enumerate()
            .filter(|(j, _)| !survivors.contains(*j as u16))
            .filter_map(|(_, p)| p.as_mut())
            .fold(0u64, |acc, p| acc.wrapping_add(p.mask(round)));
        let table = RistrettoBasepointTable::create(&crypto::round_base(&self.context, round));
        let evaluations = survivors
            .iter()
            .filter_map(|u| {
                let share = self.held.get(usize::from(u))?.as_ref()?;
                Some((u, (&table * share).compress().to_bytes()))
            })
            .collect();
        UnmaskResponse {
            round,
            from: self.index,
            dropped_masks,
            evaluations,
        }
    }
}

/// A meter in masked mode: enroll (key → roster → shares), then per round mask a reading
/// and answer at most one unmask request.
pub struct MaskedMeter {
    secret: StaticSecret,
    key: [u8; KEY_LEN],
    room: Vec<u8>,
    dp: Option<DpConfig>,
    cohort: Option<Cohort>,
}

impl MaskedMeter {
    /// A fresh ephemeral identity for one nickname; `room` (e.g. the room JID) binds every
    /// key to this room, `dp` turns on noise shares.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R, room: &[u8], dp: Option<DpConfig>) -> Self {
        let secret = crypto::new_secret(rng);
        let key = PublicKey::from(&secret).to_bytes();
        MaskedMeter {
            secret,
            key,
            room: room.to_vec(),
            dp,
            cohort: None,
        }
    }

    /// Step 1: the public key to post in the room.
    pub fn key_announcement(&self) -> KeyAnnouncement {
        KeyAnnouncement { key: self.key }
    }

    /// This meter's roster index, once enrolled (the XMPP layer needs it for routing).
    pub fn index(&self) -> Option<u16> {
        self.cohort.as_ref().map(|c| c.index)
    }

    /// Step 2: on the roster, derive pairwise keys and Shamir-share a fresh self-mask key;
    /// returns the upload for the bot to route.
    pub fn handle_roster<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        roster: &Roster,
    ) -> Result<ShareUpload, MaskError> {
        if self.cohort.is_some() {
            return Err(MaskError::WrongPhase("roster already received"));
        }
        let size = checked_cohort_size(roster.keys.len())?;
        if (1..roster.keys.len()).any(|i| roster.keys[..i].contains(&roster.keys[i])) {
            return Err(MaskError::DuplicateKey);
        }
        let index = roster.index_of(&self.key).ok_or(MaskError::NotInRoster)?;
        let context = crypto::cohort_context(&self.room, roster);
        let pairs = (0..size)
            .zip(&roster.keys)
            .map(|(j, key)| match j == index {
                true => Ok(None),
                false => Pair::derive(&self.secret, key, &context, index < j)
                    .map(Some)
                    .ok_or(MaskError::WeakKey(j)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let threshold = survivor_threshold(size);
        let noise = self
            .dp
            .map(|c| NoiseShare::new(&c, threshold))
            .transpose()?;
        let self_key = crypto::random_scalar(rng);
        let shares = crypto::shamir_split(self_key, threshold, size, rng);
        let upload = ShareUpload {
            from: index,
            shares: (0..size)
                .zip(&pairs)
                .filter_map(|(j, p)| {
                    let sealed = p
                        .as_ref()?
                        .seal(index, j, &shares[usize::from(j)], &context);
                    Some(SealedShare { peer: j, sealed })
                })
                .collect(),
        };
        let mut held = vec![None; usize::from(size)];
        held[usize::from(index)] = Some(shares[usize::from(index)]);
        self.cohort = Some(Cohort {
            context,
            index,
            size,
            self_key,
            pairs,
            held,
            noise,
            last_masked: None,
            floor: 0,
            rounds: BTreeMap::new(),
            prepared: None,
        });
        Ok(upload)
    }

    /// Step 3: store the shares other members sealed to this meter. Valid shares are kept
    /// even if another one in the bundle is forged; the first bad sender is reported.
    pub fn handle_bundle(&mut self, bundle: &ShareBundle) -> Result<(), MaskError> {
        let c = self.cohort_mut()?;
        if bundle.to != c.index {
            return Err(MaskError::UnknownMember(bundle.to));
        }
        let mut first_bad = None;
        for s in &bundle.shares {
            let opened = c
                .pairs
                .get(usize::from(s.peer))
                .and_then(Option::as_ref)
                .and_then(|p| p.open(s.peer, c.index, &s.sealed, &c.context));
            match opened {
                Some(share) => c.held[usize::from(s.peer)] = Some(share),
                None => first_bad = first_bad.or(Some(s.peer)),
            }
        }
        first_bad.map_or(Ok(()), |peer| Err(MaskError::BadShare(peer)))
    }

    /// Optional: compute the reading-independent masks for `round` ahead of time (idle
    /// time between intervals), so [`Self::mask`] is a few additions.
    pub fn prepare_round(&mut self, round: u64) -> Result<(), MaskError> {
        let c = self.cohort_mut()?;
        let mask = c.total_mask(round);
        c.prepared = Some((round, mask));
        Ok(())
    }

    /// Per round: quantise, add the noise share (if DP is on) and all masks. Rounds must
    /// strictly increase so no round's masks ever hide two different values.
    pub fn mask<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        round: u64,
        reading: Watts,
    ) -> Result<MaskedReading, MaskError> {
        let c = self.cohort_mut()?;
        if let Some(last) = c.last_masked.filter(|&last| round <= last) {
            return Err(MaskError::RoundReused { round, last });
        }
        if round < c.floor {
            return Err(MaskError::RoundTooOld(round));
        }
        if c.rounds.contains_key(&round) {
            return Err(MaskError::RoundClosed(round));
        }
        let noise = c.noise.as_ref().map_or(0, |n| n.sample(rng));
        let quanta = to_quanta(reading)
            .and_then(|q| q.checked_add(noise))
            .filter(|q| q.unsigned_abs() <= crate::MAX_READING_QUANTA)
            .ok_or(MaskError::ReadingOutOfRange(reading))?;
        let mask = match c.prepared.take() {
            Some((r, m)) if r == round => m,
            _ => c.total_mask(round),
        };
        c.last_masked = Some(round);
        c.remember(round, RoundMemo::Submitted);
        Ok(MaskedReading {
            round,
            from: c.index,
            value: (quanta as u64).wrapping_add(mask),
        })
    }

    /// Per round, the one extra exchange. Answers only if this meter sent a masked value for
    /// the round and is listed as a survivor, and only for the first survivor set it sees
    /// for that round (repeats of the same set get the same answer). `Ok(None)`: not a
    /// survivor, nothing to send, and the round is closed for this meter.
    pub fn answer_unmask(
        &mut self,
        request: &UnmaskRequest,
    ) -> Result<Option<UnmaskResponse>, MaskError> {
        let c = self.cohort_mut()?;
        let (round, survivors) = (request.round, &request.survivors);
        if survivors.universe() != c.size {
            return Err(MaskError::SurvivorSetSize {
                expected: c.size,
                got: survivors.universe(),
            });
        }
        if round < c.floor {
            return Err(MaskError::RoundTooOld(round));
        }
        let listed = survivors.contains(c.index);
        match c.rounds.get(&round) {
            Some(RoundMemo::Answered(seen) | RoundMemo::Closed(seen)) if seen != survivors => {
                Err(MaskError::ConflictingSurvivorSet(round))
            }
            Some(RoundMemo::Closed(_)) => Ok(None),
            Some(RoundMemo::Submitted | RoundMemo::Answered(_)) if listed => {
                let response = c.respond(round, survivors);
                c.remember(round, RoundMemo::Answered(survivors.clone()));
                Ok(Some(response))
            }
            submitted => {
                let sent = submitted.is_some();
                c.remember(round, RoundMemo::Closed(survivors.clone()));
                match listed && !sent {
                    true => Err(MaskError::NotSubmitted(round)),
                    false => Ok(None),
                }
            }
        }
    }

    /// The self-mask this meter adds in `round`, for tests that play a cheating bot.
    #[cfg(test)]
    pub(crate) fn self_mask_for_test(&self, round: u64) -> Option<u64> {
        let c = self.cohort.as_ref()?;
        let base = crypto::round_base(&c.context, round);
        Some(crypto::self_mask(&c.context, &(c.self_key * base)))
    }

    fn cohort_mut(&mut self) -> Result<&mut Cohort, MaskError> {
        self.cohort
            .as_mut()
            .ok_or(MaskError::WrongPhase("no roster yet"))
    }
}
