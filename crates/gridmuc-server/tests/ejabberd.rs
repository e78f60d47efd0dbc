//! The private ejabberd 23.01, tested for real: its user, accounts in bulk, room privacy,
//! what holds of one occupant per account, the reserved bot nickname, a two-node cluster.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use common::{a_client_sees_an_anonymous_room, joined, login, read_until, refused};
use gridmuc_server::{EjabberdCluster, PrivateServer, RoomPolicy, ServerConfig, ServerKind};

/// A plaintext ejabberd on loopback, so the raw client (SASL PLAIN) can log in.
fn plaintext_ejabberd() -> PrivateServer {
    PrivateServer::start(ServerConfig {
        kind: ServerKind::Ejabberd,
        require_tls: false,
        ..ServerConfig::default()
    })
    .unwrap()
}

/// The real user id of a running process.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn ejabberd_uid() -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd.lines().find(|l| l.starts_with("ejabberd:")).unwrap();
    line.split(':').nth(2).unwrap().parse().unwrap()
}

#[test]
fn ejabberd_runs_as_its_user_and_dies_with_the_value() {
    let server = PrivateServer::start(ServerConfig {
        kind: ServerKind::Ejabberd,
        ..ServerConfig::default()
    })
    .unwrap();
    assert_eq!(server.kind(), ServerKind::Ejabberd);
    let pid = server.pid().unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert!(comm.starts_with("beam"), "{comm}");
    let am_root = uid_of(std::process::id()) == 0;
    if am_root {
        assert_eq!(
            uid_of(pid),
            ejabberd_uid(),
            "root hands the node to the ejabberd user"
        );
    }
    // The distribution port listens on loopback only, as c2s does.
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("{127,0,0,1}"), "{cmdline:?}");
    assert!(cmdline.contains("-start_epmd\0false"), "{cmdline:?}");
    assert!(!cmdline.contains("setcookie"), "the cookie stays in a file");
    let answer = server.admin_api("status", "{}").unwrap();
    assert!(answer.contains("ejabberd 23.01"), "{answer}");
    let dir = server.work_dir().to_owned();
    drop(server);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists(), "{dir:?} left behind");
}

#[test]
fn ejabberd_creates_a_thousand_accounts_and_they_log_in() {
    let server = plaintext_ejabberd();
    let accounts: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("house-{i:04}"), gridmuc_server::generate_password()))
        .collect();
    let started = std::time::Instant::now();
    server.register_many(&accounts).unwrap();
    eprintln!("ejabberd: 1000 accounts in {:?}", started.elapsed());
    let users = server
        .admin_api("registered_users", r#"{"host":"grid.test"}"#)
        .unwrap();
    // 1000 houses and the room admin.
    assert_eq!(users.matches("\"house-").count(), 1000, "{users}");
    assert_eq!(users.matches(',').count(), 1000, "{users}");
    for (user, password) in [&accounts[0], &accounts[999]] {
        login(server.c2s_addr(), server.domain(), user, password);
    }
    // Registering again resets the password, as on Prosody.
    server.register("house-0000", "new password").unwrap();
    login(
        server.c2s_addr(),
        server.domain(),
        "house-0000",
        "new password",
    );
    assert!(
        gridmuc_server::raw::RawXmpp::login(
            server.c2s_addr(),
            server.domain(),
            "house-0000",
            &accounts[0].1
        )
        .is_err()
    );
    assert!(
        server.register("Bob", "x").is_err(),
        "nodeprep would change it"
    );
}

#[test]
fn ejabberd_rooms_keep_occupants_anonymous() {
    let server = plaintext_ejabberd();
    server
        .register_many(&[
            ("house-a".into(), "pw-a".into()),
            ("house-b".into(), "pw-b".into()),
        ])
        .unwrap();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    assert_eq!(room, "neighbourhood@rooms.grid.test");
    let options = server
        .admin_api(
            "get_room_options",
            r#"{"name":"neighbourhood","service":"rooms.grid.test"}"#,
        )
        .unwrap();
    for setting in [
        r#""anonymous":"true""#,
        r#""presence_broadcast":"[moderator]""#,
        r#""persistent":"true""#,
        r#""public":"false""#,
        r#""public_list":"false""#,
        r#""mam":"false""#,
        r#""logging":"false""#,
        r#""members_only":"false""#,
        r#""allow_query_users":"false""#,
        r#""allow_subscription":"false""#,
    ] {
        assert!(options.contains(setting), "{setting} missing in {options}");
    }
    let affiliations = server
        .admin_api(
            "get_room_affiliations",
            r#"{"name":"neighbourhood","service":"rooms.grid.test"}"#,
        )
        .unwrap();
    assert!(
        affiliations.contains(
            r#""username":"gridmuc-room-admin","domain":"grid.test","affiliation":"owner""#
        ),
        "{affiliations}"
    );
    // Provisioning again re-configures instead of failing.
    server
        .provision_room(
            "neighbourhood",
            &RoomPolicy {
                members_only: true,
                ..RoomPolicy::default()
            },
        )
        .unwrap();
    server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();

    let (mut a, mut b) = a_client_sees_an_anonymous_room(server.c2s_addr(), server.domain(), &room);
    // No history: a later joiner gets no earlier message.
    b.leave(&room, "nick-b").unwrap();
    joined(&mut b, &room, "nick-b2");
    a.send(&format!(
        "<message type='groupchat' to='{room}'><body>marker</body></message>"
    ))
    .unwrap();
    let after = read_until(&mut b, "<body>marker</body>");
    assert!(!after.contains("1.84 kW"), "history replayed: {after}");
    // No occupant-id service exists on ejabberd 23.01: a hostile test room cannot be built.
    let err = server
        .provision_room(
            "linked",
            &RoomPolicy {
                occupant_id: true,
                ..RoomPolicy::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("occupant-id"), "{err}");
}

#[test]
fn ejabberd_keeps_one_room_session_per_account_and_the_oldest_wins() {
    let server = plaintext_ejabberd();
    server.register("house-a", "pw-a").unwrap();
    server.register("house-c", "pw-c").unwrap();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let other_room = server
        .provision_room("elsewhere", &RoomPolicy::default())
        .unwrap();
    let (addr, domain) = (server.c2s_addr(), server.domain());
    let mut first = login(addr, domain, "house-a", "pw-a");
    let mut second = login(addr, domain, "house-a", "pw-a");
    let mut other = login(addr, domain, "house-c", "pw-c");
    joined(&mut other, &room, "nick-c");
    joined(&mut first, &room, "nick-a");
    // Not Prosody's newest-wins: the second session of the account is refused, under a
    // new nickname, under the same one, and in another room of the service.
    for (r, nick) in [
        (&room, "nick-b"),
        (&room, "nick-a"),
        (&other_room, "nick-x"),
    ] {
        let (condition, presence) = refused(&mut second, r, nick);
        assert_eq!(condition, "resource-constraint", "{presence}");
    }
    // The first occupant was not touched and the room holds two occupants.
    let seen = {
        other
            .send(&format!(
                "<message type='groupchat' to='{room}'><body>marker-1</body></message>"
            ))
            .unwrap();
        read_until(&mut first, "<body>marker-1</body>")
    };
    assert!(!seen.contains("type='unavailable'"), "{seen}");
    let occupants = server
        .admin_api(
            "get_room_occupants_number",
            r#"{"name":"neighbourhood","service":"rooms.grid.test"}"#,
        )
        .unwrap();
    assert_eq!(occupants, r#"{"occupants":2}"#);
    // Rotation (leave, then join under a new nickname) works; so does the second session
    // once the first has left.
    first.leave(&room, "nick-a").unwrap();
    joined(&mut second, &room, "nick-b");
    let (condition, _) = refused(&mut first, &room, "nick-d");
    assert_eq!(condition, "resource-constraint");
}

#[test]
fn ejabberd_reserves_the_bots_nickname_on_the_service() {
    let server = plaintext_ejabberd();
    let bot_jid = server.register("bot", "pw-bot").unwrap();
    server.register("house-a", "pw-a").unwrap();
    server.register("house-s", "pw-s").unwrap();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let (addr, domain) = (server.c2s_addr(), server.domain());
    // A squatter holds the nickname before the reservation: it is removed (ban, un-ban).
    let mut squatter = login(addr, domain, "house-s", "pw-s");
    joined(&mut squatter, &room, "substation");
    assert!(server.reserve_nick(&room, &bot_jid, "substation").unwrap());
    let removed = read_until(&mut squatter, "code='301'");
    assert!(removed.contains("type='unavailable'"), "{removed}");
    let mut house = login(addr, domain, "house-a", "pw-a");
    let (condition, presence) = refused(&mut house, &room, "substation");
    assert_eq!(condition, "conflict", "{presence}");
    // The squatter was banned only for a moment: it may come back under another nickname.
    joined(&mut squatter, &room, "nick-s");

    let mut bot = login(addr, domain, "bot", "pw-bot");
    let bot_self = joined(&mut bot, &room, "substation");
    assert!(bot_self.contains("role='participant'"), "{bot_self}");
    for privilege in ["moderator", "'owner'", "'admin'"] {
        assert!(!bot_self.contains(privilege), "{privilege}: {bot_self}");
    }
    // Houses cannot register nicknames (access_register: none).
    let registration = house
        .iq(
            "reg",
            &format!(
                "<iq type='set' id='reg' to='{room}'><query xmlns='jabber:iq:register'>\
                 <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>\
                 <field var='muc#register_roomnick'><value>substation-2</value></field>\
                 </x></query></iq>"
            ),
        )
        .unwrap();
    assert!(
        registration.contains("type='error'"),
        "a house registered a nickname: {registration}"
    );
    joined(&mut house, &room, "nick-a");
    let change = house.join(&room, "substation").unwrap();
    assert_eq!(change.condition(), Some("conflict"), "{change:?}");
}

#[test]
fn a_two_node_cluster_shares_accounts_and_rooms_and_a_crashed_node_rejoins() {
    let mut cluster = EjabberdCluster::start(
        ServerConfig {
            require_tls: false,
            ..ServerConfig::default()
        },
        2,
    )
    .unwrap();
    assert_eq!(cluster.len(), 2);
    let nodes = cluster.admin_api(1, "list_cluster", "{}").unwrap();
    for i in 0..2 {
        assert!(nodes.contains(cluster.node_name(i)), "{nodes}");
    }
    assert_ne!(cluster.c2s_addr(0).ip(), cluster.c2s_addr(1).ip());
    cluster
        .register_many(&[
            ("house-a".into(), "pw-a".into()),
            ("bot".into(), "pw-bot".into()),
        ])
        .unwrap();
    let room = cluster
        .provision_room(0, "neighbourhood", &RoomPolicy::default())
        .unwrap();
    let domain = cluster.domain().to_owned();
    // A house on node 0 and the bot on node 1 share the room that runs on node 0.
    let mut house = login(cluster.c2s_addr(0), &domain, "house-a", "pw-a");
    let mut bot = login(cluster.c2s_addr(1), &domain, "bot", "pw-bot");
    joined(&mut bot, &room, "substation");
    joined(&mut house, &room, "nick-a");
    house
        .send(&format!(
            "<message type='chat' to='{room}/substation'><body>1.84 kW</body></message>"
        ))
        .unwrap();
    let got = read_until(&mut bot, "<body>1.84 kW</body>");
    assert!(got.contains(&format!("from='{room}/nick-a'")), "{got}");
    assert!(!got.contains("house-a"), "{got}");

    // Node 0 crashes with the room; node 1 keeps serving and restarts the persistent room
    // when the bot rejoins.
    cluster.crash(0).unwrap();
    assert!(cluster.pid(0).is_none());
    let mut bot = login(cluster.c2s_addr(1), &domain, "bot", "pw-bot");
    joined(&mut bot, &room, "substation");
    cluster.restart(0).unwrap();
    let nodes = cluster.admin_api(0, "list_cluster", "{}").unwrap();
    assert!(nodes.contains(cluster.node_name(1)), "{nodes}");
    // Accounts made while node 0 was down are there too.
    let mut house = login(cluster.c2s_addr(0), &domain, "house-a", "pw-a");
    joined(&mut house, &room, "nick-a2");
    house
        .send(&format!(
            "<message type='chat' to='{room}/substation'><body>2.10 kW</body></message>"
        ))
        .unwrap();
    let got = read_until(&mut bot, "<body>2.10 kW</body>");
    assert!(got.contains(&format!("from='{room}/nick-a2'")), "{got}");
}
