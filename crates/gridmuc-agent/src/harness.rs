//! An in-memory neighbourhood for agent cores: a virtual clock, a simulated room, a bot
//! stand-in and injected faults, in the style of quinn-proto's test `Pair`.
//!
//! The [`World`] plays the MUC service and the driver's translation at once: what a core
//! transmits reaches the room after [`World::latency`], the room routes it (a direct reading to
//! whoever holds the bot's nickname, a groupchat reading to every occupant, a bounce when nobody
//! holds the nickname), and what comes back reaches the core as the [`Input`] the XMPP driver
//! would have made of the stanza. Nothing here waits: time jumps from one due event to the next,
//! and a seed fixes every draw, so a day of a neighbourhood runs in milliseconds, identically
//! every time.

use crate::meter::{Input, MeterCore, MeterCoreConfig, MeterEvent, Mode, Recipient, Transmit};
use gridmuc_core::{Millis, OutboxConfig, Reading, ReadingId, RoomNick, Timestamp, Watts};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
    }
}

/// The load house `house` measures for the interval starting at `slot`: deterministic, so a
/// test can tell which interval a reading the bot counted belongs to.
pub fn load(house: usize, slot: Timestamp) -> Watts {
    let minute = slot.millis().div_euclid(60_000).rem_euclid(10);
    Watts(400 + 100 * house as i64 + 37 * minute)
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

/// The substation bot, reduced to what meters see of it.
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
                Some(Input::Refused {
                    id,
                    reason: reason.clone(),
                })
            }
            Policy::Silent => {
                self.hear(from, id, reading);
                None
            }
            Policy::Accept | Policy::Refuse(_) => {
                self.hear(from, id, reading);
                Some(Input::Accepted(id))
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
}

/// Steps a world may take before it is declared stuck (a core whose timer never moves on).
const MAX_STEPS: u64 = 5_000_000;

/// A neighbourhood on a virtual clock: houses, one room, a bot stand-in and a network.
#[derive(Debug)]
pub struct World {
    /// The houses, in creation order.
    pub houses: Vec<House>,
    /// The bot stand-in (in the room unless a test says otherwise).
    pub bot: Bot,
    /// One-way delay of every hop (house to room, room to bot, and back).
    pub latency: Millis,
    /// Extra delay of a groupchat fan-out: a congested room.
    pub room_delay: Millis,
    /// How long replacing a session (or reconnecting after a crash) takes.
    pub renew_delay: Millis,
    /// Message faults.
    pub faults: Faults,
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
            latency: 20,
            room_delay: 0,
            renew_delay: 1_000,
            faults: Faults::default(),
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
                session: 0,
                stalled: false,
                conflicts_ahead: 0,
            });
        }
        world
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
            let timer = self
                .houses
                .iter()
                .filter_map(|h| h.core.poll_timeout())
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

    /// Tells every house to stop and gives them `d` to drain and leave.
    pub fn shutdown(&mut self, d: Millis) {
        let now = self.now;
        for h in &mut self.houses {
            h.core.handle(now, Input::Shutdown);
        }
        self.run_for(d);
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
        let session = self.houses[house].session;
        for nick in self.nicks_of(house) {
            self.occupants.remove(&nick);
        }
        let at = self.now.plus(self.latency);
        self.schedule(
            at,
            Delivery::ToHouse {
                house,
                session,
                input: Input::Removed,
            },
        );
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
        self.schedule(up, Delivery::ServerUp);
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
            // Lost while the server is down (the XMPP client reports nothing either).
            _ if self.down_until.is_some() => {}
            what => {
                let session = self.houses[house].session;
                let send = matches!(what, Transmit::Send { .. });
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
            Delivery::BotHears { from, id, reading } => self.bot.hear(from, id, reading),
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
                    self.occupants.insert(nick.clone(), me);
                    Input::Joined(nick)
                };
                self.schedule(hop, reply(input));
            }
            Transmit::Leave(nick) => {
                if self.occupants.get(&nick) == Some(&me) {
                    self.occupants.remove(&nick);
                }
            }
            Transmit::Ping => self.schedule(hop, reply(Input::Alive)),
            Transmit::Send { id, reading, to } => {
                let Some(from) = sender else {
                    // Not an occupant: the room refuses the message.
                    self.message(hop, reply(bounce(id, "not-acceptable")));
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
            Transmit::Measure { .. } | Transmit::RenewSession => {}
        }
    }

    /// Schedules a message stanza through the fault model.
    fn message(&mut self, at: Timestamp, d: Delivery) {
        let f = self.faults;
        if f.drop > 0.0 && self.rng.random_bool(f.drop.min(1.0)) {
            return;
        }
        let copies = if f.duplicate > 0.0 && self.rng.random_bool(f.duplicate.min(1.0)) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let extra = if f.delay > 0 {
                self.rng.random_range(0..=f.delay)
            } else {
                0
            };
            self.schedule(at.plus(extra), d.clone());
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
