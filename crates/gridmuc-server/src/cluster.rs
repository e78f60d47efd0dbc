//! Several private ejabberd nodes joined into one cluster on loopback: one node name,
//! spool and loopback address each, one cookie, `join_cluster` as ejabberdctl runs it.
//! Accounts and rooms live in Mnesia on every node; a room's process runs on one node
//! and the others route to it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;

use tempfile::TempDir;

use crate::ejabberd::{self, Node};
use crate::{
    ROOM_ADMIN, RoomPolicy, ServerConfig, ServerError, certs, generate_password, io_error,
};

/// A running ejabberd cluster; every node is killed and its files removed when dropped.
pub struct EjabberdCluster {
    config: ServerConfig,
    nodes: Vec<Node>,
    certs: certs::Certificates,
    room_admin: (String, String),
    // Last, so the nodes are gone before their files.
    _dir: TempDir,
}

/// The loopback address of node `index`: the configured one, then the next ones.
fn node_ip(bind: IpAddr, index: usize) -> Result<IpAddr, ServerError> {
    let IpAddr::V4(v4) = bind else {
        return Err(ServerError::NotLoopback(bind));
    };
    let [a, b, c, d] = v4.octets();
    let last = usize::from(d) + index;
    let ip = IpAddr::V4(Ipv4Addr::new(
        a,
        b,
        c,
        u8::try_from(last).map_err(|_| ServerError::NotLoopback(bind))?,
    ));
    if ip.is_loopback() {
        Ok(ip)
    } else {
        Err(ServerError::NotLoopback(ip))
    }
}

/// A port free on every one of `ips`: each node's distribution listener takes it on its own address.
fn common_free_port(ips: &[IpAddr]) -> Result<u16, ServerError> {
    for _ in 0..100 {
        let port = crate::free_port(ips[0])?.port();
        if ips.iter().all(|ip| TcpListener::bind((*ip, port)).is_ok()) {
            return Ok(port);
        }
    }
    Err(ServerError::Io {
        context: format!("finding a port free on all of {ips:?}"),
        source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
    })
}

impl EjabberdCluster {
    /// Starts `nodes` ejabberd nodes (node `i` on the `i`-th loopback address from
    /// `config.bind`) and joins each to the first; `config.kind` is ignored.
    pub fn start(config: ServerConfig, nodes: usize) -> Result<EjabberdCluster, ServerError> {
        let ips = (0..nodes.max(1))
            .map(|i| node_ip(config.bind, i))
            .collect::<Result<Vec<_>, _>>()?;
        let dir = tempfile::Builder::new()
            .prefix("gridmuc-ejabberd-cluster-")
            .tempdir()
            .map_err(io_error("creating the cluster's temporary directory"))?;
        let certs = certs::generate(
            dir.path(),
            &certs::test_ca()?,
            &crate::config::served_names(&config),
            config.untrusted_cert,
        )?;
        let shared = ejabberd::Shared {
            root: dir.path(),
            certfiles: [&certs.cert_path, &certs.key_path],
            ca: &certs.ca_path,
            dist_port: common_free_port(&ips)?,
        };
        // The cookie is the only secret between nodes: one per cluster, never on a command line.
        let cookie = generate_password();
        let mut started: Vec<Node> = Vec::with_capacity(ips.len());
        for (i, ip) in ips.into_iter().enumerate() {
            let node = Node::start(&config, &shared, i, ip, &cookie)?;
            if let Some(seed) = started.first() {
                node.join_cluster(&seed.name)?;
            }
            started.push(node);
        }
        let cluster = EjabberdCluster {
            room_admin: (
                format!("{ROOM_ADMIN}@{}", config.domain),
                generate_password(),
            ),
            config,
            nodes: started,
            certs,
            _dir: dir,
        };
        cluster.register_many(&[(ROOM_ADMIN.to_owned(), cluster.room_admin.1.clone())])?;
        Ok(cluster)
    }

    /// How many nodes the cluster has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never, once started).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Where node `node` accepts c2s connections (STARTTLS).
    pub fn c2s_addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].c2s
    }

    /// The Erlang node name of node `node`, e.g. for `join_cluster`.
    pub fn node_name(&self, node: usize) -> &str {
        &self.nodes[node].name
    }

    /// The process id of node `node`'s Erlang VM while it runs (for CPU accounting).
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node].beam_pid()
    }

    /// The XMPP domain of the accounts.
    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    /// The MUC service of the rooms.
    pub fn muc_domain(&self) -> &str {
        &self.config.muc_domain
    }

    /// PEM text of the test CA that every node's certificate chains to.
    pub fn ca_cert_pem(&self) -> &str {
        &self.certs.ca_pem
    }

    /// PEM file of the test CA.
    pub fn ca_cert_path(&self) -> &Path {
        &self.certs.ca_path
    }

    /// The log file of node `node`.
    pub fn log_path(&self, node: usize) -> &Path {
        self.nodes[node].log_path()
    }

    /// A running node's API, for changes that Mnesia carries to every node.
    fn any_api(&self) -> Result<SocketAddr, ServerError> {
        self.nodes
            .iter()
            .find(|n| n.pid().is_some())
            .map(|n| n.api)
            .ok_or_else(|| ServerError::Api("no node of the cluster is running".to_owned()))
    }

    /// Calls one admin API command on node `node` (see [`crate::PrivateServer::admin_api`]).
    pub fn admin_api(&self, node: usize, command: &str, json: &str) -> Result<String, ServerError> {
        self.nodes[node].call(command, json)
    }

    /// Creates (or resets) accounts, which every node then serves.
    pub fn register_many(&self, accounts: &[(String, String)]) -> Result<(), ServerError> {
        ejabberd::register_many(self.any_api()?, &self.config.domain, accounts)
    }

    /// Creates the room on node `node` (its process runs there) with `policy`; returns its JID.
    pub fn provision_room(
        &self,
        node: usize,
        room_local: &str,
        policy: &RoomPolicy,
    ) -> Result<String, ServerError> {
        crate::accounts::check_localpart(room_local)?;
        ejabberd::provision_room(
            self.nodes[node].api,
            &self.config.domain,
            room_local,
            &self.config.muc_domain,
            &self.room_admin.0,
            policy,
        )?;
        Ok(format!("{room_local}@{}", self.config.muc_domain))
    }

    /// Kills node `node` with SIGKILL, like a crash; the others keep serving.
    pub fn crash(&mut self, node: usize) -> Result<(), ServerError> {
        self.nodes[node].kill()
    }

    /// Starts a crashed node again on its spool and addresses; Mnesia brings it back into
    /// the cluster by itself. Returns once it serves c2s and lists every node.
    pub fn restart(&mut self, node: usize) -> Result<(), ServerError> {
        self.nodes[node].kill()?;
        self.nodes[node].launch()?;
        let seed = (node + 1) % self.nodes.len();
        if seed != node {
            let name = self.nodes[seed].name.clone();
            self.nodes[node].wait_in_cluster(&name)?;
        }
        Ok(())
    }
}
