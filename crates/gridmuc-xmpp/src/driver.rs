//! The one XMPP driver for every agent core.
//!
//! A core (`gridmuc_agent::Agent`) holds an agent's rules; this loop does what all agents
//! share, once: it `select!`s over shutdown, the session and the core's next timeout; turns
//! session events and room presences into [`RoomInput`]s (removal, a room that starts showing
//! JIDs, a session reset, a self-ping's answer that the room forgot us); carries out every
//! [`RoomTransmit`] (join with the privacy checks of our own presence, leave, ping, a fresh
//! session when one stalls); answers the pings an agent must answer. What differs between agents
//! (which messages mean what, how readings, verdicts and posts look on the wire, what the
//! caller is told) is a [`Wire`]: the only agent-specific code that touches XMPP.
//!
//! One task owns the [`Session`] (tokio-xmpp's `split()` can stall under load).

use crate::connect::{self, ConnectConfig};
use crate::muc::{self, JoinOutcome, MucError, PrivacyError, SessionEvent};
use crate::selfping::{self, SelfPing};
use crate::session::Session;
use crate::{instant_at, now_ts};
use futures::{FutureExt, StreamExt};
use gridmuc_agent::{Agent, PrivacyRefusal, RoomInput, RoomTransmit, SelfPresence};
use minidom::Element;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use tokio_xmpp::Stanza;
use tokio_xmpp::jid::{BareJid, FullJid};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::Message;
use xmpp_parsers::muc::user::MucUser;
use xmpp_parsers::presence::Presence;

/// Stanzas the session already holds that are read in one pass before the core's transmits
/// go out and its timers are looked at again.
const READY_BATCH: usize = 64;

/// An agent's XMPP side: what its messages mean, how its own transmits go on the wire, and
/// what its caller hears. Everything the agents share is in [`drive`].
pub(crate) trait Wire<A: Agent> {
    /// Why the agent's run ended badly.
    type Error: From<MucError> + From<connect::ConnectError> + Stall;

    /// What a message (not a presence, not an iq) means to the core.
    fn message_input(&mut self, core: &A, m: &Message) -> A::Input;

    /// What an iq means to the core: by default only that the session delivers.
    fn iq_input(&mut self, _core: &A, _iq: &Iq) -> A::Input {
        RoomInput::Alive.into()
    }

    /// Carries out one of the agent's own transmits (a reading, a verdict, a post, a
    /// measurement); an input to hand the core straight back, if the transmit produces one.
    fn transmit(
        &mut self,
        client: &mut Session,
        t: A::Transmit,
    ) -> impl Future<Output = Result<Option<A::Input>, Self::Error>>;

    /// Passes one of the core's events on to the caller.
    fn event(&mut self, e: A::Event);

    /// The core gave up: its reason as the caller's error.
    fn gave_up(&self, e: A::Error) -> Self::Error;

    /// How late a due timer may run behind input the session has already delivered: the bot
    /// reads what arrived before closing intervals, a meter sends on time.
    fn timer_lag(&self) -> Duration {
        Duration::ZERO
    }

    /// The driver replaced a stuck session (the bot counts these for `/metrics`).
    fn renewed(&mut self) {}

    /// Sees every stanza first (privacy audits in tests).
    fn saw(&mut self, _s: &Stanza) {}

    /// Once in the room (the bot's district uplink joins its own room here).
    fn after_join(
        &mut self,
        _client: &mut Session,
    ) -> impl Future<Output = Result<(), Self::Error>> {
        async { Ok(()) }
    }

    /// After timers fired (the district uplink sends what is due).
    fn after_timeout(
        &mut self,
        _client: &mut Session,
    ) -> impl Future<Output = Result<(), Self::Error>> {
        async { Ok(()) }
    }

    /// After a clean stop, before the session closes.
    fn on_stop(&mut self, _client: &mut Session) -> impl Future<Output = Result<(), Self::Error>> {
        async { Ok(()) }
    }
}

/// An error that may only mean the session is stuck: the driver then replaces the session
/// instead of giving up.
pub(crate) trait Stall {
    /// Whether this is [`MucError::Stalled`].
    fn is_stall(&self) -> bool;
}

/// Logs in, checks the room's settings first if `check_room` (meters do, before they publish
/// anything), runs `core` in `room` until it stops, and closes the session however it ended.
pub(crate) async fn run<A: Agent, W: Wire<A>>(
    core: &mut A,
    wire: &mut W,
    room: &BareJid,
    account: &ConnectConfig,
    check_room: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), W::Error> {
    let mut client = connect::connect(account).await?;
    let checked = match check_room {
        true => preflight(&mut client, room, account).await,
        false => Ok(()),
    };
    let result = match checked {
        Ok(()) => drive(core, wire, &mut client, room, account, shutdown).await,
        Err(e) => Err(e),
    };
    connect::close(client).await;
    result
}

/// Checks the room's privacy settings (disco#info), retrying a silent room on fresh sessions.
async fn preflight<E: From<MucError> + From<connect::ConnectError>>(
    client: &mut Session,
    room: &BareJid,
    account: &ConnectConfig,
) -> Result<(), E> {
    let mut retries = 0;
    while let Err(e) = muc::preflight(client, room, muc::answer_bound(account)).await {
        if !matches!(e, MucError::Timeout(..)) || retries == muc::FRESH_RETRIES {
            return Err(e.into());
        }
        retries += 1;
        tracing::warn!("no answer from the room; retrying on a fresh session");
        connect::renew(client, account).await?;
    }
    Ok(())
}

/// Runs `core` in `room` over `client` until it stops, shutdown resolving asks it to.
async fn drive<A: Agent, W: Wire<A>>(
    core: &mut A,
    wire: &mut W,
    client: &mut Session,
    room: &BareJid,
    account: &ConnectConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), W::Error> {
    let mut d = Driver {
        core,
        wire,
        room,
        account,
        self_ping: None,
        replies: Vec::new(),
    };
    d.run(client, shutdown).await
}

struct Driver<'a, A, W> {
    core: &'a mut A,
    wire: &'a mut W,
    room: &'a BareJid,
    account: &'a ConnectConfig,
    /// The self-ping whose answer we wait for, if the last probe was one.
    self_ping: Option<SelfPing>,
    /// Answers to pings, sent with the core's next transmits.
    replies: Vec<Iq>,
}

impl<A: Agent, W: Wire<A>> Driver<'_, A, W> {
    async fn run(
        &mut self,
        client: &mut Session,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), W::Error> {
        tokio::pin!(shutdown);
        let mut stopping = false;
        // One timer for the whole run, moved only when the core's next timeout moves: a fresh
        // timer per pass cost a timer-wheel insertion and removal for every stanza.
        let far = || Instant::now() + Duration::from_secs(3600);
        let timer = tokio::time::sleep_until(far());
        tokio::pin!(timer);
        let mut armed = None;
        loop {
            self.pump(client).await?;
            if let Some(outcome) = self.core.outcome() {
                return match outcome {
                    Ok(()) => self.wire.on_stop(client).await,
                    Err(e) => Err(self.wire.gave_up(e)),
                };
            }
            let due = self.core.poll_timeout();
            if due != armed {
                armed = due;
                timer.as_mut().reset(due.map_or_else(far, instant_at));
            }
            // A timer running later than the wire allows goes before pending input, so a
            // flood cannot hold it back for long.
            if Instant::now() > timer.deadline() + self.wire.timer_lag() {
                if !stopping && shutdown.as_mut().now_or_never().is_some() {
                    stopping = true;
                    self.handle(RoomInput::Shutdown);
                } else {
                    self.tick(client).await?;
                    armed = None;
                }
                continue;
            }
            tokio::select! {
                biased;
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    self.handle(RoomInput::Shutdown);
                }
                event = client.next() => {
                    self.on_event(client, event).await?;
                    // Whatever else the session already holds is read now, in one pass,
                    // rather than one trip through this loop (and a wake-up) per stanza.
                    for _ in 0..READY_BATCH {
                        match client.next().now_or_never() {
                            Some(event) => self.on_event(client, event).await?,
                            None => break,
                        }
                    }
                }
                () = &mut timer => {
                    self.tick(client).await?;
                    // Set again from the wall clock even if the core still wants the same
                    // time (it runs on wall-clock time, which may have been stepped).
                    armed = None;
                }
            }
        }
    }

    /// Hands one session event to the core.
    async fn on_event(
        &mut self,
        client: &mut Session,
        event: Option<tokio_xmpp::Event>,
    ) -> Result<(), W::Error> {
        match muc::session_event(event)? {
            SessionEvent::Restarted => {
                connect::announce(client).await.map_err(MucError::Send)?;
                self.handle(RoomInput::SessionReset);
            }
            SessionEvent::Resumed => self.handle(RoomInput::Alive),
            SessionEvent::Stanza(s) => self.on_stanza(client.bound_jid(), s),
        }
        Ok(())
    }

    fn handle(&mut self, input: impl Into<A::Input>) {
        self.core.handle(now_ts(), input.into());
    }

    /// Lets the core's due timers fire, carries out what they asked, then the wire's own.
    async fn tick(&mut self, client: &mut Session) -> Result<(), W::Error> {
        self.core.handle_timeout(now_ts());
        self.pump(client).await?;
        let done = self.wire.after_timeout(client).await;
        self.unless_stalled(client, done).await
    }

    /// Carries out everything the core asks for, then passes its events on (so a post is
    /// reported after it went out), until it has nothing more to say.
    async fn pump(&mut self, client: &mut Session) -> Result<(), W::Error> {
        for reply in std::mem::take(&mut self.replies) {
            let sent = muc::send(client, reply.into(), self.account.timeout).await;
            self.unless_stalled(client, sent.map_err(W::Error::from))
                .await?;
        }
        loop {
            let mut busy = false;
            while let Some(t) = self.core.poll_transmit() {
                busy = true;
                self.transmit(client, t).await?;
            }
            while let Some(e) = self.core.poll_event() {
                busy = true;
                self.wire.event(e);
            }
            if !busy {
                return Ok(());
            }
        }
    }

    async fn transmit(&mut self, client: &mut Session, t: A::Transmit) -> Result<(), W::Error> {
        let bound = self.account.timeout;
        let sent = match t.try_into() {
            Ok(RoomTransmit::Join(nick)) => return self.join(client, nick).await,
            Ok(RoomTransmit::Leave(nick)) => {
                match muc::leave(client, self.room, &nick, bound).await {
                    // Nothing left to replace a session for.
                    Err(MucError::Stalled(_)) if self.core.outcome().is_some() => Ok(()),
                    other => other.map_err(W::Error::from),
                }
            }
            Ok(RoomTransmit::Ping) => {
                // In the room, the probe is a self-ping (XEP-0410): its answer also says
                // whether the room still counts us. Out of it, the server answers.
                let probe = match self.core.nick() {
                    Some(nick) => Some(SelfPing::new(muc::occupant(self.room, nick)?)),
                    None => None,
                };
                let (probe, ping) = probe.unzip();
                self.self_ping = probe;
                let wait = connect::ping_bound(bound);
                match connect::send_ping(client, ping, Instant::now() + wait).await {
                    Some(_) => Ok(()),
                    None => Err(MucError::Stalled(wait).into()),
                }
            }
            Ok(RoomTransmit::RenewSession) => return self.renew(client).await,
            Err(own) => match self.wire.transmit(client, own).await {
                Ok(Some(input)) => {
                    self.core.handle(now_ts(), input);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
        };
        self.unless_stalled(client, sent).await
    }

    /// Passes on what went wrong, unless it was only a stuck session: that is replaced.
    async fn unless_stalled(
        &mut self,
        client: &mut Session,
        done: Result<(), W::Error>,
    ) -> Result<(), W::Error> {
        match done {
            Err(e) if e.is_stall() => {
                tracing::warn!("session stalled; replacing it and rejoining the room");
                self.renew(client).await
            }
            other => other,
        }
    }

    /// Replaces the session and tells the core, which rejoins.
    async fn renew(&mut self, client: &mut Session) -> Result<(), W::Error> {
        connect::renew(client, self.account).await?;
        self.wire.renewed();
        self.handle(RoomInput::SessionReset);
        Ok(())
    }

    /// One join attempt; the core judges our own presence. What arrives before it is handed
    /// to the core after it, and the caller hears that we joined before it hears of that.
    async fn join(
        &mut self,
        client: &mut Session,
        nick: gridmuc_core::RoomNick,
    ) -> Result<(), W::Error> {
        let mut early = Vec::new();
        let mut saw_jids = false;
        let answer = muc::answer_bound(self.account);
        let joined = join_watching(client, self.room, &nick, answer, &mut saw_jids, |s| {
            early.push(s);
        })
        .await;
        match joined {
            Ok(JoinOutcome::Joined(me)) => self.handle(RoomInput::Joined(me.judged(saw_jids))),
            Ok(JoinOutcome::Conflict) => self.handle(RoomInput::NickConflict),
            Err(MucError::Reconnected) => self.handle(RoomInput::SessionReset),
            Err(MucError::Stalled(_) | MucError::Timeout(..)) => {
                // The core asks again once the fresh session is up; a server too busy to
                // answer a join is waited for, never given up on.
                tracing::warn!("no answer to the join; retrying on a fresh session");
                return self.renew(client).await;
            }
            Err(MucError::StillJoined(_)) => {
                // A replaced session that ejabberd has not yet seen go: it lets the oldest of
                // an account's sessions stay, so wait (renew backs off) and ask again.
                tracing::warn!("the room still holds our previous session; retrying");
                return self.renew(client).await;
            }
            Err(e) => return Err(e.into()),
        }
        while let Some(e) = self.core.poll_event() {
            self.wire.event(e);
        }
        let bound = client.bound_jid().cloned();
        for s in early {
            self.on_stanza(bound.as_ref(), s);
        }
        if self.core.nick().is_none() {
            return Ok(());
        }
        let done = self.wire.after_join(client).await;
        self.unless_stalled(client, done).await
    }

    /// Turns a stanza into the core's input: presences and iqs here, messages by the wire.
    fn on_stanza(&mut self, own: Option<&FullJid>, stanza: Stanza) {
        self.wire.saw(&stanza);
        let input = match stanza {
            Stanza::Message(m) => self.wire.message_input(self.core, &m),
            Stanza::Presence(p) => room_presence(&p, self.room, self.core.nick(), own).into(),
            Stanza::Iq(iq) => match self.self_ping.as_ref().and_then(|p| p.answer(&iq)) {
                Some(says) => {
                    self.self_ping = None;
                    says.into()
                }
                None => match selfping::answer_ping(&iq, self.room, self.core.nick()) {
                    Some(reply) => {
                        self.replies.push(reply);
                        RoomInput::Alive.into()
                    }
                    None => self.wire.iq_input(self.core, &iq),
                },
            },
        };
        self.core.handle(now_ts(), input);
    }
}

/// One join attempt that also watches the room's presences while it waits: `saw_jids` is set
/// if any shows a real JID other than our own (the room is non-anonymous to us); every stanza
/// before our own presence goes to `early`.
pub(crate) async fn join_watching(
    client: &mut Session,
    room: &BareJid,
    nick: &gridmuc_core::RoomNick,
    answer: Duration,
    saw_jids: &mut bool,
    mut early: impl FnMut(Stanza),
) -> Result<JoinOutcome, MucError> {
    let own = client.bound_jid().cloned();
    muc::join(client, room, nick, answer, |s| {
        if let Stanza::Presence(p) = &s
            && from_room(p, room)
        {
            *saw_jids |= presence_reveals_jid(&p.payloads, own.as_ref());
        }
        early(s);
    })
    .await
}

impl muc::SelfPresence {
    /// What the core judges: our own presence, plus whether any presence during the join
    /// showed a JID not our own.
    pub(crate) fn judged(&self, saw_jids: bool) -> SelfPresence {
        SelfPresence {
            privileged: self.is_privileged().then(|| {
                (
                    format!("{:?}", self.role).to_lowercase(),
                    format!("{:?}", self.affiliation).to_lowercase(),
                )
            }),
            non_anonymous: self.non_anonymous || saw_jids,
            occupant_id: self.occupant_id,
            created: self.created,
        }
    }
}

/// Why a core gave up, as the room error its callers know.
pub(crate) trait RoomRefusal {
    /// The error, naming the room.
    fn in_room(self, room: &BareJid) -> MucError;
}

impl RoomRefusal for PrivacyRefusal {
    fn in_room(self, room: &BareJid) -> MucError {
        PrivacyError::refused(room, self).into()
    }
}

impl RoomRefusal for gridmuc_agent::MeterCoreError {
    fn in_room(self, room: &BareJid) -> MucError {
        match self {
            gridmuc_agent::MeterCoreError::NoFreeNick(n) => MucError::NoFreeNick(n),
            gridmuc_agent::MeterCoreError::Privacy(why) => why.in_room(room),
        }
    }
}

impl PrivacyError {
    /// A core's privacy refusal, naming the room it refused.
    pub(crate) fn refused(room: &BareJid, why: PrivacyRefusal) -> PrivacyError {
        let name = room.to_string();
        match why {
            PrivacyRefusal::Privileged { role, affiliation } => PrivacyError::Privileged {
                room: name,
                role,
                affiliation,
            },
            PrivacyRefusal::NonAnonymous => PrivacyError::NonAnonymous(name),
            PrivacyRefusal::OccupantId => PrivacyError::OccupantId(name),
            PrivacyRefusal::NoSuchRoom => PrivacyError::NoSuchRoom(name),
        }
    }
}

/// What a presence means to any agent holding `nick`: [`RoomInput::Removed`] if the room says
/// we were removed, [`RoomInput::RoomShowsJids`] if it shows a real JID (the room changed under
/// us: made non-anonymous, or us a moderator), else [`RoomInput::Alive`].
///
/// Only the room speaks for the room: any account can send us a presence carrying a `muc#user`
/// item with someone's JID, and such a presence is ignored.
fn room_presence(
    p: &Presence,
    room: &BareJid,
    nick: Option<&gridmuc_core::RoomNick>,
    own: Option<&FullJid>,
) -> RoomInput {
    if !from_room(p, room) {
        tracing::debug!("ignored a presence that does not come from the room");
        return RoomInput::Alive;
    }
    if presence_reveals_jid(&p.payloads, own) {
        return RoomInput::RoomShowsJids;
    }
    let from = muc::nick_in_room(p.from.as_ref(), room);
    if nick.is_some() && from.as_ref() == nick && muc::removed(p) {
        RoomInput::Removed
    } else {
        RoomInput::Alive
    }
}

/// Whether a presence comes from the room itself or one of its occupants.
fn from_room(p: &Presence, room: &BareJid) -> bool {
    p.from.as_ref().is_some_and(|f| f.to_bare() == *room)
}

/// Whether a presence's `muc#user` items show a real JID other than our own, i.e. whether
/// the room is non-anonymous.
///
/// Our own JID alone is what Prosody shows an account that is in the room twice under one
/// nickname (a replaced session that has not gone yet, on a busy server); it says nothing
/// about a house, and a non-anonymous room still says so with status code 100.
fn presence_reveals_jid(payloads: &[Element], own: Option<&FullJid>) -> bool {
    let own = own.map(|o| o.to_bare());
    payloads
        .iter()
        .filter_map(|e| MucUser::try_from(e.clone()).ok())
        .any(|u| {
            u.items
                .iter()
                .filter_map(|i| i.jid.as_ref())
                .any(|j| own.as_ref() != Some(&j.to_bare()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmuc_core::RoomNick;

    fn item_with(jid: &str) -> Vec<Element> {
        let x = format!(
            "<x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='none' role='participant' jid='{jid}'/></x>"
        );
        vec![x.parse().unwrap()]
    }

    #[test]
    fn only_the_room_can_say_it_shows_jids_or_removed_us() {
        let room = BareJid::new("hood@rooms.grid.test").unwrap();
        let nick = RoomNick::new("substation").unwrap();
        let own = FullJid::new("bot@grid.test/r").unwrap();
        let spoof = |from: &str| {
            let xml = format!(
                "<presence xmlns='jabber:client' from='{from}' to='bot@grid.test/r'>\
                 <x xmlns='http://jabber.org/protocol/muc#user'>\
                 <item affiliation='none' role='participant' jid='house-999@grid.test/x'/></x></presence>"
            );
            xmpp_parsers::presence::Presence::try_from(xml.parse::<Element>().unwrap()).unwrap()
        };
        // Any account may send this; from outside the room it says nothing.
        assert!(matches!(
            room_presence(
                &spoof("house-999@grid.test/x"),
                &room,
                Some(&nick),
                Some(&own)
            ),
            RoomInput::Alive
        ));
        assert!(matches!(
            room_presence(
                &spoof("other@rooms.grid.test/substation"),
                &room,
                Some(&nick),
                Some(&own)
            ),
            RoomInput::Alive
        ));
        // From the room it means the room shows real JIDs: stop.
        assert_eq!(
            room_presence(
                &spoof("hood@rooms.grid.test/amber-otter-1"),
                &room,
                Some(&nick),
                Some(&own)
            ),
            RoomInput::RoomShowsJids
        );
    }

    #[test]
    fn only_a_jid_other_than_our_own_reveals_anything() {
        let own = FullJid::new("bot@grid.test/new").unwrap();
        // A second session of our own account under our nickname.
        assert!(!presence_reveals_jid(
            &item_with("bot@grid.test/old"),
            Some(&own)
        ));
        assert!(presence_reveals_jid(
            &item_with("house7@homes.test/meter"),
            Some(&own)
        ));
        // Before we know who we are, any JID counts.
        assert!(presence_reveals_jid(&item_with("bot@grid.test/old"), None));
        let anonymous: Vec<Element> = vec![
            "<x xmlns='http://jabber.org/protocol/muc#user'>\
             <item affiliation='none' role='participant'/></x>"
                .parse()
                .unwrap(),
        ];
        assert!(!presence_reveals_jid(&anonymous, Some(&own)));
    }
}
