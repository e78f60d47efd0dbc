//! What every agent has in common with the room: joining, being removed, the session's health,
//! the privacy checks on our own presence, and the [`Agent`] trait the one XMPP driver (and
//! the harness) runs any core through.
//!
//! An agent's own inputs and transmits (readings, verdicts, posts, measurements) are its own
//! enums; each converts from [`RoomInput`] and into [`RoomTransmit`], so the driver translates
//! the shared part once for every agent.

use gridmuc_core::{RoomNick, Timestamp};

/// What our own presence said when the room let us in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfPresence {
    /// `Some((role, affiliation))` if we are a moderator, owner or admin: we would see JIDs.
    pub privileged: Option<(String, String)>,
    /// The room is non-anonymous, or a presence during the join showed a JID not our own.
    pub non_anonymous: bool,
    /// The room adds XEP-0421 occupant-ids, which link an occupant's nicknames.
    pub occupant_id: bool,
    /// Our join created the room: it does not exist, so it has none of the privacy settings.
    pub created: bool,
}

impl SelfPresence {
    /// Why this room would break an agent's privacy promise, if it would.
    pub fn refusal(&self) -> Option<PrivacyRefusal> {
        if self.created {
            Some(PrivacyRefusal::NoSuchRoom)
        } else if let Some((role, affiliation)) = &self.privileged {
            Some(PrivacyRefusal::Privileged {
                role: role.clone(),
                affiliation: affiliation.clone(),
            })
        } else if self.non_anonymous {
            Some(PrivacyRefusal::NonAnonymous)
        } else if self.occupant_id {
            Some(PrivacyRefusal::OccupantId)
        } else {
            None
        }
    }
}

/// Why an agent left a room for good: it would learn or leak real JIDs there.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyRefusal {
    /// We are a moderator, owner or admin, and would see real JIDs.
    #[error("our role {role} / affiliation {affiliation} would show real JIDs")]
    Privileged {
        /// Role in the room.
        role: String,
        /// Affiliation with the room.
        affiliation: String,
    },
    /// The room shows real JIDs to participants.
    #[error("the room shows real JIDs")]
    NonAnonymous,
    /// The room adds occupant-ids that link nicknames.
    #[error("the room adds occupant-ids")]
    OccupantId,
    /// Our join created the room: it was not provisioned.
    #[error("the room does not exist")]
    NoSuchRoom,
}

/// The error a room answers a non-occupant's message with (XEP-0045; XEP-0410's self-ping
/// reads it the same way): the room has forgotten us while our session lived on, as when a
/// clustered room restarts on another node. Agents act on it only from the room itself or
/// the nickname they wrote to (the bot's, the leader's), which no other occupant can send from.
pub(crate) const NOT_AN_OCCUPANT: &str = "not-acceptable";

/// What the session and the room tell any agent; the driver produces these the same way for all.
#[derive(Clone, Debug, PartialEq)]
pub enum RoomInput {
    /// The room let us in under the nickname of the pending join.
    Joined(SelfPresence),
    /// The nickname of the pending join is held by someone else (409).
    NickConflict,
    /// The room removed us (kick, ban, shutdown of the room).
    Removed,
    /// A presence from the room showed a real JID: the room changed under us.
    RoomShowsJids,
    /// The session was replaced or restarted without resumption: the room has forgotten us.
    SessionReset,
    /// The session delivered something that needs nothing (a ping's answer, say).
    Alive,
    /// Stop: finish what is owed (bounded), leave, and finish.
    Shutdown,
}

/// What any agent asks of the session and the room; the driver carries these out the same way.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomTransmit {
    /// Join the room under this nickname; answer [`RoomInput::Joined`] or [`RoomInput::NickConflict`].
    Join(RoomNick),
    /// Leave the room.
    Leave(RoomNick),
    /// Probe the session with a ping (its answer arrives as any input).
    Ping,
    /// Replace the session with a fresh one, then report [`RoomInput::SessionReset`].
    RenewSession,
}

/// The conversions between an agent's own input and transmit enums and the room's, for the
/// agents whose enums repeat the room's variants by name (the plain meter and bot), so the
/// mapping is written once.
macro_rules! room_variants {
    ($input:ident, $transmit:ident) => {
        impl From<$crate::room::RoomInput> for $input {
            fn from(i: $crate::room::RoomInput) -> $input {
                use $crate::room::RoomInput as R;
                match i {
                    R::Joined(me) => $input::Joined(me),
                    R::NickConflict => $input::NickConflict,
                    R::Removed => $input::Removed,
                    R::RoomShowsJids => $input::RoomShowsJids,
                    R::SessionReset => $input::SessionReset,
                    R::Alive => $input::Alive,
                    R::Shutdown => $input::Shutdown,
                }
            }
        }

        impl TryFrom<$transmit> for $crate::room::RoomTransmit {
            type Error = $transmit;
            fn try_from(t: $transmit) -> Result<$crate::room::RoomTransmit, $transmit> {
                use $crate::room::RoomTransmit as R;
                match t {
                    $transmit::Join(nick) => Ok(R::Join(nick)),
                    $transmit::Leave(nick) => Ok(R::Leave(nick)),
                    $transmit::Ping => Ok(R::Ping),
                    $transmit::RenewSession => Ok(R::RenewSession),
                    own => Err(own),
                }
            }
        }

        impl From<$crate::room::RoomTransmit> for $transmit {
            fn from(t: $crate::room::RoomTransmit) -> $transmit {
                use $crate::room::RoomTransmit as R;
                match t {
                    R::Join(nick) => $transmit::Join(nick),
                    R::Leave(nick) => $transmit::Leave(nick),
                    R::Ping => $transmit::Ping,
                    R::RenewSession => $transmit::RenewSession,
                }
            }
        }
    };
}
pub(crate) use room_variants;

/// An agent's rules as a state machine, in quinn-proto's shape: told what happened, asked what
/// to do. One driver (XMPP in `gridmuc-xmpp`, or the in-memory [`crate::harness`]) runs any
/// agent through this, so session handling, liveness and rejoining are written once.
pub trait Agent {
    /// What happened, in the agent's terms; the room's part converts in.
    type Input: From<RoomInput>;
    /// What to do; the room's part converts out (`Err` gives back the agent's own transmit).
    type Transmit: TryInto<RoomTransmit, Error = Self::Transmit>;
    /// What the agent tells its caller.
    type Event;
    /// Why the agent gave up.
    type Error;

    /// Takes in what happened at `now`.
    fn handle(&mut self, now: Timestamp, input: Self::Input);
    /// Lets the timers due at `now` fire.
    fn handle_timeout(&mut self, now: Timestamp);
    /// The next thing to do, in order.
    fn poll_transmit(&mut self) -> Option<Self::Transmit>;
    /// The next event for the caller, in order.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// When [`Agent::handle_timeout`] is next due; `None` while only an input can move it on.
    fn poll_timeout(&self) -> Option<Timestamp>;
    /// `Some` once finished: `Ok` after a shutdown, or why it gave up.
    fn outcome(&self) -> Option<Result<(), Self::Error>>;
    /// The nickname we hold in the room right now, if any (a removal names it).
    fn nick(&self) -> Option<&RoomNick>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_room_is_refused_before_anything_else() {
        let all = SelfPresence {
            privileged: Some(("moderator".into(), "owner".into())),
            non_anonymous: true,
            occupant_id: true,
            created: true,
        };
        assert_eq!(all.refusal(), Some(PrivacyRefusal::NoSuchRoom));
        let moderator = SelfPresence {
            created: false,
            ..all.clone()
        };
        assert!(matches!(
            moderator.refusal(),
            Some(PrivacyRefusal::Privileged { .. })
        ));
        assert_eq!(SelfPresence::default().refusal(), None);
        let linked = SelfPresence {
            occupant_id: true,
            ..SelfPresence::default()
        };
        assert_eq!(linked.refusal(), Some(PrivacyRefusal::OccupantId));
    }
}
