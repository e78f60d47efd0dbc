//! XEP-0323 readout, both ways, as rules without XML: a meter answering momentary readout
//! requests that reach its occupant JID through the room ([`Responder`]), and the bot polling
//! configured third-party devices in the room ([`Poller`]).
//!
//! The XSF retracted XEP-0323 in 2017; gridmuc keeps it because the seed spoke it and IoT
//! clients in the wild (slixmpp's `xep_0323` plugin among them) still do (docs/readout.md).
//!
//! Privacy: a readout answer must not link a meter's nicknames. It therefore carries only what
//! was measured under the nickname that answers (the last interval's mean power, and the energy
//! of the intervals measured under it), the requester's own `seqnr`, and the constant node id;
//! never an energy register (a cumulative register is a fingerprint that survives every
//! rotation). The driver hands requests over with an opaque [`ReplyTo`] handle instead of the
//! iq's id and sender, which Prosody rewrites to carry real JIDs.

use gridmuc_core::{Millis, Reading, Rejection, RoomNick, Timestamp, Watts};
use std::collections::{BTreeMap, VecDeque};

/// The driver's handle for where an iq's answer goes; the core only passes it back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyTo(pub u64);

/// Who sent a request, as far as the core may know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An occupant of our room, by nickname (the room routes an iq to an occupant JID to the
    /// session holding that nickname now, so it reached the nickname we hold).
    Occupant(RoomNick),
    /// Anyone else: another account writing to ours, the room itself, a server.
    Outside,
}

/// An iq request to a meter, parsed by the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Where the answer goes.
    pub reply: ReplyTo,
    /// Who asked.
    pub origin: Origin,
    /// What was asked.
    pub query: Query,
}

/// What a request asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// disco#info, on a node if `node` is set.
    DiscoInfo {
        /// The `node` attribute.
        node: Option<String>,
    },
    /// An XEP-0323 `<req/>`.
    Read(ReadRequest),
    /// An XEP-0323 `<cancel/>`.
    Cancel {
        /// The request's sequence number.
        seqnr: u64,
    },
    /// Any other get or set (or a `<req/>` without a usable `seqnr`).
    Unsupported,
}

/// The parts of an XEP-0323 `<req/>` that decide whether a meter can answer it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadRequest {
    /// The requester's sequence number, echoed in every answer.
    pub seqnr: u64,
    /// Field types asked for, by their attribute names (`momentary`, `historicalDay`, `all`, …).
    pub types: Vec<String>,
    /// `nodeId`s asked for (empty: every node).
    pub nodes: Vec<String>,
    /// Field names asked for (empty: every field).
    pub fields: Vec<String>,
    /// A timed readout (`when`), which a meter does not queue.
    pub timed: bool,
}

/// The one node a gridmuc meter has (DESIGN.md: nothing in a reading identifies the house).
pub const NODE_ID: &str = gridmuc_core::codec::METER_NODE_ID;
/// The field with the interval's mean power, in W.
pub const FIELD_POWER: &str = gridmuc_core::codec::FIELD_POWER;
/// The field with the energy measured under the current nickname, in kWh.
pub const FIELD_ENERGY: &str = "Energy";
/// Field types a request may ask for without being refused: a meter has momentary values only.
const SUPPORTED_TYPES: [&str; 2] = ["momentary", "all"];
/// Readouts a meter answers per interval and nickname; more are refused (a flood costs the
/// requester its answers, not the house its upload).
pub const MAX_READOUTS_PER_INTERVAL: u32 = 10;
/// Requests accepted before the first measurement under a nickname and held until it.
pub const MAX_PENDING: usize = 8;

/// What a meter answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// disco#info: who we are and, if readout is on, the sensor-data feature.
    DiscoInfo {
        /// Where to.
        reply: ReplyTo,
        /// Whether to list `urn:xmpp:iot:sensordata`.
        sensordata: bool,
    },
    /// `<accepted/>` for a `<req/>`.
    Accepted {
        /// Where to.
        reply: ReplyTo,
        /// The request's seqnr.
        seqnr: u64,
    },
    /// `<fields done='true'/>` as a message to the requester's nickname.
    Fields {
        /// The requester.
        to: RoomNick,
        /// The request's seqnr.
        seqnr: u64,
        /// What to send.
        values: Momentary,
    },
    /// `<cancelled/>` for a `<cancel/>`.
    Cancelled {
        /// Where to.
        reply: ReplyTo,
        /// The request's seqnr.
        seqnr: u64,
    },
    /// `<rejected/>` (an iq error) for a `<req/>` or `<cancel/>` we will not carry out.
    Rejected {
        /// Where to.
        reply: ReplyTo,
        /// The request's seqnr.
        seqnr: u64,
        /// Why, for people.
        why: &'static str,
    },
    /// A plain `service-unavailable` iq error: what every entity answers for what it does not
    /// offer, so it says nothing about the house or the account.
    Unavailable {
        /// Where to.
        reply: ReplyTo,
    },
}

/// The values of a readout answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentary {
    /// The interval the values belong to.
    pub at: Timestamp,
    /// Mean power of that interval (negative: export).
    pub power: Watts,
    /// Net energy of the intervals measured under this nickname, in Wh.
    pub energy_wh: i64,
    /// Whether the request asked for each field.
    pub with_power: bool,
    /// …and for the energy.
    pub with_energy: bool,
}

/// A meter's readout rules for one nickname's lifetime: [`Responder::reset`] on every join.
#[derive(Clone, Debug)]
pub struct Responder {
    enabled: bool,
    interval: Millis,
    latest: Option<Reading>,
    /// Net energy measured under this nickname, in watt-milliseconds (exact for whole watts).
    energy_wms: i64,
    /// Readouts answered in the interval starting at the key's time.
    answered: (Timestamp, u32),
    /// Accepted before the first measurement: (requester, seqnr, power?, energy?).
    pending: VecDeque<(RoomNick, u64, bool, bool)>,
}

impl Responder {
    /// A responder that answers readouts if `enabled` (disco#info is always answered), with
    /// energy integrated over intervals of `interval`.
    pub fn new(enabled: bool, interval: Millis) -> Responder {
        Responder {
            enabled,
            interval: interval.max(1),
            latest: None,
            energy_wms: 0,
            answered: (Timestamp(0), 0),
            pending: VecDeque::new(),
        }
    }

    /// A new nickname: nothing measured under the old one may show under this one.
    pub fn reset(&mut self) {
        self.latest = None;
        self.energy_wms = 0;
        self.answered = (Timestamp(0), 0);
        self.pending.clear();
    }

    /// A reading was measured under the current nickname; answers requests waiting for one.
    pub fn measured(&mut self, now: Timestamp, reading: Reading, out: &mut Vec<Answer>) {
        self.energy_wms = self
            .energy_wms
            .saturating_add(reading.power.0.saturating_mul(self.interval));
        self.latest = Some(reading);
        for (to, seqnr, with_power, with_energy) in std::mem::take(&mut self.pending) {
            if let Some(values) = self.values(with_power, with_energy) {
                self.count(now);
                out.push(Answer::Fields { to, seqnr, values });
            }
        }
    }

    fn values(&self, with_power: bool, with_energy: bool) -> Option<Momentary> {
        self.latest.map(|r| Momentary {
            at: r.at,
            power: r.power,
            energy_wh: self.energy_wms / 3_600_000,
            with_power,
            with_energy,
        })
    }

    fn count(&mut self, now: Timestamp) {
        let slot = now.floor_to(self.interval);
        if self.answered.0 != slot {
            self.answered = (slot, 0);
        }
        self.answered.1 += 1;
    }

    fn flooding(&self, now: Timestamp) -> bool {
        self.answered.0 == now.floor_to(self.interval)
            && self.answered.1 >= MAX_READOUTS_PER_INTERVAL
    }

    /// Decides the answers to `req`, given whether we hold a nickname in the room.
    pub fn handle(&mut self, now: Timestamp, in_room: bool, req: Request, out: &mut Vec<Answer>) {
        let reply = req.reply;
        // Only an occupant, while we hold a nickname, is answered at all.
        let from = match (&req.origin, in_room) {
            (Origin::Occupant(from), true) => from.clone(),
            _ => {
                out.push(Answer::Unavailable { reply });
                return;
            }
        };
        match req.query {
            Query::DiscoInfo { node: None } => out.push(Answer::DiscoInfo {
                reply,
                sensordata: self.enabled,
            }),
            Query::DiscoInfo { node: Some(_) } | Query::Unsupported => {
                out.push(Answer::Unavailable { reply })
            }
            _ if !self.enabled => out.push(Answer::Unavailable { reply }),
            Query::Cancel { seqnr } => {
                let before = self.pending.len();
                self.pending
                    .retain(|(n, s, ..)| !(*n == from && *s == seqnr));
                out.push(if self.pending.len() < before {
                    Answer::Cancelled { reply, seqnr }
                } else {
                    Answer::Rejected {
                        reply,
                        seqnr,
                        why: "no such readout in progress",
                    }
                });
            }
            Query::Read(r) => self.read(now, reply, from, r, out),
        }
    }

    fn read(
        &mut self,
        now: Timestamp,
        reply: ReplyTo,
        from: RoomNick,
        r: ReadRequest,
        out: &mut Vec<Answer>,
    ) {
        let seqnr = r.seqnr;
        let with_power = r.fields.is_empty() || r.fields.iter().any(|f| f == FIELD_POWER);
        let with_energy = r.fields.is_empty() || r.fields.iter().any(|f| f == FIELD_ENERGY);
        let why = if r.timed {
            Some("timed readouts are not supported")
        } else if !r.types.is_empty() && !r.types.iter().any(|t| SUPPORTED_TYPES.contains(&&**t)) {
            Some("only momentary values are available")
        } else if !r.nodes.is_empty() && !r.nodes.iter().any(|n| n == NODE_ID) {
            Some("no such node")
        } else if !with_power && !with_energy {
            Some("no such field (Power in W, Energy in kWh)")
        } else if self.flooding(now) {
            Some("too many readouts this interval")
        } else if self.latest.is_none() && self.pending.len() >= MAX_PENDING {
            Some("too many readouts waiting for the first measurement")
        } else {
            None
        };
        if let Some(why) = why {
            out.push(Answer::Rejected { reply, seqnr, why });
            return;
        }
        out.push(Answer::Accepted { reply, seqnr });
        match self.values(with_power, with_energy) {
            Some(values) => {
                self.count(now);
                out.push(Answer::Fields {
                    to: from,
                    seqnr,
                    values,
                });
            }
            None => self
                .pending
                .push_back((from, seqnr, with_power, with_energy)),
        }
    }
}

/// What a polled device said, as the bot's driver parsed it.
#[derive(Clone, Debug, PartialEq)]
pub enum PollAnswer {
    /// `<accepted/>`: values will follow.
    Accepted,
    /// `<rejected/>` or any iq error (the device is not in the room, or refuses): why.
    Refused(String),
    /// A `<fields/>` message, decoded by the same codec as pushed readings.
    Fields {
        /// The reading, or why it was refused.
        reading: Result<Reading, Rejection>,
        /// `done='true'`: the readout is complete.
        done: bool,
    },
}

/// The bot's readout poll of configured devices: one `<req momentary='true'/>` each per
/// poll period, answers matched by nickname and seqnr, everything else ignored.
#[derive(Clone, Debug)]
pub struct Poller {
    devices: Vec<RoomNick>,
    period: Millis,
    timeout: Millis,
    next_at: Option<Timestamp>,
    next_seqnr: u64,
    /// Outstanding requests by (device, seqnr): when they expire.
    outstanding: BTreeMap<(RoomNick, u64), Timestamp>,
    /// Totals, for logs and tests.
    pub counts: PollCounts,
}

/// What polling has done so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollCounts {
    /// Requests sent.
    pub requested: u64,
    /// Readings handed to the aggregator (it may still refuse them).
    pub readings: u64,
    /// Requests a device refused, or that bounced (device not in the room).
    pub refused: u64,
    /// Requests nobody answered in time.
    pub unanswered: u64,
    /// Answers that matched no outstanding request (ignored).
    pub unsolicited: u64,
}

impl Poller {
    /// Polls `devices` every `period` (none if `period` is 0 or there are no devices); a request
    /// unanswered after `timeout` is given up. `seqnr_start` should be random.
    pub fn new(
        devices: Vec<RoomNick>,
        period: Millis,
        timeout: Millis,
        seqnr_start: u64,
    ) -> Poller {
        Poller {
            devices,
            period,
            timeout: timeout.max(1),
            next_at: None,
            next_seqnr: seqnr_start,
            outstanding: BTreeMap::new(),
            counts: PollCounts::default(),
        }
    }

    fn active(&self) -> bool {
        self.period > 0 && !self.devices.is_empty()
    }

    /// In the room from `now`: the first poll is one period later (aligned to it).
    pub fn start(&mut self, now: Timestamp) {
        if self.active() {
            self.next_at = Some(now.floor_to(self.period).plus(self.period));
        }
    }

    /// Out of the room: no polls, and nothing outstanding is answered any more.
    pub fn stop(&mut self) {
        self.next_at = None;
        self.outstanding.clear();
    }

    /// When [`Poller::poll`] is next due.
    pub fn deadline(&self) -> Option<Timestamp> {
        let expiry = self.outstanding.values().min().copied();
        match (self.next_at, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires what went unanswered and returns the requests due at `now`: (device, seqnr).
    pub fn poll(&mut self, now: Timestamp) -> Vec<(RoomNick, u64)> {
        let before = self.outstanding.len();
        self.outstanding.retain(|_, until| *until > now);
        self.counts.unanswered += (before - self.outstanding.len()) as u64;
        let Some(at) = self.next_at.filter(|at| *at <= now) else {
            return Vec::new();
        };
        self.next_at = Some(
            at.plus(self.period)
                .max(now.floor_to(self.period).plus(self.period)),
        );
        let mut due = Vec::new();
        for nick in &self.devices {
            // One request at a time per device: a slow device is not asked again meanwhile.
            if self.outstanding.keys().any(|(n, _)| n == nick) {
                continue;
            }
            let seqnr = self.next_seqnr;
            self.next_seqnr = self.next_seqnr.wrapping_add(1);
            self.outstanding
                .insert((nick.clone(), seqnr), now.plus(self.timeout));
            self.counts.requested += 1;
            due.push((nick.clone(), seqnr));
        }
        due
    }

    /// Whether `nick` has a request outstanding (its `<fields/>` messages are readout answers).
    pub fn awaits(&self, nick: &RoomNick) -> bool {
        self.outstanding.keys().any(|(n, _)| n == nick)
    }

    /// An answer from `from` for `seqnr`: the reading to ingest, if it brings one.
    pub fn answer(
        &mut self,
        from: &RoomNick,
        seqnr: u64,
        answer: PollAnswer,
    ) -> Option<Result<Reading, Rejection>> {
        let key = (from.clone(), seqnr);
        let Some(&expires) = self.outstanding.get(&key) else {
            self.counts.unsolicited += 1;
            return None;
        };
        match answer {
            PollAnswer::Accepted => None,
            PollAnswer::Refused(why) => {
                tracing::info!(device = %from, %why, "a polled device refused the readout");
                self.counts.refused += 1;
                self.outstanding.remove(&key);
                None
            }
            PollAnswer::Fields { reading, done } => {
                // A partial answer without power is no reading yet; anything else is one, and
                // one reading per request is all a device gets counted for.
                if !done && reading == Err(Rejection::NoPowerField) {
                    return None;
                }
                self.outstanding.remove(&key);
                self.counts.readings += 1;
                // A momentary readout is the moment we asked. The device's own stamp is not
                // trusted: its clock may be off, and slixmpp's devices write local time
                // without a zone.
                let asked = expires.plus(-self.timeout);
                Some(reading.map(|r| Reading { at: asked, ..r }))
            }
        }
    }
}
