//! The private server a live command (`demo`, `loadtest`) runs against: one Prosody, one
//! ejabberd, or a two-node ejabberd cluster with the meters on node 0 and the bots and the
//! room on node 1 (a room on the meters' node would leave the bot outside the room when
//! that node crashes: docs/ejabberd-cluster.md).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gridmuc_server::{
    EjabberdCluster, PrivateServer, RoomPolicy, ServerConfig, ServerError, ServerKind, WebPage,
};

/// Which server to start, as `--server` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// One private Prosody 0.12.
    Prosody,
    /// One private ejabberd 23.01.
    Ejabberd,
    /// Two ejabberd 23.01 nodes on 127.0.0.1 and 127.0.0.2, joined into one cluster.
    EjabberdCluster,
}

impl Target {
    /// What the console calls it.
    pub fn name(self) -> &'static str {
        match self {
            Target::Prosody => "prosody",
            Target::Ejabberd => "ejabberd",
            Target::EjabberdCluster => "ejabberd-cluster",
        }
    }
}

/// A running target; stopped (and its files removed) when dropped.
pub enum Running {
    /// Prosody or a single ejabberd node (boxed, as the cluster: both are large).
    Single(Box<PrivateServer>),
    /// The two-node ejabberd cluster.
    Cluster(Box<EjabberdCluster>),
}

/// The cluster node the meters log in to.
const METER_NODE: usize = 0;
/// The cluster node the bots log in to and the room runs on.
const BOT_NODE: usize = 1;

impl Running {
    /// Starts `target` with the default (privacy-preserving) configuration, XEP-0198 as given,
    /// and the live page on Prosody when `web` is given.
    pub fn start(
        target: Target,
        smacks: bool,
        web: Option<WebPage>,
    ) -> Result<Running, ServerError> {
        let config = |kind| ServerConfig {
            kind,
            smacks,
            web: (kind == ServerKind::Prosody).then(|| web.clone()).flatten(),
            ..ServerConfig::default()
        };
        let single =
            |kind| PrivateServer::start(config(kind)).map(|s| Running::Single(Box::new(s)));
        Ok(match target {
            Target::Prosody => single(ServerKind::Prosody)?,
            Target::Ejabberd => single(ServerKind::Ejabberd)?,
            Target::EjabberdCluster => Running::Cluster(Box::new(EjabberdCluster::start(
                config(ServerKind::Ejabberd),
                BOT_NODE + 1,
            )?)),
        })
    }

    /// Creates (or resets) accounts.
    pub fn register_many(&self, accounts: &[(String, String)]) -> Result<(), ServerError> {
        match self {
            Running::Single(s) => s.register_many(accounts),
            Running::Cluster(c) => c.register_many(accounts),
        }
    }

    /// Provisions the room (on the bots' node of a cluster); returns its JID.
    pub fn provision_room(&self, local: &str, policy: &RoomPolicy) -> Result<String, ServerError> {
        match self {
            Running::Single(s) => s.provision_room(local, policy),
            Running::Cluster(c) => c.provision_room(BOT_NODE, local, policy),
        }
    }

    /// Where meters connect.
    pub fn meter_addr(&self) -> SocketAddr {
        match self {
            Running::Single(s) => s.c2s_addr(),
            Running::Cluster(c) => c.c2s_addr(METER_NODE),
        }
    }

    /// Where the bots (and operators, watchers) connect.
    pub fn bot_addr(&self) -> SocketAddr {
        match self {
            Running::Single(s) => s.c2s_addr(),
            Running::Cluster(c) => c.c2s_addr(BOT_NODE),
        }
    }

    /// The accounts' domain.
    pub fn domain(&self) -> &str {
        match self {
            Running::Single(s) => s.domain(),
            Running::Cluster(c) => c.domain(),
        }
    }

    /// PEM text of the test CA.
    pub fn ca_cert_pem(&self) -> &str {
        match self {
            Running::Single(s) => s.ca_cert_pem(),
            Running::Cluster(c) => c.ca_cert_pem(),
        }
    }

    /// PEM file of the test CA.
    pub fn ca_cert_path(&self) -> &Path {
        match self {
            Running::Single(s) => s.ca_cert_path(),
            Running::Cluster(c) => c.ca_cert_path(),
        }
    }

    /// The server processes (one per node), for CPU accounting.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Running::Single(s) => s.pid().into_iter().collect(),
            Running::Cluster(c) => (0..c.len()).filter_map(|n| c.pid(n)).collect(),
        }
    }

    /// Every log file of the server.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        match self {
            Running::Single(s) => vec![s.log_path().to_owned()],
            Running::Cluster(c) => (0..c.len()).map(|n| c.log_path(n).to_owned()).collect(),
        }
    }

    /// The live page's address for `room_jid`, when this target serves it (Prosody only).
    pub fn page_url(&self, room_jid: &str) -> Option<String> {
        match self {
            Running::Single(s) => s.page_url(room_jid),
            Running::Cluster(_) => None,
        }
    }

    /// The Prosody behind this target, for what only its admin shell can do.
    pub fn prosody(&self) -> Option<&PrivateServer> {
        match self {
            Running::Single(s) if s.kind() == ServerKind::Prosody => Some(&**s),
            _ => None,
        }
    }

    /// Stops the server and removes its files, reporting errors.
    pub fn stop(self) -> Result<(), ServerError> {
        match self {
            Running::Single(s) => s.stop(),
            Running::Cluster(c) => {
                drop(c);
                Ok(())
            }
        }
    }
}
