//! The private Prosody, tested for real: TLS, accounts, room privacy, restart, cleanup.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    RawError, RawXmpp, a_client_sees_an_anonymous_room, disco_info, joined, login, read_until,
    refused,
};
use gridmuc_server::{PrivateServer, RoomPolicy, ServerConfig, WebPage};

/// A plaintext server on loopback (SASL PLAIN allowed in the clear), so the raw client can log in.
fn plaintext_server_with(config: ServerConfig) -> PrivateServer {
    PrivateServer::start(ServerConfig {
        require_tls: false,
        ..config
    })
    .unwrap()
}

fn plaintext_server() -> PrivateServer {
    plaintext_server_with(ServerConfig::default())
}

#[test]
fn stream_management_follows_the_config() {
    for smacks in [true, false] {
        let server = plaintext_server_with(ServerConfig {
            smacks,
            ..ServerConfig::default()
        });
        server.register("house-a", "pw-a").unwrap();
        let client = login(server.c2s_addr(), server.domain(), "house-a", "pw-a");
        let features = client.features();
        assert_eq!(features.contains("urn:xmpp:sm:3"), smacks, "{features}");
    }
}

fn process_alive(pid: u32) -> bool {
    // A zombie (state Z) has exited; only its parent has not reaped it yet.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|s| !s.trim_start().starts_with('Z'))
    })
}

fn openssl_verify(server: &PrivateServer) -> (bool, String) {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-starttls",
            "xmpp",
            "-xmpphost",
            server.domain(),
        ])
        .args(["-connect", &server.c2s_addr().to_string()])
        .arg("-CAfile")
        .arg(server.ca_cert_path())
        .args([
            "-verify_hostname",
            server.domain(),
            "-verify_return_error",
            "-brief",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("openssl CLI (apt-get install -y openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn starttls_is_required_and_the_certificate_verifies_against_the_test_ca() {
    let server = PrivateServer::start(ServerConfig::default()).unwrap();
    let mut raw = RawXmpp::connect(server.c2s_addr(), server.domain()).unwrap();
    let features = read_until(&mut raw, "</stream:features>");
    assert!(features.contains("<starttls"), "{features}");
    assert!(
        features.contains("<required"),
        "STARTTLS must be required: {features}"
    );
    assert!(
        server
            .ca_cert_pem()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    let (ok, text) = openssl_verify(&server);
    assert!(ok, "{text}");
    assert!(text.contains("Verification: OK"), "{text}");
}

#[test]
fn an_untrusted_certificate_fails_verification() {
    let server = PrivateServer::start(ServerConfig {
        untrusted_cert: true,
        ..ServerConfig::default()
    })
    .unwrap();
    let (ok, text) = openssl_verify(&server);
    assert!(!ok, "verification must fail: {text}");
    assert!(text.contains("verify error"), "{text}");
}

#[test]
fn non_loopback_addresses_are_refused() {
    let err = PrivateServer::start(ServerConfig {
        bind: "192.0.2.1".parse().unwrap(),
        ..ServerConfig::default()
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("only loopback"), "{err}");
}

#[test]
fn a_broken_config_fails_with_prosodys_own_words() {
    let err = PrivateServer::start(ServerConfig {
        extra_config: "this is not lua".to_owned(),
        ..ServerConfig::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("prosody exited"), "{err}");
    assert!(
        err.contains("prosody.cfg.lua"),
        "the tail names the broken file: {err}"
    );
}

#[test]
fn a_thousand_accounts_are_created_in_seconds_and_log_in() {
    let server = plaintext_server();
    let jid = server.register("alice", "wonder land!").unwrap();
    assert_eq!(jid, "alice@grid.test");
    login(server.c2s_addr(), server.domain(), "alice", "wonder land!");
    let wrong = RawXmpp::login(server.c2s_addr(), server.domain(), "alice", "wrong");
    assert!(
        matches!(wrong, Err(RawError::AuthFailed { .. })),
        "a wrong password must be refused: {wrong:?}"
    );

    let accounts: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("house-{i:04}"), gridmuc_server::generate_password()))
        .collect();
    let started = Instant::now();
    server.register_many(&accounts).unwrap();
    let elapsed = started.elapsed();
    eprintln!("1000 accounts in {elapsed:?}");
    for (user, password) in [&accounts[0], &accounts[999]] {
        login(server.c2s_addr(), server.domain(), user, password);
    }

    assert!(
        server.register("Bob", "x").is_err(),
        "nodeprep would change it"
    );
    assert!(
        server.register("bob", "pässword").is_err(),
        "SASLprep could change it"
    );
}

#[test]
fn provisioned_rooms_keep_occupants_anonymous() {
    let server = plaintext_server();
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

    // What Prosody stored.
    let stored = std::fs::read_to_string(
        server
            .data_path()
            .join("rooms%2egrid%2etest/config/neighbourhood.dat"),
    )
    .unwrap();
    // whois=moderators is Prosody's default, which it does not store.
    assert!(!stored.contains("whois"), "{stored}");
    for setting in [
        "[\"history_length\"] = 0",
        "[\"persistent\"] = true",
        "[\"moderator\"] = true",
        "[\"gridmuc-room-admin@grid.test\"] = \"owner\"",
    ] {
        assert!(stored.contains(setting), "{setting} missing in {stored}");
    }
    assert!(!stored.contains("locked"), "{stored}");
    // What the live room says.
    let live = server
        .admin_lua(&format!(
            r#"local r = prosody.hosts["rooms.grid.test"].modules.muc.get_room_from_jid("{room}")
            return table.concat({{ r:get_whois(), r:get_historylength(), tostring(r:get_public()),
              tostring(r:get_persistent()), tostring(r._data.locked) }}, ",")"#
        ))
        .unwrap();
    assert_eq!(live, "Result: moderators,0,false,true,nil");

    // What a client sees.
    a_client_sees_an_anonymous_room(server.c2s_addr(), server.domain(), &room);
}

#[test]
fn hostile_policies_build_rooms_the_clients_must_refuse() {
    let server = plaintext_server();
    server.register("house-a", "pw-a").unwrap();
    let admin = server.register("bot", "pw-bot").unwrap();
    let (addr, domain) = (server.c2s_addr(), server.domain());
    let mut a = login(addr, domain, "house-a", "pw-a");

    let linked = server
        .provision_room(
            "linked",
            &RoomPolicy {
                occupant_id: true,
                ..RoomPolicy::default()
            },
        )
        .unwrap();
    assert!(disco_info(&mut a, &linked).contains("urn:xmpp:occupant-id:0"));
    let presence = joined(&mut a, &linked, "n1");
    assert!(presence.contains("urn:xmpp:occupant-id:0"), "{presence}");

    let open = server
        .provision_room(
            "open",
            &RoomPolicy {
                non_anonymous: true,
                ..RoomPolicy::default()
            },
        )
        .unwrap();
    assert!(disco_info(&mut a, &open).contains("muc_nonanonymous"));

    let moderated = server
        .provision_room(
            "moderated",
            &RoomPolicy {
                admins: vec![admin],
                ..RoomPolicy::default()
            },
        )
        .unwrap();
    let mut bot = login(addr, domain, "bot", "pw-bot");
    let presence = joined(&mut bot, &moderated, "substation");
    assert!(presence.contains("role='moderator'"), "{presence}");

    let closed = server
        .provision_room(
            "closed",
            &RoomPolicy {
                members_only: true,
                ..RoomPolicy::default()
            },
        )
        .unwrap();
    let (condition, presence) = refused(&mut a, &closed, "n2");
    assert_eq!(condition, "registration-required", "{presence}");
}

#[test]
fn restart_keeps_accounts_and_rooms_on_the_same_port() {
    let mut server = plaintext_server();
    server.register("house-a", "pw-a").unwrap();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let (addr, old_pid) = (server.c2s_addr(), server.pid().unwrap());
    server.restart().unwrap();
    assert_eq!(server.c2s_addr(), addr);
    assert!(!process_alive(old_pid));
    let mut a = login(addr, server.domain(), "house-a", "pw-a");
    let presence = joined(&mut a, &room, "n");
    assert!(presence.contains("role='participant'"), "{presence}");
}

#[test]
fn dropping_the_server_kills_prosody_and_removes_its_files() {
    let server = PrivateServer::start(ServerConfig::default()).unwrap();
    let pid = server.pid().unwrap();
    let dir = server.work_dir().to_owned();
    assert!(process_alive(pid));
    drop(server);
    assert!(!process_alive(pid));
    assert!(!dir.exists());

    let server = PrivateServer::start(ServerConfig::default()).unwrap();
    let pid = server.pid().unwrap();
    server.stop().unwrap();
    assert!(!process_alive(pid));
}

/// Set only for the helper process, so `cargo test -- --ignored` does not start it idly.
const HELPER_ENV: &str = "GRIDMUC_SERVER_TEST_HELPER";

/// Not a test of its own: the child process for `prosody_dies_with_a_killed_parent`.
#[test]
#[ignore = "helper process, run by prosody_dies_with_a_killed_parent"]
fn helper_start_and_wait() {
    if std::env::var_os(HELPER_ENV).is_none() {
        return; // run by hand with --ignored: nothing to do
    }
    let server = PrivateServer::start(ServerConfig::default()).unwrap();
    let dir = server.work_dir();
    println!("DIR {}", dir.display());
    println!("PID {}", server.pid().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn prosody_dies_with_a_killed_parent() {
    use std::io::BufRead as _;
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_start_and_wait",
            "--ignored",
            "--nocapture",
        ])
        .env(HELPER_ENV, "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = helper.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines().map(Result::unwrap);
    let dir = lines
        .find_map(|l| l.strip_prefix("DIR ").map(str::to_owned))
        .unwrap();
    let pid: u32 = lines
        .find_map(|l| l.strip_prefix("PID ").map(|p| p.parse().unwrap()))
        .unwrap();
    assert!(process_alive(pid));
    helper.kill().unwrap(); // SIGKILL: no Drop runs in the helper
    helper.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "prosody {pid} outlived its parent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!std::path::Path::new(&dir).exists(), "{dir} left behind");
}

/// Each occupant of `room` as `nick=bare-jid:sessions`, sorted, as the live room holds them.
fn occupants(server: &PrivateServer, room: &str) -> String {
    let host = room.split_once('@').unwrap().1;
    server
        .admin_lua(&format!(
            r#"local r = prosody.hosts["{host}"].modules.muc.get_room_from_jid("{room}")
            local seen = {{}}
            for nick, o in r:each_occupant() do
              local n = 0
              for _ in o:each_session() do n = n + 1 end
              seen[#seen + 1] = nick:match("/(.*)$") .. "=" .. o.bare_jid .. ":" .. n
            end
            table.sort(seen)
            return table.concat(seen, " ")"#
        ))
        .unwrap()
}

/// Sends a groupchat `body` from `from` and returns everything `to` receives up to it:
/// Prosody handles one room's stanzas in order, so whatever the room sent `to` before
/// (a presence, a kick) is in there.
fn through_marker(from: &mut RawXmpp, to: &mut RawXmpp, room: &str, body: &str) -> String {
    from.send(&format!(
        "<message type='groupchat' to='{room}'><body>{body}</body></message>"
    ))
    .unwrap();
    read_until(to, &format!("<body>{body}</body>"))
}

#[test]
fn one_account_holds_one_occupant_and_the_newest_wins() {
    let server = plaintext_server();
    server.register("house-a", "pw-a").unwrap();
    server.register("house-c", "pw-c").unwrap();
    let (addr, domain) = (server.c2s_addr(), server.domain());
    // The rule holds on both MUC services, the hostile occupant-id one included.
    for (local, occupant_id) in [("neighbourhood", false), ("linked", true)] {
        let room = server
            .provision_room(
                local,
                &RoomPolicy {
                    occupant_id,
                    ..RoomPolicy::default()
                },
            )
            .unwrap();
        let mut first = login(addr, domain, "house-a", "pw-a");
        let mut second = login(addr, domain, "house-a", "pw-a");
        let mut other = login(addr, domain, "house-c", "pw-c");
        assert_ne!(first.jid(), second.jid(), "two sessions of one account");
        joined(&mut other, &room, "nick-c");
        joined(&mut first, &room, "nick-a");

        let newer = joined(&mut second, &room, "nick-b");
        assert!(newer.contains("role='participant'"), "{newer}");
        let evicted = read_until(&mut first, "code='307'");
        let evicted = &evicted[evicted.rfind("<presence").unwrap()..];
        for part in [
            format!("from='{room}/nick-a'"),
            "type='unavailable'".to_owned(),
            "code='110'".to_owned(),
            "role='none'".to_owned(),
            "<reason>replaced by a newer occupant of the same account</reason>".to_owned(),
        ] {
            assert!(evicted.contains(&part), "{part} missing: {evicted}");
        }
        assert!(
            !evicted.contains("<actor"),
            "the system removed it: {evicted}"
        );
        assert_eq!(
            occupants(&server, &room),
            "Result: nick-b=house-a@grid.test:1 nick-c=house-c@grid.test:1"
        );

        // The third account learns nothing: no presence, no JID, up to B's first message.
        let seen = through_marker(&mut second, &mut other, &room, "after-eviction");
        assert!(seen.contains(&format!("from='{room}/nick-b'")), "{seen}");
        for leak in ["<presence", "house-a", "jid=", "code='307'", "nick-a"] {
            assert!(
                !seen.contains(leak),
                "{leak} reached another occupant: {seen}"
            );
        }
        // The evicted session itself stays connected and may come back (and then wins).
        joined(&mut first, &room, "nick-d");
        read_until(&mut second, "code='307'");
        assert_eq!(
            occupants(&server, &room),
            "Result: nick-c=house-c@grid.test:1 nick-d=house-a@grid.test:1"
        );
    }
    // The module logs at debug level only (the log keeps info and up): no line of it at
    // all, hence no JID from it and no load error either.
    let log = std::fs::read_to_string(server.log_path()).unwrap();
    assert!(!log.contains("gridmuc_one_occupant"), "{log}");
}

/// How many sessions of `bare` Prosody holds, and how many of them hibernate (XEP-0198).
fn sessions_of(server: &PrivateServer, bare: &str) -> String {
    server
        .admin_lua(&format!(
            r#"local all, asleep = 0, 0
            for jid, s in pairs(prosody.full_sessions) do
              if jid:match("^[^/]+") == "{bare}" then
                all = all + 1
                if s.hibernating then asleep = asleep + 1 end
              end
            end
            return all .. " sessions, " .. asleep .. " hibernating""#
        ))
        .unwrap()
}

#[test]
fn a_killed_meter_rejoins_at_once_while_its_old_session_hibernates() {
    let server = plaintext_server(); // XEP-0198 on, hibernation 600 s
    server.register("house-a", "pw-a").unwrap();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let (addr, domain) = (server.c2s_addr(), server.domain());
    let mut old = login(addr, domain, "house-a", "pw-a");
    old.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .unwrap();
    read_until(&mut old, "<enabled");
    joined(&mut old, &room, "old-nick");
    drop(old); // the socket closes without </stream:stream>, as after kill -9
    let mut polls = 0;
    while sessions_of(&server, "house-a@grid.test") != "Result: 1 sessions, 1 hibernating" {
        polls += 1;
        assert!(polls < 400, "{}", sessions_of(&server, "house-a@grid.test"));
        std::thread::sleep(Duration::from_millis(25));
    }
    assert_eq!(
        occupants(&server, &room),
        "Result: old-nick=house-a@grid.test:1",
        "the hibernating session keeps its nickname"
    );

    let mut fresh = login(addr, domain, "house-a", "pw-a");
    let rejoined = joined(&mut fresh, &room, "new-nick");
    assert!(rejoined.contains("role='participant'"), "{rejoined}");
    assert_eq!(
        occupants(&server, &room),
        "Result: new-nick=house-a@grid.test:1"
    );
    assert_eq!(
        sessions_of(&server, "house-a@grid.test"),
        "Result: 2 sessions, 1 hibernating",
        "the old session still hibernates: the rejoin did not wait for it"
    );
}

#[test]
fn one_account_may_join_under_the_same_nickname_from_two_sessions() {
    let server = plaintext_server();
    server.register("bot", "pw-bot").unwrap();
    server.register("house-c", "pw-c").unwrap();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let (addr, domain) = (server.c2s_addr(), server.domain());
    let mut stuck = login(addr, domain, "bot", "pw-bot");
    let mut fresh = login(addr, domain, "bot", "pw-bot");
    let mut house = login(addr, domain, "house-c", "pw-c");
    joined(&mut stuck, &room, "substation");
    joined(&mut house, &room, "nick-c");
    let replacement = joined(&mut fresh, &room, "substation");
    assert!(replacement.contains("role='participant'"), "{replacement}");
    assert_eq!(
        occupants(&server, &room),
        "Result: nick-c=house-c@grid.test:1 substation=bot@grid.test:2"
    );
    // Neither session was removed: both still get the room's messages, no 307.
    for session in [&mut stuck, &mut fresh] {
        let seen = through_marker(&mut house, session, &room, "to-both");
        assert!(!seen.contains("code='307'"), "{seen}");
    }
    // A nickname change by one of the two sessions would split the account into two
    // occupants: refused, and the shared occupant stays as it was.
    let split = fresh.join(&room, "other-nick").unwrap();
    assert_eq!(split.condition(), Some("not-acceptable"), "{split:?}");
    assert_eq!(
        occupants(&server, &room),
        "Result: nick-c=house-c@grid.test:1 substation=bot@grid.test:2"
    );
}

#[test]
fn rotation_by_leave_and_rejoin_works() {
    let server = plaintext_server();
    server.register("house-a", "pw-a").unwrap();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let mut a = login(server.c2s_addr(), server.domain(), "house-a", "pw-a");
    for (old, new) in [("first-nick", "second-nick"), ("second-nick", "third-nick")] {
        if old == "first-nick" {
            joined(&mut a, &room, old);
        }
        let left = a.leave(&room, old).unwrap();
        assert!(!left.contains("code='307'"), "a plain leave: {left}");
        assert_eq!(occupants(&server, &room), "Result: ");
        let again = joined(&mut a, &room, new);
        assert!(again.contains("role='participant'"), "{again}");
        assert_eq!(
            occupants(&server, &room),
            format!("Result: {new}=house-a@grid.test:1")
        );
    }
}

#[test]
fn the_bots_reserved_nickname_is_refused_to_every_other_account() {
    let server = plaintext_server();
    let bot_jid = server.register("bot", "pw-bot").unwrap();
    server.register("house-a", "pw-a").unwrap();
    let room = server
        .provision_room(
            "neighbourhood",
            &RoomPolicy {
                reserved_nicks: vec![(bot_jid.clone(), "substation".to_owned())],
                ..RoomPolicy::default()
            },
        )
        .unwrap();
    let (addr, domain) = (server.c2s_addr(), server.domain());
    let mut house = login(addr, domain, "house-a", "pw-a");
    let (condition, presence) = refused(&mut house, &room, "substation");
    assert_eq!(condition, "conflict", "{presence}");
    assert!(
        presence.contains(&format!("from='{room}/substation'")),
        "{presence}"
    );

    let mut bot = login(addr, domain, "bot", "pw-bot");
    let bot_self = joined(&mut bot, &room, "substation");
    assert!(bot_self.contains("role='participant'"), "{bot_self}");
    assert!(bot_self.contains("affiliation='member'"), "{bot_self}");
    for privilege in ["moderator", "'owner'", "'admin'"] {
        assert!(!bot_self.contains(privilege), "{privilege}: {bot_self}");
    }

    // Nor can a house register a nickname of its own (only affiliated accounts may).
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
    assert_eq!(
        gridmuc_server::raw::error_condition(&registration).as_deref(),
        Some("registration-required"),
        "{registration}"
    );
    // Nor can a house in the room take it by a nickname change.
    joined(&mut house, &room, "nick-a");
    let change = house.join(&room, "substation").unwrap();
    assert_eq!(change.condition(), Some("conflict"), "{change:?}");

    // A member still sees no real JID in our semi-anonymous room.
    let live = server
        .admin_lua(&format!(
            r#"local r = prosody.hosts["rooms.grid.test"].modules.muc.get_room_from_jid("{room}")
            return tostring(r:is_anonymous_for("{bot_jid}")) .. " " .. r:get_affiliation("{bot_jid}")
              .. " " .. r:get_registered_nick("{bot_jid}")"#
        ))
        .unwrap();
    assert_eq!(live, "Result: true member substation");
    let seen = through_marker(&mut house, &mut bot, &room, "1.84 kW");
    assert!(seen.contains(&format!("from='{room}/nick-a'")), "{seen}");
    for leak in ["house-a", "jid=", "<presence"] {
        assert!(!seen.contains(leak), "{leak} reached the bot: {seen}");
    }
    // The reservation is stored with the room and survives a restart.
    let stored = std::fs::read_to_string(
        server
            .data_path()
            .join("rooms%2egrid%2etest/config/neighbourhood.dat"),
    )
    .unwrap();
    assert!(
        stored.contains("[\"reserved_nickname\"] = \"substation\""),
        "{stored}"
    );
    assert!(
        stored.contains("[\"bot@grid.test\"] = \"member\""),
        "{stored}"
    );
}

#[test]
fn reserving_a_nickname_in_use_removes_the_squatter() {
    let server = plaintext_server();
    let bot_jid = server.register("bot", "pw-bot").unwrap();
    server.register("house-a", "pw-a").unwrap();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let (addr, domain) = (server.c2s_addr(), server.domain());
    let mut squatter = login(addr, domain, "house-a", "pw-a");
    joined(&mut squatter, &room, "substation");

    assert!(server.reserve_nick(&room, &bot_jid, "substation").unwrap());
    let removed = read_until(&mut squatter, "code='307'");
    assert!(
        removed.contains("<reason>this nickname is reserved for another account</reason>"),
        "{removed}"
    );
    let mut bot = login(addr, domain, "bot", "pw-bot");
    assert!(joined(&mut bot, &room, "substation").contains("affiliation='member'"));
    assert_eq!(refused(&mut squatter, &room, "substation").0, "conflict");
    // Reserving again, with the bot itself in the seat, removes nobody.
    assert!(!server.reserve_nick(&room, &bot_jid, "substation").unwrap());
    assert_eq!(
        occupants(&server, &room),
        "Result: substation=bot@grid.test:1"
    );
    // A nickname reserved for another account moves: the old holder loses it.
    let other = server.register("bot-two", "pw-two").unwrap();
    server.reserve_nick(&room, &other, "substation").unwrap();
    let live = server
        .admin_lua(&format!(
            r#"local r = prosody.hosts["rooms.grid.test"].modules.muc.get_room_from_jid("{room}")
            return tostring((r:get_registered_nick("{bot_jid}"))) .. " " .. r:get_registered_jid("substation")"#
        ))
        .unwrap();
    assert_eq!(live, "Result: nil bot-two@grid.test");
}

#[test]
fn a_thirty_thousand_level_stanza_reaches_the_room_and_the_session_survives() {
    let server = plaintext_server();
    server.register("house-a", "pw-a").unwrap();
    server.register("bot", "pw-bot").unwrap();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    let limit = server
        .admin_lua(r#"return require "core.configmanager".get("*", "c2s_stanza_size_limit")"#)
        .unwrap();
    assert_eq!(
        limit,
        format!("Result: {}", gridmuc_server::C2S_STANZA_SIZE_LIMIT)
    );
    assert_eq!(gridmuc_server::C2S_STANZA_SIZE_LIMIT, 262_144);

    let (addr, domain) = (server.c2s_addr(), server.domain());
    let mut hostile = login(addr, domain, "house-a", "pw-a");
    let mut bot = login(addr, domain, "bot", "pw-bot");
    joined(&mut bot, &room, "substation");
    joined(&mut hostile, &room, "deep");
    let stanza = gridmuc_server::raw::nested_groupchat(&room, "deep-1", 30_000);
    assert!(
        stanza.len() > 200_000 && stanza.len() < 262_144,
        "{}",
        stanza.len()
    );
    hostile.send(&stanza).unwrap();

    let got = read_until(&mut bot, "<body>nested 30000</body>");
    let got = &got[got.rfind("<message").unwrap()..];
    assert!(
        got.contains(&format!("from='{room}/deep'")),
        "{}",
        &got[..300]
    );
    // Every level arrived (the innermost, empty, as `<x/>`).
    assert_eq!(got.matches("<x").count(), 30_000);
    assert!(got.trim_end().ends_with("</message>"));
    // The sender gets its echo and both sessions still answer.
    read_until(&mut hostile, "<body>nested 30000</body>");
    for client in [&mut hostile, &mut bot] {
        let pong = client
            .iq(
                "ping",
                &format!(
                    "<iq type='get' id='ping' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>"
                ),
            )
            .unwrap();
        assert!(pong.contains("type='result'"), "{pong}");
    }
    assert_eq!(
        occupants(&server, &room),
        "Result: deep=house-a@grid.test:1 substation=bot@grid.test:1"
    );
}

/// One HTTP/1.0 GET on the server's web port: the status line and the body.
fn http_get(base: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let addr = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[test]
fn the_web_page_is_served_beside_a_websocket_and_only_when_asked_for() {
    let plain = PrivateServer::start(ServerConfig::default()).unwrap();
    assert_eq!(plain.web_url(), None, "no HTTP unless a page is given");
    let cfg = std::fs::read_to_string(plain.config_path()).unwrap();
    assert!(cfg.contains("http_ports = { }"), "{cfg}");
    drop(plain);

    let server = PrivateServer::start(ServerConfig {
        web: Some(WebPage {
            files: vec![
                ("index.html", b"<p>gridmuc</p>".as_slice()),
                ("vendor/lib.js", b"var x = 1;".as_slice()),
            ],
        }),
        ..ServerConfig::default()
    })
    .unwrap();
    let base = server.web_url().unwrap();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert_ne!(base, format!("http://{}/", server.c2s_addr()));
    assert_eq!(
        server.page_url("n@rooms.grid.test").unwrap(),
        format!("{base}?room=n@rooms.grid.test&domain=watch.grid.test")
    );
    let (status, body) = http_get(&base, "/");
    assert!(status.contains(" 200"), "{status}");
    assert_eq!(body, "<p>gridmuc</p>");
    let (status, body) = http_get(&base, "/vendor/lib.js");
    assert!(status.contains(" 200"), "{status}");
    assert_eq!(body, "var x = 1;");
    assert!(http_get(&base, "/missing.js").0.contains(" 404"));
    // The websocket endpoint is there (a plain GET is not an upgrade, so no XMPP session).
    let (status, _) = http_get(&base, "/xmpp-websocket");
    assert!(!status.contains(" 404"), "{status}");

    // A file may not leave the page's directory.
    let outside = PrivateServer::start(ServerConfig {
        web: Some(WebPage {
            files: vec![("../escape.html", b"x".as_slice())],
        }),
        ..ServerConfig::default()
    });
    assert!(outside.is_err());
}

#[test]
fn the_live_pages_anonymous_visitors_can_watch_the_room_but_not_post() {
    // Accounts on the anonymous host cost nothing: one visitor could join under fifty
    // nicknames and post readings the bot would count as fifty houses.
    let server = plaintext_server_with(ServerConfig {
        web: Some(WebPage {
            files: vec![("index.html", b"<p>gridmuc</p>".as_slice())],
        }),
        ..ServerConfig::default()
    });
    server.register("house-a", "pw-a").unwrap();
    server.register("house-b", "pw-b").unwrap();
    let room = server
        .provision_room("hood", &RoomPolicy::default())
        .unwrap();
    let mut house = login(server.c2s_addr(), server.domain(), "house-a", "pw-a");
    joined(&mut house, &room, "nick-a");
    let mut other = login(server.c2s_addr(), server.domain(), "house-b", "pw-b");
    joined(&mut other, &room, "nick-b");
    let mut visitor = RawXmpp::login_anonymous(server.c2s_addr(), &server.watch_domain())
        .unwrap_or_else(|e| panic!("anonymous login failed: {e}"));
    assert!(
        visitor.jid().contains(&server.watch_domain()),
        "{}",
        visitor.jid()
    );
    // It may join and read what the room says.
    joined(&mut visitor, &room, "watcher-1");
    other
        .send(&format!(
            "<message to='{room}' type='groupchat' id='g0'><body>from a house</body></message>"
        ))
        .unwrap();
    read_until(&mut visitor, "from a house");
    house.drain(Duration::from_millis(500)).unwrap();
    // A groupchat reading, a private message to an occupant, a readout asked of one:
    // each is refused, and nothing reaches the house.
    let attempts = [
        format!("<message to='{room}' type='groupchat' id='v1'><body>1.84 kW</body></message>"),
        format!("<message to='{room}/nick-a' type='chat' id='v2'><body>hello</body></message>"),
        format!(
            "<iq to='{room}/nick-a' type='get' id='v3'>\
             <req xmlns='urn:xmpp:iot:sensordata' seqnr='1' momentary='true'/></iq>"
        ),
    ];
    for (i, xml) in attempts.iter().enumerate() {
        visitor.send(xml).unwrap();
        let answer = read_until(&mut visitor, &format!("id='v{}'", i + 1));
        assert_eq!(
            gridmuc_server::raw::error_condition(&answer).as_deref(),
            Some("forbidden"),
            "{answer}"
        );
    }
    let heard = house.drain(Duration::from_millis(1_000)).unwrap();
    assert!(
        !heard.contains("1.84 kW") && !heard.contains("hello"),
        "{heard}"
    );
    assert!(!heard.contains("sensordata"), "{heard}");
    // The room's own disco#info is still open to it, as to any client.
    assert!(disco_info(&mut visitor, &room).contains("muc_semianonymous"));
    // A house on the ordinary host is not affected.
    house
        .send(&format!(
            "<message to='{room}/nick-b' type='chat' id='h1'><body>to b</body></message>"
        ))
        .unwrap();
    read_until(&mut other, "to b");
}
