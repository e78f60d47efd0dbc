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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutboxConfig {
    /// Readings kept unacknowledged at most; the oldest is dropped (and counted) beyond this.
    pub capacity: usize,
    /// A reading unacknowledged for this long is sent again on the same session.
    pub resend_after: Millis,
    /// Readings older than this are given up (and counted): the bot would refuse them as late.
    pub max_age: Millis,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            // A day of one-minute readings.
            capacity: 1_440,
            resend_after: 30_000,
            // The bot's default backfill window (10 min) after the interval's end and grace.
            max_age: 600_000,
        }
    }
}

#[derive(Clone, Debug)]
struct Pending {
    id: ReadingId,
    reading: Reading,
    last_sent: Option<Timestamp>,
    sent_before: bool,
}

/// A reading to put on the wire now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The message id the acknowledgement will name.
    pub id: ReadingId,
    /// The reading with its original timestamp; the caller sets the current nickname's seqnr.
    pub reading: Reading,
    /// True if it was sent before: counted as a resend, not a new reading.
    pub resend: bool,
}

/// Unacknowledged readings of one meter, oldest first; sans-IO, the caller sends what [`Outbox::due`] returns.
#[derive(Clone, Debug)]
pub struct Outbox {
    config: OutboxConfig,
    pending: VecDeque<Pending>,
    dropped: u64,
    expired: u64,
}

impl Outbox {
    /// An empty outbox.
    pub fn new(config: OutboxConfig) -> Outbox {
        Outbox {
            config: OutboxConfig {
                capacity: config.capacity.max(1),
                ..config
            },
            pending: VecDeque::new(),
            dropped: 0,
            expired: 0,
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
            last_sent: None,
            sent_before: false,
        });
    }

    /// Forgets a reading the bot (or the room) confirmed; false for an unknown or repeated id.
    pub fn acknowledge(&mut self, id: ReadingId) -> bool {
        match self.pending.iter().position(|p| p.id == id) {
            Some(i) => {
                self.pending.remove(i);
                true
            }
            None => false,
        }
    }

    /// Up to `limit` readings to send now (never sent, or unacknowledged for `resend_after`),
    /// oldest first, marked as sent at `now`; a paced sender passes its free window.
    ///
    /// Readings past `max_age` are given up first and counted in [`Outbox::expired`].
    pub fn due(&mut self, now: Timestamp, limit: usize) -> Vec<Outgoing> {
        let before = self.pending.len();
        let max_age = self.config.max_age;
        self.pending.retain(|p| now.since(p.reading.at) <= max_age);
        self.expired += (before - self.pending.len()) as u64;
        let resend_after = self.config.resend_after;
        self.pending
            .iter_mut()
            .filter(|p| p.last_sent.is_none_or(|t| now.since(t) >= resend_after))
            .take(limit)
            .map(|p| {
                p.last_sent = Some(now);
                let resend = std::mem::replace(&mut p.sent_before, true);
                Outgoing {
                    id: p.id,
                    reading: p.reading,
                    resend,
                }
            })
            .collect()
    }

    /// Makes one reading due again at once, e.g. when the room bounced it; false if unknown.
    pub fn retry(&mut self, id: ReadingId) -> bool {
        let found = self.pending.iter_mut().find(|p| p.id == id);
        found.map(|p| p.last_sent = None).is_some()
    }

    /// Makes everything pending due at once: a fresh session cannot have delivered what the old one lost.
    pub fn resend_all(&mut self) {
        for p in &mut self.pending {
            p.last_sent = None;
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
}
