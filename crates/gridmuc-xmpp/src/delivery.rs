//! Readings on the wire with acknowledged delivery: the stanza every sender writes (meters, and
//! neighbourhood bots feeding a district) and the XEP-0184 receipts that empty their outboxes.

use gridmuc_core::codec;
use gridmuc_core::{Reading, ReadingId};
use minidom::Element;
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

/// The receipt for reading `id`, to the occupant that sent it.
pub fn receipt(to: FullJid, id: ReadingId) -> Message {
    Message::new_with_type(MessageType::Chat, Some(to.into()))
        .with_payloads(vec![Received { id: id.to_string() }.into()])
}

/// The reading a receipt from `recipient` acknowledges.
pub fn receipt_from(m: &Message, recipient: &FullJid) -> Option<ReadingId> {
    if m.from.as_ref()? != recipient || matches!(m.type_, MessageType::Error) {
        return None;
    }
    m.payloads
        .iter()
        .find_map(|p| Received::try_from(p.clone()).ok())
        .and_then(|r| ReadingId::parse(&r.id))
}
