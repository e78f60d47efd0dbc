//! Delivery without loss: the meter keeps each reading until the bot acknowledges it, and the
//! bot counts a reading once however often (and under however many nicknames) it arrives.
//!
//! A reading travels as a message whose `id` is a random [`ReadingId`]. In direct mode the bot
//! answers with an XEP-0184 receipt carrying that id; in broadcast mode the room's reflection
//! of the message is the acknowledgement. Until then the reading stays in the meter's
//! [`Outbox`] and is sent again — after a reconnect under a fresh nickname, with its original
//! timestamp. The bot's [`SeenIds`] drops the copies that do arrive twice.

use crate::reading::Reading;
use crate::time::{Millis, Timestamp};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::{HashSet, VecDeque};
use std::fmt;

/// A reading's random 128-bit identity, so a resend can be recognised without naming the house.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadingId(pub u128);

impl ReadingId {
    /// A fresh id from the caller's CSPRNG.
    pub fn random(rng: &mut impl Rng) -> ReadingId {
        ReadingId(rng.random())
    }

    /// Reads an id written by [`ReadingId`]'s `Display` (32 lowercase hex digits); `None` for
    /// any other message id, which ordinary chat clients choose freely.
    pub fn parse(s: &str) -> Option<ReadingId> {
        let ok = s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| u128::from_str_radix(s, 16).ok().map(ReadingId))
            .flatten()
    }
}

impl fmt::Display for ReadingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

/// How much a meter keeps and how patiently it resends.
///
/// Every field has a default, so a TOML file written before a field existed keeps working.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Readings kept unacknowledged at most; the oldest is dropped (and counted) beyond this.
    pub capacity: usize,
    /// The wait before a reading's first resend on the same session; each further resend of
    /// that reading waits twice as long as the one before, up to `max_backoff`.
    pub resend_after: Millis,
    /// The longest wait between two resends of one reading (never below `resend_after`),
    /// before the per-reading jitter of ±25 %.
    pub max_backoff: Millis,
    /// Readings sent and awaiting an answer at most; more due readings wait for a free slot,
    /// so a congested room sees a trickle rather than a meter's whole backlog at once. The
    /// newest reading's first send never waits for a slot (see [`Outbox::due`]).
    pub max_in_flight: usize,
    /// Readings older than this are given up (and counted): the bot would refuse them as late.
    pub max_age: Millis,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            // A day of one-minute readings.
            capacity: 1_440,
            resend_after: 30_000,
            // 30 s, 1, 2, 4 min, then every 5 min: a few tries inside `max_age`.
            max_backoff: 300_000,
            max_in_flight: 16,
            // The bot's default backfill window (10 min) after the interval's end and grace.
            max_age: 600_000,
        }
    }
}

impl OutboxConfig {
    /// How long after the `n`-th send of reading `id` (n ≥ 1) its next resend is due:
    /// `resend_after · 2^(n-1)`, capped at `max_backoff`, times a factor in [0.75, 1.25).
    ///
    /// The factor comes from the id's bits and `n` rather than from an rng, so the outbox
    /// stays deterministic while a fleet that lost the same minute does not resend in step.
    /// Ids are random, so the factors of different meters are as good as independent.
    pub fn resend_wait(&self, id: ReadingId, n: u32) -> Millis {
        let first = i128::from(self.resend_after.max(0));
        let cap = i128::from(self.max_backoff).max(first);
        let doubled = first << n.saturating_sub(1).min(62);
        let base = doubled.min(cap);
        // 768..1280 over 1024: [0.75, 1.25).
        let factor = 768 + i128::from(jitter_bits(id, n) >> 55);
        Millis::try_from(base * factor / 1024).unwrap_or(Millis::MAX)
    }
}

/// 64 well-mixed bits from a reading id and an attempt number: the id's halves are mixed
/// into one word, then each attempt steps it by the golden ratio and mixes again
/// (splitmix64's finaliser both times).
fn jitter_bits(id: ReadingId, n: u32) -> u64 {
    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let word = mix(id.0 as u64 ^ ((id.0 >> 64) as u64).rotate_left(32));
    mix(word.wrapping_add(u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

#[derive(Clone, Debug)]
struct Pending {
    id: ReadingId,
    reading: Reading,
    /// When it is due again; `None` when due now (never sent, bounced, or a fresh session).
    next_at: Option<Timestamp>,
    /// Times it was handed out to send; drives the backoff and is never reset.
    sends: u32,
    /// The seqnr it went out under on the current nickname, if it did.
    seqnr: Option<u64>,
}

impl Pending {
    fn is_due(&self, now: Timestamp) -> bool {
        self.next_at.is_none_or(|t| now >= t)
    }
}

/// A reading to put on the wire now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The message id the acknowledgement will name.
    pub id: ReadingId,
    /// The reading with its original timestamp; the caller sets the seqnr (see `seqnr`).
    pub reading: Reading,
    /// True if it was sent before: counted as a resend, not a new reading.
    pub resend: bool,
    /// The XEP-0323 seqnr this reading was last sent under on the current nickname, or `None`
    /// if it was not sent under this nickname yet. The caller reuses it, so a third party
    /// deduplicating by (nickname, seqnr) counts a resend once; otherwise it takes the
    /// nickname's next seqnr and records it with [`Outbox::assign_seqnr`].
    pub seqnr: Option<u64>,
}

/// Unacknowledged readings of one meter, oldest first; sans-IO, the caller sends what
/// [`Outbox::due`] returns and passes every `now` in.
///
/// Resends back off per reading (see [`OutboxConfig::resend_wait`]) and at most
/// `max_in_flight` readings (and the newest) await an answer at once, so a congested room is
/// not fed a resend storm: the room's slowness would otherwise turn into more traffic for it.
///
/// A reading is *in flight* from the moment [`Outbox::due`] hands it out until it falls due
/// again (its wait ran out, [`Outbox::retry`], or [`Outbox::resend_all`]) or is acknowledged.
#[derive(Clone, Debug)]
pub struct Outbox {
    config: OutboxConfig,
    pending: VecDeque<Pending>,
    dropped: u64,
    expired: u64,
    resends: u64,
    /// Bumped whenever the set of unacknowledged readings changes (see [`Outbox::generation`]).
    generation: u64,
}

impl Outbox {
    /// An empty outbox; a `capacity` or `max_in_flight` of 0 is taken as 1.
    pub fn new(config: OutboxConfig) -> Outbox {
        Outbox {
            config: OutboxConfig {
                capacity: config.capacity.max(1),
                max_in_flight: config.max_in_flight.max(1),
                ..config
            },
            pending: VecDeque::new(),
            dropped: 0,
            expired: 0,
            resends: 0,
            generation: 0,
        }
    }

    /// Keeps a new reading until acknowledged; over capacity the oldest one is dropped and counted.
    pub fn push(&mut self, id: ReadingId, reading: Reading) {
        if self.pending.len() == self.config.capacity {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(Pending {
            id,
            reading,
            next_at: None,
            sends: 0,
            seqnr: None,
        });
        self.generation += 1;
    }

    /// Takes back a reading an earlier run of this meter saved unacknowledged (see
    /// [`Outbox::unacknowledged`]): due at once and sent as a resend, since that run may have
    /// delivered it (the bot counts it once by its id). An id already held is ignored.
    pub fn restore(&mut self, id: ReadingId, reading: Reading) {
        if self.pending.iter().any(|p| p.id == id) {
            return;
        }
        self.push(id, reading);
        if let Some(p) = self.pending.back_mut() {
            p.sends = 1;
        }
    }

    /// Every unacknowledged reading, oldest first: what a meter saves so that a crash or a
    /// power cut loses none of them.
    pub fn unacknowledged(&self) -> impl Iterator<Item = (ReadingId, Reading)> + '_ {
        self.pending.iter().map(|p| (p.id, p.reading))
    }

    /// A number that changes whenever [`Outbox::unacknowledged`] does (a reading kept,
    /// acknowledged, dropped or given up), so the caller saves them only then.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Forgets a reading the bot (or the room) confirmed; false for an unknown or repeated id.
    ///
    /// An acknowledgement may free a slot of the in-flight window: if [`Outbox::has_waiting`]
    /// then says so, call [`Outbox::due`] again.
    pub fn acknowledge(&mut self, id: ReadingId) -> bool {
        match self.pending.iter().position(|p| p.id == id) {
            Some(i) => {
                self.pending.remove(i);
                self.generation += 1;
                true
            }
            None => false,
        }
    }

    /// Readings to send now, oldest first, marked as sent at `now`: those never sent, and
    /// those whose wait (see [`OutboxConfig::resend_wait`]) ran out or that were made due by
    /// [`Outbox::retry`] or [`Outbox::resend_all`].
    ///
    /// At most `limit` (a paced sender passes its free window) and at most the free slots of
    /// `max_in_flight`; what is held back stays due, see [`Outbox::has_waiting`]. Readings
    /// past `max_age` are given up first and counted in [`Outbox::expired`].
    ///
    /// The newest reading, if it was never sent, goes even when the window is full (still
    /// within `limit`): the window holds back resends and a backlog, the load a slow room
    /// must not be fed, while one live reading per interval is the load it was built for.
    /// Without that, a meter whose answers come late sends nothing fresh for as long as its
    /// window of stale readings waits out their backoff (minutes, and past the bot's
    /// backfill window: lost).
    pub fn due(&mut self, now: Timestamp, limit: usize) -> Vec<Outgoing> {
        let before = self.pending.len();
        let max_age = self.config.max_age;
        self.pending.retain(|p| now.since(p.reading.at) <= max_age);
        let expired = (before - self.pending.len()) as u64;
        self.expired += expired;
        self.generation += expired;
        let free = self
            .config
            .max_in_flight
            .saturating_sub(self.in_flight(now));
        let budget = limit.min(free);
        let live = self
            .pending
            .back()
            .filter(|p| p.sends == 0 && budget < limit)
            .map(|p| p.id);
        let config = &self.config;
        let out: Vec<Outgoing> = self
            .pending
            .iter_mut()
            .filter(|p| p.is_due(now))
            .enumerate()
            .filter(|(n, p)| *n < budget || Some(p.id) == live)
            .map(|(_, p)| {
                let resend = p.sends > 0;
                p.sends = p.sends.saturating_add(1);
                p.next_at = Some(now.plus(config.resend_wait(p.id, p.sends)));
                Outgoing {
                    id: p.id,
                    reading: p.reading,
                    resend,
                    seqnr: p.seqnr,
                }
            })
            .collect();
        self.resends += out.iter().filter(|g| g.resend).count() as u64;
        out
    }

    /// True if readings are due at `now` but were not handed out — held back by the in-flight
    /// cap or by the caller's `limit` — so the caller should call [`Outbox::due`] again once
    /// an acknowledgement frees a slot (readings past `max_age` do not count).
    pub fn has_waiting(&self, now: Timestamp) -> bool {
        self.live(now).any(|p| p.is_due(now))
    }

    /// Readings sent and awaiting an answer at `now`: handed out by [`Outbox::due`] and not
    /// yet due again (readings past `max_age` do not count).
    pub fn in_flight(&self, now: Timestamp) -> usize {
        self.live(now).filter(|p| !p.is_due(now)).count()
    }

    /// The earliest instant after `now` at which a reading in flight falls due again (which
    /// also frees its slot), for the caller's timer; `None` when nothing is in flight.
    /// Readings due already are told by [`Outbox::has_waiting`].
    pub fn next_resend_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.live(now)
            .filter_map(|p| p.next_at.filter(|&t| t > now))
            .min()
    }

    /// Records that reading `id` went out under `seqnr` on the current nickname, so a resend
    /// under the same nickname reuses it (see [`Outgoing::seqnr`]); false if unknown.
    pub fn assign_seqnr(&mut self, id: ReadingId, seqnr: u64) -> bool {
        let found = self.pending.iter_mut().find(|p| p.id == id);
        found.map(|p| p.seqnr = Some(seqnr)).is_some()
    }

    /// Makes one reading due at once, e.g. when the room bounced it; false if unknown.
    ///
    /// Its backoff continues where it was, and it keeps its seqnr (the nickname is the same).
    pub fn retry(&mut self, id: ReadingId) -> bool {
        let found = self.pending.iter_mut().find(|p| p.id == id);
        found.map(|p| p.next_at = None).is_some()
    }

    /// Makes everything pending due at once: a fresh session cannot have delivered what the
    /// old one lost. Still at most `max_in_flight` go out together, and the backoff counters
    /// are kept, so a flapping connection does not restart every reading at the short wait.
    ///
    /// Call it for a new nickname too: a new nickname starts a new seqnr space, so every
    /// assigned seqnr is forgotten and the next send of each reading takes a fresh one.
    pub fn resend_all(&mut self) {
        for p in &mut self.pending {
            p.next_at = None;
            p.seqnr = None;
        }
    }

    /// Readings waiting for an acknowledgement.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// True when every reading has been acknowledged.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Readings dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Readings given up because they grew older than `max_age`.
    pub fn expired(&self) -> u64 {
        self.expired
    }

    /// Resends handed out by [`Outbox::due`] so far (each [`Outgoing`] with `resend` set).
    pub fn resends(&self) -> u64 {
        self.resends
    }

    /// The readings [`Outbox::due`] would not give up as too old at `now`.
    fn live(&self, now: Timestamp) -> impl Iterator<Item = &Pending> {
        let max_age = self.config.max_age;
        self.pending
            .iter()
            .filter(move |p| now.since(p.reading.at) <= max_age)
    }
}

/// Ids the bot has counted recently, so a resent reading is counted once.
///
/// Bounded twice: ids are forgotten `horizon` after they were seen, and beyond `capacity`
/// the oldest go first, so a flood of fresh ids cannot grow memory without limit.
#[derive(Clone, Debug)]
pub struct SeenIds {
    horizon: Millis,
    capacity: usize,
    order: VecDeque<(Timestamp, ReadingId)>,
    set: HashSet<ReadingId>,
}

impl SeenIds {
    /// Remembers ids for `horizon` and at most `capacity` of them.
    pub fn new(horizon: Millis, capacity: usize) -> SeenIds {
        SeenIds {
            horizon,
            capacity: capacity.max(1),
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// True if `id` was recorded and not yet forgotten at `now`.
    pub fn contains(&mut self, id: ReadingId, now: Timestamp) -> bool {
        self.expire(now);
        self.set.contains(&id)
    }

    /// Records `id` as counted at `now`.
    pub fn insert(&mut self, id: ReadingId, now: Timestamp) {
        self.expire(now);
        if !self.set.insert(id) {
            return;
        }
        if self.order.len() == self.capacity
            && let Some((_, old)) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        self.order.push_back((now, id));
    }

    fn expire(&mut self, now: Timestamp) {
        while let Some(&(t, id)) = self.order.front() {
            if now.since(t) <= self.horizon {
                break;
            }
            self.order.pop_front();
            self.set.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::Quality;
    use crate::units::Watts;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn reading(at: i64, w: i64) -> Reading {
        Reading {
            power: Watts(w),
            at: Timestamp(at),
            seqnr: 0,
            quality: Quality::AUTOMATIC_READOUT,
        }
    }

    #[test]
    fn restored_readings_go_out_first_as_resends_and_every_change_is_seen() {
        let mut outbox = Outbox::new(OutboxConfig::default());
        let g0 = outbox.generation();
        outbox.restore(ReadingId(1), reading(0, 100));
        outbox.restore(ReadingId(1), reading(0, 100));
        outbox.push(ReadingId(2), reading(60_000, 200));
        assert_eq!(outbox.len(), 2);
        assert_eq!(
            outbox
                .unacknowledged()
                .map(|(id, _)| id)
                .collect::<Vec<_>>(),
            [ReadingId(1), ReadingId(2)]
        );
        let g1 = outbox.generation();
        assert_ne!(g1, g0);
        let out = outbox.due(Timestamp(61_000), usize::MAX);
        assert_eq!(
            out.iter().map(|o| (o.id, o.resend)).collect::<Vec<_>>(),
            [(ReadingId(1), true), (ReadingId(2), false)]
        );
        // Sending changes nothing that must be kept; an ack, an unknown id, an expiry do or don't.
        assert_eq!(outbox.generation(), g1);
        assert!(!outbox.acknowledge(ReadingId(9)));
        assert_eq!(outbox.generation(), g1);
        assert!(outbox.acknowledge(ReadingId(2)));
        let g2 = outbox.generation();
        assert_ne!(g2, g1);
        outbox.due(Timestamp(10 * 60_000 + 1), usize::MAX);
        assert_eq!((outbox.len(), outbox.expired()), (0, 1));
        assert_ne!(outbox.generation(), g2);
    }

    #[test]
    fn ids_round_trip_and_foreign_ids_are_ignored() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let id = ReadingId::random(&mut rng);
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(ReadingId::parse(&text), Some(id));
        assert_eq!(ReadingId(0x1f).to_string(), format!("{:032x}", 0x1f));
        for foreign in [
            "",
            "abc",
            "purple3f2a",
            &text.to_uppercase(),
            &format!("{text}0"),
        ] {
            assert_eq!(ReadingId::parse(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn unacknowledged_readings_come_back_until_acknowledged() {
        let mut o = Outbox::new(OutboxConfig {
            resend_after: 1_000,
            ..OutboxConfig::default()
        });
        o.push(ReadingId(1), reading(0, 100));
        o.push(ReadingId(2), reading(1_000, 200));
        let first = o.due(Timestamp(1_000), usize::MAX);
        let ids: Vec<u128> = first.iter().map(|g| g.id.0).collect();
        assert_eq!(ids, vec![1, 2]);
        assert!(first.iter().all(|g| !g.resend));
        // Just sent: nothing due until resend_after has passed.
        assert!(o.due(Timestamp(1_500), usize::MAX).is_empty());
        // A bounce makes one reading due at once.
        assert!(o.retry(ReadingId(1)));
        assert!(!o.retry(ReadingId(9)));
        assert_eq!(o.due(Timestamp(1_600), usize::MAX).len(), 1);
        assert!(o.acknowledge(ReadingId(1)));
        assert!(!o.acknowledge(ReadingId(1)));
        let again = o.due(Timestamp(2_000), usize::MAX);
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].id, again[0].reading.power),
            (ReadingId(2), Watts(200))
        );
        assert!(again[0].resend);
        // A fresh session resends at once, with the original timestamp.
        o.resend_all();
        let fresh = o.due(Timestamp(2_100), 1);
        assert_eq!(fresh[0].reading.at, Timestamp(1_000));
        assert!(o.acknowledge(ReadingId(2)));
        assert!(o.is_empty());
        assert_eq!((o.dropped(), o.expired()), (0, 0));
    }

    #[test]
    fn full_outbox_drops_the_oldest_and_old_readings_expire_counted() {
        let mut o = Outbox::new(OutboxConfig {
            capacity: 3,
            resend_after: 1_000,
            max_age: 10_000,
            ..OutboxConfig::default()
        });
        for i in 0..5 {
            o.push(ReadingId(i), reading(i as i64 * 1_000, 100));
        }
        assert_eq!((o.len(), o.dropped()), (3, 2));
        // At t = 13 s the reading of t = 2 s is 11 s old: given up; 3 s and 4 s remain.
        let due: Vec<u128> = o
            .due(Timestamp(13_000), usize::MAX)
            .iter()
            .map(|g| g.id.0)
            .collect();
        assert_eq!(due, vec![3, 4]);
        assert_eq!(o.expired(), 1);
    }

    #[test]
    fn seen_ids_forget_after_the_horizon_and_beyond_capacity() {
        let mut s = SeenIds::new(10_000, 2);
        s.insert(ReadingId(1), Timestamp(0));
        assert!(s.contains(ReadingId(1), Timestamp(10_000)));
        assert!(!s.contains(ReadingId(1), Timestamp(10_001)));
        s.insert(ReadingId(2), Timestamp(20_000));
        s.insert(ReadingId(3), Timestamp(20_000));
        s.insert(ReadingId(4), Timestamp(20_000));
        assert!(!s.contains(ReadingId(2), Timestamp(20_000)));
        assert!(s.contains(ReadingId(3), Timestamp(20_000)));
        assert!(s.contains(ReadingId(4), Timestamp(20_000)));
    }

    fn config(resend_after: Millis, max_backoff: Millis, max_in_flight: usize) -> OutboxConfig {
        OutboxConfig {
            resend_after,
            max_backoff,
            max_in_flight,
            max_age: 1_000_000_000,
            ..OutboxConfig::default()
        }
    }

    /// The wait without its jitter is `base`: the jittered one lies in [0.75, 1.25) of it
    /// (one millisecond of rounding allowed below).
    fn within_jitter(wait: Millis, base: Millis) -> bool {
        4 * wait >= 3 * base - 4 && (4 * wait < 5 * base || base == 0)
    }

    #[test]
    fn backoff_doubles_per_resend_and_stops_at_the_cap() {
        let c = config(1_000, 8_000, 16);
        let id = ReadingId(0x5eed_0000_0000_0000_0000_0000_0000_0001);
        let bases = [1_000, 2_000, 4_000, 8_000, 8_000, 8_000, 8_000];
        for (n, base) in (1..).zip(bases) {
            let wait = c.resend_wait(id, n);
            assert!(within_jitter(wait, base), "resend {n}: {wait} vs {base}");
        }
        // Far beyond any shift width: still the cap, no overflow.
        assert!(within_jitter(c.resend_wait(id, u32::MAX), 8_000));
        // A cap below resend_after never shortens the first wait.
        let short_cap = config(10_000, 1_000, 16);
        assert!(within_jitter(short_cap.resend_wait(id, 1), 10_000));
        assert!(within_jitter(short_cap.resend_wait(id, 5), 10_000));
        // The defaults: 30 s, 1, 2, 4 min, then 5 min.
        let d = OutboxConfig::default();
        for (n, base) in (1..).zip([30_000, 60_000, 120_000, 240_000, 300_000, 300_000]) {
            assert!(
                within_jitter(d.resend_wait(id, n), base),
                "default resend {n}"
            );
        }
    }

    #[test]
    fn the_outbox_resends_on_the_backoff_schedule() {
        let c = config(1_000, 8_000, 16);
        let mut o = Outbox::new(c.clone());
        let id = ReadingId(77);
        o.push(id, reading(0, 100));
        let mut now = Timestamp(0);
        let mut sent_at = Vec::new();
        // Step through time in 1 ms; a reading comes back exactly when its wait runs out.
        while sent_at.len() < 7 {
            let out = o.due(now, usize::MAX);
            if let [g] = out.as_slice() {
                assert_eq!((g.id, g.resend), (id, !sent_at.is_empty()));
                sent_at.push(now);
            } else {
                assert!(out.is_empty());
            }
            now = now.plus(1);
        }
        let gaps: Vec<Millis> = sent_at.windows(2).map(|w| w[1].since(w[0])).collect();
        let expected: Vec<Millis> = (1..=6).map(|n| c.resend_wait(id, n)).collect();
        assert_eq!(gaps, expected);
        assert_eq!(o.resends(), 6);
    }

    #[test]
    fn jitter_stays_within_bounds_and_differs_between_ids() {
        let c = config(1_000, 300_000, 16);
        let waits: Vec<Millis> = (0..1_000u128)
            .map(|i| c.resend_wait(ReadingId(i.wrapping_mul(0x0123_4567_89ab_cdef)), 1))
            .collect();
        assert!(waits.iter().all(|&w| (750..1_250).contains(&w)));
        let distinct: HashSet<Millis> = waits.iter().copied().collect();
        // 512 possible factors: a thousand ids spread over most of them.
        assert!(distinct.len() > 300, "{} distinct waits", distinct.len());
        assert!(waits.iter().any(|&w| w < 800) && waits.iter().any(|&w| w >= 1_200));
        // The same id draws a new factor per attempt, and the same one again for the same attempt.
        let id = ReadingId(42);
        let factors: HashSet<Millis> = (1..=8)
            .map(|n| c.resend_wait(id, n) * 1_024 / c.resend_wait(id, 1).max(1))
            .collect();
        assert!(factors.len() > 1);
        assert_eq!(c.resend_wait(id, 3), c.resend_wait(id, 3));
        // `unacknowledged_readings_come_back_until_acknowledged` resends ReadingId(2) after
        // exactly resend_after: its first factor (0.877) is below 1.
        assert_eq!(c.resend_wait(ReadingId(2), 1), 876);
        // Consecutive ids (a counter, not random) do not share a factor either.
        assert_ne!(
            c.resend_wait(ReadingId(1), 1),
            c.resend_wait(ReadingId(2), 1)
        );
    }

    #[test]
    fn the_in_flight_cap_holds_back_and_an_acknowledgement_frees_a_slot() {
        let mut o = Outbox::new(config(1_000, 8_000, 2));
        for i in 0..6 {
            o.push(ReadingId(i), reading(0, 100));
        }
        let t = Timestamp(0);
        let ids = |out: Vec<Outgoing>| out.iter().map(|g| g.id.0).collect::<Vec<_>>();
        // The window takes the oldest two; the newest, never sent, passes it.
        assert_eq!(ids(o.due(t, usize::MAX)), vec![0, 1, 5]);
        assert_eq!(o.in_flight(t), 3);
        assert!(o.has_waiting(t));
        assert!(o.due(t, usize::MAX).is_empty());
        // The newest holds a slot while in flight, like any other.
        assert!(o.acknowledge(ReadingId(0)));
        assert!(o.due(t, usize::MAX).is_empty());
        // Answered, it frees its slot for the oldest waiting, and leaves its pass to the
        // newest reading never sent.
        assert!(o.acknowledge(ReadingId(5)));
        assert_eq!(ids(o.due(t, usize::MAX)), vec![2, 4]);
        // The caller's limit binds (a paced broadcast's window).
        assert!(o.acknowledge(ReadingId(1)));
        assert!(o.acknowledge(ReadingId(2)));
        assert_eq!(ids(o.due(t, 0)), Vec::<u128>::new());
        assert!(o.has_waiting(t));
        assert_eq!(ids(o.due(t, 1)), vec![3]);
        assert_eq!((o.in_flight(t), o.has_waiting(t)), (2, false));
        // A reading whose wait ran out is due again and out of flight, so it frees its own
        // slot; oldest first, and resends never pass the window.
        let wait = |i| o.config.resend_wait(ReadingId(i), 1);
        let last = t.plus(wait(3).max(wait(4)));
        assert_eq!((o.in_flight(last), o.next_resend_at(last)), (0, None));
        let out = o.due(last, 1);
        assert_eq!(ids(out.clone()), vec![3]);
        assert!(out.iter().all(|g| g.resend));
        assert_eq!(o.resends(), 1);
        assert!(o.has_waiting(last));
    }

    #[test]
    fn resend_all_and_retry_make_readings_due_without_resetting_the_backoff() {
        let c = config(1_000, 60_000, 16);
        let mut o = Outbox::new(c.clone());
        let id = ReadingId(9);
        o.push(id, reading(0, 100));
        let mut now = Timestamp(0);
        // Three sends on schedule.
        for n in 1..=3 {
            assert_eq!(o.due(now, usize::MAX).len(), 1);
            now = now.plus(c.resend_wait(id, n));
        }
        // A fresh session: due at once, and the next wait is the fourth, not the first.
        o.resend_all();
        assert!(o.has_waiting(now));
        assert_eq!(o.in_flight(now), 0);
        assert_eq!(o.due(now, usize::MAX).len(), 1);
        assert_eq!(o.next_resend_at(now), Some(now.plus(c.resend_wait(id, 4))));
        // A bounce: due at once too, and the wait after it is the fifth.
        assert!(o.retry(id));
        assert_eq!(o.due(now, usize::MAX).len(), 1);
        assert_eq!(o.next_resend_at(now), Some(now.plus(c.resend_wait(id, 5))));
        assert_eq!(o.resends(), 4);
    }

    #[test]
    fn a_resend_keeps_its_seqnr_under_one_nickname_and_a_new_nickname_forgets_it() {
        let c = config(1_000, 8_000, 16);
        let mut o = Outbox::new(c.clone());
        o.push(ReadingId(1), reading(0, 100));
        o.push(ReadingId(2), reading(0, 200));
        let first = o.due(Timestamp(0), usize::MAX);
        assert!(first.iter().all(|g| g.seqnr.is_none()));
        assert!(o.assign_seqnr(ReadingId(1), 500));
        assert!(o.assign_seqnr(ReadingId(2), 501));
        assert!(!o.assign_seqnr(ReadingId(3), 502));
        // Resent on the same nickname (timer and bounce alike): the same seqnr.
        let later = Timestamp(10_000);
        let again = o.due(later, usize::MAX);
        let seqnrs: Vec<_> = again.iter().map(|g| (g.id.0, g.resend, g.seqnr)).collect();
        assert_eq!(seqnrs, vec![(1, true, Some(500)), (2, true, Some(501))]);
        assert!(o.retry(ReadingId(2)));
        assert_eq!(o.due(later, usize::MAX)[0].seqnr, Some(501));
        // A new nickname: a new seqnr space, nothing kept.
        o.resend_all();
        let fresh = o.due(later, usize::MAX);
        assert_eq!(fresh.len(), 2);
        assert!(fresh.iter().all(|g| g.resend && g.seqnr.is_none()));
        assert!(o.assign_seqnr(ReadingId(1), 7));
        assert!(o.acknowledge(ReadingId(2)));
        assert_eq!(o.due(Timestamp(100_000), usize::MAX)[0].seqnr, Some(7));
    }

    #[test]
    fn expired_readings_leave_the_window_and_are_counted() {
        let mut o = Outbox::new(OutboxConfig {
            capacity: 3,
            resend_after: 60_000,
            max_in_flight: 1,
            max_age: 10_000,
            ..OutboxConfig::default()
        });
        o.push(ReadingId(1), reading(0, 100));
        let sent = Timestamp(5_000);
        assert_eq!(o.due(sent, usize::MAX).len(), 1);
        o.push(ReadingId(2), reading(5_000, 100));
        o.push(ReadingId(3), reading(5_000, 100));
        // The window is full; the newest passes it, the one before waits.
        assert_eq!(o.due(sent, usize::MAX)[0].id, ReadingId(3));
        assert!(o.acknowledge(ReadingId(3)));
        assert_eq!((o.in_flight(sent), o.has_waiting(sent)), (1, true));
        // Reading 1 is still awaiting an answer (its wait is at least 45 s) but too old at
        // 10.001 s: it no longer holds the window, and is given up and counted.
        let t = Timestamp(10_001);
        assert_eq!(o.in_flight(t), 0);
        let out = o.due(t, usize::MAX);
        assert_eq!(out.iter().map(|g| g.id.0).collect::<Vec<_>>(), vec![2]);
        assert_eq!((o.expired(), o.len(), o.dropped()), (1, 1, 0));
        // Capacity still drops the oldest, in flight or not.
        for i in 3..6 {
            o.push(ReadingId(i), reading(10_001, 100));
        }
        assert_eq!((o.len(), o.dropped()), (3, 1));
        assert!(!o.acknowledge(ReadingId(2)));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push,
        Due(usize),
        Ack(usize),
        Retry(usize),
        ResendAll,
        Wait(Millis),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => Just(Op::Push),
            3 => prop_oneof![0usize..6, Just(usize::MAX)].prop_map(Op::Due),
            2 => (0usize..40).prop_map(Op::Ack),
            1 => (0usize..40).prop_map(Op::Retry),
            1 => Just(Op::ResendAll),
            2 => (0 as Millis..20_000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        #[test]
        fn jitter_is_bounded_for_any_id_and_attempt(
            id in any::<u128>(),
            n in 1u32..80,
            resend_after in 0 as Millis..10_000_000,
            max_backoff in 0 as Millis..100_000_000,
        ) {
            let c = OutboxConfig { resend_after, max_backoff, ..OutboxConfig::default() };
            let cap = max_backoff.max(resend_after);
            let base = i128::from(resend_after) << (n - 1).min(62);
            let base = Millis::try_from(base.min(i128::from(cap))).unwrap();
            let wait = c.resend_wait(ReadingId(id), n);
            prop_assert!(within_jitter(wait, base), "{wait} vs {base}");
        }

        #[test]
        fn only_live_readings_pass_a_full_window_and_nothing_vanishes(
            max_in_flight in 1usize..6,
            capacity in 1usize..30,
            ops in proptest::collection::vec(op(), 0..200),
        ) {
            let mut o = Outbox::new(OutboxConfig {
                capacity,
                resend_after: 1_000,
                max_backoff: 16_000,
                max_in_flight,
                max_age: 60_000,
            });
            let mut now = Timestamp(0);
            let mut pushed = 0u64;
            let mut acked = 0u64;
            // Live readings sent beyond a full window.
            let mut extra = 0usize;
            for op in ops {
                match op {
                    Op::Push => {
                        o.push(ReadingId(u128::from(pushed)), reading(now.0, 100));
                        pushed += 1;
                    }
                    Op::Due(limit) => {
                        let before = o.in_flight(now);
                        let newest = o.pending.back().map(|p| (p.id, p.sends));
                        let out = o.due(now, limit);
                        let budget = limit.min(max_in_flight.saturating_sub(before));
                        prop_assert!(out.len() <= limit);
                        // Beyond the window only the newest reading, and only its first send.
                        if out.len() > budget {
                            prop_assert_eq!(out.len(), budget + 1);
                            let last = out[budget];
                            prop_assert_eq!(Some((last.id, 0)), newest);
                            prop_assert!(!last.resend);
                            extra += 1;
                        }
                        // Oldest first: ids were pushed in increasing order.
                        prop_assert!(out.windows(2).all(|w| w[0].id.0 < w[1].id.0));
                        prop_assert_eq!(o.in_flight(now), before + out.len());
                        // Held back only by the cap or the limit.
                        if o.has_waiting(now) {
                            prop_assert!(out.len() == limit || o.in_flight(now) >= max_in_flight);
                        }
                    }
                    Op::Ack(i) => {
                        if o.acknowledge(ReadingId(i as u128)) {
                            acked += 1;
                        }
                    }
                    Op::Retry(i) => {
                        o.retry(ReadingId(i as u128));
                    }
                    Op::ResendAll => o.resend_all(),
                    Op::Wait(ms) => now = now.plus(ms),
                }
                prop_assert!(o.in_flight(now) <= max_in_flight + extra);
                prop_assert!(o.len() <= capacity);
                prop_assert_eq!(o.len() as u64 + acked + o.dropped() + o.expired(), pushed);
            }
        }
    }
}
