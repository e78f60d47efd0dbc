//! The private Prosody, tested for real: TLS, accounts, room privacy, restart, cleanup.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::RawXmpp;
use gridmuc_server::{PrivateServer, RoomPolicy, ServerConfig};

/// A plaintext server on loopback where SASL PLAIN is allowed, so the raw client can log in.
fn plaintext_server_with(config: ServerConfig) -> PrivateServer {
    PrivateServer::start(ServerConfig {
        require_tls: false,
        extra_config: "allow_unencrypted_plain_auth = true".to_owned(),
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
        let (_, features) =
            RawXmpp::try_login(server.c2s_addr(), server.domain(), "house-a", "pw-a").unwrap();
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
    let mut raw = RawXmpp::connect(server.c2s_addr(), server.domain());
    let features = raw.read_until("</stream:features>");
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
    RawXmpp::login(server.c2s_addr(), server.domain(), "alice", "wonder land!");
    let wrong = RawXmpp::try_login(server.c2s_addr(), server.domain(), "alice", "wrong");
    assert!(wrong.is_none(), "a wrong password must be refused");

    let accounts: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("house-{i:04}"), gridmuc_server::generate_password()))
        .collect();
    let started = Instant::now();
    server.register_many(&accounts).unwrap();
    let elapsed = started.elapsed();
    eprintln!("1000 accounts in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");
    for (user, password) in [&accounts[0], &accounts[999]] {
        RawXmpp::login(server.c2s_addr(), server.domain(), user, password);
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

fn disco_info(client: &mut RawXmpp, jid: &str) -> String {
    client.iq(
        "disco",
        &format!(
            "<iq type='get' id='disco' to='{jid}'>\
             <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ),
    )
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
    let started = Instant::now();
    let room = server
        .provision_room("neighbourhood", &RoomPolicy::default())
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
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
    let (addr, domain) = (server.c2s_addr(), server.domain());
    let mut a = RawXmpp::login(addr, domain, "house-a", "pw-a");
    let mut b = RawXmpp::login(addr, domain, "house-b", "pw-b");
    let info = disco_info(&mut a, &room);
    for feature in ["muc_semianonymous", "muc_persistent", "muc_hidden"] {
        assert!(info.contains(feature), "{feature} missing: {info}");
    }
    assert!(!info.contains("occupant-id"), "{info}");
    assert!(!info.contains("muc_nonanonymous"), "{info}");

    let self_b = b.join(&room, "nick-b");
    assert!(self_b.contains("role='participant'"), "{self_b}");
    assert!(!self_b.contains("occupant-id"), "{self_b}");
    let self_a = a.join(&room, "nick-a");
    assert!(self_a.contains("role='participant'"), "{self_a}");
    assert!(!self_a.contains("occupant-id"), "{self_a}");
    a.send(&format!(
        "<message type='groupchat' to='{room}'><body>1.84 kW</body></message>"
    ));
    // Everything B receives after its join, up to A's reading.
    let mut got = String::new();
    while !got.contains("1.84 kW") {
        got.push_str(&b.read_until("</message>"));
    }
    assert!(got.contains(&format!("from='{room}/nick-a'")), "{got}");
    assert!(!got.contains("occupant-id"), "{got}");
    assert!(!got.contains("house-a"), "real JID leaked: {got}");
    // Presence of others goes to moderators only: B never learns that A joined.
    assert!(!got.contains("<presence"), "{got}");
}

#[test]
fn hostile_policies_build_rooms_the_clients_must_refuse() {
    let server = plaintext_server();
    server.register("house-a", "pw-a").unwrap();
    let admin = server.register("bot", "pw-bot").unwrap();
    let (addr, domain) = (server.c2s_addr(), server.domain());
    let mut a = RawXmpp::login(addr, domain, "house-a", "pw-a");

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
    let presence = a.join(&linked, "n1");
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
    let mut bot = RawXmpp::login(addr, domain, "bot", "pw-bot");
    let presence = bot.join(&moderated, "substation");
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
    let refused = a.join(&closed, "n2");
    assert!(refused.contains("registration-required"), "{refused}");
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
    let mut a = RawXmpp::login(addr, server.domain(), "house-a", "pw-a");
    let presence = a.join(&room, "n");
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
