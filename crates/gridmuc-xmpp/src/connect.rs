//! Opening a session: STARTTLS with our own rustls roots, SCRAM, and a bounded wait.
//!
//! tokio-xmpp retries forever and reports TLS and SASL failures only in its logs, so
//! [`connect`] first runs one probe login of its own (same connector, same credentials)
//! under a deadline and turns the first failure into a [`ConnectError`]. Only then does it
//! hand the connector to a reconnecting [`Session`] and wait, again bounded, for `Online`.

use crate::guard::Guarded;
use crate::session::Session;
use futures::{SinkExt, StreamExt};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, BufStream};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_xmpp::Event;
use tokio_xmpp::connect::{DnsConfig, ServerConnector};
use tokio_xmpp::jid::{BareJid, Jid};
use tokio_xmpp::rustls::pki_types::pem::PemObject;
use tokio_xmpp::rustls::pki_types::{CertificateDer, ServerName};
use tokio_xmpp::rustls::{ClientConfig, RootCertStore};
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, PendingFeaturesRecv, ReadError, StreamHeader, Timeouts,
    XmppStreamElement, initiate_stream,
};
use xmpp_parsers::starttls;

/// How a session reaches the server; TLS is the default, plaintext exists only for loopback tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// STARTTLS with certificate verification against system roots plus an optional extra CA.
    #[default]
    StartTls,
    /// Unencrypted c2s; refused unless the server address is a loopback address.
    PlaintextLoopback,
}

/// Everything needed to log in; deserialisable so the CLI's TOML files map onto it directly.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct ConnectConfig {
    /// Account JID, e.g. `house1@grid.test`; never logged at info level for houses.
    pub jid: String,
    /// Account password (SCRAM is negotiated by the server's mechanism list).
    pub password: String,
    /// `host:port` or `ip:port` of the c2s listener; `None` uses the SRV record of the JID's domain.
    #[serde(default)]
    pub server: Option<String>,
    /// STARTTLS (default) or loopback-only plaintext.
    #[serde(default)]
    pub transport: Transport,
    /// PEM file with an extra trust anchor, e.g. the private test CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM text of an extra trust anchor, for callers that hold it in memory (tests, demo).
    #[serde(skip)]
    pub ca_pem: Option<String>,
    /// Whether the operating system's roots are trusted as well (default true).
    #[serde(default = "yes")]
    pub system_roots: bool,
    /// Upper bound on the whole login, so a bad certificate or password is an error, not a retry loop.
    #[serde(default = "default_timeout", with = "gridmuc_core::time::span::secs")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

impl ConnectConfig {
    /// A STARTTLS config for one account on a known address, trusting `ca_pem` in addition to nothing else.
    pub fn private_tls(jid: &str, password: &str, server: &str, ca_pem: &str) -> ConnectConfig {
        ConnectConfig {
            jid: jid.to_owned(),
            password: password.to_owned(),
            server: Some(server.to_owned()),
            transport: Transport::StartTls,
            ca_file: None,
            ca_pem: Some(ca_pem.to_owned()),
            system_roots: false,
            timeout: default_timeout(),
        }
    }
}

/// Why a session could not be opened; each variant says what the operator should fix.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configured JID does not parse or has no local part.
    #[error("invalid account JID {0:?}: {1}")]
    BadJid(String, String),
    /// Plaintext was requested for a non-loopback server.
    #[error("plaintext XMPP is only allowed to a loopback address, not {0:?}")]
    PlaintextNotLoopback(String),
    /// The extra CA file could not be read or holds no certificate.
    #[error("cannot use CA {0}: {1}")]
    BadCa(String, String),
    /// TCP, TLS handshake or certificate verification failed.
    #[error("TLS/transport to {server} failed: {reason}")]
    Transport {
        /// Where we tried to connect.
        server: String,
        /// The first error tokio-xmpp would otherwise only have logged.
        reason: String,
    },
    /// The server refused the credentials (SASL failure).
    #[error("authentication as {jid} failed: {reason}")]
    Auth {
        /// The account that failed (only the operator sees this error).
        jid: String,
        /// The server's SASL condition.
        reason: String,
    },
    /// Nothing conclusive happened before the deadline.
    #[error("no session with {server} within {timeout:?} (last state: {state})")]
    Timeout {
        /// Where we tried to connect.
        server: String,
        /// The configured bound.
        timeout: Duration,
        /// What was reached before giving up.
        state: &'static str,
    },
}

/// STARTTLS connector with its own rustls configuration, so extra roots need no process-wide env var.
#[derive(Clone)]
pub struct RustlsStartTls {
    dns: DnsConfig,
    tls: Arc<ClientConfig>,
}

impl std::fmt::Debug for RustlsStartTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RustlsStartTls")
            .field("dns", &self.dns)
            .finish()
    }
}

impl ServerConnector for RustlsStartTls {
    type Stream = BufStream<Guarded<TlsStream<TcpStream>>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<Opened<Self::Stream>, tokio_xmpp::Error> {
        let domain = jid.domain().as_str();
        let tcp = BufStream::new(self.dns.resolve().await?);
        let stream = initiate_stream(tcp, ns, header(domain), timeouts).await?;
        let (features, mut stream) = stream.recv_features::<FallibleStreamElement>().await?;
        if !features.can_starttls() {
            return Err(tokio_xmpp::Error::Protocol(
                tokio_xmpp::error::ProtocolError::NoTls,
            ));
        }
        stream
            .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                starttls::Request,
            )))
            .await?;
        loop {
            match stream
                .next()
                .await
                .map(|r| r.and_then(|e| e.into_read_error()))
            {
                Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
                Some(Ok(_)) | Some(Err(ReadError::SoftTimeout)) => {}
                Some(Err(ReadError::HardError(e))) => return Err(e.into()),
                Some(Err(ReadError::ParseError(e))) => {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e).into());
                }
                None | Some(Err(ReadError::StreamFooterReceived)) => {
                    return Err(tokio_xmpp::Error::Disconnected);
                }
            }
        }
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let tcp = stream.into_inner().into_inner();
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        open_guarded(tls, ns, domain, timeouts).await
    }
}

/// What a connector hands tokio-xmpp: the opened stream and the SASL channel binding.
type Opened<S> = (PendingFeaturesRecv<S>, sasl::common::ChannelBinding);

/// Opens the XMPP stream over `io` with the stanza guard under the parser and, for SCRAM, no
/// channel binding: the last step of both connectors.
async fn open_guarded<S: AsyncRead + AsyncWrite + Unpin + Send>(
    io: S,
    ns: &'static str,
    domain: &str,
    timeouts: Timeouts,
) -> Result<Opened<BufStream<Guarded<S>>>, tokio_xmpp::Error> {
    let stream = initiate_stream(
        BufStream::new(Guarded::new(io)),
        ns,
        header(domain),
        timeouts,
    );
    Ok((stream.await?, NO_CHANNEL_BINDING))
}

/// SCRAM without channel binding.
///
/// tokio-xmpp picks the first mechanism the server lists among SCRAM-SHA-256, SCRAM-SHA-1 and
/// PLAIN, naming SCRAM `-PLUS` whenever a binding is offered; Prosody 0.12 offers no `-PLUS`
/// over TLS 1.3, so offering `tls-exporter` made every login fall back to PLAIN. Plain SCRAM
/// still never sends the password and checks the server's proof; TLS is verified separately.
const NO_CHANNEL_BINDING: sasl::common::ChannelBinding = sasl::common::ChannelBinding::None;

/// Plain TCP for loopback-only tests, guarded like the TLS connector.
#[derive(Clone, Debug)]
pub struct GuardedTcp(DnsConfig);

impl ServerConnector for GuardedTcp {
    type Stream = BufStream<Guarded<TcpStream>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<Opened<Self::Stream>, tokio_xmpp::Error> {
        let tcp = self.0.resolve().await?;
        open_guarded(tcp, ns, jid.domain().as_str(), timeouts).await
    }
}

fn header(domain: &str) -> StreamHeader<'_> {
    StreamHeader {
        to: Some(Cow::Borrowed(domain)),
        from: None,
        id: None,
    }
}

/// Builds the rustls configuration: optional system roots plus the configured extra CA.
fn tls_config(cfg: &ConnectConfig) -> Result<Arc<ClientConfig>, ConnectError> {
    let mut roots = RootCertStore::empty();
    if cfg.system_roots {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    let mut extra = Vec::new();
    if let Some(path) = &cfg.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| ConnectError::BadCa(path.display().to_string(), e.to_string()))?;
        extra.push((path.display().to_string(), pem));
    }
    if let Some(pem) = &cfg.ca_pem {
        extra.push(("in-memory CA".to_owned(), pem.clone().into_bytes()));
    }
    for (what, pem) in extra {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ConnectError::BadCa(what.clone(), e.to_string()))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(ConnectError::BadCa(
                what,
                "no usable certificate".to_owned(),
            ));
        }
    }
    let provider = Arc::new(tokio_xmpp::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::BadCa("rustls".to_owned(), e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn dns_config(cfg: &ConnectConfig, jid: &BareJid) -> DnsConfig {
    match &cfg.server {
        Some(s) if s.parse::<std::net::SocketAddr>().is_ok() => DnsConfig::addr(s),
        Some(s) => match s
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h, p.parse().ok()?)))
        {
            Some((host, port)) => DnsConfig::no_srv(host, port),
            None => DnsConfig::no_srv(s, 5222),
        },
        None => DnsConfig::srv_default_client(jid.domain().as_str()),
    }
}

fn is_loopback(server: Option<&str>) -> bool {
    let Some(s) = server else { return false };
    let host = s.rsplit_once(':').map_or(s, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Logs in once with `connector` and maps the first failure to a [`ConnectError`].
async fn probe<C: ServerConnector>(
    connector: &C,
    jid: &BareJid,
    password: &str,
    server: &str,
) -> Result<(), ConnectError> {
    let full: Jid = jid.clone().into();
    let transport = |e: tokio_xmpp::Error| ConnectError::Transport {
        server: server.to_owned(),
        reason: e.to_string(),
    };
    let (stream, binding) = connector
        .connect(&full, "jabber:client", Timeouts::tight())
        .await
        .map_err(transport)?;
    let (features, stream) = stream
        .recv_features::<FallibleStreamElement>()
        .await
        .map_err(|e| transport(e.into()))?;
    let username = jid.node().map(|n| n.as_str()).unwrap_or_default();
    let creds = sasl::common::Credentials::default()
        .with_username(username)
        .with_password(password)
        .with_channel_binding(binding);
    match tokio_xmpp::client_login(stream, features.sasl_mechanisms, creds).await {
        // Dropping the authenticated stream just closes TCP; the real session follows.
        Ok(_stream) => Ok(()),
        Err(tokio_xmpp::Error::Auth(e)) => Err(ConnectError::Auth {
            jid: jid.to_string(),
            reason: e.to_string(),
        }),
        Err(e) => Err(transport(e)),
    }
}

/// Opens a reconnecting session and returns it once it is online, or a clear error within `cfg.timeout`.
pub async fn connect(cfg: &ConnectConfig) -> Result<Session, ConnectError> {
    let jid =
        BareJid::new(&cfg.jid).map_err(|e| ConnectError::BadJid(cfg.jid.clone(), e.to_string()))?;
    if jid.node().is_none() {
        return Err(ConnectError::BadJid(
            cfg.jid.clone(),
            "no local part".to_owned(),
        ));
    }
    let server = cfg
        .server
        .clone()
        .unwrap_or_else(|| jid.domain().to_string());
    let dns = dns_config(cfg, &jid);
    let deadline = tokio::time::Instant::now() + cfg.timeout;
    let timed_out = |state| ConnectError::Timeout {
        server: server.clone(),
        timeout: cfg.timeout,
        state,
    };
    let login = Login {
        jid: &jid,
        password: &cfg.password,
        server: &server,
        deadline,
        timeout: cfg.timeout,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let client = match cfg.transport {
            Transport::StartTls => {
                let connector = RustlsStartTls {
                    dns: dns.clone(),
                    tls: tls_config(cfg)?,
                };
                start(connector, &login).await?
            }
            Transport::PlaintextLoopback => {
                if !is_loopback(cfg.server.as_deref()) {
                    return Err(ConnectError::PlaintextNotLoopback(server));
                }
                start(GuardedTcp(dns.clone()), &login).await?
            }
        };
        let mut client = wait_online(client, deadline)
            .await
            .ok_or_else(|| timed_out("session negotiation"))?;
        // Rarely a fresh tokio-xmpp 6 session delivers nothing at all (an answer showed up
        // only when we closed it, 10 s later); a ping round trip catches that, and a new
        // session does not have the problem.
        if alive(&mut client, LIVENESS).await {
            announce(&mut client)
                .await
                .map_err(|e| ConnectError::Transport {
                    server: server.clone(),
                    reason: e.to_string(),
                })?;
            return Ok(client);
        }
        tracing::warn!(
            attempt,
            "new session did not answer a ping; starting another"
        );
        close(client).await;
        if attempt >= 3 {
            return Err(timed_out("a session that answers"));
        }
    }
}

/// How long a fresh session may take to answer a ping.
const LIVENESS: Duration = Duration::from_secs(2);

/// One login attempt's facts, the same whichever connector carries it.
struct Login<'a> {
    jid: &'a BareJid,
    password: &'a str,
    server: &'a str,
    deadline: tokio::time::Instant,
    timeout: Duration,
}

/// Probes one login (bounded) and, if it works, starts the reconnecting client.
async fn start<C: ServerConnector>(
    connector: C,
    login: &Login<'_>,
) -> Result<Session, ConnectError> {
    let Login {
        jid,
        password,
        server,
        deadline,
        timeout,
    } = *login;
    tokio::time::timeout_at(deadline, probe(&connector, jid, password, server))
        .await
        .map_err(|_| ConnectError::Timeout {
            server: server.to_owned(),
            // The configured bound, not what was left of it ("within 0ns" told nobody anything).
            timeout,
            state: "probe login",
        })??;
    Ok(Session::new(
        connector,
        jid.clone().into(),
        password.to_owned(),
    ))
}

/// True if the server answers an XEP-0199 ping within `bound` (other events meanwhile are dropped).
async fn alive(client: &mut Session, bound: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + bound;
    let Some(id) = send_ping(client, None, deadline).await else {
        return false;
    };
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Ok(Some(Event::Stanza(tokio_xmpp::Stanza::Iq(iq)))) if iq.id() == id => return true,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return false,
        }
    }
}

/// How long a ping may take before the session counts as dead, for an account bounded by
/// `timeout`: the agents' one rule ([`gridmuc_agent::liveness::ping_bound`]) in tokio's unit.
pub(crate) fn ping_bound(timeout: Duration) -> Duration {
    let bound = gridmuc_agent::liveness::ping_bound(crate::millis(timeout));
    Duration::from_millis(bound.unsigned_abs())
}

/// Sends an XEP-0199 ping (`ping`, or one to our server) unless that takes past `deadline`;
/// the ping's id if it went out.
pub(crate) async fn send_ping(
    client: &mut Session,
    ping: Option<xmpp_parsers::iq::Iq>,
    deadline: tokio::time::Instant,
) -> Option<String> {
    let ping = ping.unwrap_or_else(|| {
        let id = format!("alive-{}", rand::random::<u64>());
        xmpp_parsers::iq::Iq::from_get(id, xmpp_parsers::ping::Ping)
    });
    let id = ping.id().to_owned();
    match tokio::time::timeout_at(deadline, client.send_stanza(ping.into())).await {
        Ok(Ok(_)) => Some(id),
        Ok(Err(_)) | Err(_) => None,
    }
}

/// Sends initial presence: without it the server does not route messages sent to our bare JID
/// (operator commands to the bot, alerts to the operator). Needed again after a fresh session.
pub async fn announce(client: &mut Session) -> std::io::Result<()> {
    client
        .send_stanza(xmpp_parsers::presence::Presence::available().into())
        .await
        .map(drop)
}

/// Polls a fresh client until `Online`; any stanza before that is impossible, so nothing is lost.
async fn wait_online(mut client: Session, deadline: tokio::time::Instant) -> Option<Session> {
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Ok(Some(Event::Online { .. })) => return Some(client),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                close(client).await;
                return None;
            }
        }
    }
}

/// Replaces a stuck session with a fresh one (new stream, no resumption state to trip over).
///
/// While the server is unreachable (a restart, a network fault) it keeps trying with
/// exponential backoff and jitter, so a fleet of meters does not reconnect in lockstep;
/// configuration errors (credentials, certificates) still end it at once.
///
/// The old session is closed (bounded) before this returns, so it has left every room before
/// the caller rejoins: two sessions of one account under one nickname would make the room show
/// the occupant its own real JID, which the bot refuses.
pub async fn renew(client: &mut Session, cfg: &ConnectConfig) -> Result<(), ConnectError> {
    let mut backoff = RENEW_FIRST_BACKOFF;
    let fresh = loop {
        match connect(cfg).await {
            Ok(fresh) => break fresh,
            Err(e @ (ConnectError::Transport { .. } | ConnectError::Timeout { .. })) => {
                let wait = backoff.mul_f64(rand::random_range(0.5..1.5));
                tracing::warn!(error = %e, ?wait, "server unreachable; retrying");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(RENEW_MAX_BACKOFF);
            }
            Err(e) => return Err(e),
        }
    };
    close(std::mem::replace(client, fresh)).await;
    Ok(())
}

/// First wait before another attempt when the server is down; short, restarts take about a second.
const RENEW_FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between attempts.
const RENEW_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Ends a session without ever hanging: `send_end` can block for minutes, so it is bounded.
pub async fn close(client: Session) {
    if tokio::time::timeout(Duration::from_secs(2), client.send_end())
        .await
        .is_err()
    {
        tracing::debug!("stream close did not finish within 2 s; dropped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback(Some("127.0.0.1:5222")));
        assert!(is_loopback(Some("[::1]:5222")));
        assert!(is_loopback(Some("localhost:5222")));
        assert!(!is_loopback(Some("10.0.0.1:5222")));
        assert!(!is_loopback(Some("xmpp.example.org")));
        assert!(!is_loopback(None));
    }
}
