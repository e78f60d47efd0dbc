//! A plain client that only listens: an operator's inbox, or any chat client sitting in the room.
//!
//! The demo uses it for the operator, tests use it to see what a standard client would see.

use crate::connect::{self, ConnectConfig, ConnectError};
use crate::muc::{self, MucError};
use futures::StreamExt;
use gridmuc_core::codec::{self, NS_ALERT};
use gridmuc_core::{Alert, NickGenerator};
use std::future::Future;
use tokio::sync::mpsc;
use tokio_xmpp::jid::BareJid;
use tokio_xmpp::{Event, Stanza};
use xmpp_parsers::message::{Lang, Message, MessageType};

/// One message as a person's client would show it, plus the alert payload a program would read.
#[derive(Clone, Debug)]
pub struct Heard {
    /// Sent to the room (`groupchat`) rather than to us.
    pub groupchat: bool,
    /// Sender address as the server presents it (`room/nick` for the room).
    pub from: String,
    /// Human text; empty if the message had no body.
    pub body: String,
    /// The gridmuc alert payload, if any.
    pub alert: Option<Alert>,
}

/// Why a listener stopped.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Could not log in.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// Could not join the room or send.
    #[error(transparent)]
    Muc(#[from] MucError),
    /// A JID is invalid.
    #[error("invalid JID {0:?}")]
    BadJid(String),
}

/// What a listener does besides listening.
#[derive(Clone, Debug, Default)]
pub struct ListenPlan {
    /// Join this room under a random nickname (as a chat client would).
    pub room: Option<String>,
    /// Send `(to, body)` once, e.g. `status` to the bot.
    pub say: Option<(String, String)>,
}

/// Logs in, optionally joins a room and says something, and forwards every message until `shutdown`.
pub async fn listen(
    cfg: ConnectConfig,
    plan: ListenPlan,
    tx: mpsc::UnboundedSender<Heard>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ListenError> {
    let mut client = connect::connect(&cfg).await?;
    if let Some(room) = &plan.room {
        let room = BareJid::new(room).map_err(|_| ListenError::BadJid(room.clone()))?;
        let nick = NickGenerator.generate(&mut rand::rng());
        muc::join(&mut client, &room, &nick, cfg.timeout, drop).await?;
    }
    if let Some((to, body)) = plan.say {
        let to = BareJid::new(&to).map_err(|_| ListenError::BadJid(to.clone()))?;
        let mut m = Message::chat(Some(to.into()));
        m.bodies.insert(Lang(String::new()), body);
        muc::send(&mut client, m.into(), cfg.timeout).await?;
    }
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            ev = client.next() => match ev {
                Some(Event::Stanza(Stanza::Message(m))) => {
                    let _ = tx.send(heard(&m));
                }
                Some(_) => {}
                None => break,
            }
        }
    }
    connect::close(client).await;
    Ok(())
}

/// A message as a client shows it: body and decoded alert payload.
pub(crate) fn heard(m: &Message) -> Heard {
    Heard {
        groupchat: m.type_ == MessageType::Groupchat,
        from: m.from.as_ref().map(ToString::to_string).unwrap_or_default(),
        body: m
            .get_best_body_cloned(vec![])
            .map(|(_, b)| b)
            .unwrap_or_default(),
        alert: m
            .payloads
            .iter()
            .find(|e| e.is("alert", NS_ALERT))
            .and_then(|e| codec::decode_alert(e).ok()),
    }
}
