//! One XMPP session, driven directly on tokio-xmpp's public `StanzaStream`.
//!
//! tokio-xmpp 6.0.0's `Client` loses a wake-up: it splits its `StanzaStream` into halves that
//! share a mutex, and the receiving half returns `Pending` without registering the waker when
//! a send holds the lock, so a stanza arriving while we send can leave the client asleep for
//! good (DESIGN.md, "Root cause of the receive stall"). `StanzaStream` itself has no mutex and
//! no extra worker task; [`Session`] is the thin front the agents need on top of it: typed
//! events, the bound JID, a send that returns once the stanza is on the wire, and a close.

use futures::Stream;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::stanzastream::{self, StanzaStage, StanzaState, StanzaStream, StreamEvent};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Event, Stanza};

/// Stanzas queued in each direction before the other side waits (tokio-xmpp's `Client` uses 16).
const QUEUE_DEPTH: usize = 256;

/// A reconnecting c2s session: a `Stream` of [`Event`]s plus [`Session::send_stanza`].
#[derive(Debug)]
pub struct Session {
    stream: StanzaStream,
    bound: Option<FullJid>,
    features: Option<xmpp_parsers::stream_features::StreamFeatures>,
}

impl Session {
    /// Starts logging in through `connector`; the first event is `Online` once bound.
    pub fn new<C: ServerConnector>(connector: C, jid: Jid, password: String) -> Session {
        Session {
            stream: StanzaStream::new_c2s(connector, jid, password, Timeouts::tight(), QUEUE_DEPTH),
            bound: None,
            features: None,
        }
    }

    /// The JID the server bound this session to, once online.
    pub fn bound_jid(&self) -> Option<&FullJid> {
        self.bound.as_ref()
    }

    /// Queues a stanza and returns once it has been written to the transport.
    pub async fn send_stanza(&mut self, mut stanza: Stanza) -> io::Result<()> {
        ensure_id(&mut stanza);
        let mut token = self.stream.send(Box::new(stanza)).await;
        match token.wait_for(StanzaStage::Sent).await {
            Some(StanzaState::Sent { .. } | StanzaState::Acked { .. }) => Ok(()),
            Some(StanzaState::Failed { error }) => Err(error.into_io_error()),
            Some(StanzaState::Queued | StanzaState::Dropped) | None => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "stream closed before the stanza was sent",
            )),
        }
    }

    /// Closes the stream cleanly (callers bound the wait: see [`crate::connect::close`]).
    pub async fn send_end(self) {
        self.stream.close().await;
    }
}

/// Gives a stanza a random id if it has none, as tokio-xmpp's `Client` does.
fn ensure_id(stanza: &mut Stanza) {
    let fresh = || format!("{}", rand::random::<u64>());
    match stanza {
        Stanza::Iq(iq) => {
            let id = iq.id_mut();
            if id.is_empty() {
                *id = fresh();
            }
        }
        Stanza::Message(m) => {
            m.id.get_or_insert_with(|| xmpp_parsers::message::Id(fresh()));
        }
        Stanza::Presence(p) => {
            p.id.get_or_insert_with(fresh);
        }
    }
}

impl Stream for Session {
    type Item = Event;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        let this = self.get_mut();
        loop {
            let event = ready!(Pin::new(&mut this.stream).poll_next(cx));
            return Poll::Ready(Some(match event {
                None => return Poll::Ready(None),
                Some(stanzastream::Event::Stanza(s)) => Event::Stanza(s),
                Some(stanzastream::Event::Stream(StreamEvent::Reset {
                    bound_jid,
                    features,
                })) => {
                    this.bound = bound_jid.clone().try_into_full().ok();
                    this.features = Some(features.clone());
                    Event::Online {
                        bound_jid,
                        features,
                        resumed: false,
                    }
                }
                Some(stanzastream::Event::Stream(StreamEvent::Resumed)) => {
                    match (&this.bound, &this.features) {
                        (Some(jid), Some(features)) => Event::Online {
                            bound_jid: jid.clone().into(),
                            features: features.clone(),
                            resumed: true,
                        },
                        // Resumed before ever being bound cannot happen; ignore it if it does.
                        _ => continue,
                    }
                }
                // Informational: the stream is reconnecting and may yet resume.
                Some(stanzastream::Event::Stream(StreamEvent::Suspended)) => continue,
            }));
        }
    }
}
