//! Two private Prosody instances federated over s2s/TLS: a house on `homes.test` joins the
//! neighbourhood room on `rooms.grid.test` and stays anonymous there.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{joined, login, read_until, refused};
use gridmuc_server::{Federation, PrivateServer, RoomPolicy, ServerConfig};

/// Plaintext c2s with SASL PLAIN, so the raw client can log in; s2s stays TLS-only.
fn plaintext(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        require_tls: false,
        ..config
    }
}

fn start_pair(homes: ServerConfig) -> Federation {
    Federation::start(plaintext(Federation::grid_config()), plaintext(homes)).unwrap()
}

/// How the grid's server sees its s2s sessions: peer, TLS, certificate status.
fn s2s_sessions(server: &PrivateServer) -> String {
    server
        .admin_lua(
            r#"local seen = {}
            for session in pairs(prosody.incoming_s2s) do
              seen[#seen + 1] = table.concat({ "in", tostring(session.from_host),
                tostring(session.secure), tostring(session.cert_identity_status) }, ":")
            end
            for _, host in pairs(prosody.hosts) do
              for remote, session in pairs(host.s2sout or {}) do
                seen[#seen + 1] = table.concat({ "out", remote, tostring(session.secure),
                  tostring(session.cert_identity_status) }, ":")
              end
            end
            table.sort(seen)
            return table.concat(seen, " ")"#,
        )
        .unwrap()
}

#[test]
fn a_house_on_another_server_joins_the_room_anonymously() {
    let pair = start_pair(Federation::homes_config());
    let (grid, homes) = (pair.grid(), pair.homes());
    assert_eq!(grid.c2s_addr().ip().to_string(), "127.0.0.2");
    assert_eq!(homes.c2s_addr().ip().to_string(), "127.0.0.3");
    assert_eq!(grid.s2s_addr().unwrap().ip(), grid.c2s_addr().ip());
    assert_eq!(grid.ca_cert_pem(), homes.ca_cert_pem(), "one test CA");

    grid.register("substation", "pw-bot").unwrap();
    homes.register("house-a", "pw-a").unwrap();
    let room = grid
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    assert_eq!(room, "neighbourhood@rooms.grid.test");

    let mut bot = login(grid.c2s_addr(), grid.domain(), "substation", "pw-bot");
    let bot_self = joined(&mut bot, &room, "substation");
    assert!(bot_self.contains("role='participant'"), "{bot_self}");

    // The house logs in to its own server only; the room is reached over s2s, and the
    // meter's pre-publish check (disco#info) sees the privacy settings from there too.
    let mut house = login(homes.c2s_addr(), homes.domain(), "house-a", "pw-a");
    let info = house
        .iq(
            "disco",
            &format!(
                "<iq type='get' id='disco' to='{room}'>\
                 <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
            ),
        )
        .unwrap();
    assert!(info.contains("muc_semianonymous"), "{info}");
    assert!(!info.contains("occupant-id"), "{info}");
    assert!(!info.contains("muc_nonanonymous"), "{info}");
    let house_self = joined(&mut house, &room, "quiet-otter");
    assert!(house_self.contains("code='110'"), "{house_self}");
    assert!(house_self.contains("role='participant'"), "{house_self}");
    assert!(!house_self.contains("occupant-id"), "{house_self}");

    house
        .send(&format!(
            "<message type='groupchat' to='{room}' id='r1'><body>1.84 kW</body></message>"
        ))
        .unwrap();
    let mut got = String::new();
    while !got.contains("1.84 kW") {
        got.push_str(&read_until(&mut bot, "</message>"));
    }
    assert!(got.contains(&format!("from='{room}/quiet-otter'")), "{got}");
    assert!(!got.contains("occupant-id"), "{got}");
    for leak in ["house-a", "homes.test", "jid="] {
        assert!(!got.contains(leak), "real JID leaked ({leak}): {got}");
    }
    assert!(
        !got.contains("<presence"),
        "presence goes to moderators only: {got}"
    );

    // The remote occupant really is the homes.test account, known to the room alone.
    let occupant = grid
        .admin_lua(&format!(
            r#"local r = prosody.hosts["rooms.grid.test"].modules.muc.get_room_from_jid("{room}")
            local o = r:get_occupant_by_nick("{room}/quiet-otter")
            return o.bare_jid .. " " .. o.role"#
        ))
        .unwrap();
    assert_eq!(occupant, "Result: house-a@homes.test participant");

    // Both directions ran over TLS with certificates verified against the test CA.
    let sessions = s2s_sessions(grid);
    assert!(
        sessions.contains("in:homes.test:true:valid"),
        "incoming s2s from homes.test: {sessions}"
    );
    assert!(
        sessions.contains("out:homes.test:true:valid"),
        "outgoing s2s to homes.test: {sessions}"
    );
    pair.stop().unwrap();
}

#[test]
fn a_members_only_room_admits_enrolled_remote_houses_only() {
    let pair = start_pair(Federation::homes_config());
    let (grid, homes) = (pair.grid(), pair.homes());
    let enrolled = homes.register("house-a", "pw-a").unwrap();
    homes.register("house-b", "pw-b").unwrap();
    let room = grid
        .provision_room(
            "closed",
            &RoomPolicy {
                members_only: true,
                members: vec![enrolled],
                ..RoomPolicy::default()
            },
        )
        .unwrap();
    let mut a = login(homes.c2s_addr(), homes.domain(), "house-a", "pw-a");
    let admitted = joined(&mut a, &room, "n1");
    assert!(admitted.contains("role='participant'"), "{admitted}");
    assert!(!admitted.contains("occupant-id"), "{admitted}");
    let mut b = login(homes.c2s_addr(), homes.domain(), "house-b", "pw-b");
    let (condition, presence) = refused(&mut b, &room, "n2");
    assert_eq!(condition, "registration-required", "{presence}");
}

#[test]
fn s2s_recovers_when_the_grid_server_restarts() {
    let mut pair = start_pair(Federation::homes_config());
    pair.grid().register("substation", "pw-bot").unwrap();
    pair.homes().register("house-a", "pw-a").unwrap();
    let room = pair
        .grid()
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let (homes_addr, homes_domain) = (pair.homes().c2s_addr(), pair.homes().domain().to_owned());
    let mut house = login(homes_addr, &homes_domain, "house-a", "pw-a");
    assert!(joined(&mut house, &room, "quiet-otter").contains("code='110'"));

    // A crash of the grid's server (SIGKILL): the houses' server and its c2s sessions stay up.
    let s2s = pair.grid().s2s_addr();
    pair.grid_mut().restart().unwrap();
    assert_eq!(pair.grid().s2s_addr(), s2s, "the route stays valid");

    let grid = pair.grid();
    let mut bot = login(grid.c2s_addr(), grid.domain(), "substation", "pw-bot");
    assert!(joined(&mut bot, &room, "substation").contains("role='participant'"));
    // The house rejoins (a fresh nickname, as DESIGN.md says) over a new s2s connection.
    let rejoined = joined(&mut house, &room, "calm-heron");
    assert!(rejoined.contains("role='participant'"), "{rejoined}");
    house
        .send(&format!(
            "<message type='groupchat' to='{room}'><body>0.42 kW</body></message>"
        ))
        .unwrap();
    let mut got = String::new();
    while !got.contains("0.42 kW") {
        got.push_str(&read_until(&mut bot, "</message>"));
    }
    assert!(got.contains(&format!("from='{room}/calm-heron'")), "{got}");
    assert!(!got.contains("homes.test"), "{got}");
}

#[test]
fn a_peer_with_an_untrusted_certificate_is_refused() {
    let pair = start_pair(ServerConfig {
        untrusted_cert: true,
        ..Federation::homes_config()
    });
    let (grid, homes) = (pair.grid(), pair.homes());
    homes.register("house-a", "pw-a").unwrap();
    let room = grid
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let mut house = login(homes.c2s_addr(), homes.domain(), "house-a", "pw-a");
    let (_, refused) = refused(&mut house, &room, "quiet-otter");
    assert!(refused.contains("type='error'"), "{refused}");
    assert!(
        refused.contains("certificate is not trusted"),
        "refused for the certificate: {refused}"
    );
    let occupants = grid
        .admin_lua(&format!(
            r#"local r = prosody.hosts["rooms.grid.test"].modules.muc.get_room_from_jid("{room}")
            local n = 0
            for _ in r:each_occupant() do n = n + 1 end
            return n"#
        ))
        .unwrap();
    assert_eq!(occupants, "Result: 0");
}

#[test]
fn each_domain_needs_its_own_loopback_address() {
    let err = Federation::start(
        Federation::grid_config(),
        ServerConfig {
            bind: Federation::grid_config().bind,
            ..Federation::homes_config()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("own loopback address"), "{err}");

    let err = Federation::start(
        Federation::grid_config(),
        ServerConfig {
            bind: [10, 0, 0, 3].into(),
            ..Federation::homes_config()
        },
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("only loopback"), "{err}");
}
