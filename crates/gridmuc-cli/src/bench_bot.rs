//! `gridmuc bench bot`: the substation bot's own CPU per reading over the whole path it runs
//! live (socket, stanza guard, tokio-xmpp's parser and stream worker, the driver, the core,
//! the acks), on its own thread, against a scripted server on loopback.
//!
//! `loadtest` measures the same figure with a real Prosody and real meters, but those share the
//! machine with the bot and make it noisy. Here the server is a few lines that log the bot in
//! (SASL PLAIN, bind), seat it in the room and then write direct readings as Prosody relays
//! them, paced at `--rate`; the bot's thread CPU (`/proc/.../schedstat`, nanoseconds) is read
//! around the feed. Plaintext, so TLS (about 1 % of the bot's profile) is left out.

use anyhow::{Context, bail};
use gridmuc_core::{AggregatorConfig, NickGenerator, Quality, Reading, ReadingId, RoomNick};
use gridmuc_core::{Timestamp, Watts};
use gridmuc_xmpp::bot::BotConfig;
use gridmuc_xmpp::connect::{ConnectConfig, Transport};
use gridmuc_xmpp::delivery;
use gridmuc_xmpp::metrics::Metrics;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime};
use xmpp_parsers::message::MessageType;

/// Arguments of `gridmuc bench bot`.
#[derive(clap::Args)]
pub struct Args {
    /// Readings per second the server relays to the bot (0: as fast as the bot takes them).
    #[arg(long, default_value_t = 1_000.0)]
    rate: f64,
    /// Distinct nicknames sending; at most one reading each per one-second interval counts, so
    /// keep it at least `--rate`.
    #[arg(long, default_value_t = 1_000)]
    houses: usize,
    /// Length of the feed in seconds.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// Seed for the nicknames and values, so runs are comparable.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

const DOMAIN: &str = "grid.test";
const ROOM: &str = "hood@rooms.grid.test";
const BOT_JID: &str = "bot@grid.test/bench";
const BOT_NICK: &str = "substation";

/// Runs the benchmark and prints `bot: <µs> µs CPU per reading` as the last line.
pub fn run(args: Args) -> anyhow::Result<()> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if args.houses == 0 || !positive(args.seconds) || !(args.rate == 0.0 || positive(args.rate)) {
        bail!("--houses and --seconds must be positive, --rate not negative");
    }
    let listener = TcpListener::bind("127.0.0.1:0").context("binding loopback")?;
    let addr = listener.local_addr()?;
    let (joined_tx, joined_rx) = std_mpsc::channel();
    std::thread::Builder::new()
        .name("bench-server".to_owned())
        .spawn(move || accept(listener, joined_tx))?;

    let account = ConnectConfig {
        jid: "bot@grid.test".to_owned(),
        password: "bench".to_owned(),
        server: Some(addr.to_string()),
        transport: Transport::PlaintextLoopback,
        ca_file: None,
        ca_pem: None,
        system_roots: false,
        timeout: Duration::from_secs(10),
    };
    let mut cfg = BotConfig::new(account, ROOM);
    cfg.nick = BOT_NICK.to_owned();
    cfg.post_summaries = false;
    // As `loadtest` runs it at one reading a second.
    cfg.aggregator = AggregatorConfig {
        interval: 1_000,
        grace: 5_000,
        ..AggregatorConfig::default()
    };
    cfg.aggregator.overload.rating = Watts(25_000 * i64::try_from(args.houses)?);
    let registry = Arc::new(Metrics::new());
    cfg.registry = Some(registry.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (bot, task) = crate::loadtest::spawn_bot_thread(cfg, None, async {
        let _ = stop_rx.await;
    })?;
    let schedstat = task.join("schedstat");

    let feed = joined_rx
        .recv_timeout(Duration::from_secs(20))
        .context("the bot did not log in and join the scripted room")?;
    let mut rng = ChaCha20Rng::seed_from_u64(args.seed);
    let nicks: Vec<RoomNick> = (0..args.houses)
        .map(|_| NickGenerator.generate(&mut rng))
        .collect();
    let total = if args.rate > 0.0 {
        (args.rate * args.seconds).round() as u64
    } else {
        // Flat out: enough to last about `seconds` at 20k readings/s.
        (20_000.0 * args.seconds).round() as u64
    };
    eprintln!(
        "bench bot: {total} direct readings from {} houses at {}, scripted server on {addr}",
        args.houses,
        if args.rate > 0.0 {
            format!("{} readings/s", args.rate)
        } else {
            "full speed".to_owned()
        }
    );

    let accepted_before = registry.accepted();
    let cpu_before = cpu_ns(&schedstat)?;
    let started = Instant::now();
    feed_readings(feed, &nicks, total, args.rate, &mut rng)?;
    // Wait for the bot to take what is in flight.
    let mut last = (registry.accepted(), Instant::now());
    while registry.accepted() - accepted_before < total {
        std::thread::sleep(Duration::from_millis(20));
        let now = registry.accepted();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_ns(&schedstat)? - cpu_before;
    let accepted = registry.accepted() - accepted_before;
    let _ = stop_tx.send(());
    bot.blocking_recv()
        .context("the bot thread ended without a report")?
        .context("the bot")?;
    if accepted == 0 {
        bail!(
            "the bot accepted no reading ({} refused)",
            registry.rejected_total()
        );
    }
    let us = cpu as f64 / 1e3 / accepted as f64;
    eprintln!(
        "accepted {accepted} of {total} in {wall:.1} s ({:.0}/s); bot thread {:.1} % of a core, {:.2} s CPU",
        accepted as f64 / wall,
        cpu as f64 / 1e9 / wall * 100.0,
        cpu as f64 / 1e9
    );
    println!("bot: {us:.2} µs CPU per reading");
    Ok(())
}

/// Nanoseconds a thread has run, the first field of its `schedstat`.
fn cpu_ns(schedstat: &std::path::Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(schedstat)
        .with_context(|| format!("reading {}", schedstat.display()))?;
    text.split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .context("no run time in schedstat")
}

/// Writes `total` direct readings as the room relays them, paced at `rate` per second.
fn feed_readings(
    mut out: TcpStream,
    nicks: &[RoomNick],
    total: u64,
    rate: f64,
    rng: &mut ChaCha20Rng,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut seqnrs: Vec<u64> = nicks.iter().map(|_| rng.random()).collect();
    let to: xmpp_parsers::jid::Jid = format!("{ROOM}/{BOT_NICK}").parse()?;
    for k in 0..total {
        if rate > 0.0 {
            let due = start + Duration::from_secs_f64(k as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let i = usize::try_from(k)? % nicks.len();
        seqnrs[i] = seqnrs[i].wrapping_add(1);
        let unix_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)?
            .as_millis();
        let reading = Reading {
            power: Watts(rng.random_range(0..600) * 10),
            at: Timestamp(i64::try_from(unix_ms)?).floor_to(1_000),
            seqnr: seqnrs[i],
            quality: Quality::AUTOMATIC_READOUT,
        };
        let mut m = delivery::reading_message(
            to.clone(),
            MessageType::Chat,
            ReadingId::random(rng),
            &reading,
        );
        // What Prosody makes of a private message through the room.
        m.from = Some(format!("{ROOM}/{}", nicks[i]).parse()?);
        m.to = Some(BOT_JID.parse()?);
        m.payloads
            .push("<x xmlns='http://jabber.org/protocol/muc#user'/>".parse::<minidom::Element>()?);
        let el = minidom::Element::from(m);
        let mut bytes = Vec::with_capacity(512);
        el.write_to(&mut bytes)?;
        out.write_all(&bytes).context("writing a reading")?;
    }
    Ok(())
}

/// Serves every connection the bot opens (its probe login, then its session).
fn accept(listener: TcpListener, joined: std_mpsc::Sender<TcpStream>) {
    for conn in listener.incoming() {
        let Ok(conn) = conn else { return };
        let joined = joined.clone();
        let _ = std::thread::Builder::new()
            .name("bench-conn".to_owned())
            .spawn(move || {
                if let Err(e) = serve(conn, &joined) {
                    tracing::debug!("scripted connection ended: {e}");
                }
            });
    }
}

/// Scripts one connection: stream, SASL PLAIN, stream restart, bind; then answers the room join
/// and leave, and iq gets; hands a writer to the feeder once the bot is in the room.
fn serve(mut conn: TcpStream, joined: &std_mpsc::Sender<TcpStream>) -> anyhow::Result<()> {
    conn.set_nodelay(true)?;
    let mut input = Incoming::default();
    let header = |features: &str| {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' id='bench' from='{DOMAIN}' \
             version='1.0' xml:lang='en'><stream:features>{features}</stream:features>"
        )
    };
    input.until(&mut conn, "<stream:stream")?;
    input.until(&mut conn, ">")?;
    conn.write_all(
        header(
            "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>",
        )
        .as_bytes(),
    )?;
    input.until(&mut conn, "</auth>")?;
    conn.write_all(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")?;
    input.until(&mut conn, "<stream:stream")?;
    input.until(&mut conn, ">")?;
    conn.write_all(header("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>").as_bytes())?;
    let mut fed = false;
    loop {
        let Some(stanza) = input.next_element(&mut conn)? else {
            return Ok(());
        };
        let attr = |name: &str| attr(&stanza, name).unwrap_or_default();
        if stanza.starts_with("<iq") && stanza.contains("urn:ietf:params:xml:ns:xmpp-bind") {
            conn.write_all(
                format!(
                    "<iq type='result' id='{}'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
                     <jid>{BOT_JID}</jid></bind></iq>",
                    attr("id")
                )
                .as_bytes(),
            )?;
        } else if stanza.starts_with("<iq") && attr("type") == "get" {
            let from = match attr("to") {
                to if to.is_empty() => String::new(),
                to => format!(" from='{to}'"),
            };
            conn.write_all(
                format!(
                    "<iq type='result' id='{}'{from} to='{BOT_JID}'/>",
                    attr("id")
                )
                .as_bytes(),
            )?;
        } else if stanza.starts_with("<presence") && attr("to").starts_with(ROOM) {
            let leaving = attr("type") == "unavailable";
            let type_ = if leaving { " type='unavailable'" } else { "" };
            conn.write_all(
                format!(
                    "<presence from='{}' to='{BOT_JID}'{type_}><x xmlns='http://jabber.org/protocol/muc#user'>\
                     <item affiliation='none' role='participant'/><status code='110'/></x></presence>",
                    attr("to")
                )
                .as_bytes(),
            )?;
            if !leaving && !fed {
                fed = true;
                let _ = joined.send(conn.try_clone()?);
            }
        } else if stanza.starts_with("</stream:stream") {
            let _ = conn.write_all(b"</stream:stream>");
            return Ok(());
        }
    }
}

/// The value of attribute `name` in the start tag that opens `stanza` (either quote style).
fn attr(stanza: &str, name: &str) -> Option<String> {
    let tag = &stanza[..stanza.find('>')?];
    for q in ['"', '\''] {
        let key = format!(" {name}={q}");
        if let Some(at) = tag.find(&key) {
            let rest = &tag[at + key.len()..];
            return Some(rest[..rest.find(q)?].to_owned());
        }
    }
    None
}

/// What the bot has written and the script has not consumed yet.
#[derive(Default)]
struct Incoming {
    buf: String,
}

impl Incoming {
    /// Reads more; false at the end of the stream.
    fn fill(&mut self, conn: &mut TcpStream) -> anyhow::Result<bool> {
        let mut chunk = [0u8; 8192];
        let n = conn.read(&mut chunk)?;
        self.buf.push_str(&String::from_utf8_lossy(&chunk[..n]));
        Ok(n > 0)
    }

    /// The next whole top-level element the bot wrote, or `None` at the end of the stream (the
    /// bot's serialiser escapes `<` in text and attribute values, so a tag starts at every `<`).
    fn next_element(&mut self, conn: &mut TcpStream) -> anyhow::Result<Option<String>> {
        loop {
            if let Some(end) = element_end(&self.buf) {
                let s: String = self.buf.drain(..end).collect();
                return Ok(Some(s.trim_start().to_owned()));
            }
            if !self.fill(conn)? {
                return Ok(None);
            }
        }
    }

    /// Consumes everything up to and including `pat`.
    fn until(&mut self, conn: &mut TcpStream, pat: &str) -> anyhow::Result<()> {
        loop {
            if let Some(at) = self.buf.find(pat) {
                self.buf.drain(..at + pat.len());
                return Ok(());
            }
            if !self.fill(conn)? {
                bail!("the bot closed the stream before {pat:?}");
            }
        }
    }
}

/// Where the first top-level element of `buf` ends (a lone stream end counts as one).
fn element_end(buf: &str) -> Option<usize> {
    let b = buf.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        let close = i + buf[i..].find('>')?;
        let tag = &buf[i..=close];
        if tag.starts_with("</") {
            if depth <= 1 {
                return Some(close + 1);
            }
            depth -= 1;
        } else if !tag.ends_with("/>") {
            depth += 1;
        } else if depth == 0 {
            return Some(close + 1);
        }
        i = close + 1;
    }
    None
}
