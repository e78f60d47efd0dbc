//! What every live test needs: a tokio runtime, a private Prosody or ejabberd with a
//! provisioned room and accounts, account configs for it, a stop signal, and
//! [`on_each_server!`] to run one test body against both servers. Shared by the root tests and, through
//! `#[path]`, by `gridmuc-xmpp`'s own live tests.

#![allow(dead_code, clippy::unwrap_used)]

use gridmuc_server::{PrivateServer, RoomPolicy, ServerConfig};
use gridmuc_xmpp::connect::ConnectConfig;
use std::time::Duration;
use tokio::sync::watch;

/// Defines `mod $name { fn prosody(); fn ejabberd(); }`, two tests that run `$body(kind)`
/// against each server, so one live test holds on both (`cargo test $name::ejabberd`).
#[macro_export]
macro_rules! on_each_server {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn prosody() {
                super::$body(gridmuc_server::ServerKind::Prosody)
            }
            #[test]
            fn ejabberd() {
                super::$body(gridmuc_server::ServerKind::Ejabberd)
            }
        }
    };
}

/// Password of every test account.
pub const PASSWORD: &str = "correct horse battery staple";

/// Two worker threads (like the CI machine), logs to the test writer (`RUST_LOG` overrides).
pub fn runtime() -> tokio::runtime::Runtime {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,gridmuc_xmpp=info".into()),
        )
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Resolves once `true` is sent: the shutdown future of bots and meters.
pub async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A private server with one room `hood` and the given accounts, all with [`PASSWORD`].
pub struct TestServer {
    /// The running Prosody (stops when dropped).
    pub server: PrivateServer,
    /// Bare JID of the room.
    pub room: String,
}

impl TestServer {
    /// Starts the server, registers `users` and provisions the room with `policy`.
    pub fn start(cfg: ServerConfig, users: &[String], policy: &RoomPolicy) -> TestServer {
        let server = PrivateServer::start(cfg).unwrap();
        let accounts: Vec<(String, String)> = users
            .iter()
            .map(|u| (u.clone(), PASSWORD.to_owned()))
            .collect();
        server.register_many(&accounts).unwrap();
        let room = server.provision_room("hood", policy).unwrap();
        TestServer { server, room }
    }

    /// See [`account`].
    pub fn account(&self, user: &str, timeout: Duration) -> ConnectConfig {
        account(&self.server, user, timeout)
    }
}

/// STARTTLS with the test CA for `user` (a local part, or a full JID), bounded by `timeout`.
pub fn account(server: &PrivateServer, user: &str, timeout: Duration) -> ConnectConfig {
    let jid = if user.contains('@') {
        user.to_owned()
    } else {
        format!("{user}@{}", server.domain())
    };
    account_at(
        &server.c2s_addr().to_string(),
        &jid,
        server.ca_cert_pem(),
        timeout,
    )
}

/// STARTTLS to `addr` (e.g. one node of a cluster) with the CA `ca_pem` for `jid`.
pub fn account_at(addr: &str, jid: &str, ca_pem: &str, timeout: Duration) -> ConnectConfig {
    let mut cfg = ConnectConfig::private_tls(jid, PASSWORD, addr, ca_pem);
    cfg.timeout = timeout;
    cfg
}

/// `names` followed by `house0` … `house{houses-1}`.
pub fn users(names: &[&str], houses: usize) -> Vec<String> {
    names
        .iter()
        .map(|n| (*n).to_owned())
        .chain((0..houses).map(|i| format!("house{i}")))
        .collect()
}
