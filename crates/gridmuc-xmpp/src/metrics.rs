//! The bot's Prometheus `/metrics`: a registry of atomics the bot updates, and a tiny HTTP/1.1
//! responder that renders it in the text exposition format (0.0.4).
//!
//! Nothing here ever holds a house's JID or nickname: counters are per rejection reason and
//! per alert kind only. The optional in-process [`ReadingTap`] (load tests) carries nicknames
//! over a channel inside the process and never into the exposition.
//!
//! Exposed series:
//! - `gridmuc_readings_accepted_total` — readings counted in an interval;
//! - `gridmuc_readings_rejected_total{reason}` — one series per [`REJECTION_KINDS`] entry;
//! - `gridmuc_alerts_total{kind,state}` — alerts delivered, raised and cleared;
//! - `gridmuc_intervals_total` — intervals closed;
//! - `gridmuc_reading_age_seconds` — histogram of *bot receive time minus the reading's
//!   timestamp*. The timestamp is the start of the interval the reading describes, so the age
//!   is the meter's chosen send offset inside the interval (its jitter) plus the transport
//!   delay; with a 60-s interval and the default jitter expect 6–36 s, and anything beyond
//!   the interval length means readings arrive late.

use gridmuc_core::alert::AlertState;
use gridmuc_core::reject::REJECTION_KINDS;
use gridmuc_core::{Alert, AlertKind, Ingest, RoomNick};
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Upper bounds (seconds) of the reading-age histogram: sub-second transport up to late minutes.
pub const AGE_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Alert kinds in exposition order: every kind the core has.
const ALERT_KINDS: [AlertKind; AlertKind::ALL.len()] = AlertKind::ALL;

/// One reading the bot accepted, for in-process load measurement (never exported).
#[derive(Clone, Debug)]
pub struct TappedReading {
    /// The sender's room nickname.
    pub nick: RoomNick,
    /// The reading's sequence number, which with the nickname identifies it.
    pub seqnr: u64,
    /// When the bot had decoded it (same clock as the senders' `Instant`s).
    pub at: Instant,
}

/// Where accepted readings are copied for in-process latency measurement.
pub type ReadingTap = mpsc::UnboundedSender<TappedReading>;

/// The bot's metric registry; cheap to update from the bot task, read by the HTTP responder.
#[derive(Debug, Default)]
pub struct Metrics {
    accepted: AtomicU64,
    rejected: [AtomicU64; REJECTION_KINDS.len()],
    /// `[kind][0 = raised, 1 = cleared]`.
    alerts: [[AtomicU64; 2]; ALERT_KINDS.len()],
    intervals: AtomicU64,
    /// Non-cumulative bucket counts; the last slot is `+Inf`.
    age_buckets: [AtomicU64; AGE_BUCKETS.len() + 1],
    age_sum_ms: AtomicU64,
    age_count: AtomicU64,
    tap: Option<ReadingTap>,
}

impl Metrics {
    /// An empty registry.
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// An empty registry that also copies every accepted reading to `tap` (load tests).
    pub fn with_tap(tap: ReadingTap) -> Metrics {
        Metrics {
            tap: Some(tap),
            ..Metrics::default()
        }
    }

    /// Records what the aggregator did with one decoded reading; `age_ms` is receive time minus the reading's timestamp.
    pub fn reading(&self, nick: &RoomNick, seqnr: u64, outcome: &Ingest, age_ms: i64) {
        match outcome {
            Ingest::Accepted => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                self.observe_age(age_ms);
                if let Some(tap) = &self.tap {
                    let _ = tap.send(TappedReading {
                        nick: nick.clone(),
                        seqnr,
                        at: Instant::now(),
                    });
                }
            }
            Ingest::Rejected(r) => self.rejection(r),
        }
    }

    /// Records a stanza or reading refused for `r`.
    pub fn rejection(&self, r: &gridmuc_core::Rejection) {
        self.rejected[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Records one closed interval.
    pub fn interval(&self) {
        self.intervals.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one delivered alert (its kind and state only, never the nickname).
    pub fn alert(&self, a: &Alert) {
        let state = usize::from(a.state == AlertState::Cleared);
        if let Some(kind) = ALERT_KINDS.iter().position(|k| *k == a.kind) {
            self.alerts[kind][state].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn observe_age(&self, age_ms: i64) {
        let ms = age_ms.max(0).unsigned_abs();
        let secs = ms as f64 / 1000.0;
        let idx = AGE_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(AGE_BUCKETS.len());
        self.age_buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.age_sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.age_count.fetch_add(1, Ordering::Relaxed);
    }

    /// Readings accepted so far (for in-process callers such as the load test).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Rejections so far, all reasons together.
    pub fn rejected_total(&self) -> u64 {
        self.rejected
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// The registry in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail; the results are ignored on purpose.
        let _ = writeln!(
            out,
            "# HELP gridmuc_readings_accepted_total Readings counted in an interval.\n\
             # TYPE gridmuc_readings_accepted_total counter\n\
             gridmuc_readings_accepted_total {}",
            load(&self.accepted)
        );
        let _ = writeln!(
            out,
            "# HELP gridmuc_readings_rejected_total Stanzas or readings refused, by reason.\n\
             # TYPE gridmuc_readings_rejected_total counter"
        );
        for (kind, c) in REJECTION_KINDS.iter().zip(&self.rejected) {
            let _ = writeln!(
                out,
                "gridmuc_readings_rejected_total{{reason=\"{kind}\"}} {}",
                load(c)
            );
        }
        let _ = writeln!(
            out,
            "# HELP gridmuc_alerts_total Alerts delivered, by kind and state.\n\
             # TYPE gridmuc_alerts_total counter"
        );
        for (kind, states) in ALERT_KINDS.iter().zip(&self.alerts) {
            for (state, c) in ["raised", "cleared"].iter().zip(states) {
                let _ = writeln!(
                    out,
                    "gridmuc_alerts_total{{kind=\"{}\",state=\"{state}\"}} {}",
                    kind.as_str(),
                    load(c)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP gridmuc_intervals_total Intervals closed, empty ones included.\n\
             # TYPE gridmuc_intervals_total counter\n\
             gridmuc_intervals_total {}",
            load(&self.intervals)
        );
        let _ = writeln!(
            out,
            "# HELP gridmuc_reading_age_seconds Bot receive time minus the reading's timestamp (start of its interval), accepted readings.\n\
             # TYPE gridmuc_reading_age_seconds histogram"
        );
        let mut cumulative = 0;
        for (bound, c) in AGE_BUCKETS.iter().zip(&self.age_buckets) {
            cumulative += load(c);
            let _ = writeln!(
                out,
                "gridmuc_reading_age_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += load(&self.age_buckets[AGE_BUCKETS.len()]);
        let _ = writeln!(
            out,
            "gridmuc_reading_age_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n\
             gridmuc_reading_age_seconds_sum {}\n\
             gridmuc_reading_age_seconds_count {}",
            load(&self.age_sum_ms) as f64 / 1000.0,
            load(&self.age_count)
        );
        out
    }
}

/// Longest request head we read before answering 431.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a scraper may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr` for [`serve`]; separate so a bad address is an error before the bot joins.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics");
    Ok(listener)
}

/// Answers `GET /metrics` on `listener` until `shutdown` resolves; one task per connection.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let metrics = metrics.clone();
                    tokio::spawn(async move {
                        if let Err(e) = respond(stream, &metrics).await {
                            tracing::debug!("metrics request failed: {e}");
                        }
                    });
                }
                Err(e) => {
                    // E.g. out of file descriptors: back off instead of spinning.
                    tracing::warn!("metrics listener: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Reads one request head and writes one response, then closes (no keep-alive needed by Prometheus).
async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Ok::<_, std::io::Error>(Some(end));
            }
            if buf.len() > MAX_REQUEST {
                return Ok(None);
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let (status, body) = match head {
        None => ("431 Request Header Fields Too Large", String::new()),
        Some(end) => route(&buf[..end], metrics),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Status and body for one request head.
fn route(head: &[u8], metrics: &Metrics) -> (&'static str, String) {
    let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split(|b| *b == b'?').next().unwrap_or_default());
    match (method, path) {
        (Some(b"GET"), Some(b"/metrics")) => ("200 OK", metrics.render()),
        (Some(b"GET"), Some(_)) => ("404 Not Found", "try /metrics\n".to_owned()),
        _ => ("405 Method Not Allowed", String::new()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gridmuc_core::{Rejection, Severity, Timestamp, Watts};

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn renders_counters_and_histogram() {
        let m = Metrics::new();
        let nick = RoomNick::new("amber-otter-1").unwrap();
        m.reading(&nick, 1, &Ingest::Accepted, 40);
        m.reading(&nick, 2, &Ingest::Accepted, 3_000);
        m.reading(&nick, 3, &Ingest::Rejected(Rejection::Late), 90_000);
        m.rejection(&Rejection::NotANumber);
        m.interval();
        m.alert(&Alert {
            kind: AlertKind::HouseSpike,
            severity: Severity::Warning,
            state: AlertState::Raised,
            at: Timestamp(0),
            nick: Some(nick.clone()),
            value: Watts(1),
            threshold: Watts(1),
        });
        let text = m.render();
        let expected = [
            ("gridmuc_readings_accepted_total", 2.0),
            ("gridmuc_readings_rejected_total{reason=\"late\"}", 1.0),
            ("gridmuc_readings_rejected_total{reason=\"nan\"}", 1.0),
            ("gridmuc_readings_rejected_total{reason=\"duplicate\"}", 0.0),
            (
                "gridmuc_alerts_total{kind=\"house-spike\",state=\"raised\"}",
                1.0,
            ),
            ("gridmuc_intervals_total", 1.0),
            ("gridmuc_reading_age_seconds_bucket{le=\"0.05\"}", 1.0),
            ("gridmuc_reading_age_seconds_bucket{le=\"2.5\"}", 1.0),
            ("gridmuc_reading_age_seconds_bucket{le=\"5\"}", 2.0),
            ("gridmuc_reading_age_seconds_bucket{le=\"+Inf\"}", 2.0),
        ];
        for (series, want) in expected {
            assert_eq!(value(&text, series), want, "{series}");
        }
        assert_eq!(value(&text, "gridmuc_reading_age_seconds_sum"), 3.04);
        assert!(!text.contains("amber-otter"), "{text}");
        assert_eq!(text.matches("gridmuc_readings_rejected_total{").count(), 18);
    }

    #[test]
    fn routes() {
        let m = Metrics::new();
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost: x", &m).0, "200 OK");
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.1", &m).0, "200 OK");
        assert_eq!(route(b"GET / HTTP/1.1", &m).0, "404 Not Found");
        assert_eq!(
            route(b"POST /metrics HTTP/1.1", &m).0,
            "405 Method Not Allowed"
        );
        assert_eq!(route(b"", &m).0, "405 Method Not Allowed");
    }
}
