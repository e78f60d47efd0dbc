//! Readings on the wire with acknowledged delivery: the stanza every sender writes (meters, and
//! neighbourhood bots feeding a district), sealed to the bot's key when one is pinned, and the
//! bot's signed verdicts (an XEP-0184 receipt only for a counted reading) that empty outboxes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use gridmuc_botkey::{BotPublicKey, BotSecretKey, SignContext, Signature, ack_message};
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

/// True if the sender of `m` asked for an XEP-0184 receipt.
pub fn wants_receipt(payloads: &[Element]) -> bool {
    payloads.iter().any(|p| p.is("request", ns::RECEIPTS))
}

/// Namespace of the bot's signed verdict on one reading (wire format v1).
pub const NS_VERDICT: &str = "urn:gridmuc:ack:1";
/// Namespace of a reading sealed to the bot's key (wire format v1).
pub const NS_SEALED: &str = "urn:gridmuc:sealed:1";
/// Namespace of the bot's signature over the body of a summary or alert (wire format v1).
pub const NS_SIG: &str = "urn:gridmuc:sig:1";

/// The bot's word on one reading: counted, or refused for a reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Counted (or already counted: a resent copy).
    Accepted,
    /// Not counted, and resending will not change that; the reason is a [`gridmuc_core::Rejection`] kind.
    Refused(String),
}

impl Verdict {
    fn fields(&self) -> (&str, &str) {
        match self {
            Verdict::Accepted => ("accepted", ""),
            Verdict::Refused(reason) => ("refused", reason),
        }
    }
}

/// The bot's answer to a direct reading: an XEP-0184 receipt only if it was counted, and a
/// verdict signed with the bot's key (when it has one) either way, so a meter neither drops a
/// refused reading silently nor believes an impostor's receipt.
pub fn verdict_message(
    to: FullJid,
    id: ReadingId,
    verdict: &Verdict,
    key: Option<&BotSecretKey>,
) -> Message {
    let (word, reason) = verdict.fields();
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
    /// A verdict the meter may act on (signed by the pinned key, or no key is pinned).
    Verdict(ReadingId, Verdict),
    /// A receipt or verdict that is unsigned or wrongly signed although a key is pinned:
    /// whoever holds the bot's nickname is not the pinned bot.
    Unverified(ReadingId),
}

/// The bot's answer carried by `m` from `bot`, checked against the pinned key if there is one.
pub fn answer_from(m: &Message, bot: &FullJid, pinned: Option<&BotPublicKey>) -> Option<Answer> {
    if m.from.as_ref()? != bot || matches!(m.type_, MessageType::Error) {
        return None;
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
            None => Answer::Verdict(id, Verdict::Accepted),
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
        let (word, reason) = verdict.fields();
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
    Some(Answer::Verdict(id, verdict))
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
