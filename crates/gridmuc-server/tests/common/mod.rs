//! The raw client of `gridmuc_server::raw`, with the test-side conveniences: a failed
//! login or join fails the test at once, with the server's own words.
#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a part; tests fail loudly

use std::net::SocketAddr;

#[allow(unused_imports)] // each test binary uses a part
pub use gridmuc_server::raw::{DEFAULT_TIMEOUT, Join, RawError, RawXmpp};

/// Logs `user` in over plaintext SASL PLAIN, or fails the test.
pub fn login(addr: SocketAddr, domain: &str, user: &str, password: &str) -> RawXmpp {
    RawXmpp::login(addr, domain, user, password)
        .unwrap_or_else(|e| panic!("login of {user} failed: {e}"))
}

/// Joins and returns the self-presence, failing the test if the room refuses.
pub fn joined(client: &mut RawXmpp, room: &str, nick: &str) -> String {
    match client.join(room, nick).unwrap() {
        Join::Joined(presence) => presence,
        refused => panic!("join of {room}/{nick} refused: {refused:?}"),
    }
}

/// Joins and returns the refusal's error condition, failing the test if it was admitted.
pub fn refused(client: &mut RawXmpp, room: &str, nick: &str) -> (String, String) {
    match client.join(room, nick).unwrap() {
        Join::Refused {
            condition,
            presence,
        } => (condition, presence),
        Join::Joined(presence) => panic!("join of {room}/{nick} admitted: {presence}"),
    }
}

/// Reads whole stanzas until one contains `needle`, within the default timeout.
pub fn read_until(client: &mut RawXmpp, needle: &str) -> String {
    client
        .read_until(needle, DEFAULT_TIMEOUT)
        .unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}"))
}

/// The disco#info answer of `jid`, whole: what a room tells any client about itself.
pub fn disco_info(client: &mut RawXmpp, jid: &str) -> String {
    client
        .iq(
            "disco",
            &format!(
                "<iq type='get' id='disco' to='{jid}'>\
                 <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            ),
        )
        .unwrap()
}
