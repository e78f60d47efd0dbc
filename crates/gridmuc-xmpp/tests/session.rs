//! The session under load on the real private Prosody: sending and receiving at once, one
//! stanza per millisecond each way, on a multi-threaded runtime, never stalls.
//!
//! tokio-xmpp 6.0.0's `Client` lost a wake-up when a stanza arrived while it sent (DESIGN.md,
//! "Root cause of the receive stall"): 8 of 8 such runs stalled within 3 s. [`Session`] drives
//! the `StanzaStream` directly.

// Tests may unwrap (house rule); helpers outside `#[test]` fns need saying so.
#![allow(clippy::unwrap_used)]

use futures::StreamExt;
use gridmuc_server::{RoomPolicy, ServerConfig};
use gridmuc_xmpp::connect::{self, connect};
use gridmuc_xmpp::session::Session;
use std::time::Duration;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_xmpp::jid::Jid;
use tokio_xmpp::{Event, Stanza};
use xmpp_parsers::message::{Lang, Message, MessageType};

#[path = "../../../tests/common/mod.rs"]
mod common;
use common::{TestServer, runtime, users};

/// Stanzas each session sends (and must receive from the other).
const N: usize = 3_000;

/// Sends `N` messages to `peer`, one per millisecond, while counting those that arrive.
async fn pump(mut session: Session, peer: Jid) -> (usize, usize, Session) {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut sent, mut got) = (0, 0);
    while got < N {
        tokio::select! {
            _ = tick.tick(), if sent < N => {
                let mut m = Message::new_with_type(MessageType::Chat, Some(peer.clone()));
                m.bodies.insert(Lang(String::new()), format!("load {sent}"));
                session.send_stanza(m.into()).await.unwrap();
                sent += 1;
            }
            event = session.next() => match event {
                Some(Event::Stanza(Stanza::Message(m)))
                    if m.bodies.values().any(|b| b.starts_with("load ")) => got += 1,
                Some(_) => {}
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    (sent, got, session)
}

#[test]
fn sending_and_receiving_one_stanza_per_millisecond_each_way_never_stalls() {
    let users = users(&[], 2);
    let hood = TestServer::start(ServerConfig::default(), &users, &RoomPolicy::default());
    let rt = runtime();
    let ((sent_a, got_a), (sent_b, got_b)) = rt.block_on(async {
        let a = connect(&hood.account("house0", Duration::from_secs(10)))
            .await
            .unwrap();
        let b = connect(&hood.account("house1", Duration::from_secs(10)))
            .await
            .unwrap();
        let to_a: Jid = a.bound_jid().unwrap().clone().into();
        let to_b: Jid = b.bound_jid().unwrap().clone().into();
        let ta = tokio::spawn(pump(a, to_b));
        let tb = tokio::spawn(pump(b, to_a));
        let (sent_a, got_a, a) = ta.await.unwrap();
        let (sent_b, got_b, b) = tb.await.unwrap();
        connect::close(a).await;
        connect::close(b).await;
        ((sent_a, got_a), (sent_b, got_b))
    });
    assert_eq!((sent_a, sent_b), (N, N));
    assert_eq!((got_a, got_b), (N, N), "a session stopped delivering");
}
