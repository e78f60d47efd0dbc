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

/// What any client sees of a provisioned room, on either server: a semi-anonymous, persistent,
/// hidden room without occupant-id or archive, where house-a and house-b (passwords pw-a and
/// pw-b) join as plain participants, a groupchat shows only the sender's nickname, and nobody
/// hears the other join. Returns both clients, in the room as nick-a and nick-b.
pub fn a_client_sees_an_anonymous_room(
    addr: SocketAddr,
    domain: &str,
    room: &str,
) -> (RawXmpp, RawXmpp) {
    let mut a = login(addr, domain, "house-a", "pw-a");
    let mut b = login(addr, domain, "house-b", "pw-b");
    let info = disco_info(&mut a, room);
    for feature in ["muc_semianonymous", "muc_persistent", "muc_hidden"] {
        assert!(info.contains(feature), "{feature} missing: {info}");
    }
    for absent in ["occupant-id", "muc_nonanonymous", "urn:xmpp:mam"] {
        assert!(!info.contains(absent), "{absent}: {info}");
    }
    for (client, nick) in [(&mut b, "nick-b"), (&mut a, "nick-a")] {
        let me = joined(client, room, nick);
        assert!(me.contains("role='participant'"), "{me}");
        assert!(!me.contains("occupant-id"), "{me}");
    }
    a.send(&format!(
        "<message type='groupchat' to='{room}'><body>1.84 kW</body></message>"
    ))
    .unwrap();
    // Everything B receives after its join, up to A's reading.
    let mut got = String::new();
    while !got.contains("1.84 kW") {
        got.push_str(&read_until(&mut b, "</message>"));
    }
    assert!(got.contains(&format!("from='{room}/nick-a'")), "{got}");
    assert!(!got.contains("occupant-id"), "{got}");
    assert!(!got.contains("house-a"), "real JID leaked: {got}");
    // Presence of others goes to moderators only: B never learns that A joined.
    assert!(!got.contains("<presence"), "{got}");
    (a, b)
}
