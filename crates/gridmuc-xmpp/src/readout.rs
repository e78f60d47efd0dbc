//! XEP-0323 readout on the wire: the XML of `gridmuc_agent::readout`'s requests and answers.
//!
//! The rules (who is answered, what is refused, what a poll counts) are the cores'; this module
//! only parses iqs into [`Request`]s and [`PollAnswer`]s and builds the answers' stanzas. An
//! iq's sender and id stay here, behind a [`ReplyTo`] handle: Prosody rewrites the id of an iq
//! routed through a room to carry real JIDs, and no core may see one.

use crate::muc;
use gridmuc_agent::readout::{
    Answer, FIELD_ENERGY, Momentary, Origin, PollAnswer, Query, ReadRequest, ReplyTo, Request,
};
use gridmuc_core::codec::{self, NS_SENSORDATA};
use gridmuc_core::{Quality, Reading, RoomNick};
use minidom::Element;
use minidom::rxml::xml_ncname;
use std::collections::VecDeque;
use tokio_xmpp::jid::{BareJid, Jid};
use xmpp_parsers::disco::{DiscoInfoQuery, DiscoInfoResult, Identity};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::message::{Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// Answers owed at once; the cores answer every request within the same input, so more than
/// this outstanding only happens to requests no core turned into an answer (dropped oldest).
const REPLIES_KEPT: usize = 64;

/// Field-type attributes of a `<req/>` (XEP-0323 §3.3); any set to true is a type asked for.
const FIELD_TYPES: [&str; 12] = [
    "momentary",
    "peak",
    "status",
    "computed",
    "identity",
    "historicalSecond",
    "historicalMinute",
    "historicalHour",
    "historicalDay",
    "historicalWeek",
    "historicalMonth",
    "all",
];

/// Where each [`ReplyTo`] handle's answer goes: the iq's sender and id.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    next: u64,
    owed: VecDeque<(ReplyTo, Jid, String)>,
}

impl Replies {
    fn remember(&mut self, to: Jid, id: String) -> ReplyTo {
        self.next += 1;
        let handle = ReplyTo(self.next);
        if self.owed.len() >= REPLIES_KEPT {
            self.owed.pop_front();
        }
        self.owed.push_back((handle, to, id));
        handle
    }

    fn take(&mut self, handle: ReplyTo) -> Option<(Jid, String)> {
        let at = self.owed.iter().position(|(h, ..)| *h == handle)?;
        self.owed.remove(at).map(|(_, to, id)| (to, id))
    }

    /// A meter's request from an iq get or set (results and errors are answers, not requests).
    pub(crate) fn request(&mut self, iq: &Iq, room: &BareJid) -> Option<Request> {
        let (from, id, payload) = match iq {
            Iq::Get {
                from, id, payload, ..
            }
            | Iq::Set {
                from, id, payload, ..
            } => (from.clone()?, id.clone(), payload),
            Iq::Result { .. } | Iq::Error { .. } => return None,
        };
        let origin = match muc::nick_in_room(Some(&from), room) {
            Some(nick) => Origin::Occupant(nick),
            None => Origin::Outside,
        };
        let get = matches!(iq, Iq::Get { .. });
        let query = query(payload, get);
        Some(Request {
            reply: self.remember(from, id),
            origin,
            query,
        })
    }

    /// The stanza that carries `answer` (to `room`'s occupants for `<fields/>` messages).
    pub(crate) fn stanza(&mut self, answer: Answer, room: &BareJid) -> Option<tokio_xmpp::Stanza> {
        let (reply, payload) = match answer {
            Answer::Fields { to, seqnr, values } => {
                let to = muc::occupant(room, &to).ok()?;
                let mut m = Message::new(Some(to.into()));
                m.type_ = MessageType::Chat;
                m.payloads.push(fields(seqnr, &values));
                return Some(m.into());
            }
            Answer::DiscoInfo { reply, sensordata } => (reply, Ok(Some(disco_info(sensordata)))),
            Answer::Accepted { reply, seqnr } => (reply, Ok(Some(seqnr_el("accepted", seqnr)))),
            Answer::Cancelled { reply, seqnr } => (reply, Ok(Some(seqnr_el("cancelled", seqnr)))),
            Answer::Rejected { reply, seqnr, why } => {
                let rejected = Element::builder("rejected", NS_SENSORDATA)
                    .attr(xml_ncname!("seqnr").to_owned(), seqnr.to_string())
                    .append(Element::builder("error", NS_SENSORDATA).append(why).build())
                    .build();
                let error = StanzaError::new(
                    ErrorType::Cancel,
                    DefinedCondition::NotAcceptable,
                    "en",
                    why,
                );
                (reply, Err((error, Some(rejected))))
            }
            Answer::Unavailable { reply } => {
                let error = StanzaError::new(
                    ErrorType::Cancel,
                    DefinedCondition::ServiceUnavailable,
                    "en",
                    "",
                );
                (reply, Err((error, None)))
            }
        };
        let (to, id) = self.take(reply)?;
        let iq = match payload {
            Ok(payload) => Iq::Result {
                from: None,
                to: Some(to),
                id,
                payload,
            },
            Err((error, payload)) => Iq::Error {
                from: None,
                to: Some(to),
                id,
                error,
                payload,
            },
        };
        Some(iq.into())
    }
}

/// What an iq get or set asks of a meter.
fn query(payload: &Element, get: bool) -> Query {
    if get && payload.is("query", ns::DISCO_INFO) {
        return match DiscoInfoQuery::try_from(payload.clone()) {
            Ok(q) => Query::DiscoInfo { node: q.node },
            Err(_) => Query::Unsupported,
        };
    }
    let seqnr = payload.attr("seqnr").and_then(|s| s.trim().parse().ok());
    match (get, payload.name(), payload.ns() == NS_SENSORDATA, seqnr) {
        (true, "req", true, Some(seqnr)) => Query::Read(read_request(payload, seqnr)),
        (true, "cancel", true, Some(seqnr)) => Query::Cancel { seqnr },
        _ => Query::Unsupported,
    }
}

fn read_request(req: &Element, seqnr: u64) -> ReadRequest {
    let yes = |name: &str| matches!(req.attr(name).map(str::trim), Some("true" | "1"));
    let children = |name: &'static str, attr: &'static str| -> Vec<String> {
        req.children()
            .filter(|c| c.is(name, NS_SENSORDATA))
            .filter_map(|c| c.attr(attr).map(str::to_owned))
            .collect()
    };
    ReadRequest {
        seqnr,
        types: FIELD_TYPES
            .iter()
            .filter(|t| yes(t))
            .map(|t| (*t).to_owned())
            .collect(),
        nodes: children("node", "nodeId"),
        fields: children("field", "name"),
        timed: req.attr("when").is_some(),
    }
}

fn seqnr_el(name: &str, seqnr: u64) -> Element {
    Element::builder(name, NS_SENSORDATA)
        .attr(xml_ncname!("seqnr").to_owned(), seqnr.to_string())
        .build()
}

/// disco#info of a meter's occupant JID: a bot, XEP-0323 if readout is on, nothing else.
fn disco_info(sensordata: bool) -> Element {
    let mut features = std::collections::BTreeSet::from([ns::DISCO_INFO.to_owned()]);
    if sensordata {
        features.insert(NS_SENSORDATA.to_owned());
    }
    DiscoInfoResult {
        node: None,
        identities: vec![Identity::new_anonymous::<_, _, (), ()>("client", "bot")],
        features,
        extensions: Vec::new(),
    }
    .into()
}

/// A readout's `<fields done='true'/>`: the pushed reading's payload (same codec) with the
/// requester's seqnr, plus the energy in kWh, each field only if asked for.
fn fields(seqnr: u64, v: &Momentary) -> Element {
    let reading = Reading {
        power: v.power,
        at: v.at,
        seqnr,
        quality: Quality::AUTOMATIC_READOUT,
    };
    let mut fields = codec::encode_fields(&reading);
    let timestamp = fields
        .get_child_mut("node", NS_SENSORDATA)
        .and_then(|n| n.get_child_mut("timestamp", NS_SENSORDATA));
    if let Some(ts) = timestamp {
        if !v.with_power {
            while ts.remove_child("numeric", NS_SENSORDATA).is_some() {}
        }
        if v.with_energy {
            ts.append_child(
                Element::builder("numeric", NS_SENSORDATA)
                    .attr(xml_ncname!("name").to_owned(), FIELD_ENERGY)
                    .attr(xml_ncname!("momentary").to_owned(), "true")
                    .attr(xml_ncname!("automaticEstimate").to_owned(), "true")
                    .attr(
                        xml_ncname!("value").to_owned(),
                        format!("{:.3}", v.energy_wh as f64 / 1_000.0),
                    )
                    .attr(xml_ncname!("unit").to_owned(), "kWh")
                    .build(),
            );
        }
    }
    fields
}

/// The bot's readout request to a device's occupant JID (`momentary` only).
pub(crate) fn poll_request(room: &BareJid, to: &RoomNick, seqnr: u64) -> Option<Iq> {
    let to = muc::occupant(room, to).ok()?;
    let req = Element::builder("req", NS_SENSORDATA)
        .attr(xml_ncname!("seqnr").to_owned(), seqnr.to_string())
        .attr(xml_ncname!("momentary").to_owned(), "true")
        .build();
    Some(Iq::Get {
        from: None,
        to: Some(to.into()),
        id: poll_id(seqnr),
        payload: req,
    })
}

/// The iq id of poll `seqnr`, so a bare error (the device left) still names its request.
fn poll_id(seqnr: u64) -> String {
    format!("gridmuc-readout-{seqnr}")
}

/// A device's iq answer to one of our polls: (device, seqnr, answer).
pub(crate) fn poll_iq_answer(iq: &Iq, room: &BareJid) -> Option<(RoomNick, u64, PollAnswer)> {
    let (from, id, payload, error) = match iq {
        Iq::Result {
            from, id, payload, ..
        } => (from, id, payload.as_ref(), None),
        Iq::Error {
            from,
            id,
            payload,
            error,
            ..
        } => (from, id, payload.as_ref(), Some(error)),
        Iq::Get { .. } | Iq::Set { .. } => return None,
    };
    let nick = muc::nick_in_room(from.as_ref(), room)?;
    let by_id = id.strip_prefix("gridmuc-readout-")?.parse::<u64>().ok()?;
    let seqnr = payload
        .and_then(|p| p.attr("seqnr"))
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(by_id);
    let answer = match error {
        None => PollAnswer::Accepted,
        Some(e) => {
            let text = payload
                .and_then(|p| p.get_child("error", NS_SENSORDATA))
                .map(Element::text)
                .or_else(|| e.texts.values().next().cloned())
                .unwrap_or_else(|| format!("{:?}", e.defined_condition));
            PollAnswer::Refused(text)
        }
    };
    Some((nick, seqnr, answer))
}

/// A polled device's `<fields/>` message: its seqnr and whether it completes the readout, or
/// `None` if it carries none (the reading itself is decoded like a pushed one).
pub(crate) fn fields_header(m: &Message) -> Option<(u64, bool)> {
    let f = codec::find_fields(&m.payloads)?;
    let seqnr = f.attr("seqnr")?.trim().parse().ok()?;
    let done = matches!(f.attr("done").map(str::trim), Some("true" | "1"));
    Some((seqnr, done))
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridmuc_core::{Timestamp, Watts};

    fn room() -> BareJid {
        BareJid::new("hood@rooms.grid.test").expect("a JID")
    }

    fn iq(xml: &str) -> Iq {
        Iq::try_from(xml.parse::<Element>().expect("XML")).expect("an iq")
    }

    #[test]
    fn a_request_through_the_room_is_an_occupants_and_its_answer_goes_back_by_handle() {
        let mut replies = Replies::default();
        let req = replies
            .request(
                &iq("<iq xmlns='jabber:client' type='get' id='abc' from='hood@rooms.grid.test/asker'>\
                     <req xmlns='urn:xmpp:iot:sensordata' seqnr='7' momentary='true' historicalDay='false'>\
                     <field name='Power'/></req></iq>"),
                &room(),
            )
            .expect("a request");
        assert_eq!(
            req.origin,
            Origin::Occupant(RoomNick::new("asker").expect("nick"))
        );
        assert_eq!(
            req.query,
            Query::Read(ReadRequest {
                seqnr: 7,
                types: vec!["momentary".into()],
                nodes: vec![],
                fields: vec!["Power".into()],
                timed: false,
            })
        );
        let stanza = replies
            .stanza(
                Answer::Accepted {
                    reply: req.reply,
                    seqnr: 7,
                },
                &room(),
            )
            .expect("a stanza");
        let xml = String::from(&Element::from(stanza));
        assert_eq!(
            xml,
            "<iq xmlns='jabber:client' id='abc' to='hood@rooms.grid.test/asker' type='result'>\
             <accepted xmlns='urn:xmpp:iot:sensordata' seqnr='7'/></iq>"
        );
        // Answered once: the handle is spent.
        assert!(
            replies
                .stanza(Answer::Unavailable { reply: req.reply }, &room())
                .is_none()
        );
        // From an account, not the room: an outsider asking something we do not know.
        let out = replies
            .request(
                &iq(
                    "<iq xmlns='jabber:client' type='get' id='p' from='someone@grid.test/x'>\
                     <ping xmlns='urn:xmpp:ping'/></iq>",
                ),
                &room(),
            )
            .expect("a request");
        assert_eq!(
            (out.origin, out.query),
            (Origin::Outside, Query::Unsupported)
        );
    }

    #[test]
    fn a_readout_carries_power_like_a_pushed_reading_and_energy_in_kwh() {
        let v = Momentary {
            at: Timestamp::parse_rfc3339("2026-11-30T10:00:00Z").expect("time"),
            power: Watts(-1_230),
            energy_wh: 2_345,
            with_power: true,
            with_energy: true,
        };
        let f = fields(99, &v);
        let reading = codec::decode_fields(&f, &codec::CodecLimits::default()).expect("decodes");
        assert_eq!(
            (reading.power, reading.seqnr, reading.at),
            (Watts(-1_230), 99, v.at)
        );
        let xml = String::from(&f);
        assert!(
            xml.contains(
                "<numeric automaticEstimate='true' momentary='true' name='Energy' unit='kWh' \
                 value='2.345'/>"
            ),
            "{xml}"
        );
        let only_energy = String::from(&fields(
            1,
            &Momentary {
                with_power: false,
                ..v
            },
        ));
        assert!(!only_energy.contains("Power"), "{only_energy}");
        assert!(only_energy.contains(FIELD_ENERGY), "{only_energy}");
    }

    #[test]
    fn the_substations_readout_table_names_devices_and_a_period() {
        let poll: crate::bot::ReadoutPoll =
            serde_json::from_str(r#"{"poll": "60s", "devices": ["pv-roof"]}"#).expect("parses");
        assert_eq!(poll.poll, std::time::Duration::from_secs(60));
        assert_eq!(poll.devices, ["pv-roof"]);
        let typo = serde_json::from_str::<crate::bot::ReadoutPoll>(
            r#"{"poll": "60s", "device": ["pv-roof"]}"#,
        );
        assert!(typo.is_err());
    }

    #[test]
    fn a_devices_rejection_and_a_bare_bounce_both_name_the_poll() {
        let rejected = iq(
            "<iq xmlns='jabber:client' type='error' id='gridmuc-readout-5' from='hood@rooms.grid.test/pv'>\
             <rejected xmlns='urn:xmpp:iot:sensordata' seqnr='5'><error>Access denied</error></rejected>\
             <error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        let (nick, seqnr, answer) = poll_iq_answer(&rejected, &room()).expect("an answer");
        assert_eq!(nick.as_str(), "pv");
        assert_eq!(seqnr, 5);
        assert_eq!(answer, PollAnswer::Refused("Access denied".into()));
        let gone = iq(
            "<iq xmlns='jabber:client' type='error' id='gridmuc-readout-6' from='hood@rooms.grid.test/pv'>\
             <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        let (_, seqnr, answer) = poll_iq_answer(&gone, &room()).expect("an answer");
        assert_eq!(seqnr, 6);
        assert!(matches!(answer, PollAnswer::Refused(_)));
        let accepted = iq(
            "<iq xmlns='jabber:client' type='result' id='gridmuc-readout-7' from='hood@rooms.grid.test/pv'>\
             <accepted xmlns='urn:xmpp:iot:sensordata' seqnr='7'/></iq>",
        );
        assert_eq!(
            poll_iq_answer(&accepted, &room()).map(|a| a.2),
            Some(PollAnswer::Accepted)
        );
        // Someone else's iq result is not ours to read.
        let other =
            iq("<iq xmlns='jabber:client' type='result' id='x1' from='hood@rooms.grid.test/pv'/>");
        assert!(poll_iq_answer(&other, &room()).is_none());
    }
}
