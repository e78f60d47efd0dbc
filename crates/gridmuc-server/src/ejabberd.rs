//! A private ejabberd 23.01 node (Debian's package) with the same setup as our Prosody:
//! generated `ejabberd.yml`, the test CA's certificate, loopback-only listeners, the room
//! defaults of DESIGN.md, accounts and rooms through `mod_http_api` on a loopback port.
//!
//! The node runs `erl` directly (what `ejabberdctl foreground` runs), as the package's
//! `ejabberd` user when we are root, with a private cookie file, spool and log in the
//! instance's temporary directory. Erlang distribution listens on one loopback address and
//! port (`-erl_epmd_port`, no epmd): nodes of a cluster get one address each and share
//! the port, so nothing ever asks the machine's shared epmd. A shell wrapper kills the node
//! when its stdin closes, so it dies with us even if we are killed.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ServerConfig, ServerError, io_error, tail};

/// Where Debian's package puts ejabberd's Erlang applications (`ERL_LIBS`).
const ERL_LIBS: &str = "/usr/lib/x86_64-linux-gnu";

/// The Erlang runtime the package depends on.
const ERL: &str = "/usr/bin/erl";

/// The unprivileged user the package runs ejabberd as (its `ejabberdctl` refuses others).
const EJABBERD_USER: &str = "ejabberd";

/// How long one node may take to start (Erlang, Mnesia, then the listeners).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one admin API call may take; a cluster join copies tables.
const API_TIMEOUT: Duration = Duration::from_secs(30);

/// Parallel connections for bulk registration: the API handles each request in its own
/// Erlang process, so a few at once keep both cores busy.
const REGISTER_THREADS: usize = 4;

/// Room and service-wide occupant cap: ejabberd's default of 200 is far below a load test.
pub(crate) const MAX_USERS: u32 = 100_000;

/// Kills the node (`kill -9`) when our end of its stdin closes (we exited or dropped it),
/// and exits when the node does.
const WRAPPER: &str = r#"exec 3<&0
"$@" </dev/null 3<&- &
node=$!
( cat <&3 >/dev/null; kill -9 "$node" 2>/dev/null ) &
exec 3<&-
wait "$node"
"#;

/// The `ejabberd` user's ids when we are root (the node then runs as that user), else `None`.
fn run_as() -> Result<Option<(u32, u32)>, ServerError> {
    // Our real uid, from /proc (std has no getuid).
    let status = fs::read_to_string("/proc/self/status").map_err(io_error("reading our uid"))?;
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Ok(None);
    }
    let passwd = fs::read_to_string("/etc/passwd").map_err(io_error("reading /etc/passwd"))?;
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == EJABBERD_USER)
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            ServerError::NotInstalled(format!(
                "ejabberd (no user {EJABBERD_USER:?}); install it with: apt-get install -y ejabberd"
            ))
        })
}

/// Files and ports shared by every node of one instance or cluster.
pub(crate) struct Shared<'a> {
    /// The instance's temporary directory.
    pub(crate) root: &'a Path,
    /// The server certificate chain and key, from the test CA.
    pub(crate) certfiles: [&'a Path; 2],
    /// The test CA, which ejabberd would otherwise look up in the system store and warn.
    pub(crate) ca: &'a Path,
    /// The Erlang distribution port every node listens on, each on its own address.
    pub(crate) dist_port: u16,
}

/// One running (or crashed) ejabberd node.
pub(crate) struct Node {
    pub(crate) name: String,
    pub(crate) c2s: SocketAddr,
    pub(crate) api: SocketAddr,
    dir: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    stderr_path: PathBuf,
    home: PathBuf,
    dist_port: u16,
    owner: Option<(u32, u32)>,
    child: Option<Child>,
}

/// Quotes `text` as a JSON (and YAML flow) string.
pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn ip_tuple(ip: IpAddr) -> Result<String, ServerError> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            Ok(format!("{{{a},{b},{c},{d}}}"))
        }
        IpAddr::V6(_) => Err(ServerError::InvalidAccount(format!(
            "ejabberd nodes listen on IPv4 loopback only, not {ip}"
        ))),
    }
}

/// The generated `ejabberd.yml` of one node.
fn render(config: &ServerConfig, c2s: SocketAddr, api: SocketAddr, shared: &Shared<'_>) -> String {
    let q = |p: &Path| json_string(&p.to_string_lossy());
    let stream_mgmt = if config.smacks {
        "  mod_stream_mgmt:\n    resume_timeout: 600\n"
    } else {
        ""
    };
    format!(
        r#"# Generated by gridmuc-server for one private, loopback-only ejabberd node.
# Warnings and errors only: at info ejabberd logs every login with the account's JID.
loglevel: warning
log_rotate_count: 0
hosts: [{domain}]
certfiles: [{cert}, {key}]
ca_file: {ca}
auth_method: [internal]
auth_password_format: scram
# Every cache (accounts, rosters, ...) holds as many entries as the room holds occupants:
# at the default 1,000 a 2,000-house load test had ejabberd warn and evict on every login.
cache_size: {max_users}
# No federation: nothing leaves this machine.
s2s_access: none
listen:
  - port: {c2s_port}
    ip: {c2s_ip}
    module: ejabberd_c2s
    # Our default and Prosody's: hostile-stanza tests send 30,000-level nested stanzas.
    max_stanza_size: {stanza_limit}
    starttls_required: {require_tls}
    backlog: 1024
  # The admin API (accounts, rooms) on loopback only, for this crate.
  - port: {api_port}
    ip: {api_ip}
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
api_permissions:
  "gridmuc-server on loopback":
    from: [mod_http_api]
    who:
      ip: {api_ip_net}
    what: "*"
modules:
  mod_disco: {{}}
  mod_ping: {{}}
  mod_roster: {{}}
  mod_muc_admin: {{}}
  # change_password, for registering an existing account again.
  mod_admin_extra: {{}}
{stream_mgmt}  # Privacy defaults (DESIGN.md, "Privacy rules"); no mod_mam, no mod_muc_log.
  mod_muc:
    host: {muc}
    # Rooms come from the API only; no client creates one and becomes its owner.
    access_create: none
    access_persistent: none
    # Nobody is owner of every room.
    access_admin: none
    # Nobody registers nicknames but us (the bot's, through the API).
    access_register: none
    history_size: 0
    max_users: {max_users}
    # Nearest to one occupant per account: an account holds one (session, room) pair on
    # the whole service; a second join is refused (oldest wins; docs/ejabberd-cluster.md).
    max_user_conferences: 1
    default_room_options:
      anonymous: true
      presence_broadcast: [moderator]
      persistent: true
      public: false
      public_list: false
      mam: false
      logging: false
      allow_query_users: false
      allow_subscription: false
      max_users: {max_users}
"#,
        domain = json_string(&config.domain),
        cert = q(shared.certfiles[0]),
        key = q(shared.certfiles[1]),
        ca = q(shared.ca),
        c2s_port = c2s.port(),
        c2s_ip = json_string(&c2s.ip().to_string()),
        stanza_limit = crate::C2S_STANZA_SIZE_LIMIT,
        require_tls = config.require_tls,
        api_port = api.port(),
        api_ip = json_string(&api.ip().to_string()),
        // A client of 127.0.0.2 speaks from 127.0.0.1: allow loopback, not just this address.
        api_ip_net = json_string("127.0.0.0/8"),
        muc = json_string(&config.muc_domain),
        max_users = MAX_USERS,
    ) + &config.extra_config
}

impl Node {
    /// Writes one node's files under `shared.root` and starts it, listening on `bind`.
    pub(crate) fn start(
        config: &ServerConfig,
        shared: &Shared<'_>,
        index: usize,
        bind: IpAddr,
        cookie: &str,
    ) -> Result<Node, ServerError> {
        if !bind.is_loopback() {
            return Err(ServerError::NotLoopback(bind));
        }
        if !Path::new(ERL).is_file() || !Path::new(ERL_LIBS).join("ejabberd-23.01").is_dir() {
            return Err(ServerError::NotInstalled(
                "ejabberd 23.01 (no /usr/bin/erl or ejabberd in /usr/lib/x86_64-linux-gnu); \
                 install it with: apt-get install -y ejabberd"
                    .to_owned(),
            ));
        }
        let owner = run_as()?;
        let dir = shared.root.join(format!("node{index}"));
        let home = dir.join("home");
        for d in [&dir, &home, &dir.join("spool")] {
            fs::create_dir_all(d).map_err(io_error(format!("creating {}", d.display())))?;
        }
        let cookie_path = home.join(".erlang.cookie");
        fs::write(&cookie_path, cookie)
            .map_err(io_error(format!("writing {}", cookie_path.display())))?;
        let mut c2s = crate::free_port(bind)?;
        let api = loop {
            let candidate = crate::free_port(bind)?;
            if candidate != c2s && candidate.port() != shared.dist_port {
                break candidate;
            }
        };
        while c2s.port() == shared.dist_port {
            c2s = crate::free_port(bind)?;
        }
        let config_path = dir.join("ejabberd.yml");
        fs::write(&config_path, render(config, c2s, api, shared))
            .map_err(io_error(format!("writing {}", config_path.display())))?;
        // Only the node's user may read the cookie (Erlang refuses a readable one).
        set_mode(&cookie_path, 0o400)?;
        if let Some((uid, gid)) = owner {
            chown_tree(shared.root, uid, gid)?;
        }
        let host = bind.to_string();
        let name = format!(
            "gridmuc{index}-{}-{}@{host}",
            std::process::id(),
            rand::random::<u16>()
        );
        let mut node = Node {
            name,
            c2s,
            api,
            log_path: dir.join("ejabberd.log"),
            stderr_path: dir.join("ejabberd.stderr"),
            config_path,
            home,
            dir,
            dist_port: shared.dist_port,
            owner,
            child: None,
        };
        node.launch()?;
        Ok(node)
    }

    /// The node's own address, where its distribution port listens.
    fn ip(&self) -> IpAddr {
        self.c2s.ip()
    }

    /// `erl` with the options ejabberdctl would give, for this node (`wrapped`: dies when
    /// our end of its stdin closes) or a control client.
    fn erl(&self, name: &str, wrapped: bool) -> Result<Command, ServerError> {
        let mut cmd = if wrapped {
            let mut sh = Command::new("/bin/sh");
            sh.arg("-c").arg(WRAPPER).arg("gridmuc-ejabberd").arg(ERL);
            sh
        } else {
            Command::new(ERL)
        };
        cmd.args(["-name", name, "+K", "true", "+P", "250000"])
            // No scheduler busy-waiting: on a shared 2-core machine the spinning schedulers
            // took CPU from everything else and inflated the node's own CPU figure.
            .args(["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"])
            .args(["-erl_epmd_port", &self.dist_port.to_string()])
            .args(["-start_epmd", "false"])
            .args(["-kernel", "inet_dist_use_interface", &ip_tuple(self.ip())?])
            .env("HOME", &self.home)
            .env("ERL_LIBS", ERL_LIBS)
            .env("EJABBERD_CONFIG_PATH", &self.config_path)
            .env("EJABBERD_LOG_PATH", &self.log_path)
            .env("ERL_CRASH_DUMP", self.dir.join("erl_crash.dump"))
            .env("ERL_CRASH_DUMP_BYTES", "0")
            .current_dir(self.dir.join("spool"))
            .process_group(0);
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        Ok(cmd)
    }

    /// Starts the node on its existing spool (a crashed cluster member rejoins by itself).
    pub(crate) fn launch(&mut self) -> Result<(), ServerError> {
        let stderr = fs::File::create(&self.stderr_path)
            .map_err(io_error(format!("creating {}", self.stderr_path.display())))?;
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(&self.stderr_path, Some(uid), Some(gid))
                .map_err(io_error("handing the stderr file to ejabberd"))?;
        }
        let stdout = stderr
            .try_clone()
            .map_err(io_error("duplicating the stderr file"))?;
        let spool = self.dir.join("spool");
        let child = self
            .erl(&self.name, true)?
            .args(["-mnesia", "dir", &format!("\"{}\"", spool.display())])
            .args(["-s", "ejabberd", "-noinput"])
            .stdin(Stdio::piped())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(io_error("starting ejabberd"))?;
        tracing::info!(node = %self.name, addr = %self.c2s, "ejabberd started");
        self.child = Some(child);
        self.wait_ready()
    }

    fn not_ready(&self, reason: String) -> ServerError {
        ServerError::NotReady {
            reason,
            log: self.log_path.clone(),
            tail: format!(
                "{}\n--- stderr ---\n{}",
                tail(&self.log_path, 30),
                tail(&self.stderr_path, 10)
            ),
        }
    }

    fn wait_ready(&mut self) -> Result<(), ServerError> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(self.not_ready(format!("ejabberd exited with {status}")));
            }
            let up = TcpStream::connect_timeout(&self.c2s, Duration::from_millis(200)).is_ok();
            if up
                && self
                    .call("status", "{}")
                    .is_ok_and(|s| s.contains("started"))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.not_ready(format!(
                    "c2s on {} not accepting within {START_TIMEOUT:?}",
                    self.c2s
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Calls one `mod_http_api` command with a JSON object; the answer's body on HTTP 200.
    pub(crate) fn call(&self, command: &str, json: &str) -> Result<String, ServerError> {
        api_call(self.api, command, json)
    }

    /// Joins this node to the cluster of `seed` with ejabberdctl's own control client
    /// (`join_cluster` restarts ejabberd on this node, so the HTTP API cannot carry it).
    pub(crate) fn join_cluster(&self, seed: &str) -> Result<(), ServerError> {
        let ctl = format!("gridmuc-ctl-{}@{}", std::process::id(), self.ip());
        let out = self
            .erl(&ctl, false)?
            .args(["-hidden", "-noinput", "-dist_listen", "false"])
            .args([
                "-s",
                "ejabberd_ctl",
                "-extra",
                &self.name,
                "join_cluster",
                seed,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(io_error("running ejabberd's control client"))?;
        if !out.status.success() {
            return Err(ServerError::Api(format!(
                "join_cluster {seed} on {}: {} {}",
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        // The join restarted ejabberd's applications; wait until they serve again.
        self.wait_in_cluster(seed)
    }

    /// Waits until this node's API answers and lists `other` as a cluster member.
    pub(crate) fn wait_in_cluster(&self, other: &str) -> Result<(), ServerError> {
        let seed = other;
        let deadline = Instant::now() + START_TIMEOUT;
        while !self
            .call("list_cluster", "{}")
            .is_ok_and(|nodes| nodes.contains(seed))
        {
            if Instant::now() > deadline {
                return Err(self.not_ready(format!("{} did not join {seed}", self.name)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// The process id of the node's wrapper, if running.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The process id of the Erlang VM itself (for CPU accounting), if running.
    pub(crate) fn beam_pid(&self) -> Option<u32> {
        let wrapper = self.pid()?;
        let children =
            fs::read_to_string(format!("/proc/{wrapper}/task/{wrapper}/children")).ok()?;
        children
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|p| {
                fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.starts_with("beam"))
            })
    }

    /// Kills the node like a crash: its wrapper `kill -9`s the VM when its stdin closes.
    pub(crate) fn kill(&mut self) -> Result<(), ServerError> {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            child.wait().map_err(io_error("waiting for ejabberd"))?;
            tracing::info!(node = %self.name, "ejabberd stopped");
        }
        Ok(())
    }

    /// The node's log file.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The node's Mnesia spool.
    pub(crate) fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// The node's generated configuration.
    pub(crate) fn config_path(&self) -> &Path {
        &self.config_path
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            tracing::warn!("stopping the private ejabberd: {e}");
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(io_error(format!("setting the mode of {}", path.display())))
}

/// Hands `root` and everything under it to the node's user (the directory is 0700).
fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<(), ServerError> {
    std::os::unix::fs::chown(root, Some(uid), Some(gid))
        .map_err(io_error(format!("chown {}", root.display())))?;
    if root.is_dir() {
        for entry in fs::read_dir(root).map_err(io_error(format!("listing {}", root.display())))? {
            let entry = entry.map_err(io_error(format!("listing {}", root.display())))?;
            chown_tree(&entry.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// One HTTP/1.1 POST to `/api/<command>` on `addr`; the body on 200, else an `Api` error.
fn api_call(addr: SocketAddr, command: &str, json: &str) -> Result<String, ServerError> {
    let failed = |detail: String| ServerError::Api(format!("{command}: {detail}"));
    let io = |e: std::io::Error| failed(format!("{addr}: {e}"));
    let mut stream = TcpStream::connect_timeout(&addr, API_TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(API_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(API_TIMEOUT)).map_err(io)?;
    let request = format!(
        "POST /api/{command} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).map_err(io)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| failed(format!("no HTTP response: {text}")))?;
    let status = head.split_whitespace().nth(1).unwrap_or_default();
    if status == "200" {
        Ok(body.to_owned())
    } else {
        Err(failed(format!("HTTP {status}: {body}")))
    }
}

/// Creates (or resets the password of) `accounts` through the API, a few requests at once.
pub(crate) fn register_many(
    api: SocketAddr,
    domain: &str,
    accounts: &[(String, String)],
) -> Result<(), ServerError> {
    for (user, password) in accounts {
        crate::accounts::check_localpart(user)?;
        crate::accounts::check_password(user, password)?;
    }
    let chunk = accounts.len().div_ceil(REGISTER_THREADS).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = accounts
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || -> Result<(), ServerError> {
                    for (user, password) in part {
                        register_one(api, domain, user, password)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| ServerError::Api("a registration thread panicked".to_owned()))?
        })
    })
}

fn register_one(
    api: SocketAddr,
    domain: &str,
    user: &str,
    password: &str,
) -> Result<(), ServerError> {
    let body = format!(
        r#"{{"user":{},"host":{},"password":{}}}"#,
        json_string(user),
        json_string(domain),
        json_string(password)
    );
    match api_call(api, "register", &body) {
        Ok(_) => Ok(()),
        // 409: the account exists; reset its password as Prosody's create_user path does.
        Err(ServerError::Api(e)) if e.contains("HTTP 409") => {
            let body = format!(
                r#"{{"user":{},"host":{},"newpass":{}}}"#,
                json_string(user),
                json_string(domain),
                json_string(password)
            );
            api_call(api, "change_password", &body).map(|_| ())
        }
        Err(e) => Err(e),
    }
}

/// The room options of DESIGN.md's privacy rules for `policy`, as `create_room_with_opts`
/// takes them. Presence broadcast comes from the service's `default_room_options` only:
/// the API stores `presence_broadcast` as given, not as a list, and the room process then
/// crashes on every join (`lists:member` badarg).
fn room_options(policy: &crate::RoomPolicy) -> Vec<(&'static str, String)> {
    vec![
        ("anonymous", (!policy.non_anonymous).to_string()),
        ("members_only", policy.members_only.to_string()),
        ("persistent", "true".to_owned()),
        ("public", "false".to_owned()),
        ("public_list", "false".to_owned()),
        ("mam", "false".to_owned()),
        ("logging", "false".to_owned()),
        ("allow_query_users", "false".to_owned()),
        ("allow_subscription", "false".to_owned()),
        ("max_users", MAX_USERS.to_string()),
    ]
}

/// Creates or re-configures the room `name@service` with `policy`, owned by `owner`.
pub(crate) fn provision_room(
    api: SocketAddr,
    host: &str,
    name: &str,
    service: &str,
    owner: &str,
    policy: &crate::RoomPolicy,
) -> Result<(), ServerError> {
    if policy.occupant_id {
        return Err(ServerError::Unsupported(
            "ejabberd 23.01 has no XEP-0421 occupant-id (mod_muc_occupantid came in 23.10)"
                .to_owned(),
        ));
    }
    let room = format!(
        r#""name":{},"service":{}"#,
        json_string(name),
        json_string(service)
    );
    let options = room_options(policy);
    let list = options
        .iter()
        .map(|(k, v)| {
            format!(
                r#"{{"name":{},"value":{}}}"#,
                json_string(k),
                json_string(v)
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    let created = api_call(
        api,
        "create_room_with_opts",
        &format!(
            r#"{{{room},"host":{},"options":[{list}]}}"#,
            json_string(host)
        ),
    );
    match created {
        Ok(_) => {}
        Err(ServerError::Api(e)) if e.contains("already exists") => {
            for (k, v) in &options {
                api_call(
                    api,
                    "change_room_option",
                    &format!(
                        r#"{{{room},"option":{},"value":{}}}"#,
                        json_string(k),
                        json_string(v)
                    ),
                )?;
            }
        }
        Err(e) => return Err(e),
    }
    let affiliate = |jid: &str, affiliation: &str| set_affiliation(api, &room, jid, affiliation);
    affiliate(owner, "owner")?;
    for jid in &policy.admins {
        affiliate(jid, "admin")?;
    }
    for jid in &policy.members {
        affiliate(jid, "member")?;
    }
    for (jid, nick) in &policy.reserved_nicks {
        reserve_nick(api, name, service, jid, nick, &policy.admins)?;
    }
    Ok(())
}

/// Gives `jid` `affiliation` in the room that `room` names (`"name":…,"service":…`).
fn set_affiliation(
    api: SocketAddr,
    room: &str,
    jid: &str,
    affiliation: &str,
) -> Result<(), ServerError> {
    api_call(
        api,
        "set_room_affiliation",
        &format!(
            r#"{{{room},"jid":{},"affiliation":{}}}"#,
            json_string(jid),
            json_string(affiliation)
        ),
    )
    .map(|_| ())
}

/// Registers `nick` for `jid` on the whole MUC service (ejabberd has no per-room
/// registration), makes `jid` a member unless listed in `admins`, and bans then un-bans an
/// occupant of another account holding `nick` now, which removes it (status 301): ejabberd
/// itself would keep it there. Returns whether someone was removed.
pub(crate) fn reserve_nick(
    api: SocketAddr,
    name: &str,
    service: &str,
    jid: &str,
    nick: &str,
    admins: &[String],
) -> Result<bool, ServerError> {
    let room = format!(
        r#""name":{},"service":{}"#,
        json_string(name),
        json_string(service)
    );
    api_call(
        api,
        "muc_register_nick",
        &format!(
            r#"{{"nick":{},"jid":{},"service":{}}}"#,
            json_string(nick),
            json_string(jid),
            json_string(service)
        ),
    )?;
    let affiliate = |jid: &str, affiliation: &str| set_affiliation(api, &room, jid, affiliation);
    if !admins.iter().any(|a| a == jid) {
        affiliate(jid, "member")?;
    }
    let occupants = api_call(api, "get_room_occupants", &format!("{{{room}}}"))?;
    // [{"jid":"user@host/res","nick":"…","role":"…"}, …]
    let mut removed = false;
    for entry in occupants.split('}') {
        let field = |key: &str| {
            let start = entry.find(&format!("\"{key}\":\""))? + key.len() + 4;
            let len = entry[start..].find('"')?;
            Some(entry[start..start + len].to_owned())
        };
        let (Some(full), Some(held)) = (field("jid"), field("nick")) else {
            continue;
        };
        let bare = full.split('/').next().unwrap_or_default();
        if held == nick && bare != jid {
            affiliate(bare, "outcast")?;
            affiliate(bare, "none")?;
            removed = true;
        }
    }
    Ok(removed)
}
