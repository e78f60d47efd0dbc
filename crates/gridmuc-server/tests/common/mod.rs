//! A minimal raw XMPP client over plain TCP, enough to prove the private server works
//! without depending on the XMPP library under test elsewhere.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The longest any single wait for a server's answer may take.
const READ_DEADLINE: Duration = Duration::from_secs(15);

pub struct RawXmpp {
    stream: TcpStream,
    pending: String,
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
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

impl RawXmpp {
    /// Connects and opens a client stream to `domain`.
    pub fn connect(addr: SocketAddr, domain: &str) -> Self {
        let stream = TcpStream::connect_timeout(&addr, READ_DEADLINE).unwrap();
        let mut client = Self {
            stream,
            pending: String::new(),
        };
        client.open(domain);
        client
    }

    fn open(&mut self, domain: &str) {
        self.send(&format!(
            "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ));
    }

    pub fn send(&mut self, xml: &str) {
        self.stream.write_all(xml.as_bytes()).unwrap();
    }

    /// Reads until `needle` has arrived; returns everything up to and including it.
    /// Panics if it has not arrived within `READ_DEADLINE`, however much else arrives.
    pub fn read_until(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + READ_DEADLINE;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(i) = self.pending.find(needle) {
                let rest = self.pending.split_off(i + needle.len());
                return std::mem::replace(&mut self.pending, rest);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no {needle:?} within {READ_DEADLINE:?}; got {:?}",
                self.pending
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            let n = self
                .stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("waiting for {needle:?}: {e}; got {:?}", self.pending));
            assert!(
                n > 0,
                "stream closed waiting for {needle:?}; got {:?}",
                self.pending
            );
            self.pending.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// SASL PLAIN on a plaintext stream, then resource binding; returns the client and
    /// the stream features after authentication, or `None` if authentication failed.
    pub fn try_login(
        addr: SocketAddr,
        domain: &str,
        user: &str,
        password: &str,
    ) -> Option<(Self, String)> {
        let mut c = Self::connect(addr, domain);
        let features = c.read_until("</stream:features>");
        assert!(
            features.contains("<mechanism>PLAIN</mechanism>"),
            "{features}"
        );
        let token = base64(format!("\0{user}\0{password}").as_bytes());
        c.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        ));
        let outcome = c.read_until("/>");
        if !outcome.contains("<success") {
            return None;
        }
        c.open(domain);
        let features = c.read_until("</stream:features>");
        c.send(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>test</resource></bind></iq>",
        );
        c.read_until("</iq>");
        Some((c, features))
    }

    pub fn login(addr: SocketAddr, domain: &str, user: &str, password: &str) -> Self {
        Self::try_login(addr, domain, user, password)
            .unwrap_or_else(|| panic!("login of {user} failed"))
            .0
    }

    /// Sends an IQ and returns the reply.
    pub fn iq(&mut self, id: &str, xml: &str) -> String {
        self.send(xml);
        loop {
            let stanza = self.read_until("</iq>");
            if stanza.contains(&format!("id='{id}'")) {
                return stanza;
            }
        }
    }

    /// Joins a room and returns the self-presence (status 110).
    pub fn join(&mut self, room: &str, nick: &str) -> String {
        self.send(&format!(
            "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ));
        let presence = self.read_until("</presence>");
        if presence.contains("code='110'") || presence.contains("type='error'") {
            return presence;
        }
        // Presences of other occupants come first when we may see them.
        loop {
            let p = self.read_until("</presence>");
            if p.contains("code='110'") {
                return p;
            }
        }
    }
}
