//! The generated `prosody.cfg.lua`: one private instance, loopback only, nothing loaded
//! that the tests and the demo do not need, and the room defaults of DESIGN.md.

use std::net::SocketAddr;
use std::path::Path;

use crate::ServerConfig;
use crate::admin::lua_string;

/// Files of one instance, all inside its temporary directory.
pub(crate) struct Paths<'a> {
    /// Prosody's `data_path`: accounts, rooms.
    pub(crate) data: &'a Path,
    /// The instance's temporary directory, removed by Prosody itself if we die first.
    pub(crate) root: &'a Path,
    /// Directory holding our own plugins.
    pub(crate) plugins: &'a Path,
    /// The log file.
    pub(crate) log: &'a Path,
    /// The pid file.
    pub(crate) pid: &'a Path,
    /// The admin socket.
    pub(crate) admin_socket: &'a Path,
    /// Server certificate chain.
    pub(crate) cert: &'a Path,
    /// Server private key.
    pub(crate) key: &'a Path,
    /// The test CA, against which federated peers' certificates are verified.
    pub(crate) ca: &'a Path,
    /// The web page's files (served only when the server has a web page).
    pub(crate) www: &'a Path,
}

/// The anonymous login host of the web page's visitors.
pub(crate) fn watch_domain(domain: &str) -> String {
    format!("watch.{domain}")
}

/// The HTTP part: the port and what it serves, or nothing at all.
fn web_settings(config: &ServerConfig, http: Option<SocketAddr>, www: &Path) -> (String, String) {
    let Some(http) = http.filter(|_| config.web.is_some()) else {
        return ("http_ports = { }".to_owned(), String::new());
    };
    let watch = lua_string(&watch_domain(&config.domain));
    let global = format!(
        "-- The live page: plain HTTP on loopback only; its websocket counts as secure so the
         -- page may log in although c2s requires TLS.
         http_ports = {{ {port} }}
         http_interfaces = {{ {ip} }}
         http_default_host = {watch}
         consider_websocket_secure = true",
        port = http.port(),
        ip = lua_string(&http.ip().to_string()),
    );
    let host = format!(
        r#"-- The live page's visitors: anonymous logins (a fresh random account each), served the
-- page and the websocket. They join rooms as ordinary occupants and see no JIDs, and may
-- not post anything (lua/mod_gridmuc_watch_only.lua): accounts here cost nothing.
VirtualHost {watch}
	authentication = "anonymous"
	modules_enabled = {{ "websocket", "http_files", "gridmuc_watch_only" }}
	http_files_dir = {www}
	http_paths = {{ files = "/"; websocket = "/xmpp-websocket" }}
"#,
        www = path(www),
    );
    (global, host)
}

/// The s2s side of one federated instance (see `Federation`).
pub(crate) struct S2s {
    /// Where this instance accepts server-to-server connections.
    pub(crate) listen: SocketAddr,
    /// Every domain of the peer and the peer's s2s address, in place of DNS.
    pub(crate) routes: Vec<(String, SocketAddr)>,
}

/// Every domain one instance serves: its certificate names them all, and a federated
/// peer routes them all to it.
pub(crate) fn served_names(config: &ServerConfig) -> [String; 3] {
    [
        config.domain.clone(),
        config.muc_domain.clone(),
        occupant_id_service(&config.muc_domain),
    ]
}

/// Name of the MUC service that advertises XEP-0421 occupant-id, for hostile test rooms:
/// Prosody switches occupant-id per service, not per room.
pub(crate) fn occupant_id_service(muc_domain: &str) -> String {
    format!("occupant-id.{muc_domain}")
}

/// Largest c2s stanza Prosody accepts: its own default of 256 KiB, which a 30,000-level
/// nested stanza (about 210 KB) fits, so hostile-stanza tests reach the clients under test.
pub const C2S_STANZA_SIZE_LIMIT: usize = 256 * 1024;

fn path(p: &Path) -> String {
    lua_string(&p.to_string_lossy())
}

/// The federation part of the global section: s2s modules and ports, certificate
/// verification against the test CA, and the static routes to the peer.
struct S2sSettings {
    modules: &'static [&'static str],
    disabled: &'static str,
    ports: String,
    cafile: String,
    lua: String,
}

fn s2s_settings(s2s: Option<&S2s>, ca: &Path) -> S2sSettings {
    let Some(s2s) = s2s else {
        return S2sSettings {
            modules: &[],
            disabled: r#""s2s", "s2s_auth_certs", "offline""#,
            ports: String::new(),
            cafile: String::new(),
            lua: "-- No federation.".to_owned(),
        };
    };
    let routes = s2s
        .routes
        .iter()
        .map(|(domain, addr)| {
            format!(
                "\t[{}] = {{ {}, {} }};\n",
                lua_string(domain),
                lua_string(&addr.ip().to_string()),
                addr.port()
            )
        })
        .collect::<String>();
    S2sSettings {
        modules: &["gridmuc_s2s_routes"],
        disabled: r#""offline""#,
        ports: s2s.listen.port().to_string(),
        cafile: format!(" cafile = {};", path(ca)),
        lua: format!(
            "-- Federation: TLS required, the peer's certificate must verify against the test CA\n\
             -- and name its domain; peers are found by static route, never DNS.\n\
             s2s_require_encryption = true\n\
             s2s_secure_auth = true\n\
             gridmuc_s2s_routes = {{\n{routes}}}"
        ),
    }
}

/// Renders the configuration file for `config` listening on `c2s` (and on `s2s` when federated).
pub(crate) fn render(
    config: &ServerConfig,
    c2s: SocketAddr,
    s2s: Option<&S2s>,
    http: Option<SocketAddr>,
    paths: &Paths<'_>,
) -> String {
    let federation = s2s_settings(s2s, paths.ca);
    let (http_global, watch_host) = web_settings(config, http, paths.www);
    let mut modules = vec![
        "roster",
        "saslauth",
        "tls",
        "disco",
        "ping",
        "admin_shell",
        "gridmuc_parent_watch",
    ];
    if config.smacks {
        modules.push("smacks");
    }
    modules.extend_from_slice(federation.modules);
    let modules = modules
        .iter()
        .map(|m| lua_string(m))
        .collect::<Vec<_>>()
        .join(", ");
    let ssl = format!(
        "{{ certificate = {}; key = {};{} }}",
        path(paths.cert),
        path(paths.key),
        federation.cafile
    );
    format!(
        r#"-- Generated by gridmuc-server for one private, loopback-only test instance.
run_as_root = true
daemonize = false
pidfile = {pid}
data_path = {data}
plugin_paths = {{ {plugins} }}
gridmuc_cleanup_dir = {root}
admin_socket = {admin_socket}
-- Warnings and errors only: at info Prosody logs every login with the account's JID (a house's).
log = {{ {{ levels = {{ min = "warn" }}, to = "file", filename = {log} }} }}

admins = {{ }}
authentication = "internal_hashed"
default_iteration_count = {iterations}
storage = "internal"
allow_registration = false
modules_enabled = {{ {modules} }}
-- No offline storage, no HTTP but the live page's: only c2s, MUC and (when federated) s2s.
modules_disabled = {{ {disabled} }}

interfaces = {{ {ip} }}
local_interfaces = {{ {ip} }}
c2s_ports = {{ {port} }}
c2s_direct_tls_ports = {{ }}
s2s_ports = {{ {s2s_ports} }}
component_ports = {{ }}
{http_global}
https_ports = {{ }}
c2s_require_encryption = {require_tls}
-- SASL PLAIN in the clear only where TLS is not required (loopback tests that say so):
-- the raw test client (`gridmuc_server::raw`) speaks PLAIN only.
allow_unencrypted_plain_auth = {plain_in_clear}
-- Prosody's own default (256 KiB): hostile-stanza tests send 30,000-level nested stanzas.
c2s_stanza_size_limit = {stanza_limit}
certificates = {root}
ssl = {ssl}

{federation}

-- Privacy defaults of every MUC service (DESIGN.md, "Privacy rules").
muc_occupant_id = false
component_admins_as_room_owners = false
restrict_room_creation = true
muc_room_locking = false
muc_room_default_public = false
muc_room_default_persistent = true
muc_room_default_public_jids = false
muc_room_default_history_length = 0
max_history_messages = 0
muc_room_default_presence_broadcast = {{ moderator = true }}
muc_tombstones = false
-- Only affiliated accounts may register a nickname (Prosody's default, stated here): no
-- house can reserve the bot's. The bot's reservation is made by the room admin.
allow_unaffiliated_register = false

{extra}

VirtualHost {domain}
	ssl = {ssl}

{watch_host}
-- One account, one occupant per room (lua/mod_gridmuc_one_occupant.lua), on both services.
Component {muc} "muc"
	name = "gridmuc rooms"
	modules_enabled = {{ "gridmuc_one_occupant" }}

-- Hostile rooms for refusal tests only: this service advertises XEP-0421 occupant-id.
Component {hostile} "muc"
	name = "gridmuc hostile rooms (occupant-id on)"
	muc_occupant_id = true
	modules_enabled = {{ "gridmuc_one_occupant" }}
"#,
        pid = path(paths.pid),
        data = path(paths.data),
        plugins = path(paths.plugins),
        root = path(paths.root),
        admin_socket = path(paths.admin_socket),
        log = path(paths.log),
        ip = lua_string(&c2s.ip().to_string()),
        port = c2s.port(),
        disabled = federation.disabled,
        s2s_ports = federation.ports,
        federation = federation.lua,
        require_tls = config.require_tls,
        plain_in_clear = !config.require_tls,
        stanza_limit = C2S_STANZA_SIZE_LIMIT,
        iterations = crate::accounts::SCRAM_ITERATIONS,
        extra = config.extra_config,
        http_global = http_global,
        watch_host = watch_host,
        domain = lua_string(&config.domain),
        muc = lua_string(&config.muc_domain),
        hostile = lua_string(&occupant_id_service(&config.muc_domain)),
    )
}
