//! A raw XMPP client for live tests, hostile ones included: plain TCP to a loopback server,
//! SASL PLAIN, resource binding, MUC join and leave, and arbitrary bytes on the wire.
//!
//! It exists so tests do not depend on the XMPP library under test, and so they can send
//! what no well-behaved library would (a 30,000-level nested stanza, say). It never parses
//! what it receives into a tree: a byte scanner with a depth counter finds where each
//! top-level element ends, and every check is a substring search. A nesting attack on the
//! client therefore costs it nothing but memory, which is bounded too ([`MAX_ELEMENT`]).
//!
//! Everything it reads is bounded by a deadline; it only ever connects to loopback
//! addresses. Prosody's serialisation is assumed where it matters: attributes in single
//! quotes (`from='room@muc/nick'`, `code='110'`), as Prosody writes them.
//! The server must allow SASL PLAIN in the clear: start it with `require_tls: false`
//! (see [`crate::ServerConfig`]), which allows exactly that.

use std::io::{self, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// How long one wait for the server (a login step, a join, an IQ) may take by default,
/// generous for a loaded 2-core machine; change it with [`RawXmpp::set_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest top-level element we buffer (8 MiB, far above any server's stanza limit),
/// so a hostile peer cannot make the test process grow without bound.
pub const MAX_ELEMENT: usize = 8 * 1024 * 1024;

/// The longest [`RawXmpp::drain`] keeps reading, however chatty the server is.
pub const MAX_DRAIN: Duration = Duration::from_secs(30);

/// How much of the received text an error message quotes, so errors stay readable.
const EXCERPT: usize = 2000;

/// Bytes asked of the socket per read.
const CHUNK: usize = 64 * 1024;

/// The namespace of XMPP stanza error conditions (RFC 6120 §8.3).
const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Everything that can go wrong in the raw client; network input never panics.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    /// A non-loopback address was given; the raw client talks to test servers only.
    #[error("refusing to connect to {0}: the raw client talks to loopback servers only")]
    NotLoopback(SocketAddr),
    /// Connecting, reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The server closed the stream (or the connection) before what we waited for came.
    #[error(
        "the server closed the stream while we waited for {waiting_for}; last received: {received}"
    )]
    Closed {
        /// What we were waiting for.
        waiting_for: String,
        /// The end of what had arrived.
        received: String,
    },
    /// What we waited for did not arrive in time, however much else arrived.
    #[error("no {waiting_for} within {timeout:?}; last received: {received}")]
    Timeout {
        /// What we were waiting for.
        waiting_for: String,
        /// The time we gave it.
        timeout: Duration,
        /// The end of what had arrived.
        received: String,
    },
    /// One top-level element grew beyond [`MAX_ELEMENT`] bytes.
    #[error("an element from the server exceeds {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The stream does not offer the SASL mechanism asked for (PLAIN: TLS required, or
    /// plaintext PLAIN not allowed; ANONYMOUS: not an anonymous host).
    #[error(
        "no SASL {mechanism} offered on this plaintext stream (start the server with require_tls = false; ANONYMOUS only on an anonymous host): {features}"
    )]
    NoMechanism {
        /// The mechanism we wanted.
        mechanism: &'static str,
        /// The stream features the server sent.
        features: String,
    },
    /// SASL authentication was refused (wrong password, unknown account).
    #[error("SASL authentication of {user:?} failed: {answer}")]
    AuthFailed {
        /// The account's local part.
        user: String,
        /// The server's `<failure/>`.
        answer: String,
    },
    /// Resource binding failed or returned no JID.
    #[error("resource binding failed: {answer}")]
    Bind {
        /// The server's answer.
        answer: String,
    },
}

/// The outcome of a MUC join: in the room, or refused with a stanza error condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Join {
    /// In the room; carries our self-presence (status 110), to check role and affiliation.
    Joined(String),
    /// Refused; carries the error condition (e.g. `conflict`) and the error presence.
    Refused {
        /// The RFC 6120 stanza error condition, e.g. `conflict`, `registration-required`.
        condition: String,
        /// The whole error presence, e.g. for its `<text/>`.
        presence: String,
    },
}

impl Join {
    /// Whether we are in the room, for tests that only need the yes or no.
    pub fn is_joined(&self) -> bool {
        matches!(self, Join::Joined(_))
    }

    /// The self-presence or the error presence, for assertions on its text.
    pub fn presence(&self) -> &str {
        match self {
            Join::Joined(p) | Join::Refused { presence: p, .. } => p,
        }
    }

    /// The error condition of a refusal; `None` when joined.
    pub fn condition(&self) -> Option<&str> {
        match self {
            Join::Joined(_) => None,
            Join::Refused { condition, .. } => Some(condition),
        }
    }
}

/// One client-to-server stream over plain TCP, read as bytes and scanned, never parsed.
pub struct RawXmpp {
    stream: TcpStream,
    domain: String,
    pending: Vec<u8>,
    scanner: Scanner,
    jid: String,
    features: String,
    timeout: Duration,
    next_id: u64,
}

impl std::fmt::Debug for RawXmpp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawXmpp")
            .field("peer", &self.stream.peer_addr().ok())
            .field("domain", &self.domain)
            .field("pending_bytes", &self.pending.len())
            .finish_non_exhaustive()
    }
}

/// Where the top-level elements of the received bytes end, found with a depth counter:
/// no tree, no recursion, so any nesting depth costs the same.
#[derive(Debug, Default)]
struct Scanner {
    /// How far `pending` has been scanned (always at a tag start or a text byte).
    pos: usize,
    /// Element depth at `pos`: 0 before the stream header, 1 between stanzas.
    depth: usize,
}

/// The index of the `>` that ends the tag starting at `from`, skipping quoted attribute values.
fn tag_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut quote = None;
    for (i, &b) in buf.iter().enumerate().skip(from) {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'>') => return Some(i),
            _ => {}
        }
    }
    None
}

/// The index just past the first occurrence of `needle` in `buf` at or after `from`.
fn find_end(buf: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    buf.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| from + i + needle.len())
}

impl Scanner {
    /// The end (exclusive) of the first complete top-level item in `buf`: the stream
    /// header, one stanza or nonza, or the stream's closing tag. `None` until it is complete.
    fn scan(&mut self, buf: &[u8]) -> Option<usize> {
        loop {
            let lt = self.pos + buf.get(self.pos..)?.iter().position(|&b| b == b'<')?;
            let Some(&next) = buf.get(lt + 1) else {
                self.pos = lt;
                return None;
            };
            let (end, item_done) = match next {
                b'?' => (find_end(buf, lt, b"?>"), false),
                b'!' if buf[lt..].starts_with(b"<![CDATA[") => (find_end(buf, lt, b"]]>"), false),
                b'!' if buf[lt..].starts_with(b"<!--") => (find_end(buf, lt, b"-->"), false),
                // Too short to tell a comment from CDATA yet: wait for more bytes.
                b'!' if buf.len() - lt < 9 => (None, false),
                b'!' => (tag_end(buf, lt).map(|gt| gt + 1), false),
                b'/' => match tag_end(buf, lt) {
                    Some(gt) => {
                        self.depth = self.depth.saturating_sub(1);
                        (Some(gt + 1), self.depth <= 1)
                    }
                    None => (None, false),
                },
                _ => match tag_end(buf, lt) {
                    Some(gt) => {
                        let self_closing = buf[gt - 1] == b'/';
                        if self.depth == 0 || buf[lt + 1..].starts_with(b"stream:stream") {
                            // A stream header, first or after a restart: stanzas follow at depth 1.
                            self.depth = 1;
                            (Some(gt + 1), true)
                        } else if self_closing {
                            (Some(gt + 1), self.depth == 1)
                        } else {
                            self.depth += 1;
                            (Some(gt + 1), false)
                        }
                    }
                    None => (None, false),
                },
            };
            let Some(end) = end else {
                self.pos = lt; // incomplete tag: wait for more bytes
                return None;
            };
            self.pos = end;
            if item_done {
                self.pos = 0; // the caller removes the item
                return Some(end);
            }
        }
    }
}

/// Standard base64 (RFC 4648) for the SASL PLAIN token.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Escapes text for an XML attribute value in single quotes or for character data.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// The end of `text`, at most [`EXCERPT`] bytes, for error messages.
fn excerpt(text: &[u8]) -> String {
    String::from_utf8_lossy(&text[text.len().saturating_sub(EXCERPT)..]).into_owned()
}

/// The stanza error condition inside an error stanza (`conflict`, `forbidden`, …), if any.
pub fn error_condition(stanza: &str) -> Option<String> {
    let error = stanza.find("<error")?;
    let body = &stanza[error..];
    let mut from = 0;
    while let Some(i) = body[from..].find(STANZA_ERRORS) {
        let at = from + i;
        from = at + STANZA_ERRORS.len();
        let open = body[..at].rfind('<')?;
        let name: String = body[open + 1..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != '/' && *c != '>')
            .collect();
        if name != "text" && !name.is_empty() {
            return Some(name);
        }
    }
    None
}

/// A groupchat message to `room` whose payload nests `depth` elements, each one level
/// inside the previous: the nesting attack on clients that build trees recursively.
/// 30,000 levels take about 210 KB, under Prosody's 256 KiB stanza limit.
pub fn nested_groupchat(room: &str, id: &str, depth: usize) -> String {
    let mut xml = String::with_capacity(depth * 7 + 200);
    xml.push_str(&format!(
        "<message type='groupchat' to='{}' id='{}'><body>nested {depth}</body>\
         <x xmlns='urn:gridmuc:test:nested'>",
        escape(room),
        escape(id)
    ));
    for _ in 1..depth {
        xml.push_str("<x>");
    }
    for _ in 1..depth {
        xml.push_str("</x>");
    }
    xml.push_str("</x></message>");
    xml
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl RawXmpp {
    /// Connects to a loopback server and opens a client stream to `domain` (no login);
    /// read the stream features with [`RawXmpp::read_until`].
    pub fn connect(addr: SocketAddr, domain: &str) -> Result<Self, RawError> {
        if !addr.ip().is_loopback() {
            return Err(RawError::NotLoopback(addr));
        }
        let stream =
            TcpStream::connect_timeout(&addr, DEFAULT_TIMEOUT).map_err(|source| RawError::Io {
                context: format!("connecting to {addr}"),
                source,
            })?;
        stream.set_nodelay(true).map_err(|source| RawError::Io {
            context: "setting TCP_NODELAY".to_owned(),
            source,
        })?;
        stream
            .set_write_timeout(Some(DEFAULT_TIMEOUT))
            .map_err(|source| RawError::Io {
                context: "setting the write timeout".to_owned(),
                source,
            })?;
        let mut client = Self {
            stream,
            domain: domain.to_owned(),
            pending: Vec::new(),
            scanner: Scanner::default(),
            jid: String::new(),
            features: String::new(),
            timeout: DEFAULT_TIMEOUT,
            next_id: 0,
        };
        client.open()?;
        Ok(client)
    }

    /// Logs in with SASL PLAIN on a plaintext stream and binds a resource the server
    /// chooses, so two sessions of one account never replace each other.
    pub fn login(
        addr: SocketAddr,
        domain: &str,
        user: &str,
        password: &str,
    ) -> Result<Self, RawError> {
        let token = base64(format!("\0{user}\0{password}").as_bytes());
        Self::authenticate(addr, domain, "PLAIN", &token, user)
    }

    /// Logs in to an anonymous host with SASL ANONYMOUS (RFC 4505): a fresh random account
    /// per login, as the live page's visitors get.
    pub fn login_anonymous(addr: SocketAddr, domain: &str) -> Result<Self, RawError> {
        // "=" is an empty trace token.
        Self::authenticate(addr, domain, "ANONYMOUS", "=", "an anonymous visitor")
    }

    /// One SASL exchange with `mechanism` and its single `token`, then a bound resource.
    fn authenticate(
        addr: SocketAddr,
        domain: &str,
        mechanism: &'static str,
        token: &str,
        user: &str,
    ) -> Result<Self, RawError> {
        let mut c = Self::connect(addr, domain)?;
        let features = c.read_until("</stream:features>", c.timeout)?;
        if !features.contains(&format!("<mechanism>{mechanism}</mechanism>")) {
            return Err(RawError::NoMechanism {
                mechanism,
                features,
            });
        }
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{mechanism}'>{token}</auth>"
        ))?;
        let answer = c.next_stanza(c.timeout)?;
        if !answer.trim_start().starts_with("<success") {
            return Err(RawError::AuthFailed {
                user: user.to_owned(),
                answer,
            });
        }
        c.open()?;
        c.features = c.read_until("</stream:features>", c.timeout)?;
        let answer = c.iq(
            "bind",
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
        )?;
        let jid = answer
            .split_once("<jid>")
            .and_then(|(_, rest)| rest.split_once("</jid>"))
            .map(|(jid, _)| jid.to_owned());
        match jid {
            Some(jid) if answer.contains("type='result'") => c.jid = jid,
            _ => return Err(RawError::Bind { answer }),
        }
        Ok(c)
    }

    /// Sends a stream header; the next thing the server says is its own header.
    fn open(&mut self) -> Result<(), RawError> {
        // After SASL success nothing is pending: the server waits for this header.
        self.scanner = Scanner::default();
        self.pending.clear();
        let header = format!(
            "<?xml version='1.0'?><stream:stream to='{}' version='1.0' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            escape(&self.domain)
        );
        self.send(&header)
    }

    /// The full JID the server bound (empty before login), e.g. to tell sessions apart.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// The stream features after authentication (e.g. whether XEP-0198 is offered).
    pub fn features(&self) -> &str {
        &self.features
    }

    /// Changes how long [`RawXmpp::join`], [`RawXmpp::leave`], [`RawXmpp::iq`] and
    /// [`RawXmpp::initial_presence`] wait for the server.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Sends `xml` exactly as given: any bytes, well-formed or hostile.
    pub fn send(&mut self, xml: &str) -> Result<(), RawError> {
        self.stream
            .write_all(xml.as_bytes())
            .and_then(|()| self.stream.flush())
            .map_err(|source| RawError::Io {
                context: format!("sending {} bytes", xml.len()),
                source,
            })
    }

    /// A fresh stanza id with `prefix`, so answers are matched to requests.
    fn fresh_id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}-{}", self.next_id)
    }

    /// Reads more bytes into `pending`, waiting at most until `deadline`.
    fn fill(
        &mut self,
        deadline: Instant,
        waiting_for: &str,
        timeout: Duration,
    ) -> Result<(), RawError> {
        let timed_out = |pending: &[u8]| RawError::Timeout {
            waiting_for: waiting_for.to_owned(),
            timeout,
            received: excerpt(pending),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(timed_out(&self.pending));
        }
        if self.pending.len() > MAX_ELEMENT {
            return Err(RawError::TooLarge { limit: MAX_ELEMENT });
        }
        self.stream
            .set_read_timeout(Some(left))
            .map_err(|source| RawError::Io {
                context: "setting the read timeout".to_owned(),
                source,
            })?;
        let mut chunk = [0u8; CHUNK];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(RawError::Closed {
                waiting_for: waiting_for.to_owned(),
                received: excerpt(&self.pending),
            }),
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if is_timeout(&e) => Err(timed_out(&self.pending)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(source) => Err(RawError::Io {
                context: format!("reading while waiting for {waiting_for}"),
                source,
            }),
        }
    }

    /// The next complete top-level item before `deadline`.
    fn next_item(
        &mut self,
        deadline: Instant,
        waiting_for: &str,
        timeout: Duration,
    ) -> Result<String, RawError> {
        loop {
            if let Some(end) = self.scanner.scan(&self.pending) {
                let item: Vec<u8> = self.pending.drain(..end).collect();
                return Ok(String::from_utf8_lossy(&item).into_owned());
            }
            self.fill(deadline, waiting_for, timeout)?;
        }
    }

    /// The next top-level item the server sends within `timeout`: a stanza, a nonza such
    /// as `<stream:features>`, a stream header, or `</stream:stream>` when it closes.
    pub fn next_stanza(&mut self, timeout: Duration) -> Result<String, RawError> {
        self.next_item(Instant::now() + timeout, "a stanza", timeout)
    }

    /// Reads whole top-level items until one contains `needle`, within `timeout`;
    /// returns everything read, that item included. Fails if the stream closes first.
    pub fn read_until(&mut self, needle: &str, timeout: Duration) -> Result<String, RawError> {
        let deadline = Instant::now() + timeout;
        let waiting_for = format!("{needle:?}");
        let mut got = String::new();
        loop {
            let item = self.next_item(deadline, &waiting_for, timeout)?;
            let found = item.contains(needle);
            let closed = item.trim_start().starts_with("</stream:stream");
            got.push_str(&item);
            if found {
                return Ok(got);
            }
            if closed {
                return Err(RawError::Closed {
                    waiting_for,
                    received: excerpt(got.as_bytes()),
                });
            }
        }
    }

    /// Reads and returns whole items until none arrives for `quiet` (at most for
    /// [`MAX_DRAIN`]), e.g. to prove nothing (no JID, no presence) reached this client.
    pub fn drain(&mut self, quiet: Duration) -> Result<String, RawError> {
        let stop = Instant::now() + MAX_DRAIN;
        let mut got = String::new();
        while Instant::now() < stop {
            match self.next_stanza(quiet) {
                Ok(item) => got.push_str(&item),
                Err(RawError::Timeout { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    /// Sends an IQ whose id is `id` and returns the answer (result or error) with that id.
    pub fn iq(&mut self, id: &str, xml: &str) -> Result<String, RawError> {
        self.send(xml)?;
        let (timeout, marker) = (self.timeout, format!("id='{}'", escape(id)));
        let deadline = Instant::now() + timeout;
        loop {
            let item = self.next_item(deadline, &format!("the answer to IQ {id:?}"), timeout)?;
            if item.trim_start().starts_with("<iq") && item.contains(&marker) {
                return Ok(item);
            }
        }
    }

    /// Sends initial presence and waits for the server's reflection of it.
    pub fn initial_presence(&mut self) -> Result<(), RawError> {
        let id = self.fresh_id("presence");
        self.send(&format!("<presence id='{id}'/>"))?;
        self.read_until(&format!("id='{id}'"), self.timeout)
            .map(|_| ())
    }

    /// Joins `room` (bare JID) as `nick` and returns our self-presence (status 110) or the
    /// error condition; presences and messages that arrive before it are skipped.
    pub fn join(&mut self, room: &str, nick: &str) -> Result<Join, RawError> {
        let id = self.fresh_id("join");
        let occupant = format!("{room}/{nick}");
        self.send(&format!(
            "<presence to='{}' id='{id}'><x xmlns='http://jabber.org/protocol/muc'/></presence>",
            escape(&occupant)
        ))?;
        let from = format!("from='{}'", escape(&occupant));
        let id_attr = format!("id='{id}'");
        let (timeout, deadline) = (self.timeout, Instant::now() + self.timeout);
        let waiting_for = format!("the self-presence of {nick:?}");
        loop {
            let p = self.next_item(deadline, &waiting_for, timeout)?;
            let head = p.trim_start();
            if !head.starts_with("<presence") || !(p.contains(&from) || p.contains(&id_attr)) {
                continue;
            }
            if p.contains("type='error'") {
                let condition = error_condition(&p).unwrap_or_default();
                return Ok(Join::Refused {
                    condition,
                    presence: p,
                });
            }
            if p.contains("code='110'") && !p.contains("type='unavailable'") {
                return Ok(Join::Joined(p));
            }
        }
    }

    /// Leaves `room` (sent as `nick`) and returns our unavailable self-presence.
    pub fn leave(&mut self, room: &str, nick: &str) -> Result<String, RawError> {
        let occupant = format!("{room}/{nick}");
        self.send(&format!(
            "<presence to='{}' type='unavailable'/>",
            escape(&occupant)
        ))?;
        let from = format!("from='{}'", escape(&occupant));
        let (timeout, deadline) = (self.timeout, Instant::now() + self.timeout);
        let waiting_for = format!("the unavailable self-presence of {nick:?}");
        loop {
            let p = self.next_item(deadline, &waiting_for, timeout)?;
            if p.trim_start().starts_with("<presence")
                && p.contains(&from)
                && p.contains("type='unavailable'")
                && p.contains("code='110'")
            {
                return Ok(p);
            }
        }
    }

    /// Closes the stream politely (for tests of what a clean leave looks like).
    pub fn close(mut self) -> Result<(), RawError> {
        self.send("</stream:stream>")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn items(input: &str) -> Vec<String> {
        let mut scanner = Scanner::default();
        let mut buf = input.as_bytes().to_vec();
        let mut out = Vec::new();
        while let Some(end) = scanner.scan(&buf) {
            out.push(String::from_utf8_lossy(&buf[..end]).into_owned());
            buf.drain(..end);
        }
        out
    }

    #[test]
    fn scans_top_level_items_without_a_tree() {
        let got = items(
            "<?xml version='1.0'?><stream:stream from='a' xmlns='jabber:client'>\
             <stream:features><x/></stream:features> <iq id='a>b' type='result'/>\
             <message><body>x &lt; y</body></message></stream:stream>",
        );
        assert_eq!(
            got,
            [
                "<?xml version='1.0'?><stream:stream from='a' xmlns='jabber:client'>",
                "<stream:features><x/></stream:features>",
                " <iq id='a>b' type='result'/>",
                "<message><body>x &lt; y</body></message>",
                "</stream:stream>",
            ]
        );
    }

    #[test]
    fn waits_for_incomplete_items_and_handles_deep_nesting() {
        let mut scanner = Scanner { pos: 0, depth: 1 };
        let nested = nested_groupchat("r@m", "n", 30_000);
        let bytes = nested.as_bytes();
        assert!(bytes.len() < 256 * 1024, "{}", bytes.len());
        let mut buf = Vec::new();
        let mut found = None;
        for piece in bytes.chunks(1000) {
            assert!(found.is_none());
            buf.extend_from_slice(piece);
            found = scanner.scan(&buf);
        }
        assert_eq!(found, Some(bytes.len()));
    }

    #[test]
    fn finds_error_conditions() {
        let p = "<presence type='error' from='r@m/n'><error type='cancel'>\
                 <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text>\
                 <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>";
        assert_eq!(error_condition(p).as_deref(), Some("conflict"));
        assert_eq!(error_condition("<presence/>"), None);
    }

    #[test]
    fn encodes_base64() {
        assert_eq!(base64(b"\0u\0p"), "AHUAcA==");
        assert_eq!(base64(b"abc"), "YWJj");
    }

    #[test]
    fn refuses_other_hosts() {
        let err = RawXmpp::connect("192.0.2.1:5222".parse().unwrap(), "x").err();
        assert!(matches!(err, Some(RawError::NotLoopback(_))), "{err:?}");
    }
}
