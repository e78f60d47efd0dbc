//! An in-memory neighbourhood for agent cores: a virtual clock, a simulated room, a bot
//! (the real [`BotCore`] with [`World::with_bot`], a stand-in otherwise) and injected faults,
//! in the style of quinn-proto's test `Pair`.
//!
//! The [`World`] plays the MUC service and the driver's translation at once: what a core
//! transmits reaches the room after [`World::latency`], the room routes it (a direct reading to
//! whoever holds the bot's nickname, a groupchat reading to every occupant, a bounce when nobody
//! holds the nickname), and what comes back reaches the core as the [`Input`] the XMPP driver
//! would have made of the stanza. Nothing here waits: time jumps from one due event to the next,
//! and a seed fixes every draw, so a day of a neighbourhood runs in milliseconds, identically
//! every time.

use crate::bot::{self, BotCore, BotCoreConfig, BotEvent, SelfPresence, To, Verdict};
use crate::meter::{
    Input, MeterCore, MeterCoreConfig, MeterEvent, MeterReport, Mode, Recipient, Transmit,
};
use crate::room::{Agent, RoomInput};
use gridmuc_core::aggregator::{Counters, Ingest};
use gridmuc_core::{
    IntervalStats, Millis, OutboxConfig, Reading, ReadingId, Rejection, RoomNick, Timestamp, Watts,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::btree_map::Entry as SlotEntry;
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};

/// Where the virtual clock starts: 2026-11-30T00:00:00Z, a round hour.
pub const EPOCH: Timestamp = Timestamp(1_795_996_800_000);

/// Settings of a production meter (`gridmuc meter`'s defaults) with one nickname per hour, for
/// simulations that want to see rotation only when they ask for it.
pub fn meter_config(mode: Mode) -> MeterCoreConfig {
    MeterCoreConfig {
        mode,
        pace_broadcast: true,
        interval: 60_000,
        jitter: [0.1, 0.6],
        rotate: [3_600_000, 3_600_000],
        rejoin_gap: [5_000, 60_000],
        quantum_watts: 10,
        outbox: OutboxConfig::default(),
        not_before: None,
        answer_timeout: 15_000,
        drain: 2_000,
        readout: true,
        save_outbox: false,
    }
}

/// The load house `house` measures for the interval starting at `slot`: deterministic, so a
/// test can tell which interval a reading the bot counted belongs to.
pub fn load(house: usize, slot: Timestamp) -> Watts {
    let minute = slot.millis().div_euclid(60_000).rem_euclid(10);
    Watts(400 + 100 * house as i64 + 37 * minute)
}

/// How the room answers an agent's liveness probe, which the driver sends as an XEP-0410
/// self-ping while the core holds a nickname: `Removed` if the room no longer counts an agent
/// that believes it is in (`counted` false, `holds_nick` true), else `Alive`.
pub(crate) fn probe_answer(counted: bool, holds_nick: bool) -> RoomInput {
    if holds_nick && !counted {
        RoomInput::Removed
    } else {
        RoomInput::Alive
    }
}

/// How the bot stand-in answers a direct reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Counts it and answers with an `accepted` verdict (again for a copy already counted).
    Accept,
    /// Answers with a refusal for this reason and does not count it.
    Refuse(String),
    /// Counts it and never answers (a bot whose answers are lost).
    Silent,
}

/// The substation bot as meters see it: a stand-in answering by [`Policy`], or, in a world
/// made by [`World::with_bot`], the bookkeeping of what the real [`BotCore`] counted.
#[derive(Debug)]
pub struct Bot {
    /// Its room nickname.
    pub nick: RoomNick,
    /// How it answers readings.
    pub policy: Policy,
    /// Readings it counted, by id, with the nickname they first came from.
    pub counted: HashMap<ReadingId, (RoomNick, Reading)>,
    /// Copies of counted readings that arrived again (resends).
    pub duplicates: u64,
    /// Every reading that reached it, copies included.
    pub received: u64,
}

impl Bot {
    /// Takes a direct reading and says what to answer, if anything.
    fn take(&mut self, from: RoomNick, id: ReadingId, reading: Reading) -> Option<Input> {
        match &self.policy {
            Policy::Refuse(reason) if !self.counted.contains_key(&id) => {
                self.received += 1;
                Some(Input::Verdicts(vec![(
                    id,
                    Verdict::Refused(reason.clone()),
                )]))
            }
            Policy::Silent => {
                self.hear(from, id, reading);
                None
            }
            Policy::Accept | Policy::Refuse(_) => {
                self.hear(from, id, reading);
                Some(Input::Verdicts(vec![(id, Verdict::Accepted)]))
            }
        }
    }

    /// Counts a reading once however often it arrives (a groupchat one is acknowledged by
    /// the room's echo, not by the bot).
    fn hear(&mut self, from: RoomNick, id: ReadingId, reading: Reading) {
        self.received += 1;
        match self.counted.entry(id) {
            Entry::Occupied(_) => self.duplicates += 1,
            Entry::Vacant(v) => {
                v.insert((from, reading));
            }
        }
    }
}

/// Who holds a nickname in the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Occupant {
    /// A house, on one of its sessions.
    House {
        /// Index into [`World::houses`].
        house: usize,
        /// The session that joined.
        session: u64,
    },
    /// The bot stand-in.
    Bot,
    /// Someone else holding the bot's nickname, answering every reading with an unsigned receipt.
    Impostor,
}

/// Faults applied to every message stanza (readings, verdicts, echoes; not presences or pings),
/// at each hop, from the world's seeded RNG.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a message arrives twice.
    pub duplicate: f64,
    /// Extra delay, uniform in `[0, delay]`.
    pub delay: Millis,
}

impl Faults {
    /// When a message due at `at` arrives under these faults: never if lost, twice if
    /// duplicated, each copy delayed on its own. Both harnesses draw by this one rule.
    pub fn arrivals(&self, rng: &mut impl Rng, at: Timestamp) -> Vec<Timestamp> {
        if self.drop > 0.0 && rng.random_bool(self.drop.min(1.0)) {
            return Vec::new();
        }
        let copies = if self.duplicate > 0.0 && rng.random_bool(self.duplicate.min(1.0)) {
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let extra = if self.delay > 0 {
                    rng.random_range(0..=self.delay)
                } else {
                    0
                };
                at.plus(extra)
            })
            .collect()
    }
}

/// The real substation bot: its core and what the test wants to look at afterwards.
#[derive(Debug)]
pub struct Substation {
    /// The bot under test (its latest incarnation after [`World::restart_bot`]).
    pub core: BotCore<StdRng>,
    /// What it told its caller, over every incarnation.
    pub events: Vec<BotEvent>,
    /// Everything it transmitted, with the time.
    pub transmits: Vec<(Timestamp, bot::Transmit)>,
    /// Bodies it posted to the room, as the room saw them.
    pub room_posts: Vec<(Timestamp, String)>,
    /// Messages operators received: (when, operator, body).
    pub operator_inbox: Vec<(Timestamp, String, String)>,
    /// Counters of incarnations that were restarted.
    pub past: Vec<Counters>,
    /// The latest summary of each interval, by incarnation (0, then 1 after a restart, …) and start.
    pub closed: BTreeMap<(u64, Timestamp), IntervalStats>,
    /// What the room says of us when we join (privacy tests).
    pub presence: SelfPresence,
    cfg: BotCoreConfig,
    session: u64,
    stalled: bool,
    running: bool,
    incarnation: u64,
    seed: u64,
}

impl Substation {
    /// Room posts that are interval summaries.
    pub fn summaries_posted(&self) -> usize {
        self.room_posts
            .iter()
            .filter(|(_, b)| b.starts_with("interval "))
            .count()
    }

    /// Refusals it sent to `nick` for `reason`, one time per refusal (acks may carry several).
    pub fn refusals_to(&self, nick: &RoomNick, reason: &str) -> Vec<Timestamp> {
        let refused = Verdict::Refused(reason.to_owned());
        self.verdicts_to(nick)
            .filter(|(_, _, v)| **v == refused)
            .map(|(t, _, _)| t)
            .collect()
    }

    /// Every verdict it sent to `nick`, with the time its ack went out, in order.
    pub fn verdicts_to<'a>(
        &'a self,
        nick: &'a RoomNick,
    ) -> impl Iterator<Item = (Timestamp, ReadingId, &'a Verdict)> + 'a {
        self.transmits.iter().flat_map(move |(t, tx)| match tx {
            bot::Transmit::Acks { to, verdicts } if to == nick => {
                verdicts.iter().map(|(id, v)| (*t, *id, v)).collect()
            }
            _ => Vec::new(),
        })
    }

    /// The number of acks it sent, and the number of verdicts they carried.
    pub fn acks_sent(&self) -> (usize, usize) {
        self.transmits
            .iter()
            .filter_map(|(_, tx)| match tx {
                bot::Transmit::Acks { verdicts, .. } => Some(verdicts.len()),
                _ => None,
            })
            .fold((0, 0), |(a, v), n| (a + 1, v + n))
    }

    /// How many transmits `pick` selects.
    pub fn count(&self, pick: impl Fn(&bot::Transmit) -> bool) -> usize {
        self.transmits.iter().filter(|(_, t)| pick(t)).count()
    }
}

/// A bot configuration for the harness: the meters' interval, one operator.
pub fn bot_config() -> BotCoreConfig {
    let mut cfg = BotCoreConfig::new(RoomNick::new("substation").expect("a valid nickname"));
    cfg.operators = vec!["operator@grid.test".to_owned()];
    cfg
}

/// One simulated house: a meter core and what the test wants to look at afterwards.
#[derive(Debug)]
pub struct House {
    /// The meter under test.
    pub core: MeterCore<StdRng>,
    /// Intervals it measured, in order (catch-up included).
    pub measured: Vec<Timestamp>,
    /// What it told its caller.
    pub events: Vec<MeterEvent>,
    /// Everything it transmitted, with the time.
    pub transmits: Vec<(Timestamp, Transmit)>,
    /// What the meter last saved of its unacknowledged readings: survives a restart.
    pub saved: Vec<(ReadingId, Reading)>,
    /// Reports of the processes [`World::restart_house`] killed, oldest first.
    pub killed: Vec<MeterReport>,
    cfg: MeterCoreConfig,
    session: u64,
    stalled: bool,
    conflicts_ahead: usize,
}

impl House {
    /// The times of every send of reading `id`, and the seqnr of each.
    pub fn sends_of(&self, id: ReadingId) -> Vec<(Timestamp, u64)> {
        self.transmits
            .iter()
            .filter_map(|(t, tx)| match tx {
                Transmit::Send { id: i, reading, .. } if *i == id => Some((*t, reading.seqnr)),
                _ => None,
            })
            .collect()
    }

    /// How many transmits `pick` selects.
    pub fn count(&self, pick: impl Fn(&Transmit) -> bool) -> usize {
        self.transmits.iter().filter(|(_, t)| pick(t)).count()
    }
}

/// Something on its way.
#[derive(Clone, Debug)]
enum Delivery {
    /// A house's stanza reaches the room.
    FromHouse {
        house: usize,
        session: u64,
        what: Transmit,
    },
    /// The room (or the server) hands something to a house's session.
    ToHouse {
        house: usize,
        session: u64,
        input: Input,
    },
    /// A direct reading reaches whoever holds the bot's nickname.
    ToBotNick {
        from: RoomNick,
        id: ReadingId,
        reading: Reading,
    },
    /// A groupchat reading reaches the bot.
    BotHears {
        from: RoomNick,
        id: ReadingId,
        reading: Reading,
    },
    /// Something for the occupant `nick` reaches the room (the bot's answers, its alerts).
    ToNick { nick: RoomNick, input: Input },
    /// The server is back after a crash.
    ServerUp,
    /// The real bot's stanza reaches the room.
    FromSubstation { session: u64, what: bot::Transmit },
    /// The room (or the server) hands something to the real bot's session.
    ToSubstation { session: u64, input: bot::Input },
    /// Something addressed to the bot's nickname (a hostile occupant's reading, say).
    AtBotNick { input: bot::Input },
    /// The restarted bot process is up.
    BotStart,
}

/// Steps a world may take before it is declared stuck (a core whose timer never moves on).
const MAX_STEPS: u64 = 5_000_000;

/// A neighbourhood on a virtual clock: houses, one room, a bot stand-in and a network.
#[derive(Debug)]
pub struct World {
    /// The houses, in creation order.
    pub houses: Vec<House>,
    /// The bot stand-in (in the room unless a test says otherwise), or what the real bot counted.
    pub bot: Bot,
    /// The real bot, in a world made by [`World::with_bot`].
    pub substation: Option<Substation>,
    /// One-way delay of every hop (house to room, room to bot, and back).
    pub latency: Millis,
    /// Extra delay of a groupchat fan-out: a congested room.
    pub room_delay: Millis,
    /// How long replacing a session (or reconnecting after a crash) takes.
    pub renew_delay: Millis,
    /// Message faults.
    pub faults: Faults,
    /// The real bot's next this many acks are lost on their way to the room.
    pub lose_acks: usize,
    /// What the room says of a house when it joins (privacy tests).
    pub house_presence: SelfPresence,
    now: Timestamp,
    occupants: BTreeMap<RoomNick, Occupant>,
    queue: BTreeMap<(Timestamp, u64), Delivery>,
    seq: u64,
    rng: StdRng,
    down_until: Option<Timestamp>,
    bot_wants_room: bool,
    steps: u64,
}

impl World {
    /// `houses` meters with `cfg`, the bot in the room and answering, 20 ms per hop, no faults.
    pub fn new(seed: u64, houses: usize, cfg: &MeterCoreConfig) -> World {
        let mut world = World {
            houses: Vec::new(),
            bot: Bot {
                nick: RoomNick::new("substation").expect("a valid nickname"),
                policy: Policy::Accept,
                counted: HashMap::new(),
                duplicates: 0,
                received: 0,
            },
            substation: None,
            latency: 20,
            room_delay: 0,
            renew_delay: 1_000,
            faults: Faults::default(),
            lose_acks: 0,
            house_presence: SelfPresence::default(),
            now: EPOCH,
            occupants: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            down_until: None,
            bot_wants_room: false,
            steps: 0,
        };
        world.bot_join();
        for i in 0..houses {
            let rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000).wrapping_add(i as u64 + 1));
            world.houses.push(House {
                core: MeterCore::new(cfg.clone(), rng, EPOCH),
                measured: Vec::new(),
                events: Vec::new(),
                transmits: Vec::new(),
                saved: Vec::new(),
                killed: Vec::new(),
                cfg: cfg.clone(),
                session: 0,
                stalled: false,
                conflicts_ahead: 0,
            });
        }
        world
    }

    /// `houses` meters with `meter`, and the real bot with `bot`, which joins by itself.
    pub fn with_bot(
        seed: u64,
        houses: usize,
        meter: &MeterCoreConfig,
        bot: BotCoreConfig,
    ) -> World {
        let mut world = World::new(seed, houses, meter);
        world.bot_leave();
        world.bot.nick = bot.nick.clone();
        let bot_seed = seed.wrapping_mul(7_919).wrapping_add(13);
        world.substation = Some(Substation {
            core: BotCore::new(bot.clone(), StdRng::seed_from_u64(bot_seed), EPOCH),
            events: Vec::new(),
            transmits: Vec::new(),
            room_posts: Vec::new(),
            operator_inbox: Vec::new(),
            past: Vec::new(),
            closed: BTreeMap::new(),
            presence: SelfPresence::default(),
            cfg: bot,
            session: 0,
            stalled: false,
            running: true,
            incarnation: 0,
            seed: bot_seed,
        });
        world.pump();
        world
    }

    fn sub(&mut self) -> &mut Substation {
        self.substation.as_mut().expect("a world with the real bot")
    }

    /// The real bot's session stops delivering (its sends still go out) until it is replaced.
    pub fn stall_bot(&mut self) {
        self.sub().stalled = true;
    }

    /// The bot process is restarted: it stops (closing and publishing its open intervals,
    /// then leaving), and a fresh process with an empty aggregator starts after `down`.
    ///
    /// A bot killed outright would lose the intervals it had not closed yet: their readings
    /// were acknowledged, so no meter resends them.
    pub fn restart_bot(&mut self, down: Millis) {
        let now = self.now;
        let sub = self.sub();
        sub.core.handle(now, bot::Input::Shutdown);
        self.pump();
        let sub = self.sub();
        sub.running = false;
        let counters = sub.core.counters().clone();
        sub.past.push(counters);
        let at = self.now.plus(down);
        self.schedule(at, Delivery::BotStart);
    }

    /// A reading from `from` (any nickname, an occupant or not) reaches whoever holds the
    /// bot's nickname after one hop: a hostile occupant's flood, or a reading the driver's
    /// decoder refused (`Err`).
    pub fn send_to_bot(
        &mut self,
        from: RoomNick,
        id: ReadingId,
        reading: Result<Reading, Rejection>,
    ) {
        let input = bot::Input::Reading {
            from,
            id: Some(id),
            reading,
            wants_verdict: true,
        };
        let at = self.now.plus(self.latency);
        self.schedule(at, Delivery::AtBotNick { input });
    }

    /// The virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Runs every event due up to `end`, then sets the clock to `end`.
    pub fn run_until(&mut self, end: Timestamp) {
        loop {
            self.pump();
            let delivery = self.queue.keys().next().map(|k| k.0);
            let bot_timer = self
                .substation
                .as_ref()
                .filter(|s| s.running)
                .and_then(|s| s.core.poll_timeout());
            let timer = self
                .houses
                .iter()
                .filter_map(|h| h.core.poll_timeout())
                .chain(bot_timer)
                .min();
            let next = [delivery, timer].into_iter().flatten().min();
            match next {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.step();
                }
                _ => break,
            }
            self.steps += 1;
            assert!(
                self.steps < MAX_STEPS,
                "the world does not settle at {}",
                self.now
            );
        }
        self.now = self.now.max(end);
    }

    /// Runs for `d` milliseconds of virtual time.
    pub fn run_for(&mut self, d: Millis) {
        self.run_until(self.now.plus(d));
    }

    /// Runs in 10-ms steps until some house has a reading on its way, so a fault injected next
    /// hits one in flight.
    pub fn run_until_in_flight(&mut self) {
        while self
            .houses
            .iter()
            .all(|h| h.core.report().unacknowledged == 0)
        {
            self.run_for(10);
        }
    }

    /// Tells every house to stop and gives them `d` to drain and leave.
    pub fn shutdown(&mut self, d: Millis) {
        let now = self.now;
        for h in &mut self.houses {
            h.core.handle(now, Input::Shutdown);
        }
        self.run_for(d);
    }

    /// Tells the real bot to stop (it closes and publishes the open intervals, then leaves)
    /// and runs for `d`.
    pub fn stop_bot(&mut self, d: Millis) {
        let now = self.now;
        self.sub().core.handle(now, bot::Input::Shutdown);
        self.run_for(d);
    }

    /// Counters of every incarnation of the real bot, summed where they add up.
    pub fn bot_accepted(&self) -> u64 {
        self.substation.as_ref().map_or(0, |s| {
            s.past.iter().map(|c| c.accepted).sum::<u64>() + s.core.counters().accepted
        })
    }

    /// The bot takes its nickname (if free) and stays through crashes.
    pub fn bot_join(&mut self) {
        self.bot_wants_room = true;
        self.occupants
            .entry(self.bot.nick.clone())
            .or_insert(Occupant::Bot);
    }

    /// The bot leaves the room; direct readings bounce until someone takes its nickname.
    pub fn bot_leave(&mut self) {
        self.bot_wants_room = false;
        self.occupants.retain(|_, o| *o != Occupant::Bot);
    }

    /// A hostile occupant takes the bot's nickname, if it is free.
    pub fn impostor_join(&mut self) {
        self.occupants
            .entry(self.bot.nick.clone())
            .or_insert(Occupant::Impostor);
    }

    /// The hostile occupant leaves.
    pub fn impostor_leave(&mut self) {
        self.occupants.retain(|_, o| *o != Occupant::Impostor);
    }

    /// Who holds `nick`.
    pub fn occupant(&self, nick: &RoomNick) -> Option<Occupant> {
        self.occupants.get(nick).copied()
    }

    /// Nicknames a house holds in the room right now (one, or none between nicknames).
    pub fn nicks_of(&self, house: usize) -> Vec<RoomNick> {
        self.occupants
            .iter()
            .filter(|(_, o)| matches!(o, Occupant::House { house: h, .. } if *h == house))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The next `n` joins of `house` find their nickname taken.
    pub fn conflicts_for(&mut self, house: usize, n: usize) {
        self.houses[house].conflicts_ahead += n;
    }

    /// The room removes `house` (a kick, say) and tells it so.
    pub fn kick(&mut self, house: usize) {
        for nick in self.nicks_of(house) {
            self.occupants.remove(&nick);
        }
        self.tell(house, Input::Removed);
    }

    /// The room forgets `house` without telling it (its room restarted on another cluster
    /// node, say): its session is fine, but the room no longer counts it as an occupant.
    pub fn forget(&mut self, house: usize) {
        for nick in self.nicks_of(house) {
            self.occupants.remove(&nick);
        }
    }

    /// The room forgets the real bot without telling it, as [`World::forget`] does a house.
    pub fn forget_bot(&mut self) {
        self.occupants.retain(|_, o| *o != Occupant::Bot);
    }

    /// The meter process of `house` is killed outright (a crash, a power cut) and started
    /// again at once: its session and nickname are gone with it, and the new process has only
    /// what the old one saved ([`Transmit::SaveOutbox`]), if its config saves anything.
    pub fn restart_house(&mut self, house: usize) {
        for nick in self.nicks_of(house) {
            self.occupants.remove(&nick);
        }
        let rng = StdRng::seed_from_u64(self.rng.random());
        let h = &mut self.houses[house];
        h.session += 1;
        h.stalled = false;
        let mut core = MeterCore::new(h.cfg.clone(), rng, self.now);
        core.restore(h.saved.clone());
        let killed = std::mem::replace(&mut h.core, core);
        h.killed.push(killed.report());
        self.pump();
    }

    /// The session of `house` stops delivering (its sends still go out) until it is replaced.
    pub fn stall(&mut self, house: usize) {
        self.houses[house].stalled = true;
    }

    /// The server crashes: every occupant and everything in flight is gone; it is back after
    /// `down`, when every session reconnects without resumption and the bot rejoins.
    pub fn crash(&mut self, down: Millis) {
        self.occupants.clear();
        self.queue.clear();
        let up = self.now.plus(down);
        self.down_until = Some(up);
        for h in &mut self.houses {
            h.session += 1;
            h.stalled = false;
        }
        if let Some(sub) = &mut self.substation {
            sub.session += 1;
            sub.stalled = false;
        }
        self.schedule(up, Delivery::ServerUp);
    }

    /// `input` reaches the current session of `house` after one hop, as if through the room:
    /// from the bot's nickname (a forged ack, a replayed one) or from the room itself.
    pub fn tell(&mut self, house: usize, input: Input) {
        let session = self.houses[house].session;
        let at = self.now.plus(self.latency);
        self.schedule(
            at,
            Delivery::ToHouse {
                house,
                session,
                input,
            },
        );
    }

    /// Whoever holds the bot's nickname sends `house` a private message through the room.
    pub fn whisper(&mut self, house: usize, body: &str) {
        let Some(nick) = self.nicks_of(house).into_iter().next() else {
            return;
        };
        let verified = self.occupant(&self.bot.nick) == Some(Occupant::Bot);
        let input = Input::Private {
            from: self.bot.nick.clone(),
            body: body.to_owned(),
            alert: None,
            verified,
        };
        let at = self.now.plus(self.latency);
        self.message(at, Delivery::ToNick { nick, input });
    }

    /// Delivers what is due now, then fires the houses' due timers.
    fn step(&mut self) {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let delivery = entry.remove();
            self.deliver(delivery);
            self.pump();
        }
        let now = self.now;
        for h in &mut self.houses {
            if h.core.poll_timeout().is_some_and(|t| t <= now) {
                h.core.handle_timeout(now);
            }
        }
        if let Some(sub) = &mut self.substation
            && sub.running
            && sub.core.poll_timeout().is_some_and(|t| t <= now)
        {
            sub.core.handle_timeout(now);
        }
    }

    /// Carries out every house's transmits and collects its events.
    fn pump(&mut self) {
        for i in 0..self.houses.len() {
            loop {
                let h = &mut self.houses[i];
                h.events.extend(std::iter::from_fn(|| h.core.poll_event()));
                let Some(t) = h.core.poll_transmit() else {
                    break;
                };
                h.transmits.push((self.now, t.clone()));
                self.transmit(i, t);
            }
        }
        while let Some(sub) = &mut self.substation {
            while let Some(e) = sub.core.poll_event() {
                if let BotEvent::Ingested {
                    nick,
                    id: Some(id),
                    reading,
                    outcome,
                } = &e
                {
                    match outcome {
                        Ingest::Accepted => self.bot.hear(nick.clone(), *id, *reading),
                        Ingest::Rejected(Rejection::Duplicate) => {
                            self.bot.received += 1;
                            self.bot.duplicates += 1;
                        }
                        Ingest::Rejected(_) => self.bot.received += 1,
                    }
                }
                if let BotEvent::Summary { stats, .. } = &e {
                    sub.closed
                        .insert((sub.incarnation, stats.start), stats.clone());
                }
                sub.events.push(e);
            }
            let Some(t) = sub.core.poll_transmit() else {
                break;
            };
            sub.transmits.push((self.now, t.clone()));
            self.bot_transmit(t);
        }
    }

    /// Carries out one of the real bot's transmits.
    fn bot_transmit(&mut self, t: bot::Transmit) {
        let at = self.now.plus(self.latency);
        let sub = self.sub();
        let session = sub.session;
        match t {
            bot::Transmit::RenewSession => {
                sub.session += 1;
                sub.stalled = false;
                let session = sub.session;
                self.occupants.retain(|_, o| *o != Occupant::Bot);
                if self.down_until.is_none() {
                    let input = bot::Input::SessionReset;
                    let back = self.now.plus(self.renew_delay);
                    self.schedule(back, Delivery::ToSubstation { session, input });
                }
            }
            _ if self.down_until.is_some() => {}
            what @ (bot::Transmit::Acks { .. } | bot::Transmit::Post { .. }) => {
                self.message(at, Delivery::FromSubstation { session, what });
            }
            what => self.schedule(at, Delivery::FromSubstation { session, what }),
        }
    }

    /// The room handles one of the real bot's stanzas.
    fn at_room_from_bot(&mut self, session: u64, what: bot::Transmit) {
        let hop = self.now.plus(self.latency);
        let nick = self.bot.nick.clone();
        let sub = self.sub();
        if sub.session != session {
            return;
        }
        let presence = sub.presence.clone();
        let reply = |input| Delivery::ToSubstation { session, input };
        let in_room = self.occupant(&nick) == Some(Occupant::Bot);
        match what {
            bot::Transmit::Join(n) => {
                let input = match self.occupants.entry(n) {
                    SlotEntry::Occupied(_) => bot::Input::NickConflict,
                    SlotEntry::Vacant(v) => {
                        v.insert(Occupant::Bot);
                        bot::Input::Joined(presence)
                    }
                };
                self.schedule(hop, reply(input));
            }
            bot::Transmit::Leave(n) => {
                if self.occupants.get(&n) == Some(&Occupant::Bot) {
                    self.occupants.remove(&n);
                }
            }
            bot::Transmit::Ping => {
                let holds_nick = self.sub().core.nick().is_some();
                self.schedule(hop, reply(probe_answer(in_room, holds_nick).into()));
            }
            // Readout polls of third-party devices are tested on the cores (tests/readout.rs).
            bot::Transmit::RenewSession | bot::Transmit::Poll { .. } => {}
            bot::Transmit::Post {
                to: To::Operator(op),
                body,
                ..
            } => {
                let now = self.now;
                self.sub().operator_inbox.push((now, op, body));
            }
            // Not an occupant: the room refuses it.
            _ if !in_room => {}
            bot::Transmit::Acks { .. } if self.lose_acks > 0 => self.lose_acks -= 1,
            bot::Transmit::Acks { to, verdicts } => {
                let input = Input::Verdicts(verdicts);
                self.message(hop, Delivery::ToNick { nick: to, input });
            }
            bot::Transmit::Post {
                to: To::Room, body, ..
            } => {
                let now = self.now;
                self.sub().room_posts.push((now, body));
                let echo = hop.plus(self.room_delay);
                self.message(echo, reply(bot::Input::Alive));
            }
            bot::Transmit::Post {
                to: To::Occupant(to),
                body,
                alert,
                ..
            } => {
                let input = Input::Private {
                    from: nick,
                    body,
                    alert,
                    verified: true,
                };
                self.message(hop, Delivery::ToNick { nick: to, input });
            }
        }
    }

    /// Hands `input` to the real bot if it holds its nickname and its session delivers.
    fn hand_to_bot(&mut self, input: bot::Input) {
        let now = self.now;
        let in_room = self.occupant(&self.bot.nick) == Some(Occupant::Bot);
        if let Some(sub) = &mut self.substation
            && in_room
            && sub.running
            && !sub.stalled
        {
            sub.core.handle(now, input);
        }
    }

    fn transmit(&mut self, house: usize, t: Transmit) {
        let now = self.now;
        match t {
            // The driver owns the source and answers at once.
            Transmit::Measure { slot } => {
                let h = &mut self.houses[house];
                h.measured.push(slot);
                let value = Some(load(house, slot));
                h.core.handle(now, Input::Measured { slot, value });
            }
            Transmit::RenewSession => self.renew(house),
            // The meter's own disk, whatever the server does.
            Transmit::SaveOutbox(readings) => self.houses[house].saved = readings,
            // Lost while the server is down (the XMPP client reports nothing either).
            _ if self.down_until.is_some() => {}
            what => {
                let session = self.houses[house].session;
                let send = matches!(what, Transmit::Send { .. } | Transmit::FlushAcks);
                let d = Delivery::FromHouse {
                    house,
                    session,
                    what,
                };
                let at = now.plus(self.latency);
                if send {
                    self.message(at, d);
                } else {
                    self.schedule(at, d);
                }
            }
        }
    }

    /// Closes the house's session (it leaves the room) and opens a fresh one.
    fn renew(&mut self, house: usize) {
        for nick in self.nicks_of(house) {
            self.occupants.remove(&nick);
        }
        let h = &mut self.houses[house];
        h.session += 1;
        h.stalled = false;
        // While the server is down, its return resets every session.
        if self.down_until.is_none() {
            let d = Delivery::ToHouse {
                house,
                session: h.session,
                input: Input::SessionReset,
            };
            self.schedule(self.now.plus(self.renew_delay), d);
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let hop = self.now.plus(self.latency);
        match d {
            Delivery::FromHouse {
                house,
                session,
                what,
            } => {
                if self.houses[house].session == session {
                    self.at_room(house, session, what);
                }
            }
            Delivery::ToHouse {
                house,
                session,
                input,
            } => {
                let h = &mut self.houses[house];
                if h.session == session && !h.stalled {
                    h.core.handle(self.now, input);
                }
            }
            Delivery::ToBotNick { from, id, reading } if self.substation.is_some() => {
                let in_room = self.occupant(&self.bot.nick) == Some(Occupant::Bot);
                if in_room {
                    self.hand_to_bot(bot::Input::Reading {
                        from,
                        id: Some(id),
                        reading: Ok(reading),
                        wants_verdict: true,
                    });
                } else {
                    let answer = match self.occupant(&self.bot.nick) {
                        Some(Occupant::Impostor) => Input::Unverified(id),
                        _ => bounce(id, "item-not-found"),
                    };
                    self.message(
                        hop,
                        Delivery::ToNick {
                            nick: from,
                            input: answer,
                        },
                    );
                }
            }
            Delivery::ToBotNick { from, id, reading } => {
                let answer = match self.occupant(&self.bot.nick) {
                    Some(Occupant::Bot) => self.bot.take(from.clone(), id, reading),
                    Some(Occupant::Impostor) => Some(Input::Unverified(id)),
                    _ => Some(bounce(id, "item-not-found")),
                };
                if let Some(input) = answer {
                    self.message(hop, Delivery::ToNick { nick: from, input });
                }
            }
            Delivery::BotHears { from, id, reading } if self.substation.is_some() => {
                self.hand_to_bot(bot::Input::Reading {
                    from,
                    id: Some(id),
                    reading: Ok(reading),
                    wants_verdict: false,
                });
            }
            Delivery::BotHears { from, id, reading } => self.bot.hear(from, id, reading),
            Delivery::AtBotNick { input } => self.hand_to_bot(input),
            Delivery::FromSubstation { session, what } => self.at_room_from_bot(session, what),
            Delivery::ToSubstation { session, input } => {
                let now = self.now;
                if let Some(sub) = &mut self.substation
                    && sub.session == session
                    && sub.running
                    && !sub.stalled
                {
                    sub.core.handle(now, input);
                }
            }
            Delivery::BotStart => {
                let now = self.now;
                let sub = self.sub();
                sub.incarnation += 1;
                sub.session += 1;
                sub.running = true;
                sub.stalled = false;
                let rng = StdRng::seed_from_u64(sub.seed.wrapping_add(sub.incarnation));
                sub.core = BotCore::new(sub.cfg.clone(), rng, now);
            }
            Delivery::ToNick { nick, input } => {
                if let Some(Occupant::House { house, session }) = self.occupant(&nick) {
                    self.message(
                        hop,
                        Delivery::ToHouse {
                            house,
                            session,
                            input,
                        },
                    );
                }
            }
            Delivery::ServerUp => {
                self.down_until = None;
                let back = self.now.plus(self.renew_delay);
                let sessions: Vec<u64> = self.houses.iter().map(|h| h.session).collect();
                for (house, session) in sessions.into_iter().enumerate() {
                    let d = Delivery::ToHouse {
                        house,
                        session,
                        input: Input::SessionReset,
                    };
                    self.schedule(back, d);
                }
                if self.bot_wants_room {
                    self.bot_join();
                }
                if let Some(sub) = &self.substation {
                    let session = sub.session;
                    let input = bot::Input::SessionReset;
                    self.schedule(back, Delivery::ToSubstation { session, input });
                }
            }
        }
    }

    /// The room handles a house's stanza.
    fn at_room(&mut self, house: usize, session: u64, what: Transmit) {
        let hop = self.now.plus(self.latency);
        let me = Occupant::House { house, session };
        let reply = |input| Delivery::ToHouse {
            house,
            session,
            input,
        };
        let sender = self
            .occupants
            .iter()
            .find(|(_, o)| **o == me)
            .map(|(n, _)| n.clone());
        match what {
            Transmit::Join(nick) => {
                let h = &mut self.houses[house];
                let input = if h.conflicts_ahead > 0 || self.occupants.contains_key(&nick) {
                    h.conflicts_ahead = h.conflicts_ahead.saturating_sub(1);
                    Input::NickConflict
                } else {
                    self.occupants.insert(nick, me);
                    Input::Joined(self.house_presence.clone())
                };
                self.schedule(hop, reply(input));
            }
            Transmit::Leave(nick) => {
                if self.occupants.get(&nick) == Some(&me) {
                    self.occupants.remove(&nick);
                }
            }
            Transmit::Ping => {
                let holds_nick = self.houses[house].core.nick().is_some();
                let answer = probe_answer(sender.is_some(), holds_nick);
                self.schedule(hop, reply(answer.into()));
            }
            // Only the real bot holds verdicts back; the stand-in answers each reading at once.
            Transmit::FlushAcks => {
                if let (Some(from), true) = (sender, self.substation.is_some()) {
                    let input = bot::Input::FlushAcks { from };
                    self.message(hop, Delivery::AtBotNick { input });
                }
            }
            Transmit::Send { id, reading, to } => {
                let Some(from) = sender else {
                    // Not an occupant: the room refuses the message.
                    self.message(hop, reply(bounce(id, crate::room::NOT_AN_OCCUPANT)));
                    return;
                };
                match to {
                    Recipient::Bot => {
                        self.message(hop, Delivery::ToBotNick { from, id, reading });
                    }
                    Recipient::Room => {
                        let fanout = hop.plus(self.room_delay);
                        let occupants: Vec<Occupant> = self.occupants.values().copied().collect();
                        for o in occupants {
                            let d = match o {
                                Occupant::House { house, session } => Delivery::ToHouse {
                                    house,
                                    session,
                                    input: Input::Echo(id),
                                },
                                Occupant::Bot => Delivery::BotHears {
                                    from: from.clone(),
                                    id,
                                    reading,
                                },
                                Occupant::Impostor => continue,
                            };
                            self.message(fanout, d);
                        }
                    }
                }
            }
            // Readout answers stay in the house's transmits, where tests read them.
            Transmit::Measure { .. }
            | Transmit::RenewSession
            | Transmit::Answer(_)
            | Transmit::SaveOutbox(_) => {}
        }
    }

    /// Schedules a message stanza through the fault model.
    fn message(&mut self, at: Timestamp, d: Delivery) {
        for t in self.faults.arrivals(&mut self.rng, at) {
            self.schedule(t, d.clone());
        }
    }

    fn schedule(&mut self, at: Timestamp, d: Delivery) {
        self.seq += 1;
        self.queue.insert((at, self.seq), d);
    }
}

/// The room's error for a reading it could not deliver.
fn bounce(id: ReadingId, why: &str) -> Input {
    Input::Bounce {
        id: Some(id),
        why: why.to_owned(),
    }
}
