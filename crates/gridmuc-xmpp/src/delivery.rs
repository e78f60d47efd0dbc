//! Readings on the wire with acknowledged delivery: the stanza every sender writes (meters, and
//! neighbourhood bots feeding a district), sealed to the bot's key when one is pinned, and the
//! bot's signed cumulative acks (wire format v2: one per nickname for several readings, with
//! refusals and their reasons) that empty outboxes; v1's one verdict per reading is still read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gridmuc_botkey::{
    BotPublicKey, BotSecretKey, SignContext, Signature, ack_message, acks_message,
};
use gridmuc_core::codec;
use gridmuc_core::{Reading, ReadingId};
use minidom::Element;
use minidom::rxml::xml_ncname;
use tokio_xmpp::jid::{FullJid, Jid};
use xmpp_parsers::message::{Id, Lang, Message, MessageType};
use xmpp_parsers::ns;
use xmpp_parsers::receipts::{Received, Request};

/// The reading stanza: a human body, the XEP-0323 payload and the random reading id, nothing
/// about the sender. A direct reading (`type='chat'`) asks for a receipt; a groupchat one is
/// acknowledged by the room's reflection.
pub fn reading_message(to: Jid, type_: MessageType, id: ReadingId, reading: &Reading) -> Message {
    let mut payloads = vec![codec::encode_fields(reading)];
    if type_ == MessageType::Chat {
        payloads.push(Request.into());
    }
    let mut m = Message::new_with_type(type_, Some(to)).with_payloads(payloads);
    m.id = Some(Id(id.to_string()));
    m.bodies
        .insert(Lang(String::new()), codec::reading_body(reading));
    m
}

/// The reading id a message carries, if it is one of ours (32 hex digits).
pub fn reading_id(m: &Message) -> Option<ReadingId> {
    m.id.as_ref().and_then(|id| ReadingId::parse(&id.0))
}

/// The condition of an error message (`item-not-found`, `not-acceptable`, …), empty if it
/// names none: what the room says of a message it returned decides what the agent does next.
pub fn error_condition(m: &Message) -> String {
    m.payloads
        .iter()
        .find(|e| e.name() == "error")
        .and_then(|e| e.children().next().map(|c| c.name().to_owned()))
        .unwrap_or_default()
}

/// True if the sender of `m` asked for an XEP-0184 receipt.
pub fn wants_receipt(payloads: &[Element]) -> bool {
    payloads.iter().any(|p| p.is("request", ns::RECEIPTS))
}

/// Namespace of the bot's signed verdict on one reading (wire format v1; still read).
pub const NS_VERDICT: &str = "urn:gridmuc:ack:1";
/// Namespace of the bot's signed cumulative ack, and of a meter's request for it (wire format v2).
pub const NS_ACKS: &str = "urn:gridmuc:ack:2";
/// The most readings one ack may name; a longer one is not read (a bot sends at most its
/// batch size, 16 by default).
pub const MAX_ACKED: usize = 256;
/// Namespace of a reading sealed to the bot's key (wire format v1).
pub const NS_SEALED: &str = "urn:gridmuc:sealed:1";
/// Namespace of the bot's signature over the body of a summary or alert (wire format v1).
pub const NS_SIG: &str = "urn:gridmuc:sig:1";

pub use gridmuc_agent::bot::Verdict;

/// A verdict's two signed fields: the word and the reason (empty when accepted).
fn fields(v: &Verdict) -> (&str, &str) {
    match v {
        Verdict::Accepted => ("accepted", ""),
        Verdict::Refused(reason) => ("refused", reason),
    }
}

/// The signed bytes of an ack listing `verdicts` in this order.
fn acks_bytes(verdicts: &[(ReadingId, Verdict)]) -> Vec<u8> {
    acks_message(verdicts.iter().map(|(id, v)| {
        let (word, reason) = fields(v);
        (id.0, word, reason)
    }))
}

/// The bot's cumulative ack to one nickname (wire format v2): the accepted reading ids in one
/// attribute, each refusal as a child with its reason, one signature over them all (when the
/// bot has a key), and a body for people only when something was refused.
///
/// Accepted ids come first, then refusals, each in the order given; that is the order signed.
pub fn ack_stanza(
    to: FullJid,
    verdicts: &[(ReadingId, Verdict)],
    key: Option<&BotSecretKey>,
) -> Message {
    let (accepted, refused): (Vec<_>, Vec<_>) = verdicts
        .iter()
        .cloned()
        .partition(|(_, v)| *v == Verdict::Accepted);
    let ids: Vec<String> = accepted.iter().map(|(id, _)| id.to_string()).collect();
    let mut el = Element::builder("acks", NS_ACKS);
    if !ids.is_empty() {
        el = el.attr(xml_ncname!("accepted").to_owned(), ids.join(" "));
    }
    let signed: Vec<(ReadingId, Verdict)> = accepted.into_iter().chain(refused).collect();
    if let Some(key) = key {
        let sig = key.sign(SignContext::Acks, &acks_bytes(&signed));
        el = el.attr(xml_ncname!("sig").to_owned(), sig.to_base64());
    }
    let mut reasons = Vec::new();
    for (id, v) in &signed {
        if let Verdict::Refused(reason) = v {
            reasons.push(reason.as_str());
            el = el.append(
                Element::builder("refused", NS_ACKS)
                    .attr(xml_ncname!("id").to_owned(), id.to_string())
                    .attr(xml_ncname!("reason").to_owned(), reason.as_str())
                    .build(),
            );
        }
    }
    let mut m =
        Message::new_with_type(MessageType::Chat, Some(to.into())).with_payloads(vec![el.build()]);
    if !reasons.is_empty() {
        m.bodies.insert(
            Lang(String::new()),
            format!("readings refused: {}", reasons.join(", ")),
        );
    }
    m
}

/// A meter's request, before it leaves a nickname, for the verdicts the bot still holds for it.
pub fn flush_message(to: FullJid) -> Message {
    Message::new_with_type(MessageType::Chat, Some(to.into()))
        .with_payloads(vec![Element::builder("flush", NS_ACKS).build()])
}

/// True if `payloads` ask for the held verdicts ([`flush_message`]).
pub fn is_flush(payloads: &[Element]) -> bool {
    payloads.iter().any(|p| p.is("flush", NS_ACKS))
}

/// Wire format v1's answer to one direct reading: an XEP-0184 receipt only if it was counted,
/// and a verdict signed with the bot's key (when it has one) either way. Bots now send
/// [`ack_stanza`]; meters still read this from a v1 bot (and tests play one).
pub fn verdict_message(
    to: FullJid,
    id: ReadingId,
    verdict: &Verdict,
    key: Option<&BotSecretKey>,
) -> Message {
    let (word, reason) = fields(verdict);
    let mut el = Element::builder("verdict", NS_VERDICT)
        .attr(xml_ncname!("id").to_owned(), id.to_string())
        .attr(xml_ncname!("verdict").to_owned(), word);
    if !reason.is_empty() {
        el = el.attr(xml_ncname!("reason").to_owned(), reason);
    }
    if let Some(key) = key {
        let sig = key.sign(SignContext::Ack, &ack_message(id.0, word, reason));
        el = el.attr(xml_ncname!("sig").to_owned(), sig.to_base64());
    }
    let mut payloads = vec![el.build()];
    let mut m = Message::new_with_type(MessageType::Chat, Some(to.into()));
    match verdict {
        Verdict::Accepted => payloads.insert(0, Received { id: id.to_string() }.into()),
        Verdict::Refused(reason) => {
            m.bodies
                .insert(Lang(String::new()), format!("reading refused: {reason}"));
        }
    }
    m.payloads = payloads;
    m
}

/// How a meter reads an answer from the bot's nickname.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Verdicts the meter may act on (signed by the pinned key, or no key is pinned): the
    /// readings a v2 ack covers, or the one reading of a v1 verdict.
    Verdicts(Vec<(ReadingId, Verdict)>),
    /// An ack, receipt or verdict that is unsigned or wrongly signed although a key is pinned
    /// (whoever holds the bot's nickname is not the pinned bot), naming one reading it claims.
    Unverified(ReadingId),
}

/// The bot's answer carried by `m` from `bot`, checked against the pinned key if there is one.
pub fn answer_from(m: &Message, bot: &FullJid, pinned: Option<&BotPublicKey>) -> Option<Answer> {
    if m.from.as_ref()? != bot || matches!(m.type_, MessageType::Error) {
        return None;
    }
    if let Some(acks) = m.payloads.iter().find(|p| p.is("acks", NS_ACKS)) {
        return acks_answer(acks, pinned);
    }
    let verdict = m.payloads.iter().find(|p| p.is("verdict", NS_VERDICT));
    let Some(v) = verdict else {
        // A bare XEP-0184 receipt: wire format v0, believed only without a pinned key.
        let id = m
            .payloads
            .iter()
            .find_map(|p| Received::try_from(p.clone()).ok())
            .and_then(|r| ReadingId::parse(&r.id))?;
        return Some(match pinned {
            None => Answer::Verdicts(vec![(id, Verdict::Accepted)]),
            Some(_) => Answer::Unverified(id),
        });
    };
    let id = v.attr("id").and_then(ReadingId::parse)?;
    let reason = v.attr("reason").unwrap_or_default();
    let verdict = match v.attr("verdict")? {
        "accepted" => Verdict::Accepted,
        "refused" => Verdict::Refused(reason.to_owned()),
        _ => return None,
    };
    if let Some(key) = pinned {
        let (word, reason) = fields(&verdict);
        let signed = v
            .attr("sig")
            .and_then(|s| Signature::from_base64(s).ok())
            .is_some_and(|sig| {
                key.verify(SignContext::Ack, &ack_message(id.0, word, reason), &sig)
                    .is_ok()
            });
        if !signed {
            return Some(Answer::Unverified(id));
        }
    }
    Some(Answer::Verdicts(vec![(id, verdict)]))
}

/// A v2 ack: every id it lists with its verdict, in the signed order, if the signature holds
/// (or no key is pinned); `None` if it is malformed, names nothing or names too much.
fn acks_answer(acks: &Element, pinned: Option<&BotPublicKey>) -> Option<Answer> {
    let mut verdicts = Vec::new();
    for id in acks.attr("accepted").unwrap_or_default().split_whitespace() {
        verdicts.push((ReadingId::parse(id)?, Verdict::Accepted));
        if verdicts.len() > MAX_ACKED {
            return None;
        }
    }
    for r in acks.children().filter(|c| c.is("refused", NS_ACKS)) {
        let id = ReadingId::parse(r.attr("id")?)?;
        verdicts.push((id, Verdict::Refused(r.attr("reason")?.to_owned())));
        if verdicts.len() > MAX_ACKED {
            return None;
        }
    }
    let first = verdicts.first()?.0;
    if let Some(key) = pinned {
        let signed = acks
            .attr("sig")
            .and_then(|s| Signature::from_base64(s).ok())
            .is_some_and(|sig| {
                key.verify(SignContext::Acks, &acks_bytes(&verdicts), &sig)
                    .is_ok()
            });
        if !signed {
            return Some(Answer::Unverified(first));
        }
    }
    Some(Answer::Verdicts(verdicts))
}

/// A direct reading whose value only the bot can read: the XEP-0323 `<fields/>` sealed with
/// HPKE to the bot's key, bound to the reading id, beside a body that holds no value.
pub fn sealed_reading_message(
    to: Jid,
    id: ReadingId,
    reading: &Reading,
    key: &BotPublicKey,
    rng: &mut impl rand::CryptoRng,
) -> Message {
    let fields = String::from(&codec::encode_fields(reading));
    let sealed = key.seal(&id.0.to_be_bytes(), fields.as_bytes(), rng);
    let el = Element::builder("sealed", NS_SEALED)
        .append(BASE64.encode(sealed))
        .build();
    let mut m =
        Message::new_with_type(MessageType::Chat, Some(to)).with_payloads(vec![el, Request.into()]);
    m.id = Some(Id(id.to_string()));
    m.bodies
        .insert(Lang(String::new()), "sealed reading".to_owned());
    m
}

/// Why a sealed reading could not be read.
#[derive(Debug, thiserror::Error)]
pub enum UnsealError {
    /// Not base64.
    #[error("sealed payload is not base64")]
    Base64,
    /// Not sealed to our key, tampered with, or bound to another reading id.
    #[error("sealed payload does not open with the bot's key")]
    Open,
}

/// The sealed `<fields/>` of a direct reading, opened with the bot's key, as raw XML bytes.
pub fn unseal(
    payloads: &[Element],
    id: ReadingId,
    key: &BotSecretKey,
) -> Option<Result<Vec<u8>, UnsealError>> {
    let el = payloads.iter().find(|p| p.is("sealed", NS_SEALED))?;
    let text: String = el.text().chars().filter(|c| !c.is_whitespace()).collect();
    Some(
        BASE64
            .decode(text)
            .map_err(|_| UnsealError::Base64)
            .and_then(|sealed| {
                key.open(&id.0.to_be_bytes(), &sealed)
                    .map_err(|_| UnsealError::Open)
            }),
    )
}

/// Signs the body of a summary or alert so any listener holding the bot's public key can check it.
pub fn post_signature(body: &str, key: &BotSecretKey) -> Element {
    let sig = key.sign(SignContext::Post, body.as_bytes());
    Element::builder("sig", NS_SIG)
        .append(sig.to_base64())
        .build()
}

/// Whether a post's body carries a valid signature by `key`.
pub fn post_signed_by(m: &Message, body: &str, key: &BotPublicKey) -> bool {
    m.payloads
        .iter()
        .find(|p| p.is("sig", NS_SIG))
        .and_then(|p| Signature::from_base64(p.text().trim()).ok())
        .is_some_and(|sig| key.verify(SignContext::Post, body.as_bytes(), &sig).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> FullJid {
        FullJid::new(s).expect("a full JID")
    }

    /// The ack as the meter receives it: from the bot's occupant JID.
    fn received(mut m: Message, from: &FullJid) -> Message {
        m.from = Some(from.clone().into());
        m
    }

    #[test]
    fn a_signed_ack_lists_every_verdict_and_only_the_pinned_key_is_believed() {
        let mut rng = rand::rng();
        let key = BotSecretKey::generate(&mut rng);
        let pinned = key.public();
        let bot = jid("hood@rooms.grid.test/substation");
        let verdicts = vec![
            (ReadingId(1), Verdict::Accepted),
            (ReadingId(2), Verdict::Refused("late".into())),
            (ReadingId(3), Verdict::Accepted),
        ];
        let m = ack_stanza(
            jid("hood@rooms.grid.test/amber-otter-1"),
            &verdicts,
            Some(&key),
        );
        let m = received(m, &bot);
        // Accepted first, then refusals: the order signed.
        let want = vec![
            (ReadingId(1), Verdict::Accepted),
            (ReadingId(3), Verdict::Accepted),
            (ReadingId(2), Verdict::Refused("late".into())),
        ];
        assert_eq!(
            answer_from(&m, &bot, Some(&pinned)),
            Some(Answer::Verdicts(want.clone()))
        );
        assert_eq!(
            m.bodies.values().next().map(String::as_str),
            Some("readings refused: late")
        );
        // Another bot's key, or an edited list, is not believed.
        let other = BotSecretKey::generate(&mut rng).public();
        assert_eq!(
            answer_from(&m, &bot, Some(&other)),
            Some(Answer::Unverified(ReadingId(1)))
        );
        let xml = String::from(&Element::from(m))
            .replace(&ReadingId(3).to_string(), &ReadingId(4).to_string());
        let edited = Message::try_from(xml.parse::<Element>().expect("xml")).expect("message");
        assert_eq!(
            answer_from(&edited, &bot, Some(&pinned)),
            Some(Answer::Unverified(ReadingId(1)))
        );
        // Without a pinned key the list is taken as it is; from anyone else, not at all.
        assert_eq!(
            answer_from(&edited, &bot, None),
            Some(Answer::Verdicts(vec![
                (ReadingId(1), Verdict::Accepted),
                (ReadingId(4), Verdict::Accepted),
                (ReadingId(2), Verdict::Refused("late".into())),
            ]))
        );
        let impostor = jid("hood@rooms.grid.test/mallory");
        assert_eq!(answer_from(&received(edited, &impostor), &bot, None), None);
    }

    #[test]
    fn a_flush_request_is_recognised_and_an_empty_or_oversized_ack_is_not_read() {
        let bot = jid("hood@rooms.grid.test/substation");
        assert!(is_flush(&flush_message(bot.clone()).payloads));
        assert!(!is_flush(&ack_stanza(bot.clone(), &[], None).payloads));
        let empty = received(ack_stanza(bot.clone(), &[], None), &bot);
        assert_eq!(answer_from(&empty, &bot, None), None);
        let many: Vec<(ReadingId, Verdict)> = (0..=MAX_ACKED as u128)
            .map(|i| (ReadingId(i), Verdict::Accepted))
            .collect();
        let long = received(ack_stanza(bot.clone(), &many, None), &bot);
        assert_eq!(answer_from(&long, &bot, None), None);
    }
}
