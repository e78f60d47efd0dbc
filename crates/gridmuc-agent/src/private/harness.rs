//! An in-memory room for the private-mode cores on a virtual clock: meters, the leader, the
//! helper and a hostile occupant, with PMs through the room, groupchat to every occupant, a
//! bounce when nobody holds a nickname, lost messages, and restarts. It reuses the plain
//! harness's clock origin ([`EPOCH`]) and fault model ([`Faults`]); its room is smaller
//! because all three cores speak one [`Input`]/[`Transmit`].

use super::{
    HelperConfig, HelperCore, HelperEvent, Input, LeaderConfig, LeaderCore, LeaderEvent,
    PrivateMeterConfig, PrivateMeterCore, PrivateMeterEvent, To, Transmit,
};
pub use crate::harness::{EPOCH, Faults};
use crate::room::{Agent, RoomInput, RoomTransmit, SelfPresence};
use gridmuc_core::{Millis, RoomNick, Timestamp, Watts};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::collections::BTreeMap;

/// Who holds a nickname or sends a stanza.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Who {
    /// Meter `i` of [`PrivateWorld::meters`].
    Meter(usize),
    /// The leader.
    Leader,
    /// The helper.
    Helper,
    /// A hostile occupant driven by the test.
    Hostile,
}

/// A core and what the test looks at afterwards.
pub struct Node<C: Agent> {
    /// The core (its latest incarnation).
    pub core: C,
    /// What it told its caller, over every incarnation.
    pub events: Vec<C::Event>,
    /// What it transmitted, with the time.
    pub transmits: Vec<(Timestamp, Transmit)>,
    session: u64,
    running: bool,
    /// The session delivers nothing (its sends still go out) until it is replaced.
    stalled: bool,
}

impl<C: Agent> Node<C> {
    fn new(core: C) -> Self {
        Node {
            core,
            events: Vec::new(),
            transmits: Vec::new(),
            session: 0,
            running: true,
            stalled: false,
        }
    }
}

/// A meter, and which house's load it measures (Sybils share a house).
pub struct MeterNode {
    /// The node.
    pub node: Node<PrivateMeterCore<StdRng>>,
    /// The house whose load it reports.
    pub house: usize,
    /// What it last saved of its pending reports: survives [`PrivateWorld::restart_meter`].
    pub saved: Vec<Vec<u8>>,
}

/// A message on its way.
#[derive(Clone, Debug)]
enum Delivery {
    AtRoom {
        from: Who,
        session: u64,
        t: Transmit,
    },
    To {
        who: Who,
        session: u64,
        input: Input,
    },
}

/// The load of `house` in `interval`, or `None` if it does not report then.
pub type Loads = Box<dyn Fn(usize, u64) -> Option<u32>>;

/// The room, the clock and every party.
pub struct PrivateWorld {
    /// The meters.
    pub meters: Vec<MeterNode>,
    /// The leader.
    pub leader: Node<LeaderCore<StdRng>>,
    /// The helper.
    pub helper: Node<HelperCore<StdRng>>,
    /// One-way delay of every hop.
    pub latency: Millis,
    /// Message faults (payload messages only).
    pub faults: Faults,
    /// How long replacing a session takes (a slow reconnect leaves a meter out of the room
    /// across an interval's end).
    pub renew_delay: Millis,
    /// What each house reads in each interval.
    pub loads: Loads,
    /// Payloads that reached the hostile occupant: (from, bytes).
    pub hostile_inbox: Vec<(RoomNick, Vec<u8>)>,
    /// Groupchat bodies, as the room saw them.
    pub room_log: Vec<(Timestamp, String)>,
    /// Messages operators received: (operator, body).
    pub operator_inbox: Vec<(String, String)>,
    leader_cfg: LeaderConfig,
    helper_cfg: HelperConfig,
    meter_cfg: PrivateMeterConfig,
    occupants: BTreeMap<RoomNick, (Who, u64)>,
    queue: BTreeMap<(Timestamp, u64), Delivery>,
    seq: u64,
    rng: StdRng,
    now: Timestamp,
    seed: u64,
}

/// Steps before a world is declared stuck.
const MAX_STEPS: u64 = 2_000_000;

impl PrivateWorld {
    /// The leader, the helper and `houses` meters (one per house), 20 ms per hop.
    pub fn new(
        seed: u64,
        houses: usize,
        meter: PrivateMeterConfig,
        leader: LeaderConfig,
        helper: HelperConfig,
        loads: Loads,
    ) -> PrivateWorld {
        let mut w = PrivateWorld {
            meters: Vec::new(),
            leader: Node::new(
                LeaderCore::new(leader.clone(), StdRng::seed_from_u64(seed ^ 0x1ead), EPOCH)
                    .expect("the leader's key is the configured one"),
            ),
            helper: Node::new(HelperCore::new(
                helper.clone(),
                StdRng::seed_from_u64(seed ^ 0x4e1),
                EPOCH,
            )),
            latency: 20,
            faults: Faults::default(),
            renew_delay: 1_000,
            loads,
            hostile_inbox: Vec::new(),
            room_log: Vec::new(),
            operator_inbox: Vec::new(),
            leader_cfg: leader,
            helper_cfg: helper,
            meter_cfg: meter,
            occupants: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
            now: EPOCH,
            seed,
        };
        for house in 0..houses {
            w.add_meter(house);
        }
        w
    }

    /// Another meter reporting `house`'s load (a Sybil if the house has one already).
    pub fn add_meter(&mut self, house: usize) -> usize {
        let i = self.meters.len();
        let rng = StdRng::seed_from_u64(self.seed.wrapping_mul(1_000).wrapping_add(i as u64 + 1));
        self.meters.push(MeterNode {
            node: Node::new(PrivateMeterCore::new(self.meter_cfg.clone(), rng, self.now)),
            house,
            saved: Vec::new(),
        });
        i
    }

    /// The virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Who holds `nick`.
    pub fn occupant(&self, nick: &RoomNick) -> Option<Who> {
        self.occupants.get(nick).map(|o| o.0)
    }

    /// The hostile occupant takes `nick` if free; `false` if someone holds it.
    pub fn hostile_join(&mut self, nick: RoomNick) -> bool {
        if self.occupants.contains_key(&nick) {
            return false;
        }
        self.occupants.insert(nick, (Who::Hostile, 0));
        true
    }

    /// The hostile occupant sends `bytes` as `from` (it must hold it) to `to`, or to the room.
    pub fn hostile_send(&mut self, from: RoomNick, to: Option<RoomNick>, bytes: Vec<u8>) {
        if self.occupant(&from) != Some(Who::Hostile) {
            self.hostile_join(from.clone());
        }
        let targets: Vec<(Who, u64)> = match to {
            Some(n) => self.occupants.get(&n).copied().into_iter().collect(),
            None => self.occupants.values().copied().collect(),
        };
        let at = self.now.plus(2 * self.latency);
        for (who, session) in targets {
            let input = Input::Payload {
                from: from.clone(),
                bytes: bytes.clone(),
            };
            self.tell(at, who, session, input);
        }
    }

    /// The leader process is killed (nothing published on the way out) and a new one,
    /// with the same keys and verify key, starts after `down`.
    pub fn restart_leader(&mut self, down: Millis) {
        self.leader.running = false;
        self.bump_session(Who::Leader);
        self.occupants.retain(|_, o| o.0 != Who::Leader);
        self.run_for(down);
        let rng = StdRng::seed_from_u64(self.seed ^ self.leader.session ^ 0x1ead);
        self.leader.core = LeaderCore::new(self.leader_cfg.clone(), rng, self.now)
            .expect("the leader's key is the configured one");
        self.leader.running = true;
    }

    /// Meter `i`'s process is killed outright (a crash, a power cut; its nickname leaves with
    /// its connection) and a new one starts after `down` with only what the old one saved
    /// ([`Transmit::SaveReports`]), if its config saves anything.
    pub fn restart_meter(&mut self, i: usize, down: Millis) {
        self.meters[i].node.running = false;
        self.bump_session(Who::Meter(i));
        self.occupants.retain(|_, o| o.0 != Who::Meter(i));
        self.run_for(down);
        let rng = StdRng::seed_from_u64(self.seed ^ self.meters[i].node.session ^ 0x3e7e);
        let mut core = PrivateMeterCore::new(self.meter_cfg.clone(), rng, self.now);
        core.restore(self.meters[i].saved.clone());
        let m = &mut self.meters[i];
        m.node.core = core;
        m.node.running = true;
    }

    /// The helper process is killed and a new one starts after `down`.
    pub fn restart_helper(&mut self, down: Millis) {
        self.helper.running = false;
        self.bump_session(Who::Helper);
        self.occupants.retain(|_, o| o.0 != Who::Helper);
        self.run_for(down);
        let rng = StdRng::seed_from_u64(self.seed ^ self.helper.session ^ 0x4e1);
        self.helper.core = HelperCore::new(self.helper_cfg.clone(), rng, self.now);
        self.helper.running = true;
    }

    /// The room removes `who` (a kick): its nicknames are free again and it is told so.
    pub fn kick(&mut self, who: Who) {
        let Some(session) = self.session_of(who) else {
            return;
        };
        self.occupants.retain(|_, o| o.0 != who);
        let at = self.now.plus(self.latency);
        self.tell(at, who, session, Input::Room(RoomInput::Removed));
    }

    /// The room forgets `who` without telling it (its room restarted on another cluster
    /// node, say): the session is fine, but the room no longer counts it as an occupant.
    pub fn forget(&mut self, who: Who) {
        self.occupants.retain(|_, o| o.0 != who);
    }

    /// Whether `who`'s core believes it holds a nickname.
    fn holds_nick(&self, who: Who) -> bool {
        match who {
            Who::Meter(i) => self.meters[i].node.core.nick().is_some(),
            Who::Leader => self.leader.core.nick().is_some(),
            Who::Helper => self.helper.core.nick().is_some(),
            Who::Hostile => false,
        }
    }

    /// `who`'s session stops delivering (its sends still go out) until the core replaces it.
    pub fn stall(&mut self, who: Who) {
        if let Some(stalled) = self.stalled_mut(who) {
            *stalled = true;
        }
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Millis) {
        let end = self.now.plus(d);
        let mut steps = 0u64;
        loop {
            self.pump();
            let delivery = self.queue.keys().next().map(|k| k.0);
            let timers = self
                .meters
                .iter()
                .filter(|m| m.node.running)
                .filter_map(|m| m.node.core.poll_timeout())
                .chain(
                    self.leader
                        .running
                        .then(|| self.leader.core.poll_timeout())
                        .flatten(),
                )
                .chain(
                    self.helper
                        .running
                        .then(|| self.helper.core.poll_timeout())
                        .flatten(),
                )
                .min();
            match [delivery, timers].into_iter().flatten().min() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.step();
                }
                _ => break,
            }
            steps += 1;
            assert!(
                steps < MAX_STEPS,
                "the world does not settle at {}",
                self.now
            );
        }
        self.now = self.now.max(end);
    }

    fn step(&mut self) {
        let now = self.now;
        if let Some(entry) = self.queue.first_entry()
            && entry.key().0 <= now
        {
            let d = entry.remove();
            self.deliver(d);
            return;
        }
        for m in self.meters.iter_mut().filter(|m| m.node.running) {
            if m.node.core.poll_timeout().is_some_and(|t| t <= now) {
                m.node.core.handle_timeout(now);
            }
        }
        if self.leader.running && self.leader.core.poll_timeout().is_some_and(|t| t <= now) {
            self.leader.core.handle_timeout(now);
        }
        if self.helper.running && self.helper.core.poll_timeout().is_some_and(|t| t <= now) {
            self.helper.core.handle_timeout(now);
        }
    }

    /// Moves every core's transmits into the room and its events into its node.
    fn pump(&mut self) {
        loop {
            let mut out: Vec<(Who, u64, Transmit)> = Vec::new();
            for (i, m) in self.meters.iter_mut().enumerate() {
                if m.node.running {
                    drain(&mut m.node, Who::Meter(i), self.now, &mut out);
                }
            }
            if self.leader.running {
                drain(&mut self.leader, Who::Leader, self.now, &mut out);
            }
            if self.helper.running {
                drain(&mut self.helper, Who::Helper, self.now, &mut out);
            }
            if out.is_empty() {
                return;
            }
            for (who, session, t) in out {
                self.transmit(who, session, t);
            }
        }
    }

    fn transmit(&mut self, who: Who, session: u64, t: Transmit) {
        let at = self.now.plus(self.latency);
        match t {
            Transmit::Measure { slot } => {
                let Who::Meter(i) = who else { return };
                let interval =
                    super::interval_of(slot, super::interval_millis(&self.meter_cfg.private));
                let value =
                    (self.loads)(self.meters[i].house, interval).map(|w| Watts(i64::from(w)));
                self.meters[i]
                    .node
                    .core
                    .handle(self.now, Input::Measured { slot, value });
            }
            Transmit::Room(RoomTransmit::RenewSession) => {
                let session = self.bump_session(who);
                self.occupants.retain(|_, o| o.0 != who);
                let at = self.now.plus(self.renew_delay);
                self.tell(at, who, session, Input::Room(RoomInput::SessionReset));
            }
            // The meter's own disk, whatever the room does.
            Transmit::SaveReports(reports) => {
                if let Who::Meter(i) = who {
                    self.meters[i].saved = reports;
                }
            }
            t @ Transmit::Send { .. } => self.message(
                at,
                Delivery::AtRoom {
                    from: who,
                    session,
                    t,
                },
            ),
            t => self.schedule(
                at,
                Delivery::AtRoom {
                    from: who,
                    session,
                    t,
                },
            ),
        }
    }

    /// The stall flag of `who`'s session.
    fn stalled_mut(&mut self, who: Who) -> Option<&mut bool> {
        match who {
            Who::Meter(i) => Some(&mut self.meters[i].node.stalled),
            Who::Leader => Some(&mut self.leader.stalled),
            Who::Helper => Some(&mut self.helper.stalled),
            Who::Hostile => None,
        }
    }

    /// A fresh session for `who`: delivering again, and the old one's traffic is dropped.
    fn bump_session(&mut self, who: Who) -> u64 {
        if let Some(stalled) = self.stalled_mut(who) {
            *stalled = false;
        }
        let s = match who {
            Who::Meter(i) => &mut self.meters[i].node.session,
            Who::Leader => &mut self.leader.session,
            Who::Helper => &mut self.helper.session,
            Who::Hostile => return 0,
        };
        *s += 1;
        *s
    }

    fn session_of(&self, who: Who) -> Option<u64> {
        match who {
            Who::Meter(i) => {
                let node = &self.meters[i].node;
                node.running.then_some(node.session)
            }
            Who::Leader => self.leader.running.then_some(self.leader.session),
            Who::Helper => self.helper.running.then_some(self.helper.session),
            Who::Hostile => Some(0),
        }
    }

    fn deliver(&mut self, d: Delivery) {
        match d {
            Delivery::AtRoom { from, session, t } => {
                if self.session_of(from) == Some(session) {
                    self.at_room(from, session, t);
                }
            }
            Delivery::To {
                who,
                session,
                input,
            } => {
                if self.session_of(who) != Some(session)
                    || self.stalled_mut(who).is_some_and(|s| *s)
                {
                    return;
                }
                let now = self.now;
                match who {
                    Who::Meter(i) => self.meters[i].node.core.handle(now, input),
                    Who::Leader => self.leader.core.handle(now, input),
                    Who::Helper => self.helper.core.handle(now, input),
                    Who::Hostile => {
                        if let Input::Payload { from, bytes } = input {
                            self.hostile_inbox.push((from, bytes));
                        }
                    }
                }
            }
        }
    }

    /// The room handles one stanza.
    fn at_room(&mut self, from: Who, session: u64, t: Transmit) {
        let hop = self.now.plus(self.latency);
        let reply = |input| Delivery::To {
            who: from,
            session,
            input,
        };
        let sender = self
            .occupants
            .iter()
            .find(|(_, o)| **o == (from, session))
            .map(|(n, _)| n.clone());
        match t {
            Transmit::Room(RoomTransmit::Join(nick)) => {
                let input = match self.occupants.entry(nick) {
                    std::collections::btree_map::Entry::Occupied(_) => RoomInput::NickConflict,
                    std::collections::btree_map::Entry::Vacant(v) => {
                        v.insert((from, session));
                        RoomInput::Joined(SelfPresence::default())
                    }
                };
                self.schedule(hop, reply(Input::Room(input)));
            }
            Transmit::Room(RoomTransmit::Leave(nick)) => {
                if self.occupants.get(&nick) == Some(&(from, session)) {
                    self.occupants.remove(&nick);
                }
            }
            Transmit::Room(RoomTransmit::Ping) => {
                let answer = crate::harness::probe_answer(sender.is_some(), self.holds_nick(from));
                self.schedule(hop, reply(Input::Room(answer)));
            }
            Transmit::Room(RoomTransmit::RenewSession)
            | Transmit::Measure { .. }
            | Transmit::SaveReports(_) => {}
            Transmit::Send {
                to: To::Operator(op),
                body,
                ..
            } => {
                self.operator_inbox.push((op, body.unwrap_or_default()));
            }
            Transmit::Send {
                to, body, payload, ..
            } => {
                let bounced = |n: &RoomNick, why: &str| Input::Bounced {
                    to: n.clone(),
                    why: why.to_owned(),
                };
                let Some(nick) = sender else {
                    // Not an occupant: the room refuses the message.
                    if let To::Nick(n) = &to {
                        let input = bounced(n, crate::room::NOT_AN_OCCUPANT);
                        self.schedule(hop, reply(input));
                    }
                    return;
                };
                let targets: Vec<(Who, u64)> = match &to {
                    To::Nick(n) => match self.occupants.get(n) {
                        Some(o) => vec![*o],
                        None => {
                            let input = bounced(n, "item-not-found");
                            self.schedule(hop, reply(input));
                            return;
                        }
                    },
                    _ => {
                        if let Some(b) = body {
                            self.room_log.push((self.now, b));
                        }
                        self.occupants.values().copied().collect()
                    }
                };
                let Some(bytes) = payload else { return };
                for (who, s) in targets {
                    let input = Input::Payload {
                        from: nick.clone(),
                        bytes: bytes.clone(),
                    };
                    self.message(
                        hop,
                        Delivery::To {
                            who,
                            session: s,
                            input,
                        },
                    );
                }
            }
        }
    }

    fn message(&mut self, at: Timestamp, d: Delivery) {
        for t in self.faults.arrivals(&mut self.rng, at) {
            self.schedule(t, d.clone());
        }
    }

    /// `input` reaches `who`'s session `session` at `at`, past the fault model.
    fn tell(&mut self, at: Timestamp, who: Who, session: u64, input: Input) {
        self.schedule(
            at,
            Delivery::To {
                who,
                session,
                input,
            },
        );
    }

    fn schedule(&mut self, at: Timestamp, d: Delivery) {
        self.seq += 1;
        self.queue.insert((at, self.seq), d);
    }

    /// Every meter event, with the meter's index.
    pub fn meter_events(&self) -> impl Iterator<Item = (usize, &PrivateMeterEvent)> {
        self.meters
            .iter()
            .enumerate()
            .flat_map(|(i, m)| m.node.events.iter().map(move |e| (i, e)))
    }

    /// The leader's events.
    pub fn leader_events(&self) -> &[LeaderEvent] {
        &self.leader.events
    }

    /// The helper's events.
    pub fn helper_events(&self) -> &[HelperEvent] {
        &self.helper.events
    }
}

fn drain<C: Agent<Transmit = Transmit>>(
    node: &mut Node<C>,
    who: Who,
    now: Timestamp,
    out: &mut Vec<(Who, u64, Transmit)>,
) {
    while let Some(e) = node.core.poll_event() {
        node.events.push(e);
    }
    while let Some(t) = node.core.poll_transmit() {
        node.transmits.push((now, t.clone()));
        out.push((who, node.session, t));
    }
}
