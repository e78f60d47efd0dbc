//! The room, as both agents need it: privacy preflight, join with conflict detection, leave.
//!
//! Everything here runs on the task that owns the [`Session`]; while waiting for an answer it
//! keeps polling the client so tokio-xmpp's internal queue never fills up.

use crate::session::Session;
use futures::StreamExt;
use gridmuc_core::RoomNick;
use minidom::Element;
use std::time::Duration;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use tokio_xmpp::{Event, Stanza};
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::muc::user::{Affiliation, MucUser, Role, Status};
use xmpp_parsers::muc::{Muc, muc::History};
use xmpp_parsers::presence::{Presence, Type as PresenceType};
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

/// XEP-0421 namespace; a room that adds it links every nickname of one account.
pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
/// disco#info feature of a room that shows real JIDs to every occupant.
pub const FEATURE_NON_ANONYMOUS: &str = "muc_nonanonymous";
/// disco#info feature of a room that shows real JIDs to moderators only: what we require.
pub const FEATURE_SEMI_ANONYMOUS: &str = "muc_semianonymous";
/// XEP-0313 message archive namespaces (`urn:xmpp:mam:0`…`:2`): a room that keeps every
/// reading for anyone to page through later.
pub const NS_MAM_PREFIX: &str = "urn:xmpp:mam:";

/// Why we will not publish into (or run in) a room; each says what to change.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// The room shows real JIDs to all occupants.
    #[error(
        "room {0} is non-anonymous (muc_nonanonymous): every occupant would see this house's real JID; refusing"
    )]
    NonAnonymous(String),
    /// The room tags occupants with XEP-0421 occupant-id.
    #[error(
        "room {0} advertises occupant-id ({NS_OCCUPANT_ID}): rotated nicknames would be linkable; refusing"
    )]
    OccupantId(String),
    /// The room archives its messages (XEP-0313), so readings outlive their interval.
    #[error(
        "room {0} archives messages ({NS_MAM_PREFIX}*): every reading would be kept for later readers; refusing"
    )]
    Archived(String),
    /// The room does not say it is semi-anonymous.
    #[error("room {0} does not advertise muc_semianonymous; refusing to publish")]
    NotSemiAnonymous(String),
    /// The room does not exist: joining would create it and make us its owner.
    #[error("room {0} does not exist (joining would create it with us as owner); refusing")]
    NoSuchRoom(String),
    /// The self-presence gives us moderator or owner/admin powers: we would see real JIDs.
    #[error(
        "joined {room} as role={role}, affiliation={affiliation}: a privileged occupant sees real JIDs; refusing to run"
    )]
    Privileged {
        /// The room.
        room: String,
        /// Our role.
        role: String,
        /// Our affiliation.
        affiliation: String,
    },
}

/// Failures while talking to the room.
#[derive(Debug, thiserror::Error)]
pub enum MucError {
    /// The room failed a privacy check.
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    /// The server answered with an error other than a nickname conflict.
    #[error("room {room} refused: {condition}")]
    Refused {
        /// The room.
        room: String,
        /// The stanza error condition.
        condition: String,
    },
    /// No answer in time.
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    /// The session ended underneath us.
    #[error("XMPP session ended")]
    SessionEnded,
    /// The session reconnected without resumption while we waited; the caller starts over.
    #[error("XMPP session reconnected")]
    Reconnected,
    /// Could not write to the stream.
    #[error("send failed: {0}")]
    Send(#[from] std::io::Error),
    /// A stanza did not reach the wire in time: the session is stuck (see [`send`]).
    #[error("XMPP session stalled: a stanza was not sent within {0:?}")]
    Stalled(Duration),
    /// No free nickname after several tries.
    #[error("no free nickname after {0} attempts")]
    NoFreeNick(usize),
    /// `resource-constraint`: the server still counts our previous session as in the room
    /// (ejabberd's one-room-per-account rule keeps the oldest until it sees it gone).
    #[error("room {0} still holds this account's previous session")]
    StillJoined(String),
}

/// What our own presence in the room told us.
#[derive(Clone, Debug, PartialEq)]
pub struct SelfPresence {
    /// Our role (participant expected).
    pub role: Role,
    /// Our affiliation (none or member expected).
    pub affiliation: Affiliation,
    /// Status 100/172: the room shows real JIDs to everyone.
    pub non_anonymous: bool,
    /// Status 201: we just created the room, hence own it.
    pub created: bool,
    /// The presence carried an XEP-0421 occupant-id.
    pub occupant_id: bool,
}

impl SelfPresence {
    /// Moderators and owners/admins see real JIDs in a semi-anonymous room; we must be neither.
    pub fn is_privileged(&self) -> bool {
        self.role == Role::Moderator
            || matches!(self.affiliation, Affiliation::Owner | Affiliation::Admin)
            || self.created
    }
}

/// The result of one join attempt.
#[derive(Debug)]
pub enum JoinOutcome {
    /// In the room.
    Joined(SelfPresence),
    /// The nickname is taken (409): draw another.
    Conflict,
}

/// Sends one stanza, bounded.
///
/// tokio-xmpp queues stanzas while it reconnects, and after a server restart it can loop
/// forever on a failed stream resumption (Prosody 0.12 answers `<failed/>` without `h`,
/// which xmpp-parsers 0.23 refuses to parse). A send that does not finish within `bound`
/// therefore means the session is stuck; callers replace it ([`crate::connect::renew`]).
pub async fn send(client: &mut Session, stanza: Stanza, bound: Duration) -> Result<(), MucError> {
    match tokio::time::timeout(bound, client.send_stanza(stanza)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(MucError::Send(e)),
        Err(_) => Err(MucError::Stalled(bound)),
    }
}

/// The next event before `deadline`.
async fn next_event(
    client: &mut Session,
    deadline: tokio::time::Instant,
    what: &str,
    timeout: Duration,
) -> Result<Option<Event>, MucError> {
    tokio::time::timeout_at(deadline, client.next())
        .await
        .map_err(|_| MucError::Timeout(what.to_owned(), timeout))
}

/// How often a room request that got no answer is retried on a fresh session.
///
/// Rarely a tokio-xmpp 6 session stops delivering what the server sent: in one failing run
/// Prosody's log shows the disco#info result sent within a millisecond, yet the client only
/// saw it when the session was closed 10 s later. A fresh session has not shown the problem.
pub const FRESH_RETRIES: u32 = 2;

/// Per-attempt bound for a room answer: a third of the account's timeout, at least 1 s.
pub fn answer_bound(account: &crate::connect::ConnectConfig) -> Duration {
    (account.timeout / 3).max(Duration::from_secs(1))
}

/// The occupant JID `room/nick`.
pub fn occupant(room: &BareJid, nick: &RoomNick) -> Result<FullJid, MucError> {
    room.with_resource_str(nick.as_str())
        .map_err(|e| MucError::Refused {
            room: room.to_string(),
            condition: format!("nickname {nick} is not a valid resource: {e}"),
        })
}

/// The sender's room nickname if `from` is an occupant of `room`: the only identity we keep.
pub fn nick_in_room(from: Option<&Jid>, room: &BareJid) -> Option<RoomNick> {
    let from = from?;
    // Compared part by part: `to_bare()` would build a JID for every stanza.
    if from.node() != room.node() || from.domain() != room.domain() {
        return None;
    }
    RoomNick::new(from.resource()?.as_str()).ok()
}

/// disco#info on the room; refuses non-anonymous, occupant-id and missing rooms.
pub async fn preflight(
    client: &mut Session,
    room: &BareJid,
    timeout: Duration,
) -> Result<(), MucError> {
    // A plain stanza plus our own wait, not `send_iq`: tokio-xmpp 6 sometimes leaves a
    // `send_iq` request unflushed until the next write, so the answer came only after 10 s.
    let id = format!("preflight-{}", rand::random::<u64>());
    let iq = Iq::Get {
        from: None,
        to: Some(room.clone().into()),
        id: id.clone(),
        payload: DiscoInfoQuery { node: None }.into(),
    };
    send(client, iq.into(), timeout).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let name = room.to_string();
    let response = loop {
        match next_event(client, deadline, &name, timeout).await? {
            None | Some(Event::Disconnected(_)) => return Err(MucError::SessionEnded),
            Some(Event::Online { resumed: false, .. }) => return Err(MucError::Reconnected),
            Some(Event::Stanza(Stanza::Iq(iq))) if iq.id() == id => break iq,
            Some(_) => {}
        }
    };
    let payload = match response {
        Iq::Result {
            payload: Some(el), ..
        } => el,
        Iq::Error { error, .. } if error.defined_condition == DefinedCondition::ItemNotFound => {
            return Err(PrivacyError::NoSuchRoom(name).into());
        }
        Iq::Error { error, .. } => {
            return Err(MucError::Refused {
                room: name,
                condition: condition(&error),
            });
        }
        _ => return Err(PrivacyError::NotSemiAnonymous(name).into()),
    };
    let info = DiscoInfoResult::try_from(payload).map_err(|e| MucError::Refused {
        room: name.clone(),
        condition: format!("malformed disco#info: {e}"),
    })?;
    check_features(&name, &info)?;
    Ok(())
}

/// The pure part of [`preflight`], separate so it is unit-tested without a server.
fn check_features(room: &str, info: &DiscoInfoResult) -> Result<(), PrivacyError> {
    let has = |f: &str| info.features.iter().any(|x| x == f);
    if has(FEATURE_NON_ANONYMOUS) {
        return Err(PrivacyError::NonAnonymous(room.to_owned()));
    }
    if has(NS_OCCUPANT_ID) {
        return Err(PrivacyError::OccupantId(room.to_owned()));
    }
    if info.features.iter().any(|f| f.starts_with(NS_MAM_PREFIX)) {
        return Err(PrivacyError::Archived(room.to_owned()));
    }
    if !has(FEATURE_SEMI_ANONYMOUS) {
        return Err(PrivacyError::NotSemiAnonymous(room.to_owned()));
    }
    Ok(())
}

fn condition(e: &StanzaError) -> String {
    let text = e
        .texts
        .values()
        .next()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    format!("{:?}{text}", e.defined_condition)
}

/// Sends the join presence (no history: we only want live readings) and waits for the answer.
///
/// Stanzas that arrive before our self-presence (other occupants' presences) are handed
/// to `other` so the caller decides; MUC sends live messages only after the self-presence.
pub async fn join(
    client: &mut Session,
    room: &BareJid,
    nick: &RoomNick,
    timeout: Duration,
    mut other: impl FnMut(Stanza),
) -> Result<JoinOutcome, MucError> {
    let to = occupant(room, nick)?;
    let muc = Muc::new().with_history(History::new().with_maxstanzas(0));
    let presence = Presence::available().with_to(to.clone()).with_payload(muc);
    send(client, presence.into(), timeout).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match next_event(client, deadline, &room.to_string(), timeout).await? {
            None => return Err(MucError::SessionEnded),
            Some(Event::Online { resumed: false, .. }) => return Err(MucError::Reconnected),
            Some(Event::Online { .. }) => {}
            Some(Event::Disconnected(_)) => return Err(MucError::SessionEnded),
            Some(Event::Stanza(Stanza::Presence(p)))
                if p.from.as_ref() == Some(&Jid::from(to.clone())) =>
            {
                if p.type_ == PresenceType::Error {
                    let err = stanza_error(&p.payloads);
                    return match err {
                        Some(e) if e.defined_condition == DefinedCondition::Conflict => {
                            Ok(JoinOutcome::Conflict)
                        }
                        Some(e) if e.defined_condition == DefinedCondition::ItemNotFound => {
                            Err(PrivacyError::NoSuchRoom(room.to_string()).into())
                        }
                        Some(e) if e.defined_condition == DefinedCondition::ResourceConstraint => {
                            Err(MucError::StillJoined(room.to_string()))
                        }
                        Some(e) => Err(MucError::Refused {
                            room: room.to_string(),
                            condition: condition(&e),
                        }),
                        None => Err(MucError::Refused {
                            room: room.to_string(),
                            condition: "error presence without condition".to_owned(),
                        }),
                    };
                }
                if let Some(me) = self_presence(&p) {
                    return Ok(JoinOutcome::Joined(me));
                }
            }
            Some(Event::Stanza(s)) => other(s),
        }
    }
}

fn stanza_error(payloads: &[Element]) -> Option<StanzaError> {
    payloads
        .iter()
        .find(|e| e.name() == "error")
        .and_then(|e| StanzaError::try_from(e.clone()).ok())
}

/// Parses a presence as our own room presence (status 110), if it is one.
pub fn self_presence(p: &Presence) -> Option<SelfPresence> {
    let user = p
        .payloads
        .iter()
        .find_map(|e| MucUser::try_from(e.clone()).ok())?;
    if !user.status.contains(&Status::SelfPresence) {
        return None;
    }
    let item = user.items.first()?;
    Some(SelfPresence {
        role: item.role.clone(),
        affiliation: item.affiliation.clone(),
        non_anonymous: user
            .status
            .iter()
            .any(|s| matches!(s, Status::NonAnonymousRoom | Status::ConfigRoomNonAnonymous)),
        created: user.status.contains(&Status::RoomHasBeenCreated),
        occupant_id: p
            .payloads
            .iter()
            .any(|e| e.is("occupant-id", NS_OCCUPANT_ID)),
    })
}

/// Leaves the room (rotation or shutdown); a new nickname later is a fresh, unlinked occupant.
pub async fn leave(
    client: &mut Session,
    room: &BareJid,
    nick: &RoomNick,
    bound: Duration,
) -> Result<(), MucError> {
    let to = occupant(room, nick)?;
    send(client, Presence::unavailable().with_to(to).into(), bound).await
}

/// Whether a presence from `room/nick` says we are no longer in the room (kicked, banned, shut down).
pub fn removed(p: &Presence) -> bool {
    p.type_ == PresenceType::Unavailable
        && p.payloads
            .iter()
            .find_map(|e| MucUser::try_from(e.clone()).ok())
            .is_some_and(|u| u.status.contains(&Status::SelfPresence))
}

/// A session event as the driver sees it.
#[allow(clippy::large_enum_variant)] // moved once per event straight into its handler, never stored
pub(crate) enum SessionEvent {
    /// Something arrived.
    Stanza(Stanza),
    /// tokio-xmpp reconnected without resumption: the room has forgotten us; rejoin.
    Restarted,
    /// The session resumed (XEP-0198): nothing to do.
    Resumed,
}

/// Sorts what the session delivered; its end is an error, on which the loop replaces it.
pub(crate) fn session_event(event: Option<Event>) -> Result<SessionEvent, MucError> {
    match event {
        None | Some(Event::Disconnected(_)) => Err(MucError::SessionEnded),
        Some(Event::Online { resumed: false, .. }) => {
            tracing::info!("session restarted without resumption; rejoining the room");
            Ok(SessionEvent::Restarted)
        }
        Some(Event::Online { .. }) => Ok(SessionEvent::Resumed),
        Some(Event::Stanza(s)) => Ok(SessionEvent::Stanza(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(features: &[&str]) -> DiscoInfoResult {
        DiscoInfoResult {
            node: None,
            identities: vec![],
            features: features.iter().map(|f| (*f).to_owned()).collect(),
            extensions: vec![],
        }
    }

    #[test]
    fn preflight_rules() {
        let ok = info(&["http://jabber.org/protocol/muc", FEATURE_SEMI_ANONYMOUS]);
        assert!(check_features("r", &ok).is_ok());
        let bad = info(&[FEATURE_SEMI_ANONYMOUS, NS_OCCUPANT_ID]);
        assert!(matches!(
            check_features("r", &bad),
            Err(PrivacyError::OccupantId(_))
        ));
        let bad = info(&[FEATURE_NON_ANONYMOUS]);
        assert!(matches!(
            check_features("r", &bad),
            Err(PrivacyError::NonAnonymous(_))
        ));
        let bad = info(&[FEATURE_SEMI_ANONYMOUS, "urn:xmpp:mam:2"]);
        assert!(matches!(
            check_features("r", &bad),
            Err(PrivacyError::Archived(_))
        ));
        let bad = info(&["http://jabber.org/protocol/muc"]);
        assert!(matches!(
            check_features("r", &bad),
            Err(PrivacyError::NotSemiAnonymous(_))
        ));
    }

    #[test]
    fn self_presence_parsing() {
        let xml = "<presence xmlns='jabber:client' from='r@m/n'><x xmlns='http://jabber.org/protocol/muc#user'>\
            <item affiliation='none' role='moderator'/><status code='110'/></x></presence>";
        let p = Presence::try_from(xml.parse::<Element>().unwrap()).unwrap();
        let me = self_presence(&p).unwrap();
        assert!(me.is_privileged());
        let xml = xml.replace("moderator", "participant");
        let p = Presence::try_from(xml.parse::<Element>().unwrap()).unwrap();
        assert!(!self_presence(&p).unwrap().is_privileged());
    }

    #[test]
    fn nick_only_from_our_room() {
        let room = BareJid::new("hood@rooms.grid.test").unwrap();
        let from = Jid::new("hood@rooms.grid.test/amber-otter-1234").unwrap();
        assert_eq!(
            nick_in_room(Some(&from), &room).unwrap().as_str(),
            "amber-otter-1234"
        );
        let other = Jid::new("house1@grid.test/res").unwrap();
        assert_eq!(nick_in_room(Some(&other), &room), None);
        assert_eq!(
            nick_in_room(Some(&Jid::new("hood@rooms.grid.test").unwrap()), &room),
            None
        );
    }
}
