//! The thin I/O half of live meters: one background task per source moves bytes or MQTT
//! messages into the sans-IO decoders and the shared [`Accumulator`]; the driver's
//! [`Live::sample`] closes the interval. Lost devices, bridges and brokers are retried with
//! backoff for as long as the source lives, and their silence shows up as dead intervals.

use crate::accumulate::{Accumulator, Fault, Observation, SourceCounts};
use crate::dsmr::P1Decoder;
use crate::mqtt::{EnergyUnit, Fields, MqttReader};
use crate::smarty::{SmartyDecoder, SmartyError, SmartyKeys};
use crate::sml::SmlDecoder;
use crate::{Link, MqttConfig, Sample, SourceError, hold_ms, now_ts};
use gridmuc_core::Timestamp;
use rand::Rng;
use std::fmt::Display;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::task::AbortHandle;
use tokio_serial::SerialPortBuilderExt;

/// Seconds the last value holds by default for serial meters (DSMR 4 sends every 10 s).
const SERIAL_HOLD: f64 = 30.0;
/// …and for MQTT devices (Tasmota's default telemetry period is 300 s).
const MQTT_HOLD: f64 = 330.0;

/// A live meter: the interval in progress, filled by a background task stopped on drop.
#[derive(Debug)]
pub struct Live {
    acc: Arc<Mutex<Accumulator>>,
    task: AbortHandle,
    /// For logs: what is read (`DSMR /dev/ttyUSB0`), never credentials.
    what: String,
    /// The previous interval's fault, so only changes are logged.
    fault: Option<Fault>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Live {
    /// Closes the interval at `now`; a fault is counted, logged when it starts or ends, and
    /// reported as [`Sample::Skip`].
    pub fn sample(&mut self, now: Timestamp) -> Sample {
        let (taken, c) = {
            let mut acc = lock(&self.acc);
            (acc.take(now), acc.counts())
        };
        let fault = taken.err();
        if fault != self.fault {
            let (dead, garbled) = (c.dead_intervals, c.garbled_intervals);
            match fault {
                Some(f) => tracing::warn!(
                    source = %self.what, fault = ?f, dead_intervals = dead, garbled_intervals = garbled,
                    "meter gives no reading; interval skipped and counted"
                ),
                None => tracing::info!(
                    source = %self.what, dead_intervals = dead, garbled_intervals = garbled,
                    "meter readings are back"
                ),
            }
            self.fault = fault;
        }
        taken.map_or(Sample::Skip, Sample::Value)
    }

    /// Totals so far.
    pub fn counts(&self) -> SourceCounts {
        lock(&self.acc).counts()
    }
}

/// A poisoned lock only means a task panicked mid-update; the counters are still usable.
fn lock(acc: &Mutex<Accumulator>) -> MutexGuard<'_, Accumulator> {
    acc.lock().unwrap_or_else(|e| e.into_inner())
}

/// The byte protocol of a serial meter.
#[derive(Clone, Copy, Debug)]
pub enum Protocol {
    /// DSMR P1 telegrams.
    Dsmr,
    /// SML files.
    Sml,
}

impl Protocol {
    fn default_baud(self) -> u32 {
        match self {
            Protocol::Dsmr => 115_200,
            Protocol::Sml => 9_600,
        }
    }

    fn decoder(self, keys: Option<SmartyKeys>) -> Decoder {
        match (self, keys) {
            (Protocol::Dsmr, Some(keys)) => {
                Decoder::Smarty(Box::new(SmartyDecoder::new(keys)), false)
            }
            (Protocol::Dsmr, None) => Decoder::Dsmr(P1Decoder::default()),
            (Protocol::Sml, _) => Decoder::Sml(Box::default()),
        }
    }
}

#[derive(Debug)]
enum Decoder {
    Dsmr(P1Decoder),
    /// Boxed: its frame buffer is 8 KiB.
    Sml(Box<SmlDecoder>),
    /// Luxembourg's encrypted telegrams, and whether a wrong key was already reported.
    Smarty(Box<SmartyDecoder>, bool),
}

impl Decoder {
    /// Decodes `bytes` and files every frame in the accumulator.
    fn feed(&mut self, bytes: &[u8], acc: &Mutex<Accumulator>, what: &str) {
        match self {
            Decoder::Dsmr(d) => {
                let mut out = Vec::new();
                d.push(bytes, &mut out);
                file(out, acc, what);
            }
            Decoder::Sml(d) => {
                let mut out = Vec::new();
                d.push(bytes, &mut out);
                file(out, acc, what);
            }
            Decoder::Smarty(d, warned) => {
                let mut out = Vec::new();
                d.push(bytes, &mut out);
                // A wrong key fails every frame: say so once, clearly; each is still counted.
                if !*warned && out.iter().any(|f| matches!(f, Err(SmartyError::Decrypt))) {
                    *warned = true;
                    tracing::error!(source = %what, "{}", SmartyError::Decrypt);
                }
                file(out, acc, what);
            }
        }
    }
}

fn file<E: Display>(frames: Vec<Result<Observation, E>>, acc: &Mutex<Accumulator>, what: &str) {
    if frames.is_empty() {
        return;
    }
    let now = now_ts();
    let mut acc = lock(acc);
    for f in frames {
        match f {
            Ok(obs) => acc.observe(now, obs),
            Err(e) => {
                tracing::debug!(source = %what, error = %e, "garbled frame");
                acc.garbled();
            }
        }
    }
}

fn spawn(
    what: String,
    hold: i64,
    task: impl FnOnce(Arc<Mutex<Accumulator>>, String) -> tokio::task::JoinHandle<()>,
) -> Result<Live, SourceError> {
    tokio::runtime::Handle::try_current().map_err(|_| SourceError::NoRuntime)?;
    let acc = Arc::new(Mutex::new(Accumulator::new(hold)));
    let task = task(acc.clone(), what.clone()).abort_handle();
    Ok(Live {
        acc,
        task,
        what,
        fault: None,
    })
}

/// Opens a serial meter (the port now, so a missing device is an error at start) or starts
/// connecting to its TCP bridge.
pub fn open_stream(protocol: Protocol, link: &Link) -> Result<Live, SourceError> {
    let hold = hold_ms(link.hold, SERIAL_HOLD);
    let keys = link.keys(matches!(protocol, Protocol::Dsmr))?;
    match (&link.port, &link.tcp) {
        (Some(port), None) => {
            let builder = tokio_serial::new(port, link.baud.unwrap_or(protocol.default_baud()))
                .data_bits(tokio_serial::DataBits::Eight)
                .parity(tokio_serial::Parity::None)
                .stop_bits(tokio_serial::StopBits::One)
                .flow_control(tokio_serial::FlowControl::None);
            tokio::runtime::Handle::try_current().map_err(|_| SourceError::NoRuntime)?;
            let stream =
                builder
                    .clone()
                    .open_native_async()
                    .map_err(|source| SourceError::Device {
                        port: port.clone(),
                        source,
                    })?;
            let what = format!("{protocol:?} {port}");
            spawn(what, hold, |acc, what| {
                tokio::spawn(async move {
                    let mut decoder = protocol.decoder(keys);
                    let mut stream = Some(stream);
                    let mut backoff = Backoff::default();
                    loop {
                        if let Some(s) = stream.take() {
                            let e = pump(s, &mut decoder, &acc, &what).await;
                            tracing::warn!(source = %what, error = %e, "serial port lost; reopening");
                        }
                        backoff.wait().await;
                        match builder.clone().open_native_async() {
                            Ok(s) => {
                                tracing::info!(source = %what, "serial port reopened");
                                backoff = Backoff::default();
                                stream = Some(s);
                            }
                            Err(e) => {
                                tracing::warn!(source = %what, error = %e, "cannot reopen serial port")
                            }
                        }
                    }
                })
            })
        }
        (None, Some(addr)) => {
            let addr = addr.clone();
            spawn(format!("{protocol:?} tcp {addr}"), hold, |acc, what| {
                tokio::spawn(async move {
                    let mut decoder = protocol.decoder(keys);
                    let mut backoff = Backoff::default();
                    loop {
                        match tokio::net::TcpStream::connect(&addr).await {
                            Ok(s) => {
                                tracing::info!(source = %what, "connected to the meter's bridge");
                                backoff = Backoff::default();
                                let e = pump(s, &mut decoder, &acc, &what).await;
                                tracing::warn!(source = %what, error = %e, "bridge connection lost");
                            }
                            Err(e) => {
                                tracing::warn!(source = %what, error = %e, "cannot connect to the meter's bridge")
                            }
                        }
                        backoff.wait().await;
                    }
                })
            })
        }
        _ => Err(SourceError::Config(format!(
            "{protocol:?} needs exactly one of `port` (a serial device) or `tcp` (host:port of a bridge)"
        ))),
    }
}

/// Reads until the stream ends or fails, and says why.
async fn pump(
    mut r: impl AsyncRead + Unpin,
    decoder: &mut Decoder,
    acc: &Mutex<Accumulator>,
    what: &str,
) -> std::io::Error {
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) => return std::io::ErrorKind::UnexpectedEof.into(),
            Ok(n) => decoder.feed(&buf[..n], acc, what),
            Err(e) => return e,
        }
    }
}

/// Waits 1 s, doubling to 30 s, between attempts to reach a device.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(Duration::from_secs(1))
    }
}

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(30));
    }
}

/// TLS for an `mqtts://` broker: rustls on the ring provider (rumqttc's default provider would
/// pull aws-lc-rs), trusting the CA file's certificates or, without one, the system's roots.
fn mqtt_tls(ca_file: Option<&Path>) -> Result<rumqttc::TlsConfiguration, SourceError> {
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let certs = match ca_file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| SourceError::Config(format!("ca_file {}: {e}", path.display())))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let mut roots = RootCertStore::empty();
    if roots.add_parsable_certificates(certs).0 == 0 {
        return Err(SourceError::Config(
            "mqtts:// needs a CA to trust: no usable certificate in ca_file or the system's roots"
                .into(),
        ));
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| SourceError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(rumqttc::TlsConfiguration::Rustls(Arc::new(config)))
}

/// Starts the MQTT session; a broker that is down or refuses is logged and retried, and its
/// silence is counted as dead intervals.
pub fn open_mqtt(cfg: &MqttConfig, rng: &mut impl Rng) -> Result<Live, SourceError> {
    let fields = mqtt_fields(cfg)?;
    let (broker, tls, default_port) = match cfg.broker.strip_prefix("mqtts://") {
        Some(b) => (b, true, 8883),
        None => (
            cfg.broker.strip_prefix("mqtt://").unwrap_or(&cfg.broker),
            false,
            1883,
        ),
    };
    let (host, port) = match broker.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| {
                SourceError::Config(format!("MQTT broker {:?}: bad port", cfg.broker))
            })?,
        ),
        None => (broker, default_port),
    };
    if host.is_empty() {
        return Err(SourceError::Config(
            "MQTT needs `broker = \"host:port\"`".into(),
        ));
    }
    // Random, so the broker's logs do not name the house.
    let mut opts =
        rumqttc::MqttOptions::new(format!("gridmuc-{:016x}", rng.random::<u64>()), host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    match (tls, &cfg.ca_file) {
        (true, ca) => opts.set_transport(rumqttc::Transport::tls_with_config(mqtt_tls(
            ca.as_deref(),
        )?)),
        (false, Some(_)) => {
            return Err(SourceError::Config(
                "ca_file is for an mqtts:// broker".into(),
            ));
        }
        (false, None) => &mut opts,
    };
    if let Some(user) = &cfg.username {
        let password = cfg.password.as_ref().map_or("", |p| p.0.as_str());
        opts.set_credentials(user, password);
    }
    let scheme = if tls { "MQTTS" } else { "MQTT" };
    let what = format!("{scheme} {host}:{port} {}", fields.topic);
    let mut reader = MqttReader::new(fields);
    spawn(what, hold_ms(cfg.hold, MQTT_HOLD), |acc, what| {
        tokio::spawn(async move {
            let (client, mut events) = rumqttc::AsyncClient::new(opts, 16);
            let mut backoff = Backoff::default();
            loop {
                use rumqttc::{Event, Packet};
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(source = %what, "connected to the MQTT broker");
                        backoff = Backoff::default();
                        if let Err(e) =
                            client.try_subscribe(reader.topic(), rumqttc::QoS::AtMostOnce)
                        {
                            tracing::warn!(source = %what, error = %e, "cannot subscribe");
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if ack
                            .return_codes
                            .iter()
                            .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        {
                            tracing::error!(source = %what, "the broker refused the subscription (check its ACLs)");
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if let Some(frame) = reader.handle(&p.topic, &p.payload) {
                            if let Err(e) = &frame {
                                tracing::debug!(source = %what, topic = %p.topic, error = %e, "unusable message");
                            }
                            file(vec![frame], &acc, &what);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Refusals (bad credentials, not authorised) name the broker's reason code.
                        tracing::warn!(source = %what, error = %e, "MQTT broker unreachable or refusing; retrying");
                        backoff.wait().await;
                    }
                }
            }
        })
    })
}

/// The topic and fields from a preset, overridden by what is spelled out.
fn mqtt_fields(cfg: &MqttConfig) -> Result<Fields, SourceError> {
    let base = cfg.preset.map(|p| p.fields());
    let power = cfg
        .path
        .clone()
        .or_else(|| base.as_ref().map(|b| b.power.clone()))
        .ok_or_else(|| {
            SourceError::Config("MQTT needs a `preset` or a `path` to the power field".into())
        })?;
    let topic = cfg
        .topic
        .clone()
        .or_else(|| base.as_ref().map(|b| b.topic.clone()))
        .ok_or_else(|| SourceError::Config("MQTT needs a `preset` or a `topic`".into()))?;
    let energy = match &cfg.energy_path {
        Some(p) => Some((p.clone(), cfg.energy_unit.unwrap_or(EnergyUnit::KWh))),
        // A custom power path makes the preset's energy field a guess: keep it only if the
        // power field is the preset's own.
        None => base
            .filter(|b| cfg.path.is_none() || cfg.path.as_ref() == Some(&b.power))
            .and_then(|b| b.energy),
    };
    Ok(Fields {
        topic,
        power,
        energy,
    })
}
