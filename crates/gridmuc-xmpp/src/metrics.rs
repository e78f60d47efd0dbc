//! The bot's Prometheus `/metrics`: a `prometheus-client` registry the bot updates, served
//! over HTTP/1.1 by hyper.
//!
//! Nothing here ever holds a house's JID or nickname: labels are rejection reasons, alert
//! kinds and states, and the build's version only. The optional in-process [`ReadingTap`]
//! (load tests) keeps nicknames in a buffer inside the process and never puts them into the
//! exposition.
//!
//! Exposed series (`contrib/` has a Grafana dashboard and alert rules over them):
//! - `gridmuc_build_info{version}` — always 1, so "the bot is up" is one query;
//! - `gridmuc_readings_accepted_total` — readings counted in an interval;
//! - `gridmuc_readings_rejected_total{reason}` — one series per [`REJECTION_KINDS`] entry;
//! - `gridmuc_alerts_total{kind,state}` — alerts delivered, raised and cleared;
//! - `gridmuc_intervals_total` — intervals closed;
//! - `gridmuc_interval_load_watts`, `gridmuc_interval_meters` — the last closed interval's
//!   neighbourhood total and how many meters reported in it;
//! - `gridmuc_rating_watts` — the transformer rating the overload alert uses;
//! - `gridmuc_session_replacements_total` — XMPP sessions the driver replaced (stalls);
//! - `gridmuc_reading_age_seconds` — histogram of *bot receive time minus the reading's
//!   timestamp*. The timestamp is the start of the interval the reading describes, so the age
//!   is the meter's chosen send offset inside the interval (its jitter) plus the transport
//!   delay; with a 60-s interval and the default jitter expect 6–36 s, and anything beyond
//!   the interval length means readings arrive late.
//!
//! A scrape that accepts OpenMetrics gets it (Prometheus asks for it); anything else gets the
//! Prometheus text format 0.0.4, which `promtool check metrics` and `curl` users read.

use gridmuc_core::alert::AlertState;
use gridmuc_core::reject::REJECTION_KINDS;
use gridmuc_core::{Alert, AlertKind, Ingest, IntervalStats, RoomNick, Watts};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Upper bounds (seconds) of the reading-age histogram: sub-second transport up to late minutes.
pub const AGE_BUCKETS: [f64; 14] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// The OpenMetrics content type `prometheus-client`'s text encoder writes.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// Where accepted readings are copied for in-process latency measurement: a buffer the
/// caller drains at its own pace. A channel would wake the caller's thread once per reading,
/// and that wake-up (a system call on the bot's thread) was a measurable part of the bot's
/// CPU per reading that `loadtest` reports.
#[derive(Debug, Default)]
pub struct ReadingTap(std::sync::Mutex<Vec<TappedReading>>);

impl ReadingTap {
    /// Takes every reading tapped since the last call.
    pub fn drain(&self) -> Vec<TappedReading> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn push(&self, t: TappedReading) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(t);
    }
}

/// `reason` label of the rejection counter: a [`REJECTION_KINDS`] entry, never a sender.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

/// `kind` and `state` labels of the alert counter: never the nickname an alert names.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    kind: &'static str,
    state: &'static str,
}

impl AlertLabels {
    fn of(kind: AlertKind, state: AlertState) -> AlertLabels {
        AlertLabels {
            kind: kind.as_str(),
            state: match state {
                AlertState::Raised => "raised",
                AlertState::Cleared => "cleared",
            },
        }
    }
}

/// The bot's metric registry; cheap to update from the bot task, read by the HTTP server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    accepted: Counter,
    rejected: Family<Reason, Counter>,
    alerts: Family<AlertLabels, Counter>,
    intervals: Counter,
    load: Gauge,
    meters: Gauge,
    rating: Gauge,
    replacements: Counter,
    age: Histogram,
    tap: Option<Arc<ReadingTap>>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// An empty registry; every reason and alert series starts at 0 so rates work from the first scrape.
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            accepted: Counter::default(),
            rejected: Family::default(),
            alerts: Family::default(),
            intervals: Counter::default(),
            load: Gauge::default(),
            meters: Gauge::default(),
            rating: Gauge::default(),
            replacements: Counter::default(),
            age: Histogram::new(AGE_BUCKETS),
            tap: None,
        };
        for reason in REJECTION_KINDS {
            let _ = m.rejected.get_or_create(&Reason { reason });
        }
        for kind in AlertKind::ALL {
            for state in [AlertState::Raised, AlertState::Cleared] {
                let _ = m.alerts.get_or_create(&AlertLabels::of(kind, state));
            }
        }
        m.registered()
    }

    /// An empty registry that also copies every accepted reading to `tap` (load tests).
    pub fn with_tap(tap: Arc<ReadingTap>) -> Metrics {
        Metrics {
            tap: Some(tap),
            ..Metrics::new()
        }
    }

    /// Registers every handle (they share their values with the registry's clones).
    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "gridmuc_build",
            "The running gridmuc build; always 1 while the bot serves metrics",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        r.register(
            "gridmuc_readings_accepted",
            "Readings counted in an interval",
            self.accepted.clone(),
        );
        r.register(
            "gridmuc_readings_rejected",
            "Stanzas or readings refused, by reason",
            self.rejected.clone(),
        );
        r.register(
            "gridmuc_alerts",
            "Alerts delivered, by kind and state",
            self.alerts.clone(),
        );
        r.register(
            "gridmuc_intervals",
            "Intervals closed, empty ones included",
            self.intervals.clone(),
        );
        r.register(
            "gridmuc_interval_load_watts",
            "Neighbourhood total of the last closed interval, in W",
            self.load.clone(),
        );
        r.register(
            "gridmuc_interval_meters",
            "Meters that reported in the last closed interval",
            self.meters.clone(),
        );
        r.register(
            "gridmuc_rating_watts",
            "Transformer rating the overload alert uses, in W",
            self.rating.clone(),
        );
        r.register(
            "gridmuc_session_replacements",
            "XMPP sessions replaced because the old one stalled or lost the room",
            self.replacements.clone(),
        );
        r.register(
            "gridmuc_reading_age_seconds",
            "Bot receive time minus the reading's timestamp (start of its interval), accepted readings",
            self.age.clone(),
        );
        self
    }

    /// Records what the aggregator did with one decoded reading; `age_ms` is receive time minus the reading's timestamp.
    pub fn reading(&self, nick: &RoomNick, seqnr: u64, outcome: &Ingest, age_ms: i64) {
        match outcome {
            Ingest::Accepted => {
                self.accepted.inc();
                self.age.observe(age_ms.max(0) as f64 / 1000.0);
                if let Some(tap) = &self.tap {
                    tap.push(TappedReading {
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
        self.rejected
            .get_or_create(&Reason { reason: r.kind() })
            .inc();
    }

    /// Records one closed interval and its totals.
    pub fn interval(&self, stats: &IntervalStats) {
        self.intervals.inc();
        self.load.set(stats.total.0);
        self.meters
            .set(i64::try_from(stats.meters).unwrap_or(i64::MAX));
    }

    /// Sets the transformer rating, so dashboards draw the load against it.
    pub fn rating(&self, rating: Watts) {
        self.rating.set(rating.0);
    }

    /// Records one delivered alert (its kind and state only, never the nickname).
    pub fn alert(&self, a: &Alert) {
        self.alerts
            .get_or_create(&AlertLabels::of(a.kind, a.state))
            .inc();
    }

    /// Records one XMPP session replaced by the driver.
    pub fn session_replaced(&self) {
        self.replacements.inc();
    }

    /// Readings accepted so far (for in-process callers such as the load test).
    pub fn accepted(&self) -> u64 {
        self.accepted.get()
    }

    /// Rejections so far, all reasons together.
    pub fn rejected_total(&self) -> u64 {
        REJECTION_KINDS
            .iter()
            .filter_map(|reason| self.rejected.get(&Reason { reason }).map(|c| c.get()))
            .sum()
    }

    /// The registry in the Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        // Writing to a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// The registry in the OpenMetrics text format, `# EOF` included.
    fn render_openmetrics(&self) -> String {
        let mut out = String::with_capacity(8192);
        let _ = text::encode(&mut out, &self.registry);
        out
    }
}

/// How long a scraper may take to send its request head.
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
                        let service = hyper::service::service_fn(move |req| {
                            let answer = respond(&req, &metrics);
                            async move { Ok::<_, Infallible>(answer) }
                        });
                        let served = hyper::server::conn::http1::Builder::new()
                            .timer(TokioTimer::new())
                            .header_read_timeout(READ_TIMEOUT)
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                        if let Err(e) = served {
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

/// The response to one request: the exposition in the format the scraper accepts, or an error status.
fn respond(req: &Request<Incoming>, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = route(req, metrics);
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Status, content type and body for one request.
fn route<B>(req: &Request<B>, metrics: &Metrics) -> (StatusCode, &'static str, String) {
    let plain = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") if wants_openmetrics(req) => {
            (StatusCode::OK, OPENMETRICS, metrics.render_openmetrics())
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            prometheus_text::CONTENT_TYPE,
            metrics.render(),
        ),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, plain, "try /metrics\n".to_owned()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, plain, String::new()),
    }
}

/// Whether the scraper's `Accept` header names OpenMetrics (Prometheus's own scrapes do).
fn wants_openmetrics<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use gridmuc_core::{Rejection, Severity, Timestamp};

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn renders_counters_gauges_and_histogram() {
        let m = Metrics::new();
        let nick = RoomNick::new("amber-otter-1").unwrap();
        m.reading(&nick, 1, &Ingest::Accepted, 40);
        m.reading(&nick, 2, &Ingest::Accepted, 3_000);
        m.reading(&nick, 3, &Ingest::Rejected(Rejection::Late), 90_000);
        m.rejection(&Rejection::NotANumber);
        let mut values = [1_000, 1_000, 1_000, 1_000, 1_000, 1_000, 6_340];
        m.interval(&IntervalStats::compute(Timestamp(0), 60_000, &mut values));
        m.rating(Watts(400_000));
        m.session_replaced();
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
            (
                "gridmuc_alerts_total{kind=\"overload\",state=\"cleared\"}",
                0.0,
            ),
            ("gridmuc_intervals_total", 1.0),
            ("gridmuc_interval_load_watts", 12_340.0),
            ("gridmuc_interval_meters", 7.0),
            ("gridmuc_rating_watts", 400_000.0),
            ("gridmuc_session_replacements_total", 1.0),
            (
                &format!(
                    "gridmuc_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                ),
                1.0,
            ),
            ("gridmuc_reading_age_seconds_bucket{le=\"0.05\"}", 1.0),
            ("gridmuc_reading_age_seconds_bucket{le=\"2.5\"}", 1.0),
            ("gridmuc_reading_age_seconds_bucket{le=\"5\"}", 2.0),
            ("gridmuc_reading_age_seconds_bucket{le=\"+Inf\"}", 2.0),
            ("gridmuc_reading_age_seconds_count", 2.0),
            ("gridmuc_reading_age_seconds_sum", 3.04),
        ];
        for (series, want) in expected {
            assert_eq!(value(&text, series), want, "{series}");
        }
        assert_eq!(m.accepted(), 2);
        assert_eq!(m.rejected_total(), 2);
        assert!(!text.contains("amber-otter"), "{text}");
        assert_eq!(
            text.matches("gridmuc_readings_rejected_total{").count(),
            REJECTION_KINDS.len()
        );
        assert_eq!(
            text.matches("gridmuc_alerts_total{").count(),
            2 * AlertKind::ALL.len()
        );
    }

    #[test]
    fn openmetrics_holds_the_same_values() {
        let m = Metrics::new();
        m.session_replaced();
        let om = m.render_openmetrics();
        assert_eq!(value(&om, "gridmuc_session_replacements_total"), 1.0);
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn routes_by_method_path_and_accept() {
        let m = Metrics::new();
        let get = |uri: &str, accept: Option<&str>| {
            let mut b = Request::get(uri);
            if let Some(a) = accept {
                b = b.header(ACCEPT, a);
            }
            let req = b.body(()).unwrap();
            let (status, ct, _) = route(&req, &m);
            (status, ct)
        };
        assert_eq!(
            get("/metrics", None),
            (StatusCode::OK, prometheus_text::CONTENT_TYPE)
        );
        assert_eq!(get("/metrics?x=1", None).0, StatusCode::OK);
        assert_eq!(
            get(
                "/metrics",
                Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
            ),
            (StatusCode::OK, OPENMETRICS)
        );
        assert_eq!(get("/", None).0, StatusCode::NOT_FOUND);
        let post = Request::post("/metrics").body(()).unwrap();
        assert_eq!(route(&post, &m).0, StatusCode::METHOD_NOT_ALLOWED);
    }
}
