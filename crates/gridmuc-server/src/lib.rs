//! A private Prosody 0.12 or ejabberd 23.01 for the gridmuc demo and tests.
//!
//! Everything is real: the Debian `prosody` (or `ejabberd`) package runs from a generated
//! configuration in a temporary directory, listens on a free loopback port, serves a
//! certificate from our own test CA and hosts rooms provisioned with the privacy settings
//! of DESIGN.md. The process dies with the [`PrivateServer`] value (and with the process
//! that started it). [`EjabberdCluster`] runs several ejabberd nodes as one cluster.
//! [`Federation`] runs two of them on their own loopback addresses, federated over s2s
//! with TLS and certificates from one test CA (see `docs/federation.md`).
//! [`raw::RawXmpp`] is a raw client for live tests that must send what no XMPP library would.

mod accounts;
mod admin;
mod certs;
mod cluster;
mod config;
mod ejabberd;
mod federation;
pub mod raw;

pub use cluster::EjabberdCluster;
pub use config::C2S_STANZA_SIZE_LIMIT;
pub use federation::Federation;

use std::fs::{self, File};
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng as _;
use tempfile::TempDir;

/// How long Prosody may take to start before we call it a failure.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The account that owns provisioned rooms: never one a meter or the bot uses.
pub(crate) const ROOM_ADMIN: &str = "gridmuc-room-admin";

/// Our Prosody plugins, written into each instance's plugin directory.
const PLUGINS: [(&str, &str); 4] = [
    (
        "mod_gridmuc_parent_watch.lua",
        include_str!("../lua/mod_gridmuc_parent_watch.lua"),
    ),
    (
        "mod_gridmuc_s2s_routes.lua",
        include_str!("../lua/mod_gridmuc_s2s_routes.lua"),
    ),
    (
        "mod_gridmuc_one_occupant.lua",
        include_str!("../lua/mod_gridmuc_one_occupant.lua"),
    ),
    (
        "mod_gridmuc_watch_only.lua",
        include_str!("../lua/mod_gridmuc_watch_only.lua"),
    ),
];

/// Why a squatter holding a nickname loses it when the nickname is reserved.
const RESERVED_REASON: &str = "this nickname is reserved for another account";

/// Lua (for the admin shell) defining `reserve(room, jid, nick)`: `nick` becomes `jid`'s
/// registered nickname (XEP-0045 §7.10; mod_muc then answers `<conflict/>` to any other
/// account joining under it), `jid` becomes a member unless it already is admin or
/// owner, any other account's reservation of `nick` is dropped, and an occupant of
/// another account holding `nick` right now is removed (status 307), since mod_muc
/// itself would keep it there and answer the reserving account `<conflict/>`.
const RESERVE_LUA: &str = r#"local jid_util = require "util.jid"
local resourceprep = require "util.encodings".stringprep.resourceprep
local function reserve(room, jid, nick)
  local bare = jid_util.prep(jid)
  if not bare or jid_util.bare(bare) ~= bare then error("not a bare JID: " .. jid) end
  local prepped = resourceprep(nick, true)
  if not prepped or not prepped:find("%S") then error("invalid nickname: " .. nick) end
  local others = {}
  for other, affiliation, data in room:each_affiliation() do
    if other ~= bare and data and data.reserved_nickname == prepped then
      others[#others + 1] = { other, affiliation, data }
    end
  end
  for _, o in ipairs(others) do
    local rest = {}
    for k, v in pairs(o[3]) do if k ~= "reserved_nickname" then rest[k] = v end end
    assert(room:set_affiliation(true, o[1], o[2], nil, next(rest) and rest or false))
  end
  local current = room:get_affiliation(bare)
  if current == "outcast" then error("cannot reserve a nickname for a banned account") end
  local affiliation = (current == "owner" or current == "admin") and current or "member"
  local data = {}
  for k, v in pairs(room:get_affiliation_data(bare) or {}) do data[k] = v end
  data.reserved_nickname = prepped
  local ok, kind, condition = room:set_affiliation(true, bare, affiliation, nil, data)
  if not ok then error("reserving " .. prepped .. ": " .. tostring(condition or kind)) end
  local holder = room:get_occupant_by_nick(room.jid .. "/" .. prepped)
  local removed = 0
  if holder and holder.bare_jid ~= bare then
    assert(room:set_role(true, holder.nick, "none", REASON))
    removed = 1
  end
  room:save(true)
  return removed
end
"#;

/// [`RESERVE_LUA`] with its kick reason filled in.
fn reserve_lua() -> String {
    RESERVE_LUA.replace("REASON", &admin::lua_string(RESERVED_REASON))
}

/// Where we look for the Prosody binary when it is not on `PATH`.
const PROSODY_FALLBACKS: [&str; 2] = ["/usr/bin/prosody", "/usr/sbin/prosody"];

/// Which XMPP server software runs the private instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerKind {
    /// Prosody 0.12 (Debian's `prosody`), one Lua thread: the default.
    #[default]
    Prosody,
    /// ejabberd 23.01 (Debian's `ejabberd`), Erlang: the engine that clusters.
    Ejabberd,
}

impl ServerKind {
    /// Both servers, for tests that must hold on each.
    pub const ALL: [ServerKind; 2] = [ServerKind::Prosody, ServerKind::Ejabberd];

    /// The package name, as users type it (`--server ejabberd`).
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Prosody => "prosody",
            ServerKind::Ejabberd => "ejabberd",
        }
    }
}

impl std::str::FromStr for ServerKind {
    type Err = ServerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServerKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                ServerError::Unsupported(format!("unknown server {s:?} (prosody or ejabberd)"))
            })
    }
}

impl std::fmt::Display for ServerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of private server to run; the defaults are the privacy-preserving demo setup.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Prosody or ejabberd.
    pub kind: ServerKind,
    /// The XMPP domain accounts live on.
    pub domain: String,
    /// The MUC service hosting the neighbourhood rooms.
    pub muc_domain: String,
    /// Listening address; only loopback addresses are accepted, ever.
    pub bind: IpAddr,
    /// Require STARTTLS on c2s; `false` only for loopback tests that say so, and then SASL
    /// PLAIN is allowed in the clear too, so the raw client ([`raw::RawXmpp`]) can log in.
    pub require_tls: bool,
    /// Enable XEP-0198 stream management (session resumption).
    pub smacks: bool,
    /// Serve a certificate not issued by the test CA, to test that clients refuse it.
    pub untrusted_cert: bool,
    /// Raw text appended to the configuration (Lua for Prosody's global section, YAML for
    /// ejabberd's top level), for test-specific tuning.
    pub extra_config: String,
    /// Serve a web page (the live neighbourhood page) over HTTP with a websocket and an
    /// anonymous login host; `None` (the default) serves no HTTP at all.
    pub web: Option<WebPage>,
}

/// Files Prosody serves over plain HTTP on the server's loopback address, beside a websocket
/// (`/xmpp-websocket`) and an anonymous login host ([`PrivateServer::watch_domain`]), so a
/// browser joins rooms as an ordinary occupant and sees what any occupant sees, no JIDs.
#[derive(Debug, Clone, Default)]
pub struct WebPage {
    /// `(path under /, contents)` of every file, e.g. `("index.html", …)`.
    pub files: Vec<(&'static str, &'static [u8])>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            kind: ServerKind::default(),
            domain: "grid.test".to_owned(),
            muc_domain: "rooms.grid.test".to_owned(),
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            require_tls: true,
            smacks: true,
            untrusted_cert: false,
            extra_config: String::new(),
            web: None,
        }
    }
}

/// How a room is provisioned; the defaults are the privacy rules of DESIGN.md, the
/// other settings exist to build hostile rooms for refusal tests.
#[derive(Debug, Clone, Default)]
pub struct RoomPolicy {
    /// Only members (and admins) may join.
    pub members_only: bool,
    /// Put the room on the service that advertises XEP-0421 occupant-id (hostile test room).
    pub occupant_id: bool,
    /// Show real JIDs to everyone (`whois=anyone`; hostile test room).
    pub non_anonymous: bool,
    /// Bare JIDs made room admins, hence moderators (to test that the bot refuses that).
    pub admins: Vec<String>,
    /// Bare JIDs made members, for members-only rooms.
    pub members: Vec<String>,
    /// `(bare JID, nickname)` pairs: the nickname is reserved for that account (the bot's,
    /// so no other account can pose as the substation), which becomes a member; see
    /// [`PrivateServer::reserve_nick`].
    pub reserved_nicks: Vec<(String, String)>,
}

/// Everything that can go wrong while running the private server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server software is missing; the message says how to install it.
    #[error("not installed: {0}")]
    NotInstalled(String),
    /// A non-loopback address was asked for; test servers never leave this machine.
    #[error("refusing to listen on {0}: only loopback addresses are allowed")]
    NotLoopback(IpAddr),
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Generating the test CA or server certificate failed.
    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),
    /// Prosody did not start; carries the tail of its log.
    #[error("prosody did not become ready: {reason}\n--- tail of {} ---\n{tail}", log.display())]
    NotReady {
        /// Why we gave up.
        reason: String,
        /// The log file to read for more.
        log: PathBuf,
        /// The last lines of the log and of prosody's stderr.
        tail: String,
    },
    /// An account or room name or password that Prosody would store differently.
    #[error("invalid account or room: {0}")]
    InvalidAccount(String),
    /// A command sent to Prosody's admin shell failed.
    #[error("prosody admin shell: {0}")]
    AdminShell(String),
    /// Two servers asked to federate would clash (same address or domain).
    #[error("invalid federation: {0}")]
    Federation(String),
    /// A call to ejabberd's admin API (or its control client) failed.
    #[error("ejabberd admin: {0}")]
    Api(String),
    /// What was asked has no equivalent on this server software.
    #[error("not supported: {0}")]
    Unsupported(String),
}

/// Writes a fresh test CA and a server certificate for `names` (SANs, `CA:FALSE`) into `dir`,
/// for tests of other TLS servers on loopback (Mosquitto's TLS listener): the CA file, the
/// certificate chain and the private key.
pub fn test_certificates(
    dir: &Path,
    names: &[String],
) -> Result<(PathBuf, PathBuf, PathBuf), ServerError> {
    let c = certs::generate(dir, &certs::test_ca()?, names, false)?;
    Ok((c.ca_path, c.cert_path, c.key_path))
}

/// Generates a random password (24 alphanumerics from the thread CSPRNG) for test accounts.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// A running private Prosody or ejabberd; killed and its files removed when dropped.
pub struct PrivateServer {
    config: ServerConfig,
    dir: Option<TempDir>,
    work_dir: PathBuf,
    config_path: PathBuf,
    data_path: PathBuf,
    log_path: PathBuf,
    c2s: SocketAddr,
    s2s: Option<SocketAddr>,
    /// Where the web page and the websocket are served, when [`ServerConfig::web`] is set.
    http: Option<SocketAddr>,
    certs: certs::Certificates,
    room_admin: (String, String),
    engine: Engine,
}

/// What runs behind a [`PrivateServer`].
enum Engine {
    /// The `prosody` process, driven through its admin socket.
    Prosody {
        binary: PathBuf,
        admin_socket: PathBuf,
        stderr_path: PathBuf,
        child: Option<Child>,
    },
    /// One ejabberd node, driven through its loopback admin API.
    Ejabberd(ejabberd::Node),
}

pub(crate) fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// A port on `ip` that nothing listens on right now, for Prosody to take.
pub(crate) fn free_port(ip: IpAddr) -> Result<SocketAddr, ServerError> {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map_err(io_error(format!("finding a free port on {ip}")))
}

fn find_prosody() -> Result<PathBuf, ServerError> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("prosody"));
    on_path
        .chain(PROSODY_FALLBACKS.iter().map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            ServerError::NotInstalled(format!(
                "prosody (not on PATH nor at {}); install it with: apt-get install -y prosody",
                PROSODY_FALLBACKS.join(" or ")
            ))
        })
}

/// Writes the web page's files under `www`, refusing paths that would leave it.
fn write_web_files(www: &Path, web: &WebPage) -> Result<(), ServerError> {
    for (name, contents) in &web.files {
        let relative = Path::new(name);
        let inside = relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(ServerError::Io {
                context: format!("writing the web page's file {name:?}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a relative path inside the page",
                ),
            });
        }
        let path = www.join(relative);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_error(format!("creating {}", dir.display())))?;
        }
        fs::write(&path, contents).map_err(io_error(format!("writing {}", path.display())))?;
    }
    Ok(())
}

/// The last `lines` lines of a file, or a note that it could not be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    match File::open(path).and_then(|mut f| f.read_to_string(&mut text)) {
        Ok(_) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

impl PrivateServer {
    /// Generates config and certificates, starts Prosody and waits until c2s accepts connections.
    pub fn start(config: ServerConfig) -> Result<PrivateServer, ServerError> {
        match config.kind {
            ServerKind::Prosody => Self::start_instance(config, &certs::test_ca()?, None),
            ServerKind::Ejabberd => Self::start_ejabberd(config),
        }
    }

    /// One ejabberd node with its own spool, cookie and Erlang distribution port.
    fn start_ejabberd(config: ServerConfig) -> Result<PrivateServer, ServerError> {
        if !config.bind.is_loopback() {
            return Err(ServerError::NotLoopback(config.bind));
        }
        let dir = tempfile::Builder::new()
            .prefix("gridmuc-ejabberd-")
            .tempdir()
            .map_err(io_error("creating the server's temporary directory"))?;
        let root = dir.path().to_owned();
        let certs = certs::generate(
            &root,
            &certs::test_ca()?,
            &config::served_names(&config),
            config.untrusted_cert,
        )?;
        let node = ejabberd::Node::start(
            &config,
            &ejabberd::Shared {
                root: &root,
                certfiles: [&certs.cert_path, &certs.key_path],
                ca: &certs.ca_path,
                dist_port: free_port(config.bind)?.port(),
            },
            0,
            config.bind,
            &generate_password(),
        )?;
        let server = PrivateServer {
            room_admin: (
                format!("{ROOM_ADMIN}@{}", config.domain),
                generate_password(),
            ),
            work_dir: root,
            config_path: node.config_path().to_owned(),
            data_path: node.spool(),
            log_path: node.log_path().to_owned(),
            c2s: node.c2s,
            s2s: None,
            // The live page is Prosody's (mod_http_files, mod_websocket); see web/README.md.
            http: None,
            certs,
            dir: Some(dir),
            config,
            engine: Engine::Ejabberd(node),
        };
        server.register(ROOM_ADMIN, &server.room_admin.1)?;
        Ok(server)
    }

    /// Starts one instance with a certificate from `ca`, federated when `s2s` is given.
    fn start_instance(
        config: ServerConfig,
        ca: &certs::Ca,
        s2s: Option<&config::S2s>,
    ) -> Result<PrivateServer, ServerError> {
        if !config.bind.is_loopback() {
            return Err(ServerError::NotLoopback(config.bind));
        }
        let prosody = find_prosody()?;
        let dir = tempfile::Builder::new()
            .prefix("gridmuc-prosody-")
            .tempdir()
            .map_err(io_error("creating the server's temporary directory"))?;
        let root = dir.path().to_owned();
        // The s2s port was probed and released just before; never hand it out twice.
        let c2s = loop {
            let candidate = free_port(config.bind)?;
            if s2s.is_none_or(|s| s.listen != candidate) {
                break candidate;
            }
        };

        // The web page's port, distinct from the c2s and s2s ports just probed.
        let http = match &config.web {
            None => None,
            Some(_) => Some(loop {
                let candidate = free_port(config.bind)?;
                if candidate != c2s && s2s.is_none_or(|s| s.listen != candidate) {
                    break candidate;
                }
            }),
        };

        let certs = certs::generate(
            &root,
            ca,
            &config::served_names(&config),
            config.untrusted_cert,
        )?;
        let plugins = root.join("plugins");
        let data_path = root.join("data");
        for d in [&plugins, &data_path] {
            fs::create_dir_all(d).map_err(io_error(format!("creating {}", d.display())))?;
        }
        for (name, code) in PLUGINS {
            let plugin = plugins.join(name);
            fs::write(&plugin, code).map_err(io_error(format!("writing {}", plugin.display())))?;
        }
        let www = root.join("www");
        if let Some(web) = &config.web {
            write_web_files(&www, web)?;
        }

        let log_path = root.join("prosody.log");
        let admin_socket = root.join("admin.sock");
        let text = config::render(
            &config,
            c2s,
            s2s,
            http,
            &config::Paths {
                root: &root,
                data: &data_path,
                plugins: &plugins,
                log: &log_path,
                pid: &root.join("prosody.pid"),
                admin_socket: &admin_socket,
                cert: &certs.cert_path,
                key: &certs.key_path,
                ca: &certs.ca_path,
                www: &www,
            },
        );
        let config_path = root.join("prosody.cfg.lua");
        fs::write(&config_path, text)
            .map_err(io_error(format!("writing {}", config_path.display())))?;

        let mut server = PrivateServer {
            room_admin: (
                format!("{ROOM_ADMIN}@{}", config.domain),
                generate_password(),
            ),
            config,
            dir: Some(dir),
            work_dir: root.clone(),
            config_path,
            data_path,
            log_path,
            c2s,
            s2s: s2s.map(|s| s.listen),
            http,
            certs,
            engine: Engine::Prosody {
                binary: prosody,
                admin_socket,
                stderr_path: root.join("prosody.stderr"),
                child: None,
            },
        };
        server.launch()?;
        server.register(ROOM_ADMIN, &server.room_admin.1)?;
        Ok(server)
    }

    /// Spawns the server and waits until c2s and the admin socket (or API) answer.
    fn launch(&mut self) -> Result<(), ServerError> {
        let (binary, stderr_path, child) = match &mut self.engine {
            Engine::Ejabberd(node) => return node.launch(),
            Engine::Prosody {
                binary,
                stderr_path,
                child,
                ..
            } => (binary, stderr_path, child),
        };
        let stderr = File::create(&*stderr_path)
            .map_err(io_error(format!("creating {}", stderr_path.display())))?;
        let stdout = stderr
            .try_clone()
            .map_err(io_error("duplicating the stderr file"))?;
        let spawned = Command::new(&*binary)
            .arg("--config")
            .arg(&self.config_path)
            .arg("-F")
            .current_dir(&self.data_path)
            // Our end of this pipe closing (we exited, even by SIGKILL) stops Prosody:
            // see lua/mod_gridmuc_parent_watch.lua.
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            // Its own process group, so a terminal's Ctrl-C reaches only us and we stop it.
            .process_group(0)
            .spawn()
            .map_err(io_error(format!("starting {}", binary.display())))?;
        tracing::info!(pid = spawned.id(), addr = %self.c2s, "prosody started");
        *child = Some(spawned);
        self.wait_ready()
    }

    fn not_ready(&self, reason: String) -> ServerError {
        let stderr = match &self.engine {
            Engine::Prosody { stderr_path, .. } => tail(stderr_path, 10),
            Engine::Ejabberd(_) => String::new(),
        };
        ServerError::NotReady {
            reason,
            log: self.log_path.clone(),
            tail: format!("{}\n--- stderr ---\n{stderr}", tail(&self.log_path, 30)),
        }
    }

    fn wait_ready(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Engine::Prosody { child, .. } = &mut self.engine
                && let Some(Ok(Some(status))) = child.as_mut().map(Child::try_wait)
            {
                *child = None;
                return Err(self.not_ready(format!("prosody exited with {status}")));
            }
            if fs::read_to_string(&self.log_path)
                .is_ok_and(|log| log.contains("Failed to open server port"))
            {
                return Err(self.not_ready(format!("port {} is taken", self.c2s)));
            }
            let up = |addr: &SocketAddr| {
                TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_ok()
            };
            let c2s_up = up(&self.c2s)
                && self.s2s.as_ref().is_none_or(up)
                && self.http.as_ref().is_none_or(up);
            if c2s_up && self.admin_lua("return 'ready'").is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(format!(
                    "c2s on {} not accepting within {START_TIMEOUT:?}",
                    self.c2s
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The c2s address clients connect to (STARTTLS unless `require_tls` was false).
    pub fn c2s_addr(&self) -> SocketAddr {
        self.c2s
    }

    /// Where a federated instance accepts s2s connections; `None` when not federated.
    pub fn s2s_addr(&self) -> Option<SocketAddr> {
        self.s2s
    }

    /// Where the web page is served (`http://127.0.0.1:port/`), when [`ServerConfig::web`] is set.
    pub fn web_url(&self) -> Option<String> {
        self.http.map(|addr| format!("http://{addr}/"))
    }

    /// The live page's address for `room_jid`: the page joins it anonymously through this
    /// server's websocket (see `web/README.md` for the parameters).
    pub fn page_url(&self, room_jid: &str) -> Option<String> {
        self.web_url()
            .map(|base| format!("{base}?room={room_jid}&domain={}", self.watch_domain()))
    }

    /// The anonymous login host of the web page's visitors: each login gets a fresh random
    /// account there, which is all a room's occupants could ever see of it.
    pub fn watch_domain(&self) -> String {
        config::watch_domain(&self.config.domain)
    }

    /// The XMPP domain of the accounts.
    pub fn domain(&self) -> &str {
        &self.config.domain
    }

    /// The MUC service of the privacy-preserving rooms.
    pub fn muc_domain(&self) -> &str {
        &self.config.muc_domain
    }

    /// PEM file of the test CA, which clients add as an extra root (e.g. `SSL_CERT_FILE`).
    pub fn ca_cert_path(&self) -> &Path {
        &self.certs.ca_path
    }

    /// PEM text of the test CA, for clients that take roots in memory.
    pub fn ca_cert_pem(&self) -> &str {
        &self.certs.ca_pem
    }

    /// Prosody's log file, to read when something goes wrong.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The data directory (accounts, rooms), for tests that inspect what Prosody stored.
    pub fn data_path(&self) -> &Path {
        &self.data_path
    }

    /// The instance's temporary directory (removed on stop), for files that should die with it.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The generated configuration file, e.g. for `prosodyctl --config … shell`.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// JID and password of the account that owns the provisioned rooms; never the bot's.
    pub fn room_admin(&self) -> (&str, &str) {
        (&self.room_admin.0, &self.room_admin.1)
    }

    /// Creates (or resets the password of) one account and returns its bare JID.
    pub fn register(&self, user: &str, password: &str) -> Result<String, ServerError> {
        self.register_many(&[(user.to_owned(), password.to_owned())])?;
        Ok(format!("{user}@{}", self.config.domain))
    }

    /// Creates (or resets) many accounts quickly: batches of Prosody's own `create_user`
    /// over the admin socket, ~1 ms per account instead of a `prosodyctl` run each; on
    /// ejabberd, `register` calls to its loopback admin API, a few at once.
    pub fn register_many(&self, accounts: &[(String, String)]) -> Result<(), ServerError> {
        let started = Instant::now();
        match &self.engine {
            Engine::Prosody { .. } => {
                for batch in accounts.chunks(accounts::BATCH) {
                    self.admin_lua(&accounts::create_lua(&self.config.domain, batch)?)?;
                }
            }
            Engine::Ejabberd(node) => {
                ejabberd::register_many(node.api, &self.config.domain, accounts)?;
            }
        }
        tracing::debug!(count = accounts.len(), elapsed = ?started.elapsed(), "accounts written");
        Ok(())
    }

    /// Runs a Lua chunk inside the running Prosody (as `prosodyctl shell` would with `>`)
    /// and returns the result text; for tests that inspect live server state.
    pub fn admin_lua(&self, lua: &str) -> Result<String, ServerError> {
        match &self.engine {
            Engine::Prosody { admin_socket, .. } => admin::run_lua(admin_socket, lua),
            Engine::Ejabberd(_) => Err(ServerError::Unsupported(
                "Lua runs in Prosody only; use admin_api on ejabberd".to_owned(),
            )),
        }
    }

    /// Calls one command of ejabberd's admin API (`mod_http_api`) with a JSON object and
    /// returns the JSON answer; for tests that inspect live ejabberd state.
    pub fn admin_api(&self, command: &str, json: &str) -> Result<String, ServerError> {
        match &self.engine {
            Engine::Ejabberd(node) => node.call(command, json),
            Engine::Prosody { .. } => Err(ServerError::Unsupported(
                "the HTTP admin API is ejabberd's; use admin_lua on Prosody".to_owned(),
            )),
        }
    }

    /// Which server software this is.
    pub fn kind(&self) -> ServerKind {
        self.config.kind
    }

    /// Creates or re-configures a persistent room owned by the room admin account and
    /// returns its bare JID. Nobody joins it, so it is never locked and no client ever
    /// becomes its owner by creating it.
    pub fn provision_room(
        &self,
        room_local: &str,
        policy: &RoomPolicy,
    ) -> Result<String, ServerError> {
        accounts::check_localpart(room_local)?;
        if let Engine::Ejabberd(node) = &self.engine {
            let service = &self.config.muc_domain;
            ejabberd::provision_room(
                node.api,
                &self.config.domain,
                room_local,
                service,
                &self.room_admin.0,
                policy,
            )?;
            tracing::info!(room = %room_local, "room provisioned");
            return Ok(format!("{room_local}@{service}"));
        }
        let service = if policy.occupant_id {
            config::occupant_id_service(&self.config.muc_domain)
        } else {
            self.config.muc_domain.clone()
        };
        let room_jid = format!("{room_local}@{service}");
        let list = |jids: &[String]| {
            jids.iter()
                .map(|j| admin::lua_string(j))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let lua = format!(
            r#"local host = prosody.hosts[{service}]
local muc = host and host.modules.muc
if not muc then error("no MUC service " .. {service}) end
local room = muc.get_room_from_jid({jid}) or assert(muc.create_room({jid}))
room:set_persistent(true)
room:set_public(false)
room:set_whois({whois})
room:set_members_only({members_only})
room:set_historylength(0)
room:set_presence_broadcast({{ moderator = true }})
local function affiliate(jid, affiliation)
  local ok, kind, err = room:set_affiliation(true, jid, affiliation)
  if not ok then error(affiliation .. " " .. jid .. ": " .. tostring(err or kind)) end
end
affiliate({owner}, "owner")
for _, jid in ipairs({{ {admins} }}) do affiliate(jid, "admin") end
for _, jid in ipairs({{ {members} }}) do affiliate(jid, "member") end
{reserve_lua}
for _, r in ipairs({{ {reserved} }}) do reserve(room, r[1], r[2]) end
room:save(true)
return "provisioned"
"#,
            service = admin::lua_string(&service),
            jid = admin::lua_string(&room_jid),
            whois = admin::lua_string(if policy.non_anonymous {
                "anyone"
            } else {
                "moderators"
            }),
            members_only = policy.members_only,
            owner = admin::lua_string(&self.room_admin.0),
            admins = list(&policy.admins),
            members = list(&policy.members),
            reserve_lua = reserve_lua(),
            reserved = policy
                .reserved_nicks
                .iter()
                .map(|(jid, nick)| format!(
                    "{{ {}, {} }}",
                    admin::lua_string(jid),
                    admin::lua_string(nick)
                ))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let started = Instant::now();
        self.admin_lua(&lua)?;
        tracing::info!(room = %room_jid, elapsed = ?started.elapsed(), "room provisioned");
        Ok(room_jid)
    }

    /// Reserves `nick` in the room `room_jid` for the account `jid` (bare), so that no other
    /// account can join under it: mod_muc answers such a join with `<conflict/>`. The
    /// account becomes a member (never owner or admin; an affiliation of admin or owner
    /// given on purpose, e.g. by [`RoomPolicy::admins`], is kept). A member is still a
    /// plain participant in our rooms and sees no real JIDs. If another account's occupant
    /// holds `nick` at this moment it is removed from the room (status 307); returns
    /// whether that happened.
    ///
    /// On ejabberd the reservation is per MUC service, not per room (one nickname per
    /// account on the service), and a squatter is removed by a ban and un-ban (status 301).
    pub fn reserve_nick(&self, room_jid: &str, jid: &str, nick: &str) -> Result<bool, ServerError> {
        if let Engine::Ejabberd(node) = &self.engine {
            let (name, service) = room_jid.split_once('@').ok_or_else(|| {
                ServerError::InvalidAccount(format!("not a room JID: {room_jid}"))
            })?;
            return ejabberd::reserve_nick(node.api, name, service, jid, nick, &[]);
        }
        let lua = format!(
            r#"local jid_util = require "util.jid"
local room_jid = {room}
local host = prosody.hosts[jid_util.host(room_jid) or ""]
local muc = host and host.modules.muc
local room = muc and muc.get_room_from_jid(room_jid)
if not room then error("no room " .. room_jid) end
{reserve_lua}
return "removed=" .. reserve(room, {jid}, {nick})
"#,
            room = admin::lua_string(room_jid),
            reserve_lua = reserve_lua(),
            jid = admin::lua_string(jid),
            nick = admin::lua_string(nick),
        );
        let result = self.admin_lua(&lua)?;
        let removed = result.ends_with("removed=1");
        tracing::debug!(room = %room_jid, nick, removed, "nickname reserved");
        Ok(removed)
    }

    /// The process id of the running server, if any (for tests that check it is gone, and
    /// for CPU accounting: ejabberd's Erlang VM, not its wrapper).
    pub fn pid(&self) -> Option<u32> {
        match &self.engine {
            Engine::Prosody { child, .. } => child.as_ref().map(Child::id),
            Engine::Ejabberd(node) => node.beam_pid(),
        }
    }

    fn kill(&mut self) -> Result<(), ServerError> {
        match &mut self.engine {
            Engine::Prosody { child, .. } => {
                if let Some(mut child) = child.take() {
                    child.kill().map_err(io_error("killing prosody"))?;
                    child.wait().map_err(io_error("waiting for prosody"))?;
                    tracing::info!(pid = child.id(), "prosody stopped");
                }
                Ok(())
            }
            Engine::Ejabberd(node) => node.kill(),
        }
    }

    /// Kills the server (SIGKILL, like a crash) and starts it again on the same port and data.
    pub fn restart(&mut self) -> Result<(), ServerError> {
        self.kill()?;
        self.launch()
    }

    /// Kills Prosody and removes the temporary directory, reporting errors (Drop ignores them).
    pub fn stop(mut self) -> Result<(), ServerError> {
        self.kill()?;
        match self.dir.take() {
            Some(dir) => dir
                .close()
                .map_err(io_error("removing the server's temporary directory")),
            None => Ok(()),
        }
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!("stopping the private server: {e}");
        }
    }
}
