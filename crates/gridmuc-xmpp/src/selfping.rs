//! XEP-0410 MUC self-ping: whether the room still counts us as an occupant.
//!
//! A room can forget an occupant whose session lives on. In an ejabberd cluster, a room whose
//! node dies restarts on another node without the occupants of the surviving node, and nobody
//! tells them. A bot the room forgot receives no reading, so it posts nothing that could bounce.
//! The only way to find out is to ask. So every agent's liveness probe ([`RoomTransmit::Ping`])
//! goes to our own occupant JID while we hold a nickname. The room answers it, or forwards it
//! to us, and we answer that below. A "not an occupant" answer becomes [`RoomInput::Removed`],
//! which every core already answers by rejoining.
//!
//! [`RoomTransmit::Ping`]: gridmuc_agent::RoomTransmit::Ping

use crate::muc;
use gridmuc_agent::RoomInput;
use gridmuc_core::RoomNick;
use tokio_xmpp::jid::{BareJid, FullJid, Jid};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::stanza_error::DefinedCondition;

/// A self-ping in flight: its id and the occupant JID it went to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SelfPing {
    id: String,
    to: FullJid,
}

impl SelfPing {
    /// The probe and the XEP-0199 ping it goes as.
    pub(crate) fn new(to: FullJid) -> (SelfPing, Iq) {
        let id = format!("self-{}", rand::random::<u64>());
        let iq = Iq::from_get(id.clone(), xmpp_parsers::ping::Ping).with_to(to.clone().into());
        (SelfPing { id, to }, iq)
    }

    /// What the answer says, if `iq` is the answer to this probe. Only the room can send from
    /// our own occupant JID, and the id is a random one nobody else has seen.
    pub(crate) fn answer(&self, iq: &Iq) -> Option<RoomInput> {
        let from_room = iq.from().is_some_and(|f| match f.try_as_full() {
            Ok(full) => *full == self.to,
            // A room that has no occupant of that nickname may answer as itself.
            Err(bare) => *bare == self.to.to_bare(),
        });
        if iq.id() != self.id || !from_room {
            return None;
        }
        match iq {
            Iq::Result { .. } => Some(RoomInput::Alive),
            Iq::Error { error, .. } => Some(verdict(&error.defined_condition)),
            // A get or set reusing our id is not an answer.
            Iq::Get { .. } | Iq::Set { .. } => None,
        }
    }
}

/// XEP-0410 §4's reading of an error answer to a self-ping.
fn verdict(condition: &DefinedCondition) -> RoomInput {
    match condition {
        // Our own client was asked and does not do pings: we are in the room.
        DefinedCondition::ServiceUnavailable | DefinedCondition::FeatureNotImplemented => {
            RoomInput::Alive
        }
        // The room's service cannot be reached: whether we are in is unknown, and a rejoin
        // would fail the same way. The session answered, so it lives; ask again later.
        DefinedCondition::RemoteServerNotFound | DefinedCondition::RemoteServerTimeout => {
            tracing::warn!("the room's service did not answer our self-ping; asking again later");
            RoomInput::Alive
        }
        // `not-acceptable` (not an occupant), `item-not-found` (our nickname is gone), or
        // anything else: the room no longer counts us.
        other => {
            tracing::warn!(
                condition = ?other,
                "the room no longer counts us as an occupant; rejoining"
            );
            RoomInput::Removed
        }
    }
}

/// The answer to an XEP-0199 ping we should answer: from our server (`from` absent, or a bare
/// domain), or the room forwarding our own self-ping (from our nickname `own` in `room`).
/// Another occupant's ping through the room is not answered, so no occupant can make us send a
/// stanza for each of theirs.
pub(crate) fn answer_ping(iq: &Iq, room: &BareJid, own: Option<&RoomNick>) -> Option<Iq> {
    let Iq::Get {
        from, id, payload, ..
    } = iq
    else {
        return None;
    };
    if !payload.is("ping", xmpp_parsers::ns::PING) {
        return None;
    }
    let allowed = match from.as_ref().map(Jid::try_as_full) {
        None => true,
        Some(Err(bare)) => bare.node().is_none(),
        Some(Ok(_)) => own.is_some() && muc::nick_in_room(from.as_ref(), room).as_ref() == own,
    };
    if !allowed {
        return None;
    }
    let reply = Iq::Result {
        from: None,
        to: from.clone(),
        id: id.clone(),
        payload: None,
    };
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_parsers::stanza_error::{ErrorType, StanzaError};

    fn room() -> BareJid {
        BareJid::new("hood@muc.grid.test").expect("a JID")
    }

    fn me() -> FullJid {
        FullJid::new("hood@muc.grid.test/substation").expect("a JID")
    }

    fn error(probe: &SelfPing, from: Jid, condition: DefinedCondition) -> Iq {
        let e = StanzaError::new(ErrorType::Cancel, condition, "en", "");
        Iq::from_error(probe.id.clone(), e).with_from(from)
    }

    #[test]
    fn a_self_ping_goes_to_our_occupant_jid_as_an_xep_0199_ping() {
        let (_, iq) = SelfPing::new(me());
        let Iq::Get { to, payload, .. } = &iq else {
            panic!("not a get: {iq:?}")
        };
        assert_eq!(to.as_ref(), Some(&Jid::from(me())));
        assert!(payload.is("ping", xmpp_parsers::ns::PING));
    }

    #[test]
    fn answers_read_as_xep_0410_reads_them() {
        let (probe, _) = SelfPing::new(me());
        let result = Iq::empty_result(me().into(), probe.id.clone()).with_from(me().into());
        assert_eq!(probe.answer(&result), Some(RoomInput::Alive));
        let cases = [
            (DefinedCondition::NotAcceptable, RoomInput::Removed),
            (DefinedCondition::ItemNotFound, RoomInput::Removed),
            (DefinedCondition::BadRequest, RoomInput::Removed),
            (DefinedCondition::ServiceUnavailable, RoomInput::Alive),
            (DefinedCondition::FeatureNotImplemented, RoomInput::Alive),
            (DefinedCondition::RemoteServerTimeout, RoomInput::Alive),
            (DefinedCondition::RemoteServerNotFound, RoomInput::Alive),
        ];
        for (condition, says) in cases {
            let iq = error(&probe, me().into(), condition.clone());
            assert_eq!(probe.answer(&iq), Some(says.clone()), "{condition:?}");
            // The room itself may answer for a nickname it no longer has.
            let iq = error(&probe, room().into(), condition.clone());
            assert_eq!(probe.answer(&iq), Some(says), "{condition:?} from the room");
        }
    }

    #[test]
    fn only_the_room_answering_our_id_counts() {
        let (probe, _) = SelfPing::new(me());
        let other = FullJid::new("hood@muc.grid.test/mallory").expect("a JID");
        let forged = error(&probe, other.into(), DefinedCondition::NotAcceptable);
        assert_eq!(probe.answer(&forged), None);
        let elsewhere = BareJid::new("other@muc.grid.test").expect("a JID");
        let forged = error(&probe, elsewhere.into(), DefinedCondition::NotAcceptable);
        assert_eq!(probe.answer(&forged), None);
        let e = StanzaError::new(ErrorType::Cancel, DefinedCondition::NotAcceptable, "en", "");
        let stale = Iq::from_error("self-1", e).with_from(me().into());
        assert_eq!(probe.answer(&stale), None);
    }

    #[test]
    fn we_answer_pings_from_our_server_and_our_own_forwarded_self_ping_only() {
        let ping = |from: Option<Jid>| {
            let iq = Iq::from_get("p1", xmpp_parsers::ping::Ping);
            match from {
                Some(f) => iq.with_from(f),
                None => iq,
            }
        };
        let server = Jid::from(BareJid::new("grid.test").expect("a JID"));
        let nick = RoomNick::new("substation").expect("a nickname");
        let reply = answer_ping(&ping(Some(server.clone())), &room(), Some(&nick));
        assert_eq!(
            reply,
            Some(Iq::Result {
                from: None,
                to: Some(server),
                id: "p1".into(),
                payload: None
            })
        );
        assert!(answer_ping(&ping(None), &room(), None).is_some());
        assert!(answer_ping(&ping(Some(me().into())), &room(), Some(&nick)).is_some());
        // Another occupant, our nickname after we lost it, another account: no answer.
        let mallory = FullJid::new("hood@muc.grid.test/mallory").expect("a JID");
        assert!(answer_ping(&ping(Some(mallory.into())), &room(), Some(&nick)).is_none());
        assert!(answer_ping(&ping(Some(me().into())), &room(), None).is_none());
        let user = Jid::from(BareJid::new("house1@grid.test").expect("a JID"));
        assert!(answer_ping(&ping(Some(user)), &room(), Some(&nick)).is_none());
        // Not a ping, or not a request.
        let version = Iq::from_get("v", xmpp_parsers::version::VersionQuery);
        assert!(answer_ping(&version, &room(), Some(&nick)).is_none());
        let result = Iq::empty_result(me().into(), "r");
        assert!(answer_ping(&result, &room(), Some(&nick)).is_none());
    }
}
